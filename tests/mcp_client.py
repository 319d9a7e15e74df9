#!/usr/bin/env python3
"""Drives Cortex's MCP server the way an AI assistant's client does, with the official Python
SDK (`mcp` on PyPI): over streamable HTTP (`/mcp` on a coordinator) and over stdio
(`cortex mcp`, the bridge to the coordinator's gRPC API).

Run by tests/mcp.rs against a real `cortex up`; exits non-zero with the failed check on stderr.
`--bench N` instead times N `tools/call`s of list_nodes and of submit_task over HTTP (and over
stdio when --cortex is given) and prints their p50/p99 in milliseconds as JSON.
"""

import argparse
import json
import sys
import time
import urllib.error
import urllib.request

import anyio
import httpx2
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

READ_TOOLS = {
    "cluster_status", "list_nodes", "get_node", "list_pending_nodes", "get_task", "list_tasks",
    "task_logs", "get_workflow", "list_events",
}
WRITE_TOOLS = {
    "approve_node", "reject_node", "drain_node", "undrain_node", "submit_task", "run_on_all_nodes",
    "cancel_task",
    "submit_workflow", "run_benchmark", "run_network_benchmark",
}


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def text(result):
    return "".join(c.text for c in result.content if getattr(c, "type", "") == "text")


# Every tool name called (with success or an expected error), to check that all were.
CALLED = set()


async def call(session, name, args=None, **kw):
    """A tool call that must succeed; returns its JSON."""
    CALLED.add(name)
    r = await session.call_tool(name, args or {}, **kw)
    check(not r.is_error, f"{name}({args}) failed: {text(r)}")
    return json.loads(text(r))


async def call_err(session, name, args):
    """A tool call that must fail with an isError result; returns its text."""
    CALLED.add(name)
    r = await session.call_tool(name, args)
    check(r.is_error, f"{name}({args}) should have failed, got: {text(r)}")
    return text(r)


def http_session(url, token):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    client = httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=300))
    return client, streamable_http_client(url, http_client=client)


async def eventually(what, f, within=15.0):
    deadline = time.monotonic() + within
    while True:
        v = await f()
        if v:
            return v
        check(time.monotonic() < deadline, f"timed out waiting for {what}")
        await anyio.sleep(0.1)


async def exercise(session, label, progress_task):
    """Everything an operate/admin token can do, checked."""
    init = await session.initialize()
    check(init.server_info.name == "cortex", f"{label}: server name {init.server_info.name}")
    check("wait_seconds" in (init.instructions or ""), f"{label}: instructions {init.instructions!r}")

    tools = (await session.list_tools()).tools
    names = {t.name for t in tools}
    check(names == READ_TOOLS | WRITE_TOOLS, f"{label}: tools {sorted(names)}")
    for t in tools:
        s = t.input_schema
        check(s.get("type") == "object" and "properties" in s, f"{label}: {t.name} schema {s}")
        check(t.description and len(t.description) > 40, f"{label}: {t.name} has no description")
    submit = next(t for t in tools if t.name == "submit_task")
    for arg in ("command", "kind", "image", "env", "workdir", "cpu", "memory_mb", "gpus", "pids",
                "labels", "node", "min_gflops", "fastest", "timeout_seconds", "retries",
                "retry_exit_codes", "depends_on", "network", "name", "wait_seconds", "user"):
        check(arg in submit.input_schema["properties"], f"{label}: submit_task lacks {arg}")

    status = await call(session, "cluster_status")
    check(status.get("leader_id") is not None, f"{label}: status {status}")
    nodes = await call(session, "list_nodes", {"state": "ready"})
    check(nodes["total"] >= 1 and nodes["nodes"][0]["cpus"] >= 1, f"{label}: nodes {nodes}")
    name = nodes["nodes"][0]["name"]
    node = await call(session, "get_node", {"node": name})
    check(node["name"] == name and "cert_pem" not in node, f"{label}: node {node}")
    await call(session, "list_pending_nodes")
    events = await call(session, "list_events", {"limit": 3})
    check(0 < len(events["events"]) <= 3, f"{label}: events {events}")

    # A new quick benchmark, waited for: the figures and when they were measured.
    bench_tool = next(t for t in tools if t.name == "run_benchmark")
    bs = bench_tool.input_schema
    check(bs.get("required") == ["node"] and bs.get("additionalProperties") is False,
          f"{label}: run_benchmark schema {bs}")
    check(bs["properties"]["wait_seconds"].get("maximum") == 120, f"{label}: run_benchmark schema {bs}")
    ann = bench_tool.annotations
    check(ann is not None and ann.read_only_hint is False and ann.destructive_hint is False,
          f"{label}: run_benchmark annotations {ann}")
    before = node.get("bench") or {}
    b = await call(session, "run_benchmark", {"node": name, "quick": True, "wait_seconds": 60})
    check(b["recorded"] is True and b["bench"]["run"] == "quick", f"{label}: run_benchmark {b}")
    check(b["bench"]["measured_at_ms"] > (before.get("measured_at_ms") or 0), f"{label}: run_benchmark {b}")
    check(any(f["figure"] == "memory triad" for f in b["bench"]["figures"]), f"{label}: run_benchmark {b}")
    e = await call_err(session, "run_benchmark", {"node": name, "wait_seconds": 500})
    check("wait_seconds" in e, f"{label}: run_benchmark wait bound: {e}")

    # Drain, then undrain: the node takes work again; undraining twice says why not.
    d = await call(session, "drain_node", {"node": name})
    check("draining" in json.dumps(d), f"{label}: drain_node {d}")
    u = await call(session, "undrain_node", {"node": name})
    check("ready" in json.dumps(u), f"{label}: undrain_node {u}")
    e = await call_err(session, "undrain_node", {"node": name})
    check("not drained" in e, f"{label}: undrain twice: {e}")

    # Errors a model can act on.
    e = await call_err(session, "get_node", {"node": name + "x"})
    check(f"did you mean {name}" in e, f"{label}: unknown node: {e}")
    e = await call_err(session, "submit_task", {"command": ["true"], "memory": 64})
    check("`memory`" in e and "memory_mb" in e, f"{label}: misspelt argument: {e}")
    e = await call_err(session, "submit_task", {"command": []})
    check("command" in e, f"{label}: empty command: {e}")
    e = await call_err(session, "get_task", {"task_id": "t000000000000"})
    check("no task" in e, f"{label}: unknown task: {e}")

    # A task with wait: progress while it runs, then its exit code and output.
    seen = []

    async def on_progress(progress, total, message):
        seen.append((progress, total, message))

    t = await call(session, "submit_task", {**progress_task, "wait_seconds": 60},
                   progress_callback=on_progress)
    check(t["state"] == "succeeded" and t.get("exit_code") == 0, f"{label}: waited task {t}")
    check("hi" in t["output"], f"{label}: waited task output {t}")
    if progress_task["command"] != ["echo", "hi"]:
        check(seen, f"{label}: no progress notification while waiting")
    logs = await call(session, "task_logs", {"task_id": t["id"]})
    check("hi\n" in logs["text"] and logs["eof"], f"{label}: logs {logs}")
    tail = await call(session, "task_logs", {"task_id": t["id"], "tail": 3})
    check(tail["text"] == "hi\n" and tail["offset"] == logs["size"] - 3, f"{label}: tail {tail}")
    full = await call(session, "get_task", {"task_id": t["id"]})
    check(full["spec"]["command"] == progress_task["command"], f"{label}: get_task {full}")
    listed = await call(session, "list_tasks", {"states": ["succeeded"], "limit": 5})
    check(any(x["id"] == t["id"] for x in listed["tasks"]), f"{label}: list_tasks {listed}")
    res = await session.read_resource(f"cortex://tasks/{t['id']}/logs")
    check("hi" in res.contents[0].text, f"{label}: logs resource {res}")
    res = await session.read_resource("cortex://cluster")
    check("leader_id" in res.contents[0].text, f"{label}: cluster resource {res}")

    # A long task, cancelled.
    s = await call(session, "submit_task", {"command": ["sleep", "100"], "name": "long"})
    c = await call(session, "cancel_task", {"task_id": s["task_id"], "reason": "mcp test"})
    check(s["task_id"] in c["cancelled"], f"{label}: cancel {c}")

    async def cancelled():
        g = await call(session, "get_task", {"task_id": s["task_id"]})
        return g["state"] == "cancelled"

    await eventually(f"{label}: task cancelled", cancelled)


async def cluster(session, label, pending):
    """The multi-node part: the joining machines are PENDING with the codes they printed; one is
    approved (and becomes READY), one rejected; a task runs on every ready node; a workflow
    runs in order; node and task resources read back."""
    listed = await call(session, "list_pending_nodes")
    waiting = {n["name"]: n for n in listed["pending"]}
    for name, code in pending.items():
        check(name in waiting, f"{label}: {name} is not pending: {listed}")
        check(waiting[name].get("verification_code") == code,
              f"{label}: {name} shows code {waiting[name].get('verification_code')}, printed {code}")
    approve, reject = sorted(pending)
    a = await call(session, "approve_node", {"node": approve})
    check(a["approved"]["name"] == approve, f"{label}: approve {a}")
    r = await call(session, "reject_node", {"node": reject, "reason": "not ours"})
    check(r["rejected"]["state"] == "rejected", f"{label}: reject {r}")
    e = await call_err(session, "approve_node", {"node": reject})
    check(reject in e, f"{label}: approving a rejected node: {e}")

    async def ready():
        n = await call(session, "get_node", {"node": approve})
        return n["state"] == "ready" and n

    node = await eventually(f"{label}: {approve} ready", ready, within=30)
    res = await session.read_resource(f"cortex://nodes/{node['id']}")
    check(approve in res.contents[0].text, f"{label}: node resource {res}")

    await net_bench(session, label, approve)

    ran = await call(session, "run_on_all_nodes",
                     {"command": ["sh", "-c", "echo on $(id -un)"], "wait_seconds": 60})
    check(ran["status"] == "succeeded" and len(ran["tasks"]) == 2, f"{label}: run_on_all_nodes {ran}")
    check(all("on nobody" in json.dumps(t) for t in ran["tasks"]), f"{label}: run_on_all_nodes {ran}")

    wf = await call(session, "submit_workflow", {"name": "mcp-wf", "wait_seconds": 60, "tasks": [
        {"name": "first", "command": ["echo", "one"]},
        {"name": "second", "command": ["echo", "two"], "depends_on": ["first"]},
    ]})
    check(wf["status"] == "succeeded" and len(wf["tasks"]) == 2, f"{label}: submit_workflow {wf}")
    got = await call(session, "get_workflow", {"workflow": wf["workflow_id"]})
    check(got["status"] == "succeeded" and got["name"] == "mcp-wf", f"{label}: get_workflow {got}")
    first = next(t for t in got["tasks"] if t.get("name") == "first")
    res = await session.read_resource(f"cortex://tasks/{first['id']}")
    check("succeeded" in res.contents[0].text, f"{label}: task resource {res}")


async def net_bench(session, label, peer):
    """A 1 s network run between the coordinator serving the session (it measures) and the
    approved worker, waited for: positive figures both ways, the coordinator named."""
    tools = (await session.list_tools()).tools
    nb = next(t for t in tools if t.name == "run_network_benchmark")
    s = nb.input_schema
    check(s.get("required") == ["node"] and s.get("additionalProperties") is False, f"{label}: schema {s}")
    check(s["properties"]["seconds"].get("minimum") == 1 and s["properties"]["seconds"].get("maximum") == 30,
          f"{label}: run_network_benchmark seconds bounds {s}")
    check(s["properties"]["wait_seconds"].get("maximum") == 120, f"{label}: schema {s}")
    coordinator = (await call(session, "cluster_status"))["node_name"]
    seen = []

    async def on_progress(progress, total, message):
        seen.append(message)

    r = await call(session, "run_network_benchmark", {"node": peer, "seconds": 1, "wait_seconds": 60},
                   progress_callback=on_progress)
    check(r["recorded"] is True, f"{label}: run_network_benchmark {r}")
    nb = r["net_bench"]
    check(nb["measured_by"] == coordinator and nb["peer"] == peer and nb["seconds"] == 1,
          f"{label}: run_network_benchmark {r}")
    check("no TLS" in nb["path"] and "error" not in nb, f"{label}: run_network_benchmark {r}")
    for d in ("send", "receive"):
        f = nb[d]
        check(f["median_mbps"] > 0 and 0 < f["min_mbps"] <= f["median_mbps"] <= f["max_mbps"] and f["cv"] >= 0,
              f"{label}: run_network_benchmark {d} {r}")
    check(nb["send"]["direction"] == f"{coordinator} → {peer}", f"{label}: run_network_benchmark {r}")
    check(seen, f"{label}: no progress notification while the network run went on")
    e = await call_err(session, "run_network_benchmark", {"node": peer, "seconds": 31})
    check("seconds" in e, f"{label}: seconds bound: {e}")
    e = await call_err(session, "run_network_benchmark", {"node": coordinator})
    check("node" in e and "coordinator" in e, f"{label}: the coordinator itself: {e}")


async def read_only(session, label):
    """A read token: only read tools listed; a write tool answers isError naming the scope."""
    await session.initialize()
    names = {t.name for t in (await session.list_tools()).tools}
    check(names == READ_TOOLS, f"{label}: a read token lists {sorted(names)}")
    await call(session, "list_nodes")
    e = await call_err(session, "submit_task", {"command": ["true"]})
    check("operate" in e, f"{label}: write with a read token: {e}")


async def over_http(url, token, read_token, pending):
    client, transport = http_session(url, token)
    async with client, transport as (r, w), ClientSession(r, w) as session:
        await exercise(session, "http", {"command": ["echo", "hi"]})
        if pending:
            await cluster(session, "http", pending)
            missing = (READ_TOOLS | WRITE_TOOLS) - CALLED
            check(not missing, f"tools never called: {sorted(missing)}")
    client, transport = http_session(url, read_token)
    async with client, transport as (r, w), ClientSession(r, w) as session:
        await read_only(session, "http/read")


def stdio_params(args, token_file):
    return StdioServerParameters(
        command=args.cortex,
        args=["mcp", "--server", args.grpc, "--token-file", token_file, "--ca-file", args.ca_file],
    )


async def over_stdio(args, peer=None):
    slow = {"command": ["sh", "-c", "sleep 1; echo hi"]}
    async with stdio_client(stdio_params(args, args.token_file)) as (r, w), ClientSession(r, w) as session:
        await exercise(session, "stdio", slow)
        if peer:
            # Over the gRPC bridge the coordinator measures too, not the bridge's machine.
            await net_bench(session, "stdio", peer)
    async with stdio_client(stdio_params(args, args.read_token_file)) as (r, w), ClientSession(r, w) as session:
        await read_only(session, "stdio/read")


def raw_post(url, headers):
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"}}}).encode()
    req = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json", "Accept": "application/json, text/event-stream", **headers})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.headers, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


def guard_checks(url, token, allowed_host):
    status, headers, body = raw_post(url, {})
    check(status == 401, f"no token: {status} {body}")
    check(headers.get("WWW-Authenticate", "").startswith("Bearer"), f"no token: headers {headers}")
    check("token create" in body, f"no token: {body}")
    status, _, body = raw_post(url, {"Authorization": "Bearer cxt_nope_nope"})
    check(status == 401, f"unknown token: {status} {body}")
    auth = {"Authorization": f"Bearer {token}"}
    status, _, body = raw_post(url, {**auth, "Host": "evil.example"})
    check(status == 403 and "Host" in body, f"foreign Host: {status} {body}")
    status, _, body = raw_post(url, {**auth, "Origin": "http://evil.example"})
    check(status == 403 and "Origin" in body, f"foreign Origin: {status} {body}")
    status, _, body = raw_post(url, {**auth, "Host": "localhost:1"})
    check(status == 200, f"localhost: {status} {body}")
    if allowed_host:
        status, _, body = raw_post(url, {**auth, "Host": f"{allowed_host.upper()}:7070"})
        check(status == 200, f"mcp.allowed_hosts {allowed_host}: {status} {body}")


async def bench_session(session, n):
    def pct(xs, p):
        xs = sorted(xs)
        return round(xs[min(len(xs) - 1, int(len(xs) * p))] * 1000, 2)

    await session.initialize()
    out = {}
    for name, args in (("list_nodes", {}), ("submit_task", {"command": ["true"]})):
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            r = await session.call_tool(name, args)
            times.append(time.perf_counter() - t0)
            check(not r.is_error, f"{name}: {text(r)}")
        out[name] = {"calls": n, "p50_ms": pct(times, 0.5), "p99_ms": pct(times, 0.99)}
    return out


async def bench(args, token, n):
    client, transport = http_session(args.url, token)
    out = {}
    async with client, transport as (r, w), ClientSession(r, w) as session:
        out["http"] = await bench_session(session, n)
    if args.cortex:
        async with stdio_client(stdio_params(args, args.token_file)) as (r, w), ClientSession(r, w) as session:
            out["stdio"] = await bench_session(session, n)
    print(json.dumps(out))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True, help="http://HOST:PORT/mcp")
    p.add_argument("--token-file", required=True, help="an operate or admin token")
    p.add_argument("--read-token-file", help="a read token")
    p.add_argument("--cortex", help="the cortex binary, for `cortex mcp`")
    p.add_argument("--grpc", help="the coordinator's gRPC address")
    p.add_argument("--ca-file", help="the cluster CA certificate")
    p.add_argument("--allowed-host", help="a name set in mcp.allowed_hosts (must pass the Host check)")
    p.add_argument("--bench", type=int, default=0, help="time N calls instead of testing")
    p.add_argument("--pending", default="",
                   help="NAME=CODE,NAME=CODE: two pending machines (one is approved, one rejected)")
    args = p.parse_args()
    token = open(args.token_file).read().strip()
    if args.bench:
        anyio.run(bench, args, token, args.bench)
        return
    read_token = open(args.read_token_file).read().strip()
    t0 = time.monotonic()
    guard_checks(args.url, token, args.allowed_host)
    pending = dict(p.split("=", 1) for p in args.pending.split(",") if p)
    anyio.run(over_http, args.url, token, read_token, pending)
    t1 = time.monotonic()
    anyio.run(over_stdio, args, min(pending) if pending else None)
    t2 = time.monotonic()
    print(f"mcp client: http {t1 - t0:.1f}s, stdio {t2 - t1:.1f}s, {len(CALLED)} tools called "
          f"({len(pending)} pending machines); all checks passed")


def failures(e):
    """The assertions inside (nested) exception groups, which anyio's task groups raise."""
    if isinstance(e, AssertionError):
        return [e]
    if isinstance(e, BaseExceptionGroup):
        return [f for x in e.exceptions for f in failures(x)]
    return []


if __name__ == "__main__":
    try:
        main()
    except BaseException as e:
        found = failures(e)
        if not found:
            raise
        for f in found:
            print(f"MCP CHECK FAILED: {f}", file=sys.stderr)
        sys.exit(1)
