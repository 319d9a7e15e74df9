//! The state-machine half of the store (openraft's `RaftStateMachine`).
//!
//! The cluster state is held in memory behind a lock that API handlers read; snapshots of it
//! are written to the store so that the log can be purged and a restart can begin from them.

use std::io::Cursor;
use std::sync::{Arc, RwLock, RwLockReadGuard};

use cortex_model::command::Outcome;
use cortex_model::state::ClusterState;
use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use redb::{Database, Durability, ReadableDatabase};
use serde::{Deserialize, Serialize};

use super::codec::{decode, encode, read_err, write_err};
use super::durable::Durable;
use super::{KEY_SNAPSHOT_DATA, KEY_SNAPSHOT_META, SNAPSHOT};
use crate::types::{Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig};

#[derive(Default)]
struct Inner {
    last_applied: Option<LogId>,
    membership: StoredMembership,
    state: ClusterState,
    /// Distinguishes snapshots built at the same log id.
    snapshot_seq: u64,
}

#[derive(Serialize, Deserialize)]
struct SnapshotPayload {
    state: ClusterState,
}

#[derive(Clone)]
pub struct StateMachineStore {
    db: Arc<Database>,
    inner: Arc<RwLock<Inner>>,
    /// Bumped (to the last applied index) after every apply and snapshot install, so readers
    /// that follow the state (task watchers, node assignments, the scheduler) wake up.
    changed: Arc<tokio::sync::watch::Sender<u64>>,
    /// How far this node's log is on disk: nothing is applied before it is (`durable.rs`).
    durable: Durable,
}

impl StateMachineStore {
    /// Loads the latest snapshot, if any. The log entries after it are re-applied by openraft.
    pub(crate) fn load(db: Arc<Database>, durable: Durable) -> Result<Self, String> {
        let mut inner = Inner::default();
        if let Some((meta, data)) = read_snapshot(&db).map_err(|e| e.to_string())? {
            let payload: SnapshotPayload = decode(&data).map_err(|e| e.to_string())?;
            inner.last_applied = meta.last_log_id;
            inner.membership = meta.last_membership;
            inner.state = payload.state;
        }
        let applied = inner.last_applied.map(|l| l.index).unwrap_or(0);
        Ok(StateMachineStore {
            db,
            inner: Arc::new(RwLock::new(inner)),
            changed: Arc::new(tokio::sync::watch::channel(applied).0),
            durable,
        })
    }

    /// Read access to the applied cluster state. Hold the guard briefly: apply waits for it.
    pub fn state(&self) -> StateGuard<'_> {
        StateGuard(self.inner.read().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }

    /// A receiver that is notified after each change of the applied state.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn notify(&self) {
        let index = self.last_applied().map(|l| l.index).unwrap_or(0);
        self.changed.send_replace(index);
    }

    /// Index of the last applied log entry.
    pub fn last_applied(&self) -> Option<LogId> {
        self.state().0.last_applied
    }

    fn write_inner(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn persist_snapshot(&self, meta: &SnapshotMeta, data: &[u8]) -> Result<(), StorageError> {
        let meta_bytes = encode(meta).map_err(write_err)?;
        let data = data.to_vec();
        let db = self.db.clone();
        let res = tokio::task::spawn_blocking(move || -> Result<(), redb::Error> {
            let mut txn = db.begin_write()?;
            txn.set_durability(Durability::Immediate)
                .map_err(|e| redb::Error::Corrupted(e.to_string()))?;
            {
                let mut t = txn.open_table(SNAPSHOT)?;
                t.insert(KEY_SNAPSHOT_META, meta_bytes.as_slice())?;
                t.insert(KEY_SNAPSHOT_DATA, data.as_slice())?;
            }
            txn.commit()?;
            Ok(())
        })
        .await;
        match res {
            Ok(r) => r.map_err(write_err),
            Err(join) => Err(write_err(std::io::Error::other(join.to_string()))),
        }
    }
}

impl StateMachineStore {
    fn apply_entries<I: IntoIterator<Item = Entry>>(&self, entries: I) -> Vec<Outcome> {
        let mut inner = self.write_inner();
        let mut out = Vec::new();
        for entry in entries {
            inner.last_applied = Some(entry.log_id);
            let outcome = match entry.payload {
                EntryPayload::Blank => Outcome::Done,
                EntryPayload::Normal(cmd) => inner.state.apply(&cmd),
                EntryPayload::Membership(m) => {
                    inner.membership = StoredMembership::new(Some(entry.log_id), m);
                    Outcome::Done
                }
            };
            out.push(outcome);
        }
        out
    }
}

/// A read guard over the applied `ClusterState`.
pub struct StateGuard<'a>(RwLockReadGuard<'a, Inner>);

impl std::ops::Deref for StateGuard<'_> {
    type Target = ClusterState;
    fn deref(&self) -> &ClusterState {
        &self.0.state
    }
}

fn read_snapshot(db: &Database) -> Result<Option<(SnapshotMeta, Vec<u8>)>, redb::Error> {
    let txn = db.begin_read()?;
    let table = txn.open_table(SNAPSHOT)?;
    let meta = table.get(KEY_SNAPSHOT_META)?.map(|v| v.value().to_vec());
    let data = table.get(KEY_SNAPSHOT_DATA)?.map(|v| v.value().to_vec());
    match (meta, data) {
        (Some(m), Some(d)) => {
            let meta: SnapshotMeta = decode(&m).map_err(|e| redb::Error::Corrupted(e.to_string()))?;
            Ok(Some((meta, d)))
        }
        _ => Ok(None),
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let (meta, data) = {
            let mut inner = self.write_inner();
            inner.snapshot_seq += 1;
            let payload = SnapshotPayload {
                state: inner.state.clone(),
            };
            let data = encode(&payload).map_err(write_err)?;
            let snapshot_id = match &inner.last_applied {
                Some(id) => format!("{}-{}-{}", id.leader_id, id.index, inner.snapshot_seq),
                None => format!("none-{}", inner.snapshot_seq),
            };
            let meta = SnapshotMeta {
                last_log_id: inner.last_applied,
                last_membership: inner.membership.clone(),
                snapshot_id,
            };
            (meta, data)
        };
        self.persist_snapshot(&meta, &data).await?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = StateMachineStore;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let inner = self.state();
        Ok((inner.0.last_applied, inner.0.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Outcome>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        // A leader acknowledges its own entries before their fsync; a commit counted on that
        // becomes visible only once this node has them on disk too (`durable.rs`). Elsewhere
        // they are on disk already and this returns at once.
        if let Some(last) = entries.last() {
            self.durable
                .wait_for(last.log_id.index)
                .await
                .map_err(|e| write_err(std::io::Error::other(e.to_string())))?;
        }
        let out = self.apply_entries(entries);
        self.notify();
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let payload: SnapshotPayload = decode(&data).map_err(read_err)?;
        self.persist_snapshot(meta, &data).await?;
        let mut inner = self.write_inner();
        inner.last_applied = meta.last_log_id;
        inner.membership = meta.last_membership.clone();
        inner.state = payload.state;
        drop(inner);
        self.notify();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        match read_snapshot(&self.db).map_err(read_err)? {
            Some((meta, data)) => Ok(Some(Snapshot {
                meta,
                snapshot: Box::new(Cursor::new(data)),
            })),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use openraft::storage::RaftStateMachine;

    use super::*;
    use crate::store::blank_entry;
    use crate::store::durable::DurableTx;

    /// A leader's own entry is acknowledged before its fsync (`durable.rs`); applying it, which
    /// is what answers a client, waits for the fsync.
    #[tokio::test]
    async fn an_entry_acknowledged_before_its_fsync_is_applied_only_after_it() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let db = Arc::new(super::super::open_db(&dir.path().join("raft.redb")).expect("the db opens"));
        let flushed = DurableTx::new(4);
        let mut sm = StateMachineStore::load(db, flushed.subscribe()).expect("an empty state loads");

        // Entries that were on disk before openraft heard of them apply at once.
        let done = tokio::time::timeout(Duration::from_secs(5), sm.apply(vec![blank_entry(5)])).await;
        assert!(matches!(done, Ok(Ok(_))), "entry 5 was never acknowledged early");

        flushed.acked_early(6);
        let applying = tokio::spawn({
            let mut sm = sm.clone();
            async move { sm.apply(vec![blank_entry(6)]).await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!applying.is_finished(), "entry 6 is not on disk yet");
        assert_eq!(sm.last_applied().map(|l| l.index), Some(5));
        flushed.advance(6);
        let outcome = tokio::time::timeout(Duration::from_secs(5), applying).await;
        assert!(
            matches!(outcome, Ok(Ok(Ok(_)))),
            "applied once flushed: {outcome:?}"
        );
        assert_eq!(sm.last_applied().map(|l| l.index), Some(6));
    }
}
