//! CORS (the Fetch standard's "CORS protocol") for MCP clients running in a browser page on
//! another origin. Off unless `gateway.cors = true`, and then only for the configured
//! `allowed_origins`, each echoed by name (never `*`): CORS only relaxes what a browser lets a
//! page read, so the gateway's own checks (Origin and Host against DNS rebinding, the
//! credential) still run on every request; the preflight is the one request answered before
//! authentication, because browsers send it without credentials.
//!
//! `Access-Control-Allow-Credentials` is not sent: the MCP credentials (bearer tokens, API
//! keys) travel in `Authorization`, which a page sends when the preflight allows the header,
//! without the browser's cookie or client-certificate credentials mode.

use http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_HEADERS,
    ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY,
};
use http::{HeaderMap, HeaderValue, Response, StatusCode};

use super::body::ResponseBody;
use crate::config::GatewayConfig;

/// Request headers an MCP client sends (Streamable HTTP, and the 2026-07-28 routing headers),
/// the gateway's other credential header (`x-api-key`), and the W3C Trace Context and Baggage
/// headers that pages with OpenTelemetry's fetch instrumentation add to every request (the
/// gateway reads `traceparent` for `trace_id`); `mcp-param-*` are allowed too.
const REQUEST_HEADERS: [&str; 12] = [
    "authorization",
    "x-api-key",
    "traceparent",
    "tracestate",
    "baggage",
    "content-type",
    "accept",
    "mcp-session-id",
    "mcp-protocol-version",
    "last-event-id",
    "mcp-method",
    "mcp-name",
];

/// Response headers a page may read: the session id it must send back, the negotiated
/// version, and the challenge that names the authorization metadata (RFC 9728).
const EXPOSED: &str = "mcp-session-id, mcp-protocol-version, www-authenticate";

/// How long a browser may cache a preflight's answer, in seconds.
const MAX_AGE_S: &str = "600";

/// The request's `Origin`, when CORS is on and it is one of `allowed_origins`.
pub(crate) fn allowed(config: &GatewayConfig, headers: &HeaderMap) -> Option<HeaderValue> {
    if !config.cors {
        return None;
    }
    let origin = headers.get(ORIGIN)?;
    let text = origin.to_str().ok()?.to_ascii_lowercase();
    config
        .allowed_origins
        .contains(&text)
        .then(|| origin.clone())
}

/// The answer to a preflight (`OPTIONS` with `Access-Control-Request-Method`) from `origin`:
/// 204 allowing the MCP methods and the requested headers that are MCP's, or 403 naming the
/// first header that is not (the browser then never sends the request).
pub(crate) fn preflight(origin: HeaderValue, headers: &HeaderMap) -> Response<ResponseBody> {
    let refuse = |why: String| {
        tracing::warn!(origin = ?origin, reason = %why, "cors preflight refused");
        let mut resp = super::plain(StatusCode::FORBIDDEN, format!("CORS: {why}"));
        resp.headers_mut()
            .insert(VARY, HeaderValue::from_static("origin"));
        resp
    };
    // MCP's Streamable HTTP uses these three methods only ("Transports": POST to send, GET
    // to listen, DELETE to end a session).
    let method = headers
        .get(ACCESS_CONTROL_REQUEST_METHOD)
        .map(|m| String::from_utf8_lossy(m.as_bytes()).into_owned())
        .unwrap_or_default();
    if !matches!(method.as_str(), "GET" | "POST" | "DELETE") {
        return refuse(format!(
            "the method {method:?} is not one MCP's Streamable HTTP uses (GET, POST, DELETE); it is not allowed"
        ));
    }
    let requested = headers
        .get_all(ACCESS_CONTROL_REQUEST_HEADERS)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .collect::<Vec<_>>();
    if let Some(bad) = requested
        .iter()
        .find(|h| !REQUEST_HEADERS.contains(&h.as_str()) && !h.starts_with("mcp-param-"))
    {
        return refuse(format!(
            "the header {bad:?} is not one an MCP client sends; it is not allowed"
        ));
    }
    let mut resp = Response::new(super::body::full(bytes::Bytes::new()));
    *resp.status_mut() = StatusCode::NO_CONTENT;
    let h = resp.headers_mut();
    h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    h.insert(
        ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, DELETE"),
    );
    if let Ok(v) = HeaderValue::from_str(&requested.join(", "))
        && !requested.is_empty()
    {
        h.insert(ACCESS_CONTROL_ALLOW_HEADERS, v);
    }
    h.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static(MAX_AGE_S));
    h.insert(VARY, HeaderValue::from_static("origin"));
    resp
}

/// Lets the page of `origin` read `resp` and the MCP headers on it.
pub(crate) fn expose(resp: &mut Response<ResponseBody>, origin: HeaderValue) {
    let h = resp.headers_mut();
    h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    h.insert(
        ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSED),
    );
    h.append(VARY, HeaderValue::from_static("origin"));
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use std::path::Path;

    #[test]
    fn cors_without_allowed_origins_is_refused_at_start_naming_the_line() {
        let err = Config::parse(
            Path::new("/etc/proxy.toml"),
            "[gateway]\nlisten = \"127.0.0.1:0\"\ncors = true\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("proxy.toml:3:") && err.contains("allowed_origins"),
            "{err}"
        );
        let ok = Config::parse(
            Path::new("/etc/proxy.toml"),
            "[gateway]\ncors = true\nallowed_origins = [\"https://App.example.com\"]\n",
        )
        .unwrap();
        assert!(ok.gateway.cors);
        assert_eq!(ok.gateway.allowed_origins, ["https://app.example.com"]);
    }
}
