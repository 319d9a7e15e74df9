//! Drain and undrain: a drained node gets no new work, is still watched (it goes DOWN when it
//! dies, its running work is lost and re-placed), comes back DRAINING, not READY, and takes
//! work again only when an operator undrains it.

use std::time::Duration;

use crate::cluster::{fast_liveness, join_token, node_state};
use crate::harness::{capable, eventually, is_root, Agent, Node};

fn task_state(coord: &Node, id: &str) -> serde_json::Value {
    serde_json::from_str(&coord.cli_ok(&["-o", "json", "task", "show", id])).unwrap_or_default()
}

#[test]
fn a_drain_outlives_a_crash_and_only_undrain_ends_it() {
    let sb = tempfile::tempdir().expect("tempdir");
    let coord = Node::start_with(sb.path(), &sb.path().join("c1"), &[], fast_liveness);
    let token = join_token(&coord, &["--auto-approve"]);
    let data = sb.path().join("w1");
    let args = ["--token", token.as_str(), "--node-name", "w1"];
    let mut agent = Agent::start(sb.path(), &data, &args);
    let id = agent.wait_approved(Duration::from_secs(20))["node_id"]
        .as_u64()
        .expect("id");
    eventually(Duration::from_secs(10), "w1 ready", || {
        (node_state(&coord, id)? == "ready").then_some(())
    });

    // Undraining a node that is not drained says so; draining works by name.
    let out = coord.cli(&["node", "undrain", "w1"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not drained"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    coord.cli_ok(&["node", "drain", "w1"]);
    assert_eq!(node_state(&coord, id).as_deref(), Some("draining"));

    // Dead while drained: DOWN (it is still watched), and back as DRAINING, not READY.
    agent.kill9();
    eventually(
        Duration::from_secs(10),
        "a drained node that died is DOWN",
        || (node_state(&coord, id)? == "down").then_some(()),
    );
    let node: serde_json::Value =
        serde_json::from_str(&coord.cli_ok(&["-o", "json", "node", "show", "w1"])).expect("json");
    assert_eq!(node["drained"], true, "{node}");
    let mut back = Agent::start(sb.path(), &data, &args);
    back.wait_approved(Duration::from_secs(20));
    eventually(Duration::from_secs(10), "back, and still draining", || {
        (node_state(&coord, id)? == "draining").then_some(())
    });
    // Some heartbeats later it is still draining.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(node_state(&coord, id).as_deref(), Some("draining"));

    if !capable(is_root(), "root (cgroups for workloads)") {
        return;
    }
    // Work for w1 waits while it is drained, and runs once it is undrained.
    let task = coord
        .cli_ok(&["run", "-d", "--node", "w1", "--", "true"])
        .trim()
        .to_string();
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(task_state(&coord, &task)["state"], "pending");
    let out = coord.cli_ok(&["node", "undrain", "w1"]);
    assert!(out.contains("ready"), "{out}");
    eventually(Duration::from_secs(20), "the task ran on w1", || {
        let t = task_state(&coord, &task);
        (t["state"] == "succeeded").then_some(())
    });
    let events = coord.cli_ok(&["events"]);
    assert!(events.contains("node_undrained"), "{events}");
    drop(back);
}
