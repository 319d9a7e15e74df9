//! What a node reports about its hardware and OS. Filled in by `cortex-host`.
//!
//! Every field has a default when absent, so an older or newer node's report still decodes.

use serde::{Deserialize, Serialize};

use crate::UnixMillis;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Inventory {
    pub hostname: String,
    /// `/etc/machine-id`, when the host has one.
    pub machine_id: Option<String>,
    pub os: OsInfo,
    pub cpu: CpuInfo,
    pub memory: MemoryInfo,
    pub disks: Vec<DiskInfo>,
    pub nics: Vec<NicInfo>,
    pub gpus: GpuInventory,
    pub collected_at_ms: UnixMillis,
    /// Parts of the inventory that could not be read, in words (never fatal).
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OsInfo {
    /// e.g. "Debian GNU/Linux 12 (bookworm)".
    pub name: String,
    pub kernel: String,
    /// e.g. "x86_64".
    pub arch: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CpuInfo {
    pub model: String,
    pub vendor: String,
    /// Physical cores, when the kernel tells.
    pub cores: Option<u32>,
    /// Logical CPUs (hardware threads) the OS schedules on.
    pub threads: u32,
    pub frequency_mhz: u64,
    /// Feature flags from /proc/cpuinfo (`flags` on x86, `Features` on ARM), sorted.
    pub flags: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MemoryInfo {
    pub total_bytes: u64,
    pub available_bytes: u64,
    pub swap_total_bytes: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DiskInfo {
    /// Device name, e.g. "/dev/vda".
    pub device: String,
    pub mount_point: String,
    pub file_system: String,
    pub total_bytes: u64,
    pub available_bytes: u64,
    pub removable: bool,
    /// "ssd", "hdd" or "unknown".
    pub kind: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NicInfo {
    pub name: String,
    pub mac: Option<String>,
    pub mtu: Option<u32>,
    /// Operational state as netlink reports it ("up", "down", "unknown", …).
    pub state: String,
    /// Link speed from sysfs, when the driver reports one.
    pub speed_mbps: Option<u32>,
    pub driver: Option<String>,
    /// Addresses in CIDR notation.
    pub addresses: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GpuInventory {
    /// `None` when NVML answered; otherwise why there is no GPU list
    /// (e.g. "no NVIDIA GPU: libnvidia-ml.so.1 not found").
    pub unavailable: Option<String>,
    pub devices: Vec<GpuInfo>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GpuInfo {
    pub index: u32,
    pub name: String,
    pub uuid: String,
    pub memory_total_bytes: u64,
    pub driver_version: String,
}
