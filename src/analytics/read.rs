//! Reading calls out of the store for the analytics commands and reports, in one pass over
//! the journals ([`crate::store::scan`]).
//!
//! The scan reads each journal front to back (closed segments outside the range skipped by
//! their time spans), decodes of each record only what a [`Call`] needs, opens personal
//! fields only for access events, and joins each end to its access in the journal they share:
//! what stays in memory is the calls in flight, not the range (issue 10 item 7: 10 M events).
//! Whatever the store does to stored records (an encrypted personal field, an erased user, a
//! purged or damaged segment, an older journal format) is handled there.
//!
//! Before, this read the store an hour or a day at a time through the index (a point lookup
//! per event, ~60 k events/s) or by decoding every event of the journals in full:
//! 290 s for a 30-day report over 10 M events.

use std::path::Path;
use std::time::SystemTime;

use super::{Call, End};
use crate::store::journals::JournalId;
use crate::store::scan::{self, ScanReport};
use crate::store::verify::JournalReport;
use crate::store::{self, Damage, StoreError};

/// How long a call waits for its end before it is handed on without one (see
/// [`crate::store::scan`]).
pub use crate::store::scan::JOIN_WAIT;

/// What reading found besides the calls.
#[derive(Debug, Default)]
pub struct ReadReport {
    /// Damaged journal segments met on the way (their records are not in the calls).
    pub damaged: Vec<Damage>,
    /// Events read (in the range, of every type).
    pub events: usize,
    /// Calls read, and of them those without an end in the range.
    pub calls: u64,
    /// See `calls`.
    pub unended: u64,
    /// Journal segments read, and those skipped by their time span.
    pub segments_read: usize,
    /// See `segments_read`.
    pub segments_skipped: usize,
    /// The chain walk of each journal made on the way, when asked
    /// ([`scan::WalkChains`]), in journal order.
    pub chains: Vec<(JournalId, JournalReport)>,
}

impl From<ScanReport> for ReadReport {
    fn from(s: ScanReport) -> ReadReport {
        ReadReport {
            damaged: s.damaged,
            events: s.events as usize,
            calls: s.calls,
            unended: s.unended,
            segments_read: s.segments_read,
            segments_skipped: s.segments_skipped,
            chains: s.chains,
        }
    }
}

/// The calls whose access event is in `[from, to]` (ends joined when they are in the range
/// too), ordered by time then id, from the store at `root`.
pub fn calls(
    root: &Path,
    from: SystemTime,
    to: SystemTime,
) -> Result<(Vec<Call>, ReadReport), StoreError> {
    let mut out = Vec::new();
    let mut texts = super::Interner::default();
    let report = each_call(root, from, to, |mut c| {
        texts.call(&mut c);
        out.push(c)
    })?;
    out.sort_unstable_by_key(|c| (c.at_ms, c.id));
    Ok((out, report))
}

/// The calls whose access event is in `[from, to]`, handed to `each` one at a time **in no
/// particular order** (journals are read on several threads, and a call goes on when its
/// end is read: see [`crate::store::scan`]), without holding the range. An end written up to
/// [`JOIN_WAIT`] after its access is joined; a later one is not. For reports over long
/// windows of large trails (issue 10 item 7); a consumer that needs time order sorts what it
/// holds ([`calls`] does).
pub fn each_call(
    root: &Path,
    from: SystemTime,
    to: SystemTime,
    each: impl FnMut(Call) + Send,
) -> Result<ReadReport, StoreError> {
    store::scan_calls(root, from, to, call_of, each).map(ReadReport::from)
}

/// [`each_call`] with the compliance survey of `window` in the same pass over the journals
/// (the reading range is the span of both), and with `walk` the chain walk too
/// ([`ReadReport::chains`]): the surveys (one per reading thread, for
/// [`super::compliance::facts_of`]) and what reading found. So that `report` reads its trail
/// once, not once for the calls, again for the compliance facts and again for the chains.
pub fn each_call_surveying(
    root: &Path,
    from: SystemTime,
    to: SystemTime,
    window: &super::compliance::Window,
    walk: Option<scan::WalkChains<'_>>,
    each: impl FnMut(Call) + Send,
) -> (
    Vec<super::compliance::Survey>,
    Result<ReadReport, StoreError>,
) {
    let scanned = scan::scan_on(
        root,
        (from, to),
        Some(window.read_range()),
        walk,
        scan::default_workers(),
        call_of,
        each,
        || window.survey(),
    );
    (scanned.sinks, scanned.result.map(ReadReport::from))
}

/// A scanned access and end as a [`Call`], as [`super::Joiner::push`] makes one from events.
fn call_of(a: scan::Access, end: Option<scan::End>) -> Call {
    Call {
        id: a.id,
        at_ms: a.at_ms,
        tool: a.tool.as_deref().unwrap_or("?").into(),
        session: a.session.into(),
        ip: a.client_address.as_deref().and_then(|s| s.parse().ok()),
        client: a.user_agent.or(a.http_user_agent).map(Into::into),
        arguments: a
            .arguments
            .as_ref()
            .map(|v| super::string_members(v.get()))
            .unwrap_or_default(),
        tags: a.tags,
        roles: a.roles,
        risk: a.risk,
        risk_reasons: if a.risk >= crate::audit::RiskLevel::High {
            a.risk_reasons
        } else {
            Vec::new()
        },
        user: a.user.into(),
        end: end.map(|e| End {
            id: e.id,
            failed: super::is_failure(e.result),
            result: e.result,
            risk: e.risk,
            execution_us: e.execution_time_us,
            output_bytes: e.output_size_bytes,
            regulated: e.regulated,
        }),
    }
}

#[cfg(test)]
#[path = "read_tests.rs"]
pub(crate) mod tests;
