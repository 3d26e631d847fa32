//! `export --since --until --out FILE`: a time range of the trail in one file that anybody can
//! verify elsewhere with only the public key (`verify --export FILE --public-key KEY.pub`).
//!
//! # Contract (`mcp-audit-proxy/export/1`)
//!
//! One JSON object per line (each line canonical JSON, RFC 8785):
//!
//! ```text
//! {"created":T,"key_id":HEX|null,"manifest":{…},"public_key":PEM|null,
//!  "since":T|null,"type":"mcp-audit-proxy/export/1","until":T|null}
//! {"first_seq":N,"journal":ULID,"previous_hash":HEX|null,"type":"journal"}   per journal, then
//! {"checkpoint":STATEMENT,"type":"checkpoint"}   its checkpoints within the range, then
//! {"purge":STATEMENT,"type":"purge"}   its purge statements whose cuts touch the range, then
//! {"journal":ULID,"record":RECORD,"type":"record"}   its records, in seq order
//! {"alg":…,"body_sha256":HEX,"journals":[{"first_seq","head_hash","journal","last_seq"}],
//!  "key_id":…,"signature":…,"type":"end"}
//! ```
//!
//! `RECORD` and `STATEMENT` are the stored bytes, verbatim (so their hashes and signatures
//! hold). A purge `STATEMENT` is a line of the journal's `purges` file, verbatim
//! ([`super::retention`]): `verify --export` bridges the gaps retention made inside the range
//! exactly as `verify` does in a store (a statement not signed by the given key bridges
//! nothing, and its gap is reported as deleted). A journal's records are the contiguous run
//! of `seq` from the first record at or after `since` to the last one before `until`;
//! `previous_hash` on its line is the first exported record's own link to what came before
//! (the anchor a reader can compare with the source). The `end` line closes the file: `body_sha256` is the SHA-256 of every byte before
//! it, and its signature (Ed25519, over the line's canonical JSON without `signature`, made with
//! `audit.signing_key_file`) covers the digest and each journal's last `seq` and hash, so that
//! a cut, an added or a removed line is seen even after the last checkpoint. `manifest` is the
//! attestation manifest of SEP-3004 §2.7 (`storage_mechanism`, `chain_algorithm`,
//! `canonical_form_version`, `verification_procedure_ref`).
//!
//! The same file is the verifiable archive of a time range (issue 9 item 7): records keep their
//! personal fields encrypted as stored ([`super::personal`]), so the archive holds no personal
//! data in clear, and records whose user was erased still verify, since the hashes cover the
//! stored (encrypted) bytes. A data-portability export of one user, decrypted, is
//! `export --user` (`crate::commands::privacy`).

use std::io::Write;
use std::path::Path;
use std::time::SystemTime;

use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use super::StoreError;
use super::chain::{Link, digest, hex, parse_hex};
use super::checkpoint::{self, Signer, TrustedKey};
use super::journal::{self, HEADER_LEN, JournalPos, RECORD_HEADER_LEN};
use super::journals::{self, JournalId};
use super::verify::{ChainReport, Finding, Kind, Place, Walker};

/// The `type` of an export's first line.
pub const TYPE: &str = "mcp-audit-proxy/export/1";

#[derive(Serialize, Deserialize)]
struct Header {
    created: String,
    key_id: Option<String>,
    manifest: Manifest,
    public_key: Option<String>,
    since: Option<String>,
    #[serde(rename = "type")]
    kind: String,
    until: Option<String>,
}

/// SEP-3004's attestation manifest (§2.7).
#[derive(Serialize, Deserialize)]
struct Manifest {
    canonical_form_version: String,
    chain_algorithm: String,
    storage_mechanism: String,
    verification_procedure_ref: String,
}

#[derive(Serialize, Deserialize)]
struct JournalLine {
    first_seq: u64,
    journal: String,
    previous_hash: Option<String>,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Span {
    first_seq: u64,
    head_hash: String,
    journal: String,
    last_seq: u64,
}

#[derive(Clone, Serialize, Deserialize)]
struct End {
    alg: String,
    body_sha256: String,
    journals: Vec<Span>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    signature: Option<String>,
    #[serde(rename = "type")]
    kind: String,
}

impl End {
    fn signed_bytes(&self) -> Vec<u8> {
        let unsigned = End {
            signature: None,
            ..self.clone()
        };
        super::canonical::to_canonical(&unsigned)
    }
}

#[derive(Deserialize)]
struct AnyLine<'a> {
    #[serde(rename = "type")]
    kind: String,
    #[serde(borrow, default)]
    record: Option<&'a RawValue>,
    #[serde(borrow, default)]
    checkpoint: Option<&'a RawValue>,
    #[serde(borrow, default)]
    purge: Option<&'a RawValue>,
}

/// What an export wrote.
#[derive(Debug, Default)]
pub struct ExportSummary {
    /// Journals with records in the range.
    pub journals: usize,
    /// Records written.
    pub records: u64,
    /// Checkpoints written.
    pub checkpoints: usize,
    /// Purge statements written (retention's cuts inside the range).
    pub purges: usize,
    /// Whether the end line is signed.
    pub signed: bool,
    /// Journals left out, and why (legacy ones have no chain to verify).
    pub skipped: Vec<String>,
    /// Closed segments not read, their time span being outside the range
    /// ([`super::spans`]).
    pub segments_skipped: usize,
}

/// Bytes of an export held before they are written out.
const SPILL_AT: usize = 8 << 20;

/// Writes `body` to `out` and into `hasher`, and empties it.
fn spill(body: &mut Vec<u8>, hasher: &mut Sha256, out: &mut impl Write) -> Result<(), StoreError> {
    hasher.update(&body[..]);
    out.write_all(body)
        .map_err(|e| StoreError::io("write the export to", Path::new("the output"), e))?;
    body.clear();
    Ok(())
}

fn line<T: Serialize>(value: &T) -> Vec<u8> {
    let mut l = super::canonical::to_canonical(value);
    l.push(b'\n');
    l
}

fn time_text(t: Option<SystemTime>) -> Option<String> {
    t.map(|t| humantime::format_rfc3339_micros(t).to_string())
}

/// Writes the records of every chained journal of the store at `root` whose time lies in
/// `[since, until)` to `out`, with their checkpoints, signed with `signer` when given.
pub fn export(
    root: &Path,
    since: Option<SystemTime>,
    until: Option<SystemTime>,
    signer: Option<&Signer>,
    out: &mut impl Write,
) -> Result<ExportSummary, StoreError> {
    export_with(root, since, until, signer, out, &ProgressBar::hidden())
}

/// [`export`], advancing `progress` by the bytes of each segment read. Each journal is read
/// once to find the run in the range (skipping the closed segments whose time span misses
/// it, [`super::spans`]), then the run again for its records: memory holds the export, not
/// the rest of the journal (a day in the middle of a month kept every record after it
/// before, gigabytes on a 10 M-event store).
pub fn export_with(
    root: &Path,
    since: Option<SystemTime>,
    until: Option<SystemTime>,
    signer: Option<&Signer>,
    out: &mut impl Write,
    progress: &ProgressBar,
) -> Result<ExportSummary, StoreError> {
    let journal_root = super::StorePaths::new(root).journal();
    let mut summary = ExportSummary::default();
    // Written out as it grows (past SPILL_AT), hashed on the way for the end line.
    let mut body: Vec<u8> = Vec::new();
    let mut hasher = Sha256::new();
    let public = signer.map(Signer::public);
    body.extend(line(&Header {
        created: humantime::format_rfc3339_micros(SystemTime::now()).to_string(),
        key_id: public.as_ref().map(|k| k.key_id().to_string()),
        manifest: Manifest {
            canonical_form_version: "RFC 8785 (JCS); records as stored in journal formats 2 and 3 (personal fields encrypted as stored)".into(),
            chain_algorithm: "sha-256".into(),
            storage_mechanism: "append-only journal segments, one writer process per journal (fdatasync per batch), Ed25519-signed checkpoints".into(),
            verification_procedure_ref: "mcp-audit-proxy verify --export FILE --public-key KEY.pub".into(),
        },
        public_key: public.as_ref().map(TrustedKey::to_pem),
        since: time_text(since),
        kind: TYPE.into(),
        until: time_text(until),
    }));
    let in_range = |t: Option<&str>| {
        let Some(t) = t.and_then(|t| humantime::parse_rfc3339(t).ok()) else {
            return false;
        };
        since.is_none_or(|s| t >= s) && until.is_none_or(|u| t < u)
    };
    let bounds = super::spans::TextBounds::new(since, until);
    let mut spans = Vec::new();
    for id in journals::list(&journal_root)? {
        let dir = id.dir(&journal_root);
        let segments = journal::list_segments(&dir)?;
        let times = super::spans::read(&dir);
        // First pass: where the run starts and ends (nothing copied, so memory does not grow
        // with what follows the range); the second reads only the run.
        let mut first: Option<(usize, u64, u64)> = None; // segment index, start offset, seq
        let mut last: Option<(JournalPos, u64)> = None; // end position, seq
        let mut anchor: Option<String> = None;
        let mut legacy = false;
        // Whether the journal holds a record before the run (out of the range): if not, the
        // run's first record is the journal's first, and records before it are gone.
        let mut earlier = false;
        for (i, &n) in segments.iter().enumerate() {
            progress.inc(std::fs::metadata(journal::segment_path(&dir, n)).map_or(0, |m| m.len()));
            if !journal::is_chained(journal::format_of(&dir, n)?) {
                legacy = true;
                earlier |= first.is_none();
                continue;
            }
            // A closed segment whose records all lie outside the range holds no end of the
            // run ([`super::spans`]; `verify` checks the spans).
            if times.get(&n).is_some_and(|s| s.misses(since, until)) {
                summary.segments_skipped += 1;
                earlier |= first.is_none();
                continue;
            }
            journal::read_segment(
                &dir,
                n,
                HEADER_LEN,
                i + 1 == segments.len(),
                |end, payload| {
                    // Most records of a read segment are outside the range: their time is
                    // found from the record's end and compared as text, without parsing.
                    let fast = bounds
                        .as_ref()
                        .and_then(|b| super::spans::record_time(payload).map(|t| b.contains(t)));
                    if fast == Some(false) {
                        earlier |= first.is_none();
                        return Ok::<(), StoreError>(());
                    }
                    let link = Link::of(payload);
                    let Some(seq) = link.as_ref().and_then(|l| l.seq) else {
                        return Ok(());
                    };
                    if fast != Some(true) && !in_range(link.as_ref().and_then(|l| l.timestamp)) {
                        earlier |= first.is_none();
                    } else {
                        if first.is_none() {
                            let at = end.offset - RECORD_HEADER_LEN - payload.len() as u64;
                            first = Some((i, at, seq));
                            anchor = link
                                .as_ref()
                                .and_then(|l| l.previous_hash)
                                .flatten()
                                .map(str::to_string);
                        }
                        last = Some((end, seq));
                    }
                    Ok(())
                },
                |_| {},
            )?;
        }
        if legacy {
            summary.skipped.push(format!(
                "journal {id}: legacy (format 1) segments, unchained"
            ));
        }
        let (Some((first_segment, first_at, first_seq)), Some((last_end, last_seq))) =
            (first, last)
        else {
            continue;
        };
        // The journal's first record is the run's, and it is not record 0: the records before
        // it would be in the range (they are older, and nothing older was read), and the file
        // could not show their absence (helper-116 H3: an export of a journal cut at its
        // start verified). Only retention may have removed them, and its purge statements say so.
        if !earlier
            && first_seq > 0
            && !super::retention::start_purged(&dir, first_seq, anchor.as_deref())?
        {
            return Err(StoreError::MissingStart {
                journal: id.to_string(),
                first_seq,
            });
        }
        body.extend(line(&JournalLine {
            first_seq,
            journal: id.to_string(),
            previous_hash: anchor,
            kind: "journal".into(),
        }));
        for l in checkpoint::read(&dir)? {
            if let Ok(s) = &l.statement
                && s.seq.is_some_and(|q| (first_seq..=last_seq).contains(&q))
            {
                body.extend_from_slice(b"{\"checkpoint\":");
                body.extend(s.to_line());
                body.extend_from_slice(b",\"type\":\"checkpoint\"}\n");
                summary.checkpoints += 1;
            }
        }
        for statement in super::retention::purge_lines(&dir, first_seq..=last_seq)? {
            body.extend_from_slice(b"{\"purge\":");
            body.extend(statement);
            body.extend_from_slice(b",\"type\":\"purge\"}\n");
            summary.purges += 1;
        }
        // Second pass: the run, from its first record to its last, as stored.
        let prefix = format!("{{\"journal\":\"{id}\",\"record\":");
        let mut records = 0u64;
        let mut head_hash = None;
        // The record before, as (seq, its digest): a record right after it must link to it.
        let mut before: Option<(u64, String)> = None;
        for (i, &n) in segments.iter().enumerate().skip(first_segment) {
            if n > last_end.segment {
                break;
            }
            if !journal::is_chained(journal::format_of(&dir, n)?) {
                continue;
            }
            let from = if i == first_segment {
                first_at
            } else {
                HEADER_LEN
            };
            journal::read_segment(
                &dir,
                n,
                from,
                i + 1 == segments.len(),
                |end, payload| {
                    let link = Link::of(payload);
                    let Some(seq) = link.as_ref().and_then(|l| l.seq) else {
                        return Ok::<(), StoreError>(());
                    };
                    if end > last_end {
                        return Ok(());
                    }
                    // An edited record breaks the link of the one after it: a signed export
                    // of it would vouch for what the store no longer does. (Gaps are left to
                    // `verify --export`: retention's purge statements explain some.)
                    let own = hex(&digest(payload));
                    if let Some((prev_seq, prev_hash)) = &before
                        && seq == prev_seq + 1
                        && link.as_ref().and_then(|l| l.previous_hash).flatten()
                            != Some(prev_hash.as_str())
                    {
                        return Err(StoreError::ChainBroken {
                            journal: id.to_string(),
                            seq,
                            path: journal::segment_path(&dir, n),
                            offset: end.offset - RECORD_HEADER_LEN - payload.len() as u64,
                        });
                    }
                    before = Some((seq, own.clone()));
                    body.extend_from_slice(prefix.as_bytes());
                    body.extend_from_slice(payload);
                    body.extend_from_slice(b",\"type\":\"record\"}\n");
                    records += 1;
                    if body.len() >= SPILL_AT {
                        spill(&mut body, &mut hasher, &mut *out)?;
                    }
                    if end == last_end {
                        head_hash = Some(own);
                    }
                    Ok(())
                },
                |_| {},
            )?;
        }
        let Some(head_hash) = head_hash else {
            // The run's last record is gone since the first pass (retention removed its
            // segment): said, not exported half.
            return Err(StoreError::BadRecord {
                path: journal::segment_path(&dir, last_end.segment),
                offset: last_end.offset,
                reason: "the range's last record disappeared while exporting (retention ran?); export again".into(),
            });
        };
        summary.journals += 1;
        summary.records += records;
        spans.push(Span {
            first_seq,
            head_hash,
            journal: id.to_string(),
            last_seq,
        });
    }
    spill(&mut body, &mut hasher, out)?;
    let mut end = End {
        alg: "none".into(),
        body_sha256: hex(&hasher.finalize()),
        journals: spans,
        key_id: None,
        signature: None,
        kind: "end".into(),
    };
    if let Some(signer) = signer {
        end.alg = "ed25519".into();
        end.key_id = Some(signer.key_id().to_string());
        end.signature = Some(signer.sign_bytes(&end.signed_bytes()));
        summary.signed = true;
    }
    body.extend(line(&end));
    out.write_all(&body)
        .map_err(|e| StoreError::io("write the export to", Path::new("the output"), e))?;
    Ok(summary)
}

/// What `verify --export` found.
#[derive(Debug, Default, serde::Serialize)]
pub struct ExportReport {
    /// Per journal in the export: its id and chain walk.
    pub journals: Vec<(String, ChainReport)>,
    /// Findings about the file as a whole (its end line, lines out of place).
    pub findings: Vec<Finding>,
    /// Facts that are not tampering.
    pub notes: Vec<String>,
}

impl ExportReport {
    /// Whether nothing was found.
    pub fn intact(&self) -> bool {
        self.findings.is_empty() && self.journals.iter().all(|(_, c)| c.findings.is_empty())
    }
}

/// Verifies an export file with `key` (its signatures are only checked with a key given).
pub fn verify_export(bytes: &[u8], key: Option<&TrustedKey>) -> ExportReport {
    let mut report = ExportReport::default();
    let mut current: Option<(JournalId, String, Walker)> = None;
    let mut spans: Vec<Span3> = Vec::new();
    let finish = |current: &mut Option<(JournalId, String, Walker)>,
                  report: &mut ExportReport,
                  spans: &mut Vec<Span3>,
                  line: usize| {
        if let Some((_, name, walker)) = current.take() {
            let head = walker.head().map(|h| (h.seq, hex(&h.hash)));
            let first = walker.first_seq();
            let (chain, _) = walker.finish(Place::Line { line });
            spans.push((name.clone(), head, first));
            report.journals.push((name, chain));
        }
    };
    let mut offset = 0usize;
    let mut ended = false;
    let mut header_seen = false;
    for (i, raw) in bytes.split_inclusive(|&b| b == b'\n').enumerate() {
        let number = i + 1;
        let body_end = offset;
        offset += raw.len();
        let text = raw.strip_suffix(b"\n").unwrap_or(raw);
        if ended {
            find(
                &mut report,
                Kind::Inserted,
                number,
                "a line after the end line".into(),
            );
            break;
        }
        let Ok(any) = serde_json::from_slice::<AnyLine>(text) else {
            find(
                &mut report,
                Kind::Edited,
                number,
                "not an export line (JSON with a type)".into(),
            );
            continue;
        };
        match any.kind.as_str() {
            TYPE if number == 1 => {
                header_seen = true;
                if let Ok(h) = serde_json::from_slice::<Header>(text)
                    && let (Some(k), Some(id)) = (key, &h.key_id)
                    && id != k.key_id()
                {
                    report.notes.push(format!(
                        "the export names signing key {id}, not the given public key"
                    ));
                }
            }
            "journal" => {
                finish(&mut current, &mut report, &mut spans, number);
                let Ok(j) = serde_json::from_slice::<JournalLine>(text) else {
                    find(
                        &mut report,
                        Kind::Edited,
                        number,
                        "a journal line that does not parse".into(),
                    );
                    continue;
                };
                let id = ulid::Ulid::from_string(&j.journal)
                    .map(|u| JournalId(u.0))
                    .unwrap_or(JournalId::LEGACY);
                let anchor = j.previous_hash.as_deref().and_then(parse_hex);
                if j.previous_hash.is_some() && anchor.is_none() {
                    find(
                        &mut report,
                        Kind::Edited,
                        number,
                        "a journal line with a malformed previous_hash".into(),
                    );
                }
                current = Some((id, j.journal, Walker::new(j.first_seq, anchor, false)));
            }
            "checkpoint" => {
                let (Some((id, _, walker)), Some(raw)) = (current.as_mut(), any.checkpoint) else {
                    find(
                        &mut report,
                        Kind::Inserted,
                        number,
                        "a checkpoint outside a journal".into(),
                    );
                    continue;
                };
                let mut lines = checkpoint::parse_lines(format!("{}\n", raw.get()).as_bytes());
                for l in &mut lines {
                    l.number = number;
                }
                walker.checkpoints(&lines, *id, key, |line| Place::Line { line }, "export");
            }
            "purge" => {
                let (Some((id, _, walker)), Some(raw)) = (current.as_mut(), any.purge) else {
                    find(
                        &mut report,
                        Kind::Inserted,
                        number,
                        "a purge statement outside a journal".into(),
                    );
                    continue;
                };
                let purges = super::retention::parse_purges(
                    format!("{}\n", raw.get()).as_bytes(),
                    *id,
                    key,
                    "export",
                    number - 1,
                );
                walker.purges_at(purges, |line| Place::Line { line });
            }
            "record" => {
                let (Some((_, _, walker)), Some(raw)) = (current.as_mut(), any.record) else {
                    find(
                        &mut report,
                        Kind::Inserted,
                        number,
                        "a record outside a journal".into(),
                    );
                    continue;
                };
                walker.record(Place::Line { line: number }, raw.get().as_bytes());
            }
            "end" => {
                finish(&mut current, &mut report, &mut spans, number);
                ended = true;
                check_end(&mut report, text, &bytes[..body_end], &spans, key, number);
            }
            other => {
                find(
                    &mut report,
                    Kind::Edited,
                    number,
                    format!("unknown line type {other:?}"),
                );
            }
        }
    }
    if !header_seen {
        find(
            &mut report,
            Kind::Edited,
            1,
            format!("the first line is not an {TYPE} header"),
        );
    }
    if !ended {
        let lines = bytes.split_inclusive(|&b| b == b'\n').count();
        finish(&mut current, &mut report, &mut spans, lines);
        find(
            &mut report,
            Kind::Truncated,
            lines,
            "the export has no end line: it was cut off".into(),
        );
    }
    report
}

/// A journal seen in an export: its id, its head, its first seq.
type Span3 = (String, Option<(u64, String)>, u64);

fn find(report: &mut ExportReport, kind: Kind, line: usize, detail: String) {
    finding(report, line, kind, detail)
}

fn finding(report: &mut ExportReport, line: usize, kind: Kind, detail: String) {
    report.findings.push(Finding {
        kind,
        place: Place::Line { line },
        seq: None,
        detail,
    });
}

fn check_end(
    report: &mut ExportReport,
    text: &[u8],
    body: &[u8],
    spans: &[Span3],
    key: Option<&TrustedKey>,
    number: usize,
) {
    let Ok(end) = serde_json::from_slice::<End>(text) else {
        return finding(
            report,
            number,
            Kind::Edited,
            "the end line does not parse".into(),
        );
    };
    match (&end.signature, key) {
        (None, _) => report
            .notes
            .push("the export is unsigned (no audit.signing_key_file when it was made)".into()),
        (Some(_), None) => report
            .notes
            .push("the export's signature was not checked: give --public-key".into()),
        (Some(sig), Some(k)) => {
            if end.key_id.as_deref() != Some(k.key_id()) {
                return finding(
                    report,
                    number,
                    Kind::BadSignature,
                    "the end line is signed by another key than the given public key".into(),
                );
            }
            if !k.verifies(&end.signed_bytes(), sig) {
                return finding(
                    report,
                    number,
                    Kind::BadSignature,
                    "the end line's signature does not verify (forged or changed)".into(),
                );
            }
        }
    }
    if end.body_sha256 != hex(&digest(body)) {
        finding(report, number, Kind::Edited,
            "the lines before the end line are not the ones it was signed over (body_sha256 differs)".into(),
        );
    }
    for span in &end.journals {
        match spans.iter().find(|(name, _, _)| *name == span.journal) {
            None => finding(
                report,
                number,
                Kind::Deleted,
                format!(
                    "journal {} (seq {}..{}) is missing",
                    span.journal, span.first_seq, span.last_seq
                ),
            ),
            Some((_, head, first)) => {
                if *first != span.first_seq {
                    finding(
                        report,
                        number,
                        Kind::Edited,
                        format!(
                            "journal {} starts at seq {first}, the end line says {}",
                            span.journal, span.first_seq
                        ),
                    );
                }
                match head {
                    Some((seq, _)) if *seq < span.last_seq => finding(
                        report,
                        number,
                        Kind::Truncated,
                        format!(
                            "journal {} ends at seq {seq}, the end line says {}",
                            span.journal, span.last_seq
                        ),
                    ),
                    Some((seq, hash)) if *seq == span.last_seq && *hash != span.head_hash => {
                        finding(
                            report,
                            number,
                            Kind::Edited,
                            format!(
                                "journal {} record seq {seq} differs from what the end line recorded",
                                span.journal
                            ),
                        )
                    }
                    Some((seq, _)) if *seq > span.last_seq => finding(
                        report,
                        number,
                        Kind::Inserted,
                        format!(
                            "journal {} goes on past seq {} that the end line recorded",
                            span.journal, span.last_seq
                        ),
                    ),
                    _ => {}
                }
            }
        }
    }
    for (name, _, _) in spans {
        if !end.journals.iter().any(|s| &s.journal == name) {
            finding(
                report,
                number,
                Kind::Inserted,
                format!("journal {name} is not in the end line"),
            );
        }
    }
}
