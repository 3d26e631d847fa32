#!/usr/bin/env python3
"""An MCP server whose `flood` tool sends `count` log notifications (`notifications/message`)
of `size` bytes each before its result, to see what a proxy holds for a client that does not
read. Answers `initialize` (echoing the client's protocol version) and other requests with an
empty result."""
import json
import sys


def write(msg):
    sys.stdout.write(json.dumps(msg) + "\n")
    sys.stdout.flush()


for line in sys.stdin:
    try:
        msg = json.loads(line)
    except ValueError:
        continue
    if "id" not in msg or "method" not in msg:
        continue
    method, rid = msg["method"], msg["id"]
    if method == "initialize":
        version = msg.get("params", {}).get("protocolVersion", "2025-06-18")
        write({"jsonrpc": "2.0", "id": rid, "result": {
            "protocolVersion": version, "capabilities": {"tools": {}, "logging": {}},
            "serverInfo": {"name": "flood", "version": "1"}}})
    elif method == "tools/call":
        args = msg.get("params", {}).get("arguments", {})
        data = "a" * int(args.get("size", 1000))
        note = json.dumps({"jsonrpc": "2.0", "method": "notifications/message",
                           "params": {"level": "info", "data": data}}) + "\n"
        for _ in range(int(args.get("count", 10))):
            sys.stdout.write(note)
        write({"jsonrpc": "2.0", "id": rid,
               "result": {"content": [{"type": "text", "text": "flooded"}]}})
    else:
        write({"jsonrpc": "2.0", "id": rid, "result": {}})
