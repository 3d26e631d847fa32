#!/usr/bin/env python3
"""An MCP 2026-07-28 server with subscriptions (MCP "Subscriptions"): a
`subscriptions/listen` is acknowledged at once (`notifications/subscriptions/acknowledged`
carrying the listen's id in `_meta["io.modelcontextprotocol/subscriptionId"]`) and kept open;
a `tools/call` of `change` (argument `uri`) first sends each open listen subscribed to the
uri a `notifications/resources/updated` tagged the same way, while the call is still in
flight, then answers the call, then ends each open listen with its final result (its `_meta`
tagged too). `notifications/cancelled` naming a listen forgets it. Any other request gets an
empty result."""
import json
import sys

SUB = "io.modelcontextprotocol/subscriptionId"
listens = {}  # the listen's id, as the server got it (JSON value) -> its subscribed uris


def write(msg):
    sys.stdout.write(json.dumps(msg) + "\n")
    sys.stdout.flush()


for line in sys.stdin:
    try:
        msg = json.loads(line)
    except ValueError:
        continue
    method, params = msg.get("method"), msg.get("params") or {}
    if "id" not in msg:
        if method == "notifications/cancelled":
            listens.pop(json.dumps(params.get("requestId")), None)
        continue
    rid = msg["id"]
    if method == "subscriptions/listen":
        wanted = params.get("notifications", {})
        listens[json.dumps(rid)] = (rid, wanted.get("resourceSubscriptions", []))
        write({"jsonrpc": "2.0", "method": "notifications/subscriptions/acknowledged",
               "params": {"_meta": {SUB: rid},
                          "notifications": {"resourceSubscriptions": wanted.get("resourceSubscriptions", [])}}})
    elif method == "tools/call" and params.get("name") == "change":
        uri = params.get("arguments", {}).get("uri")
        for sub, uris in listens.values():
            if uri in uris:
                write({"jsonrpc": "2.0", "method": "notifications/resources/updated",
                       "params": {"_meta": {SUB: sub}, "uri": uri}})
        write({"jsonrpc": "2.0", "id": rid,
               "result": {"content": [{"type": "text", "text": "changed " + str(uri)}]}})
        for sub, _ in listens.values():
            write({"jsonrpc": "2.0", "id": sub,
                   "result": {"resultType": "complete", "_meta": {SUB: sub}}})
        listens.clear()
    else:
        write({"jsonrpc": "2.0", "id": rid, "result": {}})
