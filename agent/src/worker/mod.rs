//! The worker: runs on every node (coordinators included) and keeps the attempts running on
//! this node equal to the attempts the cluster assigned to it.
//!
//! Invariants:
//! - an attempt runs at most once on this node: a finished attempt is remembered until the
//!   cluster stops assigning it, so a slightly stale assignment set cannot start it again;
//! - an attempt the cluster no longer assigns here (cancelled, re-placed after this node was
//!   declared down, a stale fencing number) is killed;
//! - a node that cannot reach any coordinator for `fence_after` kills everything it runs
//!   (self-fencing), before the leader declares it DOWN and re-places its work;
//! - output reports are sent before the attempt's Finished report, in order.

mod attempt;
mod link;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use cortex_exec::Executors;
use cortex_model::task::TaskReport;
use cortex_model::NodeId;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::api::tasks::Assignment;
pub use link::{Link, Remote};

/// This node's executors, working under `<data_dir>/exec`, its attempts' cgroups under
/// `cortex-<node id>`.
pub fn executors(config: &crate::config::Config, node_id: NodeId) -> anyhow::Result<Executors> {
    let parent = cgroup_parent(node_id);
    let config = cortex_exec::ExecConfig {
        work_root: config.data_dir.join("exec"),
        podman_socket: None,
        scratch_root: cortex_exec::default_scratch_root(&parent),
        cgroup_parent: parent,
        users: cortex_exec::UserPolicy {
            default_user: Some(config.tasks.default_user.clone()).filter(|u| !u.is_empty()),
            allow_root: config.tasks.allow_root,
        },
    };
    Executors::new(config).map_err(|e| anyhow::anyhow!("setting up the executors: {e}"))
}

/// A node kills its attempts when it has heard nothing for this long: half-way between
/// SUSPECT and DOWN, so it has stopped before the leader re-places its work.
pub fn fence_after(c: &crate::config::ClusterConfig) -> Duration {
    let ms = c.suspect_after_ms + (c.down_after_ms.saturating_sub(c.suspect_after_ms)) / 2;
    Duration::from_millis(ms)
}

/// Publishes the images of this node's Podman store whenever they change (checked every
/// 10 s). Nothing is started for a node whose store was never used: `cortex image import`
/// (or a Podman task) creates it.
async fn images_loop(executors: Arc<Executors>, link: Link, node_id: NodeId, shutdown: CancellationToken) {
    let mut published: Option<Vec<String>> = None;
    loop {
        if cortex_exec::podman_store_exists(executors.config()) {
            match cortex_exec::list_images(executors.config()).await {
                Ok(mut images) => {
                    images.sort();
                    if published.as_ref() != Some(&images) {
                        match link.publish_images(node_id, images.clone()).await {
                            Ok(()) => published = Some(images),
                            Err(e) => tracing::debug!("could not publish this node's images: {e}"),
                        }
                    }
                }
                Err(e) => tracing::debug!("could not list this node's images: {e}"),
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(10)) => {}
        }
    }
}

fn cgroup_parent(node_id: NodeId) -> String {
    format!("cortex-{node_id:016x}")
}

struct Running {
    attempt: u32,
    cancel: CancellationToken,
    handle: tokio::task::JoinHandle<()>,
}

pub struct Worker {
    pub node_id: NodeId,
    pub executors: Arc<Executors>,
    pub link: Link,
    /// Kill everything after this long without contact with a coordinator.
    pub fence_after: Duration,
    /// This node's heartbeats: the contact the self-fencing goes by.
    pub contact: crate::agent::heartbeat::Health,
}

impl Worker {
    pub async fn run(self, shutdown: CancellationToken) {
        // Attempts left by a previous run of this node (a crash, kill -9) are not ours to keep:
        // the cluster has declared them lost or will, and they must not run twice.
        match cortex_exec::cgroup::kill_stale_in(&cgroup_parent(self.node_id), &HashSet::new()).await {
            Ok(killed) if !killed.is_empty() => {
                tracing::warn!(
                    "killed {} attempt(s) left by a previous run: {killed:?}",
                    killed.len()
                )
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("could not look for attempts left by a previous run: {e}"),
        }
        tokio::spawn(images_loop(
            self.executors.clone(),
            self.link.clone(),
            self.node_id,
            shutdown.clone(),
        ));
        let (report_tx, report_rx) = mpsc::channel::<TaskReport>(1024);
        let (stale_tx, mut stale_rx) = mpsc::unbounded_channel::<(String, u32)>();
        tokio::spawn(link::report_loop(
            self.link.clone(),
            self.node_id,
            report_rx,
            stale_tx,
            shutdown.clone(),
        ));
        let mut assignments = self.link.assignments(self.node_id, shutdown.clone());
        let mut running: HashMap<String, Running> = HashMap::new();
        let mut finished: HashSet<(String, u32)> = HashSet::new();
        loop {
            let set: Option<Vec<Assignment>> = tokio::select! {
                _ = shutdown.cancelled() => break,
                s = assignments.recv() => match s {
                    Some(s) => Some(s),
                    None => break,
                },
                Some((task_id, attempt)) = stale_rx.recv() => {
                    if let Some(r) = running.get(&task_id) {
                        if r.attempt == attempt {
                            tracing::info!(task = %task_id, attempt, "the cluster refused this attempt's report (stale): killing it");
                            r.cancel.cancel();
                        }
                    }
                    None
                }
                _ = tokio::time::sleep(Duration::from_millis(250)) => None,
            };
            running.retain(|_, r| !r.handle.is_finished());
            match set {
                Some(set) => {
                    self.reconcile(set, &mut running, &mut finished, &report_tx);
                }
                None => {
                    if !running.is_empty() && self.since_contact() > self.fence_after {
                        tracing::warn!(
                            attempts = running.len(),
                            "no coordinator reachable for {:?}: killing every attempt on this node (self-fencing)",
                            self.fence_after
                        );
                        for r in running.values() {
                            r.cancel.cancel();
                        }
                    }
                }
            }
        }
        for r in running.values() {
            r.cancel.cancel();
        }
        for (_, r) in running {
            let _ = tokio::time::timeout(Duration::from_secs(3), r.handle).await;
        }
    }

    /// How long since this node last knew it was part of the cluster: its heartbeats'
    /// acknowledgement, or, on a coordinator that leads a multi-voter cluster (whose heartbeats
    /// go to itself), the time since a quorum last acknowledged its leadership — so a leader
    /// cut off in a minority fences itself like any other node.
    fn since_contact(&self) -> Duration {
        let beats = self.contact.since_contact();
        if let Link::Local(api) = &self.link {
            let m = api.raft().metrics().borrow().clone();
            let voters = m.membership_config.membership().voter_ids().count();
            if m.current_leader == Some(self.node_id) && voters > 1 {
                if let Some(ms) = m.millis_since_quorum_ack {
                    return Duration::from_millis(ms);
                }
            }
        }
        beats
    }

    fn reconcile(
        &self,
        set: Vec<Assignment>,
        running: &mut HashMap<String, Running>,
        finished: &mut HashSet<(String, u32)>,
        reports: &mpsc::Sender<TaskReport>,
    ) {
        let wanted: HashSet<(String, u32)> = set.iter().map(|a| (a.task_id.clone(), a.attempt)).collect();
        for (id, r) in running.iter() {
            if !wanted.contains(&(id.clone(), r.attempt)) {
                tracing::info!(task = %id, attempt = r.attempt, "no longer assigned here: killing it");
                r.cancel.cancel();
            }
        }
        // Forget finished attempts the cluster has stopped assigning.
        finished.retain(|k| wanted.contains(k));
        for a in set {
            let key = (a.task_id.clone(), a.attempt);
            if finished.contains(&key) {
                continue;
            }
            if let Some(r) = running.get(&a.task_id) {
                if r.attempt == a.attempt {
                    continue;
                }
                if !r.handle.is_finished() {
                    continue; // the old attempt is still being killed; start when it is gone
                }
            }
            let cancel = CancellationToken::new();
            finished.insert(key);
            let handle = tokio::spawn(attempt::run(
                self.executors.clone(),
                a.clone(),
                reports.clone(),
                cancel.clone(),
            ));
            running.insert(
                a.task_id.clone(),
                Running {
                    attempt: a.attempt,
                    cancel,
                    handle,
                },
            );
        }
    }
}
