//! `compliance` through the real binary (issue 10 items 4 and 8): fixture stores written
//! through the audit writer, as a proxy writes them, with known answers. A clean store passes every rule of every regulation (exit 0);
//! a store with the faults each rule looks for fails exactly those rules, naming the
//! offending events and configuration keys (exit 1); an empty window and `--no-verify` make
//! rules `not_assessable`, never compliant; a record changed after it was written fails the
//! integrity rules and passes none that rest on the unreadable window; a missing store is an
//! error (exit 2).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{TestStore, cli as run, proxy_bin};
use mcp_audit_proxy::store::checkpoint::keygen;
use serde_json::{Value, json};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn id(ms: u64, n: u64) -> String {
    ulid::Ulid::from_parts(ms, u128::from(n)).to_string()
}

fn time(ms: u64) -> String {
    humantime::format_rfc3339_micros(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// A call: its access event and, unless `end` is `None`, its end with that result.
struct Call<'a> {
    ms: u64,
    n: u64,
    user: &'a str,
    arguments: Value,
    tags: &'a [&'a str],
    end: Option<&'a str>,
    origin: bool,
}

impl Call<'_> {
    fn access_id(&self) -> String {
        id(self.ms, self.n * 2)
    }

    fn events(&self) -> Vec<Value> {
        let mut meta = json!({"protocol_era": "2025", "arguments": self.arguments});
        if self.origin {
            meta["auth_method"] = json!("stdio");
        }
        let blocked = self.end == Some("blocked");
        let access = json!({
            "event_id": self.access_id(), "timestamp": time(self.ms), "event_type": "tool_access",
            "user_id": self.user, "tool_name": "echo", "action": "tools/call",
            "result": if blocked { "blocked" } else { "initiated" },
            "metadata": meta, "risk_level": if blocked { "critical" } else { "low" },
            "compliance_tags": self.tags, "session_id": format!("s-{}", self.user),
            "upstream": "example", "linked_event_id": null,
        });
        let Some(result) = self.end else {
            return vec![access];
        };
        let mut end_meta =
            json!({"protocol_era": "2025", "auth_method": "stdio", "execution_time_us": 900});
        if blocked {
            end_meta["reason"] = json!("risk critical: shell metacharacters sent to echo");
            end_meta["error_code"] = json!(-32010);
        }
        let end = json!({
            "event_id": id(self.ms + 1, self.n * 2 + 1), "timestamp": time(self.ms + 1),
            "event_type": if result == "success" { "tool_execution" } else { "tool_failure" },
            "user_id": self.user, "tool_name": "echo", "action": "tools/call", "result": result,
            "metadata": end_meta, "risk_level": "low", "compliance_tags": self.tags,
            "session_id": format!("s-{}", self.user), "upstream": "example",
            "linked_event_id": self.access_id(),
        });
        vec![access, end]
    }
}

fn call<'a>(ms: u64, n: u64, user: &'a str, arguments: Value, tags: &'a [&'a str]) -> Call<'a> {
    Call {
        ms,
        n,
        user,
        arguments,
        tags,
        end: Some("success"),
        origin: true,
    }
}

/// Records `calls` in the store of `store`, as its proxy would.
fn import(store: &TestStore, calls: &[Call<'_>]) {
    record_events(
        store,
        &calls.iter().flat_map(Call::events).collect::<Vec<_>>(),
    );
}

/// Writes `events` into the store as a proxy's audit writer does (a journal of its own,
/// personal fields sealed as configured, checkpointed, indexed): the store's own trail, which
/// the rules on how calls are recorded read. Events brought in by `import` are another
/// trail's, evidence of nothing here (helper-116 H1; see [`import_events`]).
fn record_events(store: &TestStore, events: &[Value]) {
    // On a thread of its own: a test running in a runtime cannot start another.
    std::thread::scope(|s| s.spawn(|| write_events(store, events)).join().unwrap());
}

fn write_events(store: &TestStore, events: &[Value]) {
    use mcp_audit_proxy::audit::{AuditEvent, writer};
    use mcp_audit_proxy::config::{Config, Durability};
    let config = Config::load(&store.config).unwrap();
    let root = &config.audit.store_dir;
    let opened =
        mcp_audit_proxy::store::Store::open_journal(root, config.audit.segment_bytes).unwrap();
    let (mut journal, keeper, lock) = opened.into_parts(root);
    if config.audit.encrypt_personal_data {
        journal.encrypt_personal_data(root);
    }
    let plan = writer::CheckpointPlan::new(
        &journal,
        config.audit.signer.clone(),
        config.audit.checkpoint_every_events,
        config.audit.checkpoint_interval,
    );
    let (sink, threads) = writer::start_with(
        journal,
        keeper,
        Durability::Sync,
        config.audit.flush_interval,
        1024,
        plan,
    )
    .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        for e in events {
            let event: AuditEvent = serde_json::from_value(e.clone()).unwrap();
            sink.record(&event).unwrap().wait().await.unwrap();
        }
        sink.close().await;
    });
    threads.join();
    drop(lock);
}

/// Imports `events` (one JSON line each) into the store with `import`: marked imported.
fn import_events(store: &TestStore, events: &[Value]) {
    let text: String = events.iter().map(|e| format!("{e}\n")).collect();
    let file = store.dir.path().join("events.jsonl");
    std::fs::write(&file, text).unwrap();
    let out = run(&store.config, &["import", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "import: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The store's rules after a change to its trail: the command fails (exit 1) and every
/// integrity rule is `non_compliant` with an explanation that `says` what was found.
fn integrity_fails(store: &TestStore, says: &str) -> Vec<Value> {
    let (code, rules) = assess(store, &[]);
    assert_eq!(code, 1);
    for id in INTEGRITY {
        let r = rule(&rules, id);
        assert_eq!(r["status"], "non_compliant", "{r:#}");
        assert!(
            r["explanation"].as_str().unwrap().contains(says),
            "{says:?}: {r:#}"
        );
    }
    rules
}

/// `compliance --regulation all --json`: the exit code and each rule by id.
fn assess(store: &TestStore, extra: &[&str]) -> (i32, Vec<Value>) {
    let mut args = vec!["compliance", "--regulation", "all", "--json"];
    args.extend(extra);
    let out = run(&store.config, &args);
    let code = out.status.code().expect("exit code");
    assert!(
        code != 2,
        "compliance failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let assessments: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("an assessment per line"))
        .collect();
    let regs: Vec<&str> = assessments
        .iter()
        .map(|a| a["regulation"].as_str().unwrap())
        .collect();
    assert_eq!(regs, ["gdpr", "hipaa", "pci_dss"]);
    let rules = assessments
        .iter()
        .flat_map(|a| a["rules"].as_array().unwrap().clone())
        .collect();
    (code, rules)
}

fn rule<'a>(rules: &'a [Value], id: &str) -> &'a Value {
    rules
        .iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("no rule {id}"))
}

fn status<'a>(rules: &'a [Value], id: &str) -> &'a str {
    rule(rules, id)["status"].as_str().unwrap()
}

fn ids(rule: &Value) -> Vec<&str> {
    rule["evidence"]["event_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect()
}

/// A store whose checkpoints are signed (the key beside the config).
fn signed_store(extra: &str) -> TestStore {
    let store = TestStore::new(&format!("signing_key_file = \"signing.key\"\n{extra}"));
    keygen(&store.dir.path().join("signing.key")).unwrap();
    store
}

#[test]
fn a_clean_store_passes_every_rule_of_every_regulation() {
    let store = signed_store("");
    let t = now_ms() - 2 * 86_400_000;
    let blocked = Call {
        end: Some("blocked"),
        ..call(t + 3000, 3, "bob", json!({"text": "x; rm -rf /"}), &[])
    };
    import(
        &store,
        &[
            call(t, 0, "alice", json!({"text": "hello"}), &[]),
            call(
                t + 1000,
                1,
                "alice",
                json!({"to": "[REDACTED:email]", "text": "hi"}),
                &["gdpr"],
            ),
            call(
                t + 2000,
                2,
                "carol",
                json!({"card": "[REDACTED:payment_card]"}),
                &["pci_dss"],
            ),
            blocked,
        ],
    );
    let (code, rules) = assess(&store, &[]);
    for r in &rules {
        assert_eq!(r["status"], "compliant", "{r:#}");
    }
    assert_eq!(code, 0);
    let active = rule(&rules, "pci_dss.10.2.1.audit_logs_active");
    assert_eq!(active["evidence"]["counts"]["tool_access"], 4);
    assert_eq!(active["evidence"]["counts"]["ended"], 4);
    let refusals = rule(&rules, "pci_dss.10.2.1.4.invalid_access_attempts");
    assert_eq!(refusals["evidence"]["counts"]["refused_or_blocked"], 1);

    // The table says the same, rule by rule.
    let out = run(&store.config, &["compliance", "--regulation", "pci_dss"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("PCI DSS v4.0 from ")
            && text.contains("score 100% (9 compliant, 0 non-compliant, 0 not assessable)"),
        "{text}"
    );
    assert!(
        text.contains("[compliant] Each event records user, type, time"),
        "{text}"
    );
}

#[test]
fn a_card_number_left_in_a_retrys_input_responses_fails_the_pan_rule() {
    // Review helper-114 #6: the survey of data left in clear read the arguments and error
    // texts only, so a card in a 2026-07-28 retry's stored `inputResponses` passed.
    let store = TestStore::new("encrypt_personal_data = false\n");
    let t = now_ms() - 86_400_000;
    let mut events = call(t, 0, "alice", json!({"text": "x"}), &["pci_dss"]).events();
    events[0]["metadata"]["input_responses"] =
        json!({"pay": {"action": "accept", "content": {"card": "4111 1111 1111 1111"}}});
    import_events(&store, &events);
    let (_, rules) = assess(&store, &[]);
    let r = rule(&rules, "pci_dss.3.5.1.pan_unreadable");
    assert_eq!(r["status"], "non_compliant", "{r:#}");
    assert_eq!(ids(r), [id(t, 0)]);
}

#[test]
fn a_faulty_store_fails_the_rules_that_see_its_faults_and_names_the_events() {
    let store = TestStore::new(
        "encrypt_personal_data = false\n[retention]\npci_dss = \"90d\"\nhipaa = \"1y\"\n",
    );
    let t = now_ms() - 2 * 86_400_000;
    let lost = Call {
        end: None,
        ..call(t, 0, "alice", json!({"text": "hello"}), &[])
    };
    let card = call(
        t + 1000,
        1,
        "alice",
        json!({"card": "4111 1111 1111 1111"}),
        &["pci_dss"],
    );
    let anonymous = call(t + 2000, 2, "anonymous", json!({"text": "x"}), &["pci_dss"]);
    let no_origin = Call {
        origin: false,
        ..call(t + 3000, 3, "bob", json!({"text": "x"}), &[])
    };
    let health = call(
        t + 4000,
        4,
        "bob",
        json!({"note": "patient diagnosed with type 2 diabetes"}),
        &["hipaa"],
    );
    // Eight years old, tagged gdpr: past the default 7 years, still stored.
    let old_ms = now_ms() - 8 * 31_557_600_000;
    let old = call(old_ms, 5, "dave", json!({"text": "x"}), &["gdpr"]);
    import(&store, &[old, lost, card, anonymous, no_origin, health]);
    let (code, rules) = assess(&store, &[]);
    assert_eq!(code, 1);

    let r = rule(&rules, "pci_dss.10.2.1.audit_logs_active");
    assert_eq!(r["status"], "non_compliant");
    assert_eq!(r["evidence"]["counts"]["without_end"], 1);
    assert_eq!(ids(r), [id(t, 0)]);

    let r = rule(&rules, "pci_dss.3.5.1.pan_unreadable");
    assert_eq!(r["status"], "non_compliant");
    assert_eq!(ids(r), [id(t + 1000, 2)]);

    let r = rule(&rules, "pci_dss.10.2.1.1.individual_access");
    assert_eq!(r["status"], "non_compliant");
    assert!(ids(r).contains(&id(t + 2000, 4).as_str()), "{r:#}");

    let r = rule(&rules, "pci_dss.10.2.2.event_details");
    assert_eq!(r["status"], "non_compliant");
    assert_eq!(r["evidence"]["counts"]["missing_origin"], 1);
    assert_eq!(ids(r), [id(t + 3000, 6)]);

    let r = rule(&rules, "pci_dss.10.5.1.retention");
    assert_eq!(r["status"], "non_compliant");
    assert!(
        r["evidence"]["config_keys"]
            .as_array()
            .unwrap()
            .contains(&json!("retention.pci_dss = \"90d\"")),
        "{r:#}"
    );
    assert_eq!(
        status(&rules, "hipaa.164.316_b_2_i.retention"),
        "non_compliant"
    );
    assert_eq!(
        status(&rules, "hipaa.164.502_b.minimum_necessary"),
        "non_compliant"
    );
    // No key: the chain verifies, but nothing proves it against someone who can write.
    assert_eq!(status(&rules, "hipaa.164.312_c_1.integrity"), "compliant");
    assert_eq!(
        status(&rules, "hipaa.164.312_c_2.authentication"),
        "non_compliant"
    );
    assert_eq!(
        status(&rules, "pci_dss.10.3.4.change_detection"),
        "non_compliant"
    );
    // Personal fields in clear: not erasable, not encrypted.
    assert_eq!(status(&rules, "gdpr.art17.erasure"), "non_compliant");
    assert_eq!(
        status(&rules, "hipaa.164.312_a_2_iv.encryption"),
        "non_compliant"
    );
    let r = rule(&rules, "gdpr.art5_1_e.storage_limitation");
    assert_eq!(r["status"], "non_compliant");
    // The access and its end, both tagged gdpr.
    assert_eq!(ids(r), [id(old_ms, 10), id(old_ms + 1, 11)]);
    // Nothing was refused: that cannot be judged either way.
    assert_eq!(
        status(&rules, "pci_dss.10.2.1.4.invalid_access_attempts"),
        "not_assessable"
    );
}

#[test]
fn an_empty_window_and_an_unverified_chain_are_not_assessable_and_no_store_is_an_error() {
    let store = signed_store("");
    let t = now_ms() - 40 * 86_400_000;
    import(&store, &[call(t, 0, "alice", json!({"text": "x"}), &[])]);
    // The default window (30 days) holds nothing; the chain is not walked.
    let (code, rules) = assess(&store, &["--no-verify"]);
    assert_eq!(code, 0, "not_assessable fails nothing");
    for id in [
        "pci_dss.10.2.1.audit_logs_active",
        "pci_dss.10.2.2.event_details",
        "pci_dss.3.5.1.pan_unreadable",
        "pci_dss.10.3.4.change_detection",
        "hipaa.164.312_c_1.integrity",
        "gdpr.art30.records",
    ] {
        assert_eq!(status(&rules, id), "not_assessable", "{id}");
        assert!(
            !rule(&rules, id)["explanation"].as_str().unwrap().is_empty(),
            "{id} says why"
        );
    }
    // The table shows them as such.
    let out = run(
        &store.config,
        &["compliance", "--regulation", "hipaa", "--no-verify"],
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("[not assessable] Audit controls record every tool call"),
        "{text}"
    );
    // No events: no score, however much of the configuration passes.
    assert!(
        text.contains("score n/a (no events in the window)") && !text.contains("100%"),
        "{text}"
    );
    // A window that holds the call assesses it.
    let since = time(t - 1000);
    let (_, rules) = assess(&store, &["--since", &since]);
    assert_eq!(
        status(&rules, "pci_dss.10.2.1.audit_logs_active"),
        "compliant"
    );

    let empty = TestStore::new("");
    let out = run(&empty.config, &["compliance", "--regulation", "gdpr"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no audit store at") && err.contains("hint:"),
        "{err}"
    );
    let out = run(&empty.config, &["compliance", "--regulation", "sox"]);
    assert_eq!(out.status.code(), Some(2));
}

/// The rules that rest on the chain walk: the trail is as written.
const INTEGRITY: [&str; 3] = [
    "gdpr.art5_1_f.integrity",
    "hipaa.164.312_c_1.integrity",
    "pci_dss.10.3.4.change_detection",
];

/// A segment file of the store's first journal.
fn first_segment(store: &TestStore) -> std::path::PathBuf {
    let journal = store.store_dir().join("journal");
    std::fs::read_dir(&journal)
        .unwrap()
        .flatten()
        .map(|d| d.path())
        .filter(|p| p.is_dir())
        .flat_map(|d| std::fs::read_dir(d).unwrap().flatten().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "journal"))
        .expect("a segment")
}

/// A signed store with two calls a day ago, by alice and bob.
fn two_calls_yesterday() -> TestStore {
    let store = signed_store("");
    let t = now_ms() - 86_400_000;
    import(
        &store,
        &[
            call(t, 0, "alice", json!({"text": "x"}), &[]),
            call(t + 1000, 1, "bob", json!({"text": "y"}), &[]),
        ],
    );
    store
}

#[test]
fn a_changed_record_fails_integrity_and_passes_nothing_read_from_the_window() {
    let store = two_calls_yesterday();
    // The tool name of the last record, in the clear skeleton, changed on disk.
    let segment = first_segment(&store);
    let mut bytes = std::fs::read(&segment).unwrap();
    let needle = b"\"tool_name\":\"echo\"";
    let at = bytes
        .windows(needle.len())
        .rposition(|w| w == needle)
        .expect("the tool name in the record");
    bytes[at + needle.len() - 2] = b'p';
    std::fs::write(&segment, bytes).unwrap();

    let rules = integrity_fails(&store, "the store does not verify");
    // The read's finding sends the auditor to `verify`, never to a reindex that would hide it.
    let said: Vec<&str> = rules
        .iter()
        .map(|r| r["explanation"].as_str().unwrap())
        .collect();
    assert!(said.iter().all(|e| !e.contains("reindex")), "{said:#?}");
    assert!(
        said.iter()
            .any(|e| e.contains("run `mcp-audit-proxy verify`")),
        "{said:#?}"
    );
    for r in &rules {
        let id = r["id"].as_str().unwrap();
        if !id.contains("integrity")
            && !id.contains("change_detection")
            && !id.contains("retention")
            && !id.contains("authentication")
        {
            assert_ne!(r["status"], "compliant", "{r:#}");
        }
    }
}

/// A record rewritten with a checksum to match reads as an event: only the hash chain shows
/// the change, walked by `compliance` in the same pass that reads the window.
#[test]
fn a_record_rewritten_with_its_checksum_fails_integrity_through_the_chain() {
    let store = two_calls_yesterday();
    let (code, rules) = assess(&store, &[]);
    assert_eq!(
        status(&rules, "gdpr.art5_1_f.integrity"),
        "compliant",
        "exit {code}"
    );
    let segment = first_segment(&store);
    // The first record's tool name changed, and its length and checksum set to match.
    let mut bytes = std::fs::read(&segment).unwrap();
    let start = 16;
    let len = u32::from_le_bytes(bytes[start..start + 4].try_into().unwrap()) as usize;
    let payload = String::from_utf8(bytes[start + 8..start + 8 + len].to_vec()).unwrap();
    assert!(payload.contains("\"tool_name\":\"echo\""), "{payload}");
    let changed = payload.replacen("\"tool_name\":\"echo\"", "\"tool_name\":\"echo2\"", 1);
    let mut framed = (changed.len() as u32).to_le_bytes().to_vec();
    let mut crc = crc32fast::Hasher::new();
    crc.update(&framed);
    crc.update(changed.as_bytes());
    framed.extend_from_slice(&crc.finalize().to_le_bytes());
    framed.extend_from_slice(changed.as_bytes());
    bytes.splice(start..start + 8 + len, framed);
    std::fs::write(&segment, bytes).unwrap();

    // The chain walk's finding is named.
    let rules = integrity_fails(&store, "edited");
    // Nothing stopped the window's reading: the rules that rest on its events still judge.
    assert_eq!(
        status(&rules, "pci_dss.10.2.2.event_details"),
        "compliant",
        "{rules:#?}"
    );
}

#[test]
fn expired_gdpr_events_behind_many_kept_by_a_longer_tag_are_found() {
    // 14 events (7 calls) tagged only gdpr, 60 days old: expired under gdpr = 30d. Newer,
    // 40 days old, 476 events (238 calls) tagged gdpr and hipaa: kept by hipaa = 6y. The
    // expired ones lie behind more than a page of kept ones.
    let store = TestStore::new("[retention]\ngdpr = \"30d\"\nhipaa = \"6y\"\n");
    let old = now_ms() - 60 * 86_400_000;
    let newer = now_ms() - 40 * 86_400_000;
    let mut calls: Vec<Call<'_>> = (0..7)
        .map(|n| call(old + n * 10, n, "alice", json!({"text": "x"}), &["gdpr"]))
        .collect();
    calls.extend((0..238).map(|n| {
        call(
            newer + n * 10,
            100 + n,
            "alice",
            json!({"text": "x"}),
            &["gdpr", "hipaa"],
        )
    }));
    import(&store, &calls);
    let (code, rules) = assess(&store, &[]);
    let r = rule(&rules, "gdpr.art5_1_e.storage_limitation");
    assert_eq!(r["status"], "non_compliant", "{r:#}");
    assert_eq!(r["evidence"]["counts"]["expired_gdpr_events_found"], 14);
    assert_eq!(code, 1);
    // The same number `retention` (the plan) reports.
    let out = run(&store.config, &["retention"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("14"), "{text}");
}

#[test]
fn times_before_1970_and_a_future_since_are_refused_with_exit_2_not_a_panic() {
    let store = TestStore::new("");
    let t = now_ms() - 86_400_000;
    import(&store, &[call(t, 0, "alice", json!({"text": "x"}), &[])]);
    let cases: [&[&str]; 4] = [
        &[
            "compliance",
            "--regulation",
            "all",
            "--until",
            "1969-12-31T00:00:00Z",
        ],
        &[
            "compliance",
            "--regulation",
            "all",
            "--since",
            "1969-12-01T00:00:00Z",
        ],
        &["compliance", "--regulation", "all", "--since", "99999999d"],
        &[
            "report",
            "executive",
            "--format",
            "json",
            "--until",
            "1970-01-01T00:00:00Z",
        ],
    ];
    for args in cases {
        let out = run(&store.config, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("before 1970"), "{args:?}: {err}");
    }
    // Every command that takes a time refuses one before 1970 the same way (`alerts`
    // crashed on it, `anomalies` and `analyze` took it as 1970).
    for command in [
        &["alerts"][..],
        &["anomalies"],
        &["analyze", "tools"],
        &["events"],
        &["export", "--out", "never-written.export"],
    ] {
        for bound in [
            ["--since", "99999999d"],
            ["--until", "1969-12-31T23:59:59Z"],
        ] {
            let args: Vec<&str> = command.iter().chain(&bound).copied().collect();
            let out = run(&store.config, &args);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
            assert!(
                err.contains("before 1970-01-01T00:00:00Z") && !err.contains("panicked"),
                "{args:?}: {err}"
            );
        }
    }
    // The default start (30 days before --until) is clamped to 1970: a window, not a panic.
    let out = run(
        &store.config,
        &[
            "compliance",
            "--regulation",
            "all",
            "--until",
            "1970-01-01T00:00:00Z",
            "--json",
        ],
    );
    assert_ne!(
        out.status.code(),
        Some(101),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ne!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = run(
        &store.config,
        &[
            "compliance",
            "--regulation",
            "all",
            "--since",
            "2999-01-01T00:00:00Z",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--since 2999-01-01T00:00:00Z is in the future"),
        "{err}"
    );
}

#[test]
fn the_help_says_what_json_prints_and_the_default_window() {
    let out = Command::new(proxy_bin())
        .args(["compliance", "--help"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("one assessment object per line"), "{text}");
    assert!(!text.contains("one finding per line"), "{text}");
    assert!(text.contains("30 days before --until"), "{text}");
}

/// Whether another process holds `index.lock` (a lock we can take is released at once).
fn index_lock_taken(path: &Path) -> bool {
    let Ok(f) = std::fs::File::options().write(true).open(path) else {
        return false;
    };
    f.try_lock().is_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_window_read_from_the_journals_is_quick_and_agrees_with_the_index() {
    let store = TestStore::new("");
    // 1500 calls (3000 events), one every 5 hours over about 10 months.
    let start = now_ms() - 320 * 86_400_000;
    let calls: Vec<Call<'_>> = (0..1500)
        .map(|n| {
            call(
                start + n * 5 * 3_600_000,
                n,
                "alice",
                json!({"text": "x"}),
                &[],
            )
        })
        .collect();
    import(&store, &calls);
    let window = [
        "--since",
        &time(start - 86_400_000),
        "--until",
        &time(now_ms() - 3_600_000),
    ]
    .map(str::to_string);
    let window: Vec<&str> = window.iter().map(String::as_str).collect();
    let mut args = vec!["--no-verify"];
    args.extend(&window);
    let (code, through_index) = assess(&store, &args);

    // A running proxy holds the index: compliance reads the journals.
    let mut holder = tokio::process::Command::new(proxy_bin());
    holder
        .args(["stdio", "--user", "carol", "--config"])
        .arg(&store.config)
        .arg("--")
        .arg(common::example_server())
        .env("RUST_LOG", "warn");
    let mut holder = common::LineClient::spawn(holder);
    holder.initialize().await;
    let lock = store.store_dir().join("index.lock");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !index_lock_taken(&lock) {
        assert!(
            std::time::Instant::now() < deadline,
            "the proxy never took the index"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let began = std::time::Instant::now();
    let (code_j, from_journals) = assess(&store, &args);
    let took = began.elapsed();
    eprintln!("compliance from the journals took {took:?}");
    assert!(holder.finish().await.success());
    assert!(took < Duration::from_secs(20), "took {took:?}");
    assert_eq!(code, code_j);
    for (a, b) in through_index.iter().zip(&from_journals) {
        assert_eq!(a["id"], b["id"]);
        assert_eq!(a["status"], b["status"], "{a:#} / {b:#}");
        assert_eq!(
            a["evidence"]["counts"], b["evidence"]["counts"],
            "{a:#} / {b:#}"
        );
    }
    assert_eq!(
        rule(&from_journals, "pci_dss.10.2.1.audit_logs_active")["evidence"]["counts"]["tool_access"],
        1500
    );
}

/// Found by a fresh pair of eyes: when the window could not be read (keys unreadable to the
/// auditor's account, a damaged segment) and no rule failed, `compliance` said "score n/a (no
/// events in the window)" and exited 0. It is no verdict: exit 2, saying what could not be
/// read, and the table does not claim the window was empty.
#[test]
fn a_window_that_could_not_be_read_is_no_verdict_exit_2() {
    let store = two_calls_yesterday();
    // The user's key file damaged: the personal fields of every event cannot be opened.
    let keys = store.store_dir().join("keys");
    let mut damaged = 0;
    for key in std::fs::read_dir(&keys).unwrap() {
        std::fs::write(key.unwrap().path(), b"not a key").unwrap();
        damaged += 1;
    }
    assert!(damaged > 0, "the store has a user key");
    let out = run(
        &store.config,
        &["compliance", "--regulation", "gdpr", "--no-verify"],
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    assert!(stderr.contains("could not all be read"), "{stderr}");
    assert!(!stdout.contains("no events in the window"), "{stdout}");
}

/// helper-94: `events --tag GDPR` (and `pci-dss`) silently matched nothing, where `--type`
/// takes either spelling.
#[test]
fn the_tag_filter_takes_built_in_tags_in_any_case() {
    let store = TestStore::new("");
    let t = now_ms() - 86_400_000;
    import(
        &store,
        &[
            call(t, 0, "alice", json!({"text": "x"}), &["gdpr"]),
            call(t + 10, 1, "bob", json!({"text": "y"}), &["pci_dss"]),
        ],
    );
    for tag in ["gdpr", "GDPR", "pci-dss", "PCI_DSS"] {
        let out = run(
            &store.config,
            &["events", "--json", "--limit", "100", "--tag", tag],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        // The access and the end of the one call with that tag.
        assert_eq!(text.lines().count(), 2, "--tag {tag}: {text}");
    }
}

#[test]
fn imported_events_are_no_evidence_of_how_this_stores_proxies_record_calls() {
    // helper-116 H1: two hand-written lines (a refused call's access and end) imported into
    // a store no proxy ever wrote made HIPAA 164.312(b) and PCI DSS 10.2.1, 10.2.1.4 and
    // 10.7.2 compliant.
    let own_recording = [
        "gdpr.art30.records",
        "hipaa.164.308_a_5_ii_C.log_in_monitoring",
        "hipaa.164.312_b.audit_controls",
        "pci_dss.10.2.1.audit_logs_active",
        "pci_dss.10.2.1.4.invalid_access_attempts",
        "pci_dss.10.7.2.audit_failures",
    ];
    let store = signed_store("");
    let t = now_ms() - 2 * 86_400_000;
    let blocked = Call {
        end: Some("blocked"),
        ..call(t, 0, "bob", json!({"text": "x; rm -rf /"}), &[])
    };
    // An imported call left open too: another trail's gap, not this store's.
    let open = Call {
        end: None,
        ..call(t + 500, 1, "bob", json!({"text": "y"}), &["gdpr"])
    };
    let mut events = blocked.events();
    events.extend(open.events());
    import_events(&store, &events);
    let (_, rules) = assess(&store, &[]);
    for id in own_recording {
        let r = rule(&rules, id);
        assert_eq!(r["status"], "not_assessable", "{r:#}");
    }
    assert!(
        rule(&rules, "pci_dss.10.7.2.audit_failures")["explanation"]
            .as_str()
            .unwrap()
            .contains("imported"),
        "{rules:#?}"
    );
    // Beside the store's own calls, the imported ones are left out of the counts: the open
    // imported call fails nothing, the imported refusal is not the store's.
    import(
        &store,
        &[
            call(t + 1000, 2, "alice", json!({"text": "hello"}), &[]),
            Call {
                end: Some("blocked"),
                ..call(t + 2000, 3, "carol", json!({"text": "a; b"}), &[])
            },
        ],
    );
    let (code, rules) = assess(&store, &[]);
    for id in own_recording {
        assert_eq!(status(&rules, id), "compliant", "{:#}", rule(&rules, id));
    }
    assert_eq!(code, 0, "{rules:#?}");
    let active = rule(&rules, "pci_dss.10.2.1.audit_logs_active");
    assert_eq!(active["evidence"]["counts"]["tool_access"], 2, "{active:#}");
    assert_eq!(
        active["evidence"]["counts"]["imported_events_not_counted"], 3,
        "{active:#}"
    );
    let refusals = rule(&rules, "pci_dss.10.2.1.4.invalid_access_attempts");
    assert_eq!(refusals["evidence"]["counts"]["refused_or_blocked"], 1);
}

#[test]
fn a_loss_the_store_knows_of_fails_integrity_under_no_verify_too() {
    // helper-116 M3: `--no-verify` skipped the notes of records known lost (a journal
    // deleted after it was indexed): score 100%, exit 0. Reading them costs nothing.
    let store = signed_store("");
    let t = now_ms() - 2 * 86_400_000;
    import(&store, &[call(t, 0, "alice", json!({"text": "a"}), &[])]);
    import(
        &store,
        &[call(t + 1000, 1, "bob", json!({"text": "b"}), &[])],
    );
    let journals = store.store_dir().join("journal");
    let mut first: Vec<_> = std::fs::read_dir(&journals)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    first.sort();
    assert_eq!(first.len(), 2, "{first:?}");
    std::fs::remove_dir_all(&first[0]).unwrap();
    let (code, rules) = assess(&store, &["--no-verify"]);
    assert_eq!(code, 1, "{rules:#?}");
    for id in INTEGRITY {
        let r = rule(&rules, id);
        assert_eq!(r["status"], "non_compliant", "{r:#}");
        assert!(
            r["explanation"]
                .as_str()
                .unwrap()
                .contains("no longer hold"),
            "{r:#}"
        );
    }
    // The checkpoints were not looked at: not judged unsigned on empty facts (review).
    let signing = rule(&rules, "hipaa.164.312_c_2.authentication");
    assert_eq!(signing["status"], "not_assessable", "{signing:#}");
}
