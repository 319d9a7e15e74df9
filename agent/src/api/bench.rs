//! A node's self-benchmark on its record: the summary placement uses and the full report
//! (published by the node itself: its own certificate on a worker, in-process on a
//! coordinator; recorded through Raft with `SetNodeBench`), and requests to measure again
//! (`RequestBench`, scope operate), which the node sees in its heartbeat answer.

use cortex_model::command::Command;
use cortex_model::node::{check_bench_report, BenchRequest, BenchSummary, NodeRecord, NodeState};
use cortex_model::token::Scope;
use cortex_model::{NodeId, UnixMillis};

use super::{now_ms, ApiError, Caller, NodeApi};

/// Largest accepted summary in JSON (it has six numbers).
pub(super) const MAX_BENCH_JSON: usize = 4096;

/// What a node publishes after a run.
#[derive(Debug, Clone, Default)]
pub struct Published {
    /// The summary; replaced by the report's own figures when a report comes with it.
    pub bench: BenchSummary,
    /// The full report (`cortex bench -o json`).
    pub report: Option<cortex_bench::Report>,
    /// The request this run answers (its `requested_at_ms`).
    pub answers: Option<UnixMillis>,
}

impl NodeApi {
    /// Records what `node_id` measured (the caller is authenticated as that node). Figures
    /// must be finite and ≥ 0; a report must be this version's format and fit the bound; the
    /// summary of a report is taken from the report itself, so the two always agree. An
    /// unchanged result that answers nothing is not proposed again.
    pub async fn publish_bench(&self, node_id: NodeId, p: Published) -> Result<(), ApiError> {
        let (bench, report) = match &p.report {
            Some(r) => {
                if r.format != cortex_bench::FORMAT {
                    return Err(ApiError::invalid(
                        "report_json",
                        format!("format must be {}, got {:?}", cortex_bench::FORMAT, r.format),
                    ));
                }
                let v =
                    serde_json::to_value(r).map_err(|e| ApiError::invalid("report_json", e.to_string()))?;
                check_bench_report(&v).map_err(|e| ApiError::invalid("report_json", e))?;
                (crate::selfbench::summary(r), Some(v))
            }
            None => (p.bench, None),
        };
        bench.check().map_err(|e| ApiError::invalid("bench_json", e))?;
        let unchanged = {
            let state = self.inner.sm.state();
            match state.nodes.get(&node_id) {
                Some(n) => n.bench.as_ref() == Some(&bench) && n.bench_report == report,
                None => return Err(ApiError::NotFound(format!("no node with id {node_id}"))),
            }
        };
        if unchanged && p.answers.is_none() {
            return Ok(());
        }
        self.write(Command::SetNodeBench {
            node_id,
            bench,
            report,
            answers: p.answers,
            at_ms: now_ms(),
        })
        .await
        .map(|_| ())
    }

    /// [`Self::publish_bench`] from the JSON a node sent (`bench_json`, `report_json`; named
    /// in errors). An empty `report_json` means the node sent only the summary.
    pub async fn publish_bench_json(
        &self,
        node_id: NodeId,
        bench_json: &str,
        report_json: &str,
        answers: Option<UnixMillis>,
    ) -> Result<(), ApiError> {
        let bench = super::join::parse_bench("bench_json", bench_json)?;
        let report = parse_report(report_json)?;
        self.publish_bench(
            node_id,
            Published {
                bench,
                report,
                answers,
            },
        )
        .await
    }

    /// Asks node `key` (id or name) to run its benchmark again (scope operate). Recorded in
    /// Raft, so it survives a leader change; the node sees it in its next heartbeat answer and
    /// publishes the run with `answers` set, which clears the request. Asking again while a
    /// request is pending replaces it.
    pub async fn request_bench(
        &self,
        caller: &Caller,
        key: &str,
        quick: bool,
    ) -> Result<NodeRecord, ApiError> {
        caller.require(Scope::Operate)?;
        let node = self.get_node(key)?;
        if !matches!(
            node.state,
            NodeState::Ready | NodeState::Suspect | NodeState::Draining
        ) {
            return Err(ApiError::Rejected(format!(
                "node {} is {}: only a ready, suspect or draining node can run its benchmark",
                node.name,
                node.state.as_str()
            )));
        }
        let outcome = self
            .write(Command::RequestBench {
                node_id: node.id,
                request: BenchRequest {
                    requested_at_ms: now_ms(),
                    quick,
                    by: Some(caller.token_id.clone()),
                },
            })
            .await?;
        match outcome {
            cortex_model::command::Outcome::Node { node } => Ok(*node),
            _ => self.get_node(key),
        }
    }

    /// The request `node_id` has not answered yet, for its heartbeat answer.
    pub fn pending_bench_request(&self, node_id: NodeId) -> Option<BenchRequest> {
        self.inner
            .sm
            .state()
            .nodes
            .get(&node_id)
            .and_then(|n| n.bench_request.clone())
    }
}

/// A full report from the wire: "" is none; otherwise bounded, this version's typed format.
fn parse_report(json: &str) -> Result<Option<cortex_bench::Report>, ApiError> {
    if json.is_empty() {
        return Ok(None);
    }
    if json.len() > cortex_model::node::MAX_BENCH_REPORT_BYTES {
        return Err(ApiError::invalid(
            "report_json",
            format!(
                "must be at most {} bytes",
                cortex_model::node::MAX_BENCH_REPORT_BYTES
            ),
        ));
    }
    serde_json::from_str(json)
        .map(Some)
        .map_err(|e| ApiError::invalid("report_json", format!("is not a cortex-bench report: {e}")))
}
