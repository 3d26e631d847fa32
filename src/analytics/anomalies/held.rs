//! The calls as the anomaly detectors hold them: a row of numbers per call ([`Row`], 56
//! bytes), its texts (users, tools, client products, addresses, argument names, values and
//! shapes) once each in lists beside the rows.
//!
//! Why: `anomalies --since 7d` reads the window and its 28 days of history; on a 10 M-event
//! trail that is 5 M calls, and as [`Call`]s with their own texts and argument lists they took
//! 2.3 GB (BENCHMARKS.md; issue 10 item 7 asks for at most 500 MB). A row keeps what the
//! detectors read and nothing else: no session, risk, tags or roles per call (a user's latest
//! role is kept per user; whether a call read regulated data is one bit), the client as its
//! product (`name` of `name/version`), and the arguments as one number for their *judged form*
//! ([`Args`]): per member its name, its value when the member takes few values, its coarse
//! shape, whether it reaches a secret, and for an egress tool the destination.
//!
//! A member of a tool stops having its values kept once it has shown more than
//! [`FEW_VALUES`] distinct ones: the detectors judge such a member by shape only, so its
//! later values (ids that differ on every call) would only cost memory. Values that reach a
//! secret are kept whatever (their finding quotes them).

use std::net::IpAddr;
use std::sync::Arc;

use super::{HashMap, HashSet, destination, is_egress, product, risky_path, shape};
use crate::analytics::{Call, REGULATED};
use crate::audit::EventId;

/// No such thing: a call without an address, a client, an end, an end's figure, or a value
/// not kept.
pub(super) const NONE: u32 = u32::MAX;

/// The most distinct values of one tool's argument member that are kept; the member that
/// shows one more is judged by shape ([`super::unusual_arguments`]).
pub(super) const FEW_VALUES: usize = 64;

/// Texts, each once, by number (in the order first met).
#[derive(Debug, Default)]
pub(super) struct Names {
    list: Vec<Arc<str>>,
    ids: HashMap<Arc<str>, u32>,
}

impl Names {
    /// The number of `text`, giving it one if new.
    pub(super) fn id(&mut self, text: &str) -> u32 {
        if let Some(&i) = self.ids.get(text) {
            return i;
        }
        let i = self.list.len() as u32;
        let shared: Arc<str> = text.into();
        self.list.push(shared.clone());
        self.ids.insert(shared, i);
        i
    }

    /// The number of `text`, if it has one.
    pub(super) fn find(&self, text: &str) -> Option<u32> {
        self.ids.get(text).copied()
    }

    /// The text of number `i`.
    pub(super) fn get(&self, i: u32) -> &str {
        &self.list[i as usize]
    }

    pub(super) fn len(&self) -> usize {
        self.list.len()
    }
}

/// One call as the detectors read it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Row {
    /// The access event's id (a ULID) as two halves, high first: ordered as the id is.
    id: [u64; 2],
    /// When the call was requested, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// [`Held::users`] number.
    pub user: u32,
    /// [`Held::tools`] number.
    pub tool: u32,
    /// [`Held::ips`] index, or [`NONE`].
    pub ip: u32,
    /// [`Held::products`] number, or [`NONE`].
    pub product: u32,
    /// [`Held::args`] index.
    pub args: u32,
    /// The end's `execution_time_us`, NaN for none (no end, no figure). As `f32`: exact up to
    /// 2^24 µs (16.7 s), within a relative 6e-8 above (the detectors judge logarithms); a
    /// `u32` capped a job of more than 71.6 minutes.
    execution_us: f32,
    /// The end's `output_size_bytes`, NaN for none; as `execution_us` (exact up to 16 MiB).
    output_bytes: f32,
    flags: u8,
}

/// [`Row::flags`]: the call has an end in the input.
const ENDED: u8 = 1;
/// The end says the call failed ([`crate::analytics::End::failed`]).
const FAILED: u8 = 2;
/// The access event carries a regulation's tag, or its end does (the result held such data).
const REGULATED_READ: u8 = 4;

fn figure(v: Option<u64>) -> f32 {
    v.map_or(f32::NAN, |v| v as f32)
}

fn unfigure(v: f32) -> Option<u64> {
    (!v.is_nan()).then_some(v as u64)
}

impl Row {
    /// The access event's id.
    pub(super) fn id(&self) -> EventId {
        EventId(ulid::Ulid(
            (u128::from(self.id[0]) << 64) | u128::from(self.id[1]),
        ))
    }

    /// Whether the call's end is in the input.
    pub(super) fn ended(&self) -> bool {
        self.flags & ENDED != 0
    }

    /// Whether the call ended and failed.
    pub(super) fn failed(&self) -> bool {
        self.flags & FAILED != 0
    }

    /// Whether the call read data a regulation covers (by its tags or its end's).
    pub(super) fn regulated(&self) -> bool {
        self.flags & REGULATED_READ != 0
    }

    /// The end's execution time, µs.
    pub(super) fn execution_us(&self) -> Option<u64> {
        unfigure(self.execution_us)
    }

    /// The end's output size, bytes.
    pub(super) fn output_bytes(&self) -> Option<u64> {
        unfigure(self.output_bytes)
    }
}

/// One argument member in judged form.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct Arg {
    /// [`Held::members`] number.
    pub member: u32,
    /// [`Held::values`] number, or [`NONE`] when the member has too many values to keep.
    pub value: u32,
    /// [`Held::shapes`] number.
    pub shape: u32,
    /// The value reaches a secret or climbs out of a folder ([`risky_path`]).
    pub risky: bool,
}

/// A call's arguments in judged form (the string members, in their stored order).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct Args {
    pub list: Box<[Arg]>,
    /// For an egress tool ([`is_egress`]), [`Held::destinations`] number of where the data
    /// went ([`destination`]); else [`NONE`].
    pub destination: u32,
}

/// A call's time and id, to tell the latest.
type Stamp = (u64, [u64; 2]);

/// Rows are pushed into chunks of this many (3.5 MiB each) and gathered into [`Held::rows`]
/// once, by [`Held::sort`]. Growing one vector of millions of rows copies it, and during the
/// copy the old and the new buffer are both resident: with jemalloc, the binary's allocator
/// (glibc moves large blocks with `mremap` instead), holding 5 M calls peaked at 610 MB
/// instead of 420 MB, past the 500 MB of issue 10 item 7. Gathered, the peak is the rows and
/// one chunk.
const CHUNK_ROWS: usize = 65_536;

/// Calls held for the detectors ([`super::detect_held`]): fill with [`Held::push`] in any
/// order.
#[derive(Debug, Default)]
pub struct Held {
    /// The rows gathered by [`Held::sort`] (in time order after it).
    pub(super) rows: Vec<Row>,
    /// Rows pushed since, in chunks of [`CHUNK_ROWS`].
    filling: Vec<Vec<Row>>,
    pub(super) users: Names,
    pub(super) tools: Names,
    pub(super) products: Names,
    pub(super) roles: Names,
    pub(super) members: Names,
    pub(super) values: Names,
    pub(super) shapes: Names,
    pub(super) destinations: Names,
    pub(super) ips: Vec<IpAddr>,
    ip_ids: HashMap<IpAddr, u32>,
    pub(super) args: Vec<Args>,
    arg_ids: HashMap<Args, u32>,
    /// Per tool and member, the values kept (at most [`FEW_VALUES`] + 1).
    pub(super) kept: HashMap<(u32, u32), HashSet<u32>>,
    /// Per user, the role of their latest call that named one.
    latest_role: Vec<Option<(Stamp, u32)>>,
    /// Per tool, whether it is an egress tool.
    pub(super) egress: Vec<bool>,
}

impl Held {
    /// Holds `calls`.
    pub fn from_calls<'a>(calls: impl IntoIterator<Item = &'a Call>) -> Held {
        let mut held = Held::default();
        for c in calls {
            held.push(c);
        }
        held.gather();
        held
    }

    /// Calls held.
    pub fn len(&self) -> usize {
        self.rows.len() + self.filling.iter().map(Vec::len).sum::<usize>()
    }

    /// Whether no call is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Holds one call.
    pub fn push(&mut self, c: &Call) {
        let id = c.id.0.0;
        let id = [(id >> 64) as u64, id as u64];
        let user = self.users.id(&c.user);
        if self.latest_role.len() <= user as usize {
            self.latest_role.push(None);
        }
        if let Some(r) = c.roles.first() {
            let when = (c.at_ms, id);
            if self.latest_role[user as usize].is_none_or(|(at, _)| when > at) {
                // An empty role is no role: such users are one group with those who never
                // named one.
                let role = if r.is_empty() { NONE } else { self.roles.id(r) };
                self.latest_role[user as usize] = Some((when, role));
            }
        }
        let tool = self.tools.id(&c.tool);
        if self.egress.len() <= tool as usize {
            self.egress.push(is_egress(&c.tool));
        }
        let ip = match c.ip {
            None => NONE,
            Some(ip) => match self.ip_ids.get(&ip) {
                Some(&i) => i,
                None => {
                    let i = self.ips.len() as u32;
                    self.ips.push(ip);
                    self.ip_ids.insert(ip, i);
                    i
                }
            },
        };
        let product = c
            .client
            .as_deref()
            .map_or(NONE, |client| self.products.id(product(client)));
        let args = self.args_of(tool, &c.arguments);
        let end = c.end;
        let mut flags = 0;
        if let Some(e) = end {
            flags |= ENDED;
            if e.failed {
                flags |= FAILED;
            }
            if e.regulated {
                flags |= REGULATED_READ;
            }
        }
        if c.tags.iter().any(|t| REGULATED.contains(&t.as_str())) {
            flags |= REGULATED_READ;
        }
        let row = Row {
            id,
            at_ms: c.at_ms,
            user,
            tool,
            ip,
            product,
            args,
            execution_us: figure(end.and_then(|e| e.execution_us)),
            output_bytes: figure(end.and_then(|e| e.output_bytes)),
            flags,
        };
        match self.filling.last_mut() {
            Some(chunk) if chunk.len() < CHUNK_ROWS => chunk.push(row),
            _ => {
                let mut chunk = Vec::with_capacity(CHUNK_ROWS);
                chunk.push(row);
                self.filling.push(chunk);
            }
        }
    }

    /// Moves the rows pushed since the last gathering into [`Held::rows`], one allocation of
    /// the exact size, each chunk freed once copied ([`CHUNK_ROWS`]).
    pub(super) fn gather(&mut self) {
        if self.filling.is_empty() {
            return;
        }
        let mut rows = Vec::with_capacity(self.len());
        rows.append(&mut self.rows);
        self.rows = Vec::new();
        for chunk in std::mem::take(&mut self.filling) {
            rows.extend_from_slice(&chunk);
        }
        self.rows = rows;
    }

    /// The number of `arguments`' judged form (for `tool`), giving it one if new.
    fn args_of(&mut self, tool: u32, arguments: &[(Box<str>, Box<str>)]) -> u32 {
        let mut list = Vec::with_capacity(arguments.len());
        for (k, v) in arguments {
            let member = self.members.id(k);
            let risky = risky_path(v);
            let kept = self.kept.entry((tool, member)).or_default();
            let value = match self.values.find(v) {
                Some(i) if kept.contains(&i) => i,
                found if kept.len() <= FEW_VALUES => {
                    let i = found.unwrap_or_else(|| self.values.id(v));
                    kept.insert(i);
                    i
                }
                found if risky => found.unwrap_or_else(|| self.values.id(v)),
                _ => NONE,
            };
            let shape = self.shapes.id(&shape(v));
            list.push(Arg {
                member,
                value,
                shape,
                risky,
            });
        }
        let destination = if self.egress[tool as usize] {
            destination(arguments).map_or(NONE, |d| self.destinations.id(&d))
        } else {
            NONE
        };
        let judged = Args {
            list: list.into(),
            destination,
        };
        if let Some(&i) = self.arg_ids.get(&judged) {
            return i;
        }
        let i = self.args.len() as u32;
        self.args.push(judged.clone());
        self.arg_ids.insert(judged, i);
        i
    }

    /// Orders the rows by time, then id (what the detectors take).
    pub(super) fn sort(&mut self) {
        self.gather();
        self.rows.sort_unstable_by_key(|r| (r.at_ms, r.id));
    }

    /// The user's latest role ([`NONE`]: they never named one).
    pub(super) fn role_of(&self, user: u32) -> u32 {
        self.latest_role
            .get(user as usize)
            .copied()
            .flatten()
            .map_or(NONE, |(_, r)| r)
    }

    /// The user's name.
    pub(super) fn user(&self, user: u32) -> &str {
        self.users.get(user)
    }

    /// The tool's name.
    pub(super) fn tool(&self, tool: u32) -> &str {
        self.tools.get(tool)
    }

    /// The judged form of a row's arguments.
    pub(super) fn args(&self, r: &Row) -> &[Arg] {
        &self.args[r.args as usize].list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(n: u64, tool: &str, arguments: &[(&str, &str)]) -> Call {
        Call {
            id: EventId(ulid::Ulid::from_parts(1_780_000_000_000 + n, 1)),
            at_ms: 1_780_000_000_000 + n,
            user: "alice".into(),
            tool: tool.into(),
            session: "s".into(),
            ip: None,
            client: None,
            arguments: arguments
                .iter()
                .map(|(k, v)| (Box::from(*k), Box::from(*v)))
                .collect(),
            tags: vec![],
            roles: vec![],
            risk: crate::audit::RiskLevel::Low,
            risk_reasons: vec![],
            end: None,
        }
    }

    #[test]
    fn a_row_is_56_bytes_and_keeps_the_exact_id_and_figures() {
        // Two hours of execution (past a u32 of µs), and 8 GiB of output.
        let long = 2 * 3_600 * 1_000_000;
        assert_eq!(std::mem::size_of::<Row>(), 56);
        let mut c = call(123, "send_email", &[("to", "x@evil.example")]);
        c.id = EventId(ulid::Ulid::from_parts(1_780_000_000_123, u128::MAX >> 48));
        c.client = Some("curl/8.5".into());
        c.tags = vec!["gdpr".into()];
        c.end = Some(crate::analytics::End {
            id: c.id,
            failed: true,
            result: crate::audit::Outcome::Error,
            risk: crate::audit::RiskLevel::Low,
            execution_us: Some(long),
            output_bytes: Some(u64::MAX),
            regulated: false,
        });
        let held = Held::from_calls([&c]);
        let r = held.rows[0];
        assert_eq!(r.id(), c.id);
        assert!(r.ended() && r.failed() && r.regulated());
        assert_eq!(r.execution_us(), Some(long));
        assert_eq!(r.output_bytes(), Some(u64::MAX));
        assert_eq!(held.products.get(r.product), "curl");
        let dest = held.args[r.args as usize].destination;
        assert_eq!(held.destinations.get(dest), "evil.example");
    }

    #[test]
    fn a_member_with_many_values_stops_keeping_them_but_not_its_secrets() {
        let mut held = Held::default();
        let mut judged = |n: u64, path: &str| {
            held.push(&call(n, "read_file", &[("path", path)]));
            held.gather();
            let r = *held.rows.last().unwrap();
            (held.args(&r)[0].clone(), held.values.len())
        };
        for n in 0..=FEW_VALUES as u64 {
            assert_ne!(judged(n, &format!("src/f{n}.rs")).0.value, NONE, "{n}");
        }
        let (many, values) = judged(1000, "src/another.rs");
        assert_eq!(many.value, NONE);
        assert_eq!(values, FEW_VALUES + 1, "a value not kept is not stored");
        assert_ne!(
            judged(1001, "src/f3.rs").0.value,
            NONE,
            "a kept value stays"
        );
        let (secret, _) = judged(1002, "/home/a/.ssh/id_rsa");
        assert!(secret.risky);
        assert_ne!(secret.value, NONE);
        assert_eq!(held.values.get(secret.value), "/home/a/.ssh/id_rsa");
    }

    #[test]
    fn an_empty_role_is_no_role_and_the_latest_role_counts() {
        let mut a = call(1, "read_file", &[]);
        a.user = "ana".into();
        a.roles = vec!["sre".into()];
        let mut a2 = call(2, "read_file", &[]);
        a2.user = "ana".into();
        a2.roles = vec!["".into()];
        let mut b = call(3, "read_file", &[]);
        b.user = "ben".into();
        b.roles = vec!["sre".into()];
        let mut c = call(4, "read_file", &[]);
        c.user = "cai".into();
        // Held in any order: ana's latest call named an empty role.
        let held = Held::from_calls([&a2, &b, &c, &a]);
        let role = |u: &str| held.role_of(held.users.find(u).unwrap());
        assert_eq!(role("ana"), NONE);
        assert_eq!(role("cai"), NONE);
        assert_eq!(held.roles.get(role("ben")), "sre");
    }
}
