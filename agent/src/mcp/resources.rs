//! Resources: the cluster, each node, each task and each task's output, addressed as
//! `cortex://cluster`, `cortex://nodes/{id}`, `cortex://tasks/{id}`, `cortex://tasks/{id}/logs`.

use rmcp::model::{
    ErrorData, ListResourceTemplatesResult, ListResourcesResult, ReadResourceResult, Resource,
    ResourceContents, ResourceTemplate,
};

use super::backend::Backend;
use super::error::ToolError;
use super::view;

const JSON: &str = "application/json";
/// Output a logs resource shows: its end.
const LOG_TAIL: u64 = 64 * 1024;
/// Nodes listed as concrete resources (the template covers the rest).
const LISTED_NODES: usize = 100;

pub async fn list(b: &Backend) -> Result<ListResourcesResult, ErrorData> {
    let mut resources = vec![Resource::new("cortex://cluster", "cluster")
        .with_title("Cluster status")
        .with_description("Leader, term, commit index and node counts")
        .with_mime_type(JSON)];
    // A coordinator that cannot list its nodes still lists the cluster resource.
    if let Ok(nodes) = b.nodes().await {
        for n in nodes.iter().take(LISTED_NODES) {
            resources.push(
                Resource::new(format!("cortex://nodes/{}", n.id), format!("node {}", n.name))
                    .with_description(format!("{} {}, {}", n.role.as_str(), n.name, n.state.as_str()))
                    .with_mime_type(JSON),
            );
        }
    }
    Ok(ListResourcesResult::with_all_items(resources))
}

pub fn templates() -> ListResourceTemplatesResult {
    ListResourceTemplatesResult::with_all_items(vec![
        ResourceTemplate::new("cortex://nodes/{id}", "node")
            .with_description("One node in full (id or name): inventory, benchmark figures, labels")
            .with_mime_type(JSON),
        ResourceTemplate::new("cortex://tasks/{id}", "task")
            .with_description("One task: spec, state, attempts, exit code")
            .with_mime_type(JSON),
        ResourceTemplate::new("cortex://tasks/{id}/logs", "task output")
            .with_description("The last 64 KiB of a task's output (stdout and stderr interleaved)")
            .with_mime_type("text/plain"),
    ])
}

fn not_found(e: ToolError) -> ErrorData {
    ErrorData::resource_not_found(e.text(), None)
}

pub async fn read(b: &Backend, uri: &str) -> Result<ReadResourceResult, ErrorData> {
    let path = uri.strip_prefix("cortex://").ok_or_else(|| {
        ErrorData::resource_not_found(format!("{uri}: Cortex resources start with cortex://"), None)
    })?;
    let parts: Vec<&str> = path.split('/').collect();
    let json = |v: serde_json::Value| {
        ReadResourceResult::new(vec![
            ResourceContents::text(v.to_string(), uri).with_mime_type(JSON)
        ])
    };
    match parts.as_slice() {
        ["cluster"] => Ok(json(serde_json::to_value(b.status().await.map_err(not_found)?).unwrap_or_default())),
        ["nodes", key] => Ok(json(view::node_full(&b.node(key).await.map_err(not_found)?))),
        ["tasks", id] => Ok(json(view::task_full(&b.task(id).await.map_err(not_found)?))),
        ["tasks", id, "logs"] => {
            let size = b.logs(id, u64::MAX, 1).await.map_err(not_found)?.size;
            let s = b.logs(id, size.saturating_sub(LOG_TAIL), LOG_TAIL).await.map_err(not_found)?;
            Ok(ReadResourceResult::new(vec![ResourceContents::text(view::log_text(&s), uri)]))
        }
        _ => Err(ErrorData::resource_not_found(
            format!(
                "no resource {uri}; there are cortex://cluster, cortex://nodes/{{id}}, cortex://tasks/{{id}} and cortex://tasks/{{id}}/logs"
            ),
            None,
        )),
    }
}
