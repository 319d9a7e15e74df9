//! The podman executor against a real podman service: a busybox rootfs is imported as
//! `localhost/cortex-test:1` into a store under a work_root of this test process, and tasks run
//! in it as a user of the agent would see them (output per stream, exit codes, limits, network,
//! cancel, timeout, errors naming the field).
//!
//! Needs root, podman + runc and busybox-static; without them the tests are skipped loudly, or
//! fail when `CI=true`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cortex_exec::{
    import_image, list_images, ExecConfig, ExecError, ExecSpec, Executors, Exit, Kind, Limits, Network,
    Output, Stream,
};
use tokio::sync::{mpsc, OnceCell};
use tokio_util::sync::CancellationToken;

const IMAGE: &str = "localhost/cortex-test:1";

struct Fixture {
    work_root: PathBuf,
    tarball: PathBuf,
}

impl Fixture {
    fn config(&self) -> ExecConfig {
        ExecConfig {
            work_root: self.work_root.clone(),
            podman_socket: None,
            cgroup_parent: "cortex-test".into(),
            users: cortex_exec::UserPolicy::default(),
            scratch_root: cortex_exec::default_scratch_root("cortex-test"),
        }
    }

    fn socket(&self) -> PathBuf {
        self.work_root.join("podman/podman.sock")
    }

    /// Container names in the store, through the same API socket (`podman --remote`).
    fn containers(&self) -> Vec<String> {
        containers_at(&self.socket())
    }
}

fn containers_at(socket: &Path) -> Vec<String> {
    let out = Command::new("podman")
        .arg("--remote")
        .arg("--url")
        .arg(format!("unix://{}", socket.display()))
        .args(["ps", "--all", "--format", "{{.Names}}"])
        .output()
        .expect("podman --remote ps");
    assert!(out.status.success(), "podman ps: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// The pid of the `podman system service` listening on `socket`.
fn service_pid(socket: &Path) -> Option<u32> {
    let wanted = format!("unix://{}", socket.display());
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let is_service = args.contains(&&b"service"[..])
            && args.contains(&wanted.as_bytes())
            && args.first().is_some_and(|a| a.ends_with(b"podman"));
        is_service.then_some(pid)
    })
}

/// The shared fixture (one service start and one import for all tests of this file), or `None`
/// when the host cannot run podman (tests then return early after saying so).
async fn fixture() -> Option<&'static Fixture> {
    static FIXTURE: OnceCell<Option<Fixture>> = OnceCell::const_new();
    FIXTURE.get_or_init(set_up).await.as_ref()
}

async fn set_up() -> Option<Fixture> {
    if let Some(missing) = missing_prerequisite() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("podman tests cannot run on CI: {missing}");
        }
        eprintln!("\n!!! SKIPPING the podman executor tests: {missing} !!!\n");
        return None;
    }
    let work_root = work_root();
    let rootfs = work_root.join("rootfs");
    cortex_exec::testing::build_busybox_rootfs(&rootfs).expect("busybox rootfs");
    let tarball = work_root.join("rootfs.tar");
    let status = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tarball)
        .arg(".")
        .status()
        .expect("tar");
    assert!(status.success(), "tar: {status}");
    let fixture = Fixture { work_root, tarball };
    let began = Instant::now();
    import_image(&fixture.config(), &fixture.tarball, IMAGE)
        .await
        .expect("import the busybox rootfs");
    eprintln!(
        "podman service start + import: {} ms",
        began.elapsed().as_millis()
    );
    Some(fixture)
}

fn missing_prerequisite() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        == Some("0");
    if !root {
        return Some("not running as root".into());
    }
    for (program, package) in [
        ("podman", "podman"),
        ("runc", "runc"),
        ("busybox", "busybox-static"),
    ] {
        let found = Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {program}"))
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Some(format!("{program} is missing (apt install {package})"));
        }
    }
    None
}

/// `<target>/tmp/podman-<pid>`: removed by the next run (a test process cannot clean up after
/// its last test, and a temporary dir in a static is never dropped).
fn work_root() -> PathBuf {
    work_root_named("")
}

fn work_root_named(suffix: &str) -> PathBuf {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
    if let Ok(entries) = std::fs::read_dir(base) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let Some(pid) = name
                .strip_prefix("podman-")
                .and_then(|rest| rest.split('-').next())
            else {
                continue;
            };
            if !Path::new("/proc").join(pid).exists() {
                // A service killed before it could clean up leaves the overlay driver's bind
                // mount of its graph root.
                let _ = Command::new("umount")
                    .arg(e.path().join("podman/storage/overlay"))
                    .stderr(std::process::Stdio::null())
                    .status();
                let _ = std::fs::remove_dir_all(e.path());
                // Its runtime directory (the executor's rule: /run/cortex/podman-<first 8
                // bytes of sha256(work_root)>).
                let _ = std::fs::remove_dir_all(run_dir(&e.path()));
            }
        }
    }
    let dir = base.join(format!("podman-{}{suffix}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("work root");
    dir
}

fn run_dir(work_root: &Path) -> PathBuf {
    use sha2::Digest as _;
    use std::os::unix::ffi::OsStrExt as _;
    let digest = sha2::Sha256::digest(work_root.as_os_str().as_bytes());
    let hash: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    PathBuf::from(format!("/run/cortex/podman-{hash}"))
}

/// A unique attempt name (several test processes may share the machine).
fn name(what: &str) -> String {
    format!("t-{}-{what}", std::process::id())
}

fn spec(what: &str, script: &str) -> ExecSpec {
    ExecSpec {
        kind: Kind::Podman,
        name: name(what),
        command: vec!["sh".into(), "-c".into(), script.into()],
        image: Some(IMAGE.into()),
        env: BTreeMap::new(),
        workdir: None,
        user: None,
        limits: Limits::default(),
        network: Network::Private,
        devices: Vec::new(),
        timeout: None,
    }
}

struct Ran {
    exit: Result<Exit, ExecError>,
    stdout: String,
    stderr: String,
    chunks: Vec<Output>,
}

async fn run(f: &Fixture, spec: ExecSpec) -> Ran {
    run_with(f, spec, CancellationToken::new()).await
}

async fn run_with(f: &Fixture, spec: ExecSpec, cancel: CancellationToken) -> Ran {
    let executors = Executors::new(f.config()).expect("executors");
    let (tx, mut rx) = mpsc::channel(16);
    let collect = tokio::spawn(async move {
        let mut chunks = Vec::new();
        while let Some(c) = rx.recv().await {
            chunks.push(c);
        }
        chunks
    });
    let exit = executors.run(spec, tx, cancel).await;
    let chunks = collect.await.expect("collector");
    let text = |s: Stream| {
        chunks
            .iter()
            .filter(|c| c.stream == s)
            .map(|c| String::from_utf8_lossy(&c.data).to_string())
            .collect::<String>()
    };
    Ran {
        exit,
        stdout: text(Stream::Stdout),
        stderr: text(Stream::Stderr),
        chunks,
    }
}

#[tokio::test]
async fn output_arrives_per_stream_and_the_exit_code_is_the_tasks() {
    let Some(f) = fixture().await else { return };
    let mut s = spec("streams", "echo hi; echo err >&2; echo \"FOO=$FOO\"; exit 3");
    s.env.insert("FOO".into(), "bar baz".into());
    let r = run(f, s).await;
    let exit = r.exit.expect("the task ran");
    assert_eq!(exit.code, Some(3), "{exit:?}");
    assert_eq!(exit.exit_code(), 3);
    assert!(!exit.oom_killed && !exit.timed_out && !exit.cancelled, "{exit:?}");
    assert_eq!(r.stdout, "hi\nFOO=bar baz\n");
    assert_eq!(r.stderr, "err\n");
    assert!(r.chunks.iter().all(|c| !c.data.is_empty()));
    assert!(
        !f.containers().contains(&format!("cortex-{}", name("streams"))),
        "the container is removed"
    );
}

#[tokio::test]
async fn parallel_attempts_each_get_all_of_their_own_output() {
    let Some(f) = fixture().await else { return };
    // The first bytes are written the moment the task starts: none may be lost.
    let runs: Vec<_> = (0..12)
        .map(|i| {
            let script = format!("echo first-{i}; echo err-{i} >&2; echo last-{i}");
            tokio::spawn(run(f, spec(&format!("par-{i}"), &script)))
        })
        .collect();
    for (i, r) in runs.into_iter().enumerate() {
        let r = r.await.expect("join");
        assert_eq!(r.exit.expect("ran").code, Some(0));
        assert_eq!(r.stdout, format!("first-{i}\nlast-{i}\n"));
        assert_eq!(r.stderr, format!("err-{i}\n"));
    }
}

#[tokio::test]
async fn the_environment_is_the_specs_not_the_agents() {
    let Some(f) = fixture().await else { return };
    let mut s = spec("env", "env; echo PWD_IS=$(pwd)");
    s.env.insert("ONLY_THIS".into(), "1".into());
    s.workdir = Some("/tmp".into());
    let r = run(f, s).await;
    assert_eq!(r.exit.expect("ran").code, Some(0));
    assert!(r.stdout.contains("ONLY_THIS=1\n"), "{}", r.stdout);
    assert!(r.stdout.contains("PWD_IS=/tmp\n"), "{}", r.stdout);
    // The spec's variable, podman's own and the shell's; nothing of this test process (it has
    // CARGO_* variables, for one).
    let mut names: Vec<&str> = r
        .stdout
        .lines()
        .filter(|l| !l.starts_with("PWD_IS="))
        .filter_map(|l| l.split('=').next())
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "HOME",
            "HOSTNAME",
            "ONLY_THIS",
            "PATH",
            "PWD",
            "SHLVL",
            "TERM",
            "container"
        ],
        "{}",
        r.stdout
    );
}

#[tokio::test]
async fn a_memory_hog_is_oom_killed() {
    let Some(f) = fixture().await else { return };
    // The shell holds 200 MB in a variable: the OOM killer takes the shell itself.
    let mut s = spec(
        "oom",
        "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived",
    );
    s.limits.memory_bytes = Some(64 << 20);
    let r = run(f, s).await;
    let exit = r.exit.expect("the task ran");
    assert!(exit.oom_killed, "{exit:?}");
    assert_eq!(exit.exit_code(), 137, "{exit:?}");
    assert!(!r.stdout.contains("survived"));
}

#[tokio::test]
async fn an_oom_kill_of_a_child_is_reported_even_if_the_task_goes_on() {
    let Some(f) = fixture().await else { return };
    let mut s = spec("oom-child", "head -c 200000000 /dev/zero | tail; echo went on");
    s.limits.memory_bytes = Some(64 << 20);
    let r = run(f, s).await;
    let exit = r.exit.expect("the task ran");
    assert!(exit.oom_killed, "{exit:?}");
    assert_eq!(exit.code, Some(0), "{exit:?}");
    assert_eq!(r.stdout, "went on\n");
}

#[tokio::test]
async fn limits_reach_the_containers_cgroup() {
    let Some(f) = fixture().await else { return };
    // v1 shows the container's own groups at /sys/fs/cgroup/<controller>, v2 at the root.
    let script = "cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/pids/pids.max \
                  /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || \
                  cat /sys/fs/cgroup/cpu.max /sys/fs/cgroup/pids.max /sys/fs/cgroup/memory.max";
    let mut s = spec("limits", script);
    s.limits = Limits {
        cpu_millis: Some(250),
        memory_bytes: Some(96 << 20),
        pids: Some(42),
    };
    let r = run(f, s).await;
    assert_eq!(r.exit.expect("ran").code, Some(0), "{}", r.stderr);
    let got: Vec<&str> = r.stdout.lines().collect();
    let v1 = ["25000", "42", "100663296"];
    let v2 = ["25000 100000", "42", "100663296"];
    assert!(got == v1 || got == v2, "{got:?}");
}

#[tokio::test]
async fn the_private_network_has_only_loopback() {
    let Some(f) = fixture().await else { return };
    let r = run(f, spec("net", "ls /sys/class/net")).await;
    assert_eq!(r.exit.expect("ran").code, Some(0));
    assert_eq!(r.stdout, "lo\n");

    let mut s = spec("hostnet", "ls /sys/class/net");
    s.network = Network::Host;
    let r = run(f, s).await;
    assert_eq!(r.exit.expect("ran").code, Some(0));
    assert!(r.stdout.lines().count() > 1, "host network: {}", r.stdout);
}

#[tokio::test]
async fn cancel_kills_the_container_within_a_second_and_removes_it() {
    let Some(f) = fixture().await else { return };
    let executors = Executors::new(f.config()).expect("executors");
    let cancel = CancellationToken::new();
    let (tx, mut rx) = mpsc::channel(16);
    let s = spec("cancel", "echo started; exec sleep 100");
    let running = tokio::spawn({
        let cancel = cancel.clone();
        async move { executors.run(s, tx, cancel).await }
    });
    let first = tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .expect("the task starts");
    assert_eq!(first.map(|o| o.data), Some(b"started\n".to_vec()));
    let cancelled_at = Instant::now();
    cancel.cancel();
    let exit = running.await.expect("join").expect("the task ran");
    let took = cancelled_at.elapsed();
    eprintln!("cancel → run returned: {} ms", took.as_millis());
    assert!(exit.cancelled, "{exit:?}");
    assert_eq!(exit.signal, Some(9), "{exit:?}");
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    assert!(!f.containers().contains(&format!("cortex-{}", name("cancel"))));
}

#[tokio::test]
async fn a_timeout_kills_the_container() {
    let Some(f) = fixture().await else { return };
    let mut s = spec("timeout", "sleep 100");
    s.timeout = Some(Duration::from_millis(300));
    let began = Instant::now();
    let exit = run(f, s).await.exit.expect("the task ran");
    assert!(exit.timed_out && !exit.cancelled, "{exit:?}");
    assert_eq!(exit.exit_code(), 137);
    assert!(began.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn errors_name_the_field() {
    let Some(f) = fixture().await else { return };
    let mut s = spec("noimage", "true");
    s.image = Some("localhost/no-such-image:1".into());
    match run(f, s).await.exit {
        Err(ExecError::InvalidSpec { field, message }) => {
            assert_eq!(field, "image");
            assert!(message.contains("localhost/no-such-image:1"), "{message}");
            assert!(message.contains("cortex image import"), "{message}");
        }
        other => panic!("expected InvalidSpec(image), got {other:?}"),
    }

    let mut s = spec("nocmd", "true");
    s.command = vec!["/no/such/program".into()];
    match run(f, s).await.exit {
        Err(ExecError::InvalidSpec { field, .. }) => assert_eq!(field, "command"),
        other => panic!("expected InvalidSpec(command), got {other:?}"),
    }
    assert!(!f.containers().contains(&format!("cortex-{}", name("nocmd"))));
}

#[tokio::test]
async fn imported_images_are_listed_and_bad_tarballs_refused() {
    let Some(f) = fixture().await else { return };
    let images = list_images(&f.config()).await.expect("list");
    assert!(images.contains(&IMAGE.to_string()), "{images:?}");

    let bad = f.work_root.join("not-a-tarball.tar");
    std::fs::write(&bad, b"this is not a tar archive").expect("write");
    let err = import_image(&f.config(), &bad, "localhost/bad:1")
        .await
        .expect_err("garbage is refused");
    assert!(err.to_string().contains("not-a-tarball.tar"), "{err}");

    let err = import_image(&f.config(), &bad, "Bad Name")
        .await
        .expect_err("a bad reference is refused");
    assert!(
        matches!(
            err,
            ExecError::InvalidSpec {
                field: "reference",
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn a_service_given_by_socket_is_used_as_is() {
    let Some(f) = fixture().await else { return };
    let elsewhere = work_root_named("-external");
    let config = ExecConfig {
        work_root: elsewhere.clone(),
        podman_socket: Some(f.socket()),
        cgroup_parent: "cortex-test".into(),
        users: cortex_exec::UserPolicy::default(),
        scratch_root: cortex_exec::default_scratch_root("cortex-test"),
    };
    let executors = Executors::new(config.clone()).expect("executors");
    let (tx, mut rx) = mpsc::channel(16);
    let exit = executors
        .run(spec("external", "echo ext"), tx, CancellationToken::new())
        .await
        .expect("ran");
    assert_eq!(exit.code, Some(0));
    assert_eq!(rx.recv().await.map(|o| o.data), Some(b"ext\n".to_vec()));
    assert!(!elsewhere.join("podman").exists(), "no service of our own");

    let missing = elsewhere.join("nobody.sock");
    let config = ExecConfig {
        podman_socket: Some(missing.clone()),
        ..config
    };
    match list_images(&config).await {
        Err(ExecError::Unavailable(m)) => assert!(m.contains("nobody.sock"), "{m}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn a_dead_service_is_started_again_and_its_leftover_containers_removed() {
    let Some(f) = fixture().await else { return };
    // A service of its own: this test kills it.
    let work_root = work_root_named("-restart");
    let config = ExecConfig {
        work_root: work_root.clone(),
        podman_socket: None,
        cgroup_parent: "cortex-test".into(),
        users: cortex_exec::UserPolicy::default(),
        scratch_root: cortex_exec::default_scratch_root("cortex-test"),
    };
    import_image(&config, &f.tarball, IMAGE).await.expect("import");
    let socket = work_root.join("podman/podman.sock");
    let conf = work_root.join("podman");

    // An attempt of an earlier agent, never removed.
    let leftover = format!("cortex-{}", name("leftover"));
    let out = Command::new("podman")
        .env("CONTAINERS_CONF", conf.join("containers.conf"))
        .env("CONTAINERS_STORAGE_CONF", conf.join("storage.conf"))
        .args([
            "create",
            "--name",
            &leftover,
            "--network",
            "none",
            IMAGE,
            "sleep",
            "100",
        ])
        .output()
        .expect("podman create");
    assert!(out.status.success(), "{out:?}");
    assert!(containers_at(&socket).contains(&leftover));

    let pid = service_pid(&socket).expect("the service runs");
    let killed = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());

    let executors = Executors::new(config).expect("executors");
    let (tx, _rx) = mpsc::channel(16);
    let exit = executors
        .run(spec("after-restart", "true"), tx, CancellationToken::new())
        .await
        .expect("ran on a new service");
    assert_eq!(exit.code, Some(0));
    assert!(!containers_at(&socket).contains(&leftover), "leftover removed");
}
