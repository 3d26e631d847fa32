//! Anomaly detection over calls, four families (the design notes' statistical, behavioural,
//! temporal and network anomalies). Each finding names its family and kind, a subject (a
//! user, an address or a tool), a time window, the evidence (access event ids) and a
//! one-line explanation.
//!
//! Every detector compares a subject with its own robust baseline (medians and median
//! absolute deviations, which a few anomalous points do not move) and then asks the
//! population before it speaks: a change most peers made at the same time (a rollout, a
//! renumbering, month-end) is not one user's anomaly. What each detector does, and the benign
//! pattern it guards against, is in its doc comment. Detectors need history: a subject with
//! less than [`WARM_UP_DAYS`] of it is not judged on novelty (new hires, new accounts).
//!
//! Statistical findings judge users and tools alike (issue 10 item 2: "a user's or tool's call
//! rate, error rate, execution time or output size"): a tool's error rate and execution time
//! hour by hour over everyone, and one user's error rate over all their tools, and their
//! execution times and output sizes on one tool against both the tool's usual and their own.
//!
//! Batch form: [`detect_held`] reads the calls as [`Held`] rows (56 bytes a call, their texts
//! shared: see `held.rs`), in any order; [`detect`] takes a slice of [`Call`]s. Memory is
//! proportional to the calls given.

use std::collections::BTreeMap;

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::Value;

mod held;
mod network;
mod pace;
mod temporal;

/// The detectors' tables are keyed by numbers (users, tools, days): FxHash, not SipHash
/// (no untrusted keys chosen to collide here; SipHash was 6% of `anomalies`' CPU).
type HashMap<K, V> = rustc_hash::FxHashMap<K, V>;
type HashSet<K> = rustc_hash::FxHashSet<K>;

pub use held::Held;
use held::{Arg, FEW_VALUES, NONE, Names, Row};
pub(crate) use network::net_of;
use network::networks;
use temporal::{burst, fold_bursts, off_hours};

use super::{Call, Context};
use crate::audit::EventId;

const MINUTE: u64 = 60_000;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;
/// History a subject needs before novelty (first tool, first client, first network) counts.
pub const WARM_UP_DAYS: u64 = 5;

/// One anomaly found; its JSON is what `anomalies --json` prints, one per line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Finding {
    /// `statistical`, `behavioural`, `temporal` or `network`.
    pub family: Cow<'static, str>,
    /// What was seen: `call_rate`, `output_size`, `error_rate`, `execution_time`,
    /// `first_use`, `new_client`, `unusual_arguments`, `read_then_send`, `off_hours`,
    /// `burst`, `new_network`, `many_addresses`, `shared_address`, `impossible_travel`.
    pub kind: Cow<'static, str>,
    /// `low`, `medium` or `high`.
    pub severity: Cow<'static, str>,
    /// Who or what: `{"user": …}`, `{"ip": …, "users": […]}` or `{"tool": …}`.
    pub subject: Value,
    /// Start of the window, milliseconds since the Unix epoch (in JSON: `from`, RFC 3339).
    #[serde(rename = "from", with = "super::ms_time")]
    pub from_ms: u64,
    /// End of the window (inclusive), same unit (in JSON: `to`).
    #[serde(rename = "to", with = "super::ms_time")]
    pub to_ms: u64,
    /// Access event ids of the calls that make it up.
    pub evidence: Vec<EventId>,
    /// One line for a person.
    pub explanation: String,
}

impl Finding {
    /// The subject for a person: `alice`, `alice / read_file`, `203.0.113.5 (3 users)`,
    /// `tool read_file`.
    pub fn subject_text(&self) -> String {
        let s = &self.subject;
        let get = |k: &str| s.get(k).and_then(Value::as_str);
        match (get("user"), get("tool"), get("ip")) {
            (Some(u), Some(t), _) => format!("{u} / {t}"),
            (Some(u), None, _) => u.to_string(),
            (None, _, Some(ip)) => {
                let n = s.get("users").and_then(Value::as_array).map_or(0, Vec::len);
                format!("{ip} ({n} users)")
            }
            (None, Some(t), None) => format!("tool {t}"),
            _ => s.to_string(),
        }
    }

    fn new(
        family: &'static str,
        kind: &'static str,
        severity: &'static str,
        subject: Value,
        calls: &[&Row],
        explanation: String,
    ) -> Finding {
        Finding {
            family: family.into(),
            kind: kind.into(),
            severity: severity.into(),
            subject,
            from_ms: calls.iter().map(|c| c.at_ms).min().unwrap_or(0),
            to_ms: calls.iter().map(|c| c.at_ms).max().unwrap_or(0),
            evidence: calls.iter().map(|c| c.id()).collect(),
            explanation,
        }
    }
}

/// Runs every detector over `calls` (in any order).
pub fn detect(calls: &[Call], context: &Context) -> Vec<Finding> {
    detect_held(Held::from_calls(calls), context)
}

/// Runs every detector over the calls `held` ([`Held`]: what the commands fill as they read
/// the store, without holding the [`Call`]s).
pub fn detect_held(mut held: Held, context: &Context) -> Vec<Finding> {
    // The detectors number rows with `u32` (4 bytes a call); 4 billion calls would need
    // ~240 GB of rows, far past any memory this runs in.
    assert!(
        u32::try_from(held.len()).is_ok(),
        "more calls than the anomaly detectors can number"
    );
    held.sort();
    let h = &held;
    let people = People::new(h, context);
    let (all, ranges) = by_user(h);
    let by_user: Vec<&[&Row]> = ranges.into_iter().map(|r| &all[r]).collect();
    // Two groups of detectors, one per thread (they only read the rows), of about the same
    // work at 10 M events. Each detector's findings are kept apart and joined in one fixed
    // order, so that the sort below (stable) orders equal keys the same whatever thread ran
    // what.
    type Found = Vec<Finding>;
    let (mine, theirs): ([Found; 5], [Found; 3]) = std::thread::scope(|s| {
        let other = s.spawn(|| {
            let mut times = Vec::new();
            execution_time(h, &mut times);
            let mut user_times = Vec::new();
            let figure = Row::execution_us;
            user_tool_figure(
                h,
                &people,
                "execution_time",
                figure,
                &times,
                &mut user_times,
            );
            let mut rest = Vec::new();
            first_use(h, &people, &mut rest);
            new_client(h, &people, &mut rest);
            unusual_arguments(h, &people, &mut rest);
            read_then_send(h, &people, &mut rest);
            networks(h, &people, context, &mut rest);
            [times, user_times, rest]
        });
        let mut rates = Vec::new();
        call_rate(h, &by_user, &people, &mut rates);
        let mut days = Vec::new();
        pace::busy_day(h, &by_user, &people, &rates, &mut days);
        rates.extend(days);
        let mut sizes = Vec::new();
        output_size(h, &mut sizes);
        let mut errors = Vec::new();
        error_rate(h, &mut errors);
        user_error_rate(h, &by_user, &people, &mut errors);
        let mut user_sizes = Vec::new();
        let figure = Row::output_bytes;
        user_tool_figure(h, &people, "output_size", figure, &sizes, &mut user_sizes);
        let mut temporal = Vec::new();
        off_hours(h, &by_user, &people, &mut temporal);
        burst(h, &by_user, &people, &mut temporal);
        match other.join() {
            Ok(theirs) => ([rates, sizes, errors, user_sizes, temporal], theirs),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    });
    let [mut rates, sizes, errors, user_sizes, mut temporal] = mine;
    let [times, user_times, rest] = theirs;
    fold_bursts(&mut rates, &mut temporal);
    let mut out = Vec::new();
    for part in [
        rates, sizes, errors, times, user_sizes, user_times, temporal, rest,
    ] {
        out.extend(part);
    }
    out.sort_by(|a, b| (a.from_ms, &a.family, &a.kind).cmp(&(b.from_ms, &b.family, &b.kind)));
    out
}

/// Who is who, by user number: each user's first call, latest role and whether it is a
/// service account.
struct People {
    first_ms: Vec<u64>,
    role: Vec<u32>,
    service: Vec<bool>,
}

impl People {
    fn new(h: &Held, context: &Context) -> People {
        let n = h.users.len();
        let mut first_ms = vec![u64::MAX; n];
        for r in &h.rows {
            let f = &mut first_ms[r.user as usize];
            *f = (*f).min(r.at_ms);
        }
        let mut service = vec![false; n];
        for s in &context.service_accounts {
            if let Some(u) = h.users.find(s) {
                service[u as usize] = true;
            }
        }
        People {
            first_ms,
            // The latest role: someone who moved teams is judged among their new peers.
            role: (0..n as u32).map(|u| h.role_of(u)).collect(),
            service,
        }
    }

    /// Whether `user` had [`WARM_UP_DAYS`] of history at `at`.
    fn warm(&self, user: u32, at: u64) -> bool {
        let f = self.first_ms[user as usize];
        f != u64::MAX && at >= f + WARM_UP_DAYS * DAY
    }

    fn role(&self, user: u32) -> u32 {
        self.role[user as usize]
    }

    fn service(&self, user: u32) -> bool {
        self.service[user as usize]
    }
}

/// A role's name for a person (`""` for none).
fn role_name(h: &Held, role: u32) -> &str {
    if role == NONE { "" } else { h.roles.get(role) }
}

/// The median of `v` (0 when empty), which is left reordered. By selection, not sorting:
/// the baselines of a tool take the median of a million figures and more at 10 M events.
fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let n = v.len();
    let (below, mid, _) = v.select_nth_unstable_by(n / 2, |a, b| a.total_cmp(b));
    let mid = *mid;
    if n % 2 == 1 {
        mid
    } else {
        let low = below.iter().copied().max_by(|a, b| a.total_cmp(b));
        (low.unwrap_or(mid) + mid) / 2.0
    }
}

/// `items` ordered by `key` (each below `keys`), in their own order within a key: a counting
/// sort, two passes and no comparisons, for groupings of millions of calls by user, tool or
/// time block (a comparison sort of the rows by user was a sixth of `anomalies` at 10 M
/// events). Panics if a key is not below `keys`.
fn grouped<T: Copy>(
    items: impl Iterator<Item = T> + Clone,
    keys: usize,
    key: impl Fn(&T) -> usize,
) -> Vec<T> {
    let mut next = vec![0usize; keys + 1];
    let mut first = None;
    for t in items.clone() {
        next[key(&t) + 1] += 1;
        first.get_or_insert(t);
    }
    let Some(first) = first else {
        return Vec::new();
    };
    for k in 1..=keys {
        next[k] += next[k - 1];
    }
    let mut out = vec![first; next[keys]];
    for t in items {
        let k = key(&t);
        out[next[k]] = t;
        next[k] += 1;
    }
    out
}

/// Median and MAD scaled to a standard deviation (×1.4826), with a floor on the spread.
fn robust(mut v: Vec<f64>, floor: f64) -> (f64, f64) {
    let m = median(&mut v);
    let mut dev: Vec<f64> = v.iter().map(|x| (x - m).abs()).collect();
    (m, (median(&mut dev) * 1.4826).max(floor))
}

/// How serious a finding's `severity` is: `high` 2, `medium` 1, anything else 0 (`low`).
pub(crate) fn severity_level(severity: &str) -> u8 {
    match severity {
        "high" => 2,
        "medium" => 1,
        _ => 0,
    }
}

fn severity(score: f64, moderate: f64, high: f64) -> &'static str {
    if score >= high {
        "high"
    } else if score >= moderate {
        "medium"
    } else {
        "low"
    }
}

/// Each user's calls, in time order, by user number: slices of one vector of all calls
/// ordered by user (8 bytes a call, no slack: per-user vectors grown by doubling took up
/// to twice that, the peak of `report` at 10 M events).
fn by_user(h: &Held) -> (Vec<&Row>, Vec<std::ops::Range<usize>>) {
    // Each user's calls stay in time order.
    let all = grouped(h.rows.iter(), h.users.len(), |r| r.user as usize);
    let mut ranges = vec![0..0; h.users.len()];
    let mut start = 0;
    for mine in all.chunk_by(|a, b| a.user == b.user) {
        ranges[mine[0].user as usize] = start..start + mine.len();
        start += mine.len();
    }
    (all, ranges)
}

/// Each tool's calls that pass `keep`, by clock hour (milliseconds since the epoch / 1 h), by
/// tool number: slices of `all`, which [`tool_hours_of`] fills.
fn tool_hours<'r>(h: &Held, all: &'r [u32]) -> Vec<BTreeMap<u64, &'r [u32]>> {
    let mut out: Vec<BTreeMap<u64, &[u32]>> = vec![BTreeMap::new(); h.tools.len()];
    let at = |i: &u32| (h.rows[*i as usize].tool, h.rows[*i as usize].at_ms / HOUR);
    for v in all.chunk_by(|a, b| at(a) == at(b)) {
        let (tool, hour) = at(&v[0]);
        out[tool as usize].insert(hour, v);
    }
    out
}

/// The calls that pass `keep`, as row numbers (4 bytes a call: two such lists, of 5 M calls
/// each at 10 M events, are held at once), ordered by tool and clock hour (in time order
/// within), for [`tool_hours`].
fn tool_hours_of(h: &Held, keep: impl Fn(&Row) -> bool) -> Vec<u32> {
    let rows = &h.rows;
    let kept = (0..rows.len() as u32).filter(|&i| keep(&rows[i as usize]));
    // By tool, each tool's calls in time order (so by clock hour).
    grouped(kept, h.tools.len(), |&i| rows[i as usize].tool as usize)
}

/// The longest span of calls a burst is: five minutes.
const BURST_SPAN: u64 = 5 * MINUTE;

/// The most of `calls` (time-ordered) within `span` ms, and the minutes they took (at
/// least 1).
fn densest(calls: &[&Row], span: u64) -> (usize, u64) {
    let (mut best, mut took, mut start) = (0, 0, 0);
    for i in 0..calls.len() {
        while calls[start].at_ms + span <= calls[i].at_ms {
            start += 1;
        }
        if i + 1 - start > best {
            best = i + 1 - start;
            took = calls[i].at_ms - calls[start].at_ms;
        }
    }
    (best, took.div_ceil(MINUTE).max(1))
}

/// Groups `calls` of one subject into runs whose gaps are at most `gap` ms.
fn runs(mut calls: Vec<&Row>, gap: u64) -> Vec<Vec<&Row>> {
    calls.sort_by_key(|c| c.at_ms);
    let mut out: Vec<Vec<&Row>> = Vec::new();
    for c in calls {
        match out.last_mut() {
            Some(run) if c.at_ms - run[run.len() - 1].at_ms <= gap => run.push(c),
            _ => out.push(vec![c]),
        }
    }
    out
}

/// How many times a user's pace an hour and the hour before it must each hold for
/// [`call_rate`] to set it against the busiest hours of their other days only, whatever their
/// peers' day.
const EXTREME: f64 = 8.0;

/// The 99th percentile of a user's clock hours with calls (`hours`: calls and day, busiest
/// first) on days other than `day`; 0 when there are none.
fn busiest_other(hours: &[(usize, u64)], day: u64) -> f64 {
    let mut others = hours.iter().filter(|(_, d)| *d != day);
    let m = others.clone().count();
    if m == 0 {
        return 0.0;
    }
    // The percentile's rank from the top (0: the busiest).
    let rank = m - 1 - (m * 99 / 100).min(m - 1);
    others.nth(rank).map_or(0.0, |(n, _)| *n as f64)
}

/// Statistical: a user's calls in a sliding hour far above their pace (the upper quartile of
/// their calls per clock hour with any): at least 12, 2.5 times the pace, and a z of 5 or more
/// both as a count (Poisson) and against the spread of their hours (median absolute
/// deviation), and 1.5 times their busiest ordinary hours (the 99th percentile: an agent that
/// works in episodes of dozens of calls has hours far above its pace every week). Suppressed
/// when a third or more of the user's role peers active that day made 1.8 times their usual
/// daily calls (month-end, an incident, a launch). [`EXTREME`] times the pace kept up for two
/// hours (in the hour and in the hour before it) is set against the busiest hours of the
/// user's other days instead, and never suppressed by the peers' day. An hour whose calls
/// are mostly packed into five minutes (60% or more, and 30 or more) is reported as a
/// temporal `burst` instead. A day of work spread far beyond the user's others, which no hour
/// shows, is [`pace::busy_day`]'s.
fn call_rate(h: &Held, by_user: &[&[&Row]], people: &People, out: &mut Vec<Finding>) {
    // Per user: calls per active clock hour and per active day.
    let n = by_user.len();
    let mut hourly: Vec<(f64, f64, f64)> = vec![(0.0, 0.0, 0.0); n];
    let mut daily: Vec<BTreeMap<u64, usize>> = vec![BTreeMap::new(); n];
    // Per user: each active clock hour's calls and day, busiest first.
    let mut by_count: Vec<Vec<(usize, u64)>> = vec![Vec::new(); n];
    for (u, v) in by_user.iter().enumerate() {
        if v.is_empty() {
            continue;
        }
        // The calls are in time order: an hour's or a day's are one run.
        daily[u] = v
            .chunk_by(|a, b| a.at_ms / DAY == b.at_ms / DAY)
            .map(|d| (d[0].at_ms / DAY, d.len()))
            .collect();
        let mut counts: Vec<f64> = v
            .chunk_by(|a, b| a.at_ms / HOUR == b.at_ms / HOUR)
            .map(|n| n.len() as f64)
            .collect();
        counts.sort_by(|a, b| a.total_cmp(b));
        // The pace of a full working hour: the upper quartile (many active hours are partly
        // spent in meetings or between sessions).
        let pace = counts[counts.len() * 3 / 4].max(1.0);
        // Their busiest ordinary hours: the 99th percentile (a user whose agent runs in
        // episodes of dozens of calls has hours several times their pace every week).
        let busiest = counts[(counts.len() * 99 / 100).min(counts.len() - 1)];
        hourly[u] = (pace, robust(counts, 1.5).1, busiest);
        by_count[u] = v
            .chunk_by(|a, b| a.at_ms / HOUR == b.at_ms / HOUR)
            .map(|c| (c.len(), c[0].at_ms / DAY))
            .collect();
        by_count[u].sort_unstable_by(|a, b| b.cmp(a));
    }
    let usual_day: Vec<f64> = daily
        .iter()
        .map(|d| median(&mut d.values().map(|&n| n as f64).collect::<Vec<_>>()))
        .collect();
    let mut busy_day: HashMap<(u32, u64), (usize, usize)> = HashMap::default();
    for (u, d) in daily.iter().enumerate() {
        for (day, n) in d {
            let e = busy_day.entry((people.role(u as u32), *day)).or_default();
            e.0 += 1;
            if *n as f64 >= 1.8 * usual_day[u] {
                e.1 += 1;
            }
        }
    }
    for (u, v) in by_user.iter().enumerate() {
        let user = u as u32;
        if v.is_empty() || people.service(user) || daily[u].len() < 5 {
            continue;
        }
        let name = h.user(user);
        let (m, s, busiest) = hourly[u];
        let mut start = 0;
        // The start of the two hours up to the call judged.
        let mut start2 = 0;
        // The busiest hours of the user's other days, for the day last asked.
        let mut other_days: Option<(u64, f64)> = None;
        let mut run: Vec<&Row> = Vec::new();
        let mut peak = 0usize;
        let mut flush = |run: &mut Vec<&Row>, peak: &mut usize| {
            if run.is_empty() {
                return;
            }
            // Most of the hour's calls packed into a few minutes: a burst (temporal), not
            // a pace kept up for the hour.
            let (dense, minutes) = densest(run, BURST_SPAN);
            if dense >= 30 && dense * 5 >= run.len() * 3 {
                out.push(Finding::new(
                    "temporal",
                    "burst",
                    severity(dense as f64, 60.0, 200.0),
                    serde_json::json!({"user": name}),
                    run,
                    format!("{name} made {dense} calls within {minutes} minutes"),
                ));
            } else {
                out.push(Finding::new(
                    "statistical",
                    "call_rate",
                    severity(*peak as f64 / m.max(1.0), 4.0, 8.0),
                    serde_json::json!({"user": name}),
                    run,
                    format!(
                        "{name} made {peak} calls within an hour; their usual working hour has {m:.0}"
                    ),
                ));
            }
            run.clear();
            *peak = 0;
        };
        for i in 0..v.len() {
            while v[start].at_ms + HOUR <= v[i].at_ms {
                start += 1;
            }
            while v[start2].at_ms + 2 * HOUR <= v[i].at_ms {
                start2 += 1;
            }
            if !run.is_empty() && v[start].at_ms > run[run.len() - 1].at_ms {
                flush(&mut run, &mut peak);
            }
            let n = (i + 1 - start) as f64;
            // Far above the pace both as a count (Poisson z) and against the spread of the
            // user's own hours (robust z).
            if n < 12.0 || n < 2.5 * m || (n - m) / m.sqrt() < 5.0 || (n - m) / s < 5.0 {
                continue;
            }
            let day = v[i].at_ms / DAY;
            // EXTREME times the pace in this hour and in the hour before it: with a few dozen
            // active hours such an hour is its own 99th percentile, so it is set against the
            // busiest hours of the user's other days; and no busy day of the peers explains
            // it. (An agent's big episode fills part of an hour, not two.)
            let extreme = n >= EXTREME * m && (start - start2) as f64 >= EXTREME * m;
            let busiest = if extreme {
                match other_days {
                    Some((d, b)) if d == day => b,
                    _ => {
                        let b = busiest_other(&by_count[u], day);
                        other_days = Some((day, b));
                        b
                    }
                }
            } else {
                busiest
            };
            if n < 1.5 * busiest {
                continue;
            }
            // The peers' day, in UTC: today or yesterday (a user's working day can straddle
            // midnight UTC).
            let busy = !extreme
                && [day, day.saturating_sub(1)].iter().any(|d| {
                    let (peers, up) = busy_day
                        .get(&(people.role(user), *d))
                        .copied()
                        .unwrap_or((1, 0));
                    peers >= 3 && up as f64 >= peers as f64 / 3.0
                });
            if busy {
                continue;
            }
            let from = match run.last() {
                Some(l) => v[start..=i]
                    .iter()
                    .position(|c| c.id() == l.id())
                    .map_or(start, |p| start + p + 1),
                None => start,
            };
            run.extend(&v[from..=i]);
            peak = peak.max(n as usize);
        }
        flush(&mut run, &mut peak);
    }
}

/// Statistical: results of a user's calls to a tool far larger than that tool's usual ones
/// (log-size robust z ≥ 4 against the tool's population, at least 8 times the median), two
/// or more within an hour (one large answer is ordinary).
fn output_size(h: &Held, out: &mut Vec<Finding>) {
    let mut by_tool: Vec<Vec<f64>> = vec![Vec::new(); h.tools.len()];
    for c in &h.rows {
        if let Some(b) = c.output_bytes() {
            by_tool[c.tool as usize].push((b.max(1) as f64).ln());
        }
    }
    let base: Vec<Option<(f64, f64)>> = by_tool
        .into_iter()
        .map(|v| (v.len() >= 50).then(|| robust(v, 0.25)))
        .collect();
    let mut big: HashMap<(u32, u32), Vec<&Row>> = HashMap::default();
    for c in &h.rows {
        let (Some(b), Some((m, s))) = (c.output_bytes(), base[c.tool as usize]) else {
            continue;
        };
        let l = (b.max(1) as f64).ln();
        if (l - m) / s >= 4.0 && l - m >= 8f64.ln() {
            big.entry((c.user, c.tool)).or_default().push(c);
        }
    }
    for ((u, t), v) in big {
        let (u, t) = (h.user(u), h.tool(t));
        for run in runs(v, HOUR) {
            if run.len() < 2 {
                continue;
            }
            let (m, _) = base[run[0].tool as usize].unwrap_or_default();
            let ratio = run
                .iter()
                .filter_map(|c| c.output_bytes())
                .map(|b| b as f64 / m.exp())
                .fold(0.0, f64::max);
            out.push(Finding::new(
                "statistical",
                "output_size",
                severity(ratio, 30.0, 200.0),
                serde_json::json!({"user": u, "tool": t}),
                &run,
                format!(
                    "{u} got {} {t} results up to {ratio:.0}x the usual size",
                    run.len()
                ),
            ));
        }
    }
}

/// P(X ≥ k) for X ~ Binomial(n, p), by the normal approximation with continuity correction
/// (accurate enough to rank hours; only tiny tails matter here).
fn binomial_z(k: usize, n: usize, p: f64) -> f64 {
    let mean = n as f64 * p;
    let sd = (n as f64 * p * (1.0 - p)).sqrt().max(0.5);
    (k as f64 - 0.5 - mean) / sd
}

/// Statistical: a tool failing far more often than it does, hour by hour over all users
/// (its failures in an hour ≥ 5, at least three times its usual rate, and z ≥ 5 under its
/// usual rate). Consecutive hours make one finding.
fn error_rate(h: &Held, out: &mut Vec<Finding>) {
    let all = tool_hours_of(h, Row::ended);
    let by_tool = tool_hours(h, &all);
    let row = |i: &u32| &h.rows[*i as usize];
    let failed = |i: &&u32| row(i).failed();
    for (t, hours) in by_tool.iter().enumerate() {
        if hours.is_empty() {
            continue;
        }
        let t = h.tool(t as u32);
        let total: usize = hours.values().map(|v| v.len()).sum();
        let failed_all: usize = hours.values().copied().flatten().filter(failed).count();
        // The usual rate: over the whole input (a surge of a few hours moves it little), or
        // the hours' median rate if that is higher.
        let mut rates: Vec<f64> = hours
            .values()
            .filter(|v| v.len() >= 5)
            .map(|v| v.iter().filter(failed).count() as f64 / v.len() as f64)
            .collect();
        let p = median(&mut rates)
            .max(failed_all as f64 / total.max(1) as f64)
            .max(0.002);
        let mut bad: Vec<(u64, Vec<&Row>)> = Vec::new();
        for (hour, v) in hours {
            let f: Vec<&Row> = v.iter().map(row).filter(|c| c.failed()).collect();
            if f.len() >= 5
                && f.len() as f64 >= 3.0 * p * v.len() as f64
                && binomial_z(f.len(), v.len(), p) >= 5.0
            {
                bad.push((*hour, f));
            }
        }
        let mut i = 0;
        while i < bad.len() {
            let mut j = i;
            let mut evidence: Vec<&Row> = bad[i].1.clone();
            while j + 1 < bad.len() && bad[j + 1].0 <= bad[j].0 + 1 {
                j += 1;
                evidence.extend(bad[j].1.iter().copied());
            }
            let n: usize = (bad[i].0..=bad[j].0)
                .filter_map(|h| hours.get(&h))
                .map(|v| v.len())
                .sum();
            let share = evidence.len() as f64 / n.max(1) as f64;
            out.push(Finding::new(
                "statistical",
                "error_rate",
                severity(share / p, 5.0, 15.0),
                serde_json::json!({"tool": t}),
                &evidence,
                format!(
                    "{t} failed {:.0}% of {n} calls; it usually fails {:.1}%",
                    share * 100.0,
                    p * 100.0
                ),
            ));
            i = j + 1;
        }
    }
}

/// Statistical: one user's calls failing far more often than theirs usually do, whatever the
/// tool (a script probing for what it may call, a stolen token refused everywhere): within
/// two hours, eight failures or more, a quarter of the calls or more, at least four times
/// the user's usual rate and z ≥ 5 under it (people hit streaks of five or six failures in
/// a bad afternoon, a sixth of their calls: an independently written month had four such
/// streaks in 68 users). Failures the tool also had for two other users or more in that clock hour do
/// not count (an outage: the tool's error rate, above); users with under 50 ended calls are
/// not judged. Overlapping windows make one finding; the evidence is the failed calls.
fn user_error_rate(h: &Held, by_user: &[&[&Row]], people: &People, out: &mut Vec<Finding>) {
    const SPAN: u64 = 2 * HOUR;
    // Who failed on each tool in each clock hour.
    let mut failing: HashMap<(u32, u64), Vec<u32>> = HashMap::default();
    for r in h.rows.iter().filter(|r| r.failed()) {
        let who = failing.entry((r.tool, r.at_ms / HOUR)).or_default();
        if !who.contains(&r.user) && who.len() < 3 {
            who.push(r.user);
        }
    }
    let outage = |r: &Row| {
        failing
            .get(&(r.tool, r.at_ms / HOUR))
            .is_some_and(|who| who.iter().filter(|u| **u != r.user).count() >= 2)
    };
    for (u, v) in by_user.iter().enumerate() {
        let user = u as u32;
        if people.service(user) {
            continue;
        }
        let ended: Vec<&Row> = v.iter().copied().filter(|r| r.ended()).collect();
        if ended.len() < 50 {
            continue;
        }
        let own: Vec<bool> = ended.iter().map(|r| r.failed() && !outage(r)).collect();
        let p = (own.iter().filter(|f| **f).count() as f64 / ended.len() as f64).max(0.005);
        let mut flagged = vec![false; ended.len()];
        let (mut start, mut k) = (0, 0usize);
        for i in 0..ended.len() {
            while ended[start].at_ms + SPAN <= ended[i].at_ms {
                k -= usize::from(own[start]);
                start += 1;
            }
            k += usize::from(own[i]);
            let n = i + 1 - start;
            if k >= 8 && k * 4 >= n && k as f64 >= 4.0 * p * n as f64 && binomial_z(k, n, p) >= 5.0
            {
                for j in start..=i {
                    flagged[j] |= own[j];
                }
            }
        }
        let failed: Vec<&Row> = ended
            .iter()
            .zip(&flagged)
            .filter(|(_, f)| **f)
            .map(|(r, _)| *r)
            .collect();
        let name = h.user(user);
        for run in runs(failed, SPAN) {
            let (from, to) = (run[0].at_ms, run[run.len() - 1].at_ms);
            let n = ended.partition_point(|r| r.at_ms <= to)
                - ended.partition_point(|r| r.at_ms < from);
            let share = run.len() as f64 / n.max(1) as f64;
            out.push(Finding::new(
                "statistical",
                "error_rate",
                severity(share / p, 10.0, 30.0),
                serde_json::json!({"user": name}),
                &run,
                format!(
                    "{} of {n} calls by {name} failed; their calls usually fail {:.1}%",
                    run.len(),
                    p * 100.0
                ),
            ));
        }
    }
}

/// Statistical: a tool's median execution time in an hour far above its usual (≥ 5 calls,
/// at least 5 times its median, log robust z ≥ 5).
fn execution_time(h: &Held, out: &mut Vec<Finding>) {
    let all = tool_hours_of(h, |c| c.execution_us().is_some());
    let by_tool = tool_hours(h, &all);
    let row = |i: &u32| &h.rows[*i as usize];
    for (t, hours) in by_tool.iter().enumerate() {
        let t = h.tool(t as u32);
        let log = |i: &u32| (row(i).execution_us().unwrap_or(1).max(1) as f64).ln();
        let all: Vec<f64> = hours.values().copied().flatten().map(log).collect();
        if all.len() < 100 {
            continue;
        }
        let (m, s) = robust(all, 0.1);
        for v in hours.values() {
            if v.len() < 5 {
                continue;
            }
            let hm = median(&mut v.iter().map(log).collect::<Vec<f64>>());
            // The hour's median has the spread of one call over sqrt(n).
            let z = (hm - m) / (s / (v.len() as f64).sqrt());
            if hm - m >= 5f64.ln() && z >= 5.0 {
                out.push(Finding::new(
                    "statistical",
                    "execution_time",
                    severity((hm - m).exp(), 10.0, 30.0),
                    serde_json::json!({"tool": t}),
                    &v.iter().map(row).collect::<Vec<_>>(),
                    format!("{t} took {:.0}x its usual time for an hour", (hm - m).exp()),
                ));
            }
        }
    }
}

/// Statistical: one user's calls to one tool far slower, or with far larger results, than
/// both the tool's usual and the user's own on it (an export through a search tool, a query
/// scanning what it should not): in a clock-aligned two-hour block, five calls or more whose
/// median is at least three times both and z ≥ 5 against the tool's spread (the median of
/// n calls has its spread over √n), while the other users' calls to the tool in that block
/// are not, no other user's are found so within a block of it, and the tool is not found
/// so as a whole (a slow backend is everyone's: the tool's own figures, above). Consecutive
/// blocks make one finding; a finding of the same kind and subject already made (one call
/// at a time, above: `made`, the tool's own figure's findings) is not repeated.
fn user_tool_figure(
    h: &Held,
    people: &People,
    kind: &'static str,
    figure: impl Fn(&Row) -> Option<u64>,
    made: &[Finding],
    out: &mut Vec<Finding>,
) {
    const BLOCK: u64 = 2 * HOUR;
    let rows = &h.rows;
    let log = |i: &u32| figure(&rows[*i as usize]).map_or(0.0, |v| (v.max(1) as f64).ln());
    // One index of the calls with the figure, by tool and user (in time order within),
    // rather than copies of the figures per tool, per user and per block: 4 bytes a call
    // (5 M calls at 10 M events).
    let with = (0..rows.len() as u32).filter(|&i| figure(&rows[i as usize]).is_some());
    let user_of = |i: &u32| rows[*i as usize].user;
    let mut idx = grouped(with, h.tools.len(), |&i| rows[i as usize].tool as usize);
    for calls in idx.chunk_by_mut(|a, b| rows[*a as usize].tool == rows[*b as usize].tool) {
        if calls.len() >= h.users.len() {
            let by_user = grouped(calls.iter().copied(), h.users.len(), |i| {
                user_of(i) as usize
            });
            calls.copy_from_slice(&by_user);
        } else {
            calls.sort_by_key(user_of);
        }
    }
    /// A block found: its number, the user's calls in it, and how far above their usual.
    type Block<'r> = (u64, Vec<&'r Row>, f64);
    // Per user and tool, the blocks found, in order.
    let mut found: BTreeMap<(u32, u32), Vec<Block>> = BTreeMap::new();
    for calls in idx.chunk_by(|a, b| rows[*a as usize].tool == rows[*b as usize].tool) {
        if calls.len() < 50 {
            continue;
        }
        let tool = rows[calls[0] as usize].tool;
        let (m, s) = robust(calls.iter().map(log).collect(), 0.25);
        let own: HashMap<u32, f64> = calls
            .chunk_by(|a, b| rows[*a as usize].user == rows[*b as usize].user)
            .map(|mine| {
                let user = rows[mine[0] as usize].user;
                (user, median(&mut mine.iter().map(log).collect::<Vec<_>>()))
            })
            .collect();
        // By block, and by user within (as `calls` are), each user's calls in time order.
        let block_of = |i: &u32| rows[*i as usize].at_ms / BLOCK;
        let first = calls.iter().map(block_of).min().unwrap_or(0);
        let last = calls.iter().map(block_of).max().unwrap_or(0);
        // A counting sort when the blocks are few for the calls (a row with a wrong clock
        // would otherwise make every tool count through years of empty blocks).
        let by_block = if last - first < (4 * calls.len() as u64).max(1024) {
            grouped(calls.iter().copied(), (last - first + 1) as usize, |i| {
                (block_of(i) - first) as usize
            })
        } else {
            let mut v = calls.to_vec();
            v.sort_by_key(block_of);
            v
        };
        for v in by_block
            .chunk_by(|a, b| rows[*a as usize].at_ms / BLOCK == rows[*b as usize].at_ms / BLOCK)
        {
            let block = rows[v[0] as usize].at_ms / BLOCK;
            for mine in v.chunk_by(|a, b| rows[*a as usize].user == rows[*b as usize].user) {
                let u = rows[mine[0] as usize].user;
                if mine.len() < 5 || people.service(u) {
                    continue;
                }
                let hm = median(&mut mine.iter().map(log).collect::<Vec<_>>());
                let usual = m.max(own[&u]);
                let z = (hm - m) / (s / (mine.len() as f64).sqrt());
                if hm - usual < 3f64.ln() || z < 5.0 {
                    continue;
                }
                let mut others: Vec<f64> = v
                    .iter()
                    .filter(|i| rows[**i as usize].user != u)
                    .map(log)
                    .collect();
                if others.len() >= 3 && median(&mut others) - m >= 2f64.ln() {
                    continue;
                }
                let calls: Vec<&Row> = mine.iter().map(|i| &rows[*i as usize]).collect();
                found
                    .entry((u, tool))
                    .or_default()
                    .push((block, calls, (hm - usual).exp()));
            }
        }
    }
    // Two users or more at once on one tool (within a block of each other), or the tool
    // itself found slow then: the tool's trouble, not one user's.
    let mut at_once: HashMap<(u32, u64), HashSet<u32>> = HashMap::default();
    for ((u, t), blocks) in &found {
        for (b, _, _) in blocks {
            for near in b.saturating_sub(1)..=b + 1 {
                at_once.entry((*t, near)).or_default().insert(*u);
            }
        }
    }
    for ((u, t), mut blocks) in found {
        let (user, tool) = (h.user(u), h.tool(t));
        let whole = serde_json::json!({ "tool": tool });
        blocks.retain(|(b, _, _)| {
            let (from, to) = (b * BLOCK, (b + 1) * BLOCK);
            at_once[&(t, *b)].len() < 2
                && !made.iter().chain(out.iter()).any(|f| {
                    f.kind == kind
                        && f.subject == whole
                        && f.from_ms <= to + BLOCK
                        && from <= f.to_ms + BLOCK
                })
        });
        let mut i = 0;
        while i < blocks.len() {
            let mut j = i;
            while j + 1 < blocks.len() && blocks[j + 1].0 == blocks[j].0 + 1 {
                j += 1;
            }
            let run: Vec<&Row> = blocks[i..=j]
                .iter()
                .flat_map(|b| b.1.iter().copied())
                .collect();
            let ratio = blocks[i..=j].iter().map(|b| b.2).fold(0.0, f64::max);
            i = j + 1;
            let (from, to) = (run[0].at_ms, run[run.len() - 1].at_ms);
            let subject = serde_json::json!({"user": user, "tool": tool});
            if made.iter().chain(out.iter()).any(|f| {
                f.kind == kind && f.subject == subject && f.from_ms <= to && from <= f.to_ms
            }) {
                continue;
            }
            let what = if kind == "output_size" {
                "results"
            } else {
                "calls"
            };
            let how = if kind == "output_size" {
                "larger"
            } else {
                "slower"
            };
            out.push(Finding::new(
                "statistical",
                kind,
                severity(ratio, 10.0, 30.0),
                subject,
                &run,
                format!(
                    "{user} made {} {tool} {what} {ratio:.0}x {how} than the tool's and their own usual",
                    run.len()
                ),
            ));
        }
    }
}

/// Behavioural: a warm user's first call to a tool that few of their role peers use (under a
/// fifth of them, this month) and that is not being adopted by many at once (under a quarter
/// of all users started it in the week before), nor by two others or more within half a day
/// (an incident that brought several people to the on-call tools). A user's role is their
/// latest (someone who moved teams is judged among their new peers).
fn first_use(h: &Held, people: &People, out: &mut Vec<Finding>) {
    let calls = &h.rows;
    let mut first: HashMap<(u32, u32), usize> = HashMap::default();
    let mut users_of: Vec<HashSet<u32>> = vec![HashSet::default(); h.tools.len()];
    for (i, c) in calls.iter().enumerate() {
        first.entry((c.user, c.tool)).or_insert(i);
        users_of[c.tool as usize].insert(c.user);
    }
    let mut by_role: HashMap<u32, HashSet<u32>> = HashMap::default();
    for c in calls {
        by_role
            .entry(people.role(c.user))
            .or_default()
            .insert(c.user);
    }
    let population = h.users.len().max(1);
    let mut started: HashMap<u32, Vec<u64>> = HashMap::default();
    for (&(_, t), &i) in &first {
        started.entry(t).or_default().push(calls[i].at_ms);
    }
    let mut grouped: HashMap<(u32, u32), Vec<&Row>> = HashMap::default();
    for (&(u, t), &i) in &first {
        let c = &calls[i];
        if !people.warm(u, c.at_ms) || people.service(u) {
            continue;
        }
        // The user's role peers (the user aside) who use the tool.
        let role = &by_role[&people.role(u)];
        let peers = role.len() - 1;
        let peer_users = role
            .iter()
            .filter(|p| **p != u && users_of[t as usize].contains(*p))
            .count();
        if peers > 0 && peer_users as f64 >= peers as f64 / 5.0 {
            continue;
        }
        let recent = started[&t]
            .iter()
            .filter(|&&s| s + 7 * DAY >= c.at_ms && s <= c.at_ms)
            .count();
        if recent as f64 >= population as f64 / 4.0 {
            continue;
        }
        // Two others or more started it within half a day of this user: an incident or a
        // hand-over that brought several people to it, not one user's wandering.
        let together = started[&t]
            .iter()
            .filter(|&&s| s != c.at_ms && s + DAY / 2 >= c.at_ms && s <= c.at_ms + DAY / 2)
            .count();
        if together >= 2 {
            continue;
        }
        // The first call and the user's next calls to it within the hour.
        let v: Vec<&Row> = calls[i..]
            .iter()
            .take_while(|d| d.at_ms <= c.at_ms + HOUR)
            .filter(|d| d.user == u && d.tool == t)
            .collect();
        grouped.insert((u, t), v);
    }
    for ((u, t), v) in grouped {
        let role = role_name(h, people.role(u));
        let (u, t) = (h.user(u), h.tool(t));
        out.push(Finding::new(
            "behavioural",
            "first_use",
            severity(v.len() as f64, 2.0, 4.0),
            serde_json::json!({"user": u, "tool": t}),
            &v,
            format!("{u} ({role}) called {t} for the first time; few {role} peers ever do"),
        ));
    }
}

/// The product of a `name/version` client.
fn product(client: &str) -> &str {
    client.split('/').next().unwrap_or(client).trim()
}

/// Behavioural: a warm user calling from a client product they never used (a version change
/// is an update, not a new client).
fn new_client(h: &Held, people: &People, out: &mut Vec<Finding>) {
    let mut seen: Vec<HashSet<u32>> = vec![HashSet::default(); h.users.len()];
    let mut new: HashMap<(u32, u32), Vec<&Row>> = HashMap::default();
    for c in &h.rows {
        if c.product == NONE {
            continue;
        }
        let p = c.product;
        if seen[c.user as usize].insert(p)
            && people.warm(c.user, c.at_ms)
            && !people.service(c.user)
        {
            new.insert((c.user, p), vec![c]);
        } else if let Some(v) = new.get_mut(&(c.user, p))
            && c.at_ms <= v[0].at_ms + HOUR
        {
            v.push(c);
        }
    }
    for ((u, p), v) in new {
        let (u, p) = (h.user(u), h.products.get(p));
        out.push(Finding::new(
            "behavioural",
            "new_client",
            if p.contains("curl") || p.contains("python") || p.contains("http") {
                "high"
            } else {
                "medium"
            },
            serde_json::json!({"user": u}),
            &v,
            format!("{u} called tools from {p}, a client they never used"),
        ));
    }
}

/// More tokens than this make a value free text (a query, a message): one shape, `text`.
const TEXT_TOKENS: usize = 8;

/// The coarse shape of an argument value: each run of letters, digits and `_` one token (`#`
/// when all digits, `w` otherwise), other characters kept (`PLAT-4F2A` and `PLAT-BB12` are
/// both `w-w`; `jane.doe@acme.com` is `w.w@w.w`; `src/main.rs` is `w/w.w`). Identifiers
/// that differ on every call (pod names, page ids, issue ids, recipients) keep one shape;
/// digits alone folding, as before, left a hex id a new shape on nearly every call (an
/// independently written month had 9,000 such findings: BENCHMARKS.md).
fn shape(v: &str) -> String {
    let mut out = String::with_capacity(16);
    let mut word: Option<bool> = None; // in a token: whether all digits so far
    let mut tokens = 0;
    for ch in v.chars() {
        if ch.is_alphanumeric() || ch == '_' {
            word = Some(word.unwrap_or(true) && ch.is_ascii_digit());
            continue;
        }
        if let Some(digits) = word.take() {
            out.push(if digits { '#' } else { 'w' });
            tokens += 1;
        }
        out.push(ch);
    }
    if let Some(digits) = word {
        out.push(if digits { '#' } else { 'w' });
        tokens += 1;
    }
    if tokens > TEXT_TOKENS {
        return "text".into();
    }
    out
}

/// Files whose reading is a credential or a system secret whatever the tool: a climb out of
/// the tool's folder (`../`), or a path through a credential store or system secret.
fn risky_path(v: &str) -> bool {
    const SECRET_PARTS: [&str; 12] = [
        ".ssh",
        ".aws",
        ".gnupg",
        ".kube",
        ".docker",
        ".netrc",
        ".npmrc",
        ".pypirc",
        ".pgpass",
        ".git-credentials",
        ".bash_history",
        ".vault-token",
    ];
    v.contains("../")
        || v.contains("..\\")
        || v.starts_with("/etc/")
            && v.split('/')
                .any(|p| matches!(p, "shadow" | "passwd" | "sudoers"))
        || v.split(['/', '\\']).any(|p| {
            SECRET_PARTS.contains(&p)
                || p == ".env"
                || p.starts_with(".env.")
                || p == "environ" && v.contains("/proc/")
        })
}

/// Behavioural: a warm user sending a tool an argument nobody of their role sends it, while
/// the user has called the tool 20 times or more. An argument is judged by its value when
/// its member takes few values (a repository, a warehouse, a table: a new one is a new
/// place), else by its coarse shape ([`shape`]) when that takes few (an id, a recipient);
/// a member whose values are all different and whose shapes vary too (free text, paths of a
/// large tree) says nothing by itself. Either must be rare for the tool (under 0.5% of its
/// calls) and used by at most one other user of the role. Paths to credentials or system
/// secrets, and climbs out of a folder ([`risky_path`]), are flagged whatever their
/// frequency, once per user.
fn unusual_arguments(h: &Held, people: &People, out: &mut Vec<Finding>) {
    /// What is judged of one argument: its value (`true`, value number), or its shape.
    fn key_of(arg: &Arg, by_value: bool) -> (bool, u32) {
        if by_value {
            (true, arg.value)
        } else {
            (false, arg.shape)
        }
    }
    let calls = &h.rows;
    let mut per_tool: Vec<usize> = vec![0; h.tools.len()];
    let mut members: HashMap<(u32, u32), usize> = HashMap::default();
    for c in calls {
        per_tool[c.tool as usize] += 1;
        for a in h.args(c) {
            *members.entry((c.tool, a.member)).or_default() += 1;
        }
    }
    // A member takes few values when it has at most 64 ([`held::FEW_VALUES`]: the distinct
    // values [`Held`] kept of it), and at most a value per 25 calls (a file tree's hundreds
    // of paths are not few: a new file is not a new place).
    let by_value: HashSet<(u32, u32)> = h
        .kept
        .iter()
        .filter(|(key, seen)| {
            seen.len() <= (members.get(*key).copied().unwrap_or(0) / 25).clamp(12, FEW_VALUES)
        })
        .map(|(key, _)| *key)
        .collect();
    type Key = (u32, u32, (bool, u32));
    let mut counts: HashMap<Key, usize> = HashMap::default();
    let mut senders: HashMap<Key, HashSet<u32>> = HashMap::default();
    for c in calls {
        for arg in h.args(c) {
            let judged = key_of(arg, by_value.contains(&(c.tool, arg.member)));
            let key = (c.tool, arg.member, judged);
            *counts.entry(key).or_default() += 1;
            senders.entry(key).or_default().insert(c.user);
        }
    }
    // A member judged by shape must take few shapes too.
    let mut shapes: HashMap<(u32, u32), usize> = HashMap::default();
    for (tool, key, _) in counts.keys() {
        if !by_value.contains(&(*tool, *key)) {
            *shapes.entry((*tool, *key)).or_default() += 1;
        }
    }
    let mut per_user_tool: HashMap<(u32, u32), usize> = HashMap::default();
    let mut mine: HashSet<(u32, u32, u32, (bool, u32))> = HashSet::default();
    let mut climbed: HashSet<(u32, u32)> = HashSet::default();
    for c in calls {
        let n = per_user_tool.entry((c.user, c.tool)).or_default();
        *n += 1;
        let history = *n;
        if people.service(c.user) {
            continue;
        }
        let (user, tool) = (h.user(c.user), h.tool(c.tool));
        for arg in h.args(c) {
            let k = h.members.get(arg.member);
            let valued = by_value.contains(&(c.tool, arg.member));
            let judged = key_of(arg, valued);
            let new_for_user = mine.insert((c.user, c.tool, arg.member, judged));
            if arg.risky {
                if climbed.insert((c.user, arg.value)) {
                    let v = h.values.get(arg.value);
                    out.push(Finding::new(
                        "behavioural",
                        "unusual_arguments",
                        "high",
                        serde_json::json!({"user": user, "tool": tool}),
                        &[c],
                        format!(
                            "{user} sent {tool} a {k} reaching a secret or out of its folder: {v:?}"
                        ),
                    ));
                }
                continue;
            }
            if !new_for_user || history <= 20 || !people.warm(c.user, c.at_ms) {
                continue;
            }
            if !valued
                && shapes.get(&(c.tool, arg.member)).copied().unwrap_or(0)
                    > (members[&(c.tool, arg.member)] / 100).max(10)
            {
                continue; // free form: its shapes vary as much as its values
            }
            let key = (c.tool, arg.member, judged);
            let rare = counts[&key] as f64 <= per_tool[c.tool as usize] as f64 * 0.005;
            let role = people.role(c.user);
            let peers = senders[&key]
                .iter()
                .filter(|u| **u != c.user && people.role(**u) == role)
                .count();
            if rare && peers <= 1 {
                let (what, shown) = if valued {
                    ("value", h.values.get(arg.value))
                } else {
                    ("shape", h.shapes.get(arg.shape))
                };
                out.push(Finding::new(
                    "behavioural",
                    "unusual_arguments",
                    "medium",
                    serde_json::json!({"user": user, "tool": tool}),
                    &[c],
                    format!(
                        "{user} sent {tool} a {k} unlike any it usually gets from their role ({what} {shown:?})"
                    ),
                ));
            }
        }
    }
}

/// Words in a tool name that mean data leaves (an egress tool).
const EGRESS: [&str; 7] = [
    "post", "send", "upload", "email", "mail", "webhook", "publish",
];

/// Whether `tool` is an egress tool (its name has an [`EGRESS`] word).
fn is_egress(tool: &str) -> bool {
    let tool = tool.to_ascii_lowercase();
    EGRESS.iter().any(|w| tool.contains(w))
}

/// Where an egress call sends data: the host of a `url`-like argument or the domain of an
/// address.
fn destination(arguments: &[(Box<str>, Box<str>)]) -> Option<String> {
    arguments.iter().map(|(_, v)| &**v).find_map(|s| {
        if let Some(rest) = s
            .strip_prefix("https://")
            .or_else(|| s.strip_prefix("http://"))
        {
            return Some(
                rest.split(['/', ':', '?'])
                    .next()
                    .unwrap_or(rest)
                    .to_ascii_lowercase(),
            );
        }
        s.split_once('@').map(|(_, d)| d.to_ascii_lowercase())
    })
}

/// Behavioural: reads of sensitive data (calls tagged `gdpr`, `hipaa`, `pci_dss`) followed
/// within 15 minutes by an egress call to a destination the population has not sent to
/// before (support agents mail customers all day: that is not the pattern).
fn read_then_send(h: &Held, people: &People, out: &mut Vec<Finding>) {
    let mut seen: HashSet<u32> = HashSet::default();
    let mut reads: HashMap<u32, Vec<&Row>> = HashMap::default();
    for c in &h.rows {
        let dest = h.args[c.args as usize].destination;
        if h.egress[c.tool as usize] && dest != NONE {
            let new = seen.insert(dest);
            let recent: Vec<&Row> = reads
                .get(&c.user)
                .map(|v| {
                    v.iter()
                        .copied()
                        .filter(|r| r.at_ms + 15 * MINUTE >= c.at_ms)
                        .collect()
                })
                .unwrap_or_default();
            if new && !recent.is_empty() && !people.service(c.user) && people.warm(c.user, c.at_ms)
            {
                let mut evidence = recent.clone();
                evidence.push(c);
                let (user, tool, dest) = (h.user(c.user), h.tool(c.tool), h.destinations.get(dest));
                out.push(Finding::new(
                    "behavioural",
                    "read_then_send",
                    severity(recent.len() as f64, 4.0, 15.0),
                    serde_json::json!({"user": user}),
                    &evidence,
                    format!("{user} read sensitive data {} times, then sent data to {dest} (never a destination before) with {tool}", recent.len()),
                ));
            }
        }
        // A read is sensitive by what it asked for (the access event's tags) or by what it
        // returned (its end's: a customer record fetched by id).
        if c.regulated() {
            let v = reads.entry(c.user).or_default();
            v.retain(|r| r.at_ms + 15 * MINUTE >= c.at_ms);
            v.push(c);
        }
    }
}

#[cfg(test)]
mod attacks;
#[cfg(test)]
mod tests;
