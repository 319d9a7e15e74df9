//! Workloads on one node (`cortex up` runs the coordinator and the worker): `cortex run`
//! streams output and exits with the task's code; cancel and timeout kill grandchildren;
//! limits are enforced; DAGs run, cascade and reject cycles; bad input creates nothing; task
//! history survives a crash. `tasks_netns.rs` covers fan-out, lost nodes and fencing.

use std::process::Output;
use std::time::{Duration, Instant};

use crate::harness::{capable, eventually, have, is_root, shared_with_nobody, Node};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

fn task(node: &Node, id: &str) -> serde_json::Value {
    serde_json::from_str(&node.cli_ok(&["-o", "json", "task", "show", id])).expect("task json")
}

fn task_count(node: &Node) -> usize {
    let v: serde_json::Value =
        serde_json::from_str(&node.cli_ok(&["-o", "json", "task", "list", "--limit", "1000"])).expect("json");
    v["tasks"].as_array().map(Vec::len).unwrap_or(0)
}

/// Processes whose command line contains `marker`.
fn processes_with(marker: &str) -> Vec<String> {
    let out = std::process::Command::new("pgrep")
        .args(["-af", marker])
        .output()
        .expect("pgrep");
    text(&out.stdout)
        .lines()
        .filter(|l| !l.contains("pgrep"))
        .map(str::to_string)
        .collect()
}

fn node(sb: &std::path::Path) -> Option<Node> {
    if !capable(is_root(), "root (cgroups and namespaces for workloads)") {
        return None;
    }
    Some(Node::start(sb, &sb.join("n1")))
}

fn run(node: &Node, args: &[&str]) -> Output {
    let mut a = vec!["run"];
    a.extend_from_slice(args);
    node.cli(&a)
}

#[test]
fn run_streams_output_and_exits_with_the_task_code() {
    let sb = tempfile::tempdir().expect("tempdir");
    let Some(n) = node(sb.path()) else { return };
    let out = run(&n, &["--", "sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert_eq!(out.status.code(), Some(3), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "out\n");
    assert!(text(&out.stderr).contains("err\n"), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("exited with code 3"),
        "{}",
        text(&out.stderr)
    );

    let out = run(&n, &["--", "uname", "-a"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).starts_with("Linux"));

    // The environment is the task's own plus PATH; the network is private (only lo).
    let out = run(
        &n,
        &[
            "-e",
            "GREETING=hi",
            "--",
            "sh",
            "-c",
            "env | sort; ls /sys/class/net",
        ],
    );
    let stdout = text(&out.stdout);
    assert!(stdout.contains("GREETING=hi"), "{stdout}");
    assert!(!stdout.contains("CORTEX_"), "agent environment leaked: {stdout}");
    assert!(stdout.trim_end().ends_with("lo"), "{stdout}");

    // The log stays readable afterwards, by id.
    let list: serde_json::Value =
        serde_json::from_str(&n.cli_ok(&["-o", "json", "task", "list"])).expect("json");
    let first = list["tasks"].as_array().expect("tasks").last().expect("a task")["id"]
        .as_str()
        .expect("id")
        .to_string();
    let logs = n.cli(&["task", "logs", &first]);
    assert_eq!(text(&logs.stdout), "out\n");
    assert!(text(&logs.stderr).contains("err"));
}

#[test]
fn cancel_and_timeout_kill_grandchildren() {
    let sb = tempfile::tempdir().expect("tempdir");
    let Some(n) = node(sb.path()) else { return };
    let marker = format!("sleep 31{}", std::process::id() % 100);
    let script = format!("sh -c '{marker}' & {marker}");
    let id = n
        .cli_ok(&["run", "-d", "--", "sh", "-c", &script])
        .trim()
        .to_string();
    eventually(
        Duration::from_secs(10),
        "the task and its grandchild running",
        || (processes_with(&marker).len() >= 2).then_some(()),
    );
    let started = Instant::now();
    n.cli_ok(&["task", "cancel", &id]);
    eventually(Duration::from_secs(5), "every process of the task gone", || {
        processes_with(&marker).is_empty().then_some(())
    });
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "cancel took {took:?}");
    assert_eq!(task(&n, &id)["state"], "cancelled");

    let marker = format!("sleep 32{}", std::process::id() % 100);
    let script = format!("sh -c '{marker}' & {marker}");
    let started = Instant::now();
    let out = run(
        &n,
        &["--timeout", "1s", "--retries", "0", "--", "sh", "-c", &script],
    );
    assert_ne!(out.status.code(), Some(0));
    assert!(text(&out.stderr).contains("timed out"), "{}", text(&out.stderr));
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        processes_with(&marker).is_empty(),
        "{:?}",
        processes_with(&marker)
    );
}

#[test]
fn limits_are_enforced() {
    let sb = tempfile::tempdir().expect("tempdir");
    let Some(n) = node(sb.path()) else { return };
    // A 200 MB hog in 64 MiB is killed by the kernel: exit 137, reported as such.
    let hog = "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived";
    let out = run(&n, &["--mem", "64M", "--retries", "0", "--", "sh", "-c", hog]);
    assert_eq!(out.status.code(), Some(137), "stderr: {}", text(&out.stderr));
    assert!(text(&out.stderr).contains("OOM"), "{}", text(&out.stderr));
    assert!(!text(&out.stdout).contains("survived"));

    // A pids limit stops a fork bomb.
    let out = run(
        &n,
        &[
            "--pids",
            "8",
            "--",
            "sh",
            "-c",
            "for i in $(seq 20); do sleep 2 & done; wait",
        ],
    );
    assert!(
        text(&out.stderr).to_lowercase().contains("fork") || text(&out.stderr).contains("Resource"),
        "expected fork failures: {}",
        text(&out.stderr)
    );
}

#[test]
fn workflows_run_in_order_cascade_failures_and_reject_cycles() {
    let sb = tempfile::tempdir().expect("tempdir");
    let Some(n) = node(sb.path()) else { return };
    let wf = sb.path().join("ok.yaml");
    // Tasks run as nobody: they write their trail into a directory given to that user.
    let flag = shared_with_nobody(sb.path()).join("order");
    std::fs::write(
        &wf,
        format!(
            "name: ok\ntasks:\n  - name: first\n    command: [sh, -c, 'echo first >> {f}']\n    env: {{}}\n  - name: second\n    command: [sh, -c, 'echo second >> {f}']\n    depends_on: [first]\n  - name: third\n    command: [sh, -c, 'echo third >> {f}']\n    depends_on: [first, second]\n",
            f = flag.display()
        ),
    )
    .expect("write");
    let out = n.cli(&["workflow", "submit", "--wait", wf.to_str().expect("path")]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains("succeeded"));
    assert_eq!(
        std::fs::read_to_string(&flag).expect("order"),
        "first\nsecond\nthird\n"
    );

    let bad = sb.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "name: bad\ntasks:\n  - name: a\n    command: ['false']\n  - name: b\n    command: ['true']\n    depends_on: [a]\n  - name: c\n    command: ['true']\n    depends_on: [b]\n",
    )
    .expect("write");
    let out = n.cli(&[
        "-o",
        "json",
        "workflow",
        "submit",
        "--wait",
        bad.to_str().expect("path"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["aggregate"]["status"], "failed");
    let states: Vec<(String, String)> = v["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| {
            (
                t["spec"]["name"].as_str().unwrap_or("").to_string(),
                t["state"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert!(states.contains(&("a".into(), "failed".into())), "{states:?}");
    assert!(states.contains(&("b".into(), "cancelled".into())), "{states:?}");
    assert!(states.contains(&("c".into(), "cancelled".into())), "{states:?}");

    let before = task_count(&n);
    let cyc = sb.path().join("cycle.yaml");
    std::fs::write(
        &cyc,
        "name: cyc\ntasks:\n  - name: a\n    command: ['true']\n    depends_on: [c]\n  - name: b\n    command: ['true']\n    depends_on: [a]\n  - name: c\n    command: ['true']\n    depends_on: [b]\n",
    )
    .expect("write");
    let out = n.cli(&["workflow", "submit", cyc.to_str().expect("path")]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("cycle"), "{}", text(&out.stderr));
    assert_eq!(task_count(&n), before, "a rejected workflow created tasks");
}

#[test]
fn bad_task_input_is_rejected_at_submit_and_creates_nothing() {
    let sb = tempfile::tempdir().expect("tempdir");
    let Some(n) = node(sb.path()) else { return };
    let cases: &[(&[&str], &str)] = &[
        (&["--mem", "64T", "--", "true"], "resources.memory_bytes"),
        (&["--cpu", "4096", "--", "true"], "--cpu"),
        (&["--gpus", "3", "--", "true"], "resources.gpus"),
        (&["--node", "nosuchnode", "--", "true"], "constraints.node"),
        (&["--nspawn", "./no/such/rootfs", "--", "true"], "--nspawn"),
        (&["--timeout", "soon", "--", "true"], "--timeout"),
        (&["-e", "1X=y", "--", "true"], "env.1X"),
        (&["--label", "novalue", "--", "true"], "--label"),
    ];
    for (args, field) in cases {
        let out = run(&n, args);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(
            text(&out.stderr).contains(field),
            "{args:?}: expected {field} in {}",
            text(&out.stderr)
        );
    }
    let wf = sb.path().join("typo.yaml");
    std::fs::write(&wf, "name: t\ntasks:\n  - name: a\n    comand: ['true']\n").expect("write");
    let out = n.cli(&["workflow", "submit", wf.to_str().expect("path")]);
    assert!(
        text(&out.stderr).contains("comand") && text(&out.stderr).contains("typo.yaml"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(task_count(&n), 0);
}

#[test]
fn nspawn_tasks_are_ephemeral() {
    let sb = tempfile::tempdir().expect("tempdir");
    if !capable(
        have("systemd-nspawn"),
        "systemd-nspawn (apt install systemd-container)",
    ) || !capable(std::path::Path::new("/bin/busybox").exists(), "busybox-static")
    {
        return;
    }
    let Some(n) = node(sb.path()) else { return };
    let root = sb.path().join("rootfs");
    cortex_exec::testing::build_busybox_rootfs(&root).expect("rootfs");
    let r = root.to_str().expect("path");
    let out = run(
        &n,
        &[
            "--nspawn",
            r,
            "--",
            "/bin/sh",
            "-c",
            "echo hi > /marker; cat /marker",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hi\n");
    assert!(
        !root.join("marker").exists(),
        "a file written in the container survived it"
    );
    let out = run(&n, &["--nspawn", r, "--", "/bin/sh", "-c", "test ! -e /marker"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn task_history_survives_a_crash() {
    let sb = tempfile::tempdir().expect("tempdir");
    let Some(mut n) = node(sb.path()) else { return };
    let out = run(&n, &["--name", "remember-me", "--", "sh", "-c", "echo kept"]);
    assert!(out.status.success());
    let grpc = n.grpc.clone();
    let http = n.http.clone();
    n.kill9();
    let n = Node::start_with(
        sb.path(),
        &sb.path().join("n1"),
        &["--grpc-addr", &grpc, "--http-addr", &http],
        |_| {},
    );
    let list: serde_json::Value =
        serde_json::from_str(&n.cli_ok(&["-o", "json", "task", "list"])).expect("json");
    let t = &list["tasks"][0];
    assert_eq!(t["spec"]["name"], "remember-me");
    assert_eq!(t["state"], "succeeded");
    let logs = n.cli_ok(&["task", "logs", t["id"].as_str().expect("id")]);
    assert_eq!(logs, "kept\n");
}

#[test]
fn podman_tasks_run_images_imported_on_the_node() {
    let sb = tempfile::tempdir().expect("tempdir");
    if !capable(have("podman"), "podman (apt install podman runc)")
        || !capable(std::path::Path::new("/bin/busybox").exists(), "busybox-static")
    {
        return;
    }
    let Some(n) = node(sb.path()) else { return };
    // Unknown image: refused at submit, naming the field and saying how to import one.
    let out = run(&n, &["--podman", "localhost/cortex-test:1", "--", "true"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("image") && text(&out.stderr).contains("cortex image import"),
        "{}",
        text(&out.stderr)
    );

    let root = sb.path().join("rootfs");
    cortex_exec::testing::build_busybox_rootfs(&root).expect("rootfs");
    let tar = sb.path().join("rootfs.tar");
    let st = std::process::Command::new("tar")
        .arg("-C")
        .arg(&root)
        .args(["-cf"])
        .arg(&tar)
        .arg(".")
        .status()
        .expect("tar");
    assert!(st.success());
    let data_dir = sb.path().join("n1");
    n.cli_ok(&[
        "image",
        "import",
        "--data-dir",
        data_dir.to_str().expect("path"),
        tar.to_str().expect("path"),
        "localhost/cortex-test:1",
    ]);
    // The node publishes its store; then the task is accepted and runs there.
    eventually(Duration::from_secs(30), "the node's image published", || {
        let v: serde_json::Value = serde_json::from_str(&n.cli_ok(&["-o", "json", "node", "list"])).ok()?;
        let has = v["nodes"][0]["images"]
            .as_array()?
            .iter()
            .any(|i| i == "localhost/cortex-test:1");
        has.then_some(())
    });
    let out = run(
        &n,
        &[
            "--podman",
            "localhost/cortex-test:1",
            "--",
            "sh",
            "-c",
            "echo hi from podman; echo err >&2; ls /sys/class/net; exit 4",
        ],
    );
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hi from podman\nlo\n");
    assert!(text(&out.stderr).contains("err"));
}

/// GPU assignment end to end on a node that reports two GPUs (simulated through
/// `CORTEX_TEST_FAKE_GPUS`: this machine has no NVIDIA GPU, the one thing the project mocks):
/// concurrent tasks hold different GPUs, a third waits for one, a task that asked for none sees
/// none, and more GPUs than any node has is refused at submit.
#[test]
fn gpu_tasks_get_distinct_gpus_and_wait_for_a_free_one() {
    let sb = tempfile::tempdir().expect("tempdir");
    if !capable(is_root(), "root (cgroups and namespaces for workloads)") {
        return;
    }
    let n = Node::start_with(sb.path(), &sb.path().join("n1"), &[], |c| {
        c.env("CORTEX_TEST_FAKE_GPUS", "2");
    });
    let script = "echo gpu=$CUDA_VISIBLE_DEVICES; sleep 2";
    let ids: Vec<String> = (0..3)
        .map(|_| {
            n.cli_ok(&["run", "-d", "--gpus", "1", "--", "sh", "-c", script])
                .trim()
                .to_string()
        })
        .collect();
    let none = n
        .cli_ok(&["run", "-d", "--", "sh", "-c", "echo gpu=[$CUDA_VISIBLE_DEVICES]"])
        .trim()
        .to_string();
    // While two hold both GPUs, the third is still pending.
    eventually(Duration::from_secs(20), "two GPU tasks running", || {
        let states: Vec<String> = ids
            .iter()
            .map(|id| task(&n, id)["state"].as_str().unwrap_or("").to_string())
            .collect();
        let running = states.iter().filter(|s| *s == "running").count();
        (running == 2).then_some(())
    });
    let pending = ids.iter().filter(|id| task(&n, id)["state"] == "pending").count();
    assert_eq!(pending, 1, "the third GPU task waits for a free GPU");
    let logs = |id: &str| n.cli_ok(&["task", "logs", id]);
    eventually(Duration::from_secs(30), "all GPU tasks done", || {
        ids.iter()
            .all(|id| task(&n, id)["state"] == "succeeded")
            .then_some(())
    });
    let seen: Vec<String> = ids.iter().map(|id| logs(id).trim().to_string()).collect();
    for s in &seen {
        assert!(
            s == "gpu=GPU-simulated-0" || s == "gpu=GPU-simulated-1",
            "{seen:?}"
        );
    }
    assert_ne!(
        seen[0], seen[1],
        "the first two ran at once on different GPUs: {seen:?}"
    );
    eventually(Duration::from_secs(20), "the CPU task done", || {
        (task(&n, &none)["state"] == "succeeded").then_some(())
    });
    assert_eq!(
        logs(&none).trim(),
        "gpu=[]",
        "a task that asked for no GPU sees none"
    );
    let too_many = n.cli(&["run", "--gpus", "3", "--", "true"]);
    assert!(!too_many.status.success());
    assert!(
        text(&too_many.stderr).contains("resources.gpus"),
        "{}",
        text(&too_many.stderr)
    );
}

/// The coordinator's `tasks.log_limit_bytes` bounds the output of a task that sets no limit of
/// its own; the cut is marked in the log, and the limit is written into the task's spec.
#[test]
fn the_configured_log_limit_bounds_output_and_marks_the_cut() {
    let sb = tempfile::tempdir().expect("tempdir");
    if !capable(is_root(), "root (cgroups and namespaces for workloads)") {
        return;
    }
    let n = Node::start_with(sb.path(), &sb.path().join("n1"), &[], |c| {
        c.env("CORTEX_TASKS__LOG_LIMIT_BYTES", "1000");
    });
    // 5000 bytes of output.
    let out = run(
        &n,
        &[
            "--",
            "sh",
            "-c",
            "i=0; while [ $i -lt 50 ]; do printf '%099d\\n' $i; i=$((i+1)); done",
        ],
    );
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let id = serde_json::from_str::<serde_json::Value>(&n.cli_ok(&["-o", "json", "task", "list"]))
        .expect("json")["tasks"][0]["id"]
        .as_str()
        .expect("task id")
        .to_string();
    assert_eq!(task(&n, &id)["spec"]["log_limit_bytes"], 1000);
    let logs = n.cli(&["task", "logs", &id]);
    let (stdout, notes) = (text(&logs.stdout), text(&logs.stderr));
    assert!(stdout.starts_with(&format!("{:099}\n", 0)), "{stdout}");
    assert_eq!(stdout.len(), 1000, "exactly the limit is kept");
    assert!(
        notes.contains("4000 bytes of output dropped"),
        "the cut is marked: {notes}"
    );
}

#[test]
fn exec_tasks_run_as_nobody_and_as_root_only_where_the_node_allows_it() {
    let sb = tempfile::tempdir().expect("tempdir");
    let Some(n) = node(sb.path()) else { return };
    // The default: nobody, in a scratch dir of its own, unable to read the node's data dir.
    let key = n.data_dir.join("node.key").display().to_string();
    let out = run(
        &n,
        &[
            "--retries",
            "0",
            "--",
            "sh",
            "-c",
            &format!("id -un; pwd; cat {key} || echo refused"),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.first(), Some(&"nobody"), "{stdout}");
    assert!(
        lines.get(1).is_some_and(|l| l.starts_with("/var/tmp/cortex/")),
        "{stdout}"
    );
    assert_eq!(lines.last(), Some(&"refused"), "{stdout}");
    assert!(!stdout.contains("PRIVATE KEY"), "{stdout}");

    // Another user by name; root is refused, naming the setting; a bad name is refused at submit.
    let out = run(&n, &["--user", "daemon", "--retries", "0", "--", "id", "-un"]);
    assert_eq!(text(&out.stdout), "daemon\n", "{}", text(&out.stderr));
    let out = run(&n, &["--user", "root", "--retries", "0", "--", "id", "-u"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("tasks.allow_root"),
        "{}",
        text(&out.stderr)
    );
    let out = run(&n, &["--user", "Not A User", "--", "true"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("user"), "{}", text(&out.stderr));
    drop(n);

    // A node that allows root runs it as root when asked, and still as nobody by default.
    let open = Node::start_with(sb.path(), &sb.path().join("n2"), &[], |c| {
        c.env("CORTEX_TASKS__ALLOW_ROOT", "true");
    });
    let out = run(&open, &["--user", "root", "--", "id", "-u"]);
    assert_eq!(text(&out.stdout), "0\n", "{}", text(&out.stderr));
    let out = run(&open, &["--", "id", "-un"]);
    assert_eq!(text(&out.stdout), "nobody\n", "{}", text(&out.stderr));
}

/// `cortex loadgen executor` (the ceiling scripts/bench-tasks.py prints next to task
/// throughput) runs real attempts: each in a private network namespace with only `lo`, as
/// `nobody`, and nothing of them (cgroups, scratch dirs) is left afterwards.
#[test]
fn the_executor_benchmark_runs_isolated_attempts_and_leaves_nothing() {
    if !capable(is_root(), "root (cgroups and namespaces for workloads)") {
        return;
    }
    let sb = tempfile::tempdir().expect("tempdir");
    let mut cmd = crate::harness::cortex();
    crate::harness::node::isolate(&mut cmd, sb.path());
    // /proc/net/dev lists the namespace's interfaces: a header of two lines, then only `lo`.
    let check = r#"test "$(id -un)" = nobody && test "$(wc -l < /proc/net/dev)" -eq 3 && grep -q 'lo:' /proc/net/dev"#;
    let out = cmd
        .args([
            "-o",
            "json",
            "loadgen",
            "executor",
            "--count",
            "12",
            "--clients",
            "3",
            "--",
            "sh",
            "-c",
            check,
        ])
        .output()
        .expect("run cortex");
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json report");
    assert_eq!(r["count"], 12, "every attempt ran isolated and exited 0: {r}");
    assert_eq!(r["failed"], 0, "{r}");
    assert!(
        r["machine_cpu_ms_per_attempt"].as_f64().is_some_and(|c| c > 0.0),
        "{r}"
    );
    let left = std::process::Command::new("find")
        .args(["/sys/fs/cgroup", "-type", "d", "-path", "*/cortex-loadgen/lg-*"])
        .output()
        .expect("find");
    assert_eq!(text(&left.stdout), "", "attempt cgroups left behind");
}
