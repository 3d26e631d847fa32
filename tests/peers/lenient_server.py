#!/usr/bin/env python3
"""A deliberately lenient MCP server, the kind the proxy must not let a call slip past.

It reads stdin the way careless servers do: invalid UTF-8 replaced with U+FFFD, lines split on
a bare carriage return too (universal newlines), several JSON values per line, no check of
`jsonrpc`, the last copy of a repeated key. It runs every `tools/call` it can read, with or
without an id, and appends what it ran to the log file named by its first argument (one JSON
object per line: id, whether an id was present, tool name, arguments; or, for a
`notifications/cancelled`, the `requestId` it read as `{"cancelled": id}`). Requests with a string
or integer id get a result that echoes the id exactly (Python keeps big integers whole).

Modes (second argument): "bad-utf8" answers every tools/call with invalid UTF-8 in its result;
"no-jsonrpc" answers it without the `jsonrpc` member; "fold" reads member names the way Go's
encoding/json fills struct fields: case-insensitively with Unicode folding (`Method`,
`paramſ`, `Path`), the last match winning, at the top level, in params and in arguments, and
method names loosely (`Tools/Call`, `"tools/call "`);
"float-ids" writes integer ids beyond 2^53 back as JavaScript would (as the nearest double);
"slow-other" answers requests other than initialize, tools/list and tools/call after 1 s.
"string-ids" writes integer ids back as strings (`"20"` for 20: python-sdk#961), and runs a
tools/call of `slow` for its `ms` argument before answering.
"asks-ping" answers a tools/call only once its own `ping` request, sent first, is answered
(logged as `{"ping_answer": ...}`), saying whether that answer was a result or an error.
"json-log" prints, before each tools/call's answer, a structured log line naming the call's id
(`{"level":"info","id":ID,...}`, no `jsonrpc`, `result` or `error`), and a
`notifications/message` carrying `"id": null` (JSON-RPC 1.0's notification).
"asks-elicit" is "asks-ping" with an `elicitation/create` (ids `"elicit-<id>"`, or the call's
`ask_id` argument; the message its `ask_message`), sent after the call's `ask_after_ms`
argument: a person answers.
"i64-ids" reads ids as rmcp servers do (64-bit integers or strings): a request under any
other number id (a tools/call is not run) is answered with an error that has no `id` member
at all, at once, or, when its arguments (a request's params) say `"defer": true`, only when
a tools/call of `flush` comes.
"many-pings" answers a tools/call at once, then sends the number of `ping` requests its
`pings` argument says (ids `"many-<k>"`), and logs each answer it gets as `{"ping_answer": ...}`.
"""
import json
import sys
import time

LOG = sys.argv[1]
MODE = sys.argv[2] if len(sys.argv) > 2 else "ok"
DECODER = json.JSONDecoder()
TOOLS = [
    {"name": "echo", "inputSchema": {"type": "object"}},
    {"name": "delete_file", "inputSchema": {"type": "object"}},
]


def values(text):
    at = 0
    while True:
        while at < len(text) and text[at] in " \t\r\n":
            at += 1
        if at >= len(text):
            return
        try:
            value, at = DECODER.raw_decode(text, at)
        except ValueError:
            return
        yield value


KNOWN = {"jsonrpc", "id", "method", "params", "name", "arguments"}


def fold(value, known=None):
    """Go-like: member names matched case-insensitively to the fields a struct has."""
    if not isinstance(value, dict):
        return value
    out = {}
    for key, item in value.items():
        folded = key.casefold()
        if known is None:
            out[folded] = item
        else:
            match = next((k for k in known if k.casefold() == folded), key)
            out[match] = item
    return out


def write(line):
    sys.stdout.buffer.write(line + b"\n")
    sys.stdout.buffer.flush()


ASKED = {}
DEFERRED = []
IDLESS = b'{"jsonrpc":"2.0","error":{"code":-32600,"message":"Invalid request"}}'


def handle(msg):
    if not isinstance(msg, dict):
        return
    if "method" not in msg and str(msg.get("id")).startswith("many-"):
        with open(LOG, "a", encoding="utf-8") as log:
            log.write(json.dumps({"ping_answer": msg}) + "\n")
        return
    # Matched as the Python SDK matches them since python-sdk#961: "5" answers 5.
    if "method" not in msg and str(msg.get("id")) in ASKED:
        with open(LOG, "a", encoding="utf-8") as log:
            log.write(json.dumps({"ping_answer": msg}) + "\n")
        kind = "error" if "error" in msg else "result"
        write(json.dumps({"jsonrpc": "2.0", "id": ASKED.pop(str(msg["id"])),
                          "result": {"content": [{"type": "text",
                                                  "text": "ping answered with " + kind}]}}).encode())
        return
    if MODE == "fold":
        msg = fold(msg, KNOWN)
        if isinstance(msg.get("params"), dict):
            msg["params"] = fold(msg["params"], KNOWN)
            msg["params"]["arguments"] = fold(msg["params"].get("arguments"))
    method = msg.get("method")
    if MODE == "fold" and isinstance(method, str):
        # Method names matched loosely too: case folded, spaces and control characters around
        # them dropped.
        method = method.strip().strip("".join(map(chr, range(32)))).strip().casefold()
    has_id = "id" in msg
    rid = msg.get("id")
    answerable = has_id and isinstance(rid, (int, str)) and not isinstance(rid, bool)
    if MODE == "float-ids" and isinstance(rid, int) and abs(rid) > 2**53:
        rid = float(rid)
    if MODE == "string-ids" and isinstance(rid, int) and not isinstance(rid, bool):
        rid = str(rid)
    if MODE == "i64-ids" and has_id and isinstance(method, str) and not (
            isinstance(rid, str) or (isinstance(rid, int) and -2**63 <= rid < 2**63)):
        params = msg.get("params") if isinstance(msg.get("params"), dict) else {}
        if (params.get("arguments") or params).get("defer"):
            DEFERRED.append(IDLESS)
        else:
            write(IDLESS)
        return
    if method == "tools/call":
        params = msg.get("params") if isinstance(msg.get("params"), dict) else {}
        if MODE == "i64-ids" and params.get("name") == "flush":
            for line in DEFERRED:
                write(line)
            DEFERRED.clear()
        with open(LOG, "a", encoding="utf-8") as log:
            log.write(json.dumps({"id": rid, "has_id": has_id, "name": params.get("name"),
                                  "arguments": params.get("arguments")}) + "\n")
        if not answerable:
            return
        text = "ran " + str(params.get("name"))
        args = params.get("arguments") if isinstance(params.get("arguments"), dict) else {}
        if MODE == "string-ids" and params.get("name") == "slow":
            time.sleep(args.get("ms", 0) / 1000)
        if MODE == "asks-ping":
            ASKED["srv-" + str(rid)] = rid
            write(json.dumps({"jsonrpc": "2.0", "id": "srv-" + str(rid), "method": "ping"}).encode())
            return
        if MODE == "asks-elicit":
            time.sleep(args.get("ask_after_ms", 0) / 1000)
            qid = args.get("ask_id", "elicit-" + str(rid))
            ASKED[str(qid)] = rid
            write(json.dumps({"jsonrpc": "2.0", "id": qid,
                              "method": "elicitation/create",
                              "params": {"message": args.get("ask_message", "Your name?"),
                                         "requestedSchema": {"type": "object", "properties": {
                                             "name": {"type": "string"}}}}}).encode())
            return
        if MODE == "bad-utf8":
            write(b'{"jsonrpc":"2.0","id":' + json.dumps(rid).encode()
                  + b',"result":{"content":[{"type":"text","text":"bad \xff\xfe"}]}}')
            return
        if MODE == "json-log":
            write(json.dumps({"level": "info", "id": rid, "msg": "handling tools/call"}).encode())
            write(b'{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"from a 1.0 habit"},"id":null}')
        reply = {"jsonrpc": "2.0", "id": rid,
                 "result": {"content": [{"type": "text", "text": text}]}}
        if MODE == "no-jsonrpc":
            del reply["jsonrpc"]
        write(json.dumps(reply).encode())
        if MODE == "many-pings":
            time.sleep(0.3)
            for k in range(int(args.get("pings", 0))):
                write(json.dumps({"jsonrpc": "2.0", "id": "many-%d" % k, "method": "ping"}).encode())
        return
    if method == "notifications/cancelled":
        params = msg.get("params") if isinstance(msg.get("params"), dict) else {}
        with open(LOG, "a", encoding="utf-8") as log:
            log.write(json.dumps({"cancelled": params.get("requestId")}) + "\n")
        return
    if method is None or not answerable:
        return
    if MODE == "slow-other" and method not in ("initialize", "tools/list"):
        time.sleep(1)
    if method == "initialize":
        result = {"protocolVersion": "2025-06-18", "capabilities": {"tools": {}},
                  "serverInfo": {"name": "lenient", "version": "1"}}
    elif method == "tools/list":
        result = {"tools": TOOLS}
    else:
        result = {}
    write(json.dumps({"jsonrpc": "2.0", "id": rid, "result": result}).encode())


for raw in sys.stdin.buffer:
    for piece in raw.decode("utf-8", errors="replace").splitlines():
        for value in values(piece):
            for message in value if isinstance(value, list) else [value]:
                handle(message)
