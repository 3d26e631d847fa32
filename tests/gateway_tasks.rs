//! Tasks through the gateway in front of a remote (`url`) upstream, which sees every
//! principal under the gateway's one credential (helper-109 F1): a principal never lists,
//! gets, fetches the result of, updates or cancels a task another principal created, in
//! either era; another's task id is refused exactly as an id nobody created, and recorded.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use common::gateway::*;
use common::proxy_bin;
use serde_json::{Value, json};

/// A remote MCP server that keeps tasks per caller credential (`Authorization`), as MCP
/// asks: behind the gateway every principal is one caller to it. JSON answers only, no
/// sessions. Records each request's method and `taskId`.
struct TaskRemote {
    url: String,
    seen: Arc<Mutex<Vec<Asked>>>,
}

/// A request's method and `taskId`, as the remote received it.
type Asked = (String, Option<String>);

impl TaskRemote {
    fn start() -> TaskRemote {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/mcp", listener.local_addr().unwrap());
        let seen: Arc<Mutex<Vec<Asked>>> = Arc::default();
        // taskId -> (credential, the arguments of the call that made it)
        let tasks: Arc<Mutex<Vec<(String, String, Value)>>> = Arc::default();
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let (log, tasks) = (log.clone(), tasks.clone());
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    loop {
                        let mut start = String::new();
                        if reader.read_line(&mut start).unwrap_or(0) == 0 {
                            return;
                        }
                        let (mut length, mut credential) = (0usize, String::new());
                        loop {
                            let mut line = String::new();
                            reader.read_line(&mut line).unwrap();
                            let line = line.trim_end();
                            if line.is_empty() {
                                break;
                            }
                            let (k, v) = line.split_once(':').unwrap();
                            match k.to_ascii_lowercase().as_str() {
                                "content-length" => length = v.trim().parse().unwrap(),
                                "authorization" => credential = v.trim().to_string(),
                                _ => {}
                            }
                        }
                        let mut body = vec![0; length];
                        reader.read_exact(&mut body).unwrap();
                        let reply = |stream: &mut std::net::TcpStream, status: &str, text: &str| {
                            let head = format!(
                                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                                text.len()
                            );
                            let _ = stream.write_all(head.as_bytes());
                            let _ = stream.write_all(text.as_bytes());
                        };
                        if !start.starts_with("POST ") {
                            reply(&mut stream, "405 Method Not Allowed", "");
                            continue;
                        }
                        let msg: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        let method = msg["method"].as_str().unwrap_or("-").to_string();
                        let p = &msg["params"];
                        let task = p["taskId"].as_str().map(str::to_string);
                        log.lock().unwrap().push((method.clone(), task.clone()));
                        if msg.get("id").is_none() {
                            reply(&mut stream, "202 Accepted", "");
                            continue;
                        }
                        let modern = p["_meta"]["io.modelcontextprotocol/protocolVersion"]
                            .as_str()
                            .is_some();
                        let mine = |t: &Option<String>| {
                            let all = tasks.lock().unwrap();
                            let found = all
                                .iter()
                                .find(|(id, c, _)| Some(id) == t.as_ref() && *c == credential);
                            found.map(|(_, _, args)| args.clone())
                        };
                        let unknown = json!({"code": -32602, "message": "Failed to retrieve task: Task not found"});
                        let answer = match method.as_str() {
                            "initialize" => Ok(json!({
                                "protocolVersion": p["protocolVersion"],
                                "capabilities": {"tools": {}, "tasks": {"list": {}, "cancel": {},
                                    "requests": {"tools": {"call": {}}}}},
                                "serverInfo": {"name": "task-remote", "version": "1"}})),
                            "server/discover" => Ok(json!({
                                "supportedVersions": ["2026-07-28"],
                                "capabilities": {"tools": {},
                                    "extensions": {"io.modelcontextprotocol/tasks": {}}},
                                "serverInfo": {"name": "task-remote", "version": "1"}})),
                            "tools/list" => Ok(json!({"tools": [
                                {"name": "task_tool", "inputSchema": {"type": "object"}}]})),
                            "tools/call" => {
                                let mut all = tasks.lock().unwrap();
                                let id = format!("task-{}", all.len() + 1);
                                all.push((id.clone(), credential.clone(), p["arguments"].clone()));
                                let task = json!({"taskId": id, "status": "working",
                                    "createdAt": "2026-01-01T00:00:00Z", "ttl": 60000});
                                Ok(if modern {
                                    let mut t = task;
                                    t["resultType"] = json!("task");
                                    t
                                } else {
                                    json!({"task": task})
                                })
                            }
                            "tasks/list" => {
                                let all = tasks.lock().unwrap();
                                let listed: Vec<Value> = all
                                    .iter()
                                    .filter(|(_, c, _)| *c == credential)
                                    .map(|(id, _, _)| json!({"taskId": id, "status": "completed"}))
                                    .collect();
                                Ok(if modern {
                                    json!({"resultType": "complete", "tasks": listed})
                                } else {
                                    json!({"tasks": listed})
                                })
                            }
                            "tasks/get" => match mine(&task) {
                                Some(args) if modern => Ok(json!({"resultType": "complete",
                                    "taskId": task, "status": "completed",
                                    "result": {"content": [{"type": "text",
                                        "text": format!("private result for {args}")}]}})),
                                Some(_) => Ok(json!({"taskId": task, "status": "completed"})),
                                None => Err(unknown),
                            },
                            "tasks/result" => match mine(&task) {
                                Some(args) => Ok(json!({"content": [{"type": "text",
                                    "text": format!("private result for {args}")}]})),
                                None => Err(unknown),
                            },
                            "tasks/cancel" | "tasks/update" => match mine(&task) {
                                Some(_) => Ok(json!({"taskId": task, "status": "cancelled"})),
                                None => Err(unknown),
                            },
                            _ => Ok(json!({})),
                        };
                        let out = match answer {
                            Ok(r) => json!({"jsonrpc": "2.0", "id": msg["id"], "result": r}),
                            Err(e) => json!({"jsonrpc": "2.0", "id": msg["id"], "error": e}),
                        };
                        reply(&mut stream, "200 OK", &out.to_string());
                    }
                });
            }
        });
        TaskRemote { url, seen }
    }

    /// The `taskId`s of the task requests (`tasks/...`) the server received.
    fn task_requests(&self) -> Vec<Asked> {
        let seen = self.seen.lock().unwrap();
        seen.iter()
            .filter(|(m, _)| m.starts_with("tasks/"))
            .cloned()
            .collect()
    }
}

/// A gateway whose only upstream is `url`, with Alice's and Bob's API keys.
fn gateway(url: &str) -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("proxy.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[upstream]]
name = "example"
url = "{url}"
bearer_token_env = "TASK_REMOTE_TOKEN"

[audit]
store_dir = "store"

[risk]
pin_tools = "off"

[gateway]
listen = "127.0.0.1:0"

[[gateway.api_key]]
user_id = "alice"
sha256 = "{alice}"

[[gateway.api_key]]
user_id = "bob"
sha256 = "{bob}"
"#,
            alice = sha(ALICE_KEY),
            bob = sha(BOB_KEY),
        ),
    )
    .unwrap();
    let mut cmd = std::process::Command::new(proxy_bin());
    cmd.arg("gateway")
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "warn")
        .env("TASK_REMOTE_TOKEN", "one-token-for-everyone")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    Gateway::spawn_command(dir, config, cmd)
}

/// A sessionless 2026-07-28 request of `method` with `params` (a JSON object's members, the
/// `_meta` added), with its routing headers; the one JSON-RPC answer.
async fn request_2026(url: &str, key: &str, id: u32, method: &str, params: &str) -> Value {
    let sep = if params.is_empty() { "" } else { "," };
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"{method}","params":{{{params}{sep}{META_2026}}}}}"#
    );
    let parsed: Value = serde_json::from_str(&body).unwrap();
    let name = match method {
        "tools/call" => parsed["params"]["name"].as_str(),
        "tasks/get" | "tasks/update" | "tasks/cancel" => parsed["params"]["taskId"].as_str(),
        _ => None,
    };
    let mut headers = vec![
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", method),
    ];
    if let Some(n) = name {
        headers.push(("mcp-name", n));
    }
    let (_, _, text) = post(url, Some(key), None, &body, &headers).await;
    messages(&text).pop().unwrap_or(Value::Null)
}

/// A request in a 2025 session; the one JSON-RPC answer.
async fn request_2025(
    url: &str,
    key: &str,
    session: &str,
    id: u32,
    method: &str,
    params: &str,
) -> Value {
    let body =
        format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"{method}","params":{{{params}}}}}"#);
    let (_, _, text) = post(url, Some(key), Some(session), &body, &[]).await;
    messages(&text)
        .into_iter()
        .rfind(|m| m.get("id").is_some())
        .unwrap_or(Value::Null)
}

/// The refusals of task requests in the trail: (user, action, reason).
fn task_refusals(events: &[Value]) -> Vec<(String, String, String)> {
    events
        .iter()
        .filter(|e| {
            e["result"] == "refused"
                && e["action"]
                    .as_str()
                    .is_some_and(|a| a.starts_with("tasks/"))
        })
        .map(|e| {
            (
                e["user_id"].as_str().unwrap().to_string(),
                e["action"].as_str().unwrap().to_string(),
                e["metadata"]["reason"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessionless_a_principal_never_reaches_another_principals_task() {
    let remote = TaskRemote::start();
    let gw = gateway(&remote.url);
    let url = gw.endpoint();

    let made = request_2026(
        &url,
        ALICE_KEY,
        1,
        "tools/call",
        r#""name":"task_tool","arguments":{"note":"alice's salary review"}"#,
    )
    .await;
    assert_eq!(made["result"]["resultType"], "task", "{made}");
    let task = made["result"]["taskId"].as_str().unwrap().to_string();

    // Bob's listing holds none of Alice's tasks (the server listed it: one credential).
    let listed = request_2026(&url, BOB_KEY, 2, "tasks/list", "").await;
    assert_eq!(listed["result"]["tasks"], json!([]), "{listed}");

    // Each of Bob's task requests about it is refused as an id nobody created is: the same
    // error, and never sent to the server.
    let mut refused = Vec::new();
    for (n, method) in ["tasks/get", "tasks/result", "tasks/cancel", "tasks/update"]
        .iter()
        .enumerate()
    {
        for id in [task.as_str(), "task-nobody-made"] {
            let answer = request_2026(
                &url,
                BOB_KEY,
                10 + n as u32,
                method,
                &format!(r#""taskId":"{id}""#),
            )
            .await;
            assert!(answer.get("result").is_none(), "{method} {id}: {answer}");
            let e = &answer["error"];
            assert_eq!(e["code"], -32602, "{answer}");
            refused.push((method.to_string(), e["message"].clone()));
        }
    }
    for pair in refused.chunks(2) {
        assert_eq!(
            pair[0], pair[1],
            "another's task and no task are refused alike"
        );
    }
    let bobs: Vec<_> = remote
        .task_requests()
        .into_iter()
        .filter(|(m, _)| m != "tasks/list")
        .collect();
    assert!(bobs.is_empty(), "reached the server: {bobs:?}");

    // Alice still lists and gets her own.
    let listed = request_2026(&url, ALICE_KEY, 3, "tasks/list", "").await;
    assert_eq!(
        listed["result"]["tasks"][0]["taskId"],
        task.as_str(),
        "{listed}"
    );
    let got = request_2026(
        &url,
        ALICE_KEY,
        4,
        "tasks/get",
        &format!(r#""taskId":"{task}""#),
    )
    .await;
    assert_eq!(got["result"]["status"], "completed", "{got}");

    let events = gw.events();
    let refusals = task_refusals(&events);
    assert_eq!(refusals.len(), 8, "{refusals:?}");
    assert!(
        refusals
            .iter()
            .all(|(u, _, r)| u == "bob" && r.contains("not one this principal's")),
        "{refusals:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_2025_sessions_another_principals_task_is_unknown_and_the_owners_fetch_is_recorded() {
    let remote = TaskRemote::start();
    let gw = gateway(&remote.url);
    let url = gw.endpoint();
    let alice = raw_session(&url, ALICE_KEY).await;
    let bob = raw_session(&url, BOB_KEY).await;

    let made = request_2025(
        &url,
        ALICE_KEY,
        &alice,
        2,
        "tools/call",
        r#""name":"task_tool","arguments":{"note":"q3"},"task":{"ttl":60000}"#,
    )
    .await;
    let task = made["result"]["task"]["taskId"]
        .as_str()
        .unwrap_or_else(|| panic!("{made}"))
        .to_string();

    let listed = request_2025(&url, BOB_KEY, &bob, 2, "tasks/list", "").await;
    assert_eq!(listed["result"]["tasks"], json!([]), "{listed}");
    for (n, method) in ["tasks/get", "tasks/result", "tasks/cancel"]
        .iter()
        .enumerate()
    {
        let answer = request_2025(
            &url,
            BOB_KEY,
            &bob,
            3 + n as u32,
            method,
            &format!(r#""taskId":"{task}""#),
        )
        .await;
        assert_eq!(answer["error"]["code"], -32602, "{method}: {answer}");
    }
    // A twin `taskId` a case-insensitive server (the last copy winning) reads as Alice's,
    // beside Bob's own task's, is no way round.
    let his = request_2025(
        &url,
        BOB_KEY,
        &bob,
        8,
        "tools/call",
        r#""name":"task_tool","arguments":{},"task":{}"#,
    )
    .await;
    let his = his["result"]["task"]["taskId"]
        .as_str()
        .unwrap_or_else(|| panic!("{his}"))
        .to_string();
    let twin = format!(r#""taskId":"{his}","TaskId":"{task}""#);
    let answer = request_2025(&url, BOB_KEY, &bob, 9, "tasks/get", &twin).await;
    assert_eq!(answer["error"]["code"], -32602, "{answer}");
    let own = request_2025(
        &url,
        BOB_KEY,
        &bob,
        10,
        "tasks/get",
        &format!(r#""taskId":"{his}""#),
    )
    .await;
    assert_eq!(
        own["result"]["status"], "completed",
        "Bob's own task: {own}"
    );
    assert_eq!(
        remote.task_requests(),
        vec![
            ("tasks/list".to_string(), None),
            ("tasks/get".to_string(), Some(his.clone()))
        ],
        "only Bob's listing and the get of his own task reached the server"
    );

    // Alice fetches her task's outcome in her session: the call's second end is recorded.
    let result = request_2025(
        &url,
        ALICE_KEY,
        &alice,
        3,
        "tasks/result",
        &format!(r#""taskId":"{task}""#),
    )
    .await;
    assert!(
        result["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("q3"),
        "{result}"
    );
    // And from another session of hers (the same principal).
    let again = raw_session(&url, ALICE_KEY).await;
    let got = request_2025(
        &url,
        ALICE_KEY,
        &again,
        2,
        "tasks/get",
        &format!(r#""taskId":"{task}""#),
    )
    .await;
    assert_eq!(got["result"]["status"], "completed", "{got}");

    let events = gw.events();
    let ends: Vec<&Value> = events
        .iter()
        .filter(|e| e["user_id"] == "alice" && e["event_type"] == "tool_execution")
        .collect();
    assert!(
        ends.iter().any(|e| e["result"] == "task"),
        "the call ends task first: {ends:?}"
    );
    assert!(
        ends.iter().any(|e| e["result"] == "success"
            && e["metadata"]["reason"]
                .as_str()
                .is_some_and(|r| r.contains("tasks/result"))),
        "Alice's fetch records the outcome: {ends:?}"
    );
    let refusals = task_refusals(&events);
    assert_eq!(refusals.len(), 4, "{refusals:?}");
    assert!(refusals.iter().all(|(u, _, _)| u == "bob"), "{refusals:?}");
}
