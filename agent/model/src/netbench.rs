//! Applying network throughput runs (`cortex bench net --peer`): the request (one pending per
//! peer, expired ones replaced), the peer's listening address, and its report.

use crate::command::Outcome;
use crate::node::{check_net_bench_report, NetBenchRequest, NodeState};
use crate::state::ClusterState;
use crate::{NodeId, UnixMillis};

/// Longest event summary kept.
const MAX_SUMMARY: usize = 300;

fn rejected(reason: String) -> Outcome {
    Outcome::Rejected { reason }
}

impl ClusterState {
    pub(crate) fn request_net_bench(&mut self, node_id: NodeId, request: &NetBenchRequest) -> Outcome {
        if let Err(e) = request.check() {
            return rejected(format!("net bench request: {e}"));
        }
        let Some(n) = self.nodes.get_mut(&node_id) else {
            return rejected(format!("no node with id {node_id}"));
        };
        if !matches!(
            n.state,
            NodeState::Ready | NodeState::Suspect | NodeState::Draining
        ) {
            return rejected(format!(
                "node {} is {}: only a ready, suspect or draining node can be the peer of a network benchmark",
                n.name,
                n.state.as_str()
            ));
        }
        if let Some(pending) = &n.net_bench_request {
            if request.requested_at_ms < pending.expires_at_ms() {
                return rejected(format!(
                    "node {} is already the peer of a network benchmark (asked at {} ms, by {}); one at a time — try again when it has finished",
                    n.name,
                    pending.requested_at_ms,
                    pending.from.as_deref().unwrap_or("?")
                ));
            }
        }
        n.net_bench_request = Some(request.clone());
        n.updated_at_ms = request.requested_at_ms;
        let (name, at) = (n.name.clone(), request.requested_at_ms);
        let record = n.clone();
        self.event(
            at,
            Some(node_id),
            "net_bench_requested",
            format!(
                "node {name} asked to be the peer of a {} s network benchmark from {}",
                request.seconds,
                request.from.as_deref().unwrap_or("?")
            ),
        );
        Outcome::Node {
            node: Box::new(record),
        }
    }

    pub(crate) fn net_bench_listening(
        &mut self,
        node_id: NodeId,
        answers: UnixMillis,
        addr: &str,
        at_ms: UnixMillis,
    ) -> Outcome {
        if addr.is_empty() || addr.len() > 64 {
            return rejected("net bench listening: addr must be 1 to 64 bytes".into());
        }
        let Some(n) = self.nodes.get_mut(&node_id) else {
            return rejected(format!("no node with id {node_id}"));
        };
        match n.net_bench_request.as_mut() {
            Some(r) if r.requested_at_ms == answers => r.listening = Some(addr.to_owned()),
            _ => {
                return rejected(format!(
                    "node {}: no pending network benchmark asked at {answers} ms",
                    n.name
                ))
            }
        }
        n.updated_at_ms = at_ms;
        Outcome::Node {
            node: Box::new(n.clone()),
        }
    }

    pub(crate) fn set_net_bench(
        &mut self,
        node_id: NodeId,
        answers: UnixMillis,
        report: &serde_json::Value,
        summary: &str,
        at_ms: UnixMillis,
    ) -> Outcome {
        if let Err(e) = check_net_bench_report(report) {
            return rejected(format!("net bench report: {e}"));
        }
        let Some(n) = self.nodes.get_mut(&node_id) else {
            return rejected(format!("no node with id {node_id}"));
        };
        if n.net_bench_request.as_ref().map(|r| r.requested_at_ms) != Some(answers) {
            return rejected(format!(
                "node {}: no pending network benchmark asked at {answers} ms",
                n.name
            ));
        }
        n.net_bench_request = None;
        n.net_bench = Some(report.clone());
        n.updated_at_ms = at_ms;
        let record = n.clone();
        let mut line: String = summary.chars().take(MAX_SUMMARY).collect();
        if line.is_empty() {
            line = "network benchmark recorded".into();
        }
        let kind = if report.get("error").is_some_and(|e| !e.is_null()) {
            "net_bench_failed"
        } else {
            "net_bench"
        };
        self.event(
            at_ms,
            Some(node_id),
            kind,
            format!("node {}: {line}", record.name),
        );
        Outcome::Node {
            node: Box::new(record),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::command::{Command, Outcome};
    use crate::inventory::Inventory;
    use crate::node::{NetBenchRequest, NodeRegistration, NodeRole, NodeState};
    use crate::state::ClusterState;

    fn state() -> ClusterState {
        let mut s = ClusterState::default();
        s.apply(&Command::RegisterNode {
            node: Box::new(NodeRegistration {
                id: 4,
                name: "w4".into(),
                role: NodeRole::Worker,
                grpc_addr: String::new(),
                http_addr: String::new(),
                inventory: Inventory::default(),
            }),
            at_ms: 1,
        });
        s
    }

    fn ask(at: u64, seconds: u32) -> Command {
        Command::RequestNetBench {
            node_id: 4,
            request: NetBenchRequest {
                requested_at_ms: at,
                seconds,
                secret_sha256: "ab".repeat(32),
                by: Some("tok".into()),
                from: Some("c1".into()),
                listening: None,
            },
        }
    }

    fn report(error: Option<&str>) -> serde_json::Value {
        serde_json::json!({ "format": "cortex-bench-net/1", "error": error })
    }

    #[test]
    fn one_run_at_a_time_listening_then_report() {
        let mut s = state();
        assert!(matches!(s.apply(&ask(1000, 5)), Outcome::Node { .. }));
        // A second request while the first is pending is refused, until the first expires.
        let before = s.clone();
        let Outcome::Rejected { reason } = s.apply(&ask(2000, 5)) else {
            panic!("a second run was accepted")
        };
        assert!(reason.contains("one at a time"), "{reason}");
        assert_eq!(s, before);
        let listening = |answers| Command::NetBenchListening {
            node_id: 4,
            answers,
            addr: "10.0.0.4:40000".into(),
            at_ms: 1100,
        };
        assert!(matches!(s.apply(&listening(999)), Outcome::Rejected { .. }));
        assert!(matches!(s.apply(&listening(1000)), Outcome::Node { .. }));
        assert_eq!(
            s.nodes[&4]
                .net_bench_request
                .as_ref()
                .and_then(|r| r.listening.as_deref()),
            Some("10.0.0.4:40000")
        );
        let set = |answers, r| Command::SetNetBench {
            node_id: 4,
            answers,
            report: r,
            summary: "send 50 Mbit/s".into(),
            at_ms: 9000,
        };
        assert!(matches!(
            s.apply(&set(1000, serde_json::json!({"format": "cortex-bench/1"}))),
            Outcome::Rejected { .. }
        ));
        assert!(matches!(s.apply(&set(1000, report(None))), Outcome::Node { .. }));
        assert_eq!(s.nodes[&4].net_bench_request, None);
        assert_eq!(s.nodes[&4].net_bench, Some(report(None)));
        assert!(s
            .events
            .iter()
            .any(|e| e.kind == "net_bench" && e.message.contains("50 Mbit/s")));
        // Answered: a late second answer is refused; a new request is accepted.
        assert!(matches!(
            s.apply(&set(1000, report(Some("x")))),
            Outcome::Rejected { .. }
        ));
        assert!(matches!(s.apply(&ask(10_000, 5)), Outcome::Node { .. }));
        assert!(matches!(
            s.apply(&set(10_000, report(Some("nobody came")))),
            Outcome::Node { .. }
        ));
        assert!(s.events.iter().any(|e| e.kind == "net_bench_failed"));
    }

    #[test]
    fn expired_requests_are_replaced_and_bad_ones_refused() {
        let mut s = state();
        assert!(matches!(s.apply(&ask(1000, 0)), Outcome::Rejected { .. }));
        assert!(matches!(s.apply(&ask(1000, 31)), Outcome::Rejected { .. }));
        assert!(matches!(s.apply(&ask(1000, 30)), Outcome::Node { .. }));
        // 2 × 30 s + 90 s later the unanswered request no longer blocks.
        assert!(matches!(
            s.apply(&ask(1000 + 149_000, 5)),
            Outcome::Rejected { .. }
        ));
        assert!(matches!(s.apply(&ask(1000 + 150_000, 5)), Outcome::Node { .. }));
        if let Some(n) = s.nodes.get_mut(&4) {
            n.state = NodeState::Down;
        }
        let Outcome::Rejected { reason } = s.apply(&ask(1_000_000, 5)) else {
            panic!("a down node was asked")
        };
        assert!(reason.contains("down"), "{reason}");
    }

    #[test]
    fn records_without_the_fields_load() {
        let s = state();
        let v = serde_json::to_value(&s.nodes[&4]).unwrap();
        assert!(v.get("net_bench").is_none() && v.get("net_bench_request").is_none());
        let back: crate::node::NodeRecord = serde_json::from_value(v).unwrap();
        assert_eq!(back.net_bench, None);
    }
}
