//! MCP as an AI assistant's client sees it: the official Python SDK (`tests/mcp_client.py`)
//! against a real `cortex up`, over streamable HTTP (`/mcp`) and over stdio (`cortex mcp`, the
//! gRPC bridge). The Python side checks tools and schemas, read tools, errors, a task run with
//! a wait and progress, its logs, a cancel, drain/undrain, a read token refused write tools, and
//! 401 / 403; then, with two machines asking to join, approves one (matching the verification
//! code it printed) and rejects the other, runs a task on every node, runs a workflow, reads
//! the node and task resources, and checks that every tool was called.
//!
//! The Python comes from `CORTEX_TEST_PYTHON` (scripts/test.sh makes a venv with `mcp` and sets
//! it), else the venv at `${XDG_CACHE_HOME:-~/.cache}/cortex-test-venv`.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{capable, is_root, Node};

/// A Python that can `import mcp`, if there is one (also used by `refusals.rs`).
pub fn python() -> Option<PathBuf> {
    let candidate = match std::env::var_os("CORTEX_TEST_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
            cache.join("cortex-test-venv/bin/python")
        }
    };
    let ok = Command::new(&candidate)
        .args(["-c", "import mcp, httpx2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(candidate)
}

#[test]
fn mcp_over_http_and_stdio_with_the_python_sdk() {
    let py = python();
    if !capable(
        py.is_some(),
        "a Python with the `mcp` package: run scripts/test.sh (it makes the venv) or set CORTEX_TEST_PYTHON",
    ) || !capable(is_root(), "root (cgroups for the tasks the MCP client runs)")
    {
        return;
    }
    let Some(py) = py else { return };
    let sb = tempfile::tempdir().expect("tempdir");
    let node = Node::start_with(sb.path(), &sb.path().join("n1"), &[], |cmd| {
        cmd.env("CORTEX_MCP__ALLOWED_HOSTS", "coord.test");
    });

    let minted = node.cli_ok(&[
        "-o", "json", "token", "create", "--kind", "api", "--scope", "read",
    ]);
    let minted: serde_json::Value = serde_json::from_str(&minted).expect("token json");
    let read_token = sb.path().join("read.token");
    std::fs::write(&read_token, minted["secret"].as_str().expect("secret")).expect("write token");

    // Two machines ask to join (no auto-approve): the client approves one and rejects the other.
    let join = crate::cluster::join_token(&node, &[]);
    let mut pending = Vec::new();
    let mut agents = Vec::new();
    for name in ["mcp-a", "mcp-b"] {
        let agent = crate::harness::Agent::start(
            sb.path(),
            &sb.path().join(name),
            &["--token", &join, "--node-name", name],
        );
        pending.push(format!(
            "{name}={}",
            agent.verification_code(Duration::from_secs(20))
        ));
        agents.push(agent);
    }

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/mcp_client.py");
    let mut child = Command::new(&py)
        .arg(script)
        .arg("--url")
        .arg(format!("http://{}/mcp", node.http))
        .arg("--token-file")
        .arg(node.token_file())
        .arg("--read-token-file")
        .arg(&read_token)
        .arg("--cortex")
        .arg(env!("CARGO_BIN_EXE_cortex"))
        .arg("--grpc")
        .arg(&node.grpc)
        .arg("--ca-file")
        .arg(node.data_dir.join("ca.crt"))
        .args(["--allowed-host", "coord.test"])
        .args(["--pending", &pending.join(",")])
        .stdout(std::fs::File::create(sb.path().join("client.out")).expect("client.out"))
        .stderr(std::fs::File::create(sb.path().join("client.err")).expect("client.err"))
        .spawn()
        .expect("start the Python MCP client");
    let read = |f: &str| std::fs::read_to_string(sb.path().join(f)).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for the client") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the MCP client ran over 90 s\nstdout: {}\nstderr: {}\nnode stderr:\n{}",
                read("client.out"),
                read("client.err"),
                node.stderr()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (stdout, stderr) = (read("client.out"), read("client.err"));
    assert!(
        status.success() && stdout.contains("all checks passed"),
        "the MCP client failed ({status})\nstdout: {stdout}\nstderr: {stderr}\nnode stderr:\n{}",
        node.stderr()
    );
    eprintln!("{}", stdout.trim());
    drop(agents);
}
