//! The interop peers installed by tests/interop/setup.sh, and the runs both interop test files
//! share: a client script against a target, with a time limit so a hang fails the test instead
//! of holding CI; the gateway started in front of a stdio server.

#![allow(dead_code, reason = "each test file uses a different subset")]

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Where setup.sh installed the peers.
pub fn interop_dir() -> PathBuf {
    let dir = std::env::var_os("MCP_AUDIT_INTEROP_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/interop"));
    assert!(
        dir.join(".installed").exists(),
        "interop peers are not installed in {}: run `bash tests/interop/setup.sh` (or `bash tests/run.sh`)",
        dir.display()
    );
    dir
}

/// The client scripts (tests/interop).
pub fn scripts() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

fn s(p: PathBuf) -> String {
    p.to_string_lossy().into_owned()
}

/// server-everything's entry point (`node <it> stdio|streamableHttp`).
pub fn everything_js() -> String {
    s(
        interop_dir()
            .join("node/node_modules/@modelcontextprotocol/server-everything/dist/index.js"),
    )
}

/// A stdio server the clients talk to, by name.
pub fn server(name: &str) -> Vec<String> {
    let dir = interop_dir();
    match name {
        "everything" => vec![
            s(dir.join("node/node_modules/.bin/mcp-server-everything")),
            "stdio".into(),
        ],
        "python" => vec![
            s(dir.join("venv/bin/python")),
            s(scripts().join("peer_server.py")),
        ],
        "rmcp" => vec![s(super::common::example_server())],
        other => panic!("unknown server {other}"),
    }
}

/// compare.py (the official Python SDK) with `args`; the target follows `--`.
pub fn python(args: &[&str]) -> Vec<String> {
    let mut v = vec![
        s(interop_dir().join("venv/bin/python")),
        s(scripts().join("compare.py")),
    ];
    v.extend(args.iter().map(|a| a.to_string()));
    v
}

/// ts_client.mjs (the official TypeScript SDK v2) in `mode` (legacy, auto, 2026-07-28).
pub fn typescript(mode: &str) -> Vec<String> {
    vec!["node".into(), "ts_client.mjs".into(), mode.into()]
}

/// Runs `cmd` in `dir` with `env`, at most `limit`; returns stdout, or panics with stderr
/// (and says so when the limit was reached: a hang is a finding, not a slow test).
pub fn run_limited(
    cmd: &[String],
    dir: &std::path::Path,
    env: &[(&str, &str)],
    limit: Duration,
) -> Vec<u8> {
    let mut child = Command::new(&cmd[0])
        .args(&cmd[1..])
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stdout.read_to_end(&mut b);
        b
    });
    let err = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stderr.read_to_end(&mut b);
        b
    });
    let until = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > until {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = out.join().unwrap();
    let err = String::from_utf8_lossy(&err.join().unwrap()).into_owned();
    match status {
        Some(st) if st.success() => out,
        Some(st) => panic!("{cmd:?} failed ({st}):\n{err}"),
        None => panic!("{cmd:?} hung: killed after {limit:?}\n{err}"),
    }
}

/// Runs a client script against `target` (a stdio command, or one URL); returns its report.
pub fn run_client(client: &[String], target: &[String], bearer: Option<&str>) -> Value {
    let mut cmd = client.to_vec();
    cmd.push("--".into());
    cmd.extend(target.iter().cloned());
    let env: Vec<(&str, &str)> = bearer
        .map(|b| vec![("MCP_INTEROP_BEARER", b)])
        .unwrap_or_default();
    let out = run_limited(
        &cmd,
        &interop_dir().join("node"),
        &env,
        Duration::from_secs(120),
    );
    serde_json::from_slice(&out).unwrap_or_else(|e| panic!("{cmd:?}: output is not JSON: {e}"))
}

/// Panics with the first lines where two client reports differ.
pub fn assert_same(label: &str, direct: &Value, other: &Value, how: &str) {
    if direct == other {
        return;
    }
    let d = serde_json::to_string_pretty(direct).unwrap();
    let p = serde_json::to_string_pretty(other).unwrap();
    let first = d
        .lines()
        .zip(p.lines())
        .position(|(a, b)| a != b)
        .unwrap_or(0);
    let show = |s: &str| {
        s.lines()
            .skip(first.saturating_sub(3))
            .take(12)
            .collect::<Vec<_>>()
            .join("\n")
    };
    panic!(
        "{label}: the client sees a difference {how}\n--- direct\n{}\n--- {how}\n{}",
        show(&d),
        show(&p)
    );
}

/// The API key the interop clients send as `Authorization: Bearer`.
pub const INTEROP_KEY: &str = "interop-key-0123456789abcdef";

/// `mcp-audit-proxy gateway` in front of stdio servers, with a store of its own.
pub struct Gateway {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The config file.
    pub config: PathBuf,
    _dir: tempfile::TempDir,
}

impl Gateway {
    /// Serves each `(name, command)` at `/mcp/<name>`; `gateway` is added to `[gateway]`
    /// (credentials: the interop API key unless it says `allow_anonymous`).
    pub fn start(upstreams: &[(&str, &[String])], gateway: &str) -> Gateway {
        Gateway::start_mixed(upstreams, &[], gateway)
    }

    /// [`Gateway::start`] with remote upstreams too: each `(name, url)` at `/mcp/<name>`.
    pub fn start_mixed(
        upstreams: &[(&str, &[String])],
        remotes: &[(&str, &str)],
        gateway: &str,
    ) -> Gateway {
        use sha2::{Digest, Sha256};
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("proxy.toml");
        let mut text = String::new();
        for (name, url) in remotes {
            text += &format!("[[upstream]]\nname = \"{name}\"\nurl = \"{url}\"\n\n");
        }
        for (name, command) in upstreams {
            let command: Vec<String> = command
                .iter()
                .map(|c| serde_json::to_string(c).unwrap())
                .collect();
            text += &format!(
                "[[upstream]]\nname = \"{name}\"\ncommand = [{}]\n\n",
                command.join(", ")
            );
        }
        let hash: String = Sha256::digest(INTEROP_KEY.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        text += &format!(
            "[audit]\nstore_dir = \"store\"\n\n[gateway]\nlisten = \"127.0.0.1:0\"\n{gateway}\n\n\
             [[gateway.api_key]]\nuser_id = \"interop\"\nsha256 = \"{hash}\"\n"
        );
        std::fs::write(&config, text).unwrap();
        let mut child = Command::new(super::common::proxy_bin())
            .arg("gateway")
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the gateway");
        let url = super::common::listening_url(&mut child);
        Gateway {
            child,
            url,
            config,
            _dir: dir,
        }
    }

    /// The endpoint of upstream `name`.
    pub fn endpoint(&self, name: &str) -> String {
        format!("{}/mcp/{name}", self.url)
    }

    /// Stops the gateway as an operator does (SIGTERM: it finishes what is in flight, writes
    /// the events and exits 0), then returns every event in its store, oldest first.
    pub fn finish(mut self) -> Vec<Value> {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let until = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < until,
                "the gateway did not exit within 30 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(
            status.success(),
            "the gateway exited with {status} on SIGTERM"
        );
        let out = Command::new(super::common::proxy_bin())
            .args(["events", "--json", "--limit", "1000000", "--config"])
            .arg(&self.config)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "events failed: {}",
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
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
