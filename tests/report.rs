//! `report executive|detailed` through the real binary (issue 10 items 5 and 8): a fixture
//! store imported from events made here, whose answers are counted here from the same
//! events; each section's figures checked in the JSON and present in Markdown and HTML;
//! user strings escaped; and the HTML rendered by headless Chromium: what a reader sees
//! (the DOM after rendering, a screenshot with the charts painted, a printed PDF with a
//! page per section).

mod common;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, UNIX_EPOCH};

use common::{TestStore, cli as run, cli_ok as ok};
use serde_json::{Value, json};

/// 2026-10-05T00:00:00Z: the period is two days from here; the previous period the two
/// days before.
const T0: u64 = 1_791_158_400_000;
const MIN: u64 = 60_000;
const HOUR: u64 = 60 * MIN;
const DAY: u64 = 24 * HOUR;
const EVIL_TOOL: &str = "<script>alert('tool')</script>";
const EVIL_USER: &str = "mallory<img src=x onerror=alert(1)>";
const SHARED_IP: &str = "203.0.113.7";

fn time(ms: u64) -> String {
    humantime::format_rfc3339_micros(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// One call of the fixture.
#[derive(Clone)]
struct Spec {
    ms: u64,
    user: String,
    tool: String,
    risk: &'static str,
    reasons: Vec<&'static str>,
    result: &'static str,
    ip: Option<&'static str>,
    arguments: Value,
}

fn spec(ms: u64, user: &str, tool: &str) -> Spec {
    Spec {
        ms,
        user: user.into(),
        tool: tool.into(),
        risk: "low",
        reasons: Vec::new(),
        result: "success",
        ip: None,
        arguments: json!({"text": "x"}),
    }
}

/// The access event and its end, as the proxy writes them.
fn events(n: u64, s: &Spec) -> [Value; 2] {
    let id = |k: u64| ulid::Ulid::from_parts(s.ms + k, u128::from(n * 2 + k)).to_string();
    let session = format!("s-{}-{}", s.user, s.ms / DAY);
    let mut metadata = json!({"protocol_era": "2025", "arguments": s.arguments});
    if !s.reasons.is_empty() {
        metadata["risk_reasons"] = json!(s.reasons);
    }
    if let Some(ip) = s.ip {
        metadata["http"] = json!({"client_address": ip});
    }
    let access = json!({
        "event_id": id(0), "timestamp": time(s.ms), "event_type": "tool_access",
        "user_id": s.user, "tool_name": s.tool, "action": "tools/call", "result": "initiated",
        "metadata": metadata, "risk_level": s.risk, "compliance_tags": [],
        "session_id": session, "upstream": "example", "linked_event_id": null,
    });
    let end = json!({
        "event_id": id(1), "timestamp": time(s.ms + 1),
        "event_type": if s.result == "success" { "tool_execution" } else { "tool_failure" },
        "user_id": s.user, "tool_name": s.tool, "action": "tools/call", "result": s.result,
        "metadata": {"protocol_era": "2025", "execution_time_us": 1500},
        "risk_level": s.risk, "compliance_tags": [], "session_id": session,
        "upstream": "example", "linked_event_id": id(0),
    });
    [access, end]
}

/// The fixture's calls. Designed so that three detectors fire and no other: a burst
/// (alice, 30 calls in 30 s against her one call a minute), a shared address (one public
/// address for three users within ten minutes) and unusual arguments (bob's path that
/// climbs out with `..`). Nobody has the five days of history that novelty needs.
fn fixture() -> Vec<Spec> {
    let mut v = Vec::new();
    // The previous period.
    for i in 0..5 {
        v.push(spec(T0 - DAY + i * 7 * MIN, "alice", "echo"));
    }
    for i in 0..3 {
        let mut s = spec(T0 - DAY + HOUR + i * MIN, "bob", "read_file");
        if i == 0 {
            s.result = "error";
        }
        if i == 1 {
            s.risk = "high";
            s.reasons = vec!["reads outside the workspace"];
        }
        v.push(s);
    }
    // The period: alice every 20 minutes (at :10, :30, :50), then a burst at 03:00 of day 2.
    for i in 0..110 {
        v.push(spec(T0 + 10 * MIN + i * 20 * MIN, "alice", "echo"));
    }
    for i in 0..30 {
        v.push(spec(T0 + DAY + 3 * HOUR + i * 1000, "alice", "echo"));
    }
    for i in 0..20 {
        let mut s = spec(T0 + 2 * HOUR + i * 3 * MIN, "bob", "read_file");
        s.arguments = json!({"path": format!("docs/{i}.md")});
        if i == 7 {
            s.arguments = json!({"path": "../../etc/passwd"});
            s.risk = "high";
            s.reasons = vec!["reads outside the workspace"];
        }
        v.push(s);
    }
    for i in 0..2 {
        let mut s = spec(T0 + 4 * HOUR + i * MIN, "bob", "delete_db");
        s.risk = "critical";
        s.reasons = vec!["destructive tool"];
        s.result = "blocked";
        v.push(s);
    }
    for i in 0..5 {
        let mut s = spec(T0 + 6 * HOUR + i * 2 * MIN, "carol", EVIL_TOOL);
        if i == 4 {
            s.result = "refused";
        }
        if i == 3 {
            s.result = "error";
        }
        v.push(s);
    }
    // The last millisecond of day 1, its end written on day 2 (the store is read a day at a
    // time: the end must still be joined).
    let mut s = spec(T0 + DAY - 1, "carol", EVIL_TOOL);
    s.result = "error";
    v.push(s);
    for (i, user) in ["alice", "bob", "carol"].iter().enumerate() {
        let mut s = spec(
            T0 + DAY + 5 * HOUR + 7 * MIN + i as u64 * 3 * MIN,
            user,
            "echo",
        );
        s.ip = Some(SHARED_IP);
        v.push(s);
    }
    for i in 0..2 {
        v.push(spec(T0 + DAY + 9 * HOUR + i * MIN, EVIL_USER, "echo"));
    }
    v
}

/// The figures of `calls` as the report defines them.
#[derive(Debug, Default, PartialEq)]
struct Figures {
    calls: u64,
    users: u64,
    tools: u64,
    sessions: u64,
    failed: u64,
    high_risk: u64,
    blocked_or_refused: u64,
}

fn figures<'a>(calls: impl IntoIterator<Item = &'a Spec>) -> Figures {
    let (mut users, mut tools, mut sessions) = (HashSet::new(), HashSet::new(), HashSet::new());
    let mut f = Figures::default();
    for s in calls {
        f.calls += 1;
        users.insert(s.user.clone());
        tools.insert(s.tool.clone());
        sessions.insert(format!("s-{}-{}", s.user, s.ms / DAY));
        f.failed += u64::from(s.result != "success");
        f.high_risk += u64::from(matches!(s.risk, "high" | "critical"));
        f.blocked_or_refused += u64::from(matches!(s.result, "blocked" | "refused"));
    }
    f.users = users.len() as u64;
    f.tools = tools.len() as u64;
    f.sessions = sessions.len() as u64;
    f
}

fn json_figures(v: &Value) -> Figures {
    let n = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("{k} in {v}"));
    Figures {
        calls: n("calls"),
        users: n("users"),
        tools: n("tools"),
        sessions: n("sessions"),
        failed: n("failed"),
        high_risk: n("high_risk"),
        blocked_or_refused: n("blocked_or_refused"),
    }
}

/// The store with the fixture imported, and the period's bounds for the command line.
fn store() -> (TestStore, Vec<Spec>) {
    let store = TestStore::new("");
    let specs = fixture();
    let text: String = specs
        .iter()
        .enumerate()
        .flat_map(|(n, s)| events(n as u64, s))
        .map(|e| format!("{e}\n"))
        .collect();
    let file = store.dir.path().join("fixture.jsonl");
    std::fs::write(&file, text).unwrap();
    ok(&store.config, &["import", file.to_str().unwrap()]);
    (store, specs)
}

fn period() -> [String; 4] {
    [
        "--since".into(),
        time(T0),
        "--until".into(),
        time(T0 + 2 * DAY - 1),
    ]
}

fn report(store: &TestStore, kind: &str, format: &str) -> String {
    let p = period();
    let mut args = vec!["report", kind, "--format", format];
    args.extend(p.iter().map(String::as_str));
    ok(&store.config, &args)
}

#[test]
fn every_section_has_the_fixtures_figures_in_json_markdown_and_html() {
    let (store, specs) = store();
    let now: Vec<&Spec> = specs.iter().filter(|s| s.ms >= T0).collect();
    let before: Vec<&Spec> = specs.iter().filter(|s| s.ms < T0).collect();
    let expected = figures(now.iter().copied());
    let previous = figures(before.iter().copied());
    assert_eq!(
        expected.calls, 173,
        "the fixture changed: recount its comment"
    );

    for kind in ["executive", "detailed"] {
        let r: Value = serde_json::from_str(&report(&store, kind, "json")).unwrap();
        assert_eq!(r["kind"], kind);
        // Totals and trends.
        assert_eq!(json_figures(&r["totals"]), expected, "{kind}");
        assert_eq!(r["totals"]["unfinished"], 0, "every end joined to its call");
        assert_eq!(json_figures(&r["previous_totals"]), previous, "{kind}");
        let trend = |m: &str| {
            r["trends"]
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["metric"] == m)
                .unwrap()
                .clone()
        };
        let calls = trend("calls");
        assert_eq!(calls["previous"], previous.calls);
        assert_eq!(
            calls["change"],
            expected.calls as i64 - previous.calls as i64
        );
        assert_eq!(calls["direction"], "up");
        let pct = 100.0 * (expected.calls as f64 - previous.calls as f64) / previous.calls as f64;
        assert!(
            (calls["change_pct"].as_f64().unwrap() - pct).abs() < 0.051,
            "{calls}"
        );
        let failed = trend("failed");
        assert_eq!(
            (failed["previous"].as_u64(), failed["current"].as_u64()),
            (Some(previous.failed), Some(expected.failed))
        );
        // Days.
        let days = r["daily"].as_array().unwrap();
        assert_eq!(days.len(), 2);
        for (i, d) in days.iter().enumerate() {
            let day: Vec<&Spec> = now
                .iter()
                .copied()
                .filter(|s| (s.ms - T0) / DAY == i as u64)
                .collect();
            let f = figures(day.iter().copied());
            assert_eq!(d["calls"], f.calls, "{d}");
            assert_eq!(d["high_risk"], f.high_risk, "{d}");
            assert_eq!(d["blocked_or_refused"], f.blocked_or_refused, "{d}");
        }
        // Risk distribution.
        for level in ["low", "medium", "high", "critical"] {
            let n = now.iter().filter(|s| s.risk == level).count();
            assert_eq!(r["risk"]["distribution"][level], n, "{level}");
        }
        // Tools, most used first.
        let mut per_tool: BTreeMap<&str, (u64, BTreeSet<&str>, u64)> = BTreeMap::new();
        for s in &now {
            let t = per_tool.entry(&s.tool).or_default();
            t.0 += 1;
            t.1.insert(&s.user);
            t.2 += u64::from(!matches!(s.result, "blocked" | "refused"));
        }
        let tools = r["tools"].as_array().unwrap();
        assert_eq!(tools.len(), per_tool.len());
        for t in tools {
            let (calls, users, ran) = &per_tool[t["tool"].as_str().unwrap()];
            assert_eq!(t["calls"], *calls, "{t}");
            assert_eq!(t["users"], users.len(), "{t}");
            // Every call that ran took 1.5 ms; blocked and refused calls have no time of the
            // tool's (a tool with none that ran has no mean).
            if *ran > 0 {
                assert_eq!(t["avg_ms"], 1.5, "{t}");
            } else {
                assert!(t["avg_ms"].is_null(), "{t}");
            }
        }
        // Compliance: what `compliance --regulation all --json` says of the same period,
        // regulation by regulation and rule by rule.
        assert_eq!(r["compliance"]["assessed"], true, "{}", r["compliance"]);
        let p = period();
        let mut args = vec!["compliance", "--regulation", "all", "--json"];
        args.extend(p.iter().map(String::as_str));
        let out = run(&store.config, &args);
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let assessed: Vec<Value> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let rows = r["compliance"]["regulations"].as_array().unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(assessed.len(), 3);
        for (row, a) in rows.iter().zip(&assessed) {
            assert_eq!(row["regulation"], a["regulation"]);
            let rules = a["rules"].as_array().unwrap();
            let count = |status: &str| rules.iter().filter(|x| x["status"] == status).count();
            assert_eq!(row["compliant"], count("compliant"), "{row}");
            assert_eq!(row["non_compliant"], count("non_compliant"), "{row}");
            assert_eq!(row["not_assessable"], count("not_assessable"), "{row}");
            let ids = |v: &Value| -> Vec<String> {
                v.as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x["id"].as_str().unwrap().to_string())
                    .collect()
            };
            if kind == "detailed" {
                assert_eq!(ids(&row["rules"]), ids(&a["rules"]));
            } else {
                assert!(ids(&row["rules"]).is_empty(), "{row}");
            }
            match a["score"].as_f64() {
                Some(score) => {
                    assert!(
                        (row["score"].as_f64().unwrap() - score).abs() < 0.051,
                        "{row}"
                    )
                }
                None => assert!(row["score"].is_null()),
            }
        }
    }

    // Findings: the same as `anomalies` finds over the period, most severe first.
    let p = period();
    let mut args = vec!["anomalies", "--json"];
    args.extend(p.iter().map(String::as_str));
    let found: Vec<Value> = ok(&store.config, &args)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: BTreeSet<&str> = found.iter().map(|f| f["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        BTreeSet::from(["burst", "shared_address", "unusual_arguments"]),
        "the fixture is designed for these three: {found:?}"
    );
    let r: Value = serde_json::from_str(&report(&store, "detailed", "json")).unwrap();
    let list = r["findings"]["list"].as_array().unwrap();
    assert_eq!(r["findings"]["total"], found.len());
    assert_eq!(list.len(), found.len());
    let evidence = |v: &Value| -> BTreeSet<String> {
        v["evidence"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.as_str().unwrap().to_string())
            .collect()
    };
    for f in &found {
        let mine = list
            .iter()
            .find(|x| x["explanation"] == f["explanation"])
            .unwrap_or_else(|| panic!("{f} not in the report"));
        assert_eq!(evidence(mine), evidence(f), "{f}");
        assert_eq!(mine["severity"], f["severity"]);
    }
    let rank = |s: &Value| match s.as_str() {
        Some("high") => 0,
        Some("medium") => 1,
        _ => 2,
    };
    assert!(
        list.windows(2)
            .all(|w| rank(&w[0]["severity"]) <= rank(&w[1]["severity"]))
    );
    assert_eq!(list[0]["id"], "F1");
    assert_eq!(list[0]["kind"], "unusual_arguments");
    let burst = list.iter().find(|x| x["kind"] == "burst").unwrap();
    assert_eq!(burst["evidence_total"], 30);
    // Recommendations: one per finding kind, each naming findings of that kind; and one per
    // non-compliant rule, naming it.
    let recs = r["recommendations"].as_array().unwrap();
    let failed_rules: BTreeSet<String> = r["compliance"]["regulations"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .filter(|x| x["status"] == "non_compliant")
        .map(|x| x["id"].as_str().unwrap().to_string())
        .collect();
    let by_rule: BTreeSet<String> = recs
        .iter()
        .filter(|c| c["cause_kind"] == "rule")
        .flat_map(|c| c["causes"].as_array().unwrap())
        .map(|id| id.as_str().unwrap().to_string())
        .collect();
    assert_eq!(by_rule, failed_rules, "{recs:?}");
    let by_finding: Vec<&Value> = recs
        .iter()
        .filter(|c| c["cause_kind"] == "finding")
        .collect();
    assert_eq!(by_finding.len(), kinds.len());
    for c in by_finding {
        let causes = c["causes"].as_array().unwrap();
        assert!(!causes.is_empty());
        for id in causes {
            let f = list.iter().find(|x| x["id"] == *id).unwrap();
            assert!(
                c["text"]
                    .as_str()
                    .unwrap()
                    .contains(f["kind"].as_str().unwrap()),
                "{c}"
            );
        }
    }
    // User activity and the newest high-risk calls.
    let users = r["users"].as_array().unwrap();
    assert_eq!(users.len() as u64, expected.users);
    for u in users {
        let name = u["user"].as_str().unwrap();
        let mine = figures(now.iter().copied().filter(|s| s.user == name));
        assert_eq!(u["calls"], mine.calls, "{u}");
        assert_eq!(u["sessions"], mine.sessions, "{u}");
        assert_eq!(u["high_risk"], mine.high_risk, "{u}");
    }
    let alice = users.iter().find(|u| u["user"] == "alice").unwrap();
    assert_eq!(alice["findings"], 2, "the burst and the shared address");
    let newest = r["risk"]["newest"].as_array().unwrap();
    assert_eq!(
        newest.len() as u64,
        now.iter()
            .filter(|s| matches!(s.risk, "high" | "critical")
                || matches!(s.result, "blocked" | "refused"))
            .count() as u64
    );
    assert_eq!(r["risk"]["top_reasons"][0]["reason"], "destructive tool");
    assert_eq!(r["risk"]["top_reasons"][0]["calls"], 2);

    // Markdown and HTML carry the same figures.
    let md = report(&store, "detailed", "md");
    assert!(
        md.contains(&format!("| Tool calls | {} |", expected.calls)),
        "{md}"
    );
    assert!(
        md.contains(&format!("| Sessions | {} |", expected.sessions)),
        "{md}"
    );
    assert!(!md.contains("**Not assessed.**"), "{md}");
    assert!(md.contains("PCI DSS"), "{md}");
    for f in list {
        assert!(
            md.contains(&format!(
                "| {} | {} |",
                f["id"].as_str().unwrap(),
                f["severity"].as_str().unwrap()
            )),
            "{md}"
        );
    }
    assert!(
        md.contains("&lt;script&gt;alert('tool')&lt;/script&gt;"),
        "{md}"
    );
    assert!(!md.contains("<script") && !md.contains("<img"), "{md}");
    let html = report(&store, "detailed", "html");
    assert!(html.contains(&format!("id=\"total-calls\">{}</span>", expected.calls)));
    assert!(html.contains(&format!(
        "id=\"total-high-risk\">{}</span>",
        expected.high_risk
    )));
    assert!(
        !html.to_ascii_lowercase().contains("<script"),
        "a script in the page"
    );
    assert!(!html.contains("<img"), "an element from a user id");
    assert!(
        html.contains("&lt;script&gt;alert("),
        "the tool name as text"
    );
    let exec = report(&store, "executive", "html");
    assert!(exec.contains(">Top findings</h2>") && !exec.contains(">User activity</h2>"));
}

#[test]
fn out_writes_the_file_and_a_bad_period_is_refused() {
    let (store, specs) = store();
    let calls = specs.iter().filter(|s| s.ms >= T0).count();
    let file = store.dir.path().join("r.html");
    let p = period();
    let mut args = vec![
        "report",
        "executive",
        "--format",
        "html",
        "--out",
        file.to_str().unwrap(),
    ];
    args.extend(p.iter().map(String::as_str));
    let said = ok(&store.config, &args);
    assert!(
        said.contains(&format!(
            "wrote the executive report ({calls} calls, 3 findings)"
        )),
        "{said}"
    );
    let html = std::fs::read_to_string(&file).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>") && html.trim_end().ends_with("</html>"));
    let leftovers: Vec<_> = std::fs::read_dir(store.dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty());
    let out = run(
        &store.config,
        &[
            "report",
            "executive",
            "--format",
            "json",
            "--since",
            &time(T0),
            "--until",
            &time(T0 - DAY),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--since is after --until") && stderr.contains("hint:"),
        "{stderr}"
    );
    let missing = store.dir.path().join("no-such-dir").join("r.md");
    let mut args = vec![
        "report",
        "executive",
        "--format",
        "md",
        "--out",
        missing.to_str().unwrap(),
    ];
    args.extend(p.iter().map(String::as_str));
    let out = run(&store.config, &args);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot write the report to") && stderr.contains("hint:"),
        "{stderr}"
    );
}

/// Headless Chromium: never skipped (CI installs it, `.ci/run`).
fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("CHROMIUM") {
        return PathBuf::from(p);
    }
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
            let p = dir.join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!(
        "headless Chromium is needed to check what a reader of the HTML report sees, and none is installed: `apt-get install -y chromium` (Debian package; .ci/run installs it), or set CHROMIUM to its path"
    );
}

/// Runs Chromium headless on `page` with `args`, within two minutes.
fn headless(profile: &Path, page: &Path, args: &[String]) -> Output {
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--hide-scrollbars",
            "--run-all-compositor-stages-before-draw",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish within 2 minutes: {args:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.wait_with_output().unwrap()
}

/// RGB pixels of a PNG.
fn pixels(path: &Path) -> (u32, u32, Vec<[u8; 3]>) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size().expect("a PNG's size")];
    let info = reader.next_frame(&mut buf).expect("a PNG frame");
    let bytes = &buf[..info.buffer_size()];
    let step = match info.color_type {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        other => panic!("unexpected PNG colour type {other:?}"),
    };
    let px = bytes.chunks(step).map(|c| [c[0], c[1], c[2]]).collect();
    (info.width, info.height, px)
}

#[test]
fn chromium_renders_what_a_reader_should_see() {
    let (store, specs) = store();
    let expected = figures(specs.iter().filter(|s| s.ms >= T0));
    let page = store.dir.path().join("report.html");
    let p = period();
    let mut args = vec![
        "report",
        "detailed",
        "--format",
        "html",
        "--out",
        page.to_str().unwrap(),
    ];
    args.extend(p.iter().map(String::as_str));
    ok(&store.config, &args);
    let profile = tempfile::tempdir().unwrap();

    // The DOM after rendering: headings, figures, the evil names as text, no script.
    let out = headless(profile.path(), &page, &["--dump-dom".into()]);
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && dom.contains("</html>"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for heading in [
        "Detailed audit report",
        "Summary",
        "Trends against the previous period",
        "Compliance",
        "Findings",
        "Recommendations",
        "Activity by day",
        "Tool usage",
        "User activity",
        "Risk analysis",
        "Compliance analysis",
    ] {
        assert!(
            dom.contains(&format!(">{heading}</h")),
            "{heading} not in the DOM"
        );
    }
    assert!(dom.contains(&format!("id=\"total-calls\">{}</span>", expected.calls)));
    assert!(dom.contains(&format!(
        "id=\"total-sessions\">{}</span>",
        expected.sessions
    )));
    assert!(!dom.contains("Not assessed."));
    assert!(dom.contains("id=\"compliance-scores\""));
    assert!(dom.contains("PCI DSS"));
    assert!(
        !dom.to_ascii_lowercase().contains("<script"),
        "a script element in the DOM"
    );
    assert!(!dom.contains("<img"), "an img element in the DOM");
    assert!(
        dom.contains("&lt;script&gt;alert('tool')&lt;/script&gt;"),
        "the tool name as text"
    );
    assert!(dom.contains("mallory&lt;img src=x onerror=alert(1)&gt;"));
    // Days, risk levels, tools, and the compliance scores.
    assert_eq!(dom.matches("<svg ").count(), 4);

    // A screenshot: a real PNG with the charts painted (their main colour, #1f5fa8, which
    // nothing else on the page uses).
    let shot = store.dir.path().join("report.png");
    let out = headless(
        profile.path(),
        &page,
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1100,1800".into(),
        ],
    );
    assert!(
        shot.exists(),
        "no screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (w, h, px) = pixels(&shot);
    assert_eq!((w, h), (1100, 1800));
    let near = |p: &[u8; 3], c: [u8; 3]| p.iter().zip(c).all(|(a, b)| a.abs_diff(b) <= 24);
    let chart = px.iter().filter(|p| near(p, [0x1f, 0x5f, 0xa8])).count();
    assert!(
        chart > 500,
        "{chart} pixels of the charts' colour: the charts did not paint"
    );
    let white = px.iter().filter(|p| near(p, [255, 255, 255])).count();
    assert!(white < px.len() * 98 / 100, "the page is blank");

    // Printed: a PDF with a page per section at least (page breaks between them).
    let pdf = store.dir.path().join("report.pdf");
    let out = headless(
        profile.path(),
        &page,
        &[
            format!("--print-to-pdf={}", pdf.display()),
            "--no-pdf-header-footer".into(),
        ],
    );
    let bytes = std::fs::read(&pdf)
        .unwrap_or_else(|e| panic!("no PDF ({e}): {}", String::from_utf8_lossy(&out.stderr)));
    assert!(bytes.starts_with(b"%PDF-"), "not a PDF");
    assert!(bytes.len() > 20_000, "{} bytes of PDF", bytes.len());
    let text = String::from_utf8_lossy(&bytes);
    let pages = text.matches("/Type /Page\n").count()
        + text.matches("/Type /Page/").count()
        + text.matches("/Type /Page>").count()
        + text.matches("/Type /Page ").count();
    let sections = dom.matches("<section ").count();
    assert!(sections >= 9, "{sections} sections");
    assert!(pages >= sections, "{pages} pages for {sections} sections");
}

/// A window of decades over two days of trail reads the two days, not every empty day since
/// (`--since 99999999d`, now refused as before 1970, read a hundred million empty days, one
/// query each, and never ended): the same findings as the period itself, in the time a run
/// over the trail takes.
#[test]
fn a_window_far_wider_than_the_trail_reads_only_the_trail() {
    let (store, _) = store();
    let p = period();
    let mut args = vec!["anomalies", "--json"];
    args.extend(p.iter().map(String::as_str));
    let within = ok(&store.config, &args);
    let config = store.config.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(ok(
            &config,
            &["anomalies", "--json", "--since", "1970-01-01T00:00:00Z"],
        ));
    });
    // Generous: a debug build on a loaded machine reads the fixture in a few seconds.
    let wide = rx
        .recv_timeout(Duration::from_secs(300))
        .expect("anomalies over a window of decades did not end");
    let kinds = |text: &str| -> BTreeSet<String> {
        text.lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()["kind"].to_string())
            .collect()
    };
    assert!(!kinds(&within).is_empty());
    assert_eq!(kinds(&wide), kinds(&within));
}
