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

/// Per upstream: tool name -> its bindings (tools without any are not kept).
#[derive(Debug, Default)]
pub(crate) struct ParamHeaders(Mutex<HashMap<String, Vec<Binding>>>);

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
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for tool in tools {
            let Some(name) = tool.get("name").and_then(Value::as_str) else {
                continue;
            };
            match tool.get("inputSchema").map(bindings) {
                Some(Ok(b)) if !b.is_empty() => {
                    map.insert(name.to_string(), b);
                }
                Some(Err(why)) => {
                    tracing::warn!(tool = name, reason = %why, "a tool's x-mcp-header declarations are invalid; its calls get no Mcp-Param headers");
                    map.remove(name);
                }
                _ => {
                    map.remove(name);
                }
            }
        }
    }

    /// The headers for a call of `tool` with `arguments`: one per bound argument that is
    /// present and not null.
    pub(crate) fn headers_for(
        &self,
        tool: &str,
        arguments: &Value,
    ) -> Vec<(HeaderName, HeaderValue)> {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let Some(bindings) = map.get(tool) else {
            return Vec::new();
        };
        bindings
            .iter()
            .filter_map(|b| {
                let mut v = arguments;
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
            .collect()
    }

    /// Whether any tool of this upstream has bindings (so a call's arguments need reading).
    pub(crate) fn knows(&self, tool: &str) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(tool)
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
        let mut got: Vec<(String, String)> = p
            .headers_for(
                "query",
                &json!({"region": "eu-wést", "limit": 5, "opts": {"dry": true}, "text": "x"}),
            )
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
        assert!(p.headers_for("query", &json!({"region": null})).is_empty());
        // A relisted tool without declarations forgets them.
        p.learn(&listed(
            json!([{"name": "query", "inputSchema": {"type": "object"}}]),
        ));
        assert!(!p.knows("query"));
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
