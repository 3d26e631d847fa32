// Interop probe with the official TypeScript SDK v2 (@modelcontextprotocol/client), used by
// tests/interop.rs: node ts_client.mjs <legacy|auto|2026-07-28> -- server-cmd args...
// Prints a canonical JSON document of what the client saw, so direct and proxied runs diff.
// A single target that is a URL is reached with the SDK's StreamableHTTPClientTransport
// instead, with `Authorization: Bearer $MCP_INTEROP_BEARER` when that variable is set.
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { StdioClientTransport } from "@modelcontextprotocol/client/stdio";

const argv = process.argv.slice(2);
const sep = argv.indexOf("--");
const modeArg = argv[0];
const [cmd, ...args] = argv.slice(sep + 1);
const mode = modeArg === "legacy" || modeArg === "auto" ? modeArg : { pin: modeArg };

const client = new Client(
  { name: "interop-ts", version: "0.1.0" },
  { capabilities: { elicitation: {} }, versionNegotiation: { mode } },
);
const asked = [];
client.setRequestHandler("elicitation/create", async (request) => {
  asked.push(request.params.message);
  return { action: "accept", content: { confirmed: true, name: "Interop Tester" } };
});
const bearer = process.env.MCP_INTEROP_BEARER;
const transport = args.length === 0 && /^https?:\/\//.test(cmd)
  ? new StreamableHTTPClientTransport(new URL(cmd), {
      requestInit: bearer ? { headers: { Authorization: `Bearer ${bearer}` } } : undefined,
    })
  : new StdioClientTransport({ command: cmd, args, stderr: "inherit", env: process.env });
await client.connect(transport);

const sorted = (v) =>
  Array.isArray(v) ? v.map(sorted)
  : v && typeof v === "object" ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, sorted(v[k])]))
  : v;

const tools = (await client.listTools()).tools;
const names = new Set(tools.map((t) => t.name));
const plan = [
  ["echo", { message: "hello ts ✓" }],
  ["echo", { text: "hello ts ✓" }],
  ["get-sum", { a: 2, b: 3 }],
  ["add", { a: 2, b: 3 }],
  ["fail", {}],
  ["confirm", { action: "ship it" }],
  ["trigger-long-running-operation", { duration: 0.4, steps: 4 }],
  ["slow", { ms: 200, steps: 4 }],
];
const calls = [];
for (const [name, arguments_] of plan) {
  if (!names.has(name)) continue;
  const progress = [];
  try {
    const result = await client.callTool(
      { name, arguments: arguments_ },
      { onprogress: (p) => progress.push(p.progress) },
    );
    // The SDK sometimes drops the last progress notification of a call, also without a proxy;
    // record what is stable: whether progress came, and that it only went up.
    const rising = progress.every((p, i) => i === 0 || p > progress[i - 1]);
    calls.push({ name, arguments: arguments_, content: result.content, isError: result.isError ?? false, progress: progress.length > 0 && rising });
  } catch (e) {
    calls.push({ name, arguments: arguments_, error: String(e.code ?? e.message) });
  }
}
const doc = {
  protocol: client.getNegotiatedProtocolVersion?.() ?? null,
  server: client.getServerVersion?.() ?? null,
  tools: tools.map((t) => t.name).sort(),
  calls,
  elicitations: asked,
};
console.log(JSON.stringify(sorted(doc), null, 2));
await client.close();
