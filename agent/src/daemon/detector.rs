//! The failure detector, on the Raft leader only: a node silent for `suspect_after_ms` becomes
//! SUSPECT, for `down_after_ms` DOWN; a heartbeat brings it back to READY (DRAINING if an
//! operator drained it: a drained node is watched like any other). Every change is a
//! Raft entry (and an event). A new leader gives everyone a full window from the moment it
//! took over, so a failover never marks healthy nodes DOWN.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use cortex_model::command::Command;
use cortex_model::node::NodeState;
use tokio_util::sync::CancellationToken;

use crate::api::{now_ms, NodeApi};
use crate::config::ClusterConfig;

const TICK: Duration = Duration::from_millis(200);

pub async fn run(api: NodeApi, cfg: ClusterConfig, shutdown: CancellationToken) {
    let suspect_after = Duration::from_millis(cfg.suspect_after_ms);
    let down_after = Duration::from_millis(cfg.down_after_ms);
    let mut leader_since: Option<Instant> = None;
    // When the detector first saw each node in a watched state: a node approved a moment ago
    // gets a full window for its first heartbeat.
    let mut first_seen: HashMap<u64, Instant> = HashMap::new();
    let mut ticker = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let (leader, _) = api.leader();
        if leader != Some(api.node_id()) {
            leader_since = None;
            first_seen.clear();
            continue;
        }
        let since = *leader_since.get_or_insert_with(Instant::now);
        let now = Instant::now();
        let watched: Vec<_> = api
            .list_nodes()
            .into_iter()
            .filter(|n| {
                matches!(
                    n.state,
                    NodeState::Ready | NodeState::Suspect | NodeState::Down | NodeState::Draining
                )
            })
            .collect();
        first_seen.retain(|id, _| watched.iter().any(|n| n.id == *id));
        let changes: Vec<(u64, NodeState, String)> = watched
            .into_iter()
            .filter_map(|n| {
                let floor = (*first_seen.entry(n.id).or_insert(now)).max(since);
                let seen = api
                    .liveness()
                    .last_seen(n.id)
                    .map(|s| s.at.max(floor))
                    .unwrap_or(floor);
                let silent = now.saturating_duration_since(seen);
                let alive = if n.drained {
                    NodeState::Draining
                } else {
                    NodeState::Ready
                };
                let want = if silent >= down_after {
                    NodeState::Down
                } else if silent >= suspect_after {
                    NodeState::Suspect
                } else {
                    alive
                };
                (want != n.state).then(|| {
                    let reason = if want == alive {
                        "heartbeats resumed".to_string()
                    } else {
                        format!("no heartbeat for {:.1} s", silent.as_secs_f64())
                    };
                    (n.id, want, reason)
                })
            })
            .collect();
        for (node_id, state, reason) in changes {
            tracing::info!(node_id, state = state.as_str(), %reason, "node state change");
            if let Err(e) = api
                .write(Command::SetNodeState {
                    node_id,
                    state,
                    reason,
                    at_ms: now_ms(),
                })
                .await
            {
                tracing::warn!(node_id, "could not record a node state change: {e}");
            }
        }
    }
}
