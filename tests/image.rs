//! The appliance image in real qemu (TCG): a VM boots the image built by
//! `scripts/build-image.sh` (outputs in `out/`, or `CORTEX_IMAGE_DIR`), its agent reaches a
//! coordinator running on this host, and shows up PENDING with its inventory and benchmark.
//! Slow (about a minute per boot): one VM at a time, each wait bounded, with the tail of the
//! VM's serial console in every failure message. Without the image or qemu these tests skip
//! loudly, and fail under CI=true (`scripts/test.sh` builds the image first).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::harness::{have, strict, Node};

/// VMs use both cores each: never two at once.
pub static ONE_VM: Mutex<()> = Mutex::new(());

/// How long a boot may take under TCG to PENDING (measured: ~1–2 min).
pub const BOOT_BOUND: Duration = Duration::from_secs(360);

pub fn image_dir() -> PathBuf {
    std::env::var_os("CORTEX_IMAGE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../out"))
}

/// The image's artifacts `names`, or `None` (skip) when one is missing outside CI.
pub fn artifacts(names: &[&str]) -> Option<Vec<PathBuf>> {
    let dir = image_dir();
    let paths: Vec<PathBuf> = names.iter().map(|n| dir.join(n)).collect();
    if let Some(missing) = paths.iter().find(|p| !p.is_file()) {
        assert!(
            !strict(),
            "{} is missing (CI=true): run scripts/build-image.sh first",
            missing.display()
        );
        eprintln!(
            "SKIP: {} is missing; run scripts/build-image.sh",
            missing.display()
        );
        return None;
    }
    have("qemu-system-x86_64").then_some(paths)
}

/// This host's address as the guest sees it through qemu user networking. A coordinator
/// bound to it is reachable from the guest under the same address it advertises (10.0.2.2
/// would reach 127.0.0.1, but the coordinator would then hand the guest 127.0.0.1 addresses).
fn host_ip() -> String {
    let out = Command::new("ip")
        .args(["-4", "-o", "route", "get", "192.0.2.255"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let src = out
        .split_whitespace()
        .skip_while(|w| *w != "src")
        .nth(1)
        .map(str::to_owned);
    src.or_else(|| {
        // Any global IPv4 address of this host.
        let out = Command::new("ip")
            .args(["-4", "-o", "addr", "show", "scope", "global"])
            .output()
            .ok()?;
        let s = String::from_utf8_lossy(&out.stdout).into_owned();
        let addr = s.split_whitespace().skip_while(|w| *w != "inet").nth(1)?;
        Some(addr.split('/').next()?.to_owned())
    })
    .expect("this host has no global IPv4 address for the guest to reach")
}

fn free_port(ip: &str) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A running VM whose serial console is written to a file; killed on drop.
pub struct Vm {
    child: Child,
    pub console: PathBuf,
    pub started: Instant,
}

impl Vm {
    pub fn start(console: &Path, args: &[String]) -> Vm {
        Vm::start_with(console, None, args)
    }

    /// Starts qemu inside network namespace `ns` (when given), e.g. next to its tap device.
    pub fn start_with(console: &Path, ns: Option<&str>, args: &[String]) -> Vm {
        let accel: &[&str] =
            if Path::new("/sys/module/kvm_intel").exists() || Path::new("/sys/module/kvm_amd").exists() {
                &["-accel", "kvm", "-cpu", "host"]
            } else {
                &["-accel", "tcg,thread=multi", "-cpu", "max"]
            };
        let mut cmd = match ns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/run/netns/{ns}"))
                    .args(["--", "qemu-system-x86_64"]);
                c
            }
            None => Command::new("qemu-system-x86_64"),
        };
        let child = cmd
            .args(accel)
            .args(["-smp", "2", "-m", "2048", "-display", "none", "-monitor", "none"])
            .args(["-no-reboot", "-serial"])
            .arg(format!("file:{}", console.display()))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn qemu-system-x86_64");
        Vm {
            child,
            console: console.to_path_buf(),
            started: Instant::now(),
        }
    }

    /// The last `n` lines of the serial console.
    pub fn tail(&self, n: usize) -> String {
        let text = std::fs::read(&self.console).unwrap_or_default();
        let text = String::from_utf8_lossy(&text);
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Whether `marker` has appeared on the console.
    pub fn seen(&self, marker: &str) -> bool {
        console_has(&self.console, marker)
    }

    /// Waits until `marker` appears on the console (see `wait`).
    pub fn wait_seen(&mut self, within: Duration, what: &str, marker: &str) {
        let console = self.console.clone();
        self.wait(within, what, || console_has(&console, marker).then_some(()));
    }

    /// Waits until `f` gives a value; on timeout or VM exit panics with the console's tail.
    pub fn wait<T>(&mut self, within: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + within;
        loop {
            if let Some(v) = f() {
                return v;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = self.child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                panic!(
                    "qemu exited ({status}) before {what}; qemu stderr: {err}\n--- console tail ---\n{}",
                    self.tail(60)
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after {within:?} waiting for {what}\n--- VM console tail ---\n{}",
                    self.tail(60)
                );
            }
            std::thread::sleep(Duration::from_secs(2));
        }
    }
}

fn console_has(console: &Path, marker: &str) -> bool {
    let text = std::fs::read(console).unwrap_or_default();
    String::from_utf8_lossy(&text).contains(marker)
}

impl Vm {
    /// Waits for qemu to exit on its own (the guest powered off; `-no-reboot`).
    pub fn wait_exit(&mut self, within: Duration, what: &str) {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        panic!(
            "timed out after {within:?} waiting for {what}\n--- VM console tail ---\n{}",
            self.tail(60)
        );
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A coordinator on this host's address, and a join token for the VM.
fn coordinator(sb: &Path) -> (Node, String, String) {
    let ip = host_ip();
    let grpc = format!("{ip}:{}", free_port(&ip));
    let node = Node::start_with(
        sb,
        &sb.join("coord"),
        &["--grpc-addr", &grpc, "--node-name", "coord"],
        crate::cluster::fast_liveness,
    );
    let token = node
        .cli_ok(&["token", "create", "--ttl", "30m"])
        .trim()
        .to_string();
    (node, grpc, token)
}

/// `node show NAME -o json` (`Null` while unknown).
pub fn node_json(coord: &Node, name: &str) -> serde_json::Value {
    let out = coord.cli(&["-o", "json", "node", "show", name]);
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

/// The kernel arguments that make the guest join `grpc` with `token` as node `name`.
pub fn join_args(grpc: &str, token: &str, name: &str) -> String {
    format!(
        "console=ttyS0 systemd.firstboot=off cortex.join={grpc} cortex.token={token} \
         cortex.node_name={name}"
    )
}

/// Waits for `name` to be PENDING with an inventory and a benchmark summary; returns it.
pub fn wait_pending(vm: &mut Vm, coord: &Node, name: &str) -> serde_json::Value {
    let node = vm.wait(BOOT_BOUND, &format!("{name} PENDING on the coordinator"), || {
        let v = node_json(coord, name);
        (v["state"] == "pending").then_some(v)
    });
    eprintln!(
        "{name}: PENDING {:.1} s after power-on",
        vm.started.elapsed().as_secs_f64()
    );
    assert!(
        node["inventory"]["cpu"]["threads"].as_u64().unwrap_or(0) >= 1,
        "inventory: {node}"
    );
    // The agent measures itself while its first join request is on its way ([bench]
    // on_start, default on); the next poll brings the figures to the pending record.
    let node = vm.wait(
        Duration::from_secs(120),
        &format!("{name}'s benchmark summary on the pending record"),
        || {
            let v = node_json(coord, name);
            let g = v["bench"]["cpu_f64_gflops_all"].as_f64();
            (v["state"] == "pending" && g.is_some_and(|g| g > 0.0)).then_some(v)
        },
    );
    eprintln!(
        "{name}: figures on the pending record {:.1} s after power-on",
        vm.started.elapsed().as_secs_f64()
    );
    node
}

/// The qemu arguments of a direct kernel + initrd boot joining as `name`, with user networking
/// that forwards host port `ssh_port` to the guest's port 22.
fn direct_boot_args(art: &[PathBuf], grpc: &str, token: &str, name: &str, ssh_port: u16) -> Vec<String> {
    vec![
        "-kernel".into(),
        art[0].display().to_string(),
        "-initrd".into(),
        art[1].display().to_string(),
        "-append".into(),
        join_args(grpc, token, name),
        "-netdev".into(),
        format!("user,id=n0,hostfwd=tcp:127.0.0.1:{ssh_port}-:22"),
        "-device".into(),
        "virtio-net-pci,netdev=n0".into(),
    ]
}

/// `ssh root@127.0.0.1 -p PORT COMMAND` with `key`, never prompting, trusting any host key
/// (the guest's are made at its boot).
fn ssh(key: &Path, port: u16, command: &str) -> std::process::Output {
    Command::new("ssh")
        .args([
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
        ])
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
        ])
        .args(["-o", "ConnectTimeout=30", "-o", "LogLevel=ERROR", "-i"])
        .arg(key)
        .args(["-p", &port.to_string(), "root@127.0.0.1", command])
        .stdin(Stdio::null())
        .output()
        .expect("run ssh")
}

/// The first bytes the guest's port 22 sends through the host forward `port` within 20 s
/// (an SSH server greets with `SSH-2.0-`; a closed port gives nothing).
fn greeting(port: u16) -> String {
    use std::io::Read;
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(20)));
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// One VM, two boots from the same kernel + initrd, with a second disk carrying an ext4
/// filesystem labelled `cortex-data`:
/// 1. with an SSH public key as the `ssh.authorized_keys.root` credential: the agent keeps its
///    data on that disk, joins as PENDING; ssh into it works; approved → READY; powered off
///    from inside (a clean unmount);
/// 2. without a key: the node comes back READY under the same id with no new approval
///    (identity and credentials were on the disk), and nothing answers on port 22.
#[test]
fn direct_boot_joins_keeps_its_identity_on_a_data_disk_and_has_ssh_only_with_a_key() {
    let Some(art) = artifacts(&["vmlinuz", "initrd"]) else {
        return;
    };
    let tools = have("ssh") && have("ssh-keygen") && have("mkfs.ext4");
    if !crate::harness::capable(
        tools,
        "ssh, ssh-keygen (openssh-client) and mkfs.ext4 (e2fsprogs)",
    ) {
        return;
    }
    let _one = ONE_VM.lock().unwrap_or_else(|e| e.into_inner());
    let sb = tempfile::tempdir().expect("tempdir");
    let (coord, grpc, token) = coordinator(sb.path());
    let name = "vm-direct";

    // The data disk: a sparse 1 GiB file, ext4 labelled cortex-data (the full benchmark writes
    // 256 MiB into the data directory).
    let disk = sb.path().join("data.img");
    std::fs::File::create(&disk)
        .and_then(|f| f.set_len(1 << 30))
        .expect("data disk file");
    let ok = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "cortex-data"])
        .arg(&disk)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "mkfs.ext4 -L cortex-data {}", disk.display());
    let drive = format!("if=virtio,format=raw,file={}", disk.display());

    let key = sb.path().join("id_ed25519");
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "cortex-image-test", "-f"])
        .arg(&key)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "ssh-keygen");
    let public = std::fs::read(key.with_extension("pub")).expect("public key");

    // Boot 1: with the key.
    let port = free_port("127.0.0.1");
    let mut args = direct_boot_args(&art, &grpc, &token, name, port);
    args.extend([
        "-drive".into(),
        drive.clone(),
        "-smbios".into(),
        format!(
            "type=11,value=io.systemd.credential.binary:ssh.authorized_keys.root={}",
            base64(&public)
        ),
    ]);
    let mut vm = Vm::start(&sb.path().join("console-1.log"), &args);
    let node = wait_pending(&mut vm, &coord, name);
    let id = node["id"].as_u64().expect("node id");
    assert!(
        vm.seen("persistent data on /dev/vd"),
        "the data disk was not used: {}",
        vm.tail(80)
    );
    let out = vm.wait(Duration::from_secs(180), "a command over ssh", || {
        let out = ssh(
            &key,
            port,
            "findmnt -n -o SOURCE,FSTYPE /var/lib/cortex; systemctl is-active cortex-agent",
        );
        out.status.success().then_some(out)
    });
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("/dev/vd") && text.contains("ext4"),
        "the data dir over ssh: {text}"
    );
    assert!(text.contains("active"), "the agent over ssh: {text}");
    coord.cli_ok(&["node", "approve", name]);
    vm.wait(Duration::from_secs(120), "the approved VM READY", || {
        (node_json(&coord, name)["state"] == "ready").then_some(())
    });
    eprintln!(
        "{name}: READY {:.1} s after power-on",
        vm.started.elapsed().as_secs_f64()
    );
    // READY is the coordinator's word as soon as a person approves; the agent collects its
    // certificate at its next poll. Power off only after it has (else boot 2 rightly asks to
    // join again, to collect it: restart::a_node_approved_while_stopped_collects_...).
    vm.wait_seen(
        Duration::from_secs(60),
        "the agent collecting its certificate",
        "approved: approved as",
    );
    // Powered off from inside: the data disk is unmounted cleanly. The session may end with
    // an error as sshd goes away; the VM's exit is what counts.
    let _ = ssh(&key, port, "systemctl poweroff");
    vm.wait_exit(Duration::from_secs(180), "the guest powering off");
    drop(vm);
    // The coordinator notices it is gone before the second boot, so READY below is news.
    let deadline = Instant::now() + Duration::from_secs(60);
    while node_json(&coord, name)["state"] == "ready" {
        assert!(
            Instant::now() < deadline,
            "still READY 60 s after power-off: {}",
            node_json(&coord, name)
        );
        std::thread::sleep(Duration::from_secs(1));
    }

    // Boot 2: the same disk, no key.
    let port = free_port("127.0.0.1");
    let mut args = direct_boot_args(&art, &grpc, &token, name, port);
    args.extend(["-drive".into(), drive]);
    let mut vm = Vm::start(&sb.path().join("console-2.log"), &args);
    let node = vm.wait(BOOT_BOUND, "the node READY again without an approval", || {
        let v = node_json(&coord, name);
        (v["state"] == "ready").then_some(v)
    });
    eprintln!(
        "{name}: READY again {:.1} s after power-on",
        vm.started.elapsed().as_secs_f64()
    );
    assert_eq!(node["id"].as_u64(), Some(id), "the same node: {node}");
    assert!(vm.seen("persistent data on /dev/vd"), "{}", vm.tail(80));
    assert!(
        !vm.seen("asking to join"),
        "it asked to join again: {}",
        vm.tail(80)
    );
    let nodes: serde_json::Value =
        serde_json::from_str(&coord.cli_ok(&["-o", "json", "node", "list"])).expect("node list json");
    let named = nodes["nodes"]
        .as_array()
        .map_or(0, |a| a.iter().filter(|n| n["name"] == name).count());
    assert_eq!(named, 1, "one node named {name}: {nodes}");
    assert!(vm.seen("sshd stays off"), "{}", vm.tail(80));
    let hello = greeting(port);
    assert!(
        !hello.starts_with("SSH-"),
        "something answers SSH without a key: {hello:?}"
    );
}

/// A `cortex.toml` system credential for the guest (SMBIOS type 11): the disk image's UKI has
/// a fixed command line, so its agent learns the coordinator from the credential instead.
fn credential(grpc: &str, token: &str, name: &str) -> String {
    let toml = format!("join = [\"{grpc}\"]\ntoken = \"{token}\"\nnode_name = \"{name}\"\n");
    format!(
        "type=11,value=io.systemd.credential.binary:cortex.toml={}",
        base64(toml.as_bytes())
    )
}

/// Standard base64 with padding (qemu's SMBIOS value may not hold newlines or commas).
fn base64(data: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn base64_matches_the_rfc_4648_vectors() {
    for (plain, enc) in [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
    ] {
        assert_eq!(base64(plain.as_bytes()), enc);
    }
}

#[test]
fn the_disk_image_boots_under_ovmf_and_joins_as_pending() {
    let Some(art) = artifacts(&["cortex-disk.raw"]) else {
        return;
    };
    let code = Path::new("/usr/share/OVMF/OVMF_CODE_4M.fd");
    let vars = Path::new("/usr/share/OVMF/OVMF_VARS_4M.fd");
    if !crate::harness::capable(code.is_file() && vars.is_file(), "OVMF (package ovmf)") {
        return;
    }
    let _one = ONE_VM.lock().unwrap_or_else(|e| e.into_inner());
    let sb = tempfile::tempdir().expect("tempdir");
    // A throwaway overlay: the image file is never written.
    let overlay = sb.path().join("overlay.qcow2");
    let ok = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
        .arg(&art[0])
        .arg(&overlay)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "qemu-img create an overlay over {}", art[0].display());
    let vars_copy = sb.path().join("vars.fd");
    std::fs::copy(vars, &vars_copy).expect("copy OVMF vars");
    let (coord, grpc, token) = coordinator(sb.path());
    let mut vm = Vm::start(
        &sb.path().join("console.log"),
        &[
            "-machine".into(),
            "q35".into(),
            "-drive".into(),
            format!("if=pflash,format=raw,unit=0,readonly=on,file={}", code.display()),
            "-drive".into(),
            format!("if=pflash,format=raw,unit=1,file={}", vars_copy.display()),
            "-drive".into(),
            format!("if=virtio,format=qcow2,file={}", overlay.display()),
            "-smbios".into(),
            credential(&grpc, &token, "vm-disk"),
            "-netdev".into(),
            "user,id=n0".into(),
            "-device".into(),
            "virtio-net-pci,netdev=n0".into(),
        ],
    );
    wait_pending(&mut vm, &coord, "vm-disk");
}
