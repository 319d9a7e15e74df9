//! A new leader's first AppendEntries to a follower, cut down to what the follower lacks.
//!
//! openraft 0.9 starts a new leader's replication to each follower knowing nothing of the
//! follower's log: it looks for the matching point by bisecting between the start of the log
//! (or the last purge) and its end, and every probe carries up to `max_payload_entries` (300)
//! entries, read back from the log. With a log of batched writes (57 writes per entry under 64
//! clients) a probe is megabytes of JSON, and the leader's first write waited ~0.25 s for a
//! handful of them after every election (docs/benchmarks.md) — although the follower just told
//! the leader, in its answer to the vote request, which log id it holds last.
//!
//! `GrpcNetwork` keeps that log id per follower ([`FollowerLogs`], from every vote answer) and
//! `GrpcConnection` first sends the request [`trim`] makes of an AppendEntries: the same vote
//! and commit index, with `prev_log_id` moved forward to a log id the follower probably has and
//! without the entries before it.
//!
//! Why it is sound: the follower checks `prev_log_id` itself and answers Success only if its
//! log holds that exact log id (on disk: openraft answers once the log is flushed up to it).
//! By Raft's log matching property its log then equals the leader's up to there, so it holds
//! every entry the original request carried up to that point, and after the trimmed request
//! the rest — exactly what a Success to the original request would have meant. If the guess
//! was wrong (the follower answers Conflict: it lost or never had that entry), the original
//! request goes as it was and the guess is forgotten; a higher vote is returned as it came.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use openraft::raft::AppendEntriesRequest;

use crate::types::{LogId, NodeId, TypeConfig};

/// The last log id each follower reported in its latest answer to a vote request.
#[derive(Clone, Default)]
pub struct FollowerLogs(Arc<Mutex<HashMap<NodeId, LogId>>>);

impl FollowerLogs {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<NodeId, LogId>> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `target` answered a vote request saying its log ends at `last`.
    pub fn reported(&self, target: NodeId, last: Option<LogId>) {
        match last {
            Some(last) => self.map().insert(target, last),
            None => self.map().remove(&target),
        };
    }

    /// What `target` last reported, if it has not been found wrong since.
    pub fn get(&self, target: NodeId) -> Option<LogId> {
        self.map().get(&target).copied()
    }

    /// `target` refused a request built on what it reported: ask it no more.
    pub fn forget(&self, target: NodeId) {
        self.map().remove(&target);
    }
}

/// The request to try before `rpc`, for a follower that holds `held`; `None` when nothing
/// would be left out.
///
/// - All of `rpc`'s entries are at or below `held`'s index: probably the follower has them
///   all, so ask whether it holds the last of them — no entries, `prev_log_id` that last one.
/// - `held` is among the entries: the follower has everything up to it, so send the entries
///   after it, with `held` as `prev_log_id`.
pub fn trim(rpc: &AppendEntriesRequest<TypeConfig>, held: LogId) -> Option<AppendEntriesRequest<TypeConfig>> {
    let last = rpc.entries.last()?.log_id;
    let keep_from = if last.index <= held.index {
        rpc.entries.len()
    } else {
        rpc.entries.iter().position(|e| e.log_id == held)? + 1
    };
    Some(AppendEntriesRequest {
        vote: rpc.vote,
        prev_log_id: Some(rpc.entries[keep_from - 1].log_id),
        leader_commit: rpc.leader_commit,
        entries: rpc.entries[keep_from..].to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;
    use crate::types::{Entry, Vote};

    fn log(term: u64, index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    /// Entries `from..=to` of term `term`, after `prev`.
    fn request(prev: u64, term: u64, to: u64) -> AppendEntriesRequest<TypeConfig> {
        AppendEntriesRequest {
            vote: Vote::new_committed(3, 1),
            prev_log_id: Some(log(term, prev)),
            leader_commit: Some(log(term, prev)),
            entries: (prev + 1..=to)
                .map(|i| Entry {
                    log_id: log(term, i),
                    payload: EntryPayload::Blank,
                })
                .collect(),
        }
    }

    #[test]
    fn entries_the_follower_reported_holding_become_a_probe_of_the_last_one() {
        let rpc = request(100, 2, 400);
        let short = trim(&rpc, log(2, 1000)).expect("trimmed");
        assert_eq!(short.prev_log_id, Some(log(2, 400)));
        assert!(short.entries.is_empty());
        assert_eq!((short.vote, short.leader_commit), (rpc.vote, rpc.leader_commit));
        // The same when the follower's last entry is exactly the request's last.
        let short = trim(&rpc, log(2, 400)).expect("trimmed");
        assert_eq!((short.prev_log_id, short.entries.len()), (Some(log(2, 400)), 0));
    }

    #[test]
    fn entries_past_the_reported_log_id_are_sent_after_it() {
        let mut rpc = request(100, 2, 110);
        rpc.entries.push(Entry {
            log_id: log(3, 111),
            payload: EntryPayload::Blank,
        });
        let short = trim(&rpc, log(2, 110)).expect("trimmed");
        assert_eq!(short.prev_log_id, Some(log(2, 110)));
        assert_eq!(short.entries.len(), 1);
        assert_eq!(short.entries[0].log_id, log(3, 111));
    }

    #[test]
    fn nothing_is_trimmed_when_the_reported_log_id_is_not_in_the_request() {
        // Behind the request: the follower lacks all of it.
        assert!(trim(&request(100, 2, 110), log(2, 50)).is_none());
        // Same index, another term: the follower's entry there is not the leader's.
        let mut rpc = request(100, 2, 110);
        rpc.entries.push(Entry {
            log_id: log(3, 111),
            payload: EntryPayload::Blank,
        });
        assert!(trim(&rpc, log(1, 105)).is_none());
        // No entries at all (a heartbeat or a commit): nothing to leave out.
        let mut heartbeat = request(100, 2, 100);
        heartbeat.entries.clear();
        assert!(trim(&heartbeat, log(2, 1000)).is_none());
    }

    #[test]
    fn a_wrong_report_is_forgotten() {
        let logs = FollowerLogs::default();
        logs.reported(7, Some(log(2, 10)));
        assert_eq!(logs.get(7), Some(log(2, 10)));
        logs.forget(7);
        assert_eq!(logs.get(7), None);
        logs.reported(7, Some(log(2, 10)));
        logs.reported(7, None);
        assert_eq!(logs.get(7), None, "an empty log reported: nothing to trim to");
    }
}
