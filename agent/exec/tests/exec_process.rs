//! The `exec` executor on the real host: output, environment, exit codes, limits enforced by
//! the kernel, kill of the whole tree on cancel and timeout, cleanup.

mod exec_support;

use std::collections::HashSet;
use std::time::Duration;

use cortex_exec::cgroup::{self, AttemptCgroup};
use cortex_exec::{ExecError, Kind, Limits, Network};
use exec_support::*;
use tokio_util::sync::CancellationToken;

const SH: &str = "/bin/sh";

#[tokio::test]
async fn stdout_and_stderr_arrive_separately_and_in_order() {
    if !can_run(&[SH]) {
        return;
    }
    let (ex, _dir) = executors();
    let ran = run(
        &ex,
        sh(
            Kind::Exec,
            "order",
            "for i in 1 2 3; do echo out$i; echo err$i >&2; done",
        ),
    )
    .await;
    assert_eq!(ran.exit().code, Some(0));
    assert_eq!(ran.stdout(), "out1\nout2\nout3\n");
    assert_eq!(ran.stderr(), "err1\nerr2\nerr3\n");
}

#[tokio::test]
async fn large_output_is_chunked_at_64_kib_and_complete() {
    if !can_run(&[SH]) {
        return;
    }
    let (ex, _dir) = executors();
    let ran = run(&ex, sh(Kind::Exec, "big", "head -c 1000000 /dev/zero")).await;
    assert_eq!(ran.exit().code, Some(0));
    let total: usize = ran.output.iter().map(|o| o.data.len()).sum();
    assert_eq!(total, 1_000_000);
    assert!(ran.output.iter().all(|o| o.data.len() <= 64 * 1024));
}

#[tokio::test]
async fn environment_is_the_specs_plus_a_minimal_path() {
    if !can_run(&[SH]) {
        return;
    }
    // cargo sets this in the test process: it must not reach the task.
    assert!(std::env::var("CARGO_MANIFEST_DIR").is_ok());
    let (ex, _dir) = executors();
    let mut spec = spec(Kind::Exec, "env", &["env"]);
    spec.env.insert("GREETING".into(), "hello world".into());
    let ran = run(&ex, spec).await;
    assert_eq!(ran.exit().code, Some(0));
    let stdout = ran.stdout();
    let mut vars: Vec<&str> = stdout.lines().filter_map(|l| l.split('=').next()).collect();
    vars.sort();
    assert_eq!(vars, ["GREETING", "HOME", "PATH", "TMPDIR"], "{}", ran.stdout());
    assert!(ran.stdout().contains("GREETING=hello world\n"));
    assert!(ran
        .stdout()
        .contains("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"));
}

#[tokio::test]
async fn exit_code_is_reported() {
    if !can_run(&[SH]) {
        return;
    }
    let (ex, _dir) = executors();
    let exit = run(&ex, sh(Kind::Exec, "code", "exit 3")).await.exit();
    assert_eq!((exit.code, exit.signal, exit.exit_code()), (Some(3), None, 3));
    assert!(!exit.oom_killed && !exit.timed_out && !exit.cancelled);

    let exit = run(&ex, sh(Kind::Exec, "signal", "kill -TERM $$")).await.exit();
    assert_eq!((exit.code, exit.signal, exit.exit_code()), (None, Some(15), 143));
}

/// The process starts with no signal blocked and SIGPIPE at its default (the agent ignores
/// it, and the process is started from the agent's memory), so `yes | head` ends.
#[tokio::test]
async fn signals_start_unblocked_and_sigpipe_at_its_default() {
    if !can_run(&[SH]) {
        return;
    }
    let (ex, _dir) = executors();
    let ran = run(
        &ex,
        sh(
            Kind::Exec,
            "signals",
            "grep -E '^Sig(Blk|Ign)' /proc/self/status; yes | head -n 2",
        ),
    )
    .await;
    assert_eq!(ran.exit().code, Some(0), "{}", ran.stderr());
    let out = ran.stdout();
    let field = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| u64::from_str_radix(v.trim(), 16).expect("hex mask"))
            .unwrap_or_else(|| panic!("{name} missing: {out}"))
    };
    assert_eq!(field("SigBlk:"), 0, "{out}");
    assert_eq!(
        field("SigIgn:") & (1 << (libc::SIGPIPE - 1)),
        0,
        "SIGPIPE ignored: {out}"
    );
    assert!(out.ends_with("y\ny\n"), "{out}");
}

#[tokio::test]
async fn a_closed_output_channel_discards_output_without_blocking_the_task() {
    if !can_run(&[SH]) {
        return;
    }
    let (ex, _dir) = executors();
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    drop(rx);
    let spec = sh(Kind::Exec, "closed", "head -c 1000000 /dev/zero; echo done");
    let exit = tokio::time::timeout(Duration::from_secs(5), ex.run(spec, tx, CancellationToken::new()))
        .await
        .expect("the task blocked on its output")
        .expect("run");
    assert_eq!(exit.code, Some(0));
}

#[tokio::test]
async fn a_missing_command_is_an_invalid_spec_naming_it() {
    if !can_run(&[SH]) {
        return;
    }
    let (ex, dir) = executors();
    let ran = run(&ex, spec(Kind::Exec, "missing", &["no-such-program-42"])).await;
    match ran.result {
        Err(ExecError::InvalidSpec {
            field: "command",
            message,
        }) => assert!(message.contains("no-such-program-42"), "{message}"),
        other => panic!("expected InvalidSpec(command), got {other:?}"),
    }
    // Not executable: also the command's fault.
    let file = dir.path().join("not-executable");
    std::fs::write(&file, "echo hi\n").expect("write");
    let path = file.display().to_string();
    let ran = run(&ex, spec(Kind::Exec, "noexec", &[&path])).await;
    assert!(
        matches!(ran.result, Err(ExecError::InvalidSpec { field: "command", .. })),
        "{:?}",
        ran.result
    );
}

#[tokio::test]
async fn memory_hog_is_oom_killed() {
    if !can_run(&[SH]) {
        return;
    }
    let (ex, _dir) = executors();
    let mut spec = sh(
        Kind::Exec,
        "oom",
        r#"x=$(head -c 200000000 /dev/zero | tr "\0" a); echo survived"#,
    );
    spec.limits.memory_bytes = Some(64 << 20);
    let ran = run(&ex, spec).await;
    let exit = ran.exit();
    assert!(exit.oom_killed, "{exit:?} {}", ran.stderr());
    assert_eq!(exit.exit_code(), 137);
    assert!(!ran.stdout().contains("survived"));
}

#[tokio::test]
async fn cpu_quota_is_enforced() {
    if !can_run(&[SH, "/usr/bin/timeout"]) {
        return;
    }
    let (ex, _dir) = executors();
    // Spin for 1 s of wall time, then report the children's CPU time (`times`, second line).
    let mut spec = sh(
        Kind::Exec,
        "cpu",
        r#"timeout 1 sh -c "while :; do :; done"; times"#,
    );
    spec.limits.cpu_millis = Some(200);
    let ran = run(&ex, spec).await;
    assert!(ran.exit().exit_code() == 0, "{:?}", ran.stderr());
    let cpu = children_cpu_seconds(&ran.stdout());
    eprintln!("busy loop with cpu_millis=200 for 1 s used {cpu:.3} s of CPU");
    assert!(cpu <= 0.35, "used {cpu} s of CPU in 1 s with a 0.2 core quota");
    assert!(cpu >= 0.05, "the loop did not run ({cpu} s)");
}

/// dash's `times`: "0m0.000000s 0m0.001000s\n0m0.200000s 0m0.004000s\n" (shell, children).
fn children_cpu_seconds(times: &str) -> f64 {
    let line = times.lines().nth(1).expect("times prints two lines");
    line.split_whitespace()
        .map(|t| {
            let (m, s) = t.trim_end_matches('s').split_once('m').expect("XmY.Zs");
            m.parse::<f64>().expect("minutes") * 60.0 + s.parse::<f64>().expect("seconds")
        })
        .sum()
}

#[tokio::test]
async fn pids_limit_stops_a_fork_loop() {
    if !can_run(&[SH]) {
        return;
    }
    let (ex, _dir) = executors();
    let mut spec = sh(Kind::Exec, "pids", "for i in $(seq 50); do sleep 5 & done; wait");
    spec.limits.pids = Some(10);
    let ran = run(&ex, spec).await;
    let exit = ran.exit();
    assert_ne!(exit.exit_code(), 0);
    assert!(ran.stderr().contains("fork"), "stderr: {}", ran.stderr());
    // The sleeps that did start were killed with the shell, not waited for.
    assert!(ran.elapsed < Duration::from_secs(4), "{:?}", ran.elapsed);
}

/// Starts `sh -c 'sh -c "sleep 100" & sleep 100'` and returns the pids of its two sleeps once
/// both are running in the attempt's cgroup.
async fn wait_for_two_sleeps(name: &str) -> Vec<i32> {
    for _ in 0..400 {
        let sleeps: Vec<i32> = cgroup::attempt_pids(name)
            .expect("pids")
            .into_iter()
            .filter(|p| cmdline(*p).as_deref() == Some("sleep 100"))
            .collect();
        if sleeps.len() == 2 {
            return sleeps;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the two sleeps of {name} never showed up in its cgroup");
}

fn assert_gone(pids: &[i32]) {
    for pid in pids {
        assert_ne!(cmdline(*pid).as_deref(), Some("sleep 100"), "pid {pid} survived");
    }
}

#[tokio::test]
async fn cancel_kills_the_grandchild_within_a_second() {
    if !can_run(&[SH]) {
        return;
    }
    let (ex, _dir) = executors();
    let spec = sh(Kind::Exec, "cancel", r#"sh -c "sleep 100" & sleep 100"#);
    let name = spec.name.clone();
    let cancel = CancellationToken::new();
    let run = tokio::spawn({
        let cancel = cancel.clone();
        async move { run_with(&ex, spec, cancel).await }
    });
    let sleeps = wait_for_two_sleeps(&name).await;
    let cancelled_at = std::time::Instant::now();
    cancel.cancel();
    let ran = run.await.expect("join");
    let took = cancelled_at.elapsed();
    let exit = ran.exit();
    assert!(exit.cancelled && !exit.timed_out, "{exit:?}");
    assert!(
        took < Duration::from_secs(1),
        "run returned {took:?} after cancel"
    );
    assert_gone(&sleeps);
    assert!(cgroup::attempt_pids(&name).expect("pids").is_empty());
}

#[tokio::test]
async fn timeout_kills_the_grandchild() {
    if !can_run(&[SH]) {
        return;
    }
    let (ex, _dir) = executors();
    let mut spec = sh(Kind::Exec, "timeout", r#"sh -c "sleep 100" & sleep 100"#);
    spec.timeout = Some(Duration::from_millis(500));
    let name = spec.name.clone();
    let run = tokio::spawn(async move { run(&ex, spec).await });
    let sleeps = wait_for_two_sleeps(&name).await;
    let ran = run.await.expect("join");
    let exit = ran.exit();
    assert!(exit.timed_out && !exit.cancelled, "{exit:?}");
    assert_eq!(exit.signal, Some(9));
    assert!(ran.elapsed < Duration::from_millis(1500), "{:?}", ran.elapsed);
    assert_gone(&sleeps);
}

#[tokio::test]
async fn background_leftovers_are_killed_when_the_main_process_exits() {
    if !can_run(&[SH]) {
        return;
    }
    let (ex, _dir) = executors();
    let ran = run(
        &ex,
        sh(Kind::Exec, "leftover", "sleep 100 >/dev/null 2>&1 & echo $!"),
    )
    .await;
    assert_eq!(ran.exit().code, Some(0));
    assert!(ran.elapsed < Duration::from_secs(2), "{:?}", ran.elapsed);
    let pid: i32 = ran.stdout().trim().parse().expect("pid");
    assert_ne!(cmdline(pid).as_deref(), Some("sleep 100"));
}

#[tokio::test]
async fn scratch_dir_is_cwd_home_and_tmpdir_and_is_removed() {
    if !can_run(&[SH]) {
        return;
    }
    let (ex, dir) = executors();
    let spec = sh(
        Kind::Exec,
        "scratch",
        "pwd; echo $HOME; echo $TMPDIR; echo data > file; ls",
    );
    let expected = ex.config().scratch_root.join(&spec.name);
    let ran = run(&ex, spec).await;
    assert_eq!(ran.exit().code, Some(0), "{}", ran.stderr());
    let shown = expected.display().to_string();
    assert_eq!(ran.stdout(), format!("{shown}\n{shown}\n{shown}\nfile\n"));
    assert!(!expected.exists(), "{shown} survived the run");
    drop(dir);
}

/// The uid, gid and groups a process of the attempt has, as `id` prints them.
fn ids_of(ran: &Ran) -> (String, String, String) {
    let out = ran.stdout();
    let mut lines = out.lines().map(str::to_string);
    let mut next = || lines.next().unwrap_or_default();
    (next(), next(), next())
}

#[tokio::test]
async fn tasks_run_as_nobody_by_default_and_never_as_root_unless_allowed() {
    if !can_run(&[SH]) || !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED: switching users needs root");
        assert!(std::env::var("CI").as_deref() != Ok("true"), "CI runs as root");
        return;
    }
    let (ex, _dir) = executors();
    let nobody = nix::unistd::User::from_name("nobody")
        .expect("passwd")
        .expect("nobody");
    // Default: nobody, with nobody's groups only (none of root's), owning its scratch dir;
    // files it creates get the usual 0644, not the agent's private umask.
    let ran = run(
        &ex,
        sh(
            Kind::Exec,
            "nobody",
            "id -u; id -g; id -G; stat -c '%u %a' .; touch f; stat -c '%a' f; grep '^CapEff' /proc/self/status",
        ),
    )
    .await;
    assert_eq!(ran.exit().code, Some(0), "{} {}", ran.stdout(), ran.stderr());
    let (uid, gid, groups) = ids_of(&ran);
    assert_eq!(uid, nobody.uid.to_string());
    assert_eq!(gid, nobody.gid.to_string());
    assert!(!groups.split_whitespace().any(|g| g == "0"), "{groups}");
    let out = ran.stdout();
    let rest: Vec<&str> = out.lines().skip(3).collect();
    assert_eq!(rest[0], format!("{} 700", nobody.uid), "{out}");
    assert_eq!(rest[1], "644", "{out}");
    assert_eq!(
        rest[2].split_whitespace().last(),
        Some("0000000000000000"),
        "{out}"
    );

    // A bare uid without a passwd entry: that uid and its own group.
    let mut bare = sh(Kind::Exec, "bare-uid", "id -u; id -g; id -G");
    bare.user = Some("4000123".into());
    let ran = run(&ex, bare).await;
    assert_eq!(ran.exit().code, Some(0), "{}", ran.stderr());
    assert_eq!(
        ids_of(&ran),
        ("4000123".into(), "4000123".into(), "4000123".into())
    );

    // Root is refused by default, naming the field and the setting that allows it; an unknown
    // user is named.
    for (user, says) in [
        ("root", "tasks.allow_root"),
        ("0", "tasks.allow_root"),
        ("no-such-user-42", "no-such-user-42"),
    ] {
        let mut s = spec(Kind::Exec, "root", &["id", "-u"]);
        s.user = Some(user.into());
        match run(&ex, s).await.result {
            Err(ExecError::InvalidSpec {
                field: "user",
                message,
            }) => {
                assert!(message.contains(says), "{user}: {message}")
            }
            other => panic!("{user}: expected InvalidSpec(user), got {other:?}"),
        }
    }
}

#[tokio::test]
async fn private_network_has_only_lo_and_host_network_is_the_hosts() {
    if !can_run(&[SH]) {
        return;
    }
    let (ex, _dir) = executors();
    let ran = run(&ex, spec(Kind::Exec, "netns", &["cat", "/proc/net/dev"])).await;
    assert_eq!(ran.exit().code, Some(0));
    assert_eq!(interfaces(&ran.stdout()), ["lo"]);

    let mut host = spec(Kind::Exec, "hostnet", &["cat", "/proc/net/dev"]);
    host.network = Network::Host;
    let ran = run(&ex, host).await;
    let ours = std::fs::read_to_string("/proc/net/dev").expect("/proc/net/dev");
    assert_eq!(interfaces(&ran.stdout()), interfaces(&ours));
}

#[tokio::test]
async fn nothing_of_the_attempt_remains_in_cgroups() {
    if !can_run(&[SH]) {
        return;
    }
    let (ex, _dir) = executors();
    let spec = sh(Kind::Exec, "cgdirs", "cat /proc/self/cgroup");
    let name = spec.name.clone();
    let ran = run(&ex, spec).await;
    assert_eq!(ran.exit().code, Some(0));
    // The task saw itself in its own groups...
    let stdout = ran.stdout();
    let groups: Vec<&str> = stdout
        .lines()
        .filter(|l| l.ends_with(&format!("/cortex/{name}")))
        .map(|l| l.split(':').nth(1).unwrap_or(""))
        .collect();
    let expected: &[&str] = match cgroup::layout() {
        cgroup::Layout::Hybrid => &["cpu", "memory", "pids", "freezer"],
        cgroup::Layout::Unified => &[""],
    };
    for g in expected {
        assert!(
            groups.iter().any(|c| c.split(',').any(|c| c == *g)),
            "not in a {g:?} group: {stdout}"
        );
    }
    // ...and none is left.
    assert_no_cgroup_named(&name);
}

#[tokio::test]
async fn stale_attempts_of_a_crashed_agent_are_killed_at_start_up() {
    if !can_run(&["/bin/sleep"]) {
        return;
    }
    // Our own parent group: the real one may hold other tests' live attempts.
    let parent = unique_name("cortex-stale-test");
    let limits = Limits::default();
    let stale = AttemptCgroup::create_in(&parent, "stale-a", &limits)
        .await
        .expect("create stale");
    let kept = AttemptCgroup::create_in(&parent, "kept-b", &limits)
        .await
        .expect("create kept");
    let mut sleeper = tokio::process::Command::new("/bin/sleep")
        .arg("100")
        .spawn()
        .expect("sleep");
    let pid = sleeper.id().expect("pid");
    for dir in stale.dirs() {
        std::fs::write(dir.join("cgroup.procs"), pid.to_string()).expect("join");
    }
    let parent_dirs: Vec<_> = stale
        .dirs()
        .iter()
        .filter_map(|d| d.parent().map(|p| p.to_path_buf()))
        .collect();
    // The agent "crashes": nobody cleans up.
    std::mem::forget(stale);

    let keep = HashSet::from(["kept-b".to_string()]);
    let removed = cgroup::kill_stale_in(&parent, &keep).await.expect("kill_stale");
    assert_eq!(removed, ["stale-a"]);
    let status = tokio::time::timeout(Duration::from_secs(2), sleeper.wait())
        .await
        .expect("the stale attempt's process was not killed")
        .expect("wait");
    assert!(!status.success());
    for d in &parent_dirs {
        assert!(!d.join("stale-a").exists());
        assert!(d.join("kept-b").exists());
    }
    kept.remove().await.expect("remove kept");
    for d in parent_dirs {
        std::fs::remove_dir(&d).expect("remove test parent");
    }
}
