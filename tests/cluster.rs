//! Joining and leaving: CA-pinned join tokens, pending → approved/rejected, mTLS-only Raft and
//! node RPCs, failure detection, and three coordinators surviving the loss of the leader.
//! Processes talk over loopback here; `netns.rs` repeats the multi-host stories in network
//! namespaces.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::{eventually, http, Agent, Node};

/// Fast liveness settings for tests: heartbeat 200 ms, SUSPECT after 1 s, DOWN after 2 s.
pub fn fast_liveness(cmd: &mut Command) {
    cmd.env("CORTEX_CLUSTER__HEARTBEAT_INTERVAL_MS", "200")
        .env("CORTEX_CLUSTER__SUSPECT_AFTER_MS", "1000")
        .env("CORTEX_CLUSTER__DOWN_AFTER_MS", "2000")
        .env("CORTEX_CLUSTER__VOTER_GRACE_MS", "3000");
}

/// The first coordinator of a cluster in network namespace host 1: node name `c1`, gRPC on
/// port 7071 and HTTP on 7070 of that host's address, fast liveness.
pub fn first_coordinator_in(net: &crate::harness::netns::Netns, sb: &std::path::Path) -> Node {
    Node::start_in(
        Some(&net.name(1)),
        sb,
        &sb.join("c1"),
        &[
            "--grpc-addr",
            &format!("{}:7071", net.ip(1)),
            "--http-addr",
            &format!("{}:7070", net.ip(1)),
            "--node-name",
            "c1",
        ],
        fast_liveness,
    )
}

pub fn join_token(coord: &Node, extra: &[&str]) -> String {
    let mut args = vec!["token", "create", "--ttl", "1h"];
    args.extend_from_slice(extra);
    coord.cli_ok(&args).trim().to_string()
}

pub fn node_state(coord: &Node, id: u64) -> Option<String> {
    let n = http::get(&coord.http, &format!("/api/v1/nodes/{id}")).ok()?;
    (n.status == 200).then(|| n.json()["state"].as_str().unwrap_or_default().to_string())
}

fn pending_node(coord: &Node) -> Option<serde_json::Value> {
    let nodes = http::get(&coord.http, "/api/v1/nodes").ok()?.json();
    nodes["nodes"]
        .as_array()?
        .iter()
        .find(|n| n["state"] == "pending")
        .cloned()
}

#[test]
fn approve_flow_through_the_cli() {
    let sb = tempfile::tempdir().expect("tempdir");
    let coord = Node::start_with(sb.path(), &sb.path().join("c1"), &[], fast_liveness);
    let token = join_token(&coord, &[]);
    let mut agent = Agent::start(
        sb.path(),
        &sb.path().join("w1"),
        &["--token", &token, "--node-name", "w1"],
    );

    // The node shows up PENDING with its inventory and the code it printed on its console.
    let code = agent.verification_code(Duration::from_secs(20));
    let pending = eventually(Duration::from_secs(20), "a pending node", || pending_node(&coord));
    assert_eq!(pending["name"], "w1");
    assert_eq!(pending["join"]["verification_code"], code.as_str());
    assert!(pending["inventory"]["cpu"]["threads"].as_u64().unwrap_or(0) >= 1);
    let list = coord.cli_ok(&["node", "list"]);
    assert!(list.contains(&format!("pending (code {code})")), "{list}");

    let id = pending["id"].as_u64().expect("id");
    let out = coord.cli_ok(&["node", "approve", "w1"]);
    assert!(out.contains("approved"), "{out}");
    let info = agent.wait_approved(Duration::from_secs(20));
    assert_eq!(info["node_id"], id);
    eventually(Duration::from_secs(10), "agent /readyz", || {
        let r = http::get(info["http_addr"].as_str()?, "/readyz").ok()?;
        (r.status == 200).then_some(())
    });
    eventually(Duration::from_secs(10), "READY", || {
        (node_state(&coord, id)? == "ready").then_some(())
    });
    // It is heartbeating: the coordinator has live resources for it.
    let n = eventually(Duration::from_secs(5), "live resources", || {
        let n = http::get(&coord.http, &format!("/api/v1/nodes/{id}"))
            .ok()?
            .json();
        n["live"]["resources"]["memory_available_bytes"]
            .as_u64()
            .filter(|m| *m > 0)
            .map(|_| n)
    });
    assert!(n["live"]["heartbeat_age_ms"].as_u64().unwrap_or(u64::MAX) < 2000);
    let events = coord.cli_ok(&["events"]);
    assert!(
        events.contains("node_pending") && events.contains("node_approved"),
        "{events}"
    );
}

#[test]
fn reject_flow_tells_the_node_and_it_stops() {
    let sb = tempfile::tempdir().expect("tempdir");
    let coord = Node::start(sb.path(), &sb.path().join("c1"));
    let token = join_token(&coord, &[]);
    let mut agent = Agent::start(
        sb.path(),
        &sb.path().join("w1"),
        &["--token", &token, "--node-name", "intruder"],
    );
    let pending = eventually(Duration::from_secs(20), "a pending node", || pending_node(&coord));
    coord.cli_ok(&["node", "reject", "intruder", "--reason", "not one of ours"]);
    let code = agent.wait_exit(Duration::from_secs(20));
    assert_eq!(code, Some(1));
    assert!(
        agent
            .stderr()
            .contains("this node was rejected by the cluster: not one of ours"),
        "{}",
        agent.stderr()
    );
    assert_eq!(
        node_state(&coord, pending["id"].as_u64().expect("id")).as_deref(),
        Some("rejected")
    );
    // Approving it later is refused: a rejected node stays rejected.
    let out = coord.cli(&["node", "approve", "intruder"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("only a pending node can be approved"));
}

#[test]
fn a_token_pinning_another_ca_is_refused_before_anything_is_sent() {
    let sb = tempfile::tempdir().expect("tempdir");
    let coord = Node::start(sb.path(), &sb.path().join("c1"));
    let token = join_token(&coord, &[]);
    // Same secret and address, but the pin names a different CA.
    let real_ca = token[5..69].to_string();
    let forged: String = real_ca
        .chars()
        .map(|c| if c == 'a' { 'b' } else { 'a' })
        .collect();
    let bad = token.replacen(&real_ca, &forged, 1);
    let mut agent = Agent::start(sb.path(), &sb.path().join("w1"), &["--token", &bad]);
    assert_eq!(agent.wait_exit(Duration::from_secs(20)), Some(1));
    let err = agent.stderr();
    assert!(
        err.contains("refusing to join") && err.contains(&format!("pins CA {forged}")),
        "{err}"
    );
    assert!(err.contains(&format!("presented CA {real_ca}")), "{err}");
    // The coordinator never saw a join request.
    assert!(pending_node(&coord).is_none());
    assert!(!coord.cli_ok(&["events"]).contains("node_pending"));
}

#[test]
fn expired_revoked_and_used_up_tokens_say_which() {
    let sb = tempfile::tempdir().expect("tempdir");
    let coord = Node::start(sb.path(), &sb.path().join("c1"));

    let expired = coord
        .cli_ok(&["token", "create", "--ttl", "1s"])
        .trim()
        .to_string();
    std::thread::sleep(Duration::from_millis(1500));
    let mut a = Agent::start(sb.path(), &sb.path().join("a1"), &["--token", &expired]);
    assert_eq!(a.wait_exit(Duration::from_secs(20)), Some(1));
    assert!(a.stderr().contains("has expired"), "{}", a.stderr());

    let created: serde_json::Value =
        serde_json::from_str(&coord.cli_ok(&["-o", "json", "token", "create"])).expect("json");
    let id = created["token"]["id"].as_str().expect("id").to_string();
    coord.cli_ok(&["token", "revoke", &id]);
    let mut a = Agent::start(
        sb.path(),
        &sb.path().join("a2"),
        &["--token", created["secret"].as_str().expect("s")],
    );
    assert_eq!(a.wait_exit(Duration::from_secs(20)), Some(1));
    assert!(a.stderr().contains("has been revoked"), "{}", a.stderr());

    let once = coord
        .cli_ok(&["token", "create", "--uses", "1"])
        .trim()
        .to_string();
    let _first = Agent::start(sb.path(), &sb.path().join("a3"), &["--token", &once]);
    eventually(Duration::from_secs(20), "the first joiner", || {
        pending_node(&coord)
    });
    let mut second = Agent::start(sb.path(), &sb.path().join("a4"), &["--token", &once]);
    assert_eq!(second.wait_exit(Duration::from_secs(20)), Some(1));
    assert!(
        second.stderr().contains("has no uses left"),
        "{}",
        second.stderr()
    );

    let list = coord.cli_ok(&["token", "list"]);
    assert!(list.contains("REVOKED") && list.contains("0 uses left"), "{list}");
    assert!(
        !list.contains(created["secret"].as_str().expect("s")),
        "secrets never appear in listings"
    );
}

#[test]
fn auto_approve_is_explicit_opt_in() {
    let sb = tempfile::tempdir().expect("tempdir");
    let coord = Node::start(sb.path(), &sb.path().join("c1"));
    let token = join_token(&coord, &["--auto-approve"]);
    let mut agent = Agent::start(sb.path(), &sb.path().join("w1"), &["--token", &token]);
    let info = agent.wait_approved(Duration::from_secs(20));
    assert_eq!(
        node_state(&coord, info["node_id"].as_u64().expect("id")).as_deref(),
        Some("ready")
    );
}

#[test]
fn a_silent_worker_goes_down_within_the_bound_and_comes_back() {
    let sb = tempfile::tempdir().expect("tempdir");
    let coord = Node::start_with(sb.path(), &sb.path().join("c1"), &[], fast_liveness);
    let token = join_token(&coord, &["--auto-approve"]);
    let data = sb.path().join("w1");
    let mut agent = Agent::start(sb.path(), &data, &["--token", &token]);
    let id = agent.wait_approved(Duration::from_secs(20))["node_id"]
        .as_u64()
        .expect("id");
    eventually(Duration::from_secs(5), "ready", || {
        (node_state(&coord, id)? == "ready").then_some(())
    });

    agent.kill9();
    let t0 = Instant::now();
    eventually(Duration::from_secs(10), "DOWN", || {
        (node_state(&coord, id)? == "down").then_some(())
    });
    let took = t0.elapsed();
    // DOWN after 2 s of silence; allow a detector tick and a Raft write on a busy machine.
    assert!(took < Duration::from_millis(4000), "DOWN took {took:?}");
    let events = coord.cli_ok(&["events"]);
    assert!(
        events.contains("node_suspect") && events.contains("node_down"),
        "{events}"
    );

    let mut back = Agent::start(sb.path(), &data, &["--token", &token]);
    back.wait_approved(Duration::from_secs(20));
    eventually(Duration::from_secs(10), "READY again", || {
        (node_state(&coord, id)? == "ready").then_some(())
    });
}

#[test]
fn drain_leave_and_remove() {
    let sb = tempfile::tempdir().expect("tempdir");
    let coord = Node::start_with(sb.path(), &sb.path().join("c1"), &[], fast_liveness);
    let token = join_token(&coord, &["--auto-approve"]);
    let leaving = sb.path().join("leave.toml");
    std::fs::write(&leaving, "leave_on_shutdown = true\n").expect("write config");
    let mut w1 = Agent::start(
        sb.path(),
        &sb.path().join("w1"),
        &["--token", &token, "--node-name", "w1"],
    );
    let mut w2 = Agent::start(
        sb.path(),
        &sb.path().join("w2"),
        &[
            "--token",
            &token,
            "--node-name",
            "w2",
            "--config",
            leaving.to_str().expect("utf-8"),
        ],
    );
    let id1 = w1.wait_approved(Duration::from_secs(20))["node_id"]
        .as_u64()
        .expect("id");
    let id2 = w2.wait_approved(Duration::from_secs(20))["node_id"]
        .as_u64()
        .expect("id");
    for id in [id1, id2] {
        eventually(Duration::from_secs(10), "ready", || {
            (node_state(&coord, id)? == "ready").then_some(())
        });
    }

    // Drain: the node stays, heartbeating, but DRAINING (the detector leaves it alone).
    assert!(coord.cli_ok(&["node", "drain", "w1"]).contains("draining"));
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(node_state(&coord, id1).as_deref(), Some("draining"));

    // A clean stop with leave_on_shutdown: LEFT, never DOWN.
    assert_eq!(w2.terminate(Duration::from_secs(10)), Some(0));
    eventually(Duration::from_secs(5), "LEFT", || {
        (node_state(&coord, id2)? == "left").then_some(())
    });
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        node_state(&coord, id2).as_deref(),
        Some("left"),
        "a node that left is not reported DOWN"
    );

    // Remove (admin): the node is forgotten.
    coord.cli_ok(&["node", "remove", "w1"]);
    assert_eq!(node_state(&coord, id1), None);
    let events = coord.cli_ok(&["events"]);
    assert!(
        events.contains("node_draining") && events.contains("node_left") && events.contains("node_removed"),
        "{events}"
    );
}
