//! Placement: which ready node runs a pending task. Pure functions over the cluster state, used
//! by the leader's scheduler (to choose) and by apply (to re-check the choice, so a stale or
//! concurrent decision can never oversubscribe a node or break a constraint).
//!
//! Filter: node READY (not suspect, down, draining, pending), labels, named node, GPUs,
//! measured GFLOP/s (`min_gflops`, `fastest`), one-per-node for spread groups, free CPU /
//! memory / GPUs after the reservations of its placed and running tasks.
//! Score: most free CPU and memory, least load, fewest tasks of the same group.

use std::collections::BTreeMap;

use crate::node::{NodeRecord, NodeState};
use crate::state::ClusterState;
use crate::task::{Placement, TaskKind, TaskRecord, TaskSpec, TaskState};
use crate::{NodeId, UnixMillis};

/// What a node offers, or what tasks reserve on it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Amount {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub gpus: u64,
}

/// A node's schedulable capacity, from its inventory.
pub fn capacity(node: &NodeRecord) -> Amount {
    let threads = u64::from(node.inventory.cpu.threads.max(1));
    Amount {
        cpu_millis: threads * 1000,
        memory_bytes: node.inventory.memory.total_bytes,
        gpus: node.inventory.gpus.devices.len() as u64,
    }
}

/// What one task reserves.
pub fn request(spec: &TaskSpec) -> Amount {
    Amount {
        cpu_millis: spec.resources.reserved_cpu_millis(),
        memory_bytes: spec.resources.reserved_memory_bytes(),
        gpus: u64::from(spec.resources.gpus),
    }
}

/// Reservations of placed and running tasks, per node.
pub fn usage(state: &ClusterState) -> BTreeMap<NodeId, Amount> {
    let mut used: BTreeMap<NodeId, Amount> = BTreeMap::new();
    for t in state.tasks.values().filter(|t| t.state.is_active()) {
        if let Some(n) = t.node_id {
            let r = request(&t.spec);
            let u = used.entry(n).or_default();
            u.cpu_millis += r.cpu_millis;
            u.memory_bytes += r.memory_bytes;
            u.gpus += r.gpus;
        }
    }
    used
}

/// The measured all-core f64 GFLOP/s of a node, if it has been benchmarked.
pub fn gflops(node: &NodeRecord) -> Option<f64> {
    node.bench
        .as_ref()
        .map(|b| b.cpu_f64_gflops_all)
        .filter(|g| *g > 0.0)
}

/// The measured memory bandwidth (STREAM triad, GB/s) of a node, if it has been benchmarked.
pub fn mem_bw(node: &NodeRecord) -> Option<f64> {
    node.bench
        .as_ref()
        .map(|b| b.memory_triad_gbps)
        .filter(|g| *g > 0.0)
}

/// The ids of the `n` fastest ready nodes (measured), fastest first.
pub fn fastest_nodes(state: &ClusterState, n: u32) -> Vec<NodeId> {
    let mut v: Vec<(f64, NodeId)> = state
        .nodes
        .values()
        .filter(|x| x.state == NodeState::Ready)
        .filter_map(|x| gflops(x).map(|g| (g, x.id)))
        .collect();
    v.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    v.into_iter().take(n as usize).map(|(_, id)| id).collect()
}

fn names_node(key: &str, node: &NodeRecord) -> bool {
    key == node.name || key.parse::<NodeId>().is_ok_and(|id| id == node.id)
}

/// Static constraints: may this task ever run on this node as it is now?
pub fn eligible(state: &ClusterState, task: &TaskRecord, node: &NodeRecord) -> Result<(), String> {
    static_fit(state, &task.spec, node)?;
    if task.spec.constraints.spread_group {
        if let Some(g) = &task.group {
            let busy = state.tasks.values().any(|t| {
                t.id != task.id
                    && t.group.as_ref() == Some(g)
                    && t.node_id == Some(node.id)
                    && t.state.is_active()
            });
            if busy {
                return Err(format!("node {} already runs a task of group {g}", node.name));
            }
        }
    }
    Ok(())
}

fn static_fit(state: &ClusterState, spec: &TaskSpec, node: &NodeRecord) -> Result<(), String> {
    if node.state != NodeState::Ready {
        return Err(format!("node {} is {}", node.name, node.state.as_str()));
    }
    let c = &spec.constraints;
    if let Some(key) = &c.node {
        if !names_node(key, node) {
            return Err(format!("the task asks for node {key}"));
        }
    }
    for (k, v) in &c.labels {
        if node.labels.get(k) != Some(v) {
            return Err(format!("node {} lacks label {k}={v}", node.name));
        }
    }
    if let Some(min) = c.min_gflops {
        match gflops(node) {
            Some(g) if g >= min => {}
            Some(g) => return Err(format!("node {} measured {g:.1} GFLOP/s < {min}", node.name)),
            None => return Err(format!("node {} has no benchmark yet", node.name)),
        }
    }
    if let Some(min) = c.min_mem_bw {
        match mem_bw(node) {
            Some(b) if b >= min => {}
            Some(b) => return Err(format!("node {} measured {b:.1} GB/s triad < {min}", node.name)),
            None => return Err(format!("node {} has no memory-bandwidth figure yet", node.name)),
        }
    }
    if let Some(n) = c.fastest {
        if !fastest_nodes(state, n).contains(&node.id) {
            return Err(format!("node {} is not among the {n} fastest", node.name));
        }
    }
    if let (TaskKind::Podman, Some(image)) = (spec.kind, &spec.image) {
        if !has_image(node, image) {
            return Err(format!("node {} does not have image {image}", node.name));
        }
    }
    let cap = capacity(node);
    let req = request(spec);
    if req.gpus > cap.gpus || req.cpu_millis > cap.cpu_millis || req.memory_bytes > cap.memory_bytes {
        return Err(format!("node {} is too small for the request", node.name));
    }
    Ok(())
}

/// Does the node have room for `spec` on top of `used`?
pub fn fits_with(node: &NodeRecord, spec: &TaskSpec, used: Amount) -> Result<(), String> {
    let cap = capacity(node);
    let req = request(spec);
    if used.cpu_millis + req.cpu_millis > cap.cpu_millis
        || used.memory_bytes + req.memory_bytes > cap.memory_bytes
        || used.gpus + req.gpus > cap.gpus
    {
        return Err(format!("node {} has no room left", node.name));
    }
    Ok(())
}

/// Whether a node's local store has `image` (`name` matches `name:latest`, and a reference
/// without a registry matches `localhost/…`, as Podman resolves them).
pub fn has_image(node: &NodeRecord, image: &str) -> bool {
    let with_tag = if image
        .rsplit('/')
        .next()
        .is_some_and(|last| last.contains(':') || last.contains('@'))
    {
        image.to_string()
    } else {
        format!("{image}:latest")
    };
    let candidates = [with_tag.clone(), format!("localhost/{with_tag}")];
    node.images.iter().any(|i| candidates.contains(i))
}

/// Submit-time check: is there any node (ready or not) big enough and matching the static
/// constraints? Names what is impossible.
pub fn feasible_anywhere(state: &ClusterState, spec: &TaskSpec) -> Result<(), String> {
    let joined: Vec<&NodeRecord> = state
        .nodes
        .values()
        .filter(|n| {
            !matches!(
                n.state,
                NodeState::Pending | NodeState::Rejected | NodeState::Left
            )
        })
        .collect();
    if joined.is_empty() {
        return Err("the cluster has no nodes to run tasks".into());
    }
    let req = request(spec);
    let max = joined.iter().fold(Amount::default(), |m, n| {
        let c = capacity(n);
        Amount {
            cpu_millis: m.cpu_millis.max(c.cpu_millis),
            memory_bytes: m.memory_bytes.max(c.memory_bytes),
            gpus: m.gpus.max(c.gpus),
        }
    });
    if req.gpus > max.gpus {
        return Err(format!(
            "resources.gpus: {} GPUs requested, the most any node has is {}",
            req.gpus, max.gpus
        ));
    }
    if req.cpu_millis > max.cpu_millis {
        return Err(format!(
            "resources.cpu_millis: {} requested, the largest node has {} ({} cores)",
            req.cpu_millis,
            max.cpu_millis,
            max.cpu_millis / 1000
        ));
    }
    if req.memory_bytes > max.memory_bytes {
        return Err(format!(
            "resources.memory_bytes: {} MiB requested, the largest node has {} MiB",
            req.memory_bytes >> 20,
            max.memory_bytes >> 20
        ));
    }
    if let Some(key) = &spec.constraints.node {
        if !joined.iter().any(|n| names_node(key, n)) {
            return Err(format!("constraints.node: no node {key} in the cluster"));
        }
    }
    if !spec.constraints.labels.is_empty()
        && !joined.iter().any(|n| {
            spec.constraints
                .labels
                .iter()
                .all(|(k, v)| n.labels.get(k) == Some(v))
        })
    {
        return Err("constraints.labels: no node has all of these labels".into());
    }
    if let (TaskKind::Podman, Some(image)) = (spec.kind, &spec.image) {
        if !joined.iter().any(|n| has_image(n, image)) {
            return Err(format!(
                "image: no node has {image} in its local image store (import it on a node with `cortex image import <rootfs.tar> {image}`)"
            ));
        }
    }
    if let Some(min) = spec.constraints.min_gflops {
        if !joined.iter().any(|n| gflops(n).is_some_and(|g| g >= min)) {
            return Err(format!(
                "constraints.min_gflops: no node has measured {min} GFLOP/s"
            ));
        }
    }
    if let Some(min) = spec.constraints.min_mem_bw {
        if !joined.iter().any(|n| mem_bw(n).is_some_and(|b| b >= min)) {
            return Err(format!(
                "constraints.min_mem_bw: no node has measured {min} GB/s of memory bandwidth (STREAM triad)"
            ));
        }
    }
    Ok(())
}

/// The leader's scheduling pass: places as many runnable pending tasks as fit, oldest first,
/// at most `max`. `load` is each node's live load average per core (from heartbeats).
pub fn schedule(
    state: &ClusterState,
    load: &BTreeMap<NodeId, f64>,
    now_ms: UnixMillis,
    max: usize,
) -> Vec<Placement> {
    let runnable: Vec<&TaskRecord> = state
        .tasks
        .values()
        .filter(|t| t.state == TaskState::Pending && t.not_before_ms <= now_ms)
        .filter(|t| state.dependencies_met(t))
        .collect();
    schedule_candidates(state, runnable, load, max)
}

/// Places `runnable` (pending tasks whose dependencies are met; they need not be in the state
/// yet: a proposer places new tasks in the same entry that creates them), oldest first.
pub fn schedule_candidates(
    state: &ClusterState,
    mut runnable: Vec<&TaskRecord>,
    load: &BTreeMap<NodeId, f64>,
    max: usize,
) -> Vec<Placement> {
    if runnable.is_empty() {
        return Vec::new();
    }
    runnable.sort_by(|a, b| a.created_at_ms.cmp(&b.created_at_ms).then(a.id.cmp(&b.id)));
    let ready: Vec<&NodeRecord> = state
        .nodes
        .values()
        .filter(|n| n.state == NodeState::Ready)
        .collect();
    let mut used = usage(state);
    // Active tasks per (group, node), for spreading.
    let mut group_load: BTreeMap<(&str, NodeId), u32> = BTreeMap::new();
    for t in state.tasks.values().filter(|t| t.state.is_active()) {
        if let (Some(g), Some(n)) = (t.group.as_deref(), t.node_id) {
            *group_load.entry((g, n)).or_default() += 1;
        }
    }
    let mut fastest_cache: BTreeMap<u32, Vec<NodeId>> = BTreeMap::new();
    let mut out = Vec::new();
    for task in runnable {
        if out.len() >= max {
            break;
        }
        let spec = &task.spec;
        let fastest = spec.constraints.fastest.map(|n| {
            fastest_cache
                .entry(n)
                .or_insert_with(|| fastest_nodes(state, n))
                .clone()
        });
        let mut best: Option<(f64, NodeId)> = None;
        for node in &ready {
            if fastest.as_ref().is_some_and(|f| !f.contains(&node.id)) {
                continue;
            }
            let group_here = task
                .group
                .as_deref()
                .and_then(|g| group_load.get(&(g, node.id)).copied())
                .unwrap_or(0);
            if spec.constraints.spread_group && group_here > 0 {
                continue;
            }
            if spec.constraints.fastest.is_some() {
                // Checked above; skip the per-node sort in static_fit.
                let mut s = spec.clone();
                s.constraints.fastest = None;
                if static_fit(state, &s, node).is_err() {
                    continue;
                }
            } else if static_fit(state, spec, node).is_err() {
                continue;
            }
            let u = used.get(&node.id).copied().unwrap_or_default();
            if fits_with(node, spec, u).is_err() {
                continue;
            }
            let cap = capacity(node);
            let req = request(spec);
            let free_cpu = 1.0 - (u.cpu_millis + req.cpu_millis) as f64 / cap.cpu_millis.max(1) as f64;
            let free_mem = 1.0 - (u.memory_bytes + req.memory_bytes) as f64 / cap.memory_bytes.max(1) as f64;
            let cores = (cap.cpu_millis / 1000).max(1) as f64;
            let l = load.get(&node.id).copied().unwrap_or(0.0) / cores;
            let score = free_cpu + free_mem - 0.5 * l.min(4.0) - f64::from(group_here);
            if best.is_none_or(|(s, id)| score > s || (score == s && node.id < id)) {
                best = Some((score, node.id));
            }
        }
        if let Some((_, node_id)) = best {
            let req = request(spec);
            let u = used.entry(node_id).or_default();
            u.cpu_millis += req.cpu_millis;
            u.memory_bytes += req.memory_bytes;
            u.gpus += req.gpus;
            if let Some(g) = task.group.as_deref() {
                *group_load.entry((g, node_id)).or_default() += 1;
            }
            out.push(Placement {
                task_id: task.id.clone(),
                attempt: task.attempt + 1,
                node_id,
            });
        }
    }
    out
}
