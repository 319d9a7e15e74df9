//! `/api/v1/nodes…`, `/api/v1/images`, `/api/v1/cluster`, `/api/v1/events`,
//! `/api/v1/whoami`: adapters over `NodeApi`'s node and cluster operations.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use cortex_model::node::{NodeRecord, NodeRole, NodeState};
use cortex_model::token::Scope;
use serde::Deserialize;
use serde_json::{json, Value};

use super::support::{accepted, body, caller, ok, query_error, HttpResult};
use crate::api::NodeApi;

pub async fn cluster(State(api): State<NodeApi>) -> HttpResult {
    ok(&api.status().await)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct NodeQuery {
    state: Option<NodeState>,
    role: Option<NodeRole>,
    /// `key=value`: only nodes with this label.
    label: Option<String>,
}

pub async fn list(State(api): State<NodeApi>, q: Result<Query<NodeQuery>, QueryRejection>) -> HttpResult {
    let Query(q) = q.map_err(query_error)?;
    let label = match q.label.as_deref().map(|l| l.split_once('=')) {
        None => None,
        Some(Some((k, v))) => Some((k.to_string(), v.to_string())),
        Some(None) => {
            return Err(crate::api::ApiError::invalid("label", "expected key=value").into());
        }
    };
    let nodes: Vec<Value> = api
        .list_nodes()
        .iter()
        .filter(|n| q.state.is_none_or(|s| n.state == s))
        .filter(|n| q.role.is_none_or(|r| n.role == r))
        .filter(|n| label.as_ref().is_none_or(|(k, v)| n.labels.get(k) == Some(v)))
        .map(|n| with_live(&api, n))
        .collect();
    ok(&json!({ "nodes": nodes }))
}

/// The node record plus what this coordinator last heard from it (not replicated).
fn with_live(api: &NodeApi, n: &NodeRecord) -> Value {
    let mut v = serde_json::to_value(n).unwrap_or_default();
    if let (Some(obj), Some(seen)) = (v.as_object_mut(), api.liveness().last_seen(n.id)) {
        obj.insert(
            "live".into(),
            json!({
                "heartbeat_age_ms": seen.at.elapsed().as_millis() as u64,
                "resources": seen.resources,
            }),
        );
    }
    v
}

pub async fn get(State(api): State<NodeApi>, Path(key): Path<String>) -> HttpResult {
    ok(&with_live(&api, &api.get_node(&key)?))
}

pub async fn approve(State(api): State<NodeApi>, Path(key): Path<String>, h: HeaderMap) -> HttpResult {
    let c = caller(&api, &h, Scope::Operate)?;
    ok(&api.approve_node(&c, &key).await?)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RejectInput {
    #[serde(default)]
    reason: String,
}

pub async fn reject(
    State(api): State<NodeApi>,
    Path(key): Path<String>,
    h: HeaderMap,
    b: Bytes,
) -> HttpResult {
    let c = caller(&api, &h, Scope::Operate)?;
    let input: RejectInput = body(&b)?;
    ok(&api.reject_node(&c, &key, &input.reason).await?)
}

pub async fn drain(State(api): State<NodeApi>, Path(key): Path<String>, h: HeaderMap) -> HttpResult {
    let c = caller(&api, &h, Scope::Operate)?;
    ok(&api.drain_node(&c, &key).await?)
}

pub async fn undrain(State(api): State<NodeApi>, Path(key): Path<String>, h: HeaderMap) -> HttpResult {
    let c = caller(&api, &h, Scope::Operate)?;
    ok(&api.undrain_node(&c, &key).await?)
}

pub async fn remove(State(api): State<NodeApi>, Path(key): Path<String>, h: HeaderMap) -> HttpResult {
    let c = caller(&api, &h, Scope::Admin)?;
    ok(&api.remove_node(&c, &key).await?)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct BenchInput {
    #[serde(default)]
    quick: bool,
}

/// Asks a node to run its self-benchmark again (recorded in Raft; the node records the result).
pub async fn bench(
    State(api): State<NodeApi>,
    Path(key): Path<String>,
    h: HeaderMap,
    b: Bytes,
) -> HttpResult {
    let c = caller(&api, &h, Scope::Operate)?;
    let input: BenchInput = body(&b)?;
    ok(&api.request_bench(&c, &key, input.quick).await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NetBenchInput {
    #[serde(default = "default_net_seconds")]
    seconds: u32,
}

fn default_net_seconds() -> u32 {
    cortex_bench::net::DEFAULT_SECONDS
}

/// A network throughput run between this coordinator (the measuring end) and the node: 202
/// at once with the request; the peer records the report on its node record (`net_bench`).
pub async fn net_bench(
    State(api): State<NodeApi>,
    Path(key): Path<String>,
    h: HeaderMap,
    b: Bytes,
) -> HttpResult {
    let c = caller(&api, &h, Scope::Operate)?;
    let input: NetBenchInput = body(&b)?;
    accepted(&api.measure_net_bench(&c, &key, input.seconds).await?)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LabelsInput {
    #[serde(default)]
    set: BTreeMap<String, String>,
    #[serde(default)]
    remove: Vec<String>,
}

pub async fn labels(
    State(api): State<NodeApi>,
    Path(key): Path<String>,
    h: HeaderMap,
    b: Bytes,
) -> HttpResult {
    let c = caller(&api, &h, Scope::Operate)?;
    let input: LabelsInput = body(&b)?;
    ok(&api.set_labels(&c, &key, input.set, input.remove).await?)
}

/// Container images each node published (for Podman tasks).
pub async fn images(State(api): State<NodeApi>) -> HttpResult {
    let nodes: Vec<Value> = api
        .list_nodes()
        .iter()
        .map(|n| json!({ "node_id": n.id, "node": n.name, "images": n.images }))
        .collect();
    ok(&json!({ "nodes": nodes }))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct EventQuery {
    #[serde(default)]
    after: u64,
    #[serde(default)]
    limit: u32,
}

pub async fn events(State(api): State<NodeApi>, q: Result<Query<EventQuery>, QueryRejection>) -> HttpResult {
    let Query(q) = q.map_err(query_error)?;
    let limit = if q.limit == 0 { 100 } else { q.limit.min(1000) } as usize;
    ok(&json!({ "events": api.events(q.after, limit) }))
}

pub async fn whoami(State(api): State<NodeApi>, h: HeaderMap) -> HttpResult {
    let c = caller(&api, &h, Scope::Read)?;
    ok(&json!({ "token_id": c.token_id, "scope": c.scope.as_str() }))
}
