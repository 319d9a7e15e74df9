//! Workloads across hosts: a coordinator and two workers, each in its own network namespace.
//! Fan-out with an aggregate status; a worker killed mid-task (LOST → re-placed elsewhere);
//! a partitioned worker whose late success report is refused (fencing).

use std::time::Duration;

use crate::harness::netns::Netns;
use crate::harness::{capable, eventually, is_root, Agent, Node};

struct Cluster {
    net: Netns,
    c1: Node,
    /// Workers on hosts 2 and 3.
    workers: Vec<Agent>,
}

fn start(sb: &std::path::Path) -> Option<Cluster> {
    if !capable(is_root(), "root (cgroups and namespaces for workloads)") {
        return None;
    }
    let net = Netns::new(3)?;
    let c1 = crate::cluster::first_coordinator_in(&net, sb);
    let token = c1
        .cli_ok(&["token", "create", "--auto-approve", "--uses", "2"])
        .trim()
        .to_string();
    let mut workers = Vec::new();
    for i in 2..=3 {
        let name = format!("w{i}");
        let mut a = Agent::start_in(
            Some(&net.name(i)),
            sb,
            &sb.join(&name),
            &["--token", &token, "--node-name", &name],
        );
        a.wait_approved(Duration::from_secs(30));
        c1.cli_ok(&["node", "label", &name, "pool=workers"]);
        workers.push(a);
    }
    Some(Cluster { net, c1, workers })
}

fn task(c1: &Node, id: &str) -> serde_json::Value {
    serde_json::from_str(&c1.cli_ok(&["-o", "json", "task", "show", id])).expect("task json")
}

fn node_ids(c1: &Node) -> std::collections::BTreeMap<String, u64> {
    let v: serde_json::Value =
        serde_json::from_str(&c1.cli_ok(&["-o", "json", "node", "list"])).expect("json");
    v["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| {
            (
                n["name"].as_str().unwrap_or("").to_string(),
                n["id"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

/// Waits until the task runs and returns the worker index (0 = w2, 1 = w3) it runs on.
fn running_on(c: &Cluster, id: &str) -> usize {
    let ids = node_ids(&c.c1);
    let node = eventually(Duration::from_secs(20), "the task running", || {
        let t = task(&c.c1, id);
        (t["state"] == "running").then(|| t["node_id"].as_u64()).flatten()
    });
    if node == ids["w2"] {
        0
    } else {
        assert_eq!(node, ids["w3"], "the task ran outside the pool");
        1
    }
}

#[test]
fn fan_out_runs_one_task_per_node_with_an_aggregate_status() {
    let sb = tempfile::tempdir().expect("tempdir");
    let Some(c) = start(sb.path()) else { return };
    let out = c.c1.cli(&[
        "-o",
        "json",
        "run",
        "--all",
        "--",
        "sh",
        "-c",
        "echo hello from $(hostname)",
    ]);
    assert!(
        out.status.success(),
        "{:?} {} {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let tasks = v["tasks"].as_array().expect("tasks");
    assert_eq!(tasks.len(), 3);
    let mut nodes: Vec<u64> = tasks
        .iter()
        .map(|t| t["attempts"][0]["node_id"].as_u64().unwrap_or(0))
        .collect();
    nodes.sort();
    nodes.dedup();
    assert_eq!(nodes.len(), 3, "one task per node: {tasks:?}");
    assert!(tasks.iter().all(|t| t["state"] == "succeeded"));
    let group = v["group"].as_str().expect("group");
    let list: serde_json::Value =
        serde_json::from_str(&c.c1.cli_ok(&["-o", "json", "task", "list", "--group", group])).expect("json");
    assert_eq!(list["tasks"].as_array().map(Vec::len), Some(3));

    // The table form prefixes each line with its node and ends with the aggregate.
    let out = c.c1.cli(&[
        "run",
        "--nodes",
        "2",
        "--label",
        "pool=workers",
        "--",
        "echo",
        "hi",
    ]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("[w2] hi") && stdout.contains("[w3] hi"),
        "{stdout}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("2/2 succeeded"));
}

#[test]
fn a_worker_killed_mid_task_loses_it_and_another_node_finishes_it() {
    let sb = tempfile::tempdir().expect("tempdir");
    let Some(mut c) = start(sb.path()) else { return };
    let id =
        c.c1.cli_ok(&[
            "run",
            "-d",
            "--label",
            "pool=workers",
            "--",
            "sh",
            "-c",
            "sleep 3; echo done",
        ])
        .trim()
        .to_string();
    let first = running_on(&c, &id);
    c.workers[first].kill9();
    let t = eventually(Duration::from_secs(30), "the task finished elsewhere", || {
        let t = task(&c.c1, &id);
        (t["state"] == "succeeded").then_some(t)
    });
    let attempts = t["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 2, "{t}");
    assert_eq!(attempts[0]["result"]["kind"], "lost", "{t}");
    assert_eq!(attempts[1]["attempt"], 2);
    assert_ne!(attempts[0]["node_id"], attempts[1]["node_id"]);
    let logs = c.c1.cli(&["task", "logs", &id]);
    assert!(String::from_utf8_lossy(&logs.stdout).contains("done"));
    assert!(String::from_utf8_lossy(&logs.stderr).contains("attempt 2"));
}

#[test]
fn a_partitioned_workers_late_success_is_refused() {
    let sb = tempfile::tempdir().expect("tempdir");
    let Some(c) = start(sb.path()) else { return };
    // Tasks run as nobody: the flag is in a directory that user can reach.
    let flag = crate::harness::shared_with_nobody(sb.path()).join("go");
    let script = format!(
        "while [ ! -e {f} ]; do sleep 0.05; done; echo finished",
        f = flag.display()
    );
    let id =
        c.c1.cli_ok(&["run", "-d", "--label", "pool=workers", "--", "sh", "-c", &script])
            .trim()
            .to_string();
    let first = running_on(&c, &id);
    let host = first + 2;
    c.net.partition(&[host]);
    // The attempt finishes at once, but its success cannot reach the cluster.
    std::fs::write(&flag, "").expect("flag");
    let t = eventually(
        Duration::from_secs(30),
        "the task re-placed and finished on the other worker",
        || {
            let t = task(&c.c1, &id);
            (t["state"] == "succeeded").then_some(t)
        },
    );
    assert_eq!(t["attempts"][0]["result"]["kind"], "lost", "{t}");
    c.net.heal();
    // The partitioned worker sends its stale success after the heal: refused.
    eventually(Duration::from_secs(30), "the stale report refused", || {
        c.workers[first]
            .stderr()
            .contains("refused reports for 1 stale attempt")
            .then_some(())
    });
    let after = task(&c.c1, &id);
    assert_eq!(
        after["attempts"], t["attempts"],
        "a stale report changed the task"
    );
    assert_eq!(after["attempts"][1]["attempt"], 2);
}
