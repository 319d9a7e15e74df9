//! `cortex loadgen heartbeats`: N simulated nodes, each a real client of the join and heartbeat
//! APIs (its own key, CSR, certificate and mTLS connection), heartbeating every interval. Used to
//! measure a leader's CPU and memory with many nodes (scripts/bench-cluster.py). Joins come from
//! many loopback source addresses (127.0.0.2…) so the per-source join rate limit holds.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use cortex_cluster::h2_channel::{H2Channel, Target};
use cortex_cluster::pki::{client_tls, csr_for_key, new_key_and_csr, NodeCredentials};
use cortex_model::inventory::Inventory;
use cortex_proto::v1::cortex_client::CortexClient;
use cortex_proto::v1::{HeartbeatRequest, JoinRequest};
use tonic::transport::Endpoint;

use crate::api::JoinToken;

/// Joins per source address (stays under the coordinator's per-source limit).
const JOINS_PER_SOURCE: usize = 10;

pub async fn run(
    token: &str,
    ca_file: &std::path::Path,
    nodes: usize,
    seconds: f64,
    interval_ms: u64,
) -> anyhow::Result<()> {
    let token = JoinToken::parse(token).map_err(anyhow::Error::msg)?;
    let ca_pem = std::fs::read_to_string(ca_file)?;
    let server = token
        .addrs
        .first()
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("the token has no address"))?;
    let inventory = serde_json::to_string(&Inventory {
        hostname: "simulated".into(),
        ..Default::default()
    })?;
    let started = Instant::now();
    let mut creds = Vec::with_capacity(nodes);
    for i in 0..nodes {
        let source = IpAddr::V4(Ipv4Addr::new(
            127,
            0,
            (2 + i / JOINS_PER_SOURCE / 250) as u8,
            (2 + (i / JOINS_PER_SOURCE) % 250) as u8,
        ));
        let node_id: u64 = rand::random::<u64>() % (1 << 53) + 1;
        let (key_pem, _) = new_key_and_csr(node_id)?;
        let csr_pem = csr_for_key(node_id, &key_pem)?;
        let channel = Endpoint::from_shared(format!("https://{server}"))?
            .tls_config(client_tls(&ca_pem, None))?
            .local_address(Some(source))
            .connect()
            .await?;
        let resp = CortexClient::new(channel)
            .join(JoinRequest {
                token_secret: token.secret.clone(),
                node_id,
                name: format!("sim-{i}"),
                role: "worker".into(),
                grpc_addr: String::new(),
                http_addr: "127.0.0.1:9".into(),
                inventory_json: inventory.clone(),
                verification_code: cortex_cluster::pki::csr_verification_code(&csr_pem)?,
                csr_pem,
                bench_json: String::new(),
            })
            .await?
            .into_inner();
        anyhow::ensure!(
            resp.status == "approved",
            "simulated node {i} was not auto-approved: {}",
            resp.message
        );
        creds.push((
            node_id,
            NodeCredentials {
                key_pem,
                cert_pem: resp.cert_pem,
                ca_pem: ca_pem.clone(),
            },
        ));
    }
    eprintln!(
        "{nodes} simulated nodes joined in {:.1} s; heartbeating every {interval_ms} ms",
        started.elapsed().as_secs_f64()
    );
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    for (node_id, c) in creds {
        let server = server.clone();
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(interval_ms));
            // Spread the nodes over the interval like real ones.
            tokio::time::sleep(Duration::from_millis(rand::random::<u64>() % interval_ms.max(1))).await;
            let (mut ok, mut failed) = (0u64, 0u64);
            // Like a real node's heartbeat (`agent/heartbeat.rs`): one HTTP/2 connection of its
            // own, made at the first beat and again after a failed one.
            let mut client = None;
            while Instant::now() < deadline {
                tick.tick().await;
                if client.is_none() {
                    let target = Target {
                        addr: &server,
                        ca_pem: &c.ca_pem,
                        identity: Some(&c),
                        connect_timeout: Duration::from_secs(5),
                        call_timeout: Some(Duration::from_secs(5)),
                    };
                    match H2Channel::connect(&target).await {
                        Ok(channel) => client = Some(CortexClient::new(channel)),
                        Err(_) => {
                            failed += 1;
                            continue;
                        }
                    }
                }
                let Some(cortex) = client.as_mut() else {
                    continue;
                };
                let req = HeartbeatRequest {
                    node_id,
                    resources_json: String::new(),
                    grpc_addr: String::new(),
                };
                match cortex.heartbeat(req).await {
                    Ok(_) => ok += 1,
                    Err(_) => {
                        failed += 1;
                        client = None;
                    }
                }
            }
            (ok, failed)
        }));
    }
    let (mut ok, mut failed) = (0, 0);
    for t in tasks {
        let (o, f) = t.await?;
        ok += o;
        failed += f;
    }
    println!(
        "{}",
        serde_json::json!({ "nodes": nodes, "heartbeats_ok": ok, "heartbeats_failed": failed })
    );
    Ok(())
}
