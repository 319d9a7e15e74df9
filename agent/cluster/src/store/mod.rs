//! The durable Raft store: `raft.wal` holds the log entries (an append-only file, `wal.rs`);
//! one redb file, `raft.redb`, holds the vote, the committed index, the purge point, the latest
//! state-machine snapshot and this node's identity.
//!
//! Durability (see docs/ARCHITECTURE.md, "Durability"):
//! - `append` writes the entries to `raft.wal` and returns; openraft's callback fires only after
//!   the flusher's `fdatasync` covers them (one fsync for every append queued meanwhile, off
//!   the Raft core's path);
//! - `save_vote`, `truncate`, `purge`, snapshots and the identity are durable (fsync) before the
//!   call returns;
//! - `save_committed` is durable at most once a second (`Durability::None` in between). Losing
//!   it in a crash only means re-applying fewer entries at start-up; the leader re-establishes
//!   the commit index (Raft's committed index is not required to be durable).
//! - The state machine lives in memory; at start-up it is the last snapshot plus the committed
//!   log entries after it, re-applied by openraft.

mod cache;
mod codec;
mod durable;
mod log;
mod state_machine;
mod wal;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, ReadableDatabase, TableDefinition};

pub use durable::{Durable, FlushFailed};
pub use log::LogStore;
pub use state_machine::StateMachineStore;

pub(crate) const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");
pub(crate) const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshot");
pub(crate) const LOCAL: TableDefinition<&str, &[u8]> = TableDefinition::new("local");

pub(crate) const KEY_VOTE: &str = "vote";
pub(crate) const KEY_COMMITTED: &str = "committed";
pub(crate) const KEY_PURGED: &str = "last_purged";
pub(crate) const KEY_SNAPSHOT_META: &str = "meta";
pub(crate) const KEY_SNAPSHOT_DATA: &str = "data";

/// Why the store could not be opened or used. Messages name the file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the store {path} is already in use by another process (is `cortex up` already running with this data dir?)")]
    AlreadyOpen { path: PathBuf },
    #[error("the store {path} could not be opened: {detail}. Nothing was changed; move the file away to start a new cluster, or restore it from a backup")]
    Corrupt { path: PathBuf, detail: String },
    #[error("the store {path} could not be read or written: {detail}")]
    Io { path: PathBuf, detail: String },
}

/// Opens (or creates) the store at `path` and returns the two halves openraft needs.
pub fn open_store(path: &Path) -> Result<(LogStore, StateMachineStore), StoreError> {
    let db = open_db(path)?;
    let db = Arc::new(db);
    let log = LogStore::open(db.clone(), path.to_path_buf())?;
    let sm = StateMachineStore::load(db, log.durable()).map_err(|e| StoreError::Corrupt {
        path: path.to_path_buf(),
        detail: format!("its snapshot could not be decoded: {e}"),
    })?;
    Ok((log, sm))
}

fn open_db(path: &Path) -> Result<Database, StoreError> {
    let db = Database::builder().create(path).map_err(|e| match e {
        redb::DatabaseError::DatabaseAlreadyOpen => StoreError::AlreadyOpen {
            path: path.to_path_buf(),
        },
        // redb reports a foreign or damaged header as an `InvalidData` IO error.
        redb::DatabaseError::Storage(redb::StorageError::Io(io))
            if io.kind() != std::io::ErrorKind::InvalidData =>
        {
            StoreError::Io {
                path: path.to_path_buf(),
                detail: io.to_string(),
            }
        }
        other => StoreError::Corrupt {
            path: path.to_path_buf(),
            detail: other.to_string(),
        },
    })?;
    // Create every table once so readers never see "table does not exist".
    let init = || -> Result<(), redb::Error> {
        let txn = db.begin_write()?;
        txn.open_table(LOG)?;
        txn.open_table(META)?;
        txn.open_table(SNAPSHOT)?;
        txn.open_table(LOCAL)?;
        txn.commit()?;
        Ok(())
    };
    init().map_err(|e| StoreError::Corrupt {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })?;
    // Touch the read path too: a damaged file should fail here, not later inside Raft.
    let check = || -> Result<(), redb::Error> {
        let txn = db.begin_read()?;
        let _ = txn.open_table(LOG)?;
        Ok(())
    };
    check().map_err(|e| StoreError::Corrupt {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })?;
    Ok(db)
}

/// Small key/value records about this node that are not Raft state (its id, its cluster).
impl LogStore {
    pub fn read_local(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let read = || -> Result<Option<Vec<u8>>, redb::Error> {
            let txn = self.db.begin_read()?;
            let table = txn.open_table(LOCAL)?;
            Ok(table.get(key)?.map(|v| v.value().to_vec()))
        };
        read().map_err(|e| StoreError::Io {
            path: self.path.clone(),
            detail: e.to_string(),
        })
    }

    pub fn write_local(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let write = || -> Result<(), redb::Error> {
            let txn = self.db.begin_write()?;
            txn.open_table(LOCAL)?.insert(key, value)?;
            txn.commit()?;
            Ok(())
        };
        write().map_err(|e| StoreError::Io {
            path: self.path.clone(),
            detail: e.to_string(),
        })
    }
}

/// A blank entry at `index` (term 1, node 1), for the store's unit tests.
#[cfg(test)]
pub(crate) fn blank_entry(index: u64) -> crate::types::Entry {
    crate::types::Entry {
        log_id: openraft::LogId::new(openraft::CommittedLeaderId::new(1, 1), index),
        payload: openraft::EntryPayload::Blank,
    }
}
