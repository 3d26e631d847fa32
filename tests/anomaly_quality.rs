//! The quality bench's two paths (`examples/anomaly_quality.rs`) judge the same calls: the
//! commands' path (`import`, then `anomalies --json` over the labels' window) finds what the
//! detectors find over the whole month file (the `IN_MEMORY=1` path), also when the month's
//! last local day runs past `start` + `days` in UTC, as the generators make it for everyone
//! west of UTC (BENCHMARKS.md, "The two paths").

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, UNIX_EPOCH};

use common::{TestStore, proxy_bin};
use mcp_audit_proxy::analytics::{self, anomalies, quality};
use mcp_audit_proxy::audit::AuditEvent;
use serde_json::{Value, json};

/// 2026-10-05T00:00:00Z, a Monday.
const T0: u64 = 1_791_158_400_000;
const MINUTE: u64 = 60_000;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;

fn time(ms: u64) -> String {
    humantime::format_rfc3339_micros(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// A call of `user` at `ms`, the `n`th: its access event and its end a millisecond later.
fn call(ms: u64, n: u64, user: &str) -> [Value; 2] {
    let id = |ms: u64, k: u64| ulid::Ulid::from_parts(ms, u128::from(k)).to_string();
    let access = json!({
        "event_id": id(ms, 2 * n), "timestamp": time(ms), "event_type": "tool_access",
        "user_id": user, "tool_name": "echo", "action": "tools/call", "result": "initiated",
        "metadata": {"protocol_era": "2025", "auth_method": "stdio", "arguments": {"text": "hi"}},
        "risk_level": "low", "compliance_tags": [], "session_id": format!("s-{user}"),
        "upstream": "example", "linked_event_id": null,
    });
    let end = json!({
        "event_id": id(ms + 1, 2 * n + 1), "timestamp": time(ms + 1),
        "event_type": "tool_execution", "user_id": user, "tool_name": "echo",
        "action": "tools/call", "result": "success",
        "metadata": {"protocol_era": "2025", "auth_method": "stdio", "execution_time_us": 900},
        "risk_level": "low", "compliance_tags": [], "session_id": format!("s-{user}"),
        "upstream": "example", "linked_event_id": id(ms, 2 * n),
    });
    [access, end]
}

/// `anomalies --json` over `[since, until]` on the store of `config`.
fn anomalies_json(config: &Path, since: &str, until: &str) -> Vec<anomalies::Finding> {
    let out = Command::new(proxy_bin())
        .args(["anomalies", "--json", "--since", since, "--until", until])
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run mcp-audit-proxy");
    assert!(
        out.status.success(),
        "anomalies: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    quality::read_findings(&String::from_utf8(out.stdout).unwrap()).unwrap()
}

#[test]
fn the_commands_path_judges_the_last_local_day_west_of_utc_as_the_in_memory_path_does() {
    // Twelve days of a New York user, 09:30-17:30 local (13:30-21:30 UTC), 20 calls a day;
    // on the last, a late evening: six calls from 21:00 local, 01:00 UTC the day after the
    // twelfth, past `start` + `days` (the generators' months end like this).
    let mut events = Vec::new();
    let mut n = 0;
    for day in 0..12 {
        for i in 0..20 {
            events.extend(call(
                T0 + day * DAY + 13 * HOUR + 30 * MINUTE + i * 24 * MINUTE,
                n,
                "nyc",
            ));
            n += 1;
        }
    }
    for i in 0..6 {
        events.extend(call(T0 + 12 * DAY + HOUR + i * 4 * MINUTE, n, "nyc"));
        n += 1;
    }
    let labels: quality::Labels = serde_json::from_value(json!({
        "start": time(T0), "days": 12, "anomalies": [], "context": {}, "people": [{"id": "nyc"}],
    }))
    .unwrap();

    // The in-memory path: the detectors over every call of the month file.
    let read: Vec<AuditEvent> = events
        .iter()
        .map(|e| serde_json::from_value(e.clone()).unwrap())
        .collect();
    let in_memory = anomalies::detect(&analytics::calls(read), &labels.context);
    assert!(
        in_memory
            .iter()
            .any(|f| f.kind == "off_hours" && f.from_ms == T0 + 12 * DAY + HOUR),
        "the evening after the twelfth day is an off-hours finding: {in_memory:#?}"
    );

    // The commands' path, as the bench runs it.
    let store = TestStore::new(&quality::analytics_toml(&labels.context));
    let file = store.dir.path().join("month.jsonl");
    let text: String = events.iter().map(|e| format!("{e}\n")).collect();
    std::fs::write(&file, text).unwrap();
    let out = Command::new(proxy_bin())
        .args(["import", file.to_str().unwrap(), "--config"])
        .arg(&store.config)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run mcp-audit-proxy");
    assert!(
        out.status.success(),
        "import: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (since, until) = labels.window().unwrap();
    let through_commands = anomalies_json(
        &store.config,
        &humantime::format_rfc3339(since).to_string(),
        &humantime::format_rfc3339(until).to_string(),
    );
    let as_json = |f: &[anomalies::Finding]| -> Vec<Value> {
        f.iter().map(|f| serde_json::to_value(f).unwrap()).collect()
    };
    assert_eq!(as_json(&through_commands), as_json(&in_memory));
}
