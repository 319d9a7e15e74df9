//! The gRPC listener: the client-facing `Cortex` service (a thin adapter over `NodeApi`) and
//! the node-to-node `Raft` service.

use cortex_cluster::raft_service::RaftService;
use cortex_cluster::CortexRaft;
use cortex_model::token::Scope;
use cortex_proto::v1 as pb;
use cortex_proto::v1::cortex_server::{Cortex, CortexServer};
use cortex_proto::v1::raft_server::RaftServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::api::{ApiError, NodeApi};
use crate::convert::{node_to_pb, status_to_pb};

pub async fn serve(
    listener: TcpListener,
    tls: tonic::transport::ServerTlsConfig,
    api: NodeApi,
    raft: CortexRaft,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    tonic::transport::Server::builder()
        .tls_config(tls)?
        .add_service(CortexServer::new(CortexService { api }))
        .add_service(RaftServer::new(RaftService::new(raft)))
        .serve_with_incoming_shutdown(incoming(listener), shutdown.cancelled_owned())
        .await?;
    Ok(())
}

/// Accepted connections with Nagle's algorithm off: small RPCs must not wait for delayed ACKs.
fn incoming(
    listener: TcpListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use tokio_stream::StreamExt;
    TcpListenerStream::new(listener).map(|conn| {
        let conn = conn?;
        conn.set_nodelay(true)?;
        Ok(conn)
    })
}

struct CortexService {
    api: NodeApi,
}

fn status(e: ApiError) -> Status {
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

fn bearer<T>(req: &Request<T>) -> Option<String> {
    let v = req.metadata().get("authorization")?.to_str().ok()?;
    v.strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("bearer "))
        .map(str::to_string)
}

#[tonic::async_trait]
impl Cortex for CortexService {
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
    ) -> Result<Response<pb::Node>, Status> {
        let caller = self
            .api
            .authorize(bearer(&req).as_deref(), Scope::Operate)
            .map_err(status)?;
        let r = req.into_inner();
        let node = self
            .api
            .set_labels(&caller, &r.key, r.set.into_iter().collect(), r.remove)
            .await
            .map_err(status)?;
        Ok(Response::new(node_to_pb(&node)))
    }
}
