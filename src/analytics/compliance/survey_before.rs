//! The compliance survey's reading as it was before the one-pass journal scan (the window
//! read an hour at a time through the index, or a growing day at a time from the journals,
//! every event decoded in full and pushed oldest first into one survey that paired accesses
//! with their ends as time went by): kept for the tests, to show the scan gives the same
//! facts. Only [`Sample`] is the new one (the smallest ids, so that samples do not depend on
//! the reading order).

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::survey::{END_GRACE_MS, Facts, REGULATION_TAGS, SAMPLE, Sample};
use crate::audit::event::PersonalData;
use crate::audit::{AuditEvent, EventId, EventType, Outcome};
use crate::policy::classify::{Class, Classifiers, Finding};
use crate::store::retention::{Keep, Periods};
use crate::store::{self, Damage, Filter, StoreError};

/// Gathers [`Facts`] from events pushed in time order (oldest first; ends may come before
/// their access only within a chunk, which is re-ordered before pushing).
pub struct Before {
    since: SystemTime,
    until: SystemTime,
    timeout_ms: Option<u64>,
    classifiers: Classifiers,
    /// Accesses of the window waiting for their end: id -> access time in ms.
    open: HashMap<EventId, u64>,
    facts: Facts,
    findings: Vec<Finding>,
    /// How far the reading has come ([`Survey::reached`]).
    reached: Option<SystemTime>,
}

fn ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Before {
    /// A survey of `[since, until]`; `call_timeout` is `limits.call_timeout_ms` (`None`: 0).
    pub fn new(
        since: SystemTime,
        until: SystemTime,
        call_timeout: Option<std::time::Duration>,
    ) -> Before {
        Before {
            since,
            until,
            timeout_ms: call_timeout.map(|d| d.as_millis() as u64),
            classifiers: Classifiers::new(&Class::ALL),
            open: HashMap::new(),
            facts: Facts::default(),
            findings: Vec::new(),
            reached: None,
        }
    }

    /// Takes one event. Events after `until` only close calls of the window.
    pub fn push(&mut self, e: &AuditEvent) {
        let is_end = matches!(
            e.event_type,
            EventType::ToolExecution | EventType::ToolFailure
        );
        if is_end
            && let Some(access) = e.linked_event_id
            && self.open.remove(&access).is_some()
        {
            self.facts.pairs.ended += 1;
        }
        if e.timestamp < self.since || e.timestamp > self.until {
            return;
        }
        let f = &mut self.facts;
        f.events += 1;
        match e.metadata.personal_data {
            None => f.personal_clear.add(e.event_id),
            Some(PersonalData::Encrypted) => f.personal_encrypted += 1,
            // Never read from a store (`events` sets KeyMissing): unreadable either way; a
            // key gone off the record is the store findings' to count.
            Some(PersonalData::Erased | PersonalData::KeyMissing) => f.personal_erased += 1,
        }
        if let Some(gap) = &e.metadata.audit_gap {
            f.outages.events.add(e.event_id);
            f.outages.events_lost += gap.events_lost;
            f.outages.events_refused += gap.events_refused;
            if gap.on_store_failure == "allow" {
                f.outages.failed_open.add(e.event_id);
            }
        }
        let is_access = e.event_type == EventType::ToolAccess;
        if !is_access && !is_end {
            // A client's answer to a server's question stores what the person answered.
            if e.event_type == EventType::ServerRequest {
                self.scan(e);
            }
            return;
        }
        f.call_events += 1;
        if is_access {
            f.pairs.accesses += 1;
            self.open.insert(e.event_id, ms(e.timestamp));
        }
        if e.user_id.trim().is_empty() {
            f.missing_user.add(e.event_id);
        }
        if e.tool_name.is_none() || e.upstream.trim().is_empty() {
            f.missing_resource.add(e.event_id);
        }
        // An end linked to its access inherits the access's origin.
        if is_access || e.linked_event_id.is_none() {
            let http = e.metadata.http.as_deref();
            let origin = e.metadata.auth_method.is_some()
                || http.is_some_and(|h| h.client_address.is_some());
            if e.session_id.trim().is_empty() || !origin {
                f.missing_origin.add(e.event_id);
            }
        }
        if is_end {
            if e.result == Outcome::Initiated {
                f.missing_outcome.add(e.event_id);
            }
            if matches!(e.result, Outcome::Refused | Outcome::Blocked) {
                f.refusals.add(e.event_id);
                let why = e.metadata.reason.is_some() || e.metadata.error_code.is_some();
                if e.user_id.trim().is_empty() || !why {
                    f.refusals_incomplete.add(e.event_id);
                }
            }
        }
        for tag in REGULATION_TAGS {
            if e.compliance_tags.iter().any(|t| t == tag) {
                let t = f.tagged.entry(tag.to_string()).or_default();
                t.events += 1;
                let user = e.user_id.trim();
                if user.is_empty() || user.eq_ignore_ascii_case("anonymous") {
                    t.not_individual.add(e.event_id);
                }
                if user.is_empty() || e.tool_name.is_none() {
                    t.missing_fields.add(e.event_id);
                }
            }
        }
        self.scan(e);
    }

    /// Scans the event's stored arguments, inputResponses and error texts for data left in
    /// clear.
    fn scan(&mut self, e: &AuditEvent) {
        let mut classes = [false; Class::ALL.len()];
        let mut any = false;
        let m = &e.metadata;
        for raw in [&m.arguments, &m.input_responses].into_iter().flatten() {
            any = true;
            match serde_json::from_str::<Value>(raw.get()) {
                Ok(v) => self.scan_value(None, &v, &mut classes),
                Err(_) => self.scan_text(raw.get(), &mut classes),
            }
        }
        for text in &e.metadata.error_messages {
            any = true;
            self.scan_text(text, &mut classes);
        }
        if !any {
            return;
        }
        self.facts.scanned += 1;
        for c in Class::ALL {
            if classes[c as usize] {
                self.facts.unmasked.entry(c).or_default().add(e.event_id);
            }
        }
    }

    fn scan_text(&mut self, text: &str, classes: &mut [bool]) {
        self.findings.clear();
        self.classifiers.scan(text, &mut self.findings);
        for f in &self.findings {
            classes[f.class as usize] = true;
        }
    }

    fn scan_value(&mut self, key: Option<&str>, v: &Value, classes: &mut [bool]) {
        match v {
            Value::String(s) => {
                if key.is_some_and(|k| self.classifiers.field_secret(k, s)) {
                    classes[Class::Secret as usize] = true;
                }
                self.scan_text(s, classes);
            }
            Value::Number(n) => self.scan_text(&n.to_string(), classes),
            Value::Array(items) => {
                for i in items {
                    self.scan_value(None, i, classes);
                }
            }
            Value::Object(map) => {
                for (k, v) in map {
                    self.scan_value(Some(k), v, classes);
                }
            }
            Value::Bool(_) | Value::Null => {}
        }
    }

    /// The reading has reached `at`: accesses whose end can no longer come count as without
    /// one (keeps the waiting set to the calls in flight).
    pub fn reached(&mut self, at: SystemTime) {
        self.reached = Some(at);
        let Some(timeout) = self.timeout_ms else {
            return;
        };
        let at = ms(at);
        let mut gone: Vec<(u64, EventId)> = self
            .open
            .iter()
            .filter(|(_, t)| **t + timeout + END_GRACE_MS < at)
            .map(|(id, t)| (*t, *id))
            .collect();
        gone.sort_unstable();
        for (_, id) in gone {
            self.open.remove(&id);
            self.facts.pairs.without_end.add(id);
        }
    }

    /// The facts of what was read when reading stopped part-way (`error`): calls still
    /// waiting count as in flight, since their end may be in what was not read.
    pub fn finish_partial(mut self, error: String) -> Facts {
        if let Some(at) = self.reached {
            self.reached(at);
        }
        self.facts.pairs.in_flight += self.open.len() as u64;
        self.facts.read_error = Some(error);
        self.facts
    }

    /// The facts, once everything up to `read_to` (the end of what was read: `until` plus the
    /// time an end may take, at most `now`) has been pushed.
    pub fn finish(mut self, read_to: SystemTime) -> Facts {
        self.reached(read_to);
        let mut left: Vec<(u64, EventId)> = self.open.iter().map(|(id, t)| (*t, *id)).collect();
        left.sort_unstable();
        for (_, id) in left {
            match self.timeout_ms {
                Some(_) => self.facts.pairs.in_flight += 1,
                None => self.facts.pairs.open_without_timeout.add(id),
            }
        }
        self.facts
    }
}

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
    /// Per tag, events kept past their period.
    pub expired: Vec<(String, Sample)>,
}

/// Pushes every event of `[from, to]` into `survey`, oldest first, and reads for each of
/// `tags` the events kept past their period at `now`.
pub fn read(
    root: &Path,
    from: SystemTime,
    to: SystemTime,
    survey: &mut Before,
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
