//! Tamper evidence (issue 9 item 4): a real store written by the real binary, then its files
//! changed directly (a journal segment, the checkpoint file, the index, an export), then
//! `verify` run as a user would, asserting its exit status and the position it reports.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{LineClient, TestStore, call_line, proxy_bin};
use mcp_audit_proxy::store::checkpoint::{Signer, Statement};
use mcp_audit_proxy::store::journal::{self, JournalPos, segment_path};
use mcp_audit_proxy::store::journals::{self, JournalId};
use serde_json::json;

/// A store written by the proxy with a signing key, and where its key files are.
struct Trail {
    store: TestStore,
    public: PathBuf,
}

/// One whole record as it lies in a segment.
#[derive(Debug, Clone)]
struct Rec {
    segment: u64,
    start: u64,
    end: u64,
    payload: Vec<u8>,
}

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

/// `keygen --out DIR/signing.key` through the binary; returns the public key's path.
fn keygen(dir: &Path, name: &str) -> PathBuf {
    let out = run(&["keygen", "--out", name], dir);
    assert!(out.status.success(), "{}", text(&out));
    dir.join(format!("{name}.pub"))
}

/// A store with `calls` echo calls made through the proxy (clean shutdown: a final
/// checkpoint), small segments, a checkpoint every 6 events, signed.
async fn trail(calls: usize) -> Trail {
    let store = TestStore::new(
        "signing_key_file = \"signing.key\"\nsegment_bytes = 4096\ncheckpoint_every_events = 6",
    );
    let public = keygen(store.dir.path(), "signing.key");
    let mut c = LineClient::spawn(store.proxied_example());
    c.initialize().await;
    for i in 0..calls {
        c.send(&call_line(
            json!(i),
            "echo",
            json!({"text": format!("call {i}")}),
        ))
        .await;
        c.recv_response(&json!(i)).await;
    }
    assert!(c.finish().await.success());
    Trail { store, public }
}

impl Trail {
    fn journal_dir(&self) -> PathBuf {
        let root = self.store.store_dir().join("journal");
        let ids = journals::list(&root).unwrap();
        assert_eq!(ids.len(), 1, "one proxy, one journal");
        ids[0].dir(&root)
    }

    fn journal_id(&self) -> JournalId {
        journals::list(&self.store.store_dir().join("journal")).unwrap()[0]
    }

    /// Every whole record, in order.
    fn records(&self) -> Vec<Rec> {
        let mut out = Vec::new();
        journal::read_from(
            &self.journal_dir(),
            JournalPos::START,
            |end, payload| {
                let start = end.offset - 8 - payload.len() as u64;
                out.push(Rec {
                    segment: end.segment,
                    start,
                    end: end.offset,
                    payload: payload.to_vec(),
                });
                Ok(())
            },
            |d| panic!("{d}"),
        )
        .unwrap();
        out
    }

    fn segment(&self, n: u64) -> PathBuf {
        segment_path(&self.journal_dir(), n)
    }

    /// Replaces bytes `[from, to)` of segment `n` with `with`.
    fn splice(&self, n: u64, from: u64, to: u64, with: &[u8]) {
        let path = self.segment(n);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.splice(from as usize..to as usize, with.iter().copied());
        std::fs::write(&path, bytes).unwrap();
    }

    /// `export --config … --out FILE` (every record).
    fn export(&self, file: &Path) -> Output {
        run(
            &[
                "export",
                "--config",
                self.store.config.to_str().unwrap(),
                "--out",
                file.to_str().unwrap(),
            ],
            self.store.dir.path(),
        )
    }

    /// `verify --config …` (the configured key), its exit code and output.
    fn verify(&self, extra: &[&str]) -> (i32, String) {
        let mut args = vec!["verify", "--config"];
        let config = self.store.config.to_str().unwrap().to_string();
        args.push(&config);
        args.extend_from_slice(extra);
        let out = run(&args, self.store.dir.path());
        (out.status.code().unwrap_or(-1), text(&out))
    }
}

/// A record's bytes as stored: length, CRC, payload.
fn framed(payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u32).to_le_bytes();
    let mut h = crc32fast::Hasher::new();
    h.update(&len);
    h.update(payload);
    let mut out = len.to_vec();
    out.extend_from_slice(&h.finalize().to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// The two records `i` and `i + 1` that lie in one segment, past the first record.
fn pair_in_one_segment(records: &[Rec]) -> usize {
    (1..records.len() - 2)
        .find(|&i| records[i].segment == records[i + 1].segment)
        .expect("two records in one segment")
}

fn assert_reported(code: i32, out: &str, kind: &str, at: &Rec, seq: usize) {
    assert_eq!(code, 1, "{out}");
    let expected = format!(
        "TAMPERED: {kind} at segment {} offset {} (seq {seq})",
        at.segment, at.start
    );
    assert!(out.contains(&expected), "expected {expected:?} in:\n{out}");
}

#[tokio::test]
async fn an_untouched_store_verifies_with_the_configured_key_and_with_only_the_public_key() {
    let t = trail(12).await;
    let records = t.records();
    assert_eq!(records.len(), 24);
    assert!(
        records.last().unwrap().segment > 2,
        "the chain runs across segments"
    );
    // Every segment has its time span, the last one too (noted when the writer stopped
    // cleanly), each covering its records; verify checks them against the records below.
    let spans = std::fs::read_to_string(t.journal_dir().join("spans")).unwrap();
    let mut noted: Vec<u64> = spans
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["segment"]
                .as_u64()
                .unwrap()
        })
        .collect();
    noted.sort();
    let mut segments: Vec<u64> = records.iter().map(|r| r.segment).collect();
    segments.dedup();
    assert_eq!(noted, segments, "{spans}");
    let (code, out) = t.verify(&[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("intact; 24 chained records (seq 0..23"),
        "{out}"
    );
    assert!(out.contains("signed and verified"), "{out}");
    assert!(
        out.contains("index: consistent with the journals (24 entries)"),
        "{out}"
    );

    // Elsewhere, with the store folder and the public key only (no config).
    let elsewhere = tempfile::tempdir().unwrap();
    let store = t.store.store_dir();
    let public = t.public.to_str().unwrap();
    let out = run(
        &[
            "verify",
            "--store",
            store.to_str().unwrap(),
            "--public-key",
            public,
            "--no-index",
        ],
        elsewhere.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // Without a key the chains are checked, the signatures are said to be unchecked.
    let out = run(
        &["verify", "--store", store.to_str().unwrap()],
        elsewhere.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("signed but unchecked"),
        "{}",
        text(&out)
    );
}

#[tokio::test]
async fn a_changed_byte_is_reported_as_edited_where_it_is() {
    let t = trail(8).await;
    let records = t.records();
    let r = &records[5];
    // Inside the payload: the checksum no longer matches.
    t.splice(r.segment, r.start + 30, r.start + 31, b"#");
    let (code, out) = t.verify(&[]);
    assert_reported(code, &out, "edited", r, 5);
    assert!(out.contains("checksum mismatch"), "{out}");
}

#[tokio::test]
async fn an_edit_with_a_recomputed_checksum_breaks_the_chain_or_the_final_checkpoint() {
    let t = trail(8).await;
    let records = t.records();
    let forge = |t: &Trail, r: &Rec| {
        let edited = String::from_utf8(r.payload.clone()).unwrap().replacen(
            "\"action\":\"tools/call\"",
            "\"action\":\"tools/list\"",
            1,
        );
        assert_ne!(edited.as_bytes(), r.payload);
        t.splice(r.segment, r.start, r.end, &framed(edited.as_bytes()));
    };
    forge(&t, &records[6]);
    let (code, out) = t.verify(&[]);
    assert_reported(code, &out, "edited", &records[6], 6);
    // Found by the chain, or by the checkpoint that signed that record's hash.
    assert!(
        out.contains("no longer hashes") || out.contains("differs from what the signed checkpoint"),
        "{out}"
    );
    // Found by a hostile pass: `export` wrote and signed the edited trail (exit 0), a file
    // vouching for what the store itself no longer does. It refuses, and leaves no file.
    let file = t.store.dir.path().join("edited.export");
    let out = t.export(&file);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("breaks at seq 7"), "{}", text(&out));
    assert!(!file.exists());

    // The last record has no successor: the writer's final checkpoint names its hash.
    let t = trail(8).await;
    let records = t.records();
    let last = records.len() - 1;
    forge(&t, &records[last]);
    let (code, out) = t.verify(&[]);
    assert_reported(code, &out, "edited", &records[last], last);
    assert!(out.contains("final checkpoint"), "{out}");
}

#[tokio::test]
async fn a_deleted_record_is_reported_where_it_was() {
    let t = trail(8).await;
    let records = t.records();
    let i = pair_in_one_segment(&records);
    let r = &records[i];
    t.splice(r.segment, r.start, r.end, b"");
    let (code, out) = t.verify(&[]);
    assert_reported(code, &out, "deleted", r, i);
}

#[tokio::test]
async fn an_inserted_copy_of_a_record_is_reported_where_it_was_put() {
    let t = trail(8).await;
    let records = t.records();
    let i = pair_in_one_segment(&records);
    let copy = framed(&records[0].payload);
    let at = &records[i + 1];
    t.splice(at.segment, at.start, at.start, &copy);
    let (code, out) = t.verify(&[]);
    assert_reported(code, &out, "inserted", at, 0);
}

#[tokio::test]
async fn two_swapped_records_are_reported_as_reordered() {
    let t = trail(8).await;
    let records = t.records();
    let i = pair_in_one_segment(&records);
    let (a, b) = (&records[i], &records[i + 1]);
    let mut swapped = framed(&b.payload);
    swapped.extend(framed(&a.payload));
    t.splice(a.segment, a.start, b.end, &swapped);
    let (code, out) = t.verify(&[]);
    assert_reported(code, &out, "reordered", a, i);
}

#[tokio::test]
async fn a_cut_tail_is_reported_as_truncated_against_the_final_checkpoint() {
    let t = trail(8).await;
    let records = t.records();
    let keep = records.len() - 3;
    let cut = &records[keep];
    // Cut the segment right after a whole record, and drop any later segment.
    let path = t.segment(cut.segment);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..cut.start as usize]).unwrap();
    for r in &records[keep..] {
        if r.segment > cut.segment {
            let _ = std::fs::remove_file(t.segment(r.segment));
        }
    }
    let (code, out) = t.verify(&["--no-index"]);
    assert_reported(code, &out, "truncated", cut, keep);
    assert!(
        out.contains(&format!("covers seq {}", records.len() - 1)),
        "{out}"
    );
}

#[tokio::test]
async fn a_torn_tail_cut_by_recovery_after_a_crash_is_explained_not_tampering() {
    let store = TestStore::new("signing_key_file = \"signing.key\"\ncheckpoint_every_events = 4");
    keygen(store.dir.path(), "signing.key");
    let mut c = LineClient::spawn(store.proxied_example());
    c.initialize().await;
    for i in 0..5 {
        c.send(&call_line(json!(i), "echo", json!({"text": "x"})))
            .await;
        c.recv_response(&json!(i)).await;
    }
    // A crash: no final checkpoint; then a write that was cut in the middle.
    c.child.start_kill().unwrap();
    c.wait_exit().await;
    let root = store.store_dir().join("journal");
    let id = journals::list(&root).unwrap()[0];
    let dir = id.dir(&root);
    let last = *journal::list_segments(&dir).unwrap().last().unwrap();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(segment_path(&dir, last))
        .unwrap();
    std::io::Write::write_all(&mut f, &[0x40, 0, 0, 0, 1, 2, 3]).unwrap();
    drop(f);
    // Before recovery: bytes after the last whole record, said as such.
    let verify = |store: &TestStore| {
        let out = run(
            &["verify", "--config", store.config.to_str().unwrap()],
            store.dir.path(),
        );
        (out.status.code().unwrap_or(-1), text(&out))
    };
    let (code, out) = verify(&store);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("7 bytes after the last whole record"), "{out}");
    // `reindex` recovers the stopped writer's journal: the torn bytes are cut and saved aside.
    let out = run(
        &["reindex", "--config", store.config.to_str().unwrap()],
        store.dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    let (code, out) = verify(&store);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("recovery after a crash cut a torn tail"),
        "{out}"
    );
}

#[tokio::test]
async fn a_forged_checkpoint_is_a_bad_signature() {
    let t = trail(8).await;
    let path = t.journal_dir().join("checkpoints");
    let text_before = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text_before.lines().collect();
    assert!(
        lines.len() >= 3,
        "periodic ones and the final one: {text_before}"
    );
    // Claim a later head than was signed.
    let mut forged: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
    forged["seq"] = json!(forged["seq"].as_u64().unwrap() + 1);
    let mut edited: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    edited[1] = forged.to_string();
    std::fs::write(&path, edited.join("\n") + "\n").unwrap();
    let (code, out) = t.verify(&[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("TAMPERED: bad_signature at checkpoints line 2"),
        "{out}"
    );

    // A statement signed with another key (the forger's own) is not taken either.
    std::fs::write(&path, &text_before).unwrap();
    let forger = keygen(t.store.dir.path(), "forger.key");
    let signer = Signer::load(&t.store.dir.path().join("forger.key")).unwrap();
    let mut s = Statement::new(t.journal_id(), None, true);
    signer.sign(&mut s);
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    let mut line = s.to_line();
    line.push(b'\n');
    std::io::Write::write_all(&mut file, &line).unwrap();
    let (code, out) = t.verify(&[]);
    assert_eq!(code, 1, "{out}");
    let n = lines.len() + 1;
    assert!(
        out.contains(&format!("bad_signature at checkpoints line {n}")),
        "{out}"
    );
    assert!(out.contains("not by the given public key"), "{out}");
    assert!(forger.exists());
}

#[tokio::test]
async fn an_export_verifies_elsewhere_with_only_the_public_key_and_its_edits_are_found() {
    let t = trail(6).await;
    let file = t.store.dir.path().join("trail.export");
    let out = t.export(&file);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("exported 12 records"), "{}", text(&out));

    // Another machine: the export and the public key, nothing else.
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::copy(&file, elsewhere.path().join("trail.export")).unwrap();
    std::fs::copy(&t.public, elsewhere.path().join("key.pub")).unwrap();
    let verify = || {
        let out = run(
            &[
                "verify",
                "--export",
                "trail.export",
                "--public-key",
                "key.pub",
            ],
            elsewhere.path(),
        );
        (out.status.code().unwrap_or(-1), text(&out))
    };
    let (code, out) = verify();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("the export trail.export is intact"), "{out}");
    // Without the key the chains still hold, but that proves only that the file agrees with
    // itself: the verdict says so, never "intact" (found by a hostile pass, F9).
    let unkeyed = run(&["verify", "--export", "trail.export"], elsewhere.path());
    let said = text(&unkeyed);
    assert!(said.contains("NOT authenticated"), "{said}");
    assert!(!said.contains("is intact"), "{said}");

    let pristine = std::fs::read_to_string(elsewhere.path().join("trail.export")).unwrap();
    let lines: Vec<&str> = pristine.lines().collect();
    let record_lines: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].ends_with(r#""type":"record"}"#))
        .collect();
    assert_eq!(record_lines.len(), 12);
    let write = |lines: &[String]| {
        std::fs::write(
            elsewhere.path().join("trail.export"),
            lines.join("\n") + "\n",
        )
        .unwrap()
    };
    let owned = || lines.iter().map(|l| l.to_string()).collect::<Vec<_>>();

    // An edited record.
    let mut edited = owned();
    let i = record_lines[4];
    // (The skeleton: user_id is a pseudonym now, the personal fields a ciphertext.)
    edited[i] = edited[i].replacen("\"action\":\"tools/call\"", "\"action\":\"tools/list\"", 1);
    assert_ne!(edited[i], lines[i]);
    write(&edited);
    let (code, out) = verify();
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("edited at line {} (seq 4)", i + 1)),
        "{out}"
    );

    // The last record removed.
    let mut cut = owned();
    cut.remove(*record_lines.last().unwrap());
    write(&cut);
    let (code, out) = verify();
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("truncated"), "{out}");

    // Another key's public half is not the one the export was signed with.
    write(&owned());
    keygen(elsewhere.path(), "other.key");
    let out = run(
        &[
            "verify",
            "--export",
            "trail.export",
            "--public-key",
            "other.key.pub",
        ],
        elsewhere.path(),
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("bad_signature"), "{}", text(&out));
}

#[tokio::test]
async fn index_entries_that_are_missing_or_lead_elsewhere_are_found() {
    let t = trail(6).await;
    let records = t.records();
    let id = |r: &Rec| {
        let v: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
        v["event_id"]
            .as_str()
            .unwrap()
            .parse::<mcp_audit_proxy::audit::EventId>()
            .unwrap()
    };
    // Make sure the index is caught up, then change it with sled directly.
    let (code, out) = t.verify(&[]);
    assert_eq!(code, 0, "{out}");
    {
        // Index format 5: `events` holds chunks of entries (id, then where its record is and
        // its attributes), CHUNK_ENTRY_LEN bytes each, sorted by id.
        let db = sled::open(t.store.store_dir().join("index")).unwrap();
        let events = db.open_tree("events").unwrap();
        let (a, b, gone) = (id(&records[2]), id(&records[3]), id(&records[7]));
        let len = mcp_audit_proxy::store::index::CHUNK_ENTRY_LEN;
        let chunks: Vec<(sled::IVec, Vec<Vec<u8>>)> = events
            .iter()
            .map(|kv| {
                let (k, v) = kv.unwrap();
                (k, v.chunks(len).map(<[u8]>::to_vec).collect())
            })
            .collect();
        let value_of_b = chunks
            .iter()
            .flat_map(|(_, entries)| entries)
            .find(|e| e[..16] == b.to_key())
            .map(|e| e[16..].to_vec())
            .expect("b is indexed");
        let (mut pointed, mut removed) = (false, false);
        for (key, mut entries) in chunks {
            let before = entries.len();
            entries.retain(|e| e[..16] != gone.to_key());
            removed |= entries.len() < before;
            for e in entries.iter_mut().filter(|e| e[..16] == a.to_key()) {
                e.truncate(16);
                e.extend_from_slice(&value_of_b);
                pointed = true;
            }
            events.insert(key, entries.concat()).unwrap();
        }
        assert!(pointed && removed, "the test found both entries to change");
        db.flush().unwrap();
    }
    let (code, out) = t.verify(&[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("index: TAMPERED"), "{out}");
    assert!(
        out.contains(&format!("event {} (journal", id(&records[7])))
            && out.contains("is missing from the index"),
        "{out}"
    );
    assert!(
        out.contains(&format!("event {} (journal", id(&records[2])))
            && out.contains("does not lead to its record"),
        "{out}"
    );
    // The journal itself is intact, and said so.
    assert!(out.contains("intact; 12 chained records"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_writer_processes_each_chain_their_own_journal() {
    let store = TestStore::new("signing_key_file = \"signing.key\"\ncheckpoint_every_events = 5");
    keygen(store.dir.path(), "signing.key");
    let mut clients = Vec::new();
    for _ in 0..3 {
        let mut c = LineClient::spawn(store.proxied_example());
        c.initialize().await;
        clients.push(c);
    }
    for i in 0..7 {
        for c in clients.iter_mut() {
            c.send(&call_line(json!(i), "echo", json!({"text": "x"})))
                .await;
            c.recv_response(&json!(i)).await;
        }
    }
    for c in clients {
        assert!(c.finish().await.success());
    }
    let out = run(
        &["verify", "--config", store.config.to_str().unwrap()],
        store.dir.path(),
    );
    let report = text(&out);
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert_eq!(
        report
            .matches("intact; 14 chained records (seq 0..13")
            .count(),
        3,
        "{report}"
    );
    assert!(report.contains("(3 journals)"), "{report}");
}

#[test]
fn a_configured_key_that_cannot_be_read_stops_the_proxy_naming_the_file() {
    let store = TestStore::new("signing_key_file = \"missing.key\"");
    let out = std::process::Command::new(proxy_bin())
        .args(["events", "--config"])
        .arg(&store.config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out);
    assert!(err.contains("audit.signing_key_file"), "{err}");
    assert!(err.contains("missing.key"), "{err}");
}

/// Found by a fresh pair of eyes: deleting a whole journal passed `verify` ("intact"), and so
/// did cutting a journal back by whole segments with its later checkpoints. The index knew
/// those records; the first command to open the store rebuilt it from what was left. Now the
/// replaced index keeps why it was replaced, and `verify` reports the loss (exit 1), whichever
/// command opened the store first. A hostile pass then found two more ways around it: cutting
/// a stopped journal back *within* its newest segment (with the final checkpoint), and
/// running `reindex` first, which discarded the old index. A third (helper-90 H2): the same
/// cut on the journal of the *last* writer to stop passed, since only a later writer marked
/// a journal finished; a writer that stops whole now marks its own. (The newest segment of a
/// running journal shorter than indexed is still not reported: an outage's roll-back or a
/// power cut in `batched` mode leave that too.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_journal_or_one_cut_back_is_reported_once_indexed() {
    for (how, first) in [
        ("journal", "events"),
        ("segments", "events"),
        ("tail", "events"),
        ("last-tail", "events"),
        ("journal", "reindex"),
        ("tail", "reindex"),
    ] {
        let store = TestStore::new("segment_bytes = 4096");
        let mut ids = Vec::new();
        for n in 0..2 {
            let mut c = LineClient::spawn(store.proxied_example());
            c.initialize().await;
            for i in 0..12 {
                c.send(&call_line(
                    json!(i),
                    "echo",
                    json!({"text": format!("{n} {i}")}),
                ))
                .await;
                c.recv_response(&json!(i)).await;
            }
            assert!(c.finish().await.success());
            ids = journals::list(&store.store_dir().join("journal")).unwrap();
        }
        let config = store.config.to_str().unwrap().to_string();
        let dir = store.dir.path();
        // Indexed: every journal's records.
        let out = run(&["events", "--config", &config], dir);
        assert!(out.status.success(), "{}", text(&out));
        let out = run(&["verify", "--config", &config], dir);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        // The first writer's journal (the second one marks it finished when it takes the
        // index), or the last writer's own.
        let victim = match how {
            "last-tail" => ids[ids.len() - 1],
            _ => ids[0],
        };
        let victim = victim.dir(&store.store_dir().join("journal"));
        let segments = journal::list_segments(&victim).unwrap();
        let newest = segment_path(&victim, *segments.last().unwrap());
        match how {
            // Its newest segment removed, with the final checkpoint.
            "segments" => {
                assert!(segments.len() >= 2, "{segments:?}");
                std::fs::remove_file(&newest).unwrap();
                let _ = std::fs::remove_file(victim.join("checkpoints"));
            }
            // Its newest segment cut after its first record, with the checkpoints.
            "tail" | "last-tail" => {
                let bytes = std::fs::read(&newest).unwrap();
                let len = u32::from_le_bytes(bytes[16..20].try_into().unwrap()) as usize;
                let keep = 16 + 8 + len;
                assert!(keep < bytes.len(), "one record in the newest segment");
                std::fs::write(&newest, &bytes[..keep]).unwrap();
                let _ = std::fs::remove_file(victim.join("checkpoints"));
            }
            _ => std::fs::remove_dir_all(&victim).unwrap(),
        }
        // Another command opens the store first (and rebuilds the index)...
        let out = run(&[first, "--config", &config], dir);
        if first == "reindex" {
            // ...`reindex` saying that its index leaves the lost records out (helper-116 M2:
            // exit 0, the loss in a log line only).
            assert_eq!(out.status.code(), Some(1), "{how}: {}", text(&out));
            assert!(text(&out).contains("LOST: "), "{how}: {}", text(&out));
        } else {
            assert!(out.status.success(), "{how}, {first}: {}", text(&out));
        }
        // ...and verify still says what was lost, again and again.
        for _ in 0..2 {
            let out = run(&["verify", "--config", &config], dir);
            let report = text(&out);
            assert_eq!(out.status.code(), Some(1), "{how}, {first}: {report}");
            assert!(
                report.contains("no longer hold"),
                "{how}, {first}: {report}"
            );
        }
        // `reindex` after another command found the loss says it too (review).
        if first == "events" {
            let out = run(&["reindex", "--config", &config], dir);
            assert_eq!(out.status.code(), Some(1), "{how}: {}", text(&out));
            assert!(text(&out).contains("LOST: "), "{how}: {}", text(&out));
        }
        // The note cut to nothing (as a full disk once left it) still says something was.
        if first == "events" && how == "journal" {
            std::fs::write(store.store_dir().join("index.replaced/REBUILT"), b"").unwrap();
            let out = run(&["verify", "--config", &config], dir);
            let report = text(&out);
            assert_eq!(out.status.code(), Some(1), "{report}");
            assert!(report.contains("cannot be read"), "{report}");
        }
    }
}

/// Found by a fresh pair of eyes: every command, `events` and `verify` too, stopped when the
/// private signing key could not be read, so an auditor had to be given it. Commands that only
/// read the store check signatures with the public key beside it (`keygen`'s `PATH.pub`); the
/// proxy still refuses to start without the private key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_that_only_read_the_store_need_only_the_public_key() {
    let trail = trail(4).await;
    let dir = trail.store.dir.path();
    // The auditor's copy: the private key is not there, its public key is.
    std::fs::rename(dir.join("signing.key"), dir.join("elsewhere.key")).unwrap();
    let config = trail.store.config.to_str().unwrap().to_string();
    let (code, report) = trail.verify(&[]);
    assert_eq!(code, 0, "{report}");
    assert!(!report.contains("no checkpoints"), "{report}");
    let out = run(&["events", "--config", &config], dir);
    assert!(out.status.success(), "{}", text(&out));
    let out = run(
        &["compliance", "--regulation", "pci_dss", "--config", &config],
        dir,
    );
    let said = text(&out);
    assert!(!said.contains("signing_key_file is unset"), "{said}");
    // A forged checkpoint is still caught with the public key alone.
    let checkpoints = trail.journal_dir().join("checkpoints");
    let before = std::fs::read_to_string(&checkpoints).unwrap();
    let mut lines: Vec<String> = before.lines().map(str::to_string).collect();
    // The first that covers records (the opening one, `seq` null, covers none).
    let (n, mut forged) = lines
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .enumerate()
        .find(|(_, c)| c["seq"].is_u64())
        .unwrap();
    forged["seq"] = json!(forged["seq"].as_u64().unwrap() + 1);
    lines[n] = forged.to_string();
    std::fs::write(&checkpoints, lines.join("\n") + "\n").unwrap();
    let (code, report) = trail.verify(&[]);
    assert_eq!(code, 1, "{report}");
    assert!(report.contains("bad_signature"), "{report}");
    // The proxy, which signs, does not start.
    let out = run(&["stdio", "--config", &config, "--", "true"], dir);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[tokio::test]
async fn a_keyed_proxy_killed_before_its_first_covering_checkpoint_is_a_crash_not_a_forgery() {
    // Found by a hostile pass: a stdio wrapper SIGKILLed within its first 10 s (before its
    // first covering checkpoint, as clients that kill their servers do) left a journal that
    // `verify` reported `unsigned` for ever, exit 1, as if forged: 9 of 37 journals in a
    // many-writer run, drowning the real findings. A proxy with a key now signs its first
    // checkpoint as soon as its first records are durable: the killed one's later records
    // are a note, as any crash's last records are. (A review found that signing the head
    // before any record, the first attempt, let a journal keeping only that line be
    // rewritten whole: the first checkpoint must cover a record.)
    let store = TestStore::new("signing_key_file = \"signing.key\"\ndurability = \"sync\"");
    keygen(store.dir.path(), "signing.key");
    let mut c = LineClient::spawn(store.proxied_example());
    c.initialize().await;
    c.send(&call_line(json!(1), "echo", json!({"text": "x"})))
        .await;
    // `sync`: the call's end is durable before its answer reaches the client.
    c.recv_response(&json!(1)).await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(c.child.id().unwrap() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let _ = c.finish().await;
    let config = store.config.to_str().unwrap().to_string();
    let out = run(&["verify", "--config", &config], store.dir.path());
    let report = text(&out);
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert!(report.contains("is intact"), "{report}");
    assert!(report.contains("no final checkpoint"), "{report}");

    let root = store.store_dir().join("journal");
    let dir = journals::list(&root).unwrap()[0].dir(&root);
    let first = std::fs::read_to_string(dir.join("checkpoints")).unwrap();
    let first: serde_json::Value = serde_json::from_str(first.lines().next().unwrap()).unwrap();
    assert!(
        first["seq"].is_u64(),
        "the first checkpoint covers a record: {first}"
    );
    // Its checkpoints removed, the journal proves nothing again: a finding.
    std::fs::remove_file(dir.join("checkpoints")).unwrap();
    let out = run(&["verify", "--config", &config], store.dir.path());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("it has no checkpoints"),
        "{}",
        text(&out)
    );
}

#[tokio::test]
async fn with_a_key_a_journal_no_signed_checkpoint_covers_is_a_finding() {
    // Found by a hostile pass: a journal rewritten whole (chain recomputed) with its
    // checkpoints file removed, or written by a proxy run without the signing key, verified
    // as intact with the key given, and `events` showed the forgery. With a key, a stopped
    // journal that no checkpoint signed by it covers proves nothing: a finding, exit 1.
    let t = trail(3).await;
    let (code, out) = t.verify(&[]);
    assert_eq!(code, 0, "untouched: {out}");
    std::fs::remove_file(t.journal_dir().join("checkpoints")).unwrap();
    let (code, out) = t.verify(&[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("unsigned"), "{out}");
    assert!(out.contains("it has no checkpoints"), "{out}");

    // A store written without any key: its checkpoints are unsigned. Without a key that is a
    // note (they show accidental cuts); checked against a public key, a finding.
    let plain = TestStore::new("");
    let mut c = LineClient::spawn(plain.proxied_example());
    c.initialize().await;
    c.send(&call_line(json!(1), "echo", json!({"text": "x"})))
        .await;
    c.recv_response(&json!(1)).await;
    assert!(c.finish().await.success());
    let config = plain.config.to_str().unwrap().to_string();
    let out = run(&["verify", "--config", &config], plain.dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let public = t.public.to_str().unwrap().to_string();
    let out = run(
        &["verify", "--config", &config, "--public-key", &public],
        plain.dir.path(),
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("checkpoint(s) are unsigned"),
        "{}",
        text(&out)
    );
}

/// helper-116 H3: records cut from a journal's start (the header kept) left an export that
/// `verify --export` called consistent: the file starts where the journal now starts, with
/// that record's link as its anchor. `export` refuses it now; a range that begins after the
/// cut still exports, and so does an untouched journal.
#[tokio::test]
async fn an_export_refuses_a_journal_cut_at_its_start() {
    let t = trail(6).await;
    let file = t.store.dir.path().join("whole.export");
    assert!(t.export(&file).status.success());
    let records = t.records();
    // The first three records, all in the first segment, cut out.
    let (first, third) = (&records[0], &records[2]);
    assert_eq!(first.segment, third.segment, "{records:?}");
    t.splice(first.segment, first.start, third.end, b"");
    let (code, out) = t.verify(&[]);
    assert_eq!(code, 1, "{out}");
    let cut = t.store.dir.path().join("cut.export");
    let out = t.export(&cut);
    let said = text(&out);
    assert_ne!(out.status.code(), Some(0), "{said}");
    assert!(
        said.contains("begins at record 3: records 0 to 2 are gone"),
        "{said}"
    );
    assert!(!cut.exists(), "no export file written");
    // From a later record's time on, the records before the range are the journal's own:
    // the range begins after the cut, and exports.
    let later = String::from_utf8_lossy(&records[4].payload).into_owned();
    let at = later.find("\"timestamp\":\"").expect("a timestamp") + 13;
    let since = &later[at..at + later[at..].find('"').unwrap()];
    let out = run(
        &[
            "export",
            "--config",
            t.store.config.to_str().unwrap(),
            "--since",
            since,
            "--out",
            cut.to_str().unwrap(),
        ],
        t.store.dir.path(),
    );
    assert!(out.status.success(), "{since}: {}", text(&out));
}

/// Runs the binary as an account that can read the store but not write it: `nobody` when
/// the tests run as root (which writes anything), else this account with the store made
/// read-only. Returns its output; the store is writable again after.
fn as_reader(args: &[&str], dir: &Path, store: &Path) -> Output {
    let uid = std::process::Command::new("id").arg("-u").output().unwrap();
    let root = String::from_utf8_lossy(&uid.stdout).trim() == "0";
    let chmod = |mode: &str, path: &Path| {
        let ok = std::process::Command::new("chmod")
            .args(["-R", mode])
            .arg(path)
            .status()
            .unwrap();
        assert!(ok.success(), "chmod {mode}");
    };
    if root {
        chmod("a+rX", dir);
        let out = std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(proxy_bin())
            .args(args)
            .current_dir(dir)
            .env("RUST_LOG", "warn")
            .output()
            .expect("setpriv (util-linux) runs the binary as nobody");
        return out;
    }
    chmod("a-w", store);
    let out = run(args, dir);
    chmod("u+w", store);
    out
}

/// helper-116 H2: an auditor's account that can read the store but not write it could not
/// open the index (it opens only for writing), and `verify` said "another process holds
/// the index" and "intact", exit 0, for a store with a journal deleted after it was indexed;
/// `compliance` called the chain rules compliant. Both say why the index was not checked
/// now, and call nothing intact or compliant on the journals alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_cannot_write_the_store_is_told_the_index_was_not_checked() {
    let store = TestStore::new("signing_key_file = \"signing.key\"");
    keygen(store.dir.path(), "signing.key");
    for n in 0..2 {
        let mut c = LineClient::spawn(store.proxied_example());
        c.initialize().await;
        c.send(&call_line(json!(n), "echo", json!({"text": "x"})))
            .await;
        c.recv_response(&json!(n)).await;
        assert!(c.finish().await.success());
    }
    let config = store.config.to_str().unwrap().to_string();
    let dir = store.dir.path();
    assert!(run(&["events", "--config", &config], dir).status.success());
    let journals_dir = store.store_dir().join("journal");
    let ids = journals::list(&journals_dir).unwrap();
    assert_eq!(ids.len(), 2);
    std::fs::remove_dir_all(ids[0].dir(&journals_dir)).unwrap();

    let out = as_reader(&["verify", "--config", &config], dir, &store.store_dir());
    let said = text(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(said.contains("cannot write the store"), "{said}");
    assert!(!said.contains("is intact"), "{said}");
    let out = as_reader(
        &[
            "compliance",
            "--regulation",
            "all",
            "--json",
            "--config",
            &config,
        ],
        dir,
        &store.store_dir(),
    );
    let said = text(&out);
    let rules: Vec<serde_json::Value> = said
        .lines()
        .filter(|l| l.starts_with('{'))
        .flat_map(|l| {
            let a: serde_json::Value = serde_json::from_str(l).unwrap();
            a["rules"].as_array().unwrap().clone()
        })
        .collect();
    // The chain rules, and the signed checkpoints' (review: it passed on them alone).
    for id in [
        "gdpr.art5_1_f.integrity",
        "hipaa.164.312_c_1.integrity",
        "hipaa.164.312_c_2.authentication",
        "pci_dss.10.3.4.change_detection",
    ] {
        let rule = rules
            .iter()
            .find(|r| r["id"] == id)
            .unwrap_or_else(|| panic!("{id}: {said}"));
        assert_eq!(rule["status"], "not_assessable", "{rule:#}");
        assert!(
            rule["explanation"]
                .as_str()
                .unwrap()
                .contains("cannot write the store"),
            "{rule:#}"
        );
    }
    // The analyses read what is left, and say that a deletion could not be looked for.
    let out = as_reader(
        &["analyze", "tools", "--since", "1d", "--config", &config],
        dir,
        &store.store_dir(),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("could not be compared with the journals"),
        "{}",
        text(&out)
    );
    // The owner finds the deletion.
    let out = run(&["verify", "--config", &config], dir);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("no longer hold"), "{}", text(&out));
}
