//! Pure cgroup v2: handing the controllers down to attempt groups.

use std::path::{Path, PathBuf};

use super::{mkdir_error, write, Role, AGENT_LEAF};
use crate::ExecError;

/// Pure v2: `cpu`, `memory` and `pids` must reach the attempt group, i.e. be enabled in
/// `cgroup.subtree_control` of its parent and grandparent (the agent's own cgroup).
pub(super) fn prepare_parents(planned: &[(Role, PathBuf)]) -> Result<(), ExecError> {
    let Some((_, group)) = planned.first() else {
        return Ok(());
    };
    let (Some(parent), Some(base)) = (group.parent(), group.parent().and_then(Path::parent)) else {
        return Ok(());
    };
    let available = std::fs::read_to_string(base.join("cgroup.controllers")).unwrap_or_default();
    for ctrl in ["cpu", "memory", "pids"] {
        if !available.split_whitespace().any(|c| c == ctrl) {
            return Err(ExecError::Unavailable(format!(
                "the cgroup v2 controller `{ctrl}` is not available in {} (delegate it to the agent: Delegate=yes in its unit, or enable it in the parent's cgroup.subtree_control)",
                base.display()
            )));
        }
    }
    enable_controllers(base, true)?;
    std::fs::create_dir_all(parent).map_err(|e| mkdir_error(parent, e))?;
    enable_controllers(parent, false)
}

fn enable_controllers(dir: &Path, move_own_processes: bool) -> Result<(), ExecError> {
    let file = dir.join("cgroup.subtree_control");
    let enabled = std::fs::read_to_string(&file).unwrap_or_default();
    let missing: Vec<String> = ["cpu", "memory", "pids"]
        .into_iter()
        .filter(|c| !enabled.split_whitespace().any(|e| e == *c))
        .map(|c| format!("+{c}"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let value = missing.join(" ");
    match std::fs::write(&file, &value) {
        Ok(()) => Ok(()),
        // "No internal processes": the agent's own cgroup holds the agent. Move it (and
        // whatever else is there) into a leaf, as systemd's delegation rules ask.
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) && move_own_processes => {
            let leaf = dir.join(AGENT_LEAF);
            std::fs::create_dir_all(&leaf).map_err(|e| mkdir_error(&leaf, e))?;
            let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.split_whitespace() {
                if let Err(e) = std::fs::write(leaf.join("cgroup.procs"), pid) {
                    if e.raw_os_error() != Some(libc::ESRCH) {
                        return Err(ExecError::Io {
                            context: format!("moving pid {pid} into {}", leaf.display()),
                            source: e,
                        });
                    }
                }
            }
            tracing::info!(leaf = %leaf.display(), "moved the agent into a leaf cgroup to delegate controllers to attempts");
            write(&file, &value)
        }
        Err(source) => Err(ExecError::Io {
            context: format!("writing {value:?} to {}", file.display()),
            source,
        }),
    }
}
