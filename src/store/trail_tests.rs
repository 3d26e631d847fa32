//! The tamper-evident trail at the library level: legacy journals, a final checkpoint with
//! nothing after it, an export of a time range (the binary's tests are in tests/tamper.rs).

use std::time::Duration;

use super::checkpoint::{CheckpointWriter, Signer, keygen};
use super::export::{export, verify_export};
use super::journal::{self, Journal, segment_path};
use super::journals;
use super::verify::{Kind, verify_store};
use super::*;
use crate::audit::event::{AuditEvent, EventIds, EventType, Metadata, Outcome, RiskLevel};
use crate::mcp::Era;

fn event(ids: &EventIds) -> Vec<u8> {
    let (event_id, timestamp) = ids.next();
    serde_json::to_vec(&AuditEvent {
        event_id,
        timestamp,
        event_type: EventType::ToolAccess,
        user_id: "u".into(),
        tool_name: Some("echo".into()),
        action: "tools/call".into(),
        result: Outcome::Initiated,
        metadata: Metadata {
            protocol_era: Era::V2025,
            ..Metadata::default()
        },
        risk_level: RiskLevel::Low,
        compliance_tags: vec![],
        session_id: "s".into(),
        upstream: "up".into(),
        linked_event_id: None,
    })
    .unwrap()
}

/// A writer's journal with `n` events, a signed final checkpoint; the store lock released.
fn written(root: &std::path::Path, n: usize, signer: &std::sync::Arc<Signer>) -> JournalId {
    written_in(root, n, signer, 1 << 20)
}

/// [`written`] in segments of `segment_bytes`.
fn written_in(
    root: &std::path::Path,
    n: usize,
    signer: &std::sync::Arc<Signer>,
    segment_bytes: u64,
) -> JournalId {
    let mut store = Store::open_journal(root, segment_bytes).unwrap();
    let ids = EventIds::default();
    for _ in 0..n {
        store.journal.append(&[event(&ids)]).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    store.journal.sync().unwrap();
    let mut cp = CheckpointWriter::new(store.journal.dir(), store.id, Some(signer.clone()));
    cp.write(store.journal.head(), true).unwrap();
    store.id
}

fn signer(dir: &std::path::Path) -> std::sync::Arc<Signer> {
    keygen(&dir.join("k")).unwrap();
    std::sync::Arc::new(Signer::load(&dir.join("k")).unwrap())
}

#[test]
fn a_legacy_journal_is_reported_unchained_not_tampered() {
    let root = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let signer = signer(keys.path());
    // A format-1 segment, as earlier versions wrote it, in the legacy place.
    let legacy = StorePaths::new(root.path()).journal();
    std::fs::create_dir_all(&legacy).unwrap();
    let mut bytes = b"MCPAJNL1".to_vec();
    bytes.extend_from_slice(&1u64.to_le_bytes());
    let ids = EventIds::default();
    for _ in 0..3 {
        bytes.extend_from_slice(&framed(&event(&ids)));
    }
    std::fs::write(segment_path(&legacy, 1), &bytes).unwrap();
    written(root.path(), 4, &signer);
    let report = verify_store(root.path(), Some(&signer.public()), true).unwrap();
    assert!(report.intact(), "{report:#?}");
    let legacy = &report.journals[0];
    assert_eq!(legacy.journal, "legacy");
    assert_eq!((legacy.chain.legacy, legacy.chain.chained), (3, 0));
    assert!(legacy.chain.notes.iter().any(|n| n.contains("unchained")));
    assert_eq!(report.journals[1].chain.chained, 4);
    assert_eq!(report.journals[1].chain.signed, 1);
    assert_eq!(report.index.entries, 7);
}

#[test]
fn a_record_after_a_final_checkpoint_is_inserted() {
    let root = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let signer = signer(keys.path());
    let id = written(root.path(), 3, &signer);
    let dir = id.dir(&StorePaths::new(root.path()).journal());
    // Someone appends to the stopped writer's journal (reopening it continues the chain).
    let (mut j, _) = Journal::open(&dir, 1 << 20).unwrap();
    j.append(&[event(&EventIds::default())]).unwrap();
    j.sync().unwrap();
    let report = verify_store(root.path(), Some(&signer.public()), false).unwrap();
    let f = &report.journals[0].chain.findings[0];
    assert_eq!((f.kind, f.seq), (Kind::Inserted, Some(3)), "{f:?}");
    assert!(f.detail.contains("final checkpoint"), "{f:?}");
}

#[test]
fn an_export_of_a_time_range_verifies_and_starts_at_its_first_record() {
    let root = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let signer = signer(keys.path());
    let id = written(root.path(), 10, &signer);
    let dir = id.dir(&StorePaths::new(root.path()).journal());
    let mut times = Vec::new();
    journal::read_from(
        &dir,
        journal::JournalPos::START,
        |_, p| {
            let e: AuditEvent = serde_json::from_slice(p).unwrap();
            times.push(e.timestamp);
            Ok::<(), StoreError>(())
        },
        |d| panic!("{d}"),
    )
    .unwrap();
    let mut out = Vec::new();
    let summary = export(
        root.path(),
        Some(times[3]),
        Some(times[7]),
        Some(&signer),
        &mut out,
    )
    .unwrap();
    assert_eq!((summary.journals, summary.records), (1, 4));
    assert_eq!(
        summary.checkpoints, 0,
        "the final checkpoint is past the range"
    );
    let report = verify_export(&out, Some(&signer.public()));
    assert!(report.intact(), "{report:#?}");
    let text = String::from_utf8(out.clone()).unwrap();
    assert!(text.contains(r#""first_seq":3"#), "{text}");
    // A line moved to the end of the export is out of place.
    let mut lines: Vec<&str> = text.lines().collect();
    let moved = lines.remove(3);
    lines.insert(5, moved);
    let report = verify_export((lines.join("\n") + "\n").as_bytes(), Some(&signer.public()));
    assert!(!report.intact());
    assert_eq!(report.journals[0].1.findings[0].kind, Kind::Reordered);
    assert!(
        journals::list(&StorePaths::new(root.path()).journal())
            .unwrap()
            .len()
            == 1
    );
}

/// An event at a chosen time (`import` appends such; a proxy's are near "now" but not in
/// order either).
fn event_at(ids: &EventIds, at: std::time::SystemTime, n: usize) -> Vec<u8> {
    let mut e: AuditEvent = serde_json::from_slice(&event(ids)).unwrap();
    e.timestamp = at;
    e.session_id = format!("s{n}");
    serde_json::to_vec(&e).unwrap()
}

#[test]
fn an_export_by_time_skips_closed_segments_outside_the_range_and_verify_catches_a_narrowed_span() {
    let root = tempfile::tempdir().unwrap();
    let day = Duration::from_secs(86_400);
    let start = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_000_000);
    // Ten days of events in 4 KiB segments, out of order within each day, and one of day 2
    // appended late, among day 7's (a record a span must cover wherever it sits).
    let mut store = Store::open_journal(root.path(), 4096).unwrap();
    let ids = EventIds::default();
    let mut all = Vec::new();
    for d in 0..10u32 {
        for k in 0..20u64 {
            let jitter = Duration::from_secs((k * 7_919) % 80_000);
            all.push(start + day * d + jitter);
        }
        if d == 7 {
            all.push(start + day * 2 + Duration::from_secs(5));
        }
    }
    for (n, &t) in all.iter().enumerate() {
        store.journal.append(&[event_at(&ids, t, n)]).unwrap();
    }
    store.journal.sync().unwrap();
    let dir = store.journal.dir().to_path_buf();
    drop(store);
    let segments = journal::list_segments(&dir).unwrap().len();
    assert!(segments > 10, "{segments} segments");
    assert_eq!(
        super::spans::read(&dir).len(),
        segments - 1,
        "a span per closed segment; none for the newest"
    );
    // Day 2: the records of the range, and the run between its first and last record, are
    // exactly what reading every segment gives.
    let (since, until) = (start + day * 2, start + day * 3);
    let in_day = all.iter().filter(|&&t| t >= since && t < until).count();
    let mut out = Vec::new();
    let summary = export(root.path(), Some(since), Some(until), None, &mut out).unwrap();
    assert!(
        summary.segments_skipped >= segments / 2,
        "{} of {segments} segments skipped",
        summary.segments_skipped
    );
    let report = verify_export(&out, None);
    assert!(report.intact(), "{report:#?}");
    let exported: Vec<AuditEvent> = String::from_utf8(out)
        .unwrap()
        .lines()
        .filter(|l| l.contains(r#""type":"record""#))
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            serde_json::from_value(v["record"].clone()).unwrap()
        })
        .collect();
    let late = all.len() - 1 - (9 - 7) * 20; // the late day-2 event's place
    assert_eq!(
        exported.last().unwrap().session_id,
        format!("s{late}"),
        "the run reaches the day-2 event appended among day 7's"
    );
    assert!(exported.len() >= in_day);
    assert_eq!(
        exported
            .iter()
            .filter(|e| e.timestamp >= since && e.timestamp < until)
            .count(),
        in_day,
        "every record of the range"
    );
    assert!(verify_store(root.path(), None, false).unwrap().intact());
    // A span narrowed by hand would hide that late record from exports: verify says so.
    let text = std::fs::read_to_string(dir.join(super::spans::FILE)).unwrap();
    let late_segment = journal::list_segments(&dir)
        .unwrap()
        .into_iter()
        .find(|&n| {
            let mut found = false;
            journal::read_segment(
                &dir,
                n,
                journal::HEADER_LEN,
                false,
                |_, p| {
                    found |= p
                        .windows(late.to_string().len() + 3)
                        .any(|w| w == format!("\"s{late}\"").as_bytes());
                    Ok::<(), StoreError>(())
                },
                |_| {},
            )
            .unwrap();
            found
        })
        .unwrap();
    let narrowed: String = text
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            if v["segment"] == late_segment {
                v["min_time"] = v["max_time"].clone();
            }
            format!("{}\n", v)
        })
        .collect();
    std::fs::write(dir.join(super::spans::FILE), narrowed).unwrap();
    let report = verify_store(root.path(), None, false).unwrap();
    assert!(!report.intact());
    let problems = &report.journals[0].chain.spans;
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with(&format!("segment {late_segment}:")),
        "{problems:?}"
    );
}

/// The records of segment file `path`: each one's offset and payload.
pub(crate) fn records_of(path: &std::path::Path) -> Vec<(usize, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap();
    let mut at = journal::HEADER_LEN as usize;
    let mut out = Vec::new();
    while at + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        if at + 8 + len > bytes.len() {
            break;
        }
        out.push((at, bytes[at + 8..at + 8 + len].to_vec()));
        at += 8 + len;
    }
    out
}

/// `payload` framed as a record (length, CRC-32 of length and payload, payload).
pub(crate) fn framed(payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u32).to_le_bytes();
    let mut h = crc32fast::Hasher::new();
    h.update(&len);
    h.update(payload);
    let mut out = len.to_vec();
    out.extend_from_slice(&h.finalize().to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Replaces the `i`th record of segment `path` with `with` (whole framed bytes, or none).
pub(crate) fn splice(path: &std::path::Path, i: usize, with: &[u8]) {
    let records = records_of(path);
    let (at, payload) = &records[i];
    let mut bytes = std::fs::read(path).unwrap();
    bytes.splice(*at..*at + 8 + payload.len(), with.iter().copied());
    std::fs::write(path, bytes).unwrap();
}

/// A change made to a journal: given its segment 2 and its folder.
type Change = dyn Fn(&std::path::Path, &std::path::Path);

/// A chain walked by a scan on the way reads as `verify --no-index` reads it, however the
/// journals were changed, whatever range the scan reads, on one reading thread or two.
#[test]
fn a_scans_chain_walk_finds_what_verify_finds() {
    use super::scan::{Sink, WalkChains, scan_on};
    struct Nothing;
    impl Sink for Nothing {
        fn event(&mut self, _: &super::scan::Event<'_>) {}
        fn journal_read(&mut self) {}
    }
    let keys = tempfile::tempdir().unwrap();
    let signer = signer(keys.path());
    let public = signer.public();
    let make = || {
        let root = tempfile::tempdir().unwrap();
        let mut ids: Vec<JournalId> = [40, 25, 3]
            .into_iter()
            .map(|n| written_in(root.path(), n, &signer, 4096))
            .collect();
        ids.sort();
        (root, ids[0])
    };
    // Each change to the busiest journal: its segment 2's records and the journal's folder.
    let escape = |what: &str, from: &str, to: &str| {
        let what = what.to_string();
        let (from, to) = (from.to_string(), to.to_string());
        Box::new(move |seg: &std::path::Path, _: &std::path::Path| {
            let (_, payload) = &records_of(seg)[1];
            let text = String::from_utf8(payload.clone()).unwrap();
            let member = format!("\"{what}\":\"");
            let at = text.find(&member).unwrap() + member.len();
            let changed = format!("{}{}", &text[..at], text[at..].replacen(&from, &to, 1));
            assert_ne!(changed, text);
            splice(seg, 1, &framed(changed.as_bytes()));
        }) as Box<Change>
    };
    let cases: Vec<(&str, Box<Change>)> = vec![
        (
            "untouched",
            Box::new(|_: &std::path::Path, _: &std::path::Path| {}),
        ),
        (
            "a byte changed (checksum fails)",
            Box::new(|seg: &std::path::Path, _: &std::path::Path| {
                let (at, _) = records_of(seg)[2];
                let mut bytes = std::fs::read(seg).unwrap();
                bytes[at + 20] ^= 1;
                std::fs::write(seg, bytes).unwrap();
            }),
        ),
        (
            "a record rewritten with its checksum",
            Box::new(|seg: &std::path::Path, _: &std::path::Path| {
                let (_, payload) = &records_of(seg)[2];
                let text = String::from_utf8(payload.clone()).unwrap();
                splice(seg, 2, &framed(text.replace("echo", "ECHO").as_bytes()));
            }),
        ),
        (
            "a record deleted",
            Box::new(|seg: &std::path::Path, _: &std::path::Path| splice(seg, 1, &[])),
        ),
        (
            "two records swapped",
            Box::new(|seg: &std::path::Path, _: &std::path::Path| {
                let r = records_of(seg);
                let (a, b) = (framed(&r[1].1), framed(&r[2].1));
                splice(seg, 1, &b);
                splice(seg, 2, &a);
            }),
        ),
        (
            "the last segment removed",
            Box::new(|seg: &std::path::Path, dir: &std::path::Path| {
                let last = journal::list_segments(dir)
                    .unwrap()
                    .into_iter()
                    .max()
                    .unwrap();
                assert!(last > 2, "the journal has more than two segments");
                std::fs::remove_file(segment_path(dir, last)).unwrap();
                let _ = seg;
            }),
        ),
        (
            "a segment cut short",
            Box::new(|seg: &std::path::Path, _: &std::path::Path| {
                let len = std::fs::metadata(seg).unwrap().len();
                let f = std::fs::OpenOptions::new().write(true).open(seg).unwrap();
                f.set_len(len - 10).unwrap();
            }),
        ),
        (
            "an event id spelled with an escape",
            escape("event_id", "0", "\\u0030"),
        ),
        (
            "a timestamp spelled with an escape",
            escape("timestamp", "-", "\\u002d"),
        ),
        (
            "a previous_hash spelled with an escape",
            escape("previous_hash", "a", "\\u0061"),
        ),
        ("a seq of another type", {
            Box::new(|seg: &std::path::Path, _: &std::path::Path| {
                let (_, payload) = &records_of(seg)[1];
                let mut v: serde_json::Value = serde_json::from_slice(payload).unwrap();
                let seq = v["seq"].as_u64().unwrap();
                v["seq"] = serde_json::json!(format!("{seq}"));
                splice(seg, 1, &framed(&serde_json::to_vec(&v).unwrap()));
            })
        }),
        ("a previous_hash of another type", {
            Box::new(|seg: &std::path::Path, _: &std::path::Path| {
                let (_, payload) = &records_of(seg)[1];
                let mut v: serde_json::Value = serde_json::from_slice(payload).unwrap();
                v["previous_hash"] = serde_json::json!({"sha256": v["previous_hash"]});
                splice(seg, 1, &framed(&serde_json::to_vec(&v).unwrap()));
            })
        }),
        ("stops the scan: an event type of another type", {
            Box::new(|seg: &std::path::Path, _: &std::path::Path| {
                let (_, payload) = &records_of(seg)[1];
                let mut v: serde_json::Value = serde_json::from_slice(payload).unwrap();
                v["event_type"] = serde_json::json!(5);
                splice(seg, 1, &framed(&serde_json::to_vec(&v).unwrap()));
            })
        }),
        ("stops the scan: seq twice", {
            Box::new(|seg: &std::path::Path, _: &std::path::Path| {
                let (_, payload) = &records_of(seg)[1];
                let text = String::from_utf8(payload.clone()).unwrap();
                let twice = format!("{{\"seq\":0,{}", &text[1..]);
                splice(seg, 1, &framed(twice.as_bytes()));
            })
        }),
    ];
    let (mut compared, mut stopped) = (0, 0);
    for (name, change) in &cases {
        let (root, busiest) = make();
        let dir = busiest.dir(&StorePaths::new(root.path()).journal());
        change(&segment_path(&dir, 2), &dir);
        let verified = verify_store(root.path(), Some(&public), false).unwrap();
        let want: Vec<serde_json::Value> = verified
            .journals
            .iter()
            .map(|j| serde_json::to_value(j).unwrap())
            .collect();
        if *name == "untouched" {
            assert!(verified.intact(), "{verified:#?}");
        } else {
            let found: usize = verified
                .journals
                .iter()
                .map(|j| j.chain.findings.len())
                .sum();
            assert!(found > 0, "{name}: verify finds it ({verified:#?})");
        }
        // Every record's time, to read all of them, a middle part, or none.
        let times: Vec<std::time::SystemTime> =
            journals::list(&StorePaths::new(root.path()).journal())
                .unwrap()
                .into_iter()
                .flat_map(|id| {
                    let dir = id.dir(&StorePaths::new(root.path()).journal());
                    journal::list_segments(&dir)
                        .unwrap()
                        .into_iter()
                        .flat_map(move |n| records_of(&segment_path(&dir, n)))
                })
                .filter_map(|(_, p)| super::spans::time_of(&p))
                .collect();
        let (first, last) = (*times.iter().min().unwrap(), *times.iter().max().unwrap());
        let middle = first + (last.duration_since(first).unwrap() / 3);
        let ranges = [
            (first, last),
            (middle, middle + Duration::from_millis(5)),
            (last, first),
        ];
        for (from, to) in ranges {
            for workers in [1, 2] {
                let scanned = scan_on(
                    root.path(),
                    (from, to),
                    Some((from, to)),
                    Some(WalkChains { key: Some(&public) }),
                    workers,
                    |_, _| (),
                    |()| {},
                    || Nothing,
                );
                // A record that is no event (a member an event has, of another type, or
                // twice) stops the scan, as it did before the walk: its reader walks the
                // chain again on its own then (`compliance::with_chain`).
                if let Err(e) = &scanned.result {
                    assert!(
                        name.starts_with("stops the scan")
                            && matches!(e, StoreError::Decode { .. }),
                        "{name}: {e}"
                    );
                    stopped += 1;
                    compared += 1;
                    continue;
                }
                let report = scanned
                    .result
                    .unwrap_or_else(|e| panic!("{name}: the scan reads the store: {e}"));
                let got: Vec<serde_json::Value> = report
                    .chains
                    .iter()
                    .map(|(_, j)| serde_json::to_value(j).unwrap())
                    .collect();
                assert_eq!(
                    got, want,
                    "{name}, range {from:?}..{to:?}, {workers} thread(s)"
                );
                compared += 1;
            }
        }
    }
    assert_eq!(compared, cases.len() * 6);
    assert_eq!(
        stopped, 4,
        "a record that is no event stops the scans of every record"
    );
}
