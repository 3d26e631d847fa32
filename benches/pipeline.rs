//! The proxy's own work per message, in-process and without pipes: a session's `Pipeline` fed
//! `tools/call` echo requests and their results as server-everything writes them (the id after
//! the result), with the default policy or `[risk] enabled = false`, the audit writer and
//! indexer running behind it as in the proxy.
//!
//! Wall-clock figures of a shared 2-vCPU machine move by more than the changes being made, so
//! this is meant to run under valgrind, which counts instructions (repeatable):
//!
//! ```sh
//! cargo bench --bench pipeline --no-run   # prints the binary's path
//! valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*pipeline::measured' \
//!     target/release/deps/pipeline-HASH --bytes 65536 --calls 50 [--nopolicy]
//! callgrind_annotate --inclusive=yes callgrind.out.PID | grep -E 'from_client|from_server'
//! ```
//!
//! Divide the inclusive counts of `Pipeline::from_client` (the request) and
//! `Pipeline::from_server` (its result) by `--calls`. Run without valgrind, it prints the
//! time per call, which says little on a loaded machine.

use std::time::Instant;

use bytes::Bytes;
use mcp_audit_proxy::config::Config;
use mcp_audit_proxy::policy::PolicyCell;
use mcp_audit_proxy::proxy::{Pipeline, Route, SessionInfo};
use mcp_audit_proxy::store::Store;

/// The client's `initialize` and its answer, so that the session is as after a handshake.
const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}"#;
const INITIALIZED: &str = r#"{"result":{"protocolVersion":"2025-06-18","capabilities":{"tools":{}},"serverInfo":{"name":"mcp-servers/everything","version":"2026.8.31"}},"jsonrpc":"2.0","id":0}"#;

fn line(text: String) -> Bytes {
    Bytes::from(text + "\n")
}

/// A `tools/call` echo with `bytes` of `x`, as the proxy bench's client sends it.
fn request(id: u64, bytes: usize) -> Bytes {
    let text = "x".repeat(bytes);
    line(format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","arguments":{{"message":"{text}"}}}}}}"#
    ))
}

/// server-everything's answer to it: `Echo: ` and the text, the id last.
fn result(id: u64, bytes: usize) -> Bytes {
    let text = "x".repeat(bytes);
    line(format!(
        r#"{{"result":{{"content":[{{"type":"text","text":"Echo: {text}"}}]}},"jsonrpc":"2.0","id":{id}}}"#
    ))
}

fn expect_forwarded(route: &Route) {
    assert!(
        matches!(route, Route::ToServer(_) | Route::ToClient(_)),
        "not forwarded: {route:?}"
    );
}

/// The calls counted: everything callgrind sees between entering and leaving this.
#[inline(never)]
fn measured(pipeline: &Pipeline, lines: Vec<(Bytes, Bytes)>) {
    for (req, res) in lines {
        let route = pipeline.from_client(req);
        expect_forwarded(&route);
        let route = pipeline.from_server(res);
        expect_forwarded(&route);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map(|v| v.parse::<usize>().expect(name))
    };
    let bytes = value("--bytes").unwrap_or(65536);
    let calls = value("--calls").unwrap_or(50);
    let enabled = !args.iter().any(|a| a == "--nopolicy");
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let config = Config::parse(
        &dir.path().join("proxy.toml"),
        &format!("[upstream]\nname = \"bench\"\n[risk]\nenabled = {enabled}\n"),
    )
    .unwrap_or_else(|e| panic!("bench config: {e}"));
    let root = dir.path().join("store");
    let store = Store::open_journal(&root, config.audit.segment_bytes).unwrap();
    let (journal, keeper, _lock) = store.into_parts(&root);
    let (audit, threads) = mcp_audit_proxy::audit::writer::start(
        journal,
        keeper,
        config.audit.durability,
        config.audit.flush_interval,
        1 << 20,
    )
    .unwrap();
    let pipeline = Pipeline::new(
        SessionInfo {
            session_id: "bench".into(),
            user_id: "bench".into(),
            upstream: "bench".into(),
            auth_method: "stdio",
            http: None,
        },
        audit.clone(),
        &config.limits,
        PolicyCell::new(config.policy.clone()),
        None,
    );
    expect_forwarded(&pipeline.from_client(line(INITIALIZE.into())));
    expect_forwarded(&pipeline.from_server(line(INITIALIZED.into())));
    // Warm-up: the allocator and the lazily built parts of the policy.
    let warm = 5;
    for id in 1..=warm {
        expect_forwarded(&pipeline.from_client(request(id, bytes)));
        expect_forwarded(&pipeline.from_server(result(id, bytes)));
    }
    let lines: Vec<(Bytes, Bytes)> = (0..calls as u64)
        .map(|i| (request(warm + 1 + i, bytes), result(warm + 1 + i, bytes)))
        .collect();
    let t = Instant::now();
    measured(&pipeline, lines);
    let elapsed = t.elapsed();
    println!(
        "{calls} calls of {bytes} B, policy {}: {:.1} µs per call (request and result)",
        if enabled { "on" } else { "off" },
        elapsed.as_secs_f64() * 1e6 / calls as f64
    );
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(audit.close());
    threads.join();
}
