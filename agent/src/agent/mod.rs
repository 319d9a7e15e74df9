//! `cortex agent`: a machine joining a cluster. It asks to join with a join token (pinning the
//! cluster CA from the token before it sends anything), waits for a person to approve it, then
//! heartbeats with its live resources over mTLS. A coordinator-role agent then also runs the
//! coordinator daemon (Raft, API) — see `daemon::run_joined`.

pub mod heartbeat;
mod join;

use std::time::Duration;

use anyhow::Context;
use cortex_cluster::open_store;
use cortex_cluster::pki::{load_node_credentials, NodeFiles};
use serde::Serialize;

use crate::cli::Output;
use crate::config::{Config, Role};

#[derive(Serialize)]
struct Joined {
    node_id: u64,
    node_name: String,
    role: String,
    status: String,
    data_dir: String,
    http_addr: String,
}

pub async fn run(config: Config, out: Output) -> anyhow::Result<()> {
    crate::daemon::init_tracing(&config.log_level);
    if config.role == Role::Coordinator
        && (config.grpc_addr.port() == 0 || config.grpc_addr.ip().is_unspecified())
    {
        anyhow::bail!(
            "grpc_addr {}: a coordinator tells the cluster where to reach it, so it needs a concrete IP and port",
            config.grpc_addr
        );
    }
    let dirs = crate::daemon::prepare_data_dir(&config.data_dir)?;
    let (log_store, sm) = open_store(&dirs.store).map_err(anyhow::Error::new)?;
    let identity = crate::daemon::load_identity(&log_store)?;
    let files = NodeFiles::in_dir(&config.data_dir);
    let inventory = cortex_host::collect().await;
    let node_name = config
        .node_name
        .clone()
        .unwrap_or_else(|| crate::daemon::name_from_hostname(&inventory.hostname));
    let shutdown = crate::daemon::Shutdown::install()?;
    // Up as far as systemd is concerned: waiting for a person to approve can take days.
    crate::notify::notify(&format!("READY=1\nSTATUS=node {node_name} starting"));

    // This start's quick benchmark, when it was started while joining (the join requests carry
    // its summary, so the approver sees the figures; it is not measured twice).
    let (creds, measured): (_, crate::selfbench::Measuring) = match load_node_credentials(&files)? {
        Some(c) => (c, None),
        None => {
            // The node asks at once (PENDING within a round trip) and measures meanwhile; the
            // first poll after the measurement carries the figures to the pending record.
            let (figures, bench) = tokio::sync::watch::channel(None);
            let measuring = config.bench.on_start.then(|| {
                tracing::info!("measuring this machine while asking to join (quick benchmark, at most 5 s)");
                let dir = config.data_dir.clone();
                tokio::spawn(async move {
                    let report = crate::selfbench::measure(dir, true).await;
                    if let Some(r) = &report {
                        let _ = figures.send(Some(crate::selfbench::summary(r)));
                    }
                    report
                })
            });
            let request = join::Request {
                config: &config,
                node_id: identity.node_id,
                node_name: node_name.clone(),
                inventory,
                bench,
                files: &files,
            };
            crate::notify::notify("STATUS=asking to join; waiting for a person to approve this node");
            let creds = tokio::select! {
                r = join::until_approved(request) => r?,
                _ = shutdown.wait() => return Ok(()),
            };
            // Approved before the measurement ended: the node starts (and heartbeats) at once;
            // the report is published with its new certificate when the run ends.
            (creds, measuring)
        }
    };
    crate::notify::notify(&format!(
        "STATUS=node {node_name}: approved, a {} of the cluster",
        config.role.as_str()
    ));

    if config.role == Role::Coordinator {
        drop((log_store, sm));
        return crate::daemon::run_joined(config, out, shutdown, measured).await;
    }

    let http = tokio::net::TcpListener::bind(config.http_addr)
        .await
        .with_context(|| format!("cannot listen for HTTP on {}", config.http_addr))?;
    let http_addr = http.local_addr()?;
    let coordinators = coordinator_addrs(&config)?;
    let beat = heartbeat::Heartbeat::new(
        identity.node_id,
        creds.clone(),
        coordinators.clone(),
        Duration::from_millis(config.cluster.heartbeat_interval_ms),
        config.data_dir.clone(),
    );
    let health = beat.health();
    let bench_requests = beat.bench_requests();
    let link = crate::worker::Link::Remote(std::sync::Arc::new(crate::worker::Remote {
        tls: cortex_cluster::pki::client_tls(&creds.ca_pem, Some(&creds)),
        coordinators: coordinators.clone(),
    }));
    let worker = crate::worker::Worker {
        node_id: identity.node_id,
        executors: std::sync::Arc::new(crate::worker::executors(&config, identity.node_id)?),
        link: link.clone(),
        fence_after: crate::worker::fence_after(&config.cluster),
        contact: health.clone(),
    };
    let worker_done = tokio::spawn(worker.run(shutdown.token()));
    tokio::spawn(crate::selfbench::serve_requests(
        link.clone(),
        identity.node_id,
        config.data_dir.clone(),
        bench_requests,
        shutdown.token(),
    ));
    tokio::spawn(crate::netbench::serve_requests(
        link.clone(),
        identity.node_id,
        crate::netbench::cluster_ip(None, &coordinators),
        beat.net_bench_requests(),
        shutdown.token(),
    ));
    if config.bench.on_start {
        tokio::spawn(crate::selfbench::run(
            link,
            identity.node_id,
            config.data_dir.clone(),
            measured,
            shutdown.token(),
        ));
    }
    tokio::spawn(beat.run(shutdown.token()));
    tokio::spawn(health::serve(http, health, shutdown.token()));
    let info = Joined {
        node_id: identity.node_id,
        node_name,
        role: config.role.as_str().into(),
        status: "ready".into(),
        data_dir: config.data_dir.display().to_string(),
        http_addr: http_addr.to_string(),
    };
    if out == Output::Json {
        println!("{}", serde_json::to_string(&info)?);
    } else {
        println!(
            "Cortex agent {} (id {}) is a {} of the cluster; heartbeating. HTTP health on http://{}/healthz",
            info.node_name, info.node_id, info.role, info.http_addr
        );
    }
    shutdown.wait().await;
    tracing::info!("agent stopping: killing its attempts");
    let _ = tokio::time::timeout(Duration::from_secs(5), worker_done).await;
    if config.leave_on_shutdown {
        match leave(&config, identity.node_id).await {
            Ok(()) => tracing::info!("left the cluster (leave_on_shutdown)"),
            Err(e) => tracing::warn!("could not leave the cluster cleanly: {e:#}"),
        }
    }
    Ok(())
}

/// Tells a coordinator this node is leaving (LEFT, not DOWN: nobody should page for it).
async fn leave(config: &Config, node_id: u64) -> anyhow::Result<()> {
    let files = NodeFiles::in_dir(&config.data_dir);
    let creds =
        load_node_credentials(&files)?.ok_or_else(|| anyhow::anyhow!("this node has no certificate"))?;
    let tls = cortex_cluster::pki::client_tls(&creds.ca_pem, Some(&creds));
    let mut last = None;
    for addr in coordinator_addrs(config)? {
        let channel = cortex_cluster::pki::lazy_channel(&addr, &tls, Duration::from_secs(2))?;
        let mut req = tonic::Request::new(cortex_proto::v1::LeaveRequest { node_id });
        req.set_timeout(Duration::from_secs(5));
        match cortex_proto::v1::cortex_client::CortexClient::new(channel)
            .leave(req)
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) => last = Some(anyhow::anyhow!("{addr}: {}", e.message())),
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("no coordinator address")))
}

/// Where to send heartbeats first: `join`, else the addresses in the join token, else the
/// coordinators the cluster named on approval. (After the first answer the coordinators tell
/// the agent where the leader is.)
fn coordinator_addrs(config: &Config) -> anyhow::Result<Vec<String>> {
    if !config.join.is_empty() {
        return Ok(config.join.clone());
    }
    if let Some(t) = config
        .token
        .as_deref()
        .and_then(|t| crate::api::JoinToken::parse(t).ok())
    {
        return Ok(t.addrs);
    }
    let saved = load_coordinators(&config.data_dir);
    if !saved.is_empty() {
        return Ok(saved);
    }
    anyhow::bail!(
        "no coordinator address: set `join` (--join, cortex.join=) or keep the join token in the config"
    )
}

const COORDINATORS_FILE: &str = "coordinators";

/// Remembers the coordinator addresses given on approval (one per line), for restarts of a
/// node that joined without a token.
pub(crate) fn save_coordinators(data_dir: &std::path::Path, addrs: &[String]) {
    if let Err(e) = std::fs::write(data_dir.join(COORDINATORS_FILE), addrs.join("\n") + "\n") {
        tracing::warn!("could not save the coordinator list: {e}");
    }
}

fn load_coordinators(data_dir: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(data_dir.join(COORDINATORS_FILE))
        .map(|s| {
            s.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

mod health {
    //! The agent's HTTP listener: `/healthz` and `/readyz` (ready = approved and heartbeats
    //! are being accepted).

    use axum::extract::State;
    use axum::http::StatusCode;
    use axum::routing::get;
    use axum::{Json, Router};
    use serde_json::json;
    use tokio::net::TcpListener;
    use tokio_util::sync::CancellationToken;

    use super::heartbeat::Health;

    pub async fn serve(
        listener: TcpListener,
        health: Health,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let app = Router::new()
            .route("/healthz", get(|| async { Json(json!({ "status": "ok" })) }))
            .route(
                "/readyz",
                get(|State(h): State<Health>| async move {
                    let (ok, detail) = h.snapshot();
                    let code = if ok {
                        StatusCode::OK
                    } else {
                        StatusCode::SERVICE_UNAVAILABLE
                    };
                    (code, Json(json!({ "ready": ok, "detail": detail })))
                }),
            )
            .with_state(health);
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await?;
        Ok(())
    }
}
