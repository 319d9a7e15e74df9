//! What this host needs in the `containers.conf`/`storage.conf` of the service we start.
//!
//! A systemd + cgroup v2 host runs podman's defaults; the development machines (PID 1 not
//! systemd, cgroup v1 hybrid, no `CAP_SYS_RESOURCE`) need three changes (machine.md), and
//! podman before 5.0 needs a conmon wrapper to report OOM kills. Each entry is written only
//! when the host needs it, so the file says what is special about the host.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// What podman sets `RLIMIT_NOFILE`/`RLIMIT_NPROC` of a root container to unless told
/// otherwise (libpod's `RLimitDefaultValue`); raising a hard limit needs `CAP_SYS_RESOURCE`.
const PODMAN_RLIMIT: u64 = 1_048_576;

/// Where podman looks for conmon (its built-in `conmon_path` list).
const CONMON_PATHS: &[&str] = &[
    "/usr/libexec/podman/conmon",
    "/usr/local/libexec/podman/conmon",
    "/usr/local/lib/podman/conmon",
    "/usr/bin/conmon",
    "/usr/sbin/conmon",
    "/usr/local/bin/conmon",
    "/usr/local/sbin/conmon",
];

/// The facts about the host that decide the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostFacts {
    /// systemd is PID 1 (`/run/systemd/system` exists, sd_booted()'s test).
    pub systemd: bool,
    /// Pure cgroup v2 (`/sys/fs/cgroup/cgroup.controllers` exists).
    pub cgroup_v2: bool,
    /// The hard `RLIMIT_NOFILE`/`RLIMIT_NPROC` of this process (`None`: unlimited/unknown).
    pub nofile_hard: Option<u64>,
    pub nproc_hard: Option<u64>,
    /// `/proc/sys/kernel/pid_max`: podman lowers its own `RLIMIT_NPROC` to it at start-up, so
    /// containers cannot have more either.
    pub pid_max: Option<u64>,
    /// `CAP_SYS_RESOURCE` is in the effective set.
    pub cap_sys_resource: bool,
    /// The major version of the podman binary, if it could be read.
    pub podman_major: Option<u32>,
    /// The conmon binary podman would use.
    pub conmon: Option<PathBuf>,
}

impl HostFacts {
    /// Reads the facts from `/proc`, `/sys`, `/run` and `podman --version` output.
    pub(crate) fn detect(podman_version: &str) -> Self {
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        HostFacts {
            systemd: Path::new("/run/systemd/system").is_dir(),
            cgroup_v2: Path::new("/sys/fs/cgroup/cgroup.controllers").exists(),
            nofile_hard: hard_limit(&limits, "Max open files"),
            nproc_hard: hard_limit(&limits, "Max processes"),
            pid_max: std::fs::read_to_string("/proc/sys/kernel/pid_max")
                .ok()
                .and_then(|s| s.trim().parse().ok()),
            cap_sys_resource: has_cap(&status, 24),
            podman_major: major_version(podman_version),
            conmon: CONMON_PATHS.iter().map(PathBuf::from).find(|p| p.is_file()),
        }
    }

    /// The OCI runtime to force: crun (podman's first choice) refuses hybrid cgroups.
    pub(crate) fn runtime(&self) -> Option<&'static str> {
        (!self.cgroup_v2).then_some("runc")
    }

    /// `cgroupfs` unless systemd can create the scopes.
    pub(crate) fn cgroupfs(&self) -> bool {
        !self.systemd
    }

    /// podman < 5.0 reads `<bundle>/oom` while conmon creates `oom` in its working directory,
    /// so `State.OOMKilled` is never set (podman#13102, fixed by podman#21523 in 5.0). Running
    /// conmon from the bundle directory puts the file where podman looks.
    pub(crate) fn conmon_wrapper(&self) -> Option<&Path> {
        match self.podman_major {
            Some(major) if major < 5 => self.conmon.as_deref(),
            _ => None,
        }
    }

    /// Limits podman would raise to [`PODMAN_RLIMIT`] and cannot.
    fn ulimits(&self) -> Vec<String> {
        if self.cap_sys_resource {
            return Vec::new();
        }
        let nproc = match (self.nproc_hard, self.pid_max) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let mut out = Vec::new();
        for (name, hard) in [("nofile", self.nofile_hard), ("nproc", nproc)] {
            if let Some(h) = hard.filter(|h| *h < PODMAN_RLIMIT) {
                out.push(format!("{name}={h}:{h}"));
            }
        }
        out
    }
}

/// The paths of one service's files, all under `<work_root>/podman`.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    /// Configuration, socket, log and the image store: `<work_root>/podman`.
    pub dir: PathBuf,
    /// Runtime state: `/run/cortex/podman-<hash of work_root>` (see [`Layout::run`]).
    pub run: PathBuf,
}

/// podman's `container cleanup`, which conmon runs when a container exits, refuses a
/// `--runroot` longer than this; the container then stays "stopped" and `wait` hangs.
pub(crate) const MAX_RUNROOT: usize = 50;

impl Layout {
    pub(crate) fn new(work_root: &Path) -> Self {
        use sha2::Digest as _;
        use std::os::unix::ffi::OsStrExt as _;
        let digest = sha2::Sha256::digest(work_root.as_os_str().as_bytes());
        let hash: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        Layout {
            dir: work_root.join("podman"),
            run: PathBuf::from(format!("/run/cortex/podman-{hash}")),
        }
    }
    pub(crate) fn socket(&self) -> PathBuf {
        self.dir.join("podman.sock")
    }
    pub(crate) fn containers_conf(&self) -> PathBuf {
        self.dir.join("containers.conf")
    }
    pub(crate) fn storage_conf(&self) -> PathBuf {
        self.dir.join("storage.conf")
    }
    pub(crate) fn conmon_wrapper(&self) -> PathBuf {
        self.dir.join("conmon-in-bundle")
    }
    pub(crate) fn log(&self) -> PathBuf {
        self.dir.join("service.log")
    }
    pub(crate) fn boot_id(&self) -> PathBuf {
        self.dir.join("boot_id")
    }
    /// Image layers and container roots (persistent).
    pub(crate) fn graphroot(&self) -> PathBuf {
        self.dir.join("storage")
    }
    /// containers/storage's runroot: under `/run` (a tmpfs on most hosts, so a reboot clears
    /// it) and short, whatever the length of `work_root` ([`MAX_RUNROOT`]).
    pub(crate) fn runroot(&self) -> PathBuf {
        self.run.join("storage")
    }
    /// libpod's tmp_dir (exit files, events, locks): must not be shared with another podman.
    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.run.join("libpod")
    }
}

/// `containers.conf` for `host`: the store's runtime directory always (the service must not
/// share `/run/libpod` with another podman), and only the host-specific entries.
pub(crate) fn containers_conf(host: &HostFacts, layout: &Layout) -> String {
    let mut s = String::from("# Written by cortex for its own podman service; do not edit.\n");
    let ulimits = host.ulimits();
    if !ulimits.is_empty() {
        let list: Vec<String> = ulimits.iter().map(|u| toml_string(u)).collect();
        s.push_str("[containers]\n");
        let _ = writeln!(
            s,
            "# podman raises these to {PODMAN_RLIMIT} and this host has no CAP_SYS_RESOURCE"
        );
        let _ = writeln!(s, "default_ulimits = [{}]", list.join(", "));
    }
    s.push_str("[engine]\n");
    let _ = writeln!(s, "tmp_dir = {}", toml_path(&layout.tmp_dir()));
    if let Some(rt) = host.runtime() {
        s.push_str("# crun refuses cgroup v1 (hybrid) hierarchies\n");
        let _ = writeln!(s, "runtime = {}", toml_string(rt));
    }
    if host.cgroupfs() {
        s.push_str("# PID 1 is not systemd: no scopes, no journald\n");
        s.push_str("cgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n");
    }
    if host.conmon_wrapper().is_some() {
        s.push_str("# podman < 5 looks for conmon's oom file in the bundle (podman#13102)\n");
        let _ = writeln!(s, "conmon_path = [{}]", toml_path(&layout.conmon_wrapper()));
    }
    s
}

/// `storage.conf`: a store of our own (overlay; vfs would copy whole images per container).
pub(crate) fn storage_conf(layout: &Layout) -> String {
    format!(
        "# Written by cortex for its own podman service; do not edit.\n[storage]\n\
         driver = \"overlay\"\ngraphroot = {}\nrunroot = {}\n",
        toml_path(&layout.graphroot()),
        toml_path(&layout.runroot()),
    )
}

/// A shell script that runs `conmon` from the bundle directory given with `-b`/`--bundle`.
pub(crate) fn conmon_wrapper_script(conmon: &Path) -> String {
    format!(
        r#"#!/bin/sh
# Written by cortex: podman < 5 looks for conmon's "oom" file in the container's bundle, but
# conmon creates it in its working directory (podman#13102). Start conmon from the bundle.
prev=
for arg in "$@"; do
    case "$prev" in -b|--bundle) cd "$arg" 2>/dev/null; break ;; esac
    case "$arg" in --bundle=*) cd "${{arg#--bundle=}}" 2>/dev/null; break ;; esac
    prev=$arg
done
exec {conmon} "$@"
"#,
        conmon = sh_quote(&conmon.display().to_string())
    )
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::from('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn toml_path(p: &Path) -> String {
    toml_string(&p.display().to_string())
}

fn hard_limit(limits: &str, name: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with(name))?;
    let mut fields = line[name.len()..].split_whitespace();
    let _soft = fields.next()?;
    fields.next()?.parse().ok()
}

fn has_cap(status: &str, bit: u32) -> bool {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << bit) != 0)
}

/// `podman version 4.3.1` → 4.
fn major_version(output: &str) -> Option<u32> {
    let version = output.split_whitespace().last()?;
    version.split('.').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev_machine() -> HostFacts {
        HostFacts {
            systemd: false,
            cgroup_v2: false,
            nofile_hard: Some(20000),
            nproc_hard: Some(96365),
            pid_max: Some(32768),
            cap_sys_resource: false,
            podman_major: Some(4),
            conmon: Some("/usr/bin/conmon".into()),
        }
    }

    #[test]
    fn the_development_machine_gets_every_workaround() {
        let conf = containers_conf(&dev_machine(), &Layout::new(Path::new("/w")));
        assert!(conf.contains(r#"default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]"#));
        assert!(conf.contains(r#"runtime = "runc""#));
        assert!(conf.contains(r#"cgroup_manager = "cgroupfs""#));
        assert!(conf.contains(r#"events_logger = "file""#));
        let tmp = format!(
            "tmp_dir = \"{}/libpod\"",
            Layout::new(Path::new("/w")).run.display()
        );
        assert!(conf.contains(&tmp), "{conf}");
        assert!(conf.contains(r#"conmon_path = ["/w/podman/conmon-in-bundle"]"#));
    }

    #[test]
    fn a_systemd_cgroup2_host_with_podman_5_keeps_the_defaults() {
        let host = HostFacts {
            systemd: true,
            cgroup_v2: true,
            nofile_hard: Some(524288),
            nproc_hard: None,
            pid_max: Some(4194304),
            cap_sys_resource: true,
            podman_major: Some(5),
            conmon: Some("/usr/bin/conmon".into()),
        };
        let conf = containers_conf(&host, &Layout::new(Path::new("/w")));
        let entries: Vec<_> = conf
            .lines()
            .filter(|l| !l.starts_with('#') && !l.starts_with('['))
            .collect();
        assert_eq!(entries.len(), 1, "{entries:?}");
        assert!(entries[0].starts_with("tmp_dir = \"/run/cortex/podman-"));
    }

    #[test]
    fn the_runroot_stays_short_for_any_work_root() {
        let long = Path::new("/var/lib/a-rather-long-data-directory/for-cortex/exec");
        let a = Layout::new(long);
        assert!(a.runroot().as_os_str().len() <= MAX_RUNROOT, "{:?}", a.runroot());
        assert_ne!(a.run, Layout::new(Path::new("/other")).run);
        assert_eq!(a.run, Layout::new(long).run, "stable");
    }

    #[test]
    fn proc_files_are_parsed() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max processes             96365                96365                processes \n\
                      Max open files            1024                 20000                files     \n";
        assert_eq!(hard_limit(limits, "Max open files"), Some(20000));
        assert_eq!(hard_limit(limits, "Max processes"), Some(96365));
        let unlimited = "Max processes             unlimited            unlimited            processes\n";
        assert_eq!(hard_limit(unlimited, "Max processes"), None);
        assert!(!has_cap("CapEff:\t000001fffeffffff\n", 24));
        assert!(has_cap("CapEff:\t000001ffffffffff\n", 24));
        assert_eq!(major_version("podman version 4.3.1\n"), Some(4));
        assert_eq!(major_version("podman version 5.2.0-dev"), Some(5));
    }
}
