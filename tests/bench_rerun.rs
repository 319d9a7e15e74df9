//! The full benchmark report on the node record, and measuring again on request: a node's
//! whole report (every figure with its spread and conditions) is kept in Raft and shown by
//! `node show`, the JSON API and gRPC; `cortex bench --publish` (the `RunBenchmark` API) asks a
//! node to run again — a coordinator in-process, a worker through its heartbeat answer — and
//! prints what the node recorded. Needs scope operate.

use std::process::Command;
use std::time::Duration;

use crate::cluster::{fast_liveness, join_token};
use crate::harness::page::send;
use crate::harness::{eventually, http, Agent, Node};

fn bench_on(cmd: &mut Command) {
    cmd.env("CORTEX_BENCH__ON_START", "true");
}

fn node_json(coord: &Node, key: &str) -> serde_json::Value {
    let out = coord.cli(&["-o", "json", "node", "show", key]);
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

/// The node's recorded full report, once there is one.
fn report(node: &serde_json::Value) -> Option<serde_json::Value> {
    let r = &node["bench_report"];
    (r["format"] == "cortex-bench/1").then(|| r.clone())
}

fn started(report: &serde_json::Value) -> u64 {
    report["started_at_ms"].as_u64().unwrap_or(0)
}

#[test]
fn the_full_report_is_on_the_node_record_and_a_node_measures_again_on_request() {
    let sb = tempfile::tempdir().expect("tempdir");
    let coord = Node::start_with(sb.path(), &sb.path().join("c1"), &[], |c| {
        fast_liveness(c);
        bench_on(c);
    });
    let cid = coord.node_id().to_string();

    // The start-up (quick) run's whole report is on the record: CLI JSON, HTTP API, table.
    let first = eventually(Duration::from_secs(40), "the coordinator's report", || {
        report(&node_json(&coord, &cid))
    });
    assert_eq!(first["quick"], true, "{first}");
    assert!(
        first["cpu"]["f64_all_cores"]["median"].as_f64().unwrap_or(0.0) > 0.0,
        "{first}"
    );
    assert!(
        first["cpu"]["f64_all_cores"]["max"].as_f64().is_some(),
        "spread: {first}"
    );
    let api = http::get(&coord.http, &format!("/api/v1/nodes/{cid}"))
        .expect("GET node")
        .json();
    assert_eq!(api["bench_report"], first, "the JSON API shows the same report");
    assert!(
        api["bench"]["cpu_f64_gflops_all"].as_f64().unwrap_or(0.0) > 0.0,
        "{api}"
    );
    let show = coord.cli_ok(&["node", "show", &cid]);
    for want in [
        "BENCH (quick self-benchmark",
        "memory triad",
        "MEDIAN",
        "CV",
        "gemm f64",
        "NIC",
    ] {
        assert!(show.contains(want), "node show lacks {want:?}:\n{show}");
    }

    // A worker joins (auto-approved) and publishes its report with its own certificate.
    let token = join_token(&coord, &["--auto-approve"]);
    let _agent = Agent::start_with(
        None,
        sb.path(),
        &sb.path().join("w1"),
        &["--token", &token, "--node-name", "w1"],
        |c| {
            fast_liveness(c);
            bench_on(c);
        },
    );
    let w_first = eventually(Duration::from_secs(60), "w1 ready with a report", || {
        let v = node_json(&coord, "w1");
        (v["state"] == "ready").then_some(())?;
        report(&v)
    });

    // A read token may not ask; nothing is recorded.
    let minted = coord.cli_ok(&[
        "-o", "json", "token", "create", "--kind", "api", "--scope", "read",
    ]);
    let minted: serde_json::Value = serde_json::from_str(&minted).expect("token json");
    let read = minted["secret"].as_str().expect("secret");
    let out = coord.cli(&["bench", "--publish", "--node", "w1", "--quick", "--token", read]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("operate"), "{err}");
    assert!(node_json(&coord, "w1")["bench_request"].is_null());

    // The worker measures again on request (the full run) and the CLI prints what it recorded.
    let out = coord.cli_ok(&[
        "-o",
        "json",
        "bench",
        "--publish",
        "--node",
        "w1",
        "--wait",
        "120",
    ]);
    let printed: serde_json::Value = serde_json::from_str(&out).expect("report json");
    assert_eq!(printed["quick"], false, "a full run: {printed}");
    assert!(started(&printed) > started(&w_first), "a new run: {printed}");
    let w = node_json(&coord, "w1");
    assert!(
        w["bench_request"].is_null(),
        "the answer cleared the request: {w}"
    );
    assert_eq!(
        report(&w).as_ref(),
        Some(&printed),
        "the printed report is the recorded one"
    );
    assert!(
        w["bench"]["measured_at_ms"].as_u64() == Some(started(&printed)),
        "the summary is taken from the new report: {w}"
    );

    // The coordinator measures again in-process; the human table says when it was recorded.
    let out = coord.cli_ok(&["bench", "--publish", "--node", &cid, "--quick"]);
    assert!(out.contains("recorded") && out.contains("memory triad"), "{out}");
    let c = node_json(&coord, &cid);
    assert!(started(&report(&c).expect("report")) > started(&first), "{c}");
    assert!(c["bench_request"].is_null(), "{c}");

    // The JSON API asks too (operate), and the request shows on the record until answered.
    let admin = std::fs::read_to_string(coord.token_file()).expect("admin token");
    let auth = format!("Bearer {}", admin.trim());
    let path = format!("/api/v1/nodes/{cid}/bench");
    let r = send(
        &coord.http,
        "POST",
        &path,
        &[("Content-Type", "application/json")],
        Some(r#"{"quick":true}"#),
    );
    assert_eq!(r.status, 401, "no token");
    let r = send(
        &coord.http,
        "POST",
        &path,
        &[("Authorization", &auth), ("Content-Type", "application/json")],
        Some(r#"{"quick":true,"fast":1}"#),
    );
    assert_eq!(r.status, 400, "unknown field");
    let before = started(&report(&node_json(&coord, &cid)).expect("report"));
    let r = send(
        &coord.http,
        "POST",
        &path,
        &[("Authorization", &auth), ("Content-Type", "application/json")],
        Some(r#"{"quick":true}"#),
    );
    assert_eq!(r.status, 200);
    eventually(Duration::from_secs(30), "the HTTP-requested run recorded", || {
        let c = http::get(&coord.http, &format!("/api/v1/nodes/{cid}"))
            .ok()?
            .json();
        (c["bench_request"].is_null() && started(&report(&c)?) > before).then_some(())
    });

    // Asking a node that does not exist names it.
    let out = coord.cli(&["bench", "--publish", "--node", "nosuch"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nosuch"));
}
