#!/usr/bin/env bash
# Installs the interop peers into target/interop (no root needed): the official Python SDK
# (PyPI mcp, pinned in requirements.txt), the reference server @modelcontextprotocol/server-everything
# and the official TypeScript SDK v2 client (npm, pinned in package-lock.json), and the official
# conformance suite with the Node >= 22 it needs (npm `node`; pinned in conformance/package-lock.json).
# Idempotent: does nothing when the pinned versions are already installed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
dest=${MCP_AUDIT_INTEROP_DIR:-$root/target/interop}
mkdir -p "$dest/node"
# ESM resolves packages next to the script, so the TypeScript probe runs from the node folder.
cp "$here/ts_client.mjs" "$here/conf_client.mjs" "$dest/node/"
stamp="$dest/.installed"
want=$(cat "$here/requirements.txt" "$here/package-lock.json" "$here/conformance/package-lock.json" | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "interop peers: up to date in $dest"
  exit 0
fi
command -v python3 >/dev/null || { echo "interop setup: python3 is missing (Debian: apt-get install python3 python3-venv)" >&2; exit 1; }
command -v npm >/dev/null || { echo "interop setup: npm is missing (Debian: apt-get install nodejs npm)" >&2; exit 1; }
echo "interop peers: installing into $dest"
rm -rf "$dest/venv" "$dest/node/node_modules" "$dest/conformance"
python3 -m venv "$dest/venv"
"$dest/venv/bin/pip" install --quiet --no-cache-dir -r "$here/requirements.txt"
mkdir -p "$dest/node"
cp "$here/package.json" "$here/package-lock.json" "$dest/node/"
(cd "$dest/node" && npm ci --no-fund --no-audit --loglevel=error)
mkdir -p "$dest/conformance"
cp "$here/conformance/package.json" "$here/conformance/package-lock.json" "$dest/conformance/"
(cd "$dest/conformance" && npm ci --no-fund --no-audit --loglevel=error)
echo "$want" > "$stamp"
echo "interop peers: ready ($("$dest/venv/bin/python" -c 'import importlib.metadata as m; print("mcp", m.version("mcp"))'), server-everything $(node -p "require('$dest/node/node_modules/@modelcontextprotocol/server-everything/package.json').version"), conformance $(node -p "require('$dest/conformance/node_modules/@modelcontextprotocol/conformance/package.json').version") on node $("$dest/conformance/node_modules/.bin/node" --version))"
