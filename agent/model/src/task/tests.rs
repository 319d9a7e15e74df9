//! The task state machine, through `ClusterState::apply` only (what every replica runs).

use std::collections::BTreeMap;

use crate::command::{Command, Outcome};
use crate::inventory::Inventory;
use crate::node::{NodeRegistration, NodeRole, NodeState};
use crate::placement::schedule;
use crate::state::ClusterState;

use super::*;

fn cluster(nodes: &[(u64, u32)]) -> ClusterState {
    let mut s = ClusterState::default();
    for (id, threads) in nodes {
        let mut inventory = Inventory::default();
        inventory.cpu.threads = *threads;
        inventory.memory.total_bytes = 4 << 30;
        s.apply(&Command::RegisterNode {
            node: Box::new(NodeRegistration {
                id: *id,
                name: format!("n{id}"),
                role: NodeRole::Worker,
                grpc_addr: String::new(),
                http_addr: String::new(),
                inventory,
            }),
            at_ms: 1,
        });
    }
    s
}

fn task(id: &str, deps: &[&str]) -> NewTask {
    NewTask {
        id: id.into(),
        spec: TaskSpec {
            command: vec!["true".into()],
            ..Default::default()
        },
        workflow: None,
        group: None,
        depends_on: deps.iter().map(|d| d.to_string()).collect(),
    }
}

fn submit(s: &mut ClusterState, tasks: Vec<NewTask>) -> Outcome {
    s.apply(&Command::SubmitTasks {
        tasks,
        workflow: None,
        submitted_by: None,
        placements: Vec::new(),
        at_ms: 10,
    })
}

fn place_all(s: &mut ClusterState, now: u64) -> Vec<Placement> {
    let p = schedule(s, &BTreeMap::new(), now, 1000);
    s.apply(&Command::PlaceTasks {
        placements: p.clone(),
        at_ms: now,
    });
    p
}

fn report(s: &mut ClusterState, node: u64, id: &str, attempt: u32, event: ReportEvent) -> Outcome {
    s.apply(&Command::ReportTasks {
        node_id: node,
        reports: vec![TaskReport {
            task_id: id.into(),
            attempt,
            event,
        }],
        at_ms: 50,
    })
}

fn exited(code: i32) -> ReportEvent {
    ReportEvent::Finished {
        result: AttemptResult::Exited {
            code,
            oom_killed: false,
            timed_out: false,
        },
        dropped_bytes: 0,
    }
}

#[test]
fn success_path_with_output() {
    let mut s = cluster(&[(1, 2)]);
    assert!(matches!(
        submit(&mut s, vec![task("t1", &[])]),
        Outcome::Tasks { .. }
    ));
    let p = place_all(&mut s, 20);
    assert_eq!(
        p,
        vec![Placement {
            task_id: "t1".into(),
            attempt: 1,
            node_id: 1
        }]
    );
    assert_eq!(s.tasks["t1"].state, TaskState::Placed);
    report(&mut s, 1, "t1", 1, ReportEvent::Started);
    assert_eq!(s.tasks["t1"].state, TaskState::Running);
    let out = ReportEvent::Output {
        stream: LogStream::Stdout,
        offset: 0,
        data: b"hi\n".to_vec(),
    };
    report(&mut s, 1, "t1", 1, out.clone());
    report(&mut s, 1, "t1", 1, out); // resent: kept once
    report(&mut s, 1, "t1", 1, exited(0));
    let t = &s.tasks["t1"];
    assert_eq!(
        (t.state, t.exit_code, t.node_id),
        (TaskState::Succeeded, Some(0), None)
    );
    assert_eq!(s.task_logs["t1"].size, 3);
    assert_eq!(s.log_bytes_held, 3);
}

#[test]
fn stale_attempts_are_fenced_after_a_node_is_lost() {
    let mut s = cluster(&[(1, 2), (2, 2)]);
    submit(&mut s, vec![task("t1", &[])]);
    let first = place_all(&mut s, 20)[0].node_id;
    report(&mut s, first, "t1", 1, ReportEvent::Started);
    s.apply(&Command::SetNodeState {
        node_id: first,
        state: NodeState::Down,
        reason: "silent".into(),
        at_ms: 30,
    });
    let t = &s.tasks["t1"];
    assert_eq!(t.state, TaskState::Pending);
    assert!(matches!(t.attempts[0].result, Some(AttemptResult::Lost { .. })));
    // Backoff: not placed before it elapses.
    assert!(place_all(&mut s, 31).is_empty());
    let second = place_all(&mut s, 30 + 1000);
    assert_eq!(second[0].attempt, 2);
    assert_ne!(second[0].node_id, first);
    // The old attempt's late success is refused and changes nothing.
    let o = report(&mut s, first, "t1", 1, exited(0));
    assert_eq!(
        o,
        Outcome::Reports {
            stale: vec![("t1".into(), 1)]
        }
    );
    assert_eq!(s.tasks["t1"].state, TaskState::Placed);
    // Even with the right attempt number, another node cannot report it.
    let o = report(&mut s, first, "t1", 2, exited(0));
    assert!(matches!(o, Outcome::Reports { stale } if stale.len() == 1));
    report(&mut s, second[0].node_id, "t1", 2, exited(0));
    assert_eq!(s.tasks["t1"].state, TaskState::Succeeded);
}

#[test]
fn exit_codes_are_final_unless_listed_and_retries_end_in_the_dead_letter_list() {
    let mut s = cluster(&[(1, 2)]);
    submit(&mut s, vec![task("t1", &[])]);
    place_all(&mut s, 20);
    report(&mut s, 1, "t1", 1, exited(3));
    assert_eq!(s.tasks["t1"].state, TaskState::Failed);
    assert!(!s.tasks["t1"].dead);

    let mut t = task("t2", &[]);
    t.spec.retry = RetryPolicy {
        max_attempts: 2,
        backoff_ms: 100,
        max_backoff_ms: 100,
        retry_exit_codes: vec![75],
    };
    submit(&mut s, vec![t]);
    place_all(&mut s, 20);
    report(&mut s, 1, "t2", 1, exited(75));
    assert_eq!(s.tasks["t2"].state, TaskState::Pending);
    assert_eq!(s.tasks["t2"].not_before_ms, 150);
    place_all(&mut s, 200);
    let err = ReportEvent::Finished {
        result: AttemptResult::ExecutorError {
            message: "no podman".into(),
            permanent: false,
        },
        dropped_bytes: 0,
    };
    report(&mut s, 1, "t2", 2, err);
    let t2 = &s.tasks["t2"];
    assert_eq!(
        (t2.state, t2.dead, t2.attempts.len()),
        (TaskState::Failed, true, 2)
    );
}

#[test]
fn dags_wait_for_success_and_failures_cascade() {
    let mut s = cluster(&[(1, 4)]);
    submit(
        &mut s,
        vec![
            task("a", &[]),
            task("b", &["a"]),
            task("c", &["b"]),
            task("d", &[]),
        ],
    );
    let p = place_all(&mut s, 20);
    let placed: Vec<&str> = p.iter().map(|p| p.task_id.as_str()).collect();
    assert_eq!(placed, vec!["a", "d"]);
    report(&mut s, 1, "a", 1, exited(0));
    assert_eq!(place_all(&mut s, 21)[0].task_id, "b");
    report(&mut s, 1, "b", 1, exited(1));
    assert_eq!(s.tasks["c"].state, TaskState::Cancelled);
    assert!(s.tasks["c"]
        .error
        .as_deref()
        .unwrap_or("")
        .contains("dependency b failed"));
    // A new task depending on a failed one is cancelled at once.
    submit(&mut s, vec![task("e", &["b"])]);
    assert_eq!(s.tasks["e"].state, TaskState::Cancelled);
}

#[test]
fn submissions_are_all_or_nothing() {
    let mut s = cluster(&[(1, 2)]);
    let o = submit(&mut s, vec![task("a", &["b"]), task("b", &["a"])]);
    assert!(
        matches!(&o, Outcome::Rejected { reason } if reason.contains("cycle")),
        "{o:?}"
    );
    let o = submit(&mut s, vec![task("a", &[]), task("b", &["nope"])]);
    assert!(
        matches!(&o, Outcome::Rejected { reason } if reason.contains("no task nope")),
        "{o:?}"
    );
    let mut bad = task("c", &[]);
    bad.spec.command.clear();
    let o = submit(&mut s, vec![task("a", &[]), bad]);
    assert!(
        matches!(&o, Outcome::Rejected { reason } if reason.contains("tasks[1].command")),
        "{o:?}"
    );
    assert!(s.tasks.is_empty());
}

#[test]
fn placement_never_oversubscribes() {
    let mut s = cluster(&[(1, 1)]); // 1000 millis of CPU
    let mut tasks = Vec::new();
    for i in 0..5 {
        let mut t = task(&format!("t{i}"), &[]);
        t.spec.resources.cpu_millis = Some(400);
        tasks.push(t);
    }
    submit(&mut s, tasks);
    assert_eq!(place_all(&mut s, 20).len(), 2);
    // A stale scheduler's extra placement is refused by apply.
    let o = s.apply(&Command::PlaceTasks {
        placements: vec![Placement {
            task_id: "t4".into(),
            attempt: 1,
            node_id: 1,
        }],
        at_ms: 21,
    });
    assert!(matches!(o, Outcome::Placed(p) if p.placed.is_empty() && p.refused.len() == 1));
    report(&mut s, 1, "t0", 1, exited(0));
    assert_eq!(place_all(&mut s, 22).len(), 1);
}

#[test]
fn cancel_stops_a_task_and_its_dependents() {
    let mut s = cluster(&[(1, 2)]);
    submit(&mut s, vec![task("a", &[]), task("b", &["a"])]);
    place_all(&mut s, 20);
    let o = s.apply(&Command::CancelTasks {
        task_ids: vec!["a".into()],
        reason: "by alice".into(),
        at_ms: 30,
    });
    assert_eq!(
        o,
        Outcome::Tasks {
            ids: vec!["a".into()]
        }
    );
    assert_eq!(s.tasks["a"].state, TaskState::Cancelled);
    assert_eq!(s.tasks["b"].state, TaskState::Cancelled);
    // The node's report of the kill is stale now: the node stops it.
    let o = report(&mut s, 1, "a", 1, exited(137));
    assert!(matches!(o, Outcome::Reports { stale } if stale.len() == 1));
    let o = s.apply(&Command::CancelTasks {
        task_ids: vec!["a".into()],
        reason: "again".into(),
        at_ms: 31,
    });
    assert!(matches!(o, Outcome::Rejected { .. }));
}

#[test]
fn spread_groups_put_one_task_per_node() {
    let mut s = cluster(&[(1, 8), (2, 8), (3, 8)]);
    let tasks = (0..3)
        .map(|i| {
            let mut t = task(&format!("g{i}"), &[]);
            t.group = Some("grp".into());
            t.spec.constraints.spread_group = true;
            t
        })
        .collect();
    submit(&mut s, tasks);
    let mut nodes: Vec<u64> = place_all(&mut s, 20).iter().map(|p| p.node_id).collect();
    nodes.sort();
    assert_eq!(nodes, vec![1, 2, 3]);
}

#[test]
fn draining_and_down_nodes_get_no_work() {
    let mut s = cluster(&[(1, 2), (2, 2)]);
    s.apply(&Command::SetNodeState {
        node_id: 1,
        state: NodeState::Draining,
        reason: "x".into(),
        at_ms: 5,
    });
    s.apply(&Command::SetNodeState {
        node_id: 2,
        state: NodeState::Down,
        reason: "x".into(),
        at_ms: 5,
    });
    submit(&mut s, vec![task("t", &[])]);
    assert!(place_all(&mut s, 20).is_empty());
}

#[test]
fn placements_proposed_with_a_submission_are_applied_and_rechecked() {
    let mut s = cluster(&[(1, 1)]); // 1000 millis of CPU
    let mut big = task("big", &[]);
    big.spec.resources.cpu_millis = Some(800);
    let mut other = task("other", &[]);
    other.spec.resources.cpu_millis = Some(800);
    let at = |id: &str| Placement {
        task_id: id.into(),
        attempt: 1,
        node_id: 1,
    };
    s.apply(&Command::SubmitTasks {
        tasks: vec![big, other],
        workflow: None,
        submitted_by: None,
        placements: vec![at("big"), at("other")],
        at_ms: 10,
    });
    assert_eq!(s.tasks["big"].state, TaskState::Placed);
    // The second does not fit: refused in apply, left to the scheduler.
    assert_eq!(s.tasks["other"].state, TaskState::Pending);
}

#[test]
fn measured_figures_constrain_placement() {
    let mut s = cluster(&[(1, 2), (2, 2)]);
    for (id, gflops, bw) in [(1, 50.0, 10.0), (2, 80.0, 30.0)] {
        s.apply(&Command::SetNodeBench {
            node_id: id,
            bench: crate::node::BenchSummary {
                cpu_f64_gflops_all: gflops,
                memory_triad_gbps: bw,
                ..Default::default()
            },
            report: None,
            answers: None,
            at_ms: 2,
        });
    }
    let mut bw = task("bw", &[]);
    bw.spec.constraints.min_mem_bw = Some(20.0);
    let mut fast = task("fast", &[]);
    fast.spec.constraints.fastest = Some(1);
    submit(&mut s, vec![bw, fast]);
    let placed: BTreeMap<String, u64> = place_all(&mut s, 20)
        .into_iter()
        .map(|p| (p.task_id, p.node_id))
        .collect();
    assert_eq!(placed["bw"], 2);
    assert_eq!(placed["fast"], 2);
    let mut impossible = task("x", &[]);
    impossible.spec.constraints.min_mem_bw = Some(100.0);
    let err = crate::placement::feasible_anywhere(&s, &impossible.spec).unwrap_err();
    assert!(err.starts_with("constraints.min_mem_bw"), "{err}");
}

#[test]
fn gpus_are_assigned_distinct_and_freed_when_an_attempt_ends() {
    let mut s = cluster(&[(1, 8)]);
    if let Some(n) = s.nodes.get_mut(&1) {
        for index in [3, 5] {
            n.inventory.gpus.devices.push(crate::inventory::GpuInfo {
                index,
                ..Default::default()
            });
        }
    }
    let mut tasks = Vec::new();
    for i in 0..3 {
        let mut t = task(&format!("g{i}"), &[]);
        t.spec.resources.gpus = 1;
        tasks.push(t);
    }
    let mut plain = task("cpu", &[]);
    plain.spec.resources.gpus = 0;
    tasks.push(plain);
    submit(&mut s, tasks);
    assert_eq!(place_all(&mut s, 20).len(), 3, "two GPU tasks and the CPU task");
    let held = |s: &ClusterState, id: &str| s.tasks[id].current_gpus().to_vec();
    let mut both = [held(&s, "g0"), held(&s, "g1")].concat();
    both.sort_unstable();
    assert_eq!(both, vec![3, 5], "each running GPU task holds its own GPU");
    assert!(held(&s, "cpu").is_empty());
    assert_eq!(s.tasks["g2"].state, TaskState::Pending, "no third GPU");
    let freed = held(&s, "g1");
    report(&mut s, 1, "g1", 1, exited(0));
    assert!(!s.tasks["g1"].state.is_active(), "its attempt (and GPU) ended");
    assert_eq!(place_all(&mut s, 22).len(), 1);
    assert_eq!(held(&s, "g2"), freed, "the freed GPU goes to the waiting task");
}

#[test]
fn finished_tasks_are_forgotten_oldest_first_in_chunks_but_never_a_needed_dependency() {
    let mut s = cluster(&[(1, 2)]);
    let finished = |s: &ClusterState| s.tasks.values().filter(|t| t.state.is_terminal()).count();
    // "dep" finishes first (the oldest), and "waiter" (never placed here) still needs it.
    submit(&mut s, vec![task("dep", &[])]);
    place_all(&mut s, 20);
    report(&mut s, 1, "dep", 1, exited(0));
    assert_eq!(s.tasks["dep"].state, TaskState::Succeeded);
    submit(&mut s, vec![task("waiter", &["dep"])]);
    for i in 0..FINISHED_TASK_RETENTION {
        let id = format!("t{i:05}");
        submit(&mut s, vec![task(&id, &[])]);
        s.apply(&Command::CancelTasks {
            task_ids: vec![id],
            reason: "test".into(),
            at_ms: 100 + i as u64,
        });
    }
    assert_eq!(
        finished(&s),
        FINISHED_TASK_RETENTION + 1,
        "nothing forgotten before the next submit"
    );
    submit(&mut s, vec![task("next", &[])]);
    assert_eq!(finished(&s), FINISHED_TASK_RETENTION - FORGET_SLACK);
    assert!(
        s.tasks.contains_key("dep"),
        "a dependency a pending task waits for stays"
    );
    assert!(!s.tasks.contains_key("t00000"), "the oldest go first");
    assert!(!s.tasks.contains_key(&format!("t{FORGET_SLACK:05}")));
    assert!(s.tasks.contains_key(&format!("t{:05}", FORGET_SLACK + 1)));
    assert!(s.tasks.contains_key("waiter") && s.tasks.contains_key("next"));
}
