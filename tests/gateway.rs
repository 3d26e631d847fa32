//! The HTTP gateway end to end, through the real binary: rmcp Streamable HTTP clients in front
//! of the example server (stdio child per session), API keys, refusals recorded with their
//! HTTP status, sessions bound to their principal, TLS, and a graceful shutdown under load.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::gateway::*;
use common::proxy_bin;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rmcp_http_client_calls_tools_through_the_gateway_and_every_call_is_paired() {
    let gw = Gateway::start("");
    let client = connect(&gw.endpoint(), ALICE_KEY).await;
    let tools = client.list_all_tools().await.unwrap();
    assert!(tools.iter().any(|t| t.name == "echo"), "{tools:?}");
    let result = client
        .call_tool(call("echo", json!({"text": "through the gateway"})))
        .await
        .unwrap();
    assert_eq!(text_of(&result), "through the gateway");
    let sum = client
        .call_tool(call("add", json!({"a": 2, "b": 40})))
        .await
        .unwrap();
    assert_eq!(text_of(&sum), "42");
    client.cancel().await.unwrap();

    let events = gw.events();
    let calls: Vec<&Value> = events
        .iter()
        .filter(|e| e["action"] == "tools/call")
        .collect();
    assert_eq!(calls.len(), 4, "{events:#?}");
    for e in &calls {
        assert_eq!(e["user_id"], "alice");
        assert_eq!(e["upstream"], "example");
        assert_eq!(e["metadata"]["auth_method"], "api_key");
        assert_eq!(e["metadata"]["http"]["client_address"], "127.0.0.1");
        assert_eq!(e["metadata"]["http"]["roles"], json!(["ops"]));
        assert_eq!(e["session_id"], calls[0]["session_id"]);
    }
    assert_eq!(calls[0]["event_type"], "tool_access");
    assert_eq!(calls[1]["event_type"], "tool_execution");
    assert_eq!(calls[1]["linked_event_id"], calls[0]["event_id"]);
    assert_eq!(calls[1]["result"], "success");
    assert_eq!(
        calls[0]["metadata"]["arguments"]["text"],
        "through the gateway"
    );

    // In sync mode each access event waited for an fdatasync: /metrics times them.
    let metrics = gw.metrics().await;
    let value = |name: &str| sample(&metrics, name);
    assert!(
        metrics.contains("# TYPE mcp_gateway_journal_sync_seconds histogram"),
        "{metrics}"
    );
    let syncs = value("mcp_gateway_journal_sync_seconds_count");
    assert!(syncs >= 2.0, "{metrics}");
    assert_eq!(
        value("mcp_gateway_journal_sync_seconds_bucket{le=\"+Inf\"}"),
        syncs
    );
    assert!(
        value("mcp_gateway_journal_sync_seconds_sum") > 0.0,
        "{metrics}"
    );
    assert_eq!(
        value("mcp_gateway_tool_calls_total{upstream=\"example\"}"),
        2.0,
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_blocks_through_the_gateway_as_through_stdio() {
    let gw = Gateway::start(
        r#"
[[risk.rule]]
name = "shell in echo"
tools = ["echo"]
pointer = "/text"
detect = "shell_metacharacters"
level = "critical"
"#,
    );
    let client = connect(&gw.endpoint(), BOB_KEY).await;
    let err = client
        .call_tool(call("echo", json!({"text": "x; rm -rf /"})))
        .await
        .unwrap_err();
    assert!(format!("{err:?}").contains("-32010"), "{err:?}");
    client.cancel().await.unwrap();
    let events = gw.events();
    let blocked: Vec<&Value> = events.iter().filter(|e| e["result"] == "blocked").collect();
    assert_eq!(blocked.len(), 2, "{events:#?}");
    assert_eq!(blocked[0]["user_id"], "bob");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_is_answered_with_its_status_and_recorded() {
    let gw = Gateway::start("");
    let url = gw.endpoint();
    // No credential: 401 naming the protected resource metadata (RFC 9728).
    let (status, headers, _) = post(&url, None, None, INIT, &[]).await;
    assert_eq!(status, 401);
    let challenge = headers["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.contains("resource_metadata=\"http://127.0.0.1:")
            && challenge.contains("/.well-known/oauth-protected-resource/mcp/example\""),
        "{challenge}"
    );
    let metadata: Value = http()
        .get(format!(
            "{}/.well-known/oauth-protected-resource/mcp/example",
            gw.url
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(metadata["resource"], url);
    // A wrong key, and an identity claimed by header only.
    let (status, headers, _) = post(&url, Some("not-a-key"), None, INIT, &[]).await;
    assert_eq!(status, 401);
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
    let (status, _, _) = post(&url, None, None, INIT, &[("x-user", "alice")]).await;
    assert_eq!(status, 401);
    // Origin and Host (DNS rebinding).
    for (header, expected) in [
        (("origin", "https://evil.example"), 403),
        (("origin", "https://app.example.com"), 200),
        (("host", "evil.example:80"), 403),
    ] {
        let (status, _, _) = post(&url, Some(ALICE_KEY), None, INIT, &[header]).await;
        assert_eq!(status, expected, "{header:?}");
    }
    // Twice, even a listed one beside another: 400, as documented (it was a 403).
    let two = [
        ("origin", "https://app.example.com"),
        ("origin", "https://evil.example"),
    ];
    let (status, _, body) = post(&url, Some(ALICE_KEY), None, INIT, &two).await;
    assert_eq!(status, 400, "{body}");
    // Sessions: required after initialize, bound to their principal.
    let alice = raw_session(&url, ALICE_KEY).await;
    let list = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;
    let (status, _, _) = post(&url, Some(ALICE_KEY), None, list, &[]).await;
    assert_eq!(status, 400);
    let (status, _, body) = post(&url, Some(BOB_KEY), Some(&alice), list, &[]).await;
    assert_eq!(status, 404, "{body}");
    let (status, _, body) = post(&url, Some(ALICE_KEY), Some(&alice), list, &[]).await;
    assert_eq!(status, 200, "{body}");
    assert!(messages(&body)[0]["result"]["tools"].is_array(), "{body}");
    // An unsupported protocol version, an oversized body.
    let (status, _, _) = post(
        &url,
        Some(ALICE_KEY),
        None,
        INIT,
        &[("mcp-protocol-version", "1999-01-01")],
    )
    .await;
    assert_eq!(status, 400);
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"{}"}}}}}}"#,
        "x".repeat(70_000)
    );
    let (status, _, _) = post(&url, Some(ALICE_KEY), Some(&alice), &big, &[]).await;
    assert_eq!(status, 413);
    // One whose head (all that is read of it) is padding: the 2026-07-28 headers say what
    // it is.
    let padded = format!(
        r#"{{"pad":"{}","jsonrpc":"2.0","id":33,"method":"tools/call","params":{{"name":"echo","arguments":{{}}}}}}"#,
        "x".repeat(2_000_000)
    );
    let headers = [
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "echo"),
    ];
    let (status, _, _) = post(&url, Some(ALICE_KEY), None, &padded, &headers).await;
    assert_eq!(status, 413);
    // One whose method comes after 2 MB of arguments (JSON members have no order) and that
    // has no 2026-07-28 headers: its head names only the tool (review helper-106 7a).
    let method_last = format!(
        r#"{{"jsonrpc":"2.0","id":34,"params":{{"name":"echo","arguments":{{"text":"{}"}}}},"method":"tools/call"}}"#,
        "x".repeat(2_000_000)
    );
    let (status, _, _) = post(&url, Some(ALICE_KEY), Some(&alice), &method_last, &[]).await;
    assert_eq!(status, 413);
    // An id-less tools/call: never forwarded, recorded, answered 400 (no id to answer).
    let (status, _, body) = post(
        &url,
        Some(ALICE_KEY),
        Some(&alice),
        r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"echo","arguments":{"text":"sneaky"}}}"#,
        &[],
    )
    .await;
    assert_eq!(status, 400, "{body}");
    // DELETE ends the session; it is gone afterwards.
    let resp = http()
        .delete(&url)
        .header("authorization", format!("Bearer {ALICE_KEY}"))
        .header("mcp-session-id", &alice)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let (status, _, _) = post(&url, Some(ALICE_KEY), Some(&alice), list, &[]).await;
    assert_eq!(status, 404);

    let events = gw.events();
    let refused: Vec<(u64, &str)> = events
        .iter()
        .filter(|e| e["result"] == "refused")
        .filter_map(|e| {
            Some((
                e["metadata"]["http"]["status_code"].as_u64()?,
                e["user_id"].as_str()?,
            ))
        })
        .collect();
    for expected in [
        (401, "unauthenticated"),
        (403, "unauthenticated"),
        (400, "alice"),
        (404, "bob"),
        (413, "alice"),
        (404, "alice"),
    ] {
        assert!(
            refused.contains(&expected),
            "{expected:?} missing from {refused:?}"
        );
    }
    assert_eq!(
        refused.iter().filter(|r| r.0 == 401).count(),
        3,
        "{refused:?}"
    );
    assert_eq!(
        refused.iter().filter(|r| r.0 == 403).count(),
        2,
        "{refused:?}"
    );
    // The id-less call is in the trail as refused, naming its tool, and never ran.
    let sneaky: Vec<&Value> = events
        .iter()
        .filter(|e| e["tool_name"] == "echo" && e["result"] == "refused")
        .collect();
    assert!(!sneaky.is_empty(), "{events:#?}");
    assert!(
        !events
            .iter()
            .any(|e| e["result"] == "success" && e["tool_name"] == "echo"),
        "the id-less call ran"
    );
    // The oversized call, whose body was never kept, is an access and its end naming its
    // tool and id (read as the body came).
    let oversized: Vec<(&Value, &Value, &Value)> = events
        .iter()
        .filter(|e| e["metadata"]["request_id"] == 3 && e["result"] == "refused")
        .map(|e| {
            (
                &e["event_type"],
                &e["tool_name"],
                &e["metadata"]["http"]["status_code"],
            )
        })
        .collect();
    assert_eq!(
        oversized,
        [
            (&json!("tool_access"), &json!("echo"), &Value::Null),
            (&json!("tool_failure"), &json!("echo"), &json!(413)),
        ],
        "{events:#?}"
    );
    // In the session its Mcp-Session-Id names, as the calls read whole are (review
    // helper-106 7c).
    assert!(
        events
            .iter()
            .filter(|e| e["metadata"]["request_id"] == 3 && e["result"] == "refused")
            .all(|e| e["session_id"] == json!(alice)),
        "{events:#?}"
    );
    // The one whose method came too late: a call by its params.name, and the reason says
    // that is what the record rests on.
    let late: Vec<&Value> = events
        .iter()
        .filter(|e| e["metadata"]["request_id"] == 34 && e["result"] == "refused")
        .collect();
    assert_eq!(
        late.iter()
            .map(|e| (&e["event_type"], &e["tool_name"]))
            .collect::<Vec<_>>(),
        [
            (&json!("tool_access"), &json!("echo")),
            (&json!("tool_failure"), &json!("echo")),
        ],
        "{events:#?}"
    );
    assert!(
        late[1]["metadata"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("by its params.name")),
        "{:#?}",
        late[1]
    );
    let padded: Vec<&Value> = events
        .iter()
        .filter(|e| {
            e["event_type"] == "tool_failure"
                && e["metadata"]["http"]["status_code"] == 413
                && e["tool_name"] == "echo"
                && e["metadata"]["request_id"].is_null()
        })
        .collect();
    assert_eq!(padded.len(), 1, "{events:#?}");
    // Its tool is the client's word, and the record says so (review helper-106 7b).
    assert!(
        padded[0]["metadata"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("Mcp-Name headers name (the client's word)")),
        "{:#?}",
        padded[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_call_in_flight_finishes_when_the_gateway_is_stopped() {
    let gw = Gateway::start("");
    let client = connect(&gw.endpoint(), ALICE_KEY).await;
    let slow = tokio::spawn(async move {
        let r = client
            .call_tool(call("slow", json!({"ms": 1500, "steps": 3})))
            .await;
        (r, client)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, gw) = tokio::task::spawn_blocking(move || gw.stop())
        .await
        .unwrap();
    let (result, _client) = slow.await.unwrap();
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(status.code(), Some(0), "{status:?}");
    let events = gw.events();
    let ends: Vec<&Value> = events
        .iter()
        .filter(|e| e["tool_name"] == "slow" && e["event_type"] == "tool_execution")
        .collect();
    assert_eq!(ends.len(), 1, "{events:#?}");
    assert_eq!(ends[0]["result"], "success");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_serves_tls_with_a_certificate_from_the_config() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cert.pem"), cert.cert.pem()).unwrap();
    std::fs::write(dir.path().join("key.pem"), cert.signing_key.serialize_pem()).unwrap();
    let gw = Gateway::start(&format!(
        "[gateway.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        dir.path().join("cert.pem").display(),
        dir.path().join("key.pem").display()
    ));
    assert!(gw.url.starts_with("https://"), "{}", gw.url);
    let port = gw.url.rsplit(':').next().unwrap().parse::<u16>().unwrap();

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut stream = connector.connect(name, tcp).await.unwrap();
    let request = format!(
        "POST /mcp/example HTTP/1.1\r\nHost: localhost:{port}\r\nAuthorization: Bearer {ALICE_KEY}\r\nContent-Type: application/json\r\nAccept: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{INIT}",
        INIT.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .unwrap_or_default();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"serverInfo\""), "{response}");
    // Plain HTTP on the TLS port gets nothing.
    let plain = http()
        .post(format!("http://127.0.0.1:{port}/mcp/example"))
        .body(INIT)
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
}

#[test]
fn the_gateway_refuses_to_start_without_credentials_or_with_a_bad_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("proxy.toml");
    std::fs::write(
        &config,
        "[[upstream]]\nname = \"a\"\ncommand = [\"true\"]\n[gateway]\nlisten = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(proxy_bin())
        .args(["gateway", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no credentials configured") && err.contains("hint:"),
        "{err}"
    );

    std::fs::write(dir.path().join("cert.pem"), "not a certificate").unwrap();
    std::fs::write(
        &config,
        "[[upstream]]\nname = \"a\"\ncommand = [\"true\"]\n[gateway]\nlisten = \"127.0.0.1:0\"\nallow_anonymous = true\n[gateway.tls]\ncert = \"cert.pem\"\nkey = \"cert.pem\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(proxy_bin())
        .args(["gateway", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cert.pem") && err.contains("hint:"), "{err}");

    std::fs::write(
        &config,
        "[[upstream]]\nname = \"a b\"\ncommand = [\"true\"]\n",
    )
    .unwrap();
    let out = std::process::Command::new(proxy_bin())
        .args(["gateway", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(":2:") && err.contains("URL path segment"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_requests_reach_the_client_on_the_post_stream_and_2026_clients_need_no_session() {
    let gw = Gateway::start("");
    // 2025: the server's elicitation/create arrives on the POST's SSE stream and its answer
    // goes back as a POST of its own.
    let client = connect(&gw.endpoint(), ALICE_KEY).await;
    let confirmed = client
        .call_tool(call("confirm", json!({"action": "deploy"})))
        .await
        .unwrap();
    let text = text_of(&confirmed);
    assert!(text.as_str().unwrap().contains("confirmed"), "{text}");
    client.cancel().await.unwrap();
    // 2026-07-28: server/discover and calls without a session, each request on its own.
    let client = connect_2026(&gw.endpoint(), BOB_KEY).await;
    let echoed = client
        .call_tool(call("echo", json!({"text": "sessionless"})))
        .await
        .unwrap();
    assert_eq!(text_of(&echoed), "sessionless");
    client.cancel().await.unwrap();

    let events = gw.events();
    let bob: Vec<&Value> = events
        .iter()
        .filter(|e| e["user_id"] == "bob" && e["tool_name"] == "echo")
        .collect();
    assert_eq!(bob.len(), 2, "{events:#?}");
    assert_eq!(bob[0]["metadata"]["protocol_era"], "2026");
    assert_eq!(bob[1]["result"], "success");
    let alice: Vec<&Value> = events
        .iter()
        .filter(|e| e["user_id"] == "alice" && e["tool_name"] == "confirm")
        .collect();
    assert_eq!(alice.len(), 2, "{events:#?}");
    assert_eq!(alice[1]["result"], "success");
    // The person's answer to the server's question is an event of its own (2025 revisions).
    let asked = events.iter().find(|e| e["event_type"] == "server_request");
    let asked = asked.unwrap_or_else(|| panic!("{events:#?}"));
    assert_eq!(
        (&asked["user_id"], &asked["action"]),
        (&json!("alice"), &json!("elicitation/create"))
    );
    assert_eq!(
        asked["metadata"]["input_responses"]["result"]["action"], "accept",
        "{asked}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_dies_mid_call_fails_the_call_and_the_next_session_gets_a_new_one() {
    let gw = Gateway::start("");
    let client = connect(&gw.endpoint(), ALICE_KEY).await;
    let err = client
        .call_tool(call("crash", json!({"after_ms": 100, "status": 3})))
        .await
        .unwrap_err();
    assert!(format!("{err:?}").contains("-32603"), "{err:?}");
    drop(client);
    let client = connect(&gw.endpoint(), ALICE_KEY).await;
    let ok = client
        .call_tool(call("echo", json!({"text": "again"})))
        .await
        .unwrap();
    assert_eq!(text_of(&ok), "again");
    client.cancel().await.unwrap();
    let events = gw.events();
    let crash: Vec<&Value> = events
        .iter()
        .filter(|e| e["tool_name"] == "crash")
        .collect();
    assert_eq!(crash.len(), 2, "{events:#?}");
    assert_eq!(crash[1]["result"], "server_exit", "{:#?}", crash[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_sessions_each_get_their_own_answers() {
    let gw = Gateway::start_with("max_sessions_per_principal = 200", "");
    let url = gw.endpoint();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let key = if i % 2 == 0 { ALICE_KEY } else { BOB_KEY };
            let session = raw_session(&url, key).await;
            let body = format!(
                r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"session {i}"}}}}}}"#
            );
            let (status, _, text) = post(&url, Some(key), Some(&session), &body, &[]).await;
            assert_eq!(status, 200, "{text}");
            let reply = messages(&text).pop().unwrap();
            assert_eq!(reply["id"], 7);
            assert_eq!(reply["result"]["content"][0]["text"], format!("session {i}"));
            session
        }));
    }
    let mut sessions = std::collections::HashSet::new();
    for t in tasks {
        sessions.insert(t.await.unwrap());
    }
    assert_eq!(sessions.len(), 200);
    let events = gw.events();
    let ends = events
        .iter()
        .filter(|e| e["event_type"] == "tool_execution" && e["result"] == "success")
        .count();
    assert_eq!(ends, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2026_request_whose_headers_disagree_with_its_body_is_refused_and_recorded() {
    let gw = Gateway::start("");
    let url = gw.endpoint();
    let body = r#"{"jsonrpc":"2.0","id":"smuggle","method":"tools/call","params":{"name":"crash","arguments":{"after_ms":0,"status":9,"note":"card 4111 1111 1111 1111"}}}"#;
    let v = [
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
    ];
    let (status, _, text) = post(
        &url,
        Some(ALICE_KEY),
        None,
        body,
        &[v[0], v[1], ("mcp-name", "echo")],
    )
    .await;
    assert_eq!(status, 400, "{text}");
    let reply: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(reply["error"]["code"], -32020, "{reply}");
    assert_eq!(reply["id"], "smuggle");
    let (status, _, _) = post(&url, Some(ALICE_KEY), None, body, &v).await;
    assert_eq!(status, 400, "a missing Mcp-Name is refused too");
    // The same request with matching headers runs (and crashes its own server, alone).
    let list = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#;
    let (status, _, text) = post(
        &url,
        Some(ALICE_KEY),
        None,
        list,
        &[v[0], ("mcp-method", "tools/list")],
    )
    .await;
    assert_eq!(status, 200, "{text}");
    // SEP-2575: an unknown method is a 404, an unknown version a 400 naming the versions.
    let unknown = r#"{"jsonrpc":"2.0","id":601,"method":"unknown/method","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#;
    let (status, _, text) = post(
        &url,
        Some(ALICE_KEY),
        None,
        unknown,
        &[v[0], ("mcp-method", "unknown/method")],
    )
    .await;
    assert_eq!(status, 404, "{text}");
    let reply = messages(&text).pop().unwrap();
    assert_eq!(
        (reply["id"].clone(), reply["error"]["code"].clone()),
        (json!(601), json!(-32601))
    );
    let (status, _, text) = post(
        &url,
        Some(ALICE_KEY),
        None,
        unknown,
        &[("mcp-protocol-version", "v999.0.0")],
    )
    .await;
    assert_eq!(status, 400, "{text}");
    let reply: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(reply["id"], 601);
    assert_eq!(reply["error"]["code"], -32022);
    assert_eq!(reply["error"]["data"]["requested"], "v999.0.0");
    assert!(
        reply["error"]["data"]["supported"]
            .as_array()
            .unwrap()
            .contains(&json!("2026-07-28"))
    );
    let events = gw.events();
    let refused: Vec<&Value> = events
        .iter()
        .filter(|e| e["metadata"]["http"]["status_code"] == 400)
        .collect();
    assert_eq!(refused.len(), 3, "{events:#?}");
    assert!(
        refused[0]["metadata"]["reason"]
            .as_str()
            .unwrap()
            .contains("smuggling")
    );
    assert_eq!(refused[0]["metadata"]["request_id"], "smuggle");
    // Which tool with what: the refusal records the body's call (a fresh pair of eyes
    // found it recorded with no tool and no arguments).
    assert_eq!(refused[0]["tool_name"], "crash", "{:#}", refused[0]);
    let access = events
        .iter()
        .find(|a| a["event_id"] == refused[0]["linked_event_id"])
        .unwrap_or_else(|| panic!("no access for {:#}", refused[0]));
    assert_eq!(access["metadata"]["arguments"]["status"], 9, "{access:#}");
    // Masked as on the stdio path, and tagged: the card number is PCI DSS data, on both.
    assert!(
        !access["metadata"]["arguments"]["note"]
            .as_str()
            .unwrap()
            .contains("4111 1111 1111 1111"),
        "{access:#}"
    );
    assert_eq!(access["compliance_tags"], json!(["pci_dss"]), "{access:#}");
    assert_eq!(access["metadata"]["redacted"], json!(["payment_card"]));
    assert_eq!(refused[0]["compliance_tags"], json!(["pci_dss"]));
    assert!(
        refused[0]["metadata"]["redacted"].is_null(),
        "{:#}",
        refused[0]
    );
    assert!(
        !events
            .iter()
            .any(|e| e["tool_name"] == "crash" && e["result"] != "refused"),
        "the smuggled call reached a server"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_call_records_its_own_request_context() {
    let gw = Gateway::start("");
    let url = gw.endpoint();
    let session = raw_session(&url, ALICE_KEY).await;
    for (i, trace) in [
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "0af7651916cd43dd8448eb211c80319c",
    ]
    .iter()
    .enumerate()
    {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":{i},"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"t{i}"}}}}}}"#
        );
        let traceparent = format!("00-{trace}-00f067aa0ba902b7-01");
        let agent = format!("agent/{i}");
        let (status, _, text) = post(
            &url,
            Some(ALICE_KEY),
            Some(&session),
            &body,
            &[("traceparent", &traceparent), ("user-agent", &agent)],
        )
        .await;
        assert_eq!(status, 200, "{text}");
    }
    let events = gw.events();
    let access: Vec<&Value> = events
        .iter()
        .filter(|e| e["event_type"] == "tool_access")
        .collect();
    assert_eq!(access.len(), 2, "{events:#?}");
    assert_eq!(
        access[0]["metadata"]["http"]["trace_id"],
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(
        access[1]["metadata"]["http"]["trace_id"],
        "0af7651916cd43dd8448eb211c80319c"
    );
    assert_eq!(access[1]["metadata"]["http"]["user_agent"], "agent/1");
    assert_eq!(access[0]["session_id"], session);
}

#[test]
fn the_readme_gateway_example_loads_with_its_files_in_place() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let block = readme
        .split("```toml gateway\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("the README's gateway example");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("tls")).unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["mcp.example.com".to_string()]).unwrap();
    std::fs::write(dir.path().join("tls/cert.pem"), cert.cert.pem()).unwrap();
    std::fs::write(
        dir.path().join("tls/key.pem"),
        cert.signing_key.serialize_pem(),
    )
    .unwrap();
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let raw = pair.public_key_raw();
    let b64 = |b: &[u8]| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    };
    let jwks = json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k", "x": b64(&raw[1..33]), "y": b64(&raw[33..65])}]});
    std::fs::write(dir.path().join("idp-jwks.json"), jwks.to_string()).unwrap();
    let config = mcp_audit_proxy::config::Config::parse(&dir.path().join("proxy.toml"), block)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.upstreams.len(), 3);
    assert!(config.upstreams[2].remote.is_some());
    assert!(config.gateway.jwt.is_some() && config.gateway.tls.is_some());
    // Without the key file in place, the same text is refused, naming the line.
    std::fs::remove_file(dir.path().join("idp-jwks.json")).unwrap();
    let err = mcp_audit_proxy::config::Config::parse(&dir.path().join("proxy.toml"), block)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("idp-jwks.json") && err.contains("hint:"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_a_2026_stream_cancels_its_call_and_the_trail_says_so() {
    let gw = Gateway::start("");
    let body = r#"{"jsonrpc":"2.0","id":"long","method":"tools/call","params":{"name":"slow","arguments":{"ms":5000,"steps":5},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#;
    post_2026_and_leave(&gw.endpoint(), body, "slow", Duration::from_millis(700)).await;
    let mut ends = Vec::new();
    for _ in 0..100 {
        ends = gw
            .events()
            .into_iter()
            .filter(|e| e["tool_name"] == "slow" && e["event_type"] != "tool_access")
            .collect();
        if !ends.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(ends.len(), 1, "{ends:#?}");
    assert_eq!(ends[0]["result"], "cancelled", "{:#?}", ends[0]);
    assert_eq!(ends[0]["metadata"]["failure_side"], "client");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_are_answered_in_2025_03_26_and_refused_in_later_revisions() {
    let gw = Gateway::start("");
    let url = gw.endpoint();
    let session = raw_session(&url, ALICE_KEY).await;
    let batch = r#"[{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"echo","arguments":{"text":"one"}}},{"jsonrpc":"2.0","id":"b","method":"tools/call","params":{"name":"add","arguments":{"a":1,"b":2}}}]"#;
    let (status, _, text) = post(
        &url,
        Some(ALICE_KEY),
        Some(&session),
        batch,
        &[
            ("mcp-protocol-version", "2025-03-26"),
            ("accept", "application/json"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let replies: Vec<Value> = messages(&text)
        .into_iter()
        .flat_map(|m| match m {
            Value::Array(a) => a,
            one => vec![one],
        })
        .collect();
    let mut ids: Vec<&str> = replies.iter().map(|r| r["id"].as_str().unwrap()).collect();
    ids.sort();
    assert_eq!(ids, ["a", "b"], "{text}");
    let (status, _, text) = post(&url, Some(ALICE_KEY), Some(&session), batch, &[]).await;
    assert_eq!(status, 400, "{text}");
    let calls = gw
        .events()
        .into_iter()
        .filter(|e| e["event_type"] == "tool_execution")
        .count();
    assert_eq!(calls, 2, "the refused batch ran");
}

/// Reads SSE events from `resp` until `until` says stop; returns (event id, data) pairs.
async fn read_events(
    resp: &mut reqwest::Response,
    until: impl Fn(&[(String, Value)]) -> bool,
) -> Vec<(String, Value)> {
    let mut buf = String::new();
    let mut events = Vec::new();
    while !until(&events) {
        let Ok(Ok(Some(chunk))) = tokio::time::timeout(Duration::from_secs(10), resp.chunk()).await
        else {
            break;
        };
        buf.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            let id = event
                .lines()
                .find_map(|l| l.strip_prefix("id: "))
                .unwrap_or("")
                .to_string();
            // A priming event (an id, empty data) carries no message.
            if let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: "))
                && !data.is_empty()
            {
                events.push((id, serde_json::from_str(data).unwrap()));
            }
        }
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_stream_resumes_with_last_event_id_and_nothing_is_recorded_twice() {
    let gw = Gateway::start("");
    let url = gw.endpoint();
    let session = raw_session(&url, ALICE_KEY).await;
    let body = r#"{"jsonrpc":"2.0","id":41,"method":"tools/call","params":{"name":"slow","arguments":{"ms":1200,"steps":4},"_meta":{"progressToken":"p41"}}}"#;
    let mut resp = http()
        .post(&url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("authorization", format!("Bearer {ALICE_KEY}"))
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-11-25")
        .body(body)
        .send()
        .await
        .unwrap();
    let first = read_events(&mut resp, |e| !e.is_empty()).await;
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0].1["method"], "notifications/progress", "{first:?}");
    drop(resp);
    let mut resumed = http()
        .get(&url)
        .header("accept", "text/event-stream")
        .header("authorization", format!("Bearer {ALICE_KEY}"))
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-11-25")
        .header("last-event-id", &first[0].0)
        .send()
        .await
        .unwrap();
    assert_eq!(resumed.status().as_u16(), 200);
    let rest = read_events(&mut resumed, |e| e.iter().any(|(_, m)| m["id"] == 41)).await;
    let answer = rest
        .iter()
        .find(|(_, m)| m["id"] == 41)
        .expect("the answer after resuming");
    assert!(answer.1["result"].is_object(), "{answer:?}");
    // Same stream, later events, none repeated.
    let stream = first[0].0.split('-').next().unwrap();
    assert!(
        rest.iter()
            .all(|(id, _)| id.starts_with(&format!("{stream}-")) && *id != first[0].0),
        "{rest:?}"
    );
    let events = gw.events();
    let ends = events
        .iter()
        .filter(|e| e["tool_name"] == "slow" && e["event_type"] == "tool_execution")
        .count();
    assert_eq!(ends, 1, "{events:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_session_expires_and_its_id_is_then_unknown() {
    let gw = Gateway::start_with("session_idle_timeout_ms = 1000", "");
    let url = gw.endpoint();
    let session = raw_session(&url, ALICE_KEY).await;
    let list = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;
    let (status, _, _) = post(&url, Some(ALICE_KEY), Some(&session), list, &[]).await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (status, _, text) = post(&url, Some(ALICE_KEY), Some(&session), list, &[]).await;
    assert_eq!(status, 404, "{text}");
    assert_eq!(sample(&gw.metrics().await, "mcp_gateway_sessions"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessionless_requests_count_against_the_session_cap() {
    let gw = Gateway::start_with("max_sessions = 1", "");
    let url = gw.endpoint();
    let slow = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"slow","arguments":{"ms":1500,"steps":3},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#;
    let headers = [
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "slow"),
    ];
    let first = {
        let url = url.clone();
        tokio::spawn(async move { post(&url, Some(ALICE_KEY), None, slow, &headers).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, _, text) = post(&url, Some(BOB_KEY), None, slow, &headers).await;
    assert_eq!(status, 429, "{text}");
    let (status, _, text) = first.await.unwrap();
    assert_eq!(status, 200, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_principal_cannot_hold_more_open_requests_than_its_cap() {
    let gw = Gateway::start_with("max_streams_per_principal = 2", "");
    let slow = |id: u32| call_2026(&id.to_string(), "slow", r#"{"ms":1500,"steps":1}"#);
    let url = gw.endpoint();
    let running: Vec<_> = (1..=2)
        .map(|id| {
            let (url, body) = (url.clone(), slow(id));
            tokio::spawn(async move { post_2026(&url, ALICE_KEY, &body, Some("slow"), &[]).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // A third one of Alice's is refused while two run; Bob is not affected.
    let (status, _, body) = post_2026(&url, ALICE_KEY, &slow(3), Some("slow"), &[]).await;
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("max_streams_per_principal"), "{body}");
    let (status, _, body) = post_2026(&url, BOB_KEY, &slow(4), Some("slow"), &[]).await;
    assert_eq!(status, 200, "{body}");
    for r in running {
        let (status, _, body) = r.await.unwrap();
        assert_eq!(status, 200, "{body}");
    }
    // Their slots are given back with their answers.
    let (status, _, body) = post_2026(&url, ALICE_KEY, &slow(5), Some("slow"), &[]).await;
    assert_eq!(status, 200, "{body}");
    let events = gw.events();
    let refused: Vec<&Value> = events
        .iter()
        .filter(|e| e["metadata"]["http"]["status_code"] == 429)
        .collect();
    assert_eq!(refused.len(), 1, "{events:#?}");
    assert_eq!(refused[0]["user_id"], "alice");
    assert_eq!(refused[0]["result"], "refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2026_call_whose_param_headers_disagree_with_its_arguments_is_refused_and_recorded() {
    let gw = Gateway::start("");
    let (status, _, body) = post_2026(&gw.endpoint(), ALICE_KEY, &list_2026(1), None, &[]).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("x-mcp-header"), "{body}");
    let send = |id: u32, region: &'static str, header: Option<&'static str>| {
        let url = gw.endpoint();
        let body = call_2026(
            &id.to_string(),
            "route",
            &format!(r#"{{"region":"{region}","text":"hi"}}"#),
        );
        async move {
            let extra: Vec<(&str, &str)> = header
                .map(|h| ("mcp-param-region", h))
                .into_iter()
                .collect();
            post_2026(&url, ALICE_KEY, &body, Some("route"), &extra).await
        }
    };
    let (status, _, body) = send(2, "eu-west-1", Some("eu-west-1")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        messages(&body)[0]["result"]["content"][0]["text"],
        "eu-west-1: hi"
    );
    // Headers routing one way and arguments another: refused, never forwarded.
    for (id, header) in [(3, Some("us-east-1")), (4, None)] {
        let (status, _, body) = send(id, "eu-west-1", header).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(messages(&body)[0]["error"]["code"], -32020, "{body}");
    }
    let events = gw.events();
    let ran: Vec<&Value> = events
        .iter()
        .filter(|e| e["tool_name"] == "route" && e["event_type"] == "tool_execution")
        .collect();
    assert_eq!(ran.len(), 1, "only the matching call ran: {events:#?}");
    let refused: Vec<&Value> = events
        .iter()
        .filter(|e| e["metadata"]["http"]["status_code"] == 400)
        .collect();
    assert_eq!(refused.len(), 2, "{events:#?}");
    for r in refused {
        let reason = r["metadata"]["reason"].as_str().unwrap();
        assert!(reason.contains("mcp-param-region"), "{reason}");
        assert_eq!(r["result"], "refused");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_bad_credentials_cannot_write_the_trail_faster_than_its_quota() {
    let gw = Gateway::start("");
    for _ in 0..30 {
        let (status, _, _) = post(&gw.endpoint(), Some("not-a-key"), None, INIT, &[]).await;
        assert_eq!(status, 401);
    }
    // A known principal's refusals are always recorded one by one.
    for _ in 0..25 {
        let (status, _, _) = post(
            &gw.endpoint(),
            Some(ALICE_KEY),
            Some("no-such-session"),
            INIT,
            &[],
        )
        .await;
        assert_eq!(status, 404);
    }
    let (status, gw) = gw.stop();
    assert!(status.success(), "{status:?}");
    let events = gw.events();
    let unauthenticated: Vec<&Value> = events
        .iter()
        .filter(|e| e["user_id"] == "unauthenticated")
        .collect();
    // 20 one by one, and one event that counts the other 10.
    assert_eq!(unauthenticated.len(), 21, "{unauthenticated:#?}");
    let summary = unauthenticated
        .iter()
        .find(|e| {
            e["metadata"]["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("10 more refusals (HTTP 401)"))
        })
        .unwrap_or_else(|| panic!("no summary: {unauthenticated:#?}"));
    assert_eq!(summary["metadata"]["http"]["status_code"], 401);
    assert_eq!(summary["metadata"]["http"]["client_address"], "127.0.0.1");
    assert_eq!(
        events.iter().filter(|e| e["user_id"] == "alice").count(),
        25,
        "{events:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_clients_are_served_and_checked_like_http1_ones() {
    let gw = Gateway::start("");
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let resp = h2
        .post(gw.endpoint())
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("authorization", format!("Bearer {ALICE_KEY}"))
        .body(INIT)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    let session = resp.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_string();
    let body = resp.text().await.unwrap();
    assert!(
        messages(&body)[0]["result"]["serverInfo"].is_object(),
        "{body}"
    );
    let call = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":"over h2"}}}"#;
    let resp = h2
        .post(gw.endpoint())
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("authorization", format!("Bearer {ALICE_KEY}"))
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-06-18")
        .body(call)
        .send()
        .await
        .unwrap();
    let body = resp.text().await.unwrap();
    assert_eq!(
        messages(&body)[0]["result"]["content"][0]["text"],
        "over h2"
    );

    // DNS rebinding over HTTP/2: the host is in :authority, and it is checked there too.
    let port: u16 = gw.url.rsplit(':').next().unwrap().parse().unwrap();
    let rebound = reqwest::Client::builder()
        .http2_prior_knowledge()
        .resolve(
            "evil.example",
            std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        )
        .build()
        .unwrap();
    let resp = rebound
        .post(format!("http://evil.example:{port}/mcp/example"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("authorization", format!("Bearer {ALICE_KEY}"))
        .body(INIT)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 403, "{}", resp.text().await.unwrap());
    let events = gw.events();
    assert!(
        events
            .iter()
            .any(|e| e["metadata"]["http"]["status_code"] == 403),
        "{events:#?}"
    );
    assert_eq!(
        common::pairs(
            &events
                .iter()
                .filter(|e| e["metadata"]["http"]["status_code"].is_null())
                .cloned()
                .collect::<Vec<_>>()
        )
        .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_principal_cannot_hold_more_connections_than_its_cap() {
    let gw = Gateway::start_with("max_connections_per_principal = 2", "");
    let url = gw.endpoint();
    // Each reqwest client keeps its own keep-alive connection.
    let list = |client: &reqwest::Client, key: &str| {
        client
            .post(&url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("authorization", format!("Bearer {key}"))
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", "tools/list")
            .body(list_2026(1))
            .send()
    };
    let (a1, a2, a3) = (http(), http(), http());
    for c in [&a1, &a2] {
        let r = list(c, ALICE_KEY).await.unwrap();
        assert_eq!(r.status(), 200);
        r.text().await.unwrap();
    }
    // A second request on a counted connection is not a new connection.
    assert_eq!(list(&a1, ALICE_KEY).await.unwrap().status(), 200);
    let r = list(&a3, ALICE_KEY).await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["connection"], "close");
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("max_connections_per_principal"),
        "the refusal names the setting"
    );
    // Another principal is not affected.
    assert_eq!(list(&http(), BOB_KEY).await.unwrap().status(), 200);
    // A closed connection is given back.
    drop(a1);
    let mut status = 0;
    for _ in 0..50 {
        status = list(&http(), ALICE_KEY).await.unwrap().status().as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200, "alice's closed connection was not given back");
    drop(a2);
    let events = gw.events();
    let refused: Vec<&Value> = events
        .iter()
        .filter(|e| e["metadata"]["http"]["status_code"] == 429)
        .collect();
    assert!(!refused.is_empty(), "{events:#?}");
    assert!(
        refused
            .iter()
            .all(|e| e["user_id"] == "alice" && e["result"] == "refused")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_is_answered_only_when_configured_and_only_for_allowed_origins() {
    const PAGE: &str = "https://app.example.com";
    let preflight = |url: String, origin: &'static str, headers: &'static str| async move {
        http()
            .request(reqwest::Method::OPTIONS, url)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", headers)
            .send()
            .await
            .unwrap()
    };
    // helper-63 F6: `x-api-key` (a documented credential) and the trace headers that
    // OpenTelemetry's fetch instrumentation adds were refused, so such pages could not call.
    let asked = "authorization, content-type, mcp-protocol-version, mcp-method, mcp-param-region, x-api-key, traceparent, tracestate";

    // Off by default: the allowed origin may call, but no CORS header is ever sent.
    let gw = Gateway::start("");
    let r = preflight(gw.endpoint(), PAGE, asked).await;
    assert_ne!(r.status(), 204);
    assert!(r.headers().get("access-control-allow-origin").is_none());
    let (status, headers, _) = post(
        &gw.endpoint(),
        Some(ALICE_KEY),
        None,
        INIT,
        &[("origin", PAGE)],
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        headers.get("access-control-allow-origin").is_none(),
        "{headers:?}"
    );
    drop(gw);

    let gw = Gateway::start_with("cors = true", "");
    let url = gw.endpoint();
    let r = preflight(url.clone(), PAGE, asked).await;
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["access-control-allow-origin"], PAGE);
    assert_eq!(
        r.headers()["access-control-allow-methods"],
        "GET, POST, DELETE"
    );
    assert_eq!(r.headers()["access-control-allow-headers"], asked);
    // A header no MCP client sends is not allowed; neither is another origin.
    let r = preflight(url.clone(), PAGE, "content-type, x-user").await;
    assert_eq!(r.status(), 403);
    assert!(r.headers().get("access-control-allow-origin").is_none());
    let r = preflight(url.clone(), "https://evil.example", "content-type").await;
    assert_eq!(r.status(), 403);
    assert!(r.headers().get("access-control-allow-origin").is_none());
    // helper-65: a method MCP does not use was allowed, and so was any path.
    let r = http()
        .request(reqwest::Method::OPTIONS, url.clone())
        .header("origin", PAGE)
        .header("access-control-request-method", "PUT")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.headers().get("access-control-allow-origin").is_none());
    let elsewhere = url.replace("/mcp/", "/admin/");
    assert_ne!(elsewhere, url);
    let r = preflight(elsewhere, PAGE, "content-type").await;
    assert_eq!(r.status(), 404);
    assert!(r.headers().get("access-control-allow-methods").is_none());
    // helper-66: health, metrics and the resource metadata answered any method with their
    // body, as a GET. They are read with GET or HEAD; anything else is 405 with `Allow`.
    let base = url.strip_suffix("/mcp/example").unwrap().to_string();
    for path in [
        "/healthz",
        "/metrics",
        "/.well-known/oauth-protected-resource/mcp/example",
    ] {
        for method in [reqwest::Method::GET, reqwest::Method::HEAD] {
            let r = http()
                .request(method.clone(), format!("{base}{path}"))
                .bearer_auth(ALICE_KEY)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{method} {path}");
        }
        for method in [
            reqwest::Method::OPTIONS,
            reqwest::Method::POST,
            reqwest::Method::DELETE,
        ] {
            let r = http()
                .request(method.clone(), format!("{base}{path}"))
                .header("origin", PAGE)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 405, "{method} {path}");
            assert_eq!(r.headers()["allow"], "GET, HEAD", "{method} {path}");
            let body = r.text().await.unwrap();
            assert!(body.contains("is read with GET"), "{method} {path}: {body}");
        }
    }
    // The real request still needs its credential; its answers, refusals included, are
    // readable by the page, with the session id exposed.
    let (status, headers, _) = post(&url, None, None, INIT, &[("origin", PAGE)]).await;
    assert_eq!(status, 401);
    assert_eq!(headers["access-control-allow-origin"], PAGE);
    let (status, headers, _) = post(&url, Some(ALICE_KEY), None, INIT, &[("origin", PAGE)]).await;
    assert_eq!(status, 200);
    assert_eq!(headers["access-control-allow-origin"], PAGE);
    assert!(
        headers["access-control-expose-headers"]
            .to_str()
            .unwrap()
            .contains("mcp-session-id")
    );
    assert!(headers.contains_key("mcp-session-id"));
    // The other origin's refusal is in the trail.
    let events = gw.events();
    assert!(
        events
            .iter()
            .any(|e| e["metadata"]["http"]["status_code"] == 403
                && e["metadata"]["reason"]
                    .as_str()
                    .is_some_and(|m| m.contains("evil.example"))),
        "{events:#?}"
    );
}

/// Pids of the processes whose parent is `parent` (from /proc).
fn children_of(parent: u32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                // pid (comm) state ppid ...: comm may hold spaces, so read after the last ')'.
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                    == Some(parent)
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigquit_and_sigusr1_drain_the_gateway_and_leave_no_server_running() {
    for signal in [
        nix::sys::signal::Signal::SIGQUIT,
        nix::sys::signal::Signal::SIGUSR1,
    ] {
        let gw = Gateway::start("");
        let client = connect(&gw.endpoint(), ALICE_KEY).await;
        let ok = client
            .call_tool(call("echo", json!({"text": "before"})))
            .await
            .unwrap();
        assert_eq!(text_of(&ok), "before");
        let servers = children_of(gw.pid());
        assert!(
            !servers.is_empty(),
            "the session's server runs under the gateway"
        );
        let (status, gw) = gw.stop_with(signal);
        assert_eq!(status.code(), Some(0), "{signal}: a clean drain exits 0");
        for pid in servers {
            let gone = (0..50).any(|_| {
                let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
                    && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                        s.rsplit_once(')')
                            .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
                    });
                if alive {
                    std::thread::sleep(Duration::from_millis(100));
                }
                !alive
            });
            assert!(gone, "{signal}: server {pid} outlived the gateway");
        }
        // The trail was synced before the exit: the call's pair is there.
        let events = gw.events();
        assert!(
            events
                .iter()
                .any(|e| e["event_type"] == "tool_execution" && e["tool_name"] == "echo"),
            "{signal}: {events:#?}"
        );
        drop(client);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_call_held_for_confirmation_is_accepted_with_202() {
    // The cancellation is taken by the proxy (the server never saw the call): a POST that
    // carries only it is accepted, as a forwarded notification is, not refused with 400.
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
    let session = raw_session_with(&url, ALICE_KEY, r#"{"elicitation":{}}"#).await;
    // The held call's POST streams the question; it is read until the question comes.
    let mut held = http()
        .post(&url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("authorization", format!("Bearer {ALICE_KEY}"))
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-06-18")
        .body(r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"text":"a; b"}}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(held.status().as_u16(), 200);
    let mut streamed = String::new();
    while !streamed.contains("elicitation/create") {
        let chunk = tokio::time::timeout(Duration::from_secs(20), held.chunk())
            .await
            .expect("the question in time")
            .unwrap()
            .expect("the stream open until the question");
        streamed.push_str(&String::from_utf8_lossy(&chunk));
    }
    let (status, _, body) = post(
        &url,
        Some(ALICE_KEY),
        Some(&session),
        r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":7,"reason":"gave up"}}"#,
        &[],
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert!(body.is_empty(), "{body}");
    drop(held);
    let mut ends = Vec::new();
    for _ in 0..50 {
        ends = gw
            .events()
            .into_iter()
            .filter(|e| e["tool_name"] == "echo" && e["event_type"] != "tool_access")
            .collect();
        if !ends.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ends.len(), 1, "{ends:?}");
    assert_eq!(ends[0]["result"], "cancelled", "{}", ends[0]);
}
