//! The `nspawn` executor on the real host, with the busybox rootfs fixture: output, an
//! ephemeral filesystem, tarball images, limits, network, cancel and spec errors.

mod exec_support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use cortex_exec::cgroup;
use cortex_exec::{ExecError, ExecSpec, Kind, Network};
use exec_support::*;
use tokio_util::sync::CancellationToken;

const NSPAWN: &str = "/usr/bin/systemd-nspawn";
const BUSYBOX: &str = "/bin/busybox";

/// A busybox rootfs in `dir` (~50 ms to build; read-only for the tests: nspawn overlays it).
fn rootfs(dir: &Path) -> PathBuf {
    let root = dir.join("busybox-root");
    if !root.exists() {
        cortex_exec::testing::build_busybox_rootfs(&root).expect("busybox rootfs");
    }
    root
}

fn can_run_nspawn() -> bool {
    can_run(&[NSPAWN, BUSYBOX, "/usr/sbin/chroot"])
}

fn in_container(dir: &Path, prefix: &str, script: &str) -> ExecSpec {
    let mut spec = sh(Kind::Nspawn, prefix, script);
    spec.image = Some(rootfs(dir).display().to_string());
    spec
}

#[tokio::test]
async fn echo_in_a_busybox_container() {
    if !can_run_nspawn() {
        return;
    }
    let (ex, dir) = executors();
    let spec = in_container(dir.path(), "ns-echo", "echo hi; echo there >&2; exit 4");
    let name = spec.name.clone();
    let ran = run(&ex, spec).await;
    let exit = ran.exit();
    assert_eq!(exit.code, Some(4), "stderr: {}", ran.stderr());
    assert_eq!(ran.stdout(), "hi\n");
    // Nothing else on stderr either: no nspawn chatter such as the /run propagate warning.
    assert_eq!(ran.stderr(), "there\n");
    // nspawn mirrors its cgroup into systemd's named hierarchy: that goes too.
    assert_no_cgroup_named(&name);
}

#[tokio::test]
async fn environment_is_the_specs_and_workdir_applies() {
    if !can_run_nspawn() {
        return;
    }
    let (ex, dir) = executors();
    assert!(std::env::var("CARGO_MANIFEST_DIR").is_ok());
    let mut spec = in_container(dir.path(), "ns-env", "pwd; env");
    spec.env.insert("GREETING".into(), "hello world".into());
    spec.workdir = Some("/tmp".into());
    let ran = run(&ex, spec).await;
    assert_eq!(ran.exit().code, Some(0), "{}", ran.stderr());
    let out = ran.stdout();
    assert!(out.starts_with("/tmp\n"), "{out}");
    assert!(out.contains("GREETING=hello world\n"), "{out}");
    assert!(!out.contains("CARGO_MANIFEST_DIR"), "{out}");
}

#[tokio::test]
async fn the_container_filesystem_is_ephemeral() {
    if !can_run_nspawn() {
        return;
    }
    let (ex, dir) = executors();
    let ran = run(
        &ex,
        in_container(
            dir.path(),
            "ns-write",
            "echo data > /root/written; cat /root/written",
        ),
    )
    .await;
    assert_eq!(ran.exit().code, Some(0), "{}", ran.stderr());
    assert_eq!(ran.stdout(), "data\n");
    assert!(!rootfs(dir.path()).join("root/written").exists());
    let again = run(&ex, in_container(dir.path(), "ns-read", "test -e /root/written")).await;
    assert_eq!(again.exit().code, Some(1));
}

#[tokio::test]
async fn tarball_images_are_unpacked_once_and_reused() {
    if !can_run_nspawn() {
        return;
    }
    let (ex, dir) = executors();
    let root = rootfs(dir.path());
    let mut formats = vec![("busybox.tar", ""), ("busybox.tar.gz", "--gzip")];
    if Path::new("/usr/bin/zstd").exists() {
        formats.push(("busybox.tar.zst", "--zstd"));
    } else {
        eprintln!("!!!!!!!! zstd missing: .tar.zst not tested !!!!!!!!");
    }
    for (file, flag) in &formats {
        let tarball = dir.path().join(file);
        let mut tar = std::process::Command::new("tar");
        tar.arg("-cf").arg(&tarball).arg("-C").arg(&root).arg(".");
        if !flag.is_empty() {
            tar.arg(flag);
        }
        assert!(tar.status().expect("tar").success());
        for _ in 0..2 {
            let mut spec = sh(Kind::Nspawn, "ns-tar", "echo from-tar");
            spec.image = Some(tarball.display().to_string());
            let ran = run(&ex, spec).await;
            assert_eq!(ran.exit().code, Some(0), "{file}: {}", ran.stderr());
            assert_eq!(ran.stdout(), "from-tar\n");
        }
    }
    // One unpacked tree per tarball (each format hashes differently), named by its sha256.
    let unpacked: Vec<_> = std::fs::read_dir(dir.path().join("rootfs"))
        .expect("rootfs dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(unpacked.len(), formats.len(), "{unpacked:?}");
    assert!(unpacked.iter().all(|n| n.len() == 64), "{unpacked:?}");
}

#[tokio::test]
async fn memory_limit_applies_to_the_payload() {
    if !can_run_nspawn() {
        return;
    }
    let (ex, dir) = executors();
    let mut spec = in_container(
        dir.path(),
        "ns-oom",
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
async fn private_network_has_only_lo() {
    if !can_run_nspawn() {
        return;
    }
    let (ex, dir) = executors();
    let ran = run(&ex, in_container(dir.path(), "ns-net", "cat /proc/net/dev")).await;
    assert_eq!(ran.exit().code, Some(0), "{}", ran.stderr());
    assert_eq!(interfaces(&ran.stdout()), ["lo"]);

    let mut host = in_container(dir.path(), "ns-hostnet", "cat /proc/net/dev");
    host.network = Network::Host;
    let ran = run(&ex, host).await;
    let ours = std::fs::read_to_string("/proc/net/dev").expect("/proc/net/dev");
    assert_eq!(interfaces(&ran.stdout()), interfaces(&ours));
}

#[tokio::test]
async fn cancel_kills_the_container_within_a_second() {
    if !can_run_nspawn() {
        return;
    }
    let (ex, dir) = executors();
    let spec = in_container(dir.path(), "ns-cancel", "sleep 100 & sleep 100");
    let name = spec.name.clone();
    let cancel = CancellationToken::new();
    let run = tokio::spawn({
        let cancel = cancel.clone();
        async move { run_with(&ex, spec, cancel).await }
    });
    let mut sleeps = Vec::new();
    for _ in 0..500 {
        sleeps = cgroup::attempt_pids(&name)
            .expect("pids")
            .into_iter()
            .filter(|p| cmdline(*p).as_deref() == Some("sleep 100"))
            .collect();
        if sleeps.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(sleeps.len(), 2, "the container's sleeps never showed up");
    let at = std::time::Instant::now();
    cancel.cancel();
    let ran = run.await.expect("join");
    assert!(at.elapsed() < Duration::from_secs(1), "{:?}", at.elapsed());
    assert!(ran.exit().cancelled);
    for pid in sleeps {
        assert_ne!(cmdline(pid).as_deref(), Some("sleep 100"));
    }
}

#[tokio::test]
async fn a_missing_or_bogus_image_is_an_invalid_spec() {
    if !can_run_nspawn() {
        return;
    }
    let (ex, dir) = executors();
    let garbage = dir.path().join("garbage.tar.gz");
    std::fs::write(&garbage, b"not a tarball").expect("write");
    let cases = [
        None,
        Some("/nonexistent/rootfs".to_string()),
        Some(dir.path().display().to_string()), // a directory, but no /bin or /usr
        Some("relative/rootfs".to_string()),
        Some(garbage.display().to_string()),
        Some("/etc/hostname".to_string()), // neither a directory nor a tarball
    ];
    for image in cases {
        let mut spec = sh(Kind::Nspawn, "ns-bad", "true");
        spec.image = image.clone();
        match run(&ex, spec).await.result {
            Err(ExecError::InvalidSpec { field: "image", .. }) => {}
            other => panic!("image {image:?}: expected InvalidSpec(image), got {other:?}"),
        }
    }
}
