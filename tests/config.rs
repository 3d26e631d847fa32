//! The shipped configuration and the command line: `proxy.toml` parses, documents every key
//! and runs the example server; identity and the events table come out as documented.

mod common;

use std::path::{Path, PathBuf};

use common::{Era, TestStore, args, connect, example_server, pairs};
use mcp_audit_proxy::config::{Config, Durability};
use rmcp::model::CallToolRequestParams;
use serde_json::json;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_shipped_proxy_toml_parses_and_runs_the_example_server() {
    let config = Config::load(&repo().join("proxy.toml")).expect("proxy.toml");
    assert_eq!(config.upstream.name, "example");
    assert_eq!(
        config.upstream.command,
        ["cargo", "run", "--quiet", "--example", "example-server"]
    );
    assert_eq!(
        config.upstream.cwd.as_deref(),
        Some(repo().join(".").as_path())
    );
    assert_eq!(config.audit.store_dir, repo().join(".mcp-audit"));
    assert_eq!(config.audit.durability, Durability::Sync);
}

#[test]
fn proxy_toml_documents_every_key_the_parser_accepts() {
    let text = std::fs::read_to_string(repo().join("proxy.toml")).unwrap();
    let keys = [
        "user_id",
        "name",
        "command",
        "cwd",
        "url",
        "headers",
        "headers_from_env",
        "bearer_token_env",
        "ca_file",
        "store_dir",
        "durability",
        "flush_interval_ms",
        "segment_bytes",
        "queue_capacity",
        "max_stored_argument_bytes",
        "max_store_bytes",
        "on_store_failure",
        "max_message_bytes",
        "call_timeout_ms",
        "shutdown_grace_ms",
        "file",
        "enabled",
        "shadow",
        "classifiers",
        "redact_results",
        "user_rate_per_minute",
        "pin_tools",
        "confirm_timeout_ms",
        "hmac_key_env",
        "hmac_key_file",
        "medium",
        "high",
        "critical",
        "low",
        "email",
        "phone",
        "national_id",
        "iban",
        "payment_card",
        "health",
        "secret",
        // [gateway]
        "listen",
        "public_url",
        "allowed_origins",
        "allowed_hosts",
        "allow_anonymous",
        "trusted_proxies",
        "authorization_servers",
        "header_read_timeout_ms",
        "session_idle_timeout_ms",
        "session_evict_idle_ms",
        "max_sessions",
        "max_sessions_per_principal",
        "max_streams_per_principal",
        "max_connections",
        "max_connections_per_principal",
        "cors",
        "pool_max_children",
        "pool_max_in_flight",
        "pool_idle_timeout_ms",
        "share_children",
        "cert",
        "client_ca",
        "issuer",
        "audience",
        "algorithms",
        "key_file",
        "leeway_s",
        "user_claim",
        "roles_claim",
        // [retention]
        "gdpr",
        "hipaa",
        "pci_dss",
        "secrets",
        "untagged",
        "apply_daily",
        // [alerts], [alerts.webhook]
        "min_level",
        "window_ms",
        "group_wait_ms",
        "max_users",
        "history_events",
        "secret_file",
        "timeout_ms",
        "max_attempts",
        "backoff_ms",
    ];
    for key in keys {
        assert!(
            text.lines()
                .any(|l| l.trim_start_matches("# ").starts_with(&format!("{key} ="))),
            "{key} is not in proxy.toml"
        );
    }
    let config = Config::parse(
        Path::new("/x/proxy.toml"),
        &text.replace("# user_id", "user_id"),
    )
    .unwrap();
    assert_eq!(config.user_id.as_deref(), Some("alice"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_config_works_with_the_example_server() {
    // proxy.toml as shipped, with its store moved to a temporary folder and the server given
    // as a built binary instead of `cargo run` (cargo is busy running this test).
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo().join("proxy.toml"))
        .unwrap()
        .replace(
            "command = [\"cargo\", \"run\", \"--quiet\", \"--example\", \"example-server\"]",
            &format!("command = [{:?}]", example_server().display().to_string()),
        );
    let config = dir.path().join("proxy.toml");
    std::fs::write(&config, text).unwrap();
    let mut command = tokio::process::Command::new(common::proxy_bin());
    command
        .args(["stdio", "--user", "carol", "--config"])
        .arg(&config);
    let client = connect(&Era::Discover, command).await;
    let r = client
        .call_tool(CallToolRequestParams::new("add").with_arguments(args(json!({"a": 1, "b": 2}))))
        .await
        .unwrap();
    assert_eq!(serde_json::to_value(&r.content).unwrap()[0]["text"], "3");
    client.cancel().await.unwrap();
    assert!(
        dir.path().join(".mcp-audit/journal").is_dir(),
        "the store is next to the config"
    );

    let store = TestStore { dir, config };
    let events = store.events();
    let pairs = pairs(&events);
    assert_eq!(pairs.len(), 1);
    assert_eq!(
        pairs[0].0["user_id"], "carol",
        "--user wins over the config and the OS user"
    );
    assert_eq!(pairs[0].0["upstream"], "example");
}

#[test]
fn the_os_user_is_the_default_identity_and_the_table_shows_the_pair() {
    let store = TestStore::new("");
    // TestStore sets user_id = "tester"; drop it to fall back to the OS user.
    let text = std::fs::read_to_string(&store.config)
        .unwrap()
        .replace("user_id = \"tester\"\n", "");
    std::fs::write(&store.config, text).unwrap();
    let mut child = std::process::Command::new(common::proxy_bin())
        .args(["stdio", "--config"])
        .arg(&store.config)
        .arg("--")
        .arg(example_server())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        writeln!(stdin, r#"{{"jsonrpc":"2.0","id":0,"method":"initialize","params":{{"protocolVersion":"2025-06-18","capabilities":{{}},"clientInfo":{{"name":"t","version":"1"}}}}}}"#).unwrap();
        writeln!(stdin, r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"hi"}}}}}}"#).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let os_user = nix::unistd::User::from_uid(nix::unistd::getuid())
        .unwrap()
        .map(|u| u.name)
        .unwrap();
    let events = store.events();
    assert_eq!(events[0]["user_id"], os_user.as_str());

    let table = std::process::Command::new(common::proxy_bin())
        .args(["events", "--config"])
        .arg(&store.config)
        .output()
        .unwrap();
    let table = String::from_utf8(table.stdout).unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("TIME (UTC)"), "{table}");
    assert_eq!(lines.len(), 3, "{table}");
    assert!(
        lines[1].contains("tool_execution")
            && lines[1].contains("success")
            && lines[1].contains("echo"),
        "{table}"
    );
    assert!(
        lines[2].contains("tool_access") && lines[2].contains("initiated"),
        "{table}"
    );
    // Each row names its partner.
    let id = |l: &str| l.split_whitespace().rev().nth(1).unwrap().to_string();
    let linked = |l: &str| l.split_whitespace().last().unwrap().to_string();
    assert_eq!(linked(lines[1]), id(lines[2]));
    assert_eq!(linked(lines[2]), id(lines[1]));
}

/// Found by a fresh pair of eyes: `--user ""` (or a space) was accepted, and every event
/// named nobody; a tab went raw into the log line.
#[test]
fn a_blank_or_control_character_identity_is_refused_before_anything_runs() {
    let store = TestStore::new("");
    for (user, says) in [
        ("", "names nobody"),
        ("  ", "names nobody"),
        ("a\tb", "control character U+0009"),
        // helper-116 M5: an erased user's pseudonym taken as a live identity.
        (
            "Subject:e7f304965c59d36874be1988c8eb4103",
            "starts with `subject:`",
        ),
    ] {
        let out = std::process::Command::new(common::proxy_bin())
            .args(["stdio", "--user", user, "--config"])
            .arg(&store.config)
            .arg("--")
            .arg(example_server())
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{user:?}: {stderr}");
        assert!(stderr.contains(says), "{user:?}: {stderr}");
        assert!(!store.store_dir().exists(), "{user:?}: a store was opened");
    }
}

#[test]
fn proxy_toml_documents_every_policy_table_key() {
    let text = std::fs::read_to_string(repo().join("proxy.toml")).unwrap();
    for key in [
        "match",
        "score",
        "allow_users",
        "allow_roles",
        "deny_users",
        "deny_roles",
        "rate_per_minute",
        "hours",
        "days",
        "utc_offset",
        "name",
        "tools",
        "pointer",
        "regex",
        "glob",
        "path_outside",
        "any_of",
        "none_of",
        "gt / ge / lt / le",
        "detect",
        "level",
        "after_tags",
        "then_tools",
    ] {
        assert!(text.contains(key), "{key} is not documented in proxy.toml");
    }
}

#[test]
fn every_toml_example_in_the_readme_parses() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let blocks: Vec<&str> = readme
        .split("```toml\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap())
        .collect();
    assert!(
        blocks.len() >= 3,
        "the Policies section has three worked examples"
    );
    for block in blocks {
        if let Err(e) = Config::parse(Path::new("/x/proxy.toml"), block) {
            panic!("README example does not parse: {e}\n{block}");
        }
    }
}

#[test]
fn bad_policies_fail_with_the_line_and_a_hint() {
    let cases = [
        (
            "[[risk.rule]]\nname = \"r\"\nregex = \"(\"\nscore = 1\n",
            ":3: `risk.rule.regex` of rule \"r\" does not compile",
        ),
        (
            "[[risk.rule]]\nname = \"r\"\nregex = \"a\"\nglob = \"b\"\nscore = 1\n",
            ":2: rule \"r\" needs exactly one test, it has 2",
        ),
        (
            "[[risk.rule]]\nname = \"r\"\nregex = \"a\"\n",
            ":2: rule \"r\" has no effect",
        ),
        (
            "[[risk.rule]]\nname = \"r\"\ndetect = \"xss\"\nscore = 1\n",
            ":3: unknown detector \"xss\"",
        ),
        (
            "[[risk.rule]]\nname = \"r\"\npointer = \"path\"\nregex = \"a\"\nscore = 1\n",
            ":3: `risk.rule.pointer`: pointer \"path\" must start with '/'",
        ),
        (
            "[[risk.rule]]\nname = \"r\"\npath_outside = [\"data\"]\nscore = 1\n",
            ":3: `risk.rule.path_outside` roots must be absolute",
        ),
        (
            "[[risk.tool]]\nmatch = \"a[\"\n",
            ":2: `risk.tool.match` is not a valid glob",
        ),
        (
            "[[risk.tool]]\nmatch = \"a\"\nhours = \"9-17\"\n",
            ":3: `risk.tool.hours` = \"9-17\" is not a time range",
        ),
        (
            "[[risk.tool]]\nmatch = \"a\"\ndays = [\"monday\"]\n",
            ":3: unknown day \"monday\"",
        ),
        (
            "[[risk.tool]]\nmatch = \"a\"\nscore = 101\n",
            ":3: `risk.tool.score` = 101 is out of range",
        ),
        (
            "[risk.actions]\nhigh = \"ask\"\n",
            ":2: unknown action \"ask\" for `risk.actions.high`",
        ),
        (
            "[risk.levels]\nmedium = 60\nhigh = 50\n",
            ":2: risk levels must rise",
        ),
        (
            "[risk.store]\npayment_card = \"clear\"\n",
            ":2: `risk.store.payment_card` = \"clear\" is not allowed",
        ),
        (
            "[risk.store]\nemail = \"hash\"\n",
            ":2: `risk.store.email` = \"hash\" needs a key",
        ),
        (
            "[risk]\nclassifiers = [\"ssn\"]\n",
            ":2: unknown classifier \"ssn\"",
        ),
        ("[risk]\nshadows = true\n", ":2: unknown field `shadows`"),
        (
            "[risk]\npin_tools = \"strict\"\n",
            ":2: unknown value \"strict\" for `risk.pin_tools`",
        ),
        (
            "[[risk.tool]]\nmatch = \"a\"\nutc_offset = \"\u{2212}01:00\"\n",
            ":3: `risk.tool.utc_offset` = \"\u{2212}01:00\" is not an offset",
        ),
        (
            "[[risk.sequence]]\nname = \"s\"\nafter_tags = [\"pii\"]\nscore = 5\n",
            ":3: `risk.sequence.after_tags` needs tags",
        ),
    ];
    for (text, expected) in cases {
        let err = Config::parse(Path::new("/x/proxy.toml"), text)
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(err.contains(expected), "{text:?} gave {err}");
        assert!(err.contains("hint: "), "{err}");
    }
}
