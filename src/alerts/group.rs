//! Grouping: one alert per (user, kind) per window, so that a storm of 1000 blocked calls is
//! one alert with a count of 1000 (plus one per further window while it lasts), never 1000.
//!
//! The first signal of a quiet (user, kind) opens a group; the alert is raised
//! `alerts.group_wait_ms` later with every signal gathered by then (the start of a storm
//! arrives within milliseconds). Signals after that are counted into the next alert of the
//! group, raised once `alerts.window_ms` has passed since the previous one; a group with
//! nothing new for a whole window is closed, and the next signal opens a new one. The same
//! idea as Prometheus Alertmanager's `group_wait` and `group_interval`.
//!
//! Times are milliseconds since the Unix epoch of the proxy's clock, passed in, so that the
//! rules are tested without waiting.

use std::collections::{BTreeSet, HashMap};

use super::detect::Signal;
use super::{Kind, Observed};
use crate::audit::{EventId, RiskLevel};

/// Open groups at most (users × kinds); past this the group due soonest is raised early.
pub const MAX_GROUPS: usize = 20_000;
/// Distinct tools and tags listed per alert at most.
const MAX_LISTED: usize = 16;

/// What an alert stands for, gathered from its signals.
#[derive(Debug, Clone)]
pub struct Pending {
    /// The user.
    pub user: String,
    /// The kind.
    pub kind: Kind,
    /// The highest severity among the signals.
    pub severity: RiskLevel,
    /// Signals gathered.
    pub count: u64,
    /// The first and last event ids, and their times.
    pub first: (EventId, u64),
    /// See `first`.
    pub last: (EventId, u64),
    /// The explanation of the most severe (then the latest) signal.
    pub explanation: String,
    /// Distinct tools of the events (at most 16).
    pub tools: BTreeSet<String>,
    /// Distinct compliance tags of the events (at most 16).
    pub tags: BTreeSet<String>,
    /// The first event's session and upstream.
    pub session: String,
    /// See `session`.
    pub upstream: String,
    /// The latest event's client address, if any.
    pub ip: Option<std::net::IpAddr>,
}

impl Pending {
    fn new(o: &Observed, s: &Signal) -> Pending {
        let mut p = Pending {
            user: o.user.clone(),
            kind: s.kind,
            severity: s.severity,
            count: 0,
            first: (o.id, o.at_ms),
            last: (o.id, o.at_ms),
            explanation: s.explanation.clone(),
            tools: BTreeSet::new(),
            tags: BTreeSet::new(),
            session: o.session.clone(),
            upstream: o.upstream.clone(),
            ip: None,
        };
        p.add(o, s);
        p
    }

    fn add(&mut self, o: &Observed, s: &Signal) {
        self.count = self.count.saturating_add(o.weight);
        if o.id > self.last.0 {
            self.last = (o.id, o.at_ms);
        }
        if o.id < self.first.0 {
            self.first = (o.id, o.at_ms);
        }
        if s.severity >= self.severity {
            self.severity = s.severity;
            self.explanation.clone_from(&s.explanation);
        }
        if let Some(t) = &o.tool
            && self.tools.len() < MAX_LISTED
        {
            self.tools.insert(t.clone());
        }
        for t in &o.tags {
            if self.tags.len() < MAX_LISTED {
                self.tags.insert(t.clone());
            }
        }
        if o.ip.is_some() {
            self.ip = o.ip;
        }
    }
}

#[derive(Debug)]
struct Group {
    /// When the group's next alert may be raised.
    due_ms: u64,
    /// When the group's last alert was raised (`None`: not yet).
    raised_ms: Option<u64>,
    pending: Option<Pending>,
}

/// The open groups.
#[derive(Debug)]
pub struct Grouper {
    window_ms: u64,
    wait_ms: u64,
    groups: HashMap<(String, Kind), Group>,
}

impl Grouper {
    /// Groups of `window_ms`, the first alert of each after `wait_ms`.
    pub fn new(window_ms: u64, wait_ms: u64) -> Grouper {
        Grouper {
            window_ms: window_ms.max(1),
            wait_ms: wait_ms.min(window_ms),
            groups: HashMap::new(),
        }
    }

    /// Counts signal `s` of event `o` at `now_ms`; an alert raised early when the groups are
    /// at their cap.
    pub fn add(&mut self, o: &Observed, s: &Signal, now_ms: u64) -> Option<Pending> {
        let key = (o.user.clone(), s.kind);
        let mut early = None;
        if !self.groups.contains_key(&key) && self.groups.len() >= MAX_GROUPS {
            early = self.raise_soonest(now_ms);
        }
        let g = self.groups.entry(key).or_insert(Group {
            due_ms: now_ms + self.wait_ms,
            raised_ms: None,
            pending: None,
        });
        match &mut g.pending {
            Some(p) => p.add(o, s),
            None => g.pending = Some(Pending::new(o, s)),
        }
        early
    }

    fn raise_soonest(&mut self, now_ms: u64) -> Option<Pending> {
        let key = self
            .groups
            .iter()
            .filter(|(_, g)| g.pending.is_some())
            .min_by_key(|(_, g)| g.due_ms)
            .map(|(k, _)| k.clone())
            .or_else(|| self.groups.keys().next().cloned())?;
        let g = self.groups.remove(&key)?;
        let _ = now_ms;
        g.pending
    }

    /// The alerts due at `now_ms`; groups quiet for a whole window are closed.
    pub fn due(&mut self, now_ms: u64) -> Vec<Pending> {
        let mut out = Vec::new();
        let window = self.window_ms;
        self.groups.retain(|_, g| {
            if g.pending.is_some() && g.due_ms <= now_ms {
                out.extend(g.pending.take());
                g.raised_ms = Some(now_ms);
                g.due_ms = now_ms + window;
            }
            g.pending.is_some() || g.raised_ms.is_some_and(|r| r + window > now_ms)
        });
        out.sort_by_key(|p| p.first.0);
        out
    }

    /// When the next alert is due (or a group closes), if any group is open.
    pub fn next_due(&self) -> Option<u64> {
        self.groups
            .values()
            .map(|g| match (&g.pending, g.raised_ms) {
                (Some(_), _) => g.due_ms,
                (None, Some(r)) => r + self.window_ms,
                (None, None) => g.due_ms,
            })
            .min()
    }

    /// Every alert still gathering (at shutdown: nothing is kept back).
    pub fn drain(&mut self) -> Vec<Pending> {
        let mut out: Vec<Pending> = self.groups.drain().filter_map(|(_, g)| g.pending).collect();
        out.sort_by_key(|p| p.first.0);
        out
    }

    /// Open groups.
    pub fn len(&self) -> usize {
        self.groups.len()
    }

    /// Whether no group is open.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{EventIds, EventType, Outcome};

    fn blocked(ids: &EventIds, user: &str, at_ms: u64) -> (Observed, Signal) {
        (
            Observed {
                id: ids.next().0,
                at_ms,
                event_type: EventType::ToolAccess,
                result: Outcome::Blocked,
                user: user.into(),
                tool: Some("shell".into()),
                session: "s".into(),
                upstream: "u".into(),
                risk: RiskLevel::Critical,
                decision: Some("block".into()),
                ip: None,
                tags: vec!["secrets".into()],
                linked: None,
                weight: 1,
            },
            Signal {
                kind: Kind::Blocked,
                severity: RiskLevel::Critical,
                explanation: format!("blocked {user}"),
            },
        )
    }

    #[test]
    fn a_storm_of_1000_is_one_alert_with_its_count_then_one_per_window() {
        let ids = EventIds::default();
        let mut g = Grouper::new(300_000, 5_000);
        let t0 = 1_000_000;
        let mut events = Vec::new();
        for i in 0..1000 {
            let (o, s) = blocked(&ids, "mallory", t0 + i);
            assert!(g.add(&o, &s, t0 + i).is_none());
            events.push(o.id);
        }
        assert!(g.due(t0 + 4_999).is_empty(), "waits for the storm");
        let raised = g.due(t0 + 5_000);
        assert_eq!(raised.len(), 1);
        let a = &raised[0];
        assert_eq!(
            (a.count, a.kind, a.user.as_str()),
            (1000, Kind::Blocked, "mallory")
        );
        assert_eq!((a.first.0, a.last.0), (events[0], events[999]));
        assert_eq!(a.tools.iter().collect::<Vec<_>>(), ["shell"]);
        // The storm goes on: counted into the next window's alert, not raised at once.
        for i in 0..500 {
            let (o, s) = blocked(&ids, "mallory", t0 + 10_000 + i);
            g.add(&o, &s, t0 + 10_000 + i);
        }
        assert!(g.due(t0 + 200_000).is_empty());
        assert_eq!(g.next_due(), Some(t0 + 305_000));
        let raised = g.due(t0 + 305_000);
        assert_eq!(raised.len(), 1);
        assert_eq!(raised[0].count, 500);
        // Quiet for a whole window: the group closes; the next signal waits group_wait again.
        assert!(g.due(t0 + 605_000).is_empty());
        assert!(g.is_empty());
        let (o, s) = blocked(&ids, "mallory", t0 + 700_000);
        g.add(&o, &s, t0 + 700_000);
        assert_eq!(g.next_due(), Some(t0 + 705_000));
    }

    #[test]
    fn users_and_kinds_are_grouped_apart_and_drained_at_shutdown() {
        let ids = EventIds::default();
        let mut g = Grouper::new(60_000, 1_000);
        for u in ["a", "b", "a"] {
            let (o, s) = blocked(&ids, u, 10);
            g.add(&o, &s, 10);
        }
        let (o, mut s) = blocked(&ids, "a", 11);
        s.kind = Kind::HighRisk;
        g.add(&o, &s, 11);
        let mut drained: Vec<(String, Kind, u64)> = g
            .drain()
            .into_iter()
            .map(|p| (p.user, p.kind, p.count))
            .collect();
        drained.sort_by(|x, y| (&x.0, x.1.as_str()).cmp(&(&y.0, y.1.as_str())));
        assert_eq!(
            drained,
            [
                (String::from("a"), Kind::Blocked, 2),
                (String::from("a"), Kind::HighRisk, 1),
                (String::from("b"), Kind::Blocked, 1)
            ]
        );
        assert!(g.is_empty());
    }
}
