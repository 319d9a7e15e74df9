//! Cluster status and readiness, from openraft's metrics and the applied state.

use std::collections::BTreeMap;

use cortex_model::view::ClusterStatus;
use openraft::ServerState;
use serde::Serialize;

use super::NodeApi;

/// What `/readyz` reports: ready = a leader is known and this node has applied everything
/// it knows to be committed.
#[derive(Debug, Clone, Serialize)]
pub struct Readiness {
    pub ready: bool,
    pub leader_id: Option<u64>,
    pub commit_index: Option<u64>,
    pub applied_index: Option<u64>,
    pub reason: Option<String>,
}

fn role_name(s: ServerState) -> &'static str {
    match s {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
    }
}

impl NodeApi {
    async fn committed(&self) -> Option<u64> {
        self.inner
            .raft
            .with_raft_state(|st| st.committed.map(|l| l.index))
            .await
            .ok()
            .flatten()
    }

    pub async fn status(&self) -> ClusterStatus {
        let committed = self.committed().await;
        let m = self.inner.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voters: Vec<u64> = membership.voter_ids().collect();
        let learners: Vec<u64> = membership.learner_ids().collect();
        let state = self.inner.sm.state();
        let mut by_state: BTreeMap<String, u32> = BTreeMap::new();
        for n in state.nodes.values() {
            *by_state.entry(n.state.as_str().to_string()).or_default() += 1;
        }
        ClusterStatus {
            cluster_id: state.cluster_id.clone().unwrap_or_default(),
            node_id: self.inner.node_id,
            node_name: self.inner.node_name.clone(),
            raft_role: role_name(m.state).to_string(),
            leader_id: m.current_leader,
            term: m.current_term,
            commit_index: committed,
            applied_index: m.last_applied.map(|l| l.index),
            last_log_index: m.last_log_index,
            voters,
            learners,
            nodes_total: state.nodes.len() as u32,
            nodes_by_state: by_state,
            version: env!("CARGO_PKG_VERSION").to_string(),
            uptime_ms: self.inner.started.elapsed().as_millis() as u64,
            created_at_ms: state.created_at_ms,
            ca_fingerprint: cortex_cluster::pki::ca_fingerprint(&state.ca_cert_pem).unwrap_or_default(),
        }
    }

    pub async fn readiness(&self) -> Readiness {
        let committed = self.committed().await;
        let m = self.inner.raft.metrics().borrow().clone();
        let applied = m.last_applied.map(|l| l.index);
        let reason = if m.current_leader.is_none() {
            Some("no Raft leader is known yet".to_string())
        } else if applied < committed {
            Some(format!(
                "applied index {applied:?} is behind the commit index {committed:?}"
            ))
        } else if self.inner.sm.state().cluster_id.is_none() {
            Some("the cluster is not initialised yet".to_string())
        } else {
            None
        };
        Readiness {
            ready: reason.is_none(),
            leader_id: m.current_leader,
            commit_index: committed,
            applied_index: applied,
            reason,
        }
    }
}
