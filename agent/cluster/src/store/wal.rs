//! The Raft log in its own append-only file (`raft.wal` beside `raft.redb`).
//!
//! Why not a redb table: a durable redb commit holds redb's single write lock through its
//! fsync, and openraft waits inside `append` for it, so every node's Raft core stood still for
//! one fsync per entry (docs/benchmarks.md measured half the write throughput going there).
//! Here `append` writes the records into the file (the page cache: readable at once, which
//! replication needs) and returns; a flusher thread calls `fdatasync` *outside* the append lock
//! and only then tells openraft the entries are stored. One fsync covers every append that
//! queued up meanwhile, and appends go on while it runs.
//!
//! Record: `len: u32 LE` (payload bytes), `crc: u32 LE` (CRC-32 of index and payload),
//! `index: u64 LE`, payload (the entry as JSON, like every record in the store). Indexes are
//! contiguous. At open the file is read through: an incomplete or unreadable last record is a
//! write torn by a crash before its fsync (never acknowledged), cut off; a bad record with
//! complete records after it is damage, and the store refuses to open rather than drop entries
//! it may have acknowledged.
//!
//! Purged records stay in the file until they are most of it (and at least `COMPACT_AT`); then
//! the live records are copied to a new file, fsynced and renamed over it.
//!
//! Zeros ahead: the flusher keeps up to `GROW` bytes of zeros written after the last record, so
//! an append overwrites blocks the file already has and the `fdatasync` after it flushes data
//! only, not a new file size and block allocation through the filesystem journal (the WAL
//! preallocation PostgreSQL and etcd do). On the bench VM's ext4 that made an fsync of a 6 KB
//! append ~35 % quicker and ~25 % cheaper in CPU. The zeros are read as the end of the log: a
//! record header of zeros is never written (every payload has bytes), and a bad record followed
//! only by zeros is the last write torn by a crash, as a bad record at the very end of the file is.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};

use openraft::storage::LogFlushed;

use super::durable::{Durable, DurableTx};
use super::StoreError;
use crate::types::TypeConfig;

const HEADER: u64 = 16;

/// Purged bytes at the front that make a compaction worth it (when they are also more than the
/// live bytes).
const COMPACT_AT: u64 = 8 << 20;

/// Refuses a record longer than this at open (a damaged length field, not an entry).
const MAX_RECORD: u64 = 256 << 20;

/// Zeros the flusher writes ahead of the last record, this many at a time, once less than half
/// of it is left. A megabyte costs ~1 ms to write and ~1.5 ms more on the next fsync, and saves
/// ~0.1 ms on each of the ~170 fsyncs of 6 KB entries it takes to fill.
const GROW: u64 = 1 << 20;

/// (index, offset, length with header) of one record.
type Record = (u64, u64, u64);

pub(crate) struct Wal {
    path: PathBuf,
    state: Arc<Mutex<State>>,
    flush: mpsc::Sender<Option<LogFlushed<TypeConfig>>>,
    durable: Arc<DurableTx>,
}

struct State {
    /// The current file; compaction replaces it. The flusher syncs whichever is current.
    file: Arc<File>,
    end: u64,
    /// Live records in index order.
    records: VecDeque<Record>,
    /// Bytes of purged records before the first live one.
    dead: u64,
    /// The file's length: `end` and the zeros written ahead of it.
    allocated: u64,
    /// Bumped by every truncation: an fsync that began before one does not vouch for the
    /// records written after it.
    truncations: u64,
}

impl Wal {
    /// Opens or creates the log file, cutting off a torn last record.
    pub(crate) fn open(path: &Path) -> Result<Wal, StoreError> {
        let io = |e: io::Error| StoreError::Io {
            path: path.to_path_buf(),
            detail: e.to_string(),
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io)?;
        let (records, end) = scan(&file).map_err(|detail| StoreError::Corrupt {
            path: path.to_path_buf(),
            detail,
        })?;
        let mut allocated = file.metadata().map_err(io)?.len();
        let zeros = zeros_or_end(&file, end, allocated).map_err(|detail| StoreError::Corrupt {
            path: path.to_path_buf(),
            detail,
        })?;
        if !zeros {
            tracing::warn!(
                path = %path.display(),
                kept = end,
                cut = allocated - end,
                "raft log: cutting off a record torn by a crash before it was flushed"
            );
            file.set_len(end).map_err(io)?;
            allocated = end;
        }
        // What a crashed process left in the page cache is on disk from here on: the durable
        // index starts at the last record.
        file.sync_all().map_err(io)?;
        let durable = Arc::new(DurableTx::new(records.back().map_or(0, |r| r.0)));
        let dead = records.front().map_or(end, |r| r.1);
        let state = Arc::new(Mutex::new(State {
            file: Arc::new(file),
            end,
            records,
            dead,
            allocated,
            truncations: 0,
        }));
        let flush = start_flusher(Arc::downgrade(&state), durable.clone());
        Ok(Wal {
            path: path.to_path_buf(),
            state,
            flush,
            durable,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    #[cfg(test)]
    pub(crate) fn first_index(&self) -> Option<u64> {
        self.lock().records.front().map(|r| r.0)
    }

    pub(crate) fn last_index(&self) -> Option<u64> {
        self.lock().records.back().map(|r| r.0)
    }

    /// Writes `entries` (index, payload) after the last record; not yet durable.
    pub(crate) fn append(&self, entries: &[(u64, Vec<u8>)]) -> io::Result<()> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let mut st = self.lock();
        if let Some(&(last, _, _)) = st.records.back() {
            if first.0 != last + 1 {
                return Err(io::Error::other(format!(
                    "raft log: entry {} does not follow the last stored entry {last}",
                    first.0
                )));
            }
        }
        let mut buf = Vec::with_capacity(entries.iter().map(|e| e.1.len() + HEADER as usize).sum());
        let mut placed = Vec::with_capacity(entries.len());
        let mut at = st.end;
        for (i, (index, payload)) in entries.iter().enumerate() {
            if i > 0 && *index != entries[i - 1].0 + 1 {
                return Err(io::Error::other(format!(
                    "raft log: entries to append are not contiguous at {index}"
                )));
            }
            let len = u32::try_from(payload.len())
                .map_err(|_| io::Error::other(format!("raft log: entry {index} is too large")))?;
            buf.extend_from_slice(&len.to_le_bytes());
            buf.extend_from_slice(&crc(*index, payload).to_le_bytes());
            buf.extend_from_slice(&index.to_le_bytes());
            buf.extend_from_slice(payload);
            let size = HEADER + u64::from(len);
            placed.push((*index, at, size));
            at += size;
        }
        st.file.write_all_at(&buf, st.end)?;
        st.end = at;
        st.allocated = st.allocated.max(at);
        st.records.extend(placed);
        Ok(())
    }

    /// Makes everything appended so far durable, now.
    pub(crate) fn sync(&self) -> io::Result<()> {
        let (file, last, truncations) = to_flush(&self.state);
        file.sync_all()?;
        flushed(&self.state, &self.durable, last, truncations);
        Ok(())
    }

    /// Makes everything appended so far durable in the background, then fires `callback` (if
    /// any). Without one, `durable()` says when it is done.
    pub(crate) fn flush(&self, callback: Option<LogFlushed<TypeConfig>>) {
        if let Err(mpsc::SendError(callback)) = self.flush.send(callback) {
            self.durable.fail();
            if let Some(callback) = callback {
                callback.log_io_completed(Err(io::Error::other("the raft log flusher has stopped")));
            }
        }
    }

    /// How far the log is on disk.
    pub(crate) fn durable(&self) -> Durable {
        self.durable.subscribe()
    }

    /// The index up to which the log is on disk now; `None` after a failed fsync.
    pub(crate) fn durable_upto(&self) -> Option<u64> {
        self.durable.upto()
    }

    /// Records up to `index` are acknowledged before their fsync: `durable()` waits for them.
    pub(crate) fn acked_early(&self, index: u64) {
        self.durable.acked_early(index);
    }

    /// The payloads of the live records with index in `[from, to)`.
    pub(crate) fn read(&self, from: u64, to: u64) -> io::Result<Vec<Vec<u8>>> {
        let st = self.lock();
        let Some(&(first, _, _)) = st.records.front() else {
            return Ok(Vec::new());
        };
        let lo = from.max(first) - first;
        let hi = (to.max(first) - first).min(st.records.len() as u64);
        if lo >= hi {
            return Ok(Vec::new());
        }
        let (lo, hi) = (lo as usize, hi as usize);
        let start = st.records[lo].1;
        let stop = st.records[hi - 1].1 + st.records[hi - 1].2;
        let mut span = vec![0u8; (stop - start) as usize];
        st.file.read_exact_at(&mut span, start)?;
        let mut out = Vec::with_capacity(hi - lo);
        for &(_, offset, size) in st.records.range(lo..hi) {
            let at = (offset - start) as usize;
            out.push(span[at + HEADER as usize..at + size as usize].to_vec());
        }
        Ok(out)
    }

    /// Removes the records with index >= `from`, durably.
    pub(crate) fn truncate(&self, from: u64) -> io::Result<()> {
        let mut st = self.lock();
        let Some(pos) = st.records.iter().position(|r| r.0 >= from) else {
            return Ok(());
        };
        let end = st.records[pos].1;
        st.records.truncate(pos);
        st.end = end;
        if st.records.is_empty() {
            st.dead = end;
        }
        // Cut, not zeroed: the records after `end` must be gone before anything is written there.
        st.file.set_len(end)?;
        st.allocated = end;
        st.truncations += 1;
        st.file.sync_all()?;
        // Everything left is on disk now, and nothing from `from` on is.
        self.durable.cut(from.saturating_sub(1));
        Ok(())
    }

    /// Forgets the records with index <= `upto` (the snapshot has them); compacts the file when
    /// they are most of it.
    pub(crate) fn purge(&self, upto: u64) -> io::Result<()> {
        let mut st = self.lock();
        while st.records.front().is_some_and(|r| r.0 <= upto) {
            st.records.pop_front();
        }
        st.dead = st.records.front().map_or(st.end, |r| r.1);
        let live = st.end - st.dead;
        if st.dead >= COMPACT_AT && st.dead > live {
            self.compact(&mut st)?;
        }
        Ok(())
    }

    /// Copies the live records to a new file and renames it over the old one.
    fn compact(&self, st: &mut State) -> io::Result<()> {
        let tmp = self.path.with_extension("wal.tmp");
        let mut live = vec![0u8; (st.end - st.dead) as usize];
        st.file.read_exact_at(&mut live, st.dead)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        file.write_all_at(&live, 0)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)?.sync_all()?;
        }
        let shift = st.dead;
        for r in st.records.iter_mut() {
            r.1 -= shift;
        }
        st.end -= shift;
        st.allocated = st.end;
        st.dead = 0;
        st.file = Arc::new(file);
        tracing::info!(path = %self.path.display(), freed = shift, "raft log: compacted the purged records away");
        Ok(())
    }
}

/// Reads the file through: the live records and where the good data ends.
fn scan(file: &File) -> Result<(VecDeque<Record>, u64), String> {
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    let mut records: VecDeque<Record> = VecDeque::new();
    let mut at = 0u64;
    let mut header = [0u8; HEADER as usize];
    while at < len {
        // A record that would run past the end of the file is the torn last write.
        if len - at < HEADER {
            break;
        }
        file.read_exact_at(&mut header, at).map_err(|e| e.to_string())?;
        let size = u64::from(u32::from_le_bytes([header[0], header[1], header[2], header[3]]));
        let want = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let index = u64::from_le_bytes([
            header[8], header[9], header[10], header[11], header[12], header[13], header[14], header[15],
        ]);
        if size > MAX_RECORD {
            if zeros_or_end(file, at, len)? {
                break;
            }
            return Err(damaged(at, "a record's length field is impossible", len));
        }
        if len - at - HEADER < size {
            // Runs past the end of the file: the last write, torn.
            break;
        }
        let mut payload = vec![0u8; size as usize];
        file.read_exact_at(&mut payload, at + HEADER)
            .map_err(|e| e.to_string())?;
        let next = at + HEADER + size;
        let follows = records.back().is_none_or(|r| index == r.0 + 1);
        if size == 0 || crc(index, &payload) != want || !follows {
            // Zeros from here (the space written ahead), or the last record written, torn.
            if !zeros_or_end(file, at, len)? && !zeros_or_end(file, next, len)? {
                return Err(damaged(at, "a record fails its checksum or is out of order", len));
            }
            break;
        }
        records.push_back((index, at, HEADER + size));
        at = next;
    }
    Ok((records, at))
}

/// True when everything from `at` to `len` is zero bytes (the zeros written ahead, or a file
/// extended but not written: the shape a crash leaves after a torn append), or less than a
/// record header is left.
fn zeros_or_end(file: &File, at: u64, len: u64) -> Result<bool, String> {
    if len.saturating_sub(at) <= HEADER {
        return Ok(true);
    }
    let mut chunk = vec![0u8; (len - at).min(1 << 20) as usize];
    let mut from = at;
    while from < len {
        let n = (len - from).min(chunk.len() as u64) as usize;
        file.read_exact_at(&mut chunk[..n], from)
            .map_err(|e| e.to_string())?;
        if chunk[..n].iter().any(|b| *b != 0) {
            return Ok(false);
        }
        from += n as u64;
    }
    Ok(true)
}

/// Writes zeros ahead of the last record when less than half of `GROW` is left (see the
/// module comment). An error only costs the speed-up: appends extend the file as before.
fn write_ahead(state: &Mutex<State>) -> io::Result<()> {
    let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
    if st.allocated - st.end >= GROW / 2 {
        return Ok(());
    }
    let from = st.allocated;
    st.file.write_all_at(&vec![0u8; GROW as usize], from)?;
    st.allocated = from + GROW;
    Ok(())
}

fn damaged(at: u64, what: &str, len: u64) -> String {
    format!(
        "the raft log is damaged at byte {at} of {len}: {what}, and complete records follow. \
         Refusing to drop entries this node may have acknowledged"
    )
}

fn crc(index: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&index.to_le_bytes());
    h.update(payload);
    h.finalize()
}

/// The file to fsync, the last index it holds, and the truncation count, taken together.
fn to_flush(state: &Mutex<State>) -> (Arc<File>, Option<u64>, u64) {
    let st = state.lock().unwrap_or_else(|p| p.into_inner());
    (st.file.clone(), st.records.back().map(|r| r.0), st.truncations)
}

/// Publishes that an fsync begun at `last` / `truncations` has finished.
fn flushed(state: &Mutex<State>, durable: &DurableTx, last: Option<u64>, truncations: u64) {
    let st = state.lock().unwrap_or_else(|p| p.into_inner());
    if let (Some(last), true) = (last, st.truncations == truncations) {
        durable.advance(last);
    }
}

/// The flusher: fsyncs the current file, publishes how far the log is on disk, then fires the
/// callbacks queued before the fsync began, in order. It holds the log only weakly and ends
/// with it.
fn start_flusher(
    state: std::sync::Weak<Mutex<State>>,
    durable: Arc<DurableTx>,
) -> mpsc::Sender<Option<LogFlushed<TypeConfig>>> {
    let (tx, rx) = mpsc::channel::<Option<LogFlushed<TypeConfig>>>();
    let spawned = std::thread::Builder::new()
        .name("raft-log-flush".into())
        .spawn(move || {
            // Warn once per run of failures, not at every fsync.
            let mut ahead_failed = false;
            while let Ok(first) = rx.recv() {
                let mut waiting = vec![first];
                waiting.extend(rx.try_iter());
                let started = std::time::Instant::now();
                let result = match state.upgrade() {
                    Some(state) => {
                        // Appends go on while this fsync runs: the lock is held only to take the file.
                        let (file, last, truncations) = to_flush(&state);
                        let synced = file.sync_data();
                        match &synced {
                            Ok(()) => flushed(&state, &durable, last, truncations),
                            Err(e) => {
                                tracing::error!("raft log: an fsync failed ({e}); nothing written since counts as on disk");
                                durable.fail();
                            }
                        }
                        synced
                    }
                    None => Err(io::Error::other("the raft log was closed before it was flushed")),
                };
                let took = started.elapsed();
                if took >= super::log::SLOW_WRITE {
                    tracing::warn!(
                        ms = took.as_millis() as u64,
                        appends = waiting.len(),
                        "raft store: an fsync of the log was slow (the disk is busy); commits waited for it"
                    );
                }
                for callback in waiting.into_iter().flatten() {
                    callback.log_io_completed(match &result {
                        Ok(()) => Ok(()),
                        Err(e) => Err(io::Error::other(format!("raft log fsync failed: {e}"))),
                    });
                }
                // Between fsyncs, while the callbacks' commits go round: no fsync waits on it.
                if let Some(state) = state.upgrade() {
                    match write_ahead(&state) {
                        Ok(()) => ahead_failed = false,
                        Err(e) if !ahead_failed => {
                            ahead_failed = true;
                            tracing::warn!(
                                "raft log: cannot write zeros ahead of the log ({e}); appends grow the file instead"
                            );
                        }
                        Err(_) => {}
                    }
                }
            }
        });
    if let Err(e) = spawned {
        // The receiver is gone with the closure: every flush then fails with a clear error.
        tracing::error!("cannot start the raft log flusher thread: {e}");
    }
    tx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(from: u64, to: u64) -> Vec<(u64, Vec<u8>)> {
        (from..to)
            .map(|i| (i, format!("entry {i}").into_bytes()))
            .collect()
    }

    #[test]
    fn appends_reads_truncates_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raft.wal");
        let wal = Wal::open(&path).unwrap();
        wal.append(&entries(1, 11)).unwrap();
        assert_eq!(
            wal.read(3, 6).unwrap(),
            vec![b"entry 3".to_vec(), b"entry 4".to_vec(), b"entry 5".to_vec()]
        );
        assert!(wal.append(&entries(12, 13)).is_err(), "a gap is refused");
        wal.truncate(8).unwrap();
        assert_eq!(wal.last_index(), Some(7));
        wal.append(&entries(8, 9)).unwrap();
        drop(wal);
        let wal = Wal::open(&path).unwrap();
        assert_eq!((wal.first_index(), wal.last_index()), (Some(1), Some(8)));
        assert_eq!(wal.read(8, 9).unwrap(), vec![b"entry 8".to_vec()]);
    }

    #[test]
    fn a_torn_last_record_is_cut_off_and_damage_in_the_middle_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raft.wal");
        let wal = Wal::open(&path).unwrap();
        wal.append(&entries(1, 4)).unwrap();
        drop(wal);
        let full = std::fs::read(&path).unwrap();
        // Torn: the last record only half written.
        std::fs::write(&path, &full[..full.len() - 3]).unwrap();
        let wal = Wal::open(&path).unwrap();
        assert_eq!(wal.last_index(), Some(2));
        wal.append(&entries(3, 4)).unwrap();
        drop(wal);
        // Torn the other way: the file extended with zeros that were never written.
        let mut zeros = std::fs::read(&path).unwrap();
        zeros.extend_from_slice(&[0u8; 40]);
        std::fs::write(&path, &zeros).unwrap();
        assert_eq!(Wal::open(&path).unwrap().last_index(), Some(3));
        // Damage: a flipped byte in the first record's payload, complete records after it.
        let mut bad = std::fs::read(&path).unwrap();
        bad[HEADER as usize + 1] ^= 0xff;
        std::fs::write(&path, &bad).unwrap();
        let err = Wal::open(&path).err().unwrap().to_string();
        assert!(err.contains("damaged at byte 0"), "{err}");
    }

    #[test]
    fn zeros_ahead_end_the_log_and_a_record_torn_into_them_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raft.wal");
        let len = || std::fs::metadata(&path).unwrap().len();
        let wal = Wal::open(&path).unwrap();
        wal.append(&entries(1, 4)).unwrap();
        let records = wal.lock().end;
        write_ahead(&wal.state).unwrap();
        assert_eq!(len(), records + GROW);
        write_ahead(&wal.state).unwrap();
        assert_eq!(len(), records + GROW, "enough is left: nothing more written");
        wal.append(&entries(4, 5)).unwrap();
        assert_eq!(len(), records + GROW, "the append went into the zeros");
        drop(wal);

        // Reopened: the zeros are the end of the log and stay as the space ahead.
        let wal = Wal::open(&path).unwrap();
        assert_eq!(wal.last_index(), Some(4));
        assert_eq!(len(), records + GROW);
        let before_last = wal.lock().end;
        wal.append(&entries(5, 6)).unwrap();
        let end = wal.lock().end;
        drop(wal);

        // A crash tore the last record: its tail never reached the disk, zeros after it.
        let mut torn = std::fs::read(&path).unwrap();
        torn[end as usize - 3..end as usize].fill(0);
        std::fs::write(&path, &torn).unwrap();
        let wal = Wal::open(&path).unwrap();
        assert_eq!(wal.last_index(), Some(4));
        assert_eq!(
            len(),
            before_last,
            "the torn record and the zeros after it are cut off"
        );
        assert_eq!(wal.read(4, 5).unwrap(), vec![b"entry 4".to_vec()]);
        wal.append(&entries(5, 6)).unwrap();
        drop(wal);

        // Damage, not a torn write: a bad record with a good one after it, zeros ahead or not.
        let wal = Wal::open(&path).unwrap();
        write_ahead(&wal.state).unwrap();
        drop(wal);
        let mut bad = std::fs::read(&path).unwrap();
        bad[HEADER as usize + 1] ^= 0xff;
        std::fs::write(&path, &bad).unwrap();
        let err = Wal::open(&path).err().unwrap().to_string();
        assert!(err.contains("damaged at byte 0"), "{err}");
    }

    #[test]
    fn purge_forgets_and_compaction_keeps_what_is_live() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raft.wal");
        let wal = Wal::open(&path).unwrap();
        let big: Vec<(u64, Vec<u8>)> = (1..=40).map(|i| (i, vec![i as u8; 512 << 10])).collect();
        wal.append(&big).unwrap();
        wal.purge(35).unwrap();
        assert_eq!(wal.first_index(), Some(36));
        assert!(
            std::fs::metadata(&path).unwrap().len() < 6 * (512 << 10),
            "compacted"
        );
        assert_eq!(wal.read(36, 37).unwrap(), vec![vec![36u8; 512 << 10]]);
        wal.append(&entries(41, 42)).unwrap();
        drop(wal);
        let wal = Wal::open(&path).unwrap();
        assert_eq!((wal.first_index(), wal.last_index()), (Some(36), Some(41)));
    }
}
