//! Peak FLOPS: f64 and f32 GFLOP/s on one core and on all cores.
//!
//! The kernels ([`crate::simd::fma_f64`], [`crate::simd::fma_f32`]) are the widest the CPU has
//! (AVX-512F, AVX2+FMA, SSE2 or NEON, chosen at run time). Each call returns a checksum that
//! must equal its analytic value exactly; a single mismatch withholds the figure.

use std::time::{Duration, Instant};

use crate::report::CpuSection;
use crate::simd::{self, Isa};
use crate::stats::{giga_per_second, summarize, Conditions, Figure, Plan};
use crate::{team, Ctx};

/// Iterations per kernel call: short enough to calibrate finely, long enough that the call
/// overhead vanishes, and below the f32 exactness limit.
const ITERS: u64 = 1 << 16;

/// Measures the four peak-FLOPS figures.
pub fn measure(ctx: &Ctx, progress: &mut dyn FnMut(&str)) -> CpuSection {
    let isa = Isa::detect();
    let plan = plan(ctx.quick);
    let mut notes = Vec::new();
    let mut figure = |single: bool, all: bool, notes: &mut Vec<String>| {
        let precision = if single { "f32" } else { "f64" };
        let threads = if all { ctx.threads } else { 1 };
        progress(&format!(
            "cpu: {precision} peak FLOPS, {threads} thread(s), {}",
            isa.name()
        ));
        match peak(ctx, isa, single, threads, plan) {
            Ok(f) => Some(f),
            Err(why) => {
                notes.push(format!("{precision} on {threads} thread(s): {why}"));
                None
            }
        }
    };
    let f64_one_core = figure(false, false, &mut notes);
    let f64_all_cores = figure(false, true, &mut notes);
    let f32_one_core = figure(true, false, &mut notes);
    let f32_all_cores = figure(true, true, &mut notes);
    CpuSection {
        isa: isa.name().to_owned(),
        chains: simd::CHAINS,
        f64_one_core,
        f64_all_cores,
        f32_one_core,
        f32_all_cores,
        notes,
    }
}

/// Many short rounds rather than a few long ones: the median then shrugs off a neighbour's
/// burst on a shared machine.
fn plan(quick: bool) -> Plan {
    if quick {
        Plan {
            warmup: 1,
            repeats: 5,
            round: Duration::from_millis(30),
        }
    } else {
        Plan {
            warmup: 1,
            repeats: 9,
            round: Duration::from_millis(100),
        }
    }
}

fn call(isa: Isa, single: bool) -> Option<f64> {
    if single {
        simd::fma_f32(isa, ITERS)
    } else {
        simd::fma_f64(isa, ITERS)
    }
}

/// Kernel calls that fill one round, timed on the calling thread (this doubles as a warm-up).
fn calibrate(isa: Isa, single: bool, round: Duration) -> u64 {
    let mut calls = 1u64;
    loop {
        let start = Instant::now();
        for _ in 0..calls {
            let _ = call(isa, single);
        }
        let took = start.elapsed();
        if took >= Duration::from_millis(10) || calls >= 1 << 20 {
            let per_call = took.as_secs_f64() / calls as f64;
            return ((round.as_secs_f64() / per_call.max(1e-9)) as u64).max(1);
        }
        calls *= 2;
    }
}

#[derive(Default)]
struct Tally {
    calls: u64,
    wrong: u64,
}

/// One figure: `threads` pinned workers, each running the same calibrated number of calls per
/// round; GFLOP/s per timed round.
pub fn peak(ctx: &Ctx, isa: Isa, single: bool, threads: usize, plan: Plan) -> Result<Figure, String> {
    if !isa.available() {
        return Err(format!("this CPU cannot run {} kernels", isa.name()));
    }
    let calls = calibrate(isa, single, plan.round);
    let expected = isa.expected_checksum(ITERS, single);
    let cpus: Vec<usize> = ctx.cpus.iter().copied().take(threads.max(1)).collect();
    let rounds = plan.rounds() as usize;
    let cap = plan.round * plan.rounds() * 4;
    let out = team::run(
        &cpus,
        (0..threads.max(1)).map(|_| Tally::default()).collect(),
        rounds,
        // The time cap never stops a run before its first timed round: on a starved machine
        // a figure with fewer repeats (its spread says so) beats no figure.
        |done, elapsed| done < rounds && (elapsed < cap || done <= plan.warmup as usize),
        |tally, _round| {
            for _ in 0..calls {
                tally.calls += 1;
                if call(isa, single) != Some(expected) {
                    tally.wrong += 1;
                }
            }
        },
    );
    let wrong: u64 = out.states.iter().map(|t| t.wrong).sum();
    if wrong > 0 {
        return Err(format!(
            "{wrong} kernel call(s) returned a wrong checksum; figure withheld"
        ));
    }
    let flops_per_round = isa.flops(ITERS, single) * calls as f64 * out.states.len() as f64;
    let samples: Vec<f64> = out
        .rounds
        .iter()
        .skip(plan.warmup as usize)
        .map(|t| giga_per_second(flops_per_round, *t))
        .collect();
    let mut features = isa.features();
    features.sort();
    let conditions = Conditions {
        threads: out.states.len(),
        size: format!(
            "{} chains × {} lanes, {ITERS} iterations per call, {calls} calls per round",
            simd::CHAINS,
            if single { isa.lanes_f32() } else { isa.lanes_f64() }
        ),
        features,
        note: (!out.pinned).then(|| "threads not pinned (sched_setaffinity refused)".to_owned()),
    };
    summarize(&samples, "GFLOP/s", conditions).ok_or_else(|| "no timed round completed".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_is_positive_verified_and_has_spread() {
        let ctx = Ctx::for_tests();
        let plan = Plan {
            warmup: 1,
            repeats: 3,
            round: Duration::from_millis(10),
        };
        for single in [false, true] {
            let f = peak(&ctx, Isa::detect(), single, 1, plan).unwrap();
            assert_eq!(f.repeats, 3);
            assert!(f.median > 0.0 && f.min <= f.median && f.median <= f.max, "{f:?}");
            assert_eq!(f.unit, "GFLOP/s");
        }
    }

    #[test]
    fn every_available_isa_measures() {
        let ctx = Ctx::for_tests();
        let plan = Plan {
            warmup: 0,
            repeats: 1,
            round: Duration::from_millis(5),
        };
        for isa in Isa::all().into_iter().filter(|i| i.available()) {
            let f = peak(&ctx, isa, false, ctx.threads, plan).unwrap();
            assert!(f.median > 0.0, "{isa:?}: {f:?}");
        }
    }
}
