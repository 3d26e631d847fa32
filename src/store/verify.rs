//! `verify`: walks every journal of a store (or an export, [`super::export`]) and says whether
//! its records are the ones written, in the order written, all of them.
//!
//! Per journal, in record order: each record's `seq` must be the next one and its
//! `previous_hash` the SHA-256 of the record before ([`super::chain`]); each checkpoint must
//! carry a valid signature ([`super::checkpoint`]) and the hash of the record at its `seq`;
//! the journal must reach the last checkpoint's `seq`, and no record may follow a `final` one.
//! The first place where this fails is reported with what it looks like:
//!
//! | kind          | what was found                                                           |
//! |---------------|--------------------------------------------------------------------------|
//! | `edited`      | a record's bytes changed: its checksum fails, or it no longer hashes to   |
//! |               | what the next record (or a checkpoint) recorded                          |
//! | `deleted`     | `seq` jumps and the missing records appear nowhere later                  |
//! | `reordered`   | `seq` jumps and the missing record appears later                          |
//! | `inserted`    | a `seq` seen already, a record without chain members in a chained         |
//! |               | segment, or records after the writer's final checkpoint                   |
//! | `truncated`   | the journal ends before a checkpoint's `seq`, or a segment is cut short   |
//! | `bad_signature` | a checkpoint whose signature does not verify with the given key         |
//! | `unsigned`    | a key was given, and no checkpoint signed by it covers any record of a     |
//! |               | stopped journal (removed, or written without a key; a writer with a key  |
//! |               | signs one as soon as its first records are durable)                      |
//!
//! Not tampering, and said as such (notes): a torn tail that recovery cut off after a crash
//! and saved aside (`NNN.journal.torn-OFFSET`: the cut bytes are kept, and a checkpoint can
//! never cover them, because checkpoints are written only after the records they cover are
//! durable); bytes after the last whole record of a journal whose writer is running or has not
//! been recovered yet; a torn last checkpoint line; legacy journals (format 1, written before
//! chains: reported as unchained, with their record count); checkpoints written without a key
//! (unsigned) or signed while no public key was given to check them; records removed by
//! retention where a purge statement ([`super::retention`], the `purges` file) records the cut
//! and its boundary hashes (a statement not signed by the given key covers nothing).
//!
//! Limits, by construction: records after a journal's last checkpoint can be cut off without
//! trace when the writer did not stop cleanly (a crash leaves no final checkpoint), and
//! someone holding the private key can forge anything. Without a key, checkpoints only show
//! accidental cuts.
//!
//! Store-wide, a record sealed under a pseudonym whose key is gone from `keys/` while no
//! `audit/erase` event names that pseudonym is a finding ([`super::erasures`]).
//!
//! The index is checked through its public lookups only: every event of a whole journal record
//! must be found by id and lead back to that record, and the index must hold no event that no
//! journal holds.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use super::chain::{Hash, Head, Link, digest, hex, parse_hex};
use super::checkpoint::{self, Signed, Statement, TrustedKey};
use super::erasures::Subjects;
use indicatif::ProgressBar;

use super::journal::{self, FORMAT, FORMAT_LEGACY, HEADER_LEN, JournalPos};
use super::journals::{self, JournalId};
use super::{StoreError, StorePaths};
use crate::audit::event::EventId;

/// What kind of tampering a finding looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Bytes of a record changed.
    Edited,
    /// Records are missing.
    Deleted,
    /// Records appear out of order.
    Reordered,
    /// A record that was not written by the chain's writer at this place.
    Inserted,
    /// The end was cut off.
    Truncated,
    /// A checkpoint's signature does not verify.
    BadSignature,
    /// A key was given, and no checkpoint signed by it covers a stopped journal's records.
    Unsigned,
}

impl Kind {
    /// The spelling in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Edited => "edited",
            Kind::Deleted => "deleted",
            Kind::Reordered => "reordered",
            Kind::Inserted => "inserted",
            Kind::Truncated => "truncated",
            Kind::BadSignature => "bad_signature",
            Kind::Unsigned => "unsigned",
        }
    }
}

/// Where in a journal (or an export) a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Place {
    /// A record's header in a segment.
    Record {
        /// Segment number.
        segment: u64,
        /// Byte offset of the record (or of the unreadable bytes).
        offset: u64,
    },
    /// A line of an export file (1-based).
    Line {
        /// The line number.
        line: usize,
    },
    /// A line of a journal's checkpoint file (1-based).
    Checkpoint {
        /// The line number.
        line: usize,
    },
    /// A line of a journal's purge file (1-based; retention, see [`super::retention`]).
    Purge {
        /// The line number.
        line: usize,
    },
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Place::Record { segment, offset } => write!(f, "segment {segment} offset {offset}"),
            Place::Line { line } => write!(f, "line {line}"),
            Place::Checkpoint { line } => write!(f, "{} line {line}", checkpoint::FILE),
            Place::Purge { line } => write!(f, "{} line {line}", super::retention::PURGES),
        }
    }
}

/// One place where the trail is not as written.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Finding {
    /// What it looks like.
    pub kind: Kind,
    /// Where.
    pub place: Place,
    /// The sequence number expected (or found) there, when known.
    pub seq: Option<u64>,
    /// What exactly, in words.
    pub detail: String,
}

/// What a chain walk over one journal found.
#[derive(Debug, Default, serde::Serialize)]
pub struct ChainReport {
    /// Chained records read (format 2).
    pub chained: u64,
    /// Unchained records read (format 1, legacy).
    pub legacy: u64,
    /// The last record's `seq` and `event_hash` (hex), if the chain is whole up to it.
    pub head: Option<(u64, String)>,
    /// Checkpoints whose signature verified with the given key.
    pub signed: usize,
    /// Checkpoints written without a key.
    pub unsigned: usize,
    /// Checkpoints signed, but not checked (no public key given).
    pub unchecked: usize,
    /// The highest `seq` a checkpoint covers.
    pub covered: Option<u64>,
    /// Findings, first broken position first.
    pub findings: Vec<Finding>,
    /// Facts worth knowing that are not tampering (crash recovery, legacy, unsigned).
    pub notes: Vec<String>,
    /// Segments with a record outside the time span the `spans` file gives them
    /// ([`super::spans`]): that file was changed, and an export by time could skip records.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub spans: Vec<String>,
    /// The pseudonyms its records are sealed under and its erasures name, for the store's
    /// erasure check ([`store_findings`]).
    #[serde(skip)]
    pub(crate) subjects: Subjects,
}

/// An event of a whole record: its id, `seq` and place.
pub(crate) type Located = (EventId, u64, Place);

/// Checks a sequence of records against their chain and checkpoints.
pub(crate) struct Walker {
    start: u64,
    expected: u64,
    prev: Option<Hash>,
    prev_place: Option<Place>,
    /// First break: later records are only noted by seq, to tell deleted from reordered.
    gap: Option<(u64, u64, Place)>,
    broken: bool,
    seen_after: HashSet<u64>,
    /// Checkpoint seqs → (hash, description), to compare with the records.
    expect_hash: HashMap<u64, (Option<Hash>, String)>,
    /// The `seq` of a final checkpoint (`Some(None)`: final before any record).
    after_final: Option<Option<u64>>,
    /// Whether any checkpoint was read, and whether a final one.
    pub(crate) saw_checkpoint: bool,
    /// Event ids of every whole record, for the index check.
    pub(crate) ids: Vec<Located>,
    pub(crate) report: ChainReport,
    last_place: Option<Place>,
    /// Timestamps are collected by exports.
    collect_ids: bool,
    /// Cuts of accepted purge statements: gaps retention made (see [`Walker::purges`]).
    bridges: Vec<super::retention::Bridge>,
    /// Gaps bridged so far, the records in them, and the statements' lines that did it.
    bridged: (u64, u64, std::collections::BTreeSet<usize>),
}

impl Walker {
    /// A walker for a chain that starts at `seq` after `prev` (0 and `None` for a journal).
    pub(crate) fn new(seq: u64, prev: Option<Hash>, collect_ids: bool) -> Walker {
        Walker {
            start: seq,
            expected: seq,
            prev,
            prev_place: None,
            gap: None,
            broken: false,
            seen_after: HashSet::new(),
            expect_hash: HashMap::new(),
            after_final: None,
            saw_checkpoint: false,
            ids: Vec::new(),
            report: ChainReport::default(),
            last_place: None,
            collect_ids,
            bridges: Vec::new(),
            bridged: Default::default(),
        }
    }

    /// Takes the purge statements of this chain ([`super::retention::read_purges`]): refused
    /// ones are findings; the cuts of the others may bridge gaps in the chain.
    pub(crate) fn purges(&mut self, purges: super::retention::Purges) {
        self.purges_at(purges, |line| Place::Purge { line });
    }

    /// [`Walker::purges`] of statements found elsewhere (an export's lines: `place` says
    /// where a line number is); may be called once per statement, before the records.
    pub(crate) fn purges_at(
        &mut self,
        purges: super::retention::Purges,
        place: impl Fn(usize) -> Place,
    ) {
        for (line, detail) in purges.refused {
            self.find(Kind::BadSignature, place(line), None, detail);
        }
        self.report.notes.extend(purges.notes);
        self.bridges.extend(purges.bridges);
        // Looked up by first seq (a store of interleaved tags has a cut per record).
        self.bridges.sort_by_key(|b| b.first_seq);
    }

    /// Whether purge cuts account for every record from `from` to `to` (exclusive), starting
    /// where the chain stands (the first cut's `previous_hash` is the last record's hash);
    /// if so the chain moves on to after them, anchored to the last cut's hash.
    fn bridge(&mut self, from: u64, to: u64) -> bool {
        let (mut at, mut prev) = (from, self.prev);
        let mut lines = std::collections::BTreeSet::new();
        while at < to {
            let from_here = self.bridges.partition_point(|b| b.first_seq < at);
            let Some(b) = self.bridges[from_here..]
                .iter()
                .take_while(|b| b.first_seq == at)
                .find(|b| b.previous_hash == prev && b.last_seq < to)
            else {
                return false;
            };
            // A checkpoint of the cut's last record must have signed the same hash.
            if let Some((want, _)) = self.expect_hash.get(&b.last_seq)
                && *want != Some(b.last_hash)
            {
                return false;
            }
            lines.insert(b.line);
            prev = Some(b.last_hash);
            at = b.last_seq + 1;
        }
        self.bridged.0 += 1;
        self.bridged.1 += to - from;
        self.bridged.2.extend(lines);
        self.prev = prev;
        self.expected = to;
        true
    }

    fn find(&mut self, kind: Kind, place: Place, seq: Option<u64>, detail: String) {
        self.report.findings.push(Finding {
            kind,
            place,
            seq,
            detail,
        });
    }

    fn brk(&mut self, kind: Kind, place: Place, seq: Option<u64>, detail: String) {
        if !self.broken {
            self.broken = true;
            self.find(kind, place, seq, detail);
        }
    }

    /// Checks the checkpoints of this chain before its records are walked (each names the
    /// hash its `seq` must have). `what` names where they are (a file, an export's lines).
    pub(crate) fn checkpoints(
        &mut self,
        lines: &[checkpoint::Line],
        journal: JournalId,
        key: Option<&TrustedKey>,
        place: impl Fn(usize) -> Place,
        what: &str,
    ) {
        for line in lines {
            let at = place(line.number);
            let s = match &line.statement {
                Ok(s) => s,
                Err(_) if line.torn => {
                    self.report.notes.push(format!(
                        "{what} line {}: torn (a crash while it was written); ignored",
                        line.number
                    ));
                    continue;
                }
                Err(e) => {
                    self.find(
                        Kind::Edited,
                        at,
                        None,
                        format!(
                            "{what} line {} is not a checkpoint statement ({e})",
                            line.number
                        ),
                    );
                    continue;
                }
            };
            if s.journal != journal.to_string() {
                self.find(
                    Kind::Inserted,
                    at,
                    s.seq,
                    format!(
                        "{what} line {} is a checkpoint of journal {}, not of this one",
                        line.number, s.journal
                    ),
                );
                continue;
            }
            let desc = describe(s, line.number, what);
            match s.check(key) {
                Signed::Valid => self.report.signed += 1,
                Signed::Unsigned => self.report.unsigned += 1,
                Signed::Unchecked => self.report.unchecked += 1,
                Signed::OtherKey => {
                    self.find(
                        Kind::BadSignature,
                        at,
                        s.seq,
                        format!(
                            "{desc} is signed by key {}, not by the given public key",
                            s.key_id.as_deref().unwrap_or("?")
                        ),
                    );
                    continue;
                }
                Signed::Invalid => {
                    self.find(
                        Kind::BadSignature,
                        at,
                        s.seq,
                        format!("{desc}: its signature does not verify (the statement was forged or changed)"),
                    );
                    continue;
                }
            }
            self.saw_checkpoint = true;
            if s.is_final {
                self.after_final = Some(self.after_final.flatten().max(s.seq));
            }
            let Some(seq) = s.seq else { continue };
            let hash = s.head_hash.as_deref().and_then(parse_hex);
            self.expect_hash.insert(seq, (hash, desc));
            self.report.covered = Some(self.report.covered.map_or(seq, |c| c.max(seq)));
        }
    }

    /// A whole record (its checksum matched) at `place`.
    pub(crate) fn record(&mut self, place: Place, payload: &[u8]) {
        self.record_link(place, payload, Link::of(payload));
    }

    /// [`Walker::record`] with the record's chain members read already, as [`Link::of`]
    /// reads them (`None`: not a JSON object of that shape), by a reader that decodes the
    /// record anyway ([`super::scan`]).
    pub(crate) fn record_link(&mut self, place: Place, payload: &[u8], link: Option<Link<'_>>) {
        if self.collect_ids
            && let Some(l) = &link
            && let (Some(id), Some(seq)) = (l.event_id.and_then(|i| i.parse().ok()), l.seq)
        {
            self.ids.push((id, seq, place));
        }
        self.last_place = Some(place);
        if self.broken {
            if let Some(seq) = link.and_then(|l| l.seq) {
                self.seen_after.insert(seq);
            }
            return;
        }
        let Some(link) = link else {
            return self.brk(
                Kind::Edited,
                place,
                Some(self.expected),
                "a record whose checksum matches is not a JSON object: it was rewritten".into(),
            );
        };
        let Some(seq) = link.seq else {
            return self.brk(
                Kind::Inserted,
                place,
                Some(self.expected),
                "a record without chain members (seq, previous_hash) in a chained segment".into(),
            );
        };
        let mut e = self.expected;
        if seq > e && self.bridge(e, seq) {
            e = seq;
        }
        if seq > e {
            self.broken = true;
            self.gap = Some((e, seq, place));
            return;
        }
        if seq < e {
            return self.brk(
                Kind::Inserted,
                place,
                Some(seq),
                format!("seq {seq} appears again where seq {e} was due: a record was inserted (or copied) here"),
            );
        }
        if !link.follows(self.prev.as_ref()) {
            let (at, detail) = match (self.prev_place, seq) {
                (Some(p), s) if s > 0 => (
                    p,
                    format!(
                        "record seq {} no longer hashes to the previous_hash that seq {s} recorded: its bytes (or that link) were changed",
                        s - 1
                    ),
                ),
                _ => (
                    place,
                    format!(
                        "record seq {seq} does not link to the record before it (previous_hash changed, or the records before it were replaced)"
                    ),
                ),
            };
            let at_seq = if at == place { seq } else { seq - 1 };
            return self.brk(Kind::Edited, at, Some(at_seq), detail);
        }
        let hash = digest(payload);
        if let Some((want, desc)) = self.expect_hash.get(&seq)
            && *want != Some(hash)
        {
            let detail = format!("record seq {seq} differs from what {desc} signed for it");
            return self.brk(Kind::Edited, place, Some(seq), detail);
        }
        if let Some(f) = self.after_final
            && f.is_none_or(|f| seq > f)
        {
            let last = f.map_or("before any record".to_string(), |f| format!("at seq {f}"));
            return self.brk(
                Kind::Inserted,
                place,
                Some(seq),
                format!("record seq {seq} follows the writer's final checkpoint ({last}): nothing was written after it"),
            );
        }
        self.report.chained += 1;
        self.prev = Some(hash);
        self.prev_place = Some(place);
        self.expected = seq + 1;
    }

    /// Unreadable bytes between whole records (`resumes` false: up to the segment's end).
    pub(crate) fn damage(&mut self, place: Place, reason: &str, resumes: bool) {
        let kind = if !resumes && reason.contains("cut short") {
            Kind::Truncated
        } else {
            Kind::Edited
        };
        let detail = if resumes {
            format!("unreadable bytes ({reason}): a record's bytes were changed")
        } else {
            format!("the rest of the segment is unreadable ({reason})")
        };
        self.brk(kind, place, Some(self.expected), detail);
    }

    /// Ends the walk: classifies a gap, checks the end against the checkpoints.
    pub(crate) fn finish(mut self, end: Place) -> (ChainReport, Vec<Located>) {
        if let Some((e, found, place)) = self.gap {
            let (kind, detail) = if (e..found).any(|s| self.seen_after.contains(&s)) {
                (
                    Kind::Reordered,
                    format!(
                        "seq {found} comes where seq {e} was due, and seq {e} comes later: records were reordered"
                    ),
                )
            } else {
                (
                    Kind::Deleted,
                    format!(
                        "seq {found} comes where seq {e} was due: {} record(s) (seq {e}..{}) were deleted",
                        found - e,
                        found - 1
                    ),
                )
            };
            self.find(kind, place, Some(e), detail);
        }
        if !self.broken
            && let Some(covered) = self.report.covered
            && self.expected <= covered
            && !self.bridge(self.expected, covered + 1)
        {
            let desc = self
                .expect_hash
                .get(&covered)
                .map(|(_, d)| d.clone())
                .unwrap_or_default();
            let detail = match self.expected {
                0 => format!(
                    "the chain has no records, but {desc} covers seq {covered}: the records were cut off"
                ),
                n => format!(
                    "the chain ends at seq {}, but {desc} covers seq {covered}: records seq {n}..{covered} were cut off",
                    n - 1
                ),
            };
            self.find(Kind::Truncated, end, Some(self.expected), detail);
        }
        if !self.broken && self.expected > 0 {
            self.report.head = self.prev.map(|h| (self.expected - 1, hex(&h)));
        }
        let (gaps, records, lines) = &self.bridged;
        if *gaps > 0 {
            self.report.notes.push(format!(
                "{records} record(s) in {gaps} gap(s) were removed by retention ({} line(s) {}): the chain resumes at each recorded boundary hash",
                super::retention::PURGES,
                lines.iter().map(usize::to_string).collect::<Vec<_>>().join(", ")
            ));
        }
        self.report.findings.sort_by_key(|f| f.place);
        (self.report, self.ids)
    }

    /// The `seq` the chain was to start at.
    pub(crate) fn first_seq(&self) -> u64 {
        self.start
    }

    /// The head the walk reached (whole chain so far), for an export's trailer.
    pub(crate) fn head(&self) -> Option<Head> {
        match (self.expected, self.prev) {
            (n, Some(hash)) if n > 0 => Some(Head { seq: n - 1, hash }),
            _ => None,
        }
    }
}

fn describe(s: &Statement, line: usize, what: &str) -> String {
    let signed = match s.alg.as_str() {
        "none" => "unsigned",
        _ => "signed",
    };
    let last = if s.is_final { " final" } else { "" };
    format!(
        "the {signed}{last} checkpoint of {} ({what} line {line})",
        s.time
    )
}

/// What `verify` found in one journal of a store.
#[derive(Debug, serde::Serialize)]
pub struct JournalReport {
    /// The journal (`legacy` for the single pre-journals one).
    pub journal: String,
    /// Its folder.
    pub dir: PathBuf,
    /// The chain walk.
    #[serde(flatten)]
    pub chain: ChainReport,
}

/// What `verify` found in the index.
#[derive(Debug, Default, serde::Serialize)]
pub struct IndexReport {
    /// Whether the index was checked (it is not while another process holds it).
    pub checked: bool,
    /// Entries in the index.
    pub entries: usize,
    /// Problems: entries missing, leading elsewhere, or backed by no journal record.
    pub findings: Vec<String>,
    /// Why it was not checked, or how it was opened.
    pub notes: Vec<String>,
    /// Not checked because this account cannot write the store ([`super::write_denied`]):
    /// why. The journals alone cannot show a journal deleted or cut back after it was
    /// indexed, so the store is not called intact.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_denied: Option<String>,
}

/// What `verify` found about the keys of sealed records ([`super::erasures`]).
#[derive(Debug, Default, serde::Serialize)]
pub struct KeysReport {
    /// Key files that cannot be read, then pseudonyms whose key is gone while no
    /// `audit/erase` event names them.
    pub findings: Vec<String>,
    /// Why they were not checked.
    pub notes: Vec<String>,
}

/// What `verify` found in a store.
#[derive(Debug, Default, serde::Serialize)]
pub struct StoreReport {
    /// Per journal, in id order.
    pub journals: Vec<JournalReport>,
    /// The index check.
    pub index: IndexReport,
    /// The erasure check.
    pub keys: KeysReport,
}

impl StoreReport {
    /// Whether nothing was found (notes are not findings).
    pub fn intact(&self) -> bool {
        self.journals
            .iter()
            .all(|j| j.chain.findings.is_empty() && j.chain.spans.is_empty())
            && self.index.findings.is_empty()
            && self.keys.findings.is_empty()
    }
}

/// Verifies every journal of the store at `root` with `key` (if given), then its index.
pub fn verify_store(
    root: &Path,
    key: Option<&TrustedKey>,
    check_index: bool,
) -> Result<StoreReport, StoreError> {
    verify_store_with(root, key, check_index, &ProgressBar::hidden(), &|_| {
        ProgressBar::hidden()
    })
}

/// [`verify_store`], advancing `progress` by the bytes of each segment read (finished and
/// cleared after the last), then the bar `index_bar(events to look up)` makes by each index
/// lookup.
pub fn verify_store_with(
    root: &Path,
    key: Option<&TrustedKey>,
    check_index: bool,
    progress: &ProgressBar,
    index_bar: &dyn Fn(u64) -> ProgressBar,
) -> Result<StoreReport, StoreError> {
    let paths = StorePaths::new(root);
    let journal_root = paths.journal();
    let mut report = StoreReport::default();
    let mut all_ids: HashMap<EventId, Found> = HashMap::new();
    let mut journal_ids = Vec::new();
    // The keys before the walk and after it: an `erase` during the walk destroys a key only
    // after recording its event, which the walk may have passed.
    let keys_before = super::personal::subjects(root);
    for id in journals::list(&journal_root)? {
        let dir = id.dir(&journal_root);
        let (chain, ids) = verify_journal(&dir, id, key, check_index, progress)?;
        let n = report.journals.len();
        for (event, seq, place) in ids {
            all_ids.insert(
                event,
                Found {
                    journal: n,
                    seq,
                    place,
                    indexed: false,
                },
            );
        }
        journal_ids.push(id);
        report.journals.push(JournalReport {
            journal: id.to_string(),
            dir,
            chain,
        });
    }
    progress.finish_and_clear();
    if check_index {
        let index_progress = index_bar(all_ids.len() as u64);
        report.index = verify_index(root, &report, &journal_ids, &mut all_ids, &index_progress)?;
        index_progress.finish_and_clear();
    } else {
        report.index.notes.push("not checked (--no-index)".into());
    }
    let (losses, keys) = store_findings(root, &mut report.journals, keys_before)?;
    report.index.findings.extend(losses);
    report.keys = keys;
    Ok(report)
}

/// What the store as a whole shows beyond each journal's chain, for `verify` and for the
/// compliance rules that rest on the trail's integrity (which must not call a store intact
/// that `verify` does not): indexes replaced because the journals lost records they held
/// ([`losses`]), and keys gone while no `audit/erase` event names them ([`super::erasures`];
/// `keys_before`: [`super::personal::subjects`] taken before the walk of `journals`, whose
/// pseudonyms are taken out of them).
pub(crate) fn store_findings(
    root: &Path,
    journals: &mut [JournalReport],
    keys_before: Result<Option<HashSet<String>>, super::personal::PersonalError>,
) -> Result<(Vec<String>, KeysReport), StoreError> {
    let losses = losses(root)?;
    let mut subjects = Subjects::default();
    for j in journals {
        subjects.merge(std::mem::take(&mut j.chain.subjects));
    }
    let mut keys = KeysReport::default();
    // A damaged key file hides its pseudonym: its records then read as sealed under a key
    // that is gone. Said first, so that the findings below are read with it.
    let damaged = match super::personal::damaged_keys(root) {
        Ok(d) => d,
        Err(e) => {
            keys.notes.push(format!("key files not checked: {e}"));
            Vec::new()
        }
    };
    for d in &damaged {
        keys.findings.push(format!(
            "the user key file {d} cannot be read: the records sealed with it cannot be opened, and may be listed below as sealed under a key that is gone"
        ));
    }
    match (keys_before, super::personal::subjects(root)) {
        (Ok(before), Ok(after)) => {
            let missing = before.is_none() && after.is_none();
            let all: HashSet<String> = before.into_iter().chain(after).flatten().collect();
            keys.findings.extend(subjects.findings(&all, missing));
        }
        (Err(e), _) | (_, Err(e)) => keys.notes.push(format!(
            "erasures not checked: {e} (the check needs to read the pseudonyms in keys/)"
        )),
    }
    Ok((losses, keys))
}

/// What replaced indexes (`index.replaced*`) say was lost: an index is replaced when the
/// journals hold less than it knew (a journal deleted, or cut back below what was indexed),
/// by whichever command opened the store first, and the reason is kept with it
/// ([`super::holder::REBUILT`]). Each is a finding: the records once indexed are gone (or a
/// backup of the journals was restored over newer ones).
pub(crate) fn losses(root: &Path) -> Result<Vec<String>, StoreError> {
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) => return Err(StoreError::io("list", root, e)),
    };
    let mut out = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("index.replaced") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(entry.path().join(super::holder::REBUILT)) else {
            continue;
        };
        let Ok(r) = serde_json::from_str::<super::holder::Rebuilt>(&text) else {
            // The note is written whole before the index moves: an unreadable one was cut
            // or changed (or an older version could not write it whole), and may have
            // said that journals were lost.
            out.push(format!(
                "the note saying why the index was replaced ({name}/{}) cannot be read: it may have recorded that journals were lost",
                super::holder::REBUILT
            ));
            continue;
        };
        if r.journals_lost {
            out.push(format!(
                "at {} the index knew records the journals no longer hold ({}): a journal was deleted or cut back after it was indexed, or older journals were restored; the index was rebuilt from what is left, the old one kept as {name}",
                r.at, r.reason
            ));
        }
    }
    out.sort();
    Ok(out)
}

/// Walks one journal's segments and checkpoints.
fn verify_journal(
    dir: &Path,
    id: JournalId,
    key: Option<&TrustedKey>,
    collect_ids: bool,
    progress: &ProgressBar,
) -> Result<(ChainReport, Vec<Located>), StoreError> {
    let segments = journal::list_segments(dir)?;
    let walk = RefCell::new(JournalWalk::open(dir, id, key, collect_ids, &segments)?);
    let mut image = Vec::new();
    for (i, &n) in segments.iter().enumerate() {
        let newest = i + 1 == segments.len();
        let chained = walk.borrow_mut().segment(n)?;
        let at = journal::read_segment_in(
            dir,
            n,
            HEADER_LEN,
            newest,
            &mut image,
            |pos, payload| {
                walk.borrow_mut().record(pos, payload, chained, None);
                Ok::<(), StoreError>(())
            },
            |d| walk.borrow_mut().damage(&d),
        )?;
        progress.inc(
            std::fs::metadata(journal::segment_path(dir, n))
                .map(|m| m.len())
                .unwrap_or(at.offset),
        );
        walk.borrow_mut().segment_end(n, at.offset, newest)?;
    }
    walk.into_inner().finish()
}

/// With a key to check against, a stopped journal none of whose records a checkpoint signed
/// by that key covers is a finding ([`Kind::Unsigned`]), not a note: whoever can write the
/// store can rewrite such a journal whole, recompute its chain and remove (or never write)
/// its checkpoints, and nothing would show it. (A journal with signed checkpoints keeps the
/// documented limit: records after its last one are a note when its writer did not stop
/// cleanly. A writer signs its first checkpoint as soon as its first records are durable, so
/// one killed soon after it started is that case, not this one.) A running writer: a note.
fn unsigned_journal(report: &mut ChainReport, dir: &Path, id: JournalId) {
    if report.chained == 0 || report.signed > 0 || id == JournalId::LEGACY {
        return;
    }
    // Running only when another process holds its lock: a lock that cannot be opened
    // (a read-only copy, a changed LOCK file) hides nothing.
    let running = matches!(
        journals::try_lock(dir.parent().unwrap_or(dir), id),
        Ok(None)
    );
    if running {
        return;
    }
    let unsigned = match report.unsigned {
        0 => "it has no checkpoints".to_string(),
        n => format!("its {n} checkpoint(s) are unsigned"),
    };
    report.findings.push(Finding {
        kind: Kind::Unsigned,
        place: Place::Checkpoint { line: 1 },
        seq: None,
        detail: format!(
            "none of its {} record(s) is covered by a checkpoint signed by the given key: {unsigned} (removed, written by a proxy without audit.signing_key_file, or by a version older than 2026-12-06 killed before its first checkpoint); nothing shows these records are the ones written",
            report.chained
        ),
    });
}

/// One journal's chain walk, fed its segments' records in order by whoever reads them:
/// [`verify_journal`], or a scan that reads the journal for its own ends and walks its chain
/// on the way ([`super::scan`]: `report` and `compliance` read each record once, not once
/// for their facts and again for the chain). For each segment, oldest first:
/// [`JournalWalk::segment`], its whole records ([`JournalWalk::record`]) and damaged
/// stretches ([`JournalWalk::damage`]) in file order, then [`JournalWalk::segment_end`];
/// then [`JournalWalk::finish`].
pub(crate) struct JournalWalk {
    dir: PathBuf,
    id: JournalId,
    walker: Walker,
    /// The segments' time spans ([`super::spans`]), to find records outside them.
    times: HashMap<u64, super::spans::Span>,
    span_problems: Vec<String>,
    /// The current segment's first record outside its span, if any.
    outside: Option<u64>,
    current: Option<u64>,
    end: Place,
    seen_chained: bool,
    legacy: u64,
    previous: Option<u64>,
    /// Whether no segment was listed.
    none: bool,
    /// Whether a key was given to check the checkpoints with ([`unsigned_journal`]).
    keyed: bool,
}

impl JournalWalk {
    /// Starts the walk of the journal `id` in `dir`, whose segments are `segments` (as
    /// [`journal::list_segments`] lists them), with its checkpoints and purge statements.
    pub(crate) fn open(
        dir: &Path,
        id: JournalId,
        key: Option<&TrustedKey>,
        collect_ids: bool,
        segments: &[u64],
    ) -> Result<JournalWalk, StoreError> {
        let mut walker = Walker::new(0, None, collect_ids);
        let checkpoints = if id == JournalId::LEGACY {
            Vec::new()
        } else {
            checkpoint::read(dir)?
        };
        walker.checkpoints(
            &checkpoints,
            id,
            key,
            |line| Place::Checkpoint { line },
            checkpoint::FILE,
        );
        walker.purges(super::retention::read_purges(dir, id, key)?);
        Ok(JournalWalk {
            dir: dir.to_path_buf(),
            id,
            walker,
            times: super::spans::read(dir),
            span_problems: Vec::new(),
            outside: None,
            current: None,
            end: Place::Record {
                segment: 1,
                offset: HEADER_LEN,
            },
            seen_chained: false,
            legacy: 0,
            previous: None,
            none: segments.is_empty(),
            keyed: key.is_some(),
        })
    }

    /// Segment `n` is read next: returns whether it is chained (its records go to the chain;
    /// a legacy segment's are counted). A newer format than this build reads is an error.
    pub(crate) fn segment(&mut self, n: u64) -> Result<bool, StoreError> {
        if let Some(p) = self.previous
            && n != p + 1
        {
            self.walker.report.notes.push(format!(
                "segment files {}..{} are missing",
                p + 1,
                n - 1
            ));
        }
        self.previous = Some(n);
        self.current = Some(n);
        self.outside = None;
        let format = journal::format_of(&self.dir, n)?;
        if format.is_some_and(|f| f > FORMAT) {
            return Err(StoreError::NewerFormat {
                path: journal::segment_path(&self.dir, n),
                found: format.unwrap_or_default(),
            });
        }
        let chained = journal::is_chained(format);
        if chained {
            self.seen_chained = true;
        } else if format == Some(FORMAT_LEGACY) && self.seen_chained {
            self.walker.brk(
                Kind::Inserted,
                Place::Record {
                    segment: n,
                    offset: 0,
                },
                None,
                "a legacy (unchained) segment after chained ones".into(),
            );
        }
        Ok(chained)
    }

    /// A whole record of the current segment, `pos` the position after it, in a `chained`
    /// segment ([`JournalWalk::segment`]); `link`: its chain members when the caller read
    /// them already (as [`Link::of`] would), `None` to read them here.
    pub(crate) fn record(
        &mut self,
        pos: JournalPos,
        payload: &[u8],
        chained: bool,
        link: Option<Option<Link<'_>>>,
    ) {
        self.walker.report.subjects.see(payload);
        let offset = pos.offset - 8 - payload.len() as u64;
        let place = Place::Record {
            segment: pos.segment,
            offset,
        };
        if self.outside.is_none()
            && let Some(span) = self.times.get(&pos.segment)
            && !super::spans::time_of(payload).is_some_and(|t| span.covers(t))
        {
            self.outside = Some(offset);
        }
        if chained {
            match link {
                Some(link) => self.walker.record_link(place, payload, link),
                None => self.walker.record(place, payload),
            }
        } else {
            self.legacy += 1;
        }
    }

    /// Unreadable bytes of the current segment ([`journal::read_segment`]'s damage).
    pub(crate) fn damage(&mut self, d: &journal::Damage) {
        let segment = self.current.unwrap_or_default();
        self.walker.damage(
            Place::Record {
                segment,
                offset: d.offset,
            },
            &d.reason,
            d.resumes_at.is_some(),
        )
    }

    /// Segment `n` is read: its whole records end at `offset`; `newest`: it is the
    /// journal's last, where bytes after the last whole record are a write in progress or a
    /// crash not yet recovered (said in a note).
    pub(crate) fn segment_end(
        &mut self,
        n: u64,
        offset: u64,
        newest: bool,
    ) -> Result<(), StoreError> {
        if let Some(at) = self.outside.take() {
            self.span_problems.push(format!(
                "segment {n}: the record at offset {at} lies outside the time span `{}` gives the segment (that file was changed: an export by time could skip records; deleting it is safe)",
                super::spans::FILE
            ));
        }
        self.end = Place::Record { segment: n, offset };
        if newest {
            let path = journal::segment_path(&self.dir, n);
            let len = std::fs::metadata(&path)
                .map_err(|e| StoreError::io("read the length of", &path, e))?
                .len();
            if len > offset {
                let dir = &self.dir;
                let running = self.id != JournalId::LEGACY
                    && journals::try_lock(dir.parent().unwrap_or(dir), self.id)
                        .ok()
                        .flatten()
                        .is_none();
                self.walker.report.notes.push(format!(
                    "{} bytes after the last whole record of segment {n} ({})",
                    len - offset,
                    if running {
                        "its writer is running: a record being written"
                    } else {
                        "a crash not yet recovered; the next writer or `reindex` cuts and keeps them"
                    }
                ));
            }
        }
        Ok(())
    }

    /// Ends the walk: what it found, and the events of the whole records when asked.
    pub(crate) fn finish(self) -> Result<(ChainReport, Vec<Located>), StoreError> {
        let JournalWalk {
            dir,
            id,
            mut walker,
            span_problems,
            end,
            seen_chained,
            legacy,
            none,
            keyed,
            ..
        } = self;
        let dir = dir.as_path();
        walker.report.legacy = legacy;
        walker.report.spans = span_problems;
        if seen_chained && walker.after_final.is_none() {
            let running = journals::try_lock(dir.parent().unwrap_or(dir), id)
                .ok()
                .flatten()
                .is_none();
            let covered = match walker.report.covered {
                Some(seq) => format!("records after seq {seq} (its last checkpoint) are"),
                None => "its records are".to_string(),
            };
            walker.report.notes.push(if running {
                format!("its writer is running: {covered} not covered by a checkpoint yet")
            } else if walker.saw_checkpoint {
                format!("no final checkpoint (the writer did not stop cleanly, or the final one was removed): {covered} not covered, a cut there would not show")
            } else {
                format!("no checkpoints (the writer crashed before its first one, or the file was removed): {covered} not covered, a cut would not show")
            });
        }
        if legacy > 0 {
            walker.report.notes.push(format!(
                "{legacy} record(s) in legacy (format 1) segments, written before chains: unchained, not verifiable"
            ));
        }
        for torn in torn_files(dir)? {
            walker.report.notes.push(format!(
                "recovery after a crash cut a torn tail off and saved it to {} (not tampering: those bytes never formed a whole record)",
                torn.display()
            ));
        }
        if walker.report.unsigned > 0 {
            walker.report.notes.push(format!(
                "{} checkpoint(s) unsigned (no audit.signing_key_file when written): they show accidental cuts, not deliberate rewriting",
                walker.report.unsigned
            ));
        }
        if walker.report.unchecked > 0 {
            walker.report.notes.push(format!(
                "{} signed checkpoint(s) not checked: give --public-key (or configure audit.signing_key_file)",
                walker.report.unchecked
            ));
        }
        if walker.report.legacy == 0 && none {
            walker.report.notes.push("no segments".into());
        }
        let (mut report, ids) = walker.finish(end);
        if keyed {
            unsigned_journal(&mut report, dir, id);
        }
        Ok((report, ids))
    }
}

/// The torn tails recovery saved aside in `dir`.
fn torn_files(dir: &Path) -> Result<Vec<PathBuf>, StoreError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StoreError::io("list", dir, e)),
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.contains(".journal.torn-"))
        })
        .collect();
    out.sort();
    Ok(out)
}

/// Where the chain walk found an event, for the index check: journal (its place in the
/// report), `seq`, the record's place, and whether an index entry led there.
pub(crate) struct Found {
    journal: usize,
    seq: u64,
    place: Place,
    indexed: bool,
}

/// Checks the index against what the chain walk found (`ids`, by event id), in one pass over
/// the index's entries in id order: each entry must lead to the record where the walk found its
/// event (same journal, segment and offset: the walk checked that record's bytes against the
/// chain), no entry may name an event no chained record holds, and every event the walk found
/// must have an entry. Looking each event up and reading its record back, as this did before,
/// ran at ~28k events/s on 10 M events; the pass reads the index once.
fn verify_index(
    root: &Path,
    report: &StoreReport,
    journal_ids: &[JournalId],
    ids: &mut HashMap<EventId, Found>,
    progress: &ProgressBar,
) -> Result<IndexReport, StoreError> {
    let mut out = IndexReport::default();
    let Some((index, _lock, opened)) = super::open_for_query(root)? else {
        if let Some(why) = super::write_denied(root) {
            out.notes.push(format!(
                "not checked: this account cannot write the store ({why}), and the index opens only for writing, so a journal deleted or cut back after it was indexed cannot be found; run verify as the store's owner, or on a copy of the store (cp -a)"
            ));
            out.write_denied = Some(why);
            return Ok(out);
        }
        out.notes.push(
            "not checked: another process holds the index (run verify again when the proxies are stopped)".into(),
        );
        return Ok(out);
    };
    if let Some(reason) = &opened.rebuilt {
        out.notes.push(format!(
            "the index was rebuilt on opening ({reason}); the replaced one is kept beside it as index.replaced*"
        ));
    }
    out.checked = true;
    let name = |j: usize| report.journals.get(j).map_or("?", |r| r.journal.as_str());
    let mut problems = 0usize;
    let mut note = |out: &mut IndexReport, text: String| {
        problems += 1;
        if out.findings.len() < 20 {
            out.findings.push(text);
        }
    };
    let mut entries = super::query::Merge::events(&index, 0, u128::MAX);
    while let Some((id, value)) = entries.next(&index)? {
        out.entries += 1;
        progress.inc(1);
        let event = EventId(ulid::Ulid(id));
        let at = super::index::record_from_value(&value);
        // Entries of legacy (unchained) journals: their records are not walked.
        if at.is_some_and(|(j, _)| j == JournalId::LEGACY) {
            continue;
        }
        let Some(found) = ids.get_mut(&event) else {
            note(
                &mut out,
                format!("the index holds event {event} that no chained journal record holds"),
            );
            continue;
        };
        let leads_there = at.is_some_and(|(j, r)| {
            journal_ids.get(found.journal) == Some(&j)
                && found.place
                    == Place::Record {
                        segment: r.segment,
                        offset: r.offset,
                    }
        });
        if leads_there {
            found.indexed = true;
        } else {
            note(
                &mut out,
                format!(
                    "event {event} (journal {} seq {}) has an index entry that does not lead to its record",
                    name(found.journal),
                    found.seq
                ),
            );
            // Said once: not "missing" as well.
            found.indexed = true;
        }
    }
    let mut missing: Vec<(&EventId, &Found)> = ids.iter().filter(|(_, f)| !f.indexed).collect();
    missing.sort_by_key(|(_, f)| (f.journal, f.seq));
    for (event, f) in missing {
        note(
            &mut out,
            format!(
                "event {event} (journal {} seq {}) is missing from the index",
                name(f.journal),
                f.seq
            ),
        );
    }
    if problems > out.findings.len() {
        out.findings.push(format!(
            "… and {} more index problems",
            problems - out.findings.len()
        ));
    }
    index.close()?;
    Ok(out)
}
