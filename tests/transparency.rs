//! The proxy is invisible: real rmcp clients of every era get the same results through it as
//! directly, raw lines pass byte for byte, and every tool call leaves a linked pair of events.

mod common;

use std::sync::atomic::Ordering;

use common::{Client, Era, LineClient, TestStore, args, connect, example_server, pairs};
use rmcp::model::{CallToolRequest, CallToolRequestParams, ClientRequest};
use rmcp::service::PeerRequestOptions;
use serde_json::{Value, json};
use tokio::process::Command;

/// Runs the same calls against a server and returns everything the client saw.
async fn script(client: &Client) -> Value {
    let mut seen = serde_json::Map::new();
    let tools = client.list_tools(None).await.expect("tools/list");
    seen.insert("tools".into(), serde_json::to_value(&tools).unwrap());
    let calls = [
        (
            "echo",
            json!({"text": "héllo \"quoted\" \u{1F600} \\ / \u{0007}"}),
        ),
        ("add", json!({"a": 2, "b": 3.5})),
        ("fail", json!({})),
        ("personal_data", json!({})),
        ("confirm", json!({"action": "rotate keys"})),
        ("big", json!({"bytes": 200_000})),
    ];
    for (name, arguments) in calls {
        let result = client
            .call_tool(CallToolRequestParams::new(name).with_arguments(args(arguments)))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        seen.insert(name.into(), serde_json::to_value(&result).unwrap());
    }
    // Progress: notifications reach the client, in order, before the result.
    let handle = client
        .send_cancellable_request(
            ClientRequest::CallToolRequest(CallToolRequest::new(
                CallToolRequestParams::new("slow")
                    .with_arguments(args(json!({"ms": 100, "steps": 4}))),
            )),
            PeerRequestOptions::no_options(),
        )
        .await
        .expect("slow");
    let before = client.service().progress_seen.load(Ordering::SeqCst);
    let result = handle.await_response().await.expect("slow result");
    // rmcp hands notifications to the handler concurrently with responses: let them land.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while client.service().progress_seen.load(Ordering::SeqCst) - before < 4
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let after = client.service().progress_seen.load(Ordering::SeqCst);
    seen.insert("slow".into(), serde_json::to_value(&result).unwrap());
    seen.insert("progress_notifications".into(), json!(after - before));
    seen.insert(
        "elicitations".into(),
        json!(client.service().elicitations.load(Ordering::SeqCst)),
    );
    seen.insert(
        "server".into(),
        serde_json::to_value(client.peer_info()).unwrap(),
    );
    Value::Object(seen)
}

/// Equality with a short report: the first differing key, values cut to 300 characters.
fn assert_same(got: &Value, expected: &Value, context: &str) {
    if got == expected {
        return;
    }
    let cut = |v: &Value| v.to_string().chars().take(300).collect::<String>();
    let keys = expected
        .as_object()
        .map(|o| o.keys().cloned().collect::<Vec<_>>())
        .unwrap_or_default();
    for k in keys {
        if got.get(&k) != expected.get(&k) {
            panic!(
                "{context}: `{k}` differs through the proxy\n  proxied: {}\n  direct:  {}",
                cut(&got[&k]),
                cut(&expected[&k])
            );
        }
    }
    panic!(
        "{context}: results differ\n  proxied: {}\n  direct:  {}",
        cut(got),
        cut(expected)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rmcp_clients_of_every_era_see_the_same_results_through_the_proxy() {
    for era in Era::all() {
        let direct = connect(&era, Command::new(example_server())).await;
        let expected = script(&direct).await;
        direct.cancel().await.unwrap();

        let store = TestStore::new("");
        let proxied = connect(&era, store.proxied_example()).await;
        let got = script(&proxied).await;
        proxied.cancel().await.unwrap();

        assert_same(&got, &expected, &format!("era {era:?}"));
        assert_eq!(
            expected["progress_notifications"], 4,
            "the slow tool reports 4 steps"
        );
        assert_eq!(
            expected["confirm"]["content"][0]["text"],
            "confirmed: rotate keys"
        );

        let events = store.events();
        let pairs = pairs(&events);
        let results: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(a, e)| {
                (
                    a["tool_name"].as_str().unwrap(),
                    e["result"].as_str().unwrap(),
                )
            })
            .collect();
        let mut expected_results = vec![
            ("echo", "success"),
            ("add", "success"),
            ("fail", "error"),
            ("personal_data", "success"),
        ];
        if matches!(era, Era::Discover) {
            // MRTR: the first round asks for input, the retry completes.
            expected_results.push(("confirm", "input_required"));
        }
        expected_results.extend([
            ("confirm", "success"),
            ("big", "success"),
            ("slow", "success"),
        ]);
        assert_eq!(results, expected_results, "era {era:?}");

        for (access, end) in &pairs {
            assert_eq!(access["result"], "initiated");
            assert_eq!(access["user_id"], "tester");
            assert_eq!(access["upstream"], "example");
            assert_eq!(access["action"], "tools/call");
            assert_eq!(access["metadata"]["auth_method"], "stdio");
            assert_eq!(
                access["metadata"]["protocol_era"],
                era.recorded(),
                "{access}"
            );
            assert_eq!(
                access["metadata"]["user_agent"],
                "mcp-audit-test-client/1.0.0"
            );
            assert_eq!(
                access["metadata"]["tool_version"],
                "mcp-audit-example-server/0.1.0"
            );
            assert!(end["metadata"]["execution_time_us"].as_u64().is_some());
            assert!(end["metadata"]["output_size_bytes"].as_u64().unwrap() > 20);
        }
        let version = match &era {
            Era::Initialize(v) => v.to_string(),
            Era::Discover => "2026-07-28".to_string(),
        };
        assert_eq!(pairs[0].0["metadata"]["protocol_version"], version.as_str());
        assert_eq!(
            pairs[0].0["metadata"]["arguments"]["text"],
            "héllo \"quoted\" \u{1F600} \\ / \u{0007}"
        );
        assert_eq!(
            pairs[2].1["metadata"]["error_messages"][0],
            "something went wrong"
        );
        assert_eq!(
            pairs[0].0["risk_level"], "low",
            "echo is annotated read-only"
        );
        let big = pairs.iter().find(|(a, _)| a["tool_name"] == "big").unwrap();
        assert!(big.1["metadata"]["output_size_bytes"].as_u64().unwrap() > 200_000);
        if matches!(era, Era::Discover) {
            let (round, retry) = (&pairs[4], &pairs[5]);
            assert_eq!(round.1["metadata"]["input_requests"], json!(["confirm"]));
            assert_eq!(
                retry.0["metadata"]["retry_of"], round.1["event_id"],
                "the retry links to its round"
            );
        }
    }
}

/// The request lines of a raw session, in both eras, with ids of every shape.
fn raw_session(era_2026: bool) -> Vec<(Option<Value>, String)> {
    let meta = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"raw","version":"0"},"io.modelcontextprotocol/clientCapabilities":{}}"#;
    let mut lines: Vec<(Option<Value>, String)> = Vec::new();
    if era_2026 {
        lines.push((
            Some(json!(0)),
            format!(r#"{{"jsonrpc":"2.0","id":0,"method":"server/discover","params":{{{meta}}}}}"#),
        ));
    } else {
        lines.push((Some(json!(0)), r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"0"},"x-unknown":[1,{"a":null}]}}"#.into()));
        lines.push((
            None,
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.into(),
        ));
    }
    // Request params with the 2026 `_meta` in front when that era is tested; "x-extra" is a
    // field no server knows, to show it is not stripped.
    let params = |rest: &str| match (era_2026, rest.is_empty()) {
        (true, true) => meta.to_string(),
        (true, false) => format!("{meta},{rest}"),
        (false, _) => rest.to_string(),
    };
    lines.push((
        Some(json!("list-1")),
        format!(
            r#"{{"jsonrpc":"2.0","id":"list-1","method":"tools/list","params":{{{}}}}}"#,
            params("")
        ),
    ));
    lines.push((
        Some(json!(7)),
        format!(
            r#"{{"params":{{{}}},"method":"tools/call","id":7,"jsonrpc":"2.0","extra":true}}"#,
            params(r#""x-extra":1,"name":"echo","arguments":{"text":"\u00e9\n\"x\""}"#)
        ),
    ));
    lines.push((
        Some(json!(8)),
        format!(
            r#"{{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{{{}}}}}"#,
            params(r#""name":"no-such-tool""#)
        ),
    ));
    lines.push((
        Some(json!(9)),
        format!(
            r#"{{"jsonrpc":"2.0","id":9,"method":"no/such/method","params":{{{}}}}}"#,
            params("")
        ),
    ));
    lines.push((
        Some(json!(-1)),
        format!(
            r#"{{"jsonrpc":"2.0","id":-1,"method":"tools/call","params":{{{}}}}}"#,
            params(r#""name":"add","arguments":{"a":1e2,"b":-0.5}"#)
        ),
    ));
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_lines_pass_byte_for_byte_in_both_eras() {
    for era_2026 in [false, true] {
        let mut transcripts = Vec::new();
        let store = TestStore::new("");
        for proxied in [false, true] {
            let command = if proxied {
                store.proxied_example()
            } else {
                Command::new(example_server())
            };
            let mut client = LineClient::spawn(command);
            let mut responses = Vec::new();
            for (id, line) in raw_session(era_2026) {
                client.send(format!("{line}\n").as_bytes()).await;
                if let Some(id) = id {
                    responses.push(String::from_utf8(client.recv_response(&id).await).unwrap());
                }
            }
            let status = client.finish().await;
            assert!(status.success(), "exit status {status:?}");
            transcripts.push(responses);
        }
        assert_eq!(
            transcripts[0], transcripts[1],
            "era 2026={era_2026}: bytes differ through the proxy"
        );
        assert!(
            transcripts[0][2].contains("\\u00e9") || transcripts[0][2].contains('é'),
            "{}",
            transcripts[0][2]
        );
        let events = store.events();
        let pairs = pairs(&events);
        // echo, no-such-tool, add: the unknown method is not a tool call.
        assert_eq!(pairs.len(), 3, "{events:#?}");
        assert_eq!(pairs[0].0["metadata"]["request_id"], 7);
        assert_eq!(pairs[2].0["metadata"]["request_id"], -1);
        assert_eq!(
            pairs[0].0["metadata"]["protocol_era"],
            if era_2026 { "2026" } else { "2025" }
        );
    }
}

#[tokio::test]
async fn every_kind_of_message_passes_unchanged_both_ways() {
    // `cat` as the server echoes every line back: what the client gets must be what it sent.
    let store = TestStore::new("");
    let mut client = LineClient::spawn(store.proxy_command(&["cat"]));
    let lines: Vec<&[u8]> = vec![
        b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progressToken\":\"t\",\"progress\":1}}\n",
        b"{ \"id\" : 1 , \"jsonrpc\" : \"2.0\" , \"method\" : \"x/unknown\" , \"params\" : { \"deep\" : [ 1, 2, { } ] } }\n",
        b"{\"jsonrpc\":\"2.0\",\"id\":\"s\",\"result\":{\"unknownField\":\"\\u00e9\\ud83d\\ude00\",\"n\":1.50}}\r\n",
        b"{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32700,\"message\":\"m\",\"data\":[]}}\n",
        b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":{\"requestId\":99,\"reason\":\"r\"}}\n",
        b"[{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"ping\"},{\"jsonrpc\":\"2.0\",\"method\":\"notifications/roots/list_changed\"}]\n",
        "{\"jsonrpc\":\"2.0\",\"id\":6,\"method\":\"sampling/createMessage\",\"params\":{\"text\":\"ünïcødé\"}}\n".as_bytes(),
        b"{\"jsonrpc\":\"2.0\",\"id\":12,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"arguments\":{\"text\":\"x\"}}}\n",
    ];
    for line in &lines {
        client.send(line).await;
        let echoed = client.recv().await.expect("echo");
        assert_eq!(
            &echoed[..],
            *line,
            "changed in transit: {}",
            String::from_utf8_lossy(line)
        );
    }
    let status = client.finish().await;
    assert!(status.success());
    // The tools/call was recorded, forwarded, and never answered: the client closed the
    // session and `cat` exited on EOF.
    let events = store.events();
    let pairs = pairs(&events);
    assert_eq!(pairs.len(), 1);
    assert_eq!(pairs[0].1["event_type"], "tool_failure");
    assert_eq!(pairs[0].1["result"], "shutdown");
    assert_eq!(pairs[0].1["metadata"]["failure_side"], "client");
    assert_eq!(
        pairs[0].1["metadata"]["reason"],
        "the client closed the connection before the answer; the server exited with status 0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_argument_reaches_the_server_whole_and_is_stored_cut_with_its_hash() {
    use sha2::{Digest, Sha256};
    let store = TestStore::new("max_stored_argument_bytes = 1024");
    let mut c = common::initialized(&store).await;
    let big: String = "lorem ipsum ".repeat(50_000); // 600 kB
    c.send(&common::call_line(json!(7), "echo", json!({"text": big})))
        .await;
    let reply = c.recv_json().await;
    // The client and the server saw it whole: the echo is the whole text.
    assert_eq!(reply["result"]["content"][0]["text"], big.as_str());
    c.finish().await;

    let events = store.events();
    let access = events
        .iter()
        .find(|e| e["event_type"] == "tool_access")
        .expect("access event");
    let stored = serde_json::to_string(&access["metadata"]["arguments"]).unwrap();
    assert!(stored.len() <= 1024, "{} bytes stored", stored.len());
    let kept = access["metadata"]["arguments"]["text"].as_str().unwrap();
    assert!(big.starts_with(kept) && kept.len() > 100, "{kept:?}");
    let cut = &access["metadata"]["truncated"][0];
    assert_eq!(cut["pointer"], "/metadata/arguments/text");
    assert_eq!(cut["bytes"], big.len());
    let digest: String = Sha256::digest(big.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(cut["sha256"], digest.as_str());
    // The whole journal stays small.
    let on_disk: u64 = walk_size(&store.store_dir().join("journal"));
    assert!(on_disk < 64 * 1024, "{on_disk} bytes of journal");
}

fn walk_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| {
                    let p = e.path();
                    if p.is_dir() {
                        walk_size(&p)
                    } else {
                        e.metadata().map_or(0, |m| m.len())
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

/// helper-122: a 2026-07-28 client that sends no `server/discover` (every sessionless
/// gateway request) left `tool_version` out of the trail, though each result names its
/// server in `_meta`. The end event takes it from there; the result passes unchanged.
#[tokio::test]
async fn a_2026_results_server_info_names_the_server_in_the_trail() {
    let server = r#"
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if "id" not in m:
        continue
    out = {"jsonrpc": "2.0", "id": m["id"], "result": {"content": [{"type": "text", "text": "ok"}],
           "_meta": {"io.modelcontextprotocol/serverInfo": {"name": "meta-server", "version": "9.1"}}}}
    print(json.dumps(out), flush=True)
"#;
    let store = TestStore::new("");
    let mut c = LineClient::spawn(store.proxy_command(&["python3", "-c", server]));
    let call = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#;
    c.send(format!("{call}\n").as_bytes()).await;
    let answer = c.recv_json().await;
    assert_eq!(
        answer["result"]["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
        "meta-server"
    );
    assert!(c.finish().await.success());
    let events = store.events();
    let end = events
        .iter()
        .find(|e| e["event_type"] == "tool_execution")
        .unwrap_or_else(|| panic!("{events:#?}"));
    assert_eq!(end["metadata"]["tool_version"], "meta-server/9.1", "{end}");
}
