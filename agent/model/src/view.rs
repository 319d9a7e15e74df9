//! Read models shared by every surface (gRPC, JSON API, CLI output).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{NodeId, UnixMillis};

/// The cluster as seen by one node: its Raft view plus counts from the applied state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterStatus {
    pub cluster_id: String,
    /// The node that answered.
    pub node_id: NodeId,
    pub node_name: String,
    /// "leader", "follower", "candidate", "learner" or "shutdown".
    pub raft_role: String,
    pub leader_id: Option<NodeId>,
    pub term: u64,
    pub commit_index: Option<u64>,
    pub applied_index: Option<u64>,
    pub last_log_index: Option<u64>,
    pub voters: Vec<NodeId>,
    pub learners: Vec<NodeId>,
    pub nodes_total: u32,
    pub nodes_by_state: BTreeMap<String, u32>,
    pub version: String,
    pub uptime_ms: u64,
    pub created_at_ms: UnixMillis,
    /// SHA-256 (hex) of the cluster CA certificate.
    pub ca_fingerprint: String,
}
