//! Who is calling, and whether the request may come in at all: credentials (API keys, stored
//! as SHA-256 hashes), `Host` and `Origin` checks (DNS rebinding), and the OAuth 2.0 Protected
//! Resource Metadata (RFC 9728) that tells clients where to get a token.
//!
//! Identity comes only from a verified credential: never from a header such as `X-User`, nor
//! from the request's `_meta`.

use http::HeaderMap;
use http::header::{AUTHORIZATION, HOST, ORIGIN};
use sha2::{Digest, Sha256};

use crate::config::GatewayConfig;

/// The authenticated caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Principal {
    /// Recorded as `user_id`; sessions are bound to it.
    pub(crate) user_id: String,
    /// Recorded with the request.
    pub(crate) roles: Vec<String>,
    /// `api_key` or `anonymous`.
    pub(crate) method: &'static str,
}

/// Why a request is refused before it reaches a session; each becomes an audit event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refused {
    /// 401: no credential.
    NoCredential,
    /// 401: a credential that matches no configured key.
    BadCredential,
    /// 403: an `Origin` not in `gateway.allowed_origins`.
    Origin(String),
    /// 403: a `Host` not in `gateway.allowed_hosts`.
    Host(String),
}

impl Refused {
    pub(crate) fn status(&self) -> u16 {
        match self {
            Refused::NoCredential | Refused::BadCredential => 401,
            Refused::Origin(_) | Refused::Host(_) => 403,
        }
    }

    pub(crate) fn reason(&self) -> String {
        match self {
            Refused::NoCredential => {
                "no credential: send `Authorization: Bearer <API key>` or `X-API-Key`".into()
            }
            Refused::BadCredential => "the credential matches no configured API key".into(),
            Refused::Origin(o) => {
                format!("Origin {o:?} is not in gateway.allowed_origins (DNS rebinding protection)")
            }
            Refused::Host(h) => {
                format!("Host {h:?} is not in gateway.allowed_hosts (DNS rebinding protection)")
            }
        }
    }
}

/// The credential of a request: `Authorization: Bearer …`, else `X-API-Key`.
fn presented(headers: &HeaderMap) -> Option<&[u8]> {
    if let Some(v) = headers.get(AUTHORIZATION) {
        let v = v.as_bytes();
        if v.len() > 7 && v[..7].eq_ignore_ascii_case(b"bearer ") {
            return Some(v[7..].trim_ascii());
        }
        return Some(v);
    }
    headers.get("x-api-key").map(|v| v.as_bytes().trim_ascii())
}

/// Authenticates a request by its credential.
pub(crate) fn authenticate(
    config: &GatewayConfig,
    headers: &HeaderMap,
) -> Result<Principal, Refused> {
    let Some(key) = presented(headers) else {
        if config.allow_anonymous {
            return Ok(Principal {
                user_id: "anonymous".into(),
                roles: Vec::new(),
                method: "anonymous",
            });
        }
        return Err(Refused::NoCredential);
    };
    let digest: [u8; 32] = Sha256::digest(key).into();
    // Every configured hash is compared in full, whichever matches.
    let mut found = None;
    for k in &config.api_keys {
        let diff = k
            .sha256
            .iter()
            .zip(&digest)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff == 0 {
            found = Some(k);
        }
    }
    match found {
        Some(k) => Ok(Principal {
            user_id: k.user_id.clone(),
            roles: k.roles.clone(),
            method: "api_key",
        }),
        None => Err(Refused::BadCredential),
    }
}

/// Checks `Host` and `Origin` against the configuration (MCP "Streamable HTTP: Security
/// Warning": servers must validate `Origin`; binding to loopback is not enough against DNS
/// rebinding, so on loopback the `Host` must also name loopback).
pub(crate) fn check_origin(config: &GatewayConfig, headers: &HeaderMap) -> Result<(), Refused> {
    if let Some(host) = headers.get(HOST) {
        let text = String::from_utf8_lossy(host.as_bytes()).to_ascii_lowercase();
        let name = host_name(&text);
        let ok = if !config.allowed_hosts.is_empty() {
            config.allowed_hosts.iter().any(|h| h == name || *h == text)
        } else if config.listen.ip().is_loopback() {
            matches!(name, "localhost" | "127.0.0.1" | "[::1]" | "::1")
        } else {
            true
        };
        if !ok {
            return Err(Refused::Host(text));
        }
    }
    if let Some(origin) = headers.get(ORIGIN) {
        let text = String::from_utf8_lossy(origin.as_bytes()).to_ascii_lowercase();
        if !config.allowed_origins.contains(&text) {
            return Err(Refused::Origin(text));
        }
    }
    Ok(())
}

/// `host[:port]` → `host` (`[::1]:8080` → `[::1]`).
fn host_name(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

/// The base URL clients reach the gateway at: `gateway.public_url`, else from `Host`.
pub(crate) fn base_url(config: &GatewayConfig, headers: &HeaderMap) -> String {
    if let Some(u) = &config.public_url {
        return u.clone();
    }
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let host = headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| config.listen.to_string());
    format!("{scheme}://{host}")
}

/// The `WWW-Authenticate` value of a 401 (RFC 6750 section 3, RFC 9728 section 5.1).
pub(crate) fn challenge(
    config: &GatewayConfig,
    headers: &HeaderMap,
    upstream: &str,
    refused: &Refused,
) -> String {
    let metadata = format!(
        "{}/.well-known/oauth-protected-resource/mcp/{upstream}",
        base_url(config, headers)
    );
    match refused {
        Refused::BadCredential => {
            format!("Bearer error=\"invalid_token\", resource_metadata=\"{metadata}\"")
        }
        _ => format!("Bearer resource_metadata=\"{metadata}\""),
    }
}

/// The Protected Resource Metadata document of `/mcp/<upstream>` (RFC 9728 section 2).
pub(crate) fn resource_metadata(
    config: &GatewayConfig,
    headers: &HeaderMap,
    upstream: &str,
) -> serde_json::Value {
    serde_json::json!({
        "resource": format!("{}/mcp/{upstream}", base_url(config, headers)),
        "authorization_servers": config.authorization_servers,
        "bearer_methods_supported": ["header"],
        "resource_name": format!("MCP server {upstream} behind mcp-audit-proxy"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn config(text: &str) -> GatewayConfig {
        crate::config::Config::parse(std::path::Path::new("/etc/proxy.toml"), text)
            .unwrap()
            .gateway
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    // sha256("secret-key-1")
    const KEY: &str = "[[gateway.api_key]]\nuser_id = \"alice\"\nroles = [\"ops\"]\nsha256 = \"";

    fn with_key(key: &str) -> GatewayConfig {
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        config(&format!("{KEY}{hex}\"\n"))
    }

    #[test]
    fn keys_authenticate_by_hash_and_nothing_else_does() {
        let c = with_key("secret-key-1");
        let ok = authenticate(&c, &headers(&[("authorization", "Bearer secret-key-1")])).unwrap();
        assert_eq!(ok.user_id, "alice");
        assert_eq!(ok.roles, vec!["ops".to_string()]);
        let ok = authenticate(&c, &headers(&[("x-api-key", "secret-key-1")])).unwrap();
        assert_eq!(ok.method, "api_key");
        assert_eq!(
            authenticate(&c, &headers(&[("authorization", "Bearer secret-key-2")])),
            Err(Refused::BadCredential)
        );
        assert_eq!(
            authenticate(&c, &headers(&[("x-user", "alice")])),
            Err(Refused::NoCredential)
        );
    }

    #[test]
    fn origins_and_hosts_are_checked_on_loopback() {
        let c = config("[gateway]\nallowed_origins = [\"https://app.example.com\"]\n");
        assert!(check_origin(&c, &headers(&[("host", "127.0.0.1:8080")])).is_ok());
        assert!(check_origin(&c, &headers(&[("host", "localhost")])).is_ok());
        assert!(check_origin(&c, &headers(&[("host", "[::1]:9")])).is_ok());
        assert_eq!(
            check_origin(&c, &headers(&[("host", "evil.example:8080")])),
            Err(Refused::Host("evil.example:8080".into()))
        );
        assert!(
            check_origin(
                &c,
                &headers(&[("host", "localhost"), ("origin", "https://APP.example.com")])
            )
            .is_ok()
        );
        assert!(matches!(
            check_origin(
                &c,
                &headers(&[("host", "localhost"), ("origin", "http://localhost:3000")])
            ),
            Err(Refused::Origin(_))
        ));
    }
}
