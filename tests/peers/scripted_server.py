#!/usr/bin/env python3
"""A scripted MCP server for the differential test.

Logs every line it receives, byte for byte, to the file named by its first argument (the test
parses that log as a strict server would). Answers each `tools/call` that has a string or
number id with the next line of the file named by its second argument (cycling), in which
`"__ID__"` stands for the request's id written exactly as it was received. Any other request
gets an empty result, echoing its id the same way. Lines it cannot read are ignored, as a
strict server would (it never answers them).
"""
import json
import sys

LOG = open(sys.argv[1], "ab")
SCRIPT = [line.rstrip(b"\n") for line in open(sys.argv[2], "rb") if line.strip()]
turn = 0


class Number(str):
    """A number kept as the text it was written in."""


def keep(text):
    return Number(text)


def id_text(rid):
    if isinstance(rid, Number):
        return rid.encode()
    if isinstance(rid, str):
        return json.dumps(rid).encode()
    return None


def write(line):
    sys.stdout.buffer.write(line + b"\n")
    sys.stdout.buffer.flush()


def handle(msg):
    global turn
    if not isinstance(msg, dict) or "id" not in msg or not isinstance(msg.get("method"), str):
        return
    rid = id_text(msg["id"])
    if rid is None:
        return
    if msg["method"] == "tools/call" and SCRIPT:
        reply = SCRIPT[turn % len(SCRIPT)]
        turn += 1
        write(reply.replace(b'"__ID__"', rid))
    else:
        write(b'{"jsonrpc":"2.0","id":' + rid + b',"result":{}}')


for raw in sys.stdin.buffer:
    LOG.write(raw if raw.endswith(b"\n") else raw + b"\n")
    LOG.flush()
    try:
        value = json.loads(raw.decode("utf-8"), parse_int=keep, parse_float=keep)
    except ValueError:
        continue
    for message in value if isinstance(value, list) else [value]:
        handle(message)
