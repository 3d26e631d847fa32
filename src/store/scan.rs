//! The calls of a time range, read front to back from the journals: for the analytics
//! commands and reports over long windows of large trails (issue 10 item 7: `report` over
//! 30 days and `anomalies` over a week of a 10 M-event store in ≤ 30 s and ≤ 500 MB).
//!
//! # Why not the index
//!
//! The index answers "the newest few matching events" by reading only those ([`super::query`]);
//! a range of millions read through it is a point lookup in a journal per event (about
//! 60 k events/s at 10 M), and [`super::newest_from_journals`] decodes every event in full.
//! A range is read faster as the journals lie on disk: each segment once, in order, every
//! record CRC-checked as always ([`super::journal`]), and of each record only what a call
//! needs decoded. The index is not opened at all (nor caught up, nor waited for): the
//! journals are the record, and a scan sees every whole record written before it reads its
//! segment, as a query from the journals does.
//!
//! # What is read
//!
//! Every journal ([`super::journals::list`]: writers' journals and the legacy one, formats 1
//! to 3 alike), segment by segment, oldest first. A closed segment whose time span misses
//! the range is not read ([`super::spans`]), unless the scan walks the chains (below). In a
//! segment that is read, a record whose time (found as text from the record's end,
//! [`super::spans::record_time`]) lies outside the range is skipped undecoded. Other
//! records are decoded into their skeleton only (borrowed from the segment: id, time, type,
//! tool, session, user as stored, risk, tags, link, result, risk reasons, execution time,
//! output size, the `personal` member, the chain members), and the personal fields
//! of `tool_access` events are opened with their user's key ([`super::personal::Keyring`]);
//! an end event's are never opened (a call takes nothing personal from its end). A user whose
//! key was destroyed (`erase --user`) keeps the pseudonym as `user` and has no personal
//! fields, as [`super::personal::Keyring::decode`] gives them. Events of other types are
//! counted, not handed on.
//!
//! The same pass can hand every event of a second range, of every type, to a consumer per
//! reading thread ([`events`], [`Sink`]; see `scan/events.rs`): the compliance survey reads
//! its window so, alone or beside `report`'s calls (`scan_on`). The reading range is then
//! the span of both, and a record of the events' range has its personal fields opened
//! whatever its type, except an end event whose fields can only be its user's name: sealed
//! under its access's key, and exactly as long as that name alone seals to. Its fields are
//! then its access's user, as opening them would give (`Reader::user_only`;
//! [`ScanReport::ends_not_opened`] counts them): most ends of a trail, half the decrypting.
//!
//! # Chain walk on the way
//!
//! Asked for it ([`WalkChains`]: `report` and `compliance` without `--no-verify`), the scan
//! also walks each journal's hash chain as `verify --no-index` does ([`super::verify`]'s
//! `JournalWalk`, the same code), and gives back each journal's report
//! ([`ScanReport::chains`], what `verify` would say of it). It then reads every segment of
//! every journal: those of its range as above, the others for the walk alone. A record it
//! decodes hands the walk its chain members as decoded (`Skeleton::link`: exactly what
//! [`super::chain::Link::of`] reads from the same bytes); the walk hashes it. A separate
//! walk read and parsed every record of the store a second time, on a thread of its own.
//! An error that stops the scan (a record that is no event, say) stops the walk with it: its
//! caller walks again on its own then ([`crate::analytics::compliance::with_chain`]).
//!
//! The range is `[from, to]`, both inclusive, on the events' `timestamp` (as
//! [`super::Filter`]'s `since` and `until`). A call's end is joined only when it lies in the
//! range too.
//!
//! # Calls, and what is held
//!
//! An access event and its end are written by the process that ran the call, into its own
//! journal, the end after the access (usually right after it; `import` writes a file's events
//! in the file's order, so an end may come first there). Each journal is joined on its own as
//! it is read: a call is handed on as soon as its end is read (the first end read wins, but a
//! call whose first end is `task` waits for the task's final end, and goes on with the `task`
//! end if none comes), and without an end once a record more than [`JOIN_WAIT`] later than the
//! access has been read from its journal. An end read before its access waits for it as
//! long. What is held per journal is the calls in flight (and ends waiting), not the range.
//! The calls still waiting when their journal is read to its end, and the ends whose access
//! was not in their journal, are joined across journals once every journal is read
//! ([`Leftovers`]: a call cut by a killed proxy is ended in the next process's journal).
//!
//! # Order
//!
//! Calls are handed on in **no particular order**: journals are read on several threads at
//! once, a call goes when its end comes, and records within one journal are not exactly in
//! time order anyway (an event's time is taken when it is made and appended a little later;
//! `import` appends whatever times its file holds). A consumer that needs time order sorts by
//! `(timestamp, id)` what it holds (the analytics readers do: [`crate::analytics::read`]).
//!
//! # Threads and memory
//!
//! Journals are shared out among up to [`MAX_WORKERS`] threads (no more than the machine's
//! cores; the caller's thread is one of them), by the bytes each has to read; each thread
//! reads its journals one after the other, makes batches of calls with the caller's `make`,
//! and runs the caller's `each` on each batch itself, one thread at a time (under a lock):
//! a call is freed on the thread that made it, and no thread beyond the reading ones
//! competes for the cores. Held at once: one segment image per thread (segments are read
//! whole, as [`super::journal::read_segment`] reads them, into one buffer per thread: up
//! to `audit.segment_bytes`, 64 MiB by default), a batch per thread, and each journal's
//! calls in flight.
//!
//! # Errors
//!
//! A CRC-valid record that is not an event ([`StoreError::Decode`]), personal fields that do
//! not open with their key ([`StoreError::Personal`]), a key file that cannot be read, an I/O
//! error: the scan stops and returns the first (the other threads stop at their next
//! segment). Damaged bytes inside a segment (and a damaged end of a segment that is not the
//! newest) are not an error: they are reported in [`ScanReport::damaged`] and the whole
//! records around them are read. A segment removed while the scan runs (retention) holds no
//! records; a chain walk, as `verify`, stops at it with an error.

mod events;
mod skeleton;

pub(crate) use events::events_on;
pub use events::{Event, Gap, Scanned, Sink, events};
use skeleton::Skeleton;

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::value::RawValue;

use super::checkpoint::TrustedKey;
use super::journal::{self, Damage, HEADER_LEN, JournalPos};
use super::journals::{self, JournalId};
use super::personal::{Fields, Keyring, SealedRef};
use super::spans::{self, TextBounds};
use super::verify::{JournalReport, JournalWalk};
use super::{StoreError, StorePaths};
use crate::audit::event::{EventId, EventType, Outcome, PersonalData, RiskLevel};

/// How long a call waits for its end, in its journal's time: an end written up to this long
/// after its access (both in the range) is joined; a later one is not.
pub const JOIN_WAIT: Duration = Duration::from_secs(86_400);

/// The most threads a scan reads journals on.
pub const MAX_WORKERS: usize = 4;

/// Calls handed to `each` at a time (under its lock).
const BATCH: usize = 1024;

/// A `tool_access` event as the scan hands it on: its skeleton and its personal fields,
/// opened.
#[derive(Debug, Clone)]
pub struct Access {
    /// `event_id`.
    pub id: EventId,
    /// `timestamp`, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// `user_id`, opened (the pseudonym, `subject:HEX`, when the user was erased).
    pub user: String,
    /// `tool_name`.
    pub tool: Option<String>,
    /// `session_id`.
    pub session: String,
    /// `compliance_tags`.
    pub tags: Vec<String>,
    /// `risk_level`.
    pub risk: RiskLevel,
    /// `metadata.risk_reasons`.
    pub risk_reasons: Vec<String>,
    /// `metadata.arguments`, as stored (opened).
    pub arguments: Option<Box<RawValue>>,
    /// `metadata.user_agent`.
    pub user_agent: Option<String>,
    /// `metadata.http.client_address`.
    pub client_address: Option<String>,
    /// `metadata.http.user_agent`.
    pub http_user_agent: Option<String>,
    /// `metadata.http.roles`.
    pub roles: Vec<String>,
    /// How the personal fields were stored: `None` in clear, `Encrypted` (opened) or `Erased`
    /// (their key is gone: the personal fields above are empty).
    pub personal: Option<PersonalData>,
    /// The key its personal fields were sealed under (the pseudonym's 128 bits), when they
    /// were opened: an end sealed under the same key is the same user's.
    pub(crate) sealed_by: Option<u128>,
}

/// A call's end event (`tool_execution` or `tool_failure`) as the scan hands it on.
#[derive(Debug, Clone, Copy)]
pub struct End {
    /// `event_id`.
    pub id: EventId,
    /// `timestamp`, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// `event_type`.
    pub event_type: EventType,
    /// `result`.
    pub result: Outcome,
    /// `risk_level`.
    pub risk: RiskLevel,
    /// `metadata.execution_time_us`.
    pub execution_time_us: Option<u64>,
    /// `metadata.output_size_bytes`.
    pub output_size_bytes: Option<u64>,
    /// Whether it carries a regulation's tag ([`crate::analytics::REGULATED`]): the result
    /// held personal, health or card data (a read is sensitive by what it returned).
    pub regulated: bool,
}

/// What a scan read besides the calls.
#[derive(Debug, Default)]
pub struct ScanReport {
    /// Damaged stretches of the segments read (their records are not in the calls), by
    /// segment and offset.
    pub damaged: Vec<Damage>,
    /// Events in the calls' range, of every type.
    pub events: u64,
    /// Events handed to the sinks (those of the events' range, of every type).
    pub surveyed: u64,
    /// Calls handed on.
    pub calls: u64,
    /// Of them, calls handed on without an end.
    pub unended: u64,
    /// Journals read.
    pub journals: usize,
    /// Segments read.
    pub segments_read: usize,
    /// Closed segments not read: their time span misses the range ([`super::spans`]).
    pub segments_skipped: usize,
    /// Bytes of the segments read.
    pub bytes_read: u64,
    /// End events handed to the sinks whose personal fields were known without decrypting
    /// them: sealed under their access's key (so the same user), and as long as the user's
    /// name alone seals to (so nothing else: see `Reader::user_only`).
    pub ends_not_opened: u64,
    /// The chain walk of each journal, in journal order, when the scan was asked for one
    /// ([`WalkChains`]): what `verify --no-index` finds in it.
    pub chains: Vec<(JournalId, JournalReport)>,
    /// Calls and ends no journal joined on its own, joined across journals once all are read
    /// ([`Leftovers`]); empty in the report a scan returns.
    leftovers: Leftovers,
}

/// What the journals could not join on their own: the calls still waiting for an end when
/// their journal was read, and the ends whose access was not in their journal. A call that
/// was in flight when its proxy was killed is ended by the next process to start
/// (`audit/settle.rs`), in that process's own journal: joined within each journal only, such
/// a call was unfinished in `analyze` and `report` while `events` showed its end (helper-94
/// F6). Few in a store as it is written (crash remnants, the calls in flight at the range's
/// end); the ends held are capped at [`MAX_LEFTOVER_ENDS`].
#[derive(Default)]
struct Leftovers {
    calls: Vec<(Access, Option<End>)>,
    ends: Vec<(EventId, End)>,
    /// Ends past [`MAX_LEFTOVER_ENDS`], not held (logged once).
    dropped: u64,
}

impl std::fmt::Debug for Leftovers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leftovers")
            .field("calls", &self.calls.len())
            .field("ends", &self.ends.len())
            .finish()
    }
}

/// The most ends without their access one scan holds for the join across journals (an
/// `import` of a file of ends alone could hold millions; each is about 80 bytes).
const MAX_LEFTOVER_ENDS: usize = 100_000;

impl Leftovers {
    fn end(&mut self, of: EventId, end: End) {
        if self.ends.len() < MAX_LEFTOVER_ENDS {
            self.ends.push((of, end));
        } else {
            self.dropped += 1;
            if self.dropped == 1 {
                tracing::warn!(
                    "more than {MAX_LEFTOVER_ENDS} call ends without their access in their journal; the rest are not joined across journals (their calls read as unfinished)"
                );
            }
        }
    }

    /// Each call with the end another journal holds for it (a final end before a task's
    /// interim one, else the first), counted in `report`, then made and handed to `each`.
    fn join<T>(
        self,
        report: &mut ScanReport,
        make: impl Fn(Access, Option<End>) -> T,
        mut each: impl FnMut(T),
    ) {
        let mut ends: HashMap<EventId, End, ById> = HashMap::default();
        for (of, end) in self.ends {
            match ends.entry(of) {
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(end);
                }
                std::collections::hash_map::Entry::Occupied(mut o)
                    if o.get().result == Outcome::Task && end.result != Outcome::Task =>
                {
                    o.insert(end);
                }
                std::collections::hash_map::Entry::Occupied(_) => {}
            }
        }
        for (access, interim) in self.calls {
            let end = match (interim, ends.remove(&access.id)) {
                (Some(i), Some(e)) if i.result == Outcome::Task && e.result != Outcome::Task => {
                    Some(e)
                }
                (Some(i), _) => Some(i),
                (None, e) => e,
            };
            report.calls += 1;
            report.unended += u64::from(end.is_none());
            each(make(access, end));
        }
    }
}

/// A chain walk made on the way by a scan (`scan_on`): each journal's hash chain checked
/// as `verify --no-index` checks it ([`super::verify`]), from the records the scan reads
/// anyway, and from the segments outside its range read for the walk alone. A separate walk
/// read and parsed every record of the store a second time: about a quarter of `report`'s
/// CPU at 10 M events, and one more segment image in memory (BENCHMARKS.md).
#[derive(Clone, Copy, Default)]
pub struct WalkChains<'k> {
    /// The public key checkpoints' signatures are checked with (none: not checked).
    pub key: Option<&'k TrustedKey>,
}

impl ScanReport {
    /// The report with its damage in segment and offset order, however the threads shared
    /// the journals.
    fn in_order(mut self) -> ScanReport {
        self.damaged
            .sort_by(|a, b| (&a.segment, a.offset).cmp(&(&b.segment, b.offset)));
        self.chains.sort_by_key(|(id, _)| *id);
        self
    }

    fn add(&mut self, other: ScanReport) {
        self.damaged.extend(other.damaged);
        self.events += other.events;
        self.surveyed += other.surveyed;
        self.calls += other.calls;
        self.unended += other.unended;
        self.journals += other.journals;
        self.segments_read += other.segments_read;
        self.segments_skipped += other.segments_skipped;
        self.bytes_read += other.bytes_read;
        self.ends_not_opened += other.ends_not_opened;
        self.chains.extend(other.chains);
        self.leftovers.calls.extend(other.leftovers.calls);
        for (of, end) in other.leftovers.ends {
            self.leftovers.end(of, end);
        }
    }
}

/// Reads the calls whose access event lies in `[from, to]` from every journal of the store
/// at `root`, turning each into a `T` with `make` and handing it to `each`, both on a
/// reading thread (`each` on one thread at a time), in no particular order (see the module
/// docs).
pub fn calls<T: Send>(
    root: &Path,
    from: SystemTime,
    to: SystemTime,
    make: impl Fn(Access, Option<End>) -> T + Sync,
    each: impl FnMut(T) + Send,
) -> Result<ScanReport, StoreError> {
    calls_on(root, from, to, default_workers(), make, each)
}

/// The threads a scan reads on: the machine's cores, at most [`MAX_WORKERS`].
pub(crate) fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX_WORKERS)
}

/// [`calls`] on at most `workers` reading threads (1: the caller's thread reads too).
pub(crate) fn calls_on<T: Send>(
    root: &Path,
    from: SystemTime,
    to: SystemTime,
    workers: usize,
    make: impl Fn(Access, Option<End>) -> T + Sync,
    each: impl FnMut(T) + Send,
) -> Result<ScanReport, StoreError> {
    scan_on(root, (from, to), None, None, workers, make, each, || {
        NoEvents
    })
    .result
}

/// One pass over the journals for the calls of `calls` (as [`calls`]) and, when `events`
/// is given, every event of that range too, handed to a sink per reading thread made by
/// `new` (as [`events`]): the reading range is the span of both. With `walk`, every
/// journal's chain is walked on the way (the whole store: [`ScanReport::chains`]). The
/// sinks come back with the outcome (on an error, with what was read before it).
#[allow(clippy::too_many_arguments)]
pub(crate) fn scan_on<T: Send, S: Sink + Send>(
    root: &Path,
    calls: (SystemTime, SystemTime),
    events: Option<(SystemTime, SystemTime)>,
    walk: Option<WalkChains<'_>>,
    workers: usize,
    make: impl Fn(Access, Option<End>) -> T + Sync,
    mut each: impl FnMut(T) + Send,
    new: impl Fn() -> S + Sync,
) -> Scanned<S> {
    let ranges = Ranges::new(calls, events);
    let keys = Keyring::new(root);
    let mut report = ScanReport::default();
    let plans = if ranges.read.empty && walk.is_none() {
        Ok(Vec::new())
    } else {
        plan(root, &ranges.read, walk.is_some(), &mut report)
    };
    let mut plans = match plans {
        Ok(p) => p,
        Err(e) => {
            return Scanned {
                sinks: vec![new()],
                result: Err(e),
            };
        }
    };
    report.journals = plans.len();
    let workers = workers.clamp(1, plans.len().max(1));
    let stop = AtomicBool::new(false);
    let read_share = |share: Vec<&Plan>, send: &mut dyn FnMut(Vec<T>) -> bool| {
        let mut sink = new();
        let mut out = Out {
            make: &make,
            batch: Vec::new(),
            send,
        };
        let mut report = ScanReport::default();
        let mut image = Vec::new();
        for plan in share {
            let reader = Reader {
                ranges: &ranges,
                walk,
                keys: &keys,
                join: Join::default(),
                out: &mut out,
                sink: &mut sink,
                report: ScanReport::default(),
            };
            match reader.journal(plan, &stop, &mut image) {
                Ok(r) => report.add(r),
                Err(e) => {
                    stop.store(true, Ordering::Relaxed);
                    return (sink, Err(e));
                }
            }
        }
        out.flush();
        (sink, Ok(report))
    };
    let done: Vec<(S, Result<ScanReport, StoreError>)> = if workers == 1 {
        let mut send = |batch: Vec<T>| {
            batch.into_iter().for_each(&mut each);
            true
        };
        vec![read_share(plans.iter().collect(), &mut send)]
    } else {
        // The caller's `each` runs on the reading threads, one batch at a time under a
        // lock, and the caller's thread reads a share too: so each call is freed on the
        // thread that made it, and no thread beyond the reading ones competes for the
        // cores. (Handed to the caller's thread over a channel instead, every call was
        // freed there, into the reading threads' malloc arenas: on two cores, three
        // threads then took turns holding those arenas' locks, and the readers slept on
        // them a sixth of the time.)
        let each = Mutex::new(&mut each);
        // After a panic in `each` (the lock poisoned) the others stop reading; the panic
        // goes on to the caller when the threads are joined.
        let hand = |batch: Vec<T>| match each.lock() {
            Ok(mut each) => {
                batch.into_iter().for_each(&mut **each);
                true
            }
            Err(_) => false,
        };
        let mut shares = share(&mut plans, workers).into_iter();
        let own = shares.next().expect("at least one worker");
        std::thread::scope(|s| {
            let handles: Vec<_> = shares
                .map(|share| {
                    let (read_share, hand) = (&read_share, &hand);
                    s.spawn(move || read_share(share, &mut |batch: Vec<T>| hand(batch)))
                })
                .collect();
            let mine = read_share(own, &mut |batch: Vec<T>| hand(batch));
            std::iter::once(mine)
                .chain(
                    handles
                        .into_iter()
                        .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))),
                )
                .collect()
        })
    };
    let mut sinks = Vec::with_capacity(done.len());
    let mut failed = None;
    for (sink, r) in done {
        sinks.push(sink);
        match r {
            Ok(r) => report.add(r),
            Err(e) => {
                failed.get_or_insert(e);
            }
        }
    }
    let leftovers = std::mem::take(&mut report.leftovers);
    if failed.is_none() {
        leftovers.join(&mut report, &make, &mut each);
    }
    Scanned {
        sinks,
        result: match failed {
            Some(e) => Err(e),
            None => Ok(report.in_order()),
        },
    }
}

/// Each journal of the store at `root` with the segments to read for `range` (and, to
/// `walk` its chain, the others).
fn plan(
    root: &Path,
    range: &Range,
    walk: bool,
    report: &mut ScanReport,
) -> Result<Vec<Plan>, StoreError> {
    let journal_root = StorePaths::new(root).journal();
    let mut plans = Vec::new();
    for id in journals::list(&journal_root)? {
        let plan = Plan::of(id.dir(&journal_root), id, range, walk)?;
        report.segments_skipped += plan.skipped;
        plans.push(plan);
    }
    Ok(plans)
}

/// The ranges of a scan: the calls', the events' (if any), and what is read for both.
struct Ranges {
    calls: Range,
    events: Option<Range>,
    read: Range,
}

impl Ranges {
    fn new(calls: (SystemTime, SystemTime), events: Option<(SystemTime, SystemTime)>) -> Ranges {
        let calls = Range::new(calls.0, calls.1);
        let events = events.map(|(from, to)| Range::new(from, to));
        let read = match &events {
            None => Range::new(calls.from, calls.to),
            Some(e) if calls.empty => Range::new(e.from, e.to),
            Some(e) if e.empty => Range::new(calls.from, calls.to),
            Some(e) => Range::new(calls.from.min(e.from), calls.to.max(e.to)),
        };
        Ranges {
            calls,
            events: events.filter(|e| !e.empty),
            read,
        }
    }
}

/// The sink of a scan that wants calls only.
struct NoEvents;

impl Sink for NoEvents {
    fn event(&mut self, _: &Event<'_>) {}
    fn journal_read(&mut self) {}
}

/// The journals shared out among `workers` threads by the bytes each has to read: largest
/// first, each to the thread with the fewest bytes so far.
fn share(plans: &mut [Plan], workers: usize) -> Vec<Vec<&Plan>> {
    plans.sort_by_key(|p| std::cmp::Reverse(p.bytes));
    let mut shares: Vec<(u64, Vec<&Plan>)> = (0..workers).map(|_| (0, Vec::new())).collect();
    for plan in plans.iter() {
        let least = shares
            .iter_mut()
            .min_by_key(|(bytes, _)| *bytes)
            .expect("at least one worker");
        least.0 += plan.bytes;
        least.1.push(plan);
    }
    shares.into_iter().map(|(_, share)| share).collect()
}

/// `[from, to]` as the scan tests it.
struct Range {
    from: SystemTime,
    to: SystemTime,
    /// `to` plus the rest of its microsecond: the exclusive end for spans and time texts
    /// (record times are whole microseconds).
    until: SystemTime,
    /// The range as record-time texts, when both ends have that form.
    text: Option<TextBounds>,
    empty: bool,
}

impl Range {
    fn new(from: SystemTime, to: SystemTime) -> Range {
        let micros = to
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros().min(u128::from(u64::MAX - 1)) as u64);
        let until = if to < UNIX_EPOCH {
            to
        } else {
            UNIX_EPOCH
                .checked_add(Duration::from_micros(micros + 1))
                .unwrap_or(to)
        };
        Range {
            from,
            to,
            until,
            text: (to >= UNIX_EPOCH)
                .then(|| TextBounds::new(Some(from), Some(until)))
                .flatten(),
            empty: to < from,
        }
    }

    /// Whether a record's time lies in the range, from its text alone: `None` when that
    /// cannot tell (the record's time has another form, or the range has no text form).
    fn contains_text(&self, record: &[u8]) -> Option<bool> {
        let bounds = self.text.as_ref()?;
        spans::record_time(record).map(|t| bounds.contains(t))
    }

    fn contains(&self, t: SystemTime) -> bool {
        self.from <= t && t <= self.to
    }
}

/// One journal's segments to read.
struct Plan {
    dir: PathBuf,
    id: JournalId,
    /// Every segment of the journal, as listed.
    all: Vec<u64>,
    /// Segments to read, oldest first: each one's number, whether it is the journal's
    /// newest, and whether its records are wanted (in the range) or only walked.
    segments: Vec<(u64, bool, bool)>,
    bytes: u64,
    skipped: usize,
    /// Whether the journal's chain is walked ([`WalkChains`]).
    walk: bool,
}

impl Plan {
    fn of(dir: PathBuf, id: JournalId, range: &Range, walk: bool) -> Result<Plan, StoreError> {
        let all = journal::list_segments(&dir)?;
        let times = spans::read(&dir);
        let mut plan = Plan {
            segments: Vec::new(),
            bytes: 0,
            skipped: 0,
            dir,
            id,
            all: Vec::new(),
            walk,
        };
        for (i, &n) in all.iter().enumerate() {
            let wanted = !range.empty
                && !times
                    .get(&n)
                    .is_some_and(|s| s.misses(Some(range.from), Some(range.until)));
            if !wanted {
                plan.skipped += 1;
                if !walk {
                    continue;
                }
            }
            plan.bytes +=
                std::fs::metadata(journal::segment_path(&plan.dir, n)).map_or(0, |m| m.len());
            plan.segments.push((n, i + 1 == all.len(), wanted));
        }
        plan.all = all;
        Ok(plan)
    }
}

/// Where a reading thread's calls go: made, batched, sent.
struct Out<'a, T, M> {
    make: &'a M,
    batch: Vec<T>,
    /// Hands a batch to `each`; false when `each` panicked on another thread.
    send: &'a mut dyn FnMut(Vec<T>) -> bool,
}

impl<T, M: Fn(Access, Option<End>) -> T> Out<'_, T, M> {
    /// Hands one call on; false when `each` panicked on another thread.
    fn call(&mut self, access: Access, end: Option<End>) -> bool {
        self.batch.push((self.make)(access, end));
        if self.batch.len() >= BATCH {
            return self.flush();
        }
        true
    }

    fn flush(&mut self) -> bool {
        if self.batch.is_empty() {
            return true;
        }
        (self.send)(std::mem::replace(
            &mut self.batch,
            Vec::with_capacity(BATCH),
        ))
    }
}

/// A key's pseudonym as a number, when it is spelled as keys are (32 lowercase hex digits):
/// two spellings of one number are two different subjects to the keyring.
fn key_of(subject: &str) -> Option<u128> {
    let hex = subject.len() == 32
        && subject
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    hex.then(|| u128::from_str_radix(subject, 16).ok())
        .flatten()
}

/// The AEAD tag's length, after the ciphertext proper (XChaCha20-Poly1305).
const TAG_LEN: usize = 16;

/// The bytes standard padded base64 `text` decodes to (`None` if its length is not that of
/// padded base64).
fn base64_len(text: &str) -> Option<usize> {
    let n = text.len();
    if !n.is_multiple_of(4) {
        return None;
    }
    let pad = text.bytes().rev().take(2).filter(|&b| b == b'=').count();
    Some(n / 4 * 3 - pad)
}

/// Counts the bytes written to it.
struct Counted(usize);

impl std::io::Write for Counted {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn owned(v: &[Cow<'_, str>]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Hashes event ids by their low 64 bits, which a ULID fills at random: SipHash of every id
/// in flight was a sixth of a reading thread's time.
#[derive(Clone, Copy, Default)]
pub(crate) struct ById;

impl std::hash::BuildHasher for ById {
    type Hasher = IdHasher;
    fn build_hasher(&self) -> IdHasher {
        IdHasher(0)
    }
}

/// See [`ById`]; bytes other than a `u128` (none, for an [`EventId`]) are mixed in FNV-1a.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u128(&mut self, v: u128) {
        self.0 ^= v as u64;
    }
}

/// One journal's calls as its records come: accesses waiting for their ends, and ends read
/// before their accesses, each for [`JOIN_WAIT`] of the journal's time.
#[derive(Default)]
struct Join {
    /// The latest access read, until another is: its end usually comes next, and is then
    /// joined without going through the maps.
    fresh: Option<Access>,
    /// Other calls in flight, by (time, id), and their times by id.
    waiting: BTreeMap<(u64, EventId), Access>,
    at_of: HashMap<EventId, u64, ById>,
    /// Ends whose access has not been read, by the access's id; by (time, access id).
    early: HashMap<EventId, End, ById>,
    early_by_time: BTreeMap<(u64, EventId), ()>,
    /// The first end of a call the server made a task (`result: task`, Tasks extension), by
    /// the access's id: its call waits in the maps for the task's final end (the one a
    /// client's `tasks/result` gets), and goes on with this one only if none comes
    /// (helper-94 F4: the first end won, so a task's failure or time was never counted).
    interim: HashMap<EventId, End, ById>,
    /// The latest record time read from the journal, milliseconds.
    clock_ms: u64,
    /// Ends that waited [`JOIN_WAIT`] for their access in vain, for the join across
    /// journals ([`Leftovers`]).
    left: Leftovers,
}

impl Join {
    /// Hands on (without an end) the calls more than [`JOIN_WAIT`] older than `now_ms`, and
    /// forgets the ends that old; false when `each` panicked on another thread.
    fn advance<T, M: Fn(Access, Option<End>) -> T>(
        &mut self,
        now_ms: u64,
        out: &mut Out<'_, T, M>,
        report: &mut ScanReport,
    ) -> bool {
        if now_ms <= self.clock_ms {
            return true;
        }
        self.clock_ms = now_ms;
        let before = now_ms.saturating_sub(JOIN_WAIT.as_millis() as u64);
        if self.fresh.as_ref().is_some_and(|a| a.at_ms < before)
            && let Some(access) = self.fresh.take()
        {
            report.unended += 1;
            report.calls += 1;
            if !out.call(access, None) {
                return false;
            }
        }
        while let Some(entry) = self.early_by_time.first_entry() {
            if entry.key().0 >= before {
                break;
            }
            let (_, access) = entry.remove_entry().0;
            if let Some(end) = self.early.remove(&access) {
                self.left.end(access, end);
            }
        }
        while let Some(entry) = self.waiting.first_entry() {
            if entry.key().0 >= before {
                break;
            }
            let ((_, id), access) = entry.remove_entry();
            self.at_of.remove(&id);
            let interim = self.interim.remove(&id);
            report.unended += u64::from(interim.is_none());
            report.calls += 1;
            if !out.call(access, interim) {
                return false;
            }
        }
        true
    }

    fn access<T, M: Fn(Access, Option<End>) -> T>(
        &mut self,
        access: Access,
        out: &mut Out<'_, T, M>,
        report: &mut ScanReport,
    ) -> bool {
        if let Some(previous) = self.fresh.take()
            && !self.wait(previous, out, report)
        {
            return false;
        }
        if let Some(end) = self.early.remove(&access.id) {
            self.early_by_time.remove(&(end.at_ms, access.id));
            if end.result == Outcome::Task {
                self.interim.insert(access.id, end);
                return self.wait(access, out, report);
            }
            report.calls += 1;
            return out.call(access, Some(end));
        }
        self.fresh = Some(access);
        true
    }

    /// The call in flight whose access is `id`, if this journal's reading holds it.
    fn peek(&self, id: EventId) -> Option<&Access> {
        match &self.fresh {
            Some(a) if a.id == id => Some(a),
            _ => self.waiting.get(&(*self.at_of.get(&id)?, id)),
        }
    }

    /// Puts a call in flight into the maps.
    fn wait<T, M: Fn(Access, Option<End>) -> T>(
        &mut self,
        access: Access,
        out: &mut Out<'_, T, M>,
        report: &mut ScanReport,
    ) -> bool {
        let key = (access.at_ms, access.id);
        if let Some(before) = self.at_of.insert(access.id, access.at_ms) {
            // The same access event twice: the first is a call of its own, without an end.
            if let Some(first) = self.waiting.remove(&(before, access.id)) {
                report.calls += 1;
                report.unended += 1;
                if !out.call(first, None) {
                    return false;
                }
            }
        }
        self.waiting.insert(key, access);
        true
    }

    fn end<T, M: Fn(Access, Option<End>) -> T>(
        &mut self,
        of: EventId,
        end: End,
        out: &mut Out<'_, T, M>,
        report: &mut ScanReport,
    ) -> bool {
        if end.result == Outcome::Task {
            // The call waits for its task's final end ([`Join::interim`]).
            if self.fresh.as_ref().is_some_and(|a| a.id == of)
                && let Some(access) = self.fresh.take()
                && !self.wait(access, out, report)
            {
                return false;
            }
            if self.at_of.contains_key(&of) {
                self.interim.entry(of).or_insert(end);
                return true;
            }
        }
        if self.fresh.as_ref().is_some_and(|a| a.id == of)
            && let Some(access) = self.fresh.take()
        {
            report.calls += 1;
            return out.call(access, Some(end));
        }
        if let Some(at) = self.at_of.remove(&of)
            && let Some(access) = self.waiting.remove(&(at, of))
        {
            self.interim.remove(&of);
            report.calls += 1;
            return out.call(access, Some(end));
        }
        match self.early.entry(of) {
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(end);
                self.early_by_time.insert((end.at_ms, of), ());
            }
            // A task's final end read before its first (and its access): the final one stays.
            std::collections::hash_map::Entry::Occupied(mut o)
                if o.get().result == Outcome::Task && end.result != Outcome::Task =>
            {
                self.early_by_time.remove(&(o.get().at_ms, of));
                self.early_by_time.insert((end.at_ms, of), ());
                o.insert(end);
            }
            std::collections::hash_map::Entry::Occupied(_) => {}
        }
        true
    }

    /// The journal is read: every call still waiting, and every end whose access did not
    /// come, waits for the join across journals ([`Leftovers`]) in `report`.
    fn finish(self, report: &mut ScanReport) {
        let mut interim = self.interim;
        let mut left = self.left;
        for access in self.fresh.into_iter().chain(self.waiting.into_values()) {
            let end = interim.remove(&access.id);
            left.calls.push((access, end));
        }
        for (of, end) in self.early {
            left.end(of, end);
        }
        report.leftovers.calls.extend(left.calls);
        for (of, end) in left.ends {
            report.leftovers.end(of, end);
        }
    }
}

/// A segment a [`Reader`] reads for its range.
struct Segment<'a> {
    plan: &'a Plan,
    n: u64,
    newest: bool,
    /// Whether it is chained ([`JournalWalk::segment`]).
    chained: bool,
    /// The journal's chain walk, if any.
    walk: &'a RefCell<Option<JournalWalk>>,
}

/// What stopped a journal's reading early.
enum Stop {
    /// An error to return.
    Failed(StoreError),
    /// `each` panicked on another thread, or another thread failed.
    Quiet,
}

impl From<StoreError> for Stop {
    fn from(e: StoreError) -> Stop {
        Stop::Failed(e)
    }
}

/// What one reading thread reads a journal with.
struct Reader<'r, 'o, T, M, S> {
    ranges: &'r Ranges,
    /// The chain walk to make on the way, if any.
    walk: Option<WalkChains<'r>>,
    keys: &'r Keyring,
    /// The journal's calls in flight.
    join: Join,
    out: &'r mut Out<'o, T, M>,
    sink: &'r mut S,
    report: ScanReport,
}

impl<T, M: Fn(Access, Option<End>) -> T, S: Sink> Reader<'_, '_, T, M, S> {
    /// Reads one journal's planned segments, handing its calls to `out` and its events to
    /// the sink, and walking its chain when asked (every segment of the journal then).
    fn journal(
        mut self,
        plan: &Plan,
        stop: &AtomicBool,
        image: &mut Vec<u8>,
    ) -> Result<ScanReport, StoreError> {
        let mut damaged = Vec::new();
        if stop.load(Ordering::Relaxed) {
            return Ok(self.report);
        }
        // A walk lists the journal's segments again now, right before reading its
        // checkpoints, as `verify` does: a writer may have started a segment since the scan
        // was planned, and a checkpoint read now may cover records in it.
        let relisted;
        let (plan, walk) = match self.walk.filter(|_| plan.walk) {
            Some(w) => {
                relisted = Plan::of(plan.dir.clone(), plan.id, &self.ranges.read, true)?;
                let walk = JournalWalk::open(&plan.dir, plan.id, w.key, false, &relisted.all)?;
                (&relisted, Some(walk))
            }
            None => (plan, None),
        };
        let walk = RefCell::new(walk);
        for &(n, newest, wanted) in &plan.segments {
            if stop.load(Ordering::Relaxed) {
                return Ok(self.report);
            }
            let chained = match walk.borrow_mut().as_mut() {
                Some(w) => w.segment(n)?,
                None => false,
            };
            if !wanted {
                // Outside the range: read for the chain walk alone.
                let end = journal::read_segment_in(
                    &plan.dir,
                    n,
                    HEADER_LEN,
                    newest,
                    image,
                    |at, payload| {
                        if let Some(w) = walk.borrow_mut().as_mut() {
                            w.record(at, payload, chained, None);
                        }
                        Ok::<(), StoreError>(())
                    },
                    |d| {
                        if let Some(w) = walk.borrow_mut().as_mut() {
                            w.damage(&d);
                        }
                    },
                )?;
                if let Some(w) = walk.borrow_mut().as_mut() {
                    w.segment_end(n, end.offset, newest)?;
                }
                continue;
            }
            self.report.segments_read += 1;
            self.report.bytes_read +=
                std::fs::metadata(journal::segment_path(&plan.dir, n)).map_or(0, |m| m.len());
            let mut read = Segment {
                plan,
                n,
                newest,
                chained,
                walk: &walk,
            };
            let mut end = match self.segment(&read, HEADER_LEN, image, &mut damaged) {
                Ok(end) => end,
                Err(Stop::Quiet) => return Ok(self.report),
                Err(Stop::Failed(e)) => return Err(e),
            };
            // The newest segment's end is not damage when a record there is cut short (a
            // writer mid-append, or a crash its next writer recovers); a whole record there
            // whose checksum does not match is a record changed after it was written, which
            // the events' consumers (the compliance survey) are told of, as the index refused
            // it. Read again after a moment, in case a write was seen half done.
            if newest && self.ranges.events.is_some() && events::changed_tail(image, 0, end) {
                std::thread::sleep(events::TAIL_RECHECK);
                let base = end;
                read.newest = true;
                end = match self.segment(&read, base, image, &mut damaged) {
                    Ok(end) => end,
                    Err(Stop::Quiet) => return Ok(self.report),
                    Err(Stop::Failed(e)) => return Err(e),
                };
                if events::changed_tail(image, base, end) {
                    damaged.push(Damage {
                        segment: journal::segment_path(&plan.dir, n),
                        offset: end,
                        resumes_at: None,
                        reason: "checksum mismatch in the last record of the newest segment: it changed after it was written".into(),
                    });
                }
            }
            if let Some(w) = walk.borrow_mut().as_mut() {
                w.segment_end(n, end, newest)?;
            }
        }
        let Reader {
            join,
            sink,
            mut report,
            ..
        } = self;
        join.finish(&mut report);
        sink.journal_read();
        report.damaged = damaged;
        if let Some(w) = walk.into_inner() {
            let (chain, _) = w.finish()?;
            report.chains.push((
                plan.id,
                JournalReport {
                    journal: plan.id.to_string(),
                    dir: plan.dir.clone(),
                    chain,
                },
            ));
        }
        Ok(report)
    }

    /// Reads `read`'s segment from offset `start`; returns where its whole records end.
    fn segment(
        &mut self,
        read: &Segment<'_>,
        start: u64,
        image: &mut Vec<u8>,
        damaged: &mut Vec<Damage>,
    ) -> Result<u64, Stop> {
        journal::read_segment_in(
            &read.plan.dir,
            read.n,
            start,
            read.newest,
            image,
            |at, payload| self.record(at, payload, read),
            |d| {
                if let Some(w) = read.walk.borrow_mut().as_mut() {
                    w.damage(&d);
                }
                damaged.push(d)
            },
        )
        .map(|end| end.offset)
    }

    /// The personal fields of the end event `r` without decrypting them, when they can only
    /// be its user's name: `r` ends a call whose access this journal's reading holds,
    /// opened, and is sealed under the same key (keys are one per user name, so it is the
    /// same user), and its ciphertext is exactly as long as that name alone seals to
    /// (`{"user_id":NAME}` and the 16-byte tag: any other field would make it longer).
    /// Decrypting it would give the same fields; its integrity is the chain's to check, as
    /// for every byte of a record. A report opens both events of every call otherwise, the
    /// larger part of reading a trail (BENCHMARKS.md).
    fn user_only(&self, r: &Skeleton<'_>, sealed: &SealedRef<'_>) -> Option<Fields> {
        if !matches!(
            r.event_type,
            EventType::ToolExecution | EventType::ToolFailure
        ) {
            return None;
        }
        let access = self.join.peek(r.linked_event_id?)?;
        let key = key_of(&sealed.subject)?;
        if access.personal != Some(PersonalData::Encrypted) || access.sealed_by != Some(key) {
            return None;
        }
        let fields = Fields {
            user_id: access.user.clone(),
            ..Fields::default()
        };
        let mut plain = Counted(0);
        serde_json::to_writer(&mut plain, &fields).ok()?;
        (base64_len(&sealed.ciphertext)? == plain.0 + TAG_LEN).then_some(fields)
    }

    /// Takes one record of `read`'s segment (and hands it to the chain walk, if any).
    fn record(&mut self, at: JournalPos, payload: &[u8], read: &Segment<'_>) -> Result<(), Stop> {
        let ranges = self.ranges;
        let mut walk = read.walk.borrow_mut();
        if ranges.read.contains_text(payload) == Some(false) {
            if let Some(w) = walk.as_mut() {
                w.record(at, payload, read.chained, None);
            }
            return Ok(());
        }
        let r: Skeleton<'_> = match serde_json::from_slice(payload) {
            Ok(r) => r,
            Err(source) => {
                if let Some(w) = walk.as_mut() {
                    w.record(at, payload, read.chained, None);
                }
                return Err(StoreError::Decode { at, source }.into());
            }
        };
        if let Some(w) = walk.as_mut() {
            w.record(at, payload, read.chained, r.link(payload));
        }
        drop(walk);
        let time = humantime::parse_rfc3339(&r.timestamp).map_err(|e| StoreError::Decode {
            at,
            source: serde::de::Error::custom(e),
        })?;
        let call = ranges.calls.contains(time);
        let event = ranges.events.as_ref().is_some_and(|e| e.contains(time));
        if !call && !event {
            return Ok(());
        }
        // Personal fields are opened for every event handed to the sink, and for a call's
        // access (never for its end: a call takes nothing personal from its end). An end
        // that seals its user's name and nothing else is known from its access, unopened.
        let opened = match &r.personal {
            Some(sealed) if event || r.event_type == EventType::ToolAccess => {
                match self.user_only(&r, sealed) {
                    Some(fields) => {
                        self.report.ends_not_opened += 1;
                        Some(Some(fields))
                    }
                    None => Some(self.keys.open(sealed, r.event_id.id, at)?),
                }
            }
            _ => None,
        };
        if event {
            self.report.surveyed += 1;
            events::hand_on(&r, time, opened.as_ref(), self.sink);
        }
        if !call {
            return Ok(());
        }
        let report = &mut self.report;
        let (join, out) = (&mut self.join, &mut *self.out);
        report.events += 1;
        let at_ms = ms(time);
        let going = match r.event_type {
            EventType::ToolAccess => {
                let m = &r.metadata;
                let http = m.http.as_ref();
                let mut access = Access {
                    id: r.event_id.id,
                    at_ms,
                    user: r.user_id.into_owned(),
                    tool: r.tool_name.map(Cow::into_owned),
                    session: r.session_id.into_owned(),
                    tags: owned(&r.compliance_tags),
                    risk: r.risk_level,
                    risk_reasons: owned(&m.risk_reasons),
                    arguments: m.arguments.map(ToOwned::to_owned),
                    user_agent: m.user_agent.as_deref().map(str::to_string),
                    client_address: http
                        .and_then(|h| h.client_address.as_deref())
                        .map(str::to_string),
                    http_user_agent: http
                        .and_then(|h| h.user_agent.as_deref())
                        .map(str::to_string),
                    roles: http.map(|h| owned(&h.roles)).unwrap_or_default(),
                    personal: None,
                    sealed_by: None,
                };
                match opened {
                    Some(Some(f)) => {
                        // As `Fields::put` puts them back into an event.
                        let http = f.has_http();
                        access.user = f.user_id;
                        access.arguments = f.arguments;
                        access.user_agent = f.user_agent;
                        if http {
                            access.client_address = f.client_address;
                            access.http_user_agent = f.http_user_agent;
                            access.roles = f.roles;
                        }
                        access.personal = Some(PersonalData::Encrypted);
                        // Only ends handed to a sink are ever known from it.
                        if ranges.events.is_some() {
                            access.sealed_by = r.personal.as_ref().and_then(|p| key_of(&p.subject));
                        }
                    }
                    Some(None) => access.personal = Some(PersonalData::Erased),
                    None => {}
                }
                join.advance(at_ms, out, report) && join.access(access, out, report)
            }
            EventType::ToolExecution | EventType::ToolFailure => {
                let going = join.advance(at_ms, out, report);
                match r.linked_event_id {
                    Some(of) if going => join.end(
                        of,
                        End {
                            id: r.event_id.id,
                            at_ms,
                            event_type: r.event_type,
                            result: r.result,
                            risk: r.risk_level,
                            execution_time_us: r.metadata.execution_time_us,
                            output_size_bytes: r.metadata.output_size_bytes,
                            regulated: r
                                .compliance_tags
                                .iter()
                                .any(|t| crate::analytics::REGULATED.contains(&&**t)),
                        },
                        out,
                        report,
                    ),
                    _ => going,
                }
            }
            _ => join.advance(at_ms, out, report),
        };
        if going { Ok(()) } else { Err(Stop::Quiet) }
    }
}
