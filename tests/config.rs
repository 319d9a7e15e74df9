//! Configuration at the process level: every layer in order, and rejections with exit code 78.

use std::path::PathBuf;

use crate::harness::cortex;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/config")
}

fn clean(cmd: &mut std::process::Command) {
    for (k, _) in std::env::vars() {
        if k.starts_with("CORTEX_") {
            cmd.env_remove(k);
        }
    }
}

#[test]
fn every_layer_applies_in_order() {
    let root = fixtures().join("process");
    let mut cmd = cortex();
    clean(&mut cmd);
    let out = cmd
        .args(["-o", "json", "config", "show", "--http-addr", "127.0.0.1:17072"])
        .env("CORTEX_CONFIG_ROOT", &root)
        .env("CORTEX_CMDLINE_FILE", root.join("cmdline"))
        .env("CORTEX_GRPC_ADDR", "127.0.0.1:17171")
        .env("CORTEX_NODE_NAME", "fromenv")
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let c: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        c["node_name"], "fromenv",
        "env beats the kernel command line and files"
    );
    assert_eq!(
        c["log_level"], "warn",
        "a vendor drop-in key nobody overrides survives"
    );
    assert_eq!(
        c["raft"]["heartbeat_interval_ms"], 150,
        "the kernel command line beats files"
    );
    assert_eq!(
        c["raft"]["election_timeout_min_ms"], 500,
        "a built-in default nobody overrides survives"
    );
    assert_eq!(
        c["raft"]["election_timeout_max_ms"], 3000,
        "an /etc drop-in merges into [raft]"
    );
    assert_eq!(c["http_addr"], "127.0.0.1:17072", "a flag beats everything");
    assert_eq!(c["grpc_addr"], "127.0.0.1:17171");
}

#[test]
fn an_unknown_key_is_rejected_with_file_key_and_exit_78() {
    let root = fixtures().join("process-bad");
    for args in [
        vec!["config", "show"],
        vec!["up", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"],
    ] {
        let sandbox = tempfile::tempdir().expect("tempdir");
        let mut cmd = cortex();
        clean(&mut cmd);
        let out = cmd
            .args(&args)
            .arg("--data-dir")
            .arg(sandbox.path().join("data"))
            .env("CORTEX_CONFIG_ROOT", &root)
            .env("CORTEX_CMDLINE_FILE", "/dev/null")
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(78), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("30-bad.toml") && err.contains("raft.heartbeat"),
            "{err}"
        );
        assert!(
            !sandbox.path().join("data").exists(),
            "nothing is created when the config is bad"
        );
    }
}

#[test]
fn bad_values_from_env_and_cmdline_are_named() {
    let sandbox = tempfile::tempdir().expect("tempdir");
    let cmdline = sandbox.path().join("cmdline");
    std::fs::write(&cmdline, "quiet cortex.raft.heartbeat_interval_ms=fast").expect("write");
    let mut cmd = cortex();
    clean(&mut cmd);
    let out = cmd
        .args(["config", "show"])
        .env("CORTEX_CONFIG_ROOT", sandbox.path())
        .env("CORTEX_CMDLINE_FILE", &cmdline)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("kernel command line") && err.contains("raft.heartbeat_interval_ms"),
        "{err}"
    );

    let mut cmd = cortex();
    clean(&mut cmd);
    let out = cmd
        .args(["config", "show"])
        .env("CORTEX_CONFIG_ROOT", sandbox.path())
        .env("CORTEX_CMDLINE_FILE", "/dev/null")
        .env("CORTEX_HTTP_ADDR", "nope")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("CORTEX_HTTP_ADDR") && err.contains("nope"), "{err}");
}
