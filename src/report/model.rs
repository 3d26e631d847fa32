//! The report as data: what `--format json` prints, and what the HTML and Markdown are
//! rendered from (so the three carry the same content).

use std::collections::BTreeMap;

use serde::Serialize;

use super::tally::Tally;
use crate::analytics::anomalies::Finding;
use crate::analytics::behaviour::{Activity, RiskCounts};
use crate::analytics::compliance::{Assessment, Regulation, RuleOutcome, Status};
use crate::analytics::ms_time;

/// Which report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// For the board: totals, trends, compliance scores, top findings, recommendations.
    Executive,
    /// For the security team: the executive summary, then every finding with its evidence,
    /// user activity, tool usage, risk analysis and compliance rule by rule.
    Detailed,
}

/// Findings listed in an executive summary (the most severe first).
pub const TOP_FINDINGS: usize = 10;
/// Evidence ids shown per finding in HTML and Markdown (JSON has them all).
pub const SHOWN_EVIDENCE: usize = 10;
/// Risk reasons listed.
pub const TOP_REASONS: usize = 10;

/// A time range.
#[derive(Debug, Clone, Serialize)]
pub struct Period {
    /// Start, RFC 3339 UTC.
    pub since: String,
    /// End, RFC 3339 UTC.
    pub until: String,
    /// Its length in days.
    pub days: f64,
}

impl Period {
    fn new(from_ms: u64, to_ms: u64) -> Period {
        Period {
            since: ms_time::text(from_ms),
            until: ms_time::text(to_ms),
            days: round((to_ms.saturating_sub(from_ms)) as f64 / 86_400_000.0, 2),
        }
    }
}

fn round(v: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (v * f).round() / f
}

/// The period's totals.
#[derive(Debug, Clone, Serialize)]
pub struct Totals {
    /// Tool calls (access events).
    pub calls: u64,
    /// Distinct `user_id`s.
    pub users: u64,
    /// Distinct `tool_name`s.
    pub tools: u64,
    /// Distinct `session_id`s.
    pub sessions: u64,
    /// Calls that ended with `success`.
    pub succeeded: u64,
    /// Calls that failed (tool errors, JSON-RPC errors, timeouts, server exits, refusals,
    /// blocks).
    pub failed: u64,
    /// Calls whose end is not in the trail (running, or lost with their process).
    pub unfinished: u64,
    /// Calls at risk `high` or `critical`.
    pub high_risk: u64,
    /// Calls blocked by the policy or refused by the proxy.
    pub blocked_or_refused: u64,
}

impl Totals {
    fn of(t: &Tally) -> Totals {
        Totals {
            calls: t.calls,
            users: t.users.len() as u64,
            tools: t.tools.len() as u64,
            sessions: t.sessions.len() as u64,
            succeeded: t.succeeded,
            failed: t.failed,
            unfinished: t.unfinished,
            high_risk: t.high_risk,
            blocked_or_refused: t.blocked,
        }
    }
}

/// One figure against the previous period of the same length.
#[derive(Debug, Clone, Serialize)]
pub struct Trend {
    /// `calls`, `failed`, `high_risk`, `blocked_or_refused`, `users`.
    pub metric: &'static str,
    /// For a person.
    pub label: &'static str,
    /// This period.
    pub current: u64,
    /// The period before.
    pub previous: u64,
    /// `current - previous`.
    pub change: i64,
    /// How much it went up or down (`|change|`).
    pub magnitude: u64,
    /// The change in percent of `previous` (one decimal); null when `previous` is 0.
    pub change_pct: Option<f64>,
    /// `up`, `down` or `unchanged`.
    pub direction: &'static str,
}

fn trends(now: &Totals, before: &Totals) -> Vec<Trend> {
    [
        ("calls", "Calls", now.calls, before.calls),
        ("failed", "Failed calls", now.failed, before.failed),
        (
            "high_risk",
            "High-risk calls",
            now.high_risk,
            before.high_risk,
        ),
        (
            "blocked_or_refused",
            "Blocked or refused calls",
            now.blocked_or_refused,
            before.blocked_or_refused,
        ),
        ("users", "Active users", now.users, before.users),
    ]
    .into_iter()
    .map(|(metric, label, current, previous)| {
        let change = current as i64 - previous as i64;
        Trend {
            metric,
            label,
            current,
            previous,
            change,
            magnitude: change.unsigned_abs(),
            change_pct: (previous > 0).then(|| round(100.0 * change as f64 / previous as f64, 1)),
            direction: match change.signum() {
                1 => "up",
                -1 => "down",
                _ => "unchanged",
            },
        }
    })
    .collect()
}

/// One finding as listed (`F1`, `F2`, … in the order of the list).
#[derive(Debug, Clone, Serialize)]
pub struct FindingRow {
    /// `F1`, …: what recommendations point at.
    pub id: String,
    /// `statistical`, `behavioural`, `temporal`, `network`.
    pub family: String,
    /// What was seen (`burst`, `new_network`, …).
    pub kind: String,
    /// `high`, `medium`, `low`.
    pub severity: String,
    /// Who or what, for a person.
    pub subject: String,
    /// Start of its window, RFC 3339.
    pub from: String,
    /// End of its window.
    pub to: String,
    /// One line.
    pub explanation: String,
    /// Access event ids of its calls (all of them).
    pub evidence: Vec<String>,
    /// How many.
    pub evidence_total: usize,
}

/// Counts by severity.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Severities {
    /// `high`.
    pub high: usize,
    /// `medium`.
    pub medium: usize,
    /// `low`.
    pub low: usize,
}

/// The anomaly findings of the period.
#[derive(Debug, Clone, Serialize)]
pub struct FindingsSection {
    /// Whether the detectors ran.
    pub assessed: bool,
    /// Why not, when they did not.
    pub reason: Option<String>,
    /// Findings in the period.
    pub total: usize,
    /// By severity.
    pub by_severity: Severities,
    /// By family.
    pub by_family: BTreeMap<String, usize>,
    /// The most severe first (then the most evidence, then the earliest): the top
    /// [`TOP_FINDINGS`] in an executive summary, all in a detailed report.
    pub list: Vec<FindingRow>,
}

/// What the findings input is.
#[derive(Debug, Clone)]
pub enum FindingsInput {
    /// The detectors' findings meeting the period.
    Found(Vec<Finding>),
    /// The detectors did not run; why.
    NotAssessed(String),
}

/// What the compliance input is.
#[derive(Debug, Clone)]
pub enum ComplianceInput {
    /// One assessment per regulation.
    Assessed(Vec<Assessment>),
    /// No assessment; why (shown in place of scores, never a made-up one).
    NotAssessed(String),
}

/// One regulation's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct RegulationRow {
    /// `gdpr`, `hipaa`, `pci_dss`.
    pub regulation: Regulation,
    /// For a person: `GDPR`, `HIPAA`, `PCI DSS`.
    pub name: &'static str,
    /// Compliant rules as a share of the assessable ones, 0-100 (one decimal); null when
    /// none could be assessed.
    pub score: Option<f64>,
    /// Rules compliant.
    pub compliant: usize,
    /// Rules not compliant.
    pub non_compliant: usize,
    /// Rules that cannot be assessed from the trail.
    pub not_assessable: usize,
    /// Every rule (detailed report; empty in an executive summary).
    pub rules: Vec<RuleOutcome>,
}

fn regulation_name(r: Regulation) -> &'static str {
    match r {
        Regulation::Gdpr => "GDPR",
        Regulation::Hipaa => "HIPAA",
        Regulation::PciDss => "PCI DSS",
    }
}

/// Compliance by regulation.
#[derive(Debug, Clone, Serialize)]
pub struct ComplianceSection {
    /// Whether compliance was assessed.
    pub assessed: bool,
    /// Why not, when it was not.
    pub reason: Option<String>,
    /// One row per regulation assessed.
    pub regulations: Vec<RegulationRow>,
}

/// A recommendation, always with its cause.
#[derive(Debug, Clone, Serialize)]
pub struct Recommendation {
    /// `high`, `medium`, `low`: the most severe of its causes (a non-compliant rule is
    /// `high`).
    pub priority: String,
    /// What to do.
    pub text: String,
    /// `finding` or `rule`.
    pub cause_kind: &'static str,
    /// The finding ids (`F3`) or the rule id (`pci_dss.10.2.2.fields`) that caused it, as far
    /// as this report lists them.
    pub causes: Vec<String>,
    /// Its findings this report does not list (the executive report lists the most severe
    /// [`TOP_FINDINGS`]; the detailed report lists all).
    pub unlisted_causes: usize,
}

/// Risk analysis.
#[derive(Debug, Clone, Serialize)]
pub struct RiskSection {
    /// Calls by risk level.
    pub distribution: RiskCounts,
    /// The policy's reasons for high-risk calls, most frequent first (at most
    /// [`TOP_REASONS`]).
    pub top_reasons: Vec<ReasonRow>,
    /// The newest high-risk, blocked or refused calls, newest first (detailed report only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub newest: Option<Vec<Activity>>,
}

/// A risk reason and how often it was given.
#[derive(Debug, Clone, Serialize)]
pub struct ReasonRow {
    /// `metadata.risk_reasons` text.
    pub reason: String,
    /// High-risk calls that gave it.
    pub calls: u64,
}

/// One UTC day.
#[derive(Debug, Clone, Serialize)]
pub struct Day {
    /// `2026-10-05`.
    pub date: String,
    /// Calls.
    pub calls: u64,
    /// Failed calls.
    pub failed: u64,
    /// High-risk calls.
    pub high_risk: u64,
    /// Blocked or refused calls.
    pub blocked_or_refused: u64,
}

/// One user's activity (detailed report).
#[derive(Debug, Clone, Serialize)]
pub struct UserRow {
    /// `user_id`.
    pub user: String,
    /// Calls.
    pub calls: u64,
    /// Sessions.
    pub sessions: usize,
    /// Distinct tools called.
    pub tools: usize,
    /// Failed calls.
    pub failed: u64,
    /// High-risk calls.
    pub high_risk: u64,
    /// Blocked or refused calls.
    pub blocked_or_refused: u64,
    /// Findings about the user in the period.
    pub findings: usize,
    /// First call, RFC 3339.
    pub first: String,
    /// Last call.
    pub last: String,
}

/// One tool's usage.
#[derive(Debug, Clone, Serialize)]
pub struct ToolRow {
    /// `tool_name`.
    pub tool: String,
    /// Calls.
    pub calls: u64,
    /// Distinct users.
    pub users: usize,
    /// Share of the calls that ended with an outcome that succeeded, percent (one decimal;
    /// `input_required` rounds and tasks without their final end are not counted,
    /// [`crate::audit::Outcome::decides`]); null when none did.
    pub success_pct: Option<f64>,
    /// Mean execution time, milliseconds (two decimals).
    pub avg_ms: Option<f64>,
    /// 95th percentile (nearest rank) of the execution time, milliseconds: exact for a tool
    /// of at most [`crate::report::tally::EXACT_UP_TO`] timed calls, as `analyze` gives it;
    /// past that from a log-scale histogram, within 4.5 %.
    pub p95_ms: Option<f64>,
    /// Failed calls.
    pub failed: u64,
    /// Blocked or refused calls.
    pub blocked_or_refused: u64,
    /// Calls by risk level.
    pub risk: RiskCounts,
}

/// The report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `executive` or `detailed`.
    pub kind: Kind,
    /// `Executive summary` or `Detailed audit report`.
    pub title: &'static str,
    /// When it was made, RFC 3339.
    pub generated_at: String,
    /// The period reported on.
    pub period: Period,
    /// The period of the same length just before, for the trends.
    pub previous_period: Period,
    /// The store read.
    pub store: String,
    /// Events read (period, previous period and the detectors' history).
    pub events_read: u64,
    /// The period's totals.
    pub totals: Totals,
    /// The previous period's totals.
    pub previous_totals: Totals,
    /// Against the previous period.
    pub trends: Vec<Trend>,
    /// Calls per UTC day of the period.
    pub daily: Vec<Day>,
    /// Compliance by regulation.
    pub compliance: ComplianceSection,
    /// Anomaly findings.
    pub findings: FindingsSection,
    /// What to do, each with its cause.
    pub recommendations: Vec<Recommendation>,
    /// Risk analysis.
    pub risk: RiskSection,
    /// Tool usage, most used first (all tools in a detailed report, the top 10 in an
    /// executive summary).
    pub tools: Vec<ToolRow>,
    /// User activity, most calls first (detailed report only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub users: Option<Vec<UserRow>>,
}

/// What a report is made of.
#[derive(Debug)]
pub struct Inputs {
    /// Which report.
    pub kind: Kind,
    /// The period, milliseconds since the epoch (inclusive).
    pub from_ms: u64,
    /// Its end.
    pub to_ms: u64,
    /// The start of the previous period (which ends just before `from_ms`).
    pub previous_from_ms: u64,
    /// When the report is made.
    pub now_ms: u64,
    /// The store, for the header.
    pub store: String,
    /// Events read.
    pub events_read: u64,
    /// The period's figures.
    pub current: Tally,
    /// The previous period's figures.
    pub previous: Tally,
    /// Findings.
    pub findings: FindingsInput,
    /// Compliance.
    pub compliance: ComplianceInput,
}

/// The order findings and recommendations are listed in: `high` first.
fn severity_rank(s: &str) -> u8 {
    2 - crate::analytics::anomalies::severity_level(s)
}

/// What to do about findings of a kind.
fn advice(kind: &str) -> &'static str {
    match kind {
        "call_rate" => {
            "Confirm with the user that the surge of calls was theirs; an automated client or a stolen credential makes such rates. Rotate the credential if they did not."
        }
        "output_size" => {
            "Check what the unusually large results held and where they went next; narrow the tool's scope if it returns more than the task needs."
        }
        "error_rate" => {
            "Look at the tool's failures in that window: an outage, a changed upstream API, or someone probing the tool."
        }
        "execution_time" => {
            "Find why the tool slowed down (upstream load, larger inputs, a hanging dependency) and set limits.call_timeout_ms accordingly."
        }
        "first_use" => {
            "Confirm the user needs the tool; if not, deny it to their role in the [risk] policy."
        }
        "new_client" => {
            "Confirm the new client with the user; scripts (curl, python) calling tools directly bypass the usual client's confirmations."
        }
        "unusual_arguments" => {
            "Review the calls' arguments; block path traversal and hidden folders with a [risk] rule for the tool."
        }
        "read_then_send" => {
            "Find out what was sent to the new destination right after the sensitive reads; treat it as a possible data exfiltration until shown otherwise."
        }
        "off_hours" => {
            "Confirm the off-hours work with the user or their manager; add on-call or service accounts to [analytics] if it was planned."
        }
        "burst" => {
            "Check whether the burst came from a script or a runaway agent loop; consider a rate limit for the user."
        }
        "new_network" => {
            "Confirm the new network; if it is the organisation's (a new office or VPN range), add it to [analytics] networks."
        }
        "many_addresses" => {
            "One user from several networks at once suggests a shared or stolen credential: confirm with the user and rotate it."
        }
        "shared_address" => {
            "One address acting for several users: if it is a known proxy or NAT, add its network to [analytics] networks; otherwise investigate shared credentials."
        }
        "impossible_travel" => {
            "The same user was in two distant places within hours: treat the credential as compromised until the user confirms, and rotate it."
        }
        _ => "Review these findings with the people concerned.",
    }
}

fn finding_rows(findings: &[Finding]) -> Vec<FindingRow> {
    let mut sorted: Vec<&Finding> = findings.iter().collect();
    sorted.sort_by(|a, b| {
        severity_rank(&a.severity)
            .cmp(&severity_rank(&b.severity))
            .then_with(|| b.evidence.len().cmp(&a.evidence.len()))
            .then_with(|| a.from_ms.cmp(&b.from_ms))
            .then_with(|| a.kind.cmp(&b.kind))
    });
    sorted
        .iter()
        .enumerate()
        .map(|(i, f)| FindingRow {
            id: format!("F{}", i + 1),
            family: f.family.to_string(),
            kind: f.kind.to_string(),
            severity: f.severity.to_string(),
            subject: f.subject_text(),
            from: ms_time::text(f.from_ms),
            to: ms_time::text(f.to_ms),
            explanation: f.explanation.clone(),
            evidence: f.evidence.iter().map(ToString::to_string).collect(),
            evidence_total: f.evidence.len(),
        })
        .collect()
}

/// Recommendations: one per kind of finding (pointing at its findings), one per
/// non-compliant rule; most urgent first. Nothing else makes one.
fn recommendations(rows: &[FindingRow], compliance: &ComplianceInput) -> Vec<Recommendation> {
    let mut out = Vec::new();
    if let ComplianceInput::Assessed(list) = compliance {
        for a in list {
            for r in a.rules.iter().filter(|r| r.status == Status::NonCompliant) {
                out.push(Recommendation {
                    priority: "high".into(),
                    text: format!(
                        "{} ({}, {}): make it hold. Found: {}",
                        r.title,
                        regulation_name(a.regulation),
                        r.clause,
                        r.explanation
                    ),
                    cause_kind: "rule",
                    causes: vec![r.id.clone()],
                    unlisted_causes: 0,
                });
            }
        }
    }
    let mut kinds: Vec<&str> = Vec::new();
    for r in rows {
        if !kinds.contains(&r.kind.as_str()) {
            kinds.push(&r.kind);
        }
    }
    for kind in kinds {
        let mine: Vec<&FindingRow> = rows.iter().filter(|r| r.kind == kind).collect();
        let mut subjects: Vec<&str> = Vec::new();
        for r in &mine {
            if !subjects.contains(&r.subject.as_str()) {
                subjects.push(&r.subject);
            }
        }
        let shown = subjects
            .iter()
            .take(5)
            .copied()
            .collect::<Vec<_>>()
            .join(", ");
        let more = subjects.len().saturating_sub(5);
        out.push(Recommendation {
            priority: mine
                .iter()
                .map(|r| r.severity.clone())
                .min_by_key(|s| severity_rank(s))
                .unwrap_or_else(|| "low".into()),
            text: format!(
                "{} finding(s) of {kind} ({}{}): {}",
                mine.len(),
                shown,
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                },
                advice(kind)
            ),
            cause_kind: "finding",
            causes: mine.iter().map(|r| r.id.clone()).collect(),
            unlisted_causes: 0,
        });
    }
    out.sort_by_key(|r| severity_rank(&r.priority));
    out
}

fn date(day: u64) -> String {
    ms_time::text(day * 86_400_000)[..10].to_string()
}

/// Builds the report from its inputs.
pub fn build(i: Inputs) -> Report {
    let totals = Totals::of(&i.current);
    let previous_totals = Totals::of(&i.previous);
    let t = &i.current;

    let (findings, rows) = match &i.findings {
        FindingsInput::Found(list) => {
            let rows = finding_rows(list);
            let mut by_severity = Severities::default();
            let mut by_family = BTreeMap::new();
            for f in list {
                match f.severity.as_ref() {
                    "high" => by_severity.high += 1,
                    "medium" => by_severity.medium += 1,
                    _ => by_severity.low += 1,
                }
                *by_family.entry(f.family.to_string()).or_default() += 1;
            }
            let listed = match i.kind {
                Kind::Executive => rows.iter().take(TOP_FINDINGS).cloned().collect(),
                Kind::Detailed => rows.clone(),
            };
            (
                FindingsSection {
                    assessed: true,
                    reason: None,
                    total: list.len(),
                    by_severity,
                    by_family,
                    list: listed,
                },
                rows,
            )
        }
        FindingsInput::NotAssessed(reason) => (
            FindingsSection {
                assessed: false,
                reason: Some(reason.clone()),
                total: 0,
                by_severity: Severities::default(),
                by_family: BTreeMap::new(),
                list: Vec::new(),
            },
            Vec::new(),
        ),
    };
    let mut recommendations = recommendations(&rows, &i.compliance);
    // A reader can look up only the findings this report lists (the detailed one lists all).
    let listed: std::collections::HashSet<&str> =
        findings.list.iter().map(|f| f.id.as_str()).collect();
    for r in recommendations
        .iter_mut()
        .filter(|r| r.cause_kind == "finding")
    {
        let before = r.causes.len();
        r.causes.retain(|id| listed.contains(id.as_str()));
        r.unlisted_causes = before - r.causes.len();
    }
    let compliance = match &i.compliance {
        ComplianceInput::Assessed(list) => ComplianceSection {
            assessed: true,
            reason: None,
            regulations: list
                .iter()
                .map(|a| {
                    let count = |s: Status| a.rules.iter().filter(|r| r.status == s).count();
                    RegulationRow {
                        regulation: a.regulation,
                        name: regulation_name(a.regulation),
                        score: a.score.map(|s| round(s, 1)),
                        compliant: count(Status::Compliant),
                        non_compliant: count(Status::NonCompliant),
                        not_assessable: count(Status::NotAssessable),
                        rules: match i.kind {
                            Kind::Detailed => a.rules.clone(),
                            Kind::Executive => Vec::new(),
                        },
                    }
                })
                .collect(),
        },
        ComplianceInput::NotAssessed(reason) => ComplianceSection {
            assessed: false,
            reason: Some(reason.clone()),
            regulations: Vec::new(),
        },
    };

    // Every day of the period, those without calls too (a gap is a figure).
    let (first_day, last_day) = (i.from_ms / 86_400_000, i.to_ms / 86_400_000);
    let daily = (first_day..=last_day)
        .map(|d| {
            let x = t.days.get(&d).copied().unwrap_or_default();
            Day {
                date: date(d),
                calls: x.calls,
                failed: x.failed,
                high_risk: x.high_risk,
                blocked_or_refused: x.blocked,
            }
        })
        .collect();

    let mut reasons: Vec<ReasonRow> = t
        .reasons
        .iter()
        .map(|(r, n)| ReasonRow {
            reason: r.clone(),
            calls: *n,
        })
        .collect();
    reasons.sort_by(|a, b| b.calls.cmp(&a.calls).then_with(|| a.reason.cmp(&b.reason)));
    reasons.truncate(TOP_REASONS);

    let mut tools: Vec<ToolRow> = t
        .tools
        .iter()
        .map(|(name, a)| ToolRow {
            tool: name.clone(),
            calls: a.calls,
            users: a.users.len(),
            success_pct: (a.decided > 0)
                .then(|| round(100.0 * a.succeeded as f64 / a.decided as f64, 1)),
            avg_ms: (a.timed > 0).then(|| round(a.time_sum_us as f64 / a.timed as f64 / 1000.0, 2)),
            p95_ms: a.times.quantile_us(0.95).map(|us| round(us / 1000.0, 2)),
            failed: a.failed,
            blocked_or_refused: a.blocked,
            risk: a.risk.clone(),
        })
        .collect();
    tools.sort_by(|a, b| b.calls.cmp(&a.calls).then_with(|| a.tool.cmp(&b.tool)));
    if i.kind == Kind::Executive {
        tools.truncate(10);
    }

    let users = (i.kind == Kind::Detailed).then(|| {
        let findings_of = |u: &str| match &i.findings {
            FindingsInput::Found(list) => list
                .iter()
                .filter(|f| crate::analytics::behaviour::concerns(f, u))
                .count(),
            FindingsInput::NotAssessed(_) => 0,
        };
        let mut v: Vec<UserRow> = t
            .users
            .iter()
            .map(|(u, a)| UserRow {
                user: u.clone(),
                calls: a.calls,
                sessions: a.sessions.len(),
                tools: a.tools.len(),
                failed: a.failed,
                high_risk: a.high_risk,
                blocked_or_refused: a.blocked,
                findings: findings_of(u),
                first: ms_time::text(a.first_ms),
                last: ms_time::text(a.last_ms),
            })
            .collect();
        v.sort_by(|a, b| b.calls.cmp(&a.calls).then_with(|| a.user.cmp(&b.user)));
        v
    });

    Report {
        kind: i.kind,
        title: match i.kind {
            Kind::Executive => "Executive summary",
            Kind::Detailed => "Detailed audit report",
        },
        generated_at: ms_time::text(i.now_ms),
        period: Period::new(i.from_ms, i.to_ms),
        previous_period: Period::new(i.previous_from_ms, i.from_ms.saturating_sub(1)),
        store: i.store,
        events_read: i.events_read,
        trends: trends(&totals, &previous_totals),
        totals,
        previous_totals,
        daily,
        compliance,
        findings,
        recommendations,
        risk: RiskSection {
            distribution: t.risk.clone(),
            top_reasons: reasons,
            newest: (i.kind == Kind::Detailed)
                .then(|| t.newest_high_risk.iter().rev().cloned().collect()),
        },
        tools,
        users,
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixture::{self, EVIL_USER};
    use super::*;

    #[test]
    fn totals_and_trends_count_the_calls() {
        let r = fixture::report(Kind::Executive, true);
        let t = &r.totals;
        assert_eq!((t.calls, t.users, t.tools, t.sessions), (12, 2, 2, 2));
        assert_eq!((t.high_risk, t.blocked_or_refused, t.failed), (2, 1, 2));
        assert_eq!((t.succeeded, t.unfinished), (10, 0));
        let calls = &r.trends[0];
        assert_eq!(
            (calls.metric, calls.previous, calls.current),
            ("calls", 4, 12)
        );
        assert_eq!(
            (calls.change, calls.change_pct, calls.direction),
            (8, Some(200.0), "up")
        );
        let high = r.trends.iter().find(|t| t.metric == "high_risk").unwrap();
        assert_eq!(
            (high.previous, high.change_pct, high.direction),
            (0, None, "up")
        );
        assert_eq!(r.daily.len(), 2);
        assert_eq!((r.daily[0].calls, r.daily[1].calls), (10, 2));
        assert_eq!(r.daily[0].date, "2026-10-05");
        assert_eq!(r.previous_period.since, "2026-10-03T00:00:00.000Z");
        let echo = &r.tools[0];
        assert_eq!(
            (echo.tool.as_str(), echo.calls, echo.users),
            ("echo", 10, 1)
        );
        // 9 of 10 ended calls succeeded; each took 2 ms.
        assert_eq!(echo.success_pct, Some(90.0));
        assert_eq!(echo.avg_ms, Some(2.0));
        assert!((echo.p95_ms.unwrap() - 2.0).abs() < 0.09);
        assert!(r.users.is_none() && r.risk.newest.is_none());
    }

    #[test]
    fn findings_are_listed_most_severe_first_with_ids() {
        let r = fixture::report(Kind::Detailed, true);
        let list = &r.findings.list;
        let order: Vec<(&str, &str, &str)> = list
            .iter()
            .map(|f| (f.id.as_str(), f.severity.as_str(), f.kind.as_str()))
            .collect();
        assert_eq!(
            order,
            vec![
                ("F1", "high", "off_hours"),
                ("F2", "medium", "burst"),
                ("F3", "low", "burst")
            ]
        );
        assert_eq!(list[1].evidence.len(), 15);
        assert_eq!(list[0].subject, EVIL_USER);
        let s = &r.findings.by_severity;
        assert_eq!((s.high, s.medium, s.low, r.findings.total), (1, 1, 1, 3));
        let users = r.users.as_ref().unwrap();
        let alice = users.iter().find(|u| u.user == "alice").unwrap();
        assert_eq!((alice.calls, alice.findings, alice.high_risk), (10, 2, 2));
        assert_eq!(r.risk.newest.as_ref().unwrap().len(), 3);
        assert_eq!(r.risk.top_reasons[0].calls, 2);
    }

    #[test]
    fn every_recommendation_names_its_cause() {
        let r = fixture::report(Kind::Executive, true);
        let ids: Vec<&str> = r.findings.list.iter().map(|f| f.id.as_str()).collect();
        // One for the non-compliant rule, one per kind of finding.
        assert_eq!(r.recommendations.len(), 3, "{:?}", r.recommendations);
        for c in &r.recommendations {
            assert!(!c.causes.is_empty(), "{c:?}");
            match c.cause_kind {
                "finding" => assert!(c.causes.iter().all(|x| ids.contains(&x.as_str())), "{c:?}"),
                "rule" => assert_eq!(c.causes, vec!["pci_dss.10.2.1.blocked".to_string()]),
                other => panic!("{other}"),
            }
        }
        let burst = r
            .recommendations
            .iter()
            .find(|c| c.text.contains("burst"))
            .unwrap();
        assert_eq!(burst.causes, vec!["F2", "F3"]);
        assert_eq!(burst.priority, "medium");
        // No finding and no failed rule: no recommendation.
        let (current, previous) = fixture::tallies();
        let quiet = build(Inputs {
            kind: Kind::Executive,
            from_ms: fixture::T0,
            to_ms: fixture::T0 + 2 * fixture::DAY - 1,
            previous_from_ms: fixture::T0 - 2 * fixture::DAY,
            now_ms: fixture::T0,
            store: String::new(),
            events_read: 0,
            current,
            previous,
            findings: FindingsInput::Found(Vec::new()),
            compliance: ComplianceInput::NotAssessed("x".into()),
        });
        assert!(quiet.recommendations.is_empty());
    }

    #[test]
    fn an_executive_report_cites_only_the_findings_it_lists() {
        // Found by a fresh pass: the top findings were F1–F10, and a recommendation cited
        // F11–F35, which the reader could not look up.
        let many: Vec<Finding> = (0..14).flat_map(|_| fixture::findings()).collect();
        for (kind, listed) in [(Kind::Executive, TOP_FINDINGS), (Kind::Detailed, 42)] {
            let (current, previous) = fixture::tallies();
            let r = build(Inputs {
                kind,
                from_ms: fixture::T0,
                to_ms: fixture::T0 + 2 * fixture::DAY - 1,
                previous_from_ms: fixture::T0 - 2 * fixture::DAY,
                now_ms: fixture::T0 + 3 * fixture::DAY,
                store: String::new(),
                events_read: 0,
                current,
                previous,
                findings: FindingsInput::Found(many.clone()),
                compliance: ComplianceInput::NotAssessed("x".into()),
            });
            assert_eq!(r.findings.list.len(), listed);
            let ids: Vec<&str> = r.findings.list.iter().map(|f| f.id.as_str()).collect();
            let mut cited = 0;
            for c in &r.recommendations {
                assert!(c.causes.iter().all(|x| ids.contains(&x.as_str())), "{c:?}");
                cited += c.causes.len() + c.unlisted_causes;
            }
            assert_eq!(cited, 42, "every finding is counted once");
            let md = crate::report::render::render(&r, crate::report::render::Format::Md).unwrap();
            let unlisted: usize = r.recommendations.iter().map(|c| c.unlisted_causes).sum();
            assert_eq!(unlisted, 42 - listed);
            assert_eq!(
                md.contains("listed in the detailed report"),
                unlisted > 0,
                "{md}"
            );
            assert!(!md.contains("finding  "), "{md}");
            for c in r.recommendations.iter().filter(|c| c.causes.is_empty()) {
                assert!(
                    md.contains(&format!(
                        "(because of {} finding(s) listed in the detailed report)",
                        c.unlisted_causes
                    )),
                    "{md}"
                );
            }
        }
    }

    #[test]
    fn compliance_scores_come_from_the_assessments_and_rules_only_in_detail() {
        let r = fixture::report(Kind::Executive, true);
        let pci = &r.compliance.regulations[0];
        assert_eq!(pci.name, "PCI DSS");
        // 2 compliant of 3 assessable.
        assert_eq!(pci.score, Some(66.7));
        assert_eq!(
            (pci.compliant, pci.non_compliant, pci.not_assessable),
            (2, 1, 1)
        );
        assert!(pci.rules.is_empty());
        assert_eq!(r.compliance.regulations[1].score, None);
        let d = fixture::report(Kind::Detailed, true);
        assert_eq!(d.compliance.regulations[0].rules.len(), 4);
        let n = fixture::report(Kind::Executive, false);
        assert!(!n.compliance.assessed && n.compliance.regulations.is_empty());
        assert_eq!(n.compliance.reason.as_deref(), Some("not in this build"));
    }
}
