//! The election timer openraft 0.9 should have, run beside its own.
//!
//! openraft starts an election from its tick (every 1.5 heartbeat intervals) once the vote has
//! not been refreshed for `election_timeout_max` (the leader lease, only while the vote is a
//! leader's committed vote) plus the node's election timeout. Three things about that timer
//! made failovers slow (docs/benchmarks.md, "Cluster"):
//!
//! - the election timeout is drawn once per process, not per election, so two survivors with
//!   close draws split their votes every time, and the one with the shorter draw always
//!   campaigns first — also when its log is the shorter one and it cannot win;
//! - a candidate that once saw a voter with a longer log adds `2 × election_timeout_max` to its
//!   next election, however much later that is (the flag is cleared only by that election):
//!   a node that lost one election by log was 4 s slower in the next failover it had to win
//!   (fixed upstream after 0.9: databendlabs/openraft#2087);
//! - the tick adds up to 1.5 heartbeat intervals.
//!
//! This timer reads the same vote and the same time it was last refreshed, and starts the
//! election openraft would start without those three: after the lease (committed vote only)
//! plus a timeout drawn afresh from `[election_timeout_min, election_timeout_max)` for every
//! silence, checked every [`POLL`]. It never campaigns sooner than openraft's own rule allows
//! with the same draw, so a live leader (whose heartbeats refresh the vote) is never challenged;
//! openraft's timer stays as it is, and whichever fires first starts the election.

use std::time::Duration;

use cortex_cluster::CortexRaft;
use openraft::ServerState;
use rand::Rng;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const POLL: Duration = Duration::from_millis(50);

pub async fn run(raft: CortexRaft, me: u64, min_ms: u64, max_ms: u64, shutdown: CancellationToken) {
    let lease = Duration::from_millis(max_ms);
    // (when the vote was last refreshed, the timeout drawn for the silence since then)
    let mut current: Option<(Instant, Duration)> = None;
    let metrics = raft.metrics();
    let mut ticker = tokio::time::interval(POLL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        // Cheap check first (no round trip through the Raft core): a leader or a lone voter has
        // nothing to time.
        let idle = {
            let m = metrics.borrow();
            m.state == ServerState::Leader || m.membership_config.membership().voter_ids().count() < 2
        };
        if idle {
            current = None;
            continue;
        }
        let Ok((state, committed, refreshed, voters, is_voter)) = raft
            .with_raft_state(move |st| {
                let effective = st.membership_state.effective();
                (
                    st.server_state,
                    st.vote_ref().is_committed(),
                    st.vote_last_modified(),
                    effective.voter_ids().count(),
                    effective.voter_ids().any(|v| v == me),
                )
            })
            .await
        else {
            return; // Raft has stopped
        };
        // A leader, a learner, a lone voter (openraft elects it at once) or a node that never
        // had a vote has nothing to do here.
        let campaigning = matches!(state, ServerState::Follower | ServerState::Candidate);
        let Some(refreshed) = refreshed.filter(|_| campaigning && is_voter && voters > 1) else {
            current = None;
            continue;
        };
        let timeout = match current {
            Some((at, t)) if at == refreshed => t,
            _ => {
                let t = Duration::from_millis(rand::rng().random_range(min_ms..max_ms.max(min_ms + 1)));
                current = Some((refreshed, t));
                t
            }
        };
        let wait = if committed { lease + timeout } else { timeout };
        if Instant::now() >= refreshed + wait {
            tracing::info!(
                silent_ms = refreshed.elapsed().as_millis() as u64,
                timeout_ms = timeout.as_millis() as u64,
                "raft: no leader heard from; starting an election"
            );
            let _ = raft.trigger().elect().await;
            // The vote changes (and is refreshed) when the election starts; draw again then.
        }
    }
}
