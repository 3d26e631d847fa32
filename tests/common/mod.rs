//! Shared helpers: the real binary, the example server, a temporary store, rmcp clients of
//! both eras, and a raw line client for byte-exact checks.

#![allow(dead_code, reason = "each test file uses a different subset")]

pub mod gateway;
pub mod policy;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rmcp::handler::client::progress::ProgressDispatcher;
use rmcp::model::{
    ClientCapabilities, ClientConfig, ElicitRequestParams, ElicitResult, ElicitationAction,
    ErrorData, Implementation, ProgressNotificationParam, ProtocolVersion,
};
use rmcp::service::{NotificationContext, RequestContext, RunningService};
use rmcp::transport::TokioChildProcess;
use rmcp::{ClientHandler, ClientLifecycleMode, ClientServiceExt, RoleClient, ServiceExt};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// The proxy binary under test.
pub fn proxy_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_mcp-audit-proxy"))
}

/// The example server, built by `cargo test` next to the test binaries.
pub fn example_server() -> PathBuf {
    let exe = std::env::current_exe().expect("test exe");
    let target = exe.parent().and_then(Path::parent).expect("target dir");
    let path = target.join("examples").join("example-server");
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test` (which builds the examples) or `cargo build --examples`",
        path.display()
    );
    path
}

/// A temporary store and the config that points at it.
pub struct TestStore {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

impl TestStore {
    /// A store with `extra` appended to a minimal config, inside its `[audit]` table unless
    /// `extra` opens another (e.g. "[limits]\n...").
    ///
    /// Alerts are off (`[alerts] enabled = false`): these tests pin the trail's exact
    /// contents, and an alert is an event too. `tests/alerts.rs` uses [`TestStore::with_alerts`].
    pub fn new(extra: &str) -> TestStore {
        TestStore::written(&format!(
            "[alerts]\nenabled = false\n[audit]\nstore_dir = \"store\"\n{extra}\n"
        ))
    }

    /// Like [`TestStore::new`] with the alert stage running as configured (`extra` may open
    /// `[alerts]`).
    pub fn with_alerts(extra: &str) -> TestStore {
        TestStore::written(&format!("[audit]\nstore_dir = \"store\"\n{extra}\n"))
    }

    fn written(tables: &str) -> TestStore {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("proxy.toml");
        let text = format!("user_id = \"tester\"\n[upstream]\nname = \"example\"\n{tables}");
        std::fs::write(&config, text).expect("write config");
        TestStore { dir, config }
    }

    /// The store folder.
    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// `mcp-audit-proxy stdio --config … -- server…`.
    pub fn proxy_command(&self, server: &[&str]) -> Command {
        let mut c = Command::new(proxy_bin());
        c.arg("stdio")
            .arg("--config")
            .arg(&self.config)
            .arg("--")
            .args(server);
        c.env("RUST_LOG", "warn");
        c
    }

    /// The proxy in front of the example server.
    pub fn proxied_example(&self) -> Command {
        let server = example_server();
        self.proxy_command(&[server.to_str().unwrap()])
    }

    /// Every event in the store, oldest first, read through the real `events` command.
    pub fn events(&self) -> Vec<Value> {
        self.event_lines()
            .iter()
            .map(|l| serde_json::from_str(l).expect("event json"))
            .collect()
    }

    /// Every event as the JSON text `events --json` prints (numbers digit for digit), oldest
    /// first.
    pub fn event_lines(&self) -> Vec<String> {
        event_lines_of(&self.config)
    }
}

/// Every event of the store the config at `config` names, oldest first, read through the real
/// `events` command (for stores a test did not make with [`TestStore`]).
pub fn events_of(config: &std::path::Path) -> Vec<Value> {
    event_lines_of(config)
        .iter()
        .map(|l| serde_json::from_str(l).expect("event json"))
        .collect()
}

/// [`TestStore::event_lines`] of the store the config at `config` names.
pub fn event_lines_of(config: &std::path::Path) -> Vec<String> {
    let out = std::process::Command::new(proxy_bin())
        .args(["events", "--json", "--limit", "1000000", "--config"])
        .arg(config)
        .output()
        .expect("run events");
    assert!(
        out.status.success(),
        "events failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    lines.reverse();
    lines
}

/// Which protocol era a client speaks.
#[derive(Debug, Clone)]
pub enum Era {
    /// `initialize` with this version.
    Initialize(ProtocolVersion),
    /// 2026-07-28: `server/discover`, per-request `_meta`.
    Discover,
}

impl Era {
    /// The eras every transparency test runs in.
    pub fn all() -> Vec<Era> {
        vec![
            Era::Initialize(ProtocolVersion::V_2025_03_26),
            Era::Initialize(ProtocolVersion::V_2025_06_18),
            Era::Initialize(ProtocolVersion::V_2025_11_25),
            Era::Discover,
        ]
    }

    /// The value recorded as `protocol_era`.
    pub fn recorded(&self) -> &'static str {
        match self {
            Era::Initialize(_) => "2025",
            Era::Discover => "2026",
        }
    }
}

/// An rmcp client that accepts every elicitation and counts progress notifications.
pub struct TestClient {
    config: ClientConfig,
    pub progress: ProgressDispatcher,
    pub progress_seen: Arc<AtomicUsize>,
    pub elicitations: Arc<AtomicUsize>,
}

impl ClientHandler for TestClient {
    fn get_info(&self) -> ClientConfig {
        self.config.clone()
    }

    async fn create_elicitation(
        &self,
        _request: ElicitRequestParams,
        _ctx: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        self.elicitations.fetch_add(1, Ordering::SeqCst);
        // Fills the example server's form and mcp-audit-proxy's confirmation alike.
        Ok(ElicitResult::new(ElicitationAction::Accept)
            .with_content(serde_json::json!({"confirmed": true, "confirm": true})))
    }

    async fn on_progress(&self, p: ProgressNotificationParam, _: NotificationContext<RoleClient>) {
        self.progress_seen.fetch_add(1, Ordering::SeqCst);
        self.progress.handle_notification(p).await;
    }
}

impl TestClient {
    /// A handler announcing `config`.
    pub fn new(config: ClientConfig) -> TestClient {
        TestClient {
            config,
            progress: ProgressDispatcher::new(),
            progress_seen: Arc::new(AtomicUsize::new(0)),
            elicitations: Arc::new(AtomicUsize::new(0)),
        }
    }
}

/// A connected rmcp client.
pub type Client = RunningService<RoleClient, TestClient>;

/// Connects an rmcp client of `era` to the server started by `command`.
pub async fn connect(era: &Era, command: Command) -> Client {
    let caps = ClientCapabilities::builder().enable_elicitation().build();
    let mut config = ClientConfig::new(caps, Implementation::new("mcp-audit-test-client", "1.0.0"));
    if let Era::Initialize(v) = era {
        config = config.with_protocol_version(v.clone());
    }
    let handler = TestClient {
        config,
        progress: ProgressDispatcher::new(),
        progress_seen: Arc::new(AtomicUsize::new(0)),
        elicitations: Arc::new(AtomicUsize::new(0)),
    };
    let transport = TokioChildProcess::new(command).expect("spawn");
    let connecting = async {
        match era {
            Era::Initialize(_) => handler.serve(transport).await,
            Era::Discover => {
                handler
                    .serve_with_lifecycle(
                        transport,
                        ClientLifecycleMode::Discover {
                            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
                        },
                    )
                    .await
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), connecting)
        .await
        .expect("connect timed out")
        .expect("connect")
}

/// Arguments as rmcp wants them.
pub fn args(v: Value) -> serde_json::Map<String, Value> {
    v.as_object().cloned().expect("object")
}

/// A client that writes and reads raw lines, for byte-exact checks.
pub struct LineClient {
    pub child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl LineClient {
    /// Starts `command` with piped stdin/stdout (stderr inherited).
    pub fn spawn(mut command: Command) -> LineClient {
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("spawn");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        LineClient {
            child,
            stdin,
            stdout,
        }
    }

    /// Writes bytes as they are.
    pub async fn send(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(bytes).await.expect("write");
        stdin.flush().await.expect("flush");
    }

    /// Reads one line (with its newline); None at EOF. Fails after 20 s.
    pub async fn recv(&mut self) -> Option<Vec<u8>> {
        let mut line = Vec::new();
        let n = tokio::time::timeout(
            Duration::from_secs(20),
            self.stdout.read_until(b'\n', &mut line),
        )
        .await
        .expect("timed out waiting for a line")
        .expect("read");
        (n > 0).then_some(line)
    }

    /// Reads one line as JSON.
    pub async fn recv_json(&mut self) -> Value {
        let line = self.recv().await.expect("a line, not EOF");
        serde_json::from_slice(&line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&line)))
    }

    /// Reads lines until the response with `id`, skipping notifications; returns the raw line.
    pub async fn recv_response(&mut self, id: &Value) -> Vec<u8> {
        loop {
            let line = self.recv().await.expect("a response, not EOF");
            let v: Value = serde_json::from_slice(&line).expect("json");
            if v.get("id") == Some(id) && v.get("method").is_none() {
                return line;
            }
        }
    }

    /// Waits for the process to exit with stdin still open.
    pub async fn wait_exit(&mut self) -> std::process::ExitStatus {
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("process did not exit")
            .expect("wait")
    }

    /// Closes stdin (the client's EOF) without waiting.
    pub fn close_input(&mut self) {
        drop(self.stdin.take());
    }

    /// Closes stdin (the client's EOF) and waits for the process to exit.
    pub async fn finish(mut self) -> std::process::ExitStatus {
        drop(self.stdin.take());
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("process did not exit")
            .expect("wait")
    }
}

/// Everything a stream (a child's piped stderr) holds until its end, as text.
pub async fn read_text(mut stream: impl tokio::io::AsyncRead + Unpin) -> String {
    let mut bytes = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut bytes)
        .await
        .expect("read to the end");
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A 2025-era `initialize` request (id "init") that offers elicitation.
pub const INIT: &str = r#"{"jsonrpc":"2.0","id":"init","method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{"elicitation":{}},"clientInfo":{"name":"raw","version":"1"}}}"#;

impl LineClient {
    /// Sends `initialize` and `notifications/initialized` (2025-06-18) and waits for the result.
    pub async fn initialize(&mut self) {
        self.send(format!("{INIT}\n").as_bytes()).await;
        self.recv_response(&serde_json::json!("init")).await;
        self.send(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n")
            .await;
    }
}

/// A raw client of the proxy in front of the example server, past the handshake.
pub async fn initialized(store: &TestStore) -> LineClient {
    let mut c = LineClient::spawn(store.proxied_example());
    c.initialize().await;
    c
}

/// One `tools/call` request line.
pub fn call_line(id: Value, tool: &str, arguments: Value) -> Vec<u8> {
    let mut line = serde_json::to_vec(&serde_json::json!({
        "jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": tool, "arguments": arguments}
    }))
    .expect("json");
    line.push(b'\n');
    line
}

/// `(event_type, result)` of each event of the request with this id (an integer or a
/// string), in trail order.
#[allow(dead_code)]
pub fn kinds_of<T>(events: &[Value], id: T) -> Vec<(&str, &str)>
where
    Value: PartialEq<T>,
    T: Copy,
{
    events
        .iter()
        .filter(|e| e["metadata"]["request_id"] == id)
        .map(|e| {
            (
                e["event_type"].as_str().unwrap_or("?"),
                e["result"].as_str().unwrap_or("?"),
            )
        })
        .collect()
}

/// Groups events by `event_type` and checks every tools/call has exactly one access and one
/// end event, linked both ways; returns (access, end) pairs in access order.
pub fn pairs(events: &[Value]) -> Vec<(Value, Value)> {
    let by_id: std::collections::HashMap<&str, &Value> = events
        .iter()
        .map(|e| (e["event_id"].as_str().unwrap(), e))
        .collect();
    assert_eq!(by_id.len(), events.len(), "event ids must be unique");
    let mut out = Vec::new();
    for access in events.iter().filter(|e| e["event_type"] == "tool_access") {
        let end_id = access["linked_event_id"]
            .as_str()
            .unwrap_or_else(|| panic!("access event without a linked end: {access}"));
        let end = by_id
            .get(end_id)
            .unwrap_or_else(|| panic!("linked end {end_id} missing"));
        assert_eq!(
            end["linked_event_id"], access["event_id"],
            "end must link back"
        );
        assert_ne!(end["event_type"], "tool_access");
        assert_eq!(
            end["metadata"]["request_id"],
            access["metadata"]["request_id"]
        );
        assert_eq!(end["tool_name"], access["tool_name"]);
        assert_eq!(end["session_id"], access["session_id"]);
        assert!(
            end["event_id"].as_str() > access["event_id"].as_str(),
            "ids sort by time"
        );
        out.push((access.clone(), (*end).clone()));
    }
    let paired: std::collections::HashSet<&str> = out
        .iter()
        .filter_map(|(_, end)| end["event_id"].as_str())
        .collect();
    let lone: Vec<&Value> = events
        .iter()
        .filter(|e| e["event_type"] != "tool_access")
        // Alerts (on by default) are about calls, not ends of them; a client's answer to a
        // server's question is an event of its own.
        .filter(|e| !matches!(e["event_type"].as_str(), Some("alert" | "server_request")))
        .filter(|e| !paired.contains(e["event_id"].as_str().unwrap_or_default()))
        .collect();
    assert!(
        lone.is_empty(),
        "every end event belongs to exactly one access event; these do not: {lone:#?}"
    );
    out
}

/// `mcp-audit-proxy ARGS --config CONFIG`, its output (the log at `warn`).
pub fn cli(config: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(proxy_bin())
        .args(args)
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run mcp-audit-proxy")
}

/// [`cli`] that must succeed: its standard output.
pub fn cli_ok(config: &std::path::Path, args: &[&str]) -> String {
    let out = cli(config, args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Every file under `dir`, at any depth.
#[allow(dead_code)]
pub fn files_under(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

/// Every file under `dir` whose bytes contain `needle`.
#[allow(dead_code)]
pub fn files_containing(dir: &std::path::Path, needle: &str) -> Vec<String> {
    files_under(dir)
        .into_iter()
        .filter(|path| {
            std::fs::read(path)
                .is_ok_and(|bytes| memchr::memmem::find(&bytes, needle.as_bytes()).is_some())
        })
        .map(|path| path.display().to_string())
        .collect()
}

/// The stdio wrapper with the config `text` (in a folder of its own, where relative paths in
/// it land): the folder, the config's path and the client.
#[allow(dead_code)]
pub fn stdio_wrapper(text: &str) -> (tempfile::TempDir, std::path::PathBuf, LineClient) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("proxy.toml");
    std::fs::write(&config, text).unwrap();
    let mut command = tokio::process::Command::new(proxy_bin());
    command
        .args(["stdio", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn");
    (dir, config, LineClient::spawn(command))
}

/// The URL a child process (a gateway, an HTTP test server) prints on its first line of
/// output, `listening on URL`; panics on anything else.
#[allow(dead_code)]
pub fn listening_url(child: &mut std::process::Child) -> String {
    use std::io::BufRead as _;
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().expect("piped stdout"))
        .read_line(&mut first)
        .unwrap();
    first
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_string()
}
