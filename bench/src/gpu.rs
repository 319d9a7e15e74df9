//! NVIDIA GPUs: inventory through NVML (`libnvidia-ml.so.1`, loaded at run time).
//!
//! Only what NVML reports: model, memory, clocks, power limit, PCIe link, utilisation. There
//! is no GPU compute figure: a figure is measured on the device or absent, never estimated
//! from a table of core counts. Without the library the section says "no NVIDIA GPU: <why>".

use nvml_wrapper::enum_wrappers::device::Clock;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::Nvml;

use crate::report::{Gpu, GpuSection};

const NO_COMPUTE: &str = "no GPU compute figure: none is measured on the device yet";

/// Lists the GPUs NVML sees.
pub fn inventory() -> GpuSection {
    let nvml = match Nvml::init() {
        Ok(nvml) => nvml,
        Err(e) => {
            let reason = match &e {
                NvmlError::LibloadingError(inner) => inner.to_string(),
                other => other.to_string(),
            };
            return GpuSection {
                unavailable: Some(format!("no NVIDIA GPU: {reason}")),
                devices: Vec::new(),
                notes: Vec::new(),
            };
        }
    };
    let mut notes = vec![NO_COMPUTE.to_owned()];
    let count = match nvml.device_count() {
        Ok(c) => c,
        Err(e) => {
            notes.push(format!("counting GPUs through NVML failed: {e}"));
            0
        }
    };
    let mut devices = Vec::new();
    for index in 0..count {
        let device = match nvml.device_by_index(index) {
            Ok(d) => d,
            Err(e) => {
                notes.push(format!("opening GPU {index} through NVML failed: {e}"));
                continue;
            }
        };
        let memory = device.memory_info().ok();
        let utilisation = device.utilization_rates().ok();
        devices.push(Gpu {
            index,
            name: device.name().unwrap_or_default(),
            uuid: device.uuid().unwrap_or_default(),
            memory_total_bytes: memory.as_ref().map(|m| m.total),
            max_graphics_clock_mhz: device.max_clock_info(Clock::Graphics).ok(),
            max_memory_clock_mhz: device.max_clock_info(Clock::Memory).ok(),
            power_limit_watts: device
                .enforced_power_limit()
                .ok()
                .map(|mw| f64::from(mw) / 1000.0),
            pcie_link: match (device.current_pcie_link_gen(), device.current_pcie_link_width()) {
                (Ok(g), Ok(w)) => Some(format!("gen{g} x{w}")),
                _ => None,
            },
            pcie_link_max: match (device.max_pcie_link_gen(), device.max_pcie_link_width()) {
                (Ok(g), Ok(w)) => Some(format!("gen{g} x{w}")),
                _ => None,
            },
            utilisation_gpu_percent: utilisation.as_ref().map(|u| u.gpu),
            utilisation_memory_percent: utilisation.as_ref().map(|u| u.memory),
        });
    }
    GpuSection {
        unavailable: None,
        devices,
        notes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nvml_present() -> bool {
        [
            "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1",
            "/usr/lib/aarch64-linux-gnu/libnvidia-ml.so.1",
            "/usr/lib64/libnvidia-ml.so.1",
            "/usr/lib/libnvidia-ml.so.1",
            "/usr/local/nvidia/lib64/libnvidia-ml.so.1",
        ]
        .iter()
        .any(|p| std::path::Path::new(p).exists())
    }

    #[test]
    fn without_the_nvidia_library_the_section_says_no_nvidia_gpu() {
        let s = inventory();
        if nvml_present() {
            assert!(s.unavailable.is_none() || s.devices.is_empty(), "{s:?}");
            return;
        }
        let why = s.unavailable.unwrap_or_default();
        assert!(why.starts_with("no NVIDIA GPU: "), "{why}");
        assert!(why.contains("libnvidia-ml"), "{why}");
        assert!(s.devices.is_empty());
    }
}
