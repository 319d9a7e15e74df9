//! The cluster and node tools: status, nodes, pending joins, approve/reject/drain, events.

use cortex_model::node::NodeState;
use serde_json::{json, Value};

use super::args::{
    ListEventsArgs, ListNodesArgs, NodeArgs, RejectArgs, RunBenchmarkArgs, RunNetBenchmarkArgs,
};
use super::error::ToolResult;
use super::tools::Call;
use super::view;
use crate::api::now_ms;

pub async fn cluster_status(c: &Call<'_>) -> ToolResult<Value> {
    let s = c.backend.status().await?;
    let mut v = serde_json::to_value(&s).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        // Neither helps a model; the uptime reads better in seconds.
        o.remove("ca_fingerprint");
        o.remove("created_at_ms");
        o.remove("uptime_ms");
        o.insert("uptime_s".into(), json!(s.uptime_ms / 1000));
    }
    Ok(v)
}

pub async fn list_nodes(c: &Call<'_>, a: ListNodesArgs) -> ToolResult<Value> {
    let nodes = c.backend.nodes().await?;
    let state = a.state.map(|s| serde_json::to_value(s).unwrap_or_default());
    let role = a.role.map(|r| serde_json::to_value(r).unwrap_or_default());
    let matching: Vec<_> = nodes
        .iter()
        .filter(|n| state.as_ref().is_none_or(|s| s == n.state.as_str()))
        .filter(|n| role.as_ref().is_none_or(|r| r == n.role.as_str()))
        .filter(|n| a.labels.iter().all(|(k, v)| n.labels.get(k) == Some(v)))
        .collect();
    let limit = a.limit.unwrap_or(50).clamp(1, 500) as usize;
    let offset = a.offset.unwrap_or(0) as usize;
    let page: Vec<Value> = matching
        .iter()
        .skip(offset)
        .take(limit)
        .map(|n| view::node_line(n))
        .collect();
    let mut v = json!({ "total": matching.len(), "nodes": page });
    if offset + limit < matching.len() {
        v["next_offset"] = json!(offset + limit);
    }
    Ok(v)
}

pub async fn get_node(c: &Call<'_>, a: NodeArgs) -> ToolResult<Value> {
    Ok(view::node_full(&c.backend.node(&a.node).await?))
}

pub async fn list_pending(c: &Call<'_>) -> ToolResult<Value> {
    let now = now_ms();
    let pending: Vec<Value> = c
        .backend
        .nodes()
        .await?
        .iter()
        .filter(|n| n.state == NodeState::Pending)
        .map(|n| view::pending_line(n, now))
        .collect();
    let note = if pending.is_empty() {
        "no machine is waiting for approval"
    } else {
        "ask the user to compare each verification_code with the one on the machine's console before approve_node"
    };
    Ok(json!({ "pending": pending, "note": note }))
}

pub async fn approve(c: &Call<'_>, a: NodeArgs) -> ToolResult<Value> {
    let n = c.backend.approve(c.caller, &a.node).await?;
    Ok(json!({ "approved": view::node_line(&n) }))
}

pub async fn reject(c: &Call<'_>, a: RejectArgs) -> ToolResult<Value> {
    let reason = a.reason.unwrap_or_default();
    let n = c.backend.reject(c.caller, &a.node, &reason).await?;
    Ok(json!({ "rejected": view::node_line(&n) }))
}

pub async fn drain(c: &Call<'_>, a: NodeArgs) -> ToolResult<Value> {
    let n = c.backend.drain(c.caller, &a.node).await?;
    Ok(json!({ "drained": view::node_line(&n), "note": "it gets no new tasks; running ones go on" }))
}

pub async fn undrain(c: &Call<'_>, a: NodeArgs) -> ToolResult<Value> {
    let n = c.backend.undrain(c.caller, &a.node).await?;
    Ok(json!({ "undrained": view::node_line(&n), "note": "it takes new tasks again" }))
}

/// Asks for a new run; with `wait_seconds`, waits (with progress) until the node recorded it
/// (its request cleared) and returns the figures with when they were measured.
pub async fn run_benchmark(c: &Call<'_>, a: RunBenchmarkArgs) -> ToolResult<Value> {
    if let Some(w) = a.wait_seconds.filter(|w| *w > 120) {
        return Err(super::error::ToolError::invalid(format!(
            "invalid argument `wait_seconds`: at most 120 (a full run takes about 20 s), got {w}"
        )));
    }
    let quick = a.quick.unwrap_or(false);
    let asked = c.backend.run_benchmark(c.caller, &a.node, quick).await?;
    let requested_at = asked.bench_request.as_ref().map(|r| r.requested_at_ms);
    let run = if quick { "quick" } else { "full" };
    let Some(wait) = super::wait::seconds(a.wait_seconds) else {
        return Ok(json!({
            "node": view::node_line(&asked),
            "requested": run,
            "recorded": false,
            "note": "the node runs it when it next hears from the leader (about a second) and records the figures; get_node shows them, or call again with wait_seconds",
        }));
    };
    let id = asked.id.to_string();
    let last = super::wait::until(c.backend, c.progress.as_ref(), &c.cancelled, wait, || async {
        let n = c.backend.node(&id).await?;
        let pending = n.bench_request.as_ref().map(|r| r.requested_at_ms);
        let done = pending != requested_at;
        Ok(super::wait::Look {
            value: n,
            done,
            message: format!("node {id} is running its {run} benchmark"),
        })
    })
    .await?;
    let n = last.value;
    let pending = n.bench_request.as_ref().map(|r| r.requested_at_ms);
    if pending == requested_at {
        return Ok(json!({
            "node": view::node_line(&n),
            "requested": run,
            "recorded": false,
            "note": format!("not recorded within {} s; the request stays and get_node shows the figures once the node records them", wait.as_secs()),
        }));
    }
    if pending.is_some() {
        return Ok(json!({
            "node": view::node_line(&n),
            "recorded": false,
            "note": "another run was asked for meanwhile; get_node shows the figures once recorded",
        }));
    }
    Ok(json!({
        "node": view::node_line(&n),
        "recorded": true,
        "bench": view::bench(&n, now_ms()),
    }))
}

/// A network run between the coordinator serving the call (the measuring end) and a node;
/// with `wait_seconds`, waits (with progress) for the peer to record the report and returns
/// its figures.
pub async fn run_net_benchmark(c: &Call<'_>, a: RunNetBenchmarkArgs) -> ToolResult<Value> {
    if let Some(w) = a.wait_seconds.filter(|w| *w > 120) {
        return Err(super::error::ToolError::invalid(format!(
            "invalid argument `wait_seconds`: at most 120 (a 30 s run takes about 65 s), got {w}"
        )));
    }
    let seconds = a.seconds.unwrap_or(cortex_bench::net::DEFAULT_SECONDS);
    let asked = c.backend.run_net_benchmark(c.caller, &a.node, seconds).await?;
    let Some(request) = asked.net_bench_request.clone() else {
        return Err(super::error::ToolError::new(
            super::error::Kind::Internal,
            format!("node {}: the request was not recorded", asked.name),
        ));
    };
    let measured_by = request.from.clone().unwrap_or_default();
    let Some(wait) = super::wait::seconds(a.wait_seconds) else {
        return Ok(json!({
            "peer": view::node_line(&asked),
            "measured_by": measured_by,
            "seconds": seconds,
            "recorded": false,
            "note": format!(
                "coordinator {measured_by} connects to the peer when it listens (about a second) and measures {seconds} s each way; the peer records the result: get_node shows it under net_bench, or call again with wait_seconds"
            ),
        }));
    };
    let id = asked.id.to_string();
    let ours = |n: &cortex_model::node::NodeRecord| {
        n.net_bench_request
            .as_ref()
            .is_some_and(|r| r.requested_at_ms == request.requested_at_ms)
    };
    let last = super::wait::until(c.backend, c.progress.as_ref(), &c.cancelled, wait, || async {
        let n = c.backend.node(&id).await?;
        let message = match n.net_bench_request.as_ref().and_then(|r| r.listening.as_ref()) {
            Some(addr) if ours(&n) => format!("{measured_by} is measuring against node {id} at {addr}"),
            _ => format!("waiting for node {id} to listen"),
        };
        Ok(super::wait::Look {
            done: !ours(&n),
            value: n,
            message,
        })
    })
    .await?;
    let n = last.value;
    if ours(&n) {
        return Ok(json!({
            "peer": view::node_line(&n),
            "measured_by": measured_by,
            "recorded": false,
            "note": format!("not recorded within {} s; get_node shows the result under net_bench once the peer records it", wait.as_secs()),
        }));
    }
    // The request is cleared only by the peer's answer (a replacement needs it expired: 2 ×
    // seconds + 90 s, longer than any wait), so the record now holds this run's result.
    let result = view::net_bench(&n, now_ms());
    if result.is_null() {
        return Ok(json!({
            "peer": view::node_line(&n),
            "measured_by": measured_by,
            "recorded": false,
            "note": "the request is gone but the peer recorded no result; list_events says why",
        }));
    }
    Ok(json!({ "recorded": true, "net_bench": result }))
}

pub async fn list_events(c: &Call<'_>, a: ListEventsArgs) -> ToolResult<Value> {
    let limit = a.limit.unwrap_or(30).clamp(1, 200);
    let events = match a.after_seq {
        Some(after) => c.backend.events(after, limit).await?,
        None => {
            // The timeline holds at most 1000 events: take them all, keep the newest.
            let all = c.backend.events(0, 1000).await?;
            let skip = all.len().saturating_sub(limit as usize);
            all.into_iter().skip(skip).collect()
        }
    };
    let now = now_ms();
    let last_seq = events.last().map(|e| e.seq).or(a.after_seq);
    Ok(json!({
        "events": events.iter().map(|e| view::event_line(e, now)).collect::<Vec<_>>(),
        "last_seq": last_seq,
    }))
}
