//! Reading the store for the facts: the window's events in one pass over the journals
//! ([`crate::store::scan::events`]: several threads, each with its own [`Survey`]), the
//! expired events of a tag (through the index, a page at a time), and the chain check of
//! [`crate::store::verify`].
//!
//! The window is not read through the index: a range of millions of events read through it
//! is a point lookup per event, and every event decoded in full (124 s of a 30-day report
//! over 10 M events, 2026-12). Nor is the index needed for it, so a process holding the
//! index (a running proxy) changes nothing.

use std::path::Path;
use std::time::{Duration, SystemTime};

use super::survey::{ChainFacts, SAMPLE, Sample, Survey};
use crate::store::retention::{Keep, Periods};
use crate::store::scan::{self, Scanned};
use crate::store::{self, Damage, Filter, StoreError};

/// Expired events read per page of a tag.
const EXPIRED_READ: usize = 200;

/// Reads every event of `window`'s read range into surveys of it, one per reading thread,
/// on up to `workers` threads; the caller finishes and merges them ([`super::facts_of`]).
pub fn window(window: &super::Window, root: &Path, workers: usize) -> Scanned<Survey> {
    let (from, to) = window.read_range();
    scan::events_on(root, from, to, workers, || window.survey())
}

/// What the read of the expired events met besides them.
#[derive(Debug, Default)]
pub struct Expired {
    /// Per tag, events kept past their period.
    pub tags: Vec<(String, Sample)>,
    /// Damaged journal segments (when the journals were read: another process holds the
    /// index).
    pub damaged: Vec<Damage>,
}

/// Reads for each of `tags` with a period the events kept past it at `now`. The index is
/// opened only when some tag has a period; while another process holds it, the journals
/// are read (each page a scan back from the newest record).
pub fn expired(
    root: &Path,
    periods: &Periods,
    tags: &[&str],
    now: SystemTime,
) -> Result<Expired, StoreError> {
    let mut out = Expired::default();
    let cutoffs: Vec<(&str, SystemTime)> = tags
        .iter()
        .filter_map(|tag| match periods.tags.get(*tag).copied() {
            Some(Keep::For(period)) => now.checked_sub(period).map(|before| (*tag, before)),
            _ => None,
        })
        .collect();
    if cutoffs.is_empty() {
        return Ok(out);
    }
    let held = store::open_for_query(root)?;
    let query = |filter: &Filter, limit: usize, damaged: &mut Vec<Damage>| match &held {
        Some((index, _, _)) => index.newest(limit, filter),
        None => {
            let (events, d) = store::newest_from_journals(root, limit, filter)?;
            damaged.extend(d);
            Ok(events)
        }
    };
    for (tag, before) in cutoffs {
        let mut filter = Filter {
            tag: Some(tag.to_string()),
            until: Some(before),
            ..Filter::default()
        };
        // Page back through every event of the tag older than its period, a page at a time
        // (memory bounded by the page), judging each with the retention plan's own test
        // (`Periods::expired`): an event a longer tag keeps is not counted, and does not
        // hide older expired ones behind it. The sample keeps the smallest (oldest) ids.
        let mut sample = Sample::default();
        let mut boundary: Vec<crate::audit::EventId> = Vec::new();
        loop {
            let events = query(&filter, EXPIRED_READ, &mut out.damaged)?;
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
                    sample.add(e.event_id);
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
        out.tags.push((tag.to_string(), sample));
    }
    if let Some((index, _lock, _)) = held {
        index.close()?;
    }
    Ok(out)
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

#[cfg(test)]
#[path = "read_tests.rs"]
mod tests;
