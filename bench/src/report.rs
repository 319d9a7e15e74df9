//! The benchmark report: versioned JSON (`"format": "cortex-bench/1"`).
//!
//! Compatibility: within `cortex-bench/1` fields are only ever added (readers ignore unknown
//! ones); renaming or removing a field, or changing a unit, takes `cortex-bench/2`. A figure
//! that could not be measured is `null`, and the section's `notes` say why.

use serde::{Deserialize, Serialize};

use crate::stats::Figure;

/// The format tag every report carries.
pub const FORMAT: &str = "cortex-bench/1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Always [`FORMAT`] for this version.
    pub format: String,
    pub quick: bool,
    /// Unix time in milliseconds when the run started.
    pub started_at_ms: u64,
    pub duration_ms: u64,
    pub host: Host,
    pub cpu: CpuSection,
    pub gemm: GemmSection,
    pub memory: MemorySection,
    pub disk: DiskSection,
    pub nics: NicSection,
    pub gpu: GpuSection,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Host {
    pub arch: String,
    pub cpu_model: Option<String>,
    /// CPUs this process may run on.
    pub cpus_allowed: Vec<usize>,
    /// Threads used for the "all cores" figures.
    pub threads: usize,
    /// SIMD features detected at run time (those the kernels may choose from).
    pub cpu_features: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CpuSection {
    /// The instruction set the FMA kernels used ("avx512f", "avx2+fma", "sse2", "neon").
    pub isa: String,
    /// Independent accumulator chains per kernel.
    pub chains: usize,
    pub f64_one_core: Option<Figure>,
    pub f64_all_cores: Option<Figure>,
    pub f32_one_core: Option<Figure>,
    pub f32_all_cores: Option<Figure>,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GemmSection {
    pub library: String,
    pub n: usize,
    pub f64: Option<Figure>,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemorySection {
    /// Bytes per array (there are three).
    pub array_bytes: u64,
    /// Last-level cache, all instances together, when sysfs says.
    pub llc_bytes: Option<u64>,
    /// Non-temporal stores used.
    pub streaming_stores: bool,
    pub copy: Option<Figure>,
    pub scale: Option<Figure>,
    pub add: Option<Figure>,
    pub triad: Option<Figure>,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskSection {
    /// The directory measured (the data directory).
    pub path: String,
    pub filesystem: Option<String>,
    pub direct_io: bool,
    pub seq_write: Option<Figure>,
    pub seq_read: Option<Figure>,
    pub rand_read_4k: Option<Figure>,
    /// Why nothing was measured, when nothing was ("tmpfs/none: …", "cannot measure: …").
    pub note: Option<String>,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NicSection {
    pub interfaces: Vec<Nic>,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Nic {
    pub name: String,
    pub state: String,
    /// Link speed the driver reports; `None` when down, virtual or unknown.
    pub speed_mbps: Option<u32>,
    pub driver: Option<String>,
    /// No backing device (loopback, bridge, veth, …).
    pub virtual_device: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuSection {
    /// `None` when NVML answered; else why there is no GPU list ("no NVIDIA GPU: …").
    pub unavailable: Option<String>,
    pub devices: Vec<Gpu>,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gpu {
    pub index: u32,
    pub name: String,
    pub uuid: String,
    pub memory_total_bytes: Option<u64>,
    pub max_graphics_clock_mhz: Option<u32>,
    pub max_memory_clock_mhz: Option<u32>,
    pub power_limit_watts: Option<f64>,
    /// Current PCIe link, e.g. "gen4 x16".
    pub pcie_link: Option<String>,
    pub pcie_link_max: Option<String>,
    pub utilisation_gpu_percent: Option<u32>,
    pub utilisation_memory_percent: Option<u32>,
}

/// One row of the human table: a figure's name, the figure (if measured) and why not.
pub struct Row<'a> {
    pub name: &'static str,
    pub figure: Option<&'a Figure>,
    pub missing: Option<String>,
}

impl Report {
    /// Every figure in display order, each with a reason when it is missing.
    pub fn rows(&self) -> Vec<Row<'_>> {
        let why = |notes: &[String]| notes.first().cloned().unwrap_or_else(|| "not measured".into());
        let disk_why = self.disk.note.clone().unwrap_or_else(|| why(&self.disk.notes));
        let (cpu, gemm, mem) = (
            why(&self.cpu.notes),
            why(&self.gemm.notes),
            why(&self.memory.notes),
        );
        let rows: [(&'static str, &Option<Figure>, &String); 12] = [
            ("cpu f64, 1 core", &self.cpu.f64_one_core, &cpu),
            ("cpu f64, all cores", &self.cpu.f64_all_cores, &cpu),
            ("cpu f32, 1 core", &self.cpu.f32_one_core, &cpu),
            ("cpu f32, all cores", &self.cpu.f32_all_cores, &cpu),
            ("gemm f64", &self.gemm.f64, &gemm),
            ("memory copy", &self.memory.copy, &mem),
            ("memory scale", &self.memory.scale, &mem),
            ("memory add", &self.memory.add, &mem),
            ("memory triad", &self.memory.triad, &mem),
            ("disk seq write", &self.disk.seq_write, &disk_why),
            ("disk seq read", &self.disk.seq_read, &disk_why),
            ("disk 4k random read", &self.disk.rand_read_4k, &disk_why),
        ];
        rows.into_iter()
            .map(|(name, figure, missing)| Row {
                name,
                figure: figure.as_ref(),
                missing: figure.is_none().then(|| missing.clone()),
            })
            .collect()
    }
}
