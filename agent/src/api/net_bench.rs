//! Network throughput runs (`cortex bench net --peer`) through `NodeApi`: asking a node to be
//! the peer (scope operate; the request carries only the SHA-256 of the asking side's one-time
//! secret), and the peer's answers with its own identity — where it listens, then its report.
//!
//! The asking side is one end of the measured TCP path. For `cortex bench net` that is the
//! machine the CLI runs on; for the JSON API, MCP and gRPC with `coordinator_measures`
//! ([`NodeApi::measure_net_bench`]) it is the coordinator that received the request: it draws
//! the secret, asks, and connects from a background task once the peer listens.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use cortex_bench::net::{NetReport, Tallies, SECRET_LEN};
use cortex_model::command::{Command, Outcome};
use cortex_model::node::{check_net_bench_report, NetBenchRequest, NodeRecord, MAX_NET_BENCH_SECONDS};
use cortex_model::token::Scope;
use cortex_model::{NodeId, UnixMillis};
use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{now_ms, ApiError, Caller, NodeApi};

/// What the peer of a network run publishes: first where it listens, then the report.
#[derive(Debug, Clone)]
pub enum NetPublished {
    Listening {
        answers: UnixMillis,
        addr: String,
    },
    Report {
        answers: UnixMillis,
        report: Box<NetReport>,
    },
}

/// What the asking side sends.
#[derive(Debug, Clone)]
pub struct NetAsk {
    /// The peer: a node id or a unique name.
    pub key: String,
    pub seconds: u32,
    pub secret_sha256: String,
    /// The asking machine, as it names itself ("" when it does not say).
    pub from: String,
}

/// A run this coordinator measures itself ([`NodeApi::measure_net_bench`]).
#[derive(Debug, Clone, Serialize)]
pub struct NetRun {
    /// The peer's record; its `net_bench_request` is this run until the peer records the
    /// report (`net_bench`).
    pub peer: NodeRecord,
    /// The end that connects and measures: this coordinator.
    pub measured_by: NetEnd,
    pub seconds: u32,
    pub requested_at_ms: UnixMillis,
}

/// One end of a network run.
#[derive(Debug, Clone, Serialize)]
pub struct NetEnd {
    pub node_id: NodeId,
    pub name: String,
}

/// How long the peer has to start listening once asked (it hears of the request in its next
/// heartbeat answer, about a second later), as `cortex bench net` allows.
const LISTEN_WITHIN: Duration = Duration::from_secs(30);
/// How long the measuring coordinator waits for its own self-benchmark (or a run it serves as
/// a peer) to finish before it measures anyway; well inside the peer's accept window.
const LOCK_WITHIN: Duration = Duration::from_secs(8);

impl NodeApi {
    /// A network run between this coordinator and node `key` (scope operate), for surfaces
    /// whose client cannot be an end of the data path (the JSON API, MCP): this coordinator
    /// draws the one-time secret, asks the peer as [`Self::request_net_bench`] does (named as
    /// `from`), and returns at once; a background task connects when the peer listens and
    /// runs both directions. The peer records the report on its node record (`net_bench`), as
    /// for the CLI. Errors name `seconds` (1 to 30) and `node` (unknown, or this coordinator).
    pub async fn measure_net_bench(
        &self,
        caller: &Caller,
        key: &str,
        seconds: u32,
    ) -> Result<NetRun, ApiError> {
        caller.require(Scope::Operate)?;
        let window = cortex_bench::net::window(seconds).map_err(|e| ApiError::invalid("seconds", e))?;
        let peer = self.get_node(key)?;
        if peer.id == self.inner.node_id {
            return Err(ApiError::invalid(
                "node",
                format!(
                    "node {} is the coordinator that would measure: pick another node, or run `cortex bench net --peer {}` from another machine",
                    peer.name, peer.name
                ),
            ));
        }
        let mut secret = [0u8; SECRET_LEN];
        rand::rng().fill_bytes(&mut secret);
        let asked = self
            .request_net_bench(
                caller,
                NetAsk {
                    key: peer.id.to_string(),
                    seconds,
                    secret_sha256: hex::encode(Sha256::digest(secret)),
                    from: self.inner.node_name.clone(),
                },
            )
            .await?;
        let Some(requested_at_ms) = asked.net_bench_request.as_ref().map(|r| r.requested_at_ms) else {
            return Err(ApiError::Internal(format!(
                "node {}: the network benchmark request was not recorded",
                asked.name
            )));
        };
        let api = self.clone();
        let (peer_id, name) = (asked.id, asked.name.clone());
        tokio::spawn(async move {
            match api
                .connect_when_listening(peer_id, requested_at_ms, secret, window)
                .await
            {
                Ok(t) => tracing::info!(
                    peer = %name,
                    sent = t.send.bytes,
                    received = t.receive.bytes,
                    "network benchmark measured from this coordinator; the peer records the report"
                ),
                Err(e) => tracing::warn!(peer = %name, "network benchmark from this coordinator: {e}"),
            }
        });
        Ok(NetRun {
            peer: asked,
            measured_by: NetEnd {
                node_id: self.inner.node_id,
                name: self.inner.node_name.clone(),
            },
            seconds,
            requested_at_ms,
        })
    }

    /// The measuring side of [`Self::measure_net_bench`]: waits (on applied entries) for the
    /// peer to say where it listens for request `asked`, then connects and runs both ways.
    async fn connect_when_listening(
        &self,
        peer: NodeId,
        asked: UnixMillis,
        secret: [u8; SECRET_LEN],
        window: cortex_bench::net::Window,
    ) -> Result<Tallies, String> {
        // Not while this machine's self-benchmark loads it, if that ends soon enough.
        let _lock = tokio::time::timeout(LOCK_WITHIN, crate::selfbench::exclusive())
            .await
            .ok();
        let mut changes = self.subscribe();
        let until = Instant::now() + LISTEN_WITHIN;
        let addr = loop {
            let request = {
                let state = self.inner.sm.state();
                state.nodes.get(&peer).and_then(|n| n.net_bench_request.clone())
            };
            match request.filter(|r| r.requested_at_ms == asked) {
                Some(r) => {
                    if let Some(a) = r.listening {
                        break a;
                    }
                }
                None => return Err("the request was answered or replaced before the peer listened".into()),
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "the peer did not start listening within {} s (is its agent running and heartbeating?)",
                    LISTEN_WITHIN.as_secs()
                ));
            }
            if let Ok(Err(_)) =
                tokio::time::timeout(left.min(Duration::from_secs(1)), changes.changed()).await
            {
                return Err("this coordinator is shutting down".into());
            }
        };
        let sock: SocketAddr = addr
            .parse()
            .map_err(|_| format!("the peer listens on {addr:?}, which is not ip:port"))?;
        tokio::task::spawn_blocking(move || cortex_bench::net::connect(sock, &secret, &window))
            .await
            .map_err(|e| format!("the benchmark thread failed: {e}"))?
    }

    /// Asks node `ask.key` to be the peer of a network throughput run (scope operate). Fields
    /// are checked here (errors name them) and again in apply, which also refuses a node that
    /// is not ready, suspect or draining, and a second run while one is pending.
    pub async fn request_net_bench(&self, caller: &Caller, ask: NetAsk) -> Result<NodeRecord, ApiError> {
        caller.require(Scope::Operate)?;
        if !(1..=MAX_NET_BENCH_SECONDS).contains(&ask.seconds) {
            return Err(ApiError::invalid(
                "seconds",
                format!("must be 1 to {MAX_NET_BENCH_SECONDS}, got {}", ask.seconds),
            ));
        }
        let request = NetBenchRequest {
            requested_at_ms: now_ms(),
            seconds: ask.seconds,
            secret_sha256: ask.secret_sha256,
            by: Some(caller.token_id.clone()),
            from: (!ask.from.is_empty()).then_some(ask.from),
            listening: None,
        };
        if let Err(e) = request.check() {
            let field = if e.starts_with("secret") {
                "secret_sha256"
            } else {
                "from"
            };
            return Err(ApiError::invalid(field, e));
        }
        let node = self.get_node(&ask.key)?;
        match self
            .write(Command::RequestNetBench {
                node_id: node.id,
                request,
            })
            .await?
        {
            Outcome::Node { node } => Ok(*node),
            _ => self.get_node(&ask.key),
        }
    }

    /// Records what the peer of a network run says (the caller is authenticated as that node).
    pub async fn publish_net_bench(&self, node_id: NodeId, p: NetPublished) -> Result<(), ApiError> {
        let cmd = match p {
            NetPublished::Listening { answers, addr } => {
                if addr.parse::<std::net::SocketAddr>().is_err() {
                    return Err(ApiError::invalid("listening", format!("{addr:?} is not ip:port")));
                }
                Command::NetBenchListening {
                    node_id,
                    answers,
                    addr,
                    at_ms: now_ms(),
                }
            }
            NetPublished::Report { answers, report } => {
                if report.format != cortex_bench::net::FORMAT {
                    return Err(ApiError::invalid(
                        "report_json",
                        format!(
                            "format must be {}, got {:?}",
                            cortex_bench::net::FORMAT,
                            report.format
                        ),
                    ));
                }
                let v = serde_json::to_value(&*report)
                    .map_err(|e| ApiError::invalid("report_json", e.to_string()))?;
                check_net_bench_report(&v).map_err(|e| ApiError::invalid("report_json", e))?;
                Command::SetNetBench {
                    node_id,
                    answers,
                    report: v,
                    summary: report.summary_line(),
                    at_ms: now_ms(),
                }
            }
        };
        self.write(cmd).await.map(|_| ())
    }

    /// [`Self::publish_net_bench`] from the wire: `listening` or `report_json` (named in errors).
    pub async fn publish_net_bench_wire(
        &self,
        node_id: NodeId,
        answers: UnixMillis,
        listening: String,
        report_json: &str,
    ) -> Result<(), ApiError> {
        let p = match (listening.is_empty(), report_json.is_empty()) {
            (false, true) => NetPublished::Listening {
                answers,
                addr: listening,
            },
            (true, false) => {
                if report_json.len() > cortex_model::node::MAX_NET_BENCH_REPORT_BYTES {
                    return Err(ApiError::invalid("report_json", "too large"));
                }
                let report: NetReport = serde_json::from_str(report_json).map_err(|e| {
                    ApiError::invalid("report_json", format!("is not a cortex-bench-net report: {e}"))
                })?;
                NetPublished::Report {
                    answers,
                    report: Box::new(report),
                }
            }
            _ => {
                return Err(ApiError::invalid(
                    "listening",
                    "exactly one of listening and report_json must be set",
                ))
            }
        };
        self.publish_net_bench(node_id, p).await
    }

    /// The network run `node_id` has not answered yet, for its heartbeat answer.
    pub fn pending_net_bench_request(&self, node_id: NodeId) -> Option<NetBenchRequest> {
        self.inner
            .sm
            .state()
            .nodes
            .get(&node_id)
            .and_then(|n| n.net_bench_request.clone())
    }
}
