//! The spawn / stream / wait / kill loop shared by the `exec` and `nspawn` executors.

use std::collections::BTreeMap;
use std::io;
use std::os::unix::process::ExitStatusExt as _;
use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::spawn;
use crate::cgroup::AttemptCgroup;
use crate::{ExecError, Exit, Limits, Output, Stream};

/// Output is forwarded in chunks of at most this many bytes.
pub(crate) const CHUNK: usize = 64 * 1024;

/// How long a cancelled or timed-out attempt may take to die (the contract is one second).
const KILL_WAIT: Duration = Duration::from_secs(5);

/// After a cancel or timeout, how long output still in the pipes may take to be forwarded.
const DRAIN_AFTER_KILL: Duration = Duration::from_millis(250);

/// One process to start in a fresh set of attempt cgroups.
pub(crate) struct Launch {
    /// The node's group of attempts (`ExecConfig::cgroup_parent`).
    pub parent: String,
    /// Attempt name: names the cgroups.
    pub name: String,
    /// Resolved path of the program (checked to exist by the caller).
    pub program: PathBuf,
    /// `argv[0]` as the user wrote it.
    pub arg0: String,
    pub args: Vec<String>,
    /// The complete environment (nothing else is inherited).
    pub env: BTreeMap<String, String>,
    pub cwd: PathBuf,
    /// Unshare the network namespace before exec.
    pub private_network: bool,
    /// Switch to this user before exec (`None`: stay the agent's user).
    pub user: Option<crate::user::Ids>,
    pub limits: Limits,
    pub timeout: Option<Duration>,
}

/// Runs `launch` to completion: joins its cgroups before exec, forwards its output, kills the
/// whole tree on cancel/timeout (and whatever the main process leaves behind when it exits),
/// waits until the cgroups are empty, removes them and maps the result to an [`Exit`].
/// `spawn_error` turns a failed spawn into the caller's error (e.g. "command not found").
pub(crate) async fn supervise(
    launch: Launch,
    output: mpsc::Sender<Output>,
    cancel: CancellationToken,
    spawn_error: impl FnOnce(io::Error) -> ExecError,
) -> Result<Exit, ExecError> {
    let cg = AttemptCgroup::create_in(&launch.parent, &launch.name, &launch.limits).await?;
    let spawned = {
        let procs = cg.open_procs()?;
        spawn::spawn(&spawn::Request {
            program: &launch.program,
            arg0: &launch.arg0,
            args: &launch.args,
            env: &launch.env,
            cwd: &launch.cwd,
            procs: &procs,
            new_netns: launch.private_network,
            user: launch.user.as_ref(),
        })
    };
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            if let Err(re) = cg.remove().await {
                tracing::warn!(attempt = %launch.name, error = %re, "removing cgroups after a failed spawn");
            }
            return Err(spawn_error(e));
        }
    };

    let mut readers = Vec::new();
    for (fd, stream) in [
        (child.stdout.take(), Stream::Stdout),
        (child.stderr.take(), Stream::Stderr),
    ] {
        let Some(fd) = fd else { continue };
        match tokio::net::unix::pipe::Receiver::from_owned_fd(fd) {
            Ok(pipe) => readers.push(tokio::spawn(forward(pipe, stream, output.clone()))),
            Err(e) => {
                tracing::warn!(attempt = %launch.name, error = %e, ?stream, "reading the attempt's output")
            }
        }
    }
    drop(output);

    let deadline = async {
        match launch.timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    let (mut timed_out, mut cancelled) = (false, false);
    let waited = tokio::select! {
        status = child.wait() => Some(status),
        () = deadline => { timed_out = true; None }
        () = cancel.cancelled() => { cancelled = true; None }
    };
    let status = match waited {
        Some(status) => status,
        None => {
            if let Err(e) = cg.kill() {
                tracing::warn!(attempt = %launch.name, error = %e, "kill");
            }
            child.wait().await
        }
    }
    .map_err(|source| ExecError::Io {
        context: format!("waiting for attempt {}", launch.name),
        source,
    })?;

    // Nothing of an attempt outlives its main process: stragglers (daemons, background jobs)
    // are killed like systemd does when a service's main process exits.
    cg.kill_all(KILL_WAIT).await?;

    // Everything the tree wrote is now in the pipes, and every write end is closed.
    let aborts: Vec<_> = readers.iter().map(|r| r.abort_handle()).collect();
    let all_read = async {
        for r in readers {
            let _ = r.await;
        }
    };
    if timed_out || cancelled {
        // A consumer that stopped reading must not hold up a kill.
        if tokio::time::timeout(DRAIN_AFTER_KILL, all_read).await.is_err() {
            aborts.iter().for_each(|a| a.abort());
        }
    } else {
        // Back-pressure: a normal exit waits for the consumer to take all of the output.
        all_read.await;
    }

    let exit = Exit {
        code: status.code(),
        signal: status.signal(),
        oom_killed: !status.success() && cg.oom_killed(),
        timed_out,
        cancelled,
    };
    if let Err(e) = cg.remove().await {
        // The handle's drop keeps trying in the background.
        tracing::warn!(attempt = %launch.name, error = %e, "removing the attempt's cgroups");
    }
    Ok(exit)
}

/// Forwards one stream in order, in chunks of at most [`CHUNK`] bytes. A closed receiver
/// discards the rest, but the pipe is still drained so that the writer never blocks on it.
async fn forward(mut pipe: impl AsyncRead + Unpin, stream: Stream, tx: mpsc::Sender<Output>) {
    let mut buf = vec![0u8; CHUNK];
    let mut open = true;
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) => return,
            Ok(n) => {
                if open {
                    let chunk = Output {
                        stream,
                        data: buf[..n].to_vec(),
                    };
                    open = tx.send(chunk).await.is_ok();
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::debug!(?stream, error = %e, "reading attempt output");
                return;
            }
        }
    }
}
