//! `compliance --regulation gdpr|hipaa|pci_dss|all` (issue 10 item 4): the rules of
//! [`crate::analytics::compliance`] over a window (default: the last 30 days), as a table or
//! as JSON (one assessment object per line, one line per regulation).
//!
//! Exit status: 0 when no rule is `non_compliant` (rules that are `not_assessable` do not
//! fail, and are shown as such, never as passed), 1 when at least one is, 2 on an error (no
//! store, a store that cannot be read, a bad window).

use std::io::Write;
use std::time::{Duration, SystemTime};

use crate::analytics::compliance::{
    self, Assessment, ComplianceError, ComplianceInput, RuleOutcome, Status,
};
use crate::cli::ComplianceArgs;
use crate::config::Config;

/// The default window: the last 30 days.
const DEFAULT_WINDOW: Duration = Duration::from_secs(30 * 86_400);
/// Event ids shown per rule in the table (`--json` has up to [`compliance::survey::SAMPLE`]
/// per finding).
const SHOWN_IDS: usize = 5;

/// Errors of `compliance`.
#[derive(Debug, thiserror::Error)]
pub enum ComplianceCommandError {
    /// The assessment could not be made.
    #[error(transparent)]
    Assess(#[from] ComplianceError),
    /// `--since` is in the future (an `--until` past now is now).
    #[error(
        "--since {since} is in the future (now is {now}): the trail holds nothing from then\n  hint: give --since in the past"
    )]
    FutureSince {
        /// `--since`, RFC 3339.
        since: String,
        /// Now, RFC 3339.
        now: String,
    },
    /// Writing the output failed.
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
}

/// `compliance`: returns the exit status (0 passed, 1 a rule is non-compliant).
pub fn run(
    args: &ComplianceArgs,
    config: &Config,
    out: &mut impl Write,
) -> Result<i32, ComplianceCommandError> {
    let now = SystemTime::now();
    // An `--until` after now is now, as in the other analytics commands.
    let until = args.window.until.map_or(now, |until| until.min(now));
    // The default start is clamped to 1970 (a window cannot start before it); an `--until`
    // before 1970 is refused by the assessment.
    let since = args.window.since.unwrap_or_else(|| {
        until
            .checked_sub(DEFAULT_WINDOW)
            .filter(|t| *t >= SystemTime::UNIX_EPOCH)
            .unwrap_or(SystemTime::UNIX_EPOCH)
            .min(until)
    });
    if since > now {
        return Err(ComplianceCommandError::FutureSince {
            since: humantime::format_rfc3339_seconds(since).to_string(),
            now: humantime::format_rfc3339_seconds(now).to_string(),
        });
    }
    let input = ComplianceInput {
        root: &config.audit.store_dir,
        config,
        since,
        until,
        now,
        verify_chain: !args.no_verify,
    };
    let assessments = compliance::assess_all(&input, &args.regulation.0)?;
    for a in &assessments {
        if args.window.json {
            serde_json::to_writer(&mut *out, a).map_err(std::io::Error::from)?;
            writeln!(out)?;
        } else {
            write_table(out, a)?;
        }
    }
    out.flush()?;
    // A rule that fails fails (damaged records fail the chain rule); otherwise a window that
    // could not be read is no verdict: status 2, as for any error.
    if assessments.iter().any(Assessment::failed) {
        return Ok(1);
    }
    if let Some(e) = assessments.iter().find_map(|a| a.read_error.as_ref()) {
        let text = format!(
            "mcp-audit-proxy: error: the window's events could not all be read: {e}\n  hint: the rules resting on them are not assessable; fix the cause (permissions of the store and its keys/, damage reported by `verify`) and run compliance again\n"
        );
        crate::telemetry::print_to_stderr(
            String::from_utf8_lossy(&crate::telemetry::printable(text.as_bytes())).into_owned(),
        );
        return Ok(2);
    }
    Ok(0)
}

fn label(s: Status) -> &'static str {
    match s {
        Status::Compliant => "compliant",
        Status::NonCompliant => "NON-COMPLIANT",
        Status::NotAssessable => "not assessable",
    }
}

fn write_rule(out: &mut impl Write, r: &RuleOutcome) -> std::io::Result<()> {
    writeln!(out, "  [{}] {}  ({})", label(r.status), r.title, r.clause)?;
    writeln!(out, "      rule: {}", r.id)?;
    writeln!(out, "      {}", r.explanation)?;
    let e = &r.evidence;
    if !e.counts.is_empty() {
        let counts: Vec<String> = e.counts.iter().map(|(k, v)| format!("{k} {v}")).collect();
        writeln!(out, "      counts: {}", counts.join(", "))?;
    }
    if !e.event_ids.is_empty() {
        let more = e.event_ids.len().saturating_sub(SHOWN_IDS);
        writeln!(
            out,
            "      events: {}{}",
            e.event_ids
                .iter()
                .take(SHOWN_IDS)
                .cloned()
                .collect::<Vec<_>>()
                .join(" "),
            if more > 0 {
                format!(" (+{more} more in --json)")
            } else {
                String::new()
            }
        )?;
    }
    for k in &e.config_keys {
        writeln!(out, "      config: {k}")?;
    }
    Ok(())
}

/// One regulation as text: a heading with the score and the tally, then each rule.
pub fn write_table(out: &mut impl Write, a: &Assessment) -> std::io::Result<()> {
    let n = |s: Status| a.rules.iter().filter(|r| r.status == s).count();
    let (pass, fail, na) = (
        n(Status::Compliant),
        n(Status::NonCompliant),
        n(Status::NotAssessable),
    );
    writeln!(
        out,
        "{} from {} to {}: score {} ({pass} compliant, {fail} non-compliant, {na} not assessable)",
        a.title(),
        a.since,
        a.until,
        a.score.map_or(
            if a.read_error.is_some() {
                "n/a (the window's events could not all be read)".to_string()
            } else if pass > 0 {
                "n/a (no events in the window)".to_string()
            } else {
                "n/a (no rule assessable)".to_string()
            },
            |s| format!("{s:.0}%")
        ),
    )?;
    for r in &a.rules {
        write_rule(out, r)?;
    }
    writeln!(out)
}
