//! Precision and recall of the anomaly detectors on labelled traffic from `traffic.rs`, and
//! false alarms per 1000 user-days on the same month without injections (issue 10 item 2),
//! through the commands' own path: each month is imported into a fresh store
//! (`commands::analytics::import`, what `mcp-audit-proxy import` runs), with the labels'
//! operator context as the config's `[analytics]` table, and read back by the `anomalies`
//! command (`--json`), whose lines are scored against the labels.
//!
//! ```text
//! cargo run --release --example traffic -- --seed 1 --out month.jsonl --labels labels.json
//! cargo run --release --example traffic -- --seed 1 --no-anomalies --out clean.jsonl
//! cargo run --release --example anomaly_quality -- month.jsonl labels.json clean.jsonl
//! ```

use std::path::Path;
use std::time::{Duration, Instant};

use mcp_audit_proxy::analytics::anomalies::Finding;
use mcp_audit_proxy::analytics::quality;
use mcp_audit_proxy::cli::{AnomaliesArgs, ConfigArg, ImportArgs, WindowArgs};
use mcp_audit_proxy::commands::analytics as commands;
use mcp_audit_proxy::config::Config;

/// Imports `events` into a new store under `dir` and runs `anomalies --json` over the month.
fn through_the_commands(
    dir: &Path,
    events: &str,
    labels: &quality::Labels,
) -> Result<(Vec<Finding>, Duration, Duration), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("proxy.toml");
    std::fs::write(
        &path,
        format!(
            "[audit]\nstore_dir = \"store\"\n{}",
            quality::analytics_toml(&labels.context)
        ),
    )?;
    let config = Config::load(&path)?;
    let config_arg = || ConfigArg {
        config: path.clone(),
    };
    let started = Instant::now();
    let mut sink = Vec::new();
    commands::import(
        &ImportArgs {
            config: config_arg(),
            file: events.into(),
            skip_stored: false,
        },
        &config,
        &mut std::io::empty(),
        &mut sink,
    )?;
    let imported = started.elapsed();
    let (since, until) = labels.window()?;
    let started = Instant::now();
    let mut out = Vec::new();
    commands::anomalies(
        &AnomaliesArgs {
            config: config_arg(),
            window: WindowArgs {
                since: Some(since),
                until: Some(until),
                json: true,
            },
            allow_damaged: false,
        },
        &config,
        &mut out,
    )?;
    let detected = started.elapsed();
    Ok((
        quality::read_findings(std::str::from_utf8(&out)?)?,
        imported,
        detected,
    ))
}

/// `IN_MEMORY=1`: the month's events read into memory and handed to the detectors directly
/// (`analytics::anomalies::detect`), without the store in between: seconds instead of a
/// minute per month, for tuning loops. The figures to report come from the commands' path.
/// Calls after the month's window are left out, as `anomalies --until` leaves them out of
/// the store's scan: the two paths judge the same calls (a call after the window moves
/// judgements before it: [`quality::Labels::window`]).
fn in_memory(
    events: &str,
    labels: &quality::Labels,
) -> Result<(Vec<Finding>, Duration, Duration), Box<dyn std::error::Error>> {
    use std::io::BufRead;
    let started = Instant::now();
    let mut all = Vec::new();
    for line in std::io::BufReader::new(std::fs::File::open(events)?).lines() {
        let line = line?;
        if !line.trim().is_empty() {
            all.push(serde_json::from_str(&line)?);
        }
    }
    let mut calls = mcp_audit_proxy::analytics::calls(all);
    let until = labels.window()?.1.duration_since(std::time::UNIX_EPOCH)?;
    calls.retain(|c| u128::from(c.at_ms) <= until.as_millis());
    let read = started.elapsed();
    let started = Instant::now();
    let findings = mcp_audit_proxy::analytics::anomalies::detect(&calls, &labels.context);
    Ok((findings, read, started.elapsed()))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [events, labels, clean] = args.as_slice() else {
        return Err("usage: anomaly_quality MONTH.jsonl LABELS.json CLEAN.jsonl".into());
    };
    let labels: quality::Labels = serde_json::from_slice(&std::fs::read(labels)?)?;
    let dir = tempfile::tempdir()?;
    let quick = std::env::var_os("IN_MEMORY").is_some();
    let run = |name: &str, file: &str| {
        if quick {
            in_memory(file, &labels)
        } else {
            through_the_commands(&dir.path().join(name), file, &labels)
        }
    };
    let (findings, imported, detected) = run("month", events)?;
    // `FINDINGS=FILE`: the month's findings as `anomalies --json` prints them, to compare
    // two builds of the detectors.
    if let Some(path) = std::env::var_os("FINDINGS") {
        let mut text = String::new();
        for f in &findings {
            text.push_str(&serde_json::to_string(f)?);
            text.push('\n');
        }
        std::fs::write(path, text)?;
    }
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
                    std::time::UNIX_EPOCH + Duration::from_millis(f.from_ms),
                );
                println!("false: {at} {} {} {}", f.family, f.kind, f.explanation);
            }
        }
    }
    let (clean_findings, _, _) = run("clean", clean)?;
    let identities = labels.people.len();
    println!(
        "clean month: {} findings, {:.1} false alarms per 1000 user-days ({identities} identities, {} days); import took {:.1} s, anomalies {:.1} s",
        clean_findings.len(),
        quality::false_alarm_rate(clean_findings.len(), identities, labels.days),
        labels.days,
        imported.as_secs_f64(),
        detected.as_secs_f64(),
    );
    let mut kinds = std::collections::BTreeMap::new();
    for f in &clean_findings {
        *kinds
            .entry((f.family.to_string(), f.kind.to_string()))
            .or_insert(0) += 1;
    }
    println!("clean findings by kind: {kinds:?}");
    Ok(())
}
