//! The Raft log half of the store (openraft's `RaftLogStorage`).

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::PathBuf;
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{LogState, OptionalSend, RaftLogReader};
use redb::{Database, Durability, ReadableDatabase, ReadableTable};

use super::codec::{decode, encode, read_err, read_logs_err, write_err, write_logs_err};
use super::{KEY_COMMITTED, KEY_PURGED, KEY_VOTE, LOG, META};
use crate::types::{Entry, LogId, StorageError, TypeConfig, Vote};

#[derive(Clone)]
pub struct LogStore {
    pub(crate) db: Arc<Database>,
    pub(crate) path: PathBuf,
}

impl LogStore {
    pub(crate) fn new(db: Arc<Database>, path: PathBuf) -> Self {
        LogStore { db, path }
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
        durability: Durability,
    ) -> Result<(), StorageError> {
        let bytes = encode(value).map_err(write_err)?;
        let db = self.db.clone();
        blocking(key, move || -> Result<(), redb::Error> {
            let mut txn = db.begin_write()?;
            txn.set_durability(durability)
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
const SLOW_WRITE: std::time::Duration = std::time::Duration::from_millis(250);

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
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(i) => Bound::Included(*i),
            Bound::Excluded(i) => Bound::Excluded(*i),
            Bound::Unbounded => Bound::Unbounded,
        };
        let txn = self.db.begin_read().map_err(read_logs_err)?;
        let table = txn.open_table(LOG).map_err(read_logs_err)?;
        let iter = table
            .range::<u64>((Bound::Included(start), end))
            .map_err(read_logs_err)?;
        let mut out = Vec::new();
        for item in iter {
            let (_, v) = item.map_err(read_logs_err)?;
            out.push(decode::<Entry>(v.value()).map_err(read_logs_err)?);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged: Option<LogId> = self.read_meta(KEY_PURGED)?;
        let txn = self.db.begin_read().map_err(read_logs_err)?;
        let table = txn.open_table(LOG).map_err(read_logs_err)?;
        let last = match table.last().map_err(read_logs_err)? {
            Some((_, v)) => Some(decode::<Entry>(v.value()).map_err(read_logs_err)?.log_id),
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
        self.write_meta(KEY_VOTE, vote, Durability::Immediate).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.read_meta(KEY_VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.write_meta(KEY_COMMITTED, &committed, Durability::None).await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.read_meta::<Option<LogId>>(KEY_COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut encoded = Vec::new();
        for e in entries {
            encoded.push((e.log_id.index, encode(&e).map_err(write_logs_err)?));
        }
        let db = self.db.clone();
        let res = blocking("append", move || {
            let txn = db.begin_write()?;
            {
                let mut table = txn.open_table(LOG)?;
                for (index, bytes) in &encoded {
                    table.insert(*index, bytes.as_slice())?;
                }
            }
            txn.commit()?;
            Ok(())
        })
        .await;
        match res {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(write_logs_err(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let db = self.db.clone();
        blocking("truncate", move || {
            let txn = db.begin_write()?;
            txn.open_table(LOG)?.retain_in(log_id.index.., |_, _| false)?;
            txn.commit()?;
            Ok(())
        })
        .await
        .map_err(write_logs_err)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let bytes = encode(&log_id).map_err(write_logs_err)?;
        let db = self.db.clone();
        blocking("purge", move || {
            let txn = db.begin_write()?;
            txn.open_table(META)?.insert(KEY_PURGED, bytes.as_slice())?;
            txn.open_table(LOG)?.retain_in(..=log_id.index, |_, _| false)?;
            txn.commit()?;
            Ok(())
        })
        .await
        .map_err(write_logs_err)
    }
}
