//! Tasks through the node API: submit (single, fan-out, workflow), read, follow, cancel, and
//! the node side (assignments, reports). Validation happens here, before anything is proposed;
//! apply checks again.

use std::collections::{BTreeMap, BTreeSet};

use cortex_model::command::{Command, Outcome};
use cortex_model::node::NodeState;
use cortex_model::placement;
use cortex_model::task::validate::{validate_name, validate_spec, MAX_FANOUT};
use cortex_model::task::{
    Aggregate, LogChunk, NewTask, TaskId, TaskRecord, TaskReport, TaskSpec, TaskState, WorkflowRecord,
};
use cortex_model::token::Scope;
use cortex_model::NodeId;
use serde::{Deserialize, Serialize};

use super::{now_ms, ApiError, Caller, NodeApi};

/// Most tasks one submission may create.
pub const MAX_TASKS_PER_SUBMIT: usize = 10_000;
/// What listings show instead of an environment value.
pub const REDACTED: &str = "<redacted>";
/// Most log bytes one read returns.
pub const MAX_LOG_READ: u64 = 4 * 1024 * 1024;

/// Run one task per node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "mode", content = "count")]
pub enum Fanout {
    #[default]
    None,
    /// One task on every READY node.
    All,
    /// One task on each of N distinct nodes.
    Nodes(u32),
}

/// A submission: one task, one task fanned out, or a workflow (several tasks with
/// `depends_on` between them, by name).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SubmitInput {
    pub tasks: Vec<TaskSpec>,
    #[serde(default)]
    pub workflow: Option<String>,
    #[serde(default)]
    pub fanout: Fanout,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Submitted {
    pub task_ids: Vec<TaskId>,
    pub group: Option<String>,
    pub workflow: Option<String>,
}

/// A filter for listing tasks.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TaskFilter {
    #[serde(default)]
    pub states: Vec<TaskState>,
    /// Only dead-lettered tasks (failed after exhausting retries).
    #[serde(default)]
    pub dead: bool,
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub workflow: Option<String>,
    #[serde(default)]
    pub node: Option<NodeId>,
    /// Newest first; at most this many (default 100, max 1000).
    #[serde(default)]
    pub limit: u32,
    /// Page: tasks created strictly before this task (its id), newest first.
    #[serde(default)]
    pub before: Option<TaskId>,
}

/// A task plus what a follower needs: a slice of its log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogSlice {
    pub chunks: Vec<LogChunk>,
    /// Where to read next.
    pub next_offset: u64,
    /// The log's size so far.
    pub size: u64,
    pub dropped_bytes: u64,
    /// Bytes before this offset were forgotten (cluster-wide log budget).
    pub evicted_below: u64,
}

/// What a node runs: one attempt of one task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    pub task_id: TaskId,
    pub attempt: u32,
    pub spec: TaskSpec,
    /// The GPUs this attempt holds, from the node's inventory: `None` when the node has no
    /// GPU, `Some(empty)` when it has GPUs but the task asked for none (they are hidden).
    #[serde(default)]
    pub gpus: Option<Vec<AssignedGpu>>,
}

/// One GPU of an assignment: its NVML index (device node `/dev/nvidia<index>`) and UUID.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignedGpu {
    pub index: u32,
    #[serde(default)]
    pub uuid: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowView {
    pub workflow: WorkflowRecord,
    pub aggregate: Aggregate,
    pub tasks: Vec<TaskRecord>,
}

fn new_id(prefix: char) -> String {
    let bytes: [u8; 6] = rand::random();
    format!("{prefix}{}", hex::encode(bytes))
}

fn field_prefix(i: usize, n: usize) -> String {
    if n > 1 {
        format!("tasks[{i}].")
    } else {
        String::new()
    }
}

impl NodeApi {
    /// Validates and submits tasks. Needs scope `operate`. Nothing is created unless all of it
    /// is valid and could run somewhere.
    pub async fn submit_tasks(&self, caller: &Caller, mut input: SubmitInput) -> Result<Submitted, ApiError> {
        caller.require(Scope::Operate)?;
        // This coordinator's `tasks.log_limit_bytes` for tasks that set none: fixed in the
        // spec, so every node and replica agrees on it.
        for spec in &mut input.tasks {
            if spec.log_limit_bytes == 0 {
                spec.log_limit_bytes = self.inner.task_log_limit;
            }
        }
        let n = input.tasks.len();
        if n == 0 {
            return Err(ApiError::invalid("tasks", "give at least one task"));
        }
        if n > MAX_TASKS_PER_SUBMIT {
            return Err(ApiError::invalid(
                "tasks",
                format!("at most {MAX_TASKS_PER_SUBMIT} tasks per submission"),
            ));
        }
        if n > 1 && input.workflow.is_none() {
            return Err(ApiError::invalid(
                "workflow",
                "several tasks are submitted as a workflow: give it a name",
            ));
        }
        if let Some(w) = &input.workflow {
            validate_name("workflow", w).map_err(|e| ApiError::invalid(&e.field, e.message))?;
        }
        if input.fanout != Fanout::None && n > 1 {
            return Err(ApiError::invalid(
                "fanout",
                "fan-out takes a single task, not a workflow",
            ));
        }
        let mut by_name: BTreeMap<String, usize> = BTreeMap::new();
        for (i, spec) in input.tasks.iter().enumerate() {
            let p = field_prefix(i, n);
            validate_spec(spec).map_err(|e| ApiError::invalid(&format!("{p}{}", e.field), e.message))?;
            if let Some(name) = &spec.name {
                if by_name.insert(name.clone(), i).is_some() {
                    return Err(ApiError::invalid(
                        &format!("{p}name"),
                        format!("two tasks are named {name:?}; names are unique in a workflow"),
                    ));
                }
            }
        }
        let ids: Vec<TaskId> = (0..n).map(|_| new_id('t')).collect();
        let workflow_id = input.workflow.as_ref().map(|_| new_id('w'));
        let mut tasks = Vec::new();
        let fanned: Option<(Vec<NewTask>, Submitted)> = {
            let state = self.inner.sm.state();
            for (i, spec) in input.tasks.iter().enumerate() {
                let p = field_prefix(i, n);
                let mut deps = Vec::new();
                for (j, d) in spec.depends_on.iter().enumerate() {
                    let id = match by_name.get(d) {
                        Some(k) => ids[*k].clone(),
                        None if state.tasks.contains_key(d) => d.clone(),
                        None => {
                            return Err(ApiError::invalid(
                                &format!("{p}depends_on[{j}]"),
                                format!("no task named {d:?} in this workflow and no task with that id"),
                            ))
                        }
                    };
                    deps.push(id);
                }
                placement::feasible_anywhere(&state, spec).map_err(|m| {
                    let (field, msg) = m.split_once(": ").unwrap_or(("resources", &m));
                    ApiError::invalid(&format!("{p}{field}"), msg.to_string())
                })?;
                tasks.push(NewTask {
                    id: ids[i].clone(),
                    spec: spec.clone(),
                    workflow: workflow_id.clone(),
                    group: None,
                    depends_on: deps,
                });
            }
            // Cycles (by name) are reported here with names; apply checks again by id.
            let edges: BTreeMap<String, Vec<String>> = tasks
                .iter()
                .map(|t| (t.id.clone(), t.depends_on.clone()))
                .collect();
            if let Some(cycle) = cortex_model::task::dag::find_cycle(&edges) {
                let label = |id: &String| {
                    tasks
                        .iter()
                        .find(|t| &t.id == id)
                        .and_then(|t| t.spec.name.clone())
                        .unwrap_or_else(|| id.clone())
                };
                let names: Vec<String> = cycle.iter().map(label).collect();
                return Err(ApiError::invalid(
                    "depends_on",
                    format!("a cycle: {} → {}", names.join(" → "), names[0]),
                ));
            }
            if input.fanout != Fanout::None {
                let ready: Vec<NodeId> = state
                    .nodes
                    .values()
                    .filter(|n| n.state == NodeState::Ready)
                    .map(|n| n.id)
                    .collect();
                let template = tasks.remove(0);
                let group = new_id('g');
                let copies: Vec<NewTask> = match input.fanout {
                    Fanout::All => {
                        if ready.is_empty() {
                            return Err(ApiError::invalid("fanout", "no node is ready"));
                        }
                        ready
                            .iter()
                            .map(|node| {
                                let mut t = template.clone();
                                t.id = new_id('t');
                                t.group = Some(group.clone());
                                t.spec.constraints.node = Some(node.to_string());
                                t
                            })
                            .collect()
                    }
                    Fanout::Nodes(k) => {
                        if k == 0 || k > MAX_FANOUT {
                            return Err(ApiError::invalid(
                                "fanout",
                                format!("the node count must be 1 to {MAX_FANOUT}"),
                            ));
                        }
                        if (k as usize) > ready.len() {
                            return Err(ApiError::invalid(
                                "fanout",
                                format!("{k} nodes asked for, {} are ready", ready.len()),
                            ));
                        }
                        (0..k)
                            .map(|_| {
                                let mut t = template.clone();
                                t.id = new_id('t');
                                t.group = Some(group.clone());
                                t.spec.constraints.spread_group = true;
                                t
                            })
                            .collect()
                    }
                    // Not reached: this branch runs only for a fan-out.
                    Fanout::None => Vec::new(),
                };
                let out = Submitted {
                    task_ids: copies.iter().map(|t| t.id.clone()).collect(),
                    group: Some(group),
                    workflow: None,
                };
                Some((copies, out))
            } else {
                None
            }
        };
        if let Some((copies, out)) = fanned {
            self.propose_submit(caller, copies, None).await?;
            return Ok(out);
        }
        let workflow = workflow_id.as_ref().map(|id| WorkflowRecord {
            id: id.clone(),
            name: input.workflow.clone().unwrap_or_default(),
            task_ids: ids.clone(),
            created_at_ms: 0,
            submitted_by: None,
        });
        self.propose_submit(caller, tasks, workflow).await?;
        Ok(Submitted {
            task_ids: ids,
            group: None,
            workflow: workflow_id,
        })
    }

    async fn propose_submit(
        &self,
        caller: &Caller,
        tasks: Vec<NewTask>,
        workflow: Option<WorkflowRecord>,
    ) -> Result<(), ApiError> {
        let at_ms = now_ms();
        let placements = self.place_new(&tasks, at_ms);
        match self
            .write(Command::SubmitTasks {
                tasks,
                workflow,
                submitted_by: Some(caller.token_id.clone()),
                placements,
                at_ms,
            })
            .await?
        {
            Outcome::Tasks { .. } => Ok(()),
            other => Err(ApiError::Internal(format!("unexpected outcome {other:?}"))),
        }
    }

    /// Where the new tasks without dependencies would run now: proposed with the submission,
    /// so a task starts one Raft round sooner. Apply re-checks them; a refused or missing
    /// placement leaves the task to the scheduler.
    fn place_new(
        &self,
        tasks: &[NewTask],
        at_ms: cortex_model::UnixMillis,
    ) -> Vec<cortex_model::task::Placement> {
        let records: Vec<TaskRecord> = tasks
            .iter()
            .filter(|t| t.depends_on.is_empty())
            .map(|t| TaskRecord::pending(t, at_ms, None))
            .collect();
        if records.is_empty() {
            return Vec::new();
        }
        let started = std::time::Instant::now();
        let load = self.live_load();
        let state = self.inner.sm.state();
        let placed = placement::schedule_candidates(&state, records.iter().collect(), &load, records.len());
        crate::metrics::global().observe_placement("submit", started.elapsed().as_secs_f64());
        placed
    }

    fn live_load(&self) -> BTreeMap<NodeId, f64> {
        let ids: Vec<NodeId> = self.inner.sm.state().nodes.keys().copied().collect();
        ids.into_iter()
            .filter_map(|id| {
                self.inner
                    .liveness
                    .last_seen(id)
                    .map(|s| (id, s.resources.load_1m))
            })
            .collect()
    }

    pub fn get_task(&self, id: &str) -> Result<TaskRecord, ApiError> {
        let state = self.inner.sm.state();
        state
            .tasks
            .get(id)
            .cloned()
            .ok_or_else(|| task_not_found(id, state.tasks.keys()))
    }

    /// The task's record if it differs from `known` (compared in place, copied only when it
    /// changed): what a watcher woken by an applied entry needs.
    pub fn task_if_changed(&self, id: &str, known: &TaskRecord) -> Result<Option<TaskRecord>, ApiError> {
        let state = self.inner.sm.state();
        match state.tasks.get(id) {
            Some(t) if t == known => Ok(None),
            Some(t) => Ok(Some(t.clone())),
            None => Err(task_not_found(id, state.tasks.keys())),
        }
    }

    pub fn list_tasks(&self, f: &TaskFilter) -> Vec<TaskRecord> {
        let state = self.inner.sm.state();
        let limit = match f.limit {
            0 => 100,
            l => l.min(1000),
        } as usize;
        let before = f
            .before
            .as_ref()
            .and_then(|id| state.tasks.get(id))
            .map(|t| (t.created_at_ms, t.id.clone()));
        let mut v: Vec<&TaskRecord> = state
            .tasks
            .values()
            .filter(|t| f.states.is_empty() || f.states.contains(&t.state))
            .filter(|t| !f.dead || t.dead)
            .filter(|t| f.group.is_none() || t.group == f.group)
            .filter(|t| f.workflow.is_none() || t.workflow == f.workflow)
            .filter(|t| {
                f.node.is_none() || t.node_id == f.node || t.attempts.last().map(|a| a.node_id) == f.node
            })
            .filter(|t| {
                before
                    .as_ref()
                    .is_none_or(|b| (t.created_at_ms, t.id.clone()) < *b)
            })
            .collect();
        v.sort_by(|a, b| (b.created_at_ms, &b.id).cmp(&(a.created_at_ms, &a.id)));
        v.into_iter()
            .take(limit)
            .map(|t| {
                // Listings never show environment values (they may hold secrets); `get_task`
                // shows the whole spec to whoever asks for that one task.
                let mut t = t.clone();
                for v in t.spec.env.values_mut() {
                    *v = REDACTED.to_string();
                }
                t
            })
            .collect()
    }

    /// Aggregate status of a fan-out group.
    pub fn group_status(&self, group: &str) -> Result<Aggregate, ApiError> {
        let state = self.inner.sm.state();
        let tasks: Vec<&TaskRecord> = state
            .tasks
            .values()
            .filter(|t| t.group.as_deref() == Some(group))
            .collect();
        if tasks.is_empty() {
            return Err(ApiError::NotFound(format!("no task group {group}")));
        }
        Ok(Aggregate::of(tasks))
    }

    pub fn get_workflow(&self, key: &str) -> Result<WorkflowView, ApiError> {
        let state = self.inner.sm.state();
        let w = state
            .workflows
            .get(key)
            .or_else(|| {
                // By name: the newest workflow with that name.
                state
                    .workflows
                    .values()
                    .filter(|w| w.name == key)
                    .max_by_key(|w| (w.created_at_ms, w.id.clone()))
            })
            .ok_or_else(|| {
                ApiError::NotFound(format!(
                    "no workflow with id or name {key:?}; `cortex workflow list` shows them"
                ))
            })?;
        let tasks: Vec<TaskRecord> = w
            .task_ids
            .iter()
            .filter_map(|id| state.tasks.get(id).cloned())
            .collect();
        Ok(WorkflowView {
            workflow: w.clone(),
            aggregate: Aggregate::of(tasks.iter()),
            tasks,
        })
    }

    pub fn list_workflows(&self) -> Vec<WorkflowRecord> {
        let state = self.inner.sm.state();
        let mut v: Vec<WorkflowRecord> = state.workflows.values().cloned().collect();
        v.sort_by(|a, b| (b.created_at_ms, &b.id).cmp(&(a.created_at_ms, &a.id)));
        v
    }

    /// Reads a slice of a task's log (both streams, in order).
    pub fn task_logs(&self, id: &str, offset: u64, max: u64) -> Result<LogSlice, ApiError> {
        let state = self.inner.sm.state();
        if !state.tasks.contains_key(id) {
            return Err(task_not_found(id, state.tasks.keys()));
        }
        let max = if max == 0 {
            MAX_LOG_READ
        } else {
            max.min(MAX_LOG_READ)
        };
        Ok(match state.task_logs.get(id) {
            Some(log) => {
                let (chunks, next_offset) = log.read(offset, max);
                LogSlice {
                    chunks,
                    next_offset,
                    size: log.size,
                    dropped_bytes: log.dropped_bytes,
                    evicted_below: log.evicted_below,
                }
            }
            None => LogSlice {
                chunks: Vec::new(),
                next_offset: offset,
                size: 0,
                dropped_bytes: 0,
                evicted_below: 0,
            },
        })
    }

    /// Cancels tasks (and their dependents). Needs scope `operate`.
    pub async fn cancel_tasks(
        &self,
        caller: &Caller,
        ids: Vec<String>,
        reason: &str,
    ) -> Result<Vec<TaskId>, ApiError> {
        caller.require(Scope::Operate)?;
        if ids.is_empty() {
            return Err(ApiError::invalid("ids", "give at least one task id"));
        }
        {
            let state = self.inner.sm.state();
            for id in &ids {
                if !state.tasks.contains_key(id) {
                    return Err(task_not_found(id, state.tasks.keys()));
                }
            }
        }
        let reason = if reason.trim().is_empty() {
            format!("cancelled by token {}", caller.token_id)
        } else {
            reason.chars().take(500).collect()
        };
        match self
            .write(Command::CancelTasks {
                task_ids: ids,
                reason,
                at_ms: now_ms(),
            })
            .await?
        {
            Outcome::Tasks { ids } => Ok(ids),
            other => Err(ApiError::Internal(format!("unexpected outcome {other:?}"))),
        }
    }

    /// The attempts `node_id` should be running now.
    pub fn assignments(&self, node_id: NodeId) -> Vec<Assignment> {
        let state = self.inner.sm.state();
        let node_gpus = state
            .nodes
            .get(&node_id)
            .map(|n| n.inventory.gpus.devices.as_slice())
            .unwrap_or_default();
        state
            .tasks
            .values()
            .filter(|t| t.node_id == Some(node_id) && t.state.is_active())
            .map(|t| Assignment {
                task_id: t.id.clone(),
                attempt: t.attempt,
                spec: t.spec.clone(),
                gpus: (!node_gpus.is_empty()).then(|| {
                    t.current_gpus()
                        .iter()
                        .map(|&index| AssignedGpu {
                            index,
                            uuid: node_gpus
                                .iter()
                                .find(|g| g.index == index)
                                .map(|g| g.uuid.clone())
                                .unwrap_or_default(),
                        })
                        .collect()
                }),
            })
            .collect()
    }

    /// A node's reports on its attempts (the caller is authenticated as `node_id`). Returns the
    /// attempts that are stale: the node must kill them.
    pub async fn report_tasks(
        &self,
        node_id: NodeId,
        reports: Vec<TaskReport>,
    ) -> Result<Vec<(TaskId, u32)>, ApiError> {
        if reports.is_empty() {
            return Ok(Vec::new());
        }
        if reports.len() > 10_000 {
            return Err(ApiError::invalid("reports", "at most 10000 reports per call"));
        }
        match self
            .write(Command::ReportTasks {
                node_id,
                reports,
                at_ms: now_ms(),
            })
            .await?
        {
            Outcome::Reports { stale } => Ok(stale),
            other => Err(ApiError::Internal(format!("unexpected outcome {other:?}"))),
        }
    }

    /// A node publishes the images in its local store (authenticated as `node_id`). Only a
    /// change is proposed.
    pub async fn publish_images(&self, node_id: NodeId, images: Vec<String>) -> Result<(), ApiError> {
        if images.len() > 10_000 || images.iter().any(|i| i.is_empty() || i.len() > 4096) {
            return Err(ApiError::invalid(
                "images",
                "at most 10000 references of 1 to 4096 bytes",
            ));
        }
        let mut sorted = images.clone();
        sorted.sort();
        sorted.dedup();
        let current = self
            .inner
            .sm
            .state()
            .nodes
            .get(&node_id)
            .map(|n| n.images.clone());
        if current.as_ref() == Some(&sorted) {
            return Ok(());
        }
        self.write(Command::SetNodeImages {
            node_id,
            images: sorted,
            at_ms: now_ms(),
        })
        .await
        .map(|_| ())
    }

    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.sm.subscribe()
    }
}

fn task_not_found<'a>(id: &str, known: impl Iterator<Item = &'a String>) -> ApiError {
    let close: BTreeSet<&String> = known.filter(|k| k.starts_with(id) && id.len() >= 4).collect();
    let hint = match close.len() {
        0 => "; `cortex task list` shows recent tasks".to_string(),
        1..=3 => format!(
            "; did you mean {}?",
            close.into_iter().cloned().collect::<Vec<_>>().join(", ")
        ),
        n => format!("; {n} tasks start with {id:?}: give more of the id"),
    };
    ApiError::NotFound(format!("no task {id:?}{hint}"))
}

impl NodeApi {
    /// One scheduling pass over the applied state, using live load from heartbeats.
    pub fn plan_placements(&self, max: usize) -> Vec<cortex_model::task::Placement> {
        let load = self.live_load();
        let state = self.inner.sm.state();
        placement::schedule(&state, &load, now_ms(), max)
    }
}
