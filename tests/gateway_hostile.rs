//! The gateway against hostile and quirky HTTP clients: inputs taken from bug reports of other
//! MCP proxies and SDK transports. Each test pins a fault found by probing the gateway: the
//! client must get a prompt answer saying what happened, and the trail must say so too.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::gateway::*;
use serde_json::Value;

/// Refusal events (`action` = `http`, `result` = `refused`) with this HTTP status.
/// The arguments of a refused call, kept by its access event (the end `refusal` links to it).
fn refused_arguments(gw: &Gateway, refusal: &Value) -> Value {
    gw.events()
        .into_iter()
        .find(|a| a["event_id"] == refusal["linked_event_id"])
        .unwrap_or_else(|| panic!("no access for {refusal}"))["metadata"]["arguments"]
        .clone()
}

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
        .filter(|e| e["event_type"] == "tool_access" && e["result"] != "refused")
        .collect();
    assert_eq!(accesses.len(), 1, "only the later call ran: {events:#?}");
    assert_eq!(accesses[0]["metadata"]["arguments"]["text"], "after");
    // One refused call (an access and its end) per call the body held, each with its id; the
    // end has the HTTP status and the reason.
    let refused = refusals(&gw, 400);
    assert_eq!(refused.len(), 2, "{events:#?}");
    for (e, text) in refused.iter().zip(["a", "b"]) {
        assert_eq!(e["event_type"], "tool_failure");
        assert_eq!(e["action"], "tools/call");
        assert_eq!(e["metadata"]["request_id"], 5, "{e}");
        assert!(e["metadata"]["arguments"].is_null(), "{e}");
        let access = events
            .iter()
            .find(|a| a["event_id"] == e["linked_event_id"])
            .unwrap_or_else(|| panic!("no access for {e}"));
        assert_eq!(access["event_type"], "tool_access", "{access}");
        assert_eq!(access["result"], "refused", "{access}");
        assert_eq!(access["tool_name"], "echo", "{access}");
        assert_eq!(access["metadata"]["request_id"], 5, "{access}");
        assert_eq!(access["metadata"]["arguments"]["text"], text, "{access}");
        assert!(access["metadata"]["reason"].is_null(), "{access}");
    }
}

/// The head of a raw HTTP/1.1 POST of a `length`-byte body to the gateway's endpoint.
fn raw_post_head(gw: &Gateway, session: &str, length: usize) -> Vec<u8> {
    format!(
        "POST /mcp/example HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {ALICE_KEY}\r\nContent-Type: application/json\r\nAccept: application/json\r\nMcp-Session-Id: {session}\r\nMCP-Protocol-Version: 2025-06-18\r\nContent-Length: {length}\r\n\r\n",
        host = address(gw)
    )
    .into_bytes()
}

/// Slowloris on the body: headers in time, then part of the body and silence, or the body
/// one byte at a time, each just in time. The header timeout ended with the headers, and no
/// deadline covered the body: a connection (and the principal's stream slot) was held for as
/// long as the client liked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stalls_or_trickles_is_cut_with_408_and_recorded() {
    let gw = Gateway::start_with("header_read_timeout_ms = 500", "");
    let url = gw.endpoint();
    let session = raw_session(&url, ALICE_KEY).await;
    let body = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"text":"slow"}}}"#;
    let stalled = {
        let mut s = TcpStream::connect(address(&gw)).unwrap();
        s.write_all(&raw_post_head(&gw, &session, body.len()))
            .unwrap();
        s.write_all(&body[..10]).unwrap();
        let started = Instant::now();
        let answer =
            tokio::task::spawn_blocking(move || read_answer(&mut s, Duration::from_secs(10)))
                .await
                .unwrap();
        (answer, started.elapsed())
    };
    assert!(stalled.0.starts_with("HTTP/1.1 408"), "{stalled:?}");
    assert!(stalled.0.contains("header_read_timeout_ms"), "{stalled:?}");
    let head = raw_post_head(&gw, &session, body.len());
    let trickled = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(address_of(&head)).unwrap();
        s.write_all(&head).unwrap();
        let started = Instant::now();
        for b in body.iter() {
            // Each byte within the idle limit; the whole body not within the total one.
            if s.write_all(&[*b]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
            if started.elapsed() > Duration::from_secs(10) {
                break;
            }
        }
        (
            read_answer(&mut s, Duration::from_secs(5)),
            started.elapsed(),
        )
    })
    .await
    .unwrap();
    assert!(trickled.0.starts_with("HTTP/1.1 408"), "{trickled:?}");
    assert!(trickled.1 < Duration::from_secs(8), "{trickled:?}");
    let events = gw.events();
    assert_eq!(refusals(&gw, 408).len(), 2, "{events:#?}");
    assert!(
        !events.iter().any(|e| e["event_type"] == "tool_access"),
        "no call ran: {events:#?}"
    );
}

/// The `host:port` named in a raw request head's Host header.
fn address_of(head: &[u8]) -> String {
    let text = String::from_utf8_lossy(head);
    text.lines()
        .find_map(|l| l.strip_prefix("Host: "))
        .unwrap()
        .to_string()
}

/// MCP 2025-06-18 "Protocol Version Header": a request with an unsupported
/// `MCP-Protocol-Version` gets 400. POST did; GET opened a stream (200) and DELETE ended the
/// session, whatever the version said.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_and_delete_with_an_unsupported_protocol_version_are_400_and_change_nothing() {
    let gw = Gateway::start("");
    let url = gw.endpoint();
    let session = raw_session(&url, ALICE_KEY).await;
    let get = http()
        .get(&url)
        .header("authorization", format!("Bearer {ALICE_KEY}"))
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "1999-01-01")
        .send()
        .await
        .unwrap();
    assert_eq!(get.status().as_u16(), 400);
    let text = get.text().await.unwrap();
    assert!(
        text.contains("1999-01-01") && text.contains("2025-06-18"),
        "{text}"
    );
    let delete = http()
        .delete(&url)
        .header("authorization", format!("Bearer {ALICE_KEY}"))
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-13-45")
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status().as_u16(), 400);
    // The session is still there.
    let (status, _, body) = post(
        &url,
        Some(ALICE_KEY),
        Some(&session),
        r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#,
        &[],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(refusals(&gw, 400).len(), 2, "{:#?}", gw.events());
}

/// A body sent with `Content-Encoding: gzip` (some HTTP clients compress by default) was
/// read as JSON and refused as "not valid JSON", which says nothing of the cause. RFC 9110
/// 15.5.16: 415, with `Accept-Encoding` saying what is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compressed_body_is_refused_with_415_naming_the_encoding() {
    let gw = Gateway::start("");
    let url = gw.endpoint();
    let session = raw_session(&url, ALICE_KEY).await;
    // The gzip of a tools/call (any bytes will do: the encoding alone decides).
    let gzipped: &[u8] = &[
        0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0xab, 0xae, 0x05, 0x00, 0x43,
        0xbf, 0xa6, 0xa3, 0x02, 0x00, 0x00, 0x00,
    ];
    let resp = http()
        .post(&url)
        .header("authorization", format!("Bearer {ALICE_KEY}"))
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-06-18")
        .body(gzipped.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 415);
    assert_eq!(resp.headers()["accept-encoding"], "identity");
    let text = resp.text().await.unwrap();
    assert!(
        text.contains("Content-Encoding") && text.contains("gzip") && text.contains("uncompressed"),
        "{text}"
    );
    assert_eq!(refusals(&gw, 415).len(), 1, "{:#?}", gw.events());
}

/// Found by a fresh pair of eyes (grafana/mcp-grafana#215, csharp-sdk#1527): a `tools/call`
/// sent with a wrong `Content-Type` or `Accept` was refused with an event naming no tool and
/// no id, where every other refusal names them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_refused_for_its_headers_is_recorded_with_its_tool_and_id() {
    let gw = Gateway::start("");
    let url = gw.endpoint();
    let session = raw_session(&url, ALICE_KEY).await;
    for (id, content_type, accept, status) in [
        (11, Some("text/plain"), "application/json", 415),
        (12, None, "application/json", 415),
        (13, Some("application/json"), "text/html", 406),
    ] {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"t{id}"}}}}}}"#
        );
        let mut req = http()
            .post(&url)
            .header("authorization", format!("Bearer {ALICE_KEY}"))
            .header("accept", accept)
            .header("mcp-session-id", &session)
            .header("mcp-protocol-version", "2025-06-18")
            .body(body);
        if let Some(t) = content_type {
            req = req.header("content-type", t);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), status, "{id}");
        let refused: Vec<Value> = refusals(&gw, status)
            .into_iter()
            .filter(|e| e["metadata"]["request_id"] == id)
            .collect();
        assert_eq!(refused.len(), 1, "{id}: {:#?}", gw.events());
        assert_eq!(refused[0]["tool_name"], "echo", "{refused:#?}");
        assert_eq!(
            refused_arguments(&gw, &refused[0])["text"],
            format!("t{id}"),
            "{refused:#?}"
        );
    }
}

/// Found by a fresh pair of eyes (typescript-sdk#275): a 2025-06-18 batch (no batches after
/// 2025-03-26) holding two calls was refused with one event for the first call and no id;
/// the stdio path records every element. Each call now has its own event with its id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_call_of_a_refused_batch_is_recorded_with_its_id() {
    let gw = Gateway::start("");
    let url = gw.endpoint();
    let session = raw_session(&url, ALICE_KEY).await;
    let batch = r#"[{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"echo","arguments":{"text":"six"}}},{"jsonrpc":"2.0","id":"seven","method":"tools/call","params":{"name":"add","arguments":{"a":1,"b":2}}},{"jsonrpc":"2.0","method":"notifications/progress","params":{}}]"#;
    let (status, _, body) = post(&url, Some(ALICE_KEY), Some(&session), batch, &[]).await;
    assert_eq!(status, 400, "{body}");
    let refused = refusals(&gw, 400);
    let named: Vec<(Value, Value)> = refused
        .iter()
        .map(|e| (e["metadata"]["request_id"].clone(), e["tool_name"].clone()))
        .collect();
    assert_eq!(
        named,
        [
            (Value::from(6), Value::from("echo")),
            (Value::from("seven"), Value::from("add")),
        ],
        "{refused:#?}"
    );
    assert!(
        refused[1]["metadata"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("call 2 of 2")),
        "{refused:#?}"
    );
}

/// A body reusing the id of a request another POST of the session still waits for: the
/// POST could not wait by id, so the pipeline's answers alone were its answer. In a batch
/// [call 8, call 7] with 7 in flight, 7 was refused, 8 ran, and 8's answer was dropped ("no
/// client") while the client got a 400 listing 7 alone: a call ran whose result nobody saw.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_reusing_an_id_in_flight_on_another_post_is_refused_whole() {
    let gw = Gateway::start("");
    let url = gw.endpoint();
    let session = raw_session(&url, ALICE_KEY).await;
    let slow = http()
        .post(&url)
        .header("authorization", format!("Bearer {ALICE_KEY}"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-03-26")
        .body(r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"slow","arguments":{"ms":3000,"steps":30},"_meta":{"progressToken":"p7"}}}"#)
        .send()
        .await
        .unwrap();
    // Its headers are sent with its first progress notification (100 ms in), while it runs.
    assert_eq!(slow.status().as_u16(), 200);
    let batch = r#"[{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"echo","arguments":{"text":"eight"}}},{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"text":"seven"}}}]"#;
    let (status, _, body) = post(
        &url,
        Some(ALICE_KEY),
        Some(&session),
        batch,
        &[("mcp-protocol-version", "2025-03-26")],
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let answer = &messages(&body)[0];
    let text = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(
        text.contains("id 7") && text.contains("not forwarded"),
        "{body}"
    );
    // The first call is answered on its own stream.
    let first = slow.text().await.unwrap();
    let first = messages(&first);
    assert_eq!(
        first.last().unwrap()["result"]["content"][0]["text"],
        "slept 3000ms",
        "{first:?}"
    );
    let events = gw.events();
    let ran: Vec<&Value> = events
        .iter()
        .filter(|e| e["event_type"] == "tool_access" && e["result"] != "refused")
        .collect();
    assert_eq!(ran.len(), 1, "only the slow call ran: {events:#?}");
    assert_eq!(ran[0]["tool_name"], "slow");
}

/// `/metrics` labels came from the client: the JSON-RPC `method` of a refused request (any
/// string, quotes and line breaks included) and the HTTP method (any token, before
/// authentication). A quote and a line break in a method forged metric lines in the
/// scrape, and each new name was a new series kept for the life of the process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_labels_cannot_be_forged_or_multiplied_by_clients() {
    let gw = Gateway::start("");
    let url = gw.endpoint();
    // A refused request (unknown session) whose method breaks out of its label.
    let forged =
        r#"{"jsonrpc":"2.0","id":1,"method":"x\"} 1\ninjected_metric 99\nq{a=\"","params":{}}"#;
    let (status, _, body) = post(&url, Some(ALICE_KEY), Some("no-such-session"), forged, &[]).await;
    assert_eq!(status, 404, "{body}");
    for i in 0..3 {
        let (status, _, _) = post(
            &url,
            Some(ALICE_KEY),
            Some("no-such-session"),
            &format!(r#"{{"jsonrpc":"2.0","id":1,"method":"made/up{i}"}}"#),
            &[],
        )
        .await;
        assert_eq!(status, 404);
    }
    // Unauthenticated requests with invented HTTP methods.
    for i in 0..3 {
        let m = reqwest::Method::from_bytes(format!("INVENTED{i}").as_bytes()).unwrap();
        let resp = http().request(m, &url).send().await.unwrap();
        assert!(resp.status().is_client_error());
    }
    let metrics = gw.metrics().await;
    assert!(
        !metrics.lines().any(|l| l.starts_with("injected_metric")),
        "{metrics}"
    );
    assert!(
        !metrics.contains("made/up") && !metrics.contains("INVENTED"),
        "{metrics}"
    );
    // Still counted, under one label.
    assert_eq!(
        sample(
            &metrics,
            "mcp_gateway_refusals_total{method=\"other\",status=\"404\"}"
        ),
        4.0,
        "{metrics}"
    );
}

/// Whether the gateway closes a raw connection after `sent` within `limit`.
fn closed_within(gw: &Gateway, sent: &[u8], limit: Duration) -> Result<Duration, String> {
    let mut s = TcpStream::connect(address(gw)).unwrap();
    s.write_all(sent).unwrap();
    s.set_read_timeout(Some(limit)).unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok(started.elapsed()),
            // HTTP/2 frames (SETTINGS, GOAWAY) may come before the close.
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Ok(started.elapsed());
            }
            Err(e) => return Err(format!("still open after {:?}: {e}", started.elapsed())),
        }
    }
}

/// Slowloris before the first request: a connection that sends nothing (or the HTTP/2
/// preface and nothing more) held one of `max_connections` for ever, before any
/// authentication; 1024 idle sockets stopped the gateway from serving anyone. The header
/// timeout only starts once HTTP/1 is chosen, and HTTP/2 has none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_without_requests_is_closed_after_the_header_timeout() {
    let gw = Gateway::start_with("header_read_timeout_ms = 500", "");
    let limit = Duration::from_secs(5);
    let nothing = closed_within(&gw, b"", limit);
    assert!(nothing.is_ok(), "nothing sent: {nothing:?}");
    let mut preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    preface.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]); // an empty SETTINGS frame
    let h2 = closed_within(&gw, &preface, limit);
    assert!(h2.is_ok(), "HTTP/2 preface only: {h2:?}");
    // A request in flight longer than the timeout is not idle: a 1.5 s call answered as JSON
    // (nothing on the wire meanwhile) completes.
    let session = raw_session(&gw.endpoint(), ALICE_KEY).await;
    let resp = http()
        .post(gw.endpoint())
        .header("authorization", format!("Bearer {ALICE_KEY}"))
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-06-18")
        .body(r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"slow","arguments":{"ms":1500,"steps":1}}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let body = resp.text().await.unwrap();
    assert_eq!(
        messages(&body)[0]["result"]["content"][0]["text"],
        "slept 1500ms",
        "{body}"
    );
}

/// A body with raw line breaks inside a JSON string is not JSON (RFC 8259 section 7: control
/// characters in strings must be escaped); a server reading it directly refuses it
/// (Python: "Invalid control character", Node: "Bad control character"). The gateway turned
/// every raw CR and LF of the body into a space to make one line of it, so the invalid
/// `"rm\n-rf\r/"` became the valid `"rm -rf /"` and ran: a message the client never sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raw_line_break_inside_a_string_is_refused_not_rewritten() {
    let gw = Gateway::start("");
    let url = gw.endpoint();
    let session = raw_session(&url, ALICE_KEY).await;
    let body = "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"arguments\":{\"text\":\"rm\n-rf\r/\"}}}";
    let (status, _, answer) = post(&url, Some(ALICE_KEY), Some(&session), body, &[]).await;
    assert_eq!(status, 400, "{answer}");
    let answer = &messages(&answer)[0];
    assert_eq!(answer["error"]["code"], -32700, "{answer}");
    let text = answer["error"]["message"].as_str().unwrap();
    assert!(
        text.contains("line break") && text.contains("not forwarded"),
        "{text}"
    );
    // Line breaks between tokens are whitespace, as ever.
    let pretty = "{\n  \"jsonrpc\": \"2.0\",\r\n  \"id\": 3,\n  \"method\": \"tools/call\",\n  \"params\": {\"name\": \"echo\", \"arguments\": {\"text\": \"ok\"}}\n}\n";
    let (status, _, answer) = post(&url, Some(ALICE_KEY), Some(&session), pretty, &[]).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(messages(&answer)[0]["result"]["content"][0]["text"], "ok");
    let events = gw.events();
    let ran: Vec<&Value> = events
        .iter()
        .filter(|e| e["event_type"] == "tool_access" && e["result"] != "refused")
        .collect();
    assert_eq!(ran.len(), 1, "{events:#?}");
    assert_eq!(ran[0]["metadata"]["arguments"]["text"], "ok");
    let refused = refusals(&gw, 400);
    assert_eq!(refused.len(), 1, "{events:#?}");
    assert_eq!(refused[0]["action"], "tools/call");
}

/// Client text in pre-authentication refusals went into the trail whole: `/mcp/<60 000
/// bytes>` wrote an event of 120 kB (the name as its indexed `upstream` field, and again in
/// its reason), and a long Host or Origin likewise; the per-address quota bounds their
/// number, not their size. A refused body's `method` became the indexed `action` whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_text_in_refusal_events_is_bounded() {
    let gw = Gateway::start("");
    let long = "A".repeat(60_000);
    let resp = http()
        .post(format!("{}/mcp/{long}", gw.url))
        .header("authorization", format!("Bearer {ALICE_KEY}"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    assert!(resp.text().await.unwrap().len() < 1024);
    let resp = http()
        .post(gw.endpoint())
        .header("origin", format!("https://{}.example", "b".repeat(20_000)))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    let method = "m".repeat(20_000);
    let (status, _, _) = post(
        &gw.endpoint(),
        Some(ALICE_KEY),
        Some("no-such-session"),
        &format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{method}"}}"#),
        &[],
    )
    .await;
    assert_eq!(status, 404);
    let events = gw.events();
    assert_eq!(events.len(), 3, "{events:#?}");
    for e in &events {
        let size = e.to_string().len();
        assert!(
            size < 4096,
            "an event of {size} bytes: {:.300}",
            e.to_string()
        );
    }
    // What was cut says so.
    let unknown = &events[0];
    assert!(unknown["upstream"].as_str().unwrap().starts_with("AAAA"));
    let reason = unknown["metadata"]["reason"].as_str().unwrap();
    assert!(reason.contains("60000 bytes"), "{reason}");
}

/// `Content-Type: application/json; charset=iso-8859-1` with a Latin-1 body was read as
/// UTF-8 and refused as "invalid unicode", which names neither the charset nor the fix (a
/// server refuses the charset: 415). A UTF-8 charset, quoted or in any case, is fine, and so
/// is a plain ASCII body whatever charset it declares.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_in_another_charset_is_refused_with_415_naming_it() {
    let gw = Gateway::start("");
    let url = gw.endpoint();
    let session = raw_session(&url, ALICE_KEY).await;
    let send = |content_type: &'static str, body: Vec<u8>| {
        http()
            .post(&url)
            .header("authorization", format!("Bearer {ALICE_KEY}"))
            .header("content-type", content_type)
            .header("accept", "application/json")
            .header("mcp-session-id", &session)
            .header("mcp-protocol-version", "2025-06-18")
            .body(body)
            .send()
    };
    let mut latin1 = br#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":"caf"#.to_vec();
    latin1.extend_from_slice(b"\xe9\"}}}");
    let resp = send("application/json; charset=iso-8859-1", latin1)
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 415);
    let text = resp.text().await.unwrap();
    assert!(
        text.contains("iso-8859-1") && text.contains("UTF-8"),
        "{text}"
    );
    let utf8 = r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{"text":"café"}}}"#;
    let resp = send("Application/JSON; Charset=\"UTF-8\"", utf8.into())
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let body = resp.text().await.unwrap();
    assert_eq!(messages(&body)[0]["result"]["content"][0]["text"], "café");
    // helper-92: plain ASCII is the same text whatever charset is declared; the SDKs'
    // servers read it.
    let ascii = r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"echo","arguments":{"text":"plain"}}}"#;
    let resp = send("application/json; charset=iso-8859-1", ascii.into())
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let body = resp.text().await.unwrap();
    assert_eq!(messages(&body)[0]["result"]["content"][0]["text"], "plain");
    let refused = refusals(&gw, 415);
    assert_eq!(refused.len(), 1, "{:#?}", gw.events());
    // Found by a fresh pair of eyes: the call the refused body held was not named.
    assert_eq!(refused[0]["tool_name"], "echo", "{refused:#?}");
    assert_eq!(refused[0]["metadata"]["request_id"], 2, "{refused:#?}");
}

/// `initialize` sent again on an open session was forwarded to the session's server, and
/// the trail then recorded the session's later calls under the second `clientInfo` and
/// version. An MCP HTTP server refuses it (the TypeScript SDK: 400 "Server already
/// initialized"); a new session is an `initialize` without `Mcp-Session-Id`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initialize_on_an_open_session_is_refused_and_changes_nothing() {
    let gw = Gateway::start("");
    let url = gw.endpoint();
    let session = raw_session(&url, ALICE_KEY).await;
    let again = r#"{"jsonrpc":"2.0","id":9,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"other-client","version":"9"}}}"#;
    let (status, _, body) = post(&url, Some(ALICE_KEY), Some(&session), again, &[]).await;
    assert_eq!(status, 400, "{body}");
    let answer = &messages(&body)[0];
    assert_eq!(answer["id"], 9, "{body}");
    let text = answer["error"]["message"].as_str().unwrap();
    assert!(
        text.contains("already initialized") && text.contains("without Mcp-Session-Id"),
        "{text}"
    );
    let call = r#"{"jsonrpc":"2.0","id":10,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"}}}"#;
    let (status, _, body) = post(&url, Some(ALICE_KEY), Some(&session), call, &[]).await;
    assert_eq!(status, 200, "{body}");
    let events = gw.events();
    let access = events
        .iter()
        .find(|e| e["event_type"] == "tool_access")
        .unwrap();
    assert_eq!(access["metadata"]["user_agent"], "raw/1", "{access:#}");
    assert_eq!(refusals(&gw, 400).len(), 1, "{events:#?}");
}

/// Two `Mcp-Session-Id` headers: the gateway used the first, and an intermediary that
/// routes or logs by the last would see another session. The gateway refuses a repeated
/// `Mcp-Method` for that reason; a repeated session id is refused alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_session_header_is_refused() {
    let gw = Gateway::start("");
    let url = gw.endpoint();
    let session = raw_session(&url, ALICE_KEY).await;
    let ping = r#"{"jsonrpc":"2.0","id":4,"method":"ping"}"#;
    let (status, _, body) = post(
        &url,
        Some(ALICE_KEY),
        Some(&session),
        ping,
        &[("mcp-session-id", "another-session")],
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("Mcp-Session-Id") && body.contains("once"),
        "{body}"
    );
    let get = http()
        .get(&url)
        .header("authorization", format!("Bearer {ALICE_KEY}"))
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &session)
        .header("mcp-session-id", "another-session")
        .send()
        .await
        .unwrap();
    assert_eq!(get.status().as_u16(), 400);
    // Found by a hostile pass (helper-61 F2): a repeated `MCP-Protocol-Version` was taken by
    // its first copy (2026-07-28 then 2025-11-25: served as sessionless; swapped: "session
    // required"), and a repeated `Content-Type` passed.
    let list = r#"{"jsonrpc":"2.0","id":5,"method":"tools/list"}"#;
    for (name, first, second) in [
        ("mcp-protocol-version", "2026-07-28", "2025-11-25"),
        ("mcp-protocol-version", "2025-11-25", "banana"),
        ("content-type", "application/json", "text/plain"),
    ] {
        let session = (first != "2026-07-28").then_some(session.as_str());
        let (status, _, body) = post(
            &url,
            Some(ALICE_KEY),
            session,
            list,
            &[(name, first), (name, second)],
        )
        .await;
        assert_eq!(status, 400, "{name}: {first}, {second}: {body}");
        assert!(body.contains("is repeated"), "{name}: {body}");
    }
    assert_eq!(refusals(&gw, 400).len(), 5, "{:#?}", gw.events());
    // The same value twice (an intermediary adding what was there) is one value.
    let (status, _, body) = post(
        &url,
        Some(ALICE_KEY),
        Some(&session),
        list,
        &[("content-type", "application/json")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

/// Found by a hostile pass (helper-61 F3): the 429 past `max_sessions_per_principal` said
/// `"id": null`, though the `initialize` it refused had a readable id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_refused_for_the_principals_cap_is_answered_with_the_requests_id() {
    let gw = Gateway::start_with("max_sessions_per_principal = 1", "");
    let url = gw.endpoint();
    assert_eq!(post(&url, Some(ALICE_KEY), None, INIT, &[]).await.0, 200);
    let second = INIT.replace(r#""id":1"#, r#""id":77"#);
    let (status, _, body) = post(&url, Some(ALICE_KEY), None, &second, &[]).await;
    assert_eq!(status, 429, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["id"], 77, "{body}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_sessions_per_principal"),
        "{body}"
    );
}

/// `tools/call` spelled loosely in the method's value (`Tools/Call`, a trailing space): the
/// example server answers -32601, but a server matching method names loosely runs the call,
/// which passed the gateway with no event. Refused and recorded, with the call's tool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loosely_spelled_tools_call_is_refused_and_recorded() {
    let gw = Gateway::start("");
    let url = gw.endpoint();
    let session = raw_session(&url, ALICE_KEY).await;
    for (id, method) in [(33, "Tools/Call"), (34, "tools/call ")] {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"{method}","params":{{"name":"echo","arguments":{{"text":"loose {id}"}}}}}}"#
        );
        let (_, _, answer) = post(&url, Some(ALICE_KEY), Some(&session), &body, &[]).await;
        let answer = &messages(&answer)[0];
        assert_eq!(answer["id"], id, "{answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("differs from `tools/call`")),
            "{answer}"
        );
    }
    let events = gw.events();
    for id in [33, 34] {
        let access = events
            .iter()
            .find(|e| e["event_type"] == "tool_access" && e["metadata"]["request_id"] == id)
            .unwrap_or_else(|| panic!("no access event for {id}: {events:#?}"));
        assert_eq!(access["result"], "refused", "{access}");
        assert_eq!(access["tool_name"], "echo", "{access}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_card_number_or_secret_in_a_refused_requests_id_or_header_is_stored_protected() {
    // Found by a review: the gateway's own refusals stored the body's id and the reason (which
    // quotes the client's session header) as they came.
    const CARD_ID: &str = "4111111111111111";
    const KEY: &str = "AKIAIOSFODNN7EXAMPLE";
    let gw = Gateway::start("");
    let body = format!(r#"{{"jsonrpc":"2.0","id":"{CARD_ID}","method":"tools/list"}}"#);
    let (status, _, text) = post(&gw.endpoint(), Some(ALICE_KEY), Some(KEY), &body, &[]).await;
    assert_eq!(status, 404, "{text}");
    assert!(
        text.contains(CARD_ID),
        "the client gets its id back: {text}"
    );
    // An upstream named in the path, and a method, are the client's text too.
    let (status, _, text) = post(
        &format!("{}/mcp/{KEY}", gw.url),
        Some(ALICE_KEY),
        None,
        &format!(r#"{{"jsonrpc":"2.0","id":2,"method":"{KEY}"}}"#),
        &[],
    )
    .await;
    assert_eq!(status, 404, "{text}");
    // A refused call's arguments are recorded as a call's are: protected.
    const ARG_CARD: &str = "5555555555554444";
    let call = format!(
        r#"{{"jsonrpc":"2.0","id":"c1","method":"tools/call","params":{{"name":"echo","arguments":{{"text":"card {ARG_CARD}"}},"inputResponses":{{"pay":{{"action":"accept","content":{{"note":"card {ARG_CARD}"}}}}}},{META_2026}}}}}"#
    );
    let (status, _, text) = post_2026(&gw.endpoint(), ALICE_KEY, &call, Some("add"), &[]).await;
    assert_eq!(status, 400, "{text}");
    let refused_call = refusals(&gw, 400)
        .pop()
        .unwrap_or_else(|| panic!("{:#?}", gw.events()));
    assert_eq!(refused_call["tool_name"], "echo", "{refused_call:#}");
    let arguments = refused_arguments(&gw, &refused_call);
    let text = arguments["text"].as_str().unwrap_or("");
    assert!(
        text.starts_with("card ") && !text.contains(ARG_CARD),
        "{refused_call:#}"
    );
    // Its answers too, masked (review: refused before any session, they were dropped).
    let access = gw
        .events()
        .into_iter()
        .find(|a| a["event_id"] == refused_call["linked_event_id"])
        .unwrap();
    let note = access["metadata"]["input_responses"]["pay"]["content"]["note"]
        .as_str()
        .unwrap_or_else(|| panic!("{access:#}"));
    assert!(
        note.starts_with("card ") && !note.contains(ARG_CARD),
        "{access:#}"
    );
    let not_found = refusals(&gw, 404);
    assert_eq!(not_found.len(), 2, "{not_found:#?}");
    for r in &not_found {
        for secret in [CARD_ID, KEY] {
            assert!(!r.to_string().contains(secret), "{r:#}");
        }
    }
    let refusal = not_found
        .into_iter()
        .find(|r| !r["metadata"]["request_id"].is_null())
        .unwrap_or_else(|| panic!("{:#?}", gw.events()));
    assert!(
        refusal["metadata"]["request_id"]
            .as_str()
            .is_some_and(|id| id.contains("REDACTED")),
        "{refusal:#}"
    );
    // Neither in the event as `events` reads it back, nor anywhere in the store's bytes.
    for secret in [CARD_ID, KEY] {
        assert!(!refusal.to_string().contains(secret), "{refusal:#}");
    }
    let bytes = common::policy::all_bytes(gw._dir.path());
    for secret in [CARD_ID, KEY, ARG_CARD] {
        assert!(
            !common::policy::contains(&bytes, secret),
            "{secret} stored in clear"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2025_03_26_batch_with_a_nested_batch_is_refused_whole_and_reaches_no_server() {
    // Found by a fresh pair of eyes: the gateway took the batch apart, and the nested array
    // reached the server as a batch of its own that the client never sent, which ran it; the
    // client got 202 and never saw the answer.
    let gw = Gateway::start("");
    let url = gw.endpoint();
    let session = raw_session(&url, ALICE_KEY).await;
    let call = r#"{"jsonrpc":"2.0","id":"n1","method":"tools/call","params":{"name":"echo","arguments":{"text":"nested"}}}"#;
    let ping = r#"{"jsonrpc":"2.0","id":"p1","method":"ping"}"#;
    for body in [format!("[[{call}]]"), format!("[{ping},[{call}]]")] {
        let (status, _, text) = post(
            &url,
            Some(ALICE_KEY),
            Some(&session),
            &body,
            &[("mcp-protocol-version", "2025-03-26")],
        )
        .await;
        assert_ne!(status, 202, "{body}: {text}");
        let errors: Vec<Value> = messages(&text)
            .into_iter()
            .flat_map(|m| match m {
                Value::Array(a) => a,
                one => vec![one],
            })
            .collect();
        assert!(
            !errors.is_empty() && errors.iter().all(|e| e["error"]["code"].is_i64()),
            "{body}: {text}"
        );
    }
    let events = gw.events();
    assert!(
        events.iter().all(|e| e["event_type"] != "tool_execution"),
        "the nested call ran: {events:#?}"
    );
    let refused = events
        .iter()
        .filter(|e| e["tool_name"] == "echo" && e["result"] == "refused")
        .count();
    assert_eq!(
        refused, 4,
        "each refused call is in the trail as a pair: {events:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absolute_form_target_naming_a_foreign_host_is_refused() {
    // Found by a fresh pair of eyes: `POST http://evil.example/mcp/example` with a loopback
    // Host got 200; RFC 9112 section 3.2.2 says the target's authority is the host then.
    let gw = Gateway::start("");
    let body = list_2026(1);
    let head = |target: &str| {
        format!(
            "POST {target} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {ALICE_KEY}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nMCP-Protocol-Version: 2026-07-28\r\nMcp-Method: tools/list\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            address(&gw),
            body.len()
        )
    };
    let mut s = TcpStream::connect(address(&gw)).unwrap();
    s.write_all(head("http://evil.example/mcp/example").as_bytes())
        .unwrap();
    let answer = read_answer(&mut s, Duration::from_secs(10));
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(answer.contains("evil.example"), "{answer}");
    // The same target naming the gateway itself is served.
    let mut s = TcpStream::connect(address(&gw)).unwrap();
    s.write_all(head(&format!("http://{}/mcp/example", address(&gw))).as_bytes())
        .unwrap();
    let answer = read_answer(&mut s, Duration::from_secs(10));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// helper-103 F3: a request hyper cannot parse (a control character in a header, an
/// obs-fold) was answered 400 by hyper before the gateway saw it, and left no audit event;
/// every refused request is one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_is_no_valid_http_is_a_400_and_recorded() {
    let gw = Gateway::start("");
    let body = list_2026(1);
    for bad in ["X-Any: a\x01b\r\n", "X-Any: a\r\n folded\r\n"] {
        let mut s = TcpStream::connect(address(&gw)).unwrap();
        s.write_all(format!("POST /mcp/example HTTP/1.1\r\nHost: {}\r\n{bad}Authorization: Bearer {ALICE_KEY}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nMCP-Protocol-Version: 2026-07-28\r\nMcp-Method: tools/list\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", address(&gw), body.len()).as_bytes())
            .unwrap();
        let answer = read_answer(&mut s, Duration::from_secs(10));
        assert!(answer.starts_with("HTTP/1.1 400"), "{bad:?}: {answer}");
    }
    let mut refused = Vec::new();
    for _ in 0..50 {
        refused = gw
            .events()
            .into_iter()
            .filter(|e| {
                e["metadata"]["http"]["status_code"] == 400
                    && e["metadata"]["reason"]
                        .as_str()
                        .is_some_and(|r| r.contains("could not be read as HTTP"))
            })
            .collect();
        if refused.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(refused.len(), 2, "{refused:#?}");
    assert_eq!(refused[0]["user_id"], "unauthenticated");
    assert_eq!(
        refused[0]["metadata"]["http"]["client_address"],
        "127.0.0.1"
    );
}

/// Review helper-106: a body declared over the limit was read for its head, and a client
/// waiting for `100 Continue` was then told to send it all; it is refused at once, unread,
/// and recorded as the call its 2026-07-28 headers name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_declared_too_large_with_expect_100_continue_is_refused_unread() {
    let gw = Gateway::start("");
    let mut s = TcpStream::connect(address(&gw)).unwrap();
    s.write_all(format!("POST /mcp/example HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {ALICE_KEY}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nMCP-Protocol-Version: 2026-07-28\r\nMcp-Method: tools/call\r\nMcp-Name: echo\r\nExpect: 100-continue\r\nContent-Length: 100000000\r\n\r\n", address(&gw)).as_bytes())
        .unwrap();
    let answer = read_answer(&mut s, Duration::from_secs(10));
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(!answer.contains("100 Continue"), "{answer}");
    let mut ends = Vec::new();
    for _ in 0..50 {
        ends = gw
            .events()
            .into_iter()
            .filter(|e| {
                e["event_type"] == "tool_failure" && e["metadata"]["http"]["status_code"] == 413
            })
            .collect();
        if !ends.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ends.len(), 1, "{ends:#?}");
    assert_eq!(ends[0]["tool_name"], "echo");
}

/// helper-72 F8: an HTTP/1.1 request without `Host` was served (RFC 9112 section 3.2: 400),
/// and `Transfer-Encoding: gzip, chunked` was taken as chunked, its body handed on still
/// coded (section 6.1: a coding the server does not know is a 501).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_1_1_without_host_or_with_a_transfer_coding_is_refused() {
    let gw = Gateway::start("");
    let body = list_2026(1);
    let send = |host: bool, te: Option<&str>| {
        let host = if host {
            format!("Host: {}\r\n", address(&gw))
        } else {
            String::new()
        };
        let framing = match te {
            Some(te) => format!(
                "Transfer-Encoding: {te}\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
                body.len()
            ),
            None => format!("Content-Length: {}\r\n\r\n{body}", body.len()),
        };
        let mut s = TcpStream::connect(address(&gw)).unwrap();
        s.write_all(format!("POST /mcp/example HTTP/1.1\r\n{host}Authorization: Bearer {ALICE_KEY}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nMCP-Protocol-Version: 2026-07-28\r\nMcp-Method: tools/list\r\nConnection: close\r\n{framing}").as_bytes())
            .unwrap();
        read_answer(&mut s, Duration::from_secs(10))
    };
    let answer = send(false, None);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("Host"), "{answer}");
    for te in ["gzip, chunked", "chunked, chunked"] {
        let answer = send(true, Some(te));
        assert!(answer.starts_with("HTTP/1.1 501"), "{te}: {answer}");
    }
    // Plain chunked, and a Content-Length with Host, are served.
    assert!(send(true, Some("chunked")).starts_with("HTTP/1.1 200"));
    assert!(send(true, None).starts_with("HTTP/1.1 200"));
}

/// POSTs raw `body` bytes in `session` (none: no session header) with the usual MCP headers;
/// status and body text, or an error when no answer came within 10 s.
async fn post_bytes(
    url: &str,
    session: Option<&str>,
    body: &[u8],
) -> Result<(u16, String), String> {
    let mut req = http()
        .post(url)
        .timeout(Duration::from_secs(10))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .header("authorization", format!("Bearer {ALICE_KEY}"))
        .body(body.to_vec());
    if let Some(s) = session {
        req = req.header("mcp-session-id", s);
    }
    let resp = req.send().await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    Ok((status, resp.text().await.map_err(|e| e.to_string())?))
}

/// A body with a byte that is not UTF-8 inside a string the strict parse skips (a ping's
/// params) reached the server, which dropped it: the POST waited for ever. Such a body is not
/// JSON (RFC 8259 §8.1): it is refused with -32700 naming its id, as the wrapper refuses the
/// line, and the `tools/call` it names is recorded refused, also when refused for another
/// reason first (no session).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_is_not_utf8_is_refused_at_once_and_its_call_recorded() {
    let gw = Gateway::start("");
    let url = gw.endpoint();
    let session = raw_session(&url, ALICE_KEY).await;
    let ping = b"{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"ping\",\"params\":{\"x\":\"\xff\"}}";
    let (status, text) = post_bytes(&url, Some(&session), ping)
        .await
        .expect("the ping is answered at once");
    let answer = &messages(&text)[0];
    assert_eq!(answer["id"], 7, "{status} {text}");
    assert_eq!(answer["error"]["code"], -32700, "{status} {text}");
    let call = b"{\"jsonrpc\":\"2.0\",\"id\":8,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"arguments\":{\"text\":\"\xc3(\"}}}";
    let (status, text) = post_bytes(&url, Some(&session), call).await.unwrap();
    let answer = &messages(&text)[0];
    assert_eq!(answer["id"], 8, "{status} {text}");
    assert_eq!(answer["error"]["code"], -32700, "{status} {text}");
    let (status, text) = post_bytes(&url, None, call).await.unwrap();
    assert_eq!(status, 400, "{text}");
    // The session still works.
    let (status, _, text) = post(
        &url,
        Some(ALICE_KEY),
        Some(&session),
        r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"echo","arguments":{"text":"ok"}}}"#,
        &[],
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let events = gw.events();
    let refused: Vec<&Value> = events
        .iter()
        .filter(|e| e["tool_name"] == "echo" && e["result"] == "refused")
        .collect();
    // A refused pair in the session, and one for the sessionless refusal.
    assert_eq!(refused.len(), 4, "{events:#?}");
    let ran = events
        .iter()
        .filter(|e| e["event_type"] == "tool_access" && e["result"] != "refused")
        .count();
    assert_eq!(ran, 1, "only the valid call ran: {events:#?}");
}

/// `/mcp/<upstream>/` (a trailing slash, as URL libraries and client configs often add) was
/// refused with 404 "no upstream named \"example/\"": it is the same endpoint. Two slashes
/// are not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_with_a_trailing_slash_is_the_same_endpoint() {
    let gw = Gateway::start("");
    let url = format!("{}/", gw.endpoint());
    let session = raw_session(&url, ALICE_KEY).await;
    let (status, _, text) = post(
        &url,
        Some(ALICE_KEY),
        Some(&session),
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":"slash"}}}"#,
        &[],
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(messages(&text)[0]["result"]["content"][0]["text"], "slash");
    let (status, _, text) = post(&format!("{url}/"), Some(ALICE_KEY), None, INIT, &[]).await;
    assert_eq!(status, 404, "{text}");
    // Without a credential, a name that exists and one that does not look alike (401): the
    // upstreams' names are not given away (a hostile pass listed them by the 404s).
    let base = gw.endpoint();
    let missing = base.replace("/mcp/example", "/mcp/nosuch");
    for endpoint in [&base, &missing] {
        let (status, headers, text) = post(endpoint, None, None, INIT, &[]).await;
        assert_eq!(status, 401, "{endpoint}: {text}");
        assert!(headers.contains_key("www-authenticate"), "{endpoint}");
    }
    let (status, _, text) = post(&missing, Some(ALICE_KEY), None, INIT, &[]).await;
    assert_eq!(status, 404, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_cannot_start_is_a_502_with_the_requests_id_and_no_server_paths() {
    // From a hostile-input pass: the 502 carried `id: null` although the request's id was
    // readable, and told the client the server's command line and the config file's path.
    let gw = Gateway::start_upstream("\"/nonexistent/mcp-server\"", "", "");
    let url = gw.endpoint();
    let init = INIT.replace("\"id\":1", "\"id\":\"init-7\"");
    let (status, _, body) = post(&url, Some(ALICE_KEY), None, &init, &[]).await;
    let sessionless = call_2026("42", "echo", r#"{"text":"hi"}"#);
    let (status_2026, _, body_2026) =
        post_2026(&url, ALICE_KEY, &sessionless, Some("echo"), &[]).await;
    for (status, body, id) in [
        (status, body, serde_json::json!("init-7")),
        (status_2026, body_2026, serde_json::json!(42)),
    ] {
        assert_eq!(status, 502, "{body}");
        let answer: Value = serde_json::from_str(&body).expect("a JSON-RPC error");
        assert_eq!(answer["id"], id, "{answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("\"example\" could not be started"),
            "{answer}"
        );
        assert!(
            !body.contains("nonexistent") && !body.contains("proxy.toml"),
            "{answer}"
        );
    }
    // The operator still has the cause, in the trail.
    let refused = refusals(&gw, 502);
    assert_eq!(refused.len(), 2, "{refused:#?}");
    for event in &refused {
        assert!(
            event.to_string().contains("/nonexistent/mcp-server"),
            "{event:#}"
        );
    }
}

/// The client declines (or cancels, or unticks) the confirmation of a held call in a 2025
/// session. Found by a hostile pass with the Python and TypeScript SDKs: the call's -32010
/// came back as the 400 body of the POST that carried the client's answer, and the call's
/// own stream never got an answer (the SDKs timed out; the trail said `blocked`). The
/// answer's POST is accepted (202) and the call's stream carries its error. The same when
/// an unreadable answer comes in a 2025-03-26 batch with another, broken element (review
/// finding 4: the call's -32010 was the POST's 400 body): the batch's POST gets the refusal
/// of its broken element (400), the call's stream the call's error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_confirmation_answers_the_held_call_on_its_own_stream() {
    use std::time::Duration;
    let gw = Gateway::start(
        r#"
[risk]
confirm_timeout_ms = 20000
[risk.actions]
high = "confirm"
[[risk.rule]]
name = "shell in echo"
tools = ["echo"]
pointer = "/text"
detect = "shell_metacharacters"
level = "high"
"#,
    );
    let url = gw.endpoint();
    for (n, (answer, in_broken_batch)) in [
        (r#"{"action":"decline"}"#, false),
        (r#"{"action":"cancel"}"#, false),
        (r#"{"action":"accept","content":{"confirm":false}}"#, false),
        // Read two ways (the person may have seen the other copy): blocked, in a batch
        // whose other element is broken.
        (
            r#"{"action":"accept","content":{"confirm":true,"confirm":false}}"#,
            true,
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let version = if in_broken_batch {
            "2025-03-26"
        } else {
            "2025-06-18"
        };
        let init = INIT
            .replace(
                r#""capabilities":{}"#,
                r#""capabilities":{"elicitation":{}}"#,
            )
            .replace("2025-06-18", version);
        let (status, headers, body) = post(&url, Some(ALICE_KEY), None, &init, &[]).await;
        assert_eq!(status, 200, "{body}");
        let session = headers["mcp-session-id"].to_str().unwrap().to_string();
        let initialized = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
        let v = [("mcp-protocol-version", version)];
        let (status, _, _) = post(&url, Some(ALICE_KEY), Some(&session), initialized, &v).await;
        assert_eq!(status, 202);
        let mut held = http()
            .post(&url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("authorization", format!("Bearer {ALICE_KEY}"))
            .header("mcp-session-id", &session)
            .header("mcp-protocol-version", version)
            .body(r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"text":"a; b"}}}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(held.status().as_u16(), 200);
        let mut streamed = String::new();
        let read = |streamed: &String| -> Vec<Value> {
            streamed
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .filter_map(|d| serde_json::from_str(d.trim()).ok())
                .collect()
        };
        let question = loop {
            if let Some(q) = read(&streamed)
                .into_iter()
                .find(|m| m["method"] == "elicitation/create")
            {
                break q;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(20), held.chunk())
                .await
                .expect("the question in time")
                .unwrap()
                .expect("the stream open until the question");
            streamed.push_str(&String::from_utf8_lossy(&chunk));
        };
        let mut reply = format!(
            r#"{{"jsonrpc":"2.0","id":{},"result":{answer}}}"#,
            question["id"]
        );
        if in_broken_batch {
            // A number is no message: the batch is refused whole, the accept with it.
            reply = format!("[{reply},7]");
            let v = [("mcp-protocol-version", version)];
            let (status, _, body) = post(&url, Some(ALICE_KEY), Some(&session), &reply, &v).await;
            assert_eq!(status, 400, "answer {n}: {body}");
            assert!(!body.contains("-32010"), "answer {n}: {body}");
        } else {
            let (status, _, body) = post(&url, Some(ALICE_KEY), Some(&session), &reply, &[]).await;
            assert_eq!(status, 202, "answer {n}: {body}");
            assert!(body.is_empty(), "answer {n}: {body}");
        }
        let error = loop {
            if let Some(a) = read(&streamed).into_iter().find(|m| m["id"] == 7) {
                break a;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), held.chunk())
                .await
                .unwrap_or_else(|_| {
                    panic!("answer {n}: the call's error on its stream: {streamed}")
                })
                .unwrap()
                .expect("the stream open until the call's answer");
            streamed.push_str(&String::from_utf8_lossy(&chunk));
        };
        assert_eq!(error["error"]["code"], -32010, "answer {n}: {error}");
    }
    let blocked = gw
        .events()
        .into_iter()
        .filter(|e| e["tool_name"] == "echo" && e["result"] == "blocked")
        .count();
    assert_eq!(blocked, 4);
}

/// helper-89 F7: a body that is not JSON, sent without a session, was told that
/// Mcp-Session-Id is required (-32600): the official servers answer -32700 Parse error, and
/// the real fault is the body. Without a session it is answered as JSON-RPC answers it
/// first (with a session, the session's server answers it, as before).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_is_not_json_is_a_parse_error_before_any_session_question() {
    let gw = Gateway::start("");
    let url = gw.endpoint();
    for body in ["{\"jsonrpc\":\"2.0\",\"id\":1,", "", "not json"] {
        let (status, _, text) = post(&url, Some(ALICE_KEY), None, body, &[]).await;
        assert_eq!(status, 400, "{body:?}: {text}");
        let answer = &messages(&text)[0];
        assert_eq!(answer["error"]["code"], -32700, "{body:?}: {answer}");
        assert!(
            !answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains("Mcp-Session-Id"),
            "{answer}"
        );
    }
    // JSON that is no JSON-RPC message, or a request without a session: as before.
    let (status, _, text) = post(&url, Some(ALICE_KEY), None, r#"{"id":1}"#, &[]).await;
    assert_eq!(status, 400, "{text}");
    assert_eq!(messages(&text)[0]["error"]["code"], -32600, "{text}");
}

/// A stdio server whose `initialize` answer depends on the protocol version asked for:
/// `reject` gets a JSON-RPC error, `slow` its answer after 3 s, anything else a result.
const PICKY_SERVER: &str = r#"
import json, sys, time
for line in sys.stdin:
    m = json.loads(line)
    if "id" not in m or "method" not in m:
        continue
    if m["method"] == "initialize":
        v = m["params"]["protocolVersion"]
        if v == "reject":
            out = {"error": {"code": -32602, "message": "Unsupported protocol version"}}
        else:
            if v == "slow":
                time.sleep(3)
            out = {"result": {"protocolVersion": "2025-06-18", "capabilities": {}, "serverInfo": {"name": "picky", "version": "1"}}}
    else:
        out = {"result": {}}
    out.update({"jsonrpc": "2.0", "id": m["id"]})
    print(json.dumps(out), flush=True)
"#;

/// Found by a hostile pass (helper-92 F1, from modelcontextprotocol/python-sdk#3228): an
/// `initialize` the server refused, one the client gave up on, left a session (and its server)
/// that no client could use or end, counted against the principal's
/// `max_sessions_per_principal` until `session_idle_timeout_ms` (30 min): after a few, the
/// principal was refused every new session (429).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_initialize_the_server_refused_or_the_client_left_opens_no_session() {
    let dir = tempfile::tempdir().unwrap();
    let server = dir.path().join("picky.py");
    std::fs::write(&server, PICKY_SERVER).unwrap();
    let gw = Gateway::start_upstream(
        &format!("\"python3\", {:?}", server.display().to_string()),
        "max_sessions_per_principal = 1\nsession_evict_idle_ms = 600000",
        "",
    );
    let url = gw.endpoint();
    let init = |v: &str| INIT.replace("2025-06-18", v);
    let (status, headers, body) = post(&url, Some(ALICE_KEY), None, &init("reject"), &[]).await;
    assert!(
        headers.get("mcp-session-id").is_none(),
        "a refused initialize was given a session: {status} {body}"
    );
    assert_eq!(messages(&body)[0]["error"]["code"], -32602, "{body}");
    // The client gives up before the answer: its session goes with it.
    let left = http()
        .post(&url)
        .header("authorization", format!("Bearer {ALICE_KEY}"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(init("slow"))
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(left.is_err(), "the slow initialize was answered: {left:?}");
    // Either kept session would fill the principal's only place. The gateway learns that the
    // client left when its connection's end is read: on a busy machine, a moment later.
    let freed_by = Instant::now() + Duration::from_secs(10);
    let (status, headers, body) = loop {
        let answer = post(&url, Some(ALICE_KEY), None, INIT, &[]).await;
        if answer.0 != 429 || Instant::now() > freed_by {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status, 200, "{body}");
    let session = headers["mcp-session-id"].to_str().unwrap().to_string();
    // The cap still holds while that session is in use or idle for less than
    // session_evict_idle_ms.
    let (status, _, body) = post(&url, Some(ALICE_KEY), None, INIT, &[]).await;
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("session_evict_idle_ms"), "{body}");
    let (status, _, body) = post(
        &url,
        Some(ALICE_KEY),
        Some(&session),
        r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#,
        &[],
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

/// Found by a hostile pass (helper-92 F2, from modelcontextprotocol/java-sdk#471): clients
/// that end without DELETE (the official TypeScript SDK's `Client.close()` sends none) left
/// one session each, and the 33rd connection of their principal was refused (429) for half
/// an hour. At the cap, the principal's session idle longest (at least
/// `session_evict_idle_ms`) ends to make room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_principal_at_its_session_cap_replaces_its_session_idle_longest() {
    let gw = Gateway::start_with(
        "max_sessions_per_principal = 2\nsession_evict_idle_ms = 1000",
        "",
    );
    let url = gw.endpoint();
    let first = raw_session(&url, ALICE_KEY).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let second = raw_session(&url, ALICE_KEY).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // The second is used now: the first is the one idle longest.
    let ping = r#"{"jsonrpc":"2.0","id":5,"method":"ping"}"#;
    assert_eq!(
        post(&url, Some(ALICE_KEY), Some(&second), ping, &[])
            .await
            .0,
        200
    );
    let third = raw_session(&url, ALICE_KEY).await;
    assert_eq!(
        post(&url, Some(ALICE_KEY), Some(&first), ping, &[]).await.0,
        404,
        "the session idle longest is the one ended"
    );
    for kept in [&second, &third] {
        assert_eq!(
            post(&url, Some(ALICE_KEY), Some(kept), ping, &[]).await.0,
            200
        );
    }
    // Another principal's sessions are never ended for this one's, however long idle: with
    // both of hers just used, she is refused.
    let bobs = raw_session(&url, BOB_KEY).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for kept in [&second, &third] {
        assert_eq!(
            post(&url, Some(ALICE_KEY), Some(kept), ping, &[]).await.0,
            200
        );
    }
    let (status, _, body) = post(&url, Some(ALICE_KEY), None, INIT, &[]).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(
        post(&url, Some(BOB_KEY), Some(&bobs), ping, &[]).await.0,
        200
    );
}

/// Found by a hostile pass (helper-92 F3, after microsoft/vs-streamjsonrpc#695): a body that
/// begins with a UTF-8 byte order mark was refused as a parse error (400), where the SDKs'
/// HTTP servers read it (RFC 8259 section 8.1 lets a parser ignore one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_after_a_byte_order_mark_is_read() {
    let gw = Gateway::start("");
    let url = gw.endpoint();
    let (status, headers, body) =
        post(&url, Some(ALICE_KEY), None, &format!("\u{feff}{INIT}"), &[]).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        messages(&body)[0]["result"]["serverInfo"].is_object(),
        "{body}"
    );
    let session = headers["mcp-session-id"].to_str().unwrap().to_string();
    let call = "\u{feff}{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"arguments\":{\"text\":\"after a BOM\"}}}";
    let (status, _, body) = post(&url, Some(ALICE_KEY), Some(&session), call, &[]).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("after a BOM"), "{body}");
    // A byte order mark inside the text is not one before it: still not JSON.
    let inside = format!("{{\u{feff}{}", &INIT[1..]);
    assert_eq!(post(&url, Some(ALICE_KEY), None, &inside, &[]).await.0, 400);
}

/// Found by review (helper-93 L6): a new session entered the table only once its server ran,
/// so `initialize`s racing at `max_sessions_per_principal` all passed it (4 of 8 at a cap of
/// 2). Sessions being started count from the check that admits them. The gateway's
/// `max_sessions` is held the same way (its window, between the check and the count of
/// running servers, had no await in it and is not reached here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initializes_racing_at_a_session_cap_do_not_pass_it() {
    async fn race(url: &str, key: &'static str, n: usize) -> Vec<(u16, String)> {
        let mut tasks = Vec::new();
        for _ in 0..n {
            let url = url.to_string();
            tasks.push(tokio::spawn(async move {
                let (status, _, body) = post(&url, Some(key), None, INIT, &[]).await;
                (status, body)
            }));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    }
    for (settings, cap) in [
        ("max_sessions_per_principal = 2", 2),
        ("max_sessions = 3\nmax_sessions_per_principal = 32", 3),
    ] {
        let gw = Gateway::start_with(settings, "");
        let url = gw.endpoint();
        let got = race(&url, ALICE_KEY, 8).await;
        let opened = got.iter().filter(|(s, _)| *s == 200).count();
        let refused: Vec<&String> = got
            .iter()
            .filter(|(s, _)| *s == 429)
            .map(|(_, b)| b)
            .collect();
        assert_eq!(opened, cap, "{settings}: {got:?}");
        assert_eq!(refused.len(), 8 - cap, "{settings}: {got:?}");
        assert!(
            refused.iter().all(|b| b.contains("max_sessions")),
            "{settings}: {refused:?}"
        );
    }
}
