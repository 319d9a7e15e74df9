//! The Raft log's payload: every change to the cluster state is one `Command`.
//!
//! Commands carry everything apply needs, including timestamps chosen by the proposer, so
//! apply never reads a clock.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::node::{
    BenchRequest, BenchSummary, JoinInfo, NetBenchRequest, NodeRecord, NodeRegistration, NodeState,
};
use crate::task::{NewTask, Placement, TaskId, TaskReport, WorkflowRecord};
use crate::token::TokenRecord;
use crate::{NodeId, UnixMillis};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Command {
    /// First entry of a new cluster. Applying it twice is a no-op.
    InitCluster {
        cluster_id: String,
        /// The cluster CA certificate (PEM). Public; the key never enters the log.
        #[serde(default)]
        ca_cert_pem: String,
        at_ms: UnixMillis,
    },
    /// A node announces (or re-announces, e.g. after a restart) itself and its inventory.
    RegisterNode {
        node: Box<NodeRegistration>,
        at_ms: UnixMillis,
    },
    /// Add/replace labels in `set`, then drop the keys in `remove`.
    SetLabels {
        node_id: NodeId,
        set: BTreeMap<String, String>,
        remove: Vec<String>,
        at_ms: UnixMillis,
    },
    CreateToken {
        token: TokenRecord,
    },
    /// A machine asks to join (or asks again). Creates a PENDING node, consuming one use of
    /// the join token, or refreshes a pending node's details.
    RequestJoin {
        node: Box<NodeRegistration>,
        join: JoinInfo,
        /// The node's quick-benchmark summary, measured before it asked (absent when it did
        /// not measure), so the approver sees its figures.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bench: Option<BenchSummary>,
        at_ms: UnixMillis,
    },
    /// A person approved a pending node; `cert_pem` was signed by the CA before proposing.
    ApproveNode {
        node_id: NodeId,
        cert_pem: String,
        at_ms: UnixMillis,
    },
    RejectNode {
        node_id: NodeId,
        reason: String,
        at_ms: UnixMillis,
    },
    /// Liveness and lifecycle changes: READY ⇄ SUSPECT ⇄ DOWN, DRAINING, LEFT.
    SetNodeState {
        node_id: NodeId,
        state: NodeState,
        reason: String,
        at_ms: UnixMillis,
    },
    RemoveNode {
        node_id: NodeId,
        at_ms: UnixMillis,
    },
    /// Ends a drain: the node takes new work again (READY if it is alive).
    UndrainNode {
        node_id: NodeId,
        at_ms: UnixMillis,
    },
    /// Independent commands from concurrent clients, proposed as one entry (group commit):
    /// applied in order, each with its own outcome. Batches do not nest.
    Batch {
        commands: Vec<Command>,
    },
    RevokeToken {
        id: String,
        at_ms: UnixMillis,
    },
    /// New tasks (one, a fan-out group, or a workflow): all are created or none.
    SubmitTasks {
        tasks: Vec<NewTask>,
        #[serde(default)]
        workflow: Option<WorkflowRecord>,
        #[serde(default)]
        submitted_by: Option<String>,
        /// Placements the proposer chose for tasks that can start at once (attempt 1), applied
        /// right after the tasks are created and re-checked like any placement. Saves a round.
        #[serde(default)]
        placements: Vec<Placement>,
        at_ms: UnixMillis,
    },
    /// The leader's scheduler decided where tasks run; each placement is re-checked.
    PlaceTasks {
        placements: Vec<Placement>,
        at_ms: UnixMillis,
    },
    /// A node reports on its attempts (started, output, finished); fenced by attempt number.
    ReportTasks {
        node_id: NodeId,
        reports: Vec<TaskReport>,
        at_ms: UnixMillis,
    },
    CancelTasks {
        task_ids: Vec<TaskId>,
        reason: String,
        at_ms: UnixMillis,
    },
    /// The container images in a node's local store (published by the node when they change).
    SetNodeImages {
        node_id: NodeId,
        images: Vec<String>,
        at_ms: UnixMillis,
    },
    /// A node's gRPC address changed (reported in its own heartbeats; see `node_addr.rs`).
    SetNodeAddr {
        node_id: NodeId,
        grpc_addr: String,
        at_ms: UnixMillis,
    },
    /// A node's self-benchmark summary (measured on the node, published by it).
    SetNodeBench {
        node_id: NodeId,
        bench: BenchSummary,
        /// The full report the summary was taken from (absent in entries from before it was
        /// kept: then the record keeps no report).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        report: Option<serde_json::Value>,
        /// The request this run answers (its `requested_at_ms`); apply clears that request.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        answers: Option<UnixMillis>,
        at_ms: UnixMillis,
    },
    /// Ask a node to run its self-benchmark again; it answers with `SetNodeBench`.
    RequestBench {
        node_id: NodeId,
        request: BenchRequest,
    },
    /// Ask a node to be the peer of a network throughput run (one pending per node).
    RequestNetBench {
        node_id: NodeId,
        request: NetBenchRequest,
    },
    /// The peer of a network run says where it listens for it.
    NetBenchListening {
        node_id: NodeId,
        /// The request's `requested_at_ms`.
        answers: UnixMillis,
        addr: String,
        at_ms: UnixMillis,
    },
    /// The peer of a network run records its report (figures or error); clears the request.
    SetNetBench {
        node_id: NodeId,
        answers: UnixMillis,
        /// `cortex-bench-net/…` JSON.
        report: serde_json::Value,
        /// One line for the event list (bounded).
        summary: String,
        at_ms: UnixMillis,
    },
}

impl Command {
    /// A short name for logs and metrics (never includes secrets).
    pub fn kind(&self) -> &'static str {
        match self {
            Command::InitCluster { .. } => "init_cluster",
            Command::RegisterNode { .. } => "register_node",
            Command::SetLabels { .. } => "set_labels",
            Command::CreateToken { .. } => "create_token",
            Command::RequestJoin { .. } => "request_join",
            Command::ApproveNode { .. } => "approve_node",
            Command::RejectNode { .. } => "reject_node",
            Command::SetNodeState { .. } => "set_node_state",
            Command::RemoveNode { .. } => "remove_node",
            Command::UndrainNode { .. } => "undrain_node",
            Command::Batch { .. } => "batch",
            Command::RevokeToken { .. } => "revoke_token",
            Command::SubmitTasks { .. } => "submit_tasks",
            Command::PlaceTasks { .. } => "place_tasks",
            Command::ReportTasks { .. } => "report_tasks",
            Command::CancelTasks { .. } => "cancel_tasks",
            Command::SetNodeBench { .. } => "set_node_bench",
            Command::RequestBench { .. } => "request_bench",
            Command::RequestNetBench { .. } => "request_net_bench",
            Command::NetBenchListening { .. } => "net_bench_listening",
            Command::SetNetBench { .. } => "set_net_bench",
            Command::SetNodeImages { .. } => "set_node_images",
            Command::SetNodeAddr { .. } => "set_node_addr",
        }
    }
}

/// What applying a command produced. A rejected command changes nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Outcome {
    #[default]
    Done,
    Node {
        node: Box<NodeRecord>,
    },
    /// A node's labels after `SetLabels` (the record itself is not copied: a label write is
    /// the hot path, and the full record with inventory and benchmark report is kilobytes).
    /// In a `Batch` entry these are the labels after the whole entry (later writes in it
    /// included), one copy per node shared by every write to it: a batch of writes to one
    /// node copied its label map once per write, on every replica, for outcomes only the
    /// proposer reads.
    Labels {
        node_id: NodeId,
        name: String,
        labels: std::sync::Arc<BTreeMap<String, String>>,
    },
    Rejected {
        reason: String,
    },
    /// One outcome per command of a `Command::Batch`, in order.
    Batch {
        outcomes: Vec<Outcome>,
    },
    /// Tasks created or cancelled.
    Tasks {
        ids: Vec<TaskId>,
    },
    Placed(PlaceOutcome),
    /// Reports that were refused because their attempt is not current (the node must kill
    /// those attempts).
    Reports {
        stale: Vec<(TaskId, u32)>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PlaceOutcome {
    pub placed: Vec<TaskId>,
    /// Placements apply refused, with why (the scheduler retries on its next pass).
    pub refused: Vec<(TaskId, String)>,
}
