//! Memory bandwidth, the STREAM way: copy, scale, add and triad over three f64 arrays, each at
//! least 4× the last-level cache, on all threads (pinned, one contiguous chunk each).
//!
//! Bytes are counted as STREAM counts them: copy and scale move 2 arrays, add and triad 3, at
//! 8 bytes per element (no write-allocate traffic is added). On x86-64 with AVX the stores are
//! non-temporal ([`crate::simd`]). After the run every element is compared with the value the
//! same sequence of operations gives on scalars; any difference withholds the figures.

use std::path::Path;
use std::time::Duration;

use crate::report::MemorySection;
use crate::simd;
use crate::stats::{giga_per_second, human_bytes, summarize, Conditions};
use crate::{team, Ctx};

const SCALAR: f64 = 3.0;
/// Per-array size when the last-level cache size is unknown.
const DEFAULT_ARRAY_BYTES: u64 = 64 << 20;
const KERNELS: [&str; 4] = ["copy", "scale", "add", "triad"];
/// Offset between the arrays' starts, in elements: 17 cache lines (see `stream`).
const SKEW: usize = 17 * 8;

/// The last-level cache: size of one instance and how many instances the CPUs share out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Llc {
    pub level: u32,
    pub bytes_each: u64,
    pub instances: u64,
}

impl Llc {
    pub fn total(&self) -> u64 {
        self.bytes_each * self.instances.max(1)
    }
}

/// Reads the last-level cache from `<root>/cpu0/cache` (and counts its instances over every
/// CPU); `root` is normally `/sys/devices/system/cpu`.
pub fn last_level_cache(root: &Path) -> Option<Llc> {
    let read = |p: &Path| std::fs::read_to_string(p).ok().map(|s| s.trim().to_owned());
    let mut best: Option<(u32, String, u64)> = None;
    for entry in std::fs::read_dir(root.join("cpu0/cache")).ok()?.flatten() {
        let dir = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("index") || read(&dir.join("type")).as_deref() == Some("Instruction") {
            continue;
        }
        let (Some(level), Some(size)) = (
            read(&dir.join("level")).and_then(|l| l.parse::<u32>().ok()),
            read(&dir.join("size")).and_then(|s| parse_size(&s)),
        ) else {
            continue;
        };
        if best.as_ref().is_none_or(|(l, _, _)| level > *l) {
            best = Some((level, name, size));
        }
    }
    let (level, index, bytes_each) = best?;
    let mut groups: Vec<String> = std::fs::read_dir(root)
        .ok()?
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.strip_prefix("cpu")
                .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        })
        .filter_map(|e| read(&e.path().join("cache").join(&index).join("shared_cpu_list")))
        .collect();
    groups.sort();
    groups.dedup();
    Some(Llc {
        level,
        bytes_each,
        instances: groups.len().max(1) as u64,
    })
}

/// "32768K", "1M", "512" (bytes) → bytes.
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let (digits, mult) = match text.chars().last()? {
        'K' | 'k' => (&text[..text.len() - 1], 1u64 << 10),
        'M' | 'm' => (&text[..text.len() - 1], 1 << 20),
        'G' | 'g' => (&text[..text.len() - 1], 1 << 30),
        _ => (text, 1),
    };
    digits.trim().parse::<u64>().ok()?.checked_mul(mult)
}

/// `MemAvailable` from /proc/meminfo, in bytes.
fn mem_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Measures the four STREAM figures on `ctx.threads` threads.
pub fn measure(ctx: &Ctx, progress: &mut dyn FnMut(&str)) -> MemorySection {
    let mut notes = Vec::new();
    let llc = last_level_cache(Path::new("/sys/devices/system/cpu"));
    let mut array_bytes = match llc {
        Some(llc) => (4 * llc.total()).max(16 << 20),
        None => {
            notes.push(format!(
                "last-level cache size unknown; {} per array",
                human_bytes(DEFAULT_ARRAY_BYTES)
            ));
            DEFAULT_ARRAY_BYTES
        }
    };
    if let Some(avail) = mem_available() {
        let limit = avail / 4 / 3;
        if array_bytes > limit {
            notes.push(format!(
                "arrays capped at {} each by available memory (wanted {})",
                human_bytes(limit),
                human_bytes(array_bytes)
            ));
            array_bytes = limit.max(1 << 20);
        }
    }
    let (warmup, repeats, cap) = if ctx.quick {
        (1, 5, Duration::from_millis(1200))
    } else {
        (1, 10, Duration::from_secs(4))
    };
    progress(&format!(
        "memory: STREAM, 3 × {} arrays, {} thread(s)",
        human_bytes(array_bytes),
        ctx.threads
    ));
    let run = stream(ctx, array_bytes, warmup, repeats, cap);
    let mut section = MemorySection {
        array_bytes,
        llc_bytes: llc.map(|l| l.total()),
        streaming_stores: simd::streaming_stores(),
        copy: None,
        scale: None,
        add: None,
        triad: None,
        notes,
    };
    match run {
        Ok(figs) => {
            let [copy, scale, add, triad] = figs;
            (section.copy, section.scale, section.add, section.triad) = (copy, scale, add, triad);
        }
        Err(why) => section.notes.push(why),
    }
    section
}

type Chunk<'a> = (&'a mut [f64], &'a mut [f64], &'a mut [f64]);

/// Runs STREAM over three arrays of `array_bytes` each: `warmup` untimed cycles, then up to
/// `repeats` timed ones (fewer once `cap` has passed, at least one).
pub fn stream(
    ctx: &Ctx,
    array_bytes: u64,
    warmup: usize,
    repeats: usize,
    cap: Duration,
) -> Result<[Option<crate::stats::Figure>; 4], String> {
    let threads = ctx.threads.max(1);
    let len = usize::try_from(array_bytes / 8).map_err(|_| "array too large".to_owned())?;
    // One chunk per thread, a multiple of 8 elements so every chunk starts equally aligned.
    let chunk = len.div_ceil(threads).div_ceil(8) * 8;
    let len = chunk * threads;
    // Each array starts a different number of cache lines into its allocation (STREAM's
    // OFFSET): same-sized allocations otherwise sit a power of two apart, and the three
    // streams then collide in the same cache sets and DRAM banks.
    let (mut a, mut b, mut c) = (
        vec![0.0f64; len + 2 * SKEW],
        vec![0.0f64; len + 2 * SKEW],
        vec![0.0f64; len + 2 * SKEW],
    );
    let (a, b, c) = (
        &mut a[..len],
        &mut b[SKEW..SKEW + len],
        &mut c[2 * SKEW..2 * SKEW + len],
    );
    let states: Vec<Chunk> = a
        .chunks_mut(chunk)
        .zip(b.chunks_mut(chunk))
        .zip(c.chunks_mut(chunk))
        .map(|((a, b), c)| (a, b, c))
        .collect();
    let cycles = warmup + repeats;
    let max_rounds = 1 + 4 * cycles;
    // Each kernel is idempotent (it reads arrays it does not write), so a round can run it
    // several times over: rounds of ~1.5 GiB of traffic (quick: 0.5 GiB) make the start skew
    // between threads negligible.
    let target = if ctx.quick { 512u64 << 20 } else { 1536 << 20 };
    let passes = target.div_ceil(3 * array_bytes.max(1)).max(1);
    let out = team::run(
        &ctx.cpus,
        states,
        max_rounds,
        |done, elapsed| {
            let cycles_done = (done - 1) / 4;
            let at_cycle_end = (done - 1) % 4 == 0;
            done < max_rounds && !(at_cycle_end && cycles_done > warmup && elapsed > cap)
        },
        |(a, b, c): &mut Chunk, round| {
            if round == 0 {
                // First touch by the thread that will use the pages (NUMA-local).
                a.fill(1.0);
                b.fill(2.0);
                c.fill(0.0);
                return;
            }
            for _ in 0..passes {
                match (round - 1) % 4 {
                    0 => simd::copy(c, a),
                    1 => simd::scale(b, c, SCALAR),
                    2 => simd::add(c, a, b),
                    _ => simd::triad(a, b, c, SCALAR),
                }
            }
        },
    );
    let rounds = out.rounds;
    drop(out.states);
    let timed = rounds.len().saturating_sub(1);
    let cycles_done = timed / 4;

    // Validate: replay the same operations on scalars.
    let (mut sa, mut sb, mut sc) = (1.0f64, 2.0f64, 0.0f64);
    for r in 0..timed {
        match r % 4 {
            0 => sc = sa,
            1 => sb = SCALAR * sc,
            2 => sc = sa + sb,
            _ => sa = sb + SCALAR * sc,
        }
    }
    for (name, arr, want) in [("a", &*a, sa), ("b", &*b, sb), ("c", &*c, sc)] {
        if let Some(i) = arr.iter().position(|x| *x != want) {
            return Err(format!(
                "STREAM validation failed: {name}[{i}] = {} instead of {want}; figures withheld",
                arr[i]
            ));
        }
    }

    let elems = len as f64;
    let mut figures: [Option<crate::stats::Figure>; 4] = [None, None, None, None];
    for (k, figure) in figures.iter_mut().enumerate() {
        let arrays = if k < 2 { 2.0 } else { 3.0 };
        let bytes = arrays * 8.0 * elems * passes as f64;
        let samples: Vec<f64> = (warmup..cycles_done)
            .filter_map(|cycle| rounds.get(1 + 4 * cycle + k))
            .map(|t| giga_per_second(bytes, *t))
            .collect();
        let conditions = Conditions {
            threads,
            size: format!(
                "3 arrays × {}, {passes} pass(es) per round ({} counted per element)",
                human_bytes(len as u64 * 8),
                if k < 2 { "16 B" } else { "24 B" }
            ),
            features: simd::stream_features(),
            note: Some(format!(
                "{}{}",
                KERNELS[k],
                if simd::streaming_stores() {
                    ", non-temporal stores"
                } else {
                    ""
                }
            )),
        };
        *figure = summarize(&samples, "GB/s", conditions);
    }
    Ok(figures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("32768K"), Some(32 << 20));
        assert_eq!(parse_size("2M"), Some(2 << 20));
        assert_eq!(parse_size("512"), Some(512));
        assert_eq!(parse_size("x"), None);
    }

    #[test]
    fn llc_is_read_from_a_sysfs_tree() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for cpu in 0..4 {
            for (idx, level, ty, size, shared) in [
                ("index0", "1", "Data", "32K", format!("{cpu}")),
                ("index1", "1", "Instruction", "32K", format!("{cpu}")),
                (
                    "index3",
                    "3",
                    "Unified",
                    "16384K",
                    if cpu < 2 { "0-1".into() } else { "2-3".into() },
                ),
            ] {
                let d = root.join(format!("cpu{cpu}/cache/{idx}"));
                std::fs::create_dir_all(&d).unwrap();
                std::fs::write(d.join("level"), level).unwrap();
                std::fs::write(d.join("type"), ty).unwrap();
                std::fs::write(d.join("size"), size).unwrap();
                std::fs::write(d.join("shared_cpu_list"), shared).unwrap();
            }
        }
        std::fs::create_dir_all(root.join("cpufreq")).unwrap();
        let llc = last_level_cache(root).unwrap();
        assert_eq!(
            llc,
            Llc {
                level: 3,
                bytes_each: 16 << 20,
                instances: 2
            }
        );
        assert_eq!(llc.total(), 32 << 20);
        assert_eq!(last_level_cache(&root.join("nope")), None);
    }

    #[test]
    fn stream_figures_are_validated_and_positive() {
        let ctx = Ctx::for_tests();
        let figs = stream(&ctx, 4 << 20, 1, 3, Duration::from_secs(10)).unwrap();
        for (f, name) in figs.iter().zip(KERNELS) {
            let f = f.as_ref().unwrap_or_else(|| panic!("{name} has no figure"));
            assert_eq!(f.repeats, 3, "{name}");
            assert!(
                f.median > 0.0 && f.min <= f.median && f.median <= f.max,
                "{name}: {f:?}"
            );
        }
    }
}
