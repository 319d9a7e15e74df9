//! The one producer behind every open status page on this coordinator.
//!
//! It wakes on each applied Raft entry (coalesced: at most one frame per `MIN_GAP`) and once a
//! second for heartbeats, reads the state through `NodeApi`, and compares it with what it sent
//! last: only what changed goes out, as one pre-encoded SSE frame shared (`Bytes`, no copy) by
//! every client through a broadcast channel. A client that connects, or falls behind, gets a
//! full snapshot built from the same cache, once per sequence number however many ask.
//!
//! Frames carry `seq` and `base` (the seq they apply on top of): a client applies a diff only
//! on the snapshot it came from, so a gap can never leave a page quietly wrong.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use cortex_model::task::TaskState;
use cortex_model::view::ClusterStatus;
use cortex_model::NodeId;
use serde_json::{json, Map, Value};
use tokio::sync::{broadcast, Mutex};
use tokio_util::sync::CancellationToken;

use super::view;
use crate::api::tasks::TaskFilter;
use crate::api::{now_ms, NodeApi};

/// Fewest milliseconds between two frames caused by Raft changes.
pub const MIN_GAP: Duration = Duration::from_millis(50);
/// How often heartbeats (not Raft entries) are looked at.
pub const LIVE_EVERY: Duration = Duration::from_secs(1);
/// How often a CPU/memory sample goes into the history, and how many are kept (10 minutes).
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);
pub const SAMPLES_KEPT: usize = 120;
/// Events in a full snapshot; tasks in the recent list.
const EVENTS_KEPT: usize = 200;
const RECENT_TASKS: u32 = 50;
/// Frames a slow client may be behind before it is re-sent a full snapshot.
const CHANNEL_DEPTH: usize = 32;

/// One SSE frame, encoded once for all clients.
#[derive(Debug)]
pub struct Frame {
    pub seq: u64,
    /// The seq this diff applies on top of (a full snapshot: its own seq).
    pub base: u64,
    pub bytes: Bytes,
}

/// The last heartbeat figures of a node.
#[derive(Clone, Copy)]
struct Live {
    at: Instant,
    cpu: f64,
    mem: f64,
    load: f64,
}

impl Live {
    fn json(&self) -> Value {
        json!([
            self.at.elapsed().as_millis() as u64,
            self.cpu,
            self.mem,
            self.load
        ])
    }
}

/// Per-node CPU/memory samples: `(unix ms, cpu %, memory used %)`, oldest first.
pub type Series = VecDeque<(u64, f64, f64)>;

#[derive(Default)]
struct Cache {
    seq: u64,
    cluster: String,
    nodes: BTreeMap<NodeId, String>,
    live: HashMap<NodeId, Live>,
    tasks: String,
    events: VecDeque<String>,
    last_event_seq: u64,
    /// Cluster-wide samples `[unix ms, mean cpu %, mean memory %, nodes]`, encoded.
    series: VecDeque<String>,
    last_sample: Option<Instant>,
    last_step: Option<Instant>,
    /// The applied index, leader and voters the last full step saw: while they stay the same,
    /// no node record, task or event can have changed, and a step only reads heartbeats.
    applied: u64,
    leader: Option<NodeId>,
    voters: Vec<NodeId>,
    health: (&'static str, Vec<String>),
    /// Every node's id and memory total (for memory %), from the last full step.
    mem_totals: Vec<(NodeId, u64)>,
    full: Option<Arc<Frame>>,
}

pub struct Feed {
    api: NodeApi,
    cache: Mutex<Cache>,
    diffs: broadcast::Sender<Arc<Frame>>,
    history: StdMutex<HashMap<NodeId, Series>>,
    started_ms: u64,
}

fn sse(kind: &str, seq: u64, data: &str) -> Bytes {
    Bytes::from(format!("event: {kind}\nid: {seq}\ndata: {data}\n\n"))
}

impl Feed {
    /// Starts the producer; it stops when `shutdown` fires.
    pub fn start(api: NodeApi, shutdown: &CancellationToken) -> Arc<Feed> {
        let (diffs, _) = broadcast::channel(CHANNEL_DEPTH);
        let feed = Arc::new(Feed {
            api,
            cache: Mutex::new(Cache::default()),
            diffs,
            history: StdMutex::new(HashMap::new()),
            started_ms: now_ms(),
        });
        tokio::spawn(run(feed.clone(), shutdown.child_token()));
        feed
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Frame>> {
        self.diffs.subscribe()
    }

    /// Open event streams on this coordinator.
    pub fn clients(&self) -> usize {
        self.diffs.receiver_count()
    }

    /// A node's CPU/memory samples over the last minutes.
    pub fn node_history(&self, id: NodeId) -> Series {
        self.history
            .lock()
            .ok()
            .and_then(|h| h.get(&id).cloned())
            .unwrap_or_default()
    }

    /// The whole page's data as one frame (built at most once per seq). Refreshes first if the
    /// producer has not looked for a while (it only runs often while someone watches).
    pub async fn full(&self) -> Arc<Frame> {
        let mut c = self.cache.lock().await;
        if self.stale(&c) {
            self.step_locked(&mut c).await;
        }
        if let Some(f) = c.full.as_ref().filter(|f| f.seq == c.seq) {
            return f.clone();
        }
        let data = full_json(&c, now_ms());
        let frame = Arc::new(Frame {
            seq: c.seq,
            base: c.seq,
            bytes: sse("snapshot", c.seq, &data),
        });
        c.full = Some(frame.clone());
        frame
    }

    /// The full snapshot as plain JSON (for `/ui/snapshot`).
    pub async fn snapshot_json(&self) -> String {
        let mut c = self.cache.lock().await;
        if self.stale(&c) {
            self.step_locked(&mut c).await;
        }
        full_json(&c, now_ms())
    }

    /// Whether the cache misses an applied entry or a heartbeat round (without a viewer the
    /// producer skips Raft changes and runs only on its timer).
    fn stale(&self, c: &Cache) -> bool {
        c.last_step.is_none_or(|t| t.elapsed() > LIVE_EVERY) || *self.api.subscribe().borrow() != c.applied
    }

    async fn step(&self) {
        let mut c = self.cache.lock().await;
        self.step_locked(&mut c).await;
    }

    /// Reads the state, updates the cache and broadcasts what changed (if anything did).
    async fn step_locked(&self, c: &mut Cache) {
        let api = &self.api;
        let applied = *api.subscribe().borrow();
        let status = api.status().await;
        let now = now_ms();
        let mut diff = Map::new();
        let full = c.last_step.is_none()
            || applied != c.applied
            || status.leader_id != c.leader
            || status.voters != c.voters;
        c.last_step = Some(Instant::now());
        if full {
            self.read_state(c, &status, &mut diff);
            c.applied = applied;
            c.leader = status.leader_id;
            c.voters = status.voters.clone();
        }
        let cluster = view::cluster(&status, &c.health, self.started_ms);
        let cluster_s = cluster.to_string();
        if cluster_s != c.cluster {
            diff.insert("cluster".into(), cluster);
            c.cluster = cluster_s;
        }
        let mut live_changed = Map::new();
        for &(id, total) in &c.mem_totals {
            if let Some((at, r)) = view::live(api.liveness(), id, total) {
                if c.live.get(&id).map(|l| l.at) != Some(at) {
                    let l = Live {
                        at,
                        cpu: r.cpu,
                        mem: r.mem,
                        load: r.load,
                    };
                    live_changed.insert(id.to_string(), l.json());
                    c.live.insert(id, l);
                }
            }
        }
        if !live_changed.is_empty() {
            diff.insert("live".into(), Value::Object(live_changed));
        }
        if c.last_sample.is_none_or(|t| t.elapsed() >= SAMPLE_EVERY) {
            c.last_sample = Some(Instant::now());
            if let Some(point) = self.sample(c, now) {
                diff.insert("series".into(), point.clone());
                c.series.push_back(point.to_string());
                if c.series.len() > SAMPLES_KEPT {
                    c.series.pop_front();
                }
            }
        }
        if diff.is_empty() {
            return;
        }
        let base = c.seq;
        c.seq += 1;
        diff.insert("seq".into(), json!(c.seq));
        diff.insert("base".into(), json!(base));
        diff.insert("server_ms".into(), json!(now));
        let data = Value::Object(diff).to_string();
        // No open page: nobody to send to (the cache still moved on).
        let _ = self.diffs.send(Arc::new(Frame {
            seq: c.seq,
            base,
            bytes: sse("diff", c.seq, &data),
        }));
    }

    /// The replicated part: node records, tasks, events (only after something was applied).
    fn read_state(&self, c: &mut Cache, status: &ClusterStatus, diff: &mut Map<String, Value>) {
        let api = &self.api;
        let nodes = api.list_nodes();
        let active = api.list_tasks(&TaskFilter {
            states: vec![TaskState::Placed, TaskState::Running],
            limit: 1000,
            ..Default::default()
        });
        let recent = api.list_tasks(&TaskFilter {
            limit: RECENT_TASKS,
            ..Default::default()
        });
        c.health = view::health(status, &nodes);
        c.mem_totals = nodes
            .iter()
            .map(|n| (n.id, n.inventory.memory.total_bytes))
            .collect();

        let running = view::running_per_node(&active);
        let mut changed = Vec::new();
        let mut seen = std::collections::HashSet::with_capacity(nodes.len());
        for n in &nodes {
            seen.insert(n.id);
            let v = view::node(
                n,
                running.get(&n.id).copied().unwrap_or(0),
                &status.voters,
                status.leader_id,
            );
            let s = v.to_string();
            if c.nodes.get(&n.id) != Some(&s) {
                c.nodes.insert(n.id, s);
                changed.push(v);
            }
        }
        let removed: Vec<String> = c
            .nodes
            .keys()
            .filter(|id| !seen.contains(id))
            .map(|id| id.to_string())
            .collect();
        c.nodes.retain(|id, _| seen.contains(id));
        c.live.retain(|id, _| seen.contains(id));
        if !changed.is_empty() {
            diff.insert("nodes".into(), Value::Array(changed));
        }
        if !removed.is_empty() {
            diff.insert("removed".into(), json!(removed));
        }

        let names: HashMap<NodeId, String> = nodes.iter().map(|n| (n.id, n.name.clone())).collect();
        let tasks = json!({
            "recent": recent.iter().map(|t| view::task(t, &names)).collect::<Vec<_>>(),
            "active": active.len(),
        });
        let tasks_s = tasks.to_string();
        if tasks_s != c.tasks {
            diff.insert("tasks".into(), tasks);
            c.tasks = tasks_s;
        }

        let first = c.last_event_seq == 0;
        let new_events = api.events(c.last_event_seq, if first { usize::MAX } else { 1000 });
        if let Some(last) = new_events.last() {
            c.last_event_seq = last.seq;
        }
        let skip = new_events.len().saturating_sub(EVENTS_KEPT);
        let new_events: Vec<Value> = new_events.iter().skip(skip).map(view::event).collect();
        for e in &new_events {
            c.events.push_back(e.to_string());
            if c.events.len() > EVENTS_KEPT {
                c.events.pop_front();
            }
        }
        if !new_events.is_empty() {
            diff.insert("events".into(), Value::Array(new_events));
        }
    }

    /// Takes a CPU/memory sample of every node heard from recently: into each node's history,
    /// and the cluster mean as the returned point.
    fn sample(&self, c: &Cache, now: u64) -> Option<Value> {
        let fresh: Vec<(NodeId, Live)> = c
            .live
            .iter()
            .filter(|(_, l)| l.at.elapsed() < 3 * SAMPLE_EVERY)
            .map(|(id, l)| (*id, *l))
            .collect();
        if let Ok(mut h) = self.history.lock() {
            h.retain(|id, _| c.nodes.contains_key(id));
            for (id, l) in &fresh {
                let s = h.entry(*id).or_default();
                s.push_back((now, l.cpu, l.mem));
                if s.len() > SAMPLES_KEPT {
                    s.pop_front();
                }
            }
        }
        if fresh.is_empty() {
            return None;
        }
        let n = fresh.len() as f64;
        let cpu = fresh.iter().map(|(_, l)| l.cpu).sum::<f64>() / n;
        let mem = fresh.iter().map(|(_, l)| l.mem).sum::<f64>() / n;
        Some(json!([
            now,
            (cpu * 10.0).round() / 10.0,
            (mem * 10.0).round() / 10.0,
            fresh.len()
        ]))
    }
}

/// The full snapshot, assembled from the cached encodings (no re-serialisation of nodes).
fn full_json(c: &Cache, now: u64) -> String {
    let mut s = String::with_capacity(256 + c.nodes.values().map(|n| n.len() + 1).sum::<usize>());
    let _ = write!(
        s,
        r#"{{"seq":{},"base":{},"server_ms":{},"cluster":{},"nodes":["#,
        c.seq,
        c.seq,
        now,
        if c.cluster.is_empty() { "null" } else { &c.cluster }
    );
    join_into(&mut s, c.nodes.values());
    s.push_str(r#"],"live":{"#);
    for (i, (id, l)) in c.live.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, r#""{id}":{}"#, l.json());
    }
    let _ = write!(
        s,
        r#"}},"tasks":{},"events":["#,
        if c.tasks.is_empty() { "null" } else { &c.tasks }
    );
    join_into(&mut s, c.events.iter());
    s.push_str(r#"],"series":["#);
    join_into(&mut s, c.series.iter());
    s.push_str("]}");
    s
}

fn join_into<'a>(s: &mut String, items: impl Iterator<Item = &'a String>) {
    for (i, item) in items.enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(item);
    }
}

/// The producer loop: a step after each burst of applied entries (at most one per `MIN_GAP`)
/// and once per `LIVE_EVERY` for heartbeats. Without a viewer only the timer runs it (which
/// keeps the CPU/memory history going).
async fn run(feed: Arc<Feed>, shutdown: CancellationToken) {
    let mut applied = feed.api.subscribe();
    let mut tick = tokio::time::interval(LIVE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last = Instant::now();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            r = applied.changed() => {
                if r.is_err() {
                    return;
                }
                if feed.clients() == 0 {
                    continue;
                }
                let since = last.elapsed();
                if since < MIN_GAP {
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(MIN_GAP - since) => {}
                    }
                }
                applied.borrow_and_update();
            }
            _ = tick.tick() => {}
        }
        feed.step().await;
        last = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_snapshot_is_valid_json_even_when_empty() {
        let c = Cache::default();
        let v: Value = serde_json::from_str(&full_json(&c, 5)).expect("json");
        assert_eq!(v["seq"], 0);
        assert!(v["nodes"].as_array().is_some_and(Vec::is_empty));
        let mut c = Cache {
            cluster: r#"{"term":3}"#.into(),
            tasks: r#"{"recent":[],"active":0}"#.into(),
            ..Default::default()
        };
        c.nodes.insert(1, r#"{"id":"1"}"#.into());
        c.nodes.insert(2, r#"{"id":"2"}"#.into());
        c.events.push_back(r#"{"seq":1}"#.into());
        c.live.insert(
            2,
            Live {
                at: Instant::now(),
                cpu: 1.5,
                mem: 20.0,
                load: 0.1,
            },
        );
        let v: Value = serde_json::from_str(&full_json(&c, 5)).expect("json");
        assert_eq!(v["cluster"]["term"], 3);
        assert_eq!(v["nodes"][1]["id"], "2");
        assert_eq!(v["live"]["2"][1], 1.5);
        assert_eq!(v["events"][0]["seq"], 1);
    }

    #[test]
    fn frames_are_single_sse_events() {
        let b = sse("diff", 7, r#"{"a":1}"#);
        assert_eq!(&b[..], b"event: diff\nid: 7\ndata: {\"a\":1}\n\n");
    }
}
