//! `cortex bench net --peer <node>`: network throughput between this machine and a node of
//! the cluster, one TCP stream each way, counted by the receiver (`cortex_bench::net`).
//!
//! This command draws a one-time secret and asks the cluster (`RunNetBenchmark`, scope
//! operate) for the peer to serve a run, sending only the secret's SHA-256. The peer sees the
//! request in its heartbeat answer, opens a one-time listener and records where; this command
//! connects there, presents the secret, sends then receives, and waits for the peer to record
//! the report on its node record (`net_bench`), which it prints. Plain TCP: no TLS in the
//! measured path, so the figure is the network's.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use cortex_bench::net::{NetReport, RunInfo, SECRET_LEN};
use cortex_model::node::{NetBenchRequest, NodeRecord};
use cortex_proto::v1::{GetNodeRequest, RunNetBenchmarkRequest};
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::bench::num;
use super::output::{self, Output};
use crate::client::{Client, ClientArgs};
use crate::convert::node_from_pb;

#[derive(Debug, clap::Args)]
pub struct NetArgs {
    /// The peer node (id or name): it listens, this machine connects and measures both ways.
    #[arg(long, value_name = "NODE")]
    pub peer: String,
    /// Seconds timed per direction, after a 0.5 s warm-up (1 to 30).
    #[arg(long, value_name = "N", default_value_t = cortex_bench::net::DEFAULT_SECONDS,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(cortex_bench::net::MAX_SECONDS)))]
    pub seconds: u32,
    /// How this machine names itself in the result (default: the configured node_name, else
    /// the host name).
    #[arg(long, value_name = "NAME")]
    pub from: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// How long the peer has to start listening once asked (it hears of the request in its next
/// heartbeat answer, every second or so).
const LISTEN_WITHIN: Duration = Duration::from_secs(30);
/// How long the peer has to record the report after the run.
const RECORD_WITHIN: Duration = Duration::from_secs(20);

async fn get_node(client: &mut Client, key: &str) -> anyhow::Result<NodeRecord> {
    let req = client.request(GetNodeRequest { key: key.to_owned() });
    let n = client
        .grpc
        .get_node(req)
        .await
        .map_err(|e| client.error(e))?
        .into_inner();
    node_from_pb(n).map_err(anyhow::Error::msg)
}

fn ours(n: &NodeRecord, asked: &NetBenchRequest) -> Option<NetBenchRequest> {
    n.net_bench_request
        .clone()
        .filter(|r| r.requested_at_ms == asked.requested_at_ms)
}

pub async fn run(args: NetArgs, out: Output) -> anyhow::Result<()> {
    let window = cortex_bench::net::window(args.seconds).map_err(|e| anyhow::anyhow!("--seconds: {e}"))?;
    let from = match args.from {
        Some(f) => f,
        None => super::bench_publish::this_node().unwrap_or_else(|_| "this machine".into()),
    };
    let mut secret = [0u8; SECRET_LEN];
    rand::rng().fill_bytes(&mut secret);
    let mut client = Client::connect(&args.client).await?;
    let req = client.request(RunNetBenchmarkRequest {
        key: args.peer.clone(),
        seconds: args.seconds,
        secret_sha256: hex::encode(Sha256::digest(secret)),
        from: from.clone(),
        coordinator_measures: false,
    });
    let asked = client
        .grpc
        .run_net_benchmark(req)
        .await
        .map_err(|e| client.error(e))?
        .into_inner();
    let peer = node_from_pb(asked).map_err(anyhow::Error::msg)?;
    let Some(request) = peer.net_bench_request.clone() else {
        anyhow::bail!("node {}: the request was not recorded", peer.name);
    };
    eprintln!(
        "bench net: asked node {} (id {}) to be the peer of a {} s run each way; waiting for it to listen",
        peer.name, peer.id, args.seconds
    );

    // The peer says where it listens (or fails before it does).
    let started = Instant::now();
    let addr = loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let n = get_node(&mut client, &peer.id.to_string()).await?;
        match ours(&n, &request) {
            Some(r) => {
                if let Some(a) = r.listening {
                    break a;
                }
            }
            None => {
                let why = n
                    .net_bench
                    .as_ref()
                    .and_then(|r| r.get("error"))
                    .and_then(|e| e.as_str())
                    .unwrap_or("the request was answered or replaced by another run");
                anyhow::bail!("node {}: the run did not start: {why}", n.name);
            }
        }
        if started.elapsed() >= LISTEN_WITHIN {
            anyhow::bail!(
                "node {} did not start listening within {} s: its agent sees the request in its heartbeat \
                 answer — is it running and heartbeating? (`cortex node show {}`; the request expires by itself)",
                n.name,
                LISTEN_WITHIN.as_secs(),
                n.id
            );
        }
    };
    let sock: SocketAddr = addr
        .parse()
        .with_context(|| format!("node {} listens on {addr:?}, which is not ip:port", peer.name))?;
    eprintln!(
        "bench net: node {} listens on {sock}; sending, then receiving",
        peer.name
    );

    let run_started = Instant::now();
    let started_at_ms = crate::api::now_ms();
    let measured = tokio::task::spawn_blocking(move || cortex_bench::net::connect(sock, &secret, &window))
        .await
        .context("the benchmark thread failed")?;
    let measured = measured.map_err(|e| anyhow::anyhow!("node {}: {e}", peer.name))?;
    let local = NetReport::new(
        RunInfo {
            from: Some(from),
            addr,
            seconds: args.seconds,
            started_at_ms,
            duration_ms: u64::try_from(run_started.elapsed().as_millis()).unwrap_or(u64::MAX),
        },
        Ok(measured),
    );

    // The peer records the report; print what it recorded.
    let waited = Instant::now();
    let recorded = loop {
        let n = get_node(&mut client, &peer.id.to_string()).await?;
        if ours(&n, &request).is_none() {
            break n
                .net_bench
                .clone()
                .and_then(|v| serde_json::from_value::<NetReport>(v).ok());
        }
        if waited.elapsed() >= RECORD_WITHIN {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let report = match recorded {
        Some(r) => {
            eprintln!(
                "bench net: recorded on node {}'s record (`cortex node show {} -o json` → net_bench)",
                peer.name, peer.id
            );
            r
        }
        None => {
            eprintln!(
                "bench net: warning: node {} has not recorded the run within {} s; printing this side's copy",
                peer.name,
                RECORD_WITHIN.as_secs()
            );
            local
        }
    };
    if out == Output::Json {
        return output::print_json(&report);
    }
    print!("{}", human(&report, &peer.name));
    Ok(())
}

/// The human report: conditions, one row per direction, notes.
pub(super) fn human(r: &NetReport, peer: &str) -> String {
    let from = r.from.as_deref().unwrap_or("?");
    let mut s = output::fields(&[
        ("peer", format!("{peer}, listening on {}", r.addr)),
        ("from", from.to_owned()),
        (
            "path",
            format!(
                "{}, {} stream each way, {} ({})",
                r.path.transport,
                r.path.streams,
                if r.path.tls { "TLS" } else { "no TLS" },
                r.path.auth
            ),
        ),
        (
            "run",
            format!(
                "{} s per direction after a {} ms warm-up, a sample every {} ms, {:.1} s in all, format {}",
                r.seconds,
                r.warmup_ms,
                r.interval_ms,
                r.duration_ms as f64 / 1000.0,
                r.format
            ),
        ),
    ]);
    if let Some(e) = &r.error {
        s.push_str(&format!("error: {e}\n"));
    }
    s.push('\n');
    let rows: Vec<Vec<String>> = [
        (format!("send ({from} → {peer})"), &r.send),
        (format!("receive ({peer} → {from})"), &r.receive),
    ]
    .into_iter()
    .map(|(name, d)| match &d.figure {
        Some(f) => vec![
            name,
            num(f.median),
            num(f.min),
            num(f.max),
            format!("{:.1}%", f.cv * 100.0),
            f.repeats.to_string(),
            f.unit.clone(),
            output::bytes(d.bytes),
        ],
        None => {
            let mut v = vec![name];
            v.extend(std::iter::repeat_n("-".to_owned(), 6));
            v.push(output::bytes(d.bytes));
            v
        }
    })
    .collect();
    s.push_str(&output::table(
        &["direction", "median", "min", "max", "cv", "n", "unit", "received"],
        &rows,
    ));
    if !r.notes.is_empty() {
        s.push_str("\nnotes:\n");
        for n in &r.notes {
            s.push_str(&format!("  - {n}\n"));
        }
    }
    s
}
