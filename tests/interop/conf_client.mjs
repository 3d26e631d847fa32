// The client the conformance suite's client scenarios drive (`conformance client --command`):
// the official TypeScript SDK v2, reaching the scenario's test server either directly over
// Streamable HTTP (`direct`) or over stdio through `mcp-audit-proxy stdio` with the server as
// its `url` upstream (`proxy`; the binary and a store folder from MCP_AUDIT_PROXY and
// MCP_AUDIT_STORE). It lists the tools, calls each (the scenario's own calls when it names
// them), then reads the first resource and prompt. Usage: node conf_client.mjs direct|proxy URL
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { StdioClientTransport } from "@modelcontextprotocol/client/stdio";
import { writeFileSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [how, url] = process.argv.slice(2);
const version = process.env.MCP_CONFORMANCE_PROTOCOL_VERSION;
const context = JSON.parse(process.env.MCP_CONFORMANCE_CONTEXT ?? "{}");
const mode = version === "2026-07-28" ? { pin: version } : "legacy";
const client = new Client(
  { name: "conformance-ts", version: "0.1.0" },
  { capabilities: { elicitation: { form: {} }, sampling: {}, roots: {} }, versionNegotiation: { mode } },
);
client.setRequestHandler("elicitation/create", async () => ({ action: "accept", content: { name: "x" } }));
client.setRequestHandler("sampling/createMessage", async () => ({
  role: "assistant", content: { type: "text", text: "ok" }, model: "m", stopReason: "endTurn",
}));
client.setRequestHandler("roots/list", async () => ({ roots: [] }));
let transport;
if (how === "proxy") {
  const dir = mkdtempSync(join(tmpdir(), "conformance-client-"));
  writeFileSync(
    join(dir, "proxy.toml"),
    `[[upstream]]\nname = "conformance"\nurl = ${JSON.stringify(url)}\n\n[audit]\nstore_dir = ${JSON.stringify(process.env.MCP_AUDIT_STORE)}\n`,
  );
  transport = new StdioClientTransport({
    command: process.env.MCP_AUDIT_PROXY,
    args: ["stdio", "--config", join(dir, "proxy.toml"), "--upstream", "conformance"],
    stderr: "inherit",
    env: { ...process.env, RUST_LOG: "warn" },
  });
} else {
  transport = new StreamableHTTPClientTransport(new URL(url));
}
const log = (...a) => console.error("[conf_client]", ...a);
try {
  await client.connect(transport);
  const tools = (await client.listTools()).tools;
  const planned = context.toolCalls ?? tools.map((t) => ({
    name: t.name, arguments: t.name === "add_numbers" ? { a: 2, b: 3 } : {},
  }));
  for (const c of planned) {
    try {
      await client.callTool(c, { timeout: 15000 });
    } catch (e) {
      log("call failed", c.name, String(e.message).slice(0, 200));
    }
  }
  for (const [list, get] of [["listResources", "readResource"], ["listPrompts", "getPrompt"]]) {
    try {
      const r = await client[list]();
      const first = (r.resources ?? r.prompts ?? [])[0];
      if (first) await client[get](first.uri ? { uri: first.uri } : { name: first.name, arguments: {} });
    } catch (e) {
      log(list, "failed", String(e.message).slice(0, 150));
    }
  }
} catch (e) {
  log("failed", String(e.stack).slice(0, 400));
}
await client.close().catch(() => {});
