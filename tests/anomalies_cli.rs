//! The detectors' quality through the real binary (issue 10 items 1 and 2): a labelled month
//! made by `examples/traffic.rs`, `import`ed, then `anomalies --json` scored against its
//! labels and a clean month; `analyze user` and `analyze tools` against figures counted here
//! from the imported file.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{TestStore, cli_ok as ok};
use mcp_audit_proxy::analytics::quality;
use serde_json::Value;

fn traffic() -> PathBuf {
    let exe = std::env::current_exe().expect("test exe");
    let path = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("examples")
        .join("traffic");
    assert!(
        path.exists(),
        "{} is missing: run `cargo test`",
        path.display()
    );
    path
}

/// A labelled month imported into a store configured with the labels' context.
fn month(seed: u64, clean: bool) -> (TestStore, PathBuf, quality::Labels) {
    let dir = tempfile::tempdir().unwrap();
    let labels_path = dir.path().join("labels.json");
    let events = dir.path().join("month.jsonl");
    let mut cmd = Command::new(traffic());
    cmd.args([
        "--seed",
        &seed.to_string(),
        "--days",
        "21",
        "--people",
        "30",
        "--out",
    ])
    .arg(&events)
    .arg("--labels")
    .arg(&labels_path);
    if clean {
        cmd.arg("--no-anomalies");
    }
    assert!(cmd.status().unwrap().success());
    let labels: quality::Labels =
        serde_json::from_slice(&std::fs::read(&labels_path).unwrap()).unwrap();
    let store = TestStore::new(&quality::analytics_toml(&labels.context));
    let kept = store.dir.path().join("month.jsonl");
    std::fs::rename(&events, &kept).unwrap();
    ok(&store.config, &["import", kept.to_str().unwrap()]);
    (store, kept, labels)
}

fn window(labels: &quality::Labels) -> (String, String) {
    let start = humantime::parse_rfc3339(&labels.start).unwrap();
    let end = start + std::time::Duration::from_secs(labels.days * 86_400);
    (
        labels.start.clone(),
        humantime::format_rfc3339(end).to_string(),
    )
}

/// The month also serves `analyze`. One seed here (an import of a month costs minutes in a
/// debug build, and CI has 30 of them for everything); the second and third seeds run the
/// same path in release through `examples/anomaly_quality.rs` (BENCHMARKS.md).
#[test]
fn anomalies_through_import_find_the_injected_ones_and_analyze_counts_right() {
    for seed in [11] {
        let (store, file, labels) = month(seed, false);
        let (since, until) = window(&labels);
        let text = ok(
            &store.config,
            &["anomalies", "--since", &since, "--until", &until, "--json"],
        );
        let findings = quality::read_findings(&text).unwrap();
        let scores = quality::score(&findings, &labels.anomalies);
        for (family, s) in &scores {
            assert!(s.labels >= 6, "seed {seed} {family}: {s:?}");
            assert!(
                s.precision >= 0.8 && s.recall >= 0.8,
                "seed {seed} {family}: {s:?}"
            );
        }
        // Evidence names access events that are in the file.
        let ids: HashSet<String> =
            std::io::BufRead::lines(std::io::BufReader::new(std::fs::File::open(&file).unwrap()))
                .map(|l| serde_json::from_str::<Value>(&l.unwrap()).unwrap())
                .filter(|e| e["event_type"] == "tool_access")
                .map(|e| e["event_id"].as_str().unwrap().to_string())
                .collect();
        for f in &findings {
            assert!(!f.evidence.is_empty(), "{f:?}");
            assert!(
                f.evidence.iter().all(|id| ids.contains(&id.to_string())),
                "{f:?}"
            );
        }
        // The table says the same, finding by finding.
        let table = ok(
            &store.config,
            &["anomalies", "--since", &since, "--until", &until],
        );
        assert!(
            table.contains(&format!("{} findings from", findings.len())),
            "{table}"
        );
        for f in &findings {
            assert!(table.contains(&f.explanation), "{table}");
        }
        if seed == 11 {
            analyze_matches_counts_made_here(&store, &file, &labels, &findings);
        }
    }
}

#[test]
fn anomalies_through_import_stay_quiet_on_a_clean_month() {
    let (store, _, labels) = month(11, true);
    let (since, until) = window(&labels);
    let text = ok(
        &store.config,
        &["anomalies", "--since", &since, "--until", &until, "--json"],
    );
    let clean = quality::read_findings(&text).unwrap();
    let rate = quality::false_alarm_rate(clean.len(), labels.people.len(), labels.days);
    assert!(
        rate <= 20.0,
        "{rate} false alarms per 1000 user-days: {text}"
    );
}

/// `analyze tools` and `analyze user` against figures counted here from the imported file.
fn analyze_matches_counts_made_here(
    store: &TestStore,
    file: &Path,
    labels: &quality::Labels,
    findings: &[mcp_audit_proxy::analytics::anomalies::Finding],
) {
    let events: Vec<Value> =
        std::io::BufRead::lines(std::io::BufReader::new(std::fs::File::open(file).unwrap()))
            .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
            .collect();
    // The second week.
    let start = humantime::parse_rfc3339(&labels.start).unwrap();
    let from = start + std::time::Duration::from_secs(7 * 86_400);
    let to = from + std::time::Duration::from_secs(7 * 86_400);
    let (since, until) = (
        humantime::format_rfc3339(from).to_string(),
        humantime::format_rfc3339(to).to_string(),
    );
    let in_window = |e: &Value| {
        let t = humantime::parse_rfc3339(e["timestamp"].as_str().unwrap()).unwrap();
        t >= from && t <= to
    };
    let ends: HashMap<&str, &Value> = events
        .iter()
        .filter(|e| e["event_type"] != "tool_access")
        .filter_map(|e| Some((e["linked_event_id"].as_str()?, e)))
        .collect();
    let accesses: Vec<&Value> = events
        .iter()
        .filter(|e| e["event_type"] == "tool_access" && in_window(e))
        .collect();

    // Tools: calls and successes per tool.
    let mut expected: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
    for a in &accesses {
        let t = expected
            .entry(a["tool_name"].as_str().unwrap().to_string())
            .or_default();
        t.0 += 1;
        if let Some(end) = ends.get(a["event_id"].as_str().unwrap()) {
            t.1 += 1;
            if end["result"] == "success" {
                t.2 += 1;
            }
        }
    }
    let tools: Value = serde_json::from_str(&ok(
        &store.config,
        &[
            "analyze", "tools", "--since", &since, "--until", &until, "--json",
        ],
    ))
    .unwrap();
    assert_eq!(tools["calls"], accesses.len());
    let listed = tools["tools"].as_array().unwrap();
    assert_eq!(listed.len(), expected.len());
    for t in listed {
        let (calls, ended, ok_n) = expected[t["tool"].as_str().unwrap()];
        assert_eq!(t["calls"], calls, "{t}");
        assert_eq!(t["succeeded"], ok_n, "{t}");
        let rate = t["success_rate"].as_f64().unwrap();
        assert!((rate - ok_n as f64 / ended as f64).abs() < 1e-9, "{t}");
    }
    let counts: Vec<u64> = listed
        .iter()
        .map(|t| t["calls"].as_u64().unwrap())
        .collect();
    assert!(counts.windows(2).all(|w| w[0] >= w[1]), "most used first");

    // A user with a finding in the window (of the month's run above), and each figure.
    let ms = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
    };
    let found = findings
        .iter()
        .find(|f| f.subject.get("user").is_some() && f.from_ms >= ms(from) && f.to_ms <= ms(to))
        .expect("a finding about a user in the second week");
    let user = found.subject["user"].as_str().unwrap();
    let mine: Vec<&&Value> = accesses.iter().filter(|a| a["user_id"] == user).collect();
    let report: Value = serde_json::from_str(&ok(
        &store.config,
        &[
            "analyze", "user", user, "--since", &since, "--until", &until, "--json",
        ],
    ))
    .unwrap();
    assert_eq!(report["calls"], mine.len());
    let sessions: HashSet<&str> = mine
        .iter()
        .map(|a| a["session_id"].as_str().unwrap())
        .collect();
    assert_eq!(report["sessions"].as_array().unwrap().len(), sessions.len());
    let ips: HashSet<&str> = mine
        .iter()
        .filter_map(|a| a["metadata"]["http"]["client_address"].as_str())
        .collect();
    assert_eq!(report["source_ips"].as_array().unwrap().len(), ips.len());
    let histogram: u64 = report["hour_histogram"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(histogram, mine.len() as u64);
    let person = labels
        .people
        .iter()
        .find(|p| p["user"] == user)
        .expect("the user in the labels");
    // Inferred from their hours: within an hour of the generator's zone for them.
    let tz = person["tz_offset_min"].as_i64().unwrap();
    let inferred =
        mcp_audit_proxy::config::parse_offset(report["time_zone"].as_str().unwrap()).unwrap();
    assert!(
        (i64::from(inferred) - tz).abs() <= 60,
        "inferred {inferred} for {person}"
    );
    let anomalies = report["anomalies"].as_array().unwrap();
    assert!(
        anomalies
            .iter()
            .any(|a| a["explanation"] == found.explanation.as_str()),
        "{found:?} not in {report}"
    );
    let score = report["risk_score"].as_u64().unwrap();
    let parts: u64 = report["risk_reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["points"].as_u64().unwrap())
        .sum();
    assert_eq!(score, parts.min(100));
    assert!(score >= 5, "an anomaly adds 5 points or more: {report}");
    // The table carries the same score.
    let table = ok(
        &store.config,
        &[
            "analyze", "user", user, "--since", &since, "--until", &until,
        ],
    );
    assert!(
        table.contains(&format!("behavioural risk score: {score}/100")),
        "{table}"
    );
}
