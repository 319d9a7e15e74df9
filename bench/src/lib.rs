//! `cortex-bench`: the node's self-benchmark.
//!
//! What it measures, each figure as a median of timed repeats after a warm-up, with its spread
//! and the conditions it ran under ([`stats::Figure`]):
//!
//! | section | figures | how |
//! |---|---|---|
//! | [`cpu`] | f64 and f32 GFLOP/s, one core and all cores | SIMD FMA kernels chosen at run time, pinned threads |
//! | [`gemm`] | f64 GEMM GFLOP/s | the `gemm` crate, n = 1024 (quick: 512) |
//! | [`stream`] | STREAM copy, scale, add, triad GB/s | all threads pinned, arrays ≥ 4× the last-level cache |
//! | [`disk`] | sequential write/read MB/s, 4 KiB random read IOPS | `O_DIRECT` in the data directory |
//! | [`nic`] | link speed and driver per interface | sysfs (inventory, not a measurement) |
//! | [`net`] | node-to-node TCP throughput, both directions (on request, not in [`run`]) | one plain TCP stream each way, counted by the receiver |
//! | [`gpu`] | model, memory, clocks, power limit, PCIe, utilisation | NVML (inventory, not a measurement) |
//!
//! Invariants: a figure is measured or absent, never estimated; every kernel's result is
//! checked (checksums, validated arrays, verified reads) and a wrong result withholds the
//! figure; every phase is bounded in size and time (full run ≤ 20 s, `quick` ≤ 5 s on a
//! 2-core machine). The only `unsafe` code is in [`simd`].

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod cpu;
pub mod disk;
pub mod gemm;
pub mod gpu;
pub mod net;
pub mod nic;
pub mod report;
pub mod simd;
pub mod stats;
pub mod stream;
pub mod team;

use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

pub use report::{Report, FORMAT};
pub use stats::{Conditions, Figure};

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The short run a booting node does (≤ 5 s): fewer repeats, smaller GEMM and disk file.
    pub quick: bool,
    /// Where the disk test writes its temporary file (the node's data directory).
    pub data_dir: PathBuf,
    /// Threads for the "all cores" figures; default: every CPU this process may use.
    pub threads: Option<usize>,
}

/// What every measurement needs to know.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub quick: bool,
    pub data_dir: PathBuf,
    /// Threads for multi-threaded figures.
    pub threads: usize,
    /// CPUs to pin worker `i` to (`cpus[i % len]`).
    pub cpus: Vec<usize>,
}

impl Ctx {
    pub fn new(opts: &Options) -> Ctx {
        let cpus = team::allowed_cpus();
        let threads = opts
            .threads
            .unwrap_or_else(|| team::default_threads().min(cpus.len()))
            .max(1);
        Ctx {
            quick: opts.quick,
            data_dir: opts.data_dir.clone(),
            threads,
            cpus,
        }
    }

    #[cfg(test)]
    pub(crate) fn for_tests() -> Ctx {
        Ctx::new(&Options {
            quick: true,
            data_dir: std::env::temp_dir(),
            threads: None,
        })
    }
}

/// Runs the whole benchmark. Never fails: what cannot be measured is `null` with a note.
pub fn run(opts: &Options) -> Report {
    run_with_progress(opts, &mut |_| {})
}

/// [`run`], calling `progress` with a short description as each phase starts.
pub fn run_with_progress(opts: &Options, progress: &mut dyn FnMut(&str)) -> Report {
    let started = Instant::now();
    let started_at_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    let ctx = Ctx::new(opts);
    let host = report::Host {
        arch: std::env::consts::ARCH.to_owned(),
        cpu_model: cpu_model(Path::new("/proc/cpuinfo")),
        cpus_allowed: ctx.cpus.clone(),
        threads: ctx.threads,
        cpu_features: detected_features(),
    };
    let cpu = cpu::measure(&ctx, progress);
    let gemm = gemm::measure(&ctx, progress);
    let memory = stream::measure(&ctx, progress);
    let disk = disk::measure(&ctx, progress);
    progress("nics and gpus: inventory");
    let nics = nic::inventory(Path::new("/sys/class/net"));
    let gpu = gpu::inventory();
    Report {
        format: FORMAT.to_owned(),
        quick: opts.quick,
        started_at_ms,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        host,
        cpu,
        gemm,
        memory,
        disk,
        nics,
        gpu,
    }
}

/// The CPU model from /proc/cpuinfo (`model name`, or `Model`/`Hardware` on ARM).
fn cpu_model(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    ["model name", "Model", "Hardware"].iter().find_map(|key| {
        text.lines().find_map(|line| {
            let (k, v) = line.split_once(':')?;
            (k.trim() == *key && !v.trim().is_empty()).then(|| v.trim().to_owned())
        })
    })
}

/// SIMD features detected at run time.
fn detected_features() -> Vec<String> {
    #[allow(unused_mut)]
    let mut found: Vec<&str> = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        for (name, present) in [
            ("avx512f", has!("avx512f")),
            ("avx2", has!("avx2")),
            ("fma", has!("fma")),
            ("avx", has!("avx")),
            ("sse2", has!("sse2")),
        ] {
            if present {
                found.push(name);
            }
        }
    }
    #[cfg(target_arch = "aarch64")]
    found.push("neon");
    found.into_iter().map(str::to_owned).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_model_is_read_from_cpuinfo() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cpuinfo");
        std::fs::write(&p, "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t: fpu\n").unwrap();
        assert_eq!(cpu_model(&p).as_deref(), Some("AMD EPYC"));
        std::fs::write(&p, "processor\t: 0\n").unwrap();
        assert_eq!(cpu_model(&p), None);
    }
}
