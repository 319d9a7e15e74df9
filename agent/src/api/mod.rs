//! The node API: the one place where requests become reads of the applied state or Raft
//! proposals. gRPC, the HTTP JSON API (and later MCP and the status page) are thin adapters
//! over `NodeApi`; no business logic lives in a handler.

mod auth;
mod error;
mod status;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use cortex_cluster::{CortexRaft, StateMachineStore};
use cortex_model::command::{Command, Outcome};
use cortex_model::node::{validate_label, NodeRecord};
use cortex_model::token::Scope;
use cortex_model::{NodeId, UnixMillis};
use openraft::error::{ClientWriteError, RaftError};

pub use auth::{generate_token, sha256_hex, Caller};
pub use error::ApiError;

#[derive(Clone)]
pub struct NodeApi {
    inner: Arc<Inner>,
}

struct Inner {
    raft: CortexRaft,
    sm: StateMachineStore,
    node_id: NodeId,
    node_name: String,
    started: Instant,
}

pub fn now_ms() -> UnixMillis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl NodeApi {
    pub fn new(raft: CortexRaft, sm: StateMachineStore, node_id: NodeId, node_name: String) -> Self {
        NodeApi {
            inner: Arc::new(Inner {
                raft,
                sm,
                node_id,
                node_name,
                started: Instant::now(),
            }),
        }
    }

    pub fn raft(&self) -> &CortexRaft {
        &self.inner.raft
    }

    /// Checks a bearer token against the tokens in the applied state.
    pub fn authorize(&self, bearer: Option<&str>, need: Scope) -> Result<Caller, ApiError> {
        auth::authorize(&self.inner.sm, bearer, need, now_ms())
    }

    pub fn list_nodes(&self) -> Vec<NodeRecord> {
        self.inner.sm.state().nodes.values().cloned().collect()
    }

    pub fn get_node(&self, key: &str) -> Result<NodeRecord, ApiError> {
        let state = self.inner.sm.state();
        match state.find_node(key) {
            Some(n) => Ok(n.clone()),
            None => Err(ApiError::node_not_found(key, state.nodes.values())),
        }
    }

    /// Sets and removes labels on a node. Needs scope `operate`.
    pub async fn set_labels(
        &self,
        caller: &Caller,
        key: &str,
        set: BTreeMap<String, String>,
        remove: Vec<String>,
    ) -> Result<NodeRecord, ApiError> {
        caller.require(Scope::Operate)?;
        for (k, v) in &set {
            validate_label(k, v).map_err(|m| ApiError::invalid("set", m))?;
        }
        if let Some(k) = remove.iter().find(|k| k.is_empty()) {
            return Err(ApiError::invalid(
                "remove",
                format!("label key {k:?} must not be empty"),
            ));
        }
        if set.is_empty() && remove.is_empty() {
            return Err(ApiError::invalid(
                "set",
                "nothing to change: give at least one label to set or remove",
            ));
        }
        let node = self.get_node(key)?;
        let outcome = self
            .write(Command::SetLabels {
                node_id: node.id,
                set,
                remove,
                at_ms: now_ms(),
            })
            .await?;
        match outcome {
            Outcome::Node { node } => Ok(*node),
            other => Err(ApiError::Internal(format!("unexpected outcome {other:?}"))),
        }
    }

    /// Proposes a command through Raft and waits until it is committed and applied here.
    pub async fn write(&self, cmd: Command) -> Result<Outcome, ApiError> {
        match self.inner.raft.client_write(cmd).await {
            Ok(resp) => match resp.data {
                Outcome::Rejected { reason } => Err(ApiError::Rejected(reason)),
                other => Ok(other),
            },
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(ApiError::Unavailable(match (f.leader_id, f.leader_node) {
                    (Some(id), Some(node)) => {
                        format!(
                            "this node is not the Raft leader; the leader is node {id} at {}",
                            node.addr
                        )
                    }
                    _ => "this node is not the Raft leader and no leader is known yet; retry shortly".into(),
                }))
            }
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
                Err(ApiError::Internal(format!("membership change refused: {e}")))
            }
            Err(RaftError::Fatal(f)) => Err(ApiError::Unavailable(format!("the Raft node has stopped: {f}"))),
        }
    }
}
