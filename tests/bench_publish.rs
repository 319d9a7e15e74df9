//! A node measures itself: the quick self-benchmark runs in the background after start (never
//! delaying readiness), an agent measures beside its first join request and its next poll
//! brings the figures to the pending record, so the approver sees them, and placement uses the published figures (`--fastest`, `--min-gflops`).
//! Every other test starts its nodes with `CORTEX_BENCH__ON_START=false` (see the harness).

use std::process::Command;
use std::time::Duration;

use crate::cluster::join_token;
use crate::harness::{capable, eventually, is_root, Agent, Node};

fn bench_on(cmd: &mut Command) {
    cmd.env("CORTEX_BENCH__ON_START", "true");
}

/// `node show -o json` (`Null` while the node is unknown).
fn node_json(coord: &Node, key: &str) -> serde_json::Value {
    let out = coord.cli(&["-o", "json", "node", "show", key]);
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

/// The cell of `row` under `header` in a `node list` table.
fn column<'a>(table: &str, row: &'a str, header: &str) -> &'a str {
    let at = table
        .lines()
        .next()
        .and_then(|h| h.find(header))
        .unwrap_or(usize::MAX);
    row.get(at..)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_default()
}

/// The node's measured f64 GFLOP/s (all cores), once it has published a positive one.
fn gflops(node: &serde_json::Value) -> Option<f64> {
    node["bench"]["cpu_f64_gflops_all"].as_f64().filter(|g| *g > 0.0)
}

#[test]
fn a_coordinator_measures_itself_after_start_and_shows_its_figures() {
    let sb = tempfile::tempdir().expect("tempdir");
    let n = Node::start_with(sb.path(), &sb.path().join("c1"), &[], bench_on);
    let id = n.node_id().to_string();
    let node = eventually(Duration::from_secs(30), "the node's benchmark summary", || {
        let v = node_json(&n, &id);
        gflops(&v).map(|_| v)
    });
    let b = &node["bench"];
    assert!(b["measured_at_ms"].as_u64().unwrap_or(0) > 0, "{b}");
    for figure in [
        "cpu_f64_gflops_one",
        "cpu_f32_gflops_all",
        "memory_triad_gbps",
        "disk_seq_read_mbps",
    ] {
        assert!(b[figure].as_f64().is_some_and(|v| v >= 0.0), "{figure}: {b}");
    }
    // The publisher logs once its write has returned, which can be a moment after the
    // record shows the figures.
    eventually(Duration::from_secs(10), "the published log line", || {
        n.stderr()
            .contains("published this node's benchmark report")
            .then_some(())
    });

    let list = n.cli_ok(&["node", "list"]);
    let row = list.lines().nth(1).unwrap_or_default();
    let shown: f64 = column(&list, row, "GFLOP/S").parse().unwrap_or(0.0);
    assert!(shown > 0.0, "{list}");
    let show = n.cli_ok(&["node", "show", &id]);
    assert!(show.contains("BENCH (quick self-benchmark"), "{show}");
    assert!(show.contains("cpu f64, all cores"), "{show}");
}

#[test]
fn a_joining_worker_shows_its_figures_while_pending_and_placement_uses_them() {
    let sb = tempfile::tempdir().expect("tempdir");
    let coord = Node::start_with(sb.path(), &sb.path().join("c1"), &[], bench_on);
    // A token without --auto-approve: the node waits, PENDING, for a person.
    let token = join_token(&coord, &[]);
    let mut agent = Agent::start_with(
        None,
        sb.path(),
        &sb.path().join("w1"),
        &["--token", &token, "--node-name", "w1"],
        bench_on,
    );

    // (b) The join request carried the figures: the approver sees them on the pending node.
    let pending = eventually(Duration::from_secs(30), "a pending node with figures", || {
        let v = node_json(&coord, "w1");
        (v["state"] == "pending" && gflops(&v).is_some()).then_some(v)
    });
    let list = coord.cli_ok(&["node", "list"]);
    let row = list.lines().find(|l| l.contains(" w1 ")).unwrap_or_default();
    assert!(row.contains("pending (code "), "{list}");
    assert_ne!(
        column(&list, row, "GFLOP/S"),
        "-",
        "the pending node's figure is shown: {list}"
    );
    coord.cli_ok(&["node", "approve", "w1"]);
    agent.wait_approved(Duration::from_secs(20));
    let ready = eventually(Duration::from_secs(20), "w1 ready", || {
        let v = node_json(&coord, "w1");
        (v["state"] == "ready").then_some(v)
    });
    assert_eq!(
        ready["bench"], pending["bench"],
        "the figures sent with the join are kept"
    );

    // (c) Placement uses the published figures. Submitting for more than any node measured is
    // refused at once, naming the constraint.
    let out = coord.cli(&["run", "--min-gflops", "1000000000", "--", "true"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("constraints.min_gflops"), "{err}");

    let coord_id = coord.node_id();
    let worker_id = ready["id"].as_u64().expect("worker id");
    let (c, w) = eventually(Duration::from_secs(30), "both nodes' figures", || {
        Some((
            gflops(&node_json(&coord, &coord_id.to_string()))?,
            gflops(&ready)?,
        ))
    });
    if !capable(is_root(), "root (cgroups for workloads)") {
        return;
    }
    let fastest = if c > w { coord_id } else { worker_id };
    // A node that misses heartbeats on a loaded machine is briefly SUSPECT and out of the
    // ready set; a placement made then proves nothing, so it is tried again (and only then).
    let mut tries = 0;
    loop {
        tries += 1;
        let suspects_before = coord.cli_ok(&["events"]).matches("node_suspect").count();
        let out = coord.cli(&["run", "--fastest", "1", "-o", "json", "--", "true"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("run json");
        let ran_on = v["tasks"][0]["attempts"][0]["node_id"].as_u64();
        if ran_on == Some(fastest) {
            break;
        }
        let events = coord.cli_ok(&["events"]);
        let suspects = events.matches("node_suspect").count();
        assert!(
            suspects > suspects_before && tries < 3,
            "coordinator {c} GFLOP/s, worker {w} GFLOP/s, ran on {ran_on:?}: {v}\n{events}"
        );
        eprintln!("a node was SUSPECT while the task was placed; placing again");
        std::thread::sleep(Duration::from_secs(2));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_bench_needs_the_nodes_own_certificate_and_sound_figures() {
    use cortex_cluster::pki::{client_tls, lazy_channel, NodeCredentials};
    use cortex_proto::v1::cortex_client::CortexClient;
    use cortex_proto::v1::PublishBenchRequest;
    use tonic::Code;

    let sb = tempfile::tempdir().expect("tempdir");
    let node = Node::start(sb.path(), &sb.path().join("n1"));
    let read = |f: &str| std::fs::read_to_string(node.data_dir.join(f)).expect(f);
    let client = |identity: Option<&NodeCredentials>| {
        let ch = lazy_channel(
            &node.grpc,
            &client_tls(&read("ca.crt"), identity),
            Duration::from_secs(3),
        )
        .expect("channel");
        CortexClient::new(ch)
    };
    let id = node.node_id();
    let req = |node_id: u64, bench_json: &str| PublishBenchRequest {
        node_id,
        bench_json: bench_json.into(),
        ..Default::default()
    };
    let good = r#"{"cpu_f64_gflops_all":42.5,"cpu_f64_gflops_one":21.0,"cpu_f32_gflops_all":85.0,
                   "memory_triad_gbps":12.0,"disk_seq_read_mbps":0.0,"measured_at_ms":1700000000000}"#;

    let e = client(None)
        .publish_bench(req(id, good))
        .await
        .expect_err("no certificate");
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    let creds = NodeCredentials {
        key_pem: read("node.key"),
        cert_pem: read("node.crt"),
        ca_pem: read("ca.crt"),
    };
    let mut own = client(Some(&creds));
    let e = own
        .publish_bench(req(id + 1, good))
        .await
        .expect_err("another node's figures");
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    for bad in [
        "{",
        r#"{"cpu_f64_gflops_all":"fast"}"#,
        r#"{"memory_triad_gbps":-1}"#,
    ] {
        let e = own.publish_bench(req(id, bad)).await.expect_err(bad);
        assert_eq!(e.code(), Code::InvalidArgument, "{bad}: {e:?}");
        assert!(e.message().contains("bench_json"), "{bad}: {}", e.message());
    }
    // A full report must be this version's format and fit the bound; the error names it.
    for bad in [
        "{".to_string(),
        r#"{"format":"cortex-bench/1"}"#.to_string(),
        "x".repeat(70 * 1024),
    ] {
        let mut r = req(id, good);
        r.report_json = bad.clone();
        let e = own.publish_bench(r).await.expect_err("bad report");
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains("report_json"), "{}", e.message());
    }
    let before = tokio::task::block_in_place(|| node_json(&node, &id.to_string()));
    assert!(before["bench"].is_null(), "nothing was recorded: {before}");

    own.publish_bench(req(id, good))
        .await
        .expect("the node's own figures");
    let after = tokio::task::block_in_place(|| node_json(&node, &id.to_string()));
    assert_eq!(gflops(&after), Some(42.5), "{after}");
    assert_eq!(after["bench"]["measured_at_ms"], 1_700_000_000_000u64);
}

/// An agent approved before its quick benchmark ended (an auto-approve token answers the first
/// request) starts heartbeating at once — a READY node that stays silent for the benchmark's
/// seconds would be marked SUSPECT — and publishes the figures when the run ends.
#[test]
fn an_agent_approved_at_once_runs_before_its_benchmark_ends_and_publishes_it_after() {
    let sb = tempfile::tempdir().expect("tempdir");
    let coord = Node::start(sb.path(), &sb.path().join("c1"));
    let token = join_token(&coord, &["--auto-approve"]);
    let mut agent = Agent::start_with(
        None,
        sb.path(),
        &sb.path().join("w1"),
        &["--token", &token, "--node-name", "w1"],
        bench_on,
    );
    agent.wait_approved(Duration::from_secs(20));
    let log = agent.stderr();
    assert!(
        log.contains("measuring this machine while asking to join"),
        "{log}"
    );
    assert!(
        !log.contains("quick self-benchmark done"),
        "the node started only after its benchmark (seconds of silence as a READY node):\n{log}"
    );
    let node = eventually(
        Duration::from_secs(30),
        "w1's figures, published after approval",
        || {
            let v = node_json(&coord, "w1");
            gflops(&v).map(|_| v)
        },
    );
    assert_eq!(node["state"], "ready", "{node}");
    let events = coord.cli_ok(&["events"]);
    assert!(!events.contains("node_suspect"), "{events}");
}
