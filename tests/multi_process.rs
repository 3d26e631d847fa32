//! One store, many processes (issue 9 item 1): three stdio wrappers and a gateway, started from
//! one config, write at once; the index holder is SIGKILLed mid-run; `events` runs all the
//! while; afterwards every event of every acknowledged call is there exactly once.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{LineClient, TestClient, args, call_line, example_server, pairs, proxy_bin};
use mcp_audit_proxy::store::{Filter, newest_from_journals};
use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const KEY: &str = "multi-writer-key-0123456789";

/// The config every process of the test runs from: one store, one upstream, a gateway.
fn write_config(dir: &Path) -> PathBuf {
    let sha: String = Sha256::digest(KEY.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let config = dir.join("proxy.toml");
    let text = format!(
        r#"user_id = "tester"

[[upstream]]
name = "example"
command = ["{server}"]

[audit]
store_dir = "store"
durability = "sync"
segment_bytes = 65536

[gateway]
listen = "127.0.0.1:0"

[[gateway.api_key]]
user_id = "gw-user"
sha256 = "{sha}"
"#,
        server = example_server().display(),
    );
    std::fs::write(&config, text).unwrap();
    config
}

/// A child process killed if the test fails before it stops it.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The pid holding an exclusive flock on `path`, from /proc/locks.
fn lock_holder(path: &Path) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let inode = std::fs::metadata(path).ok()?.ino();
    std::fs::read_to_string("/proc/locks")
        .ok()?
        .lines()
        .find_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let ino = f.get(5)?.rsplit(':').next()?.parse::<u64>().ok()?;
            (f.get(1) == Some(&"FLOCK") && ino == inode).then(|| f.get(4)?.parse().ok())?
        })
}

/// `events --json` over the whole store, through the real binary; must always succeed.
async fn query(config: &Path) -> Vec<Value> {
    let out = tokio::process::Command::new(proxy_bin())
        .args(["events", "--json", "--limit", "1000000", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "events failed while writers ran: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut events: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    events.reverse();
    events
}

/// The `text` argument of an access event: the marker of the call.
fn marker(e: &Value) -> Option<&str> {
    e["metadata"]["arguments"]["text"].as_str()
}

/// The pause between a writer's rounds of 10 calls (the gateway's client: between calls).
const PACE: Duration = Duration::from_millis(200);

/// A wrapper that sends rounds of 10 echo calls until `stop`; returns the markers answered.
async fn wrapper_calls(mut c: LineClient, name: String, stop: Arc<AtomicBool>) -> Vec<String> {
    c.initialize().await;
    let mut acked = Vec::new();
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        let mut round = Vec::new();
        let mut burst = Vec::new();
        for _ in 0..10 {
            let text = format!("{name}-{i}");
            burst.extend(call_line(json!(text), "echo", json!({ "text": text })));
            round.push(text);
            i += 1;
        }
        c.send(&burst).await;
        // Answers may come in any order.
        let mut waiting: HashSet<String> = round.into_iter().collect();
        while !waiting.is_empty() {
            let v = c.recv_json().await;
            let Some(text) = v["id"].as_str().and_then(|id| waiting.take(id)) else {
                continue;
            };
            assert_eq!(v["result"]["content"][0]["text"], text.as_str());
            acked.push(text);
        }
        // A steady pace, not as fast as the machine goes: each query reads the whole trail,
        // and a trail growing at full speed made queries on a loaded 2-core CI machine take
        // longer than the test waits.
        tokio::time::sleep(PACE).await;
    }
    assert!(c.finish().await.success(), "{name} exits cleanly");
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_wrappers_and_a_gateway_share_one_store_while_the_index_holder_is_killed() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let store = dir.path().join("store");
    let wrapper = || {
        let mut c = tokio::process::Command::new(proxy_bin());
        c.arg("stdio")
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "warn");
        LineClient::spawn(c)
    };

    // The first wrapper opens the store alone: it takes the index (in the background).
    let mut victim = wrapper();
    victim.initialize().await;
    let victim_pid = victim.child.id().unwrap();
    let until = Instant::now() + Duration::from_secs(20);
    while lock_holder(&store.join("index.lock")) != Some(victim_pid) {
        assert!(
            Instant::now() < until,
            "the only writer did not take the index"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Two more wrappers and a gateway on the same store: none is refused.
    let stop = Arc::new(AtomicBool::new(false));
    let w2 = wrapper();
    let w3 = wrapper();
    let mut pids = vec![w2.child.id().unwrap(), w3.child.id().unwrap()];
    let w2 = tokio::spawn(wrapper_calls(w2, "w2".into(), stop.clone()));
    let w3 = tokio::spawn(wrapper_calls(w3, "w3".into(), stop.clone()));
    let mut gateway = KillOnDrop(
        std::process::Command::new(proxy_bin())
            .arg("gateway")
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let gateway = &mut gateway.0;
    pids.push(gateway.id());
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(gateway.stdout.take().unwrap()),
        &mut first,
    )
    .unwrap();
    let url = format!(
        "{}/mcp/example",
        first.trim().strip_prefix("listening on ").unwrap()
    );
    let gw = tokio::spawn({
        let stop = stop.clone();
        async move {
            let transport = StreamableHttpClientTransport::from_config(
                StreamableHttpClientTransportConfig::with_uri(url).auth_header(KEY.to_string()),
            );
            let caps = ClientCapabilities::builder().build();
            let client = TestClient::new(ClientConfig::new(
                caps,
                Implementation::new("multi-writer-test", "1.0.0"),
            ))
            .serve(transport)
            .await
            .unwrap();
            let mut acked = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let text = format!("gw-{i}");
                i += 1;
                let params = CallToolRequestParams::new("echo".to_string())
                    .with_arguments(args(json!({ "text": text })));
                client.call_tool(params).await.unwrap();
                acked.push(text);
                tokio::time::sleep(PACE / 10).await;
            }
            client.cancel().await.unwrap();
            acked
        }
    });

    // Queries all the while, each one succeeding with each event once; the trail only grows.
    let runs = Arc::new(AtomicUsize::new(0));
    let queries = tokio::spawn({
        let stop = stop.clone();
        let config = config.clone();
        let runs = runs.clone();
        async move {
            let mut last = 0;
            while !stop.load(Ordering::Relaxed) {
                let events = query(&config).await;
                let ids: HashSet<&str> = events
                    .iter()
                    .map(|e| e["event_id"].as_str().unwrap())
                    .collect();
                assert_eq!(ids.len(), events.len(), "a query saw an event twice");
                assert!(
                    events.len() >= last,
                    "a query saw fewer events than the one before"
                );
                last = events.len();
                runs.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    let wait_for_queries = |n: usize| {
        let runs = runs.clone();
        async move {
            let until = Instant::now() + Duration::from_secs(30);
            while runs.load(Ordering::Relaxed) < n {
                assert!(Instant::now() < until, "queries stalled");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    wait_for_queries(2).await;

    // The index holder gets a burst of 200 calls and is killed after 80 answers, with calls
    // in flight, while the others write.
    let mut burst = Vec::new();
    for i in 0..200 {
        let text = format!("w1-{i}");
        burst.extend(call_line(json!(text), "echo", json!({ "text": text })));
    }
    victim.send(&burst).await;
    let mut victim_acked = HashSet::new();
    while victim_acked.len() < 80 {
        let v = victim.recv_json().await;
        if let Some(id) = v["id"].as_str() {
            victim_acked.insert(id.to_string());
        }
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(victim_pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    // Answers already in the pipe were delivered: they count as acknowledged.
    while let Some(line) = victim.recv().await {
        if let Some(id) = serde_json::from_slice::<Value>(&line)
            .ok()
            .and_then(|v| v["id"].as_str().map(str::to_string))
        {
            victim_acked.insert(id);
        }
    }
    let _ = victim.finish().await;
    let killed_at = Instant::now();
    let queries_at_kill = runs.load(Ordering::Relaxed);

    // A running writer takes the index over (queries may hold it in between).
    let takeover = loop {
        if let Some(pid) = lock_holder(&store.join("index.lock"))
            && pids.contains(&pid)
        {
            break killed_at.elapsed();
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(20),
            "no writer took the index over"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let queries_before_kill = runs.load(Ordering::Relaxed);
    // The others go on writing, and queries go on, a while after the takeover; then stop.
    wait_for_queries(runs.load(Ordering::Relaxed) + 3).await;
    stop.store(true, Ordering::Relaxed);
    let w2 = w2.await.unwrap();
    let w3 = w3.await.unwrap();
    let gw = gw.await.unwrap();
    queries.await.unwrap();
    let runs = runs.load(Ordering::Relaxed);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(gateway.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(
        gateway.wait().unwrap().success(),
        "the gateway drains cleanly"
    );

    // Every event of every acknowledged call, exactly once: through the index...
    let events = query(&config).await;
    let ids: HashSet<&str> = events
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), events.len(), "each event once");
    let calls: Vec<Value> = events
        .iter()
        .filter(|e| e["action"] == "tools/call")
        .cloned()
        .collect();
    // The killed wrapper's unanswered calls may have an access event without an end.
    let answered: Vec<Value> = calls
        .iter()
        .filter(|e| {
            let request = e["metadata"]["request_id"].as_str().unwrap_or("");
            let cut_short = e["event_type"] == "tool_access"
                && e["linked_event_id"].is_null()
                && request.starts_with("w1-")
                && !victim_acked.contains(request);
            !cut_short
        })
        .cloned()
        .collect();
    let pairs = pairs(&answered);
    let mut by_marker: HashMap<&str, usize> = HashMap::new();
    for (access, _) in &pairs {
        *by_marker.entry(marker(access).unwrap()).or_default() += 1;
    }
    let acked: Vec<String> = victim_acked
        .iter()
        .cloned()
        .chain(w2.iter().cloned())
        .chain(w3.iter().cloned())
        .chain(gw.iter().cloned())
        .collect();
    for text in &acked {
        assert_eq!(
            by_marker.get(text.as_str()),
            Some(&1),
            "acknowledged call {text}: one access and one end"
        );
    }
    let sessions: HashSet<&str> = pairs
        .iter()
        .map(|(a, _)| a["session_id"].as_str().unwrap())
        .collect();
    assert_eq!(sessions.len(), 4, "four writers");
    // ...and straight from the journals, the same events.
    let (direct, damaged) = newest_from_journals(&store, usize::MAX, &Filter::default()).unwrap();
    assert!(damaged.is_empty(), "{damaged:?}");
    let direct: HashSet<String> = direct.iter().map(|e| e.event_id.to_string()).collect();
    assert_eq!(direct.len(), ids.len());
    assert!(ids.iter().all(|id| direct.contains(*id)));
    eprintln!(
        "multi-writer: {} events, {} acknowledged calls (w1 {} before SIGKILL, w2 {}, w3 {}, gateway {}), {runs} queries during the run ({queries_at_kill} before the kill, {} more by the takeover), index taken over {:?} after the kill, {:?} in all",
        events.len(),
        acked.len(),
        victim_acked.len(),
        w2.len(),
        w3.len(),
        gw.len(),
        queries_before_kill - queries_at_kill,
        takeover,
        started.elapsed()
    );
}
