//! Live resources for heartbeats: load, CPU use, free memory, free disk where the data is.

use std::path::Path;

use cortex_model::node::Resources;
use sysinfo::{CpuRefreshKind, Disks, MemoryRefreshKind, RefreshKind, System};

/// Samples the host. Cheap enough to call every second; CPU usage is measured over the time
/// since the previous call on the same `Sampler`.
/// When the OS cannot be sampled, figures are zero (never made up).
pub struct Sampler {
    sys: Option<System>,
}

impl Default for Sampler {
    fn default() -> Self {
        let sys = System::new_with_specifics(
            RefreshKind::nothing()
                .with_cpu(CpuRefreshKind::nothing().with_usage())
                .with_memory(MemoryRefreshKind::nothing().with_ram()),
        )
        .ok();
        Sampler { sys }
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
            // NVML utilisation comes with the GPU scheduling work; without NVIDIA GPUs it is empty.
            gpu_utilization_percent: Vec::new(),
        }
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
