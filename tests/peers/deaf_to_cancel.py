#!/usr/bin/env python3
"""An MCP server that ignores `notifications/cancelled`: it answers every `tools/call` after
the number of milliseconds in its `ms` argument (default 1000), cancelled or not, as servers
whose tools cannot be interrupted do; `times` answers (default 1), as a faulty server would,
written as one JSON-RPC batch (an array, JSON-RPC 2.0 section 6) when `batch` is true,
after an error naming no id (`"id": null`, as for a line it could not read) when `noise` is.
Answers `initialize` (echoing the client's protocol version) and any other request with an
empty result."""
import json
import sys
import threading
import time

lock = threading.Lock()


def write(msg):
    with lock:
        sys.stdout.write(json.dumps(msg) + "\n")
        sys.stdout.flush()


def answer_later(rid, ms, times, batch, noise):
    time.sleep(ms / 1000)
    if noise:
        write({"jsonrpc": "2.0", "id": None,
               "error": {"code": -32700, "message": "Parse error"}})
    answer = {"jsonrpc": "2.0", "id": rid,
              "result": {"content": [{"type": "text", "text": "done anyway"}]}}
    if batch:
        write([answer] * times)
        return
    for _ in range(times):
        write(answer)


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
            "protocolVersion": version, "capabilities": {"tools": {}},
            "serverInfo": {"name": "deaf-to-cancel", "version": "1"}}})
    elif method == "tools/call":
        arguments = msg.get("params", {}).get("arguments", {})
        ms, times = arguments.get("ms", 1000), arguments.get("times", 1)
        batch, noise = arguments.get("batch", False), arguments.get("noise", False)
        threading.Thread(target=answer_later, args=(rid, ms, times, batch, noise),
                         daemon=True).start()
    else:
        write({"jsonrpc": "2.0", "id": rid, "result": {}})
