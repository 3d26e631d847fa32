//! Analytics over the trail: anomaly detection (and, later, behaviour analysis, compliance
//! checks and reports). Never on the message path: these read stored events after the fact,
//! from the store or from an exported or generated JSON-lines file.
//!
//! The unit of analysis is a *call*: a `tool_access` event joined with its end event (the
//! access carries who, what, from where and with which arguments; the end carries the outcome,
//! the execution time and the output size). [`calls`] makes them from events in any order.
//!
//! Detectors judge each identity against its own history, and each change against the
//! population: real traffic is full of benign change that a per-user detector alone would
//! flag (a team-wide rollout, client auto-updates, a VPN renumbering, on-call nights,
//! month-end load). What the operator knows goes in [`Context`]: service accounts (24/7 by
//! design) and the networks they own, with their places for impossible-travel checks.

pub mod anomalies;
pub mod behaviour;
pub mod compliance;
pub mod quality;
pub mod read;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::audit::{AuditEvent, EventId, EventType, Outcome, RiskLevel};

/// One tool call: its access event joined with its end.
#[derive(Debug, Clone)]
pub struct Call {
    /// The access event's id (evidence points at it).
    pub id: EventId,
    /// When the call was requested, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// `user_id`.
    pub user: Arc<str>,
    /// `tool_name` (`?` when the request was too broken to tell).
    pub tool: Arc<str>,
    /// `session_id`.
    pub session: Arc<str>,
    /// `metadata.http.client_address`, for calls through the gateway.
    pub ip: Option<IpAddr>,
    /// The client as `name/version` (`metadata.user_agent`, else the HTTP `User-Agent`).
    pub client: Option<Arc<str>>,
    /// The string members of the stored arguments object, `(name, value)` in the stored
    /// order (what the detectors read: argument shapes and destinations). Other members and
    /// non-object arguments are left out: a parsed `Value` map cost about 700 bytes per call
    /// held (a B-tree node per object), most of the detectors' memory on large trails.
    pub arguments: Box<[(Box<str>, Box<str>)]>,
    /// `compliance_tags` of the access event.
    pub tags: Vec<String>,
    /// The principal's roles (`metadata.http.roles`).
    pub roles: Vec<String>,
    /// `risk_level` of the access event.
    pub risk: RiskLevel,
    /// `metadata.risk_reasons` of the access event, kept only at `high` and above (what
    /// `analyze` lists as high-risk activity).
    pub risk_reasons: Vec<String>,
    /// The end event, when it is in the input.
    pub end: Option<End>,
}

impl Call {
    /// The call's risk: the access event's, or its end's when the result raised it.
    pub fn risk(&self) -> RiskLevel {
        self.end.map_or(self.risk, |e| e.risk.max(self.risk))
    }
}

/// What a call's end event says.
#[derive(Debug, Clone, Copy)]
pub struct End {
    /// The end event's id.
    pub id: EventId,
    /// The tool returned an error result, or the call failed.
    pub failed: bool,
    /// The end event's `result`.
    pub result: Outcome,
    /// The end event's `risk_level` (a result's scan may raise it).
    pub risk: RiskLevel,
    /// `metadata.execution_time_us`.
    pub execution_us: Option<u64>,
    /// `metadata.output_size_bytes`.
    pub output_bytes: Option<u64>,
    /// The end event carries a regulation's tag ([`REGULATED`]): the result held personal,
    /// health or card data, though the arguments may not show it (a customer id).
    pub regulated: bool,
}

/// The tags of the regulations whose data makes a call sensitive (`compliance_tags`): the
/// compliance survey's own list.
pub const REGULATED: [&str; 3] = compliance::survey::REGULATION_TAGS;

/// What the operator knows about accounts and networks (`[analytics]` in `proxy.toml`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Context {
    /// Accounts that run around the clock by design: never judged on their hours.
    #[serde(default)]
    pub service_accounts: Vec<String>,
    /// Networks the organisation owns or uses (offices, VPN pools).
    #[serde(default)]
    pub networks: Vec<Network>,
    /// Users' time zones, minutes east of UTC (fixed offsets); others are inferred from
    /// their hours ([`behaviour::usual_offset`]).
    #[serde(default)]
    pub time_zones: std::collections::BTreeMap<String, i32>,
}

/// A known network.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Network {
    /// `10.1.0.0/16`.
    pub cidr: ipnet::IpNet,
    /// A name for reports (`office-berlin`, `vpn`).
    pub name: String,
    /// Where it is, if it is one place (a VPN pool is not).
    #[serde(default)]
    pub place: Option<String>,
    /// Latitude and longitude of that place, in degrees, for impossible travel.
    #[serde(default)]
    pub lat: Option<f64>,
    /// See `lat`.
    #[serde(default)]
    pub lon: Option<f64>,
}

impl Context {
    /// The known network `ip` belongs to (the most specific).
    pub fn network(&self, ip: IpAddr) -> Option<&Network> {
        self.networks
            .iter()
            .filter(|n| n.cidr.contains(&ip))
            .max_by_key(|n| n.cidr.prefix_len())
    }
}

/// Joins access events with their end events into calls, ordered by time. Ends whose access
/// is not in the input are skipped; accesses without an end have `end: None`.
pub fn calls(events: impl IntoIterator<Item = AuditEvent>) -> Vec<Call> {
    let mut joiner = Joiner::default();
    for e in events {
        joiner.push(e);
    }
    joiner.finish()
}

/// Shares the texts many calls repeat (users, tools, sessions, clients): a call held for the
/// detectors then points at one copy of each instead of owning its own (on a 10 M-event
/// trail, 5 M calls held with about 200 bytes of such text each).
#[derive(Debug, Default)]
pub struct Interner(HashSet<Arc<str>>);

impl Interner {
    /// Points `text` at the shared copy of its contents (making it the shared copy if new).
    pub fn share(&mut self, text: &mut Arc<str>) {
        match self.0.get(&**text) {
            Some(shared) => *text = shared.clone(),
            None => {
                self.0.insert(text.clone());
            }
        }
    }

    /// Shares `call`'s user, tool, session and client.
    pub fn call(&mut self, call: &mut Call) {
        self.share(&mut call.user);
        self.share(&mut call.tool);
        self.share(&mut call.session);
        if let Some(client) = &mut call.client {
            self.share(client);
        }
    }
}

/// Joins events into calls as they come, in any order (events from an exported or generated
/// file; the store is read by [`read`]): it holds one [`Call`] per access event and the ends
/// waiting for theirs.
#[derive(Debug, Default)]
pub struct Joiner {
    calls: Vec<Call>,
    texts: Interner,
    by_id: HashMap<EventId, usize>,
    /// Ends read before their access event (by the access event's id).
    waiting: HashMap<EventId, End>,
}

impl Joiner {
    /// Takes one event: an access becomes a call, an end joins its call (the first end wins,
    /// but a `task` end gives way to the task's final one); other event types are ignored.
    pub fn push(&mut self, e: AuditEvent) {
        match e.event_type {
            EventType::ToolAccess => {
                let m = &e.metadata;
                let http = m.http.as_deref();
                let i = self.calls.len();
                self.by_id.insert(e.event_id, i);
                let end = self.waiting.remove(&e.event_id);
                let mut call = Call {
                    id: e.event_id,
                    at_ms: e
                        .timestamp
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as u64),
                    tool: e.tool_name.as_deref().unwrap_or("?").into(),
                    session: e.session_id.into(),
                    ip: http
                        .and_then(|h| h.client_address.as_deref())
                        .and_then(|a| a.parse().ok()),
                    client: m
                        .user_agent
                        .clone()
                        .or_else(|| http.and_then(|h| h.user_agent.clone()))
                        .map(Into::into),
                    arguments: m
                        .arguments
                        .as_ref()
                        .map(|a| string_members(a.get()))
                        .unwrap_or_default(),
                    tags: e.compliance_tags,
                    roles: http.map(|h| h.roles.clone()).unwrap_or_default(),
                    risk: e.risk_level,
                    risk_reasons: if e.risk_level >= RiskLevel::High {
                        e.metadata.risk_reasons
                    } else {
                        Vec::new()
                    },
                    user: e.user_id.into(),
                    end,
                };
                self.texts.call(&mut call);
                self.calls.push(call);
            }
            EventType::ToolExecution | EventType::ToolFailure => {
                let Some(access) = e.linked_event_id else {
                    return;
                };
                let end = End {
                    id: e.event_id,
                    failed: is_failure(e.result),
                    result: e.result,
                    risk: e.risk_level,
                    execution_us: e.metadata.execution_time_us,
                    output_bytes: e.metadata.output_size_bytes,
                    regulated: e
                        .compliance_tags
                        .iter()
                        .any(|t| REGULATED.contains(&t.as_str())),
                };
                // The first end holds, but a task's first end (`task`, the call became a task)
                // gives way to its final one (helper-94 F4).
                let replaces = |old: &Option<End>| {
                    old.is_none_or(|o| o.result == Outcome::Task && end.result != Outcome::Task)
                };
                match self.by_id.get(&access) {
                    Some(&i) => {
                        if replaces(&self.calls[i].end) {
                            self.calls[i].end = Some(end);
                        }
                    }
                    None => {
                        let slot = self.waiting.entry(access).or_insert(end);
                        if replaces(&Some(*slot)) {
                            *slot = end;
                        }
                    }
                }
            }
            _ => {}
        }
    }

    /// The calls in the order their access events came, and the ends still waiting for
    /// theirs (by the access event's id): for a reader that joins across batches.
    pub fn into_parts(self) -> (Vec<Call>, HashMap<EventId, End>) {
        (self.calls, self.waiting)
    }

    /// The calls, ordered by time (ends whose access never came are dropped).
    pub fn finish(self) -> Vec<Call> {
        let mut calls = self.calls;
        calls.sort_by_key(|c| (c.at_ms, c.id));
        calls
    }
}

/// Whether a call that ended with `result` failed (the tool returned an error result, or the
/// call did not complete).
pub(crate) fn is_failure(result: Outcome) -> bool {
    matches!(
        result,
        Outcome::Error
            | Outcome::JsonrpcError
            | Outcome::Timeout
            | Outcome::ServerExit
            | Outcome::Refused
            | Outcome::Blocked
    )
}

/// The string members of a JSON object's text, `(name, value)` in order; nothing for any
/// other JSON (or text that does not parse).
pub fn string_members(json: &str) -> Box<[(Box<str>, Box<str>)]> {
    match serde_json::from_str::<Value>(json) {
        Ok(Value::Object(m)) => m
            .into_iter()
            .filter_map(|(k, v)| match v {
                Value::String(s) => Some((k.into_boxed_str(), s.into_boxed_str())),
                _ => None,
            })
            .collect(),
        _ => Box::default(),
    }
}

/// Milliseconds since the epoch as RFC 3339 text (UTC, milliseconds), for findings' JSON.
pub(crate) mod ms_time {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::{Duration, UNIX_EPOCH};

    /// `ms` as `2026-10-05T09:00:00.000Z`.
    pub fn text(ms: u64) -> String {
        humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
    }

    pub fn serialize<S: Serializer>(ms: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&text(*ms))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let t = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        humantime::parse_rfc3339(&t)
            .map_err(serde::de::Error::custom)?
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod interner_tests {
    use super::*;

    /// A read is sensitive by what it returned: the end's regulation tag reaches the call
    /// (the detectors' read-then-send looks at it), other tags do not count.
    #[test]
    fn an_end_tagged_by_its_result_makes_its_call_regulated() {
        let mut got = Vec::new();
        for (n, tags) in [(0u64, vec!["gdpr"]), (2, vec!["internal"]), (4, vec![])] {
            let at = 1_780_000_000_000 + n;
            let mut access = AuditEvent::test_event(EventType::ToolAccess, Outcome::Initiated);
            access.event_id = EventId(ulid::Ulid::from_parts(at, 1));
            let mut end = AuditEvent::test_event(EventType::ToolExecution, Outcome::Success);
            end.event_id = EventId(ulid::Ulid::from_parts(at + 1, 1));
            end.linked_event_id = Some(access.event_id);
            end.compliance_tags = tags.into_iter().map(String::from).collect();
            got.extend(calls([end, access]));
        }
        let regulated: Vec<bool> = got.iter().map(|c| c.end.unwrap().regulated).collect();
        assert_eq!(regulated, [true, false, false]);
    }

    #[test]
    fn calls_joined_from_events_share_one_copy_of_each_repeated_text() {
        let access = |n: u64, user: &str| {
            let mut e = AuditEvent::test_event(EventType::ToolAccess, Outcome::Initiated);
            e.event_id = EventId(ulid::Ulid::from_parts(1_780_000_000_000 + n, 1));
            e.timestamp = UNIX_EPOCH + std::time::Duration::from_millis(1_780_000_000_000 + n);
            e.user_id = user.into();
            e.tool_name = Some("read_file".into());
            e.session_id = "s1".into();
            e
        };
        let got = calls([access(0, "alice"), access(1, "alice"), access(2, "bob")]);
        assert_eq!(got.len(), 3);
        let alice: Vec<&Call> = got.iter().filter(|c| &*c.user == "alice").collect();
        assert!(Arc::ptr_eq(&alice[0].user, &alice[1].user));
        assert!(Arc::ptr_eq(&got[0].tool, &got[2].tool));
        assert!(Arc::ptr_eq(&got[0].session, &got[2].session));
        let bob = got.iter().find(|c| &*c.user == "bob").unwrap();
        assert!(!Arc::ptr_eq(&alice[0].user, &bob.user));
    }
}
