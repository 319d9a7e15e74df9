//! `cortex up`: the long-running node process.
//!
//! Order matters: config → data dir → store → identity → listeners (so a busy port fails
//! before anything else starts) → Raft → bootstrap/register → serve until the one shutdown
//! signal → stop listeners → stop Raft → close the store.

mod bootstrap;
mod data_dir;
mod detector;
mod election;
mod grpc;
mod grpc_tasks;
mod http;
mod identity;
mod listeners;
mod membership;
mod pki;
mod raft_events;
mod scheduler;
mod shutdown;

pub use bootstrap::name_from_hostname;
pub use data_dir::prepare as prepare_data_dir;
pub use identity::load_or_create as load_identity;
pub use shutdown::Shutdown;

/// How this coordinator came to be.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `cortex up`: create the cluster if this data dir has none.
    Bootstrap,
    /// `cortex agent --role coordinator`: approved by an existing cluster; the leader adds it
    /// to the Raft membership.
    Joined,
}

use std::time::Duration;

use anyhow::Context;
use cortex_cluster::network::GrpcNetwork;
use cortex_cluster::open_store;
use serde::Serialize;

use crate::api::{NodeApi, NodeApiParts};
use crate::cli::Output;
use crate::config::Config;

/// openraft's `install_snapshot_timeout`: how long one snapshot chunk may take to send and,
/// for the last one, to persist on the follower.
const SNAPSHOT_CHUNK_TIMEOUT_MS: u64 = 10_000;

/// Entries per AppendEntries (see the Raft configuration below).
const MAX_APPEND_ENTRIES: u64 = 64;

#[derive(Serialize)]
struct Where {
    cluster_id: String,
    cluster_created: bool,
    node_id: u64,
    node_name: String,
    data_dir: String,
    grpc_addr: String,
    http_addr: String,
    admin_token_file: String,
}

pub async fn up(config: Config, out: Output) -> anyhow::Result<()> {
    init_tracing(&config.log_level);
    let shutdown = shutdown::Shutdown::install()?;
    serve(config, out, shutdown, Mode::Bootstrap, None).await
}

/// Runs an approved coordinator that joined an existing cluster. `measured`: the benchmark
/// the agent started while joining (its report is published instead of measuring again).
pub async fn run_joined(
    config: Config,
    out: Output,
    shutdown: Shutdown,
    measured: crate::selfbench::Measuring,
) -> anyhow::Result<()> {
    serve(config, out, shutdown, Mode::Joined, measured).await
}

async fn serve(
    config: Config,
    out: Output,
    shutdown: Shutdown,
    mode: Mode,
    measured: crate::selfbench::Measuring,
) -> anyhow::Result<()> {
    let dirs = data_dir::prepare(&config.data_dir)?;
    let (log_store, sm) = open_store(&dirs.store).map_err(anyhow::Error::new)?;
    let identity = identity::load_or_create(&log_store)?;
    log_store.set_node_id(identity.node_id);
    let pki = match mode {
        Mode::Bootstrap => pki::load_or_create(&config.data_dir, identity.node_id, &identity.cluster_id)?,
        Mode::Joined => pki::load_joined(&config.data_dir)?,
    };
    let (grpc_listener, http_listener) = listeners::bind(config.grpc_addr, config.http_addr).await?;
    let grpc_addr = grpc_listener
        .local_addr()
        .context("reading the gRPC listener's address")?;
    let http_addr = http_listener
        .local_addr()
        .context("reading the HTTP listener's address")?;

    let inventory = cortex_host::collect().await;
    let node_name = config
        .node_name
        .clone()
        .unwrap_or_else(|| bootstrap::name_from_hostname(&inventory.hostname));

    let raft_config = openraft::Config {
        cluster_name: "cortex".into(),
        heartbeat_interval: config.raft.heartbeat_interval_ms,
        election_timeout_min: config.raft.election_timeout_min_ms,
        election_timeout_max: config.raft.election_timeout_max_ms,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(config.raft.snapshot_after_entries),
        // Per snapshot chunk (openraft's default, 200 ms, is shorter than one fsync on a busy
        // disk: the last chunk is persisted before it is answered). Append-entries are bounded
        // by the heartbeat interval and votes by the minimum election timeout (openraft's own).
        install_snapshot_timeout: SNAPSHOT_CHUNK_TIMEOUT_MS,
        // Entries per AppendEntries (openraft's default is 300). A batch entry carries up to 256
        // writes, so 300 of them were megabytes per request: a new leader probing for a
        // follower's matching point read, encoded and sent that much per probe (`catch_up.rs`),
        // and one such request could outlast the heartbeat-interval deadline. Under load a
        // request carries a few entries; a follower catching up gets 64 per round trip.
        max_payload_entries: MAX_APPEND_ENTRIES,
        // Elections are started by `election.rs` alone (why: its module documentation).
        enable_elect: false,
        ..Default::default()
    }
    .validate()
    .context("building the Raft configuration")?;
    let raft = openraft::Raft::new(
        identity.node_id,
        std::sync::Arc::new(raft_config),
        GrpcNetwork::new(
            identity.node_id,
            std::sync::Arc::new(pki.creds.clone()),
            log_store.durable(),
        ),
        log_store,
        sm.clone(),
    )
    .await
    .context("starting the Raft node")?;
    tokio::spawn(raft_events::run(raft.clone(), shutdown.token()));
    tokio::spawn(election::run(
        raft.clone(),
        identity.node_id,
        config.raft.election_timeout_min_ms,
        config.raft.election_timeout_max_ms,
        shutdown.token(),
    ));
    let api = NodeApi::new(NodeApiParts {
        raft: raft.clone(),
        sm: sm.clone(),
        node_id: identity.node_id,
        node_name: node_name.clone(),
        grpc_addr: grpc_addr.to_string(),
        ca: pki.ca.clone(),
        node_creds: std::sync::Arc::new(pki.creds.clone()),
        task_log_limit: config.tasks.log_limit_bytes,
    });

    let grpc_task = tokio::spawn(grpc::serve(
        grpc_listener,
        cortex_cluster::h2_server::server_config(&pki.creds).map_err(|e| anyhow::anyhow!("gRPC TLS: {e}"))?,
        api.clone(),
        raft.clone(),
        shutdown.token(),
    ));
    let http_task = tokio::spawn(http::serve(
        http_listener,
        api.clone(),
        config.mcp.allowed_hosts.clone(),
        shutdown.token(),
    ));

    let boot = bootstrap::run(
        mode == Mode::Joined,
        &api,
        &identity,
        bootstrap::Registration {
            node_name: node_name.clone(),
            grpc_addr,
            http_addr,
            inventory,
            ca_cert_pem: pki.ca.cert_pem.clone(),
        },
        &dirs,
        Duration::from_secs(30),
    );
    let boot = tokio::select! {
        r = boot => r?,
        _ = shutdown.wait() => {
            stop(raft, grpc_task, http_task).await;
            return Ok(());
        }
    };

    let info = Where {
        cluster_id: boot.cluster_id.clone(),
        cluster_created: boot.created,
        node_id: identity.node_id,
        node_name: node_name.clone(),
        data_dir: config.data_dir.display().to_string(),
        grpc_addr: grpc_addr.to_string(),
        http_addr: http_addr.to_string(),
        admin_token_file: dirs.admin_token.display().to_string(),
    };
    print_where(&info, out)?;

    let heartbeat = crate::agent::heartbeat::Heartbeat::new(
        identity.node_id,
        pki.creds.clone(),
        // Every coordinator the state knows: after a full restart the leader may be any of them.
        api.coordinator_addrs(),
        Duration::from_millis(config.cluster.heartbeat_interval_ms),
        config.data_dir.clone(),
    )
    // An address others cannot reach (0.0.0.0) is not reported: the same rule the leader applies.
    .serving_grpc_at(
        Some(grpc_addr.to_string())
            .filter(|a| cortex_model::node_addr::check_grpc_addr(a).is_ok())
            .unwrap_or_default(),
    );
    let contact = heartbeat.health();
    tokio::spawn(crate::selfbench::serve_requests(
        crate::worker::Link::Local(api.clone()),
        identity.node_id,
        config.data_dir.clone(),
        heartbeat.bench_requests(),
        shutdown.token(),
    ));
    tokio::spawn(crate::netbench::serve_requests(
        crate::worker::Link::Local(api.clone()),
        identity.node_id,
        crate::netbench::cluster_ip(Some(grpc_addr.ip()), &api.coordinator_addrs()),
        heartbeat.net_bench_requests(),
        shutdown.token(),
    ));
    tokio::spawn(heartbeat.run(shutdown.token()));
    // Machines booted without a join token find coordinators this way (kept alive until exit).
    let _mdns = crate::discovery::advertise(
        &node_name,
        grpc_addr,
        &pki.ca.fingerprint().unwrap_or_default(),
        &boot.cluster_id,
    );
    tokio::spawn(detector::run(
        api.clone(),
        config.cluster.clone(),
        shutdown.token(),
    ));
    tokio::spawn(membership::run(
        api.clone(),
        config.cluster.clone(),
        shutdown.token(),
    ));
    tokio::spawn(scheduler::run(api.clone(), shutdown.token()));
    if config.bench.on_start {
        // In the background, after registration (the record must exist to carry the figures).
        tokio::spawn(crate::selfbench::run(
            crate::worker::Link::Local(api.clone()),
            identity.node_id,
            config.data_dir.clone(),
            measured,
            shutdown.token(),
        ));
    }
    let worker_done = {
        let worker = crate::worker::Worker {
            node_id: identity.node_id,
            executors: std::sync::Arc::new(crate::worker::executors(&config, identity.node_id)?),
            link: crate::worker::Link::Local(api.clone()),
            fence_after: crate::worker::fence_after(&config.cluster),
            contact,
        };
        tokio::spawn(worker.run(shutdown.token()))
    };

    shutdown.wait().await;
    tracing::info!("shutdown requested; stopping tasks, listeners and Raft");
    let _ = tokio::time::timeout(Duration::from_secs(5), worker_done).await;
    stop(raft, grpc_task, http_task).await;
    tracing::info!("stopped cleanly");
    Ok(())
}

async fn stop(
    raft: cortex_cluster::CortexRaft,
    grpc: tokio::task::JoinHandle<anyhow::Result<()>>,
    http: tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    for (name, task) in [("gRPC", grpc), ("HTTP", http)] {
        match tokio::time::timeout(Duration::from_secs(5), task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!("{name} listener stopped with an error: {e:#}"),
            Ok(Err(e)) => tracing::warn!("{name} listener task failed: {e}"),
            Err(_) => tracing::warn!("{name} listener did not stop within 5 s"),
        }
    }
    if let Err(e) = raft.shutdown().await {
        tracing::warn!("raft shutdown: {e}");
    }
}

fn print_where(w: &Where, out: Output) -> anyhow::Result<()> {
    crate::notify::notify(&format!(
        "READY=1\nSTATUS=coordinator {} serving gRPC on {}, HTTP on {}",
        w.node_name, w.grpc_addr, w.http_addr
    ));
    if out == Output::Json {
        println!("{}", serde_json::to_string(w)?);
        return Ok(());
    }
    println!(
        "Cortex is up ({}).\n  cluster      {}\n  node         {} (id {})\n  data dir     {}\n  gRPC API     {}\n  HTTP         http://{}/  (/healthz, /readyz, /api/v1/cluster, /api/v1/nodes)\n  admin token  {}\nTry `cortex status` and `cortex node list` in another terminal. Ctrl-C stops.",
        if w.cluster_created { "new cluster" } else { "reopened" },
        w.cluster_id,
        w.node_name,
        w.node_id,
        w.data_dir,
        w.grpc_addr,
        w.http_addr,
        w.admin_token_file
    );
    Ok(())
}

pub fn init_tracing(filter: &str) {
    use std::io::IsTerminal;
    // openraft logs every election and shutdown step at info; keep it at warn unless asked.
    let directive = if filter.contains("openraft") {
        filter.to_string()
    } else {
        format!("{filter},openraft=warn")
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("CORTEX_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(directive));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
