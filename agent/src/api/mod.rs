//! The node API: the one place where requests become reads of the applied state or Raft
//! proposals. gRPC, the HTTP JSON API (and later MCP and the status page) are thin adapters
//! over `NodeApi`; no business logic lives in a handler.

mod auth;
mod batch;
mod bench;
mod counts;
mod error;
mod forward;
mod join;
mod liveness;
mod net_bench;
mod status;
pub mod tasks;
mod tokens;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use cortex_cluster::pki::ClusterCa;
use cortex_cluster::{CortexRaft, StateMachineStore};
use cortex_model::command::{Command, Outcome};
use cortex_model::node::{validate_label, NodeRecord, NodeState};
use cortex_model::token::Scope;
use cortex_model::{NodeId, UnixMillis};
use openraft::error::{ClientWriteError, RaftError};

pub use auth::{generate_token, sha256_hex, Caller};
pub use bench::Published;
pub use error::ApiError;
pub use join::JoinInput;
pub use liveness::Liveness;
pub use net_bench::{NetAsk, NetPublished};
pub use tokens::{JoinToken, NewToken};

#[derive(Clone)]
pub struct NodeApi {
    inner: Arc<Inner>,
}

struct Inner {
    raft: CortexRaft,
    sm: StateMachineStore,
    node_id: NodeId,
    node_name: String,
    grpc_addr: String,
    started: Instant,
    /// The CA with its key (coordinators): signs approved nodes' certificates.
    ca: ClusterCa,
    /// Writes received by a follower go to the leader through this (this node's certificate).
    forwarder: forward::Forwarder,
    liveness: Liveness,
    join_limiter: join::RateLimiter,
    /// Writes go through the group-commit batcher (`batch.rs`).
    writes: batch::Sender,
    task_log_limit: u64,
    /// Nodes whose new gRPC address is being recorded (`note_grpc_addr`).
    addr_updates: std::sync::Mutex<std::collections::HashSet<NodeId>>,
}

/// Everything a `NodeApi` is built from.
pub struct NodeApiParts {
    pub raft: CortexRaft,
    pub sm: StateMachineStore,
    pub node_id: NodeId,
    pub node_name: String,
    pub grpc_addr: String,
    pub ca: ClusterCa,
    /// This node's certificate and key (and the CA), for forwarding writes to the leader.
    pub node_creds: std::sync::Arc<cortex_cluster::pki::NodeCredentials>,
    /// `tasks.log_limit_bytes`: the log limit a submitted task gets when it sets none.
    pub task_log_limit: u64,
}

const LEADERSHIP_CHANGED: &str =
    "leadership changed while this write was in flight; it may or may not have been applied — check, then retry";

pub fn now_ms() -> UnixMillis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl NodeApi {
    /// Must be called inside a tokio runtime: it starts the write batcher.
    pub fn new(p: NodeApiParts) -> Self {
        let (writes, rx) = batch::channel();
        let api = NodeApi {
            inner: Arc::new(Inner {
                raft: p.raft,
                sm: p.sm,
                node_id: p.node_id,
                node_name: p.node_name,
                grpc_addr: p.grpc_addr,
                started: Instant::now(),
                ca: p.ca,
                forwarder: forward::Forwarder::new(p.node_creds),
                liveness: Liveness::default(),
                join_limiter: join::RateLimiter::default(),
                writes,
                task_log_limit: p.task_log_limit,
                addr_updates: Default::default(),
            }),
        };
        // The batcher holds a clone; it ends when the runtime does.
        tokio::spawn(batch::run(api.clone(), rx));
        api
    }

    pub fn node_id(&self) -> NodeId {
        self.inner.node_id
    }

    /// The Raft leader's id and gRPC address, as this node knows them.
    pub fn leader(&self) -> (Option<NodeId>, Option<String>) {
        let m = self.inner.raft.metrics().borrow().clone();
        let addr = m.current_leader.and_then(|id| {
            m.membership_config
                .membership()
                .get_node(&id)
                .map(|n| n.addr.clone())
        });
        (m.current_leader, addr)
    }

    pub fn liveness(&self) -> &Liveness {
        &self.inner.liveness
    }

    /// Recent events after `after_seq`, oldest first, at most `limit`.
    pub fn events(&self, after_seq: u64, limit: usize) -> Vec<cortex_model::state::Event> {
        let state = self.inner.sm.state();
        state
            .events
            .iter()
            .filter(|e| e.seq > after_seq)
            .take(limit)
            .cloned()
            .collect()
    }

    /// gRPC addresses of the coordinators that are READY (for heartbeats and failover).
    pub fn coordinator_addrs(&self) -> Vec<String> {
        let state = self.inner.sm.state();
        let mut addrs: Vec<String> = state
            .nodes
            .values()
            .filter(|n| n.role == cortex_model::node::NodeRole::Coordinator)
            .filter(|n| matches!(n.state, NodeState::Ready | NodeState::Suspect))
            .map(|n| n.grpc_addr.clone())
            .collect();
        if addrs.is_empty() {
            addrs.push(self.inner.grpc_addr.clone());
        }
        addrs
    }

    /// Approves a pending node: the CA signs its certificate request, then the approval is
    /// replicated. Needs scope `operate`.
    pub async fn approve_node(&self, caller: &Caller, key: &str) -> Result<NodeRecord, ApiError> {
        caller.require(Scope::Operate)?;
        let node = self.get_node(key)?;
        self.approve_pending(&node).await
    }

    pub(crate) async fn approve_pending(&self, node: &NodeRecord) -> Result<NodeRecord, ApiError> {
        if node.state != NodeState::Pending {
            return Err(ApiError::Rejected(format!(
                "node {} is {}, only a pending node can be approved",
                node.name,
                node.state.as_str()
            )));
        }
        let csr = node.join.as_ref().map(|j| j.csr_pem.clone()).unwrap_or_default();
        let cert_pem = self
            .inner
            .ca
            .sign_node(&csr, node.id, node.role.as_str())
            .map_err(|e| ApiError::Rejected(format!("cannot sign node {}'s certificate: {e}", node.name)))?;
        let out = self
            .write(Command::ApproveNode {
                node_id: node.id,
                cert_pem,
                at_ms: now_ms(),
            })
            .await?;
        match out {
            Outcome::Node { node } => Ok(*node),
            other => Err(ApiError::Internal(format!("unexpected outcome {other:?}"))),
        }
    }

    /// Drains a node: it stays a member but gets no new work. Needs scope `operate`.
    pub async fn drain_node(&self, caller: &Caller, key: &str) -> Result<NodeRecord, ApiError> {
        caller.require(Scope::Operate)?;
        let node = self.get_node(key)?;
        self.set_state(node.id, NodeState::Draining, "drained by an operator")
            .await
    }

    /// Ends a drain (scope operate): the node takes new work again, READY if it is alive.
    pub async fn undrain_node(&self, caller: &Caller, key: &str) -> Result<NodeRecord, ApiError> {
        caller.require(Scope::Operate)?;
        let node = self.get_node(key)?;
        if !node.drained {
            return Err(ApiError::Rejected(format!(
                "node {} is {}, not drained: nothing to undrain",
                node.name,
                node.state.as_str()
            )));
        }
        let cmd = Command::UndrainNode {
            node_id: node.id,
            at_ms: now_ms(),
        };
        match self.write(cmd).await? {
            Outcome::Node { node } => Ok(*node),
            other => Err(ApiError::Internal(format!("unexpected outcome {other:?}"))),
        }
    }

    /// A node that left and is heartbeating again is READY again (in the background: the
    /// heartbeat answer does not wait for Raft).
    pub fn rejoin_if_left(&self, node_id: NodeId) {
        let left = self
            .inner
            .sm
            .state()
            .nodes
            .get(&node_id)
            .is_some_and(|n| n.state == NodeState::Left);
        if left && self.leader().0 == Some(self.inner.node_id) {
            let api = self.clone();
            tokio::spawn(async move {
                if let Err(e) = api
                    .set_state(node_id, NodeState::Ready, "heartbeating again after leaving")
                    .await
                {
                    tracing::warn!(node_id, "could not mark a returning node ready: {e}");
                }
            });
        }
    }

    /// On the leader: a node whose heartbeat names another gRPC address than its record gets
    /// that address recorded (the membership reconciler moves a coordinator's Raft address to
    /// it). One proposal per node at a time; a failed one is retried by the next heartbeat.
    pub fn note_grpc_addr(&self, node_id: NodeId, grpc_addr: &str) {
        if grpc_addr.is_empty() || self.leader().0 != Some(self.inner.node_id) {
            return;
        }
        let moved = self
            .inner
            .sm
            .state()
            .nodes
            .get(&node_id)
            .is_some_and(|n| n.grpc_addr != grpc_addr);
        if !moved
            || !self
                .inner
                .addr_updates
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(node_id)
        {
            return;
        }
        let (api, addr) = (self.clone(), grpc_addr.to_string());
        tokio::spawn(async move {
            let cmd = Command::SetNodeAddr {
                node_id,
                grpc_addr: addr,
                at_ms: now_ms(),
            };
            if let Err(e) = api.write(cmd).await {
                tracing::warn!(node_id, "could not record a node's new gRPC address: {e}");
            }
            api.inner
                .addr_updates
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&node_id);
        });
    }

    /// `note_grpc_addr` for this node itself (the leader's heartbeats may not reach it while
    /// the others still know it by an old address).
    pub fn note_own_grpc_addr(&self) {
        let own = &self.inner.grpc_addr;
        if cortex_model::node_addr::check_grpc_addr(own).is_ok() {
            self.note_grpc_addr(self.inner.node_id, own);
        }
    }

    /// A node leaving on a clean stop (authenticated by its own certificate).
    pub async fn leave(&self, node_id: NodeId) -> Result<NodeRecord, ApiError> {
        self.set_state(node_id, NodeState::Left, "left the cluster on a clean shutdown")
            .await
    }

    async fn set_state(
        &self,
        node_id: NodeId,
        state: NodeState,
        reason: &str,
    ) -> Result<NodeRecord, ApiError> {
        let cmd = Command::SetNodeState {
            node_id,
            state,
            reason: reason.into(),
            at_ms: now_ms(),
        };
        match self.write(cmd).await? {
            Outcome::Node { node } => Ok(*node),
            other => Err(ApiError::Internal(format!("unexpected outcome {other:?}"))),
        }
    }

    /// Forgets a node: out of the Raft membership first (if it is in it), then out of the
    /// state. Needs scope `admin`. The last voter cannot be removed.
    pub async fn remove_node(&self, caller: &Caller, key: &str) -> Result<NodeRecord, ApiError> {
        caller.require(Scope::Admin)?;
        let node = self.get_node(key)?;
        let membership = self
            .inner
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .clone();
        let voters: std::collections::BTreeSet<u64> = membership.voter_ids().collect();
        let is_learner = membership.learner_ids().any(|l| l == node.id);
        if voters.contains(&node.id) {
            if voters.len() == 1 {
                return Err(ApiError::Rejected(format!(
                    "node {} is the last Raft voter and cannot be removed",
                    node.name
                )));
            }
            let remove = std::collections::BTreeSet::from([node.id]);
            self.inner
                .raft
                .change_membership(openraft::ChangeMembers::RemoveVoters(remove), false)
                .await
                .map_err(|e| {
                    ApiError::Unavailable(format!("could not take node {} out of Raft: {e}", node.name))
                })?;
        } else if is_learner {
            let remove = std::collections::BTreeSet::from([node.id]);
            self.inner
                .raft
                .change_membership(openraft::ChangeMembers::RemoveNodes(remove), false)
                .await
                .map_err(|e| {
                    ApiError::Unavailable(format!("could not take node {} out of Raft: {e}", node.name))
                })?;
        }
        self.write(Command::RemoveNode {
            node_id: node.id,
            at_ms: now_ms(),
        })
        .await?;
        Ok(node)
    }

    /// Rejects a pending node; it is told on its next poll and stops asking.
    pub async fn reject_node(
        &self,
        caller: &Caller,
        key: &str,
        reason: &str,
    ) -> Result<NodeRecord, ApiError> {
        caller.require(Scope::Operate)?;
        let node = self.get_node(key)?;
        let reason = if reason.trim().is_empty() {
            "rejected by an operator".to_string()
        } else {
            reason.to_string()
        };
        match self
            .write(Command::RejectNode {
                node_id: node.id,
                reason,
                at_ms: now_ms(),
            })
            .await?
        {
            Outcome::Node { node } => Ok(*node),
            other => Err(ApiError::Internal(format!("unexpected outcome {other:?}"))),
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
            None => Err(not_found(&state, key)),
        }
    }

    /// The id of the node a key (id or unique name) names, without copying its record.
    pub fn resolve_node(&self, key: &str) -> Result<NodeId, ApiError> {
        let state = self.inner.sm.state();
        match state.find_node(key) {
            Some(n) => Ok(n.id),
            None => Err(not_found(&state, key)),
        }
    }

    /// Sets and removes labels on a node. Needs scope `operate`.
    pub async fn set_labels(
        &self,
        caller: &Caller,
        key: &str,
        set: BTreeMap<String, String>,
        remove: Vec<String>,
    ) -> Result<NodeLabels, ApiError> {
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
        let node_id = self.resolve_node(key)?;
        let outcome = self
            .write(Command::SetLabels {
                node_id,
                set,
                remove,
                at_ms: now_ms(),
            })
            .await?;
        match outcome {
            Outcome::Labels {
                node_id,
                name,
                labels,
            } => Ok(NodeLabels {
                id: node_id,
                name,
                labels,
            }),
            other => Err(ApiError::Internal(format!("unexpected outcome {other:?}"))),
        }
    }

    /// Resolves once this node is no longer the Raft leader (at once if it is not).
    async fn leadership_lost(&self) {
        let mut metrics = self.inner.raft.metrics();
        loop {
            {
                let m = metrics.borrow_and_update();
                if m.current_leader != Some(self.inner.node_id) || m.state != openraft::ServerState::Leader {
                    return;
                }
            }
            if metrics.changed().await.is_err() {
                return;
            }
        }
    }

    /// Resolves once this node's view of the leader has moved away from `leader`: another
    /// leader is known, or, after this node saw `leader` lead, none is (an election is under
    /// way). Not knowing any leader yet is not a move: the metrics may lag the Raft core that
    /// named `leader` a moment ago.
    async fn leader_moved_from(&self, leader: Option<NodeId>) {
        let mut metrics = self.inner.raft.metrics();
        let mut seen = false;
        loop {
            let now = metrics.borrow_and_update().current_leader;
            if now == leader {
                seen = true;
            } else if seen || now.is_some() {
                return;
            }
            if metrics.changed().await.is_err() {
                return;
            }
        }
    }

    /// Sends a write to the leader this node knows. If that changes before the answer comes (the
    /// leader froze or was cut off, and an election followed), the answer is not waited for: it
    /// would hold the caller for the whole forward timeout while a new leader could take the
    /// write. Whether the old leader applied it is then unknown, and the error says so.
    async fn forward(&self, leader: Option<NodeId>, addr: &str, cmd: &Command) -> Result<Outcome, ApiError> {
        tokio::select! {
            r = self.inner.forwarder.to_leader(addr, cmd) => r,
            () = self.leader_moved_from(leader) => Err(ApiError::Unavailable(format!(
                "the Raft leader changed while this write was forwarded to {addr}; it may or may not \
                 have been applied — check, then retry"
            ))),
        }
    }

    /// Proposes a command through Raft and waits until it is committed and applied here.
    /// On a follower the command is forwarded to the leader, so callers never see
    /// "not leader".
    pub async fn write(&self, cmd: Command) -> Result<Outcome, ApiError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.inner
            .writes
            .send((cmd, tx))
            .await
            .map_err(|_| ApiError::Unavailable("this node is shutting down".into()))?;
        rx.await
            .map_err(|_| ApiError::Unavailable("this node is shutting down".into()))?
    }

    /// Queues a write behind those already queued and returns where its result will arrive,
    /// without waiting: a caller can keep several writes in flight and still have them
    /// proposed in the order it queued them.
    pub async fn enqueue_write(
        &self,
        cmd: Command,
    ) -> Result<tokio::sync::oneshot::Receiver<Result<Outcome, ApiError>>, ApiError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.inner
            .writes
            .send((cmd, tx))
            .await
            .map_err(|_| ApiError::Unavailable("this node is shutting down".into()))?;
        Ok(rx)
    }

    /// Proposes one entry (forwarded to the leader on a follower). Used by the batcher.
    async fn propose(&self, cmd: Command) -> Result<Outcome, ApiError> {
        self.write_local(cmd, true).await
    }

    /// Proposes locally; forwards to the leader only when `forward` is set.
    ///
    /// Forwarding happens only when this node knows it is not the leader *before* proposing:
    /// then nothing was appended here and the leader applies the command exactly once. A
    /// proposal that was appended here and then lost its leader is ambiguous (the new leader may
    /// or may not have it), so it is reported, never silently re-proposed.
    pub(crate) async fn write_local(&self, cmd: Command, forward: bool) -> Result<Outcome, ApiError> {
        let (leader, leader_addr) = self.leader();
        if leader.is_some() && leader != Some(self.inner.node_id) {
            return match (leader_addr, forward) {
                (Some(addr), true) => self.forward(leader, &addr, &cmd).await,
                (Some(addr), false) => Err(ApiError::Unavailable(format!(
                    "this node is not the Raft leader either; the leader is at {addr}"
                ))),
                (None, _) => Err(ApiError::Unavailable(
                    "the Raft leader's address is not known yet; retry shortly".into(),
                )),
            };
        }
        // Kept for a `ForwardToLeader` answer, which can only be forwarded when this node did
        // not think it led: a leader's proposal never needs the copy (a batch of 64 writes
        // was cloned for nothing on every write).
        let copy = (forward && leader != Some(self.inner.node_id)).then(|| cmd.clone());
        let proposed = self.inner.raft.client_write(cmd);
        let result = if leader == Some(self.inner.node_id) {
            // Appended here as the leader: if this node stops leading before the entry commits
            // (a node that restarted believing it led, a partition, a newer term), the outcome
            // is decided elsewhere. Stop waiting then, so neither the caller nor the writes
            // queued behind this one in the batcher wait for an entry that may never commit.
            tokio::select! {
                r = proposed => r,
                () = self.leadership_lost() => return Err(ApiError::Unavailable(LEADERSHIP_CHANGED.into())),
            }
        } else {
            proposed.await
        };
        match result {
            Ok(resp) => match resp.data {
                Outcome::Rejected { reason } => Err(ApiError::Rejected(reason)),
                other => Ok(other),
            },
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => match f.leader_id {
                Some(id) if id != self.inner.node_id && leader != Some(self.inner.node_id) => {
                    // We did not think we led, so nothing was appended: safe to send on.
                    match (f.leader_node, copy) {
                        (Some(node), Some(cmd)) => {
                            tracing::info!(kind = cmd.kind(), leader = %node.addr, "forwarding a write to the leader (not appended here)");
                            self.forward(Some(id), &node.addr, &cmd).await
                        }
                        _ => Err(ApiError::Unavailable(format!(
                            "this node is not the Raft leader; node {id} is"
                        ))),
                    }
                }
                _ if leader == Some(self.inner.node_id) => {
                    Err(ApiError::Unavailable(LEADERSHIP_CHANGED.into()))
                }
                _ => Err(ApiError::Unavailable(
                    "no Raft leader is known right now (an election may be in progress); retry shortly"
                        .into(),
                )),
            },
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
                Err(ApiError::Internal(format!("membership change refused: {e}")))
            }
            Err(RaftError::Fatal(f)) => Err(ApiError::Unavailable(format!("the Raft node has stopped: {f}"))),
        }
    }
}

/// A node's labels after a label write: what `set_labels` answers (not the whole record).
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeLabels {
    pub id: NodeId,
    pub name: String,
    /// Shared with the write's outcome (and the other writes of its entry): read, not copied.
    pub labels: std::sync::Arc<BTreeMap<String, String>>,
}

/// "No such node", or "ambiguous name" when several nodes share the name.
fn not_found(state: &cortex_model::state::ClusterState, key: &str) -> ApiError {
    let same_name: Vec<String> = state
        .nodes
        .values()
        .filter(|n| n.name == key)
        .map(|n| n.id.to_string())
        .collect();
    if same_name.len() > 1 {
        return ApiError::NotFound(format!(
            "the name {key:?} is ambiguous: nodes {} share it; use the id",
            same_name.join(", ")
        ));
    }
    ApiError::node_not_found(key, state.nodes.values())
}
