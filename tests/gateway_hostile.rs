//! The gateway against hostile and quirky HTTP clients: inputs taken from bug reports of other
//! MCP proxies and SDK transports. Each test pins a fault found by probing the gateway: the
//! client must get a prompt answer saying what happened, and the trail must say so too.

mod common;

use std::time::Duration;

use common::gateway::*;
use serde_json::Value;

/// Refusal events (`action` = `http`, `result` = `refused`) with this HTTP status.
fn refusals(gw: &Gateway, status: u16) -> Vec<Value> {
    gw.events()
        .into_iter()
        .filter(|e| {
            e["result"] == "refused"
                && e["metadata"]["http"]["status_code"].as_u64() == Some(status.into())
        })
        .collect()
}

/// A 2025-03-26 batch with one id twice: the pipeline refused the second element for its
/// reused id, but the POST waited for two answers under one id; the refusal took the place of
/// the first call's answer (which was then dropped as having no client) and the stream never
/// ended, holding the principal's stream slot and the session busy for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_repeating_a_request_id_is_refused_whole_and_at_once() {
    let gw = Gateway::start("");
    let url = gw.endpoint();
    let session = raw_session(&url, ALICE_KEY).await;
    let batch = r#"[{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"echo","arguments":{"text":"a"}}},{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"echo","arguments":{"text":"b"}}}]"#;
    let (status, _, body) = tokio::time::timeout(
        Duration::from_secs(10),
        post(
            &url,
            Some(ALICE_KEY),
            Some(&session),
            batch,
            &[("mcp-protocol-version", "2025-03-26")],
        ),
    )
    .await
    .expect("the POST of a batch with a repeated id never ended");
    assert_eq!(status, 400, "{body}");
    let answer = &messages(&body)[0];
    assert_eq!(answer["error"]["code"], -32600, "{body}");
    let text = answer["error"]["message"].as_str().unwrap();
    assert!(
        text.contains("id 5") && text.contains("not forwarded"),
        "{text}"
    );
    // Refused before the pipeline: no call ran, and the refusal is in the trail.
    let (status, _, body) = post(
        &url,
        Some(ALICE_KEY),
        Some(&session),
        r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"echo","arguments":{"text":"after"}}}"#,
        &[],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(messages(&body)[0]["result"]["content"][0]["text"], "after");
    let events = gw.events();
    let accesses: Vec<&Value> = events
        .iter()
        .filter(|e| e["event_type"] == "tool_access")
        .collect();
    assert_eq!(accesses.len(), 1, "only the later call ran: {events:#?}");
    assert_eq!(accesses[0]["metadata"]["arguments"]["text"], "after");
    let refused = refusals(&gw, 400);
    assert_eq!(refused.len(), 1, "{events:#?}");
    assert_eq!(refused[0]["action"], "tools/call");
}
