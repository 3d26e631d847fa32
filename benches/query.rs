//! The query side at scale (issue 9 item 9): fills a store with realistic events, indexes it
//! as `reindex` does, then times `events --user X --since 1d --limit 100` in-process (open
//! the index, query, close), through the binary opening the index itself, and through the
//! binary asking a running index holder over its socket (`src/store/serve.rs`; the holder is
//! this process, as a writer would be).
//!
//! ```sh
//! cargo bench --bench query -- --events 1000000 [--dir /path/kept] [--journals 8] [--fill-only]
//! ```
//!
//! `--fill-only` stops after filling (no index, no queries): for the commands that read the
//! journals (`export`, `verify --no-index`).
//!
//! With `--dir`, an existing store there is reused (generation and indexing are skipped), so
//! a query can be timed again without refilling; without it, a temporary store is made and
//! removed. Events: 30 days ending now, 8 journals (writer processes), 400 users (a few much
//! busier than the rest), 40 tools, sessions of about 40 events, access and end pairs with
//! small arguments, a tenth tagged, risk mostly low. They are written as a proxy writes them:
//! through `Journal::append` (canonical records, hash-chained per journal), personal fields
//! sealed per user (the default `audit.encrypt_personal_data`), a checkpoint signed with
//! `DIR/signing.key` after every batch of 1024 records (the default pace is every 1000
//! events) and a final one; so `verify --public-key DIR/signing.key.pub` checks all of it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use mcp_audit_proxy::audit::event::{AuditEvent, EventId, EventType, Metadata, Outcome, RiskLevel};
use mcp_audit_proxy::mcp::Era;
use std::sync::Arc;

use mcp_audit_proxy::store::checkpoint::{CheckpointWriter, Signer, keygen};
use mcp_audit_proxy::store::{self, Filter, Store};
use serde_json::value::RawValue;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const DAY_MS: u64 = 86_400_000;

/// The user of an event: users 0-9 make half the calls, the other 390 the rest.
fn user(rng: &mut Rng) -> String {
    if rng.below(2) == 0 {
        format!("user{}", rng.below(10))
    } else {
        format!("user{}", 10 + rng.below(390))
    }
}

fn event(
    id: EventId,
    ms: u64,
    access: Option<&AuditEvent>,
    who: &str,
    session: &str,
    rng: &mut Rng,
) -> AuditEvent {
    let tool = match access {
        Some(a) => a.tool_name.clone(),
        None => Some(format!("tool{}", rng.below(40))),
    };
    let failed = access.is_some() && rng.below(20) == 0;
    let arguments = access.is_none().then(|| {
        RawValue::from_string(format!(
            r#"{{"path":"/srv/data/{}/file{}.txt","limit":{}}}"#,
            who,
            rng.below(10_000),
            rng.below(100)
        ))
        .unwrap()
    });
    AuditEvent {
        event_id: id,
        timestamp: SystemTime::UNIX_EPOCH + Duration::from_millis(ms),
        event_type: match (access, failed) {
            (None, _) => EventType::ToolAccess,
            (Some(_), false) => EventType::ToolExecution,
            (Some(_), true) => EventType::ToolFailure,
        },
        user_id: who.to_string(),
        tool_name: tool,
        action: "tools/call".into(),
        result: match (access, failed) {
            (None, _) => Outcome::Initiated,
            (Some(_), false) => Outcome::Success,
            (Some(_), true) => Outcome::Timeout,
        },
        metadata: Metadata {
            protocol_era: Era::V2025,
            arguments,
            execution_time_us: access.map(|_| rng.below(50_000)),
            risk_score: Some(rng.below(100) as u8),
            ..Metadata::default()
        },
        risk_level: match rng.below(100) {
            0..70 => RiskLevel::Low,
            70..90 => RiskLevel::Medium,
            90..98 => RiskLevel::High,
            _ => RiskLevel::Critical,
        },
        compliance_tags: if rng.below(10) == 0 {
            vec!["gdpr".into()]
        } else {
            vec![]
        },
        session_id: session.to_string(),
        upstream: format!("upstream{}", rng.below(5)),
        linked_event_id: access.map(|a| a.event_id),
    }
}

/// Writes `n` events (pairs) over 30 days ending now into `journals` journals, checkpoints
/// signed with `signer`.
fn fill(root: &Path, n: u64, journals: usize, signer: &Arc<Signer>) {
    let mut writers: Vec<Store> = (0..journals)
        .map(|_| {
            let mut s = Store::open_journal(root, 64 << 20).unwrap();
            s.journal.encrypt_personal_data(root);
            s
        })
        .collect();
    let mut checkpoints: Vec<CheckpointWriter> = writers
        .iter()
        .map(|w| CheckpointWriter::new(w.journal.dir(), w.id, Some(signer.clone())))
        .collect();
    let started = Instant::now();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let now_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let start = now_ms - 30 * DAY_MS;
    let step = (30 * DAY_MS) / (n / 2).max(1);
    // Each journal's ids must grow (one process's ULID generator is monotonic).
    let mut last: Vec<u128> = vec![0; journals];
    let mut batches: Vec<Vec<Vec<u8>>> = vec![Vec::new(); journals];
    let mut session = (String::new(), String::new(), 0usize, 0u64);
    for i in 0..n / 2 {
        if session.3 == 0 {
            session = (
                user(&mut rng),
                format!("session-{i}"),
                rng.below(journals as u64) as usize,
                20 + rng.below(40),
            );
        }
        session.3 -= 1;
        let (who, sid, j) = (session.0.clone(), session.1.clone(), session.2);
        let ms = start + i * step;
        let mut next_id = |ms: u64, rng: &mut Rng| {
            let id = (u128::from(ms) << 80 | u128::from(rng.next()) << 16).max(last[j] + 1);
            last[j] = id;
            EventId(id.into())
        };
        let a_id = next_id(ms, &mut rng);
        let access = event(a_id, ms, None, &who, &sid, &mut rng);
        let end_ms = ms + step / 2;
        let e_id = next_id(end_ms, &mut rng);
        let end = event(e_id, end_ms, Some(&access), &who, &sid, &mut rng);
        batches[j].push(serde_json::to_vec(&access).unwrap());
        batches[j].push(serde_json::to_vec(&end).unwrap());
        if batches[j].len() >= 1024 {
            writers[j].journal.append(&batches[j]).unwrap();
            writers[j].journal.sync().unwrap();
            checkpoints[j]
                .write(writers[j].journal.head(), false)
                .unwrap();
            batches[j].clear();
        }
        if (i + 1) % 500_000 == 0 {
            println!(
                "  {} events written in {:.0} s",
                (i + 1) * 2,
                started.elapsed().as_secs_f64()
            );
        }
    }
    for ((w, b), c) in writers.iter_mut().zip(&batches).zip(&mut checkpoints) {
        if !b.is_empty() {
            w.journal.append(b).unwrap();
        }
        w.journal.sync().unwrap();
        c.write(w.journal.head(), true).unwrap();
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let n: u64 = value("--events").map_or(1_000_000, |v| v.parse().expect("--events"));
    let journals: usize = value("--journals").map_or(8, |v| v.parse().expect("--journals"));
    let temp;
    let dir: PathBuf = match value("--dir") {
        Some(d) => PathBuf::from(d),
        None => {
            temp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
            temp.path().to_path_buf()
        }
    };
    let root = dir.join("store");
    if !root.join("journal").is_dir() {
        let key = dir.join("signing.key");
        keygen(&key).unwrap();
        let signer = Arc::new(Signer::load(&key).unwrap());
        let t = Instant::now();
        fill(&root, n, journals, &signer);
        println!("filled {n} events in {:.1} s", t.elapsed().as_secs_f64());
        if args.iter().any(|a| a == "--fill-only") {
            // For commands that read the journals (export, verify --no-index): no index.
            return;
        }
        let t = Instant::now();
        let (index, _lock, report) = store::reindex(&root).unwrap();
        index.close().unwrap();
        let s = t.elapsed().as_secs_f64();
        println!(
            "indexed {} events in {s:.1} s ({:.1} µs per event)",
            report.indexed,
            s * 1e6 / report.indexed as f64
        );
    }
    let config = dir.join("proxy.toml");
    std::fs::write(
        &config,
        format!(
            "[upstream]\nname = \"bench\"\n[audit]\nstore_dir = \"{}\"\n",
            root.display()
        ),
    )
    .unwrap();
    let filter = Filter {
        user: Some("user3".into()),
        user_subject: store::personal::subject_of(&root, "user3").unwrap(),
        since: SystemTime::now().checked_sub(Duration::from_secs(86_400)),
        ..Filter::default()
    };
    for round in 0..5 {
        let t = Instant::now();
        let (index, _lock, _) = store::open_for_query(&root).unwrap().unwrap();
        let opened = t.elapsed();
        let events = index.newest(100, &filter).unwrap();
        let queried = t.elapsed() - opened;
        index.close().unwrap();
        let total = t.elapsed();
        assert_eq!(events.len(), 100, "user3 has 100 events in the last day");
        assert!(events.iter().all(|e| filter.matches(e)));
        println!(
            "round {round}: in-process open {:.1} ms + query {:.1} ms + close = {:.1} ms",
            opened.as_secs_f64() * 1e3,
            queried.as_secs_f64() * 1e3,
            total.as_secs_f64() * 1e3
        );
        let t = Instant::now();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_mcp-audit-proxy"))
            .args([
                "events", "--user", "user3", "--since", "1d", "--limit", "100", "--json",
                "--config",
            ])
            .arg(&config)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout.iter().filter(|b| **b == b'\n').count(), 100);
        println!(
            "round {round}: `events --user user3 --since 1d --limit 100 --json` (binary): {:.1} ms",
            t.elapsed().as_secs_f64() * 1e3
        );
    }
    // A writer holds the index (this process, with an empty journal of its own): the binary
    // asks it over the socket.
    let t = Instant::now();
    let (writer, _report) = Store::open(&root, 64 << 20).unwrap();
    let (_journal, keeper, _lock) = writer.into_parts(&root);
    assert!(
        keeper.holds(),
        "no other process may hold the index of the bench's store"
    );
    println!(
        "a writer took the index (opened, caught up) in {:.1} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    for round in 0..7 {
        let t = Instant::now();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_mcp-audit-proxy"))
            .args([
                "events", "--user", "user3", "--since", "1d", "--limit", "100", "--json",
                "--config",
            ])
            .arg(&config)
            .env("RUST_LOG", "mcp_audit_proxy=info")
            .output()
            .unwrap();
        let elapsed = t.elapsed();
        assert!(out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("answered over its socket"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout.iter().filter(|b| **b == b'\n').count(), 100);
        println!(
            "round {round}: the same, answered by the index holder over its socket: {:.1} ms",
            elapsed.as_secs_f64() * 1e3
        );
    }
    keeper.close();
}
