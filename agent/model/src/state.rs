//! The replicated cluster state and the one function that changes it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::command::{Command, Outcome};
use crate::node::{validate_label, BenchSummary, JoinInfo, NodeRecord, NodeRegistration, NodeState};
use crate::task::{TaskId, TaskLog, TaskRecord, WorkflowRecord};
use crate::token::{Scope, TokenKind, TokenRecord, TokenRejection};
use crate::{NodeId, UnixMillis};

/// How many events the state keeps; older ones are dropped (their count is kept).
pub const EVENT_CAPACITY: usize = 1000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub seq: u64,
    pub at_ms: UnixMillis,
    pub node_id: Option<NodeId>,
    /// Machine-readable kind, e.g. "node_registered".
    pub kind: String,
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterState {
    pub cluster_id: Option<String>,
    /// The cluster CA certificate (PEM); empty before the cluster is initialised.
    #[serde(default)]
    pub ca_cert_pem: String,
    pub created_at_ms: UnixMillis,
    pub nodes: BTreeMap<NodeId, NodeRecord>,
    pub tokens: BTreeMap<String, TokenRecord>,
    pub events: VecDeque<Event>,
    pub next_event_seq: u64,
    #[serde(default)]
    pub tasks: BTreeMap<TaskId, TaskRecord>,
    #[serde(default)]
    pub task_logs: BTreeMap<TaskId, TaskLog>,
    #[serde(default)]
    pub workflows: BTreeMap<String, WorkflowRecord>,
    /// Bytes held in `task_logs` (kept in step by apply, bounded by the log budget).
    #[serde(default)]
    pub log_bytes_held: u64,
}

impl ClusterState {
    /// Applies each command of a `Batch` entry, in order, with its own outcome; the label
    /// outcomes are filled in after the whole entry (see `share_labels`).
    fn apply_batch(&mut self, commands: &[Command]) -> Outcome {
        let mut outcomes: Vec<Outcome> = commands
            .iter()
            .map(|c| match c {
                Command::Batch { .. } => Outcome::Rejected {
                    reason: "batches do not nest".into(),
                },
                c => self.apply_one(c),
            })
            .collect();
        self.share_labels(&mut outcomes);
        Outcome::Batch { outcomes }
    }

    /// Fills the labels of every `Outcome::Labels` among `outcomes` with the node's labels as
    /// they are now, one shared copy per node (see `Outcome::Labels`).
    fn share_labels(&self, outcomes: &mut [Outcome]) {
        let mut copies: BTreeMap<NodeId, Arc<BTreeMap<String, String>>> = BTreeMap::new();
        for outcome in outcomes {
            if let Outcome::Labels { node_id, labels, .. } = outcome {
                *labels = copies
                    .entry(*node_id)
                    .or_insert_with(|| {
                        Arc::new(
                            self.nodes
                                .get(node_id)
                                .map(|n| n.labels.clone())
                                .unwrap_or_default(),
                        )
                    })
                    .clone();
            }
        }
    }

    /// Sets and removes a node's labels. The outcome's labels are left empty for
    /// `share_labels` to fill in.
    fn set_labels(
        &mut self,
        node_id: NodeId,
        set: &BTreeMap<String, String>,
        remove: &[String],
        at_ms: UnixMillis,
    ) -> Outcome {
        for (k, v) in set {
            if let Err(reason) = validate_label(k, v) {
                return Outcome::Rejected { reason };
            }
        }
        let Some(node) = self.nodes.get_mut(&node_id) else {
            return Outcome::Rejected {
                reason: format!("no node with id {node_id}"),
            };
        };
        for (k, v) in set {
            node.labels.insert(k.clone(), v.clone());
        }
        for k in remove {
            node.labels.remove(k);
        }
        node.updated_at_ms = at_ms;
        Outcome::Labels {
            node_id,
            name: node.name.clone(),
            labels: Arc::default(),
        }
    }

    /// Applies one command. Deterministic: the same state and command give the same result on
    /// every replica. Invalid commands are rejected without changing anything.
    pub fn apply(&mut self, cmd: &Command) -> Outcome {
        let mut outcome = self.apply_one(cmd);
        self.share_labels(std::slice::from_mut(&mut outcome));
        outcome
    }

    /// `apply` with the labels of a label write's outcome not yet filled in.
    fn apply_one(&mut self, cmd: &Command) -> Outcome {
        match cmd {
            Command::InitCluster {
                cluster_id,
                ca_cert_pem,
                at_ms,
            } => {
                if self.cluster_id.is_none() {
                    self.cluster_id = Some(cluster_id.clone());
                    self.ca_cert_pem = ca_cert_pem.clone();
                    self.created_at_ms = *at_ms;
                    self.event(
                        *at_ms,
                        None,
                        "cluster_created",
                        format!("cluster {cluster_id} created"),
                    );
                }
                Outcome::Done
            }
            Command::RegisterNode { node, at_ms } => {
                let record = match self.nodes.get_mut(&node.id) {
                    Some(existing) => {
                        existing.name = node.name.clone();
                        existing.role = node.role;
                        existing.grpc_addr = node.grpc_addr.clone();
                        existing.http_addr = node.http_addr.clone();
                        existing.inventory = node.inventory.clone();
                        existing.updated_at_ms = *at_ms;
                        existing.clone()
                    }
                    None => {
                        let record = NodeRecord {
                            id: node.id,
                            name: node.name.clone(),
                            role: node.role,
                            state: NodeState::Ready,
                            grpc_addr: node.grpc_addr.clone(),
                            http_addr: node.http_addr.clone(),
                            labels: BTreeMap::new(),
                            inventory: node.inventory.clone(),
                            registered_at_ms: *at_ms,
                            updated_at_ms: *at_ms,
                            drained: false,
                            join: None,
                            cert_pem: None,
                            bench: None,
                            images: Vec::new(),
                            bench_report: None,
                            bench_request: None,
                            net_bench: None,
                            net_bench_request: None,
                        };
                        self.nodes.insert(node.id, record.clone());
                        record
                    }
                };
                self.event(
                    *at_ms,
                    Some(node.id),
                    "node_registered",
                    format!(
                        "node {} ({}) registered as {}",
                        node.name,
                        node.id,
                        node.role.as_str()
                    ),
                );
                Outcome::Node {
                    node: Box::new(record),
                }
            }
            Command::SetLabels {
                node_id,
                set,
                remove,
                at_ms,
            } => self.set_labels(*node_id, set, remove, *at_ms),
            Command::CreateToken { token } => {
                if self.tokens.contains_key(&token.id) {
                    return Outcome::Rejected {
                        reason: format!("token id {:?} already exists", token.id),
                    };
                }
                self.tokens.insert(token.id.clone(), token.clone());
                self.event(
                    token.created_at_ms,
                    None,
                    "token_created",
                    format!(
                        "token {:?} ({}) created with scope {}",
                        token.name,
                        token.id,
                        token.scope.as_str()
                    ),
                );
                Outcome::Done
            }
            Command::RequestJoin {
                node,
                join,
                bench,
                at_ms,
            } => self.request_join(node, join, bench.as_ref(), *at_ms),
            Command::Batch { commands } => self.apply_batch(commands),
            Command::ApproveNode {
                node_id,
                cert_pem,
                at_ms,
            } => {
                let Some(n) = self.nodes.get_mut(node_id) else {
                    return Outcome::Rejected {
                        reason: format!("no node with id {node_id}"),
                    };
                };
                if n.state != NodeState::Pending {
                    return Outcome::Rejected {
                        reason: format!(
                            "node {} is {}, only a pending node can be approved",
                            n.name,
                            n.state.as_str()
                        ),
                    };
                }
                n.state = NodeState::Ready;
                n.cert_pem = Some(cert_pem.clone());
                n.updated_at_ms = *at_ms;
                let (name, record) = (n.name.clone(), n.clone());
                self.event(
                    *at_ms,
                    Some(*node_id),
                    "node_approved",
                    format!("node {name} ({node_id}) approved"),
                );
                Outcome::Node {
                    node: Box::new(record),
                }
            }
            Command::RejectNode {
                node_id,
                reason,
                at_ms,
            } => {
                let Some(n) = self.nodes.get_mut(node_id) else {
                    return Outcome::Rejected {
                        reason: format!("no node with id {node_id}"),
                    };
                };
                if n.state != NodeState::Pending {
                    return Outcome::Rejected {
                        reason: format!(
                            "node {} is {}, only a pending node can be rejected (use `cortex node remove`)",
                            n.name,
                            n.state.as_str()
                        ),
                    };
                }
                n.state = NodeState::Rejected;
                if let Some(j) = n.join.as_mut() {
                    j.reject_reason = Some(reason.clone());
                }
                n.updated_at_ms = *at_ms;
                let (name, record) = (n.name.clone(), n.clone());
                self.event(
                    *at_ms,
                    Some(*node_id),
                    "node_rejected",
                    format!("node {name} ({node_id}) rejected: {reason}"),
                );
                Outcome::Node {
                    node: Box::new(record),
                }
            }
            Command::SetNodeState {
                node_id,
                state,
                reason,
                at_ms,
            } => {
                let Some(n) = self.nodes.get_mut(node_id) else {
                    return Outcome::Rejected {
                        reason: format!("no node with id {node_id}"),
                    };
                };
                if matches!(n.state, NodeState::Pending | NodeState::Rejected) {
                    return Outcome::Rejected {
                        reason: format!("node {} is {} and has not joined", n.name, n.state.as_str()),
                    };
                }
                // A drain lasts until an operator ends it: a drained node that is alive again
                // is DRAINING, not READY.
                if *state == NodeState::Draining {
                    n.drained = true;
                }
                let state = if n.drained && *state == NodeState::Ready {
                    &NodeState::Draining
                } else {
                    state
                };
                if n.state == *state {
                    return Outcome::Node {
                        node: Box::new(n.clone()),
                    };
                }
                let from = n.state;
                n.state = *state;
                n.updated_at_ms = *at_ms;
                let (name, record) = (n.name.clone(), n.clone());
                if matches!(state, NodeState::Down | NodeState::Left) {
                    let why = format!("node {name} is {}", state.as_str());
                    self.lose_tasks_on(*node_id, &why, *at_ms);
                }
                self.event(
                    *at_ms,
                    Some(*node_id),
                    &format!("node_{}", state.as_str()),
                    format!(
                        "node {name} ({node_id}): {} → {} ({reason})",
                        from.as_str(),
                        state.as_str()
                    ),
                );
                Outcome::Node {
                    node: Box::new(record),
                }
            }
            Command::UndrainNode { node_id, at_ms } => {
                let Some(n) = self.nodes.get_mut(node_id) else {
                    return Outcome::Rejected {
                        reason: format!("no node with id {node_id}"),
                    };
                };
                if !n.drained {
                    return Outcome::Rejected {
                        reason: format!("node {} is {}, not drained", n.name, n.state.as_str()),
                    };
                }
                n.drained = false;
                n.updated_at_ms = *at_ms;
                let from = n.state;
                if n.state == NodeState::Draining {
                    n.state = NodeState::Ready;
                }
                let (name, record) = (n.name.clone(), n.clone());
                self.event(
                    *at_ms,
                    Some(*node_id),
                    "node_undrained",
                    format!(
                        "node {name} ({node_id}): drain ended, {} → {}",
                        from.as_str(),
                        record.state.as_str()
                    ),
                );
                Outcome::Node {
                    node: Box::new(record),
                }
            }
            Command::RemoveNode { node_id, at_ms } => {
                let Some(n) = self.nodes.remove(node_id) else {
                    return Outcome::Rejected {
                        reason: format!("no node with id {node_id}"),
                    };
                };
                self.event(
                    *at_ms,
                    Some(*node_id),
                    "node_removed",
                    format!("node {} ({node_id}) removed", n.name),
                );
                self.lose_tasks_on(*node_id, &format!("node {} was removed", n.name), *at_ms);
                Outcome::Done
            }
            Command::RevokeToken { id, at_ms } => {
                let Some(token) = self.tokens.get_mut(id) else {
                    return Outcome::Rejected {
                        reason: format!("no token with id {id:?}"),
                    };
                };
                token.revoked = true;
                self.event(*at_ms, None, "token_revoked", format!("token {id:?} revoked"));
                Outcome::Done
            }
            Command::SubmitTasks {
                tasks,
                workflow,
                submitted_by,
                placements,
                at_ms,
            } => {
                let out = self.submit_tasks(tasks, workflow.as_ref(), submitted_by.as_deref(), *at_ms);
                if matches!(out, Outcome::Tasks { .. }) && !placements.is_empty() {
                    // Refused placements leave the task pending for the scheduler.
                    self.place_tasks(placements, *at_ms);
                }
                out
            }
            Command::PlaceTasks { placements, at_ms } => self.place_tasks(placements, *at_ms),
            Command::ReportTasks {
                node_id,
                reports,
                at_ms,
            } => self.report_tasks(*node_id, reports, *at_ms),
            Command::CancelTasks {
                task_ids,
                reason,
                at_ms,
            } => self.cancel_tasks(task_ids, reason, *at_ms),
            Command::SetNodeAddr {
                node_id,
                grpc_addr,
                at_ms,
            } => self.set_node_addr(*node_id, grpc_addr, *at_ms),
            Command::SetNodeImages {
                node_id,
                images,
                at_ms,
            } => {
                if images.len() > 10_000 || images.iter().any(|i| i.is_empty() || i.len() > 4096) {
                    return Outcome::Rejected {
                        reason: "images: at most 10000 references of 1 to 4096 bytes".into(),
                    };
                }
                let Some(n) = self.nodes.get_mut(node_id) else {
                    return Outcome::Rejected {
                        reason: format!("no node with id {node_id}"),
                    };
                };
                let mut images = images.clone();
                images.sort();
                images.dedup();
                n.images = images;
                n.updated_at_ms = *at_ms;
                Outcome::Node {
                    node: Box::new(n.clone()),
                }
            }
            Command::SetNodeBench {
                node_id,
                bench,
                report,
                answers,
                at_ms,
            } => {
                if let Err(e) = bench.check() {
                    return Outcome::Rejected {
                        reason: format!("bench: {e}"),
                    };
                }
                if let Some(Err(e)) = report.as_ref().map(crate::node::check_bench_report) {
                    return Outcome::Rejected {
                        reason: format!("bench report: {e}"),
                    };
                }
                let Some(n) = self.nodes.get_mut(node_id) else {
                    return Outcome::Rejected {
                        reason: format!("no node with id {node_id}"),
                    };
                };
                n.bench = Some(bench.clone());
                n.bench_report = report.clone();
                let answered =
                    answers.is_some() && n.bench_request.as_ref().map(|r| r.requested_at_ms) == *answers;
                if answered {
                    n.bench_request = None;
                }
                n.updated_at_ms = *at_ms;
                Outcome::Node {
                    node: Box::new(n.clone()),
                }
            }
            Command::RequestNetBench { node_id, request } => self.request_net_bench(*node_id, request),
            Command::NetBenchListening {
                node_id,
                answers,
                addr,
                at_ms,
            } => self.net_bench_listening(*node_id, *answers, addr, *at_ms),
            Command::SetNetBench {
                node_id,
                answers,
                report,
                summary,
                at_ms,
            } => self.set_net_bench(*node_id, *answers, report, summary, *at_ms),
            Command::RequestBench { node_id, request } => {
                let Some(n) = self.nodes.get_mut(node_id) else {
                    return Outcome::Rejected {
                        reason: format!("no node with id {node_id}"),
                    };
                };
                if !matches!(
                    n.state,
                    NodeState::Ready | NodeState::Suspect | NodeState::Draining
                ) {
                    return Outcome::Rejected {
                        reason: format!(
                            "node {} is {}: only a ready, suspect or draining node can run its benchmark",
                            n.name,
                            n.state.as_str()
                        ),
                    };
                }
                n.bench_request = Some(request.clone());
                n.updated_at_ms = request.requested_at_ms;
                let (name, at) = (n.name.clone(), request.requested_at_ms);
                let record = n.clone();
                self.event(
                    at,
                    Some(*node_id),
                    "bench_requested",
                    format!(
                        "node {name} asked to run its {} benchmark again",
                        if request.quick { "quick" } else { "full" }
                    ),
                );
                Outcome::Node {
                    node: Box::new(record),
                }
            }
        }
    }

    fn request_join(
        &mut self,
        node: &NodeRegistration,
        join: &JoinInfo,
        bench: Option<&BenchSummary>,
        at_ms: UnixMillis,
    ) -> Outcome {
        if let Some(Err(e)) = bench.map(BenchSummary::check) {
            return Outcome::Rejected {
                reason: format!("bench: {e}"),
            };
        }
        if let Some(existing) = self.nodes.get_mut(&node.id) {
            let same_key = existing.join.as_ref().is_some_and(|j| j.csr_pem == join.csr_pem);
            return match existing.state {
                NodeState::Pending => {
                    // A pending node may restart with a new key or new inventory: refresh it.
                    existing.name = node.name.clone();
                    existing.role = node.role;
                    existing.grpc_addr = node.grpc_addr.clone();
                    existing.http_addr = node.http_addr.clone();
                    existing.inventory = node.inventory.clone();
                    existing.join = Some(join.clone());
                    if let Some(b) = bench {
                        existing.bench = Some(b.clone());
                    }
                    existing.updated_at_ms = at_ms;
                    Outcome::Node {
                        node: Box::new(existing.clone()),
                    }
                }
                _ if same_key => Outcome::Node {
                    node: Box::new(existing.clone()),
                },
                _ => Outcome::Rejected {
                    reason: format!(
                        "node id {} is already {} with a different key; a new machine needs a new data dir",
                        node.id,
                        existing.state.as_str()
                    ),
                },
            };
        }
        if let Some(token_id) = &join.token_id {
            match self.tokens.get_mut(token_id) {
                None => {
                    return Outcome::Rejected {
                        reason: format!("unknown join token {token_id:?}"),
                    }
                }
                Some(t) if t.kind != TokenKind::Join => {
                    return Outcome::Rejected {
                        reason: format!("token {token_id:?} is not a join token"),
                    }
                }
                Some(t) if t.revoked => {
                    return Outcome::Rejected {
                        reason: format!("join token {token_id:?} has been revoked"),
                    }
                }
                Some(t) if t.expires_at_ms.is_some_and(|e| at_ms >= e) => {
                    return Outcome::Rejected {
                        reason: format!("join token {token_id:?} has expired"),
                    }
                }
                Some(t) if t.uses_left == Some(0) => {
                    return Outcome::Rejected {
                        reason: format!("join token {token_id:?} has no uses left"),
                    }
                }
                Some(t) => {
                    if let Some(n) = t.uses_left.as_mut() {
                        *n -= 1;
                    }
                }
            }
        }
        let record = NodeRecord {
            id: node.id,
            name: node.name.clone(),
            role: node.role,
            state: NodeState::Pending,
            grpc_addr: node.grpc_addr.clone(),
            http_addr: node.http_addr.clone(),
            labels: BTreeMap::new(),
            inventory: node.inventory.clone(),
            registered_at_ms: at_ms,
            updated_at_ms: at_ms,
            drained: false,
            join: Some(join.clone()),
            cert_pem: None,
            bench: bench.cloned(),
            images: Vec::new(),
            bench_report: None,
            bench_request: None,
            net_bench: None,
            net_bench_request: None,
        };
        self.nodes.insert(node.id, record.clone());
        self.event(
            at_ms,
            Some(node.id),
            "node_pending",
            format!(
                "node {} ({}) asks to join as {} (code {})",
                node.name,
                node.id,
                node.role.as_str(),
                join.verification_code
            ),
        );
        Outcome::Node {
            node: Box::new(record),
        }
    }

    /// Checks a presented token (given as its SHA-256 hex digest) at time `now_ms`.
    /// Called by request handlers, not by apply.
    pub fn authorize(
        &self,
        sha256_hex: &str,
        need: Scope,
        now_ms: UnixMillis,
    ) -> Result<&TokenRecord, TokenRejection> {
        let token = self.find_token(sha256_hex)?;
        if token.kind != TokenKind::Api {
            return Err(TokenRejection::WrongKind {
                id: token.id.clone(),
                kind: token.kind,
            });
        }
        if token.revoked {
            return Err(TokenRejection::Revoked { id: token.id.clone() });
        }
        if token.expires_at_ms.is_some_and(|exp| now_ms >= exp) {
            return Err(TokenRejection::Expired { id: token.id.clone() });
        }
        if !token.scope.allows(need) {
            return Err(TokenRejection::InsufficientScope {
                id: token.id.clone(),
                have: token.scope,
                need,
            });
        }
        Ok(token)
    }

    /// A join token by digest, if it may be used at `now_ms`.
    pub fn join_token(&self, sha256_hex: &str, now_ms: UnixMillis) -> Result<&TokenRecord, TokenRejection> {
        let token = self.find_token(sha256_hex)?;
        if token.kind != TokenKind::Join {
            return Err(TokenRejection::WrongKind {
                id: token.id.clone(),
                kind: token.kind,
            });
        }
        if token.revoked {
            return Err(TokenRejection::Revoked { id: token.id.clone() });
        }
        if token.expires_at_ms.is_some_and(|exp| now_ms >= exp) {
            return Err(TokenRejection::Expired { id: token.id.clone() });
        }
        if token.uses_left == Some(0) {
            return Err(TokenRejection::UsedUp { id: token.id.clone() });
        }
        Ok(token)
    }

    fn find_token(&self, sha256_hex: &str) -> Result<&TokenRecord, TokenRejection> {
        self.tokens
            .values()
            .find(|t| t.sha256 == sha256_hex)
            .ok_or(TokenRejection::Unknown)
    }

    /// Finds a node by numeric id or by (unique) name.
    pub fn find_node(&self, key: &str) -> Option<&NodeRecord> {
        if let Ok(id) = key.parse::<NodeId>() {
            if let Some(n) = self.nodes.get(&id) {
                return Some(n);
            }
        }
        let mut by_name = self.nodes.values().filter(|n| n.name == key);
        match (by_name.next(), by_name.next()) {
            (Some(n), None) => Some(n),
            _ => None,
        }
    }

    pub(crate) fn event(&mut self, at_ms: UnixMillis, node_id: Option<NodeId>, kind: &str, message: String) {
        let seq = self.next_event_seq;
        self.next_event_seq += 1;
        self.events.push_back(Event {
            seq,
            at_ms,
            node_id,
            kind: kind.to_string(),
            message,
        });
        while self.events.len() > EVENT_CAPACITY {
            self.events.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::Inventory;
    use crate::node::{NodeRegistration, NodeRole};

    fn reg(id: NodeId, name: &str) -> Command {
        Command::RegisterNode {
            node: Box::new(NodeRegistration {
                id,
                name: name.into(),
                role: NodeRole::Coordinator,
                grpc_addr: "127.0.0.1:7071".into(),
                http_addr: "127.0.0.1:7070".into(),
                inventory: Inventory::default(),
            }),
            at_ms: 10,
        }
    }

    #[test]
    fn apply_is_deterministic_and_rejects_without_change() {
        let cmds = vec![
            Command::InitCluster {
                cluster_id: "c1".into(),
                ca_cert_pem: String::new(),
                at_ms: 1,
            },
            reg(7, "alpha"),
            Command::SetLabels {
                node_id: 7,
                set: [("zone".to_string(), "a".to_string())].into(),
                remove: vec![],
                at_ms: 11,
            },
        ];
        let mut a = ClusterState::default();
        let mut b = ClusterState::default();
        for c in &cmds {
            assert_eq!(a.apply(c), b.apply(c));
        }
        assert_eq!(a, b);
        assert_eq!(a.nodes[&7].labels["zone"], "a");

        let before = a.clone();
        let bad = Command::SetLabels {
            node_id: 7,
            set: [("bad key!".to_string(), "x".to_string())].into(),
            remove: vec![],
            at_ms: 12,
        };
        assert!(matches!(a.apply(&bad), Outcome::Rejected { .. }));
        let unknown = Command::SetLabels {
            node_id: 99,
            set: BTreeMap::new(),
            remove: vec![],
            at_ms: 12,
        };
        assert!(matches!(a.apply(&unknown), Outcome::Rejected { .. }));
        assert_eq!(a, before);
    }

    fn bench(gflops: f64) -> BenchSummary {
        BenchSummary {
            cpu_f64_gflops_all: gflops,
            cpu_f64_gflops_one: gflops / 2.0,
            cpu_f32_gflops_all: gflops * 2.0,
            memory_triad_gbps: 10.0,
            disk_seq_read_mbps: 0.0,
            measured_at_ms: 5,
        }
    }

    fn join_cmd(id: NodeId, csr: &str, bench: Option<BenchSummary>) -> Command {
        Command::RequestJoin {
            node: Box::new(NodeRegistration {
                id,
                name: format!("n{id}"),
                role: NodeRole::Worker,
                grpc_addr: String::new(),
                http_addr: "127.0.0.1:9".into(),
                inventory: Inventory::default(),
            }),
            join: JoinInfo {
                csr_pem: csr.into(),
                verification_code: "ABCD-EFGH".into(),
                token_id: None,
                reject_reason: None,
            },
            bench,
            at_ms: 20,
        }
    }

    #[test]
    fn a_join_request_records_the_bench_summary_and_bad_figures_are_refused() {
        let mut s = ClusterState::default();
        s.apply(&join_cmd(4, "csr-1", Some(bench(12.5))));
        assert_eq!(s.nodes[&4].state, NodeState::Pending);
        assert_eq!(
            s.nodes[&4].bench.as_ref().map(|b| b.cpu_f64_gflops_all),
            Some(12.5)
        );
        // A pending node asking again without figures keeps the ones it sent; new ones replace them.
        s.apply(&join_cmd(4, "csr-2", None));
        assert_eq!(s.nodes[&4].bench, Some(bench(12.5)));
        s.apply(&join_cmd(4, "csr-3", Some(bench(20.0))));
        assert_eq!(s.nodes[&4].bench, Some(bench(20.0)));
        s.apply(&join_cmd(5, "csr-5", None));
        assert_eq!(s.nodes[&5].bench, None);

        let before = s.clone();
        for bad in [-1.0, f64::NAN, f64::INFINITY] {
            let b = BenchSummary {
                memory_triad_gbps: bad,
                ..bench(1.0)
            };
            let Outcome::Rejected { reason } = s.apply(&join_cmd(6, "csr-6", Some(b.clone()))) else {
                panic!("a join with memory_triad_gbps {bad} must be refused")
            };
            assert!(reason.contains("memory_triad_gbps"), "{reason}");
            let set = Command::SetNodeBench {
                node_id: 4,
                bench: b,
                report: None,
                answers: None,
                at_ms: 30,
            };
            assert!(matches!(s.apply(&set), Outcome::Rejected { .. }));
        }
        assert_eq!(s, before, "a refused summary changes nothing");

        let set = Command::SetNodeBench {
            node_id: 5,
            bench: bench(3.0),
            report: None,
            answers: None,
            at_ms: 30,
        };
        assert!(matches!(s.apply(&set), Outcome::Node { .. }));
        assert_eq!(s.nodes[&5].bench, Some(bench(3.0)));
        assert_eq!(s.nodes[&5].updated_at_ms, 30);
    }

    fn report(gflops: f64) -> serde_json::Value {
        serde_json::json!({ "format": "cortex-bench/1", "cpu": { "f64_all_cores": { "median": gflops } } })
    }

    fn set_bench(node_id: NodeId, report: Option<serde_json::Value>, answers: Option<u64>) -> Command {
        Command::SetNodeBench {
            node_id,
            bench: bench(7.0),
            report,
            answers,
            at_ms: 60,
        }
    }

    #[test]
    fn a_drain_lasts_through_down_and_back_until_undrained() {
        let mut s = ClusterState::default();
        s.apply(&join_cmd(4, "csr", None));
        let set = |state: NodeState| Command::SetNodeState {
            node_id: 4,
            state,
            reason: "test".into(),
            at_ms: 1,
        };
        let undrain = Command::UndrainNode { node_id: 4, at_ms: 2 };
        if let Some(n) = s.nodes.get_mut(&4) {
            n.state = NodeState::Ready;
        }
        assert!(
            matches!(s.apply(&undrain), Outcome::Rejected { .. }),
            "not drained"
        );
        s.apply(&set(NodeState::Draining));
        assert!(s.nodes[&4].drained);
        for (to, seen) in [
            (NodeState::Suspect, NodeState::Suspect),
            (NodeState::Down, NodeState::Down),
            (NodeState::Ready, NodeState::Draining),
        ] {
            s.apply(&set(to));
            assert_eq!(s.nodes[&4].state, seen, "{to:?}");
            assert!(s.nodes[&4].drained);
        }
        assert!(matches!(s.apply(&undrain), Outcome::Node { .. }));
        assert_eq!(s.nodes[&4].state, NodeState::Ready);
        assert!(!s.nodes[&4].drained);
        assert!(s.events.iter().any(|e| e.kind == "node_undrained"));
        // A record from before the flag reads as not drained.
        let mut v = serde_json::to_value(&s.nodes[&4]).expect("json");
        assert!(v.get("drained").is_none(), "false is not written");
        v.as_object_mut().map(|o| o.remove("drained"));
        let back: NodeRecord = serde_json::from_value(v).expect("old record");
        assert!(!back.drained);
    }

    #[test]
    fn a_bench_request_is_kept_until_the_run_that_answers_it_and_the_report_is_stored() {
        let mut s = ClusterState::default();
        s.apply(&join_cmd(4, "csr", None));
        let ask = |at: u64| Command::RequestBench {
            node_id: 4,
            request: crate::node::BenchRequest {
                requested_at_ms: at,
                quick: false,
                by: Some("tok".into()),
            },
        };
        // A pending node cannot be asked; a ready one can.
        assert!(matches!(s.apply(&ask(40)), Outcome::Rejected { .. }));
        if let Some(n) = s.nodes.get_mut(&4) {
            n.state = NodeState::Ready;
        }
        assert!(matches!(s.apply(&ask(40)), Outcome::Node { .. }));
        assert_eq!(
            s.nodes[&4].bench_request.as_ref().map(|r| r.requested_at_ms),
            Some(40)
        );
        assert!(matches!(
            s.apply(&Command::RequestBench {
                node_id: 9,
                request: s.nodes[&4].bench_request.clone().unwrap()
            }),
            Outcome::Rejected { .. }
        ));

        // A run that answers nothing (a restart's quick run) keeps the request.
        assert!(matches!(
            s.apply(&set_bench(4, Some(report(7.0)), None)),
            Outcome::Node { .. }
        ));
        assert!(s.nodes[&4].bench_request.is_some());
        assert_eq!(s.nodes[&4].bench_report, Some(report(7.0)));
        // An answer to an older request keeps the newer one.
        s.apply(&set_bench(4, Some(report(7.0)), Some(39)));
        assert!(s.nodes[&4].bench_request.is_some());
        s.apply(&set_bench(4, Some(report(8.0)), Some(40)));
        assert_eq!(s.nodes[&4].bench_request, None);
        assert_eq!(s.nodes[&4].bench_report, Some(report(8.0)));
        // A summary-only publish (an older node) leaves no stale report behind.
        s.apply(&set_bench(4, None, None));
        assert_eq!(s.nodes[&4].bench_report, None);

        // Bad reports are refused and change nothing.
        let before = s.clone();
        let big = serde_json::json!({ "format": "cortex-bench/1", "pad": "x".repeat(crate::node::MAX_BENCH_REPORT_BYTES) });
        for bad in [
            serde_json::json!([1]),
            serde_json::json!({ "format": "other/1" }),
            serde_json::json!({}),
            big,
        ] {
            let Outcome::Rejected { reason } = s.apply(&set_bench(4, Some(bad), None)) else {
                panic!("a bad report must be refused")
            };
            assert!(reason.starts_with("bench report:"), "{reason}");
        }
        assert_eq!(s, before);
    }

    #[test]
    fn old_set_node_bench_entries_and_node_records_still_load() {
        // As written before reports and requests were kept.
        let old = r#"{"op":"set_node_bench","node_id":4,"bench":{"cpu_f64_gflops_all":1.0},"at_ms":3}"#;
        let cmd: Command = serde_json::from_str(old).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            cmd,
            Command::SetNodeBench {
                report: None,
                answers: None,
                ..
            }
        ));
        let mut s = ClusterState::default();
        s.apply(&join_cmd(4, "csr", None));
        let mut record = serde_json::to_value(&s.nodes[&4]).unwrap_or_default();
        assert!(record.get("bench_report").is_none() && record.get("bench_request").is_none());
        if let Some(o) = record.as_object_mut() {
            o.remove("images");
        }
        let back: NodeRecord = serde_json::from_value(record).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back.bench_report, None);
    }

    #[test]
    fn a_request_join_without_bench_reads_as_before() {
        let json = serde_json::to_string(&join_cmd(4, "c", None)).unwrap_or_default();
        assert!(!json.contains("bench"), "{json}");
        let back: Command = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, join_cmd(4, "c", None));
        let with = join_cmd(4, "c", Some(bench(1.0)));
        let json = serde_json::to_string(&with).unwrap_or_default();
        assert_eq!(serde_json::from_str::<Command>(&json).ok(), Some(with));
    }

    #[test]
    fn init_twice_keeps_first_cluster_id() {
        let mut s = ClusterState::default();
        s.apply(&Command::InitCluster {
            cluster_id: "first".into(),
            ca_cert_pem: String::new(),
            at_ms: 1,
        });
        s.apply(&Command::InitCluster {
            cluster_id: "second".into(),
            ca_cert_pem: String::new(),
            at_ms: 2,
        });
        assert_eq!(s.cluster_id.as_deref(), Some("first"));
    }

    #[test]
    fn authorize_checks_scope_expiry_and_revocation() {
        let mut s = ClusterState::default();
        let token = TokenRecord {
            id: "t1".into(),
            name: "ops".into(),
            scope: Scope::Operate,
            sha256: "abc".into(),
            created_at_ms: 0,
            expires_at_ms: Some(100),
            revoked: false,
            kind: TokenKind::Api,
            uses_left: None,
            auto_approve: false,
        };
        s.apply(&Command::CreateToken { token });
        assert!(s.authorize("abc", Scope::Read, 50).is_ok());
        assert!(s.authorize("abc", Scope::Operate, 50).is_ok());
        assert!(matches!(
            s.authorize("abc", Scope::Admin, 50),
            Err(TokenRejection::InsufficientScope { .. })
        ));
        assert!(matches!(
            s.authorize("abc", Scope::Read, 100),
            Err(TokenRejection::Expired { .. })
        ));
        assert!(matches!(
            s.authorize("nope", Scope::Read, 50),
            Err(TokenRejection::Unknown)
        ));
        s.apply(&Command::RevokeToken {
            id: "t1".into(),
            at_ms: 60,
        });
        assert!(matches!(
            s.authorize("abc", Scope::Read, 50),
            Err(TokenRejection::Revoked { .. })
        ));
    }

    #[test]
    fn find_node_by_id_or_unique_name() {
        let mut s = ClusterState::default();
        s.apply(&reg(1, "alpha"));
        s.apply(&reg(2, "beta"));
        s.apply(&reg(3, "beta"));
        assert_eq!(s.find_node("1").map(|n| n.id), Some(1));
        assert_eq!(s.find_node("alpha").map(|n| n.id), Some(1));
        assert!(
            s.find_node("beta").is_none(),
            "ambiguous names resolve to nothing"
        );
        assert!(s.find_node("gamma").is_none());
    }

    #[test]
    fn events_are_bounded() {
        let mut s = ClusterState::default();
        for i in 0..(EVENT_CAPACITY as u64 + 10) {
            s.apply(&reg(i, "n"));
        }
        assert_eq!(s.events.len(), EVENT_CAPACITY);
        assert_eq!(s.events.front().map(|e| e.seq), Some(10));
    }

    #[test]
    fn a_batch_applies_each_command_with_its_own_outcome() {
        let mut s = ClusterState::default();
        s.apply(&reg(1, "alpha"));
        let label = |node_id, k: &str| Command::SetLabels {
            node_id,
            set: [(k.to_string(), "v".to_string())].into(),
            remove: vec![],
            at_ms: 5,
        };
        let out = s.apply(&Command::Batch {
            commands: vec![
                label(1, "a"),
                label(99, "b"),
                Command::Batch { commands: vec![] },
                label(1, "c"),
            ],
        });
        let Outcome::Batch { outcomes } = out else {
            panic!("expected a batch outcome")
        };
        // Label writes answer with the node's labels after the whole entry, one shared copy.
        assert!(
            matches!(&outcomes[0], Outcome::Labels { node_id: 1, labels, .. } if labels.len() == 2),
            "{:?}",
            outcomes[0]
        );
        if let (Outcome::Labels { labels: a, .. }, Outcome::Labels { labels: b, .. }) =
            (&outcomes[0], &outcomes[3])
        {
            assert!(Arc::ptr_eq(a, b), "one copy per node per entry");
        }
        assert!(
            matches!(outcomes[1], Outcome::Rejected { .. }),
            "one bad command does not sink the others"
        );
        assert!(
            matches!(outcomes[2], Outcome::Rejected { .. }),
            "batches do not nest"
        );
        assert!(matches!(&outcomes[3], Outcome::Labels { labels, .. } if labels.len() == 2));
        assert_eq!(s.nodes[&1].labels.len(), 2);
    }
}
