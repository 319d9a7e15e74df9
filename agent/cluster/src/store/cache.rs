//! The newest log entries, decoded, in memory: replication and apply read entries they were
//! handed a moment earlier, and reading them back from `raft.wal` meant parsing the JSON again
//! (on the leader, every entry once per follower).
//!
//! Invariant: the cache holds a contiguous run of the log's newest entries, exactly as stored
//! (it follows every append, truncate and purge); anything older is read from the file.

use std::collections::VecDeque;

use crate::types::Entry;

/// Entries kept (a batch entry carries up to 256 writes, so this is at most a few MB).
const CAPACITY: usize = 512;

#[derive(Default)]
pub(crate) struct EntryCache {
    entries: VecDeque<Entry>,
}

impl EntryCache {
    fn first(&self) -> Option<u64> {
        self.entries.front().map(|e| e.log_id.index)
    }

    fn next(&self) -> Option<u64> {
        self.entries.back().map(|e| e.log_id.index + 1)
    }

    /// Entries just appended to the log, in order.
    pub(crate) fn appended(&mut self, entries: Vec<Entry>) {
        for e in entries {
            if self.next().is_some_and(|n| n != e.log_id.index) {
                // Not contiguous (the log was truncated or purged behind our back): start over.
                self.entries.clear();
            }
            self.entries.push_back(e);
        }
        while self.entries.len() > CAPACITY {
            self.entries.pop_front();
        }
    }

    /// The log dropped every entry from `index` on.
    pub(crate) fn truncated(&mut self, index: u64) {
        while self.entries.back().is_some_and(|e| e.log_id.index >= index) {
            self.entries.pop_back();
        }
    }

    /// The log dropped every entry up to and including `index`.
    pub(crate) fn purged(&mut self, index: u64) {
        while self.entries.front().is_some_and(|e| e.log_id.index <= index) {
            self.entries.pop_front();
        }
    }

    /// The stored entries in `[from, to)`, if the cache has all of them (reading from `from` up to
    /// the newest entry when `to` lies beyond it, as the file would).
    pub(crate) fn get(&self, from: u64, to: u64) -> Option<Vec<Entry>> {
        let (first, next) = (self.first()?, self.next()?);
        if from < first || from > next {
            return None;
        }
        let start = usize::try_from(from - first).ok()?;
        let end = usize::try_from(to.min(next).saturating_sub(first)).ok()?;
        Some(self.entries.range(start..end.max(start)).cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::store::blank_entry as entry;

    fn indexes(v: Option<Vec<Entry>>) -> Option<Vec<u64>> {
        v.map(|v| v.iter().map(|e| e.log_id.index).collect())
    }

    #[test]
    fn serves_only_ranges_it_holds_and_follows_truncate_and_purge() {
        let mut c = EntryCache::default();
        assert_eq!(indexes(c.get(1, 5)), None, "empty: read the file");
        c.appended((5..10).map(entry).collect());
        assert_eq!(indexes(c.get(6, 8)), Some(vec![6, 7]));
        assert_eq!(
            indexes(c.get(8, u64::MAX)),
            Some(vec![8, 9]),
            "open end: up to the newest"
        );
        assert_eq!(indexes(c.get(10, 12)), Some(vec![]), "nothing newer exists");
        assert_eq!(indexes(c.get(4, 8)), None, "older than the cache: read the file");
        assert_eq!(indexes(c.get(11, 12)), None);
        c.truncated(8);
        assert_eq!(indexes(c.get(5, 20)), Some(vec![5, 6, 7]));
        c.appended(vec![entry(8)]);
        c.purged(6);
        assert_eq!(indexes(c.get(7, 20)), Some(vec![7, 8]));
        assert_eq!(indexes(c.get(6, 20)), None, "purged entries come from nowhere");
        // A gap (the log moved on without us) starts the cache over.
        c.appended(vec![entry(20)]);
        assert_eq!(indexes(c.get(20, 21)), Some(vec![20]));
        assert_eq!(indexes(c.get(8, 21)), None);
    }

    #[test]
    fn keeps_at_most_its_capacity_of_the_newest() {
        let mut c = EntryCache::default();
        c.appended((1..=(CAPACITY as u64 + 10)).map(entry).collect());
        assert_eq!(indexes(c.get(10, 11)), None);
        let newest = CAPACITY as u64 + 10;
        assert_eq!(indexes(c.get(newest, newest + 1)), Some(vec![newest]));
        assert_eq!(c.entries.len(), CAPACITY);
    }
}
