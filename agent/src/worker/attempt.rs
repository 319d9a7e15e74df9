//! One attempt: translate the task spec for the executor, run it, turn its output and its end
//! into reports.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cortex_exec::{ExecError, ExecSpec, Executors, Kind, Limits, Network, Stream};
use cortex_model::task::apply_defaults::DEFAULT_LOG_LIMIT_BYTES;
use cortex_model::task::{AttemptResult, LogStream, NetworkMode, ReportEvent, TaskKind, TaskReport};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::api::tasks::{AssignedGpu, Assignment};

/// The executor's view of an assignment.
pub fn exec_spec(a: &Assignment) -> ExecSpec {
    let (task_id, attempt, spec) = (&a.task_id, a.attempt, &a.spec);
    let mut env = spec.env.clone();
    let mut devices = Vec::new();
    if let Some(gpus) = &a.gpus {
        gpu_env(gpus, &mut env);
        if spec.kind != TaskKind::Exec && !gpus.is_empty() {
            devices = gpu_devices(gpus);
        }
    }
    ExecSpec {
        kind: match spec.kind {
            TaskKind::Exec => Kind::Exec,
            TaskKind::Nspawn => Kind::Nspawn,
            TaskKind::Podman => Kind::Podman,
        },
        name: format!("{}-a{attempt}", task_id.to_ascii_lowercase()),
        command: spec.command.clone(),
        image: spec.image.clone(),
        env,
        workdir: spec.workdir.clone(),
        user: spec.user.clone(),
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
        devices,
    }
}

/// On a node with GPUs, a task sees exactly the ones it was given: CUDA and the NVIDIA
/// container runtime read these (UUIDs, so CUDA's own device order does not matter). The
/// assignment overrides what the task's env says; none given = none visible.
fn gpu_env(gpus: &[AssignedGpu], env: &mut BTreeMap<String, String>) {
    let ids: Vec<String> = gpus
        .iter()
        .map(|g| match g.uuid.is_empty() {
            true => g.index.to_string(),
            false => g.uuid.clone(),
        })
        .collect();
    env.insert("CUDA_VISIBLE_DEVICES".into(), ids.join(","));
    let nvidia = if ids.is_empty() {
        "void".to_string()
    } else {
        ids.join(",")
    };
    env.insert("NVIDIA_VISIBLE_DEVICES".into(), nvidia);
}

/// The device nodes a container needs for its GPUs: one per GPU plus the driver's control
/// nodes (the unified-memory ones only where the driver made them).
fn gpu_devices(gpus: &[AssignedGpu]) -> Vec<PathBuf> {
    let mut devices: Vec<PathBuf> = gpus
        .iter()
        .map(|g| PathBuf::from(format!("/dev/nvidia{}", g.index)))
        .collect();
    devices.push("/dev/nvidiactl".into());
    for optional in ["/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"] {
        if Path::new(optional).exists() {
            devices.push(optional.into());
        }
    }
    devices
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
    let spec = exec_spec(&a);
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

#[cfg(test)]
mod tests {
    use super::*;
    use cortex_model::task::TaskSpec;

    fn assignment(kind: TaskKind, gpus: Option<Vec<AssignedGpu>>) -> Assignment {
        let mut spec = TaskSpec {
            kind,
            command: vec!["true".into()],
            ..Default::default()
        };
        spec.env.insert("CUDA_VISIBLE_DEVICES".into(), "0,1,2,3".into());
        Assignment {
            task_id: "T1".into(),
            attempt: 2,
            spec,
            gpus,
        }
    }

    #[test]
    fn a_task_sees_only_its_gpus() {
        let gpus = vec![
            AssignedGpu {
                index: 1,
                uuid: "GPU-b".into(),
            },
            AssignedGpu {
                index: 3,
                uuid: String::new(),
            },
        ];
        let e = exec_spec(&assignment(TaskKind::Podman, Some(gpus.clone())));
        assert_eq!(e.name, "t1-a2");
        assert_eq!(
            e.env["CUDA_VISIBLE_DEVICES"], "GPU-b,3",
            "the assignment wins over the env"
        );
        assert_eq!(e.env["NVIDIA_VISIBLE_DEVICES"], "GPU-b,3");
        assert_eq!(
            &e.devices[..3],
            [
                PathBuf::from("/dev/nvidia1"),
                PathBuf::from("/dev/nvidia3"),
                PathBuf::from("/dev/nvidiactl"),
            ]
        );
        let e = exec_spec(&assignment(TaskKind::Exec, Some(gpus)));
        assert!(e.devices.is_empty(), "an exec task sees the host's /dev");
        assert_eq!(e.env["CUDA_VISIBLE_DEVICES"], "GPU-b,3");
    }

    #[test]
    fn gpus_are_hidden_from_a_task_that_asked_for_none() {
        let e = exec_spec(&assignment(TaskKind::Nspawn, Some(Vec::new())));
        assert_eq!(e.env["CUDA_VISIBLE_DEVICES"], "");
        assert_eq!(e.env["NVIDIA_VISIBLE_DEVICES"], "void");
        assert!(e.devices.is_empty());
        // A node without GPUs leaves the task's env alone.
        let e = exec_spec(&assignment(TaskKind::Exec, None));
        assert_eq!(e.env["CUDA_VISIBLE_DEVICES"], "0,1,2,3");
        assert!(!e.env.contains_key("NVIDIA_VISIBLE_DEVICES"));
    }
}
