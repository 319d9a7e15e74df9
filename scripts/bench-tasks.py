#!/usr/bin/env python3
"""Workload benchmarks (issue: Workloads). Not a test: it measures, with real processes.

  1. exec task submit → finished (the client sees the end), 1 node: p50/p95 over --count,
     against `sh -c true` spawned directly in the same run (`cortex loadgen direct`)
  2. the same on a 3-node loopback cluster (3 coordinators: every node also runs tasks)
  3. nspawn task start → exit vs raw `systemd-nspawn` with the same flags (busybox rootfs)
  4. podman task start → exit vs raw `podman run` with the same flags (needs `cortex image import`)
  5. no-op exec task throughput on the 3-node cluster with --clients concurrent clients, after
     its ceiling on this host: the executor alone (`cortex loadgen executor`, no cluster)
  6. placement throughput with 1,000 simulated nodes (the scheduler + apply, in memory)

usage: scripts/bench-tasks.py [--binary target/release/cortex] [--count 200] [--clients 64]
                              [--tasks 3000] [--skip nspawn,podman,...] [--json out.json]
"""
import argparse, json, os, shutil, subprocess, sys, tempfile, time

from benchlib import free_port


class Cluster:
    def __init__(self, binary, sb):
        self.bin, self.sb = binary, sb
        os.makedirs(os.path.join(sb, "root"), exist_ok=True)
        open(os.path.join(sb, "cmdline"), "w").close()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CORTEX_")}
        self.env.update(HOME=sb, CORTEX_CONFIG_ROOT=os.path.join(sb, "root"),
                        CORTEX_CMDLINE_FILE=os.path.join(sb, "cmdline"), CORTEX_LOG="warn",
                        CORTEX_CA_FILE=os.path.join(sb, "c1", "ca.crt"),
                        CORTEX_TOKEN_FILE=os.path.join(sb, "c1", "admin.token"))
        # No self-benchmark at node start: seconds of full load would skew every timing here.
        self.env["CORTEX_BENCH__ON_START"] = "false"
        self.procs, self.addrs = {}, {}

    def cli(self, *args, check=True):
        r = subprocess.run([self.bin, *args], env=dict(self.env, CORTEX_SERVER=self.addrs["c1"]),
                           capture_output=True, text=True)
        if check and r.returncode != 0:
            raise RuntimeError(f"{' '.join(args)}: {r.stderr}")
        return r

    def start(self, name, token=None):
        self.addrs[name] = f"127.0.0.1:{free_port()}"
        cmd = [self.bin, "-o", "json"] + (["up"] if token is None else ["agent", "--role", "coordinator", "--token", token])
        cmd += ["--data-dir", os.path.join(self.sb, name), "--grpc-addr", self.addrs[name],
                "--http-addr", f"127.0.0.1:{free_port()}", "--node-name", name]
        self.procs[name] = subprocess.Popen(cmd, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.procs[name].stdout.readline()

    def stop(self):
        for p in self.procs.values():
            p.terminate()
        for p in self.procs.values():
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()

    def loadgen(self, *args):
        r = self.cli("-o", "json", "loadgen", *args)
        return json.loads(r.stdout)


def busybox_rootfs(path):
    for d in ["bin", "usr/lib", "etc", "proc", "sys", "dev", "tmp"]:
        os.makedirs(os.path.join(path, d), exist_ok=True)
    shutil.copy("/bin/busybox", os.path.join(path, "bin/busybox"))
    subprocess.run(["chroot", path, "/bin/busybox", "--install", "-s"], check=True)
    with open(os.path.join(path, "usr/lib/os-release"), "w") as f:
        f.write("ID=cortex-bench\n")
    os.symlink("../usr/lib/os-release", os.path.join(path, "etc/os-release"))


def line(name, r, base=None):
    ratio = f"  ({r['p50_ms'] / base['p50_ms']:.2f}x direct)" if base else ""
    print(f"  {name:44s} p50 {r['p50_ms']:8.2f} ms  p95 {r['p95_ms']:8.2f} ms  n={r['count']} failed={r['failed']}{ratio}", flush=True)
    if r.get("phases_ms"):
        print(f"  {'':44s} phase medians (ms): {r['phases_ms']}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="target/release/cortex")
    ap.add_argument("--count", type=int, default=200)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--tasks", type=int, default=3000)
    ap.add_argument("--skip", default="")
    ap.add_argument("--json")
    a = ap.parse_args()
    skip = set(filter(None, a.skip.split(",")))
    binary = os.path.abspath(a.binary)
    results = {"load_before": os.getloadavg()}
    sb = tempfile.mkdtemp(prefix="cortex-bench-tasks-")
    try:
        c = Cluster(binary, sb)
        c.start("c1")
        print("1 node (cortex up):", flush=True)
        direct = c.loadgen("direct", "--count", str(a.count), "--", "sh", "-c", "true")
        line("direct sh -c true", direct)
        one = c.loadgen("tasks", "--count", str(a.count), "--", "sh", "-c", "true")
        line("exec task sh -c true, submit → finished", one, direct)
        results.update(direct=direct, exec_1_node=one)

        if "nspawn" not in skip and shutil.which("systemd-nspawn"):
            root = os.path.join(sb, "rootfs")
            busybox_rootfs(root)
            n = max(10, a.count // 10)
            flags = ["--quiet", "--pipe", "--register=no", "--keep-unit", "--as-pid2", "--volatile=overlay",
                     "--oom-score-adjust=1000", "--kill-signal=SIGTERM", "--private-network"]
            raw = c.loadgen("direct", "--count", str(n), "--", "systemd-nspawn", *flags, "-D", root, "--", "/bin/true")
            line("raw systemd-nspawn /bin/true", raw)
            ns = c.loadgen("tasks", "--count", str(n), "--nspawn", root, "--", "/bin/true")
            line("nspawn task /bin/true", ns, raw)
            results.update(nspawn_raw=raw, nspawn_task=ns)

        if "podman" not in skip and shutil.which("podman"):
            tar = os.path.join(sb, "rootfs.tar")
            if not os.path.exists(os.path.join(sb, "rootfs")):
                busybox_rootfs(os.path.join(sb, "rootfs"))
            subprocess.run(["tar", "-C", os.path.join(sb, "rootfs"), "-cf", tar, "."], check=True)
            r = c.cli("image", "import", "--data-dir", os.path.join(sb, "c1"), tar, "localhost/cortex-bench:1", check=False)
            if r.returncode != 0:
                print(f"  podman: image import failed, skipped: {r.stderr.strip()}")
            else:
                # The node publishes its images within seconds; a submission before that is refused.
                for _ in range(300):
                    nodes = json.loads(c.cli("-o", "json", "node", "list").stdout)["nodes"]
                    if any("localhost/cortex-bench:1" in n.get("images", []) for n in nodes):
                        break
                    time.sleep(0.1)
                n = max(10, a.count // 10)
                # The same configuration and image store the node's podman service uses.
                pdir = os.path.join(sb, "c1", "exec", "podman")
                env = dict(os.environ)
                for var, name in [("CONTAINERS_CONF", "containers.conf"), ("CONTAINERS_STORAGE_CONF", "storage.conf")]:
                    if os.path.exists(os.path.join(pdir, name)):
                        env[var] = os.path.join(pdir, name)
                t0 = time.time()
                lat = []
                for _ in range(n):
                    s = time.time()
                    subprocess.run(["podman", "run", "--rm", "--network", "none", "localhost/cortex-bench:1", "/bin/true"],
                                   env=env, check=True, capture_output=True)
                    lat.append((time.time() - s) * 1000)
                lat.sort()
                raw = {"p50_ms": lat[len(lat) // 2], "p95_ms": lat[int(len(lat) * 0.95) - 1], "count": n, "failed": 0}
                line("raw podman run --rm --network none", raw)
                pt = c.loadgen("tasks", "--count", str(n), "--podman", "localhost/cortex-bench:1", "--", "/bin/true")
                line("podman task /bin/true", pt, raw)
                results.update(podman_raw=raw, podman_task=pt)

        # Three coordinators; each also runs tasks.
        token = c.cli("token", "create", "--auto-approve", "--uses", "2").stdout.strip()
        c.start("c2", token)
        c.start("c3", token)
        time.sleep(2)
        print("3 nodes (3 coordinators on loopback):", flush=True)
        three = c.loadgen("tasks", "--count", str(a.count), "--", "sh", "-c", "true")
        line("exec task sh -c true, submit → finished", three, direct)
        # The ceiling, in the same run: the executor alone (the same cgroups, private network
        # namespace, scratch dir and cleanup, no cluster), and with the host's network.
        for extra in ([], ["--host-network"]):
            ex = c.loadgen("executor", "--count", str(min(a.tasks, 1000)), "--clients", "8", *extra, "--", "true")
            print(f"  {ex['what']}: {ex['per_sec']:.0f} attempts/s, machine CPU {ex['machine_cpu_ms_per_attempt']:.2f} ms "
                  f"per attempt (so at most {ex['cores'] / ex['machine_cpu_ms_per_attempt'] * 1000:.0f}/s on "
                  f"{ex['cores']} cores)", flush=True)
            results["executor_host_network" if extra else "executor"] = ex
        tp = c.loadgen("tasks", "--count", str(a.tasks), "--clients", str(a.clients), "--", "true")
        print(f"  no-op throughput, {a.clients} clients: {tp['per_sec']:.0f} tasks/s completed "
              f"({tp['count']} in {tp['seconds']:.1f}s, p50 {tp['p50_ms']:.1f} ms, failed {tp['failed']}); "
              f"phase medians {tp.get('phases_ms')}", flush=True)
        results.update(exec_3_nodes=three, throughput_3_nodes=tp)
        c.stop()

        pl = json.loads(subprocess.run([binary, "-o", "json", "loadgen", "placement", "--nodes", "1000", "--tasks", "20000"],
                                       capture_output=True, text=True, check=True).stdout)
        print(f"placement, 1000 simulated nodes: {pl['placements_per_sec']:.0f} placements/s "
              f"({pl['placed']} in {pl['seconds']:.2f}s)")
        results["placement"] = pl
        results["load_after"] = os.getloadavg()
        print(f"load average before {results['load_before'][0]:.2f}, after {results['load_after'][0]:.2f}")
        if a.json:
            with open(a.json, "w") as f:
                json.dump(results, f, indent=2)
    finally:
        try:
            c.stop()
        except Exception:
            pass
        shutil.rmtree(sb, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
