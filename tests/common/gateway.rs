//! The gateway under test: a `mcp-audit-proxy gateway` process with its own config and store,
//! rmcp Streamable HTTP clients, and raw HTTP helpers.

use std::io::Read;
use std::process::{Child, Stdio};
use std::time::Duration;

use rmcp::model::{CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientServiceExt, ServiceExt};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{TestClient, args, example_server, proxy_bin};

pub const ALICE_KEY: &str = "alice-key-0123456789abcdef";
pub const BOB_KEY: &str = "bob-key-fedcba9876543210";

pub fn sha(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A gateway process in front of the example server, with its store.
pub struct Gateway {
    pub child: Child,
    pub url: String,
    pub _dir: tempfile::TempDir,
    pub config: std::path::PathBuf,
}

impl Gateway {
    pub fn start(extra: &str) -> Gateway {
        Gateway::start_with("", extra)
    }

    /// `gateway` goes into the `[gateway]` table, `extra` at the end of the file.
    pub fn start_with(gateway: &str, extra: &str) -> Gateway {
        let server = format!("{:?}", example_server().display().to_string());
        Gateway::start_upstream(&server, gateway, extra)
    }

    /// [`Gateway::start_with`] with the upstream's `command` array written as `command`
    /// (TOML array items, e.g. `"sh", "-c", "…"`).
    pub fn start_upstream(command: &str, gateway: &str, extra: &str) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("proxy.toml");
        let text = format!(
            r#"
[[upstream]]
name = "example"
command = [{command}]

[alerts]
# The gateway tests pin the trail's exact contents; alerts are tested in tests/alerts.rs.
enabled = false

[audit]
store_dir = "store"

[limits]
max_message_bytes = 65536
shutdown_grace_ms = 2000

[gateway]
listen = "127.0.0.1:0"
allowed_origins = ["https://app.example.com"]
{gateway}

[[gateway.api_key]]
user_id = "alice"
roles = ["ops"]
sha256 = "{alice}"

[[gateway.api_key]]
user_id = "bob"
sha256 = "{bob}"
{extra}
"#,
            alice = sha(ALICE_KEY),
            bob = sha(BOB_KEY),
        );
        std::fs::write(&config, text).unwrap();
        Gateway::spawn(dir, config)
    }

    pub fn spawn(dir: tempfile::TempDir, config: std::path::PathBuf) -> Gateway {
        let mut cmd = std::process::Command::new(proxy_bin());
        cmd.arg("gateway")
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        Gateway::spawn_command(dir, config, cmd)
    }

    /// Starts `cmd` (a `gateway` command line for `config`) and reads its address.
    pub fn spawn_command(
        dir: tempfile::TempDir,
        config: std::path::PathBuf,
        mut cmd: std::process::Command,
    ) -> Gateway {
        let mut child = cmd.spawn().expect("start the gateway");
        let url = super::listening_url(&mut child);
        Gateway {
            child,
            url,
            _dir: dir,
            config,
        }
    }

    /// The `/metrics` text (Prometheus exposition).
    pub async fn metrics(&self) -> String {
        http()
            .get(format!("{}/metrics", self.url))
            .bearer_auth(ALICE_KEY)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The gateway's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn endpoint(&self) -> String {
        format!("{}/mcp/example", self.url)
    }

    /// Every event in the store, oldest first.
    pub fn events(&self) -> Vec<Value> {
        let out = std::process::Command::new(proxy_bin())
            .args(["events", "--json", "--limit", "100000", "--config"])
            .arg(&self.config)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut v: Vec<Value> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        v.reverse();
        v
    }

    /// SIGTERM, then the exit status.
    pub fn stop(self) -> (std::process::ExitStatus, Gateway) {
        self.stop_with(nix::sys::signal::Signal::SIGTERM)
    }

    /// Sends `signal` and waits (up to 30 s) for the gateway to exit.
    pub fn stop_with(
        mut self,
        signal: nix::sys::signal::Signal,
    ) -> (std::process::ExitStatus, Gateway) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), signal).unwrap();
        let status = wait_timeout(&mut self.child, Duration::from_secs(30));
        (status, self)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn wait_timeout(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let until = std::time::Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(
            std::time::Instant::now() < until,
            "the gateway did not exit"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn handler() -> TestClient {
    let caps = ClientCapabilities::builder().enable_elicitation().build();
    TestClient::new(ClientConfig::new(
        caps,
        Implementation::new("gateway-test-client", "1.0.0"),
    ))
}

pub async fn connect(url: &str, key: &str) -> super::Client {
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(url.to_string()).auth_header(key.to_string()),
    );
    tokio::time::timeout(Duration::from_secs(30), handler().serve(transport))
        .await
        .expect("connect timed out")
        .expect("connect")
}

pub fn call(name: &str, arguments: Value) -> CallToolRequestParams {
    CallToolRequestParams::new(name.to_string()).with_arguments(args(arguments))
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder().build().unwrap()
}

pub const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#;

/// POSTs `body` with the usual MCP headers plus `extra`; returns status, headers, body text.
pub async fn post(
    url: &str,
    key: Option<&str>,
    session: Option<&str>,
    body: &str,
    extra: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut req = http()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_string());
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    if let Some(s) = session {
        req = req.header("mcp-session-id", s);
        if !extra.iter().any(|(k, _)| *k == "mcp-protocol-version") {
            req = req.header("mcp-protocol-version", "2025-06-18");
        }
    }
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.text().await.unwrap())
}

/// The JSON-RPC messages of an SSE or JSON response body.
pub fn messages(body: &str) -> Vec<Value> {
    if body.trim_start().starts_with('{') || body.trim_start().starts_with('[') {
        return vec![serde_json::from_str(body).unwrap()];
    }
    body.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

/// A raw 2025 session: initialize + initialized; returns the session id.
pub async fn raw_session(url: &str, key: &str) -> String {
    raw_session_with(url, key, "{}").await
}

/// [`raw_session`] for a client declaring `capabilities` (a JSON object, e.g.
/// `{"elicitation":{}}`).
pub async fn raw_session_with(url: &str, key: &str, capabilities: &str) -> String {
    let init = INIT.replace(
        r#""capabilities":{}"#,
        &format!(r#""capabilities":{capabilities}"#),
    );
    let (status, headers, body) = post(url, Some(key), None, &init, &[]).await;
    assert_eq!(status, 200, "{body}");
    let session = headers["mcp-session-id"].to_str().unwrap().to_string();
    assert!(
        messages(&body)[0]["result"]["serverInfo"].is_object(),
        "{body}"
    );
    let (status, _, body) = post(
        url,
        Some(key),
        Some(&session),
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        &[],
    )
    .await;
    assert_eq!(status, 202, "{body}");
    session
}

/// An rmcp client of the 2026-07-28 era (`server/discover`, no session).
pub async fn connect_2026(url: &str, key: &str) -> super::Client {
    use rmcp::model::ProtocolVersion;
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(url.to_string()).auth_header(key.to_string()),
    );
    let connecting = handler().serve_with_lifecycle(
        transport,
        rmcp::ClientLifecycleMode::Discover {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        },
    );
    tokio::time::timeout(Duration::from_secs(30), connecting)
        .await
        .expect("connect timed out")
        .expect("connect")
}

/// The `_meta` member of a 2026-07-28 request's params.
pub const META_2026: &str = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}"#;

/// A 2026-07-28 `tools/list` request.
pub fn list_2026(id: u32) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/list","params":{{{META_2026}}}}}"#)
}

/// A 2026-07-28 `tools/call` request; `id` and `arguments` as JSON text.
pub fn call_2026(id: &str, tool: &str, arguments: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{tool}","arguments":{arguments},{META_2026}}}}}"#
    )
}

/// POSTs a sessionless 2026-07-28 request with the routing headers a client sends for it
/// (`Mcp-Method`, and `Mcp-Name` = `tool` for a call), plus `extra`.
pub async fn post_2026(
    url: &str,
    key: &str,
    body: &str,
    tool: Option<&str>,
    extra: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, String) {
    let method = if tool.is_some() {
        "tools/call"
    } else {
        "tools/list"
    };
    let mut headers = vec![
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", method),
    ];
    if let Some(t) = tool {
        headers.push(("mcp-name", t));
    }
    headers.extend_from_slice(extra);
    post(url, Some(key), None, body, &headers).await
}

/// POSTs a sessionless 2026-07-28 `tools/call` of `tool` as Alice and leaves after `after`,
/// while the call runs (its SSE stream starts at once; the read of its body is what the
/// timeout cuts); panics if the call finished first.
pub async fn post_2026_and_leave(url: &str, body: &str, tool: &str, after: Duration) {
    let sent = reqwest::Client::builder()
        .timeout(after)
        .build()
        .unwrap()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("authorization", format!("Bearer {ALICE_KEY}"))
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", tool)
        .body(body.to_string())
        .send()
        .await;
    if let Ok(resp) = sent {
        let text = resp.text().await;
        assert!(
            text.is_err(),
            "the call finished inside the timeout: {text:?}"
        );
    }
}

/// The first text content of a `tools/call` result.
pub fn text_of(result: &impl serde::Serialize) -> Value {
    serde_json::to_value(result).unwrap()["content"][0]["text"].clone()
}

/// The value of the sample `name` (labels included, e.g. `x_bucket{le="+Inf"}`) in a
/// `/metrics` text.
pub fn sample(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in {metrics}"))
        .trim()
        .parse()
        .unwrap()
}

/// The host and port of the gateway's URL.
pub fn address(gw: &Gateway) -> String {
    gw.url.trim_start_matches("http://").to_string()
}

/// Reads what the gateway answers on a raw connection until it closes it or `limit` passes.
pub fn read_answer(s: &mut std::net::TcpStream, limit: Duration) -> String {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
        if out.windows(4).any(|w| w == b"\r\n\r\n") && out.ends_with(b"\n") {
            break;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
