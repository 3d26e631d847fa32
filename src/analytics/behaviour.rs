//! User behaviour and tool usage (`analyze user`, `analyze tools`): figures over the calls of
//! a time window, with the history before it for what is usual.
//!
//! # A user's behavioural risk score (0-100)
//!
//! The sum of four parts, each with its reason, capped at 100:
//!
//! | part | points | cap |
//! |---|---|---|
//! | anomalies about the user in the window | 25 per `high`, 15 per `medium`, 5 per `low` finding | 60 |
//! | high-risk activity | 40 × the share of their calls at risk `high` or `critical` | 20 |
//! | refused or blocked calls | 3 per call | 15 |
//! | calls outside their usual hours | 20 × that share | 10 |
//!
//! Anomalies weigh most because they compare the user with their own history and their
//! peers; risk levels and refusals are the policy's view of single calls; off-hours work is
//! weak evidence alone (on-call nights, travel).
//!
//! # Usual hours and time zone
//!
//! The user's time zone is `[analytics] time_zones` when configured, else inferred: the whole
//! hour offset that centres their calls (circular mean of the time of day) on 13:00 local
//! ([`usual_offset`]). A local hour is usual when the user worked in it on at
//! least a fifth of their active days (and on two days at least), over the history read
//! before the window when it has five active days or more, else over everything read.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;

use serde::Serialize;

use super::anomalies::Finding;
use super::{Call, Context};
use crate::audit::{Outcome, RiskLevel};

const HOUR: u64 = 3_600_000;
const DAY: u64 = 24 * HOUR;

/// Whether a finding is about `user` (its subject names them, alone or among others).
pub fn concerns(f: &Finding, user: &str) -> bool {
    f.subject.get("user").and_then(|u| u.as_str()) == Some(user)
        || f.subject
            .get("users")
            .and_then(|u| u.as_array())
            .is_some_and(|a| a.iter().any(|u| u.as_str() == Some(user)))
}

/// Counts of calls by risk level, as the event JSON spells them.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct RiskCounts {
    /// `low`.
    pub low: usize,
    /// `medium`.
    pub medium: usize,
    /// `high`.
    pub high: usize,
    /// `critical`.
    pub critical: usize,
}

impl RiskCounts {
    pub(crate) fn add(&mut self, r: RiskLevel) {
        match r {
            RiskLevel::Low => self.low += 1,
            RiskLevel::Medium => self.medium += 1,
            RiskLevel::High => self.high += 1,
            RiskLevel::Critical => self.critical += 1,
        }
    }
}

/// One tool's figures over some calls.
#[derive(Debug, Clone, Serialize)]
pub struct ToolUsage {
    /// `tool_name`.
    pub tool: String,
    /// Calls (access events).
    pub calls: usize,
    /// Distinct users.
    pub users: usize,
    /// Calls that ended with `success`.
    pub succeeded: usize,
    /// Calls whose end is not in the store (yet): running, or lost with their process.
    pub unfinished: usize,
    /// `succeeded` / calls that ended with an outcome (null when none did): a round answered
    /// with `input_required` (its retry is a call of its own) or a task with no final end is
    /// not counted.
    pub success_rate: Option<f64>,
    /// Mean `execution_time_us` of the ended calls that ran (not blocked or refused), in
    /// milliseconds.
    pub avg_execution_ms: Option<f64>,
    /// 95th percentile (nearest rank) of the same, in milliseconds.
    pub p95_execution_ms: Option<f64>,
    /// Calls by risk level (the access event's, or its end's when the result raised it).
    pub risk: RiskCounts,
    /// What the calls did: the ended calls by `result` (`success`, `error`, `blocked`, …).
    pub results: BTreeMap<String, usize>,
}

/// Per-tool figures, most used first (ties by name).
pub fn tool_usage<'a>(calls: impl IntoIterator<Item = &'a Call>) -> Vec<ToolUsage> {
    #[derive(Default)]
    struct Acc<'a> {
        calls: usize,
        users: HashSet<&'a str>,
        succeeded: usize,
        ended: usize,
        decided: usize,
        times_us: Vec<u64>,
        risk: RiskCounts,
        results: BTreeMap<String, usize>,
    }
    let mut by_tool: HashMap<&str, Acc> = HashMap::new();
    for c in calls {
        let a = by_tool.entry(&c.tool).or_default();
        a.calls += 1;
        a.users.insert(&c.user);
        a.risk.add(c.risk());
        if let Some(e) = c.end {
            a.ended += 1;
            a.decided += usize::from(e.result.decides());
            if e.result == Outcome::Success {
                a.succeeded += 1;
            }
            *a.results.entry(e.result.as_str().to_string()).or_default() += 1;
            a.times_us.extend(e.execution_us.filter(|_| e.result.ran()));
        }
    }
    let mut out: Vec<ToolUsage> = by_tool
        .into_iter()
        .map(|(t, mut a)| {
            a.times_us.sort_unstable();
            let n = a.times_us.len();
            ToolUsage {
                tool: t.to_string(),
                calls: a.calls,
                users: a.users.len(),
                succeeded: a.succeeded,
                unfinished: a.calls - a.ended,
                success_rate: (a.decided > 0).then(|| a.succeeded as f64 / a.decided as f64),
                avg_execution_ms: (n > 0)
                    .then(|| a.times_us.iter().sum::<u64>() as f64 / n as f64 / 1000.0),
                p95_execution_ms: (n > 0)
                    .then(|| a.times_us[(n * 95).div_ceil(100) - 1] as f64 / 1000.0),
                risk: a.risk,
                results: a.results,
            }
        })
        .collect();
    out.sort_by(|a, b| b.calls.cmp(&a.calls).then_with(|| a.tool.cmp(&b.tool)));
    out
}

/// A call the policy rated high or critical, or refused: what `analyze` lists.
#[derive(Debug, Clone, Serialize)]
pub struct Activity {
    /// The access event's id.
    pub event_id: String,
    /// RFC 3339.
    pub at: String,
    /// `user_id`.
    pub user: String,
    /// `tool_name`.
    pub tool: String,
    /// The call's risk level.
    pub risk: &'static str,
    /// The end's result, if ended.
    pub result: Option<&'static str>,
    /// Why the policy rated it so (`metadata.risk_reasons`).
    pub reasons: Vec<String>,
}

fn refused(c: &Call) -> bool {
    c.end
        .is_some_and(|e| matches!(e.result, Outcome::Blocked | Outcome::Refused))
}

/// High-risk activity: calls at `high` or `critical`, or refused or blocked, newest first,
/// at most `limit`; and how many there were.
pub fn high_risk<'a>(
    calls: impl IntoIterator<Item = &'a Call>,
    limit: usize,
) -> (Vec<Activity>, usize) {
    let mut all: Vec<&Call> = calls
        .into_iter()
        .filter(|c| c.risk() >= RiskLevel::High || refused(c))
        .collect();
    all.sort_by_key(|c| std::cmp::Reverse((c.at_ms, c.id)));
    let total = all.len();
    let list = all
        .into_iter()
        .take(limit)
        .map(|c| Activity {
            event_id: c.id.to_string(),
            at: super::ms_time::text(c.at_ms),
            user: c.user.to_string(),
            tool: c.tool.to_string(),
            risk: c.risk().as_str(),
            result: c.end.map(|e| e.result.as_str()),
            reasons: c.risk_reasons.clone(),
        })
        .collect();
    (list, total)
}

/// `analyze tools`.
#[derive(Debug, Clone, Serialize)]
pub struct ToolsReport {
    /// Window start, RFC 3339.
    pub from: String,
    /// Window end, RFC 3339.
    pub to: String,
    /// Calls in the window.
    pub calls: usize,
    /// Per tool, most used first.
    pub tools: Vec<ToolUsage>,
    /// All calls by risk level.
    pub risk: RiskCounts,
    /// High-risk calls (high, critical, refused or blocked), newest first (at most 20).
    pub high_risk: Vec<Activity>,
    /// How many high-risk calls there were in all.
    pub high_risk_total: usize,
    /// The clients' high-risk answers to servers' questions (`server_request` events at
    /// `high` or above: a secret typed into a server's form), newest first (at most 20):
    /// no calls, so not counted above. Filled by the command from the store's index.
    pub high_risk_answers: Vec<Activity>,
    /// How many there were in all.
    pub high_risk_answers_total: usize,
}

/// The tools report over `calls` (already limited to the window).
pub fn tools_report(calls: &[Call], from_ms: u64, to_ms: u64) -> ToolsReport {
    let mut risk = RiskCounts::default();
    for c in calls {
        risk.add(c.risk());
    }
    let (high_risk, high_risk_total) = high_risk(calls, 20);
    ToolsReport {
        from: super::ms_time::text(from_ms),
        to: super::ms_time::text(to_ms),
        calls: calls.len(),
        tools: tool_usage(calls),
        risk,
        high_risk,
        high_risk_total,
        high_risk_answers: Vec::new(),
        high_risk_answers_total: 0,
    }
}

/// A user's session in the window.
#[derive(Debug, Clone, Serialize)]
pub struct Session {
    /// `session_id`.
    pub session: String,
    /// First call, RFC 3339.
    pub first: String,
    /// Last call, RFC 3339.
    pub last: String,
    /// From the first call to the last, in seconds.
    pub length_s: f64,
    /// Calls.
    pub calls: usize,
}

/// Calls per value (addresses, clients), most first.
#[derive(Debug, Clone, Serialize)]
pub struct Seen {
    /// The address or client.
    pub value: String,
    /// Calls.
    pub calls: usize,
    /// First call in the window, RFC 3339.
    pub first: String,
    /// Last call in the window, RFC 3339.
    pub last: String,
}

/// One part of the behavioural risk score.
#[derive(Debug, Clone, Serialize)]
pub struct ScorePart {
    /// Points this part adds (after its cap).
    pub points: u32,
    /// Why, for a person.
    pub reason: String,
}

/// `analyze user`.
#[derive(Debug, Clone, Serialize)]
pub struct UserReport {
    /// `user_id`.
    pub user: String,
    /// Window start, RFC 3339.
    pub from: String,
    /// Window end, RFC 3339.
    pub to: String,
    /// Calls in the window.
    pub calls: usize,
    /// Source addresses (gateway calls), most used first.
    pub source_ips: Vec<Seen>,
    /// Clients (`name/version`), most used first.
    pub user_agents: Vec<Seen>,
    /// Sessions, longest first.
    pub sessions: Vec<Session>,
    /// Median session length, seconds.
    pub median_session_s: Option<f64>,
    /// Per tool, most used first.
    pub tools: Vec<ToolUsage>,
    /// The user's time zone as a UTC offset (`+01:00`).
    pub time_zone: String,
    /// `configured` (`[analytics] time_zones`) or `inferred` (from their hours).
    pub time_zone_source: &'static str,
    /// Calls per local hour of the day (0-23) in the window.
    pub hour_histogram: [usize; 24],
    /// The local hours the user usually works in.
    pub usual_hours: Vec<u8>,
    /// Share of the window's calls outside those hours (0-1).
    pub outside_usual_hours: f64,
    /// Anomalies about the user in the window.
    pub anomalies: Vec<Finding>,
    /// High-risk calls (high, critical, refused or blocked), newest first (at most 20).
    pub high_risk: Vec<Activity>,
    /// How many high-risk calls the window holds (`high_risk` lists the newest 20).
    pub high_risk_total: usize,
    /// The user's high-risk answers to servers' questions, as in [`ToolsReport`].
    pub high_risk_answers: Vec<Activity>,
    /// How many there were in all.
    pub high_risk_answers_total: usize,
    /// The behavioural risk score, 0-100 (see the module docs for the formula).
    pub risk_score: u32,
    /// The parts that make it up.
    pub risk_reasons: Vec<ScorePart>,
}

/// `+01:00` for 60.
pub fn offset_text(minutes: i32) -> String {
    let sign = if minutes < 0 { '-' } else { '+' };
    let m = minutes.unsigned_abs();
    format!("{sign}{:02}:{:02}", m / 60, m % 60)
}

/// The whole-hour UTC offset (minutes) that centres `calls` on 13:00 local time, the middle
/// of an office day: the circular mean of their times of day (so that a day straddling
/// midnight UTC averages right), rounded to the hour, in −12:00 … +14:00. Approximate by
/// nature (a half-hour zone comes out as a neighbour); configure `[analytics] time_zones`
/// where it matters. `0` without calls.
pub fn usual_offset<'a>(calls: impl IntoIterator<Item = &'a Call>) -> i32 {
    let (mut x, mut y) = (0.0f64, 0.0f64);
    for c in calls {
        let minute = ((c.at_ms / 60_000) % 1440) as f64;
        let a = minute / 1440.0 * std::f64::consts::TAU;
        x += a.cos();
        y += a.sin();
    }
    if x == 0.0 && y == 0.0 {
        return 0;
    }
    let mean = y.atan2(x).rem_euclid(std::f64::consts::TAU) / std::f64::consts::TAU * 1440.0;
    let hours = ((13.0 * 60.0 - mean) / 60.0).round() as i32;
    let wrapped = (hours + 12).rem_euclid(24) - 12;
    // −12 and +12 are one zone; +13 and +14 exist too but cannot be told from −11 and −10.
    wrapped * 60
}

fn local_hour(at_ms: u64, offset_min: i32) -> usize {
    ((at_ms as i64 + offset_min as i64 * 60_000).div_euclid(HOUR as i64)).rem_euclid(24) as usize
}

fn seen(values: impl IntoIterator<Item = (String, u64)>) -> Vec<Seen> {
    let mut m: HashMap<String, (usize, u64, u64)> = HashMap::new();
    for (v, at) in values {
        let e = m.entry(v).or_insert((0, at, at));
        e.0 += 1;
        e.1 = e.1.min(at);
        e.2 = e.2.max(at);
    }
    let mut out: Vec<Seen> = m
        .into_iter()
        .map(|(value, (calls, f, l))| Seen {
            value,
            calls,
            first: super::ms_time::text(f),
            last: super::ms_time::text(l),
        })
        .collect();
    out.sort_by(|a, b| b.calls.cmp(&a.calls).then_with(|| a.value.cmp(&b.value)));
    out
}

/// The user report: `history` is every call read (the baseline before the window and the
/// window), `findings` the detectors' findings over it; the window is `[from_ms, to_ms]`.
pub fn user_report(
    user: &str,
    history: &[Call],
    findings: &[Finding],
    context: &Context,
    from_ms: u64,
    to_ms: u64,
) -> UserReport {
    let mine: Vec<&Call> = history.iter().filter(|c| &*c.user == user).collect();
    let window: Vec<&Call> = mine
        .iter()
        .copied()
        .filter(|c| c.at_ms >= from_ms && c.at_ms <= to_ms)
        .collect();
    let before: Vec<&Call> = mine.iter().copied().filter(|c| c.at_ms < from_ms).collect();

    let (offset, tz_source) = match context.time_zones.get(user) {
        Some(&o) => (o, "configured"),
        None => (usual_offset(mine.iter().copied()), "inferred"),
    };
    let basis: &[&Call] = {
        let days: HashSet<u64> = before.iter().map(|c| c.at_ms / DAY).collect();
        if days.len() >= 5 { &before } else { &mine }
    };
    let mut days_in_hour: [HashSet<u64>; 24] = std::array::from_fn(|_| HashSet::new());
    let mut active: HashSet<u64> = HashSet::new();
    for c in basis {
        let local_day = (c.at_ms as i64 + offset as i64 * 60_000).div_euclid(DAY as i64) as u64;
        days_in_hour[local_hour(c.at_ms, offset)].insert(local_day);
        active.insert(local_day);
    }
    let need = ((active.len() as f64 / 5.0).ceil() as usize).max(2);
    let usual_hours: Vec<u8> = (0..24u8)
        .filter(|&h| days_in_hour[h as usize].len() >= need)
        .collect();
    let mut hour_histogram = [0usize; 24];
    let mut outside = 0usize;
    for c in &window {
        let h = local_hour(c.at_ms, offset);
        hour_histogram[h] += 1;
        // No usual hours (fewer than two days of calls): nothing is outside them; a new
        // user is not scored as working at odd hours.
        if !usual_hours.is_empty() && !usual_hours.contains(&(h as u8)) {
            outside += 1;
        }
    }
    let outside_share = if window.is_empty() {
        0.0
    } else {
        outside as f64 / window.len() as f64
    };

    let mut sessions: HashMap<&str, (u64, u64, usize)> = HashMap::new();
    for c in &window {
        let e = sessions.entry(&c.session).or_insert((c.at_ms, c.at_ms, 0));
        e.0 = e.0.min(c.at_ms);
        e.1 = e.1.max(c.at_ms);
        e.2 += 1;
    }
    let mut sessions: Vec<Session> = sessions
        .into_iter()
        .map(|(s, (f, l, n))| Session {
            session: s.to_string(),
            first: super::ms_time::text(f),
            last: super::ms_time::text(l),
            length_s: (l - f) as f64 / 1000.0,
            calls: n,
        })
        .collect();
    sessions.sort_by(|a, b| {
        b.length_s
            .total_cmp(&a.length_s)
            .then_with(|| a.session.cmp(&b.session))
    });
    let median_session_s = if sessions.is_empty() {
        None
    } else {
        let mut l: Vec<f64> = sessions.iter().map(|s| s.length_s).collect();
        l.sort_by(f64::total_cmp);
        let n = l.len();
        Some(if n % 2 == 1 {
            l[n / 2]
        } else {
            (l[n / 2 - 1] + l[n / 2]) / 2.0
        })
    };

    let anomalies: Vec<Finding> = findings
        .iter()
        .filter(|f| concerns(f, user) && f.to_ms >= from_ms && f.from_ms <= to_ms)
        .cloned()
        .collect();
    let (high_risk, high_risk_total) = high_risk(window.iter().copied(), 20);

    // The score (module docs).
    let mut parts = Vec::new();
    if !anomalies.is_empty() {
        let raw: u32 = anomalies
            .iter()
            .map(|f| match f.severity.as_ref() {
                "high" => 25,
                "medium" => 15,
                _ => 5,
            })
            .sum();
        let kinds: Vec<String> = anomalies
            .iter()
            .map(|f| format!("{} ({})", f.kind, f.severity))
            .collect();
        parts.push(ScorePart {
            points: raw.min(60),
            reason: format!("{} anomalies: {}", anomalies.len(), kinds.join(", ")),
        });
    }
    let risky = window
        .iter()
        .filter(|c| c.risk() >= RiskLevel::High)
        .count();
    if risky > 0 {
        let share = risky as f64 / window.len() as f64;
        parts.push(ScorePart {
            points: ((40.0 * share).round() as u32).min(20),
            reason: format!("{risky} of {} calls at high or critical risk", window.len()),
        });
    }
    let blocked = window.iter().filter(|c| refused(c)).count();
    if blocked > 0 {
        parts.push(ScorePart {
            points: (3 * blocked as u32).min(15),
            reason: format!("{blocked} calls refused or blocked by the policy"),
        });
    }
    if outside > 0 {
        parts.push(ScorePart {
            points: ((20.0 * outside_share).round() as u32).min(10),
            reason: format!(
                "{outside} of {} calls ({:.0}%) outside their usual hours",
                window.len(),
                outside_share * 100.0
            ),
        });
    }
    let risk_score = parts.iter().map(|p| p.points).sum::<u32>().min(100);

    let ips = window
        .iter()
        .filter_map(|c| c.ip.map(|ip: IpAddr| (ip.to_string(), c.at_ms)));
    let agents = window
        .iter()
        .filter_map(|c| c.client.as_deref().map(|a| (a.to_string(), c.at_ms)));
    UserReport {
        user: user.to_string(),
        from: super::ms_time::text(from_ms),
        to: super::ms_time::text(to_ms),
        calls: window.len(),
        source_ips: seen(ips),
        user_agents: seen(agents),
        sessions,
        median_session_s,
        tools: tool_usage(window.iter().copied()),
        time_zone: offset_text(offset),
        time_zone_source: tz_source,
        hour_histogram,
        usual_hours,
        outside_usual_hours: outside_share,
        anomalies,
        high_risk,
        high_risk_total,
        high_risk_answers: Vec::new(),
        high_risk_answers_total: 0,
        risk_score,
        risk_reasons: parts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analytics::End;
    use crate::audit::EventId;

    fn call(n: u64, at_ms: u64, user: &str, risk: RiskLevel, result: Outcome) -> Call {
        Call {
            id: EventId(ulid::Ulid::from_parts(at_ms, u128::from(n))),
            at_ms,
            user: user.into(),
            tool: "echo".into(),
            session: "s".into(),
            ip: None,
            client: None,
            arguments: Box::default(),
            tags: Vec::new(),
            roles: Vec::new(),
            risk,
            risk_reasons: vec!["r".into()],
            end: Some(End {
                id: EventId(ulid::Ulid::from_parts(at_ms + 1, u128::from(n))),
                failed: result != Outcome::Success,
                result,
                risk,
                execution_us: Some(1000 * (n + 1)),
                output_bytes: None,
                regulated: false,
            }),
        }
    }

    #[test]
    fn the_inferred_zone_centres_the_working_day_on_one_pm() {
        // 09:00-17:00 in UTC+8 is 01:00-09:00 UTC; in UTC-5, 14:00-22:00 UTC.
        for (offset_h, first_utc_h) in [(8i64, 1u64), (-5, 14), (0, 9)] {
            let calls: Vec<Call> = (0..10)
                .flat_map(|day| {
                    (0..32).map(move |q| {
                        let at = day * DAY + first_utc_h * HOUR + q * 15 * 60_000;
                        call(q, at, "u", RiskLevel::Low, Outcome::Success)
                    })
                })
                .collect();
            assert_eq!(usual_offset(&calls), (offset_h * 60) as i32, "{offset_h}");
        }
    }

    #[test]
    fn the_score_adds_its_parts_with_their_caps() {
        // 10 days of history at 09:00-10:00 UTC, then a window of 10 calls: 2 high-risk,
        // 1 blocked, 4 at 03:00 (outside the usual hours).
        let mut calls = Vec::new();
        for day in 0..10 {
            for q in 0..4 {
                calls.push(call(
                    q,
                    day * DAY + 9 * HOUR + q * 600_000,
                    "u",
                    RiskLevel::Low,
                    Outcome::Success,
                ));
            }
        }
        let from = 10 * DAY;
        let window = [
            (9, RiskLevel::High, Outcome::Success),
            (9, RiskLevel::Critical, Outcome::Success),
            (9, RiskLevel::Low, Outcome::Blocked),
            (9, RiskLevel::Low, Outcome::Success),
            (9, RiskLevel::Low, Outcome::Error),
            (9, RiskLevel::Low, Outcome::Success),
            (3, RiskLevel::Low, Outcome::Success),
            (3, RiskLevel::Low, Outcome::Success),
            (3, RiskLevel::Low, Outcome::Success),
            (3, RiskLevel::Low, Outcome::Success),
        ];
        for (i, (h, risk, result)) in window.into_iter().enumerate() {
            calls.push(call(
                100 + i as u64,
                from + h * HOUR + i as u64 * 60_000,
                "u",
                risk,
                result,
            ));
        }
        calls.sort_by_key(|c| c.at_ms);
        let context = Context {
            time_zones: [("u".to_string(), 0)].into(),
            ..Context::default()
        };
        let finding: Finding = serde_json::from_value(serde_json::json!({
            "family": "temporal", "kind": "off_hours", "severity": "high",
            "subject": {"user": "u"}, "from": "1970-01-11T03:00:00Z",
            "to": "1970-01-11T03:10:00Z", "evidence": [], "explanation": "x"
        }))
        .unwrap();
        let r = user_report("u", &calls, &[finding], &context, from, from + DAY - 1);
        assert_eq!(r.calls, 10);
        assert_eq!(r.usual_hours, vec![9]);
        assert!((r.outside_usual_hours - 0.4).abs() < 1e-9);
        let points: Vec<u32> = r.risk_reasons.iter().map(|p| p.points).collect();
        // 25 (one high finding), 40 × 2/10 = 8, 3 × 1, 20 × 0.4 = 8.
        assert_eq!(points, vec![25, 8, 3, 8]);
        assert_eq!(r.risk_score, 44);
        assert_eq!(r.hour_histogram[3], 4);
        assert_eq!(r.hour_histogram[9], 6);
        let echo = &r.tools[0];
        assert_eq!((echo.calls, echo.succeeded), (10, 8));
        assert_eq!(echo.results["blocked"], 1);
        assert_eq!((echo.risk.high, echo.risk.critical), (1, 1));
        // 95th percentile (nearest rank) of 1..=10 ms over ids 100..109: the tenth.
        assert_eq!(echo.p95_execution_ms, Some(110.0));
        let (high, total) = high_risk(&calls, 20);
        assert_eq!(total, 3);
        assert_eq!(high[0].result, Some("blocked"));
        assert_eq!((r.high_risk.len(), r.high_risk_total), (3, 3));
    }

    #[test]
    fn a_users_high_risk_calls_are_counted_past_the_twenty_listed() {
        // Found by a fresh pass: "high-risk activity: 20" for a user whose score line said
        // 71 of 1192 calls were high or critical.
        let calls: Vec<Call> = (0..71)
            .map(|i| {
                call(
                    i,
                    9 * HOUR + i * 1000,
                    "u",
                    RiskLevel::High,
                    Outcome::Success,
                )
            })
            .collect();
        let r = user_report("u", &calls, &[], &Context::default(), 0, DAY - 1);
        assert_eq!((r.high_risk.len(), r.high_risk_total), (20, 71));
    }

    #[test]
    fn a_user_with_one_day_of_calls_has_no_usual_hours_and_none_outside_them() {
        // Found by a fresh pair of eyes: a new user's six calls were all "outside their usual
        // hours" (+10 to the score) although they had none.
        let calls: Vec<Call> = (0..6)
            .map(|i| {
                call(
                    i,
                    3 * HOUR + i * 60_000,
                    "u",
                    RiskLevel::Low,
                    Outcome::Success,
                )
            })
            .collect();
        let r = user_report("u", &calls, &[], &Context::default(), 0, DAY - 1);
        assert_eq!(r.calls, 6);
        assert!(r.usual_hours.is_empty());
        assert_eq!(r.outside_usual_hours, 0.0);
        assert!(
            r.risk_reasons
                .iter()
                .all(|p| !p.reason.contains("usual hours")),
            "{:?}",
            r.risk_reasons
        );
    }
}
