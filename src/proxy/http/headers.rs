//! The routing headers of MCP 2026-07-28 (SEP-2243 "HTTP Standardization"): `Mcp-Method` and
//! `Mcp-Name` mirror the body so that intermediaries can route without parsing it. A request
//! whose headers say one thing and whose body says another is how a call slips past a filter
//! that reads only headers, so a mismatch is refused (`-32020`, HTTP 400) and recorded.

use base64::Engine;
use base64::prelude::BASE64_STANDARD;
use http::HeaderMap;
use serde_json::Value;

/// JSON-RPC error code of a header/body mismatch (MCP 2026-07-28, "HeaderMismatch").
pub(crate) const HEADER_MISMATCH: i64 = -32020;

const BASE64_PREFIX: &str = "=?base64?";
const BASE64_SUFFIX: &str = "?=";

/// The body member `Mcp-Name` mirrors for `method`, if it has one.
pub(crate) fn name_member(method: &str) -> Option<&'static str> {
    match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => Some("uri"),
        "tasks/get" | "tasks/update" | "tasks/cancel" => Some("taskId"),
        _ => None,
    }
}

/// The one value of a header; a repeated one is an error (intermediaries that pick
/// different copies would route differently).
fn single<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, String> {
    let mut values = headers.get_all(name).iter();
    let Some(v) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(format!("{name} is repeated"));
    }
    v.to_str()
        .map(Some)
        .map_err(|_| format!("{name} holds characters a header value may not"))
}

/// A header value, `=?base64?…?=` decoded.
fn decoded(value: &str, name: &str) -> Result<String, String> {
    match value
        .strip_prefix(BASE64_PREFIX)
        .and_then(|v| v.strip_suffix(BASE64_SUFFIX))
    {
        Some(inner) => BASE64_STANDARD
            .decode(inner)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| format!("{name} is not valid base64 UTF-8")),
        None => Ok(value.to_string()),
    }
}

/// Checks `Mcp-Method`, `Mcp-Name` and the `MCP-Protocol-Version` header against one
/// request or notification `body` of a 2026-07-28 client; `Err` says what differs.
pub(crate) fn check(headers: &HeaderMap, version: &str, body: &Value) -> Result<(), String> {
    let Some(method) = body.get("method").and_then(Value::as_str) else {
        return Ok(());
    };
    match single(headers, "mcp-method")? {
        // Notification POSTs are exempt from the presence rule (the 2026-07-28 transport
        // requires `Mcp-Method` on requests; the TypeScript SDK's client sends none on its
        // `notifications/cancelled`, and the SDKs' servers take it: refusing it lost the
        // cancellation, helper-122). A header present must still match.
        None if body.get("id").is_none() => {}
        None => return Err("the Mcp-Method header is missing".into()),
        Some(h) if h != method => {
            return Err(format!(
                "Mcp-Method {h:?} does not match the body's method {method:?}"
            ));
        }
        Some(_) => {}
    }
    let params = body.get("params");
    if let Some(member) = name_member(method) {
        let expected = params.and_then(|p| p.get(member)).and_then(Value::as_str);
        match (single(headers, "mcp-name")?, expected) {
            (None, Some(_)) => {
                return Err(format!("the Mcp-Name header is missing for {method}"));
            }
            // Nothing to mirror: the server answers the request as it is.
            (None, None) => {}
            (Some(h), Some(expected)) => {
                let h = decoded(h, "Mcp-Name")?;
                if h != expected {
                    return Err(format!(
                        "Mcp-Name {h:?} does not match the body's {member} {expected:?}"
                    ));
                }
            }
            (Some(h), None) => {
                return Err(format!(
                    "Mcp-Name {h:?} names a {member} the body does not have"
                ));
            }
        }
    }
    let meta_version = params
        .and_then(|p| p.get("_meta"))
        .and_then(|m| m.get("io.modelcontextprotocol/protocolVersion"))
        .and_then(Value::as_str);
    if let Some(v) = meta_version
        && v != version
    {
        return Err(format!(
            "MCP-Protocol-Version {version:?} does not match the body's _meta protocolVersion {v:?}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use serde_json::json;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn headers_must_say_what_the_body_says() {
        let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "delete_file", "arguments": {}}});
        let v = "2026-07-28";
        assert!(
            check(
                &headers(&[("mcp-method", "tools/call"), ("mcp-name", "delete_file")]),
                v,
                &call
            )
            .is_ok()
        );
        // A filter reading headers would see a harmless tool.
        let e = check(
            &headers(&[("mcp-method", "tools/call"), ("mcp-name", "read_file")]),
            v,
            &call,
        )
        .unwrap_err();
        assert!(e.contains("does not match"), "{e}");
        assert!(
            check(
                &headers(&[("mcp-method", "tools/list"), ("mcp-name", "delete_file")]),
                v,
                &call
            )
            .is_err()
        );
        assert!(check(&headers(&[("mcp-method", "tools/call")]), v, &call).is_err());
        assert!(check(&headers(&[("mcp-name", "delete_file")]), v, &call).is_err());
        let twice = headers(&[
            ("mcp-method", "tools/call"),
            ("mcp-name", "delete_file"),
            ("mcp-name", "read_file"),
        ]);
        assert!(check(&twice, v, &call).unwrap_err().contains("repeated"));
        // Base64-wrapped names decode before comparing.
        let wrapped = format!("=?base64?{}?=", BASE64_STANDARD.encode("delete_file"));
        assert!(
            check(
                &headers(&[("mcp-method", "tools/call"), ("mcp-name", &wrapped)]),
                v,
                &call
            )
            .is_ok()
        );
        assert!(
            check(
                &headers(&[("mcp-method", "tools/call"), ("mcp-name", "=?base64?%%%?=")]),
                v,
                &call
            )
            .is_err()
        );
        // A notification needs no Mcp-Method (the TypeScript SDK sends none on a
        // cancellation, helper-122), but one that is sent must match.
        let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}});
        assert!(check(&headers(&[]), v, &cancel).is_ok());
        assert!(check(&headers(&[("mcp-method", "tools/call")]), v, &cancel).is_err());
        assert!(
            check(&headers(&[]), v, &call)
                .unwrap_err()
                .contains("missing")
        );
        // The version in _meta must agree with the header.
        let meta = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {"_meta": {"io.modelcontextprotocol/protocolVersion": "2025-11-25"}}});
        assert!(check(&headers(&[("mcp-method", "tools/list")]), v, &meta).is_err());
    }
}
