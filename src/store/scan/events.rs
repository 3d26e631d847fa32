//! Every event of a time range, in one pass over the journals, each handed to a consumer
//! ([`Sink`]) on the thread that read it: for the compliance survey
//! ([`crate::analytics::compliance::survey`]), whose facts are per-event counts plus the
//! pairing of each access with its end, which the sink does per journal.
//!
//! What is read, how segments are skipped, damage and errors are as for the calls (see the
//! parent module); what differs:
//!
//! - every event of `[from, to]` is handed on, of every type, not only calls;
//! - of each record the members the survey reads are decoded ([`Event`]: besides the
//!   skeleton, the authentication method, `upstream`, the reason, the error code and texts,
//!   an outage's `metadata.audit_gap`), and the personal fields of **every** event are opened
//!   (an end's user, reason and error texts are facts of their own), as
//!   [`super::super::personal::Keyring::decode`] would put them back;
//! - nothing is joined or sent across threads: each reading thread owns one sink (made by
//!   the caller's `new`), hands it its journals' events in each journal's order, says when a
//!   journal is read ([`Sink::journal_read`]), and the sinks come back to the caller, who
//!   merges them. Held: one segment image per thread, and what the sinks hold.

use std::borrow::Cow;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{Http, Plan, Range, ScanReport, Stop, share};
use crate::audit::event::{EventId, EventType, Outcome, PersonalData};
use crate::store::journal::{self, Damage, HEADER_LEN, JournalPos};
use crate::store::journals;
use crate::store::personal::{Keyring, SealedRef};
use crate::store::{StoreError, StorePaths};

/// One event as [`events`] hands it on, borrowed from its record and its opened personal
/// fields (valid for the call to [`Sink::event`] only).
#[derive(Debug)]
pub struct Event<'a> {
    /// `event_id`.
    pub id: EventId,
    /// `timestamp`.
    pub timestamp: SystemTime,
    /// `event_type`.
    pub event_type: EventType,
    /// `result`.
    pub result: Outcome,
    /// `linked_event_id`.
    pub linked: Option<EventId>,
    /// `user_id`, opened (the pseudonym, `subject:HEX`, when the user was erased).
    pub user: &'a str,
    /// `tool_name`.
    pub tool: Option<&'a str>,
    /// `upstream`.
    pub upstream: &'a str,
    /// `session_id`.
    pub session: &'a str,
    /// `compliance_tags`.
    pub tags: &'a [Cow<'a, str>],
    /// `metadata.auth_method`.
    pub auth_method: Option<&'a str>,
    /// `metadata.http.client_address`, opened.
    pub client_address: Option<&'a str>,
    /// `metadata.reason`, opened.
    pub reason: Option<&'a str>,
    /// `metadata.error_code`.
    pub error_code: Option<i64>,
    /// `metadata.arguments` as stored, opened.
    pub arguments: Option<&'a RawValue>,
    /// `metadata.error_messages`, opened.
    pub error_messages: &'a [Cow<'a, str>],
    /// `metadata.audit_gap` of an `audit/store_outage` event.
    pub gap: Option<&'a Gap<'a>>,
    /// How the personal fields were stored, as `metadata.personal_data` reads after
    /// [`Keyring::decode`]: `None` in clear, `Encrypted` (opened) or `Erased` (key gone).
    pub personal: Option<PersonalData>,
}

/// The `metadata.audit_gap` members the survey reads.
#[derive(Debug, Clone, Deserialize)]
pub struct Gap<'a> {
    /// `on_store_failure`: `block` or `allow`.
    #[serde(borrow)]
    pub on_store_failure: Cow<'a, str>,
    /// `events_lost`.
    pub events_lost: u64,
    /// `events_refused`.
    pub events_refused: u64,
}

/// What consumes the events of one reading thread.
pub trait Sink {
    /// One event of the range. The events of a journal come in the journal's order (close to
    /// time order, not exactly); the journals of a thread one after the other.
    fn event(&mut self, e: &Event<'_>);
    /// The journal whose events came last is read to its end.
    fn journal_read(&mut self);
}

/// The sinks of a scan, and how it ended.
#[derive(Debug)]
pub struct Scanned<S> {
    /// One sink per reading thread, each with what its journals held (on an error, what was
    /// read before it).
    pub sinks: Vec<S>,
    /// What the scan read, or the first error that stopped it.
    pub result: Result<ScanReport, StoreError>,
}

/// Reads every event of `[from, to]` (both inclusive, on `timestamp`) from every journal of
/// the store at `root`, on up to [`super::MAX_WORKERS`] threads, each handing its journals' events
/// to a sink of its own made by `new` (see the module docs).
pub fn events<S: Sink + Send>(
    root: &Path,
    from: SystemTime,
    to: SystemTime,
    new: impl Fn() -> S + Sync,
) -> Scanned<S> {
    events_on(root, from, to, super::default_workers(), new)
}

/// [`events`] on at most `workers` reading threads (1: the caller's thread reads).
pub(crate) fn events_on<S: Sink + Send>(
    root: &Path,
    from: SystemTime,
    to: SystemTime,
    workers: usize,
    new: impl Fn() -> S + Sync,
) -> Scanned<S> {
    let journal_root = StorePaths::new(root).journal();
    let keys = Keyring::new(root);
    let range = Range::new(from, to);
    let mut report = ScanReport::default();
    let mut plans = Vec::new();
    if !range.empty {
        let listed = match journals::list(&journal_root) {
            Ok(l) => l,
            Err(e) => {
                return Scanned {
                    sinks: vec![new()],
                    result: Err(e),
                };
            }
        };
        for id in listed {
            match Plan::of(id.dir(&journal_root), &range) {
                Ok(plan) => {
                    report.segments_skipped += plan.skipped;
                    plans.push(plan);
                }
                Err(e) => {
                    return Scanned {
                        sinks: vec![new()],
                        result: Err(e),
                    };
                }
            }
        }
    }
    report.journals = plans.len();
    let workers = workers.clamp(1, plans.len().max(1));
    let stop = AtomicBool::new(false);
    let read_share = |share: Vec<&Plan>| {
        let mut sink = new();
        let mut report = ScanReport::default();
        let mut image = Vec::new();
        for plan in share {
            match read_journal(plan, &range, &keys, &stop, &mut sink, &mut image) {
                Ok(r) => report.add(r),
                Err(e) => {
                    stop.store(true, Ordering::Relaxed);
                    return (sink, Err(e));
                }
            }
        }
        (sink, Ok(report))
    };
    let done: Vec<(S, Result<ScanReport, StoreError>)> = if workers == 1 {
        vec![read_share(plans.iter().collect())]
    } else {
        std::thread::scope(|s| {
            let handles: Vec<_> = share(&mut plans, workers)
                .into_iter()
                .map(|share| s.spawn(|| read_share(share)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
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
    Scanned {
        sinks,
        result: match failed {
            Some(e) => Err(e),
            None => Ok(report.in_order()),
        },
    }
}

/// A stored record's members that [`Event`] has, borrowed from the record.
#[derive(Deserialize)]
struct Whole<'a> {
    event_id: EventId,
    #[serde(borrow)]
    timestamp: Cow<'a, str>,
    event_type: EventType,
    #[serde(borrow)]
    user_id: Cow<'a, str>,
    #[serde(borrow, default)]
    tool_name: Option<Cow<'a, str>>,
    result: Outcome,
    #[serde(borrow)]
    compliance_tags: Vec<Cow<'a, str>>,
    #[serde(borrow)]
    session_id: Cow<'a, str>,
    #[serde(borrow)]
    upstream: Cow<'a, str>,
    #[serde(default)]
    linked_event_id: Option<EventId>,
    #[serde(borrow)]
    metadata: WholeMeta<'a>,
    #[serde(borrow, default)]
    personal: Option<SealedRef<'a>>,
}

/// The `metadata` members [`Event`] has.
#[derive(Deserialize)]
struct WholeMeta<'a> {
    #[serde(borrow, default)]
    auth_method: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    arguments: Option<&'a RawValue>,
    #[serde(borrow, default)]
    error_messages: Vec<Cow<'a, str>>,
    #[serde(default)]
    error_code: Option<i64>,
    #[serde(borrow, default)]
    reason: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    http: Option<Http<'a>>,
    #[serde(borrow, default)]
    audit_gap: Option<Gap<'a>>,
    #[serde(default)]
    personal_data: Option<PersonalData>,
}

/// Reads one journal's planned segments into `sink`.
fn read_journal<S: Sink>(
    plan: &Plan,
    range: &Range,
    keys: &Keyring,
    stop: &AtomicBool,
    sink: &mut S,
    image: &mut Vec<u8>,
) -> Result<ScanReport, StoreError> {
    let mut report = ScanReport::default();
    let mut damaged = Vec::new();
    for &(n, newest) in &plan.segments {
        if stop.load(Ordering::Relaxed) {
            return Ok(report);
        }
        report.segments_read += 1;
        report.bytes_read +=
            std::fs::metadata(journal::segment_path(&plan.dir, n)).map_or(0, |m| m.len());
        let read = journal::read_segment_in(
            &plan.dir,
            n,
            HEADER_LEN,
            newest,
            image,
            |at, payload| record(at, payload, range, keys, sink, &mut report),
            |d| damaged.push(d),
        );
        let mut end = match read {
            Ok(end) => end,
            Err(Stop::Quiet) => return Ok(report),
            Err(Stop::Failed(e)) => return Err(e),
        };
        // The newest segment's end is not damage when a record there is cut short (a writer
        // mid-append, or a crash its next writer recovers); a whole record there whose
        // checksum does not match is a record changed after it was written (the index
        // would have refused it too). Read again after a moment, in case a write was seen
        // half done.
        if newest && changed_tail(image, 0, end.offset) {
            std::thread::sleep(TAIL_RECHECK);
            let base = end.offset;
            let again = journal::read_segment_in(
                &plan.dir,
                n,
                end.offset,
                true,
                image,
                |at, payload| record(at, payload, range, keys, sink, &mut report),
                |d| damaged.push(d),
            );
            end = match again {
                Ok(end) => end,
                Err(Stop::Quiet) => return Ok(report),
                Err(Stop::Failed(e)) => return Err(e),
            };
            // The image now holds the segment from `base` on.
            if changed_tail(image, base, end.offset) {
                damaged.push(Damage {
                    segment: journal::segment_path(&plan.dir, n),
                    offset: end.offset,
                    resumes_at: None,
                    reason: "checksum mismatch in the last record of the newest segment: it changed after it was written".into(),
                });
            }
        }
    }
    sink.journal_read();
    report.damaged = damaged;
    Ok(report)
}

/// How long a scan waits before reading again the end of a newest segment that looked
/// changed (a write seen half done is whole by then).
const TAIL_RECHECK: Duration = Duration::from_millis(100);

/// Whether the bytes of `image` (a segment's bytes from file offset `base` on) after the
/// last whole record, which ends at `end`, start with a whole record whose checksum does not
/// match.
fn changed_tail(image: &[u8], base: u64, end: u64) -> bool {
    let Some(tail) = usize::try_from(end.saturating_sub(base))
        .ok()
        .and_then(|at| image.get(at..))
    else {
        return false;
    };
    if tail.is_empty() {
        return false;
    }
    journal::scan_records(tail, end, |_, _| Ok::<(), StoreError>(()))
        .is_ok_and(|scan| scan.stopped.as_deref() == Some("checksum mismatch"))
}

/// Takes one record of a journal.
fn record<S: Sink>(
    at: JournalPos,
    payload: &[u8],
    range: &Range,
    keys: &Keyring,
    sink: &mut S,
    report: &mut ScanReport,
) -> Result<(), Stop> {
    if range.contains_text(payload) == Some(false) {
        return Ok(());
    }
    let r: Whole<'_> =
        serde_json::from_slice(payload).map_err(|source| StoreError::Decode { at, source })?;
    let time = humantime::parse_rfc3339(&r.timestamp).map_err(|e| StoreError::Decode {
        at,
        source: serde::de::Error::custom(e),
    })?;
    if !range.contains(time) {
        return Ok(());
    }
    report.events += 1;
    let m = &r.metadata;
    let mut personal = m.personal_data;
    let opened = match &r.personal {
        Some(sealed) => {
            let fields = keys.open(sealed, r.event_id, at)?;
            personal = Some(if fields.is_some() {
                PersonalData::Encrypted
            } else {
                PersonalData::Erased
            });
            fields
        }
        None => None,
    };
    let sealed_errors: Vec<Cow<'_, str>>;
    let mut e = Event {
        id: r.event_id,
        timestamp: time,
        event_type: r.event_type,
        result: r.result,
        linked: r.linked_event_id,
        user: &r.user_id,
        tool: r.tool_name.as_deref(),
        upstream: &r.upstream,
        session: &r.session_id,
        tags: &r.compliance_tags,
        auth_method: m.auth_method.as_deref(),
        client_address: m.http.as_ref().and_then(|h| h.client_address.as_deref()),
        reason: m.reason.as_deref(),
        error_code: m.error_code,
        arguments: m.arguments,
        error_messages: &m.error_messages,
        gap: m.audit_gap.as_ref(),
        personal,
    };
    // As `Fields::put` puts them back into an event.
    if let Some(f) = &opened {
        e.user = &f.user_id;
        e.arguments = f.arguments.as_deref();
        e.reason = f.reason.as_deref();
        sealed_errors = f
            .error_messages
            .iter()
            .map(|s| Cow::Borrowed(&**s))
            .collect();
        e.error_messages = &sealed_errors;
        if f.has_http() {
            e.client_address = f.client_address.as_deref();
        }
    }
    sink.event(&e);
    Ok(())
}
