//! Commit-only AppendEntries held back for a moment, so the next entries carry the commit.
//!
//! openraft 0.9's replication stream sends a follower an AppendEntries without entries every
//! time the leader's commit index moves, and it sends nothing else to that follower until the
//! answer is back. Under a steady write load that is every other AppendEntries: entries, then
//! the commit of those entries, then the next entries. The commit-only round costs the leader and
//! the follower a call each (~4 µs of user CPU per write at 64 clients on the 2-core bench VM,
//! docs/benchmarks.md) and, while it is out, holds the next entries back.
//!
//! `GrpcConnection` answers such a request at once and sends it [`COMMIT_LINGER`] later,
//! unless an AppendEntries carrying the same commit index or a later one has left for that
//! follower by then. Under load the next entries always do, and the commit-only call is never
//! made; with no more writes the follower learns the commit `COMMIT_LINGER` later than it
//! would have.
//!
//! Why answering early is sound. Only a request the follower cannot refuse is held back: no
//! entries, and a `prev_log_id` the same follower already confirmed to this leader (same vote)
//! — its log is durable, so the answer can only be Success (which changes nothing on the
//! leader: the follower's matching log id stays where it is) or a higher vote. A higher vote is
//! kept and returned by the next call to that follower, as openraft would have seen it a
//! little earlier. Nothing on the leader waits for followers to learn a commit: a write is
//! answered once a quorum has it on disk and the leader applied it.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::types::{LogId, NodeId, TypeConfig, Vote};

/// How long a commit-only AppendEntries waits for entries to carry its commit instead. Longer
/// than a write round at 64 clients on the bench VM (~3 ms), short against anything a person
/// or a test would notice on a follower.
pub const COMMIT_LINGER: Duration = Duration::from_millis(5);

/// Per follower (one per `GrpcConnection`): what it confirmed, which commit index has left for
/// it, and the commit-only request waiting to go.
#[derive(Default)]
pub struct CommitLinger {
    /// The last log id this follower confirmed (answered Success to), with the vote it was sent under.
    confirmed: Option<(LogId, Vote)>,
    /// 1 + the highest commit index that has left for this follower; 0 before any.
    carried: Arc<AtomicU64>,
    /// The request waiting for its linger to end, and when it ends.
    pending: Option<(JoinHandle<()>, Instant)>,
    /// A higher vote a held-back request was answered with, for the next call to return.
    higher: Arc<Mutex<Option<Vote>>>,
}

impl CommitLinger {
    /// A higher vote seen by a held-back request, once.
    pub fn take_higher_vote(&mut self) -> Option<Vote> {
        self.higher
            .lock()
            .map(|mut h| h.take())
            .unwrap_or_else(|p| p.into_inner().take())
    }

    /// Whether `rpc` only moves the commit index over a log this follower already confirmed
    /// under the same vote — the one kind of request that may be answered before it is sent.
    pub fn may_hold(&self, rpc: &AppendEntriesRequest<TypeConfig>) -> bool {
        let Some((log, vote)) = &self.confirmed else {
            return false;
        };
        let Some(commit) = &rpc.leader_commit else {
            return false;
        };
        rpc.entries.is_empty()
            && rpc.prev_log_id.as_ref() == Some(log)
            && &rpc.vote == vote
            && commit.index + 1 > self.carried.load(Ordering::Acquire)
    }

    /// Holds back a request carrying commit index `commit`: `send` runs at the end of the
    /// linger unless a call carrying that index has left by then (`carrying`). A newer held-back
    /// request replaces an older one and keeps its deadline.
    pub fn hold<F, Fut>(&mut self, commit: u64, send: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Option<AppendEntriesResponse<NodeId>>> + Send + 'static,
    {
        let due = match self.pending.take() {
            Some((task, due)) if !task.is_finished() => {
                task.abort();
                due
            }
            _ => Instant::now() + COMMIT_LINGER,
        };
        let carried = self.carried.clone();
        let higher = self.higher.clone();
        let task = tokio::spawn(async move {
            tokio::time::sleep_until(due).await;
            if carried.fetch_max(commit + 1, Ordering::AcqRel) > commit {
                return;
            }
            if let Some(AppendEntriesResponse::HigherVote(vote)) = send().await {
                match higher.lock() {
                    Ok(mut h) => *h = Some(vote),
                    Err(p) => *p.into_inner() = Some(vote),
                }
            }
        });
        self.pending = Some((task, due));
    }

    /// Before a call carrying `commit` leaves.
    pub fn carrying(&self, commit: Option<&LogId>) {
        if let Some(c) = commit {
            self.carried.fetch_max(c.index + 1, Ordering::AcqRel);
        }
    }

    /// After the follower answered Success to a call sent under `vote` that ended at `last`.
    pub fn confirmed(&mut self, last: Option<LogId>, vote: Vote) {
        self.confirmed = last.map(|log| (log, vote));
    }
}

impl Drop for CommitLinger {
    fn drop(&mut self) {
        if let Some((task, _)) = self.pending.take() {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;
    use crate::types::Entry;

    fn log(term: u64, index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    fn vote() -> Vote {
        let mut v = Vote::new(2, 1);
        v.commit();
        v
    }

    fn commit_only(prev: u64, commit: u64) -> AppendEntriesRequest<TypeConfig> {
        AppendEntriesRequest {
            vote: vote(),
            prev_log_id: Some(log(2, prev)),
            leader_commit: Some(log(2, commit)),
            entries: vec![],
        }
    }

    /// A `send` that counts its calls, reports which commit it carried and answers `answer`.
    fn sender(
        calls: &Arc<AtomicUsize>,
        sent: tokio::sync::mpsc::UnboundedSender<u64>,
        commit: u64,
        answer: AppendEntriesResponse<NodeId>,
    ) -> impl FnOnce() -> std::future::Ready<Option<AppendEntriesResponse<NodeId>>> + Send + 'static {
        let calls = calls.clone();
        move || {
            calls.fetch_add(1, Ordering::SeqCst);
            let _ = sent.send(commit);
            std::future::ready(Some(answer))
        }
    }

    #[test]
    fn only_a_commit_over_a_confirmed_log_under_the_same_vote_is_held() {
        let mut l = CommitLinger::default();
        assert!(!l.may_hold(&commit_only(5, 5)), "nothing confirmed yet");
        l.confirmed(Some(log(2, 5)), vote());
        assert!(l.may_hold(&commit_only(5, 5)));
        assert!(
            !l.may_hold(&commit_only(4, 5)),
            "prev_log_id not the confirmed one"
        );
        let mut with_entries = commit_only(5, 5);
        with_entries.entries.push(Entry {
            log_id: log(2, 6),
            payload: EntryPayload::Blank,
        });
        assert!(!l.may_hold(&with_entries), "entries go at once");
        let mut other_vote = commit_only(5, 5);
        other_vote.vote = Vote::new(3, 1);
        assert!(!l.may_hold(&other_vote), "another vote");
        let mut no_commit = commit_only(5, 5);
        no_commit.leader_commit = None;
        assert!(!l.may_hold(&no_commit));
        l.carrying(Some(&log(2, 5)));
        assert!(
            !l.may_hold(&commit_only(5, 5)),
            "that commit has left already: a heartbeat goes"
        );
        assert!(l.may_hold(&commit_only(5, 6)), "a later commit is held again");
    }

    #[tokio::test]
    async fn a_held_commit_is_sent_after_the_linger() {
        let calls = Arc::new(AtomicUsize::new(0));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut l = CommitLinger::default();
        let started = Instant::now();
        l.hold(7, sender(&calls, tx, 7, AppendEntriesResponse::Success));
        let sent = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
        assert_eq!(sent.ok().flatten(), Some(7));
        assert!(started.elapsed() >= COMMIT_LINGER);
        assert_eq!(l.carried.load(Ordering::SeqCst), 8, "commit 7 has left");
        assert_eq!(l.take_higher_vote(), None);
    }

    #[tokio::test]
    async fn entries_carrying_the_commit_make_the_held_request_unneeded() {
        let calls = Arc::new(AtomicUsize::new(0));
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let mut l = CommitLinger::default();
        l.hold(7, sender(&calls, tx, 7, AppendEntriesResponse::Success));
        l.carrying(Some(&log(2, 7)));
        tokio::time::sleep(COMMIT_LINGER * 4).await;
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_newer_commit_replaces_the_held_one() {
        let calls = Arc::new(AtomicUsize::new(0));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut l = CommitLinger::default();
        l.hold(7, sender(&calls, tx.clone(), 7, AppendEntriesResponse::Success));
        l.hold(8, sender(&calls, tx, 8, AppendEntriesResponse::Success));
        let sent = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
        assert_eq!(sent.ok().flatten(), Some(8));
        tokio::time::sleep(COMMIT_LINGER * 4).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1, "the older request was dropped");
    }

    #[tokio::test]
    async fn a_higher_vote_in_the_answer_is_returned_by_the_next_call() {
        let calls = Arc::new(AtomicUsize::new(0));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut l = CommitLinger::default();
        let higher = Vote::new(9, 3);
        l.hold(
            7,
            sender(&calls, tx, 7, AppendEntriesResponse::HigherVote(higher)),
        );
        let sent = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
        assert_eq!(sent.ok().flatten(), Some(7));
        // The answer is stored right after `send` returns, on the same task.
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut seen = None;
        while seen.is_none() && Instant::now() < deadline {
            tokio::task::yield_now().await;
            seen = l.take_higher_vote();
        }
        assert_eq!(seen, Some(higher));
        assert_eq!(l.take_higher_vote(), None, "reported once");
    }

    #[tokio::test]
    async fn a_dropped_connection_sends_nothing() {
        let calls = Arc::new(AtomicUsize::new(0));
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let mut l = CommitLinger::default();
        l.hold(7, sender(&calls, tx, 7, AppendEntriesResponse::Success));
        drop(l);
        tokio::time::sleep(COMMIT_LINGER * 4).await;
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }
}
