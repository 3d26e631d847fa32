#!/usr/bin/env python3
"""Interop probe: drive an MCP stdio server with the official Python SDK (PyPI mcp==2.3.0)
(used by tests/interop.rs; set up with tests/interop/setup.sh)
and print a canonical JSON document of what it saw, so two runs can be diffed:

    compare.py --era 2025 -- npx @modelcontextprotocol/server-everything stdio      > direct.json
    compare.py --era 2025 -- mcp-audit-proxy stdio --config X -- npx ... stdio     > proxied.json
    diff -u direct.json proxied.json

A single target that is a URL (http:// or https://) is reached with the SDK's Streamable HTTP
client (mcp.client.streamable_http) instead, sending `Authorization: Bearer $MCP_INTEROP_BEARER`
when that variable is set (the gateway's API key; kept off the command line):

    MCP_INTEROP_BEARER=key compare.py --era 2025 -- http://127.0.0.1:8080/mcp/everything

--era 2025  initialize handshake (Client mode="legacy"); --protocol-version picks the offered
            handshake version (default 2025-11-25; also 2025-06-18, 2025-03-26, 2024-11-05).
--era 2026  no handshake; per-request _meta envelope at 2026-07-28 (Client mode="2026-07-28").
--era auto  SDK default: server/discover probe, fall back to initialize.

Steps: (initialize|adopt), tools/list, a fixed plan of tools/call (only tools that exist),
progress collection, sampling + elicitation via client callbacks, error cases, and (if the
server has them) prompts/list, prompts/get, resources/list, resources/templates/list,
resources/read. Volatile values (timestamps, UUIDs, times of day, request state) are
replaced by placeholders. Exit code 0 on success, 2 if the session could not be set up.
Timing goes to stderr only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import time
from collections import Counter
from typing import Any

import anyio
import mcp_types as types
from pydantic import BaseModel

import mcp.client.session as _session_mod
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

HANDSHAKE_VERSIONS = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")

# ---------------------------------------------------------------- canonicalisation
VOLATILE_KEYS = {
    "timestamp", "requestId", "progressToken", "requestState", "sessionId",
    "elicitationId", "taskId", "createdAt", "lastUpdatedAt",
}
_SCRUBS = [
    (re.compile(r"\b\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?\b"), "<iso-time>"),
    (re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"), "<uuid>"),
    (re.compile(r"\b\d{1,2}:\d{2}:\d{2}(?:\s?[AP]M)?\b"), "<time-of-day>"),
]


def scrub(v: Any) -> Any:
    if isinstance(v, BaseModel):
        v = v.model_dump(by_alias=True, mode="json", exclude_none=True)
    if isinstance(v, dict):
        return {k: ("<volatile>" if k in VOLATILE_KEYS else scrub(x)) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [scrub(x) for x in v]
    if isinstance(v, str):
        for rx, rep in _SCRUBS:
            v = rx.sub(rep, v)
        return v
    return v


# ---------------------------------------------------------------- client-side callbacks
SERVER_REQUESTS: list[dict[str, Any]] = []


async def sampling_cb(ctx: Any, params: types.CreateMessageRequestParams):
    SERVER_REQUESTS.append({"method": "sampling/createMessage", "params": scrub(params)})
    first = params.messages[0].content if params.messages else None
    prompt = getattr(first, "text", "")
    return types.CreateMessageResult(
        role="assistant",
        content=types.TextContent(type="text", text=f"stub-llm reply to: {prompt}"),
        model="interop-stub-model",
        stop_reason="endTurn",
    )


ELICIT_VALUES = {"name": "Interop Tester", "check": True, "email": "tester@example.org", "integer": 7, "confirmed": True}


async def elicitation_cb(ctx: Any, params: types.ElicitRequestParams):
    SERVER_REQUESTS.append({"method": "elicitation/create", "params": scrub(params)})
    schema = getattr(params, "requested_schema", None) or {}
    props = schema.get("properties", {}) if isinstance(schema, dict) else {}
    content = {k: v for k, v in ELICIT_VALUES.items() if k in props}
    return types.ElicitResult(action="accept", content=content)


NOTIFICATIONS: Counter[str] = Counter()


async def message_handler(msg: Any) -> None:
    if isinstance(msg, Exception):
        NOTIFICATIONS[f"exception:{type(msg).__name__}"] += 1
        return
    method = getattr(getattr(msg, "root", msg), "method", None)
    NOTIFICATIONS[str(method or type(msg).__name__)] += 1


# ---------------------------------------------------------------- the plan
# (label, tool name, arguments, wants_progress). Only tools the server lists are called,
# except labels starting with "err-" which are always attempted.
PLAN: list[tuple[str, str, dict[str, Any], bool]] = [
    ("echo", "echo", {"message": "hello interop ✓ \"quotes\" \\ backslash"}, False),
    ("get-sum", "get-sum", {"a": 2, "b": 3.5}, False),
    ("add", "add", {"a": 2, "b": 3}, False),
    ("get-structured-content", "get-structured-content", {"location": "Chicago"}, False),
    ("get-annotated-message", "get-annotated-message", {"messageType": "success", "includeImage": True}, False),
    ("get-tiny-image", "get-tiny-image", {}, False),
    ("get-resource-reference", "get-resource-reference", {"resourceType": "Text", "resourceId": 3}, False),
    ("get-resource-links", "get-resource-links", {"count": 3}, False),
    ("progress", "trigger-long-running-operation", {"duration": 1, "steps": 4}, True),
    ("sampling", "trigger-sampling-request", {"prompt": "say hi", "maxTokens": 20}, False),
    ("elicitation", "trigger-elicitation-request", {}, False),
    # The example server of this repository (rmcp): its tools take other arguments.
    ("echo-text", "echo", {"text": "hello interop ✓"}, False),
    # Results past 1 MiB: the SDK's HTTP client caps one SSE event at 1 MiB
    # (DEFAULT_MAX_SSE_EVENT_SIZE), so the gateway must send these as plain JSON (helper-95 F3).
    # Kept in the report as a size and digest.
    ("echo-large", "echo", {"message": "large ✓ " + "x" * (1536 * 1024)}, False),
    ("echo-text-large", "echo", {"text": "large ✓ " + "x" * (1536 * 1024)}, False),
    ("example-slow", "slow", {"ms": 200, "steps": 4}, True),
    ("example-confirm", "confirm", {"action": "ship it"}, False),
    ("example-fail", "fail", {}, False),
    ("err-bad-args", "get-sum", {"a": "not-a-number"}, False),
    ("err-unknown-tool", "no-such-tool-xyz", {}, False),
]


async def call(client: Client, name: str, args: dict[str, Any], progress: bool) -> dict[str, Any]:
    events: list[dict[str, Any]] = []

    async def on_progress(p: float, total: float | None, message: str | None) -> None:
        events.append({"progress": p, "total": total, "message": message})

    large = len(json.dumps(args)) > 65536
    out: dict[str, Any] = {"tool": name, "arguments": {"bytes": len(json.dumps(args))} if large else args}
    try:
        res = await client.call_tool(name, args, progress_callback=on_progress if progress else None)
        out["result"] = scrub(res)
        if large:
            text = json.dumps(out["result"], sort_keys=True)
            out["result"] = {"bytes": len(text), "sha256": hashlib.sha256(text.encode()).hexdigest()}
    except MCPError as e:
        out["error"] = {"code": e.error.code, "message": scrub(e.error.message)}
    if progress:
        out["progress"] = events
    return out


async def run(ns: argparse.Namespace, cmd: list[str]) -> dict[str, Any]:
    if ns.era == "2025":
        mode = "legacy"
        # The SDK always offers LATEST_HANDSHAKE_VERSION; override it to offer an older revision.
        _session_mod.LATEST_HANDSHAKE_VERSION = ns.protocol_version or "2025-11-25"
    elif ns.era == "2026":
        mode = "2026-07-28"
    else:
        mode = "auto"

    if len(cmd) == 1 and cmd[0].startswith(("http://", "https://")):
        bearer = os.environ.get("MCP_INTEROP_BEARER")
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else None
        server: Any = streamable_http_client(cmd[0], http_client=create_mcp_http_client(headers=headers))
    else:
        server = StdioServerParameters(command=cmd[0], args=cmd[1:], env=dict(os.environ))
    doc: dict[str, Any] = {"era": ns.era, "mode": mode}
    async with Client(
        server,
        mode=mode,
        sampling_callback=sampling_cb,
        elicitation_callback=elicitation_cb,
        message_handler=message_handler,
        client_info=types.Implementation(name="interop-compare", version="0.1.0"),
        read_timeout_seconds=ns.timeout,
        cache=None,
    ) as client:
        s = client.session
        doc["protocol_version"] = client.protocol_version
        doc["server_info"] = scrub(client.server_info)
        caps = client.server_capabilities
        doc["server_capabilities"] = scrub(caps)
        instr = client.instructions
        doc["instructions_len"] = len(instr) if instr else 0

        tools: list[types.Tool] = []
        cursor = None
        while True:
            page = await client.list_tools(cursor=cursor)
            tools += page.tools
            cursor = page.next_cursor
            if not cursor:
                break
        names = {t.name for t in tools}
        doc["tools"] = sorted((scrub(t) for t in tools), key=lambda t: t["name"])
        doc["tool_names"] = sorted(names)

        calls: dict[str, Any] = {}
        for label, name, args, prog in PLAN:
            # Over HTTP in 2026-07-28 a large answer goes out as JSON only when it comes within
            # 250 ms (the gateway's README): on a loaded machine it may not, so the large calls
            # are made in the 2025 era only, where the gateway waits up to 3 s.
            if label.endswith("-large") and ns.era != "2025":
                continue
            if label.startswith("err-") or name in names:
                calls[label] = await call(client, name, args, prog)
        doc["calls"] = calls

        if caps.prompts is not None:
            pr = await client.list_prompts()
            doc["prompts"] = sorted((scrub(p) for p in pr.prompts), key=lambda p: p["name"])
            if any(p.name == "simple-prompt" for p in pr.prompts):
                doc["prompt_get"] = scrub(await client.get_prompt("simple-prompt"))
        if caps.resources is not None:
            rl = await client.list_resources()
            doc["resources_first_page"] = [scrub(r) for r in rl.resources]
            doc["resources_has_next"] = rl.next_cursor is not None
            tl = await client.list_resource_templates()
            doc["resource_templates"] = [scrub(t) for t in tl.resource_templates]
            static = [r for r in rl.resources if "static" in str(r.uri)]
            if static:
                rr = await client.read_resource(str(static[0].uri))
                doc["resource_read"] = {"uri": str(static[0].uri), "result": scrub(rr)}
    doc["server_requests"] = SERVER_REQUESTS
    # list_changed etc. are kept as counts; logging/progress excluded (progress is per call above).
    doc["notifications"] = dict(sorted((k, v) for k, v in NOTIFICATIONS.items()
                                       if k not in ("notifications/progress", "notifications/message")))
    return doc


def main() -> int:
    argv = sys.argv[1:]
    if "--" not in argv:
        print("usage: compare.py [--era 2025|2026|auto] [--protocol-version V] -- server-cmd args... | URL", file=sys.stderr)
        return 64
    i = argv.index("--")
    ap = argparse.ArgumentParser()
    ap.add_argument("--era", choices=["2025", "2026", "auto"], default="2025")
    ap.add_argument("--protocol-version", choices=HANDSHAKE_VERSIONS, help="handshake version to offer (--era 2025)")
    ap.add_argument("--timeout", type=float, default=30.0, help="per-request read timeout, seconds")
    ns = ap.parse_args(argv[:i])
    cmd = argv[i + 1:]
    if not cmd:
        ap.error("missing server command after --")
    t0 = time.monotonic()
    try:
        doc = anyio.run(run, ns, cmd)
    except Exception as e:  # noqa: BLE001
        leaves = [e]
        while any(isinstance(x, BaseExceptionGroup) for x in leaves):
            leaves = [y for x in leaves for y in (x.exceptions if isinstance(x, BaseExceptionGroup) else [x])]
        for x in leaves:
            print(f"compare.py: session failed: {type(x).__name__}: {x}", file=sys.stderr)
        return 2
    print(json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False))
    print(f"compare.py: done in {time.monotonic() - t0:.2f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
