//! How far the Raft log is on disk, for the leader that writes its own entries in parallel with
//! replicating them.
//!
//! openraft 0.9 awaits an append's flush callback inside its core before it hands the entries to
//! the replication streams, so a leader's fsync used to come before any follower saw the entry,
//! and the follower's fsync after it (measured: the AppendEntries left ~0.8 ms after the
//! append, ~0.4 ms without the wait; docs/benchmarks.md). Raft lets a leader write its log in
//! parallel with replicating it, as long as nothing that depends on the entry being committed
//! happens before a majority has it on disk (Ongaro's thesis, "writing to the leader's disk in
//! parallel"). So `LogStore::append` acknowledges a leader's own entries as soon as they are in
//! the file (the page cache), and openraft counts that acknowledgement toward the commit. Where
//! a commit becomes visible, this node's disk is checked instead:
//!
//! - the state machine applies an entry only once it is on this node's disk (`apply`), so a
//!   client is answered only when the leader and at least one follower have it on disk;
//! - an AppendEntries tells a follower a commit index only once this node's log is on disk up
//!   to it (`network.rs`), so no follower applies an entry before that either;
//! - the committed index is written down only up to what is on disk (`save_committed`).
//!
//! A leader that crashes before its fsync has shown such an entry to no one: the follower that
//! acknowledged it keeps it, and the next election decides, as for any entry not yet committed.
//! A follower's appends, and membership entries, keep the strict path: openraft hears of them
//! only after their fsync.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::watch;

/// What the flusher has made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flushed {
    /// Every record up to and including this index (0: none yet).
    Upto(u64),
    /// An fsync failed: nothing written after the last good one can be trusted to be on disk.
    Failed,
}

impl Flushed {
    fn upto(self) -> Option<u64> {
        match self {
            Flushed::Upto(upto) => Some(upto),
            Flushed::Failed => None,
        }
    }
}

/// The log could not be made durable.
#[derive(Debug, thiserror::Error)]
#[error("the raft log could not be flushed to disk (see the log for the fsync error)")]
pub struct FlushFailed;

/// Waits for the log to be on disk up to an index. Cheap to clone.
#[derive(Clone)]
pub struct Durable {
    rx: watch::Receiver<Flushed>,
    /// The highest index acknowledged to openraft before its fsync (0: none).
    early: Arc<AtomicU64>,
}

impl Durable {
    /// Resolves once every entry up to `index` that was acknowledged before its fsync is on
    /// disk (at once if there is none: every other entry was on disk before openraft heard of
    /// it).
    pub async fn wait_for(&self, index: u64) -> Result<(), FlushFailed> {
        let index = index.min(self.early.load(Ordering::Acquire));
        if index == 0 {
            return Ok(());
        }
        match *self.rx.borrow() {
            Flushed::Upto(upto) if upto >= index => return Ok(()),
            Flushed::Failed => return Err(FlushFailed),
            Flushed::Upto(_) => {}
        }
        let mut rx = self.rx.clone();
        let reached = rx
            .wait_for(|f| match f {
                Flushed::Upto(upto) => *upto >= index,
                Flushed::Failed => true,
            })
            .await
            .map(|f| *f != Flushed::Failed);
        match reached {
            Ok(true) => Ok(()),
            // Failed, or the log is closed (the node is shutting down).
            _ => Err(FlushFailed),
        }
    }

    /// The index up to which the log is on disk; `None` after a failed fsync.
    pub fn upto(&self) -> Option<u64> {
        self.rx.borrow().upto()
    }
}

/// The writing side, held by the log and its flusher.
pub(crate) struct DurableTx {
    tx: watch::Sender<Flushed>,
    early: Arc<AtomicU64>,
}

impl DurableTx {
    pub(crate) fn new(upto: u64) -> DurableTx {
        DurableTx {
            tx: watch::channel(Flushed::Upto(upto)).0,
            early: Arc::default(),
        }
    }

    pub(crate) fn subscribe(&self) -> Durable {
        Durable {
            rx: self.tx.subscribe(),
            early: self.early.clone(),
        }
    }

    /// Entries up to `index` are about to be acknowledged before their fsync.
    pub(crate) fn acked_early(&self, index: u64) {
        self.early.fetch_max(index, Ordering::AcqRel);
    }

    /// The index up to which the log is on disk; `None` after a failed fsync.
    pub(crate) fn upto(&self) -> Option<u64> {
        self.tx.borrow().upto()
    }

    /// An fsync covered everything up to `upto`.
    pub(crate) fn advance(&self, upto: u64) {
        self.tx.send_if_modified(|f| match f {
            Flushed::Upto(old) if *old < upto => {
                *f = Flushed::Upto(upto);
                true
            }
            _ => false,
        });
    }

    /// The log was cut back to `upto` (and what is left is on disk).
    pub(crate) fn cut(&self, upto: u64) {
        self.early.fetch_min(upto, Ordering::AcqRel);
        self.tx.send_if_modified(|f| match f {
            Flushed::Upto(old) if *old != upto => {
                *f = Flushed::Upto(upto);
                true
            }
            _ => false,
        });
    }

    /// An fsync failed; stays failed.
    pub(crate) fn fail(&self) {
        self.tx.send_replace(Flushed::Failed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn waits_until_the_index_is_flushed_and_fails_with_the_fsync() {
        let tx = DurableTx::new(3);
        let durable = tx.subscribe();
        durable.wait_for(3).await.expect("3 is on disk");
        durable
            .wait_for(7)
            .await
            .expect("nothing was acknowledged early: nothing to wait for");
        tx.acked_early(9);
        let waiting = tokio::spawn({
            let d = durable.clone();
            async move { d.wait_for(5).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "5 is not on disk yet");
        tx.advance(4);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "4 is not 5");
        tx.advance(6);
        waiting.await.expect("joined").expect("6 covers 5");

        // Never backwards by an advance; a cut can lower it.
        tx.advance(2);
        assert_eq!(durable.upto(), Some(6));
        tx.cut(4);
        assert_eq!(durable.upto(), Some(4));

        tx.acked_early(10);
        let waiting = tokio::spawn({
            let d = durable.clone();
            async move { d.wait_for(9).await }
        });
        tx.fail();
        assert!(
            waiting.await.expect("joined").is_err(),
            "a failed fsync fails the wait"
        );
        assert!(durable.wait_for(1).await.is_err(), "and every later one");
        tx.advance(10);
        assert_eq!(durable.upto(), None, "failed stays failed");
    }
}
