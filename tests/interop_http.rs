//! The HTTP gateway judged by real peers: the official SDKs' Streamable HTTP clients and the
//! official conformance suite, each run directly against a server and through
//! `mcp-audit-proxy gateway` in front of the same server; what they see must not differ.
//!
//! Peers (pinned; installed by tests/interop/setup.sh): the official Python SDK (PyPI `mcp`
//! 2.3.0: `mcp.client.streamable_http`, both eras) and TypeScript SDK v2
//! (`@modelcontextprotocol/client` 2.4.0: `StreamableHTTPClientTransport`, both eras) as
//! clients, through tests/interop/compare.py and ts_client.mjs given a URL; as servers the
//! reference `@modelcontextprotocol/server-everything` (2025 era only) and this repository's
//! rmcp example server (both eras), both stdio upstreams of the gateway; the conformance suite
//! (npm `@modelcontextprotocol/conformance` 0.2.0-alpha.12 on npm `node` 22) runs its server
//! scenarios against server-everything's own Streamable HTTP mode and against the gateway, and
//! its client scenarios with the TypeScript SDK client (conf_client.mjs) straight to its test
//! servers and through `mcp-audit-proxy stdio` with them as `url` upstreams.
//!
//! Each client case: the client's report directly (stdio) equals its report through the
//! gateway (API key in `Authorization: Bearer`), and the gateway's audit trail pairs every call
//! and records the same calls with the same ends as the stdio wrapper does for the same run.
//!
//! Ignored by a plain `cargo test` because the peers come from PyPI and npm: `bash tests/run.sh`
//! installs them and runs everything.

mod common;
#[path = "interop/peers.rs"]
mod peers;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{TestStore, pairs};
use peers::{Gateway, INTEROP_KEY, interop_dir, python, run_client, server, typescript};
use serde_json::Value;

/// What an audit trail says of each call, for comparing two trails of the same run:
/// (tool, how the call ended, its result), sorted.
fn trail(events: &[Value]) -> Vec<(String, String, String)> {
    let mut v: Vec<_> = pairs(events)
        .iter()
        .map(|(access, end)| {
            (
                access["tool_name"].as_str().unwrap_or_default().to_string(),
                end["event_type"].as_str().unwrap_or_default().to_string(),
                end["result"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

/// One client case: directly, through the stdio wrapper, through the gateway.
fn check(label: &str, client: Vec<String>, server_name: &str, era: &str) {
    let srv = server(server_name);
    let direct = run_client(&client, &srv, None);

    // The same run through the stdio wrapper: the trail the gateway's must equal.
    let store = TestStore::new("");
    let mut wrapped = vec![
        common::proxy_bin().to_string_lossy().into_owned(),
        "stdio".into(),
        "--config".into(),
        store.config.to_string_lossy().into_owned(),
        "--".into(),
    ];
    wrapped.extend(srv.iter().cloned());
    let via_stdio = run_client(&client, &wrapped, None);
    peers::assert_same(label, &direct, &via_stdio, "through the stdio wrapper");

    let gateway = Gateway::start(&[(server_name, &srv)], "");
    let url = gateway.endpoint(server_name);
    let via_gateway = run_client(&client, std::slice::from_ref(&url), Some(INTEROP_KEY));
    let events = gateway.finish();
    peers::assert_same(label, &direct, &via_gateway, "through the gateway");

    let calls = pairs(&events);
    assert!(
        calls.len() >= 4,
        "{label}: only {} tool calls recorded",
        calls.len()
    );
    for (access, end) in &calls {
        assert_eq!(access["user_id"], "interop", "{label}: {access}");
        assert_eq!(
            access["metadata"]["auth_method"], "api_key",
            "{label}: {access}"
        );
        assert_eq!(access["upstream"], server_name, "{label}: {access}");
        assert_eq!(access["metadata"]["protocol_era"], era, "{label}: {access}");
        assert_eq!(end["upstream"], server_name, "{label}: {end}");
    }
    assert_eq!(
        trail(&events),
        trail(&store.events()),
        "{label}: the gateway's trail differs from the stdio wrapper's for the same run"
    );
}

#[test]
#[ignore = "needs the interop peers from PyPI and npm: run `bash tests/run.sh`"]
fn python_sdk_http_client_through_the_gateway_to_server_everything_in_every_2025_revision() {
    for v in ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"] {
        check(
            &format!("python http {v} x server-everything"),
            python(&["--era", "2025", "--protocol-version", v]),
            "everything",
            "2025",
        );
    }
    // The SDK's default: a server/discover probe (sessionless, so the gateway gives it a
    // server of its own), -32601, then initialize.
    check(
        "python http auto x server-everything",
        python(&["--era", "auto"]),
        "everything",
        "2025",
    );
}

#[test]
#[ignore = "needs the interop peers from PyPI and npm: run `bash tests/run.sh`"]
fn python_sdk_http_client_through_the_gateway_to_the_example_server_in_both_eras() {
    check(
        "python http 2025 x rmcp server",
        python(&["--era", "2025"]),
        "rmcp",
        "2025",
    );
    check(
        "python http 2026 x rmcp server",
        python(&["--era", "2026"]),
        "rmcp",
        "2026",
    );
    check(
        "python http auto x rmcp server",
        python(&["--era", "auto"]),
        "rmcp",
        "2026",
    );
}

#[test]
#[ignore = "needs the interop peers from PyPI and npm: run `bash tests/run.sh`"]
fn typescript_sdk_http_client_through_the_gateway_in_both_eras() {
    check(
        "ts http legacy x server-everything",
        typescript("legacy"),
        "everything",
        "2025",
    );
    check(
        "ts http auto x server-everything",
        typescript("auto"),
        "everything",
        "2025",
    );
    check(
        "ts http legacy x rmcp server",
        typescript("legacy"),
        "rmcp",
        "2025",
    );
    check(
        "ts http 2026 x rmcp server",
        typescript("2026-07-28"),
        "rmcp",
        "2026",
    );
    check(
        "ts http auto x rmcp server",
        typescript("auto"),
        "rmcp",
        "2026",
    );
}

// ------------------------------------------------------------------ the conformance suite

/// Checks that pass against server-everything directly and may fail through the gateway,
/// each with the reason. Every entry is a finding reported on issue 8; remove it when the
/// gateway is fixed (the test fails while a listed check passes, so the list stays true).
const KNOWN_GATEWAY_DIFFERENCES: &[(&str, &str, &str)] = &[];

/// (scenario, check id) -> status, from the suite's `-o` folder
/// (`server-<scenario>-<timestamp>/checks.json`).
fn checks(out: &Path) -> BTreeMap<(String, String), String> {
    let mut found = BTreeMap::new();
    for entry in std::fs::read_dir(out).unwrap() {
        let dir = entry.unwrap().path();
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("server-") else {
            continue;
        };
        // The timestamp is the last six dash-separated parts: 2026-12-02T02-09-26-317Z.
        let parts: Vec<&str> = rest.split('-').collect();
        let scenario = parts[..parts.len().saturating_sub(6)].join("-");
        let Ok(text) = std::fs::read_to_string(dir.join("checks.json")) else {
            continue;
        };
        let list: Vec<Value> = serde_json::from_str(&text).unwrap();
        for c in list {
            found.insert(
                (
                    scenario.clone(),
                    c["id"].as_str().unwrap_or("?").to_string(),
                ),
                c["status"].as_str().unwrap_or("?").to_string(),
            );
        }
    }
    found
}

/// The whole conformance comparison (four runs of the suite) must end by then: CI's budget
/// for it is 5 minutes.
const CONFORMANCE_BUDGET: Duration = Duration::from_secs(300);

/// The conformance suite's command line (its own Node), silent, for the caller's arguments.
fn conformance_suite() -> Command {
    let dir = interop_dir().join("conformance");
    let mut cmd = Command::new(dir.join("node_modules/.bin/node"));
    cmd.arg(dir.join("node_modules/@modelcontextprotocol/conformance/dist/index.js"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// Runs the suite's server scenarios against `url` (`--spec-version` when given), ending by
/// `deadline`.
fn conformance(url: &str, spec_version: Option<&str>, out: &Path, deadline: Instant) {
    let mut cmd = conformance_suite();
    cmd.args(["server", "--url", url, "--timeout", "20000", "-o"])
        .arg(out)
        .current_dir(interop_dir().join("conformance"));
    if let Some(v) = spec_version {
        cmd.args(["--spec-version", v]);
    }
    let mut child = cmd.spawn().expect("run the conformance suite");
    // The suite exits 1 when any scenario fails (server-everything fails many: it is not the
    // suite's own test server); the checks it wrote are what we compare.
    wait_or_kill(
        &mut child,
        deadline.saturating_duration_since(Instant::now()),
        url,
    );
}

fn wait_or_kill(child: &mut Child, limit: Duration, what: &str) {
    let until = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > until {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the conformance suite against {what} hung: killed after {limit:?} (budget \
                 {CONFORMANCE_BUDGET:?} for all runs)"
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The client scenarios of the conformance suite, each run twice: the official TypeScript SDK
/// client (tests/interop/conf_client.mjs) straight to the scenario's test server, and over
/// stdio through `mcp-audit-proxy stdio` with that server as its `url` upstream. Every check
/// that passes directly passes through the proxy, and every call is in the trail, paired.
/// helper-89 found three that did not: a GET stream refused with 404 (the suite's servers
/// have no GET route) ended the link or re-initialized in a loop (`tools_call`), a `retry:`
/// the proxy did not wait for (`sse-retry`), tools with invalid `x-mcp-header` called
/// (`http-invalid-tool-headers`).
#[test]
#[ignore = "needs the interop peers from PyPI and npm: run `bash tests/run.sh`"]
fn conformance_client_scenarios_pass_through_the_stdio_bridge_wherever_they_pass_directly() {
    const SCENARIOS: &[(&str, Option<&str>)] = &[
        ("initialize", None),
        ("tools_call", None),
        ("sse-retry", None),
        ("tools_call", Some("2026-07-28")),
        ("request-metadata", Some("2026-07-28")),
        ("http-standard-headers", Some("2026-07-28")),
        ("http-custom-headers", Some("2026-07-28")),
        ("http-invalid-tool-headers", Some("2026-07-28")),
        ("sep-2322-client-request-state", Some("2026-07-28")),
    ];
    let started = Instant::now();
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    let run = |how: &str, scenario: &str, spec: Option<&str>| -> BTreeMap<String, String> {
        let out = work
            .path()
            .join(format!("{how}-{scenario}-{}", spec.unwrap_or("2025")));
        let mut cmd = conformance_suite();
        cmd.args(["client", "--command"])
            .arg(format!("node conf_client.mjs {how}"))
            .args(["--scenario", scenario, "-o"])
            .arg(&out)
            .current_dir(interop_dir().join("node"))
            .env("MCP_AUDIT_PROXY", common::proxy_bin())
            .env("MCP_AUDIT_STORE", &store);
        if let Some(v) = spec {
            cmd.args(["--spec-version", v]);
        }
        let mut child = cmd.spawn().expect("run the conformance suite");
        wait_or_kill(
            &mut child,
            Duration::from_secs(120),
            &format!("{scenario} ({how})"),
        );
        let mut found = BTreeMap::new();
        for entry in std::fs::read_dir(&out).unwrap() {
            let Ok(text) = std::fs::read_to_string(entry.unwrap().path().join("checks.json"))
            else {
                continue;
            };
            // A check id repeats (one per tool, say): it passes when every one does. INFO
            // entries are the suite's log of messages, not checks.
            for c in serde_json::from_str::<Vec<Value>>(&text).unwrap() {
                let status = c["status"].as_str().unwrap_or("?").to_string();
                if status == "INFO" {
                    continue;
                }
                let slot = found
                    .entry(c["id"].as_str().unwrap_or("?").to_string())
                    .or_insert_with(|| status.clone());
                if status != "SUCCESS" {
                    *slot = status;
                }
            }
        }
        found
    };
    let mut differences = Vec::new();
    let mut table = String::new();
    for (scenario, spec) in SCENARIOS {
        let direct = run("direct", scenario, *spec);
        let through = run("proxy", scenario, *spec);
        assert!(!direct.is_empty(), "{scenario}: no checks written directly");
        let passed = |m: &BTreeMap<String, String>| m.values().filter(|s| *s == "SUCCESS").count();
        table += &format!(
            "{:<32} {:<10} direct {}/{}  proxy {}/{}\n",
            scenario,
            spec.unwrap_or("2025"),
            passed(&direct),
            direct.len(),
            passed(&through),
            through.len()
        );
        for (id, status) in &direct {
            let got = through.get(id).map_or("missing", String::as_str);
            if status == "SUCCESS" && got != "SUCCESS" {
                differences.push(format!(
                    "{scenario} {spec:?} {id}: direct SUCCESS, proxy {got}"
                ));
            }
        }
    }
    eprintln!(
        "conformance client scenarios, {:.1} s:\n{table}",
        started.elapsed().as_secs_f64()
    );
    assert!(differences.is_empty(), "{}", differences.join("\n"));
    // The calls made through the proxy are in its trail, each with its end.
    let config = work.path().join("proxy.toml");
    std::fs::write(
        &config,
        format!("[audit]\nstore_dir = {:?}\n", store.to_string_lossy()),
    )
    .unwrap();
    let events = common::events_of(&config);
    let accesses = events
        .iter()
        .filter(|e| e["event_type"] == "tool_access")
        .count();
    assert!(accesses > 0, "no call in the trail");
    assert_eq!(pairs(&events).len(), accesses, "every call has its end");
}

/// server-everything in its own Streamable HTTP mode on a free port; killed on drop.
struct EverythingHttp(Child, u16);

impl EverythingHttp {
    fn start() -> EverythingHttp {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("node")
            .args([peers::everything_js().as_str(), "streamableHttp"])
            .env("PORT", port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start server-everything streamableHttp");
        let until = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < until,
                "server-everything did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        EverythingHttp(child, port)
    }
}

impl Drop for EverythingHttp {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tally(checks: &BTreeMap<(String, String), String>, scenario: &str) -> (usize, usize) {
    let mut pass = 0;
    let mut fail = 0;
    for ((s, _), status) in checks {
        if s == scenario {
            if status == "SUCCESS" {
                pass += 1
            } else {
                fail += 1
            }
        }
    }
    (pass, fail)
}

#[test]
#[ignore = "needs the interop peers from PyPI and npm: run `bash tests/run.sh`"]
fn conformance_server_scenarios_pass_through_the_gateway_wherever_they_pass_directly() {
    let started = Instant::now();
    let direct_server = EverythingHttp::start();
    let direct_url = format!("http://127.0.0.1:{}/mcp", direct_server.1);
    let everything = vec!["node".to_string(), peers::everything_js(), "stdio".into()];
    // The suite sends no credential: the gateway serves it anonymously.
    // The same server twice through the gateway: as a stdio child, and as a remote
    // upstream (the HTTP server the direct run uses).
    let gateway = Gateway::start_mixed(
        &[("everything", &everything)],
        &[("remote", &direct_url)],
        "allow_anonymous = true",
    );
    let gateway_url = gateway.endpoint("everything");
    let remote_url = gateway.endpoint("remote");
    let work = tempfile::tempdir().unwrap();

    let mut differences = Vec::new();
    let mut seen_known = Vec::new();
    let mut table = String::new();
    // The default suite (2025 revisions), then the 2026-07-28 scenarios. server-everything
    // speaks only the 2025 handshake era, so directly almost no 2026 check passes and the
    // comparison there holds the gateway to little; it still must not do worse.
    for (era, spec) in [("2025", None), ("2026-07-28", Some("2026-07-28"))] {
        let out_direct: PathBuf = work.path().join(format!("direct-{era}"));
        conformance(&direct_url, spec, &out_direct, started + CONFORMANCE_BUDGET);
        let direct = checks(&out_direct);
        assert!(
            !direct.is_empty(),
            "{era}: the suite wrote no results directly"
        );
        for (route, url) in [("stdio", &gateway_url), ("remote", &remote_url)] {
            let out_gateway: PathBuf = work.path().join(format!("gateway-{route}-{era}"));
            conformance(url, spec, &out_gateway, started + CONFORMANCE_BUDGET);
            let through = checks(&out_gateway);
            assert!(
                !through.is_empty(),
                "{era}: the suite wrote no results through the gateway ({route})"
            );
            let scenarios: std::collections::BTreeSet<&String> = direct
                .keys()
                .chain(through.keys())
                .map(|(s, _)| s)
                .collect();
            for scenario in scenarios {
                let (dp, df) = tally(&direct, scenario);
                let (gp, gf) = tally(&through, scenario);
                let mark = |f: usize| if f == 0 { "pass" } else { "FAIL" };
                table += &format!(
                    "{era:<10} {route:<6} {scenario:<40} direct {} {dp}/{}  gateway {} {gp}/{}\n",
                    mark(df),
                    dp + df,
                    mark(gf),
                    gp + gf
                );
            }
            for ((scenario, id), status) in &direct {
                if status != "SUCCESS" {
                    continue;
                }
                let got = through
                    .get(&(scenario.clone(), id.clone()))
                    .map(String::as_str)
                    .unwrap_or("missing");
                if got == "SUCCESS" {
                    continue;
                }
                if KNOWN_GATEWAY_DIFFERENCES
                    .iter()
                    .any(|(s, c, _)| s == scenario && c == id)
                {
                    seen_known.push((scenario.clone(), id.clone()));
                    continue;
                }
                differences.push(format!(
                    "{era} {scenario}/{id}: direct SUCCESS, gateway ({route}) {got}"
                ));
            }
        }
    }
    let events = gateway.finish();
    drop(direct_server);
    eprintln!(
        "conformance (direct = server-everything streamableHttp; gateway stdio = server-everything \
         stdio behind the gateway; gateway remote = the direct server as the gateway's `url` \
         upstream), {:.1} s:\n{table}",
        started.elapsed().as_secs_f64()
    );
    // Every call the suite made through the gateway is in the trail, paired; requests the
    // gateway refused at the HTTP level (the suite's DNS-rebinding and stale-session probes)
    // are lone refusal events with their status and reason.
    let (http_refusals, calls): (Vec<Value>, Vec<Value>) = events.into_iter().partition(|e| {
        e["linked_event_id"].is_null() && e["metadata"]["http"]["status_code"].is_u64()
    });
    for r in &http_refusals {
        assert_eq!(r["result"], "refused", "{r}");
        assert!(r["metadata"]["reason"].is_string(), "{r}");
    }
    assert!(
        !pairs(&calls).is_empty(),
        "the suite's calls are not in the trail"
    );
    assert!(
        differences.is_empty(),
        "checks that pass directly but fail through the gateway (see the output of \
         results with `--nocapture`):\n{}",
        differences.join("\n")
    );
    for (scenario, id, why) in KNOWN_GATEWAY_DIFFERENCES {
        assert!(
            seen_known.iter().any(|(s, c)| s == scenario && c == id),
            "{scenario}/{id} passes through the gateway now (or no longer directly): remove it \
             from KNOWN_GATEWAY_DIFFERENCES ({why})"
        );
    }
}

// ------------------------------------------------------------------ gateway bugs found by peers
//
// Each test below states what a spec-following peer needs; each failed on the gateway when
// the SDK and conformance runs found it, and is kept as a regression test.
const ACCEPT_BOTH: &str = "application/json, text/event-stream";

/// The 2026-07-28 per-request `_meta`, for raw bodies.
const META_2026: &str = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"raw","version":"1"},"io.modelcontextprotocol/clientCapabilities":{}}"#;

/// POSTs `body` to `url` with the MCP headers and `extra`.
async fn raw_post(url: &str, extra: &[(&str, &str)], body: String) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", ACCEPT_BOTH)
        .header("authorization", format!("Bearer {INTEROP_KEY}"));
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    req.body(body).send().await.expect("POST")
}

/// A 2025 session by hand: initialize at `version`, then notifications/initialized.
async fn raw_session(url: &str, version: &str) -> String {
    let init = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{{"protocolVersion":"{version}","capabilities":{{}},"clientInfo":{{"name":"raw","version":"1"}}}}}}"#
    );
    let resp = raw_post(url, &[], init).await;
    let session = resp.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_string();
    let _ = resp.bytes().await;
    let resp = raw_post(
        url,
        &[
            ("mcp-session-id", &session),
            ("mcp-protocol-version", version),
        ],
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.into(),
    )
    .await;
    assert_eq!(resp.status(), 202);
    session
}

/// The JSON-RPC messages of an SSE (or JSON) response read until `until` holds for one of
/// them, or `limit` passes; returns them and whether `until` held.
async fn read_messages(
    mut resp: reqwest::Response,
    limit: Duration,
    until: impl Fn(&Value) -> bool,
) -> (Vec<Value>, bool) {
    let deadline = tokio::time::Instant::now() + limit;
    let mut text = String::new();
    let mut seen = Vec::new();
    loop {
        let chunk = match tokio::time::timeout_at(deadline, resp.chunk()).await {
            Ok(Ok(Some(c))) => c,
            _ => return (seen, false),
        };
        text.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = text.find("\n\n") {
            let event: String = text.drain(..end + 2).collect();
            for line in event.lines() {
                let data = line.strip_prefix("data:").unwrap_or(line).trim();
                if let Ok(v) = serde_json::from_str::<Value>(data) {
                    let done = until(&v);
                    seen.push(v);
                    if done {
                        return (seen, true);
                    }
                }
            }
        }
        if let Ok(v) = serde_json::from_str::<Value>(text.trim()) {
            let done = until(&v);
            seen.push(v);
            return (seen, done);
        }
    }
}

fn has_id(id: i64) -> impl Fn(&Value) -> bool {
    move |v| v["id"] == id && (v.get("result").is_some() || v.get("error").is_some())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the interop peers from PyPI and npm: run `bash tests/run.sh`"]
async fn gateway_bug_a_batch_is_answered() {
    // MCP 2025-03-26, Transports, Streamable HTTP, "Sending Messages to the Server" 2-5: a POST
    // may carry a batch; the server answers every request in it (server-everything's own HTTP
    // mode sends both responses on the SSE stream). 2025-06-18 removed batches: a batch then
    // gets an error, not silence.
    let srv = server("everything");
    let gateway = Gateway::start(&[("everything", &srv)], "");
    let url = gateway.endpoint("everything");
    let session = raw_session(&url, "2025-03-26").await;
    let batch = r#"[{"jsonrpc":"2.0","id":21,"method":"ping"},{"jsonrpc":"2.0","id":22,"method":"tools/call","params":{"name":"echo","arguments":{"message":"b"}}}]"#;
    let resp = raw_post(
        &url,
        &[
            ("mcp-session-id", &session),
            ("mcp-protocol-version", "2025-03-26"),
        ],
        batch.into(),
    )
    .await;
    let (seen, _) = read_messages(resp, Duration::from_secs(10), |_| false).await;
    let ids: Vec<&Value> = seen.iter().map(|m| &m["id"]).collect();
    assert!(
        ids.contains(&&Value::from(21)) && ids.contains(&&Value::from(22)),
        "2025-03-26 batch: both requests must be answered within 10 s; got {seen:?}"
    );
    let session = raw_session(&url, "2025-06-18").await;
    let resp = raw_post(
        &url,
        &[
            ("mcp-session-id", &session),
            ("mcp-protocol-version", "2025-06-18"),
        ],
        batch.replace("21", "31").replace("22", "32"),
    )
    .await;
    let status = resp.status();
    let (seen, _) = read_messages(resp, Duration::from_secs(10), |_| false).await;
    assert!(
        status == 400 || seen.iter().any(|m| m.get("error").is_some()),
        "2025-06-18 batch: expected an error, got {status} with {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the interop peers from PyPI and npm: run `bash tests/run.sh`"]
async fn gateway_bug_a_resumed_stream_delivers_the_response() {
    // MCP 2025-11-25, Transports, "Resumability and Redelivery": the client resumes with GET
    // and Last-Event-ID; the server replays what would have followed on the cut stream. The
    // official SDKs resume this way when a POST stream drops, so their call hangs otherwise.
    let srv = server("everything");
    let gateway = Gateway::start(&[("everything", &srv)], "");
    let url = gateway.endpoint("everything");
    let session = raw_session(&url, "2025-11-25").await;
    let headers = [
        ("mcp-session-id", session.as_str()),
        ("mcp-protocol-version", "2025-11-25"),
    ];
    let call = r#"{"jsonrpc":"2.0","id":41,"method":"tools/call","params":{"name":"trigger-long-running-operation","arguments":{"duration":2,"steps":4},"_meta":{"progressToken":"t41"}}}"#;
    let mut resp = raw_post(&url, &headers, call.into()).await;
    // The first event (progress 1), then the client drops the stream.
    let mut text = String::new();
    while !text.contains("\n\n") {
        let chunk = resp.chunk().await.unwrap().expect("a first event");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    drop(resp);
    let last = text
        .lines()
        .find_map(|l| l.strip_prefix("id:"))
        .expect("SSE events carry ids")
        .trim()
        .to_string();
    let resumed = reqwest::Client::new()
        .get(&url)
        .header("accept", "text/event-stream")
        .header("authorization", format!("Bearer {INTEROP_KEY}"))
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-11-25")
        .header("last-event-id", &last)
        .send()
        .await
        .unwrap();
    assert_eq!(resumed.status(), 200);
    let (seen, found) = read_messages(resumed, Duration::from_secs(10), has_id(41)).await;
    assert!(
        found,
        "the response to 41 never came on the resumed stream (the call takes 2 s); got {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the interop peers from PyPI and npm: run `bash tests/run.sh`"]
async fn gateway_bug_202_has_no_body() {
    // MCP 2025-06-18 and 2025-11-25, Transports, "Sending Messages to the Server" 4: for a
    // notification or response the server MUST return 202 Accepted with no body.
    let srv = server("rmcp");
    let gateway = Gateway::start(&[("rmcp", &srv)], "");
    let url = gateway.endpoint("rmcp");
    let session = raw_session(&url, "2025-11-25").await;
    let resp = raw_post(
        &url,
        &[
            ("mcp-session-id", &session),
            ("mcp-protocol-version", "2025-11-25"),
        ],
        r#"{"jsonrpc":"2.0","method":"notifications/roots/list_changed"}"#.into(),
    )
    .await;
    assert_eq!(resp.status(), 202);
    let body = resp.bytes().await.unwrap();
    assert!(body.is_empty(), "202 with a body: {body:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the interop peers from PyPI and npm: run `bash tests/run.sh`"]
async fn gateway_bug_closing_a_2026_stream_cancels_the_call() {
    // Issue 8, item 2 (2026-07-28): closing the request-scoped SSE stream cancels the call, and
    // the trail records it so.
    let srv = server("rmcp");
    let gateway = Gateway::start(&[("rmcp", &srv)], "");
    let url = gateway.endpoint("rmcp");
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":"cancel-me","method":"tools/call","params":{{"name":"slow","arguments":{{"ms":3000,"steps":3}},{META_2026}}}}}"#
    );
    let resp = raw_post(
        &url,
        &[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "slow"),
        ],
        body,
    )
    .await;
    assert_eq!(resp.status(), 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(resp);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let events = gateway.finish();
    let calls = pairs(&events);
    let (_, end) = calls
        .iter()
        .find(|(a, _)| a["metadata"]["request_id"] == "cancel-me")
        .expect("the call is in the trail");
    assert_ne!(
        end["result"], "success",
        "the call ran to the end after its stream closed: {end}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the interop peers from PyPI and npm: run `bash tests/run.sh`"]
async fn gateway_bug_2026_unsupported_version_error_has_its_shape() {
    // MCP 2026-07-28 (SEP-2575; conformance server-stateless, checks
    // sep-2575-server-unsupported-version-error and sep-2575-http-server-error-jsonrpc-id):
    // 400 with an UnsupportedProtocolVersionError whose data lists `supported` and echoes
    // `requested`, carrying the request's id.
    let srv = server("rmcp");
    let gateway = Gateway::start(&[("rmcp", &srv)], "");
    let url = gateway.endpoint("rmcp");
    let body = r#"{"jsonrpc":"2.0","id":301,"method":"server/discover","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"v999.0.0","io.modelcontextprotocol/clientCapabilities":{}}}}"#;
    let resp = raw_post(
        &url,
        &[
            ("mcp-protocol-version", "v999.0.0"),
            ("mcp-method", "server/discover"),
        ],
        body.into(),
    )
    .await;
    assert_eq!(resp.status(), 400);
    let (seen, _) = read_messages(resp, Duration::from_secs(5), |_| true).await;
    let err = &seen[0];
    assert_eq!(err["id"], 301, "{err}");
    assert!(err["error"]["data"]["supported"].is_array(), "{err}");
    assert_eq!(err["error"]["data"]["requested"], "v999.0.0", "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the interop peers from PyPI and npm: run `bash tests/run.sh`"]
async fn gateway_bug_2026_errors_carry_their_http_status() {
    // MCP 2026-07-28 (SEP-2575; conformance server-stateless, checks
    // sep-2575-http-server-method-not-found-404 and sep-2575-http-server-meta-invalid-400).
    // The stdio server can only answer in JSON-RPC; the status is the gateway's to set.
    let srv = server("rmcp");
    let gateway = Gateway::start(&[("rmcp", &srv)], "");
    let url = gateway.endpoint("rmcp");
    let unknown = format!(
        r#"{{"jsonrpc":"2.0","id":601,"method":"unknown/method","params":{{{META_2026}}}}}"#
    );
    let resp = raw_post(
        &url,
        &[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "unknown/method"),
        ],
        unknown,
    )
    .await;
    let status = resp.status();
    let (seen, _) = read_messages(resp, Duration::from_secs(5), has_id(601)).await;
    assert_eq!(status, 404, "unknown method: {seen:?}");
    let no_meta = r#"{"jsonrpc":"2.0","id":101,"method":"server/discover","params":{}}"#;
    let resp = raw_post(
        &url,
        &[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "server/discover"),
        ],
        no_meta.into(),
    )
    .await;
    let status = resp.status();
    let (seen, _) = read_messages(resp, Duration::from_secs(5), has_id(101)).await;
    assert_eq!(status, 400, "request without _meta: {seen:?}");
}
