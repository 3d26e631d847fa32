//! Reading the store for the facts: the window's events in one pass over the journals
//! ([`crate::store::scan::events`]: several threads, each with its own [`Survey`]), the
//! expired events of each tag (another pass, over what is older than the shortest period),
//! and the chain check of [`crate::store::verify`].
//!
//! The window is not read through the index: a range of millions of events read through it
//! is a point lookup per event, and every event decoded in full (124 s of a 30-day report
//! over 10 M events, 2026-12). Nor is the index needed, so a process holding it (a running
//! proxy) changes nothing; the expired events were paged through it too (sled opened:
//! ~150 MB and a second at 10 M events).

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use super::survey::{ChainFacts, SAMPLE, Sample, Survey};
use crate::store::retention::{Keep, Periods};
use crate::store::scan::{self, Scanned, Sink};
use crate::store::verify::JournalReport;
use crate::store::{self, Damage, StoreError};

/// Reads every event of `window`'s read range into surveys of it, one per reading thread,
/// on up to `workers` threads, walking every journal's chain on the way with `walk`; the
/// caller finishes and merges them ([`super::facts_of`]).
pub fn window(
    window: &super::Window,
    root: &Path,
    workers: usize,
    walk: Option<scan::WalkChains<'_>>,
) -> Scanned<Survey> {
    let (from, to) = window.read_range();
    scan::events_on(root, from, to, walk, workers, || window.survey())
}

/// What the read of the expired events met besides them.
#[derive(Debug, Default)]
pub struct Expired {
    /// Per tag with a period, events kept past it.
    pub tags: Vec<(String, Sample)>,
    /// Damaged journal segments met on the way.
    pub damaged: Vec<Damage>,
}

/// Counts, per tag, the events kept past their period, on one reading thread.
struct ExpiredSink<'a> {
    periods: &'a Periods,
    /// Each tag with a period, and the time its events must be older than.
    cutoffs: &'a [(String, SystemTime)],
    now: SystemTime,
    samples: Vec<Sample>,
}

impl Sink for ExpiredSink<'_> {
    fn event(&mut self, e: &scan::Event<'_>) {
        for ((tag, cutoff), sample) in self.cutoffs.iter().zip(&mut self.samples) {
            // Judged with the retention plan's own test (`Periods::expired`): an event a
            // longer tag keeps is not counted.
            if e.timestamp <= *cutoff
                && e.tags.iter().any(|t| t == tag)
                && self
                    .periods
                    .expired(e.timestamp, e.tags.iter().map(|t| &**t), self.now)
            {
                sample.add(e.id);
            }
        }
    }

    fn journal_read(&mut self) {}
}

/// Reads for each of `tags` with a period the events kept past it at `now`: one pass over
/// the journals up to the latest of those times, on up to `workers` threads (segments
/// newer than it are skipped by their span, so a store whose retention is applied reads
/// next to nothing). Not through the index, which a running proxy may hold.
pub fn expired(
    root: &Path,
    periods: &Periods,
    tags: &[&str],
    now: SystemTime,
    workers: usize,
) -> Result<Expired, StoreError> {
    let cutoffs: Vec<(String, SystemTime)> = tags
        .iter()
        .filter_map(|tag| match periods.tags.get(*tag).copied() {
            Some(Keep::For(period)) => now
                .checked_sub(period)
                .map(|before| (tag.to_string(), before)),
            _ => None,
        })
        .collect();
    let Some(latest) = cutoffs.iter().map(|(_, t)| *t).max() else {
        return Ok(Expired::default());
    };
    if latest < UNIX_EPOCH {
        return Ok(Expired {
            tags: cutoffs
                .into_iter()
                .map(|(tag, _)| (tag, Sample::default()))
                .collect(),
            damaged: Vec::new(),
        });
    }
    let scanned = scan::events_on(root, UNIX_EPOCH, latest, None, workers, || ExpiredSink {
        periods,
        cutoffs: &cutoffs,
        now,
        samples: vec![Sample::default(); cutoffs.len()],
    });
    let report = scanned.result?;
    let mut samples = vec![Sample::default(); cutoffs.len()];
    for sink in scanned.sinks {
        for (all, part) in samples.iter_mut().zip(sink.samples) {
            all.merge(part);
        }
    }
    Ok(Expired {
        tags: cutoffs
            .into_iter()
            .map(|(tag, _)| tag)
            .zip(samples)
            .collect(),
        damaged: report.damaged,
    })
}

/// The chain check of every journal, with `key` the configured signing key's public half,
/// and what the store as a whole shows ([`store::verify::store_findings`]: records an
/// index knew that the journals lost, keys deleted outside `erase`); not the index's own
/// entries (that is `verify`'s business).
pub fn chain(
    root: &Path,
    key: Option<&crate::store::checkpoint::TrustedKey>,
) -> Result<ChainFacts, StoreError> {
    let report = store::verify::verify_store(root, key, false)?;
    let mut facts = chain_facts(&report.journals);
    add_store_findings(
        &mut facts,
        report.index.findings.iter().chain(&report.keys.findings),
    );
    Ok(facts)
}

/// Counts the store's own findings (`verify`'s index and keys findings) with the chains':
/// each is tampering the integrity rules must not call compliant (helper-90 H3: a deleted
/// journal or key passed them while `verify` said NOT as written).
pub fn add_store_findings<'f>(
    facts: &mut ChainFacts,
    findings: impl IntoIterator<Item = &'f String>,
) {
    for f in findings {
        facts.findings += 1;
        if facts.first_findings.len() < SAMPLE {
            facts.first_findings.push(format!("store: {f}"));
        }
    }
}

/// The facts of the chain walks of `journals`, in journal order.
pub fn chain_facts<'j>(journals: impl IntoIterator<Item = &'j JournalReport>) -> ChainFacts {
    let mut facts = ChainFacts {
        walked: true,
        ..ChainFacts::default()
    };
    for j in journals {
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
    facts
}

#[cfg(test)]
#[path = "read_tests.rs"]
mod tests;
