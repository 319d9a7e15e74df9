//! Mounted filesystems from sysinfo's `Disks` (`/proc/mounts`, `statvfs(3)`, and
//! `/sys/block/<dev>/queue/rotational` for the kind).
//!
//! Which mounts are reported ([`select`]):
//!
//! 1. Pseudo and in-memory filesystems are skipped by type ([`is_pseudo_fs`]: `proc`, `sysfs`,
//!    `tmpfs`, `devtmpfs`, `cgroup`, …, and `squashfs` images, which are always full).
//!    `overlay` is kept: it is the root filesystem of a container. Network filesystems are
//!    kept when sysinfo lists them.
//! 2. Mount points under `/proc` and `/sys` are skipped whatever their type.
//! 3. Mounts with a total size of 0 bytes are skipped: nothing can be stored there.
//! 4. A block device (`/dev/…`) mounted at several places (bind mounts, btrfs subvolumes, files
//!    a container runtime binds in, such as `/etc/hosts`) is reported once, at its shortest mount
//!    point: every such mount shows the same filesystem's capacity. Other sources (`overlay`,
//!    `server:/export`, ZFS datasets) are distinct filesystems and are only deduplicated when
//!    both device and mount point repeat.
//!
//! The result is sorted by mount point.

use std::collections::{BTreeMap, BTreeSet};

use cortex_model::inventory::DiskInfo;
use sysinfo::{DiskKind, DiskRefreshKind, Disks};

/// Filesystem types that hold no persistent user data, or whose size means nothing to a scheduler.
const PSEUDO_FILESYSTEMS: &[&str] = &[
    "autofs",
    "binfmt_misc",
    "bpf",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devpts",
    "devtmpfs",
    "efivarfs",
    "fusectl",
    "hugetlbfs",
    "mqueue",
    "nsfs",
    "proc",
    "pstore",
    "ramfs",
    "rootfs",
    "rpc_pipefs",
    "securityfs",
    "selinuxfs",
    "squashfs",
    "sysfs",
    "tmpfs",
    "tracefs",
];

/// Mount points under which nothing is storage.
const PSEUDO_MOUNT_ROOTS: &[&str] = &["/proc", "/sys"];

/// Whether a filesystem type is a pseudo or in-memory one (see the module docs).
pub fn is_pseudo_fs(file_system: &str) -> bool {
    PSEUDO_FILESYSTEMS.contains(&file_system)
}

fn is_under(mount_point: &str, root: &str) -> bool {
    mount_point == root
        || mount_point
            .strip_prefix(root)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Applies the module's rules to a list of mounts. Pure.
pub fn select(disks: Vec<DiskInfo>) -> Vec<DiskInfo> {
    // Keyed by block device, or by (device, mount point) for other sources.
    let mut block_devices: BTreeMap<String, DiskInfo> = BTreeMap::new();
    let mut others: BTreeMap<(String, String), DiskInfo> = BTreeMap::new();

    for disk in disks {
        if is_pseudo_fs(&disk.file_system)
            || PSEUDO_MOUNT_ROOTS
                .iter()
                .any(|root| is_under(&disk.mount_point, root))
            || disk.total_bytes == 0
        {
            continue;
        }
        if disk.device.starts_with("/dev/") {
            match block_devices.get(&disk.device) {
                Some(kept) if !shorter(&disk.mount_point, &kept.mount_point) => {}
                _ => {
                    block_devices.insert(disk.device.clone(), disk);
                }
            }
        } else {
            others
                .entry((disk.device.clone(), disk.mount_point.clone()))
                .or_insert(disk);
        }
    }

    let mut selected: Vec<DiskInfo> = block_devices.into_values().chain(others.into_values()).collect();
    selected.sort_by(|a, b| {
        a.mount_point
            .cmp(&b.mount_point)
            .then_with(|| a.device.cmp(&b.device))
    });
    selected
}

/// Whether mount point `a` is preferred to `b`: fewer characters, then alphabetical.
fn shorter(a: &str, b: &str) -> bool {
    (a.len(), a) < (b.len(), b)
}

/// "ssd", "hdd" or "unknown".
pub fn kind_name(kind: DiskKind) -> &'static str {
    match kind {
        DiskKind::SSD => "ssd",
        DiskKind::HDD => "hdd",
        DiskKind::Unknown(_) => "unknown",
    }
}

/// Lists the mounted filesystems (see the module docs for which ones).
pub fn collect(warnings: &mut Vec<String>) -> Vec<DiskInfo> {
    let refresh = DiskRefreshKind::nothing().with_kind().with_storage();
    let disks = match Disks::new_with_refreshed_list_specifics(refresh) {
        Ok(disks) => disks,
        Err(e) => {
            warnings.push(format!("listing the mounted filesystems failed: {e}"));
            return Vec::new();
        }
    };
    let mut seen_types = BTreeSet::new();
    let listed: Vec<DiskInfo> = disks
        .iter()
        .map(|disk| {
            let info = DiskInfo {
                device: disk.name().to_string_lossy().into_owned(),
                mount_point: disk.mount_point().to_string_lossy().into_owned(),
                file_system: disk.file_system().to_string_lossy().into_owned(),
                total_bytes: disk.total_space(),
                available_bytes: disk.available_space(),
                removable: disk.is_removable(),
                kind: kind_name(disk.kind()).to_owned(),
            };
            seen_types.insert(info.file_system.clone());
            info
        })
        .collect();
    let selected = select(listed);
    if selected.is_empty() {
        let types = seen_types.into_iter().collect::<Vec<_>>().join(", ");
        warnings.push(format!(
            "listing the mounted filesystems found no storage (filesystem types seen: {})",
            if types.is_empty() { "none" } else { &types }
        ));
    }
    selected
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(device: &str, mount_point: &str, file_system: &str, total_bytes: u64) -> DiskInfo {
        DiskInfo {
            device: device.into(),
            mount_point: mount_point.into(),
            file_system: file_system.into(),
            total_bytes,
            available_bytes: total_bytes / 2,
            removable: false,
            kind: "unknown".into(),
        }
    }

    fn mount_points(disks: &[DiskInfo]) -> Vec<&str> {
        disks.iter().map(|d| d.mount_point.as_str()).collect()
    }

    #[test]
    fn pseudo_filesystems_are_skipped_and_overlay_is_kept() {
        let selected = select(vec![
            disk("proc", "/proc", "proc", 0),
            disk("sysfs", "/sys", "sysfs", 0),
            disk("tmpfs", "/dev/shm", "tmpfs", 1 << 30),
            disk("tmpfs", "/run", "tmpfs", 1 << 30),
            disk("devtmpfs", "/dev", "devtmpfs", 1 << 30),
            disk("cgroup", "/sys/fs/cgroup/cpu", "cgroup", 0),
            disk("/dev/loop3", "/snap/core/1", "squashfs", 1 << 20),
            disk("overlay", "/", "overlay", 1 << 40),
        ]);
        assert_eq!(mount_points(&selected), ["/"]);
        assert_eq!(selected[0].file_system, "overlay");
    }

    #[test]
    fn mounts_under_proc_and_sys_and_empty_ones_are_skipped() {
        let selected = select(vec![
            disk("/dev/vdb", "/sys/kernel/something", "ext4", 1 << 30),
            disk("/dev/vdc", "/proc/x", "ext4", 1 << 30),
            disk("/dev/vdd", "/system", "ext4", 1 << 30),
            disk("none", "/mnt/empty", "fuse.thing", 0),
        ]);
        assert_eq!(mount_points(&selected), ["/system"]);
    }

    #[test]
    fn a_block_device_mounted_twice_is_reported_at_its_shortest_mount_point() {
        let selected = select(vec![
            disk("/dev/vda", "/etc/hosts", "ext4", 100),
            disk("/dev/vda", "/", "ext4", 100),
            disk("/dev/vda", "/etc/resolv.conf", "ext4", 100),
            disk("/dev/sda2", "/home", "btrfs", 500),
            disk("/dev/sda2", "/var", "btrfs", 500),
        ]);
        assert_eq!(mount_points(&selected), ["/", "/var"]);
        assert_eq!(selected[1].device, "/dev/sda2");
    }

    #[test]
    fn other_sources_are_only_deduplicated_when_mount_point_repeats() {
        let selected = select(vec![
            disk("overlay", "/var/lib/docker/overlay2/a/merged", "overlay", 100),
            disk("overlay", "/var/lib/docker/overlay2/b/merged", "overlay", 100),
            disk("nas:/export", "/mnt/nas", "nfs4", 1000),
            disk("nas:/export", "/mnt/nas", "nfs4", 1000),
            disk("tank/data", "/data", "zfs", 10),
        ]);
        assert_eq!(
            mount_points(&selected),
            [
                "/data",
                "/mnt/nas",
                "/var/lib/docker/overlay2/a/merged",
                "/var/lib/docker/overlay2/b/merged"
            ]
        );
    }

    #[test]
    fn kinds_are_lowercase_words() {
        assert_eq!(kind_name(DiskKind::SSD), "ssd");
        assert_eq!(kind_name(DiskKind::HDD), "hdd");
        assert_eq!(kind_name(DiskKind::Unknown(-1)), "unknown");
    }

    #[test]
    fn this_machine_has_a_disk() {
        let mut warnings = Vec::new();
        let disks = collect(&mut warnings);
        assert!(!disks.is_empty(), "{warnings:?}");
        assert!(disks
            .iter()
            .all(|d| d.total_bytes > 0 && !is_pseudo_fs(&d.file_system)));
    }
}
