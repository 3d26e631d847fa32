//! Interop with the official SDKs and the reference server, judged from outside: each client
//! runs once directly and once through the proxy, and what it saw must be identical.
//!
//! Peers: the official Python SDK (PyPI `mcp` 2.3.0, both eras) and TypeScript SDK v2
//! (`@modelcontextprotocol/client` 2.4.0, both eras) as clients; the reference server
//! `@modelcontextprotocol/server-everything` (2025 era), a server built on the official Python
//! SDK (both eras) and this repository's rmcp example server (both eras).
//!
//! Ignored by a plain `cargo test` because the peers come from PyPI and npm: `bash tests/run.sh`
//! installs them (tests/interop/setup.sh) and runs everything.

mod common;
#[path = "interop/peers.rs"]
mod peers;

use common::{TestStore, pairs};
use peers::{python, run_client, server, typescript};

/// Direct vs proxied; then the proxy's events must cover the calls with the expected era.
/// Returns the trail.
fn check(label: &str, client: Vec<String>, server_name: &str, era: &str) -> Vec<serde_json::Value> {
    let srv = server(server_name);
    let direct = run_client(&client, &srv, None);
    let store = TestStore::new("");
    let mut proxied_cmd = vec![
        common::proxy_bin().to_string_lossy().into_owned(),
        "stdio".into(),
        "--config".into(),
        store.config.to_string_lossy().into_owned(),
        "--".into(),
    ];
    proxied_cmd.extend(srv.iter().cloned());
    let proxied = run_client(&client, &proxied_cmd, None);
    peers::assert_same(label, &direct, &proxied, "through the proxy");
    let events = store.events();
    let pairs = pairs(&events);
    assert!(
        pairs.len() >= 4,
        "{label}: only {} tool calls recorded",
        pairs.len()
    );
    for (access, _) in &pairs {
        assert_eq!(access["metadata"]["protocol_era"], era, "{label}: {access}");
    }
    events
}

/// The `server_request` events of `events` (the client's answers to the server's questions)
/// whose `action` is `method`, each checked to hold the question and a result.
fn answers_to<'e>(
    label: &str,
    events: &'e [serde_json::Value],
    method: &str,
) -> Vec<&'e serde_json::Value> {
    let found: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["event_type"] == "server_request" && e["action"] == method)
        .collect();
    for e in &found {
        assert!(e["metadata"]["arguments"].is_object(), "{label}: {e}");
        let answer = &e["metadata"]["input_responses"];
        match e["result"].as_str() {
            Some("success") => assert!(answer["result"].is_object(), "{label}: {e}"),
            Some("jsonrpc_error") => assert!(answer["error"]["code"].is_i64(), "{label}: {e}"),
            _ => panic!("{label}: {e}"),
        }
    }
    found
}

#[test]
#[ignore = "needs the interop peers from PyPI and npm: run `bash tests/run.sh`"]
fn python_sdk_client_with_the_reference_server_in_every_2025_revision() {
    for v in ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"] {
        let label = format!("python {v} x server-everything");
        let events = check(
            &label,
            python(&["--era", "2025", "--protocol-version", v]),
            "everything",
            "2025",
        );
        // The SDK's sampling and elicitation callbacks answered the server's questions
        // each answer is in the trail.
        let sampled = answers_to(&label, &events, "sampling/createMessage");
        assert_eq!(sampled.len(), 1, "{label}: {events:#?}");
        let text = &sampled[0]["metadata"]["input_responses"]["result"]["content"]["text"];
        assert!(
            text.as_str()
                .is_some_and(|t| t.starts_with("stub-llm reply to: ") && t.ends_with("say hi")),
            "{label}: {:?}",
            sampled[0]
        );
        assert_eq!(sampled[0]["result"], "success", "{label}");
        // Before 2025-06-18 the SDK answers the server's elicitation with an error
        // (-32601): that answer is recorded as the server got it.
        let elicited = answers_to(&label, &events, "elicitation/create");
        assert_eq!(elicited.len(), 1, "{label}: {events:#?}");
        let answered = if v >= "2025-06-18" {
            "success"
        } else {
            "jsonrpc_error"
        };
        assert_eq!(
            elicited[0]["result"], answered,
            "{label}: {:?}",
            elicited[0]
        );
    }
    // The SDK's default: probe with server/discover, fall back to initialize on -32601.
    check(
        "python auto x server-everything",
        python(&["--era", "auto"]),
        "everything",
        "2025",
    );
}

#[test]
#[ignore = "needs the interop peers from PyPI and npm: run `bash tests/run.sh`"]
fn python_sdk_client_with_python_and_rust_servers_in_both_eras() {
    check(
        "python 2026 x python server",
        python(&["--era", "2026"]),
        "python",
        "2026",
    );
    check(
        "python 2025 x python server",
        python(&["--era", "2025"]),
        "python",
        "2025",
    );
    check(
        "python auto x python server",
        python(&["--era", "auto"]),
        "python",
        "2026",
    );
    check(
        "python 2026 x rmcp server",
        python(&["--era", "2026"]),
        "rmcp",
        "2026",
    );
    check(
        "python 2025 x rmcp server",
        python(&["--era", "2025"]),
        "rmcp",
        "2025",
    );
}

#[test]
#[ignore = "needs the interop peers from PyPI and npm: run `bash tests/run.sh`"]
fn typescript_sdk_client_in_both_eras() {
    check(
        "ts legacy x server-everything",
        typescript("legacy"),
        "everything",
        "2025",
    );
    check(
        "ts 2026 x python server",
        typescript("2026-07-28"),
        "python",
        "2026",
    );
    check(
        "ts 2026 x rmcp server",
        typescript("2026-07-28"),
        "rmcp",
        "2026",
    );
    let label = "ts legacy x rmcp server";
    let events = check(label, typescript("legacy"), "rmcp", "2025");
    // The rmcp server's `confirm` asks the person (elicitation/create); the SDK's handler
    // answered it, and the answer is in the trail.
    let elicited = answers_to(label, &events, "elicitation/create");
    assert_eq!(elicited.len(), 1, "{label}: {events:#?}");
    let content = &elicited[0]["metadata"]["input_responses"]["result"]["content"];
    assert_eq!(
        content["name"], "Interop Tester",
        "{label}: {:?}",
        elicited[0]
    );
}

#[tokio::test]
#[ignore = "needs the interop peers from PyPI and npm: run `bash tests/run.sh`"]
async fn a_carriage_return_cannot_smuggle_a_call_to_the_official_python_server() {
    // The official Python SDK reads stdin with universal newlines: a bare \r ends a line
    // there. Without the proxy's refusal the server would run call 99 unaudited.
    let store = TestStore::new("");
    let server = server("python");
    let refs: Vec<&str> = server.iter().map(String::as_str).collect();
    let mut c = common::LineClient::spawn(store.proxy_command(&refs));
    c.initialize().await;
    c.send(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/x\",\"params\":{\"a\":\r{\"jsonrpc\":\"2.0\",\"id\":99,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"arguments\":{\"message\":\"smuggled\"}}}\r}}\n").await;
    c.send(&common::call_line(
        serde_json::json!(2),
        "echo",
        serde_json::json!({"message": "fair"}),
    ))
    .await;
    loop {
        let msg = c.recv_json().await;
        if msg["id"] == 99 {
            // Only the proxy's refusal of it may answer 99: the server never saw it.
            let refusal = msg["error"]["message"].as_str().unwrap_or_default();
            assert!(
                refusal.starts_with("mcp-audit-proxy refused"),
                "the smuggled call ran: {msg}"
            );
        }
        if msg["id"] == 2 {
            assert_eq!(msg["result"]["content"][0]["text"], "Echo: fair");
            break;
        }
    }
    assert!(c.finish().await.success());
    let events = store.events();
    let pairs = pairs(&events);
    assert_eq!(pairs.len(), 2, "the refused smuggled call and the fair one");
    assert_eq!(pairs[0].0["metadata"]["request_id"], 99);
    assert_eq!(pairs[0].1["result"], "refused");
    assert_eq!(pairs[1].1["result"], "success");
}
