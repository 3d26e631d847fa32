//! `Mcp-Param-{Name}` headers (MCP 2026-07-28, SEP-2243 "custom headers"): a tool marks
//! arguments with `x-mcp-header` in its `inputSchema`, and a client MUST mirror their values
//! into headers on `tools/call`, so that intermediaries can route on them. A server may
//! reject a call without them, so the proxy, the remote's client, sends them as a direct
//! client would.
//!
//! The bindings are learnt from the `tools/list` answers that pass through the upstream (any
//! session's: a 2026-07-28 client may list in one request and call in another), and kept per
//! upstream. A tool the proxy has not seen listed gets no `Mcp-Param-*` headers.

use std::collections::HashMap;
use std::sync::Mutex;

use http::{HeaderName, HeaderValue};
use serde_json::Value;

/// One bound argument: its header and where it sits in the arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Binding {
    pub(crate) header: HeaderName,
    pub(crate) path: Vec<String>,
}

/// Per upstream, what its `tools/list` answers declared.
#[derive(Debug, Default)]
struct Known {
    /// Tool name -> its bindings (tools without any are not kept).
    bindings: HashMap<String, Vec<Binding>>,
    /// Tool name -> why its declarations are invalid (SEP-2243: a client MUST reject, exclude,
    /// such a tool).
    invalid: HashMap<String, String>,
}

/// The `Mcp-Param-*` bindings of one upstream's tools, shared by its sessions.
#[derive(Debug, Default)]
pub(crate) struct ParamHeaders(Mutex<Known>);

impl ParamHeaders {
    /// Learns the tools of a `tools/list` answer (a JSON-RPC response line).
    pub(crate) fn learn(&self, answer: &[u8]) {
        let Ok(v) = serde_json::from_slice::<Value>(answer) else {
            return;
        };
        let Some(tools) = v
            .get("result")
            .and_then(|r| r.get("tools"))
            .and_then(Value::as_array)
        else {
            return;
        };
        let mut known = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for tool in tools {
            let Some(name) = tool.get("name").and_then(Value::as_str) else {
                continue;
            };
            known.invalid.remove(name);
            match tool.get("inputSchema").map(bindings) {
                Some(Ok(b)) if !b.is_empty() => {
                    known.bindings.insert(name.to_string(), b);
                }
                Some(Err(why)) => {
                    tracing::warn!(tool = name, reason = %why, "a tool's x-mcp-header declarations are invalid (SEP-2243); its 2026-07-28 calls are not sent");
                    known.bindings.remove(name);
                    known.invalid.insert(name.to_string(), why);
                }
                _ => {
                    known.bindings.remove(name);
                }
            }
        }
    }

    /// The headers for a 2026-07-28 call of `tool`: one per bound argument that is present and
    /// not null in `arguments()` (called only when the tool has bindings). `Err` says why
    /// `tool`'s `x-mcp-header` declarations were invalid when it was last listed: a client
    /// "MUST reject" such a tool (SEP-2243), and the proxy is the remote's client, so its call
    /// is refused rather than sent without its headers.
    pub(crate) fn for_call(
        &self,
        tool: &str,
        arguments: impl FnOnce() -> Value,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
        // Copied out (a few entries), so that the arguments are not read under the lock.
        let bindings = {
            let known = self.0.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(why) = known.invalid.get(tool) {
                return Err(why.clone());
            }
            match known.bindings.get(tool) {
                Some(b) => b.clone(),
                None => return Ok(Vec::new()),
            }
        };
        let arguments = arguments();
        Ok(bindings
            .iter()
            .filter_map(|b| {
                let mut v = &arguments;
                for key in &b.path {
                    v = v.get(key)?;
                }
                let text = match v {
                    Value::String(s) => s.clone(),
                    Value::Bool(b) => b.to_string(),
                    Value::Number(n) => n.to_string(),
                    _ => return None,
                };
                Some((b.header.clone(), super::header_text(&text)))
            })
            .collect())
    }

    /// Checks a client's `Mcp-Param-*` headers against a call's arguments (a server "MUST
    /// reject" a mismatch, SEP-2243): a bound argument present must have its header with the
    /// same value, an absent one none; `Err` says what differs. A tool not seen listed, and
    /// headers no binding names, pass.
    pub(crate) fn check(
        &self,
        tool: &str,
        arguments: &Value,
        headers: &http::HeaderMap,
    ) -> Result<(), String> {
        let known = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let Some(bindings) = known.bindings.get(tool) else {
            return Ok(());
        };
        for b in bindings {
            let mut value = Some(arguments);
            for key in &b.path {
                value = value.and_then(|v| v.get(key));
            }
            let value = value.filter(|v| !v.is_null());
            let mut sent = headers.get_all(&b.header).iter();
            let first = sent.next();
            if sent.next().is_some() {
                return Err(format!("{} is repeated", b.header));
            }
            let got = match first {
                None => None,
                Some(h) => Some(
                    decode(h).ok_or_else(|| format!("{} is not valid text or base64", b.header))?,
                ),
            };
            let argument = b.path.join(".");
            match (value, got) {
                (None, None) => {}
                (Some(_), None) => {
                    return Err(format!(
                        "the {} header is missing for argument {argument:?}",
                        b.header
                    ));
                }
                (None, Some(_)) => {
                    return Err(format!(
                        "{} is sent but argument {argument:?} is absent",
                        b.header
                    ));
                }
                (Some(v), Some(h)) => {
                    let same = match v {
                        Value::String(s) => *s == h,
                        Value::Bool(b) => h == b.to_string(),
                        Value::Number(n) => same_number(n, &h),
                        _ => false,
                    };
                    if !same {
                        return Err(format!(
                            "{} {h:?} does not match argument {argument:?}",
                            b.header
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether `tool` has bindings.
    #[cfg(test)]
    fn knows(&self, tool: &str) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .bindings
            .contains_key(tool)
    }
}

/// Whether header text `h` is the JSON number `n`: the same value, exactly (`5.0` is `5`, and
/// integers past 2^53, which a comparison as `f64` takes for their neighbours (helper-95 F5),
/// are compared as integers). `h` must be a JSON number (RFC 8259 section 6).
fn same_number(n: &serde_json::Number, h: &str) -> bool {
    let Ok(m) = h.trim().parse::<serde_json::Number>() else {
        return false;
    };
    let int = |x: &serde_json::Number| {
        x.as_i64()
            .map(i128::from)
            .or_else(|| x.as_u64().map(i128::from))
    };
    // A number whose `f64` is its value: an integer an `f64` holds exactly, or a number
    // written with a fraction or exponent below 2^53 (above, `9007199254740993e0` reads as
    // its neighbour; review helper-100).
    let exact = |x: &serde_json::Number| match int(x) {
        Some(i) => (i as f64) as i128 == i,
        None => x
            .as_f64()
            .is_some_and(|f| f.abs() < 9_007_199_254_740_992.0),
    };
    match (int(n), int(&m)) {
        (Some(a), Some(b)) => a == b,
        _ => match (n.as_f64(), m.as_f64()) {
            (Some(a), Some(b)) => a == b && exact(n) && exact(&m),
            _ => false,
        },
    }
}

/// The `x-mcp-header` declarations of an `inputSchema`, at any depth of `properties`;
/// `Err` when one breaks the spec's constraints (a name that is not an HTTP token, a
/// repeated name, a non-primitive or `number` property).
fn bindings(schema: &Value) -> Result<Vec<Binding>, String> {
    let mut out = Vec::new();
    walk(schema, &mut Vec::new(), &mut out, 0)?;
    let mut seen = std::collections::HashSet::new();
    for b in &out {
        if !seen.insert(b.header.as_str().to_string()) {
            return Err(format!("{} is declared twice", b.header));
        }
    }
    Ok(out)
}

fn walk(
    schema: &Value,
    path: &mut Vec<String>,
    out: &mut Vec<Binding>,
    depth: usize,
) -> Result<(), String> {
    if depth > 32 {
        return Ok(());
    }
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return Ok(());
    };
    for (key, prop) in props {
        path.push(key.clone());
        if let Some(name) = prop.get("x-mcp-header") {
            let name = name
                .as_str()
                .filter(|n| !n.is_empty() && n.bytes().all(is_tchar))
                .ok_or_else(|| format!("x-mcp-header of {key:?} is not an HTTP token"))?;
            match prop.get("type").and_then(Value::as_str) {
                Some("string" | "integer" | "boolean") => {}
                other => {
                    return Err(format!(
                        "x-mcp-header {name:?} is on a property of type {other:?} (string, integer or boolean only)"
                    ));
                }
            }
            let header = HeaderName::from_bytes(format!("mcp-param-{name}").as_bytes())
                .map_err(|_| format!("x-mcp-header {name:?} makes no header name"))?;
            out.push(Binding {
                header,
                path: path.clone(),
            });
        }
        walk(prop, path, out, depth + 1)?;
        path.pop();
    }
    Ok(())
}

/// A header value as text, `=?base64?…?=` decoded.
fn decode(value: &HeaderValue) -> Option<String> {
    let text = value.to_str().ok()?;
    match text
        .strip_prefix("=?base64?")
        .and_then(|t| t.strip_suffix("?="))
    {
        Some(inner) => {
            use base64::Engine;
            let bytes = base64::prelude::BASE64_STANDARD.decode(inner).ok()?;
            String::from_utf8(bytes).ok()
        }
        None => Some(text.to_string()),
    }
}

/// RFC 9110 5.6.2 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn listed(tools: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": 1, "result": {"tools": tools}})).unwrap()
    }

    #[test]
    fn bound_arguments_become_headers_and_absent_ones_do_not() {
        let p = ParamHeaders::default();
        p.learn(&listed(json!([
            {"name": "query", "inputSchema": {"type": "object", "properties": {
                "region": {"type": "string", "x-mcp-header": "Region"},
                "limit": {"type": "integer", "x-mcp-header": "Limit"},
                "opts": {"type": "object", "properties": {
                    "dry": {"type": "boolean", "x-mcp-header": "Dry-Run"}
                }},
                "text": {"type": "string"}
            }}},
            {"name": "plain", "inputSchema": {"type": "object", "properties": {"a": {"type": "string"}}}},
            {"name": "bad", "inputSchema": {"type": "object", "properties": {
                "n": {"type": "number", "x-mcp-header": "N"}
            }}}
        ])));
        assert!(p.knows("query") && !p.knows("plain") && !p.knows("bad"));
        // A tool whose declarations break the rules is not called (SEP-2243).
        let why = p.for_call("bad", || json!({"n": 1})).unwrap_err();
        assert!(why.contains("number"), "{why}");
        assert!(
            p.for_call("plain", || json!({"a": "x"}))
                .unwrap()
                .is_empty()
        );
        let mut got: Vec<(String, String)> = p
            .for_call(
                "query",
                || json!({"region": "eu-wést", "limit": 5, "opts": {"dry": true}, "text": "x"}),
            )
            .unwrap()
            .into_iter()
            .map(|(h, v)| (h.to_string(), v.to_str().unwrap().to_string()))
            .collect();
        got.sort();
        assert_eq!(got[0], ("mcp-param-dry-run".into(), "true".into()));
        assert_eq!(got[1], ("mcp-param-limit".into(), "5".into()));
        assert_eq!(got[2].0, "mcp-param-region");
        assert!(
            got[2].1.starts_with("=?base64?"),
            "non-ASCII is wrapped: {:?}",
            got[2]
        );
        // Absent or null: no header.
        assert!(
            p.for_call("query", || json!({"region": null}))
                .unwrap()
                .is_empty()
        );
        // A relisted tool without declarations forgets them.
        p.learn(&listed(
            json!([{"name": "query", "inputSchema": {"type": "object"}}]),
        ));
        assert!(!p.knows("query"));
    }

    #[test]
    fn a_clients_headers_must_say_what_the_arguments_say() {
        let p = ParamHeaders::default();
        p.learn(&listed(
            json!([{"name": "query", "inputSchema": {"type": "object", "properties": {
                "region": {"type": "string", "x-mcp-header": "Region"},
                "limit": {"type": "integer", "x-mcp-header": "Limit"}
            }}}]),
        ));
        let h = |pairs: &[(&'static str, &str)]| {
            let mut m = http::HeaderMap::new();
            for (k, v) in pairs {
                m.append(*k, HeaderValue::from_str(v).unwrap());
            }
            m
        };
        let args = json!({"region": "eu", "limit": 5});
        assert!(
            p.check(
                "query",
                &args,
                &h(&[("mcp-param-region", "eu"), ("mcp-param-limit", "5")])
            )
            .is_ok()
        );
        assert!(
            p.check(
                "query",
                &args,
                &h(&[
                    ("mcp-param-region", "=?base64?ZXU=?="),
                    ("mcp-param-limit", "5.0")
                ])
            )
            .is_ok()
        );
        // A filter reading headers would route to "us".
        assert!(
            p.check(
                "query",
                &args,
                &h(&[("mcp-param-region", "us"), ("mcp-param-limit", "5")])
            )
            .is_err()
        );
        assert!(
            p.check("query", &args, &h(&[("mcp-param-limit", "5")]))
                .is_err()
        );
        assert!(
            p.check(
                "query",
                &json!({"limit": 5}),
                &h(&[("mcp-param-region", "eu"), ("mcp-param-limit", "5")])
            )
            .is_err()
        );
        assert!(
            p.check(
                "query",
                &args,
                &h(&[
                    ("mcp-param-region", "eu"),
                    ("mcp-param-region", "eu"),
                    ("mcp-param-limit", "5")
                ])
            )
            .is_err()
        );
        // Integers are compared exactly: 2^53 + 1 is not 2^53, whatever an f64 makes of them.
        let big = json!({"region": "eu", "limit": 9007199254740993u64});
        for (header, same) in [
            ("9007199254740992", false),
            ("9007199254740993.0", false),
            ("9007199254740992e0", false),
            ("9007199254740993", true),
        ] {
            let got = p.check(
                "query",
                &big,
                &h(&[("mcp-param-region", "eu"), ("mcp-param-limit", header)]),
            );
            assert_eq!(got.is_ok(), same, "{header}: {got:?}");
        }
        assert!(
            p.check(
                "query",
                &args,
                &h(&[("mcp-param-region", "eu"), ("mcp-param-limit", "NaN")])
            )
            .is_err()
        );
        // Unknown tools and unknown headers pass.
        assert!(p.check("other", &args, &h(&[("mcp-param-x", "1")])).is_ok());
    }

    #[test]
    fn declarations_that_break_the_rules_are_refused() {
        for schema in [
            json!({"properties": {"a": {"type": "string", "x-mcp-header": ""}}}),
            json!({"properties": {"a": {"type": "string", "x-mcp-header": "has space"}}}),
            json!({"properties": {"a": {"type": "object", "x-mcp-header": "A"}}}),
            json!({"properties": {"a": {"type": "string", "x-mcp-header": "A"}, "b": {"type": "string", "x-mcp-header": "a"}}}),
        ] {
            assert!(bindings(&schema).is_err(), "{schema}");
        }
    }
}
