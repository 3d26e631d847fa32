//! Sensitive data end to end, through the real binary: tagged and never stored readable in
//! the trail, and, under `redact_results`, masked in everything the server sends the client
//! (results, errors, answers to other requests, its own messages), handles excepted.

mod common;

use common::policy::{BLOCK_SHELL_IN_ECHO, CARD, all_bytes, contains};
use common::{LineClient, TestStore, call_line, pairs};
use serde_json::{Value, json};

#[tokio::test]
async fn card_numbers_and_secrets_are_tagged_and_never_stored_readable() {
    let store = TestStore::new("");
    let mut c = common::initialized(&store).await;
    let secret = "AKIAIOSFODNN7EXAMPLE";
    c.send(&call_line(
        json!(1),
        "echo",
        json!({"text": format!("pay with {CARD}")}),
    ))
    .await;
    // The client sees the result as the server sent it (redact_results is off).
    let reply = c.recv_json().await;
    assert_eq!(
        reply["result"]["content"][0]["text"],
        format!("pay with {CARD}")
    );
    // Card + secret in one call reaches critical with the default policy: blocked.
    c.send(&call_line(
        json!(2),
        "echo",
        json!({"text": format!("{CARD} {secret}")}),
    ))
    .await;
    let blocked = c.recv_json().await;
    assert_eq!(blocked["error"]["code"], -32010, "{blocked}");
    c.send(&call_line(
        json!(3),
        "echo",
        json!({"text": "mail jane@example.com"}),
    ))
    .await;
    c.recv_json().await;
    // Personal data only in the result: the execution event is tagged and its risk raised.
    c.send(&call_line(json!(4), "personal_data", json!({})))
        .await;
    c.recv_json().await;
    assert!(c.finish().await.success());

    let events = store.events();
    let pairs = pairs(&events);
    let (pd_access, pd_end) = &pairs[3];
    assert_eq!(pd_access["compliance_tags"], json!([]));
    assert_eq!(pd_end["compliance_tags"], json!(["gdpr"]));
    assert!(
        pd_end["metadata"]["risk_score"].as_u64() > pd_access["metadata"]["risk_score"].as_u64(),
        "{pd_access} {pd_end}"
    );
    let (access, end) = &pairs[0];
    assert_eq!(access["compliance_tags"], json!(["pci_dss"]));
    assert_eq!(access["metadata"]["redacted"], json!(["payment_card"]));
    assert_eq!(
        access["metadata"]["arguments"]["text"],
        "pay with [REDACTED:payment_card]"
    );
    // The result carried the card too: the execution event says so.
    assert_eq!(end["compliance_tags"], json!(["pci_dss"]));
    assert!(
        end["metadata"]["risk_reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r
                .as_str()
                .unwrap()
                .contains("result contains payment_card (as the arguments did)")),
        "{end}"
    );
    let (blocked_access, _) = &pairs[1];
    assert_eq!(
        blocked_access["compliance_tags"],
        json!(["pci_dss", "secrets"])
    );
    assert_eq!(pairs[2].0["compliance_tags"], json!(["gdpr"]));
    assert_eq!(
        pairs[2].0["metadata"]["arguments"]["text"],
        "mail [REDACTED:email]"
    );

    // Nowhere in the store, in any file, in clear.
    let bytes = all_bytes(&store.store_dir());
    for needle in [CARD, "4111111111111111", secret, "jane@example.com"] {
        assert!(!contains(&bytes, needle), "{needle} is stored readable");
    }
}

#[tokio::test]
async fn hashed_personal_data_stays_groupable_and_results_can_be_redacted() {
    let store = TestStore::new(
        "[risk]\nredact_results = true\nhmac_key_env = \"TEST_AUDIT_HMAC_KEY\"\n[risk.store]\nemail = \"hash\"\n",
    );
    let mut command = store.proxied_example();
    command.env("TEST_AUDIT_HMAC_KEY", "k".repeat(40));
    let mut c = LineClient::spawn(command);
    c.initialize().await;
    for id in [1, 2] {
        c.send(&call_line(
            json!(id),
            "echo",
            json!({"text": "write to jane@example.com"}),
        ))
        .await;
        let reply = c.recv_json().await;
        assert_eq!(
            reply["result"]["content"][0]["text"], "write to [REDACTED:email]",
            "{reply}"
        );
    }
    assert!(c.finish().await.success());
    let pairs = pairs(&store.events());
    let stored: Vec<&str> = pairs
        .iter()
        .map(|(a, _)| a["metadata"]["arguments"]["text"].as_str().unwrap())
        .collect();
    assert!(stored[0].starts_with("write to [HMAC:email:"), "{stored:?}");
    assert_eq!(stored[0], stored[1], "the same address hashes the same");
    assert_eq!(
        pairs[0].1["metadata"]["redacted_for_client"],
        json!(["email"])
    );
    assert!(!contains(
        &all_bytes(&store.store_dir()),
        "jane@example.com"
    ));
}

#[tokio::test]
async fn redact_results_masks_error_answers_and_the_servers_own_messages_too() {
    // A server whose every answer is an error carrying a card number in its message and data:
    // with redact_results that reaches the client, and a model behind it, masked.
    let error = format!(
        r#"{{"code":-32000,"message":"bad card {CARD}","data":{{"card":"{CARD}","attempt":7}}}}"#
    );
    let notice = format!(
        r#"{{"jsonrpc":"2.0","method":"notifications/message","params":{{"level":"info","data":"charging {CARD}"}}}}"#
    );
    // Data hidden behind JSON escapes, which a scan of the raw text does not see.
    let escaped = r#"{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"mail alice\u0040example.com"}}"#;
    // Answers to no request of the client's (an unknown id, a null one), before the real one.
    let stray = format!(r#"{{"jsonrpc":"2.0","id":99,"error":{error}}}"#);
    let null = format!(r#"{{"jsonrpc":"2.0","id":null,"error":{error}}}"#);
    let script = format!(
        "while read -r line; do printf '%s\\n' '{notice}' '{escaped}' '{stray}' '{null}' '{{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{error}}}'; done"
    );
    for redact in [true, false] {
        let store = TestStore::new(&format!("[risk]\nredact_results = {redact}\n"));
        let mut c = LineClient::spawn(store.proxy_command(&["sh", "-c", &script]));
        c.send(&call_line(json!(1), "pay", json!({"amount": 5})))
            .await;
        let logged = c.recv().await.expect("the log notification");
        let hidden = c.recv().await.expect("the escaped log notification");
        let unasked = c.recv().await.expect("the answer to no request");
        let nulled = c.recv().await.expect("the answer with a null id");
        let line = c.recv().await.expect("the error answer");
        assert!(c.finish().await.success());
        let reply: Value = serde_json::from_slice(&line).unwrap();
        let end = &pairs(&store.events())[0].1;
        assert_eq!(end["result"], "jsonrpc_error", "{end}");
        if redact {
            let text = String::from_utf8_lossy(&line);
            assert!(!text.contains(CARD), "{text}");
            assert_eq!(reply["error"]["code"], -32000);
            assert_eq!(reply["error"]["data"]["attempt"], 7);
            assert_eq!(
                reply["error"]["message"],
                "bad card [REDACTED:payment_card]"
            );
            assert_eq!(reply["error"]["data"]["card"], "[REDACTED:payment_card]");
            assert_eq!(
                end["metadata"]["redacted_for_client"],
                json!(["payment_card"])
            );
            let logged: Value = serde_json::from_slice(&logged).unwrap();
            assert_eq!(logged["method"], "notifications/message");
            assert_eq!(logged["params"]["data"], "charging [REDACTED:payment_card]");
            assert_eq!(logged["params"]["level"], "info");
            let hidden: Value = serde_json::from_slice(&hidden).unwrap();
            assert_eq!(hidden["params"]["data"], "mail [REDACTED:email]");
            let nulled: Value = serde_json::from_slice(&nulled).unwrap();
            assert_eq!(nulled["id"], Value::Null);
            assert!(nulled.as_object().unwrap().contains_key("id"));
            assert_eq!(
                nulled["error"]["message"],
                "bad card [REDACTED:payment_card]"
            );
            let unasked: Value = serde_json::from_slice(&unasked).unwrap();
            assert_eq!(unasked["id"], 99);
            assert_eq!(
                unasked["error"]["message"],
                "bad card [REDACTED:payment_card]"
            );
        } else {
            let sent = format!("{{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{error}}}\n");
            assert_eq!(line, sent.as_bytes(), "passed on byte for byte");
            assert_eq!(logged, format!("{notice}\n").as_bytes());
            assert_eq!(unasked, format!("{stray}\n").as_bytes());
            assert_eq!(hidden, format!("{escaped}\n").as_bytes());
            assert_eq!(nulled, format!("{null}\n").as_bytes());
        }
    }
}

#[tokio::test]
async fn refused_calls_and_odd_results_keep_sensitive_data_out_of_the_trail() {
    // Classifiers narrowed to e-mail: secrets and card numbers are still kept out.
    let store = TestStore::new(&format!(
        "[risk]\nredact_results = true\nclassifiers = [\"email\"]\n{BLOCK_SHELL_IN_ECHO}"
    ));
    let dir = store.dir.path();
    // A server too nested to parse (over serde_json's 128 levels), then an error text with a
    // card number across the 1000-character cut.
    let deep = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{{\"content\":[{{\"type\":\"text\",\"text\":\"card {CARD}\"}}],\"x\":{}{}}}}}\n",
        "[".repeat(200),
        "]".repeat(200)
    );
    let long_error = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{{\"isError\":true,\"content\":[{{\"type\":\"text\",\"text\":\"{} {CARD}\"}}]}}}}\n",
        "a".repeat(989)
    );
    // Two copies of `content`, the card in the one most clients drop, and an error flag.
    let twice = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":4,\"result\":{{\"isError\":true,\"content\":[{{\"type\":\"text\",\"text\":\"card {CARD}\"}}],\"content\":[{{\"type\":\"text\",\"text\":\"failed\"}}]}}}}\n"
    );
    std::fs::write(dir.join("r2"), deep).unwrap();
    std::fs::write(dir.join("r3"), long_error).unwrap();
    std::fs::write(dir.join("r4"), twice).unwrap();
    let script = format!(
        "read two; cat '{0}/r2'; read three; cat '{0}/r3'; read four; cat '{0}/r4'; cat >/dev/null",
        dir.display()
    );
    let mut c = LineClient::spawn(store.proxy_command(&["sh", "-c", &script]));
    // A batch refused because of its first element: the second is recorded, masked.
    let batch = json!([
        {"jsonrpc": "2.0", "id": 10, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "a; b"}}},
        {"jsonrpc": "2.0", "id": 11, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": format!("card {CARD} key AKIAIOSFODNN7EXAMPLE")}}},
    ]);
    c.send(format!("{batch}\n").as_bytes()).await;
    assert!(c.recv_json().await.is_array());
    // Ambiguous arguments carrying a card number: refused, masked.
    c.send(format!("{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{{\"name\":\"echo\",\"arguments\":{{\"text\":\"{CARD}\",\"text\":\"x\"}}}}}}\n").as_bytes()).await;
    assert_eq!(c.recv_json().await["error"]["code"], -32602);
    // Arguments that are not an object never reach the server.
    c.send(b"{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"arguments\":[\"x\"]}}\n").await;
    let not_object = c.recv_json().await;
    assert_eq!(not_object["error"]["code"], -32602, "{not_object}");
    // The deep result cannot be redacted: the client gets an error, not the card.
    c.send(&call_line(json!(2), "echo", json!({"text": "deep"})))
        .await;
    let withheld = c.recv().await.unwrap();
    let text = String::from_utf8_lossy(&withheld);
    assert!(!text.contains("4111"), "{text}");
    assert!(text.contains("withheld the result"), "{text}");
    c.send(&call_line(json!(3), "echo", json!({"text": "long"})))
        .await;
    c.recv_json().await;
    c.send(&call_line(json!(4), "echo", json!({"text": "twice"})))
        .await;
    let withheld = c.recv_json().await;
    assert_eq!(withheld["error"]["code"], -32603, "{withheld}");
    assert!(c.finish().await.success());

    let events = store.events();
    let pairs = pairs(&events);
    let end_of = |id: i64| {
        pairs
            .iter()
            .find(|(a, _)| a["metadata"]["request_id"] == id)
            .unwrap_or_else(|| panic!("no call {id}"))
    };
    assert_eq!(end_of(11).1["result"], "refused");
    assert_eq!(
        end_of(11).0["compliance_tags"],
        json!(["pci_dss", "secrets"])
    );
    // The card classifier is off, so no tag; the guard still withheld the result. What was
    // wrong with the result stays beside it (review finding 8b: the one replaced the other).
    assert!(
        end_of(2).1["metadata"]["reason"]
            .as_str()
            .unwrap()
            .contains("withheld from the client"),
        "{}",
        end_of(2).1
    );
    // A result withheld keeps what else was said of it (review finding 8b: the one replaced
    // the other): here that it reads two ways, recorded as the error most clients read.
    let why = end_of(4).1["metadata"]["reason"].as_str().unwrap();
    assert!(why.contains("withheld from the client"), "{}", end_of(4).1);
    assert!(why.contains("more than one way"), "{}", end_of(4).1);
    assert_eq!(end_of(4).1["result"], "error", "{}", end_of(4).1);
    let error_text = end_of(3).1["metadata"]["error_messages"][0]
        .as_str()
        .unwrap();
    assert!(
        error_text.ends_with(" [REDACTED:"),
        "masked, then cut: {error_text}"
    );
    // The card's digits, whole or in part across a cut ("4111" alone also turns up by
    // chance in an execution time or a timestamp's microseconds: a flaky check).
    for e in &events {
        let text = e.to_string();
        for part in ["4111 1111", "41111111", CARD] {
            assert!(!text.contains(part), "stored readable: {e}");
        }
    }
    let bytes = all_bytes(&store.store_dir());
    for needle in [CARD, "AKIAIOSFODNN7EXAMPLE", "4111 1111 1111 111"] {
        assert!(!contains(&bytes, needle), "{needle} is stored readable");
    }
}

#[tokio::test]
async fn redact_results_masks_answers_to_resources_and_prompts_too() {
    // resources/read hands a file's text to the client's model as a tool result does.
    // A listing's page cursor and a task's id are the server's handles, sent back to it: kept
    // even when token-shaped; the same text anywhere else is masked (found in review).
    const CURSOR: &str = "ghp_16C7e42F292c6912E7710c838347Ae178B4a";
    // Resource URIs are handles the client reads back and matches updates by (helper-120
    // F2): kept as the server wrote them, though they hold an address (not a secret or a
    // card number: helper-123 R2, checked below).
    let uri = "file:///home/bob@example.com/notes.txt";
    let server = format!(
        r#"
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if "id" not in m:
        continue
    if m["method"] == "resources/read":
        out = {{"result": {{"contents": [{{"uri": "{URI}", "text": "card {CARD}"}}], "nextCursor": "{CURSOR}"}}}}
    elif m["method"] == "resources/templates/list":
        out = {{"result": {{"resourceTemplates": [{{"uriTemplate": "{URI}{{x}}", "name": "card {CARD}"}}]}}}}
    elif m["method"] == "tools/call":
        out = {{"result": {{"content": [{{"type": "resource_link", "uri": "{URI}", "name": "card {CARD}"}},
                                        {{"type": "resource", "resource": {{"uri": "{URI}", "text": "card {CARD}"}}}},
                                        {{"type": "text", "text": "{URI}"}},
                                        {{"type": "resource_link", "uri": "data:text/plain,{URI}", "name": "d"}},
                                        {{"type": "resource_link", "uri": "urn:note:AKIAIOSFODNN7EXAMPLE", "name": "k"}}]}}}}
    elif m["method"] == "resources/subscribe":
        print(json.dumps({{"jsonrpc": "2.0", "method": "notifications/resources/updated", "params": {{"uri": "{URI}", "title": "card {CARD}"}}}}), flush=True)
        print(json.dumps({{"jsonrpc": "2.0", "method": "notifications/message", "params": {{"level": "info", "uri": "{URI}", "data": "x"}}}}), flush=True)
        out = {{"result": {{}}}}
    elif m["method"] == "prompts/get":
        out = {{"error": {{"code": -32000, "message": "no prompt for {CARD}"}}}}
    elif m["method"] == "resources/list":
        out = {{"result": {{"resources": [{{"uri": "{URI}", "name": "card {CARD}"}}], "nextCursor": "{CURSOR}"}}}}
    elif m["method"] == "tasks/get":
        out = {{"result": {{"taskId": "{CURSOR}", "status": "failed", "statusMessage": "card {CARD}"}}}}
    else:
        out = {{"result": {{"protocolVersion": "2025-06-18", "capabilities": {{}}, "serverInfo": {{"name": "s {CARD}", "version": "1"}}}}}}
    out.update(jsonrpc="2.0", id=m["id"])
    print(json.dumps(out), flush=True)
"#,
        URI = uri
    );
    for redact in [true, false] {
        let store = TestStore::new(&format!("[risk]\nredact_results = {redact}\n"));
        let mut c = LineClient::spawn(store.proxy_command(&["python3", "-c", &server]));
        let mut got = Vec::new();
        for (id, method) in [
            (1, "initialize"),
            (2, "resources/read"),
            (3, "prompts/get"),
            (4, "resources/list"),
            (5, "tasks/get"),
            (6, "resources/templates/list"),
            (7, "tools/call"),
            (8, "resources/subscribe"),
        ] {
            let params = match method {
                "tools/call" => r#"{"name":"t","arguments":{}}"#,
                _ => "{}",
            };
            c.send(
                format!(
                    "{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"{method}\",\"params\":{params}}}\n"
                )
                .as_bytes(),
            )
            .await;
            got.push(c.recv_json().await);
        }
        let logged = c.recv_json().await;
        let answered = c.recv_json().await;
        assert_eq!(answered["id"], 8, "{answered}");
        assert!(c.finish().await.success());
        // The handshake is protocol, not data: never masked.
        assert_eq!(got[0]["result"]["serverInfo"]["name"], format!("s {CARD}"));
        let (text, message) = (
            got[1]["result"]["contents"][0]["text"].as_str().unwrap(),
            got[2]["error"]["message"].as_str().unwrap(),
        );
        if redact {
            assert_eq!(text, "card [REDACTED:payment_card]", "{}", got[1]);
            assert_eq!(
                message, "no prompt for [REDACTED:payment_card]",
                "{}",
                got[2]
            );
            assert_eq!(got[1]["result"]["contents"][0]["uri"], uri);
            assert_eq!(got[3]["result"]["resources"][0]["uri"], uri, "{}", got[3]);
            assert_eq!(
                got[5]["result"]["resourceTemplates"][0]["uriTemplate"],
                format!("{uri}{{x}}"),
                "{}",
                got[5]
            );
            let content = &got[6]["result"]["content"];
            assert_eq!(content[0]["uri"], uri, "{}", got[6]);
            assert_eq!(content[0]["name"], "card [REDACTED:payment_card]");
            assert_eq!(content[1]["resource"]["uri"], uri, "{}", got[6]);
            assert_eq!(
                content[1]["resource"]["text"],
                "card [REDACTED:payment_card]"
            );
            // The same text where it is no handle is masked.
            assert!(
                !content[2]["text"].as_str().unwrap().contains(CARD),
                "{}",
                got[6]
            );
            assert_eq!(got[7]["method"], "notifications/resources/updated");
            assert_eq!(got[7]["params"]["uri"], uri, "{}", got[7]);
            assert_eq!(got[7]["params"]["title"], "card [REDACTED:payment_card]");
            // A `uri` anywhere else is more text (helper-121 F4), and a `data:` URI is
            // content, not a handle (F5): masked.
            assert!(
                !logged["params"]["uri"].to_string().contains(CARD),
                "{logged}"
            );
            assert!(!content[3]["uri"].to_string().contains(CARD), "{}", got[6]);
            // A URI holding a secret is no handle to keep (helper-123 R2).
            assert!(
                !content[4]["uri"]
                    .to_string()
                    .contains("AKIAIOSFODNN7EXAMPLE"),
                "{}",
                got[6]
            );
            assert_ne!(got[1]["result"]["nextCursor"], CURSOR, "{}", got[1]);
            assert_eq!(got[3]["result"]["nextCursor"], CURSOR, "{}", got[3]);
            assert_eq!(
                got[3]["result"]["resources"][0]["name"], "card [REDACTED:payment_card]",
                "{}",
                got[3]
            );
            assert_eq!(got[4]["result"]["taskId"], CURSOR, "{}", got[4]);
            assert_eq!(
                got[4]["result"]["statusMessage"], "card [REDACTED:payment_card]",
                "{}",
                got[4]
            );
            assert_eq!(
                (got[1]["id"].clone(), got[2]["id"].clone()),
                (json!(2), json!(3))
            );
        } else {
            assert_eq!(text, format!("card {CARD}"));
            assert_eq!(message, format!("no prompt for {CARD}"));
        }
    }
}

#[tokio::test]
async fn redact_results_never_passes_a_repeated_key_with_data_in_the_copy_not_masked() {
    // Found by a fresh pair of eyes: masking read the last `content`, found nothing, and the
    // original bytes went on with the card in the first.
    let server = format!(
        r#"
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("method") == "tools/call" and m["id"] == 3:
        print('{{"jsonrpc":"2.0","id":3,"result":{{"content":[{{"type":"text","text":"card {CARD}"}}],"structuredContent":{{"ID":"a\\nb","id":"c"}}}}}}', flush=True)
    elif m.get("method") == "tools/call":
        print('{{"jsonrpc":"2.0","id":1,"result":{{"content":[{{"type":"text","text":"card {CARD}"}}],"content":[{{"type":"text","text":"ok"}}]}}}}', flush=True)
    elif m.get("method") == "resources/read":
        print('{{"jsonrpc":"2.0","id":2,"result":{{"contents":[{{"uri":"a","text":"card {CARD}"}}],"contents":[]}}}}', flush=True)
"#
    );
    let store = TestStore::new("[risk]\nredact_results = true\n");
    let mut c = LineClient::spawn(store.proxy_command(&["python3", "-c", &server]));
    c.send(&call_line(json!(1), "pay", json!({}))).await;
    let call = c.recv().await.unwrap();
    c.send(b"{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"resources/read\",\"params\":{\"uri\":\"a\"}}\n")
        .await;
    let read = c.recv().await.unwrap();
    // Keys that differ only in case are not repeated: both copies are masked, nothing withheld.
    c.send(&call_line(json!(3), "pay", json!({}))).await;
    let cased = c.recv_json().await;
    assert!(c.finish().await.success());
    assert_eq!(
        cased["result"]["content"][0]["text"], "card [REDACTED:payment_card]",
        "{cased}"
    );
    assert_eq!(
        cased["result"]["structuredContent"]["ID"], "a\nb",
        "{cased}"
    );
    for (line, what) in [(&call, "the call's result"), (&read, "the read's result")] {
        let text = String::from_utf8_lossy(line);
        assert!(!text.contains(CARD), "{what} passed in clear: {text}");
        let v: Value = serde_json::from_slice(line).unwrap();
        assert_eq!(v["error"]["code"], -32603, "{what}: {v}");
    }
    let end = &pairs(&store.events())[0].1;
    let reason = end["metadata"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("repeated key"), "{end}");
}

#[tokio::test]
async fn redact_results_leaves_an_input_required_rounds_request_state_as_the_server_sent_it() {
    // Found by a fresh pair of eyes: a token-shaped requestState was masked, so the client
    // echoed `[REDACTED:secret]` and the server could not resume its round.
    let state = "ghp_16C7e42F292c6912E7710c838347Ae178B4a";
    let server = format!(
        r#"
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("method") == "tools/call":
        print(json.dumps({{"jsonrpc": "2.0", "id": m["id"], "result": {{"resultType": "input_required", "requestState": "{state}", "inputRequests": {{"ask": {{"method": "elicitation/create", "params": {{"message": "pay with {CARD}?", "requestedSchema": {{"type": "object"}}}}}}}}}}}}), flush=True)
"#
    );
    let store = TestStore::new("[risk]\nredact_results = true\n");
    let mut c = LineClient::spawn(store.proxy_command(&["python3", "-c", &server]));
    c.send(&call_line(json!(1), "pay", json!({}))).await;
    let got = c.recv_json().await;
    assert!(c.finish().await.success());
    assert_eq!(got["result"]["requestState"], state, "{got}");
    let message = &got["result"]["inputRequests"]["ask"]["params"]["message"];
    assert_eq!(message, "pay with [REDACTED:payment_card]?", "{got}");
}

#[tokio::test]
async fn redact_results_masks_a_request_state_on_a_result_that_is_not_an_input_required_round() {
    // Found in review: every result's `requestState` was passed on as sent, so a server could
    // put anything there and have it reach the client unmasked.
    let server = format!(
        r#"
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("method") == "tools/call":
        kind = m["params"]["arguments"]["kind"]
        out = {{"content": [], "requestState": "card {CARD}"}}
        if kind != "none":
            out["resultType"] = kind
        print(json.dumps({{"jsonrpc": "2.0", "id": m["id"], "result": out}}), flush=True)
"#
    );
    let store = TestStore::new("[risk]\nredact_results = true\n");
    let mut c = LineClient::spawn(store.proxy_command(&["python3", "-c", &server]));
    for (id, kind) in [(1, "complete"), (2, "none"), (3, "Input_Required")] {
        c.send(&call_line(json!(id), "pay", json!({"kind": kind})))
            .await;
        let got = c.recv_json().await;
        assert_eq!(got["id"], id, "{got}");
        assert_eq!(
            got["result"]["requestState"], "card [REDACTED:payment_card]",
            "{kind}: {got}"
        );
    }
    assert!(c.finish().await.success());
}

#[tokio::test]
async fn a_call_that_becomes_a_task_has_its_real_outcome_recorded_and_masked() {
    // Found by a fresh pair of eyes: the trail ended at `task`, and the result fetched with
    // tasks/result reached the client unmasked under redact_results.
    let server = format!(
        r#"
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    method = m.get("method")
    if method == "tools/call":
        out = {{"task": {{"taskId": "t1", "status": "working", "createdAt": "2026-12-03T00:00:00Z", "ttl": 60000}}}}
    elif method == "tasks/result":
        out = {{"content": [{{"type": "text", "text": "charged {CARD}"}}], "isError": True,
               "_meta": {{"io.modelcontextprotocol/related-task": {{"taskId": m["params"]["taskId"]}}}}}}
    else:
        continue
    print(json.dumps({{"jsonrpc": "2.0", "id": m["id"], "result": out}}), flush=True)
"#
    );
    let store = TestStore::new("[risk]\nredact_results = true\n");
    let mut c = LineClient::spawn(store.proxy_command(&["python3", "-c", &server]));
    c.send(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"pay\",\"arguments\":{},\"task\":{\"ttl\":60000}}}\n").await;
    let created = c.recv_json().await;
    assert_eq!(created["result"]["task"]["taskId"], "t1", "{created}");
    c.send(b"{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tasks/result\",\"params\":{\"taskId\":\"t1\"}}\n")
        .await;
    let line = c.recv().await.unwrap();
    // A client may fetch the result again until the task's ttl (helper-74: recorded as a
    // second outcome, as if the tool had run twice): masked again, and said to be a repeat.
    c.send(b"{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tasks/result\",\"params\":{\"taskId\":\"t1\"}}\n")
        .await;
    let again = c.recv().await.unwrap();
    assert!(c.finish().await.success());
    assert!(!String::from_utf8_lossy(&again).contains(CARD));
    let text = String::from_utf8_lossy(&line);
    assert!(!text.contains(CARD), "{text}");
    let got: Value = serde_json::from_slice(&line).unwrap();
    assert_eq!(got["id"], 2, "{got}");
    assert_eq!(
        got["result"]["content"][0]["text"],
        "charged [REDACTED:payment_card]"
    );
    let events = store.events();
    let kinds: Vec<(&str, &str)> = events
        .iter()
        .filter(|e| e["tool_name"] == "pay")
        .map(|e| {
            (
                e["event_type"].as_str().unwrap(),
                e["result"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("tool_access", "initiated"),
            ("tool_execution", "task"),
            ("tool_execution", "error"),
            ("tool_execution", "error")
        ]
    );
    let outcomes: Vec<&Value> = events
        .iter()
        .filter(|e| e["tool_name"] == "pay" && e["result"] == "error")
        .collect();
    let outcome = outcomes[0];
    let repeat = outcomes[1]["metadata"]["reason"].as_str().unwrap();
    assert!(
        repeat.contains("fetched again")
            && repeat.contains(outcome["event_id"].as_str().unwrap())
            && repeat.contains("did not run again"),
        "{repeat}"
    );
    assert!(
        !outcome["metadata"]["reason"]
            .as_str()
            .unwrap()
            .contains("again")
    );
    let access = events
        .iter()
        .find(|e| e["event_type"] == "tool_access")
        .unwrap();
    assert_eq!(outcome["linked_event_id"], access["event_id"]);
    assert!(
        outcome["compliance_tags"]
            .as_array()
            .unwrap()
            .contains(&json!("pci_dss")),
        "{outcome}"
    );
    assert!(
        outcome["metadata"]["reason"]
            .as_str()
            .unwrap()
            .contains("tasks/result")
    );
}

#[tokio::test]
async fn a_task_answered_with_an_error_or_under_a_reused_id_says_so_in_the_trail() {
    // Found by a hostile pass (helper-109 F5): a server answering a call with a `task` and
    // `isError: true` was recorded as a task with nothing of the error, and a task id the
    // server gave twice credited the later `tasks/result` to the newest call without a word.
    let server = r#"
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    method = m.get("method")
    task = {"taskId": "t1", "status": "working", "createdAt": "2026-12-03T00:00:00Z", "ttl": 60000}
    if method == "tools/call" and m["id"] == 1:
        out = {"task": task, "isError": True, "content": [{"type": "text", "text": "quota exceeded"}]}
    elif method == "tools/call" and m["id"] == 4:
        out = {"resultType": "task", "taskId": "t2", "status": "working", "isError": True,
               "content": [{"type": "text", "text": "over quota"}]}
    elif method == "tools/call":
        out = {"task": task}
    elif method == "tasks/result":
        out = {"content": [{"type": "text", "text": "done"}]}
    else:
        continue
    print(json.dumps({"jsonrpc": "2.0", "id": m["id"], "result": out}), flush=True)
"#;
    let store = TestStore::new("");
    let mut c = LineClient::spawn(store.proxy_command(&["python3", "-c", server]));
    for id in [1, 2] {
        c.send(format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"tools/call\",\"params\":{{\"name\":\"job\",\"arguments\":{{}},\"task\":{{\"ttl\":60000}}}}}}\n").as_bytes())
            .await;
        let created = c.recv_json().await;
        assert_eq!(created["result"]["task"]["taskId"], "t1", "{created}");
    }
    c.send(b"{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tasks/result\",\"params\":{\"taskId\":\"t1\"}}\n")
        .await;
    assert_eq!(c.recv_json().await["id"], 3);
    // The 2026-07-28 extension's shape alike.
    c.send(b"{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"tools/call\",\"params\":{\"name\":\"job\",\"arguments\":{}}}\n")
        .await;
    assert_eq!(c.recv_json().await["result"]["taskId"], "t2");
    assert!(c.finish().await.success());
    let events = store.events();
    let accesses: Vec<&Value> = events
        .iter()
        .filter(|e| e["event_type"] == "tool_access")
        .collect();
    assert_eq!(accesses.len(), 3, "{events:?}");
    let end_of = |access: &Value| {
        events
            .iter()
            .find(|e| e["linked_event_id"] == access["event_id"] && e["result"] == "task")
            .cloned()
            .expect("the call's task end")
    };
    let (first_access, first_end) = (accesses[0], end_of(accesses[0]));
    assert_eq!(first_end["result"], "task", "{first_end}");
    assert_eq!(
        first_end["metadata"]["error_messages"],
        json!(["quota exceeded"]),
        "{first_end}"
    );
    let why = first_end["metadata"]["reason"].as_str().unwrap_or_default();
    assert!(why.contains("isError: true"), "{why}");
    let (second_access, second_end) = (accesses[1], end_of(accesses[1]));
    assert_eq!(second_end["result"], "task", "{second_end}");
    let why = second_end["metadata"]["reason"]
        .as_str()
        .unwrap_or_default();
    assert!(
        why.contains("reused task id") && why.contains(first_access["event_id"].as_str().unwrap()),
        "{why}"
    );
    let third = end_of(accesses[2]);
    assert_eq!(
        third["metadata"]["error_messages"],
        json!(["over quota"]),
        "{third}"
    );
    let outcome = events
        .iter()
        .find(|e| e["result"] == "success")
        .expect("the task's outcome");
    assert_eq!(
        outcome["linked_event_id"], second_access["event_id"],
        "{outcome}"
    );
}

#[tokio::test]
async fn a_task_outcome_that_cannot_be_delivered_is_recorded_as_the_calls_end() {
    // Found in review: the call a tasks/result asked about was kept beside the request, and
    // an answer the proxy could not pass on (here: not UTF-8) left no end in the trail.
    let server = r#"
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    method = m.get("method")
    if method == "tools/call":
        out = {"task": {"taskId": "t1", "status": "working", "createdAt": "2026-12-03T00:00:00Z", "ttl": 60000}}
        print(json.dumps({"jsonrpc": "2.0", "id": m["id"], "result": out}), flush=True)
    elif method == "tasks/result":
        sys.stdout.buffer.write(b'{"jsonrpc":"2.0","id":' + json.dumps(m["id"]).encode() + b',"result":{"content":[{"type":"text","text":"\xff"}]}}\n')
        sys.stdout.flush()
"#;
    let store = TestStore::new("");
    let mut c = LineClient::spawn(store.proxy_command(&["python3", "-c", server]));
    c.send(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"pay\",\"arguments\":{},\"task\":{\"ttl\":60000}}}\n").await;
    let created = c.recv_json().await;
    assert_eq!(created["result"]["task"]["taskId"], "t1", "{created}");
    c.send(b"{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tasks/result\",\"params\":{\"taskId\":\"t1\"}}\n")
        .await;
    let failed = c.recv_json().await;
    assert!(c.finish().await.success());
    assert_eq!(failed["id"], 2, "{failed}");
    assert_eq!(failed["error"]["code"], -32603, "{failed}");
    let events = store.events();
    let ends: Vec<&Value> = events
        .iter()
        .filter(|e| e["tool_name"] == "pay" && e["event_type"] != "tool_access")
        .collect();
    assert_eq!(ends.len(), 2, "{ends:#?}");
    assert_eq!(ends[1]["result"], "refused", "{}", ends[1]);
    assert_eq!(
        failed["error"]["data"]["event_id"], ends[1]["event_id"],
        "{failed}"
    );
    let reason = ends[1]["metadata"]["reason"].as_str().unwrap();
    assert!(reason.contains("could not be delivered"), "{reason}");
}

#[tokio::test]
async fn a_task_outcome_asked_for_and_then_cancelled_or_left_at_shutdown_is_still_recorded() {
    // Found in review: a cancelled tasks/result dropped the call it asked about, so the
    // server's late answer (the call's real outcome) reached the client unscanned and
    // unrecorded; one still in flight at shutdown left no end either.
    let server = format!(
        r#"
import json, sys
lines = iter(sys.stdin)
for line in lines:
    m = json.loads(line)
    method = m.get("method")
    if method == "tools/call":
        out = {{"task": {{"taskId": "t-" + str(m["id"]), "status": "working", "createdAt": "2026-12-04T00:00:00Z", "ttl": 60000}}}}
    elif method == "tasks/result" and m["params"]["taskId"] == "t-1":
        next(lines)  # the cancellation
        out = {{"content": [{{"type": "text", "text": "charged {CARD}"}}]}}
    else:
        continue
    print(json.dumps({{"jsonrpc": "2.0", "id": m["id"], "result": out}}), flush=True)
"#
    );
    let store = TestStore::new("[risk]\nredact_results = true\n");
    let mut c = LineClient::spawn(store.proxy_command(&["python3", "-c", &server]));
    let task_call = |id: u32| {
        format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"tools/call\",\"params\":{{\"name\":\"pay\",\"arguments\":{{}},\"task\":{{\"ttl\":60000}}}}}}\n"
        )
    };
    let result_of = |id: &str, task: &str| {
        format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":\"{id}\",\"method\":\"tasks/result\",\"params\":{{\"taskId\":\"{task}\"}}}}\n"
        )
    };
    for id in [1, 2] {
        c.send(task_call(id).as_bytes()).await;
        let created = c.recv_json().await;
        assert_eq!(
            created["result"]["task"]["taskId"],
            format!("t-{id}"),
            "{created}"
        );
    }
    c.send(result_of("r1", "t-1").as_bytes()).await;
    c.send(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":{\"requestId\":\"r1\"}}\n")
        .await;
    let late = c.recv().await.unwrap();
    let text = String::from_utf8_lossy(&late);
    assert!(!text.contains(CARD), "{text}");
    assert!(text.contains("\"r1\""), "{text}");
    // The second task's outcome is asked for and never comes: the session ends first.
    c.send(result_of("r2", "t-2").as_bytes()).await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(c.finish().await.success());
    let events = store.events();
    let ends: Vec<(&Value, &Value)> = events
        .iter()
        .filter(|e| e["tool_name"] == "pay" && e["event_type"] != "tool_access")
        .map(|e| (&e["metadata"]["request_id"], &e["result"]))
        .collect();
    let outcomes = |id: u32| -> Vec<&Value> {
        ends.iter()
            .filter(|(r, _)| **r == json!(id))
            .map(|(_, o)| *o)
            .collect()
    };
    assert_eq!(outcomes(1), [&json!("task"), &json!("success")], "{ends:?}");
    assert_eq!(
        outcomes(2),
        [&json!("task"), &json!("shutdown")],
        "{ends:?}"
    );
}

#[tokio::test]
async fn a_secret_in_a_tool_name_or_a_request_id_is_never_stored_readable() {
    // Found by a fresh pair of eyes: arguments were protected, but a card number as the
    // request id and an AWS key id as the tool name were written to the journal in clear
    // (tool_name, metadata.request_id, risk_reasons, the alert's tool list).
    const KEY: &str = "AKIAIOSFODNN7EXAMPLE";
    let store = TestStore::new("");
    let mut c = common::initialized(&store).await;
    c.send(
        format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":\"{CARD}\",\"method\":\"tools/call\",\"params\":{{\"name\":\"{KEY}\",\"arguments\":{{}}}}}}\n"
        )
        .as_bytes(),
    )
    .await;
    let got = c.recv_json().await;
    assert_eq!(got["id"], CARD, "the client's id comes back as sent: {got}");
    // A card number as a numeric id, and as the string id of a call refused before it ran
    // (arguments not an object): the review found both stored in clear.
    const NUMERIC: &str = "4012888888881881";
    const REFUSED: &str = "378282246310005";
    c.send(
        format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":{NUMERIC},\"method\":\"tools/call\",\"params\":{{\"name\":\"echo\",\"arguments\":{{\"text\":\"hi\"}}}}}}\n"
        )
        .as_bytes(),
    )
    .await;
    let got = c.recv_json().await;
    assert_eq!(got["id"].to_string(), NUMERIC, "{got}");
    c.send(
        format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":\"{REFUSED}\",\"method\":\"tools/call\",\"params\":{{\"name\":\"echo\",\"arguments\":[1]}}}}\n"
        )
        .as_bytes(),
    )
    .await;
    let got = c.recv_json().await;
    assert_eq!(got["id"], REFUSED, "{got}");
    assert!(got["error"].is_object(), "refused: {got}");
    assert!(c.finish().await.success());
    let events = store.events();
    let pairs = pairs(&events);
    assert_eq!(pairs.len(), 3, "{events:#?}");
    assert!(
        events.iter().any(|e| e["result"] == "refused"),
        "{events:#?}"
    );
    let bytes = all_bytes(&store.store_dir());
    for secret in [CARD, KEY, NUMERIC, REFUSED] {
        assert!(!contains(&bytes, secret), "{secret} stored in clear");
    }
    assert!(
        pairs[0].0["tool_name"]
            .as_str()
            .unwrap()
            .contains("REDACTED"),
        "{}",
        pairs[0].0
    );
}

/// The policy of the default `proxy.toml`, for checks of what is stored or shown.
fn default_policy() -> std::sync::Arc<mcp_audit_proxy::policy::Policy> {
    mcp_audit_proxy::config::Config::parse(std::path::Path::new("/etc/mcp/proxy.toml"), "")
        .expect("the default configuration parses")
        .policy
}

#[test]
fn an_array_of_strings_keeps_its_length_and_its_other_strings_when_one_is_masked() {
    // Found by a real server (server-memory's `observations`): the array used to be merged
    // into one masked string, its other elements lost, in the trail and, under
    // `redact_results`, in the result the client saw.
    let policy = default_policy();
    let args = json!({
        "observations": ["likes tea", "email ann@example.com", "third"],
        "tags": ["x", "y@example.com"],
        "plain": ["p", "q"],
    });
    let (stored, classes) = policy.protect(&args).expect("an e-mail address is masked");
    assert_eq!(
        stored,
        json!({
            "observations": ["likes tea", "email [REDACTED:email]", "third"],
            "tags": ["x", "[REDACTED:email]"],
            "plain": ["p", "q"],
        })
    );
    assert_eq!(format!("{classes:?}"), "[Email]");

    let result = json!({"observations": ["likes tea", "mail me at ann@example.com", "third fact"]});
    let (shown, _) = policy.redact(&result).expect("masked for the client");
    assert_eq!(
        shown,
        json!({"observations": ["likes tea", "mail me at [REDACTED:email]", "third fact"]})
    );

    // Wherever the address stands among benign strings, only its own element changes.
    for len in 2..=8 {
        for at in 0..len {
            let items: Vec<String> = (0..len)
                .map(|i| {
                    if i == at {
                        format!("write to dev{i}@example.org")
                    } else {
                        format!("item{i}")
                    }
                })
                .collect();
            let (out, _) = policy.protect(&json!(items)).expect("masked");
            let out = out.as_array().expect("still an array").clone();
            assert_eq!(out.len(), len, "{items:?} -> {out:?}");
            for (i, (before, after)) in items.iter().zip(&out).enumerate() {
                if i == at {
                    assert_eq!(after, "write to [REDACTED:email]", "{items:?}");
                } else {
                    assert_eq!(after, before, "{items:?} -> {out:?}");
                }
            }
        }
    }
}

#[test]
fn a_secret_split_across_array_elements_is_masked_piece_by_piece() {
    let policy = default_policy();
    let aws = "AKIAIOSFODNN7EXAMPLE";
    for cut in [4, 8, 12, 16] {
        let (head, tail) = aws.split_at(cut);
        let args = json!({"parts": [head, tail], "labelled": ["key: ", head, tail, " (prod)"]});
        let (stored, _) = policy.protect(&args).expect("a split key is masked");
        assert_eq!(
            stored["parts"].as_array().map(Vec::len),
            Some(2),
            "{stored}"
        );
        let labelled = stored["labelled"].as_array().expect("still an array");
        assert_eq!(labelled.len(), 4, "{stored}");
        assert_eq!(labelled[0], "key: ", "{stored}");
        assert_eq!(labelled[3], " (prod)", "{stored}");
        let text = stored.to_string();
        assert!(
            !text.contains(head) && !text.contains(tail),
            "no piece of the key is kept: {stored}"
        );
    }
}

#[test]
fn a_secret_found_by_its_neighbours_in_an_array_is_never_stored() {
    // From a review of the array rewrite: values whose label is in the string before, a
    // secret running on from a labelled one, and a PEM key sent as an array of lines were
    // left in clear (the call still tagged `secret`).
    let policy = default_policy();
    let body = [
        "MIIEowIBAAKCAQEAx2Zq9wYvK3m8aT1cN5fBpQ7rLdE4sHjW0uVgXyZo6iMnKbRt",
        "p3QeLs8wFjC2vNhA9gUdT5xYk1mOrPzI7lSbHcE4GaWqJ0nVtR6uXyD3fKoM8iLs",
    ];
    let cases = [
        (json!(["password=", "Tr0ub4dor&3x"]), vec!["Tr0ub4dor&3x"]),
        (
            json!(["password: hunter2", "xyzzy42"]),
            vec!["hunter2", "xyzzy42"],
        ),
        (
            json!([
                "-----BEGIN RSA PRIVATE KEY-----",
                body[0],
                body[1],
                "-----END RSA PRIVATE KEY-----"
            ]),
            body.to_vec(),
        ),
    ];
    for (value, secrets) in cases {
        let items = value.as_array().unwrap().len();
        let (stored, classes) = policy
            .protect(&json!({ "lines": value }))
            .unwrap_or_else(|| panic!("nothing masked in {value}"));
        assert_eq!(format!("{classes:?}"), "[Secret]", "{stored}");
        let lines = stored["lines"].as_array().expect("still an array");
        assert_eq!(lines.len(), items, "{stored}");
        let text = stored.to_string();
        for secret in secrets {
            assert!(!text.contains(secret), "{secret} kept in {stored}");
        }
    }
}

/// Found by a hostile pass (helper-59 F7): a task the client cancelled (`tasks/cancel`) ended
/// in the trail as `jsonrpc_error` (the error its pending `tasks/result` got), or not at all
/// when no `tasks/result` was waiting. Checked: no `tasks/result` waiting (a); one waiting,
/// failed before the cancel is answered (b); one the client itself cancelled, failed after
/// the cancel is answered (c): each call ends once, `cancelled`.
#[tokio::test]
async fn a_task_the_client_cancels_ends_cancelled_in_the_trail() {
    let server = r#"
import json, sys
waiting = {}
for line in sys.stdin:
    m = json.loads(line)
    method = m.get("method")
    if method == "tools/call":
        tid = m["params"]["arguments"]["task"]
        print(json.dumps({"jsonrpc": "2.0", "id": m["id"], "result": {"task": {"taskId": tid, "status": "working", "createdAt": "2026-12-03T00:00:00Z", "ttl": 60000}}}), flush=True)
    elif method == "tasks/result":
        waiting[m["params"]["taskId"]] = m["id"]
    elif method == "tasks/cancel":
        tid = m["params"]["taskId"]
        failed = {"jsonrpc": "2.0", "id": waiting.pop(tid, None), "error": {"code": -32603, "message": "task cancelled"}}
        done = {"jsonrpc": "2.0", "id": m["id"], "result": {"taskId": tid, "status": "cancelled", "createdAt": "2026-12-03T00:00:00Z", "ttl": 60000}}
        # b: the pending tasks/result fails first; c: the cancel is answered first.
        for out in ([failed, done] if tid == "b" else [done, failed]):
            if out["id"] is not None:
                print(json.dumps(out), flush=True)
"#;
    let store = TestStore::new("");
    let mut c = LineClient::spawn(store.proxy_command(&["python3", "-c", server]));
    let call = |id: u32, task: &str| {
        format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"tools/call\",\"params\":{{\"name\":\"slow_{task}\",\"arguments\":{{\"task\":\"{task}\"}},\"task\":{{\"ttl\":60000}}}}}}\n"
        )
    };
    // Task a: cancelled while nobody waits on tasks/result.
    c.send(call(1, "a").as_bytes()).await;
    assert_eq!(c.recv_json().await["result"]["task"]["taskId"], "a");
    c.send(b"{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tasks/cancel\",\"params\":{\"taskId\":\"a\"}}\n")
        .await;
    let cancelled = c.recv_json().await;
    assert_eq!(cancelled["result"]["status"], "cancelled", "{cancelled}");
    // Task b: its tasks/result waits, and fails when the cancel takes effect.
    c.send(call(3, "b").as_bytes()).await;
    assert_eq!(c.recv_json().await["result"]["task"]["taskId"], "b");
    c.send(b"{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"tasks/result\",\"params\":{\"taskId\":\"b\"}}\n")
        .await;
    c.send(b"{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"tasks/cancel\",\"params\":{\"taskId\":\"b\"}}\n")
        .await;
    let (x, y) = (c.recv_json().await, c.recv_json().await);
    assert_eq!(
        (x["id"].clone(), y["id"].clone()),
        (json!(4), json!(5)),
        "{x} {y}"
    );
    // Task c: the client gives up on its tasks/result, then cancels the task.
    c.send(call(6, "c").as_bytes()).await;
    assert_eq!(c.recv_json().await["result"]["task"]["taskId"], "c");
    c.send(b"{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tasks/result\",\"params\":{\"taskId\":\"c\"}}\n")
        .await;
    c.send(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":{\"requestId\":7}}\n")
        .await;
    c.send(b"{\"jsonrpc\":\"2.0\",\"id\":8,\"method\":\"tasks/cancel\",\"params\":{\"taskId\":\"c\"}}\n")
        .await;
    let (x, y) = (c.recv_json().await, c.recv_json().await);
    assert_eq!(
        (x["id"].clone(), y["id"].clone()),
        (json!(8), json!(7)),
        "{x} {y}"
    );
    assert!(c.finish().await.success());
    let events = store.events();
    for tool in ["slow_a", "slow_b", "slow_c"] {
        let ends: Vec<(&str, &str)> = events
            .iter()
            .filter(|e| e["tool_name"] == tool && e["event_type"] != "tool_access")
            .map(|e| {
                (
                    e["event_type"].as_str().unwrap(),
                    e["result"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            ends,
            [("tool_execution", "task"), ("tool_failure", "cancelled")],
            "{tool}: {events:#?}"
        );
    }
}

#[tokio::test]
async fn a_2026_task_has_its_outcome_recorded_from_tasks_get() {
    // Found by a hostile pass (helper-74): in the 2026-07-28 Tasks extension (SEP-2663) a
    // call's task is created flat (`resultType: "task"`, `taskId`) and its outcome comes in a
    // `tasks/get` answer at a terminal status, not from `tasks/result`: the trail ended at
    // `task` for ever, and the result reached the client unmasked under redact_results.
    let server = format!(
        r#"
import json, sys
polls = 0
for line in sys.stdin:
    m = json.loads(line)
    method = m.get("method")
    if method == "tools/call":
        name = m["params"]["name"]
        out = {{"resultType": "task", "taskId": name, "status": "working",
               "createdAt": "2026-12-06T00:00:00Z", "lastUpdatedAt": "2026-12-06T00:00:00Z",
               "ttlMs": 60000}}
    elif method == "tasks/cancel":
        out = {{"resultType": "complete"}}
    elif method == "tasks/get":
        task = m["params"]["taskId"]
        polls += 1
        out = {{"resultType": "complete", "taskId": task, "createdAt": "2026-12-06T00:00:00Z",
               "lastUpdatedAt": "2026-12-06T00:00:01Z", "ttlMs": 60000}}
        if task == "pay" and polls == 1:
            out["status"] = "working"
        elif task == "pay":
            out["status"] = "completed"
            out["result"] = {{"content": [{{"type": "text", "text": "charged {CARD}"}}]}}
        elif task in ("stop", "halt"):
            out["status"] = "cancelled"
        elif task == "late":
            out["status"] = "completed"
            out["result"] = {{"content": [{{"type": "text", "text": "done before the cancel"}}]}}
        else:
            out["status"] = "failed"
            out["error"] = {{"code": -32603, "message": "broke"}}
    else:
        continue
    print(json.dumps({{"jsonrpc": "2.0", "id": m["id"], "result": out}}), flush=True)
"#
    );
    let store = TestStore::new("[risk]\nredact_results = true\n");
    let mut c = LineClient::spawn(store.proxy_command(&["python3", "-c", &server]));
    let mut next = 1;
    let mut ask = async |c: &mut LineClient, method: &str, mut params: Value| -> Value {
        params["_meta"] = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28"});
        let line = json!({"jsonrpc": "2.0", "id": next, "method": method, "params": params});
        next += 1;
        c.send(format!("{line}\n").as_bytes()).await;
        c.recv_json().await
    };
    for tool in ["pay", "stop", "fail", "halt", "late"] {
        let created = ask(&mut c, "tools/call", json!({"name": tool, "arguments": {}})).await;
        assert_eq!(created["result"]["taskId"], tool, "{created}");
    }
    let working = ask(&mut c, "tasks/get", json!({"taskId": "pay"})).await;
    assert_eq!(working["result"]["status"], "working", "{working}");
    let done = ask(&mut c, "tasks/get", json!({"taskId": "pay"})).await;
    assert_eq!(done["result"]["status"], "completed", "{done}");
    assert_eq!(done["result"]["taskId"], "pay", "{done}");
    assert_eq!(
        done["result"]["result"]["content"][0]["text"], "charged [REDACTED:payment_card]",
        "{done}"
    );
    let again = ask(&mut c, "tasks/get", json!({"taskId": "pay"})).await;
    assert!(!again.to_string().contains(CARD), "{again}");
    // Each poll of a cancelled task says so again; it ended once.
    for tool in ["stop", "stop", "fail"] {
        ask(&mut c, "tasks/get", json!({"taskId": tool})).await;
    }
    // In the extension a tasks/cancel's acknowledgement is not the cancellation (the task
    // may still complete): the tasks/get saying `cancelled` is, the client's doing.
    ask(&mut c, "tasks/cancel", json!({"taskId": "halt"})).await;
    ask(&mut c, "tasks/get", json!({"taskId": "halt"})).await;
    // And a task asked to cancel may complete all the same: that is its end.
    ask(&mut c, "tasks/cancel", json!({"taskId": "late"})).await;
    ask(&mut c, "tasks/get", json!({"taskId": "late"})).await;
    assert!(c.finish().await.success());
    let events = store.events();
    let of = |tool: &str| -> Vec<(String, String)> {
        events
            .iter()
            .filter(|e| e["tool_name"] == tool)
            .map(|e| {
                (
                    e["event_type"].as_str().unwrap().to_string(),
                    e["result"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
    assert_eq!(
        of("pay"),
        [
            pair("tool_access", "initiated"),
            pair("tool_execution", "task"),
            pair("tool_execution", "success"),
            pair("tool_execution", "success"),
        ],
        "{events:#?}"
    );
    assert_eq!(
        of("stop"),
        [
            pair("tool_access", "initiated"),
            pair("tool_execution", "task"),
            pair("tool_failure", "cancelled"),
        ]
    );
    assert_eq!(
        of("halt"),
        [
            pair("tool_access", "initiated"),
            pair("tool_execution", "task"),
            pair("tool_failure", "cancelled"),
        ]
    );
    assert_eq!(
        of("late"),
        [
            pair("tool_access", "initiated"),
            pair("tool_execution", "task"),
            pair("tool_execution", "success"),
        ]
    );
    let side = |tool: &str| {
        events
            .iter()
            .find(|e| e["tool_name"] == tool && e["result"] == "cancelled")
            .map(|e| e["metadata"]["failure_side"].clone())
    };
    assert_eq!(side("halt"), Some(json!("client")));
    assert_eq!(side("stop"), Some(json!("upstream")));
    assert_eq!(
        of("fail"),
        [
            pair("tool_access", "initiated"),
            pair("tool_execution", "task"),
            pair("tool_failure", "jsonrpc_error"),
        ]
    );
    let pay: Vec<&Value> = events
        .iter()
        .filter(|e| e["tool_name"] == "pay" && e["result"] == "success")
        .collect();
    let first = pay[0]["metadata"]["reason"].as_str().unwrap();
    assert!(
        first.contains("tasks/get") && !first.contains("again"),
        "{first}"
    );
    assert!(
        pay[0]["compliance_tags"]
            .as_array()
            .unwrap()
            .contains(&json!("pci_dss")),
        "{:#}",
        pay[0]
    );
    let repeat = pay[1]["metadata"]["reason"].as_str().unwrap();
    assert!(
        repeat.contains("fetched again") && repeat.contains(pay[0]["event_id"].as_str().unwrap()),
        "{repeat}"
    );
}

/// helper-108 F2: a card number written digit by digit as `\u` escapes inside JSON in a
/// string argument (what FastMCP decodes for a parameter that is not a string) reached the
/// server as the number, and was stored readable, untagged and unscored.
#[tokio::test]
async fn a_card_number_behind_the_escapes_of_json_in_a_string_is_tagged_and_masked() {
    let store = TestStore::new("");
    let mut c = common::initialized(&store).await;
    let escaped: String = "4111111111111111"
        .chars()
        .map(|d| format!("\\u{:04x}", u32::from(d)))
        .collect();
    // The argument's text holds the escapes themselves (the JSON inside the string).
    let inner = format!(r#"[{{"path":"/srv/data/a","card":"{escaped}"}}]"#);
    c.send(&call_line(json!(1), "echo", json!({"text": inner})))
        .await;
    let reply = c.recv_json().await;
    assert_eq!(reply["result"]["content"][0]["text"], inner, "{reply}");
    assert!(c.finish().await.success());

    let events = store.events();
    let pairs = pairs(&events);
    let (access, _) = &pairs[0];
    assert_eq!(access["compliance_tags"], json!(["pci_dss"]), "{access}");
    assert_eq!(access["metadata"]["redacted"], json!(["payment_card"]));
    // Stored as the JSON it decodes to, masked there.
    let stored = access["metadata"]["arguments"]["text"].as_str().unwrap();
    let decoded: Value = serde_json::from_str(stored).unwrap();
    assert_eq!(
        decoded,
        json!([{"path": "/srv/data/a", "card": "[REDACTED:payment_card]"}])
    );
    let bytes = all_bytes(&store.store_dir());
    for needle in [
        "4111111111111111",
        "u0034\\\\u0031\\\\u0031",
        "u0034\\u0031\\u0031",
    ] {
        assert!(!contains(&bytes, needle), "{needle} is stored readable");
    }
}

#[tokio::test]
async fn redact_results_keeps_binary_content_base64_and_loses_no_member() {
    // helper-120 F1: two keys masked to one text were merged into one member (data lost),
    // and a base64 image holding a card number became a marker no client's schema accepts.
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let image = b64.encode(format!("PNG... card {CARD} ..."));
    // helper-121 F6: URL-safe unpadded base64 too.
    let audio = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(format!("RIFF\u{fb}\u{ff} card {CARD} ?"));
    let server = format!(
        r#"
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if "id" not in m:
        continue
    text = json.dumps({{"card": int("{CARD}".replace(" ", "")), "owner": "bob@example.com"}})
    keys = json.dumps({{"bob@example.com": 1, "carol@example.com": 2}})
    # MIME line-wrapped base64, the card across a line break (helper-123 R1).
    import base64
    wrapped = base64.encodebytes(b"x" * 50 + b" card {CARD} end").decode()
    # A log's `data` is text, though this one happens to be valid base64.
    print(json.dumps({{"jsonrpc": "2.0", "method": "notifications/message",
                      "params": {{"level": "info", "data": "{CARD}".replace(" ", "")}}}}), flush=True)
    out = {{"result": {{"content": [{{"type": "image", "mimeType": "image/png", "data": "{image}"}},
                                   {{"type": "text", "text": text}},
                                   {{"type": "text", "text": keys}},
                                   {{"type": "audio", "mimeType": "audio/wav", "data": "{audio}"}},
                                   {{"type": "image", "mimeType": "image/png", "data": wrapped}}],
                       "structuredContent": {{"bob@example.com": 1, "carol@example.com": 2, "n": 3}}}}}}
    out.update(jsonrpc="2.0", id=m["id"])
    print(json.dumps(out), flush=True)
"#
    );
    let store = TestStore::new("[risk]\nredact_results = true\n");
    let mut c = LineClient::spawn(store.proxy_command(&["python3", "-c", &server]));
    c.send(&call_line(json!(1), "t", json!({}))).await;
    let logged = c.recv_json().await;
    let got = c.recv_json().await;
    assert!(c.finish().await.success());
    assert_eq!(
        logged["params"]["data"], "[REDACTED:payment_card]",
        "{logged}"
    );
    let keys: Value =
        serde_json::from_str(got["result"]["content"][2]["text"].as_str().unwrap()).unwrap();
    assert_eq!(keys.as_object().unwrap().len(), 2, "{got}");
    let audio = got["result"]["content"][3]["data"].as_str().unwrap();
    let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(audio)
        .unwrap_or_else(|e| panic!("{e}: {audio}"));
    assert!(!String::from_utf8_lossy(&decoded).contains(CARD));
    let wrapped: String = got["result"]["content"][4]["data"]
        .as_str()
        .unwrap()
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let decoded = b64
        .decode(&wrapped)
        .unwrap_or_else(|e| panic!("{e}: {wrapped}"));
    assert!(
        !String::from_utf8_lossy(&decoded).contains(CARD),
        "{}",
        String::from_utf8_lossy(&decoded)
    );
    let structured = got["result"]["structuredContent"].as_object().unwrap();
    assert_eq!(structured.len(), 3, "{got}");
    assert!(!got.to_string().contains("example.com"), "{got}");
    let mut values: Vec<i64> = structured.values().filter_map(Value::as_i64).collect();
    values.sort();
    assert_eq!(values, [1, 2, 3], "{got}");
    let data = got["result"]["content"][0]["data"].as_str().unwrap();
    let decoded = b64.decode(data).expect("still base64");
    let decoded = String::from_utf8_lossy(&decoded);
    assert!(
        decoded.contains("[REDACTED:payment_card]") && !decoded.contains(CARD),
        "{decoded}"
    );
    assert_eq!(got["result"]["content"][0]["mimeType"], "image/png");
    // JSON in a text item stays JSON (the marker quoted), masked.
    let text = got["result"]["content"][1]["text"].as_str().unwrap();
    let inner: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(inner["card"], "[REDACTED:payment_card]", "{text}");
    assert_eq!(inner["owner"], "[REDACTED:email]", "{text}");
}
