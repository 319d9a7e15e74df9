//! Waiting inside a tool call (`wait_seconds`): look at the state after every applied change
//! (or poll, over gRPC), tell the client how it goes with progress notifications when it gave
//! a progress token, and stop at the end, at the deadline, or when the client cancels.

use std::future::Future;
use std::time::{Duration, Instant};

use rmcp::model::{ProgressNotificationParam, ProgressToken};
use rmcp::service::Peer;
use rmcp::RoleServer;
use tokio_util::sync::CancellationToken;

use super::backend::Backend;
use super::error::ToolResult;

/// How often progress is reported while nothing changes.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// Where progress notifications go: the client's token for this request.
pub struct Progress {
    pub peer: Peer<RoleServer>,
    pub token: ProgressToken,
}

/// What a look at the state found.
pub struct Look<T> {
    pub value: T,
    pub done: bool,
    /// One line for the progress notification, e.g. "running on node 3 (attempt 1)".
    pub message: String,
}

/// Looks until `done` or `wait` has passed; returns the last look.
pub async fn until<T, F, Fut>(
    backend: &Backend,
    progress: Option<&Progress>,
    cancelled: &CancellationToken,
    wait: Duration,
    mut look: F,
) -> ToolResult<Look<T>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ToolResult<Look<T>>>,
{
    let start = Instant::now();
    let deadline = start + wait;
    // Subscribed before the first look, so no change between the two is missed.
    let mut changes = backend.changes();
    let mut said = String::new();
    let mut said_at = start;
    loop {
        let l = look().await?;
        let now = Instant::now();
        if l.done || now >= deadline || cancelled.is_cancelled() {
            return Ok(l);
        }
        if let Some(p) = progress {
            if l.message != said || now.duration_since(said_at) >= PROGRESS_EVERY {
                let elapsed = now.duration_since(start).as_secs_f64();
                let note = ProgressNotificationParam::new(p.token.clone(), elapsed)
                    .with_total(wait.as_secs_f64())
                    .with_message(format!("{} ({elapsed:.0}s)", l.message));
                // A client that went away is noticed through `cancelled`; progress is best effort.
                let _ = p.peer.notify_progress(note).await;
                said = l.message;
                said_at = now;
            }
        }
        let left = deadline
            .saturating_duration_since(now)
            .min(Duration::from_secs(1));
        tokio::select! {
            () = changes.next(left) => {}
            () = cancelled.cancelled() => {}
        }
    }
}

/// `wait_seconds` as a duration: capped, and `None` for "do not wait".
pub fn seconds(wait: Option<u32>) -> Option<Duration> {
    match wait {
        None | Some(0) => None,
        Some(s) => Some(Duration::from_secs(u64::from(
            s.min(super::args::MAX_WAIT_SECONDS),
        ))),
    }
}
