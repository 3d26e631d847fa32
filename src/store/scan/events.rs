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
//!   merges them. Held: one segment image per thread, and what the sinks hold;
//! - a whole record at the end of a journal's newest segment whose checksum does not match
//!   (read twice, 100 ms apart) is reported as damage: a write cut short is not, but a record
//!   changed after it was written is, as reading it through the index refused it.
//!
//! The calls and the events can be read in the same pass (`scan_on`: `report`
//! reads its calls and surveys the compliance window at once).

use std::borrow::Cow;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{ScanReport, Skeleton};
use crate::audit::event::{EventId, EventType, Outcome, PersonalData};
use crate::store::StoreError;
use crate::store::journal;
use crate::store::personal::Fields;

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
    /// `metadata.input_responses` as stored, opened.
    pub input_responses: Option<&'a RawValue>,
    /// `metadata.error_messages`, opened.
    pub error_messages: &'a [Cow<'a, str>],
    /// `metadata.audit_gap` of an `audit/store_outage` event.
    pub gap: Option<&'a Gap<'a>>,
    /// How the personal fields were stored, as `metadata.personal_data` reads after
    /// [`Keyring::decode`]: `None` in clear, `Encrypted` (opened) or `Erased` (key gone).
    pub personal: Option<PersonalData>,
    /// `metadata.imported` is set: `import` brought the event in from another trail, so it
    /// says what that trail held, not what this store's proxies recorded.
    pub imported: bool,
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
/// the store at `root`, on up to [`super::MAX_WORKERS`] threads, each handing its journals'
/// events to a sink of its own made by `new` (see the module docs).
pub fn events<S: Sink + Send>(
    root: &Path,
    from: SystemTime,
    to: SystemTime,
    new: impl Fn() -> S + Sync,
) -> Scanned<S> {
    events_on(root, from, to, None, super::default_workers(), new)
}

/// [`events`] on at most `workers` reading threads (1: the caller's thread reads), walking
/// every journal's chain on the way with `walk` ([`super::ScanReport::chains`]).
pub(crate) fn events_on<S: Sink + Send>(
    root: &Path,
    from: SystemTime,
    to: SystemTime,
    walk: Option<super::WalkChains<'_>>,
    workers: usize,
    new: impl Fn() -> S + Sync,
) -> Scanned<S> {
    // No calls: an empty range for them.
    let none = (UNIX_EPOCH + Duration::from_secs(1), UNIX_EPOCH);
    super::scan_on(
        root,
        none,
        Some((from, to)),
        walk,
        workers,
        |_, _| (),
        |()| {},
        new,
    )
}

/// How long a scan waits before reading again the end of a newest segment that looked
/// changed (a write seen half done is whole by then).
pub(super) const TAIL_RECHECK: Duration = Duration::from_millis(100);

/// Whether the bytes of `image` (a segment's bytes from file offset `base` on) after the
/// last whole record, which ends at `end`, start with a whole record whose checksum does not
/// match (the journal's own words for it: [`journal::scan_records`]).
pub(super) fn changed_tail(image: &[u8], base: u64, end: u64) -> bool {
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

/// Hands the record `r` (of time `time`) to `sink` as an [`Event`], with its personal
/// fields as opened (`opened`: `None` when it has none, `Some(None)` when their key is gone).
pub(super) fn hand_on<S: Sink>(
    r: &Skeleton<'_>,
    time: SystemTime,
    opened: Option<&Option<Fields>>,
    sink: &mut S,
) {
    let m = &r.metadata;
    let personal = match opened {
        Some(Some(_)) => Some(PersonalData::Encrypted),
        Some(None) => Some(PersonalData::Erased),
        None => m.personal_data,
    };
    let sealed_errors: Vec<Cow<'_, str>>;
    let mut e = Event {
        id: r.event_id.id,
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
        input_responses: m.input_responses,
        error_messages: &m.error_messages,
        gap: m.audit_gap.as_ref(),
        personal,
        imported: m.imported.is_some(),
    };
    // As `Fields::put` puts them back into an event.
    if let Some(Some(f)) = opened {
        e.user = &f.user_id;
        e.arguments = f.arguments.as_deref();
        e.input_responses = f.input_responses.as_deref();
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
}
