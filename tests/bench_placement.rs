//! Placement uses measured figures, for real: two nodes on this machine, one of them confined
//! by a cgroup CPU quota (v1 `cpu.cfs_quota_us`, or v2 `cpu.max`) before it measures itself, so
//! its measured GFLOP/s are clearly lower. `--fastest 1` and `--min-gflops` land on the other.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cluster::join_token;
use crate::harness::{capable, eventually, is_root, Agent, Node};

/// A CPU-quota cgroup made for one test; on drop its processes go back to the root group and
/// it is removed.
struct CpuQuota {
    dir: PathBuf,
    parent: PathBuf,
}

impl CpuQuota {
    /// `quota_us` of CPU time per 10 ms period, for every process added (v2 or v1 layout). The
    /// period is short on purpose: with the default 100 ms, a 30 ms timed repeat can run whole
    /// inside one period's budget and measure the unthrottled speed.
    fn new(name: &str, quota_us: u32) -> Option<CpuQuota> {
        let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers");
        let (parent, file, value) = if std::fs::read_to_string(v2).is_ok_and(|c| c.contains("cpu")) {
            let root = PathBuf::from("/sys/fs/cgroup");
            std::fs::write(root.join("cgroup.subtree_control"), "+cpu").ok()?;
            (root, "cpu.max", format!("{quota_us} 10000"))
        } else {
            let root = ["/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"]
                .iter()
                .map(PathBuf::from)
                .find(|p| p.join("cpu.cfs_quota_us").exists())?;
            (root, "cpu.cfs_quota_us", quota_us.to_string())
        };
        let dir = parent.join(name);
        std::fs::create_dir_all(&dir).ok()?;
        let q = CpuQuota { dir, parent };
        if file == "cpu.cfs_quota_us" {
            std::fs::write(q.dir.join("cpu.cfs_period_us"), "10000").ok()?;
        }
        std::fs::write(q.dir.join(file), value).ok()?;
        Some(q)
    }

    /// Periods in which the group was throttled so far (`nr_throttled` of `cpu.stat`).
    fn throttled(&self) -> u64 {
        std::fs::read_to_string(self.dir.join("cpu.stat"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("nr_throttled "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Moves a whole process (all its threads) into the group.
    fn add(&self, pid: u32) {
        std::fs::write(self.dir.join("cgroup.procs"), pid.to_string()).expect("move into the cgroup");
    }
}

impl Drop for CpuQuota {
    fn drop(&mut self) {
        if let Ok(procs) = std::fs::read_to_string(self.dir.join("cgroup.procs")) {
            for pid in procs.split_whitespace() {
                let _ = std::fs::write(self.parent.join("cgroup.procs"), pid);
            }
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

fn node_json(coord: &Node, key: &str) -> serde_json::Value {
    let out = coord.cli(&["-o", "json", "node", "show", key]);
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

/// Asks `key` to run the quick benchmark and returns its recorded all-core f64 GFLOP/s.
fn measure(coord: &Node, key: &str) -> f64 {
    let out = coord.cli_ok(&["-o", "json", "bench", "--publish", "--quick", "--node", key]);
    let report: serde_json::Value = serde_json::from_str(&out).expect("report json");
    report["cpu"]["f64_all_cores"]["median"].as_f64().unwrap_or(0.0)
}

fn ran_on(coord: &Node, args: &[&str]) -> Option<u64> {
    let mut all = vec!["run", "-o", "json"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--", "true"]);
    let out = coord.cli_ok(&all);
    let v: serde_json::Value = serde_json::from_str(&out).expect("run json");
    v["tasks"][0]["attempts"][0]["node_id"].as_u64()
}

#[test]
fn placement_follows_measured_gflops_of_a_node_confined_by_a_cpu_quota() {
    if !capable(is_root(), "root (cgroups: a CPU quota, and the tasks' own)") {
        return;
    }
    let sb = tempfile::tempdir().expect("tempdir");
    let coord = Node::start(sb.path(), &sb.path().join("c1"));
    let token = join_token(&coord, &["--auto-approve"]);
    let mut agent = Agent::start(
        sb.path(),
        &sb.path().join("w1"),
        &["--token", &token, "--node-name", "w1"],
    );
    agent.wait_approved(Duration::from_secs(30));
    let slow_id = eventually(Duration::from_secs(20), "w1 ready", || {
        let v = node_json(&coord, "w1");
        (v["state"] == "ready").then(|| v["id"].as_u64())?
    });
    let fast_id = coord.node_id();

    // w1 gets a fifth of one CPU (2 ms every 10 ms), then both measure, one after the other (never at once: two
    // runs on two cores would each measure half the machine).
    let name = format!("cortex-test-quota-{}", std::process::id());
    let quota = CpuQuota::new(&name, 2_000);
    if !capable(
        quota.is_some(),
        "a cgroup CPU controller (v1 cpu.cfs_quota_us or v2 cpu.max)",
    ) {
        return;
    }
    let quota = quota.expect("checked");
    quota.add(agent.pid());
    let in_group = std::fs::read_to_string(format!("/proc/{}/cgroup", agent.pid())).unwrap_or_default();
    assert!(
        in_group.contains(&name),
        "the agent is in the quota group: {in_group}"
    );
    // Measured twice at most: a run on a machine shared with other tests can catch a burst
    // of load on the unconfined side; a quota that never throttled fails at once.
    let (mut slow, mut fast) = (0.0, 0.0);
    for attempt in 1..=2 {
        let throttled_before = quota.throttled();
        slow = measure(&coord, "w1");
        let throttled = quota.throttled() - throttled_before;
        fast = measure(&coord, &fast_id.to_string());
        eprintln!(
            "measured f64 GFLOP/s, all cores: coordinator {fast:.1}, w1 under a 20% quota {slow:.1} \
             (throttled {throttled} periods meanwhile)"
        );
        assert!(slow > 0.0 && fast > 0.0, "both measured: {fast} {slow}");
        assert!(
            throttled > 0,
            "the quota never throttled w1's benchmark ({slow} GFLOP/s)"
        );
        if slow < fast * 0.6 {
            break;
        }
        assert!(
            attempt < 2,
            "the quota must show in the figures: coordinator {fast}, w1 {slow}"
        );
    }
    assert_eq!(node_json(&coord, "w1")["state"], "ready");

    // Placement reads the recorded figures: every --fastest 1 lands on the coordinator, and so
    // does a minimum between the two figures.
    for _ in 0..3 {
        assert_eq!(
            ran_on(&coord, &["--fastest", "1"]),
            Some(fast_id),
            "fast {fast}, slow {slow}"
        );
    }
    let between = format!("{:.3}", (fast + slow) / 2.0);
    assert_eq!(ran_on(&coord, &["--min-gflops", &between]), Some(fast_id));
    // And a minimum below both figures may use either node (nothing is refused).
    let low = format!("{:.3}", slow / 2.0);
    assert!(ran_on(&coord, &["--min-gflops", &low]).is_some_and(|n| n == fast_id || n == slow_id));
    drop(quota);
}
