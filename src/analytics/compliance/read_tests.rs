//! The one-pass scan against the reading it replaced ([`super::super::survey_before`]): the
//! same [`Facts`] on a store of several journals interleaved in time (personal fields sealed
//! in two, in clear in one, an erased user), with outages, refused and blocked calls, calls
//! without ends, ends after `until`, an end far later than its timeout, ends written before
//! their access, events that are not calls, data left in clear in arguments and error texts;
//! on 1 to 3 reading threads; the expired events of a tag (with a one-day period) too, which
//! were paged through the index. A damaged segment: the facts of every other record, and a
//! read error that sends to `verify`.
//!
//! The reading before went through the index: the reading from the journals it fell back
//! on while another process held the index gave other facts on this store (a day or more
//! of store at a time, so a late end could close its call; and `newest_from_journals`
//! missed 4 ends of 1908 events, appended after later records), so it is not the reference.

use std::path::Path;
use std::time::{Duration, SystemTime};

use serde_json::value::RawValue;

use super::super::survey::{END_GRACE_MS, Facts, REGULATION_TAGS};
use super::super::survey_before::{self, Before};
use super::super::{ComplianceInput, facts_on};
use crate::analytics::read::tests::{START_US, access, append, damage, end_of, time, varied_store};
use crate::audit::event::{AuditEvent, AuditGap, EventType, Outcome};
use crate::config::Config;
use crate::store::journal::{self, Damage};
use crate::store::personal::Keyring;
use crate::store::{self, Store, StoreError, StorePaths, journals, scan};
use crate::test_rng::Rng;

const MINUTE_US: u64 = 60_000_000;

fn config(timeout_ms: u64) -> Config {
    Config::parse(
        Path::new("/etc/mcp/proxy.toml"),
        &format!("[limits]\ncall_timeout_ms = {timeout_ms}\n[retention]\ngdpr = \"1d\"\n"),
    )
    .unwrap()
}

/// A fourth writer's journal (sealing), spread over the same hours as [`varied_store`]: what
/// the rules look for beyond plain calls. Returns its events.
fn compliance_store(root: &Path) -> Vec<AuditEvent> {
    let mut all = varied_store(root);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut w = Store::open_journal(root, 8 << 10).unwrap();
    w.journal.encrypt_personal_data(root);
    let mut events = Vec::new();
    let mut us = START_US + 7 * MINUTE_US;
    for i in 0..120u64 {
        us += 1 + rng.below(6 * MINUTE_US);
        let user = ["alice", "anonymous", "", "carol", "dave"][rng.below(5) as usize];
        let mut a = access(us, user, &mut rng);
        a.metadata.auth_method = (rng.below(3) != 0).then(|| "api_key".into());
        if rng.below(6) == 0 {
            a.session_id = String::new();
        }
        a.compliance_tags = match rng.below(4) {
            0 => vec!["pci_dss".into()],
            1 => vec!["hipaa".into(), "gdpr".into()],
            2 => vec!["gdpr".into()],
            _ => vec![],
        };
        a.metadata.arguments = Some(
            RawValue::from_string(match rng.below(4) {
                0 => r#"{"card":"4111 1111 1111 1111","note":"x"}"#.into(),
                1 => r#"{"api_key":"sk_live_4eC39HqLyjWDarjtT1zdp7dc"}"#.into(),
                2 => r#"{"card":"[REDACTED:payment_card]"}"#.into(),
                _ => format!(r#"{{"n":{}}}"#, rng.below(1000)),
            })
            .unwrap(),
        );
        match i % 10 {
            // Refused before it reached the server: a failure of its own, no access.
            0 => {
                let mut f = end_of(&a, us, &mut rng);
                f.event_type = EventType::ToolFailure;
                f.result = Outcome::Refused;
                f.linked_event_id = None;
                f.metadata.reason = (rng.below(2) == 0).then(|| "policy".into());
                f.metadata.error_code = (rng.below(2) == 0).then_some(-32010);
                events.push(f);
            }
            // Blocked: access and its failure.
            1 => {
                let mut f = end_of(&a, us + 10, &mut rng);
                f.event_type = EventType::ToolFailure;
                f.result = Outcome::Blocked;
                f.metadata.reason = Some("critical".into());
                events.extend([a, f]);
            }
            // An outage written once the store took events again.
            2 => {
                let mut o = a.clone();
                o.event_type = EventType::ConfigurationChange;
                o.tool_name = Some("audit/store_outage".into());
                o.result = Outcome::Success;
                o.metadata.arguments = None;
                o.metadata.audit_gap = Some(Box::new(AuditGap {
                    from: time(us - 1_000_000),
                    until: time(us),
                    duration_ms: 1000,
                    on_store_failure: if rng.below(2) == 0 { "allow" } else { "block" }.into(),
                    events_lost: rng.below(5),
                    events_refused: rng.below(3),
                    cause: "disk full".into(),
                }));
                events.push(o);
            }
            // An end far later than any timeout: no end by either reading.
            3 => {
                let late = end_of(&a, us + 200 * MINUTE_US, &mut rng);
                events.extend([a, late]);
            }
            // An end whose error text holds an address, and whose result says nothing.
            4 => {
                let mut f = end_of(&a, us + 2_000_000, &mut rng);
                f.event_type = EventType::ToolFailure;
                f.result = if rng.below(2) == 0 {
                    Outcome::Initiated
                } else {
                    Outcome::JsonrpcError
                };
                f.metadata.error_messages = vec!["mail to jane.doe@acme-mail.org failed".into()];
                events.extend([a, f]);
            }
            // No end.
            5 => events.push(a),
            _ => {
                let mut e = end_of(&a, us + rng.below(30_000_000), &mut rng);
                e.tool_name = (rng.below(8) != 0).then(|| "files".into());
                events.extend([a, e]);
            }
        }
    }
    for chunk in events.chunks(9) {
        append(&mut w, chunk);
    }
    w.journal.close_span();
    all.extend(events);
    all
}

/// The facts as the reading before the scan gave them through the index
/// (`compliance::facts` as it was).
fn before(input: &ComplianceInput<'_>) -> Facts {
    let timeout = input.config.limits.call_timeout;
    let mut pass = Before::new(input.since, input.until, timeout);
    let reach = timeout.map_or(Duration::ZERO, |t| {
        t + Duration::from_millis(END_GRACE_MS + 1)
    });
    let read_to = (input.until + reach).min(input.now.max(input.until));
    let reading = survey_before::read(
        input.root,
        input.since,
        read_to,
        &mut pass,
        &input.config.retention.periods,
        &REGULATION_TAGS,
        input.now,
    )
    .unwrap();
    let mut facts = pass.finish(read_to);
    facts.expired = reading.expired.into_iter().collect();
    facts
}

/// The facts as the reading through the index gave them, from every record of every
/// journal decoded in full (the damaged bytes skipped), pushed an hour at a time in the
/// index's order into the survey as it was; `expired` left empty. With the damage met.
fn decoding_every_record(input: &ComplianceInput<'_>) -> (Facts, Vec<Damage>) {
    let timeout = input.config.limits.call_timeout;
    let reach = timeout.map_or(Duration::ZERO, |t| {
        t + Duration::from_millis(END_GRACE_MS + 1)
    });
    let read_to = (input.until + reach).min(input.now.max(input.until));
    let keys = Keyring::new(input.root);
    let journal_root = StorePaths::new(input.root).journal();
    let mut events = Vec::new();
    let mut damaged = Vec::new();
    let mut image = Vec::new();
    for id in journals::list(&journal_root).unwrap() {
        let dir = id.dir(&journal_root);
        let segments = journal::list_segments(&dir).unwrap();
        for (i, &n) in segments.iter().enumerate() {
            journal::read_segment_in::<StoreError>(
                &dir,
                n,
                journal::HEADER_LEN,
                i + 1 == segments.len(),
                &mut image,
                |at, payload| {
                    events.push(keys.decode(payload, at)?);
                    Ok(())
                },
                |d| damaged.push(d),
            )
            .unwrap();
        }
    }
    events.retain(|e| e.timestamp >= input.since && e.timestamp <= read_to);
    events.sort_by_key(|e| (e.timestamp, e.event_id));
    let mut pass = Before::new(input.since, input.until, timeout);
    let mut at = input.since;
    let mut events = events.into_iter().peekable();
    while at <= read_to {
        let end = (at + Duration::from_secs(3600)).min(read_to + Duration::from_micros(1));
        while let Some(e) = events.next_if(|e| e.timestamp < end) {
            pass.push(&e);
        }
        pass.reached(end);
        at = end;
    }
    (pass.finish(read_to), damaged)
}

fn window(all: &[AuditEvent], from: f64, to: f64) -> (SystemTime, SystemTime) {
    let mut by_time: Vec<SystemTime> = all.iter().map(|e| e.timestamp).collect();
    by_time.sort();
    let at = |q: f64| by_time[((by_time.len() - 1) as f64 * q) as usize];
    (at(from), at(to))
}

#[test]
fn the_scan_gives_the_facts_the_reading_through_the_index_gave() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let all = compliance_store(root);
    assert!(store::personal::erase(root, "carol").unwrap().is_some());
    let (index, _lock, _) = store::reindex(root).unwrap();
    index.close().unwrap();
    let last = all.iter().map(|e| e.timestamp).max().unwrap();
    let mut compared = 0;
    let (mut in_flight, mut expired) = (0, 0);
    for (from, to) in [(0.2, 0.6), (0.0, 1.0), (0.7, 0.95)] {
        let (since, until) = window(&all, from, to);
        for timeout_ms in [60_000, 0] {
            let config = config(timeout_ms);
            // `now` long after (every end read), and just after `until` (calls in flight).
            for now in [
                last + Duration::from_secs(86_400),
                until + Duration::from_secs(20),
            ] {
                let input = ComplianceInput {
                    root,
                    config: &config,
                    since,
                    until,
                    now,
                    verify_chain: false,
                };
                let want = before(&input);
                assert_eq!(
                    decoding_every_record(&input).0,
                    Facts {
                        expired: Default::default(),
                        ..want.clone()
                    },
                    "the reference reads as the index did"
                );
                for workers in [1, 2, 3] {
                    let got = facts_on(&input, workers).unwrap();
                    assert_eq!(
                        got, want,
                        "{workers} threads, window {from}-{to}, timeout {timeout_ms} ms, now {now:?}"
                    );
                }
                in_flight += want.pairs.in_flight;
                expired += want.expired.get("gdpr").map_or(0, |s| s.count);
                compared += 1;
            }
        }
    }
    assert_eq!(compared, 12);
    assert!(in_flight > 0, "calls in flight at the end of some window");
    assert!(expired > 0, "gdpr events kept past their day");
    // What the store holds is really varied, and the facts see it.
    let config = config(60_000);
    let (since, until) = window(&all, 0.0, 1.0);
    let input = ComplianceInput {
        root,
        config: &config,
        since,
        until,
        now: until + Duration::from_secs(20),
        verify_chain: false,
    };
    let f = facts_on(&input, 2).unwrap();
    assert!(f.personal_clear.count > 0 && f.personal_clear.ids.len() == 20);
    assert!(f.personal_encrypted > 0 && f.personal_erased > 0, "{f:#?}");
    assert!(f.outages.events.count > 0 && f.outages.failed_open.count > 0);
    assert!(f.refusals.count > 0 && f.refusals_incomplete.count > 0);
    assert!(f.pairs.ended > 0 && f.pairs.without_end.count > 0);
    assert!(f.missing_user.count > 0 && f.missing_origin.count > 0);
    assert!(f.missing_outcome.count > 0 && f.missing_resource.count > 0);
    assert!(f.unmasked.len() >= 3, "{:?}", f.unmasked.keys());
    assert!(f.tagged.len() == 3 && f.tagged["pci_dss"].not_individual.count > 0);
    assert!(f.read_error.is_none());
}

#[test]
fn a_damaged_segment_gives_the_facts_of_the_rest_and_a_read_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let all = compliance_store(root);
    let damaged = damage(root);
    let config = config(60_000);
    let (since, until) = window(&all, 0.0, 1.0);
    let input = ComplianceInput {
        root,
        config: &config,
        since,
        until,
        now: until + Duration::from_secs(86_400),
        verify_chain: false,
    };
    let (want, met) = decoding_every_record(&input);
    assert!(met.iter().any(|d| d.segment == damaged), "{met:?}");
    for workers in [1, 3] {
        let mut got = facts_on(&input, workers).unwrap();
        let error = got.read_error.take().expect("the damage is a read error");
        assert!(
            error.contains(&damaged.display().to_string()) && error.contains("verify"),
            "{error}"
        );
        got.expired.clear();
        assert_eq!(got, want, "{workers} threads");
    }
}

#[test]
fn surveying_in_the_calls_pass_gives_the_same_facts_and_the_same_calls() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let all = compliance_store(root);
    assert!(store::personal::erase(root, "carol").unwrap().is_some());
    let config = config(60_000);
    let (since, until) = window(&all, 0.3, 0.7);
    let (first, last) = window(&all, 0.0, 1.0);
    let input = ComplianceInput {
        root,
        config: &config,
        since,
        until,
        now: until + Duration::from_secs(20),
        verify_chain: false,
    };
    let want = facts_on(&input, 2).unwrap();
    let (want_calls, _) = crate::analytics::read::calls(root, first, last).unwrap();
    // The calls' range wider than the window, and narrower.
    for (from, to) in [(first, last), (since + Duration::from_secs(600), until)] {
        let w = super::super::Window::of(&input).unwrap();
        let mut calls = Vec::new();
        let (surveys, read) =
            crate::analytics::read::each_call_surveying(root, from, to, &w, None, |c| {
                calls.push(c)
            });
        let read = read.unwrap();
        assert_eq!(
            surveys.len(),
            2.min(crate::store::scan::default_workers()).max(1)
        );
        let got = super::super::facts_of(&input, surveys, Ok(&read.damaged), None).unwrap();
        assert_eq!(got, want, "calls [{from:?}, {to:?}]");
        if (from, to) == (first, last) {
            calls.sort_unstable_by_key(|c| (c.at_ms, c.id));
            let text = |c: &[crate::analytics::Call]| -> Vec<String> {
                c.iter().map(|c| format!("{c:?}")).collect()
            };
            assert_eq!(text(&calls), text(&want_calls));
        }
    }
}

/// What the survey is given of each end event, as text.
#[derive(Default)]
struct Ends(Vec<String>);

impl scan::Sink for Ends {
    fn event(&mut self, e: &scan::Event<'_>) {
        if matches!(
            e.event_type,
            EventType::ToolExecution | EventType::ToolFailure
        ) {
            self.0.push(format!("{e:?}"));
        }
    }
    fn journal_read(&mut self) {}
}

#[test]
fn an_end_known_from_its_access_without_decrypting_reads_as_the_opened_one() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let all = compliance_store(root);
    assert!(store::personal::erase(root, "carol").unwrap().is_some());
    let (first, last) = window(&all, 0.0, 1.0);
    let ends = |sinks: Vec<Ends>| {
        let mut v: Vec<String> = sinks.into_iter().flat_map(|s| s.0).collect();
        v.sort();
        v
    };
    for workers in [1, 2] {
        // Alone, every sealed end is opened; beside the calls, those that seal only their
        // user's name are known from their access.
        let alone = scan::events_on(root, first, last, None, workers, Ends::default);
        let alone_report = alone.result.unwrap();
        assert_eq!(alone_report.ends_not_opened, 0);
        let range = (first, last);
        let beside = scan::scan_on(
            root,
            range,
            Some(range),
            None,
            workers,
            |_, _| (),
            |()| {},
            Ends::default,
        );
        let report = beside.result.unwrap();
        let want = ends(alone.sinks);
        assert_eq!(ends(beside.sinks), want, "{workers} threads");
        assert!(report.ends_not_opened > 100, "{report:?}");
        // Ends with more than their user's name (an error text, a reason) were opened.
        let sealed = want.iter().filter(|e| e.contains("Encrypted")).count();
        assert!((report.ends_not_opened as usize) < sealed, "{report:?}");
        assert!(
            want.iter()
                .any(|e| e.contains("jane.doe") && e.contains("Encrypted"))
        );
    }
}

/// The chain facts of a window read with the walk on the way are the separate walk's
/// (`verify --no-index`), and when a record that is not an event stops the scan, the walk is
/// made again on its own: the rewritten record is a finding, not a hole in the facts.
#[test]
fn the_chain_walked_on_the_way_gives_the_separate_walks_facts_even_when_the_scan_stops() {
    use crate::store::trail_tests::{framed, records_of, splice};
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let all = compliance_store(root);
    let config = config(60_000);
    let (since, until) = window(&all, 0.0, 1.0);
    let input = ComplianceInput {
        root,
        config: &config,
        since,
        until,
        now: until + Duration::from_secs(20),
        verify_chain: true,
    };
    let separate = || super::chain(root, None).unwrap();
    let f = facts_on(&input, 2).unwrap();
    assert!(f.read_error.is_none(), "{:?}", f.read_error);
    let whole = separate();
    assert!(whole.chained > 100 && whole.findings == 0, "{whole:?}");
    assert_eq!(f.chain.as_ref(), Some(&whole));
    // A record rewritten (its checksum too) into a JSON object that is no event.
    let journal_root = StorePaths::new(root).journal();
    let id = journals::list(&journal_root).unwrap()[0];
    let segment = journal::segment_path(&id.dir(&journal_root), 1);
    assert!(records_of(&segment).len() > 3);
    splice(
        &segment,
        2,
        &framed(br#"{"seq":"2","note":"not an event"}"#),
    );
    for workers in [1, 2] {
        let f = facts_on(&input, workers).unwrap();
        assert!(f.read_error.is_some(), "the scan stopped at the record");
        let walked = separate();
        assert_eq!(walked.findings, 1, "{walked:?}");
        assert_eq!(f.chain.as_ref(), Some(&walked), "{workers} thread(s)");
    }
}
