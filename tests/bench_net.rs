//! `cortex bench net --peer <node>`: network throughput between two cluster nodes, each in its
//! own network namespace, over a bridge shaped to 50 Mbit/s each way (`tc … tbf`) — checked
//! against the shaping and against iperf3 over the same link — and the refusals a user meets
//! (unknown peer, a peer that is not ready, `--seconds` out of range, a second run at once).

use std::time::Duration;

use serde_json::Value;

use crate::harness::netns::Netns;
use crate::harness::{capable, eventually, have, Agent, Node};

const SHAPED_MBIT: f64 = 50.0;

fn json(out: &std::process::Output) -> Value {
    assert!(
        out.status.success(),
        "cortex failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

fn median(report: &Value, direction: &str) -> f64 {
    report[direction]["figure"]["median"]
        .as_f64()
        .unwrap_or_else(|| panic!("no {direction} figure in {report:#}"))
}

/// iperf3 from host 1 to host 2 (`reverse`: 2 → 1) for 5 s after 1 s omitted, in Mbit/s as
/// the receiver counted it.
fn iperf3(net: &Netns, reverse: bool) -> f64 {
    let mut server = net
        .command(2, "iperf3")
        .args(["-s", "-1", "-B", &net.ip(2)])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start iperf3 -s");
    std::thread::sleep(Duration::from_millis(500));
    let mut client = net.command(1, "iperf3");
    client.args(["-c", &net.ip(2), "-t", "5", "-O", "1", "-J"]);
    if reverse {
        client.arg("-R");
    }
    let out = client.output().expect("run iperf3 -c");
    let _ = server.wait();
    let v: Value = serde_json::from_slice(&out.stdout).expect("iperf3 JSON");
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or_else(|| panic!("iperf3 gave no figure: {v:#}"))
        / 1e6
}

#[test]
fn net_bench_between_two_namespaces_matches_the_shaped_link_and_iperf3() {
    let Some(net) = Netns::new(2) else { return };
    if !capable(have("tc"), "tc (package iproute2)") || !capable(have("iperf3"), "iperf3 (package iperf3)") {
        return;
    }
    let shaped = net
        .shape(1, SHAPED_MBIT as u32)
        .and_then(|()| net.shape(2, SHAPED_MBIT as u32));
    if !capable(shaped.is_ok(), &format!("the tbf qdisc ({shaped:?})")) {
        return;
    }
    let sb = tempfile::tempdir().expect("tempdir");
    let c1 = crate::cluster::first_coordinator_in(&net, sb.path());
    let token = c1
        .cli_ok(&["token", "create", "--auto-approve", "--uses", "1"])
        .trim()
        .to_string();
    let mut w2 = Agent::start_in(
        Some(&net.name(2)),
        sb.path(),
        &sb.path().join("w2"),
        &["--token", &token, "--node-name", "w2"],
    );
    w2.wait_approved(Duration::from_secs(30));

    // From c1's namespace (c1's CLI, its admin token): c1 → w2 and back, 5 s each way.
    let report = json(&c1.cli(&["-o", "json", "bench", "net", "--peer", "w2", "--from", "c1"]));
    assert_eq!(report["format"], "cortex-bench-net/1");
    assert_eq!(report["path"]["tls"], false, "{report:#}");
    assert_eq!(report["error"], Value::Null, "{report:#}");
    assert!(
        report["addr"]
            .as_str()
            .is_some_and(|a| a.starts_with(&format!("{}:", net.ip(2)))),
        "w2 listens on its cluster address: {report:#}"
    );
    let (send, receive) = (median(&report, "send"), median(&report, "receive"));
    for (what, v) in [("send", send), ("receive", receive)] {
        assert!(
            (0.5 * SHAPED_MBIT..=1.1 * SHAPED_MBIT).contains(&v),
            "{what} median {v:.1} Mbit/s on a {SHAPED_MBIT} Mbit/s link: {report:#}"
        );
        let samples = report[what]["samples_mbps"].as_array().map(Vec::len);
        assert_eq!(samples, Some(10), "5 s in 500 ms samples: {report:#}");
    }

    // Recorded where a user looks: the peer's node record and the event list.
    let node = json(&c1.cli(&["-o", "json", "node", "show", "w2"]));
    let recorded = &node["net_bench"];
    assert_eq!(median(recorded, "send"), send, "{node:#}");
    assert!(
        node.get("net_bench_request").is_none_or(Value::is_null),
        "{node:#}"
    );
    let shown = c1.cli_ok(&["node", "show", "w2"]);
    assert!(
        shown.contains("NETWORK") && shown.contains("send (c1 → w2)"),
        "{shown}"
    );
    let events = c1.cli_ok(&["events"]);
    assert!(events.contains("network benchmark from c1"), "{events}");
    let table = c1.cli_ok(&["bench", "net", "--peer", "w2", "--seconds", "1", "--from", "c1"]);
    assert!(
        table.contains("send (c1 → w2)") && table.contains("no TLS"),
        "{table}"
    );

    // The same link measured by iperf3.
    let (i_send, i_receive) = (iperf3(&net, false), iperf3(&net, true));
    eprintln!(
        "shaped {SHAPED_MBIT} Mbit/s: cortex send {send:.1} / receive {receive:.1} Mbit/s (median of 500 ms); \
         iperf3 {i_send:.1} / {i_receive:.1} Mbit/s (5 s mean)"
    );
    for (what, ours, theirs) in [("send", send, i_send), ("receive", receive, i_receive)] {
        assert!(
            (0.8..=1.25).contains(&(ours / theirs)),
            "{what}: cortex {ours:.1} Mbit/s vs iperf3 {theirs:.1} Mbit/s over the same link"
        );
    }
    net.unshape(1);
    net.unshape(2);
}

#[test]
fn net_bench_refuses_what_it_cannot_run() {
    let sb = tempfile::tempdir().expect("tempdir");
    let c1 = Node::start_with(
        sb.path(),
        &sb.path().join("c1"),
        &["--node-name", "c1"],
        crate::cluster::fast_liveness,
    );
    let fail = |args: &[&str]| {
        let out = c1.cli(args);
        assert!(!out.status.success(), "{args:?} succeeded");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };

    // Out-of-range seconds: a usage error naming the flag, before anything is asked.
    for s in ["0", "31"] {
        let (code, err) = fail(&["bench", "net", "--peer", "c1", "--seconds", s]);
        assert_eq!(code, Some(2), "{err}");
        assert!(err.contains("--seconds"), "{err}");
    }
    // An unknown peer: named, with the close match.
    let (_, err) = fail(&["bench", "net", "--peer", "c2"]);
    assert!(err.contains("\"c2\"") && err.contains("c1"), "{err}");

    // A peer that is not ready (pending approval).
    let token = c1.cli_ok(&["token", "create"]).trim().to_string();
    let _pending = Agent::start(
        sb.path(),
        &sb.path().join("p1"),
        &["--token", &token, "--node-name", "p1"],
    );
    eventually(Duration::from_secs(20), "p1 pending", || {
        c1.cli_ok(&["node", "list"]).contains("pending").then_some(())
    });
    let (_, err) = fail(&["bench", "net", "--peer", "p1"]);
    assert!(err.contains("p1 is pending"), "{err}");

    // One run at a time per peer: a second request while the first is pending is refused.
    let mut first = crate::harness::cortex();
    crate::harness::node::isolate(&mut first, sb.path());
    let first = first
        .args(["bench", "net", "--peer", "c1", "--seconds", "2"])
        .env("CORTEX_SERVER", &c1.grpc)
        .env("CORTEX_TOKEN_FILE", c1.token_file())
        .env("CORTEX_CA_FILE", c1.data_dir.join("ca.crt"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the first run");
    eventually(Duration::from_secs(10), "the first run pending", || {
        let n = json(&c1.cli(&["-o", "json", "node", "show", "c1"]));
        n["net_bench_request"].is_object().then_some(())
    });
    let (_, err) = fail(&["bench", "net", "--peer", "c1"]);
    assert!(err.contains("one at a time"), "{err}");
    let out = first.wait_with_output().expect("first run");
    assert!(
        out.status.success(),
        "the first run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Mbit/s"));

    // A read token may not ask.
    let read = json(&c1.cli(&[
        "-o", "json", "token", "create", "--kind", "api", "--scope", "read",
    ]))["secret"]
        .as_str()
        .expect("token")
        .to_string();
    let out = c1.cli(&["bench", "net", "--peer", "c1", "--token", &read]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("operate"), "{err}");
}

/// `POST /api/v1/nodes/{key}/net-bench`: the coordinator that receives the request is the
/// measuring end (the HTTP client cannot be one). It answers 202 at once with the request and
/// who measures; the peer records the report, `from` naming the coordinator. Refusals name
/// the field, the scope or the rule.
#[test]
fn net_bench_over_the_json_api_is_measured_by_the_coordinator() {
    use crate::harness::page::send;
    let sb = tempfile::tempdir().expect("tempdir");
    let c1 = Node::start_with(
        sb.path(),
        &sb.path().join("c1"),
        &["--node-name", "c1"],
        crate::cluster::fast_liveness,
    );
    let token = c1
        .cli_ok(&["token", "create", "--auto-approve", "--uses", "1"])
        .trim()
        .to_string();
    let mut w2 = Agent::start(
        sb.path(),
        &sb.path().join("w2"),
        &["--token", &token, "--node-name", "w2"],
    );
    w2.wait_approved(Duration::from_secs(30));
    let admin = std::fs::read_to_string(c1.token_file()).expect("admin token");
    let auth = format!("Bearer {}", admin.trim());
    let read = json(&c1.cli(&[
        "-o", "json", "token", "create", "--kind", "api", "--scope", "read",
    ]))["secret"]
        .as_str()
        .expect("token")
        .to_string();
    let read = format!("Bearer {read}");
    let post = |path: &str, auth: Option<&str>, body: &str| {
        let mut h = vec![("Content-Type", "application/json")];
        if let Some(a) = auth {
            h.push(("Authorization", a));
        }
        let r = send(&c1.http, "POST", path, &h, Some(body));
        let v: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
        (r.status, v, r.body)
    };
    let path = "/api/v1/nodes/w2/net-bench";

    // Credentials first, then the body: each refusal names what to fix.
    let (s, _, b) = post(path, None, r#"{"seconds":1}"#);
    assert_eq!(s, 401, "no token: {b}");
    let (s, _, b) = post(path, Some(&read), r#"{"seconds":1}"#);
    assert_eq!(s, 403, "read token: {b}");
    assert!(b.contains("operate"), "{b}");
    for (body, field) in [
        (r#"{"seconds":0}"#, "seconds"),
        (r#"{"seconds":31}"#, "seconds"),
        (r#"{"seconds":"5"}"#, "seconds"),
        (r#"{"seconds":1,"from":"me"}"#, "from"),
        ("{", "body"),
    ] {
        let (s, v, b) = post(path, Some(&auth), body);
        assert_eq!(s, 400, "{body}: {b}");
        assert_eq!(v["error"]["code"], "invalid_argument", "{body}: {b}");
        let msg = v["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains(field), "{body}: the message names {field}: {msg}");
    }
    let (s, _, b) = post("/api/v1/nodes/w3/net-bench", Some(&auth), "{}");
    assert_eq!(s, 404, "unknown node: {b}");
    assert!(b.contains("w3") && b.contains("w2"), "{b}");
    let (s, v, b) = post("/api/v1/nodes/c1/net-bench", Some(&auth), "{}");
    assert_eq!(s, 400, "the coordinator itself: {b}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("invalid node:")),
        "{b}"
    );

    // A 1 s run: 202 at once, the coordinator named as the measuring end.
    let (s, v, b) = post(path, Some(&auth), r#"{"seconds":1}"#);
    assert_eq!(s, 202, "{b}");
    assert_eq!(v["measured_by"]["name"], "c1", "{v:#}");
    assert_eq!(v["seconds"], 1, "{v:#}");
    assert_eq!(v["peer"]["name"], "w2", "{v:#}");
    assert_eq!(v["peer"]["net_bench_request"]["from"], "c1", "{v:#}");
    let asked = v["requested_at_ms"].as_u64().expect("requested_at_ms");
    // One run per peer at a time.
    let (s, _, b) = post(path, Some(&auth), r#"{"seconds":1}"#);
    assert_eq!(s, 409, "a second run while the first is pending: {b}");
    assert!(b.contains("one at a time"), "{b}");

    let node = eventually(Duration::from_secs(30), "w2 records the run", || {
        let n = crate::harness::http::get(&c1.http, "/api/v1/nodes/w2")
            .ok()?
            .json();
        let answered = n["net_bench_request"].is_null() && n["net_bench"]["started_at_ms"].as_u64()? >= asked;
        answered.then_some(n)
    });
    let report = &node["net_bench"];
    assert_eq!(report["format"], "cortex-bench-net/1", "{node:#}");
    assert_eq!(report["from"], "c1", "the coordinator measured: {report:#}");
    assert_eq!(report["error"], Value::Null, "{report:#}");
    assert_eq!(report["seconds"], 1, "{report:#}");
    for d in ["send", "receive"] {
        assert!(median(report, d) > 0.0, "{d}: {report:#}");
    }
    let events = c1.cli_ok(&["events"]);
    assert!(events.contains("network benchmark from c1"), "{events}");
}
