//! Emptying and removing an attempt's groups (synchronous: also used from `Drop`).

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::{write, Role};
use crate::ExecError;

/// Adds every pid in `dir` and its sub-groups (a container manager may create some) to `pids`.
pub(super) fn collect_pids(dir: &Path, pids: &mut BTreeSet<i32>) {
    if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        pids.extend(text.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
    }
    for sub in subgroups(dir) {
        collect_pids(&sub, pids);
    }
}

fn subgroups(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

pub(super) fn is_empty(groups: &[(Role, PathBuf)]) -> bool {
    groups.iter().all(|(role, dir)| {
        if *role == Role::V2 {
            // Recursive, and maintained by the kernel: the cheapest exact answer.
            if let Ok(events) = std::fs::read_to_string(dir.join("cgroup.events")) {
                return events.lines().any(|l| l == "populated 0");
            }
        }
        let mut pids = BTreeSet::new();
        collect_pids(dir, &mut pids);
        pids.is_empty()
    })
}

/// How a group is emptied, best first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Method {
    /// `cgroup.kill` (Linux 5.14+, cgroup2): kills the whole subtree atomically, no fork can
    /// slip past it.
    KillFile(PathBuf),
    /// Freeze so that the pid list cannot grow, SIGKILL every pid, thaw.
    Freeze(Freezer),
    /// SIGKILL every pid (racy against forks; repeated rounds catch up).
    Signal,
}

pub(super) fn method(groups: &[(Role, PathBuf)]) -> Method {
    if let Some((_, dir)) = groups
        .iter()
        .find(|(role, dir)| *role == Role::V2 && dir.join("cgroup.kill").exists())
    {
        return Method::KillFile(dir.join("cgroup.kill"));
    }
    groups
        .iter()
        .find_map(|(role, dir)| match role {
            Role::Freezer => Some(Method::Freeze(Freezer::V1(dir.clone()))),
            Role::V2 if dir.join("cgroup.freeze").exists() => Some(Method::Freeze(Freezer::V2(dir.clone()))),
            _ => None,
        })
        .unwrap_or(Method::Signal)
}

/// One round of SIGKILL to everything in the groups, the best way this host allows.
pub(super) fn kill_round(groups: &[(Role, PathBuf)]) -> Result<(), ExecError> {
    kill_with(groups, &method(groups))
}

pub(super) fn kill_with(groups: &[(Role, PathBuf)], method: &Method) -> Result<(), ExecError> {
    let freezer = match method {
        Method::KillFile(file) => return write(file, "1"),
        Method::Freeze(f) => Some(f),
        Method::Signal => None,
    };
    if let Some(f) = freezer {
        f.freeze();
    }
    let mut pids = BTreeSet::new();
    for (_, dir) in groups {
        collect_pids(dir, &mut pids);
    }
    for pid in pids {
        // ESRCH: already gone. Frozen tasks die when thawed.
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    if let Some(f) = freezer {
        f.thaw();
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Freezer {
    V1(PathBuf),
    V2(PathBuf),
}

impl Freezer {
    fn freeze(&self) {
        let (file, value) = match self {
            Freezer::V1(d) => (d.join("freezer.state"), "FROZEN"),
            Freezer::V2(d) => (d.join("cgroup.freeze"), "1"),
        };
        if let Err(e) = std::fs::write(&file, value) {
            tracing::debug!(file = %file.display(), error = %e, "freeze");
            return;
        }
        // Freezing is asynchronous; a task stuck in the kernel may keep it FREEZING. Give it
        // a moment, then kill anyway (the caller repeats rounds until the group is empty).
        let deadline = Instant::now() + Duration::from_millis(100);
        while Instant::now() < deadline && !self.frozen() {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn frozen(&self) -> bool {
        match self {
            Freezer::V1(d) => std::fs::read_to_string(d.join("freezer.state"))
                .map(|s| s.trim() == "FROZEN")
                .unwrap_or(true),
            Freezer::V2(d) => std::fs::read_to_string(d.join("cgroup.events"))
                .map(|s| s.lines().any(|l| l == "frozen 1"))
                .unwrap_or(true),
        }
    }

    fn thaw(&self) {
        let (file, value) = match self {
            Freezer::V1(d) => (d.join("freezer.state"), "THAWED"),
            Freezer::V2(d) => (d.join("cgroup.freeze"), "0"),
        };
        if let Err(e) = std::fs::write(&file, value) {
            tracing::warn!(file = %file.display(), error = %e, "thaw");
        }
    }
}

/// Removes every group (sub-groups first). Fails with the first directory that is still busy.
pub(super) fn remove_groups(groups: &[(Role, PathBuf)]) -> Result<(), (PathBuf, io::Error)> {
    let mut first_error = None;
    for (_, dir) in groups.iter().rev() {
        if let Err(e) = remove_tree(dir) {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

fn remove_tree(dir: &Path) -> Result<(), (PathBuf, io::Error)> {
    for sub in subgroups(dir) {
        remove_tree(&sub)?;
    }
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err((dir.to_path_buf(), e)),
    }
}
