//! `[gateway]`: the HTTP front door (MCP Streamable HTTP), its TLS, its credentials and its
//! safe defaults. Only `mcp-audit-proxy gateway` reads it; the stdio wrapper ignores it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{ConfigError, Source};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGateway {
    listen: Option<Spanned<String>>,
    public_url: Option<Spanned<String>>,
    allowed_origins: Option<Vec<Spanned<String>>>,
    allowed_hosts: Option<Vec<Spanned<String>>>,
    allow_anonymous: Option<bool>,
    authorization_servers: Option<Vec<Spanned<String>>>,
    header_read_timeout_ms: Option<Spanned<u64>>,
    session_idle_timeout_ms: Option<Spanned<u64>>,
    max_sessions: Option<Spanned<u64>>,
    max_sessions_per_principal: Option<Spanned<u64>>,
    max_connections: Option<Spanned<u64>>,
    tls: Option<Spanned<RawTls>>,
    #[serde(default)]
    api_key: Vec<Spanned<RawApiKey>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: Option<Spanned<String>>,
    key: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApiKey {
    user_id: Spanned<String>,
    sha256: Spanned<String>,
    #[serde(default)]
    roles: Vec<String>,
}

/// `[gateway]`, validated.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// `listen`: the address and port to bind (default `127.0.0.1:8080`: loopback only).
    pub listen: SocketAddr,
    /// `public_url`: the base URL clients use (`https://mcp.example.com`), for the OAuth 2.0
    /// Protected Resource Metadata (RFC 9728) and `WWW-Authenticate`; unset: from the request's
    /// `Host`.
    pub public_url: Option<String>,
    /// `allowed_origins`: browser origins (`scheme://host[:port]`) that may call the gateway;
    /// a request with any other `Origin` is refused with 403 (DNS rebinding, MCP "Streamable
    /// HTTP: Security Warning"). Requests without `Origin` (non-browser clients) pass.
    pub allowed_origins: Vec<String>,
    /// `allowed_hosts`: `Host` values (without port) accepted; empty: the loopback names when
    /// listening on loopback, any host otherwise (set it when listening on other addresses).
    pub allowed_hosts: Vec<String>,
    /// `allow_anonymous`: serve requests without a credential (recorded as user `anonymous`).
    pub allow_anonymous: bool,
    /// `authorization_servers`: issuers listed in the Protected Resource Metadata.
    pub authorization_servers: Vec<String>,
    /// `header_read_timeout_ms`: a client that takes longer to send its headers is dropped
    /// (slowloris).
    pub header_read_timeout: Duration,
    /// `session_idle_timeout_ms`: a session without requests or open streams this long ends.
    pub session_idle_timeout: Duration,
    /// `max_sessions`: sessions (one server process each) open at once, all principals.
    pub max_sessions: usize,
    /// `max_sessions_per_principal`: sessions one principal may hold open.
    pub max_sessions_per_principal: usize,
    /// `max_connections`: TCP connections served at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// `[gateway.tls]`: serve HTTPS with this PEM certificate chain and key; unset: plain HTTP.
    pub tls: Option<TlsFiles>,
    /// `[[gateway.api_key]]`: API keys, stored as SHA-256 hashes.
    pub api_keys: Vec<ApiKey>,
}

/// PEM files of the gateway's certificate chain and private key.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// `cert`: the certificate chain, leaf first.
    pub cert: PathBuf,
    /// `key`: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// One configured API key.
#[derive(Debug, Clone)]
pub struct ApiKey {
    /// `user_id`: the principal a request with this key acts as.
    pub user_id: String,
    /// `sha256`: the SHA-256 of the key, 32 bytes (given as 64 hex digits).
    pub sha256: [u8; 32],
    /// `roles`: recorded with the principal.
    pub roles: Vec<String>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            allow_anonymous: false,
            authorization_servers: Vec::new(),
            header_read_timeout: Duration::from_secs(10),
            session_idle_timeout: Duration::from_secs(1800),
            max_sessions: 256,
            max_sessions_per_principal: 32,
            max_connections: 1024,
            tls: None,
            api_keys: Vec::new(),
        }
    }
}

fn strings(
    at: &Source<'_>,
    key: &str,
    v: Option<Vec<Spanned<String>>>,
) -> Result<Vec<String>, ConfigError> {
    v.unwrap_or_default()
        .into_iter()
        .map(|s| at.non_empty(key, s))
        .collect()
}

pub(super) fn compile(at: &Source<'_>, raw: RawGateway) -> Result<GatewayConfig, ConfigError> {
    let d = GatewayConfig::default();
    let listen = match raw.listen {
        Some(l) => {
            let span = l.span();
            let text = at.non_empty("gateway.listen", l)?;
            text.parse::<SocketAddr>().map_err(|_| {
                at.invalid(
                    span,
                    &format!("`gateway.listen` = {text:?} is not an IP address and port"),
                    "write it as \"127.0.0.1:8080\" or \"[::1]:8443\" (a host name is not accepted: bind an address)",
                )
            })?
        }
        None => d.listen,
    };
    let public_url = match raw.public_url {
        Some(u) => {
            let span = u.span();
            let text = at.non_empty("gateway.public_url", u)?;
            if !(text.starts_with("https://") || text.starts_with("http://")) {
                return Err(at.invalid(
                    span,
                    "`gateway.public_url` must start with https:// or http://",
                    "give the base URL clients use, e.g. \"https://mcp.example.com\"",
                ));
            }
            Some(text.trim_end_matches('/').to_string())
        }
        None => None,
    };
    let mut allowed_origins = Vec::new();
    for o in raw.allowed_origins.unwrap_or_default() {
        let span = o.span();
        let text = at.non_empty("gateway.allowed_origins", o)?;
        if !text.contains("://") || text.ends_with('/') {
            return Err(at.invalid(
                span,
                &format!("`gateway.allowed_origins` entry {text:?} is not an origin"),
                "an origin is scheme://host[:port] with no path, e.g. \"https://app.example.com\"",
            ));
        }
        allowed_origins.push(text.to_ascii_lowercase());
    }
    let allowed_hosts = strings(at, "gateway.allowed_hosts", raw.allowed_hosts)?
        .into_iter()
        .map(|h| h.to_ascii_lowercase())
        .collect();
    let authorization_servers = strings(
        at,
        "gateway.authorization_servers",
        raw.authorization_servers,
    )?;
    let ms = |key, v, default: Duration, range| {
        at.ranged(key, v, default.as_millis() as u64, range)
            .map(Duration::from_millis)
    };
    let header_read_timeout = ms(
        "gateway.header_read_timeout_ms",
        raw.header_read_timeout_ms,
        d.header_read_timeout,
        100..=600_000,
    )?;
    let session_idle_timeout = ms(
        "gateway.session_idle_timeout_ms",
        raw.session_idle_timeout_ms,
        d.session_idle_timeout,
        1_000..=(7 * 86_400_000),
    )?;
    let max_sessions = at.ranged(
        "gateway.max_sessions",
        raw.max_sessions,
        d.max_sessions as u64,
        1..=100_000,
    )? as usize;
    let max_sessions_per_principal = at.ranged(
        "gateway.max_sessions_per_principal",
        raw.max_sessions_per_principal,
        d.max_sessions_per_principal as u64,
        1..=100_000,
    )? as usize;
    let max_connections = at.ranged(
        "gateway.max_connections",
        raw.max_connections,
        d.max_connections as u64,
        1..=1_000_000,
    )? as usize;
    let tls = match raw.tls {
        Some(t) => {
            let span = t.span();
            let t = t.into_inner();
            let (Some(cert), Some(key)) = (t.cert, t.key) else {
                return Err(at.invalid(
                    span,
                    "`[gateway.tls]` needs both `cert` and `key`",
                    "give the PEM certificate chain as cert = \"cert.pem\" and its private key as key = \"key.pem\", or remove [gateway.tls] to serve plain HTTP",
                ));
            };
            let base = at.base();
            Some(TlsFiles {
                cert: base.join(at.non_empty("gateway.tls.cert", cert)?),
                key: base.join(at.non_empty("gateway.tls.key", key)?),
            })
        }
        None => None,
    };
    let mut api_keys = Vec::new();
    for k in raw.api_key {
        let k = k.into_inner();
        let user_id = at.non_empty("gateway.api_key.user_id", k.user_id)?;
        let span = k.sha256.span();
        let hex = k.sha256.into_inner();
        let Some(sha256) = parse_sha256(&hex) else {
            return Err(at.invalid(
                span,
                "`gateway.api_key.sha256` is not 64 hex digits",
                "store the key's SHA-256, never the key: `printf %s \"$KEY\" | sha256sum`",
            ));
        };
        if api_keys.iter().any(|a: &ApiKey| a.sha256 == sha256) {
            return Err(at.invalid(
                span,
                "the same API key hash is configured twice",
                "give each principal its own key",
            ));
        }
        api_keys.push(ApiKey {
            user_id,
            sha256,
            roles: k.roles,
        });
    }
    Ok(GatewayConfig {
        listen,
        public_url,
        allowed_origins,
        allowed_hosts,
        allow_anonymous: raw.allow_anonymous.unwrap_or(false),
        authorization_servers,
        header_read_timeout,
        session_idle_timeout,
        max_sessions,
        max_sessions_per_principal,
        max_connections,
        tls,
        api_keys,
    })
}

/// 64 hex digits as 32 bytes.
fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
        let text = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(text, 16).ok()?;
    }
    Some(out)
}
