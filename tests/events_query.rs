//! `events` through the real binary (issue 9 item 3): every filter (and both spellings of
//! the enumerated ones) against the full list filtered here, from the index, from the
//! running proxy that holds the index (over its socket) and from the journals; `--csv`; `events show`; `--follow`
//! seeing a writer that starts after it.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{LineClient, TestStore, call_line, example_server, proxy_bin};
use serde_json::{Value, json};

/// The proxy in front of the example server, recording `user` as the caller.
fn wrapper(store: &TestStore, user: &str) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(proxy_bin());
    c.args(["stdio", "--user", user, "--config"])
        .arg(&store.config)
        .arg("--")
        .arg(example_server())
        .env("RUST_LOG", "warn");
    c
}

/// One session of `user` making `calls` (tool, arguments), each answered; then it exits.
async fn session(store: &TestStore, user: &str, calls: &[(&str, Value)]) {
    let mut c = LineClient::spawn(wrapper(store, user));
    c.initialize().await;
    for (i, (tool, arguments)) in calls.iter().enumerate() {
        let id = json!(format!("{user}-{i}"));
        c.send(&call_line(id.clone(), tool, arguments.clone()))
            .await;
        c.recv_response(&id).await;
    }
    assert!(c.finish().await.success());
}

/// `events ARGS --config …` through the binary: (stdout, stderr); fails unless it succeeds.
fn run_events(config: &Path, args: &[&str], log: &str) -> (String, String) {
    let out = Command::new(proxy_bin())
        .arg("events")
        .args(args)
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", log)
        .output()
        .expect("run events");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "events {args:?} failed: {stderr}");
    (String::from_utf8(out.stdout).unwrap(), stderr)
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

fn ids(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect()
}

/// A store with two users' sessions: successes, an `isError` result, a JSON-RPC error (an
/// unknown tool), personal data (tagged, riskier); then every event, newest first.
async fn populated() -> (TestStore, Vec<Value>) {
    let store = TestStore::new("durability = \"sync\"");
    session(
        &store,
        "alice",
        &[
            ("echo", json!({"text": "one"})),
            ("fail", json!({})),
            ("echo", json!({"text": "two"})),
        ],
    )
    .await;
    session(
        &store,
        "bob",
        &[
            ("personal_data", json!({})),
            ("no_such_tool", json!({})),
            ("echo", json!({"text": "three"})),
        ],
    )
    .await;
    let (out, _) = run_events(&store.config, &["--json", "--limit", "1000"], "warn");
    let all = json_lines(&out);
    assert_eq!(all.len(), 12, "six calls, two events each");
    (store, all)
}

/// Each filter as command-line arguments, with what it keeps of the full list.
type Case = (Vec<String>, Box<dyn Fn(&Value) -> bool>);

fn cases(all: &[Value]) -> Vec<Case> {
    let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    let session = all[0]["session_id"].as_str().unwrap().to_string();
    let session_c = session.clone();
    // Time bounds between the two sessions' events (newest first in `all`).
    let middle = all[5]["timestamp"].as_str().unwrap().to_string();
    let middle_c = middle.clone();
    let middle_u = middle.clone();
    let tagged = all
        .iter()
        .find_map(|e| e["compliance_tags"].as_array()?.first()?.as_str())
        .expect("personal_data is tagged")
        .to_string();
    let tagged_c = tagged.clone();
    let risk_order = ["low", "medium", "high", "critical"];
    let rank = move |e: &Value| {
        risk_order
            .iter()
            .position(|r| e["risk_level"] == *r)
            .unwrap()
    };
    let top = all.iter().map(rank).max().unwrap();
    let top_name = risk_order[top];
    vec![
        (
            s(&["--user", "alice"]),
            Box::new(|e| e["user_id"] == "alice"),
        ),
        (
            s(&["--tool", "echo"]),
            Box::new(|e| e["tool_name"] == "echo"),
        ),
        (
            vec!["--session".into(), session],
            Box::new(move |e| e["session_id"] == *session_c),
        ),
        (
            s(&["--type", "tool_failure"]),
            Box::new(|e| e["event_type"] == "tool_failure"),
        ),
        (
            s(&["--type", "tool-execution"]),
            Box::new(|e| e["event_type"] == "tool_execution"),
        ),
        (
            s(&["--result", "error"]),
            Box::new(|e| e["result"] == "error"),
        ),
        (
            s(&["--result", "jsonrpc-error"]),
            Box::new(|e| e["result"] == "jsonrpc_error"),
        ),
        (
            vec!["--risk".into(), top_name.into()],
            Box::new(move |e| rank(e) >= top),
        ),
        (
            vec!["--tag".into(), tagged],
            Box::new(move |e| {
                e["compliance_tags"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|t| *t == *tagged_c)
            }),
        ),
        (
            s(&["--upstream", "example"]),
            Box::new(|e| e["upstream"] == "example"),
        ),
        (s(&["--upstream", "other"]), Box::new(|_| false)),
        (
            vec!["--since".into(), middle],
            Box::new(move |e| e["timestamp"].as_str().unwrap() >= middle_c.as_str()),
        ),
        (
            vec!["--until".into(), middle_u.clone()],
            Box::new(move |e| e["timestamp"].as_str().unwrap() <= middle_u.as_str()),
        ),
        (s(&["--since", "1h"]), Box::new(|_| true)),
        (s(&["--until", "1h"]), Box::new(|_| false)),
        (
            s(&["--user", "bob", "--type", "TOOL_ACCESS"]),
            Box::new(|e| e["user_id"] == "bob" && e["event_type"] == "tool_access"),
        ),
        (
            s(&["--tool", "echo", "--result", "success", "--user", "alice"]),
            Box::new(|e| {
                e["tool_name"] == "echo" && e["result"] == "success" && e["user_id"] == "alice"
            }),
        ),
    ]
}

/// What `events` logs when it opens the index itself.
const INDEX: &str = "reading the audit index";
/// What it logs when the index holder answered.
const HOLDER: &str = "the index holder answered over its socket";
/// What it logs when it reads a recent window from the journals' ends.
const JOURNAL_ENDS: &str = "reading the journals' newest records";

/// Every case through `events --json`, compared with the full list filtered here; `log`
/// is what the query's stderr must mention (which path it took).
fn check_cases(config: &Path, all: &[Value], expect_in_log: &str) {
    for (args, keep) in cases(all) {
        let want: Vec<&str> = ids(all)
            .into_iter()
            .zip(all)
            .filter(|(_, e)| keep(e))
            .map(|(id, _)| id)
            .collect();
        let mut argv: Vec<&str> = args.iter().map(String::as_str).collect();
        argv.extend(["--json", "--limit", "1000"]);
        let (out, log) = run_events(config, &argv, "mcp_audit_proxy=debug");
        // When no holder answers, a window (`--since`) is read from the journals' ends.
        let expected = if expect_in_log != HOLDER && args.iter().any(|a| a == "--since") {
            JOURNAL_ENDS
        } else {
            expect_in_log
        };
        assert!(log.contains(expected), "{args:?}: {log}");
        let got = json_lines(&out);
        assert_eq!(ids(&got), want, "{args:?}");
        // --limit keeps the newest.
        if want.len() > 1 {
            let n = argv.len();
            argv[n - 1] = "1";
            let (out, _) = run_events(config, &argv, "warn");
            assert_eq!(ids(&json_lines(&out)), want[..1], "{args:?} --limit 1");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_filter_from_the_index_and_from_the_journals() {
    let (store, all) = populated().await;
    // The filters are not trivial on this data.
    assert!(all.iter().any(|e| e["result"] == "error"));
    assert!(all.iter().any(|e| e["result"] == "jsonrpc_error"));
    check_cases(&store.config, &all, INDEX);

    // A running proxy holds the index: it answers the queries over its socket, with the
    // same answers as the index opened by the query itself.
    let mut holder = LineClient::spawn(wrapper(&store, "carol"));
    holder.initialize().await;
    wait_for_holder(&store).await;
    check_cases(&store.config, &all, HOLDER);
    // Without its socket (as when the holder cannot be reached), queries read the journals,
    // with the same answers again.
    std::fs::remove_file(store.store_dir().join("index.sock")).unwrap();
    check_cases(&store.config, &all, "reading the journals directly");
    // `show` from the journals too.
    let access = all
        .iter()
        .find(|e| e["event_type"] == "tool_access")
        .unwrap();
    let (out, _) = run_events(
        &store.config,
        &["show", access["event_id"].as_str().unwrap(), "--json"],
        "warn",
    );
    let shown = json_lines(&out);
    assert_eq!(
        ids(&shown),
        [
            access["event_id"].as_str().unwrap(),
            access["linked_event_id"].as_str().unwrap()
        ]
    );
    assert!(holder.finish().await.success());
}

/// Whether another process holds `index.lock` (a lock we can take is released at once).
fn index_lock_taken(path: &Path) -> bool {
    let Ok(f) = std::fs::File::options().write(true).open(path) else {
        return false;
    };
    f.try_lock().is_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_table_show_and_bad_values() {
    let (store, all) = populated().await;
    // CSV: a header, then one row per event, quoted where needed.
    let (out, _) = run_events(&store.config, &["--csv", "--user", "bob"], "warn");
    let mut rows = out.lines();
    let header: Vec<&str> = rows.next().unwrap().split(',').collect();
    assert_eq!(
        &header[..4],
        ["event_id", "timestamp", "event_type", "result"]
    );
    let bob: Vec<&Value> = all.iter().filter(|e| e["user_id"] == "bob").collect();
    let rows: Vec<Vec<&str>> = rows.map(|r| r.split(',').collect()).collect();
    assert_eq!(rows.len(), bob.len());
    for (row, e) in rows.iter().zip(&bob) {
        assert_eq!(row.len(), header.len());
        assert_eq!(row[0], e["event_id"]);
        assert_eq!(row[2], e["event_type"]);
        assert_eq!(row[4], "bob");
    }
    // An empty answer still has its header (a user the store knows, a tool it does not:
    // a user it has never seen is refused, helper-116 M4).
    let (out, _) = run_events(
        &store.config,
        &["--csv", "--user", "bob", "--tool", "nosuch"],
        "warn",
    );
    assert_eq!(out.lines().count(), 1);

    // Names a client chose that a spreadsheet would run as formulas (CSV injection) are
    // written as text: a leading `'`. Found by a fresh pair of eyes.
    // Each `;`-separated part too (a `;` list separator splits the cell there).
    session(&store, "=1+1", &[("@SUM(1);-2", json!({}))]).await;
    let (out, _) = run_events(&store.config, &["--csv", "--user", "=1+1"], "warn");
    let rows: Vec<Vec<&str>> = out
        .lines()
        .skip(1)
        .map(|r| r.split(',').collect())
        .collect();
    assert_eq!(rows.len(), 2, "{out}");
    for row in rows {
        assert_eq!((row[4], row[5]), ("'=1+1", "'@SUM(1);'-2"), "{out}");
    }

    // The table: a header and a row per event.
    let (out, _) = run_events(&store.config, &["--tool", "fail"], "warn");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("TIME (UTC)"), "{out}");
    assert_eq!(lines.len(), 3, "{out}");

    // show: an end event with its access event, indented JSON.
    let end = all.iter().find(|e| e["result"] == "error").unwrap();
    let access_id = end["linked_event_id"].as_str().unwrap();
    let (out, _) = run_events(
        &store.config,
        &["show", end["event_id"].as_str().unwrap()],
        "warn",
    );
    assert!(
        out.contains(&format!(
            "event {} (tool_execution)",
            end["event_id"].as_str().unwrap()
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("its access event: {access_id} (tool_access)")),
        "{out}"
    );
    // --json: the event, then its pair, and the access carries its link.
    let (out, _) = run_events(&store.config, &["show", access_id, "--json"], "warn");
    let shown = json_lines(&out);
    assert_eq!(ids(&shown), [access_id, end["event_id"].as_str().unwrap()]);
    assert_eq!(shown[0]["linked_event_id"], end["event_id"]);

    // Bad values are refused with what would be accepted.
    for (args, says) in [
        (vec!["--type", "tool_fail"], "one of tool_access"),
        (
            vec!["--risk", "severe"],
            "one of low, medium, high, critical",
        ),
        (vec!["--result", "ok"], "one of initiated"),
        (vec!["--since", "yesterday"], "RFC 3339"),
        (
            vec!["show", "01ARZ3NDEKTSV4RRFFQ69G5FAV"],
            "no event 01ARZ3NDEKTSV4RRFFQ69G5FAV",
        ),
        (vec!["show", "not-an-id"], "not an event id"),
        // A window that ends before it starts matched nothing, with exit 0.
        (vec!["--since", "1h", "--until", "2h"], "is after --until"),
    ] {
        let out = Command::new(proxy_bin())
            .arg("events")
            .args(&args)
            .arg("--config")
            .arg(&store.config)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} accepted");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_prints_the_events_of_a_writer_started_after_it() {
    let (store, _) = populated().await;
    let mut follow = Command::new(proxy_bin())
        .args([
            "events", "--follow", "--json", "--limit", "0", "--user", "dave", "--config",
        ])
        .arg(&store.config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = follow.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Let it start tailing; then a new writer process (a new journal) makes two calls, and
    // another user's call, which the filter leaves out.
    tokio::time::sleep(Duration::from_millis(500)).await;
    session(&store, "erin", &[("echo", json!({"text": "not followed"}))]).await;
    session(
        &store,
        "dave",
        &[("echo", json!({"text": "followed"})), ("fail", json!({}))],
    )
    .await;
    let mut got = Vec::new();
    while got.len() < 4 {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("--follow printed the new events");
        got.push(serde_json::from_str::<Value>(&line).unwrap());
    }
    let _ = follow.kill();
    let _ = follow.wait();
    assert!(got.iter().all(|e| e["user_id"] == "dave"), "{got:?}");
    let types: Vec<&str> = got
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "tool_access",
            "tool_execution",
            "tool_access",
            "tool_execution"
        ]
    );
    assert_eq!(got[0]["metadata"]["arguments"]["text"], "followed");
    assert_eq!(got[1]["linked_event_id"], got[0]["event_id"]);
    assert!(
        rx.recv_timeout(Duration::from_millis(500)).is_err(),
        "nothing else"
    );
}

/// Waits until a running proxy holds the index of `store` and answers on its socket.
async fn wait_for_holder(store: &TestStore) {
    let lock = store.store_dir().join("index.lock");
    let socket = store.store_dir().join("index.sock");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !index_lock_taken(&lock) || !socket.exists() {
        assert!(Instant::now() < deadline, "the proxy never took the index");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_holder_answers_whole_events_and_an_erasure_reads_as_erased_through_it() {
    let (store, all) = populated().await;
    let mut holder = LineClient::spawn(wrapper(&store, "carol"));
    holder.initialize().await;
    wait_for_holder(&store).await;
    let every = ["--json", "--limit", "1000"];
    let (out, log) = run_events(&store.config, &every, "mcp_audit_proxy=info");
    assert!(log.contains("answered over its socket"), "{log}");
    // Whole events, byte for byte as the query opening the index itself printed them.
    assert_eq!(json_lines(&out), all);
    let bob: Vec<&Value> = all.iter().filter(|e| e["user_id"] == "bob").collect();
    assert!(!bob.is_empty());
    assert!(
        bob.iter()
            .all(|e| e["metadata"]["personal_data"] == "encrypted"),
        "{bob:#?}"
    );

    // The holder read bob's key before; erased now, his events must read as erased from it.
    let erased = Command::new(proxy_bin())
        .args(["erase", "--user", "bob", "--config"])
        .arg(&store.config)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        erased.status.success(),
        "{}",
        String::from_utf8_lossy(&erased.stderr)
    );
    let (out, log) = run_events(&store.config, &every, "mcp_audit_proxy=info");
    assert!(log.contains("answered over its socket"), "{log}");
    let after = json_lines(&out);
    for e in &bob {
        let now = after
            .iter()
            .find(|a| a["event_id"] == e["event_id"])
            .unwrap();
        assert_eq!(now["metadata"]["personal_data"], "erased", "{now:#}");
        assert_ne!(now["user_id"], "bob");
    }
    assert!(holder.finish().await.success());
}
