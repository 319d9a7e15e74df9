//! Network interfaces: link speed and driver as the kernel reports them (sysfs).
//!
//! Nothing is measured here: node-to-node throughput needs a peer and is measured on request
//! (`cortex bench net --peer <node>`, [`crate::net`]); the section says so.

use std::path::Path;

use crate::report::{Nic, NicSection};

/// Reads every interface under `root` (normally `/sys/class/net`).
pub fn inventory(root: &Path) -> NicSection {
    let mut notes = vec![
        "node-to-node throughput is not part of this run: `cortex bench net --peer <node>` measures it (kept on the peer's node record as net_bench)".to_owned(),
    ];
    let mut interfaces = Vec::new();
    match std::fs::read_dir(root) {
        Ok(entries) => {
            for entry in entries.flatten() {
                let dir = entry.path();
                let name = entry.file_name().to_string_lossy().into_owned();
                let read = |f: &str| {
                    std::fs::read_to_string(dir.join(f))
                        .ok()
                        .map(|s| s.trim().to_owned())
                };
                // `speed` is -1 or unreadable (EINVAL) when the link is down or virtual.
                let speed_mbps = read("speed")
                    .and_then(|s| s.parse::<i64>().ok())
                    .and_then(|s| u32::try_from(s).ok().filter(|s| *s > 0));
                let driver = std::fs::read_link(dir.join("device/driver"))
                    .ok()
                    .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
                interfaces.push(Nic {
                    state: read("operstate").unwrap_or_else(|| "unknown".into()),
                    virtual_device: !dir.join("device").exists(),
                    name,
                    speed_mbps,
                    driver,
                });
            }
        }
        Err(e) => notes.push(format!("listing {} failed: {e}", root.display())),
    }
    interfaces.sort_by(|a, b| a.name.cmp(&b.name));
    NicSection { interfaces, notes }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_speed_driver_and_state() {
        let dir = tempfile::tempdir().unwrap();
        let eth = dir.path().join("eth0");
        std::fs::create_dir_all(eth.join("device")).unwrap();
        std::fs::write(eth.join("speed"), "10000\n").unwrap();
        std::fs::write(eth.join("operstate"), "up\n").unwrap();
        let sys = tempfile::tempdir().unwrap();
        let drivers = sys.path().join("drivers/ixgbe");
        std::fs::create_dir_all(&drivers).unwrap();
        std::os::unix::fs::symlink(&drivers, eth.join("device/driver")).unwrap();
        let lo = dir.path().join("lo");
        std::fs::create_dir_all(&lo).unwrap();
        std::fs::write(lo.join("speed"), "-1").unwrap();

        let s = inventory(dir.path());
        let eth = s.interfaces.iter().find(|n| n.name == "eth0").unwrap();
        assert_eq!(eth.speed_mbps, Some(10000));
        assert_eq!(eth.driver.as_deref(), Some("ixgbe"));
        assert_eq!(eth.state, "up");
        assert!(!eth.virtual_device);
        let lo = s.interfaces.iter().find(|n| n.name == "lo").unwrap();
        assert_eq!((lo.speed_mbps, lo.virtual_device), (None, true));
        assert!(s.notes.iter().any(|n| n.contains("cortex bench net")));
    }

    #[test]
    fn this_machine_has_loopback() {
        let s = inventory(Path::new("/sys/class/net"));
        assert!(s.interfaces.iter().any(|n| n.name == "lo"), "{s:?}");
    }
}
