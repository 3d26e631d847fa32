//! The hash chain of a journal: what makes the audit trail tamper-evident.
//!
//! # Contract (record formats 2 and 3, segments `MCPAJNL2` and `MCPAJNL3`)
//!
//! Every record payload in a format-2 segment is one JSON object in canonical form: RFC 8785
//! (JSON Canonicalization Scheme: members sorted by the UTF-16 code units of their names at
//! every level, no whitespace, minimal string escapes) with numbers kept as written, so that
//! ids and arguments stay digit for digit ([`super::canonical`] says why and where this is
//! exactly RFC 8785: every record whose numbers are in shortest form). It holds the
//! event's members (README "Event JSON") plus two chain members:
//!
//! | member          | value                                                             |
//! |-----------------|-------------------------------------------------------------------|
//! | `seq`           | the record's position in its journal: 0, 1, 2, … (no gaps)        |
//! | `previous_hash` | `event_hash` of record `seq - 1` (64 lowercase hex); `null` at 0  |
//!
//! and `event_hash` (not stored; derived) = SHA-256 of the record's stored bytes, which are
//! exactly the canonical bytes. So the hash covers exactly what is stored, nothing else:
//! format 3 stores some fields encrypted (issue 9 item 7, [`super::personal`]) and destroying
//! a key then changes no hash. Recomputing: `sha256(JCS(record))` equals
//! `sha256(stored bytes)`, because the stored bytes are already canonical (checked by the tests against an independent
//! RFC 8785 implementation, for records whose numbers are in shortest form); a third party can check either way.
//!
//! This is the construction of SEP-3004 (the open MCP proposal for tamper-evident audit
//! records, modelcontextprotocol PR 3004): canonical sorted-key JSON, SHA-256, the preimage
//! is the record less `event_hash` and includes its own `previous_hash`, `previous_hash` is
//! `null` for the first record of a chain, hex digests. What differs, and what an export to
//! SEP-3004 maps: our field names are the README's (`user_id` → `principal_id`, `timestamp`
//! (microseconds) → `occurred_at` (milliseconds), `result` → `outcome`), we add `seq` (SEP
//! threading has no sequence numbers; ours name a deleted record's position), and our records
//! keep numbers (RFC 8785 has a number form; SEP-3004 v1 wants numbers as strings). An export
//! re-hashes each record into the SEP shape in one pass, carrying our `event_hash` along as
//! the evidence it was derived from.
//!
//! The chain runs per journal (one writer per journal: no coordination), across its segments;
//! a new journal (a new process) starts a new chain at `seq` 0.

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::canonical::{CanonError, canonicalize_with};
use super::canonical_ser::Members;

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// Why a payload could not be sealed into a chained record.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The payload is not a JSON object, or has a member twice.
    #[error("an audit record must be a JSON object with unique member names: {0}")]
    NotAnObject(super::canonical::CanonError),
    /// The payload already has a member the chain sets.
    #[error("an audit record must not carry the chain member {0:?} itself")]
    Reserved(String),
}

/// The last record of a chain: its sequence number and hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// The record's `seq`.
    pub seq: u64,
    /// Its `event_hash`.
    pub hash: Hash,
}

/// The chain state of a journal being appended to: what the next record links to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Chain {
    /// The last sealed record, `None` before the first.
    pub head: Option<Head>,
}

impl Chain {
    /// The `seq` the next record gets.
    pub fn next_seq(&self) -> u64 {
        self.head.map_or(0, |h| h.seq + 1)
    }

    /// Turns an event's JSON into the canonical bytes of the next record (`seq` and
    /// `previous_hash` added) and advances the chain to it. One pass over the JSON (no
    /// `Value` tree) and one SHA-256 per event, in the audit writer's thread.
    pub fn seal(&mut self, payload: &[u8]) -> Result<Vec<u8>, SealError> {
        self.seal_with(|extra| canonicalize_with(payload, extra))
    }

    /// [`Self::seal`] of an object already in canonical form, kept as its members
    /// ([`super::canonical_ser`]): no parse, only the two chain members sorted in.
    pub fn seal_members(&mut self, members: &Members) -> Result<Vec<u8>, SealError> {
        self.seal_with(|extra| members.emit_with(extra))
    }

    fn seal_with(
        &mut self,
        canonical: impl FnOnce(&[(&str, &[u8])]) -> Result<Vec<u8>, CanonError>,
    ) -> Result<Vec<u8>, SealError> {
        let seq = self.next_seq().to_string();
        let previous = match self.head {
            Some(h) => format!("\"{}\"", hex(&h.hash)),
            None => "null".to_string(),
        };
        let bytes = canonical(&[
            ("previous_hash", previous.as_bytes()),
            ("seq", seq.as_bytes()),
        ])
        .map_err(|e| match e {
            CanonError::Duplicate(name) if name == "seq" || name == "previous_hash" => {
                SealError::Reserved(name)
            }
            e => SealError::NotAnObject(e),
        })?;
        self.head = Some(Head {
            seq: self.next_seq(),
            hash: digest(&bytes),
        });
        Ok(bytes)
    }
}

/// SHA-256 of a record's stored bytes: its `event_hash`.
pub fn digest(bytes: &[u8]) -> Hash {
    Sha256::digest(bytes).into()
}

/// The lowercase hex digits.
const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Lowercase hex, the digests' text form (as in SEP-3004).
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
}

/// `hash` as its 64 lowercase hex digits, on the stack.
pub fn hex_digits(hash: &Hash) -> [u8; 64] {
    let mut out = [0u8; 64];
    for (pair, b) in out.chunks_exact_mut(2).zip(hash) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 15)];
    }
    out
}

/// Reads a 64-digit lowercase hex digest back.
pub fn parse_hex(text: &str) -> Option<Hash> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

/// The chain members of a stored record, read without decoding the rest of the event (the
/// strings borrowed from the record: canonical digests, ids and times have no escapes).
#[derive(Debug, Deserialize)]
pub struct Link<'a> {
    /// `seq`, absent in an unchained (legacy) record.
    #[serde(default)]
    pub seq: Option<u64>,
    /// `previous_hash`: absent (`None`), `null` (`Some(None)`) or a digest.
    #[serde(default, borrow, deserialize_with = "present")]
    pub previous_hash: Option<Option<&'a str>>,
    /// The event's id, for the index check.
    #[serde(default, borrow)]
    pub event_id: Option<&'a str>,
    /// The event's time, for exports by time range.
    #[serde(default, borrow)]
    pub timestamp: Option<&'a str>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<&'de str>>, D::Error> {
    Option::<&'de str>::deserialize(d).map(Some)
}

impl<'a> Link<'a> {
    /// Reads the chain members of a record; `None` if it is not a JSON object of that shape.
    pub fn of(payload: &'a [u8]) -> Option<Link<'a>> {
        serde_json::from_slice(payload).ok()
    }

    /// Whether `previous_hash` is what a record after `prev` must carry.
    pub fn follows(&self, prev: Option<&Hash>) -> bool {
        match (&self.previous_hash, prev) {
            (Some(None), None) => true,
            // Equal to the one lowercase spelling `parse_hex` accepts: spelled out without a
            // branch per digit (parsing each record's digit by digit, half of them
            // mispredicted, was a tenth of `verify`).
            (Some(Some(text)), Some(h)) => text.as_bytes() == hex_digits(h),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::event::{AuditEvent, EventIds, EventType, HttpContext, Metadata};
    use crate::audit::event::{Outcome, RiskLevel};
    use crate::jsonrpc::RequestId;
    use crate::mcp::Era;
    use serde_json::value::RawValue;

    fn event(arguments: &str, user: &str) -> Vec<u8> {
        let (event_id, timestamp) = EventIds::default().next();
        serde_json::to_vec(&AuditEvent {
            event_id,
            timestamp,
            event_type: EventType::ToolAccess,
            user_id: user.into(),
            tool_name: Some("écho \u{1F600} \"quoted\"\n".into()),
            action: "tools/call".into(),
            result: Outcome::Initiated,
            metadata: Metadata {
                request_id: Some(RequestId::Int(-7)),
                protocol_era: Era::V2025,
                arguments: Some(RawValue::from_string(arguments.into()).unwrap()),
                execution_time_us: Some(123_456),
                risk_score: Some(40),
                risk_reasons: vec!["a\u{7f}\u{1}b".into()],
                http: Some(Box::new(HttpContext {
                    client_address: Some("127.0.0.1".into()),
                    roles: vec!["z".into(), "a".into()],
                    ..HttpContext::default()
                })),
                ..Metadata::default()
            },
            risk_level: RiskLevel::High,
            compliance_tags: vec!["gdpr".into()],
            session_id: "s".into(),
            upstream: "up".into(),
            linked_event_id: None,
        })
        .unwrap()
    }

    /// The RFC 8785 form of `bytes` by the other well-kept implementation (it sorts through
    /// its own UTF-16 key parsing), so that our output is checked by code that is not ours.
    fn independent_jcs(bytes: &[u8]) -> Vec<u8> {
        let value: serde_json::Value = serde_json::from_slice(bytes).unwrap();
        serde_json_canonicalizer::to_vec(&value).unwrap()
    }

    #[test]
    fn sealed_records_are_rfc8785_canonical_and_hash_their_stored_bytes() {
        let mut chain = Chain::default();
        let cases = [
            (
                r#"{ "b": [1, 2.5, 1000, -7], "a": {"é": true, "\u00e9x": null, "Z": "\u0007"} }"#,
                "alice",
            ),
            (
                r#"{"€":1,"\ud83d\ude00":2,"\u00e0":3,"a":4,"A":5,"":6}"#,
                "bob",
            ),
            ("[]", "ü"),
        ];
        let mut prev = None;
        for (seq, (arguments, user)) in cases.iter().enumerate() {
            let payload = event(arguments, user);
            let sealed = chain.seal(&payload).unwrap();
            assert_eq!(
                sealed,
                independent_jcs(&sealed),
                "{}",
                String::from_utf8_lossy(&sealed)
            );
            let head = chain.head.unwrap();
            assert_eq!(head.seq, seq as u64);
            assert_eq!(head.hash, digest(&sealed));
            let link = Link::of(&sealed).unwrap();
            assert_eq!(link.seq, Some(seq as u64));
            assert!(link.follows(prev.as_ref()));
            assert!(!link.follows(Some(&[0u8; 32])));
            // The event reads back as it was (the chain members are ignored by readers).
            let back: AuditEvent = serde_json::from_slice(&sealed).unwrap();
            let original: AuditEvent = serde_json::from_slice(&payload).unwrap();
            assert_eq!(back.event_id, original.event_id);
            assert_eq!(back.timestamp, original.timestamp);
            let args = |e: &AuditEvent| -> serde_json::Value {
                serde_json::from_str(e.metadata.arguments.as_ref().unwrap().get()).unwrap()
            };
            assert_eq!(args(&back), args(&original));
            prev = Some(head.hash);
        }
        // Numbers a client spelled otherwise keep their spelling (ids and arguments are kept
        // digit for digit); the record is canonical in every other respect.
        let sealed = chain
            .seal(&event(r#"{"n": 1.50, "big": 18446744073709551617}"#, "x"))
            .unwrap();
        let text = String::from_utf8(sealed).unwrap();
        assert!(
            text.contains(r#""arguments":{"big":18446744073709551617,"n":1.50}"#),
            "{text}"
        );
    }

    #[test]
    fn the_first_record_links_to_null_and_reserved_members_are_refused() {
        let mut chain = Chain::default();
        let sealed = chain.seal(br#"{"x":1}"#).unwrap();
        assert_eq!(sealed, br#"{"previous_hash":null,"seq":0,"x":1}"#);
        let second = chain.seal(br#"{"x":2}"#).unwrap();
        let expected = format!(
            r#"{{"previous_hash":"{}","seq":1,"x":2}}"#,
            hex(&digest(&sealed))
        );
        assert_eq!(String::from_utf8(second).unwrap(), expected);
        let before = chain;
        assert!(matches!(
            chain.seal(br#"{"seq":5}"#),
            Err(SealError::Reserved(ref name)) if name == "seq"
        ));
        assert!(matches!(chain.seal(b"[1]"), Err(SealError::NotAnObject(_))));
        assert_eq!(
            chain, before,
            "a refused payload does not advance the chain"
        );
    }

    #[test]
    fn the_sep_3004_known_answer_is_reproduced() {
        // The two-extension known-answer record of SEP-3004 (its Conformance section): our
        // canonicalization and digest give its published event_hash.
        let record = r#"{"tool_name":"export","principal_id":"aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa","previous_hash":null,"outcome":"deferred","occurred_at":"2026-06-06T12:00:00.000Z","extensions":{"runtime-security":{"severity":"high","quarantine_decision":"quarantine","policy_id":"example.org/runtime-drift@3","evidence_hash":"sha256:b2c547e2c8f17eafc72ef5c2d4d7b6b4d0f7437ab52bae573a9af14ff5e2d9be","drift_status":"confirmed"},"caller-governance":{"session_id":"55555555-5555-5555-5555-555555555555","purpose_declared":"reconcile June invoices","invoked_by_principal_id":null,"flagged":false}},"event_type":"tool_call","event_id":"99999999-9999-9999-9999-999999999999"}"#;
        let canonical = super::super::canonical::canonicalize(record.as_bytes()).unwrap();
        assert_eq!(
            hex(&digest(&canonical)),
            "f733fed9cc757165f810b778e4baba1f51a45504988e937707aaab4361b2f064"
        );
    }

    #[test]
    fn hex_round_trips_and_refuses_other_spellings() {
        let h = digest(b"x");
        assert_eq!(parse_hex(&hex(&h)), Some(h));
        assert_eq!(parse_hex(&hex(&h).to_uppercase()), None);
        assert_eq!(parse_hex("00"), None);
        assert_eq!(hex_digits(&h), hex(&h).as_bytes());
        // `follows` takes exactly the spelling `parse_hex` takes.
        fn follows(text: &str, prev: &Hash) -> bool {
            Link {
                seq: Some(1),
                previous_hash: Some(Some(text)),
                event_id: None,
                timestamp: None,
            }
            .follows(Some(prev))
        }
        let text = hex(&h);
        assert!(follows(&text, &h));
        assert!(!follows(&text.to_uppercase(), &h));
        assert!(!follows(&text[..63], &h));
        assert!(!follows(&format!("{text}0"), &h));
        let mut other = h;
        other[31] ^= 1;
        assert!(!follows(&text, &other));
    }
}
