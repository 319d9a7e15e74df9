//! The CLI against a running node: human tables and `-o json`.

use crate::harness::{http, Node};

#[test]
fn status_node_list_and_node_show_in_both_formats() {
    let sandbox = tempfile::tempdir().expect("tempdir");
    let node = Node::start(sandbox.path(), &sandbox.path().join("data"));
    let id = node.node_id();

    // status, human
    let out = node.cli_ok(&["status"]);
    assert!(
        out.contains(&node.cluster_id()),
        "status shows the cluster id:\n{out}"
    );
    assert!(out.contains("leader"), "{out}");
    assert!(
        out.contains(&format!("{id} (this node)")),
        "the single node is the leader:\n{out}"
    );

    // status, JSON
    let s: serde_json::Value = serde_json::from_str(&node.cli_ok(&["status", "-o", "json"])).expect("json");
    assert_eq!(s["cluster_id"], node.cluster_id());
    assert_eq!(s["raft_role"], "leader");
    assert_eq!(s["voters"], serde_json::json!([id]));
    assert_eq!(s["nodes_total"], 1);
    assert!(s["commit_index"].as_u64().unwrap_or(0) >= 1);
    assert_eq!(s["commit_index"], s["applied_index"]);

    // node list, human: a header and one row for this node
    let out = node.cli_ok(&["node", "list"]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("ID") && lines[0].contains("STATE"), "{out}");
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[1].starts_with(&id.to_string())
            && lines[1].contains("ready")
            && lines[1].contains("coordinator"),
        "{out}"
    );

    // node list, JSON
    let l: serde_json::Value =
        serde_json::from_str(&node.cli_ok(&["-o", "json", "node", "list"])).expect("json");
    assert_eq!(l["nodes"][0]["id"], id);
    assert_eq!(l["nodes"][0]["state"], "ready");

    // node show by id and by name, human and JSON, with the real inventory
    let j: serde_json::Value =
        serde_json::from_str(&node.cli_ok(&["node", "show", &id.to_string(), "-o", "json"])).expect("json");
    let name = j["name"].as_str().expect("name").to_string();
    assert!(j["inventory"]["cpu"]["threads"].as_u64().unwrap_or(0) >= 1);
    assert!(j["inventory"]["memory"]["total_bytes"].as_u64().unwrap_or(0) > 0);
    assert!(j["inventory"]["nics"]
        .as_array()
        .is_some_and(|n| n.iter().any(|n| n["name"] == "lo")));
    let out = node.cli_ok(&["node", "show", &name]);
    assert!(
        out.contains(&format!("id         {id}")) || out.contains(&id.to_string()),
        "{out}"
    );
    assert!(out.contains("NICS") && out.contains("lo"), "{out}");
    assert!(
        out.contains("no NVIDIA GPU") || out.contains("NVIDIA GPU(s)"),
        "{out}"
    );

    // the HTTP API agrees with the CLI
    let h = http::get(&node.http, "/api/v1/nodes").expect("GET").json();
    assert_eq!(h["nodes"][0]["id"], id);
}

#[test]
fn labels_set_and_remove_and_need_a_token() {
    let sandbox = tempfile::tempdir().expect("tempdir");
    let node = Node::start(sandbox.path(), &sandbox.path().join("data"));
    let id = node.node_id().to_string();

    let out = node.cli_ok(&["node", "label", &id, "zone=a", "tier=gold"]);
    assert!(out.contains("zone=a") && out.contains("tier=gold"), "{out}");
    let j: serde_json::Value =
        serde_json::from_str(&node.cli_ok(&["-o", "json", "node", "label", &id, "tier-"])).expect("json");
    assert_eq!(j["labels"], serde_json::json!({"zone": "a"}));

    // Without a token: refused, nothing changed.
    let mut cmd = crate::harness::cortex();
    crate::harness::node::isolate(&mut cmd, sandbox.path());
    let out = cmd
        .args(["node", "label", &id, "zone=b", "--server", &node.grpc])
        .env("CORTEX_CA_FILE", node.data_dir.join("ca.crt"))
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not authenticated") && err.contains("bearer token"),
        "{err}"
    );

    // A wrong token: refused too.
    let out = node.cli(&["node", "label", &id, "zone=b", "--token", "cxt_00000000_nope"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown token"));

    let n = http::get(&node.http, &format!("/api/v1/nodes/{id}"))
        .expect("GET")
        .json();
    assert_eq!(
        n["labels"],
        serde_json::json!({"zone": "a"}),
        "refused writes change nothing"
    );
}
