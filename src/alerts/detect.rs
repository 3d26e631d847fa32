//! The detectors that run as events arrive: what one event says on its own (a blocked,
//! refused or high-risk call, a policy `alert`), and the incremental forms of the anomaly
//! detectors of [`crate::analytics::anomalies`] that need only a user's recent past (first use
//! of a tool, a new network, many networks at once, a burst of calls or of one tool's calls,
//! a burst of failures).
//!
//! # Bounds
//!
//! State is kept per user for at most `alerts.max_users` users; past that, the least recently
//! seen tenth is forgotten (a forgotten user is "new" again, and new users are not judged on
//! novelty, so forgetting never raises an alert). Per user: at most [`MAX_TOOLS`] tools,
//! [`MAX_NETS`] networks, the calls and ends of the last minute (at most [`MAX_RECENT`]) and
//! the networks of the last 15 minutes (at most [`MAX_NETS`]); a histogram of calls per
//! minute of 32 counters; the calls of the last two minutes with their tool (at most
//! [`MAX_RECENT`], 16 bytes each). Per tool and per network: the users who started it in the last
//! week (at most [`MAX_STARTS`]), for at most [`MAX_TOOLS`]×16 tools and as many networks.
//! Under 100 KiB per user at the caps (the three deques about 40 KiB, the tool and network
//! names the rest), typically 1-2 KiB.

use std::collections::{HashMap, HashSet, VecDeque};

use super::{Kind, Observed};
use crate::analytics::Context;
use crate::analytics::anomalies::{WARM_UP_DAYS, net_of};
use crate::audit::{EventId, EventType, Outcome, RiskLevel};

const MINUTE: u64 = 60_000;
const DAY: u64 = 24 * 60 * MINUTE;
/// Tools remembered per user.
pub const MAX_TOOLS: usize = 512;
/// Networks remembered per user.
pub const MAX_NETS: usize = 64;
/// Calls (and ends) of the last minute remembered per user.
pub const MAX_RECENT: usize = 1024;
/// First users remembered per tool and per network.
pub const MAX_STARTS: usize = 256;
/// Access ids remembered to raise `high_risk` once per call (an end can raise it too).
const MAX_SEEN_HIGH: usize = 4096;
/// A burst: at least this many calls within a minute… (as `anomalies`' temporal burst)
pub const BURST_CALLS: usize = 12;
/// …and this many times the user's usual busiest minute (its 99th percentile).
pub const BURST_FACTOR: usize = 4;
/// A burst of one tool: at least this many calls of it within [`TOOL_BURST_SPAN_MS`]…
/// (as `anomalies`' temporal burst)
pub const TOOL_BURST_CALLS: usize = 30;
/// …and twice the most the user made of any one tool within that span on an earlier day
/// (five earlier days with calls at least).
pub const TOOL_BURST_SPAN_MS: u64 = 2 * MINUTE;
/// Hashes tool names for [`User::count_tool`] (fixed keys: the same name, the same hash).
const TOOL_KEYS: std::hash::BuildHasherDefault<std::collections::hash_map::DefaultHasher> =
    std::hash::BuildHasherDefault::new();
/// A failure burst: at least this many failed ends within a minute, half of the user's ends.
pub const FAILURE_BURST: usize = 10;
/// Networks within [`MANY_WINDOW_MS`] that make `many_addresses` (as `anomalies`).
pub const MANY_NETWORKS: usize = 3;
/// See [`MANY_NETWORKS`].
pub const MANY_WINDOW_MS: u64 = 15 * MINUTE;

/// What one event made a detector say.
#[derive(Debug, Clone)]
pub struct Signal {
    /// The alert's kind.
    pub kind: Kind,
    /// How serious.
    pub severity: RiskLevel,
    /// One line for a person (names the user; stored sealed as `metadata.reason`).
    pub explanation: String,
}

#[derive(Debug, Default)]
struct User {
    first_ms: u64,
    last_ms: u64,
    tools: HashSet<String>,
    nets: HashSet<String>,
    calls: VecDeque<u64>,
    ends: VecDeque<(u64, bool)>,
    recent_nets: VecDeque<(u64, String)>,
    /// Minutes with n calls (n capped at 31), for the usual busiest minute.
    per_minute: [u32; 32],
    minute: (u64, u32),
    /// The calls of the last [`TOOL_BURST_SPAN_MS`] (at most [`MAX_RECENT`]): when, and a
    /// 64-bit hash of the tool's name.
    tool_calls: VecDeque<(u64, u64)>,
    /// Today (a UTC day number) and the most calls of one tool within the span today.
    today: (u64, usize),
    /// The last earlier day with calls, and its most of one tool within the span.
    last_day: (u64, usize),
    /// The most calls of one tool within the span on the days before `last_day`, and how
    /// many earlier days had calls.
    earlier: (usize, usize),
}

impl User {
    fn count_minute(&mut self, at: u64) {
        let m = at / MINUTE;
        if self.minute.0 != m {
            if self.minute.1 > 0 {
                self.per_minute[self.minute.1.min(31) as usize] += 1;
            }
            self.minute = (m, 0);
        }
        self.minute.1 += 1;
    }

    /// Counts a call of `tool` at `at`: the calls of that tool within the span (of the last
    /// [`MAX_RECENT`] calls of any tool).
    fn count_tool(&mut self, tool: &str, at: u64) -> usize {
        let day = at / DAY;
        if self.today.0 != day {
            if self.today.1 > 0 {
                self.earlier = (self.earlier.0.max(self.last_day.1), self.earlier.1 + 1);
                self.last_day = self.today;
            }
            self.today = (day, 0);
        }
        let key = {
            use std::hash::{BuildHasher, Hasher};
            let mut h = TOOL_KEYS.build_hasher();
            h.write(tool.as_bytes());
            h.finish()
        };
        let q = &mut self.tool_calls;
        while q
            .front()
            .is_some_and(|&(t, _)| t + TOOL_BURST_SPAN_MS <= at)
        {
            q.pop_front();
        }
        if q.len() >= MAX_RECENT {
            q.pop_front();
        }
        q.push_back((at, key));
        let n = q.iter().filter(|(_, k)| *k == key).count();
        self.today.1 = self.today.1.max(n);
        n
    }

    /// The most calls of one tool within the span on earlier days other than the day the
    /// span up to `at` began (a burst across midnight does not count against itself), and how
    /// many earlier days had calls.
    fn earlier_most(&self, at: u64) -> (usize, usize) {
        let began = at.saturating_sub(TOOL_BURST_SPAN_MS) / DAY;
        let last = if self.last_day.0 == began {
            0
        } else {
            self.last_day.1
        };
        (self.earlier.0.max(last), self.earlier.1)
    }

    /// The 99th percentile of calls per active minute (1 without history).
    fn usual_minute(&self) -> usize {
        let total: u64 = self.per_minute.iter().map(|&n| u64::from(n)).sum();
        if total == 0 {
            return 1;
        }
        let mut seen = 0;
        for (n, &c) in self.per_minute.iter().enumerate() {
            seen += u64::from(c);
            if seen * 100 >= total * 99 {
                return n.max(1);
            }
        }
        31
    }
}

/// Users who started something (a tool, a network) recently.
#[derive(Debug, Default)]
struct Starts {
    users: usize,
    recent: VecDeque<u64>,
}

/// The detectors' state (bounded, see the module docs).
#[derive(Debug)]
pub struct Detectors {
    users: HashMap<String, User>,
    max_users: usize,
    tools: HashMap<String, Starts>,
    nets: HashMap<String, Starts>,
    high_seen: VecDeque<EventId>,
    context: Context,
}

impl Detectors {
    /// Empty state for at most `max_users` users, with the operator's context.
    pub fn new(max_users: usize, context: Context) -> Detectors {
        Detectors {
            users: HashMap::new(),
            max_users: max_users.max(1),
            tools: HashMap::new(),
            nets: HashMap::new(),
            high_seen: VecDeque::new(),
            context,
        }
    }

    /// Users whose state is kept now.
    pub fn users(&self) -> usize {
        self.users.len()
    }

    /// Learns from a past event (history read at start): no signal.
    pub fn learn(&mut self, o: &Observed) {
        let _ = self.step(o, false);
    }

    /// Takes one durable event; the signals it raises.
    pub fn observe(&mut self, o: &Observed) -> Vec<Signal> {
        self.step(o, true)
    }

    fn step(&mut self, o: &Observed, judge: bool) -> Vec<Signal> {
        let mut out = Vec::new();
        if judge {
            self.single(o, &mut out);
        }
        match o.event_type {
            // A blocked or refused call never ran: it has alerts of its own.
            EventType::ToolAccess if !matches!(o.result, Outcome::Blocked | Outcome::Refused) => {
                self.access(o, judge, &mut out)
            }
            EventType::ToolExecution | EventType::ToolFailure => self.end(o, judge, &mut out),
            _ => {}
        }
        out
    }

    /// What one event says on its own.
    fn single(&mut self, o: &Observed, out: &mut Vec<Signal>) {
        let tool = o.tool.as_deref().unwrap_or("?");
        let user = &o.user;
        match (o.event_type, o.result) {
            // The access event of a blocked call (its failure twin says the same).
            (EventType::ToolAccess, Outcome::Blocked) => out.push(Signal {
                kind: Kind::Blocked,
                severity: o.risk.max(RiskLevel::High),
                explanation: format!(
                    "the policy blocked {user}'s call to {tool} ({} risk)",
                    o.risk.as_str()
                ),
            }),
            // A refused call's access event: its failure twin raises the alert.
            (EventType::ToolAccess, Outcome::Refused) => {}
            (EventType::ToolFailure, Outcome::Refused) => out.push(Signal {
                kind: Kind::Refused,
                severity: o.risk.max(RiskLevel::Medium),
                explanation: match (&o.tool, o.weight) {
                    (Some(_), _) => format!("the proxy refused {user}'s call to {tool}"),
                    // An HTTP request refused before any call (no credential, a bad one).
                    (None, 1) => format!("the proxy refused a request of {user}"),
                    (None, n) => format!(
                        "the proxy refused requests of {user} ({n} of them summarized in one event)"
                    ),
                },
            }),
            (EventType::ToolAccess, _) if o.risk >= RiskLevel::High => {
                self.remember_high(o.id);
                out.push(Signal {
                    kind: Kind::HighRisk,
                    severity: o.risk,
                    explanation: format!("{user} called {tool} at {} risk", o.risk.as_str()),
                });
            }
            (EventType::ToolAccess, _)
                if matches!(
                    o.decision.as_deref(),
                    Some("alert" | "would_block" | "would_confirm")
                ) =>
            {
                out.push(Signal {
                    kind: Kind::PolicyAlert,
                    severity: o.risk.max(RiskLevel::Medium),
                    explanation: format!(
                        "the policy's decision on {user}'s call to {tool} is {}",
                        o.decision.as_deref().unwrap_or("")
                    ),
                });
            }
            // What a person or the client's model answered a server's question carried
            // (a server phishing for a password or a key through a form).
            (EventType::ServerRequest, _) if o.risk >= RiskLevel::High => out.push(Signal {
                kind: Kind::HighRisk,
                severity: o.risk,
                explanation: format!(
                    "{user}'s answer to a server's question (elicitation or sampling) carried data at {} risk",
                    o.risk.as_str()
                ),
            }),
            // A result that raised a call to high risk (its access was lower).
            (EventType::ToolExecution | EventType::ToolFailure, r)
                if o.risk >= RiskLevel::High && r != Outcome::Blocked =>
            {
                let access = o.linked.unwrap_or(o.id);
                if !self.high_seen.contains(&access) {
                    self.remember_high(access);
                    out.push(Signal {
                        kind: Kind::HighRisk,
                        severity: o.risk,
                        explanation: format!(
                            "{user}'s call to {tool} returned a result at {} risk",
                            o.risk.as_str()
                        ),
                    });
                }
            }
            _ => {}
        }
    }

    fn remember_high(&mut self, id: EventId) {
        if self.high_seen.len() >= MAX_SEEN_HIGH {
            self.high_seen.pop_front();
        }
        self.high_seen.push_back(id);
    }

    fn user(&mut self, name: &str, at: u64) -> &mut User {
        if !self.users.contains_key(name) && self.users.len() >= self.max_users {
            self.forget();
        }
        let u = self.users.entry(name.to_string()).or_insert_with(|| User {
            first_ms: at,
            ..User::default()
        });
        u.first_ms = u.first_ms.min(at);
        u.last_ms = u.last_ms.max(at);
        u
    }

    /// Forgets the least recently seen tenth of the users.
    fn forget(&mut self) {
        let mut last: Vec<u64> = self.users.values().map(|u| u.last_ms).collect();
        let k = (last.len() / 10).max(1).min(last.len() - 1);
        let (_, cut, _) = last.select_nth_unstable(k);
        let cut = *cut;
        self.users.retain(|_, u| u.last_ms > cut);
    }

    fn access(&mut self, o: &Observed, judge: bool, out: &mut Vec<Signal>) {
        let at = o.at_ms;
        let service = self.context.service_accounts.contains(&o.user);
        let population = self.users.len().max(1) + usize::from(!self.users.contains_key(&o.user));
        let user = self.user(&o.user, at);
        let warm = at >= user.first_ms + WARM_UP_DAYS * DAY;
        // Burst: calls within the last minute against the usual busiest minute.
        while user.calls.front().is_some_and(|&t| t + MINUTE <= at) {
            user.calls.pop_front();
        }
        if user.calls.len() >= MAX_RECENT {
            user.calls.pop_front();
        }
        user.calls.push_back(at);
        let n = user.calls.len();
        let usual = user.usual_minute();
        user.count_minute(at);
        let tool = o.tool.clone().unwrap_or_else(|| "?".into());
        let of_tool = user.count_tool(&tool, at);
        let (most, days) = user.earlier_most(at);
        if judge && !service && days >= 5 && of_tool >= TOOL_BURST_CALLS && of_tool >= 2 * most {
            out.push(burst(
                of_tool,
                format!(
                    "{} made {of_tool} calls of {tool} within two minutes; on any earlier day at most {most} calls of one tool within two minutes",
                    o.user
                ),
            ));
        } else if judge && !service && n >= BURST_CALLS && n >= BURST_FACTOR * usual {
            out.push(burst(
                n,
                format!(
                    "{} made {n} calls within a minute; their busiest minute usually has {usual}",
                    o.user
                ),
            ));
        }
        // First use of a tool.
        let new_tool = !user.tools.contains(&tool) && user.tools.len() < MAX_TOOLS;
        if new_tool {
            user.tools.insert(tool.clone());
        }
        // Networks.
        let net = o.ip.map(|ip| net_of(ip, &self.context));
        let mut new_net = false;
        let mut many = 0;
        if let Some((name, _)) = &net {
            let user = self.users.get_mut(&o.user).expect("just made");
            if !user.nets.contains(name) && user.nets.len() < MAX_NETS {
                user.nets.insert(name.clone());
                new_net = true;
            }
            while user
                .recent_nets
                .front()
                .is_some_and(|(t, _)| t + MANY_WINDOW_MS < at)
            {
                user.recent_nets.pop_front();
            }
            if user.recent_nets.len() >= MAX_NETS {
                user.recent_nets.pop_front();
            }
            user.recent_nets.push_back((at, name.clone()));
            let distinct: HashSet<&str> =
                user.recent_nets.iter().map(|(_, n)| n.as_str()).collect();
            many = distinct.len();
        }
        if new_tool {
            let starts = started(&mut self.tools, &tool, at);
            // As `anomalies`' first use: a tool a fifth of the user's peers use, or that a
            // quarter of all users started this week (a rollout), is not one user's novelty.
            let peers = population - 1;
            let common = peers > 0 && starts.users.saturating_sub(1) * 5 >= peers;
            let rollout = starts.recent.len() * 4 >= population;
            if judge && warm && !service && !common && !rollout {
                out.push(Signal {
                    kind: Kind::FirstUse,
                    severity: RiskLevel::Medium,
                    explanation: format!(
                        "{} called {tool} for the first time; few users ever do",
                        o.user
                    ),
                });
            }
        }
        if let Some((name, known)) = net {
            if new_net {
                let movers = started(&mut self.nets, &name, at)
                    .recent
                    .iter()
                    .filter(|&&t| t + DAY >= at)
                    .count();
                // Three users moving to one network within a day is a renumbering.
                if judge && warm && !service && !known && movers < 3 {
                    out.push(Signal {
                        kind: Kind::NewNetwork,
                        severity: RiskLevel::Medium,
                        explanation: format!(
                            "{} called from {name}, outside the known networks and new for them",
                            o.user
                        ),
                    });
                }
            }
            if judge && many >= MANY_NETWORKS {
                out.push(Signal {
                    kind: Kind::ManyAddresses,
                    severity: RiskLevel::High,
                    explanation: format!(
                        "{} called from {many} networks within 15 minutes",
                        o.user
                    ),
                });
            }
        }
    }

    fn end(&mut self, o: &Observed, judge: bool, out: &mut Vec<Signal>) {
        let failed = matches!(
            o.result,
            Outcome::Error | Outcome::JsonrpcError | Outcome::Timeout | Outcome::ServerExit
        );
        if matches!(o.result, Outcome::Blocked | Outcome::Refused) {
            return;
        }
        let at = o.at_ms;
        let service = self.context.service_accounts.contains(&o.user);
        let user = self.user(&o.user, at);
        while user.ends.front().is_some_and(|(t, _)| t + MINUTE <= at) {
            user.ends.pop_front();
        }
        if user.ends.len() >= MAX_RECENT {
            user.ends.pop_front();
        }
        user.ends.push_back((at, failed));
        let failures = user.ends.iter().filter(|(_, f)| *f).count();
        if judge
            && failed
            && !service
            && failures >= FAILURE_BURST
            && failures * 2 >= user.ends.len()
        {
            out.push(Signal {
                kind: Kind::FailureBurst,
                severity: RiskLevel::Medium,
                explanation: format!(
                    "{}'s calls failed {failures} times within a minute (of {} ended)",
                    o.user,
                    user.ends.len()
                ),
            });
        }
    }
}

/// Counts a user starting `name` (a tool or a network) at `at`; the table is capped.
fn started<'a>(table: &'a mut HashMap<String, Starts>, name: &str, at: u64) -> &'a Starts {
    if !table.contains_key(name) && table.len() >= MAX_TOOLS * 16 {
        // Forget the tools or networks nobody started for the longest time.
        let oldest = table
            .iter()
            .min_by_key(|(_, s)| s.recent.back().copied().unwrap_or(0))
            .map(|(k, _)| k.clone());
        if let Some(k) = oldest {
            table.remove(&k);
        }
    }
    let s = table.entry(name.to_string()).or_default();
    s.users += 1;
    while s.recent.front().is_some_and(|&t| t + 7 * DAY < at) || s.recent.len() >= MAX_STARTS {
        s.recent.pop_front();
    }
    s.recent.push_back(at);
    s
}

/// A burst of `calls` calls: high from 60 on, else medium.
fn burst(calls: usize, explanation: String) -> Signal {
    Signal {
        kind: Kind::Burst,
        severity: if calls >= 60 {
            RiskLevel::High
        } else {
            RiskLevel::Medium
        },
        explanation,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::EventIds;

    fn obs(ids: &EventIds, user: &str, tool: &str, at_ms: u64, ip: Option<&str>) -> Observed {
        Observed {
            id: ids.next().0,
            at_ms,
            event_type: EventType::ToolAccess,
            result: Outcome::Initiated,
            user: user.into(),
            tool: Some(tool.into()),
            session: "s".into(),
            upstream: "u".into(),
            risk: RiskLevel::Low,
            decision: None,
            ip: ip.map(|i| i.parse().unwrap()),
            tags: Vec::new(),
            linked: None,
            weight: 1,
        }
    }

    fn kinds(v: &[Signal]) -> Vec<Kind> {
        v.iter().map(|s| s.kind).collect()
    }

    #[test]
    fn first_use_needs_a_warm_user_and_a_rare_tool() {
        let ids = EventIds::default();
        let mut d = Detectors::new(100, Context::default());
        let t0 = 1_000 * DAY;
        // Ten users with history; all use `read`.
        for u in 0..10 {
            d.learn(&obs(&ids, &format!("u{u}"), "read", t0 + u, None));
        }
        // A new user's first tool: not judged (new hire).
        let s = d.observe(&obs(&ids, "newbie", "drop_table", t0 + DAY, None));
        assert!(s.is_empty(), "{s:?}");
        // A warm user's first call to a tool nobody uses: first_use.
        let s = d.observe(&obs(&ids, "u1", "drop_table", t0 + 6 * DAY, None));
        assert_eq!(kinds(&s), [Kind::FirstUse]);
        // Their second call is not a first use.
        assert!(
            d.observe(&obs(&ids, "u1", "drop_table", t0 + 6 * DAY + 5, None))
                .is_empty()
        );
        // A tool everyone uses is not novelty for the one who comes late.
        for u in 2..10 {
            d.learn(&obs(&ids, &format!("u{u}"), "search", t0 + 2 * DAY, None));
        }
        assert!(
            d.observe(&obs(&ids, "u0", "search", t0 + 20 * DAY, None))
                .is_empty()
        );
    }

    #[test]
    fn networks_new_and_many_at_once() {
        let ids = EventIds::default();
        let mut d = Detectors::new(100, Context::default());
        let t0 = 1_000 * DAY;
        d.learn(&obs(&ids, "alice", "read", t0, Some("10.1.2.3")));
        // Same private /16: not new.
        assert!(
            d.observe(&obs(&ids, "alice", "read", t0 + 6 * DAY, Some("10.1.9.9")))
                .is_empty()
        );
        let s = d.observe(&obs(
            &ids,
            "alice",
            "read",
            t0 + 6 * DAY + 1_000,
            Some("203.0.113.7"),
        ));
        assert_eq!(kinds(&s), [Kind::NewNetwork]);
        let s = d.observe(&obs(
            &ids,
            "alice",
            "read",
            t0 + 6 * DAY + 2_000,
            Some("198.51.100.7"),
        ));
        assert_eq!(kinds(&s), [Kind::NewNetwork, Kind::ManyAddresses]);
    }

    #[test]
    fn a_burst_of_calls_and_of_failures() {
        let ids = EventIds::default();
        let mut d = Detectors::new(100, Context::default());
        let t0 = 1_000 * DAY;
        let mut raised = Vec::new();
        for i in 0..20 {
            raised.extend(d.observe(&obs(&ids, "bob", "read", t0 + i * 1_000, None)));
        }
        let bursts = raised.iter().filter(|s| s.kind == Kind::Burst).count();
        assert_eq!(
            bursts,
            20 - (BURST_CALLS - 1),
            "every call from the 12th on"
        );
        let mut failures = Vec::new();
        for i in 0..12 {
            let mut o = obs(&ids, "bob", "read", t0 + 100_000 + i * 1_000, None);
            o.event_type = EventType::ToolExecution;
            o.result = Outcome::Error;
            failures.extend(d.observe(&o));
        }
        assert_eq!(
            kinds(&failures),
            vec![Kind::FailureBurst; 12 - (FAILURE_BURST - 1)]
        );
    }

    #[test]
    fn a_burst_of_one_tool_against_the_most_of_one_tool_on_earlier_days() {
        let ids = EventIds::default();
        let mut d = Detectors::new(100, Context::default());
        let t0 = 1_000 * DAY + 11 * 3_600_000;
        // Six earlier days: each an episode of 20 reads (ana) or 25 (ben) within two minutes.
        for day in 0..6 {
            for i in 0..25 {
                let at = t0 + day * DAY + i * 4_800;
                if i < 20 {
                    d.learn(&obs(&ids, "ana", "read_file", at, None));
                }
                d.learn(&obs(&ids, "ben", "read_file", at, None));
            }
        }
        // Day 7: 45 searches each within two minutes (about 23 a minute: not four times their
        // busiest minute, about ten).
        let at = t0 + 6 * DAY + 3_600_000;
        let (mut ana, mut ben) = (Vec::new(), Vec::new());
        for i in 0..45 {
            ana.extend(d.observe(&obs(&ids, "ana", "search", at + i * 2_600, None)));
            ben.extend(d.observe(&obs(&ids, "ben", "search", at + i * 2_600, None)));
        }
        assert_eq!(
            kinds(&ana),
            vec![Kind::Burst; 6],
            "from the 40th call on: {ana:?}"
        );
        assert!(
            ana[0]
                .explanation
                .contains("40 calls of search within two minutes; on any earlier day at most 20"),
            "{}",
            ana[0].explanation
        );
        assert!(ben.is_empty(), "twice ben's 25 is 50: {ben:?}");
    }

    #[test]
    fn a_burst_of_one_tool_across_midnight_is_not_judged_against_its_first_half() {
        let ids = EventIds::default();
        let mut d = Detectors::new(100, Context::default());
        let t0 = 1_000 * DAY + 11 * 3_600_000;
        for day in 0..6 {
            for i in 0..20 {
                d.learn(&obs(
                    &ids,
                    "ana",
                    "read_file",
                    t0 + day * DAY + i * 6_000,
                    None,
                ));
            }
        }
        // 60 searches 2 s apart from 23:59 UTC: 30 before midnight, 30 after.
        let at = 1_007 * DAY - 60_000;
        let mut raised = Vec::new();
        for i in 0..60 {
            raised.extend(d.observe(&obs(&ids, "ana", "search", at + i * 2_000, None)));
        }
        let last = raised.last().expect("a burst");
        assert!(
            last.explanation
                .contains("60 calls of search within two minutes; on any earlier day at most 20"),
            "{raised:?}"
        );
    }

    #[test]
    fn blocked_high_risk_and_policy_alerts_once_per_call() {
        let ids = EventIds::default();
        let mut d = Detectors::new(100, Context::default());
        let mut o = obs(&ids, "eve", "shell", 5 * DAY, None);
        o.result = Outcome::Blocked;
        o.risk = RiskLevel::Critical;
        assert_eq!(kinds(&d.observe(&o)), [Kind::Blocked]);
        let mut fail = o.clone();
        fail.event_type = EventType::ToolFailure;
        assert!(
            d.observe(&fail).is_empty(),
            "the failure twin is not counted again"
        );
        let mut high = obs(&ids, "eve", "shell", 5 * DAY, None);
        high.risk = RiskLevel::High;
        assert_eq!(kinds(&d.observe(&high)), [Kind::HighRisk]);
        let mut end = obs(&ids, "eve", "shell", 5 * DAY + 1, None);
        end.event_type = EventType::ToolExecution;
        end.result = Outcome::Success;
        end.risk = RiskLevel::High;
        end.linked = Some(high.id);
        assert!(d.observe(&end).is_empty(), "already raised at its access");
        let mut alert = obs(&ids, "eve", "echo", 5 * DAY + 2, None);
        alert.decision = Some("alert".into());
        assert_eq!(kinds(&d.observe(&alert)), [Kind::PolicyAlert]);
    }

    #[test]
    fn a_high_risk_answer_to_a_servers_question_raises_an_alert_a_plain_one_does_not() {
        let ids = EventIds::default();
        let mut d = Detectors::new(100, Context::default());
        let mut answer = obs(&ids, "ana", "?", 5 * DAY, None);
        answer.event_type = EventType::ServerRequest;
        answer.tool = None;
        answer.result = Outcome::Success;
        assert!(d.observe(&answer).is_empty());
        answer.id = ids.next().0;
        answer.risk = RiskLevel::High;
        let raised = d.observe(&answer);
        assert_eq!(kinds(&raised), [Kind::HighRisk]);
        assert!(
            raised[0]
                .explanation
                .contains("ana's answer to a server's question"),
            "{raised:?}"
        );
    }

    #[test]
    fn state_is_bounded_by_max_users() {
        let ids = EventIds::default();
        let mut d = Detectors::new(50, Context::default());
        for u in 0..500u64 {
            d.observe(&obs(&ids, &format!("u{u}"), "read", u * 1_000, None));
        }
        assert!(d.users() <= 50, "{}", d.users());
        assert!(d.users() >= 40);
    }
}
