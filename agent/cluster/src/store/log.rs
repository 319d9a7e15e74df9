//! The Raft log half of the store (openraft's `RaftLogStorage`): entries in `raft.wal`
//! (`wal.rs`), the vote, committed index and purge point in redb.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::PathBuf;
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{EntryPayload, LogState, OptionalSend, RaftLogReader};
use redb::{Database, Durability, ReadableDatabase, ReadableTable};

use super::cache::EntryCache;
use super::codec::{decode, encode, read_err, read_logs_err, write_err, write_logs_err};
use super::durable::Durable;
use super::wal::Wal;
use super::{StoreError, KEY_COMMITTED, KEY_PURGED, KEY_VOTE, LOG, META};
use crate::types::{Entry, LogId, NodeId, StorageError, TypeConfig, Vote};

#[derive(Clone)]
pub struct LogStore {
    pub(crate) db: Arc<Database>,
    pub(crate) path: PathBuf,
    wal: Arc<Wal>,
    /// The newest entries, decoded (`cache.rs`); shared with every reader this store hands out.
    cache: Arc<std::sync::Mutex<EntryCache>>,
    /// The newest committed id openraft reported, and when one was last written.
    committed: Arc<std::sync::Mutex<CommittedMark>>,
    /// This node's id, once known (`set_node_id`): until then every append waits for its fsync.
    node_id: Arc<std::sync::OnceLock<NodeId>>,
    /// The vote as last read or saved: says whether this node leads.
    vote: Arc<std::sync::Mutex<Option<Vote>>>,
}

/// `save_committed` keeps the newest value here and writes it at most once a second.
#[derive(Debug)]
struct CommittedMark {
    latest: Option<LogId>,
    written_at: std::time::Instant,
}

impl LogStore {
    fn committed_mark(&self) -> std::sync::MutexGuard<'_, CommittedMark> {
        self.committed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Opens the log beside the redb file at `path` (`raft.redb` → `raft.wal`). Entries an
    /// older version kept in redb's log table are moved into the file once.
    pub(crate) fn open(db: Arc<Database>, path: PathBuf) -> Result<Self, StoreError> {
        let wal = Arc::new(Wal::open(&path.with_extension("wal"))?);
        let store = LogStore {
            db,
            path,
            wal,
            cache: Arc::default(),
            committed: Arc::new(std::sync::Mutex::new(CommittedMark {
                latest: None,
                written_at: std::time::Instant::now(),
            })),
            node_id: Arc::default(),
            vote: Arc::default(),
        };
        let io = |detail: String| StoreError::Io {
            path: store.path.clone(),
            detail,
        };
        store
            .migrate()
            .map_err(|e| io(format!("moving the raft log out of redb: {e}")))?;
        // A purge records its point before it drops records; a crash in between leaves records
        // the snapshot already has. Forget them now.
        let purged: Option<LogId> = store.read_meta(KEY_PURGED).map_err(|e| io(e.to_string()))?;
        if let Some(p) = purged {
            store.wal.purge(p.index).map_err(|e| io(e.to_string()))?;
        }
        Ok(store)
    }

    /// Tells the store which node it belongs to, so a leader's own entries can be replicated
    /// while its fsync runs (`durable.rs`). Set once, before the Raft node starts.
    pub fn set_node_id(&self, id: NodeId) {
        let _ = self.node_id.set(id);
    }

    /// How far the log is on disk: the state machine and outgoing AppendEntries wait on it.
    pub fn durable(&self) -> Durable {
        self.wal.durable()
    }

    fn remember_vote(&self, vote: Option<Vote>) {
        *self.vote.lock().unwrap_or_else(|p| p.into_inner()) = vote;
    }

    /// Whether `entries` are this node's own proposals as the leader of the current term (and
    /// not membership changes): those may be acknowledged before their fsync (`durable.rs`).
    fn leaders_own(&self, entries: &[Entry]) -> bool {
        let Some(me) = self.node_id.get() else {
            return false;
        };
        let vote = self.vote.lock().unwrap_or_else(|p| p.into_inner());
        let Some(vote) = vote.as_ref() else {
            return false;
        };
        own_entries(*me, vote, entries)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, EntryCache> {
        // A panic while holding it cannot leave it half-updated in a way that matters more
        // than losing the cache: every operation keeps the run contiguous.
        self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn migrate(&self) -> Result<(), Box<dyn std::error::Error>> {
        let old: Vec<(u64, Vec<u8>)> = {
            let txn = self.db.begin_read()?;
            let table = txn.open_table(LOG)?;
            let mut out = Vec::new();
            for item in table.iter()? {
                let (k, v) = item?;
                out.push((k.value(), v.value().to_vec()));
            }
            out
        };
        if old.is_empty() {
            return Ok(());
        }
        if self.wal.last_index().is_none() {
            self.wal.append(&old)?;
            self.wal.sync()?;
            tracing::info!(
                entries = old.len(),
                "raft log: moved the log from redb into raft.wal"
            );
        }
        let txn = self.db.begin_write()?;
        txn.open_table(LOG)?.retain(|_, _| false)?;
        txn.commit()?;
        Ok(())
    }

    // The error type is openraft's `StorageError`, fixed by its traits; boxing it here would
    // only move the conversion.
    #[allow(clippy::result_large_err)]
    fn read_meta<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StorageError> {
        let txn = self.db.begin_read().map_err(read_err)?;
        let table = txn.open_table(META).map_err(read_err)?;
        match table.get(key).map_err(read_err)? {
            Some(v) => Ok(Some(decode(v.value()).map_err(read_err)?)),
            None => Ok(None),
        }
    }

    async fn write_meta<T: serde::Serialize>(
        &self,
        key: &'static str,
        value: &T,
    ) -> Result<(), StorageError> {
        let bytes = encode(value).map_err(write_err)?;
        let db = self.db.clone();
        blocking(key, move || -> Result<(), redb::Error> {
            let mut txn = db.begin_write()?;
            txn.set_durability(Durability::Immediate)
                .map_err(|e| redb::Error::Corrupted(e.to_string()))?;
            txn.open_table(META)?.insert(key, bytes.as_slice())?;
            txn.commit()?;
            Ok(())
        })
        .await
        .map_err(write_err)
    }
}

/// A durable write slower than this is logged: openraft waits for it inline (a vote must be on
/// disk before it is sent or granted), so a slow disk shows up as slow elections and commits.
pub(crate) const SLOW_WRITE: std::time::Duration = std::time::Duration::from_millis(250);

/// Runs blocking store IO (fsync) off the async worker threads; `op` names it in the slow-write
/// warning.
async fn blocking<T: Send + 'static>(
    op: &'static str,
    f: impl FnOnce() -> Result<T, redb::Error> + Send + 'static,
) -> Result<T, redb::Error> {
    let started = std::time::Instant::now();
    let result = match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(join) => Err(redb::Error::Corrupted(format!("store task failed: {join}"))),
    };
    let took = started.elapsed();
    if took >= SLOW_WRITE {
        tracing::warn!(
            op,
            ms = took.as_millis() as u64,
            "raft store: a durable write was slow (the disk is busy); Raft waited for it"
        );
    }
    result
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let from = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let to = match range.end_bound() {
            Bound::Included(i) => i.saturating_add(1),
            Bound::Excluded(i) => *i,
            Bound::Unbounded => u64::MAX,
        };
        if let Some(hit) = self.cache().get(from, to) {
            return Ok(hit);
        }
        let mut out = Vec::new();
        for bytes in self.wal.read(from, to).map_err(read_logs_err)? {
            out.push(decode::<Entry>(&bytes).map_err(read_logs_err)?);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged: Option<LogId> = self.read_meta(KEY_PURGED)?;
        let last = match self.wal.last_index() {
            Some(i) => match self.wal.read(i, i + 1).map_err(read_logs_err)?.first() {
                Some(bytes) => Some(decode::<Entry>(bytes).map_err(read_logs_err)?.log_id),
                None => None,
            },
            None => None,
        };
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last.or(last_purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.write_meta(KEY_VOTE, vote).await?;
        self.remember_vote(Some(*vote));
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        let vote: Option<Vote> = self.read_meta(KEY_VOTE)?;
        self.remember_vote(vote);
        Ok(vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not needed for safety (a restart re-learns the commit point from a quorum), only to
        // re-apply more at once after a restart. So no write per commit: each was a redb
        // transaction on a blocking thread, on every replica, for every entry. The newest
        // value is kept in memory and written, durably, at most once a second.
        // Never ahead of what is on disk (`durable.rs`): a restart applies up to this point
        // from the log, which must have it.
        let on_disk = match (committed, self.wal.durable_upto()) {
            (Some(c), Some(upto)) => c.index <= upto,
            (None, _) => true,
            (Some(_), None) => false,
        };
        let due = {
            let mut mark = self.committed_mark();
            mark.latest = committed;
            let due = on_disk && mark.written_at.elapsed() >= std::time::Duration::from_secs(1);
            if due {
                mark.written_at = std::time::Instant::now();
            }
            due
        };
        if !due {
            return Ok(());
        }
        self.write_meta(KEY_COMMITTED, &committed).await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        // This process's newest if it has one (never older than what is on disk).
        if let Some(latest) = self.committed_mark().latest {
            return Ok(Some(latest));
        }
        Ok(self.read_meta::<Option<LogId>>(KEY_COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let mut encoded = Vec::with_capacity(entries.len());
        for e in &entries {
            encoded.push((e.log_id.index, encode(e).map_err(write_logs_err)?));
        }
        // Into the page cache (readable at once), durable when the flusher's fsync is: openraft
        // counts the entries as stored only when the callback fires.
        if let Err(e) = self.wal.append(&encoded) {
            callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
            return Err(write_logs_err(e));
        }
        let own = self.leaders_own(&entries);
        self.cache().appended(entries);
        if own {
            // Replicated while the fsync runs; applied only once it is done (`durable.rs`).
            if let Some((index, _)) = encoded.last() {
                self.wal.acked_early(*index);
            }
            callback.log_io_completed(Ok(()));
            self.wal.flush(None);
        } else {
            self.wal.flush(Some(callback));
        }
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // The cache first: a reader must never get an entry the file no longer has.
        self.cache().truncated(log_id.index);
        let wal = self.wal.clone();
        blocking("truncate", move || {
            wal.truncate(log_id.index).map_err(redb::Error::Io)
        })
        .await
        .map_err(write_logs_err)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // The purge point first (durable), then the records: a crash between leaves records the
        // snapshot has, which `open` forgets again.
        self.write_meta(KEY_PURGED, &log_id).await?;
        self.cache().purged(log_id.index);
        let wal = self.wal.clone();
        blocking("purge", move || wal.purge(log_id.index).map_err(redb::Error::Io))
            .await
            .map_err(write_logs_err)
    }
}

/// `entries` were proposed by `me` as the leader of `vote`'s term, and none changes membership.
fn own_entries(me: NodeId, vote: &Vote, entries: &[Entry]) -> bool {
    vote.is_committed()
        && vote.leader_id().voted_for() == Some(me)
        && entries.iter().all(|e| {
            e.log_id.leader_id == *vote.leader_id() && !matches!(e.payload, EntryPayload::Membership(_))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::store::blank_entry as entry;

    #[test]
    fn only_a_leaders_own_entries_skip_the_wait_for_their_fsync() {
        // blank_entry is written by node 1 as leader of term 1.
        let leading = Vote::new_committed(1, 1);
        assert!(own_entries(1, &leading, &[entry(5), entry(6)]));
        assert!(!own_entries(2, &leading, &[entry(5)]), "node 2 follows node 1");
        assert!(
            !own_entries(1, &Vote::new(1, 1), &[entry(5)]),
            "a candidate, not yet a leader"
        );
        assert!(
            !own_entries(1, &Vote::new_committed(2, 1), &[entry(5)]),
            "an entry of an earlier term, replicated to this node"
        );
        let membership = Entry {
            log_id: entry(7).log_id,
            payload: EntryPayload::Membership(openraft::Membership::new(
                vec![std::collections::BTreeSet::from([1])],
                None,
            )),
        };
        assert!(
            !own_entries(1, &leading, &[entry(6), membership]),
            "membership waits"
        );
    }

    /// A data dir written before raft.wal kept its entries in redb's log table: they move into
    /// the file at the first open, once.
    #[tokio::test]
    async fn entries_in_the_old_redb_table_move_into_the_log_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raft.redb");
        {
            let (store, _sm) = super::super::open_store(&path).unwrap();
            let txn = store.db.begin_write().unwrap();
            {
                let mut t = txn.open_table(LOG).unwrap();
                for i in 1..=3 {
                    t.insert(i, encode(&entry(i)).unwrap().as_slice()).unwrap();
                }
            }
            txn.commit().unwrap();
        }
        std::fs::remove_file(dir.path().join("raft.wal")).unwrap();
        for _ in 0..2 {
            let (mut store, _sm) = super::super::open_store(&path).unwrap();
            let got = store.try_get_log_entries(1..=3).await.unwrap();
            assert_eq!(
                got.iter().map(|e| e.log_id.index).collect::<Vec<_>>(),
                vec![1, 2, 3]
            );
            let left = store
                .db
                .begin_read()
                .unwrap()
                .open_table(LOG)
                .unwrap()
                .iter()
                .unwrap()
                .count();
            assert_eq!(left, 0, "the redb table is emptied");
        }
    }
}
