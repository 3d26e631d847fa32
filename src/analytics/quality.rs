//! How good the detectors are, measured on labelled traffic (`examples/traffic.rs`): per
//! family, precision (findings that point at an injected anomaly), recall (injected anomalies
//! a finding of their family points at) and, on the same month without injections, false
//! alarms per 1000 user-days.
//!
//! A finding points at a label when they share evidence (an event id), or when their subjects
//! meet (the same user, an address and its users, a tool) and their windows overlap within
//! [`SLACK_MS`]. For precision a finding may point at a label of any family (a burst that the
//! call-rate detector also saw is a real anomaly, not a false alarm); recall counts only
//! findings of the label's own family.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Context;
use super::anomalies::Finding;

/// How far apart a finding's and a label's windows may be and still meet, in ms.
pub const SLACK_MS: u64 = 30 * 60_000;

/// The labels file of `examples/traffic.rs`.
#[derive(Debug, Clone, Deserialize)]
pub struct Labels {
    /// First day, RFC 3339.
    pub start: String,
    /// Days of traffic.
    pub days: u64,
    /// The injected anomalies.
    pub anomalies: Vec<Label>,
    /// Service accounts and networks, as an operator would configure them.
    pub context: Context,
    /// Everyone in the traffic (for user-days).
    pub people: Vec<Value>,
}

impl Labels {
    /// The window of the month, `[from, to]`, for `anomalies --since --until`: from `start`
    /// to a day past its `days`.
    ///
    /// The generators give each person their days in their own time zone and cut only at
    /// `start`, so the last local day of everyone west of UTC ends hours after `start` +
    /// `days` (New York evenings to 01:51-04:03 UTC on blind 1-9 and `traffic.rs` 1-3). A
    /// window ending at `start` + `days` left those calls out of the commands' path, not out
    /// of the in-memory one, and a call after the window moves judgements days before it
    /// (the off-hours test counts later days and nights too): on blind 4, without one New
    /// York user's last evening (01:00 UTC), their evening in that hour five days before had
    /// one other such day, not two, so looked rare, and made the night of the obvious
    /// off-hours label one of three people up at once (not judged). A day past covers every
    /// zone (UTC-12 at the most).
    pub fn window(&self) -> Result<(SystemTime, SystemTime), humantime::TimestampError> {
        let from = humantime::parse_rfc3339(&self.start)?;
        Ok((from, from + Duration::from_secs((self.days + 1) * 86_400)))
    }
}

/// One injected anomaly.
#[derive(Debug, Clone, Deserialize)]
pub struct Label {
    /// `statistical`, `behavioural`, `temporal`, `network`.
    pub family: String,
    /// What was injected.
    pub kind: String,
    /// `obvious`, `moderate`, `subtle`.
    pub severity: String,
    /// `{"user"}`, `{"user", "tool"}`, `{"tool"}` or `{"ip", "users"}`.
    pub subject: Value,
    /// RFC 3339.
    pub from: String,
    /// RFC 3339.
    pub to: String,
    /// Event ids of the injected (or altered) calls, access and end.
    pub evidence: Vec<String>,
}

/// One family's figures.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FamilyScore {
    /// Findings of the family.
    pub findings: usize,
    /// Of those, the ones that point at some label.
    pub true_findings: usize,
    /// Labels of the family.
    pub labels: usize,
    /// Of those, the ones a finding of the family points at.
    pub found: usize,
    /// `true_findings / findings` (1 when there are none).
    pub precision: f64,
    /// `found / labels` (1 when there are none).
    pub recall: f64,
    /// Labels missed, as `kind/severity`.
    pub missed: Vec<String>,
}

fn ms(text: &str) -> u64 {
    humantime::parse_rfc3339(text)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64)
}

fn subjects_meet(f: &Value, l: &Value) -> bool {
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let users = |v: &Value| -> HashSet<String> {
        let mut u: HashSet<String> = v
            .get("users")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        u.extend(s(v, "user"));
        u
    };
    let (fu, lu) = (users(f), users(l));
    if !fu.is_empty() && !lu.is_empty() {
        return !fu.is_disjoint(&lu);
    }
    if let (Some(a), Some(b)) = (s(f, "ip"), s(l, "ip")) {
        return a == b;
    }
    matches!((s(f, "tool"), s(l, "tool")), (Some(a), Some(b)) if a == b)
}

/// Whether `f` points at `l`.
pub fn points_at(f: &Finding, l: &Label, evidence: &HashSet<&str>) -> bool {
    let shared = f
        .evidence
        .iter()
        .any(|id| evidence.contains(id.to_string().as_str()));
    if shared {
        return true;
    }
    let (from, to) = (ms(&l.from), ms(&l.to));
    subjects_meet(&f.subject, &l.subject)
        && f.from_ms <= to + SLACK_MS
        && f.to_ms + SLACK_MS >= from
}

/// Scores `findings` against `labels`, per family.
pub fn score(findings: &[Finding], labels: &[Label]) -> BTreeMap<String, FamilyScore> {
    let evidence: Vec<HashSet<&str>> = labels
        .iter()
        .map(|l| l.evidence.iter().map(String::as_str).collect())
        .collect();
    let mut out: BTreeMap<String, FamilyScore> = BTreeMap::new();
    for family in ["statistical", "behavioural", "temporal", "network"] {
        out.insert(family.into(), FamilyScore::default());
    }
    for f in findings {
        let s = out.entry(f.family.to_string()).or_default();
        s.findings += 1;
        if labels
            .iter()
            .zip(&evidence)
            .any(|(l, e)| points_at(f, l, e))
        {
            s.true_findings += 1;
        }
    }
    for (l, e) in labels.iter().zip(&evidence) {
        let s = out.entry(l.family.clone()).or_default();
        s.labels += 1;
        if findings
            .iter()
            .any(|f| f.family == l.family && points_at(f, l, e))
        {
            s.found += 1;
        } else {
            s.missed.push(format!("{}/{}", l.kind, l.severity));
        }
    }
    for s in out.values_mut() {
        s.precision = if s.findings == 0 {
            1.0
        } else {
            s.true_findings as f64 / s.findings as f64
        };
        s.recall = if s.labels == 0 {
            1.0
        } else {
            s.found as f64 / s.labels as f64
        };
    }
    out
}

/// False alarms per 1000 user-days: `findings` on a month without injections.
pub fn false_alarm_rate(findings: usize, identities: usize, days: u64) -> f64 {
    findings as f64 * 1000.0 / (identities as f64 * days as f64).max(1.0)
}

/// `context` as the `[analytics]` table of a `proxy.toml`, so that the measure runs through
/// the configuration the commands read (TOML strings are JSON strings).
pub fn analytics_toml(context: &Context) -> String {
    let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let mut out = String::from("[analytics]\n");
    let accounts: Vec<String> = context.service_accounts.iter().map(|s| q(s)).collect();
    out.push_str(&format!("service_accounts = [{}]\n", accounts.join(", ")));
    if !context.time_zones.is_empty() {
        let zones: Vec<String> = context
            .time_zones
            .iter()
            .map(|(u, m)| format!("{} = {}", q(u), q(&super::behaviour::offset_text(*m))))
            .collect();
        out.push_str(&format!("time_zones = {{ {} }}\n", zones.join(", ")));
    }
    for n in &context.networks {
        out.push_str(&format!(
            "[[analytics.networks]]\ncidr = {}\nname = {}\n",
            q(&n.cidr.to_string()),
            q(&n.name)
        ));
        if let Some(p) = &n.place {
            out.push_str(&format!("place = {}\n", q(p)));
        }
        if let (Some(lat), Some(lon)) = (n.lat, n.lon) {
            out.push_str(&format!("lat = {lat:?}\nlon = {lon:?}\n"));
        }
    }
    out
}

/// Reads `anomalies --json` output back into findings.
pub fn read_findings(text: &str) -> Result<Vec<Finding>, serde_json::Error> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect()
}
