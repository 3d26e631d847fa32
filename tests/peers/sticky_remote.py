#!/usr/bin/env python3
"""A Streamable HTTP MCP server behind a cookie-sticky load balancer, as far as a client can
tell: the answer to `initialize` sets an affinity cookie (`Set-Cookie: affinity=srv1; Path=/`)
beside its `Mcp-Session-Id`, and any later request without that cookie "lands on another
server", which answers 404 for the session (mcp-remote#168). Prints `listening on URL`, then
logs each request's method and `Cookie` field to the file named by its first argument.
GET is 405 (no stream); DELETE 200; notifications 202; `tools/call` echoes its arguments.
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOG = sys.argv[1]
SESSION = "s-1"


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def log(self, what):
        with open(LOG, "a") as f:
            f.write(json.dumps({"what": what, "cookie": self.headers.get("Cookie")}) + "\n")

    def reply(self, status, body=None, headers=()):
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def sticky(self):
        return "affinity=srv1" in (self.headers.get("Cookie") or "")

    def do_GET(self):
        self.log("GET")
        self.reply(405)

    def do_DELETE(self):
        self.log("DELETE")
        self.reply(200 if self.sticky() else 404)

    def do_POST(self):
        msg = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.log(msg.get("method"))
        if msg.get("method") == "initialize":
            result = {"protocolVersion": "2025-06-18", "capabilities": {"tools": {}},
                      "serverInfo": {"name": "sticky", "version": "1"}}
            return self.reply(200, {"jsonrpc": "2.0", "id": msg["id"], "result": result},
                              [("Mcp-Session-Id", SESSION),
                               ("Set-Cookie", "affinity=srv1; Path=/; HttpOnly")])
        if not self.sticky():
            return self.reply(404, {"jsonrpc": "2.0", "id": None,
                                    "error": {"code": -32001, "message": "Session not found"}})
        if "id" not in msg:
            return self.reply(202)
        if msg.get("method") == "tools/call":
            text = json.dumps(msg["params"].get("arguments"), separators=(",", ":"))
            result = {"content": [{"type": "text", "text": text}]}
        else:
            result = {}
        self.reply(200, {"jsonrpc": "2.0", "id": msg["id"], "result": result})


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print("listening on http://127.0.0.1:%d/mcp" % server.server_address[1], flush=True)
server.serve_forever()
