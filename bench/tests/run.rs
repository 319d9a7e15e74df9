//! The whole benchmark on the machine running the tests, as the agent runs it at boot.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use cortex_bench::{Figure, Options, Report, FORMAT};

fn quick_in(dir: &std::path::Path) -> (Report, Duration) {
    let start = Instant::now();
    let report = cortex_bench::run(&Options {
        quick: true,
        data_dir: dir.to_path_buf(),
        threads: None,
    });
    (report, start.elapsed())
}

fn data_dir() -> tempfile::TempDir {
    // Under the build directory, which is on a real filesystem on build machines (/tmp may be
    // tmpfs, which the disk test would rightly refuse to measure).
    let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
    std::fs::create_dir_all(&base).unwrap();
    tempfile::tempdir_in(base).unwrap()
}

fn check_figure(name: &str, f: &Figure) {
    assert!(f.median > 0.0, "{name}: {f:?}");
    assert!(
        f.min > 0.0 && f.min <= f.median && f.median <= f.max,
        "{name}: {f:?}"
    );
    assert!(f.cv >= 0.0 && f.cv.is_finite(), "{name}: {f:?}");
    assert!(f.repeats >= 1, "{name}: {f:?}");
    assert!(!f.unit.is_empty(), "{name}: {f:?}");
    assert!(f.conditions.threads >= 1, "{name}: {f:?}");
    assert!(!f.conditions.size.is_empty(), "{name}: {f:?}");
}

#[test]
fn quick_run_measures_every_figure_within_its_budget_and_round_trips_as_json() {
    let dir = data_dir();
    let (report, took) = quick_in(dir.path());
    let json = serde_json::to_string_pretty(&report).unwrap();

    // --quick's budget is 5 s; 3× is a generous bound so this is not a timing test.
    assert!(took < Duration::from_secs(15), "quick run took {took:?}:\n{json}");
    assert_eq!(report.format, FORMAT);
    assert!(report.quick);
    assert!(report.host.threads >= 1);

    // Every compute and memory figure is measured, positive and carries its spread.
    for row in report.rows() {
        if row.name.starts_with("disk")
            && report
                .disk
                .note
                .as_deref()
                .is_some_and(|n| n.starts_with("tmpfs/none"))
        {
            assert!(row.figure.is_none());
            continue;
        }
        let f = row
            .figure
            .unwrap_or_else(|| panic!("{} missing ({:?}):\n{json}", row.name, row.missing));
        check_figure(row.name, f);
    }
    // (No "all cores beat one core" check: on a shared CI machine a neighbour can take a CPU.)
    assert_eq!(
        report.cpu.f64_all_cores.as_ref().unwrap().conditions.threads,
        report.host.threads
    );
    assert!(!report.cpu.isa.is_empty());
    assert_eq!(report.gemm.n, 512);
    assert!(report
        .memory
        .llc_bytes
        .is_none_or(|llc| report.memory.array_bytes >= 4 * llc));
    assert!(report.nics.interfaces.iter().any(|n| n.name == "lo"));
    assert!(report
        .nics
        .notes
        .iter()
        .any(|n| n.contains("cortex bench net --peer")));

    // The disk test left nothing behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

    // JSON round-trips to the same report, and carries its format tag.
    let back: Report = serde_json::from_str(&json).unwrap();
    assert_eq!(back, report);
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["format"], "cortex-bench/1");
    let triad = &value["memory"]["triad"];
    for key in ["median", "min", "max", "cv", "repeats", "unit", "conditions"] {
        assert!(!triad[key].is_null(), "triad.{key} missing:\n{json}");
    }
}

#[test]
fn without_the_nvidia_library_the_gpu_section_says_so_and_nothing_fails() {
    let present = [
        "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1",
        "/usr/lib64/libnvidia-ml.so.1",
        "/usr/lib/libnvidia-ml.so.1",
    ]
    .iter()
    .any(|p| std::path::Path::new(p).exists());
    let gpu = cortex_bench::gpu::inventory();
    if present {
        eprintln!("NVML is installed here; the no-GPU path is not exercised");
        return;
    }
    let why = gpu.unavailable.as_deref().unwrap_or_default();
    assert!(why.starts_with("no NVIDIA GPU"), "{gpu:?}");
    assert!(gpu.devices.is_empty());
    let json = serde_json::to_value(&gpu).unwrap();
    assert!(
        json.get("compute").is_none(),
        "no compute figure may appear unmeasured: {json}"
    );
}
