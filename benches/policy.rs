//! Policy evaluation cost: a 1 KiB arguments object against 100 rules with every classifier
//! on, measured per call (p50, p99), next to the cost of only parsing the same arguments.
//!
//! `cargo bench --bench policy` (add `-- --quick` for a short run).

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use mcp_audit_proxy::config::Config;
use mcp_audit_proxy::policy::classify::{Class, Classifiers};
use mcp_audit_proxy::policy::{CallInput, History, strict};
use serde_json::{Value, json};

/// 100 rules of every kind, most of them not matching the benchmark call.
fn policy_text() -> String {
    let mut text = String::from("[risk.roles]\nadmin = [\"alice\"]\n");
    for i in 0..10 {
        text.push_str(&format!(
            "[[risk.tool]]\nmatch = \"tool_{i}_*\"\nscore = {}\n",
            10 + i
        ));
    }
    for i in 0..100 {
        let test = match i % 6 {
            0 => format!("regex = \"(?i)forbidden_{i}\\\\b\""),
            1 => format!("glob = \"/secret/{i}/**\""),
            2 => "path_outside = [\"/srv/data\", \"/tmp\"]".to_string(),
            3 => format!("any_of = [\"bad{i}\", \"worse{i}\"]"),
            4 => format!("gt = {}", 1_000_000 + i),
            _ => "detect = \"sql_destructive\"".to_string(),
        };
        // Paths are tested where paths are; the other tests look everywhere a third of the time.
        let pointer = match (i % 6, i % 3) {
            (2, _) | (_, 0) => "pointer = \"/path\"\n",
            (_, 1) => "pointer = \"/items/*/name\"\n",
            _ => "",
        };
        text.push_str(&format!(
            "[[risk.rule]]\nname = \"rule {i}\"\n{pointer}{test}\nscore = 1\n"
        ));
    }
    text
}

/// About 1 KiB of arguments: paths, text, numbers, a nested list, one email address.
fn arguments() -> String {
    let items: Vec<Value> = (0..10)
        .map(|i| json!({"name": format!("entry number {i}"), "size": i * 1024, "tags": ["alpha", "beta"]}))
        .collect();
    let v = json!({
        "path": "/srv/data/reports/2026/q4/summary.txt",
        "content": "Quarterly summary: revenue grew in every region; contact finance@example.com for details. ".repeat(3),
        "mode": "append",
        "items": items,
        "limit": 250,
    });
    let text = v.to_string();
    assert!(
        (900..1300).contains(&text.len()),
        "arguments are {} bytes",
        text.len()
    );
    text
}

/// 64 KiB texts for `Classifiers::scan` alone: the proxy bench's string of `x` (one base64
/// run), words of `x` (no run), and English prose (many short words, few anchors).
fn scan_texts() -> Vec<(&'static str, String)> {
    const PROSE: &str = "The committee met on Tuesday to review the quarterly plan. Most of the \
        discussion was about the schedule for the new building, which is running late because \
        the supplier changed the delivery dates twice. Everyone agreed to send a short note to \
        the team and to meet again next month, after the first inspection of the site. ";
    let fill = |unit: &str| unit.repeat(64 * 1024 / unit.len() + 1)[..64 * 1024].to_string();
    vec![
        ("scan 64 KiB of x", "x".repeat(64 * 1024)),
        ("scan 64 KiB of `xxxxxxx `", fill("xxxxxxx ")),
        ("scan 64 KiB of prose", fill(PROSE)),
    ]
}

/// The benchmark's call: the same caller and tool every time.
fn call<'a>(arguments: &'a Value, history: &'a History) -> CallInput<'a> {
    CallInput {
        user: "bob",
        roles: &[],
        tool: "tool_3_write",
        arguments: Some(arguments),
        responses: None,
        annotations: None,
        history,
        now: SystemTime::now(),
        count_rates: true,
        tool_changed: false,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn measure(iterations: usize, mut f: impl FnMut()) -> Vec<Duration> {
    for _ in 0..iterations / 10 {
        f();
    }
    let mut samples: Vec<Duration> = (0..iterations)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    samples.sort();
    samples
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let iterations = if quick { 2_000 } else { 50_000 };
    let config = Config::parse(Path::new("/bench/proxy.toml"), &policy_text())
        .unwrap_or_else(|e| panic!("bench policy: {e}"));
    let policy = &config.policy;
    let raw = arguments();
    let history = History::default();

    let parse_only = measure(iterations, || {
        std::hint::black_box(strict::parse(std::hint::black_box(&raw)).unwrap());
    });
    let mut last = None;
    let assess = measure(iterations, || {
        let args = strict::parse(std::hint::black_box(&raw)).unwrap();
        let d = policy.assess(&call(&args, &history));
        last = Some(d);
    });
    let parsed = strict::parse(&raw).unwrap();
    let assess_only = measure(iterations, || {
        std::hint::black_box(policy.assess(&call(std::hint::black_box(&parsed), &history)));
    });
    let protect = measure(iterations, || {
        let args = strict::parse(std::hint::black_box(&raw)).unwrap();
        std::hint::black_box(policy.protect(&args));
    });
    // The proxy bench's large call: one 64 KiB string (of one repeated letter).
    let big = json!({"text": "x".repeat(64 * 1024)}).to_string();
    let big_assess = measure(iterations / 20, || {
        let args = strict::parse(std::hint::black_box(&big)).unwrap();
        std::hint::black_box(policy.assess(&call(&args, &history)));
    });
    let big_parse = measure(iterations / 20, || {
        std::hint::black_box(strict::parse(std::hint::black_box(&big)).unwrap());
    });
    // The classifiers alone on 64 KiB: one base64 run, no run, English prose.
    let classifiers = Classifiers::new(&Class::ALL);
    let scans: Vec<(&str, Vec<Duration>)> = scan_texts()
        .into_iter()
        .map(|(name, text)| {
            let mut found = Vec::new();
            let s = measure(iterations / 10, || {
                found.clear();
                classifiers.scan(std::hint::black_box(&text), &mut found);
                std::hint::black_box(&found);
            });
            (name, s)
        })
        .collect();
    let d = last.expect("at least one decision");
    println!(
        "policy: {} bytes of arguments, 100 rules, all classifiers; decision {} (score {}, tags {:?})",
        raw.len(),
        d.label(),
        d.score,
        d.tags
    );
    for (name, s) in [
        ("parse only (strict)", &parse_only),
        ("assess (arguments parsed)", &assess_only),
        ("parse + assess", &assess),
        ("parse + protect (stored copy)", &protect),
        ("64 KiB string: parse only", &big_parse),
        ("64 KiB string: parse + assess", &big_assess),
    ]
    .into_iter()
    .chain(scans.iter().map(|(n, s)| (*n, s)))
    {
        println!(
            "{name:<32} p50 {:>6.1} µs   p99 {:>6.1} µs   ({} iterations)",
            percentile(s, 0.5).as_secs_f64() * 1e6,
            percentile(s, 0.99).as_secs_f64() * 1e6,
            s.len()
        );
    }
}
