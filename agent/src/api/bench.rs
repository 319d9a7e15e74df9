//! A node's self-benchmark summary: published by the node itself (its own certificate on a
//! worker, in-process on a coordinator) and recorded through Raft (`SetNodeBench`).

use cortex_model::command::Command;
use cortex_model::node::BenchSummary;
use cortex_model::NodeId;

use super::{now_ms, ApiError, NodeApi};

/// Largest accepted summary in JSON (it has six numbers).
pub(super) const MAX_BENCH_JSON: usize = 4096;

impl NodeApi {
    /// Records `bench` as `node_id`'s summary (the caller is authenticated as that node).
    /// Figures must be finite and ≥ 0; an unchanged summary is not proposed again.
    pub async fn publish_bench(&self, node_id: NodeId, bench: BenchSummary) -> Result<(), ApiError> {
        bench.check().map_err(|e| ApiError::invalid("bench_json", e))?;
        let current = {
            let state = self.inner.sm.state();
            match state.nodes.get(&node_id) {
                Some(n) => n.bench.clone(),
                None => return Err(ApiError::NotFound(format!("no node with id {node_id}"))),
            }
        };
        if current.as_ref() == Some(&bench) {
            return Ok(());
        }
        self.write(Command::SetNodeBench {
            node_id,
            bench,
            at_ms: now_ms(),
        })
        .await
        .map(|_| ())
    }

    /// [`Self::publish_bench`] from the JSON a node sent (`bench_json`, named in errors).
    pub async fn publish_bench_json(&self, node_id: NodeId, json: &str) -> Result<(), ApiError> {
        let bench = super::join::parse_bench("bench_json", json)?;
        self.publish_bench(node_id, bench).await
    }
}
