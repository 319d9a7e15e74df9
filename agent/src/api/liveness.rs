//! Heartbeats, kept in memory on the coordinator that receives them (not in Raft: one entry
//! per node per second would flood the log). The failure detector reads this.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use cortex_model::node::Resources;
use cortex_model::NodeId;

#[derive(Debug, Clone)]
pub struct Seen {
    pub at: Instant,
    pub resources: Resources,
}

#[derive(Default)]
pub struct Liveness {
    seen: Mutex<HashMap<NodeId, Seen>>,
}

impl Liveness {
    pub fn record(&self, node: NodeId, resources: Resources) {
        if let Ok(mut m) = self.seen.lock() {
            m.insert(
                node,
                Seen {
                    at: Instant::now(),
                    resources,
                },
            );
        }
    }

    pub fn last_seen(&self, node: NodeId) -> Option<Seen> {
        self.seen.lock().ok().and_then(|m| m.get(&node).cloned())
    }
}
