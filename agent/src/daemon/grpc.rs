//! The gRPC listener: the client-facing `Cortex` service (a thin adapter over `NodeApi`) and
//! the node-to-node `Raft` service.

use cortex_cluster::raft_service::RaftService;
use cortex_cluster::CortexRaft;
use cortex_model::token::Scope;
use cortex_proto::v1 as pb;
use cortex_proto::v1::cortex_server::{Cortex, CortexServer};
use cortex_proto::v1::raft_server::RaftServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use super::grpc_tasks as tasks;
use crate::api::{ApiError, Caller, JoinInput, NewToken, NodeApi};
use crate::convert::{node_to_pb, status_to_pb, token_to_pb};
use cortex_cluster::raft_service::{peer_node, require_coordinator};
use cortex_model::command::Command;
use cortex_model::token::TokenKind;

pub async fn serve(
    listener: TcpListener,
    tls: rustls::ServerConfig,
    api: NodeApi,
    raft: CortexRaft,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let services = Services {
        cortex: CortexServer::new(CortexService { api }),
        raft: RaftServer::new(RaftService::new(raft)),
    };
    cortex_cluster::h2_server::serve(listener, tls, services, shutdown).await;
    Ok(())
}

/// The two services on the listener, told apart by the path's `/<package>.<Service>/` prefix.
#[derive(Clone)]
struct Services {
    cortex: CortexServer<CortexService>,
    raft: RaftServer<RaftService>,
}

impl tower_service::Service<http::Request<tonic::body::Body>> for Services {
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>,
    >;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        // Both generated services are always ready.
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        use tonic::server::NamedService;
        let path = request.uri().path();
        let raft_name = <RaftServer<RaftService> as NamedService>::NAME;
        let is_raft = path
            .strip_prefix('/')
            .and_then(|p| p.strip_prefix(raft_name))
            .is_some_and(|rest| rest.starts_with('/'));
        if is_raft {
            Box::pin(self.raft.call(request))
        } else {
            Box::pin(self.cortex.call(request))
        }
    }
}

struct CortexService {
    api: NodeApi,
}

pub(super) fn status(e: ApiError) -> Status {
    let msg = e.to_string();
    match e {
        ApiError::Unauthenticated(_) => Status::unauthenticated(msg),
        ApiError::PermissionDenied(_) => Status::permission_denied(msg),
        ApiError::NotFound(_) => Status::not_found(msg),
        ApiError::InvalidArgument { .. } => Status::invalid_argument(msg),
        ApiError::Rejected(_) => Status::failed_precondition(msg),
        ApiError::Unavailable(_) => Status::unavailable(msg),
        ApiError::Internal(_) => Status::internal(msg),
    }
}

/// The caller behind a request's bearer token, refused unless its scope allows `need`.
pub(super) fn caller<T>(api: &NodeApi, req: &Request<T>, need: Scope) -> Result<Caller, Status> {
    api.authorize(bearer(req).as_deref(), need).map_err(status)
}

pub(super) fn bearer<T>(req: &Request<T>) -> Option<String> {
    let v = req.metadata().get("authorization")?.to_str().ok()?;
    v.strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("bearer "))
        .map(str::to_string)
}

#[tonic::async_trait]
impl Cortex for CortexService {
    type WatchTaskStream = tasks::WatchTaskStream;
    type WatchAssignmentsStream = tasks::AssignmentStream;

    async fn submit_tasks(
        &self,
        req: Request<pb::JsonRequest>,
    ) -> Result<Response<pb::JsonResponse>, Status> {
        tasks::submit(&self.api, req).await
    }

    async fn get_task(&self, req: Request<pb::KeyRequest>) -> Result<Response<pb::JsonResponse>, Status> {
        tasks::get(&self.api, req)
    }

    async fn list_tasks(&self, req: Request<pb::JsonRequest>) -> Result<Response<pb::JsonResponse>, Status> {
        tasks::list(&self.api, req)
    }

    async fn task_logs(
        &self,
        req: Request<pb::TaskLogsRequest>,
    ) -> Result<Response<pb::JsonResponse>, Status> {
        tasks::logs(&self.api, req)
    }

    async fn watch_task(
        &self,
        req: Request<pb::TaskLogsRequest>,
    ) -> Result<Response<Self::WatchTaskStream>, Status> {
        tasks::watch(&self.api, req)
    }

    async fn cancel_tasks(
        &self,
        req: Request<pb::JsonRequest>,
    ) -> Result<Response<pb::JsonResponse>, Status> {
        tasks::cancel(&self.api, req).await
    }

    async fn get_workflow(&self, req: Request<pb::KeyRequest>) -> Result<Response<pb::JsonResponse>, Status> {
        tasks::workflow(&self.api, req)
    }

    async fn list_workflows(
        &self,
        _req: Request<pb::JsonRequest>,
    ) -> Result<Response<pb::JsonResponse>, Status> {
        tasks::workflows(&self.api)
    }

    async fn get_task_group(
        &self,
        req: Request<pb::KeyRequest>,
    ) -> Result<Response<pb::JsonResponse>, Status> {
        tasks::group(&self.api, req)
    }

    async fn watch_assignments(
        &self,
        req: Request<pb::WatchAssignmentsRequest>,
    ) -> Result<Response<Self::WatchAssignmentsStream>, Status> {
        tasks::assignments(&self.api, req)
    }

    async fn publish_images(
        &self,
        req: Request<pb::PublishImagesRequest>,
    ) -> Result<Response<pb::JsonResponse>, Status> {
        tasks::publish_images(&self.api, req).await
    }

    async fn publish_bench(
        &self,
        req: Request<pb::PublishBenchRequest>,
    ) -> Result<Response<pb::JsonResponse>, Status> {
        tasks::publish_bench(&self.api, req).await
    }

    async fn publish_net_bench(
        &self,
        req: Request<pb::PublishNetBenchRequest>,
    ) -> Result<Response<pb::JsonResponse>, Status> {
        tasks::publish_net_bench(&self.api, req).await
    }

    async fn report_tasks(
        &self,
        req: Request<pb::ReportTasksRequest>,
    ) -> Result<Response<pb::JsonResponse>, Status> {
        tasks::report(&self.api, req).await
    }

    async fn get_status(
        &self,
        _req: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::ClusterStatus>, Status> {
        Ok(Response::new(status_to_pb(&self.api.status().await)))
    }

    async fn list_nodes(
        &self,
        _req: Request<pb::ListNodesRequest>,
    ) -> Result<Response<pb::ListNodesResponse>, Status> {
        let nodes = self.api.list_nodes().iter().map(node_to_pb).collect();
        Ok(Response::new(pb::ListNodesResponse { nodes }))
    }

    async fn get_node(&self, req: Request<pb::GetNodeRequest>) -> Result<Response<pb::Node>, Status> {
        let node = self.api.get_node(&req.into_inner().key).map_err(status)?;
        Ok(Response::new(node_to_pb(&node)))
    }

    async fn set_node_labels(
        &self,
        req: Request<pb::SetNodeLabelsRequest>,
    ) -> Result<Response<pb::NodeLabels>, Status> {
        let caller = caller(&self.api, &req, Scope::Operate)?;
        let r = req.into_inner();
        let n = self
            .api
            .set_labels(&caller, &r.key, r.set.into_iter().collect(), r.remove)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::NodeLabels {
            id: n.id,
            name: n.name,
            labels: n.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        }))
    }

    async fn join(&self, req: Request<pb::JoinRequest>) -> Result<Response<pb::JoinResponse>, Status> {
        let source = req.remote_addr().map(|a| a.ip());
        let peer = peer_node(&req);
        let r = req.into_inner();
        let input = JoinInput {
            token_secret: r.token_secret,
            node_id: r.node_id,
            name: r.name,
            role: r.role,
            grpc_addr: r.grpc_addr,
            http_addr: r.http_addr,
            inventory_json: r.inventory_json,
            csr_pem: r.csr_pem,
            verification_code: r.verification_code,
            bench_json: r.bench_json,
        };
        let d = self.api.join(input, source, peer).await.map_err(status)?;
        Ok(Response::new(pb::JoinResponse {
            status: d.status.as_str().to_string(),
            message: d.message,
            cert_pem: d.cert_pem,
            ca_pem: d.ca_pem,
            ca_key_pem: d.ca_key_pem,
            coordinators: d.coordinators,
        }))
    }

    async fn approve_node(
        &self,
        req: Request<pb::NodeDecisionRequest>,
    ) -> Result<Response<pb::Node>, Status> {
        let caller = caller(&self.api, &req, Scope::Operate)?;
        let node = self
            .api
            .approve_node(&caller, &req.into_inner().key)
            .await
            .map_err(status)?;
        Ok(Response::new(node_to_pb(&node)))
    }

    async fn reject_node(&self, req: Request<pb::NodeDecisionRequest>) -> Result<Response<pb::Node>, Status> {
        let caller = caller(&self.api, &req, Scope::Operate)?;
        let r = req.into_inner();
        let node = self
            .api
            .reject_node(&caller, &r.key, &r.reason)
            .await
            .map_err(status)?;
        Ok(Response::new(node_to_pb(&node)))
    }

    async fn create_token(
        &self,
        req: Request<pb::CreateTokenRequest>,
    ) -> Result<Response<pb::CreateTokenResponse>, Status> {
        let caller = caller(&self.api, &req, Scope::Operate)?;
        let r = req.into_inner();
        let kind = match r.kind.as_str() {
            "join" => TokenKind::Join,
            "api" | "" => TokenKind::Api,
            other => {
                return Err(Status::invalid_argument(format!(
                    "invalid kind: {other:?} (join or api)"
                )))
            }
        };
        let scope = match r.scope.as_str() {
            "" => Scope::Read,
            s => Scope::parse(s).ok_or_else(|| {
                Status::invalid_argument(format!("invalid scope: {s:?} (read, operate or admin)"))
            })?,
        };
        let new = NewToken {
            kind,
            scope,
            name: r.name,
            ttl_seconds: r.ttl_seconds,
            uses: r.uses,
            auto_approve: r.auto_approve,
            join_addrs: r.join_addrs,
        };
        let (token, secret) = self.api.create_token(&caller, new).await.map_err(status)?;
        Ok(Response::new(pb::CreateTokenResponse {
            token: Some(token_to_pb(&token)),
            secret,
        }))
    }

    async fn list_tokens(
        &self,
        req: Request<pb::ListTokensRequest>,
    ) -> Result<Response<pb::ListTokensResponse>, Status> {
        let caller = caller(&self.api, &req, Scope::Admin)?;
        let tokens = self
            .api
            .list_tokens(&caller)
            .map_err(status)?
            .iter()
            .map(token_to_pb)
            .collect();
        Ok(Response::new(pb::ListTokensResponse { tokens }))
    }

    async fn revoke_token(
        &self,
        req: Request<pb::RevokeTokenRequest>,
    ) -> Result<Response<pb::Token>, Status> {
        let caller = caller(&self.api, &req, Scope::Admin)?;
        let t = self
            .api
            .revoke_token(&caller, &req.into_inner().id)
            .await
            .map_err(status)?;
        Ok(Response::new(token_to_pb(&t)))
    }

    async fn who_am_i(
        &self,
        req: Request<pb::WhoAmIRequest>,
    ) -> Result<Response<pb::WhoAmIResponse>, Status> {
        let caller = caller(&self.api, &req, Scope::Read)?;
        Ok(Response::new(pb::WhoAmIResponse {
            token_id: caller.token_id,
            scope: caller.scope.as_str().to_string(),
        }))
    }

    async fn heartbeat(
        &self,
        req: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let (peer_id, _) = peer_node(&req)
            .ok_or_else(|| Status::unauthenticated("heartbeats need an approved node certificate"))?;
        let r = req.into_inner();
        if r.node_id != peer_id {
            return Err(Status::permission_denied(format!(
                "node {peer_id}'s certificate cannot send heartbeats for node {}",
                r.node_id
            )));
        }
        let resources = if r.resources_json.is_empty() {
            Default::default()
        } else {
            serde_json::from_str(&r.resources_json)
                .map_err(|e| Status::invalid_argument(format!("invalid resources_json: {e}")))?
        };
        if !r.grpc_addr.is_empty() {
            cortex_model::node_addr::check_grpc_addr(&r.grpc_addr).map_err(Status::invalid_argument)?;
        }
        self.api.liveness().record(peer_id, resources);
        self.api.rejoin_if_left(peer_id);
        self.api.note_grpc_addr(peer_id, &r.grpc_addr);
        let (leader_id, leader_addr) = self.api.leader();
        let bench_request_json = self
            .api
            .pending_bench_request(peer_id)
            .and_then(|r| serde_json::to_string(&r).ok())
            .unwrap_or_default();
        let net_bench_request_json = self
            .api
            .pending_net_bench_request(peer_id)
            .and_then(|r| serde_json::to_string(&r).ok())
            .unwrap_or_default();
        Ok(Response::new(pb::HeartbeatResponse {
            coordinators: self.api.coordinator_addrs(),
            leader_id,
            leader_addr: leader_addr.unwrap_or_default(),
            bench_request_json,
            net_bench_request_json,
        }))
    }

    async fn list_events(
        &self,
        req: Request<pb::ListEventsRequest>,
    ) -> Result<Response<pb::ListEventsResponse>, Status> {
        let r = req.into_inner();
        let limit = if r.limit == 0 {
            100
        } else {
            r.limit.min(1000) as usize
        };
        let events = self.api.events(r.after_seq, limit);
        let json = serde_json::to_string(&events).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(pb::ListEventsResponse { events_json: json }))
    }

    async fn forward(
        &self,
        req: Request<pb::ForwardRequest>,
    ) -> Result<Response<pb::ForwardResponse>, Status> {
        require_coordinator(&req)?;
        let cmd: Command = serde_json::from_str(&req.into_inner().command_json)
            .map_err(|e| Status::invalid_argument(format!("malformed command: {e}")))?;
        let outcome = self.api.write_local(cmd, false).await.map_err(status)?;
        let json = serde_json::to_string(&outcome).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(pb::ForwardResponse { outcome_json: json }))
    }

    async fn run_benchmark(
        &self,
        req: Request<pb::RunBenchmarkRequest>,
    ) -> Result<Response<pb::Node>, Status> {
        let caller = caller(&self.api, &req, Scope::Operate)?;
        let r = req.into_inner();
        let node = self
            .api
            .request_bench(&caller, &r.key, r.quick)
            .await
            .map_err(status)?;
        Ok(Response::new(node_to_pb(&node)))
    }

    async fn run_net_benchmark(
        &self,
        req: Request<pb::RunNetBenchmarkRequest>,
    ) -> Result<Response<pb::Node>, Status> {
        let caller = caller(&self.api, &req, Scope::Operate)?;
        let r = req.into_inner();
        if r.coordinator_measures {
            for (field, v) in [("secret_sha256", &r.secret_sha256), ("from", &r.from)] {
                if !v.is_empty() {
                    return Err(status(crate::api::ApiError::invalid(
                        field,
                        "must be empty with coordinator_measures: the coordinator draws the secret and names itself",
                    )));
                }
            }
            let run = self
                .api
                .measure_net_bench(&caller, &r.key, r.seconds)
                .await
                .map_err(status)?;
            return Ok(Response::new(node_to_pb(&run.peer)));
        }
        let ask = crate::api::NetAsk {
            key: r.key,
            seconds: r.seconds,
            secret_sha256: r.secret_sha256,
            from: r.from,
        };
        let node = self.api.request_net_bench(&caller, ask).await.map_err(status)?;
        Ok(Response::new(node_to_pb(&node)))
    }

    async fn drain_node(&self, req: Request<pb::NodeDecisionRequest>) -> Result<Response<pb::Node>, Status> {
        let caller = caller(&self.api, &req, Scope::Operate)?;
        let node = self
            .api
            .drain_node(&caller, &req.into_inner().key)
            .await
            .map_err(status)?;
        Ok(Response::new(node_to_pb(&node)))
    }

    async fn undrain_node(
        &self,
        req: Request<pb::NodeDecisionRequest>,
    ) -> Result<Response<pb::Node>, Status> {
        let caller = caller(&self.api, &req, Scope::Operate)?;
        let node = self
            .api
            .undrain_node(&caller, &req.into_inner().key)
            .await
            .map_err(status)?;
        Ok(Response::new(node_to_pb(&node)))
    }

    async fn remove_node(&self, req: Request<pb::NodeDecisionRequest>) -> Result<Response<pb::Node>, Status> {
        let caller = caller(&self.api, &req, Scope::Admin)?;
        let node = self
            .api
            .remove_node(&caller, &req.into_inner().key)
            .await
            .map_err(status)?;
        Ok(Response::new(node_to_pb(&node)))
    }

    async fn leave(&self, req: Request<pb::LeaveRequest>) -> Result<Response<pb::Node>, Status> {
        let (peer_id, _) = peer_node(&req)
            .ok_or_else(|| Status::unauthenticated("leaving needs the node's own certificate"))?;
        if req.get_ref().node_id != peer_id {
            return Err(Status::permission_denied(format!(
                "node {peer_id}'s certificate cannot make node {} leave",
                req.get_ref().node_id
            )));
        }
        let node = self.api.leave(peer_id).await.map_err(status)?;
        Ok(Response::new(node_to_pb(&node)))
    }
}
