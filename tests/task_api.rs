//! The task RPCs refuse what they must: no token → no mutation; malformed or unknown fields →
//! an error naming them; node-side RPCs need the node's own certificate.

use std::time::Duration;

use cortex_cluster::pki::{client_tls, lazy_channel, NodeCredentials};
use cortex_proto::v1 as pb;
use cortex_proto::v1::cortex_client::CortexClient;
use tonic::Code;

use crate::harness::Node;

fn client(node: &Node, identity: Option<&NodeCredentials>) -> CortexClient<tonic::transport::Channel> {
    let ca = std::fs::read_to_string(node.data_dir.join("ca.crt")).expect("ca");
    let ch = lazy_channel(&node.grpc, &client_tls(&ca, identity), Duration::from_secs(3)).expect("channel");
    CortexClient::new(ch)
}

fn with_token<T>(node: &Node, msg: T) -> tonic::Request<T> {
    let token = std::fs::read_to_string(node.token_file()).expect("token");
    let mut r = tonic::Request::new(msg);
    r.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", token.trim()).parse().expect("header"),
    );
    r
}

fn json(s: &str) -> pb::JsonRequest {
    pb::JsonRequest {
        input_json: s.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_rpcs_refuse_bad_callers_and_bad_input() {
    let sb = tempfile::tempdir().expect("tempdir");
    let node = Node::start(sb.path(), &sb.path().join("n1"));
    let mut c = client(&node, None);
    let ok_task = r#"{"tasks":[{"command":["true"]}]}"#;

    // No token: every mutation is refused.
    let e = c
        .submit_tasks(json(ok_task))
        .await
        .expect_err("submit without a token");
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    let e = c
        .cancel_tasks(json(r#"{"ids":["t000000000000"]}"#))
        .await
        .expect_err("cancel without a token");
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");

    // Malformed input names the field.
    let cases = [
        ("{", "input_json"),
        (r#"{"tasks":[{"comand":["x"]}]}"#, "comand"),
        (r#"{"tasks":[{"command":[]}]}"#, "command"),
        (
            r#"{"tasks":[{"command":["x"],"resources":{"memory_bytes":1}}]}"#,
            "resources.memory_bytes",
        ),
        (r#"{"tasks":[{"command":["x"],"kind":"vm"}]}"#, "kind"),
        (
            r#"{"tasks":[{"command":["x"],"depends_on":["nope"]}]}"#,
            "depends_on[0]",
        ),
        (
            r#"{"tasks":[{"command":["x"]}],"fanout":{"mode":"nodes","count":50}}"#,
            "fanout",
        ),
        (r#"{"tasks":[{"command":["x"]},{"command":["y"]}]}"#, "workflow"),
        (
            r#"{"tasks":[{"command":["x"],"constraints":{"gpus":1}}]}"#,
            "gpus",
        ),
    ];
    for (input, field) in cases {
        let e = c
            .submit_tasks(with_token(&node, json(input)))
            .await
            .expect_err(input);
        assert_eq!(e.code(), Code::InvalidArgument, "{input}: {e:?}");
        assert!(
            e.message().contains(field),
            "{input}: expected {field} in {:?}",
            e.message()
        );
    }
    let list: Vec<serde_json::Value> =
        serde_json::from_str(&c.list_tasks(json("")).await.expect("list").into_inner().json).expect("json");
    assert!(list.is_empty(), "rejected submissions created tasks: {list:?}");
    let e = c
        .list_tasks(json(r#"{"states":["sleeping"]}"#))
        .await
        .expect_err("bad filter");
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = c
        .get_task(pb::KeyRequest { key: "t123".into() })
        .await
        .expect_err("unknown task");
    assert_eq!(e.code(), Code::NotFound);

    // Node-side RPCs: no certificate → refused; another node's id → refused.
    let e = c
        .report_tasks(pb::ReportTasksRequest {
            node_id: node.node_id(),
            reports_json: "[]".into(),
        })
        .await
        .expect_err("reports without a certificate");
    assert_eq!(e.code(), Code::Unauthenticated);
    let e = c
        .watch_assignments(pb::WatchAssignmentsRequest {
            node_id: node.node_id(),
        })
        .await
        .expect_err("assignments without a certificate");
    assert_eq!(e.code(), Code::Unauthenticated);
    let read = |f: &str| std::fs::read_to_string(node.data_dir.join(f)).expect(f);
    let creds = NodeCredentials {
        key_pem: read("node.key"),
        cert_pem: read("node.crt"),
        ca_pem: read("ca.crt"),
    };
    let mut n = client(&node, Some(&creds));
    let e = n
        .report_tasks(pb::ReportTasksRequest {
            node_id: node.node_id() + 1,
            reports_json: "[]".into(),
        })
        .await
        .expect_err("another node's reports");
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = n
        .report_tasks(pb::ReportTasksRequest {
            node_id: node.node_id(),
            reports_json: "[{".into(),
        })
        .await
        .expect_err("malformed reports");
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("reports_json"));
}
