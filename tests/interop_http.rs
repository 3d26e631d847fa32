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
//! scenarios against server-everything's own Streamable HTTP mode and against the gateway.
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
const KNOWN_GATEWAY_DIFFERENCES: &[(&str, &str, &str)] = &[(
    "dns-rebinding-protection",
    "localhost-host-valid-accepted",
    "with no `allowed_origins` the gateway answers 403 to `Origin: http://127.0.0.1:<its own \
     port>` (the suite expects 2xx for a localhost Host/Origin); whether the gateway's own \
     origin is allowed by default is open on issue 8",
)];

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

/// Runs the suite's server scenarios against `url` (`--spec-version` when given), ending by
/// `deadline`.
fn conformance(url: &str, spec_version: Option<&str>, out: &Path, deadline: Instant) {
    let dir = interop_dir().join("conformance");
    let node = dir.join("node_modules/.bin/node");
    let cli = dir.join("node_modules/@modelcontextprotocol/conformance/dist/index.js");
    let mut cmd = Command::new(node);
    cmd.arg(cli)
        .args(["server", "--url", url, "--timeout", "20000", "-o"])
        .arg(out)
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
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
    let gateway = Gateway::start(&[("everything", &everything)], "allow_anonymous = true");
    let gateway_url = gateway.endpoint("everything");
    let work = tempfile::tempdir().unwrap();

    let mut differences = Vec::new();
    let mut seen_known = Vec::new();
    let mut table = String::new();
    // The default suite (2025 revisions), then the 2026-07-28 scenarios. server-everything
    // speaks only the 2025 handshake era, so directly almost no 2026 check passes and the
    // comparison there holds the gateway to little; it still must not do worse.
    for (era, spec) in [("2025", None), ("2026-07-28", Some("2026-07-28"))] {
        let out_direct: PathBuf = work.path().join(format!("direct-{era}"));
        let out_gateway: PathBuf = work.path().join(format!("gateway-{era}"));
        conformance(&direct_url, spec, &out_direct, started + CONFORMANCE_BUDGET);
        conformance(
            &gateway_url,
            spec,
            &out_gateway,
            started + CONFORMANCE_BUDGET,
        );
        let direct = checks(&out_direct);
        let through = checks(&out_gateway);
        assert!(
            !direct.is_empty(),
            "{era}: the suite wrote no results directly"
        );
        assert!(
            !through.is_empty(),
            "{era}: the suite wrote no results through the gateway"
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
                "{era:<10} {scenario:<40} direct {} {dp}/{}  gateway {} {gp}/{}\n",
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
                "{era} {scenario}/{id}: direct SUCCESS, gateway {got}"
            ));
        }
    }
    let events = gateway.finish();
    drop(direct_server);
    eprintln!(
        "conformance (direct = server-everything streamableHttp, gateway = server-everything stdio \
         behind the gateway), {:.1} s:\n{table}",
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
