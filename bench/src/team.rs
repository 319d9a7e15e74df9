//! Pinned worker threads that run timed rounds in lockstep.
//!
//! Every multi-threaded figure is measured the same way: one thread per worker, each pinned to
//! its own CPU (`sched_setaffinity`), all released together by a barrier at the start of each
//! round; a round's time runs from the first thread's start to the last thread's end, so a
//! straggler counts against the figure instead of hiding in an average.
//!
//! The barrier spins (then yields) instead of sleeping in the kernel: waking a sleeping thread
//! costs tens of microseconds, more in a VM (an IPI to a halted vCPU), and that skew would be
//! charged to every round.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::unistd::Pid;

/// The CPUs this process may run on (its affinity mask), lowest first.
pub fn allowed_cpus() -> Vec<usize> {
    if let Ok(set) = sched_getaffinity(Pid::from_raw(0)) {
        let cpus: Vec<usize> = (0..CpuSet::count())
            .filter(|cpu| set.is_set(*cpu).unwrap_or(false))
            .collect();
        if !cpus.is_empty() {
            return cpus;
        }
    }
    (0..default_threads()).collect()
}

/// How many threads "all cores" means here: what std reports (it honours the affinity mask
/// and a cgroup CPU quota), at least 1.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// Pins the calling thread to `cpu`; `false` when the kernel refused.
pub fn pin_current(cpu: usize) -> bool {
    let mut set = CpuSet::new();
    set.set(cpu).is_ok() && sched_setaffinity(Pid::from_raw(0), &set).is_ok()
}

/// A reusable barrier for `n` threads that spins, then yields, while it waits.
struct SpinBarrier {
    n: usize,
    arrived: AtomicUsize,
    generation: AtomicUsize,
}

impl SpinBarrier {
    fn new(n: usize) -> SpinBarrier {
        SpinBarrier {
            n,
            arrived: AtomicUsize::new(0),
            generation: AtomicUsize::new(0),
        }
    }

    /// Returns once all `n` threads have called `wait` for this generation. Everything a thread
    /// wrote before calling it is visible to every thread after it returns.
    fn wait(&self) {
        let generation = self.generation.load(Ordering::Acquire);
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 == self.n {
            self.arrived.store(0, Ordering::Relaxed);
            self.generation.fetch_add(1, Ordering::Release);
            return;
        }
        let mut spins = 0u32;
        while self.generation.load(Ordering::Acquire) == generation {
            if spins < 1 << 16 {
                std::hint::spin_loop();
                spins += 1;
            } else {
                // More threads than CPUs (or a preempted peer): let the others run.
                std::thread::yield_now();
            }
        }
    }
}

/// What [`run`] measured.
pub struct Outcome<S> {
    /// The workers' states, in order.
    pub states: Vec<S>,
    /// Per round: first start to last end.
    pub rounds: Vec<Duration>,
    /// True when every worker was pinned to its CPU.
    pub pinned: bool,
}

/// Runs `work(state, round)` for rounds 0, 1, … on one thread per state, worker `i` pinned to
/// `cpus[i % cpus.len()]`, each round started by all workers together. After each round
/// `go_on(rounds_done, elapsed_since_first_round)` decides (once, for everyone) whether another
/// follows; at most `max_rounds` run.
pub fn run<S, G, W>(cpus: &[usize], states: Vec<S>, max_rounds: usize, go_on: G, work: W) -> Outcome<S>
where
    S: Send,
    G: Fn(usize, Duration) -> bool + Sync,
    W: Fn(&mut S, usize) + Sync,
{
    let workers = states.len();
    let barrier = SpinBarrier::new(workers);
    // The round at which everyone stops, set once by worker 0. A round number (not a flag) so
    // a slow worker reading it late in round r still agrees that round r runs.
    let stop_at = AtomicUsize::new(usize::MAX);
    let all_pinned = AtomicBool::new(true);
    let first_start: Mutex<Option<Instant>> = Mutex::new(None);
    let (go_on, work) = (&go_on, &work);
    let (barrier, stop_at, all_pinned, first_start) = (&barrier, &stop_at, &all_pinned, &first_start);

    let results: Vec<(S, Vec<(Instant, Instant)>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = states
            .into_iter()
            .enumerate()
            .map(|(index, mut state)| {
                let cpu = if cpus.is_empty() {
                    None
                } else {
                    Some(cpus[index % cpus.len()])
                };
                scope.spawn(move || {
                    if !cpu.is_some_and(pin_current) {
                        all_pinned.store(false, Ordering::Relaxed);
                    }
                    let mut spans = Vec::with_capacity(max_rounds);
                    for round in 0..max_rounds {
                        // Worker 0 stored its decision before reaching this barrier, which
                        // orders memory, so everyone agrees on the last round.
                        barrier.wait();
                        if round >= stop_at.load(Ordering::Acquire) {
                            break;
                        }
                        let start = Instant::now();
                        work(&mut state, round);
                        let end = Instant::now();
                        spans.push((start, end));
                        if index == 0 {
                            let first = match first_start.lock() {
                                Ok(mut f) => *f.get_or_insert(start),
                                Err(_) => start,
                            };
                            if !go_on(round + 1, end.duration_since(first)) {
                                stop_at.store(round + 1, Ordering::Release);
                            }
                        }
                    }
                    (state, spans)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            .collect()
    });

    let done = results.iter().map(|(_, spans)| spans.len()).min().unwrap_or(0);
    let rounds = (0..done)
        .map(|r| {
            let start = results.iter().map(|(_, s)| s[r].0).min();
            let end = results.iter().map(|(_, s)| s[r].1).max();
            match (start, end) {
                (Some(start), Some(end)) => end.duration_since(start),
                _ => Duration::ZERO,
            }
        })
        .collect();
    Outcome {
        states: results.into_iter().map(|(s, _)| s).collect(),
        rounds,
        pinned: all_pinned.load(Ordering::Relaxed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_run_in_lockstep_and_stop_when_told() {
        let cpus = allowed_cpus();
        assert!(!cpus.is_empty());
        let out = run(&cpus, vec![0u32; 3], 10, |done, _| done < 4, |n, _| *n += 1);
        assert_eq!(out.states, vec![4, 4, 4]);
        assert_eq!(out.rounds.len(), 4);
        assert!(out.pinned);
    }
}
