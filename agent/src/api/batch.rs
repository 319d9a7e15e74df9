//! Group commit: writes that arrive while a proposal is in flight are proposed together as one
//! `Command::Batch` entry, so concurrent clients share one fsynced append instead of queueing
//! behind each other's. A lone writer still gets its own entry right away.
//!
//! Each entry costs the cluster far more than the writes in it (an fsync and an AppendEntries
//! round on every replica: ~2 ms of CPU across three coordinators, against ~45 µs per write,
//! measured on the 2-core bench VM). Proposing only what queued during the last proposal
//! splits N steady clients into two groups that alternate, each half the size it could be.
//! So after answering a batch the batcher waits, briefly, for the writers it just answered
//! to come back (see `Linger`), the way MySQL's group commit waits for
//! `binlog_group_commit_sync_no_delay_count` transactions.

use std::time::{Duration, Instant};

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

/// The longest the batcher waits for answered writers to come back.
const MAX_LINGER: Duration = Duration::from_millis(2);

/// How long to hold a batch open for writers expected back, and how many to expect.
///
/// Writers answered by the last proposal plus those that queued during it are the writers
/// known to be active; once they are all queued again (or the time is up) the batch goes.
/// A lone writer expects only itself, so it never waits; a drop in concurrency costs one
/// wait, after which the expectation follows the smaller batch.
#[derive(Debug, Clone, Copy, Default)]
struct Linger {
    expect: usize,
    wait: Duration,
}

impl Linger {
    /// After a proposal of `answered` writes that took `took`, with `queued` writes waiting.
    fn after(answered: usize, queued: usize, took: Duration) -> Linger {
        Linger {
            expect: (answered + queued).min(MAX_BATCH),
            // No longer than the proposal itself took: the wait at most doubles a write's
            // latency, and on a fast disk it shrinks with it. (Half of it was tried: fewer
            // writers came back in time, and more, smaller entries cost more CPU per write.)
            wait: took.min(MAX_LINGER),
        }
    }
}

/// Moves what is queued into `batch`, up to `MAX_BATCH`, without waiting.
fn drain(rx: &mut Receiver, batch: &mut Vec<(Command, Reply)>) {
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(item) => batch.push(item),
            Err(_) => break,
        }
    }
}

/// Waits until `batch` holds `expect` writes or `until` passes.
async fn gather(rx: &mut Receiver, batch: &mut Vec<(Command, Reply)>, expect: usize, until: Instant) {
    let deadline = tokio::time::sleep_until(until.into());
    tokio::pin!(deadline);
    while batch.len() < expect {
        tokio::select! {
            item = rx.recv() => match item {
                Some(item) => {
                    batch.push(item);
                    drain(rx, batch);
                }
                None => return,
            },
            () = &mut deadline => return,
        }
    }
}

/// Runs until every `NodeApi` clone (and so every sender) is gone.
pub async fn run(api: NodeApi, mut rx: Receiver) {
    let mut linger = Linger::default();
    let mut answered_at = Instant::now();
    let mut batch: Vec<(Command, Reply)> = Vec::new();
    loop {
        if batch.is_empty() {
            match rx.recv().await {
                Some(first) => batch.push(first),
                None => return,
            }
        }
        drain(&mut rx, &mut batch);
        if batch.len() < linger.expect {
            gather(&mut rx, &mut batch, linger.expect, answered_at + linger.wait).await;
        }
        // A caller that went away (client disconnected, request cancelled) no longer wants
        // its write: it was never proposed, so dropping it here is exact. Without this a write
        // queued behind a stuck proposal (an isolated leader) would run minutes later.
        batch.retain(|(_, reply)| !reply.is_closed());
        if batch.is_empty() {
            continue;
        }
        let started = Instant::now();
        let writes = std::mem::take(&mut batch);
        let answered = writes.len();
        let replies = propose(&api, writes).await;
        // What queued meanwhile came from other writers: none of the ones in this batch
        // can write again before it is answered.
        drain(&mut rx, &mut batch);
        linger = Linger::after(answered, batch.len(), started.elapsed());
        for (reply, result) in replies {
            let _ = reply.send(result);
        }
        answered_at = Instant::now();
    }
}

/// Proposes `batch` as one entry (a lone write as itself) and pairs each reply with its result.
async fn propose(api: &NodeApi, mut batch: Vec<(Command, Reply)>) -> Vec<(Reply, Result<Outcome, ApiError>)> {
    if batch.len() == 1 {
        let Some((cmd, reply)) = batch.pop() else {
            return Vec::new();
        };
        return vec![(reply, api.propose(cmd).await)];
    }
    let (commands, replies): (Vec<Command>, Vec<Reply>) = batch.into_iter().unzip();
    let results: Vec<Result<Outcome, ApiError>> = match api.propose(Command::Batch { commands }).await {
        Ok(Outcome::Batch { outcomes }) if outcomes.len() == replies.len() => outcomes
            .into_iter()
            .map(|outcome| match outcome {
                Outcome::Rejected { reason } => Err(ApiError::Rejected(reason)),
                other => Ok(other),
            })
            .collect(),
        Ok(other) => {
            let msg = format!(
                "a batch of {} writes got an unexpected outcome {other:?}",
                replies.len()
            );
            replies
                .iter()
                .map(|_| Err(ApiError::Internal(msg.clone())))
                .collect()
        }
        Err(e) => {
            let msg = e.to_string();
            replies
                .iter()
                .map(|_| match &e {
                    ApiError::Unavailable(_) => Err(ApiError::Unavailable(msg.clone())),
                    _ => Err(ApiError::Internal(msg.clone())),
                })
                .collect()
        }
    };
    replies.into_iter().zip(results).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(tx: &Sender) -> oneshot::Receiver<Result<Outcome, ApiError>> {
        let (reply, answer) = oneshot::channel();
        let cmd = Command::Batch { commands: vec![] };
        tx.try_send((cmd, reply)).expect("the channel has room");
        answer
    }

    #[test]
    fn the_expectation_is_everyone_just_answered_plus_everyone_who_queued() {
        let l = Linger::after(31, 33, Duration::from_millis(3));
        assert_eq!(l.expect, 64);
        assert_eq!(l.wait, Duration::from_millis(3).min(MAX_LINGER));
        assert_eq!(
            Linger::after(31, 33, Duration::from_micros(700)).wait,
            Duration::from_micros(700)
        );
        // Bounded: never more than one entry holds, never longer than MAX_LINGER.
        let l = Linger::after(300, 20, Duration::from_secs(1));
        assert_eq!((l.expect, l.wait), (MAX_BATCH, MAX_LINGER));
        // A lone writer expects only itself.
        assert_eq!(Linger::after(1, 0, Duration::from_millis(2)).expect, 1);
    }

    #[tokio::test]
    async fn a_lone_writer_is_not_held() {
        let (tx, mut rx) = channel();
        let _answer = write(&tx);
        let mut batch = Vec::new();
        drain(&mut rx, &mut batch);
        let started = Instant::now();
        gather(&mut rx, &mut batch, 1, started + Duration::from_secs(5)).await;
        assert_eq!(batch.len(), 1);
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn the_batch_goes_as_soon_as_the_expected_writers_are_back() {
        let (tx, mut rx) = channel();
        let mut answers = vec![write(&tx)];
        let mut batch = Vec::new();
        drain(&mut rx, &mut batch);
        let late = tx.clone();
        let senders = tokio::spawn(async move {
            let mut answers = Vec::new();
            for _ in 0..2 {
                tokio::time::sleep(Duration::from_millis(5)).await;
                answers.push(write(&late));
            }
            answers
        });
        let started = Instant::now();
        gather(&mut rx, &mut batch, 3, started + Duration::from_secs(5)).await;
        assert_eq!(batch.len(), 3, "all three writers in one batch");
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "it went when the third arrived, not at the deadline"
        );
        answers.extend(senders.await.expect("the senders ran"));
    }

    #[tokio::test]
    async fn writers_that_do_not_come_back_hold_the_batch_only_until_the_deadline() {
        let (tx, mut rx) = channel();
        let _answers = [write(&tx), write(&tx)];
        let mut batch = Vec::new();
        drain(&mut rx, &mut batch);
        let started = Instant::now();
        gather(&mut rx, &mut batch, 5, started + Duration::from_millis(50)).await;
        assert_eq!(batch.len(), 2);
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(50), "waited {waited:?}");
        assert!(waited < Duration::from_secs(2), "waited {waited:?}");
    }
}
