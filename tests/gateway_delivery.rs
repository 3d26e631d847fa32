//! Whether the gateway's answers reached their clients, as the trail tells it: a call whose
//! response can no longer reach any client (its HTTP request closed and, for an SSE stream,
//! never resumed with `Last-Event-ID`) gets a `shutdown` failure after its end, saying the
//! answer was not delivered; a response a client resumed and read gets none.

mod common;

use std::time::{Duration, Instant};

use common::gateway::*;
use serde_json::Value;

/// The (event type, result) of every event of the `slow` call with request id `id`.
fn kinds(events: &[Value], id: &Value) -> Vec<(String, String)> {
    events
        .iter()
        .filter(|e| e["tool_name"] == "slow" && &e["metadata"]["request_id"] == id)
        .map(|e| {
            (
                e["event_type"].as_str().unwrap_or("").to_string(),
                e["result"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// Polls the trail until the call `id` has `n` events (or 20 s pass); returns them all.
async fn wait_for(gw: &Gateway, id: &Value, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let events = gw.events();
        if kinds(&events, id).len() >= n || Instant::now() > deadline {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The `shutdown` failure recorded for an undelivered answer to call `id`, if any.
fn not_delivered(events: &[Value], id: &Value) -> Option<Value> {
    events
        .iter()
        .find(|e| {
            e["tool_name"] == "slow"
                && &e["metadata"]["request_id"] == id
                && e["event_type"] == "tool_failure"
                && e["result"] == "shutdown"
        })
        .cloned()
}

/// Waits for call `id`'s events and checks they are its access, its success, then the
/// `shutdown` saying its answer was not delivered; returns every event of the trail.
async fn answered_but_not_delivered(gw: &Gateway, id: &Value) -> Vec<Value> {
    let events = wait_for(gw, id, 3).await;
    assert_eq!(
        kinds(&events, id),
        [
            ("tool_access".into(), "initiated".into()),
            ("tool_execution".into(), "success".into()),
            ("tool_failure".into(), "shutdown".into()),
        ],
        "call {id}: {events:#?}"
    );
    events
}

/// Starts a 2025-11-25 POST of a `slow` call with id `id` accepting `accept`.
async fn slow_call(
    url: &str,
    session: &str,
    id: u32,
    ms: u32,
    accept: &str,
    timeout: Option<Duration>,
) -> reqwest::Result<reqwest::Response> {
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"slow","arguments":{{"ms":{ms},"steps":4}},"_meta":{{"progressToken":"p{id}"}}}}}}"#
    );
    let mut client = reqwest::Client::builder();
    if let Some(t) = timeout {
        client = client.timeout(t);
    }
    client
        .build()
        .unwrap()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", accept)
        .header("authorization", format!("Bearer {ALICE_KEY}"))
        .header("mcp-session-id", session)
        .header("mcp-protocol-version", "2025-11-25")
        .body(body)
        .send()
        .await
}

/// Reads SSE events (keep-alive comments skipped) until one with an id; returns the id.
async fn first_event_id(resp: &mut reqwest::Response) -> String {
    let mut buf = String::new();
    loop {
        if let Some(id) = buf.lines().find_map(|l| l.strip_prefix("id: "))
            && buf.contains("\n\n")
        {
            return id.to_string();
        }
        let chunk = tokio::time::timeout(Duration::from_secs(10), resp.chunk())
            .await
            .expect("an SSE event within 10 s")
            .unwrap()
            .expect("the stream open");
        buf.push_str(std::str::from_utf8(&chunk).unwrap());
    }
}

/// A GET on the session's endpoint for its SSE stream (MCP "Listening for Messages from the
/// Server"), as the client of revision `version` sends it, resuming after event `last` if
/// given (`Last-Event-ID`).
async fn get_stream(
    url: &str,
    session: &str,
    version: &str,
    last: Option<&str>,
) -> reqwest::Response {
    let mut req = http()
        .get(url)
        .header("accept", "text/event-stream")
        .header("authorization", format!("Bearer {ALICE_KEY}"))
        .header("mcp-session-id", session)
        .header("mcp-protocol-version", version);
    if let Some(last) = last {
        req = req.header("last-event-id", last);
    }
    req.send().await.unwrap()
}

/// Resumes a cut stream of `session` after event `last` (GET with `Last-Event-ID`).
async fn resume(url: &str, session: &str, last: &str) -> reqwest::Response {
    let resumed = get_stream(url, session, "2025-11-25", Some(last)).await;
    assert_eq!(resumed.status().as_u16(), 200);
    resumed
}

/// Reads `resp` until `needle` shows (or the stream ends); what it read.
async fn read_until(resp: &mut reqwest::Response, needle: &str) -> String {
    let mut body = String::new();
    while !body.contains(needle) {
        let chunk = tokio::time::timeout(Duration::from_secs(10), resp.chunk())
            .await
            .expect("more of the stream within 10 s")
            .unwrap();
        let Some(chunk) = chunk else { break };
        body.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    body
}

async fn delete(url: &str, session: &str) {
    let resp = http()
        .delete(url)
        .header("authorization", format!("Bearer {ALICE_KEY}"))
        .header("mcp-session-id", session)
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_answer_whose_client_left_is_recorded_as_not_delivered() {
    let gw = Gateway::start("");
    let url = gw.endpoint();
    let session = raw_session(&url, ALICE_KEY).await;
    // JSON only: the answer cannot be resumed once the client has gone.
    let sent = slow_call(
        &url,
        &session,
        7,
        900,
        "application/json",
        Some(Duration::from_millis(300)),
    )
    .await;
    assert!(
        sent.is_err(),
        "the call finished inside the client's timeout"
    );
    let id = Value::from(7);
    let events = answered_but_not_delivered(&gw, &id).await;
    let failure = not_delivered(&events, &id).unwrap();
    assert_eq!(
        failure["metadata"]["failure_side"], "client",
        "{failure:#?}"
    );
    let text = failure.to_string();
    assert!(
        text.contains("not delivered") && text.contains("closed the HTTP request"),
        "{failure:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sse_answer_cut_and_never_resumed_is_lost_when_the_session_ends_and_a_resumed_one_is_not()
 {
    let gw = Gateway::start("");
    let url = gw.endpoint();
    let session = raw_session(&url, ALICE_KEY).await;
    let accept = "application/json, text/event-stream";

    // Call 8: cut after its first progress event, resumed after its answer was sent.
    let mut resp = slow_call(&url, &session, 8, 600, accept, None)
        .await
        .unwrap();
    let resume_from = first_event_id(&mut resp).await;
    drop(resp);
    // Call 9: cut the same way, never resumed.
    let mut resp = slow_call(&url, &session, 9, 600, accept, None)
        .await
        .unwrap();
    first_event_id(&mut resp).await;
    drop(resp);

    let (eight, nine) = (Value::from(8), Value::from(9));
    wait_for(&gw, &eight, 2).await;
    let events = wait_for(&gw, &nine, 2).await;
    for id in [&eight, &nine] {
        assert_eq!(
            kinds(&events, id),
            [
                ("tool_access".into(), "initiated".into()),
                ("tool_execution".into(), "success".into()),
            ],
            "the answer waits for a client that resumes: {events:#?}"
        );
    }

    let mut resumed = resume(&url, &session, &resume_from).await;
    let body = read_until(&mut resumed, r#""id":8"#).await;
    assert!(body.contains(r#""result""#), "{body}");

    delete(&url, &session).await;
    let events = wait_for(&gw, &nine, 3).await;
    let failure = not_delivered(&events, &nine).unwrap_or_else(|| panic!("{events:#?}"));
    assert!(
        failure.to_string().contains("did not resume it"),
        "{failure:#?}"
    );
    assert_eq!(
        not_delivered(&events, &eight),
        None,
        "the resumed answer was delivered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_calls_stream_ends() {
    // Found by a fresh pair of eyes: after notifications/cancelled the call's POST stream
    // sent keep-alives for ever, holding the session past its idle timeout and a stream
    // slot. (Its id stays used: MCP forbids reusing a request id within a session.)
    let gw = Gateway::start("");
    let url = gw.endpoint();
    let session = raw_session(&url, ALICE_KEY).await;
    let accept = "application/json, text/event-stream";
    let mut resp = slow_call(&url, &session, 11, 8000, accept, None)
        .await
        .unwrap();
    first_event_id(&mut resp).await;
    let (status, _, text) = post(
        &url,
        Some(ALICE_KEY),
        Some(&session),
        r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":11,"reason":"enough"}}"#,
        &[("mcp-protocol-version", "2025-11-25")],
    )
    .await;
    assert_eq!(status, 202, "{text}");
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(Some(_)) = resp.chunk().await {}
    })
    .await;
    assert!(ended.is_ok(), "the cancelled call's stream is still open");
    let again = r#"{"jsonrpc":"2.0","id":12,"method":"tools/call","params":{"name":"echo","arguments":{"text":"again"}}}"#;
    let (status, _, text) = post(
        &url,
        Some(ALICE_KEY),
        Some(&session),
        again,
        &[("mcp-protocol-version", "2025-11-25")],
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("again"), "{text}");
    let events = gw.events();
    assert!(
        events
            .iter()
            .any(|e| e["tool_name"] == "slow" && e["result"] == "cancelled"),
        "{events:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2025_11_25_stream_is_primed_so_a_client_cut_before_any_message_can_resume() {
    // Found by a fresh pair of eyes: without the priming event MCP 2025-11-25 recommends (an
    // id and empty data), a client cut before the first message had no id to resume from.
    let gw = Gateway::start("");
    let url = gw.endpoint();
    let session = raw_session(&url, ALICE_KEY).await;
    let mut resp = slow_call(
        &url,
        &session,
        21,
        400,
        "application/json, text/event-stream",
        None,
    )
    .await
    .unwrap();
    let chunk = tokio::time::timeout(Duration::from_secs(5), resp.chunk())
        .await
        .expect("the priming event at once")
        .unwrap()
        .unwrap();
    let text = std::str::from_utf8(&chunk).unwrap();
    let primed = text
        .strip_prefix("id: ")
        .and_then(|t| t.strip_suffix("\ndata: \n\n"))
        .unwrap_or_else(|| panic!("not a priming event: {text:?}"));
    drop(resp);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let mut resumed = resume(&url, &session, primed).await;
    let body = read_until(&mut resumed, r#""id":21"#).await;
    assert!(body.contains(r#""result""#), "{body}");

    // Earlier revisions get no priming event: their clients may parse every data field.
    let (status, _, text) = post(
        &url,
        Some(ALICE_KEY),
        Some(&session),
        r#"{"jsonrpc":"2.0","id":22,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"}}}"#,
        &[("mcp-protocol-version", "2025-06-18")],
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert!(!text.contains("data: \n"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_inside_a_refused_batch_releases_nothing() {
    // Found by a review: the gateway released the POST waiting for a call named by a
    // notifications/cancelled inside a batch the pipeline refused whole, so the call ran on
    // while its client's stream ended with no answer.
    let gw = Gateway::start("");
    let url = gw.endpoint();
    let session = raw_session(&url, ALICE_KEY).await;
    let mut resp = slow_call(
        &url,
        &session,
        31,
        600,
        "application/json, text/event-stream",
        None,
    )
    .await
    .unwrap();
    let (status, _, text) = post(
        &url,
        Some(ALICE_KEY),
        Some(&session),
        r#"[{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":31}},[1]]"#,
        &[("mcp-protocol-version", "2025-03-26")],
    )
    .await;
    assert_ne!(status, 202, "the batch is refused whole: {text}");
    let body = read_until(&mut resp, r#""id":31"#).await;
    assert!(
        body.contains(r#""id":31"#) && body.contains(r#""result""#),
        "the call's stream ended without its answer: {body}"
    );
}

/// The JSON-RPC messages of an SSE body, in order (priming events and comments skipped).
fn sse_messages(body: &str) -> Vec<Value> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| !d.trim().is_empty())
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

/// Found by a fresh pair of eyes: a server's `notifications/progress` went on whichever POST
/// stream was open (6 of 9 on another call's stream), so a client saw a call's last progress
/// after its result, or on a stream it had stopped reading; and progress sent while a stream
/// was cut went elsewhere instead of being replayed on resume. Each goes on the stream of the
/// request that named its token, before that request's result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_goes_on_the_stream_of_the_request_that_asked_for_it() {
    let gw = Gateway::start("");
    let url = gw.endpoint();
    let session = raw_session(&url, ALICE_KEY).await;
    let accept = "application/json, text/event-stream";
    let reads = (11..=13).map(|id| {
        let (url, session) = (url.clone(), session.clone());
        tokio::spawn(async move {
            let mut resp = slow_call(&url, &session, id, 800, accept, None)
                .await
                .unwrap();
            (id, read_until(&mut resp, "\"result\"").await)
        })
    });
    let mut streams = Vec::new();
    for r in reads.collect::<Vec<_>>() {
        streams.push(r.await.unwrap());
    }
    for (id, body) in &streams {
        let messages = sse_messages(body);
        let progress: Vec<&Value> = messages
            .iter()
            .filter(|m| m["method"] == "notifications/progress")
            .collect();
        assert!(
            progress
                .iter()
                .all(|p| p["params"]["progressToken"] == format!("p{id}")),
            "call {id}'s stream carried another call's progress: {body}"
        );
        assert_eq!(progress.len(), 4, "call {id}: {body}");
        assert_eq!(
            messages.last().unwrap()["id"],
            *id,
            "the result comes last: {body}"
        );
    }

    // Cut before any progress, resumed after the answer: the progress is replayed with it.
    let mut resp = slow_call(&url, &session, 14, 400, accept, None)
        .await
        .unwrap();
    let primed = first_event_id(&mut resp).await;
    drop(resp);
    let id = Value::from(14);
    wait_for(&gw, &id, 2).await;
    let mut resumed = resume(&url, &session, &primed).await;
    let body = read_until(&mut resumed, r#""id":14"#).await;
    let progress = sse_messages(&body)
        .into_iter()
        .filter(|m| m["params"]["progressToken"] == "p14")
        .count();
    assert_eq!(progress, 4, "{body}");
}

/// Found by a fresh pair of eyes: a server that answers a call after the client cancelled it
/// (its tool cannot be interrupted). The gateway had ended the cancelled request's stream, so
/// no client got the answer, yet the trail said "the answer was forwarded" and nothing more.
/// Now a `shutdown` (not delivered) follows the late answer's event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_answer_to_a_cancelled_call_that_reaches_no_client_is_recorded_so() {
    let server = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/deaf_to_cancel.py");
    let gw = Gateway::start_upstream(&format!("\"python3\", \"{server}\""), "", "");
    let url = gw.endpoint();
    let session = raw_session(&url, ALICE_KEY).await;
    let call = r#"{"jsonrpc":"2.0","id":21,"method":"tools/call","params":{"name":"slow","arguments":{"ms":800}}}"#;
    let (url2, session2) = (url.clone(), session.clone());
    let waiting =
        tokio::spawn(async move { post(&url2, Some(ALICE_KEY), Some(&session2), call, &[]).await });
    let id = Value::from(21);
    wait_for(&gw, &id, 1).await;
    let cancel = r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":21,"reason":"user"}}"#;
    let (status, _, text) = post(&url, Some(ALICE_KEY), Some(&session), cancel, &[]).await;
    assert_eq!(status, 202, "{text}");
    let (_, _, body) = waiting.await.unwrap();
    assert!(!body.contains("done anyway"), "{body}");
    let events = wait_for(&gw, &id, 4).await;
    assert_eq!(
        kinds(&events, &id),
        [
            ("tool_access".into(), "initiated".into()),
            ("tool_failure".into(), "cancelled".into()),
            ("tool_execution".into(), "success".into()),
            ("tool_failure".into(), "shutdown".into()),
        ],
        "{events:#?}"
    );
    let failure = not_delivered(&events, &id).unwrap();
    assert!(
        failure.to_string().contains("not delivered"),
        "{failure:#?}"
    );
}

/// helper-122: the official TypeScript client POSTs a 2026-07-28 `notifications/cancelled`
/// without `Mcp-Method` (the transport requires it on requests only, and the SDKs' servers
/// take such a notification). The gateway refused it with 400 (-32020, "an attempted
/// smuggling"), recorded a refusal and the client saw a transport error; it is taken now. A
/// notification whose header names another method is still refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2026_notification_without_mcp_method_is_taken() {
    let gw = Gateway::start("");
    let url = gw.endpoint();
    let cancel = format!(
        r#"{{"jsonrpc":"2.0","method":"notifications/cancelled","params":{{"requestId":41,"reason":"user",{META_2026}}}}}"#
    );
    let wrong = [
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
    ];
    let (status, _, text) = post(&url, Some(ALICE_KEY), None, &cancel, &wrong).await;
    assert_eq!(status, 400, "a header that names another method: {text}");
    let refused = |gw: &Gateway| {
        gw.events()
            .iter()
            .filter(|e| e["result"] == "refused")
            .count()
    };
    let before = refused(&gw);
    assert_eq!(before, 1, "{:#?}", gw.events());
    let version = [("mcp-protocol-version", "2026-07-28")];
    let (status, _, text) = post(&url, Some(ALICE_KEY), None, &cancel, &version).await;
    assert_eq!(status, 202, "{text}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(refused(&gw), before, "{:#?}", gw.events());
}

/// The peak resident memory of process `pid`, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

/// Found by a fresh pair of eyes: a client that stops reading its stream while a chatty
/// server writes made the gateway hold everything (46 → 406 MB for 3,000 notifications of
/// 100 KB): streams were unbounded channels. A session now holds at most 32 MiB queued for
/// its streams, then waits (and its server with it) until the client reads; nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_holds_its_session_not_the_gateways_memory() {
    use std::io::{Read, Write};
    let server = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/flood_server.py");
    let gw = Gateway::start_upstream(&format!("\"python3\", \"{server}\""), "", "");
    let url = gw.endpoint();
    let session = raw_session(&url, ALICE_KEY).await;
    let before = peak_rss_kib(gw.pid());
    let (count, size) = (2000, 60_000);
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":31,"method":"tools/call","params":{{"name":"flood","arguments":{{"count":{count},"size":{size}}}}}}}"#
    );
    let address = url.trim_start_matches("http://");
    let (host, path) = address.split_once('/').unwrap();
    let mut s = std::net::TcpStream::connect(host).unwrap();
    write!(
        s,
        "POST /{path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\nauthorization: Bearer {ALICE_KEY}\r\nmcp-session-id: {session}\r\nmcp-protocol-version: 2025-06-18\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    // The client reads nothing while the server writes 120 MB.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let held = peak_rss_kib(gw.pid()).saturating_sub(before);
    // Then it reads: every notification comes, then the result.
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = s.read(&mut buf).expect("the rest of the stream");
        assert!(n > 0, "the stream ended early");
        got.extend_from_slice(&buf[..n]);
        let tail = &got[got.len().saturating_sub(n + 16)..];
        if tail.windows(11).any(|w| w == b"\"flooded\"}]") {
            break;
        }
    }
    let notes = got
        .windows(21)
        .filter(|w| *w == b"notifications/message")
        .count();
    assert_eq!(notes, count, "every notification reached the client");
    assert!(
        held < 80 * 1024,
        "the gateway grew by {} MiB holding what its client did not read",
        held / 1024
    );
}

/// POSTs a 2025-03-26 `batch` in `session`, accepting JSON only; the client gives up after
/// `timeout` (none: it waits for the answer).
async fn batch_as_json(
    url: &str,
    session: &str,
    batch: &str,
    timeout: Option<Duration>,
) -> reqwest::Result<reqwest::Response> {
    let mut client = reqwest::Client::builder();
    if let Some(t) = timeout {
        client = client.timeout(t);
    }
    client
        .build()
        .unwrap()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .header("authorization", format!("Bearer {ALICE_KEY}"))
        .header("mcp-session-id", session)
        .header("mcp-protocol-version", "2025-03-26")
        .body(batch.to_string())
        .send()
        .await
}

/// A 2025-03-26 batch answered as JSON goes out whole, once every response is in. A client
/// that left after the first response came in lost it with the rest, but only the calls still
/// running when it left were recorded as not delivered: the first call's answer was lost with
/// no trace. Every call of the batch now gets its `shutdown`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_batch_answer_whose_client_left_records_every_call_as_not_delivered() {
    let gw = Gateway::start("");
    let url = gw.endpoint();
    let session = raw_session(&url, ALICE_KEY).await;
    let batch = r#"[{"jsonrpc":"2.0","id":41,"method":"tools/call","params":{"name":"slow","arguments":{"ms":10,"steps":1}}},{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"slow","arguments":{"ms":900,"steps":1}}}]"#;
    let sent = batch_as_json(&url, &session, batch, Some(Duration::from_millis(400))).await;
    assert!(
        sent.is_err(),
        "the batch was answered inside the client's timeout"
    );
    for id in [41, 42] {
        answered_but_not_delivered(&gw, &Value::from(id)).await;
    }
    // A batch whose client stays gets its answers as JSON, and no such event.
    let later = batch
        .replace("41", "43")
        .replace("42", "44")
        .replace("900", "20");
    let resp = batch_as_json(&url, &session, &later, None).await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    let text = resp.text().await.unwrap();
    assert_eq!(
        messages(&text)[0].as_array().map(Vec::len),
        Some(2),
        "{text}"
    );
    let events = wait_for(&gw, &Value::from(44), 2).await;
    assert!(
        not_delivered(&events, &Value::from(43)).is_none()
            && not_delivered(&events, &Value::from(44)).is_none(),
        "{events:#?}"
    );
}

/// A JSON batch that begins with `tools/list` has its answers read through the step that
/// learns the tools' `Mcp-Param-*` bindings. That step was a task between the stream and its
/// request: it kept the stream looking live after the client left, so the batch's last answer
/// counted as delivered, and with it every call of the batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_batch_opening_with_tools_list_whose_client_left_is_recorded_as_not_delivered() {
    let gw = Gateway::start("");
    let url = gw.endpoint();
    let session = raw_session(&url, ALICE_KEY).await;
    let batch = r#"[{"jsonrpc":"2.0","id":51,"method":"tools/list"},{"jsonrpc":"2.0","id":52,"method":"tools/call","params":{"name":"slow","arguments":{"ms":900,"steps":1}}}]"#;
    let sent = batch_as_json(&url, &session, batch, Some(Duration::from_millis(400))).await;
    assert!(
        sent.is_err(),
        "the batch was answered inside the client's timeout"
    );
    answered_but_not_delivered(&gw, &Value::from(52)).await;
}

/// The lenient test server writing integer ids back as strings (`"21"` for 21), as some
/// servers do (python-sdk#961); `log` is where it notes what it ran.
fn string_id_server(log: &std::path::Path) -> String {
    let server = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/lenient_server.py");
    format!(
        "\"python3\", \"{server}\", {:?}, \"string-ids\"",
        log.display().to_string()
    )
}

/// Found by a fresh pair of eyes: a server answering request 21 with id `"21"` is answering it
/// for the official SDKs (they read ids as numbers), but the gateway waited for an exact `21`:
/// the POST hung until `call_timeout_ms` and the trail said `timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_naming_the_request_as_a_string_reaches_its_stream_and_ends_its_call() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start_upstream(&string_id_server(&dir.path().join("ran")), "", "");
    let url = gw.endpoint();
    let session = raw_session(&url, ALICE_KEY).await;
    let call = r#"{"jsonrpc":"2.0","id":21,"method":"tools/call","params":{"name":"slow","arguments":{"ms":10}}}"#;
    let (status, _, body) = tokio::time::timeout(
        Duration::from_secs(20),
        post(&url, Some(ALICE_KEY), Some(&session), call, &[]),
    )
    .await
    .expect("the answer reaches the POST, not limits.call_timeout_ms");
    assert_eq!(status, 200, "{body}");
    let answer = messages(&body)
        .into_iter()
        .find(|m| m.get("result").is_some())
        .unwrap_or_else(|| panic!("no answer in {body}"));
    // Under the request's own id, as the trail paired it.
    assert_eq!(answer["id"], 21, "{body}");
    let id = Value::from(21);
    let events = wait_for(&gw, &id, 2).await;
    assert_eq!(
        kinds(&events, &id),
        [
            ("tool_access".into(), "initiated".into()),
            ("tool_execution".into(), "success".into()),
        ],
        "{events:#?}"
    );
}

/// helper-114 F2 through the gateway: the rmcp example server answers a call whose id is past
/// `i64` with an error that has no id. The call's POST gets it at once under the call's id,
/// digit for digit (streams route answers by id: it waited for ever), and the trail ends the
/// call with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_without_an_id_reaches_the_post_of_the_one_call_the_server_could_not_read() {
    let gw = Gateway::start("");
    let url = gw.endpoint();
    let session = raw_session(&url, ALICE_KEY).await;
    let call = r#"{"jsonrpc":"2.0","id":12345678901234567890,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"}}}"#;
    let (status, _, body) = tokio::time::timeout(
        Duration::from_secs(20),
        post(&url, Some(ALICE_KEY), Some(&session), call, &[]),
    )
    .await
    .expect("the error reaches the POST");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""id":12345678901234567890,"#), "{body}");
    let answer = messages(&body)
        .into_iter()
        .find(|m| m.get("error").is_some())
        .unwrap_or_else(|| panic!("no error in {body}"));
    assert_eq!(
        answer["error"]["code"], -32600,
        "the server's error: {body}"
    );
    let id = Value::from(12345678901234567890u64);
    let deadline = Instant::now() + Duration::from_secs(20);
    let kinds = loop {
        let kinds: Vec<(String, String)> = gw
            .events()
            .iter()
            .filter(|e| e["metadata"]["request_id"] == id)
            .map(|e| (e["event_type"].to_string(), e["result"].to_string()))
            .collect();
        if kinds.len() >= 2 || Instant::now() > deadline {
            break kinds;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        kinds,
        [
            (r#""tool_access""#.into(), r#""initiated""#.into()),
            (r#""tool_failure""#.into(), r#""jsonrpc_error""#.into()),
        ]
    );
    // helper-121 F1b: a ping the server cannot read gets its error on its POST too.
    let ping = r#"{"jsonrpc":"2.0","id":12345678901234567899,"method":"ping"}"#;
    let (status, _, body) = tokio::time::timeout(
        Duration::from_secs(20),
        post(&url, Some(ALICE_KEY), Some(&session), ping, &[]),
    )
    .await
    .expect("the ping's error reaches its POST");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""id":12345678901234567899,"#), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_answer_in_a_servers_batch_is_recorded_not_delivered_and_reaches_no_stream() {
    // The server answers call 31 twice in one JSON-RPC batch. The client gets the first
    // answer on its POST; the second is the call answered again, not delivered: it must not
    // reach the session's GET stream as if it were news, and the trail says so.
    let server = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/deaf_to_cancel.py");
    let gw = Gateway::start_upstream(&format!("\"python3\", \"{server}\""), "", "");
    let url = gw.endpoint();
    let session = raw_session(&url, ALICE_KEY).await;
    let mut listening = get_stream(&url, &session, "2025-06-18", None).await;
    assert_eq!(listening.status().as_u16(), 200);
    let call = r#"{"jsonrpc":"2.0","id":31,"method":"tools/call","params":{"name":"slow","arguments":{"ms":50,"batch":true,"times":2}}}"#;
    let (status, _, body) = post(&url, Some(ALICE_KEY), Some(&session), call, &[]).await;
    assert_eq!(status, 200, "{body}");
    let got = messages(&body);
    assert_eq!(got.len(), 1, "{body}");
    assert_eq!(got[0]["id"], 31, "{body}");
    let id = Value::from(31);
    let events = wait_for(&gw, &id, 4).await;
    assert_eq!(
        kinds(&events, &id),
        [
            ("tool_access".into(), "initiated".into()),
            ("tool_execution".into(), "success".into()),
            ("tool_execution".into(), "success".into()),
            ("tool_failure".into(), "shutdown".into()),
        ],
        "{events:#?}"
    );
    let mut heard = String::new();
    let until = Instant::now() + Duration::from_millis(1500);
    while let Ok(Ok(Some(chunk))) = tokio::time::timeout_at(until.into(), listening.chunk()).await {
        heard.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(
        !heard.contains("done anyway"),
        "the GET stream got: {heard}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sse_answer_sent_into_a_connection_that_then_died_can_be_resumed() {
    // Found by a hostile pass: once a POST stream's answer had gone into a live connection the
    // stream was forgotten, so a client whose connection died before the bytes reached it
    // (a reset by a proxy or a NAT) resumed with `Last-Event-ID` and got nothing, while the
    // trail said the answer was delivered. Here the client reads the whole stream and then
    // resumes it, as one whose last events were lost on the way would.
    let gw = Gateway::start("");
    let url = gw.endpoint();
    let session = raw_session(&url, ALICE_KEY).await;
    let mut resp = slow_call(
        &url,
        &session,
        31,
        200,
        "application/json, text/event-stream",
        None,
    )
    .await
    .unwrap();
    let first = first_event_id(&mut resp).await;
    let body = read_until(&mut resp, r#""id":31"#).await;
    assert!(body.contains(r#""result""#), "{body}");
    drop(resp);
    let mut resumed = resume(&url, &session, &first).await;
    let again = read_until(&mut resumed, r#""id":31"#).await;
    assert!(
        again.contains(r#""result""#),
        "the answer replayed: {again}"
    );
    // The resumed connection can die too (helper-72 F3: a stream replayed whole was
    // forgotten at once): a second resume replays it again.
    drop(resumed);
    let mut twice = resume(&url, &session, &first).await;
    let third = read_until(&mut twice, r#""id":31"#).await;
    assert!(
        third.contains(r#""result""#),
        "the answer replayed a second time: {third}"
    );
    // Replayed, not recorded again: one access and one end.
    let events = wait_for(&gw, &Value::from(31), 2).await;
    assert_eq!(
        kinds(&events, &Value::from(31)),
        [
            ("tool_access".into(), "initiated".into()),
            ("tool_execution".into(), "success".into()),
        ],
        "{events:#?}"
    );
}

/// A gateway in front of the lenient server in "many-pings" mode (each call answered at
/// once, then as many `ping` requests of the server's as its `pings` argument says, the
/// answers logged in `ran` in the folder returned), and a session opened on it.
async fn pinging_gateway() -> (tempfile::TempDir, Gateway, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("ran");
    let server = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/lenient_server.py");
    let gw = Gateway::start_upstream(
        &format!(
            "\"python3\", \"{server}\", {:?}, \"many-pings\"",
            log.display().to_string()
        ),
        "",
        "",
    );
    let url = gw.endpoint();
    let session = raw_session(&url, ALICE_KEY).await;
    (dir, gw, url, session)
}

/// Found by a hostile pass (helper-72 F4): server requests made while the client had no
/// stream open waited in the session's backlog of 256, and the oldest were dropped past it.
/// A dropped request was never answered, so a server waiting on it (often with no timeout of
/// its own) hung. Each one dropped now gets an error back; the newest still reach the client's
/// GET stream when it opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_request_dropped_from_a_full_backlog_is_answered_with_an_error() {
    let (dir, _gw, url, session) = pinging_gateway().await;
    let log = dir.path().join("ran");
    // Answered at once; the server's 300 pings come after the POST ended, with no GET stream.
    let call = r#"{"jsonrpc":"2.0","id":41,"method":"tools/call","params":{"name":"echo","arguments":{"pings":300}}}"#;
    let (status, _, body) = post(&url, Some(ALICE_KEY), Some(&session), call, &[]).await;
    assert_eq!(status, 200, "{body}");
    let answers = |log: &std::path::Path| -> Vec<Value> {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|v| v.get("ping_answer").cloned())
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while answers(&log).len() < 44 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = answers(&log);
    // The 44 oldest (each error goes back on its own, so not always in order).
    let mut ids: Vec<String> = got
        .iter()
        .map(|a| a["id"].as_str().unwrap_or("").to_string())
        .collect();
    ids.sort();
    let mut expected: Vec<String> = (0..44).map(|k| format!("many-{k}")).collect();
    expected.sort();
    assert_eq!(ids, expected, "{got:#?}");
    for a in &got {
        let message = a["error"]["message"].as_str().unwrap_or("");
        assert!(message.contains("no GET stream"), "{a}");
        assert_eq!(a["error"]["code"], -32603, "{a}");
    }
    // The 256 newest wait for the client's GET stream, and reach it.
    let mut listening = get_stream(&url, &session, "2025-06-18", None).await;
    assert_eq!(listening.status().as_u16(), 200);
    let heard = read_until(&mut listening, "\"many-299\"").await;
    assert!(heard.contains("\"many-44\""), "{heard}");
    assert!(!heard.contains("\"many-43\""), "{heard}");
}

/// Found by a hostile pass (helper-72 F3): a GET whose `Last-Event-ID` named a stream the
/// session no longer had opened a new GET stream in place of the live one, cutting that
/// connection (whose client would resume it in turn, cutting this one). It is now refused
/// with 409 while another connection holds the GET stream, which keeps the server's messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_an_unknown_stream_leaves_the_live_get_stream_alone() {
    let (_dir, _gw, url, session) = pinging_gateway().await;
    let mut listening = get_stream(&url, &session, "2025-11-25", None).await;
    assert_eq!(listening.status().as_u16(), 200);
    // 409, as the official SDKs' servers answer a second GET stream: an empty stream would
    // have the TypeScript client reconnect with a plain GET, replacing the live one.
    let stale = get_stream(&url, &session, "2025-11-25", Some("999999-4")).await;
    assert_eq!(stale.status().as_u16(), 409);
    let call = r#"{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"echo","arguments":{"pings":3}}}"#;
    let (status, _, body) = post(&url, Some(ALICE_KEY), Some(&session), call, &[]).await;
    assert_eq!(status, 200, "{body}");
    let heard = read_until(&mut listening, "\"many-2\"").await;
    assert!(heard.contains("\"many-0\""), "the live GET stream: {heard}");
}

/// Found by a hostile pass (helper-74, after go-sdk#285): a server request sent while no
/// stream was open (a `roots/list` right after `notifications/initialized`) waited for a GET
/// stream, and a client that never opens one (it is optional) never got it: the server hung
/// where a stdio client would have answered. It now goes on the client's next SSE answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_request_made_while_no_stream_was_open_goes_on_the_next_sse_answer() {
    let (_dir, _gw, url, session) = pinging_gateway().await;
    let call = r#"{"jsonrpc":"2.0","id":51,"method":"tools/call","params":{"name":"echo","arguments":{"pings":3}}}"#;
    let (status, _, body) = post(&url, Some(ALICE_KEY), Some(&session), call, &[]).await;
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains("many-"), "sent after the answer: {body}");
    // The server's pings come 0.3 s after its answer, with no stream open.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let next = r#"{"jsonrpc":"2.0","id":52,"method":"tools/call","params":{"name":"echo","arguments":{}}}"#;
    let (status, _, body) = post(&url, Some(ALICE_KEY), Some(&session), next, &[]).await;
    assert_eq!(status, 200, "{body}");
    let got = messages(&body);
    let pings: Vec<&Value> = got.iter().filter(|m| m["method"] == "ping").collect();
    assert_eq!(pings.len(), 3, "{body}");
    assert!(
        got.iter()
            .any(|m| m["id"] == 52 && m.get("result").is_some()),
        "{body}"
    );
}

/// A refusal reaches an HTTP/2 client that is still sending its body. Found by a hostile
/// pass: a 401 sent before a 100 KB body was read reset the stream, and curl reported a
/// framing error (exit 92) on 8 of 10 tries over h2c, never showing the 401 nor its
/// `WWW-Authenticate` challenge (where OAuth discovery starts). curl is the client that
/// showed it; the test is skipped, saying so, where curl is missing (`.ci/run` installs it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_reaches_an_http2_client_still_sending_its_body() {
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: curl is not installed");
        return;
    }
    let gw = Gateway::start("");
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("big.json");
    let text = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{{"pad":"{}"}}}}"#,
        "a".repeat(100_000)
    );
    std::fs::write(&body, text).unwrap();
    let endpoint = gw.endpoint();
    let mut seen = Vec::new();
    for credential in [None, Some("Bearer not-a-key"), None, Some("Bearer wrong")] {
        for _ in 0..3 {
            let mut curl = std::process::Command::new("curl");
            curl.args([
                "-s",
                "-o",
                "/dev/null",
                "-D",
                "-",
                "--http2-prior-knowledge",
            ])
            .args(["-X", "POST", "-H", "content-type: application/json"])
            .args(["-H", "accept: application/json, text/event-stream"])
            .arg("--data-binary")
            .arg(format!("@{}", body.display()))
            .arg(&endpoint);
            if let Some(c) = credential {
                curl.args(["-H", &format!("authorization: {c}")]);
            }
            let out = curl.output().unwrap();
            let head = String::from_utf8_lossy(&out.stdout).to_lowercase();
            seen.push((
                out.status.code(),
                head.lines().next().unwrap_or("").trim().to_string(),
                head.contains("www-authenticate: bearer"),
            ));
        }
    }
    assert!(
        seen.iter().all(|(code, status, challenge)| *code == Some(0)
            && status == "http/2 401"
            && *challenge),
        "{seen:?}"
    );
}

/// A client that opens SSE requests for large answers and reads none of them: each answer
/// was counted against its session's 8 MiB only until the response took it (a JSON answer
/// not at all), so the gateway's connections held one whole answer per request past the
/// budget (150 requests for 4 MB
/// answers held 582 MiB: found by a hostile pass). Now an answer counts until its connection
/// has written it, and once the session is over budget, a connection whose newest message
/// has waited unwritten for 10 s is cut (its stream stays for a resume).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reads_none_of_its_large_answers_has_its_connections_cut() {
    unread_answers_are_cut("application/json, text/event-stream", false).await;
}

/// The same for JSON answers (a client that accepts no SSE, and every 2026-07-28 answer
/// that comes first): the body was handed to hyper whole, uncounted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reads_none_of_its_large_json_answers_has_its_connections_cut() {
    unread_answers_are_cut("application/json", false).await;
}

/// The same for sessionless 2026-07-28 requests: each is a session core of its own, and each
/// had a budget of its own, so one 6 MB answer each was never over it and nothing was cut (64
/// in flight for 16 MB answers held 496 MiB; found by a hostile pass). They now share their
/// principal's budget on the upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessionless_requests_that_read_none_of_their_answers_share_one_budget() {
    unread_answers_are_cut("application/json, text/event-stream", true).await;
}

/// The same over HTTP/2: hyper asks a body for more as soon as the stream's window takes one
/// byte, and h2 buffered the whole answer beyond it, so a connection of paused streams held
/// every answer (120 of 15 MB: 1.8 GB resident; found by a hostile pass).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_answers_on_one_http2_connection_have_it_cut() {
    const ANSWER: usize = 6_000_000;
    const REQUESTS: usize = 9;
    let gw = large_answers_gateway();
    let url = gw.endpoint();
    let session = raw_session(&url, ALICE_KEY).await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let mut held = Vec::new();
    let mut refused = 0;
    for i in 0..REQUESTS {
        // Progress first, so that each answer's SSE stream starts before it (an answer this
        // large that came first would go out as JSON: `JSON_ANSWER_FROM`).
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":{},"method":"tools/call","params":{{"name":"big","arguments":{{"bytes":{ANSWER}}},"_meta":{{"progressToken":"p{i}"}}}}}}"#,
            100 + i
        );
        let sent = h2
            .post(&url)
            .bearer_auth(ALICE_KEY)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", &session)
            .header("mcp-protocol-version", "2025-06-18")
            .body(body)
            .send()
            .await;
        // A stream's headers go out with its first message, by which time earlier answers
        // may have filled the budget: the connection may be cut before the last request is
        // sent. A request the cut connection refused counts as cut.
        match sent {
            Ok(resp) => {
                assert_eq!(resp.status(), 200);
                assert_eq!(resp.headers()["content-type"], "text/event-stream");
                held.push(resp);
            }
            Err(_) => refused += 1,
        }
    }
    assert!(
        held.len() >= 2,
        "{refused} of {REQUESTS} requests were refused before two answers could be held"
    );
    // Nothing is read: the client's windows (hyper's, a few MB) fill, the rest waits.
    tokio::time::sleep(Duration::from_secs(20)).await;
    // Cut: each response ends at once with an error. Held: the first still waits.
    let (mut cut, mut open) = (refused, 0);
    for resp in held {
        match tokio::time::timeout(Duration::from_secs(5), resp.bytes()).await {
            Ok(Ok(b)) if b.len() > ANSWER => {}
            Ok(_) => cut += 1,
            Err(_) => open += 1,
        }
    }
    assert!(
        cut >= 1 && open == 0,
        "the connection was not cut: {open} of {REQUESTS} answers were still held for a client that read none"
    );
}

/// A gateway in front of the example server whose messages may be 16 MiB (the `big` tool's
/// answers).
fn large_answers_gateway() -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("proxy.toml");
    std::fs::write(
        &config,
        format!(
            "[[upstream]]\nname = \"example\"\ncommand = [{:?}]\n[alerts]\nenabled = false\n[audit]\nstore_dir = \"store\"\nmax_stored_argument_bytes = 1024\n[limits]\nmax_message_bytes = 16777216\n[gateway]\nlisten = \"127.0.0.1:0\"\n[[gateway.api_key]]\nuser_id = \"alice\"\nsha256 = \"{}\"\n",
            common::example_server().display().to_string(),
            sha(ALICE_KEY)
        ),
    )
    .unwrap();
    Gateway::spawn(dir, config)
}

/// `sessionless`: 2026-07-28 requests without a session, else 2025-06-18 ones in one session.
async fn unread_answers_are_cut(accept: &str, sessionless: bool) {
    use std::io::{Read, Write};
    // Larger than what the kernel takes into a loopback socket's buffers (tcp_wmem 4 MiB
    // plus the receiver's window), so that the rest waits in the gateway.
    const ANSWER: usize = 6_000_000;
    const REQUESTS: usize = 14;
    let gw = large_answers_gateway();
    let url = gw.endpoint();
    let session = if sessionless {
        String::new()
    } else {
        raw_session(&url, ALICE_KEY).await
    };
    let addr = address(&gw);
    let mut silent = Vec::new();
    for i in 0..REQUESTS {
        let arguments = format!(r#"{{"bytes":{ANSWER}}}"#);
        let (body, headers) = if sessionless {
            (
                call_2026(&(100 + i).to_string(), "big", &arguments),
                "MCP-Protocol-Version: 2026-07-28\r\nMcp-Method: tools/call\r\nMcp-Name: big"
                    .to_string(),
            )
        } else {
            // Over SSE, progress goes first so that the stream starts before the answer (an
            // answer this large that came first would go out as JSON: `JSON_ANSWER_FROM`).
            let meta = match accept.contains("text/event-stream") {
                true => format!(r#","_meta":{{"progressToken":"p{i}"}}"#),
                false => String::new(),
            };
            (
                format!(
                    r#"{{"jsonrpc":"2.0","id":{},"method":"tools/call","params":{{"name":"big","arguments":{arguments}{meta}}}}}"#,
                    100 + i
                ),
                format!("Mcp-Session-Id: {session}\r\nMCP-Protocol-Version: 2025-06-18"),
            )
        };
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        write!(
            s,
            "POST /mcp/example HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {ALICE_KEY}\r\nContent-Type: application/json\r\nAccept: {accept}\r\n{headers}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        silent.push(s);
    }
    // Long enough for every answer to be made and delivered at one per 2 s past the budget
    // (what the kernel and hyper take of each is not counted, so about five go at once),
    // and for the first ones to have waited 10 s by then.
    tokio::time::sleep(Duration::from_secs(24)).await;
    let mut whole = 0;
    let mut cut = 0;
    for mut s in silent {
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut got = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        let ended = loop {
            match s.read(&mut buf) {
                Ok(0) => break true,
                Ok(n) => {
                    got.extend_from_slice(&buf[..n]);
                    if got.len() > ANSWER && (got.ends_with(b"\n\n") || got.ends_with(b"}")) {
                        break false;
                    }
                }
                // Reset by the cut; a read that timed out is a stall, not a cut.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                    break got.len() <= ANSWER;
                }
                Err(_) => break false,
            }
        };
        if got.len() > ANSWER {
            whole += 1;
        } else if ended {
            cut += 1;
        }
    }
    assert!(
        cut >= 1,
        "{accept}: no connection was cut: {whole} of {REQUESTS} answers were held whole for a client that read nothing"
    );
    // The gateway still serves, the session too.
    let (status, _, body) = if sessionless {
        post_2026(
            &url,
            ALICE_KEY,
            &call_2026("1", "echo", r#"{"text":"after"}"#),
            Some("echo"),
            &[],
        )
        .await
    } else {
        post(
            &url,
            Some(ALICE_KEY),
            Some(&session),
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"after"}}}"#,
            &[],
        )
        .await
    };
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("after"), "{body}");
}

/// A 2025-era answer that comes first goes out as plain JSON when it is large, over SSE
/// otherwise: the official Python SDK's client caps one SSE event at 1 MiB, so a 1.5 MB result
/// it reads over stdio failed through the gateway ("Server-sent event exceeded the 1048576
/// byte limit"; helper-95 F3). A small one keeps the stream the SDKs' servers send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_2025_answer_goes_out_as_json_a_small_one_over_sse() {
    let gw = large_answers_gateway();
    let url = gw.endpoint();
    let session = raw_session(&url, ALICE_KEY).await;
    let text = "y".repeat(1536 * 1024);
    for (id, text) in [(2, text.as_str()), (3, "small")] {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"{text}"}}}}}}"#
        );
        let (status, headers, body) = post(
            &url,
            Some(ALICE_KEY),
            Some(&session),
            &body,
            &[("mcp-protocol-version", "2025-06-18")],
        )
        .await;
        assert_eq!(status, 200);
        let kind = headers["content-type"].to_str().unwrap();
        let answer = &messages(&body)[0];
        assert_eq!(answer["id"], id, "{kind}");
        assert_eq!(answer["result"]["content"][0]["text"], text, "{kind}");
        if id == 2 {
            assert_eq!(kind, "application/json", "a {} byte answer", body.len());
        } else {
            assert_eq!(kind, "text/event-stream");
        }
    }
}

/// helper-99 F1: a 2025 POST accepting JSON only whose call made the server ask the client
/// something (here `elicitation/create`) left that request waiting for a GET stream the client
/// never opened, and the POST silent until `call_timeout_ms` (600 s). The server now gets an
/// error at once, and the call is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_request_for_a_json_only_post_is_refused_at_once_not_held() {
    let gw = Gateway::start("");
    let url = gw.endpoint();
    let session = raw_session_with(&url, ALICE_KEY, r#"{"elicitation":{}}"#).await;
    let started = Instant::now();
    let sent = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .header("authorization", format!("Bearer {ALICE_KEY}"))
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-06-18")
        .body(r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"confirm","arguments":{"action":"drop the table"}}}"#)
        .send();
    let resp = tokio::time::timeout(Duration::from_secs(30), sent)
        .await
        .expect("the JSON-only POST was held: the server's elicitation waited for a GET stream")
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let body = resp.text().await.unwrap();
    let answer = &messages(&body)[0];
    assert_eq!(answer["id"], 2, "{body}");
    assert!(
        answer["error"].is_object() || answer["result"].is_object(),
        "{body}"
    );
    assert!(
        !body.contains("confirmed: drop the table"),
        "the call was confirmed by nobody: {body}"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
}
