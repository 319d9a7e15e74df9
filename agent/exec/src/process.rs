//! The `exec` executor: a plain process in its own cgroups.
//!
//! The process starts with an empty environment plus the spec's and a minimal `PATH`, as the
//! spec's user or the node's default (`nobody`; see [`crate::user`]), in a fresh scratch
//! directory (`<scratch_root>/<name>`, owned by that user, also its `HOME` and `TMPDIR`) that
//! is removed afterwards, with stdin from `/dev/null` and, unless the spec asks for the host's
//! network, in a network namespace of its own.

mod spawn;
pub(crate) mod supervise;

use std::io;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::cgroup;
use crate::user::Ids;
use crate::{ExecConfig, ExecError, ExecSpec, Exit, Network, Output};
use supervise::Launch;

/// `PATH` of every attempt unless its spec sets one.
pub(crate) const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

pub(crate) async fn run(
    config: &ExecConfig,
    spec: ExecSpec,
    output: mpsc::Sender<Output>,
    cancel: CancellationToken,
) -> Result<Exit, ExecError> {
    validate(&spec)?;
    let user = crate::user::resolve(spec.user.as_deref(), &config.users)?;
    let scratch = Scratch::create(&config.scratch_root, &spec.name, user.as_ref()).await?;
    let cwd = match &spec.workdir {
        None => scratch.path().to_path_buf(),
        // Relative to the scratch dir, like a shell started there would see it.
        Some(w) => scratch.path().join(w),
    };
    if !cwd.is_dir() {
        scratch.remove().await;
        return Err(ExecError::InvalidSpec {
            field: "workdir",
            message: format!("{} is not a directory", cwd.display()),
        });
    }
    let mut env = spec.env.clone();
    env.entry("PATH".into()).or_insert_with(|| DEFAULT_PATH.into());
    let home = scratch.path().to_string_lossy().into_owned();
    env.entry("HOME".into()).or_insert_with(|| home.clone());
    env.entry("TMPDIR".into()).or_insert(home);

    let arg0 = spec.command[0].clone();
    let program = resolve_program(&arg0, &env["PATH"], &cwd)?;
    let launch = Launch {
        parent: config.cgroup_parent.clone(),
        name: spec.name.clone(),
        program,
        arg0: arg0.clone(),
        args: spec.command[1..].to_vec(),
        env,
        cwd,
        private_network: spec.network == Network::Private,
        user,
        limits: spec.limits,
        timeout: spec.timeout,
    };
    let exit = supervise::supervise(launch, output, cancel, |e| spawn_error(&arg0, e)).await;
    scratch.remove().await;
    exit
}

/// The checks every executor shares: name, command, environment.
pub(crate) fn validate(spec: &ExecSpec) -> Result<(), ExecError> {
    cgroup::validate_name("name", &spec.name)?;
    cgroup::validate_limits(&spec.limits)?;
    let invalid = |field, message: String| Err(ExecError::InvalidSpec { field, message });
    match spec.command.first() {
        None => return invalid("command", "is empty".into()),
        Some(c) if c.is_empty() => return invalid("command", "command[0] is empty".into()),
        _ => {}
    }
    if let Some(arg) = spec.command.iter().find(|a| a.contains('\0')) {
        return invalid("command", format!("{arg:?} contains a NUL byte"));
    }
    for (k, v) in &spec.env {
        if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
            return invalid("env", format!("{k:?} is not a valid variable name or value"));
        }
    }
    if let Some(w) = &spec.workdir {
        if w.is_empty() || w.contains('\0') {
            return invalid("workdir", format!("{w:?} is not a valid path"));
        }
    }
    Ok(())
}

/// Looks `command` up like `execvp` would with the attempt's `PATH` (a name with a `/` is a
/// path, relative to `cwd`), so that a typo is reported as such before anything starts.
fn resolve_program(command: &str, path: &str, cwd: &Path) -> Result<PathBuf, ExecError> {
    if command.contains('/') {
        let p = cwd.join(command);
        return match std::fs::metadata(&p) {
            Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => Ok(p),
            Ok(_) => Err(ExecError::InvalidSpec {
                field: "command",
                message: format!("{command} is not an executable file"),
            }),
            Err(e) => Err(ExecError::InvalidSpec {
                field: "command",
                message: format!("{command}: {e}"),
            }),
        };
    }
    find_executable(command, path).ok_or_else(|| ExecError::InvalidSpec {
        field: "command",
        message: format!("{command}: command not found in PATH={path}"),
    })
}

/// The first executable file called `name` in the `:`-separated `path`.
pub(crate) fn find_executable(name: &str, path: &str) -> Option<PathBuf> {
    path.split(':').filter(|d| !d.is_empty()).find_map(|dir| {
        let p = Path::new(dir).join(name);
        let m = std::fs::metadata(&p).ok()?;
        (m.is_file() && m.permissions().mode() & 0o111 != 0).then_some(p)
    })
}

fn spawn_error(command: &str, e: io::Error) -> ExecError {
    match e.raw_os_error() {
        // The program itself: missing, not executable, not a binary or script.
        Some(libc::ENOENT | libc::EACCES | libc::ENOEXEC | libc::ENOTDIR) => ExecError::InvalidSpec {
            field: "command",
            message: format!("{command}: {e}"),
        },
        // Joining cgroups and unsharing the network need privileges the agent lacks.
        Some(libc::EPERM) => ExecError::Unavailable(format!(
            "starting {command}: {e} (joining cgroups and a private network namespace need root)"
        )),
        _ => ExecError::Io {
            context: format!("starting {command}"),
            source: e,
        },
    }
}

/// The attempt's scratch directory; removed by [`Scratch::remove`], or on drop if the run was
/// abandoned half-way.
struct Scratch(Option<PathBuf>);

impl Scratch {
    /// `<root>/<name>`, 0700 and owned by the attempt's user (`root` is created 0711 if
    /// missing: others may pass through it, not list it).
    async fn create(root: &Path, name: &str, user: Option<&Ids>) -> Result<Self, ExecError> {
        let io_err = |context: String| move |source| ExecError::Io { context, source };
        let path = root.join(name);
        if tokio::fs::symlink_metadata(&path).await.is_ok() {
            tracing::warn!(dir = %path.display(), "removing a leftover scratch dir");
            remove_dir(path.clone()).await;
        }
        let mut dirs = tokio::fs::DirBuilder::new();
        dirs.recursive(true).mode(0o711);
        dirs.create(root)
            .await
            .map_err(io_err(format!("creating scratch root {}", root.display())))?;
        tokio::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .await
            .map_err(io_err(format!("creating scratch dir {}", path.display())))?;
        let scratch = Scratch(Some(path.clone()));
        if let Some(ids) = user {
            let (uid, gid) = (ids.uid, ids.gid);
            let owned = path.clone();
            tokio::task::spawn_blocking(move || std::os::unix::fs::chown(&owned, Some(uid), Some(gid)))
                .await
                .map_err(|e| io_err(format!("chown of {}", path.display()))(io::Error::other(e)))?
                .map_err(io_err(format!(
                    "giving scratch dir {} to {} ({uid}:{gid})",
                    path.display(),
                    ids.name
                )))?;
        }
        Ok(scratch)
    }

    fn path(&self) -> &Path {
        self.0.as_deref().unwrap_or(Path::new("/"))
    }

    async fn remove(mut self) {
        if let Some(p) = self.0.take() {
            remove_dir(p).await;
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_dir_all(p);
        }
    }
}

async fn remove_dir(p: PathBuf) {
    let shown = p.display().to_string();
    let res = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(p)).await;
    match res {
        Ok(Ok(())) => {}
        Ok(Err(e)) if e.kind() == io::ErrorKind::NotFound => {}
        Ok(Err(e)) => tracing::warn!(dir = %shown, error = %e, "removing scratch dir"),
        Err(e) => tracing::warn!(dir = %shown, error = %e, "removing scratch dir"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_follows_the_given_path_only() {
        assert_eq!(
            find_executable("sh", DEFAULT_PATH).map(|p| p.is_absolute()),
            Some(true)
        );
        assert_eq!(find_executable("sh", "/nonexistent"), None);
        let err =
            resolve_program("no-such-cmd-xyz", DEFAULT_PATH, Path::new("/")).expect_err("missing command");
        assert!(
            matches!(&err, ExecError::InvalidSpec { field: "command", message } if message.contains("no-such-cmd-xyz")),
            "{err}"
        );
    }
}
