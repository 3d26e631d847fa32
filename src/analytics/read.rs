//! Reading calls out of the store for the analytics commands, a day at a time.
//!
//! Through the store's query API only ([`crate::store::Index::newest`] with a time filter, or
//! [`crate::store::newest_from_journals`] while another process holds the index), so whatever
//! the store does to stored records (an encrypted personal field, a purged segment) is
//! handled where it belongs. Each day's events are joined into [`Call`]s as they come
//! ([`Joiner`]): what stays in memory is one `Call` per access event of the range (a few
//! hundred bytes each) and one day's events, not the whole range's events.

use std::path::Path;
use std::time::{Duration, SystemTime};

use std::collections::HashMap;

use super::{Call, End, Joiner};
use crate::audit::EventId;
use crate::store::{self, Damage, Filter, OpenReport, StoreError};

/// How much of the store one query reads: a day of events.
const CHUNK: Duration = Duration::from_secs(86_400);

/// What reading found besides the calls.
#[derive(Debug, Default)]
pub struct ReadReport {
    /// What opening the index did (torn tails cut, catch-up), when this process took it.
    pub opened: Option<OpenReport>,
    /// Whether the journals were read directly (another process holds the index).
    pub from_journals: bool,
    /// Damaged journal segments met on the way (their records are not in the calls).
    pub damaged: Vec<Damage>,
    /// Events read.
    pub events: usize,
}

/// The calls whose access event is in `[from, to]` (ends joined when they are in the range
/// too), time-ordered, from the store at `root`.
pub fn calls(
    root: &Path,
    from: SystemTime,
    to: SystemTime,
) -> Result<(Vec<Call>, ReadReport), StoreError> {
    let mut joiner = Joiner::default();
    let report = for_each_chunk(root, from, to, CHUNK, |_, events| {
        for e in events {
            joiner.push(e);
        }
    })?;
    Ok((joiner.finish(), report))
}

/// The calls whose access event is in `[from, to]`, handed to `each` one at a time in time
/// order, without holding the range: the store is read an hour at a time, and a call is
/// handed on once a day more has been read (an end written up to [`JOIN_WAIT`] after its
/// access is joined; a later one is not). What stays in memory is about a day of calls and
/// an hour of events. For reports over long windows of large trails (issue 10 item 7).
pub fn each_call(
    root: &Path,
    from: SystemTime,
    to: SystemTime,
    mut each: impl FnMut(Call),
) -> Result<ReadReport, StoreError> {
    let mut pending: HashMap<EventId, Call> = HashMap::new();
    // Ends read before their access (a clock step between two processes): by access id.
    let mut early: HashMap<EventId, End> = HashMap::new();
    let mut emit = |v: Vec<Call>| v.into_iter().for_each(&mut each);
    let report = for_each_chunk(root, from, to, STREAM_CHUNK, |chunk_ms, events| {
        // Calls older than a day have had their time for an end.
        emit(release(
            &mut pending,
            &mut early,
            chunk_ms.saturating_sub(JOIN_WAIT.as_millis() as u64),
        ));
        let mut one = Joiner::default();
        for e in events {
            one.push(e);
        }
        let (calls, ends) = one.into_parts();
        for mut c in calls {
            if c.end.is_none() {
                c.end = early.remove(&c.id);
            }
            pending.insert(c.id, c);
        }
        for (access, end) in ends {
            match pending.get_mut(&access) {
                Some(c) if c.end.is_none() => c.end = Some(end),
                Some(_) => {}
                None => {
                    early.entry(access).or_insert(end);
                }
            }
        }
    })?;
    emit(release(&mut pending, &mut early, u64::MAX));
    Ok(report)
}

/// How much of the store one query of [`each_call`] reads.
const STREAM_CHUNK: Duration = Duration::from_secs(3_600);
/// How long [`each_call`] waits for a call's end before handing the call on without it.
pub const JOIN_WAIT: Duration = Duration::from_secs(86_400);

/// Takes the calls made before `before_ms` out of `pending`, time-ordered, and forgets the
/// ends waiting for accesses that old (they were not in the range).
fn release(
    pending: &mut HashMap<EventId, Call>,
    early: &mut HashMap<EventId, End>,
    before_ms: u64,
) -> Vec<Call> {
    let old: Vec<EventId> = pending
        .values()
        .filter(|c| c.at_ms < before_ms)
        .map(|c| c.id)
        .collect();
    let mut out: Vec<Call> = old.iter().filter_map(|id| pending.remove(id)).collect();
    early.retain(|id, _| id.0.timestamp_ms() >= before_ms);
    out.sort_by_key(|c| (c.at_ms, c.id));
    out
}

/// Reads `[from, to]` a `chunk` at a time, oldest first within each, handing each chunk's
/// start (milliseconds since the epoch) and events to `each`.
fn for_each_chunk(
    root: &Path,
    from: SystemTime,
    to: SystemTime,
    chunk: Duration,
    mut each: impl FnMut(u64, Vec<crate::audit::AuditEvent>),
) -> Result<ReadReport, StoreError> {
    let mut report = ReadReport::default();
    let held = store::open_for_query(root)?;
    let (mut at, mut to) = (from, to);
    if let Some((index, _, _)) = &held {
        // Only the stretch that holds events is read: a window of centuries over a month of
        // trail is a month of queries, not a hundred thousand years of empty days.
        let (_, oldest, newest) = index.summary()?;
        let time = |id: crate::audit::EventId| {
            std::time::UNIX_EPOCH + Duration::from_millis(id.0.timestamp_ms())
        };
        match (oldest, newest) {
            (Some(o), Some(n)) => {
                at = at.max(time(o));
                to = to.min(time(n) + Duration::from_millis(1));
            }
            _ => to = at.checked_sub(Duration::from_micros(1)).unwrap_or(at),
        }
    }
    while at <= to {
        let end = (at + chunk).min(to + Duration::from_micros(1));
        let filter = Filter {
            since: Some(at),
            until: Some(end - Duration::from_micros(1)),
            ..Filter::default()
        };
        let mut events = match &held {
            Some((index, _, _)) => index.newest(usize::MAX, &filter)?,
            None => {
                let (events, damaged) = store::newest_from_journals(root, usize::MAX, &filter)?;
                report.damaged.extend(damaged);
                events
            }
        };
        events.reverse(); // oldest first: ends come after their access
        report.events += events.len();
        each(
            at.duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            events,
        );
        at = end;
    }
    match held {
        Some((index, _lock, opened)) => {
            index.close()?;
            report.opened = Some(opened);
        }
        None => report.from_journals = true,
    }
    Ok(report)
}
