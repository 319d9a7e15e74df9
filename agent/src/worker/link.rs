//! How the worker talks to the cluster: in-process on a coordinator (the node API itself), or
//! over mTLS gRPC to a coordinator on a worker node. Both give the same two things: a stream of
//! assignment sets and a way to send reports.

use std::sync::Arc;
use std::time::Duration;

use cortex_model::task::TaskReport;
use cortex_model::NodeId;
use cortex_proto::v1 as pb;
use cortex_proto::v1::cortex_client::CortexClient;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::transport::ClientTlsConfig;

use crate::api::tasks::Assignment;
use crate::api::{NetPublished, NodeApi, Published};

#[derive(Clone)]
pub enum Link {
    /// This process is a coordinator: read the local applied state, write through the API.
    Local(NodeApi),
    /// A worker node: gRPC to the coordinators, with this node's certificate.
    Remote(Arc<Remote>),
}

pub struct Remote {
    pub tls: ClientTlsConfig,
    pub coordinators: Vec<String>,
}

impl Remote {
    fn client(&self, i: usize) -> Option<(String, CortexClient<tonic::transport::Channel>)> {
        if self.coordinators.is_empty() {
            return None;
        }
        let addr = self.coordinators[i % self.coordinators.len()].clone();
        let ch = cortex_cluster::pki::lazy_channel(&addr, &self.tls, Duration::from_secs(2)).ok()?;
        Some((addr, CortexClient::new(ch)))
    }
}

impl Link {
    /// Assignment sets for `node_id`, as they change (and repeated periodically).
    pub fn assignments(
        &self,
        node_id: NodeId,
        shutdown: CancellationToken,
    ) -> mpsc::Receiver<Vec<Assignment>> {
        let (tx, rx) = mpsc::channel(4);
        match self.clone() {
            Link::Local(api) => {
                tokio::spawn(async move {
                    let mut changes = api.subscribe();
                    let mut last = None;
                    loop {
                        let set = api.assignments(node_id);
                        if last.as_ref() != Some(&set) {
                            if tx.send(set.clone()).await.is_err() {
                                return;
                            }
                            last = Some(set);
                        }
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            r = tokio::time::timeout(Duration::from_secs(2), changes.changed()) => {
                                if r.is_err() {
                                    last = None;
                                }
                            }
                        }
                    }
                });
            }
            Link::Remote(remote) => {
                tokio::spawn(async move {
                    let mut i = 0usize;
                    loop {
                        if shutdown.is_cancelled() {
                            return;
                        }
                        if let Some((addr, mut client)) = remote.client(i) {
                            match bounded(client.watch_assignments(pb::WatchAssignmentsRequest { node_id }))
                                .await
                            {
                                Ok(resp) => {
                                    let mut stream = resp.into_inner();
                                    loop {
                                        let msg = tokio::select! {
                                            _ = shutdown.cancelled() => return,
                                            m = tokio::time::timeout(Duration::from_secs(6), stream.message()) => m,
                                        };
                                        match msg {
                                            Ok(Ok(Some(m))) => {
                                                match serde_json::from_str(&m.assignments_json) {
                                                    Ok(set) => {
                                                        if tx.send(set).await.is_err() {
                                                            return;
                                                        }
                                                    }
                                                    Err(e) => {
                                                        tracing::warn!(coordinator = %addr, "bad assignment set: {e}")
                                                    }
                                                }
                                            }
                                            Ok(Ok(None)) => break,
                                            Ok(Err(s)) => {
                                                tracing::debug!(coordinator = %addr, "assignment stream ended: {}", s.message());
                                                break;
                                            }
                                            Err(_) => {
                                                tracing::debug!(coordinator = %addr, "assignment stream silent: reconnecting");
                                                break;
                                            }
                                        }
                                    }
                                }
                                Err(s) => {
                                    tracing::debug!(coordinator = %addr, "cannot watch assignments: {}", s.message())
                                }
                            }
                        }
                        i += 1;
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                        }
                    }
                });
            }
        }
        rx
    }

    /// Publishes the images in this node's local store.
    pub async fn publish_images(&self, node_id: NodeId, images: Vec<String>) -> Result<(), String> {
        match self {
            Link::Local(api) => api
                .publish_images(node_id, images)
                .await
                .map_err(|e| e.to_string()),
            Link::Remote(remote) => {
                let mut last = String::from("no coordinator address known");
                for i in 0..remote.coordinators.len() {
                    let Some((addr, mut client)) = remote.client(i) else {
                        continue;
                    };
                    match bounded(client.publish_images(pb::PublishImagesRequest {
                        node_id,
                        images: images.clone(),
                    }))
                    .await
                    {
                        Ok(_) => return Ok(()),
                        Err(s) => last = format!("{addr}: {}", s.message()),
                    }
                }
                Err(last)
            }
        }
    }

    /// Publishes this node's self-benchmark (summary and full report; to any coordinator, a
    /// follower forwards the write to the leader).
    pub async fn publish_bench(&self, node_id: NodeId, p: &Published) -> Result<(), String> {
        match self {
            Link::Local(api) => api
                .publish_bench(node_id, p.clone())
                .await
                .map_err(|e| e.to_string()),
            Link::Remote(remote) => {
                let bench_json = serde_json::to_string(&p.bench).map_err(|e| e.to_string())?;
                let report_json = match &p.report {
                    Some(r) => serde_json::to_string(r).map_err(|e| e.to_string())?,
                    None => String::new(),
                };
                let mut last = String::from("no coordinator address known");
                for i in 0..remote.coordinators.len() {
                    let Some((addr, mut client)) = remote.client(i) else {
                        continue;
                    };
                    let mut req = tonic::Request::new(pb::PublishBenchRequest {
                        node_id,
                        bench_json: bench_json.clone(),
                        report_json: report_json.clone(),
                        answers_ms: p.answers,
                    });
                    req.set_timeout(Duration::from_secs(10));
                    match bounded(client.publish_bench(req)).await {
                        Ok(_) => return Ok(()),
                        Err(s) => last = format!("{addr}: {}", s.message()),
                    }
                }
                Err(last)
            }
        }
    }

    /// Publishes where this node listens for a network run, or the run's report (to any
    /// coordinator; a follower forwards the write to the leader).
    pub async fn publish_net_bench(&self, node_id: NodeId, p: &NetPublished) -> Result<(), String> {
        match self {
            Link::Local(api) => api
                .publish_net_bench(node_id, p.clone())
                .await
                .map_err(|e| e.to_string()),
            Link::Remote(remote) => {
                let (answers_ms, listening, report_json) = match p {
                    NetPublished::Listening { answers, addr } => (*answers, addr.clone(), String::new()),
                    NetPublished::Report { answers, report } => (
                        *answers,
                        String::new(),
                        serde_json::to_string(report).map_err(|e| e.to_string())?,
                    ),
                };
                let mut last = String::from("no coordinator address known");
                for i in 0..remote.coordinators.len() {
                    let Some((addr, mut client)) = remote.client(i) else {
                        continue;
                    };
                    let mut req = tonic::Request::new(pb::PublishNetBenchRequest {
                        node_id,
                        answers_ms,
                        listening: listening.clone(),
                        report_json: report_json.clone(),
                    });
                    req.set_timeout(Duration::from_secs(10));
                    match bounded(client.publish_net_bench(req)).await {
                        Ok(_) => return Ok(()),
                        Err(s) => last = format!("{addr}: {}", s.message()),
                    }
                }
                Err(last)
            }
        }
    }

    /// Sends reports; returns the stale attempts the cluster refused.
    async fn report(
        &self,
        node_id: NodeId,
        reports: Vec<TaskReport>,
        attempt: usize,
    ) -> Result<Vec<(String, u32)>, String> {
        match self {
            Link::Local(api) => api
                .report_tasks(node_id, reports)
                .await
                .map_err(|e| e.to_string()),
            Link::Remote(remote) => {
                let (addr, mut client) = remote.client(attempt).ok_or("no coordinator address known")?;
                let json = serde_json::to_string(&reports).map_err(|e| e.to_string())?;
                let mut req = tonic::Request::new(pb::ReportTasksRequest {
                    node_id,
                    reports_json: json,
                });
                req.set_timeout(Duration::from_secs(10));
                let resp = bounded(client.report_tasks(req))
                    .await
                    .map_err(|s| format!("{addr}: {}", s.message()))?;
                serde_json::from_str(&resp.into_inner().json).map_err(|e| e.to_string())
            }
        }
    }
}

/// Sends reports in order, batching whatever has queued up; retries a failed batch (the
/// cluster drops what it already has: output by offset, state changes by fencing).
pub async fn report_loop(
    link: Link,
    node_id: NodeId,
    mut rx: mpsc::Receiver<TaskReport>,
    stale: mpsc::UnboundedSender<(String, u32)>,
    shutdown: CancellationToken,
) {
    if let Link::Local(api) = &link {
        return local_report_loop(api.clone(), node_id, rx, stale, shutdown).await;
    }
    let mut failures = 0usize;
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < 512 {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        fold_started(&mut batch);
        loop {
            match link.report(node_id, batch.clone(), failures).await {
                Ok(refused) => {
                    failures = 0;
                    pass_on_refused(refused, &stale);
                    break;
                }
                Err(e) => {
                    failures += 1;
                    tracing::debug!(reports = batch.len(), "reporting failed (will retry): {e}");
                    let backoff = Duration::from_millis((50 * failures as u64).min(1000));
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                }
            }
        }
    }
}

/// Drops a `Started` whose attempt also finishes in the same batch: `Finished` implies it, and
/// a fast task then costs one replicated write less.
fn fold_started(batch: &mut Vec<TaskReport>) {
    use cortex_model::task::ReportEvent;
    let finished: std::collections::HashSet<(String, u32)> = batch
        .iter()
        .filter(|r| matches!(r.event, ReportEvent::Finished { .. }))
        .map(|r| (r.task_id.clone(), r.attempt))
        .collect();
    if !finished.is_empty() {
        batch.retain(|r| {
            !(matches!(r.event, ReportEvent::Started) && finished.contains(&(r.task_id.clone(), r.attempt)))
        });
    }
}

/// Most report batches in flight at once on a coordinator's own worker.
const LOCAL_IN_FLIGHT: usize = 4;

type Pending = tokio::sync::oneshot::Receiver<Result<cortex_model::command::Outcome, crate::api::ApiError>>;

/// The in-process variant: batches are queued on the node's write path in order and several
/// are in flight at once (they join the same group commits); a failed batch is queued again.
async fn local_report_loop(
    api: NodeApi,
    node_id: NodeId,
    mut rx: mpsc::Receiver<TaskReport>,
    stale: mpsc::UnboundedSender<(String, u32)>,
    shutdown: CancellationToken,
) {
    use cortex_model::command::{Command, Outcome};
    let mut inflight: std::collections::VecDeque<(Vec<TaskReport>, Pending)> = Default::default();
    let mut open = true;
    loop {
        if !open && inflight.is_empty() {
            return;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            first = rx.recv(), if open && inflight.len() < LOCAL_IN_FLIGHT => {
                let Some(first) = first else { open = false; continue };
                let mut batch = vec![first];
                while batch.len() < 512 {
                    match rx.try_recv() {
                        Ok(r) => batch.push(r),
                        Err(_) => break,
                    }
                }
                fold_started(&mut batch);
                let cmd = Command::ReportTasks { node_id, reports: batch.clone(), at_ms: crate::api::now_ms() };
                match api.enqueue_write(cmd).await {
                    Ok(p) => inflight.push_back((batch, p)),
                    Err(_) => return, // shutting down
                }
            }
            done = async { (&mut inflight.front_mut().expect("guarded by the condition").1).await }, if !inflight.is_empty() => {
                let Some((batch, _)) = inflight.pop_front() else { continue };
                match done {
                    Ok(Ok(Outcome::Reports { stale: refused })) => pass_on_refused(refused, &stale),
                    Ok(Ok(other)) => tracing::warn!("unexpected outcome for reports: {other:?}"),
                    Ok(Err(e)) => {
                        tracing::debug!(reports = batch.len(), "reporting failed (will retry): {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        let cmd = Command::ReportTasks { node_id, reports: batch.clone(), at_ms: crate::api::now_ms() };
                        match api.enqueue_write(cmd).await {
                            Ok(p) => inflight.push_front((batch, p)),
                            Err(_) => return,
                        }
                    }
                    Err(_) => return, // the write path is gone: shutting down
                }
            }
        }
    }
}

/// A call to a coordinator, bounded locally: a gRPC deadline alone does not end a call to a
/// process that accepts the connection but never answers (a frozen coordinator).
pub async fn bounded<T>(
    call: impl std::future::Future<Output = Result<T, tonic::Status>>,
) -> Result<T, tonic::Status> {
    match tokio::time::timeout(Duration::from_secs(10), call).await {
        Ok(r) => r,
        Err(_) => Err(tonic::Status::deadline_exceeded("no answer within 10 s")),
    }
}

/// Hands the attempts the cluster refused reports for (re-assigned or cancelled) to the worker,
/// which kills them.
fn pass_on_refused(refused: Vec<(String, u32)>, stale: &mpsc::UnboundedSender<(String, u32)>) {
    if !refused.is_empty() {
        tracing::info!(
            "the cluster refused reports for {} stale attempt(s) (re-assigned or cancelled): {:?}",
            refused.len(),
            refused
        );
    }
    for s in refused {
        let _ = stale.send(s);
    }
}
