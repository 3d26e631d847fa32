//! Calls the policy asks to confirm, through the real binary: the person at the client is
//! asked (elicitation, or an input_required round in 2026-07-28), the call runs only on an
//! explicit accept, and nothing the server sends can stand in for the answer.

mod common;

use std::time::Duration;

use common::policy::{BLOCK_SHELL_IN_ECHO, spawn_recorded};
use common::{LineClient, TestStore, call_line, pairs};
use serde_json::{Value, json};

const CONFIRM_SHELL_IN_ECHO: &str = r#"
[risk]
confirm_timeout_ms = 500
[risk.actions]
high = "confirm"
[[risk.rule]]
name = "shell in echo"
tools = ["echo"]
pointer = "/text"
detect = "shell_metacharacters"
level = "high"
"#;

#[tokio::test]
async fn confirm_asks_the_person_and_runs_the_call_only_on_an_explicit_accept() {
    let store = TestStore::new(CONFIRM_SHELL_IN_ECHO);
    let (mut c, received) = spawn_recorded(&store);
    c.initialize().await; // INIT declares the elicitation capability
    let ask_for = |request: &Value| {
        assert_eq!(request["method"], "elicitation/create", "{request}");
        let message = request["params"]["message"].as_str().unwrap();
        assert!(message.contains("Tool: echo"), "{message}");
        assert!(message.contains("SHA-256"), "{message}");
        request["id"].clone()
    };

    // Accepted: the call runs, as sent.
    c.send(&call_line(json!(1), "echo", json!({"text": "a; b"})))
        .await;
    let ask = ask_for(&c.recv_json().await);
    assert!(
        ask.as_str()
            .unwrap()
            .starts_with("mcp-audit-proxy.confirm.")
    );
    c.send(format!("{}\n", json!({"jsonrpc": "2.0", "id": ask, "result": {"action": "accept", "content": {"confirm": true}}})).as_bytes()).await;
    let result = c.recv_json().await;
    assert_eq!(result["id"], 1);
    assert_eq!(result["result"]["content"][0]["text"], "a; b");

    // Declined: blocked, never forwarded.
    c.send(&call_line(json!(2), "echo", json!({"text": "c; d"})))
        .await;
    let ask = ask_for(&c.recv_json().await);
    c.send(
        format!(
            "{}\n",
            json!({"jsonrpc": "2.0", "id": ask, "result": {"action": "decline"}})
        )
        .as_bytes(),
    )
    .await;
    let declined = c.recv_json().await;
    assert_eq!(
        (declined["id"].clone(), declined["error"]["code"].clone()),
        (json!(2), json!(-32010)),
        "{declined}"
    );

    // Accepted without checking the box: blocked.
    c.send(&call_line(json!(3), "echo", json!({"text": "e; f"})))
        .await;
    let ask = ask_for(&c.recv_json().await);
    c.send(format!("{}\n", json!({"jsonrpc": "2.0", "id": ask, "result": {"action": "accept", "content": {"confirm": false}}})).as_bytes()).await;
    assert_eq!(c.recv_json().await["error"]["code"], -32010);

    // No answer in time: the question is withdrawn and the call blocked; a late answer is
    // dropped, never passed to the server.
    c.send(&call_line(json!(4), "echo", json!({"text": "g; h"})))
        .await;
    let ask = ask_for(&c.recv_json().await);
    let withdrawn = c.recv_json().await;
    assert_eq!(
        withdrawn["method"], "notifications/cancelled",
        "{withdrawn}"
    );
    assert_eq!(withdrawn["params"]["requestId"], ask);
    let timed_out = c.recv_json().await;
    assert_eq!(
        (timed_out["id"].clone(), timed_out["error"]["code"].clone()),
        (json!(4), json!(-32010))
    );
    c.send(format!("{}\n", json!({"jsonrpc": "2.0", "id": ask, "result": {"action": "accept", "content": {"confirm": true}}})).as_bytes()).await;

    // Other calls never wait.
    c.send(&call_line(json!(5), "echo", json!({"text": "plain"})))
        .await;
    assert_eq!(c.recv_json().await["result"]["content"][0]["text"], "plain");
    assert!(c.finish().await.success());

    let seen = std::fs::read_to_string(received).unwrap();
    assert!(seen.contains("a; b"));
    for never in ["c; d", "e; f", "g; h", "mcp-audit-proxy.confirm"] {
        assert!(!seen.contains(never), "{never} reached the server: {seen}");
    }
    let pairs = pairs(&store.events());
    let outcome: Vec<(String, String, String)> = pairs
        .iter()
        .map(|(a, e)| {
            (
                a["metadata"]["decision"]
                    .as_str()
                    .unwrap_or("-")
                    .to_string(),
                e["result"].as_str().unwrap().to_string(),
                e["metadata"]["confirmation"]
                    .as_str()
                    .unwrap_or("-")
                    .to_string(),
            )
        })
        .collect();
    assert_eq!(
        outcome[0],
        (
            "confirm".into(),
            "success".into(),
            "accepted by the person at the client".into()
        )
    );
    assert_eq!(outcome[1].1, "blocked");
    assert!(outcome[1].2.contains("decline"), "{:?}", outcome[1]);
    assert_eq!(outcome[2].1, "blocked");
    assert_eq!(
        outcome[3],
        (
            "confirm".into(),
            "blocked".into(),
            "not confirmed: no answer in time".into()
        )
    );
    assert_eq!(outcome[4].1, "success");
}

#[tokio::test]
async fn a_confirmation_answered_inside_a_batch_is_taken() {
    // A 2025-03-26 client may answer the proxy's question in a batch: the batch was refused
    // (a log line only, as a batch of answers gets no reply), and the call waited for
    // confirm_timeout_ms.
    let store = TestStore::new(CONFIRM_SHELL_IN_ECHO);
    let (mut c, received) = spawn_recorded(&store);
    c.initialize().await;
    for (id, text, action) in [(1, "a; b", "accept"), (2, "c; d", "decline")] {
        c.send(&call_line(json!(id), "echo", json!({ "text": text })))
            .await;
        let ask = c.recv_json().await;
        assert_eq!(ask["method"], "elicitation/create", "{ask}");
        let answer = json!([{"jsonrpc": "2.0", "id": ask["id"], "result": {"action": action, "content": {"confirm": true}}}]);
        let started = std::time::Instant::now();
        c.send(format!("{answer}\n").as_bytes()).await;
        let reply = c.recv_json().await;
        assert!(
            started.elapsed() < Duration::from_millis(400),
            "waited for the timeout"
        );
        assert_eq!(reply["id"], id, "{reply}");
        if action == "accept" {
            assert_eq!(reply["result"]["content"][0]["text"], text, "{reply}");
        } else {
            assert_eq!(reply["error"]["code"], -32010, "{reply}");
        }
    }
    assert!(c.finish().await.success());
    let seen = std::fs::read_to_string(received).unwrap();
    assert!(seen.contains("a; b"));
    for never in ["c; d", "mcp-audit-proxy.confirm"] {
        assert!(!seen.contains(never), "{never} reached the server: {seen}");
    }
}

#[tokio::test]
async fn cancelling_a_call_held_for_confirmation_ends_it_and_tells_the_server_nothing() {
    let store = TestStore::new(CONFIRM_SHELL_IN_ECHO);
    let (mut c, received) = spawn_recorded(&store);
    c.initialize().await;
    c.send(&call_line(json!(7), "echo", json!({"text": "a; b"})))
        .await;
    let ask = c.recv_json().await;
    assert_eq!(ask["method"], "elicitation/create", "{ask}");
    c.send(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":{\"requestId\":7,\"reason\":\"user gave up\"}}\n")
        .await;
    // The question is withdrawn, so the person's dialog closes.
    let withdrawn = c.recv_json().await;
    assert_eq!(
        withdrawn["method"], "notifications/cancelled",
        "{withdrawn}"
    );
    assert_eq!(withdrawn["params"]["requestId"], ask["id"], "{withdrawn}");
    // The session carries on; a late answer to the question is dropped.
    c.send(format!("{}\n", json!({"jsonrpc": "2.0", "id": ask["id"], "result": {"action": "accept", "content": {"confirm": true}}})).as_bytes()).await;
    c.send(&call_line(json!(8), "echo", json!({"text": "plain"})))
        .await;
    assert_eq!(c.recv_json().await["id"], 8);
    assert!(c.finish().await.success());
    let seen = std::fs::read_to_string(received).unwrap();
    for never in ["a; b", "notifications/cancelled", "mcp-audit-proxy.confirm"] {
        assert!(!seen.contains(never), "{never} reached the server: {seen}");
    }
    let pairs = pairs(&store.events());
    assert_eq!(pairs[0].1["result"], "cancelled", "{:?}", pairs[0].1);
    assert_eq!(pairs[1].1["result"], "success");
}

#[tokio::test]
async fn confirm_blocks_when_the_client_cannot_be_asked() {
    let store = TestStore::new(CONFIRM_SHELL_IN_ECHO);
    let mut c = LineClient::spawn(store.proxied_example());
    c.send(b"{\"jsonrpc\":\"2.0\",\"id\":\"init\",\"method\":\"initialize\",\"params\":{\"protocolVersion\":\"2025-06-18\",\"capabilities\":{},\"clientInfo\":{\"name\":\"raw\",\"version\":\"1\"}}}\n").await;
    c.recv_json().await;
    c.send(&call_line(json!(1), "echo", json!({"text": "a; b"})))
        .await;
    let blocked = c.recv_json().await;
    assert_eq!(blocked["error"]["code"], -32010, "{blocked}");
    assert!(
        blocked["error"]["message"]
            .as_str()
            .unwrap()
            .contains("did not declare the elicitation capability"),
        "{blocked}"
    );
    assert!(c.finish().await.success());
}

/// Found by a hostile pass (F9): a client that declared URL-mode elicitation only (MCP
/// 2025-11-25) was sent the proxy's form; it cannot show one, so the call is blocked saying
/// why, as for a client without the capability. Form mode, or the older empty object, asks.
#[tokio::test]
async fn confirm_blocks_when_the_client_elicits_in_url_mode_only() {
    let store = TestStore::new(CONFIRM_SHELL_IN_ECHO);
    for (caps, asked) in [
        (json!({"url": {}}), false),
        (json!({"url": {}, "form": {}}), true),
        (json!({}), true),
    ] {
        let mut c = LineClient::spawn(store.proxied_example());
        let init = json!({"jsonrpc": "2.0", "id": "init", "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {"elicitation": caps},
            "clientInfo": {"name": "raw", "version": "1"}}});
        c.send(format!("{init}\n").as_bytes()).await;
        c.recv_json().await;
        c.send(&call_line(json!(1), "echo", json!({"text": "a; b"})))
            .await;
        let got = c.recv_json().await;
        if asked {
            assert_eq!(got["method"], "elicitation/create", "{caps}: {got}");
        } else {
            assert_eq!(got["error"]["code"], -32010, "{caps}: {got}");
            let message = got["error"]["message"].as_str().unwrap();
            assert!(message.contains("form mode"), "{message}");
        }
        drop(c);
    }
}

#[tokio::test]
async fn confirm_in_the_2026_era_is_an_input_required_round_of_the_proxy() {
    let store = TestStore::new(CONFIRM_SHELL_IN_ECHO);
    let (mut c, received) = spawn_recorded(&store);
    let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}}});
    let call = |id: i64, text: &str, retry: Option<(&Value, Value)>| {
        let mut params = json!({"name": "echo", "arguments": {"text": text}, "_meta": meta});
        if let Some((state, answer)) = retry {
            params["requestState"] = state.clone();
            params["inputResponses"] = json!({"mcp-audit-proxy.confirm": answer});
        }
        format!(
            "{}\n",
            json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params})
        )
    };
    let accept = json!({"action": "accept", "content": {"confirm": true}});

    c.send(call(1, "a; b", None).as_bytes()).await;
    let round = c.recv_json().await;
    assert_eq!(round["id"], 1);
    assert_eq!(round["result"]["resultType"], "input_required", "{round}");
    let ask = &round["result"]["inputRequests"]["mcp-audit-proxy.confirm"];
    assert_eq!(ask["method"], "elicitation/create");
    assert!(
        ask["params"]["message"]
            .as_str()
            .unwrap()
            .contains("Tool: echo")
    );
    let state = round["result"]["requestState"].clone();

    // The retry with the person's accept runs the call.
    c.send(call(2, "a; b", Some((&state, accept.clone()))).as_bytes())
        .await;
    let result = c.recv_json().await;
    assert_eq!(result["id"], 2);
    assert_eq!(result["result"]["content"][0]["text"], "a; b", "{result}");

    // A retry that swaps the arguments, or replays a used round, is blocked.
    c.send(call(3, "c; d", None).as_bytes()).await;
    let state3 = c.recv_json().await["result"]["requestState"].clone();
    c.send(call(4, "rm -rf /; d", Some((&state3, accept.clone()))).as_bytes())
        .await;
    let swapped = c.recv_json().await;
    assert_eq!(swapped["error"]["code"], -32010, "{swapped}");
    assert!(
        swapped["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not the call that was put to the person")
    );
    c.send(call(5, "a; b", Some((&state, accept))).as_bytes())
        .await;
    assert_eq!(c.recv_json().await["error"]["code"], -32010);
    assert!(c.finish().await.success());

    // The server saw the confirmed call, without the proxy's round.
    let seen = std::fs::read_to_string(received).unwrap();
    assert!(seen.contains("a; b"));
    for never in ["mcp-audit-proxy.confirm", "requestState", "rm -rf", "c; d"] {
        assert!(!seen.contains(never), "{never} reached the server: {seen}");
    }
    let events = store.events();
    let pairs = pairs(&events);
    assert_eq!(pairs[0].1["result"], "input_required");
    assert_eq!(
        pairs[1].0["metadata"]["retry_of"], pairs[0].1["event_id"],
        "the retry links to the round"
    );
    assert_eq!(pairs[1].1["result"], "success");
    assert_eq!(
        pairs[1].1["metadata"]["confirmation"],
        "accepted by the person at the client"
    );
    assert_eq!(pairs[1].0["metadata"]["protocol_era"], "2026");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rmcp_clients_of_both_eras_answer_the_confirmation() {
    for era in common::Era::all() {
        let store = TestStore::new(CONFIRM_SHELL_IN_ECHO);
        let client = common::connect(&era, store.proxied_example()).await;
        let result = client
            .call_tool(
                rmcp::model::CallToolRequestParams::new("echo")
                    .with_arguments(common::args(json!({"text": "a; b"}))),
            )
            .await
            .unwrap_or_else(|e| panic!("{era:?}: {e}"));
        assert_eq!(
            serde_json::to_value(&result.content).unwrap()[0]["text"],
            "a; b",
            "{era:?}"
        );
        assert!(
            client
                .service()
                .elicitations
                .load(std::sync::atomic::Ordering::SeqCst)
                >= 1
        );
        client.cancel().await.unwrap();
        let events = store.events();
        let ends: Vec<&Value> = events.iter().filter(|e| e["result"] == "success").collect();
        assert_eq!(ends.len(), 1, "{era:?}: {events:?}");
        assert_eq!(
            ends[0]["metadata"]["confirmation"],
            "accepted by the person at the client"
        );
        assert_eq!(ends[0]["metadata"]["protocol_era"], era.recorded());
    }
}

#[tokio::test]
async fn confirmation_rounds_survive_reloads_and_keep_the_approved_bytes() {
    let store = TestStore::new(CONFIRM_SHELL_IN_ECHO);
    let (mut c, received) = spawn_recorded(&store);
    let pid = nix::unistd::Pid::from_raw(c.child.id().unwrap() as i32);
    let caps = json!({"elicitation": {}});
    let call = |id: i64, caps: &Value, retry: Option<&Value>| {
        let mut params = json!({"name": "echo",
            "arguments": {"text": "a; b", "amount": "__BIG__"},
            "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                      "io.modelcontextprotocol/clientCapabilities": caps}});
        if let Some(state) = retry {
            params["requestState"] = state.clone();
            params["inputResponses"] = json!({"mcp-audit-proxy.confirm": {"action": "accept", "content": {"confirm": true}}});
        }
        // A number no f64 holds exactly: it must reach the server with its digits.
        format!(
            "{}\n",
            json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params})
        )
        .replace("\"__BIG__\"", "100000000000000000000001")
    };
    // A 2026 client that does not declare elicitation cannot be asked.
    c.send(call(1, &json!({}), None).as_bytes()).await;
    let refused = c.recv_json().await;
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("did not declare the elicitation capability"),
        "{refused}"
    );

    // Asked; then the policy is reloaded so that the call no longer needs confirmation.
    c.send(call(2, &caps, None).as_bytes()).await;
    let state = c.recv_json().await["result"]["requestState"].clone();
    let original = std::fs::read_to_string(&store.config).unwrap();
    std::fs::write(
        &store.config,
        original.replace("high = \"confirm\"", "high = \"alert\""),
    )
    .unwrap();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.send(call(3, &caps, Some(&state)).as_bytes()).await;
    let result = c.recv_json().await;
    assert_eq!(result["result"]["content"][0]["text"], "a; b", "{result}");
    assert!(c.finish().await.success());
    std::fs::write(&store.config, original).unwrap();

    let seen = std::fs::read_to_string(received).unwrap();
    assert!(
        !seen.contains("mcp-audit-proxy.confirm"),
        "the proxy's round reached the server: {seen}"
    );
    assert!(
        seen.contains("100000000000000000000001"),
        "the arguments were not forwarded as sent: {seen}"
    );
}

/// helper-109 F4: in 2026-07-28 the person's accept outlived a reload that kept the call to be
/// confirmed but changed why (another rule, another score): the retry ran under reasons the
/// person never saw. As a 2025 held call, it is blocked: the client sends the call again and
/// is asked anew.
#[tokio::test]
async fn a_2026_accept_under_a_policy_reloaded_since_the_question_does_not_run() {
    let store = TestStore::new(CONFIRM_SHELL_IN_ECHO.replace("500", "5000").as_str());
    let (mut c, received) = spawn_recorded(&store);
    let pid = nix::unistd::Pid::from_raw(c.child.id().unwrap() as i32);
    let call = |id: i64, retry: Option<&Value>| {
        let mut params = json!({"name": "echo", "arguments": {"text": "a; b"},
            "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                      "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}}}});
        if let Some(state) = retry {
            params["requestState"] = state.clone();
            params["inputResponses"] = json!({"mcp-audit-proxy.confirm": {"action": "accept", "content": {"confirm": true}}});
        }
        format!(
            "{}\n",
            json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params})
        )
    };
    c.send(call(1, None).as_bytes()).await;
    let asked = c.recv_json().await;
    assert_eq!(asked["result"]["resultType"], "input_required", "{asked}");
    let state = asked["result"]["requestState"].clone();
    // Still "confirm", for one more reason.
    let original = std::fs::read_to_string(&store.config).unwrap();
    std::fs::write(
        &store.config,
        format!("{original}\n[[risk.rule]]\nname = \"legal hold\"\ntools = [\"echo\"]\nregex = \"b\"\nscore = 10\n"),
    )
    .unwrap();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.send(call(2, Some(&state)).as_bytes()).await;
    let reply = c.recv_json().await;
    assert_eq!(reply["error"]["code"], -32010, "{reply}");
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap()
            .contains("policy changed while it waited"),
        "{reply}"
    );
    // Sent again, it is asked anew under the policy in force.
    c.send(call(3, None).as_bytes()).await;
    let again = c.recv_json().await;
    assert_eq!(again["result"]["resultType"], "input_required", "{again}");
    // One call the server runs (the example server exits in error when it never got one).
    let harmless = call(4, None).replace("a; b", "fine");
    c.send(harmless.as_bytes()).await;
    assert_eq!(c.recv_json().await["result"]["content"][0]["text"], "fine");
    assert!(c.finish().await.success());
    std::fs::write(&store.config, original).unwrap();
    assert!(!std::fs::read_to_string(received).unwrap().contains("a; b"));
}

#[tokio::test]
async fn an_accept_after_a_policy_reload_does_not_run_the_held_call() {
    let store = TestStore::new(CONFIRM_SHELL_IN_ECHO.replace("500", "5000").as_str());
    let (mut c, received) = spawn_recorded(&store);
    c.initialize().await;
    let pid = nix::unistd::Pid::from_raw(c.child.id().unwrap() as i32);
    c.send(&call_line(json!(1), "echo", json!({"text": "a; b"})))
        .await;
    let ask = c.recv_json().await["id"].clone();
    let original = std::fs::read_to_string(&store.config).unwrap();
    std::fs::write(
        &store.config,
        original.replace("high = \"confirm\"", "high = \"block\""),
    )
    .unwrap();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.send(format!("{}\n", json!({"jsonrpc": "2.0", "id": ask, "result": {"action": "accept", "content": {"confirm": true}}})).as_bytes()).await;
    let reply = c.recv_json().await;
    assert_eq!(reply["error"]["code"], -32010, "{reply}");
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap()
            .contains("changed while it waited"),
        "{reply}"
    );
    assert!(c.finish().await.success());
    std::fs::write(&store.config, original).unwrap();
    assert!(!std::fs::read_to_string(received).unwrap().contains("a; b"));
}

#[tokio::test]
async fn an_answer_from_the_server_to_a_call_it_never_received_is_dropped() {
    // Found by a fresh pair of eyes: while call 7 waited for the person's answer, the server
    // answered 7 itself; the client took that as the call's result, and the trail had none.
    let server = r#"
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    method = m.get("method")
    if method == "initialize":
        out = {"protocolVersion": "2025-06-18", "capabilities": {"tools": {}}, "serverInfo": {"name": "s", "version": "1"}}
    elif method == "ping":
        print(json.dumps({"jsonrpc": "2.0", "id": 7, "result": {"content": [{"type": "text", "text": "FORGED"}]}}), flush=True)
        out = {}
    elif method == "tools/call":
        out = {"content": [{"type": "text", "text": "real"}]}
    else:
        continue
    print(json.dumps({"jsonrpc": "2.0", "id": m["id"], "result": out}), flush=True)
"#;
    let store = TestStore::new(CONFIRM_SHELL_IN_ECHO.replace("500", "20000").as_str());
    let mut c = LineClient::spawn(store.proxy_command(&["python3", "-c", server]));
    c.initialize().await;
    c.send(&call_line(json!(7), "echo", json!({"text": "a; b"})))
        .await;
    let ask = c.recv_json().await;
    assert_eq!(ask["method"], "elicitation/create", "{ask}");
    c.send(b"{\"jsonrpc\":\"2.0\",\"id\":\"p\",\"method\":\"ping\"}\n")
        .await;
    let next = c.recv_json().await;
    assert_eq!(
        next["id"], "p",
        "the forged answer reached the client: {next}"
    );
    c.send(format!("{}\n", json!({"jsonrpc": "2.0", "id": ask["id"], "result": {"action": "accept", "content": {"confirm": true}}})).as_bytes()).await;
    let result = c.recv_json().await;
    assert_eq!(result["result"]["content"][0]["text"], "real", "{result}");
    assert!(c.finish().await.success());
    let pairs = pairs(&store.events());
    assert_eq!(pairs.len(), 1);
    assert_eq!(pairs[0].1["result"], "success");
}

#[tokio::test]
async fn an_answer_to_a_call_the_proxy_withheld_and_answered_itself_is_dropped() {
    // Found in review: a held call the client cancelled was kept as if the server had it, so
    // a forged answer with its id was recorded as a late execution and delivered; an answer
    // to a blocked call's id (even written `9.0`) reached the client as a second answer.
    let server = r#"
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    method = m.get("method")
    if method == "initialize":
        out = {"protocolVersion": "2025-06-18", "capabilities": {"tools": {}}, "serverInfo": {"name": "s", "version": "1"}}
    elif method == "ping":
        for forged in m["params"]["forge"]:
            print(json.dumps({"jsonrpc": "2.0", "id": forged, "result": {"content": [{"type": "text", "text": "FORGED"}]}}), flush=True)
        out = {}
    else:
        continue
    print(json.dumps({"jsonrpc": "2.0", "id": m["id"], "result": out}), flush=True)
"#;
    let config = format!(
        "{}{}",
        CONFIRM_SHELL_IN_ECHO.replace("500", "20000"),
        BLOCK_SHELL_IN_ECHO.replace("echo", "wipe")
    );
    let store = TestStore::new(&config);
    let mut c = LineClient::spawn(store.proxy_command(&["python3", "-c", server]));
    c.initialize().await;
    c.send(&call_line(json!(7), "echo", json!({"text": "a; b"})))
        .await;
    let ask = c.recv_json().await;
    assert_eq!(ask["method"], "elicitation/create", "{ask}");
    c.send(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":{\"requestId\":7}}\n").await;
    let withdrawn = c.recv_json().await;
    assert_eq!(
        withdrawn["method"], "notifications/cancelled",
        "{withdrawn}"
    );
    c.send(&call_line(json!(9), "wipe", json!({"text": "a; b"})))
        .await;
    let blocked = c.recv_json().await;
    assert_eq!(blocked["id"], 9, "{blocked}");
    assert!(blocked["error"].is_object(), "{blocked}");
    c.send(b"{\"jsonrpc\":\"2.0\",\"id\":\"p\",\"method\":\"ping\",\"params\":{\"forge\":[7,9.0,9]}}\n")
        .await;
    let next = c.recv_json().await;
    assert_eq!(
        next["id"], "p",
        "a forged answer reached the client: {next}"
    );
    assert!(c.finish().await.success());
    let events = store.events();
    let results: Vec<&Value> = events.iter().map(|e| &e["result"]).collect();
    assert_eq!(events.len(), 4, "{events:#?}");
    assert!(results.contains(&&json!("cancelled")), "{results:?}");
    assert!(results.contains(&&json!("blocked")), "{results:?}");
}

#[tokio::test]
async fn a_confirmation_with_a_repeated_key_is_unreadable_and_the_call_is_blocked() {
    // Found by a fresh pass: `{"confirm":false,"confirm":true}` was read as serde reads it
    // (the last copy wins) and the call ran, though the client may have shown the person the
    // other copy; every other repeated key is refused as ambiguous. A repeated key anywhere in
    // the answer, in either spelling of a key, now blocks the call.
    let store = TestStore::new(CONFIRM_SHELL_IN_ECHO);
    let (mut c, received) = spawn_recorded(&store);
    c.initialize().await;
    let answers = [
        r#"{"action":"accept","content":{"confirm":false,"confirm":true}}"#,
        r#"{"action":"decline","action":"accept","content":{"confirm":true}}"#,
        r#"{"action":"accept","content":{"Confirm":false,"confirm":true}}"#,
    ];
    for (i, answer) in answers.iter().enumerate() {
        let text = format!("run {i}; now");
        c.send(&call_line(json!(i), "echo", json!({ "text": text })))
            .await;
        let ask = c.recv_json().await;
        assert_eq!(ask["method"], "elicitation/create", "{ask}");
        c.send(
            format!(
                "{{\"jsonrpc\":\"2.0\",\"id\":{},\"result\":{answer}}}\n",
                ask["id"]
            )
            .as_bytes(),
        )
        .await;
        let reply = c.recv_json().await;
        assert_eq!(reply["id"], i, "{reply}");
        assert_eq!(reply["error"]["code"], -32010, "{answer}: {reply}");
    }
    // An answer without a repeated key still runs the call.
    c.send(&call_line(json!(9), "echo", json!({"text": "ok; fine"})))
        .await;
    let ask = c.recv_json().await;
    c.send(format!("{}\n", json!({"jsonrpc": "2.0", "id": ask["id"], "result": {"action": "accept", "content": {"confirm": true}}})).as_bytes()).await;
    assert_eq!(
        c.recv_json().await["result"]["content"][0]["text"],
        "ok; fine"
    );
    assert!(c.finish().await.success());
    let seen = std::fs::read_to_string(received).unwrap();
    assert!(!seen.contains("now"), "a call reached the server: {seen}");
    let pairs = pairs(&store.events());
    for (_, end) in &pairs[..answers.len()] {
        assert_eq!(end["result"], "blocked", "{end}");
        let why = end["metadata"]["reason"].as_str().unwrap_or_default();
        assert!(why.contains("unreadable"), "{why}");
    }
}

#[tokio::test]
async fn an_answer_the_proxy_refuses_blocks_the_call_at_once_and_gets_no_reply() {
    // Found by a fresh pass: an answer to the proxy's question with both `result` and
    // `error` was refused with an error to the client under the question's id, and the call
    // stayed held until confirm_timeout_ms. It is now blocked at once, as for an unreadable
    // answer, and the refused answer gets no reply of its own.
    let store = TestStore::new(CONFIRM_SHELL_IN_ECHO);
    let (mut c, received) = spawn_recorded(&store);
    c.initialize().await;
    c.send(&call_line(json!(4), "echo", json!({"text": "x; y"})))
        .await;
    let ask = c.recv_json().await;
    assert_eq!(ask["method"], "elicitation/create", "{ask}");
    let started = std::time::Instant::now();
    c.send(format!("{{\"jsonrpc\":\"2.0\",\"id\":{},\"result\":{{\"action\":\"accept\",\"content\":{{\"confirm\":true}}}},\"error\":{{\"code\":1,\"message\":\"m\"}}}}\n", ask["id"]).as_bytes())
        .await;
    let reply = c.recv_json().await;
    assert!(
        started.elapsed() < Duration::from_millis(400),
        "waited for the timeout"
    );
    assert_eq!(reply["id"], 4, "{reply}");
    assert_eq!(reply["error"]["code"], -32010, "{reply}");
    assert!(c.finish().await.success());
    let seen = std::fs::read_to_string(received).unwrap();
    assert!(!seen.contains("x; y"), "{seen}");
    let pairs = pairs(&store.events());
    let why = pairs[0].1["metadata"]["reason"]
        .as_str()
        .unwrap_or_default();
    assert!(why.contains("answer was refused"), "{why}");
}

#[tokio::test]
async fn an_answer_naming_the_question_in_either_copy_of_a_repeated_id_blocks_the_call_at_once() {
    // Found by a hostile pass (helper-109 F7): an answer with `"id"` twice was refused, but
    // only the last copy was looked up, so a question named by the first copy kept its call
    // held until confirm_timeout_ms. Either copy ends the call at once now.
    let store = TestStore::new(CONFIRM_SHELL_IN_ECHO);
    let (mut c, received) = spawn_recorded(&store);
    c.initialize().await;
    for (call, question_first, batch) in [(5, true, false), (6, false, false), (7, true, true)] {
        c.send(&call_line(json!(call), "echo", json!({"text": "x; y"})))
            .await;
        let ask = c.recv_json().await;
        assert_eq!(ask["method"], "elicitation/create", "{ask}");
        let (first, second) = match question_first {
            true => (ask["id"].to_string(), "77".to_string()),
            false => ("77".to_string(), ask["id"].to_string()),
        };
        let started = std::time::Instant::now();
        let answer = format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":{first},\"id\":{second},\"result\":{{\"action\":\"accept\",\"content\":{{\"confirm\":true}}}}}}"
        );
        let line = match batch {
            true => format!("[{answer}]\n"),
            false => format!("{answer}\n"),
        };
        c.send(line.as_bytes()).await;
        let reply = c.recv_json().await;
        assert!(
            started.elapsed() < Duration::from_millis(400),
            "waited for the timeout"
        );
        assert_eq!(reply["id"], call, "{reply}");
        assert_eq!(reply["error"]["code"], -32010, "{reply}");
    }
    assert!(c.finish().await.success());
    let seen = std::fs::read_to_string(received).unwrap();
    assert!(!seen.contains("x; y"), "{seen}");
    let pairs = pairs(&store.events());
    assert_eq!(pairs.len(), 3, "{pairs:?}");
    for (_, end) in &pairs {
        assert_eq!(end["result"], "blocked", "{end}");
    }
}

/// A confirmed 2026-07-28 call whose server asks for input of its own (an MRTR round): the
/// client's retry answering the server is the same call, and the person's accept holds for
/// it. Found by a hostile pass: the proxy put its question again at every round. A retry
/// with other arguments is asked again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirmed_call_is_not_asked_again_when_its_server_asks_for_input() {
    let store = TestStore::new(
        "[risk]\nconfirm_timeout_ms = 20000\n[risk.actions]\nhigh = \"confirm\"\n\
         [[risk.tool]]\nmatch = \"confirm\"\nscore = 75\n",
    );
    let (mut c, received) = spawn_recorded(&store);
    let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}}});
    let call = |id: i64, action: &str, state: Option<&Value>, responses: Option<Value>| {
        let mut params = json!({"name": "confirm", "arguments": {"action": action}, "_meta": meta});
        if let Some(s) = state {
            params["requestState"] = s.clone();
        }
        if let Some(r) = responses {
            params["inputResponses"] = r;
        }
        format!(
            "{}\n",
            json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params})
        )
    };
    let accept = json!({"action": "accept", "content": {"confirm": true}});
    let server_yes = json!({"confirm": {"action": "accept", "content": {"confirmed": true}}});

    // The proxy asks; the person accepts; the server then asks its own question.
    c.send(call(1, "deploy", None, None).as_bytes()).await;
    let ours = c.recv_json().await;
    assert!(
        ours["result"]["inputRequests"]["mcp-audit-proxy.confirm"].is_object(),
        "{ours}"
    );
    let state = ours["result"]["requestState"].clone();
    let answer = json!({"mcp-audit-proxy.confirm": accept});
    c.send(call(2, "deploy", Some(&state), Some(answer)).as_bytes())
        .await;
    let theirs = c.recv_json().await;
    assert_eq!(theirs["result"]["resultType"], "input_required", "{theirs}");
    assert!(
        theirs["result"]["inputRequests"]["confirm"].is_object(),
        "{theirs}"
    );
    let server_state = theirs["result"]["requestState"].clone();

    // The retry answering the server runs, without a second question from the proxy.
    c.send(call(3, "deploy", Some(&server_state), Some(server_yes.clone())).as_bytes())
        .await;
    let done = c.recv_json().await;
    assert_eq!(
        done["result"]["content"][0]["text"], "confirmed: deploy",
        "{done}"
    );

    // The same round answered for other arguments: asked again, never run.
    c.send(call(4, "wipe", None, None).as_bytes()).await;
    let s4 = c.recv_json().await["result"]["requestState"].clone();
    let answer = json!({"mcp-audit-proxy.confirm": accept});
    c.send(call(5, "wipe", Some(&s4), Some(answer)).as_bytes())
        .await;
    let theirs = c.recv_json().await;
    let s5 = theirs["result"]["requestState"].clone();
    c.send(call(6, "wipe everything", Some(&s5), Some(server_yes)).as_bytes())
        .await;
    let again = c.recv_json().await;
    assert!(
        again["result"]["inputRequests"]["mcp-audit-proxy.confirm"].is_object(),
        "{again}"
    );
    assert!(c.finish().await.success());
    let seen = std::fs::read_to_string(received).unwrap();
    assert!(!seen.contains("wipe everything"), "{seen}");
    let events = store.events();
    let carried = events
        .iter()
        .filter(|e| {
            e["metadata"]["confirmation"]
                .as_str()
                .is_some_and(|c| c.contains("in the round this retry continues"))
        })
        .count();
    assert_eq!(carried, 1, "{events:#?}");
}

/// helper-109 F6: a server request under an id of the form the proxy gives its own
/// confirmation requests (`mcp-audit-proxy.confirm.…`) reached the client, and the client's
/// answer to it was taken as the person's answer to the proxy. Refused to the server now;
/// the client never sees it, and a request of the server's under another id still reaches it.
#[tokio::test]
async fn a_server_request_under_the_proxys_own_id_form_is_refused_to_the_server() {
    let store = TestStore::new(CONFIRM_SHELL_IN_ECHO);
    let log = store.dir.path().join("server-got.ndjson");
    let ask = |id: &str| {
        json!({"jsonrpc": "2.0", "id": id, "method": "elicitation/create", "params": {
            "message": "approve?", "requestedSchema": {"type": "object", "properties": {}}}})
        .to_string()
    };
    let script = format!(
        "read first; printf '%s\\n' '{}' '{}' '{}'; while read -r l; do printf '%s\\n' \"$l\" >> '{}'; done",
        ask("mcp-audit-proxy.confirm.01JZZZZZZZZZZZZZZZZZZZZZZZ"),
        ask("MCP-AUDIT-PROXY.CONFIRM.x"),
        ask("srv-7"),
        log.display()
    );
    let mut c = LineClient::spawn(store.proxy_command(&["sh", "-c", &script]));
    c.send(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n")
        .await;
    let first = c.recv_json().await;
    assert_eq!(first["id"], "srv-7", "the client got {first}");
    c.close_input();
    c.wait_exit().await;
    let got = std::fs::read_to_string(&log).unwrap_or_default();
    let answers: Vec<Value> = got
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for id in [
        "mcp-audit-proxy.confirm.01JZZZZZZZZZZZZZZZZZZZZZZZ",
        "MCP-AUDIT-PROXY.CONFIRM.x",
    ] {
        assert!(
            answers
                .iter()
                .any(|a| a["id"] == id && a["error"]["code"] == -32600),
            "{id} not refused to the server: {got}"
        );
    }
}

#[tokio::test]
async fn a_server_requests_answer_the_proxy_does_not_forward_gets_the_server_an_error() {
    // The kind of helper-109 F7 on the server's side: the client's answer to a server request
    // in a batch the proxy refused whole (another element blocked, or the answer itself
    // unreadable) was dropped, and the server, which waits for each answer with no timeout of
    // its own, kept the call open. The server now gets an error in its place at once.
    let store = TestStore::new(BLOCK_SHELL_IN_ECHO);
    let (mut c, received) = spawn_recorded(&store);
    c.initialize().await;
    for (call, unreadable) in [(1, false), (2, true)] {
        c.send(&call_line(
            json!(call),
            "confirm",
            json!({"action": "ship"}),
        ))
        .await;
        let request = c.recv_json().await;
        assert_eq!(request["method"], "elicitation/create", "{request}");
        let answer = json!({"jsonrpc": "2.0", "id": request["id"], "result": {"action": "accept", "content": {"confirmed": true}}}).to_string();
        let batch = match unreadable {
            // Refused whole for its blocked call.
            false => {
                let blocked = call_line(json!(10), "echo", json!({"text": "a; b"}));
                format!("[{answer},{}]\n", String::from_utf8_lossy(&blocked).trim())
            }
            // Refused whole for its answer with `result` twice.
            true => format!(
                "[{}]\n",
                answer.replacen("\"result\":", "\"result\":{},\"result\":", 1)
            ),
        };
        c.send(batch.as_bytes()).await;
        let started = std::time::Instant::now();
        let done = loop {
            let m = c.recv_json().await;
            if m["id"] == call {
                break m;
            }
            // The blocked call's refusal, in a batch of its own.
            assert_eq!(m[0]["id"], 10, "{m}");
            assert_eq!(m[0]["error"]["code"], -32010, "{m}");
        };
        assert!(started.elapsed() < Duration::from_secs(5), "{done}");
        // The server's elicitation failed: the call ends with its error, not "confirmed".
        assert!(done.get("error").is_some(), "{done}");
        assert!(!done.to_string().contains("confirmed: ship"), "{done}");
    }
    assert!(c.finish().await.success());
    let seen = std::fs::read_to_string(received).unwrap();
    assert!(!seen.contains("a; b"), "{seen}");
    assert!(
        seen.contains("mcp-audit-proxy refused the client's answer to this request"),
        "{seen}"
    );
}

/// Review finding 5: a retry answering the server's own round that the policy wants
/// confirmed (its answers raise the risk) gets the proxy's round; the confirmed retry then
/// reaches the server with the server's answers put back. Its access stored only what the
/// client sent with it (nothing but the proxy's own key), not the answers the server got.
#[tokio::test]
async fn a_confirmed_retry_stores_and_judges_the_server_answers_its_round_kept() {
    let store = TestStore::new(
        "[risk]\nconfirm_timeout_ms = 20000\n[risk.actions]\nhigh = \"confirm\"\n\
         [[risk.rule]]\nname = \"launch words\"\nregex = \"launch\"\nlevel = \"high\"\n",
    );
    let (mut c, received) = spawn_recorded(&store);
    let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}}});
    let call = |id: i64, state: Option<&Value>, responses: Option<Value>| {
        let mut params =
            json!({"name": "confirm", "arguments": {"action": "deploy"}, "_meta": meta});
        if let Some(s) = state {
            params["requestState"] = s.clone();
        }
        if let Some(r) = responses {
            params["inputResponses"] = r;
        }
        format!(
            "{}\n",
            json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params})
        )
    };
    // The server asks first; the client's answer carries a launch word: the proxy asks.
    c.send(call(1, None, None).as_bytes()).await;
    let theirs = c.recv_json().await;
    assert_eq!(theirs["result"]["resultType"], "input_required", "{theirs}");
    let server_state = theirs["result"]["requestState"].clone();
    let server_yes = json!({"confirm": {"action": "accept",
        "content": {"confirmed": true, "note": "launch now"}}});
    c.send(call(2, Some(&server_state), Some(server_yes.clone())).as_bytes())
        .await;
    let ours = c.recv_json().await;
    assert!(
        ours["result"]["inputRequests"]["mcp-audit-proxy.confirm"].is_object(),
        "{ours}"
    );
    let state = ours["result"]["requestState"].clone();
    let accept = json!({"mcp-audit-proxy.confirm":
        {"action": "accept", "content": {"confirm": true}}});
    c.send(call(3, Some(&state), Some(accept)).as_bytes()).await;
    let done = c.recv_json().await;
    assert_eq!(
        done["result"]["content"][0]["text"], "confirmed: deploy",
        "{done}"
    );
    assert!(c.finish().await.success());
    // The server got its answers back with the confirmed retry.
    let seen = std::fs::read_to_string(received).unwrap();
    let last = seen.lines().last().unwrap();
    assert!(last.contains("launch now"), "{seen}");
    let events = store.events();
    let access = events
        .iter()
        .find(|e| e["event_type"] == "tool_access" && e["metadata"]["request_id"] == 3)
        .unwrap_or_else(|| panic!("no access of the confirmed retry: {events:#?}"));
    assert_eq!(
        access["metadata"]["input_responses"], server_yes,
        "{access}"
    );
    // Judged with them: the launch word's rule is among its reasons, the call confirmed.
    let reasons = access["metadata"]["risk_reasons"].to_string();
    assert!(reasons.contains("launch words"), "{access}");
    assert_eq!(access["metadata"]["decision"], "confirm", "{access}");
    let end = events
        .iter()
        .find(|e| e["event_type"] == "tool_execution" && e["metadata"]["request_id"] == 3)
        .unwrap_or_else(|| panic!("no end of the confirmed retry: {events:#?}"));
    assert!(
        end["metadata"]["confirmation"]
            .as_str()
            .is_some_and(|c| c.contains("accepted")),
        "{end}"
    );
}
