//! `[gateway]`: the HTTP front door (MCP Streamable HTTP), its TLS, its credentials and its
//! safe defaults. Only `mcp-audit-proxy gateway` reads it; the stdio wrapper ignores it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use sha2::Digest;
use toml::Spanned;

use super::{ConfigError, Source};

/// The `user_id` of a client without a credential (`gateway.allow_anonymous`); no key,
/// certificate or token may name a principal so.
pub const ANONYMOUS: &str = "anonymous";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGateway {
    listen: Option<Spanned<String>>,
    public_url: Option<Spanned<String>>,
    allowed_origins: Option<Vec<Spanned<String>>>,
    cors: Option<Spanned<bool>>,
    allowed_hosts: Option<Vec<Spanned<String>>>,
    allow_anonymous: Option<bool>,
    metrics_public: Option<bool>,
    trusted_proxies: Option<Vec<Spanned<String>>>,
    authorization_servers: Option<Vec<Spanned<String>>>,
    header_read_timeout_ms: Option<Spanned<u64>>,
    session_idle_timeout_ms: Option<Spanned<u64>>,
    session_evict_idle_ms: Option<Spanned<u64>>,
    max_sessions: Option<Spanned<u64>>,
    max_sessions_per_principal: Option<Spanned<u64>>,
    max_streams_per_principal: Option<Spanned<u64>>,
    max_connections: Option<Spanned<u64>>,
    max_connections_per_principal: Option<Spanned<u64>>,
    pool_max_children: Option<Spanned<u64>>,
    pool_max_in_flight: Option<Spanned<u64>>,
    pool_idle_timeout_ms: Option<Spanned<u64>>,
    tls: Option<Spanned<RawTls>>,
    #[serde(default)]
    api_key: Vec<Spanned<RawApiKey>>,
    #[serde(default)]
    client_cert: Vec<Spanned<RawApiKey>>,
    jwt: Option<Spanned<RawJwt>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJwt {
    issuer: Option<Spanned<String>>,
    audience: Option<Spanned<String>>,
    algorithms: Option<Spanned<Vec<String>>>,
    key_file: Option<Spanned<String>>,
    secret_file: Option<Spanned<String>>,
    jwks_file: Option<Spanned<String>>,
    leeway_s: Option<Spanned<u64>>,
    user_claim: Option<Spanned<String>>,
    roles_claim: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: Option<Spanned<String>>,
    key: Option<Spanned<String>>,
    client_ca: Option<Spanned<String>>,
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
    /// `cors`: answer CORS preflights and expose the MCP headers to pages of the
    /// `allowed_origins` (each named, never `*`), so that a browser client on another origin
    /// can call the gateway. Off by default: no CORS header is ever sent.
    pub cors: bool,
    /// `allowed_hosts`: `Host` values (without port) accepted; empty: the loopback names when
    /// listening on loopback, any host otherwise (set it when listening on other addresses).
    pub allowed_hosts: Vec<String>,
    /// `allow_anonymous`: serve requests without a credential (recorded as user `anonymous`).
    pub allow_anonymous: bool,
    /// `metrics_public`: serve `/metrics` without a credential (default `false`: the same
    /// credential as the MCP endpoints, since its series name every upstream and count its
    /// calls, refusals and blocks).
    pub metrics_public: bool,
    /// `trusted_proxies`: addresses or networks (`10.0.0.0/8`) of reverse proxies whose
    /// `X-Forwarded-For` is believed; from anyone else it is ignored.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// `authorization_servers`: issuers listed in the Protected Resource Metadata.
    pub authorization_servers: Vec<String>,
    /// `header_read_timeout_ms`: a client that takes longer to send its headers is dropped
    /// (slowloris).
    pub header_read_timeout: Duration,
    /// `session_idle_timeout_ms`: a session without requests or open streams this long ends.
    pub session_idle_timeout: Duration,
    /// `session_evict_idle_ms`: a principal at `max_sessions_per_principal` that opens another
    /// session ends its session idle longest, if it has been idle at least this long (no
    /// request, no open stream), instead of being refused (429). Clients that end without
    /// DELETE (the TypeScript SDK's `Client.close()` sends none) would otherwise lock their
    /// principal out until `session_idle_timeout_ms` (helper-92 F2).
    pub session_evict_idle: Duration,
    /// `max_sessions`: sessions (one server process each) open at once, all principals.
    pub max_sessions: usize,
    /// `max_sessions_per_principal`: sessions one principal may hold open.
    pub max_sessions_per_principal: usize,
    /// `max_streams_per_principal`: HTTP requests one principal may have open at once (POSTs
    /// awaiting their answer, SSE streams, GET streams), over all its sessions and connections.
    pub max_streams_per_principal: usize,
    /// `max_connections`: TCP connections served at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// `max_connections_per_principal`: connections one principal may have requests on at
    /// once. A connection counts for a principal from its first authenticated request until it
    /// closes; a request that would pass the cap is a 429 and its connection is closed, so one
    /// credential cannot take the connections every other client needs.
    pub max_connections_per_principal: usize,
    /// `pool_max_children`: server processes one principal's sessionless (2026-07-28)
    /// requests may share, per `command` upstream (each counts toward `max_sessions`).
    pub pool_max_children: usize,
    /// `pool_max_in_flight`: requests one shared server process serves at once; past it on
    /// every process of a full pool, a request is refused with 429.
    pub pool_max_in_flight: usize,
    /// `pool_idle_timeout_ms`: a shared server process that served no request this long ends.
    pub pool_idle_timeout: Duration,
    /// `[gateway.tls]`: serve HTTPS with this PEM certificate chain and key; unset: plain HTTP.
    pub tls: Option<TlsFiles>,
    /// `[[gateway.api_key]]`: API keys, stored as SHA-256 hashes.
    pub api_keys: Vec<ApiKey>,
    /// `[[gateway.client_cert]]`: client certificates (verified against `tls.client_ca`)
    /// that identify a principal, by the SHA-256 of the certificate (DER).
    pub client_certs: Vec<ApiKey>,
    /// `[gateway.jwt]`: bearer JWTs from an identity provider.
    pub jwt: Option<std::sync::Arc<JwtSettings>>,
}

/// `[gateway.jwt]`, with its keys loaded: how bearer JWTs are verified (RFC 7519 section 7.2;
/// `iss` and `aud` compared exactly, `exp` and `nbf` checked with `leeway_s` of clock skew).
pub struct JwtSettings {
    /// `issuer`: the `iss` every token must carry.
    pub issuer: String,
    /// `audience`: the `aud` every token must carry (this gateway's resource URL, say).
    pub audience: String,
    /// `algorithms`: accepted `alg` values; a token signed otherwise is refused.
    pub algorithms: Vec<jsonwebtoken::Algorithm>,
    /// The verification keys, with their `kid` where a JWKS gives one.
    pub keys: Vec<(Option<String>, jsonwebtoken::DecodingKey)>,
    /// SHA-256 of the key material as read (the secret, PEM or JWK Set file's bytes): a
    /// reload that swaps a key keeping its `kid` (or with none) is told apart by it.
    pub key_digest: [u8; 32],
    /// `leeway_s`: clock skew allowed on `exp` and `nbf`, in seconds.
    pub leeway_s: u64,
    /// `user_claim`: the claim recorded as `user_id` (default `sub`).
    pub user_claim: String,
    /// `roles_claim`: a claim holding the roles (a string or an array of strings).
    pub roles_claim: Option<String>,
}

impl std::fmt::Debug for JwtSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtSettings")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("algorithms", &self.algorithms)
            .field("keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

/// PEM files of the gateway's certificate chain and private key.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// `cert`: the certificate chain, leaf first.
    pub cert: PathBuf,
    /// `key`: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// `client_ca`: CA certificates (PEM) that client certificates are verified against;
    /// a client may then present one (optional: other credentials still work).
    pub client_ca: Option<PathBuf>,
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
            cors: false,
            allowed_hosts: Vec::new(),
            allow_anonymous: false,
            metrics_public: false,
            trusted_proxies: Vec::new(),
            authorization_servers: Vec::new(),
            header_read_timeout: Duration::from_secs(10),
            session_idle_timeout: Duration::from_secs(1800),
            session_evict_idle: Duration::from_secs(60),
            max_sessions: 256,
            max_sessions_per_principal: 32,
            max_streams_per_principal: 128,
            max_connections: 1024,
            max_connections_per_principal: 256,
            pool_max_children: 4,
            pool_max_in_flight: 16,
            pool_idle_timeout: Duration::from_secs(300),
            tls: None,
            api_keys: Vec::new(),
            client_certs: Vec::new(),
            jwt: None,
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
    let cors = match raw.cors {
        Some(c) if *c.get_ref() && allowed_origins.is_empty() => {
            return Err(at.invalid(
                c.span(),
                "`gateway.cors = true` needs `gateway.allowed_origins`",
                "list the origins of the pages that may call the gateway, e.g. allowed_origins = [\"https://app.example.com\"]; the gateway never answers CORS for any origin (*)",
            ));
        }
        Some(c) => c.into_inner(),
        None => false,
    };
    let mut trusted_proxies = Vec::new();
    for p in raw.trusted_proxies.unwrap_or_default() {
        let span = p.span();
        let text = at.non_empty("gateway.trusted_proxies", p)?;
        let net = text
            .parse::<ipnet::IpNet>()
            .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
            .map_err(|_| {
                at.invalid(
                    span,
                    &format!(
                        "`gateway.trusted_proxies` entry {text:?} is not an address or network"
                    ),
                    "write an address (\"10.0.0.7\") or a network (\"10.0.0.0/8\", \"fd00::/8\")",
                )
            })?;
        trusted_proxies.push(net);
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
    let session_evict_idle = ms(
        "gateway.session_evict_idle_ms",
        raw.session_evict_idle_ms,
        d.session_evict_idle,
        // Not 0: a session just opened, before its first request marks it busy, would be
        // taken by a concurrent open.
        100..=(7 * 86_400_000),
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
    let max_streams_per_principal = at.ranged(
        "gateway.max_streams_per_principal",
        raw.max_streams_per_principal,
        d.max_streams_per_principal as u64,
        1..=1_000_000,
    )? as usize;
    let max_connections = at.ranged(
        "gateway.max_connections",
        raw.max_connections,
        d.max_connections as u64,
        1..=1_000_000,
    )? as usize;
    let max_connections_per_principal = at.ranged(
        "gateway.max_connections_per_principal",
        raw.max_connections_per_principal,
        d.max_connections_per_principal as u64,
        1..=1_000_000,
    )? as usize;
    let pool_max_children = at.ranged(
        "gateway.pool_max_children",
        raw.pool_max_children,
        d.pool_max_children as u64,
        1..=1_000,
    )? as usize;
    let pool_max_in_flight = at.ranged(
        "gateway.pool_max_in_flight",
        raw.pool_max_in_flight,
        d.pool_max_in_flight as u64,
        1..=100_000,
    )? as usize;
    let pool_idle_timeout = ms(
        "gateway.pool_idle_timeout_ms",
        raw.pool_idle_timeout_ms,
        d.pool_idle_timeout,
        1_000..=(7 * 86_400_000),
    )?;
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
            let client_ca = match t.client_ca {
                Some(c) => Some(base.join(at.file_path("gateway.tls.client_ca", c)?)),
                None => None,
            };
            Some(TlsFiles {
                cert: base.join(at.file_path("gateway.tls.cert", cert)?),
                key: base.join(at.file_path("gateway.tls.key", key)?),
                client_ca,
            })
        }
        None => None,
    };
    let api_keys = hashed_principals(
        at,
        "gateway.api_key",
        raw.api_key,
        "store the key's SHA-256, never the key: `printf %s \"$KEY\" | sha256sum`",
    )?;
    let client_certs = hashed_principals(
        at,
        "gateway.client_cert",
        raw.client_cert,
        "give the SHA-256 of the client certificate in DER: `openssl x509 -in client.pem -outform der | sha256sum`",
    )?;
    if !client_certs.is_empty() && tls.as_ref().is_none_or(|t| t.client_ca.is_none()) {
        return Err(ConfigError::Invalid {
            path: at.path().to_path_buf(),
            line: None,
            message: "[[gateway.client_cert]] is configured but [gateway.tls] has no client_ca"
                .into(),
            hint: "set client_ca in [gateway.tls] to the CA that issues the client certificates"
                .into(),
        });
    }
    let jwt = match raw.jwt {
        Some(j) => Some(std::sync::Arc::new(jwt(at, j)?)),
        None => None,
    };
    Ok(GatewayConfig {
        jwt,
        listen,
        public_url,
        allowed_origins,
        cors,
        allowed_hosts,
        allow_anonymous: raw.allow_anonymous.unwrap_or(false),
        metrics_public: raw.metrics_public.unwrap_or(false),
        trusted_proxies,
        authorization_servers,
        header_read_timeout,
        session_idle_timeout,
        session_evict_idle,
        max_sessions,
        max_sessions_per_principal,
        max_streams_per_principal,
        max_connections,
        max_connections_per_principal,
        pool_max_children,
        pool_max_in_flight,
        pool_idle_timeout,
        tls,
        api_keys,
        client_certs,
    })
}

/// `[[gateway.api_key]]` or `[[gateway.client_cert]]` tables: a principal per SHA-256.
fn hashed_principals(
    at: &Source<'_>,
    table: &str,
    raw: Vec<Spanned<RawApiKey>>,
    hint: &str,
) -> Result<Vec<ApiKey>, ConfigError> {
    let mut out: Vec<ApiKey> = Vec::new();
    for k in raw {
        let k = k.into_inner();
        let user_span = k.user_id.span();
        let user_id = at.identity(&format!("{table}.user_id"), k.user_id)?;
        if user_id == ANONYMOUS {
            // The name of clients without a credential: a key or certificate named so would
            // share their policy (`[risk.roles]`, `deny_users`) and read as one of them.
            return Err(at.invalid(
                user_span,
                &format!("`{table}.user_id` is \"anonymous\", the name the gateway gives clients without a credential"),
                "name the principal something else",
            ));
        }
        let span = k.sha256.span();
        let hex = k.sha256.into_inner();
        let Some(sha256) = parse_sha256(&hex) else {
            return Err(at.invalid(
                span,
                &format!("`{table}.sha256` is not 64 hex digits"),
                hint,
            ));
        };
        if out.iter().any(|a| a.sha256 == sha256) {
            return Err(at.invalid(
                span,
                &format!("the same hash is in two [[{table}]] tables"),
                "give each principal its own credential",
            ));
        }
        out.push(ApiKey {
            user_id,
            sha256,
            roles: k.roles,
        });
    }
    Ok(out)
}

/// `[gateway.jwt]` validated, its key file read and parsed now: a key that does not parse
/// stops the gateway at start, naming the line.
fn jwt(at: &Source<'_>, raw: Spanned<RawJwt>) -> Result<JwtSettings, ConfigError> {
    use jsonwebtoken::{Algorithm, DecodingKey};
    let span = raw.span();
    let raw = raw.into_inner();
    let need = |v: Option<Spanned<String>>, key: &str, hint: &str| match v {
        Some(v) => at.non_empty(key, v),
        None => Err(at.invalid(span.clone(), &format!("`{key}` is required"), hint)),
    };
    let issuer = need(
        raw.issuer,
        "gateway.jwt.issuer",
        "set issuer to the `iss` your identity provider writes, e.g. \"https://idp.example.com\"",
    )?;
    let audience = need(
        raw.audience,
        "gateway.jwt.audience",
        "set audience to the `aud` tokens for this gateway carry (usually its public URL)",
    )?;
    let Some(algs) = raw.algorithms else {
        return Err(at.invalid(span, "`gateway.jwt.algorithms` is required", "list the accepted algorithms, e.g. algorithms = [\"RS256\"] (HS256, RS256, ES256, EdDSA)"));
    };
    let algs_span = algs.span();
    let mut algorithms = Vec::new();
    for a in algs.into_inner() {
        let alg = match a.as_str() {
            "HS256" => Algorithm::HS256,
            "RS256" => Algorithm::RS256,
            "ES256" => Algorithm::ES256,
            "EdDSA" => Algorithm::EdDSA,
            other => {
                return Err(at.invalid(
                    algs_span,
                    &format!("algorithm {other:?} is not supported"),
                    "use HS256, RS256, ES256 or EdDSA",
                ));
            }
        };
        algorithms.push(alg);
    }
    if algorithms.is_empty() {
        return Err(at.invalid(
            algs_span,
            "`gateway.jwt.algorithms` is empty",
            "list at least one algorithm",
        ));
    }
    let sources = [
        raw.key_file.is_some(),
        raw.secret_file.is_some(),
        raw.jwks_file.is_some(),
    ];
    if sources.iter().filter(|s| **s).count() != 1 {
        return Err(at.invalid(span, "`[gateway.jwt]` needs exactly one of key_file, secret_file, jwks_file", "key_file: a PEM public key (RS256, ES256, EdDSA); secret_file: the HS256 shared secret; jwks_file: a JWK Set (RFC 7517) saved from your identity provider"));
    }
    let base = at.base();
    let read = |v: Spanned<String>,
                key: &str|
     -> Result<(Vec<u8>, std::ops::Range<usize>, PathBuf), ConfigError> {
        let span = v.span();
        let path = base.join(at.file_path(key, v)?);
        let bytes = std::fs::read(&path).map_err(|e| {
            at.invalid(
                span.clone(),
                &format!("cannot read {}: {e}", path.display()),
                "check the path (relative to this file) and its permissions",
            )
        })?;
        Ok((bytes, span, path))
    };
    let mut keys = Vec::new();
    let mut digest = sha2::Sha256::new();
    if let Some(f) = raw.secret_file {
        let (bytes, span, path) = read(f, "gateway.jwt.secret_file")?;
        digest.update(&bytes);
        let secret = bytes.trim_ascii();
        if secret.len() < 32 || algorithms != [Algorithm::HS256] {
            return Err(at.invalid(span, &format!("{}: an HS256 secret must be at least 32 bytes, and algorithms must be [\"HS256\"] alone", path.display()), "generate one with `openssl rand -base64 48 > secret`; never mix a shared secret with public-key algorithms"));
        }
        keys.push((None, DecodingKey::from_secret(secret)));
    }
    if let Some(f) = raw.key_file {
        let (bytes, span, path) = read(f, "gateway.jwt.key_file")?;
        digest.update(&bytes);
        for alg in &algorithms {
            let key = match alg {
                Algorithm::RS256 => DecodingKey::from_rsa_pem(&bytes),
                Algorithm::ES256 => DecodingKey::from_ec_pem(&bytes),
                Algorithm::EdDSA => DecodingKey::from_ed_pem(&bytes),
                _ => {
                    return Err(at.invalid(
                        span,
                        "HS256 takes secret_file, not key_file",
                        "put the shared secret in a file and name it as secret_file",
                    ));
                }
            };
            let key = key.map_err(|e| {
                at.invalid(
                    span.clone(),
                    &format!("{} is not a {alg:?} public key in PEM: {e}", path.display()),
                    "give the identity provider's public key as PEM (-----BEGIN PUBLIC KEY-----)",
                )
            })?;
            keys.push((None, key));
        }
    }
    if let Some(f) = raw.jwks_file {
        let (bytes, span, path) = read(f, "gateway.jwt.jwks_file")?;
        digest.update(&bytes);
        let set: jsonwebtoken::jwk::JwkSet = serde_json::from_slice(&bytes).map_err(|e| {
            at.invalid(
                span.clone(),
                &format!("{} is not a JWK Set: {e}", path.display()),
                "save the identity provider's JWKS document (its jwks_uri) as JSON",
            )
        })?;
        for jwk in &set.keys {
            // An identity provider publishes public keys; a shared secret in a JWKS would
            // skip secret_file's 32-byte minimum (an empty `k` let anyone sign any user).
            if let jsonwebtoken::jwk::AlgorithmParameters::OctetKey(_) = jwk.algorithm {
                return Err(at.invalid(
                    span,
                    &format!(
                        "{}: a symmetric (\"kty\": \"oct\") key: a JWK Set here holds the identity provider's public keys",
                        path.display()
                    ),
                    "put an HS256 shared secret of at least 32 bytes in secret_file instead, or remove the key",
                ));
            }
            let key = DecodingKey::from_jwk(jwk).map_err(|e| {
                at.invalid(
                    span.clone(),
                    &format!("{}: a key cannot be used: {e}", path.display()),
                    "remove keys of other types from the file",
                )
            })?;
            keys.push((jwk.common.key_id.clone(), key));
        }
        if keys.is_empty() {
            return Err(at.invalid(
                span,
                &format!("{} holds no keys", path.display()),
                "save the identity provider's current JWKS",
            ));
        }
    }
    let leeway_s = at.ranged("gateway.jwt.leeway_s", raw.leeway_s, 60, 0..=3600)?;
    let user_claim = match raw.user_claim {
        Some(c) => at.non_empty("gateway.jwt.user_claim", c)?,
        None => "sub".to_string(),
    };
    let roles_claim = match raw.roles_claim {
        Some(c) => Some(at.non_empty("gateway.jwt.roles_claim", c)?),
        None => None,
    };
    Ok(JwtSettings {
        issuer,
        audience,
        algorithms,
        keys,
        key_digest: digest.finalize().into(),
        leeway_s,
        user_claim,
        roles_claim,
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
