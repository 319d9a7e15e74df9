//! Test harness: start `cortex up` processes on port 0 in temporary data dirs, talk to them
//! over HTTP and through the CLI, and kill them the way a crash would.

#![allow(dead_code)]

pub mod agent;
pub mod http;
pub mod netns;
pub mod node;
pub mod page;

pub use agent::Agent;
pub use node::{cortex, Node};

/// Polls `f` every 50 ms until it returns `Some`, or panics with `what` after `within`.
pub fn eventually<T>(within: std::time::Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// True when the run must not skip anything (CI sets CI=true).
pub fn strict() -> bool {
    std::env::var("CI")
        .map(|v| v == "true" || v == "1")
        .unwrap_or(false)
}

/// True if this process runs as root (workload tests need cgroups and namespaces).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// Whether a test can use `what`: if not, it fails under CI=true and skips loudly otherwise.
pub fn capable(ok: bool, what: &str) -> bool {
    if ok {
        return true;
    }
    if strict() {
        panic!("this test needs {what}, and CI=true forbids skipping");
    }
    eprintln!("\n*** SKIPPED: this test needs {what} ***\n");
    false
}

/// True if `tool` is an executable on PATH.
pub fn have(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

/// A directory under `sandbox` that `nobody` (the default task user) owns and can reach.
pub fn shared_with_nobody(sandbox: &std::path::Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let passwd = std::fs::read_to_string("/etc/passwd").expect("/etc/passwd");
    let uid_gid = passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&"nobody") && f.len() > 3).then(|| (f[2].parse().ok(), f[3].parse().ok()))
        })
        .expect("a nobody user");
    std::fs::set_permissions(sandbox, std::fs::Permissions::from_mode(0o711)).expect("chmod sandbox");
    let dir = sandbox.join("shared");
    std::fs::create_dir_all(&dir).expect("mkdir shared");
    std::os::unix::fs::chown(&dir, uid_gid.0, uid_gid.1).expect("chown shared");
    dir
}
