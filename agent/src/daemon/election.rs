//! The election timer: the only thing that starts a Raft election on this node.
//!
//! openraft 0.9 starts an election from its tick (every 1.5 heartbeat intervals) once the vote has
//! not been refreshed for `election_timeout_max` (the leader lease, only while the vote is a
//! leader's committed vote) plus the node's election timeout. Four things about that timer made
//! failovers slow or deposed healthy leaders (docs/benchmarks.md, "Cluster"):
//!
//! - the election timeout is drawn once per process, not per election, so two survivors with
//!   close draws split their votes every time, and the one with the shorter draw always
//!   campaigns first — also when its log is the shorter one and it cannot win;
//! - a candidate that once saw a voter with a longer log adds `2 × election_timeout_max` to its
//!   next election, however much later that is (the flag is cleared only by that election):
//!   a node that lost one election by log was 4 s slower in the next failover it had to win
//!   (fixed upstream after 0.9: databendlabs/openraft#2087);
//! - the tick adds up to 1.5 heartbeat intervals;
//! - a process that was stopped (SIGSTOP, a VM paused, a machine swapping) finds on resuming
//!   that its vote was last refreshed long ago and campaigns at its first tick, before it reads
//!   the leader's heartbeats waiting in its sockets — and its higher term deposes a healthy
//!   leader (7 of 30 resumes after a 1.5 s stop, `scripts/stop-resume.py`).
//!
//! So openraft's tick election is switched off (`Config::enable_elect = false`, set in
//! `daemon/mod.rs`) and this timer starts every election: after the lease (committed vote only)
//! plus a timeout drawn afresh from `[election_timeout_min, election_timeout_max)` for every
//! silence, checked every [`POLL`]. When a check comes more than [`LATE`] after the one before,
//! the process was not running in between: it waits `election_timeout_min` from then, time
//! enough to read what the leader sent meanwhile. A lone voter campaigns at once, like openraft.

use std::time::Duration;

use cortex_cluster::CortexRaft;
use openraft::ServerState;
use rand::Rng;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const POLL: Duration = Duration::from_millis(50);
/// A check later than this after the one before means the process was paused.
const LATE: Duration = Duration::from_millis(300);

/// What one check reads from the Raft state.
#[derive(Debug, Clone, Copy)]
struct Seen {
    state: ServerState,
    /// The vote is a leader's committed vote (a leader lease applies).
    committed: bool,
    /// When the vote was last changed or refreshed by a leader's message.
    refreshed: Option<Instant>,
    voters: usize,
    is_voter: bool,
}

/// The timer's memory between checks.
struct Timer {
    min: Duration,
    max: Duration,
    /// (the refresh the timeout was drawn for, the timeout)
    current: Option<(Instant, Duration)>,
    /// No campaign before this instant (set after a pause).
    hold_until: Option<Instant>,
    last_check: Option<Instant>,
    /// Stands for "never refreshed": the vote's age is counted from the timer's start.
    started: Instant,
}

impl Timer {
    fn new(min_ms: u64, max_ms: u64, now: Instant) -> Timer {
        Timer {
            min: Duration::from_millis(min_ms),
            max: Duration::from_millis(max_ms.max(min_ms + 1)),
            current: None,
            hold_until: None,
            last_check: None,
            started: now,
        }
    }

    /// Whether to start an election now. `draw` picks a timeout in `[min, max)`.
    fn check(
        &mut self,
        now: Instant,
        seen: Seen,
        draw: &mut dyn FnMut(Duration, Duration) -> Duration,
    ) -> bool {
        if let Some(last) = self.last_check.replace(now) {
            if now.saturating_duration_since(last) > LATE {
                self.hold_until = Some(now + self.min);
            }
        }
        let campaigning = matches!(seen.state, ServerState::Follower | ServerState::Candidate);
        if !campaigning || !seen.is_voter {
            self.current = None;
            return false;
        }
        if self.hold_until.is_some_and(|t| now < t) {
            return false;
        }
        // A lone voter has nobody to hear from: it elects itself at once, once (a candidate
        // becomes leader as soon as its own vote is on disk).
        if seen.voters < 2 {
            self.current = None;
            return seen.state == ServerState::Follower;
        }
        let refreshed = seen.refreshed.unwrap_or(self.started);
        let timeout = match self.current {
            Some((at, t)) if at == refreshed => t,
            _ => {
                let t = draw(self.min, self.max);
                self.current = Some((refreshed, t));
                t
            }
        };
        let wait = if seen.committed {
            self.max + timeout
        } else {
            timeout
        };
        now >= refreshed + wait
    }
}

pub async fn run(raft: CortexRaft, me: u64, min_ms: u64, max_ms: u64, shutdown: CancellationToken) {
    let mut timer = Timer::new(min_ms, max_ms, Instant::now());
    let mut draw = |lo: Duration, hi: Duration| rand::rng().random_range(lo..hi);
    let metrics = raft.metrics();
    let mut ticker = tokio::time::interval(POLL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        // Cheap check first (no round trip through the Raft core): a leader has nothing to time.
        let leader = metrics.borrow().state == ServerState::Leader;
        let seen = if leader {
            Seen {
                state: ServerState::Leader,
                committed: true,
                refreshed: None,
                voters: 0,
                is_voter: true,
            }
        } else {
            let Ok(seen) = raft
                .with_raft_state(move |st| {
                    let effective = st.membership_state.effective();
                    Seen {
                        state: st.server_state,
                        committed: st.vote_ref().is_committed(),
                        refreshed: st.vote_last_modified(),
                        voters: effective.voter_ids().count(),
                        is_voter: effective.voter_ids().any(|v| v == me),
                    }
                })
                .await
            else {
                return; // Raft has stopped
            };
            seen
        };
        let now = Instant::now();
        if timer.check(now, seen, &mut draw) {
            tracing::info!(
                silent_ms = seen
                    .refreshed
                    .map(|r| now.saturating_duration_since(r).as_millis() as u64),
                voters = seen.voters,
                "raft: no leader heard from; starting an election"
            );
            let _ = raft.trigger().elect().await;
            // The vote changes (and is refreshed) when the election starts; draw again then.
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn follower(refreshed: Instant, committed: bool) -> Seen {
        Seen {
            state: ServerState::Follower,
            committed,
            refreshed: Some(refreshed),
            voters: 3,
            is_voter: true,
        }
    }

    /// Checks every 50 ms from `from` and returns how long after `from` the first election was.
    fn first_election(
        timer: &mut Timer,
        from: Instant,
        seen: impl Fn(Instant) -> Seen,
        draw_ms: u64,
    ) -> Option<Duration> {
        let mut draw = |_: Duration, _: Duration| Duration::from_millis(draw_ms);
        (0..200)
            .map(|i| from + i * POLL)
            .find(|&t| timer.check(t, seen(t), &mut draw))
            .map(|t| t - from)
    }

    #[test]
    fn a_silent_leader_is_replaced_after_the_lease_and_a_drawn_timeout() {
        let t0 = Instant::now();
        let mut timer = Timer::new(500, 1000, t0);
        // Committed vote: lease 1000 ms + draw 700 ms.
        assert_eq!(
            first_election(&mut timer, t0, |_| follower(t0, true), 700),
            Some(1700 * MS)
        );
        // Uncommitted (a candidate's or a granted vote): the timeout alone.
        let mut timer = Timer::new(500, 1000, t0);
        assert_eq!(
            first_election(&mut timer, t0, |_| follower(t0, false), 700),
            Some(700 * MS)
        );
    }

    #[test]
    fn heartbeats_keep_a_follower_from_campaigning() {
        let t0 = Instant::now();
        let mut timer = Timer::new(500, 1000, t0);
        // Refreshed every 200 ms, as the leader's heartbeats do.
        let beat = |t: Instant| follower(t0 + ((t - t0).as_millis() as u32 / 200) * 200 * MS, true);
        assert_eq!(first_election(&mut timer, t0, beat, 500), None);
    }

    #[test]
    fn each_silence_draws_its_own_timeout() {
        let t0 = Instant::now();
        let mut timer = Timer::new(500, 1000, t0);
        let mut draws = 0;
        let mut draw = |lo: Duration, _: Duration| {
            draws += 1;
            lo
        };
        timer.check(t0, follower(t0, false), &mut draw);
        timer.check(t0 + POLL, follower(t0, false), &mut draw);
        timer.check(t0 + 2 * POLL, follower(t0 + POLL, false), &mut draw);
        assert_eq!(draws, 2);
    }

    #[test]
    fn a_resumed_process_waits_for_the_leaders_messages_before_campaigning() {
        let t0 = Instant::now();
        let mut timer = Timer::new(500, 1000, t0);
        let mut draw = |lo: Duration, _: Duration| lo;
        assert!(!timer.check(t0, follower(t0, true), &mut draw));
        // Stopped for 1.5 s right after a heartbeat: the vote's age is already past lease + draw.
        let resumed = t0 + 1600 * MS;
        let stale = |_: Instant| follower(t0, true);
        let held = first_election(&mut timer, resumed, stale, 500);
        assert_eq!(
            held,
            Some(500 * MS),
            "held for election_timeout_min after the pause"
        );
        // Had the leader's heartbeat been read meanwhile, the vote would be fresh: no election.
        let mut timer = Timer::new(500, 1000, t0);
        assert!(!timer.check(t0, follower(t0, true), &mut draw));
        let fresh = |t: Instant| {
            follower(
                if t > resumed + 100 * MS {
                    resumed + 100 * MS
                } else {
                    t0
                },
                true,
            )
        };
        assert_eq!(first_election(&mut timer, resumed, fresh, 500), Some(1600 * MS));
    }

    #[test]
    fn a_lone_voter_elects_itself_at_once_and_only_once() {
        let t0 = Instant::now();
        let mut timer = Timer::new(500, 1000, t0);
        let mut draw = |lo: Duration, _: Duration| lo;
        let lone = |state| Seen {
            state,
            committed: false,
            refreshed: Some(t0),
            voters: 1,
            is_voter: true,
        };
        assert!(timer.check(t0, lone(ServerState::Follower), &mut draw));
        assert!(!timer.check(t0 + POLL, lone(ServerState::Candidate), &mut draw));
        assert!(!timer.check(t0 + 2 * POLL, lone(ServerState::Leader), &mut draw));
    }

    #[test]
    fn learners_leaders_and_non_voters_never_campaign() {
        let t0 = Instant::now();
        let mut timer = Timer::new(500, 1000, t0);
        let old = t0;
        let later = t0 + 10_000 * MS;
        for seen in [
            Seen {
                state: ServerState::Learner,
                committed: false,
                refreshed: Some(old),
                voters: 3,
                is_voter: false,
            },
            Seen {
                state: ServerState::Leader,
                committed: true,
                refreshed: Some(old),
                voters: 3,
                is_voter: true,
            },
            Seen {
                state: ServerState::Follower,
                committed: false,
                refreshed: Some(old),
                voters: 3,
                is_voter: false,
            },
        ] {
            assert!(!timer.check(later, seen, &mut |lo, _| lo), "{seen:?}");
        }
    }

    #[test]
    fn a_never_refreshed_vote_counts_from_start_up() {
        let t0 = Instant::now();
        let mut timer = Timer::new(500, 1000, t0);
        let never = |_: Instant| Seen {
            refreshed: None,
            ..follower(t0, false)
        };
        assert_eq!(first_election(&mut timer, t0, never, 600), Some(600 * MS));
    }
}
