//! A remote upstream behind a cookie-sticky load balancer (`tests/peers/sticky_remote.py`):
//! the cookies it sets are sent back on the session's later requests, as the official Python
//! SDK's client sends them; without them every request after `initialize` lands on another
//! server and gets 404 for the session (mcp-remote#168).

mod common;

use std::process::{Child, Stdio};

use common::call_line;
use serde_json::{Value, json};

struct Sticky {
    child: Child,
    url: String,
}

impl Drop for Sticky {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sticky(log: &std::path::Path) -> Sticky {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/sticky_remote.py");
    let mut child = std::process::Command::new("python3")
        .arg(script)
        .arg(log)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the sticky remote");
    let url = common::listening_url(&mut child);
    Sticky { child, url }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cookies_a_remote_sets_are_sent_back_on_its_sessions_requests() {
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("requests.ndjson");
    let remote = sticky(&log);
    let (_dir, config, mut client) = common::stdio_wrapper(&format!(
        "[upstream]\nname = \"remote\"\nurl = \"{}\"\n[audit]\nstore_dir = \"store\"\n",
        remote.url
    ));
    client.initialize().await;
    for id in 1..=3 {
        client
            .send(&call_line(json!(id), "echo", json!({"n": id})))
            .await;
        let answer: Value =
            serde_json::from_slice(&client.recv_response(&json!(id)).await).unwrap();
        assert_eq!(
            answer["result"]["content"][0]["text"],
            json!({"n": id}).to_string(),
            "{answer}"
        );
    }
    assert!(client.finish().await.success());
    let requests: Vec<Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(requests[0]["what"], "initialize");
    assert!(requests.len() >= 5, "{requests:?}");
    for r in &requests[1..] {
        assert_eq!(r["cookie"], "affinity=srv1", "{requests:?}");
    }
    let events = common::events_of(&config);
    let ends: Vec<&Value> = events
        .iter()
        .filter(|e| e["event_type"] == "tool_execution")
        .collect();
    assert_eq!(ends.len(), 3, "{events:#?}");
}
