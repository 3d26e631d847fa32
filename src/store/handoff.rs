//! The index keys of the records the audit writer has just made durable, handed to the
//! indexer of the same process through a bounded queue, so that it does not read back and
//! parse what the writer had in hand (a read and a JSON parse per record: 28% of the
//! indexer's CPU at 16 × 100 B, BENCHMARKS.md "CPU per call by thread").
//!
//! # Why the index stays what reading the journal would make it
//!
//! * **Same entries.** A handed record carries the keys of its event *as written*: taken from
//!   the event after it was serialized (with `audit.encrypt_personal_data`, after its personal
//!   fields were sealed, so `user_id` is the pseudonym the record holds), and where the record
//!   lies. The indexer stages them with [`Index::stage_keys`], the code [`Index::stage`] runs
//!   on a record's bytes.
//! * **Only durable records.** The writer keeps the keys of what it appended ([`Outbox`]) and
//!   hands them on only after a successful `fdatasync` ([`Outbox::synced`]); a failed sync
//!   rolls the journal back and drops them ([`Outbox::rolled_back`]).
//! * **Only where the indexer stands.** Each handed record names the position just after the
//!   record before it in the journal (`after`). The indexer stages it only if it stands there
//!   (or at the record's own start, after a segment it read to its end): it never skips a
//!   record, and records it applied already (it read the file meanwhile) are passed over.
//!   Anything else (a record the writer wrote without handing it on, a batch dropped because
//!   the queue was full, the index taken over from another process) is a gap: the indexer
//!   reads its journal from where it stands, as it does without a hand-off
//!   ([`super::holder::catch_up_journal`]), and the handed records behind that position are
//!   passed over. The writer also publishes its durable end with each sync: an indexer
//!   behind it after the handed records reads the file too.
//! * **Only while held.** The queue takes records only while this process holds the index
//!   ([`HandOff::set_wanted`]); when it lets the index go the queue is emptied.
//!
//! So the journals stay the one source: dropping the hand-off costs speed, never an entry. The
//! index's idle rounds and its last rounds at shutdown read the journals as before.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use super::StoreError;
use super::index::{self, Index, Keys, Pending};
use super::journal::{JournalPos, Prepared, RecordRef};
use super::journals::JournalId;

/// Records the queue holds at most (about 250 bytes each with short strings): two of the
/// indexer's writes. A batch that does not fit is dropped (the indexer reads it instead).
pub const CAPACITY: usize = 2 * index::WRITE_EVERY;

/// One durable record's index keys and place.
#[derive(Debug)]
struct Handed {
    /// The position just after the record before it in the journal (the journal's end before
    /// it was appended).
    after: JournalPos,
    record: RecordRef,
    keys: Keys<'static>,
}

#[derive(Debug, Default)]
struct Queue {
    records: VecDeque<Handed>,
    /// The writer's durable end as of its last sync.
    durable: Option<JournalPos>,
}

/// The queue between one process's audit writer and its indexer (see the module docs).
#[derive(Debug)]
pub struct HandOff {
    queue: Mutex<Queue>,
    /// Whether this process holds the index (set by its keeper).
    wanted: AtomicBool,
    capacity: usize,
    /// Records staged from handed keys (for tests and measurements).
    used: AtomicU64,
    /// Records dropped because the queue was full.
    dropped: AtomicU64,
}

/// What staging the handed records did ([`HandOff::apply`]).
#[derive(Debug)]
pub(crate) struct Applied {
    /// Records staged.
    pub(crate) applied: usize,
    /// Where the indexer now stands in the journal.
    pub(crate) at: JournalPos,
    /// A gap was met, or the writer's durable end is further: read the journal from `at`.
    pub(crate) read: bool,
    /// The round's time ran out with handed records left (kept for the next round).
    pub(crate) more: bool,
}

impl HandOff {
    /// An empty queue of at most `capacity` records, not wanted until the keeper says so.
    pub fn new(capacity: usize) -> HandOff {
        HandOff {
            queue: Mutex::new(Queue::default()),
            wanted: AtomicBool::new(false),
            capacity,
            used: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the indexer takes handed records (its process holds the index).
    pub fn wanted(&self) -> bool {
        self.wanted.load(Ordering::Relaxed)
    }

    /// Says whether this process holds the index; when it does not, what is queued is
    /// dropped (the holder, in another process, reads the journal).
    pub fn set_wanted(&self, wanted: bool) {
        if self.wanted.swap(wanted, Ordering::Relaxed) && !wanted {
            self.queue().records.clear();
        }
    }

    /// Records staged from handed keys so far.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Records dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Drops what is queued: retention moved records of the journal, so the places handed on
    /// may be stale (the indexer reads the journal instead).
    pub(crate) fn clear(&self) {
        self.queue().records.clear();
    }

    /// Stages the handed records of `journal` (this process's own) that follow `at` into
    /// `pending`, writing them to the index whenever [`index::WRITE_EVERY`] are staged, as
    /// [`super::holder::catch_up_journal`] does; stops at `until` (after one record at least),
    /// the rest kept for the next call.
    ///
    /// Errors: those of [`Index::stage_keys`] and [`Index::write`] (the records taken are
    /// dropped; the caller reads the journal next time, the writer's durable end being ahead).
    pub(crate) fn apply(
        &self,
        index: &Index,
        pending: &mut Pending,
        journal: JournalId,
        at: JournalPos,
        until: Option<Instant>,
    ) -> Result<Applied, StoreError> {
        let (mut records, durable) = {
            let mut q = self.queue();
            (std::mem::take(&mut q.records), q.durable)
        };
        let mut out = Applied {
            applied: 0,
            at,
            read: false,
            more: false,
        };
        while let Some(h) = records.pop_front() {
            let start = JournalPos {
                segment: h.record.segment,
                offset: h.record.offset,
            };
            let end = h.record.end();
            if end <= out.at {
                // Applied already (the journal was read past it).
                continue;
            }
            if h.after != out.at && start != out.at {
                // Something between here and there was not handed on.
                out.read = true;
                break;
            }
            if out.applied > 0 && until.is_some_and(|t| Instant::now() >= t) {
                records.push_front(h);
                let mut q = self.queue();
                // Put back before what the writer queued meanwhile.
                records.append(&mut q.records);
                q.records = records;
                out.more = true;
                return Ok(out);
            }
            index.stage_keys(pending, journal, h.record, &h.keys)?;
            self.used.fetch_add(1, Ordering::Relaxed);
            out.applied += 1;
            out.at = end;
            if pending.len() >= index::WRITE_EVERY {
                index.write(std::mem::take(pending))?;
            }
        }
        if !out.read {
            out.read = durable.is_none_or(|d| out.at < d);
        }
        Ok(out)
    }
}

/// The writer's end: the keys of records appended and not yet synced.
#[derive(Debug)]
pub struct Outbox {
    handoff: std::sync::Arc<HandOff>,
    unsynced: Vec<Handed>,
}

impl Outbox {
    /// The writer's end of `handoff`, for a journal whose end is `durable` now (as opened).
    pub fn new(handoff: std::sync::Arc<HandOff>, durable: JournalPos) -> Outbox {
        handoff.queue().durable = Some(durable);
        Outbox {
            handoff,
            unsynced: Vec::new(),
        }
    }

    /// After a successful append of `payloads` (their keys are taken), whose records lie at
    /// `records` (the journal's [`super::Journal::appended`]), the journal's end having been
    /// `after` before it. Kept only while the indexer wants them.
    pub fn appended(
        &mut self,
        after: JournalPos,
        records: &[RecordRef],
        payloads: &mut [Prepared],
    ) {
        if !self.handoff.wanted() || records.len() != payloads.len() {
            return;
        }
        let mut after = after;
        for (record, p) in records.iter().zip(payloads) {
            if let Some(keys) = p.take_keys() {
                self.unsynced.push(Handed {
                    after,
                    record: *record,
                    keys,
                });
            }
            after = record.end();
        }
    }

    /// After a successful sync, `durable` being the journal's end: what was kept goes to the
    /// indexer (or is dropped if the queue is full or not wanted).
    pub fn synced(&mut self, durable: JournalPos) {
        let mut q = self.handoff.queue();
        q.durable = Some(durable);
        if self.unsynced.is_empty() {
            return;
        }
        if !self.handoff.wanted() || q.records.len() + self.unsynced.len() > self.handoff.capacity {
            self.handoff
                .dropped
                .fetch_add(self.unsynced.len() as u64, Ordering::Relaxed);
            self.unsynced.clear();
            return;
        }
        q.records.extend(self.unsynced.drain(..));
    }

    /// After a roll-back of what was not synced: those records are gone, and so are their keys.
    pub fn rolled_back(&mut self) {
        self.unsynced.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::Arc;

    use super::*;
    use crate::audit::event::{
        AuditEvent, EventId, EventIds, EventType, Metadata, Outcome, RiskLevel,
    };
    use crate::store::{IndexKeeper, Journal, Store, reindex};

    /// An index's entries, flattened so that how they were grouped into chunks and postings
    /// (which depends on when the holder wrote) does not matter: each event's `events` value by
    /// id, each posting's (field value, id), and the `counts` and `links` trees as they are.
    type Contents = (
        BTreeMap<u128, Vec<u8>>,
        BTreeSet<(Vec<u8>, u128)>,
        BTreeMap<Vec<u8>, Vec<u8>>,
        BTreeMap<Vec<u8>, Vec<u8>>,
    );

    fn contents(index: &Index) -> Contents {
        let id = |b: &[u8]| u128::from_be_bytes(b.try_into().unwrap());
        let mut events = BTreeMap::new();
        for kv in index.events.iter() {
            let (_, v) = kv.unwrap();
            for entry in v.chunks_exact(index::CHUNK_ENTRY_LEN) {
                let before = events.insert(id(&entry[..16]), entry[16..].to_vec());
                assert!(before.is_none(), "an event entered twice");
            }
        }
        let mut postings = BTreeSet::new();
        for kv in index.postings.iter() {
            let (k, v) = kv.unwrap();
            let prefix = k[..k.len() - 32].to_vec();
            for i in v.chunks_exact(16) {
                assert!(
                    postings.insert((prefix.clone(), id(i))),
                    "an id posted twice"
                );
            }
        }
        let tree = |t: &sled::Tree| {
            t.iter()
                .map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
                .collect::<BTreeMap<_, _>>()
        };
        (events, postings, tree(&index.counts), tree(&index.links))
    }

    /// The audit writer's part, done by hand: prepare, append, keep the keys; sync, hand on.
    struct Writer {
        journal: Journal,
        outbox: Outbox,
        calls: Calls,
    }

    /// Events of calls, made up.
    #[derive(Default)]
    struct Calls {
        ids: EventIds,
        n: usize,
        /// The access whose end is next.
        open: Option<EventId>,
        last_access: Option<EventId>,
    }

    impl Calls {
        /// `n` events: calls (access, end; a call may end in the next batch) of two users
        /// and three sessions, some of no tool, compliance tags on some, and every seventh an
        /// extra end of the last call (a late answer: its access is linked already).
        fn events(&mut self, n: usize) -> Vec<AuditEvent> {
            let mut out = Vec::new();
            for _ in 0..n {
                self.n += 1;
                let i = self.n;
                let (event_id, timestamp) = self.ids.next();
                let link = match self.open.take() {
                    Some(access) => Some(access),
                    None if i.is_multiple_of(7) => self.last_access,
                    None => None,
                };
                if link.is_none() {
                    self.open = Some(event_id);
                    self.last_access = Some(event_id);
                }
                out.push(AuditEvent {
                    event_id,
                    timestamp,
                    event_type: match link {
                        Some(_) if i.is_multiple_of(2) => EventType::ToolFailure,
                        Some(_) => EventType::ToolExecution,
                        None => EventType::ToolAccess,
                    },
                    user_id: format!("user{}", i % 2),
                    tool_name: (!i.is_multiple_of(5)).then(|| format!("tool{}", i % 3)),
                    action: "tools/call".into(),
                    result: match link {
                        Some(_) if i.is_multiple_of(2) => Outcome::Error,
                        Some(_) => Outcome::Success,
                        None => Outcome::Initiated,
                    },
                    metadata: Metadata {
                        reason: Some(format!("reason {i}")),
                        ..Metadata::default()
                    },
                    risk_level: if i.is_multiple_of(4) {
                        RiskLevel::High
                    } else {
                        RiskLevel::Low
                    },
                    compliance_tags: match i % 3 {
                        0 => vec!["gdpr".into(), "secrets".into()],
                        1 => vec!["hipaa".into()],
                        _ => vec![],
                    },
                    session_id: format!("s{}", i % 3),
                    upstream: "up".into(),
                    linked_event_id: link,
                });
            }
            out
        }
    }

    impl Writer {
        fn append(&mut self, n: usize) -> Vec<EventId> {
            let events = self.calls.events(n);
            let ids = events.iter().map(|e| e.event_id).collect();
            self.journal.begin_batch();
            let mut payloads: Vec<Prepared> = events
                .into_iter()
                .map(|e| self.journal.prepare(e, 512).unwrap())
                .collect();
            let after = self.journal.end();
            self.journal.append_prepared(&payloads).unwrap();
            self.outbox
                .appended(after, self.journal.appended(), &mut payloads);
            ids
        }

        fn sync(&mut self) {
            self.journal.sync().unwrap();
            self.outbox.synced(self.journal.end());
        }
    }

    fn has(keeper: &IndexKeeper, id: EventId) -> bool {
        let mut held = keeper.holder.lock().unwrap();
        let holder = held.as_mut().unwrap();
        holder.write_pending().unwrap();
        holder.entry(u128::from(id.0)).unwrap().is_some()
    }

    /// The index fed from the keys the writer handed on holds exactly what reading its journal
    /// holds (compared with a rebuild from the journals), through segment rotations, records
    /// not yet synced, a failed sync's roll-back, a record written without keys, a batch the
    /// full queue dropped, and with personal fields sealed (`user_id` the pseudonym).
    fn handed_keys_index_as_the_journal_does(encrypt: bool) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        // Small segments: most appends start a new one.
        let (store, _) = Store::open(root, 2048).unwrap();
        let (mut journal, mut keeper, lock) = store.into_parts(root);
        if encrypt {
            journal.encrypt_personal_data(root);
        }
        let handoff = Arc::new(HandOff::new(8));
        keeper.hand_off(handoff.clone());
        assert!(handoff.wanted(), "the keeper holds the index");
        let durable = journal.end();
        let mut w = Writer {
            journal,
            outbox: Outbox::new(handoff.clone(), durable),
            calls: Calls::default(),
        };
        let tick = |keeper: &mut IndexKeeper| {
            keeper.tick_with(true);
        };
        // Handed on once durable, and only then.
        let first = w.append(6);
        tick(&mut keeper);
        assert_eq!(handoff.used(), 0);
        assert!(
            !has(&keeper, first[0]),
            "not synced: neither handed nor read"
        );
        w.sync();
        tick(&mut keeper);
        assert_eq!(handoff.used(), 6);
        w.append(2);
        w.sync();
        tick(&mut keeper);
        assert_eq!(handoff.used(), 8);
        // A failed sync: the journal is rolled back, and so are the keys.
        let cut = w.append(2);
        // When that append started a segment, the roll-back leaves the durable end at its
        // start, past where the indexer stands: the next batch is a gap, read from the journal.
        let cut_opened_a_segment =
            w.journal.appended()[0].offset == super::super::journal::HEADER_LEN;
        w.journal.roll_back();
        w.outbox.rolled_back();
        w.append(2);
        w.sync();
        tick(&mut keeper);
        let used = if cut_opened_a_segment { 8 } else { 10 };
        assert_eq!(handoff.used(), used);
        assert!(!has(&keeper, cut[0]), "a rolled-back record is not indexed");
        // A record written without handing its keys (the writer's outage record): the
        // writer's durable end is past the handed records, so the journal is read.
        let own = w.calls.events(1).remove(0);
        let own_id = own.event_id;
        w.journal
            .append(&[serde_json::to_vec(&own).unwrap()])
            .unwrap();
        w.sync();
        tick(&mut keeper);
        assert!(has(&keeper, own_id), "read from the journal");
        w.append(2);
        w.sync();
        tick(&mut keeper);
        assert_eq!(handoff.used(), used + 2);
        // A batch too large for the queue is dropped; the next one leaves a gap: read.
        let dropped = w.append(10);
        w.sync();
        assert_eq!(handoff.dropped(), 10);
        w.append(2);
        w.sync();
        tick(&mut keeper);
        assert_eq!(handoff.used(), used + 2);
        assert!(
            has(&keeper, dropped[0]),
            "a dropped batch is read from the journal"
        );
        w.append(3);
        w.sync();
        tick(&mut keeper);
        assert_eq!(handoff.used(), used + 5);
        let segments = super::super::journal::list_segments(w.journal.dir()).unwrap();
        assert!(segments.len() >= 4, "segments rotated: {segments:?}");
        let handed = {
            let mut held = keeper.holder.lock().unwrap();
            let holder = held.as_mut().unwrap();
            holder.write_pending().unwrap();
            contents(holder)
        };
        keeper.close();
        drop(w);
        drop(lock);
        let (rebuilt, _lock, _) = reindex(root).unwrap();
        let read = contents(&rebuilt);
        assert_eq!(handed.0.len(), 6 + 2 + 2 + 1 + 2 + 10 + 2 + 3);
        assert_eq!(handed, read);
    }

    /// The same through the audit writer and indexer threads, as a proxy runs them: events in
    /// bursts (the indexer's rounds between), `batched`, small segments; the index they leave
    /// equals a rebuild from the journal.
    #[test]
    fn the_writer_and_indexer_threads_leave_the_index_a_rebuild_makes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let (store, _) = Store::open(root, 16 << 10).unwrap();
        let (journal, keeper, lock) = store.into_parts(root);
        let (sink, threads) = crate::audit::writer::start(
            journal,
            keeper,
            crate::config::Durability::Batched,
            std::time::Duration::from_millis(5),
            1 << 16,
        )
        .unwrap();
        let mut calls = Calls::default();
        for _ in 0..15 {
            for e in calls.events(40) {
                sink.record_owned(Box::new(e)).unwrap();
            }
            std::thread::sleep(std::time::Duration::from_millis(40));
        }
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(sink.close());
        threads.join();
        drop(lock);
        let (live, lock, report) = crate::store::open_for_query(root).unwrap().unwrap();
        assert_eq!(report.caught_up, 0, "the indexer applied everything");
        let live_contents = contents(&live);
        drop((live, lock));
        let (rebuilt, _lock, _) = reindex(root).unwrap();
        assert_eq!(live_contents.0.len(), 15 * 40);
        assert_eq!(live_contents, contents(&rebuilt));
    }

    #[test]
    fn handed_keys_index_what_the_journal_holds() {
        handed_keys_index_as_the_journal_does(false);
    }

    #[test]
    fn handed_keys_index_what_the_journal_holds_with_personal_fields_sealed() {
        handed_keys_index_as_the_journal_does(true);
    }

    /// Not holding the index: nothing is kept or queued, and letting it go empties the queue.
    #[test]
    fn nothing_is_queued_while_another_process_holds_the_index() {
        let handoff = Arc::new(HandOff::new(8));
        handoff.set_wanted(true);
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_journal(dir.path(), 1 << 20).unwrap();
        let (journal, keeper, _lock) = store.into_parts(dir.path());
        drop(keeper);
        let durable = journal.end();
        let mut w = Writer {
            journal,
            outbox: Outbox::new(handoff.clone(), durable),
            calls: Calls::default(),
        };
        w.append(2);
        w.sync();
        assert_eq!(handoff.queue().records.len(), 2);
        handoff.set_wanted(false);
        assert_eq!(handoff.queue().records.len(), 0, "emptied when let go");
        w.append(2);
        handoff.set_wanted(true);
        w.sync();
        assert_eq!(
            handoff.queue().records.len(),
            0,
            "appended while not wanted"
        );
    }
}
