#!/usr/bin/env python3
"""The MCP part of tests/refusals.rs, with the official Python SDK (`mcp` on PyPI).

Lists the tools with an admin token, takes every tool whose annotations do not say
readOnlyHint=true (the write tools, whatever their number), and calls each one
  - with no token: a raw JSON-RPC `tools/call` POST to /mcp (expected: HTTP 401), and
  - with a read token through an SDK session (expected: an isError result naming the scope).
Arguments are the schema's required properties, filled with the pending node / running task the
test made, so a call that got through would really change something.

Prints one JSON document: {"write_tools": [...], "no_token": {tool: status},
"read_token": {tool: {"is_error": bool, "text": str}}}.
"""

import argparse
import json

import anyio
import httpx2
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client


def session(url, token):
    client = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30)
    return client, streamable_http_client(url, http_client=client)


def attr(obj, *names):
    """The SDK renamed camelCase fields to snake_case between versions: take either."""
    for n in names:
        if hasattr(obj, n):
            return getattr(obj, n)
    return None


def read_only(tool):
    ann = tool.annotations
    return ann is not None and attr(ann, "read_only_hint", "readOnlyHint") is True


def fill(schema, node, task):
    props = schema.get("properties", {})
    args = {}
    for name in schema.get("required", []):
        p = props.get(name, {})
        kind = p.get("type")
        if "node" in name:
            args[name] = str(node)
        elif "task" in name:
            args[name] = task
        elif kind == "array":
            args[name] = ["true"]
        elif kind == "integer" or kind == "number":
            args[name] = 1
        elif kind == "boolean":
            args[name] = True
        elif kind == "object":
            args[name] = {}
        else:
            args[name] = "x"
    return args


async def main(a):
    admin = open(a.token_file).read().strip()
    read = open(a.read_token_file).read().strip()
    client, transport = session(a.url, admin)
    async with client, transport as (r, w), ClientSession(r, w) as s:
        await s.initialize()
        tools = (await s.list_tools()).tools
    writes = [t for t in tools if not read_only(t)]
    out = {"write_tools": [t.name for t in writes], "no_token": {}, "read_token": {}}
    for i, t in enumerate(writes):
        body = {"jsonrpc": "2.0", "id": i + 1, "method": "tools/call",
                "params": {"name": t.name, "arguments": fill(attr(t, "input_schema", "inputSchema"), a.node, a.task)}}
        # A fresh connection per call: the server answers 401 without reading the body and
        # may close the connection, which a pooled client would then reuse.
        async with httpx2.AsyncClient(timeout=30) as raw:
            resp = await raw.post(a.url, json=body, headers={
                "Accept": "application/json, text/event-stream"})
        out["no_token"][t.name] = resp.status_code
    client, transport = session(a.url, read)
    async with client, transport as (r, w), ClientSession(r, w) as s:
        await s.initialize()
        for t in writes:
            res = await s.call_tool(t.name, fill(attr(t, "input_schema", "inputSchema"), a.node, a.task))
            text = " ".join(c.text for c in res.content if getattr(c, "text", None))
            out["read_token"][t.name] = {"is_error": bool(res.is_error), "text": text}
    print(json.dumps(out))


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--token-file", required=True)
    p.add_argument("--read-token-file", required=True)
    p.add_argument("--node", required=True)
    p.add_argument("--task", required=True)
    anyio.run(main, p.parse_args())
