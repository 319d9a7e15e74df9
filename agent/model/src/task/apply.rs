//! How task commands change the cluster state. Called only from `ClusterState::apply`.

use std::collections::{BTreeMap, BTreeSet};

use crate::command::{Outcome, PlaceOutcome};
use crate::node::NodeRecord;
use crate::placement;
use crate::state::ClusterState;
use crate::{NodeId, UnixMillis};

use super::dag::{dependents_of, find_cycle};
use super::validate::validate_spec;
use super::{
    Attempt, AttemptResult, NewTask, Placement, ReportEvent, TaskId, TaskRecord, TaskReport, TaskState,
    WorkflowRecord, FINISHED_TASK_RETENTION, FORGET_SLACK, TOTAL_LOG_BUDGET_BYTES,
};

/// The per-attempt log limit when a spec leaves it at 0.
pub const DEFAULT_LOG_LIMIT_BYTES: u64 = 1024 * 1024;

impl ClusterState {
    /// All of a submission is created, or none of it.
    pub(crate) fn submit_tasks(
        &mut self,
        tasks: &[NewTask],
        workflow: Option<&WorkflowRecord>,
        submitted_by: Option<&str>,
        at_ms: UnixMillis,
    ) -> Outcome {
        if tasks.is_empty() {
            return rejected("a submission needs at least one task");
        }
        let mut ids = BTreeSet::new();
        for (i, t) in tasks.iter().enumerate() {
            if let Err(e) = validate_spec(&t.spec) {
                return rejected(format!("tasks[{i}].{e}"));
            }
            if self.tasks.contains_key(&t.id) || !ids.insert(t.id.as_str()) {
                return rejected(format!("tasks[{i}]: task id {} already exists", t.id));
            }
        }
        if let Some(w) = workflow {
            if self.workflows.contains_key(&w.id) {
                return rejected(format!("workflow id {} already exists", w.id));
            }
        }
        let mut edges: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (i, t) in tasks.iter().enumerate() {
            for d in &t.depends_on {
                if !ids.contains(d.as_str()) && !self.tasks.contains_key(d) {
                    return rejected(format!("tasks[{i}].depends_on: no task {d}"));
                }
            }
            edges.insert(t.id.clone(), t.depends_on.clone());
        }
        if let Some(cycle) = find_cycle(&edges) {
            return rejected(format!("depends_on: a cycle: {}", cycle.join(" → ")));
        }
        for t in tasks {
            self.tasks
                .insert(t.id.clone(), TaskRecord::pending(t, at_ms, submitted_by));
        }
        if let Some(w) = workflow {
            let mut w = w.clone();
            w.created_at_ms = at_ms;
            w.submitted_by = submitted_by.map(str::to_string);
            self.workflows.insert(w.id.clone(), w);
        }
        // A dependency that already failed dooms the new task at once.
        for t in tasks {
            let failed_dep = t.depends_on.iter().find_map(|d| {
                let dep = self.tasks.get(d)?;
                (dep.state.is_terminal() && dep.state != TaskState::Succeeded).then(|| (d.clone(), dep.state))
            });
            if let Some((dep, state)) = failed_dep {
                self.cancel_one(&t.id, &format!("dependency {dep} {}", state.as_str()), at_ms);
            }
        }
        self.forget_old_tasks();
        Outcome::Tasks {
            ids: tasks.iter().map(|t| t.id.clone()).collect(),
        }
    }

    pub(crate) fn place_tasks(&mut self, placements: &[Placement], at_ms: UnixMillis) -> Outcome {
        let mut out = PlaceOutcome::default();
        // Reservations are summed once per entry and kept up to date as placements land.
        let mut used = placement::usage(self);
        for p in placements {
            match self.place_one(p, &mut used, at_ms) {
                Ok(()) => out.placed.push(p.task_id.clone()),
                Err(reason) => out.refused.push((p.task_id.clone(), reason)),
            }
        }
        Outcome::Placed(out)
    }

    fn place_one(
        &mut self,
        p: &Placement,
        used: &mut BTreeMap<NodeId, placement::Amount>,
        at_ms: UnixMillis,
    ) -> Result<(), String> {
        let task = self.tasks.get(&p.task_id).ok_or("no such task")?;
        if task.state != TaskState::Pending {
            return Err(format!("task is {}", task.state.as_str()));
        }
        if p.attempt != task.attempt + 1 {
            return Err(format!(
                "attempt {} is not the next one ({})",
                p.attempt,
                task.attempt + 1
            ));
        }
        if task.not_before_ms > at_ms {
            return Err("task is backing off".into());
        }
        if !self.dependencies_met(task) {
            return Err("dependencies have not succeeded".into());
        }
        let node = self.nodes.get(&p.node_id).ok_or("no such node")?;
        placement::eligible(self, task, node)?;
        let u = used.entry(p.node_id).or_default();
        placement::fits_with(node, &task.spec, *u)?;
        let req = placement::request(&task.spec);
        let gpus = self.free_gpus(node, req.gpus)?;
        u.cpu_millis += req.cpu_millis;
        u.memory_bytes += req.memory_bytes;
        u.gpus += req.gpus;
        let task = self.tasks.get_mut(&p.task_id).ok_or("no such task")?;
        task.state = TaskState::Placed;
        task.attempt = p.attempt;
        task.node_id = Some(p.node_id);
        task.updated_at_ms = at_ms;
        task.attempts.push(Attempt {
            attempt: p.attempt,
            node_id: p.node_id,
            placed_at_ms: at_ms,
            started_at_ms: None,
            ended_at_ms: None,
            result: None,
            gpus,
        });
        if p.attempt > 1 {
            let name = self
                .nodes
                .get(&p.node_id)
                .map(|n| n.name.clone())
                .unwrap_or_default();
            self.task_logs
                .entry(p.task_id.clone())
                .or_default()
                .note(p.attempt, &format!("attempt {} on node {name}", p.attempt));
        }
        Ok(())
    }

    /// The `n` lowest-numbered GPUs of `node` no active attempt holds. The count was checked
    /// by `fits_with`; this picks which ones, so two tasks never share a GPU.
    fn free_gpus(&self, node: &NodeRecord, n: u64) -> Result<Vec<u32>, String> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let held: BTreeSet<u32> = self
            .tasks
            .values()
            .filter(|t| t.state.is_active() && t.node_id == Some(node.id))
            .flat_map(|t| t.current_gpus().iter().copied())
            .collect();
        let mut all: Vec<u32> = node.inventory.gpus.devices.iter().map(|g| g.index).collect();
        all.sort_unstable();
        all.dedup();
        let free: Vec<u32> = all
            .into_iter()
            .filter(|i| !held.contains(i))
            .take(n as usize)
            .collect();
        if (free.len() as u64) < n {
            return Err(format!(
                "resources.gpus: {n} GPUs requested, {} free on node {}",
                free.len(),
                node.name
            ));
        }
        Ok(free)
    }

    pub(crate) fn dependencies_met(&self, task: &TaskRecord) -> bool {
        task.depends_on.iter().all(|d| {
            // A dependency that was forgotten had finished; only successes are kept as deps.
            self.tasks.get(d).is_none_or(|t| t.state == TaskState::Succeeded)
        })
    }

    /// Applies a node's reports. Reports for anything but the task's current attempt on this
    /// node are refused (fencing); the node kills such attempts.
    pub(crate) fn report_tasks(
        &mut self,
        node_id: NodeId,
        reports: &[TaskReport],
        at_ms: UnixMillis,
    ) -> Outcome {
        let mut stale = Vec::new();
        for r in reports {
            let current = self
                .tasks
                .get(&r.task_id)
                .is_some_and(|t| t.attempt == r.attempt && t.node_id == Some(node_id) && t.state.is_active());
            // Output of the task's last attempt is kept even when it arrives after the end
            // (reports may be retried out of order after a leader change).
            let late_output = matches!(r.event, ReportEvent::Output { .. })
                && self.tasks.get(&r.task_id).is_some_and(|t| {
                    t.attempts
                        .last()
                        .is_some_and(|a| a.attempt == r.attempt && a.node_id == node_id)
                });
            if !current && !late_output {
                if !stale.iter().any(|(id, a)| id == &r.task_id && *a == r.attempt) {
                    stale.push((r.task_id.clone(), r.attempt));
                }
                continue;
            }
            match &r.event {
                ReportEvent::Started => {
                    if let Some(t) = self.tasks.get_mut(&r.task_id) {
                        if t.state == TaskState::Placed {
                            t.state = TaskState::Running;
                            t.updated_at_ms = at_ms;
                            if let Some(a) = t.attempts.last_mut() {
                                a.started_at_ms = Some(at_ms);
                            }
                        }
                    }
                }
                ReportEvent::Output { stream, offset, data } => {
                    let limit = self
                        .tasks
                        .get(&r.task_id)
                        .map(|t| t.spec.log_limit_bytes)
                        .filter(|l| *l > 0)
                        .unwrap_or(DEFAULT_LOG_LIMIT_BYTES);
                    let log = self.task_logs.entry(r.task_id.clone()).or_default();
                    let added = log.append_output(r.attempt, *stream, *offset, data, limit);
                    self.log_bytes_held += added;
                    if self.log_bytes_held > TOTAL_LOG_BUDGET_BYTES {
                        self.evict_logs();
                    }
                }
                ReportEvent::Finished {
                    result,
                    dropped_bytes,
                } => {
                    if *dropped_bytes > 0 {
                        let log = self.task_logs.entry(r.task_id.clone()).or_default();
                        log.dropped_bytes += dropped_bytes;
                        log.note(
                            r.attempt,
                            &format!("{dropped_bytes} bytes of output dropped: the log limit was reached"),
                        );
                    }
                    if let Some(a) = self.tasks.get_mut(&r.task_id).and_then(|t| t.attempts.last_mut()) {
                        // A fast attempt's Started may be folded into its Finished.
                        a.started_at_ms.get_or_insert(at_ms);
                    }
                    self.finish_attempt(&r.task_id, result.clone(), at_ms);
                }
            }
        }
        Outcome::Reports { stale }
    }

    /// Ends the current attempt with `result`: success, a retry after backoff, or a final
    /// failure (which cancels dependents).
    pub(crate) fn finish_attempt(&mut self, id: &str, result: AttemptResult, at_ms: UnixMillis) {
        let Some(t) = self.tasks.get_mut(id) else {
            return;
        };
        if let Some(a) = t.attempts.last_mut() {
            if a.result.is_none() {
                a.ended_at_ms = Some(at_ms);
                a.result = Some(result.clone());
            }
        }
        t.updated_at_ms = at_ms;
        let node_name = t.node_id;
        let (transient, error, final_state) = match &result {
            AttemptResult::Exited { code: 0, .. } => (false, None, TaskState::Succeeded),
            AttemptResult::Exited {
                code,
                timed_out: true,
                ..
            } => (
                false,
                Some(format!(
                    "timed out after {} ms (killed, exit {code})",
                    t.spec.timeout_ms.unwrap_or(0)
                )),
                TaskState::Failed,
            ),
            AttemptResult::Exited { code, oom_killed, .. } => {
                let why = if *oom_killed {
                    format!("killed by the OOM killer (exit {code}): it used more than its memory limit")
                } else {
                    format!("exited with code {code}")
                };
                (
                    t.spec.retry.retry_exit_codes.contains(code),
                    Some(why),
                    TaskState::Failed,
                )
            }
            AttemptResult::ExecutorError { message, permanent } => (
                !permanent,
                Some(format!("could not run: {message}")),
                TaskState::Failed,
            ),
            AttemptResult::Lost { reason } => (true, Some(format!("lost: {reason}")), TaskState::Lost),
            AttemptResult::Cancelled { reason } => {
                (false, Some(format!("cancelled: {reason}")), TaskState::Cancelled)
            }
        };
        if let AttemptResult::Exited { code, .. } = result {
            t.exit_code = Some(code);
        }
        t.error = error.clone();
        t.node_id = None;
        if transient && t.attempt < t.spec.retry.max_attempts {
            t.state = TaskState::Pending;
            t.not_before_ms = at_ms + t.spec.retry.backoff_before(t.attempt + 1);
            return;
        }
        t.state = final_state;
        t.finished_at_ms = Some(at_ms);
        if transient {
            t.dead = true;
            let msg = format!(
                "task {} gave up after {} attempts: {}",
                t.label(),
                t.attempt,
                error.clone().unwrap_or_default()
            );
            self.event(at_ms, node_name, "task_dead", msg);
        }
        if final_state != TaskState::Succeeded {
            let why = format!("dependency {id} {}", final_state.as_str());
            self.cancel_dependents(id, &why, at_ms);
        }
    }

    pub(crate) fn cancel_tasks(&mut self, ids: &[String], reason: &str, at_ms: UnixMillis) -> Outcome {
        for id in ids {
            match self.tasks.get(id) {
                None => return rejected(format!("no task {id}")),
                Some(t) if t.state.is_terminal() => {
                    return rejected(format!("task {id} already {}", t.state.as_str()))
                }
                Some(_) => {}
            }
        }
        let mut cancelled = Vec::new();
        for id in ids {
            if self.cancel_one(id, reason, at_ms) {
                cancelled.push(id.clone());
            }
        }
        Outcome::Tasks { ids: cancelled }
    }

    /// Cancels one task (if not finished) and, transitively, its dependents.
    fn cancel_one(&mut self, id: &str, reason: &str, at_ms: UnixMillis) -> bool {
        let Some(t) = self.tasks.get_mut(id) else {
            return false;
        };
        if t.state.is_terminal() {
            return false;
        }
        if let Some(a) = t.attempts.last_mut() {
            if a.result.is_none() {
                a.ended_at_ms = Some(at_ms);
                a.result = Some(AttemptResult::Cancelled {
                    reason: reason.to_string(),
                });
            }
        }
        t.state = TaskState::Cancelled;
        t.error = Some(format!("cancelled: {reason}"));
        t.node_id = None;
        t.updated_at_ms = at_ms;
        t.finished_at_ms = Some(at_ms);
        self.cancel_dependents(id, &format!("dependency {id} cancelled"), at_ms);
        true
    }

    fn cancel_dependents(&mut self, id: &str, reason: &str, at_ms: UnixMillis) {
        let mut reverse: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for t in self.tasks.values().filter(|t| !t.state.is_terminal()) {
            for d in &t.depends_on {
                reverse.entry(d.clone()).or_default().push(t.id.clone());
            }
        }
        for dep in dependents_of(id, &reverse) {
            if let Some(t) = self.tasks.get_mut(&dep) {
                if !t.state.is_terminal() {
                    t.state = TaskState::Cancelled;
                    t.error = Some(format!("cancelled: {reason}"));
                    t.node_id = None;
                    t.updated_at_ms = at_ms;
                    t.finished_at_ms = Some(at_ms);
                }
            }
        }
    }

    /// A node went down, left or was removed: its attempts are lost (and retried if allowed).
    pub(crate) fn lose_tasks_on(&mut self, node_id: NodeId, reason: &str, at_ms: UnixMillis) {
        let lost: Vec<String> = self
            .tasks
            .values()
            .filter(|t| t.node_id == Some(node_id) && t.state.is_active())
            .map(|t| t.id.clone())
            .collect();
        for id in lost {
            self.finish_attempt(
                &id,
                AttemptResult::Lost {
                    reason: reason.to_string(),
                },
                at_ms,
            );
        }
    }

    /// Keeps at most `FINISHED_TASK_RETENTION` finished tasks (oldest finished go first, but
    /// never one that an unfinished task still waits for). Runs on every submit, so the common
    /// case is one allocation-free count; when over the bound it forgets down to
    /// `FINISHED_TASK_RETENTION - FORGET_SLACK`, so the sort happens once per `FORGET_SLACK`
    /// finished tasks rather than once per submit (it cloned and sorted every finished task's id
    /// on every submit: 6.5% of a coordinator's CPU at 250 tasks/s).
    fn forget_old_tasks(&mut self) {
        let finished = self.tasks.values().filter(|t| t.state.is_terminal()).count();
        if finished <= FINISHED_TASK_RETENTION {
            return;
        }
        let needed: BTreeSet<&str> = self
            .tasks
            .values()
            .filter(|t| !t.state.is_terminal())
            .flat_map(|t| t.depends_on.iter().map(String::as_str))
            .collect();
        let mut oldest: Vec<(UnixMillis, &str)> = self
            .tasks
            .values()
            .filter(|t| t.state.is_terminal() && !needed.contains(t.id.as_str()))
            .map(|t| (t.finished_at_ms.unwrap_or(0), t.id.as_str()))
            .collect();
        // Ties on the finish time are broken by id, so every replica forgets the same tasks.
        oldest.sort_unstable();
        let excess = finished - (FINISHED_TASK_RETENTION - FORGET_SLACK);
        let forget: Vec<TaskId> = oldest
            .into_iter()
            .take(excess)
            .map(|(_, id)| id.to_string())
            .collect();
        for id in forget {
            self.tasks.remove(&id);
            if let Some(log) = self.task_logs.remove(&id) {
                self.log_bytes_held = self.log_bytes_held.saturating_sub(log.held_bytes());
            }
        }
        let tasks = &self.tasks;
        self.workflows
            .retain(|_, w| w.task_ids.iter().any(|id| tasks.contains_key(id)));
    }

    /// Frees log space, oldest finished tasks first, down to 3/4 of the budget.
    fn evict_logs(&mut self) {
        let target = TOTAL_LOG_BUDGET_BYTES / 4 * 3;
        let mut finished: Vec<(UnixMillis, String)> = self
            .tasks
            .values()
            .filter(|t| t.state.is_terminal() && self.task_logs.contains_key(&t.id))
            .map(|t| (t.finished_at_ms.unwrap_or(0), t.id.clone()))
            .collect();
        finished.sort();
        for (_, id) in finished {
            if self.log_bytes_held <= target {
                return;
            }
            if let Some(log) = self.task_logs.get_mut(&id) {
                let freed = log.evict_to(0);
                self.log_bytes_held = self.log_bytes_held.saturating_sub(freed);
            }
        }
    }
}

fn rejected(reason: impl Into<String>) -> Outcome {
    Outcome::Rejected {
        reason: reason.into(),
    }
}
