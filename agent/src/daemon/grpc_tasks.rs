//! The task RPCs of the `Cortex` gRPC service: decode JSON, call `NodeApi`, encode JSON.

use std::time::Duration;

use cortex_cluster::raft_service::peer_node;
use cortex_model::task::{TaskReport, TaskState};
use cortex_model::token::Scope;
use cortex_proto::v1 as pb;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::grpc::{caller, status};
use crate::api::tasks::{SubmitInput, TaskFilter};
use crate::api::{ApiError, NodeApi};

pub type WatchTaskStream = ReceiverStream<Result<pb::TaskUpdate, Status>>;
pub type AssignmentStream = ReceiverStream<Result<pb::AssignmentSet, Status>>;

/// How often an idle assignment stream repeats itself, so a node notices a dead connection.
pub const ASSIGNMENT_KEEPALIVE: Duration = Duration::from_secs(2);

pub fn json<T: Serialize>(v: &T) -> Result<Response<pb::JsonResponse>, Status> {
    serde_json::to_string(v)
        .map(|json| Response::new(pb::JsonResponse { json }))
        .map_err(|e| Status::internal(format!("cannot encode the answer: {e}")))
}

fn parse<T: serde::de::DeserializeOwned + Default>(field: &str, s: &str) -> Result<T, Status> {
    if s.trim().is_empty() {
        return Ok(T::default());
    }
    // The error names the path inside the JSON (`tasks[0].kind`), not just a column.
    let de = &mut serde_json::Deserializer::from_str(s);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path.is_empty() || path == "." {
            status(ApiError::invalid(field, inner.to_string()))
        } else {
            status(ApiError::invalid(&format!("{field}: {path}"), inner.to_string()))
        }
    })
}

pub async fn submit(
    api: &NodeApi,
    req: Request<pb::JsonRequest>,
) -> Result<Response<pb::JsonResponse>, Status> {
    let caller = caller(api, &req, Scope::Operate)?;
    let input: SubmitInput = parse("input_json", &req.into_inner().input_json)?;
    let out = api.submit_tasks(&caller, input).await.map_err(status)?;
    json(&out)
}

pub fn get(api: &NodeApi, req: Request<pb::KeyRequest>) -> Result<Response<pb::JsonResponse>, Status> {
    json(&api.get_task(&req.into_inner().key).map_err(status)?)
}

pub fn list(api: &NodeApi, req: Request<pb::JsonRequest>) -> Result<Response<pb::JsonResponse>, Status> {
    let f: TaskFilter = parse("input_json", &req.into_inner().input_json)?;
    json(&api.list_tasks(&f))
}

pub fn logs(api: &NodeApi, req: Request<pb::TaskLogsRequest>) -> Result<Response<pb::JsonResponse>, Status> {
    let r = req.into_inner();
    json(&api.task_logs(&r.id, r.offset, r.max_bytes).map_err(status)?)
}

#[derive(serde::Deserialize, Default)]
struct CancelInput {
    #[serde(default)]
    ids: Vec<String>,
    #[serde(default)]
    reason: String,
}

pub async fn cancel(
    api: &NodeApi,
    req: Request<pb::JsonRequest>,
) -> Result<Response<pb::JsonResponse>, Status> {
    let caller = caller(api, &req, Scope::Operate)?;
    let input: CancelInput = parse("input_json", &req.into_inner().input_json)?;
    json(
        &api.cancel_tasks(&caller, input.ids, &input.reason)
            .await
            .map_err(status)?,
    )
}

pub fn workflow(api: &NodeApi, req: Request<pb::KeyRequest>) -> Result<Response<pb::JsonResponse>, Status> {
    json(&api.get_workflow(&req.into_inner().key).map_err(status)?)
}

pub fn workflows(api: &NodeApi) -> Result<Response<pb::JsonResponse>, Status> {
    json(&api.list_workflows())
}

pub fn group(api: &NodeApi, req: Request<pb::KeyRequest>) -> Result<Response<pb::JsonResponse>, Status> {
    json(&api.group_status(&req.into_inner().key).map_err(status)?)
}

/// Follows a task: its record whenever it changes, its log as it grows.
pub fn watch(api: &NodeApi, req: Request<pb::TaskLogsRequest>) -> Result<Response<WatchTaskStream>, Status> {
    let r = req.into_inner();
    let first = api.get_task(&r.id).map_err(status)?;
    let (tx, rx) = mpsc::channel(16);
    let api = api.clone();
    tokio::spawn(async move {
        let mut changes = api.subscribe();
        let mut offset = r.offset;
        let mut task = first;
        // The record is sent when it changed; `task_if_changed` compares it under the state
        // lock without copying, so the many watchers woken by every applied entry only copy a
        // record that really changed.
        let mut task_changed = true;
        let mut sent_terminal = false;
        loop {
            let slice = match api.task_logs(&r.id, offset, r.max_bytes) {
                Ok(s) => s,
                Err(e) => {
                    let _ = tx.send(Err(status(e))).await;
                    return;
                }
            };
            let has_log = !slice.chunks.is_empty() || slice.next_offset != offset;
            if task_changed || has_log {
                let update = pb::TaskUpdate {
                    task_json: if task_changed {
                        serde_json::to_string(&task).unwrap_or_default()
                    } else {
                        String::new()
                    },
                    log_json: if has_log {
                        serde_json::to_string(&slice).unwrap_or_default()
                    } else {
                        String::new()
                    },
                };
                if tx.send(Ok(update)).await.is_err() {
                    return;
                }
                if task_changed {
                    sent_terminal = task.state.is_terminal();
                    task_changed = false;
                }
            }
            offset = slice.next_offset;
            let done = task.state.is_terminal() && offset >= slice.size;
            if !r.follow || done {
                return;
            }
            if has_log && offset < slice.size {
                continue; // more to read right away
            }
            tokio::select! {
                _ = tx.closed() => return,
                _ = tokio::time::timeout(Duration::from_secs(5), changes.changed()) => {}
            }
            match api.task_if_changed(&r.id, &task) {
                Ok(Some(t)) => {
                    task = t;
                    task_changed = true;
                }
                Ok(None) => {}
                Err(e) => {
                    let _ = tx.send(Err(status(e))).await;
                    return;
                }
            }
            // A terminal task's last output may be applied in the same entry: read once more.
            if task.state == TaskState::Pending && sent_terminal {
                return;
            }
        }
    });
    Ok(Response::new(ReceiverStream::new(rx)))
}

fn node_caller<T>(req: &Request<T>, claimed: u64, what: &str) -> Result<u64, Status> {
    let (peer_id, _) = peer_node(req)
        .ok_or_else(|| Status::unauthenticated(format!("{what} needs an approved node certificate")))?;
    if claimed != peer_id {
        return Err(Status::permission_denied(format!(
            "node {peer_id}'s certificate cannot {what} for node {claimed}"
        )));
    }
    Ok(peer_id)
}

/// The attempts a node should run: sent at once, on every change, and as a keepalive.
pub fn assignments(
    api: &NodeApi,
    req: Request<pb::WatchAssignmentsRequest>,
) -> Result<Response<AssignmentStream>, Status> {
    let node_id = node_caller(&req, req.get_ref().node_id, "watch assignments")?;
    let (tx, rx) = mpsc::channel(4);
    let api = api.clone();
    tokio::spawn(async move {
        let mut changes = api.subscribe();
        let mut last = None;
        loop {
            let set = api.assignments(node_id);
            if last.as_ref() != Some(&set) || changes.has_changed().is_err() {
                let msg = pb::AssignmentSet {
                    assignments_json: serde_json::to_string(&set).unwrap_or_else(|_| "[]".into()),
                };
                if tx.send(Ok(msg)).await.is_err() {
                    return;
                }
                last = Some(set);
            }
            tokio::select! {
                _ = tx.closed() => return,
                r = tokio::time::timeout(ASSIGNMENT_KEEPALIVE, changes.changed()) => {
                    if r.is_err() {
                        last = None; // keepalive: send the set again
                    }
                }
            }
        }
    });
    Ok(Response::new(ReceiverStream::new(rx)))
}

pub async fn report(
    api: &NodeApi,
    req: Request<pb::ReportTasksRequest>,
) -> Result<Response<pb::JsonResponse>, Status> {
    let node_id = node_caller(&req, req.get_ref().node_id, "report on tasks")?;
    let r = req.into_inner();
    let reports: Vec<TaskReport> = serde_json::from_str(&r.reports_json)
        .map_err(|e| status(ApiError::invalid("reports_json", e.to_string())))?;
    json(&api.report_tasks(node_id, reports).await.map_err(status)?)
}

pub async fn publish_images(
    api: &NodeApi,
    req: Request<pb::PublishImagesRequest>,
) -> Result<Response<pb::JsonResponse>, Status> {
    let node_id = node_caller(&req, req.get_ref().node_id, "publish images")?;
    let r = req.into_inner();
    api.publish_images(node_id, r.images).await.map_err(status)?;
    json(&serde_json::json!({ "ok": true }))
}

/// A node publishes its self-benchmark summary (its own certificate only).
pub async fn publish_bench(
    api: &NodeApi,
    req: Request<pb::PublishBenchRequest>,
) -> Result<Response<pb::JsonResponse>, Status> {
    let node_id = node_caller(&req, req.get_ref().node_id, "publish a benchmark")?;
    let r = req.into_inner();
    api.publish_bench_json(node_id, &r.bench_json, &r.report_json, r.answers_ms)
        .await
        .map_err(status)?;
    json(&serde_json::json!({ "ok": true }))
}

/// The peer of a network run says where it listens, then publishes its report (its own
/// certificate only).
pub async fn publish_net_bench(
    api: &NodeApi,
    req: Request<pb::PublishNetBenchRequest>,
) -> Result<Response<pb::JsonResponse>, Status> {
    let node_id = node_caller(&req, req.get_ref().node_id, "publish a network benchmark")?;
    let r = req.into_inner();
    api.publish_net_bench_wire(node_id, r.answers_ms, r.listening, &r.report_json)
        .await
        .map_err(status)?;
    json(&serde_json::json!({ "ok": true }))
}
