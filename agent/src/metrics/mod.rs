//! Prometheus metrics (`GET /metrics`, OpenMetrics text via prometheus-client).
//!
//! Two kinds: gauges read from the applied state and Raft when scraped (`render`), and
//! histograms observed where the work happens (`placement`, `track_http`). One registry per
//! process; the histograms live in a static so the scheduler and the HTTP layer can reach them.

mod http;

use std::fmt::Write as _;
use std::sync::atomic::AtomicU64;
use std::sync::{LazyLock, Mutex};

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::api::NodeApi;
pub use http::track_http;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PassLabel {
    pass: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabel {
    node_id: String,
    node: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RequestLabel {
    pub method: String,
    pub route: String,
    pub status: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    /// Serialises scrapes: the state gauges are cleared and refilled under it.
    scrape: Mutex<()>,
    nodes: Family<StateLabel, Gauge>,
    tasks: Family<StateLabel, Gauge>,
    term: Gauge,
    commit: Gauge,
    applied: Gauge,
    last_log: Gauge,
    apply_lag: Gauge,
    is_leader: Gauge,
    heartbeat_age: Family<NodeLabel, Gauge<f64, AtomicU64>>,
    placement: HistogramFamily<PassLabel>,
    pub(crate) http: HistogramFamily<RequestLabel>,
    pub(crate) mcp: HistogramFamily<RequestLabel>,
}

fn latency_histogram() -> Histogram {
    // 100 µs … ~3.3 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::default();
        let m = Metrics {
            registry: Registry::default(),
            scrape: Mutex::new(()),
            nodes: Family::default(),
            tasks: Family::default(),
            term: Gauge::default(),
            commit: Gauge::default(),
            applied: Gauge::default(),
            last_log: Gauge::default(),
            apply_lag: Gauge::default(),
            is_leader: Gauge::default(),
            heartbeat_age: Family::default(),
            placement: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            http: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            mcp: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
        };
        registry.register(
            "cortex_nodes",
            "Nodes in the cluster state, by state",
            m.nodes.clone(),
        );
        registry.register(
            "cortex_tasks",
            "Tasks kept in the cluster state, by state",
            m.tasks.clone(),
        );
        registry.register(
            "cortex_raft_term",
            "This coordinator's current Raft term",
            m.term.clone(),
        );
        registry.register(
            "cortex_raft_commit_index",
            "Highest log index known committed",
            m.commit.clone(),
        );
        registry.register(
            "cortex_raft_applied_index",
            "Highest log index applied to the state machine",
            m.applied.clone(),
        );
        registry.register(
            "cortex_raft_last_log_index",
            "Highest log index in this node's log",
            m.last_log.clone(),
        );
        registry.register(
            "cortex_raft_apply_lag",
            "Committed entries not yet applied here (commit - applied)",
            m.apply_lag.clone(),
        );
        registry.register(
            "cortex_raft_is_leader",
            "1 when this coordinator is the Raft leader",
            m.is_leader.clone(),
        );
        registry.register(
            "cortex_node_heartbeat_age_seconds",
            "Seconds since this coordinator last heard a node's heartbeat (the leader hears them all)",
            m.heartbeat_age.clone(),
        );
        registry.register(
            "cortex_placement_duration_seconds",
            "Time spent computing placements: pass=submit (new tasks, before proposing) or scheduler (the leader's loop, passes that placed something)",
            m.placement.clone(),
        );
        registry.register(
            "cortex_http_request_duration_seconds",
            "HTTP request latency until the response head, by method, route and status",
            m.http.clone(),
        );
        registry.register(
            "cortex_mcp_request_duration_seconds",
            "MCP (streamable HTTP at /mcp) request latency until the response head",
            m.mcp.clone(),
        );
        Metrics { registry, ..m }
    }

    /// One placement computation: `pass` is "submit" or "scheduler".
    pub fn observe_placement(&self, pass: &'static str, seconds: f64) {
        self.placement.get_or_create(&PassLabel { pass }).observe(seconds);
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

pub fn global() -> &'static Metrics {
    &METRICS
}

fn gauge(v: impl TryInto<i64>) -> i64 {
    v.try_into().unwrap_or(i64::MAX)
}

/// Refreshes the state gauges and encodes everything.
pub async fn render(api: &NodeApi) -> Result<String, std::fmt::Error> {
    let m = global();
    let status = api.status().await;
    let tasks = api.tasks_by_state();
    let nodes = api.list_nodes();
    let now = std::time::Instant::now();
    let _guard = m.scrape.lock().unwrap_or_else(|p| p.into_inner());
    m.nodes.clear();
    for (state, n) in &status.nodes_by_state {
        m.nodes
            .get_or_create(&StateLabel { state: state.clone() })
            .set(i64::from(*n));
    }
    m.tasks.clear();
    for (state, n) in tasks {
        m.tasks
            .get_or_create(&StateLabel {
                state: state.to_string(),
            })
            .set(gauge(n));
    }
    m.term.set(gauge(status.term));
    let commit = status.commit_index.unwrap_or(0);
    let applied = status.applied_index.unwrap_or(0);
    m.commit.set(gauge(commit));
    m.applied.set(gauge(applied));
    m.last_log.set(gauge(status.last_log_index.unwrap_or(0)));
    m.apply_lag.set(gauge(commit.saturating_sub(applied)));
    m.is_leader.set(i64::from(status.raft_role == "leader"));
    m.heartbeat_age.clear();
    for n in &nodes {
        if let Some(seen) = api.liveness().last_seen(n.id) {
            let label = NodeLabel {
                node_id: n.id.to_string(),
                node: n.name.clone(),
            };
            m.heartbeat_age
                .get_or_create(&label)
                .set(now.saturating_duration_since(seen.at).as_secs_f64());
        }
    }
    let mut out = String::new();
    encode(&mut out, &m.registry)?;
    if !out.ends_with('\n') {
        writeln!(out)?;
    }
    Ok(out)
}
