//! The tools' arguments: flat, unit-explicit shapes a model can fill in (`memory_mb`,
//! `timeout_seconds`, `cpu` in cores), with doc comments that become the JSON Schema's
//! descriptions, and their translation into the API's types.

use std::collections::BTreeMap;

use cortex_model::task::{
    Constraints, NetworkMode, ResourceRequest, RetryPolicy, TaskKind, TaskSpec, TaskState,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::error::{ToolError, ToolResult};

/// No arguments.
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct NoArgs {}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A plain process on the node, in its own cgroup.
    #[default]
    Exec,
    /// A systemd-nspawn container from the rootfs directory or tarball named by `image`.
    Nspawn,
    /// A Podman container from the image named by `image` (in the node's local store).
    Podman,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Network {
    /// A private network namespace with only loopback (the default).
    None,
    /// The node's own network.
    Host,
}

/// One task: the task contract, with explicit units.
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct TaskArgs {
    /// The program and its arguments (argv), e.g. ["python3", "train.py", "--epochs", "3"]. Not
    /// run through a shell: use ["sh", "-c", "make && make test"] for pipes, globs or `&&`.
    pub command: Vec<String>,
    /// How to run it: exec (a plain process, the default), nspawn or podman.
    #[serde(default)]
    pub kind: Kind,
    /// nspawn: a rootfs directory or tarball path on the node. podman: an image reference in
    /// the node's local store (e.g. localhost/tools:1). Not for exec.
    #[serde(default)]
    pub image: Option<String>,
    /// Environment variables. The task sees only these plus a minimal PATH.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory (default: a scratch directory removed afterwards).
    #[serde(default)]
    pub workdir: Option<String>,
    /// The user to run as (name or uid). exec: default the node's default user (nobody); root
    /// only where the node allows it. nspawn/podman: a user inside the container.
    #[serde(default)]
    pub user: Option<String>,
    /// CPU cores to reserve and limit the task to, e.g. 0.5 or 4 (default: 0.1 reserved, no limit).
    #[serde(default)]
    pub cpu: Option<f64>,
    /// Memory in MiB to reserve and limit the task to (default: 64 reserved, no limit).
    #[serde(default)]
    pub memory_mb: Option<u64>,
    /// GPUs to reserve (default 0).
    #[serde(default)]
    pub gpus: Option<u32>,
    /// Most processes and threads the task may have (default 4096).
    #[serde(default)]
    pub pids: Option<u32>,
    /// Only nodes carrying all of these labels, e.g. {"zone": "lab"}.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Only this node (id or name).
    #[serde(default)]
    pub node: Option<String>,
    /// Only nodes that measured at least this many f64 GFLOP/s on all cores.
    #[serde(default)]
    pub min_gflops: Option<f64>,
    /// Only nodes that measured at least this memory bandwidth (STREAM triad), in GB/s.
    #[serde(default)]
    pub min_mem_bw: Option<f64>,
    /// Only the N fastest ready nodes (measured GFLOP/s).
    #[serde(default)]
    pub fastest: Option<u32>,
    /// Kill each attempt after this many seconds (default: no limit).
    #[serde(default)]
    pub timeout_seconds: Option<f64>,
    /// Retries after a transient failure: node lost, executor error, or an exit code in
    /// retry_exit_codes (default 2; any other non-zero exit is final).
    #[serde(default)]
    pub retries: Option<u32>,
    /// Non-zero exit codes that count as transient and are retried.
    #[serde(default)]
    pub retry_exit_codes: Vec<i32>,
    /// Tasks this one waits for: names of tasks in the same workflow, or task ids. If one fails
    /// or is cancelled, this task is cancelled.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// The task's network: none (private, loopback only; the default) or host.
    #[serde(default)]
    pub network: Option<Network>,
    /// A name (letters, digits, '-', '_', '.'); unique within a workflow, where depends_on uses it.
    #[serde(default)]
    pub name: Option<String>,
    /// Output kept per attempt in bytes (default 1 MiB); more is dropped and counted.
    #[serde(default)]
    pub log_limit_bytes: Option<u64>,
}

/// Most seconds a tool call waits for work to finish.
pub const MAX_WAIT_SECONDS: u32 = 300;

#[derive(Debug, Deserialize, JsonSchema)]
pub struct SubmitTaskArgs {
    #[serde(flatten)]
    pub task: TaskArgs,
    /// Wait up to this many seconds (max 300) for the task to finish, reporting progress, and
    /// return its state, exit code and the end of its output. 0 or absent: return at once.
    #[serde(default)]
    pub wait_seconds: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct RunOnAllArgs {
    #[serde(flatten)]
    pub task: TaskArgs,
    /// Run on this many distinct ready nodes instead of on every ready node.
    #[serde(default)]
    pub count: Option<u32>,
    /// Wait up to this many seconds (max 300) for every copy to finish and return each one's
    /// state, exit code and end of output. 0 or absent: return at once.
    #[serde(default)]
    pub wait_seconds: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct WorkflowArgs {
    /// The workflow's name (letters, digits, '-', '_', '.').
    pub name: String,
    /// Its tasks (each with a unique name); depends_on refers to other tasks by name.
    pub tasks: Vec<TaskArgs>,
    /// Wait up to this many seconds (max 300) for the whole workflow to finish. 0 or absent:
    /// return at once.
    #[serde(default)]
    pub wait_seconds: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum NodeStateArg {
    Pending,
    Rejected,
    Ready,
    Suspect,
    Down,
    Draining,
    Left,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RoleArg {
    Coordinator,
    Worker,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct ListNodesArgs {
    /// Only nodes in this state.
    #[serde(default)]
    pub state: Option<NodeStateArg>,
    /// Only nodes with this role.
    #[serde(default)]
    pub role: Option<RoleArg>,
    /// Only nodes carrying all of these labels, e.g. {"gpu": "a100"}.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// At most this many nodes (default 50, max 500).
    #[serde(default)]
    pub limit: Option<u32>,
    /// Skip this many (for the next page: the previous answer's next_offset).
    #[serde(default)]
    pub offset: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct NodeArgs {
    /// Node id or name.
    pub node: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct RunBenchmarkArgs {
    /// Node id or name.
    pub node: String,
    /// The short run (at most 5 s) instead of the full one (at most 20 s). Default false.
    #[serde(default)]
    pub quick: Option<bool>,
    /// Wait up to this many seconds (max 120) for the node to record the new figures and
    /// return them. 0 or absent: return at once (the node runs it in the background).
    #[serde(default)]
    #[schemars(range(min = 0, max = 120))]
    pub wait_seconds: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct RunNetBenchmarkArgs {
    /// The peer node (id or name). The coordinator serving this call is the other end: it
    /// connects to the peer and measures both directions.
    pub node: String,
    /// Seconds timed per direction, after a 0.5 s warm-up (1 to 30, default 5).
    #[serde(default)]
    #[schemars(range(min = 1, max = 30))]
    pub seconds: Option<u32>,
    /// Wait up to this many seconds (max 120) for the peer to record the result and return
    /// the figures; the run takes about 2 × seconds + 2 s. 0 or absent: return at once.
    #[serde(default)]
    #[schemars(range(min = 0, max = 120))]
    pub wait_seconds: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct RejectArgs {
    /// Node id or name.
    pub node: String,
    /// Why (the node is told).
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct TaskIdArgs {
    /// The task id (t + 12 hex digits), as submit_task or list_tasks returned it.
    pub task_id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct CancelArgs {
    /// The task id. Tasks that depend on it are cancelled too.
    pub task_id: String,
    /// Why (kept with the task).
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskStateArg {
    Pending,
    Placed,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    Lost,
}

impl TaskStateArg {
    pub fn state(self) -> TaskState {
        match self {
            TaskStateArg::Pending => TaskState::Pending,
            TaskStateArg::Placed => TaskState::Placed,
            TaskStateArg::Running => TaskState::Running,
            TaskStateArg::Succeeded => TaskState::Succeeded,
            TaskStateArg::Failed => TaskState::Failed,
            TaskStateArg::Cancelled => TaskState::Cancelled,
            TaskStateArg::Lost => TaskState::Lost,
        }
    }
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct ListTasksArgs {
    /// Only tasks in these states.
    #[serde(default)]
    pub states: Vec<TaskStateArg>,
    /// Only tasks on this node (id or name).
    #[serde(default)]
    pub node: Option<String>,
    /// Only tasks of this workflow (its id).
    #[serde(default)]
    pub workflow: Option<String>,
    /// Only tasks of this fan-out group (its id, from run_on_all_nodes).
    #[serde(default)]
    pub group: Option<String>,
    /// Only dead-lettered tasks (failed after all their retries).
    #[serde(default)]
    pub dead: bool,
    /// At most this many, newest first (default 20, max 200).
    #[serde(default)]
    pub limit: Option<u32>,
    /// Next page: the previous answer's next_before (a task id).
    #[serde(default)]
    pub before: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct TaskLogsArgs {
    /// The task id.
    pub task_id: String,
    /// Read from this byte offset in the task's log (the previous answer's next_offset).
    #[serde(default)]
    pub offset: Option<u64>,
    /// Read at most this many bytes (default 16384, max 262144).
    #[serde(default)]
    pub max_bytes: Option<u64>,
    /// Read only the last N bytes of the log so far (instead of offset).
    #[serde(default)]
    pub tail: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct WorkflowKeyArgs {
    /// Workflow id (w + 12 hex digits) or name (the newest with that name).
    pub workflow: String,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct ListEventsArgs {
    /// Only events after this sequence number, oldest first (to follow the timeline). Without
    /// it: the most recent events.
    #[serde(default)]
    pub after_seq: Option<u64>,
    /// At most this many (default 30, max 200).
    #[serde(default)]
    pub limit: Option<u32>,
}

fn positive(field: &str, v: f64) -> ToolResult<f64> {
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(ToolError::invalid(format!(
            "invalid {field}: must be a positive number, got {v}"
        )))
    }
}

impl TaskArgs {
    /// The API's task spec. `field` prefixes error paths (`tasks[2].`).
    pub fn into_spec(self, field: &str) -> ToolResult<TaskSpec> {
        let cpu_millis = match self.cpu {
            Some(c) => {
                let millis = (positive(&format!("{field}cpu"), c)? * 1000.0).round();
                if millis > f64::from(u32::MAX) {
                    return Err(ToolError::invalid(format!(
                        "invalid {field}cpu: {c} cores is too many"
                    )));
                }
                Some((millis as u32).max(1))
            }
            None => None,
        };
        let memory_bytes =
            match self.memory_mb {
                Some(mb) => Some(mb.checked_mul(1 << 20).ok_or_else(|| {
                    ToolError::invalid(format!("invalid {field}memory_mb: {mb} is too large"))
                })?),
                None => None,
            };
        let timeout_ms = match self.timeout_seconds {
            Some(s) => Some((positive(&format!("{field}timeout_seconds"), s)? * 1000.0).ceil() as u64),
            None => None,
        };
        let retry = RetryPolicy {
            max_attempts: self
                .retries
                .map_or(RetryPolicy::default().max_attempts, |r| r.saturating_add(1)),
            retry_exit_codes: self.retry_exit_codes,
            ..RetryPolicy::default()
        };
        Ok(TaskSpec {
            name: self.name,
            kind: match self.kind {
                Kind::Exec => TaskKind::Exec,
                Kind::Nspawn => TaskKind::Nspawn,
                Kind::Podman => TaskKind::Podman,
            },
            command: self.command,
            image: self.image,
            env: self.env,
            workdir: self.workdir,
            user: self.user,
            resources: ResourceRequest {
                cpu_millis,
                memory_bytes,
                gpus: self.gpus.unwrap_or(0),
                pids: self.pids,
            },
            constraints: Constraints {
                labels: self.labels,
                node: self.node,
                min_gflops: self.min_gflops,
                min_mem_bw: self.min_mem_bw,
                fastest: self.fastest,
                spread_group: false,
            },
            timeout_ms,
            retry,
            depends_on: self.depends_on,
            network: match self.network {
                None | Some(Network::None) => NetworkMode::None,
                Some(Network::Host) => NetworkMode::Host,
            },
            log_limit_bytes: self.log_limit_bytes.unwrap_or(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_become_the_specs() {
        let args: SubmitTaskArgs = serde_json::from_value(serde_json::json!({
            "command": ["sh", "-c", "echo hi"], "cpu": 0.5, "memory_mb": 256, "timeout_seconds": 1.5,
            "retries": 0, "retry_exit_codes": [75], "network": "host", "labels": {"zone": "a"},
            "wait_seconds": 10
        }))
        .expect("parse");
        assert_eq!(args.wait_seconds, Some(10));
        let spec = args.task.into_spec("").expect("spec");
        assert_eq!(spec.resources.cpu_millis, Some(500));
        assert_eq!(spec.resources.memory_bytes, Some(256 << 20));
        assert_eq!(spec.timeout_ms, Some(1500));
        assert_eq!(spec.retry.max_attempts, 1);
        assert_eq!(spec.retry.retry_exit_codes, vec![75]);
        assert_eq!(spec.network, NetworkMode::Host);
        assert_eq!(spec.constraints.labels.get("zone").map(String::as_str), Some("a"));
    }

    #[test]
    fn nonsense_numbers_are_refused_naming_the_argument() {
        let args = TaskArgs {
            command: vec!["x".into()],
            cpu: Some(-1.0),
            ..TaskArgs::default()
        };
        let e = args.into_spec("tasks[1].").expect_err("negative cpu");
        assert!(e.message.contains("tasks[1].cpu"), "{}", e.message);
    }
}
