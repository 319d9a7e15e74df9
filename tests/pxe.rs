//! `cortex pxe serve`: a PXE client's view. Real TFTP clients (tftp-hpa's `tftp`, curl) and
//! curl over HTTP against the real binary on 127.0.0.1 with OS-picked ports, plus a raw UDP
//! client for what only the wire shows (replies from the listening port, negotiated options,
//! a PXE ROM's ERROR after a tsize probe).

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::harness::node::isolate;
use crate::harness::{cortex, strict};

const JOIN: &str = "10.231.0.1:7071";
const TOKEN: &str = "pxe-join.t0ken_~+/=";

/// True if `tool` is on PATH. Missing: fail under CI=true, skip loudly otherwise.
fn have(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !found {
        assert!(
            !strict(),
            "{tool} is required (CI=true); scripts/test.sh installs it"
        );
        eprintln!("SKIP: {tool} is not installed");
    }
    found
}

/// An artifacts directory: kernel, initrd, a file in a subdirectory, a symlink pointing out,
/// and a secret next to (outside) it.
struct Fixture {
    _tmp: tempfile::TempDir,
    sandbox: PathBuf,
    art: PathBuf,
    kernel: Vec<u8>,
    initrd: Vec<u8>,
}

fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().expect("tempdir");
    let sandbox = tmp.path().to_path_buf();
    let art = sandbox.join("artifacts");
    std::fs::create_dir_all(art.join("sub")).expect("write the fixture");
    // Not multiples of any block size, so the last block is short.
    let kernel = pseudo_random(1_234_567, 1);
    let initrd = pseudo_random(2_000_003, 2);
    std::fs::write(art.join("vmlinuz"), &kernel).expect("write the fixture");
    std::fs::write(art.join("initrd"), &initrd).expect("write the fixture");
    std::fs::write(art.join("sub/note.txt"), b"inside\n").expect("write the fixture");
    std::fs::write(sandbox.join("secret"), b"outside the root\n").expect("write the fixture");
    std::os::unix::fs::symlink(sandbox.join("secret"), art.join("escape")).expect("write the fixture");
    Fixture {
        _tmp: tmp,
        sandbox,
        art,
        kernel,
        initrd,
    }
}

/// A running `cortex pxe serve`, stopped with SIGTERM on drop.
struct Pxe {
    child: Option<Child>,
    http: String,
    tftp: SocketAddr,
    stderr_path: PathBuf,
}

impl Pxe {
    fn start(f: &Fixture, extra: &[&str]) -> Pxe {
        let stderr_path = f.sandbox.join(format!("pxe-{}.log", std::process::id()));
        let mut cmd = cortex();
        isolate(&mut cmd, &f.sandbox);
        cmd.args(["-o", "json", "pxe", "serve", "--artifacts"])
            .arg(&f.art)
            .args(["--join", JOIN])
            .args(if extra.contains(&"--token-file") {
                &[][..]
            } else {
                &["--token", TOKEN][..]
            })
            .args(["--http-addr", "127.0.0.1:0", "--tftp-addr", "127.0.0.1:0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path).expect("stderr log"));
        let mut child = cmd.spawn().expect("spawn cortex pxe serve");
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(first)) = lines.next() {
                let _ = tx.send(first);
            }
            for _ in lines {}
        });
        let Ok(line) = rx.recv_timeout(Duration::from_secs(30)) else {
            let _ = child.kill();
            panic!(
                "cortex pxe serve printed nothing; stderr:\n{}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        };
        let info: serde_json::Value = serde_json::from_str(&line).expect("JSON line");
        Pxe {
            child: Some(child),
            http: info["http_addr"].as_str().expect("http_addr").to_string(),
            tftp: info["tftp_addr"]
                .as_str()
                .expect("tftp_addr")
                .parse()
                .expect("addr"),
            stderr_path,
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// SIGTERM and the exit status.
    fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("cortex pxe serve did not stop within 15 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Pxe {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().expect("run client")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// tftp-hpa: `tftp -m binary HOST PORT -c get|put …` (it exits 0 even on an error packet).
fn tftp_hpa(pxe: &Pxe, dir: &Path, args: &[&str]) -> Output {
    run(Command::new("timeout")
        .arg("30")
        .arg("tftp")
        .args(["-m", "binary", "127.0.0.1", &pxe.tftp.port().to_string(), "-c"])
        .args(args)
        .current_dir(dir))
}

fn curl(args: &[&str]) -> Output {
    run(Command::new("curl").args(["-sS", "--max-time", "30"]).args(args))
}

#[test]
fn tftp_client_fetches_files_byte_identically() {
    if !have("tftp") || !have("curl") {
        return;
    }
    let f = fixture();
    let pxe = Pxe::start(&f, &[]);
    let out = f.sandbox.join("got");
    std::fs::create_dir_all(&out).unwrap();

    let o = tftp_hpa(&pxe, &out, &["get", "vmlinuz", "k"]);
    assert_eq!(
        std::fs::read(out.join("k")).unwrap(),
        f.kernel,
        "tftp-hpa: {}",
        text(&o)
    );
    let o = tftp_hpa(&pxe, &out, &["get", "/sub/note.txt", "n"]);
    assert_eq!(std::fs::read(out.join("n")).unwrap(), b"inside\n", "{}", text(&o));

    // blksize 1468 (what iPXE and U-Boot ask for), via curl's TFTP client.
    let dest = out.join("i");
    let o = curl(&[
        "--tftp-blksize",
        "1468",
        "-o",
        dest.to_str().unwrap(),
        &format!("tftp://{}/initrd", pxe.tftp),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(std::fs::read(&dest).unwrap(), f.initrd);

    // The generated boot script is a file over TFTP too.
    let o = tftp_hpa(&pxe, &out, &["get", "boot-pcbios.ipxe", "s"]);
    let script = std::fs::read_to_string(out.join("s")).unwrap_or_default();
    assert!(
        script.contains(&format!("cortex.join={JOIN}")),
        "{script}{}",
        text(&o)
    );

    // Unknown files: an error packet "file not found".
    let o = tftp_hpa(&pxe, &out, &["get", "no-such-file", "x"]);
    assert!(text(&o).contains("Error code 1: File not found"), "{}", text(&o));
}

#[test]
fn tftp_refuses_traversal_symlink_escape_and_writes() {
    if !have("tftp") || !have("curl") {
        return;
    }
    let f = fixture();
    let pxe = Pxe::start(&f, &[]);
    let out = f.sandbox.join("got");
    std::fs::create_dir_all(&out).unwrap();

    for (name, local) in [
        ("../secret", "a"),
        ("sub/../../secret", "b"),
        ("..\\secret", "c"),
        ("escape", "d"),
    ] {
        let o = tftp_hpa(&pxe, &out, &["get", name, local]);
        assert!(text(&o).contains("Error code 2"), "{name}: {}", text(&o));
        let got = std::fs::read(out.join(local)).unwrap_or_default();
        assert!(got.is_empty(), "{name} leaked {} bytes", got.len());
    }
    let o = curl(&["--path-as-is", &format!("tftp://{}/../secret", pxe.tftp)]);
    assert!(!o.status.success() && o.stdout.is_empty(), "{}", text(&o));

    // Write: refused with an error packet, nothing appears in the root.
    std::fs::write(out.join("upload"), b"data").unwrap();
    let o = tftp_hpa(&pxe, &out, &["put", "upload", "uploaded"]);
    assert!(text(&o).contains("Error code 2"), "{}", text(&o));
    assert!(!f.art.join("uploaded").exists());

    let log = pxe.stderr();
    assert!(
        log.contains("request refused") && log.contains("\"../secret\""),
        "{log}"
    );
    assert!(log.contains("symlink pointing outside the root refused"), "{log}");
    assert!(log.contains("peer=127.0.0.1:"), "{log}");
    assert!(log.contains("TFTP write refused"), "{log}");
}

/// A minimal TFTP client on a raw socket, to see the wire.
struct Raw {
    sock: UdpSocket,
    server: SocketAddr,
}

impl Raw {
    fn new(server: SocketAddr) -> Raw {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("UDP socket");
        sock.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("UDP socket");
        Raw { sock, server }
    }

    fn rrq(&self, file: &str, opts: &[(&str, &str)]) {
        let mut p = vec![0, 1];
        for s in [file, "octet"]
            .into_iter()
            .chain(opts.iter().flat_map(|(k, v)| [*k, *v]))
        {
            p.extend_from_slice(s.as_bytes());
            p.push(0);
        }
        self.sock.send_to(&p, self.server).expect("UDP socket");
    }

    fn recv(&self) -> (Vec<u8>, SocketAddr) {
        let mut buf = vec![0u8; 70000];
        let (n, from) = self.sock.recv_from(&mut buf).expect("a reply within 5 s");
        buf.truncate(n);
        (buf, from)
    }

    fn send(&self, to: SocketAddr, p: &[u8]) {
        self.sock.send_to(p, to).expect("UDP socket");
    }
}

fn oack_opts(p: &[u8]) -> Vec<(String, String)> {
    assert_eq!(&p[..2], &[0, 6], "expected OACK, got {p:?}");
    let parts: Vec<String> = p[2..]
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).to_string())
        .collect();
    parts.chunks(2).map(|c| (c[0].clone(), c[1].clone())).collect()
}

#[test]
fn tftp_replies_from_the_listening_port_with_negotiated_blksize() {
    let f = fixture();
    let pxe = Pxe::start(&f, &[]);
    let c = Raw::new(pxe.tftp);
    c.rrq("vmlinuz", &[("blksize", "1468"), ("tsize", "0")]);
    let (p, from) = c.recv();
    // Single-port mode: the reply comes from the port the request went to (qemu's slirp drops
    // anything else).
    assert_eq!(from, pxe.tftp);
    let opts = oack_opts(&p);
    assert!(opts.contains(&("blksize".into(), "1468".into())), "{opts:?}");
    assert!(
        opts.contains(&("tsize".into(), f.kernel.len().to_string())),
        "{opts:?}"
    );

    // Whole transfer, lock-step, every packet from the listening port.
    let mut got = Vec::new();
    let mut ack: u16 = 0;
    loop {
        c.send(from, &[0, 4, (ack >> 8) as u8, ack as u8]);
        let (p, src) = c.recv();
        assert_eq!(src, pxe.tftp);
        assert_eq!(&p[..2], &[0, 3], "expected DATA");
        let block = u16::from_be_bytes([p[2], p[3]]);
        assert_eq!(block, ack.wrapping_add(1));
        let data = &p[4..];
        assert!(data.len() <= 1468);
        got.extend_from_slice(data);
        ack = block;
        if data.len() < 1468 {
            c.send(from, &[0, 4, (ack >> 8) as u8, ack as u8]);
            break;
        }
        assert_eq!(data.len(), 1468);
    }
    assert_eq!(got, f.kernel);

    // Unknown file: ERROR code 1 from the listening port.
    let c2 = Raw::new(pxe.tftp);
    c2.rrq("missing", &[]);
    let (p, src) = c2.recv();
    assert_eq!(src, pxe.tftp);
    assert_eq!(&p[..4], &[0, 5, 0, 1], "{p:?}");
    assert!(String::from_utf8_lossy(&p[4..])
        .to_lowercase()
        .contains("file not found"));
}

#[test]
fn tftp_stops_after_a_pxe_roms_error_following_the_tsize_probe() {
    let f = fixture();
    let pxe = Pxe::start(&f, &[]);
    let c = Raw::new(pxe.tftp);
    // What a PXE ROM does: probe the size, abort, then fetch for real from the same port.
    c.rrq("initrd", &[("tsize", "0"), ("blksize", "1432")]);
    let (p, from) = c.recv();
    assert!(oack_opts(&p).iter().any(|(k, _)| k == "tsize"));
    let mut err = vec![0, 5, 0, 8];
    err.extend_from_slice(b"User aborted the transfer\0");
    c.send(from, &err);
    // Nothing more for this transfer: no re-sent OACK (async-tftp alone re-sends for minutes).
    c.sock
        .set_read_timeout(Some(Duration::from_millis(2500)))
        .unwrap();
    let mut buf = [0u8; 2000];
    if let Ok((n, _)) = c.sock.recv_from(&mut buf) {
        panic!("got a packet after the client's ERROR: {:?}", &buf[..n.min(16)]);
    }
    // The real request from the same client port works.
    c.sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.rrq("sub/note.txt", &[]);
    let (p, src) = c.recv();
    assert_eq!(src, pxe.tftp);
    assert_eq!(&p[..4], &[0, 3, 0, 1]);
    assert_eq!(&p[4..], b"inside\n");
    c.send(src, &[0, 4, 0, 1]);
}

/// A commands-only check of an iPXE script, independent of the crate's own validator.
fn assert_ipxe(script: &str) {
    let mut lines = script.lines();
    assert_eq!(lines.next(), Some("#!ipxe"), "{script}");
    let known = [
        "chain", "kernel", "initrd", "boot", "echo", "sleep", "exit", "goto",
    ];
    for l in lines
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        if l.starts_with(':') {
            continue;
        }
        let cmd = l.split_whitespace().next().expect("a non-empty line");
        assert!(known.contains(&cmd), "unknown iPXE command {cmd:?} in:\n{script}");
        assert!(!l.contains("{{"), "unrendered placeholder in:\n{script}");
    }
}

#[test]
fn http_boot_scripts_are_ipxe_with_the_join_address() {
    if !have("curl") {
        return;
    }
    let f = fixture();
    let pxe = Pxe::start(
        &f,
        &["--kernel-arg", "cortex.role=coordinator", "--kernel-arg", "quiet"],
    );
    let get = |path: &str| {
        let o = curl(&["-f", &pxe.url(path)]);
        assert!(o.status.success(), "{path}: {}", text(&o));
        String::from_utf8(o.stdout).unwrap()
    };
    for path in [
        "/boot.ipxe?arch=pcbios",
        "/boot.ipxe?arch=efi&mac=52-54-00-12-34-56",
        "/boot-pcbios.ipxe",
        "/boot-efi.ipxe",
    ] {
        let s = get(path);
        assert_ipxe(&s);
        let kernel = s
            .lines()
            .find(|l| l.starts_with("kernel "))
            .unwrap_or_else(|| panic!("{s}"));
        for arg in [
            "kernel vmlinuz initrd=initrd ",
            &format!(" cortex.join={JOIN} "),
            &format!(" cortex.token={TOKEN} cortex.role=coordinator quiet "),
            " console=ttyS0 console=tty0 ",
            " systemd.firstboot=off",
        ] {
            assert!(kernel.contains(arg), "{path}: {arg:?} missing from {kernel:?}");
        }
        assert!(s.contains("\ninitrd initrd"), "{s}");
    }
    // The dispatcher and netboot.xyz's custom URL chain the per-platform script by relative name.
    for path in ["/boot.ipxe", "/custom.ipxe"] {
        let s = get(path);
        assert_ipxe(&s);
        assert!(s.contains("chain boot-${platform}.ipxe"), "{s}");
    }
    // With a UKI, UEFI chains it with the command line; BIOS keeps kernel + initrd.
    std::fs::write(f.art.join("cortex.efi"), b"MZ").unwrap();
    let s = get("/boot.ipxe?arch=efi");
    assert_ipxe(&s);
    assert!(
        s.contains(&format!("\nchain cortex.efi cortex.join={JOIN} ")),
        "{s}"
    );
    assert!(get("/boot.ipxe?arch=bios").contains("kernel vmlinuz"));

    // A kernel argument that could inject into the script, or that overrides what the service
    // writes itself, stops the service at start, naming it.
    for bad in ["x=${platform}", "cortex.token=stolen", "a b"] {
        let mut cmd = cortex();
        isolate(&mut cmd, &f.sandbox);
        let out = cmd
            .args(["pxe", "serve", "--artifacts"])
            .arg(&f.art)
            .args([
                "--join",
                JOIN,
                "--http-addr",
                "127.0.0.1:0",
                "--tftp-addr",
                "127.0.0.1:0",
            ])
            .args(["--kernel-arg", bad])
            .output()
            .expect("cortex pxe serve");
        assert!(!out.status.success(), "{bad} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("kernel argument"), "{bad}: {err}");
    }

    // Bad query values: 400, nothing rendered.
    for q in ["arch=arm", "mac=52-54-00-12-34", "mac=%0Ashell"] {
        let o = curl(&[
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &pxe.url(&format!("/boot.ipxe?{q}")),
        ]);
        assert_eq!(String::from_utf8_lossy(&o.stdout), "400", "{q}");
    }
}

#[test]
fn http_serves_artifacts_with_lengths_and_ranges_and_refuses_escapes() {
    if !have("curl") {
        return;
    }
    let f = fixture();
    let pxe = Pxe::start(&f, &[]);
    let headers = |args: &[&str]| {
        let o = curl(&[&["-D", "-", "-o", "/dev/null"][..], args].concat());
        String::from_utf8_lossy(&o.stdout).to_lowercase()
    };
    let body = |args: &[&str]| curl(args).stdout;

    // Whole file: 200 with its exact length.
    let h = headers(&[&pxe.url("/initrd")]);
    assert!(h.starts_with("http/1.1 200"), "{h}");
    assert!(
        h.contains(&format!("content-length: {}\r\n", f.initrd.len())),
        "{h}"
    );
    assert!(h.contains("accept-ranges: bytes"), "{h}");
    assert_eq!(body(&[&pxe.url("/initrd")]), f.initrd);
    // HEAD has the length too.
    let h = headers(&["-I", &pxe.url("/vmlinuz")]);
    assert!(
        h.contains(&format!("content-length: {}\r\n", f.kernel.len())),
        "{h}"
    );

    // Single ranges: 206 and exactly those bytes.
    let len = f.initrd.len();
    for (range, start, end) in [
        ("0-0", 0, 0),
        ("1000-1999", 1000, 1999),
        (&format!("{}-", len - 10) as &str, len - 10, len - 1),
        ("-100", len - 100, len - 1),
        (&format!("1999990-{}", len + 500) as &str, 1_999_990, len - 1),
    ] {
        let h = headers(&["-r", range, &pxe.url("/initrd")]);
        assert!(h.starts_with("http/1.1 206"), "{range}: {h}");
        assert!(
            h.contains(&format!("content-range: bytes {start}-{end}/{len}")),
            "{range}: {h}"
        );
        assert!(
            h.contains(&format!("content-length: {}\r\n", end - start + 1)),
            "{range}: {h}"
        );
        assert_eq!(
            body(&["-r", range, &pxe.url("/initrd")]),
            &f.initrd[start..=end],
            "{range}"
        );
    }
    // Unsatisfiable: 416 with the size.
    let h = headers(&["-r", &format!("{len}-"), &pxe.url("/initrd")]);
    assert!(h.starts_with("http/1.1 416"), "{h}");
    assert!(h.contains(&format!("content-range: bytes */{len}")), "{h}");

    // Unknown, traversal (raw and percent-encoded), symlink escape, directory: plain 404.
    for path in [
        "/nothing",
        "/../secret",
        "/sub/../../secret",
        "/%2e%2e/secret",
        "/sub/%2E%2E/%2E%2E/secret",
        "/..%2fsecret",
        "/escape",
        "/sub",
        "/sub/",
    ] {
        let o = curl(&["--path-as-is", "-D", "-", &pxe.url(path)]);
        let out = String::from_utf8_lossy(&o.stdout).to_string();
        assert!(out.starts_with("HTTP/1.1 404"), "{path}: {out}");
        assert!(
            out.to_lowercase().contains("content-type: text/plain"),
            "{path}: {out}"
        );
        assert!(!out.contains("outside the root"), "{path} leaked the secret");
    }
    assert_eq!(body(&[&pxe.url("/sub/note.txt")]), b"inside\n");
    // Read-only.
    let o = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-X",
        "PUT",
        "--data",
        "x",
        &pxe.url("/x"),
    ]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "405");

    let log = pxe.stderr();
    assert!(
        log.contains("request refused") && log.contains("peer=127.0.0.1:"),
        "{log}"
    );
}

#[test]
fn ipxe_binaries_come_from_the_ipxe_dir_when_the_artifacts_lack_them() {
    if !have("curl") {
        return;
    }
    let f = fixture();
    let ipxe = f.sandbox.join("ipxe");
    std::fs::create_dir_all(&ipxe).unwrap();
    std::fs::write(ipxe.join("undionly.kpxe"), b"bios loader").unwrap();
    std::fs::write(f.art.join("snponly.efi"), b"own efi loader").unwrap();
    std::fs::write(ipxe.join("snponly.efi"), b"packaged efi loader").unwrap();
    std::fs::write(ipxe.join("other"), b"not served").unwrap();
    let pxe = Pxe::start(&f, &["--ipxe-dir", ipxe.to_str().unwrap()]);
    let body = |p: &str| curl(&[&pxe.url(p)]).stdout;
    assert_eq!(body("/undionly.kpxe"), b"bios loader");
    assert_eq!(body("/snponly.efi"), b"own efi loader");
    let o = curl(&["-o", "/dev/null", "-w", "%{http_code}", &pxe.url("/other")]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "404");
}

#[test]
fn debian_ipxe_binaries_are_served_by_default() {
    if !Path::new("/usr/lib/ipxe/undionly.kpxe").exists() {
        assert!(!strict(), "Debian's ipxe package is required (CI=true)");
        eprintln!("SKIP: /usr/lib/ipxe/undionly.kpxe missing (apt-get install ipxe)");
        return;
    }
    if !have("curl") {
        return;
    }
    let f = fixture();
    let pxe = Pxe::start(&f, &[]);
    for name in ["undionly.kpxe", "ipxe.efi", "snponly.efi"] {
        let want = std::fs::read(Path::new("/usr/lib/ipxe").join(name)).unwrap();
        let o = curl(&[&pxe.url(&format!("/{name}"))]);
        assert!(
            o.stdout == want,
            "{name}: {} bytes, want {}",
            o.stdout.len(),
            want.len()
        );
    }
}

#[test]
fn serve_errors_name_the_directory_or_address_and_sigterm_stops_it() {
    if !have("curl") {
        return;
    }
    let f = fixture();
    let serve = |args: &[&str]| {
        let mut cmd = cortex();
        isolate(&mut cmd, &f.sandbox);
        cmd.args(["pxe", "serve", "--join", JOIN]).args(args);
        run(&mut cmd)
    };
    let missing = f.sandbox.join("no-such-dir");
    let o = serve(&[
        "--artifacts",
        missing.to_str().unwrap(),
        "--http-addr",
        "127.0.0.1:0",
        "--tftp-addr",
        "127.0.0.1:0",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains(&format!(
            "artifacts directory {}: does not exist",
            missing.display()
        )),
        "{}",
        text(&o)
    );

    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let art = f.art.to_str().unwrap();
    let o = serve(&[
        "--artifacts",
        art,
        "--http-addr",
        &addr,
        "--tftp-addr",
        "127.0.0.1:0",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains(&format!(
            "cannot listen for HTTP on {addr}: the address is already in use"
        )),
        "{}",
        text(&o)
    );
    let busy_udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let uaddr = busy_udp.local_addr().unwrap().to_string();
    let o = serve(&[
        "--artifacts",
        art,
        "--http-addr",
        "127.0.0.1:0",
        "--tftp-addr",
        &uaddr,
    ]);
    assert!(
        text(&o).contains(&format!(
            "cannot listen for TFTP on {uaddr}: the address is already in use"
        )),
        "{}",
        text(&o)
    );

    // proxyDHCP must know which address to advertise, and it is IPv4 only. (Both fail before
    // anything binds UDP 67.)
    let o = serve(&[
        "--artifacts",
        art,
        "--http-addr",
        "0.0.0.0:0",
        "--tftp-addr",
        "0.0.0.0:0",
        "--proxy-dhcp",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("--proxy-dhcp needs --advertise IP"),
        "{}",
        text(&o)
    );
    let o = serve(&[
        "--artifacts",
        art,
        "--http-addr",
        "127.0.0.1:0",
        "--tftp-addr",
        "127.0.0.1:0",
        "--proxy-dhcp",
        "--advertise",
        "::1",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("proxyDHCP is IPv4"), "{}", text(&o));

    // A join address or token that could inject iPXE commands is refused up front.
    for (join, token) in [("h:1\nshell", "ok"), ("h:1 || shell", "ok"), (JOIN, "a b||shell")] {
        let mut cmd = cortex();
        isolate(&mut cmd, &f.sandbox);
        let o = run(cmd.args([
            "pxe",
            "serve",
            "--artifacts",
            art,
            "--join",
            join,
            "--token",
            token,
        ]));
        assert_eq!(o.status.code(), Some(1), "{join:?} {token:?}: {}", text(&o));
        assert!(
            text(&o).contains("is not allowed in a boot script"),
            "{}",
            text(&o)
        );
        assert!(
            !text(&o).contains("a b||shell"),
            "the token was echoed: {}",
            text(&o)
        );
    }

    // Token from a file; SIGTERM stops it cleanly.
    let tf = f.sandbox.join("token");
    std::fs::write(&tf, format!("{TOKEN}\n")).unwrap();
    let mut pxe = Pxe::start(&f, &["--token-file", tf.to_str().unwrap()]);
    let o = curl(&[&pxe.url("/boot-efi.ipxe")]);
    assert!(String::from_utf8_lossy(&o.stdout).contains(TOKEN));
    assert!(pxe.terminate().success());
    assert!(pxe.stderr().contains("PXE service stopped"), "{}", pxe.stderr());
}
