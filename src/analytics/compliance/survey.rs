//! One pass over the trail of a window, gathering every fact the compliance rules of all three
//! regulations read ([`Facts`]), so that `compliance --regulation all` and the reports read the
//! store once.
//!
//! Memory is bounded whatever the window holds: the events of one chunk of the store (an hour
//! through the index), the calls still waiting for their end (in flight, or not yet past
//! `limits.call_timeout_ms`), counters, and at most [`SAMPLE`] event ids per finding.

use std::collections::{BTreeMap, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::Value;

use crate::audit::event::PersonalData;
use crate::audit::{AuditEvent, EventId, EventType, Outcome};
use crate::policy::classify::{Class, Classifiers, Finding};

/// Event ids kept per finding (the count has the total).
pub const SAMPLE: usize = 20;

/// How long after its call timeout an access event's end may still be written (the
/// timeout's failure event, the server's late answer, a shutdown), in milliseconds, before
/// the access counts as having no end.
pub const END_GRACE_MS: u64 = 60_000;

/// The tags of the three regulations, whose calls some rules look at on their own.
pub const REGULATION_TAGS: [&str; 3] = ["gdpr", "hipaa", "pci_dss"];

/// A count and the first event ids behind it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Sample {
    /// How many.
    pub count: u64,
    /// The first [`SAMPLE`] of them, in reading order (oldest first).
    pub ids: Vec<String>,
}

impl Sample {
    /// Counts one more, keeping its id while there is room.
    pub fn add(&mut self, id: EventId) {
        self.count += 1;
        if self.ids.len() < SAMPLE {
            self.ids.push(id.to_string());
        }
    }
}

/// What the calls tagged with one regulation's tag show.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TagFacts {
    /// Call events (access or end) carrying the tag.
    pub events: u64,
    /// Of them, those whose user is shared or unknown (`anonymous`, empty): not an
    /// individual's access.
    pub not_individual: Sample,
    /// Of them, those lacking the user or the tool.
    pub missing_fields: Sample,
}

/// Access events and their ends.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Pairs {
    /// `tool_access` events in the window.
    pub accesses: u64,
    /// Of them, those whose end event was found.
    pub ended: u64,
    /// Of them, those without an end although their call timeout (and [`END_GRACE_MS`]) has
    /// passed.
    pub without_end: Sample,
    /// Of them, those without an end whose call may still be running (younger than the
    /// timeout at `now`).
    pub in_flight: u64,
    /// Of them, those without an end when `limits.call_timeout_ms = 0` (no timeout: a call
    /// may run for ever, so a missing end proves nothing).
    pub open_without_timeout: Sample,
}

/// What [`crate::store::verify`] found in the store's journals (the whole store, not just the
/// window: a chain is checked from its start).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ChainFacts {
    /// Journals walked.
    pub journals: u64,
    /// Chained records.
    pub chained: u64,
    /// Unchained (legacy, format 1) records: nothing shows whether they were changed.
    pub legacy: u64,
    /// Checkpoints whose signature verified with the configured key.
    pub signed: u64,
    /// Checkpoints written without a key.
    pub unsigned: u64,
    /// Signed checkpoints not checked (no key configured to check them with).
    pub unchecked: u64,
    /// Findings (tampering) in all.
    pub findings: u64,
    /// The first findings, in words (`journal J: kind at place: detail`).
    pub first_findings: Vec<String>,
}

/// Audit store outages (`audit/store_outage` events) in the window.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Outages {
    /// The outage events.
    pub events: Sample,
    /// Events not stored during them (`audit_gap.events_lost`).
    pub events_lost: u64,
    /// Calls refused because the store could not record them (`audit_gap.events_refused`).
    pub events_refused: u64,
    /// Outages while `on_store_failure = "allow"`: calls went on unaudited.
    pub failed_open: Sample,
}

/// Everything the rules read from the trail.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Facts {
    /// Events in the window, of every type.
    pub events: u64,
    /// Call events (access, execution, failure) in the window.
    pub call_events: u64,
    /// Accesses and their ends.
    pub pairs: Pairs,
    /// Call events without `user_id` (PCI DSS 10.2.2 "user identification").
    pub missing_user: Sample,
    /// Call events without `tool_name` or `upstream` ("identity or name of affected ...
    /// resource").
    pub missing_resource: Sample,
    /// Access events (and unpaired failures) without a session and either an
    /// authentication method or a client address ("origination of event").
    pub missing_origin: Sample,
    /// End events whose `result` does not say success or failure (`initiated`).
    pub missing_outcome: Sample,
    /// End events of refused or blocked calls (`result` `refused` or `blocked`).
    pub refusals: Sample,
    /// Of them, those without the user, or without a reason or error code.
    pub refusals_incomplete: Sample,
    /// Audit store outages.
    pub outages: Outages,
    /// Events whose personal fields are stored in clear (not sealed under a user key).
    pub personal_clear: Sample,
    /// Events whose personal fields are stored encrypted.
    pub personal_encrypted: u64,
    /// Events whose personal fields were erased (their user's key destroyed).
    pub personal_erased: u64,
    /// Events whose stored arguments or error texts were scanned (those that have any).
    pub scanned: u64,
    /// Per class, events whose stored arguments or error texts still hold data of that class
    /// in clear (by the policy's classifiers, all classes on).
    pub unmasked: BTreeMap<Class, Sample>,
    /// Per regulation tag (`gdpr`, `hipaa`, `pci_dss`), the calls that carry it.
    pub tagged: BTreeMap<String, TagFacts>,
    /// Events still stored although their retention period has passed, per regulation tag
    /// (read up to a few hundred per tag, newest first).
    pub expired: BTreeMap<String, Sample>,
    /// The oldest event id in the store, when the index was read.
    pub oldest_event: Option<String>,
    /// The chain check; `None` when it was not run.
    pub chain: Option<ChainFacts>,
    /// Why the window's events could not all be read (a damaged or tampered record): the
    /// facts above then cover only what was read before, and no rule that rests on them
    /// passes.
    pub read_error: Option<String>,
}

/// Gathers [`Facts`] from events pushed in time order (oldest first; ends may come before
/// their access only within a chunk, which is re-ordered before pushing).
pub struct Survey {
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

impl Survey {
    /// A survey of `[since, until]`; `call_timeout` is `limits.call_timeout_ms` (`None`: 0).
    pub fn new(
        since: SystemTime,
        until: SystemTime,
        call_timeout: Option<std::time::Duration>,
    ) -> Survey {
        Survey {
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
            Some(PersonalData::Erased) => f.personal_erased += 1,
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

    /// Scans the event's stored arguments and error texts for data left in clear.
    fn scan(&mut self, e: &AuditEvent) {
        let mut classes = [false; Class::ALL.len()];
        let mut any = false;
        if let Some(raw) = &e.metadata.arguments {
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
