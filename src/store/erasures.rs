//! `verify`'s check that every erased user was erased by `erase`, on the record.
//!
//! A record whose personal fields are sealed ([`super::personal`]) names its user only by a
//! pseudonym (`"user_id":"subject:HEX"`, the same `HEX` as its `personal.subject`); the key
//! that opens it lives in `keys/`. `mcp-audit-proxy erase` destroys a key and records that
//! it did (a `configuration_change` event, `action` `audit/erase`, naming `subject:HEX`). A
//! key that is gone while no such event names its pseudonym was deleted some other way: by
//! whoever can write the store (the tool server runs as the proxy's own OS user), to wipe
//! who made those calls and with what. The records still verify (their skeleton is intact),
//! so without this check `events` would show them as lawfully erased (GDPR Art. 17) and
//! `verify` would call the store intact.

use std::collections::{HashMap, HashSet};

use memchr::memmem;

/// The pseudonyms seen while walking the journals.
#[derive(Debug, Default)]
pub(crate) struct Subjects {
    /// Pseudonym (`HEX`) → the records sealed under it.
    sealed: HashMap<String, u64>,
    /// The pseudonyms `audit/erase` events name.
    erased: HashSet<String>,
}

/// The `HEX` of a pseudonym: 32 lowercase hex digits.
const HEX_LEN: usize = 32;

fn is_hex(b: &[u8]) -> bool {
    b.len() == HEX_LEN && b.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

impl Subjects {
    /// Adds what another walk saw (another journal's).
    pub(crate) fn merge(&mut self, other: Subjects) {
        for (hex, n) in other.sealed {
            *self.sealed.entry(hex).or_default() += n;
        }
        self.erased.extend(other.erased);
    }

    /// Takes note of one record's payload (its canonical JSON: members sorted, so `user_id`
    /// is the last; a `"` inside a string is always escaped, so the byte patterns below are
    /// members, never text).
    pub(crate) fn see(&mut self, payload: &[u8]) {
        if let Some(hex) = sealed_under(payload) {
            *self.sealed.entry(hex).or_default() += 1;
        }
        if memmem::find(payload, b"\"action\":\"audit/erase\"").is_some() {
            self.erased.extend(named_by_erasure(payload));
        }
    }

    /// The findings, given the pseudonyms whose keys exist in `keys/`: one per pseudonym
    /// whose records cannot be opened and whose erasure is not recorded. `no_keys`: the store
    /// has no `keys/` folder at all (said once, before them).
    pub(crate) fn findings(&self, keys: &HashSet<String>, no_keys: bool) -> Vec<String> {
        let mut out: Vec<String> = self
            .sealed
            .iter()
            .filter(|(hex, _)| !keys.contains(*hex) && !self.erased.contains(*hex))
            .map(|(hex, n)| {
                format!(
                    "the key of subject:{hex} is gone but no audit/erase event names it: {n} record(s) sealed with it can no longer be read (their user and arguments), and nothing records why (a key file was deleted outside `mcp-audit-proxy erase`, or a backup of keys/ is incomplete)"
                )
            })
            .collect();
        out.sort();
        if no_keys && !out.is_empty() {
            out.insert(
                0,
                "the store has no keys/ folder while records are sealed: every key is gone (if this is a copy made without keys/, verify the original store)".into(),
            );
        }
        out
    }
}

/// The pseudonym a record is sealed under: its top-level `user_id` (the last member) is
/// `subject:HEX` and its `personal` member names the same `HEX`.
fn sealed_under(payload: &[u8]) -> Option<String> {
    const USER: &[u8] = b",\"user_id\":\"subject:";
    let at = memmem::rfind(payload, USER)? + USER.len();
    let hex = payload.get(at..at + HEX_LEN)?;
    // The last member: nothing but the string's end and the object's after it.
    if !is_hex(hex) || payload.get(at + HEX_LEN..)? != b"\"}" {
        return None;
    }
    let mut needle = b"\"subject\":\"".to_vec();
    needle.extend_from_slice(hex);
    needle.extend_from_slice(b"\"}");
    memmem::find(&payload[..at], &needle)?;
    Some(String::from_utf8_lossy(hex).into_owned())
}

/// The pseudonyms an `audit/erase` event's `metadata.changes` name (`subject:HEX`). Only the
/// `configuration_change` that `erase` wrote in this store counts: an imported event
/// (`metadata.imported`) was written elsewhere, by whoever wrote the file, and cannot attest
/// that a key of this store was destroyed (one forged line would make a deleted key look
/// lawfully erased).
fn named_by_erasure(payload: &[u8]) -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct Record {
        action: String,
        event_type: String,
        #[serde(default)]
        metadata: Metadata,
    }
    #[derive(Default, serde::Deserialize)]
    struct Metadata {
        #[serde(default)]
        changes: Vec<String>,
        #[serde(default)]
        imported: Option<serde::de::IgnoredAny>,
    }
    let Ok(record) = serde_json::from_slice::<Record>(payload) else {
        return Vec::new();
    };
    if record.action != "audit/erase"
        || record.event_type != "configuration_change"
        || record.metadata.imported.is_some()
    {
        return Vec::new();
    }
    named_in(&record.metadata.changes)
}

/// The pseudonyms (`HEX`) that the decoded event `e` attests were erased in this store, by
/// the rule of [`named_by_erasure`]: empty unless `e` is an `audit/erase`
/// `configuration_change` written here (not imported).
pub(crate) fn erased_by(e: &crate::audit::event::AuditEvent) -> Vec<String> {
    if e.action != "audit/erase"
        || e.event_type != crate::audit::event::EventType::ConfigurationChange
        || e.metadata.imported.is_some()
    {
        return Vec::new();
    }
    named_in(&e.metadata.changes)
}

/// Every `subject:HEX` in an erasure's `changes`.
fn named_in(changes: &[String]) -> Vec<String> {
    changes
        .iter()
        .flat_map(|change| {
            change.match_indices("subject:").filter_map(|(i, m)| {
                let hex = change.get(i + m.len()..i + m.len() + HEX_LEN)?;
                is_hex(hex.as_bytes()).then(|| hex.to_string())
            })
        })
        .collect()
}

/// The `HEX` of a record's pseudonymous `user_id` (`subject:HEX`), if it is one.
pub(crate) fn subject_hex(user_id: &str) -> Option<&str> {
    user_id
        .strip_prefix("subject:")
        .filter(|hex| is_hex(hex.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "cc38b51f691a7fc5cf472581d92ffa52";
    const B: &str = "0123456789abcdef0123456789abcdef";

    fn sealed(hex: &str) -> String {
        format!(
            r#"{{"action":"tools/call","metadata":{{"arguments":{{"user_id":"subject:{B}","subject":"{B}"}}}},"personal":{{"alg":"XChaCha20-Poly1305","ciphertext":"x","nonce":"y","subject":"{hex}"}},"previous_hash":null,"user_id":"subject:{hex}"}}"#
        )
    }

    fn erasure(hex: &str) -> String {
        format!(
            r#"{{"action":"audit/erase","event_type":"configuration_change","metadata":{{"changes":["erased the personal data of subject:{hex} (GDPR Art. 17): its key was destroyed; 3 stored event(s) keep only their skeleton"]}},"user_id":"subject:{B}"}}"#
        )
    }

    #[test]
    fn a_key_gone_without_its_erasure_is_a_finding_and_with_it_is_not() {
        let mut s = Subjects::default();
        s.see(sealed(A).as_bytes());
        s.see(sealed(A).as_bytes());
        // A user named like a pseudonym in a store that does not seal: not sealed.
        s.see(format!(r#"{{"action":"tools/call","user_id":"subject:{B}"}}"#).as_bytes());
        let findings = s.findings(&HashSet::new(), false);
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert!(
            findings[0].contains(&format!("subject:{A}")) && findings[0].contains("2 record(s)"),
            "{findings:?}"
        );
        assert!(
            s.findings(&HashSet::from([A.to_string()]), false)
                .is_empty()
        );
        s.see(erasure(A).as_bytes());
        assert!(s.findings(&HashSet::new(), false).is_empty());
    }

    #[test]
    fn only_the_records_own_members_count() {
        // The pseudonym inside the arguments (in clear) is not the record's.
        assert_eq!(sealed_under(sealed(A).as_bytes()), Some(A.to_string()));
        // An erasure named only in another event's text is not an erasure.
        let mut s = Subjects::default();
        s.see(sealed(A).as_bytes());
        s.see(
            format!(r#"{{"action":"tools/call","metadata":{{"changes":["audit/erase subject:{A}"]}},"user_id":"bob"}}"#)
                .as_bytes(),
        );
        assert_eq!(s.findings(&HashSet::new(), false).len(), 1);
        assert_eq!(s.findings(&HashSet::new(), true).len(), 2);
    }

    /// helper-90 H1: one imported line with `action` `audit/erase` made a key deleted
    /// outside `erase` look lawfully erased (`verify` intact, GDPR Art. 17 compliant).
    #[test]
    fn an_imported_or_mistyped_erasure_does_not_count() {
        let mut s = Subjects::default();
        s.see(sealed(A).as_bytes());
        let imported = erasure(A).replace(
            r#""metadata":{"#,
            r#""metadata":{"imported":{"at":"2026-12-07T00:00:00Z","from":"x.jsonl"},"#,
        );
        assert!(imported.contains("imported"), "{imported}");
        s.see(imported.as_bytes());
        let other_type = erasure(A).replace("configuration_change", "tool_access");
        s.see(other_type.as_bytes());
        assert_eq!(s.findings(&HashSet::new(), false).len(), 1);
        s.see(erasure(A).as_bytes());
        assert!(s.findings(&HashSet::new(), false).is_empty());
    }
}
