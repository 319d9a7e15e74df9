//! Conversions between the model's types and the wire (proto) types.

use cortex_model::node::{NodeRecord, NodeRole, NodeState};
use cortex_model::view::ClusterStatus;
use cortex_proto::v1 as pb;

pub fn node_to_pb(n: &NodeRecord) -> pb::Node {
    pb::Node {
        id: n.id,
        name: n.name.clone(),
        role: n.role.as_str().to_string(),
        state: n.state.as_str().to_string(),
        grpc_addr: n.grpc_addr.clone(),
        http_addr: n.http_addr.clone(),
        labels: n.labels.clone().into_iter().collect(),
        registered_at_ms: n.registered_at_ms,
        updated_at_ms: n.updated_at_ms,
        inventory_json: serde_json::to_string(&n.inventory).unwrap_or_else(|_| "{}".into()),
        join_json: n
            .join
            .as_ref()
            .and_then(|j| serde_json::to_string(j).ok())
            .unwrap_or_default(),
        has_certificate: n.cert_pem.is_some(),
        drained: n.drained,
        images: n.images.clone(),
        bench_json: n
            .bench
            .as_ref()
            .and_then(|b| serde_json::to_string(b).ok())
            .unwrap_or_default(),
        bench_report_json: n.bench_report.as_ref().map(|r| r.to_string()).unwrap_or_default(),
        bench_request_json: n
            .bench_request
            .as_ref()
            .and_then(|r| serde_json::to_string(r).ok())
            .unwrap_or_default(),
        net_bench_json: n.net_bench.as_ref().map(|r| r.to_string()).unwrap_or_default(),
        net_bench_request_json: n
            .net_bench_request
            .as_ref()
            .and_then(|r| serde_json::to_string(r).ok())
            .unwrap_or_default(),
    }
}

/// An optional JSON field of a wire node: "" is absent, anything else must parse.
fn optional_json<T: serde::de::DeserializeOwned>(
    id: u64,
    field: &str,
    json: &str,
) -> Result<Option<T>, String> {
    if json.is_empty() {
        return Ok(None);
    }
    serde_json::from_str(json)
        .map(Some)
        .map_err(|e| format!("node {id}: {field} is not valid: {e}"))
}

/// Decodes a node from the wire; a field the server filled wrongly is an error naming it.
pub fn node_from_pb(n: pb::Node) -> Result<NodeRecord, String> {
    let role = parse_role(&n.role).ok_or_else(|| format!("node {}: unknown role {:?}", n.id, n.role))?;
    let state: NodeState = serde_json::from_value(serde_json::Value::String(n.state.clone()))
        .map_err(|_| format!("node {}: unknown state {:?}", n.id, n.state))?;
    let inventory = serde_json::from_str(&n.inventory_json)
        .map_err(|e| format!("node {}: inventory_json is not valid: {e}", n.id))?;
    let join = if n.join_json.is_empty() {
        None
    } else {
        Some(
            serde_json::from_str(&n.join_json)
                .map_err(|e| format!("node {}: join_json is not valid: {e}", n.id))?,
        )
    };
    let bench = if n.bench_json.is_empty() {
        None
    } else {
        Some(
            serde_json::from_str(&n.bench_json)
                .map_err(|e| format!("node {}: bench_json is not valid: {e}", n.id))?,
        )
    };
    let bench_report = optional_json(n.id, "bench_report_json", &n.bench_report_json)?;
    let bench_request = optional_json(n.id, "bench_request_json", &n.bench_request_json)?;
    let net_bench = optional_json(n.id, "net_bench_json", &n.net_bench_json)?;
    let net_bench_request = optional_json(n.id, "net_bench_request_json", &n.net_bench_request_json)?;
    Ok(NodeRecord {
        net_bench,
        net_bench_request,
        images: n.images,
        bench,
        bench_report,
        bench_request,
        id: n.id,
        name: n.name,
        role,
        state,
        grpc_addr: n.grpc_addr,
        http_addr: n.http_addr,
        labels: n.labels.into_iter().collect(),
        inventory,
        registered_at_ms: n.registered_at_ms,
        updated_at_ms: n.updated_at_ms,
        drained: n.drained,
        join,
        // The certificate itself is not sent to clients; they see whether there is one.
        cert_pem: n.has_certificate.then(String::new),
    })
}

pub fn parse_role(s: &str) -> Option<NodeRole> {
    match s {
        "coordinator" => Some(NodeRole::Coordinator),
        "worker" => Some(NodeRole::Worker),
        _ => None,
    }
}

pub fn token_to_pb(t: &cortex_model::token::TokenRecord) -> pb::Token {
    pb::Token {
        id: t.id.clone(),
        name: t.name.clone(),
        kind: t.kind.as_str().to_string(),
        scope: t.scope.as_str().to_string(),
        created_at_ms: t.created_at_ms,
        expires_at_ms: t.expires_at_ms,
        revoked: t.revoked,
        uses_left: t.uses_left,
        auto_approve: t.auto_approve,
    }
}

pub fn status_to_pb(s: &ClusterStatus) -> pb::ClusterStatus {
    pb::ClusterStatus {
        cluster_id: s.cluster_id.clone(),
        node_id: s.node_id,
        node_name: s.node_name.clone(),
        raft_role: s.raft_role.clone(),
        leader_id: s.leader_id,
        term: s.term,
        commit_index: s.commit_index,
        applied_index: s.applied_index,
        last_log_index: s.last_log_index,
        voters: s.voters.clone(),
        learners: s.learners.clone(),
        nodes_total: s.nodes_total,
        nodes_by_state: s.nodes_by_state.clone().into_iter().collect(),
        version: s.version.clone(),
        uptime_ms: s.uptime_ms,
        created_at_ms: s.created_at_ms,
        ca_fingerprint: s.ca_fingerprint.clone(),
    }
}

pub fn status_from_pb(s: pb::ClusterStatus) -> ClusterStatus {
    ClusterStatus {
        cluster_id: s.cluster_id,
        node_id: s.node_id,
        node_name: s.node_name,
        raft_role: s.raft_role,
        leader_id: s.leader_id,
        term: s.term,
        commit_index: s.commit_index,
        applied_index: s.applied_index,
        last_log_index: s.last_log_index,
        voters: s.voters,
        learners: s.learners,
        nodes_total: s.nodes_total,
        nodes_by_state: s.nodes_by_state.into_iter().collect(),
        version: s.version,
        uptime_ms: s.uptime_ms,
        created_at_ms: s.created_at_ms,
        ca_fingerprint: s.ca_fingerprint,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_round_trips_through_the_wire() {
        let mut n = NodeRecord {
            id: 42,
            name: "alpha".into(),
            role: NodeRole::Coordinator,
            state: NodeState::Ready,
            grpc_addr: "127.0.0.1:7071".into(),
            http_addr: "127.0.0.1:7070".into(),
            labels: Default::default(),
            inventory: Default::default(),
            registered_at_ms: 1,
            updated_at_ms: 2,
            drained: true,
            join: None,
            cert_pem: None,
            bench: None,
            images: Vec::new(),
            bench_report: None,
            bench_request: None,
            net_bench: None,
            net_bench_request: None,
        };
        n.labels.insert("zone".into(), "a".into());
        n.inventory.hostname = "alpha".into();
        assert_eq!(node_from_pb(node_to_pb(&n)), Ok(n.clone()));
        n.bench_report = Some(serde_json::json!({ "format": "cortex-bench/1", "quick": true }));
        n.bench_request = Some(cortex_model::node::BenchRequest {
            requested_at_ms: 9,
            quick: false,
            by: Some("t1".into()),
        });
        n.net_bench = Some(serde_json::json!({ "format": "cortex-bench-net/1" }));
        n.net_bench_request = Some(cortex_model::node::NetBenchRequest {
            requested_at_ms: 9,
            seconds: 5,
            secret_sha256: "0".repeat(64),
            by: None,
            from: Some("c1".into()),
            listening: Some("10.0.0.1:4000".into()),
        });
        assert_eq!(node_from_pb(node_to_pb(&n)), Ok(n));
    }

    #[test]
    fn bad_wire_fields_are_named() {
        let mut p = node_to_pb(&NodeRecord {
            id: 1,
            name: "x".into(),
            role: NodeRole::Worker,
            state: NodeState::Pending,
            grpc_addr: String::new(),
            http_addr: String::new(),
            labels: Default::default(),
            inventory: Default::default(),
            registered_at_ms: 0,
            updated_at_ms: 0,
            drained: false,
            join: None,
            cert_pem: None,
            bench: None,
            images: Vec::new(),
            bench_report: None,
            bench_request: None,
            net_bench: None,
            net_bench_request: None,
        });
        p.state = "sleepy".into();
        assert_eq!(
            node_from_pb(p),
            Err("node 1: unknown state \"sleepy\"".to_string())
        );
    }
}
