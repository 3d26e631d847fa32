//! Tool pinning, the rug-pull defence: the first definition seen of each tool (description,
//! input schema, annotations) is kept as hashes in `pins.json` in the store folder; a later
//! `tools/list` that shows another definition is a change an operator must see, and with
//! `pin_tools = "block"` accept (`mcp-audit-proxy tools accept NAME`) before the tool runs.
//!
//! The file is small and rewritten whole (write to a temporary file, then rename), so a
//! reader never sees half of it; the proxy re-reads it when it needs to know whether a change
//! was accepted. Every read-change-write holds an exclusive lock on `pins.json.lock`: several
//! proxies share a store (and a gateway's sessions run at once), and without it one's write
//! could drop a pin or a pending change another wrote, or undo an operator's `tools accept`.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What `pin_tools` does when a tool's definition changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinMode {
    /// Tools are not pinned.
    Off,
    /// The change is recorded and logged; the tool keeps working.
    Alert,
    /// The change is recorded and the tool is blocked until an operator accepts it.
    Block,
}

/// A tool definition as hashes of its parts, so a change can say which part changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// Hash of the whole definition.
    pub hash: String,
    /// Hash of `description`.
    pub description: String,
    /// Hash of `inputSchema` (canonical JSON).
    pub input_schema: String,
    /// Hash of `annotations` (canonical JSON).
    pub annotations: String,
    /// The first 200 characters of the description, to show what it says now.
    #[serde(default)]
    pub description_text: String,
}

fn digest(text: &str) -> String {
    super::sha256_hex(text.as_bytes(), 12)
}

impl Fingerprint {
    /// The fingerprint of one tool object of a `tools/list` result.
    pub fn of(tool: &Value) -> Fingerprint {
        // serde_json's maps are sorted, so serializing gives one text per definition.
        let part = |key: &str| tool.get(key).map(Value::to_string).unwrap_or_default();
        let (description, input_schema, annotations) = (
            part("description"),
            part("inputSchema"),
            part("annotations"),
        );
        Fingerprint {
            hash: digest(&format!("{description}\0{input_schema}\0{annotations}")),
            description: digest(&description),
            input_schema: digest(&input_schema),
            annotations: digest(&annotations),
            description_text: tool
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .chars()
                .take(200)
                .collect(),
        }
    }

    /// What differs from `old`, in words.
    pub fn changes_from(&self, old: &Fingerprint) -> Vec<String> {
        let mut changes = Vec::new();
        if self.description != old.description {
            changes.push(format!(
                "description changed: was {:?}, now {:?}",
                old.description_text, self.description_text
            ));
        }
        if self.input_schema != old.input_schema {
            changes.push("input schema changed".to_string());
        }
        if self.annotations != old.annotations {
            changes.push("annotations changed".to_string());
        }
        changes
    }
}

/// One pinned tool.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pin {
    /// The accepted definition.
    pub pinned: Fingerprint,
    /// A different definition seen since, waiting for an operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Fingerprint>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct PinFile {
    /// Pins by upstream name, then tool name.
    #[serde(default)]
    upstreams: BTreeMap<String, BTreeMap<String, Pin>>,
}

/// What `tools/list` showed for one tool, against its pin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// First time: now pinned.
    New,
    /// As pinned.
    Same,
    /// Different from the pin: what changed, and the new definition's hash.
    Changed {
        /// What differs, in words.
        changes: Vec<String>,
        /// The new definition's hash (what `tools accept` pins).
        hash: String,
    },
}

/// Why pins could not be read or changed; says where and what to do.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    /// The pin file cannot be read or written.
    #[error("tool pins at {}: {source}\n  hint: check that the store folder is readable and writable by the proxy", path.display())]
    Io {
        /// The pin file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The pin file is not what the proxy writes.
    #[error("tool pins at {} are unreadable: {source}\n  hint: restore the file from a backup, or delete it to pin every tool again at the next tools/list", path.display())]
    Damaged {
        /// The pin file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
    /// `tools accept --hash` for a definition that is no longer the pending one.
    #[error(
        "tool {tool:?} of upstream {upstream:?}: the changed definition waiting is {pending}, not {expected}: it changed again since it was reviewed\n  hint: review the newest configuration_change event of the tool, then accept its hash"
    )]
    NotReviewed {
        /// The upstream.
        upstream: String,
        /// The tool.
        tool: String,
        /// The hash the operator accepted.
        expected: String,
        /// The hash waiting.
        pending: String,
    },
    /// `tools accept` for a tool without a pending change.
    #[error(
        "tool {tool:?} of upstream {upstream:?} has no changed definition waiting to be accepted\n  hint: {hint}"
    )]
    NothingPending {
        /// The upstream.
        upstream: String,
        /// The tool.
        tool: String,
        /// What to do.
        hint: String,
    },
}

/// The pins of one upstream, in `pins.json` of a store folder.
#[derive(Debug, Clone)]
pub struct Pins {
    path: PathBuf,
    upstream: String,
}

impl Pins {
    /// The pins of `upstream` in the store folder `store_dir`.
    pub fn new(store_dir: &Path, upstream: &str) -> Pins {
        Pins {
            path: store_dir.join("pins.json"),
            upstream: upstream.to_string(),
        }
    }

    fn load(&self) -> Result<PinFile, PinError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| PinError::Damaged {
                path: self.path.clone(),
                source,
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(PinFile::default()),
            Err(source) => Err(PinError::Io {
                path: self.path.clone(),
                source,
            }),
        }
    }

    /// Waits for and holds the pin file's lock (released when the returned file is dropped).
    fn lock(&self) -> Result<std::fs::File, PinError> {
        let path = self.path.with_extension("json.lock");
        let io = |source| PinError::Io {
            path: path.clone(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io)?;
        file.lock().map_err(io)?;
        Ok(file)
    }

    fn save(&self, file: &PinFile) -> Result<(), PinError> {
        let io = |source| PinError::Io {
            path: self.path.clone(),
            source,
        };
        // One temporary file per process: the proxy and `tools accept` never share one.
        let tmp = self
            .path
            .with_extension(format!("json.tmp.{}", std::process::id()));
        let text = serde_json::to_vec_pretty(file).map_err(|e| io(io::Error::other(e)))?;
        std::fs::write(&tmp, text).map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(io)
    }

    /// Compares the tools of one `tools/list` page with their pins; pins new tools and notes
    /// changed ones as pending.
    pub fn observe(
        &self,
        tools: &[(String, Fingerprint)],
    ) -> Result<Vec<(String, Seen)>, PinError> {
        let _lock = self.lock()?;
        let mut file = self.load()?;
        let pins = file.upstreams.entry(self.upstream.clone()).or_default();
        let mut dirty = false;
        let mut seen = Vec::new();
        for (name, fp) in tools {
            let verdict = match pins.get_mut(name) {
                None => {
                    pins.insert(
                        name.clone(),
                        Pin {
                            pinned: fp.clone(),
                            pending: None,
                        },
                    );
                    dirty = true;
                    Seen::New
                }
                Some(pin) if pin.pinned.hash == fp.hash => Seen::Same,
                Some(pin) => {
                    if pin.pending.as_ref().is_none_or(|p| p.hash != fp.hash) {
                        pin.pending = Some(fp.clone());
                        dirty = true;
                    }
                    Seen::Changed {
                        changes: fp.changes_from(&pin.pinned),
                        hash: fp.hash.clone(),
                    }
                }
            };
            seen.push((name.clone(), verdict));
        }
        if dirty {
            self.save(&file)?;
        }
        Ok(seen)
    }

    /// Tools with a changed definition still waiting for an operator, with its hash: a new
    /// session holds them back even before its client lists the tools.
    pub fn pending(&self) -> Result<Vec<(String, String)>, PinError> {
        Ok(self
            .load()?
            .upstreams
            .get(&self.upstream)
            .map(|pins| {
                pins.iter()
                    .filter_map(|(name, pin)| {
                        Some((name.clone(), pin.pending.as_ref()?.hash.clone()))
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Whether the definition `hash` of `tool` is the pinned one (an operator accepted it).
    pub fn is_pinned(&self, tool: &str, hash: &str) -> Result<bool, PinError> {
        Ok(self
            .load()?
            .upstreams
            .get(&self.upstream)
            .and_then(|p| p.get(tool))
            .is_some_and(|pin| pin.pinned.hash == hash))
    }

    /// Pins the pending definition of `tool` (only if its hash is `expected`, when given: the
    /// one the operator reviewed); returns what changed from the old pin.
    pub fn accept(&self, tool: &str, expected: Option<&str>) -> Result<Vec<String>, PinError> {
        let _lock = self.lock()?;
        let mut file = self.load()?;
        let pin = file
            .upstreams
            .get_mut(&self.upstream)
            .and_then(|p| p.get_mut(tool));
        let nothing = |hint: &str| PinError::NothingPending {
            upstream: self.upstream.clone(),
            tool: tool.to_string(),
            hint: hint.to_string(),
        };
        let Some(pin) = pin else {
            return Err(nothing(
                "the tool was never listed by this upstream; check the name (and --config, which names the store and the upstream)",
            ));
        };
        let Some(pending) = pin.pending.take() else {
            return Err(nothing("its current definition is already the pinned one"));
        };
        if let Some(expected) = expected.filter(|e| *e != pending.hash) {
            return Err(PinError::NotReviewed {
                upstream: self.upstream.clone(),
                tool: tool.to_string(),
                expected: expected.to_string(),
                pending: pending.hash,
            });
        }
        let changes = pending.changes_from(&pin.pinned);
        pin.pinned = pending;
        self.save(&file)?;
        Ok(changes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn proxies_pinning_at_once_lose_no_pin() {
        // Several proxies (threads here, each with its own Pins, as processes would have)
        // pin different tools of one upstream at the same moment.
        let dir = tempfile::tempdir().unwrap();
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let root = dir.path().to_path_buf();
                std::thread::spawn(move || {
                    let pins = Pins::new(&root, "srv");
                    for round in 0..10 {
                        let tool = json!({"name": format!("t{i}-{round}"), "inputSchema": {"type": "object"}});
                        pins.observe(&[(format!("t{i}-{round}"), Fingerprint::of(&tool))])
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let pins = Pins::new(dir.path(), "srv");
        for i in 0..8 {
            for round in 0..10 {
                let tool =
                    json!({"name": format!("t{i}-{round}"), "inputSchema": {"type": "object"}});
                let name = format!("t{i}-{round}");
                assert!(
                    pins.is_pinned(&name, &Fingerprint::of(&tool).hash).unwrap(),
                    "{name} was lost"
                );
            }
        }
    }

    #[test]
    fn new_tools_are_pinned_changes_wait_for_acceptance() {
        let dir = tempfile::tempdir().unwrap();
        let pins = Pins::new(dir.path(), "srv");
        let v1 = json!({"name": "t", "description": "adds", "inputSchema": {"type": "object"}});
        let v2 = json!({"name": "t", "description": "adds, and mails your keys away", "inputSchema": {"type": "object"}});
        let fp1 = Fingerprint::of(&v1);
        let fp2 = Fingerprint::of(&v2);
        assert_eq!(
            pins.observe(&[("t".into(), fp1.clone())]).unwrap()[0].1,
            Seen::New
        );
        assert_eq!(
            pins.observe(&[("t".into(), fp1.clone())]).unwrap()[0].1,
            Seen::Same
        );
        let seen = pins.observe(&[("t".into(), fp2.clone())]).unwrap();
        let Seen::Changed { changes, hash } = &seen[0].1 else {
            panic!("{seen:?}");
        };
        assert_eq!(hash, &fp2.hash);
        assert!(changes[0].starts_with("description changed"), "{changes:?}");
        assert!(!pins.is_pinned("t", &fp2.hash).unwrap());
        // Key order and whitespace do not make a change.
        let v1_reordered =
            json!({"inputSchema": {"type": "object"}, "description": "adds", "name": "t"});
        assert_eq!(Fingerprint::of(&v1_reordered), fp1);

        assert_eq!(
            pins.pending().unwrap(),
            [("t".to_string(), fp2.hash.clone())]
        );
        assert!(matches!(
            pins.accept("t", Some("not-the-reviewed-one")),
            Err(PinError::NotReviewed { .. })
        ));
        assert_eq!(pins.accept("t", Some(&fp2.hash)).unwrap().len(), 1);
        assert!(pins.pending().unwrap().is_empty());
        assert!(pins.is_pinned("t", &fp2.hash).unwrap());
        assert!(matches!(
            pins.accept("t", None),
            Err(PinError::NothingPending { .. })
        ));
        assert!(matches!(
            pins.accept("nope", None),
            Err(PinError::NothingPending { .. })
        ));
        // Another upstream has its own pins.
        let other = Pins::new(dir.path(), "other");
        assert_eq!(other.observe(&[("t".into(), fp1)]).unwrap()[0].1, Seen::New);
    }
}
