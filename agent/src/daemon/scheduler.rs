//! The leader's scheduler: whenever the applied state changes (or every 200 ms, for retry
//! backoffs), it places runnable pending tasks and proposes the placements as one entry.
//! Apply re-checks each placement, so a scheduler that lost leadership mid-pass can propose
//! nothing harmful. Only the leader runs a pass; followers idle.

use std::time::Duration;

use cortex_model::command::{Command, Outcome};
use tokio_util::sync::CancellationToken;

use crate::api::{now_ms, NodeApi};

/// Most placements proposed in one entry.
const MAX_PER_PASS: usize = 512;

pub async fn run(api: NodeApi, shutdown: CancellationToken) {
    let mut changes = api.subscribe();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::timeout(Duration::from_millis(200), changes.changed()) => {}
        }
        if api.leader().0 != Some(api.node_id()) {
            continue;
        }
        let started = std::time::Instant::now();
        let placements = api.plan_placements(MAX_PER_PASS);
        if placements.is_empty() {
            continue;
        }
        crate::metrics::global().observe_placement("scheduler", started.elapsed().as_secs_f64());
        let n = placements.len();
        match api
            .write(Command::PlaceTasks {
                placements,
                at_ms: now_ms(),
            })
            .await
        {
            Ok(Outcome::Placed(p)) => {
                if !p.refused.is_empty() {
                    tracing::debug!(
                        placed = p.placed.len(),
                        refused = p.refused.len(),
                        "placements refused by apply: {:?}",
                        p.refused
                    );
                }
            }
            Ok(other) => tracing::warn!("unexpected outcome for {n} placements: {other:?}"),
            Err(e) => {
                tracing::debug!("could not propose {n} placements: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
