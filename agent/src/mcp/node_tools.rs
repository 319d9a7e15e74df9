//! The cluster and node tools: status, nodes, pending joins, approve/reject/drain, events.

use cortex_model::node::NodeState;
use serde_json::{json, Value};

use super::args::{ListEventsArgs, ListNodesArgs, NodeArgs, RejectArgs};
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
