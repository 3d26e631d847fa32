//! A user's call rate beyond anything of their own, where their ordinary measures do not show
//! it: a day whose work is spread far beyond any other day of theirs, which no single hour
//! shows ([`busy_day`]).
//!
//! It only adds findings: none that the other detectors make is dropped or excused here.

use super::{DAY, EXTREME, Finding, HashMap, Held, MINUTE, People, Row, median, severity};

/// Statistical (`call_rate`): a day on which a user's *busy minutes* (clock minutes with a
/// call) are at least [`DAY_TIMES_USUAL`] times their median day's, [`DAY_TIMES_BUSIEST`]
/// times those of their busiest other day, and [`DAY_MIN_BUSY`] at least: extra work spread
/// over the day (a script or a second person using the account beside them), each of whose
/// hours may stay within the user's ordinary range (the subtle call-rate label of the
/// independently written month: 1.3 times the day's volume spread over the day).
///
/// Minutes, not calls: agents work in episodes of a few to a few hundred calls seconds
/// apart, so a day's call count swings with one big episode, while the minutes it takes
/// barely move. Users with fewer than 10 active days and service accounts are not judged,
/// nor a day on which a third or more of the user's role peers active that day (three at
/// least) had 1.8 times their own median busy minutes (month-end close, an incident, a
/// launch), unless the user's day holds [`EXTREME`] times their median (the team's busy day
/// explains a busier day, not one of that size); nor a day that already has a call-rate
/// finding of the user (`made`: its hours).
pub(super) fn busy_day(
    h: &Held,
    by_user: &[&[&Row]],
    people: &People,
    made: &[Finding],
    out: &mut Vec<Finding>,
) {
    // Per user: busy minutes per active UTC day, in day order; and their median.
    let days: Vec<Vec<(u64, usize)>> = by_user
        .iter()
        .map(|v| {
            v.chunk_by(|a, b| a.at_ms / DAY == b.at_ms / DAY)
                .map(|d| (d[0].at_ms / DAY, busy_minutes(d)))
                .collect()
        })
        .collect();
    let usual: Vec<f64> = days
        .iter()
        .map(|d| median(&mut d.iter().map(|&(_, n)| n as f64).collect::<Vec<_>>()))
        .collect();
    // Per role and day: the users active, and those of them busy (1.8 times their usual).
    let mut role_day: HashMap<(u32, u64), (usize, usize)> = HashMap::default();
    for (u, d) in days.iter().enumerate() {
        for &(day, n) in d {
            let e = role_day.entry((people.role(u as u32), day)).or_default();
            e.0 += 1;
            if n as f64 >= 1.8 * usual[u] {
                e.1 += 1;
            }
        }
    }
    for (u, d) in days.iter().enumerate() {
        let user = u as u32;
        if d.len() < 10 || people.service(user) {
            continue;
        }
        // The two busiest days: the busiest other than any one day is one of them.
        let mut top: Vec<(usize, u64)> = d.iter().map(|&(day, n)| (n, day)).collect();
        top.sort_unstable_by(|a, b| b.cmp(a));
        top.truncate(2);
        let name = h.user(user);
        for &(day, n) in d {
            let busiest = top.iter().find(|(_, t)| *t != day).map_or(0, |(n, _)| *n);
            let n = n as f64;
            if n < DAY_MIN_BUSY || n < DAY_TIMES_USUAL * usual[u] {
                continue;
            }
            if n < DAY_TIMES_BUSIEST * busiest as f64 {
                continue;
            }
            // The peers (the user aside) busy too, for a day short of an extreme one.
            let (active, up) = role_day[&(people.role(user), day)];
            let mine = usize::from(n >= 1.8 * usual[u]);
            let (peers, up) = (active - 1, up - mine);
            if n < EXTREME * usual[u] && peers >= 3 && up * 3 >= peers {
                continue;
            }
            let (from, to) = (day * DAY, (day + 1) * DAY - 1);
            let subject = serde_json::json!({"user": name});
            if made.iter().any(|f| {
                f.kind == "call_rate" && f.subject == subject && f.from_ms <= to && from <= f.to_ms
            }) {
                continue;
            }
            let v = by_user[u];
            let calls: Vec<&Row> = v
                [v.partition_point(|c| c.at_ms < from)..v.partition_point(|c| c.at_ms <= to)]
                .to_vec();
            out.push(Finding::new(
                "statistical",
                "call_rate",
                severity(n / usual[u].max(1.0), 6.0, 12.0),
                subject,
                &calls,
                format!(
                    "{name} made calls in {n:.0} minutes of the day; their usual day has {:.0}, their busiest other day {busiest}",
                    usual[u]
                ),
            ));
        }
    }
}

/// How many times their median day's busy minutes a user's day must hold ([`busy_day`]).
const DAY_TIMES_USUAL: f64 = 4.0;

/// How many times their busiest other day's busy minutes a user's day must hold
/// ([`busy_day`]).
const DAY_TIMES_BUSIEST: f64 = 2.5;

/// The fewest busy minutes that make a busy day ([`busy_day`]).
const DAY_MIN_BUSY: f64 = 40.0;

/// The clock minutes with a call among `calls` (time-ordered).
fn busy_minutes(calls: &[&Row]) -> usize {
    calls
        .chunk_by(|a, b| a.at_ms / MINUTE == b.at_ms / MINUTE)
        .count()
}
