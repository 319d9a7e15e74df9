//! `/api/v1/tasks…`, `/api/v1/dead-letters`, `/api/v1/groups/{id}`, `/api/v1/workflows…`:
//! adapters over `NodeApi`'s task operations.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use cortex_model::task::{TaskSpec, TaskState};
use cortex_model::token::Scope;
use serde::Deserialize;
use serde_json::json;

use super::support::{body, caller, created, ok, query_error, HttpError, HttpResult};
use crate::api::tasks::{SubmitInput, TaskFilter, MAX_LOG_READ};
use crate::api::{ApiError, NodeApi};

/// Longest a log read waits for new output (`wait_ms`).
const MAX_LOG_WAIT_MS: u64 = 30_000;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TaskQuery {
    /// Comma-separated states.
    state: Option<String>,
    #[serde(default)]
    dead: bool,
    group: Option<String>,
    workflow: Option<String>,
    node: Option<u64>,
    #[serde(default)]
    limit: u32,
    before: Option<String>,
}

fn filter(q: TaskQuery) -> Result<TaskFilter, HttpError> {
    let mut states = Vec::new();
    for s in q
        .state
        .iter()
        .flat_map(|s| s.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let st: TaskState = serde_json::from_value(json!(s)).map_err(|_| {
            ApiError::invalid(
                "state",
                format!("{s:?} is not a task state (pending, placed, running, succeeded, failed, cancelled, lost)"),
            )
        })?;
        states.push(st);
    }
    Ok(TaskFilter {
        states,
        dead: q.dead,
        group: q.group,
        workflow: q.workflow,
        node: q.node,
        limit: q.limit,
        before: q.before,
    })
}

/// Newest first; `next_before` pages on.
fn page(api: &NodeApi, f: &TaskFilter) -> HttpResult {
    let tasks = api.list_tasks(f);
    let limit = if f.limit == 0 { 100 } else { f.limit.min(1000) } as usize;
    let next = (tasks.len() >= limit)
        .then(|| tasks.last().map(|t| t.id.clone()))
        .flatten();
    ok(&json!({ "tasks": tasks, "next_before": next }))
}

pub async fn list(State(api): State<NodeApi>, q: Result<Query<TaskQuery>, QueryRejection>) -> HttpResult {
    let Query(q) = q.map_err(query_error)?;
    page(&api, &filter(q)?)
}

pub async fn dead(State(api): State<NodeApi>, q: Result<Query<TaskQuery>, QueryRejection>) -> HttpResult {
    let Query(q) = q.map_err(query_error)?;
    let mut f = filter(q)?;
    f.dead = true;
    page(&api, &f)
}

pub async fn submit(State(api): State<NodeApi>, h: HeaderMap, b: Bytes) -> HttpResult {
    let c = caller(&api, &h, Scope::Operate)?;
    let input: SubmitInput = body(&b)?;
    created(&api.submit_tasks(&c, input).await?)
}

pub async fn get(State(api): State<NodeApi>, Path(id): Path<String>) -> HttpResult {
    ok(&api.get_task(&id)?)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct LogQuery {
    #[serde(default)]
    offset: u64,
    #[serde(default)]
    max_bytes: u64,
    /// Follow: wait up to this long (≤ 30 000) for output past `offset`.
    #[serde(default)]
    wait_ms: u64,
}

pub async fn logs(
    State(api): State<NodeApi>,
    Path(id): Path<String>,
    q: Result<Query<LogQuery>, QueryRejection>,
) -> HttpResult {
    let Query(q) = q.map_err(query_error)?;
    if q.wait_ms > MAX_LOG_WAIT_MS {
        return Err(ApiError::invalid("wait_ms", format!("at most {MAX_LOG_WAIT_MS}")).into());
    }
    let max = if q.max_bytes == 0 {
        64 * 1024
    } else {
        q.max_bytes.min(MAX_LOG_READ)
    };
    let deadline = tokio::time::Instant::now() + Duration::from_millis(q.wait_ms);
    let mut changes = api.subscribe();
    loop {
        let slice = api.task_logs(&id, q.offset, max)?;
        let done = api.get_task(&id)?.state.is_terminal();
        if !slice.chunks.is_empty() || done || tokio::time::Instant::now() >= deadline {
            return ok(&slice);
        }
        if tokio::time::timeout_at(deadline, changes.changed())
            .await
            .is_err()
        {
            continue; // one last read at the deadline
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CancelInput {
    #[serde(default)]
    ids: Vec<String>,
    #[serde(default)]
    reason: String,
}

pub async fn cancel_many(State(api): State<NodeApi>, h: HeaderMap, b: Bytes) -> HttpResult {
    let c = caller(&api, &h, Scope::Operate)?;
    let i: CancelInput = body(&b)?;
    ok(&json!({ "cancelled": api.cancel_tasks(&c, i.ids, &i.reason).await? }))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CancelOne {
    #[serde(default)]
    reason: String,
}

pub async fn cancel(
    State(api): State<NodeApi>,
    Path(id): Path<String>,
    h: HeaderMap,
    b: Bytes,
) -> HttpResult {
    let c = caller(&api, &h, Scope::Operate)?;
    let i: CancelOne = body(&b)?;
    ok(&json!({ "cancelled": api.cancel_tasks(&c, vec![id], &i.reason).await? }))
}

pub async fn group(State(api): State<NodeApi>, Path(id): Path<String>) -> HttpResult {
    ok(&api.group_status(&id)?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkflowInput {
    name: String,
    tasks: Vec<TaskSpec>,
}

pub async fn submit_workflow(State(api): State<NodeApi>, h: HeaderMap, b: Bytes) -> HttpResult {
    let c = caller(&api, &h, Scope::Operate)?;
    let w: WorkflowInput = body(&b)?;
    let input = SubmitInput {
        tasks: w.tasks,
        workflow: Some(w.name),
        ..Default::default()
    };
    created(&api.submit_tasks(&c, input).await?)
}

pub async fn workflows(State(api): State<NodeApi>) -> HttpResult {
    ok(&json!({ "workflows": api.list_workflows() }))
}

pub async fn workflow(State(api): State<NodeApi>, Path(key): Path<String>) -> HttpResult {
    ok(&api.get_workflow(&key)?)
}
