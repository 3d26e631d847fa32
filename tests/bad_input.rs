//! Bad input from either side: a clear error or a log line, never a crash, never a lost call.

mod common;

use std::time::Duration;

use common::{LineClient, TestStore, call_line, example_server, initialized, kinds_of, pairs};
use serde_json::{Value, json};

#[tokio::test]
async fn each_bad_client_message_gets_its_error_and_the_session_carries_on() {
    let store = TestStore::new("[limits]\nmax_message_bytes = 4096\n");
    let mut c = initialized(&store).await;
    // A call in flight across all the bad input below.
    c.send(b"{\"jsonrpc\":\"2.0\",\"id\":100,\"method\":\"tools/call\",\"params\":{\"name\":\"slow\",\"arguments\":{\"ms\":600,\"steps\":1}}}\n").await;

    let big = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/call\",\"params\":{{\"name\":\"echo\",\"arguments\":{{\"text\":\"{}\"}}}}}}\n",
        "a".repeat(10_000)
    );
    let cases: Vec<(Vec<u8>, i64, Value)> = vec![
        (b"this is not json\n".to_vec(), -32700, Value::Null),
        (b"{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\n".to_vec(), -32700, Value::Null),
        (b"42\n".to_vec(), -32600, Value::Null),
        (b"[]\n".to_vec(), -32600, Value::Null),
        (b"{\"id\":4,\"method\":\"tools/list\"}\n".to_vec(), -32600, json!(4)),
        (b"{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"tools/call\",\"params\":{\"arguments\":{}}}\n".to_vec(), -32602, json!(5)),
        (b"{\"jsonrpc\":\"2.0\",\"id\":6,\"method\":\"tools/call\",\"params\":\"echo\"}\n".to_vec(), -32600, json!(6)),
        (big.into_bytes(), -32600, json!(7)),
        // Invalid UTF-8 is answered with the request's own id, so the client fails it at once.
        (b"{\"jsonrpc\":\"2.0\",\"id\":8,\"method\":\"ping\",\"params\":{\"x\":\"\xff\xfe\"}}\n".to_vec(), -32700, json!(8)),
    ];
    let mut replies = Vec::new();
    for (line, code, id) in &cases {
        c.send(line).await;
        let reply = c.recv_json().await;
        assert_eq!(
            reply["error"]["code"],
            *code,
            "{} -> {reply}",
            String::from_utf8_lossy(line)
                .chars()
                .take(80)
                .collect::<String>()
        );
        assert_eq!(reply["id"], *id, "{reply}");
        assert!(
            reply["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("mcp-audit-proxy refused"),
            "{reply}"
        );
        replies.push(reply);
    }
    // The call that was in flight all along completes, and new calls work.
    let slow = c.recv_json().await;
    assert_eq!(slow["id"], 100);
    assert_eq!(slow["result"]["content"][0]["text"], "slept 600ms");
    c.send(&call_line(json!(9), "echo", json!({"text": "still here"})))
        .await;
    assert_eq!(
        c.recv_json().await["result"]["content"][0]["text"],
        "still here"
    );
    assert!(c.finish().await.success());

    let events = store.events();
    let pairs = pairs(&events);
    // slow, the undecodable call (5), the call with params that are not an object (6), the
    // oversized call (7), echo 9. The others were never readable as tool calls.
    let summary: Vec<(Value, Value, Value, Value)> = pairs
        .iter()
        .map(|(a, e)| {
            (
                a["metadata"]["request_id"].clone(),
                a["result"].clone(),
                e["result"].clone(),
                e["metadata"]["failure_side"].clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                json!(100),
                json!("initiated"),
                json!("success"),
                Value::Null
            ),
            (
                json!(5),
                json!("refused"),
                json!("refused"),
                json!("client")
            ),
            (
                json!(6),
                json!("refused"),
                json!("refused"),
                json!("client")
            ),
            (
                json!(7),
                json!("refused"),
                json!("refused"),
                json!("client")
            ),
            (json!(9), json!("initiated"), json!("success"), Value::Null),
        ]
    );
    // The oversized call, never held whole, is recorded with the tool it named (read as it
    // streamed by), so the trail says what was tried.
    assert_eq!(pairs[3].0["tool_name"], "echo", "{}", pairs[3].0);
    // The refusal quotes the failure event, for the security team.
    assert_eq!(
        replies[5]["error"]["data"]["event_id"],
        pairs[1].1["event_id"]
    );
    assert!(
        pairs[1].1["metadata"]["reason"]
            .as_str()
            .unwrap()
            .contains("missing field `name`")
    );
}

#[tokio::test]
async fn a_batch_with_a_bad_element_is_refused_whole() {
    let store = TestStore::new("");
    let mut c = LineClient::spawn(store.proxy_command(&["cat"]));
    c.send(b"[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"},{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{}},{\"nope\":true}]\n").await;
    let reply = c.recv_json().await;
    let items = reply.as_array().expect("a batch of errors");
    assert_eq!(items.len(), 3);
    assert_eq!(items[0]["id"], 1);
    assert_eq!(items[1]["id"], 2);
    assert_eq!(items[2]["id"], Value::Null);
    assert!(items.iter().all(|i| i["error"]["code"].as_i64().is_some()));
    // Nothing of it reached the server: the next line back is the echo of the next message.
    c.send(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/x\"}\n")
        .await;
    assert_eq!(c.recv_json().await["method"], "notifications/x");
    // A batch of non-messages gets one error per element, as JSON-RPC asks.
    c.send(b"[1,\"x\"]\n").await;
    let reply = c.recv_json().await;
    let items = reply.as_array().expect("a batch of errors");
    assert_eq!(items.len(), 2);
    assert!(
        items
            .iter()
            .all(|i| i["error"]["code"] == -32600 && i["id"].is_null()),
        "{reply}"
    );
    assert!(
        items[0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("must be a JSON object"),
        "{reply}"
    );
    assert!(c.finish().await.success());
    let events = store.events();
    let pairs = pairs(&events);
    assert_eq!(
        pairs.len(),
        1,
        "the tools/call in the refused batch is recorded as refused"
    );
    assert_eq!(pairs[0].1["result"], "refused");
}

#[tokio::test]
async fn bad_messages_from_the_server_are_dropped_and_the_session_carries_on() {
    let store = TestStore::new("");
    // The server prints garbage first (a broken answer to no request among it), then behaves
    // like `cat`.
    let script =
        r#"printf 'garbage\n{"jsonrpc":"1.0","id":77,"result":{}}\n\377\376\n[]\n'; exec cat"#;
    let mut c = LineClient::spawn(store.proxy_command(&["sh", "-c", script]));
    c.send(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n")
        .await;
    let first = c.recv().await.unwrap();
    assert_eq!(
        first, b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n",
        "garbage was forwarded"
    );
    assert!(c.finish().await.success());
}

#[tokio::test]
async fn an_oversized_server_response_fails_that_call_only() {
    let store = TestStore::new("[limits]\nmax_message_bytes = 65536\n");
    let mut c = initialized(&store).await;
    c.send(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"big\",\"arguments\":{\"bytes\":200000}}}\n").await;
    let reply = c.recv_json().await;
    assert_eq!(reply["id"], 1);
    assert_eq!(reply["error"]["code"], -32603);
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_message_bytes"),
        "{reply}"
    );
    c.send(&call_line(json!(2), "echo", json!({"text": "fine"})))
        .await;
    assert_eq!(c.recv_json().await["id"], 2);
    assert!(c.finish().await.success());
    let events = store.events();
    let pairs = pairs(&events);
    assert_eq!(pairs[0].1["result"], "refused");
    assert_eq!(pairs[0].1["metadata"]["failure_side"], "upstream");
    assert_eq!(pairs[1].1["result"], "success");
    let _ = example_server();
}

#[tokio::test]
async fn a_config_error_names_file_line_and_hint_and_starts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("proxy.toml");
    std::fs::write(
        &config,
        "[audit]\nstore_dir = \"s\"\ndurability = \"sometimes\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(common::proxy_bin())
        .args(["stdio", "--config"])
        .arg(&config)
        .args(["--", "cat"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}:3: unknown variant `sometimes`",
            config.display()
        )),
        "{err}"
    );
    assert!(err.contains("hint:"), "{err}");
    assert!(
        !dir.path().join("s").exists(),
        "no store is created for a bad config"
    );
}

#[tokio::test]
async fn a_carriage_return_cannot_smuggle_a_second_message_past_the_proxy() {
    let store = TestStore::new("");
    let mut c = LineClient::spawn(store.proxy_command(&["cat"]));
    // Peers that split lines on a bare \r (Python's universal newlines, Node's readline) would
    // read a tools/call here that the proxy never saw as one.
    c.send(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/x\",\"params\":{\"a\":\r{\"jsonrpc\":\"2.0\",\"id\":99,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\"}}\r}}\n").await;
    let reply = c.recv_json().await;
    assert_eq!(reply["error"]["code"], -32600, "{reply}");
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap()
            .contains("carriage return"),
        "{reply}"
    );
    // Nothing reached the server: the next line back is the echo of the next message.
    c.send(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/y\"}\n")
        .await;
    assert_eq!(c.recv_json().await["method"], "notifications/y");
    assert!(c.finish().await.success());
    // The call such a peer would have read is in the trail, refused, with its id and tool.
    let events = store.events();
    let pairs = pairs(&events);
    assert_eq!(pairs.len(), 1, "{events:#?}");
    let (access, failure) = &pairs[0];
    assert_eq!(access["result"], "refused");
    assert_eq!(access["tool_name"], "echo");
    assert_eq!(access["metadata"]["request_id"], 99);
    assert_eq!(failure["result"], "refused");
}

#[tokio::test]
async fn a_request_id_in_use_is_refused_and_both_calls_are_recorded_apart() {
    let store = TestStore::new("");
    let mut c = initialized(&store).await;
    c.send(&call_line(json!(7), "slow", json!({"ms": 300, "steps": 1})))
        .await;
    c.send(&call_line(json!(7), "echo", json!({"text": "dup"})))
        .await;
    let refused = c.recv_json().await;
    assert_eq!(refused["id"], 7);
    assert_eq!(refused["error"]["code"], -32600, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already in use")
    );
    let done = c.recv_json().await;
    assert_eq!(
        done["result"]["content"][0]["text"], "slept 300ms",
        "the first call kept its own answer"
    );
    assert!(c.finish().await.success());
    let events = store.events();
    let pairs = pairs(&events);
    assert_eq!(pairs.len(), 2);
    assert_eq!(
        (
            pairs[0].0["tool_name"].clone(),
            pairs[0].1["result"].clone()
        ),
        (json!("slow"), json!("success"))
    );
    assert_eq!(
        (
            pairs[1].0["tool_name"].clone(),
            pairs[1].1["result"].clone()
        ),
        (json!("echo"), json!("refused"))
    );
    assert_eq!(refused["error"]["data"]["event_id"], pairs[1].1["event_id"]);
}

#[tokio::test]
async fn an_oversized_response_fails_its_call_even_when_the_id_comes_last() {
    // The TypeScript SDK writes the id after the result.
    let store = TestStore::new("[limits]\nmax_message_bytes = 4096\n");
    let script = r#"read call; printf '{"result":{"content":[{"type":"text","text":"'; head -c 20000 /dev/zero | tr '\0' x; printf '"}]},"jsonrpc":"2.0","id":3}\n'; cat >/dev/null"#;
    let mut c = LineClient::spawn(store.proxy_command(&["sh", "-c", script]));
    let started = std::time::Instant::now();
    c.send(&call_line(json!(3), "big", json!({}))).await;
    let reply = c.recv_json().await;
    assert_eq!(reply["id"], 3);
    assert_eq!(reply["error"]["code"], -32603, "{reply}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert!(c.finish().await.success());
    let events = store.events();
    assert_eq!(pairs(&events)[0].1["result"], "refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_refuses_new_calls_but_never_loses_an_end() {
    let store = TestStore::new("queue_capacity = 1");
    let mut c = initialized(&store).await;
    let mut burst = Vec::new();
    for i in 0..300 {
        burst.extend(call_line(json!(i), "echo", json!({"text": format!("{i}")})));
    }
    c.send(&burst).await;
    let (mut ok, mut refused) = (0, 0);
    while ok + refused < 300 {
        let msg = c.recv_json().await;
        if msg["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("audit queue full"))
        {
            refused += 1;
        } else {
            assert!(msg["result"].is_object(), "{msg}");
            ok += 1;
        }
    }
    assert!(c.finish().await.success());
    let events = store.events();
    // Every call that started has its end; the refused ones never started.
    assert_eq!(pairs(&events).len(), ok, "{ok} answered, {refused} refused");
}

/// The peak resident memory of process `pid`, in KiB (Linux `VmHWM`).
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

#[tokio::test]
async fn a_client_that_stops_reading_holds_the_queue_to_a_byte_budget_not_a_message_count() {
    // The server answers its first input with 300 log notifications of 1 MB each while the
    // client reads nothing. Bounded by count (1,024 messages) the proxy held them all (about
    // 490 MiB); bounded by bytes, 32 MiB wait in its queue and the server waits on its pipe.
    let store = TestStore::new("");
    let script = "import sys\n\
        sys.stdin.readline()\n\
        line = '{\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{\"level\":\"info\",\"data\":\"' + 'a' * 1000000 + '\"}}\\n'\n\
        for _ in range(300):\n    sys.stdout.write(line)\n\
        sys.stdout.flush()\n\
        sys.stdin.read()\n";
    let mut c = LineClient::spawn(store.proxy_command(&["python3", "-c", script]));
    let pid = c.child.id().expect("the proxy runs");
    c.send(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n")
        .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let peak = peak_rss_kib(pid);
    let expected = format!(
        "{{\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{{\"level\":\"info\",\"data\":\"{}\"}}}}\n",
        "a".repeat(1_000_000)
    );
    for n in 0..300 {
        let line = c
            .recv()
            .await
            .unwrap_or_else(|| panic!("notification {n} lost"));
        assert!(line == expected.as_bytes(), "notification {n} changed");
    }
    assert!(c.finish().await.success());
    assert!(
        peak < 150 * 1024,
        "the proxy peaked at {} MiB holding what the client did not read",
        peak / 1024
    );
}

#[tokio::test]
async fn a_result_repeating_is_error_is_recorded_as_the_client_reads_it() {
    // Found by a fresh pair of eyes: `"isError":false,"isError":true` could not be read as a
    // CallToolResult and was recorded as a success, while the client (last copy wins) saw
    // an error.
    let server = r#"
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("method") != "tools/call":
        continue
    flags = m["params"]["arguments"]["flags"]
    body = ",".join('"isError":%s' % f for f in flags)
    sys.stdout.write('{"jsonrpc":"2.0","id":%s,"result":{"content":[{"type":"text","text":"boom"}],%s}}\n' % (json.dumps(m["id"]), body))
    sys.stdout.flush()
"#;
    let store = TestStore::new("");
    let mut c = LineClient::spawn(store.proxy_command(&["python3", "-c", server]));
    let cases = [(["false", "true"], "error"), (["true", "false"], "success")];
    for (id, (flags, _)) in cases.iter().enumerate() {
        c.send(&call_line(json!(id), "flip", json!({"flags": flags})))
            .await;
        let got = c.recv_json().await;
        assert_eq!(got["id"], id, "{got}");
    }
    assert!(c.finish().await.success());
    let pairs = pairs(&store.events());
    assert_eq!(pairs.len(), cases.len());
    for ((access, end), (_, outcome)) in pairs.iter().zip(cases) {
        assert_eq!(end["result"], outcome, "{access} -> {end}");
        let reason = end["metadata"]["reason"].as_str().unwrap_or_default();
        assert!(reason.contains("more than one way"), "{end}");
    }
}

/// `(event_type, result, reason)` of each event of the call with request id `id`, in the
/// trail's order.
fn events_of_call(events: &[serde_json::Value], id: i64) -> Vec<(&str, &str, &str)> {
    events
        .iter()
        .filter(|e| e["metadata"]["request_id"] == id)
        .map(|e| {
            (
                e["event_type"].as_str().unwrap(),
                e["result"].as_str().unwrap(),
                e["metadata"]["reason"].as_str().unwrap_or_default(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_second_answer_to_an_answered_call_is_forwarded_and_recorded() {
    // Found by a review of the known gaps: a server that answered a call twice had its second
    // answer passed on to the client as an answer to no request, with no event: a result
    // that reached the client outside the trail. It is still passed on (the client would
    // see it without the proxy), and recorded as a late end of the same call; a third
    // answer too. A client reusing the id afterwards starts a new call.
    let server = r#"
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("method") == "tools/call":
        i = json.dumps(m["id"])
        t = m["params"]["arguments"]["text"]
        sys.stdout.write('{"jsonrpc":"2.0","id":%s,"result":{"content":[{"type":"text","text":"first %s"}]}}\n' % (i, t))
        if t == "twice":
            sys.stdout.write('{"jsonrpc":"2.0","id":%s,"result":{"content":[{"type":"text","text":"second"}]}}\n' % i)
            sys.stdout.write('{"jsonrpc":"2.0","id":%s,"error":{"code":-32000,"message":"third"}}\n' % i)
    elif "id" in m:
        sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": m["id"], "result": {}}) + "\n")
    sys.stdout.flush()
"#;
    let store = TestStore::new("");
    let mut c = LineClient::spawn(store.proxy_command(&["python3", "-c", server]));
    c.send(&call_line(json!(5), "echo", json!({"text": "twice"})))
        .await;
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(c.recv_json().await);
    }
    assert!(got.iter().all(|m| m["id"] == 5), "{got:#?}");
    assert_eq!(got[1]["result"]["content"][0]["text"], "second", "{got:#?}");
    assert_eq!(got[2]["error"]["message"], "third", "{got:#?}");
    // The id again, after its call ended: a new call, answered once.
    c.send(&call_line(json!(5), "echo", json!({"text": "again"})))
        .await;
    let again = c.recv_json().await;
    assert_eq!(
        again["result"]["content"][0]["text"], "first again",
        "{again}"
    );
    assert!(c.finish().await.success());
    let events = store.events();
    let of_call = events_of_call(&events, 5);
    let kinds: Vec<(&str, &str)> = of_call.iter().map(|(t, r, _)| (*t, *r)).collect();
    assert_eq!(
        kinds,
        [
            ("tool_access", "initiated"),
            ("tool_execution", "success"),
            ("tool_execution", "success"),
            ("tool_failure", "jsonrpc_error"),
            ("tool_access", "initiated"),
            ("tool_execution", "success"),
        ],
        "{events:#?}"
    );
    let first_end = events
        .iter()
        .find(|e| e["metadata"]["request_id"] == 5 && e["event_type"] == "tool_execution")
        .unwrap()["event_id"]
        .as_str()
        .unwrap()
        .to_string();
    for (_, _, reason) in &of_call[2..4] {
        assert!(
            reason.contains("answered this call again") && reason.contains(&first_end),
            "{reason}"
        );
    }
    // The late ends belong to the first call; the new call's end to the new access.
    let access: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["metadata"]["request_id"] == 5 && e["event_type"] == "tool_access")
        .collect();
    let ends: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["metadata"]["request_id"] == 5 && e["event_type"] != "tool_access")
        .collect();
    for end in &ends[..3] {
        assert_eq!(end["linked_event_id"], access[0]["event_id"], "{end}");
    }
    assert_eq!(
        ends[3]["linked_event_id"], access[1]["event_id"],
        "{}",
        ends[3]
    );
}

/// helper-65: a server that writes the call's id as a string (`"7"` for 7, read as 7 by the
/// official SDKs) had its first answer matched to the call and its second left out of the
/// trail: the twin of an id was looked for among waiting calls only, not answered ones.
#[tokio::test]
async fn a_second_answer_naming_the_id_in_another_spelling_is_recorded_too() {
    let server = r#"
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("method") == "tools/call":
        for text, flag in (("first", ""), ("second", '"isError":"true",')):
            sys.stdout.write('{"jsonrpc":"2.0","id":"%s","result":{%s"content":[{"type":"text","text":"%s"}]}}\n' % (m["id"], flag, text))
    elif "id" in m:
        sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": m["id"], "result": {}}) + "\n")
    sys.stdout.flush()
"#;
    let store = TestStore::new("");
    let mut c = LineClient::spawn(store.proxy_command(&["python3", "-c", server]));
    c.send(&call_line(json!(7), "echo", json!({"text": "x"})))
        .await;
    let first = c.recv_json().await;
    assert_eq!(first["id"], 7, "{first}");
    let second = c.recv_json().await;
    assert_eq!(second["result"]["content"][0]["text"], "second", "{second}");
    assert!(c.finish().await.success());
    let events = store.events();
    let of_call = events_of_call(&events, 7);
    assert_eq!(of_call.len(), 3, "{events:#?}");
    assert_eq!(of_call[2].0, "tool_execution", "{events:#?}");
    assert!(
        of_call[2].2.contains("answered this call again"),
        "{of_call:?}"
    );
    // What was wrong with the late answer itself stays beside why it is late (review
    // finding 8b: the one replaced the other).
    assert!(of_call[2].2.contains("not a boolean"), "{of_call:?}");
    assert_eq!(of_call[2].1, "error", "{of_call:?}");
}

#[tokio::test]
async fn a_server_answering_one_call_without_end_is_recorded_a_bounded_number_of_times() {
    // Found by a fresh pass: one server line holding 100,000 copies of a call's answer
    // wrote 200,000 events (306 MB) and 300 MB of gateway memory. Sixteen further answers
    // are recorded and passed on, the last saying so; later ones are dropped.
    let server = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/deaf_to_cancel.py");
    let store = TestStore::new("");
    let mut c = LineClient::spawn(store.proxy_command(&["python3", server]));
    c.send(&call_line(json!(7), "slow", json!({"ms": 10, "times": 40})))
        .await;
    for i in 0..17 {
        assert_eq!(c.recv_json().await["id"], 7, "answer {i}");
    }
    c.send(&call_line(json!(8), "slow", json!({"ms": 10})))
        .await;
    // The 23 answers past the bound were written first, and are not passed on.
    assert_eq!(c.recv_json().await["id"], 8);
    assert!(c.finish().await.success());
    let events = store.events();
    let of_call = events_of_call(&events, 7);
    assert_eq!(of_call.len(), 18, "{of_call:#?}");
    assert!(
        of_call[17].2.contains("further ones are dropped"),
        "{of_call:?}"
    );
    // The same bound after the call timed out (those answers are recorded, not forwarded).
    let store = TestStore::new("[limits]\ncall_timeout_ms = 200\n");
    let mut c = LineClient::spawn(store.proxy_command(&["python3", server]));
    c.send(&call_line(
        json!(9),
        "slow",
        json!({"ms": 400, "times": 40}),
    ))
    .await;
    assert_eq!(c.recv_json().await["error"]["code"], -32001);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(c.finish().await.success());
    let events = store.events();
    let of_call = events_of_call(&events, 9);
    assert_eq!(of_call.len(), 18, "{of_call:#?}");
    assert_eq!(of_call[1].1, "timeout", "{of_call:?}");
}

#[tokio::test]
async fn a_refused_answer_of_the_client_is_not_answered_and_the_server_hears_of_it() {
    // Found by a fresh pass: the client's answer to a server request with both `result`
    // and `error` was refused with an error *to the client*, under the server's id (a
    // response answered; a client with a request of its own by that id took the error
    // for its answer), and the server waited on its request until the call timed out.
    // Now the client gets nothing for its answer, the server gets an error for its
    // request, and the call carries on. `"error":null` beside a result (JSON-RPC 1.0) is
    // refused the same way: strict peers (the TypeScript SDK) drop such a message.
    let server = r#"
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("method") == "tools/call":
        call = m["id"]
        sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": "s1", "method": "sampling/createMessage", "params": {"messages": [], "maxTokens": 5}}) + "\n")
    elif m.get("id") == "s1" and "method" not in m:
        heard = "error: " + m["error"]["message"] if "error" in m and m["error"] else "result"
        sys.stdout.write('{"jsonrpc":"2.0","id":%s,"result":{"content":[{"type":"text","text":%s}]}}\n' % (json.dumps(call), json.dumps(heard)))
    elif "id" in m:
        sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": m["id"], "result": {}}) + "\n")
    sys.stdout.flush()
"#;
    let store = TestStore::new("");
    let mut c = LineClient::spawn(store.proxy_command(&["python3", "-c", server]));
    let answers: [&[u8]; 2] = [
        b"{\"jsonrpc\":\"2.0\",\"id\":\"s1\",\"result\":{\"model\":\"m\"},\"error\":{\"code\":1,\"message\":\"no\"}}\n",
        b"{\"jsonrpc\":\"2.0\",\"id\":\"s1\",\"result\":{\"model\":\"m\"},\"error\":null}\n",
    ];
    for (i, answer) in answers.iter().enumerate() {
        c.send(&call_line(json!(i), "echo", json!({"text": "hi"})))
            .await;
        let ask = c.recv_json().await;
        assert_eq!(ask["id"], "s1", "{ask}");
        c.send(answer).await;
        let next = c.recv_json().await;
        assert_eq!(next["id"], i, "the client's answer was answered: {next}");
        let heard = next["result"]["content"][0]["text"].as_str().unwrap();
        assert!(
            heard.starts_with("error: mcp-audit-proxy refused the client's answer")
                && heard.contains("both"),
            "{heard}"
        );
    }
    assert!(c.finish().await.success());
    let ends: Vec<String> = pairs(&store.events())
        .iter()
        .map(|(_, end)| end["result"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ends, ["success", "success"]);
}

#[tokio::test]
async fn an_is_error_that_is_not_a_boolean_is_recorded_as_clients_read_it() {
    // Found by a fresh pass: `"isError":"true"` was recorded as a success ("not a readable
    // CallToolResult"), while the Python SDK reads it as true and the TypeScript SDK refuses
    // the result: the client saw an error, the trail a success.
    let server = r#"
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("method") == "tools/call":
        flag = m["params"]["arguments"]["flag"]
        sys.stdout.write('{"jsonrpc":"2.0","id":%s,"result":{"content":[{"type":"text","text":"x"}],"isError":%s}}\n' % (json.dumps(m["id"]), flag))
    elif "id" in m:
        sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": m["id"], "result": {}}) + "\n")
    sys.stdout.flush()
"#;
    let store = TestStore::new("");
    let mut c = LineClient::spawn(store.proxy_command(&["python3", "-c", server]));
    let cases = [
        ("\"true\"", "error"),
        ("\"YES\"", "error"),
        ("1", "error"),
        ("\"maybe\"", "error"),
        ("\"false\"", "success"),
        ("0", "success"),
        ("true", "error"),
        ("false", "success"),
    ];
    for (id, (flag, _)) in cases.iter().enumerate() {
        c.send(&call_line(json!(id), "echo", json!({ "flag": flag })))
            .await;
        let got = c.recv_json().await;
        assert_eq!(got["id"], id, "{got}");
    }
    assert!(c.finish().await.success());
    let pairs = pairs(&store.events());
    assert_eq!(pairs.len(), cases.len());
    for ((_, end), (flag, outcome)) in pairs.iter().zip(cases) {
        assert_eq!(end["result"], outcome, "isError {flag}: {end}");
    }
}

#[tokio::test]
async fn every_late_answer_after_a_timeout_is_recorded_and_none_is_forwarded() {
    // Found by a review: the first answer after a call timed out was recorded and held back,
    // but a second one went to the client as an answer to no request, unrecorded.
    let server = r#"
import json, sys, time
for line in sys.stdin:
    m = json.loads(line)
    if m.get("method") == "tools/call":
        time.sleep(0.6)
        for text in ("late", "later"):
            sys.stdout.write('{"jsonrpc":"2.0","id":%s,"result":{"content":[{"type":"text","text":"%s"}]}}\n' % (json.dumps(m["id"]), text))
    elif "id" in m:
        sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": m["id"], "result": {}}) + "\n")
    sys.stdout.flush()
"#;
    let store = TestStore::new("[limits]\ncall_timeout_ms = 200\n");
    let mut c = LineClient::spawn(store.proxy_command(&["python3", "-c", server]));
    c.send(&call_line(json!(3), "echo", json!({"text": "x"})))
        .await;
    let timeout = c.recv_json().await;
    assert_eq!(timeout["error"]["code"], -32001, "{timeout}");
    tokio::time::sleep(std::time::Duration::from_millis(900)).await;
    c.send(b"{\"jsonrpc\":\"2.0\",\"id\":\"sync\",\"method\":\"ping\"}\n")
        .await;
    let next = c.recv_json().await;
    assert_eq!(
        next["id"], "sync",
        "a late answer reached the client: {next}"
    );
    assert!(c.finish().await.success());
    let events = store.events();
    let kinds = kinds_of(&events, 3);
    assert_eq!(
        kinds,
        [
            ("tool_access", "initiated"),
            ("tool_failure", "timeout"),
            ("tool_execution", "success"),
            ("tool_execution", "success"),
        ],
        "{events:#?}"
    );
}

#[tokio::test]
async fn an_answer_after_the_proxy_failed_the_call_is_recorded_not_forwarded() {
    // Found by a review: once the proxy failed a call with an error of its own (here: the
    // server's first answer was refused), a second answer from the server went to the client
    // as an answer to no request: two answers for one id, the second with no end event.
    let server = r#"
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("method") == "tools/call":
        i = json.dumps(m["id"])
        sys.stdout.write('{"jsonrpc":"1.0","id":%s,"result":{}}\n' % i)
        sys.stdout.write('{"jsonrpc":"2.0","id":%s,"result":{"content":[{"type":"text","text":"ran"}]}}\n' % i)
    elif "id" in m:
        sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": m["id"], "result": {}}) + "\n")
    sys.stdout.flush()
"#;
    let store = TestStore::new("");
    let mut c = LineClient::spawn(store.proxy_command(&["python3", "-c", server]));
    c.send(&call_line(json!(5), "echo", json!({"text": "hi"})))
        .await;
    let first = c.recv_json().await;
    assert_eq!(first["id"], 5, "{first}");
    assert_eq!(first["error"]["code"], -32603, "{first}");
    c.send(b"{\"jsonrpc\":\"2.0\",\"id\":\"sync\",\"method\":\"ping\"}\n")
        .await;
    let next = c.recv_json().await;
    assert_eq!(
        next["id"], "sync",
        "a second answer for id 5 reached the client: {next}"
    );
    assert!(c.finish().await.success());
    let events = store.events();
    let of_call = kinds_of(&events, 5);
    assert_eq!(
        of_call,
        [
            ("tool_access", "initiated"),
            ("tool_failure", "refused"),
            ("tool_execution", "success"),
        ],
        "{events:#?}"
    );
    let late = events
        .iter()
        .find(|e| e["event_type"] == "tool_execution")
        .unwrap();
    assert!(
        late["metadata"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("already failed")),
        "{late:#}"
    );
}

#[tokio::test]
async fn a_server_that_dies_in_the_middle_of_an_answer_ends_its_call_with_server_exit() {
    // Found by a hostile pass (crash mid-line): a server that wrote half of its answer and
    // died had the call recorded as `refused` (an answer the proxy refused), not as the
    // server's exit, and the client got a refusal it would not have got from the server.
    // The cut bytes are no message: the call ends with the server, as any call in flight
    // does (the client sees the server go away, and the proxy exits with its status).
    let server = r#"
import json, os, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("method") == "tools/call":
        sys.stdout.write('{"jsonrpc":"2.0","id":%s,"result":{"content":[{"type":"te' % json.dumps(m["id"]))
        sys.stdout.flush()
        os._exit(3)
    elif "id" in m:
        sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": m["id"], "result": {}}) + "\n")
        sys.stdout.flush()
"#;
    let store = TestStore::new("");
    let mut c = LineClient::spawn(store.proxy_command(&["python3", "-c", server]));
    c.send(&call_line(json!(4), "echo", json!({"text": "cut"})))
        .await;
    assert_eq!(c.recv().await, None, "the client sees the server go away");
    assert_eq!(c.finish().await.code(), Some(3));
    let events = store.events();
    assert_eq!(
        kinds_of(&events, 4),
        vec![
            ("tool_access", "initiated"),
            ("tool_failure", "server_exit")
        ],
        "{events:#?}"
    );
    let end = events
        .iter()
        .find(|e| e["metadata"]["request_id"] == 4 && e["event_type"] == "tool_failure")
        .unwrap();
    assert!(
        end["metadata"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("exited")),
        "{end:#}"
    );
}

#[tokio::test]
async fn lone_surrogate_escapes_pass_as_sent_and_the_call_is_recorded() {
    // Found by a hostile pass: JavaScript writes a string cut inside an emoji as a lone
    // surrogate escape (`JSON.stringify("😀".slice(0, 1))` is `"\ud83d"`), and servers in
    // JavaScript or Python read it. The proxy refused such a call ("unexpected end of hex
    // escape"), and a string id holding one ("must be a string or a number"), where the
    // server answers. Now both pass byte for byte, each way; the trail has U+FFFD there.
    let server = r#"
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("method") != "tools/call":
        continue
    t = m["params"]["arguments"]["text"]
    sys.stdout.write('{"jsonrpc":"2.0","id":%s,"result":{"content":[{"type":"text","text":%s}]}}\n' % (json.dumps(m["id"]), json.dumps("got " + t)))
    sys.stdout.flush()
"#;
    let store = TestStore::new("");
    let mut c = LineClient::spawn(store.proxy_command(&["python3", "-c", server]));
    let lines: [(&[u8], &[u8]); 2] = [
        (
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"smile \ud83d"}}}"#,
            br#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"got smile \ud83d"}]}}"#,
        ),
        (
            br#"{"jsonrpc":"2.0","id":"\ud801","method":"tools/call","params":{"name":"echo","arguments":{"text":"\ude00 and \\ud800"}}}"#,
            br#"{"jsonrpc":"2.0","id":"\ud801","result":{"content":[{"type":"text","text":"got \ude00 and \\ud800"}]}}"#,
        ),
    ];
    for (sent, answer) in lines {
        c.send(&[sent, b"\n"].concat()).await;
        let got = c.recv().await.expect("an answer");
        assert_eq!(
            String::from_utf8_lossy(&got).trim_end(),
            String::from_utf8_lossy(answer),
        );
    }
    assert!(c.finish().await.success());
    let pairs = pairs(&store.events());
    assert_eq!(pairs.len(), 2, "{:#?}", store.events());
    for (access, end) in &pairs {
        assert_eq!(end["result"], "success", "{access} -> {end}");
    }
    assert_eq!(
        pairs[0].0["metadata"]["arguments"]["text"],
        "smile \u{FFFD}"
    );
    assert_eq!(pairs[1].0["metadata"]["request_id"], "\u{FFFD}");
    assert_eq!(
        pairs[1].0["metadata"]["arguments"]["text"],
        "\u{FFFD} and \\ud800"
    );
    // The stored arguments are not what the server ran: the access says so (helper-99 F3).
    for (access, _) in &pairs {
        let reasons = access["metadata"]["risk_reasons"].to_string();
        assert!(reasons.contains("lone UTF-16 surrogate"), "{access}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arguments_nested_past_the_limit_are_refused_saying_so() {
    // Found by a hostile pass (helper-74): arguments nested 128 levels deep or more were
    // refused with serde_json's "recursion limit exceeded", and the trail said "no decoder
    // can read them", though the official SDKs read them. The refusal stands (the policy
    // cannot assess what it cannot read: fail closed), but both now say why, and what to do.
    let store = TestStore::new("");
    let mut c = initialized(&store).await;
    let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    let line = format!(
        r#"{{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{{"name":"echo","arguments":{{"text":{deep}}}}}}}"#
    );
    c.send(format!("{line}\n").as_bytes()).await;
    let answer: serde_json::Value =
        serde_json::from_slice(&c.recv_response(&serde_json::json!(9)).await).unwrap();
    assert_eq!(answer["error"]["code"], -32602, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("nested deeper than 127 levels"),
        "{message}"
    );
    assert!(!message.contains("recursion limit"), "{message}");
    assert!(c.finish().await.success());
    let reason = refusal_reason(&store);
    assert!(reason.contains("nested deeper than 127 levels"), "{reason}");
    assert!(!reason.contains("no decoder can read"), "{reason}");
}

#[tokio::test]
async fn a_number_past_a_doubles_range_is_refused_with_a_true_reason() {
    // helper-87 #1: `1E400` is valid JSON (JavaScript and Python read it as Infinity); the
    // refusal stands (the policy's numeric bounds cannot judge it), but its event said that
    // no decoder could read the arguments.
    let store = TestStore::new("");
    let mut c = initialized(&store).await;
    let line = r#"{"jsonrpc":"2.0","id":11,"method":"tools/call","params":{"name":"echo","arguments":{"text":"n","v":1E400}}}"#;
    c.send(format!("{line}\n").as_bytes()).await;
    let answer: serde_json::Value =
        serde_json::from_slice(&c.recv_response(&serde_json::json!(11)).await).unwrap();
    assert_eq!(answer["error"]["code"], -32602, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("beyond the range of a 64-bit float") && message.contains("as a string"),
        "the client is told why and what to do: {message}"
    );
    assert!(c.finish().await.success());
    let reason = refusal_reason(&store);
    assert!(
        reason.contains("beyond the range of a 64-bit float"),
        "{reason}"
    );
    assert!(reason.contains("1E400"), "the arguments as sent: {reason}");
    assert!(!reason.contains("no decoder can read"), "{reason}");
}

/// The reason of the store's refusal event (`tool_failure`, `refused`).
fn refusal_reason(store: &TestStore) -> String {
    let events = store.events();
    let refused = events
        .iter()
        .find(|e| e["result"] == "refused" && e["event_type"] == "tool_failure")
        .unwrap_or_else(|| panic!("{events:#?}"));
    refused["metadata"]["reason"]
        .as_str()
        .unwrap_or_else(|| panic!("{refused:#}"))
        .to_string()
}
