//! Start-up overhead of the executors against spawning the same thing directly (medians of 20).
//! Not a pass/fail test: `cargo test -p cortex-exec --test exec_timing -- --ignored --nocapture`.

mod exec_support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cortex_exec::Kind;
use exec_support::*;

const RUNS: usize = 20;

fn median(mut d: Vec<Duration>) -> Duration {
    d.sort();
    d[d.len() / 2]
}

async fn median_of<F, Fut>(mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut times = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let start = Instant::now();
        f().await;
        times.push(start.elapsed());
    }
    median(times)
}

#[tokio::test]
#[ignore = "measurement, run by hand"]
async fn startup_overhead() {
    if !can_run(&["/bin/sh", "/usr/bin/systemd-nspawn", "/bin/busybox"]) {
        return;
    }
    let (ex, dir) = executors();

    let direct = median_of(|| async {
        let s = Command::new("sh").args(["-c", "true"]).status().expect("sh");
        assert!(s.success());
    })
    .await;
    let exec = median_of(|| async {
        let ran = run(&ex, spec(Kind::Exec, "time-exec", &["true"])).await;
        assert_eq!(ran.exit().code, Some(0));
    })
    .await;
    let exec_host_net = median_of(|| async {
        let mut s = spec(Kind::Exec, "time-exec-host", &["true"]);
        s.network = cortex_exec::Network::Host;
        assert_eq!(run(&ex, s).await.exit().code, Some(0));
    })
    .await;

    let root = dir.path().join("busybox-root");
    cortex_exec::testing::build_busybox_rootfs(&root).expect("rootfs");
    let raw_nspawn = median_of(|| async {
        let s = Command::new("systemd-nspawn")
            .args([
                "--quiet",
                "--pipe",
                "--register=no",
                "--keep-unit",
                "--as-pid2",
                "--volatile=overlay",
                "--oom-score-adjust=1000",
                "--kill-signal=SIGTERM",
                "--machine=time-raw",
                "--private-network",
            ])
            .arg(format!("--directory={}", root.display()))
            .args(["--", "true"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("systemd-nspawn");
        assert!(s.success());
    })
    .await;
    let nspawn = median_of(|| async {
        let mut s = spec(Kind::Nspawn, "time-nspawn", &["true"]);
        s.image = Some(root.display().to_string());
        assert_eq!(run(&ex, s).await.exit().code, Some(0));
    })
    .await;

    eprintln!("medians of {RUNS}:");
    eprintln!("  direct `sh -c true`                 {direct:>10.1?}");
    eprintln!("  exec executor `true` (private net)  {exec:>10.1?}");
    eprintln!("  exec executor `true` (host net)     {exec_host_net:>10.1?}");
    eprintln!("  raw systemd-nspawn `true`           {raw_nspawn:>10.1?}");
    eprintln!("  nspawn executor `true`              {nspawn:>10.1?}");
}
