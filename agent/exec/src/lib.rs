//! Runs one task attempt on this node and reports how it ended.
//!
//! One entry point, [`Executors::run`]: it starts the attempt with its limits, streams its
//! output, waits for it, kills the whole process tree on cancel or timeout, cleans up (cgroups,
//! scratch dir, container) and returns an [`Exit`]. The caller (the agent's work loop) decides
//! what the exit means for the task (retry, fail, succeed); this crate knows nothing of Raft.
//!
//! Invariants:
//! - every attempt runs in its own cgroup(s) named after [`ExecSpec::name`], and nothing of it
//!   (process, cgroup, scratch dir, container) survives `run` returning;
//! - the environment is exactly the spec's plus a minimal `PATH` (nothing leaks from the agent);
//! - errors say which field or which host capability is at fault.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub mod cgroup;
mod nspawn;
mod podman;
mod process;
pub mod testing;
mod user;

pub use podman::{import_image, list_images};
pub use user::UserPolicy;

/// Which executor runs the attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Exec,
    Nspawn,
    Podman,
}

/// Network the attempt sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Network {
    /// A private network namespace with only `lo` (the default for every kind).
    #[default]
    Private,
    /// The host's network (opt-in).
    Host,
}

/// Resource limits, enforced by the kernel (cgroups), not by polling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    /// CPU quota in thousandths of a core (500 = half a core).
    pub cpu_millis: Option<u32>,
    pub memory_bytes: Option<u64>,
    pub pids: Option<u32>,
}

/// Everything needed to run one attempt.
#[derive(Debug, Clone)]
pub struct ExecSpec {
    pub kind: Kind,
    /// Unique per attempt, `[a-z0-9-]` only (e.g. `t-0123abcd-a2`): names cgroups, scratch
    /// dirs and containers.
    pub name: String,
    /// argv; `command[0]` is looked up in the minimal PATH (or the container's).
    pub command: Vec<String>,
    /// nspawn: a rootfs directory or a tarball (`.tar`, `.tar.gz`, `.tar.zst`).
    /// podman: an image reference in the local store.
    pub image: Option<String>,
    pub env: BTreeMap<String, String>,
    /// Working directory inside the task's filesystem view. Default: the scratch dir (exec) or
    /// `/` (containers).
    pub workdir: Option<String>,
    /// The user to run as: exec, a user of this node (see [`UserPolicy`]); nspawn and podman, a
    /// user inside the container. `None` = the default.
    pub user: Option<String>,
    pub limits: Limits,
    pub network: Network,
    pub timeout: Option<Duration>,
    /// Device nodes the task gets inside a container (nspawn `--bind`, podman `devices`), e.g.
    /// its assigned `/dev/nvidiaN`. Each must exist on the host; an exec task sees the host's
    /// `/dev` anyway.
    pub devices: Vec<std::path::PathBuf>,
}

/// Which stream a chunk of output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// A chunk of output, in the order it was read from its stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub stream: Stream,
    pub data: Vec<u8>,
}

/// How an attempt ended (it did run).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Exit {
    /// The exit status if it exited normally.
    pub code: Option<i32>,
    /// The signal that ended it, if one did.
    pub signal: Option<i32>,
    /// The kernel's OOM killer ended it (memory limit).
    pub oom_killed: bool,
    /// Killed because `timeout` elapsed.
    pub timed_out: bool,
    /// Killed because the cancel token fired.
    pub cancelled: bool,
}

impl Exit {
    /// The shell convention: the exit status, or 128 + signal number.
    pub fn exit_code(&self) -> i32 {
        match (self.code, self.signal) {
            (Some(c), _) => c,
            (None, Some(s)) => 128 + s,
            (None, None) => -1,
        }
    }
}

/// Why an attempt could not be run at all (as opposed to running and failing).
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The spec is wrong for this executor (names the field).
    #[error("{field}: {message}")]
    InvalidSpec { field: &'static str, message: String },
    /// This host cannot run this kind (binary missing, no cgroup controller, Podman service
    /// down): the message says what is missing and how to get it.
    #[error("{0}")]
    Unavailable(String),
    /// Setting up or supervising the attempt failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

/// Every device a container is to get must be a character or block device on this host. A
/// missing one (a GPU whose driver went away) is this node's problem, so the attempt may be
/// retried elsewhere: `Unavailable`, not `InvalidSpec`.
fn check_devices(spec: &ExecSpec) -> Result<(), ExecError> {
    use std::os::unix::fs::FileTypeExt;
    for d in &spec.devices {
        match std::fs::metadata(d) {
            Ok(m) if m.file_type().is_char_device() || m.file_type().is_block_device() => {}
            Ok(_) => {
                return Err(ExecError::InvalidSpec {
                    field: "devices",
                    message: format!("{} is not a device node", d.display()),
                })
            }
            Err(e) => {
                return Err(ExecError::Unavailable(format!(
                    "device {} is not usable on this node: {e}",
                    d.display()
                )))
            }
        }
    }
    Ok(())
}

/// Host-level settings shared by all attempts on this node.
#[derive(Debug, Clone)]
pub struct ExecConfig {
    /// Scratch dirs, unpacked rootfs tarballs, the Podman socket and its config live here
    /// (e.g. `<data_dir>/exec`).
    pub work_root: PathBuf,
    /// Podman REST API socket to use; `None` = start `podman system service` under
    /// `work_root` on first use.
    pub podman_socket: Option<PathBuf>,
    /// The group (under the agent's own cgroup) that holds this node's attempts, `[a-z0-9-]`.
    /// One per node, so that several nodes on one host (tests, trials) never touch each
    /// other's attempts.
    pub cgroup_parent: String,
    /// Which users exec attempts may run as.
    pub users: UserPolicy,
    /// Where exec attempts get their scratch dirs (`<scratch_root>/<name>`, owned by the
    /// attempt's user, removed afterwards). Outside the data dir, which stays 0700 with the
    /// node's keys: every directory above it must be traversable by the attempts' users.
    /// Created 0711 if missing.
    pub scratch_root: PathBuf,
}

/// The default scratch root of a node's attempts: `/var/tmp/cortex/<cgroup_parent>` (the
/// appliance puts `/var/tmp` on the persistent data disk when it has one).
pub fn default_scratch_root(cgroup_parent: &str) -> PathBuf {
    PathBuf::from("/var/tmp/cortex").join(cgroup_parent)
}

/// Whether this node's own Podman image store exists (an image was imported or a Podman task
/// ran), so listing images would not start a service for nothing.
pub fn podman_store_exists(config: &ExecConfig) -> bool {
    config.work_root.join("podman").join("storage").is_dir()
}

/// The executors of this node.
pub struct Executors {
    config: ExecConfig,
}

impl Executors {
    pub fn new(config: ExecConfig) -> Result<Self, ExecError> {
        Ok(Executors { config })
    }

    pub fn config(&self) -> &ExecConfig {
        &self.config
    }

    /// Runs one attempt to completion. Output chunks go to `output` as they are read (a full
    /// channel applies back-pressure; a closed one discards output). `cancel` kills the whole
    /// process tree within a second and the result has `cancelled` set.
    pub async fn run(
        &self,
        spec: ExecSpec,
        output: mpsc::Sender<Output>,
        cancel: CancellationToken,
    ) -> Result<Exit, ExecError> {
        check_devices(&spec)?;
        match spec.kind {
            Kind::Exec => process::run(&self.config, spec, output, cancel).await,
            Kind::Nspawn => nspawn::run(&self.config, spec, output, cancel).await,
            Kind::Podman => podman::run(&self.config, spec, output, cancel).await,
        }
    }
}

#[cfg(test)]
mod device_tests {
    use super::*;

    fn with_devices(devices: &[&str]) -> ExecSpec {
        ExecSpec {
            kind: Kind::Podman,
            name: "t-1-a1".into(),
            command: vec!["true".into()],
            image: None,
            env: BTreeMap::new(),
            workdir: None,
            user: None,
            limits: Limits::default(),
            network: Network::Private,
            timeout: None,
            devices: devices.iter().map(PathBuf::from).collect(),
        }
    }

    #[test]
    fn devices_must_exist_and_be_device_nodes() {
        assert!(check_devices(&with_devices(&["/dev/null"])).is_ok());
        assert!(matches!(
            check_devices(&with_devices(&["/dev/null", "/dev/cortex-no-such-gpu"])),
            Err(ExecError::Unavailable(m)) if m.contains("/dev/cortex-no-such-gpu")
        ));
        assert!(matches!(
            check_devices(&with_devices(&["/etc/passwd"])),
            Err(ExecError::InvalidSpec { field: "devices", .. })
        ));
    }
}
