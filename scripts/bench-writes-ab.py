#!/usr/bin/env python3
"""Alternating A/B of cortex binaries on the write path. Not a test: it measures.

Each run starts a fresh cluster of 3 coordinators (bench-cluster.py's `Cluster`, one tokio
worker thread per process), warms up for 1 s, then drives `cortex loadgen writes` for
--seconds and prints writes/s, latency, writes per Raft entry and the CPU each write cost
the leader, each follower (/proc/<pid>/stat) and the client (getrusage). Binaries alternate
run by run, so a change in the VM's speed hits both alike: compare pairs, not absolutes.

usage: scripts/bench-writes-ab.py BINARY [BINARY ...] [--clients 64] [--connections N]
                                  [--rounds 3] [--seconds 6] [--call set-labels|who-am-i]
"""
import argparse, importlib.util, json, os, resource, subprocess, sys, tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
spec = importlib.util.spec_from_file_location("bench_cluster", os.path.join(HERE, "bench-cluster.py"))
bc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bc)
from benchlib import cpu_seconds  # noqa: E402


def run(binary, a):
    os.environ.pop("TOKIO_WORKER_THREADS", None)
    with tempfile.TemporaryDirectory() as sb:
        c = bc.Cluster(binary, sb, ["TOKIO_WORKER_THREADS=1"])
        try:
            c.start("c1")
            bc.wait(lambda: c.status("c1") and c.status("c1")["leader_id"])
            token = c.cli("token", "create", "--auto-approve", server=c.addrs["c1"]).stdout.strip()
            c.start("c2", token)
            c.start("c3", token)
            bc.wait(lambda: (c.status("c1") or {}).get("voters") and len(c.status("c1")["voters"]) == 3)
            ids = {n: c.status(n)["node_id"] for n in ("c1", "c2", "c3")}
            leader = bc.wait(lambda: (c.status("c1") or {}).get("leader_id"))
            lname = next(n for n, i in ids.items() if i == leader)
            args = ["-o", "json", "loadgen", "writes", "--node", "c1", "--clients", str(a.clients),
                    "--connections", str(a.connections or a.clients), "--keys", "1", "--call", a.call]
            c.cli(*args, "--seconds", "1", server=c.addrs[lname])
            cpu0 = {n: cpu_seconds(p.pid) for n, p in c.procs.items()}
            ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            log0 = c.status(lname)["last_log_index"]
            r = json.loads(c.cli(*args, "--seconds", str(a.seconds), server=c.addrs[lname]).stdout)
            ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu1 = {n: cpu_seconds(p.pid) for n, p in c.procs.items()}
            calls = max(r["writes"], 1)
            entries = max(c.status(lname)["last_log_index"] - log0, 1)
            per = {n: (cpu1[n] - cpu0[n]) / calls * 1e6 for n in cpu0}
            client = ((ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)) / calls * 1e6
            followers = " ".join(f"{per[n]:.0f}" for n in per if n != lname)
            print(f"{binary}: {r['writes_per_sec']:8.0f} {a.call}/s  p50 {r['latency_ms_p50']:.2f} ms"
                  f"  p99 {r['latency_ms_p99']:.2f} ms  CPU/call: leader {per[lname]:.0f} us,"
                  f" followers {followers} us, client {client:.0f} us"
                  + (f"  {calls / entries:.1f} per entry" if a.call == "set-labels" else ""), flush=True)
        finally:
            c.stop_all()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("binaries", nargs="+")
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--connections", type=int, help="default: one per client")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=6)
    ap.add_argument("--call", choices=["set-labels", "who-am-i"], default="set-labels")
    a = ap.parse_args()
    for _ in range(a.rounds):
        for b in a.binaries:
            run(b, a)


if __name__ == "__main__":
    main()
