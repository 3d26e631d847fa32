//! The proxy's own log lines never hold up or crash the MCP path: stderr closed, broken or
//! never read, and `log.file`, all through the real binary.

mod common;

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{INIT, LineClient, TestStore, call_line, example_server, proxy_bin};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// A config whose `echo` calls each log a "policy alert" warning (~280 bytes).
const NOISY: &str = "durability = \"batched\"\n[[risk.tool]]\nmatch = \"echo\"\nscore = 60\n";

/// Initializes, makes one `tools/call`, closes stdin; the exit status.
async fn one_call(c: &mut LineClient) {
    c.initialize().await;
    c.send(&call_line(json!(1), "echo", json!({"text": "hello"})))
        .await;
    let answer: Value = serde_json::from_slice(&c.recv_response(&json!(1)).await).unwrap();
    assert_eq!(answer["result"]["content"][0]["text"], "hello", "{answer}");
}

/// Every file under `dir`, as bytes.
fn files_under(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push((path.clone(), std::fs::read(&path).unwrap()));
        }
    }
    out
}

#[tokio::test]
async fn with_stderr_closed_the_proxy_answers_and_its_store_stays_clean() {
    let store = TestStore::new("");
    let server = example_server();
    // `2>&-`: the proxy starts with no fd 2 at all.
    let mut command = tokio::process::Command::new("sh");
    command
        .arg("-c")
        .arg("exec \"$0\" \"$@\" 2>&-")
        .arg(proxy_bin())
        .args(["stdio", "--config"])
        .arg(&store.config)
        .arg("--")
        .arg(&server)
        .env("RUST_LOG", "debug");
    let mut c = LineClient::spawn(command);
    one_call(&mut c).await;
    assert_eq!(c.finish().await.code(), Some(0));
    // No log line landed in a file the proxy opened in place of the missing stderr.
    for (path, bytes) in files_under(&store.store_dir()) {
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains("mcp_audit_proxy::"),
            "log text in {}",
            path.display()
        );
    }
    assert_eq!(store.events().len(), 2);
}

#[tokio::test]
async fn with_stderr_broken_the_proxy_answers_and_exits_cleanly() {
    // A pipe whose reader is gone: every write fails with EPIPE. This used to panic (exit 101)
    // at the first log line, before answering anything.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let store = TestStore::new("");
    let mut command = store.proxied_example();
    command.stderr(Stdio::from(writer)).env("RUST_LOG", "debug");
    let mut c = LineClient::spawn(command);
    one_call(&mut c).await;
    assert_eq!(c.finish().await.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stderr_nobody_reads_does_not_stall_calls_and_drops_are_reported() {
    const CALLS: u64 = 2000;
    let store = TestStore::new(NOISY);
    let (mut stderr, writer) = std::io::pipe().unwrap();
    let mut proxy = store
        .proxied_example()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(writer))
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = proxy.stdin.take().unwrap();
    let mut stdout = BufReader::new(proxy.stdout.take().unwrap());
    let started = Instant::now();
    let writing = tokio::spawn(async move {
        stdin
            .write_all(format!("{INIT}\n").as_bytes())
            .await
            .unwrap();
        for id in 0..CALLS {
            let line = call_line(json!(id), "echo", json!({"text": format!("call {id}")}));
            stdin.write_all(&line).await.unwrap();
        }
        stdin.flush().await.unwrap();
        stdin
    });
    // 2000 alerts are ~560 KB of log lines: a direct write to the 64 KiB pipe blocked the
    // proxy for good after about 230 of them.
    let answered = tokio::time::timeout(Duration::from_secs(60), async {
        let mut answered = 0;
        let mut line = String::new();
        while answered < CALLS {
            line.clear();
            if stdout.read_line(&mut line).await.unwrap() == 0 {
                break;
            }
            let v: Value = serde_json::from_str(&line).unwrap();
            if v["id"] != "init" {
                assert!(v["result"]["content"][0]["text"].is_string(), "{v}");
                answered += 1;
            }
        }
        answered
    })
    .await
    .expect("calls stalled behind an unread stderr");
    assert_eq!(answered, CALLS);
    let took = started.elapsed();
    eprintln!("{CALLS} calls with stderr unread: {took:?}");

    // Now someone reads stderr: the queued lines flow, then the count of the dropped ones.
    let reading = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    drop(writing.await.unwrap());
    let status = tokio::time::timeout(Duration::from_secs(30), proxy.wait())
        .await
        .expect("exit")
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let text = reading.join().unwrap();
    // Reported as soon as lines flow again (and at most every 10 s after): add them all up.
    let dropped: u64 = text
        .lines()
        .filter(|l| l.contains("log lines dropped"))
        .map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("dropped="))
                .unwrap()
                .parse::<u64>()
                .unwrap()
        })
        .sum();
    let alerts = text.lines().filter(|l| l.contains("policy alert")).count() as u64;
    assert!(
        dropped > 0,
        "no report of dropped lines in {} bytes",
        text.len()
    );
    assert_eq!(
        alerts + dropped,
        CALLS,
        "every alert is either written or counted"
    );
}

#[tokio::test]
async fn log_file_takes_the_log_lines_instead_of_stderr() {
    let store = TestStore::new(&format!("{NOISY}[log]\nfile = \"logs/proxy.log\"\n"));
    std::fs::create_dir(store.dir.path().join("logs")).unwrap();
    let log = store.dir.path().join("logs/proxy.log");
    std::fs::write(&log, "kept\n").unwrap();
    let mut command = store.proxied_example();
    command.stderr(Stdio::piped()).env("RUST_LOG", "info");
    let mut c = LineClient::spawn(command);
    let stderr = c.child.stderr.take().unwrap();
    one_call(&mut c).await;
    assert_eq!(c.finish().await.code(), Some(0));
    let err = common::read_text(stderr).await;
    assert!(
        !err.contains("mcp_audit_proxy::"),
        "log lines on stderr: {err}"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.starts_with("kept\n"), "appended, not truncated");
    for expected in ["mcp server started", "policy alert", "mcp server exited"] {
        assert!(text.contains(expected), "{expected:?} not in {text}");
    }
}

#[tokio::test]
async fn a_log_file_that_cannot_be_opened_stops_the_proxy_before_the_server_starts() {
    let store = TestStore::new("[log]\nfile = \"missing/proxy.log\"\n");
    let marker = store.dir.path().join("server-started");
    let script = format!("touch '{}'", marker.display());
    let out = store
        .proxy_command(&["sh", "-c", &script])
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let path = store.dir.path().join("missing/proxy.log");
    assert!(
        err.contains(&format!("cannot open the log file {}", path.display())),
        "{err}"
    );
    assert!(err.contains("log.file in"), "{err}");
    assert!(err.contains("hint:"), "{err}");
    assert!(out.stdout.is_empty());
    assert!(!marker.exists(), "the server was started");
}

#[test]
fn proxy_toml_documents_the_log_section() {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("proxy.toml"),
    )
    .unwrap();
    let section = text.split("\n[log]\n").nth(1).expect("[log] in proxy.toml");
    let section = section.split("\n[").next().unwrap();
    assert!(
        section.lines().any(|l| l.starts_with("# file = ")),
        "log.file is not documented: {section}"
    );
}

#[tokio::test]
async fn a_card_number_or_secret_in_an_id_never_reaches_the_log_in_clear() {
    // Found by a review: the trail stored them protected, while the log lines that name the
    // request (a "policy alert" here) printed them as they came.
    const CARD_ID: &str = "4111111111111111";
    const NUMERIC: &str = "4012888888881881";
    const KEY: &str = "AKIAIOSFODNN7EXAMPLE";
    let store = TestStore::new(&format!("{NOISY}[log]\nfile = \"proxy.log\"\n"));
    let log = store.dir.path().join("proxy.log");
    let mut c = LineClient::spawn(store.proxied_example());
    c.initialize().await;
    c.send(&call_line(json!(CARD_ID), "echo", json!({"text": "hello"})))
        .await;
    assert_eq!(c.recv_json().await["id"], CARD_ID);
    c.send(&call_line(
        serde_json::from_str(NUMERIC).unwrap(),
        "echo",
        json!({"text": "hi"}),
    ))
    .await;
    assert_eq!(c.recv_json().await["id"].to_string(), NUMERIC);
    c.send(&call_line(json!(KEY), "echo", json!({"text": "hey"})))
        .await;
    assert_eq!(c.recv_json().await["id"], KEY);
    assert_eq!(c.finish().await.code(), Some(0));
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        text.matches("policy alert").count(),
        3,
        "one alert line per call: {text}"
    );
    for secret in [CARD_ID, NUMERIC, KEY] {
        assert!(!text.contains(secret), "{secret} in the log: {text}");
    }
}

#[tokio::test]
async fn no_escape_sequence_a_client_sends_reaches_the_log_or_a_table() {
    // Found by a fresh pass: a tool name with ESC sequences erased and rewrote the lines of
    // the log, `events` and `analyze tools` on the operator's terminal.
    const NAME: &str =
        "echo\u{1b}[2K\r\u{1b}[32mOK all calls fine\u{1b}[0m\u{9b}8m\u{1b}]0;pwned\u{7}";
    // With the alert stage, whose log line explains the refusal with the tool's name.
    let store = TestStore::with_alerts(&format!("{NOISY}[log]\nfile = \"proxy.log\"\n"));
    let mut c = LineClient::spawn(store.proxied_example());
    c.initialize().await;
    c.send(&call_line(
        json!("id\u{1b}[1A"),
        NAME,
        json!({"text": "hi"}),
    ))
    .await;
    assert!(c.recv_json().await["error"].is_object());
    assert_eq!(c.finish().await.code(), Some(0));
    let controls = |bytes: &[u8]| {
        let text = String::from_utf8_lossy(bytes);
        text.chars()
            .filter(|c| c.is_control() && *c != '\n' && *c != '\t')
            .count()
    };
    let log = std::fs::read(store.dir.path().join("proxy.log")).unwrap();
    let text = String::from_utf8_lossy(&log);
    assert!(text.contains(r"echo\u001b[2K\u000d"), "{text}");
    assert_eq!(controls(&log), 0, "{text}");
    let id = store.events()[0]["event_id"].as_str().unwrap().to_string();
    let show = ["events", "show", id.as_str(), "--json"];
    for command in [&["events"][..], &["analyze", "tools"], &["alerts"], &show] {
        let out = std::process::Command::new(proxy_bin())
            .args(command)
            .arg("--config")
            .arg(&store.config)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{command:?}: {text}");
        assert!(text.contains("echo"), "{command:?}: {text}");
        assert_eq!(controls(&out.stdout), 0, "{command:?}: {text}");
    }
    // The trail keeps the name exactly, and JSON shows it by JSON's own escapes (C1 and DEL
    // included), meaning the same.
    assert!(store.events().iter().any(|e| e["tool_name"] == NAME));
    let lines = store.event_lines().concat();
    assert_eq!(controls(lines.as_bytes()), 0, "{lines}");
}
