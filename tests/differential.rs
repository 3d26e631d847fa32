//! Differential property test of the stdio path: what the proxy forwards, parsed as a strict
//! server would (serde_json, a repeated key refused), against what it recorded.
//!
//! Each case is one proxy session in front of `tests/peers/scripted_server.py`, fed generated
//! client lines (valid, malformed, nested, repeated keys, odd ids, batches, odd whitespace
//! and escapes, invalid UTF-8, carriage returns, two messages on a line) one at a time, each
//! followed by a `ping` whose answer marks the end of that line's step. The server answers
//! every `tools/call` with the next of a shuffled set of answers, valid and broken. Checked:
//!
//! - every line the server received is a client line, byte for byte, in order;
//! - every `tools/call` the server could run (strict parse) has an access event with the same
//!   id text, tool and arguments, and the server never sees a `tools/call` without an id;
//! - every `tools/call` a lenient reading finds in a line that was not forwarded is recorded as
//!   refused or blocked, and that line was answered unless it was a notification;
//! - every call that was forwarded ended within its step, with an execution or failure event,
//!   and the client saw an answer carrying its id exactly as sent.
//!
//! `MCP_AUDIT_DIFF_CASES` sets the number of sessions (default 12), bounding the run time.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{TestStore, pairs};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

/// The server's answers to `tools/call`, valid and broken; `"__ID__"` is the request's id.
const ANSWERS: &[&[u8]] = &[
    br#"{"jsonrpc":"2.0","id":"__ID__","result":{"content":[{"type":"text","text":"ok"}]}}"#,
    br#"{"jsonrpc":"2.0","id":"__ID__","result":{"content":[],"isError":true}}"#,
    br#"{"jsonrpc":"2.0","id":"__ID__","error":{"code":-32000,"message":"nope"}}"#,
    br#"{"id":"__ID__","result":{"content":[]}}"#,
    b"{\"jsonrpc\":\"2.0\",\"id\":\"__ID__\",\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"\xff\"}]}}",
    br#"{"jsonrpc":"2.0","result":{"content":[]},"id":"__ID__"}"#,
    br#"[{"jsonrpc":"2.0","id":"__ID__","result":{"content":[]}}]"#,
    br#"{"jsonrpc":"2.0","id":"__ID__","id":"__ID__","result":{}}"#,
    b"{\"jsonrpc\":\"2.0\",\"id\":\"__ID__\",\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"a\rb\"}]}}",
    br#"{"jsonrpc":"2.0","id":"__ID__","result":{"content":[{"type":"text","text":"x"}]},"extra":{"a":[1,2]}}"#,
    b"\xef\xbb\xbf{\"jsonrpc\":\"2.0\",\"id\":\"__ID__\",\"result\":{}}",
    br#"{"jsonrpc":"2.0","id":999999,"id":"__ID__","result":{}}"#,
    br#"{"jsonrpc":"2.0","id":"__ID__","method":"x","result":{}}"#,
    br#"{"jsonrpc":"2.0","ID":"__ID__","result":{}}"#,
];

// ------------------------------------------------------------------ generated client lines

#[derive(Debug, Clone)]
enum Id {
    Absent,
    Text(String),
}

fn id() -> impl Strategy<Value = Id> {
    prop_oneof![
        4 => (0i64..40).prop_map(|i| Id::Text(i.to_string())),
        1 => Just(Id::Text("18446744073709551616".into())),
        1 => Just(Id::Text("18446744073709551617".into())),
        1 => Just(Id::Text("-9223372036854775809".into())),
        1 => prop_oneof![Just("1.0"), Just("2e0"), Just("0.5"), Just("-3.25e-2")]
            .prop_map(|t| Id::Text(t.into())),
        2 => "[a-z\"\\\\é漢 ]{0,6}".prop_map(|s| Id::Text(serde_json::to_string(&s).unwrap())),
        2 => Just(Id::Absent),
        1 => prop_oneof![Just("null"), Just("true"), Just("{}"), Just("[1]")]
            .prop_map(|t| Id::Text(t.into())),
    ]
}

/// A JSON value as text, with arbitrary spacing and escapes.
fn value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_string()),
        Just("true".to_string()),
        (0u32..1000).prop_map(|n| n.to_string()),
        Just("1.5".to_string()),
        "[a-zA-Z ./_-]{0,10}".prop_map(|s| serde_json::to_string(&s).unwrap()),
        "[a-z\"\\\\\n\u{e9}\u{1F600}]{0,6}".prop_map(|s| serde_json::to_string(&s).unwrap()),
        Just(r#""\u0041\/\ud83d\ude00""#.to_string()),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec(("[a-z]{1,4}", inner), 0..4).prop_map(|m| {
                let members: Vec<String> = m
                    .into_iter()
                    .map(|(k, v)| format!("\"{k}\" : {v}"))
                    .collect();
                format!("{{{}}}", members.join(", "))
            }),
        ]
    })
}

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => Just(r#""tools/call""#.to_string()),
        1 => Just(r#""tools\/call""#.to_string()),
        1 => Just(r#""\u0074ools/call""#.to_string()),
        1 => Just(r#""Tools/Call""#.to_string()),
        1 => Just(r#""ping""#.to_string()),
        1 => Just(r#""tools/list""#.to_string()),
        1 => Just(r#""notifications/cancelled""#.to_string()),
    ]
}

fn params() -> impl Strategy<Value = Option<String>> {
    let tool = prop_oneof![
        Just("echo"),
        Just("delete_file"),
        Just("slow"),
        Just("w\u{e9}ird tool")
    ];
    prop_oneof![
        6 => (tool.clone(), value(), any::<bool>()).prop_map(|(t, args, meta)| {
            let meta = if meta { r#","_meta":{"progressToken":1}"# } else { "" };
            Some(format!(r#"{{"name":"{t}","arguments":{args}{meta}}}"#))
        }),
        1 => (tool.clone(), tool.clone()).prop_map(|(a, b)| Some(format!(r#"{{"name":"{a}","name":"{b}","arguments":{{}}}}"#))),
        1 => (tool.clone(), value(), value()).prop_map(|(t, a, b)| Some(format!(r#"{{"name":"{t}","arguments":{{"k":{a},"k":{b}}}}}"#))),
        1 => (tool, value()).prop_map(|(t, a)| Some(format!(r#"{{"name":"{t}","arguments":[{a}]}}"#))),
        1 => Just(Some(r#""echo""#.to_string())),
        1 => Just(None),
    ]
}

/// One JSON-RPC object as text, members in any order, some repeated or malformed.
fn object() -> impl Strategy<Value = String> {
    (
        id(),
        method(),
        params(),
        prop_oneof![8 => Just(Some("\"2.0\"")), 1 => Just(None), 1 => Just(Some("\"1.0\""))],
        prop::option::weighted(0.15, (method(), id())),
        prop::sample::select(vec!["", " ", "\t", "  "]),
        any::<prop::sample::Index>(),
    )
        .prop_map(|(id, method, params, jsonrpc, repeat, space, order)| {
            let mut members: Vec<(String, String)> = Vec::new();
            if let Some(j) = jsonrpc {
                members.push(("\"jsonrpc\"".into(), j.into()));
            }
            if let Id::Text(t) = &id {
                members.push(("\"id\"".into(), t.clone()));
            }
            members.push(("\"method\"".into(), method));
            if let Some(p) = params {
                members.push(("\"params\"".into(), p));
            }
            if let Some((m, i)) = repeat {
                members.push(("\"\\u006dethod\"".into(), m));
                if let Id::Text(t) = i {
                    members.push(("\"id\"".into(), t));
                }
            }
            let n = members.len();
            members.rotate_left(order.index(n));
            let body: Vec<String> = members
                .into_iter()
                .map(|(k, v)| format!("{k}{space}:{space}{v}"))
                .collect();
            format!("{{{space}{}{space}}}", body.join(&format!(",{space}")))
        })
}

/// One client line (without its newline), shown as text when a case fails.
#[derive(Clone)]
struct Line(Vec<u8>);

impl std::fmt::Debug for Line {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(&self.0))
    }
}

fn line() -> impl Strategy<Value = Line> {
    raw_line().prop_map(Line)
}

fn raw_line() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        10 => object().prop_map(String::into_bytes),
        2 => prop::collection::vec(object(), 1..4).prop_map(|v| format!("[{}]", v.join(",")).into_bytes()),
        1 => (object(), object()).prop_map(|(a, b)| format!("{a} {b}").into_bytes()),
        1 => (object(), object()).prop_map(|(a, b)| format!("{a}\r{b}").into_bytes()),
        1 => (object(), any::<prop::sample::Index>()).prop_map(|(a, at)| {
            let mut bytes = a.into_bytes();
            let at = at.index(bytes.len());
            bytes.insert(at, 0xff);
            bytes
        }),
        1 => (object(), any::<prop::sample::Index>()).prop_map(|(a, at)| {
            let bytes = a.into_bytes();
            bytes[..at.index(bytes.len())].to_vec()
        }),
        1 => object().prop_map(|a| format!("{a} trailing").into_bytes()),
    ]
    .prop_filter("one line", |l| !l.contains(&b'\n') && !l.iter().all(u8::is_ascii_whitespace))
}

// ------------------------------------------------------------------ one session

struct Session {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<Vec<u8>>,
}

impl Session {
    fn start(store: &TestStore, log: &std::path::Path, script: &std::path::Path) -> Session {
        let server = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/peers/scripted_server.py"
        );
        let mut child = Command::new(common::proxy_bin())
            .args(["stdio", "--config"])
            .arg(&store.config)
            .args(["--", "python3", server])
            .arg(log)
            .arg(script)
            .env("RUST_LOG", "off")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the proxy");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            loop {
                let mut line = Vec::new();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        if tx.send(line).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        let stdin = child.stdin.take();
        Session {
            child,
            stdin,
            lines,
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(bytes).unwrap();
        stdin.flush().unwrap();
    }

    /// Lines from the proxy until the answer to the ping `"sync-N"`, which is left out.
    fn step(&mut self, n: usize) -> Vec<Vec<u8>> {
        self.send(
            format!("{{\"jsonrpc\":\"2.0\",\"id\":\"sync-{n}\",\"method\":\"ping\"}}\n").as_bytes(),
        );
        let marker = format!("\"sync-{n}\"");
        let mut got = Vec::new();
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|_| panic!("no answer to sync-{n}; got {got:?}"));
            if String::from_utf8_lossy(&line).contains(&marker) {
                return got;
            }
            got.push(line);
        }
    }

    fn finish(mut self) {
        drop(self.stdin.take());
        let status = self.child.wait().unwrap();
        assert!(status.success(), "proxy exit: {status}");
    }
}

// ------------------------------------------------------------------ the strict server's view

/// A message as a strict server reads it (serde derive: a repeated key is an error).
#[derive(Deserialize)]
#[allow(
    dead_code,
    reason = "present to refuse a repeated key, as serde derive does"
)]
struct Strict<'a> {
    #[serde(borrow)]
    jsonrpc: Option<&'a RawValue>,
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    method: Option<String>,
    params: Option<Value>,
    #[serde(borrow)]
    result: Option<&'a RawValue>,
    #[serde(borrow)]
    error: Option<&'a RawValue>,
}

/// The `tools/call`s a strict server would run from one line: (id text, params).
fn strict_calls(line: &[u8]) -> Vec<(Option<String>, Option<Value>)> {
    let Ok(text) = std::str::from_utf8(line) else {
        return Vec::new();
    };
    let elements: Vec<&RawValue> = match serde_json::from_str::<&RawValue>(text) {
        Ok(v) if v.get().starts_with('[') => serde_json::from_str(v.get()).unwrap_or_default(),
        Ok(v) => vec![v],
        Err(_) => return Vec::new(),
    };
    elements
        .into_iter()
        .filter_map(|e| serde_json::from_str::<Strict>(e.get()).ok())
        .filter(|m| m.method.as_deref() == Some("tools/call"))
        .map(|m| (m.id.map(|i| i.get().to_string()), m.params))
        .collect()
}

/// The `tools/call`s a lenient server could run from one line: each value in sequence, on
/// each piece between carriage returns, invalid UTF-8 replaced, the last repeated key kept,
/// and a method with U+FFFD counted as a call. Returns each call's tool name.
fn lenient_calls(line: &[u8]) -> Vec<Option<String>> {
    let text = String::from_utf8_lossy(line);
    let mut best: Vec<Option<String>> = Vec::new();
    for pieces in [vec![&*text], text.split('\r').collect::<Vec<_>>()] {
        let mut found = Vec::new();
        for piece in pieces {
            for value in serde_json::Deserializer::from_str(piece).into_iter::<Value>() {
                let Ok(value) = value else { break };
                let items = match value {
                    Value::Array(items) => items,
                    v => vec![v],
                };
                for item in items {
                    let method = item.get("method").and_then(Value::as_str).unwrap_or("");
                    if method == "tools/call" || method.contains('\u{fffd}') {
                        let name = item
                            .get("params")
                            .and_then(|p| p.get("name"))
                            .and_then(Value::as_str)
                            .map(str::to_string);
                        found.push(name);
                    }
                }
            }
        }
        if found.len() > best.len() {
            best = found;
        }
    }
    best
}

/// Whether a line the client got carries the id written `id` (as the client wrote it): a
/// number by its exact text (the proxy and the server echo it as sent), a string by its value
/// (a server may re-escape it).
fn answers_id(line: &[u8], id: &str) -> bool {
    #[derive(Deserialize)]
    struct IdOf<'a> {
        #[serde(borrow)]
        id: Option<&'a RawValue>,
    }
    let text = String::from_utf8_lossy(line);
    let ids: Vec<String> = match serde_json::from_str::<Vec<IdOf>>(&text) {
        Ok(items) => items
            .into_iter()
            .filter_map(|i| Some(i.id?.get().to_string()))
            .collect(),
        Err(_) => serde_json::from_str::<IdOf>(&text)
            .ok()
            .and_then(|i| Some(i.id?.get().to_string()))
            .into_iter()
            .collect(),
    };
    ids.iter().any(|got| {
        got == id
            || (id.starts_with('"')
                && serde_json::from_str::<String>(got).ok()
                    == serde_json::from_str::<String>(id).ok())
    })
}

/// An access event: id text, tool, arguments, result.
struct Access {
    id: Option<String>,
    tool: Option<String>,
    arguments: Option<Value>,
    result: String,
}

fn accesses(store: &TestStore) -> Vec<Access> {
    #[derive(Deserialize)]
    struct Meta {
        request_id: Option<Box<RawValue>>,
        arguments: Option<Value>,
    }
    #[derive(Deserialize)]
    struct Event {
        event_type: String,
        tool_name: Option<String>,
        result: String,
        metadata: Meta,
    }
    store
        .event_lines()
        .iter()
        .map(|l| serde_json::from_str::<Event>(l).unwrap())
        .filter(|e| e.event_type == "tool_access")
        .map(|e| Access {
            id: e.metadata.request_id.map(|r| r.get().to_string()),
            tool: e.tool_name,
            arguments: e.metadata.arguments,
            result: e.result,
        })
        .collect()
}

// ------------------------------------------------------------------ the property

fn session(lines: &[Line], answers: &[usize]) -> Result<(), TestCaseError> {
    let lines: Vec<Vec<u8>> = lines.iter().map(|l| l.0.clone()).collect();
    let store = TestStore::new("");
    let log = store.dir.path().join("received.log");
    let script = store.dir.path().join("answers.ndjson");
    let mut text = Vec::new();
    for &a in answers {
        text.extend_from_slice(ANSWERS[a]);
        text.push(b'\n');
    }
    std::fs::write(&script, text).unwrap();
    let mut s = Session::start(&store, &log, &script);
    s.send(format!("{}\n", common::INIT).as_bytes());
    let init = s
        .lines
        .recv_timeout(Duration::from_secs(20))
        .expect("initialize answered");
    prop_assert!(String::from_utf8_lossy(&init).contains("\"init\""));
    s.send(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n");
    let mut replies = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        let mut bytes = line.clone();
        bytes.push(b'\n');
        s.send(&bytes);
        replies.push(s.step(n));
    }
    s.finish();

    // What the server received, less the handshake and the sync pings.
    let own: Vec<Vec<u8>> = [
        common::INIT.to_string(),
        "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}".to_string(),
    ]
    .into_iter()
    .chain(
        (0..lines.len())
            .map(|n| format!("{{\"jsonrpc\":\"2.0\",\"id\":\"sync-{n}\",\"method\":\"ping\"}}")),
    )
    .map(String::into_bytes)
    .collect();
    // The proxy's error for a refused answer of the client goes to the request it answered
    // (the server's); it carries no call.
    let refused_answer = |l: &[u8]| {
        serde_json::from_slice::<Value>(l).is_ok_and(|v| {
            v.get("method").is_none()
                && v["error"]["message"].as_str().is_some_and(|m| {
                    m.starts_with("mcp-audit-proxy refused the client's answer to this request")
                })
        })
    };
    let received: Vec<Vec<u8>> = std::fs::read(&log)
        .unwrap()
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty() && !own.iter().any(|o| o == l) && !refused_answer(l))
        .map(<[u8]>::to_vec)
        .collect();
    // Forwarded lines are client lines, byte for byte, in order.
    let mut forwarded = vec![false; lines.len()];
    let mut next = 0;
    for r in &received {
        let at = (next..lines.len()).find(|&i| &lines[i] == r);
        prop_assert!(
            at.is_some(),
            "the server got a line the client never sent: {}",
            String::from_utf8_lossy(r)
        );
        let at = at.unwrap();
        forwarded[at] = true;
        next = at + 1;
    }

    let events = store.events();
    let recorded = accesses(&store);
    // Calls the proxy never forwarded: refused or blocked at access, or accepted and then
    // ended unforwarded (another element of their batch was refused). An end refused on the
    // server's side (a broken answer) is a call that did run.
    let mut refused: HashMap<Option<String>, usize> = HashMap::new();
    for (access, end) in pairs(&events) {
        let at_access = access["result"] == "refused" || access["result"] == "blocked";
        let unforwarded = (end["result"] == "refused" || end["result"] == "blocked")
            && end["metadata"]["failure_side"] != "upstream";
        if at_access || unforwarded {
            let tool = access["tool_name"].as_str().map(str::to_string);
            *refused.entry(tool).or_default() += 1;
        }
    }
    let mut expected_refused: HashMap<Option<String>, usize> = HashMap::new();
    let mut used = vec![false; recorded.len()];
    for (n, line) in lines.iter().enumerate() {
        let shown = String::from_utf8_lossy(line);
        if forwarded[n] {
            for (id, params) in strict_calls(line) {
                let id = id.filter(|i| i != "null");
                prop_assert!(
                    id.is_some(),
                    "a tools/call without an id reached the server: {shown}"
                );
                let tool = params
                    .as_ref()
                    .and_then(|p| p.get("name"))
                    .and_then(Value::as_str);
                // `"arguments": null` is recorded as no arguments (serde reads both as absent).
                let arguments = params
                    .as_ref()
                    .and_then(|p| p.get("arguments"))
                    .filter(|a| !a.is_null())
                    .cloned();
                // Ids repeat across lines: each event matches one call, in order.
                let hit = (0..recorded.len()).find(|&k| {
                    let a = &recorded[k];
                    !used[k] && a.id == id && a.result == "initiated" && a.tool.as_deref() == tool
                });
                prop_assert!(
                    hit.is_some(),
                    "no access event for a call the server ran: {shown}"
                );
                used[hit.unwrap()] = true;
                let hit = &recorded[hit.unwrap()];
                prop_assert_eq!(&hit.arguments, &arguments, "arguments differ: {}", shown);
                // It ended within its step, and the client saw an answer with its id.
                let id = id.unwrap();
                prop_assert!(
                    replies[n].iter().any(|r| answers_id(r, &id)),
                    "no answer carrying id {} for {}: {:?}",
                    id,
                    shown,
                    replies[n]
                        .iter()
                        .map(|r| String::from_utf8_lossy(r).into_owned())
                        .collect::<Vec<_>>()
                );
            }
        } else {
            for tool in lenient_calls(line) {
                *expected_refused.entry(tool).or_default() += 1;
            }
            let notification = matches!(
                serde_json::from_slice::<Value>(line),
                Ok(Value::Object(m)) if !m.contains_key("id")
            ) || matches!(
                serde_json::from_slice::<Value>(line),
                Ok(Value::Array(items)) if items.iter().all(|i| i.get("id").is_none())
            );
            prop_assert!(
                notification || !replies[n].is_empty(),
                "a refused line got no answer: {shown}"
            );
        }
    }
    for (tool, count) in &expected_refused {
        let got = refused.get(tool).copied().unwrap_or(0);
        // A call whose name could not be read may be recorded under no name, or under the
        // name a lenient reading found: count both.
        let with_unnamed = got + refused.get(&None).copied().unwrap_or(0);
        prop_assert!(
            with_unnamed >= *count,
            "{count} refused call(s) to {tool:?} expected, {got} recorded; refused: {refused:?}"
        );
    }
    Ok(())
}

#[test]
fn what_the_server_runs_is_what_the_trail_holds() {
    let cases = std::env::var("MCP_AUDIT_DIFF_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    // The nested strategies' types are deep: unoptimized, they need more than the test
    // thread's stack.
    let run = std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(move || {
            let mut runner = TestRunner::new(Config {
                cases,
                max_shrink_iters: 64,
                failure_persistence: None,
                ..Config::default()
            });
            let strategy = (
                prop::collection::vec(line(), 1..40),
                Just((0..ANSWERS.len()).collect::<Vec<_>>()).prop_shuffle(),
            );
            runner
                .run(&strategy, |(lines, answers)| session(&lines, &answers))
                .map_err(|e| e.to_string())
        })
        .unwrap();
    if let Err(e) = run.join().unwrap() {
        panic!("{e}");
    }
}

#[test]
fn the_lenient_reading_of_the_test_finds_what_it_should() {
    // The oracle itself must be able to fail.
    assert_eq!(
        lenient_calls(br#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"a"}}"#),
        vec![Some("a".into())]
    );
    assert_eq!(
        lenient_calls(b"{\"method\":\"x\"}\r{\"method\":\"tools/call\"}").len(),
        1
    );
    assert!(lenient_calls(br#"{"method":"ping","params":{"method":"tools/call"}}"#).is_empty());
    assert_eq!(
        strict_calls(br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","method":"tools/call"}"#)
            .len(),
        0
    );
    assert_eq!(strict_calls(br#"[{"jsonrpc":"2.0","id":1,"method":"tools/call"},{"jsonrpc":"2.0","method":"tools/call"}]"#).len(), 2);
}
