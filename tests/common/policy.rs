//! Shared by the policy tests (policy.rs, confirm.rs, redaction.rs): rules, a card number,
//! and readers of the store's raw bytes.

use std::path::Path;

use super::{LineClient, TestStore, example_server};

pub const CARD: &str = "4111 1111 1111 1111";

pub const BLOCK_SHELL_IN_ECHO: &str = r#"
[[risk.rule]]
name = "shell in echo"
tools = ["echo"]
pointer = "/text"
detect = "shell_metacharacters"
level = "critical"
"#;

/// Every byte of the files under `dir` (journal segments, sled files, torn saves).
pub fn all_bytes(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(all_bytes(&path));
        } else if path.is_file() {
            // Sockets and pipes (a gateway's control socket) hold no stored bytes.
            out.extend(std::fs::read(&path).unwrap());
        }
    }
    out
}

pub fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// The proxy in front of the example server, with what reaches the server copied to a file.
pub fn spawn_recorded(store: &TestStore) -> (LineClient, std::path::PathBuf) {
    let received = store.dir.path().join("received.ndjson");
    let script = format!(
        "tee -a '{}' | '{}'",
        received.display(),
        example_server().display()
    );
    (
        LineClient::spawn(store.proxy_command(&["sh", "-c", &script])),
        received,
    )
}
