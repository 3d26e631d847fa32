//! Attacker shapes the detectors must flag, from reviews of exemptions meant for benign
//! traffic (helper-104, of a branch that excused each of them): an export hour beside an
//! agent's episodes, a late "day" made by the attacker alone or moved into the night, one
//! night episode after a daytime one of the same size. Each is flagged by the detectors in
//! force; an exemption that excuses one of them is a regression. Shapes no detector flags yet
//! are listed in BENCHMARKS.md ("Attacker shapes").

use super::tests::{T0, call as ended_call};
use super::*;

/// A call that succeeded in a millisecond.
fn call(n: u64, at: u64, user: &str, tool: &str) -> Call {
    ended_call(n, at, user, tool, false, 1000)
}

const TOOLS: [&str; 3] = ["search", "fetch", "get_issue"];

fn rot(n: u64, at: u64, user: &str, calls: u64, every: u64) -> Vec<Call> {
    (0..calls)
        .map(|i| call(n + i, at + i * every, user, TOOLS[i as usize % 3]))
        .collect()
}

fn one(n: u64, at: u64, user: &str, tool: &str, calls: u64, every: u64) -> Vec<Call> {
    (0..calls)
        .map(|i| call(n + i, at + i * every, user, tool))
        .collect()
}

/// Ten working days, 20 calls a day from 09:00 every 10 minutes.
fn ordinary(users: &[&str]) -> Vec<Call> {
    let tools = ["read_file", "search", "fetch"];
    let mut out = Vec::new();
    for (u, user) in users.iter().enumerate() {
        for day in 0..10u64 {
            for i in 0..20u64 {
                let n = out.len() as u64;
                let at = T0 + day * DAY + 9 * HOUR + i * 10 * MINUTE + u as u64 * 1000;
                out.push(call(n, at, user, tools[(i as usize + u) % 3]));
            }
        }
    }
    out
}

/// An agent's user: 13 days 08:00-17:00, 7 calls within a minute every 20 min, and on days
/// 1, 4, 7, 10 at 10:31 60 reads 6 s apart (the user's busiest hours: 81).
fn agent_days(user: &str, n: u64) -> Vec<Call> {
    let mut out = Vec::new();
    for day in 0..13u64 {
        for k in 0..27u64 {
            let at = T0 + day * DAY + 8 * HOUR + k * 20 * MINUTE;
            out.extend(rot(n + out.len() as u64, at, user, 7, 8_000));
        }
        if day % 3 == 1 {
            let at = T0 + day * DAY + 10 * HOUR + 31 * MINUTE;
            out.extend(one(n + out.len() as u64, at, user, "read_file", 60, 6_000));
        }
    }
    out
}

fn has(findings: &[Finding], user: &str, kinds: &[&str]) -> bool {
    findings.iter().any(|f| {
        kinds.contains(&f.kind.as_ref())
            && f.subject.get("user").and_then(Value::as_str) == Some(user)
    })
}

fn agents() -> Vec<Call> {
    let mut calls = Vec::new();
    for (k, u) in ["ana", "ben", "cai", "dov"].iter().enumerate() {
        calls.extend(agent_days(u, 100_000 * (k as u64 + 1)));
    }
    calls
}

/// The control: the baselines alone give the attacked user none of the findings the tests
/// below look for, so each finding is the attack's.
#[test]
fn the_baselines_alone_flag_nothing_for_the_attacked_user() {
    let kinds = ["call_rate", "burst", "off_hours"];
    assert!(!has(&detect(&agents(), &Context::default()), "ana", &kinds));
    let ordinary = ordinary(&["ana", "ben", "cai", "dov"]);
    assert!(!has(&detect(&ordinary, &Context::default()), "ana", &kinds));
}

/// P1a: ana (busiest other hours 81, pace 21) reads 130 records every 6 s from 14:05 on day
/// 12 (151 calls in the hour, 13 minutes).
#[test]
fn an_export_hour_beside_an_agents_episodes_is_flagged() {
    let mut calls = agents();
    calls.extend(rot(
        1,
        T0 + 12 * DAY + 14 * HOUR + 5 * MINUTE,
        "ana",
        130,
        6_000,
    ));
    let f = detect(&calls, &Context::default());
    assert!(has(&f, "ana", &["call_rate", "burst"]), "P1a: no finding");
}

/// P1b: the same 130 calls, 13 s apart over 28 minutes (14:06-14:34): a steady pace.
#[test]
fn a_steady_export_hour_beside_an_agents_episodes_is_flagged() {
    let mut calls = agents();
    calls.extend(rot(
        1,
        T0 + 12 * DAY + 14 * HOUR + 6 * MINUTE,
        "ana",
        130,
        13_000,
    ));
    let f = detect(&calls, &Context::default());
    assert!(has(&f, "ana", &["call_rate", "burst"]), "P1b: no finding");
}

/// P2: a day "that ran late" at 5 times the pace: ana (09:00-12:10, a call every 10 min)
/// carries on at her pace until 13:50, then 53 calls every 130 s from 14:00 to 15:54.
#[test]
fn a_late_day_at_five_times_the_pace_is_flagged() {
    let mut calls = ordinary(&["ana", "ben", "cai", "dov"]);
    let day = T0 + 9 * DAY;
    calls.extend(one(
        60_000,
        day + 12 * HOUR + 20 * MINUTE,
        "ana",
        "search",
        10,
        10 * MINUTE,
    ));
    calls.extend(rot(61_000, day + 14 * HOUR, "ana", 53, 130_000));
    let f = detect(&calls, &Context::default());
    assert!(
        has(&f, "ana", &["off_hours", "call_rate", "burst"]),
        "P2: no finding"
    );
}

/// P2b: the same, but the stretch is made by the attacker alone (see below).
#[test]
fn a_late_day_the_attacker_made_alone_is_flagged() {
    let mut calls = ordinary(&["ana", "ben", "cai", "dov"]);
    // Day 10: she does not work; the credential's holder makes three calls at 12:00, 12:59
    // and 13:58 (usual hours), then 53 calls from 14:00 every 130 s.
    let day = T0 + 10 * DAY;
    calls.extend(one(60_000, day + 12 * HOUR, "ana", "search", 1, MINUTE));
    calls.extend(one(
        60_100,
        day + 12 * HOUR + 59 * MINUTE,
        "ana",
        "search",
        1,
        MINUTE,
    ));
    calls.extend(one(
        60_200,
        day + 13 * HOUR + 58 * MINUTE,
        "ana",
        "search",
        1,
        MINUTE,
    ));
    calls.extend(rot(61_000, day + 14 * HOUR, "ana", 53, 130_000));
    let f = detect(&calls, &Context::default());
    assert!(
        has(&f, "ana", &["off_hours", "call_rate", "burst"]),
        "P2b: no finding"
    );
}

/// P3: one short episode at night, pre-conditioned: 29 calls within 112 s at 11:30 on day 5,
/// then 29 calls within 112 s at 02:00 on day 10.
#[test]
fn one_night_episode_after_a_daytime_one_of_its_size_is_flagged() {
    let mut calls = ordinary(&["ana", "ben", "cai", "dov"]);
    for day in 0..10u64 {
        let at = T0 + day * DAY + 11 * HOUR + 2 * MINUTE;
        calls.extend(one(20_000 + day * 100, at, "ana", "read_file", 12, 10_000));
    }
    calls.extend(rot(
        30_000,
        T0 + 5 * DAY + 11 * HOUR + 30 * MINUTE,
        "ana",
        29,
        4_000,
    ));
    calls.extend(rot(40_000, T0 + 10 * DAY + 2 * HOUR, "ana", 29, 4_000));
    let f = detect(&calls, &Context::default());
    assert!(has(&f, "ana", &["off_hours", "burst"]), "P3: no finding");
}

/// P6: the odd hours moved by two single calls: one call at 02:00 on days 3 and 6 (each
/// night a group of one: no finding) make hours 01-03 usual for ana. On day 10 a call every
/// 30 min from 01:00 to 03:59 (a stretch that lasted an hour), then 50 calls every 144 s from
/// 04:00 to 05:58: within two hours of a call at a usual hour.
#[test]
fn a_late_day_moved_into_the_night_by_two_single_calls_is_flagged() {
    let mut calls = ordinary(&["ana", "ben", "cai", "dov"]);
    calls.extend(one(
        50_000,
        T0 + 3 * DAY + 2 * HOUR,
        "ana",
        "search",
        1,
        MINUTE,
    ));
    calls.extend(one(
        50_100,
        T0 + 6 * DAY + 2 * HOUR,
        "ana",
        "search",
        1,
        MINUTE,
    ));
    let night = T0 + 10 * DAY;
    calls.extend(one(60_000, night + HOUR, "ana", "search", 6, 30 * MINUTE));
    calls.extend(one(
        60_100,
        night + 3 * HOUR + 59 * MINUTE,
        "ana",
        "search",
        1,
        MINUTE,
    ));
    calls.extend(rot(61_000, night + 4 * HOUR, "ana", 50, 144_000));
    let f = detect(&calls, &Context::default());
    assert!(
        has(&f, "ana", &["off_hours", "call_rate", "burst"]),
        "P6: no finding"
    );
}
