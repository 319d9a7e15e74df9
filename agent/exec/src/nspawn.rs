//! The `nspawn` executor: an ephemeral systemd-nspawn container.
//!
//! `systemd-nspawn --volatile=overlay` runs the command on a tmpfs overlay of the rootfs (the
//! image is never modified, parallel attempts share it), `--as-pid2` behind a stub init, and
//! `--private-network` unless the spec asks for the host's. The nspawn process itself is
//! started by the same supervisor as the `exec` executor: it joins the attempt's cgroups before
//! exec, so the container and nspawn are limited, accounted and killed together.

mod rootfs;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::process::supervise::{self, Launch};
use crate::process::{find_executable, validate, DEFAULT_PATH};
use crate::{ExecConfig, ExecError, ExecSpec, Exit, Network, Output};

/// Who supervises an nspawn attempt. See [`supervision`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Supervision {
    /// The agent starts `systemd-nspawn --register=no --keep-unit` itself, inside cgroups it
    /// created and limits itself. Works on every host, with or without systemd.
    OwnCgroups,
    /// systemd runs nspawn in a transient unit created over D-Bus (`StartTransientUnit` with
    /// `Delegate=yes`, `MemoryMax=`, `CPUQuota=`, `TasksMax=`; machined registration): the
    /// proper path where PID 1 is systemd, so that `systemctl`/`machinectl` see the attempt.
    /// Not implemented yet.
    #[allow(dead_code)] // the seam for the D-Bus path
    SystemdUnit,
}

/// Which supervision path nspawn attempts take on this host. The seam for the systemd path:
/// where `/run/systemd/system` exists, this is where [`Supervision::SystemdUnit`] will be
/// chosen once implemented; until then every host uses [`Supervision::OwnCgroups`], which
/// works there too (with the agent's cgroup delegated).
pub(crate) fn supervision() -> Supervision {
    if systemd_is_pid1() {
        tracing::debug!("systemd is PID 1, but transient units are not implemented: nspawn runs under the agent's own cgroups");
    }
    Supervision::OwnCgroups
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
    match supervision() {
        Supervision::OwnCgroups => {}
        Supervision::SystemdUnit => unreachable!("not chosen until implemented"),
    }
    silence_propagate_warning().await;

    let launch = Launch {
        parent: config.cgroup_parent.clone(),
        name: spec.name.clone(),
        program: nspawn,
        arg0: "systemd-nspawn".into(),
        args: nspawn_args(&spec, &rootfs),
        // nspawn itself gets nothing from the agent; the container gets `--setenv`s.
        env: BTreeMap::from([("PATH".to_string(), DEFAULT_PATH.to_string())]),
        cwd: PathBuf::from("/"),
        private_network: false, // --private-network does it
        limits: spec.limits,
        timeout: spec.timeout,
    };
    let mut exit = supervise::supervise(launch, output, cancel, |e| ExecError::Io {
        context: "starting systemd-nspawn".into(),
        source: e,
    })
    .await?;
    // nspawn reports a payload killed by a signal as exit status 255 without naming the
    // signal; the OOM killer's is SIGKILL.
    if exit.oom_killed && exit.code == Some(255) {
        exit.code = None;
        exit.signal = Some(libc::SIGKILL);
    }
    Ok(exit)
}

/// The full `systemd-nspawn` command line (after the program name).
fn nspawn_args(spec: &ExecSpec, rootfs: &Path) -> Vec<String> {
    let mut args: Vec<String> = [
        "--quiet",
        "--pipe",
        // No system bus / machined here: no registration, stay in the cgroup we put it in.
        "--register=no",
        "--keep-unit",
        "--as-pid2",
        "--volatile=overlay",
        // The payload, not the nspawn supervisor, is what the OOM killer should pick.
        "--oom-score-adjust=1000",
        "--kill-signal=SIGTERM",
    ]
    .map(String::from)
    .to_vec();
    args.push(format!("--machine={}", spec.name));
    args.push(format!("--directory={}", rootfs.display()));
    if spec.network == Network::Private {
        args.push("--private-network".into());
    }
    if let Some(w) = &spec.workdir {
        args.push(format!("--chdir={w}"));
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
            limits: Limits::default(),
            network: Network::Private,
            timeout: None,
        };
        let args = nspawn_args(&spec, Path::new("/r"));
        for flag in [
            "--register=no",
            "--keep-unit",
            "--as-pid2",
            "--volatile=overlay",
            "--oom-score-adjust=1000",
            "--private-network",
            "--chdir=/tmp",
            "--setenv=A=b c",
            "--machine=t-1",
            "--directory=/r",
        ] {
            assert!(args.iter().any(|a| a == flag), "{flag} missing from {args:?}");
        }
        assert!(args.iter().any(|a| a.starts_with("--setenv=PATH=")));
        assert_eq!(&args[args.len() - 4..], ["--", "sh", "-c", "echo hi"]);
        let host = ExecSpec {
            network: Network::Host,
            ..spec
        };
        assert!(!nspawn_args(&host, Path::new("/r")).contains(&"--private-network".to_string()));
    }

    #[test]
    fn supervision_is_own_cgroups_everywhere_for_now() {
        assert_eq!(supervision(), Supervision::OwnCgroups);
    }
}
