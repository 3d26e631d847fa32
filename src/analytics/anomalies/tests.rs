//! Unit tests of the detectors and the argument judgements.

use super::*;
use crate::analytics::End;
use crate::audit::{Outcome, RiskLevel};

/// 2026-10-05T00:00:00Z.
const T0: u64 = 1_791_158_400_000;

/// A call by `user` to `tool` at `at`, ended (failed or not) after `execution_us`.
fn call(n: u64, at: u64, user: &str, tool: &str, failed: bool, execution_us: u64) -> Call {
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
