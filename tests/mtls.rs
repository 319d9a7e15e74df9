//! Node-to-node RPCs (Raft, heartbeats, forwarding) need a certificate from this cluster's CA
//! with the right role; anything else is refused.

use std::path::Path;
use std::time::Duration;

use cortex_cluster::pki::{client_tls, lazy_channel, NodeCredentials};
use cortex_proto::v1::cortex_client::CortexClient;
use cortex_proto::v1::raft_client::RaftClient;
use cortex_proto::v1::{ForwardRequest, HeartbeatRequest, RaftPayload};
use tonic::Code;

use crate::cluster::join_token;
use crate::harness::{Agent, Node};

fn creds(dir: &Path) -> NodeCredentials {
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
    NodeCredentials {
        key_pem: read("node.key"),
        cert_pem: read("node.crt"),
        ca_pem: read("ca.crt"),
    }
}

async fn calls(
    addr: &str,
    ca_pem: &str,
    identity: Option<&NodeCredentials>,
    node_id: u64,
) -> [Result<(), tonic::Status>; 3] {
    let tls = client_tls(ca_pem, identity);
    let ch = lazy_channel(addr, &tls, Duration::from_secs(3)).expect("channel");
    let vote = RaftClient::new(ch.clone())
        .vote(RaftPayload { json: b"{}".to_vec() })
        .await
        .map(|_| ());
    let beat = CortexClient::new(ch.clone())
        .heartbeat(HeartbeatRequest {
            node_id,
            ..Default::default()
        })
        .await
        .map(|_| ());
    let fwd = CortexClient::new(ch)
        .forward(ForwardRequest {
            command_json: "{}".into(),
        })
        .await
        .map(|_| ());
    [vote, beat, fwd]
}

fn code(r: &Result<(), tonic::Status>) -> Option<Code> {
    r.as_ref().err().map(|s| s.code())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_heartbeat_and_forward_need_the_right_certificate() {
    let sb = tempfile::tempdir().expect("tempdir");
    let coord = Node::start(sb.path(), &sb.path().join("c1"));
    let other = Node::start(sb.path(), &sb.path().join("other-cluster"));
    let token = join_token(&coord, &["--auto-approve"]);
    let wdir = sb.path().join("w1");
    let mut worker = Agent::start(sb.path(), &wdir, &["--token", &token]);
    let wid = tokio::task::block_in_place(|| worker.wait_approved(Duration::from_secs(20)))["node_id"]
        .as_u64()
        .expect("id");
    let ca = std::fs::read_to_string(sb.path().join("c1/ca.crt")).expect("ca");

    // No client certificate: every node RPC is refused.
    let [vote, beat, fwd] = calls(&coord.grpc, &ca, None, wid).await;
    assert_eq!(code(&vote), Some(Code::Unauthenticated), "{vote:?}");
    assert_eq!(code(&beat), Some(Code::Unauthenticated), "{beat:?}");
    assert_eq!(code(&fwd), Some(Code::Unauthenticated), "{fwd:?}");

    // A certificate from another cluster's CA: the TLS layer refuses the connection.
    let foreign = creds(&sb.path().join("other-cluster"));
    let [vote, beat, _] = calls(&coord.grpc, &ca, Some(&foreign), other.node_id()).await;
    assert!(
        vote.is_err() && beat.is_err(),
        "foreign certificates must be refused: {vote:?} {beat:?}"
    );
    assert!(
        !matches!(code(&vote), Some(Code::InvalidArgument) | Some(Code::Ok)),
        "{vote:?}"
    );

    // This cluster's worker certificate: heartbeats for itself only; no Raft, no forwarding.
    let w = creds(&wdir);
    let [vote, beat, fwd] = calls(&coord.grpc, &ca, Some(&w), wid).await;
    assert_eq!(code(&vote), Some(Code::PermissionDenied), "{vote:?}");
    assert!(beat.is_ok(), "{beat:?}");
    assert_eq!(code(&fwd), Some(Code::PermissionDenied), "{fwd:?}");
    let [_, spoof, _] = calls(&coord.grpc, &ca, Some(&w), coord.node_id()).await;
    assert_eq!(
        code(&spoof),
        Some(Code::PermissionDenied),
        "a worker cannot heartbeat for another node"
    );
    // Its own heartbeat with an address that is not ip:port is refused, naming the field.
    let tls = client_tls(&ca, Some(&w));
    let ch = lazy_channel(&coord.grpc, &tls, Duration::from_secs(3)).expect("channel");
    for bad in ["nowhere", "0.0.0.0:7071", "10.0.0.1:0"] {
        let r = CortexClient::new(ch.clone())
            .heartbeat(HeartbeatRequest {
                node_id: wid,
                grpc_addr: bad.into(),
                ..Default::default()
            })
            .await;
        let e = r.expect_err(bad);
        assert_eq!(e.code(), Code::InvalidArgument, "{bad}: {e:?}");
        assert!(e.message().contains("grpc_addr"), "{bad}: {}", e.message());
    }

    // A coordinator certificate gets past authentication (the empty payload is then refused
    // as malformed, which proves the call reached the handler).
    let c = creds(&sb.path().join("c1"));
    let [vote, _, fwd] = calls(&coord.grpc, &ca, Some(&c), coord.node_id()).await;
    assert_eq!(code(&vote), Some(Code::InvalidArgument), "{vote:?}");
    assert_eq!(code(&fwd), Some(Code::InvalidArgument), "{fwd:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_oversized_and_flooding_join_requests_are_refused() {
    use cortex_proto::v1::JoinRequest;
    let sb = tempfile::tempdir().expect("tempdir");
    let coord = Node::start(sb.path(), &sb.path().join("c1"));
    let ca = std::fs::read_to_string(sb.path().join("c1/ca.crt")).expect("ca");
    let ch = lazy_channel(&coord.grpc, &client_tls(&ca, None), Duration::from_secs(3)).expect("channel");
    let mut client = CortexClient::new(ch);
    let (_, csr) = cortex_cluster::pki::new_key_and_csr(7).expect("csr");
    let good = JoinRequest {
        token_secret: String::new(),
        node_id: 7,
        name: "n7".into(),
        role: "worker".into(),
        grpc_addr: String::new(),
        http_addr: "127.0.0.1:9".into(),
        inventory_json: "{}".into(),
        verification_code: cortex_cluster::pki::csr_verification_code(&csr).expect("code"),
        csr_pem: csr,
        bench_json: String::new(),
    };
    let cases: Vec<(JoinRequest, &str)> = vec![
        (
            JoinRequest {
                node_id: 0,
                ..good.clone()
            },
            "invalid node_id",
        ),
        (
            JoinRequest {
                name: "bad name!".into(),
                ..good.clone()
            },
            "invalid name",
        ),
        (
            JoinRequest {
                role: "king".into(),
                ..good.clone()
            },
            "invalid role",
        ),
        (
            JoinRequest {
                http_addr: "nowhere".into(),
                ..good.clone()
            },
            "invalid http_addr",
        ),
        (
            JoinRequest {
                csr_pem: "garbage".into(),
                ..good.clone()
            },
            "invalid csr_pem",
        ),
        (
            JoinRequest {
                csr_pem: "x".repeat(20_000),
                ..good.clone()
            },
            "invalid csr_pem",
        ),
        (
            JoinRequest {
                inventory_json: "[".into(),
                ..good.clone()
            },
            "invalid inventory_json",
        ),
        (
            JoinRequest {
                inventory_json: " ".repeat(600_000),
                ..good.clone()
            },
            "invalid inventory_json",
        ),
        (
            JoinRequest {
                verification_code: "x".into(),
                ..good.clone()
            },
            "invalid verification_code",
        ),
        (
            JoinRequest {
                verification_code: "ABCD-EFGH".into(),
                ..good.clone()
            },
            "does not match the public key in csr_pem",
        ),
        (
            JoinRequest {
                bench_json: "{\"cpu_f64_gflops_all\": \"fast\"}".into(),
                ..good.clone()
            },
            "invalid bench_json",
        ),
        (
            JoinRequest {
                bench_json: "{\"cpu_f64_gflops_all\": -3.5}".into(),
                ..good.clone()
            },
            "invalid bench_json: cpu_f64_gflops_all must be a finite number",
        ),
        (
            JoinRequest {
                bench_json: "{\"memory_triad_gbps\": 1e999}".into(),
                ..good.clone()
            },
            "invalid bench_json",
        ),
        (
            JoinRequest {
                bench_json: " ".repeat(5000),
                ..good.clone()
            },
            "invalid bench_json",
        ),
        (
            JoinRequest {
                token_secret: "cxt_00000000_nope".into(),
                ..good.clone()
            },
            "join refused: unknown token",
        ),
    ];
    for (req, want) in cases {
        let err = client.join(req).await.expect_err("must be refused");
        assert!(
            err.message().contains(want),
            "expected {want:?}, got {:?}",
            err.message()
        );
    }
    // Nothing was half-created by any of them.
    assert!(!coord.cli_ok(&["events"]).contains("node_pending"));

    // A flood from one source address is cut off.
    let mut limited = false;
    for _ in 0..30 {
        if let Err(e) = client
            .join(JoinRequest {
                node_id: 0,
                ..good.clone()
            })
            .await
        {
            if e.message().contains("too many join requests") {
                limited = true;
                break;
            }
        }
    }
    assert!(
        limited,
        "30 join requests in a burst from one address must hit the rate limit"
    );
}
