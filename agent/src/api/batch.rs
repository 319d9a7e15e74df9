//! Group commit: writes that arrive while a proposal is in flight are proposed together as one
//! `Command::Batch` entry, so concurrent clients share one fsynced append instead of queueing
//! behind each other's. A lone writer still gets its own entry right away.

use cortex_model::command::{Command, Outcome};
use tokio::sync::{mpsc, oneshot};

use super::{ApiError, NodeApi};

/// The most commands one entry carries (bounds entry size and apply time).
const MAX_BATCH: usize = 256;

pub type Reply = oneshot::Sender<Result<Outcome, ApiError>>;
pub type Sender = mpsc::Sender<(Command, Reply)>;
pub type Receiver = mpsc::Receiver<(Command, Reply)>;

pub fn channel() -> (Sender, Receiver) {
    mpsc::channel(4096)
}

/// Runs until every `NodeApi` clone (and so every sender) is gone.
pub async fn run(api: NodeApi, mut rx: Receiver) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        // A caller that went away (client disconnected, request cancelled) no longer wants
        // its write: it was never proposed, so dropping it here is exact. Without this a write
        // queued behind a stuck proposal (an isolated leader) would run minutes later.
        batch.retain(|(_, reply)| !reply.is_closed());
        if batch.is_empty() {
            continue;
        }
        if batch.len() == 1 {
            let Some((cmd, reply)) = batch.pop() else { continue };
            let _ = reply.send(api.propose(cmd).await);
            continue;
        }
        let (commands, replies): (Vec<Command>, Vec<Reply>) = batch.into_iter().unzip();
        match api.propose(Command::Batch { commands }).await {
            Ok(Outcome::Batch { outcomes }) if outcomes.len() == replies.len() => {
                for (outcome, reply) in outcomes.into_iter().zip(replies) {
                    let _ = reply.send(match outcome {
                        Outcome::Rejected { reason } => Err(ApiError::Rejected(reason)),
                        other => Ok(other),
                    });
                }
            }
            Ok(other) => {
                let msg = format!(
                    "a batch of {} writes got an unexpected outcome {other:?}",
                    replies.len()
                );
                for reply in replies {
                    let _ = reply.send(Err(ApiError::Internal(msg.clone())));
                }
            }
            Err(e) => {
                let msg = e.to_string();
                for reply in replies {
                    let _ = reply.send(Err(match &e {
                        ApiError::Unavailable(_) => ApiError::Unavailable(msg.clone()),
                        _ => ApiError::Internal(msg.clone()),
                    }));
                }
            }
        }
    }
}
