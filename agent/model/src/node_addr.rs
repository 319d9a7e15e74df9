//! Applying a node's new gRPC address: a machine that comes back on another address (DHCP gave
//! it a new one, its listener was moved) reports it in its heartbeats, and the leader records it
//! here; for a coordinator the membership reconciler then moves its Raft address too.

use crate::command::Outcome;
use crate::state::ClusterState;
use crate::{NodeId, UnixMillis};

/// Checks an address a node reports for itself: `ip:port`, as its listener prints it.
pub fn check_grpc_addr(addr: &str) -> Result<(), String> {
    match addr.parse::<std::net::SocketAddr>() {
        Ok(a) if a.port() != 0 && !a.ip().is_unspecified() => Ok(()),
        Ok(_) => Err(format!(
            "grpc_addr {addr:?}: needs a port and an address other nodes can reach"
        )),
        Err(_) => Err(format!("grpc_addr {addr:?}: expected ip:port")),
    }
}

impl ClusterState {
    pub(crate) fn set_node_addr(&mut self, node_id: NodeId, grpc_addr: &str, at_ms: UnixMillis) -> Outcome {
        if let Err(reason) = check_grpc_addr(grpc_addr) {
            return Outcome::Rejected { reason };
        }
        let Some(n) = self.nodes.get_mut(&node_id) else {
            return Outcome::Rejected {
                reason: format!("no node with id {node_id}"),
            };
        };
        if n.grpc_addr == grpc_addr {
            return Outcome::Node {
                node: Box::new(n.clone()),
            };
        }
        let from = std::mem::replace(&mut n.grpc_addr, grpc_addr.to_string());
        n.updated_at_ms = at_ms;
        let (name, record) = (n.name.clone(), n.clone());
        let from = if from.is_empty() { "none".to_string() } else { from };
        self.event(
            at_ms,
            Some(node_id),
            "node_address_changed",
            format!("node {name} ({node_id}): gRPC address {from} → {grpc_addr}"),
        );
        Outcome::Node {
            node: Box::new(record),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::command::{Command, Outcome};
    use crate::node::{NodeRegistration, NodeRole};
    use crate::state::ClusterState;

    fn with_node() -> ClusterState {
        let mut s = ClusterState::default();
        let node = NodeRegistration {
            id: 7,
            name: "c2".into(),
            role: NodeRole::Coordinator,
            grpc_addr: "10.0.0.2:7071".into(),
            http_addr: "10.0.0.2:7070".into(),
            inventory: Default::default(),
        };
        s.apply(&Command::RegisterNode {
            node: Box::new(node),
            at_ms: 1,
        });
        s
    }

    fn set(addr: &str) -> Command {
        Command::SetNodeAddr {
            node_id: 7,
            grpc_addr: addr.into(),
            at_ms: 5,
        }
    }

    #[test]
    fn a_new_address_is_recorded_once_with_an_event() {
        let mut s = with_node();
        let events = s.events.len();
        let Outcome::Node { node } = s.apply(&set("10.0.0.9:7071")) else {
            panic!("not applied")
        };
        assert_eq!(node.grpc_addr, "10.0.0.9:7071");
        assert_eq!(s.nodes[&7].updated_at_ms, 5);
        assert_eq!(s.events.len(), events + 1);
        let last = s.events.back().expect("an event");
        assert_eq!(last.kind, "node_address_changed");
        assert!(
            last.message.contains("10.0.0.2:7071 → 10.0.0.9:7071"),
            "{}",
            last.message
        );
        // The same address again changes nothing.
        s.apply(&set("10.0.0.9:7071"));
        assert_eq!(s.events.len(), events + 1);
    }

    #[test]
    fn bad_addresses_and_unknown_nodes_are_refused_and_change_nothing() {
        let mut s = with_node();
        let before = s.clone();
        for bad in [
            "",
            "10.0.0.9",
            "host:7071",
            "0.0.0.0:7071",
            "10.0.0.9:0",
            "[::]:7071",
        ] {
            let Outcome::Rejected { reason } = s.apply(&set(bad)) else {
                panic!("{bad:?} accepted")
            };
            assert!(reason.contains("grpc_addr"), "{bad:?}: {reason}");
        }
        let unknown = Command::SetNodeAddr {
            node_id: 8,
            grpc_addr: "10.0.0.9:7071".into(),
            at_ms: 5,
        };
        assert!(matches!(s.apply(&unknown), Outcome::Rejected { .. }));
        assert_eq!(s, before);
    }
}
