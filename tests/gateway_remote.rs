//! Remote upstreams (`[[upstream]] url`): the gateway and the stdio wrapper in front of MCP
//! servers reached over Streamable HTTP, through the real binary. The remotes are the
//! example server under rmcp's own Streamable HTTP server (`example-server --http`) and
//! another gateway (so that the remote checks credentials, TLS and session expiry).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::gateway::*;
use common::{Era, example_server, proxy_bin, stdio_wrapper};
use serde_json::{Value, json};

/// The example server serving Streamable HTTP on a free port.
struct HttpServer {
    child: Child,
    url: String,
}

impl HttpServer {
    fn start() -> HttpServer {
        HttpServer::start_at("127.0.0.1:0")
    }

    fn start_at(addr: &str) -> HttpServer {
        let mut child = std::process::Command::new(example_server())
            .args(["--http", addr])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the example server over HTTP");
        let url = common::listening_url(&mut child);
        HttpServer { child, url }
    }
}

impl HttpServer {
    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A gateway whose only upstream is `remote` (the `[[upstream]]` body after `name`), with
/// Alice's and Bob's API keys; `env` for its process.
fn gateway_to(remote: &str, gateway: &str, env: &[(&str, &str)]) -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("proxy.toml");
    std::fs::write(&config, remote_config(remote, gateway)).unwrap();
    let mut cmd = std::process::Command::new(proxy_bin());
    cmd.arg("gateway")
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    Gateway::spawn_command(dir, config, cmd)
}

fn remote_config(remote: &str, gateway: &str) -> String {
    format!(
        r#"
[[upstream]]
name = "example"
{remote}

[audit]
store_dir = "store"

[limits]
max_message_bytes = 65536
shutdown_grace_ms = 2000

[gateway]
listen = "127.0.0.1:0"
{gateway}

[[gateway.api_key]]
user_id = "alice"
sha256 = "{alice}"

[[gateway.api_key]]
user_id = "bob"
sha256 = "{bob}"
"#,
        alice = sha(ALICE_KEY),
        bob = sha(BOB_KEY),
    )
}

async fn tool_names(client: &common::Client) -> Vec<String> {
    let mut names: Vec<String> = client
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    names.sort();
    names
}

/// Every `tools/call` of `user` as (tool, access result, end result), oldest first; a call
/// without an end event ends in "(none)". Refusals before any call (an unknown session)
/// are not calls.
fn calls_of(events: &[Value], user: &str) -> Vec<(String, String, String)> {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    events
        .iter()
        .filter(|a| a["event_type"] == "tool_access" && a["user_id"] == user)
        .map(|a| {
            let ends: Vec<&Value> = events
                .iter()
                .filter(|e| {
                    e["event_type"] != "tool_access" && e["linked_event_id"] == a["event_id"]
                })
                .collect();
            assert!(ends.len() <= 1, "one end per call: {ends:#?}");
            let end = ends
                .first()
                .map_or("(none)".to_string(), |e| text(&e["result"]));
            (text(&a["tool_name"]), text(&a["result"]), end)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rmcp_clients_of_both_eras_reach_a_remote_rmcp_server_and_see_what_a_direct_client_sees() {
    let server = HttpServer::start();
    let gw = gateway_to(&format!("url = \"{}\"", server.url), "", &[]);

    // The same calls, directly and through the gateway: the same results.
    let direct = connect(&server.url, "unused").await;
    let proxied = connect(&gw.endpoint(), ALICE_KEY).await;
    assert_eq!(tool_names(&direct).await, tool_names(&proxied).await);
    for (tool, arguments) in [
        ("echo", json!({"text": "through the remote"})),
        ("add", json!({"a": 2, "b": 40})),
        ("fail", json!({})),
        // Elicitation: a server request on the POST's stream, answered by a POST of ours.
        ("confirm", json!({"action": "deploy"})),
    ] {
        let d = direct
            .call_tool(call(tool, arguments.clone()))
            .await
            .unwrap();
        let p = proxied.call_tool(call(tool, arguments)).await.unwrap();
        assert_eq!(
            serde_json::to_value(&d).unwrap(),
            serde_json::to_value(&p).unwrap(),
            "{tool}"
        );
    }
    direct.cancel().await.unwrap();
    proxied.cancel().await.unwrap();

    // 2026-07-28: discovery and a sessionless call, with the routing headers the remote checks.
    let modern = connect_2026(&gw.endpoint(), BOB_KEY).await;
    let echoed = modern
        .call_tool(call("echo", json!({"text": "sessionless"})))
        .await
        .unwrap();
    assert_eq!(text_of(&echoed), "sessionless");
    modern.cancel().await.unwrap();

    let events = gw.events();
    assert_eq!(
        calls_of(&events, "alice"),
        vec![
            ("echo".into(), "initiated".into(), "success".into()),
            ("add".into(), "initiated".into(), "success".into()),
            ("fail".into(), "initiated".into(), "error".into()),
            ("confirm".into(), "initiated".into(), "success".into()),
        ],
        "{events:#?}"
    );
    assert_eq!(
        calls_of(&events, "bob"),
        vec![("echo".into(), "initiated".into(), "success".into())],
        "{events:#?}"
    );
    assert!(events.iter().all(|e| e["upstream"] == "example"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stdio_wrapper_fronts_a_remote_server_in_both_eras() {
    let server = HttpServer::start();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("proxy.toml");
    std::fs::write(
        &config,
        format!(
            "user_id = \"tester\"\n[upstream]\nname = \"remote\"\nurl = \"{}\"\n[audit]\nstore_dir = \"store\"\n",
            server.url
        ),
    )
    .unwrap();
    for era in Era::all() {
        let mut command = tokio::process::Command::new(proxy_bin());
        command
            .args(["stdio", "--config"])
            .arg(&config)
            .env("RUST_LOG", "warn");
        let client = common::connect(&era, command).await;
        let echoed = client
            .call_tool(call("echo", json!({"text": era.recorded()})))
            .await
            .unwrap();
        assert_eq!(text_of(&echoed), era.recorded());
        client.cancel().await.unwrap();
    }
    let out = std::process::Command::new(proxy_bin())
        .args(["events", "--json", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let events: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .rev()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let pairs = common::pairs(&events);
    assert_eq!(pairs.len(), Era::all().len(), "{events:#?}");
    for (access, end) in pairs {
        assert_eq!(access["upstream"], "remote");
        assert_eq!(end["result"], "success", "{end:#}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_gets_the_configured_credential_never_the_clients() {
    // The remote is another gateway that knows Bob's key only as "the proxy's" credential.
    let inner = Gateway::start("");
    let remote = format!(
        "url = \"{}\"\nbearer_token_env = \"INNER_TOKEN\"",
        inner.endpoint()
    );
    let outer = gateway_to(&remote, "", &[("INNER_TOKEN", BOB_KEY)]);
    let client = connect(&outer.endpoint(), ALICE_KEY).await;
    let echoed = client
        .call_tool(call("echo", json!({"text": "whose key?"})))
        .await
        .unwrap();
    assert_eq!(text_of(&echoed), "whose key?");
    client.cancel().await.unwrap();
    // The outer trail names the client; the inner one the proxy's credential; no refusal
    // anywhere (Alice's key never reached the inner gateway).
    assert_eq!(
        calls_of(&outer.events(), "alice"),
        vec![("echo".into(), "initiated".into(), "success".into())]
    );
    let inner_events = inner.events();
    assert_eq!(
        calls_of(&inner_events, "bob"),
        vec![("echo".into(), "initiated".into(), "success".into())],
        "{inner_events:#?}"
    );
    assert!(
        inner_events.iter().all(|e| e["user_id"] == "bob"),
        "{inner_events:#?}"
    );

    // Without the variable the gateway does not start, and says which one.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("proxy.toml");
    std::fs::write(&config, remote_config(&remote, "")).unwrap();
    let out = std::process::Command::new(proxy_bin())
        .args(["gateway", "--config"])
        .arg(&config)
        .env_remove("INNER_TOKEN")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("INNER_TOKEN") && err.to_lowercase().contains("authorization"),
        "{err}"
    );
    assert!(!err.contains(BOB_KEY));

    // A wrong credential: the call fails naming the upstream, the outer trail says why.
    let wrong = gateway_to(&remote, "", &[("INNER_TOKEN", "not-a-key")]);
    let (status, _, body) = post(&wrong.endpoint(), Some(ALICE_KEY), None, INIT, &[]).await;
    assert_eq!(status, 502, "{body}");
    let answer = &messages(&body)[0];
    assert_eq!(answer["error"]["code"], -32011, "{body}");
    let text = answer["error"]["message"].as_str().unwrap();
    assert!(
        text.contains("\"example\"") && text.contains("401"),
        "{text}"
    );
    assert!(!text.contains("not-a-key"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_upstream_is_a_502_naming_it_and_the_call_is_a_recorded_failure() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let gw = gateway_to(&format!("url = \"http://127.0.0.1:{port}/mcp\""), "", &[]);
    // 2025: the first request of a session.
    let text = refusal(&gw.endpoint(), "").await;
    assert!(
        text.contains("upstream \"example\"") && text.contains("unreachable"),
        "{text}"
    );
    // 2026: a sessionless call.
    let call = r#"{"jsonrpc":"2.0","id":"c1","method":"tools/call","params":{"name":"echo","arguments":{"text":"x"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#;
    let (status, _, body) = post(
        &gw.endpoint(),
        Some(ALICE_KEY),
        None,
        call,
        &[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "echo"),
        ],
    )
    .await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(messages(&body)[0]["id"], "c1");
    let events = gw.events();
    let pairs = common::pairs(&events);
    assert_eq!(pairs.len(), 1, "{events:#?}");
    let (access, end) = &pairs[0];
    assert_eq!(access["tool_name"], "echo");
    assert_eq!(end["event_type"], "tool_failure", "{end:#}");
    assert_eq!(end["metadata"]["error_code"], -32011, "{end:#}");
    assert!(
        end.to_string().contains("unreachable"),
        "the reason is in the trail: {end:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_over_tls_is_verified_against_ca_file() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert_pem, key_pem) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_pem, cert.cert.pem()).unwrap();
    std::fs::write(&key_pem, cert.signing_key.serialize_pem()).unwrap();
    let inner = Gateway::start(&format!(
        "[gateway.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        cert_pem.display(),
        key_pem.display()
    ));
    let port = inner.url.rsplit(':').next().unwrap();
    let url = format!("https://localhost:{port}/mcp/example");
    let trusted = gateway_to(
        &format!(
            "url = \"{url}\"\nca_file = \"{}\"\nbearer_token_env = \"INNER_TOKEN\"",
            cert_pem.display()
        ),
        "",
        &[("INNER_TOKEN", BOB_KEY)],
    );
    let client = connect(&trusted.endpoint(), ALICE_KEY).await;
    let echoed = client
        .call_tool(call("echo", json!({"text": "over tls"})))
        .await
        .unwrap();
    assert_eq!(text_of(&echoed), "over tls");
    client.cancel().await.unwrap();

    // The system's roots do not know this certificate: refused, and said why.
    let untrusted = gateway_to(
        &format!("url = \"{url}\"\nbearer_token_env = \"INNER_TOKEN\""),
        "",
        &[("INNER_TOKEN", BOB_KEY)],
    );
    let text = refusal(&untrusted.endpoint(), "").await;
    assert!(text.to_lowercase().contains("certificate"), "{text}");
    // Nothing reached the inner gateway from the untrusted side.
    assert!(
        inner.events().iter().all(|e| e["user_id"] == "bob"),
        "{:#?}",
        inner.events()
    );
}

/// The error message of the 502 a gateway answers to `initialize` when it cannot reach its
/// remote (`context` names the case in a failure).
async fn refusal(endpoint: &str, context: &str) -> String {
    let (status, _, body) = post(endpoint, Some(ALICE_KEY), None, INIT, &[]).await;
    assert_eq!(status, 502, "{context}: {body}");
    messages(&body)[0]["error"]["message"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A self-signed certificate as `openssl req -x509` makes it (basicConstraints CA:TRUE) for
/// `names`, written to `dir` as `NAME.pem` and `NAME.key`; valid in 2000 only if `expired`.
fn ca_true_certificate(
    dir: &std::path::Path,
    file: &str,
    names: &[&str],
    expired: bool,
) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    if expired {
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(2000, 12, 31);
    }
    let cert = params.self_signed(&key).unwrap();
    let (cert_pem, key_pem) = (
        dir.join(format!("{file}.pem")),
        dir.join(format!("{file}.key")),
    );
    std::fs::write(&cert_pem, cert.pem()).unwrap();
    std::fs::write(&key_pem, key.serialize_pem()).unwrap();
    (
        cert_pem.display().to_string(),
        key_pem.display().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_signed_ca_certificate_in_ca_file_is_trusted_as_it_is_for_its_own_names() {
    let dir = tempfile::tempdir().unwrap();
    let (pinned, key) = ca_true_certificate(dir.path(), "pinned", &["localhost"], false);
    let inner = Gateway::start(&format!(
        "[gateway.tls]\ncert = \"{pinned}\"\nkey = \"{key}\"\n"
    ));
    let port = inner.url.rsplit(':').next().unwrap();
    let through = |host: &str, ca_file: &str| {
        gateway_to(
            &format!(
                "url = \"https://{host}:{port}/mcp/example\"\nca_file = \"{ca_file}\"\nbearer_token_env = \"INNER_TOKEN\""
            ),
            "",
            &[("INNER_TOKEN", BOB_KEY)],
        )
    };
    // The very certificate the server presents is in ca_file: trusted, as curl --cacert does.
    let trusted = through("localhost", &pinned);
    let client = connect(&trusted.endpoint(), ALICE_KEY).await;
    let echoed = client
        .call_tool(call("echo", json!({"text": "pinned"})))
        .await
        .unwrap();
    assert_eq!(text_of(&echoed), "pinned");
    client.cancel().await.unwrap();

    // Refused, with what to do: the host the url names is not the certificate's (pinned or
    // not), and a different CA:TRUE certificate in ca_file pins nothing.
    let (other, _) = ca_true_certificate(dir.path(), "other", &["localhost"], false);
    for (host, ca_file, why) in [
        ("127.0.0.1", pinned.as_str(), "subjectAltName"),
        ("localhost", other.as_str(), "that very certificate"),
    ] {
        let refused = through(host, ca_file);
        let text = refusal(&refused.endpoint(), &format!("{host} {ca_file}")).await;
        assert!(text.contains("certificate") && text.contains(why), "{text}");
    }
    assert!(
        inner.events().iter().all(|e| e["user_id"] == "bob"),
        "{:#?}",
        inner.events()
    );
    assert!(
        inner.events().iter().any(|e| e["tool_name"] == "echo"),
        "the pinned call reached the server"
    );

    // A pinned certificate past its validity is refused: webpki checks the period before
    // the basic constraints, and the pin accepts only the latter's refusal.
    let (old, old_key) = ca_true_certificate(dir.path(), "old", &["localhost"], true);
    let stale = Gateway::start(&format!(
        "[gateway.tls]\ncert = \"{old}\"\nkey = \"{old_key}\"\n"
    ));
    let stale_port = stale.url.rsplit(':').next().unwrap();
    let refused = gateway_to(
        &format!(
            "url = \"https://localhost:{stale_port}/mcp/example\"\nca_file = \"{old}\"\nbearer_token_env = \"INNER_TOKEN\""
        ),
        "",
        &[("INNER_TOKEN", BOB_KEY)],
    );
    let text = refusal(&refused.endpoint(), "").await;
    assert!(text.contains("renew it"), "{text}");
    assert!(stale.events().is_empty(), "{:#?}", stale.events());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_remote_ends_the_session_the_clients_session_ends_too() {
    let mut first = HttpServer::start();
    let outer = gateway_to(&format!("url = \"{}\"", first.url), "", &[]);
    let session = raw_session(&outer.endpoint(), ALICE_KEY).await;
    let echo = r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"echo","arguments":{"text":"late"}}}"#;
    let (status, _, body) = post(
        &outer.endpoint(),
        Some(ALICE_KEY),
        Some(&session),
        echo,
        &[],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(messages(&body)[0]["result"]["content"][0]["text"], "late");
    // The remote restarts on the same address and knows no session: it answers 404.
    let addr = first
        .url
        .trim_start_matches("http://")
        .trim_end_matches("/mcp")
        .to_string();
    first.stop();
    let server = HttpServer::start_at(&addr);
    // This call fails (recorded), and the client's session ends with the remote's.
    let (status, _, body) = post(
        &outer.endpoint(),
        Some(ALICE_KEY),
        Some(&session),
        echo,
        &[],
    )
    .await;
    assert!(status == 502 || status == 404, "{status} {body}");
    let mut gone = status == 404;
    for _ in 0..50 {
        if gone {
            break;
        }
        let (status, _, _) = post(
            &outer.endpoint(),
            Some(ALICE_KEY),
            Some(&session),
            echo,
            &[],
        )
        .await;
        gone = status == 404;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "the client's session should end with the remote's");
    // A new session works against the new remote.
    let again = raw_session(&outer.endpoint(), ALICE_KEY).await;
    let (status, _, body) = post(&outer.endpoint(), Some(ALICE_KEY), Some(&again), echo, &[]).await;
    assert_eq!(status, 200, "{body}");
    drop(server);
    let ends: Vec<String> = calls_of(&outer.events(), "alice")
        .into_iter()
        .map(|(_, _, end)| end)
        .collect();
    assert_eq!(
        ends.first().map(String::as_str),
        Some("success"),
        "{ends:?}"
    );
    assert_eq!(ends.last().map(String::as_str), Some("success"), "{ends:?}");
    assert!(
        ends.len() >= 3 && ends[1..ends.len() - 1].iter().all(|e| e != "success"),
        "the calls in between failed and are recorded: {ends:?}"
    );
}

/// A remote that records every request's headers and answers `tools/list` with a tool whose
/// `region` argument is marked `x-mcp-header`, and `tools/call` by echoing; JSON bodies only.
struct RecordingRemote {
    url: String,
    seen: std::sync::Arc<std::sync::Mutex<Vec<Seen>>>,
}

/// A request line and its headers (names lowercased).
type Seen = (String, Vec<(String, String)>);

impl RecordingRemote {
    fn start() -> RecordingRemote {
        RecordingRemote::start_with("405 Method Not Allowed")
    }

    /// With `get` the status of its answer to the session's GET stream (a GET without
    /// `Last-Event-ID`). A `tools/call` of `polled` is answered the way a server that makes
    /// its client poll answers (MCP 2025-11-25, SEP-1699): its stream closes after a priming
    /// event with `retry: 300`, and each `Last-Event-ID` GET gets another such event until
    /// 900 ms have passed, then the answer.
    fn start_with(get: &'static str) -> RecordingRemote {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/mcp", listener.local_addr().unwrap());
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        let polled: std::sync::Arc<std::sync::Mutex<Option<(Instant, Value)>>> = Default::default();
        // After a `tools/call` of `forget`: the session it forgot (a restart).
        let forgotten: std::sync::Arc<std::sync::Mutex<Option<String>>> = Default::default();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let log = log.clone();
                let polled = polled.clone();
                let forgotten = forgotten.clone();
                std::thread::spawn(move || {
                    // The TypeScript SDK's refusals: HTTP 400, an error whose id is null.
                    let refuse = |stream: &mut std::net::TcpStream, message: &str| {
                        let text = format!(
                            r#"{{"jsonrpc":"2.0","error":{{"code":-32000,"message":"{message}"}},"id":null}}"#
                        );
                        let head = format!(
                            "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                            text.len()
                        );
                        let _ = stream.write_all(head.as_bytes());
                        let _ = stream.write_all(text.as_bytes());
                    };
                    let sse = |stream: &mut std::net::TcpStream, events: &str| {
                        let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n";
                        let _ = stream.write_all(head.as_bytes());
                        let _ = stream.write_all(events.as_bytes());
                    };
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    loop {
                        let mut start = String::new();
                        if reader.read_line(&mut start).unwrap_or(0) == 0 {
                            return;
                        }
                        let mut headers = Vec::new();
                        let mut length = 0usize;
                        loop {
                            let mut line = String::new();
                            reader.read_line(&mut line).unwrap();
                            let line = line.trim_end();
                            if line.is_empty() {
                                break;
                            }
                            let (k, v) = line.split_once(':').unwrap();
                            let (k, v) = (k.to_ascii_lowercase(), v.trim().to_string());
                            if k == "content-length" {
                                length = v.parse().unwrap();
                            }
                            headers.push((k, v));
                        }
                        let mut body = vec![0; length];
                        reader.read_exact(&mut body).unwrap();
                        if start.starts_with("GET ") {
                            let resuming = headers.iter().any(|(k, _)| k == "last-event-id");
                            let never = headers
                                .iter()
                                .any(|(k, v)| k == "last-event-id" && v.starts_with("n-"));
                            log.lock()
                                .unwrap()
                                .push((start.trim().to_string(), headers));
                            if never {
                                // A new id each time, `retry: 0`, never the answer.
                                let n = log.lock().unwrap().len();
                                sse(&mut stream, &format!("id: n-{n}\nretry: 0\ndata: \n\n"));
                                return;
                            }
                            if resuming {
                                let answer = polled.lock().unwrap().clone();
                                match answer {
                                    Some((since, id))
                                        if since.elapsed() >= Duration::from_millis(900) =>
                                    {
                                        let answer = json!({"jsonrpc": "2.0", "id": id, "result": {
                                            "content": [{"type": "text", "text": "polled"}]}});
                                        sse(&mut stream, &format!("id: p-2\ndata: {answer}\n\n"));
                                    }
                                    _ => sse(&mut stream, "id: p-1\nretry: 300\ndata: \n\n"),
                                }
                                return;
                            }
                            // No stream of server messages at this endpoint (MCP Streamable
                            // HTTP: 405 for GET; many servers answer 404).
                            let head = format!("HTTP/1.1 {get}\r\ncontent-length: 0\r\n\r\n");
                            if stream.write_all(head.as_bytes()).is_err() {
                                return;
                            }
                            continue;
                        }
                        let msg: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        // The body's method, beside the headers, for the order of arrival.
                        let seen_method = msg["method"].as_str().unwrap_or("-").to_string();
                        headers.push(("x-seen-method".into(), seen_method));
                        let stale = forgotten.lock().unwrap().clone();
                        let in_stale = stale.is_some()
                            && headers
                                .iter()
                                .any(|(k, v)| k == "mcp-session-id" && Some(v) == stale.as_ref());
                        log.lock()
                            .unwrap()
                            .push((start.trim().to_string(), headers));
                        let tool = msg["params"]["name"].as_str().unwrap_or_default();
                        if in_stale {
                            // How the SDKs' example servers (server-everything among them)
                            // answer a session they do not know: 400, not the spec's 404.
                            refuse(&mut stream, "Bad Request: No valid session ID provided");
                            continue;
                        }
                        if tool == "forget" {
                            *forgotten.lock().unwrap() = Some("recorded-1".into());
                        }
                        if tool == "error_page" {
                            // An error page that echoes the request's headers (debug pages, WAFs).
                            let echoed: String = log
                                .lock()
                                .unwrap()
                                .last()
                                .unwrap()
                                .1
                                .iter()
                                .map(|(k, v)| format!("{k}={v}\n"))
                                .collect();
                            let head = format!(
                                "HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/html\r\ncontent-length: {}\r\n\r\n",
                                echoed.len()
                            );
                            let _ = stream.write_all(head.as_bytes());
                            let _ = stream.write_all(echoed.as_bytes());
                            continue;
                        }
                        if tool == "gzipped" || tool == "gzipped_second" {
                            // Compressed whatever the request asked (a CDN in front); the
                            // second form names the coding in a second field.
                            let body = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\xab\xae\x05\x00";
                            let coding = if tool == "gzipped" {
                                "content-encoding: gzip\r\n"
                            } else {
                                "content-encoding: identity\r\ncontent-encoding: identity, gzip\r\n"
                            };
                            let head = format!(
                                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n{coding}content-length: {}\r\n\r\n",
                                body.len()
                            );
                            let _ = stream.write_all(head.as_bytes());
                            let _ = stream.write_all(body);
                            continue;
                        }
                        if tool == "never" {
                            sse(&mut stream, "id: n-0\nretry: 0\ndata: \n\n");
                            return;
                        }
                        if tool == "polled" {
                            *polled.lock().unwrap() = Some((Instant::now(), msg["id"].clone()));
                            sse(&mut stream, "id: p-0\nretry: 300\ndata: \n\n");
                            return;
                        }
                        if tool == "gone" {
                            // A call the remote answers with 404 whatever the session (a
                            // session store that lost it again, a misrouted balancer).
                            let head = "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n";
                            let _ = stream.write_all(head.as_bytes());
                            continue;
                        }
                        if tool == "null_id" {
                            // The TypeScript SDK's refusal of a request it cannot take.
                            refuse(&mut stream, "Bad Request: Server not initialized");
                            continue;
                        }
                        if msg["method"].is_string() && msg.get("id").is_none() {
                            // A notification, taken the way some servers take it: 200 with
                            // an empty JSON body rather than 202, and slowly (what a message
                            // sent after it must not overtake).
                            std::thread::sleep(Duration::from_millis(300));
                            // Logged before the answer is written: a message sent after the
                            // answer is logged after this.
                            log.lock().unwrap().push((
                                "ANSWERED".into(),
                                vec![("x-seen-method".into(), msg["method"].to_string())],
                            ));
                            let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 0\r\n\r\n";
                            if stream.write_all(head.as_bytes()).is_err() {
                                return;
                            }
                            continue;
                        }
                        let answer = match msg["method"].as_str() {
                            // An answer that is not the request's.
                            Some("tools/call") if tool == "wrong_id" => {
                                json!({"jsonrpc": "2.0", "id": "someone-else", "result": {}})
                            }
                            Some("tools/list") => {
                                json!({"jsonrpc": "2.0", "id": msg["id"], "result": {"tools": [{
                                "name": "route", "inputSchema": {"type": "object", "properties": {
                                    "region": {"type": "string", "x-mcp-header": "Region"},
                                    "text": {"type": "string"}}}}, {
                                // An invalid declaration: a header on an object (SEP-2243).
                                "name": "bad_header", "inputSchema": {"type": "object", "properties": {
                                    "data": {"type": "object", "x-mcp-header": "Data"}}}}]}})
                            }
                            Some("tools/call") => {
                                json!({"jsonrpc": "2.0", "id": msg["id"], "result": {
                                "content": [{"type": "text", "text": msg["params"]["arguments"]["text"]}]}})
                            }
                            _ => json!({"jsonrpc": "2.0", "id": msg["id"], "result": {}}),
                        };
                        let text = answer.to_string();
                        // A session, as most remotes open one.
                        let session = match (msg["method"] == "initialize", &stale) {
                            (true, None) => "mcp-session-id: recorded-1\r\n",
                            (true, Some(_)) => "mcp-session-id: recorded-2\r\n",
                            _ => "",
                        };
                        let head = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n{session}content-length: {}\r\n\r\n",
                            text.len()
                        );
                        if stream.write_all(head.as_bytes()).is_err()
                            || stream.write_all(text.as_bytes()).is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        RecordingRemote { url, seen }
    }

    /// How many times it was polled: GETs that resume a stream (`Last-Event-ID`).
    fn polls(&self) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(start, h)| {
                start.starts_with("GET ") && h.iter().any(|(k, _)| k == "last-event-id")
            })
            .count()
    }

    /// How many `initialize` requests it was sent (in either era).
    fn initializes(&self) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, h)| {
                h.iter()
                    .any(|(k, v)| k == "x-seen-method" && v == "initialize")
            })
            .count()
    }

    /// The headers of the requests whose `Mcp-Method` is `method`.
    fn headers_of(&self, method: &str) -> Vec<Vec<(String, String)>> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, h)| h.iter().any(|(k, v)| k == "mcp-method" && v == method))
            .map(|(_, h)| h.clone())
            .collect()
    }
}

/// helper-59 F6: a remote that takes a notification with an empty `200 application/json`
/// (not 202) had it logged as "not delivered", an alarm about a message that arrived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_taken_with_an_empty_200_is_delivered_not_reported_lost() {
    let remote = RecordingRemote::start();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("proxy.toml");
    std::fs::write(
        &config,
        format!(
            "[upstream]\nname = \"remote\"\nurl = \"{}\"\n[audit]\nstore_dir = \"store\"\n[log]\nfile = \"proxy.log\"\n",
            remote.url
        ),
    )
    .unwrap();
    let mut command = tokio::process::Command::new(proxy_bin());
    command
        .args(["stdio", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info");
    let mut client = common::LineClient::spawn(command);
    client.initialize().await;
    client
        .send(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/roots/list_changed\"}\n")
        .await;
    client
        .send(&common::call_line(
            json!(7),
            "route",
            json!({"region": "eu", "text": "hi"}),
        ))
        .await;
    let answer: Value = serde_json::from_slice(&client.recv_response(&json!(7)).await).unwrap();
    assert_eq!(answer["result"]["content"][0]["text"], "hi", "{answer}");
    // helper-68 1: messages were POSTed concurrently, so the call (or `tools/list`, which
    // strict servers refuse before it) reached the remote before `notifications/initialized`
    // written before it. The next message now waits for that notification's answer.
    let order: Vec<String> = remote
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|(start, headers)| {
            let method = header(headers, "x-seen-method")
                .unwrap_or("-")
                .trim_matches('"');
            format!("{} {method}", start.split(' ').next().unwrap())
        })
        .filter(|l| !l.starts_with("GET"))
        .collect();
    let at = |what: &str| {
        order
            .iter()
            .position(|l| l == what)
            .unwrap_or_else(|| panic!("no {what:?} in {order:?}"))
    };
    assert!(
        at("ANSWERED notifications/initialized") < at("POST notifications/roots/list_changed")
            && at("ANSWERED notifications/initialized") < at("POST tools/call"),
        "{order:#?}"
    );
    let status = client.finish().await;
    assert!(status.success(), "{status:?}");
    // initialize, both notifications and the call reached the remote, each once.
    let posts = remote
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(start, _)| start.starts_with("POST "))
        .count();
    assert_eq!(posts, 4);
    let log = std::fs::read_to_string(dir.path().join("proxy.log")).unwrap();
    assert!(log.contains("input closed"), "the log was written: {log}");
    assert!(!log.contains("not delivered"), "{log}");
    // After the handshake's notification, the remote's GET stream was asked for.
    assert!(
        remote
            .seen
            .lock()
            .unwrap()
            .iter()
            .any(|(start, _)| start.starts_with("GET ")),
        "no GET stream was opened"
    );
}

/// Lists the tools (so that `route`'s `x-mcp-header` is learnt), then calls `route` with
/// its `Mcp-Param-Region` header; the call's answer.
async fn list_then_route(url: &str, region: &str, text: &str) -> Value {
    let (status, _, body) = post_2026(url, ALICE_KEY, &list_2026(1), None, &[]).await;
    assert_eq!(status, 200, "{body}");
    let call = call_2026(
        "2",
        "route",
        &format!(r#"{{"region":"{region}","text":"{text}"}}"#),
    );
    let (status, _, body) = post_2026(
        url,
        ALICE_KEY,
        &call,
        Some("route"),
        &[("mcp-param-region", region)],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    messages(&body).remove(0)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_remote_sees_the_routing_and_parameter_headers_and_only_the_proxys_credential() {
    let remote = RecordingRemote::start();
    let gw = gateway_to(
        &format!(
            "url = \"{}\"\nbearer_token_env = \"REMOTE_TOKEN\"\nheaders = {{ \"X-Team\" = \"sec\" }}",
            remote.url
        ),
        "",
        &[("REMOTE_TOKEN", "proxy-credential")],
    );
    let answer = list_then_route(&gw.endpoint(), "eu-west-1", "hi").await;
    assert_eq!(answer["result"]["content"][0]["text"], "hi");

    let calls = remote.headers_of("tools/call");
    assert_eq!(calls.len(), 1, "{:#?}", remote.seen.lock().unwrap());
    let h = &calls[0];
    assert_eq!(header(h, "mcp-name"), Some("route"));
    assert_eq!(header(h, "mcp-protocol-version"), Some("2026-07-28"));
    assert_eq!(header(h, "mcp-param-region"), Some("eu-west-1"));
    assert_eq!(header(h, "x-team"), Some("sec"));
    // The proxy's credential, never the client's.
    assert_eq!(header(h, "authorization"), Some("Bearer proxy-credential"));
    for (_, headers) in remote.seen.lock().unwrap().iter() {
        assert!(
            headers.iter().all(|(_, v)| !v.contains(ALICE_KEY)),
            "the client's key reached the remote: {headers:?}"
        );
    }
    let lists = remote.headers_of("tools/list");
    assert_eq!(lists.len(), 1);
    assert_eq!(header(&lists[0], "mcp-name"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misbehaving_remote_fails_the_call_at_once_and_nothing_secret_reaches_the_client() {
    let remote = RecordingRemote::start();
    // A per-user token in the URL's query: never shown to clients, logs or the trail.
    let gw = gateway_to(
        &format!(
            "url = \"{}?key=sk-live-4f9a8b7c6d5e\"\nbearer_token_env = \"REMOTE_TOKEN\"",
            remote.url
        ),
        "",
        &[("REMOTE_TOKEN", "proxy-credential-0123")],
    );
    let mut texts = Vec::new();
    for tool in ["wrong_id", "error_page"] {
        let call = call_2026(&format!("\"{tool}\""), tool, "{}");
        let started = std::time::Instant::now();
        let (status, _, body) = post_2026(&gw.endpoint(), ALICE_KEY, &call, Some(tool), &[]).await;
        assert!(started.elapsed() < Duration::from_secs(5), "{tool} waited");
        let answers = messages(&body);
        let mine: Vec<&Value> = answers.iter().filter(|a| a["id"] == tool).collect();
        assert_eq!(mine.len(), 1, "{tool}: {body}");
        assert_eq!(mine[0]["error"]["code"], -32011, "{tool}: {body}");
        assert_eq!(status, 502, "{tool}: {body}");
        texts.push(body);
    }
    assert!(texts[0].contains("without an answer"), "{}", texts[0]);
    assert!(texts[1].contains("HTTP 500"), "{}", texts[1]);
    let trail = serde_json::to_string(&gw.events()).unwrap();
    for text in texts.iter().chain([&trail]) {
        assert!(!text.contains("sk-live-4f9a8b7c6d5e"), "{text}");
        assert!(!text.contains("proxy-credential-0123"), "{text}");
    }
    // The remote did get the credential (the error page echoed it back).
    let calls = remote.headers_of("tools/call");
    assert!(
        calls
            .iter()
            .all(|h| header(h, "authorization") == Some("Bearer proxy-credential-0123"))
    );
}

/// Found by a fresh pair of eyes (after typescript-sdk#412): a remote's error with `"id":
/// null` on the POST of one request was passed on as it came; the client could not match it
/// to its request, and the call stayed open until `limits.call_timeout_ms` (10 minutes),
/// then recorded as a timeout, or, in 2026-07-28, as cancelled by the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remotes_error_with_a_null_id_answers_the_request_it_refused_at_once() {
    let remote = RecordingRemote::start();
    let gw = gateway_to(&format!("url = \"{}\"", remote.url), "", &[]);
    let call = call_2026("\"n-1\"", "null_id", "{}");
    let (_, _, body) = tokio::time::timeout(
        Duration::from_secs(10),
        post_2026(&gw.endpoint(), ALICE_KEY, &call, Some("null_id"), &[]),
    )
    .await
    .expect("the call ends at once, not at limits.call_timeout_ms");
    let answers = messages(&body);
    assert_eq!(answers.len(), 1, "{body}");
    assert_eq!(answers[0]["id"], "n-1", "{body}");
    assert_eq!(answers[0]["error"]["code"], -32000, "{body}");
    assert_eq!(
        answers[0]["error"]["message"], "Bad Request: Server not initialized",
        "{body}"
    );
    let ends: Vec<Value> = gw
        .events()
        .into_iter()
        .filter(|e| e["tool_name"] == "null_id" && e["event_type"] != "tool_access")
        .collect();
    assert_eq!(ends.len(), 1, "{ends:#?}");
    assert_eq!(ends[0]["result"], "jsonrpc_error", "{ends:#?}");
    assert_eq!(ends[0]["metadata"]["failure_side"], "upstream", "{ends:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_of_a_batch_to_an_unreachable_remote_gets_its_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (_dir, _config, mut client) = stdio_wrapper(&format!(
        "[upstream]\nurl = \"http://127.0.0.1:{port}/mcp\"\n[audit]\nstore_dir = \"store\"\n[limits]\ncall_timeout_ms = 60000\n"
    ));
    client
        .send(br#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-03-26","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#)
        .await;
    client.send(b"\n").await;
    let init = client.recv_json().await;
    assert_eq!(init["error"]["code"], -32011, "{init}");
    let started = std::time::Instant::now();
    client
        .send(b"[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"arguments\":{\"text\":\"a\"}}},{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/list\"}]\n")
        .await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let answer = client.recv_json().await;
        let answers = match answer {
            Value::Array(items) => items,
            one => vec![one],
        };
        for a in answers {
            assert_eq!(a["error"]["code"], -32011, "{a}");
            ids.push(a["id"].clone());
        }
        if ids.len() == 2 {
            break;
        }
    }
    ids.sort_by_key(|v| v.to_string());
    assert_eq!(ids, vec![json!(1), json!(2)]);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the batch waited for a timeout"
    );
    client.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn param_headers_survive_a_chain_of_gateways_that_both_check_them() {
    // The inner gateway checks Mcp-Param-Region against the arguments; the outer one, its
    // client, must mirror it as any 2026-07-28 client does.
    let inner = Gateway::start("");
    let outer = gateway_to(
        &format!(
            "url = \"{}\"\nbearer_token_env = \"INNER_TOKEN\"",
            inner.endpoint()
        ),
        "",
        &[("INNER_TOKEN", BOB_KEY)],
    );
    let answer = list_then_route(&outer.endpoint(), "ap-south-1", "chained").await;
    assert_eq!(
        answer["result"]["content"][0]["text"],
        "ap-south-1: chained"
    );
    assert!(
        inner
            .events()
            .iter()
            .all(|e| e["metadata"]["http"]["status_code"].is_null()),
        "the inner gateway refused something: {:#?}",
        inner.events()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stdio_wrapper_opens_a_new_upstream_session_when_the_remote_forgets_its_own() {
    let mut first = HttpServer::start();
    let (_dir, _config, mut client) = stdio_to(&first.url).await;
    let echo =
        |id: u32| common::call_line(json!(id), "echo", json!({"text": format!("call {id}")}));
    client.send(&echo(1)).await;
    let answer: Value = serde_json::from_slice(&client.recv_response(&json!(1)).await).unwrap();
    assert_eq!(answer["result"]["content"][0]["text"], "call 1", "{answer}");
    // The remote restarts on the same address and knows no session: the wrapper opens a new
    // one with the client's initialize, and the call goes through.
    let addr = first
        .url
        .trim_start_matches("http://")
        .trim_end_matches("/mcp")
        .to_string();
    first.stop();
    let _second = HttpServer::start_at(&addr);
    client.send(&echo(2)).await;
    let answer: Value = serde_json::from_slice(&client.recv_response(&json!(2)).await).unwrap();
    assert_eq!(answer["result"]["content"][0]["text"], "call 2", "{answer}");
    assert!(
        client.child.try_wait().unwrap().is_none(),
        "the wrapper exited"
    );
    let status = client.finish().await;
    assert!(status.success(), "{status:?}");
}

/// helper-92 F4 (after supergateway#123): a remote that restarted and answers the session it
/// no longer knows with 400 (the SDKs' example servers do; the spec says 404) made every
/// later call behind the stdio wrapper fail (-32011) until the client restarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stdio_wrapper_opens_a_new_session_when_the_remote_answers_its_old_one_with_400() {
    let remote = RecordingRemote::start();
    let (_dir, _config, mut client) = stdio_to(&remote.url).await;
    let echo = |id: u32, tool: &str| {
        common::call_line(json!(id), tool, json!({"text": format!("call {id}")}))
    };
    for (id, tool) in [(1, "echo"), (2, "forget"), (3, "echo"), (4, "echo")] {
        client.send(&echo(id, tool)).await;
        let answer: Value =
            serde_json::from_slice(&client.recv_response(&json!(id)).await).unwrap();
        assert_eq!(
            answer["result"]["content"][0]["text"],
            format!("call {id}"),
            "{answer}"
        );
    }
    let inits = remote.initializes();
    assert_eq!(inits, 2, "one new upstream session, not one per call");
    let status = client.finish().await;
    assert!(status.success(), "{status:?}");
}

/// helper-93: behind the gateway the same 400 came to the client as the call's answer, and
/// the client's session stayed open on an upstream session that no longer existed: every
/// later call failed the same way. As for a 404, the client's session ends (it gets 404 and
/// starts a new one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_the_gateway_a_400_naming_the_session_ends_the_clients_session() {
    let remote = RecordingRemote::start();
    let gw = gateway_to(&format!("url = \"{}\"", remote.url), "", &[]);
    let url = gw.endpoint();
    // The recording remote answers initialize with an empty result: no serverInfo to check.
    let open = || async {
        let (status, headers, body) = post(&url, Some(ALICE_KEY), None, INIT, &[]).await;
        assert_eq!(status, 200, "{body}");
        headers["mcp-session-id"].to_str().unwrap().to_string()
    };
    let session = open().await;
    let call = |id: u32, tool: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{tool}","arguments":{{"text":"call {id}"}}}}}}"#
        )
    };
    let (status, _, body) = post(
        &url,
        Some(ALICE_KEY),
        Some(&session),
        &call(2, "forget"),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // The request that finds the session lost is the 404 itself (it was a 502 first, and a
    // client that starts a new session on 404 lost one more call; helper-103 F1), with the
    // error naming the upstream as the body.
    let (status, _, body) =
        post(&url, Some(ALICE_KEY), Some(&session), &call(3, "echo"), &[]).await;
    assert_eq!(status, 404, "{body}");
    let answer = &messages(&body)[0];
    assert_eq!(answer["id"], 3, "{body}");
    assert_eq!(
        answer["error"]["data"]["upstream_session_ended"], true,
        "{body}"
    );
    let (status, _, body) =
        post(&url, Some(ALICE_KEY), Some(&session), &call(4, "echo"), &[]).await;
    assert_eq!(
        status, 404,
        "the client's session outlived its upstream's: {body}"
    );
    // A new session reaches the remote again.
    let session = open().await;
    let (status, _, body) =
        post(&url, Some(ALICE_KEY), Some(&session), &call(5, "echo"), &[]).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("call 5"), "{body}");
}

/// Review helper-106: only the request whose own POST found the upstream session lost is
/// answered 404 (the upstream did not take it; the client may send it again in a new
/// session). A call in flight when that happened may have run upstream: it fails with the
/// upstream's 502 and nothing that invites sending it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_in_flight_when_the_upstream_session_is_lost_is_no_404() {
    let remote = RecordingRemote::start();
    let gw = gateway_to(&format!("url = \"{}\"", remote.url), "", &[]);
    let url = gw.endpoint();
    let (status, headers, body) = post(&url, Some(ALICE_KEY), None, INIT, &[]).await;
    assert_eq!(status, 200, "{body}");
    let session = headers["mcp-session-id"].to_str().unwrap().to_string();
    let call = |id: u32, tool: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{tool}","arguments":{{"text":"call {id}"}}}}}}"#
        )
    };
    // `polled`: the remote holds the call (its stream closes, the answer comes to a resuming
    // GET after 900 ms), so it is in flight while the next two requests run.
    let in_flight = tokio::spawn({
        let (url, session, body) = (url.clone(), session.clone(), call(2, "polled"));
        async move { post(&url, Some(ALICE_KEY), Some(&session), &body, &[]).await }
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let (status, _, body) = post(
        &url,
        Some(ALICE_KEY),
        Some(&session),
        &call(3, "forget"),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) =
        post(&url, Some(ALICE_KEY), Some(&session), &call(4, "echo"), &[]).await;
    assert_eq!(
        status, 404,
        "the request that found the session lost: {body}"
    );
    let (status, _, body) = tokio::time::timeout(Duration::from_secs(10), in_flight)
        .await
        .expect("the call in flight was never answered")
        .unwrap();
    let answer = &messages(&body)[0];
    assert_eq!(answer["id"], 2, "{body}");
    assert_ne!(status, 404, "the call in flight was answered 404: {body}");
    assert!(
        answer["error"]["data"]
            .get("upstream_session_ended")
            .is_none(),
        "the call in flight invites sending it again: {body}"
    );
    assert_eq!(
        answer["error"]["code"], -32011,
        "the call in flight did not fail as the upstream's: {body}"
    );
}

/// The stdio wrapper in front of the remote at `url`, initialized: its folder, config and
/// client.
async fn stdio_to(url: &str) -> (tempfile::TempDir, std::path::PathBuf, common::LineClient) {
    let (dir, config, mut client) = stdio_wrapper(&format!(
        "[upstream]\nname = \"remote\"\nurl = \"{url}\"\n[audit]\nstore_dir = \"store\"\n"
    ));
    client.initialize().await;
    (dir, config, client)
}

/// helper-72 F5: the proxy sent no Accept-Encoding (any coding acceptable, RFC 9110), and a
/// gzip answer reached the client as raw bytes inside the error text. It now asks for
/// identity, and a coded answer is a clear failure of the call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compressed_answer_is_a_clear_failure_and_identity_is_asked_for() {
    let remote = RecordingRemote::start();
    let (_dir, _config, mut client) = stdio_to(&remote.url).await;
    client
        .send(&common::call_line(json!(1), "gzipped", json!({})))
        .await;
    let answer: Value = serde_json::from_slice(&client.recv_response(&json!(1)).await).unwrap();
    assert_eq!(answer["error"]["code"], -32011, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("Content-Encoding \"gzip\""), "{message}");
    assert!(!message.contains('\u{FFFD}'), "{message}");
    // Named after identity, in a second field (helper-73 #7: only the first was read).
    client
        .send(&common::call_line(json!(2), "gzipped_second", json!({})))
        .await;
    let answer: Value = serde_json::from_slice(&client.recv_response(&json!(2)).await).unwrap();
    assert_eq!(answer["error"]["code"], -32011, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("Content-Encoding \"gzip\""), "{message}");
    assert!(client.finish().await.success());
    for (start, headers) in remote.seen.lock().unwrap().iter() {
        if start.starts_with("POST ") {
            assert_eq!(
                header(headers, "accept-encoding"),
                Some("identity"),
                "{start}"
            );
        }
    }
}

/// helper-68 #5: behind the stdio wrapper, a call the remote answered 404 again right after
/// the wrapper opened a new session for it ended the whole stdio session (exit 1), where a
/// client talking to the remote itself loses only that request. Now that call fails with
/// the upstream's error, recorded, and the session goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_404_behind_the_stdio_wrapper_fails_the_call_not_the_session() {
    let remote = RecordingRemote::start();
    let (dir, config, mut client) = stdio_to(&remote.url).await;
    client
        .send(&common::call_line(json!(1), "gone", json!({})))
        .await;
    let answer: Value = serde_json::from_slice(&client.recv_response(&json!(1)).await).unwrap();
    assert_eq!(answer["error"]["code"], -32011, "{answer}");
    assert!(
        answer["error"]["message"].as_str().unwrap().contains("404"),
        "{answer}"
    );
    client
        .send(&common::call_line(
            json!(2),
            "route",
            json!({"region": "eu", "text": "still here"}),
        ))
        .await;
    let answer: Value = serde_json::from_slice(&client.recv_response(&json!(2)).await).unwrap();
    assert_eq!(
        answer["result"]["content"][0]["text"], "still here",
        "{answer}"
    );
    let status = client.finish().await;
    assert!(status.success(), "{status:?}");
    // The refused call is in the trail as the upstream's failure.
    let out = std::process::Command::new(proxy_bin())
        .args(["events", "--json", "--config"])
        .arg(&config)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let events: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let gone: Vec<&Value> = events.iter().filter(|e| e["tool_name"] == "gone").collect();
    assert_eq!(gone.len(), 2, "{events:#?}");
    assert!(
        gone.iter()
            .any(|e| e["event_type"] == "tool_failure"
                && e["metadata"]["failure_side"] == "upstream"),
        "{gone:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_call_past_its_timeout_ends_once_with_the_cores_timeout() {
    // Found by a hostile-input pass: the remote link timed the call with the same limit as
    // the core, counted from a few milliseconds later. Whichever fired first won, so the
    // client got -32001 or -32011, and the trail a `timeout`, a `jsonrpc_error`, or both
    // (the link's own error recorded as the server answering after the timeout).
    let server = HttpServer::start();
    let (_dir, config, mut client) = stdio_wrapper(&format!(
        "user_id = \"tester\"\n[upstream]\nname = \"remote\"\nurl = \"{}\"\n[audit]\nstore_dir = \"store\"\n[limits]\ncall_timeout_ms = 1000\n",
        server.url
    ));
    client
        .send(b"{\"jsonrpc\":\"2.0\",\"id\":\"init\",\"method\":\"initialize\",\"params\":{\"protocolVersion\":\"2025-11-25\",\"capabilities\":{},\"clientInfo\":{\"name\":\"raw\",\"version\":\"1\"}}}\n")
        .await;
    assert!(client.recv_json().await["result"].is_object());
    client
        .send(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n")
        .await;
    const CALLS: u64 = 16;
    for id in 0..CALLS {
        client
            .send(&common::call_line(
                json!(id),
                "slow",
                json!({"ms": 6000, "steps": 1}),
            ))
            .await;
    }
    let mut answered = Vec::new();
    while answered.len() < CALLS as usize {
        let answer = client.recv_json().await;
        if answer.get("method").is_some() {
            continue;
        }
        assert_eq!(
            answer["error"]["code"], -32001,
            "the core's timeout: {answer}"
        );
        answered.push(answer["id"].as_u64().expect("a call's id"));
    }
    // Past the link's own limit too: nothing else may end these calls.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    client.finish().await;
    let out = std::process::Command::new(proxy_bin())
        .args(["events", "--json", "--limit", "1000", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let events: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .rev()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ends: Vec<&Value> = events
        .iter()
        .filter(|e| {
            let kind = e["event_type"].as_str().unwrap_or_default();
            kind.starts_with("tool_") && kind != "tool_access" && e["tool_name"] == "slow"
        })
        .collect();
    assert_eq!(ends.len(), CALLS as usize, "one end per call: {ends:#?}");
    assert!(ends.iter().all(|e| e["result"] == "timeout"), "{ends:#?}");
    assert_eq!(common::pairs(&events).len(), CALLS as usize);
}

/// helper-89 F1: a remote without a GET stream that answers the session's GET with 404 (a web
/// framework's missing route, as the conformance suite's own test servers do), not 405. The
/// stdio wrapper took it for the session's end and opened a new session in a loop (3,145 in
/// 5 s while the client sat idle); the gateway ended its client's session. A 404 to a GET
/// stream that never opened is now taken as "no stream".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_that_answers_its_get_stream_with_404_keeps_its_session() {
    let remote = RecordingRemote::start_with("404 Not Found");
    let (_dir, _config, mut client) = stdio_to(&remote.url).await;
    for i in 0..3 {
        client
            .send(&common::call_line(
                json!(i),
                "echo",
                json!({"text": format!("t{i}")}),
            ))
            .await;
        let answer: Value = serde_json::from_slice(&client.recv_response(&json!(i)).await).unwrap();
        assert_eq!(
            answer["result"]["content"][0]["text"],
            format!("t{i}"),
            "{answer}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let gets = remote
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(start, _)| start.starts_with("GET "))
        .count();
    assert_eq!(
        remote.initializes(),
        1,
        "one upstream session, not a new one per 404"
    );
    assert!(
        (1..=2).contains(&gets),
        "the GET stream is asked for once, and once again a second later: {gets}"
    );
    assert!(client.finish().await.success());

    // The gateway in front of the same kind of remote: the client's session goes on.
    let remote = RecordingRemote::start_with("404 Not Found");
    let gateway = gateway_to(&format!("url = \"{}\"", remote.url), "", &[]);
    // (This remote's `initialize` result is empty: the handshake by hand.)
    let (status, headers, body) = post(&gateway.endpoint(), Some(ALICE_KEY), None, INIT, &[]).await;
    assert_eq!(status, 200, "{body}");
    let session = headers["mcp-session-id"].to_str().unwrap().to_string();
    let initialized = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    let (status, _, body) = post(
        &gateway.endpoint(),
        Some(ALICE_KEY),
        Some(&session),
        initialized,
        &[],
    )
    .await;
    assert_eq!(status, 202, "{body}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let echo = r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"echo","arguments":{"text":"kept"}}}"#;
    let (status, _, body) = post(
        &gateway.endpoint(),
        Some(ALICE_KEY),
        Some(&session),
        echo,
        &[],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(messages(&body)[0]["result"]["content"][0]["text"], "kept");
    assert_eq!(remote.initializes(), 1);
}

/// helper-89 F2: a server that closes a request's stream after a priming event with
/// `retry: 300` and answers on a later `Last-Event-ID` GET (MCP 2025-11-25, SEP-1699). The
/// proxy ignored `retry:`, reconnected three times within 50 ms and failed a call the server
/// went on to finish (the trail said it failed; a client may run it again). Now it polls at
/// the server's pace until the answer comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_server_makes_the_client_poll_is_answered_at_the_servers_pace() {
    let remote = RecordingRemote::start();
    let (_dir, config, mut client) = stdio_to(&remote.url).await;
    client
        .send(&common::call_line(json!(7), "polled", json!({"text": "p"})))
        .await;
    let answer: Value = serde_json::from_slice(&client.recv_response(&json!(7)).await).unwrap();
    assert_eq!(answer["result"]["content"][0]["text"], "polled", "{answer}");
    assert!(client.finish().await.success());
    let polls = remote.polls();
    // 900 ms at one poll per 300 ms: three or four polls, not a burst.
    assert!((2..=5).contains(&polls), "{polls} polls");
    let events = common::events_of(&config);
    let end = events
        .iter()
        .find(|e| e["event_type"] == "tool_execution" || e["event_type"] == "tool_failure")
        .expect("the call's end");
    assert_eq!(end["event_type"], "tool_execution", "{end:#}");
}

/// helper-89 F5: a tool whose `x-mcp-header` declarations are invalid (here a header on an
/// object) must be rejected by its client (SEP-2243: "Clients MUST reject (exclude) such
/// tools"). The proxy is the remote's client, and sent such calls anyway (without headers);
/// now it refuses them, and the other tools work on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_with_invalid_header_declarations_is_not_called() {
    let remote = RecordingRemote::start();
    let gw = gateway_to(&format!("url = \"{}\"", remote.url), "", &[]);
    let answer = list_then_route(&gw.endpoint(), "eu-west-1", "hi").await;
    assert_eq!(answer["result"]["content"][0]["text"], "hi");
    let call = call_2026("3", "bad_header", r#"{"data":{"a":1}}"#);
    let (_, _, body) = post_2026(&gw.endpoint(), ALICE_KEY, &call, Some("bad_header"), &[]).await;
    let answer = &messages(&body)[0];
    assert_eq!(answer["id"], 3, "{answer}");
    let text = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(
        text.contains("x-mcp-header") && text.contains("not sent"),
        "{answer}"
    );
    let calls: Vec<String> = remote
        .seen
        .lock()
        .unwrap()
        .iter()
        .flat_map(|(_, h)| header(h, "mcp-name").map(str::to_string))
        .collect();
    assert!(!calls.iter().any(|n| n == "bad_header"), "{calls:?}");
    assert!(calls.iter().any(|n| n == "route"), "{calls:?}");
}

/// helper-91 M1: a server that closes each resumed stream at once with `retry: 0` and a new
/// event id, and never answers, had the proxy reconnect as fast as it could until the call
/// timed out (10 minutes by default). Each wait is at least 100 ms, and a bare priming event
/// is no sign of life.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_a_polled_call_is_not_polled_in_a_tight_loop() {
    let remote = RecordingRemote::start();
    let (_dir, _config, mut client) = stdio_wrapper(&format!(
        "[upstream]\nname = \"remote\"\nurl = \"{}\"\n[audit]\nstore_dir = \"store\"\n[limits]\ncall_timeout_ms = 2000\n",
        remote.url
    ));
    client.initialize().await;
    client
        .send(&common::call_line(json!(9), "never", json!({})))
        .await;
    let answer: Value = serde_json::from_slice(&client.recv_response(&json!(9)).await).unwrap();
    assert!(answer["error"].is_object(), "{answer}");
    let polls = remote.polls();
    // 2 s at one poll per 100 ms at most.
    assert!((1..=25).contains(&polls), "{polls} polls in 2 s");
    assert!(client.finish().await.success());
}
