//! Retention (issue 9 item 6): a store holding events of known ages and tags, written through
//! the library's own journal writer (sealed, chained and checkpointed as a proxy writes them,
//! only with old timestamps), then `retention` and `retention --apply` run as a user would;
//! `events` and `verify` check what is left, and files are removed or forged by hand to show
//! that `verify` still tells a purge from a deletion.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::{TestStore, proxy_bin};
use mcp_audit_proxy::audit::{AuditEvent, EventId, EventType, Metadata, Outcome, RiskLevel};
use mcp_audit_proxy::store::Store;
use mcp_audit_proxy::store::checkpoint::{CheckpointWriter, Signer, keygen};
use mcp_audit_proxy::store::journal::{self, JournalPos};
use mcp_audit_proxy::store::journals;
use mcp_audit_proxy::store::retention::{Cut, PURGE_TYPE, PURGES, PurgeStatement};
use serde_json::Value;

const DAY: Duration = Duration::from_secs(86_400);

fn run(args: &[&str], dir: &Path) -> Output {
    std::process::Command::new(proxy_bin())
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run the proxy binary")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// One event to write: its age and tags.
#[derive(Clone, Copy)]
struct Spec {
    age_days: u64,
    tags: &'static [&'static str],
}

/// The events of the tests, in writing order (oldest first), and which of them expire under
/// the default periods (untagged 1y, pci_dss 1y, gdpr 7y): 24 old untagged (whole segments),
/// then old pci_dss and gdpr alternating (segments rewritten), then recent ones.
fn specs() -> Vec<(Spec, bool)> {
    let mut out = Vec::new();
    for _ in 0..24 {
        out.push((
            Spec {
                age_days: 900,
                tags: &[],
            },
            true,
        ));
    }
    for i in 0..16 {
        let pci = i % 2 == 0;
        out.push((
            Spec {
                age_days: 800,
                tags: if pci { &["pci_dss"] } else { &["gdpr"] },
            },
            pci,
        ));
    }
    // pci_dss and gdpr together: the longest period (gdpr) keeps it.
    out.push((
        Spec {
            age_days: 800,
            tags: &["pci_dss", "gdpr"],
        },
        false,
    ));
    for _ in 0..10 {
        out.push((
            Spec {
                age_days: 3,
                tags: &[],
            },
            false,
        ));
    }
    out
}

/// Writes `specs` into a journal of its own, as a stopped writer leaves it (a final
/// checkpoint, signed with `signer` if given); returns the event ids in order.
fn fill(root: &Path, specs: &[Spec], signer: Option<Arc<Signer>>) -> Vec<EventId> {
    let mut store = Store::open_journal(root, 2048).unwrap();
    let ids = append(&mut store, specs, signer.clone());
    CheckpointWriter::new(store.journal.dir(), store.id, signer)
        .write(store.journal.head(), true)
        .unwrap();
    ids
}

/// The JSON of an event of `spec`, the `i`th written at `now`, and its id.
fn event(spec: &Spec, i: usize, now: SystemTime) -> (EventId, Vec<u8>) {
    // Seconds apart, in writing order, so ids grow as a writer's do.
    let t = now - DAY * spec.age_days as u32 + Duration::from_secs(i as u64);
    let t = SystemTime::UNIX_EPOCH
        + Duration::from_micros(
            t.duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_micros() as u64,
        );
    let id = EventId(ulid::Ulid::from_datetime(t));
    let event = AuditEvent {
        event_id: id,
        timestamp: t,
        event_type: EventType::ToolAccess,
        user_id: "alice".into(),
        tool_name: Some("echo".into()),
        action: "tools/call".into(),
        result: Outcome::Initiated,
        metadata: Metadata::default(),
        risk_level: RiskLevel::Low,
        compliance_tags: spec.tags.iter().map(|t| t.to_string()).collect(),
        session_id: "s1".into(),
        upstream: "example".into(),
        linked_event_id: None,
    };
    (id, serde_json::to_vec(&event).unwrap())
}

/// Appends events of `specs` to `store`'s journal (durable, a checkpoint every 7 events).
fn append(store: &mut Store, specs: &[Spec], signer: Option<Arc<Signer>>) -> Vec<EventId> {
    let now = SystemTime::now();
    let mut ids = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let (id, payload) = event(spec, i, now);
        ids.push(id);
        store.journal.append(&[payload]).unwrap();
        if i % 7 == 6 {
            store.journal.sync().unwrap();
            CheckpointWriter::new(store.journal.dir(), store.id, signer.clone())
                .write(store.journal.head(), false)
                .unwrap();
        }
    }
    store.journal.sync().unwrap();
    ids
}

/// A test store with the events of [`specs`]; signed when `signed`.
struct Fixture {
    store: TestStore,
    public: Option<PathBuf>,
    ids: Vec<EventId>,
    expired: Vec<bool>,
}

impl Fixture {
    fn new(signed: bool, extra: &str) -> Fixture {
        let config = if signed {
            format!("signing_key_file = \"signing.key\"\n{extra}")
        } else {
            extra.to_string()
        };
        let store = TestStore::new(&config);
        let (public, signer) = if signed {
            let key = store.dir.path().join("signing.key");
            let (public, _) = keygen(&key).unwrap();
            (Some(public), Some(Arc::new(Signer::load(&key).unwrap())))
        } else {
            (None, None)
        };
        let (specs, expired): (Vec<Spec>, Vec<bool>) = specs().into_iter().unzip();
        let ids = fill(&store.store_dir(), &specs, signer);
        Fixture {
            store,
            public,
            ids,
            expired,
        }
    }

    fn config(&self) -> String {
        self.store.config.to_str().unwrap().to_string()
    }

    fn cmd(&self, args: &[&str]) -> Output {
        let config = self.config();
        let mut all = args.to_vec();
        all.extend(["--config", &config]);
        run(&all, self.store.dir.path())
    }

    fn journal_dir(&self) -> PathBuf {
        let root = self.store.store_dir().join("journal");
        let ids = journals::list(&root).unwrap();
        ids[0].dir(&root)
    }

    fn kept_ids(&self) -> BTreeSet<String> {
        self.ids
            .iter()
            .zip(&self.expired)
            .filter(|(_, e)| !**e)
            .map(|(id, _)| id.to_string())
            .collect()
    }

    /// `verify` with the public key when signed: exit code and output.
    fn verify(&self) -> (i32, String) {
        self.verify_with(&[])
    }

    fn verify_with(&self, extra: &[&str]) -> (i32, String) {
        let public = self
            .public
            .as_ref()
            .map(|p| p.to_str().unwrap().to_string());
        let mut args = vec!["verify"];
        args.extend_from_slice(extra);
        if let Some(p) = &public {
            args.extend(["--public-key", p]);
        }
        let out = self.cmd(&args);
        (out.status.code().unwrap_or(-1), text(&out))
    }
}

/// Every file of the store's journal folder and its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    common::files_under(dir)
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect()
}

#[test]
fn the_dry_run_lists_what_expired_per_segment_and_changes_nothing() {
    let f = Fixture::new(false, "");
    let before = snapshot(&f.store.store_dir());
    let out = f.cmd(&["retention", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    let journals = plan["journals"].as_array().unwrap();
    assert_eq!(journals.len(), 1);
    let segments = journals[0]["segments"].as_array().unwrap();
    assert!(segments.len() >= 4, "{plan}");
    let sum = |key: &str| -> u64 { segments.iter().map(|s| s[key].as_u64().unwrap()).sum() };
    assert_eq!(sum("events"), f.ids.len() as u64);
    let expected = f.expired.iter().filter(|e| **e).count() as u64;
    assert_eq!(sum("expired"), expected);
    let actions: Vec<&str> = segments
        .iter()
        .map(|s| s["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions.first(), Some(&"remove"), "{actions:?}");
    assert!(actions.contains(&"rewrite"), "{actions:?}");
    assert_eq!(actions.last(), Some(&"keep"), "{actions:?}");
    // Tags and time ranges are listed per segment.
    let tagged: BTreeSet<&str> = segments
        .iter()
        .flat_map(|s| s["tags"].as_array().unwrap())
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(
        tagged,
        BTreeSet::from(["gdpr", "pci_dss", "untagged"]),
        "{plan}"
    );
    assert!(segments[0]["oldest"].as_str().unwrap() < segments[0]["newest"].as_str().unwrap());

    let out = f.cmd(&["retention"]);
    assert!(out.status.success(), "{}", text(&out));
    let report = text(&out);
    assert!(
        report.contains(&format!("would remove {expected} events")),
        "{report}"
    );
    assert!(report.contains("nothing was changed"), "{report}");
    assert_eq!(
        snapshot(&f.store.store_dir()),
        before,
        "a dry run changes no file"
    );
}

#[test]
fn apply_removes_exactly_the_expired_events_and_the_trail_still_verifies() {
    let f = Fixture::new(true, "");
    // Query once first, so that the index holds every event before the purge.
    assert_eq!(f.store.events().len(), f.ids.len());
    let segments_before = journal::list_segments(&f.journal_dir()).unwrap();

    let out = f.cmd(&["retention", "--apply"]);
    assert!(out.status.success(), "{}", text(&out));
    let expired = f.expired.iter().filter(|e| **e).count();
    assert!(
        text(&out).contains(&format!("removed {expired} events from 1 journals")),
        "{}",
        text(&out)
    );

    // What is left through `events` (the index): the kept events and the purge record.
    let events = f.store.events();
    let ids: BTreeSet<String> = events
        .iter()
        .filter(|e| e["event_type"] != "configuration_change")
        .map(|e| e["event_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, f.kept_ids());
    let purge: Vec<&Value> = events
        .iter()
        .filter(|e| e["action"] == "retention/apply")
        .collect();
    assert_eq!(purge.len(), 1, "{events:?}");
    assert_eq!(purge[0]["event_type"], "configuration_change");
    let changes = purge[0]["metadata"]["changes"].to_string();
    let journal = journals::id_of(&f.journal_dir()).to_string();
    assert!(changes.contains(&journal), "{changes}");
    assert!(changes.contains(&format!("{expired} events")), "{changes}");
    assert!(changes.contains("segments removed"), "{changes}");
    assert!(changes.contains("segments rewritten"), "{changes}");
    assert!(changes.contains("purge statement signed"), "{changes}");

    // The records left are the kept ones, in order, and the oldest segments are gone.
    let left = event_ids(&f.journal_dir());
    assert_eq!(left.into_iter().collect::<BTreeSet<_>>(), f.kept_ids());
    let segments_after = journal::list_segments(&f.journal_dir()).unwrap();
    assert!(segments_after.len() < segments_before.len());
    assert_ne!(segments_after.first(), segments_before.first());

    // The chain verifies (with the index), and says where retention cut it.
    let (code, report) = f.verify();
    assert_eq!(code, 0, "{report}");
    assert!(
        report.contains(&format!("{expired} record(s) in ")),
        "{report}"
    );
    assert!(report.contains("removed by retention"), "{report}");

    // A second run finds nothing more to remove.
    let out = f.cmd(&["retention", "--apply"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("removed 0 events"), "{}", text(&out));
    assert_eq!(f.verify().0, 0);
}

#[test]
fn a_segment_removed_by_hand_is_still_reported_after_a_purge() {
    let f = Fixture::new(true, "");
    let out = f.cmd(&["retention", "--apply"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(f.verify().0, 0);
    // Removing a kept segment (no purge statement covers it) is a deletion.
    let segments = journal::list_segments(&f.journal_dir()).unwrap();
    assert!(segments.len() >= 3, "{segments:?}");
    std::fs::remove_file(journal::segment_path(&f.journal_dir(), segments[1])).unwrap();
    let (code, report) = f.verify();
    assert_eq!(code, 1, "{report}");
    assert!(report.contains("deleted"), "{report}");
}

/// The `event_id` of each whole record of the journal in `dir`, in order.
fn event_ids(dir: &Path) -> Vec<String> {
    chain_of(dir).into_iter().map(|r| r.4).collect()
}

/// The record (segment, seq, event_hash, previous_hash, event_id) of each whole record of a
/// journal.
fn chain_of(dir: &Path) -> Vec<(u64, u64, String, Option<String>, String)> {
    let mut out = Vec::new();
    journal::read_from(
        dir,
        JournalPos::START,
        |end, p| {
            let v: Value = serde_json::from_slice(p).unwrap();
            out.push((
                end.segment,
                v["seq"].as_u64().unwrap(),
                mcp_audit_proxy::store::chain::hex(&mcp_audit_proxy::store::chain::digest(p)),
                v["previous_hash"].as_str().map(str::to_string),
                v["event_id"].as_str().unwrap().to_string(),
            ));
            Ok(())
        },
        |d| panic!("{d}"),
    )
    .unwrap();
    out
}

#[test]
fn a_forged_purge_statement_is_refused_when_signing_is_configured() {
    let f = Fixture::new(true, "");
    let dir = f.journal_dir();
    let chain = chain_of(&dir);
    // Delete the first segment by hand and write the purge statement retention would have
    // written, with the true boundary hashes, but unsigned, then signed by another key.
    let first: Vec<_> = chain.iter().filter(|r| r.0 == 1).collect();
    let last = first.last().unwrap();
    std::fs::remove_file(journal::segment_path(&dir, 1)).unwrap();
    let mut statement = PurgeStatement {
        kind: PURGE_TYPE.into(),
        journal: journals::id_of(&dir).to_string(),
        time: "2026-12-02T00:00:00.000000Z".into(),
        cuts: vec![Cut {
            first_seq: 0,
            last_seq: last.1,
            previous_hash: None,
            last_hash: last.2.clone(),
        }],
        removed: vec![1],
        rewritten: vec![],
        alg: "none".into(),
        key_id: None,
        signature: None,
    };
    let write = |s: &PurgeStatement| {
        let mut line = serde_json::to_vec(s).unwrap();
        line.push(b'\n');
        std::fs::write(dir.join(PURGES), line).unwrap();
    };
    write(&statement);
    let (code, report) = f.verify();
    assert_eq!(code, 1, "{report}");
    assert!(
        report.contains("bad_signature at purges line 1"),
        "{report}"
    );
    assert!(report.contains("(seq 0..3) were deleted"), "{report}");
    let (_, json) = f.verify_with(&["--json"]);
    assert!(
        json.contains("unsigned while a public key is given"),
        "{json}"
    );

    let other = f.store.dir.path().join("other.key");
    keygen(&other).unwrap();
    statement.sign(&Signer::load(&other).unwrap());
    write(&statement);
    let (code, report) = f.verify();
    assert_eq!(code, 1, "{report}");
    assert!(report.contains("were deleted"), "{report}");
    let (_, json) = f.verify_with(&["--json"]);
    assert!(json.contains("not by the given public key"), "{json}");

    // The same statement signed with the configured key is accepted: the gap is a purge.
    let key = f.store.dir.path().join("signing.key");
    statement.sign(&Signer::load(&key).unwrap());
    write(&statement);
    let (code, report) = f.verify();
    assert_eq!(code, 0, "{report}");
    assert!(report.contains("removed by retention"), "{report}");
}

#[test]
fn bad_retention_config_is_refused_with_the_line_and_a_hint() {
    let f = Fixture::new(false, "[retention]\npci_dss = \"12m\"\n");
    let out = f.cmd(&["retention"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = text(&out);
    let line = std::fs::read_to_string(&f.store.config)
        .unwrap()
        .lines()
        .position(|l| l.starts_with("pci_dss"))
        .unwrap()
        + 1;
    assert!(
        err.contains(&format!("proxy.toml:{line}: `retention.pci_dss`")),
        "{err}"
    );
    assert!(err.contains("`m` is minutes"), "{err}");
}

#[test]
fn a_running_writers_newest_segment_is_kept_and_its_chain_goes_on() {
    let store = TestStore::new("");
    let root = store.store_dir();
    // A writer that keeps running (this process holds its journal's LOCK).
    let mut live = Store::open_journal(&root, 2048).unwrap();
    let old = Spec {
        age_days: 900,
        tags: &[],
    };
    append(&mut live, &[old; 40], None);
    let dir = live.journal.dir().to_path_buf();
    let before = journal::list_segments(&dir).unwrap();
    assert!(before.len() >= 3, "{before:?}");
    let newest = *before.last().unwrap();
    let newest_bytes = std::fs::read(journal::segment_path(&dir, newest)).unwrap();
    let in_newest = chain_of(&dir).iter().filter(|r| r.0 == newest).count();

    let config = store.config.to_str().unwrap().to_string();
    let out = run(
        &["retention", "--apply", "--config", &config],
        store.dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!(
            "removed {} events from 1 journals; {in_newest} expired events stay",
            40 - in_newest
        )),
        "{}",
        text(&out)
    );
    // Every older segment went; the one being appended to is byte for byte as it was.
    assert_eq!(journal::list_segments(&dir).unwrap(), vec![newest]);
    assert_eq!(
        std::fs::read(journal::segment_path(&dir, newest)).unwrap(),
        newest_bytes
    );

    // The writer goes on appending after the purge, and stops cleanly: the chain verifies.
    let recent = Spec {
        age_days: 0,
        tags: &[],
    };
    append(&mut live, &[recent; 3], None);
    CheckpointWriter::new(&dir, live.id, None)
        .write(live.journal.head(), true)
        .unwrap();
    drop(live);
    let out = run(&["verify", "--config", &config], store.dir.path());
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("removed by retention"),
        "{}",
        text(&out)
    );
    // Its last expired events go once it has stopped.
    let out = run(
        &["retention", "--apply", "--config", &config],
        store.dir.path(),
    );
    assert!(
        text(&out).contains(&format!("removed {in_newest} events")),
        "{}",
        text(&out)
    );
    let out = run(&["verify", "--config", &config], store.dir.path());
    assert!(out.status.success(), "{}", text(&out));
}

#[tokio::test]
async fn the_gateway_applies_retention_daily_when_configured() {
    let gateway = common::gateway::Gateway::start("[retention]\napply_daily = true\n");
    let root = gateway.config.parent().unwrap().join("store");
    let (specs, expired): (Vec<Spec>, Vec<bool>) = specs().into_iter().unzip();
    let ids = fill(&root, &specs, None);
    let gone = expired.iter().filter(|e| **e).count();
    // The first run comes 10 s after the start.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let purge = loop {
        let events = gateway.events();
        if let Some(p) = events.iter().find(|e| e["action"] == "retention/apply") {
            break p.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no purge event after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(purge["event_type"], "configuration_change");
    assert_eq!(purge["upstream"], "gateway");
    let changes = purge["metadata"]["changes"].to_string();
    assert!(changes.contains(&format!("{gone} events")), "{changes}");
    let (status, gateway) = gateway.stop();
    assert!(status.success());
    let left: BTreeSet<String> = gateway
        .events()
        .iter()
        .filter(|e| e["action"] == "tools/call")
        .map(|e| e["event_id"].as_str().unwrap().to_string())
        .collect();
    let kept: BTreeSet<String> = ids
        .iter()
        .zip(&expired)
        .filter(|(_, e)| !**e)
        .map(|(id, _)| id.to_string())
        .collect();
    assert_eq!(left, kept);
    let config = gateway.config.to_str().unwrap().to_string();
    let out = run(
        &["verify", "--config", &config],
        gateway.config.parent().unwrap(),
    );
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn a_cut_at_the_end_of_a_journal_is_bridged_to_its_final_checkpoint() {
    let store = TestStore::new("");
    let old = |tags| Spec {
        age_days: 800,
        tags,
    };
    fill(
        &store.store_dir(),
        &[
            old(&["gdpr"]),
            old(&["gdpr"]),
            old(&["pci_dss"]),
            old(&["pci_dss"]),
        ],
        None,
    );
    let config = store.config.to_str().unwrap().to_string();
    let out = run(
        &["retention", "--apply", "--config", &config],
        store.dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("removed 2 events"), "{}", text(&out));
    let out = run(&["verify", "--config", &config], store.dir.path());
    assert!(out.status.success(), "{}", text(&out));
    // The final checkpoint signed the hash of seq 3, which is gone: the purge statement's
    // last hash must be that one. Changed, the cut no longer accounts for the missing end.
    let root = store.store_dir().join("journal");
    let dir = journals::list(&root)
        .unwrap()
        .into_iter()
        .map(|id| id.dir(&root))
        .find(|d| d.join(PURGES).exists())
        .unwrap();
    let text_before = std::fs::read_to_string(dir.join(PURGES)).unwrap();
    let mut statement: PurgeStatement = serde_json::from_str(text_before.trim()).unwrap();
    assert_eq!(statement.cuts.len(), 1);
    assert_eq!(
        (statement.cuts[0].first_seq, statement.cuts[0].last_seq),
        (2, 3)
    );
    statement.cuts[0].last_hash = "0".repeat(64);
    std::fs::write(
        dir.join(PURGES),
        format!("{}\n", serde_json::to_string(&statement).unwrap()),
    )
    .unwrap();
    let out = run(&["verify", "--config", &config], store.dir.path());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("truncated"), "{}", text(&out));
}

#[test]
fn a_store_is_listed_without_a_config_file_with_the_default_periods() {
    let f = Fixture::new(false, "");
    let dir = tempfile::tempdir().unwrap();
    let store = f.store.store_dir();
    let out = run(
        &["retention", "--json", "--store", store.to_str().unwrap()],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        plan["periods"],
        "gdpr 7y, hipaa 6y, pci_dss 1y, untagged 1y"
    );
    let expired: u64 = plan["journals"][0]["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["expired"].as_u64().unwrap())
        .sum();
    assert_eq!(expired, f.expired.iter().filter(|e| **e).count() as u64);
}

#[test]
fn apply_without_the_signing_key_refuses_a_signed_store_and_changes_no_journal() {
    let f = Fixture::new(true, "");
    let before = snapshot(&f.store.store_dir().join("journal"));
    let dir = tempfile::tempdir().unwrap();
    let store = f.store.store_dir();
    let out = run(
        &["retention", "--apply", "--store", store.to_str().unwrap()],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("checkpoints are signed"),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("hint: "), "{}", text(&out));
    assert_eq!(snapshot(&f.store.store_dir().join("journal")), before);
}

#[test]
fn removing_a_stopped_journals_newest_segments_keeps_the_index_without_a_rebuild() {
    let store = TestStore::new("");
    let root = store.store_dir();
    // Segment 1: gdpr events (kept); segment 2: pci_dss events (all expired), each batch
    // written in one append so that it fills its own segment.
    let mut w = Store::open_journal(&root, 1000).unwrap();
    let now = SystemTime::now();
    let batch = |tags: &'static [&'static str], from: usize| -> Vec<(EventId, Vec<u8>)> {
        (from..from + 3)
            .map(|i| {
                event(
                    &Spec {
                        age_days: 800,
                        tags,
                    },
                    i,
                    now,
                )
            })
            .collect()
    };
    let kept = batch(&["gdpr"], 0);
    let gone = batch(&["pci_dss"], 3);
    w.journal
        .append(&kept.iter().map(|e| e.1.clone()).collect::<Vec<_>>())
        .unwrap();
    w.journal
        .append(&gone.iter().map(|e| e.1.clone()).collect::<Vec<_>>())
        .unwrap();
    w.journal.sync().unwrap();
    CheckpointWriter::new(w.journal.dir(), w.id, None)
        .write(w.journal.head(), true)
        .unwrap();
    let dir = w.journal.dir().to_path_buf();
    drop(w);
    assert_eq!(journal::list_segments(&dir).unwrap(), vec![1, 2]);
    // Indexed up to the end of segment 2.
    assert_eq!(store.events().len(), 6);

    let config = store.config.to_str().unwrap().to_string();
    let out = run(
        &["retention", "--apply", "--config", &config],
        store.dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(journal::list_segments(&dir).unwrap(), vec![1]);
    let left: BTreeSet<String> = store
        .events()
        .iter()
        .filter(|e| e["action"] == "tools/call")
        .map(|e| e["event_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        left,
        kept.iter()
            .map(|e| e.0.to_string())
            .collect::<BTreeSet<_>>()
    );
    // The saved position moved back into segment 1: the index was not taken for damaged.
    let replaced = std::fs::read_dir(&root)
        .unwrap()
        .filter_map(Result::ok)
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("index.replaced")
        });
    assert!(!replaced, "the index was rebuilt after the purge");
    let out = run(&["verify", "--config", &config], store.dir.path());
    assert!(out.status.success(), "{}", text(&out));
}

/// `export --since --until` of a range across retention's cuts, then `verify --export` with
/// the public key: the archive's exit status and report.
fn export_and_verify(f: &Fixture, name: &str) -> (i32, String, String) {
    let archive = f.store.dir.path().join(name);
    let now = SystemTime::now();
    let since = humantime::format_rfc3339(now - DAY * 850).to_string();
    let until = humantime::format_rfc3339(now + DAY).to_string();
    let out = f.cmd(&[
        "export",
        "--since",
        &since,
        "--until",
        &until,
        "--out",
        archive.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let exported = text(&out);
    let public = f.public.as_ref().unwrap().to_str().unwrap().to_string();
    let out = run(
        &[
            "verify",
            "--export",
            archive.to_str().unwrap(),
            "--public-key",
            &public,
        ],
        f.store.dir.path(),
    );
    (out.status.code().unwrap_or(-1), text(&out), exported)
}

#[test]
fn an_export_across_retention_cuts_carries_the_purge_statements_and_verifies() {
    let f = Fixture::new(true, "");
    let out = f.cmd(&["retention", "--apply"]);
    assert!(out.status.success(), "{}", text(&out));
    // The 800-day-old gdpr events are kept between removed pci_dss ones: the range exported
    // holds records with gaps that only the purge statement explains.
    let (code, report, exported) = export_and_verify(&f, "range.jsonl");
    assert!(exported.contains("1 purge statement(s)"), "{exported}");
    assert_eq!(code, 0, "{report}");
    assert!(report.contains("removed by retention"), "{report}");
    assert!(!report.contains("deleted"), "{report}");

    // A statement signed by another key is carried as it is, and bridges nothing.
    let dir = f.journal_dir();
    let line = std::fs::read_to_string(dir.join(PURGES)).unwrap();
    let mut statement: PurgeStatement = serde_json::from_str(line.trim()).unwrap();
    let other = f.store.dir.path().join("other.key");
    keygen(&other).unwrap();
    statement.sign(&Signer::load(&other).unwrap());
    std::fs::write(
        dir.join(PURGES),
        format!("{}\n", serde_json::to_string(&statement).unwrap()),
    )
    .unwrap();
    let (code, report, _) = export_and_verify(&f, "forged.jsonl");
    assert_eq!(code, 1, "{report}");
    assert!(report.contains("deleted"), "{report}");
    assert!(report.contains("bad_signature"), "{report}");
}

#[test]
fn the_record_of_an_erasure_never_expires() {
    // Found by a review: `verify` holds every pseudonym whose key is gone against an
    // `audit/erase` event, and an erased user's records can outlive the event's own period
    // (gdpr 7 years; a hipaa tag or `forever` keeps them longer): the event must stay.
    let store = TestStore::new("");
    let root = store.store_dir();
    let mut s = Store::open_journal(&root, 2048).unwrap();
    let old = Spec {
        age_days: 3000,
        tags: &["gdpr"],
    };
    let now = SystemTime::now();
    let mut ids = Vec::new();
    for (i, action) in ["audit/erase", "tools/call"].into_iter().enumerate() {
        let (id, payload) = event(&old, i, now);
        let mut v: Value = serde_json::from_slice(&payload).unwrap();
        v["action"] = Value::from(action);
        s.journal
            .append(&[serde_json::to_vec(&v).unwrap()])
            .unwrap();
        ids.push(id.to_string());
    }
    s.journal.sync().unwrap();
    CheckpointWriter::new(s.journal.dir(), s.id, None)
        .write(s.journal.head(), true)
        .unwrap();
    let dir = s.journal.dir().to_path_buf();
    drop(s);
    let config = store.config.to_str().unwrap().to_string();
    let out = run(
        &["retention", "--apply", "--config", &config],
        store.dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("removed 1 events"), "{}", text(&out));
    assert_eq!(event_ids(&dir), [ids[0].clone()]);
}

/// Review of helper-116 H3: `export` took any purge statement before a journal's first
/// record as the explanation of its start, so records deleted after retention's cut
/// exported as a consistent file. The cuts must run from record 0 to the one before the
/// first kept, linked to it.
#[test]
fn records_deleted_after_retentions_cut_at_a_journals_start_are_not_exported() {
    let f = Fixture::new(true, "");
    let out = f.cmd(&["retention", "--apply"]);
    assert!(out.status.success(), "{}", text(&out));
    let dir = f.journal_dir();
    let chain = chain_of(&dir);
    assert!(
        chain[0].1 > 0,
        "retention cut the journal's start: {chain:?}"
    );
    // Untouched: exports.
    let (code, report, _) = export_and_verify(&f, "before.jsonl");
    assert_eq!(code, 0, "{report}");
    // The first record kept, deleted by hand.
    let mut first = None;
    journal::read_from(
        &dir,
        JournalPos::START,
        |end, p| {
            if first.is_none() {
                first = Some((end.segment, end.offset - 8 - p.len() as u64, end.offset));
            }
            Ok(())
        },
        |d| panic!("{d}"),
    )
    .unwrap();
    let (segment, start, end) = first.unwrap();
    let path = journal::segment_path(&dir, segment);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.drain(start as usize..end as usize);
    std::fs::write(&path, bytes).unwrap();
    let archive = f.store.dir.path().join("after.jsonl");
    let out = f.cmd(&["export", "--out", archive.to_str().unwrap()]);
    let said = text(&out);
    assert_ne!(out.status.code(), Some(0), "{said}");
    assert!(
        said.contains(&format!("begins at record {}", chain[1].1)),
        "{said} {:?}",
        &chain[..2]
    );
}
