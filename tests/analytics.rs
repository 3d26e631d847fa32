//! The anomaly detectors against labelled traffic from `examples/traffic.rs`: precision and
//! recall per family, and false alarms on the same month without injections (issue 10 item
//! 2; the month-long, two-seed figures are in BENCHMARKS.md).

use std::io::BufRead;
use std::path::PathBuf;
use std::process::Command;

use mcp_audit_proxy::analytics::{self, anomalies, quality};
use mcp_audit_proxy::audit::AuditEvent;

/// The traffic generator, built by `cargo test` next to the test binaries.
fn traffic() -> PathBuf {
    let exe = std::env::current_exe().expect("test exe");
    let target = exe
        .parent()
        .and_then(std::path::Path::parent)
        .expect("target dir");
    let path = target.join("examples").join("traffic");
    assert!(
        path.exists(),
        "{} is missing: run `cargo test` (which builds the examples)",
        path.display()
    );
    path
}

fn generate(dir: &std::path::Path, seed: u64, clean: bool) -> (Vec<AuditEvent>, PathBuf) {
    generate_with(dir, "traffic", &["--people", "30"], seed, clean)
}

/// A 21-day month of `example` (`traffic` or `traffic_blind`) with `size`.
fn generate_with(
    dir: &std::path::Path,
    example: &str,
    size: &[&str],
    seed: u64,
    clean: bool,
) -> (Vec<AuditEvent>, PathBuf) {
    let out = dir.join(format!("{example}-{seed}-{clean}.jsonl"));
    let labels = dir.join(format!("{example}-{seed}-labels.json"));
    let mut cmd = Command::new(traffic().with_file_name(example));
    cmd.args(["--seed", &seed.to_string(), "--days", "21"])
        .args(size)
        .arg("--out")
        .arg(&out)
        .arg("--labels")
        .arg(&labels);
    if clean {
        cmd.arg("--no-anomalies");
    }
    let status = cmd.status().expect("run the traffic generator");
    assert!(status.success());
    let file = std::io::BufReader::new(std::fs::File::open(&out).unwrap());
    let events = file
        .lines()
        .map(|l| serde_json::from_str(&l.unwrap()).expect("a documented event"))
        .collect();
    (events, labels)
}

#[test]
fn the_detectors_find_the_injected_anomalies_and_stay_quiet_on_benign_change() {
    let dir = tempfile::tempdir().unwrap();
    let seed = 11;
    let (events, labels) = generate(dir.path(), seed, false);
    let labels: quality::Labels = serde_json::from_slice(&std::fs::read(labels).unwrap()).unwrap();
    assert_eq!(labels.anomalies.len(), 36);
    let calls = analytics::calls(events);
    let findings = anomalies::detect(&calls, &labels.context);
    let scores = quality::score(&findings, &labels.anomalies);
    for (family, s) in &scores {
        assert!(s.labels >= 6, "{family}: {s:?}");
        assert!(s.precision >= 0.8 && s.recall >= 0.8, "{family}: {s:?}");
    }
    // Every finding says why, with evidence that exists.
    let ids: std::collections::HashSet<_> = calls.iter().map(|c| c.id).collect();
    for f in &findings {
        assert!(
            !f.evidence.is_empty() && f.evidence.iter().all(|id| ids.contains(id)),
            "{f:?}"
        );
        assert!(!f.explanation.is_empty() && f.from_ms <= f.to_ms, "{f:?}");
    }

    let (clean, _) = generate(dir.path(), seed, true);
    let clean = anomalies::detect(&analytics::calls(clean), &labels.context);
    let rate = quality::false_alarm_rate(clean.len(), labels.people.len(), labels.days);
    assert!(
        rate <= 20.0,
        "{rate} false alarms per 1000 user-days: {clean:#?}"
    );
}

#[test]
fn without_the_operators_context_a_renumbered_vpn_is_still_not_everyones_anomaly() {
    // No networks configured: the VPN pool's move on day 20 makes every remote person "new"
    // to 172.20.0.0/16 at once; the population rule must keep that quiet.
    let dir = tempfile::tempdir().unwrap();
    let (events, labels) = generate(dir.path(), 5, true);
    let labels: quality::Labels = serde_json::from_slice(&std::fs::read(labels).unwrap()).unwrap();
    let context = analytics::Context {
        service_accounts: labels.context.service_accounts.clone(),
        networks: Vec::new(),
        ..analytics::Context::default()
    };
    let findings = anomalies::detect(&analytics::calls(events), &context);
    let new_networks: Vec<_> = findings
        .iter()
        .filter(|f| f.kind == "new_network")
        .collect();
    assert!(new_networks.len() <= 2, "{new_networks:#?}");
}

/// The month of `examples/traffic_blind.rs`, written without looking at the detectors (its
/// identifiers differ on every call, its agents work in episodes, its people roam between
/// carriers and homes, an incident keeps a team up): the detectors must stay quiet on its
/// benign month (at most 20 false alarms per 1000 user-days, the target) and keep
/// behavioural and network findings precise. Before the detectors were revised against it,
/// the same month gave thousands of argument findings (BENCHMARKS.md). Its statistical and
/// temporal labels are mostly missed (recall 0.25-0.67): not asserted here, said there.
#[test]
fn an_independently_written_month_raises_few_false_alarms() {
    let dir = tempfile::tempdir().unwrap();
    let size = ["--identities", "40"];
    let (events, labels) = generate_with(dir.path(), "traffic_blind", &size, 11, false);
    let labels: quality::Labels = serde_json::from_slice(&std::fs::read(labels).unwrap()).unwrap();
    let findings = anomalies::detect(&analytics::calls(events), &labels.context);
    let scores = quality::score(&findings, &labels.anomalies);
    for family in ["behavioural", "network"] {
        let s = &scores[family];
        assert!(s.precision >= 0.7, "{family}: {s:?}");
    }
    assert!(scores["network"].recall >= 0.8, "{:?}", scores["network"]);
    // A user's error rate, slow calls and large results on one tool (6 of its 12 statistical
    // labels; the per-tool detectors alone found 4).
    let stat = &scores["statistical"];
    assert!(stat.recall >= 0.5 && stat.precision >= 0.7, "{stat:?}");
    let (clean, _) = generate_with(dir.path(), "traffic_blind", &size, 11, true);
    let clean = anomalies::detect(&analytics::calls(clean), &labels.context);
    let rate = quality::false_alarm_rate(clean.len(), labels.people.len(), labels.days);
    assert!(
        rate <= 20.0,
        "{rate} false alarms per 1000 user-days: {clean:#?}"
    );
}
