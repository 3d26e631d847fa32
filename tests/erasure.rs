//! Erasure and portability (issue 9 item 7) through the real binary: two users call tools
//! through the gateway; `erase --user alice` while it runs makes her personal fields
//! unreadable everywhere in the store folder (journals, index, keys) while bob's stay intact,
//! `verify` still passes, the erasure is itself an event, her calls after the erasure are
//! readable again under a new key, and `export --user bob` gives his events in plaintext. A
//! store written before personal fields were encrypted still reads and verifies, and `erase`
//! says clearly that it cannot erase its events.

mod common;

use std::path::Path;

use common::gateway::{ALICE_KEY, BOB_KEY, Gateway, call, connect};
use common::{
    LineClient, TestStore, call_line, cli as run, example_server, files_containing, proxy_bin,
};
use serde_json::{Value, json};

/// Runs `mcp-audit-proxy ARGS --config CONFIG` (no progress bar: stderr is a pipe).
fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn calls_of<'a>(events: &'a [Value], user: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["user_id"] == user && e["action"] == "tools/call")
        .collect()
}

const ALICE_SECRET: &str = "alice-secret-42 plum orchard";
const ALICE_AFTER: &str = "after-erasure-7 quince grove";
const BOB_SECRET: &str = "bob-note-99 walnut hedge";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasing_a_user_makes_their_personal_data_unreadable_and_the_trail_still_verifies() {
    let gw = Gateway::start("");
    let store = gw.config.parent().unwrap().join("store");
    for (key, secret) in [(ALICE_KEY, ALICE_SECRET), (BOB_KEY, BOB_SECRET)] {
        let client = connect(&gw.endpoint(), key).await;
        client
            .call_tool(call("echo", json!({"text": secret})))
            .await
            .unwrap();
        client.cancel().await.unwrap();
    }
    // Before the erasure: both users read back in full; nothing personal is stored in clear.
    let before = gw.events();
    let alice_before = calls_of(&before, "alice");
    assert_eq!(alice_before.len(), 2, "{before:#?}");
    let access = alice_before
        .iter()
        .find(|e| e["event_type"] == "tool_access")
        .unwrap();
    assert_eq!(access["metadata"]["arguments"]["text"], ALICE_SECRET);
    assert_eq!(access["metadata"]["http"]["client_address"], "127.0.0.1");
    assert_eq!(access["metadata"]["personal_data"], "encrypted");
    for needle in [
        ALICE_SECRET,
        BOB_SECRET,
        "127.0.0.1",
        "\"alice\"",
        "\"bob\"",
    ] {
        assert_eq!(
            files_containing(&store, needle),
            Vec::<String>::new(),
            "{needle} stored in clear"
        );
    }
    // Queries by user find each user's own events (the index keys them by pseudonym).
    let only_bob = run(&gw.config, &["events", "--json", "--user", "bob"]);
    assert!(only_bob.status.success(), "{}", text(&only_bob.stderr));
    let bob_lines: Vec<Value> = text(&only_bob.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!bob_lines.is_empty() && bob_lines.iter().all(|e| e["user_id"] == "bob"));

    // Erase alice while the gateway runs (it holds the index and her key in its cache).
    let erased = run(&gw.config, &["erase", "--user", "alice"]);
    assert!(erased.status.success(), "{}", text(&erased.stderr));
    let said = text(&erased.stdout);
    assert!(
        said.contains("erased the personal data of user \"alice\""),
        "{said}"
    );
    let subject = said
        .split("their key (")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap()
        .to_string();
    assert!(subject.starts_with("subject:"), "{said}");

    // Her next call, after the erasure, is stored under a new key: readable.
    let client = connect(&gw.endpoint(), ALICE_KEY).await;
    client
        .call_tool(call("echo", json!({"text": ALICE_AFTER})))
        .await
        .unwrap();
    client.cancel().await.unwrap();
    let (status, gw) = gw.stop();
    assert!(status.success());

    let after = gw.events();
    // Her earlier events: the skeleton stays, the personal fields are gone.
    let ids: Vec<&Value> = alice_before.iter().map(|e| &e["event_id"]).collect();
    let gone: Vec<&Value> = after
        .iter()
        .filter(|e| ids.contains(&&e["event_id"]))
        .collect();
    assert_eq!(gone.len(), 2, "{after:#?}");
    for e in &gone {
        assert_eq!(e["metadata"]["personal_data"], "erased", "{e:#}");
        assert_eq!(e["user_id"], subject.as_str());
        assert!(e["metadata"].get("arguments").is_none(), "{e:#}");
        assert!(
            e["metadata"]["http"].get("client_address").is_none(),
            "{e:#}"
        );
        assert_eq!(e["tool_name"], "echo");
        assert_eq!(e["action"], "tools/call");
        assert!(e["risk_level"].is_string() && e["result"].is_string());
    }
    // Bob's are intact, and so is alice's call after the erasure.
    let bob = calls_of(&after, "bob");
    assert_eq!(bob.len(), 2);
    assert!(
        bob.iter()
            .any(|e| e["metadata"]["arguments"]["text"] == BOB_SECRET)
    );
    let again = calls_of(&after, "alice");
    assert_eq!(again.len(), 2, "her one call after the erasure: {after:#?}");
    assert!(
        again
            .iter()
            .any(|e| e["metadata"]["arguments"]["text"] == ALICE_AFTER)
    );
    assert!(again.iter().all(|e| e["user_id"] != subject.as_str()));

    // `events --user alice` finds only what she did after the erasure.
    let by_name = run(&gw.config, &["events", "--json", "--user", "alice"]);
    let lines: Vec<Value> = text(&by_name.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.iter().all(|e| !ids.contains(&&e["event_id"])));
    assert_eq!(lines.len(), 2, "{lines:#?}");

    // The erasure is recorded, naming the pseudonym only.
    let record = after
        .iter()
        .find(|e| e["action"] == "audit/erase")
        .expect("the erasure event");
    assert_eq!(record["event_type"], "configuration_change");
    let change = record["metadata"]["changes"][0].as_str().unwrap();
    assert!(
        change.contains(&subject) && !change.contains("alice"),
        "{change}"
    );

    // Nothing of what she sent before is left anywhere in the store folder.
    for needle in [ALICE_SECRET, "127.0.0.1", "alice"] {
        assert_eq!(
            files_containing(&store, needle),
            Vec::<String>::new(),
            "{needle}"
        );
    }

    // The chain, the checkpoints and the index still verify.
    let verified = run(&gw.config, &["verify"]);
    assert!(
        verified.status.success(),
        "{}{}",
        text(&verified.stdout),
        text(&verified.stderr)
    );
    assert!(text(&verified.stdout).contains("is intact"));
    // No progress bar when standard error is not a terminal.
    assert_eq!(text(&verified.stderr), "", "verify wrote to stderr");
    // So does an archive of the whole range, whose records hold the ciphertexts.
    let archive = gw.config.parent().unwrap().join("archive.jsonl");
    let exported = run(&gw.config, &["export", "--out", archive.to_str().unwrap()]);
    assert!(exported.status.success(), "{}", text(&exported.stderr));
    assert_eq!(text(&exported.stderr), "", "export wrote to stderr");
    let checked = run(
        &gw.config,
        &["verify", "--export", archive.to_str().unwrap()],
    );
    assert!(checked.status.success(), "{}", text(&checked.stdout));
    assert!(
        files_containing(archive.parent().unwrap(), BOB_SECRET)
            .iter()
            .all(|f| !f.ends_with("archive.jsonl"))
    );

    // Portability: bob's events, decrypted, in one JSON document.
    let portable = gw.config.parent().unwrap().join("bob.json");
    let out = run(
        &gw.config,
        &[
            "export",
            "--user",
            "bob",
            "--out",
            portable.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc: Value = serde_json::from_slice(&std::fs::read(&portable).unwrap()).unwrap();
    assert_eq!(doc["type"], "mcp-audit-proxy/portability/1");
    assert_eq!(doc["user_id"], "bob");
    let events = doc["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|e| e["user_id"] == "bob"));
    assert_eq!(events[0]["metadata"]["arguments"]["text"], BOB_SECRET);
    assert!(events[0]["event_id"].as_str() < events[1]["event_id"].as_str());

    // Erasing someone the store does not know is a clear error.
    for user in ["nobody", "alice-typo"] {
        let out = run(&gw.config, &["erase", "--user", user]);
        assert!(!out.status.success());
        let err = text(&out.stderr);
        assert!(err.contains("holds no events and no key"), "{err}");
    }
}

/// The proxy in front of the example server as `user`, through stdio.
fn wrapper(store: &TestStore, user: &str) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(proxy_bin());
    c.args(["stdio", "--user", user, "--config"])
        .arg(&store.config)
        .arg("--")
        .arg(example_server())
        .env("RUST_LOG", "warn");
    c
}

async fn one_call(store: &TestStore, user: &str, text: &str) {
    let mut c = LineClient::spawn(wrapper(store, user));
    c.initialize().await;
    c.send(&call_line(json!(1), "echo", json!({"text": text})))
        .await;
    c.recv_response(&json!(1)).await;
    assert!(c.finish().await.success());
}

/// Makes every segment of the store a format-2 segment: what the version before encryption
/// wrote (its records are those of format 3 with nothing sealed; the header is not hashed).
fn as_format_2(store: &Path) {
    let mut stack = vec![store.join("journal")];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|x| x == "journal") {
                let mut bytes = std::fs::read(&path).unwrap();
                assert_eq!(&bytes[..8], b"MCPAJNL3");
                bytes[7] = b'2';
                std::fs::write(&path, bytes).unwrap();
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_from_before_encryption_reads_verifies_and_cannot_be_erased_in_place() {
    let store = TestStore::new("encrypt_personal_data = false");
    one_call(&store, "carol", "carol-old-1 cedar lane").await;
    as_format_2(&store.store_dir());
    assert!(!files_containing(&store.store_dir(), "carol-old-1 cedar lane").is_empty());

    // This version reads it (after a reindex from the format-2 journals) and verifies it.
    assert!(run(&store.config, &["reindex"]).status.success());
    let events = store.events();
    assert_eq!(calls_of(&events, "carol").len(), 2, "{events:#?}");
    assert!(
        events
            .iter()
            .all(|e| e["metadata"].get("personal_data").is_none())
    );
    let verified = run(&store.config, &["verify"]);
    assert!(verified.status.success(), "{}", text(&verified.stdout));

    // Her events are in clear: erase says so, and what to do, and changes nothing.
    let out = run(&store.config, &["erase", "--user", "carol"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("stored unencrypted") && err.contains("retention"),
        "{err}"
    );
    assert_eq!(calls_of(&store.events(), "carol").len(), 2);

    // With encryption on (the default), her new events are sealed; an erasure then erases
    // those and says plainly that the old ones remain.
    std::fs::write(
        &store.config,
        std::fs::read_to_string(&store.config)
            .unwrap()
            .replace("encrypt_personal_data = false", ""),
    )
    .unwrap();
    one_call(&store, "carol", "carol-new-2 birch lane").await;
    let out = run(&store.config, &["erase", "--user", "carol"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(said.contains("NOT ERASED: 2 older event(s)"), "{said}");
    assert!(files_containing(&store.store_dir(), "carol-new-2 birch lane").is_empty());
    let events = store.events();
    assert_eq!(
        events
            .iter()
            .filter(|e| e["metadata"]["personal_data"] == "erased")
            .count(),
        2,
        "{events:#?}"
    );
    assert_eq!(
        calls_of(&events, "carol").len(),
        2,
        "the old ones, in clear"
    );
    let verified = run(&store.config, &["verify"]);
    assert!(verified.status.success(), "{}", text(&verified.stdout));
}

/// A damaged user key file (replaced on disk by something that is not a key) fails that
/// user's calls only: the gateway refuses them (fail closed: nothing of theirs is stored in
/// clear), while another user's calls right after go on and are recorded, with no store
/// outage. Before, the seal failure failed the whole batch and started an outage that refused
/// everyone's calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_user_key_fails_that_users_calls_only() {
    let gw = Gateway::start("");
    let store = gw.config.parent().unwrap().join("store");
    let alice = connect(&gw.endpoint(), ALICE_KEY).await;
    alice
        .call_tool(call("echo", json!({"text": "first"})))
        .await
        .unwrap();
    // Only alice has called: the one key file is hers. Replace it (a new inode: the writer
    // looks at the file again when its inode changes).
    let keys: Vec<_> = std::fs::read_dir(store.join("keys"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let good = std::fs::read(&keys[0]).unwrap();
    let aside = keys[0].with_extension("damaged");
    std::fs::write(&aside, b"{\"not\":\"a key\"}").unwrap();
    std::fs::rename(&aside, &keys[0]).unwrap();

    let refused = alice
        .call_tool(call("echo", json!({"text": "after the damage"})))
        .await;
    let said = format!("{refused:?}");
    assert!(
        refused.is_err() && !said.contains(".key"),
        "alice's call went on, or the answer names her key file: {said}"
    );
    alice.cancel().await.ok();

    let bob = connect(&gw.endpoint(), BOB_KEY).await;
    let answer = bob
        .call_tool(call("echo", json!({"text": "bob goes on"})))
        .await;
    assert!(answer.is_ok(), "bob's call was refused: {answer:?}");
    bob.cancel().await.unwrap();

    // Readers stop at a damaged key file (they cannot tell whose events it held); the
    // operator puts the good copy back, and the trail reads whole.
    std::fs::write(&aside, &good).unwrap();
    std::fs::rename(&aside, &keys[0]).unwrap();
    let events = gw.events();
    let bob_calls = calls_of(&events, "bob");
    assert_eq!(bob_calls.len(), 2, "{events:#?}");
    // Alice's first call is there in full; the refused one left no event to read.
    assert_eq!(calls_of(&events, "alice").len(), 2, "{events:#?}");
    assert!(
        events.iter().all(|e| e["action"] != "audit/store_outage"),
        "an outage was recorded: {events:#?}"
    );
    assert!(
        files_containing(&store, "after the damage").is_empty(),
        "the refused call's arguments were stored in clear"
    );
}

#[tokio::test]
async fn a_key_deleted_outside_erase_is_found_by_verify() {
    // Found by a hostile pass: deleting a user's key file (any account that can write the
    // store can, the tool server among them) made their events read as lawfully erased, with
    // no erasure on the record, and `verify` called the store intact.
    let store = TestStore::new("");
    one_call(&store, "carol", "carol-1 birch row").await;
    one_call(&store, "dave", "dave-1 elm row").await;
    let verified = run(&store.config, &["verify"]);
    assert!(verified.status.success(), "{}", text(&verified.stdout));
    let dave_key = store.store_dir().join("keys").join(
        mcp_audit_proxy::store::personal::key_path(Path::new(""), "dave")
            .file_name()
            .unwrap(),
    );
    let subject = mcp_audit_proxy::store::personal::subject_of(&store.store_dir(), "dave")
        .unwrap()
        .expect("dave's key");
    std::fs::remove_file(&dave_key).unwrap();
    let verified = run(&store.config, &["verify"]);
    let out = text(&verified.stdout);
    assert_eq!(verified.status.code(), Some(1), "{out}");
    assert!(
        out.contains("keys: TAMPERED") && out.contains(&subject) && out.contains("2 record(s)"),
        "{out}"
    );
    assert!(!out.contains("carol"), "{out}");
    // helper-90 M5: `events` showed dave's events as lawfully erased.
    let missing = |store: &TestStore| {
        let events = store.events();
        let of = |who: &str| -> Vec<Value> {
            events
                .iter()
                .filter(|e| e["user_id"] == who)
                .map(|e| e["metadata"]["personal_data"].clone())
                .collect()
        };
        (of(&subject), of("carol"))
    };
    let (dave, carol) = missing(&store);
    assert_eq!(dave, vec![json!("key_missing"); 2], "dave's events");
    assert_eq!(carol, vec![json!("encrypted"); 2], "carol's events");
    let id = store
        .events()
        .into_iter()
        .find(|e| e["user_id"] == subject.as_str())
        .expect("one of dave's events")["event_id"]
        .as_str()
        .unwrap()
        .to_string();
    let shown = run(&store.config, &["events", "show", &id, "--json"]);
    let shown = text(&shown.stdout);
    assert_eq!(shown.matches("\"key_missing\"").count(), 2, "{shown}");

    // helper-90 H3: `compliance` (and the reports built on it) walked only the journals'
    // chains and called the trail's integrity compliant while `verify` said TAMPERED.
    let integrity = |store: &TestStore| {
        let out = run(
            &store.config,
            &["compliance", "--regulation", "gdpr", "--json"],
        );
        let assessment: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", text(&out.stderr)));
        let rule = assessment["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == "gdpr.art5_1_f.integrity")
            .cloned()
            .expect("the integrity rule");
        (out.status.code(), rule)
    };
    let (code, rule) = integrity(&store);
    assert_eq!(code, Some(1), "{rule:#}");
    assert_eq!(rule["status"], "non_compliant", "{rule:#}");
    assert!(
        rule["explanation"].as_str().unwrap().contains(&subject),
        "{rule:#}"
    );

    // helper-90 H1: one imported line claiming the erasure made the deleted key look
    // lawfully erased (`verify` intact). An imported event attests nothing about this store.
    let forged = json!({
        "event_id": "01KBZZZZZZZZZZZZZZZZZZZZZZ",
        "timestamp": "2025-12-08T22:05:58.655Z",
        "event_type": "configuration_change",
        "user_id": "root",
        "tool_name": null,
        "action": "audit/erase",
        "result": "success",
        "metadata": {"protocol_era": "unknown", "auth_method": "os_user", "changes": [format!("erased the personal data of subject:{subject} (GDPR Art. 17)")]},
        "risk_level": "low",
        "compliance_tags": ["gdpr"],
        "session_id": "erase-forged",
        "upstream": "",
        "linked_event_id": null
    });
    let file = store.dir.path().join("forged.jsonl");
    std::fs::write(&file, format!("{forged}\n")).unwrap();
    let imported = run(&store.config, &["import", file.to_str().unwrap()]);
    assert!(imported.status.success(), "{}", text(&imported.stderr));
    let verified = run(&store.config, &["verify"]);
    let out = text(&verified.stdout);
    assert_eq!(verified.status.code(), Some(1), "{out}");
    assert!(out.contains("keys: TAMPERED"), "{out}");
    assert_eq!(integrity(&store).1["status"], "non_compliant");
    assert_eq!(missing(&store).0, vec![json!("key_missing"); 2]);
}

/// helper-94 F10: a damaged key file was reported by `verify` only as a key "gone" without
/// an erasure (its pseudonym is inside the file): the operator was told to look for a deleted
/// file that is still there. It is now named as a file that cannot be read.
#[tokio::test]
async fn a_damaged_key_file_is_named_by_verify_not_called_gone() {
    let store = TestStore::new("");
    one_call(&store, "erin", "erin-1 oak row").await;
    let key = store.store_dir().join("keys").join(
        mcp_audit_proxy::store::personal::key_path(Path::new(""), "erin")
            .file_name()
            .unwrap(),
    );
    std::fs::write(&key, b"{not json").unwrap();
    let verified = run(&store.config, &["verify"]);
    let out = text(&verified.stdout);
    assert_eq!(verified.status.code(), Some(1), "{out}");
    let name = key.file_name().unwrap().to_string_lossy().into_owned();
    let line = out
        .lines()
        .find(|l| l.contains(&name))
        .unwrap_or_else(|| panic!("the damaged file is not named: {out}"));
    assert!(
        line.starts_with("keys: TAMPERED")
            && line.contains("cannot be read")
            && line.contains("restore it"),
        "{out}"
    );
    // Zeros: what `erase` writes before it removes a key, so an erasure cut short; restoring
    // the key would undo it (review helper-100).
    std::fs::write(&key, [0u8; 150]).unwrap();
    let out = text(&run(&store.config, &["verify"]).stdout);
    let line = out
        .lines()
        .find(|l| l.contains(&name))
        .unwrap_or_else(|| panic!("the zeroed file is not named: {out}"));
    assert!(
        line.contains("erasure") && line.contains("do not restore"),
        "{out}"
    );
}
