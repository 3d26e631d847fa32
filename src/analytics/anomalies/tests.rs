//! Unit tests of the detectors and the argument judgements.

use super::*;
use crate::analytics::End;
use crate::audit::{Outcome, RiskLevel};

/// 2026-10-05T00:00:00Z.
pub(super) const T0: u64 = 1_791_158_400_000;

/// A call by `user` to `tool` at `at`, ended (failed or not) after `execution_us`.
pub(super) fn call(
    n: u64,
    at: u64,
    user: &str,
    tool: &str,
    failed: bool,
    execution_us: u64,
) -> Call {
    let id = EventId(ulid::Ulid::from_parts(at, u128::from(n)));
    Call {
        id,
        at_ms: at,
        user: user.into(),
        tool: tool.into(),
        session: "s".into(),
        ip: None,
        client: None,
        arguments: Box::default(),
        tags: Vec::new(),
        roles: Vec::new(),
        risk: RiskLevel::Low,
        risk_reasons: Vec::new(),
        end: Some(End {
            id,
            failed,
            result: if failed {
                Outcome::Error
            } else {
                Outcome::Success
            },
            risk: RiskLevel::Low,
            execution_us: Some(execution_us),
            output_bytes: Some(1000),
            regulated: false,
        }),
    }
}

/// Ten working days of `users` calling `tools` in turn, 20 calls a day each, a call
/// every 10 minutes from 09:00, one in a hundred failing, each taking about a
/// millisecond.
fn ordinary(users: &[&str], tools: &[&str]) -> Vec<Call> {
    let mut out = Vec::new();
    for (u, user) in users.iter().enumerate() {
        for day in 0..10u64 {
            for i in 0..20u64 {
                let n = out.len() as u64;
                let at = T0 + day * DAY + 9 * HOUR + i * 10 * MINUTE + u as u64 * 1000;
                let tool = tools[(i as usize + u) % tools.len()];
                out.push(call(n, at, user, tool, n % 100 == 7, 900 + (n * 37) % 200));
            }
        }
    }
    out
}

fn found<'a>(findings: &'a [Finding], kind: &str, user: &str) -> Vec<&'a Finding> {
    findings
        .iter()
        .filter(|f| f.kind == kind && f.subject.get("user").and_then(Value::as_str) == Some(user))
        .collect()
}

#[test]
fn a_users_failures_across_tools_are_their_error_rate_but_an_outage_is_not() {
    let people = ["ana", "ben", "cai", "dov"];
    let tools = ["read_file", "search", "fetch"];
    let mut calls = ordinary(&people, &tools);
    // Day 11, 14:00: ana's next 12 calls within an hour, 10 of them failing.
    let at = T0 + 10 * DAY + 14 * HOUR;
    let failing: Vec<EventId> = (0..12u64)
        .map(|i| {
            let c = call(
                10_000 + i,
                at + i * 4 * MINUTE,
                "ana",
                tools[i as usize % 3],
                i < 10,
                1000,
            );
            let id = c.id;
            calls.push(c);
            id
        })
        .collect();
    let findings = detect(&calls, &Context::default());
    let got = found(&findings, "error_rate", "ana");
    assert_eq!(got.len(), 1, "{findings:#?}");
    assert_eq!(got[0].family, "statistical");
    assert_eq!(got[0].evidence, failing[..10]);
    assert!(found(&findings, "error_rate", "ben").is_empty());

    // The same hour, ben and cai failing on the same tools: an outage, not ana's.
    for (k, other) in ["ben", "cai"].iter().enumerate() {
        for i in 0..6u64 {
            let n = 20_000 + k as u64 * 100 + i;
            calls.push(call(
                n,
                at + i * 5 * MINUTE + 7,
                other,
                tools[i as usize % 3],
                true,
                1000,
            ));
        }
    }
    let findings = detect(&calls, &Context::default());
    assert!(
        found(&findings, "error_rate", "ana").is_empty(),
        "{findings:#?}"
    );
}

#[test]
fn a_users_slow_calls_to_a_tool_are_found_unless_others_are_slow_on_it_too() {
    let people = ["ana", "ben", "cai", "dov", "eve"];
    let mut calls = ordinary(&people, &["run_sql"]);
    // Day 11, 10:00: ana's six queries take 30 times as long as anybody's.
    let at = T0 + 10 * DAY + 10 * HOUR;
    let slow: Vec<EventId> = (0..6u64)
        .map(|i| {
            let c = call(
                30_000 + i,
                at + i * 6 * MINUTE,
                "ana",
                "run_sql",
                false,
                30_000,
            );
            let id = c.id;
            calls.push(c);
            id
        })
        .collect();
    // Others call it at the usual speed then.
    for (k, other) in ["ben", "cai", "eve"].iter().enumerate() {
        for i in 0..6u64 {
            let n = 31_000 + k as u64 * 100 + i;
            calls.push(call(
                n,
                at + i * 6 * MINUTE + 9,
                other,
                "run_sql",
                false,
                1000,
            ));
        }
    }
    let findings = detect(&calls, &Context::default());
    let got = found(&findings, "execution_time", "ana");
    assert_eq!(got.len(), 1, "{findings:#?}");
    assert_eq!(got[0].subject["tool"], "run_sql");
    assert_eq!(got[0].evidence, slow);

    // dov slow on it in the same block as well: the tool's trouble, not ana's.
    for i in 0..6u64 {
        calls.push(call(
            32_000 + i,
            at + i * 6 * MINUTE + 11,
            "dov",
            "run_sql",
            false,
            30_000,
        ));
    }
    let findings = detect(&calls, &Context::default());
    assert!(
        found(&findings, "execution_time", "ana").is_empty(),
        "{findings:#?}"
    );
    assert!(
        found(&findings, "execution_time", "dov").is_empty(),
        "{findings:#?}"
    );
}

#[test]
fn identifiers_keep_one_shape_and_long_text_is_text() {
    assert_eq!(shape("PLAT-4F2A"), shape("PLAT-BB12"));
    assert_eq!(shape("api-7f9c8d6b5-x2k4p"), "w-w-w");
    assert_eq!(shape("jane.doe@acme.com"), "w.w@w.w");
    assert_eq!(shape("PLAT-1234"), "w-#");
    assert_eq!(
        shape("SELECT email FROM dim_customers WHERE country = 'DE' LIMIT 10"),
        "text"
    );
}

#[test]
fn only_secret_stores_system_secrets_and_climbs_are_risky_paths() {
    for risky in [
        "../../../../etc/shadow",
        "/etc/passwd",
        "/home/fin40/.ssh/id_ed25519",
        "deploy/.env",
        "app/.env.production",
        "/proc/self/environ",
        "C:\\Users\\a\\..\\..\\secrets",
    ] {
        assert!(risky_path(risky), "{risky}");
    }
    for plain in [
        "/home/vera/src/cart-service/.github/workflows/ci.yml",
        "src/shadow/render.rs",
        "notes/y.txt",
        ".vscode/settings.json",
        "docs/environment.md",
    ] {
        assert!(!risky_path(plain), "{plain}");
    }
}

#[test]
fn the_median_by_selection_is_the_middle_of_the_sorted_values() {
    // Odd and even counts, repeated values, and an order a sort would have to change.
    let cases: [&[f64]; 7] = [
        &[],
        &[3.0],
        &[5.0, 1.0, 4.0],
        &[9.0, 2.0, 7.0, 2.0],
        &[1.5, -3.0, 8.0, 8.0, 0.25, 6.0],
        &[0.0, -0.0, f64::INFINITY, f64::NEG_INFINITY],
        &[f64::NAN, 1.0, -0.0, 0.0, f64::INFINITY],
    ];
    for case in cases {
        let mut sorted = case.to_vec();
        sorted.sort_by(|a, b| a.total_cmp(b));
        let n = sorted.len();
        let want = match n {
            0 => 0.0,
            _ if n % 2 == 1 => sorted[n / 2],
            _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
        };
        // Bit for bit (NaN and the sign of zero included).
        assert_eq!(
            median(&mut case.to_vec()).to_bits(),
            want.to_bits(),
            "{case:?}"
        );
    }
}

#[test]
fn grouped_orders_by_key_and_keeps_the_order_within_a_key() {
    // (key, position in the input): within a key, positions must stay increasing.
    let items: Vec<(usize, usize)> = [3, 0, 3, 1, 0, 3, 2, 1]
        .into_iter()
        .enumerate()
        .map(|(i, k)| (k, i))
        .collect();
    let got = grouped(items.iter().copied(), 4, |&(k, _)| k);
    let mut want = items.clone();
    want.sort_by_key(|&(k, _)| k); // stable
    assert_eq!(got, want);
    assert!(grouped(std::iter::empty::<(usize, usize)>(), 4, |&(k, _)| k).is_empty());
}

/// `calls` more calls by `user` to `tool` from `at`, `every` ms apart (numbered from `n`).
fn episode(n: u64, at: u64, user: &str, tool: &str, calls: u64, every: u64) -> Vec<Call> {
    (0..calls)
        .map(|i| call(n + i, at + i * every, user, tool, false, 1000))
        .collect()
}

/// [`ordinary`] days of ana, ben, cai and dov, with an agent episode every working day at
/// 11:02 (between their ordinary calls): `reads` (user, calls) reads of files within two
/// minutes, so that their busiest minutes are already ten calls and more.
fn with_episodes(reads: &[(&str, u64)]) -> Vec<Call> {
    let mut calls = ordinary(
        &["ana", "ben", "cai", "dov"],
        &["read_file", "search", "fetch"],
    );
    for day in 0..10u64 {
        let at = T0 + day * DAY + 11 * HOUR + 2 * MINUTE;
        for (k, &(user, n)) in reads.iter().enumerate() {
            let first = 20_000 + (k as u64 * 10 + day) * 100;
            calls.extend(episode(first, at, user, "read_file", n, 120_000 / n));
        }
    }
    calls
}

#[test]
fn one_tool_called_far_more_often_than_the_user_ever_calls_one_tool_is_a_burst() {
    // Every working day ana reads 20 files within two minutes, ben 25.
    let mut calls = with_episodes(&[("ana", 20), ("ben", 25)]);
    // Day 11, 15:00: both make 45 `search` calls within two minutes (about 23 a minute:
    // not four times their busiest minute). Twice ana's most of one tool (20), not twice
    // ben's (25).
    let at = T0 + 10 * DAY + 15 * HOUR;
    let ana: Vec<EventId> = episode(40_000, at, "ana", "search", 45, 2_600)
        .into_iter()
        .map(|c| {
            let id = c.id;
            calls.push(c);
            id
        })
        .collect();
    calls.extend(episode(50_000, at, "ben", "search", 45, 2_600));
    let findings = detect(&calls, &Context::default());
    let bursts = found(&findings, "burst", "ana");
    assert_eq!(bursts.len(), 1, "{findings:#?}");
    assert_eq!(bursts[0].family, "temporal");
    assert_eq!(bursts[0].evidence, ana);
    assert!(
        bursts[0].explanation.contains("45 calls of search")
            && bursts[0]
                .explanation
                .contains("at most 20 calls of one tool"),
        "{}",
        bursts[0].explanation
    );
    assert!(found(&findings, "burst", "ben").is_empty(), "{findings:#?}");
    // The busy ordinary episodes themselves are no burst for anyone.
    assert_eq!(
        findings.iter().filter(|f| f.kind == "burst").count(),
        1,
        "{findings:#?}"
    );
}

#[test]
fn an_hour_packed_into_minutes_is_folded_into_the_burst_that_overlaps_it() {
    let id = |n: u64| EventId(ulid::Ulid::from_parts(T0 + n, 1));
    let finding =
        |family: &'static str, kind: &'static str, severity: &'static str, ids: &[u64]| Finding {
            family: family.into(),
            kind: kind.into(),
            severity: severity.into(),
            subject: serde_json::json!({"user": "ana"}),
            from_ms: T0 + ids[0],
            to_ms: T0 + ids[ids.len() - 1],
            evidence: ids.iter().map(|&n| id(n)).collect(),
            explanation: kind.into(),
        };
    let mut rates = vec![
        // Overlaps the burst: folded into it.
        finding("temporal", "burst", "high", &[1_000, 2_000, 200_000]),
        // Two minutes after it: stays.
        finding("temporal", "burst", "low", &[400_000, 401_000]),
        finding("statistical", "call_rate", "low", &[2_000, 3_000]),
    ];
    let mut temporal = vec![finding(
        "temporal",
        "burst",
        "medium",
        &[2_000, 60_000, 170_000],
    )];
    fold_bursts(&mut rates, &mut temporal);
    assert_eq!(rates.len(), 2);
    assert_eq!(rates[0].to_ms, T0 + 401_000);
    assert_eq!(rates[1].kind, "call_rate");
    let b = &temporal[0];
    assert_eq!(
        b.evidence,
        [1_000, 2_000, 60_000, 170_000, 200_000].map(id).to_vec()
    );
    assert_eq!((b.from_ms, b.to_ms), (T0 + 1_000, T0 + 200_000));
    assert_eq!(b.severity, "high");
}

#[test]
fn eight_times_the_pace_in_two_hours_running_is_a_call_rate_whatever_the_peers_day() {
    let tools = ["read_file", "search", "fetch"];
    let mut calls = ordinary(&["ana", "ben", "cai", "dov"], &tools);
    // Day 11 (pace: 6 calls an hour, 20 a day): everyone busy (ben and cai make 20 more
    // calls at 13:00, a day of twice their usual), ana makes 240 calls from 14:00 at 30 s
    // apart (120 an hour for two hours: her own busiest hour of the month), dov 120 within
    // 20 minutes at 15:00 (an agent's big episode: twenty times his pace in that hour, and
    // as many calls as sixteen times it over two hours, but nothing in the hour before).
    let day = T0 + 10 * DAY;
    let rotate = |n: u64, at: u64, user: &str, count: u64, every: u64| -> Vec<Call> {
        (0..count)
            .map(|i| {
                call(
                    n + i,
                    at + i * every,
                    user,
                    tools[i as usize % 3],
                    false,
                    1000,
                )
            })
            .collect()
    };
    calls.extend(rotate(60_000, day + 13 * HOUR, "ben", 20, 60_000));
    calls.extend(rotate(61_000, day + 13 * HOUR, "cai", 20, 60_000));
    calls.extend(rotate(62_000, day + 14 * HOUR, "ana", 240, 30_000));
    calls.extend(rotate(63_000, day + 15 * HOUR, "dov", 120, 10_000));
    let findings = detect(&calls, &Context::default());
    let ana = found(&findings, "call_rate", "ana");
    assert_eq!(ana.len(), 1, "{findings:#?}");
    assert!(
        ana[0].from_ms >= day + 14 * HOUR && ana[0].to_ms < day + 16 * HOUR,
        "{:?}",
        ana[0]
    );
    assert!(
        found(&findings, "call_rate", "dov").is_empty(),
        "{findings:#?}"
    );
    assert!(found(&findings, "burst", "dov").is_empty(), "{findings:#?}");
}

#[test]
fn a_burst_of_one_tool_across_midnight_is_not_judged_against_its_own_first_half() {
    let mut calls = with_episodes(&[("ana", 20)]);
    // 60 searches 2 s apart from 23:59 UTC: 30 on each side of midnight (30 a minute, not
    // four times her busiest minute).
    let burst = episode(40_000, T0 + 10 * DAY - MINUTE, "ana", "search", 60, 2_000);
    calls.extend(burst);
    let findings = detect(&calls, &Context::default());
    let bursts = found(&findings, "burst", "ana");
    assert_eq!(bursts.len(), 1, "{findings:#?}");
    assert!(
        bursts[0]
            .explanation
            .contains("60 calls of search within 2 minutes")
            && bursts[0]
                .explanation
                .contains("at most 20 calls of one tool"),
        "{}",
        bursts[0].explanation
    );
}

/// Review helper-101: a call every 50 minutes from the end of the day into the night, then 40
/// calls at 02:00, and an evening session after a 100-minute break, are off hours (a rule
/// tried this session excused both as days that ran late, and was withdrawn).
#[test]
fn a_trickle_into_the_night_or_an_evening_after_a_break_is_no_day_that_ran_late() {
    let mut calls = ordinary(&["ana", "ben", "cai", "dov"], &["read_file", "search"]);
    let day = T0 + 9 * DAY;
    let mut n = 60_000;
    let mut at = day + 13 * HOUR;
    while at < day + 26 * HOUR {
        calls.push(call(n, at, "ana", "search", false, 1000));
        n += 1;
        at += 50 * MINUTE;
    }
    calls.extend(episode(61_000, at, "ana", "read_file", 40, MINUTE));
    calls.extend(episode(
        62_000,
        day + 12 * HOUR + 20 * MINUTE,
        "ben",
        "search",
        22,
        10 * MINUTE,
    ));
    calls.extend(episode(
        63_000,
        day + 17 * HOUR + 50 * MINUTE,
        "ben",
        "search",
        12,
        5 * MINUTE,
    ));
    let findings = detect(&calls, &Context::default());
    for u in ["ana", "ben"] {
        assert!(
            !found(&findings, "off_hours", u).is_empty(),
            "{u}: {findings:#?}"
        );
    }
}

/// A day of busy minutes far beyond the user's others is a call rate (no hour of it stands
/// out), unless a third of the role peers were busy too; a day of eight times the user's usual
/// is never the team's busy day (`pace::busy_day`).
#[test]
fn a_day_of_work_spread_far_beyond_any_other_is_a_call_rate_unless_the_peers_share_it_short_of_an_extreme_day()
 {
    let tools = ["read_file", "search", "fetch"];
    // Ten ordinary days: 20 calls a day from 09:00, each in its own minute.
    let base = ordinary(&["ana", "ben", "cai", "dov"], &tools);
    let day = T0 + 9 * DAY;
    // On day 10, a call every 3 minutes from 13:00 to 18:00: 100 more busy minutes (six
    // times a usual day), though no hour holds more than 20 calls.
    let spread = |n: u64, user: &str| episode(n, day + 13 * HOUR, user, "search", 100, 180_000);
    // Dov makes more calls still, 180, but as three agent episodes of 60 calls 3 s apart.
    let episodes = || {
        (0..3u64).flat_map(|k| {
            episode(
                70_000 + k * 100,
                day + (13 + 2 * k) * HOUR,
                "dov",
                "read_file",
                60,
                3_000,
            )
        })
    };
    // Ana alone.
    let mut calls = base.clone();
    calls.extend(spread(60_000, "ana"));
    calls.extend(episodes());
    let findings = detect(&calls, &Context::default());
    let ana = found(&findings, "call_rate", "ana");
    assert_eq!(ana.len(), 1, "{findings:#?}");
    assert!(
        ana[0].explanation.contains("120 minutes of the day"),
        "{}",
        ana[0].explanation
    );
    assert!(
        found(&findings, "call_rate", "dov").is_empty(),
        "{findings:#?}"
    );
    // Ana and ben (a third of ana's peers): the team's busy day, not one user's.
    let mut calls = base.clone();
    calls.extend(spread(60_000, "ana"));
    calls.extend(spread(61_000, "ben"));
    let findings = detect(&calls, &Context::default());
    assert!(
        found(&findings, "call_rate", "ana").is_empty(),
        "{findings:#?}"
    );
    assert!(
        found(&findings, "call_rate", "ben").is_empty(),
        "{findings:#?}"
    );
    // Ana makes a call every 3 minutes all day from 09:01:30, 180 (about 200 busy minutes:
    // ten times a usual day, though no hour holds 30 calls), while ben spreads his 100: the
    // team's busy day does not explain hers.
    let mut calls = base;
    calls.extend(episode(
        60_000,
        day + 9 * HOUR + 90_000,
        "ana",
        "search",
        180,
        180_000,
    ));
    calls.extend(spread(61_000, "ben"));
    let findings = detect(&calls, &Context::default());
    assert_eq!(
        found(&findings, "call_rate", "ana").len(),
        1,
        "{findings:#?}"
    );
    assert!(
        found(&findings, "call_rate", "ben").is_empty(),
        "{findings:#?}"
    );
}
