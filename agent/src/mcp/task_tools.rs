//! The task tools: submit (one, on every node, a workflow), read, page through output, cancel.

use std::time::Duration;

use cortex_model::task::{TaskRecord, TaskSpec};
use serde_json::{json, Value};

use super::args::{
    CancelArgs, ListTasksArgs, RunOnAllArgs, SubmitTaskArgs, TaskArgs, TaskIdArgs, TaskLogsArgs,
    WorkflowArgs, WorkflowKeyArgs,
};
use super::backend::Backend;
use super::error::{Kind, ToolError, ToolResult};
use super::tools::Call;
use super::view;
use super::wait::{self, Look};
use crate::api::now_ms;
use crate::api::tasks::{Fanout, SubmitInput, Submitted, TaskFilter};

/// Output shown with a finished task (its end).
const TAIL_BYTES: u64 = 4096;
/// Output shown per copy of a fanned-out task, and for how many copies at most.
const GROUP_TAIL_BYTES: u64 = 1024;
const GROUP_TAILS: usize = 16;
/// Most bytes one task_logs call returns.
const MAX_READ: u64 = 256 * 1024;

async fn submit_input(
    c: &Call<'_>,
    tasks: Vec<TaskSpec>,
    workflow: Option<String>,
    fanout: Fanout,
) -> ToolResult<Submitted> {
    c.backend
        .submit(
            c.caller,
            SubmitInput {
                tasks,
                workflow,
                fanout,
            },
        )
        .await
}

/// A task pinned to a node that does not exist is refused with the closest names (placement's
/// own message has none).
async fn known_node(c: &Call<'_>, t: &TaskArgs) -> ToolResult<()> {
    match &t.node {
        Some(key) => c.backend.node(key).await.map(|_| ()),
        None => Ok(()),
    }
}

fn first(ids: &[String]) -> ToolResult<String> {
    ids.first()
        .cloned()
        .ok_or_else(|| ToolError::new(Kind::Internal, "the submission created no task"))
}

/// The end of a task's output: (text, where it starts, the log's size).
async fn tail(b: &Backend, id: &str, n: u64) -> ToolResult<(String, u64, u64)> {
    // A read past the end returns nothing but the log's size.
    let size = b.logs(id, u64::MAX, 1).await?.size;
    let start = size.saturating_sub(n);
    let s = b.logs(id, start, n).await?;
    Ok((view::log_text(&s), start.max(s.evicted_below), s.size))
}

fn describe(t: &TaskRecord) -> String {
    let mut m = format!("task {} is {}", t.id, t.state.as_str());
    if let Some(n) = t.node_id {
        m += &format!(" on node {n}");
    }
    if t.attempt > 1 {
        m += &format!(" (attempt {})", t.attempt);
    }
    m
}

async fn wait_task(c: &Call<'_>, id: &str, w: Duration) -> ToolResult<TaskRecord> {
    let b = c.backend;
    let look = move || async move {
        let t = b.task(id).await?;
        Ok(Look {
            done: t.state.is_terminal(),
            message: describe(&t),
            value: t,
        })
    };
    Ok(wait::until(b, c.progress.as_ref(), &c.cancelled, w, look)
        .await?
        .value)
}

/// A task after a wait: its line, the end of its output, and what to do if it is not done.
async fn outcome(c: &Call<'_>, t: &TaskRecord, waited: Duration, tail_bytes: u64) -> ToolResult<Value> {
    let mut v = view::task_line(t, now_ms());
    let (text, from, size) = tail(c.backend, &t.id, tail_bytes).await?;
    v["output"] = json!(text);
    if from > 0 {
        v["output_from_offset"] = json!(from);
        v["output_bytes"] = json!(size);
    }
    if !t.state.is_terminal() {
        v["note"] = json!(format!(
            "still {} after {} s: check again with get_task, read output with task_logs, or cancel_task",
            t.state.as_str(),
            waited.as_secs()
        ));
    }
    Ok(v)
}

pub async fn submit(c: &Call<'_>, a: SubmitTaskArgs) -> ToolResult<Value> {
    known_node(c, &a.task).await?;
    let spec = a.task.into_spec("")?;
    let out = submit_input(c, vec![spec], None, Fanout::None).await?;
    let id = first(&out.task_ids)?;
    match wait::seconds(a.wait_seconds) {
        None => Ok(json!({
            "task_id": id,
            "note": "submitted: follow with get_task and task_logs (or pass wait_seconds for short tasks)",
        })),
        Some(w) => {
            let t = wait_task(c, &id, w).await?;
            outcome(c, &t, w, TAIL_BYTES).await
        }
    }
}

pub async fn run_on_all(c: &Call<'_>, a: RunOnAllArgs) -> ToolResult<Value> {
    known_node(c, &a.task).await?;
    let spec = a.task.into_spec("")?;
    let fanout = a.count.map_or(Fanout::All, Fanout::Nodes);
    let out = submit_input(c, vec![spec], None, fanout).await?;
    let group = out.group.clone().unwrap_or_default();
    let Some(w) = wait::seconds(a.wait_seconds) else {
        return Ok(json!({
            "group": group,
            "task_ids": out.task_ids,
            "note": "list_tasks with this group shows each copy; task_logs per task id",
        }));
    };
    let b = c.backend;
    let g = group.as_str();
    let look = move || async move {
        let agg = b.group(g).await?;
        let finished: u32 = agg
            .by_state
            .iter()
            .filter(|(s, _)| matches!(s.as_str(), "succeeded" | "failed" | "cancelled" | "lost"))
            .map(|(_, n)| n)
            .sum();
        Ok(Look {
            done: agg.status != "running",
            message: format!("{finished} of {} finished", agg.total),
            value: agg,
        })
    };
    let agg = wait::until(b, c.progress.as_ref(), &c.cancelled, w, look)
        .await?
        .value;
    let filter = TaskFilter {
        group: Some(group.clone()),
        limit: 1000,
        ..TaskFilter::default()
    };
    let mut tasks = Vec::new();
    for (i, t) in b.tasks(&filter).await?.iter().enumerate() {
        if i < GROUP_TAILS {
            tasks.push(outcome(c, t, w, GROUP_TAIL_BYTES).await?);
        } else {
            tasks.push(view::task_line(t, now_ms()));
        }
    }
    Ok(json!({ "group": group, "status": agg.status, "by_state": agg.by_state, "tasks": tasks }))
}

pub async fn submit_workflow(c: &Call<'_>, a: WorkflowArgs) -> ToolResult<Value> {
    for t in &a.tasks {
        known_node(c, t).await?;
    }
    let n = a.tasks.len();
    let prefix = |i: usize| {
        if n > 1 {
            format!("tasks[{i}].")
        } else {
            String::new()
        }
    };
    let specs = a
        .tasks
        .into_iter()
        .enumerate()
        .map(|(i, t)| t.into_spec(&prefix(i)))
        .collect::<ToolResult<Vec<_>>>()?;
    let names: Vec<Option<String>> = specs.iter().map(|s| s.name.clone()).collect();
    let out = submit_input(c, specs, Some(a.name), Fanout::None).await?;
    let wid = out.workflow.clone().unwrap_or_default();
    let Some(w) = wait::seconds(a.wait_seconds) else {
        let tasks: Vec<Value> = names
            .iter()
            .zip(&out.task_ids)
            .map(|(name, id)| json!({ "name": name, "task_id": id }))
            .collect();
        return Ok(json!({
            "workflow_id": wid,
            "tasks": tasks,
            "note": "get_workflow shows progress; task_logs per task id",
        }));
    };
    let b = c.backend;
    let key = wid.as_str();
    let look = move || async move {
        let view = b.workflow(key).await?;
        Ok(Look {
            done: view.aggregate.status != "running",
            message: format!(
                "workflow {}: {:?}",
                view.aggregate.status, view.aggregate.by_state
            ),
            value: view,
        })
    };
    let view = wait::until(b, c.progress.as_ref(), &c.cancelled, w, look)
        .await?
        .value;
    Ok(workflow_value(&view))
}

fn workflow_value(v: &crate::api::tasks::WorkflowView) -> Value {
    let now = now_ms();
    json!({
        "workflow_id": v.workflow.id,
        "name": v.workflow.name,
        "status": v.aggregate.status,
        "by_state": v.aggregate.by_state,
        "tasks": v.tasks.iter().map(|t| view::task_line(t, now)).collect::<Vec<_>>(),
    })
}

pub async fn workflow(c: &Call<'_>, a: WorkflowKeyArgs) -> ToolResult<Value> {
    Ok(workflow_value(&c.backend.workflow(&a.workflow).await?))
}

pub async fn get(c: &Call<'_>, a: TaskIdArgs) -> ToolResult<Value> {
    Ok(view::task_full(&c.backend.task(&a.task_id).await?))
}

pub async fn list(c: &Call<'_>, a: ListTasksArgs) -> ToolResult<Value> {
    let node = match &a.node {
        Some(key) => Some(c.backend.node(key).await?.id),
        None => None,
    };
    let limit = a.limit.unwrap_or(20).clamp(1, 200);
    let f = TaskFilter {
        states: a.states.iter().map(|s| s.state()).collect(),
        dead: a.dead,
        group: a.group,
        workflow: a.workflow,
        node,
        limit,
        before: a.before,
    };
    let tasks = c.backend.tasks(&f).await?;
    let now = now_ms();
    let mut v = json!({ "tasks": tasks.iter().map(|t| view::task_line(t, now)).collect::<Vec<_>>() });
    if tasks.len() == limit as usize {
        v["next_before"] = json!(tasks.last().map(|t| t.id.clone()));
    }
    Ok(v)
}

pub async fn logs(c: &Call<'_>, a: TaskLogsArgs) -> ToolResult<Value> {
    let b = c.backend;
    let (offset, max) = match a.tail {
        Some(n) => {
            let n = n.clamp(1, MAX_READ);
            let size = b.logs(&a.task_id, u64::MAX, 1).await?.size;
            (size.saturating_sub(n), n)
        }
        None => (
            a.offset.unwrap_or(0),
            a.max_bytes.unwrap_or(16 * 1024).clamp(1, MAX_READ),
        ),
    };
    let s = b.logs(&a.task_id, offset, max).await?;
    let t = b.task(&a.task_id).await?;
    let from = offset.max(s.evicted_below);
    let mut v = json!({
        "task_id": a.task_id,
        "state": t.state.as_str(),
        "offset": from,
        "next_offset": s.next_offset,
        "size": s.size,
        "eof": t.state.is_terminal() && s.next_offset >= s.size,
        "text": view::log_text(&s),
    });
    if from > offset {
        v["note"] = json!(format!(
            "bytes before offset {} were dropped to stay within the cluster's log budget",
            s.evicted_below
        ));
    }
    if s.dropped_bytes > 0 {
        v["dropped_bytes"] = json!(s.dropped_bytes);
    }
    if view::has_stderr(&s) {
        v["streams"] = json!("stdout and stderr interleaved");
    }
    Ok(v)
}

pub async fn cancel(c: &Call<'_>, a: CancelArgs) -> ToolResult<Value> {
    let reason = a.reason.unwrap_or_default();
    let ids = c.backend.cancel(c.caller, vec![a.task_id], &reason).await?;
    Ok(json!({
        "cancelled": ids,
        "note": "each task's process tree is killed; get_task shows the final state",
    }))
}
