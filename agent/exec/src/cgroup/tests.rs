//! Unit tests of the cgroup module; the root-only ones run real cgroups.
use super::*;

#[test]
fn names_are_directory_safe() {
    assert!(validate_name("name", "t-0123abcd-a2").is_ok());
    for bad in ["", "../x", "a/b", "A", "-x", "a b", &"x".repeat(65)] {
        assert!(validate_name("name", bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn cpu_quota_is_per_100ms_period_with_a_floor() {
    assert_eq!(cpu_quota_us(1000), 100_000);
    assert_eq!(cpu_quota_us(200), 20_000);
    assert_eq!(cpu_quota_us(2500), 250_000);
    assert_eq!(cpu_quota_us(1), 1000);
}

#[test]
fn zero_limits_are_rejected_naming_the_field() {
    let err = validate_limits(&Limits {
        pids: Some(0),
        ..Limits::default()
    })
    .expect_err("pids 0");
    assert!(matches!(
        err,
        ExecError::InvalidSpec {
            field: "limits.pids",
            ..
        }
    ));
}

#[test]
fn a_missing_v1_controller_is_unavailable_naming_it() {
    let h = discover::Hierarchies {
        layout: Layout::Hybrid,
        v1: vec![
            ("cpu", PathBuf::from("/c")),
            ("memory", PathBuf::from("/m")),
            ("freezer", PathBuf::from("/f")),
        ],
        v2: None,
    };
    match plan(&h, PARENT, "x") {
        Err(ExecError::Unavailable(m)) => assert!(m.contains("`pids`"), "{m}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[test]
fn a_v2_parent_without_controllers_is_unavailable_naming_them() {
    // A real cgroup2 directory with controllers missing: the hybrid host's unified mount
    // (nothing is written: the check comes first).
    let unified = Path::new("/sys/fs/cgroup/unified");
    let controllers = std::fs::read_to_string(unified.join("cgroup.controllers"));
    if controllers.map_or(true, |c| c.contains("cpu")) {
        eprintln!("no controller-less cgroup2 mount here: skipped");
        return;
    }
    let h = discover::Hierarchies {
        layout: Layout::Unified,
        v1: Vec::new(),
        v2: Some(unified.to_path_buf()),
    };
    let planned = plan(&h, "cortex-unit-test", "x").expect("plan");
    assert_eq!(planned[0].1, unified.join("cortex-unit-test/x"));
    match v2::prepare_parents(&planned) {
        Err(ExecError::Unavailable(m)) => assert!(m.contains("`cpu`"), "{m}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(!unified.join("cortex-unit-test").exists());
}

type PickMethod = fn(&AttemptCgroup) -> kill::Method;

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// Every way of emptying a group works against a shell that forks as fast as it can.
#[tokio::test]
async fn every_kill_method_empties_a_forking_group() {
    if !is_root() || layout() != Layout::Hybrid {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "needs root on a hybrid host"
        );
        eprintln!("!!!!!!!! SKIPPED: needs root on a cgroup v1 hybrid host !!!!!!!!");
        return;
    }
    let parent = format!("cortex-unit-test-{}", std::process::id());
    let limits = Limits {
        pids: Some(64),
        ..Limits::default()
    };
    let methods: [(&str, PickMethod); 4] = [
        ("cgroup.kill", |cg| kill::method(&cg.groups)),
        ("v1 freezer", |cg| {
            let dir = cg
                .groups
                .iter()
                .find(|(r, _)| *r == Role::Freezer)
                .map(|(_, d)| d.clone());
            kill::Method::Freeze(kill::Freezer::V1(dir.expect("freezer group")))
        }),
        ("cgroup2 freeze", |cg| {
            let dir = cg
                .groups
                .iter()
                .find(|(r, _)| *r == Role::V2)
                .map(|(_, d)| d.clone());
            kill::Method::Freeze(kill::Freezer::V2(dir.expect("cgroup2 group")))
        }),
        ("signals only", |_| kill::Method::Signal),
    ];
    let mut parents = Vec::new();
    for (i, (what, method)) in methods.iter().enumerate() {
        let cg = AttemptCgroup::create_in(&parent, &format!("kill-{i}"), &limits)
            .await
            .expect("create");
        parents = cg
            .dirs()
            .iter()
            .filter_map(|d| d.parent().map(Path::to_path_buf))
            .collect();
        let mut shell = tokio::process::Command::new("/bin/sh")
            .args(["-c", "sleep 0.2; while :; do sleep 10 & done"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("sh");
        let pid = shell.id().expect("pid").to_string();
        for dir in cg.dirs() {
            std::fs::write(dir.join("cgroup.procs"), &pid).expect("join");
        }
        // Wait (bounded) for the loop to be forking: a busy machine can delay it well past
        // its 200 ms start.
        let waiting = std::time::Instant::now();
        while cg.pids().len() <= 5 && waiting.elapsed() < Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(cg.pids().len() > 5, "{what}: the fork loop is not running");
        let reaper = tokio::spawn(async move { shell.wait().await });
        let method = method(&cg);
        let start = std::time::Instant::now();
        while !cg.is_empty() {
            assert!(
                start.elapsed() < Duration::from_secs(3),
                "{what}: {:?} left",
                cg.pids()
            );
            kill::kill_with(&cg.groups, &method).expect("kill");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        eprintln!("{what}: emptied in {:?}", start.elapsed());
        let status = reaper.await.expect("join").expect("wait");
        assert!(!status.success());
        cg.remove().await.expect("remove");
    }
    for p in parents {
        std::fs::remove_dir(&p).expect("remove test parent");
    }
}
