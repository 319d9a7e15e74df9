//! A real `collect()` on the machine running the tests.

#![allow(clippy::unwrap_used)]

use std::path::Path;

/// Where distributions and the NVIDIA container toolkit put NVML.
const NVML_PATHS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1",
    "/usr/lib/aarch64-linux-gnu/libnvidia-ml.so.1",
    "/usr/lib64/libnvidia-ml.so.1",
    "/usr/lib/libnvidia-ml.so.1",
    "/usr/local/nvidia/lib64/libnvidia-ml.so.1",
];

#[tokio::test]
async fn collect_describes_this_machine() {
    let inventory = cortex_host::collect().await;
    let context = format!("{inventory:#?}");

    assert!(!inventory.hostname.is_empty(), "{context}");
    assert!(inventory.cpu.threads >= 1, "{context}");
    assert!(inventory.memory.total_bytes > 0, "{context}");
    assert!(inventory.collected_at_ms > 1_600_000_000_000, "{context}");

    let lo = inventory
        .nics
        .iter()
        .find(|nic| nic.name == "lo")
        .expect(&context);
    assert!(lo.addresses.iter().any(|a| a == "127.0.0.1/8"), "{context}");

    if cfg!(target_arch = "x86_64") {
        assert!(!inventory.cpu.flags.is_empty(), "{context}");
        let mut sorted = inventory.cpu.flags.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted, inventory.cpu.flags);
    }

    if !NVML_PATHS.iter().any(|path| Path::new(path).exists()) {
        let reason = inventory.gpus.unavailable.as_deref().unwrap_or_default();
        assert!(reason.starts_with("no NVIDIA GPU"), "{context}");
        assert!(inventory.gpus.devices.is_empty(), "{context}");
    }

    // Netlink works here, so nothing should have needed a fallback.
    assert!(
        !inventory.warnings.iter().any(|w| w.contains("netlink")),
        "{context}"
    );
}

#[test]
fn collect_works_outside_a_tokio_runtime() {
    let inventory = futures::executor::block_on(cortex_host::collect());
    assert!(inventory.nics.iter().any(|nic| nic.name == "lo"));
    assert!(
        inventory.warnings.iter().any(|w| w.contains("netlink")),
        "{:?}",
        inventory.warnings
    );
}

/// Live resources are real figures; without an NVIDIA driver (these machines) the GPU
/// utilisation list is empty — the NVML path is taken and fails cleanly, nothing is made up.
#[test]
fn live_resources_are_sampled_and_gpu_utilisation_is_empty_without_nvidia() {
    let mut s = cortex_host::resources::Sampler::default();
    let first = s.sample(std::path::Path::new("/"));
    std::thread::sleep(std::time::Duration::from_millis(200));
    let r = s.sample(std::path::Path::new("/"));
    assert!(r.memory_available_bytes > 0, "{r:?}");
    assert!(r.disk_free_bytes > 0, "{r:?}");
    assert!((0.0..=100.0).contains(&r.cpu_usage_percent), "{r:?}");
    let has_nvidia = std::path::Path::new("/proc/driver/nvidia").exists();
    if !has_nvidia {
        assert!(first.gpu_utilization_percent.is_empty() && r.gpu_utilization_percent.is_empty());
    } else {
        assert!(r.gpu_utilization_percent.iter().all(|u| *u <= 100));
    }
}
