//! `import`, `anomalies` and `analyze` through the real binary (issue 10 items 1, 2 and 6):
//! import errors with their line numbers and nothing written; imported events found by
//! `events` filters and verified; the commands' refusals and escaping. The detectors'
//! quality on a labelled month through the commands is in tests/anomalies_cli.rs.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{TestStore, cli as run, cli_ok as ok, proxy_bin};
use serde_json::{Value, json};

/// An access event and its end, as the proxy writes them (ids from `n`, times from `ms`).
fn pair(n: u64, ms: u64, user: &str, tool: &str, result: &str) -> [Value; 2] {
    let id = |k: u64| ulid::Ulid::from_parts(ms + k, u128::from(n * 2 + k)).to_string();
    let at = |k: u64| {
        humantime::format_rfc3339_micros(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms + k),
        )
        .to_string()
    };
    let access = json!({
        "event_id": id(0), "timestamp": at(0), "event_type": "tool_access",
        "user_id": user, "tool_name": tool, "action": "tools/call", "result": "initiated",
        "metadata": {"protocol_era": "2025", "arguments": {"text": "x"}},
        "risk_level": "low", "compliance_tags": [], "session_id": format!("s-{user}"),
        "upstream": "example", "linked_event_id": null,
    });
    let end = json!({
        "event_id": id(1), "timestamp": at(1),
        "event_type": if result == "success" { "tool_execution" } else { "tool_failure" },
        "user_id": user, "tool_name": tool, "action": "tools/call", "result": result,
        "metadata": {"protocol_era": "2025", "execution_time_us": 1500},
        "risk_level": "low", "compliance_tags": [], "session_id": format!("s-{user}"),
        "upstream": "example", "linked_event_id": id(0),
    });
    [access, end]
}

fn lines(events: &[Value]) -> String {
    events.iter().map(|e| format!("{e}\n")).collect()
}

fn small_file() -> Vec<Value> {
    let t0 = 1_790_000_000_000;
    let mut v = Vec::new();
    for (n, user) in ["alice", "bob", "alice", "bob", "carol"].iter().enumerate() {
        v.extend(pair(
            n as u64,
            t0 + n as u64 * 1000,
            user,
            "echo",
            "success",
        ));
    }
    v
}

/// A new store holding [`small_file`], imported.
fn small_store() -> TestStore {
    let store = TestStore::new("");
    let file = store.dir.path().join("small.jsonl");
    std::fs::write(&file, lines(&small_file())).unwrap();
    ok(&store.config, &["import", file.to_str().unwrap()]);
    store
}

fn no_journal_records(store: &TestStore) -> bool {
    let journal = store.store_dir().join("journal");
    !journal.exists()
        || walk(&journal)
            .iter()
            .all(|p| p.extension().is_none_or(|e| e != "journal"))
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// The first journal segment file of `store`.
fn first_segment(store: &TestStore) -> PathBuf {
    walk(&store.store_dir().join("journal"))
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "journal"))
        .expect("a journal segment")
}

fn no_spool(store: &TestStore) -> bool {
    std::fs::read_dir(store.store_dir())
        .map(|d| {
            d.flatten()
                .all(|e| !e.file_name().to_string_lossy().starts_with(".import-"))
        })
        .unwrap_or(true)
}

#[test]
fn import_refuses_bad_lines_with_their_numbers_and_writes_nothing() {
    let store = TestStore::new("");
    let good = small_file();
    let mut text = String::new();
    for (i, e) in good.iter().enumerate() {
        match i + 1 {
            3 => text.push_str("{\"event_id\": \"01\n"), // not JSON
            5 => {
                let mut e = e.clone();
                e["risk_level"] = json!("extreme"); // a bad field
                text.push_str(&format!("{e}\n"));
            }
            7 => text.push_str(&format!("{}\n", good[1])), // line 2's id again
            9 => {
                let mut e = e.clone();
                e["metadata"]["colour"] = json!("red"); // a member this version would drop
                text.push_str(&format!("{e}\n"));
            }
            _ => text.push_str(&format!("{e}\n")),
        }
    }
    let file = store.dir.path().join("bad.jsonl");
    std::fs::write(&file, text).unwrap();
    let out = run(&store.config, &["import", file.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("4 line(s) cannot be imported; nothing was imported"),
        "{stderr}"
    );
    assert!(stderr.contains("line 3: not an audit event"), "{stderr}");
    assert!(
        stderr.contains("line 5: not an audit event: unknown variant `extreme`"),
        "{stderr}"
    );
    let repeated = good[1]["event_id"].as_str().unwrap();
    assert!(
        stderr.contains(&format!("line 7: event_id {repeated} repeats line 2")),
        "{stderr}"
    );
    assert!(
        stderr.contains("line 9: unknown member(s) metadata.colour"),
        "{stderr}"
    );
    assert!(stderr.contains("hint: "), "{stderr}");
    assert!(no_journal_records(&store), "an event was written");
    assert!(no_spool(&store));

    // Good lines go in; importing one of them again is refused by line, nothing added.
    let file = store.dir.path().join("good.jsonl");
    std::fs::write(&file, lines(&good)).unwrap();
    let said = ok(&store.config, &["import", file.to_str().unwrap()]);
    assert!(
        said.contains(&format!("imported {} events", good.len())),
        "{said}"
    );
    let extra = pair(99, 1_790_000_100_000, "dave", "echo", "success");
    let again = store.dir.path().join("again.jsonl");
    std::fs::write(
        &again,
        lines(&[extra[0].clone(), extra[1].clone(), good[4].clone()]),
    )
    .unwrap();
    let out = run(&store.config, &["import", again.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let dup = good[4]["event_id"].as_str().unwrap();
    assert!(
        stderr.contains(&format!("line 3: event_id {dup} is already in the store")),
        "{stderr}"
    );
    let all = ok(&store.config, &["events", "--json", "--limit", "1000"]);
    assert_eq!(all.lines().count(), good.len(), "{all}");
    assert!(no_spool(&store));
}

#[test]
fn imported_events_keep_ids_and_times_are_found_by_filters_and_verify() {
    let store = TestStore::new("");
    let good = small_file();
    let file = store.dir.path().join("good.jsonl");
    std::fs::write(&file, lines(&good)).unwrap();
    // From stdin, as `-`.
    let mut child = Command::new(proxy_bin())
        .args(["import", "-", "--config"])
        .arg(&store.config)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(lines(&good).as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let bob = ok(
        &store.config,
        &["events", "--user", "bob", "--json", "--limit", "100"],
    );
    let got: Vec<Value> = bob
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut expected: Vec<&Value> = good.iter().filter(|e| e["user_id"] == "bob").collect();
    expected.sort_by_key(|e| std::cmp::Reverse(e["event_id"].as_str().unwrap().to_string()));
    assert_eq!(got.len(), expected.len());
    for (g, e) in got.iter().zip(&expected) {
        assert_eq!(g["event_id"], e["event_id"]);
        assert_eq!(g["timestamp"], e["timestamp"]);
        // An access event is read with its end linked (the index joins them).
        let linked = if e["event_type"] == "tool_access" {
            good.iter()
                .find(|x| x["linked_event_id"] == e["event_id"])
                .map(|x| x["event_id"].clone())
                .unwrap()
        } else {
            e["linked_event_id"].clone()
        };
        assert_eq!(g["linked_event_id"], linked);
        assert_eq!(g["metadata"]["imported"]["source"], "-");
        assert!(g["metadata"]["imported"]["line"].as_u64().unwrap() >= 1);
    }
    let failures = ok(
        &store.config,
        &["events", "--type", "tool_failure", "--json"],
    );
    assert_eq!(failures.lines().count(), 0);
    let out = run(&store.config, &["verify"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A file out of id order is written in id order: a journal's ids grow in file order, as a
/// proxy writes them, and readers rely on it (the newest events are read from a journal's
/// end). The imported journal's records, as they lie on disk, come in id order, and the
/// `line` each event was imported from still names its place in the file.
#[test]
fn a_file_out_of_id_order_is_written_in_id_order() {
    let store = TestStore::new("encrypt_personal_data = false");
    let mut events = small_file();
    // Newest first, then two swapped: neither order nor its reverse.
    events.reverse();
    events.swap(2, 7);
    let file = store.dir.path().join("shuffled.jsonl");
    std::fs::write(&file, lines(&events)).unwrap();
    ok(&store.config, &["import", file.to_str().unwrap()]);
    let mut on_disk = Vec::new();
    for path in walk(&store.store_dir().join("journal")) {
        if path.extension().is_some_and(|e| e == "journal") {
            let bytes = std::fs::read(&path).unwrap();
            let text = String::from_utf8_lossy(&bytes);
            for (at, _) in text.match_indices("\"event_id\":\"") {
                on_disk.push(text[at + 12..at + 38].to_string());
            }
        }
    }
    let mut expected: Vec<String> = events
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_string())
        .collect();
    expected.sort();
    assert_eq!(on_disk, expected, "the journal's records in file order");
    let all = ok(&store.config, &["events", "--json", "--limit", "100"]);
    for l in all.lines() {
        let e: Value = serde_json::from_str(l).unwrap();
        let line = e["metadata"]["imported"]["line"].as_u64().unwrap() as usize;
        assert_eq!(events[line - 1]["event_id"], e["event_id"], "{e}");
    }
}

/// The traffic generator, built by `cargo test` next to the test binaries.
#[test]
fn an_imported_argument_past_the_bound_is_stored_cut_and_flagged_truncated() {
    // The default bound (audit.max_stored_argument_bytes = 256 KiB), as the proxy applies it.
    let store = TestStore::new("");
    let mut events = small_file();
    let long = "x".repeat(600_000);
    events[0]["metadata"]["arguments"] = json!({ "text": long });
    let file = store.dir.path().join("long.jsonl");
    std::fs::write(&file, lines(&events)).unwrap();
    ok(&store.config, &["import", file.to_str().unwrap()]);

    let got = ok(
        &store.config,
        &[
            "events",
            "show",
            events[0]["event_id"].as_str().unwrap(),
            "--json",
        ],
    );
    let shown: Value = serde_json::from_str(got.lines().next().unwrap()).unwrap();
    let stored = shown["metadata"]["arguments"]["text"].as_str().unwrap();
    assert!(stored.len() <= 256 << 10, "{} bytes stored", stored.len());
    assert!(long.starts_with(stored));
    let cuts = shown["metadata"]["truncated"].as_array().unwrap();
    assert_eq!(cuts.len(), 1, "{cuts:?}");
    assert_eq!(cuts[0]["pointer"], "/metadata/arguments/text");
    assert_eq!(cuts[0]["bytes"], 600_000);
    // The journal holds no record near the argument's size.
    let biggest = walk(&store.store_dir().join("journal"))
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "journal"))
        .map(|p| std::fs::metadata(p).unwrap().len())
        .max()
        .unwrap();
    assert!(biggest < 400_000, "a segment of {biggest} bytes");
    assert_eq!(run(&store.config, &["verify"]).status.code(), Some(0));
}

/// Found by a fresh pair of eyes: an empty file "imported 0 events" and made an empty journal
/// in the store, and events dated years ahead were taken (they then top every listing).
#[test]
fn an_empty_file_and_events_in_the_future_are_refused_and_nothing_is_written() {
    let store = TestStore::new("");
    let dir = store.dir.path();
    let empty = dir.join("empty.jsonl");
    std::fs::write(&empty, "\n\n").unwrap();
    let out = run(&store.config, &["import", empty.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("holds no event"), "{said}");
    let journals = store.store_dir().join("journal");
    let count = |p: &std::path::Path| std::fs::read_dir(p).map_or(0, |d| d.count());
    assert_eq!(count(&journals), 0, "no journal made for nothing");

    let ahead = 3 * 365 * 86_400_000u64;
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        + ahead;
    let id = ulid::Ulid::from_parts(at, 7).to_string();
    let when = humantime::format_rfc3339_micros(
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(at),
    );
    let line = format!(
        r#"{{"event_id":"{id}","timestamp":"{when}","event_type":"tool_access","user_id":"u","tool_name":"echo","action":"tools/call","result":"initiated","metadata":{{"protocol_era":"2025"}},"risk_level":"low","compliance_tags":[],"session_id":"s","upstream":"up","linked_event_id":null}}"#
    );
    let future = dir.join("future.jsonl");
    std::fs::write(&future, format!("{line}\n")).unwrap();
    let out = run(&store.config, &["import", future.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains("line 1") && said.contains("in the future"),
        "{said}"
    );
    assert_eq!(count(&journals), 0, "nothing written");
}

#[test]
fn analyze_user_refuses_a_user_the_store_has_never_seen() {
    // Found by a fresh pass: a misspelt or erased user got "0 calls" and a risk score of 0,
    // as if they had done nothing.
    let store = small_store();
    for user in ["nobody", "Alice", ""] {
        let out = run(&store.config, &["analyze", "user", user]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{user:?}: {err}");
        assert!(
            err.contains(&format!("holds no events and no key of user {user:?}")),
            "{err}"
        );
    }
    // A known user with no call in the window is a user with nothing to show.
    let quiet = ok(&store.config, &["analyze", "user", "carol", "--json"]);
    let quiet: Value = serde_json::from_str(&quiet).unwrap();
    assert_eq!(quiet["calls"], 0, "{quiet}");
    let all = ok(
        &store.config,
        &[
            "analyze",
            "user",
            "carol",
            "--since",
            "2026-01-01T00:00:00Z",
            "--json",
        ],
    );
    assert_eq!(serde_json::from_str::<Value>(&all).unwrap()["calls"], 1);
}

#[test]
fn a_damaged_trail_is_refused_unless_allowed_and_then_read_past() {
    // Found by a fresh pass: with 8 bytes overwritten in a journal, `analyze`, `anomalies`
    // and `report` printed figures that left calls out, saying so only in a log line.
    let store = small_store();
    let segment = first_segment(&store);
    let mut bytes = std::fs::read(&segment).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle..middle + 8].copy_from_slice(b"XXXXXXXX");
    std::fs::write(&segment, bytes).unwrap();
    let since = "2026-01-01T00:00:00Z";
    let commands: [&[&str]; 4] = [
        &["analyze", "tools", "--since", since],
        &["analyze", "user", "alice", "--since", since],
        &["anomalies", "--since", since],
        &["report", "executive", "--format", "json", "--since", since],
    ];
    for args in commands {
        let out = run(&store.config, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("is damaged") && err.contains("--allow-damaged"),
            "{args:?}: {err}"
        );
        assert!(out.stdout.is_empty(), "{args:?}: nothing printed");
        let allowed = [args, &["--allow-damaged"]].concat();
        let out = run(&store.config, &allowed);
        assert!(
            out.status.success(),
            "{allowed:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.stdout.is_empty());
    }
}

/// helper-90 M2/M3: an import that stopped part-way (a full disk, a kill) left its first
/// events in the store, and running it again was refused line by line ("already in the
/// store"), while the disk-full hint said to drop the first N lines of the file, which is
/// wrong when the file is not in id order (events are written in id order). `--skip-stored`
/// runs it again, skipping what is there.
#[test]
fn an_import_run_again_with_skip_stored_writes_only_what_is_missing() {
    let store = small_store();
    let first = small_file();
    let file = store.dir.path().join("small.jsonl");
    // Run again as it was: refused, and the refusal names the way out.
    let out = run(&store.config, &["import", file.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("already in the store") && err.contains("--skip-stored"),
        "{err}"
    );
    let said = ok(
        &store.config,
        &["import", "--skip-stored", file.to_str().unwrap()],
    );
    assert!(
        said.contains(&format!("all {} events", first.len())),
        "{said}"
    );
    // The same events, out of order, with two new calls among them.
    let mut more = first.clone();
    more.extend(pair(40, 1_790_000_100_000, "dave", "echo", "success"));
    more.extend(pair(41, 1_790_000_000_500, "erin", "echo", "error"));
    more.reverse();
    let file = store.dir.path().join("more.jsonl");
    std::fs::write(&file, lines(&more)).unwrap();
    let said = ok(
        &store.config,
        &["import", "--skip-stored", file.to_str().unwrap()],
    );
    assert!(
        said.contains("imported 4 events") && said.contains(&format!("skipped {}", first.len())),
        "{said}"
    );
    let events: Vec<Value> = ok(&store.config, &["events", "--json", "--limit", "1000"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), first.len() + 4);
    let mut ids: Vec<&str> = events
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), events.len(), "each event once");
    // helper-91 L4: an event already stored is skipped only when the line says what is
    // stored; a changed one (here its result) is refused, not dropped silently.
    let mut changed = first.clone();
    changed[1]["result"] = json!(if changed[1]["result"] == "success" {
        "error"
    } else {
        "success"
    });
    let file = store.dir.path().join("changed.jsonl");
    std::fs::write(&file, lines(&changed)).unwrap();
    let out = run(
        &store.config,
        &["import", "--skip-stored", file.to_str().unwrap()],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("line 2") && err.contains("with different content"),
        "{err}"
    );
    // helper-93: an event whose arguments the writer cut (past
    // audit.max_stored_argument_bytes) is skipped too: it is compared as the writer stores it.
    let mut long = pair(50, 1_790_000_200_000, "frank", "echo", "success");
    long[0]["metadata"]["arguments"] = json!({"text": "x".repeat(300 * 1024)});
    let file = store.dir.path().join("long.jsonl");
    std::fs::write(&file, lines(&long)).unwrap();
    ok(&store.config, &["import", file.to_str().unwrap()]);
    let said = ok(
        &store.config,
        &["import", "--skip-stored", file.to_str().unwrap()],
    );
    assert!(said.contains("all 2 events"), "{said}");
}

/// helper-90, low: three errors that did not say what to do. A bad `event_id` was "invalid
/// length at column 22"; importing into a store path that is a file, "File exists (os error
/// 17)"; `--since -1d` was taken by clap for an option ("unexpected argument '-1'").
#[test]
fn bad_ids_a_store_that_is_a_file_and_a_signed_since_are_explained() {
    let store = TestStore::new("");
    let file = store.dir.path().join("bad.jsonl");
    let mut event = pair(0, 1_790_000_000_000, "alice", "echo", "success")[0].clone();
    event["event_id"] = json!("xyz");
    std::fs::write(&file, format!("{event}\n")).unwrap();
    let out = run(&store.config, &["import", file.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("line 1") && err.contains("is a ULID") && err.contains("\"xyz\""),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("store"), b"").unwrap();
    let config = dir.path().join("proxy.toml");
    std::fs::write(&config, "[audit]\nstore_dir = \"store\"\n").unwrap();
    std::fs::write(&file, lines(&small_file())).unwrap();
    let out = run(&config, &["import", file.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("is a file, not a folder"), "{err}");

    let out = run(&store.config, &["anomalies", "--since", "-1d"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("\"-1d\" is neither an RFC 3339 time"), "{err}");
}

/// helper-90 H4: with one byte of the newest segment's header changed, `analyze` and
/// `anomalies` skipped the whole segment as if it were a torn tail and printed figures
/// without it (exit 0), while `verify`, `compliance` and `report` refused. A header this
/// version does not read is never a torn tail: a newer format is refused, any other header
/// is damage.
#[test]
fn a_changed_segment_header_is_refused_not_skipped() {
    let since = "2026-01-01T00:00:00Z";
    let commands: [&[&str]; 3] = [
        &["analyze", "tools", "--since", since],
        &["analyze", "user", "alice", "--since", since],
        &["anomalies", "--since", since],
    ];
    for (byte, says) in [
        (b'9', "newer than this mcp-audit-proxy"),
        (b'X', "is damaged"),
    ] {
        let store = small_store();
        let segment = first_segment(&store);
        let mut bytes = std::fs::read(&segment).unwrap();
        assert_eq!(&bytes[..7], b"MCPAJNL");
        bytes[7] = byte;
        std::fs::write(&segment, bytes).unwrap();
        for args in commands {
            let out = run(&store.config, args);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
            assert!(err.contains(says), "{args:?}: {err}");
            assert!(out.stdout.is_empty(), "{args:?}: nothing printed");
        }
        // helper-94 F9: `reindex` listed what it could not index and exited 0.
        if byte == b'X' {
            let out = run(&store.config, &["reindex"]);
            let text = String::from_utf8_lossy(&out.stdout);
            assert_eq!(out.status.code(), Some(1), "reindex: {text}");
            assert!(
                text.contains("NOT INDEXED") || text.contains("DAMAGED"),
                "{text}"
            );
        }
    }
}

#[test]
fn import_reads_a_bom_names_bad_encodings_by_line_keeps_earlier_imports_and_no_half_store() {
    // Found by a fresh pass: a BOM made line 1 "expected value"; a UTF-16 file gave no line;
    // a missing file was told to check the disk's free space; a refused file left a store
    // folder that every command then called "no audit store"; importing an imported event
    // again replaced its first import's record.
    let store = TestStore::new("");
    let good = small_file();
    let bom = store.dir.path().join("bom.jsonl");
    std::fs::write(&bom, format!("\u{feff}{}", lines(&good[..2]))).unwrap();
    let said = ok(&store.config, &["import", bom.to_str().unwrap()]);
    assert!(said.contains("imported 2 events"), "{said}");

    // Nothing made of a new store when the file is refused.
    let fresh = TestStore::new("");
    let utf16: Vec<u8> = lines(&good[2..4])
        .encode_utf16()
        .flat_map(|u| u.to_le_bytes())
        .collect();
    let wide = fresh.dir.path().join("wide.jsonl");
    std::fs::write(&wide, utf16).unwrap();
    let out = run(&fresh.config, &["import", wide.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("line 1: holds NUL bytes"), "{err}");
    assert!(err.contains("iconv -f UTF-16 -t UTF-8"), "{err}");
    assert!(!fresh.store_dir().exists(), "a refused import made a store");
    let missing = run(&fresh.config, &["import", "/nonexistent/file.jsonl"]);
    let err = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(missing.status.code(), Some(2), "{err}");
    assert!(
        err.contains("may read the file") && !err.contains("free space"),
        "{err}"
    );
    let broken = fresh.dir.path().join("broken.jsonl");
    std::fs::write(&broken, "{\"event_id\": 5,\n").unwrap();
    let err =
        String::from_utf8_lossy(&run(&fresh.config, &["import", broken.to_str().unwrap()]).stderr)
            .to_string();
    assert!(err.contains("line 1: not an audit event"), "{err}");
    assert!(
        !err.contains("at line 1 column"),
        "the line is the file's: {err}"
    );
    assert!(!fresh.store_dir().exists());

    // Imported again elsewhere: the first import's record stays, under `earlier`.
    let first = ok(&store.config, &["events", "--json"]);
    let again = fresh.dir.path().join("again.jsonl");
    std::fs::write(&again, &first).unwrap();
    ok(&fresh.config, &["import", again.to_str().unwrap()]);
    for line in ok(&fresh.config, &["events", "--json"]).lines() {
        let e: Value = serde_json::from_str(line).unwrap();
        let imported = &e["metadata"]["imported"];
        assert_eq!(imported["source"], again.to_str().unwrap(), "{e}");
        assert_eq!(
            imported["earlier"][0]["source"],
            bom.to_str().unwrap(),
            "{e}"
        );
    }
}

#[test]
fn a_new_user_has_no_hour_marked_odd_and_an_imported_alert_says_where_it_came_from() {
    // Found by a fresh pass: with no usual hours yet, every hour was starred "outside their
    // usual hours" under a footer saying 0% of the calls were; and an imported `alert` event
    // was listed by `alerts` exactly like one this store's proxies raised.
    let store = TestStore::new("");
    let mut events = small_file();
    let t = 1_790_000_050_000u64;
    let id = ulid::Ulid::from_parts(t, 4242).to_string();
    let first = events[0]["event_id"].clone();
    events.push(json!({
        "event_id": id,
        "timestamp": humantime::format_rfc3339_micros(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(t)
        ).to_string(),
        "event_type": "alert", "user_id": "alice", "tool_name": "echo",
        "action": "alert/refused", "result": "success",
        "metadata": {
            "protocol_era": "unknown", "auth_method": "process",
            "reason": "the proxy refused alice's call to echo",
            "alert": {
                "kind": "refused", "family": "policy", "severity": "medium", "count": 1,
                "first_event_id": first, "last_event_id": first,
                "from": "2026-09-21T12:53:20.000Z", "until": "2026-09-21T12:53:20.000Z",
                "tools": ["echo"], "dropped": 0
            }
        },
        "risk_level": "medium", "compliance_tags": [], "session_id": "s-alice",
        "upstream": "example", "linked_event_id": null
    }));
    let file = store.dir.path().join("small.jsonl");
    std::fs::write(&file, lines(&events)).unwrap();
    ok(&store.config, &["import", file.to_str().unwrap()]);
    let since = "2026-01-01T00:00:00Z";
    let table = ok(
        &store.config,
        &["analyze", "user", "alice", "--since", since],
    );
    assert!(table.contains("no usual hours yet"), "{table}");
    assert!(
        !table
            .lines()
            .any(|l| l.starts_with("  ") && l.contains(":00*")),
        "{table}"
    );
    let listed = ok(&store.config, &["alerts", "--since", since]);
    assert!(
        listed.contains(&format!("(imported from {} line 11)", file.display())),
        "{listed}"
    );
    let none = ok(
        &store.config,
        &["alerts", "--since", since, "--user", "bob"],
    );
    assert!(none.contains("no alerts of user \"bob\""), "{none}");
}

#[test]
fn a_reader_that_leaves_is_not_an_error() {
    // Found by a fresh pass: `analyze tools | head -1` exited 2 with "cannot write output:
    // Broken pipe (os error 32)", where `anomalies` and `events` exited 0.
    let store = small_store();
    let since = "2026-01-01T00:00:00Z";
    let commands: [&[&str]; 3] = [
        &["analyze", "tools", "--since", since],
        &["analyze", "user", "alice", "--since", since, "--json"],
        &["report", "executive", "--format", "md", "--since", since],
    ];
    for args in commands {
        let mut child = Command::new(proxy_bin())
            .args(args)
            .arg("--config")
            .arg(&store.config)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take()); // the reader leaves before a line is written
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
        assert!(!err.contains("Broken pipe"), "{args:?}: {err}");
    }
}

/// Found by a hostile pass (helper-94 F2): a user or tool name is the client's to choose.
/// One holding a line feed printed a forged row of its own in `analyze` and `events` tables,
/// one holding a zero-width space read as another tool, and the JSON report on standard
/// output wrote U+202E raw where every other `--json` output escapes it.
#[test]
fn names_that_break_lines_or_hide_are_shown_escaped() {
    let t0 = 1_790_000_000_000;
    let forged = "alice\nroot        shutdown_all";
    let mut events = Vec::new();
    events.extend(pair(0, t0, forged, "echo\u{200b}", "success"));
    events.extend(pair(1, t0 + 1000, "bob", "echo", "success"));
    events.extend(pair(2, t0 + 2000, "eve\u{202e}cod.exe", "echo", "success"));
    let store = TestStore::new("");
    let file = store.dir.path().join("names.jsonl");
    std::fs::write(&file, lines(&events)).unwrap();
    ok(&store.config, &["import", file.to_str().unwrap()]);
    let since = "2026-09-01T00:00:00Z";
    let until = "2026-10-01T00:00:00Z";
    for args in [
        &["analyze", "tools", "--since", since, "--until", until][..],
        &[
            "analyze", "user", forged, "--since", since, "--until", until,
        ][..],
        &["events", "--limit", "10"][..],
    ] {
        let text = ok(&store.config, args);
        assert!(
            !text.lines().any(|l| l.trim_start().starts_with("root")),
            "{args:?}: a forged line:\n{text}"
        );
        if args[..2] == ["analyze", "tools"] {
            assert!(text.contains("echo\\u200b"), "{text}");
        } else {
            assert!(text.contains("alice\\nroot"), "{args:?}:\n{text}");
        }
    }
    let out = run(
        &store.config,
        &[
            "report", "detailed", "--format", "json", "--since", since, "--until", until,
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.contains('\u{202e}'), "raw U+202E in the JSON report");
    let report: Value = serde_json::from_str(&text).expect("still JSON");
    assert!(report.is_object(), "{text}");
}

/// Found by a hostile pass (helper-94 F3): `report --out` wrote a temporary file and renamed
/// it over the path, so a FIFO became a file, a symbolic link was replaced by a file, and
/// run as root `--out /dev/full` replaced the device and said it wrote the report.
#[test]
fn report_out_writes_into_a_fifo_follows_a_link_and_refuses_a_dangling_one() {
    use std::os::unix::fs::FileTypeExt;
    let store = small_store();
    let dir = store.dir.path();
    let report = |out: &Path| {
        run(
            &store.config,
            &[
                "report",
                "executive",
                "--format",
                "md",
                "--since",
                "2026-09-01T00:00:00Z",
                "--until",
                "2026-10-01T00:00:00Z",
                "--out",
                out.to_str().unwrap(),
            ],
        )
    };
    // A FIFO: the report goes into it, and it stays a FIFO.
    let fifo = dir.join("pipe");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success(),
        "mkfifo"
    );
    // Opened for reading first, without waiting for a writer (O_NONBLOCK): a report that
    // replaced the FIFO instead of writing into it leaves this read empty, not hung.
    let mut reader = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
            .open(&fifo)
            .unwrap()
    };
    let out = report(&fifo);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut read = String::new();
    let _ = std::io::Read::read_to_string(&mut reader, &mut read);
    assert!(
        read.starts_with('#'),
        "the report went into the FIFO: {read:?}"
    );
    assert!(
        std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo(),
        "the FIFO was replaced"
    );
    // A link to a file: the file is replaced, the link kept.
    let real = dir.join("real.md");
    std::fs::write(&real, "old").unwrap();
    let link = dir.join("link.md");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let out = report(&link);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(std::fs::read_to_string(&real).unwrap().starts_with('#'));
    // A dangling link and a folder are errors, and nothing is written.
    let dangling = dir.join("dangling.md");
    std::os::unix::fs::symlink(dir.join("nowhere/x.md"), &dangling).unwrap();
    for (path, says) in [(&dangling, "symbolic link"), (&dir.to_path_buf(), "folder")] {
        let out = report(path);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(says), "{err}");
    }
    let left: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
    // Review helper-97: a replaced file keeps its permissions; a new one is its owner's only.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o640)).unwrap();
    assert!(report(&real).status.success());
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&real), 0o640, "{:o}", mode(&real));
    let fresh = dir.join("fresh.md");
    assert!(report(&fresh).status.success());
    assert_eq!(mode(&fresh), 0o600, "{:o}", mode(&fresh));
    // `/dev/stdout` redirected to a file (as `>> log` does): written into it, after what it
    // held; resolved and renamed over, the log was lost.
    let log = dir.join("log");
    std::fs::write(&log, "earlier line\n").unwrap();
    let appended = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    let status = Command::new(proxy_bin())
        .args([
            "report",
            "executive",
            "--format",
            "md",
            "--since",
            "2026-09-01T00:00:00Z",
            "--until",
            "2026-10-01T00:00:00Z",
            "--out",
            "/dev/stdout",
            "--config",
        ])
        .arg(&store.config)
        .stdout(appended)
        .status()
        .unwrap();
    assert!(status.success());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.starts_with("earlier line\n#"), "{text:?}");
}

/// Found by a hostile pass (helper-94 F5): `alerts` said "no alerts" (exit 0) for a window
/// that holds nothing, a `--since` in the future and `--limit 0`, which every other command
/// refuses.
#[test]
fn alerts_refuses_a_window_that_holds_nothing() {
    let store = small_store();
    for (args, says) in [
        (&["alerts", "--since", "1h", "--until", "2h"][..], "since"),
        (&["alerts", "--since", "2030-01-01T00:00:00Z"][..], "future"),
        (&["alerts", "--limit", "0"][..], "limit"),
    ] {
        let out = run(&store.config, args);
        let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    // A window that holds something still lists (here: nothing, said so).
    let text = ok(&store.config, &["alerts", "--since", "2h"]);
    assert!(text.starts_with("no alerts"), "{text}");
    // A user the store knows, without alerts: said so; one it has never seen: refused, as
    // `analyze user` refuses it (helper-94 F11).
    let text = ok(
        &store.config,
        &["alerts", "--since", "2h", "--user", "alice"],
    );
    assert!(text.starts_with("no alerts of user"), "{text}");
    let out = run(&store.config, &["alerts", "--user", "nosuch"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("no events and no key of user \"nosuch\""),
        "{err}"
    );
    assert!(out.stdout.is_empty());
    // `events --user` alike (helper-116 M4: a header and nothing, exit 0); a known user
    // without events in the window still lists nothing, without an error.
    let out = run(&store.config, &["events", "--user", "ALICE"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("no events and no key of user \"ALICE\""),
        "{err}"
    );
    assert!(out.stdout.is_empty());
    ok(
        &store.config,
        &[
            "events",
            "--user",
            "alice",
            "--since",
            "2030-01-01T00:00:00Z",
        ],
    );
}

/// Found by a hostile pass (helper-94 F1): a journal deleted, or cut back, after it was
/// indexed read as fewer calls (a user with none), exit 0; `events` said so once, on the run
/// that found it, and never again. The analyses now refuse such a trail unless
/// `--allow-damaged`, at every run, and `events` says it on standard error.
#[test]
fn a_deleted_or_cut_journal_is_refused_not_read_as_no_calls() {
    let since = "2026-09-01T00:00:00Z";
    let until = "2026-10-01T00:00:00Z";
    let window = ["--since", since, "--until", until];
    // Deleted: the store's only journal.
    let store = small_store();
    // The index learns the journal (every import is indexed by the next holder).
    ok(&store.config, &["events", "--limit", "1"]);
    let journal = std::fs::read_dir(store.store_dir().join("journal"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.is_dir())
        .expect("the import's journal");
    std::fs::remove_dir_all(&journal).unwrap();
    for round in 0..2 {
        for args in [
            &["analyze", "tools"][..],
            &["anomalies"][..],
            &["report", "executive", "--format", "json"][..],
        ] {
            let args: Vec<&str> = args.iter().chain(window.iter()).copied().collect();
            let out = run(&store.config, &args);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "round {round} {args:?}: {err}");
            assert!(
                err.contains("lost records"),
                "round {round} {args:?}: {err}"
            );
            assert!(out.stdout.is_empty(), "{args:?}");
        }
        let out = run(&store.config, &["events"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("lost records"), "round {round} events: {err}");
    }
    let mut allowed = vec!["analyze", "tools", "--allow-damaged"];
    allowed.extend(window);
    let text = ok(&store.config, &allowed);
    assert!(text.contains("0 calls"), "{text}");

    // Cut back: a stopped journal shorter than the index saw it.
    let store = small_store();
    ok(&store.config, &["events", "--limit", "1"]);
    let segment = first_segment(&store);
    let len = std::fs::metadata(&segment).unwrap().len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap();
    f.set_len(len / 2).unwrap();
    drop(f);
    let mut args = vec!["analyze", "user", "carol"];
    args.extend(window);
    let out = run(&store.config, &args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("lost records"), "{err}");
}

/// Found by a hostile pass (helper-94 F4): the first end of a call won, so a call the server
/// made a task (first end `task`, its final end when the task finished) showed 0% success,
/// "task" as its result and the 2 ms of its first answer, and a task that failed was never
/// counted; and an MRTR round (`input_required`) with its successful retry read as 50%.
#[test]
fn a_task_counts_by_its_final_end_and_an_input_round_is_no_failure() {
    let t0 = 1_790_000_000_000u64;
    let mut n = 0u128;
    let mut ev = |ms: u64, ty: &str, tool: &str, result: &str, linked: Option<&str>, us: u64| {
        n += 1;
        let id = ulid::Ulid::from_parts(ms, n).to_string();
        let at = humantime::format_rfc3339_micros(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms),
        )
        .to_string();
        let mut meta = json!({"protocol_era": "2025"});
        if linked.is_some() {
            meta["execution_time_us"] = json!(us);
        } else {
            meta["arguments"] = json!({});
        }
        json!({
            "event_id": id, "timestamp": at, "event_type": ty, "user_id": "tess",
            "tool_name": tool, "action": "tools/call", "result": result, "metadata": meta,
            "risk_level": "low", "compliance_tags": [], "session_id": "s1",
            "upstream": "example", "linked_event_id": linked,
        })
    };
    // Each call: its access (time, tool, result) and its ends (time, type, result, µs).
    type Ends<'a> = Vec<(u64, &'a str, &'a str, u64)>;
    let calls: [(u64, &str, &str, Ends); 5] = [
        // Two tasks: a first end `task`, then the final one (an error after 30 s, a success
        // after 10 s).
        (
            t0,
            "longjob",
            "initiated",
            vec![
                (t0 + 2, "tool_execution", "task", 2_000),
                (t0 + 30_000, "tool_failure", "error", 30_000_000),
            ],
        ),
        (
            t0 + 60_000,
            "longjob",
            "initiated",
            vec![
                (t0 + 60_002, "tool_execution", "task", 2_000),
                (t0 + 70_000, "tool_execution", "success", 10_000_000),
            ],
        ),
        // A call the proxy blocked: its few µs are no time of the tool's (helper-94).
        (
            t0 + 150_000,
            "longjob",
            "blocked",
            vec![(t0 + 150_000, "tool_failure", "blocked", 40)],
        ),
        // An MRTR round, then its retry.
        (
            t0 + 200_000,
            "ask",
            "initiated",
            vec![(t0 + 200_001, "tool_execution", "input_required", 1_000)],
        ),
        (
            t0 + 210_000,
            "ask",
            "initiated",
            vec![(t0 + 210_001, "tool_execution", "success", 1_000)],
        ),
    ];
    let mut events = Vec::new();
    for (at, tool, result, ends) in calls {
        let access = ev(at, "tool_access", tool, result, None, 0);
        let of = access["event_id"].as_str().unwrap().to_string();
        events.push(access);
        for (end_at, ty, result, us) in ends {
            events.push(ev(end_at, ty, tool, result, Some(&of), us));
        }
    }
    events.sort_by(|a, b| a["event_id"].as_str().cmp(&b["event_id"].as_str()));
    let store = TestStore::new("");
    let file = store.dir.path().join("tasks.jsonl");
    std::fs::write(&file, lines(&events)).unwrap();
    ok(&store.config, &["import", file.to_str().unwrap()]);
    let text = ok(
        &store.config,
        &[
            "analyze",
            "tools",
            "--json",
            "--since",
            "2026-09-01T00:00:00Z",
            "--until",
            "2026-10-01T00:00:00Z",
        ],
    );
    let report: Value = serde_json::from_str(&text).unwrap();
    let tool = |name: &str| tool_row(&report, name);
    let longjob = tool("longjob");
    assert_eq!(longjob["calls"], 3, "{longjob}");
    assert_eq!(
        longjob["results"],
        json!({"blocked": 1, "error": 1, "success": 1}),
        "{longjob}"
    );
    assert_eq!(longjob["success_rate"], 1.0 / 3.0, "{longjob}");
    assert_eq!(longjob["avg_execution_ms"], 20_000.0, "{longjob}");
    let ask = tool("ask");
    assert_eq!(ask["calls"], 2, "{ask}");
    assert_eq!(ask["success_rate"], 1.0, "{ask}");
    // The report counts the same (review helper-97: it had its own count).
    let text = ok(
        &store.config,
        &[
            "report",
            "detailed",
            "--format",
            "json",
            "--since",
            "2026-09-01T00:00:00Z",
            "--until",
            "2026-10-01T00:00:00Z",
        ],
    );
    let report: Value = serde_json::from_str(&text).unwrap();
    let row = |name: &str| tool_row(&report, name);
    assert_eq!(row("ask")["success_pct"], 100.0, "{}", row("ask"));
    assert_eq!(row("longjob")["success_pct"], 33.3, "{}", row("longjob"));
    assert_eq!(row("longjob")["avg_ms"], 20_000.0, "{}", row("longjob"));
    assert_eq!(
        row("longjob")["blocked_or_refused"],
        1,
        "{}",
        row("longjob")
    );
}

/// helper-94: a time with another offset than `Z` was refused as "timestamp format is
/// invalid", with no word of the form that is read.
#[test]
fn a_time_with_an_offset_is_refused_naming_the_form_read() {
    let store = TestStore::new("");
    let mut events = pair(0, 1_790_000_000_000, "alice", "echo", "success").to_vec();
    events[0]["timestamp"] = json!("2026-09-21T16:26:40.000000+02:00");
    let file = store.dir.path().join("offset.jsonl");
    std::fs::write(&file, lines(&events)).unwrap();
    let out = run(&store.config, &["import", file.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("line 1"), "{err}");
    assert!(err.contains("UTC with `Z`"), "{err}");
}

/// helper-94 F11: a 100 MB line was read whole (807 MB resident) before it was refused. A
/// line longer than any event is refused with its number and length, read past without
/// being kept, and the lines after it are still checked.
#[test]
fn an_import_line_longer_than_any_event_is_refused_with_its_number() {
    let store =
        TestStore::new("max_stored_argument_bytes = 1024\n[limits]\nmax_message_bytes = 4096\n");
    let events = pair(0, 1_790_000_000_000, "alice", "echo", "success").to_vec();
    let mut text = lines(&events[..1]);
    text.push_str(&format!("{{\"pad\":\"{}\"}}\n", "x".repeat(20_000)));
    text.push_str("not json\n");
    let file = store.dir.path().join("long.jsonl");
    std::fs::write(&file, text).unwrap();
    let out = run(&store.config, &["import", file.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("line 2") && err.contains("20011 bytes, longer than any event"),
        "{err}"
    );
    assert!(
        err.contains("line 3"),
        "the line after it was not checked: {err}"
    );
}

/// The row of tool `name` in a JSON output's `tools` (`analyze tools --json`, the detailed
/// report).
fn tool_row(report: &Value, name: &str) -> Value {
    report["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tool"] == name)
        .unwrap_or_else(|| panic!("{name} in {report}"))
        .clone()
}

/// helper-116 M1: an imported end linked to a call a proxy recorded (left open by a kill)
/// closed it with "success" in `events show` and `analyze`, and kept the next proxy from
/// settling it. Refused by line now; a link to an event imported earlier still goes in.
#[tokio::test]
async fn an_imported_event_may_not_link_to_a_call_the_proxy_recorded() {
    let store = TestStore::new("");
    let mut c = common::LineClient::spawn(
        store.proxy_command(&[common::example_server().to_str().unwrap()]),
    );
    c.initialize().await;
    c.send(&common::call_line(
        json!(5),
        "echo",
        json!({"text": "real"}),
    ))
    .await;
    c.recv_json().await;
    assert!(c.finish().await.success());
    let events: Vec<Value> = store.events();
    let real = events
        .iter()
        .find(|e| e["event_type"] == "tool_access")
        .unwrap()["event_id"]
        .as_str()
        .unwrap()
        .to_string();
    // A forged end naming the real access, after two good lines.
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        - 60_000;
    let [access, end] = pair(1, t, "mallory", "echo", "success");
    let mut forged = pair(2, t + 10, "mallory", "echo", "success")[1].clone();
    forged["linked_event_id"] = json!(real);
    let file = store.dir.path().join("forged.jsonl");
    std::fs::write(&file, lines(&[access.clone(), end.clone(), forged])).unwrap();
    let out = run(&store.config, &["import", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("line 3: linked_event_id") && said.contains(&real),
        "{said}"
    );
    assert_eq!(store.events().len(), events.len(), "nothing written");
    // The access imported first, its end in a later file: a link to an imported event.
    std::fs::write(&file, lines(&[access])).unwrap();
    ok(&store.config, &["import", file.to_str().unwrap()]);
    std::fs::write(&file, lines(&[end])).unwrap();
    ok(&store.config, &["import", file.to_str().unwrap()]);
    assert_eq!(store.events().len(), events.len() + 2);
}
