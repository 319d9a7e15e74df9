//! Shared by the `exec_*` and `nspawn_*` integration tests: real processes, real cgroups.
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use cortex_exec::{ExecConfig, ExecError, ExecSpec, Executors, Exit, Kind, Limits, Network, Output, Stream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// These tests need root (cgroups, namespaces) and some host binaries. Without them they are
/// skipped loudly on a developer machine, and fail under `CI=true`.
pub fn can_run(binaries: &[&str]) -> bool {
    let mut missing = Vec::new();
    if !nix_is_root() {
        missing.push("root".to_string());
    }
    for b in binaries {
        if !Path::new(b).exists() {
            missing.push((*b).to_string());
        }
    }
    if missing.is_empty() {
        return true;
    }
    let msg = format!("cortex-exec test needs {}", missing.join(", "));
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{msg} (CI=true: not skipping)");
    }
    eprintln!("\n!!!!!!!! SKIPPED: {msg} !!!!!!!!\n");
    false
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// Executors with their own work root, removed with the returned guard.
pub fn executors() -> (Executors, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let ex = Executors::new(ExecConfig {
        work_root: dir.path().to_path_buf(),
        podman_socket: None,
        cgroup_parent: cortex_exec::cgroup::PARENT.into(),
        users: cortex_exec::UserPolicy::default(),
        scratch_root: cortex_exec::default_scratch_root(&unique_name("scratch")),
    })
    .expect("executors");
    (ex, dir)
}

/// A unique attempt name (tests of one binary run in parallel, and other binaries may too).
pub fn unique_name(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn spec(kind: Kind, prefix: &str, command: &[&str]) -> ExecSpec {
    ExecSpec {
        kind,
        name: unique_name(prefix),
        command: command.iter().map(|s| s.to_string()).collect(),
        image: None,
        env: BTreeMap::new(),
        workdir: None,
        user: None,
        limits: Limits::default(),
        network: Network::Private,
        devices: Vec::new(),
        timeout: None,
    }
}

pub fn sh(kind: Kind, prefix: &str, script: &str) -> ExecSpec {
    spec(kind, prefix, &["sh", "-c", script])
}

/// What a user of `run` sees: the result and every chunk of output.
pub struct Ran {
    pub result: Result<Exit, ExecError>,
    pub output: Vec<Output>,
    pub elapsed: Duration,
}

impl Ran {
    pub fn exit(&self) -> Exit {
        match &self.result {
            Ok(e) => *e,
            Err(e) => panic!("run failed: {e} (output: {:?})", self.text(Stream::Stderr)),
        }
    }

    pub fn text(&self, stream: Stream) -> String {
        let bytes: Vec<u8> = self
            .output
            .iter()
            .filter(|o| o.stream == stream)
            .flat_map(|o| o.data.iter().copied())
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    pub fn stdout(&self) -> String {
        self.text(Stream::Stdout)
    }

    pub fn stderr(&self) -> String {
        self.text(Stream::Stderr)
    }
}

pub async fn run(ex: &Executors, spec: ExecSpec) -> Ran {
    run_with(ex, spec, CancellationToken::new()).await
}

pub async fn run_with(ex: &Executors, spec: ExecSpec, cancel: CancellationToken) -> Ran {
    let (tx, mut rx) = mpsc::channel(64);
    let collector = tokio::spawn(async move {
        let mut all = Vec::new();
        while let Some(o) = rx.recv().await {
            all.push(o);
        }
        all
    });
    let start = std::time::Instant::now();
    let result = ex.run(spec, tx, cancel).await;
    let elapsed = start.elapsed();
    let output = collector.await.expect("collector");
    Ran {
        result,
        output,
        elapsed,
    }
}

/// The command line of a live process, `None` once it is gone.
pub fn cmdline(pid: i32) -> Option<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .ok()
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " ").trim().to_string())
}

/// Interface names in the network namespace that produced `/proc/net/dev` output.
pub fn interfaces(proc_net_dev: &str) -> Vec<String> {
    let mut names: Vec<String> = proc_net_dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(|n| n.trim().to_string())
        .collect();
    names.sort();
    names
}

/// Fails if a directory called `name` is left in any mounted cgroup hierarchy.
pub fn assert_no_cgroup_named(name: &str) {
    let left: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .filter(|l| l.contains(" - cgroup"))
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .flat_map(|mnt| walk_for(&mnt, name))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

fn walk_for(dir: &str, name: &str) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for e in entries.flatten() {
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            let p = e.path().display().to_string();
            if e.file_name() == name {
                found.push(p.clone());
            }
            found.extend(walk_for(&p, name));
        }
    }
    found
}
