//! What a peer could still read from a line the proxy refuses.
//!
//! The proxy refuses a line it cannot classify strictly (not JSON, not JSON-RPC 2.0, a null or
//! object `id`, a repeated key, invalid UTF-8, a carriage return inside it), but the peer on
//! the other side may be lenient: a streaming parser reads two objects from one line, a
//! decoder replaces invalid bytes with U+FFFD, a hand-written server ignores `jsonrpc` or a
//! repeated `method`. So the refusal is not the end of the audit: every object in the line is
//! read here as such a peer would, to record each `tools/call` it may hold and to fail the
//! call a broken response answers. Only used on the error path.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::message::RequestId;
use super::names;
use super::scan::{PrefixInfo, scan_prefix};

/// One JSON object found in a refused line, as a lenient peer could read it.
#[derive(Debug, Default)]
pub struct Salvaged {
    /// The last top-level `id` that is a string or a number (the copy most parsers keep).
    pub id: Option<RequestId>,
    /// Every other top-level `id` that is a string or a number (a repeated key).
    pub other_ids: Vec<RequestId>,
    /// It has a top-level `result` or `error`: a response, whatever else it holds.
    pub answers: bool,
    /// It says `"jsonrpc": "2.0"`: a JSON-RPC message, whatever else it lacks.
    pub jsonrpc: bool,
    /// Every top-level `method` that is a string, in order: a repeated key counts each copy,
    /// since parsers differ on which one wins.
    pub methods: Vec<String>,
    /// The last top-level `params` (the copy JavaScript, Python and Go keep).
    pub params: Option<Box<RawValue>>,
    /// The object was found in a part of the line that is not JSON, by the key scanner or by
    /// the watched method's name alone: what it holds is uncertain.
    pub partial: bool,
    /// It is, or may be, a request for the watched method.
    pub watched: bool,
    /// It has a `method` member that could not be read as a string: a request of some kind.
    pub unreadable_method: bool,
}

impl Salvaged {
    /// Whether it reads as a response: an id, and a result or an error; or an id and no
    /// method in a JSON-RPC message (`{"jsonrpc":"2.0","id":7}`: a JavaScript handler that
    /// returned `undefined`) or in an object cut short ([`Self::partial`]: its result may be
    /// in the part lost). A whole object with an id and none of these is no answer to any
    /// client (the official SDKs drop it as matching none of their message schemas): a
    /// structured log line such as `{"level":"info","id":7,"msg":"…"}` a server prints on its
    /// stdout must not end call 7.
    pub fn is_response(&self) -> bool {
        self.id.is_some()
            && (self.answers
                || ((self.partial || self.jsonrpc)
                    && self.methods.is_empty()
                    && !self.unreadable_method
                    && !self.watched))
    }

    /// Whether it reads as a request of some kind (a method, and no result or error).
    pub fn is_request(&self) -> bool {
        !self.answers && (!self.methods.is_empty() || self.unreadable_method || self.watched)
    }

    /// Every id it names, the one most parsers keep first.
    pub fn ids(&self) -> impl Iterator<Item = &RequestId> {
        self.id.iter().chain(&self.other_ids)
    }
}

/// Every object a lenient peer could read from `line`, judged against the `watched` method.
///
/// Top-level values are read in sequence (a line of two objects is two messages to a
/// streaming parser; a carriage return is whitespace between them), batch elements one by one,
/// and where the JSON breaks off, the key scanner reads the rest and the watched method's name
/// is looked for in it. Invalid UTF-8 is decoded as `from_utf8_lossy` does (as Node and
/// Python's `errors="replace"` do); a method then holding U+FFFD may be the watched one.
/// Objects with nothing readable are left out.
pub fn salvage(line: &[u8], watched: &str) -> Vec<Salvaged> {
    let text = String::from_utf8_lossy(line);
    salvage_text(&text, watched, matches!(text, Cow::Owned(_)))
}

/// [`salvage`] of text already decoded; `lossy`: invalid bytes were replaced in it.
fn salvage_text(text: &str, watched: &str, lossy: bool) -> Vec<Salvaged> {
    // A byte order mark (some Windows and .NET peers start with one) is skipped by lenient
    // readers.
    let text = text.trim_start_matches(|c: char| c == '\u{feff}' || c.is_ascii_whitespace());
    let mut found = Vec::new();
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<&RawValue>();
    let mut broken = false;
    for value in stream.by_ref() {
        let Ok(value) = value else {
            broken = true;
            break;
        };
        match value.get().as_bytes().first() {
            Some(b'{') => found.extend(object(value, watched, lossy)),
            Some(b'[') => {
                if let Ok(items) = serde_json::from_str::<Vec<&RawValue>>(value.get()) {
                    found.extend(items.into_iter().filter_map(|v| object(v, watched, lossy)));
                }
            }
            _ => {}
        }
    }
    if broken {
        let rest = text[stream.byte_offset()..].trim_start();
        found.extend(tail(rest, watched));
    }
    found
}

/// [`salvage`], and also each piece between the line breaks some peers honour inside a line,
/// as they read it: a bare `\r` (Python's universal newlines, Node's readline), and the other
/// breaks of Python's `str.splitlines` (VT, FF, FS, GS, RS, NEL, U+2028, U+2029). An object
/// of a piece already found in the whole line (same id, same verdict) is not repeated.
pub fn salvage_split(line: &[u8], watched: &str) -> Vec<Salvaged> {
    let text = String::from_utf8_lossy(line);
    let lossy = matches!(text, Cow::Owned(_));
    let mut found = salvage_text(&text, watched, lossy);
    let breaks = |c: char| {
        matches!(
            c,
            '\r' | '\u{b}'
                | '\u{c}'
                | '\u{1c}'
                | '\u{1d}'
                | '\u{1e}'
                | '\u{85}'
                | '\u{2028}'
                | '\u{2029}'
        )
    };
    if !text.contains(breaks) {
        return found;
    }
    for piece in text.split(breaks) {
        for s in salvage_text(piece, watched, lossy) {
            if !found.iter().any(|f| f.id == s.id && f.watched == s.watched) {
                found.push(s);
            }
        }
    }
    found
}

/// One object that parses as JSON; `None` if it holds no id, method or params.
fn object(raw: &RawValue, watched: &str, lossy: bool) -> Option<Salvaged> {
    let fields: Fields = serde_json::from_str(raw.get()).ok()?;
    let watched = fields
        .methods
        .iter()
        .any(|m| m == watched || (lossy && m.contains(char::REPLACEMENT_CHARACTER)));
    // The id a strict reader keeps: the last spelled `id` exactly; a twin (`Id`, `id\u0000`)
    // only when there is none (the answer to such a line must not settle another request).
    let mut ids = fields.ids;
    let primary = ids
        .iter()
        .rposition(|(_, exact)| *exact)
        .or(ids.len().checked_sub(1))
        .map(|at| ids.remove(at).0);
    let s = Salvaged {
        id: primary,
        other_ids: ids.into_iter().map(|(id, _)| id).collect(),
        answers: fields.answers,
        jsonrpc: fields.jsonrpc,
        methods: fields.methods,
        params: fields.params,
        partial: false,
        watched,
        unreadable_method: fields.unreadable_method,
    };
    (s.id.is_some() || !s.methods.is_empty() || s.unreadable_method || s.params.is_some())
        .then_some(s)
}

/// The part of a line where the JSON breaks off.
fn tail(rest: &str, watched: &str) -> Option<Salvaged> {
    if rest.is_empty() {
        return None;
    }
    let s = from_prefix(scan_prefix(rest.as_bytes()), watched);
    let escaped = watched.replace('/', "\\/");
    let named = s.watched || rest.contains(watched) || rest.contains(&escaped);
    if !named && s.id.is_none() && s.methods.is_empty() && !s.unreadable_method {
        return None;
    }
    Some(Salvaged {
        watched: named,
        ..s
    })
}

/// What the key scanner read of a message (an oversized one, or a part that is not JSON), as
/// far as it goes: the id, the methods and the tool a `params` names (as a params of that
/// name alone), judged against the `watched` method.
pub fn from_prefix(prefix: PrefixInfo, watched: &str) -> Salvaged {
    let may_be = prefix.may_be(watched);
    let params = prefix.params_name.and_then(|name| {
        serde_json::value::to_raw_value(&serde_json::json!({ "name": name })).ok()
    });
    Salvaged {
        params,
        watched: may_be,
        id: prefix.id,
        methods: prefix.methods,
        partial: true,
        unreadable_method: prefix.method_unreadable,
        answers: prefix.answers,
        ..Salvaged::default()
    }
}

/// Every member of a JSON object in order, repeated keys included (a map keeps one copy).
pub struct Members<'a>(pub Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members<'de>, A::Error> {
                let mut members = Vec::new();
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    members.push((key, map.next_value()?));
                }
                Ok(Members(members))
            }
        }
        d.deserialize_map(V)
    }
}

/// The top-level members a classification needs, every copy of a repeated key seen.
#[derive(Default)]
struct Fields {
    /// Each id, and whether its member was spelled `id` exactly.
    ids: Vec<(RequestId, bool)>,
    methods: Vec<String>,
    unreadable_method: bool,
    answers: bool,
    jsonrpc: bool,
    params: Option<Box<RawValue>>,
}

/// The members [`Fields`] reads, under any spelling a case-insensitive reader accepts.
const READ: [&str; 5] = ["id", "method", "params", "result", "error"];

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Fields;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
                let mut fields = Fields::default();
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    let member = match READ.iter().find(|m| **m == key) {
                        Some(m) => *m,
                        None => names::near_miss(&key, &READ).unwrap_or(""),
                    };
                    match member {
                        "id" => {
                            let raw: Box<RawValue> = map.next_value()?;
                            let exact = key == "id";
                            fields
                                .ids
                                .extend(RequestId::from_json(raw.get()).map(|id| (id, exact)));
                        }
                        "result" | "error" => {
                            fields.answers = true;
                            map.next_value::<IgnoredAny>()?;
                        }
                        "method" => {
                            let raw: Box<RawValue> = map.next_value()?;
                            match serde_json::from_str::<String>(raw.get()) {
                                Ok(m) => fields.methods.push(m),
                                Err(_) => fields.unreadable_method = true,
                            }
                        }
                        "params" => fields.params = Some(map.next_value()?),
                        _ if key == "jsonrpc" => {
                            let raw: Box<RawValue> = map.next_value()?;
                            fields.jsonrpc |= raw.get() == "\"2.0\"";
                        }
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(fields)
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CALL: &str = "tools/call";

    fn watched(line: &str) -> Vec<(Option<RequestId>, Option<String>)> {
        salvage(line.as_bytes(), CALL)
            .into_iter()
            .filter(|s| s.watched)
            .map(|s| (s.id, s.params.map(|p| p.get().to_string())))
            .collect()
    }

    #[test]
    fn finds_calls_a_lenient_peer_would_run() {
        let cases: &[(&str, usize)] = &[
            // Null, object and boolean ids.
            (
                r#"{"jsonrpc":"2.0","id":null,"method":"tools/call","params":{}}"#,
                1,
            ),
            (r#"{"jsonrpc":"2.0","id":{"a":1},"method":"tools/call"}"#, 1),
            (r#"{"jsonrpc":"2.0","id":true,"method":"tools/call"}"#, 1),
            // No jsonrpc, a wrong one, a repeated method, an escaped slash.
            (r#"{"id":1,"method":"tools/call"}"#, 1),
            (r#"{"jsonrpc":"1.0","id":1,"method":"tools\/call"}"#, 1),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"ping","method":"tools/call"}"#,
                1,
            ),
            // Two messages on one line; a carriage return between them.
            (
                r#"{"jsonrpc":"2.0","method":"x"} {"jsonrpc":"2.0","id":2,"method":"tools/call"}"#,
                1,
            ),
            (
                "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\"}\r{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\"}",
                2,
            ),
            // A batch, and JSON that breaks off.
            (
                r#"[{"jsonrpc":"2.0","method":"tools/call"},{"jsonrpc":"2.0","id":3,"method":"ping"}]"#,
                1,
            ),
            (
                r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"#,
                1,
            ),
            (r#"[{"jsonrpc":"2.0","method":"tools/call"}, oops"#, 1),
            // Not calls.
            (
                r#"{"jsonrpc":"2.0","id":5,"method":"ping","params":{"method":"tools/call"}}"#,
                0,
            ),
            (
                r#"{"jsonrpc":"2.0","id":5,"result":{"text":"tools/call"}}"#,
                0,
            ),
            ("not json at all", 0),
        ];
        for (line, calls) in cases {
            assert_eq!(watched(line).len(), *calls, "{line}");
        }
    }

    #[test]
    fn the_exactly_spelled_id_comes_first_whatever_its_twins() {
        for line in [
            r#"{"jsonrpc":"2.0","id":2401,"id\u0000":5,"method":"tools/call"}"#,
            r#"{"jsonrpc":"2.0","Id":5,"id":2401,"method":"tools/call"}"#,
        ] {
            let found = salvage(line.as_bytes(), CALL);
            assert_eq!(found[0].id, Some(RequestId::Int(2401)), "{line}");
            assert_eq!(found[0].other_ids, [RequestId::Int(5)], "{line}");
        }
        // Only twins: the last, as before.
        let found = salvage(br#"{"Id":5,"ID":6,"method":"tools/call"}"#, CALL);
        assert_eq!(found[0].id, Some(RequestId::Int(6)));
    }

    #[test]
    fn keeps_the_id_and_the_last_params() {
        let found = watched(
            r#"{"jsonrpc":"2.0","id":18446744073709551617,"method":"tools/call","params":{"name":"a"},"params":{"name":"b"}}"#,
        );
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].0.as_ref().map(ToString::to_string).as_deref(),
            Some("18446744073709551617")
        );
        assert_eq!(found[0].1.as_deref(), Some(r#"{"name":"b"}"#));
    }

    #[test]
    fn invalid_utf8_in_the_method_may_be_a_call() {
        let mut line = br#"{"jsonrpc":"2.0","id":7,"method":"tools/ca"#.to_vec();
        line.push(0xff);
        line.extend_from_slice(br#"ll","params":{"name":"x"}}"#);
        let found = salvage(&line, CALL);
        assert_eq!(found.len(), 1);
        assert!(found[0].watched);
        assert_eq!(found[0].id, Some(RequestId::Int(7)));
        // Invalid bytes elsewhere: the method is read as it is.
        let mut line = br#"{"jsonrpc":"2.0","id":8,"method":"ping","params":{"x":""#.to_vec();
        line.extend_from_slice(&[0xc3, b'"', b'}', b'}']);
        let found = salvage(&line, CALL);
        assert_eq!(found.len(), 1);
        assert!(!found[0].watched);
    }

    #[test]
    fn a_call_smuggled_behind_a_carriage_return_is_found() {
        let line = "{\"jsonrpc\":\"2.0\",\"method\":\"n\",\"params\":{\"a\":\r{\"id\":9,\"method\":\"tools/call\"}\r}}";
        assert!(salvage(line.as_bytes(), CALL).iter().all(|s| !s.watched));
        let found: Vec<_> = salvage_split(line.as_bytes(), CALL)
            .into_iter()
            .filter(|s| s.watched)
            .collect();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].id, Some(RequestId::Int(9)));
        // One call split by a carriage return is still one call, with its params.
        let line = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\r\"params\":{\"name\":\"x\"}}";
        let found: Vec<_> = salvage_split(line.as_bytes(), CALL)
            .into_iter()
            .filter(|s| s.watched)
            .collect();
        assert_eq!(found.len(), 1);
        assert!(found[0].params.is_some());
    }

    #[test]
    fn a_broken_response_still_names_its_id() {
        let found = salvage(br#"{"jsonrpc":"2.0","id":9,"result":{"content":["#, CALL);
        assert_eq!(found.len(), 1);
        assert!(found[0].is_response());
        assert_eq!(found[0].id, Some(RequestId::Int(9)));
        let found = salvage(br#"{"id":10,"result":{}}"#, CALL);
        assert!(found[0].is_response());
        // A request whose method is not a string is not an answer to anything.
        let found = salvage(br#"{"jsonrpc":"2.0","id":11,"method":7}"#, CALL);
        assert!(!found[0].is_response());
        // Cut short before its result: it may be one.
        let found = salvage(br#"{"jsonrpc":"2.0","id":12,"#, CALL);
        assert!(found[0].is_response());
    }

    #[test]
    fn a_whole_object_with_an_id_but_no_result_or_error_answers_nothing() {
        for line in [
            &br#"{"level":"info","id":7,"msg":"handling tools/call"}"#[..],
            br#"{"jsonrpc":"1.0","id":7,"msg":"x"}"#,
        ] {
            let found = salvage(line, CALL);
            assert_eq!(found.len(), 1);
            assert_eq!(found[0].id, Some(RequestId::Int(7)));
            assert!(!found[0].is_response(), "{}", String::from_utf8_lossy(line));
            assert!(!found[0].is_request());
        }
        // A JSON-RPC message with an id and nothing else is a broken answer (a JavaScript
        // handler returned `undefined`): its call fails at once.
        assert!(salvage(br#"{"jsonrpc":"2.0","id":7}"#, CALL)[0].is_response());
    }
}
