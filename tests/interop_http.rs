//! The HTTP gateway judged by real peers: the official SDKs' Streamable HTTP clients, each run
//! directly against a server and through `mcp-audit-proxy gateway` in front of the same
//! server; what they see must not differ.
//!
//! Peers (pinned; installed by tests/interop/setup.sh): the official Python SDK (PyPI `mcp`
//! 2.3.0: `mcp.client.streamable_http`, both eras) and TypeScript SDK v2
//! (`@modelcontextprotocol/client` 2.4.0: `StreamableHTTPClientTransport`, both eras) as
//! clients, through tests/interop/compare.py and ts_client.mjs given a URL; as servers the
//! reference `@modelcontextprotocol/server-everything` (2025 era only) and this repository's
//! rmcp example server (both eras), both stdio upstreams of the gateway.
//!
//! Each client case: the client's report directly (stdio) equals its report through the
//! gateway (API key in `Authorization: Bearer`), and the gateway's audit trail pairs every call
//! and records the same calls with the same ends as the stdio wrapper does for the same run.
//!
//! Ignored by a plain `cargo test` because the peers come from PyPI and npm: `bash tests/run.sh`
//! installs them and runs everything.

mod common;
#[path = "interop/peers.rs"]
mod peers;

use common::{TestStore, pairs};
use peers::{Gateway, INTEROP_KEY, python, run_client, server, typescript};
use serde_json::Value;

/// What an audit trail says of each call, for comparing two trails of the same run:
/// (tool, how the call ended, its result), sorted.
fn trail(events: &[Value]) -> Vec<(String, String, String)> {
    let mut v: Vec<_> = pairs(events)
        .iter()
        .map(|(access, end)| {
            (
                access["tool_name"].as_str().unwrap_or_default().to_string(),
                end["event_type"].as_str().unwrap_or_default().to_string(),
                end["result"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

/// One client case: directly, through the stdio wrapper, through the gateway.
fn check(label: &str, client: Vec<String>, server_name: &str, era: &str) {
    let srv = server(server_name);
    let direct = run_client(&client, &srv, None);

    // The same run through the stdio wrapper: the trail the gateway's must equal.
    let store = TestStore::new("");
    let mut wrapped = vec![
        common::proxy_bin().to_string_lossy().into_owned(),
        "stdio".into(),
        "--config".into(),
        store.config.to_string_lossy().into_owned(),
        "--".into(),
    ];
    wrapped.extend(srv.iter().cloned());
    let via_stdio = run_client(&client, &wrapped, None);
    peers::assert_same(label, &direct, &via_stdio, "through the stdio wrapper");

    let gateway = Gateway::start(&[(server_name, &srv)], "");
    let url = gateway.endpoint(server_name);
    let via_gateway = run_client(&client, std::slice::from_ref(&url), Some(INTEROP_KEY));
    let events = gateway.finish();
    peers::assert_same(label, &direct, &via_gateway, "through the gateway");

    let calls = pairs(&events);
    assert!(
        calls.len() >= 4,
        "{label}: only {} tool calls recorded",
        calls.len()
    );
    for (access, end) in &calls {
        assert_eq!(access["user_id"], "interop", "{label}: {access}");
        assert_eq!(
            access["metadata"]["auth_method"], "api_key",
            "{label}: {access}"
        );
        assert_eq!(access["upstream"], server_name, "{label}: {access}");
        assert_eq!(access["metadata"]["protocol_era"], era, "{label}: {access}");
        assert_eq!(end["upstream"], server_name, "{label}: {end}");
    }
    assert_eq!(
        trail(&events),
        trail(&store.events()),
        "{label}: the gateway's trail differs from the stdio wrapper's for the same run"
    );
}

#[test]
#[ignore = "needs the interop peers from PyPI and npm: run `bash tests/run.sh`"]
fn python_sdk_http_client_through_the_gateway_to_server_everything_in_every_2025_revision() {
    for v in ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"] {
        check(
            &format!("python http {v} x server-everything"),
            python(&["--era", "2025", "--protocol-version", v]),
            "everything",
            "2025",
        );
    }
    // The SDK's default: a server/discover probe (sessionless, so the gateway gives it a
    // server of its own), -32601, then initialize.
    check(
        "python http auto x server-everything",
        python(&["--era", "auto"]),
        "everything",
        "2025",
    );
}

#[test]
#[ignore = "needs the interop peers from PyPI and npm: run `bash tests/run.sh`"]
fn python_sdk_http_client_through_the_gateway_to_the_example_server_in_both_eras() {
    check(
        "python http 2025 x rmcp server",
        python(&["--era", "2025"]),
        "rmcp",
        "2025",
    );
    check(
        "python http 2026 x rmcp server",
        python(&["--era", "2026"]),
        "rmcp",
        "2026",
    );
    check(
        "python http auto x rmcp server",
        python(&["--era", "auto"]),
        "rmcp",
        "2026",
    );
}

#[test]
#[ignore = "needs the interop peers from PyPI and npm: run `bash tests/run.sh`"]
fn typescript_sdk_http_client_through_the_gateway_in_both_eras() {
    check(
        "ts http legacy x server-everything",
        typescript("legacy"),
        "everything",
        "2025",
    );
    check(
        "ts http auto x server-everything",
        typescript("auto"),
        "everything",
        "2025",
    );
    check(
        "ts http legacy x rmcp server",
        typescript("legacy"),
        "rmcp",
        "2025",
    );
    check(
        "ts http 2026 x rmcp server",
        typescript("2026-07-28"),
        "rmcp",
        "2026",
    );
    check(
        "ts http auto x rmcp server",
        typescript("auto"),
        "rmcp",
        "2026",
    );
}
