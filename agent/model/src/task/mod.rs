//! Tasks: the unit of work. The spec a user submits, the record the cluster keeps, and the
//! commands that move a task through its states.
//!
//! ```text
//! pending → placed → running → succeeded | failed | cancelled | lost
//!    ↑         │         │
//!    └─────────┴─────────┘  a transient failure (node lost, executor error, a retryable exit
//!                           code) with attempts left goes back to pending, after a backoff
//! ```
//!
//! Every attempt has a fencing number (`attempt`, 1, 2, …). Reports name the attempt and the
//! node; apply accepts them only for the task's current attempt on its current node, so a late
//! report from a stale attempt (a partitioned node, a node declared down) changes nothing.

mod apply;
pub mod dag;
pub mod logs;
mod spec;
pub mod validate;

/// Defaults apply uses, shared with the nodes.
pub mod apply_defaults {
    pub use super::apply::DEFAULT_LOG_LIMIT_BYTES;
}

use serde::{Deserialize, Serialize};

use crate::{NodeId, UnixMillis};

pub use logs::{LogChunk, LogStream, TaskLog};
pub use spec::{Constraints, NetworkMode, ResourceRequest, RetryPolicy, TaskKind, TaskSpec};

/// Task ids are chosen by the proposer: `t` + 12 lowercase hex digits.
pub type TaskId = String;

/// How many finished tasks the state keeps; the oldest finished ones are forgotten first.
pub const FINISHED_TASK_RETENTION: usize = 2000;
/// Once over the retention bound, this many more are forgotten at once (see `forget_old_tasks`).
pub const FORGET_SLACK: usize = 200;
/// All kept task output together is bounded; the oldest finished tasks' logs go first.
pub const TOTAL_LOG_BUDGET_BYTES: u64 = 128 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    Pending,
    Placed,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    Lost,
}

impl TaskState {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Pending => "pending",
            TaskState::Placed => "placed",
            TaskState::Running => "running",
            TaskState::Succeeded => "succeeded",
            TaskState::Failed => "failed",
            TaskState::Cancelled => "cancelled",
            TaskState::Lost => "lost",
        }
    }

    pub fn parse(s: &str) -> Option<TaskState> {
        Some(match s {
            "pending" => TaskState::Pending,
            "placed" => TaskState::Placed,
            "running" => TaskState::Running,
            "succeeded" => TaskState::Succeeded,
            "failed" => TaskState::Failed,
            "cancelled" => TaskState::Cancelled,
            "lost" => TaskState::Lost,
            _ => return None,
        })
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::Succeeded | TaskState::Failed | TaskState::Cancelled | TaskState::Lost
        )
    }

    /// Placed or running: the task holds a reservation on its node.
    pub fn is_active(self) -> bool {
        matches!(self, TaskState::Placed | TaskState::Running)
    }
}

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AttemptResult {
    /// The payload ran and ended: exit status (or 128 + signal).
    Exited {
        code: i32,
        #[serde(default)]
        oom_killed: bool,
        #[serde(default)]
        timed_out: bool,
    },
    /// The executor could not run it. Transient (another node may manage), unless
    /// `permanent`: the spec itself is wrong for the executor (no such image or rootfs).
    ExecutorError {
        message: String,
        #[serde(default)]
        permanent: bool,
    },
    /// The node went down or left while the attempt was placed or running. Transient.
    Lost { reason: String },
    /// Cancelled by a person or by a failed dependency.
    Cancelled { reason: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    /// The fencing number.
    pub attempt: u32,
    pub node_id: NodeId,
    pub placed_at_ms: UnixMillis,
    #[serde(default)]
    pub started_at_ms: Option<UnixMillis>,
    #[serde(default)]
    pub ended_at_ms: Option<UnixMillis>,
    #[serde(default)]
    pub result: Option<AttemptResult>,
    /// The node's GPUs (NVML indices) this attempt holds, chosen at placement: distinct from
    /// every other active attempt's on the node. Empty when the task asks for none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpus: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub id: TaskId,
    pub spec: TaskSpec,
    pub state: TaskState,
    /// The workflow (DAG) this task belongs to.
    #[serde(default)]
    pub workflow: Option<String>,
    /// The fan-out group this task belongs to (`cortex run --all`).
    #[serde(default)]
    pub group: Option<String>,
    /// Ids this task waits for (resolved from names at submit).
    #[serde(default)]
    pub depends_on: Vec<TaskId>,
    /// The current (or last) attempt's fencing number; 0 before the first placement.
    pub attempt: u32,
    /// The node of the current attempt while placed or running.
    #[serde(default)]
    pub node_id: Option<NodeId>,
    #[serde(default)]
    pub attempts: Vec<Attempt>,
    /// The last attempt's exit code, when it exited.
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// Why the task failed, was cancelled or lost (human-readable).
    #[serde(default)]
    pub error: Option<String>,
    /// Failed after exhausting its retries (the dead-letter list).
    #[serde(default)]
    pub dead: bool,
    /// Not placed before this time (retry backoff).
    #[serde(default)]
    pub not_before_ms: UnixMillis,
    pub created_at_ms: UnixMillis,
    pub updated_at_ms: UnixMillis,
    #[serde(default)]
    pub finished_at_ms: Option<UnixMillis>,
    /// Who submitted it (the API token's id), for audit.
    #[serde(default)]
    pub submitted_by: Option<String>,
}

impl TaskRecord {
    /// The record a submitted task starts as: pending, never placed.
    pub fn pending(t: &NewTask, at_ms: UnixMillis, submitted_by: Option<&str>) -> TaskRecord {
        TaskRecord {
            id: t.id.clone(),
            spec: t.spec.clone(),
            state: TaskState::Pending,
            workflow: t.workflow.clone(),
            group: t.group.clone(),
            depends_on: t.depends_on.clone(),
            attempt: 0,
            node_id: None,
            attempts: Vec::new(),
            exit_code: None,
            error: None,
            dead: false,
            not_before_ms: 0,
            created_at_ms: at_ms,
            updated_at_ms: at_ms,
            finished_at_ms: None,
            submitted_by: submitted_by.map(str::to_string),
        }
    }

    /// The GPUs of the current attempt (held while the task is active; kept as history after).
    pub fn current_gpus(&self) -> &[u32] {
        match self.attempts.last() {
            Some(a) if a.attempt == self.attempt => &a.gpus,
            _ => &[],
        }
    }

    /// A short human label: the name if it has one, else the id.
    pub fn label(&self) -> &str {
        self.spec.name.as_deref().unwrap_or(&self.id)
    }
}

/// A task as proposed by the API: ids and dependencies already resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewTask {
    pub id: TaskId,
    pub spec: TaskSpec,
    #[serde(default)]
    pub workflow: Option<String>,
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub depends_on: Vec<TaskId>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowRecord {
    pub id: String,
    pub name: String,
    pub task_ids: Vec<TaskId>,
    pub created_at_ms: UnixMillis,
    #[serde(default)]
    pub submitted_by: Option<String>,
}

/// The leader's decision to run a task's next attempt on a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    pub task_id: TaskId,
    /// Must be the task's current attempt + 1.
    pub attempt: u32,
    pub node_id: NodeId,
}

/// What a node says about one of its attempts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskReport {
    pub task_id: TaskId,
    pub attempt: u32,
    pub event: ReportEvent,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ReportEvent {
    Started,
    /// Output bytes; `offset` is where they start in this attempt's output (both streams
    /// counted together), so a resent chunk is recognised and dropped.
    Output {
        stream: LogStream,
        offset: u64,
        #[serde(with = "logs::base64_bytes")]
        data: Vec<u8>,
    },
    Finished {
        result: AttemptResult,
        /// Output bytes the node dropped because the task's log limit was reached.
        #[serde(default)]
        dropped_bytes: u64,
    },
}

/// Aggregate of several tasks (a fan-out group or a workflow).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Aggregate {
    pub total: u32,
    pub by_state: std::collections::BTreeMap<String, u32>,
    /// "running" while any task is not finished, then "succeeded" if all succeeded, else
    /// "failed" (or "cancelled" if every unsuccessful one was cancelled).
    pub status: String,
}

impl Aggregate {
    pub fn of<'a>(tasks: impl IntoIterator<Item = &'a TaskRecord>) -> Aggregate {
        let mut agg = Aggregate::default();
        let (mut open, mut ok, mut cancelled) = (0, 0, 0);
        for t in tasks {
            agg.total += 1;
            *agg.by_state.entry(t.state.as_str().to_string()).or_default() += 1;
            match t.state {
                TaskState::Succeeded => ok += 1,
                TaskState::Cancelled => cancelled += 1,
                s if !s.is_terminal() => open += 1,
                _ => {}
            }
        }
        agg.status = if open > 0 {
            "running"
        } else if ok == agg.total {
            "succeeded"
        } else if ok + cancelled == agg.total {
            "cancelled"
        } else {
            "failed"
        }
        .to_string();
        agg
    }
}

#[cfg(test)]
mod tests;
