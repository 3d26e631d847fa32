//! Direct vs relayed vs proxied, in one run: the same raw JSON-RPC client against one MCP
//! server (the bench's own rmcp echo server, or `@modelcontextprotocol/server-everything` under
//! Node), reached directly, through a plain relay (`sh -c 'cat | SERVER | cat'`: two extra
//! processes and pipes, no parsing), and through `mcp-audit-proxy stdio` in `batched` mode with
//! the default policy, `nopolicy` (batched, `[risk] enabled = false`) and `sync`; sequential and
//! 16 calls in flight, `tools/call` echo with 100 B and 64 KiB arguments. Prints p50/p99 latency,
//! calls/s, the latency added to direct, throughput against direct, and the targets' ratios:
//! added p50 of the proxy over that of the relay, and p50 with the policy over p50 without.
//!
//! `cargo bench --bench proxy` (add `-- --quick` for a short run; `-- --server rmcp` or
//! `-- --server everything` for one server; `-- --only MODE:IN_FLIGHT:BYTES` for one row and its
//! direct baseline, `-- --hold SECONDS` to repeat that row for profiling, `-- --verbose` to keep
//! stderr, `-- --scale N` for N times the calls per round (the steady state of a long session
//! rather than a wrapper's first second); `BENCH_PROXY_BIN=PATH` runs another build of the
//! proxy; `-- --cpu` adds each mode's CPU per measured call, per thread of the process the
//! client started and for its descendants together (`/proc`: the figure that stays put on a
//! shared machine while throughput swings). The bench binary
//! re-runs itself with `--serve` as the rmcp server; server-everything comes from
//! `bash tests/interop/setup.sh` and is skipped, with a message, when it is not installed.

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

/// The MCP server under test: how to start it and what its echo tool is called with.
#[derive(Clone)]
struct Server {
    name: &'static str,
    command: Vec<String>,
    /// The echo tool's argument.
    arg: &'static str,
}

impl Server {
    fn rmcp(me: &Path) -> Server {
        Server {
            name: "rmcp",
            command: vec![me.to_string_lossy().into_owned(), "--serve".into()],
            arg: "text",
        }
    }

    /// server-everything as `tests/interop/setup.sh` installs it, or why it cannot run.
    fn everything() -> Result<Server, String> {
        let dir = std::env::var_os("MCP_AUDIT_INTEROP_DIR").map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("target/interop"),
            PathBuf::from,
        );
        let package = dir.join("node/node_modules/@modelcontextprotocol/server-everything");
        let manifest = std::fs::read_to_string(package.join("package.json")).map_err(|_| {
            format!(
                "not installed in {} (run `bash tests/interop/setup.sh`)",
                dir.display()
            )
        })?;
        let manifest: serde_json::Value =
            serde_json::from_str(&manifest).map_err(|e| format!("package.json: {e}"))?;
        // `bin` is a path or a map of names to paths.
        let bin = match &manifest["bin"] {
            serde_json::Value::String(b) => Some(b.clone()),
            serde_json::Value::Object(m) => m.values().find_map(|v| v.as_str()).map(String::from),
            _ => None,
        }
        .ok_or("package.json names no bin")?;
        let node = std::env::var("NODE").unwrap_or_else(|_| "node".into());
        let found = std::process::Command::new(&node)
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            return Err(format!("`{node}` not found (set NODE or install nodejs)"));
        }
        Ok(Server {
            name: "everything",
            command: vec![
                node,
                package.join(bin).to_string_lossy().into_owned(),
                "stdio".into(),
            ],
            arg: "message",
        })
    }

    fn command(&self) -> Command {
        let mut c = Command::new(&self.command[0]);
        c.args(&self.command[1..]);
        c
    }
}

/// One client connection over a child's stdio.
struct Conn {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Conn {
    async fn start(mut command: Command, quiet: bool) -> Conn {
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        if quiet {
            // server-everything's banner and Node's warnings would bury the table.
            command.stderr(Stdio::null());
        }
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

    /// The next response (server notifications and requests are skipped).
    async fn read(&mut self) -> Vec<u8> {
        let mut line = Vec::new();
        loop {
            line.clear();
            self.stdout.read_until(b'\n', &mut line).await.unwrap();
            assert!(!line.is_empty(), "server closed");
            if is_response(&line) {
                return line;
            }
        }
    }

    async fn finish(mut self) {
        drop(self.stdin);
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
        let _ = self.child.kill().await;
    }
}

/// Whether a line is a response, not a notification or request of the server (server-everything
/// sends log notifications): those name their method before any long value.
fn is_response(line: &[u8]) -> bool {
    memchr::memmem::find(&line[..line.len().min(256)], b"\"method\":").is_none()
}

/// A request line built from a pre-serialized tail, so the client is never the bottleneck.
fn request(id: u64, tail: &[u8]) -> Vec<u8> {
    let mut line = Vec::with_capacity(tail.len() + 32);
    line.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
    line.extend_from_slice(id.to_string().as_bytes());
    line.extend_from_slice(tail);
    line
}

fn request_tail(arg: &str, text: &str) -> Vec<u8> {
    let params = serde_json::to_string(&json!({"name":"echo","arguments":{arg:text}})).unwrap();
    format!(",\"method\":\"tools/call\",\"params\":{params}}}").into_bytes()
}

/// The id of a response line, read without parsing the (possibly 64 KiB) result; the id is at
/// the start (rmcp) or at the end (the TypeScript SDK), and the echoed text is all `x`.
fn response_id(line: &[u8]) -> u64 {
    let at = memchr::memmem::rfind(line, b"\"id\":").expect("id") + 5;
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
    /// CPU µs per measured call by thread name (`--cpu`), see [`Cpu`].
    cpu: Vec<(String, f64)>,
}

/// CPU time used so far, in ns, by thread name: the threads of the process the client started
/// (threads of one name summed), `user`/`system` of them all, and `+children` for every
/// process below it (the server behind a relay or the proxy). Read from `/proc`: per thread
/// from `schedstat` (ns), the user/system split from `stat` (clock ticks).
#[derive(Default)]
struct Cpu(HashMap<String, f64>);

impl Cpu {
    fn read(pid: u32) -> Cpu {
        let mut cpu = Cpu::default();
        let tick = 1e9 / 100.0;
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return cpu;
        };
        let mut children = Vec::new();
        for task in tasks.flatten() {
            let dir = task.path();
            let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
            let ns: f64 = std::fs::read_to_string(dir.join("schedstat"))
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse().ok())
                .unwrap_or(0.0);
            *cpu.0.entry(comm.trim().to_string()).or_default() += ns;
            if let Ok(stat) = std::fs::read_to_string(dir.join("stat")) {
                let after = &stat[stat.rfind(')').map_or(0, |i| i + 2)..];
                let f: Vec<f64> = after
                    .split_whitespace()
                    .map(|x| x.parse().unwrap_or(0.0))
                    .collect();
                *cpu.0.entry("(user)".into()).or_default() += f[11] * tick;
                *cpu.0.entry("(system)".into()).or_default() += f[12] * tick;
            }
            if let Ok(c) = std::fs::read_to_string(dir.join("children")) {
                children.extend(c.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
            }
        }
        for child in children {
            let below = Cpu::read(child);
            let total: f64 = below
                .0
                .iter()
                .filter(|(k, _)| !k.starts_with('('))
                .map(|(_, v)| v)
                .sum();
            *cpu.0.entry("+children".into()).or_default() += total;
        }
        cpu
    }

    /// µs per call from `before` to `self`, largest first.
    fn per_call(&self, before: &Cpu, calls: u64) -> Vec<(String, f64)> {
        let mut v: Vec<(String, f64)> = self
            .0
            .iter()
            .map(|(k, ns)| {
                let was = before.0.get(k).copied().unwrap_or(0.0);
                (k.clone(), (ns - was) / 1e3 / calls as f64)
            })
            .collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1));
        v
    }
}

/// `warmup` then `calls` echo calls on one connection (a JIT, the allocator, the page cache
/// and the journal file all warm up in the process measured), with at most `in_flight`
/// outstanding; latency per measured call.
async fn load(conn: Conn, warmup: u64, calls: u64, in_flight: usize, tail: &[u8]) -> Figures {
    let Conn {
        child,
        mut stdin,
        mut stdout,
    } = conn;
    let total = warmup + calls;
    let sent: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let permits = Arc::new(Semaphore::new(in_flight));
    let reader = {
        let sent = sent.clone();
        let permits = permits.clone();
        tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(calls as usize);
            let mut line = Vec::new();
            let mut answered = 0;
            while answered < total {
                line.clear();
                stdout.read_until(b'\n', &mut line).await.unwrap();
                assert!(!line.is_empty(), "closed");
                if !is_response(&line) {
                    continue;
                }
                let id = response_id(&line);
                let t = sent.lock().await.remove(&id).expect("unknown id");
                if id >= warmup {
                    latencies.push(t.elapsed());
                }
                answered += 1;
                permits.add_permits(1);
            }
            (latencies, stdout)
        })
    };
    let pid = child.id().unwrap_or(0);
    let mut started = Instant::now();
    let mut cpu_before = Cpu::default();
    for id in 0..total {
        permits.acquire().await.unwrap().forget();
        if id == warmup {
            // Measured calls start from an idle connection.
            while permits.available_permits() < in_flight - 1 {
                tokio::task::yield_now().await;
            }
            started = Instant::now();
            cpu_before = Cpu::read(pid);
        }
        let line = request(id, tail);
        sent.lock().await.insert(id, Instant::now());
        stdin.write_all(&line).await.unwrap();
        stdin.write_all(b"\n").await.unwrap();
    }
    let (mut latencies, stdout) = reader.await.unwrap();
    let elapsed = started.elapsed();
    let cpu = Cpu::read(pid).per_call(&cpu_before, calls);
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
        cpu,
    }
}

/// How the client reaches the server.
const MODES: [&str; 5] = ["direct", "relay", "nopolicy", "batched", "sync"];

/// The connection of `mode`: the server itself; a plain relay; the proxy in `sync` or
/// `batched` durability with the default policy, or `nopolicy` (batched, `[risk] enabled =
/// false`) to show what the policy costs.
fn connect(server: &Server, store: &Path, mode: &str) -> Command {
    match mode {
        "direct" => return server.command(),
        "relay" => {
            let mut c = Command::new("sh");
            c.arg("-c")
                .arg(r#"cat | "$0" "$@" | cat"#)
                .args(&server.command);
            return c;
        }
        _ => {}
    }
    let config = store.join(format!("{}-{mode}.toml", server.name));
    let (durability, enabled) = match mode {
        "nopolicy" => ("batched", false),
        other => (other, true),
    };
    std::fs::write(
        &config,
        format!("[upstream]\nname = \"bench\"\n[audit]\nstore_dir = \"store-{}-{mode}\"\ndurability = \"{durability}\"\nflush_interval_ms = 10\n[risk]\nenabled = {enabled}\n", server.name),
    )
    .unwrap();
    // `BENCH_PROXY_BIN`: another build of the proxy (e.g. the one before a change).
    let proxy = std::env::var_os("BENCH_PROXY_BIN")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_mcp-audit-proxy").into());
    let mut c = Command::new(proxy);
    c.arg("stdio")
        .arg("--config")
        .arg(config)
        .arg("--")
        .args(&server.command);
    c.env("RUST_LOG", "error");
    c
}

/// What to run.
struct Plan {
    quick: bool,
    /// `--only MODE:IN_FLIGHT:BYTES`: one row and its direct baseline.
    only: Option<(String, usize, usize)>,
    /// `--hold SECONDS`: repeat the `--only` row this long (for a profiler), then print it.
    hold: Option<Duration>,
    /// `--verbose`: keep the servers' and the proxy's stderr.
    verbose: bool,
    /// `--cpu`: print each mode's CPU per call by thread (median of the rounds, and each
    /// round's total).
    cpu: bool,
    /// `--scale N`: N times the calls per round (default 1). A round at 16 in flight is
    /// 6,000 calls, a third of a second: the proxy's start-up work (history, index) and
    /// Node's JIT weigh in it; `--scale 10` measures the steady state of a long session.
    scale: u64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--serve") {
        return serve().await;
    }
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
    };
    let plan = Plan {
        quick: args.iter().any(|a| a == "--quick"),
        only: value("--only").map(|spec| {
            let spec: Vec<&str> = spec.split(':').collect();
            (
                spec[0].to_string(),
                spec[1].parse().unwrap(),
                spec[2].parse().unwrap(),
            )
        }),
        hold: value("--hold").map(|s| Duration::from_secs(s.parse().unwrap())),
        verbose: args.iter().any(|a| a == "--verbose"),
        cpu: args.iter().any(|a| a == "--cpu"),
        scale: value("--scale").map_or(1, |s| {
            s.parse()
                .ok()
                .filter(|&n| n > 0)
                .expect("--scale takes a whole number above 0")
        }),
    };
    let me = PathBuf::from(&args[0]);
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let wanted = value("--server").map(String::as_str);
    let mut servers = Vec::new();
    if wanted.is_none_or(|w| w == "rmcp") {
        servers.push(Server::rmcp(&me));
    }
    if wanted.is_none_or(|w| w == "everything") {
        match Server::everything() {
            Ok(s) => servers.push(s),
            Err(why) => println!("server-everything skipped: {why}"),
        }
    }

    let rounds = if plan.quick { 2 } else { 5 };
    println!(
        "mcp-audit-proxy bench: same client and server, direct vs relayed vs proxied, in one run"
    );
    println!("each figure is the median of {rounds} rounds; the modes take turns within a round");
    for server in &servers {
        bench_server(server, &plan, rounds, dir.path()).await;
    }
}

async fn bench_server(server: &Server, plan: &Plan, rounds: usize, store: &Path) {
    println!();
    println!("server: {} ({})", server.name, server.command.join(" "));
    println!(
        "{:<8} {:>9} {:>8} | {:>9} {:>9} {:>9} {:>10} | {:>9} {:>9} {:>6}",
        "mode",
        "in flight",
        "args",
        "mean µs",
        "p50 µs",
        "p99 µs",
        "calls/s",
        "+p50 µs",
        "+p99 µs",
        "thrpt"
    );
    let mut targets = Vec::new();
    for (in_flight, calls) in [
        (1usize, if plan.quick { 300 } else { 1500 }),
        (16, if plan.quick { 1000 } else { 6000 }),
    ] {
        for (label, size) in [("100 B", 100usize), ("64 KiB", 64 * 1024)] {
            if plan
                .only
                .as_ref()
                .is_some_and(|(_, n, b)| *n != in_flight || *b != size)
            {
                continue;
            }
            let tail = request_tail(server.arg, &"x".repeat(size));
            let calls = if size > 1000 { calls / 4 } else { calls } as u64 * plan.scale;
            let modes: Vec<&str> = MODES
                .into_iter()
                .filter(|m| {
                    plan.only
                        .as_ref()
                        .is_none_or(|(o, _, _)| *m == "direct" || m == o)
                })
                .collect();
            let mut results: Vec<Vec<Figures>> = modes.iter().map(|_| Vec::new()).collect();
            let until = plan.hold.map(|h| Instant::now() + h);
            let mut round = 0;
            while round < rounds || until.is_some_and(|u| Instant::now() < u) {
                round += 1;
                for (i, mode) in modes.iter().enumerate() {
                    if until.is_some() && i == 0 && round > 1 {
                        continue;
                    }
                    let conn = Conn::start(connect(server, store, mode), !plan.verbose).await;
                    results[i].push(load(conn, calls / 10, calls, in_flight, &tail).await);
                }
            }
            if plan.cpu {
                for (mode, r) in modes.iter().zip(&results) {
                    for f in r {
                        let top: Vec<String> = f
                            .cpu
                            .iter()
                            .filter(|c| !c.0.starts_with('(') && c.1 >= 0.5)
                            .map(|(k, v)| format!("{k} {v:.1}"))
                            .collect();
                        println!(
                            "cpu {mode:<8} {in_flight:>2} {label:>6}: round: own {:.1} | {}",
                            own_total(&f.cpu),
                            top.join(", ")
                        );
                    }
                }
            }
            let medians: Vec<Figures> = results.into_iter().map(median).collect();
            if plan.cpu {
                for (mode, f) in modes.iter().zip(&medians) {
                    let parts: Vec<String> = f
                        .cpu
                        .iter()
                        .filter(|c| c.1 >= 0.05)
                        .map(|(k, v)| format!("{k} {v:.1}"))
                        .collect();
                    println!(
                        "cpu {mode:<8} {in_flight:>2} {label:>6}: median µs/call: own {:.1} | {}",
                        own_total(&f.cpu),
                        parts.join(", ")
                    );
                }
            }
            let d = &medians[0];
            let of = |m: &str| modes.iter().position(|x| *x == m).map(|i| &medians[i]);
            for (mode, f) in modes.iter().zip(&medians) {
                let (added, added99, ratio) = if *mode == "direct" {
                    ("-".to_string(), "-".to_string(), "-".to_string())
                } else {
                    (
                        format!("{:+.1}", f.p50_us - d.p50_us),
                        format!("{:+.1}", f.p99_us - d.p99_us),
                        format!("{:.0}%", 100.0 * f.calls_per_s / d.calls_per_s),
                    )
                };
                println!(
                    "{mode:<8} {in_flight:>9} {label:>8} | {:>9.1} {:>9.1} {:>9.1} {:>10.0} | {added:>9} {added99:>9} {ratio:>6}",
                    f.mean_us, f.p50_us, f.p99_us, f.calls_per_s
                );
            }
            if let (Some(relay), Some(on), Some(off)) = (of("relay"), of("batched"), of("nopolicy"))
            {
                let relay_added = relay.p50_us - d.p50_us;
                // A relay that adds nothing measurable makes the ratio noise.
                let ratio = if relay_added >= 1.0 {
                    format!("{:>5.2}", (on.p50_us - d.p50_us) / relay_added)
                } else {
                    "  n/a".to_string()
                };
                targets.push(format!(
                    "{in_flight:>2} in flight {label:>6}: +p50 batched / +p50 relay = {ratio} (target <= 2; {:+.0} / {:+.0} µs)   p50 policy on / off = {:.2} (target <= 1.3; added {:+.0} / {:+.0} µs)   thrpt batched {:.0}% (target >= 85%)",
                    on.p50_us - d.p50_us,
                    relay_added,
                    on.p50_us / off.p50_us,
                    on.p50_us - d.p50_us,
                    off.p50_us - d.p50_us,
                    100.0 * on.calls_per_s / d.calls_per_s,
                ));
            }
        }
    }
    for t in targets {
        println!("{t}");
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
        cpu: {
            let mut names: Vec<&String> = rounds
                .iter()
                .flat_map(|f| f.cpu.iter().map(|c| &c.0))
                .collect();
            names.sort();
            names.dedup();
            let mut cpu: Vec<(String, f64)> = names
                .into_iter()
                .map(|n| {
                    let mut v: Vec<f64> = rounds
                        .iter()
                        .map(|f| f.cpu.iter().find(|c| &c.0 == n).map_or(0.0, |c| c.1))
                        .collect();
                    (n.clone(), mid(&mut v))
                })
                .collect();
            cpu.sort_by(|a, b| b.1.total_cmp(&a.1));
            cpu
        },
    }
}

/// The process's own threads together, µs per call (`(user)`, `(system)` and `+children`
/// left out).
fn own_total(cpu: &[(String, f64)]) -> f64 {
    cpu.iter()
        .filter(|(k, _)| !k.starts_with('(') && !k.starts_with('+'))
        .map(|c| c.1)
        .sum()
}
