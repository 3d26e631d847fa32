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
    let mut store = Store::open_journal(root, 1 << 20).unwrap();
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
        let p = event(&ids);
        let len = (p.len() as u32).to_le_bytes();
        let mut h = crc32fast::Hasher::new();
        h.update(&len);
        h.update(&p);
        bytes.extend_from_slice(&len);
        bytes.extend_from_slice(&h.finalize().to_le_bytes());
        bytes.extend_from_slice(&p);
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
