//! JSON written inside a string argument, read the way the servers that decode it read it.
//!
//! The Python SDK's FastMCP decodes a JSON string given for a parameter that is not a string
//! (`"target": "{\"path\": \"/etc/shadow\"}"` for a `target: Target`), with Python's
//! `json.loads`. That reader takes more than RFC 8259 and serde_json do: `NaN`, `Infinity`
//! and `-Infinity`, numbers past the range of a double (read as infinity), lone surrogate
//! escapes (`"\ud800"`), and nesting as deep as the interpreter's recursion limit (about
//! 1000). A policy that decoded with serde_json alone and kept the string when that failed
//! judged `{"path": "/etc/shadow", "x": NaN}` as text, and the server ran the call with the
//! path the rule forbids (helper-108 F1). The same reading also finds what `\u` escapes hide
//! from a scan of the raw text (`"\u0034\u0031…"` is a card number to the server; F2).
//!
//! So a JSON-looking string is read strictly first, then through a copy where each of those
//! extensions is replaced by what strict JSON can hold and a rule can test the same way
//! (`NaN` → `null`, which no numeric test passes, as in Python; an infinity → the largest
//! double of its sign, which every `gt` bound below it passes; a lone surrogate → U+FFFD, as
//! [`crate::jsonrpc::surrogates`] reads a message). What no reading can decode stays a
//! string (`[INFO] started`, `{{name}}`): no server decodes it either. What decodes only in a
//! way the policy cannot judge is [`Embedded::Unreadable`]: nested deeper than serde_json
//! reads ([`super::admit::MAX_NESTING`]), or holding a key twice, or two keys that differ only
//! in case (a server reads either copy; [`super::strict`]).

use serde_json::Value;

/// How many strings deep JSON inside strings is decoded (a string holding JSON whose strings
/// hold JSON …).
pub const STRING_LEVELS: u8 = 3;

/// What a string argument holds, as a server that decodes JSON strings reads it.
#[derive(Debug, PartialEq)]
pub enum Embedded {
    /// Text: not JSON, or JSON that is no object or array (FastMCP keeps such a string).
    Text,
    /// An object or array, as a lenient reader decodes it.
    Json(Value),
    /// JSON a lenient reader decodes, in a way the policy cannot judge; why.
    Unreadable(String),
}

/// Whether `s` starts like a JSON object or array (after whitespace), the strings worth an
/// attempt to decode.
pub fn looks_like_json(s: &str) -> bool {
    let t = s.trim_start();
    t.starts_with('{') || t.starts_with('[')
}

/// `s` as a server that decodes JSON strings reads it (see the module's documentation): read
/// strictly, and only when that fails through the lenient copy.
pub fn read(s: &str) -> Embedded {
    if !looks_like_json(s) {
        return Embedded::Text;
    }
    match judge(s) {
        Some(read) => read,
        None => match lenient_copy(s) {
            Some(copy) => judge(&copy).unwrap_or(Embedded::Text),
            None => Embedded::Text,
        },
    }
}

/// What strict reading makes of `text`; `None` when it is no JSON at all.
fn judge(text: &str) -> Option<Embedded> {
    match super::strict::parse(text) {
        Ok(v @ (Value::Object(_) | Value::Array(_))) => Some(Embedded::Json(v)),
        Ok(_) => Some(Embedded::Text),
        Err(e) if e.to_string().starts_with("recursion limit exceeded") => {
            Some(Embedded::Unreadable(format!(
                "a string argument holds JSON nested deeper than {} levels of arrays and objects, the most the policy reads; a server that decodes it would run what the policy cannot see",
                super::admit::MAX_NESTING
            )))
        }
        // A key twice, or two keys that differ only in case: strict refuses what plain
        // reading takes.
        Err(_) if serde_json::from_str::<Value>(text).is_ok() => {
            Some(Embedded::Unreadable(
                "a string argument holds JSON with a key twice, or two keys that differ only in case; a server that decodes it may read either copy, so the policy cannot judge it"
                    .to_string(),
            ))
        }
        Err(_) => None,
    }
}

/// `value` with every string that holds a JSON object or array replaced by what it decodes
/// to ([`read`]; at any depth, and inside decoded strings up to [`STRING_LEVELS`]); `Ok(None)`
/// when no string holds one, which is the common case and costs one walk.
///
/// # Errors
/// Why the policy cannot judge a string that decodes ([`Embedded::Unreadable`]).
pub fn decode_all(value: &Value) -> Result<Option<Value>, String> {
    fn any_json_string(v: &Value) -> bool {
        match v {
            Value::String(s) => looks_like_json(s),
            Value::Array(items) => items.iter().any(any_json_string),
            Value::Object(map) => map.values().any(any_json_string),
            _ => false,
        }
    }
    fn decode(v: &Value, levels: u8, changed: &mut bool) -> Result<Value, String> {
        Ok(match v {
            Value::String(s) if levels > 0 => match read(s) {
                Embedded::Json(inner) => {
                    *changed = true;
                    decode(&inner, levels - 1, changed)?
                }
                Embedded::Unreadable(why) => return Err(why),
                Embedded::Text => v.clone(),
            },
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|i| decode(i, levels, changed))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, i)| Ok((k.clone(), decode(i, levels, changed)?)))
                    .collect::<Result<_, String>>()?,
            ),
            _ => v.clone(),
        })
    }
    if !any_json_string(value) {
        return Ok(None);
    }
    let mut changed = false;
    let decoded = decode(value, STRING_LEVELS, &mut changed)?;
    Ok(changed.then_some(decoded))
}

/// The largest double, written so that serde_json reads it back as itself.
const MAX_DOUBLE: &str = "1.7976931348623157e308";

/// A copy of `s` in which what Python's `json` reads beyond strict JSON is written in strict
/// JSON (see the module's documentation), or `None` when there is nothing such. Strings are
/// left as they are, but for lone surrogate escapes; what is not JSON stays not JSON.
fn lenient_copy(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out: Option<String> = None;
    let mut in_string = false;
    let mut i = 0;
    // The bytes before `i` not yet copied start at `copied`.
    let mut copied = 0;
    let replace =
        |out: &mut Option<String>, copied: &mut usize, at: usize, len: usize, with: &str| {
            let o = out.get_or_insert_with(|| String::with_capacity(s.len() + 16));
            o.push_str(&s[*copied..at]);
            o.push_str(with);
            *copied = at + len;
        };
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            match b {
                b'\\' => i += 2,
                b'"' => {
                    in_string = false;
                    i += 1;
                }
                _ => i += 1,
            }
            continue;
        }
        match b {
            b'"' => {
                in_string = true;
                i += 1;
            }
            b'N' if bytes[i..].starts_with(b"NaN") => {
                replace(&mut out, &mut copied, i, 3, "null");
                i += 3;
            }
            b'I' if bytes[i..].starts_with(b"Infinity") => {
                replace(&mut out, &mut copied, i, 8, MAX_DOUBLE);
                i += 8;
            }
            b'-' if bytes[i + 1..].starts_with(b"Infinity") => {
                replace(&mut out, &mut copied, i, 9, &format!("-{MAX_DOUBLE}"));
                i += 9;
            }
            b'-' | b'0'..=b'9' => {
                let len = bytes[i..]
                    .iter()
                    .position(|c| !matches!(c, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'))
                    .unwrap_or(bytes.len() - i);
                let token = &s[i..i + len];
                if let Ok(n) = token.parse::<f64>()
                    && n.is_infinite()
                {
                    let with = if n < 0.0 {
                        format!("-{MAX_DOUBLE}")
                    } else {
                        MAX_DOUBLE.to_string()
                    };
                    replace(&mut out, &mut copied, i, len, &with);
                }
                i += len;
            }
            _ => i += 1,
        }
    }
    let out = out.map(|mut o| {
        o.push_str(&s[copied..]);
        o
    });
    // Lone surrogate escapes, as a message is read (same length, every other byte in place).
    let text = out.as_deref().unwrap_or(s);
    match crate::jsonrpc::surrogates::readable(text.as_bytes()) {
        Some(readable) => String::from_utf8(readable).ok(),
        None => out,
    }
}

/// Whether `key` of `parent` is MCP binary content: `data` beside `"type": "image"` or
/// `"audio"`, or `blob`.
fn binary_member(parent: &serde_json::Map<String, Value>, key: &str) -> bool {
    match key {
        "blob" => true,
        "data" => matches!(
            parent.get("type").and_then(Value::as_str),
            Some("image" | "audio")
        ),
        _ => false,
    }
}

/// Binary content written as line-wrapped base64 (76-character MIME lines, the `base64`
/// command's), joined: each line alone decodes to a piece, and a secret straddling a break is
/// found only in the whole (helper-123 R1). `None` for anything else.
pub(super) fn wrapped_base64(
    parent: &serde_json::Map<String, Value>,
    key: &str,
    value: &Value,
) -> Option<Value> {
    let Value::String(s) = value else {
        return None;
    };
    (binary_member(parent, key) && s.contains(['\n', '\r']))
        .then(|| Value::String(s.chars().filter(|c| !c.is_ascii_whitespace()).collect()))
}

/// MCP's binary content (`ImageContent`/`AudioContent` `data`, beside `"type": "image"` or
/// `"audio"` in `parent`; `BlobResourceContents` `blob`) is base64: masked inside, it is
/// encoded again (the marker's text in base64, in the alphabet and padding it came in)
/// rather than left as text no client's schema accepts (the TypeScript SDK refused the whole
/// result: helper-120 F1). Any other member is returned as masked (a log's `data` is text:
/// helper-121 F6).
pub(super) fn base64_kept(
    parent: &serde_json::Map<String, Value>,
    key: &str,
    sent: &Value,
    masked: Value,
) -> Value {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    match (sent, masked) {
        (Value::String(before), Value::String(after))
            if binary_member(parent, key) && after != *before =>
        {
            let joined: String = before
                .chars()
                .filter(|c| !c.is_ascii_whitespace())
                .collect();
            let engine = [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
                .into_iter()
                .find(|e| e.decode(&joined).is_ok());
            match engine {
                Some(e) if e.decode(&after).is_err() => Value::String(e.encode(after)),
                _ => Value::String(after),
            }
        }
        (_, masked) => masked,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// helper-108 F1: each extension Python's `json.loads` takes, beside a path a rule must
    /// see, decodes to that path (it stayed a string, unjudged).
    #[test]
    fn what_python_decodes_is_decoded() {
        for extra in [
            "NaN",
            "Infinity",
            "-Infinity",
            "1e999",
            "-1e999",
            &format!("1{}", "0".repeat(400)),
            r#""\ud800""#,
            r#""a\udfffb""#,
        ] {
            let s = format!(r#"{{"path":"/etc/shadow","x":{extra}}}"#);
            match read(&s) {
                Embedded::Json(v) => assert_eq!(v["path"], "/etc/shadow", "{s}"),
                other => panic!("{s}: {other:?}"),
            }
        }
        // What the copies become: NaN reads as null, an infinity as the largest double of
        // its sign, a lone surrogate as U+FFFD.
        let Embedded::Json(v) = read(r#"[NaN, Infinity, -Infinity, 1e999, "\ud800x"]"#) else {
            panic!("not decoded");
        };
        assert_eq!(v, json!([null, f64::MAX, -f64::MAX, f64::MAX, "\u{FFFD}x"]));
        // The words inside strings are text, not numbers.
        let Embedded::Json(v) = read(r#"{"a":"NaN and Infinity","b":"-Infinity"}"#) else {
            panic!("not decoded");
        };
        assert_eq!(v, json!({"a": "NaN and Infinity", "b": "-Infinity"}));
    }

    #[test]
    fn text_that_no_reader_decodes_stays_text() {
        for s in [
            "plain",
            "[INFO] started",
            "{{name}}",
            "{not json}",
            "[1, 2",
            r#"{"a": 1} trailing"#,
            "[NaNx]",
            r#""a string""#,
        ] {
            assert_eq!(read(s), Embedded::Text, "{s}");
        }
        assert_eq!(read("  [1]"), Embedded::Json(json!([1])));
    }

    /// helper-108 F1 (deep) and F5: what decodes only in a way the policy cannot judge.
    #[test]
    fn what_the_policy_cannot_judge_is_unreadable() {
        let deep = format!(
            r#"{{"path":"/etc/shadow","x":{}{}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        for s in [
            deep.as_str(),
            r#"{"path":"/srv/data/a","path":"/etc/a"}"#,
            r#"{"path":"/srv/data/a","PATH":"/etc/a"}"#,
            r#"[{"path":"/srv/data/a","Path":"/etc/a","x":NaN}]"#,
        ] {
            assert!(
                matches!(read(s), Embedded::Unreadable(_)),
                "{s}: {:?}",
                read(s)
            );
        }
    }

    #[test]
    fn strings_are_decoded_at_any_depth_and_a_few_strings_deep() {
        let inner = json!({"path": "/etc/shadow"}).to_string();
        let middle = json!({"target": inner}).to_string();
        let args = json!({"a": [{"b": middle}], "n": 1});
        let decoded = decode_all(&args).unwrap().unwrap();
        assert_eq!(decoded["a"][0]["b"]["target"]["path"], "/etc/shadow");
        assert_eq!(decode_all(&json!({"a": "text", "n": [1]})), Ok(None));
        let twice = json!({"a": r#"{"k":1,"K":2}"#});
        assert!(decode_all(&twice).is_err());
    }
}
