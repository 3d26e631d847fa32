//! The cost of the hash chain (issue 9 item 4): what sealing adds per event in the audit
//! writer's thread, and how fast `verify` walks a store.
//!
//! ```sh
//! cargo bench --bench chain -- [--events 100000] [--args-bytes 200]
//! ```
//!
//! It prints, per event: serializing the event as the pipeline does (`serde_json`, the cost
//! before this change), sealing it (`Chain::seal`: parse, RFC 8785 serialization with `seq` and
//! `previous_hash`, SHA-256), and then `verify --no-index` over a journal of those events
//! (records/s). Then the same for personal fields encrypted per user (issue 9 item 7): sealing
//! them (`Sealer::seal_event`, as the audit writer does: XChaCha20-Poly1305 of the fields,
//! the rest serialized; 10 users' keys cached; and `Sealer::seal` from the JSON, as `import`
//! does) on top of the chain, appending with encryption on as the writer does, opening them again (`Keyring::decode`) and
//! `verify --no-index` of that journal. Wall-clock figures of a shared machine vary; run it a
//! few times.

use std::time::Instant;

use mcp_audit_proxy::audit::event::RiskLevel;
use mcp_audit_proxy::audit::event::{AuditEvent, EventIds, EventType, Metadata, Outcome};
use mcp_audit_proxy::jsonrpc::RequestId;
use mcp_audit_proxy::mcp::Era;
use mcp_audit_proxy::store::Store;
use mcp_audit_proxy::store::chain::Chain;
use mcp_audit_proxy::store::journal::JournalPos;
use mcp_audit_proxy::store::personal::{Keyring, Sealer};
use mcp_audit_proxy::store::verify::verify_store;
use serde_json::value::RawValue;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map(|v| v.parse::<usize>().expect(name))
    };
    let n = value("--events").unwrap_or(100_000);
    let arg_bytes = value("--args-bytes").unwrap_or(200);
    let ids = EventIds::default();
    let arguments = format!(
        r#"{{"message":"{}","n":42,"flag":true}}"#,
        "x".repeat(arg_bytes)
    );
    let events: Vec<AuditEvent> = (0..n)
        .map(|i| {
            let (event_id, timestamp) = ids.next();
            AuditEvent {
                event_id,
                timestamp,
                event_type: EventType::ToolAccess,
                user_id: format!("user-{}", i % 10),
                tool_name: Some("echo".into()),
                action: "tools/call".into(),
                result: Outcome::Initiated,
                metadata: Metadata {
                    request_id: Some(RequestId::Int(i as i64)),
                    protocol_version: Some("2025-06-18".into()),
                    protocol_era: Era::V2025,
                    auth_method: Some("stdio".into()),
                    user_agent: Some("bench/1".into()),
                    tool_version: Some("example/1".into()),
                    arguments: Some(RawValue::from_string(arguments.clone()).unwrap()),
                    risk_score: Some(20),
                    risk_reasons: vec!["base: unknown tool".into()],
                    decision: Some("allow".into()),
                    policy_version: Some("0123456789abcdef".into()),
                    ..Metadata::default()
                },
                risk_level: RiskLevel::Low,
                compliance_tags: vec![],
                session_id: "01KBENCHSESSION".into(),
                upstream: "example".into(),
                linked_event_id: None,
            }
        })
        .collect();

    let start = Instant::now();
    let payloads: Vec<Vec<u8>> = events
        .iter()
        .map(|e| serde_json::to_vec(e).unwrap())
        .collect();
    let serialize = start.elapsed();
    let bytes: usize = payloads.iter().map(Vec::len).sum();

    let mut chain = Chain::default();
    let start = Instant::now();
    let mut sealed_bytes = 0;
    for p in &payloads {
        sealed_bytes += chain.seal(p).unwrap().len();
    }
    let seal = start.elapsed();
    println!(
        "{n} events of {} bytes on average ({} sealed)",
        bytes / n,
        sealed_bytes / n
    );
    println!(
        "serialize (before this change): {:.2} µs/event",
        serialize.as_secs_f64() * 1e6 / n as f64
    );
    println!(
        "seal (added, writer thread):     {:.2} µs/event",
        seal.as_secs_f64() * 1e6 / n as f64
    );

    // The parts of sealing: the canonical form alone, SHA-256 alone. Each canonical form is
    // dropped before the next, as in the writer: kept, every one would be fresh memory, and
    // the figure would be mostly page faults.
    let start = Instant::now();
    let mut canonical_bytes = 0;
    for p in &payloads {
        canonical_bytes += mcp_audit_proxy::store::canonical::canonicalize(p)
            .unwrap()
            .len();
    }
    let canon = start.elapsed();
    let canonical: Vec<Vec<u8>> = payloads
        .iter()
        .map(|p| mcp_audit_proxy::store::canonical::canonicalize(p).unwrap())
        .collect();
    assert_eq!(
        canonical_bytes,
        canonical.iter().map(Vec::len).sum::<usize>()
    );
    let start = Instant::now();
    let mut x = 0u8;
    for c in &canonical {
        x ^= mcp_audit_proxy::store::chain::digest(c)[0];
    }
    let sha = start.elapsed();
    println!(
        "  of which canonical form {:.2} µs, SHA-256 {:.2} µs ({x})",
        canon.as_secs_f64() * 1e6 / n as f64,
        sha.as_secs_f64() * 1e6 / n as f64
    );

    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let root = dir.path().join("store");
    let mut store = Store::open_journal(&root, 64 << 20).unwrap();
    let start = Instant::now();
    for batch in payloads.chunks(64) {
        store.journal.append(batch).unwrap();
    }
    store.journal.sync().unwrap();
    let append = start.elapsed();
    drop(store);
    println!(
        "append incl. seal (64 per batch, one sync at the end): {:.2} µs/event",
        append.as_secs_f64() * 1e6 / n as f64
    );
    let start = Instant::now();
    let report = verify_store(&root, None, false).unwrap();
    let verify = start.elapsed();
    assert!(report.intact(), "{report:?}");
    println!(
        "verify --no-index: {:.0} records/s ({:.2} µs/record)",
        n as f64 / verify.as_secs_f64(),
        verify.as_secs_f64() * 1e6 / n as f64
    );

    // Personal fields encrypted per user (audit.encrypt_personal_data, the default).
    let root = dir.path().join("sealed");
    let mut sealer = Sealer::new(&root);
    sealer.begin_batch();
    for p in payloads.iter().take(10) {
        sealer.seal(p).unwrap(); // the ten users' keys made (and synced) once
    }
    // From the events' JSON (what `import` and the writer's own events do) ...
    let start = Instant::now();
    for (i, p) in payloads.iter().enumerate() {
        if i % 64 == 0 {
            sealer.begin_batch(); // each user's key file looked at once per batch
        }
        std::hint::black_box(sealer.seal(p).unwrap());
    }
    let from_json = start.elapsed();
    // ... and from the events themselves, as the audit writer does (it owns each event; the
    // copies are made before the clock starts).
    let owned: Vec<AuditEvent> = events.clone();
    let start = Instant::now();
    let mut protected = Vec::with_capacity(n);
    for (i, e) in owned.into_iter().enumerate() {
        if i % 64 == 0 {
            sealer.begin_batch();
        }
        protected.push(sealer.seal_event(e).unwrap());
    }
    let encrypt = start.elapsed();
    println!(
        "encrypt personal fields (added, writer thread): {:.2} µs/event ({} bytes stored on average); from the JSON: {:.2} µs/event",
        encrypt.as_secs_f64() * 1e6 / n as f64,
        protected.iter().map(Vec::len).sum::<usize>() / n,
        from_json.as_secs_f64() * 1e6 / n as f64,
    );
    let mut store = Store::open_journal(&root, 64 << 20).unwrap();
    store.journal.encrypt_personal_data(&root);
    let owned: Vec<AuditEvent> = events.clone();
    let start = Instant::now();
    let mut batch = Vec::with_capacity(64);
    for (i, e) in owned.into_iter().enumerate() {
        if i % 64 == 0 {
            store.journal.begin_batch();
        }
        batch.push(store.journal.prepare(e, 1024).unwrap());
        if batch.len() == 64 {
            store.journal.append_prepared(&batch).unwrap();
            batch.clear();
        }
    }
    store.journal.append_prepared(&batch).unwrap();
    store.journal.sync().unwrap();
    let append = start.elapsed();
    drop(store);
    println!(
        "append incl. encrypt and seal (64 per batch): {:.2} µs/event",
        append.as_secs_f64() * 1e6 / n as f64
    );
    let keys = Keyring::new(&root);
    let start = Instant::now();
    for p in &protected {
        let e = keys.decode(p, JournalPos::START).unwrap();
        assert!(e.metadata.arguments.is_some());
    }
    let decode = start.elapsed();
    println!(
        "read back and decrypt (queries): {:.2} µs/event",
        decode.as_secs_f64() * 1e6 / n as f64
    );
    let start = Instant::now();
    let report = verify_store(&root, None, false).unwrap();
    let verify = start.elapsed();
    assert!(report.intact(), "{report:?}");
    println!(
        "verify --no-index, encrypted: {:.0} records/s",
        n as f64 / verify.as_secs_f64()
    );
}
