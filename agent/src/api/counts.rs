//! Counts for metrics: read from the applied state under its lock, nothing copied.

use std::collections::BTreeMap;

use super::NodeApi;

impl NodeApi {
    /// Tasks kept in the state, by state name.
    pub fn tasks_by_state(&self) -> BTreeMap<&'static str, u64> {
        let state = self.inner.sm.state();
        let mut counts = BTreeMap::new();
        for t in state.tasks.values() {
            *counts.entry(t.state.as_str()).or_insert(0) += 1;
        }
        counts
    }
}
