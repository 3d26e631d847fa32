//! The temporal family: a user active at an hour they almost never work ([`off_hours`]), and
//! bursts ([`burst`]), with the call-rate hours packed into minutes folded into them
//! ([`fold_bursts`]).

use super::{
    DAY, Finding, HOUR, HashMap, HashSet, Held, MINUTE, People, Row, densest, runs, severity,
    severity_level,
};
use std::collections::BTreeMap;

/// One burst finding per user and stretch: an hour of [`call_rate`](super::call_rate)'s packed into minutes,
/// when a [`burst`] finding of the same user overlaps it (or comes within a minute), is folded
/// into that finding: the evidence joined, the window widened, the higher severity kept, and
/// the burst's explanation (it says which tool, when one did it).
pub(super) fn fold_bursts(rates: &mut Vec<Finding>, temporal: &mut [Finding]) {
    rates.retain(|f| {
        if f.kind != "burst" {
            return true;
        }
        let Some(into) = temporal.iter_mut().find(|t| {
            t.kind == "burst"
                && t.subject == f.subject
                && t.from_ms <= f.to_ms + MINUTE
                && f.from_ms <= t.to_ms + MINUTE
        }) else {
            return true;
        };
        into.evidence.extend(&f.evidence);
        into.evidence.sort_unstable();
        into.evidence.dedup();
        into.from_ms = into.from_ms.min(f.from_ms);
        into.to_ms = into.to_ms.max(f.to_ms);
        if severity_level(&f.severity) > severity_level(&into.severity) {
            into.severity = f.severity.clone();
        }
        false
    });
}

/// Temporal: a warm user active in an hour of the day (UTC, so whatever their time zone) in
/// which, give or take an hour, they worked on at most one other day (days around this one
/// aside), three calls or more within two hours; users with fewer than 10 active days are not
/// judged. Not judged: service
/// accounts, and nights that belong to a rotation (the user was also active off hours on
/// another night within four days: on call), and nights when two others or more were up too.
///
/// Weekends are not judged on their own: a weekend afternoon of someone who never works
/// weekends is as often a deadline as an intruder (the two test generators disagree on it:
/// BENCHMARKS.md), and an hour they never work is caught above.
pub(super) fn off_hours(h: &Held, by_user: &[&[&Row]], people: &People, out: &mut Vec<Finding>) {
    let mut candidates: Vec<(u32, Vec<&Row>)> = Vec::new();
    for (u, v) in by_user.iter().enumerate() {
        let u = u as u32;
        if people.service(u) || v.len() < 200 {
            continue;
        }
        // Per hour of the day (UTC), the days the user worked in it. Days, not calls: a
        // night of many calls must not make its own hour look usual.
        // (The calls are in time order: an hour's are one run.)
        let mut days: [HashSet<u64>; 24] = std::array::from_fn(|_| HashSet::default());
        for c in v.chunk_by(|a, b| a.at_ms / HOUR == b.at_ms / HOUR) {
            days[((c[0].at_ms / HOUR) % 24) as usize].insert(c[0].at_ms / DAY);
        }
        let active: HashSet<u64> = v
            .chunk_by(|a, b| a.at_ms / DAY == b.at_ms / DAY)
            .map(|c| c[0].at_ms / DAY)
            .collect();
        if active.len() < 10 {
            continue;
        }
        // Another day in this hour or the next or previous one is rare enough: at most one.
        // The same for every call of a clock hour: judged once an hour (the calls are in
        // time order).
        let mut judged: Option<(u64, bool)> = None;
        let mut rare = |c: &Row| -> bool {
            let hour = c.at_ms / HOUR;
            if let Some((at, rare)) = judged
                && at == hour
            {
                return rare;
            }
            let (h, d) = ((hour % 24) as usize, c.at_ms / DAY);
            let mut other: Option<u64> = None;
            let mut rare = true;
            'days: for k in [(h + 23) % 24, h, (h + 1) % 24] {
                for &x in days[k]
                    .iter()
                    .filter(|&&x| x != d && x + 1 != d && x != d + 1)
                {
                    match other {
                        Some(o) if o != x => {
                            rare = false;
                            break 'days;
                        }
                        _ => other = Some(x),
                    }
                }
            }
            judged = Some((hour, rare));
            rare
        };
        let odd: Vec<&Row> = v
            .iter()
            .copied()
            .filter(|c| people.warm(u, c.at_ms) && rare(c))
            .collect();
        let groups: Vec<Vec<&Row>> = runs(odd, 2 * HOUR)
            .into_iter()
            .filter(|r| r.len() >= 3)
            .collect();
        let nights: Vec<u64> = groups.iter().map(|g| g[0].at_ms).collect();
        for g in &groups {
            let t = g[0].at_ms;
            let others = nights
                .iter()
                .filter(|&&n| n != t && n + 4 * DAY >= t && n <= t + 4 * DAY)
                .count();
            if others >= 1 {
                continue;
            }
            candidates.push((u, g.clone()));
        }
    }
    // Two others or more off their hours at the same time (within two hours): an incident,
    // a release night, a month-end close that kept a team up, not one user's odd night.
    let spans: Vec<(u32, u64, u64)> = candidates
        .iter()
        .map(|(u, g)| (*u, g[0].at_ms, g[g.len() - 1].at_ms))
        .collect();
    for (u, g) in candidates {
        let (from, to) = (g[0].at_ms, g[g.len() - 1].at_ms);
        let together: HashSet<u32> = spans
            .iter()
            .filter(|(o, f, t)| *o != u && *f <= to + 2 * HOUR && from <= t + 2 * HOUR)
            .map(|(o, _, _)| *o)
            .collect();
        if together.len() >= 2 {
            continue;
        }
        let u = h.user(u);
        out.push(Finding::new(
            "temporal",
            "off_hours",
            severity(g.len() as f64, 6.0, 20.0),
            serde_json::json!({"user": u}),
            &g,
            format!(
                "{u} made {} calls at an hour they almost never work",
                g.len()
            ),
        ));
    }
}

/// The window in which calls of one tool make a burst: two minutes.
const TOOL_BURST_SPAN: u64 = 2 * MINUTE;

/// The fewest calls of one tool within [`TOOL_BURST_SPAN`] that make a burst.
const TOOL_BURST_MIN: usize = 30;

/// Temporal: a burst, found two ways, one finding per stretch either way finds:
///
/// - 12 calls or more by one user within a minute, and four times their usual busiest minute
///   (the 99th percentile of their calls per clock minute);
/// - 30 calls or more of one tool within two minutes, and twice the most the user made of
///   any one tool within two minutes on any other day (five other days with calls at least).
///   Agents work in episodes of dozens of calls seconds apart, so a user's busiest minute is
///   already high and a burst of 50 reads in two minutes does not stand out from it; one
///   tool called far more often than the user ever calls one tool does (an export, a scrape,
///   a loop over records).
///
/// Service accounts are not judged.
pub(super) fn burst(h: &Held, by_user: &[&[&Row]], people: &People, out: &mut Vec<Finding>) {
    for (u, v) in by_user.iter().enumerate() {
        if v.is_empty() || people.service(u as u32) {
            continue;
        }
        let name = h.user(u as u32);
        // Each stretch found, with the one-tool burst's figures when that path found it.
        let mut found: Vec<(Vec<&Row>, Option<OneTool>)> = minute_bursts(v)
            .into_iter()
            .map(|run| (run, None))
            .collect();
        found.extend(tool_bursts(v).into_iter().map(|(run, t)| (run, Some(t))));
        // Stretches that overlap are one burst (the minute path's own stretches never do);
        // of the one-tool figures, those of the densest.
        found.sort_by_key(|(run, _)| run[0].at_ms);
        let mut merged: Vec<(Vec<&Row>, Option<OneTool>)> = Vec::new();
        for (run, tool) in found {
            match merged.last_mut() {
                Some((last, last_tool))
                    if run[0].at_ms <= last.iter().map(|c| c.at_ms).max().unwrap_or(0) =>
                {
                    if tool.is_some_and(|t| last_tool.is_none_or(|l| t.dense > l.dense)) {
                        *last_tool = tool;
                    }
                    last.extend(run);
                    last.sort_by_key(|c| (c.at_ms, c.id()));
                    last.dedup_by_key(|c| c.id());
                }
                _ => merged.push((run, tool)),
            }
        }
        for (run, tool) in merged {
            let n = run.len();
            let why = match tool {
                None => format!("{name} made {n} calls within about a minute"),
                Some(t) => format!(
                    "{name} made {} calls of {} within {} minutes{}; on any other day at most {} calls of one tool within two minutes",
                    t.dense,
                    h.tool(t.tool),
                    t.minutes,
                    if n > t.dense {
                        format!(" ({n} in the burst)")
                    } else {
                        String::new()
                    },
                    t.base
                ),
            };
            out.push(Finding::new(
                "temporal",
                "burst",
                severity(n as f64, 25.0, 60.0),
                serde_json::json!({"user": name}),
                &run,
                why,
            ));
        }
    }
}

/// What the one-tool path says of a burst it found.
#[derive(Clone, Copy)]
struct OneTool {
    tool: u32,
    /// The most of its calls within [`TOOL_BURST_SPAN`], and the minutes they took.
    dense: usize,
    minutes: u64,
    /// The most calls of one tool within the span on the other days it was judged against.
    base: usize,
}

/// A user's minute bursts (see [`burst`]): 12 calls or more within 60 s, four times their
/// 99th-percentile clock minute; busy windows that touch make one stretch. `v` in time order.
fn minute_bursts<'r>(v: &[&'r Row]) -> Vec<Vec<&'r Row>> {
    // The most calls the user makes in a clock minute, their 99th percentile (a burst fills a
    // minute or two: it does not move it).
    let mut counts: Vec<usize> = v
        .chunk_by(|a, b| a.at_ms / MINUTE == b.at_ms / MINUTE)
        .map(<[_]>::len)
        .collect();
    counts.sort_unstable();
    let usual = counts[(counts.len() * 99 / 100).min(counts.len() - 1)].max(1);
    // Sliding 60 s windows.
    busy_stretches(v, MINUTE, |_, n| n >= 12 && n >= 4 * usual)
}

/// The stretches of `calls` (in time order) where windows of `span` ms are busy (`busy(i, n)`
/// for the window ending at call `i`, of `n` calls); busy windows that touch (the next ends
/// within `span` of the last) make one stretch.
fn busy_stretches<'r>(
    calls: &[&'r Row],
    span: u64,
    busy: impl Fn(usize, usize) -> bool,
) -> Vec<Vec<&'r Row>> {
    let mut out = Vec::new();
    let (mut start, mut last) = (0, 0);
    let mut run: Vec<&Row> = Vec::new();
    for i in 0..calls.len() {
        while calls[start].at_ms + span <= calls[i].at_ms {
            start += 1;
        }
        if !run.is_empty() && calls[i].at_ms > calls[last].at_ms + span {
            out.push(std::mem::take(&mut run));
        }
        if busy(i, i + 1 - start) {
            let from = if run.is_empty() {
                start
            } else {
                start.max(last + 1)
            };
            run.extend(&calls[from..=i]);
            last = i;
        }
    }
    if !run.is_empty() {
        out.push(run);
    }
    out
}

/// A user's one-tool bursts (see [`burst`]). `v` in time order.
fn tool_bursts<'r>(v: &[&'r Row]) -> Vec<(Vec<&'r Row>, OneTool)> {
    let mut by_tool: HashMap<u32, Vec<&Row>> = HashMap::default();
    for &c in v {
        by_tool.entry(c.tool).or_default().push(c);
    }
    let mut tools: Vec<(u32, Vec<&Row>)> = by_tool.into_iter().collect();
    tools.sort_unstable_by_key(|(t, _)| *t);
    // Per UTC day, the most calls of one tool within two minutes (windows ending that day).
    let mut day_most: BTreeMap<u64, usize> = BTreeMap::new();
    for (_, calls) in &tools {
        let mut start = 0;
        for i in 0..calls.len() {
            while calls[start].at_ms + TOOL_BURST_SPAN <= calls[i].at_ms {
                start += 1;
            }
            let most = day_most.entry(calls[i].at_ms / DAY).or_default();
            *most = (*most).max(i + 1 - start);
        }
    }
    if day_most.len() < 6 {
        return Vec::new();
    }
    // The three busiest days: the busiest day other than the one or two a window touches
    // (a burst across midnight counts on both) is one of them.
    let mut top: Vec<(usize, u64)> = day_most.iter().map(|(d, n)| (*n, *d)).collect();
    top.sort_unstable_by(|a, b| b.cmp(a));
    top.truncate(3);
    // The most of one tool within the span on days other than those of the window ending
    // at `at`.
    let other_most = |at: u64| {
        let days = [at.saturating_sub(TOOL_BURST_SPAN) / DAY, at / DAY];
        top.iter()
            .find(|(_, d)| !days.contains(d))
            .map_or(0, |(n, _)| *n)
    };
    let mut out = Vec::new();
    for (tool, calls) in tools {
        for run in busy_stretches(&calls, TOOL_BURST_SPAN, |i, n| {
            n >= TOOL_BURST_MIN && n >= 2 * other_most(calls[i].at_ms)
        }) {
            // The stretch ends with a busy window: what that one was judged against.
            let base = other_most(run[run.len() - 1].at_ms);
            let (dense, minutes) = densest(&run, TOOL_BURST_SPAN);
            out.push((
                run,
                OneTool {
                    tool,
                    dense,
                    minutes,
                    base,
                },
            ));
        }
    }
    out
}
