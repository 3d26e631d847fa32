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

use super::{Call, Joiner};
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
    let mut report = ReadReport::default();
    let held = store::open_for_query(root)?;
    let mut at = from;
    while at <= to {
        let end = (at + CHUNK).min(to + Duration::from_micros(1));
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
        for e in events {
            joiner.push(e);
        }
        at = end;
    }
    match held {
        Some((index, _lock, opened)) => {
            index.close()?;
            report.opened = Some(opened);
        }
        None => report.from_journals = true,
    }
    Ok((joiner.finish(), report))
}
