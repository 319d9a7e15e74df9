//! Live resources for heartbeats: load, CPU use, free memory, free disk where the data is.

use std::path::Path;

use cortex_model::node::Resources;
use sysinfo::{CpuRefreshKind, Disks, MemoryRefreshKind, RefreshKind, System};

/// Samples the host. Cheap enough to call every second; CPU usage is measured over the time
/// since the previous call on the same `Sampler`.
/// When the OS cannot be sampled, figures are zero (never made up).
pub struct Sampler {
    sys: Option<System>,
    /// NVML, loaded once; `None` where there is no NVIDIA driver (the common case).
    nvml: Option<nvml_wrapper::Nvml>,
}

impl Default for Sampler {
    fn default() -> Self {
        let sys = System::new_with_specifics(
            RefreshKind::nothing()
                .with_cpu(CpuRefreshKind::nothing().with_usage())
                .with_memory(MemoryRefreshKind::nothing().with_ram()),
        )
        .ok();
        Sampler {
            sys,
            nvml: nvml_wrapper::Nvml::init().ok(),
        }
    }
}

impl Sampler {
    pub fn sample(&mut self, data_dir: &Path) -> Resources {
        let (cpu, mem) = match self.sys.as_mut() {
            Some(sys) => {
                sys.refresh_cpu_usage();
                sys.refresh_memory();
                (sys.global_cpu_usage(), sys.available_memory())
            }
            None => (0.0, 0),
        };
        Resources {
            load_1m: System::load_average().map(|l| l.one).unwrap_or(0.0),
            cpu_usage_percent: cpu,
            memory_available_bytes: mem,
            disk_free_bytes: disk_free(data_dir),
            gpu_utilization_percent: self.gpu_utilization(),
        }
    }

    /// Per-GPU utilisation (percent of time a kernel ran over NVML's last sample period), in
    /// device order; empty without NVIDIA GPUs. A device that cannot report is skipped, never
    /// reported as 0.
    fn gpu_utilization(&self) -> Vec<u32> {
        let Some(nvml) = &self.nvml else {
            return Vec::new();
        };
        let count = nvml.device_count().unwrap_or(0);
        (0..count)
            .filter_map(|i| nvml.device_by_index(i).ok()?.utilization_rates().ok())
            .map(|u| u.gpu)
            .collect()
    }
}

/// Free bytes on the filesystem holding `path` (the longest matching mount point).
fn disk_free(path: &Path) -> u64 {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let Ok(disks) = Disks::new_with_refreshed_list() else {
        return 0;
    };
    disks
        .iter()
        .filter(|d| path.starts_with(d.mount_point()))
        .max_by_key(|d| d.mount_point().as_os_str().len())
        .map(|d| d.available_space())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_this_host() {
        let mut s = Sampler::default();
        let r = s.sample(Path::new("/"));
        assert!(r.memory_available_bytes > 0);
        assert!(r.load_1m >= 0.0);
    }
}
