//! Where the cgroup hierarchies are mounted and where this process sits in each of them.
//!
//! Read from `/proc/self/mountinfo` and `/proc/self/cgroup` instead of assuming
//! `/sys/fs/cgroup/<controller>`: distributions co-mount `cpu,cpuacct`, containers mount a
//! subtree, and the caller's own cgroup (which attempts nest under) differs per host.

use std::path::{Path, PathBuf};

use super::Layout;

/// One mounted cgroup hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mount {
    /// The path inside the hierarchy that is mounted (`/` unless a subtree is bind-mounted).
    pub root: String,
    pub point: PathBuf,
    /// `cgroup` (v1) or `cgroup2`.
    pub fstype: String,
    /// v1: the controllers of this hierarchy (`cpu`, `memory`, `name=systemd`, ...).
    pub controllers: Vec<String>,
}

/// This process's cgroup in one hierarchy, from `/proc/self/cgroup`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Membership {
    /// Hierarchy id; 0 is the unified (v2) hierarchy.
    pub id: u32,
    pub controllers: Vec<String>,
    pub path: String,
}

/// `/proc/self/mountinfo` → the cgroup mounts.
pub(crate) fn parse_mountinfo(text: &str) -> Vec<Mount> {
    let mut mounts = Vec::new();
    for line in text.lines() {
        // id parent maj:min root point options [optional...] - fstype source superoptions
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        if left.len() < 5 || right.len() < 3 {
            continue;
        }
        let fstype = right[0];
        if fstype != "cgroup" && fstype != "cgroup2" {
            continue;
        }
        let controllers = if fstype == "cgroup" {
            right[2]
                .split(',')
                .filter(|o| is_v1_controller_option(o))
                .map(str::to_string)
                .collect()
        } else {
            Vec::new()
        };
        mounts.push(Mount {
            root: unescape(left[3]),
            point: PathBuf::from(unescape(left[4])),
            fstype: fstype.to_string(),
            controllers,
        });
    }
    mounts
}

/// Super options of a v1 cgroup mount mix controllers with flags (`rw`, `relatime`, ...).
fn is_v1_controller_option(o: &str) -> bool {
    !matches!(
        o,
        "rw" | "ro" | "relatime" | "noatime" | "nosuid" | "nodev" | "noexec" | "xattr"
    ) && !o.starts_with("release_agent=")
        && !o.starts_with("clone_children")
        && o != "noprefix"
        && o != "cpuset_v2_mode"
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            let v = b[i + 1..i + 4]
                .iter()
                .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `/proc/self/cgroup` → one membership per hierarchy.
pub(crate) fn parse_proc_cgroup(text: &str) -> Vec<Membership> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let id = parts.next()?.parse().ok()?;
            let controllers = parts
                .next()?
                .split(',')
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .collect();
            let path = parts.next()?.to_string();
            Some(Membership {
                id,
                controllers,
                path,
            })
        })
        .collect()
}

/// The directory of cgroup `path` (as `/proc/self/cgroup` names it) on `mount`.
pub(crate) fn dir_on(mount: &Mount, path: &str) -> PathBuf {
    let rel = if mount.root == "/" {
        path
    } else if let Some(rest) = path.strip_prefix(mount.root.as_str()) {
        rest
    } else {
        // In a cgroup namespace the paths are already relative to the mounted root.
        path
    };
    let rel = rel.trim_start_matches('/');
    if rel.is_empty() {
        mount.point.clone()
    } else {
        mount.point.join(rel)
    }
}

/// The hierarchies attempts are placed in, with this process's own cgroup in each (attempts
/// nest under it: `<own>/<parent>/<name>`).
#[derive(Debug, Clone)]
pub(crate) struct Hierarchies {
    pub layout: Layout,
    /// v1 only: controller → this process's own directory in that controller's hierarchy.
    pub v1: Vec<(&'static str, PathBuf)>,
    /// The v2 directory of this process: the only one on pure v2, the controller-less
    /// `unified` mount (for `cgroup.kill`/`cgroup.freeze`) on hybrid hosts, if mounted.
    pub v2: Option<PathBuf>,
}

/// The v1 hierarchies an attempt is put in on a hybrid host: four controllers, and systemd's
/// named hierarchy when mounted (systemd-nspawn mirrors its cgroup there; joining it first
/// means the mirror is ours to remove).
pub(crate) const V1_HIERARCHIES: [&str; 5] = ["cpu", "memory", "pids", "freezer", "name=systemd"];

/// Pure v2 is detected the way systemd does: the root of `/sys/fs/cgroup` is a cgroup2 mount.
pub(crate) fn detect_layout() -> Layout {
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        Layout::Unified
    } else {
        Layout::Hybrid
    }
}

pub(crate) fn discover() -> std::io::Result<Hierarchies> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
    let own = std::fs::read_to_string("/proc/self/cgroup")?;
    Ok(resolve(
        detect_layout(),
        &parse_mountinfo(&mountinfo),
        &parse_proc_cgroup(&own),
    ))
}

pub(crate) fn resolve(layout: Layout, mounts: &[Mount], own: &[Membership]) -> Hierarchies {
    let v2_own = own.iter().find(|m| m.id == 0).map(|m| m.path.as_str());
    let v2_mount = match layout {
        Layout::Unified => mounts
            .iter()
            .find(|m| m.fstype == "cgroup2" && m.point == Path::new("/sys/fs/cgroup"))
            .or_else(|| mounts.iter().find(|m| m.fstype == "cgroup2")),
        Layout::Hybrid => mounts.iter().find(|m| m.fstype == "cgroup2"),
    };
    let v2 = v2_mount.map(|m| dir_on(m, v2_own.unwrap_or("/")));
    let mut v1 = Vec::new();
    if layout == Layout::Hybrid {
        for ctrl in V1_HIERARCHIES {
            let Some(mount) = mounts
                .iter()
                .find(|m| m.fstype == "cgroup" && m.controllers.iter().any(|c| c == ctrl))
            else {
                continue;
            };
            let path = own
                .iter()
                .find(|m| m.id != 0 && m.controllers.iter().any(|c| c == ctrl))
                .map(|m| m.path.as_str())
                .unwrap_or("/");
            v1.push((ctrl, dir_on(mount, path)));
        }
    }
    Hierarchies { layout, v1, v2 }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
30 25 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
33 30 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,cpu,cpuacct
34 30 0:30 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,memory
35 30 0:31 / /sys/fs/cgroup/pids rw,relatime shared:16 - cgroup cgroup rw,pids
36 30 0:32 /sub /sys/fs/cgroup/my\\040freezer rw,relatime shared:17 - cgroup cgroup rw,freezer
37 30 0:33 / /sys/fs/cgroup/systemd rw,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
";

    const PROC_CGROUP: &str = "\
9:name=systemd:/
8:pids:/
6:freezer:/sub/agent
4:memory:/process_api/8b8d
2:cpu,cpuacct:/
0::/
";

    #[test]
    fn hybrid_hierarchies_follow_mounts_and_own_cgroup() {
        let h = resolve(
            Layout::Hybrid,
            &parse_mountinfo(MOUNTINFO),
            &parse_proc_cgroup(PROC_CGROUP),
        );
        assert_eq!(
            h.v1,
            vec![
                ("cpu", PathBuf::from("/sys/fs/cgroup/cpu,cpuacct")),
                ("memory", PathBuf::from("/sys/fs/cgroup/memory/process_api/8b8d")),
                ("pids", PathBuf::from("/sys/fs/cgroup/pids")),
                ("freezer", PathBuf::from("/sys/fs/cgroup/my freezer/agent")),
                ("name=systemd", PathBuf::from("/sys/fs/cgroup/systemd")),
            ]
        );
        assert_eq!(h.v2, Some(PathBuf::from("/sys/fs/cgroup/unified")));
    }

    #[test]
    fn pure_v2_uses_the_unified_path_only() {
        let mounts = parse_mountinfo(
            "25 20 0:23 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n",
        );
        let own = parse_proc_cgroup("0::/system.slice/cortex-agent.service\n");
        let h = resolve(Layout::Unified, &mounts, &own);
        assert!(h.v1.is_empty());
        assert_eq!(
            h.v2,
            Some(PathBuf::from("/sys/fs/cgroup/system.slice/cortex-agent.service"))
        );
    }

    #[test]
    fn v1_mount_options_are_not_controllers() {
        let m = parse_mountinfo(MOUNTINFO);
        let systemd = m
            .iter()
            .find(|m| m.point == Path::new("/sys/fs/cgroup/systemd"))
            .expect("systemd mount");
        assert_eq!(systemd.controllers, vec!["name=systemd".to_string()]);
    }
}
