//! The only unsafe code of the crate: starting an attempt's process.
//!
//! `fork` from the agent (a multi-threaded process with tens of MB mapped) copies its page
//! tables, makes every page it then writes fault (copy-on-write), and throws the copy away at
//! `exec`: measured, that was over a third of all CPU time at high task rates. So the child is
//! created the way `posix_spawn` does it: `clone(CLONE_VM | CLONE_VFORK)` on a stack of its
//! own, sharing the agent's memory until it calls `execve`, while the calling thread waits.
//! Between the two it only makes raw system calls on data prepared before the clone: join
//! the attempt's cgroups, start a session, enter a new network namespace, put the pipes on
//! 0/1/2, drop to the attempt's user, change directory, reset the umask and signal handling and
//! exec. A failure is reported as an errno through a close-on-exec pipe.
//!
//! The user switch uses the raw `setgroups`/`setresgid`/`setresuid` system calls, never libc's
//! wrappers: those make every thread of the process change ids together (a signal to each),
//! and the threads they would find are the agent's, whose memory the child shares.
#![allow(unsafe_code)]

use std::collections::BTreeMap;
use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::ExitStatus;

use tokio::io::unix::AsyncFd;

/// What to start.
pub(crate) struct Request<'a> {
    pub program: &'a Path,
    pub arg0: &'a str,
    pub args: &'a [String],
    /// The complete environment.
    pub env: &'a BTreeMap<String, String>,
    pub cwd: &'a Path,
    /// Open `cgroup.procs` files of the attempt's groups: the child writes "0" (itself) to each.
    pub procs: &'a [File],
    pub new_netns: bool,
    /// Switch to this user (after the steps that need root, before `chdir` and exec).
    pub user: Option<&'a crate::user::Ids>,
}

/// A started attempt process: its pid, its output pipes and a pidfd to wait on.
pub(crate) struct Child {
    pid: libc::pid_t,
    pidfd: Option<AsyncFd<OwnedFd>>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
    reaped: bool,
}

/// Everything the child reads, prepared before the clone (the child may not allocate).
struct ChildData {
    program: CString,
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
    cwd: CString,
    procs: Vec<RawFd>,
    new_netns: bool,
    /// `(uid, gid)` to switch to, with the supplementary `groups`.
    ids: Option<(libc::uid_t, libc::gid_t)>,
    groups: Vec<libc::gid_t>,
    stdin: RawFd,
    stdout: RawFd,
    stderr: RawFd,
    /// Write end of the close-on-exec error pipe.
    error: RawFd,
}

fn cstring(s: &[u8], what: &str) -> io::Result<CString> {
    CString::new(s)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("{what} contains a NUL byte")))
}

/// A pipe, both ends close-on-exec.
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both fds are open and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Size of the child's stack: it runs a few system-call wrappers only.
const STACK: usize = 64 * 1024;

/// Starts the process of `req`. Returns once the child has called `execve` (or failed: then
/// the error is the child's errno, and nothing is left running).
pub(crate) fn spawn(req: &Request<'_>) -> io::Result<Child> {
    let program = cstring(req.program.as_os_str().as_bytes(), "the program path")?;
    let mut strings: Vec<CString> = Vec::with_capacity(1 + req.args.len());
    strings.push(cstring(req.arg0.as_bytes(), "argv[0]")?);
    for a in req.args {
        strings.push(cstring(a.as_bytes(), "an argument")?);
    }
    let env: Vec<CString> = req
        .env
        .iter()
        .map(|(k, v)| cstring(format!("{k}={v}").as_bytes(), "the environment"))
        .collect::<io::Result<_>>()?;
    let cwd = cstring(OsStr::as_bytes(req.cwd.as_os_str()), "the working directory")?;
    let mut argv: Vec<*const libc::c_char> = strings.iter().map(|s| s.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = env.iter().map(|s| s.as_ptr()).collect();
    envp.push(std::ptr::null());

    let devnull = File::open("/dev/null")?;
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (fail_r, fail_w) = pipe()?;
    let mut data = ChildData {
        program,
        argv,
        envp,
        cwd,
        procs: req.procs.iter().map(AsRawFd::as_raw_fd).collect(),
        new_netns: req.new_netns,
        ids: req.user.map(|u| (u.uid, u.gid)),
        groups: req.user.map(|u| u.groups.clone()).unwrap_or_default(),
        stdin: devnull.as_raw_fd(),
        stdout: out_w.as_raw_fd(),
        stderr: err_w.as_raw_fd(),
        error: fail_w.as_raw_fd(),
    };
    let mut stack = vec![0u8; STACK];
    // SAFETY: the stack grows down; its top, rounded down to 16 bytes, is inside the buffer.
    let top = unsafe { stack.as_mut_ptr().add(STACK) } as usize & !15;

    // No signal handler of the agent may run on the child's stack (it shares our memory):
    // everything is blocked across the clone; the child unblocks after resetting handlers.
    // SAFETY: plain sigset manipulation on locals.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    unsafe {
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
    }
    // SAFETY: `child_main` only makes async-signal-safe system calls on `data`, which lives
    // (with every buffer it points to: `strings`, `env`, the fds) until after clone returns;
    // CLONE_VFORK suspends this thread until the child has exec'd or exited, so nothing here
    // changes under it. `top` is the top of a live, exclusively-owned stack buffer.
    let pid = unsafe {
        libc::clone(
            child_main,
            top as *mut libc::c_void,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            (&mut data as *mut ChildData).cast(),
        )
    };
    let clone_error = io::Error::last_os_error();
    // SAFETY: restores this thread's own mask saved above.
    unsafe {
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
    }
    drop(stack);
    drop((out_w, err_w, fail_w, devnull));
    if pid < 0 {
        return Err(clone_error);
    }
    // The child has exec'd (the error pipe closed with nothing in it) or failed.
    let mut errno = [0u8; 4];
    let mut fail = File::from(fail_r);
    let got = read_full(&mut fail, &mut errno);
    if got == 4 {
        reap_blocking(pid);
        return Err(io::Error::from_raw_os_error(i32::from_ne_bytes(errno)));
    }
    let registered = pidfd_open(pid).and_then(|fd| {
        // SAFETY: an OwnedFd keeps its fd open, unchanged, for as long as it is owned.
        unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
            .map_err(|e| io::Error::other(e.to_string()))
    });
    let pidfd = match registered {
        Ok(fd) => Some(fd),
        Err(e) => {
            // SAFETY: our own child, not yet reaped.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            reap_blocking(pid);
            return Err(e);
        }
    };
    Ok(Child {
        pid,
        pidfd,
        stdout: Some(out_r),
        stderr: Some(err_r),
        reaped: false,
    })
}

fn read_full(f: &mut File, buf: &mut [u8]) -> usize {
    use std::io::Read;
    let mut got = 0;
    while got < buf.len() {
        match f.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    got
}

fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Waits for `pid` (a child of ours) to end and collects it.
fn reap_blocking(pid: libc::pid_t) -> Option<ExitStatus> {
    let mut status = 0;
    loop {
        // SAFETY: waitpid on our own child with a valid status pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            return Some(ExitStatus::from_raw(status));
        }
        if r < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return None;
        }
    }
}

impl Child {
    /// Waits until the process has ended and collects its status.
    pub(crate) async fn wait(&mut self) -> io::Result<ExitStatus> {
        let Some(pidfd) = &self.pidfd else {
            return Err(io::Error::other("already waited for"));
        };
        loop {
            let mut guard = pidfd.readable().await?;
            let mut status = 0;
            // SAFETY: non-blocking waitpid on our own child with a valid status pointer.
            let r = unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) };
            if r == self.pid {
                self.reaped = true;
                self.pidfd = None;
                return Ok(ExitStatus::from_raw(status));
            }
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            guard.clear_ready();
        }
    }
}

impl Drop for Child {
    /// A child that was never waited for is killed and collected, so none is left behind
    /// (like tokio's `kill_on_drop`).
    fn drop(&mut self) {
        if self.reaped {
            return;
        }
        let pid = self.pid;
        // SAFETY: our own child, not yet reaped, so the pid cannot have been reused.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        std::thread::spawn(move || reap_blocking(pid));
    }
}

/// Runs in the child, on its own stack, in the agent's memory. Only system calls; no
/// allocation, no locks, no unwinding.
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `ChildData` the parent keeps alive while it is suspended.
    let d = unsafe { &*(arg as *const ChildData) };
    // SAFETY: system calls with valid arguments; see the module comment.
    unsafe {
        let fail = |d: &ChildData| -> libc::c_int {
            let errno = *libc::__errno_location();
            let bytes = errno.to_ne_bytes();
            libc::write(d.error, bytes.as_ptr().cast(), bytes.len());
            libc::_exit(127)
        };
        // Handlers are the agent's and its memory is ours until exec: back to the defaults
        // (an ignored signal stays ignored across exec, as with fork; SIGPIPE is reset, as
        // Rust's Command does).
        for sig in 1..65 {
            if sig == libc::SIGKILL || sig == libc::SIGSTOP {
                continue;
            }
            let mut current: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut current) != 0 {
                continue;
            }
            if current.sa_sigaction != libc::SIG_IGN || sig == libc::SIGPIPE {
                let mut dfl: libc::sigaction = std::mem::zeroed();
                dfl.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(sig, &dfl, std::ptr::null_mut());
            }
        }
        // Join first, so that everything after (and everything the program forks) is
        // accounted and limited. "0" means the writing process.
        for &fd in &d.procs {
            if libc::write(fd, b"0".as_ptr().cast(), 1) < 0 {
                return fail(d);
            }
        }
        // Own session and process group: no signals from the agent's terminal.
        if libc::setsid() < 0 {
            return fail(d);
        }
        if d.new_netns && libc::unshare(libc::CLONE_NEWNET) < 0 {
            return fail(d);
        }
        for (from, to) in [(d.stdin, 0), (d.stdout, 1), (d.stderr, 2)] {
            // dup2 onto itself keeps close-on-exec: clear it instead.
            let r = if from == to {
                libc::fcntl(to, libc::F_SETFD, 0)
            } else {
                libc::dup2(from, to)
            };
            if r < 0 {
                return fail(d);
            }
        }
        if let Some((uid, gid)) = d.ids {
            if libc::syscall(libc::SYS_setgroups, d.groups.len(), d.groups.as_ptr()) < 0
                || libc::syscall(libc::SYS_setresgid, gid, gid, gid) < 0
                || libc::syscall(libc::SYS_setresuid, uid, uid, uid) < 0
            {
                return fail(d);
            }
        }
        if libc::chdir(d.cwd.as_ptr()) < 0 {
            return fail(d);
        }
        // Whatever the agent's umask, the task starts with the usual one.
        libc::umask(0o022);
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        libc::execve(d.program.as_ptr(), d.argv.as_ptr(), d.envp.as_ptr());
        fail(d)
    }
}
