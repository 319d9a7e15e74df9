//! On the appliance PID 1 is systemd and systemd-machined answers on the bus, so nspawn tasks
//! take the systemd path (`agent/exec/src/nspawn/machined.rs`): each container is a machined
//! scope under `cortex.slice`, its limits are unit properties systemd enforces, an OOM kill is
//! read from the scope's result and cancel is machined's `KillMachine`. This build host's PID 1
//! is not systemd, so only an appliance VM can run this path; `image_pxe.rs` calls it once its
//! VM is READY.

use std::process::Output;
use std::time::Duration;

use crate::harness::Node;
use crate::image::Vm;

/// Where the VM's rootfs for nspawn tasks is made (by an exec task, as nobody: `/var/tmp` is
/// world-writable): the VM's own dash and the libraries it needs, in a merged-/usr layout.
const ROOTFS: &str = "/var/tmp/cortex-test-rootfs";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn run(coord: &Node, name: &str, args: &[&str]) -> Output {
    let mut all = vec!["run", "--node", name, "--retries", "0"];
    all.extend_from_slice(args);
    coord.cli(&all)
}

/// `machine-*.scope` entries under `cortex.slice` on the VM, as an exec task lists them.
fn scopes(coord: &Node, name: &str) -> Vec<String> {
    let out = run(
        coord,
        name,
        &[
            "--",
            "sh",
            "-c",
            "ls /sys/fs/cgroup/cortex.slice/ 2>/dev/null; true",
        ],
    );
    text(&out.stdout)
        .split_whitespace()
        .filter(|e| e.starts_with("machine-") && e.ends_with(".scope"))
        .map(str::to_owned)
        .collect()
}

pub fn nspawn_tasks_run_as_machined_scopes(vm: &mut Vm, coord: &Node, name: &str) {
    let build = format!(
        "set -e; r={ROOTFS}; rm -rf $r; mkdir -p $r/usr/bin $r/usr/lib $r/etc; \
         ln -s usr/bin $r/bin; ln -s usr/lib $r/lib; ln -s usr/lib $r/lib64; \
         cp /usr/bin/dash $r/usr/bin/sh; \
         for f in $(ldd /usr/bin/dash | grep -o '/[^ ]*'); do cp -L $f $r/usr/lib/; done; echo built"
    );
    let out = run(coord, name, &["--", "sh", "-c", &build]);
    assert_eq!(text(&out.stdout).trim(), "built", "rootfs: {}", text(&out.stderr));

    // A container runs, as PID 2 (--as-pid2).
    let out = run(
        coord,
        name,
        &["--nspawn", ROOTFS, "--", "/bin/sh", "-c", "echo inside $$"],
    );
    assert_eq!(text(&out.stdout).trim(), "inside 2", "{}", text(&out.stderr));
    // While one runs it is a machined scope under cortex.slice (the systemd path: on the
    // agent's own cgroups there is no such scope); cancel (KillMachine) ends it and the scope
    // goes away.
    let id = coord
        .cli_ok(&[
            "run",
            "-d",
            "--node",
            name,
            "--nspawn",
            ROOTFS,
            "--",
            "/bin/sh",
            "-c",
            "while :; do :; done",
        ])
        .trim()
        .to_string();
    let running = vm.wait(
        Duration::from_secs(60),
        "a machined scope for the container",
        || {
            let s = scopes(coord, name);
            (!s.is_empty()).then_some(s)
        },
    );
    coord.cli_ok(&["task", "cancel", &id]);
    vm.wait(
        Duration::from_secs(30),
        "the cancelled container's scope gone",
        || {
            let now = scopes(coord, name);
            running.iter().all(|s| !now.contains(s)).then_some(())
        },
    );
    let task: serde_json::Value =
        serde_json::from_str(&coord.cli_ok(&["-o", "json", "task", "show", &id])).expect("task json");
    assert_eq!(task["state"], "cancelled", "{task}");

    // A memory hog in 32 MiB is killed by systemd's limit, and reported as an OOM kill.
    let out = run(
        coord,
        name,
        &[
            "--nspawn",
            ROOTFS,
            "--mem",
            "32M",
            "--",
            "/bin/sh",
            "-c",
            "a=0123456789abcdef; while :; do a=$a$a; done",
        ],
    );
    assert!(!out.status.success(), "the hog survived 32 MiB");
    assert!(text(&out.stderr).contains("OOM"), "{}", text(&out.stderr));
}
