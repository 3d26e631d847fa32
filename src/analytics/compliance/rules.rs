//! The rules of each regulation: pure functions of what the trail showed ([`Facts`]) and what
//! the configuration says ([`Settings`]), so that each can be tested on made-up facts.
//!
//! Clauses, as published:
//! - PCI DSS v4.0 (March 2022): 3.5.1 (PAN unreadable wherever stored), 8.3.2 (authentication
//!   factors unreadable in storage), 10.2.1 (audit logs enabled and active), 10.2.1.1
//!   (individual user access to cardholder data), 10.2.1.4 (invalid logical access attempts),
//!   10.2.2 (details of each auditable event), 10.3.4 (change detection on audit logs),
//!   10.5.1 (12 months of history, 3 months immediately available), 10.7.2 (failures of
//!   critical security controls, audit logging among them, detected and addressed).
//! - HIPAA Security Rule, 45 CFR Part 164: 164.308(a)(5)(ii)(C) (log-in monitoring),
//!   164.312(a)(2)(iv) (encryption and decryption), 164.312(b) (audit controls),
//!   164.312(c)(1) (integrity), 164.312(c)(2) (mechanism to authenticate ePHI),
//!   164.316(b)(2)(i) (six-year retention); and the Privacy Rule's 164.502(b) (minimum
//!   necessary).
//! - GDPR (Regulation (EU) 2016/679): Art. 5(1)(e) (storage limitation), Art. 5(1)(f)
//!   (integrity and confidentiality), Art. 17 (erasure), Art. 30 (records of processing),
//!   Art. 4(5) and 32(1)(a) (pseudonymisation and encryption).

use std::time::Duration;

use super::survey::{Facts, Sample};
use super::{Evidence, Regulation, RuleOutcome, Status};
use crate::config::{Config, Durability, OnStoreFailure};
use crate::policy::classify::Class;
use crate::policy::{Action, StoreMode};
use crate::store::retention::{Keep, Periods};

/// What the rules read from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `audit.durability`.
    pub durability: Durability,
    /// `audit.on_store_failure`.
    pub on_store_failure: OnStoreFailure,
    /// Whether `audit.signing_key_file` is set.
    pub signing_key: bool,
    /// `audit.encrypt_personal_data`.
    pub encrypt_personal_data: bool,
    /// `limits.call_timeout_ms` (`None`: 0, no timeout).
    pub call_timeout: Option<Duration>,
    /// `[retention]` periods.
    pub periods: Periods,
    /// `retention.apply_daily`.
    pub apply_daily: bool,
    /// `risk.enabled`.
    pub risk_enabled: bool,
    /// `risk.shadow`.
    pub risk_shadow: bool,
    /// `risk.store.<class>` for each class, in [`Class::ALL`] order.
    pub store_modes: Vec<(Class, StoreMode)>,
    /// Whether any risk level's action is `block`.
    pub blocks: bool,
}

impl Settings {
    /// The settings of `config`.
    pub fn of(config: &Config) -> Settings {
        let p = &config.policy;
        Settings {
            durability: config.audit.durability,
            on_store_failure: config.audit.on_store_failure,
            signing_key: config.audit.signing_configured,
            encrypt_personal_data: config.audit.encrypt_personal_data,
            call_timeout: config.limits.call_timeout,
            periods: config.retention.periods.clone(),
            apply_daily: config.retention.apply_daily,
            risk_enabled: p.enabled,
            risk_shadow: p.shadow,
            store_modes: Class::ALL.iter().map(|c| (*c, p.store_mode(*c))).collect(),
            blocks: crate::audit::RiskLevel::ALL
                .iter()
                .any(|l| p.action_at(*l) == Action::Block),
        }
    }

    fn durability_key(&self) -> String {
        let d = match self.durability {
            Durability::Sync => "sync",
            Durability::Batched => "batched",
        };
        format!("audit.durability = {d:?}")
    }

    fn on_failure_key(&self) -> String {
        format!(
            "audit.on_store_failure = {:?}",
            self.on_store_failure.as_str()
        )
    }

    fn timeout_key(&self) -> String {
        format!(
            "limits.call_timeout_ms = {}",
            self.call_timeout.map_or(0, |d| d.as_millis())
        )
    }

    fn period(&self, tag: &str) -> Keep {
        self.periods
            .tags
            .get(tag)
            .copied()
            .unwrap_or(self.periods.untagged)
    }

    fn period_key(&self, tag: &str) -> String {
        let own = self.periods.tags.contains_key(tag);
        let k = self.period(tag);
        if own || tag == "untagged" {
            format!("retention.{tag} = \"{k}\"")
        } else {
            format!("retention.{tag} unset: retention.untagged = \"{k}\" applies")
        }
    }
}

const DAY: u64 = 86_400;

/// The rules of `regulation`, in clause order.
pub fn rules(regulation: Regulation, f: &Facts, s: &Settings) -> Vec<RuleOutcome> {
    // PCI DSS 10.5.1 is about the whole audit log history: an event is deleted when the
    // longest period among its tags runs out, so every configured period (a `secrets = "1d"`
    // deletes events of calls carrying credentials) and the untagged one can shorten it.
    let mut every_period: Vec<&str> = vec!["pci_dss"];
    every_period.extend(
        s.periods
            .tags
            .keys()
            .map(String::as_str)
            .filter(|t| *t != "pci_dss"),
    );
    every_period.push("untagged");
    match regulation {
        Regulation::Gdpr => vec![
            gdpr_storage_limitation(f, s),
            chain_rule(
                "gdpr.art5_1_f.integrity",
                "The trail is protected against unauthorised alteration (tamper-evident hash chain)",
                "GDPR Art. 5(1)(f), Art. 32(1)(b)",
                f,
                s,
                false,
            ),
            encryption_rule(
                "gdpr.art17.erasure",
                "Each person's data in the trail can be erased (personal fields sealed under a key per user)",
                "GDPR Art. 17",
                f,
                s,
            ),
            gdpr_records(f),
            masking_rule(
                "gdpr.art32_1_a.pseudonymisation",
                "Personal data in stored arguments and error texts is masked or pseudonymised",
                "GDPR Art. 4(5), Art. 32(1)(a)",
                &[Class::Email, Class::Phone, Class::NationalId, Class::Iban],
                f,
                s,
            ),
        ],
        Regulation::Hipaa => vec![
            refusals_rule(
                "hipaa.164.308_a_5_ii_C.log_in_monitoring",
                "Refused and blocked attempts are recorded with who and why",
                "45 CFR 164.308(a)(5)(ii)(C)",
                f,
                s,
            ),
            encryption_rule(
                "hipaa.164.312_a_2_iv.encryption",
                "Personal fields of stored events (ePHI among them) are encrypted at rest",
                "45 CFR 164.312(a)(2)(iv)",
                f,
                s,
            ),
            audit_active_rule(
                "hipaa.164.312_b.audit_controls",
                "Audit controls record every tool call: each access has its end, nothing is lost, durable before forwarding",
                "45 CFR 164.312(b)",
                f,
                s,
            ),
            chain_rule(
                "hipaa.164.312_c_1.integrity",
                "The trail is protected from improper alteration or destruction (hash chain verifies)",
                "45 CFR 164.312(c)(1)",
                f,
                s,
                false,
            ),
            signing_rule(
                "hipaa.164.312_c_2.authentication",
                "An electronic mechanism corroborates that the trail was not altered (signed checkpoints)",
                "45 CFR 164.312(c)(2)",
                f,
                s,
            ),
            retention_rule(
                "hipaa.164.316_b_2_i.retention",
                "Events tagged hipaa are retained for 6 years (the Security Rule's retention period, applied to the audit trail; events without the tag follow their own periods and are not judged here)",
                "45 CFR 164.316(b)(2)(i)",
                &["hipaa"],
                6 * 365,
                "6 years",
                s,
            ),
            masking_rule(
                "hipaa.164.502_b.minimum_necessary",
                "Health information is not copied into the trail in clear",
                "45 CFR 164.502(b)",
                &[Class::Health],
                f,
                s,
            ),
        ],
        Regulation::PciDss => vec![
            masking_rule(
                "pci_dss.3.5.1.pan_unreadable",
                "Card numbers (PAN) are unreadable wherever the trail stores them",
                "PCI DSS v4.0 3.5.1",
                &[Class::PaymentCard],
                f,
                s,
            ),
            masking_rule(
                "pci_dss.8.3.2.credentials_unreadable",
                "Passwords, keys and tokens are unreadable wherever the trail stores them",
                "PCI DSS v4.0 8.3.2",
                &[Class::Secret],
                f,
                s,
            ),
            audit_active_rule(
                "pci_dss.10.2.1.audit_logs_active",
                "Audit logs are enabled and active: each access has its end, nothing is lost, durable before forwarding",
                "PCI DSS v4.0 10.2.1",
                f,
                s,
            ),
            pci_individual_access(f),
            refusals_rule(
                "pci_dss.10.2.1.4.invalid_access_attempts",
                "Invalid access attempts (refused and blocked calls) are recorded",
                "PCI DSS v4.0 10.2.1.4",
                f,
                s,
            ),
            pci_event_details(f),
            chain_rule(
                "pci_dss.10.3.4.change_detection",
                "Changes to existing log data are detected (hash chain verifies, checkpoints signed)",
                "PCI DSS v4.0 10.3.4",
                f,
                s,
                true,
            ),
            retention_rule(
                "pci_dss.10.5.1.retention",
                "Audit log history is retained for at least 12 months, the last 3 months immediately available (every configured retention period, any of which can delete audit events)",
                "PCI DSS v4.0 10.5.1",
                &every_period,
                365,
                "12 months",
                s,
            ),
            pci_failures(f, s),
        ],
    }
}

/// Rules that rest on the configuration and the chain walk alone, not on the window's events.
const NOT_FROM_THE_WINDOW: [&str; 6] = [
    "gdpr.art5_1_f.integrity",
    "hipaa.164.312_c_1.integrity",
    "hipaa.164.312_c_2.authentication",
    "pci_dss.10.3.4.change_detection",
    "hipaa.164.316_b_2_i.retention",
    "pci_dss.10.5.1.retention",
];

/// When the window could not be read whole (`error`), no rule that rests on its events may
/// pass on the part read: those that passed become `not_assessable` (a rule failed on the
/// part read stays failed: what was read shows it).
pub fn unread(rules: &mut [RuleOutcome], error: &str) {
    for r in rules {
        if r.status == Status::Compliant && !NOT_FROM_THE_WINDOW.contains(&r.id.as_str()) {
            r.status = Status::NotAssessable;
            r.explanation = format!(
                "the window's events could not all be read ({error}); on the part read: {}",
                r.explanation
            );
        }
    }
}

/// When the window holds no events, the trail shows nothing either way about the rules
/// that rest on its events: those that passed (on the configuration alone, or for want of
/// a finding) become `not_assessable`. A failed rule stays failed.
pub fn no_events(rules: &mut [RuleOutcome]) {
    for r in rules {
        if r.status == Status::Compliant && !NOT_FROM_THE_WINDOW.contains(&r.id.as_str()) {
            r.status = Status::NotAssessable;
            r.explanation = format!(
                "the window holds no events, so the trail shows nothing either way; from the configuration alone: {}",
                r.explanation
            );
        }
    }
}

/// Rules that attest how this store's proxies record calls (every access ended, refusals
/// recorded, outages detected): imported events are no evidence of that.
const OWN_RECORDING: [&str; 6] = [
    "gdpr.art30.records",
    "hipaa.164.308_a_5_ii_C.log_in_monitoring",
    "hipaa.164.312_b.audit_controls",
    "pci_dss.10.2.1.audit_logs_active",
    "pci_dss.10.2.1.4.invalid_access_attempts",
    "pci_dss.10.7.2.audit_failures",
];

/// When every event of the window was imported (`imported` of them), nothing in it shows how
/// this store's proxies record calls: the rules that attest that and passed (on the
/// configuration alone, or for want of a finding among events that are not theirs) become
/// `not_assessable` (helper-116 H1: two hand-written lines made them compliant). A failed
/// rule stays failed.
pub fn only_imported(rules: &mut [RuleOutcome], imported: u64) {
    for r in rules {
        if r.status == Status::Compliant && OWN_RECORDING.contains(&r.id.as_str()) {
            r.status = Status::NotAssessable;
            r.explanation = format!(
                "every event of the window ({imported}) was imported from another trail, which shows nothing of how this store's proxies record calls; from the configuration alone: {}",
                r.explanation
            );
        }
    }
}

fn outcome(
    id: &str,
    title: &str,
    clause: &str,
    status: Status,
    explanation: String,
    evidence: Evidence,
) -> RuleOutcome {
    RuleOutcome {
        id: id.into(),
        title: title.into(),
        clause: clause.into(),
        status,
        explanation,
        evidence,
    }
}

fn evidence(counts: &[(&str, u64)], samples: &[&Sample], config_keys: Vec<String>) -> Evidence {
    let mut event_ids = Vec::new();
    for s in samples {
        for id in &s.ids {
            if !event_ids.contains(id) {
                event_ids.push(id.clone());
            }
        }
    }
    Evidence {
        counts: counts.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        event_ids,
        config_keys,
    }
}

/// Every access has its end; no events lost to an outage; durable before forwarding; fail
/// closed.
fn audit_active_rule(id: &str, title: &str, clause: &str, f: &Facts, s: &Settings) -> RuleOutcome {
    let p = &f.pairs;
    let keys = vec![s.durability_key(), s.on_failure_key(), s.timeout_key()];
    let ev = evidence(
        &[
            ("tool_access", p.accesses),
            ("ended", p.ended),
            ("without_end", p.without_end.count),
            ("in_flight", p.in_flight),
            ("open_without_timeout", p.open_without_timeout.count),
            ("ended_by_another_process", p.ended_by_another_process.count),
            ("store_outages", f.outages.events.count),
            ("events_lost", f.outages.events_lost),
            ("imported_events_not_counted", f.imported.count),
        ],
        &[
            &p.without_end,
            &f.outages.failed_open,
            &p.open_without_timeout,
            &p.ended_by_another_process,
        ],
        keys,
    );
    let mut wrong = Vec::new();
    if p.without_end.count > 0 {
        wrong.push(format!(
            "{} of {} tool calls have no end event although their timeout has passed",
            p.without_end.count, p.accesses
        ));
    }
    if f.outages.events_lost > 0 {
        wrong.push(format!(
            "{} events were not recorded during {} audit store outage(s)",
            f.outages.events_lost, f.outages.events.count
        ));
    }
    if s.on_store_failure == OnStoreFailure::Allow {
        wrong.push(
            "audit.on_store_failure = \"allow\": calls go on unaudited while the store fails (set \"block\")".into(),
        );
    }
    if s.durability == Durability::Batched {
        wrong.push(
            "audit.durability = \"batched\": a crash can lose the events of calls already forwarded (set \"sync\")".into(),
        );
    }
    if !wrong.is_empty() {
        return outcome(
            id,
            title,
            clause,
            Status::NonCompliant,
            wrong.join("; "),
            ev,
        );
    }
    if p.accesses == 0 {
        return outcome(
            id,
            title,
            clause,
            Status::NotAssessable,
            "no tool call in the window: nothing shows the audit trail recording calls".into(),
            ev,
        );
    }
    if p.open_without_timeout.count > 0 {
        return outcome(
            id,
            title,
            clause,
            Status::NotAssessable,
            format!(
                "{} tool calls have no end, and limits.call_timeout_ms = 0 lets a call run for ever: whether their end was lost cannot be told (set a call timeout)",
                p.open_without_timeout.count
            ),
            ev,
        );
    }
    // Calls a killed or crashed proxy left open have their end, recorded by the next proxy to
    // start, which says their outcome is unknown: the trail says what happened to them.
    let interrupted = match p.ended_by_another_process.count {
        0 => String::new(),
        n => format!(
            "; {n} of them were ended by the next proxy to start, the one running them having been killed or crashed (their outcome is unknown)"
        ),
    };
    outcome(
        id,
        title,
        clause,
        Status::Compliant,
        format!(
            "all {} tool calls whose timeout has passed have their end event ({} still in flight){interrupted}; no events lost; sync durability, fail closed",
            p.ended + p.ended_by_another_process.count,
            p.in_flight
        ),
        ev,
    )
}

fn refusals_rule(id: &str, title: &str, clause: &str, f: &Facts, s: &Settings) -> RuleOutcome {
    let keys = vec![
        format!("risk.enabled = {}", s.risk_enabled),
        format!("risk.shadow = {}", s.risk_shadow),
        format!("risk.actions: block at some level = {}", s.blocks),
    ];
    let ev = evidence(
        &[
            ("refused_or_blocked", f.refusals.count),
            ("without_user_or_reason", f.refusals_incomplete.count),
            ("refused_during_outages", f.outages.events_refused),
            ("imported_events_not_counted", f.imported.count),
        ],
        &[&f.refusals_incomplete, &f.refusals],
        keys,
    );
    if f.refusals_incomplete.count > 0 {
        return outcome(
            id,
            title,
            clause,
            Status::NonCompliant,
            format!(
                "{} of {} refused or blocked calls are recorded without the user or without a reason or error code",
                f.refusals_incomplete.count, f.refusals.count
            ),
            ev,
        );
    }
    if f.refusals.count == 0 {
        return outcome(
            id,
            title,
            clause,
            Status::NotAssessable,
            "no refused or blocked call in the window: either none was attempted, or none was refused; the trail cannot tell which (`policy test` shows what the policy would refuse)".into(),
            ev,
        );
    }
    outcome(
        id,
        title,
        clause,
        Status::Compliant,
        format!(
            "{} refused or blocked calls are recorded, each with its user and a reason or error code",
            f.refusals.count
        ),
        ev,
    )
}

fn chain_rule(
    id: &str,
    title: &str,
    clause: &str,
    f: &Facts,
    s: &Settings,
    require_signing: bool,
) -> RuleOutcome {
    let keys = vec![format!(
        "audit.signing_key_file {}",
        if s.signing_key { "set" } else { "unset" }
    )];
    let Some(c) = &f.chain else {
        return outcome(
            id,
            title,
            clause,
            Status::NotAssessable,
            "the chain was not verified in this run (--no-verify); `mcp-audit-proxy verify` checks it".into(),
            evidence(&[], &[], keys),
        );
    };
    let ev = evidence(
        &[
            ("journals", c.journals),
            ("chained_records", c.chained),
            ("legacy_records", c.legacy),
            ("findings", c.findings),
            ("checkpoints_signed", c.signed),
            ("checkpoints_unsigned", c.unsigned),
        ],
        &[],
        keys,
    );
    if c.findings > 0 {
        // The findings are evidence, not configuration: they go in the explanation (the
        // first few; `counts.findings` has the total, `verify` lists them all).
        return outcome(
            id,
            title,
            clause,
            Status::NonCompliant,
            format!(
                "the store does not verify: {} finding(s) (`mcp-audit-proxy verify` lists them all); the first: {}",
                c.findings,
                c.first_findings.join("; ")
            ),
            ev,
        );
    }
    if require_signing && let Some(why) = unsigned(c, s) {
        return outcome(id, title, clause, Status::NonCompliant, why, ev);
    }
    // The chains hold, but only the index shows a journal deleted whole (helper-116 H2).
    if let Some(why) = &c.write_denied {
        return outcome(
            id,
            title,
            clause,
            Status::NotAssessable,
            format!(
                "{} records of {} journal(s) verify, but this account cannot write the store ({why}) and so cannot open its index, without which a journal deleted or cut back after it was indexed cannot be found; run the check as the store's owner, or on a copy of the store",
                c.chained, c.journals
            ),
            ev,
        );
    }
    if c.chained == 0 {
        return outcome(
            id,
            title,
            clause,
            Status::NotAssessable,
            "the store holds no chained records: nothing shows whether records were changed".into(),
            ev,
        );
    }
    if c.legacy > 0 {
        return outcome(
            id,
            title,
            clause,
            Status::NotAssessable,
            format!(
                "{} chained records verify, but {} legacy records (written before chains) carry no chain: whether they were changed cannot be shown",
                c.chained, c.legacy
            ),
            ev,
        );
    }
    outcome(
        id,
        title,
        clause,
        Status::Compliant,
        format!(
            "all {} records of {} journal(s) verify (the whole store, from each chain's start)",
            c.chained, c.journals
        ),
        ev,
    )
}

/// Why the checkpoints do not prove the chain against someone who can write the store.
fn unsigned(c: &super::survey::ChainFacts, s: &Settings) -> Option<String> {
    if !s.signing_key {
        return Some("audit.signing_key_file is unset: checkpoints are unsigned, so anyone who can write the store can rewrite it with a consistent chain (run `mcp-audit-proxy keygen` and set the key)".into());
    }
    if c.unsigned > 0 {
        return Some(format!(
            "{} checkpoints were written without a key: the records they alone cover could be rewritten with a consistent chain",
            c.unsigned
        ));
    }
    if c.signed == 0 {
        return Some("no checkpoint is signed with the configured key yet".into());
    }
    None
}

fn signing_rule(id: &str, title: &str, clause: &str, f: &Facts, s: &Settings) -> RuleOutcome {
    let keys = vec![format!(
        "audit.signing_key_file {}",
        if s.signing_key { "set" } else { "unset" }
    )];
    // Not walked (`--no-verify`, with losses known): the checkpoints were not looked at.
    let Some(c) = f.chain.as_ref().filter(|c| c.walked) else {
        let (status, why) = if s.signing_key {
            (
                Status::NotAssessable,
                "a signing key is configured, but the checkpoints were not verified in this run (--no-verify)".to_string(),
            )
        } else {
            (
                Status::NonCompliant,
                "audit.signing_key_file is unset: checkpoints are unsigned".to_string(),
            )
        };
        return outcome(id, title, clause, status, why, evidence(&[], &[], keys));
    };
    let ev = evidence(
        &[
            ("checkpoints_signed", c.signed),
            ("checkpoints_unsigned", c.unsigned),
        ],
        &[],
        keys,
    );
    match unsigned(c, s) {
        Some(why) => outcome(id, title, clause, Status::NonCompliant, why, ev),
        // The checkpoints verify, but a journal deleted whole would not show without the
        // index, which this account cannot open (review of helper-116 H2).
        None if c.write_denied.is_some() => outcome(
            id,
            title,
            clause,
            Status::NotAssessable,
            format!(
                "all {} checkpoints are signed and verify, but this account cannot write the store ({}) and so cannot open its index, without which a journal deleted or cut back cannot be found; run the check as the store's owner, or on a copy",
                c.signed,
                c.write_denied.as_deref().unwrap_or_default()
            ),
            ev,
        ),
        None => outcome(
            id,
            title,
            clause,
            Status::Compliant,
            format!(
                "all {} checkpoints are signed and verify with the configured key",
                c.signed
            ),
            ev,
        ),
    }
}

fn encryption_rule(id: &str, title: &str, clause: &str, f: &Facts, s: &Settings) -> RuleOutcome {
    let ev = evidence(
        &[
            ("events", f.events),
            ("personal_fields_encrypted", f.personal_encrypted),
            ("personal_fields_erased", f.personal_erased),
            ("personal_fields_in_clear", f.personal_clear.count),
        ],
        &[&f.personal_clear],
        vec![format!(
            "audit.encrypt_personal_data = {}",
            s.encrypt_personal_data
        )],
    );
    if !s.encrypt_personal_data {
        return outcome(
            id,
            title,
            clause,
            Status::NonCompliant,
            "audit.encrypt_personal_data = false: new events store their personal fields in clear, where no erasure can reach them short of purging the records".into(),
            ev,
        );
    }
    if f.personal_clear.count > 0 {
        return outcome(
            id,
            title,
            clause,
            Status::NonCompliant,
            format!(
                "{} of {} events in the window hold their personal fields in clear (written while encryption was off): they cannot be erased per person",
                f.personal_clear.count, f.events
            ),
            ev,
        );
    }
    let why = if f.events == 0 {
        "no event in the window; every new event's personal fields are sealed under its user's key"
            .to_string()
    } else {
        format!(
            "all {} events hold their personal fields sealed under their user's key ({} already erased)",
            f.events, f.personal_erased
        )
    };
    outcome(id, title, clause, Status::Compliant, why, ev)
}

fn masking_rule(
    id: &str,
    title: &str,
    clause: &str,
    classes: &[Class],
    f: &Facts,
    s: &Settings,
) -> RuleOutcome {
    let empty = Sample::default();
    let found: Vec<(Class, &Sample)> = classes
        .iter()
        .map(|c| (*c, f.unmasked.get(c).unwrap_or(&empty)))
        .collect();
    let mut counts: Vec<(String, u64)> = vec![("events_scanned".into(), f.scanned)];
    counts.extend(
        found
            .iter()
            .map(|(c, s)| (format!("unmasked_{}", c.as_str()), s.count)),
    );
    let counts: Vec<(&str, u64)> = counts.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let mut keys = vec![format!("risk.enabled = {}", s.risk_enabled)];
    let mut clear = Vec::new();
    for (c, mode) in &s.store_modes {
        if classes.contains(c) {
            let m = match mode {
                StoreMode::Mask => "mask",
                StoreMode::Hash => "hash",
                StoreMode::Clear => "clear",
            };
            keys.push(format!("risk.store.{} = {m:?}", c.as_str()));
            if *mode == StoreMode::Clear {
                clear.push(c.as_str());
            }
        }
    }
    let samples: Vec<&Sample> = found.iter().map(|(_, s)| *s).collect();
    let ev = evidence(&counts, &samples, keys);
    let total: u64 = found.iter().map(|(_, s)| s.count).sum();
    let mut wrong = Vec::new();
    if total > 0 {
        let what: Vec<String> = found
            .iter()
            .filter(|(_, s)| s.count > 0)
            .map(|(c, s)| format!("{} in {} event(s)", c.as_str(), s.count))
            .collect();
        wrong.push(format!(
            "stored arguments or error texts hold data in clear: {}",
            what.join(", ")
        ));
    }
    if !clear.is_empty() {
        wrong.push(format!(
            "the policy stores {} in clear (risk.store)",
            clear.join(", ")
        ));
    }
    if !s.risk_enabled {
        wrong.push("risk.enabled = false: arguments are stored as sent".into());
    }
    if !wrong.is_empty() {
        return outcome(
            id,
            title,
            clause,
            Status::NonCompliant,
            wrong.join("; "),
            ev,
        );
    }
    if f.scanned == 0 {
        return outcome(
            id,
            title,
            clause,
            Status::NotAssessable,
            "no stored arguments or error texts in the window to scan".into(),
            ev,
        );
    }
    let names: Vec<&str> = classes.iter().map(|c| c.as_str()).collect();
    outcome(
        id,
        title,
        clause,
        Status::Compliant,
        format!(
            "the classifiers find no {} in clear in the {} events with stored arguments or error texts",
            names.join(", "),
            f.scanned
        ),
        ev,
    )
}

#[allow(clippy::too_many_arguments)]
fn retention_rule(
    id: &str,
    title: &str,
    clause: &str,
    tags: &[&str],
    min_days: u64,
    min_text: &str,
    s: &Settings,
) -> RuleOutcome {
    let keys: Vec<String> = tags
        .iter()
        .map(|t| s.period_key(t))
        .chain([format!("retention.apply_daily = {}", s.apply_daily)])
        .collect();
    let short: Vec<String> = tags
        .iter()
        .filter_map(|t| {
            let k = if *t == "untagged" {
                s.periods.untagged
            } else {
                s.period(t)
            };
            match k {
                Keep::For(d) if d.as_secs() < min_days * DAY => Some(format!("{t} {k}")),
                _ => None,
            }
        })
        .collect();
    let ev = evidence(&[("minimum_days", min_days)], &[], keys);
    if !short.is_empty() {
        return outcome(
            id,
            title,
            clause,
            Status::NonCompliant,
            format!(
                "retention shorter than {min_text}: {} (`retention --apply` would remove events the regulation asks to keep)",
                short.join(", ")
            ),
            ev,
        );
    }
    outcome(
        id,
        title,
        clause,
        Status::Compliant,
        format!(
            "the configured periods keep events at least {min_text}; every retained event stays in the store and is queryable at once"
        ),
        ev,
    )
}

fn gdpr_storage_limitation(f: &Facts, s: &Settings) -> RuleOutcome {
    let (id, title, clause) = (
        "gdpr.art5_1_e.storage_limitation",
        "Personal data in the trail is kept no longer than its configured period, and removed after it",
        "GDPR Art. 5(1)(e)",
    );
    let period = s.period("gdpr");
    let empty = Sample::default();
    let expired = f.expired.get("gdpr").unwrap_or(&empty);
    let ev = evidence(
        &[("expired_gdpr_events_found", expired.count)],
        &[expired],
        vec![
            s.period_key("gdpr"),
            format!("retention.apply_daily = {}", s.apply_daily),
        ],
    );
    if period == Keep::Forever {
        return outcome(
            id,
            title,
            clause,
            Status::NonCompliant,
            "events with personal data (tag gdpr) are kept forever: set a period in [retention] gdpr".into(),
            ev,
        );
    }
    if expired.count > 0 {
        return outcome(
            id,
            title,
            clause,
            Status::NonCompliant,
            format!(
                "{} events tagged gdpr are still stored past their period ({period}): run `mcp-audit-proxy retention --apply`, or set retention.apply_daily",
                expired.count,
            ),
            ev,
        );
    }
    outcome(
        id,
        title,
        clause,
        Status::Compliant,
        format!(
            "events tagged gdpr are kept {period} and none is stored past it; whether {period} is no longer than the purpose needs is the controller's judgement, not the trail's"
        ),
        ev,
    )
}

fn gdpr_records(f: &Facts) -> RuleOutcome {
    let (id, title, clause) = (
        "gdpr.art30.records",
        "Processing of personal data through tools is recorded with who, what and when",
        "GDPR Art. 30",
    );
    let t = f.tagged.get("gdpr").cloned().unwrap_or_default();
    let ev = evidence(
        &[
            ("gdpr_call_events", t.events),
            ("missing_user_or_tool", t.missing_fields.count),
            ("tool_calls_without_end", f.pairs.without_end.count),
        ],
        &[&t.missing_fields, &f.pairs.without_end],
        Vec::new(),
    );
    // Art. 30 is about processing of personal data: a window without any says nothing of it,
    // whatever else its calls lack (helper-94 F7: one untagged call without an end made this
    // rule non-compliant; `pairs` rules judge the pairing of every call).
    if t.events == 0 {
        return outcome(
            id,
            title,
            clause,
            Status::NotAssessable,
            "no call in the window carried personal data that the classifiers tag gdpr".into(),
            ev,
        );
    }
    if t.missing_fields.count > 0 || f.pairs.without_end.count > 0 {
        return outcome(
            id,
            title,
            clause,
            Status::NonCompliant,
            format!(
                "{} call events with personal data lack the user or the tool, and {} tool calls have no end event",
                t.missing_fields.count, f.pairs.without_end.count
            ),
            ev,
        );
    }
    outcome(
        id,
        title,
        clause,
        Status::Compliant,
        format!(
            "{} call events with personal data are recorded with user, tool, time and outcome; the Art. 30(1) register itself (purposes, categories, recipients) is kept by the controller, outside the trail",
            t.events
        ),
        ev,
    )
}

fn pci_individual_access(f: &Facts) -> RuleOutcome {
    let (id, title, clause) = (
        "pci_dss.10.2.1.1.individual_access",
        "Every individual user's access to cardholder data is recorded under that user",
        "PCI DSS v4.0 10.2.1.1",
    );
    let t = f.tagged.get("pci_dss").cloned().unwrap_or_default();
    let ev = evidence(
        &[
            ("pci_dss_call_events", t.events),
            ("not_individual_user", t.not_individual.count),
            ("missing_user_or_tool", t.missing_fields.count),
        ],
        &[&t.not_individual, &t.missing_fields],
        Vec::new(),
    );
    if t.not_individual.count > 0 || t.missing_fields.count > 0 {
        return outcome(
            id,
            title,
            clause,
            Status::NonCompliant,
            format!(
                "{} call events with cardholder data are not attributed to an individual user (anonymous or empty), {} lack the user or the tool",
                t.not_individual.count, t.missing_fields.count
            ),
            ev,
        );
    }
    if t.events == 0 {
        return outcome(
            id,
            title,
            clause,
            Status::NotAssessable,
            "no call in the window carried cardholder data that the classifiers tag pci_dss".into(),
            ev,
        );
    }
    outcome(
        id,
        title,
        clause,
        Status::Compliant,
        format!(
            "{} call events with cardholder data each name an individual user and the tool",
            t.events
        ),
        ev,
    )
}

fn pci_event_details(f: &Facts) -> RuleOutcome {
    let (id, title, clause) = (
        "pci_dss.10.2.2.event_details",
        "Each event records user, type, time, success or failure, origin and the affected resource",
        "PCI DSS v4.0 10.2.2",
    );
    let ev = evidence(
        &[
            ("call_events", f.call_events),
            ("missing_user", f.missing_user.count),
            ("missing_resource", f.missing_resource.count),
            ("missing_origin", f.missing_origin.count),
            ("missing_outcome", f.missing_outcome.count),
        ],
        &[
            &f.missing_user,
            &f.missing_resource,
            &f.missing_origin,
            &f.missing_outcome,
        ],
        Vec::new(),
    );
    let missing: Vec<String> = [
        ("user_id", &f.missing_user),
        ("tool_name or upstream", &f.missing_resource),
        (
            "session_id with auth_method or client address",
            &f.missing_origin,
        ),
        ("a success or failure result", &f.missing_outcome),
    ]
    .iter()
    .filter(|(_, s)| s.count > 0)
    .map(|(what, s)| format!("{} without {what}", s.count))
    .collect();
    if !missing.is_empty() {
        return outcome(
            id,
            title,
            clause,
            Status::NonCompliant,
            format!("of {} call events: {}", f.call_events, missing.join(", ")),
            ev,
        );
    }
    if f.call_events == 0 {
        return outcome(
            id,
            title,
            clause,
            Status::NotAssessable,
            "no call event in the window".into(),
            ev,
        );
    }
    outcome(
        id,
        title,
        clause,
        Status::Compliant,
        format!(
            "all {} call events carry user_id, event_type, timestamp, result, origin (session with auth method or client address) and tool_name with upstream",
            f.call_events
        ),
        ev,
    )
}

fn pci_failures(f: &Facts, s: &Settings) -> RuleOutcome {
    let (id, title, clause) = (
        "pci_dss.10.7.2.audit_failures",
        "Failures of audit logging are detected, recorded with their duration, and do not let calls go unaudited",
        "PCI DSS v4.0 10.7.2, 10.7.3",
    );
    let o = &f.outages;
    let ev = evidence(
        &[
            ("store_outages", o.events.count),
            ("failed_open", o.failed_open.count),
            ("events_lost", o.events_lost),
            ("calls_refused", o.events_refused),
        ],
        &[&o.failed_open, &o.events],
        vec![s.on_failure_key()],
    );
    if o.failed_open.count > 0 || o.events_lost > 0 {
        return outcome(
            id,
            title,
            clause,
            Status::NonCompliant,
            format!(
                "{} outage(s) let calls go on unaudited, {} events lost (set audit.on_store_failure = \"block\")",
                o.failed_open.count, o.events_lost
            ),
            ev,
        );
    }
    if s.on_store_failure == OnStoreFailure::Allow {
        return outcome(
            id,
            title,
            clause,
            Status::NonCompliant,
            "audit.on_store_failure = \"allow\": a failing store would let calls go on unaudited"
                .into(),
            ev,
        );
    }
    let why = if o.events.count == 0 {
        "no audit store outage in the window; the store fails closed (calls are refused while their events cannot be recorded) and each outage is recorded with its start, end and losses once the store recovers".to_string()
    } else {
        format!(
            "{} outage(s) recorded with start, end and duration; the store failed closed ({} calls refused, no event lost)",
            o.events.count, o.events_refused
        )
    };
    outcome(id, title, clause, Status::Compliant, why, ev)
}
