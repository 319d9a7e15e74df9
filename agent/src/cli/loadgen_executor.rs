//! `cortex loadgen executor`: the executor alone. N exec attempts through
//! `cortex_exec::Executors::run` — the cgroups and limits, the private network namespace, the
//! scratch dir, output capture and cleanup every task gets — C at a time, with no cluster
//! around it. It is the ceiling for `loadgen tasks` on the same host, which adds Raft,
//! placement and gRPC on top of exactly this; scripts/bench-tasks.py prints both.
//!
//! Besides throughput it reports the CPU the whole machine spent per attempt (from
//! /proc/stat, so the kernel's deferred cgroup and namespace teardown in its worker threads
//! counts too).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cortex_exec::{ExecConfig, ExecSpec, Executors, Kind, Limits, Network, UserPolicy};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::loadgen_tasks::{report, LatencyReport};
use super::output::{self, Output};

#[derive(Debug, clap::Args)]
pub struct ExecutorArgs {
    /// Attempts to run in all.
    #[arg(long, default_value_t = 1000)]
    pub count: usize,
    /// Attempts running at once.
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// Use the host's network instead of a private namespace (shows what the namespace costs).
    #[arg(long)]
    pub host_network: bool,
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

#[derive(Serialize)]
struct Report {
    /// Attempts that exited 0: count, throughput and latency, as `loadgen tasks` reports them.
    #[serde(flatten)]
    latency: LatencyReport,
    /// CPU the whole machine was busy for, per attempt (all processes and kernel threads).
    machine_cpu_ms_per_attempt: f64,
    /// Cores this host has: `cores / machine CPU per attempt` bounds attempts per second.
    cores: usize,
}

/// The same cgroup parent on every run, so repeated runs leave at most one empty group.
const CGROUP_PARENT: &str = "cortex-loadgen";

pub async fn executor(a: ExecutorArgs, out: Output) -> anyhow::Result<()> {
    anyhow::ensure!(a.count >= 1, "--count must be at least 1");
    anyhow::ensure!(a.clients >= 1, "--clients must be at least 1");
    anyhow::ensure!(!a.command.is_empty(), "give a command after --");
    let work = std::env::temp_dir().join(format!("cortex-loadgen-{}", std::process::id()));
    let result = run(&a, &work).await;
    if let Err(e) = std::fs::remove_dir_all(&work) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(dir = %work.display(), error = %e, "removing the work dir");
        }
    }
    let r = result?;
    if out == Output::Json {
        return output::print_json(&r);
    }
    let l = &r.latency;
    println!(
        "{}: {} in {:.2}s = {:.0}/s; p50 {:.2} ms; machine CPU {:.2} ms per attempt ({} failed)",
        l.what, l.count, l.seconds, l.per_sec, l.p50_ms, r.machine_cpu_ms_per_attempt, l.failed
    );
    Ok(())
}

async fn run(a: &ExecutorArgs, work: &std::path::Path) -> anyhow::Result<Report> {
    let config = ExecConfig {
        work_root: work.join("exec"),
        podman_socket: None,
        scratch_root: work.join("scratch"),
        cgroup_parent: CGROUP_PARENT.into(),
        // What a node does by default: attempts run as `nobody`.
        users: UserPolicy {
            default_user: Some("nobody".into()),
            allow_root: false,
        },
    };
    let executors = Arc::new(Executors::new(config)?);
    let next = Arc::new(AtomicUsize::new(0));
    let network = if a.host_network {
        Network::Host
    } else {
        Network::Private
    };
    let busy0 = machine_busy_seconds()?;
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..a.clients.min(a.count) {
        let (executors, next, command) = (executors.clone(), next.clone(), a.command.clone());
        let count = a.count;
        workers.push(tokio::spawn(async move {
            let (mut lat, mut failed) = (Vec::new(), 0usize);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return (lat, failed);
                }
                let spec = ExecSpec {
                    kind: Kind::Exec,
                    name: format!("lg-{}-{i}", std::process::id()),
                    command: command.clone(),
                    image: None,
                    env: Default::default(),
                    workdir: None,
                    user: None,
                    limits: Limits {
                        pids: Some(cortex_model::task::ResourceRequest::DEFAULT_PIDS),
                        ..Default::default()
                    },
                    network,
                    timeout: None,
                    devices: Vec::new(),
                };
                let (tx, mut rx) = mpsc::channel(64);
                let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
                let t = Instant::now();
                match executors.run(spec, tx, CancellationToken::new()).await {
                    Ok(exit) if exit.exit_code() == 0 => lat.push(t.elapsed()),
                    Ok(exit) => {
                        failed += 1;
                        tracing::warn!(code = exit.exit_code(), "attempt failed");
                    }
                    Err(e) => {
                        failed += 1;
                        tracing::warn!(error = %e, "attempt could not run");
                    }
                }
                let _ = drain.await;
            }
        }));
    }
    let (mut lat, mut failed) = (Vec::<Duration>::new(), 0);
    for w in workers {
        let (l, f) = w.await?;
        lat.extend(l);
        failed += f;
    }
    let seconds = start.elapsed().as_secs_f64();
    // The kernel tears namespaces down in its own worker threads a little later.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let busy = machine_busy_seconds()? - busy0;
    let what = format!(
        "executor alone, exec {}{}",
        a.command.join(" "),
        if a.host_network { " (host network)" } else { "" }
    );
    Ok(Report {
        latency: report(&what, lat, failed, seconds),
        machine_cpu_ms_per_attempt: busy / a.count as f64 * 1000.0,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
    })
}

/// Seconds the machine's CPUs were busy since boot (everything but idle and iowait).
fn machine_busy_seconds() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let cpu = stat
        .lines()
        .next()
        .filter(|l| l.starts_with("cpu "))
        .ok_or_else(|| anyhow::anyhow!("/proc/stat has no `cpu` line"))?;
    let fields: Vec<u64> = cpu
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse::<u64>())
        .collect::<Result<_, _>>()?;
    anyhow::ensure!(fields.len() >= 5, "/proc/stat's `cpu` line is too short");
    let busy: u64 = fields.iter().sum::<u64>() - fields[3] - fields[4];
    // /proc/stat counts in USER_HZ, 100 on the x86-64 and arm64 kernels the agent runs on.
    Ok(busy as f64 / 100.0)
}
