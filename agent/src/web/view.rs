//! What the status page shows, shaped from `NodeApi` reads: compact JSON the page's script
//! renders. Presentation only — no decision here changes anything.

use std::collections::HashMap;

use cortex_model::node::{NodeRecord, NodeState};
use cortex_model::state::Event;
use cortex_model::task::TaskRecord;
use cortex_model::view::ClusterStatus;
use cortex_model::NodeId;
use serde_json::{json, Value};

use crate::api::Liveness;

/// Round to one decimal.
fn r1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// The cluster header: Raft position, coordinators' roles, and a health verdict with reasons.
pub fn cluster(s: &ClusterStatus, health: &(&'static str, Vec<String>), started_ms: u64) -> Value {
    let (health, reasons) = health;
    json!({
        "cluster_id": s.cluster_id,
        "node_id": s.node_id,
        "node_name": s.node_name,
        "raft_role": s.raft_role,
        "leader_id": s.leader_id,
        "term": s.term,
        "commit_index": s.commit_index,
        "applied_index": s.applied_index,
        "last_log_index": s.last_log_index,
        "voters": s.voters,
        "learners": s.learners,
        "nodes_total": s.nodes_total,
        "nodes_by_state": s.nodes_by_state,
        "version": s.version,
        "started_at_ms": started_ms,
        "created_at_ms": s.created_at_ms,
        "ca_fingerprint": s.ca_fingerprint,
        "health": health,
        "health_reasons": reasons,
    })
}

/// "healthy", "degraded" or "unavailable", with one sentence per reason.
pub fn health(s: &ClusterStatus, nodes: &[NodeRecord]) -> (&'static str, Vec<String>) {
    let mut reasons = Vec::new();
    if s.leader_id.is_none() {
        reasons.push("no Raft leader is known: writes wait until an election completes".to_string());
        return ("unavailable", reasons);
    }
    for v in &s.voters {
        match nodes.iter().find(|n| n.id == *v) {
            Some(n) if n.state == NodeState::Ready => {}
            Some(n) => reasons.push(format!("coordinator {} is {}", n.name, n.state.as_str())),
            None => reasons.push(format!("voter {v} has no node record")),
        }
    }
    let lost = |st: NodeState| nodes.iter().filter(|n| n.state == st).count();
    for (st, what) in [
        (NodeState::Down, "down"),
        (NodeState::Suspect, "suspect (missed heartbeats)"),
    ] {
        let n = lost(st);
        if n > 0 {
            reasons.push(format!("{n} node{} {what}", if n == 1 { "" } else { "s" }));
        }
    }
    let pending = lost(NodeState::Pending);
    if pending > 0 {
        reasons.push(format!(
            "{pending} node{} waiting for approval",
            if pending == 1 { "" } else { "s" }
        ));
    }
    let degraded = reasons.iter().any(|r| !r.contains("waiting for approval"));
    (if degraded { "degraded" } else { "healthy" }, reasons)
}

/// One node row: identity, lifecycle, inventory summary, benchmark figures, running tasks.
/// Live figures (heartbeat age, load) travel separately (`live`), they change every second.
pub fn node(n: &NodeRecord, running: u32, voters: &[NodeId], leader: Option<NodeId>) -> Value {
    let inv = &n.inventory;
    let bench = n.bench.as_ref().map(|b| {
        json!({
            "f64_all": r1(b.cpu_f64_gflops_all),
            "f64_one": r1(b.cpu_f64_gflops_one),
            "f32_all": r1(b.cpu_f32_gflops_all),
            "triad": r1(b.memory_triad_gbps),
            "disk_read": r1(b.disk_seq_read_mbps),
            "at_ms": b.measured_at_ms,
        })
    });
    let code = n
        .join
        .as_ref()
        .filter(|_| n.state == NodeState::Pending)
        .map(|j| j.verification_code.clone());
    let reject_reason = n.join.as_ref().and_then(|j| j.reject_reason.clone());
    json!({
        "id": n.id.to_string(),
        "name": n.name,
        "role": n.role.as_str(),
        "state": n.state.as_str(),
        "drained": n.drained,
        "voter": voters.contains(&n.id),
        "leader": leader == Some(n.id),
        "http_addr": n.http_addr,
        "labels": n.labels,
        "cpus": inv.cpu.threads,
        "cores": inv.cpu.cores,
        "cpu_model": inv.cpu.model,
        "mem_bytes": inv.memory.total_bytes,
        "gpus": inv.gpus.devices.iter().map(|g| g.name.clone()).collect::<Vec<_>>(),
        "arch": inv.os.arch,
        "os": inv.os.name,
        "kernel": inv.os.kernel,
        "bench": bench,
        "code": code,
        "reject_reason": reject_reason,
        "registered_at_ms": n.registered_at_ms,
        "running": running,
    })
}

/// What one heartbeat said, for the page.
pub struct LiveFigures {
    pub cpu: f64,
    /// Memory in use, percent of the inventory's total.
    pub mem: f64,
    pub load: f64,
}

/// The node's last heartbeat on this coordinator: when, and its figures.
/// `total` is the node's memory from its inventory.
pub fn live(liveness: &Liveness, id: NodeId, total: u64) -> Option<(std::time::Instant, LiveFigures)> {
    let seen = liveness.last_seen(id)?;
    let mem = if total > 0 {
        let used = total.saturating_sub(seen.resources.memory_available_bytes);
        r1(used as f64 * 100.0 / total as f64)
    } else {
        0.0
    };
    Some((
        seen.at,
        LiveFigures {
            cpu: r1(f64::from(seen.resources.cpu_usage_percent)),
            mem,
            load: r1(seen.resources.load_1m),
        },
    ))
}

/// Active (placed or running) tasks per node.
pub fn running_per_node(active: &[TaskRecord]) -> HashMap<NodeId, u32> {
    let mut m = HashMap::new();
    for t in active {
        if let Some(n) = t.node_id {
            *m.entry(n).or_default() += 1;
        }
    }
    m
}

/// One task row (no environment values, no full spec).
pub fn task(t: &TaskRecord, nodes: &HashMap<NodeId, String>) -> Value {
    let name = t.spec.name.clone().unwrap_or_else(|| {
        let mut c = t.spec.command.join(" ");
        if c.len() > 80 {
            let cut = (0..=77).rev().find(|i| c.is_char_boundary(*i)).unwrap_or(0);
            c.truncate(cut);
            c.push('…');
        }
        c
    });
    json!({
        "id": t.id,
        "name": name,
        "kind": t.spec.kind.as_str(),
        "state": t.state.as_str(),
        "node": t.node_id.or(t.attempts.last().map(|a| a.node_id)).map(|id| nodes.get(&id).cloned().unwrap_or_else(|| id.to_string())),
        "attempt": t.attempt,
        "exit_code": t.exit_code,
        "error": t.error,
        "created_at_ms": t.created_at_ms,
        "finished_at_ms": t.finished_at_ms,
        "active": !t.state.is_terminal(),
    })
}

pub fn event(e: &Event) -> Value {
    json!({
        "seq": e.seq,
        "at_ms": e.at_ms,
        "node_id": e.node_id.map(|n| n.to_string()),
        "kind": e.kind,
        "message": e.message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cortex_model::node::NodeRole;

    fn node_rec(id: NodeId, state: NodeState) -> NodeRecord {
        NodeRecord {
            id,
            name: format!("n{id}"),
            role: NodeRole::Coordinator,
            state,
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
        }
    }

    #[test]
    fn health_names_what_is_wrong() {
        let s = ClusterStatus {
            leader_id: Some(1),
            voters: vec![1, 2],
            ..Default::default()
        };
        let nodes = [node_rec(1, NodeState::Ready), node_rec(2, NodeState::Ready)];
        assert_eq!(health(&s, &nodes).0, "healthy");
        let nodes = [node_rec(1, NodeState::Ready), node_rec(2, NodeState::Down)];
        let (h, why) = health(&s, &nodes);
        assert_eq!(h, "degraded");
        assert!(why.iter().any(|w| w == "coordinator n2 is down"), "{why:?}");
        let mut p = node_rec(3, NodeState::Pending);
        p.role = NodeRole::Worker;
        let nodes = [node_rec(1, NodeState::Ready), node_rec(2, NodeState::Ready), p];
        let (h, why) = health(&s, &nodes);
        assert_eq!(h, "healthy", "a pending node is not a fault: {why:?}");
        let none = ClusterStatus::default();
        assert_eq!(health(&none, &[]).0, "unavailable");
    }

    #[test]
    fn long_commands_are_cut_on_a_char_boundary() {
        let mut t: TaskRecord = serde_json::from_value(json!({
            "id": "t1", "spec": {"command": ["echo", "é".repeat(60)]}, "state": "pending",
            "attempt": 0, "created_at_ms": 0, "updated_at_ms": 0
        }))
        .expect("task");
        t.spec.name = None;
        let v = task(&t, &HashMap::new());
        let name = v["name"].as_str().expect("name");
        assert!(name.ends_with('…') && name.len() <= 81, "{name}");
    }
}
