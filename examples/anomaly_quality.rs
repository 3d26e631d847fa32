//! Precision and recall of the anomaly detectors on labelled traffic from `traffic.rs`, and
//! false alarms per 1000 user-days on the same month without injections (issue 10 item 2).
//!
//! ```text
//! cargo run --release --example traffic -- --seed 1 --out month.jsonl --labels labels.json
//! cargo run --release --example traffic -- --seed 1 --no-anomalies --out clean.jsonl
//! cargo run --release --example anomaly_quality -- month.jsonl labels.json clean.jsonl
//! ```

use std::io::BufRead;

use mcp_audit_proxy::analytics::{self, anomalies, quality};
use mcp_audit_proxy::audit::AuditEvent;

fn read(path: &str) -> Result<Vec<AuditEvent>, Box<dyn std::error::Error>> {
    let file = std::io::BufReader::new(std::fs::File::open(path)?);
    let mut out = Vec::new();
    for (i, line) in file.lines().enumerate() {
        out.push(serde_json::from_str(&line?).map_err(|e| format!("{path}:{}: {e}", i + 1))?);
    }
    Ok(out)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [events, labels, clean] = args.as_slice() else {
        return Err("usage: anomaly_quality MONTH.jsonl LABELS.json CLEAN.jsonl".into());
    };
    let labels: quality::Labels = serde_json::from_slice(&std::fs::read(labels)?)?;
    let started = std::time::Instant::now();
    let calls = analytics::calls(read(events)?);
    let findings = anomalies::detect(&calls, &labels.context);
    let took = started.elapsed();
    let scores = quality::score(&findings, &labels.anomalies);
    println!("family       findings  precision  labels  recall  missed");
    for (family, s) in &scores {
        println!(
            "{family:<12} {:>8}  {:>9.2}  {:>6}  {:>6.2}  {}",
            s.findings,
            s.precision,
            s.labels,
            s.recall,
            s.missed.join(" ")
        );
    }
    if std::env::var_os("SHOW_FALSE").is_some() {
        let evidence: Vec<std::collections::HashSet<&str>> = labels
            .anomalies
            .iter()
            .map(|l| l.evidence.iter().map(String::as_str).collect())
            .collect();
        for f in &findings {
            if !labels
                .anomalies
                .iter()
                .zip(&evidence)
                .any(|(l, e)| quality::points_at(f, l, e))
            {
                let at = humantime::format_rfc3339_seconds(
                    std::time::UNIX_EPOCH + std::time::Duration::from_millis(f.from_ms),
                );
                println!("false: {at} {} {} {}", f.family, f.kind, f.explanation);
            }
        }
    }
    let clean_calls = analytics::calls(read(clean)?);
    let clean_findings = anomalies::detect(&clean_calls, &labels.context);
    let identities = labels.people.len();
    println!(
        "clean month: {} findings, {:.1} false alarms per 1000 user-days ({identities} identities, {} days); detection took {:.1} s for {} calls",
        clean_findings.len(),
        quality::false_alarm_rate(clean_findings.len(), identities, labels.days),
        labels.days,
        took.as_secs_f64(),
        calls.len()
    );
    let mut kinds = std::collections::BTreeMap::new();
    for f in &clean_findings {
        *kinds.entry((f.family, f.kind)).or_insert(0) += 1;
    }
    println!("clean findings by kind: {kinds:?}");
    Ok(())
}
