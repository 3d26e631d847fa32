//! Who is calling, and whether the request may come in at all: credentials (API keys, stored
//! as SHA-256 hashes), `Host` and `Origin` checks (DNS rebinding), and the OAuth 2.0 Protected
//! Resource Metadata (RFC 9728) that tells clients where to get a token.
//!
//! Identity comes only from a verified credential: never from a header such as `X-User`, nor
//! from the request's `_meta`.

use http::HeaderMap;
use http::header::{AUTHORIZATION, HOST, ORIGIN};
use sha2::{Digest, Sha256};

use crate::config::{ANONYMOUS, GatewayConfig, JwtSettings};

/// The authenticated caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Principal {
    /// Recorded as `user_id`; sessions are bound to it together with `method`.
    pub(crate) user_id: String,
    /// Recorded with the request.
    pub(crate) roles: Vec<String>,
    /// `api_key`, `jwt`, `client_cert` or `anonymous`.
    pub(crate) method: &'static str,
    /// For `anonymous`: the client's address, so that anonymous clients do not share one
    /// principal's sessions and caps (one client holding `max_sessions_per_principal` shut
    /// every other out: found by a hostile pass). `None` for a credential.
    pub(crate) scope: Option<String>,
}

impl Principal {
    /// Whose sessions, shared children and MRTR rounds these are: the method and the name,
    /// as `method:user_id`. A JWT whose `sub` equals an API key's user is another principal:
    /// its issuer names its subjects, the config names the keys' users, and neither may
    /// reach the other's server state.
    pub(crate) fn key(&self) -> String {
        match &self.scope {
            Some(scope) => format!("{}:{}@{scope}", self.method, self.user_id),
            None => format!("{}:{}", self.method, self.user_id),
        }
    }
}

/// Why a request is refused before it reaches a session; each becomes an audit event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refused {
    /// 401: no credential.
    NoCredential,
    /// 401: a credential that matches no configured key.
    BadCredential,
    /// 401: a JWT that does not verify (signature, `iss`, `aud`, `exp`, `nbf`, claims).
    BadToken(String),
    /// 403: an `Origin` not in `gateway.allowed_origins`.
    Origin(String),
    /// 403: a `Host` not in `gateway.allowed_hosts`.
    Host(String),
    /// 400: a `Host` that is no `host[:port]` (RFC 9112 section 3.2: an invalid Host is a
    /// 400): userinfo (`127.0.0.1:80@evil.example`), a port past 65535, characters no
    /// host name has.
    BadHost(String),
    /// 400: `Host` or `Origin` more than once (RFC 9112 section 3.2: a request with more
    /// than one `Host` is a 400); which one counts would be a guess.
    Repeated(&'static str),
    /// 400: two different credentials (`Authorization` and `X-API-Key`, or either twice):
    /// which one counts would be a guess (RFC 6750 section 3.1, `invalid_request`).
    Ambiguous,
    /// 401: `Authorization` with another scheme than `Bearer`: the scheme's registered
    /// name, or "another scheme" ([`scheme_name`]); never the credential's text.
    Scheme(String),
    /// 400: a listed client certificate and a valid credential naming two different users
    /// (RFC 6750 section 3.1, `invalid_request`): which one acts would be a guess.
    TwoIdentities {
        /// The `user_id` of the certificate's `[[gateway.client_cert]]`.
        certificate: String,
        /// The user the bearer token or API key names.
        credential: String,
    },
}

impl Refused {
    pub(crate) fn status(&self) -> u16 {
        match self {
            Refused::NoCredential
            | Refused::BadCredential
            | Refused::BadToken(_)
            | Refused::Scheme(_) => 401,
            Refused::Origin(_) | Refused::Host(_) => 403,
            Refused::Ambiguous
            | Refused::Repeated(_)
            | Refused::BadHost(_)
            | Refused::TwoIdentities { .. } => 400,
        }
    }

    pub(crate) fn reason(&self) -> String {
        match self {
            Refused::NoCredential => {
                "no credential: send `Authorization: Bearer <API key>` or `X-API-Key`".into()
            }
            Refused::BadCredential => "the credential matches no configured API key".into(),
            Refused::Scheme(scheme) => format!(
                "the Authorization header uses {scheme}, not Bearer; send `Authorization: Bearer <key or token>` or `X-API-Key: <key>` (RFC 6750 section 2.1)"
            ),
            Refused::Ambiguous => "two different credentials (Authorization and X-API-Key, or one of them twice); send exactly one (RFC 6750 section 3.1)".into(),
            Refused::TwoIdentities {
                certificate,
                credential,
            } => format!(
                "the client certificate names user {} and the credential names user {}; send one, or a credential of the certificate's own user",
                super::quoted(certificate, super::CLIENT_TEXT_BYTES),
                super::quoted(credential, super::CLIENT_TEXT_BYTES)
            ),
            Refused::BadToken(why) => format!("the bearer JWT was refused: {why}"),
            Refused::Repeated(name) => format!(
                "the request has more than one {name} header; send exactly one (RFC 9112 section 3.2, RFC 6454 section 7)"
            ),
            Refused::Origin(o) => {
                format!(
                    "Origin {} is not in gateway.allowed_origins (DNS rebinding protection)",
                    super::quoted(o, super::CLIENT_TEXT_BYTES)
                )
            }
            Refused::BadHost(h) => format!(
                "Host {} is not a valid host[:port] (RFC 9112 section 3.2, RFC 3986 section 3.2.2): send the gateway's name or address, and a port up to 65535",
                super::quoted(h, super::CLIENT_TEXT_BYTES)
            ),
            Refused::Host(h) => {
                format!(
                    "Host {} is not in gateway.allowed_hosts (DNS rebinding protection)",
                    super::quoted(h, super::CLIENT_TEXT_BYTES)
                )
            }
        }
    }
}

/// The credential of a request: `Authorization: Bearer …` or `X-API-Key`; two different
/// ones are refused, never resolved by a precedence a client could exploit.
///
/// `Authorization` is `Bearer <credential>` (RFC 6750 section 2.1), or a bare credential
/// without a scheme (kept working for clients that send one). Another scheme (`Basic …`,
/// `Token …`) is refused as [`Refused::Scheme`] rather than hashed whole with its prefix.
fn presented(headers: &HeaderMap) -> Result<Option<&[u8]>, Refused> {
    let mut bearer = Vec::new();
    for v in headers.get_all(AUTHORIZATION) {
        let v = v.as_bytes().trim_ascii();
        match v.iter().position(u8::is_ascii_whitespace) {
            None => bearer.push(v),
            Some(at) if v[..at].eq_ignore_ascii_case(b"bearer") => {
                bearer.push(v[at..].trim_ascii());
            }
            Some(at) => return Err(Refused::Scheme(scheme_name(&v[..at]))),
        }
    }
    let keys = headers
        .get_all("x-api-key")
        .into_iter()
        .map(|v| v.as_bytes().trim_ascii());
    let mut all = bearer.into_iter().chain(keys);
    let first = all.next();
    // The same credential sent twice names one principal; two different ones are refused.
    if all.any(|other| Some(other) != first) {
        return Err(Refused::Ambiguous);
    }
    Ok(first)
}

/// The name of an `Authorization` scheme, for the refusal and the trail: one of the
/// registered schemes (IANA HTTP Authentication Scheme Registry) and a few vendors' by name,
/// else "another scheme". The first word could be part of a key pasted with a space in it,
/// and the trail must not keep it.
fn scheme_name(word: &[u8]) -> String {
    const KNOWN: [&str; 14] = [
        "Basic",
        "Digest",
        "Negotiate",
        "NTLM",
        "HOBA",
        "Mutual",
        "SCRAM-SHA-1",
        "SCRAM-SHA-256",
        "vapid",
        "DPoP",
        "PrivateToken",
        "Token",
        "SSWS",
        "AWS4-HMAC-SHA256",
    ];
    KNOWN
        .iter()
        .find(|k| k.as_bytes().eq_ignore_ascii_case(word))
        .map_or_else(|| "another scheme".to_string(), |k| (*k).to_string())
}

/// Authenticates a request: a verified client certificate listed in
/// `[[gateway.client_cert]]` first, else the request's own credential.
///
/// A credential sent beside a listed certificate is still checked, never ignored: one that
/// fails is refused as it would be alone (a stolen or revoked token must not pass because
/// the connection carries a certificate), and one naming another user than the certificate
/// is refused as [`Refused::TwoIdentities`].
pub(crate) fn authenticate_connection(
    config: &GatewayConfig,
    client_cert: Option<&[u8; 32]>,
    headers: &HeaderMap,
) -> Result<Principal, Refused> {
    if let Some(fingerprint) = client_cert
        && let Some(c) = config
            .client_certs
            .iter()
            .find(|c| c.sha256 == *fingerprint)
    {
        if let Some(key) = presented(headers)? {
            let by_credential = by_key(config, key)?;
            if by_credential.user_id != c.user_id {
                return Err(Refused::TwoIdentities {
                    certificate: c.user_id.clone(),
                    credential: by_credential.user_id,
                });
            }
        }
        return Ok(Principal {
            user_id: c.user_id.clone(),
            roles: c.roles.clone(),
            method: "client_cert",
            scope: None,
        });
    }
    authenticate(config, headers)
}

/// Authenticates a request by its credential.
pub(crate) fn authenticate(
    config: &GatewayConfig,
    headers: &HeaderMap,
) -> Result<Principal, Refused> {
    let Some(key) = presented(headers)? else {
        if config.allow_anonymous {
            return Ok(Principal {
                user_id: ANONYMOUS.into(),
                roles: Vec::new(),
                method: "anonymous",
                scope: None,
            });
        }
        return Err(Refused::NoCredential);
    };
    by_key(config, key)
}

/// The principal a presented credential names: an API key by its hash, else a JWT.
fn by_key(config: &GatewayConfig, key: &[u8]) -> Result<Principal, Refused> {
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
            scope: None,
        }),
        // Not a key: a JWT if it has a JWT's three parts (a key such as `svc.key.v2` that
        // matches is a key, checked first).
        None => match &config.jwt {
            Some(jwt) if key.iter().filter(|&&b| b == b'.').count() == 2 => verify_jwt(jwt, key),
            _ => Err(Refused::BadCredential),
        },
    }
}

/// Verifies a bearer JWT (RFC 7519 section 7.2, RFC 8725): an accepted algorithm, a key
/// that verifies it (by `kid` when the token names one), `iss` and `aud` exactly as
/// configured, `exp` required and `nbf` checked with the configured leeway.
fn verify_jwt(jwt: &JwtSettings, token: &[u8]) -> Result<Principal, Refused> {
    use jsonwebtoken::{Validation, decode, decode_header};
    let bad = |why: String| Refused::BadToken(why);
    let token = std::str::from_utf8(token).map_err(|_| bad("not UTF-8".into()))?;
    let header = decode_header(token).map_err(|e| bad(format!("unreadable header: {e}")))?;
    if names_critical_parameters(token) {
        // RFC 7515 section 4.1.11: a recipient that does not understand an extension named
        // in `crit` must reject the token; this gateway understands none.
        return Err(bad(
            "the header names critical extensions (crit) this gateway does not understand (RFC 7515 section 4.1.11)".into(),
        ));
    }
    if !jwt.algorithms.contains(&header.alg) {
        return Err(bad(format!(
            "algorithm {:?} is not in gateway.jwt.algorithms",
            header.alg
        )));
    }
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[&jwt.issuer]);
    validation.set_audience(&[&jwt.audience]);
    validation.leeway = jwt.leeway_s;
    validation.validate_nbf = true;
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    let candidates = jwt
        .keys
        .iter()
        .filter(|(kid, _)| header.kid.is_none() || kid.is_none() || *kid == header.kid);
    let mut last = "no key matches the token's kid".to_string();
    for (_, key) in candidates {
        match decode::<serde_json::Map<String, serde_json::Value>>(token, key, &validation) {
            Ok(data) => {
                let claims = data.claims;
                let user = claims
                    .get(&jwt.user_claim)
                    .and_then(|v| v.as_str())
                    .filter(|u| plain_name(u))
                    .ok_or_else(|| {
                        bad(format!(
                            "claim {:?} (gateway.jwt.user_claim) is missing, not a string, or holds control or invisible characters or spaces at its ends",
                            jwt.user_claim
                        ))
                    })?;
                if user == ANONYMOUS {
                    return Err(bad(format!(
                        "claim {:?} (gateway.jwt.user_claim) names {ANONYMOUS:?}, the user of clients without a credential",
                        jwt.user_claim
                    )));
                }
                if crate::store::personal::is_pseudonym(user) {
                    return Err(bad(format!(
                        "claim {:?} (gateway.jwt.user_claim) {}",
                        jwt.user_claim,
                        crate::store::personal::PSEUDONYM_FORM
                    )));
                }
                let roles = match &jwt.roles_claim {
                    Some(claim) => token_roles(claim, claims.get(claim)).map_err(bad)?,
                    None => Vec::new(),
                };
                return Ok(Principal {
                    user_id: user.to_string(),
                    roles,
                    method: "jwt",
                    scope: None,
                });
            }
            Err(e) => {
                use jsonwebtoken::errors::ErrorKind;
                last = match e.kind() {
                    ErrorKind::InvalidSignature => "signature does not verify".into(),
                    ErrorKind::ExpiredSignature => "expired (exp)".into(),
                    ErrorKind::ImmatureSignature => "not valid yet (nbf)".into(),
                    ErrorKind::InvalidIssuer => "wrong issuer (iss)".into(),
                    ErrorKind::InvalidAudience => "wrong audience (aud)".into(),
                    ErrorKind::MissingRequiredClaim(c) => format!("claim {c:?} missing"),
                    other => format!("{other:?}"),
                };
                if !matches!(
                    e.kind(),
                    ErrorKind::InvalidSignature
                        | ErrorKind::InvalidKeyFormat
                        | ErrorKind::InvalidAlgorithm
                ) {
                    break;
                }
            }
        }
    }
    Err(bad(last))
}

/// The roles a token's `roles_claim` gives: a space-separated string (as OAuth `scope`,
/// RFC 8693 section 4.2) or an array of strings.
///
/// A claim of another type, an element that is not a string, or a role that is empty or
/// holds control or invisible characters refuses the token: dropping such a role would
/// let a `deny_roles` entry fail open. A missing claim gives no roles (identity providers
/// omit an empty list, e.g. Entra ID's `roles`), and is logged once, since a mistyped
/// `roles_claim` is missing from every token.
fn token_roles(claim: &str, value: Option<&serde_json::Value>) -> Result<Vec<String>, String> {
    let roles: Vec<String> = match value {
        None => {
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                tracing::warn!(
                    claim,
                    "a bearer JWT has no {claim:?} claim (gateway.jwt.roles_claim): it carries no roles, so deny_roles cannot apply to it; check the claim's name (said once)"
                );
            });
            return Ok(Vec::new());
        }
        Some(serde_json::Value::String(r)) => r.split_whitespace().map(str::to_string).collect(),
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .map(|r| r.as_str().map(str::to_string))
            .collect::<Option<_>>()
            .ok_or_else(|| {
                format!("claim {claim:?} (gateway.jwt.roles_claim) holds an element that is not a string")
            })?,
        Some(_) => {
            return Err(format!(
                "claim {claim:?} (gateway.jwt.roles_claim) is neither a string nor an array of strings"
            ));
        }
    };
    if !roles.iter().all(|r| plain_name(r)) {
        return Err(format!(
            "claim {claim:?} (gateway.jwt.roles_claim) holds an empty role, or one with control or invisible characters or spaces at its ends"
        ));
    }
    Ok(roles)
}

/// Whether a JWS's protected header (the token's first part, base64url JSON) has `crit`;
/// a header this cannot read counts as having it (fail closed).
fn names_critical_parameters(token: &str) -> bool {
    use base64::Engine;
    let head = token.split('.').next().unwrap_or("");
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(head)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&b).ok())
        .is_none_or(|h| h.contains_key("crit"))
}

/// Whether a user or role name from a token reads as what it is: not empty, no control or
/// invisible character, no space of any kind at either end (`intern` followed by a
/// no-break space reads as `intern` and matches no `deny_roles` entry: found by a hostile
/// pass).
fn plain_name(name: &str) -> bool {
    !name.is_empty() && name.trim() == name && !name.chars().any(|c| c.is_control() || invisible(c))
}

/// Characters that print as nothing: a user named `alice` followed by a zero-width space
/// reads as `alice` in every listing and is another user to every filter (Unicode format
/// characters, general category Cf, that occur in text; the soft hyphen, the combining
/// grapheme joiner, Hangul fillers and variation selectors).
fn invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{180E}'
            | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}'
            | '\u{FFA0}' | '\u{FFF9}'..='\u{FFFB}' | '\u{E0000}'..='\u{E007F}'
            | '\u{2028}' | '\u{2029}' | '\u{2800}' | '\u{1D173}'..='\u{1D17A}'
    )
}

/// Checks `Host` and `Origin` against the configuration (MCP "Streamable HTTP: Security
/// Warning": servers must validate `Origin`; binding to loopback is not enough against DNS
/// rebinding, so on loopback the `Host` must also name loopback).
pub(crate) fn check_origin(config: &GatewayConfig, headers: &HeaderMap) -> Result<(), Refused> {
    for (header, name) in [(HOST, "Host"), (ORIGIN, "Origin")] {
        if headers.get_all(header).iter().nth(1).is_some() {
            return Err(Refused::Repeated(name));
        }
    }
    // Off loopback with no `allowed_hosts`, any Host passes: then a Host proves nothing, and
    // an Origin equal to it (what a DNS-rebinding page sends) is no same-origin request.
    let host_checked = !config.allowed_hosts.is_empty() || config.listen.ip().is_loopback();
    if let Some(host) = headers.get(HOST) {
        let text = String::from_utf8_lossy(host.as_bytes()).to_ascii_lowercase();
        if !text.is_empty() && !valid_host(&text) {
            return Err(Refused::BadHost(text));
        }
        // A fully qualified name's trailing dot (`localhost.`) names the same host.
        let name = host_name(&text);
        let name = name.strip_suffix('.').unwrap_or(name);
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
        // The gateway's own origin (a page it served, or a tool that sends Origin) is the Host
        // just checked: under DNS rebinding the Host is the attacker's name, refused above.
        let host = headers
            .get(HOST)
            .map(|h| String::from_utf8_lossy(h.as_bytes()).to_ascii_lowercase());
        let same_origin = host_checked
            && host.is_some_and(|h| {
                text.split_once("://").is_some_and(|(scheme, authority)| {
                    matches!(scheme, "http" | "https") && authority == h
                })
            });
        if !same_origin && !config.allowed_origins.contains(&text) {
            return Err(Refused::Origin(text));
        }
    }
    Ok(())
}

/// Whether `host` (lowercased) is `host[:port]` as RFC 3986 section 3.2.2 writes it: an
/// IP literal in brackets, or a name of letters, digits, `-`, `.`, `_` and `~` (what DNS
/// names and IPv4 addresses use); a port of 1 to 5 digits up to 65535. No userinfo, no
/// percent-escapes: a gateway's own name never needs them.
fn valid_host(host: &str) -> bool {
    let (name, port) = if host.starts_with('[') {
        match host.find(']') {
            Some(end) => {
                let literal = &host[1..end];
                let ok = !literal.is_empty()
                    && literal
                        .bytes()
                        .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'));
                if !ok {
                    return false;
                }
                match &host[end + 1..] {
                    "" => (None, None),
                    rest => match rest.strip_prefix(':') {
                        Some(port) => (None, Some(port)),
                        None => return false,
                    },
                }
            }
            None => return false,
        }
    } else {
        match host.split_once(':') {
            Some((name, port)) => (Some(name), Some(port)),
            None => (Some(host), None),
        }
    };
    if let Some(name) = name
        && (name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')))
    {
        return false;
    }
    match port {
        None => true,
        // `port = *DIGIT` (RFC 3986 section 3.2.3): an empty one is the scheme's default.
        Some(p) => {
            p.is_empty()
                || p.len() <= 5
                    && p.bytes().all(|b| b.is_ascii_digit())
                    && p.parse::<u32>().is_ok_and(|n| n <= 65_535)
        }
    }
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
        Refused::BadCredential | Refused::BadToken(_) => {
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
            h.append(*k, HeaderValue::from_str(v).unwrap());
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
        // Two different credentials: which counts would be a guess (a fresh pair of eyes
        // found the second silently ignored). The same one twice names one principal.
        let two = headers(&[
            ("authorization", "Bearer secret-key-1"),
            ("x-api-key", "secret-key-2"),
        ]);
        assert_eq!(authenticate(&c, &two), Err(Refused::Ambiguous));
        assert_eq!(Refused::Ambiguous.status(), 400);
        let mut repeated = headers(&[("authorization", "Bearer secret-key-1")]);
        repeated.append("authorization", HeaderValue::from_static("Bearer other"));
        assert_eq!(authenticate(&c, &repeated), Err(Refused::Ambiguous));
        let same = headers(&[
            ("authorization", "Bearer secret-key-1"),
            ("x-api-key", "secret-key-1"),
        ]);
        assert_eq!(authenticate(&c, &same).unwrap().user_id, "alice");
        // Another scheme is refused by its name, never hashed whole; a word that is no
        // known scheme (a key pasted with a space) is not repeated into the trail.
        for (value, scheme) in [
            ("Basic c2VjcmV0LWtleS0x", "Basic"),
            ("token secret-key-1", "Token"),
            ("secret-key-1 trailing", "another scheme"),
        ] {
            assert_eq!(
                authenticate(&c, &headers(&[("authorization", value)])),
                Err(Refused::Scheme(scheme.into()))
            );
        }
        assert_eq!(Refused::Scheme("Basic".into()).status(), 401);
        // Bearer in any case and after any whitespace, or a bare key, authenticate.
        for value in [
            "bearer secret-key-1",
            "Bearer\tsecret-key-1",
            "secret-key-1",
        ] {
            assert!(
                authenticate(&c, &headers(&[("authorization", value)])).is_ok(),
                "{value}"
            );
        }
    }

    /// With `[gateway.jwt]` on, a key shaped like a JWT (two dots) still authenticates as
    /// the key it is; only what matches no key is read as a JWT.
    #[test]
    fn a_key_with_two_dots_is_a_key_beside_jwts() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("s"),
            "a-shared-secret-of-at-least-thirty-two-bytes",
        )
        .unwrap();
        let digest: [u8; 32] = Sha256::digest(b"svc.key.v2").into();
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        let c = crate::config::Config::parse(
            &dir.path().join("proxy.toml"),
            &format!("[gateway.jwt]\nissuer = \"i\"\naudience = \"a\"\nalgorithms = [\"HS256\"]\nsecret_file = \"s\"\n{KEY}{hex}\"\n"),
        )
        .unwrap()
        .gateway;
        let ok = authenticate(&c, &headers(&[("x-api-key", "svc.key.v2")])).unwrap();
        assert_eq!((ok.user_id.as_str(), ok.method), ("alice", "api_key"));
        assert!(matches!(
            authenticate(&c, &headers(&[("x-api-key", "svc.key.v3")])),
            Err(Refused::BadToken(_))
        ));
    }

    #[test]
    fn a_credential_beside_a_client_certificate_is_checked_not_ignored() {
        let mut c = with_key("secret-key-1");
        c.api_keys.push(crate::config::ApiKey {
            user_id: "bob".into(),
            sha256: Sha256::digest(b"secret-key-bob").into(),
            roles: Vec::new(),
        });
        let cert = [7u8; 32];
        c.client_certs.push(crate::config::ApiKey {
            user_id: "alice".into(),
            sha256: cert,
            roles: vec!["cert".into()],
        });
        let by = |h: &HeaderMap| authenticate_connection(&c, Some(&cert), h);
        // The certificate alone, or with its own user's key: the certificate acts.
        let alone = by(&HeaderMap::new()).unwrap();
        assert_eq!(
            (alone.user_id.as_str(), alone.method),
            ("alice", "client_cert")
        );
        let own = by(&headers(&[("x-api-key", "secret-key-1")])).unwrap();
        assert_eq!((own.user_id.as_str(), own.method), ("alice", "client_cert"));
        // A wrong key beside it is refused as it would be alone (it was ignored).
        assert_eq!(
            by(&headers(&[("authorization", "Bearer revoked")])),
            Err(Refused::BadCredential)
        );
        // Another user's valid key: two identities, refused.
        let two = by(&headers(&[("authorization", "Bearer secret-key-bob")]));
        assert_eq!(
            two,
            Err(Refused::TwoIdentities {
                certificate: "alice".into(),
                credential: "bob".into()
            })
        );
        assert_eq!(two.unwrap_err().status(), 400);
        // A certificate not listed: the credential alone decides.
        let other = authenticate_connection(
            &c,
            Some(&[8u8; 32]),
            &headers(&[("x-api-key", "secret-key-bob")]),
        )
        .unwrap();
        assert_eq!((other.user_id.as_str(), other.method), ("bob", "api_key"));
    }

    #[test]
    fn no_key_or_certificate_may_name_the_anonymous_user() {
        for table in ["api_key", "client_cert"] {
            let text = format!(
                "[[gateway.{table}]]\nuser_id = \"anonymous\"\nsha256 = \"{}\"\n",
                "ab".repeat(32)
            );
            let err = crate::config::Config::parse(std::path::Path::new("/etc/proxy.toml"), &text)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("proxy.toml:2:") && err.contains("without a credential"),
                "{table}: {err}"
            );
        }
    }

    #[test]
    fn jwts_verify_by_signature_issuer_audience_and_time() {
        use jsonwebtoken::{EncodingKey, Header, encode};
        let dir = tempfile::tempdir().unwrap();
        let secret = "a-shared-secret-of-at-least-thirty-two-bytes";
        std::fs::write(dir.path().join("s"), secret).unwrap();
        let c = crate::config::Config::parse(
            &dir.path().join("proxy.toml"),
            "[gateway.jwt]\nissuer = \"https://idp\"\naudience = \"https://gw\"\nalgorithms = [\"HS256\"]\nsecret_file = \"s\"\nroles_claim = \"roles\"\nleeway_s = 0\n",
        )
        .unwrap()
        .gateway;
        let now = jsonwebtoken::get_current_timestamp();
        let token = |claims: serde_json::Value, key: &str| {
            encode(
                &Header::default(),
                &claims,
                &EncodingKey::from_secret(key.as_bytes()),
            )
            .unwrap()
        };
        let auth =
            |t: String| authenticate(&c, &headers(&[("authorization", &format!("Bearer {t}"))]));
        let good = serde_json::json!({"sub": "carol", "iss": "https://idp", "aud": "https://gw", "exp": now + 60, "roles": ["admin", "ops"]});
        let p = auth(token(good.clone(), secret)).unwrap();
        assert_eq!((p.user_id.as_str(), p.method), ("carol", "jwt"));
        assert_eq!(p.roles, vec!["admin".to_string(), "ops".to_string()]);
        // Roles as a space-separated string (as OAuth's `scope`), and no claim at all.
        let mut spaced = good.clone();
        spaced["roles"] = "admin  ops".into();
        assert_eq!(auth(token(spaced, secret)).unwrap().roles, p.roles);
        let mut none = good.clone();
        none.as_object_mut().unwrap().remove("roles");
        assert!(auth(token(none, secret)).unwrap().roles.is_empty());
        // A token otherwise good whose roles claim is `roles`.
        let with_roles = |roles: serde_json::Value| serde_json::json!({"sub": "carol", "iss": "https://idp", "aud": "https://gw", "exp": now + 60, "roles": roles});
        let cases = [
            (
                serde_json::json!({"sub": "carol", "iss": "https://idp", "aud": "https://gw", "exp": now + 60}),
                "another-secret-of-at-least-thirty-two-bytes",
                "signature",
            ),
            (
                serde_json::json!({"sub": "carol", "iss": "https://other", "aud": "https://gw", "exp": now + 60}),
                secret,
                "issuer",
            ),
            (
                serde_json::json!({"sub": "carol", "iss": "https://idp", "aud": "https://gw/x", "exp": now + 60}),
                secret,
                "audience",
            ),
            (
                serde_json::json!({"sub": "carol", "iss": "https://idp", "aud": "https://gw", "exp": now - 10}),
                secret,
                "expired",
            ),
            (
                serde_json::json!({"sub": "carol", "iss": "https://idp", "aud": "https://gw", "exp": now + 60, "nbf": now + 30}),
                secret,
                "nbf",
            ),
            (
                serde_json::json!({"sub": "carol", "iss": "https://idp", "aud": "https://gw"}),
                secret,
                "exp",
            ),
            (
                serde_json::json!({"iss": "https://idp", "aud": "https://gw", "exp": now + 60}),
                secret,
                "user_claim",
            ),
            // A name that prints as another user's (a zero-width space after it).
            (
                serde_json::json!({"sub": "carol\u{200b}", "iss": "https://idp", "aud": "https://gw", "exp": now + 60}),
                secret,
                "user_claim",
            ),
            // The name of clients without a credential (a hostile pass: such a token shared
            // the anonymous clients' policy).
            (
                serde_json::json!({"sub": "anonymous", "iss": "https://idp", "aud": "https://gw", "exp": now + 60}),
                secret,
                "without a credential",
            ),
            // An erased user's pseudonym (helper-116 M5: read as that person's).
            (
                serde_json::json!({"sub": "SUBJECT:e7f304965c59d36874be1988c8eb4103", "iss": "https://idp", "aud": "https://gw", "exp": now + 60}),
                secret,
                "starts with `subject:`",
            ),
            // Roles that would be dropped, letting a deny_roles entry fail open.
            (
                with_roles(serde_json::json!(["ops", 7])),
                secret,
                "not a string",
            ),
            (
                with_roles(serde_json::json!({"intern": true})),
                secret,
                "neither a string nor an array",
            ),
            (
                with_roles(serde_json::json!(["intern\u{200b}"])),
                secret,
                "invisible",
            ),
            (with_roles(serde_json::json!([""])), secret, "empty role"),
            // Names that read as another: spaces of any kind at an end, a braille blank, a
            // musical formatting character (a hostile pass ran `deny_roles` tools so).
            (
                with_roles(serde_json::json!(["intern\u{a0}"])),
                secret,
                "spaces at its ends",
            ),
            (
                with_roles(serde_json::json!(["intern "])),
                secret,
                "spaces at its ends",
            ),
            (
                with_roles(serde_json::json!(["intern\u{2800}"])),
                secret,
                "invisible",
            ),
            (
                with_roles(serde_json::json!(["intern\u{1d173}"])),
                secret,
                "invisible",
            ),
            (
                serde_json::json!({"sub": " anonymous", "iss": "https://idp", "aud": "https://gw", "exp": now + 60}),
                secret,
                "user_claim",
            ),
        ];
        for (claims, key, why) in cases {
            match auth(token(claims.clone(), key)) {
                Err(Refused::BadToken(text)) => assert!(text.contains(why), "{claims}: {text}"),
                other => panic!("{claims} gave {other:?}"),
            }
        }
        // alg "none" and an algorithm not configured are refused.
        let none = format!(
            "{}.{}.",
            b64(r#"{"alg":"none","typ":"JWT"}"#),
            b64(&good.to_string())
        );
        assert!(matches!(auth(none), Err(Refused::BadToken(_))));
        // A well-signed token whose header names a critical extension (RFC 7515 4.1.11).
        let signed = |head: &str| {
            use hmac::{KeyInit, Mac};
            let input = format!("{}.{}", b64(head), b64(&good.to_string()));
            let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
            mac.update(input.as_bytes());
            format!("{input}.{}", b64_bytes(&mac.finalize().into_bytes()))
        };
        assert!(auth(signed(r#"{"alg":"HS256","typ":"JWT"}"#)).is_ok());
        match auth(signed(r#"{"alg":"HS256","typ":"JWT","crit":["exp"]}"#)) {
            Err(Refused::BadToken(text)) => assert!(text.contains("crit"), "{text}"),
            other => panic!("crit gave {other:?}"),
        }
    }

    #[test]
    fn public_key_jwts_verify_from_pem_files_and_from_a_jwks() {
        use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
        let dir = tempfile::tempdir().unwrap();
        let now = jsonwebtoken::get_current_timestamp();
        let claims = serde_json::json!({"sub": "dave", "iss": "i", "aud": "a", "exp": now + 60});
        for (alg, name, sig) in [
            (Algorithm::ES256, "ES256", &rcgen::PKCS_ECDSA_P256_SHA256),
            (Algorithm::EdDSA, "EdDSA", &rcgen::PKCS_ED25519),
        ] {
            let pair = rcgen::KeyPair::generate_for(sig).unwrap();
            std::fs::write(dir.path().join("pub.pem"), pair.public_key_pem()).unwrap();
            let text = format!(
                "[gateway.jwt]\nissuer = \"i\"\naudience = \"a\"\nalgorithms = [\"{name}\"]\nkey_file = \"pub.pem\"\n"
            );
            let c = crate::config::Config::parse(&dir.path().join("proxy.toml"), &text)
                .unwrap()
                .gateway;
            let private = pair.serialize_pem();
            let key = match alg {
                Algorithm::ES256 => EncodingKey::from_ec_pem(private.as_bytes()).unwrap(),
                _ => EncodingKey::from_ed_pem(private.as_bytes()).unwrap(),
            };
            let t = encode(&Header::new(alg), &claims, &key).unwrap();
            let p =
                authenticate(&c, &headers(&[("authorization", &format!("Bearer {t}"))])).unwrap();
            assert_eq!(p.user_id, "dave", "{name}");
            // Another key pair's token does not verify.
            let other = rcgen::KeyPair::generate_for(sig).unwrap().serialize_pem();
            let key = match alg {
                Algorithm::ES256 => EncodingKey::from_ec_pem(other.as_bytes()).unwrap(),
                _ => EncodingKey::from_ed_pem(other.as_bytes()).unwrap(),
            };
            let t = encode(&Header::new(alg), &claims, &key).unwrap();
            assert!(
                matches!(
                    authenticate(&c, &headers(&[("authorization", &format!("Bearer {t}"))])),
                    Err(Refused::BadToken(_))
                ),
                "{name}"
            );
            if alg == Algorithm::ES256 {
                // The same key as a JWK Set entry, chosen by kid.
                let raw = pair.public_key_raw();
                let jwks = serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1", "alg": "ES256", "x": b64_bytes(&raw[1..33]), "y": b64_bytes(&raw[33..65])}]});
                std::fs::write(dir.path().join("jwks.json"), jwks.to_string()).unwrap();
                let text = "[gateway.jwt]\nissuer = \"i\"\naudience = \"a\"\nalgorithms = [\"ES256\"]\njwks_file = \"jwks.json\"\n";
                let c = crate::config::Config::parse(&dir.path().join("proxy.toml"), text)
                    .unwrap()
                    .gateway;
                let mut header = Header::new(alg);
                header.kid = Some("k1".into());
                let key = EncodingKey::from_ec_pem(private.as_bytes()).unwrap();
                let t = encode(&header, &claims, &key).unwrap();
                assert_eq!(
                    authenticate(&c, &headers(&[("authorization", &format!("Bearer {t}"))]))
                        .unwrap()
                        .user_id,
                    "dave"
                );
            }
        }
        // A symmetric key in a JWK Set stops the start, whatever its length (an empty one
        // signed tokens for any user: found by a hostile pass).
        for k in [
            "",
            "YWJj",
            &b64("a-shared-secret-of-at-least-thirty-two-bytes"),
        ] {
            let set = serde_json::json!({"keys": [{"kty": "oct", "k": k}]});
            std::fs::write(dir.path().join("oct.json"), set.to_string()).unwrap();
            let err = crate::config::Config::parse(&dir.path().join("proxy.toml"), "[gateway.jwt]\nissuer = \"i\"\naudience = \"a\"\nalgorithms = [\"HS256\"]\njwks_file = \"oct.json\"\n").unwrap_err().to_string();
            assert!(
                err.contains("oct.json")
                    && err.contains("symmetric")
                    && err.contains("secret_file"),
                "{err}"
            );
        }
        // A key file that does not parse stops the start, naming the line.
        std::fs::write(
            dir.path().join("bad.pem"),
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        )
        .unwrap();
        let err = crate::config::Config::parse(&dir.path().join("proxy.toml"), "[gateway.jwt]\nissuer = \"i\"\naudience = \"a\"\nalgorithms = [\"RS256\"]\nkey_file = \"bad.pem\"\n").unwrap_err().to_string();
        assert!(
            err.contains("proxy.toml:5:") && err.contains("bad.pem") && err.contains("hint:"),
            "{err}"
        );
    }

    #[test]
    fn rs256_jwts_verify_from_a_real_rsa_key_by_pem_and_by_jwks() {
        use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
        // rcgen (ring) cannot make RSA keys: these were made by openssl (tests/data/README.md).
        let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
        let read = |name: &str| std::fs::read(data.join(name)).unwrap();
        let now = jsonwebtoken::get_current_timestamp();
        let claims = serde_json::json!({"sub": "erin", "iss": "i", "aud": "a", "exp": now + 60, "roles": ["ops"]});
        let signed = |key: &str, kid: Option<&str>| {
            let mut header = Header::new(Algorithm::RS256);
            header.kid = kid.map(str::to_string);
            let key = EncodingKey::from_rsa_pem(&read(key)).unwrap();
            format!("Bearer {}", encode(&header, &claims, &key).unwrap())
        };
        for source in [
            format!("key_file = \"{}\"", data.join("rs256.pub.pem").display()),
            format!("jwks_file = \"{}\"", data.join("rs256.jwks.json").display()),
        ] {
            let text = format!(
                "[gateway.jwt]\nissuer = \"i\"\naudience = \"a\"\nalgorithms = [\"RS256\"]\nroles_claim = \"roles\"\n{source}\n"
            );
            let c = config(&text);
            let p = authenticate(
                &c,
                &headers(&[("authorization", &signed("rs256.key.pem", Some("r1")))]),
            )
            .unwrap_or_else(|e| panic!("{source}: {e:?}"));
            assert_eq!(
                (p.user_id.as_str(), p.roles.clone()),
                ("erin", vec!["ops".to_string()]),
                "{source}"
            );
            // Signed by another RSA key: refused.
            let forged = signed("rs256-other.key.pem", Some("r1"));
            assert!(
                matches!(
                    authenticate(&c, &headers(&[("authorization", &forged)])),
                    Err(Refused::BadToken(_))
                ),
                "{source}"
            );
            // The right key, but the token claims ES256 in its header: refused (algorithms list).
            let mut header = Header::new(Algorithm::ES256);
            header.kid = Some("r1".into());
            let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
            let key = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap();
            let other_alg = format!("Bearer {}", encode(&header, &claims, &key).unwrap());
            assert!(
                matches!(
                    authenticate(&c, &headers(&[("authorization", &other_alg)])),
                    Err(Refused::BadToken(_))
                ),
                "{source}"
            );
        }
    }

    fn b64(text: &str) -> String {
        b64_bytes(text.as_bytes())
    }

    fn b64_bytes(b: &[u8]) -> String {
        const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in b.chunks(3) {
            let n =
                chunk.iter().fold(0u32, |acc, &x| (acc << 8) | x as u32) << (8 * (3 - chunk.len()));
            for i in 0..=chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
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
        // Its own origin passes; a rebinding name fails on Host first.
        assert!(
            check_origin(
                &c,
                &headers(&[
                    ("host", "127.0.0.1:8080"),
                    ("origin", "http://127.0.0.1:8080")
                ])
            )
            .is_ok()
        );
        assert!(matches!(
            check_origin(
                &c,
                &headers(&[
                    ("host", "evil.example:8080"),
                    ("origin", "http://evil.example:8080")
                ])
            ),
            Err(Refused::Host(_))
        ));
        // Twice, in either order: refused, never the first one taken.
        for pair in [
            [("host", "127.0.0.1:8080"), ("host", "evil.example")],
            [("host", "evil.example"), ("host", "127.0.0.1:8080")],
        ] {
            assert_eq!(
                check_origin(&c, &headers(&pair)),
                Err(Refused::Repeated("Host"))
            );
        }
        assert_eq!(
            check_origin(
                &c,
                &headers(&[
                    ("host", "localhost"),
                    ("origin", "https://app.example.com"),
                    ("origin", "https://evil.example")
                ])
            ),
            Err(Refused::Repeated("Origin"))
        );
    }

    /// helper-103 F4: `127.0.0.1:PORT@evil.com` and `localhost:99999` were served (the name
    /// before the last colon was checked); RFC 9112 section 3.2 says an invalid Host is a 400.
    #[test]
    fn a_host_that_is_no_host_and_port_is_a_400() {
        let loopback = config("");
        let open = config("[gateway]\nlisten = \"0.0.0.0:8443\"\n");
        for bad in [
            "127.0.0.1:8080@evil.example",
            "user@localhost",
            "localhost:99999",
            "localhost:80:80",
            "localhost:8o",
            "[::1]x",
            "[::1",
            "[zz::1]:80",
            "local host",
            "localhost/x",
            ":80",
        ] {
            for c in [&loopback, &open] {
                let got = check_origin(c, &headers(&[("host", bad)]));
                assert_eq!(got, Err(Refused::BadHost(bad.into())), "{bad}");
                assert_eq!(got.unwrap_err().status(), 400);
            }
        }
        for good in [
            "localhost",
            "127.0.0.1:65535",
            "[::1]",
            "[::1]:9",
            "LOCALHOST:1",
        ] {
            assert!(
                check_origin(&loopback, &headers(&[("host", good)])).is_ok(),
                "{good}"
            );
        }
        for good in ["mcp.example.com", "mcp-gw_1.example:443", "10.0.0.1"] {
            assert!(
                check_origin(&open, &headers(&[("host", good)])).is_ok(),
                "{good}"
            );
        }
    }

    /// Off loopback without `allowed_hosts`, every Host passes (the gateway warns at start):
    /// an Origin equal to the Host is then what a DNS-rebinding page sends, not the gateway's
    /// own origin. Found by a hostile pass: it was let through.
    #[test]
    fn off_loopback_without_allowed_hosts_only_listed_origins_pass() {
        let open = config(
            "[gateway]\nlisten = \"0.0.0.0:8443\"\nallowed_origins = [\"https://app.example.com\"]\n",
        );
        let rebound = headers(&[
            ("host", "rebind.evil.example:8443"),
            ("origin", "http://rebind.evil.example:8443"),
        ]);
        assert_eq!(
            check_origin(&open, &rebound),
            Err(Refused::Origin("http://rebind.evil.example:8443".into()))
        );
        let listed = headers(&[
            ("host", "rebind.evil.example:8443"),
            ("origin", "https://app.example.com"),
        ]);
        assert!(check_origin(&open, &listed).is_ok());
        assert!(check_origin(&open, &headers(&[("host", "gw.internal:8443")])).is_ok());
        // With the host listed, the gateway's own origin passes again.
        let named =
            config("[gateway]\nlisten = \"0.0.0.0:8443\"\nallowed_hosts = [\"gw.example.com\"]\n");
        let own = headers(&[
            ("host", "gw.example.com:8443"),
            ("origin", "https://gw.example.com:8443"),
        ]);
        assert!(check_origin(&named, &own).is_ok());
    }
}
