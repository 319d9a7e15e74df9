//! NVIDIA GPUs through NVML (`libnvidia-ml.so.1`, loaded at run time).
//!
//! A host without the NVIDIA library or driver is an ordinary host: that case fills
//! [`GpuInventory::unavailable`] and logs at debug level only. Failures after NVML has started
//! (a device that cannot be queried) are warnings.

use cortex_model::inventory::{GpuInfo, GpuInventory};
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::Nvml;

/// Test seam: `CORTEX_TEST_FAKE_GPUS=N` reports N simulated GPUs instead of asking NVML, so
/// GPU placement and assignment can be tested end to end on machines without an NVIDIA GPU
/// (the only thing the project mocks). The inventory warns that they are simulated.
pub const FAKE_GPUS_ENV: &str = "CORTEX_TEST_FAKE_GPUS";

/// Lists the NVIDIA GPUs NVML can see.
pub fn collect(warnings: &mut Vec<String>) -> GpuInventory {
    if let Some(n) = std::env::var(FAKE_GPUS_ENV)
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
    {
        warnings.push(format!("{n} simulated GPUs from {FAKE_GPUS_ENV} (testing only)"));
        return GpuInventory {
            unavailable: None,
            devices: (0..n.min(64))
                .map(|index| GpuInfo {
                    index,
                    name: "simulated GPU".into(),
                    uuid: format!("GPU-simulated-{index}"),
                    ..Default::default()
                })
                .collect(),
        };
    }
    let nvml = match Nvml::init() {
        Ok(nvml) => nvml,
        Err(e) => {
            let reason = init_failure_reason(&e);
            tracing::debug!(%reason, "NVML did not start; reporting no NVIDIA GPU");
            return GpuInventory {
                unavailable: Some(format!("no NVIDIA GPU: {reason}")),
                devices: Vec::new(),
            };
        }
    };
    GpuInventory {
        unavailable: None,
        devices: list_devices(&nvml, warnings),
    }
}

/// Why `Nvml::init` failed, in words: the loader's own message when the library could not be
/// loaded (it names the file), else NVML's error.
fn init_failure_reason(error: &NvmlError) -> String {
    match error {
        NvmlError::LibloadingError(e) => e.to_string(),
        other => other.to_string(),
    }
}

fn list_devices(nvml: &Nvml, warnings: &mut Vec<String>) -> Vec<GpuInfo> {
    let driver_version = nvml.sys_driver_version().unwrap_or_else(|e| {
        warnings.push(format!(
            "reading the NVIDIA driver version through NVML failed: {e}"
        ));
        String::new()
    });
    let count = match nvml.device_count() {
        Ok(count) => count,
        Err(e) => {
            warnings.push(format!("counting NVIDIA GPUs through NVML failed: {e}"));
            return Vec::new();
        }
    };

    let mut devices = Vec::new();
    for index in 0..count {
        let device = match nvml.device_by_index(index) {
            Ok(device) => device,
            Err(e) => {
                warnings.push(format!("opening NVIDIA GPU {index} through NVML failed: {e}"));
                continue;
            }
        };
        let mut field = |what: &str, value: Result<String, NvmlError>| {
            value.unwrap_or_else(|e| {
                warnings.push(format!("reading the {what} of NVIDIA GPU {index} failed: {e}"));
                String::new()
            })
        };
        let name = field("name", device.name());
        let uuid = field("UUID", device.uuid());
        let memory_total_bytes = match device.memory_info() {
            Ok(memory) => memory.total,
            Err(e) => {
                warnings.push(format!(
                    "reading the memory size of NVIDIA GPU {index} failed: {e}"
                ));
                0
            }
        };
        devices.push(GpuInfo {
            index,
            name,
            uuid,
            memory_total_bytes,
            driver_version: driver_version.clone(),
        });
    }
    devices
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_the_library_there_is_no_gpu_and_no_warning() {
        if ["/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib"]
            .iter()
            .any(|dir| std::path::Path::new(dir).join("libnvidia-ml.so.1").exists())
        {
            return;
        }
        let mut warnings = Vec::new();
        let gpus = collect(&mut warnings);
        let reason = gpus.unavailable.unwrap_or_default();
        assert!(reason.starts_with("no NVIDIA GPU: "), "{reason}");
        assert!(reason.contains("libnvidia-ml.so.1"), "{reason}");
        assert!(gpus.devices.is_empty());
        assert!(warnings.is_empty(), "{warnings:?}");
    }
}
