//! `cortex loadgen tasks|direct|placement`: the workload benchmarks (scripts/bench-tasks.py).
//!
//! - `tasks`: C clients each submit a task and follow it to its end, until N tasks are done;
//!   reports submit → finished latency and completed tasks per second.
//! - `direct`: the same command run directly (spawn + wait) N times, the baseline.
//! - `placement`: the scheduler alone (in memory, no network): N simulated nodes, M pending
//!   tasks; placements per second through `schedule` + apply.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cortex_model::command::Command;
use cortex_model::node::{NodeRegistration, NodeRole};
use cortex_model::state::ClusterState;
use cortex_model::task::{NewTask, TaskRecord, TaskSpec};
use cortex_proto::v1 as pb;
use serde::Serialize;

use super::output::{self, Output};
use super::spec_args::SpecArgs;
use crate::api::tasks::{SubmitInput, Submitted};
use crate::client::{Client, ClientArgs};

#[derive(Debug, clap::Args)]
pub struct TasksArgs {
    /// Tasks to complete in all.
    #[arg(long, default_value_t = 100)]
    pub count: usize,
    /// Concurrent clients, each with its own connection.
    #[arg(long, default_value_t = 1)]
    pub clients: usize,
    #[command(flatten)]
    pub spec: SpecArgs,
    #[command(flatten)]
    pub client: ClientArgs,
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

#[derive(Serialize)]
pub struct LatencyReport {
    pub what: String,
    pub count: usize,
    pub failed: usize,
    pub seconds: f64,
    pub per_sec: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub min_ms: f64,
    /// Medians of the phases recorded in the task record (proposers' clocks): created →
    /// placed, placed → started (reported), started → ended (reported).
    #[serde(default)]
    pub phases_ms: BTreeMap<String, f64>,
}

pub(super) fn report(what: &str, mut lat: Vec<Duration>, failed: usize, seconds: f64) -> LatencyReport {
    lat.sort();
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return 0.0;
        }
        lat[((lat.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1000.0
    };
    LatencyReport {
        what: what.to_string(),
        count: lat.len(),
        failed,
        seconds,
        per_sec: lat.len() as f64 / seconds.max(1e-9),
        p50_ms: pct(0.5),
        p95_ms: pct(0.95),
        p99_ms: pct(0.99),
        min_ms: pct(0.0),
        phases_ms: BTreeMap::new(),
    }
}

fn phases(records: &[TaskRecord]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let mut add = |name: &str, mut v: Vec<u64>| {
        v.sort();
        if !v.is_empty() {
            out.insert(name.to_string(), v[v.len() / 2] as f64);
        }
    };
    let a = |t: &TaskRecord| t.attempts.last().cloned();
    add(
        "created_to_placed",
        records
            .iter()
            .filter_map(|t| Some(a(t)?.placed_at_ms.saturating_sub(t.created_at_ms)))
            .collect(),
    );
    add(
        "placed_to_started",
        records
            .iter()
            .filter_map(|t| {
                let a = a(t)?;
                Some(a.started_at_ms?.saturating_sub(a.placed_at_ms))
            })
            .collect(),
    );
    add(
        "started_to_ended",
        records
            .iter()
            .filter_map(|t| {
                let a = a(t)?;
                Some(a.ended_at_ms?.saturating_sub(a.started_at_ms?))
            })
            .collect(),
    );
    out
}

fn print(r: &LatencyReport, out: Output) -> anyhow::Result<()> {
    if out == Output::Json {
        return output::print_json(r);
    }
    println!(
        "{}: {} in {:.2}s = {:.0}/s; p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms ({} failed)",
        r.what, r.count, r.seconds, r.per_sec, r.p50_ms, r.p95_ms, r.p99_ms, r.failed
    );
    if !r.phases_ms.is_empty() {
        println!("  phase medians (ms): {:?}", r.phases_ms);
    }
    Ok(())
}

async fn one_task(c: &mut Client, spec: &TaskSpec) -> anyhow::Result<TaskRecord> {
    let input = SubmitInput {
        tasks: vec![spec.clone()],
        ..Default::default()
    };
    let req = c.request(pb::JsonRequest {
        input_json: serde_json::to_string(&input)?,
    });
    let resp = c.grpc.submit_tasks(req).await.map_err(|e| c.error(e))?;
    let submitted: Submitted = serde_json::from_str(&resp.into_inner().json)?;
    let id = submitted.task_ids.first().cloned().unwrap_or_default();
    let req = c.request(pb::TaskLogsRequest {
        id: id.clone(),
        offset: 0,
        max_bytes: 0,
        follow: true,
    });
    let mut stream = c.grpc.watch_task(req).await.map_err(|e| c.error(e))?.into_inner();
    let mut last = None;
    while let Some(u) = stream.message().await? {
        if !u.task_json.is_empty() {
            last = Some(serde_json::from_str::<TaskRecord>(&u.task_json)?);
        }
    }
    last.ok_or_else(|| anyhow::anyhow!("task {id}: the watch ended without a record"))
}

pub async fn tasks(a: TasksArgs, out: Output) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.clients >= 1 && a.count >= 1,
        "--clients and --count must be at least 1"
    );
    let spec = a.spec.to_spec(a.command.clone())?;
    let remaining = std::sync::Arc::new(std::sync::atomic::AtomicIsize::new(a.count as isize));
    let start = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..a.clients {
        let mut c = Client::connect(&a.client).await?;
        let spec = spec.clone();
        let remaining = remaining.clone();
        handles.push(tokio::spawn(async move {
            let (mut lat, mut failed, mut recs) = (Vec::new(), 0usize, Vec::new());
            while remaining.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) > 0 {
                let t = Instant::now();
                match one_task(&mut c, &spec).await {
                    Ok(rec) if rec.state == cortex_model::task::TaskState::Succeeded => {
                        lat.push(t.elapsed());
                        recs.push(rec);
                    }
                    Ok(rec) => {
                        failed += 1;
                        tracing::warn!("task {} {}: {:?}", rec.id, rec.state.as_str(), rec.error);
                    }
                    Err(e) => {
                        failed += 1;
                        tracing::warn!("task failed: {e:#}");
                    }
                }
            }
            (lat, failed, recs)
        }));
    }
    let (mut lat, mut failed, mut recs) = (Vec::new(), 0, Vec::new());
    for h in handles {
        let (l, f, r) = h.await?;
        lat.extend(l);
        failed += f;
        recs.extend(r);
    }
    let mut r = report(
        &format!("{} tasks, {} clients", spec.kind.as_str(), a.clients),
        lat,
        failed,
        start.elapsed().as_secs_f64(),
    );
    r.phases_ms = phases(&recs);
    print(&r, out)
}

/// The baseline: the command spawned directly and waited for, `count` times in a row.
pub async fn direct(count: usize, command: Vec<String>, out: Output) -> anyhow::Result<()> {
    anyhow::ensure!(!command.is_empty(), "give a command after --");
    let start = Instant::now();
    let (mut lat, mut failed) = (Vec::new(), 0);
    for _ in 0..count.max(1) {
        let t = Instant::now();
        let status = tokio::process::Command::new(&command[0])
            .args(&command[1..])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .await?;
        if status.success() {
            lat.push(t.elapsed());
        } else {
            failed += 1;
        }
    }
    let r = report(
        &format!("direct {}", command.join(" ")),
        lat,
        failed,
        start.elapsed().as_secs_f64(),
    );
    print(&r, out)
}

/// Placement throughput of the scheduler and apply, in memory.
pub fn placement(nodes: usize, tasks: usize, out: Output) -> anyhow::Result<()> {
    let mut state = ClusterState::default();
    for i in 0..nodes {
        let mut inventory = cortex_model::inventory::Inventory::default();
        inventory.cpu.threads = 16;
        inventory.memory.total_bytes = 64 << 30;
        state.apply(&Command::RegisterNode {
            node: Box::new(NodeRegistration {
                id: i as u64 + 1,
                name: format!("sim-{i}"),
                role: NodeRole::Worker,
                grpc_addr: String::new(),
                http_addr: String::new(),
                inventory,
            }),
            at_ms: 1,
        });
    }
    let spec = TaskSpec {
        command: vec!["true".into()],
        ..Default::default()
    };
    let batch: Vec<NewTask> = (0..tasks)
        .map(|i| NewTask {
            id: format!("t{i:012x}"),
            spec: spec.clone(),
            workflow: None,
            group: None,
            depends_on: vec![],
        })
        .collect();
    state.apply(&Command::SubmitTasks {
        tasks: batch,
        workflow: None,
        submitted_by: None,
        placements: Vec::new(),
        at_ms: 2,
    });
    let load = BTreeMap::new();
    let start = Instant::now();
    let mut placed = 0usize;
    let mut rounds = 0usize;
    loop {
        let p = cortex_model::placement::schedule(&state, &load, 10, 512);
        if p.is_empty() {
            break;
        }
        rounds += 1;
        if let cortex_model::command::Outcome::Placed(o) = state.apply(&Command::PlaceTasks {
            placements: p,
            at_ms: 10,
        }) {
            placed += o.placed.len();
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let v = serde_json::json!({
        "nodes": nodes, "tasks": tasks, "placed": placed, "rounds": rounds,
        "seconds": secs, "placements_per_sec": placed as f64 / secs.max(1e-9),
    });
    if out == Output::Json {
        return output::print_json(&v);
    }
    println!(
        "placement: {placed} of {tasks} tasks on {nodes} nodes in {secs:.2}s = {:.0}/s ({rounds} passes of ≤512)",
        placed as f64 / secs.max(1e-9)
    );
    Ok(())
}
