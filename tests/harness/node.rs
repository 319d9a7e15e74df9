//! One `cortex up` process, isolated: its own data dir, HOME, config root and kernel command
//! line, listening on ports the OS picked.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::http;

/// The `cortex` binary under test.
pub fn cortex() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cortex"))
}

/// The `cortex` binary under test, inside network namespace `ns` when given. `nsenter` (not
/// `ip netns exec`, which remounts /sys and so hides the cgroup hierarchies workloads need)
/// switches only the network namespace.
pub fn cortex_in(ns: Option<&str>) -> Command {
    match ns {
        None => cortex(),
        Some(ns) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net=/run/netns/{ns}"))
                .arg("--")
                .arg(env!("CARGO_BIN_EXE_cortex"));
            c
        }
    }
}

/// An environment with no host config: empty config root, empty kernel command line, private HOME.
pub fn isolate(cmd: &mut Command, sandbox: &Path) {
    let root = sandbox.join("config-root");
    let _ = std::fs::create_dir_all(&root);
    let cmdline = sandbox.join("cmdline");
    if !cmdline.exists() {
        let _ = std::fs::write(&cmdline, "");
    }
    for (k, _) in std::env::vars() {
        if k.starts_with("CORTEX_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("HOME", sandbox.join("home"))
        .env("XDG_DATA_HOME", sandbox.join("home/.local/share"))
        .env("CORTEX_CONFIG_ROOT", &root)
        .env("CORTEX_CMDLINE_FILE", &cmdline)
        .env("CORTEX_LOG", "info,openraft=warn");
}

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").to_string()
}

pub struct Node {
    child: Option<Child>,
    /// The network namespace the node runs in (`None`: the test's own).
    pub ns: Option<String>,
    pub sandbox: PathBuf,
    pub data_dir: PathBuf,
    pub grpc: String,
    pub http: String,
    pub info: serde_json::Value,
    pub stderr_path: PathBuf,
}

impl Node {
    /// Starts `cortex up` with `data_dir` and waits until `/readyz` answers 200.
    pub fn start(sandbox: &Path, data_dir: &Path) -> Node {
        Node::start_with(sandbox, data_dir, &[], |_| {})
    }

    pub fn start_with(
        sandbox: &Path,
        data_dir: &Path,
        args: &[&str],
        env: impl FnOnce(&mut Command),
    ) -> Node {
        Node::start_in(None, sandbox, data_dir, args, env)
    }

    /// Starts `cortex up` inside network namespace `ns` (when given).
    pub fn start_in(
        ns: Option<&str>,
        sandbox: &Path,
        data_dir: &Path,
        args: &[&str],
        env: impl FnOnce(&mut Command),
    ) -> Node {
        let stderr_path = sandbox.join(format!(
            "stderr-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        let mut cmd = cortex_in(ns);
        isolate(&mut cmd, sandbox);
        // No self-benchmark at start (it would load the shared cores for seconds); a test that
        // wants one turns it back on in `env`.
        cmd.env("CORTEX_BENCH__ON_START", "false");
        env(&mut cmd);
        cmd.args(["-o", "json", "up"]);
        // Port 0 unless the caller pins an address (restarts must keep their Raft address).
        if !args.contains(&"--grpc-addr") {
            cmd.args(["--grpc-addr", "127.0.0.1:0"]);
        }
        if !args.contains(&"--http-addr") {
            cmd.args(["--http-addr", "127.0.0.1:0"]);
        }
        cmd.arg("--data-dir")
            .arg(data_dir)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path).expect("create stderr log"));
        let mut child = cmd.spawn().expect("spawn cortex up");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(first)) = lines.next() {
                let _ = tx.send(first);
            }
            for _ in lines {}
        });
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "cortex up printed nothing within 60 s; stderr:\n{}",
                    std::fs::read_to_string(&stderr_path).unwrap_or_default()
                );
            }
        };
        let info: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("cortex up printed non-JSON {line:?}: {e}"));
        let node = Node {
            child: Some(child),
            ns: ns.map(String::from),
            sandbox: sandbox.to_path_buf(),
            data_dir: data_dir.to_path_buf(),
            grpc: info["grpc_addr"].as_str().expect("grpc_addr").to_string(),
            http: info["http_addr"].as_str().expect("http_addr").to_string(),
            info,
            stderr_path,
        };
        node.wait_ready(Duration::from_secs(30));
        node
    }

    pub fn wait_ready(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            if self.ns.is_some() {
                // The test cannot reach into the namespace over HTTP; ask through the CLI.
                let out = self.cli(&["-o", "json", "status"]);
                let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
                if out.status.success() && s["leader_id"].is_u64() && s["commit_index"] == s["applied_index"]
                {
                    return;
                }
            } else if let Ok(r) = http::get(&self.http, "/readyz") {
                if r.status == 200 {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "node at {} not ready within {within:?}; stderr:\n{}",
                self.http,
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn node_id(&self) -> u64 {
        self.info["node_id"].as_u64().expect("node_id")
    }

    pub fn cluster_id(&self) -> String {
        self.info["cluster_id"].as_str().expect("cluster_id").to_string()
    }

    pub fn token_file(&self) -> PathBuf {
        self.data_dir.join("admin.token")
    }

    /// Runs a client command against this node with the admin token.
    pub fn cli(&self, args: &[&str]) -> Output {
        let mut cmd = cortex_in(self.ns.as_deref());
        isolate(&mut cmd, &self.sandbox);
        cmd.args(args)
            .env("CORTEX_SERVER", &self.grpc)
            .env("CORTEX_TOKEN_FILE", self.token_file())
            .env("CORTEX_CA_FILE", self.data_dir.join("ca.crt"));
        cmd.output().expect("run cortex client")
    }

    /// Like `cli`, but asserts success and returns stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "cortex {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// SIGKILL: a crash, no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("node is running");
        let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(s) = c.try_wait().expect("wait") {
                return s;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                panic!("cortex did not exit within 15 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}
