//! `/metrics` as Prometheus sees it: a real coordinator that ran a task and answered API and
//! MCP requests, scraped and checked by `promtool check metrics` (Debian `prometheus`).

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::harness::page::send;
use crate::harness::{capable, eventually, have, http, is_root, Node};

#[test]
fn promtool_accepts_a_coordinators_metrics() {
    if !capable(
        have("promtool"),
        "promtool (Debian package `prometheus`; scripts/test.sh installs it)",
    ) || !capable(
        is_root(),
        "root (cgroups for the task that fills the task and placement metrics)",
    ) {
        return;
    }
    let sb = tempfile::tempdir().expect("tempdir");
    let node = Node::start(sb.path(), &sb.path().join("n1"));
    let admin = std::fs::read_to_string(node.token_file()).expect("admin token");
    let auth = format!("Bearer {}", admin.trim());
    let sub = send(
        &node.http,
        "POST",
        "/api/v1/tasks",
        &[("Authorization", &auth)],
        Some(&json!({ "tasks": [{ "kind": "exec", "command": ["true"] }] }).to_string()),
    );
    assert_eq!(sub.status, 201, "submit: {}", sub.body);
    let id = sub.json()["task_ids"][0].as_str().expect("id").to_string();
    eventually(Duration::from_secs(30), "the task succeeded", || {
        let t = http::get(&node.http, &format!("/api/v1/tasks/{id}")).ok()?.json();
        (t["state"] == "succeeded").then_some(())
    });
    // An MCP request (refused: no token) and a 404, so both latency families have samples.
    assert_eq!(send(&node.http, "POST", "/mcp", &[], Some("{}")).status, 401);
    assert_eq!(http::get(&node.http, "/api/v1/nope").expect("GET").status, 404);

    let m = http::get(&node.http, "/metrics").expect("GET /metrics");
    assert_eq!(m.status, 200);
    for name in [
        "cortex_nodes{state=\"ready\"} 1",
        "cortex_tasks{state=\"succeeded\"} 1",
        "cortex_raft_term 1",
        "cortex_raft_commit_index ",
        "cortex_raft_applied_index ",
        "cortex_raft_apply_lag ",
        "cortex_raft_is_leader 1",
        "cortex_node_heartbeat_age_seconds{",
        "cortex_placement_duration_seconds_count{pass=\"submit\"} 1",
        "cortex_http_request_duration_seconds_count{method=\"POST\",route=\"/api/v1/tasks\",status=\"201\"} 1",
        "cortex_http_request_duration_seconds_count{method=\"GET\",route=\"unmatched\",status=\"404\"} 1",
        "cortex_mcp_request_duration_seconds_count{method=\"POST\",route=\"/mcp\",status=\"401\"} 1",
    ] {
        assert!(m.body.contains(name), "/metrics has {name:?}:\n{}", m.body);
    }
    // Ids in paths never become labels.
    assert!(!m.body.contains(&id), "a task id leaked into a label");

    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    promtool
        .stdin
        .take()
        .expect("stdin")
        .write_all(m.body.as_bytes())
        .expect("feed promtool");
    let out = promtool.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n--- metrics ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        m.body
    );
}
