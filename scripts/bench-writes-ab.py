#!/usr/bin/env python3
"""Alternating A/B of cortex binaries on the write path. Not a test: it measures.

Each run starts a fresh cluster of 3 coordinators (bench-cluster.py's `Cluster`, one tokio
worker thread per process), warms up for 1 s, then drives `cortex loadgen writes` for
--seconds and prints writes/s, latency, writes per Raft entry and the CPU each write cost
the leader, the followers (/proc/<pid>/stat) and the client (getrusage), user and system time
apart. Binaries alternate run by run, so a change in the VM's speed hits both alike: compare
pairs, not absolutes. At the end, per binary, the medians over the rounds.

User time is the figure to judge a change to our code by: on this VM the system time per write
(loopback TCP, wake-ups between vCPUs, fsync) swings 3-5x within minutes with the same binary,
while user time moves by ~20 %.

usage: scripts/bench-writes-ab.py BINARY [BINARY ...] [--clients 64] [--connections N]
                                  [--rounds 3] [--seconds 6] [--call set-labels|who-am-i]
"""
import argparse, importlib.util, json, os, resource, statistics, sys, tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
spec = importlib.util.spec_from_file_location("bench_cluster", os.path.join(HERE, "bench-cluster.py"))
bc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bc)
from benchlib import user_sys  # noqa: E402


def run(binary, a):
    os.environ.pop("TOKIO_WORKER_THREADS", None)
    with tempfile.TemporaryDirectory() as sb:
        c = bc.Cluster(binary, sb, ["TOKIO_WORKER_THREADS=1"])
        try:
            _, lname = bc.three_coordinators(c)
            args = ["-o", "json", "loadgen", "writes", "--node", "c1", "--clients", str(a.clients),
                    "--connections", str(a.connections or a.clients), "--keys", "1", "--call", a.call]
            c.cli(*args, "--seconds", "1", server=c.addrs[lname])
            cpu0 = {n: user_sys(p.pid) for n, p in c.procs.items()}
            ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            log0 = c.status(lname)["last_log_index"]
            r = json.loads(c.cli(*args, "--seconds", str(a.seconds), server=c.addrs[lname]).stdout)
            ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu1 = {n: user_sys(p.pid) for n, p in c.procs.items()}
            calls = max(r["writes"], 1)
            entries = max(c.status(lname)["last_log_index"] - log0, 1)

            def per(n, i):
                return (cpu1[n][i] - cpu0[n][i]) / calls * 1e6
            followers = [n for n in cpu0 if n != lname]
            row = {
                "rate": r["writes_per_sec"],
                "user": (per(lname, 0), sum(per(n, 0) for n in followers), (ru1.ru_utime - ru0.ru_utime) / calls * 1e6),
                "sys": (per(lname, 1), sum(per(n, 1) for n in followers), (ru1.ru_stime - ru0.ru_stime) / calls * 1e6),
            }
            u, y = row["user"], row["sys"]
            print(f"{binary}: {r['writes_per_sec']:8.0f} {a.call}/s  p50 {r['latency_ms_p50']:.2f} ms"
                  f"  p99 {r['latency_ms_p99']:.2f} ms  CPU us/call (leader, followers, client):"
                  f" user {u[0]:.0f} {u[1]:.0f} {u[2]:.0f} = {sum(u):.0f}, sys {y[0]:.0f} {y[1]:.0f} {y[2]:.0f} = {sum(y):.0f}"
                  + (f"  {calls / entries:.1f} per entry" if a.call == "set-labels" else ""), flush=True)
            return row
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
    rows = {b: [] for b in a.binaries}
    for _ in range(a.rounds):
        for b in a.binaries:
            rows[b].append(run(b, a))
    print(f"medians over {a.rounds} rounds:")
    for b, rs in rows.items():
        med = statistics.median
        print(f"{b}: {med(r['rate'] for r in rs):8.0f} {a.call}/s  CPU us/call: user {med(sum(r['user']) for r in rs):.1f}"
              f" (leader {med(r['user'][0] for r in rs):.1f}), sys {med(sum(r['sys']) for r in rs):.1f}")


if __name__ == "__main__":
    main()
