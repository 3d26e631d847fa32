//! Direct vs proxied, in one run: the same raw JSON-RPC client and the same rmcp server, with
//! the proxy in `batched` and in `sync` mode with the default policy, and `nopolicy` (batched,
//! `[risk] enabled = false`), sequential and 16 calls in flight, `tools/call`
//! echo with 100 B and 64 KiB arguments. Prints p50/p99 latency, calls/s and the ratios
//! against direct.
//!
//! `cargo bench --bench proxy` (add `-- --quick` for a short run). The bench binary re-runs
//! itself with `--serve` as the MCP server, so nothing else needs building.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{Implementation, ServerCapabilities, ServerConfig};
use rmcp::{ServerHandler, ServiceExt, tool, tool_handler, tool_router};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::{Mutex, Semaphore};

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct EchoArgs {
    text: String,
}

/// The benchmark's MCP server: one echo tool.
#[derive(Clone)]
struct EchoServer {
    #[allow(dead_code, reason = "read by #[tool_handler]")]
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl EchoServer {
    #[tool(description = "Echo the text", annotations(read_only_hint = true))]
    async fn echo(&self, Parameters(EchoArgs { text }): Parameters<EchoArgs>) -> String {
        text
    }
}

#[tool_handler]
impl ServerHandler for EchoServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("bench-echo", "1"))
    }
}

async fn serve() {
    let server = EchoServer {
        tool_router: EchoServer::tool_router(),
    };
    let running = server.serve(rmcp::transport::stdio()).await.expect("serve");
    let _ = running.waiting().await;
}

/// One client connection over a child's stdio.
struct Conn {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Conn {
    async fn start(mut command: Command) -> Conn {
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("spawn");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::with_capacity(1 << 20, child.stdout.take().unwrap());
        let mut c = Conn {
            child,
            stdin,
            stdout,
        };
        c.write(br#"{"jsonrpc":"2.0","id":"init","method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}"#).await;
        c.read().await;
        c.write(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
            .await;
        c
    }

    async fn write(&mut self, line: &[u8]) {
        self.stdin.write_all(line).await.unwrap();
        self.stdin.write_all(b"\n").await.unwrap();
    }

    async fn read(&mut self) -> Vec<u8> {
        let mut line = Vec::new();
        self.stdout.read_until(b'\n', &mut line).await.unwrap();
        assert!(!line.is_empty(), "server closed");
        line
    }

    async fn finish(mut self) {
        drop(self.stdin);
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}

/// A request line built from a pre-serialized tail, so the client is never the bottleneck.
fn request(id: u64, tail: &[u8]) -> Vec<u8> {
    let mut line = Vec::with_capacity(tail.len() + 32);
    line.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
    line.extend_from_slice(id.to_string().as_bytes());
    line.extend_from_slice(tail);
    line
}

fn request_tail(text: &str) -> Vec<u8> {
    let params = serde_json::to_string(&json!({"name":"echo","arguments":{"text":text}})).unwrap();
    format!(",\"method\":\"tools/call\",\"params\":{params}}}").into_bytes()
}

/// The id of a response line, read without parsing the (possibly 64 KiB) result.
fn response_id(line: &[u8]) -> u64 {
    let at = memchr::memmem::find(line, b"\"id\":").expect("id") + 5;
    line[at..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .fold(0, |n, b| n * 10 + u64::from(b - b'0'))
}

struct Figures {
    mean_us: f64,
    p50_us: f64,
    p99_us: f64,
    calls_per_s: f64,
}

/// `calls` echo calls with at most `in_flight` outstanding; latency per call.
async fn load(conn: Conn, calls: u64, in_flight: usize, text: &str) -> Figures {
    let tail = request_tail(text);
    let Conn {
        child,
        mut stdin,
        mut stdout,
    } = conn;
    let sent: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let permits = Arc::new(Semaphore::new(in_flight));
    let reader = {
        let sent = sent.clone();
        let permits = permits.clone();
        tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(calls as usize);
            let mut line = Vec::new();
            while (latencies.len() as u64) < calls {
                line.clear();
                stdout.read_until(b'\n', &mut line).await.unwrap();
                assert!(!line.is_empty(), "closed");
                let id = response_id(&line);
                let t = sent.lock().await.remove(&id).expect("unknown id");
                latencies.push(t.elapsed());
                permits.add_permits(1);
            }
            (latencies, stdout)
        })
    };
    let started = Instant::now();
    for id in 0..calls {
        permits.acquire().await.unwrap().forget();
        let line = request(id, &tail);
        sent.lock().await.insert(id, Instant::now());
        stdin.write_all(&line).await.unwrap();
        stdin.write_all(b"\n").await.unwrap();
    }
    let (mut latencies, stdout) = reader.await.unwrap();
    let elapsed = started.elapsed();
    Conn {
        child,
        stdin,
        stdout,
    }
    .finish()
    .await;
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p) as usize].as_secs_f64() * 1e6;
    let mean_us =
        latencies.iter().map(Duration::as_secs_f64).sum::<f64>() / latencies.len() as f64 * 1e6;
    Figures {
        mean_us,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        calls_per_s: calls as f64 / elapsed.as_secs_f64(),
    }
}

/// The proxy in `mode`: `sync` or `batched` durability with the default policy, or
/// `nopolicy` (batched, `[risk] enabled = false`) to show what the policy costs.
fn proxy_command(me: &Path, store: &Path, mode: &str) -> Command {
    let config = store.join(format!("{mode}.toml"));
    let (durability, enabled) = match mode {
        "nopolicy" => ("batched", false),
        other => (other, true),
    };
    std::fs::write(
        &config,
        format!("[upstream]\nname = \"bench\"\n[audit]\nstore_dir = \"store-{mode}\"\ndurability = \"{durability}\"\nflush_interval_ms = 10\n[risk]\nenabled = {enabled}\n"),
    )
    .unwrap();
    let mut c = Command::new(env!("CARGO_BIN_EXE_mcp-audit-proxy"));
    c.arg("stdio")
        .arg("--config")
        .arg(config)
        .arg("--")
        .arg(me)
        .arg("--serve");
    c.env("RUST_LOG", "error");
    c
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--serve") {
        return serve().await;
    }
    let quick = args.iter().any(|a| a == "--quick");
    // `--only MODE:IN_FLIGHT:BYTES` runs one row (and its direct baseline), e.g. for profiling.
    let only: Option<(String, usize, usize)> = args.iter().position(|a| a == "--only").map(|i| {
        let spec: Vec<&str> = args[i + 1].split(':').collect();
        (
            spec[0].to_string(),
            spec[1].parse().unwrap(),
            spec[2].parse().unwrap(),
        )
    });
    let me = PathBuf::from(&args[0]);
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();

    let rounds = if quick { 2 } else { 5 };
    println!("mcp-audit-proxy bench: same client and server, direct vs proxied, in one run");
    println!("each figure is the median of {rounds} rounds; the modes take turns within a round");
    println!(
        "{:<8} {:>9} {:>8} | {:>9} {:>9} {:>9} {:>10} | {:>10} {:>9}",
        "mode", "in flight", "args", "mean µs", "p50 µs", "p99 µs", "calls/s", "+p50 µs", "thrpt"
    );
    for (in_flight, calls) in [
        (1usize, if quick { 300 } else { 1500 }),
        (16, if quick { 1000 } else { 6000 }),
    ] {
        for (label, size) in [("100 B", 100usize), ("64 KiB", 64 * 1024)] {
            if only
                .as_ref()
                .is_some_and(|(_, n, b)| *n != in_flight || *b != size)
            {
                continue;
            }
            let text = "x".repeat(size);
            let calls = if size > 1000 { calls / 4 } else { calls };
            let modes: Vec<&str> = ["direct", "nopolicy", "batched", "sync"]
                .into_iter()
                .filter(|m| {
                    only.as_ref()
                        .is_none_or(|(o, _, _)| *m == "direct" || m == o)
                })
                .collect();
            let mut results: Vec<Vec<Figures>> = modes.iter().map(|_| Vec::new()).collect();
            for _ in 0..rounds {
                for (i, mode) in modes.iter().enumerate() {
                    let command = || match *mode {
                        "direct" => {
                            let mut c = Command::new(&me);
                            c.arg("--serve");
                            c
                        }
                        durability => proxy_command(&me, dir.path(), durability),
                    };
                    // Warm up on a separate connection (page cache, allocator, journal file).
                    load(Conn::start(command()).await, calls / 10, in_flight, &text).await;
                    results[i]
                        .push(load(Conn::start(command()).await, calls, in_flight, &text).await);
                }
            }
            let medians: Vec<Figures> = results.into_iter().map(median).collect();
            for (mode, f) in modes.iter().zip(&medians) {
                let d = &medians[0];
                let (added, ratio) = if *mode == "direct" {
                    (String::from("-"), String::from("-"))
                } else {
                    (
                        format!("{:+.1}", f.p50_us - d.p50_us),
                        format!("{:.0}%", 100.0 * f.calls_per_s / d.calls_per_s),
                    )
                };
                println!(
                    "{mode:<8} {in_flight:>9} {label:>8} | {:>9.1} {:>9.1} {:>9.1} {:>10.0} | {added:>10} {ratio:>9}",
                    f.mean_us, f.p50_us, f.p99_us, f.calls_per_s
                );
            }
        }
    }
}

/// The median of each figure over rounds.
fn median(rounds: Vec<Figures>) -> Figures {
    let mid = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let pick = |f: fn(&Figures) -> f64| mid(&mut rounds.iter().map(f).collect());
    Figures {
        mean_us: pick(|f| f.mean_us),
        p50_us: pick(|f| f.p50_us),
        p99_us: pick(|f| f.p99_us),
        calls_per_s: pick(|f| f.calls_per_s),
    }
}
