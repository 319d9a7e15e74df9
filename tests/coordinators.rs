//! Three coordinators: the voter set forms by itself, writes go through any coordinator, the
//! leader can die, a dead voter is replaced after the grace period, and a full crash of every
//! process loses nothing.

use std::time::{Duration, Instant};

use crate::cluster::{fast_liveness, join_token, node_state};
use crate::harness::node::free_addr;
use crate::harness::{eventually, Agent, Node};

fn status(coord: &Node, server: &str) -> Option<serde_json::Value> {
    let out = coord.cli(&["-o", "json", "status", "--server", server]);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).ok())
        .flatten()
}

fn voters(coord: &Node, server: &str) -> usize {
    status(coord, server)
        .and_then(|s| s["voters"].as_array().map(|v| v.len()))
        .unwrap_or(0)
}

fn start_coordinator(sb: &std::path::Path, name: &str, token: &str, grpc: &str) -> Agent {
    let data = sb.join(name);
    let mut a = Agent::start(
        sb,
        &data,
        &[
            "--role",
            "coordinator",
            "--token",
            token,
            "--node-name",
            name,
            "--grpc-addr",
            grpc,
        ],
    );
    a.wait_approved(Duration::from_secs(30));
    a
}

/// Three coordinators on `g1`..`g3` (c1 by `cortex up`, c2 and c3 joined with an auto-approve
/// token), once all three are voters.
fn three_coordinators(sb: &std::path::Path, g: [&str; 3]) -> (Node, Agent, Agent) {
    let c1 = Node::start_with(
        sb,
        &sb.join("c1"),
        &["--grpc-addr", g[0], "--node-name", "c1"],
        fast_liveness,
    );
    let token = join_token(&c1, &["--auto-approve"]);
    let c2 = start_coordinator(sb, "c2", &token, g[1]);
    let c3 = start_coordinator(sb, "c3", &token, g[2]);
    eventually(Duration::from_secs(30), "three voters", || {
        (voters(&c1, g[0]) == 3).then_some(())
    });
    (c1, c2, c3)
}

#[test]
fn three_coordinators_form_fail_over_heal_and_restart() {
    let sb = tempfile::tempdir().expect("tempdir");
    let (g1, g2, g3, g4) = (free_addr(), free_addr(), free_addr(), free_addr());
    let c1_data = sb.path().join("c1");
    let mut c1 = Node::start_with(
        sb.path(),
        &c1_data,
        &["--grpc-addr", &g1, "--node-name", "c1"],
        fast_liveness,
    );
    let token = join_token(&c1, &["--auto-approve"]);
    let mut c2 = start_coordinator(sb.path(), "c2", &token, &g2);
    let mut c3 = start_coordinator(sb.path(), "c3", &token, &g3);
    eventually(Duration::from_secs(30), "three voters", || {
        (voters(&c1, &g1) == 3).then_some(())
    });

    // A write through a follower is forwarded to the leader: users never see "not leader".
    let leader = status(&c1, &g1)
        .and_then(|s| s["leader_id"].as_u64())
        .expect("leader");
    let follower = if leader == c1.node_id() { &g2 } else { &g1 };
    let out = c1.cli(&["node", "label", "c3", "via=follower", "--server", follower]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // A fourth coordinator-eligible node waits as a learner (the target is three voters).
    let mut c4 = start_coordinator(sb.path(), "c4", &token, &g4);
    eventually(Duration::from_secs(20), "c4 as a learner", || {
        let s = status(&c1, &g2)?;
        s["learners"].as_array().filter(|l| !l.is_empty()).map(|_| ())
    });
    assert_eq!(voters(&c1, &g2), 3);

    // Kill the leader: a new leader accepts writes through a survivor.
    let addrs = [(&g1, 1), (&g2, 2), (&g3, 3)];
    let leader_addr = addrs
        .iter()
        .find(|(g, _)| {
            status(&c1, g).and_then(|s| s["leader_id"].as_u64()) == Some(leader)
                && status(&c1, g).and_then(|s| s["node_id"].as_u64()) == Some(leader)
        })
        .map(|(g, i)| ((*g).clone(), *i))
        .expect("the leader's address");
    match leader_addr.1 {
        1 => c1.kill9(),
        2 => c2.kill9(),
        _ => c3.kill9(),
    }
    let survivor = addrs
        .iter()
        .map(|(g, _)| (*g).clone())
        .find(|g| *g != leader_addr.0)
        .expect("survivor");
    let t0 = Instant::now();
    eventually(Duration::from_secs(20), "a write after failover", || {
        c1.cli(&["node", "label", "c4", "after=failover", "--server", &survivor])
            .status
            .success()
            .then_some(())
    });
    eprintln!(
        "failover: first accepted write {:?} after kill -9 of the leader",
        t0.elapsed()
    );

    // After the voter grace period (3 s here) the dead voter is replaced by the learner c4.
    eventually(Duration::from_secs(30), "c4 promoted, dead voter removed", || {
        let s = status(&c1, &survivor)?;
        let v: Vec<u64> = s["voters"]
            .as_array()?
            .iter()
            .filter_map(|x| x.as_u64())
            .collect();
        (v.len() == 3 && !v.contains(&leader)).then_some(())
    });
    assert_eq!(node_state(&c1, leader).as_deref().or(Some("down")), Some("down"));

    // kill -9 everything, restart everything on the same addresses: same cluster, same state.
    let cluster_id = c1.cluster_id();
    for a in [&mut c2, &mut c3, &mut c4] {
        a.kill9();
    }
    c1.kill9();
    let c1 = Node::start_with(
        sb.path(),
        &c1_data,
        &["--grpc-addr", &g1, "--node-name", "c1"],
        fast_liveness,
    );
    let restart = |name: &str, grpc: &str| {
        let mut a = Agent::start(
            sb.path(),
            &sb.path().join(name),
            &["--role", "coordinator", "--grpc-addr", grpc],
        );
        a.wait_approved(Duration::from_secs(30));
        a
    };
    let _c2 = restart("c2", &g2);
    let _c3 = restart("c3", &g3);
    let _c4 = restart("c4", &g4);
    let s = eventually(Duration::from_secs(30), "a leader after a full restart", || {
        let s = status(&c1, &g2)?;
        s["leader_id"].as_u64().map(|_| s)
    });
    assert_eq!(s["cluster_id"], cluster_id.as_str());
    // c1 may have been the voter that was replaced: it comes back, heartbeats, is re-added as
    // a learner and catches up. Its view then shows every acknowledged write.
    eventually(
        Duration::from_secs(30),
        "c1 caught up with the write made during the failover",
        || {
            let nodes = crate::harness::http::get(&c1.http, "/api/v1/nodes").ok()?.json();
            let c4 = nodes["nodes"]
                .as_array()?
                .iter()
                .find(|n| n["name"] == "c4")?
                .clone();
            (c4["labels"]["after"] == "failover").then_some(())
        },
    );
}

/// A join token works at once through a coordinator that has not yet applied it: here one that
/// was frozen (SIGSTOP) while the other two committed the token, and is joined through the
/// moment it resumes (a restarted coordinator replaying its log is in the same place). It waits for its state to catch up instead of answering "unknown token".
#[test]
fn a_token_works_at_once_through_a_coordinator_still_catching_up() {
    let sb = tempfile::tempdir().expect("tempdir");
    let (g1, g2, g3) = (free_addr(), free_addr(), free_addr());
    let (c1, c2, c3) = three_coordinators(sb.path(), [&g1, &g2, &g3]);
    let leader = eventually(Duration::from_secs(20), "a leader", || {
        status(&c1, &g1).and_then(|s| s["leader_id"].as_u64())
    });
    let nodes = [(&g1, c1.pid()), (&g2, c2.pid()), (&g3, c3.pid())];
    let lead = nodes
        .iter()
        .position(|(g, _)| status(&c1, g).and_then(|s| s["node_id"].as_u64()) == Some(leader))
        .expect("the leader is one of the three");
    let lagging = (lead + 1) % 3;
    let signal = |sig: &str, pid: u32| {
        let ok = std::process::Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {sig} {pid}");
    };
    for i in 0..3 {
        signal("-STOP", nodes[lagging].1);
        let fresh = c1
            .cli_ok(&[
                "token",
                "create",
                "--ttl",
                "1h",
                "--auto-approve",
                "--server",
                nodes[lead].0,
            ])
            .trim()
            .to_string();
        // Long enough for the leader's calls to it to time out: it resumes behind, and the
        // leader's replication to it is in back-off.
        std::thread::sleep(Duration::from_millis(1500));
        signal("-CONT", nodes[lagging].1);
        let name = format!("w{i}");
        let mut w = Agent::start(
            sb.path(),
            &sb.path().join(&name),
            &[
                "--token",
                &fresh,
                "--join",
                nodes[lagging].0,
                "--node-name",
                &name,
            ],
        );
        w.wait_approved(Duration::from_secs(30));
    }
}

/// A coordinator that comes back on another address (a new DHCP lease, a moved listener) is
/// found there: its heartbeats carry the address, the leader records it (an event says so) and
/// moves its Raft address, and it then hears the leader and applies what was written while it
/// was away. Without the move the leader's AppendEntries go to the old address for ever.
#[test]
fn a_coordinator_back_on_another_address_is_found_there() {
    let sb = tempfile::tempdir().expect("tempdir");
    let (g1, g2, g3, moved) = (free_addr(), free_addr(), free_addr(), free_addr());
    let (c1, _c2, mut c3) = three_coordinators(sb.path(), [&g1, &g2, &g3]);
    let c3_id = status(&c1, &g3)
        .and_then(|s| s["node_id"].as_u64())
        .expect("c3's node id");

    c3.kill9();
    // Written while c3 is away: it has to catch up on this at its new address.
    eventually(Duration::from_secs(20), "a write while c3 is away", || {
        c1.cli(&["node", "label", "c1", "while=away", "--server", &g1])
            .status
            .success()
            .then_some(())
    });
    let mut c3 = Agent::start(
        sb.path(),
        &sb.path().join("c3"),
        &["--role", "coordinator", "--grpc-addr", &moved],
    );
    c3.wait_approved(Duration::from_secs(30));

    eventually(Duration::from_secs(30), "c3 recorded at its new address", || {
        let n = crate::harness::http::get(&c1.http, &format!("/api/v1/nodes/{c3_id}")).ok()?;
        (n.json()["grpc_addr"] == moved.as_str()).then_some(())
    });
    let events = c1.cli_ok(&["-o", "json", "events"]);
    assert!(
        events.contains("node_address_changed") && events.contains(&format!("{g3} → {moved}")),
        "no address event: {events}"
    );
    eventually(
        Duration::from_secs(30),
        "c3 hears the leader and catches up at its new address",
        || {
            let s = status(&c1, &moved)?;
            s["leader_id"].as_u64()?;
            let out = c1.cli(&["-o", "json", "node", "show", "c1", "--server", &moved]);
            let node: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            (node["labels"]["while"] == "away").then_some(())
        },
    );
    // It is a voter again, reached at the new address: a write through it is accepted.
    let out = c1.cli(&["node", "label", "c1", "via=moved", "--server", &moved]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(voters(&c1, &moved), 3);
}
