//! Calls in flight: out-of-order pairing, id spaces, cancellation, timeouts, input requests,
//! server crash and shutdown, all through the real binary.

mod common;

use std::time::{Duration, Instant};

use common::{
    Era, LineClient, TestStore, args, call_line, connect, example_server, initialized, kinds_of,
    pairs,
};
use rmcp::model::CallToolRequestParams;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_calls_finishing_out_of_order_pair_correctly() {
    for era in [
        Era::Initialize(rmcp::model::ProtocolVersion::V_2025_11_25),
        Era::Discover,
    ] {
        let store = TestStore::new("");
        let client = connect(&era, store.proxied_example()).await;
        let mut set = tokio::task::JoinSet::new();
        // 48 calls; the later ones are faster, so responses arrive in reverse order.
        for i in 0..48u64 {
            let peer = client.peer().clone();
            set.spawn(async move {
                let ms = 480 - i * 10;
                let r = peer
                    .call_tool(
                        CallToolRequestParams::new("slow")
                            .with_arguments(args(json!({"ms": ms, "steps": 1}))),
                    )
                    .await
                    .expect("slow");
                (ms, serde_json::to_value(&r.content).unwrap())
            });
        }
        while let Some(done) = set.join_next().await {
            let (ms, content) = done.unwrap();
            assert_eq!(
                content[0]["text"],
                format!("slept {ms}ms"),
                "a result reached the wrong caller"
            );
        }
        client.cancel().await.unwrap();

        let events = store.events();
        let pairs = pairs(&events);
        assert_eq!(pairs.len(), 48);
        for (access, end) in &pairs {
            assert_eq!(end["result"], "success");
            let ms = access["metadata"]["arguments"]["ms"].as_u64().unwrap();
            let took = end["metadata"]["execution_time_us"].as_u64().unwrap();
            assert!(
                took >= ms * 1000,
                "{ms} ms call paired with an end after {took} µs"
            );
        }
    }
}

#[tokio::test]
async fn number_and_string_ids_and_both_id_spaces_stay_apart() {
    let store = TestStore::new("");
    let mut c = initialized(&store).await;
    // The same value as a number and as a string, in flight together.
    c.send(&call_line(json!(1), "slow", json!({"ms": 400, "steps": 1})))
        .await;
    c.send(&call_line(json!("1"), "echo", json!({"text": "string id"})))
        .await;
    let first: Value = c.recv_json().await;
    assert_eq!(first["id"], "1");
    assert_eq!(first["result"]["content"][0]["text"], "string id");
    let second = c.recv_json().await;
    assert_eq!(second["id"], 1);
    assert_eq!(second["result"]["content"][0]["text"], "slept 400ms");

    // The server's elicitation request uses its own counter (0), like this call's id.
    c.send(&call_line(json!(0), "confirm", json!({"action": "ship"})))
        .await;
    let request = c.recv_json().await;
    assert_eq!(request["method"], "elicitation/create");
    let server_id = request["id"].clone();
    assert_eq!(server_id, 0, "this test needs the ids to collide");
    c.send(format!("{}\n", json!({"jsonrpc": "2.0", "id": server_id, "result": {"action": "accept", "content": {"confirmed": true}}})).as_bytes()).await;
    let done = c.recv_json().await;
    assert_eq!(done["id"], 0);
    assert_eq!(done["result"]["content"][0]["text"], "confirmed: ship");
    assert!(c.finish().await.success());

    let events = store.events();
    let pairs = pairs(&events);
    let summary: Vec<(Value, Value, Value)> = pairs
        .iter()
        .map(|(a, e)| {
            (
                a["metadata"]["request_id"].clone(),
                a["tool_name"].clone(),
                e["result"].clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (json!(1), json!("slow"), json!("success")),
            (json!("1"), json!("echo"), json!("success")),
            (json!(0), json!("confirm"), json!("success")),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_call_ends_with_a_cancelled_event() {
    for era in [
        Era::Initialize(rmcp::model::ProtocolVersion::V_2025_06_18),
        Era::Discover,
    ] {
        let store = TestStore::new("");
        let client = connect(&era, store.proxied_example()).await;
        // Dropping rmcp's call future sends notifications/cancelled.
        let dropped = tokio::time::timeout(
            Duration::from_millis(300),
            client.call_tool(
                CallToolRequestParams::new("slow")
                    .with_arguments(args(json!({"ms": 3000, "steps": 3}))),
            ),
        )
        .await;
        assert!(dropped.is_err(), "the call should still be running");
        // The session goes on.
        let r = client
            .call_tool(
                CallToolRequestParams::new("echo").with_arguments(args(json!({"text": "after"}))),
            )
            .await
            .unwrap();
        assert_eq!(
            serde_json::to_value(&r.content).unwrap()[0]["text"],
            "after"
        );
        client.cancel().await.unwrap();

        let events = store.events();
        let pairs = pairs(&events);
        assert_eq!(pairs.len(), 2);
        let (_, end) = &pairs[0];
        assert_eq!(end["event_type"], "tool_failure");
        assert_eq!(end["result"], "cancelled");
        assert_eq!(end["metadata"]["failure_side"], "client");
        assert_eq!(
            end["metadata"]["reason"],
            "cancelled by the client: request abandoned by the caller"
        );
        assert_eq!(pairs[1].1["result"], "success");
    }
}

#[tokio::test]
async fn a_call_past_its_timeout_fails_visibly_and_the_session_goes_on() {
    let store = TestStore::new("[limits]\ncall_timeout_ms = 300\n");
    let mut c = initialized(&store).await;
    let started = Instant::now();
    c.send(&call_line(
        json!(41),
        "slow",
        json!({"ms": 1500, "steps": 1}),
    ))
    .await;
    let reply = c.recv_json().await;
    let waited = started.elapsed();
    assert_eq!(reply["id"], 41);
    assert_eq!(reply["error"]["code"], -32001, "{reply}");
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap()
            .contains("limits.call_timeout_ms")
    );
    let event_id = reply["error"]["data"]["event_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_millis(1400),
        "{waited:?}"
    );

    // The late result (if the server still sends one) must not reach the client: the next
    // line is the answer to the next call.
    c.send(&call_line(json!(42), "echo", json!({"text": "next"})))
        .await;
    let next = c.recv_json().await;
    assert_eq!(next["id"], 42, "{next}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    c.send(&call_line(json!(43), "echo", json!({"text": "later"})))
        .await;
    assert_eq!(c.recv_json().await["id"], 43);
    assert!(c.finish().await.success());

    let events = store.events();
    let pairs = pairs(&events);
    assert_eq!(pairs.len(), 3);
    let (_, end) = &pairs[0];
    assert_eq!(
        end["event_id"],
        event_id.as_str(),
        "the error names the failure event"
    );
    assert_eq!(end["result"], "timeout");
    assert_eq!(end["metadata"]["error_code"], -32001);
    assert!(pairs[1..].iter().all(|(_, e)| e["result"] == "success"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_to_a_server_that_stopped_reading_still_time_out_when_its_queue_is_full() {
    // Found by a hostile-input pass: once the queue to the server was full, the timer's first
    // cancellation waited there for ever, and no timed-out call was ever answered (the trail
    // said they were).
    let store = TestStore::new("[limits]\ncall_timeout_ms = 1000\n");
    let mut proxy = store
        .proxy_command(&["sh", "-c", "exec sleep 600"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn the proxy");
    let mut stdin = proxy.stdin.take().expect("stdin");
    let stdout = proxy.stdout.take().expect("stdout");
    // More calls than the pipe to the server and the proxy's queue hold: the client's writes
    // stall too, so they go from a task of their own.
    const CALLS: u64 = 1500;
    let writer = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let text = "x".repeat(1000);
        for id in 0..CALLS {
            let line = call_line(json!(id), "echo", json!({ "text": text }));
            if stdin.write_all(&line).await.is_err() {
                return;
            }
        }
        // Kept open: the client is still there, waiting for its answers.
        std::future::pending::<()>().await;
    });
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let mut timed_out = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while timed_out.len() < 1024 {
        let line = tokio::time::timeout_at(deadline.into(), lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("only {} answers within 30 s", timed_out.len()))
            .expect("read")
            .expect("a line, not EOF");
        let answer: Value = serde_json::from_str(&line).expect("json");
        assert_eq!(answer["error"]["code"], -32001, "{answer}");
        let id = answer["id"].as_u64().expect("the call's id");
        assert!(id < CALLS && timed_out.insert(id), "{answer}");
    }
    writer.abort();
    // Ended by a signal, not killed on drop: a proxy killed with SIGKILL leaves its server
    // (`sleep 600`, in a process group of its own) running after the test.
    let pid = nix::unistd::Pid::from_raw(proxy.id().expect("running") as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(10), proxy.wait()).await;
}

#[tokio::test]
async fn a_server_crash_mid_call_fails_the_calls_in_flight_and_passes_its_status_on() {
    let store = TestStore::new("");
    let mut c = initialized(&store).await;
    c.send(&call_line(
        json!(1),
        "slow",
        json!({"ms": 10_000, "steps": 1}),
    ))
    .await;
    c.send(&call_line(
        json!(2),
        "crash",
        json!({"after_ms": 200, "status": 3}),
    ))
    .await;
    assert_eq!(c.recv().await, None, "the client sees the server go away");
    let status = c.finish().await;
    assert_eq!(
        status.code(),
        Some(3),
        "the proxy exits with the server's status"
    );

    let events = store.events();
    let pairs = pairs(&events);
    assert_eq!(pairs.len(), 2);
    for (_, end) in &pairs {
        assert_eq!(end["event_type"], "tool_failure");
        assert_eq!(end["result"], "server_exit");
        assert_eq!(
            end["metadata"]["reason"],
            "the server exited with status 3 before answering"
        );
    }
}

#[tokio::test]
async fn a_server_that_closes_its_output_but_keeps_running_ends_the_session_and_its_calls() {
    // It can never answer again: its calls must not wait for call_timeout_ms (10 minutes).
    let store = TestStore::new("[limits]\nshutdown_grace_ms = 200\n");
    let mut c = LineClient::spawn(store.proxy_command(&[
        "sh",
        "-c",
        "exec >&-; while :; do sleep 0.05; done",
    ]));
    c.send(&call_line(json!(1), "echo", json!({"text": "hi"})))
        .await;
    let started = Instant::now();
    assert_eq!(c.recv().await, None, "the session ends");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "ended after {:?}",
        started.elapsed()
    );
    let status = c.wait_exit().await;
    assert_eq!(status.code(), Some(128 + 15), "the server was sent SIGTERM");

    let events = store.events();
    let pairs = pairs(&events);
    assert_eq!(pairs.len(), 1, "{events:#?}");
    let (_, end) = &pairs[0];
    assert_eq!(end["result"], "server_exit");
    let reason = end["metadata"]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("the server closed its output without exiting"),
        "{reason}"
    );
}

#[tokio::test]
async fn client_eof_closes_the_server_and_escalates_to_kill_when_it_hangs() {
    // A server that ignores both EOF and SIGTERM.
    let store = TestStore::new("[limits]\nshutdown_grace_ms = 200\n");
    let c = LineClient::spawn(store.proxy_command(&[
        "sh",
        "-c",
        "trap '' TERM; while :; do sleep 0.05; done",
    ]));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let status = c.finish().await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        status.code(),
        Some(128 + 9),
        "killed with SIGKILL after two grace periods"
    );

    // A server that ignores EOF but obeys SIGTERM.
    let store = TestStore::new("[limits]\nshutdown_grace_ms = 200\n");
    let c = LineClient::spawn(store.proxy_command(&["sleep", "30"]));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(c.finish().await.code(), Some(128 + 15));
}

#[tokio::test]
async fn a_client_that_closes_its_input_at_once_gets_the_answers_of_a_slow_starting_server() {
    // helper-77 #5: `printf … | proxy -- npx server` (a smoke test, a script). Reading the
    // server directly, the client gets its answers; the proxy stopped the server one grace
    // after the client's EOF, before it had even started.
    let store = TestStore::new("[limits]\nshutdown_grace_ms = 200\n");
    let server = example_server();
    let mut c = LineClient::spawn(store.proxy_command(&[
        "sh",
        "-c",
        &format!("sleep 1.5; exec '{}'", server.display()),
    ]));
    c.send(br#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"pipe","version":"1"}}}"#).await;
    c.send(b"\n{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n")
        .await;
    c.send(&call_line(json!(1), "echo", json!({"text": "late"})))
        .await;
    c.close_input();
    assert_eq!(c.recv_json().await["id"], 0);
    let answer = c.recv_json().await;
    assert_eq!(answer["result"]["content"][0]["text"], "late", "{answer}");
    assert!(c.wait_exit().await.success());
    let events = store.events();
    let pairs = pairs(&events);
    assert_eq!(pairs.len(), 1);
    assert_eq!(pairs[0].1["result"], "success");
}

#[tokio::test]
async fn sigterm_to_the_proxy_shuts_down_cleanly_with_calls_in_flight() {
    let store = TestStore::new("");
    let mut c = initialized(&store).await;
    c.send(&call_line(
        json!(9),
        "slow",
        json!({"ms": 10_000, "steps": 1}),
    ))
    .await;
    c.send(&call_line(json!(10), "echo", json!({"text": "answered"})))
        .await;
    assert_eq!(c.recv_json().await["id"], 10);
    let pid = c.child.id().unwrap() as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = c.wait_exit().await;
    assert!(
        status.code().is_some(),
        "the proxy exits on its own, not by the signal: {status:?}"
    );

    let events = store.events();
    let pairs = pairs(&events);
    assert_eq!(pairs.len(), 2);
    assert_eq!(
        pairs[0].1["result"], "shutdown",
        "the unanswered call is failed, not lost"
    );
    assert_eq!(pairs[0].1["metadata"]["failure_side"], "internal");
    assert!(
        pairs[0].1["metadata"]["reason"]
            .as_str()
            .unwrap()
            .contains("stopped by SIGTERM")
    );
    assert_eq!(pairs[1].1["result"], "success");
}

#[tokio::test]
async fn progress_notifications_pass_in_order_before_the_result() {
    let store = TestStore::new("");
    let mut c = initialized(&store).await;
    let line = serde_json::to_vec(&json!({
        "jsonrpc": "2.0", "id": 5, "method": "tools/call",
        "params": {"name": "slow", "arguments": {"ms": 200, "steps": 4}, "_meta": {"progressToken": "tok"}}
    }))
    .unwrap();
    c.send(&[line, b"\n".to_vec()].concat()).await;
    let mut progress = Vec::new();
    loop {
        let msg = c.recv_json().await;
        if msg["method"] == "notifications/progress" {
            assert_eq!(msg["params"]["progressToken"], "tok");
            progress.push(msg["params"]["progress"].as_f64().unwrap());
        } else {
            assert_eq!(msg["id"], 5);
            break;
        }
    }
    assert_eq!(progress, vec![1.0, 2.0, 3.0, 4.0]);
    assert!(c.finish().await.success());
}

#[tokio::test]
async fn an_unknown_server_command_is_a_clear_error() {
    let store = TestStore::new("");
    let out = store
        .proxy_command(&["/nonexistent/mcp-server", "--flag"])
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot start the MCP server `/nonexistent/mcp-server --flag`"),
        "{err}"
    );
    assert!(err.contains("hint:"), "{err}");
    assert!(out.stdout.is_empty(), "nothing but MCP on stdout");
    let _ = example_server();

    // helper-90 (low): the client saw only its server disconnect. Its first request is
    // answered with the error, under its own id, exactly as sent.
    for (config, why) in [
        (None, "cannot start the MCP server"),
        (Some("[upstream\n"), "proxy.toml:1"),
    ] {
        let mut command = store.proxy_command(&["/nonexistent/mcp-server"]);
        if let Some(text) = config {
            std::fs::write(&store.config, text).unwrap();
        }
        let mut child = command
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(format!("{}\n", common::INIT).as_bytes())
            .await
            .unwrap();
        let out = child.wait_with_output().await.unwrap();
        assert_eq!(out.status.code(), Some(2));
        let answer: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(&out.stdout)));
        assert_eq!(answer["id"], "init", "{answer}");
        assert_eq!(answer["error"]["code"], -32603, "{answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with("mcp-audit-proxy could not start") && message.contains(why),
            "{answer}"
        );
        drop(stdin);
    }
}

#[tokio::test]
async fn a_missing_server_folder_is_named_as_such_not_as_a_missing_program() {
    // Found by a hostile-input pass: the OS reports a missing `current_dir` as the program's
    // ENOENT, and the proxy said to check that the program is installed.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("proxy.toml");
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    for (cwd, why) in [("nope", "no such folder"), ("a-file", "it is not a folder")] {
        std::fs::write(
            &config,
            format!(
                "[upstream]\ncwd = \"{cwd}\"\n[audit]\nstore_dir = \"store\"\n[alerts]\nenabled = false\n"
            ),
        )
        .unwrap();
        let out = tokio::process::Command::new(common::proxy_bin())
            .args(["stdio", "--config"])
            .arg(&config)
            .arg("--")
            .arg(example_server())
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        let named = dir.path().join(cwd);
        assert!(
            err.contains(&format!("in {}: {why}", named.display())),
            "{err}"
        );
        assert!(err.contains("upstream.cwd"), "{err}");
        assert!(!err.contains("on PATH"), "{err}");
        assert!(out.stdout.is_empty(), "nothing but MCP on stdout");
    }
}

#[tokio::test]
async fn a_late_answer_after_a_cancel_is_forwarded_and_recorded() {
    let store = TestStore::new("");
    let answer = r#"{"jsonrpc":"2.0","id":5,"result":{"content":[{"type":"text","text":"late"}]}}"#;
    let script =
        format!("read call; read cancel; sleep 0.2; printf '%s\\n' '{answer}'; cat >/dev/null");
    let mut c = LineClient::spawn(store.proxy_command(&["sh", "-c", &script]));
    c.send(&call_line(json!(5), "x", json!({}))).await;
    c.send(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":{\"requestId\":5}}\n").await;
    let late = c.recv().await.unwrap();
    assert_eq!(
        late,
        format!("{answer}\n").as_bytes(),
        "the client sees what the server said"
    );
    assert!(c.finish().await.success());
    let events = store.events();
    let kinds: Vec<(Value, Value)> = events
        .iter()
        .map(|e| (e["event_type"].clone(), e["result"].clone()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (json!("tool_access"), json!("initiated")),
            (json!("tool_failure"), json!("cancelled")),
            (json!("tool_execution"), json!("success")),
        ]
    );
    assert_eq!(
        events[0]["linked_event_id"], events[1]["event_id"],
        "the pair's end is the cancellation"
    );
    assert_eq!(events[2]["linked_event_id"], events[0]["event_id"]);
    assert!(
        events[2]["metadata"]["reason"]
            .as_str()
            .unwrap()
            .contains("after the client cancelled")
    );
}

#[tokio::test]
async fn a_late_answer_inside_a_server_batch_is_held_back_after_a_timeout() {
    let store = TestStore::new("[limits]\ncall_timeout_ms = 300\n");
    let batch = r#"[{"jsonrpc":"2.0","id":1,"result":{"content":[]}},{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"x"}}]"#;
    // The server reads the call and the proxy's cancellation, then answers in a batch.
    let script = format!("read call; read cancel; printf '%s\\n' '{batch}'; cat >/dev/null");
    let mut c = LineClient::spawn(store.proxy_command(&["sh", "-c", &script]));
    c.send(&call_line(json!(1), "x", json!({}))).await;
    let timeout = c.recv_json().await;
    assert_eq!(timeout["error"]["code"], -32001);
    let rest = c.recv_json().await;
    assert_eq!(
        rest,
        json!([{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"x"}}]),
        "only the notification is left of the batch"
    );
    assert!(c.finish().await.success());
    let events = store.events();
    let results: Vec<&str> = events
        .iter()
        .map(|e| e["result"].as_str().unwrap())
        .collect();
    assert_eq!(results, ["initiated", "timeout", "success"]);
    assert!(
        events[2]["metadata"]["reason"]
            .as_str()
            .unwrap()
            .contains("not forwarded")
    );
}

#[tokio::test]
async fn shutdown_signals_reach_the_processes_a_wrapper_started() {
    let store = TestStore::new("[limits]\nshutdown_grace_ms = 200\n");
    // `sh` waits for `sleep`, which ignores its stdin; only the group signal ends both.
    let c = LineClient::spawn(store.proxy_command(&["sh", "-c", "sleep 31.4159; :"]));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status = c.finish().await;
    assert_eq!(status.code(), Some(128 + 15));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let orphans: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|p| std::fs::read(p.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains("sleep 31.4159"))
        .collect();
    assert!(orphans.is_empty(), "orphaned: {orphans:?}");
}

#[tokio::test]
async fn an_answer_the_client_never_got_is_recorded_as_not_delivered() {
    // Found by a fresh pair of eyes: a client gone from its end of the pipe (EPIPE) left a
    // trail saying `success` and nothing more, as if the answer had reached it.
    let store = TestStore::new("");
    let mut command = store.proxied_example();
    command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    stdin
        .write_all(format!("{}\n", common::INIT).as_bytes())
        .await
        .unwrap();
    let init = lines.next_line().await.unwrap().unwrap();
    assert!(init.contains("\"init\""), "{init}");
    stdin
        .write_all(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n")
        .await
        .unwrap();
    stdin
        .write_all(&call_line(json!(2), "slow", json!({"ms": 400, "steps": 1})))
        .await
        .unwrap();
    // The client stops reading before the answer comes; its stdin stays open.
    drop(lines);
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the proxy should stop when the client is gone")
        .unwrap();
    assert!(status.code().is_some(), "{status:?}");
    let events = store.events();
    let of_call: Vec<&Value> = events
        .iter()
        .filter(|e| e["metadata"]["request_id"] == 2)
        .collect();
    let kinds: Vec<(&str, &str)> = of_call
        .iter()
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
            ("tool_execution", "success"),
            ("tool_failure", "shutdown"),
        ],
        "{of_call:?}"
    );
    let undelivered = of_call[2];
    let reason = undelivered["metadata"]["reason"].as_str().unwrap();
    let end = of_call[1]["event_id"].as_str().unwrap();
    assert!(
        reason.contains("not delivered") && reason.contains(end),
        "{reason}"
    );
    assert_eq!(
        undelivered["metadata"]["failure_side"], "client",
        "{undelivered}"
    );
    assert_eq!(undelivered["linked_event_id"], of_call[0]["event_id"]);
}

#[tokio::test]
async fn a_call_the_server_can_no_longer_read_fails_at_once() {
    // Found by a fresh pair of eyes: the server closed its stdin and ran on; the write failed
    // (EPIPE), yet the call waited for limits.call_timeout_ms (10 minutes) and the trail
    // ended it as a timeout, as if the server had had it.
    let server = r#"
import json, os, sys, time
line = sys.stdin.buffer.readline()
print(json.dumps({"jsonrpc": "2.0", "id": json.loads(line)["id"], "result": {"protocolVersion": "2025-06-18", "capabilities": {"tools": {}}, "serverInfo": {"name": "f", "version": "1"}}}), flush=True)
os.close(0)
time.sleep(30)
"#;
    let store = TestStore::new("[limits]\nshutdown_grace_ms = 200\n");
    let mut c = LineClient::spawn(store.proxy_command(&["python3", "-c", server]));
    c.initialize().await;
    let started = Instant::now();
    for id in [2, 3] {
        c.send(&call_line(json!(id), "echo", json!({"text": "hi"})))
            .await;
        let got = c.recv_json().await;
        assert_eq!(got["id"], id, "{got}");
        assert_eq!(got["error"]["code"], -32603, "{got}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    c.finish().await;
    let pairs = pairs(&store.events());
    assert_eq!(pairs.len(), 2, "{pairs:?}");
    for (_, end) in &pairs {
        assert_eq!(end["result"], "refused", "{end}");
        let reason = end["metadata"]["reason"].as_str().unwrap_or_default();
        assert!(reason.contains("not delivered"), "{end}");
    }
}

#[tokio::test]
async fn a_call_written_whole_before_the_server_stopped_reading_stays_in_flight() {
    // Found by a review: when a write of several lines failed half-way, every line in it was
    // failed as not delivered, also a call the server had read (and then ran and answered:
    // that answer went to the client as a second answer, with no end event).
    let server = r#"
import json, os, sys, time
buf = b""
def lines():
    global buf
    while True:
        while b"\n" not in buf:
            chunk = os.read(0, 65536)
            if not chunk:
                return
            buf += chunk
        line, buf = buf.split(b"\n", 1)
        yield line
def send(m):
    sys.stdout.write(json.dumps(m) + "\n"); sys.stdout.flush()
it = lines()
for line in it:
    m = json.loads(line)
    if m.get("method") == "initialize":
        send({"jsonrpc": "2.0", "id": m["id"], "result": {"protocolVersion": "2025-06-18", "capabilities": {"tools": {}}, "serverInfo": {"name": "f", "version": "1"}}})
        break
next(it)  # notifications/initialized
time.sleep(1.0)  # the proxy's writer fills the pipe and waits
for line in it:
    m = json.loads(line)
    if m.get("method") == "ping":
        send({"jsonrpc": "2.0", "id": m["id"], "result": {}})
    elif m.get("method") == "tools/call":
        os.close(0)  # stops reading; what follows in the pipe is never read
        time.sleep(0.3)
        send({"jsonrpc": "2.0", "id": m["id"], "result": {"content": [{"type": "text", "text": "ran"}]}})
        break
time.sleep(30)
"#;
    let store = TestStore::new("[limits]\nshutdown_grace_ms = 200\n");
    let mut c = LineClient::spawn(store.proxy_command(&["python3", "-c", server]));
    c.initialize().await;
    // A ping larger than the pipe, then the call, then another large ping: the call and the
    // second ping go out in one write, which fails after the call.
    let ping = |id: &str, n: usize| {
        format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":\"{id}\",\"method\":\"ping\",\"params\":{{\"_meta\":{{\"pad\":\"{}\"}}}}}}\n",
            "x".repeat(n)
        )
        .into_bytes()
    };
    let mut all = ping("first", 3 << 20);
    all.extend(call_line(json!(2), "echo", json!({"text": "hi"})));
    all.extend(ping("last", 3 << 20));
    c.send(&all).await;
    let mut got = std::collections::HashMap::new();
    while got.len() < 3 {
        let m = c.recv_json().await;
        got.insert(m["id"].to_string(), m);
    }
    assert!(got["\"first\""]["result"].is_object(), "{got:?}");
    assert_eq!(got["\"last\""]["error"]["code"], -32603, "{got:?}");
    assert_eq!(
        got["2"]["result"]["content"][0]["text"], "ran",
        "the call the server read gets its answer: {got:?}"
    );
    c.finish().await;
    let events = store.events();
    let pairs = pairs(&events);
    assert_eq!(pairs.len(), 1, "{events:#?}");
    assert_eq!(pairs[0].1["result"], "success", "{events:#?}");
    assert!(
        events.iter().all(|e| e["result"] != "refused"),
        "{events:#?}"
    );
}

#[tokio::test]
async fn an_answer_arriving_after_the_client_is_gone_is_recorded_as_not_delivered() {
    // Found by a fresh pair of eyes: the client's output was found closed on an earlier
    // write (a ping's answer); the call answered after that was recorded `success` alone.
    let server = r#"
import json, sys, time
for line in sys.stdin:
    m = json.loads(line)
    if m.get("method") == "tools/call":
        time.sleep(0.5)
        out = {"content": [{"type": "text", "text": "done"}]}
    elif "id" in m:
        out = {}
    else:
        continue
    print(json.dumps({"jsonrpc": "2.0", "id": m["id"], "result": out}), flush=True)
"#;
    let store = TestStore::new("");
    let mut command = store.proxy_command(&["python3", "-c", server]);
    command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // The client stops reading at once; its stdin stays open.
    drop(child.stdout.take());
    use tokio::io::AsyncWriteExt;
    let mut both = b"{\"jsonrpc\":\"2.0\",\"id\":\"p\",\"method\":\"ping\"}\n".to_vec();
    both.extend(call_line(json!(2), "slow", json!({})));
    stdin.write_all(&both).await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the proxy should stop when the client is gone")
        .unwrap();
    assert!(status.code().is_some(), "{status:?}");
    let events = store.events();
    let kinds = kinds_of(&events, 2);
    assert_eq!(
        kinds,
        [
            ("tool_access", "initiated"),
            ("tool_execution", "success"),
            ("tool_failure", "shutdown"),
        ],
        "{events:#?}"
    );
}

#[tokio::test]
async fn progress_starts_a_calls_timeout_again_up_to_its_maximum() {
    // Found by a hostile pass: a long tool that reported progress failed at call_timeout_ms
    // all the same (MCP lets progress reset the timeout, with a maximum), and its progress
    // kept reaching the client after the client had its timeout error.
    let store = TestStore::new("[limits]\ncall_timeout_ms = 1500\n");
    let mut c = initialized(&store).await;
    c.send(br#"{"jsonrpc":"2.0","id":51,"method":"tools/call","params":{"name":"slow","arguments":{"ms":4000,"steps":20},"_meta":{"progressToken":"p51"}}}
"#)
    .await;
    let mut progress = 0;
    let answer = loop {
        let line = c.recv_json().await;
        if line["method"] == "notifications/progress" {
            progress += 1;
            continue;
        }
        break line;
    };
    assert_eq!(answer["id"], 51, "{answer}");
    assert!(
        answer["result"].is_object(),
        "timed out despite progress: {answer}"
    );
    assert!(progress >= 19, "{progress}");
    assert!(c.finish().await.success());

    // A server that reports progress for ever (and ignores the cancellation) meets the
    // maximum; what it reports after that does not reach the client.
    let server = r#"
import sys, json, threading, time
def report(id, token):
    while True:
        time.sleep(0.1)
        sys.stdout.write(json.dumps({"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":token,"progress":1}}) + "\n")
        sys.stdout.flush()
for line in sys.stdin:
    m = json.loads(line)
    if m.get("method") == "tools/call":
        threading.Thread(target=report, args=(m["id"], m["params"]["_meta"]["progressToken"]), daemon=True).start()
    elif m.get("method") == "ping":
        sys.stdout.write(json.dumps({"jsonrpc":"2.0","id":m["id"],"result":{}}) + "\n")
        sys.stdout.flush()
"#;
    let store = TestStore::new("[limits]\ncall_timeout_ms = 600\ncall_timeout_max_ms = 2000\n");
    let mut c = LineClient::spawn(store.proxy_command(&["python3", "-c", server]));
    // The server is up (a cold python3 start is not counted).
    c.send(b"{\"jsonrpc\":\"2.0\",\"id\":50,\"method\":\"ping\"}\n")
        .await;
    assert_eq!(c.recv_json().await["id"], 50);
    let started = Instant::now();
    c.send(br#"{"jsonrpc":"2.0","id":52,"method":"tools/call","params":{"name":"busy","arguments":{},"_meta":{"progressToken":"p52"}}}
"#)
    .await;
    let answer = loop {
        let line = c.recv_json().await;
        if line["method"] != "notifications/progress" {
            break line;
        }
    };
    let waited = started.elapsed();
    assert_eq!(answer["error"]["code"], -32001, "{answer}");
    assert!(
        waited >= Duration::from_millis(2000) && waited < Duration::from_millis(5000),
        "{waited:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    c.send(b"{\"jsonrpc\":\"2.0\",\"id\":53,\"method\":\"ping\"}\n")
        .await;
    let next = c.recv_json().await;
    assert_eq!(
        next["id"], 53,
        "progress after the timeout reached the client: {next}"
    );
    assert!(c.finish().await.success());
}
