//! The podman service the executor talks to: the one at [`ExecConfig::podman_socket`], or our
//! own `podman system service`, started on first use under `<work_root>/podman` with a
//! generated `containers.conf` and a store of its own, and kept for the life of the process
//! (one per `work_root`).
//!
//! Our service dies with this process, however it ends: it runs under a small `sh` watchdog
//! whose stdin is a pipe from us, and when the pipe closes (we exited, were killed, or dropped
//! the service) the watchdog stops podman. `PR_SET_PDEATHSIG` would need `unsafe` and fires
//! when the *thread* that spawned the child ends, which a tokio worker may do at any time.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use hyper::Method;
use tokio::sync::Mutex;

use super::client::Client;
use super::host::{self, HostFacts, Layout};
use crate::{ExecConfig, ExecError};

/// How long a healthy service takes to answer `_ping` (it answers in about a millisecond).
const PING: Duration = Duration::from_secs(2);

/// The size past which podman's events log is emptied (see [`trim_events`]).
const EVENTS_MAX: u64 = 32 << 20;

/// How long a fresh service may take to answer its first `_ping` (the first start of a store
/// sets it up).
const START: Duration = Duration::from_secs(30);

/// Runs podman (`$2...`) in the background and stops it when stdin (a pipe from us) reaches
/// end-of-file; exits with podman's status if podman stops by itself. Afterwards it undoes the
/// private bind mount the overlay driver makes of `<graphroot>/overlay` (`$1`), which podman
/// leaves behind and which would keep a temporary work_root from being deleted. (Background
/// jobs of `sh` read `/dev/null` unless redirected, hence the pipe is kept as fd 3.)
const WATCHDOG: &str = r#"graph=$1
shift
exec 3<&0
"$@" </dev/null 3<&- &
pid=$!
{ while read -r _; do :; done; kill -TERM "$pid" 2>/dev/null; sleep 10; kill -KILL "$pid" 2>/dev/null; } <&3 &
reader=$!
wait "$pid"
status=$?
kill "$reader" 2>/dev/null
umount "$graph/overlay" 2>/dev/null
exit "$status"
"#;

/// A service ready for requests.
#[derive(Debug, Clone)]
pub(crate) struct Podman {
    pub client: Client,
    /// Our own service uses the `cgroupfs` manager (containers then get a `cgroup_parent`;
    /// podman's default, `machine.slice` under systemd, is right elsewhere).
    pub cgroupfs: bool,
}

/// Our own service process.
struct Service {
    podman: Podman,
    layout: Layout,
    /// The watchdog `sh` and the write end of its stdin; `None` when another process's
    /// service was already answering on the socket.
    child: Option<(Child, ChildStdin)>,
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some((mut child, stdin)) = self.child.take() {
            // Closing the pipe makes the watchdog stop podman; reap it off the async thread.
            drop(stdin);
            std::thread::spawn(move || {
                let _ = child.wait();
            });
        }
    }
}

fn services() -> &'static Mutex<HashMap<PathBuf, Service>> {
    static SERVICES: OnceLock<Mutex<HashMap<PathBuf, Service>>> = OnceLock::new();
    SERVICES.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The service for `config`, started (or restarted, if it stopped answering) as needed.
pub(crate) async fn connect(config: &ExecConfig) -> Result<Podman, ExecError> {
    if let Some(socket) = &config.podman_socket {
        let client = Client::new(socket);
        client.ping(PING).await.map_err(|e| {
            ExecError::Unavailable(format!(
                "the podman service at {} is not answering: {e}",
                socket.display()
            ))
        })?;
        return Ok(Podman {
            client,
            cgroupfs: false,
        });
    }
    let mut services = services().lock().await;
    if let Some(service) = services.get(&config.work_root) {
        match service.podman.client.ping(PING).await {
            Ok(()) => {
                trim_events(&service.layout);
                return Ok(service.podman.clone());
            }
            Err(e) => {
                tracing::warn!(error = %e, socket = %service.podman.client.socket().display(), "the podman service stopped answering; starting it again");
                services.remove(&config.work_root);
            }
        }
    }
    let service = start(&config.work_root).await?;
    let podman = service.podman.clone();
    services.insert(config.work_root.clone(), service);
    Ok(podman)
}

async fn start(work_root: &Path) -> Result<Service, ExecError> {
    let podman = find_program("podman")
        .ok_or_else(|| ExecError::Unavailable("podman is not installed: apt install podman runc".into()))?;
    let layout = Layout::new(work_root);
    let socket = layout.socket();
    // sockaddr_un holds 108 bytes including the terminating NUL.
    if socket.as_os_str().len() > 107 {
        return Err(ExecError::Unavailable(format!(
            "the podman socket path {} is longer than a unix socket allows (107 bytes): use a shorter work_root or set podman_socket",
            socket.display()
        )));
    }
    if layout.runroot().as_os_str().len() > host::MAX_RUNROOT {
        return Err(ExecError::Unavailable(format!(
            "podman's runroot {} is longer than the {} characters podman accepts",
            layout.runroot().display(),
            host::MAX_RUNROOT
        )));
    }
    for dir in [&layout.dir, &layout.run] {
        std::fs::create_dir_all(dir).map_err(|e| io_error(dir, "creating", e))?;
    }

    let version = tokio::process::Command::new(&podman)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| ExecError::Unavailable(format!("running {} --version: {e}", podman.display())))?;
    let host = HostFacts::detect(&String::from_utf8_lossy(&version.stdout));
    if host.runtime() == Some("runc") && find_program("runc").is_none() {
        return Err(ExecError::Unavailable(
            "podman needs runc on a cgroup v1 host (crun refuses v1 hierarchies): apt install runc".into(),
        ));
    }
    write_file(&layout.containers_conf(), &host::containers_conf(&host, &layout))?;
    write_file(&layout.storage_conf(), &host::storage_conf(&layout))?;
    if let Some(conmon) = host.conmon_wrapper() {
        let path = layout.conmon_wrapper();
        write_file(&path, &host::conmon_wrapper_script(conmon))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| io_error(&path, "making executable", e))?;
    }
    let cgroupfs = host.cgroupfs();

    let client = Client::new(&socket);
    if client.ping(PING).await.is_ok() {
        // Another process (the agent, while `cortex image import` runs) has one up.
        tracing::info!(socket = %socket.display(), "using the podman service already running");
        return Ok(Service {
            podman: Podman { client, cgroupfs },
            layout,
            child: None,
        });
    }
    reset_after_reboot(&layout)?;
    let _ = std::fs::remove_file(&socket);

    let log = std::fs::File::create(layout.log()).map_err(|e| io_error(&layout.log(), "creating", e))?;
    let log2 = log
        .try_clone()
        .map_err(|e| io_error(&layout.log(), "opening", e))?;
    let path = std::env::var_os("PATH")
        .unwrap_or_else(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    let began = Instant::now();
    let mut child = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(WATCHDOG)
        .arg("cortex-podman-watchdog")
        .arg(layout.graphroot())
        .arg(&podman)
        .args(["system", "service", "--time=0"])
        .arg(format!("unix://{}", socket.display()))
        // Nothing of the agent's environment reaches podman (or, through it, conmon).
        .env_clear()
        .env("PATH", path)
        .env("CONTAINERS_CONF", layout.containers_conf())
        .env("CONTAINERS_STORAGE_CONF", layout.storage_conf())
        .current_dir(&layout.dir)
        .stdin(Stdio::piped())
        .stdout(log)
        .stderr(log2)
        .spawn()
        .map_err(|e| ExecError::Io {
            context: "starting podman system service".into(),
            source: e,
        })?;
    let Some(stdin) = child.stdin.take() else {
        return Err(ExecError::Unavailable(
            "podman system service: no pipe to its watchdog".into(),
        ));
    };
    let mut service = Service {
        podman: Podman { client, cgroupfs },
        layout: layout.clone(),
        child: Some((child, stdin)),
    };
    wait_ready(&mut service, &layout, began).await?;
    tracing::info!(socket = %socket.display(), ms = began.elapsed().as_millis() as u64, "podman service started");
    remove_leftovers(&service.podman.client).await;
    Ok(service)
}

/// Waits for the first `_ping`; a service that exits or never answers is an error quoting its
/// log.
async fn wait_ready(service: &mut Service, layout: &Layout, began: Instant) -> Result<(), ExecError> {
    loop {
        if service.podman.client.ping(PING).await.is_ok() {
            return Ok(());
        }
        let exited = match &mut service.child {
            Some((child, _)) => child.try_wait().ok().flatten(),
            None => None,
        };
        if exited.is_some() || began.elapsed() > START {
            let log = std::fs::read_to_string(layout.log()).unwrap_or_default();
            let mut tail: Vec<&str> = log.lines().rev().take(5).collect();
            tail.reverse();
            let how = match exited {
                Some(status) => format!("exited ({status})"),
                None => format!("did not answer within {} s", START.as_secs()),
            };
            return Err(ExecError::Unavailable(format!(
                "podman system service {how}; the end of {}: {}",
                layout.log().display(),
                if tail.is_empty() {
                    "(empty)".to_string()
                } else {
                    tail.join(" | ")
                }
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Containers of an earlier agent process (it died mid-attempt) are still in our store:
/// nobody waits for them any more, so they go.
async fn remove_leftovers(client: &Client) {
    #[derive(serde::Deserialize)]
    struct Listed {
        #[serde(rename = "Id")]
        id: String,
        #[serde(rename = "Names", default)]
        names: Vec<String>,
    }
    let listed: Vec<Listed> = match client.json(Method::GET, "/containers/json?all=true", None).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "listing leftover containers");
            return;
        }
    };
    for c in listed {
        if c.names.iter().any(|n| n.starts_with(super::NAME_PREFIX)) {
            tracing::warn!(names = ?c.names, "removing a container left by an earlier agent");
            if let Err(e) = super::remove(client, &c.id).await {
                tracing::warn!(error = %e, id = %c.id, "removing a leftover container");
            }
        }
    }
}

/// The runtime directory is on `/run`, a tmpfs on most hosts; where it is not (the development
/// machines), clear it after a reboot as the tmpfs would have been (podman otherwise trusts
/// stale state).
fn reset_after_reboot(layout: &Layout) -> Result<(), ExecError> {
    let Ok(boot) = std::fs::read_to_string("/proc/sys/kernel/random/boot_id") else {
        return Ok(());
    };
    let boot = boot.trim();
    let recorded = std::fs::read_to_string(layout.boot_id()).ok();
    if recorded.as_deref().map(str::trim) == Some(boot) {
        return Ok(());
    }
    if recorded.is_some() {
        if let Err(e) = std::fs::remove_dir_all(&layout.run) {
            if e.kind() != std::io::ErrorKind::NotFound {
                return Err(io_error(&layout.run, "clearing after a reboot", e));
            }
        }
    }
    write_file(&layout.boot_id(), &format!("{boot}\n"))
}

/// podman 4's `file` events backend (hosts without journald) appends about 1.7 KB per
/// container to `<tmp_dir>/events/events.log` and never rotates it (`events_logfile_max_size`
/// came in 4.5); the file is on `/run`, often RAM. Nothing here reads old events, so past
/// [`EVENTS_MAX`] it is emptied (podman appends with `O_APPEND`, so it just goes on writing).
fn trim_events(layout: &Layout) {
    let path = layout.tmp_dir().join("events/events.log");
    if std::fs::metadata(&path).is_ok_and(|m| m.len() > EVENTS_MAX) {
        match std::fs::OpenOptions::new().write(true).open(&path) {
            Ok(f) => {
                if let Err(e) = f.set_len(0) {
                    tracing::warn!(path = %path.display(), error = %e, "emptying podman's events log");
                }
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "emptying podman's events log")
            }
        }
    }
}

/// `name` in `PATH` (or the usual system directories).
pub(crate) fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Writes `content` unless the file already holds it (keeps mtimes meaningful).
fn write_file(path: &Path, content: &str) -> Result<(), ExecError> {
    if std::fs::read_to_string(path).is_ok_and(|old| old == content) {
        return Ok(());
    }
    std::fs::write(path, content).map_err(|e| io_error(path, "writing", e))
}

fn io_error(path: &Path, what: &str, source: std::io::Error) -> ExecError {
    ExecError::Io {
        context: format!("{what} {}", path.display()),
        source,
    }
}
