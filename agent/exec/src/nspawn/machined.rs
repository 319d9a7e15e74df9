//! The systemd path for nspawn attempts, on hosts whose PID 1 is systemd (the appliance).
//!
//! nspawn registers the container with systemd-machined, which puts it in its own scope unit
//! `machine-<name>.scope` under `cortex.slice`; the limits are that unit's properties
//! (`MemoryMax=`, `CPUQuota=`, `TasksMax=`), so systemd enforces and accounts them and
//! `systemctl` / `machinectl` show the attempt. The agent talks to both over D-Bus (zbus):
//! machined's `KillMachine` kills the whole container on cancel or timeout. Whether the
//! kernel's OOM killer ended it is read from the scope's cgroup (`memory.events`, `oom_kill`),
//! watched while it runs: systemd before 253 (Debian bookworm's 252) does not put OOM kills in
//! a scope's `Result`, and the scope and its cgroup are gone moments after the container ends.

use std::time::Duration;

use zbus::Connection;
use zbus::OwnedObjectPath;

use crate::{ExecError, Limits};

/// The slice every attempt's scope goes under (created by systemd on first use).
pub(crate) const SLICE: &str = "cortex.slice";

/// CFS period systemd uses for `CPUQuota=`: 100 ms; the quota is given in percent of a CPU.
fn cpu_quota_percent(millis: u32) -> u32 {
    // systemd takes whole percents; below 1 % it would refuse the value.
    (millis / 10).max(1)
}

#[zbus::proxy(
    interface = "org.freedesktop.machine1.Manager",
    default_service = "org.freedesktop.machine1",
    default_path = "/org/freedesktop/machine1"
)]
trait Machined {
    fn get_machine(&self, name: &str) -> zbus::Result<OwnedObjectPath>;
    fn kill_machine(&self, name: &str, who: &str, signal: i32) -> zbus::Result<()>;
}

#[zbus::proxy(
    interface = "org.freedesktop.machine1.Machine",
    default_service = "org.freedesktop.machine1"
)]
trait Machine {
    #[zbus(property)]
    fn unit(&self) -> zbus::Result<String>;
}

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1"
)]
trait Systemd {
    fn get_unit(&self, name: &str) -> zbus::Result<OwnedObjectPath>;
    fn reset_failed_unit(&self, name: &str) -> zbus::Result<()>;
}

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Scope",
    default_service = "org.freedesktop.systemd1"
)]
trait Scope {
    #[zbus(property)]
    fn result(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn control_group(&self) -> zbus::Result<String>;
}

/// The `oom_kill` count of a cgroup v2 `memory.events` text.
fn oom_kills(events: &str) -> u64 {
    events
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// A connection to the system bus on which machined can be reached (running, or started by
/// D-Bus activation). `None` with the reason otherwise: the caller then uses its own cgroups.
pub(crate) async fn connect() -> Result<Connection, String> {
    let conn = Connection::system()
        .await
        .map_err(|e| format!("no system bus: {e}"))?;
    let bus = zbus::fdo::DBusProxy::new(&conn)
        .await
        .map_err(|e| format!("system bus: {e}"))?;
    let name = "org.freedesktop.machine1";
    let running = bus
        .name_has_owner(name.try_into().map_err(|e| format!("{e}"))?)
        .await
        .unwrap_or(false);
    let activatable = running
        || bus
            .list_activatable_names()
            .await
            .map(|names| names.iter().any(|n| n.as_str() == name))
            .unwrap_or(false);
    if !activatable {
        return Err(
            "systemd-machined is not available on the system bus (apt install systemd-container)".into(),
        );
    }
    Ok(conn)
}

/// The systemd-nspawn flags of this path: register with machined in a scope of our slice, and
/// the limits as the scope's properties.
pub(crate) fn registration_args(limits: &Limits) -> Vec<String> {
    let mut args = vec!["--register=yes".to_string(), format!("--slice={SLICE}")];
    if let Some(bytes) = limits.memory_bytes {
        args.push(format!("--property=MemoryMax={bytes}"));
        // Memory + swap may not exceed the limit, as on the other paths.
        args.push("--property=MemorySwapMax=0".into());
    }
    if let Some(millis) = limits.cpu_millis {
        args.push(format!("--property=CPUQuota={}%", cpu_quota_percent(millis)));
    }
    if let Some(pids) = limits.pids {
        args.push(format!("--property=TasksMax={pids}"));
    }
    args
}

/// One registered container, by machine name.
pub(crate) struct Machine {
    conn: Connection,
    name: String,
    /// The scope unit, learnt from machined while the container runs.
    unit: Option<String>,
    /// The scope's `memory.events`, opened once the scope is known (kept open: it is read
    /// again after the container ended, when the path may already be gone).
    events: Option<std::fs::File>,
    /// The most OOM kills seen in the scope.
    oom_seen: u64,
}

impl Machine {
    pub(crate) fn new(conn: Connection, name: &str) -> Machine {
        Machine {
            conn,
            name: name.to_string(),
            unit: None,
            events: None,
            oom_seen: 0,
        }
    }

    /// Reads the scope's OOM kill count (while the container runs, and once after it ended).
    pub(crate) fn watch_oom(&mut self) {
        use std::io::{Read, Seek};
        let Some(f) = self.events.as_mut() else { return };
        let mut text = String::new();
        if f.rewind().is_ok() && f.read_to_string(&mut text).is_ok() {
            self.oom_seen = self.oom_seen.max(oom_kills(&text));
        }
    }

    /// Opens the scope's `memory.events` (cgroup v2; `None` elsewhere).
    async fn open_events(&mut self, scope: &OwnedObjectPath) {
        let Ok(s) = ScopeProxy::builder(&self.conn).path(scope.clone()).build().await else {
            return;
        };
        let Ok(cg) = s.control_group().await else { return };
        let path = std::path::Path::new("/sys/fs/cgroup")
            .join(cg.trim_start_matches('/'))
            .join("memory.events");
        self.events = std::fs::File::open(path).ok();
        self.watch_oom();
    }

    /// Asks machined for the container's scope unit; `false` until nspawn has registered it.
    pub(crate) async fn learn_unit(&mut self) -> bool {
        if self.unit.is_some() {
            return true;
        }
        let Ok(manager) = MachinedProxy::new(&self.conn).await else {
            return false;
        };
        let Ok(path) = manager.get_machine(&self.name).await else {
            return false;
        };
        let unit = match MachineProxy::builder(&self.conn).path(path).build().await {
            Ok(m) => m.unit().await.ok(),
            Err(_) => None,
        };
        if let Some(u) = &unit {
            if let Ok(systemd) = SystemdProxy::new(&self.conn).await {
                if let Ok(scope) = systemd.get_unit(u).await {
                    self.open_events(&scope).await;
                }
            }
        }
        self.unit = unit;
        self.unit.is_some()
    }

    /// SIGKILL to every process of the container's scope at once (a stop would give them
    /// the scope's stop timeout; the contract is one second).
    pub(crate) async fn kill_all(&self) -> Result<(), ExecError> {
        let manager = MachinedProxy::new(&self.conn)
            .await
            .map_err(|e| ExecError::Unavailable(format!("machined: {e}")))?;
        match manager.kill_machine(&self.name, "all", libc::SIGKILL).await {
            Ok(()) => Ok(()),
            // Not (or no longer) registered: nothing of it is left in a scope.
            Err(zbus::Error::MethodError(name, _, _)) if name.as_str().ends_with("NoSuchMachine") => Ok(()),
            Err(e) => Err(ExecError::Unavailable(format!(
                "machined could not kill {}: {e}",
                self.name
            ))),
        }
    }

    /// After the container ended: whether the OOM killer ended a process of its scope (seen in
    /// `memory.events` while it ran or read now), or systemd says so (≥ 253). A scope that
    /// failed stays loaded until reset; this resets it, so nothing is left behind.
    pub(crate) async fn oom_killed(&mut self) -> bool {
        self.watch_oom();
        let seen = self.oom_seen > 0;
        let Some(unit) = &self.unit else { return seen };
        let Ok(systemd) = SystemdProxy::new(&self.conn).await else {
            return seen;
        };
        // A scope that ended well is garbage-collected at once: no unit, no result to read.
        let Ok(path) = systemd.get_unit(unit).await else {
            return seen;
        };
        let result = match ScopeProxy::builder(&self.conn).path(path).build().await {
            Ok(s) => s.result().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if result != "success" {
            let _ = systemd.reset_failed_unit(unit).await;
        }
        seen || result == "oom-kill"
    }
}

/// How often the scope unit's name is asked for while the container starts.
pub(crate) const LEARN_EVERY: Duration = Duration::from_millis(50);

/// How often the scope's OOM kill count is read while the container runs: the scope and its
/// cgroup disappear soon after the container ends, so the count is taken as it happens.
pub(crate) const OOM_EVERY: Duration = Duration::from_millis(10);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oom_kills_are_read_from_memory_events() {
        let events = "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(oom_kills(events), 1);
        assert_eq!(oom_kills("low 0\nmax 3\n"), 0);
        assert_eq!(oom_kills(""), 0);
    }

    #[test]
    fn limits_become_scope_properties() {
        let args = registration_args(&Limits {
            cpu_millis: Some(250),
            memory_bytes: Some(64 << 20),
            pids: Some(100),
        });
        assert_eq!(
            args,
            [
                "--register=yes",
                "--slice=cortex.slice",
                "--property=MemoryMax=67108864",
                "--property=MemorySwapMax=0",
                "--property=CPUQuota=25%",
                "--property=TasksMax=100",
            ]
        );
        assert_eq!(cpu_quota_percent(5), 1, "never below 1 %");
        assert_eq!(registration_args(&Limits::default()).len(), 2);
    }
}
