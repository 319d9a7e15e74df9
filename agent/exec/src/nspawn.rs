//! The `nspawn` executor: an ephemeral systemd-nspawn container.
//!
//! `systemd-nspawn --volatile=overlay` runs the command on a tmpfs overlay of the rootfs (the
//! image is never modified, parallel attempts share it), `--as-pid2` behind a stub init, and
//! `--private-network` unless the spec asks for the host's. The nspawn process itself is
//! started by the same supervisor as the `exec` executor: it joins the attempt's cgroups before
//! exec, so the container and nspawn are limited, accounted and killed together.

mod machined;
mod rootfs;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::process::supervise::{self, Launch};
use crate::process::{find_executable, validate, DEFAULT_PATH};
use crate::{ExecConfig, ExecError, ExecSpec, Exit, Network, Output};

/// Who supervises an nspawn attempt. See [`supervision`].
#[derive(Clone)]
pub(crate) enum Supervision {
    /// The agent starts `systemd-nspawn --register=no --keep-unit` itself, inside cgroups it
    /// created and limits itself. Works on every host, with or without systemd.
    OwnCgroups,
    /// systemd's way, where PID 1 is systemd and machined is on the system bus: nspawn
    /// registers the container with machined in a scope unit that carries the limits, and the
    /// agent kills and inspects it over D-Bus (`machined.rs`).
    Machined(zbus::Connection),
}

/// Which supervision path nspawn attempts take on this host, decided once: [`Supervision::Machined`]
/// where systemd is PID 1 and machined answers on the system bus, else
/// [`Supervision::OwnCgroups`] (with the reason logged).
pub(crate) async fn supervision() -> Supervision {
    static CHOSEN: tokio::sync::OnceCell<Supervision> = tokio::sync::OnceCell::const_new();
    CHOSEN
        .get_or_init(|| async {
            if !systemd_is_pid1() {
                return Supervision::OwnCgroups;
            }
            match machined::connect().await {
                Ok(conn) => {
                    tracing::info!("nspawn attempts run as machined scopes under {}", machined::SLICE);
                    Supervision::Machined(conn)
                }
                Err(reason) => {
                    tracing::warn!(%reason, "systemd is PID 1 but machined is not reachable: nspawn attempts run under the agent's own cgroups");
                    Supervision::OwnCgroups
                }
            }
        })
        .await
        .clone()
}

/// systemd's own test (`sd_booted`).
pub(crate) fn systemd_is_pid1() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

pub(crate) async fn run(
    config: &ExecConfig,
    spec: ExecSpec,
    output: mpsc::Sender<Output>,
    cancel: CancellationToken,
) -> Result<Exit, ExecError> {
    validate(&spec)?;
    if spec.name.len() > 63 {
        return Err(ExecError::InvalidSpec {
            field: "name",
            message: "nspawn uses it as the container's hostname: at most 63 characters".into(),
        });
    }
    let host_path = std::env::var("PATH").unwrap_or_default();
    let nspawn =
        find_executable("systemd-nspawn", &format!("{host_path}:{DEFAULT_PATH}")).ok_or_else(|| {
            ExecError::Unavailable("systemd-nspawn is not installed: apt install systemd-container".into())
        })?;
    let image = spec.image.as_deref().ok_or_else(|| ExecError::InvalidSpec {
        field: "image",
        message: "nspawn needs a rootfs directory or a .tar/.tar.gz/.tar.zst file".into(),
    })?;
    if let Some(w) = &spec.workdir {
        if !w.starts_with('/') {
            return Err(ExecError::InvalidSpec {
                field: "workdir",
                message: format!("{w} must be an absolute path inside the container"),
            });
        }
    }
    let rootfs = rootfs::prepare(&config.work_root, image).await?;
    let supervision = supervision().await;
    silence_propagate_warning().await;

    let registration = match &supervision {
        Supervision::OwnCgroups => None,
        Supervision::Machined(_) => Some(machined::registration_args(&spec.limits)),
    };
    let launch = Launch {
        parent: config.cgroup_parent.clone(),
        name: spec.name.clone(),
        program: nspawn,
        arg0: "systemd-nspawn".into(),
        args: nspawn_args(&spec, &rootfs, registration),
        // nspawn itself gets nothing from the agent; the container gets `--setenv`s.
        env: BTreeMap::from([("PATH".to_string(), DEFAULT_PATH.to_string())]),
        cwd: PathBuf::from("/"),
        private_network: false, // --private-network does it
        user: None,             // nspawn needs root; `--user` picks the container's user
        limits: spec.limits,
        timeout: spec.timeout,
    };
    let spawn_error = |e| ExecError::Io {
        context: "starting systemd-nspawn".into(),
        source: e,
    };
    let mut exit = match supervision {
        Supervision::OwnCgroups => supervise::supervise(launch, output, cancel, spawn_error).await?,
        Supervision::Machined(conn) => {
            let machine = machined::Machine::new(conn, &spec.name);
            run_registered(machine, launch, output, cancel, spawn_error).await?
        }
    };
    // nspawn reports a payload killed by a signal as exit status 255 without naming the
    // signal; the OOM killer's is SIGKILL.
    if exit.oom_killed && exit.code == Some(255) {
        exit.code = None;
        exit.signal = Some(libc::SIGKILL);
    }
    Ok(exit)
}

/// The machined path: the container lives in its own scope, so a cancel or timeout kills it
/// through machined (every process of the scope, SIGKILL) before the nspawn process itself is
/// reaped by the usual supervisor; the scope's result tells an OOM kill.
async fn run_registered(
    mut machine: machined::Machine,
    mut launch: Launch,
    output: mpsc::Sender<Output>,
    cancel: CancellationToken,
    spawn_error: impl FnOnce(std::io::Error) -> ExecError,
) -> Result<Exit, ExecError> {
    let timeout = launch.timeout.take();
    // The limits are the scope's; nspawn's own group only holds nspawn.
    launch.limits = crate::Limits::default();
    let inner = CancellationToken::new();
    let supervised = supervise::supervise(launch, output, inner.clone(), spawn_error);
    tokio::pin!(supervised);
    let deadline = async {
        match timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    let mut learn = tokio::time::interval(machined::LEARN_EVERY);
    let mut oom = tokio::time::interval(machined::OOM_EVERY);
    let (mut timed_out, mut cancelled, mut known) = (false, false, false);
    let result = loop {
        let stopping = timed_out || cancelled;
        tokio::select! {
            r = &mut supervised => break r,
            _ = learn.tick(), if !known => known = machine.learn_unit().await,
            _ = oom.tick(), if known => machine.watch_oom(),
            () = &mut deadline, if !stopping => {
                timed_out = true;
                stop(&machine, &inner).await;
            }
            () = cancel.cancelled(), if !stopping => {
                cancelled = true;
                stop(&machine, &inner).await;
            }
        }
    };
    let mut exit = result?;
    exit.timed_out |= timed_out;
    exit.cancelled |= cancelled;
    if !exit.cancelled && !exit.timed_out && exit.code != Some(0) && machine.oom_killed().await {
        exit.oom_killed = true;
    }
    Ok(exit)
}

async fn stop(machine: &machined::Machine, inner: &CancellationToken) {
    if let Err(e) = machine.kill_all().await {
        tracing::warn!(error = %e, "killing the container through machined");
    }
    inner.cancel();
}

/// The full `systemd-nspawn` command line (after the program name).
/// `registration`: the machined path's flags; `None` = no registration, stay in the cgroup the
/// agent put nspawn in.
fn nspawn_args(spec: &ExecSpec, rootfs: &Path, registration: Option<Vec<String>>) -> Vec<String> {
    let mut args: Vec<String> = [
        "--quiet",
        "--pipe",
        "--as-pid2",
        "--volatile=overlay",
        // The payload, not the nspawn supervisor, is what the OOM killer should pick.
        "--oom-score-adjust=1000",
        "--kill-signal=SIGTERM",
    ]
    .map(String::from)
    .to_vec();
    match registration {
        None => args.extend(["--register=no".to_string(), "--keep-unit".to_string()]),
        Some(flags) => args.extend(flags),
    }
    args.push(format!("--machine={}", spec.name));
    args.push(format!("--directory={}", rootfs.display()));
    if spec.network == Network::Private {
        args.push("--private-network".into());
    }
    if let Some(w) = &spec.workdir {
        args.push(format!("--chdir={w}"));
    }
    if let Some(u) = &spec.user {
        // A user of the container's own /etc/passwd (nspawn looks it up inside).
        args.push(format!("--user={u}"));
    }
    for d in &spec.devices {
        args.push(format!("--bind={}", d.display()));
    }
    let mut env = spec.env.clone();
    env.entry("PATH".into()).or_insert_with(|| DEFAULT_PATH.into());
    for (k, v) in env {
        args.push(format!("--setenv={k}={v}"));
    }
    args.push("--".into());
    args.extend(spec.command.iter().cloned());
    args
}

/// nspawn warns on every run that it cannot clean `/run/systemd/nspawn/propagate/...` when
/// `/run` is not a tmpfs (hosts without systemd). A tmpfs on `/run/systemd/nspawn`, mounted
/// once, silences it; on systemd hosts `/run` is a tmpfs and nothing is mounted.
async fn silence_propagate_warning() {
    static ONCE: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    ONCE.get_or_init(|| async {
        let target = Path::new("/run/systemd/nspawn");
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mounted_at = |point: &str| -> Option<String> {
            mountinfo.lines().find_map(|l| {
                let (left, right) = l.split_once(" - ")?;
                (left.split(' ').nth(4)? == point).then(|| right.split(' ').next().unwrap_or("").to_string())
            })
        };
        if mounted_at("/run").as_deref() == Some("tmpfs") || mounted_at("/run/systemd/nspawn").is_some() {
            return;
        }
        if let Err(e) = std::fs::create_dir_all(target) {
            tracing::debug!(error = %e, "creating /run/systemd/nspawn");
            return;
        }
        match nix::mount::mount(
            Some("tmpfs"),
            target,
            Some("tmpfs"),
            nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
            Some("mode=0755"),
        ) {
            Ok(()) => tracing::info!("mounted a tmpfs on /run/systemd/nspawn (/run is not a tmpfs)"),
            Err(e) => tracing::debug!(error = %e, "mounting a tmpfs on /run/systemd/nspawn"),
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Kind, Limits};

    #[test]
    fn command_line_has_the_isolation_flags_and_the_env() {
        let spec = ExecSpec {
            kind: Kind::Nspawn,
            name: "t-1".into(),
            command: vec!["sh".into(), "-c".into(), "echo hi".into()],
            image: Some("/r".into()),
            env: BTreeMap::from([("A".to_string(), "b c".to_string())]),
            workdir: Some("/tmp".into()),
            user: Some("builder".into()),
            limits: Limits::default(),
            network: Network::Private,
            devices: vec!["/dev/nvidia0".into()],
            timeout: None,
        };
        let args = nspawn_args(&spec, Path::new("/r"), None);
        for flag in [
            "--register=no",
            "--keep-unit",
            "--as-pid2",
            "--volatile=overlay",
            "--oom-score-adjust=1000",
            "--private-network",
            "--chdir=/tmp",
            "--user=builder",
            "--setenv=A=b c",
            "--machine=t-1",
            "--directory=/r",
            "--bind=/dev/nvidia0",
        ] {
            assert!(args.iter().any(|a| a == flag), "{flag} missing from {args:?}");
        }
        assert!(args.iter().any(|a| a.starts_with("--setenv=PATH=")));
        assert_eq!(&args[args.len() - 4..], ["--", "sh", "-c", "echo hi"]);
        let host = ExecSpec {
            network: Network::Host,
            ..spec
        };
        assert!(!nspawn_args(&host, Path::new("/r"), None).contains(&"--private-network".to_string()));
        let registered = nspawn_args(&host, Path::new("/r"), Some(vec!["--register=yes".into()]));
        assert!(registered.contains(&"--register=yes".to_string()));
        assert!(!registered
            .iter()
            .any(|a| a == "--keep-unit" || a == "--register=no"));
    }

    /// Here PID 1 is not systemd: the agent's own cgroups. (The machined path is tested in
    /// the appliance VM, `tests/image.rs`.)
    #[tokio::test]
    async fn without_systemd_as_pid1_nspawn_runs_under_own_cgroups() {
        if systemd_is_pid1() {
            eprintln!("systemd is PID 1 here: the machined path is chosen where machined answers");
            return;
        }
        assert!(matches!(supervision().await, Supervision::OwnCgroups));
    }
}
