//! Bad input gets a clear error and loses nothing.

use std::net::TcpListener;

use crate::harness::node::isolate;
use crate::harness::{cortex, Node};

fn up(sandbox: &std::path::Path, args: &[&str]) -> std::process::Output {
    let mut cmd = cortex();
    isolate(&mut cmd, sandbox);
    cmd.arg("up").args(args);
    cmd.output().expect("run cortex up")
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

#[test]
fn port_in_use_names_the_address() {
    let sandbox = tempfile::tempdir().expect("tempdir");
    let busy = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = busy.local_addr().expect("addr").to_string();
    let data = sandbox.path().join("data");
    let out = up(
        sandbox.path(),
        &[
            "--data-dir",
            data.to_str().unwrap(),
            "--grpc-addr",
            &addr,
            "--http-addr",
            "127.0.0.1:0",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "cannot listen for gRPC on {addr}: the address is already in use"
        )),
        "{err}"
    );

    let out = up(
        sandbox.path(),
        &[
            "--data-dir",
            data.to_str().unwrap(),
            "--grpc-addr",
            "127.0.0.1:0",
            "--http-addr",
            &addr,
        ],
    );
    assert!(
        stderr(&out).contains(&format!("cannot listen for HTTP on {addr}")),
        "{}",
        stderr(&out)
    );
}

#[test]
fn data_dir_that_is_a_file_is_refused() {
    let sandbox = tempfile::tempdir().expect("tempdir");
    let file = sandbox.path().join("not-a-dir");
    std::fs::write(&file, "x").expect("write");
    let out = up(
        sandbox.path(),
        &[
            "--data-dir",
            file.to_str().unwrap(),
            "--grpc-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!(
            "data dir {} exists but is not a directory",
            file.display()
        )),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_to_string(&file).expect("read"),
        "x",
        "the file is untouched"
    );
}

#[test]
fn corrupt_store_is_reported_and_never_wiped() {
    let sandbox = tempfile::tempdir().expect("tempdir");
    let data = sandbox.path().join("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    let store = data.join("raft.redb");
    let garbage: Vec<u8> = (0..64 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&store, &garbage).expect("write garbage");
    let out = up(
        sandbox.path(),
        &[
            "--data-dir",
            data.to_str().unwrap(),
            "--grpc-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("the store {} could not be opened", store.display())),
        "{err}"
    );
    assert!(err.contains("Nothing was changed"), "{err}");
    assert_eq!(
        std::fs::read(&store).expect("read"),
        garbage,
        "the store file must be left exactly as it was"
    );
}

#[test]
fn second_process_on_the_same_data_dir_is_refused() {
    let sandbox = tempfile::tempdir().expect("tempdir");
    let data = sandbox.path().join("data");
    let node = Node::start(sandbox.path(), &data);
    let out = up(
        sandbox.path(),
        &[
            "--data-dir",
            data.to_str().unwrap(),
            "--grpc-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("already in use by another process"),
        "{}",
        stderr(&out)
    );
    // The running node is unaffected.
    node.cli_ok(&["status"]);
}

#[test]
fn status_without_a_running_cluster_says_how_to_start_one() {
    let sandbox = tempfile::tempdir().expect("tempdir");
    let free = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .to_string();
    for args in [vec!["status"], vec!["node", "list"], vec!["node", "show", "x"]] {
        let mut cmd = cortex();
        isolate(&mut cmd, sandbox.path());
        let out = cmd.args(&args).args(["--server", &free]).output().expect("run");
        assert_eq!(out.status.code(), Some(69), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains(&format!("no Cortex node is answering at {free}")),
            "{err}"
        );
        assert!(err.contains("Start one with `cortex up`"), "{err}");
    }
}

#[test]
fn unknown_node_and_bad_labels_get_named_errors() {
    let sandbox = tempfile::tempdir().expect("tempdir");
    let node = Node::start_with(
        sandbox.path(),
        &sandbox.path().join("data"),
        &["--node-name", "alpha"],
        |_| {},
    );

    let out = node.cli(&["node", "show", "alpah"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no node with id or name \"alpah\"; did you mean alpha?"),
        "{}",
        stderr(&out)
    );

    let id = node.node_id().to_string();
    let out = node.cli(&["node", "label", &id, "bad key!=x"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("invalid set: label key \"bad key!\" must start with a letter or digit"),
        "{}",
        stderr(&out)
    );

    let out = node.cli(&["node", "label", &id, "nolabel"]);
    assert!(
        stderr(&out).contains("label \"nolabel\": expected key=value to set or key- to remove"),
        "{}",
        stderr(&out)
    );

    let resp = crate::harness::http::get(&node.http, "/api/v1/nodes/nope").expect("GET");
    assert_eq!(resp.status, 404);
    assert_eq!(resp.json()["error"]["code"], "not_found");
    let resp = crate::harness::http::get(&node.http, "/api/v1/nothing-here").expect("GET");
    assert_eq!(resp.status, 404);
}
