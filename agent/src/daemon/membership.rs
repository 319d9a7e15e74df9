//! Keeps the Raft voter set at its target, on the leader only: approved coordinators are added
//! as learners, promoted to voters once caught up while the voter count is below target, and a
//! voter DOWN for longer than `voter_grace_ms` is replaced by a healthy caught-up learner. A
//! member that came back on another gRPC address is moved there (`SetNodes`): the address is
//! the one the node reports for itself in its heartbeats, over its own certificate.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use cortex_model::node::{NodeRole, NodeState};
use openraft::{BasicNode, ChangeMembers};
use tokio_util::sync::CancellationToken;

use crate::api::NodeApi;
use crate::config::ClusterConfig;

const TICK: Duration = Duration::from_millis(500);
/// A learner within this many entries of the leader's log counts as caught up.
const CAUGHT_UP: u64 = 64;

pub async fn run(api: NodeApi, cfg: ClusterConfig, shutdown: CancellationToken) {
    let grace = Duration::from_millis(cfg.voter_grace_ms);
    let mut down_since: HashMap<u64, Instant> = HashMap::new();
    let mut ticker = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        if api.leader().0 != Some(api.node_id()) {
            down_since.clear();
            continue;
        }
        if let Err(e) = reconcile(&api, cfg.target_voters as usize, grace, &mut down_since).await {
            tracing::warn!("membership change failed (will retry): {e}");
        }
    }
}

async fn reconcile(
    api: &NodeApi,
    target: usize,
    grace: Duration,
    down_since: &mut HashMap<u64, Instant>,
) -> Result<(), String> {
    let raft = api.raft();
    let m = raft.metrics().borrow().clone();
    let membership = m.membership_config.membership().clone();
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    let learners: BTreeSet<u64> = membership.learner_ids().collect();
    let last = m.last_log_index.unwrap_or(0);
    let matched = |id: u64| -> u64 {
        m.replication
            .as_ref()
            .and_then(|r| r.get(&id).cloned().flatten())
            .map(|l| l.index)
            .unwrap_or(0)
    };
    let nodes = api.list_nodes();
    let state_of = |id: u64| nodes.iter().find(|n| n.id == id).map(|n| n.state);

    // 0. Addresses. This node's record follows its listener, and every member's Raft address
    // follows its record: a coordinator that came back on another address reports it in its
    // heartbeats (`NodeApi::note_grpc_addr`), and until its Raft address moves the leader's
    // AppendEntries go to the old one and it never hears of a leader.
    api.note_own_grpc_addr();
    let moved: BTreeMap<u64, BasicNode> = membership
        .nodes()
        .filter_map(|(id, node)| {
            let record = nodes.iter().find(|n| n.id == *id)?;
            (!record.grpc_addr.is_empty() && record.grpc_addr != node.addr)
                .then(|| (*id, BasicNode::new(record.grpc_addr.clone())))
        })
        .collect();
    if !moved.is_empty() {
        tracing::info!(?moved, "moving Raft members to the addresses they now report");
        raft.change_membership(ChangeMembers::SetNodes(moved), false)
            .await
            .map_err(|e| e.to_string())?;
        return Ok(());
    }

    // 1. Approved coordinators that are not members yet become learners.
    for n in nodes
        .iter()
        .filter(|n| n.role == NodeRole::Coordinator && n.state == NodeState::Ready)
    {
        if !voters.contains(&n.id) && !learners.contains(&n.id) && !n.grpc_addr.is_empty() {
            tracing::info!(node_id = n.id, addr = %n.grpc_addr, "adding coordinator as a Raft learner");
            raft.add_learner(n.id, BasicNode::new(n.grpc_addr.clone()), false)
                .await
                .map_err(|e| e.to_string())?;
        }
    }

    // 2. Track how long voters have been DOWN.
    let now = Instant::now();
    down_since.retain(|id, _| state_of(*id) == Some(NodeState::Down));
    for v in &voters {
        if state_of(*v) == Some(NodeState::Down) {
            down_since.entry(*v).or_insert(now);
        }
    }
    let dead: Vec<u64> = down_since
        .iter()
        .filter(|(id, since)| now.duration_since(**since) >= grace && **id != api.node_id())
        .map(|(id, _)| *id)
        .collect();

    // 3. Promote caught-up, READY learners while below target (counting dead voters as gone).
    let live_voters = voters.len() - dead.len();
    let mut candidates: Vec<u64> = learners
        .iter()
        .copied()
        .filter(|id| state_of(*id) == Some(NodeState::Ready) && matched(*id) + CAUGHT_UP >= last)
        .collect();
    candidates.sort();
    let promote: BTreeSet<u64> = candidates
        .into_iter()
        .take(target.saturating_sub(live_voters))
        .collect();
    if !promote.is_empty() {
        tracing::info!(?promote, "promoting learners to voters");
        raft.change_membership(ChangeMembers::AddVoterIds(promote), true)
            .await
            .map_err(|e| e.to_string())?;
        return Ok(());
    }

    // 4. Remove voters dead past the grace period, keeping them as nothing (not learners).
    if !dead.is_empty() && voters.len() > 1 {
        let remove: BTreeSet<u64> = dead.into_iter().collect();
        tracing::warn!(
            ?remove,
            "removing voters that have been DOWN past the grace period"
        );
        raft.change_membership(ChangeMembers::RemoveVoters(remove), false)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}
