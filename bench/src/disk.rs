//! Disk: sequential write, sequential read and 4 KiB random read in the data directory.
//!
//! One temporary file (`.cortex-bench-<pid>.tmp`), removed afterwards whatever happens. IO is
//! `O_DIRECT` with 4 KiB-aligned buffers where the filesystem supports it, so the page cache
//! is not what gets measured; otherwise the cache is dropped for the file with
//! `posix_fadvise(DONTNEED)` and the figures say so. Writes are followed by `fdatasync` inside
//! the timed span. Size and time are bounded. A data directory on tmpfs or ramfs has no disk:
//! the section says "tmpfs/none" and measures nothing.
//!
//! Every 4 KiB page written starts with a word derived from its file offset; reads check it, so
//! a figure only counts data that really came back from the right place.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::statfs::{statfs, FsType};

use crate::report::DiskSection;
use crate::stats::{human_bytes, summarize, Conditions};
use crate::Ctx;

const PAGE: usize = 4096;
const BLOCK: usize = 1 << 20;
const MAGIC: u64 = 0x636f_7274_6578_2d62; // "cortex-b"

/// Sizes and time limits of one disk run.
#[derive(Debug, Clone, Copy)]
pub struct DiskPlan {
    /// Bytes written (and read back) by the timed sequential rounds.
    pub bytes: u64,
    pub repeats: u32,
    /// Upper bound for each phase (write, read, random read).
    pub phase_cap: Duration,
    /// Length of one random-read round.
    pub random_round: Duration,
}

impl DiskPlan {
    pub fn new(quick: bool) -> DiskPlan {
        if quick {
            DiskPlan {
                bytes: 64 << 20,
                repeats: 3,
                phase_cap: Duration::from_millis(1200),
                random_round: Duration::from_millis(80),
            }
        } else {
            DiskPlan {
                bytes: 256 << 20,
                repeats: 4,
                phase_cap: Duration::from_secs(4),
                random_round: Duration::from_millis(300),
            }
        }
    }
}

/// Measures the disk under `ctx.data_dir`.
pub fn measure(ctx: &Ctx, progress: &mut dyn FnMut(&str)) -> DiskSection {
    progress(&format!(
        "disk: sequential and 4 KiB random IO in {}",
        ctx.data_dir.display()
    ));
    run(&ctx.data_dir, DiskPlan::new(ctx.quick))
}

/// ramfs's magic number (nix has no constant for it).
const RAMFS_MAGIC: u64 = 0x8584_58f6;

/// The low 32 bits of a filesystem type: magic numbers are 32-bit, `f_type`'s width varies.
fn magic(t: FsType) -> u64 {
    (t.0 as u64) & 0xffff_ffff
}

/// True for filesystems that live in memory (tmpfs, ramfs): no disk under them.
fn in_memory(t: FsType) -> bool {
    t == nix::sys::statfs::TMPFS_MAGIC || magic(t) == RAMFS_MAGIC
}

/// The filesystem's name for the report (known magic numbers; hex otherwise).
fn fs_name(t: FsType) -> String {
    use nix::sys::statfs as fs;
    if magic(t) == RAMFS_MAGIC {
        return "ramfs".to_owned();
    }
    let known = [
        (fs::TMPFS_MAGIC, "tmpfs"),
        (fs::EXT4_SUPER_MAGIC, "ext2/ext3/ext4"),
        (fs::XFS_SUPER_MAGIC, "xfs"),
        (fs::BTRFS_SUPER_MAGIC, "btrfs"),
        (fs::OVERLAYFS_SUPER_MAGIC, "overlayfs"),
        (fs::NFS_SUPER_MAGIC, "nfs"),
        (fs::FUSE_SUPER_MAGIC, "fuse"),
    ];
    known
        .iter()
        .find(|(m, _)| *m == t)
        .map(|(_, n)| (*n).to_owned())
        .unwrap_or_else(|| format!("{:#x}", magic(t)))
}

/// Removes the test file when dropped, whatever path the measurement took.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A page-aligned buffer carved out of a larger `Vec` (no allocator tricks needed).
struct Aligned {
    storage: Vec<u8>,
    offset: usize,
    len: usize,
}

impl Aligned {
    fn new(len: usize) -> Aligned {
        let storage = vec![0u8; len + PAGE];
        let offset = storage.as_ptr().align_offset(PAGE).min(PAGE);
        Aligned { storage, offset, len }
    }
    fn bytes(&self) -> &[u8] {
        &self.storage[self.offset..self.offset + self.len]
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.storage[self.offset..self.offset + self.len]
    }
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn page_tag(offset: u64) -> u64 {
    splitmix(offset ^ MAGIC)
}

/// Stamps every page of `block` (to be written at file offset `at`) with its tag.
fn stamp(block: &mut [u8], at: u64) {
    for (i, page) in block.chunks_mut(PAGE).enumerate() {
        page[..8].copy_from_slice(&page_tag(at + (i * PAGE) as u64).to_le_bytes());
    }
}

/// True when every page of `data` (read from file offset `at`) carries its tag.
fn check(data: &[u8], at: u64) -> bool {
    data.chunks(PAGE)
        .enumerate()
        .all(|(i, page)| page.len() >= 8 && page[..8] == page_tag(at + (i * PAGE) as u64).to_le_bytes())
}

fn mbps(bytes: u64, t: Duration) -> f64 {
    bytes as f64 / t.as_secs_f64().max(1e-9) / 1e6
}

/// The whole disk measurement in `dir`.
pub fn run(dir: &Path, plan: DiskPlan) -> DiskSection {
    let mut section = DiskSection {
        path: dir.display().to_string(),
        filesystem: None,
        direct_io: false,
        seq_write: None,
        seq_read: None,
        rand_read_4k: None,
        note: None,
        notes: Vec::new(),
    };
    let st = match statfs(dir) {
        Ok(st) => st,
        Err(e) => {
            section.note = Some(format!("cannot measure: statfs {} failed: {e}", dir.display()));
            return section;
        }
    };
    let fs_type = st.filesystem_type();
    section.filesystem = Some(fs_name(fs_type));
    if in_memory(fs_type) {
        section.note = Some(format!(
            "tmpfs/none: {} is in memory ({}), there is no disk to measure",
            dir.display(),
            fs_name(fs_type)
        ));
        return section;
    }
    let free = st.blocks_available().saturating_mul(st.block_size() as u64);
    let mut plan = plan;
    let block = BLOCK as u64;
    // Leave room: never take more than half of the free space.
    if plan.bytes + 4 * block > free / 2 {
        let fit = (free / 2).saturating_sub(4 * block) / block * block;
        if fit < 4 * block {
            section.note = Some(format!(
                "cannot measure: only {} free in {}",
                human_bytes(free),
                dir.display()
            ));
            return section;
        }
        section.notes.push(format!(
            "file reduced to {} by free space ({} free)",
            human_bytes(fit),
            human_bytes(free)
        ));
        plan.bytes = fit;
    }

    let path = dir.join(format!(".cortex-bench-{}.tmp", std::process::id()));
    let open = |direct: bool| {
        let mut o = OpenOptions::new();
        o.read(true).write(true).create_new(true);
        if direct {
            o.custom_flags(nix::libc::O_DIRECT);
        }
        o.open(&path)
    };
    let (file, direct) = match open(true) {
        Ok(f) => (f, true),
        Err(e) if e.raw_os_error() == Some(nix::libc::EINVAL) => {
            let _ = std::fs::remove_file(&path);
            match open(false) {
                Ok(f) => (f, false),
                Err(e) => {
                    section.note = Some(format!("cannot measure: creating {} failed: {e}", path.display()));
                    return section;
                }
            }
        }
        Err(e) => {
            section.note = Some(format!("cannot measure: creating {} failed: {e}", path.display()));
            return section;
        }
    };
    let _guard = TempFile(path.clone());
    section.direct_io = direct;
    if !direct {
        section.notes.push(
            "O_DIRECT not supported here: buffered IO, page cache dropped with posix_fadvise before reads"
                .to_owned(),
        );
    }
    let io = if direct { "O_DIRECT" } else { "buffered" };
    let cond = |size: String, note: &str| Conditions {
        threads: 1,
        size,
        features: Vec::new(),
        note: Some(format!("{io}, {note}")),
    };

    let blocks_per_round = (plan.bytes / block / u64::from(plan.repeats.max(1))).max(1);
    let warm_blocks = 4u64;
    let mut buf = Aligned::new(BLOCK);
    let mut seed = 0x1234_5678u64;
    for word in buf.bytes_mut().chunks_mut(8) {
        seed = splitmix(seed);
        word.copy_from_slice(&seed.to_le_bytes()[..word.len()]);
    }

    // Sequential write: a warm-up of 4 blocks, then rounds of `blocks_per_round`, each ending
    // with fdatasync inside the timed span.
    let mut written = 0u64;
    let write = write_rounds(&file, &mut buf, warm_blocks, blocks_per_round, plan, &mut written);
    match write {
        Ok(samples) => {
            section.seq_write = summarize(
                &samples,
                "MB/s",
                cond(
                    format!(
                        "{} per round in 1 MiB writes",
                        human_bytes(blocks_per_round * block)
                    ),
                    "fdatasync included",
                ),
            )
        }
        Err(e) => {
            section.notes.push(format!("sequential write failed: {e}"));
            return section;
        }
    }
    if !direct {
        drop_cache(&file);
    }

    // Sequential read of what was written, same rounds.
    match read_rounds(&file, &mut buf, warm_blocks, written, blocks_per_round, plan) {
        Ok(samples) => {
            section.seq_read = summarize(
                &samples,
                "MB/s",
                cond(
                    format!(
                        "{} per round in 1 MiB reads",
                        human_bytes(blocks_per_round * block)
                    ),
                    "data verified",
                ),
            )
        }
        Err(e) => section.notes.push(format!("sequential read failed: {e}")),
    }
    if !direct {
        drop_cache(&file);
    }

    // Random 4 KiB reads over the whole file, queue depth 1.
    match random_rounds(&file, written, plan) {
        Ok(samples) => {
            section.rand_read_4k = summarize(
                &samples,
                "IOPS",
                cond(
                    format!("4 KiB reads over {}, queue depth 1", human_bytes(written)),
                    "data verified",
                ),
            )
        }
        Err(e) => section.notes.push(format!("random read failed: {e}")),
    }
    section
}

fn drop_cache(file: &File) {
    use nix::fcntl::{posix_fadvise, PosixFadviseAdvice};
    let _ = posix_fadvise(file, 0, 0, PosixFadviseAdvice::POSIX_FADV_DONTNEED);
}

/// Writes the warm-up blocks, then timed rounds; returns MB/s per timed round. `written`
/// ends as the file's length.
fn write_rounds(
    file: &File,
    buf: &mut Aligned,
    warm_blocks: u64,
    blocks_per_round: u64,
    plan: DiskPlan,
    written: &mut u64,
) -> std::io::Result<Vec<f64>> {
    let block = BLOCK as u64;
    let put = |buf: &mut Aligned, written: &mut u64| -> std::io::Result<()> {
        stamp(buf.bytes_mut(), *written);
        file.write_all_at(buf.bytes(), *written)?;
        *written += block;
        Ok(())
    };
    for _ in 0..warm_blocks {
        put(buf, written)?;
    }
    file.sync_data()?;
    let phase = Instant::now();
    let mut samples = Vec::new();
    for _ in 0..plan.repeats {
        let start = Instant::now();
        let before = *written;
        for _ in 0..blocks_per_round {
            put(buf, written)?;
            if phase.elapsed() > plan.phase_cap && !samples.is_empty() {
                break;
            }
        }
        file.sync_data()?;
        samples.push(mbps(*written - before, start.elapsed()));
        if phase.elapsed() > plan.phase_cap {
            break;
        }
    }
    Ok(samples)
}

fn read_block(file: &File, buf: &mut Aligned, at: u64) -> std::io::Result<()> {
    file.read_exact_at(buf.bytes_mut(), at)?;
    if check(buf.bytes(), at) {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "data read at offset {at} is not what was written there"
        )))
    }
}

fn read_rounds(
    file: &File,
    buf: &mut Aligned,
    warm_blocks: u64,
    written: u64,
    blocks_per_round: u64,
    plan: DiskPlan,
) -> std::io::Result<Vec<f64>> {
    let block = BLOCK as u64;
    for b in 0..warm_blocks {
        read_block(file, buf, b * block)?;
    }
    let phase = Instant::now();
    let mut samples = Vec::new();
    let mut at = warm_blocks * block;
    while at < written {
        let start = Instant::now();
        let first = at;
        for _ in 0..blocks_per_round {
            if at >= written {
                break;
            }
            read_block(file, buf, at)?;
            at += block;
        }
        samples.push(mbps(at - first, start.elapsed()));
        if phase.elapsed() > plan.phase_cap {
            break;
        }
    }
    Ok(samples)
}

fn random_rounds(file: &File, written: u64, plan: DiskPlan) -> std::io::Result<Vec<f64>> {
    let pages = (written / PAGE as u64).max(1);
    let mut buf = Aligned::new(PAGE);
    let mut rng = 0x9e37_79b9u64;
    let mut one = |buf: &mut Aligned| -> std::io::Result<()> {
        rng = splitmix(rng);
        let at = (rng % pages) * PAGE as u64;
        file.read_exact_at(buf.bytes_mut(), at)?;
        if check(buf.bytes(), at) {
            Ok(())
        } else {
            Err(std::io::Error::other(format!(
                "data read at offset {at} is not what was written there"
            )))
        }
    };
    // Warm-up: a short untimed round.
    let warm = Instant::now();
    while warm.elapsed() < plan.random_round / 4 {
        one(&mut buf)?;
    }
    let phase = Instant::now();
    let mut samples = Vec::new();
    for _ in 0..plan.repeats.max(3) {
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < plan.random_round {
            one(&mut buf)?;
            n += 1;
        }
        samples.push(n as f64 / start.elapsed().as_secs_f64());
        if phase.elapsed() > plan.phase_cap {
            break;
        }
    }
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> DiskPlan {
        DiskPlan {
            bytes: 8 << 20,
            repeats: 3,
            phase_cap: Duration::from_secs(5),
            random_round: Duration::from_millis(20),
        }
    }

    #[test]
    fn measures_a_real_directory_and_cleans_up() {
        // The crate's own target dir is on a real filesystem (not tmpfs) on build machines.
        let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
        std::fs::create_dir_all(&base).unwrap();
        let dir = tempfile::tempdir_in(&base).unwrap();
        let s = run(dir.path(), small());
        if s.filesystem.as_deref() == Some("tmpfs") {
            assert!(s.note.unwrap().starts_with("tmpfs/none"));
            return;
        }
        assert!(s.note.is_none(), "{s:?}");
        for f in [&s.seq_write, &s.seq_read, &s.rand_read_4k] {
            let f = f.as_ref().unwrap_or_else(|| panic!("missing figure: {s:?}"));
            assert!(f.median > 0.0 && f.min <= f.max, "{f:?}");
            assert!(f.repeats >= 1);
        }
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "the test file is removed"
        );
    }

    #[test]
    fn tmpfs_says_tmpfs_none_and_does_not_fail() {
        let shm = Path::new("/dev/shm");
        match statfs(shm) {
            Ok(st) if st.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC => {}
            _ => return, // no tmpfs mounted here
        }
        let s = run(shm, small());
        assert!(
            s.note.as_deref().is_some_and(|n| n.starts_with("tmpfs/none")),
            "{s:?}"
        );
        assert!(s.seq_write.is_none() && s.seq_read.is_none() && s.rand_read_4k.is_none());
    }

    #[test]
    fn a_missing_directory_is_a_note_not_a_failure() {
        let s = run(Path::new("/nonexistent/cortex-bench"), small());
        assert!(s.note.as_deref().is_some_and(|n| n.contains("statfs")), "{s:?}");
    }

    #[test]
    fn pages_carry_their_offsets() {
        let mut block = vec![0u8; 2 * PAGE];
        stamp(&mut block, 8 * PAGE as u64);
        assert!(check(&block, 8 * PAGE as u64));
        assert!(!check(&block, 0));
        assert!(check(&block[PAGE..], 9 * PAGE as u64));
    }
}
