//! The node inventory: what this host has, read from sysinfo, `/proc`, `/sys`, rtnetlink and NVML.
//!
//! [`collect`] never fails. Whatever cannot be read is left at its default (or a fallback source
//! is used) and described in [`Inventory::warnings`] with a sentence naming what failed.
//!
//! Where each field comes from:
//!
//! | field | source |
//! |---|---|
//! | `hostname` | `gethostname(2)` via sysinfo, else `/proc/sys/kernel/hostname` |
//! | `machine_id` | `/etc/machine-id`, trimmed (`None` when absent or empty) |
//! | `os.name` | `PRETTY_NAME` of `/etc/os-release` (or `/usr/lib/os-release`), else sysinfo's long OS version |
//! | `os.kernel` | sysinfo (`uname -r`), else `/proc/sys/kernel/osrelease` |
//! | `os.arch` | sysinfo (`uname -m`) |
//! | `cpu.model`, `cpu.vendor`, `cpu.frequency_mhz`, `cpu.threads` | sysinfo, `/proc/cpuinfo` as fallback |
//! | `cpu.cores` | sysinfo's physical core count |
//! | `cpu.flags` | `/proc/cpuinfo` (`flags` on x86, `Features` on ARM) |
//! | `memory` | sysinfo (`/proc/meminfo`) |
//! | `disks` | sysinfo `Disks` (`/proc/mounts`, `statvfs`, `/sys/block/*/queue/rotational`), see [`disks`] |
//! | `nics` | rtnetlink links and addresses, plus `/sys/class/net/<name>/{speed,device/driver}`; see [`nics`] |
//! | `gpus` | NVML (`libnvidia-ml.so.1`) |
//!
//! The blocking readers (sysinfo, sysfs, NVML) run on tokio's blocking pool when [`collect`] is
//! polled inside a tokio runtime, so they do not stall the async workers; the netlink queries run
//! on the runtime meanwhile.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod cpu;
pub mod disks;
pub mod gpu;
pub mod memory;
pub mod nics;
pub mod os;
pub mod resources;

use std::time::{SystemTime, UNIX_EPOCH};

use cortex_model::inventory::{CpuInfo, DiskInfo, GpuInventory, Inventory, MemoryInfo, OsInfo};
use cortex_model::UnixMillis;

/// Reads the whole inventory of this host. Never fails: see [`Inventory::warnings`].
///
/// Meant to be polled inside a tokio runtime with timers enabled (as `#[tokio::main]` and
/// `#[tokio::test]` build): the NIC list then comes from netlink and the blocking reads run on the
/// blocking pool. Outside any tokio runtime everything is read inline and NICs are listed from
/// `/sys/class/net`, with a warning saying so.
pub async fn collect() -> Inventory {
    let (blocking, nics) = futures::join!(collect_blocking_parts(), nics::collect());

    let mut warnings = blocking.warnings;
    warnings.extend(nics.warnings);
    let collected_at_ms = now_ms(&mut warnings);
    for warning in &warnings {
        tracing::debug!(%warning, "inventory incomplete");
    }

    Inventory {
        hostname: blocking.hostname,
        machine_id: blocking.machine_id,
        os: blocking.os,
        cpu: blocking.cpu,
        memory: blocking.memory,
        disks: blocking.disks,
        nics: nics.nics,
        gpus: blocking.gpus,
        collected_at_ms,
        warnings,
    }
}

/// Everything read through blocking calls (sysinfo, files, NVML).
#[derive(Debug, Default)]
struct BlockingParts {
    hostname: String,
    machine_id: Option<String>,
    os: OsInfo,
    cpu: CpuInfo,
    memory: MemoryInfo,
    disks: Vec<DiskInfo>,
    gpus: GpuInventory,
    warnings: Vec<String>,
}

async fn collect_blocking_parts() -> BlockingParts {
    // Outside a tokio runtime there is no blocking pool: read inline instead.
    if tokio::runtime::Handle::try_current().is_err() {
        return read_blocking_parts();
    }
    match tokio::task::spawn_blocking(read_blocking_parts).await {
        Ok(parts) => parts,
        Err(e) => BlockingParts {
            warnings: vec![format!(
                "reading the OS, CPU, memory, disk and GPU inventory failed: {e}"
            )],
            ..BlockingParts::default()
        },
    }
}

fn read_blocking_parts() -> BlockingParts {
    let mut warnings = Vec::new();
    let hostname = os::hostname(&mut warnings);
    let machine_id = os::machine_id(&mut warnings);
    let os = os::os_info(&mut warnings);
    let (cpu, memory) = match sysinfo::System::new() {
        Ok(mut system) => (
            cpu::collect(Some(&mut system), &mut warnings),
            memory::collect(Some(&mut system), &mut warnings),
        ),
        Err(e) => {
            warnings.push(format!("opening sysinfo's system view failed: {e}"));
            (
                cpu::collect(None, &mut warnings),
                memory::collect(None, &mut warnings),
            )
        }
    };
    let disks = disks::collect(&mut warnings);
    let gpus = gpu::collect(&mut warnings);
    BlockingParts {
        hostname,
        machine_id,
        os,
        cpu,
        memory,
        disks,
        gpus,
        warnings,
    }
}

fn now_ms(warnings: &mut Vec<String>) -> UnixMillis {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(elapsed) => UnixMillis::try_from(elapsed.as_millis()).unwrap_or(UnixMillis::MAX),
        Err(e) => {
            warnings.push(format!("reading the clock failed (it is before 1970): {e}"));
            0
        }
    }
}
