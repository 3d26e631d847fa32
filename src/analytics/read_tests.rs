//! The scan against the readers it replaced: the same calls as decoding every event of the
//! range (from the journals, and from the index) and joining them, on a store of several
//! journals interleaved in time, with a range cut in the middle of calls, a damaged segment,
//! an erased user, events stored in clear beside sealed ones, ends written before their
//! access, calls in flight across other calls, and events that are not calls.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::value::RawValue;
use ulid::Ulid;

use super::*;
use crate::analytics::Call;
use crate::audit::RiskLevel;
use crate::audit::event::{AuditEvent, EventId, EventType, HttpContext, Metadata, Outcome};
use crate::mcp::Era;
use crate::store::{Filter, Store, journal, scan};

use crate::test_rng::Rng;

pub(crate) const START_US: u64 = 1_780_000_000_000_000;
const USERS: [&str; 5] = ["alice", "bob", "carol", "dave", "erin"];

pub(crate) fn time(us: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(us)
}

fn id_at(us: u64, rng: &mut Rng) -> EventId {
    EventId(Ulid::from_parts(us / 1000, u128::from(rng.next())))
}

pub(crate) fn access(us: u64, user: &str, rng: &mut Rng) -> AuditEvent {
    let http = (rng.below(3) == 0).then(|| {
        Box::new(HttpContext {
            client_address: Some(format!("10.0.{}.{}", rng.below(4), rng.below(250))),
            user_agent: Some("curl/8".into()),
            roles: vec!["dev".into(), format!("team{}", rng.below(3))],
            ..HttpContext::default()
        })
    });
    let risk = RiskLevel::ALL[rng.below(4) as usize];
    AuditEvent {
        event_id: id_at(us, rng),
        timestamp: time(us),
        event_type: EventType::ToolAccess,
        user_id: user.into(),
        tool_name: (rng.below(9) != 0).then(|| format!("tool{}", rng.below(6))),
        action: "tools/call".into(),
        result: Outcome::Initiated,
        metadata: Metadata {
            protocol_era: Era::V2025,
            user_agent: (rng.below(2) == 0).then(|| "client/1.0".into()),
            arguments: Some(
                RawValue::from_string(format!(
                    r#"{{"path":"/srv/{user}/f{}.txt","n":{}}}"#,
                    rng.below(100),
                    rng.below(10)
                ))
                .unwrap(),
            ),
            risk_reasons: if risk >= RiskLevel::Medium {
                vec![format!("reason {}", rng.below(3))]
            } else {
                Vec::new()
            },
            http,
            ..Metadata::default()
        },
        risk_level: risk,
        compliance_tags: match rng.below(3) {
            0 => vec![],
            1 => vec!["gdpr".into()],
            _ => vec!["gdpr".into(), "secrets".into()],
        },
        session_id: format!("s{}", rng.below(5)),
        upstream: "files".into(),
        linked_event_id: None,
    }
}

pub(crate) fn end_of(a: &AuditEvent, us: u64, rng: &mut Rng) -> AuditEvent {
    let failed = rng.below(5) == 0;
    let mut e = a.clone();
    // Made after its access, so its id sorts after the access's (ids are monotonic).
    e.event_id = id_at(us, rng);
    if e.event_id <= a.event_id {
        let access = a.event_id.0;
        e.event_id = EventId(Ulid::from_parts(access.timestamp_ms(), access.random() + 1));
    }
    e.timestamp = time(us);
    e.event_type = if failed {
        EventType::ToolFailure
    } else {
        EventType::ToolExecution
    };
    e.result = if failed {
        Outcome::ALL[1 + rng.below(11) as usize]
    } else {
        Outcome::Success
    };
    e.risk_level = RiskLevel::ALL[rng.below(4) as usize];
    e.metadata = Metadata {
        protocol_era: Era::V2025,
        execution_time_us: Some(rng.below(100_000)),
        output_size_bytes: (rng.below(4) != 0).then(|| rng.below(5000)),
        ..Metadata::default()
    };
    e.linked_event_id = Some(a.event_id);
    e
}

/// Three writers' journals (two sealing personal fields, one in clear, one left "running"
/// with no span for its newest segment), interleaved in time, in small segments; every
/// event written, in the order each journal got them.
pub(crate) fn varied_store(root: &Path) -> Vec<AuditEvent> {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut writers: Vec<Store> = (0..3)
        .map(|_| Store::open_journal(root, 8 << 10).unwrap())
        .collect();
    writers[0].journal.encrypt_personal_data(root);
    writers[1].journal.encrypt_personal_data(root);
    // Per writer: records waiting to be appended, and calls in flight (end time, access).
    let mut queued: Vec<Vec<AuditEvent>> = vec![Vec::new(); 3];
    let mut in_flight: Vec<Vec<(u64, AuditEvent)>> = vec![Vec::new(); 3];
    let mut all = Vec::new();
    let mut us = START_US;
    for i in 0..2400 {
        us += 1 + rng.below(40_000_000);
        let w = rng.below(3) as usize;
        // Ends due by now, in the writer's journal.
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut in_flight[w])
            .into_iter()
            .partition(|(at, _)| *at <= us);
        in_flight[w] = later;
        for (at, a) in due {
            queued[w].push(end_of(&a, at, &mut rng));
        }
        let user = USERS[rng.below(USERS.len() as u64) as usize];
        let a = access(us, user, &mut rng);
        match rng.below(20) {
            // Never ends.
            0 => queued[w].push(a),
            // Its end is written first (an imported file in that order).
            1 => {
                let end = end_of(&a, us + 500, &mut rng);
                queued[w].push(end);
                queued[w].push(a);
            }
            // Another kind of event.
            2 => {
                let mut other = a.clone();
                other.event_type = EventType::ConfigurationChange;
                other.result = Outcome::Success;
                queued[w].push(other);
            }
            // In flight across later calls.
            3..=6 => {
                in_flight[w].push((us + rng.below(120_000_000), a.clone()));
                queued[w].push(a);
            }
            _ => {
                let end = end_of(&a, us + rng.below(3_000_000), &mut rng);
                queued[w].push(a);
                queued[w].push(end);
            }
        }
        if i % 7 == 0 {
            let batch = std::mem::take(&mut queued[w]);
            append(&mut writers[w], &batch);
            all.extend(batch);
        }
    }
    for w in 0..3 {
        for (at, a) in std::mem::take(&mut in_flight[w]) {
            queued[w].push(end_of(&a, at, &mut rng));
        }
        let batch = std::mem::take(&mut queued[w]);
        append(&mut writers[w], &batch);
        all.extend(batch);
    }
    writers[0].journal.close_span();
    writers[1].journal.close_span();
    all
}

pub(crate) fn append(store: &mut Store, events: &[AuditEvent]) {
    if events.is_empty() {
        return;
    }
    let payloads: Vec<Vec<u8>> = events
        .iter()
        .map(|e| serde_json::to_vec(e).unwrap())
        .collect();
    store.journal.append(&payloads).unwrap();
    store.journal.sync().unwrap();
}

/// Flips a byte inside a record in the middle of a closed segment of the first journal.
pub(crate) fn damage(root: &Path) -> std::path::PathBuf {
    let journal_root = crate::store::StorePaths::new(root).journal();
    let first = crate::store::journals::list(&journal_root).unwrap()[0];
    let dir = first.dir(&journal_root);
    let segments = journal::list_segments(&dir).unwrap();
    let path = journal::segment_path(&dir, segments[segments.len() / 2]);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x55;
    std::fs::write(&path, bytes).unwrap();
    path
}

/// What the readers before the scan gave: every event of `[from, to]` decoded in full
/// (from the journals), oldest first, joined.
fn calls_as_before(
    root: &Path,
    from: SystemTime,
    to: SystemTime,
) -> (Vec<Call>, Vec<Damage>, usize) {
    let filter = Filter {
        since: Some(from),
        until: Some(to),
        ..Filter::default()
    };
    let (mut events, damaged) = store::newest_from_journals(root, usize::MAX, &filter).unwrap();
    events.reverse();
    let n = events.len();
    (crate::analytics::calls(events), damaged, n)
}

fn text(calls: &[Call]) -> Vec<String> {
    calls.iter().map(|c| format!("{c:?}")).collect()
}

fn sorted(mut d: Vec<Damage>) -> Vec<Damage> {
    d.sort_by(|a, b| (&a.segment, a.offset).cmp(&(&b.segment, b.offset)));
    d.dedup();
    d
}

#[test]
fn the_scan_gives_the_calls_that_decoding_every_event_and_joining_gave() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let all = varied_store(root);
    let damaged_path = damage(root);
    assert!(
        crate::store::personal::erase(root, "carol")
            .unwrap()
            .is_some()
    );
    let (first, last) = (
        all[0].timestamp,
        all.iter().map(|e| e.timestamp).max().unwrap(),
    );
    // Bounds on events' exact times, inclusive, in the middle of calls; the whole trail.
    let mut by_time: Vec<SystemTime> = all.iter().map(|e| e.timestamp).collect();
    by_time.sort();
    let q = |n: usize| by_time[by_time.len() * n / 8];
    for (from, to) in [(q(2), q(5)), (q(1), q(1)), (first, last), (q(3), q(7))] {
        let (want, damaged_before, events) = calls_as_before(root, from, to);
        for workers in [1, 2, 3] {
            let mut got = Vec::new();
            let report = scan::calls_on(root, from, to, workers, call_of, |c| got.push(c)).unwrap();
            got.sort_unstable_by_key(|c| (c.at_ms, c.id));
            assert_eq!(
                text(&got),
                text(&want),
                "{workers} threads, [{from:?}, {to:?}]"
            );
            // The damage of the segments that may hold the range: the readers before
            // reported that of every segment they happened to read too.
            let damaged = sorted(report.damaged);
            let before = sorted(damaged_before.clone());
            assert!(damaged.iter().all(|d| before.contains(d)), "{damaged:?}");
            if (from, to) == (first, last) {
                assert_eq!(damaged, before, "the whole trail: all its damage");
                assert!(damaged.iter().any(|d| d.segment == damaged_path));
            }
            assert_eq!(report.calls as usize, want.len());
            assert_eq!(
                report.events as usize, events,
                "events of every type in the range"
            );
        }
        let (got, report) = calls(root, from, to).unwrap();
        assert_eq!(text(&got), text(&want), "read::calls, in time order");
        assert_eq!(report.events, events);
    }
    // What the store holds is really varied.
    let (whole, damaged, _) = calls_as_before(root, first, last);
    assert!(damaged.iter().any(|d| d.segment == damaged_path));
    assert!(
        whole.iter().any(|c| c.user.starts_with("subject:")),
        "an erased user"
    );
    assert!(whole.iter().any(|c| &*c.user == "alice" && c.ip.is_some()));
    assert!(
        whole
            .iter()
            .any(|c| &*c.user == "bob" && !c.arguments.is_empty())
    );
    assert!(whole.iter().any(|c| c.end.is_none()));
    assert!(whole.iter().filter(|c| c.end.is_some()).count() > whole.len() / 2);
    // A range of a quarter of the trail skips closed segments by their span.
    let (_, report) = calls(root, q(2), q(4)).unwrap();
    assert!(report.segments_skipped > 0, "{report:?}");
}

#[test]
fn a_call_goes_on_without_an_end_written_more_than_the_join_wait_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut rng = Rng(7);
    let mut w = Store::open_journal(root, 1 << 20).unwrap();
    let a = access(START_US, "alice", &mut rng);
    let late = end_of(
        &a,
        START_US + JOIN_WAIT.as_micros() as u64 + 2_000_000,
        &mut rng,
    );
    let b = access(START_US + 1_000, "bob", &mut rng);
    let soon = end_of(&b, START_US + 2_000, &mut rng);
    append(&mut w, &[a.clone(), b.clone(), soon, late]);
    let (calls, report) = calls(root, time(START_US), time(START_US + 3 * 86_400_000_000)).unwrap();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].id, a.event_id);
    assert!(calls[0].end.is_none(), "its end came after the wait");
    assert!(calls[1].end.is_some());
    assert_eq!((report.calls, report.unended, report.events), (2, 1, 4));
}

#[test]
fn a_call_ended_in_another_processs_journal_is_joined_to_its_end() {
    // A proxy killed with calls in flight: the next one to start ends them in its own
    // journal (`audit/settle.rs`). `events` showed those ends; `analyze` and `report` read
    // the calls as unfinished (helper-94 F6).
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut rng = Rng(11);
    let mut killed = Store::open_journal(root, 1 << 20).unwrap();
    let a = access(START_US, "alice", &mut rng);
    let t = access(START_US + 1_000, "bob", &mut rng);
    let mut interim = end_of(&t, START_US + 2_000, &mut rng);
    interim.result = Outcome::Task;
    let lone = access(START_US + 3_000, "carol", &mut rng);
    append(&mut killed, &[a.clone(), t.clone(), interim, lone.clone()]);
    drop(killed);
    let mut next = Store::open_journal(root, 1 << 20).unwrap();
    let mut settled = end_of(&a, START_US + 300_000_000, &mut rng);
    settled.result = Outcome::ServerExit;
    let mut task_end = end_of(&t, START_US + 300_000_100, &mut rng);
    task_end.result = Outcome::Success;
    let b = access(START_US + 300_001_000, "dave", &mut rng);
    let b_end = end_of(&b, START_US + 300_002_000, &mut rng);
    append(&mut next, &[settled.clone(), task_end.clone(), b, b_end]);
    let range = (time(START_US), time(START_US + 400_000_000));
    for workers in [1, 2] {
        let mut got = Vec::new();
        let report =
            scan::calls_on(root, range.0, range.1, workers, call_of, |c| got.push(c)).unwrap();
        got.sort_unstable_by_key(|c| (c.at_ms, c.id));
        let ends: Vec<(EventId, Option<EventId>)> = got
            .iter()
            .map(|c| (c.id, c.end.as_ref().map(|e| e.id)))
            .collect();
        assert_eq!(ends.len(), 4, "{workers} threads");
        assert_eq!(ends[0], (a.event_id, Some(settled.event_id)));
        // A task's final end, from the other journal, over its interim one.
        assert_eq!(ends[1], (t.event_id, Some(task_end.event_id)));
        assert_eq!(ends[2], (lone.event_id, None));
        assert!(ends[3].1.is_some());
        assert_eq!((report.calls, report.unended), (4, 1), "{workers} threads");
    }
    // The same as joining every event of the range.
    let (want, _, _) = calls_as_before(root, range.0, range.1);
    let (got, _) = calls(root, range.0, range.1).unwrap();
    assert_eq!(text(&got), text(&want));
}
