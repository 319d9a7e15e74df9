//! Full PXE in real qemu (TCG): in network namespaces, a stock DHCP server (dnsmasq, addresses
//! only), `cortex pxe serve --proxy-dhcp` and a coordinator; qemu's own iPXE ROM boots a VM from
//! the network through a tap on the bridge. The VM shows up PENDING with inventory and
//! benchmark, the test approves it, it becomes READY and runs a task whose output is read back.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::harness::netns::Netns;
use crate::harness::node::cortex_in;
use crate::harness::node::isolate;
use crate::harness::{have, Node};
use crate::image::{artifacts, image_dir, node_json, wait_pending, Vm, BOOT_BOUND, ONE_VM};

/// A child process killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run(args: &[&str]) {
    let ok = Command::new(args[0])
        .args(&args[1..])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "{args:?} failed");
}

#[test]
fn a_vm_pxe_boots_joins_is_approved_and_runs_a_task() {
    if artifacts(&["vmlinuz", "initrd"]).is_none() || !have("dnsmasq") {
        return;
    }
    // Host 1: coordinator + `cortex pxe serve`; host 2: the LAN's DHCP server (both bind port 67,
    // as on a real LAN where the proxy runs beside the router).
    let Some(net) = Netns::new(2) else { return };
    let _one = ONE_VM.lock().unwrap_or_else(|e| e.into_inner());
    let sb = tempfile::tempdir().expect("tempdir");
    let ns = net.name(1);
    let ip = net.ip(1);
    // The bridge lives in the hub namespace; the VM's tap joins it there.
    let hub = format!("{}h", ns.trim_end_matches("-1"));
    run(&["ip", "-n", &hub, "tuntap", "add", "dev", "tap0", "mode", "tap"]);
    run(&["ip", "-n", &hub, "link", "set", "tap0", "master", "br0", "up"]);
    // A LAN has a default route; without one, the proxy's broadcast replies are unroutable.
    run(&["ip", "-n", &ns, "route", "add", "default", "dev", "eth0"]);

    let grpc = format!("{ip}:7071");
    let coord = Node::start_in(
        Some(&ns),
        sb.path(),
        &sb.path().join("coord"),
        &[
            "--grpc-addr",
            &grpc,
            "--http-addr",
            &format!("{ip}:7070"),
            "--node-name",
            "coord",
        ],
        crate::cluster::fast_liveness,
    );
    let token = coord
        .cli_ok(&["token", "create", "--ttl", "30m"])
        .trim()
        .to_string();

    // Addresses only: no boot options at all, so the boot file can come only from the proxy.
    let dnsmasq = Proc(
        Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", net.name(2)))
            .args(["--", "dnsmasq", "--no-daemon", "--port=0", "--interface=eth0"])
            .args(["--bind-interfaces", "--dhcp-range=10.231.0.100,10.231.0.150,1h"])
            .arg(format!("--dhcp-leasefile={}", sb.path().join("leases").display()))
            .arg("--conf-file=/dev/null")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(sb.path().join("dnsmasq.log")).expect("log"))
            .spawn()
            .expect("spawn dnsmasq"),
    );
    let mut pxe = cortex_in(Some(&ns));
    isolate(&mut pxe, sb.path());
    let pxe = Proc(
        pxe.args(["pxe", "serve", "--artifacts"])
            .arg(image_dir())
            .args(["--join", &grpc, "--token", &token, "--proxy-dhcp"])
            .args(["--advertise", &ip, "--http-addr", &format!("{ip}:8080")])
            .args(["--tftp-addr", &format!("{ip}:69")])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(sb.path().join("pxe.log")).expect("log"))
            .spawn()
            .expect("spawn cortex pxe serve"),
    );

    let sercon = sb.path().join("sercon.bin");
    std::fs::write(&sercon, [0xf8, 0x03, 0x00, 0x00]).expect("sercon.bin");
    let mut vm = Vm::start_with(
        &sb.path().join("console.log"),
        Some(&hub),
        &[
            "-boot".into(),
            "n".into(),
            // SeaBIOS and iPXE print on the serial console too (machine.md).
            "-fw_cfg".into(),
            format!("name=etc/sercon-port,file={}", sercon.display()),
            "-netdev".into(),
            "tap,id=n0,ifname=tap0,script=no,downscript=no".into(),
            "-device".into(),
            "virtio-net-pci,netdev=n0".into(),
        ],
    );
    // The machine's name is its hostname (the PXE script names no node).
    let name = vm.wait(BOOT_BOUND, "a PENDING node besides the coordinator", || {
        let out = coord.cli(&["-o", "json", "node", "list"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        v["nodes"]
            .as_array()?
            .iter()
            .find_map(|n| (n["state"] == "pending").then(|| n["name"].as_str().map(str::to_owned))?)
    });
    let pending = wait_pending(&mut vm, &coord, &name);
    // The PXE script's kernel line ends with console=tty0 (the screen is /dev/console, where
    // journald forwards); the agent's lines — the code a person compares before approving —
    // reach this serial port through cortex-console-mirror.
    let code = pending["join"]["verification_code"]
        .as_str()
        .expect("the pending record's code")
        .to_owned();
    vm.wait_seen(
        Duration::from_secs(60),
        "the verification code on the serial console",
        &format!("Verification code: {code}"),
    );
    coord.cli_ok(&["node", "approve", &name]);
    vm.wait(Duration::from_secs(120), "the approved VM READY", || {
        (node_json(&coord, &name)["state"] == "ready").then_some(())
    });
    eprintln!(
        "{name}: READY {:.1} s after power-on",
        vm.started.elapsed().as_secs_f64()
    );
    let out = vm.wait(Duration::from_secs(120), "a task's output from the VM", || {
        let out = coord.cli(&["run", "--node", &name, "--", "uname", "-a"]);
        out.status.success().then_some(out)
    });
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("Linux "), "uname -a on the VM: {text}");
    assert!(text.contains("6.1."), "the appliance's bookworm kernel: {text}");
    crate::image_machined::nspawn_tasks_run_as_machined_scopes(&mut vm, &coord, &name);
    drop((pxe, dnsmasq));
}
