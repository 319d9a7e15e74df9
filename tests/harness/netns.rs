//! Several hosts on one machine: network namespaces on a bridge (in a hub namespace), with
//! partitions made by nft rules on the bridge — nothing inside the nodes is touched.
//! Every address lives inside namespaces the test made; they are deleted on drop.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(0);

pub struct Netns {
    prefix: String,
    hub: String,
    count: usize,
}

fn run(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args[0]))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn nft(hub: &str, script: &str) -> Result<(), String> {
    use std::io::Write;
    let mut child = Command::new("ip")
        .args(["netns", "exec", hub, "nft", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("nft: {e}"))?;
    child
        .stdin
        .take()
        .ok_or("no stdin")?
        .write_all(script.as_bytes())
        .map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "nft failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Netns {
    /// `n` namespaces on one bridge; host `i` (1-based) is 10.231.0.i/24. `None` (with a loud
    /// message) when this machine cannot do it; under CI=true that is a failure instead.
    pub fn new(n: usize) -> Option<Netns> {
        let missing = if Command::new("id")
            .arg("-u")
            .output()
            .map(|o| o.stdout != b"0\n")
            .unwrap_or(true)
        {
            Some("root")
        } else if Command::new("nft").arg("--version").output().is_err() {
            Some("nft (package nftables)")
        } else if Command::new("ip").arg("-V").output().is_err() {
            Some("ip (package iproute2)")
        } else {
            None
        };
        if let Some(what) = missing {
            if super::strict() {
                panic!("network-namespace tests need {what}, and CI=true forbids skipping");
            }
            eprintln!("SKIPPED: network-namespace test needs {what}");
            return None;
        }
        let prefix = format!(
            "cx{}n{}",
            std::process::id() % 100_000,
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let net = Netns {
            hub: format!("{prefix}h"),
            prefix,
            count: n,
        };
        net.create()
            .unwrap_or_else(|e| panic!("creating network namespaces: {e}"));
        Some(net)
    }

    fn create(&self) -> Result<(), String> {
        let hub = self.hub.as_str();
        run(&["ip", "netns", "add", hub])?;
        run(&["ip", "-n", hub, "link", "add", "br0", "type", "bridge"])?;
        run(&["ip", "-n", hub, "link", "set", "br0", "up"])?;
        for i in 1..=self.count {
            let ns = self.name(i);
            let peer = format!("p{i}");
            let addr = format!("{}/24", self.ip(i));
            run(&["ip", "netns", "add", &ns])?;
            run(&[
                "ip", "link", "add", "eth0", "netns", &ns, "type", "veth", "peer", "name", &peer, "netns",
                hub,
            ])?;
            run(&["ip", "-n", hub, "link", "set", &peer, "master", "br0", "up"])?;
            run(&["ip", "-n", &ns, "link", "set", "lo", "up"])?;
            run(&["ip", "-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
            run(&["ip", "-n", &ns, "link", "set", "eth0", "up"])?;
        }
        Ok(())
    }

    pub fn name(&self, i: usize) -> String {
        format!("{}-{i}", self.prefix)
    }

    pub fn ip(&self, i: usize) -> String {
        format!("10.231.0.{i}")
    }

    /// Cuts hosts `side` off from every other host (both directions), on the bridge.
    pub fn partition(&self, side: &[usize]) {
        let inside: Vec<String> = side.iter().map(|i| format!("\"p{i}\"")).collect();
        let outside: Vec<String> = (1..=self.count)
            .filter(|i| !side.contains(i))
            .map(|i| format!("\"p{i}\""))
            .collect();
        let script = format!(
            "table bridge part {{\n chain f {{\n  type filter hook forward priority 0; policy accept;\n  \
             iifname {{ {a} }} oifname {{ {b} }} drop\n  iifname {{ {b} }} oifname {{ {a} }} drop\n }}\n}}\n",
            a = inside.join(", "),
            b = outside.join(", ")
        );
        nft(&self.hub, &script).unwrap_or_else(|e| panic!("partition: {e}"));
    }

    /// Limits the traffic towards host `i` to `mbit` Mbit/s with a token bucket (`tc qdisc … tbf`)
    /// on its bridge port; `Err` (with tc's message) when the kernel has no tbf.
    pub fn shape(&self, i: usize, mbit: u32) -> Result<(), String> {
        run(&[
            "ip",
            "netns",
            "exec",
            &self.hub,
            "tc",
            "qdisc",
            "replace",
            "dev",
            &format!("p{i}"),
            "root",
            "tbf",
            "rate",
            &format!("{mbit}mbit"),
            "burst",
            "64kb",
            "latency",
            "100ms",
        ])
    }

    /// Removes the shaping of host `i`'s port.
    pub fn unshape(&self, i: usize) {
        let _ = run(&[
            "ip",
            "netns",
            "exec",
            &self.hub,
            "tc",
            "qdisc",
            "del",
            "dev",
            &format!("p{i}"),
            "root",
        ]);
    }

    /// `program` in host `i`'s network namespace (only the network namespace, as for nodes).
    pub fn command(&self, i: usize, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", self.name(i)))
            .arg("--")
            .arg(program);
        c
    }

    pub fn heal(&self) {
        nft(&self.hub, "delete table bridge part").unwrap_or_else(|e| panic!("heal: {e}"));
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for i in 1..=self.count {
            let _ = run(&["ip", "netns", "del", &self.name(i)]);
        }
        let _ = run(&["ip", "netns", "del", &self.hub]);
    }
}
