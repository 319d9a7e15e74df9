//! One `cortex agent` process joining a cluster.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::node::{cortex_in, isolate};

pub struct Agent {
    child: Option<Child>,
    pub data_dir: PathBuf,
    pub stderr_path: PathBuf,
    /// The JSON line the agent prints once approved (`None` until then).
    ready_rx: mpsc::Receiver<String>,
    pub info: Option<serde_json::Value>,
}

impl Agent {
    /// Starts `cortex agent` with `args` (e.g. `--token T --role worker`).
    pub fn start(sandbox: &Path, data_dir: &Path, args: &[&str]) -> Agent {
        Agent::start_in(None, sandbox, data_dir, args)
    }

    /// Starts `cortex agent` inside network namespace `ns` (when given).
    pub fn start_in(ns: Option<&str>, sandbox: &Path, data_dir: &Path, args: &[&str]) -> Agent {
        Agent::start_with(ns, sandbox, data_dir, args, |_| {})
    }

    /// Like `start_in`, with `env` applied last (it can override the harness's settings, e.g.
    /// `CORTEX_BENCH__ON_START=true`).
    pub fn start_with(
        ns: Option<&str>,
        sandbox: &Path,
        data_dir: &Path,
        args: &[&str],
        env: impl FnOnce(&mut Command),
    ) -> Agent {
        let stderr_path = data_dir.with_extension("stderr.log");
        let mut cmd = cortex_in(ns);
        isolate(&mut cmd, sandbox);
        // No self-benchmark before joining or at start (seconds of full load on shared cores).
        cmd.env("CORTEX_BENCH__ON_START", "false");
        cmd.args(["-o", "json", "agent"]);
        if !args.contains(&"--grpc-addr") {
            cmd.args(["--grpc-addr", "127.0.0.1:0"]);
        }
        if !args.contains(&"--http-addr") {
            cmd.args(["--http-addr", "127.0.0.1:0"]);
        }
        cmd.arg("--data-dir")
            .arg(data_dir)
            .args(args)
            // The same fast liveness settings as `cluster::fast_liveness` (coordinator agents
            // run the failure detector when they lead).
            .env("CORTEX_CLUSTER__HEARTBEAT_INTERVAL_MS", "200")
            .env("CORTEX_CLUSTER__SUSPECT_AFTER_MS", "1000")
            .env("CORTEX_CLUSTER__DOWN_AFTER_MS", "2000")
            .env("CORTEX_CLUSTER__VOTER_GRACE_MS", "3000")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path).expect("create stderr log"));
        env(&mut cmd);
        let mut child = cmd.spawn().expect("spawn cortex agent");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Agent {
            child: Some(child),
            data_dir: data_dir.to_path_buf(),
            stderr_path,
            ready_rx: rx,
            info: None,
        }
    }

    /// The agent's process id (while it runs).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).expect("running")
    }

    pub fn stderr(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.stderr_path) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// The verification code the agent printed on its console.
    pub fn verification_code(&self, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let err = self.stderr();
            if let Some(rest) = err.split("Verification code: ").nth(1) {
                return rest.chars().take(9).collect();
            }
            assert!(
                Instant::now() < deadline,
                "the agent printed no verification code:\n{err}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the "approved and running" JSON line.
    pub fn wait_approved(&mut self, within: Duration) -> serde_json::Value {
        match self.ready_rx.recv_timeout(within) {
            Ok(line) => {
                let v: serde_json::Value = serde_json::from_str(&line).expect("agent JSON line");
                self.info = Some(v.clone());
                v
            }
            Err(_) => panic!("agent not approved within {within:?}; stderr:\n{}", self.stderr()),
        }
    }

    /// Waits for the process to exit and returns its status code.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let mut c = self.child.take().expect("running");
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = c.try_wait().expect("wait") {
                return s.code();
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                panic!("agent did not exit within {within:?}; stderr:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then the exit code.
    pub fn terminate(&mut self, within: Duration) -> Option<i32> {
        if let Some(c) = &self.child {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
        }
        self.wait_exit(within)
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill9();
    }
}
