//! A bounded trail: what an event stores of a call's arguments and error texts is capped
//! (`audit.max_stored_argument_bytes`), so that a 5 MiB argument or a server's megabyte of
//! error text cannot bloat the store (other gateways have been brought down by their own
//! audit tables). What is cut stays provable: each cut value is replaced by its first bytes
//! and listed in `metadata.truncated` with its JSON pointer, its length and its SHA-256, so
//! the value the client sent (or the server answered) can still be matched against the trail.
//!
//! Arguments keep their shape: the longest strings are shortened first (all of them to one
//! common length, the largest that brings the arguments under the cap), so the keys, the
//! short values and the start of every long one stay readable. Only when the shape itself is
//! over the cap (say, a hundred thousand small array items) are the arguments dropped whole,
//! listed as the pointer `/metadata/arguments`. Lengths and hashes are of the text as it would
//! have been stored, that is after the policy replaced sensitive data: a hash of a raw secret
//! would let anyone confirm a guess at it.

use std::borrow::Cow;

use serde_json::Value;
use serde_json::value::RawValue;

use super::event::{AuditEvent, Truncation};
use crate::jsonrpc::RequestId;
use crate::policy::sha256_hex;

/// The least a cut string keeps, in bytes: enough to tell what it was.
const MIN_KEPT: usize = 16;

/// What an event stores of a name a peer chose (tool name, `clientInfo` and `serverInfo` as
/// `user_agent` and `tool_version`, protocol version, string request id), in bytes: MCP tool
/// names are 1 to 128 characters (2025-11-25, "Tool names"), and every event of a session
/// repeats its `clientInfo`, so a client sending megabytes of it would otherwise multiply
/// them into every event.
const NAME_MAX: usize = 1024;

/// `event` with its stored arguments within `max` bytes, its names within [`NAME_MAX`] (or
/// `max`, if smaller) and each of its texts (error messages, reasons, risk reasons, changes,
/// input requests, content types, decision, confirmation) within `max`, or `None` when they
/// already are (the common case costs a few length checks).
pub fn bound(event: &AuditEvent, max: usize) -> Option<AuditEvent> {
    let names = NAME_MAX.min(max);
    let m = &event.metadata;
    let long_args = m.arguments.as_ref().is_some_and(|a| a.get().len() > max);
    let long_answers = m
        .input_responses
        .as_ref()
        .is_some_and(|a| a.get().len() > max);
    let long = |t: &Option<String>, cap: usize| t.as_ref().is_some_and(|t| t.len() > cap);
    let long_names = long(&event.tool_name, names)
        || long(&m.user_agent, names)
        || long(&m.tool_version, names)
        || long(&m.protocol_version, names)
        || match &m.request_id {
            Some(RequestId::Str(s)) => s.len() > names,
            // `1.000…` (the id 1 to every SDK) can be megabytes long: its text counts.
            Some(RequestId::Num(n)) => n.text().len() > names,
            _ => false,
        };
    let long_texts = [
        &m.error_messages,
        &m.risk_reasons,
        &m.changes,
        &m.input_requests,
        &m.content_types,
    ]
    .iter()
    .any(|list| list.iter().any(|t| t.len() > max))
        || long(&m.reason, max)
        || long(&m.decision, max)
        || long(&m.confirmation, max);
    if !long_args && !long_answers && !long_names && !long_texts {
        return None;
    }
    let mut e = event.clone();
    if long_args && let Some(args) = e.metadata.arguments.take() {
        let (kept, cuts) = bound_arguments(args.get(), max, "/metadata/arguments");
        e.metadata.arguments = kept;
        e.metadata.truncated.extend(cuts);
    }
    if long_answers && let Some(answers) = e.metadata.input_responses.take() {
        let (kept, cuts) = bound_arguments(answers.get(), max, "/metadata/input_responses");
        e.metadata.input_responses = kept;
        e.metadata.truncated.extend(cuts);
    }
    let mut cuts = Vec::new();
    for (name, list) in [
        ("error_messages", &mut e.metadata.error_messages),
        ("risk_reasons", &mut e.metadata.risk_reasons),
        ("changes", &mut e.metadata.changes),
        ("input_requests", &mut e.metadata.input_requests),
        ("content_types", &mut e.metadata.content_types),
    ] {
        for (i, text) in list.iter_mut().enumerate() {
            cuts.extend(cut_text(text, max, &format!("/metadata/{name}/{i}")));
        }
    }
    let mut one = |text: &mut Option<String>, cap: usize, pointer: &str| {
        if let Some(text) = text.as_mut() {
            cuts.extend(cut_text(text, cap, pointer));
        }
    };
    one(&mut e.tool_name, names, "/tool_name");
    let m = &mut e.metadata;
    one(&mut m.user_agent, names, "/metadata/user_agent");
    one(&mut m.tool_version, names, "/metadata/tool_version");
    one(&mut m.protocol_version, names, "/metadata/protocol_version");
    one(&mut m.reason, max, "/metadata/reason");
    one(&mut m.decision, max, "/metadata/decision");
    one(&mut m.confirmation, max, "/metadata/confirmation");
    // A long number id is kept as the string of its first digits: a cut number would be
    // another number, and the proof (length, SHA-256 of the digits) names what it was.
    let long_id = match &m.request_id {
        Some(RequestId::Str(s)) if s.len() > names => Some(s.to_string()),
        Some(RequestId::Num(n)) if n.text().len() > names => Some(n.text().to_string()),
        _ => None,
    };
    if let Some(mut text) = long_id {
        cuts.extend(cut_text(&mut text, names, "/metadata/request_id"));
        m.request_id = Some(RequestId::Str(text.into()));
    }
    m.truncated.extend(cuts);
    Some(e)
}

/// Shortens `text` to at most `max` bytes (at a character boundary) and describes the cut.
fn cut_text(text: &mut String, max: usize, pointer: &str) -> Option<Truncation> {
    if text.len() <= max {
        return None;
    }
    let cut = Truncation {
        pointer: pointer.to_string(),
        bytes: text.len() as u64,
        sha256: sha256_hex(text.as_bytes(), 32),
    };
    text.truncate(floor_char_boundary(text, max));
    Some(cut)
}

/// Arguments (JSON text over `max` bytes, stored at `at`, a JSON pointer into the event)
/// brought under `max`: strings shortened, or, when that is not enough, dropped whole.
/// Returns what to store and the cuts made.
fn bound_arguments(text: &str, max: usize, at: &str) -> (Option<Box<RawValue>>, Vec<Truncation>) {
    let whole = || {
        vec![Truncation {
            pointer: at.to_string(),
            bytes: text.len() as u64,
            sha256: sha256_hex(text.as_bytes(), 32),
        }]
    };
    let Ok(value) = serde_json::from_str::<Value>(text) else {
        return (None, whole());
    };
    let mut strings = Vec::new();
    collect_strings(&value, &mut String::new(), &mut strings);
    // The common length `keep` (as JSON text) each longer string is cut to: the largest that
    // removes the excess, found by bisection over the strings' lengths; the result is checked
    // and the cut tightened if the re-encoding still leaves it over.
    let mut excess = text.len() - max;
    for _ in 0..4 {
        let longest = strings.iter().map(|s| s.1).max().unwrap_or(0);
        let removed = |keep: usize| -> usize {
            strings
                .iter()
                .map(|s| s.1.saturating_sub(keep))
                .sum::<usize>()
        };
        if longest <= MIN_KEPT || removed(MIN_KEPT) < excess {
            return (None, whole());
        }
        let (mut lo, mut hi) = (MIN_KEPT, longest);
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            if removed(mid) >= excess {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        let mut cuts = Vec::new();
        let mut trial = value.clone();
        for (pointer, len) in &strings {
            if *len > lo
                && let Some(Value::String(s)) = trial.pointer_mut(pointer)
            {
                cuts.push(Truncation {
                    pointer: format!("{at}{pointer}"),
                    bytes: s.len() as u64,
                    sha256: sha256_hex(s.as_bytes(), 32),
                });
                s.truncate(escaped_prefix(s, lo));
            }
        }
        let Ok(out) = serde_json::to_string(&trial) else {
            return (None, whole());
        };
        if out.len() <= max {
            return (RawValue::from_string(out).ok(), cuts);
        }
        // Escapes or the re-encoding left it over: cut more, from the original again.
        excess += out.len() - max;
    }
    (None, whole())
}

/// Every string in `value` (member names aside) with its RFC 6901 pointer and its length as
/// JSON text (escapes counted, quotes not).
fn collect_strings(value: &Value, at: &mut String, out: &mut Vec<(String, usize)>) {
    match value {
        Value::String(s) => out.push((at.clone(), escaped_len(s))),
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                let len = at.len();
                at.push('/');
                at.push_str(&i.to_string());
                collect_strings(v, at, out);
                at.truncate(len);
            }
        }
        Value::Object(members) => {
            for (k, v) in members {
                let len = at.len();
                at.push('/');
                at.push_str(&escape_token(k));
                collect_strings(v, at, out);
                at.truncate(len);
            }
        }
        _ => {}
    }
}

/// A member name as an RFC 6901 reference token (`~` → `~0`, `/` → `~1`).
fn escape_token(name: &str) -> Cow<'_, str> {
    if name.contains(['~', '/']) {
        Cow::Owned(name.replace('~', "~0").replace('/', "~1"))
    } else {
        Cow::Borrowed(name)
    }
}

/// The bytes `c` takes inside a JSON string as serde_json writes it.
fn escaped_char_len(c: char) -> usize {
    match c {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
        c if (c as u32) < 0x20 => 6,
        c => c.len_utf8(),
    }
}

/// `s`'s length inside a JSON string.
fn escaped_len(s: &str) -> usize {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        return s.len();
    }
    s.chars().map(escaped_char_len).sum()
}

/// The byte length of the longest prefix of `s` (whole characters) that takes at most `max`
/// bytes inside a JSON string.
fn escaped_prefix(s: &str, max: usize) -> usize {
    let mut used = 0;
    for (i, c) in s.char_indices() {
        used += escaped_char_len(c);
        if used > max {
            return i;
        }
    }
    s.len()
}

/// The largest index `<= at` on a character boundary of `s`.
fn floor_char_boundary(s: &str, at: usize) -> usize {
    if at >= s.len() {
        return s.len();
    }
    (0..=at).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::event::{EventType, Outcome};

    fn event(arguments: &str) -> AuditEvent {
        let mut e = AuditEvent::test_event(EventType::ToolAccess, Outcome::Initiated);
        e.metadata.arguments = Some(RawValue::from_string(arguments.to_string()).unwrap());
        e
    }

    #[test]
    fn small_events_are_left_alone() {
        assert!(bound(&event(r#"{"path":"a.txt"}"#), 1024).is_none());
    }

    #[test]
    fn a_huge_argument_is_cut_keeping_the_shape_and_a_proof_of_the_value() {
        let big = "x".repeat(5 << 20);
        let args = format!(r#"{{"path":"notes/a.txt","content":"{big}","n":3}}"#);
        let e = bound(&event(&args), 4096).unwrap();
        let stored = e.metadata.arguments.as_ref().unwrap().get();
        assert!(stored.len() <= 4096, "{}", stored.len());
        let v: Value = serde_json::from_str(stored).unwrap();
        assert_eq!(v["path"], "notes/a.txt");
        assert_eq!(v["n"], 3);
        assert!(big.starts_with(v["content"].as_str().unwrap()));
        assert_eq!(e.metadata.truncated.len(), 1);
        let cut = &e.metadata.truncated[0];
        assert_eq!(cut.pointer, "/metadata/arguments/content");
        assert_eq!(cut.bytes, 5 << 20);
        assert_eq!(cut.sha256, sha256_hex(big.as_bytes(), 32));
        // The stored event stays small.
        assert!(serde_json::to_vec(&e).unwrap().len() < 8192);
    }

    #[test]
    fn a_huge_answer_of_a_retry_is_cut_under_its_own_pointer() {
        let big = "y".repeat(1 << 20);
        let mut e = event(r#"{"path":"a.txt"}"#);
        let answers = format!(r#"{{"q":{{"action":"accept","content":{{"text":"{big}"}}}}}}"#);
        e.metadata.input_responses = Some(RawValue::from_string(answers).unwrap());
        let e = bound(&e, 4096).unwrap();
        let stored = e.metadata.input_responses.as_ref().unwrap().get();
        assert!(stored.len() <= 4096, "{}", stored.len());
        let v: Value = serde_json::from_str(stored).unwrap();
        assert_eq!(v["q"]["action"], "accept");
        assert_eq!(
            e.metadata.arguments.as_ref().unwrap().get(),
            r#"{"path":"a.txt"}"#
        );
        assert_eq!(e.metadata.truncated.len(), 1);
        assert_eq!(
            e.metadata.truncated[0].pointer,
            "/metadata/input_responses/q/content/text"
        );
        assert_eq!(
            e.metadata.truncated[0].sha256,
            sha256_hex(big.as_bytes(), 32)
        );
    }

    #[test]
    fn strings_full_of_escapes_and_multibyte_characters_still_fit() {
        let quotes = "\"\\\u{1}".repeat(20_000);
        let accents = "é€😀".repeat(10_000);
        let args = serde_json::json!({"a": quotes, "b": {"c/d": [accents, "short"]}}).to_string();
        let e = bound(&event(&args), 2048).unwrap();
        let stored = e.metadata.arguments.as_ref().unwrap().get();
        assert!(stored.len() <= 2048, "{}", stored.len());
        let v: Value = serde_json::from_str(stored).unwrap();
        assert_eq!(v["b"]["c/d"][1], "short");
        let pointers: Vec<&str> = e
            .metadata
            .truncated
            .iter()
            .map(|c| c.pointer.as_str())
            .collect();
        assert!(
            pointers.contains(&"/metadata/arguments/b/c~1d/0"),
            "{pointers:?}"
        );
    }

    #[test]
    fn a_shape_over_the_cap_drops_the_arguments_whole() {
        let args = serde_json::to_string(&vec![1u32; 50_000]).unwrap();
        let e = bound(&event(&args), 1024).unwrap();
        assert!(e.metadata.arguments.is_none());
        assert_eq!(e.metadata.truncated[0].pointer, "/metadata/arguments");
        assert_eq!(e.metadata.truncated[0].bytes, args.len() as u64);
    }

    #[test]
    fn long_error_texts_and_reasons_are_cut_at_a_character_boundary() {
        let mut e = AuditEvent::test_event(EventType::ToolFailure, Outcome::JsonrpcError);
        e.metadata.error_messages = vec!["ok".into(), "ü".repeat(3000)];
        e.metadata.reason = Some("r".repeat(5000));
        let b = bound(&e, 1001).unwrap();
        assert_eq!(b.metadata.error_messages[0], "ok");
        assert_eq!(b.metadata.error_messages[1].len(), 1000);
        assert_eq!(b.metadata.reason.as_ref().unwrap().len(), 1001);
        let pointers: Vec<&str> = b
            .metadata
            .truncated
            .iter()
            .map(|c| c.pointer.as_str())
            .collect();
        assert_eq!(pointers, ["/metadata/error_messages/1", "/metadata/reason"]);
    }

    /// Found by a fresh pair of eyes: a 6 MB `clientInfo` was stored whole in every event of
    /// its session (89 MB of journal for five small calls), and so were long tool names and
    /// string ids.
    #[test]
    fn names_a_peer_chose_are_cut_with_a_proof() {
        let mut e = AuditEvent::test_event(EventType::ToolAccess, Outcome::Initiated);
        let huge = "n".repeat(100_000);
        e.tool_name = Some(huge.clone());
        e.metadata.user_agent = Some(huge.clone());
        e.metadata.tool_version = Some(huge.clone());
        e.metadata.request_id = Some(RequestId::Str(huge.clone().into()));
        e.metadata.risk_reasons = vec![format!("tool {huge:?} has no annotations")];
        let b = bound(&e, 65_536).unwrap();
        assert_eq!(b.tool_name.as_ref().unwrap().len(), NAME_MAX);
        assert_eq!(b.metadata.user_agent.as_ref().unwrap().len(), NAME_MAX);
        assert_eq!(b.metadata.tool_version.as_ref().unwrap().len(), NAME_MAX);
        assert!(matches!(&b.metadata.request_id, Some(RequestId::Str(s)) if s.len() == NAME_MAX));
        assert_eq!(b.metadata.risk_reasons[0].len(), 65_536);
        let mut pointers: Vec<&str> = b
            .metadata
            .truncated
            .iter()
            .map(|c| c.pointer.as_str())
            .collect();
        pointers.sort_unstable();
        assert_eq!(
            pointers,
            [
                "/metadata/request_id",
                "/metadata/risk_reasons/0",
                "/metadata/tool_version",
                "/metadata/user_agent",
                "/tool_name",
            ]
        );
        let proof = &b.metadata.truncated[0];
        assert_eq!(
            proof.bytes,
            100_000 + "tool \"\" has no annotations".len() as u64
        );
        // A number id of 100,000 characters (`1.000…`, the id 1 to every SDK): stored as the
        // string of its first characters.
        let mut e = AuditEvent::test_event(EventType::ToolAccess, Outcome::Initiated);
        let digits = format!("1.{}", "0".repeat(99_998));
        e.metadata.request_id = RequestId::from_json(&digits);
        assert!(matches!(e.metadata.request_id, Some(RequestId::Num(_))));
        let b = bound(&e, 65_536).unwrap();
        assert!(
            matches!(&b.metadata.request_id, Some(RequestId::Str(s)) if **s == digits[..NAME_MAX])
        );
        assert_eq!(b.metadata.truncated[0].pointer, "/metadata/request_id");
        assert_eq!(b.metadata.truncated[0].bytes, 100_000);
        // Short names are left alone.
        let mut small = AuditEvent::test_event(EventType::ToolAccess, Outcome::Initiated);
        small.tool_name = Some("echo".into());
        small.metadata.user_agent = Some("client/1.0".into());
        assert!(bound(&small, 65_536).is_none());
    }
}
