//! The node measures itself: the quick self-benchmark (`cortex-bench`, ≤ 5 s) when a node
//! starts, and publishing its summary so placement (`--min-gflops`, `--fastest`) and the
//! approver can use it.
//!
//! The benchmark runs on tokio's blocking pool and never delays start-up or readiness. A
//! coordinator publishes in-process (`SetNodeBench` through `NodeApi::write`), a worker node
//! with its own certificate (`PublishBench`); either retries with backoff until the cluster
//! accepts the full report (the summary is taken from it). A node also runs the benchmark
//! again when asked (`RequestBench`, seen in its heartbeat answer; full unless the request
//! says quick) and publishes that run as the answer. An agent that has not joined yet measures beside its first join
//! request and its next poll carries the figures, so a pending node shows them to the person
//! approving it.

use std::path::PathBuf;
use std::time::Duration;

use cortex_bench::{Figure, Report};
use cortex_model::node::{BenchRequest, BenchSummary};
use cortex_model::{NodeId, UnixMillis};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::api::Published;
use crate::worker::Link;

/// The figures placement and the surfaces use, from a report. A figure the report withheld
/// (not measured, or a wrong result) is 0, as is anything not a finite number ≥ 0.
pub fn summary(report: &Report) -> BenchSummary {
    let median = |f: &Option<Figure>| {
        f.as_ref()
            .map(|f| f.median)
            .filter(|m| m.is_finite() && *m >= 0.0)
            .unwrap_or(0.0)
    };
    BenchSummary {
        cpu_f64_gflops_all: median(&report.cpu.f64_all_cores),
        cpu_f64_gflops_one: median(&report.cpu.f64_one_core),
        cpu_f32_gflops_all: median(&report.cpu.f32_all_cores),
        memory_triad_gbps: median(&report.memory.triad),
        disk_seq_read_mbps: median(&report.disk.seq_read),
        measured_at_ms: report.started_at_ms,
    }
}

/// One benchmark at a time on this machine: a re-run asked for while the start-up run is
/// still going waits for it (two runs at once would each measure half the machine).
static RUNNING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Holds this machine's benchmark lock: a network run (`netbench.rs`) takes it too, so it never
/// overlaps a self-benchmark that loads every core.
pub async fn exclusive() -> tokio::sync::MutexGuard<'static, ()> {
    RUNNING.lock().await
}

/// Runs the benchmark (`quick`: ≤ 5 s, else the full run, ≤ 20 s) on the blocking pool; its
/// disk test writes a temporary file in `data_dir`. `None` only if the benchmark thread died.
pub async fn measure(data_dir: PathBuf, quick: bool) -> Option<Report> {
    let _one_at_a_time = RUNNING.lock().await;
    let opts = cortex_bench::Options {
        quick,
        data_dir,
        threads: None,
    };
    match tokio::task::spawn_blocking(move || cortex_bench::run(&opts)).await {
        Ok(report) => {
            let s = summary(&report);
            tracing::info!(
                gflops_f64_all = s.cpu_f64_gflops_all,
                triad_gbps = s.memory_triad_gbps,
                disk_read_mbps = s.disk_seq_read_mbps,
                "{} self-benchmark done in {:.1} s",
                if quick { "quick" } else { "full" },
                report.duration_ms as f64 / 1000.0
            );
            Some(report)
        }
        Err(e) => {
            tracing::warn!("the self-benchmark thread failed: {e}");
            None
        }
    }
}

/// What to publish for a run: the report and its summary.
fn published(report: Report, answers: Option<UnixMillis>) -> Published {
    Published {
        bench: summary(&report),
        report: Some(report),
        answers,
    }
}

/// This start's quick benchmark, when one was started before the node could publish (while
/// joining): its report, once done, is published instead of measuring again.
pub type Measuring = Option<tokio::task::JoinHandle<Option<Report>>>;

/// Background task of a started node: measures (unless `measuring` is this start's quick run,
/// e.g. started while joining: then its report) and publishes until the cluster accepts it.
/// Never delays the node's start: an agent approved before its measurement ended heartbeats at
/// once and publishes when the run is done.
pub async fn run(
    link: Link,
    node_id: NodeId,
    data_dir: PathBuf,
    measuring: Measuring,
    shutdown: CancellationToken,
) {
    let measured = match measuring {
        Some(run) => tokio::select! {
            _ = shutdown.cancelled() => return,
            r = run => r.ok().flatten(),
        },
        None => None,
    };
    let report = match measured {
        Some(r) => r,
        None => {
            let measured = tokio::select! {
                _ = shutdown.cancelled() => return,
                m = measure(data_dir, true) => m,
            };
            match measured {
                Some(r) => r,
                None => return,
            }
        }
    };
    publish(&link, node_id, &published(report, None), &shutdown).await;
}

/// Background task of every node: runs the benchmark when someone asks (`RequestBench`, seen
/// in the heartbeat answer) and publishes the run as the answer, which clears the request.
/// A request is run once, even if the answer takes a while to be applied.
pub async fn serve_requests(
    link: Link,
    node_id: NodeId,
    data_dir: PathBuf,
    mut requests: watch::Receiver<Option<BenchRequest>>,
    shutdown: CancellationToken,
) {
    let mut last_run: Option<UnixMillis> = None;
    loop {
        let request = requests.borrow_and_update().clone();
        if let Some(req) = request.filter(|r| Some(r.requested_at_ms) != last_run) {
            last_run = Some(req.requested_at_ms);
            tracing::info!(
                quick = req.quick,
                by = req.by.as_deref().unwrap_or("-"),
                "running the self-benchmark on request"
            );
            let measured = tokio::select! {
                _ = shutdown.cancelled() => return,
                m = measure(data_dir.clone(), req.quick) => m,
            };
            if let Some(report) = measured {
                publish(
                    &link,
                    node_id,
                    &published(report, Some(req.requested_at_ms)),
                    &shutdown,
                )
                .await;
            }
            continue;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = requests.changed() => if r.is_err() { return },
        }
    }
}

/// Publishes `p` with backoff (1 s doubling to 30 s) until it is accepted or shutdown.
pub async fn publish(link: &Link, node_id: NodeId, p: &Published, shutdown: &CancellationToken) {
    let mut backoff = Duration::from_secs(1);
    let mut failures = 0u32;
    loop {
        match link.publish_bench(node_id, p).await {
            Ok(()) => {
                tracing::info!("published this node's benchmark report");
                return;
            }
            Err(e) => {
                failures += 1;
                // The first failures are expected while the cluster settles (no leader yet).
                if failures == 3 {
                    tracing::warn!("could not publish this node's benchmark report yet, still trying: {e}");
                } else {
                    tracing::debug!("could not publish the benchmark report (retry in {backoff:?}): {e}");
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figure(median: f64) -> serde_json::Value {
        serde_json::json!({
            "median": median, "min": median, "max": median, "cv": 0.0, "repeats": 3,
            "unit": "x", "conditions": { "threads": 1, "size": "", "features": [] }
        })
    }

    /// A report as `cortex bench -o json` prints it, with the disk section withheld.
    fn report() -> Report {
        let v = serde_json::json!({
            "format": "cortex-bench/1", "quick": true, "started_at_ms": 1234, "duration_ms": 2000,
            "host": { "arch": "x86_64", "cpu_model": null, "cpus_allowed": [0, 1], "threads": 2,
                      "cpu_features": [] },
            "cpu": { "isa": "avx2+fma", "chains": 12, "f64_one_core": figure(55.5),
                     "f64_all_cores": figure(110.0), "f32_one_core": figure(111.0),
                     "f32_all_cores": figure(220.0), "notes": [] },
            "gemm": { "library": "gemm", "n": 512, "f64": figure(90.0), "notes": [] },
            "memory": { "array_bytes": 1, "llc_bytes": null, "streaming_stores": true,
                        "copy": null, "scale": null, "add": null, "triad": figure(38.0), "notes": [] },
            "disk": { "path": "/tmp", "filesystem": "tmpfs", "direct_io": false, "seq_write": null,
                      "seq_read": null, "rand_read_4k": null, "note": "tmpfs/none: in memory",
                      "notes": [] },
            "nics": { "interfaces": [], "notes": [] },
            "gpu": { "unavailable": "no NVIDIA GPU", "devices": [], "notes": [] }
        });
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_report_becomes_a_summary_and_withheld_figures_are_zero() {
        let s = summary(&report());
        assert_eq!(
            s,
            BenchSummary {
                cpu_f64_gflops_all: 110.0,
                cpu_f64_gflops_one: 55.5,
                cpu_f32_gflops_all: 220.0,
                memory_triad_gbps: 38.0,
                disk_seq_read_mbps: 0.0,
                measured_at_ms: 1234,
            }
        );
        let mut r = report();
        r.cpu.f64_all_cores = None;
        if let Some(f) = r.cpu.f64_one_core.as_mut() {
            f.median = f64::NAN;
        }
        if let Some(f) = r.memory.triad.as_mut() {
            f.median = -1.0;
        }
        let s = summary(&r);
        assert_eq!(
            (s.cpu_f64_gflops_all, s.cpu_f64_gflops_one, s.memory_triad_gbps),
            (0.0, 0.0, 0.0)
        );
        assert!(s.check().is_ok(), "{s:?}");
    }
}
