//! Reading the store for a [`Survey`]: the window's events a chunk at a time through the
//! store's query API (an hour through the index; from the journals while another process
//! holds the index, a day growing while reads come back sparse, each read scanning back from
//! the newest record), the expired
//! events of a tag, and the chain check of [`crate::store::verify`].

use std::path::Path;
use std::time::{Duration, SystemTime};

use super::survey::{ChainFacts, SAMPLE, Sample, Survey};
use crate::store::retention::{Keep, Periods};
use crate::store::{self, Damage, Filter, StoreError};

/// A chunk read through the index.
const INDEX_CHUNK: Duration = Duration::from_secs(3600);
/// A chunk read from the journals (each read scans back from the newest record).
const JOURNAL_CHUNK: Duration = Duration::from_secs(86_400);
/// The events a read from the journals aims at (the chunk grows or shrinks towards it).
const JOURNAL_TARGET: usize = 20_000;
/// The longest chunk read from the journals (a year).
const JOURNAL_CHUNK_MAX: Duration = Duration::from_secs(365 * 86_400);
/// Expired events read per page of a tag.
const EXPIRED_READ: usize = 200;

/// What reading met besides the events.
#[derive(Debug, Default)]
pub struct Reading {
    /// Damaged journal segments (their records are not in the facts).
    pub damaged: Vec<Damage>,
    /// Whether the journals were read directly (another process holds the index).
    pub from_journals: bool,
    /// The oldest event id of the store (from the index).
    pub oldest: Option<String>,
    /// Per tag, events kept past their period.
    pub expired: Vec<(String, Sample)>,
}

/// Pushes every event of `[from, to]` into `survey`, oldest first, and reads for each of
/// `tags` the events kept past their period at `now`.
pub fn read(
    root: &Path,
    from: SystemTime,
    to: SystemTime,
    survey: &mut Survey,
    periods: &Periods,
    tags: &[&str],
    now: SystemTime,
) -> Result<Reading, StoreError> {
    let mut reading = Reading::default();
    let held = store::open_for_query(root)?;
    let chunk = if held.is_some() {
        INDEX_CHUNK
    } else {
        JOURNAL_CHUNK
    };
    let query = |filter: &Filter, limit: usize, damaged: &mut Vec<Damage>| match &held {
        Some((index, _, _)) => index.newest(limit, filter),
        None => {
            let (events, d) = store::newest_from_journals(root, limit, filter)?;
            damaged.extend(d);
            Ok(events)
        }
    };
    // Through the index, reading starts at the store's oldest event (a window reaching far
    // back would otherwise be read an empty hour at a time).
    let mut at = from;
    if let Some((index, _, _)) = &held {
        let oldest = index.summary()?.1;
        reading.oldest = oldest.map(|id| id.to_string());
        if let Some(id) = oldest {
            let first = std::time::UNIX_EPOCH + Duration::from_millis(id.0.timestamp_ms());
            // Its chunk starts an hour-aligned step before, so chunks stay on `from`'s grid.
            if first > at {
                let skip = first.duration_since(at).unwrap_or_default().as_secs() / 3600;
                at += Duration::from_secs(skip * 3600);
            }
        }
    }
    // From the journals every read scans back from the newest record, so a day at a time
    // over months re-read the store once a day of window (minutes for a few thousand
    // events). The chunk grows while reads come back sparse and shrinks when they come back
    // dense: a few reads for a sparse store, memory still bounded near JOURNAL_TARGET events.
    let mut chunk = chunk;
    while at <= to {
        let end = at
            .checked_add(chunk)
            .unwrap_or(to + Duration::from_micros(1))
            .min(to + Duration::from_micros(1));
        let filter = Filter {
            since: Some(at),
            until: Some(end - Duration::from_micros(1)),
            ..Filter::default()
        };
        let mut events = query(&filter, usize::MAX, &mut reading.damaged)?;
        if held.is_none() {
            if events.len() < JOURNAL_TARGET / 2 && chunk < JOURNAL_CHUNK_MAX {
                chunk = (chunk * 2).min(JOURNAL_CHUNK_MAX);
            } else if events.len() > JOURNAL_TARGET && chunk > JOURNAL_CHUNK {
                chunk = (chunk / 2).max(JOURNAL_CHUNK);
            }
        }
        events.reverse(); // oldest first: an access before its end
        for e in &events {
            survey.push(e);
        }
        survey.reached(end);
        at = end;
    }
    for tag in tags {
        let Some(Keep::For(period)) = periods.tags.get(*tag).copied() else {
            continue;
        };
        let Some(before) = now.checked_sub(period) else {
            continue;
        };
        let filter = Filter {
            tag: Some(tag.to_string()),
            until: Some(before),
            ..Filter::default()
        };
        // Page back through every event of the tag older than its period, a page at a time
        // (memory bounded by the page), judging each with the retention plan's own test
        // (`Periods::expired`): an event a longer tag keeps is not counted, and does not
        // hide older expired ones behind it.
        // Pages come newest first; the sample keeps the oldest ids (the last met), shown
        // oldest first as everywhere else.
        let mut count = 0u64;
        let mut oldest_ids: std::collections::VecDeque<crate::audit::EventId> =
            std::collections::VecDeque::new();
        let mut filter = filter;
        let mut boundary: Vec<crate::audit::EventId> = Vec::new();
        loop {
            let events = query(&filter, EXPIRED_READ, &mut reading.damaged)?;
            let full = events.len() >= EXPIRED_READ;
            let Some(last) = events.last() else { break };
            let oldest = last.timestamp;
            let mut next_boundary = Vec::new();
            for e in &events {
                if e.timestamp == oldest {
                    next_boundary.push(e.event_id);
                }
                if boundary.contains(&e.event_id) {
                    continue;
                }
                if periods.expired(
                    e.timestamp,
                    e.compliance_tags.iter().map(String::as_str),
                    now,
                ) {
                    count += 1;
                    if oldest_ids.len() == SAMPLE {
                        oldest_ids.pop_front();
                    }
                    oldest_ids.push_back(e.event_id);
                }
            }
            if !full {
                break;
            }
            // The next page ends at this page's oldest time (inclusive: events sharing it may
            // be on either side), leaving out the ones already counted; a page all of one
            // instant steps past it.
            if events.first().map(|e| e.timestamp) == Some(oldest) {
                let Some(before) = oldest.checked_sub(Duration::from_micros(1)) else {
                    break;
                };
                filter.until = Some(before);
                boundary.clear();
            } else {
                filter.until = Some(oldest);
                boundary = next_boundary;
            }
        }
        let mut sample = Sample::default();
        for id in oldest_ids.into_iter().rev() {
            sample.add(id);
        }
        sample.count = count;
        reading.expired.push((tag.to_string(), sample));
    }
    match held {
        Some((index, _lock, _)) => index.close()?,
        None => reading.from_journals = true,
    }
    Ok(reading)
}

/// The chain check of every journal (not the index: that is `verify`'s own business), with
/// `key` the configured signing key's public half.
pub fn chain(
    root: &Path,
    key: Option<&crate::store::checkpoint::TrustedKey>,
) -> Result<ChainFacts, StoreError> {
    let report = store::verify::verify_store(root, key, false)?;
    let mut facts = ChainFacts::default();
    for j in &report.journals {
        let c = &j.chain;
        facts.journals += 1;
        facts.chained += c.chained;
        facts.legacy += c.legacy;
        facts.signed += c.signed as u64;
        facts.unsigned += c.unsigned as u64;
        facts.unchecked += c.unchecked as u64;
        facts.findings += c.findings.len() as u64;
        for f in &c.findings {
            if facts.first_findings.len() < SAMPLE {
                facts.first_findings.push(format!(
                    "journal {}: {} at {}: {}",
                    j.journal,
                    f.kind.as_str(),
                    f.place,
                    f.detail
                ));
            }
        }
    }
    Ok(facts)
}
