//! Where the tools' operations go: the coordinator's own `NodeApi` (MCP over HTTP, in the
//! coordinator) or a coordinator's gRPC API (`cortex mcp`, the stdio bridge, anywhere). One
//! enum, so every tool has one implementation; each arm only adapts, as the gRPC and HTTP
//! handlers do.

use std::sync::Arc;
use std::time::Duration;

use cortex_model::node::NodeRecord;
use cortex_model::state::Event;
use cortex_model::task::{Aggregate, TaskId, TaskRecord};
use cortex_model::token::Scope;
use cortex_model::view::ClusterStatus;
use cortex_proto::v1 as pb;
use serde::de::DeserializeOwned;

use super::error::{Kind, ToolError, ToolResult};
use crate::api::tasks::{LogSlice, SubmitInput, Submitted, TaskFilter, WorkflowView};
use crate::api::{Caller, NodeApi};
use crate::client::{Client, ClientArgs};
use crate::convert::{node_from_pb, status_from_pb};

#[derive(Clone)]
pub enum Backend {
    /// In the coordinator: the caller comes from the HTTP request's bearer token.
    Local(NodeApi),
    /// The stdio bridge: the token is the client's, checked by the coordinator.
    Remote(Arc<Remote>),
}

/// A lazily (re)connected gRPC client: `cortex mcp` starts even when no coordinator answers
/// yet, and says so in the first tool result instead.
pub struct Remote {
    args: ClientArgs,
    client: tokio::sync::Mutex<Option<Arc<Client>>>,
}

impl Remote {
    pub fn new(args: ClientArgs) -> Self {
        Remote {
            args,
            client: tokio::sync::Mutex::new(None),
        }
    }

    async fn client(&self) -> ToolResult<Arc<Client>> {
        let mut slot = self.client.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let c = Arc::new(
            Client::connect(&self.args)
                .await
                .map_err(|e| ToolError::new(Kind::Unavailable, format!("{e:#}")))?,
        );
        *slot = Some(c.clone());
        Ok(c)
    }

    fn fail(&self, s: &tonic::Status) -> ToolError {
        ToolError::from_status(s, &self.args.server)
    }
}

/// Calls one RPC on the remote's client: `rpc!(remote, method, message)`.
macro_rules! rpc {
    ($r:expr, $method:ident, $msg:expr) => {{
        let c = $r.client().await?;
        let mut grpc = c.grpc.clone();
        grpc.$method(c.request($msg))
            .await
            .map(|resp| resp.into_inner())
            .map_err(|s| $r.fail(&s))
    }};
}

fn decode<T: DeserializeOwned>(what: &str, json: &str) -> ToolResult<T> {
    serde_json::from_str(json).map_err(|e| {
        ToolError::new(
            Kind::Internal,
            format!("the coordinator's {what} is not valid JSON: {e}"),
        )
    })
}

fn node(n: pb::Node) -> ToolResult<NodeRecord> {
    node_from_pb(n).map_err(|e| ToolError::new(Kind::Internal, e))
}

fn caller(c: Option<&Caller>) -> ToolResult<&Caller> {
    c.ok_or_else(|| ToolError::new(Kind::Unauthenticated, "this needs a bearer token"))
}

fn decision(key: &str, reason: &str) -> pb::NodeDecisionRequest {
    pb::NodeDecisionRequest {
        key: key.to_string(),
        reason: reason.to_string(),
    }
}

fn json_request<T: serde::Serialize>(v: &T) -> ToolResult<pb::JsonRequest> {
    serde_json::to_string(v)
        .map(|input_json| pb::JsonRequest { input_json })
        .map_err(|e| ToolError::new(Kind::Internal, format!("cannot encode the request: {e}")))
}

impl Backend {
    /// The token's identity as the coordinator sees it (the stdio bridge; over HTTP the caller
    /// comes with each request).
    pub async fn whoami(&self) -> ToolResult<Caller> {
        match self {
            Backend::Local(_) => Err(ToolError::new(Kind::Internal, "whoami is for the stdio bridge")),
            Backend::Remote(r) => {
                let w = rpc!(r, who_am_i, pb::WhoAmIRequest {})?;
                let scope = Scope::parse(&w.scope)
                    .ok_or_else(|| ToolError::new(Kind::Internal, format!("unknown scope {:?}", w.scope)))?;
                Ok(Caller {
                    token_id: w.token_id,
                    scope,
                })
            }
        }
    }

    pub async fn status(&self) -> ToolResult<ClusterStatus> {
        match self {
            Backend::Local(api) => Ok(api.status().await),
            Backend::Remote(r) => Ok(status_from_pb(rpc!(r, get_status, pb::GetStatusRequest {})?)),
        }
    }

    /// Every node, by id.
    pub async fn nodes(&self) -> ToolResult<Vec<NodeRecord>> {
        let mut nodes = match self {
            Backend::Local(api) => api.list_nodes(),
            Backend::Remote(r) => rpc!(r, list_nodes, pb::ListNodesRequest {})?
                .nodes
                .into_iter()
                .map(node)
                .collect::<ToolResult<_>>()?,
        };
        nodes.sort_by_key(|n| n.id);
        Ok(nodes)
    }

    pub async fn node(&self, key: &str) -> ToolResult<NodeRecord> {
        match self {
            Backend::Local(api) => Ok(api.get_node(key)?),
            Backend::Remote(r) => node(rpc!(r, get_node, pb::GetNodeRequest { key: key.into() })?),
        }
    }

    pub async fn approve(&self, c: Option<&Caller>, key: &str) -> ToolResult<NodeRecord> {
        match self {
            Backend::Local(api) => Ok(api.approve_node(caller(c)?, key).await?),
            Backend::Remote(r) => node(rpc!(r, approve_node, decision(key, ""))?),
        }
    }

    pub async fn reject(&self, c: Option<&Caller>, key: &str, reason: &str) -> ToolResult<NodeRecord> {
        match self {
            Backend::Local(api) => Ok(api.reject_node(caller(c)?, key, reason).await?),
            Backend::Remote(r) => node(rpc!(r, reject_node, decision(key, reason))?),
        }
    }

    pub async fn run_benchmark(&self, c: Option<&Caller>, key: &str, quick: bool) -> ToolResult<NodeRecord> {
        match self {
            Backend::Local(api) => Ok(api.request_bench(caller(c)?, key, quick).await?),
            Backend::Remote(r) => node(rpc!(
                r,
                run_benchmark,
                pb::RunBenchmarkRequest {
                    key: key.into(),
                    quick
                }
            )?),
        }
    }

    /// A network run between the coordinator serving the call (it measures) and node `key`;
    /// the peer's record with the pending request, whose `from` names that coordinator.
    pub async fn run_net_benchmark(
        &self,
        c: Option<&Caller>,
        key: &str,
        seconds: u32,
    ) -> ToolResult<NodeRecord> {
        match self {
            Backend::Local(api) => Ok(api.measure_net_bench(caller(c)?, key, seconds).await?.peer),
            Backend::Remote(r) => node(rpc!(
                r,
                run_net_benchmark,
                pb::RunNetBenchmarkRequest {
                    key: key.into(),
                    seconds,
                    coordinator_measures: true,
                    ..Default::default()
                }
            )?),
        }
    }

    pub async fn drain(&self, c: Option<&Caller>, key: &str) -> ToolResult<NodeRecord> {
        match self {
            Backend::Local(api) => Ok(api.drain_node(caller(c)?, key).await?),
            Backend::Remote(r) => node(rpc!(r, drain_node, decision(key, ""))?),
        }
    }

    pub async fn undrain(&self, c: Option<&Caller>, key: &str) -> ToolResult<NodeRecord> {
        match self {
            Backend::Local(api) => Ok(api.undrain_node(caller(c)?, key).await?),
            Backend::Remote(r) => node(rpc!(r, undrain_node, decision(key, ""))?),
        }
    }

    pub async fn submit(&self, c: Option<&Caller>, input: SubmitInput) -> ToolResult<Submitted> {
        match self {
            Backend::Local(api) => Ok(api.submit_tasks(caller(c)?, input).await?),
            Backend::Remote(r) => decode("answer", &rpc!(r, submit_tasks, json_request(&input)?)?.json),
        }
    }

    pub async fn task(&self, id: &str) -> ToolResult<TaskRecord> {
        match self {
            Backend::Local(api) => Ok(api.get_task(id)?),
            Backend::Remote(r) => decode(
                "task",
                &rpc!(r, get_task, pb::KeyRequest { key: id.into() })?.json,
            ),
        }
    }

    pub async fn tasks(&self, f: &TaskFilter) -> ToolResult<Vec<TaskRecord>> {
        match self {
            Backend::Local(api) => Ok(api.list_tasks(f)),
            Backend::Remote(r) => decode("task list", &rpc!(r, list_tasks, json_request(f)?)?.json),
        }
    }

    pub async fn logs(&self, id: &str, offset: u64, max_bytes: u64) -> ToolResult<LogSlice> {
        match self {
            Backend::Local(api) => Ok(api.task_logs(id, offset, max_bytes)?),
            Backend::Remote(r) => {
                let req = pb::TaskLogsRequest {
                    id: id.into(),
                    offset,
                    max_bytes,
                    follow: false,
                };
                decode("log", &rpc!(r, task_logs, req)?.json)
            }
        }
    }

    pub async fn cancel(
        &self,
        c: Option<&Caller>,
        ids: Vec<String>,
        reason: &str,
    ) -> ToolResult<Vec<TaskId>> {
        match self {
            Backend::Local(api) => Ok(api.cancel_tasks(caller(c)?, ids, reason).await?),
            Backend::Remote(r) => {
                let input = serde_json::json!({ "ids": ids, "reason": reason });
                decode("answer", &rpc!(r, cancel_tasks, json_request(&input)?)?.json)
            }
        }
    }

    pub async fn workflow(&self, key: &str) -> ToolResult<WorkflowView> {
        match self {
            Backend::Local(api) => Ok(api.get_workflow(key)?),
            Backend::Remote(r) => decode(
                "workflow",
                &rpc!(r, get_workflow, pb::KeyRequest { key: key.into() })?.json,
            ),
        }
    }

    pub async fn group(&self, id: &str) -> ToolResult<Aggregate> {
        match self {
            Backend::Local(api) => Ok(api.group_status(id)?),
            Backend::Remote(r) => decode(
                "group",
                &rpc!(r, get_task_group, pb::KeyRequest { key: id.into() })?.json,
            ),
        }
    }

    /// Events after `after_seq`, oldest first, at most `limit` (≤ 1000).
    pub async fn events(&self, after_seq: u64, limit: u32) -> ToolResult<Vec<Event>> {
        match self {
            Backend::Local(api) => Ok(api.events(after_seq, limit as usize)),
            Backend::Remote(r) => {
                let req = pb::ListEventsRequest { after_seq, limit };
                decode("events", &rpc!(r, list_events, req)?.events_json)
            }
        }
    }

    /// Something to wait on between two looks at the state: the next applied entry (local),
    /// or a short poll interval (remote).
    pub fn changes(&self) -> Changes {
        match self {
            Backend::Local(api) => Changes::Applied(api.subscribe()),
            Backend::Remote(_) => Changes::Poll,
        }
    }
}

pub enum Changes {
    Applied(tokio::sync::watch::Receiver<u64>),
    Poll,
}

impl Changes {
    /// Resolves at the next change or after `at_most`, whichever is first.
    pub async fn next(&mut self, at_most: Duration) {
        match self {
            Changes::Applied(rx) => {
                if let Ok(Err(_)) = tokio::time::timeout(at_most, rx.changed()).await {
                    // The state machine is gone (shutting down): do not spin.
                    tokio::time::sleep(at_most.min(Duration::from_millis(200))).await;
                }
            }
            Changes::Poll => tokio::time::sleep(at_most.min(Duration::from_millis(200))).await,
        }
    }
}
