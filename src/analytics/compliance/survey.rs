//! One pass over the trail of a window, gathering every fact the compliance rules of all three
//! regulations read ([`Facts`]), so that `compliance --regulation all` and the reports read the
//! store once.
//!
//! The facts are counts, and samples of at most [`SAMPLE`] event ids (the smallest ids, so
//! the oldest events: whatever order the events came in), so they do not depend on the
//! order the events are read in: the store is read on several threads, one [`Survey`] per
//! thread ([`crate::store::scan::events`]), and their facts are summed ([`Facts::merge`]).
//! The one thing that needs two events is the pairing of an access with its end; it is made
//! per journal (a call's access and end are written by the process that ran it, into its
//! own journal), in any order within it: an end counts when its time is not before its
//! access's and not more than `limits.call_timeout_ms` + [`END_GRACE_MS`] after it (with no
//! timeout, any time up to the end of what is read).
//!
//! Memory is bounded whatever the window holds: per thread, the calls of the journal being
//! read that still wait for their end (in flight, or not yet [`PAIR_WAIT`] of the journal's
//! time past their timeout), ends read before their access (for as long), counters, and at
//! most [`SAMPLE`] event ids per finding.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::Value;

use crate::audit::event::PersonalData;
use crate::audit::{AuditEvent, EventId, EventType, Outcome};
use crate::policy::classify::{Class, Classifiers, Finding};
use crate::store::scan::{self, ById, Event, Sink};

/// Event ids kept per finding (the count has the total).
pub const SAMPLE: usize = 20;

/// How long after its call timeout an access event's end may still be written (the
/// timeout's failure event, the server's late answer, a shutdown), in milliseconds, before
/// the access counts as having no end.
pub const END_GRACE_MS: u64 = 60_000;

/// How much later in its journal's time (the latest event time read from it) an access
/// still waits for an end, past its timeout and [`END_GRACE_MS`]; an end read before its
/// access waits as long for it. Records are appended a little after their time is taken
/// (and `import` appends what its file holds in the file's order), so a journal is not
/// exactly in time order: the wait is the scan's own ([`crate::store::scan::JOIN_WAIT`]).
pub const PAIR_WAIT: Duration = scan::JOIN_WAIT;

/// The tags of the three regulations, whose calls some rules look at on their own.
pub const REGULATION_TAGS: [&str; 3] = ["gdpr", "hipaa", "pci_dss"];

/// A count and the smallest event ids behind it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Sample {
    /// How many.
    pub count: u64,
    /// The smallest [`SAMPLE`] of their ids, in order: ULIDs sort by time, so these are the
    /// oldest events (whatever order they were read in).
    pub ids: Vec<String>,
}

impl Sample {
    /// Counts one more, keeping its id if it is among the [`SAMPLE`] smallest.
    pub fn add(&mut self, id: EventId) {
        self.count += 1;
        let mut buf = [0u8; ulid::ULID_LEN];
        self.keep(id.0.array_to_str(&mut buf));
    }

    /// Keeps `id` (a ULID's text) if it is among the [`SAMPLE`] smallest.
    fn keep(&mut self, id: &str) {
        if self.ids.len() >= SAMPLE && self.ids.last().is_some_and(|l| l.as_str() <= id) {
            return;
        }
        let at = self.ids.partition_point(|s| s.as_str() <= id);
        self.ids.insert(at, id.to_string());
        self.ids.truncate(SAMPLE);
    }

    /// Counts one fewer, forgetting `id` if it was kept.
    fn remove(&mut self, id: EventId) {
        self.count = self.count.saturating_sub(1);
        let mut buf = [0u8; ulid::ULID_LEN];
        let text = id.0.array_to_str(&mut buf);
        self.ids.retain(|kept| kept != text);
    }

    /// Adds `other`'s count, keeping the smallest ids of both.
    pub fn merge(&mut self, other: Sample) {
        self.count += other.count;
        for id in &other.ids {
            self.keep(id);
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
    /// Of them, those whose end another process recorded (in its own journal): the proxy that
    /// ran them was killed or crashed, and the next to start ended them, outcome unknown
    /// ([`crate::audit::settle`]). Counted here, not in the three above.
    pub ended_by_another_process: Sample,
}

/// Where an access no end closed in its own journal was counted.
#[derive(Debug, Clone, Copy)]
enum Bucket {
    WithoutEnd,
    InFlight,
    NoTimeout,
}

/// At most this many accesses left open, and as many ends met without their access, are
/// kept per survey for pairing across journals: normally a handful (calls cut by a killed
/// proxy, calls across the window's start); past it, the rest stay as counted.
const LEFTOVERS: usize = 1 << 20;

/// What a survey could not pair inside a journal, for [`reconcile`]: accesses no end in their
/// journal closed (and where each was counted), and the accesses named by the ends later
/// proxies recorded for calls killed ones left open ([`crate::audit::settle`]).
#[derive(Default)]
pub struct Leftovers {
    open: Vec<(EventId, Bucket)>,
    ends: std::collections::HashSet<EventId>,
}

impl Leftovers {
    /// Adds `other`'s.
    pub fn merge(&mut self, other: Leftovers) {
        self.open.extend(other.open);
        self.ends.extend(other.ends);
    }

    fn end(&mut self, of: EventId) {
        if self.ends.len() < LEFTOVERS {
            self.ends.insert(of);
        }
    }
}

/// Pairs across journals what each journal left unpaired (the merged [`Leftovers`] of every
/// survey of the window): an access whose end is in another journal moves from where it was
/// counted to [`Pairs::ended_by_another_process`].
pub fn reconcile(pairs: &mut Pairs, left: &Leftovers) {
    for &(id, bucket) in &left.open {
        if !left.ends.contains(&id) {
            continue;
        }
        match bucket {
            Bucket::WithoutEnd => pairs.without_end.remove(id),
            Bucket::InFlight => pairs.in_flight = pairs.in_flight.saturating_sub(1),
            Bucket::NoTimeout => pairs.open_without_timeout.remove(id),
        }
        pairs.ended_by_another_process.add(id);
    }
}

/// What [`crate::store::verify`] found in the store's journals (the whole store, not just the
/// window: a chain is checked from its start).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ChainFacts {
    /// Whether the chains were walked: not under `--no-verify`, where these facts hold only
    /// the losses the store already knew of (the counts below are then zero, not evidence).
    pub walked: bool,
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
    /// Why the index could not be compared with the journals: this account cannot write
    /// the store ([`crate::store::write_denied`]); a journal deleted whole would not show.
    pub write_denied: Option<String>,
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
    /// Of them, those `import` brought in (`metadata.imported`): counted in what the trail
    /// holds (fields, masking, retention), but not in [`Facts::pairs`], [`Facts::refusals`]
    /// or [`Facts::outages`], which attest how this store's proxies record calls.
    pub imported: Sample,
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
    /// (judged as retention does: an event that a longer tag keeps is not counted).
    pub expired: BTreeMap<String, Sample>,
    /// The chain check; `None` when it was not run.
    pub chain: Option<ChainFacts>,
    /// Why the window's events could not all be read (a damaged or tampered record): the
    /// facts above then cover only what was read before, and no rule that rests on them
    /// passes.
    pub read_error: Option<String>,
}

impl TagFacts {
    fn merge(&mut self, other: TagFacts) {
        self.events += other.events;
        self.not_individual.merge(other.not_individual);
        self.missing_fields.merge(other.missing_fields);
    }
}

impl Pairs {
    fn merge(&mut self, other: Pairs) {
        self.accesses += other.accesses;
        self.ended += other.ended;
        self.without_end.merge(other.without_end);
        self.in_flight += other.in_flight;
        self.open_without_timeout.merge(other.open_without_timeout);
        self.ended_by_another_process
            .merge(other.ended_by_another_process);
    }
}

impl Outages {
    fn merge(&mut self, other: Outages) {
        self.events.merge(other.events);
        self.events_lost += other.events_lost;
        self.events_refused += other.events_refused;
        self.failed_open.merge(other.failed_open);
    }
}

impl Facts {
    /// Adds the facts of another part of the window's events (another reading thread's
    /// journals): counts summed, samples keeping the smallest ids, the first read error kept.
    /// `expired` and `chain` are not per-event facts: `other`'s are taken where this has none.
    pub fn merge(&mut self, other: Facts) {
        self.events += other.events;
        self.imported.merge(other.imported);
        self.call_events += other.call_events;
        self.pairs.merge(other.pairs);
        self.missing_user.merge(other.missing_user);
        self.missing_resource.merge(other.missing_resource);
        self.missing_origin.merge(other.missing_origin);
        self.missing_outcome.merge(other.missing_outcome);
        self.refusals.merge(other.refusals);
        self.refusals_incomplete.merge(other.refusals_incomplete);
        self.outages.merge(other.outages);
        self.personal_clear.merge(other.personal_clear);
        self.personal_encrypted += other.personal_encrypted;
        self.personal_erased += other.personal_erased;
        self.scanned += other.scanned;
        for (class, sample) in other.unmasked {
            self.unmasked.entry(class).or_default().merge(sample);
        }
        for (tag, t) in other.tagged {
            self.tagged.entry(tag).or_default().merge(t);
        }
        for (tag, sample) in other.expired {
            self.expired.entry(tag).or_insert(sample);
        }
        if self.chain.is_none() {
            self.chain = other.chain;
        }
        if self.read_error.is_none() {
            self.read_error = other.read_error;
        }
    }
}

/// Gathers [`Facts`] from the events of a window, taken in any order within a journal, the
/// journals one after the other ([`Sink::journal_read`] between them); several surveys of
/// the same window over different journals are merged with [`Facts::merge`].
pub struct Survey {
    since: SystemTime,
    until: SystemTime,
    /// `limits.call_timeout_ms` + [`END_GRACE_MS`], in ms; `None` without a timeout.
    end_within_ms: Option<u64>,
    /// The end of what is read, ms: an access without an end whose timeout and grace had
    /// passed by then counts as without one, a younger one as in flight.
    read_to_ms: u64,
    classifiers: Classifiers,
    findings: Vec<Finding>,
    facts: Facts,
    /// The current journal's accesses and ends waiting for each other.
    pairing: Pairing,
    /// What no journal paired so far.
    leftovers: Leftovers,
}

/// One journal's accesses of the window waiting for their end, and ends waiting for their
/// access; times in microseconds since the epoch.
#[derive(Default)]
struct Pairing {
    /// Access id -> its time.
    open: HashMap<EventId, u64, ById>,
    /// Access id -> the times of ends read before it.
    early: HashMap<EventId, Vec<u64>, ById>,
    /// The latest event time read from the journal.
    clock_us: u64,
    /// Waiting entries at which to drop those [`PAIR_WAIT`] behind the clock.
    sweep_at: usize,
}

/// Entries a journal's pairing holds before it first drops the stale ones.
const SWEEP_FIRST: usize = 4096;

fn ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn us(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros().min(u128::from(u64::MAX)) as u64)
}

impl Survey {
    /// A survey of `[since, until]`; `call_timeout` is `limits.call_timeout_ms` (`None`: 0);
    /// `read_to` is the end of what will be read (`until` plus the time an end may take, at
    /// most now).
    pub fn new(
        since: SystemTime,
        until: SystemTime,
        call_timeout: Option<Duration>,
        read_to: SystemTime,
    ) -> Survey {
        Survey {
            since,
            until,
            end_within_ms: call_timeout.map(|d| d.as_millis() as u64 + END_GRACE_MS),
            read_to_ms: ms(read_to),
            classifiers: Classifiers::new(&Class::ALL),
            findings: Vec::new(),
            facts: Facts::default(),
            pairing: Pairing {
                sweep_at: SWEEP_FIRST,
                ..Pairing::default()
            },
            leftovers: Leftovers::default(),
        }
    }

    /// Takes one decoded event (as [`Sink::event`] does a scanned one): for the tests, and
    /// for readers that decode events in full.
    pub fn push(&mut self, e: &AuditEvent) {
        let m = &e.metadata;
        let tags: Vec<Cow<'_, str>> = e
            .compliance_tags
            .iter()
            .map(|t| t.as_str().into())
            .collect();
        let errors: Vec<Cow<'_, str>> =
            m.error_messages.iter().map(|t| t.as_str().into()).collect();
        let gap = m.audit_gap.as_deref().map(|g| scan::Gap {
            on_store_failure: g.on_store_failure.as_str().into(),
            events_lost: g.events_lost,
            events_refused: g.events_refused,
        });
        self.event(&Event {
            id: e.event_id,
            timestamp: e.timestamp,
            event_type: e.event_type,
            result: e.result,
            linked: e.linked_event_id,
            user: &e.user_id,
            tool: e.tool_name.as_deref(),
            upstream: &e.upstream,
            session: &e.session_id,
            tags: &tags,
            auth_method: m.auth_method.as_deref(),
            client_address: m.http.as_deref().and_then(|h| h.client_address.as_deref()),
            reason: m.reason.as_deref(),
            error_code: m.error_code,
            arguments: m.arguments.as_deref(),
            input_responses: m.input_responses.as_deref(),
            error_messages: &errors,
            gap: gap.as_ref(),
            personal: m.personal_data,
            imported: m.imported.is_some(),
        });
    }

    /// Whether an end at `end_us` closes an access at `access_us`.
    fn closes(&self, access_us: u64, end_us: u64) -> bool {
        end_us >= access_us
            && self
                .end_within_ms
                .is_none_or(|within| end_us / 1000 <= access_us / 1000 + within)
    }

    /// An access of the window (at `at_us`) read.
    fn access(&mut self, id: EventId, at_us: u64) {
        if let Some(ends) = self.pairing.early.remove(&id)
            && ends.iter().any(|&end| self.closes(at_us, end))
        {
            self.facts.pairs.ended += 1;
            return;
        }
        self.pairing.open.insert(id, at_us);
    }

    /// An end (at `at_us`) of the access `of` read.
    fn end(&mut self, of: EventId, at_us: u64) {
        match self.pairing.open.get(&of) {
            Some(&access) if self.closes(access, at_us) => {
                self.pairing.open.remove(&of);
                self.facts.pairs.ended += 1;
            }
            // Read after its access but not closing it (before it, or too late).
            Some(_) => {}
            None => self.pairing.early.entry(of).or_default().push(at_us),
        }
    }

    /// An access that no end closed: without an end if its timeout and grace had passed by
    /// the end of what is read, else in flight; any access, without a timeout.
    fn unended(&mut self, id: EventId, at_us: u64) {
        let pairs = &mut self.facts.pairs;
        let bucket = match self.end_within_ms {
            Some(within) if at_us / 1000 + within < self.read_to_ms => {
                pairs.without_end.add(id);
                Bucket::WithoutEnd
            }
            Some(_) => {
                pairs.in_flight += 1;
                Bucket::InFlight
            }
            None => {
                pairs.open_without_timeout.add(id);
                Bucket::NoTimeout
            }
        };
        if self.leftovers.open.len() < LEFTOVERS {
            self.leftovers.open.push((id, bucket));
        }
    }

    /// Drops what waits more than [`PAIR_WAIT`] behind the journal's clock, when enough is
    /// held: an access then has no end, an end no access (amortised: the next sweep waits
    /// for twice what is left).
    fn sweep(&mut self) {
        let p = &mut self.pairing;
        if p.open.len() + p.early.len() < p.sweep_at {
            return;
        }
        let wait = PAIR_WAIT.as_micros() as u64;
        let horizon = p.clock_us.saturating_sub(wait);
        p.early
            .retain(|_, ends| ends.iter().any(|&end| end >= horizon));
        if let Some(within) = self.end_within_ms {
            let before = horizon.saturating_sub(within * 1000);
            let stale: Vec<(EventId, u64)> = p
                .open
                .iter()
                .filter(|(_, at)| **at < before)
                .map(|(id, at)| (*id, *at))
                .collect();
            for (id, at) in stale {
                self.pairing.open.remove(&id);
                self.unended(id, at);
            }
        }
        let p = &mut self.pairing;
        p.sweep_at = SWEEP_FIRST.max(2 * (p.open.len() + p.early.len()));
    }

    /// Scans the event's stored arguments, inputResponses and error texts for data left in
    /// clear.
    fn scan(&mut self, e: &Event<'_>) {
        let mut classes = [false; Class::ALL.len()];
        let mut any = false;
        for raw in [e.arguments, e.input_responses].into_iter().flatten() {
            any = true;
            match serde_json::from_str::<Value>(raw.get()) {
                Ok(v) => self.scan_value(None, &v, &mut classes),
                Err(_) => self.scan_text(raw.get(), &mut classes),
            }
        }
        for text in e.error_messages {
            any = true;
            self.scan_text(text, &mut classes);
        }
        if !any {
            return;
        }
        self.facts.scanned += 1;
        for c in Class::ALL {
            if classes[c as usize] {
                self.facts.unmasked.entry(c).or_default().add(e.id);
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

    /// The facts of what was read when reading stopped part-way (`error`): calls still
    /// waiting count as in flight, since their end may be in what was not read.
    pub fn finish_partial(mut self, error: String) -> Facts {
        self.facts.pairs.in_flight += self.pairing.open.len() as u64;
        self.facts.read_error = Some(error);
        self.facts
    }

    /// The facts, once every event up to `read_to` (see [`Survey::new`]) has been taken.
    pub fn finish(self) -> Facts {
        self.finish_with_leftovers().0
    }

    /// [`Survey::finish`], with what no journal paired, for [`reconcile`].
    pub fn finish_with_leftovers(mut self) -> (Facts, Leftovers) {
        self.journal_read();
        (self.facts, self.leftovers)
    }
}

impl Sink for Survey {
    /// Takes one event. Events after `until` only close calls of the window.
    fn event(&mut self, e: &Event<'_>) {
        let at_us = us(e.timestamp);
        self.pairing.clock_us = self.pairing.clock_us.max(at_us);
        let is_end = matches!(
            e.event_type,
            EventType::ToolExecution | EventType::ToolFailure
        );
        // The end a later proxy recorded for a call a killed one left open: in its own
        // journal, so it is paired across journals ([`reconcile`]).
        let settled = is_end
            && e.result == Outcome::Shutdown
            && e.reason
                .is_some_and(|r| r.starts_with(crate::audit::settle::REASON_START));
        // An imported event is evidence of what another trail held, not of how this store's
        // proxies record calls (helper-116 H1): it counts for the fields, masking and
        // retention rules, never for pairs, refusals or outages, and closes no call here.
        let own = !e.imported;
        if own
            && settled
            && let Some(access) = e.linked
        {
            self.leftovers.end(access);
        } else if own
            && is_end
            && let Some(access) = e.linked
        {
            self.end(access, at_us);
        }
        if e.timestamp < self.since || e.timestamp > self.until {
            self.sweep();
            return;
        }
        let f = &mut self.facts;
        f.events += 1;
        if !own {
            f.imported.add(e.id);
        }
        match e.personal {
            None => f.personal_clear.add(e.id),
            Some(PersonalData::Encrypted) => f.personal_encrypted += 1,
            // Never read from a store (`events` sets KeyMissing): unreadable either way; a
            // key gone off the record is the store findings' to count.
            Some(PersonalData::Erased | PersonalData::KeyMissing) => f.personal_erased += 1,
        }
        if let Some(gap) = e.gap.filter(|_| own) {
            f.outages.events.add(e.id);
            f.outages.events_lost += gap.events_lost;
            f.outages.events_refused += gap.events_refused;
            if gap.on_store_failure == "allow" {
                f.outages.failed_open.add(e.id);
            }
        }
        let is_access = e.event_type == EventType::ToolAccess;
        if !is_access && !is_end {
            // A client's answer to a server's question stores what the person answered: its
            // masking is checked as a call's arguments are.
            if e.event_type == EventType::ServerRequest {
                self.scan(e);
            }
            self.sweep();
            return;
        }
        f.call_events += 1;
        if is_access && own {
            f.pairs.accesses += 1;
        }
        if e.user.trim().is_empty() {
            f.missing_user.add(e.id);
        }
        if e.tool.is_none() || e.upstream.trim().is_empty() {
            f.missing_resource.add(e.id);
        }
        // An end linked to its access inherits the access's origin.
        if is_access || e.linked.is_none() {
            let origin = e.auth_method.is_some() || e.client_address.is_some();
            if e.session.trim().is_empty() || !origin {
                f.missing_origin.add(e.id);
            }
        }
        if is_end {
            if e.result == Outcome::Initiated {
                f.missing_outcome.add(e.id);
            }
            if own && matches!(e.result, Outcome::Refused | Outcome::Blocked) {
                f.refusals.add(e.id);
                let why = e.reason.is_some() || e.error_code.is_some();
                if e.user.trim().is_empty() || !why {
                    f.refusals_incomplete.add(e.id);
                }
            }
        }
        for tag in REGULATION_TAGS {
            if e.tags.iter().any(|t| t == tag) {
                let t = f.tagged.entry(tag.to_string()).or_default();
                t.events += 1;
                let user = e.user.trim();
                if user.is_empty() || user.eq_ignore_ascii_case("anonymous") {
                    t.not_individual.add(e.id);
                }
                if user.is_empty() || e.tool.is_none() {
                    t.missing_fields.add(e.id);
                }
            }
        }
        if is_access && own {
            self.access(e.id, at_us);
        }
        self.scan(e);
        self.sweep();
    }

    /// The journal is read: its accesses still waiting have no end.
    fn journal_read(&mut self) {
        let left: Vec<(EventId, u64)> = self.pairing.open.drain().collect();
        for (id, at) in left {
            self.unended(id, at);
        }
        self.pairing = Pairing {
            sweep_at: SWEEP_FIRST,
            ..Pairing::default()
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_keeps_the_smallest_ids_whatever_the_order_and_merges_so() {
        // 50 ids in a shuffled order (19 is prime to 50).
        let ids: Vec<EventId> = (0..50u64)
            .map(|i| EventId(ulid::Ulid::from_parts(1_790_000_000_000 + (i * 19) % 50, 1)))
            .collect();
        let mut a = Sample::default();
        for id in &ids {
            a.add(*id);
        }
        let mut sorted = ids.clone();
        sorted.sort();
        let want: Vec<String> = sorted[..SAMPLE].iter().map(|i| i.to_string()).collect();
        assert_eq!((a.count, &a.ids), (50, &want));
        let (mut b, mut c) = (Sample::default(), Sample::default());
        for (i, id) in ids.iter().rev().enumerate() {
            if i % 3 == 0 { b.add(*id) } else { c.add(*id) }
        }
        b.merge(c);
        assert_eq!(b, a);
    }
}
