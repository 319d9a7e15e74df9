//! Durability: what a user wrote survives `kill -9`, and the cluster comes back as itself.

use std::time::Duration;

use crate::cluster::{fast_liveness, join_token, node_state};
use crate::harness::{eventually, http, Agent, Node};

/// A machine approved while its agent was down (a power cut between the approval and the
/// agent's next poll) collects its certificate when it comes back: same key, same node, no
/// second approval. Its new request is signed afresh, so its text differs from the first.
#[test]
fn a_node_approved_while_stopped_collects_its_certificate_on_restart() {
    let sb = tempfile::tempdir().expect("tempdir");
    let coord = Node::start_with(sb.path(), &sb.path().join("c1"), &[], fast_liveness);
    let token = join_token(&coord, &[]);
    let data = sb.path().join("w1");
    let args = ["--token", token.as_str(), "--node-name", "w1"];
    let mut agent = Agent::start(sb.path(), &data, &args);
    let code = agent.verification_code(Duration::from_secs(20));
    let show = || -> serde_json::Value {
        serde_json::from_str(&coord.cli_ok(&["-o", "json", "node", "show", "w1"])).unwrap_or_default()
    };
    let id = eventually(Duration::from_secs(20), "w1 pending", || {
        let v = show();
        (v["state"] == "pending").then(|| v["id"].as_u64()).flatten()
    });
    agent.kill9();
    coord.cli_ok(&["node", "approve", "w1"]);
    assert!(
        !data.join("node.crt").exists(),
        "the stopped agent cannot have its certificate yet"
    );

    let mut back = Agent::start(sb.path(), &data, &args);
    let info = back.wait_approved(Duration::from_secs(20));
    assert_eq!(info["node_id"].as_u64(), Some(id), "{info}");
    assert_eq!(
        back.verification_code(Duration::from_secs(5)),
        code,
        "the same key shows the same code"
    );
    assert!(data.join("node.crt").exists(), "the certificate was saved");
    eventually(Duration::from_secs(10), "w1 ready", || {
        (node_state(&coord, id)? == "ready").then_some(())
    });
    let events = coord.cli_ok(&["events"]);
    assert_eq!(
        events.matches("node_approved").count(),
        1,
        "one approval: {events}"
    );
    let nodes = coord.cli_ok(&["node", "list"]);
    assert_eq!(nodes.matches("w1").count(), 1, "{nodes}");

    // A different key under the same node id is still refused (a copied data dir, not the
    // same machine): the node is not handed to whoever knows its id and the token.
    back.kill9();
    std::fs::remove_file(data.join("node.key")).expect("remove node.key");
    std::fs::remove_file(data.join("node.crt")).expect("remove node.crt");
    let mut other = Agent::start(sb.path(), &data, &args);
    eventually(Duration::from_secs(20), "the different key refused", || {
        other.stderr().contains("with a different key").then_some(())
    });
    other.kill9();
}

#[test]
fn state_node_id_and_cluster_id_survive_kill_9() {
    let sandbox = tempfile::tempdir().expect("tempdir");
    let data = sandbox.path().join("data");

    let mut node = Node::start(sandbox.path(), &data);
    let node_id = node.node_id();
    let cluster_id = node.cluster_id();
    assert_eq!(node.info["cluster_created"], true);

    // Write through the real API: many label writes, each acknowledged only once durable.
    for i in 0..50 {
        node.cli_ok(&["node", "label", &node_id.to_string(), &format!("k{i}=v{i}")]);
    }
    node.cli_ok(&["node", "label", &node_id.to_string(), "k0-"]);
    node.kill9();

    let node = Node::start(sandbox.path(), &data);
    assert_eq!(
        node.info["cluster_created"], false,
        "a restart must reopen, not create"
    );
    assert_eq!(node.node_id(), node_id);
    assert_eq!(node.cluster_id(), cluster_id);

    let n = http::get(&node.http, &format!("/api/v1/nodes/{node_id}"))
        .expect("GET node")
        .json();
    let labels = n["labels"].as_object().expect("labels");
    assert!(
        labels.get("k0").is_none(),
        "the removal was acknowledged, so it must survive"
    );
    for i in 1..50 {
        assert_eq!(
            labels[&format!("k{i}")],
            format!("v{i}"),
            "label k{i} lost after kill -9"
        );
    }
    let cluster = http::get(&node.http, "/api/v1/cluster")
        .expect("GET cluster")
        .json();
    assert_eq!(cluster["cluster_id"], cluster_id);
    assert_eq!(cluster["nodes_total"], 1);
    assert_eq!(cluster["leader_id"], node_id);
}

#[test]
fn snapshots_and_log_purge_keep_state_across_restarts() {
    let sandbox = tempfile::tempdir().expect("tempdir");
    let data = sandbox.path().join("data");
    // A tiny snapshot interval makes openraft snapshot and purge the log during the test.
    let cfg = sandbox.path().join("small-snapshots.toml");
    std::fs::write(&cfg, "[raft]\nsnapshot_after_entries = 5\n").expect("write config");
    let cfg = cfg.to_string_lossy().to_string();

    let mut node = Node::start_with(sandbox.path(), &data, &["--config", &cfg], |_| {});
    let id = node.node_id().to_string();
    for i in 0..30 {
        node.cli_ok(&["node", "label", &id, &format!("s{i}={i}")]);
    }
    node.kill9();
    let mut node = Node::start_with(sandbox.path(), &data, &["--config", &cfg], |_| {});
    for i in 30..40 {
        node.cli_ok(&["node", "label", &id, &format!("s{i}={i}")]);
    }
    let status = node.terminate();
    assert!(status.success(), "SIGTERM must exit 0, got {status}");

    let node = Node::start_with(sandbox.path(), &data, &["--config", &cfg], |_| {});
    let n = http::get(&node.http, &format!("/api/v1/nodes/{id}"))
        .expect("GET node")
        .json();
    for i in 0..40 {
        assert_eq!(n["labels"][format!("s{i}")], i.to_string(), "label s{i} lost");
    }
}

#[test]
fn sigterm_stops_listeners_and_exits_zero() {
    let sandbox = tempfile::tempdir().expect("tempdir");
    let mut node = Node::start(sandbox.path(), &sandbox.path().join("data"));
    let http_addr = node.http.clone();
    let status = node.terminate();
    assert_eq!(status.code(), Some(0), "stderr:\n{}", node.stderr());
    assert!(
        http::get(&http_addr, "/healthz").is_err(),
        "the HTTP listener must be closed after exit"
    );
}
