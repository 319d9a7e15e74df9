//! Per-attempt cgroups: cgroup v1 (hybrid, as on the development machines) and pure v2.
//!
//! Every attempt gets one cgroup per hierarchy, `<own>/cortex/<name>`, where `<own>` is the
//! agent's own cgroup in that hierarchy (so a memory-limited agent's attempts are nested in its
//! memcg, and a systemd unit with `Delegate=yes` owns its attempts):
//!
//! - **hybrid** (v1 controllers + a controller-less cgroup2 at `/sys/fs/cgroup/unified`): one
//!   group in each of `cpu`, `memory`, `pids`, `freezer`, plus one on the cgroup2 mount for
//!   `cgroup.kill` (a race-free kill of the whole tree) and `cpu.stat`;
//! - **unified** (pure v2, systemd hosts): one group with `cpu`, `memory` and `pids` enabled
//!   through `cgroup.subtree_control` of its parents.
//!
//! A process joins its groups itself, between fork and exec, by writing `0` to each
//! `cgroup.procs` (see [`AttemptCgroup::open_procs`]); its children inherit them, so nothing it
//! starts escapes the limits or the kill.

mod discover;
mod kill;
mod v2;

use std::collections::{BTreeSet, HashSet};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{ExecError, Limits};

/// The group every attempt cgroup is created under (in each hierarchy).
pub const PARENT: &str = "cortex";

/// On pure v2 a cgroup that hands controllers to its children may not hold processes itself,
/// so the agent moves itself (and anything else in its own cgroup) into this leaf first.
pub const AGENT_LEAF: &str = "agent";

/// CFS period for CPU quotas: 100 ms.
pub const CPU_PERIOD_US: u64 = 100_000;

/// How the host's cgroups are laid out (detected at run time, never configured).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// cgroup v1 controllers, possibly with a controller-less cgroup2 beside them.
    Hybrid,
    /// Pure cgroup v2: `/sys/fs/cgroup/cgroup.controllers` exists.
    Unified,
}

/// This host's cgroup layout.
pub fn layout() -> Layout {
    discover::detect_layout()
}

/// What a group directory is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Cpu,
    Memory,
    Pids,
    Freezer,
    /// A cgroup2 group: the only one on pure v2, the kill/freeze group on hybrid hosts.
    V2,
    /// systemd's named v1 hierarchy on hybrid hosts (no controller): systemd-nspawn mirrors
    /// its cgroup2 path there, so the attempt owns that group too.
    Named,
}

impl Role {
    /// Groups an attempt can do without on a hybrid host (the kill falls back to the freezer).
    fn optional(self) -> bool {
        matches!(self, Role::V2 | Role::Named)
    }
}

/// The cgroups of one attempt. Dropping it without [`AttemptCgroup::remove`] kills whatever is
/// left in it and removes the groups from a background thread.
#[derive(Debug)]
pub struct AttemptCgroup {
    name: String,
    layout: Layout,
    groups: Vec<(Role, PathBuf)>,
    /// Kill and remove on drop (false for read-only handles).
    owned: bool,
}

impl AttemptCgroup {
    /// Creates the cgroups of attempt `name` under [`PARENT`] with `limits` applied. A group
    /// left over with the same name (a crashed earlier run) is killed and replaced.
    pub async fn create(name: &str, limits: &Limits) -> Result<Self, ExecError> {
        Self::create_in(PARENT, name, limits).await
    }

    /// [`AttemptCgroup::create`] under another parent group (tests use their own).
    pub async fn create_in(parent: &str, name: &str, limits: &Limits) -> Result<Self, ExecError> {
        validate_name("name", name)?;
        validate_name("cgroup parent", parent)?;
        validate_limits(limits)?;
        let h = hierarchies()?;
        let planned = plan(&h, parent, name)?;
        if h.layout == Layout::Unified {
            v2::prepare_parents(&planned)?;
        }
        if let Some(stale) = Self::open(parent, name, true)? {
            tracing::warn!(
                attempt = name,
                "killing and removing a leftover cgroup of the same name"
            );
            stale.kill_all(Duration::from_secs(5)).await?;
            stale.remove().await?;
        }
        let mut cg = AttemptCgroup {
            name: name.to_string(),
            layout: h.layout,
            groups: Vec::new(),
            owned: true,
        };
        for (role, dir) in planned {
            if let Some(up) = dir.parent() {
                std::fs::create_dir_all(up).map_err(|e| mkdir_error(up, e))?;
            }
            match std::fs::create_dir(&dir) {
                Ok(()) => cg.groups.push((role, dir)),
                // On a hybrid host the cgroup2 group is only needed for cgroup.kill (the
                // freezer does the same job, slower) and the named one for tidiness.
                Err(e) if role.optional() && h.layout == Layout::Hybrid => {
                    tracing::warn!(dir = %dir.display(), error = %e, "attempt runs without this optional cgroup");
                }
                Err(e) => return Err(mkdir_error(&dir, e)),
            }
        }
        cg.apply_limits(limits)?;
        Ok(cg)
    }

    /// The existing cgroups of attempt `name` under `parent`, if any; `owned` handles kill and
    /// remove them on drop.
    fn open(parent: &str, name: &str, owned: bool) -> Result<Option<Self>, ExecError> {
        let h = hierarchies()?;
        let groups: Vec<_> = plan(&h, parent, name)?
            .into_iter()
            .filter(|(_, dir)| dir.is_dir())
            .collect();
        if groups.is_empty() {
            return Ok(None);
        }
        Ok(Some(AttemptCgroup {
            name: name.to_string(),
            layout: h.layout,
            groups,
            owned,
        }))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The group directories, one per hierarchy.
    pub fn dirs(&self) -> Vec<&Path> {
        self.groups.iter().map(|(_, d)| d.as_path()).collect()
    }

    /// Opens every group's `cgroup.procs` for writing. A child writes `0` to each between fork
    /// and exec to join the attempt (opened here because `open` is not async-signal-safe).
    pub fn open_procs(&self) -> Result<Vec<File>, ExecError> {
        self.groups
            .iter()
            .map(|(_, dir)| {
                let path = dir.join("cgroup.procs");
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|source| ExecError::Io {
                        context: format!("opening {}", path.display()),
                        source,
                    })
            })
            .collect()
    }

    fn apply_limits(&self, limits: &Limits) -> Result<(), ExecError> {
        for (role, dir) in &self.groups {
            match role {
                Role::Cpu => {
                    if let Some(millis) = limits.cpu_millis {
                        write(&dir.join("cpu.cfs_period_us"), &CPU_PERIOD_US.to_string())?;
                        write(&dir.join("cpu.cfs_quota_us"), &cpu_quota_us(millis).to_string())?;
                    }
                }
                Role::Memory => {
                    if let Some(bytes) = limits.memory_bytes {
                        write(&dir.join("memory.limit_in_bytes"), &bytes.to_string())?;
                        // Memory + swap: only with swap accounting (often off).
                        write_if_present(&dir.join("memory.memsw.limit_in_bytes"), &bytes.to_string())?;
                    }
                }
                Role::Pids => {
                    if let Some(pids) = limits.pids {
                        write(&dir.join("pids.max"), &pids.to_string())?;
                    }
                }
                Role::Freezer | Role::Named => {}
                Role::V2 if self.layout == Layout::Unified => {
                    if let Some(millis) = limits.cpu_millis {
                        write(
                            &dir.join("cpu.max"),
                            &format!("{} {CPU_PERIOD_US}", cpu_quota_us(millis)),
                        )?;
                    }
                    if let Some(bytes) = limits.memory_bytes {
                        write(&dir.join("memory.max"), &bytes.to_string())?;
                        write_if_present(&dir.join("memory.swap.max"), "0")?;
                    }
                    if let Some(pids) = limits.pids {
                        write(&dir.join("pids.max"), &pids.to_string())?;
                    }
                }
                Role::V2 => {}
            }
        }
        Ok(())
    }

    /// Every process in the attempt's groups (and any sub-groups), sorted.
    pub fn pids(&self) -> Vec<i32> {
        let mut pids = BTreeSet::new();
        for (_, dir) in &self.groups {
            kill::collect_pids(dir, &mut pids);
        }
        pids.into_iter().collect()
    }

    /// No process is left in any of the groups.
    pub fn is_empty(&self) -> bool {
        kill::is_empty(&self.groups)
    }

    /// How many processes the kernel's OOM killer has killed in the attempt; `None` when the
    /// kernel does not count them (v1 before 4.13).
    pub fn oom_kills(&self) -> Option<u64> {
        for (role, dir) in &self.groups {
            match role {
                Role::Memory => return read_key(&dir.join("memory.oom_control"), "oom_kill"),
                Role::V2 if self.layout == Layout::Unified => {
                    return read_key(&dir.join("memory.events"), "oom_kill");
                }
                _ => {}
            }
        }
        None
    }

    /// The OOM killer struck in the attempt (falling back, where the kernel does not count
    /// kills, to "the limit was hit and the group is/was under OOM").
    pub fn oom_killed(&self) -> bool {
        if let Some(kills) = self.oom_kills() {
            return kills > 0;
        }
        self.groups.iter().any(|(role, dir)| {
            *role == Role::Memory
                && (read_key(&dir.join("memory.oom_control"), "under_oom").unwrap_or(0) > 0
                    || read_number(&dir.join("memory.failcnt")).unwrap_or(0) > 0)
        })
    }

    /// CPU time used by the attempt so far (cgroup2 `cpu.stat`, or v1 `cpuacct.usage` where
    /// cpuacct is co-mounted with cpu).
    pub fn cpu_usage(&self) -> Option<Duration> {
        for (role, dir) in &self.groups {
            if *role == Role::V2 {
                if let Some(us) = read_key(&dir.join("cpu.stat"), "usage_usec") {
                    return Some(Duration::from_micros(us));
                }
            }
        }
        self.groups.iter().find_map(|(role, dir)| {
            (*role == Role::Cpu)
                .then(|| read_number(&dir.join("cpuacct.usage")))
                .flatten()
                .map(Duration::from_nanos)
        })
    }

    /// One round of SIGKILL to everything in the attempt: `cgroup.kill` where the kernel has
    /// it (atomic against forks), else freeze, SIGKILL every pid, thaw.
    pub fn kill(&self) -> Result<(), ExecError> {
        kill::kill_round(&self.groups)
    }

    /// Kills everything in the attempt and waits until the groups are empty, repeating the
    /// kill; fails if processes are still there after `within`.
    pub async fn kill_all(&self, within: Duration) -> Result<(), ExecError> {
        let deadline = tokio::time::Instant::now() + within;
        let mut round = 0u32;
        loop {
            if self.is_empty() {
                return Ok(());
            }
            if round.is_multiple_of(10) {
                self.kill()?;
            }
            round += 1;
            if tokio::time::Instant::now() >= deadline {
                return Err(ExecError::Io {
                    context: format!(
                        "killing attempt {}: processes {:?} still alive after {within:?}",
                        self.name,
                        self.pids()
                    ),
                    source: io::ErrorKind::TimedOut.into(),
                });
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Removes the (empty) groups, retrying briefly while the kernel finishes tearing down
    /// exited processes.
    pub async fn remove(mut self) -> Result<(), ExecError> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        loop {
            match kill::remove_groups(&self.groups) {
                Ok(()) => {
                    self.owned = false;
                    return Ok(());
                }
                Err((dir, e)) => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(ExecError::Io {
                            context: format!("removing cgroup {}", dir.display()),
                            source: e,
                        });
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for AttemptCgroup {
    fn drop(&mut self) {
        if !self.owned || self.groups.is_empty() {
            return;
        }
        // The run future was dropped or failed half-way: make sure nothing survives it.
        let groups = std::mem::take(&mut self.groups);
        let name = self.name.clone();
        let _ = std::thread::Builder::new()
            .name("cgroup-reaper".into())
            .spawn(move || {
                let deadline = std::time::Instant::now() + Duration::from_secs(10);
                loop {
                    if kill::is_empty(&groups) && kill::remove_groups(&groups).is_ok() {
                        return;
                    }
                    if let Err(e) = kill::kill_round(&groups) {
                        tracing::debug!(attempt = %name, error = %e, "kill on drop");
                    }
                    if std::time::Instant::now() >= deadline {
                        tracing::error!(attempt = %name, "could not empty and remove the attempt's cgroups");
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            });
    }
}

/// Kills and removes every attempt cgroup under [`PARENT`] whose name is not in `keep`: call it
/// at agent start-up, before starting attempts, so that attempts of a previous (crashed) agent
/// that this node is no longer assigned do not keep running. Returns the names removed.
///
/// Every group under [`PARENT`] is taken for an attempt: other components keep theirs
/// elsewhere (the Podman executor uses `cortex-podman`).
///
/// On v1 the memory group is found under the agent's *current* memcg: if the agent now runs
/// in another memcg, a stale memory group is not found (its processes are still killed through
/// the other hierarchies).
pub async fn kill_stale(keep: &HashSet<String>) -> Result<Vec<String>, ExecError> {
    kill_stale_in(PARENT, keep).await
}

/// [`kill_stale`] under another parent group.
pub async fn kill_stale_in(parent: &str, keep: &HashSet<String>) -> Result<Vec<String>, ExecError> {
    validate_name("cgroup parent", parent)?;
    let h = hierarchies()?;
    let mut names = BTreeSet::new();
    for dir in parent_dirs(&h, parent)? {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                if let Some(n) = entry.file_name().to_str() {
                    names.insert(n.to_string());
                }
            }
        }
    }
    let mut removed = Vec::new();
    for name in names {
        if keep.contains(&name) || validate_name("name", &name).is_err() {
            continue;
        }
        if let Some(cg) = AttemptCgroup::open(parent, &name, true)? {
            tracing::warn!(attempt = %name, pids = ?cg.pids(), "killing a stale attempt");
            cg.kill_all(Duration::from_secs(5)).await?;
            cg.remove().await?;
            removed.push(name);
        }
    }
    Ok(removed)
}

/// The processes of attempt `name` (under [`PARENT`]) right now; empty if it has no cgroups.
pub fn attempt_pids(name: &str) -> Result<Vec<i32>, ExecError> {
    validate_name("name", name)?;
    Ok(AttemptCgroup::open(PARENT, name, false)?
        .map(|cg| cg.pids())
        .unwrap_or_default())
}

/// Attempt and parent names name directories: `[a-z0-9-]`, 1–64 characters, no leading `-`.
pub(crate) fn validate_name(field: &'static str, name: &str) -> Result<(), ExecError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ExecError::InvalidSpec {
            field,
            message: format!("{name:?} must be 1-64 characters of [a-z0-9-], not starting with '-'"),
        })
    }
}

pub(crate) fn validate_limits(limits: &Limits) -> Result<(), ExecError> {
    let bad = |field, message: &str| {
        Err(ExecError::InvalidSpec {
            field,
            message: message.to_string(),
        })
    };
    if limits.cpu_millis == Some(0) {
        return bad("limits.cpu_millis", "must be at least 1 (thousandths of a core)");
    }
    if matches!(limits.memory_bytes, Some(b) if b < 1 << 20) {
        return bad("limits.memory_bytes", "must be at least 1 MiB");
    }
    if limits.pids == Some(0) {
        return bad("limits.pids", "must be at least 1");
    }
    Ok(())
}

/// The kernel's minimum quota is 1 ms per period.
fn cpu_quota_us(millis: u32) -> u64 {
    (u64::from(millis) * CPU_PERIOD_US / 1000).max(1000)
}

/// The hierarchies, re-read at most once a second: parsing the mount table for every attempt
/// was a measurable share of a no-op task's cost, and mounts and this process's own cgroup
/// change rarely (the one move this module makes keeps the same base, see [`v2_base`]).
fn hierarchies() -> Result<discover::Hierarchies, ExecError> {
    static CACHE: std::sync::Mutex<Option<(std::time::Instant, discover::Hierarchies)>> =
        std::sync::Mutex::new(None);
    if let Ok(cache) = CACHE.lock() {
        if let Some((at, h)) = cache.as_ref() {
            if at.elapsed() < std::time::Duration::from_secs(1) {
                return Ok(h.clone());
            }
        }
    }
    let h = discover::discover().map_err(|source| ExecError::Io {
        context: "reading /proc/self/mountinfo and /proc/self/cgroup".into(),
        source,
    })?;
    if let Ok(mut cache) = CACHE.lock() {
        *cache = Some((std::time::Instant::now(), h.clone()));
    }
    Ok(h)
}

/// This process's own directory on pure v2, seen past the [`AGENT_LEAF`] it may have moved to.
fn v2_base(h: &discover::Hierarchies) -> Result<PathBuf, ExecError> {
    let own =
        h.v2.clone()
            .ok_or_else(|| ExecError::Unavailable("no cgroup2 filesystem is mounted".into()))?;
    Ok(match own.file_name() {
        Some(leaf) if leaf == AGENT_LEAF => own.parent().map(Path::to_path_buf).unwrap_or(own),
        _ => own,
    })
}

/// The `<own>/<parent>` directory in every hierarchy an attempt uses.
fn parent_dirs(h: &discover::Hierarchies, parent: &str) -> Result<Vec<PathBuf>, ExecError> {
    Ok(plan(h, parent, "x")?
        .into_iter()
        .filter_map(|(_, d)| d.parent().map(Path::to_path_buf))
        .collect())
}

/// Where attempt `name`'s groups go; a missing v1 controller is `Unavailable`, naming it.
fn plan(h: &discover::Hierarchies, parent: &str, name: &str) -> Result<Vec<(Role, PathBuf)>, ExecError> {
    match h.layout {
        Layout::Hybrid => {
            let mut groups = Vec::new();
            for (ctrl, role) in [
                ("cpu", Role::Cpu),
                ("memory", Role::Memory),
                ("pids", Role::Pids),
                ("freezer", Role::Freezer),
            ] {
                let own = h
                    .v1
                    .iter()
                    .find(|(c, _)| *c == ctrl)
                    .map(|(_, d)| d)
                    .ok_or_else(|| {
                        ExecError::Unavailable(format!(
                            "the cgroup v1 controller `{ctrl}` is not mounted (attempts need cpu, memory, pids and freezer; mount it at /sys/fs/cgroup/{ctrl})"
                        ))
                    })?;
                groups.push((role, own.join(parent).join(name)));
            }
            if let Some(v2) = &h.v2 {
                groups.push((Role::V2, v2.join(parent).join(name)));
            }
            if let Some((_, own)) = h.v1.iter().find(|(c, _)| *c == "name=systemd") {
                groups.push((Role::Named, own.join(parent).join(name)));
            }
            Ok(groups)
        }
        Layout::Unified => Ok(vec![(Role::V2, v2_base(h)?.join(parent).join(name))]),
    }
}

fn mkdir_error(dir: &Path, e: io::Error) -> ExecError {
    if e.kind() == io::ErrorKind::PermissionDenied || e.kind() == io::ErrorKind::ReadOnlyFilesystem {
        ExecError::Unavailable(format!(
            "cannot create cgroup {}: {e} (the agent needs root or a delegated cgroup)",
            dir.display()
        ))
    } else {
        ExecError::Io {
            context: format!("creating cgroup {}", dir.display()),
            source: e,
        }
    }
}

pub(crate) fn write(path: &Path, value: &str) -> Result<(), ExecError> {
    std::fs::write(path, value).map_err(|source| ExecError::Io {
        context: format!("writing {value:?} to {}", path.display()),
        source,
    })
}

fn write_if_present(path: &Path, value: &str) -> Result<(), ExecError> {
    if path.exists() {
        write(path, value)
    } else {
        Ok(())
    }
}

/// `key N` from a flat-keyed file (`memory.events`, `memory.oom_control`, `cpu.stat`).
fn read_key(path: &Path, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

fn read_number(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests;
