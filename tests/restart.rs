//! Durability: what a user wrote survives `kill -9`, and the cluster comes back as itself.

use crate::harness::{http, Node};

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
