//! The cluster stories again, with every process in its own network namespace on a bridge:
//! 3 coordinators + 2 workers joining through the CLI, and a partitioned leader.

use std::time::Duration;

use crate::harness::netns::Netns;
use crate::harness::{eventually, Agent, Node};

const GRPC: &str = ":7071";

fn status(node: &Node, server: &str) -> Option<serde_json::Value> {
    let out = node.cli(&["-o", "json", "status", "--server", server]);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).ok())
        .flatten()
}

/// Runs the CLI from host `i`'s namespace (a partition cuts the others off) with c1's CA and
/// admin token.
fn cli_in(net: &Netns, i: usize, sb: &std::path::Path, args: &[&str]) -> std::process::Output {
    let mut cmd = crate::harness::node::cortex_in(Some(&net.name(i)));
    crate::harness::node::isolate(&mut cmd, sb);
    cmd.args(args)
        .env("CORTEX_CA_FILE", sb.join("c1/ca.crt"))
        .env("CORTEX_TOKEN_FILE", sb.join("c1/admin.token"))
        .env("CORTEX_SERVER", format!("{}{GRPC}", net.ip(i)))
        .output()
        .expect("run cortex")
}

fn status_in(net: &Netns, i: usize, sb: &std::path::Path) -> Option<serde_json::Value> {
    let out = cli_in(net, i, sb, &["-o", "json", "status"]);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).ok())
        .flatten()
}

/// A coordinator in host `i`'s namespace; c1 creates the cluster, the others join.
fn start_cluster(net: &Netns, sb: &std::path::Path) -> (Node, Vec<Agent>, String) {
    let addr = |i: usize| format!("{}{GRPC}", net.ip(i));
    let c1 = crate::cluster::first_coordinator_in(net, sb);
    let coord_token = c1
        .cli_ok(&["token", "create", "--auto-approve", "--uses", "2"])
        .trim()
        .to_string();
    let mut coords = Vec::new();
    for i in 2..=3 {
        let name = format!("c{i}");
        let mut a = Agent::start_in(
            Some(&net.name(i)),
            sb,
            &sb.join(&name),
            &[
                "--role",
                "coordinator",
                "--token",
                &coord_token,
                "--node-name",
                &name,
                "--grpc-addr",
                &addr(i),
            ],
        );
        a.wait_approved(Duration::from_secs(30));
        coords.push(a);
    }
    eventually(Duration::from_secs(30), "three voters", || {
        let v = status(&c1, &addr(1))?["voters"].as_array()?.len();
        (v == 3).then_some(())
    });
    (c1, coords, coord_token)
}

#[test]
fn three_coordinators_and_two_workers_join_through_the_cli() {
    let Some(net) = Netns::new(5) else { return };
    let sb = tempfile::tempdir().expect("tempdir");
    let (c1, _coords, _) = start_cluster(&net, sb.path());

    // Workers join with a person's approval: one approved, one rejected.
    let token = c1.cli_ok(&["token", "create", "--ttl", "10m"]).trim().to_string();
    let mut w4 = Agent::start_in(
        Some(&net.name(4)),
        sb.path(),
        &sb.path().join("w4"),
        &["--token", &token, "--node-name", "w4"],
    );
    let mut w5 = Agent::start_in(
        Some(&net.name(5)),
        sb.path(),
        &sb.path().join("w5"),
        &["--token", &token, "--node-name", "w5"],
    );
    let code4 = w4.verification_code(Duration::from_secs(20));
    eventually(Duration::from_secs(20), "both workers pending", || {
        let list = c1.cli_ok(&["node", "list"]);
        (list.contains(&format!("pending (code {code4})")) && list.matches("pending").count() == 2)
            .then_some(())
    });
    c1.cli_ok(&["node", "approve", "w4"]);
    c1.cli_ok(&["node", "reject", "w5", "--reason", "unknown machine"]);
    w4.wait_approved(Duration::from_secs(20));
    assert_eq!(w5.wait_exit(Duration::from_secs(20)), Some(1));
    assert!(w5.stderr().contains("unknown machine"), "{}", w5.stderr());

    let nodes: serde_json::Value =
        serde_json::from_str(&c1.cli_ok(&["-o", "json", "node", "list"])).expect("json");
    let state = |name: &str| {
        nodes["nodes"]
            .as_array()
            .and_then(|n| n.iter().find(|n| n["name"] == name))
            .map(|n| n["state"].clone())
    };
    for c in ["c1", "c2", "c3"] {
        assert_eq!(state(c), Some("ready".into()), "{c}");
    }
    assert_eq!(state("w5"), Some("rejected".into()));
    eventually(Duration::from_secs(10), "w4 ready", || {
        let nodes: serde_json::Value =
            serde_json::from_str(&c1.cli_ok(&["-o", "json", "node", "list"])).ok()?;
        let w4 = nodes["nodes"]
            .as_array()?
            .iter()
            .find(|n| n["name"] == "w4")?
            .clone();
        (w4["state"] == "ready").then_some(())
    });
}

#[test]
fn a_partitioned_leader_cannot_commit_and_the_majority_goes_on() {
    let Some(net) = Netns::new(3) else { return };
    let sb = tempfile::tempdir().expect("tempdir");
    let (c1, _coords, _) = start_cluster(&net, sb.path());
    let addr = |i: usize| format!("{}{GRPC}", net.ip(i));
    let first = status(&c1, &addr(1)).expect("status");
    let leader_id = first["leader_id"].as_u64().expect("leader");
    let leader = (1..=3)
        .find(|i| status(&c1, &addr(*i)).and_then(|s| s["node_id"].as_u64()) == Some(leader_id))
        .expect("leader host");
    let majority: Vec<usize> = (1..=3).filter(|i| *i != leader).collect();

    net.partition(&[leader]);
    let sbp = sb.path();

    // The majority elects a new leader and takes writes.
    let m = majority[0];
    eventually(Duration::from_secs(20), "a new leader in the majority", || {
        let s = status_in(&net, m, sbp)?;
        (s["leader_id"].as_u64()? != leader_id).then_some(())
    });
    eventually(Duration::from_secs(20), "a write in the majority", || {
        cli_in(&net, m, sbp, &["node", "label", "c1", "side=majority"])
            .status
            .success()
            .then_some(())
    });

    // The old leader, alone, cannot commit: a write through it does not complete.
    let mut lone = crate::harness::node::cortex_in(Some(&net.name(leader)));
    crate::harness::node::isolate(&mut lone, sbp);
    let mut lone = lone
        .args(["node", "label", "c2", "side=minority", "--server", &addr(leader)])
        .env("CORTEX_CA_FILE", sbp.join("c1/ca.crt"))
        .env("CORTEX_TOKEN_FILE", sbp.join("c1/admin.token"))
        .spawn()
        .expect("spawn");
    std::thread::sleep(Duration::from_secs(3));
    let finished_ok = lone.try_wait().expect("wait").is_some_and(|s| s.success());
    assert!(
        !finished_ok,
        "a write through a minority leader must not be acknowledged"
    );
    let _ = lone.kill();
    let _ = lone.wait();
    let stale = status_in(&net, leader, sbp).expect("the old leader still answers reads");
    let fresh = status_in(&net, m, sbp).expect("status");
    assert!(
        stale["commit_index"].as_u64() < fresh["commit_index"].as_u64(),
        "the minority's commit index {} must lag the majority's {}",
        stale["commit_index"],
        fresh["commit_index"]
    );

    // Heal: everyone converges on the majority's log.
    net.heal();
    eventually(Duration::from_secs(30), "convergence after heal", || {
        let views: Vec<serde_json::Value> =
            (1..=3).map(|i| status_in(&net, i, sbp)).collect::<Option<_>>()?;
        let leaders: Vec<_> = views.iter().map(|s| s["leader_id"].clone()).collect();
        let applied: Vec<_> = views.iter().map(|s| s["applied_index"].clone()).collect();
        (leaders
            .iter()
            .all(|l| *l == leaders[0] && l.as_u64() != Some(leader_id))
            && applied.iter().all(|a| *a == applied[0]))
        .then_some(())
    });
    for i in 1..=3 {
        let out = cli_in(&net, i, sbp, &["-o", "json", "node", "show", "c1"]);
        let n: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(
            n["labels"]["side"], "majority",
            "host {i} has the majority's write"
        );
        let out = cli_in(&net, i, sbp, &["-o", "json", "node", "show", "c2"]);
        let n: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        assert!(
            n["labels"].get("side").is_none(),
            "host {i} must not have the minority's write; c1 log:\n{}",
            c1.stderr()
        );
    }
}

#[test]
fn a_node_without_a_token_finds_the_coordinator_by_mdns_and_waits_for_a_person() {
    let Some(net) = Netns::new(2) else { return };
    let sb = tempfile::tempdir().expect("tempdir");
    let c1 = Node::start_in(
        Some(&net.name(1)),
        sb.path(),
        &sb.path().join("c1"),
        &[
            "--grpc-addr",
            &format!("{}{GRPC}", net.ip(1)),
            "--http-addr",
            &format!("{}:7070", net.ip(1)),
        ],
        crate::cluster::fast_liveness,
    );
    let ca = status(&c1, &format!("{}{GRPC}", net.ip(1))).expect("status")["ca_fingerprint"]
        .as_str()
        .expect("fingerprint")
        .to_string();

    // A machine booted with no cortex.join and no token.
    let mut usb = Agent::start_in(
        Some(&net.name(2)),
        sb.path(),
        &sb.path().join("usb"),
        &["--node-name", "usb1"],
    );
    let code = usb.verification_code(Duration::from_secs(60));
    assert!(
        usb.stderr().contains(&format!("CA fingerprint is sha256:{ca}")),
        "{}",
        usb.stderr()
    );

    // It is PENDING with the same code it printed, and no token was involved.
    let pending = eventually(Duration::from_secs(30), "the mDNS joiner pending", || {
        let nodes: serde_json::Value =
            serde_json::from_str(&c1.cli_ok(&["-o", "json", "node", "list"])).ok()?;
        nodes["nodes"]
            .as_array()?
            .iter()
            .find(|n| n["name"] == "usb1")
            .cloned()
    });
    assert_eq!(
        pending["state"], "pending",
        "token-less joins are never auto-approved"
    );
    assert_eq!(pending["join"]["verification_code"], code.as_str());
    assert!(pending["join"]["token_id"].is_null());

    c1.cli_ok(&["node", "approve", "usb1"]);
    usb.wait_approved(Duration::from_secs(30));
}

/// The attempts of `marker` running on the node with cgroup group `group`, as pids.
fn attempts_in(group: &str, marker: &str) -> Vec<u32> {
    let out = std::process::Command::new("pgrep")
        .args(["-f", marker])
        .output()
        .expect("pgrep");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse::<u32>().ok())
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/cgroup")).is_ok_and(|c| c.contains(group)))
        .collect()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A leader cut off in a minority fences itself: it kills the attempts it runs (it has no
/// quorum acknowledgement, so it cannot know whether the majority has given them away) before
/// the majority declares it DOWN and starts the task elsewhere. A task never runs twice at once.
#[test]
fn a_partitioned_leader_kills_its_attempts_before_the_majority_replaces_them() {
    if !crate::harness::capable(crate::harness::is_root(), "root (workloads in cgroups)") {
        return;
    }
    let Some(net) = Netns::new(3) else { return };
    let sb = tempfile::tempdir().expect("tempdir");
    let (c1, _coords, _) = start_cluster(&net, sb.path());
    let addr = |i: usize| format!("{}{GRPC}", net.ip(i));
    let first = status(&c1, &addr(1)).expect("status");
    let leader_id = first["leader_id"].as_u64().expect("leader");
    let leader = (1..=3)
        .find(|i| status(&c1, &addr(*i)).and_then(|s| s["node_id"].as_u64()) == Some(leader_id))
        .expect("leader host");
    let other = (1..=3).find(|i| *i != leader).expect("a follower");
    let sbp = sb.path();
    let ok = |i: usize, args: &[&str]| {
        let out = cli_in(&net, i, sbp, args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let name = |i: usize| format!("c{i}");
    ok(leader, &["node", "label", &name(leader), "run=here"]);
    let marker = "sleep 3011.5";
    let id = ok(
        leader,
        &[
            "run",
            "-d",
            "--label",
            "run=here",
            "--retries",
            "3",
            "--",
            "sh",
            "-c",
            &format!("{marker}; true"),
        ],
    )
    .trim()
    .to_string();
    let group = format!("cortex-{leader_id:016x}");
    eventually(Duration::from_secs(20), "the task running on the leader", || {
        (!attempts_in(&group, marker).is_empty()).then_some(())
    });

    let cut = std::time::Instant::now();
    net.partition(&[leader]);
    // Only the majority may run it now.
    eventually(Duration::from_secs(20), "a write in the majority", || {
        cli_in(&net, other, sbp, &["node", "label", &name(other), "run=here"])
            .status
            .success()
            .then_some(())
    });
    let killed_at = eventually(
        Duration::from_secs(15),
        "the leader's attempt killed by itself",
        || attempts_in(&group, marker).is_empty().then(now_ms),
    );
    let fenced_in = cut.elapsed();
    let task = eventually(
        Duration::from_secs(30),
        "attempt 2 running in the majority",
        || {
            let out = cli_in(&net, other, sbp, &["-o", "json", "task", "show", &id]);
            let t: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            (t["state"] == "running" && t["attempt"] == 2).then_some(t)
        },
    );
    assert_eq!(task["attempts"][0]["result"]["kind"], "lost", "{task}");
    let started = task["attempts"][1]["started_at_ms"].as_u64().expect("started");
    assert!(
        killed_at <= started,
        "the leader's attempt was still alive when attempt 2 started ({killed_at} > {started} ms); fenced after {fenced_in:?}"
    );
    ok(other, &["task", "cancel", &id]);
}
