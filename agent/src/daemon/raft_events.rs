//! One log line per Raft role or leader change on this node, at info level. openraft's own
//! logs are kept at warn (they are many lines per election); these are what an operator, or
//! `scripts/bench-cluster.py --logs`, reads to see where a failover's time went: when each node
//! noticed the leader was gone and became a candidate, and when one of them became leader.

use cortex_cluster::CortexRaft;
use openraft::ServerState;
use tokio_util::sync::CancellationToken;

pub async fn run(raft: CortexRaft, shutdown: CancellationToken) {
    let mut metrics = raft.metrics();
    let mut last: Option<(ServerState, Option<u64>, u64)> = None;
    loop {
        let now = {
            let m = metrics.borrow_and_update();
            (m.state, m.current_leader, m.current_term)
        };
        if last != Some(now) {
            let (state, leader, term) = now;
            let role = match state {
                ServerState::Leader => "leader",
                ServerState::Follower => "follower",
                ServerState::Candidate => "candidate",
                ServerState::Learner => "learner",
                ServerState::Shutdown => "shutdown",
            };
            tracing::info!(role, term, leader = ?leader, "raft: role or leader changed");
            last = Some(now);
        }
        tokio::select! {
            changed = metrics.changed() => if changed.is_err() { return },
            _ = shutdown.cancelled() => return,
        }
    }
}
