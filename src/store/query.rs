//! Filtered queries over the index: which events a query wants ([`Filter`]), and how the index
//! finds them reading only what it returns.
//!
//! # Plan
//!
//! 1. The time range becomes ULID bounds (ULIDs order events by time, to the millisecond).
//! 2. Among the filters with posting lists (user, tool, session, upstream, tag, type, result,
//!    risk: the levels at or above the one asked for), the one with the fewest events
//!    (`counts`) drives; with none, the `events` tree itself, in the time range.
//! 3. The driver yields ids newest first ([`Merge`]: postings merged by their newest id),
//!    each once, only inside the time range.
//! 4. Each candidate's `events` entry (found in the chunks near its id) is checked against every other filter by its attributes
//!    (codes, tag mask, value hashes), without reading its journal.
//! 5. Only a candidate that passes is read from its journal and checked exactly
//!    ([`Filter::matches`], which also confirms hashes); the walk stops at the limit.
//!
//! A query's journal reads are thus the events it returns (plus the rare hash collision);
//! its index reads are the driver's ids down to the oldest event returned.

use std::collections::BinaryHeap;
use std::time::{Duration, SystemTime};

use super::StoreError;
use super::index::{
    Attrs, CHUNK_ENTRY_LEN, EVENT_VALUE_LEN, Field, Index, code, fnv, span_after, tag_bit,
    value_prefix,
};
use crate::audit::event::{AuditEvent, EventId, EventType, Outcome, RiskLevel};

/// Which events a query wants; unset fields match everything. Values are compared as the event
/// JSON spells them. Serialized as serde writes it in queries to the index holder
/// ([`super::serve`]).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Filter {
    /// Only this session (`session_id`).
    pub session: Option<String>,
    /// Only this tool (`tool_name`).
    pub tool: Option<String>,
    /// Only this user (`user_id`).
    pub user: Option<String>,
    /// The pseudonym under which `user`'s events are stored encrypted, while their key exists
    /// ([`super::personal::subject_of`]): the index and the journals hold that, not the name.
    pub user_subject: Option<String>,
    /// Only this event type.
    pub event_type: Option<EventType>,
    /// Only this result.
    pub result: Option<Outcome>,
    /// Only events at this risk level or above.
    pub min_risk: Option<RiskLevel>,
    /// Only events with this compliance tag.
    pub tag: Option<String>,
    /// Only this upstream (its configured name).
    pub upstream: Option<String>,
    /// Only events at or after this time (`timestamp`).
    pub since: Option<SystemTime>,
    /// Only events at or before this time.
    pub until: Option<SystemTime>,
}

impl Filter {
    /// Whether an event passes every set field.
    pub fn matches(&self, e: &AuditEvent) -> bool {
        self.session.as_ref().is_none_or(|s| *s == e.session_id)
            && self
                .tool
                .as_ref()
                .is_none_or(|t| Some(t) == e.tool_name.as_ref())
            && self.user.as_ref().is_none_or(|u| *u == e.user_id)
            && self.event_type.is_none_or(|t| t == e.event_type)
            && self.result.is_none_or(|r| r == e.result)
            && self.min_risk.is_none_or(|r| e.risk_level >= r)
            && self
                .tag
                .as_ref()
                .is_none_or(|t| e.compliance_tags.contains(t))
            && self.upstream.as_ref().is_none_or(|u| *u == e.upstream)
            && self.since.is_none_or(|t| e.timestamp >= t)
            && self.until.is_none_or(|t| e.timestamp <= t)
    }

    /// The smallest event id an event at or after `since` can have.
    pub fn lowest_id(&self) -> u128 {
        self.since.map_or(0, |t| u128::from(ms_of(t)) << 80)
    }

    /// The largest event id an event at or before `until` can have.
    pub fn highest_id(&self) -> u128 {
        self.until.map_or(u128::MAX, |t| {
            (u128::from(ms_of(t)) << 80) | ((1u128 << 80) - 1)
        })
    }

    /// The filters that have posting lists, each as the values any of which may match.
    fn posted(&self) -> Vec<(Field, Vec<&str>)> {
        let mut out = Vec::new();
        fn one(f: Field, v: &Option<String>) -> Option<(Field, Vec<&str>)> {
            v.as_deref().map(|v| (f, vec![v]))
        }
        if let Some(user) = &self.user {
            let mut names = vec![user.as_str()];
            names.extend(self.user_subject.as_deref());
            out.push((Field::User, names));
        }
        out.extend(one(Field::Tool, &self.tool));
        out.extend(one(Field::Session, &self.session));
        out.extend(one(Field::Upstream, &self.upstream));
        out.extend(one(Field::Tag, &self.tag));
        if let Some(t) = self.event_type {
            out.push((Field::Type, vec![t.as_str()]));
        }
        if let Some(r) = self.result {
            out.push((Field::Result, vec![r.as_str()]));
        }
        if let Some(min) = self.min_risk {
            let levels = RiskLevel::ALL.iter().filter(|l| **l >= min);
            out.push((Field::Risk, levels.map(|l| l.as_str()).collect()));
        }
        out
    }

    /// Whether an `events` entry's attributes may match (a hash may collide: "maybe").
    fn may_match(&self, a: &Attrs) -> bool {
        let hash = |v: &Option<String>| v.as_deref().map(fnv);
        self.event_type
            .is_none_or(|t| a.event_type == code(&EventType::ALL, &t))
            && self
                .result
                .is_none_or(|r| a.result == code(&Outcome::ALL, &r))
            && self
                .min_risk
                .is_none_or(|r| a.risk >= code(&RiskLevel::ALL, &r))
            && self.tag.as_deref().is_none_or(|t| a.tags & tag_bit(t) != 0)
            && (hash(&self.user).is_none_or(|h| h == a.user)
                || hash(&self.user_subject).is_some_and(|h| h == a.user))
            && hash(&self.tool).is_none_or(|h| h == a.tool)
            && hash(&self.session).is_none_or(|h| h == a.session)
            && hash(&self.upstream).is_none_or(|h| h == a.upstream)
    }
}

fn ms_of(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64
}

/// Entries (id and, for event chunks, the event's value) newest first, each id once, within
/// `[lo, hi]`, from chunks or postings keyed by `prefix ‖ newest id ‖ oldest id`: they are
/// read in descending order of their newest id, and an id is returned once no unread one can
/// hold a newer one.
pub(crate) struct Merge {
    scans: Vec<std::iter::Peekable<std::iter::Rev<sled::Iter>>>,
    /// Each scan's prefix length (the newest id follows it in the key).
    prefix_lens: Vec<usize>,
    /// Bytes per entry in a value: 16 (postings: ids) or [`CHUNK_ENTRY_LEN`] (event chunks).
    width: usize,
    loaded: BinaryHeap<(u128, [u8; EVENT_VALUE_LEN])>,
    /// The last id returned: ids are returned in strictly descending order.
    below: Option<u128>,
    lo: u128,
    hi: u128,
}

impl Merge {
    /// The ids of any of `values` of `field`.
    pub(crate) fn postings(
        index: &Index,
        field: Field,
        values: &[&str],
        lo: u128,
        hi: u128,
    ) -> Self {
        let mut prefix = Vec::new();
        let prefixes = values.iter().map(|v| {
            value_prefix(&mut prefix, field, v);
            prefix.clone()
        });
        let prefixes: Vec<Vec<u8>> = prefixes.collect();
        Merge::new(&index.postings, &prefixes, 16, lo, hi)
    }

    /// Every event's id and value.
    pub(crate) fn events(index: &Index, lo: u128, hi: u128) -> Self {
        Merge::new(&index.events, &[Vec::new()], CHUNK_ENTRY_LEN, lo, hi)
    }

    fn new(tree: &sled::Tree, prefixes: &[Vec<u8>], width: usize, lo: u128, hi: u128) -> Self {
        // One whose newest id is past hi + MAX_SPAN_MS starts after hi: skip those.
        let top = span_after(hi);
        let mut scans = Vec::new();
        let mut prefix_lens = Vec::new();
        for prefix in prefixes {
            let start = [&prefix[..], &lo.to_be_bytes()].concat();
            let end = [&prefix[..], &top.to_be_bytes(), &[0xff; 16]].concat();
            scans.push(tree.range(start..=end).rev().peekable());
            prefix_lens.push(prefix.len());
        }
        Merge {
            scans,
            prefix_lens,
            width,
            loaded: BinaryHeap::new(),
            below: None,
            lo,
            hi,
        }
    }

    /// The newest id of the next unread chunk or posting of scan `i`.
    fn head(&mut self, i: usize) -> Option<u128> {
        let (key, _) = self.scans[i].peek()?.as_ref().ok()?;
        let at = self.prefix_lens[i];
        let bytes: [u8; 16] = key.get(at..at + 16)?.try_into().ok()?;
        Some(u128::from_be_bytes(bytes))
    }

    pub(crate) fn next(
        &mut self,
        index: &Index,
    ) -> Result<Option<(u128, [u8; EVENT_VALUE_LEN])>, StoreError> {
        loop {
            // The scan whose next chunk may hold the newest unread id.
            let mut frontier: Option<(usize, u128)> = None;
            for i in 0..self.scans.len() {
                if let Some(Err(_)) = self.scans[i].peek()
                    && let Some(Err(e)) = self.scans[i].next()
                {
                    return Err(index.err(e));
                }
                if let Some(h) = self.head(i)
                    && frontier.is_none_or(|(_, f)| h > f)
                {
                    frontier = Some((i, h));
                }
            }
            match (self.loaded.peek().map(|e| e.0), frontier) {
                (Some(top), f) if f.is_none_or(|(_, f)| top >= f) => {
                    let Some(entry) = self.loaded.pop() else {
                        continue;
                    };
                    if self.below.is_some_and(|b| top >= b) {
                        continue; // the same id in a chunk or posting applied twice
                    }
                    self.below = Some(top);
                    return Ok(Some(entry));
                }
                (_, Some((i, _))) => {
                    let Some(Ok((_, entries))) = self.scans[i].next() else {
                        continue;
                    };
                    for chunk in entries.chunks_exact(self.width) {
                        let id = u128::from_be_bytes(chunk[..16].try_into().unwrap_or_default());
                        if id >= self.lo && id <= self.hi && self.below.is_none_or(|b| id < b) {
                            let mut value = [0u8; EVENT_VALUE_LEN];
                            if chunk.len() == CHUNK_ENTRY_LEN {
                                value.copy_from_slice(&chunk[16..]);
                            }
                            self.loaded.push((id, value));
                        }
                    }
                }
                _ => return Ok(None),
            }
        }
    }
}

impl Index {
    /// What `store status` says of the events: their estimated number (from `counts`, where
    /// a re-applied record counts again), and the oldest and newest event ids. Reads a few
    /// keys, never the journals.
    pub fn summary(&self) -> Result<(u64, Option<EventId>, Option<EventId>), StoreError> {
        let types: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
        let count = self.count(Field::Type, &types)?;
        let ids = |key: &[u8]| -> Option<(u128, u128)> {
            let newest = u128::from_be_bytes(key.get(..16)?.try_into().ok()?);
            let oldest = u128::from_be_bytes(key.get(16..32)?.try_into().ok()?);
            Some((newest, oldest))
        };
        let newest = match self.events.last().map_err(|e| self.err(e))? {
            Some((key, _)) => ids(&key).map(|(n, _)| n),
            None => None,
        };
        // Chunks are keyed by their newest id; the oldest event is in one of the first
        // chunks, those whose newest id is within a chunk's span of the oldest seen.
        let mut oldest: Option<u128> = None;
        for key in self.events.iter().keys() {
            let key = key.map_err(|e| self.err(e))?;
            let Some((n, o)) = ids(&key) else { continue };
            if oldest.is_some_and(|min| n > span_after(min)) {
                break;
            }
            oldest = Some(oldest.map_or(o, |min| min.min(o)));
        }
        let id = |v: u128| EventId(v.into());
        Ok((count, oldest.map(id), newest.map(id)))
    }

    /// The estimated number of events with any of `values` in `field` (from `counts`).
    fn count(&self, field: Field, values: &[&str]) -> Result<u64, StoreError> {
        let mut prefix = Vec::new();
        let mut total = 0u64;
        for v in values {
            value_prefix(&mut prefix, field, v);
            if let Some(c) = self.counts.get(&prefix).map_err(|e| self.err(e))? {
                total += <[u8; 8]>::try_from(c.as_ref()).map_or(0, u64::from_be_bytes);
            }
        }
        Ok(total)
    }

    /// The newest events matching `filter`, newest first, at most `limit` (see the module
    /// docs for how they are found).
    pub fn newest(&self, limit: usize, filter: &Filter) -> Result<Vec<AuditEvent>, StoreError> {
        let (lo, hi) = (filter.lowest_id(), filter.highest_id());
        let mut out = Vec::new();
        if limit == 0 || lo > hi {
            return Ok(out);
        }
        let mut take = |id: u128, value: &[u8]| -> Result<bool, StoreError> {
            if Attrs::from_value(value).is_some_and(|a| filter.may_match(&a)) {
                let event = self.read(EventId(id.into()), value)?;
                if filter.matches(&event) {
                    out.push(event);
                }
            }
            Ok(out.len() < limit)
        };
        let mut driver = None;
        for (field, values) in filter.posted() {
            let n = self.count(field, &values)?;
            if driver.as_ref().is_none_or(|(_, _, best)| n < *best) {
                driver = Some((field, values, n));
            }
        }
        match driver {
            None => {
                let mut all = Merge::events(self, lo, hi);
                while let Some((id, value)) = all.next(self)? {
                    if !take(id, &value)? {
                        break;
                    }
                }
            }
            Some((field, values, _)) => {
                let mut ids = Merge::postings(self, field, &values, lo, hi);
                while let Some((id, _)) = ids.next(self)? {
                    let Some(value) = self.entry(id)? else {
                        continue;
                    };
                    if !take(id, &value)? {
                        break;
                    }
                }
            }
        }
        Ok(out)
    }
}
