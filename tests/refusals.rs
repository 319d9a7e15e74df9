//! No credentials → refused, everywhere: ONE test that enumerates every mutating surface and
//! calls each without credentials and with a `read` token, then checks nothing changed.
//!
//! Nothing is hand-listed where a new entry could be forgotten:
//! - HTTP: the route table the server itself is built from (`GET /api/v1`); every route that
//!   is not a GET is called.
//! - gRPC: every `rpc` of every service in `agent/proto/proto/cortex.proto`, called by name
//!   with an empty message and no client certificate. Only the reads listed in `GRPC_READS`
//!   may answer; anything else (a new RPC included) must be refused.
//! - MCP: every tool that `tools/list` does not annotate `readOnlyHint: true`
//!   (`tests/refusals_mcp.py`, the official Python SDK).
//!
//! The targets are real (a pending node, a running task, a token, a workflow), so a call that
//! got through would change the state; the state is compared before and after.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use cortex_cluster::pki::{client_tls, lazy_channel};
use serde_json::{json, Value};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::Code;

use crate::cluster::{fast_liveness, join_token};
use crate::harness::page::send;
use crate::harness::{capable, eventually, http, is_root, Agent, Node};

/// gRPC methods that only read (open on the listener like the JSON API's GETs). `WhoAmI`
/// answers a read token and refuses no token.
const GRPC_READS: &[&str] = &[
    "GetStatus",
    "ListNodes",
    "GetNode",
    "ListEvents",
    "GetTask",
    "ListTasks",
    "TaskLogs",
    "WatchTask",
    "GetWorkflow",
    "ListWorkflows",
    "GetTaskGroup",
    "WhoAmI",
];

/// What must not change: nodes (state, labels), tasks (state), tokens (revoked), workflows,
/// the event sequence and the Raft log.
fn fingerprint(node: &Node, admin: &str) -> Value {
    let get = |p: &str| http::get(&node.http, p).expect("GET").json();
    let cluster = get("/api/v1/cluster");
    let nodes: Vec<Value> = get("/api/v1/nodes")["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| json!([n["id"], n["state"], n["labels"]]))
        .collect();
    let tasks: Vec<Value> = get("/api/v1/tasks?limit=1000")["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| json!([t["id"], t["state"]]))
        .collect();
    let tokens = send(
        &node.http,
        "GET",
        "/api/v1/tokens",
        &[("Authorization", &format!("Bearer {admin}"))],
        None,
    )
    .json();
    let tokens: Vec<Value> = tokens["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .map(|t| json!([t["id"], t["revoked"]]))
        .collect();
    let events = get("/api/v1/events?limit=1000")["events"]
        .as_array()
        .map(Vec::len);
    json!({
        "last_log_index": cluster["last_log_index"],
        "nodes": nodes,
        "tasks": tasks,
        "tokens": tokens,
        "workflows": get("/api/v1/workflows"),
        "events": events,
    })
}

/// A body that would succeed if authorization were skipped.
fn body_for(path: &str, node: u64, task: &str) -> String {
    let t = json!([{ "kind": "exec", "command": ["true"] }]);
    match path {
        "/api/v1/tasks" => json!({ "tasks": t }),
        "/api/v1/workflows" => json!({ "name": "sneaky", "tasks": t }),
        "/api/v1/tokens" => json!({ "kind": "api", "scope": "admin" }),
        "/api/v1/tasks/cancel" => json!({ "ids": [task] }),
        p if p.ends_with("/labels") => json!({ "set": { "owned": "yes" } }),
        p if p.ends_with("/reject") => json!({ "reason": "sneaky" }),
        p if p.ends_with("/net-bench") => json!({ "seconds": 1 }),
        _ => json!({}),
    }
    .to_string()
    .replace("NODE", &node.to_string())
}

/// The status page's own writes (`agent/src/web/mod.rs`: every `post` route but login and
/// logout, which only make or drop the caller's own session): refused without a session, with
/// a made-up session cookie, and for a session logged in with a read token (with its CSRF
/// token, so that the scope is what refuses it). Logging in with an unknown token makes no
/// session.
fn page_refusals(node: &Node, read: &str, pending: u64, task: &str) -> usize {
    let addr = &node.http;
    let origin = format!("http://{addr}");
    let bogus = crate::harness::page::login(addr, "cxt_00000000_nope");
    assert_eq!(
        bogus.reply.status, 401,
        "login with an unknown token: {}",
        bogus.reply.body
    );
    assert!(bogus.cookie.is_empty(), "no session for an unknown token");
    let reader = crate::harness::page::login(addr, read);
    assert_eq!(
        reader.reply.status, 200,
        "login with a read token: {}",
        reader.reply.body
    );
    let routes = [
        format!("/ui/nodes/{pending}/approve"),
        format!("/ui/nodes/{pending}/reject"),
        format!("/ui/nodes/{pending}/drain"),
        format!("/ui/nodes/{pending}/undrain"),
        format!("/ui/tasks/{task}/cancel"),
    ];
    let mut n = 1;
    for path in &routes {
        for (who, cookie, csrf, want) in [
            ("no session", "", "", 401),
            ("a made-up session", "cortex_session=0000000000000000", "x", 401),
            (
                "a read session",
                reader.cookie.as_str(),
                reader.csrf.as_str(),
                403,
            ),
        ] {
            let mut h = vec![("Content-Type", "application/json"), ("Origin", origin.as_str())];
            if !cookie.is_empty() {
                h.push(("Cookie", cookie));
                h.push(("X-Cortex-CSRF", csrf));
            }
            let reply = send(addr, "POST", path, &h, Some("{}"));
            assert_eq!(reply.status, want, "POST {path} with {who}: {}", reply.body);
            n += 1;
        }
    }
    n
}

fn http_refusals(node: &Node, read: &str, pending: u64, task: &str, victim_token: &str) -> usize {
    let index = http::get(&node.http, "/api/v1").expect("GET /api/v1").json();
    let mut n = 0;
    for r in index["routes"].as_array().expect("routes") {
        if r["mutating"] != true {
            continue;
        }
        let method = r["method"].as_str().expect("method");
        let template = r["path"].as_str().expect("path");
        let path = template
            .replace("{key}", &pending.to_string())
            .replace("/tasks/{id}", &format!("/tasks/{task}"))
            .replace("/tokens/{id}", &format!("/tokens/{victim_token}"));
        assert!(
            !path.contains('{'),
            "no test value for a parameter of {method} {template}"
        );
        let body = body_for(template, pending, task);
        for (who, headers) in [
            ("no token", vec![]),
            (
                "an unknown token",
                vec![("Authorization", "Bearer cxt_00000000_nope".to_string())],
            ),
            ("a read token", vec![("Authorization", format!("Bearer {read}"))]),
        ] {
            let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let reply = send(&node.http, method, &path, &h, Some(&body));
            let want = if who == "a read token" { 403 } else { 401 };
            assert_eq!(reply.status, want, "{method} {path} with {who}: {}", reply.body);
            n += 1;
        }
    }
    n
}

/// `(service, method, server-streaming)` for every rpc in the proto file.
fn proto_methods() -> (String, Vec<(String, String, bool)>) {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/proto/proto/cortex.proto"))
        .expect("read cortex.proto");
    let mut package = String::new();
    let mut service = String::new();
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if let Some(p) = line.strip_prefix("package ") {
            package = p.trim_end_matches(';').trim().to_string();
        } else if let Some(s) = line.strip_prefix("service ") {
            service = s.trim_end_matches('{').trim().to_string();
        } else if let Some(rpc) = line.strip_prefix("rpc ") {
            let name = rpc.split('(').next().unwrap_or_default().trim().to_string();
            let streaming = rpc.split("returns").nth(1).is_some_and(|r| r.contains("stream "));
            out.push((service.clone(), name, streaming));
        }
    }
    (package, out)
}

type Empty = cortex_proto::v1::GetStatusRequest;

async fn call_raw(
    ch: &tonic::transport::Channel,
    path: &str,
    streaming: bool,
    token: Option<&str>,
) -> Result<(), tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(ch.clone());
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let mut req = tonic::Request::new(Empty {});
    if let Some(t) = token {
        req.metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse().expect("header"));
    }
    let path = PathAndQuery::try_from(path.to_string()).expect("path");
    let codec = tonic_prost::ProstCodec::<Empty, Empty>::default();
    if streaming {
        let mut s = grpc.server_streaming(req, path, codec).await?.into_inner();
        match tokio::time::timeout(Duration::from_secs(2), s.message()).await {
            Ok(r) => r.map(|_| ()),
            Err(_) => Ok(()), // open and silent: answered
        }
    } else {
        grpc.unary(req, path, codec).await.map(|_| ())
    }
}

async fn grpc_refusals(node: &Node, read: &str) -> usize {
    let ca = std::fs::read_to_string(node.data_dir.join("ca.crt")).expect("ca.crt");
    let ch = lazy_channel(&node.grpc, &client_tls(&ca, None), Duration::from_secs(3)).expect("channel");
    let (package, methods) = proto_methods();
    assert!(
        methods.len() > 20,
        "parsed {} rpcs from cortex.proto",
        methods.len()
    );
    let mut n = 0;
    for (service, method, streaming) in &methods {
        let path = format!("/{package}.{service}/{method}");
        let is_read = service == "Cortex" && GRPC_READS.contains(&method.as_str());
        for token in [None, Some("cxt_00000000_nope"), Some(read)] {
            let r = call_raw(&ch, &path, *streaming, token).await;
            if is_read && (token == Some(read) || method != "WhoAmI") {
                // Reads may answer (an empty key is NotFound / InvalidArgument); never a refusal
                // that would hide a broken read, and never a change (checked at the end).
                continue;
            }
            let code = r.as_ref().err().map(tonic::Status::code);
            let refused = matches!(code, Some(Code::Unauthenticated | Code::PermissionDenied))
                // Join needs no token on the transport: its token is a field, and an empty one
                // is refused as an argument.
                || (method == "Join" && matches!(code, Some(Code::InvalidArgument | Code::Unauthenticated)));
            assert!(refused, "{path} with token {token:?} was not refused: {r:?}");
            n += 1;
        }
    }
    n
}

fn mcp_refusals(
    node: &Node,
    py: &PathBuf,
    dir: &std::path::Path,
    read_file: &std::path::Path,
    pending: u64,
    task: &str,
) -> usize {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/refusals_mcp.py");
    let out = Command::new(py)
        .arg(script)
        .arg("--url")
        .arg(format!("http://{}/mcp", node.http))
        .arg("--token-file")
        .arg(node.token_file())
        .arg("--read-token-file")
        .arg(read_file)
        .args(["--node", &pending.to_string(), "--task", task])
        .current_dir(dir)
        .output()
        .expect("run refusals_mcp.py");
    assert!(
        out.status.success(),
        "refusals_mcp.py failed:\n{}\ncoordinator's log (tail):\n{}",
        String::from_utf8_lossy(&out.stderr),
        node.stderr()
            .lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .join("\n")
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("refusals_mcp.py prints JSON");
    let writes = v["write_tools"].as_array().expect("write_tools");
    for must in [
        "approve_node",
        "reject_node",
        "drain_node",
        "undrain_node",
        "submit_task",
        "cancel_task",
        "run_benchmark",
        "run_network_benchmark",
    ] {
        assert!(
            writes.iter().any(|w| w == must),
            "{must} is a write tool: {writes:?}"
        );
    }
    for w in writes {
        let w = w.as_str().expect("name");
        assert_eq!(v["no_token"][w], 401, "MCP {w} without a token");
        let r = &v["read_token"][w];
        assert_eq!(r["is_error"], true, "MCP {w} with a read token: {r}");
        let text = r["text"].as_str().unwrap_or_default();
        assert!(
            text.contains("operate") || text.contains("admin"),
            "MCP {w} with a read token names the scope: {text}"
        );
    }
    writes.len() * 2
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mutation_is_refused_without_credentials_or_with_a_read_token() {
    let py = crate::mcp::python();
    if !capable(
        py.is_some(),
        "a Python with the `mcp` package: run scripts/test.sh (it makes the venv) or set CORTEX_TEST_PYTHON",
    ) || !capable(
        is_root(),
        "root (cgroups for the running task the cancels aim at)",
    ) {
        return;
    }
    let Some(py) = py else { return };
    let sb = tempfile::tempdir().expect("tempdir");
    let sbp = sb.path().to_path_buf();
    let node = tokio::task::spawn_blocking({
        let sbp = sbp.clone();
        move || Node::start_with(&sbp, &sbp.join("c1"), &[], fast_liveness)
    })
    .await
    .expect("start");
    let admin = std::fs::read_to_string(node.token_file())
        .expect("admin token")
        .trim()
        .to_string();

    // Real targets: a pending node, a running task, a token to revoke, a workflow.
    let join = join_token(&node, &[]);
    let _agent = Agent::start(
        &sbp,
        &sbp.join("pending"),
        &["--token", &join, "--node-name", "pending"],
    );
    let pending = eventually(Duration::from_secs(30), "a pending node", || {
        let nodes = http::get(&node.http, "/api/v1/nodes?state=pending").ok()?.json();
        nodes["nodes"].as_array()?.first()?["id"].as_u64()
    });
    let auth = format!("Bearer {admin}");
    let mk = |scope: &str| {
        let r = send(
            &node.http,
            "POST",
            "/api/v1/tokens",
            &[("Authorization", &auth)],
            Some(&json!({ "scope": scope }).to_string()),
        );
        assert_eq!(r.status, 201, "create a {scope} token: {}", r.body);
        r.json()
    };
    let read = mk("read")["secret"].as_str().expect("secret").to_string();
    let victim = mk("operate")["token"]["id"].as_str().expect("id").to_string();
    let read_file = sbp.join("read.token");
    std::fs::write(&read_file, &read).expect("write read token");
    let sub = send(
        &node.http,
        "POST",
        "/api/v1/tasks",
        &[("Authorization", &auth)],
        Some(&json!({ "tasks": [{ "kind": "exec", "command": ["sleep", "300"] }] }).to_string()),
    );
    assert_eq!(sub.status, 201, "submit: {}", sub.body);
    let task = sub.json()["task_ids"][0].as_str().expect("task id").to_string();
    let wf = send(
        &node.http,
        "POST",
        "/api/v1/workflows",
        &[("Authorization", &auth)],
        Some(
            &json!({ "name": "w", "tasks": [{ "name": "a", "kind": "exec", "command": ["true"] }] })
                .to_string(),
        ),
    );
    assert_eq!(wf.status, 201, "workflow: {}", wf.body);
    let settled = |n: &Node| {
        let t = http::get(&n.http, &format!("/api/v1/tasks/{task}")).ok()?.json();
        // Nothing but the long task may still be on its way (the workflow's task, placed or
        // running, would finish during the comparison below).
        let wf_done = http::get(&n.http, "/api/v1/tasks?state=pending,placed,running")
            .ok()?
            .json()["tasks"]
            .as_array()?
            .iter()
            .all(|t| t["id"] == task.as_str());
        (t["state"] == "running" && wf_done).then_some(())
    };
    eventually(
        Duration::from_secs(30),
        "the task running, the workflow done",
        || settled(&node),
    );
    let before = fingerprint(&node, &admin);

    let http_calls =
        http_refusals(&node, &read, pending, &task, &victim) + page_refusals(&node, &read, pending, &task);
    let grpc_calls = grpc_refusals(&node, &read).await;
    let mcp_calls = {
        let (sbp, read_file, task) = (sbp.clone(), read_file.clone(), task.clone());
        let node_ref = &node;
        tokio::task::block_in_place(|| mcp_refusals(node_ref, &py, &sbp, &read_file, pending, &task))
    };
    eprintln!("refused: {http_calls} HTTP calls, {grpc_calls} gRPC calls, {mcp_calls} MCP calls");

    let after = fingerprint(&node, &admin);
    assert_eq!(before, after, "nothing changed");
}
