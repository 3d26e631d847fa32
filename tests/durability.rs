//! The journal's promises: a SIGKILL loses nothing that was acknowledged, a torn tail is cut
//! and reported at every byte offset, and the sled index is rebuilt from the journal.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use common::{LineClient, TestStore, call_line, example_server, pairs};
use mcp_audit_proxy::audit::event::{
    AuditEvent, EventIds, EventType, Metadata, Outcome, RiskLevel,
};
use mcp_audit_proxy::jsonrpc::RequestId;
use mcp_audit_proxy::mcp::Era;
use mcp_audit_proxy::store::journal::{self, Journal, JournalPos, list_segments, segment_path};
use mcp_audit_proxy::store::{Filter, Store, journals, newest_from_journals};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_with_calls_in_flight_loses_no_acknowledged_event() {
    for round in 0..3 {
        let store = TestStore::new("");
        let received = store.dir.path().join("received.ndjson");
        let server = example_server();
        // `tee` records exactly what reached the server.
        let script = format!("tee -a '{}' | '{}'", received.display(), server.display());
        let mut c = LineClient::spawn(store.proxy_command(&["sh", "-c", &script]));
        c.initialize().await;

        // 300 calls without waiting: fast echoes and slow calls that stay in flight.
        let mut burst = Vec::new();
        for i in 0..300 {
            let params = if i % 10 == 0 {
                json!({"name": "slow", "arguments": {"ms": 60_000, "steps": 1}})
            } else {
                json!({"name": "echo", "arguments": {"text": format!("call {i}")}})
            };
            burst.extend(
                serde_json::to_vec(
                    &json!({"jsonrpc":"2.0","id":i,"method":"tools/call","params":params}),
                )
                .unwrap(),
            );
            burst.push(b'\n');
        }
        c.send(&burst).await;
        // Kill at a different point each round.
        let mut answered = HashSet::new();
        let kill_after = [40, 120, 200][round];
        while answered.len() < kill_after {
            let msg = c.recv_json().await;
            if let Some(id) = msg["id"].as_i64() {
                answered.insert(id);
            }
        }
        let pid = c.child.id().unwrap() as i32;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        // Responses already written to the pipe still count as delivered.
        while let Some(line) = c.recv().await {
            if let Ok(v) = serde_json::from_slice::<Value>(&line)
                && let Some(id) = v["id"].as_i64()
            {
                answered.insert(id);
            }
        }
        let _ = c.finish().await;
        tokio::time::sleep(Duration::from_millis(200)).await;

        let forwarded: HashSet<i64> = std::fs::read_to_string(&received)
            .unwrap()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["method"] == "tools/call")
            .filter_map(|v| v["id"].as_i64())
            .collect();
        let events = store.events();
        let mut by_request: HashMap<i64, Vec<&Value>> = HashMap::new();
        for e in &events {
            by_request
                .entry(e["metadata"]["request_id"].as_i64().unwrap())
                .or_default()
                .push(e);
        }
        assert!(answered.len() >= kill_after && !forwarded.is_empty());
        for id in &answered {
            let types: Vec<&str> = by_request[id]
                .iter()
                .map(|e| e["event_type"].as_str().unwrap())
                .collect();
            assert_eq!(
                types,
                ["tool_access", "tool_execution"],
                "round {round}: answered call {id}"
            );
        }
        for id in &forwarded {
            let first = by_request
                .get(id)
                .and_then(|v| v.first())
                .map(|e| e["event_type"].clone());
            assert_eq!(
                first,
                Some(json!("tool_access")),
                "round {round}: forwarded call {id} has no access event"
            );
        }
    }
}

fn event(ids: &EventIds, i: u64, access: Option<&AuditEvent>) -> AuditEvent {
    let (event_id, timestamp) = ids.next();
    AuditEvent {
        event_id,
        timestamp,
        event_type: if access.is_some() {
            EventType::ToolExecution
        } else {
            EventType::ToolAccess
        },
        user_id: "u".into(),
        tool_name: Some("echo".into()),
        action: "tools/call".into(),
        result: if access.is_some() {
            Outcome::Success
        } else {
            Outcome::Initiated
        },
        metadata: Metadata {
            request_id: Some(RequestId::Int(i as i64)),
            protocol_era: Era::V2025,
            ..Metadata::default()
        },
        risk_level: RiskLevel::Low,
        compliance_tags: vec![],
        session_id: "s".into(),
        upstream: "up".into(),
        linked_event_id: access.map(|a| a.event_id),
    }
}

/// Writes `n` events and returns their records as stored (sealed into the chain) in order, plus
/// the offsets where records end.
fn write_events(dir: &Path, n: u64) -> (Vec<Vec<u8>>, Vec<u64>) {
    let (mut j, _) = Journal::open(dir, 1 << 20).unwrap();
    let ids = EventIds::default();
    let mut payloads = Vec::new();
    let mut ends = Vec::new();
    let mut last_access = None;
    for i in 0..n {
        let e = if i % 2 == 0 {
            event(&ids, i, None)
        } else {
            event(&ids, i, last_access.as_ref())
        };
        let bytes = serde_json::to_vec(&e).unwrap();
        ends.push(j.append(&[&bytes]).unwrap().offset);
        payloads.push(bytes);
        last_access = Some(e);
    }
    j.sync().unwrap();
    let stored = read_all(dir);
    assert_eq!(stored.len(), payloads.len());
    (stored, ends)
}

/// A stored record less its chain members: the event as the writer was handed it.
fn unsealed(record: &[u8]) -> Vec<u8> {
    let mut object: serde_json::Map<String, Value> = serde_json::from_slice(record).unwrap();
    object.remove("seq");
    object.remove("previous_hash");
    serde_json::to_vec(&object).unwrap()
}

fn read_all(dir: &Path) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    journal::read_from(
        dir,
        JournalPos::START,
        |_, p| {
            out.push(p.to_vec());
            Ok(())
        },
        |d| panic!("{d}"),
    )
    .unwrap();
    out
}

#[test]
fn recovery_keeps_every_whole_record_at_every_cut_of_the_last_records() {
    let pristine = tempfile::tempdir().unwrap();
    let (payloads, ends) = write_events(pristine.path(), 12);
    let segment = std::fs::read(segment_path(pristine.path(), 1)).unwrap();
    // Every byte offset from the start of the third-to-last record to the end.
    let from = ends[ends.len() - 4] as usize;
    for cut in from..=segment.len() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(segment_path(dir.path(), 1), &segment[..cut]).unwrap();
        let whole = ends.iter().filter(|&&e| e as usize <= cut).count();
        let at_boundary = ends.contains(&(cut as u64)) || cut == segment.len();

        let (mut j, recovery) =
            Journal::open(dir.path(), 1 << 20).unwrap_or_else(|e| panic!("cut {cut}: {e}"));
        assert!(
            recovery.damaged.is_empty(),
            "cut {cut}: a cut is a torn tail, not damage"
        );
        let torn = recovery.torn;
        match (&torn, at_boundary) {
            (None, true) => {}
            (Some(t), false) => {
                assert_eq!(t.offset, ends[whole - 1], "cut {cut}");
                assert_eq!(
                    t.bytes as usize,
                    cut - ends[whole - 1] as usize,
                    "cut {cut}"
                );
                assert_eq!(
                    std::fs::read(&t.saved_to).unwrap(),
                    &segment[ends[whole - 1] as usize..cut],
                    "the torn bytes are kept"
                );
            }
            _ => panic!("cut {cut}: torn={torn:?} at_boundary={at_boundary}"),
        }
        assert_eq!(read_all(dir.path()), payloads[..whole], "cut {cut}");
        // Appending after recovery continues the journal cleanly.
        j.append(&[b"{\"after\":true}"]).unwrap();
        j.sync().unwrap();
        drop(j);
        let (_, again) = Journal::open(dir.path(), 1 << 20).unwrap();
        assert!(
            again.torn.is_none(),
            "cut {cut}: recovery is not needed twice"
        );
        assert_eq!(read_all(dir.path()).len(), whole + 1);
    }
}

#[test]
fn the_store_recovers_a_torn_tail_and_indexes_what_remains() {
    let pristine = tempfile::tempdir().unwrap();
    let journal_dir = pristine.path().join("journal");
    let (payloads, ends) = write_events(&journal_dir, 6);
    let segment = std::fs::read(segment_path(&journal_dir, 1)).unwrap();
    for cut in (ends[3] as usize..segment.len()).step_by(37) {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("journal")).unwrap();
        std::fs::write(
            segment_path(&root.path().join("journal"), 1),
            &segment[..cut],
        )
        .unwrap();
        let (store, report) = Store::open(root.path(), 1 << 20).unwrap();
        let whole = ends.iter().filter(|&&e| e as usize <= cut).count();
        assert_eq!(
            !report.torn.is_empty(),
            !ends.contains(&(cut as u64)),
            "cut {cut}"
        );
        let index = store
            .index
            .as_ref()
            .expect("the only process holds the index");
        assert_eq!(index.len(), whole, "cut {cut}");
        let newest = index.newest(1, &Filter::default()).unwrap();
        let expected: AuditEvent = serde_json::from_slice(&payloads[whole - 1]).unwrap();
        assert_eq!(newest[0].event_id, expected.event_id);
    }
}

#[test]
fn a_flipped_bit_in_the_last_record_is_caught_by_the_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let (payloads, ends) = write_events(dir.path(), 4);
    let path = segment_path(dir.path(), 1);
    let mut bytes = std::fs::read(&path).unwrap();
    let inside_last = (ends[2] + 20) as usize;
    bytes[inside_last] ^= 0x04;
    std::fs::write(&path, &bytes).unwrap();
    let (_, recovery) = Journal::open(dir.path(), 1 << 20).unwrap();
    let torn = recovery.torn.expect("reported");
    assert_eq!(torn.reason, "checksum mismatch");
    assert_eq!(torn.offset, ends[2]);
    assert_eq!(read_all(dir.path()), payloads[..3]);
}

#[test]
fn damage_between_whole_records_is_stepped_over_not_cut_off() {
    let root = tempfile::tempdir().unwrap();
    let journal_dir = root.path().join("journal");
    let (payloads, ends) = write_events(&journal_dir, 6);
    let path = segment_path(&journal_dir, 1);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[(16 + 30) as usize] ^= 0x01; // inside the first record
    std::fs::write(&path, &bytes).unwrap();

    // A query leaves the journal as it is and reports the damage.
    let (index, _lock, report) = mcp_audit_proxy::store::open_for_query(root.path())
        .unwrap()
        .unwrap();
    assert_eq!(index.len(), 5);
    assert_eq!(report.damaged.len(), 1, "{report:?}");
    assert_eq!(report.damaged[0].offset, 16);
    assert_eq!(report.damaged[0].resumes_at, Some(ends[0]));
    drop((index, _lock));
    assert_eq!(
        std::fs::read(&path).unwrap(),
        bytes,
        "a query changes nothing"
    );

    // A writer (taking the index, where the query left the legacy journal applied past the
    // damage) keeps every whole record and appends to a journal of its own.
    let (mut store, report) = Store::open(root.path(), 1 << 20).unwrap();
    assert!(report.torn.is_empty());
    assert_eq!(
        (report.caught_up, report.damaged.len()),
        (0, 0),
        "{report:?}"
    );
    assert_eq!(store.index.as_ref().unwrap().len(), 5);
    // Sealed again as the first record of that journal's chain: the same bytes.
    store.journal.append(&[&unsealed(&payloads[0])]).unwrap();
    let own = store.journal.dir().to_path_buf();
    drop(store);
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "nobody appends to it");
    let mut got = Vec::new();
    let mut damage = Vec::new();
    journal::read_from(
        &journal_dir,
        JournalPos::START,
        |_, p| {
            got.push(p.to_vec());
            Ok(())
        },
        |d| damage.push(d),
    )
    .unwrap();
    assert_eq!(got, payloads[1..], "the 5 survivors");
    assert_eq!(damage.len(), 1);
    assert_eq!(read_all(&own), [payloads[0].clone()], "the appended record");
}

#[tokio::test]
async fn a_deleted_or_damaged_index_is_rebuilt_from_the_journal() {
    // Extra lines land in the config's [audit] table.
    let store = TestStore::new("segment_bytes = 4096");
    let mut c = LineClient::spawn(store.proxied_example());
    c.initialize().await;
    for i in 0..40 {
        c.send(&call_line(
            json!(i),
            "echo",
            json!({"text": "t".repeat(i * 7)}),
        ))
        .await;
        c.recv_response(&json!(i)).await;
    }
    assert!(c.finish().await.success());
    let journal_root = store.store_dir().join("journal");
    let ids = journals::list(&journal_root).unwrap();
    assert_eq!(ids.len(), 1, "one journal: the proxy's");
    assert!(
        list_segments(&ids[0].dir(&journal_root)).unwrap().len() > 3,
        "several segments"
    );
    let before = store.events();
    assert_eq!(pairs(&before).len(), 40);

    // Reading the journal directly (what `events` does while a proxy runs) gives the same
    // newest events, links included, across segments.
    let as_json = |events: Vec<AuditEvent>| -> Vec<Value> {
        events
            .iter()
            .map(|e| serde_json::to_value(e).unwrap())
            .collect()
    };
    let (newest, damaged) =
        newest_from_journals(&store.store_dir(), 7, &Filter::default()).unwrap();
    assert!(damaged.is_empty());
    let expected: Vec<Value> = before.iter().rev().take(7).cloned().collect();
    assert_eq!(as_json(newest), expected);
    let accesses = Filter {
        event_type: Some(EventType::ToolAccess),
        ..Filter::default()
    };
    let (newest, _) = newest_from_journals(&store.store_dir(), 25, &accesses).unwrap();
    let expected: Vec<Value> = before
        .iter()
        .rev()
        .filter(|e| e["event_type"] == "tool_access")
        .take(25)
        .cloned()
        .collect();
    assert_eq!(as_json(newest), expected);

    std::fs::remove_dir_all(store.store_dir().join("index")).unwrap();
    assert_eq!(
        store.events(),
        before,
        "deleted index: rebuilt, same events"
    );

    // Damage: overwrite every file of the sled folder with garbage.
    for entry in walk(&store.store_dir().join("index")) {
        std::fs::write(entry, b"garbage garbage garbage").unwrap();
    }
    assert_eq!(
        store.events(),
        before,
        "damaged index: rebuilt, same events"
    );
    let aside = std::fs::read_dir(store.store_dir())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("index.replaced")
        })
        .count();
    assert_eq!(aside, 1, "the damaged index is kept aside, not deleted");

    // `reindex` by hand says what it did.
    let out = std::process::Command::new(common::proxy_bin())
        .args(["reindex", "--config"])
        .arg(&store.config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("80 events"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(store.events(), before);
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test]
async fn a_second_proxy_runs_beside_the_first_and_queries_read_the_journals() {
    let store = TestStore::new("");
    let mut first = LineClient::spawn(store.proxied_example());
    first.initialize().await;
    first
        .send(&call_line(json!(1), "echo", json!({"text": "x"})))
        .await;
    first.recv_response(&json!(1)).await;
    // While it runs (holding the index): a second proxy on the same store works...
    let mut second = LineClient::spawn(store.proxied_example());
    second.initialize().await;
    second
        .send(&call_line(json!(2), "echo", json!({"text": "y"})))
        .await;
    second.recv_response(&json!(2)).await;
    // ...and `events` reads both journals, each pair linked.
    let events = store.events();
    assert_eq!(pairs(&events).len(), 2);
    assert!(first.finish().await.success());
    assert!(second.finish().await.success());
    let ids = journals::list(&store.store_dir().join("journal")).unwrap();
    assert_eq!(ids.len(), 2, "a journal per process");
    assert_eq!(store.events(), events, "the index gives the same events");
}

/// A SIGKILLed wrapper leaves its calls in flight with an access event and no end: nothing in
/// the trail said what became of them. The next proxy to start on the store ends each once,
/// in its own journal (`shutdown`, the cause in words, the outcome unknown), and marks the
/// stopped journal settled; a third start adds nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_left_open_by_a_killed_wrapper_are_ended_once_at_the_next_start() {
    let store = TestStore::new("");
    let mut c = LineClient::spawn(store.proxied_example());
    c.initialize().await;
    for id in 0..3 {
        c.send(&call_line(
            json!(id),
            "slow",
            json!({"ms": 60_000, "steps": 1}),
        ))
        .await;
    }
    c.send(&call_line(json!(9), "echo", json!({"text": "done"})))
        .await;
    c.recv_response(&json!(9)).await;
    // The slow calls' access events are durable before they are forwarded (`sync`).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while store
        .events()
        .iter()
        .filter(|e| e["event_type"] == "tool_access")
        .count()
        < 4
    {
        assert!(
            std::time::Instant::now() < deadline,
            "{:#?}",
            store.events()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let killed = c.child.id().unwrap() as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(killed),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let _ = c.finish().await;
    // Access events no end links to (an access's own link is filled in from its end by the
    // index, so the ends are what is read).
    let open = |events: &[Value]| -> Vec<String> {
        let ended: HashSet<&str> = events
            .iter()
            .filter(|e| e["event_type"] != "tool_access")
            .filter_map(|e| e["linked_event_id"].as_str())
            .collect();
        events
            .iter()
            .filter(|e| e["event_type"] == "tool_access")
            .map(|e| e["event_id"].as_str().unwrap().to_string())
            .filter(|id| !ended.contains(id.as_str()))
            .collect()
    };
    assert_eq!(open(&store.events()).len(), 3, "the killed wrapper's calls");

    // The next wrapper ends them while it serves.
    let mut next = LineClient::spawn(store.proxied_example());
    next.initialize().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !open(&store.events()).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "still open: {:#?}",
            store.events()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = next.finish().await;
    let events = store.events();
    let ends: Vec<&Value> = events
        .iter()
        .filter(|e| {
            e["event_type"] == "tool_failure"
                && e["reason"]
                    .as_str()
                    .or(e["metadata"]["reason"].as_str())
                    .is_some_and(|r| r.contains("stopped without recording its end"))
        })
        .collect();
    assert_eq!(ends.len(), 3, "{events:#?}");
    for end in &ends {
        assert_eq!(end["result"], "shutdown", "{end}");
        assert_eq!(end["tool_name"], "slow", "{end}");
        assert_eq!(end["user_id"], "tester", "{end}");
        assert_eq!(end["metadata"]["failure_side"], "internal", "{end}");
    }
    pairs(&events);
    let journal_root = store.store_dir().join("journal");
    let settled = journals::list(&journal_root)
        .unwrap()
        .into_iter()
        .filter(|id| id.dir(&journal_root).join("SETTLED").exists())
        .count();
    assert!(
        settled >= 1,
        "the killed wrapper's journal is marked settled"
    );

    // Compliance pairs them across journals: ended by another process, not in flight nor
    // without an end (found by a fresh pair of eyes: it read them as never ended).
    let out = std::process::Command::new(common::proxy_bin())
        .args([
            "compliance",
            "--regulation",
            "pci_dss",
            "--json",
            "--config",
        ])
        .arg(&store.config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let assessment: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let counts: Vec<&Value> = assessment["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["evidence"]["counts"])
        .filter(|c| c.get("ended_by_another_process").is_some())
        .collect();
    assert!(!counts.is_empty(), "{text}");
    for c in counts {
        assert_eq!(c["ended_by_another_process"], 3, "{text}");
        assert_eq!(c["in_flight"], 0, "{text}");
        assert_eq!(c["without_end"], 0, "{text}");
    }

    // A third start finds nothing left to end.
    let mut third = LineClient::spawn(store.proxied_example());
    third.initialize().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = third.finish().await;
    let again = store.events();
    assert_eq!(
        again
            .iter()
            .filter(|e| e["event_type"] == "tool_failure")
            .count(),
        3,
        "{again:#?}"
    );
}

/// Writes `events` into a new journal of the store at `root`, as a writer process that then
/// stops; returns that journal's id.
async fn stopped_journal(root: &Path, events: &[AuditEvent]) -> journals::JournalId {
    let store = Store::open_journal(root, 1 << 20).unwrap();
    let (journal, keeper, lock) = store.into_parts(root);
    let id = journals::id_of(journal.dir());
    let (sink, threads) = mcp_audit_proxy::audit::writer::start(
        journal,
        keeper,
        mcp_audit_proxy::config::Durability::Sync,
        Duration::from_millis(5),
        1 << 10,
    )
    .unwrap();
    for e in events {
        sink.record(e).unwrap().wait().await.unwrap();
    }
    sink.close().await;
    threads.join();
    drop(lock);
    id
}

/// What a settler finds open: accesses without an end in their journal, nor in the journals
/// named in its `SETTLING` file (a settler that stopped half-way); never imported events.
#[tokio::test]
async fn a_stopped_journals_open_calls_exclude_its_ends_the_ends_of_earlier_settlers_and_imports() {
    use mcp_audit_proxy::audit::settle::end_of;
    use mcp_audit_proxy::store::settle::{self, SETTLING};
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let ids = EventIds::default();
    let accesses: Vec<AuditEvent> = (0..4).map(|i| event(&ids, i, None)).collect();
    let mut imported = event(&ids, 9, None);
    imported.metadata.imported = Some(mcp_audit_proxy::audit::event::Imported {
        at: "2026-12-01T00:00:00.000000Z".into(),
        source: "other.jsonl".into(),
        line: 1,
        earlier: Vec::new(),
    });
    let answered = event(&ids, 0, Some(&accesses[0]));
    let mut written = accesses.clone();
    written.push(answered);
    written.push(imported);
    let dead = stopped_journal(&root, &written).await;
    // A settler that ended accesses[1] and stopped before marking the journal settled.
    let journal_root = root.join("journal");
    let settler = stopped_journal(&root, &[end_of(&accesses[1], dead, dead, &ids)]).await;
    std::fs::write(
        dead.dir(&journal_root).join(SETTLING),
        format!("{settler}\n"),
    )
    .unwrap();

    let found = settle::open_calls(&journal_root, dead).unwrap().unwrap();
    let open: Vec<_> = found.open.iter().map(|e| e.event_id).collect();
    assert_eq!(open, [accesses[2].event_id, accesses[3].event_id]);
    // Held under the journal's LOCK: another settler finds it busy.
    assert!(settle::open_calls(&journal_root, dead).unwrap().is_none());
    found.settled(settler, 2).unwrap();
    assert!(!settle::unsettled(&journal_root).unwrap().contains(&dead));
    assert!(settle::open_calls(&journal_root, dead).unwrap().is_none());
}
