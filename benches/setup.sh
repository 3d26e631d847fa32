#!/usr/bin/env bash
# Installs the HTTP bridges that `cargo bench --bench gateway` compares the gateway with, into
# target/interop/bench (no root needed): npm `supergateway` (pinned in bridges/package-lock.json)
# and PyPI `mcp-proxy` (sparfenyuk; pinned with its dependencies in bridges/requirements.txt).
# The server they front, @modelcontextprotocol/server-everything, comes from
# tests/interop/setup.sh. Bench-only: no test and no CI step needs these; the bench skips a
# bridge that is missing, with a message. Idempotent: does nothing when the pins are installed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
dest=${MCP_AUDIT_INTEROP_DIR:-$root/target/interop}/bench
stamp="$dest/.installed"
want=$(cat "$here/bridges/requirements.txt" "$here/bridges/package-lock.json" | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "bench bridges: up to date in $dest"
  exit 0
fi
command -v python3 >/dev/null || { echo "bench setup: python3 is missing (Debian: apt-get install python3 python3-venv)" >&2; exit 1; }
command -v npm >/dev/null || { echo "bench setup: npm is missing (Debian: apt-get install nodejs npm)" >&2; exit 1; }
echo "bench bridges: installing into $dest"
rm -rf "$dest"
mkdir -p "$dest/node"
python3 -m venv "$dest/venv"
"$dest/venv/bin/pip" install --quiet --no-cache-dir -r "$here/bridges/requirements.txt"
cp "$here/bridges/package.json" "$here/bridges/package-lock.json" "$dest/node/"
(cd "$dest/node" && npm ci --no-fund --no-audit --loglevel=error)
echo "$want" > "$stamp"
echo "bench bridges: ready (supergateway $(node -p "require('$dest/node/node_modules/supergateway/package.json').version"), $("$dest/venv/bin/python" -c 'import importlib.metadata as m; print("mcp-proxy", m.version("mcp-proxy"))'))"
