//! `cortex loadgen writes`: drives the real write path (gRPC → Raft → durable store → apply)
//! with N concurrent clients and reports throughput and latency. Used by
//! scripts/bench-foundation.sh; hidden from `--help` because it is a benchmark tool.

use std::time::{Duration, Instant};

use cortex_proto::v1::{SetNodeLabelsRequest, WhoAmIRequest};
use serde::Serialize;

use super::output::{self, Output};
use crate::client::{Client, ClientArgs};

#[derive(Debug, clap::Subcommand)]
pub enum LoadgenCommand {
    /// Simulated nodes: join with an auto-approve token, then heartbeat.
    Heartbeats {
        /// A join token created with --auto-approve.
        #[arg(long)]
        token: String,
        /// The cluster CA certificate.
        #[arg(long)]
        ca_file: std::path::PathBuf,
        #[arg(long, default_value_t = 100)]
        nodes: usize,
        #[arg(long, default_value_t = 30.0)]
        seconds: f64,
        #[arg(long, default_value_t = 1000)]
        interval_ms: u64,
    },
    /// Submit tasks and follow each to its end; latency and completed tasks per second.
    Tasks(Box<super::loadgen_tasks::TasksArgs>),
    /// The executor alone (cgroups, private network, scratch dir; no cluster): the ceiling for
    /// `tasks` on this host.
    Executor(super::loadgen_executor::ExecutorArgs),
    /// The baseline: run a command directly N times.
    Direct {
        #[arg(long, default_value_t = 100)]
        count: usize,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// The scheduler alone, in memory: placements per second over N simulated nodes.
    Placement {
        #[arg(long, default_value_t = 1000)]
        nodes: usize,
        #[arg(long, default_value_t = 20000)]
        tasks: usize,
    },
    /// Concurrent label writes against one node.
    Writes {
        /// Node whose labels are written.
        #[arg(long)]
        node: String,
        /// Concurrent clients (each with its own connection, unless --connections is given).
        #[arg(long, default_value_t = 1)]
        clients: usize,
        /// Connections the clients share (HTTP/2 multiplexes their calls, as clients of one
        /// process sharing a gRPC channel do); default: one per client.
        #[arg(long)]
        connections: Option<usize>,
        /// Distinct label keys the clients write (client i writes `loadgen-{i mod keys}`);
        /// default: one per client. A label write answers with the node's whole label set,
        /// so a fixed number keeps each write the same size at every client count.
        #[arg(long)]
        keys: Option<usize>,
        /// How long to run.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// The call each client repeats: `set-labels` (a durable write) or `who-am-i` (the
        /// same transport, mTLS and token check with no Raft behind it: the floor any write
        /// through the API pays).
        #[arg(long, value_enum, default_value_t = Call::SetLabels)]
        call: Call,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Call {
    SetLabels,
    WhoAmI,
}

#[derive(Serialize)]
struct Report {
    call: &'static str,
    clients: usize,
    connections: usize,
    /// Time to open the connections, before the measured calls.
    connect_seconds: f64,
    writes: u64,
    errors: u64,
    seconds: f64,
    writes_per_sec: f64,
    latency_ms_p50: f64,
    latency_ms_p99: f64,
}

pub async fn run(cmd: LoadgenCommand, out: Output) -> anyhow::Result<()> {
    let (node, clients, connections, keys, seconds, call, client) = match cmd {
        LoadgenCommand::Writes {
            node,
            clients,
            connections,
            keys,
            seconds,
            call,
            client,
        } => (node, clients, connections, keys, seconds, call, client),
        LoadgenCommand::Heartbeats {
            token,
            ca_file,
            nodes,
            seconds,
            interval_ms,
        } => {
            return super::heartbeats::run(&token, &ca_file, nodes, seconds, interval_ms).await;
        }
        LoadgenCommand::Tasks(a) => return super::loadgen_tasks::tasks(*a, out).await,
        LoadgenCommand::Executor(a) => return super::loadgen_executor::executor(a, out).await,
        LoadgenCommand::Direct { count, command } => {
            return super::loadgen_tasks::direct(count, command, out).await
        }
        LoadgenCommand::Placement { nodes, tasks } => {
            return super::loadgen_tasks::placement(nodes, tasks, out)
        }
    };
    anyhow::ensure!(clients >= 1, "--clients must be at least 1");
    let connections = connections.unwrap_or(clients);
    anyhow::ensure!(
        (1..=clients).contains(&connections),
        "--connections must be between 1 and --clients ({clients})"
    );
    let keys = keys.unwrap_or(clients);
    anyhow::ensure!(keys >= 1, "--keys must be at least 1");
    anyhow::ensure!(
        seconds > 0.0 && seconds.is_finite(),
        "--seconds must be a positive number"
    );
    // Connections first: the clock measures calls, not TLS handshakes (64 of them took 67-76 ms
    // on the 2-core bench host; the report gives the time as `connect_seconds`).
    let connecting = Instant::now();
    let mut conns = Vec::new();
    for _ in 0..connections {
        conns.push(Client::connect(&client).await?);
    }
    let connect_seconds = connecting.elapsed().as_secs_f64();
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    for worker in 0..clients {
        let mut c = conns[worker % connections].clone();
        let node = node.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            let mut i = 0u64;
            while Instant::now() < deadline {
                let t = Instant::now();
                let ok = match call {
                    Call::SetLabels => {
                        let req = c.request(SetNodeLabelsRequest {
                            key: node.clone(),
                            set: [(format!("loadgen-{}", worker % keys), i.to_string())]
                                .into_iter()
                                .collect(),
                            remove: vec![],
                        });
                        c.grpc.set_node_labels(req).await.is_ok()
                    }
                    Call::WhoAmI => {
                        let req = c.request(WhoAmIRequest {});
                        c.grpc.who_am_i(req).await.is_ok()
                    }
                };
                if ok {
                    lat.push(t.elapsed());
                } else {
                    errors += 1;
                }
                i += 1;
            }
            (lat, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (lat, e) = t.await?;
        all.extend(lat);
        errors += e;
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort();
    let pct = |p: f64| -> f64 {
        if all.is_empty() {
            return 0.0;
        }
        let i = ((all.len() as f64 - 1.0) * p).round() as usize;
        all[i].as_secs_f64() * 1000.0
    };
    let report = Report {
        call: match call {
            Call::SetLabels => "set_node_labels",
            Call::WhoAmI => "who_am_i",
        },
        clients,
        connections,
        connect_seconds,
        writes: all.len() as u64,
        errors,
        seconds: elapsed,
        writes_per_sec: all.len() as f64 / elapsed,
        latency_ms_p50: pct(0.5),
        latency_ms_p99: pct(0.99),
    };
    if out == Output::Json {
        return output::print_json(&report);
    }
    println!(
        "{}: {} clients over {} connections: {} calls in {:.1}s = {:.0} calls/s (p50 {:.2} ms, p99 {:.2} ms, {} errors)",
        report.call,
        report.clients,
        report.connections,
        report.writes,
        report.seconds,
        report.writes_per_sec,
        report.latency_ms_p50,
        report.latency_ms_p99,
        report.errors
    );
    Ok(())
}
