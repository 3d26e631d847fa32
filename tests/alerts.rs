//! Real-time alerts (issue 10 item 3): fed by the audit writer once events are durable,
//! grouped, stored in the trail, POSTed to a signed webhook; and the wrapper end to end with
//! the example server and a blocking rule.

mod common;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use hmac::{Hmac, KeyInit, Mac};
use mcp_audit_proxy::alerts::{self, Settings};
use mcp_audit_proxy::audit::writer::{self, AuditSink, WriterThreads};
use mcp_audit_proxy::audit::{AuditEvent, EventIds, EventType, Metadata, Outcome, RiskLevel};
use mcp_audit_proxy::config::{Config, Durability};
use mcp_audit_proxy::store::{Filter, Store, StoreLock};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::{LineClient, TestStore, call_line, proxy_bin};

/// A writer on a new store in `dir`, in `durability` mode.
fn writer_on(dir: &Path, durability: Durability) -> (AuditSink, WriterThreads, StoreLock) {
    let root = dir.join("store");
    let store = Store::open_journal(&root, 64 << 20).unwrap();
    let (journal, keeper, lock) = store.into_parts(&root);
    let (sink, threads) = writer::start(
        journal,
        keeper,
        durability,
        Duration::from_millis(5),
        1 << 16,
    )
    .unwrap();
    (sink, threads, lock)
}

/// The access event of a blocked call by `user`.
fn blocked(ids: &EventIds, user: &str) -> AuditEvent {
    let (event_id, timestamp) = ids.next();
    AuditEvent {
        event_id,
        timestamp,
        event_type: EventType::ToolAccess,
        user_id: user.into(),
        tool_name: Some("shell".into()),
        action: "tools/call".into(),
        result: Outcome::Blocked,
        metadata: Metadata {
            decision: Some("block".into()),
            ..Metadata::default()
        },
        risk_level: RiskLevel::Critical,
        compliance_tags: vec!["secrets".into()],
        session_id: "s1".into(),
        upstream: "example".into(),
        linked_event_id: None,
    }
}

/// Settings from config text (no history).
fn settings(dir: &Path, text: &str) -> Settings {
    let config = Config::parse(&dir.join("proxy.toml"), text).unwrap();
    Settings {
        alerts: config.alerts,
        context: Default::default(),
        history_from: None,
        history_days: 0,
        history_user: None,
    }
}

/// The alert events in the store at `dir/store`, oldest first.
fn stored_alerts(dir: &Path) -> Vec<Value> {
    let filter = Filter {
        event_type: Some(EventType::Alert),
        ..Filter::default()
    };
    let (mut events, _) =
        mcp_audit_proxy::store::newest_from_journals(&dir.join("store"), usize::MAX, &filter)
            .unwrap();
    events.reverse();
    events
        .iter()
        .map(|e| serde_json::to_value(e).unwrap())
        .collect()
}

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }
}

/// A real HTTP/1.1 receiver on 127.0.0.1: answers each request with the next of `statuses`
/// (then 200), and keeps what it got.
async fn receiver(statuses: Vec<u16>) -> (u16, Arc<Mutex<Vec<Received>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let got: Arc<Mutex<Vec<Received>>> = Arc::default();
    let kept = got.clone();
    tokio::spawn(async move {
        let mut statuses = statuses.into_iter();
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let head_end = loop {
                let n = conn.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break None;
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break Some(p);
                }
            };
            let Some(head_end) = head_end else { continue };
            let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
            let headers: Vec<(String, String)> = head
                .lines()
                .skip(1)
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                .collect();
            let length: usize = headers
                .iter()
                .find(|(k, _)| k == "content-length")
                .map_or(0, |(_, v)| v.parse().unwrap());
            let mut body = buf[head_end + 4..].to_vec();
            while body.len() < length {
                let n = conn.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
            kept.lock().unwrap().push(Received { headers, body });
            let status = statuses.next().unwrap_or(200);
            let answer =
                format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            let _ = conn.write_all(answer.as_bytes()).await;
            let _ = conn.shutdown().await;
        }
    });
    (port, got)
}

#[tokio::test]
async fn the_webhook_gets_a_signed_alert_and_is_retried_until_it_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "whsec-0123456789abcdef0123456789";
    let secret_file = dir.path().join("hook.secret");
    std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
    std::fs::set_permissions(
        &secret_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let (port, got) = receiver(vec![503, 500]).await;
    let settings = settings(
        dir.path(),
        &format!(
            "[alerts]\ngroup_wait_ms = 0\n[alerts.webhook]\nurl = \"http://127.0.0.1:{port}/hook?token=abc\"\nsecret_file = \"hook.secret\"\nbackoff_ms = 20\nmax_attempts = 4\n"
        ),
    );
    let (sink, threads, lock) = writer_on(dir.path(), Durability::Sync);
    let stage = alerts::start(settings, &sink).unwrap().unwrap();
    let stats = stage.stats.clone();
    let ids = EventIds::default();
    let event = blocked(&ids, "mallory");
    sink.record(&event).unwrap().wait().await.unwrap();
    // Three attempts: 503, 500, then 200.
    for _ in 0..200 {
        if got.lock().unwrap().len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    sink.flush().await;
    stage.close().await;
    sink.close().await;
    threads.join();
    drop(lock);

    let got = got.lock().unwrap().clone();
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(stats.delivered.load(Ordering::Relaxed), 1);
    assert_eq!(stats.retries.load(Ordering::Relaxed), 2);
    assert_eq!(stats.undelivered.load(Ordering::Relaxed), 0);
    let stored = stored_alerts(dir.path());
    assert_eq!(stored.len(), 1, "{stored:?}");
    let alert_id = stored[0]["event_id"].as_str().unwrap();
    for (i, r) in got.iter().enumerate() {
        assert_eq!(r.header("content-type"), "application/json");
        assert_eq!(r.header("x-mcp-audit-attempt"), (i + 1).to_string());
        assert_eq!(r.header("x-mcp-audit-delivery"), alert_id);
        // The signature: t=SECONDS,v1=HEX, HMAC-SHA256 over "SECONDS.BODY".
        let sig = r.header("x-mcp-audit-signature");
        let (t, v1) = sig
            .strip_prefix("t=")
            .and_then(|s| s.split_once(",v1="))
            .unwrap_or_else(|| panic!("signature header {sig:?}"));
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(now.abs_diff(t.parse::<u64>().unwrap()) < 60, "{t}");
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{t}.").as_bytes());
        mac.update(&r.body);
        let expected: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(v1, expected, "attempt {} is signed over t.body", i + 1);
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["event_type"], "alert");
        assert_eq!(body["event_id"], alert_id);
        assert_eq!(body["user_id"], "mallory");
        assert_eq!(body["action"], "alert/blocked");
        let a = &body["metadata"]["alert"];
        assert_eq!(a["kind"], "blocked");
        assert_eq!(a["family"], "policy");
        assert_eq!(a["severity"], "critical");
        assert_eq!(a["count"], 1);
        assert_eq!(a["first_event_id"], event.event_id.to_string());
        assert_eq!(a["last_event_id"], event.event_id.to_string());
        assert_eq!(a["tools"], json!(["shell"]));
    }
    // A tampered body does not verify with the same signature.
    let r = &got[2];
    let (t, v1) = r.header("x-mcp-audit-signature")[2..]
        .split_once(",v1=")
        .unwrap();
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(&[&r.body[..], b" "].concat());
    assert!(
        mac.verify_slice(&hex_bytes(v1)).is_err(),
        "the body is what is signed"
    );
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

#[tokio::test]
async fn a_storm_of_blocked_calls_is_one_stored_alert_with_its_count() {
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(dir.path(), "[alerts]\ngroup_wait_ms = 60000\n");
    let (sink, threads, lock) = writer_on(dir.path(), Durability::Batched);
    let stage = alerts::start(settings, &sink).unwrap().unwrap();
    let ids = EventIds::default();
    let storm: Vec<AuditEvent> = (0..1000).map(|_| blocked(&ids, "mallory")).collect();
    for e in &storm {
        sink.record(e).unwrap();
    }
    let other = blocked(&ids, "trudy");
    sink.record(&other).unwrap();
    sink.flush().await;
    let stats = stage.stats.clone();
    stage.close().await;
    sink.close().await;
    threads.join();
    drop(lock);
    assert_eq!(stats.examined.load(Ordering::Relaxed), 1001);
    assert_eq!(stats.dropped.load(Ordering::Relaxed), 0);
    let stored = stored_alerts(dir.path());
    assert_eq!(stored.len(), 2, "one per user: {stored:#?}");
    let mallory = stored.iter().find(|a| a["user_id"] == "mallory").unwrap();
    let a = &mallory["metadata"]["alert"];
    assert_eq!(a["count"], 1000);
    assert_eq!(a["first_event_id"], storm[0].event_id.to_string());
    assert_eq!(a["last_event_id"], storm[999].event_id.to_string());
    assert_eq!(mallory["risk_level"], "critical");
    assert_eq!(mallory["compliance_tags"], json!(["secrets"]));
    let trudy = stored.iter().find(|a| a["user_id"] == "trudy").unwrap();
    assert_eq!(trudy["metadata"]["alert"]["count"], 1);
}

/// helper-63 F5: past its quota per address, the gateway records refusals of
/// unauthenticated requests as one summary event for the rest (`metadata.summarized`); the
/// alert counted that event once, so 50 bad credentials in a minute read as 21.
#[tokio::test]
async fn an_alert_counts_the_refusals_a_summary_event_stands_for() {
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(dir.path(), "[alerts]\ngroup_wait_ms = 60000\n");
    let (sink, threads, lock) = writer_on(dir.path(), Durability::Batched);
    let stage = alerts::start(settings, &sink).unwrap().unwrap();
    let ids = EventIds::default();
    let refused = |summarized: Option<u64>| {
        let (event_id, timestamp) = ids.next();
        AuditEvent {
            event_id,
            timestamp,
            event_type: EventType::ToolFailure,
            user_id: "unauthenticated".into(),
            tool_name: None,
            action: "http".into(),
            result: Outcome::Refused,
            metadata: Metadata {
                summarized,
                ..Metadata::default()
            },
            risk_level: RiskLevel::Medium,
            compliance_tags: Vec::new(),
            session_id: String::new(),
            upstream: String::new(),
            linked_event_id: None,
        }
    };
    for _ in 0..20 {
        sink.record(&refused(None)).unwrap();
    }
    sink.record(&refused(Some(30))).unwrap();
    sink.flush().await;
    stage.close().await;
    sink.close().await;
    threads.join();
    drop(lock);
    let stored = stored_alerts(dir.path());
    assert_eq!(stored.len(), 1, "{stored:#?}");
    assert_eq!(stored[0]["metadata"]["alert"]["count"], 50, "{stored:#?}");
    let reason = stored[0]["metadata"]["reason"].as_str().unwrap_or_default();
    assert!(!reason.contains("call to ?"), "{reason}");
}

#[tokio::test]
async fn a_full_queue_drops_are_counted_and_reported_in_the_next_alert() {
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(
        dir.path(),
        "[alerts]\ngroup_wait_ms = 60000\nqueue_capacity = 2\n",
    );
    let (sink, threads, lock) = writer_on(dir.path(), Durability::Sync);
    // The queue exists, the stage does not run yet: the writer's offers fill it.
    let (tap, rx, stats) = alerts::channel(settings.alerts.queue_capacity);
    let tx = tap.tx.clone();
    sink.set_alert_tap(tap);
    let ids = EventIds::default();
    let first: Vec<AuditEvent> = (0..10).map(|_| blocked(&ids, "mallory")).collect();
    for e in &first {
        sink.record(e).unwrap().wait().await.unwrap();
    }
    assert_eq!(stats.dropped.load(Ordering::Relaxed), 8);
    let stage = alerts::start_on(settings, &sink, tx, rx, stats.clone()).unwrap();
    // The stage drains the two queued events (after reading its history) before the next
    // one is offered: else, on a slow machine, that one finds the queue still full.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while stats.examined.load(Ordering::Relaxed) < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the stage never drained its queue"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    sink.record(&blocked(&ids, "trudy"))
        .unwrap()
        .wait()
        .await
        .unwrap();
    sink.flush().await;
    stage.close().await;
    sink.close().await;
    threads.join();
    drop(lock);
    assert_eq!(stats.examined.load(Ordering::Relaxed), 3);
    let stored = stored_alerts(dir.path());
    assert_eq!(stored.len(), 2, "{stored:#?}");
    // The first alert through carries the drops; the next one has nothing new to report.
    assert_eq!(stored[0]["metadata"]["alert"]["dropped"], 8, "{stored:#?}");
    assert_eq!(stored[1]["metadata"]["alert"]["dropped"], 0);
    let mallory = stored.iter().find(|a| a["user_id"] == "mallory").unwrap();
    assert_eq!(mallory["metadata"]["alert"]["count"], 2, "the two examined");
}

const BLOCK_SHELL_IN_ECHO: &str = r#"
[[risk.rule]]
name = "shell in echo"
tools = ["echo"]
pointer = "/text"
detect = "shell_metacharacters"
level = "critical"
"#;

#[tokio::test]
async fn the_wrapper_stores_an_alert_for_blocked_calls_and_alerts_lists_it() {
    let store = TestStore::with_alerts(&format!(
        "[alerts]\ngroup_wait_ms = 60000\n{BLOCK_SHELL_IN_ECHO}"
    ));
    let mut c = LineClient::spawn(store.proxied_example());
    c.initialize().await;
    for id in 1..=3 {
        c.send(&call_line(
            json!(id),
            "echo",
            json!({"text": "hi; rm -rf ~"}),
        ))
        .await;
        let answer = c.recv_json().await;
        assert_eq!(answer["error"]["code"], -32010, "{answer}");
    }
    c.send(&call_line(json!(4), "echo", json!({"text": "hello"})))
        .await;
    let ok = c.recv_json().await;
    assert!(ok.get("result").is_some(), "{ok}");
    assert!(c.finish().await.success());

    let events = store.events();
    let blocked: Vec<&Value> = events
        .iter()
        .filter(|e| e["event_type"] == "tool_access" && e["result"] == "blocked")
        .collect();
    assert_eq!(blocked.len(), 3);

    let out = std::process::Command::new(proxy_bin())
        .args(["alerts", "--json", "--since", "1h", "--config"])
        .arg(&store.config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(listed.len(), 1, "{listed:#?}");
    let alert = &listed[0];
    assert_eq!(alert["event_type"], "alert");
    assert_eq!(alert["user_id"], "tester");
    assert_eq!(alert["tool_name"], "echo");
    let a = &alert["metadata"]["alert"];
    assert_eq!(a["kind"], "blocked");
    assert_eq!(a["count"], 3);
    assert_eq!(a["first_event_id"], blocked[0]["event_id"]);
    assert_eq!(a["last_event_id"], blocked[2]["event_id"]);
    assert!(
        alert["metadata"]["reason"]
            .as_str()
            .unwrap()
            .contains("blocked tester's call to echo"),
        "{alert}"
    );
    // `events --type alert` finds it too, and the chain covers it.
    assert!(events.iter().any(|e| e["event_id"] == alert["event_id"]));
    let filtered = std::process::Command::new(proxy_bin())
        .args(["events", "--type", "alert", "--json", "--config"])
        .arg(&store.config)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(filtered.stdout).unwrap().lines().count(),
        1
    );
    let verify = std::process::Command::new(proxy_bin())
        .args(["verify", "--config"])
        .arg(&store.config)
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    // The table form names the kind and the count.
    let table = std::process::Command::new(proxy_bin())
        .args(["alerts", "--user", "tester", "--config"])
        .arg(&store.config)
        .output()
        .unwrap();
    let text = String::from_utf8(table.stdout).unwrap();
    assert!(
        text.contains("blocked") && text.contains("critical"),
        "{text}"
    );
}

/// An access event by `user` to `tool`, `days_ago` days before `now` (plus `n` ms).
fn access_before(now: SystemTime, days_ago: u64, n: u64, user: &str, tool: &str) -> AuditEvent {
    let at = now - Duration::from_secs(days_ago * 86_400) + Duration::from_millis(n);
    let ms = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    AuditEvent {
        event_id: mcp_audit_proxy::audit::EventId(ulid::Ulid::from_parts(ms, u128::from(n))),
        timestamp: at,
        event_type: EventType::ToolAccess,
        user_id: user.into(),
        tool_name: Some(tool.into()),
        action: "tools/call".into(),
        result: Outcome::Initiated,
        metadata: Metadata::default(),
        risk_level: RiskLevel::Low,
        compliance_tags: Vec::new(),
        session_id: format!("s-{user}"),
        upstream: "example".into(),
        linked_event_id: None,
    }
}

/// The stage reads a stdio wrapper's own user's history beyond everyone's newest
/// `history_events`: alice called `drop_table` ten days ago, and the 30 newest events are
/// other users'. Her call to it now is not a first use, while her first call to `wipe_disk`
/// is (she is known, so warm). Without her own history she is unknown: neither is judged.
#[tokio::test]
async fn a_wrappers_own_user_history_reaches_back_past_everyones_newest() {
    let dir = tempfile::tempdir().unwrap();
    let now = SystemTime::now();
    {
        let (sink, threads, lock) = writer_on(dir.path(), Durability::Sync);
        sink.record(&access_before(now, 10, 0, "alice", "drop_table"))
            .unwrap()
            .wait()
            .await
            .unwrap();
        for i in 0..30u64 {
            let e = access_before(now, 1, i + 1, &format!("u{}", i % 6), "read_file");
            sink.record(&e).unwrap().wait().await.unwrap();
        }
        sink.flush().await;
        sink.close().await;
        threads.join();
        drop(lock);
    }
    let mut s = settings(
        dir.path(),
        "[alerts]\ngroup_wait_ms = 0\nhistory_events = 20\n",
    );
    s.history_from = Some(dir.path().join("store"));
    s.history_days = 28;
    s.history_user = Some("alice".into());
    let (sink, threads, lock) = writer_on(dir.path(), Durability::Sync);
    let stage = alerts::start(s, &sink).unwrap().expect("alerts enabled");
    for (n, tool) in [(1, "drop_table"), (2, "wipe_disk")] {
        let e = access_before(SystemTime::now(), 0, n, "alice", tool);
        sink.record(&e).unwrap().wait().await.unwrap();
    }
    sink.flush().await;
    stage.close().await;
    sink.close().await;
    threads.join();
    drop(lock);
    let first_uses: Vec<String> = stored_alerts(dir.path())
        .iter()
        .filter(|a| a["metadata"]["alert"]["kind"] == "first_use")
        .map(|a| a["tool_name"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(first_uses, ["wipe_disk"]);
}
