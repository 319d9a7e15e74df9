#!/usr/bin/env python3
"""MCP `tools/call` latency with many nodes (issue: Surfaces). Not a test: it measures.

For each N in --nodes (default "2,999": 3 and 1,000 nodes in all), on a fresh `cortex up`:
N simulated nodes join with an auto-approve token and heartbeat every second
(`cortex loadgen heartbeats`: each a real joined node with its own certificate and mTLS
connection), then `tests/mcp_client.py --bench CALLS` times list_nodes and submit_task over
streamable HTTP with the official Python SDK (one session, calls in sequence) and prints p50/p99.

usage: scripts/bench-mcp.py [--binary target/release/cortex] [--python PY] [--nodes 2,999]
                            [--calls 200] [--json out.json]
"""
import argparse, json, os, subprocess, sys, tempfile, time, urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))


def http(addr, path, body=None, token=None):
    req = urllib.request.Request(f"http://{addr}{path}", method="POST" if body is not None else "GET",
                                 data=None if body is None else json.dumps(body).encode())
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def wait(f, timeout, what):
    end = time.time() + timeout
    while time.time() < end:
        try:
            if f():
                return
        except OSError:
            pass
        time.sleep(0.5)
    sys.exit(f"timed out waiting for {what}")


def run(a, sims):
    with tempfile.TemporaryDirectory() as sb:
        env = dict(os.environ, HOME=sb, CORTEX_CONFIG_ROOT=os.path.join(sb, "etc"),
                   CORTEX_CMDLINE_FILE=os.path.join(sb, "cmdline"), CORTEX_BENCH__ON_START="false",
                   CORTEX_LOG="warn")
        open(env["CORTEX_CMDLINE_FILE"], "w").close()
        data = os.path.join(sb, "c1")
        up = subprocess.Popen([a.binary, "-o", "json", "up", "--data-dir", data, "--grpc-addr", "127.0.0.1:0",
                               "--http-addr", "127.0.0.1:0"], env=env, stdout=subprocess.PIPE,
                              stderr=open(os.path.join(sb, "up.log"), "w"))
        gen = None
        try:
            info = json.loads(up.stdout.readline())
            addr = info["http_addr"]
            wait(lambda: http(addr, "/api/v1/cluster")["leader_id"], 30, "a leader")
            admin = open(os.path.join(data, "admin.token")).read().strip()
            join = http(addr, "/api/v1/tokens", {"kind": "join", "auto_approve": True, "ttl_seconds": 3600},
                        admin)["secret"]
            gen = subprocess.Popen([a.binary, "loadgen", "heartbeats", "--token", join, "--ca-file",
                                    os.path.join(data, "ca.crt"), "--nodes", str(sims), "--seconds", "3600"],
                                   env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wait(lambda: sum(1 for n in http(addr, "/api/v1/nodes?state=ready")["nodes"]) >= sims + 1, 900,
                 f"{sims + 1} ready nodes")
            time.sleep(3)
            token_file = os.path.join(sb, "admin.token")
            out = subprocess.run([a.python, os.path.join(HERE, "..", "tests", "mcp_client.py"), "--url",
                                  f"http://{addr}/mcp", "--token-file", os.path.join(data, "admin.token"),
                                  "--bench", str(a.calls)], capture_output=True, text=True, env=env)
            if out.returncode != 0:
                sys.exit(f"mcp_client.py --bench failed:\n{out.stderr}")
            r = json.loads(out.stdout.strip().splitlines()[-1])["http"]
            r["nodes"] = sims + 1
            return r
        finally:
            if gen:
                gen.terminate(); gen.wait()
            up.terminate(); up.wait()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--binary", default=os.path.join(HERE, "..", "target", "release", "cortex"))
    p.add_argument("--python", default=os.environ.get("CORTEX_TEST_PYTHON",
                   os.path.expanduser("~/.cache/cortex-test-venv/bin/python")))
    p.add_argument("--nodes", default="2,999", help="simulated nodes beside the coordinator, comma-separated")
    p.add_argument("--calls", type=int, default=200)
    p.add_argument("--json")
    a = p.parse_args()
    results = []
    for sims in [int(x) for x in a.nodes.split(",")]:
        r = run(a, sims)
        results.append(r)
        for tool in ("list_nodes", "submit_task"):
            print(f"{r['nodes']:>5} nodes  {tool:<12} {r[tool]['calls']} calls  p50 {r[tool]['p50_ms']} ms  "
                  f"p99 {r[tool]['p99_ms']} ms", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
