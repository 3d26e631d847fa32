//! Retention (issue 9 item 6): events are kept as long as the longest period among their
//! compliance tags (`[retention]`), and no longer.
//!
//! # What is removed, and how the chain stays verifiable
//!
//! [`plan`] reads every journal (without changing anything) and says, per segment, how many
//! events have expired. [`apply`] then, journal by journal, under the index lock:
//!
//! 1. appends a **purge statement** to the journal's `purges` file (canonical JSON, one per
//!    line, signed with `audit.signing_key_file` when configured, fsynced) naming each *cut*:
//!    a run of consecutive records removed, by the `seq` of its first and last record, the
//!    `previous_hash` its first record carried and the `event_hash` of its last one (the
//!    boundary hashes, as a log rotation records the head of the file it drops);
//! 2. drops the purged events from the sled index (event entries, posting lists, counts,
//!    access→end links) and moves the entries of the records kept in rewritten segments to
//!    their new offsets, then flushes it;
//! 3. removes whole segments whose every record expired, and rewrites the others that hold
//!    expired records (the kept records' bytes copied unchanged to `NNN.journal.rewrite`,
//!    fsynced, renamed over the segment); a stopped writer's journal whose every record
//!    expired is removed as a whole folder;
//! 4. moves the index holder's saved position of that journal when it pointed into a
//!    rewritten segment (a position in a removed segment needs nothing: reading goes on with
//!    the next segment), and forgets the position of a journal removed as a whole.
//!
//! `verify` ([`super::verify`]) accepts a `seq` gap (or a missing start, or a missing end
//! that a checkpoint covers) exactly when purge statements cover it: the cut starts where the
//! chain stood (its `previous_hash` is the hash of the last record before it) and the record
//! after it links to the cut's last hash. A gap no statement covers is still `deleted`; a
//! statement whose signature does not verify, or one without a signature while a public key
//! is given, covers nothing and is itself a `bad_signature` finding.
//!
//! # Contract of `journal/<ULID>/purges`
//!
//! ```text
//! {"alg":"ed25519"|"none","cuts":[{"first_seq":N,"last_hash":HEX,"last_seq":N,
//!   "previous_hash":HEX|null}],"journal":ULID,"key_id":HEX,"removed":[N],"rewritten":[N],
//!  "signature":BASE64,"time":RFC3339,"type":"mcp-audit-proxy/purge/1"}
//! ```
//!
//! `signature` is the Ed25519 signature (RFC 8032) of the canonical JSON (RFC 8785) of the
//! statement without `signature`, as for checkpoints ([`super::checkpoint`]).
//!
//! # What is never removed
//!
//! * The newest segment of a journal whose writer runs (its `LOCK` is held): it is being
//!   appended to. Its older segments are safe to remove: a writer only ever appends to its
//!   newest segment and never reads the others again.
//! * Damaged segments (unreadable bytes): they are evidence of something; `verify` says what.
//! * Legacy (format 1, unchained) segments: left for an operator to export and remove.
//!
//! Crash safety: the statement is durable before anything is removed, the index is changed
//! and flushed before the files, so a crash leaves at worst expired records still on disk
//! (and not indexed) under a statement that names them; the next run finishes the job. A
//! crash between a rewrite and the save of the moved position can leave the saved position
//! inside a record: the next holder then reports damage or rebuilds the index (`reindex`).
//! Queries that read the journals directly (while this process holds the index) read a segment
//! removed under them as empty (its records were purged); `verify` run at the same moment may
//! fail on it: run it again.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::chain::{Hash, digest, hex, parse_hex};
use super::checkpoint::{Signed, Signer, TrustedKey};
use super::holder::IndexHolder;
use super::journal::{self, HEADER_LEN, JournalPos, RECORD_HEADER_LEN, RecordRef};
use super::journals::{self, JournalId};
use super::{StoreError, StorePaths};
use crate::audit::event::{AuditEvent, EventId, EventType, Metadata, Outcome, RiskLevel};

/// The purge file's name in a journal's folder.
pub const PURGES: &str = "purges";
/// The `type` of a purge statement.
pub const PURGE_TYPE: &str = "mcp-audit-proxy/purge/1";

/// How long an event is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Keep {
    /// This long after its `timestamp`.
    For(Duration),
    /// Never removed.
    Forever,
}

impl std::fmt::Display for Keep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Keep::Forever => f.write_str("forever"),
            Keep::For(d) => {
                let days = d.as_secs() / 86_400;
                if d.as_secs() % 31_557_600 == 0 {
                    write!(f, "{}y", d.as_secs() / 31_557_600)
                } else {
                    write!(f, "{days}d")
                }
            }
        }
    }
}

/// The retention period of each compliance tag and of untagged events (`[retention]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Periods {
    /// Tag (as the event JSON spells it) → its period.
    pub tags: BTreeMap<String, Keep>,
    /// Events without tags, and tags without a period of their own.
    pub untagged: Keep,
}

const YEAR: Duration = Duration::from_secs(31_557_600);

impl Periods {
    /// The design notes' periods (seed `tool-usage-auditing.md`, compliance rules): GDPR 7
    /// years, HIPAA 6 years (45 CFR 164.316(b)(2)), PCI DSS 1 year (PCI DSS v4.0 10.5.1: a year
    /// of audit log history); untagged 1 year, the same common floor for audit logs.
    pub fn defaults() -> Periods {
        Periods {
            tags: [("gdpr", 7), ("hipaa", 6), ("pci_dss", 1)]
                .into_iter()
                .map(|(t, y)| (t.to_string(), Keep::For(YEAR * y)))
                .collect(),
            untagged: Keep::For(YEAR),
        }
    }

    /// The longest period among `tags` (the untagged period for no tag, or for a tag without a
    /// period of its own).
    pub fn keep_for<'a>(&self, tags: impl IntoIterator<Item = &'a str>) -> Keep {
        let mut longest: Option<Keep> = None;
        for t in tags {
            let k = self.tags.get(t).copied().unwrap_or(self.untagged);
            longest = Some(longest.map_or(k, |l| l.max(k)));
        }
        longest.unwrap_or(self.untagged)
    }

    /// Whether an event of `timestamp` with `tags` has expired at `now`.
    pub fn expired<'a>(
        &self,
        timestamp: SystemTime,
        tags: impl IntoIterator<Item = &'a str>,
        now: SystemTime,
    ) -> bool {
        match self.keep_for(tags) {
            Keep::Forever => false,
            Keep::For(d) => timestamp.checked_add(d).is_some_and(|until| until <= now),
        }
    }

    /// `gdpr 7y, hipaa 6y, pci_dss 1y, untagged 1y`: for reports and the purge event.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self.tags.iter().map(|(t, k)| format!("{t} {k}")).collect();
        parts.push(format!("untagged {}", self.untagged));
        parts.join(", ")
    }
}

/// Why a segment with expired records is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Held {
    /// Its writer is appending to it.
    Live,
    /// It has unreadable bytes.
    Damaged,
    /// A legacy (format 1, unchained) segment.
    Legacy,
}

/// What retention does with a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Nothing has expired.
    Keep,
    /// Every record expired: the file goes.
    Remove,
    /// Some records expired: the file is rewritten without them.
    Rewrite,
    /// Records expired, but the segment is not touched (see [`Held`]).
    Held(Held),
}

/// One record as retention needs it.
#[derive(Debug, Clone)]
struct Rec {
    offset: u64,
    len: u32,
    seq: Option<u64>,
    previous_hash: Option<Hash>,
    hash: Hash,
    id: u128,
    time: SystemTime,
    expired: bool,
}

/// One segment: what it holds and what happens to it.
#[derive(Debug, Clone, Serialize)]
pub struct SegmentPlan {
    /// Segment number.
    pub segment: u64,
    /// Whole records in it.
    pub events: u64,
    /// File length in bytes.
    pub bytes: u64,
    /// The oldest and newest event time (RFC 3339), if any record.
    pub oldest: Option<String>,
    /// See `oldest`.
    pub newest: Option<String>,
    /// Every compliance tag found in it (`untagged` for events without one).
    pub tags: BTreeSet<String>,
    /// Records whose period has passed.
    pub expired: u64,
    /// Their bytes (records and record headers).
    pub expired_bytes: u64,
    /// What retention does with it.
    pub action: Action,
    #[serde(skip)]
    records: Vec<Rec>,
}

/// A run of consecutive records removed (see the module docs for the contract).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cut {
    /// `seq` of the first record removed.
    pub first_seq: u64,
    /// `seq` of the last record removed.
    pub last_seq: u64,
    /// The `previous_hash` the first record carried (`null` at `seq` 0).
    pub previous_hash: Option<String>,
    /// The `event_hash` of the last record removed.
    pub last_hash: String,
}

/// One journal: its segments, and what retention does with them.
#[derive(Debug, Clone, Serialize)]
pub struct JournalPlan {
    /// The journal's id.
    pub journal: String,
    #[serde(skip)]
    id: JournalId,
    /// Its writer runs (its `LOCK` is held).
    pub live: bool,
    /// Segments, oldest first.
    pub segments: Vec<SegmentPlan>,
    /// Runs of records removed.
    pub cuts: Vec<Cut>,
    /// Every record expired and the writer has stopped: the folder goes.
    pub remove_journal: bool,
}

impl JournalPlan {
    /// Records removed by applying this plan.
    pub fn purged(&self) -> u64 {
        self.segments
            .iter()
            .filter(|s| matches!(s.action, Action::Remove | Action::Rewrite))
            .map(|s| s.expired)
            .sum()
    }

    fn has_work(&self) -> bool {
        self.purged() > 0
    }
}

/// What `retention` would remove from a store (a dry run), or what it is about to.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// The periods applied.
    pub periods: String,
    /// The time expiry was judged at (RFC 3339).
    pub now: String,
    /// Per journal, in id order.
    pub journals: Vec<JournalPlan>,
}

impl Plan {
    /// Records the plan removes.
    pub fn purged(&self) -> u64 {
        self.journals.iter().map(JournalPlan::purged).sum()
    }
    /// Expired records that stay (held segments).
    pub fn held(&self) -> u64 {
        self.journals
            .iter()
            .flat_map(|j| &j.segments)
            .filter(|s| matches!(s.action, Action::Held(_)))
            .map(|s| s.expired)
            .sum()
    }
}

/// The fields of a record retention reads.
#[derive(Deserialize)]
struct Facts<'a> {
    #[serde(default)]
    seq: Option<u64>,
    #[serde(default, borrow)]
    previous_hash: Option<&'a str>,
    event_id: EventId,
    #[serde(borrow)]
    timestamp: Cow<'a, str>,
    #[serde(borrow, default)]
    compliance_tags: Vec<Cow<'a, str>>,
    #[serde(borrow, default)]
    action: Option<Cow<'a, str>>,
}

/// The `action` of the record of an erasure (`mcp-audit-proxy erase`): never expired, since
/// `verify` holds every pseudonym whose key is gone against it ([`super::erasures`]), and the
/// erased user's records may be kept longer than its `gdpr` period (a `hipaa` tag, `forever`).
const ERASURE_ACTION: &str = "audit/erase";

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_micros(t).to_string()
}

/// Reads every journal of the store at `root` and says what has expired at `now`; changes
/// nothing.
pub fn plan(root: &Path, periods: &Periods, now: SystemTime) -> Result<Plan, StoreError> {
    let journal_root = StorePaths::new(root).journal();
    let mut journals = Vec::new();
    for id in journals::list(&journal_root)? {
        journals.push(plan_journal(&journal_root, id, periods, now, false)?);
    }
    Ok(Plan {
        periods: periods.describe(),
        now: rfc3339(now),
        journals,
    })
}

/// Whether the writer of journal `id` runs (its `LOCK` is held by another process).
fn live(journal_root: &Path, id: JournalId) -> Result<bool, StoreError> {
    if id == JournalId::LEGACY {
        return Ok(false);
    }
    Ok(journals::try_lock(journal_root, id)?.is_none())
}

/// The plan of one journal; with `keep_records`, the records of the segments it changes
/// are kept in the plan for [`apply`].
fn plan_journal(
    journal_root: &Path,
    id: JournalId,
    periods: &Periods,
    now: SystemTime,
    keep_records: bool,
) -> Result<JournalPlan, StoreError> {
    let dir = id.dir(journal_root);
    let live = live(journal_root, id)?;
    let numbers = journal::list_segments(&dir)?;
    let mut segments = Vec::new();
    for (i, &n) in numbers.iter().enumerate() {
        let newest = i + 1 == numbers.len();
        let path = journal::segment_path(&dir, n);
        let bytes = fs::metadata(&path)
            .map_err(|e| StoreError::io("read the length of", &path, e))?
            .len();
        let format = journal::format_of(&dir, n)?;
        let mut seg = SegmentPlan {
            segment: n,
            events: 0,
            bytes,
            oldest: None,
            newest: None,
            tags: BTreeSet::new(),
            expired: 0,
            expired_bytes: 0,
            action: Action::Keep,
            records: Vec::new(),
        };
        let (mut oldest, mut newest_t): (Option<SystemTime>, Option<SystemTime>) = (None, None);
        let mut damaged = false;
        journal::read_segment(
            &dir,
            n,
            HEADER_LEN,
            newest,
            |end, payload| {
                let facts: Facts = serde_json::from_slice(payload)
                    .map_err(|source| StoreError::Decode { at: end, source })?;
                let t =
                    humantime::parse_rfc3339(&facts.timestamp).map_err(|e| StoreError::Decode {
                        at: end,
                        source: serde::de::Error::custom(e),
                    })?;
                let expired =
                    periods.expired(t, facts.compliance_tags.iter().map(|t| t.as_ref()), now)
                        && facts.action.as_deref() != Some(ERASURE_ACTION);
                seg.events += 1;
                oldest = Some(oldest.map_or(t, |o| o.min(t)));
                newest_t = Some(newest_t.map_or(t, |o| o.max(t)));
                if facts.compliance_tags.is_empty() {
                    seg.tags.insert("untagged".into());
                }
                for tag in &facts.compliance_tags {
                    if !seg.tags.contains(tag.as_ref()) {
                        seg.tags.insert(tag.to_string());
                    }
                }
                let size = RECORD_HEADER_LEN + payload.len() as u64;
                if expired {
                    seg.expired += 1;
                    seg.expired_bytes += size;
                }
                seg.records.push(Rec {
                    offset: end.offset - size,
                    len: payload.len() as u32,
                    seq: facts.seq,
                    previous_hash: facts.previous_hash.and_then(parse_hex),
                    hash: digest(payload),
                    id: u128::from(facts.event_id.0),
                    time: t,
                    expired,
                });
                Ok::<(), StoreError>(())
            },
            |_| damaged = true,
        )?;
        seg.oldest = oldest.map(rfc3339);
        seg.newest = newest_t.map(rfc3339);
        seg.action = if seg.expired == 0 {
            Action::Keep
        } else if !journal::is_chained(format) {
            Action::Held(Held::Legacy)
        } else if damaged {
            Action::Held(Held::Damaged)
        } else if live && newest {
            Action::Held(Held::Live)
        } else if seg.expired == seg.events {
            Action::Remove
        } else {
            Action::Rewrite
        };
        if !keep_records || !matches!(seg.action, Action::Remove | Action::Rewrite) {
            seg.records = Vec::new();
        }
        segments.push(seg);
    }
    let cuts = if keep_records {
        cuts_of(&segments)
    } else {
        Vec::new()
    };
    let remove_journal = !live
        && id != JournalId::LEGACY
        && !segments.is_empty()
        && segments.iter().all(|s| s.action == Action::Remove);
    Ok(JournalPlan {
        journal: id.to_string(),
        id,
        live,
        segments,
        cuts,
        remove_journal,
    })
}

/// The runs of consecutive expired records in the segments retention changes.
fn cuts_of(segments: &[SegmentPlan]) -> Vec<Cut> {
    let mut cuts: Vec<Cut> = Vec::new();
    let mut open = false;
    for seg in segments {
        if !matches!(seg.action, Action::Remove | Action::Rewrite) {
            open = false;
            continue;
        }
        for r in &seg.records {
            let Some(seq) = r.seq else {
                open = false;
                continue;
            };
            if !r.expired {
                open = false;
                continue;
            }
            match cuts.last_mut() {
                Some(c) if open && c.last_seq + 1 == seq => {
                    c.last_seq = seq;
                    c.last_hash = hex(&r.hash);
                }
                _ => {
                    cuts.push(Cut {
                        first_seq: seq,
                        last_seq: seq,
                        previous_hash: r.previous_hash.map(|h| hex(&h)),
                        last_hash: hex(&r.hash),
                    });
                    open = true;
                }
            }
        }
    }
    cuts
}

/// One line of a journal's `purges` file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurgeStatement {
    /// Always [`PURGE_TYPE`].
    #[serde(rename = "type")]
    pub kind: String,
    /// The journal's id (ULID).
    pub journal: String,
    /// When the purge was made (RFC 3339 UTC, microseconds).
    pub time: String,
    /// The runs of records removed.
    pub cuts: Vec<Cut>,
    /// Segments removed as a whole.
    pub removed: Vec<u64>,
    /// Segments rewritten without their expired records.
    pub rewritten: Vec<u64>,
    /// `ed25519` or `none`.
    pub alg: String,
    /// Hex SHA-256 of the signing public key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// Standard base64 of the Ed25519 signature of the statement without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

impl PurgeStatement {
    /// The bytes the signature covers: the canonical JSON without `signature`.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let unsigned = PurgeStatement {
            signature: None,
            ..self.clone()
        };
        super::canonical::to_canonical(&unsigned)
    }

    /// Signs the statement with `signer`.
    pub fn sign(&mut self, signer: &Signer) {
        self.alg = "ed25519".into();
        self.key_id = Some(signer.key_id().to_string());
        self.signature = None;
        self.signature = Some(signer.sign_bytes(&self.signed_bytes()));
    }

    /// What `key` says of the signature.
    pub fn check(&self, key: Option<&TrustedKey>) -> Signed {
        super::checkpoint::check_signature(
            &self.alg,
            self.key_id.as_deref(),
            self.signature.as_deref(),
            || self.signed_bytes(),
            key,
        )
    }
}

/// A cut as `verify` uses it: hashes decoded.
#[derive(Debug, Clone)]
pub(crate) struct Bridge {
    pub(crate) first_seq: u64,
    pub(crate) last_seq: u64,
    pub(crate) previous_hash: Option<Hash>,
    pub(crate) last_hash: Hash,
    /// Which statement, for notes.
    pub(crate) line: usize,
}

/// What the `purges` file of a journal says, checked with `key`.
#[derive(Debug, Default)]
pub(crate) struct Purges {
    /// Cuts of statements whose signature is good enough (see the module docs).
    pub(crate) bridges: Vec<Bridge>,
    /// `(line, detail)` of statements refused: their cuts cover nothing.
    pub(crate) refused: Vec<(usize, String)>,
    /// Facts worth knowing (unsigned or unchecked statements).
    pub(crate) notes: Vec<String>,
}

/// The bytes of journal `dir`'s `purges` file; `None` when it has none (nothing purged).
fn purges_file(dir: &Path) -> Result<Option<Vec<u8>>, StoreError> {
    let path = dir.join(PURGES);
    match fs::read(&path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::io("read", &path, e)),
    }
}

/// Reads and checks the `purges` file of journal `id` in `dir` (none: nothing purged).
pub(crate) fn read_purges(
    dir: &Path,
    id: JournalId,
    key: Option<&TrustedKey>,
) -> Result<Purges, StoreError> {
    let Some(bytes) = purges_file(dir)? else {
        return Ok(Purges::default());
    };
    Ok(parse_purges(&bytes, id, key, PURGES, 0))
}

/// Whether journal `dir`'s purge statements explain why its first record is `first_seq`
/// (linked to the record before by `anchor`, its `previous_hash`): their cuts run from
/// record 0 (no `previous_hash`) to `first_seq - 1` without a gap, each linked to the one
/// before, the last ending with the record `anchor` names. Any other start is a deletion
/// (review of helper-116 H3: one purge anywhere before the run excused records deleted
/// after it). Signatures are `verify`'s to check.
pub(crate) fn start_purged(
    dir: &Path,
    first_seq: u64,
    anchor: Option<&str>,
) -> Result<bool, StoreError> {
    let Some(bytes) = purges_file(dir)? else {
        return Ok(false);
    };
    let mut cuts: Vec<Cut> = bytes
        .split(|&b| b == b'\n')
        .filter_map(|l| serde_json::from_slice::<PurgeStatement>(l).ok())
        .flat_map(|s| s.cuts)
        .collect();
    cuts.sort_by_key(|c| (c.first_seq, c.last_seq));
    let mut next = 0u64;
    let mut linked: Option<String> = None;
    for c in &cuts {
        if c.first_seq != next || c.last_seq < c.first_seq {
            continue;
        }
        if c.previous_hash != linked {
            return Ok(false);
        }
        next = c.last_seq + 1;
        linked = Some(c.last_hash.clone());
        if next == first_seq {
            return Ok(anchor.is_some() && linked.as_deref() == anchor);
        }
    }
    Ok(false)
}

/// The lines of journal `dir`'s `purges` file whose cuts touch `seqs` (whole lines that are
/// JSON; without their newline), for an export of those records ([`super::export`]).
pub(crate) fn purge_lines(
    dir: &Path,
    seqs: std::ops::RangeInclusive<u64>,
) -> Result<Vec<Vec<u8>>, StoreError> {
    let Some(bytes) = purges_file(dir)? else {
        return Ok(Vec::new());
    };
    Ok(bytes
        .split_inclusive(|&b| b == b'\n')
        .filter_map(|l| l.strip_suffix(b"\n"))
        .filter(|l| {
            serde_json::from_slice::<PurgeStatement>(l).is_ok_and(|s| {
                s.cuts
                    .iter()
                    .any(|c| c.first_seq <= *seqs.end() && c.last_seq >= *seqs.start())
            })
        })
        .map(<[u8]>::to_vec)
        .collect())
}

/// Checks purge statements (`bytes`: one per line) of journal `id` with `key`. `what` names
/// where they are in messages (the `purges` file, an export), and line numbers are counted
/// from `base + 1`.
pub(crate) fn parse_purges(
    bytes: &[u8],
    id: JournalId,
    key: Option<&TrustedKey>,
    what: &str,
    base: usize,
) -> Purges {
    let mut out = Purges::default();
    let complete = bytes.last() == Some(&b'\n');
    let lines: Vec<&[u8]> = bytes
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let count = lines.len();
    for (i, line) in lines.into_iter().enumerate() {
        let number = base + i + 1;
        let s: PurgeStatement = match serde_json::from_slice(line) {
            Ok(s) => s,
            Err(_) if i + 1 == count && !complete => {
                out.notes.push(format!(
                    "{what} line {number}: torn (a crash while it was written); nothing was removed after it"
                ));
                continue;
            }
            Err(e) => {
                out.refused.push((
                    number,
                    format!("{what} line {number} is not a purge statement ({e})"),
                ));
                continue;
            }
        };
        if s.kind != PURGE_TYPE || s.journal != id.to_string() {
            out.refused.push((
                number,
                format!(
                    "{what} line {number} is a statement of type {:?} for journal {}, not a purge of this journal",
                    s.kind, s.journal
                ),
            ));
            continue;
        }
        match (s.check(key), key.is_some()) {
            (Signed::Valid, _) => {}
            (Signed::Unsigned, true) => {
                out.refused.push((number, format!("the purge statement of {} ({what} line {number}) is unsigned while a public key is given: its cuts are not accepted", s.time)));
                continue;
            }
            (Signed::Unsigned, false) => out.notes.push(format!(
                "the purge statement of {} ({what} line {number}) is unsigned: it shows what retention removed, not that retention removed it",
                s.time
            )),
            (Signed::Unchecked, _) => out.notes.push(format!(
                "the purge statement of {} ({what} line {number}) is signed but not checked: give --public-key",
                s.time
            )),
            (Signed::OtherKey, _) => {
                out.refused.push((number, format!("the purge statement of {} ({what} line {number}) is signed by key {}, not by the given public key: its cuts are not accepted", s.time, s.key_id.as_deref().unwrap_or("?"))));
                continue;
            }
            (Signed::Invalid, _) => {
                out.refused.push((number, format!("the purge statement of {} ({what} line {number}): its signature does not verify (forged or changed): its cuts are not accepted", s.time)));
                continue;
            }
        }
        for c in &s.cuts {
            let previous = match &c.previous_hash {
                None => None,
                Some(text) => match parse_hex(text) {
                    Some(h) => Some(h),
                    None => {
                        out.refused.push((
                            number,
                            format!("{what} line {number}: a cut with a malformed previous_hash"),
                        ));
                        continue;
                    }
                },
            };
            let Some(last) = parse_hex(&c.last_hash).filter(|_| c.first_seq <= c.last_seq) else {
                out.refused
                    .push((number, format!("{what} line {number}: a malformed cut")));
                continue;
            };
            out.bridges.push(Bridge {
                first_seq: c.first_seq,
                last_seq: c.last_seq,
                previous_hash: previous,
                last_hash: last,
                line: number,
            });
        }
    }
    out
}

/// What one journal's purge did.
#[derive(Debug, Clone, Serialize)]
pub struct JournalPurge {
    /// The journal's id.
    pub journal: String,
    /// Events removed.
    pub events: u64,
    /// Bytes of records removed.
    pub bytes: u64,
    /// Segments removed whole.
    pub removed: Vec<u64>,
    /// Segments rewritten.
    pub rewritten: Vec<u64>,
    /// The journal's folder was removed (every record expired, writer stopped).
    pub journal_removed: bool,
    /// The oldest and newest time of the events removed.
    pub oldest: Option<String>,
    /// See `oldest`.
    pub newest: Option<String>,
    /// The cuts (boundary hashes).
    pub cuts: Vec<Cut>,
    /// The purge statement was signed.
    pub signed: bool,
}

impl JournalPurge {
    /// One line for the `configuration_change` event and the report.
    pub fn describe(&self) -> String {
        let segs = |v: &[u64]| v.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
        let mut parts = vec![format!(
            "journal {}: {} events ({} bytes)",
            self.journal, self.events, self.bytes
        )];
        if let (Some(o), Some(n)) = (&self.oldest, &self.newest) {
            parts.push(format!("from {o} to {n}"));
        }
        if self.journal_removed {
            parts.push("journal removed".into());
        }
        if !self.removed.is_empty() {
            parts.push(format!("segments removed [{}]", segs(&self.removed)));
        }
        if !self.rewritten.is_empty() {
            parts.push(format!("segments rewritten [{}]", segs(&self.rewritten)));
        }
        // Bounded (a store of interleaved tags has a cut per event): the first cuts and the
        // last; every cut is in the journal's purge statement.
        let shown = self
            .cuts
            .iter()
            .enumerate()
            .filter(|(i, _)| *i < MAX_CUTS_SHOWN || *i + 1 == self.cuts.len());
        let mut cuts: Vec<String> = shown
            .map(|(_, c)| {
                format!(
                    "seq {}..{} (previous_hash {}, last hash {})",
                    c.first_seq,
                    c.last_seq,
                    c.previous_hash.as_deref().unwrap_or("null"),
                    c.last_hash
                )
            })
            .collect();
        if self.cuts.len() > MAX_CUTS_SHOWN + 1 {
            let last = cuts.pop().unwrap_or_default();
            cuts.push(format!(
                "… {} more in the journal's {PURGES} file …",
                self.cuts.len() - MAX_CUTS_SHOWN - 1
            ));
            cuts.push(last);
        }
        if !cuts.is_empty() {
            parts.push(format!("{} cuts: {}", self.cuts.len(), cuts.join("; ")));
        }
        parts.push(if self.signed {
            "purge statement signed".into()
        } else {
            "purge statement unsigned".into()
        });
        parts.join(", ")
    }
}

/// Cuts named one by one in a purge's description (the event stays bounded).
const MAX_CUTS_SHOWN: usize = 5;

/// What [`apply`] did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Applied {
    /// Per journal changed.
    pub journals: Vec<JournalPurge>,
    /// Expired events kept (held segments: a running writer's newest, damaged, legacy).
    pub held: u64,
}

impl Applied {
    /// Events removed.
    pub fn events(&self) -> u64 {
        self.journals.iter().map(|j| j.events).sum()
    }
}

/// Removes every expired record of the store whose index `holder` holds (caught up first),
/// journal by journal (see the module docs); `progress(events)` is told the records removed
/// so far. A journal whose checkpoints are signed is only purged with a `signer` (else its
/// purge statement would be refused by `verify`): it is an error.
pub fn apply(
    holder: &mut IndexHolder,
    periods: &Periods,
    signer: Option<&Arc<Signer>>,
    now: SystemTime,
    progress: &mut dyn FnMut(u64),
) -> Result<Applied, StoreError> {
    let done = holder.catch_up()?;
    if let Some(e) = done.errors.into_iter().next() {
        return Err(e);
    }
    holder.persist()?;
    let journal_root = holder.journal_root();
    let mut out = Applied::default();
    let mut removed_so_far = 0u64;
    for id in journals::list(&journal_root)? {
        let plan = plan_journal(&journal_root, id, periods, now, true)?;
        out.held += plan
            .segments
            .iter()
            .filter(|s| matches!(s.action, Action::Held(_)))
            .map(|s| s.expired)
            .sum::<u64>();
        if !plan.has_work() {
            continue;
        }
        if signer.is_none() && signed_checkpoints(&id.dir(&journal_root))? {
            return Err(StoreError::io(
                "purge",
                &id.dir(&journal_root),
                std::io::Error::other(
                    "its checkpoints are signed, and no audit.signing_key_file is configured to sign the purge statement (verify would refuse it)\n  hint: run retention with the config that names the signing key",
                ),
            ));
        }
        let purge = apply_journal(holder, &journal_root, &plan, signer, now, &mut |n| {
            progress(removed_so_far + n)
        })?;
        removed_so_far += purge.events;
        progress(removed_so_far);
        out.journals.push(purge);
    }
    holder.persist()?;
    Ok(out)
}

/// Whether any checkpoint of the journal in `dir` is signed.
fn signed_checkpoints(dir: &Path) -> Result<bool, StoreError> {
    Ok(super::checkpoint::read(dir)?
        .iter()
        .any(|l| l.statement.as_ref().is_ok_and(|s| s.alg != "none")))
}

fn apply_journal(
    holder: &mut IndexHolder,
    journal_root: &Path,
    plan: &JournalPlan,
    signer: Option<&Arc<Signer>>,
    now: SystemTime,
    progress: &mut dyn FnMut(u64),
) -> Result<JournalPurge, StoreError> {
    let dir = plan.id.dir(journal_root);
    let removed: Vec<u64> = plan
        .segments
        .iter()
        .filter(|s| s.action == Action::Remove)
        .map(|s| s.segment)
        .collect();
    let rewritten: Vec<u64> = plan
        .segments
        .iter()
        .filter(|s| s.action == Action::Rewrite)
        .map(|s| s.segment)
        .collect();
    // 1. The statement, durable before anything goes.
    let mut statement = PurgeStatement {
        kind: PURGE_TYPE.into(),
        journal: plan.journal.clone(),
        time: rfc3339(now),
        cuts: plan.cuts.clone(),
        removed: removed.clone(),
        rewritten: rewritten.clone(),
        alg: "none".into(),
        key_id: None,
        signature: None,
    };
    if let Some(s) = signer {
        statement.sign(s);
    }
    let mut line = super::canonical::to_canonical(&statement);
    line.push(b'\n');
    let path = dir.join(PURGES);
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| {
            f.write_all(&line)?;
            f.sync_all()
        })
        .map_err(|e| StoreError::io("append a purge statement to", &path, e))?;
    journal::sync_dir(&dir)?;

    // 2. The index: purged events dropped, kept records of rewritten segments moved.
    let mut purged = BTreeSet::new();
    let mut moved = HashMap::new();
    // Per rewritten segment: old record end → new record end, for the saved positions.
    let mut remap: HashMap<u64, Vec<(u64, u64)>> = HashMap::new();
    let mut bytes = 0u64;
    let (mut oldest, mut newest): (Option<SystemTime>, Option<SystemTime>) = (None, None);
    for seg in &plan.segments {
        if !matches!(seg.action, Action::Remove | Action::Rewrite) {
            continue;
        }
        let mut at = HEADER_LEN;
        let ends = remap.entry(seg.segment).or_default();
        for r in &seg.records {
            let size = RECORD_HEADER_LEN + u64::from(r.len);
            if r.expired {
                purged.insert(r.id);
                bytes += size;
                oldest = Some(oldest.map_or(r.time, |o| o.min(r.time)));
                newest = Some(newest.map_or(r.time, |o| o.max(r.time)));
            } else {
                moved.insert(
                    r.id,
                    RecordRef {
                        segment: seg.segment,
                        offset: at,
                        len: r.len,
                    },
                );
                at += size;
            }
            ends.push((r.offset + size, at));
        }
    }
    super::index::forget(&holder.index, plan.id, &purged, &moved)?;
    holder.index.flush()?;

    // 3. The files.
    let mut done = 0;
    for seg in &plan.segments {
        match seg.action {
            Action::Remove if !plan.remove_journal => {
                let p = journal::segment_path(&dir, seg.segment);
                fs::remove_file(&p).map_err(|e| StoreError::io("remove", &p, e))?;
            }
            Action::Rewrite => rewrite(&dir, seg)?,
            _ => continue,
        }
        done += seg.expired;
        progress(done);
    }
    if plan.remove_journal {
        // Held while the folder goes: no writer can ever come back to it.
        let lock = journals::try_lock(journal_root, plan.id)?;
        fs::remove_dir_all(&dir).map_err(|e| StoreError::io("remove", &dir, e))?;
        drop(lock);
        journal::sync_dir(journal_root)?;
    } else {
        journal::sync_dir(&dir)?;
    }

    // 4. The positions. One past the last segment left (its newest segments were removed)
    // would look ahead of the journal: it moves to the end of the last segment left.
    let last_left = match plan.remove_journal || journal::list_segments(&dir)?.is_empty() {
        true => None,
        false => Some(journal::end_of(&dir)?),
    };
    holder.purged(plan.id, plan.remove_journal, |pos| {
        if let Some(end) = last_left
            && pos.segment > end.segment
        {
            return end;
        }
        match remap.get(&pos.segment) {
            // The position is the end of a whole record: the end of the kept records before it.
            Some(ends) => {
                let new = ends
                    .iter()
                    .take_while(|(old, _)| *old <= pos.offset)
                    .last()
                    .map_or(HEADER_LEN, |(_, new)| *new);
                JournalPos {
                    segment: pos.segment,
                    offset: new,
                }
            }
            None => pos,
        }
    })?;
    holder.index.flush()?;

    Ok(JournalPurge {
        journal: plan.journal.clone(),
        events: purged.len() as u64,
        bytes,
        removed,
        rewritten,
        journal_removed: plan.remove_journal,
        oldest: oldest.map(rfc3339),
        newest: newest.map(rfc3339),
        cuts: plan.cuts.clone(),
        signed: signer.is_some(),
    })
}

/// Rewrites segment `seg` of `dir` with only its records that have not expired, their bytes
/// unchanged: written beside it, synced, renamed over it.
fn rewrite(dir: &Path, seg: &SegmentPlan) -> Result<(), StoreError> {
    let path = journal::segment_path(dir, seg.segment);
    let bytes = fs::read(&path).map_err(|e| StoreError::io("read", &path, e))?;
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(&bytes[..HEADER_LEN as usize]);
    for r in seg.records.iter().filter(|r| !r.expired) {
        let start = r.offset as usize;
        let end = start + RECORD_HEADER_LEN as usize + r.len as usize;
        let Some(record) = bytes.get(start..end) else {
            return Err(StoreError::BadRecord {
                path,
                offset: r.offset,
                reason: "the segment changed while retention read it".into(),
            });
        };
        out.extend_from_slice(record);
    }
    let tmp: PathBuf = dir.join(format!("{:020}.journal.rewrite", seg.segment));
    File::create(&tmp)
        .and_then(|mut f| {
            f.write_all(&out)?;
            f.sync_all()
        })
        .map_err(|e| StoreError::io("write", &tmp, e))?;
    fs::rename(&tmp, &path).map_err(|e| StoreError::io("rename into place", &tmp, e))?;
    Ok(())
}

/// Takes the store lock and the index for [`apply`] (stopped writers' torn tails are cut, as a
/// writer taking the index does); `Ok(None)` when another process holds the index.
pub fn open_for_apply(root: &Path) -> Result<Option<(IndexHolder, super::StoreLock)>, StoreError> {
    let paths = StorePaths::new(root);
    let lock =
        super::store_lock(&paths, super::Access::Write)?.ok_or_else(|| StoreError::Locked {
            path: root.to_path_buf(),
        })?;
    Ok(IndexHolder::take(&paths, None, true, false)?.map(|(h, _)| (h, lock)))
}

/// The `configuration_change` event that records a purge: what went (journals, segments,
/// event counts, time range, boundary hashes) in `metadata.changes`, the periods in
/// `metadata.reason`. Written by whoever ran retention (the `retention` command's own journal,
/// or the gateway's).
pub fn purge_event(
    applied: &Applied,
    periods: &Periods,
    user_id: &str,
    session_id: &str,
    upstream: &str,
    (event_id, timestamp): (EventId, SystemTime),
) -> AuditEvent {
    let mut changes: Vec<String> = applied
        .journals
        .iter()
        .map(JournalPurge::describe)
        .collect();
    changes.push(format!(
        "retention removed {} expired events from {} journals; {} expired events kept (a running writer's newest segment, damaged or legacy segments)",
        applied.events(),
        applied.journals.len(),
        applied.held
    ));
    AuditEvent {
        event_id,
        timestamp,
        event_type: EventType::ConfigurationChange,
        user_id: user_id.into(),
        tool_name: None,
        action: "retention/apply".into(),
        result: Outcome::Success,
        metadata: Metadata {
            changes,
            reason: Some(format!("retention periods: {}", periods.describe())),
            ..Metadata::default()
        },
        risk_level: RiskLevel::Low,
        compliance_tags: Vec::new(),
        session_id: session_id.into(),
        upstream: upstream.into(),
        linked_event_id: None,
    }
}

/// A request to the index holder of a gateway to apply retention (see [`DailyRetention`]).
#[derive(Debug)]
pub struct Request {
    /// The periods to apply.
    pub periods: Periods,
    /// Signs the purge statements.
    pub signer: Option<Arc<Signer>>,
    /// Where the outcome goes.
    pub reply: tokio::sync::oneshot::Sender<Result<Applied, StoreError>>,
}

/// The gateway's side of daily retention: requests go to its indexer thread, the one that
/// holds the index (retention changes the index, so only its holder may run it).
#[derive(Debug, Clone)]
pub struct DailyRetention(std::sync::mpsc::Sender<Request>);

impl DailyRetention {
    /// A handle, and the receiving end for [`super::IndexKeeper::serve_retention`].
    pub fn channel() -> (DailyRetention, std::sync::mpsc::Receiver<Request>) {
        let (tx, rx) = std::sync::mpsc::channel();
        (DailyRetention(tx), rx)
    }

    /// Asks the indexer to apply retention now; the answer comes when it has (an
    /// [`StoreError::IndexBusy`] when another process holds the index).
    pub async fn run(
        &self,
        periods: Periods,
        signer: Option<Arc<Signer>>,
    ) -> Option<Result<Applied, StoreError>> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.0
            .send(Request {
                periods,
                signer,
                reply,
            })
            .ok()?;
        rx.await.ok()
    }
}

/// Serves the request waiting on `rx`, if one is, with the index `holder` holds (`None`: not
/// held); whether one was served (retention may have moved records: see [`super::handoff`]).
pub(crate) fn serve(
    rx: &std::sync::mpsc::Receiver<Request>,
    holder: Option<&mut IndexHolder>,
    root: &Path,
) -> bool {
    let Ok(req) = rx.try_recv() else {
        return false;
    };
    let result = match holder {
        Some(h) => apply(
            h,
            &req.periods,
            req.signer.as_ref(),
            SystemTime::now(),
            &mut |_| {},
        ),
        None => Err(StoreError::IndexBusy {
            path: root.to_path_buf(),
        }),
    };
    let _ = req.reply.send(result);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_join_consecutive_expired_records_across_segments() {
        let rec = |seq: u64, expired: bool| Rec {
            offset: 0,
            len: 1,
            seq: Some(seq),
            previous_hash: (seq > 0).then(|| [seq as u8 - 1; 32]),
            hash: [seq as u8; 32],
            id: u128::from(seq),
            time: SystemTime::UNIX_EPOCH,
            expired,
        };
        let seg = |n: u64, action: Action, records: Vec<Rec>| SegmentPlan {
            segment: n,
            events: records.len() as u64,
            bytes: 0,
            oldest: None,
            newest: None,
            tags: BTreeSet::new(),
            expired: records.iter().filter(|r| r.expired).count() as u64,
            expired_bytes: 0,
            action,
            records,
        };
        let segments = vec![
            seg(1, Action::Remove, vec![rec(0, true), rec(1, true)]),
            seg(
                2,
                Action::Rewrite,
                vec![rec(2, true), rec(3, false), rec(4, true)],
            ),
            seg(3, Action::Held(Held::Live), vec![rec(5, true)]),
        ];
        let cuts = cuts_of(&segments);
        assert_eq!(cuts.len(), 2, "{cuts:?}");
        assert_eq!((cuts[0].first_seq, cuts[0].last_seq), (0, 2));
        assert_eq!(cuts[0].previous_hash, None);
        assert_eq!(cuts[0].last_hash, hex(&[2; 32]));
        assert_eq!((cuts[1].first_seq, cuts[1].last_seq), (4, 4));
        assert_eq!(cuts[1].previous_hash, Some(hex(&[3; 32])));
    }

    #[test]
    fn a_purge_description_names_the_first_and_last_cuts_and_counts_the_rest() {
        let cut = |n: u64| Cut {
            first_seq: 2 * n,
            last_seq: 2 * n,
            previous_hash: Some(hex(&[(n % 100) as u8; 32])),
            last_hash: hex(&[(n % 100) as u8 + 100; 32]),
        };
        let purge = JournalPurge {
            journal: "J".into(),
            events: 1000,
            bytes: 1,
            removed: vec![],
            rewritten: vec![3],
            journal_removed: false,
            oldest: None,
            newest: None,
            cuts: (0..1000).map(cut).collect(),
            signed: true,
        };
        let text = purge.describe();
        assert!(text.contains("1000 cuts: seq 0..0"), "{text}");
        assert!(text.contains("seq 8..8"), "{text}");
        assert!(!text.contains("seq 10..10 "), "{text}");
        assert!(
            text.contains("… 994 more in the journal's purges file …"),
            "{text}"
        );
        assert!(text.contains("seq 1998..1998"), "{text}");
        assert!(text.len() < 2000, "{}", text.len());
    }

    #[test]
    fn expiry_takes_the_longest_period_and_forever_never_expires() {
        let p = Periods::defaults();
        let now = SystemTime::UNIX_EPOCH + YEAR * 30;
        let two_years_ago = now - YEAR * 2;
        assert!(p.expired(two_years_ago, ["pci_dss"], now));
        assert!(!p.expired(two_years_ago, ["pci_dss", "gdpr"], now));
        assert!(p.expired(two_years_ago, std::iter::empty(), now));
        assert!(!p.expired(now - YEAR / 2, std::iter::empty(), now));
        let forever = Periods {
            tags: BTreeMap::new(),
            untagged: Keep::Forever,
        };
        assert!(!forever.expired(SystemTime::UNIX_EPOCH, ["x"], now));
        assert_eq!(p.describe(), "gdpr 7y, hipaa 6y, pci_dss 1y, untagged 1y");
    }
}
