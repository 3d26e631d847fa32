//! The pure parts: the survey on events made here, and each rule passing, failing and not
//! assessable on facts made here.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::rules::rules;
use super::survey::{ChainFacts, Facts, Sample, Survey, TagFacts};
use super::{Regulation, RuleOutcome, Settings, Status};
use crate::audit::event::{AuditGap, HttpContext, PersonalData};
use crate::audit::{AuditEvent, EventId, EventType, Outcome};
use crate::config::{Config, Durability, OnStoreFailure};
use crate::policy::StoreMode;
use crate::policy::classify::Class;
use crate::store::retention::Keep;

const T0: u64 = 1_790_000_000_000;
const MINUTE: u64 = 60_000;

fn at(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

fn event(kind: EventType, result: Outcome, ms: u64) -> AuditEvent {
    let mut e = AuditEvent::test_event(kind, result);
    e.event_id = EventId(ulid::Ulid::from_parts(ms, rand_part(ms, kind)));
    e.timestamp = at(ms);
    e.metadata.auth_method = Some("stdio".into());
    e.metadata.personal_data = Some(PersonalData::Encrypted);
    e
}

fn rand_part(ms: u64, kind: EventType) -> u128 {
    u128::from(ms) * 8 + kind as u128
}

/// An access at `ms` with `arguments`, and (if `end_after` is given) its end.
fn call(ms: u64, arguments: &str, end_after: Option<u64>) -> Vec<AuditEvent> {
    let mut a = event(EventType::ToolAccess, Outcome::Initiated, ms);
    a.metadata.arguments =
        Some(serde_json::value::RawValue::from_string(arguments.into()).unwrap());
    let mut out = vec![a.clone()];
    if let Some(after) = end_after {
        let mut e = event(EventType::ToolExecution, Outcome::Success, ms + after);
        e.linked_event_id = Some(a.event_id);
        out.push(e);
    }
    out
}

fn survey(events: &[AuditEvent], until: u64, timeout_ms: Option<u64>, now: u64) -> Facts {
    let mut s = Survey::new(
        at(T0),
        at(until),
        timeout_ms.map(Duration::from_millis),
        at(now),
    );
    let mut sorted = events.to_vec();
    sorted.sort_by_key(|e| e.event_id);
    for e in &sorted {
        s.push(e);
    }
    s.finish()
}

#[test]
fn accesses_are_paired_and_those_past_their_timeout_without_an_end_are_named() {
    let mut events = call(T0, "{}", Some(5));
    let lost = call(T0 + MINUTE, "{}", None);
    let running = call(T0 + 30 * MINUTE, "{}", None);
    events.extend(lost.clone());
    events.extend(running.clone());
    // Timeout 10 minutes; read up to 31 minutes: the first unpaired call is past its
    // timeout and grace, the second may still be running.
    let f = survey(
        &events,
        T0 + 30 * MINUTE,
        Some(10 * MINUTE),
        T0 + 31 * MINUTE,
    );
    assert_eq!(f.pairs.accesses, 3);
    assert_eq!(f.pairs.ended, 1);
    assert_eq!(f.pairs.without_end.count, 1);
    assert_eq!(f.pairs.without_end.ids, vec![lost[0].event_id.to_string()]);
    assert_eq!(f.pairs.in_flight, 1);
    // Without a timeout a missing end proves nothing.
    let f = survey(&events, T0 + 30 * MINUTE, None, T0 + 31 * MINUTE);
    assert_eq!(f.pairs.without_end.count, 0);
    assert_eq!(f.pairs.open_without_timeout.count, 2);
}

#[test]
fn an_end_after_the_window_still_closes_its_call_and_is_not_counted() {
    let events = call(T0 + 10 * MINUTE, "{}", Some(2 * MINUTE));
    let f = survey(
        &events,
        T0 + 11 * MINUTE,
        Some(10 * MINUTE),
        T0 + 60 * MINUTE,
    );
    assert_eq!((f.pairs.accesses, f.pairs.ended), (1, 1));
    assert_eq!(f.events, 1, "the end is after until");
}

#[test]
fn card_numbers_and_secrets_left_in_clear_are_found_and_masked_ones_are_not() {
    let mut events = call(T0, r#"{"card":"4111 1111 1111 1111","note":"x"}"#, Some(1));
    events.extend(call(
        T0 + 10,
        r#"{"card":"[REDACTED:payment_card]"}"#,
        Some(1),
    ));
    events.extend(call(
        T0 + 20,
        r#"{"note":"the password is hunter2Xq!9zLm ok"}"#,
        Some(1),
    ));
    let mut failure = event(EventType::ToolFailure, Outcome::JsonrpcError, T0 + 30);
    failure.metadata.error_messages = vec!["mail to jane.doe@acme-mail.org failed".into()];
    events.push(failure);
    // A person's answer to a server's form, stored in clear (an import of another trail).
    let mut answer = event(EventType::ServerRequest, Outcome::Success, T0 + 40);
    answer.metadata.input_responses = Some(
        serde_json::value::RawValue::from_string(
            r#"{"result":{"content":{"card":"5500 0000 0000 0004"}}}"#.into(),
        )
        .unwrap(),
    );
    events.push(answer);
    let f = survey(&events, T0 + MINUTE, Some(MINUTE), T0 + MINUTE);
    assert_eq!(f.scanned, 5);
    let card = &f.unmasked[&Class::PaymentCard];
    assert_eq!(card.count, 2);
    assert_eq!(
        card.ids,
        vec![
            events[0].event_id.to_string(),
            events[7].event_id.to_string()
        ]
    );
    assert_eq!(f.unmasked[&Class::Secret].count, 1);
    assert_eq!(f.unmasked[&Class::Email].count, 1);
}

#[test]
fn missing_fields_refusals_outages_and_clear_personal_fields_are_counted() {
    let mut events = call(T0, "{}", Some(1));
    events[0].tool_name = None;
    events[0].metadata.auth_method = None; // no origin either
    events[1].user_id = String::new();
    let mut blocked = event(EventType::ToolFailure, Outcome::Blocked, T0 + 10);
    blocked.metadata.reason = Some("critical".into());
    let mut refused = event(EventType::ToolFailure, Outcome::Refused, T0 + 20);
    refused.metadata.auth_method = None;
    refused.metadata.http = Some(Box::new(HttpContext {
        client_address: Some("192.0.2.1".into()),
        ..HttpContext::default()
    }));
    let mut outage = event(EventType::ConfigurationChange, Outcome::Success, T0 + 30);
    outage.metadata.personal_data = None;
    outage.metadata.audit_gap = Some(Box::new(AuditGap {
        from: at(T0),
        until: at(T0 + 30),
        duration_ms: 30,
        on_store_failure: "allow".into(),
        events_lost: 4,
        events_refused: 0,
        cause: "disk full".into(),
    }));
    events.extend([blocked, refused.clone(), outage.clone()]);
    let f = survey(&events, T0 + MINUTE, Some(MINUTE), T0 + MINUTE);
    assert_eq!(f.call_events, 4);
    assert_eq!(f.missing_resource.count, 1);
    assert_eq!(f.missing_user.count, 1);
    assert_eq!(
        f.missing_origin.count, 1,
        "the access lacks one; the refusal has a client address"
    );
    assert_eq!(f.refusals.count, 2);
    assert_eq!(
        f.refusals_incomplete.ids,
        vec![refused.event_id.to_string()],
        "no reason, no error code"
    );
    assert_eq!(f.outages.events_lost, 4);
    assert_eq!(f.outages.failed_open.count, 1);
    assert_eq!(f.personal_clear.ids, vec![outage.event_id.to_string()]);
    assert_eq!(f.personal_encrypted, 4);
}

#[test]
fn tagged_calls_by_anonymous_are_not_individual_access() {
    let mut events = call(T0, "{}", Some(1));
    for e in &mut events {
        e.compliance_tags = vec!["pci_dss".into()];
    }
    events[0].user_id = "anonymous".into();
    let f = survey(&events, T0 + MINUTE, Some(MINUTE), T0 + MINUTE);
    let t = &f.tagged["pci_dss"];
    assert_eq!((t.events, t.not_individual.count), (2, 1));
}

// ---- rules on made-up facts ----

fn defaults() -> Settings {
    let mut s = Settings::of(&Config::parse(Path::new("/etc/mcp/proxy.toml"), "").unwrap());
    s.signing_key = true;
    s
}

fn sample(n: u64) -> Sample {
    let mut s = Sample::default();
    for i in 0..n {
        s.add(EventId(ulid::Ulid::from_parts(T0 + i, 1)));
    }
    s
}

/// Facts under which every rule of every regulation passes.
fn clean() -> Facts {
    let mut f = Facts {
        events: 100,
        call_events: 100,
        scanned: 50,
        personal_encrypted: 100,
        refusals: sample(2),
        chain: Some(ChainFacts {
            walked: true,
            journals: 1,
            chained: 100,
            signed: 3,
            ..ChainFacts::default()
        }),
        ..Facts::default()
    };
    f.pairs.accesses = 50;
    f.pairs.ended = 50;
    for tag in ["gdpr", "pci_dss"] {
        f.tagged.insert(
            tag.into(),
            TagFacts {
                events: 4,
                ..TagFacts::default()
            },
        );
    }
    f
}

fn find<'a>(rules: &'a [RuleOutcome], id: &str) -> &'a RuleOutcome {
    rules
        .iter()
        .find(|r| r.id == id)
        .unwrap_or_else(|| panic!("no rule {id}"))
}

fn status(reg: Regulation, f: &Facts, s: &Settings, id: &str) -> Status {
    find(&rules(reg, f, s), id).status
}

#[test]
fn on_clean_facts_every_rule_passes_and_cites_its_clause() {
    let (f, s) = (clean(), defaults());
    for reg in Regulation::ALL {
        for r in rules(reg, &f, &s) {
            assert_eq!(r.status, Status::Compliant, "{r:?}");
            assert!(r.id.starts_with(reg.as_str()), "{}", r.id);
            assert!(!r.clause.is_empty() && !r.explanation.is_empty());
        }
    }
}

/// A change to clean facts or settings.
type Edit = fn(&mut Facts, &mut Settings);

/// A rule, a change that makes it fail, and a change that makes it unassessable (if any).
fn case(
    reg: Regulation,
    id: &'static str,
    fail: Edit,
    unknown: Option<Edit>,
) -> (Regulation, &'static str, Edit, Option<Edit>) {
    (reg, id, fail, unknown)
}

#[test]
fn each_rule_fails_on_its_evidence_and_says_when_it_cannot_tell() {
    use Regulation::*;
    let cases = [
        case(
            PciDss,
            "pci_dss.3.5.1.pan_unreadable",
            |f, _| {
                f.unmasked.insert(Class::PaymentCard, sample(2));
            },
            Some(|f, _| f.scanned = 0),
        ),
        case(
            PciDss,
            "pci_dss.8.3.2.credentials_unreadable",
            |f, _| {
                f.unmasked.insert(Class::Secret, sample(1));
            },
            Some(|f, _| f.scanned = 0),
        ),
        case(
            PciDss,
            "pci_dss.10.2.1.audit_logs_active",
            |f, _| f.pairs.without_end = sample(3),
            Some(|f, _| f.pairs.accesses = 0),
        ),
        case(
            PciDss,
            "pci_dss.10.2.1.audit_logs_active",
            |_, s| s.durability = Durability::Batched,
            Some(|f, _| f.pairs.open_without_timeout = sample(1)),
        ),
        case(
            PciDss,
            "pci_dss.10.2.1.1.individual_access",
            |f, _| f.tagged.get_mut("pci_dss").unwrap().not_individual = sample(1),
            Some(|f, _| {
                f.tagged.remove("pci_dss");
            }),
        ),
        case(
            PciDss,
            "pci_dss.10.2.1.4.invalid_access_attempts",
            |f, _| f.refusals_incomplete = sample(1),
            Some(|f, _| f.refusals = Sample::default()),
        ),
        case(
            PciDss,
            "pci_dss.10.2.2.event_details",
            |f, _| f.missing_origin = sample(2),
            Some(|f, _| f.call_events = 0),
        ),
        case(
            PciDss,
            "pci_dss.10.3.4.change_detection",
            |f, _| {
                let c = f.chain.as_mut().unwrap();
                c.findings = 1;
                c.first_findings = vec!["journal x: edited at segment 1 offset 64: …".into()];
            },
            Some(|f, _| f.chain = None),
        ),
        case(
            PciDss,
            "pci_dss.10.3.4.change_detection",
            |_, s| s.signing_key = false,
            Some(|f, _| f.chain.as_mut().unwrap().legacy = 5),
        ),
        case(
            PciDss,
            "pci_dss.10.5.1.retention",
            |_, s| {
                s.periods.tags.insert(
                    "pci_dss".into(),
                    Keep::For(Duration::from_secs(300 * 86_400)),
                );
            },
            None,
        ),
        case(
            PciDss,
            "pci_dss.10.5.1.retention",
            |_, s| s.periods.untagged = Keep::For(Duration::from_secs(90 * 86_400)),
            None,
        ),
        case(
            PciDss,
            "pci_dss.10.7.2.audit_failures",
            |f, _| f.outages.failed_open = sample(1),
            None,
        ),
        case(
            PciDss,
            "pci_dss.10.7.2.audit_failures",
            |_, s| s.on_store_failure = OnStoreFailure::Allow,
            None,
        ),
        case(
            Hipaa,
            "hipaa.164.308_a_5_ii_C.log_in_monitoring",
            |f, _| f.refusals_incomplete = sample(1),
            Some(|f, _| f.refusals = Sample::default()),
        ),
        case(
            Hipaa,
            "hipaa.164.312_a_2_iv.encryption",
            |f, _| f.personal_clear = sample(4),
            None,
        ),
        case(
            Hipaa,
            "hipaa.164.312_b.audit_controls",
            |f, _| f.outages.events_lost = 7,
            Some(|f, _| f.pairs.accesses = 0),
        ),
        case(
            Hipaa,
            "hipaa.164.312_c_1.integrity",
            |f, _| f.chain.as_mut().unwrap().findings = 2,
            Some(|f, _| f.chain.as_mut().unwrap().chained = 0),
        ),
        case(
            Hipaa,
            "hipaa.164.312_c_2.authentication",
            |f, _| f.chain.as_mut().unwrap().unsigned = 1,
            Some(|f, _| f.chain = None),
        ),
        case(
            Hipaa,
            "hipaa.164.316_b_2_i.retention",
            |_, s| {
                s.periods.tags.insert(
                    "hipaa".into(),
                    Keep::For(Duration::from_secs(5 * 31_557_600)),
                );
            },
            None,
        ),
        case(
            Hipaa,
            "hipaa.164.502_b.minimum_necessary",
            |f, _| {
                f.unmasked.insert(Class::Health, sample(1));
            },
            Some(|f, _| f.scanned = 0),
        ),
        case(
            Gdpr,
            "gdpr.art5_1_e.storage_limitation",
            |f, _| {
                f.expired.insert("gdpr".into(), sample(3));
            },
            None,
        ),
        case(
            Gdpr,
            "gdpr.art5_1_e.storage_limitation",
            |_, s| {
                s.periods.tags.insert("gdpr".into(), Keep::Forever);
            },
            None,
        ),
        case(
            Gdpr,
            "gdpr.art5_1_f.integrity",
            |f, _| f.chain.as_mut().unwrap().findings = 1,
            Some(|f, _| f.chain = None),
        ),
        case(
            Gdpr,
            "gdpr.art17.erasure",
            |_, s| s.encrypt_personal_data = false,
            None,
        ),
        case(
            Gdpr,
            "gdpr.art30.records",
            |f, _| f.tagged.get_mut("gdpr").unwrap().missing_fields = sample(1),
            Some(|f, _| {
                f.tagged.remove("gdpr");
            }),
        ),
        case(
            Gdpr,
            "gdpr.art32_1_a.pseudonymisation",
            |_, s| {
                for (c, m) in &mut s.store_modes {
                    if *c == Class::Email {
                        *m = StoreMode::Clear;
                    }
                }
            },
            Some(|f, _| f.scanned = 0),
        ),
        case(
            Gdpr,
            "gdpr.art32_1_a.pseudonymisation",
            |f, _| {
                f.unmasked.insert(Class::Iban, sample(1));
            },
            None,
        ),
    ];
    for (reg, id, fail, unknown) in cases {
        let (mut f, mut s) = (clean(), defaults());
        assert_eq!(
            status(reg, &f, &s, id),
            Status::Compliant,
            "{id} on clean facts"
        );
        fail(&mut f, &mut s);
        let r = rules(reg, &f, &s);
        let r = find(&r, id);
        assert_eq!(r.status, Status::NonCompliant, "{id}: {}", r.explanation);
        if let Some(unknown) = unknown {
            let (mut f, mut s) = (clean(), defaults());
            unknown(&mut f, &mut s);
            let r = rules(reg, &f, &s);
            let r = find(&r, id);
            assert_eq!(r.status, Status::NotAssessable, "{id}: {}", r.explanation);
        }
    }
}

#[test]
fn failing_evidence_carries_the_offending_ids_and_config_keys() {
    let (mut f, mut s) = (clean(), defaults());
    f.pairs.without_end = sample(25);
    s.on_store_failure = OnStoreFailure::Allow;
    let r = rules(Regulation::PciDss, &f, &s);
    let r = find(&r, "pci_dss.10.2.1.audit_logs_active");
    assert_eq!(r.evidence.counts["without_end"], 25);
    assert_eq!(r.evidence.event_ids.len(), super::survey::SAMPLE);
    assert!(
        r.evidence
            .config_keys
            .contains(&"audit.on_store_failure = \"allow\"".to_string()),
        "{:?}",
        r.evidence.config_keys
    );
    assert!(r.explanation.contains("25 of 50"), "{}", r.explanation);
}

#[test]
fn the_default_retention_meets_pci_and_hipaa_and_a_shorter_untagged_period_does_not() {
    let text = "[retention]\nuntagged = \"180d\"\n";
    let c = Config::parse(Path::new("/etc/mcp/proxy.toml"), text).unwrap();
    let s = Settings::of(&c);
    let f = clean();
    let r = rules(Regulation::PciDss, &f, &s);
    let r = find(&r, "pci_dss.10.5.1.retention");
    assert_eq!(r.status, Status::NonCompliant);
    assert!(r.explanation.contains("untagged 180d"), "{}", r.explanation);
    assert_eq!(
        status(
            Regulation::Hipaa,
            &f,
            &defaults(),
            "hipaa.164.316_b_2_i.retention"
        ),
        Status::Compliant
    );
}

#[test]
fn a_window_read_part_way_passes_no_rule_that_rests_on_it() {
    let (mut f, s) = (clean(), defaults());
    f.read_error = Some("checksum mismatch".into());
    f.pairs.without_end = sample(1);
    for reg in Regulation::ALL {
        let a = super::judge(reg, &f, &s, at(T0), at(T0 + MINUTE));
        for r in &a.rules {
            let from_window = !r.id.contains("integrity")
                && !r.id.contains("authentication")
                && !r.id.contains("change_detection")
                && !r.id.contains("retention");
            if from_window {
                assert_ne!(r.status, Status::Compliant, "{r:?}");
            } else {
                assert_eq!(r.status, Status::Compliant, "{r:?}");
            }
        }
        // What the part read shows stays shown.
        if reg == Regulation::PciDss {
            let r = find(&a.rules, "pci_dss.10.2.1.audit_logs_active");
            assert_eq!(r.status, Status::NonCompliant);
        }
    }
}

#[test]
fn any_short_period_fails_pci_retention_for_it_can_delete_audit_events() {
    // `secrets = "1d"` deletes the events of calls carrying credentials after a day: those
    // are audit log history PCI DSS 10.5.1 asks to keep 12 months.
    let text = "[retention]\nsecrets = \"1d\"\n";
    let c = Config::parse(Path::new("/etc/mcp/proxy.toml"), text).unwrap();
    let s = Settings::of(&c);
    let r = rules(Regulation::PciDss, &clean(), &s);
    let r = find(&r, "pci_dss.10.5.1.retention");
    assert_eq!(r.status, Status::NonCompliant, "{r:?}");
    assert!(r.explanation.contains("secrets 1d"), "{}", r.explanation);
    assert!(
        r.evidence
            .config_keys
            .contains(&"retention.secrets = \"1d\"".to_string()),
        "{:?}",
        r.evidence.config_keys
    );
}

#[test]
fn a_window_without_events_scores_nothing_and_passes_no_rule_that_rests_on_it() {
    let s = defaults();
    let f = Facts::default();
    for reg in Regulation::ALL {
        let a = super::judge(reg, &f, &s, at(T0), at(T0 + MINUTE));
        assert_eq!(a.score, None, "{reg:?}: {:?}", a.score);
        for r in &a.rules {
            let config_or_chain = r.id.contains("integrity")
                || r.id.contains("authentication")
                || r.id.contains("change_detection")
                || r.id.contains("retention");
            if !config_or_chain {
                assert_ne!(r.status, Status::Compliant, "{r:?}");
            }
        }
    }
    // The configuration-only passes of before: encryption, no outage, storage limitation.
    let a = super::judge(Regulation::Gdpr, &f, &s, at(T0), at(T0 + MINUTE));
    let r = find(&a.rules, "gdpr.art5_1_e.storage_limitation");
    assert_eq!(r.status, Status::NotAssessable, "{r:?}");
    assert!(r.explanation.contains("no events"), "{}", r.explanation);
}

#[test]
fn chain_findings_are_evidence_in_the_explanation_not_config_keys() {
    let (mut f, s) = (clean(), defaults());
    let c = f.chain.as_mut().unwrap();
    c.findings = 2;
    c.first_findings = vec![
        "journal x: edited at segment 1 offset 64: a".into(),
        "journal x: edited at segment 1 offset 128: b".into(),
    ];
    let r = rules(Regulation::PciDss, &f, &s);
    let r = find(&r, "pci_dss.10.3.4.change_detection");
    assert_eq!(r.status, Status::NonCompliant);
    assert!(
        r.evidence
            .config_keys
            .iter()
            .all(|k| !k.contains("journal x")),
        "{:?}",
        r.evidence.config_keys
    );
    assert!(
        r.explanation.contains("offset 64: a") && r.explanation.contains("offset 128: b"),
        "{}",
        r.explanation
    );
}

/// helper-94 F7: one untagged call without an end made GDPR Art. 30 (records of processing of
/// personal data) non-compliant in a window that held no personal data at all. It is not
/// assessable there; the pairing rule still fails.
#[test]
fn art30_without_personal_data_is_not_assessable_whatever_else_calls_lack() {
    let status = |reg: Regulation, f: &Facts, id: &str| {
        let a = super::judge(reg, f, &defaults(), at(T0), at(T0 + MINUTE));
        a.rules.iter().find(|r| r.id == id).unwrap().status
    };
    let mut f = clean();
    f.tagged.remove("gdpr");
    f.pairs.without_end = sample(1);
    assert_eq!(
        status(Regulation::Gdpr, &f, "gdpr.art30.records"),
        Status::NotAssessable
    );
    assert_eq!(
        status(Regulation::PciDss, &f, "pci_dss.10.2.1.audit_logs_active"),
        Status::NonCompliant
    );
    // With personal data in the window, the call without an end fails Art. 30 as before.
    let mut f = clean();
    f.pairs.without_end = sample(1);
    assert_eq!(
        status(Regulation::Gdpr, &f, "gdpr.art30.records"),
        Status::NonCompliant
    );
}
