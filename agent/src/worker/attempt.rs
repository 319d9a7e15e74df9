//! One attempt: translate the task spec for the executor, run it, turn its output and its end
//! into reports.

use std::sync::Arc;
use std::time::Duration;

use cortex_exec::{ExecError, ExecSpec, Executors, Kind, Limits, Network, Stream};
use cortex_model::task::apply_defaults::DEFAULT_LOG_LIMIT_BYTES;
use cortex_model::task::{
    AttemptResult, LogStream, NetworkMode, ReportEvent, TaskKind, TaskReport, TaskSpec,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::api::tasks::Assignment;

/// The executor's view of a task spec.
pub fn exec_spec(task_id: &str, attempt: u32, spec: &TaskSpec) -> ExecSpec {
    ExecSpec {
        kind: match spec.kind {
            TaskKind::Exec => Kind::Exec,
            TaskKind::Nspawn => Kind::Nspawn,
            TaskKind::Podman => Kind::Podman,
        },
        name: format!("{}-a{attempt}", task_id.to_ascii_lowercase()),
        command: spec.command.clone(),
        image: spec.image.clone(),
        env: spec.env.clone(),
        workdir: spec.workdir.clone(),
        limits: Limits {
            cpu_millis: spec.resources.cpu_millis,
            memory_bytes: spec.resources.memory_bytes,
            pids: Some(
                spec.resources
                    .pids
                    .unwrap_or(cortex_model::task::ResourceRequest::DEFAULT_PIDS),
            ),
        },
        network: match spec.network {
            NetworkMode::None => Network::Private,
            NetworkMode::Host => Network::Host,
        },
        timeout: spec.timeout_ms.map(Duration::from_millis),
    }
}

pub async fn run(
    executors: Arc<Executors>,
    a: Assignment,
    reports: mpsc::Sender<TaskReport>,
    cancel: CancellationToken,
) {
    let report = |event| TaskReport {
        task_id: a.task_id.clone(),
        attempt: a.attempt,
        event,
    };
    let _ = reports.send(report(ReportEvent::Started)).await;
    let limit = match a.spec.log_limit_bytes {
        0 => DEFAULT_LOG_LIMIT_BYTES,
        l => l,
    };
    let (out_tx, mut out_rx) = mpsc::channel::<cortex_exec::Output>(64);
    let pump = {
        let reports = reports.clone();
        let (task_id, attempt) = (a.task_id.clone(), a.attempt);
        tokio::spawn(async move {
            let mut offset = 0u64;
            let mut dropped = 0u64;
            while let Some(chunk) = out_rx.recv().await {
                let len = chunk.data.len() as u64;
                let room = limit.saturating_sub(offset);
                if room == 0 {
                    dropped += len;
                    continue;
                }
                let keep = len.min(room) as usize;
                dropped += len - keep as u64;
                let mut data = chunk.data;
                data.truncate(keep);
                let stream = match chunk.stream {
                    Stream::Stdout => LogStream::Stdout,
                    Stream::Stderr => LogStream::Stderr,
                };
                let event = ReportEvent::Output { stream, offset, data };
                offset += keep as u64;
                let _ = reports
                    .send(TaskReport {
                        task_id: task_id.clone(),
                        attempt,
                        event,
                    })
                    .await;
            }
            dropped
        })
    };
    let spec = exec_spec(&a.task_id, a.attempt, &a.spec);
    let result = executors.run(spec, out_tx, cancel.clone()).await;
    let dropped_bytes = pump.await.unwrap_or(0);
    let result = match result {
        Ok(exit) if exit.cancelled => AttemptResult::Cancelled {
            reason: "killed on this node".into(),
        },
        Ok(exit) => AttemptResult::Exited {
            code: exit.exit_code(),
            oom_killed: exit.oom_killed,
            timed_out: exit.timed_out,
        },
        Err(e @ ExecError::InvalidSpec { .. }) => AttemptResult::ExecutorError {
            message: e.to_string(),
            permanent: true,
        },
        Err(e @ (ExecError::Unavailable(_) | ExecError::Io { .. })) => AttemptResult::ExecutorError {
            message: e.to_string(),
            permanent: false,
        },
    };
    tracing::debug!(task = %a.task_id, attempt = a.attempt, ?result, "attempt ended");
    let _ = reports
        .send(report(ReportEvent::Finished {
            result,
            dropped_bytes,
        }))
        .await;
}
