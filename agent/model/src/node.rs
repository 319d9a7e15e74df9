//! The node record: what the cluster knows about one machine.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::inventory::Inventory;
use crate::{NodeId, UnixMillis};

/// Where a node is in its lifecycle (see docs/ARCHITECTURE.md, "Node lifecycle").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    Pending,
    Rejected,
    Ready,
    Suspect,
    Down,
    Draining,
    Left,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Pending => "pending",
            NodeState::Rejected => "rejected",
            NodeState::Ready => "ready",
            NodeState::Suspect => "suspect",
            NodeState::Down => "down",
            NodeState::Draining => "draining",
            NodeState::Left => "left",
        }
    }
}

/// What a node does in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeRole {
    /// A Raft voter: holds the log, serves the API, MCP, status page and PXE.
    Coordinator,
    /// Runs workloads; not a voter.
    Worker,
}

impl NodeRole {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeRole::Coordinator => "coordinator",
            NodeRole::Worker => "worker",
        }
    }
}

/// What a node says about itself when it registers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRegistration {
    pub id: NodeId,
    pub name: String,
    pub role: NodeRole,
    /// gRPC address other nodes and clients reach this node at.
    pub grpc_addr: String,
    /// HTTP address (health, JSON API).
    pub http_addr: String,
    pub inventory: Inventory,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub id: NodeId,
    pub name: String,
    pub role: NodeRole,
    pub state: NodeState,
    pub grpc_addr: String,
    pub http_addr: String,
    pub labels: BTreeMap<String, String>,
    pub inventory: Inventory,
    pub registered_at_ms: UnixMillis,
    pub updated_at_ms: UnixMillis,
    /// Join details, kept so an approver can match the request to a machine.
    #[serde(default)]
    pub join: Option<JoinInfo>,
    /// The node's certificate once approved (public).
    #[serde(default)]
    pub cert_pem: Option<String>,
    /// The node's measured self-benchmark summary, once it has published one.
    #[serde(default)]
    pub bench: Option<BenchSummary>,
    /// Container images in the node's local store (sorted), for Podman tasks.
    #[serde(default)]
    pub images: Vec<String>,
}

/// The figures placement and the surfaces use from a node's self-benchmark (`cortex bench`).
/// Each is a median over repeats; 0 means not measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BenchSummary {
    pub cpu_f64_gflops_all: f64,
    pub cpu_f64_gflops_one: f64,
    pub cpu_f32_gflops_all: f64,
    pub memory_triad_gbps: f64,
    pub disk_seq_read_mbps: f64,
    pub measured_at_ms: UnixMillis,
}

impl BenchSummary {
    /// Every figure must be a finite number ≥ 0 (0 = not measured). Checked before a summary
    /// is proposed (for a good error) and again in apply (for safety). The error names the
    /// figure.
    pub fn check(&self) -> Result<(), String> {
        for (name, v) in [
            ("cpu_f64_gflops_all", self.cpu_f64_gflops_all),
            ("cpu_f64_gflops_one", self.cpu_f64_gflops_one),
            ("cpu_f32_gflops_all", self.cpu_f32_gflops_all),
            ("memory_triad_gbps", self.memory_triad_gbps),
            ("disk_seq_read_mbps", self.disk_seq_read_mbps),
        ] {
            if !v.is_finite() || v < 0.0 {
                return Err(format!("{name} must be a finite number ≥ 0, got {v}"));
            }
        }
        Ok(())
    }
}

/// How a node asked to join.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinInfo {
    /// The node's certificate request (public key); signed on approval.
    pub csr_pem: String,
    /// Short code the node prints on its console.
    pub verification_code: String,
    /// The join token used (its public id), if any.
    pub token_id: Option<String>,
    /// Why it was rejected, if it was.
    pub reject_reason: Option<String>,
}

/// Live resources a node reports with each heartbeat (kept in memory, not in Raft).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    pub load_1m: f64,
    pub cpu_usage_percent: f32,
    pub memory_available_bytes: u64,
    pub disk_free_bytes: u64,
    /// Per-GPU utilisation in percent (empty without NVIDIA GPUs).
    pub gpu_utilization_percent: Vec<u32>,
}

/// Rules for label keys and values, checked before a command is proposed and again in apply.
pub fn validate_label(key: &str, value: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > 63 {
        return Err(format!("label key {key:?} must be 1 to 63 characters"));
    }
    let key_ok = key
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if !key_ok || !key.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(format!(
            "label key {key:?} must start with a letter or digit and contain only letters, digits, '-', '_', '.', '/'"
        ));
    }
    if value.len() > 255 {
        return Err(format!("label {key:?}: value must be at most 255 bytes"));
    }
    if value.chars().any(|c| c.is_control()) {
        return Err(format!(
            "label {key:?}: value must not contain control characters"
        ));
    }
    Ok(())
}
