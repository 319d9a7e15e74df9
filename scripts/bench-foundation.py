#!/usr/bin/env python3
"""Foundation benchmarks for `cortex up` (issue: Foundation). Not a test: it measures.

  1. start-up: process start -> /readyz 200, median of N, cold (new data dir) and warm (reopen)
  2. idle footprint: RSS and CPU % of a node left idle for --idle seconds
  3. durable write throughput through the real path (gRPC -> Raft -> fsynced redb -> apply)
     with 1, 16 and 64 concurrent clients (`cortex loadgen writes`)

usage: scripts/bench-foundation.py [--binary target/release/cortex] [--runs 10] [--idle 60]
                                   [--seconds 10] [--json out.json]
Build first: cargo build --release
"""
import argparse, json, os, signal, statistics, subprocess, sys, tempfile, time, urllib.request

from benchlib import free_port, cpu_seconds, rss_mb


def env_for(sandbox):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORTEX_")}
    os.makedirs(os.path.join(sandbox, "root"), exist_ok=True)
    open(os.path.join(sandbox, "cmdline"), "w").close()
    env.update(HOME=sandbox, CORTEX_CONFIG_ROOT=os.path.join(sandbox, "root"),
               CORTEX_CMDLINE_FILE=os.path.join(sandbox, "cmdline"), CORTEX_LOG="warn")
    # Start-up and idle footprint without the self-benchmark a node runs at start by default
    # (seconds of full load; it would dominate the idle CPU and RSS figures).
    env["CORTEX_BENCH__ON_START"] = "false"
    return env


def start(binary, sandbox, data):
    http, grpc = free_port(), free_port()
    t0 = time.perf_counter()
    p = subprocess.Popen([binary, "-o", "json", "up", "--data-dir", data,
                          "--http-addr", f"127.0.0.1:{http}", "--grpc-addr", f"127.0.0.1:{grpc}"],
                         env=env_for(sandbox), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{http}/readyz"
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return p, time.perf_counter() - t0, f"127.0.0.1:{grpc}"
        except Exception:
            pass
        if p.poll() is not None:
            sys.exit(f"cortex up exited with {p.returncode}")
        time.sleep(0.002)


def stop(p):
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=15)


def summary(xs):
    xs = sorted(xs)
    return {"median": statistics.median(xs), "min": xs[0], "max": xs[-1], "n": len(xs)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default="target/release/cortex")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--idle", type=float, default=60)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--clients", default="1,16,64")
    ap.add_argument("--json")
    a = ap.parse_args()
    if not os.access(a.binary, os.X_OK):
        sys.exit(f"{a.binary} not found: run `cargo build --release` first")
    out = {"binary": a.binary, "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as sb:
        cold, warm = [], []
        for i in range(a.runs):
            data = os.path.join(sb, f"cold{i}")
            p, t, _ = start(a.binary, sb, data)
            cold.append(t * 1000)
            stop(p)
        data = os.path.join(sb, "warm")
        p, _, _ = start(a.binary, sb, data)
        stop(p)
        for _ in range(a.runs):
            p, t, _ = start(a.binary, sb, data)
            warm.append(t * 1000)
            stop(p)
        out["startup_ms"] = {"cold": summary(cold), "warm": summary(warm)}
        print(f"start-up to /readyz (ms): cold median {statistics.median(cold):.0f} "
              f"[{min(cold):.0f}-{max(cold):.0f}], warm median {statistics.median(warm):.0f} "
              f"[{min(warm):.0f}-{max(warm):.0f}] over {a.runs} runs", flush=True)

        p, _, grpc = start(a.binary, sb, os.path.join(sb, "idle"))
        time.sleep(5)
        c0, t0 = cpu_seconds(p.pid), time.perf_counter()
        time.sleep(a.idle)
        c1, t1 = cpu_seconds(p.pid), time.perf_counter()
        out["idle"] = {"seconds": a.idle, "rss_mb": rss_mb(p.pid), "cpu_percent": 100 * (c1 - c0) / (t1 - t0)}
        print(f"idle after {a.idle:.0f}s: RSS {out['idle']['rss_mb']:.1f} MB, "
              f"CPU {out['idle']['cpu_percent']:.2f} % of one core", flush=True)

        token = os.path.join(sb, "idle", "admin.token")
        ca = os.path.join(sb, "idle", "ca.crt")
        node = json.loads(subprocess.check_output([a.binary, "-o", "json", "node", "list", "--server", grpc,
                                                   "--ca-file", ca], env=env_for(sb)))["nodes"][0]["id"]
        out["writes"] = []
        for n in [int(x) for x in a.clients.split(",")]:
            r = json.loads(subprocess.check_output(
                [a.binary, "-o", "json", "loadgen", "writes", "--node", str(node), "--clients", str(n),
                 "--seconds", str(a.seconds), "--server", grpc, "--token-file", token, "--ca-file", ca],
                env=env_for(sb)))
            out["writes"].append(r)
            print(f"writes, {n:>2} clients: {r['writes_per_sec']:>8.0f}/s  p50 {r['latency_ms_p50']:.2f} ms  "
                  f"p99 {r['latency_ms_p99']:.2f} ms  errors {r['errors']}", flush=True)
        out["idle"]["rss_mb_after_writes"] = rss_mb(p.pid)
        stop(p)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
