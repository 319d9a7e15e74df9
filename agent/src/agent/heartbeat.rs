//! Heartbeats: every interval, this node's live resources go to the Raft leader over mTLS.
//! The leader's failure detector turns silence into SUSPECT and DOWN. Coordinators heartbeat
//! too (through the same code), so every node is watched the same way.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cortex_cluster::h2_channel::{H2Channel, Target};
use cortex_cluster::pki::NodeCredentials;
use cortex_model::node::{BenchRequest, NetBenchRequest};
use cortex_proto::v1::cortex_client::CortexClient;
use cortex_proto::v1::HeartbeatRequest;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Whether heartbeats are being accepted, for `/readyz` and for the worker's self-fencing.
#[derive(Clone)]
pub struct Health(Arc<Mutex<HealthInner>>);

struct HealthInner {
    ok: bool,
    detail: String,
    /// When a coordinator last accepted a heartbeat (or when this started).
    last_ok: std::time::Instant,
}

impl Default for Health {
    fn default() -> Self {
        Health(Arc::new(Mutex::new(HealthInner {
            ok: false,
            detail: "no heartbeat sent yet".into(),
            last_ok: std::time::Instant::now(),
        })))
    }
}

impl Health {
    fn set(&self, ok: bool, detail: String) {
        if let Ok(mut h) = self.0.lock() {
            h.ok = ok;
            h.detail = detail;
            if ok {
                h.last_ok = std::time::Instant::now();
            }
        }
    }

    pub fn snapshot(&self) -> (bool, String) {
        self.0
            .lock()
            .map(|h| (h.ok, h.detail.clone()))
            .unwrap_or((false, "unknown".into()))
    }

    /// How long since a coordinator last accepted a heartbeat.
    pub fn since_contact(&self) -> Duration {
        self.0
            .lock()
            .map(|h| h.last_ok.elapsed())
            .unwrap_or(Duration::MAX)
    }
}

pub struct Heartbeat {
    node_id: u64,
    /// The address this node serves gRPC on (coordinators; "" for a worker), sent with every
    /// heartbeat so a node that came back on another address is found there.
    grpc_addr: String,
    creds: Arc<NodeCredentials>,
    coordinators: Vec<String>,
    leader: Option<String>,
    interval: Duration,
    data_dir: PathBuf,
    health: Health,
    /// One HTTP/2 connection per coordinator (`h2_channel`: a heartbeat leaves in one write),
    /// dropped when a heartbeat through it fails.
    clients: HashMap<String, CortexClient<H2Channel>>,
    /// Where a pending benchmark request from the heartbeat answer goes.
    bench_requests: watch::Sender<Option<BenchRequest>>,
    /// Where a pending network run (this node as the peer) from the heartbeat answer goes.
    net_bench_requests: watch::Sender<Option<NetBenchRequest>>,
}

impl Heartbeat {
    pub fn new(
        node_id: u64,
        creds: NodeCredentials,
        coordinators: Vec<String>,
        interval: Duration,
        data_dir: PathBuf,
    ) -> Heartbeat {
        Heartbeat {
            node_id,
            grpc_addr: String::new(),
            creds: Arc::new(creds),
            coordinators,
            leader: None,
            interval,
            data_dir,
            health: Health::default(),
            clients: HashMap::new(),
            bench_requests: watch::channel(None).0,
            net_bench_requests: watch::channel(None).0,
        }
    }

    /// Reports `addr` as where this node serves gRPC (a coordinator's Raft and API address).
    pub fn serving_grpc_at(mut self, addr: String) -> Heartbeat {
        self.grpc_addr = addr;
        self
    }

    /// The benchmark re-run this node was asked for (from the leader's heartbeat answer).
    pub fn bench_requests(&self) -> watch::Receiver<Option<BenchRequest>> {
        self.bench_requests.subscribe()
    }

    /// The network run this node was asked to be the peer of (from the heartbeat answer).
    pub fn net_bench_requests(&self) -> watch::Receiver<Option<NetBenchRequest>> {
        self.net_bench_requests.subscribe()
    }

    pub fn health(&self) -> Health {
        self.health.clone()
    }

    async fn client(&mut self, addr: &str) -> Result<CortexClient<H2Channel>, tonic::Status> {
        if let Some(c) = self.clients.get(addr) {
            return Ok(c.clone());
        }
        let channel = H2Channel::connect(&Target {
            addr,
            ca_pem: &self.creds.ca_pem,
            identity: Some(&self.creds),
            connect_timeout: Duration::from_secs(2),
            call_timeout: None,
        })
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let c = CortexClient::new(channel);
        self.clients.insert(addr.to_string(), c.clone());
        Ok(c)
    }

    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut sampler = cortex_host::resources::Sampler::default();
        let mut next = 0usize;
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.cancelled() => return,
            }
            let target = match &self.leader {
                Some(l) => l.clone(),
                None if !self.coordinators.is_empty() => {
                    self.coordinators[next % self.coordinators.len()].clone()
                }
                None => {
                    self.health.set(false, "no coordinator address known".into());
                    continue;
                }
            };
            let resources = sampler.sample(&self.data_dir);
            let mut req = tonic::Request::new(HeartbeatRequest {
                node_id: self.node_id,
                resources_json: serde_json::to_string(&resources).unwrap_or_default(),
                grpc_addr: self.grpc_addr.clone(),
            });
            req.set_timeout(self.interval.max(Duration::from_millis(500)));
            let timeout = self.interval.max(Duration::from_millis(500)) * 2;
            let call = async {
                let mut client = self.client(&target).await?;
                client.heartbeat(req).await
            };
            let answer = match tokio::time::timeout(timeout, call).await {
                Ok(r) => r,
                // A frozen coordinator accepts the connection and never answers.
                Err(_) => Err(tonic::Status::deadline_exceeded("no answer")),
            };
            match answer {
                Ok(resp) => {
                    let resp = resp.into_inner();
                    if !resp.coordinators.is_empty() {
                        self.coordinators = resp.coordinators;
                    }
                    self.leader = (!resp.leader_addr.is_empty()).then_some(resp.leader_addr);
                    let request = serde_json::from_str::<BenchRequest>(&resp.bench_request_json).ok();
                    self.bench_requests.send_if_modified(|r| {
                        let changed = *r != request;
                        *r = request;
                        changed
                    });
                    let net = serde_json::from_str::<NetBenchRequest>(&resp.net_bench_request_json).ok();
                    self.net_bench_requests.send_if_modified(|r| {
                        let changed = *r != net;
                        *r = net;
                        changed
                    });
                    self.health.set(true, format!("heartbeats accepted by {target}"));
                }
                Err(status) => {
                    tracing::debug!(coordinator = %target, "heartbeat failed: {}", status.message());
                    self.health.set(
                        false,
                        format!("heartbeat to {target} failed: {}", status.message()),
                    );
                    self.clients.remove(&target);
                    self.leader = None;
                    next += 1;
                }
            }
        }
    }
}
