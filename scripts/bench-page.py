#!/usr/bin/env python3
"""Status page benchmarks (issue: Surfaces). Not a test: it measures, on loopback, real processes.

One coordinator (`cortex up`) plus N simulated nodes (`cortex loadgen heartbeats`: each a real
joined node with its own certificate, heartbeating every second over mTLS). Then:

  1. /ui/snapshot: size and server time (p50/p99 over --snapshots requests)
  2. full page render in headless Chromium (tests/browser/bench_page.js): navigation start until
     the nodes table holds every node (p50/p99 over --renders loads)
  3. update latency in Chromium: drain a node through the page's endpoint, time until its row says
     "draining" (the whole path: HTTP, Raft write, the feed's next frame, SSE, render), --updates
  4. --clients concurrent SSE clients (Python asyncio, raw sockets): the coordinator's CPU and RSS
     over --seconds against the same window with no client, bytes delivered, and the fan-out
     latency of a change (label set → the diff received by every client)

usage: scripts/bench-page.py [--binary target/release/cortex] [--sim 1000] [--clients 1000]
                             [--renders 20] [--updates 50] [--seconds 20] [--json out.json]
Needs Node.js and playwright-core (scripts/test.sh installs it into
${XDG_CACHE_HOME:-~/.cache}/cortex-test-browser) and /usr/bin/chromium.
"""
import argparse, asyncio, json, os, statistics, subprocess, sys, tempfile, time, urllib.request

from benchlib import free_port, cpu_seconds, rss_mb

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def summary(v):
    # None for an empty list (e.g. --sim 0 leaves no worker to drain), printed as such.
    if not v:
        return {"n": 0, "p50": None, "p99": None, "max": None}
    return {"n": len(v), "p50": round(pct(v, 50), 1), "p99": round(pct(v, 99), 1), "max": round(max(v), 1)}


def get(url):
    return urllib.request.urlopen(url, timeout=30).read()


def wait(f, timeout=60, step=0.2):
    end = time.time() + timeout
    while time.time() < end:
        try:
            if f():
                return
        except Exception:
            pass
        time.sleep(step)
    raise RuntimeError("timed out")


async def sse_clients(host, port, n, seconds, change, marker):
    """n clients read /ui/events; returns bytes read, and per client the delay from `change()`
    until it saw `marker`."""
    got = [0] * n
    seen = [None] * n
    start = {"t": None}

    async def one(i):
        r, w = await asyncio.open_connection(host, port, limit=1 << 22)
        w.write(f"GET /ui/events HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n\r\n".encode())
        await w.drain()
        tail = b""
        try:
            while True:
                b = await r.read(1 << 16)
                if not b:
                    break
                got[i] += len(b)
                if start["t"] is not None and seen[i] is None and marker in tail + b:
                    seen[i] = time.monotonic() - start["t"]
                tail = b[-len(marker):]
        except asyncio.CancelledError:
            pass
        finally:
            w.close()

    tasks = []
    for i in range(n):
        tasks.append(asyncio.create_task(one(i)))
        if i % 100 == 99:
            await asyncio.sleep(0.05)
    await asyncio.sleep(3)  # every client has its snapshot
    warm = sum(got)
    t0 = time.monotonic()
    await asyncio.sleep(seconds / 2)
    start["t"] = time.monotonic()
    c0 = time.monotonic()
    await asyncio.get_running_loop().run_in_executor(None, change)
    change_s = time.monotonic() - c0
    await asyncio.sleep(seconds / 2)
    elapsed = time.monotonic() - t0
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {"connected_bytes": warm, "bytes_per_s": (sum(got) - warm) / elapsed,
            "fanout_s": [s for s in seen if s is not None], "missed": sum(1 for s in seen if s is None),
            "change_s": change_s}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(ROOT, "target/release/cortex"))
    ap.add_argument("--sim", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--renders", type=int, default=20)
    ap.add_argument("--updates", type=int, default=50)
    ap.add_argument("--gap-ms", type=int, default=250, help="pause between two updates (0: back to back)")
    ap.add_argument("--snapshots", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--json")
    a = ap.parse_args()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.environ["HOME"], ".cache")
    modules = os.environ.get("CORTEX_TEST_NODE_MODULES") or os.path.join(cache, "cortex-test-browser/node_modules")
    out = {"sim_nodes": a.sim, "gap_ms": a.gap_ms}
    with tempfile.TemporaryDirectory() as sb:
        os.makedirs(os.path.join(sb, "root"))
        open(os.path.join(sb, "cmdline"), "w").close()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CORTEX_")}
        env.update(HOME=sb, CORTEX_CONFIG_ROOT=os.path.join(sb, "root"), CORTEX_CMDLINE_FILE=os.path.join(sb, "cmdline"),
                   CORTEX_LOG="warn", CORTEX_BENCH__ON_START="false",
                   CORTEX_CA_FILE=os.path.join(sb, "c1", "ca.crt"), CORTEX_TOKEN_FILE=os.path.join(sb, "c1", "admin.token"))
        grpc, http = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
        coord = subprocess.Popen([a.binary, "-o", "json", "up", "--data-dir", os.path.join(sb, "c1"), "--grpc-addr", grpc,
                                  "--http-addr", http], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        gen = None
        try:
            coord.stdout.readline()
            cli = lambda *args: subprocess.run([a.binary, *args, "--server", grpc], env=env, check=True,
                                               capture_output=True, text=True).stdout.strip()
            token = cli("token", "create", "--auto-approve")
            gen = subprocess.Popen([a.binary, "loadgen", "heartbeats", "--token", token, "--ca-file",
                                    os.path.join(sb, "c1", "ca.crt"), "--nodes", str(a.sim), "--seconds", "100000"],
                                   env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            t = time.time()
            wait(lambda: len(json.loads(get(f"http://{http}/api/v1/nodes"))["nodes"]) >= a.sim + 1, timeout=900, step=1)
            print(f"{a.sim} simulated nodes joined in {time.time() - t:.0f} s", flush=True)
            time.sleep(5)
            pid = coord.pid

            # 1. the snapshot
            times, size = [], 0
            for _ in range(a.snapshots):
                t0 = time.perf_counter()
                size = len(get(f"http://{http}/ui/snapshot"))
                times.append((time.perf_counter() - t0) * 1000)
            out["snapshot_bytes"] = size
            out["snapshot_ms"] = summary(times)
            print(f"/ui/snapshot: {size / 1024:.0f} KiB, p50 {out['snapshot_ms']['p50']} ms, p99 {out['snapshot_ms']['p99']} ms", flush=True)

            # 2 + 3. Chromium
            r = subprocess.run(["node", os.path.join(ROOT, "tests/browser/bench_page.js"), "--url", f"http://{http}/",
                                "--token-file", os.path.join(sb, "c1", "admin.token"), "--renders", str(a.renders),
                                "--updates", str(a.updates), "--nodes", str(a.sim + 1), "--gap-ms", str(a.gap_ms)],
                               env=dict(os.environ, NODE_PATH=modules), capture_output=True, text=True, timeout=1800)
            if r.returncode != 0:
                raise RuntimeError("bench_page.js failed: " + r.stderr)
            b = json.loads(r.stdout.strip().splitlines()[-1])
            out["render_ms"], out["update_ms"], out["write_ms"] = summary(b["render_ms"]), summary(b["update_ms"]), summary(b["write_ms"])
            out["browser_errors"] = b["errors"]
            costs = [c for c in b.get("costs", []) if c]
            out["render_cost_ms"] = {k: round(pct([c.get(k, 0) for c in costs], 50), 1) for k in sorted({k for c in costs for k in c})}
            print(f"first render's JavaScript, medians per part: {out['render_cost_ms']}", flush=True)
            for k in ("html_ms", "dcl_ms", "snapshot_ms"):
                out["render_" + k] = summary([v for v in b.get(k, []) if v is not None])
            print(f"full render with {a.sim + 1} nodes: p50 {out['render_ms']['p50']} ms, p99 {out['render_ms']['p99']} ms "
                  f"({a.renders} loads); medians from navigation start: HTML in {out['render_html_ms']['p50']} ms, "
                  f"scripts run {out['render_dcl_ms']['p50']} ms, snapshot applied {out['render_snapshot_ms']['p50']} ms", flush=True)
            print(f"update (drain → row says draining): p50 {out['update_ms']['p50']} ms, p99 {out['update_ms']['p99']} ms; "
                  f"the write itself p50 {out['write_ms']['p50']} ms ({a.updates} updates, {a.gap_ms} ms apart)", flush=True)

            # 4. SSE clients: baseline window, then with the clients.
            c0, t0 = cpu_seconds(pid), time.time()
            time.sleep(a.seconds)
            base = {"cpu_percent": round(100 * (cpu_seconds(pid) - c0) / (time.time() - t0), 1), "rss_mb": round(rss_mb(pid), 1)}
            print(f"no SSE client: coordinator CPU {base['cpu_percent']} % of one core, RSS {base['rss_mb']} MB", flush=True)
            host, port = http.split(":")
            node_id = json.loads(get(f"http://{http}/ui/snapshot"))["cluster"]["node_id"]
            marker = b"bench-mark"
            c0, t0 = cpu_seconds(pid), time.time()
            res = asyncio.run(sse_clients(host, int(port), a.clients, a.seconds,
                                          lambda: cli("node", "label", str(node_id), "bench=bench-mark"), marker))
            loaded = {"cpu_percent": round(100 * (cpu_seconds(pid) - c0) / (time.time() - t0), 1), "rss_mb": round(rss_mb(pid), 1)}
            fan = res["fanout_s"]
            out["sse_clients"] = {"clients": a.clients, "idle": base, "loaded": loaded,
                                  "mb_per_s_to_clients": round(res["bytes_per_s"] / 1e6, 2),
                                  "snapshot_bytes_total": res["connected_bytes"],
                                  "fanout_ms": summary([x * 1000 for x in fan]) if fan else None, "missed": res["missed"],
                                  "label_cli_ms": round(res["change_s"] * 1000, 1)}
            print(f"{a.clients} SSE clients: coordinator CPU {loaded['cpu_percent']} % of one core, RSS {loaded['rss_mb']} MB "
                  f"(no client: {base['cpu_percent']} %, {base['rss_mb']} MB); {res['bytes_per_s'] / 1e6:.2f} MB/s to clients; "
                  f"a label change reached {len(fan)}/{a.clients} clients"
                  + (f", p50 {pct(fan, 50) * 1000:.0f} ms, p99 {pct(fan, 99) * 1000:.0f} ms, last {max(fan) * 1000:.0f} ms"
                     f" after the label command started (the command itself took {res['change_s'] * 1000:.0f} ms)" if fan else ""),
                  flush=True)
        finally:
            for p in (gen, coord):
                if p and p.poll() is None:
                    p.terminate()
                    try:
                        p.wait(10)
                    except subprocess.TimeoutExpired:
                        p.kill()
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
