//! Sessionless 2026-07-28 requests on shared server processes, through the real binary:
//! colliding client ids each get their own answer with their own id text, the trail records
//! the clients' ids, the pool stays at its size, a child that dies fails exactly the calls on
//! it, idle children end, closing one request's stream cancels only that call, and a
//! `subscriptions/listen`'s notifications reach it with the client's id while other calls run.

mod common;

use std::time::{Duration, Instant};

use common::gateway::*;
use serde_json::Value;

/// The `_meta` of a 2026-07-28 request with a progress token.
fn meta(token: &str) -> String {
    format!(
        r#""_meta":{{"progressToken":{token},"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{{}}}}"#
    )
}

fn slow(id: &str, ms: u64, steps: u32, token: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"slow","arguments":{{"ms":{ms},"steps":{steps}}},{}}}}}"#,
        meta(token)
    )
}

/// A gauge or counter of `/metrics`.
async fn metric(gw: &Gateway, name: &str) -> i64 {
    sample(&gw.metrics().await, name) as i64
}

/// The answer line (raw JSON text) among an SSE or JSON body's messages, and how many
/// progress notifications came before it.
fn answer_of(body: &str) -> (String, usize) {
    let lines: Vec<&str> = if body.trim_start().starts_with('{') {
        vec![body.trim()]
    } else {
        body.lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .collect()
    };
    let progress = lines
        .iter()
        .filter(|l| l.contains("notifications/progress"))
        .count();
    let answer = lines
        .iter()
        .find(|l| l.contains("\"result\"") || l.contains("\"error\""))
        .unwrap_or_else(|| panic!("no answer in {body}"));
    (answer.to_string(), progress)
}

/// A gateway whose upstream is `tests/peers/deaf_to_cancel.py` (answers each call after its
/// `ms`, cancelled or not), with `gateway` added to the `[gateway]` table.
fn deaf_to_cancel(gateway: &str) -> Gateway {
    let server = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/deaf_to_cancel.py");
    Gateway::start_upstream(&format!("\"python3\", \"{server}\""), gateway, "")
}

/// The end events (not `tool_access`) of the trail, waiting up to 5 s for `n` of them.
async fn ends(gw: &Gateway, tool: &str, n: usize) -> Vec<Value> {
    let mut found = Vec::new();
    for _ in 0..100 {
        found = gw
            .events()
            .into_iter()
            .filter(|e| e["tool_name"] == tool && e["event_type"] != "tool_access")
            .collect();
        if found.len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn colliding_ids_on_shared_children_each_get_their_own_answer_and_the_pool_keeps_its_size() {
    let gw = Gateway::start_with("pool_max_children = 2\npool_max_in_flight = 64", "");
    let url = gw.endpoint();
    // 1000, "1000" and 1000.0 are three ids to the clients (and equal ones, 1000 and 1000.0,
    // to a lax reader): every request has one of them, and the same progress token.
    let ids = ["1000", "\"1000\"", "1000.0", "\"abc\""];
    let mut tasks = Vec::new();
    for i in 0..24 {
        let url = url.clone();
        let id = ids[i % ids.len()];
        tasks.push(tokio::spawn(async move {
            let body = slow(id, 600, 3, "\"tok\"");
            let (status, _, text) = post_2026(&url, ALICE_KEY, &body, Some("slow"), &[]).await;
            assert_eq!(status, 200, "{text}");
            let (answer, progress) = answer_of(&text);
            assert!(
                answer.starts_with(&format!(r#"{{"jsonrpc":"2.0","id":{id},"result""#)),
                "request {i} with id {id}: {answer}"
            );
            assert!(answer.contains("slept 600ms"), "{answer}");
            // Its own three progress notifications, with its own token, and no one else's.
            assert_eq!(progress, 3, "request {i}: {text}");
            assert!(
                !text.contains("\"progressToken\":") || text.contains("\"progressToken\":\"tok\""),
                "{text}"
            );
        }));
    }
    for t in tasks {
        // A misrouted answer would leave its request waiting for limits.call_timeout_ms.
        tokio::time::timeout(Duration::from_secs(30), t)
            .await
            .expect("a request got no answer")
            .unwrap();
    }
    assert_eq!(metric(&gw, "mcp_gateway_shared_children_started").await, 2);
    assert_eq!(metric(&gw, "mcp_gateway_shared_children").await, 2);

    let events = gw.events();
    let access: Vec<&Value> = events
        .iter()
        .filter(|e| e["tool_name"] == "slow" && e["event_type"] == "tool_access")
        .collect();
    let ended: Vec<&Value> = events
        .iter()
        .filter(|e| e["tool_name"] == "slow" && e["event_type"] == "tool_execution")
        .collect();
    assert_eq!((access.len(), ended.len()), (24, 24), "{events:#?}");
    for id in ids {
        let recorded = |list: &[&Value]| {
            list.iter()
                .filter(|e| {
                    // The id's JSON text: 1000, "1000" and 1000.0 apart.
                    let text = e["metadata"]["request_id"].to_string();
                    text == id
                })
                .count()
        };
        assert_eq!(recorded(&access), 6, "access events with id {id}");
        assert_eq!(recorded(&ended), 6, "end events with id {id}");
    }
    assert!(ended.iter().all(|e| e["result"] == "success"), "{ended:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_child_that_dies_fails_exactly_its_calls_and_the_next_request_gets_a_new_one() {
    let gw = Gateway::start_with("pool_max_children = 1\npool_max_in_flight = 8", "");
    let url = gw.endpoint();
    let post = |key: &'static str, body: String, tool: &'static str| {
        let url = url.clone();
        tokio::spawn(async move { post_2026(&url, key, &body, Some(tool), &[]).await })
    };
    // Three of alice's calls on her one child, and one of bob's on his.
    let mut alice: Vec<_> = ["\"a\"", "\"b\"", "7"]
        .iter()
        .map(|id| post(ALICE_KEY, slow(id, 4000, 4, id), "slow"))
        .collect();
    let bob = post(BOB_KEY, slow("7", 1500, 3, "7"), "slow");
    tokio::time::sleep(Duration::from_millis(300)).await;
    alice.push(post(
        ALICE_KEY,
        call_2026("\"boom\"", "crash", r#"{"after_ms":300,"status":3}"#),
        "crash",
    ));
    for t in alice {
        let (status, _, text) = t.await.unwrap();
        assert_eq!(status, 200, "{text}");
        let (answer, _) = answer_of(&text);
        assert!(answer.contains("-32603"), "{answer}");
    }
    let (status, _, text) = bob.await.unwrap();
    assert_eq!(status, 200, "{text}");
    assert!(answer_of(&text).0.contains("slept 1500ms"), "{text}");

    // The next request of alice gets a new child.
    let (status, _, text) = post_2026(
        &url,
        ALICE_KEY,
        &call_2026("1", "echo", r#"{"text":"again"}"#),
        Some("echo"),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("again"), "{text}");
    assert_eq!(metric(&gw, "mcp_gateway_shared_children_started").await, 3);

    let slow_ends = ends(&gw, "slow", 4).await;
    let crash_ends = ends(&gw, "crash", 1).await;
    let of = |list: &[Value], user: &str| -> Vec<String> {
        list.iter()
            .filter(|e| e["user_id"] == user)
            .map(|e| format!("{} {}", e["event_type"], e["result"]))
            .collect()
    };
    assert_eq!(
        of(&slow_ends, "alice"),
        vec!["\"tool_failure\" \"server_exit\""; 3],
        "{slow_ends:#?}"
    );
    assert_eq!(
        of(&crash_ends, "alice"),
        vec!["\"tool_failure\" \"server_exit\""],
        "{crash_ends:#?}"
    );
    assert_eq!(
        of(&slow_ends, "bob"),
        vec!["\"tool_execution\" \"success\""],
        "{slow_ends:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_shared_child_ends_and_the_next_request_starts_one() {
    let gw = Gateway::start_with("pool_idle_timeout_ms = 1000", "");
    let url = gw.endpoint();
    let echo = call_2026("1", "echo", r#"{"text":"warm"}"#);
    let (status, _, text) = post_2026(&url, ALICE_KEY, &echo, Some("echo"), &[]).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(metric(&gw, "mcp_gateway_shared_children").await, 1);
    let started = Instant::now();
    while metric(&gw, "mcp_gateway_shared_children").await != 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the idle child was not reaped"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert_eq!(metric(&gw, "mcp_gateway_sessions").await, 0);
    let (status, _, text) = post_2026(&url, ALICE_KEY, &echo, Some("echo"), &[]).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(metric(&gw, "mcp_gateway_shared_children_started").await, 2);
}

/// A gateway like [`Gateway::start_with`]'s whose log (its children's stderr included) goes
/// to a file, at level info.
fn logged_gateway(gateway: &str) -> (Gateway, std::path::PathBuf) {
    let text = {
        let first = Gateway::start_with(gateway, "");
        std::fs::read_to_string(&first.config).unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("proxy.toml");
    std::fs::write(&config, text).unwrap();
    let log = dir.path().join("gateway.log");
    let mut cmd = std::process::Command::new(common::proxy_bin());
    cmd.arg("gateway")
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap());
    (Gateway::spawn_command(dir, config, cmd), log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_one_streams_cancels_only_its_call_on_the_shared_child() {
    let (gw, log) = logged_gateway("pool_max_children = 1");
    let url = gw.endpoint();
    // Both calls have the id "long" and run on the one child.
    let kept = {
        let url = url.clone();
        tokio::spawn(async move {
            post_2026(
                &url,
                ALICE_KEY,
                &slow("\"long\"", 1500, 3, "1"),
                Some("slow"),
                &[],
            )
            .await
        })
    };
    // The kept call first on the child (child id 1), even on a loaded machine: it runs 1.5 s,
    // the cut one is cancelled 0.7 s after it is sent.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let cut = slow("\"long\"", 5000, 5, "1");
    post_2026_and_leave(&url, &cut, "slow", Duration::from_millis(700)).await;
    let (status, _, text) = kept.await.unwrap();
    assert_eq!(status, 200, "{text}");
    let (answer, progress) = answer_of(&text);
    assert!(
        answer.starts_with(r#"{"jsonrpc":"2.0","id":"long","result""#),
        "{answer}"
    );
    assert!(answer.contains("slept 1500ms"), "{answer}");
    assert_eq!(progress, 3, "{text}");
    let found = ends(&gw, "slow", 2).await;
    let mut results: Vec<String> = found.iter().map(|e| e["result"].to_string()).collect();
    results.sort();
    assert_eq!(results, ["\"cancelled\"", "\"success\""], "{found:#?}");
    assert_eq!(metric(&gw, "mcp_gateway_shared_children_started").await, 1);
    // The cancellation reached the shared child with the child's id of the cut call (the
    // second request it took), and the child stopped that call, and only that one.
    let text = std::fs::read_to_string(&log).unwrap();
    let forwarded: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("cancellation forwarded to the shared mcp server"))
        .collect();
    assert_eq!(forwarded.len(), 1, "{text}");
    assert!(forwarded[0].contains("child_id=2"), "{text}");
    assert_eq!(
        text.matches("example-server: slow cancelled").count(),
        1,
        "{text}"
    );
}

/// Not a check: the median time of a sessionless `tools/call`, with shared children and with
/// a process per request (`share_children = false`). Run with
/// `cargo test --test gateway_pool -- --ignored --nocapture latency`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn latency_of_a_sessionless_call() {
    for share in [false, true] {
        let gw = Gateway::start_with(
            "",
            &format!(
                "[[upstream]]\nname = \"measured\"\ncommand = [\"{}\"]\nshare_children = {share}\n",
                common::example_server().display()
            ),
        );
        let url = format!("{}/mcp/measured", gw.url);
        let echo = call_2026("1", "echo", r#"{"text":"t"}"#);
        let mut times = Vec::new();
        for _ in 0..200 {
            let started = Instant::now();
            let (status, _, text) = post_2026(&url, ALICE_KEY, &echo, Some("echo"), &[]).await;
            times.push(started.elapsed());
            assert_eq!(status, 200, "{text}");
        }
        times.sort();
        println!(
            "share_children = {share}: 200 sequential sessionless echo calls: median {:?}, p90 {:?}",
            times[100], times[180]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_required_rounds_on_shared_children_reach_the_client_that_asked() {
    let gw = Gateway::start_with("pool_max_children = 2", "");
    let url = gw.endpoint();
    let mut tasks = Vec::new();
    for i in 0..6 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let action = format!("deploy-{i}");
            let call = |retry: &str| {
                format!(
                    r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"confirm","arguments":{{"action":"{action}"}}{retry},{META_2026}}}}}"#
                )
            };
            // Round 1: the server asks (MRTR, an input_required result), by the same id 1.
            let (status, _, text) =
                post_2026(&url, ALICE_KEY, &call(""), Some("confirm"), &[]).await;
            assert_eq!(status, 200, "{text}");
            let round = messages(&text).pop().unwrap();
            assert_eq!(round["id"], 1, "{text}");
            assert_eq!(round["result"]["resultType"], "input_required", "{text}");
            let asked = &round["result"]["inputRequests"]["confirm"]["params"]["message"];
            assert_eq!(asked, &Value::from(format!("Really {action}?")), "{text}");
            let state = round["result"]["requestState"].to_string();
            // Round 2, maybe on the other child: the state travels with the request.
            let retry = format!(
                r#","requestState":{state},"inputResponses":{{"confirm":{{"action":"accept","content":{{"confirmed":true}}}}}}"#
            );
            let (status, _, text) =
                post_2026(&url, ALICE_KEY, &call(&retry), Some("confirm"), &[]).await;
            assert_eq!(status, 200, "{text}");
            let done = messages(&text).pop().unwrap();
            assert_eq!(
                done["result"]["content"][0]["text"],
                format!("confirmed: {action}"),
                "{text}"
            );
        }));
    }
    for t in tasks {
        // A misrouted answer would leave its request waiting for limits.call_timeout_ms.
        tokio::time::timeout(Duration::from_secs(30), t)
            .await
            .expect("a request got no answer")
            .unwrap();
    }
    assert!(metric(&gw, "mcp_gateway_shared_children_started").await <= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pool_refuses_with_429_naming_its_settings_and_records_it() {
    let gw = Gateway::start_with("pool_max_children = 1\npool_max_in_flight = 1", "");
    let url = gw.endpoint();
    let first = {
        let url = url.clone();
        tokio::spawn(async move {
            post_2026(&url, ALICE_KEY, &slow("1", 1500, 3, "1"), Some("slow"), &[]).await
        })
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    let echo = call_2026("2", "echo", r#"{"text":"no room"}"#);
    let (status, _, text) = post_2026(&url, ALICE_KEY, &echo, Some("echo"), &[]).await;
    assert_eq!(status, 429, "{text}");
    assert!(text.contains("gateway.pool_max_in_flight = 1"), "{text}");
    // Another principal has a pool of its own.
    let (status, _, text) = post_2026(&url, BOB_KEY, &echo, Some("echo"), &[]).await;
    assert_eq!(status, 200, "{text}");
    let (status, _, text) = first.await.unwrap();
    assert_eq!(status, 200, "{text}");
    let refused: Vec<Value> = gw
        .events()
        .into_iter()
        .filter(|e| e["result"] == "refused" && e["user_id"] == "alice")
        .collect();
    // The refused call: its access and its end, which has the status.
    assert_eq!(refused.len(), 2, "{refused:#?}");
    assert_eq!(refused[0]["event_type"], "tool_access", "{refused:#?}");
    assert_eq!(refused[1]["linked_event_id"], refused[0]["event_id"]);
    assert_eq!(refused[1]["metadata"]["http"]["status_code"], 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_too_long_from_a_shared_process_fails_its_call_at_once() {
    // Found by a fresh pair of eyes: the same answer in a 2025 session failed its call at
    // once ("exceeds max_message_bytes"); from a shared 2026 process it was dropped and the
    // call waited for limits.call_timeout_ms (10 minutes by default).
    // The gateway tests run with limits.max_message_bytes = 65536.
    let gw = Gateway::start("");
    let (status, _, body) = tokio::time::timeout(
        Duration::from_secs(20),
        post_2026(
            &gw.endpoint(),
            ALICE_KEY,
            &call_2026("41", "big", r#"{"bytes":200000}"#),
            Some("big"),
            &[],
        ),
    )
    .await
    .expect("the call fails at once, not at limits.call_timeout_ms");
    let (answer, _) = answer_of(&body);
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["id"], 41, "{body}");
    assert_eq!(answer["error"]["code"], -32603, "{status}: {body}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("max_message_bytes")),
        "{body}"
    );
    let found = ends(&gw, "big", 1).await;
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_ne!(found[0]["result"], "timeout", "{found:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2026_confirmation_round_is_answered_by_a_sessionless_retry_of_the_same_principal() {
    // Found by a fresh pair of eyes: the proxy's input_required round lived in the pipeline of
    // the request that opened it; the retry, a sessionless request of its own, never found it
    // ("unknown or expired"), so a call to confirm could never run through the gateway.
    let gw = Gateway::start(
        r#"
[risk]
confirm_timeout_ms = 10000
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
    let meta = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{"elicitation":{}}}"#;
    let call = |id: u32, text: &str, state: Option<&str>| {
        let retry = state.map_or(String::new(), |s| {
            format!(
                r#","requestState":{s},"inputResponses":{{"mcp-audit-proxy.confirm":{{"action":"accept","content":{{"confirm":true}}}}}}"#
            )
        });
        format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"{text}"}},{meta}{retry}}}}}"#
        )
    };
    let send = |key: &'static str, body: String| {
        let url = url.clone();
        async move {
            let (_, _, text) = post_2026(&url, key, &body, Some("echo"), &[]).await;
            let (answer, _) = answer_of(&text);
            serde_json::from_str::<Value>(&answer).unwrap()
        }
    };
    let round = send(ALICE_KEY, call(1, "a; b", None)).await;
    assert_eq!(round["result"]["resultType"], "input_required", "{round}");
    let state = round["result"]["requestState"].to_string();

    // Another principal cannot answer it (and does not use it up).
    let bob = send(BOB_KEY, call(2, "a; b", Some(&state))).await;
    assert_eq!(bob["error"]["code"], -32010, "{bob}");

    let ran = send(ALICE_KEY, call(3, "a; b", Some(&state))).await;
    assert_eq!(ran["result"]["content"][0]["text"], "a; b", "{ran}");

    // A round is answered once.
    let replay = send(ALICE_KEY, call(4, "a; b", Some(&state))).await;
    assert_eq!(replay["error"]["code"], -32010, "{replay}");

    let executions: Vec<Value> = gw
        .events()
        .into_iter()
        .filter(|e| e["event_type"] == "tool_execution" && e["result"] == "success")
        .collect();
    assert_eq!(executions.len(), 1, "{executions:#?}");
    assert_eq!(executions[0]["user_id"], "alice");
}

/// Found by a fresh pair of eyes: a shared process answering the pool's request 7 with id
/// `"7"` (as some servers do, python-sdk#961; the official SDKs read it as 7) had its answer
/// dropped without a word, and the client waited for `limits.call_timeout_ms`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_processs_answer_naming_the_request_as_a_string_reaches_its_client() {
    let dir = tempfile::tempdir().unwrap();
    let server = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/lenient_server.py");
    let command = format!(
        "\"python3\", \"{server}\", {:?}, \"string-ids\"",
        dir.path().join("ran").display().to_string()
    );
    let gw = Gateway::start_upstream(&command, "", "");
    let (status, _, body) = tokio::time::timeout(
        Duration::from_secs(20),
        post_2026(
            &gw.endpoint(),
            ALICE_KEY,
            &call_2026("\"q-1\"", "echo", "{}"),
            Some("echo"),
            &[],
        ),
    )
    .await
    .expect("the answer reaches the client, not limits.call_timeout_ms");
    let (answer, _) = answer_of(&body);
    let answer: Value = serde_json::from_str(&answer).unwrap();
    // The client's own id back, as for every answer of a shared process.
    assert_eq!(answer["id"], "q-1", "{status}: {body}");
    assert_eq!(answer["result"]["content"][0]["text"], "ran echo", "{body}");
    let found = ends(&gw, "echo", 1).await;
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0]["result"], "success", "{found:#?}");
}

/// A server's own request (here `ping`) while it serves a sessionless 2026-07-28 call: the
/// client cannot answer it (2026-07-28 has no server-to-client requests; its answer would come
/// on a POST of its own, which no session links to the server). Found by a fresh pair of eyes:
/// the request went to the client's stream, the client's answer got 202 and was dropped, and
/// the call hung until `limits.call_timeout_ms` (10 minutes). Now the proxy answers the server
/// at once (a ping with an empty result, anything else with an error), on a shared process
/// and on a process of the request's own, and a POST of answers alone is refused, recorded,
/// with 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_servers_own_request_during_a_sessionless_call_is_answered_not_left_hanging() {
    let server = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/lenient_server.py");
    for shared in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("ran");
        // `command` is the last key written into the upstream's table: `share_children`
        // follows it on a line of its own.
        let command = format!(
            "\"python3\", \"{server}\", {:?}, \"asks-ping\"]\nshare_children = {shared}\n#",
            log.display().to_string()
        );
        let gw = Gateway::start_upstream(&command, "", "");
        let (status, _, body) = tokio::time::timeout(
            Duration::from_secs(20),
            post_2026(
                &gw.endpoint(),
                ALICE_KEY,
                &call_2026("7", "echo", "{}"),
                Some("echo"),
                &[],
            ),
        )
        .await
        .unwrap_or_else(|_| {
            panic!("shared {shared}: the call ends at once, not at limits.call_timeout_ms")
        });
        assert!(
            !body.contains(r#""method":"ping""#),
            "shared {shared}: the server's request reached a client that cannot answer it: {body}"
        );
        let (answer, _) = answer_of(&body);
        let answer: Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(answer["id"], 7, "shared {shared}: {status}: {body}");
        // A ping is answered by the proxy, as MCP asks of its receiver (an error could read
        // as a dead peer); other requests get an error saying why (the pool's unit tests).
        assert_eq!(
            answer["result"]["content"][0]["text"], "ping answered with result",
            "shared {shared}: {body}"
        );
        let ran = std::fs::read_to_string(&log).unwrap();
        assert!(
            // The shared process sees the pool's id for the call (srv-1), its own one srv-7.
            ran.lines().any(
                |l| l.starts_with(r#"{"ping_answer": {"jsonrpc": "2.0", "id": "srv-"#)
                    && l.ends_with(r#""result": {}}}"#)
            ),
            "shared {shared}: {ran}"
        );

        // The answer a client might still send: refused, recorded, never a silent 202.
        let (status, _, body) = post(
            &gw.endpoint(),
            Some(ALICE_KEY),
            None,
            r#"{"jsonrpc":"2.0","id":"srv-7","result":{}}"#,
            &[("mcp-protocol-version", "2026-07-28")],
        )
        .await;
        assert_eq!(status, 400, "shared {shared}: {body}");
        assert!(
            body.contains("holds only responses"),
            "shared {shared}: {body}"
        );
        let refused: Vec<Value> = gw
            .events()
            .into_iter()
            .filter(|e| e["result"] == "refused")
            .collect();
        assert_eq!(refused.len(), 1, "shared {shared}: {refused:#?}");
        assert_eq!(refused[0]["metadata"]["http"]["status_code"], 400);
        assert!(
            refused[0]["metadata"]["reason"]
                .as_str()
                .is_some_and(|m| m.contains("holds only responses")),
            "shared {shared}: {refused:#?}"
        );
    }
}

/// Found by a hostile pass (helper-61 F1, high): each sessionless 2026-07-28 request is a
/// session core of its own, and the calls of a principal's earlier requests were forgotten.
/// A client choosing that era escaped `[[risk.sequence]]` rules (personal data read, then
/// sent out: blocked for a 2025 client, passed here) and the annotations of the tools it had
/// listed (a destructive tool scored as an unknown one). Both pool settings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequence_rules_and_tool_annotations_hold_across_a_principals_sessionless_requests() {
    const SEQUENCE: &str = "[[risk.sequence]]\nname = \"personal data then echo\"\nafter_tags = [\"gdpr\"]\nthen_tools = [\"echo\"]\nscore = 80\n";
    for shared in [true, false] {
        // `command` is the last key written into the upstream's table.
        let command = format!(
            "{:?}]\nshare_children = {shared}\n#",
            common::example_server().display().to_string()
        );
        let gw = Gateway::start_upstream(&command, "", SEQUENCE);
        let url = gw.endpoint();
        let (status, _, body) = post_2026(&url, ALICE_KEY, &list_2026(1), None, &[]).await;
        assert_eq!(status, 200, "shared {shared}: {body}");
        let read = call_2026("2", "personal_data", "{}");
        let (status, _, body) = post_2026(&url, ALICE_KEY, &read, Some("personal_data"), &[]).await;
        assert_eq!(status, 200, "shared {shared}: {body}");
        let send = call_2026("3", "echo", r#"{"text":"out"}"#);
        let (_, _, body) = post_2026(&url, ALICE_KEY, &send, Some("echo"), &[]).await;
        let (answer, _) = answer_of(&body);
        let answer: Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(
            answer["error"]["code"], -32010,
            "shared {shared}: echo after personal data passed: {body}"
        );
        let events = gw.events();
        let access = |tool: &str| {
            events
                .iter()
                .find(|e| e["tool_name"] == tool && e["event_type"] == "tool_access")
                .unwrap_or_else(|| panic!("shared {shared}: no access of {tool}: {events:#?}"))
                .clone()
        };
        let reasons = access("echo")["metadata"]["risk_reasons"].to_string();
        assert!(
            reasons.contains("personal data then echo"),
            "shared {shared}: {reasons}"
        );
        // personal_data was listed read-only by the first request.
        let reasons = access("personal_data")["metadata"]["risk_reasons"].to_string();
        assert!(
            !reasons.contains("no annotations"),
            "shared {shared}: {reasons}"
        );
        gw.stop();
    }
}

/// helper-63 F1: on a shared child, an answer that came after its sessionless request had
/// ended (the client left; or the call timed out) or a second answer to a call was dropped
/// with a warning and nothing in the trail, where a child of the session's own has each
/// recorded: the tool ran, and the trail said only `cancelled`. Now the core that made the
/// call records it, and that it reached no client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_childs_late_or_repeated_answer_is_recorded_as_reaching_no_client() {
    let gw = deaf_to_cancel("pool_max_children = 1");
    let url = gw.endpoint();
    // The client leaves at 700 ms; the tool, which cannot be interrupted, answers at 1.5 s.
    let late = call_2026("\"late\"", "slow", r#"{"ms":1500}"#);
    post_2026_and_leave(&url, &late, "slow", Duration::from_millis(700)).await;
    // A call the server answers twice: the client gets the first answer only.
    let twice = call_2026("\"twice\"", "slow", r#"{"ms":10,"times":2}"#);
    let (status, _, text) = post_2026(&url, ALICE_KEY, &twice, Some("slow"), &[]).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(text.matches("done anyway").count(), 1, "{text}");
    let found = ends(&gw, "slow", 6).await;
    let of = |id: &str| -> Vec<(String, String, String)> {
        let mut mine: Vec<&Value> = found
            .iter()
            .filter(|e| e["metadata"]["request_id"] == id)
            .collect();
        mine.sort_by_key(|e| e["event_id"].as_str().unwrap().to_string());
        mine.iter()
            .map(|e| {
                (
                    e["event_type"].as_str().unwrap().to_string(),
                    e["result"].as_str().unwrap().to_string(),
                    e["metadata"]["reason"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    };
    let late = of("late");
    let kinds = |v: &[(String, String, String)]| -> Vec<(String, String)> {
        v.iter().map(|(t, r, _)| (t.clone(), r.clone())).collect()
    };
    assert_eq!(
        kinds(&late),
        [
            ("tool_failure".into(), "cancelled".into()),
            ("tool_execution".into(), "success".into()),
            ("tool_failure".into(), "shutdown".into()),
        ],
        "{found:#?}"
    );
    assert!(late[1].2.contains("after the client cancelled"), "{late:?}");
    assert!(
        late[2]
            .2
            .contains("the sessionless request that made the call had ended"),
        "{late:?}"
    );
    let again = of("twice");
    assert_eq!(
        kinds(&again),
        [
            ("tool_execution".into(), "success".into()),
            ("tool_execution".into(), "success".into()),
            ("tool_failure".into(), "shutdown".into()),
        ],
        "{found:#?}"
    );
    assert!(again[1].2.contains("answered this call again"), "{again:?}");
    assert!(again[2].2.contains("not delivered"), "{again:?}");
}

/// helper-65 #6: the pool remembered 256 ended requests, answered ones and unanswered ones
/// alike, so ~300 ordinary calls (a second of a busy gateway) made it forget a call whose
/// client had left: the server's answer, when it came, was dropped, and the trail kept only
/// the `cancelled` end of a call that did run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_answer_is_recorded_after_hundreds_of_calls_answered_meanwhile() {
    let gw = deaf_to_cancel("pool_max_children = 1");
    let url = gw.endpoint();
    // The server answers at 20 s, long after the 300 calls (a loaded debug build included).
    let late = call_2026("\"late\"", "slow", r#"{"ms":20000}"#);
    post_2026_and_leave(&url, &late, "slow", Duration::from_millis(500)).await;
    let started = Instant::now();
    for i in 0..300 {
        let quick = call_2026(&format!("\"quick-{i}\""), "quick", r#"{"ms":0}"#);
        let (status, _, text) = post_2026(&url, ALICE_KEY, &quick, Some("quick"), &[]).await;
        assert_eq!(status, 200, "{text}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(19),
        "the quick calls took {:?}: the late answer came before they were done, and the \
         test shows nothing",
        started.elapsed()
    );
    let expected = [
        ("tool_failure", "cancelled"),
        ("tool_execution", "success"),
        ("tool_failure", "shutdown"),
    ];
    // The call's ends, oldest first, once all three are in (or the time is up).
    let ends_of = |events: &[Value]| -> Vec<(String, String)> {
        common::kinds_of(events, "late")
            .into_iter()
            .filter(|(t, _)| *t != "tool_access")
            .map(|(t, r)| (t.to_string(), r.to_string()))
            .collect()
    };
    let mut events = gw.events();
    while ends_of(&events).len() < expected.len() && started.elapsed() < Duration::from_secs(45) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        events = gw.events();
    }
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(t, r)| (t.to_string(), r.to_string()))
        .collect();
    assert_eq!(ends_of(&events), expected, "{events:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_childs_batch_answer_is_routed_element_by_element_to_each_request() {
    // A server of 2025-03-26 may answer in a JSON-RPC batch. On a shared child, the batch
    // holds the pool's ids: sent whole, it would reach one lease (or none, with two in
    // flight) and the call would end as a timeout though the tool ran.
    let gw = deaf_to_cancel("pool_max_children = 1");
    let url = gw.endpoint();
    let plain = call_2026("\"plain\"", "slow", r#"{"ms":800}"#);
    let batched = call_2026(
        "\"batched\"",
        "slow",
        r#"{"ms":100,"batch":true,"times":2}"#,
    );
    let limit = Duration::from_secs(10);
    let (a, b) = tokio::join!(
        tokio::time::timeout(limit, post_2026(&url, ALICE_KEY, &plain, Some("slow"), &[])),
        tokio::time::timeout(
            limit,
            post_2026(&url, ALICE_KEY, &batched, Some("slow"), &[])
        ),
    );
    let (a, b) = (
        a.expect("the plain call got no answer"),
        b.expect("the batched call got no answer"),
    );
    assert_eq!(a.0, 200, "{}", a.2);
    assert_eq!(b.0, 200, "{}", b.2);
    let answered = |body: &str, id: &str| {
        let got: Value = serde_json::from_str(&answer_of(body).0).unwrap();
        assert!(got.is_object(), "not one answer: {body}");
        assert_eq!(got["id"], id, "{body}");
        assert_eq!(got["result"]["content"][0]["text"], "done anyway", "{body}");
        assert_eq!(body.matches("done anyway").count(), 1, "{body}");
    };
    answered(&a.2, "plain");
    answered(&b.2, "batched");
    // The batch's second answer is the call answered again, not delivered.
    let found = ends(&gw, "slow", 4).await;
    let kinds = common::kinds_of(&found, "batched");
    assert_eq!(
        kinds,
        [
            ("tool_execution", "success"),
            ("tool_execution", "success"),
            ("tool_failure", "shutdown"),
        ],
        "{found:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_naming_no_id_before_the_answer_does_not_take_its_place() {
    // Found by a fresh pass: a sessionless request's first message was taken as its answer
    // whatever it was, so an error with `"id": null` that the server wrote first became the
    // whole HTTP response (400), the real answer was lost, and the trail said the client had
    // cancelled the call.
    let gw = deaf_to_cancel("");
    let url = gw.endpoint();
    let call = call_2026("\"noisy\"", "slow", r#"{"ms":10,"noise":true}"#);
    let (status, _, body) = post_2026(&url, ALICE_KEY, &call, Some("slow"), &[]).await;
    assert_eq!(status, 200, "{body}");
    // Both reach the client, as the server wrote them: the error first, on the stream.
    let got: Vec<Value> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| !d.is_empty())
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(got.len(), 2, "{body}");
    assert!(got[0]["id"].is_null(), "{body}");
    assert_eq!(got[1]["id"], "noisy", "{body}");
    assert_eq!(
        got[1]["result"]["content"][0]["text"], "done anyway",
        "{body}"
    );
    let found = ends(&gw, "slow", 1).await;
    let kinds = common::kinds_of(&found, "noisy");
    assert_eq!(kinds, [("tool_execution", "success")], "{found:#?}");
}

/// Anonymous clients (`allow_anonymous`) are kept apart by their address: one of them
/// holding `max_sessions_per_principal` sessions no longer shuts every other out, and one
/// cannot use another's session. Found by a hostile pass: all were one principal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_clients_at_different_addresses_are_different_principals() {
    let gw = Gateway::start_with("allow_anonymous = true\nmax_sessions_per_principal = 2", "");
    let url = gw.endpoint();
    let from = |ip: [u8; 4]| {
        reqwest::Client::builder()
            .local_address(std::net::IpAddr::from(ip))
            .build()
            .unwrap()
    };
    let open = |client: reqwest::Client, session: Option<String>| {
        let url = url.clone();
        async move {
            let mut req = client
                .post(&url)
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream")
                .body(if session.is_some() {
                    r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#
                } else {
                    INIT
                });
            if let Some(s) = &session {
                req = req
                    .header("mcp-session-id", s)
                    .header("mcp-protocol-version", "2025-06-18");
            }
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let id = resp
                .headers()
                .get("mcp-session-id")
                .map(|v| v.to_str().unwrap().to_string());
            (status, id)
        }
    };
    let first = from([127, 0, 0, 1]);
    let second = from([127, 0, 0, 2]);
    let (status, one) = open(first.clone(), None).await;
    assert_eq!(status, 200);
    assert_eq!(open(first.clone(), None).await.0, 200);
    // The first address holds its two sessions: its third is refused.
    assert_eq!(open(first.clone(), None).await.0, 429);
    // Another address is another principal, with sessions of its own.
    let (status, two) = open(second.clone(), None).await;
    assert_eq!(status, 200, "the second anonymous client was shut out");
    // Neither reaches the other's session.
    assert_eq!(open(second.clone(), one.clone()).await.0, 404);
    assert_eq!(open(first.clone(), two.clone()).await.0, 404);
    assert_eq!(open(first, one).await.0, 200);
    // The trail still names both `anonymous`, with their addresses.
    let addresses: std::collections::HashSet<String> = gw
        .events()
        .iter()
        .filter(|e| e["user_id"] == "anonymous")
        .filter_map(|e| {
            e["metadata"]["http"]["client_address"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert!(
        addresses.contains("127.0.0.1") && addresses.contains("127.0.0.2"),
        "{addresses:?}"
    );
}

/// Found by a fresh pair of eyes (helper-95 F1, F2): MCP 2026-07-28 "Subscriptions" tags a
/// `subscriptions/listen`'s acknowledgement, each of its notifications and its final result
/// with the listen's JSON-RPC id (`_meta["io.modelcontextprotocol/subscriptionId"]`), which
/// clients MUST correlate by. Through a shared process the client saw the pool's id (`1`) for
/// its own, and the subscription's notifications were dropped whenever another request was in
/// flight on the process. Here the notification is sent while a call runs on the one child.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriptions_notifications_reach_its_listen_with_the_clients_id_while_another_call_runs()
 {
    const SUB: &str = "io.modelcontextprotocol/subscriptionId";
    let server = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/peers/subscriptions_server.py"
    );
    let gw = Gateway::start_upstream(
        &format!("\"python3\", \"{server}\""),
        "pool_max_children = 1",
        "",
    );
    let url = gw.endpoint();
    // The client's id as it wrote it, escape included: what it gets back, byte for byte.
    let listen = format!(
        r#"{{"jsonrpc":"2.0","id":"listen\u002d1","method":"subscriptions/listen","params":{{"notifications":{{"resourceSubscriptions":["file:///a"]}},{META_2026}}}}}"#
    );
    let mut stream = http()
        .post(&url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("authorization", format!("Bearer {ALICE_KEY}"))
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "subscriptions/listen")
        .body(listen)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let mut body = Vec::new();
    // Until the acknowledgement: the listen is then in flight on the child.
    tokio::time::timeout(Duration::from_secs(20), async {
        while !String::from_utf8_lossy(&body).contains("notifications/subscriptions/acknowledged") {
            let chunk = stream.chunk().await.unwrap();
            let chunk = chunk.unwrap_or_else(|| {
                panic!(
                    "the listen ended before its acknowledgement: {}",
                    String::from_utf8_lossy(&body)
                )
            });
            body.extend_from_slice(&chunk);
        }
    })
    .await
    .expect("the acknowledgement reaches the listen");
    // The other request on the same child: the server sends the subscription's notification
    // while this call is in flight, then answers it, then ends the listen.
    let (status, _, call) = tokio::time::timeout(
        Duration::from_secs(20),
        post_2026(
            &url,
            ALICE_KEY,
            &call_2026("\"c-1\"", "change", r#"{"uri":"file:///a"}"#),
            Some("change"),
            &[],
        ),
    )
    .await
    .expect("the call is answered");
    assert_eq!(status, 200, "{call}");
    let call = messages(&call);
    assert_eq!(
        call.len(),
        1,
        "only its answer on the call's stream: {call:#?}"
    );
    assert_eq!(call[0]["id"], "c-1", "{call:#?}");
    tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(chunk) = stream.chunk().await.unwrap() {
            body.extend_from_slice(&chunk);
        }
    })
    .await
    .expect("the listen's stream ends with its final result");
    let body = String::from_utf8(body).unwrap();
    // The messages of the stream (not its priming event, whose data is empty).
    let got: Vec<Value> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter(|d| !d.trim().is_empty())
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let kinds: Vec<&str> = got
        .iter()
        .map(|m| m["method"].as_str().unwrap_or("answer"))
        .collect();
    assert_eq!(
        kinds,
        [
            "notifications/subscriptions/acknowledged",
            "notifications/resources/updated",
            "answer"
        ],
        "{body}"
    );
    assert_eq!(got[0]["params"]["_meta"][SUB], "listen-1", "{body}");
    assert_eq!(got[1]["params"]["_meta"][SUB], "listen-1", "{body}");
    assert_eq!(got[1]["params"]["uri"], "file:///a", "{body}");
    assert_eq!(got[2]["id"], "listen-1", "{body}");
    assert_eq!(got[2]["result"]["_meta"][SUB], "listen-1", "{body}");
    // Each as the client wrote it (the server writes `"key": value`).
    assert_eq!(
        body.matches(&format!(r#""{SUB}": "listen\u002d1""#))
            .count(),
        3,
        "{body}"
    );
}

/// helper-95 F7: a sessionless 2026-07-28 call without `_meta` (its version only in the
/// `MCP-Protocol-Version` header) was recorded with `protocol_era: unknown`; a sessionless
/// request's core takes the header's version, so the trail says 2026.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sessionless_call_without_meta_is_recorded_in_its_headers_era() {
    let gw = Gateway::start("");
    let url = gw.endpoint();
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"no meta"}}}"#;
    let (status, _, text) = post_2026(&url, ALICE_KEY, body, Some("echo"), &[]).await;
    assert!(status < 500, "{status}: {text}");
    let events = gw.events();
    let access = events
        .iter()
        .find(|e| e["event_type"] == "tool_access" && e["tool_name"] == "echo")
        .unwrap_or_else(|| panic!("the call is not in the trail: {events:#?}"));
    assert_eq!(access["metadata"]["protocol_era"], "2026", "{access}");
    assert_eq!(
        access["metadata"]["protocol_version"], "2026-07-28",
        "{access}"
    );
}
