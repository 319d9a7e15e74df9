//! The CPU: model, vendor, frequency and thread count from sysinfo, physical cores from sysinfo,
//! feature flags from `/proc/cpuinfo`.

use std::collections::BTreeSet;

use cortex_model::inventory::CpuInfo;
use sysinfo::{CpuRefreshKind, System};

const CPUINFO_PATH: &str = "/proc/cpuinfo";

/// What [`parse_cpuinfo`] finds in the text of `/proc/cpuinfo`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuinfoSummary {
    /// Feature flags every processor block reports (`flags` on x86, `Features` on ARM,
    /// `features` on s390x), sorted and deduplicated. Taking the flags all blocks share means
    /// that a listed flag is usable whichever CPU a process lands on.
    pub flags: Vec<String>,
    /// The first `model name` (x86), else `Hardware` / `Model` line, when there is one.
    pub model: Option<String>,
    /// The first `vendor_id` (x86), else `CPU implementer` (ARM), when there is one.
    pub vendor: Option<String>,
    /// How many `processor : N` blocks the text has (logical CPUs).
    pub processors: u32,
}

/// Parses the text of `/proc/cpuinfo`. Pure: the caller reads the file.
pub fn parse_cpuinfo(text: &str) -> CpuinfoSummary {
    let mut summary = CpuinfoSummary::default();
    let mut shared_flags: Option<BTreeSet<&str>> = None;
    let mut fallback_model = None;

    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        match key {
            "processor" if value.parse::<u32>().is_ok() => summary.processors += 1,
            "flags" | "Features" | "features" => {
                let flags: BTreeSet<&str> = value.split_whitespace().collect();
                shared_flags = Some(match shared_flags {
                    None => flags,
                    Some(shared) => shared.intersection(&flags).copied().collect(),
                });
            }
            "model name" if summary.model.is_none() && !value.is_empty() => {
                summary.model = Some(value.to_owned());
            }
            "Hardware" | "Model" if fallback_model.is_none() && !value.is_empty() => {
                fallback_model = Some(value.to_owned());
            }
            "vendor_id" | "CPU implementer" if summary.vendor.is_none() && !value.is_empty() => {
                summary.vendor = Some(value.to_owned());
            }
            _ => {}
        }
    }

    if summary.model.is_none() {
        summary.model = fallback_model;
    }
    summary.flags = shared_flags
        .unwrap_or_default()
        .into_iter()
        .map(str::to_owned)
        .collect();
    summary
}

/// Reads the CPU description. `system` is `None` when sysinfo could not be opened; then only
/// `/proc/cpuinfo` is used.
pub fn collect(system: Option<&mut System>, warnings: &mut Vec<String>) -> CpuInfo {
    let cpuinfo = match std::fs::read_to_string(CPUINFO_PATH) {
        Ok(text) => {
            let summary = parse_cpuinfo(&text);
            if summary.flags.is_empty() && cfg!(any(target_arch = "x86", target_arch = "x86_64")) {
                warnings.push(format!("reading the CPU flags failed: {CPUINFO_PATH} lists none"));
            }
            summary
        }
        Err(e) => {
            warnings.push(format!("reading {CPUINFO_PATH} for the CPU flags failed: {e}"));
            CpuinfoSummary::default()
        }
    };

    let mut cpu = CpuInfo {
        flags: cpuinfo.flags,
        ..CpuInfo::default()
    };

    if let Some(system) = system {
        system.refresh_cpu_list(CpuRefreshKind::nothing().with_frequency());
        let cpus = system.cpus();
        if let Some(first) = cpus.first() {
            cpu.model = first.brand().trim().to_owned();
            cpu.vendor = first.vendor_id().trim().to_owned();
        }
        cpu.frequency_mhz = cpus.iter().map(sysinfo::Cpu::frequency).max().unwrap_or(0);
        cpu.threads = u32::try_from(cpus.len()).unwrap_or(u32::MAX);
    }

    if cpu.model.is_empty() {
        cpu.model = cpuinfo.model.unwrap_or_default();
    }
    if cpu.vendor.is_empty() {
        cpu.vendor = cpuinfo.vendor.unwrap_or_default();
    }
    if cpu.threads == 0 {
        cpu.threads = cpuinfo.processors;
    }
    if cpu.threads == 0 {
        match std::thread::available_parallelism() {
            Ok(n) => {
                cpu.threads = u32::try_from(n.get()).unwrap_or(u32::MAX);
                warnings.push(format!(
                    "counting logical CPUs failed, so the thread count ({}) is the number this \
                     process may run on",
                    cpu.threads
                ));
            }
            Err(e) => warnings.push(format!("counting logical CPUs failed: {e}")),
        }
    }
    if cpu.model.is_empty() {
        warnings.push("reading the CPU model name failed: neither sysinfo nor /proc/cpuinfo has one".into());
    }

    cpu.cores = match System::physical_core_count() {
        Ok(0) => {
            warnings.push("counting physical CPU cores failed: sysinfo found none".into());
            None
        }
        Ok(n) => Some(u32::try_from(n).unwrap_or(u32::MAX)),
        Err(e) => {
            warnings.push(format!("counting physical CPU cores failed: {e}"));
            None
        }
    };

    cpu
}

#[cfg(test)]
mod tests {
    use super::*;

    const X86_TWO_CPUS: &str = "\
processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC
cpu MHz\t\t: 2596.140
physical id\t: 0
core id\t\t: 0
cpu cores\t: 2
flags\t\t: fpu vme sse sse2 avx2 avx512f sse
bugs\t\t: sysret_ss_attrs spectre_v1
power management:

processor\t: 1
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC
flags\t\t: sse2 fpu vme sse avx2 avx512f
bugs\t\t: sysret_ss_attrs spectre_v1
power management:

";

    const ARM64: &str = "\
processor\t: 0
BogoMIPS\t: 48.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics cpuid
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x3
CPU part\t: 0xd0c
CPU revision\t: 1

processor\t: 1
BogoMIPS\t: 48.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics cpuid
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x3
CPU part\t: 0xd0c
CPU revision\t: 1

";

    #[test]
    fn x86_flags_are_sorted_deduplicated_and_shared_by_all_cpus() {
        let summary = parse_cpuinfo(X86_TWO_CPUS);
        assert_eq!(summary.flags, ["avx2", "avx512f", "fpu", "sse", "sse2", "vme"]);
        assert_eq!(summary.model.as_deref(), Some("AMD EPYC"));
        assert_eq!(summary.vendor.as_deref(), Some("AuthenticAMD"));
        assert_eq!(summary.processors, 2);
    }

    #[test]
    fn a_flag_missing_on_one_cpu_is_dropped() {
        let text = "processor : 0\nflags : a b c\n\nprocessor : 1\nflags : b c d\n";
        assert_eq!(parse_cpuinfo(text).flags, ["b", "c"]);
    }

    #[test]
    fn arm_features_line_gives_the_flags() {
        let summary = parse_cpuinfo(ARM64);
        assert_eq!(
            summary.flags,
            ["aes", "asimd", "atomics", "cpuid", "crc32", "evtstrm", "fp", "pmull", "sha1", "sha2"]
        );
        assert_eq!(summary.vendor.as_deref(), Some("0x41"));
        assert_eq!(summary.model, None);
        assert_eq!(summary.processors, 2);
    }

    #[test]
    fn old_arm_hardware_line_is_the_model_fallback() {
        let text = "Processor : ARMv7 Processor rev 4 (v7l)\nprocessor : 0\nFeatures : half thumb\n\n\
                    Hardware : BCM2835\n";
        let summary = parse_cpuinfo(text);
        assert_eq!(summary.model.as_deref(), Some("BCM2835"));
        assert_eq!(summary.flags, ["half", "thumb"]);
        assert_eq!(summary.processors, 1);
    }

    #[test]
    fn empty_or_flagless_text_gives_nothing() {
        assert_eq!(parse_cpuinfo(""), CpuinfoSummary::default());
        let summary = parse_cpuinfo("processor : 0\ncpu : POWER9\n");
        assert!(summary.flags.is_empty());
        assert_eq!(summary.processors, 1);
    }

    #[test]
    fn collect_reads_this_machine() {
        let mut warnings = Vec::new();
        let mut system = System::new().unwrap();
        let cpu = collect(Some(&mut system), &mut warnings);
        assert!(cpu.threads >= 1, "{cpu:?} {warnings:?}");
        let without_sysinfo = collect(None, &mut warnings);
        assert_eq!(without_sysinfo.flags, cpu.flags);
    }
}
