#!/usr/bin/env bash
# The test suite, as the README gives it: installs the interop peers (official Python and
# TypeScript SDKs, reference server, the official conformance suite with the Node 22 it needs)
# into target/interop on first use, then runs every test, the interop ones included
# (tests/interop.rs: stdio; tests/interop_http.rs: the gateway, conformance run within 5 min).
# Needs python3 (with venv) and node/npm; .ci/run installs them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/interop/setup.sh
cargo test --locked -- --include-ignored
