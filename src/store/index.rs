//! The query side of the store: sled maps every event id to its record in a journal (with a
//! few bytes of the event's fields), keeps posting lists by field value, the access→end links
//! and, per journal, the position up to which that journal is applied; fed from the journals
//! by the index holder.
//!
//! # Trees
//!
//! ```text
//! events    newest ULID (16) ‖ oldest ULID (16)
//!                                  -> per event, ascending: ULID (16) ‖ journal (16) ‖
//!                                     record (20) ‖ attributes (23, below)
//! postings  field (1) ‖ len (2) ‖ value ‖ last ULID (16) ‖ first ULID (16)
//!                                  -> the ULIDs (16 each, ascending) of that value's events
//! counts    field (1) ‖ len (2) ‖ value -> events staged with it (u64, big-endian; an
//!                                  estimate: re-applied records count again)
//! links     access ULID -> its first end's ULID
//! meta      "format" -> FORMAT_VERSION; "applied/" ‖ journal -> position applied up to;
//!           "finished/" ‖ journal -> its end, once a stopped journal is applied to its end
//! ```
//!
//! Fields indexed (one byte each): user, tool, session, event type, risk level, compliance
//! tag (one entry per tag), result, upstream; values as the event JSON spells them.
//!
//! # Why posting lists and not one key per event and field
//!
//! Indexing runs beside the calls on the same cores; sled's cost is per insert (copy-on-write
//! nodes), and opening sled costs per node (its page table is rebuilt at every open, and a
//! leaf holds at most 16 entries). One key per event and field would be eight to ten inserts
//! per event and a node per two events. Instead the holder gathers, in memory, up to a second
//! of records ([`Pending`]) and writes one chunk of event entries and one posting per field
//! value: the inserts are shared by every event of that second. Nobody reads the index
//! between (it is held by one process, and written before each query, flush and save of
//! positions).
//!
//! A chunk or posting spans at most [`MAX_SPAN_MS`] of event time and a bounded number of
//! entries ([`MAX_CHUNK_EVENTS`], [`MAX_POSTING_IDS`], so that a sled node stays below the
//! size sled moves to a file of its own): keyed by its newest id, a newest-first walk merges
//! them in key order and knows no unread one holds an id newer than the next key; a time
//! range starts its walk at `until + MAX_SPAN_MS`, and an id is looked up among the chunks
//! whose newest id is within `MAX_SPAN_MS` after it ([`super::query`]).
//!
//! The attributes in `events` let a query check every other filter of a candidate from the
//! index alone: type, result and risk codes (positions in `EventType::ALL`, `Outcome::ALL`,
//! `RiskLevel::ALL`), a 32-bit mask of the compliance tags and 32-bit FNV-1a hashes of user,
//! tool, session and upstream. A hash or mask match is confirmed on the decoded event, so a
//! collision costs one journal read, never a wrong answer.
//!
//! sled holds references, not second copies: the journal stays the one place an event's
//! content lives (one copy to retain, protect and, later, erase), and sled's nodes stay small.
//! Everything here can be rebuilt from the journals. Applying a record twice is harmless:
//! `links` is keyed by event id, and a chunk or posting applied twice holds an id twice,
//! which a query's merge returns once.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::StoreError;
use super::journal::{self, JournalPos, RecordRef};
use super::journals::JournalId;
use crate::audit::event::{AuditEvent, EventId, EventType, Outcome, RiskLevel};

/// Bumped when the index layout changes; a mismatch triggers a rebuild from the journal.
/// 4: records are referred to with their journal (one journal per writing process).
/// 5: chunks of event entries with attributes, posting lists by eight fields, counts.
pub(crate) const FORMAT_VERSION: u32 = 5;
/// Followed by a journal id: the position up to which that journal is applied.
const APPLIED_PREFIX: &[u8] = b"applied/";
/// Followed by a journal id: that journal's writer has stopped and every record is applied.
const FINISHED_PREFIX: &[u8] = b"finished/";
const KEY_FORMAT: &[u8] = b"format";

/// The longest stretch of event time one posting covers, in milliseconds.
pub const MAX_SPAN_MS: u64 = 10 * 60 * 1000;
/// The most ids one posting holds (4 KiB of ids).
pub const MAX_POSTING_IDS: usize = 256;
/// The most event entries one chunk holds (75 bytes each).
pub const MAX_CHUNK_EVENTS: usize = 64;
/// Bytes of one entry in an `events` chunk: id and value.
pub const CHUNK_ENTRY_LEN: usize = 16 + EVENT_VALUE_LEN;
/// Staged records after which the holder writes them without waiting for its next save.
pub const WRITE_EVERY: usize = 8192;

/// The fields with posting lists; the byte starts their keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Field {
    /// `user_id`.
    User = 1,
    /// `tool_name` (events without one have no entry).
    Tool = 2,
    /// `session_id`.
    Session = 3,
    /// `event_type`.
    Type = 4,
    /// `risk_level`.
    Risk = 5,
    /// Each of `compliance_tags`.
    Tag = 6,
    /// `result`.
    Result = 7,
    /// `upstream`.
    Upstream = 8,
}

/// Writes `field ‖ len ‖ value` into `out` (cleared first): a posting key's prefix.
pub(crate) fn value_prefix(out: &mut Vec<u8>, field: Field, value: &str) {
    out.clear();
    out.push(field as u8);
    // Values longer than 64 KiB are cut: they still sort and match by their first 64 KiB, and
    // the decoded event is checked against the filter anyway.
    let bytes = &value.as_bytes()[..value.len().min(u16::MAX as usize)];
    out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// A stable 32-bit hash (FNV-1a) of a field value, kept in the index: it must not change
/// between builds, which rules out std's hasher.
pub(crate) fn fnv(value: &str) -> u32 {
    value.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// The bit of a compliance tag in an event's 32-bit tag mask.
pub(crate) fn tag_bit(tag: &str) -> u32 {
    1 << (fnv(tag) % 32)
}

/// The code of `v`: its position in `all`.
pub(crate) fn code<T: PartialEq>(all: &[T], v: &T) -> u8 {
    all.iter().position(|x| x == v).unwrap_or(u8::MAX as usize) as u8
}

/// Bytes of a record reference in `events`: journal (16) and record (20).
const REF_LEN: usize = 36;
/// Bytes of an `events` value: reference and attributes.
pub(crate) const EVENT_VALUE_LEN: usize = REF_LEN + 3 + 4 * 5;

/// What `events` keeps of an event besides where it is: enough to check a filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Attrs {
    pub(crate) event_type: u8,
    pub(crate) result: u8,
    pub(crate) risk: u8,
    pub(crate) tags: u32,
    pub(crate) user: u32,
    /// 0 for an event without a tool name.
    pub(crate) tool: u32,
    pub(crate) session: u32,
    pub(crate) upstream: u32,
}

impl Attrs {
    pub(crate) fn from_value(v: &[u8]) -> Option<Attrs> {
        if v.len() != EVENT_VALUE_LEN {
            return None;
        }
        let a = &v[REF_LEN..];
        let word = |i: usize| u32::from_be_bytes([a[i], a[i + 1], a[i + 2], a[i + 3]]);
        Some(Attrs {
            event_type: a[0],
            result: a[1],
            risk: a[2],
            tags: word(3),
            user: word(7),
            tool: word(11),
            session: word(15),
            upstream: word(19),
        })
    }
}

fn event_value(journal: JournalId, record: RecordRef, a: &Attrs) -> [u8; EVENT_VALUE_LEN] {
    let mut out = [0u8; EVENT_VALUE_LEN];
    out[..16].copy_from_slice(&journal.to_bytes());
    out[16..REF_LEN].copy_from_slice(&record.to_bytes());
    let rest = &mut out[REF_LEN..];
    rest[0] = a.event_type;
    rest[1] = a.result;
    rest[2] = a.risk;
    for (i, w) in [a.tags, a.user, a.tool, a.session, a.upstream]
        .into_iter()
        .enumerate()
    {
        rest[3 + 4 * i..7 + 4 * i].copy_from_slice(&w.to_be_bytes());
    }
    out
}

pub(crate) fn record_from_value(bytes: &[u8]) -> Option<(JournalId, RecordRef)> {
    if bytes.len() != EVENT_VALUE_LEN {
        return None;
    }
    Some((
        JournalId::from_bytes(&bytes[..16])?,
        RecordRef::from_bytes(&bytes[16..REF_LEN])?,
    ))
}

fn applied_key(journal: JournalId) -> Vec<u8> {
    [APPLIED_PREFIX, &journal.to_bytes()[..]].concat()
}

fn finished_key(journal: JournalId) -> Vec<u8> {
    [FINISHED_PREFIX, &journal.to_bytes()[..]].concat()
}

/// The fields an index entry needs, read without decoding the whole event ([`Index::stage`]),
/// or taken from the event the writer has just appended ([`super::handoff`]; then owned).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct Keys<'a> {
    pub(crate) event_id: EventId,
    pub(crate) event_type: EventType,
    #[serde(borrow)]
    pub(crate) user_id: Cow<'a, str>,
    #[serde(borrow, default)]
    pub(crate) tool_name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(crate) session_id: Cow<'a, str>,
    #[serde(default)]
    pub(crate) linked_event_id: Option<EventId>,
    pub(crate) result: Outcome,
    pub(crate) risk_level: RiskLevel,
    #[serde(borrow, default)]
    pub(crate) compliance_tags: Vec<Cow<'a, str>>,
    #[serde(borrow)]
    pub(crate) upstream: Cow<'a, str>,
}

impl Keys<'static> {
    /// The keys of `event` as written to the journal (after its personal fields were sealed:
    /// `user_id` is then the pseudonym), its strings moved out: the writer calls this once the
    /// event is serialized and no longer needed.
    pub(crate) fn take(event: &mut AuditEvent) -> Keys<'static> {
        Keys {
            event_id: event.event_id,
            event_type: event.event_type,
            user_id: Cow::Owned(std::mem::take(&mut event.user_id)),
            tool_name: event.tool_name.take().map(Cow::Owned),
            session_id: Cow::Owned(std::mem::take(&mut event.session_id)),
            linked_event_id: event.linked_event_id,
            result: event.result,
            risk_level: event.risk_level,
            compliance_tags: std::mem::take(&mut event.compliance_tags)
                .into_iter()
                .map(Cow::Owned)
                .collect(),
            upstream: Cow::Owned(std::mem::take(&mut event.upstream)),
        }
    }
}

/// Index entries staged from journal records ([`Index::stage`]) and not yet written
/// ([`Index::write`]); the holder keeps one across catch-ups (see the module docs).
#[derive(Default)]
pub struct Pending {
    /// Event id -> where its record is and its attributes.
    events: Vec<(u128, [u8; EVENT_VALUE_LEN])>,
    /// Value prefix (`field ‖ len ‖ value`) -> the ids staged with it (big-endian ULIDs).
    postings: HashMap<Box<[u8]>, Vec<u128>>,
    /// Access event key -> its first end's key.
    links: HashMap<[u8; 16], [u8; 16]>,
    staged: usize,
    /// Reused for each posting prefix, so staging allocates only for a value new in this batch.
    scratch: Vec<u8>,
}

impl Pending {
    /// Whether nothing is staged.
    pub fn is_empty(&self) -> bool {
        self.staged == 0
    }

    /// How many records are staged.
    pub fn len(&self) -> usize {
        self.staged
    }

    fn post(&mut self, field: Field, value: &str, id: u128) {
        value_prefix(&mut self.scratch, field, value);
        match self.postings.get_mut(self.scratch.as_slice()) {
            Some(ids) => ids.push(id),
            None => {
                self.postings
                    .insert(self.scratch.as_slice().into(), vec![id]);
            }
        }
    }
}

/// The sled database holding event references, postings and links.
pub struct Index {
    path: PathBuf,
    journal_root: PathBuf,
    /// Opens the personal fields of the events read.
    keys: super::personal::Keyring,
    pub(crate) db: sled::Db,
    pub(crate) events: sled::Tree,
    pub(crate) postings: sled::Tree,
    pub(crate) counts: sled::Tree,
    pub(crate) links: sled::Tree,
    pub(crate) meta: sled::Tree,
    /// Which accesses have a link without asking `links` (see [`LinkWatch`]).
    watch: std::sync::Mutex<LinkWatch>,
}

/// What the index knows of `links` without reading it: no access above `floor` is linked
/// except those in `linked`, all linked by this index since it was opened. Why: every end
/// event asked sled whether its access was linked already (an eighth of the indexer's time),
/// and nearly every access is newer than every link when its end comes. Links are keyed by
/// the access's id and only [`Index::write`] adds them, so at open `floor` is the largest
/// key; after each write the set is emptied and `floor` raised to its largest id (those are
/// in the tree now, and asked for again like any older access). An access at or below
/// `floor` is looked up in the tree as before. After a failed write or a `forget`, `floor`
/// starts again from the tree's largest key (the top if the tree cannot be read).
#[derive(Debug, Default)]
struct LinkWatch {
    floor: u128,
    linked: std::collections::HashSet<u128>,
}

impl LinkWatch {
    /// `Some(true)` if `access` has no link yet (noted as linked now: the caller links it),
    /// `Some(false)` if this index linked it already, `None` if only the tree knows.
    fn claim(&mut self, access: u128) -> Option<bool> {
        (access > self.floor).then(|| self.linked.insert(access))
    }

    /// After a write: everything claimed is in the tree.
    fn written(&mut self) {
        if let Some(&top) = self.linked.iter().max() {
            self.floor = self.floor.max(top);
        }
        self.linked.clear();
    }

    /// Starts again from the tree's largest key `last` (`None`: unreadable, nothing known),
    /// after a failed write (what was claimed may be missing from the tree: claimable again)
    /// or links removed by `forget` (`claimed_written`: what was claimed and is still linked
    /// is at or below the larger of `last` and the claims, and is looked up there).
    fn rebase(&mut self, last: Option<u128>, claimed_written: bool) {
        let claimed = self
            .linked
            .iter()
            .max()
            .copied()
            .filter(|_| claimed_written);
        self.floor = last.map_or(u128::MAX, |l| l.max(claimed.unwrap_or(0)));
        self.linked.clear();
    }
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index").field("path", &self.path).finish()
    }
}

impl Index {
    /// Forgets the users' keys removed since they were read, before a long-lived holder
    /// answers a query ([`super::personal::Keyring::refresh`]).
    pub fn refresh_keys(&self) -> Result<(), StoreError> {
        Ok(self.keys.refresh()?)
    }
}

/// The ULID's time in milliseconds since the epoch.
pub(crate) fn id_ms(id: u128) -> u64 {
    (id >> 80) as u64
}

/// The largest id of the millisecond [`MAX_SPAN_MS`] after `id`'s (the newest id a chunk or
/// posting holding `id` can have).
pub(crate) fn span_after(id: u128) -> u128 {
    if id == u128::MAX {
        return u128::MAX;
    }
    let ms = id_ms(id).saturating_add(MAX_SPAN_MS).min((1 << 48) - 1);
    (u128::from(ms) << 80) | ((1u128 << 80) - 1)
}

/// Splits `items`, sorted by id without repeats, into chunks or postings: runs of at most
/// [`MAX_SPAN_MS`] and `max` items.
fn runs<T>(items: &[T], id: impl Fn(&T) -> u128, max: usize) -> impl Iterator<Item = &[T]> {
    let mut rest = items;
    std::iter::from_fn(move || {
        let first = id(rest.first()?);
        let n = rest
            .iter()
            .take(max)
            .take_while(|&x| id_ms(id(x)) - id_ms(first) <= MAX_SPAN_MS)
            .count();
        let (run, after) = rest.split_at(n);
        rest = after;
        Some(run)
    })
}

impl Index {
    /// Opens (or creates) the index at `path`, for the journals under `journal_root`. Only the
    /// process holding the store's index lock may (sled allows one process).
    pub fn open(path: &Path, journal_root: &Path) -> Result<Index, StoreError> {
        let err = |source| StoreError::Index {
            path: path.to_path_buf(),
            source,
        };
        let db = sled::Config::new()
            .path(path)
            .mode(sled::Mode::HighThroughput)
            // No timed background flushes competing with the calls: the journal is the durable
            // record, the index is flushed when the indexer stops and caught up on start.
            .flush_every_ms(None)
            .open()
            .map_err(err)?;
        let tree = |name: &str| db.open_tree(name).map_err(err);
        let index = Index {
            events: tree("events")?,
            postings: tree("postings")?,
            counts: tree("counts")?,
            links: tree("links")?,
            meta: tree("meta")?,
            watch: Default::default(),
            db,
            path: path.to_path_buf(),
            journal_root: journal_root.to_path_buf(),
            keys: super::personal::Keyring::for_journals(journal_root),
        };
        // The largest access linked so far (see `LinkWatch`).
        index.watch().rebase(index.last_link(), false);
        Ok(index)
    }

    pub(crate) fn err(&self, source: sled::Error) -> StoreError {
        StoreError::Index {
            path: self.path.clone(),
            source,
        }
    }

    /// Whether this index was written by this layout version (an empty index counts as fresh).
    pub fn format_ok(&self) -> Result<bool, StoreError> {
        match self.meta.get(KEY_FORMAT).map_err(|e| self.err(e))? {
            Some(v) => Ok(v.as_ref() == FORMAT_VERSION.to_be_bytes()),
            None => Ok(self.events.is_empty()),
        }
    }

    /// The position up to which `journal`'s records are applied, as last saved.
    pub fn applied(&self, journal: JournalId) -> Result<Option<JournalPos>, StoreError> {
        Ok(self
            .meta
            .get(applied_key(journal))
            .map_err(|e| self.err(e))?
            .and_then(|v| JournalPos::from_bytes(&v)))
    }

    /// Every journal the index has applied records of, with its saved position.
    pub fn positions(&self) -> Result<Vec<(JournalId, JournalPos)>, StoreError> {
        let mut out = Vec::new();
        for kv in self.meta.scan_prefix(APPLIED_PREFIX) {
            let (k, v) = kv.map_err(|e| self.err(e))?;
            if let (Some(id), Some(pos)) = (
                JournalId::from_bytes(&k[APPLIED_PREFIX.len()..]),
                JournalPos::from_bytes(&v),
            ) {
                out.push((id, pos));
            }
        }
        Ok(out)
    }

    /// Stages the index entries of one record (event JSON) of `journal` that ends at `end`;
    /// [`Index::write`] writes them.
    pub fn stage(
        &self,
        pending: &mut Pending,
        journal: JournalId,
        end: JournalPos,
        payload: &[u8],
    ) -> Result<(), StoreError> {
        let keys: Keys = serde_json::from_slice(payload)
            .map_err(|source| StoreError::Decode { at: end, source })?;
        self.stage_keys(
            pending,
            journal,
            RecordRef::ending_at(end, payload.len()),
            &keys,
        )
    }

    /// [`Index::stage`] of a record whose keys are known already: `record` is where it lies
    /// in `journal`. The one place entries are made, so that a record staged from its bytes
    /// and from the keys the writer handed on ([`super::handoff`]) gives the same entries.
    pub(crate) fn stage_keys(
        &self,
        pending: &mut Pending,
        journal: JournalId,
        record: RecordRef,
        keys: &Keys<'_>,
    ) -> Result<(), StoreError> {
        let id = keys.event_id;
        let key = id.to_key();
        let n = u128::from_be_bytes(key);
        let attrs = Attrs {
            event_type: code(&EventType::ALL, &keys.event_type),
            result: code(&Outcome::ALL, &keys.result),
            risk: code(&RiskLevel::ALL, &keys.risk_level),
            tags: keys.compliance_tags.iter().fold(0, |m, t| m | tag_bit(t)),
            user: fnv(&keys.user_id),
            tool: keys.tool_name.as_deref().map_or(0, fnv),
            session: fnv(&keys.session_id),
            upstream: fnv(&keys.upstream),
        };
        pending
            .events
            .push((n, event_value(journal, record, &attrs)));
        pending.post(Field::User, &keys.user_id, n);
        if let Some(tool) = &keys.tool_name {
            pending.post(Field::Tool, tool, n);
        }
        pending.post(Field::Session, &keys.session_id, n);
        pending.post(Field::Type, keys.event_type.as_str(), n);
        pending.post(Field::Risk, keys.risk_level.as_str(), n);
        for tag in &keys.compliance_tags {
            pending.post(Field::Tag, tag, n);
        }
        pending.post(Field::Result, keys.result.as_str(), n);
        pending.post(Field::Upstream, &keys.upstream, n);
        // The journal is append-only, so an access event is written before its end exists;
        // the index keeps the link from the access side too and applies it when reading.
        // The first end is the pair's end; a later one (a late answer) links back on its own.
        // (The indexer is the index's only writer, so "absent from the tree and from this
        // batch" is what a compare-and-swap from nothing checked record by record.)
        if keys.event_type != EventType::ToolAccess
            && let Some(access_id) = keys.linked_event_id
        {
            let access = access_id.to_key();
            if let std::collections::hash_map::Entry::Vacant(slot) = pending.links.entry(access) {
                let known = self.watch().claim(u128::from_be_bytes(access));
                let absent = match known {
                    Some(absent) => absent,
                    None => self.links.get(access).map_err(|e| self.err(e))?.is_none(),
                };
                if absent {
                    slot.insert(key);
                }
            }
        }
        pending.staged += 1;
        Ok(())
    }

    /// Writes the staged entries: one batch per tree; event entries in chunks, and per field
    /// value one posting per run of [`MAX_SPAN_MS`] and one count update.
    pub fn write(&self, pending: Pending) -> Result<(), StoreError> {
        let Pending {
            mut events,
            postings,
            links,
            ..
        } = pending;
        events.sort_unstable_by_key(|e| e.0);
        events.dedup_by_key(|e| e.0);
        let mut event_batch = sled::Batch::default();
        let mut value = Vec::new();
        for run in runs(&events, |e| e.0, MAX_CHUNK_EVENTS) {
            let (first, last) = (run[0].0, run[run.len() - 1].0);
            value.clear();
            for (id, entry) in run {
                value.extend_from_slice(&id.to_be_bytes());
                value.extend_from_slice(entry);
            }
            event_batch.insert(
                &[last.to_be_bytes(), first.to_be_bytes()].concat()[..],
                value.as_slice(),
            );
        }
        let mut posting_batch = sled::Batch::default();
        let mut count_batch = sled::Batch::default();
        let mut key = Vec::new();
        for (prefix, mut ids) in postings {
            ids.sort_unstable();
            ids.dedup();
            for run in runs(&ids, |id| *id, MAX_POSTING_IDS) {
                let (first, last) = (run[0], run[run.len() - 1]);
                key.clear();
                key.extend_from_slice(&prefix);
                key.extend_from_slice(&last.to_be_bytes());
                key.extend_from_slice(&first.to_be_bytes());
                value.clear();
                for id in run {
                    value.extend_from_slice(&id.to_be_bytes());
                }
                posting_batch.insert(key.as_slice(), value.as_slice());
            }
            let before = self
                .counts
                .get(&prefix)
                .map_err(|e| self.err(e))?
                .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
                .map_or(0, u64::from_be_bytes);
            count_batch.insert(&*prefix, &(before + ids.len() as u64).to_be_bytes());
        }
        let mut link_batch = sled::Batch::default();
        for (access, end) in links {
            link_batch.insert(&access, &end);
        }
        for (tree, batch) in [
            (&self.events, event_batch),
            (&self.postings, posting_batch),
            (&self.counts, count_batch),
            (&self.links, link_batch),
        ] {
            if let Err(e) = tree.apply_batch(batch) {
                self.watch().rebase(self.last_link(), false);
                return Err(self.err(e));
            }
        }
        self.watch().written();
        Ok(())
    }

    fn watch(&self) -> std::sync::MutexGuard<'_, LinkWatch> {
        self.watch.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The largest access id in `links` (0 if none), `None` if the tree cannot be read.
    fn last_link(&self) -> Option<u128> {
        match self.links.last() {
            Ok(Some((k, _))) => <[u8; 16]>::try_from(k.as_ref())
                .ok()
                .map(u128::from_be_bytes),
            Ok(None) => Some(0),
            Err(_) => None,
        }
    }

    /// Remembers that every record of `journal` before `end` is applied. Only call it once
    /// those entries are flushed ([`Index::flush`]): a saved position must never be ahead of
    /// the entries that survive a crash.
    pub fn set_applied(&self, journal: JournalId, end: JournalPos) -> Result<(), StoreError> {
        self.meta
            .insert(applied_key(journal), &end.to_bytes())
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Where `journal` was saved as finished ([`Index::set_finished`]), if it was.
    pub fn finished(&self, journal: JournalId) -> Result<Option<JournalPos>, StoreError> {
        Ok(self
            .meta
            .get(finished_key(journal))
            .map_err(|e| self.err(e))?
            .and_then(|v| JournalPos::from_bytes(&v)))
    }

    /// Remembers that `journal`'s writer has stopped, its torn tail (if any) is cut, and every
    /// record before `end` (its end) is applied: a later holder whose saved position for it is
    /// still `end` skips it instead of reading its newest segment whole again (which, with one
    /// journal per process ever started, made every start slower). Only call it once `end` is
    /// saved and flushed.
    pub fn set_finished(&self, journal: JournalId, end: JournalPos) -> Result<(), StoreError> {
        self.meta
            .insert(finished_key(journal), &end.to_bytes())
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Marks the index as of this layout version (before anything is written to it).
    pub fn set_format(&self) -> Result<(), StoreError> {
        self.meta
            .insert(KEY_FORMAT, &FORMAT_VERSION.to_be_bytes())
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// One event by id.
    pub fn get(&self, id: EventId) -> Result<Option<AuditEvent>, StoreError> {
        let Some(at) = self.entry(u128::from(id.0))? else {
            return Ok(None);
        };
        self.read(id, &at).map(Some)
    }

    /// The `events` value of event `id` (where its record is, its attributes): looked up in
    /// the chunks whose newest id is at most [`MAX_SPAN_MS`] after it.
    pub(crate) fn entry(&self, id: u128) -> Result<Option<[u8; EVENT_VALUE_LEN]>, StoreError> {
        let start = [id.to_be_bytes(), [0; 16]].concat();
        let end = [span_after(id).to_be_bytes(), [0xff; 16]].concat();
        for kv in self.events.range(start..=end) {
            let (k, v) = kv.map_err(|e| self.err(e))?;
            let first = k
                .get(16..32)
                .and_then(|b| <[u8; 16]>::try_from(b).ok())
                .map_or(u128::MAX, u128::from_be_bytes);
            if first > id {
                continue;
            }
            let n = v.len() / CHUNK_ENTRY_LEN;
            let id_at = |i: usize| {
                let at = i * CHUNK_ENTRY_LEN;
                u128::from_be_bytes(v[at..at + 16].try_into().unwrap_or_default())
            };
            // Entries are sorted by id: binary search.
            let (mut lo, mut hi) = (0, n);
            while lo < hi {
                let mid = (lo + hi) / 2;
                if id_at(mid) < id {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            if lo < n && id_at(lo) == id {
                let at = lo * CHUNK_ENTRY_LEN + 16;
                let mut out = [0u8; EVENT_VALUE_LEN];
                out.copy_from_slice(&v[at..at + EVENT_VALUE_LEN]);
                return Ok(Some(out));
            }
        }
        Ok(None)
    }

    /// The event `id` whose `events` value is `at`, read from its journal, with its link.
    pub(crate) fn read(&self, id: EventId, at: &[u8]) -> Result<AuditEvent, StoreError> {
        let (journal, record) = record_from_value(at).ok_or(StoreError::BadIndexEntry { id })?;
        let payload = journal::read_record(&journal.dir(&self.journal_root), record)?;
        let mut event = self.keys.decode(&payload, record.end())?;
        if event.event_id != id {
            return Err(StoreError::BadIndexEntry { id });
        }
        if event.linked_event_id.is_none()
            && let Some(end) = self.links.get(id.to_key()).map_err(|e| self.err(e))?
        {
            event.linked_event_id = EventId::from_key(&end);
        }
        Ok(event)
    }

    /// Number of events indexed (every entry is read: for reports, not for queries).
    pub fn len(&self) -> usize {
        let mut all = super::query::Merge::events(self, 0, u128::MAX);
        let mut n = 0;
        while let Ok(Some(_)) = all.next(self) {
            n += 1;
        }
        n
    }

    /// Whether no event is indexed.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Writes sled's buffers to disk (sled also does this on its own every 500 ms).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map(|_| ()).map_err(|e| self.err(e))
    }
}

// ---------------------------------------------------------------------------------------------
// Retention (issue 9 item 6, see [`super::retention`]): dropping purged events.
// ---------------------------------------------------------------------------------------------

impl Index {
    /// Forgets where `journal`'s records are: the journal was removed by retention.
    pub(crate) fn remove_applied(&self, journal: JournalId) -> Result<(), StoreError> {
        self.meta
            .remove(applied_key(journal))
            .map_err(|e| self.err(e))?;
        self.meta
            .remove(finished_key(journal))
            .map_err(|e| self.err(e))?;
        Ok(())
    }
}

/// `[last ‖ first]` as a chunk or posting key suffix.
fn span_key(prefix: &[u8], last: u128, first: u128) -> Vec<u8> {
    [prefix, &last.to_be_bytes(), &first.to_be_bytes()].concat()
}

/// Drops the events `purged` from every tree (event chunks, posting lists and their counts,
/// access→end links) and points the entries of `moved` (records of `journal` kept in a
/// rewritten segment) at their new place. Only the chunks and postings that can hold such an
/// id are rewritten (those whose id span overlaps theirs); the caller flushes.
pub(crate) fn forget(
    index: &Index,
    journal: JournalId,
    purged: &std::collections::BTreeSet<u128>,
    moved: &HashMap<u128, RecordRef>,
) -> Result<(), StoreError> {
    let all = || purged.iter().chain(moved.keys()).copied();
    let (Some(lo), Some(hi)) = (all().min(), all().max()) else {
        return Ok(());
    };
    let err = |e| index.err(e);
    // Event chunks: keyed by newest ‖ oldest id, so one holding an id in [lo, hi] has its
    // newest id in [lo, span_after(hi)].
    let mut batch = sled::Batch::default();
    let start = span_key(&[], lo, 0);
    let end = span_key(&[], span_after(hi), u128::MAX);
    for kv in index.events.range(start..=end) {
        let (k, v) = kv.map_err(err)?;
        let mut kept = Vec::with_capacity(v.len());
        let mut changed = false;
        let (mut first, mut last) = (None, 0u128);
        for entry in v.chunks_exact(CHUNK_ENTRY_LEN) {
            let id = u128::from_be_bytes(entry[..16].try_into().unwrap_or_default());
            if purged.contains(&id) {
                changed = true;
                continue;
            }
            let at = kept.len();
            kept.extend_from_slice(entry);
            if let Some(r) = moved.get(&id)
                && record_from_value(&entry[16..]).is_some_and(|(j, _)| j == journal)
            {
                kept[at + 32..at + 16 + REF_LEN].copy_from_slice(&r.to_bytes());
                changed = true;
            }
            first.get_or_insert(id);
            last = id;
        }
        if !changed {
            continue;
        }
        batch.remove(k);
        if let Some(first) = first {
            batch.insert(span_key(&[], last, first), kept);
        }
    }
    index.events.apply_batch(batch).map_err(err)?;
    if purged.is_empty() {
        return Ok(());
    }
    let (lo, hi) = (
        *purged.first().unwrap_or(&0),
        *purged.last().unwrap_or(&u128::MAX),
    );
    // Postings: every value's runs whose span overlaps the purged ids.
    let mut batch = sled::Batch::default();
    let mut dropped: HashMap<Vec<u8>, u64> = HashMap::new();
    for kv in index.postings.iter() {
        let (k, v) = kv.map_err(err)?;
        let Some(split) = k.len().checked_sub(32) else {
            continue;
        };
        let word = |at: usize| u128::from_be_bytes(k[at..at + 16].try_into().unwrap_or_default());
        let (last, first) = (word(split), word(split + 16));
        if last < lo || first > hi {
            continue;
        }
        let ids: Vec<u128> = v
            .chunks_exact(16)
            .map(|c| u128::from_be_bytes(c.try_into().unwrap_or_default()))
            .collect();
        let kept: Vec<u128> = ids
            .iter()
            .copied()
            .filter(|id| !purged.contains(id))
            .collect();
        if kept.len() == ids.len() {
            continue;
        }
        *dropped.entry(k[..split].to_vec()).or_default() += (ids.len() - kept.len()) as u64;
        batch.remove(k.clone());
        if let (Some(&f), Some(&l)) = (kept.first(), kept.last()) {
            let value: Vec<u8> = kept.iter().flat_map(|id| id.to_be_bytes()).collect();
            batch.insert(span_key(&k[..split], l, f), value);
        }
    }
    index.postings.apply_batch(batch).map_err(err)?;
    let mut batch = sled::Batch::default();
    for (prefix, n) in dropped {
        let before = index
            .counts
            .get(&prefix)
            .map_err(err)?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map_or(0, u64::from_be_bytes);
        batch.insert(prefix, &before.saturating_sub(n).to_be_bytes());
    }
    index.counts.apply_batch(batch).map_err(err)?;
    // Links: an access is older than its end, so both sides of a link to drop are ≤ hi.
    let mut batch = sled::Batch::default();
    for kv in index.links.range(..=hi.to_be_bytes()) {
        let (k, v) = kv.map_err(err)?;
        let id = |b: &[u8]| <[u8; 16]>::try_from(b).map_or(0, u128::from_be_bytes);
        if purged.contains(&id(&k)) || purged.contains(&id(&v)) {
            batch.remove(k);
        }
    }
    let removed = index.links.apply_batch(batch).map_err(err);
    // Links removed: what the index knew of them without the tree may no longer hold.
    index.watch().rebase(index.last_link(), true);
    removed?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use ulid::Ulid;

    use super::*;
    use crate::audit::event::Metadata;

    fn event(ms: u64, kind: EventType, access: Option<EventId>) -> AuditEvent {
        AuditEvent {
            event_id: EventId(Ulid::from_parts(ms, u128::from(ms))),
            timestamp: SystemTime::UNIX_EPOCH + Duration::from_millis(ms),
            event_type: kind,
            user_id: "alice".into(),
            tool_name: Some("echo".into()),
            action: "tools/call".into(),
            result: Outcome::Initiated,
            metadata: Metadata::default(),
            risk_level: RiskLevel::Low,
            compliance_tags: vec![],
            session_id: "s".into(),
            upstream: "u".into(),
            linked_event_id: access,
        }
    }

    /// Stages `events` as records of one journal and writes them.
    fn apply(index: &Index, events: &[&AuditEvent]) {
        let mut pending = Pending::default();
        let journal = JournalId(1);
        for (i, e) in events.iter().enumerate() {
            let payload = serde_json::to_vec(e).unwrap();
            let end = JournalPos {
                segment: 1,
                offset: 1000 * (i as u64 + 1),
            };
            index.stage(&mut pending, journal, end, &payload).unwrap();
        }
        index.write(pending).unwrap();
    }

    fn link(index: &Index, access: &AuditEvent) -> Option<EventId> {
        let end = index.links.get(access.event_id.to_key()).unwrap()?;
        EventId::from_key(&end)
    }

    /// The link of an access is its first end, whether the access is newer than every link
    /// (known without the tree) or older (looked up), in one write or across writes and a
    /// reopening of the index.
    #[test]
    fn an_access_links_to_its_first_end_with_or_without_the_tree() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index");
        let ms = 1_780_000_000_000;
        let a = event(ms, EventType::ToolAccess, None);
        let a_end = event(ms + 1, EventType::ToolExecution, Some(a.event_id));
        let a_late = event(ms + 2, EventType::ToolExecution, Some(a.event_id));
        let b = event(ms + 3, EventType::ToolAccess, None);
        let b_end = event(ms + 4, EventType::ToolFailure, Some(b.event_id));
        let c = event(ms + 5, EventType::ToolAccess, None);
        let c_end = event(ms + 6, EventType::ToolExecution, Some(c.event_id));
        let c_late = event(ms + 7, EventType::ToolExecution, Some(c.event_id));
        {
            let index = Index::open(&path, dir.path()).unwrap();
            // Late end in the same batch, then again in a later one.
            apply(&index, &[&a, &a_end, &a_late, &b]);
            apply(&index, &[&a_late, &b_end]);
            // B's end came after A's link was written: B is above the floor, A below it.
            apply(&index, &[&a_late, &b_end, &c]);
            assert_eq!(link(&index, &a), Some(a_end.event_id));
            assert_eq!(link(&index, &b), Some(b_end.event_id));
        }
        let index = Index::open(&path, dir.path()).unwrap();
        // Reopened: every link so far is at or below the floor; C above it.
        apply(&index, &[&c_end, &b_end, &a_late]);
        apply(&index, &[&c_late]);
        assert_eq!(link(&index, &a), Some(a_end.event_id));
        assert_eq!(link(&index, &b), Some(b_end.event_id));
        assert_eq!(link(&index, &c), Some(c_end.event_id));
    }
}
