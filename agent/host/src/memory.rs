//! Memory and swap totals from sysinfo (`/proc/meminfo` on Linux).

use cortex_model::inventory::MemoryInfo;
use sysinfo::{MemoryRefreshKind, System};

/// Reads RAM and swap sizes. `system` is `None` when sysinfo could not be opened.
pub fn collect(system: Option<&mut System>, warnings: &mut Vec<String>) -> MemoryInfo {
    let Some(system) = system else {
        warnings.push("reading the memory size failed: sysinfo is unavailable".into());
        return MemoryInfo::default();
    };
    system.refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram().with_swap());
    let memory = MemoryInfo {
        total_bytes: system.total_memory(),
        available_bytes: system.available_memory(),
        swap_total_bytes: system.total_swap(),
    };
    if memory.total_bytes == 0 {
        warnings.push("reading the memory size failed: sysinfo reports 0 bytes of RAM".into());
    }
    memory
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_machine_has_memory() {
        let mut warnings = Vec::new();
        let mut system = System::new().unwrap();
        let memory = collect(Some(&mut system), &mut warnings);
        assert!(memory.total_bytes > 0, "{warnings:?}");
        assert!(memory.available_bytes <= memory.total_bytes);
    }

    #[test]
    fn no_sysinfo_is_a_warning() {
        let mut warnings = Vec::new();
        assert_eq!(collect(None, &mut warnings), MemoryInfo::default());
        assert_eq!(warnings.len(), 1);
    }
}
