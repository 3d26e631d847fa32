//! Reports over the trail (issue 10 item 5): an executive summary (totals, high-risk and
//! blocked calls, compliance score per regulation, top findings, trends against the
//! previous period, recommendations that each name the finding or rule behind them) and a
//! detailed report (every finding with its evidence, user activity, tool usage, risk
//! analysis, compliance rule by rule), as JSON ([`model::Report`], the model), Markdown or
//! one self-contained HTML file ([`render`]).
//!
//! # What is read, and what is held
//!
//! [`gather`] reads the store once, in one pass over the journals, from the start of the
//! previous period (for the trends) or of the detectors' history (`[analytics]
//! baseline_days` before the period), whichever is earlier, to the period's end
//! ([`read::each_call`]; calls come in no particular order), surveying the period's events
//! for the compliance assessment in the same pass ([`read::each_call_surveying`]: one
//! survey per reading thread, bounded by the calls in flight). The figures are counted as the
//! calls go by ([`tally::Tally`]: bounded by users, tools, sessions and days, not by calls,
//! and the same whatever the order). The anomaly detectors are batch over the calls of the period and its
//! history ([`anomalies::detect_held`]), so those calls are held, as 56-byte rows
//! ([`anomalies::Held`]), up to [`DETECTION_LIMIT_CALLS`]:
//! past that, the report says the findings were not assessed and why, instead of running out
//! of memory on a large trail (issue 10 item 7: ≤ 500 MB).

pub mod model;
pub mod render;
pub mod svg;
pub mod tally;

use std::path::Path;

use crate::analytics::{Call, Context, anomalies, compliance, read};
use model::{ComplianceInput, FindingsInput, Inputs, Kind, Report};
use tally::Tally;

/// Calls the anomaly detectors are given at most (the period and its history), held as
/// [`anomalies::Held`] rows (56 bytes each, texts shared): a 30-day report over the 10 M-event
/// bench store holds 5 M and peaked at 476 MB in all with the chain walk (BENCHMARKS.md);
/// each million more costs about 90 MB (the rows and the detectors' groupings of them).
pub const DETECTION_LIMIT_CALLS: usize = 5_000_000;

/// What [`gather`] needs besides the store.
#[derive(Debug)]
pub struct Request<'a> {
    /// The compliance assessment to make over the period (every regulation), from the same
    /// pass over the store as the calls; `None`: not assessed.
    pub assess: Option<&'a compliance::ComplianceInput<'a>>,
    /// Which report.
    pub kind: Kind,
    /// The period, milliseconds since the epoch, inclusive.
    pub from_ms: u64,
    /// Its end.
    pub to_ms: u64,
    /// Now, for the header.
    pub now_ms: u64,
    /// History the detectors read before the period, in days (`[analytics] baseline_days`).
    pub baseline_days: u64,
    /// What the operator knows (`[analytics]`).
    pub context: &'a Context,
    /// Why there is no compliance assessment, when `assess` is `None`.
    pub no_compliance: &'a str,
    /// The most calls to hold for the detectors ([`DETECTION_LIMIT_CALLS`]).
    pub detection_limit: usize,
}

/// Reads the store at `root` and makes the report; what reading met is logged by the
/// caller from the returned [`read::ReadReport`].
pub fn gather(
    root: &Path,
    req: Request<'_>,
) -> Result<(Report, read::ReadReport), compliance::ComplianceError> {
    const DAY_MS: u64 = 86_400_000;
    let len = req.to_ms.saturating_sub(req.from_ms) + 1;
    let prev_from = req.from_ms.saturating_sub(len);
    let history_from = req
        .from_ms
        .saturating_sub(req.baseline_days.saturating_mul(DAY_MS));
    let start = prev_from.min(history_from);
    let time = |ms: u64| std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);

    let mut current = Tally::default();
    let mut previous = Tally::default();
    let mut held: Option<anomalies::Held> = Some(anomalies::Held::default());
    let mut for_detection = 0usize;
    let window = req.assess.map(compliance::Window::of).transpose()?;
    let mut each = |c: Call| {
        if c.at_ms >= req.from_ms {
            current.add(&c);
        } else if c.at_ms >= prev_from {
            previous.add(&c);
        }
        if c.at_ms >= history_from {
            for_detection += 1;
            if for_detection > req.detection_limit {
                held = None;
            } else if let Some(v) = held.as_mut() {
                v.push(&c);
            }
        }
    };
    let (report, compliance) = match (req.assess, &window) {
        (Some(input), Some(window)) => {
            let ((surveys, read), chain) = compliance::with_chain(input, |walk| {
                let (surveys, mut read) = read::each_call_surveying(
                    root,
                    time(start),
                    time(req.to_ms),
                    window,
                    walk,
                    &mut each,
                );
                // A failed read fails the report (below): no walk is made again for it.
                let chains = match read.as_mut() {
                    Ok(r) => std::mem::take(&mut r.chains),
                    Err(_) => Vec::new(),
                };
                ((surveys, read), Some(chains))
            })?;
            let report = read?;
            let facts = compliance::facts_of(input, surveys, Ok(&report.damaged), chain)?;
            let assessments = compliance::judge_all(input, &facts, &compliance::Regulation::ALL);
            (report, ComplianceInput::Assessed(assessments))
        }
        _ => (
            read::each_call(root, time(start), time(req.to_ms), &mut each)?,
            ComplianceInput::NotAssessed(req.no_compliance.to_string()),
        ),
    };
    let findings = match held {
        Some(calls) => FindingsInput::Found(
            anomalies::detect_held(calls, req.context)
                .into_iter()
                .filter(|f| f.to_ms >= req.from_ms && f.from_ms <= req.to_ms)
                .collect(),
        ),
        None => FindingsInput::NotAssessed(format!(
            "the period and its {} days of history hold {for_detection} calls, more than the {} the anomaly detectors hold in memory; run `mcp-audit-proxy anomalies` over shorter windows (e.g. --since 7d) for the findings",
            req.baseline_days, req.detection_limit
        )),
    };
    let built = model::build(Inputs {
        kind: req.kind,
        from_ms: req.from_ms,
        to_ms: req.to_ms,
        previous_from_ms: prev_from,
        now_ms: req.now_ms,
        store: root.display().to_string(),
        events_read: report.events as u64,
        current,
        previous,
        findings,
        compliance,
    });
    Ok((built, report))
}

/// A small known report for the unit tests of the model and the renderers.
#[cfg(test)]
pub(crate) mod fixture {
    use crate::analytics::anomalies::Finding;
    use crate::analytics::compliance::{Assessment, Evidence, Regulation, RuleOutcome, Status};
    use crate::analytics::{Call, End};
    use crate::audit::{EventId, Outcome, RiskLevel};

    use super::model::{ComplianceInput, FindingsInput, Inputs, Kind, Report, build};
    use super::tally::Tally;

    /// 2026-10-05T00:00:00Z.
    pub const T0: u64 = 1_791_158_400_000;
    pub const DAY: u64 = 86_400_000;
    pub const EVIL_TOOL: &str = "<script>alert('tool')</script>";
    pub const EVIL_USER: &str = "mallory\u{202e}<img src=x onerror=alert(1)>";

    pub fn call(
        n: u64,
        at_ms: u64,
        user: &str,
        tool: &str,
        risk: RiskLevel,
        result: Outcome,
    ) -> Call {
        Call {
            id: EventId(ulid::Ulid::from_parts(at_ms, u128::from(n))),
            at_ms,
            user: user.into(),
            tool: tool.into(),
            session: format!("s-{user}-{}", at_ms / DAY).into(),
            ip: None,
            client: None,
            arguments: Box::default(),
            tags: Vec::new(),
            roles: Vec::new(),
            risk,
            risk_reasons: if risk >= RiskLevel::High {
                vec!["writes outside the workspace".into()]
            } else {
                Vec::new()
            },
            end: Some(End {
                id: EventId(ulid::Ulid::from_parts(at_ms + 5, u128::from(n))),
                failed: !matches!(result, Outcome::Success),
                result,
                risk,
                execution_us: Some(2000),
                output_bytes: None,
                regulated: false,
            }),
        }
    }

    /// The period: two days from T0. The previous period: 4 calls. This one: 10 calls by
    /// alice (echo; 2 high-risk, 1 blocked), 2 by the evil user on the evil tool (1 error).
    pub fn tallies() -> (Tally, Tally) {
        let mut previous = Tally::default();
        for i in 0..4 {
            previous.add(&call(
                i,
                T0 - DAY + i * 1000,
                "alice",
                "echo",
                RiskLevel::Low,
                Outcome::Success,
            ));
        }
        let mut current = Tally::default();
        for i in 0..10 {
            let (risk, result) = match i {
                0 | 1 => (RiskLevel::High, Outcome::Success),
                2 => (RiskLevel::Low, Outcome::Blocked),
                _ => (RiskLevel::Low, Outcome::Success),
            };
            current.add(&call(
                100 + i,
                T0 + i * 60_000,
                "alice",
                "echo",
                risk,
                result,
            ));
        }
        current.add(&call(
            200,
            T0 + DAY + 1000,
            EVIL_USER,
            EVIL_TOOL,
            RiskLevel::Medium,
            Outcome::Success,
        ));
        current.add(&call(
            201,
            T0 + DAY + 2000,
            EVIL_USER,
            EVIL_TOOL,
            RiskLevel::Medium,
            Outcome::Error,
        ));
        (current, previous)
    }

    pub fn findings() -> Vec<Finding> {
        let f = |kind: &str, severity: &str, subject: serde_json::Value, n: u64| -> Finding {
            serde_json::from_value(serde_json::json!({
                "family": "temporal", "kind": kind, "severity": severity, "subject": subject,
                "from": "2026-10-05T00:00:00Z", "to": "2026-10-05T00:10:00Z",
                "evidence": (0..n).map(|i| EventId(ulid::Ulid::from_parts(T0 + i, 7)).to_string()).collect::<Vec<_>>(),
                "explanation": format!("{kind} of {subject}")
            }))
            .unwrap()
        };
        vec![
            f("burst", "low", serde_json::json!({"user": "alice"}), 12),
            f(
                "off_hours",
                "high",
                serde_json::json!({"user": EVIL_USER}),
                3,
            ),
            f("burst", "medium", serde_json::json!({"user": "alice"}), 15),
        ]
    }

    pub fn rule(id: &str, status: Status) -> RuleOutcome {
        RuleOutcome {
            id: id.into(),
            title: format!("rule {id}"),
            clause: "PCI DSS v4.0 10.2.2".into(),
            status,
            explanation: format!("{id} explained"),
            evidence: Evidence {
                counts: [("tool_access".to_string(), 12u64)].into(),
                event_ids: vec!["01JA0000000000000000000000".into()],
                config_keys: vec!["audit.durability = \"sync\"".into()],
            },
        }
    }

    pub fn assessments() -> Vec<Assessment> {
        let pci = vec![
            rule("pci_dss.10.2.2.fields", Status::Compliant),
            rule("pci_dss.10.2.1.blocked", Status::NonCompliant),
            rule("pci_dss.10.5.1.retention", Status::NotAssessable),
            rule("pci_dss.10.3.chain", Status::Compliant),
        ];
        let gdpr = vec![rule("gdpr.art30.records", Status::NotAssessable)];
        vec![
            Assessment {
                regulation: Regulation::PciDss,
                since: "2026-10-05T00:00:00Z".into(),
                until: "2026-10-06T23:59:59Z".into(),
                score: Assessment::score_of(&pci),
                rules: pci,
                read_error: None,
            },
            Assessment {
                regulation: Regulation::Gdpr,
                since: "2026-10-05T00:00:00Z".into(),
                until: "2026-10-06T23:59:59Z".into(),
                score: Assessment::score_of(&gdpr),
                rules: gdpr,
                read_error: None,
            },
        ]
    }

    pub fn report(kind: Kind, assessed: bool) -> Report {
        let (current, previous) = tallies();
        build(Inputs {
            kind,
            from_ms: T0,
            to_ms: T0 + 2 * DAY - 1,
            previous_from_ms: T0 - 2 * DAY,
            now_ms: T0 + 3 * DAY,
            store: "/var/lib/audit".into(),
            events_read: 32,
            current,
            previous,
            findings: FindingsInput::Found(findings()),
            compliance: if assessed {
                ComplianceInput::Assessed(assessments())
            } else {
                ComplianceInput::NotAssessed("not in this build".into())
            },
        })
    }
}
