//! Compliance checks: rule by rule, what the trail and the configuration show about one
//! regulation over a time window (issue 10 item 4).
//!
//! Each rule is a real check on the trail or the configuration, and ends in one of three
//! states: `compliant`, `non_compliant`, or `not_assessable` when the trail cannot show it
//! either way (a rule is never passed for want of evidence). Each outcome carries its
//! evidence: counts, event ids and the configuration keys it read, so that an auditor can
//! check the finding again by hand.
//!
//! The shapes here are shared by `mcp-audit-proxy compliance` and the reports
//! (`mcp-audit-proxy report`), and are the JSON they print (`--json`, `--format json`).
//!
//! # How a window is assessed
//!
//! [`assess_all`] reads the window once ([`survey`]: one pass over the journals on a few
//! threads, [`read::window`], memory bounded by the calls in flight and a few counters),
//! walks the journals' hash chains on the way ([`with_chain`]: the same scan reads every
//! segment of the store then, and checks each record's chain as [`crate::store::verify`]
//! does, from the members it decodes anyway; again on its own only when an error stopped
//! the scan, such as a record that is no event), and then judges every rule of each regulation
//! asked from those facts and the configuration ([`rules`]: pure functions, tested on
//! made-up facts). [`assess`] is the same for one regulation.

pub mod read;
#[cfg(test)]
mod rule_tests;
pub mod rules;
pub mod survey;
#[cfg(test)]
mod survey_before;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::store::StoreError;
use crate::store::journals::JournalId;
use crate::store::scan;
use crate::store::verify::JournalReport;
pub use rules::Settings;
pub use survey::{Facts, Sample, Survey};

/// A regulation the checks know, by its spelling in compliance tags and on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Regulation {
    /// The EU General Data Protection Regulation (Regulation (EU) 2016/679).
    Gdpr,
    /// The US HIPAA Security Rule (45 CFR Part 164, Subpart C).
    Hipaa,
    /// The Payment Card Industry Data Security Standard, v4.0.
    PciDss,
}

impl Regulation {
    /// Every regulation, in the order reports list them.
    pub const ALL: [Regulation; 3] = [Regulation::Gdpr, Regulation::Hipaa, Regulation::PciDss];

    /// The spelling of compliance tags and of `--regulation`: `gdpr`, `hipaa`, `pci_dss`.
    pub fn as_str(self) -> &'static str {
        match self {
            Regulation::Gdpr => "gdpr",
            Regulation::Hipaa => "hipaa",
            Regulation::PciDss => "pci_dss",
        }
    }

    /// Reads `gdpr`, `hipaa`, `pci_dss` (also `pci-dss`, any case); `None` for anything else.
    pub fn parse(text: &str) -> Option<Regulation> {
        let wanted = text.trim().replace('-', "_").to_ascii_lowercase();
        Regulation::ALL.into_iter().find(|r| r.as_str() == wanted)
    }
}

/// The outcome of one rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The trail and the configuration show the requirement met over the window.
    Compliant,
    /// They show it not met; the evidence says where.
    NonCompliant,
    /// Neither can be shown from the trail and the configuration; the explanation says why.
    NotAssessable,
}

/// What a rule's outcome rests on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// Named counts, e.g. `{"tool_access": 1200, "without_end": 3}`.
    pub counts: BTreeMap<String, u64>,
    /// Event ids that show the finding (the offending events for a failed rule, at most a
    /// few dozen; `counts` has the totals).
    pub event_ids: Vec<String>,
    /// The configuration keys read, as `section.key = value` (e.g. `audit.durability = "sync"`).
    pub config_keys: Vec<String>,
}

/// One rule's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleOutcome {
    /// A stable id: the regulation and the rule, e.g. `pci_dss.10.2.2.fields`.
    pub id: String,
    /// What the rule requires, in a line.
    pub title: String,
    /// The clause it comes from, e.g. `PCI DSS v4.0 10.2.2`, `45 CFR 164.312(b)`,
    /// `GDPR Art. 30`.
    pub clause: String,
    /// The outcome.
    pub status: Status,
    /// Why: what was found, in a sentence (for `not_assessable`, what the trail lacks).
    pub explanation: String,
    /// What the outcome rests on.
    pub evidence: Evidence,
}

/// One regulation's checks over one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assessment {
    /// The regulation.
    pub regulation: Regulation,
    /// The window's start, RFC 3339 UTC.
    pub since: String,
    /// The window's end, RFC 3339 UTC.
    pub until: String,
    /// Compliant rules as a share of the assessable ones, 0–100; `None` when no rule could
    /// be assessed, or when the window holds no events (what passes then rests on the
    /// configuration and the chain walk alone, no evidence of the window).
    pub score: Option<f64>,
    /// Every rule, in the regulation's clause order.
    pub rules: Vec<RuleOutcome>,
    /// Why the window's events could not all be read, if they could not: the rules resting
    /// on them are then `not_assessable`, and `compliance` exits 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_error: Option<String>,
}

impl Assessment {
    /// The score of `rules`: compliant over compliant + non-compliant, as a percentage.
    pub fn score_of(rules: &[RuleOutcome]) -> Option<f64> {
        let passed = rules
            .iter()
            .filter(|r| r.status == Status::Compliant)
            .count();
        let failed = rules
            .iter()
            .filter(|r| r.status == Status::NonCompliant)
            .count();
        (passed + failed > 0).then(|| 100.0 * passed as f64 / (passed + failed) as f64)
    }
}

/// What a compliance assessment reads: the store, the configuration and the window.
#[derive(Debug, Clone, Copy)]
pub struct ComplianceInput<'a> {
    /// The store folder (`audit.store_dir`).
    pub root: &'a Path,
    /// The configuration in force: durability, keys, retention, policy, call timeout.
    pub config: &'a Config,
    /// The window's start.
    pub since: SystemTime,
    /// The window's end.
    pub until: SystemTime,
    /// The time of the assessment: calls younger than their timeout at `now` are in flight,
    /// and retention periods are counted back from it.
    pub now: SystemTime,
    /// Walk the journals' hash chains (the whole store; the cost of `verify --no-index`).
    /// Without it the chain rules say `not_assessable`.
    pub verify_chain: bool,
}

/// Why an assessment could not be made (the rules' own findings are never errors).
#[derive(Debug, thiserror::Error)]
pub enum ComplianceError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// There is no store to read.
    #[error("no audit store at {}\n  hint: check audit.store_dir in the config; the store is created when the proxy first runs (or by `import`)", path.display())]
    NoStore {
        /// The configured store folder.
        path: PathBuf,
    },
    /// The window is empty.
    #[error("--since is after --until\n  hint: give --since earlier than --until")]
    EmptyWindow,
    /// The window starts or ends before 1970-01-01T00:00:00Z: the trail has no events
    /// there, and RFC 3339 output (and the store's ULID event ids) cannot name such a time.
    #[error(
        "the window {what} before 1970-01-01T00:00:00Z\n  hint: give --since and --until from 1970 on (without --since the window is the 30 days before --until)"
    )]
    BeforeEpoch {
        /// `starts` or `ends`.
        what: &'static str,
    },
}

/// A window checked and ready to read for its facts: what [`Survey`]s of it read, and to
/// when (`until` plus the time the window's last calls' ends may take, at most `now`).
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// The window's start.
    pub since: SystemTime,
    /// The window's end.
    pub until: SystemTime,
    /// The end of what is read: ends of the window's last calls may come up to their
    /// timeout (and [`survey::END_GRACE_MS`]) after `until`.
    pub read_to: SystemTime,
    /// `limits.call_timeout_ms` (`None`: 0, no timeout).
    pub call_timeout: Option<Duration>,
}

impl Window {
    /// Checks `input`'s window and store.
    pub fn of(input: &ComplianceInput<'_>) -> Result<Window, ComplianceError> {
        if input.until < std::time::UNIX_EPOCH {
            return Err(ComplianceError::BeforeEpoch { what: "ends" });
        }
        if input.since < std::time::UNIX_EPOCH {
            return Err(ComplianceError::BeforeEpoch { what: "starts" });
        }
        if input.since > input.until {
            return Err(ComplianceError::EmptyWindow);
        }
        let root = input.root;
        if !crate::store::marker::check(root, crate::store::Access::Read)?
            || !crate::store::StorePaths::new(root).journal().is_dir()
        {
            return Err(ComplianceError::NoStore {
                path: root.to_path_buf(),
            });
        }
        let call_timeout = input.config.limits.call_timeout;
        let reach = call_timeout.map_or(Duration::ZERO, |t| {
            t + Duration::from_millis(survey::END_GRACE_MS + 1)
        });
        Ok(Window {
            since: input.since,
            until: input.until,
            read_to: (input.until + reach).min(input.now.max(input.until)),
            call_timeout,
        })
    }

    /// The events a survey reads: `[since, read_to]`.
    pub fn read_range(&self) -> (SystemTime, SystemTime) {
        (self.since, self.read_to)
    }

    /// A survey of the window, for one reading thread.
    pub fn survey(&self) -> Survey {
        Survey::new(self.since, self.until, self.call_timeout, self.read_to)
    }
}

/// The facts of `input`'s window: one pass over its events (and what an end may take after
/// `until`), the expired events of each regulation's tag, and the chain walk when asked.
pub fn facts(input: &ComplianceInput<'_>) -> Result<Facts, ComplianceError> {
    facts_on(input, crate::store::scan::default_workers())
}

/// [`facts`], reading the window on at most `workers` threads.
pub(crate) fn facts_on(
    input: &ComplianceInput<'_>,
    workers: usize,
) -> Result<Facts, ComplianceError> {
    let window = Window::of(input)?;
    let (scanned, chain) = with_chain(input, |walk| {
        let mut scanned = read::window(&window, input.root, workers, walk);
        let chains = scanned
            .result
            .as_mut()
            .ok()
            .map(|r| std::mem::take(&mut r.chains));
        (scanned, chains)
    })?;
    let read = match &scanned.result {
        Ok(report) => {
            tracing::debug!(
                events = report.surveyed,
                segments = report.segments_read,
                skipped = report.segments_skipped,
                "read the window"
            );
            Ok(report.damaged.as_slice())
        }
        Err(e) => Err(e),
    };
    Ok(facts_of(input, scanned.sinks, read, chain)?)
}

/// Runs `read` (the window's reading), handing it the chain walk to make on the way when
/// `input` asks for one ([`scan::WalkChains`]: the scan reads every journal whole then, and
/// checks each record's chain members as it decodes it). `read` gives back its output and
/// the walk's journal reports, or `None` when an error stopped its scan: the walk is then
/// made again on its own ([`read::chain`]), since what stopped the scan (say a record that
/// is not an event: rewritten) is what the walk is there to find.
pub fn with_chain<R>(
    input: &ComplianceInput<'_>,
    read: impl FnOnce(Option<scan::WalkChains<'_>>) -> (R, Option<Vec<(JournalId, JournalReport)>>),
) -> Result<(R, Option<survey::ChainFacts>), StoreError> {
    if !input.verify_chain {
        // What the store already knows it lost costs nothing like a walk to read: a store
        // known to have lost records is no pass for want of a walk (helper-116 M3).
        let lost = crate::store::lost_records(input.root)?;
        let out = read(None).0;
        if lost.is_empty() {
            return Ok((out, None));
        }
        let mut facts = survey::ChainFacts::default();
        read::add_store_findings(&mut facts, &lost);
        return Ok((out, Some(facts)));
    }
    let key = input.config.audit.signing_public.clone();
    // Before the walk, as `verify` takes them: an `erase` during it records first.
    let keys_before = crate::store::personal::subjects(input.root);
    let (out, chains) = read(Some(scan::WalkChains { key: key.as_ref() }));
    let chain = match chains {
        Some(chains) => {
            let mut journals: Vec<JournalReport> = chains.into_iter().map(|(_, j)| j).collect();
            let (losses, keys) =
                crate::store::verify::store_findings(input.root, &mut journals, keys_before)?;
            let mut facts = read::chain_facts(&journals);
            read::add_store_findings(&mut facts, losses.iter().chain(&keys.findings));
            facts
        }
        None => read::chain(input.root, key.as_ref())?,
    };
    let chain = survey::ChainFacts {
        write_denied: crate::store::write_denied(input.root),
        ..chain
    };
    Ok((out, Some(chain)))
}

/// The facts of `input`'s window from the surveys that read it (one per reading thread),
/// and what the reading met (the damaged stretches of the segments read, or the error that
/// stopped it); with the expired events of each regulation's tag, and `chain`, the chain
/// walk's facts when it was made ([`with_chain`]). For readers that survey the window in a
/// pass of their own (`report`).
pub fn facts_of(
    input: &ComplianceInput<'_>,
    surveys: Vec<Survey>,
    read: Result<&[crate::store::Damage], &StoreError>,
    chain: Option<survey::ChainFacts>,
) -> Result<Facts, StoreError> {
    let root = input.root;
    // A record that cannot be read (damaged, or not an event) is itself a finding: the chain
    // walk below says what happened to it, and the rules that rest on the window's events
    // do not pass.
    let mut facts = Facts::default();
    match read {
        Ok(damaged) => {
            let mut left = survey::Leftovers::default();
            for part in surveys {
                let (f, l) = part.finish_with_leftovers();
                facts.merge(f);
                left.merge(l);
            }
            survey::reconcile(&mut facts.pairs, &left);
            for d in damaged {
                tracing::error!(damage = %d, "audit journal segment damaged");
            }
            if let Some(first) = damaged.first() {
                facts.read_error = Some(damaged_cause(first, damaged.len()));
            }
        }
        Err(e) => {
            let why = unread_cause(e);
            tracing::error!(error = %why, "the window's events could not all be read");
            for part in surveys {
                facts.merge(part.finish_partial(why.clone()));
            }
        }
    }
    match read::expired(
        root,
        &input.config.retention.periods,
        &survey::REGULATION_TAGS,
        input.now,
        crate::store::scan::default_workers(),
    ) {
        Ok(expired) => {
            for d in &expired.damaged {
                tracing::error!(damage = %d, "audit journal segment damaged");
            }
            facts.expired = expired.tags.into_iter().collect();
        }
        Err(e) => {
            let why = unread_cause(&e);
            tracing::error!(error = %why, "the expired events could not all be read");
            facts.read_error.get_or_insert(why);
        }
    }
    facts.chain = chain;
    Ok(facts)
}

/// What damaged journal bytes met while reading the window say in a compliance context:
/// the records there are not in the facts, and bytes that changed after they were written
/// may be tampering.
fn damaged_cause(first: &crate::store::Damage, count: usize) -> String {
    let more = match count {
        0 | 1 => String::new(),
        n => format!(" (and {} more damaged stretches)", n - 1),
    };
    format!(
        "journal segment {first}{more}: the records there are not in these facts, and bytes that changed after they were written may be tampering; run `mcp-audit-proxy verify` to find which records and whether the hash chain still holds"
    )
}

/// What a failed read of the window says in a compliance context. A record that does not
/// match what was indexed may have been tampered with: the store's own hint (reindex) would
/// paper over that, so this one sends the auditor to `verify` first.
fn unread_cause(e: &StoreError) -> String {
    match e {
        StoreError::BadRecord {
            path,
            offset,
            reason,
        } => format!(
            "journal record at {} offset {offset} is unreadable ({reason}): it changed after it was written, which may be tampering; run `mcp-audit-proxy verify` to find which records and whether the hash chain still holds",
            path.display()
        ),
        other => other.to_string(),
    }
}

/// Judges `regulation`'s rules on `facts` (from [`facts`]) over `[since, until]`.
pub fn judge(
    regulation: Regulation,
    facts: &Facts,
    settings: &Settings,
    since: SystemTime,
    until: SystemTime,
) -> Assessment {
    let mut rules = rules::rules(regulation, facts, settings);
    if let Some(error) = &facts.read_error {
        rules::unread(&mut rules, error);
    }
    // No events: what still passes rests on the configuration and the chain walk alone,
    // which is no score for the window. (None read because reading failed is not "none".)
    let empty = facts.events == 0;
    if empty && facts.read_error.is_none() {
        rules::no_events(&mut rules);
    }
    if !empty && facts.imported.count == facts.events && facts.read_error.is_none() {
        rules::only_imported(&mut rules, facts.imported.count);
    }
    Assessment {
        regulation,
        since: humantime::format_rfc3339_seconds(since).to_string(),
        until: humantime::format_rfc3339_seconds(until).to_string(),
        score: if empty {
            None
        } else {
            Assessment::score_of(&rules)
        },
        rules,
        read_error: facts.read_error.clone(),
    }
}

/// The assessment of each of `regulations` over `input`'s window, from one reading of the
/// store.
pub fn assess_all(
    input: &ComplianceInput<'_>,
    regulations: &[Regulation],
) -> Result<Vec<Assessment>, ComplianceError> {
    let facts = facts(input)?;
    Ok(judge_all(input, &facts, regulations))
}

/// Judges each of `regulations` on `facts` of `input`'s window.
pub fn judge_all(
    input: &ComplianceInput<'_>,
    facts: &Facts,
    regulations: &[Regulation],
) -> Vec<Assessment> {
    let settings = Settings::of(input.config);
    regulations
        .iter()
        .map(|r| judge(*r, facts, &settings, input.since, input.until))
        .collect()
}

/// The assessment of one regulation over `input`'s window.
pub fn assess(
    input: &ComplianceInput<'_>,
    regulation: Regulation,
) -> Result<Assessment, ComplianceError> {
    let facts = facts(input)?;
    Ok(judge(
        regulation,
        &facts,
        &Settings::of(input.config),
        input.since,
        input.until,
    ))
}

impl Assessment {
    /// Whether any rule is `non_compliant` (the command's exit status 1).
    pub fn failed(&self) -> bool {
        self.rules.iter().any(|r| r.status == Status::NonCompliant)
    }

    /// The regulation's name as its text says it: `GDPR`, `HIPAA`, `PCI DSS v4.0`.
    pub fn title(&self) -> &'static str {
        match self.regulation {
            Regulation::Gdpr => "GDPR",
            Regulation::Hipaa => "HIPAA Security Rule",
            Regulation::PciDss => "PCI DSS v4.0",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(status: Status) -> RuleOutcome {
        RuleOutcome {
            id: "x".into(),
            title: String::new(),
            clause: String::new(),
            status,
            explanation: String::new(),
            evidence: Evidence::default(),
        }
    }

    #[test]
    fn the_score_leaves_out_what_cannot_be_assessed() {
        let rules = [
            rule(Status::Compliant),
            rule(Status::NonCompliant),
            rule(Status::NotAssessable),
            rule(Status::Compliant),
        ];
        let score = Assessment::score_of(&rules).unwrap();
        assert!((score - 200.0 / 3.0).abs() < 1e-9, "{score}");
        assert_eq!(Assessment::score_of(&[rule(Status::NotAssessable)]), None);
    }

    #[test]
    fn regulations_read_as_tags_spell_them() {
        for r in Regulation::ALL {
            assert_eq!(Regulation::parse(r.as_str()), Some(r));
        }
        assert_eq!(Regulation::parse("PCI-DSS"), Some(Regulation::PciDss));
        assert_eq!(Regulation::parse("sox"), None);
        assert_eq!(
            serde_json::to_string(&Regulation::PciDss).unwrap(),
            "\"pci_dss\""
        );
    }
}
