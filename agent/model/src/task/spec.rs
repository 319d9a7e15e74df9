//! The task spec: what a user asks for (product.md, "the task contract").

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// A plain process in its own cgroup.
    #[default]
    Exec,
    /// An ephemeral systemd-nspawn container from a rootfs directory or tarball.
    Nspawn,
    /// A Podman container from an image in the node's local store.
    Podman,
}

impl TaskKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::Exec => "exec",
            TaskKind::Nspawn => "nspawn",
            TaskKind::Podman => "podman",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkMode {
    /// A private network namespace with only loopback (the default).
    #[default]
    None,
    /// The node's own network.
    Host,
}

/// What the task reserves on its node. A value the user gave is also enforced as a limit;
/// an unset one reserves the default and is not limited (docs/ARCHITECTURE.md, "Placement").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceRequest {
    /// Thousandths of a core.
    #[serde(default)]
    pub cpu_millis: Option<u32>,
    #[serde(default)]
    pub memory_bytes: Option<u64>,
    #[serde(default)]
    pub gpus: u32,
    /// Maximum number of processes/threads (default 4096, always enforced).
    #[serde(default)]
    pub pids: Option<u32>,
}

impl ResourceRequest {
    pub const DEFAULT_CPU_MILLIS: u32 = 100;
    pub const DEFAULT_MEMORY_BYTES: u64 = 64 * 1024 * 1024;
    pub const DEFAULT_PIDS: u32 = 4096;

    pub fn reserved_cpu_millis(&self) -> u64 {
        u64::from(self.cpu_millis.unwrap_or(Self::DEFAULT_CPU_MILLIS))
    }
    pub fn reserved_memory_bytes(&self) -> u64 {
        self.memory_bytes.unwrap_or(Self::DEFAULT_MEMORY_BYTES)
    }
}

/// Where a task may run.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Constraints {
    /// Every label must match exactly.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// A node id or name.
    #[serde(default)]
    pub node: Option<String>,
    /// Minimum measured all-core f64 GFLOP/s (the self-benchmark).
    #[serde(default)]
    pub min_gflops: Option<f64>,
    /// Minimum measured memory bandwidth (STREAM triad, GB/s).
    #[serde(default)]
    pub min_mem_bw: Option<f64>,
    /// Only the N fastest ready nodes (by measured all-core f64 GFLOP/s).
    #[serde(default)]
    pub fastest: Option<u32>,
    /// At most one task of the same fan-out group per node.
    #[serde(default)]
    pub spread_group: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts in all, including the first (1 = never retry).
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// Wait before the second attempt; doubles each time, capped at `max_backoff_ms`.
    #[serde(default = "default_backoff")]
    pub backoff_ms: u64,
    #[serde(default = "default_max_backoff")]
    pub max_backoff_ms: u64,
    /// Non-zero exit codes that count as transient (retried). Any other non-zero exit is final.
    #[serde(default)]
    pub retry_exit_codes: Vec<i32>,
}

fn default_attempts() -> u32 {
    3
}
fn default_backoff() -> u64 {
    1000
}
fn default_max_backoff() -> u64 {
    60_000
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: default_attempts(),
            backoff_ms: default_backoff(),
            max_backoff_ms: default_max_backoff(),
            retry_exit_codes: Vec::new(),
        }
    }
}

impl RetryPolicy {
    /// Backoff before attempt `next` (2, 3, …).
    pub fn backoff_before(&self, next: u32) -> u64 {
        let doublings = next.saturating_sub(2).min(30);
        self.backoff_ms
            .saturating_mul(1u64 << doublings)
            .min(self.max_backoff_ms)
    }
}

/// Everything a user can ask of one task.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    /// Optional; unique within a workflow, where `depends_on` refers to it.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub kind: TaskKind,
    /// argv: `command[0]` is the program.
    pub command: Vec<String>,
    /// nspawn: rootfs directory or tarball on the node; podman: image reference.
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub workdir: Option<String>,
    /// The user the task runs as on its node: a name or a numeric uid. exec: default the
    /// node's `tasks.default_user` (`nobody`), root only where the node allows it; nspawn and
    /// podman: a user inside the container (default: the container's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default)]
    pub resources: ResourceRequest,
    #[serde(default)]
    pub constraints: Constraints,
    /// Killed after this long (each attempt).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    #[serde(default)]
    pub retry: RetryPolicy,
    /// Task ids, or names of tasks in the same workflow.
    #[serde(default)]
    pub depends_on: Vec<String>,
    #[serde(default)]
    pub network: NetworkMode,
    /// Output kept per task (both streams together); beyond it output is dropped and counted.
    /// 0 = the cluster default.
    #[serde(default)]
    pub log_limit_bytes: u64,
}
