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
    /// Drained by an operator: no new work until undrained. Kept through SUSPECT and DOWN (a
    /// drained node that returns is DRAINING again, not READY); `state` says DRAINING while
    /// it is drained and alive.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub drained: bool,
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
    /// The node's latest full self-benchmark report, as `cortex bench -o json` prints it
    /// (format `cortex-bench/…`): every figure with its spread and conditions. Absent in
    /// records from before it was kept, and when the node published only a summary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bench_report: Option<serde_json::Value>,
    /// Someone asked the node to measure itself again; cleared when the node publishes the
    /// run that answers it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bench_request: Option<BenchRequest>,
    /// The latest network throughput run with this node as the peer (`cortex bench net`;
    /// format `cortex-bench-net/…`), failed runs included (they carry an `error`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net_bench: Option<serde_json::Value>,
    /// A network throughput run asked of this node and not answered yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net_bench_request: Option<NetBenchRequest>,
}

/// Largest full benchmark report kept on a node record, in bytes of compact JSON (a report
/// is about 4–8 KiB; the bound leaves room for many interfaces and GPUs).
pub const MAX_BENCH_REPORT_BYTES: usize = 64 * 1024;

/// Checks a full benchmark report before it is proposed and again in apply: a JSON object
/// with a `format` of `cortex-bench/<version>`, at most [`MAX_BENCH_REPORT_BYTES`].
pub fn check_bench_report(report: &serde_json::Value) -> Result<(), String> {
    let Some(obj) = report.as_object() else {
        return Err("the report must be a JSON object".into());
    };
    match obj.get("format").and_then(|f| f.as_str()) {
        Some(f) if f.starts_with("cortex-bench/") => {}
        Some(f) => return Err(format!("format must be cortex-bench/<version>, got {f:?}")),
        None => return Err("the report has no format (cortex-bench/<version>)".into()),
    }
    let size = serde_json::to_string(report)
        .map(|s| s.len())
        .unwrap_or(usize::MAX);
    if size > MAX_BENCH_REPORT_BYTES {
        return Err(format!(
            "the report is {size} bytes of JSON, more than the {MAX_BENCH_REPORT_BYTES} allowed"
        ));
    }
    Ok(())
}

/// A request for a node to run its self-benchmark again (`cortex bench --publish`, the
/// `RunBenchmark` API, the MCP tool `run_benchmark`). The node sees it in its heartbeat answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BenchRequest {
    /// When it was asked (the proposer's clock); the node's answer names it.
    pub requested_at_ms: UnixMillis,
    /// The short run (≤ 5 s) instead of the full one (≤ 20 s).
    #[serde(default)]
    pub quick: bool,
    /// The token id that asked.
    #[serde(default)]
    pub by: Option<String>,
}

/// Most seconds per direction of a network throughput run.
pub const MAX_NET_BENCH_SECONDS: u32 = 30;
/// Largest network report kept on a node record (one is about 2 KiB).
pub const MAX_NET_BENCH_REPORT_BYTES: usize = 16 * 1024;

/// A request for a network throughput run with this node as the peer (`cortex bench net
/// --peer`, scope operate). The node sees it in its heartbeat answer, opens a one-time TCP
/// listener, says where (`listening`), and answers with the run's report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetBenchRequest {
    /// When it was asked (the proposer's clock); the node's answers name it.
    pub requested_at_ms: UnixMillis,
    /// Seconds per direction, 1 to [`MAX_NET_BENCH_SECONDS`].
    pub seconds: u32,
    /// SHA-256 (64 lowercase hex digits) of the one-time secret the asking side will present
    /// on the data connection. The secret itself never enters the state.
    pub secret_sha256: String,
    /// The token id that asked.
    #[serde(default)]
    pub by: Option<String>,
    /// The asking machine, as it named itself.
    #[serde(default)]
    pub from: Option<String>,
    /// `ip:port` the node listens on for this run, once it does.
    #[serde(default)]
    pub listening: Option<String>,
}

impl NetBenchRequest {
    pub fn check(&self) -> Result<(), String> {
        if !(1..=MAX_NET_BENCH_SECONDS).contains(&self.seconds) {
            return Err(format!(
                "seconds must be 1 to {MAX_NET_BENCH_SECONDS}, got {}",
                self.seconds
            ));
        }
        if self.secret_sha256.len() != 64
            || !self
                .secret_sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err("secret_sha256 must be 64 lowercase hex digits".into());
        }
        if self.from.as_ref().is_some_and(|f| f.len() > 253) {
            return Err("from must be at most 253 bytes".into());
        }
        Ok(())
    }

    /// After this a request no one answered no longer blocks a new one (the node's own bound
    /// on a run is well inside it).
    pub fn expires_at_ms(&self) -> UnixMillis {
        self.requested_at_ms
            .saturating_add((2 * u64::from(self.seconds) + 90) * 1000)
    }
}

/// Checks a network report before it is proposed and again in apply: a JSON object with a
/// `format` of `cortex-bench-net/<version>`, at most [`MAX_NET_BENCH_REPORT_BYTES`].
pub fn check_net_bench_report(report: &serde_json::Value) -> Result<(), String> {
    let Some(obj) = report.as_object() else {
        return Err("the report must be a JSON object".into());
    };
    match obj.get("format").and_then(|f| f.as_str()) {
        Some(f) if f.starts_with("cortex-bench-net/") => {}
        Some(f) => return Err(format!("format must be cortex-bench-net/<version>, got {f:?}")),
        None => return Err("the report has no format (cortex-bench-net/<version>)".into()),
    }
    let size = serde_json::to_string(report)
        .map(|s| s.len())
        .unwrap_or(usize::MAX);
    if size > MAX_NET_BENCH_REPORT_BYTES {
        return Err(format!(
            "the report is {size} bytes of JSON, more than the {MAX_NET_BENCH_REPORT_BYTES} allowed"
        ));
    }
    Ok(())
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
