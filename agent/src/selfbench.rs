//! The node measures itself: the quick self-benchmark (`cortex-bench`, ≤ 5 s) when a node
//! starts, and publishing its summary so placement (`--min-gflops`, `--fastest`) and the
//! approver can use it.
//!
//! The benchmark runs on tokio's blocking pool and never delays start-up or readiness. A
//! coordinator publishes in-process (`SetNodeBench` through `NodeApi::write`), a worker node
//! with its own certificate (`PublishBench`); either retries with backoff until the cluster
//! accepts the summary. An agent that has not joined yet measures before its first join
//! request, so a pending node shows its figures to the person approving it.

use std::path::PathBuf;
use std::time::Duration;

use cortex_bench::{Figure, Report};
use cortex_model::node::BenchSummary;
use cortex_model::NodeId;
use tokio_util::sync::CancellationToken;

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

/// Runs the quick benchmark on the blocking pool (its disk test writes a temporary file in
/// `data_dir`). `None` only if the benchmark thread died.
pub async fn measure(data_dir: PathBuf) -> Option<BenchSummary> {
    let opts = cortex_bench::Options {
        quick: true,
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
                "quick self-benchmark done in {:.1} s",
                report.duration_ms as f64 / 1000.0
            );
            Some(s)
        }
        Err(e) => {
            tracing::warn!("the self-benchmark thread failed: {e}");
            None
        }
    }
}

/// Background task of a started node: measures (unless `measured` already holds this start's
/// summary, e.g. taken before joining) and publishes until the cluster accepts it.
pub async fn run(
    link: Link,
    node_id: NodeId,
    data_dir: PathBuf,
    measured: Option<BenchSummary>,
    shutdown: CancellationToken,
) {
    let bench = match measured {
        Some(b) => b,
        None => {
            let measured = tokio::select! {
                _ = shutdown.cancelled() => return,
                m = measure(data_dir) => m,
            };
            match measured {
                Some(b) => b,
                None => return,
            }
        }
    };
    publish(&link, node_id, &bench, &shutdown).await;
}

/// Publishes `bench` with backoff (1 s doubling to 30 s) until it is accepted or shutdown.
pub async fn publish(link: &Link, node_id: NodeId, bench: &BenchSummary, shutdown: &CancellationToken) {
    let mut backoff = Duration::from_secs(1);
    let mut failures = 0u32;
    loop {
        match link.publish_bench(node_id, bench).await {
            Ok(()) => {
                tracing::info!("published this node's benchmark summary");
                return;
            }
            Err(e) => {
                failures += 1;
                // The first failures are expected while the cluster settles (no leader yet).
                if failures == 3 {
                    tracing::warn!("could not publish this node's benchmark summary yet, still trying: {e}");
                } else {
                    tracing::debug!("could not publish the benchmark summary (retry in {backoff:?}): {e}");
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
