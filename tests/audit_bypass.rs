//! Nothing that can make a server act escapes the audit: every form of `tools/call` a lenient
//! server would run (no id, a null or object id, no `jsonrpc`, a repeated `method`, a batch,
//! two messages on a line, a carriage return, invalid UTF-8) is never forwarded and is in the
//! trail as refused; ids keep every digit; a server's broken answer fails its call at once.
//!
//! The server here is `tests/peers/lenient_server.py`: it runs every `tools/call` it can read,
//! with or without an id, and logs what it ran.

mod common;

use std::path::PathBuf;

use common::{LineClient, TestStore, pairs};
use serde_json::{Value, json};

const BLOCK_DELETE: &str = r#"
[[risk.tool]]
match = "delete_file"
score = 100
"#;

fn lenient_server() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers/lenient_server.py")
}

/// The proxy in front of the lenient server; returns the client and the server's log.
fn spawn(store: &TestStore, mode: &str) -> (LineClient, PathBuf) {
    let log = store.dir.path().join("ran.ndjson");
    let server = lenient_server();
    let cmd = store.proxy_command(&[
        "python3",
        server.to_str().unwrap(),
        log.to_str().unwrap(),
        mode,
    ]);
    (LineClient::spawn(cmd), log)
}

/// What the lenient server ran, in order.
fn ran(log: &PathBuf) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Lines from the client until the response to `id` (a string id), in order.
async fn until(c: &mut LineClient, id: &str) -> Vec<Vec<u8>> {
    let mut lines = Vec::new();
    loop {
        let line = c.recv().await.expect("a line, not EOF");
        let v: Value = serde_json::from_slice(&line).unwrap_or(Value::Null);
        let done = v["id"] == id;
        lines.push(line);
        if done {
            return lines;
        }
    }
}

/// Sends `line`, then a ping named after `what`; returns what came back up to and including
/// the ping's answer (everything the proxy said about `line`, in order).
async fn step(c: &mut LineClient, line: &[u8], what: &str) -> Vec<Vec<u8>> {
    c.send(line).await;
    c.send(b"\n").await;
    let ping = format!("{{\"jsonrpc\":\"2.0\",\"id\":\"after {what}\",\"method\":\"ping\"}}\n");
    c.send(ping.as_bytes()).await;
    until(c, &format!("after {what}")).await
}

async fn initialize(c: &mut LineClient) {
    c.send(format!("{}\n", common::INIT).as_bytes()).await;
    c.recv_response(&json!("init")).await;
    c.send(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n")
        .await;
}

/// `delete_file` of `path`, as the params of a call.
fn delete(path: &str) -> String {
    format!(r#"{{"name":"delete_file","arguments":{{"path":"{path}"}}}}"#)
}

#[tokio::test]
async fn no_form_of_tools_call_reaches_the_server_unaudited() {
    let store = TestStore::new(BLOCK_DELETE);
    let (mut c, log) = spawn(&store, "ok");
    initialize(&mut c).await;

    // Each line holds one call to delete_file of its own path; `answer` is the id the client
    // must get an error for (null: an error with a null id; absent: no answer at all).
    let mut cases: Vec<(&str, Vec<u8>, Option<Value>)> = vec![
        (
            "no id",
            format!(r#"{{"jsonrpc":"2.0","method":"tools/call","params":{}}}"#, delete("a")).into(),
            None,
        ),
        (
            "null id",
            format!(r#"{{"jsonrpc":"2.0","id":null,"method":"tools/call","params":{}}}"#, delete("b")).into(),
            Some(Value::Null),
        ),
        (
            "object id",
            format!(r#"{{"jsonrpc":"2.0","id":{{"x":1}},"method":"tools/call","params":{}}}"#, delete("c")).into(),
            Some(Value::Null),
        ),
        (
            "boolean id",
            format!(r#"{{"jsonrpc":"2.0","id":true,"method":"tools/call","params":{}}}"#, delete("d")).into(),
            Some(Value::Null),
        ),
        (
            "no jsonrpc",
            format!(r#"{{"id":11,"method":"tools/call","params":{}}}"#, delete("e")).into(),
            Some(json!(11)),
        ),
        (
            "repeated method",
            format!(r#"{{"jsonrpc":"2.0","id":12,"method":"ping","method":"tools/call","params":{}}}"#, delete("f")).into(),
            Some(json!(12)),
        ),
        (
            "id-less call in a 2025-03-26 batch",
            format!(r#"[{{"jsonrpc":"2.0","id":13,"method":"ping"}},{{"jsonrpc":"2.0","method":"tools/call","params":{}}}]"#, delete("g")).into(),
            Some(json!(13)),
        ),
        (
            "two messages on one line",
            format!(r#"{{"jsonrpc":"2.0","method":"notifications/x"}} {{"jsonrpc":"2.0","id":14,"method":"tools/call","params":{}}}"#, delete("h")).into(),
            Some(json!(14)),
        ),
        (
            "trailing garbage",
            format!(r#"{{"jsonrpc":"2.0","id":15,"method":"tools/call","params":{}}} x"#, delete("i")).into(),
            Some(json!(15)),
        ),
        (
            "carriage return",
            format!("{{\"jsonrpc\":\"2.0\",\"method\":\"notifications/x\",\"params\":{{\"a\":\r{{\"jsonrpc\":\"2.0\",\"id\":16,\"method\":\"tools/call\",\"params\":{}}}\r}}}}", delete("j")).into(),
            Some(json!(16)),
        ),
        (
            "repeated params",
            format!(r#"{{"jsonrpc":"2.0","id":17,"method":"tools/call","params":{{"name":"echo"}},"params":{}}}"#, delete("k")).into(),
            Some(json!(17)),
        ),
    ];
    // Invalid UTF-8 in the method (a decoder that drops bad bytes reads tools/call) and in an
    // argument (the call is still readable).
    let mut bad_method = br#"{"jsonrpc":"2.0","id":18,"method":"tools/ca"#.to_vec();
    bad_method.push(0xff);
    bad_method.extend_from_slice(format!(r#"ll","params":{}}}"#, delete("l")).as_bytes());
    cases.push(("invalid UTF-8 in the method", bad_method, Some(json!(18))));
    let mut bad_arg = br#"{"jsonrpc":"2.0","id":19,"method":"tools/call","params":{"name":"delete_file","arguments":{"path":"m","note":""#.to_vec();
    bad_arg.extend_from_slice(b"\xc3\x28\"}}}");
    cases.push(("invalid UTF-8 in an argument", bad_arg, Some(json!(19))));
    // MCP ids are strings or integers: a server that checks answers with a null id, and the
    // client waited for the call timeout (found trying the gateway).
    cases.push((
        "fractional id",
        format!(
            r#"{{"jsonrpc":"2.0","id":1.5,"method":"tools/call","params":{}}}"#,
            delete("n")
        )
        .into(),
        Some(json!(1.5)),
    ));
    for (what, line, answer) in &cases {
        let got = step(&mut c, line, what).await;
        let errors: Vec<Value> = got[..got.len() - 1]
            .iter()
            .map(|l| serde_json::from_slice(l).expect("the proxy answers in JSON"))
            .flat_map(|v: Value| match v {
                Value::Array(items) => items,
                v => vec![v],
            })
            .collect();
        match answer {
            None => assert!(errors.is_empty(), "{what}: a notification got {errors:?}"),
            Some(id) => {
                assert!(
                    errors
                        .iter()
                        .any(|e| e["id"] == *id && e["error"]["code"].is_i64()),
                    "{what}: no error for id {id}: {errors:?}"
                );
            }
        }
    }
    // A call the policy allows still runs, and is recorded.
    c.send(br#"{"jsonrpc":"2.0","id":"ok","method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}"#).await;
    c.send(b"\n").await;
    until(&mut c, "ok").await;
    assert!(c.finish().await.success());

    let ran = ran(&log);
    assert_eq!(
        ran.iter().map(|r| r["name"].clone()).collect::<Vec<_>>(),
        vec![json!("echo")],
        "the server ran only the allowed call: {ran:#?}"
    );
    let events = store.events();
    let pairs = pairs(&events);
    let refused: Vec<&(Value, Value)> = pairs
        .iter()
        .filter(|(a, _)| a["result"] == "refused")
        .collect();
    // Every path a lenient server could have deleted is in the trail, refused, with the
    // arguments (not the whole params) and a reason.
    for (k, (what, _, _)) in cases.iter().enumerate() {
        let path = ((b'a' + k as u8) as char).to_string();
        let hit = refused
            .iter()
            .find(|(a, _)| a["metadata"]["arguments"]["path"] == path.as_str());
        let Some((access, failure)) = hit else {
            panic!("{what}: no refused event for path {path}: {refused:#?}");
        };
        assert_eq!(access["tool_name"], "delete_file", "{what}");
        assert!(
            access["metadata"]["arguments"].get("name").is_none(),
            "{what}: params stored"
        );
        assert_eq!(failure["result"], "refused", "{what}");
        assert_eq!(failure["metadata"]["failure_side"], "client", "{what}");
        assert!(
            failure["metadata"]["reason"]
                .as_str()
                .is_some_and(|r| !r.is_empty()),
            "{what}"
        );
    }
    let allowed: Vec<_> = pairs
        .iter()
        .filter(|(a, _)| a["result"] == "initiated")
        .collect();
    assert_eq!(allowed.len(), 1);
    assert_eq!(allowed[0].1["result"], "success");
}

/// The `request_id` of every event, as the raw JSON text of the trail (big numbers whole).
fn raw_request_ids(store: &TestStore) -> Vec<String> {
    store
        .event_lines()
        .iter()
        .filter_map(|l| {
            let at = l.find("\"request_id\":")? + "\"request_id\":".len();
            let rest = &l[at..];
            let end = rest.find([',', '}']).unwrap();
            Some(rest[..end].to_string())
        })
        .collect()
}

#[tokio::test]
async fn ids_are_compared_echoed_and_stored_by_their_exact_text() {
    let store = TestStore::new(BLOCK_DELETE);
    let (mut c, _log) = spawn(&store, "ok");
    initialize(&mut c).await;
    // 2^64 and 2^64 + 1 are the same float, and two different ids.
    for id in ["18446744073709551616", "18446744073709551617"] {
        c.send(format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"x"}}}}}}"#).as_bytes())
            .await;
        c.send(b"\n").await;
    }
    let mut replies = [c.recv().await.unwrap(), c.recv().await.unwrap()];
    replies.sort();
    for (reply, id) in replies
        .iter()
        .zip(["18446744073709551616", "18446744073709551617"])
    {
        let text = String::from_utf8_lossy(reply);
        assert!(
            text.contains(&format!("\"id\":{id},")) || text.contains(&format!("\"id\": {id},")),
            "{text}"
        );
        assert!(text.contains("ran echo"), "{text}");
    }
    // The proxy's own answer echoes the id as sent, digit for digit: a blocked call, and a
    // reused id (1.0 is the id 1, as every SDK reads it).
    c.send(format!(r#"{{"jsonrpc":"2.0","id":-98765432109876543210.5e3,"method":"tools/call","params":{}}}"#, delete("z")).as_bytes()).await;
    c.send(b"\n").await;
    let blocked = c.recv().await.unwrap();
    let text = String::from_utf8_lossy(&blocked);
    assert!(text.contains("\"id\":-98765432109876543210.5e3"), "{text}");
    assert!(text.contains("-32010"), "{text}");
    // And the block of a call whose id is an integer past 64 bits.
    c.send(format!(r#"{{"jsonrpc":"2.0","id":-98765432109876543210987,"method":"tools/call","params":{}}}"#, delete("y")).as_bytes()).await;
    c.send(b"\n").await;
    let blocked = c.recv().await.unwrap();
    let text = String::from_utf8_lossy(&blocked);
    assert!(text.contains("\"id\":-98765432109876543210987,"), "{text}");
    assert!(text.contains("-32010"), "{text}");
    assert!(c.finish().await.success());

    let ids = raw_request_ids(&store);
    for id in [
        "18446744073709551616",
        "18446744073709551617",
        "-98765432109876543210.5e3",
        "-98765432109876543210987",
    ] {
        assert_eq!(
            ids.iter().filter(|i| *i == id).count(),
            2,
            "access and end of {id} keep its text: {ids:?}"
        );
    }
}

#[tokio::test]
async fn a_broken_answer_from_the_server_fails_its_call_at_once() {
    for mode in ["bad-utf8", "no-jsonrpc"] {
        // A timeout far beyond the test's patience: the call must fail on the broken answer.
        let store = TestStore::new("[limits]\ncall_timeout_ms = 600000\n");
        let (mut c, _log) = spawn(&store, mode);
        initialize(&mut c).await;
        c.send(b"{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"arguments\":{\"text\":\"x\"}}}\n").await;
        let started = std::time::Instant::now();
        let reply = c.recv_json().await;
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{mode}"
        );
        assert_eq!(reply["id"], 5, "{mode}: {reply}");
        assert_eq!(reply["error"]["code"], -32603, "{mode}: {reply}");
        let message = reply["error"]["message"].as_str().unwrap();
        assert!(message.contains("refused"), "{mode}: {message}");
        // The session carries on.
        c.send(b"{\"jsonrpc\":\"2.0\",\"id\":\"p\",\"method\":\"ping\"}\n")
            .await;
        assert_eq!(c.recv_json().await["id"], "p", "{mode}");
        assert!(c.finish().await.success());
        let events = store.events();
        let pairs = pairs(&events);
        assert_eq!(pairs.len(), 1, "{mode}");
        let (_, end) = &pairs[0];
        assert_eq!(end["result"], "refused", "{mode}");
        assert_eq!(end["metadata"]["failure_side"], "upstream", "{mode}");
        let reason = end["metadata"]["reason"].as_str().unwrap();
        let expected = if mode == "bad-utf8" {
            "UTF-8"
        } else {
            "jsonrpc"
        };
        assert!(reason.contains(expected), "{mode}: {reason}");
    }
}

#[tokio::test]
async fn a_log_line_naming_a_calls_id_is_not_its_answer() {
    // helper-77 #1, #6: a server printing structured logs on stdout (`{"level":…,"id":7}`)
    // while call 7 runs. No client reads such a line as an answer (the SDKs drop it), so it
    // must not end the call; a notification with `"id": null` is delivered, as the Python
    // SDK's client does.
    let store = TestStore::new("[limits]\ncall_timeout_ms = 600000\n");
    let (mut c, _log) = spawn(&store, "json-log");
    initialize(&mut c).await;
    c.send(b"{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"arguments\":{\"text\":\"x\"}}}\n").await;
    let first = c.recv().await.unwrap();
    assert_eq!(
        String::from_utf8_lossy(&first).trim_end(),
        r#"{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"from a 1.0 habit"},"id":null}"#
    );
    let reply = c.recv_json().await;
    assert_eq!(reply["id"], 7, "{reply}");
    assert_eq!(reply["result"]["content"][0]["text"], "ran echo", "{reply}");
    assert!(c.finish().await.success());
    let events = store.events();
    let pairs = pairs(&events);
    assert_eq!(pairs.len(), 1);
    assert_eq!(pairs[0].1["result"], "success", "{}", pairs[0].1);
}

#[tokio::test]
async fn a_call_does_not_time_out_while_a_person_answers_the_servers_question() {
    // helper-77 #3: in the 2025 revisions a server asks the client (`elicitation/create`) in
    // the middle of a call, and a person answers. The call's timeout waits for them.
    let store = TestStore::new("[limits]\ncall_timeout_ms = 1000\n");
    let (mut c, _log) = spawn(&store, "asks-elicit");
    initialize(&mut c).await;
    // The server asks 0.6 s into the call; the person answers 0.7 s later, past the call's
    // own timeout (1 s) and within the question's (one timeout from when it went out).
    c.send(b"{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"arguments\":{\"ask_after_ms\":600}}}\n").await;
    let ask = c.recv_json().await;
    assert_eq!(ask["method"], "elicitation/create", "{ask}");
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    c.send(b"{\"jsonrpc\":\"2.0\",\"id\":\"elicit-3\",\"result\":{\"action\":\"accept\",\"content\":{\"name\":\"Ada\"}}}\n").await;
    let reply = c.recv_json().await;
    assert_eq!(reply["id"], 3, "{reply}");
    assert_eq!(
        reply["result"]["content"][0]["text"], "ping answered with result",
        "{reply}"
    );
    // A question nobody answers holds the calls for one timeout, not for ever.
    c.send(b"{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"arguments\":{}}}\n").await;
    assert_eq!(c.recv_json().await["method"], "elicitation/create");
    let started = std::time::Instant::now();
    let reply = c.recv_json().await;
    assert_eq!(reply["id"], 4, "{reply}");
    assert_eq!(reply["error"]["code"], -32001, "{reply}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(c.finish().await.success());
    let events = store.events();
    let results: Vec<String> = pairs(&events)
        .iter()
        .map(|(_, end)| end["result"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(results, ["success", "timeout"]);
}

#[tokio::test]
async fn names_a_case_insensitive_server_reads_differently_are_refused() {
    // CVE-2026-27896: Go's encoding/json matched member names case-insensitively.
    let store = TestStore::new(&format!(
        r#"{BLOCK_DELETE}
[[risk.rule]]
name = "reads outside the data folder"
tools = ["read_file"]
pointer = "/path"
path_outside = ["/srv/data"]
level = "critical"
"#
    ));
    let (mut c, log) = spawn(&store, "fold");
    initialize(&mut c).await;
    let cases: Vec<(&str, String)> = vec![
        ("Name beside name", r#"{"jsonrpc":"2.0","id":21,"method":"tools/call","params":{"name":"echo","Name":"delete_file","arguments":{"path":"q"}}}"#.into()),
        ("Method beside method", r#"{"jsonrpc":"2.0","id":22,"method":"ping","Method":"tools/call","params":{"name":"delete_file","arguments":{"path":"r"}}}"#.into()),
        ("METHOD and ID in a notification", r#"{"jsonrpc":"2.0","method":"notifications/progress","METHOD":"tools/call","ID":23,"params":{"name":"delete_file","arguments":{"path":"s"}}}"#.into()),
        ("long s in params", r#"{"jsonrpc":"2.0","id":24,"method":"tools/call","params":{"name":"echo","arguments":{}},"param\u017f":{"name":"delete_file","arguments":{"path":"t"}}}"#.into()),
        ("Path beside path", r#"{"jsonrpc":"2.0","id":25,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/srv/data/a.txt","Path":"/etc/shadow"}}}"#.into()),
        ("Path alone", r#"{"jsonrpc":"2.0","id":26,"method":"tools/call","params":{"name":"read_file","arguments":{"Path":"/etc/shadow"}}}"#.into()),
        ("Kelvin sign", r#"{"jsonrpc":"2.0","id":27,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/srv/data/a","pat\u0068":"x","\u212aind":1,"kind":2}}}"#.into()),
        // The method's value spelled loosely (found trying the gateway): a server matching
        // method names loosely runs these as tools/call.
        ("Tools/Call", r#"{"jsonrpc":"2.0","id":28,"method":"Tools/Call","params":{"name":"delete_file","arguments":{"path":"u"}}}"#.into()),
        ("trailing space", r#"{"jsonrpc":"2.0","id":29,"method":"tools/call ","params":{"name":"delete_file","arguments":{"path":"v"}}}"#.into()),
        ("tab and NUL around", r#"{"jsonrpc":"2.0","id":30,"method":"\ttools/call\u0000","params":{"name":"delete_file","arguments":{"path":"w"}}}"#.into()),
        ("long s in the method", r#"{"jsonrpc":"2.0","id":31,"method":"tool\u017f/call","params":{"name":"delete_file","arguments":{"path":"long-s"}}}"#.into()),
        ("TOOLS/CALL in a notification", r#"{"jsonrpc":"2.0","method":"TOOLS/CALL","params":{"name":"delete_file","arguments":{"path":"y"}}}"#.into()),
    ];
    for (what, line) in &cases {
        let got = step(&mut c, line.as_bytes(), what).await;
        assert!(
            got.len() >= 2 || what.contains("notification"),
            "{what}: no refusal: {got:?}"
        );
    }
    // The same calls written plainly are blocked, so the server would have run nothing.
    assert!(c.finish().await.success());
    let ran = ran(&log);
    assert!(ran.is_empty(), "the server ran: {ran:#?}");
    let events = store.events();
    let pairs = pairs(&events);
    for path in ["u", "v", "w", "long-s", "y"] {
        let hit = pairs
            .iter()
            .find(|(a, _)| a["metadata"]["arguments"]["path"] == path)
            .unwrap_or_else(|| panic!("no event for path {path}: {events:#?}"));
        assert_eq!(hit.0["result"], "refused", "{path}: {}", hit.0);
        assert_eq!(hit.0["tool_name"], "delete_file", "{path}");
        assert!(
            hit.1["metadata"]["reason"]
                .as_str()
                .is_some_and(|r| r.contains("differs from `tools/call`")),
            "{path}: {}",
            hit.1
        );
    }
    for id in [21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31] {
        let hit = pairs
            .iter()
            .find(|(a, _)| a["metadata"]["request_id"] == id)
            .unwrap_or_else(|| panic!("no event for id {id}: {events:#?}"));
        assert!(
            hit.0["result"] == "refused" || hit.0["result"] == "blocked",
            "{id}: {}",
            hit.0
        );
    }
    // The lone `Path` is judged as `path`: blocked by the rule, not refused.
    let lone = pairs
        .iter()
        .find(|(a, _)| a["metadata"]["request_id"] == 26)
        .unwrap();
    assert_eq!(lone.0["result"], "blocked", "{}", lone.0);
}

#[tokio::test]
async fn an_answer_whose_id_a_javascript_server_rounded_still_ends_its_call() {
    let store = TestStore::new("[limits]\ncall_timeout_ms = 600000\n");
    let (mut c, _log) = spawn(&store, "float-ids");
    initialize(&mut c).await;
    c.send(br#"{"jsonrpc":"2.0","id":9007199254740993,"method":"tools/call","params":{"name":"echo","arguments":{}}}"#).await;
    c.send(b"\n").await;
    // The server writes the id back as the double it read it as.
    let reply = c.recv().await.unwrap();
    let text = String::from_utf8_lossy(&reply);
    assert!(text.contains("ran echo"), "{text}");
    assert!(c.finish().await.success());
    let events = store.events();
    let pairs = pairs(&events);
    assert_eq!(pairs.len(), 1);
    assert_eq!(pairs[0].1["result"], "success", "{}", pairs[0].1);
    let ids = raw_request_ids(&store);
    assert!(ids.iter().all(|i| i == "9007199254740993"), "{ids:?}");
}

#[tokio::test]
async fn a_cancelled_request_keeps_its_id_until_the_server_answers() {
    let store = TestStore::new("");
    let (mut c, _log) = spawn(&store, "slow-other");
    initialize(&mut c).await;
    c.send(b"{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"resources/read\",\"params\":{\"uri\":\"x\"}}\n").await;
    c.send(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":{\"requestId\":7}}\n").await;
    // The server may still answer 7 (MCP lets it): a call reusing 7 now would take that answer.
    c.send(&common::call_line(json!(7), "echo", json!({})))
        .await;
    let refused = c.recv_json().await;
    assert_eq!(refused["id"], 7, "{refused}");
    assert_eq!(refused["error"]["code"], -32600, "{refused}");
    // The late answer is delivered; then the id is free again.
    let late = c.recv_json().await;
    assert_eq!(late["id"], 7, "{late}");
    assert!(late.get("result").is_some(), "{late}");
    c.send(&common::call_line(json!(7), "echo", json!({})))
        .await;
    let ran = c.recv_json().await;
    assert_eq!(ran["result"]["content"][0]["text"], "ran echo", "{ran}");
    assert!(c.finish().await.success());
}

#[tokio::test]
async fn a_refused_call_with_arguments_no_decoder_reads_leaves_the_trail_readable() {
    // A lone surrogate escape is JSON syntax, but strict decoders (serde_json, Go) refuse it:
    // the event must not carry it as JSON. Found by the differential test.
    let store = TestStore::new(BLOCK_DELETE);
    let (mut c, _log) = spawn(&store, "ok");
    initialize(&mut c).await;
    let mut line = br#"{"jsonrpc":"2.0","id":31,"method":"tools/call","params":{"name":"echo","arguments":{"t":"\ud83d"#.to_vec();
    line.push(0xff);
    line.extend_from_slice(br#"\ude00"}}}"#);
    let got = step(&mut c, &line, "lone surrogate, invalid UTF-8").await;
    assert!(got.len() >= 2, "{got:?}");
    let plain = br#"{"jsonrpc":"2.0","id":32,"method":"tools/call","params":{"name":"echo","arguments":{"t":"\ud83d x"}}}"#;
    let got = step(&mut c, plain, "lone surrogate").await;
    assert!(got.len() >= 2, "{got:?}");
    assert!(c.finish().await.success());
    // Every event decodes (store.events() parses each with serde_json).
    let events = store.events();
    let pairs = pairs(&events);
    let of = |id: i64| {
        pairs
            .iter()
            .find(|(a, _)| a["metadata"]["request_id"] == id)
            .unwrap_or_else(|| panic!("no event for {id}"))
    };
    let (access, failure) = of(31);
    assert_eq!(access["result"], "refused");
    assert!(access["metadata"].get("arguments").is_none(), "{access}");
    let reason = failure["metadata"]["reason"].as_str().unwrap();
    assert!(reason.contains("as sent"), "{reason}");
    // Valid UTF-8 with a lone surrogate escape: read as U+FFFD (as Go and browsers read it),
    // forwarded as sent, recorded with U+FFFD (helper-72 F2).
    let (access, end) = of(32);
    assert_eq!(access["result"], "initiated", "{access}");
    assert_eq!(
        access["metadata"]["arguments"]["t"], "\u{FFFD} x",
        "{access}"
    );
    assert_eq!(end["event_type"], "tool_execution", "{end}");
}

/// helper-114 F2: servers that read ids as 64-bit integers (rmcp) answer a call whose id they
/// cannot read with an error that has no `id` at all. The client gets that error as the
/// server wrote it (the proxy used to drop it), and the trail ends the call with it when it
/// is the only call in flight whose id such a server cannot read (it waited 600 s for a
/// `timeout`); with two such calls the error could be either's, and neither is ended on a
/// guess.
#[tokio::test]
async fn an_error_without_an_id_ends_the_one_call_whose_id_the_server_cannot_read() {
    let big = |id: &str, arguments: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","arguments":{arguments}}}}}"#
        )
    };
    let line = big("12345678901234567890", r#"{"text":"x"}"#);
    // The real peer, directly and through the proxy: the same bytes reach the client.
    let mut direct = LineClient::spawn(tokio::process::Command::new(common::example_server()));
    initialize(&mut direct).await;
    direct.send(format!("{line}\n").as_bytes()).await;
    let expected = direct.recv().await.unwrap();
    assert!(direct.finish().await.success());
    let text = String::from_utf8_lossy(&expected);
    assert!(
        !text.contains("\"id\"") && text.contains("\"error\""),
        "{text}"
    );

    let store = TestStore::new("");
    let mut c = LineClient::spawn(store.proxied_example());
    initialize(&mut c).await;
    // A ping the server cannot read first: its error answers it, and it does not count
    // against the call's (helper-123 I1: it stayed pending, and no call ended after it).
    c.send(b"{\"jsonrpc\":\"2.0\",\"id\":12345678901234567000,\"method\":\"ping\"}\n")
        .await;
    assert_eq!(String::from_utf8_lossy(&c.recv().await.unwrap()), text);
    c.send(format!("{line}\n").as_bytes()).await;
    assert_eq!(
        String::from_utf8_lossy(&c.recv().await.unwrap()),
        text,
        "the client gets the server's error as it was written"
    );
    // A later call is unaffected.
    c.send(&common::call_line(json!(7), "echo", json!({"text": "y"})))
        .await;
    c.recv_response(&json!(7)).await;
    assert!(c.finish().await.success());
    let events = store.events();
    assert_eq!(
        common::kinds_of(&events, 12345678901234567890u64),
        [
            ("tool_access", "initiated"),
            ("tool_failure", "jsonrpc_error")
        ],
        "{events:#?}"
    );
    let end = events
        .iter()
        .find(|e| e["event_type"] == "tool_failure")
        .unwrap();
    let reason = end["metadata"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("naming no id") && reason.contains("12345678901234567890"),
        "{reason}"
    );
    assert_eq!(common::kinds_of(&events, 7)[1].1, "success");

    // Two calls in flight that the server cannot read, or a call and a ping (helper-121 F1):
    // its errors name neither, so no call ends on them (they end when the session does); a
    // readable call ends as usual.
    let ping =
        r#"{"jsonrpc":"2.0","id":12345678901234567899,"method":"ping","params":{"defer":true}}"#;
    let second_call = big("12345678901234567892", r#"{"defer":true}"#);
    for second in [second_call.as_str(), ping] {
        let store = TestStore::new("");
        let (mut c, _log) = spawn(&store, "i64-ids");
        initialize(&mut c).await;
        for line in [
            big("12345678901234567891", r#"{"defer":true}"#).as_str(),
            second,
        ] {
            c.send(format!("{line}\n").as_bytes()).await;
        }
        let flush = big("8", r#"{}"#).replace("echo", "flush");
        let got = step(&mut c, flush.as_bytes(), "flush").await;
        let idless = got
            .iter()
            .filter(|l| !String::from_utf8_lossy(l).contains("\"id\""))
            .count();
        assert_eq!(idless, 2, "both errors reach the client: {got:?}");
        assert!(c.finish().await.success());
        let events = store.events();
        assert_eq!(
            common::kinds_of(&events, 12345678901234567891u64),
            [("tool_access", "initiated"), ("tool_failure", "shutdown")],
            "{second}: {events:#?}"
        );
        assert_eq!(common::kinds_of(&events, 8)[1].1, "success");
    }
}

#[tokio::test]
async fn an_exact_id_wins_over_a_twin_that_is_the_same_double() {
    // Found by the differential test: 2^64 and 2^64 + 1 are one double. The answer to a
    // pending request 2^64 must not end the call 2^64 + 1.
    let store = TestStore::new("");
    let (mut c, _log) = spawn(&store, "ok");
    initialize(&mut c).await;
    let batch = br#"[{"jsonrpc":"2.0","id":18446744073709551616,"method":"resources/read","params":{"uri":"x"}},{"jsonrpc":"2.0","id":18446744073709551617,"method":"tools/call","params":{"name":"echo","arguments":{}}}]"#;
    let got = step(&mut c, batch, "twins").await;
    let text: Vec<String> = got
        .iter()
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect();
    assert!(
        text.iter()
            .any(|t| t.contains("18446744073709551617") && t.contains("ran echo")),
        "{text:?}"
    );
    assert!(c.finish().await.success());
    let events = store.events();
    let pairs = pairs(&events);
    assert_eq!(pairs.len(), 1);
    assert_eq!(pairs[0].1["result"], "success");
    assert_eq!(
        pairs[0].1["metadata"]["content_types"],
        json!(["text"]),
        "{}",
        pairs[0].1
    );
}

#[tokio::test]
async fn a_cancellation_a_server_could_read_two_ways_never_reaches_it() {
    // Found by a fresh pair of eyes: `requestId` twice was forwarded as sent and no cancel was
    // recorded, so a server keeping the first copy cancelled a call the trail said ran on.
    let store = TestStore::new("");
    let (mut c, log) = spawn(&store, "ok");
    initialize(&mut c).await;
    let cancel = |params: &str| {
        format!(
            "{{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":{params}}}"
        )
    };
    for (params, what) in [
        (r#"{"requestId":1,"requestId":2}"#, "requestId twice"),
        (r#"{"RequestId":2}"#, "requestId in another case"),
        (r#"{"requestId":{"n":2}}"#, "an object id"),
        (r#"[2]"#, "params not an object"),
    ] {
        let got = step(&mut c, cancel(params).as_bytes(), what).await;
        // A notification gets no answer: only the ping's.
        assert_eq!(got.len(), 1, "{what}: {got:?}");
    }
    // In a batch the whole batch is refused: its request is answered with an error.
    let batch = format!(
        "[{{\"jsonrpc\":\"2.0\",\"id\":\"b1\",\"method\":\"ping\"}},{}]",
        cancel(r#"{"requestId":1,"requestId":2}"#)
    );
    let got = step(&mut c, batch.as_bytes(), "batch").await;
    let answers: Vec<Value> = got
        .iter()
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    let answer = answers
        .iter()
        .flat_map(|a| a.as_array().cloned().unwrap_or_else(|| vec![a.clone()]))
        .find(|a| a["id"] == "b1")
        .expect("an answer to b1");
    assert_eq!(answer["error"]["code"], -32600, "{answer}");
    // Readable ones pass as they are, also one naming no request (MCP 2025-11-25; a null
    // id names none either: the proxy forwards no request with one).
    for (params, what) in [
        (r#"{"requestId":99,"reason":"x"}"#, "readable"),
        ("{}", "no id"),
        (r#"{"requestId":null}"#, "a null id"),
    ] {
        step(&mut c, cancel(params).as_bytes(), what).await;
    }
    assert!(c.finish().await.success());
    let seen: Vec<Value> = ran(&log)
        .into_iter()
        .filter_map(|r| r.get("cancelled").cloned())
        .collect();
    assert_eq!(seen, vec![json!(99), Value::Null, Value::Null], "{seen:?}");
}

#[tokio::test]
async fn a_tool_name_a_server_could_read_as_another_is_refused() {
    // Found by a fresh pair of eyes: rules match names exactly, so these passed as `allow`
    // while a server trimming, normalizing or folding case would run delete_file.
    let store = TestStore::new(BLOCK_DELETE);
    let (mut c, log) = spawn(&store, "ok");
    initialize(&mut c).await;
    let list = step(
        &mut c,
        br#"{"jsonrpc":"2.0","id":"l","method":"tools/list"}"#,
        "list",
    )
    .await;
    assert!(String::from_utf8_lossy(&list[0]).contains("delete_file"));
    let names = [
        "delete_file ",
        " delete_file",
        "delete_file\n",
        "delete_file\u{0}",
        "delete\u{200b}_file",
        "delete_file\u{ad}",
        "\u{feff}delete_file",
        "DELETE_FILE",
        "Delete_File",
        "\u{ff44}elete_file",
        // NFKC reads these as delete_file too (helper-120 F4).
        "\u{24d3}elete_file",
        "\u{1d41d}\u{1d41e}\u{1d425}\u{1d41e}\u{1d42d}\u{1d41e}_file",
        "\u{1d48}elete_file",
    ];
    for (i, name) in names.iter().enumerate() {
        let line = json!({"jsonrpc": "2.0", "id": i, "method": "tools/call",
            "params": {"name": name, "arguments": {"path": "notes/y.txt"}}});
        let got = step(&mut c, line.to_string().as_bytes(), &format!("name {i}")).await;
        let answer: Value = serde_json::from_slice(&got[0]).unwrap();
        assert_eq!(answer["id"], i, "{name:?}: {answer}");
        assert_eq!(answer["error"]["code"], -32602, "{name:?}: {answer}");
    }
    // An ordinary name still runs.
    let got = step(
        &mut c,
        &common::call_line(json!("e"), "echo", json!({})),
        "echo",
    )
    .await;
    assert!(String::from_utf8_lossy(&got[0]).contains("ran echo"));
    assert!(c.finish().await.success());
    let ran: Vec<Value> = ran(&log)
        .into_iter()
        .filter(|r| r.get("name").is_some())
        .collect();
    assert_eq!(ran.len(), 1, "{ran:?}");
    assert_eq!(ran[0]["name"], "echo");
    let refused = store
        .events()
        .into_iter()
        .filter(|e| e["event_type"] == "tool_access" && e["result"] == "refused")
        .count();
    assert_eq!(refused, names.len());
}

#[tokio::test]
async fn a_case_twin_of_a_tool_the_policy_names_is_refused_before_any_tools_list() {
    // helper-65: the case check compared with the tools the server listed, so a first call
    // (a sessionless request's only one) to `Delete_File` passed as `allow` while a server
    // folding case would run delete_file, which the policy scores 100. Sequence rules name
    // tools too; `ſ` (U+017F) folds to `s` as Go's strings.EqualFold folds it.
    let policy = format!(
        "{BLOCK_DELETE}\n[[risk.rule]]\nname = \"wipes\"\ntools = [\"wipe_*\"]\nregex = \"all\"\nscore = 10\n[[risk.sequence]]\nname = \"out\"\nafter_tags = [\"gdpr\"]\nthen_tools = [\"send_mail\"]\nscore = 50\n"
    );
    for shadow in [false, true] {
        let config = if shadow {
            format!("[risk]\nshadow = true\n{policy}")
        } else {
            policy.clone()
        };
        let store = TestStore::new(&config);
        let (mut c, log) = spawn(&store, "ok");
        initialize(&mut c).await;
        let twins = ["Delete_File", "DELETE_FILE", "Send_Mail", "\u{17f}end_mail"];
        for (i, name) in twins.iter().enumerate() {
            let line = json!({"jsonrpc": "2.0", "id": i, "method": "tools/call",
                "params": {"name": name, "arguments": {"path": "notes/y.txt"}}});
            let got = step(&mut c, line.to_string().as_bytes(), &format!("name {i}")).await;
            let answer: Value = serde_json::from_slice(&got[0]).unwrap();
            assert_eq!(answer["id"], i, "{name:?}: {answer}");
            let message = answer["error"]["message"].as_str().unwrap_or_default();
            // `ſ` is `s` under NFKC too: refused as a name a normalizing server reads as
            // another, before any policy (so under shadow too, as full-width letters are).
            if name.starts_with('\u{17f}') {
                assert!(message.contains("NFKC"), "{name:?}: {answer}");
                continue;
            }
            if shadow {
                // Shadow lets every call through: the policy only says what it would do.
                assert!(answer["result"].is_object(), "{name:?}: {answer}");
                continue;
            }
            assert_eq!(answer["error"]["code"], -32602, "{name:?}: {answer}");
            assert!(message.contains("only in another case"), "{answer}");
        }
        // A name no entry names in any case runs, listed or not; so does one a wildcard glob
        // matches only in another case (camelCase names are no twins of `*file*`).
        for (id, name) in [("e", "Echo"), ("w", "Wipe_disk")] {
            let got = step(&mut c, &common::call_line(json!(id), name, json!({})), name).await;
            let answer: Value = serde_json::from_slice(&got[0]).unwrap();
            assert!(answer["result"].is_object(), "{name}: {answer}");
        }
        assert!(c.finish().await.success());
        let ran: Vec<Value> = ran(&log)
            .into_iter()
            .filter(|r| r.get("name").is_some())
            .collect();
        // Under shadow every twin runs but the NFKC one.
        let expected = if shadow { twins.len() - 1 + 2 } else { 2 };
        assert_eq!(ran.len(), expected, "shadow {shadow}: {ran:?}");
        let refused = store
            .events()
            .into_iter()
            .filter(|e| e["event_type"] == "tool_access" && e["result"] == "refused")
            .count();
        assert_eq!(
            refused,
            if shadow { 1 } else { twins.len() },
            "shadow {shadow}"
        );
    }
}

/// Found by a fresh pair of eyes (python-sdk#961, #1720): a server that writes request 20's id
/// back as `"20"`. The official SDKs read ids as numbers and take it as call 20's answer; the
/// trail kept the call open until the client left (`shutdown`) or `call_timeout_ms`, then sent
/// the client a second answer (-32001) and the server a cancellation of finished work.
#[tokio::test]
async fn an_answer_whose_id_is_the_calls_number_as_a_string_ends_that_call() {
    let store = TestStore::new("[limits]\ncall_timeout_ms = 600000\n");
    let (mut c, _log) = spawn(&store, "string-ids");
    initialize(&mut c).await;
    for id in [20, 21] {
        c.send(&common::call_line(json!(id), "echo", json!({})))
            .await;
        let reply = c.recv_json().await;
        // Under the request's own id: every client, strict or not, takes it for the call the
        // trail ended with it.
        assert_eq!(reply["id"], json!(id), "{reply}");
        assert_eq!(reply["result"]["content"][0]["text"], "ran echo", "{reply}");
    }
    assert!(c.finish().await.success());
    let events = store.events();
    let pairs = pairs(&events);
    assert_eq!(pairs.len(), 2, "{events:#?}");
    for (access, end) in &pairs {
        assert_eq!(end["event_type"], "tool_execution", "{access} {end}");
        assert_eq!(end["result"], "success", "{end}");
    }
}

/// Found by a fresh pair of eyes (PrefectHQ/fastmcp#4124): `{"requestId":"30"}` cancels call 30
/// on a server built on an official SDK, which then never answers it; the trail said the call
/// ran on, then `timeout`. It is now recorded as cancelled by the client.
#[tokio::test]
async fn a_cancellation_naming_the_call_as_a_string_is_recorded_as_its_cancellation() {
    let store = TestStore::new("[limits]\ncall_timeout_ms = 600000\n");
    let (mut c, log) = spawn(&store, "string-ids");
    initialize(&mut c).await;
    c.send(&common::call_line(json!(30), "slow", json!({"ms": 400})))
        .await;
    c.send(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":{\"requestId\":\"30\",\"reason\":\"user\"}}\n").await;
    // This server answers anyway (late): forwarded, as it would be directly.
    let late = c.recv_json().await;
    assert_eq!(late["id"], 30, "{late}");
    assert!(c.finish().await.success());
    assert!(
        ran(&log).iter().any(|r| r["cancelled"] == "30"),
        "the cancellation reached the server as sent: {:?}",
        ran(&log)
    );
    let events = store.events();
    let kinds: Vec<(String, String)> = events
        .iter()
        .filter(|e| e["metadata"]["request_id"] == 30)
        .map(|e| {
            (
                e["event_type"].as_str().unwrap().to_string(),
                e["result"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        kinds[..2],
        [
            ("tool_access".to_string(), "initiated".to_string()),
            ("tool_failure".to_string(), "cancelled".to_string()),
        ],
        "{events:#?}"
    );
}

#[tokio::test]
async fn a_persons_answer_to_the_servers_question_is_judged_and_recorded() {
    // In the 2025 revisions a server asks in a request of its own and acts on the answer as
    // on a call's arguments: who answered what is in the trail, masked as arguments are. Here
    // a server phishing for a key through a form, which MCP forbids.
    let store = TestStore::new("");
    let (mut c, log) = spawn(&store, "asks-elicit");
    initialize(&mut c).await;
    const KEY: &str = "AKIAIOSFODNN7EXAMPLE";
    c.send(b"{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"arguments\":{}}}\n").await;
    let ask = c.recv_json().await;
    assert_eq!(ask["id"], "elicit-3", "{ask}");
    let answer = json!({"jsonrpc": "2.0", "id": "elicit-3",
        "result": {"action": "accept", "content": {"name": format!("my key is {KEY}")}}});
    c.send(format!("{answer}\n").as_bytes()).await;
    let reply = c.recv_json().await;
    assert_eq!(reply["id"], 3, "{reply}");
    assert_eq!(
        reply["result"]["content"][0]["text"], "ping answered with result",
        "{reply}"
    );
    // An answer the proxy cannot read is not passed on: the server hears so, and the trail
    // says so.
    c.send(b"{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"arguments\":{}}}\n").await;
    assert_eq!(c.recv_json().await["id"], "elicit-4");
    c.send(b"{\"jsonrpc\":\"2.0\",\"id\":\"elicit-4\",\"result\":{\"action\":\n")
        .await;
    let reply = c.recv_json().await;
    assert_eq!(reply["id"], 4, "{reply}");
    assert_eq!(
        reply["result"]["content"][0]["text"], "ping answered with error",
        "{reply}"
    );
    assert!(c.finish().await.success());
    // The server got the answer as sent (the proxy judges, it does not rewrite).
    let got = ran(&log);
    let first = got.iter().find(|l| l["ping_answer"]["id"] == "elicit-3");
    assert_eq!(
        first.unwrap()["ping_answer"]["result"]["content"]["name"],
        format!("my key is {KEY}")
    );
    let events = store.events();
    let asked: Vec<&Value> = events
        .iter()
        .filter(|e| e["event_type"] == "server_request")
        .collect();
    assert_eq!(asked.len(), 2, "{events:#?}");
    let e = asked[0];
    assert_eq!(e["action"], "elicitation/create", "{e}");
    assert_eq!(e["result"], "success", "{e}");
    assert_eq!(e["user_id"], "tester", "{e}");
    assert_eq!(e["metadata"]["request_id"], "elicit-3", "{e}");
    assert_eq!(e["metadata"]["arguments"]["message"], "Your name?", "{e}");
    let stored = &e["metadata"]["input_responses"]["result"];
    assert_eq!(stored["action"], "accept", "{e}");
    let name = stored["content"]["name"].as_str().unwrap();
    assert!(name.starts_with("my key is ") && !name.contains(KEY), "{e}");
    assert_eq!(e["risk_level"], "high", "{e}");
    assert!(
        e["metadata"]["redacted"].to_string().contains("secret"),
        "{e}"
    );
    assert!(
        e["metadata"]["risk_reasons"]
            .to_string()
            .contains("credentials in form mode"),
        "{e}"
    );
    let e = asked[1];
    assert_eq!(e["result"], "refused", "{e}");
    assert_eq!(e["metadata"]["request_id"], "elicit-4", "{e}");
    assert!(
        e["metadata"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("not passed on")),
        "{e}"
    );
    assert!(e["metadata"]["input_responses"].is_null(), "{e}");
    // Nowhere in the store in clear.
    assert!(common::files_containing(&store.store_dir(), KEY).is_empty());
    // The calls themselves are paired as before.
    let results: Vec<String> = pairs(&events)
        .iter()
        .map(|(_, end)| end["result"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(results, ["success", "success"]);
    // `analyze` lists the high-risk answer beside the calls (it is no call).
    for args in [
        &["analyze", "user", "tester", "--json"][..],
        &["analyze", "tools", "--json"],
    ] {
        let report: Value = serde_json::from_str(&common::cli_ok(&store.config, args)).unwrap();
        assert_eq!(report["high_risk_answers_total"], 1, "{args:?}: {report}");
        assert_eq!(
            report["high_risk_answers"][0]["event_id"], asked[0]["event_id"],
            "{report}"
        );
        assert_eq!(report["high_risk_answers"][0]["tool"], "elicitation/create");
    }
    let table = common::cli_ok(&store.config, &["analyze", "user", "tester"]);
    assert!(
        table.contains("high-risk answers to servers' questions"),
        "{table}"
    );
}

#[tokio::test]
async fn every_answer_to_a_server_question_is_recorded_however_its_id_or_batch_goes() {
    // helper-118: answers that reached the server with no event, and risks misplaced.
    let store = TestStore::new("");
    let (mut c, _log) = spawn(&store, "asks-elicit");
    initialize(&mut c).await;
    let call = |id: u32, args: Value| {
        let line = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": "echo", "arguments": args}});
        format!("{line}\n")
    };
    // 1. The question's id is 5; the answer names "5" (SDKs match ids as numbers).
    c.send(call(1, json!({"ask_id": 5})).as_bytes()).await;
    assert_eq!(c.recv_json().await["id"], 5);
    c.send(b"{\"jsonrpc\":\"2.0\",\"id\":\"5\",\"result\":{\"action\":\"accept\",\"content\":{\"card\":\"4111 1111 1111 1111\"}}}\n").await;
    assert_eq!(c.recv_json().await["id"], 1);
    // 2. A second answer to it is passed on too: recorded, linked to the first.
    c.send(b"{\"jsonrpc\":\"2.0\",\"id\":5,\"result\":{\"action\":\"decline\"}}\n")
        .await;
    // 3. A question carrying the server's own secret, declined: not the person's risk.
    let message = "use key AKIAIOSFODNN7EXAMPLE?";
    c.send(call(2, json!({"ask_message": message})).as_bytes())
        .await;
    assert_eq!(c.recv_json().await["id"], "elicit-2");
    c.send(b"{\"jsonrpc\":\"2.0\",\"id\":\"elicit-2\",\"result\":{\"action\":\"decline\"}}\n")
        .await;
    assert_eq!(c.recv_json().await["id"], 2);
    // 4. An answer to a request the proxy holds none of (never asked, or forgotten).
    c.send(b"{\"jsonrpc\":\"2.0\",\"id\":\"never-asked\",\"result\":{}}\n")
        .await;
    // 5. An answer in a batch refused after it (a call with a fractional id): the answer
    // never reached the server, which gets an error instead; the trail says so.
    c.send(call(3, json!({})).as_bytes()).await;
    assert_eq!(c.recv_json().await["id"], "elicit-3");
    c.send(b"[{\"jsonrpc\":\"2.0\",\"id\":\"elicit-3\",\"result\":{\"action\":\"accept\"}},{\"jsonrpc\":\"2.0\",\"id\":1.5,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\"}}]\n").await;
    let mut seen = Vec::new();
    while !seen.iter().any(|v: &Value| v["id"] == 3) {
        seen.push(c.recv_json().await);
    }
    let three = seen.iter().find(|v| v["id"] == 3).unwrap();
    assert_eq!(
        three["result"]["content"][0]["text"], "ping answered with error",
        "{seen:?}"
    );
    assert!(c.finish().await.success());
    let events = store.events();
    let asked: Vec<&Value> = events
        .iter()
        .filter(|e| e["event_type"] == "server_request")
        .collect();
    let summary: Vec<(String, String, String)> = asked
        .iter()
        .map(|e| {
            (
                e["metadata"]["request_id"].to_string(),
                e["result"].as_str().unwrap().to_string(),
                e["risk_level"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let s = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
    assert_eq!(
        summary,
        [
            s("\"5\"", "success", "high"),
            s("5", "success", "low"),
            s("\"elicit-2\"", "success", "low"),
            s("\"never-asked\"", "success", "low"),
            s("\"elicit-3\"", "success", "low"),
            s("\"elicit-3\"", "refused", "low"),
        ],
        "{asked:#?}"
    );
    assert_eq!(asked[0]["action"], "elicitation/create");
    // Answers are never linked (the index reads links as a call's two halves): a further
    // answer names the earlier one in its reason.
    assert!(asked.iter().all(|e| e["linked_event_id"].is_null()));
    let first = asked[0]["event_id"].as_str().unwrap();
    let reason = asked[1]["metadata"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("a further answer") && reason.contains(first),
        "{reason}"
    );
    assert_eq!(
        asked[2]["compliance_tags"],
        json!(["secrets"]),
        "{}",
        asked[2]
    );
    assert!(!asked[2].to_string().contains("AKIAIOSFODNN7EXAMPLE"));
    assert_eq!(asked[3]["action"], "unknown", "{}", asked[3]);
    let first = asked[4]["event_id"].as_str().unwrap();
    let reason = asked[5]["metadata"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("not passed on") && reason.contains(first),
        "{reason}"
    );

    // The server's pings: an empty answer is no event; an answer that carries something
    // is one (under the method it answers).
    let store = TestStore::new("");
    let (mut c, _log) = spawn(&store, "asks-ping");
    initialize(&mut c).await;
    c.send(call(1, json!({})).as_bytes()).await;
    assert_eq!(c.recv_json().await["id"], "srv-1");
    c.send(b"{\"jsonrpc\":\"2.0\",\"id\":\"srv-1\",\"result\":{}}\n")
        .await;
    assert_eq!(c.recv_json().await["id"], 1);
    c.send(call(2, json!({})).as_bytes()).await;
    assert_eq!(c.recv_json().await["id"], "srv-2");
    c.send(b"{\"jsonrpc\":\"2.0\",\"id\":\"srv-2\",\"result\":{\"k\":\"AKIAIOSFODNN7EXAMPLE\"}}\n")
        .await;
    assert_eq!(c.recv_json().await["id"], 2);
    assert!(c.finish().await.success());
    let events = store.events();
    let asked: Vec<&Value> = events
        .iter()
        .filter(|e| e["event_type"] == "server_request")
        .collect();
    assert_eq!(asked.len(), 1, "{asked:#?}");
    assert_eq!(
        (&asked[0]["action"], &asked[0]["metadata"]["request_id"]),
        (&json!("ping"), &json!("srv-2"))
    );
    assert_eq!(
        asked[0]["compliance_tags"],
        json!(["secrets"]),
        "{}",
        asked[0]
    );
}
