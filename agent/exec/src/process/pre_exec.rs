//! The only unsafe code of the crate: what the child does between `fork` and `exec`.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};

use tokio::process::{Child, Command};

/// Spawns `cmd` so that, before it executes its program, the child joins the attempt's
/// cgroups (`procs`: open `cgroup.procs` files), starts a new session and, with
/// `new_netns`, enters a fresh network namespace (only a down `lo`).
///
/// `procs` is borrowed for the whole spawn: the hook uses their raw fds, which must stay open
/// until the child has exec'd (they are `O_CLOEXEC`, so the program never sees them).
pub(crate) fn spawn_joined(cmd: &mut Command, procs: &[File], new_netns: bool) -> io::Result<Child> {
    let fds: Vec<RawFd> = procs.iter().map(AsRawFd::as_raw_fd).collect();
    // SAFETY: the hook runs in the forked child of a multi-threaded process, where only
    // async-signal-safe functions may be called. It calls write(2), setsid(2) and unshare(2)
    // (raw syscalls, async-signal-safe) and reads errno through `last_os_error` (no
    // allocation). It does not allocate, lock or touch other threads' state: `fds` was built
    // before the fork and is only iterated. The fds it writes to are open for the whole
    // `spawn` call because `procs` is borrowed until this function returns, and `spawn`
    // returns only after the child has exec'd or failed.
    unsafe {
        cmd.pre_exec(move || {
            // Join first, so that everything after (and everything the program forks) is
            // accounted and limited. "0" means the writing process.
            for &fd in &fds {
                if libc::write(fd, b"0".as_ptr().cast(), 1) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            // Own session and process group: no signals from the agent's terminal.
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            if new_netns && libc::unshare(libc::CLONE_NEWNET) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn()
}
