//! `[upstream]` / `[[upstream]]`: the MCP servers behind the proxy, each either a local
//! program (`command`, spoken to over stdio) or a remote MCP Streamable HTTP server (`url`).
//!
//! A remote upstream's credentials come from this file or the environment, never from the
//! client's request: the MCP authorization spec forbids passing a client's token through
//! ("Token Passthrough", MCP 2025-06-18, Security Best Practices), and the gateway's own
//! credentials are not the upstream's.

use std::path::{Path, PathBuf};

use http::{HeaderName, HeaderValue, Uri};
use serde::Deserialize;
use toml::Spanned;

use super::{ConfigError, Source};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpstream {
    name: Option<Spanned<String>>,
    command: Option<Spanned<Vec<String>>>,
    cwd: Option<Spanned<String>>,
    url: Option<Spanned<String>>,
    headers: Option<Spanned<toml::Table>>,
    headers_from_env: Option<Spanned<toml::Table>>,
    bearer_token_env: Option<Spanned<String>>,
    ca_file: Option<Spanned<String>>,
    share_children: Option<Spanned<bool>>,
}

/// `[upstream]` (one table, the stdio wrapper's form) or `[[upstream]]` (an array of tables,
/// one per server the gateway serves).
#[derive(Debug, Default)]
pub(super) struct RawUpstreams {
    pub(super) tables: Vec<RawUpstream>,
    pub(super) array: bool,
}

impl<'de> Deserialize<'de> for RawUpstreams {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawUpstreams;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an [upstream] table or [[upstream]] tables")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                let one =
                    RawUpstream::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(RawUpstreams {
                    tables: vec![one],
                    array: false,
                })
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let mut tables = Vec::new();
                while let Some(t) = seq.next_element::<RawUpstream>()? {
                    tables.push(t);
                }
                Ok(RawUpstreams {
                    tables,
                    array: true,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// `[upstream]`: the MCP server behind the proxy.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// `name`: recorded as `upstream` in every event.
    pub name: String,
    /// `command`: the server started when none is given after `--`; empty for a remote one.
    pub command: Vec<String>,
    /// `cwd`: the server's working folder, relative to the config file; unset: the proxy's own.
    pub cwd: Option<PathBuf>,
    /// `url` and its keys: a remote Streamable HTTP server instead of a command.
    pub remote: Option<RemoteConfig>,
    /// `share_children` (default true): the gateway serves sessionless 2026-07-28 requests
    /// with warm processes shared by one principal's requests; false: a process per request
    /// (a server that keeps state between requests of one process that must not be shared).
    pub share_children: bool,
}

/// A remote MCP server reached over Streamable HTTP (MCP 2025-03-26 and later, "Transports").
#[derive(Clone)]
pub struct RemoteConfig {
    /// `url`: the server's MCP endpoint, `https://` (or `http://` to a loopback address, or
    /// without credentials).
    pub url: Uri,
    /// `headers`, `headers_from_env`, `bearer_token_env`: sent with every request to it.
    pub headers: Vec<(HeaderName, HeaderSource)>,
    /// `ca_file`: PEM certificates trusted for its TLS certificate instead of the system's
    /// roots (a private CA), relative to the config file.
    pub ca_file: Option<PathBuf>,
}

/// Where a header sent to a remote upstream takes its value.
#[derive(Clone)]
pub enum HeaderSource {
    /// Written in the config file.
    Value(HeaderValue),
    /// Read from this environment variable when the upstream is first used (so that commands
    /// that never reach it, such as `events`, do not need it); `bearer`: the value is a token
    /// sent as `Bearer <token>`.
    Env {
        /// The variable's name.
        var: String,
        /// Prefix the value with `Bearer `.
        bearer: bool,
    },
}

// Header values are credentials: never in logs or error texts.
impl std::fmt::Debug for RemoteConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let headers: Vec<String> = self
            .headers
            .iter()
            .map(|(name, source)| match source {
                HeaderSource::Value(_) => format!("{name}: <redacted>"),
                HeaderSource::Env { var, .. } => format!("{name}: ${var}"),
            })
            .collect();
        f.debug_struct("RemoteConfig")
            .field("url", &self.url)
            .field("headers", &headers)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// Why a remote upstream's headers could not be made.
#[derive(Debug, thiserror::Error)]
#[error(
    "upstream header {header}: the environment variable {var} is not set, is empty or is not a valid header value\n  hint: export {var} before starting the proxy (its value is the upstream's credential; it is never logged)"
)]
pub struct MissingHeader {
    /// The header.
    pub header: String,
    /// The variable.
    pub var: String,
}

impl RemoteConfig {
    /// The headers to send, environment variables read now.
    pub fn resolve_headers(&self) -> Result<http::HeaderMap, MissingHeader> {
        let mut map = http::HeaderMap::new();
        for (name, source) in &self.headers {
            let value = match source {
                HeaderSource::Value(v) => v.clone(),
                HeaderSource::Env { var, bearer } => {
                    let missing = || MissingHeader {
                        header: name.to_string(),
                        var: var.clone(),
                    };
                    let raw = std::env::var(var).map_err(|_| missing())?;
                    let raw = raw.trim();
                    if raw.is_empty() {
                        return Err(missing());
                    }
                    let text = if *bearer {
                        format!("Bearer {raw}")
                    } else {
                        raw.to_string()
                    };
                    HeaderValue::from_str(&text).map_err(|_| missing())?
                }
            };
            let mut value = value;
            value.set_sensitive(true);
            map.append(name.clone(), value);
        }
        Ok(map)
    }
}

/// Headers the proxy sets itself on requests to a remote upstream (the transport's own, and
/// the hop's): a config that set them would break or smuggle past the protocol.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-type",
    "content-length",
    "accept",
    "connection",
    "transfer-encoding",
    "upgrade",
    "te",
    "mcp-session-id",
    "mcp-protocol-version",
    "mcp-method",
    "mcp-name",
    "last-event-id",
];

/// Whether `name` can be an upstream's name: a non-empty run of ASCII letters, digits, `.`,
/// `_` and `-`, not `.` or `..` (dot-segments, RFC 3986 section 3.3, which clients remove
/// from a URL), so that it is one URL path segment (`/mcp/<name>`).
pub fn path_safe(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// One `[upstream]`/`[[upstream]]` table, validated. Names of the array form are URL path
/// segments (`/mcp/<name>`), so they are limited to letters, digits, `.`, `_` and `-`.
pub(super) fn upstream(
    at: &Source<'_>,
    base: &Path,
    raw: RawUpstream,
    named: bool,
) -> Result<UpstreamConfig, ConfigError> {
    let name = match raw.name {
        Some(n) => {
            let span = n.span();
            let name = at.non_empty("upstream.name", n)?;
            if named && !path_safe(&name) {
                return Err(at.invalid(
                    span,
                    &format!("upstream name {name:?} cannot be a URL path segment"),
                    "use letters, digits, `.`, `_` and `-` only: the gateway serves it at /mcp/<name>",
                ));
            }
            name
        }
        None if named => {
            return Err(ConfigError::Invalid {
                path: at.path().to_path_buf(),
                line: None,
                message: "an [[upstream]] table has no `name`".into(),
                hint: "name each upstream: the gateway serves it at /mcp/<name>".into(),
            });
        }
        None => "upstream".to_string(),
    };
    let remote_keys = [
        raw.headers.as_ref().map(|h| ("headers", h.span())),
        raw.headers_from_env
            .as_ref()
            .map(|h| ("headers_from_env", h.span())),
        raw.bearer_token_env
            .as_ref()
            .map(|h| ("bearer_token_env", h.span())),
        raw.ca_file.as_ref().map(|h| ("ca_file", h.span())),
    ];
    let remote = match raw.url {
        Some(url) => {
            if let Some(c) = &raw.command {
                return Err(at.invalid(
                    c.span(),
                    &format!("upstream {name:?} has both a `command` and a `url`"),
                    "keep `command` for a server the proxy starts, or `url` for a remote Streamable HTTP server, not both",
                ));
            }
            if let Some(d) = &raw.cwd {
                return Err(at.invalid(
                    d.span(),
                    &format!("upstream {name:?}: `cwd` applies to a `command`, not to a `url`"),
                    "remove `cwd`",
                ));
            }
            if let Some(d) = &raw.share_children {
                return Err(at.invalid(
                    d.span(),
                    &format!(
                        "upstream {name:?}: `share_children` applies to a `command`, not to a `url`"
                    ),
                    "remove `share_children` (a remote server's processes are its own business)",
                ));
            }
            Some(remote(
                at,
                base,
                &name,
                url,
                raw.headers,
                raw.headers_from_env,
                raw.bearer_token_env,
                raw.ca_file,
            )?)
        }
        None => {
            if let Some((key, span)) = remote_keys.into_iter().flatten().next() {
                return Err(at.invalid(
                    span,
                    &format!("`upstream.{key}` applies to a `url` upstream"),
                    "add the remote server's `url`, or remove the key",
                ));
            }
            None
        }
    };
    let command = match raw.command {
        Some(c) if c.get_ref().is_empty() || c.get_ref()[0].is_empty() => {
            return Err(at.invalid(
                c.span(),
                "`upstream.command` is empty",
                "give the program and its arguments, e.g. command = [\"npx\", \"-y\", \"@modelcontextprotocol/server-everything\"], or remove the key and pass the command after `--`",
            ));
        }
        Some(c) => c.into_inner(),
        None => Vec::new(),
    };
    let cwd = match raw.cwd {
        Some(d) => Some(base.join(at.file_path("upstream.cwd", d)?)),
        None => None,
    };
    Ok(UpstreamConfig {
        name,
        command,
        cwd,
        remote,
        share_children: raw.share_children.is_none_or(Spanned::into_inner),
    })
}

/// Whether `host` (a URI host, IPv6 in brackets) is this machine.
fn loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[allow(clippy::too_many_arguments)]
fn remote(
    at: &Source<'_>,
    base: &Path,
    name: &str,
    url: Spanned<String>,
    headers: Option<Spanned<toml::Table>>,
    headers_from_env: Option<Spanned<toml::Table>>,
    bearer_token_env: Option<Spanned<String>>,
    ca_file: Option<Spanned<String>>,
) -> Result<RemoteConfig, ConfigError> {
    let url_span = url.span();
    let bad_url = |why: &str| {
        at.invalid(
            url_span.clone(),
            // Not quoted: a URL can carry a credential (user info, a token in the query),
            // and error texts quote none; the line number says where it is.
            &format!("upstream {name:?}: `url` {why}"),
            "give the server's MCP endpoint as an absolute URL, e.g. url = \"https://mcp.example.com/mcp\"",
        )
    };
    let uri: Uri = url.get_ref().parse().map_err(|_| bad_url("is not a URL"))?;
    let secure = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(bad_url("must start with https:// or http://")),
    };
    let Some(authority) = uri.authority() else {
        return Err(bad_url("has no host"));
    };
    if authority.as_str().contains('@') {
        return Err(bad_url(
            "carries credentials in the URL (they would be logged); use `headers_from_env` or `bearer_token_env`",
        ));
    }

    let mut list: Vec<(HeaderName, HeaderSource)> = Vec::new();
    let header_name = |key: &str, span: std::ops::Range<usize>| {
        let header = HeaderName::from_bytes(key.as_bytes()).map_err(|_| {
            at.invalid(
                span.clone(),
                &format!("upstream {name:?}: {key:?} is not a valid HTTP header name"),
                "use letters, digits and `-`, e.g. \"X-Api-Key\"",
            )
        })?;
        if RESERVED_HEADERS.contains(&header.as_str()) {
            return Err(at.invalid(
                span,
                &format!("upstream {name:?}: the proxy sets the {key} header itself"),
                "remove it: the transport's own headers cannot be configured",
            ));
        }
        Ok(header)
    };
    if let Some(h) = headers {
        let span = h.span();
        for (key, value) in h.into_inner() {
            let header = header_name(&key, span.clone())?;
            let value = value
                .as_str()
                .and_then(|v| HeaderValue::from_str(v).ok())
                .ok_or_else(|| {
                    at.invalid(
                        span.clone(),
                        &format!("upstream {name:?}: header {key} must be a string a header may hold"),
                        "write the value in quotes, visible ASCII only; for a secret use headers_from_env instead",
                    )
                })?;
            list.push((header, HeaderSource::Value(value)));
        }
    }
    if let Some(h) = headers_from_env {
        let span = h.span();
        for (key, value) in h.into_inner() {
            let header = header_name(&key, span.clone())?;
            let Some(var) = value.as_str().filter(|v| !v.is_empty()) else {
                return Err(at.invalid(
                    span.clone(),
                    &format!(
                        "upstream {name:?}: headers_from_env.{key} must name an environment variable"
                    ),
                    "e.g. headers_from_env = { \"X-Api-Key\" = \"SEARCH_API_KEY\" }",
                ));
            };
            list.push((
                header,
                HeaderSource::Env {
                    var: var.to_string(),
                    bearer: false,
                },
            ));
        }
    }
    if let Some(var) = bearer_token_env {
        let span = var.span();
        let var = at.non_empty("upstream.bearer_token_env", var)?;
        if list.iter().any(|(h, _)| h == http::header::AUTHORIZATION) {
            return Err(at.invalid(
                span,
                &format!("upstream {name:?}: Authorization is set twice"),
                "keep either bearer_token_env or the Authorization header",
            ));
        }
        list.push((
            http::header::AUTHORIZATION,
            HeaderSource::Env { var, bearer: true },
        ));
    }
    let host = uri.host().unwrap_or_default();
    if !secure && !list.is_empty() && !loopback(host) {
        return Err(at.invalid(
            url_span,
            &format!(
                "upstream {name:?}: credentials would travel in clear text to {host} (`url` is http://)"
            ),
            "use https:// (plain http is accepted only to a loopback address)",
        ));
    }
    let ca_file = match ca_file {
        Some(f) => Some(base.join(at.file_path("upstream.ca_file", f)?)),
        None => None,
    };
    if ca_file.is_some() && !secure {
        return Err(bad_url("is http://, so `ca_file` has nothing to verify"));
    }
    Ok(RemoteConfig {
        url: uri,
        headers: list,
        ca_file,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::Config;
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/etc/mcp/proxy.toml"), text)
    }

    #[test]
    fn a_url_upstream_keeps_its_credentials_out_of_sight() {
        let c = parse(
            "[[upstream]]\nname = \"search\"\nurl = \"https://mcp.example.com/mcp\"\nheaders = { \"X-Team\" = \"sec\", \"X-Key\" = \"s3cret-value\" }\nbearer_token_env = \"SEARCH_TOKEN\"\nca_file = \"ca.pem\"\n",
        )
        .unwrap();
        let remote = c.upstream.remote.as_ref().unwrap();
        assert_eq!(remote.url, "https://mcp.example.com/mcp");
        assert_eq!(
            remote.ca_file.as_deref(),
            Some(Path::new("/etc/mcp/ca.pem"))
        );
        assert!(c.upstream.command.is_empty());
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cret-value"), "{shown}");
        assert!(shown.contains("$SEARCH_TOKEN"), "{shown}");
        // The environment is read when the upstream is used, not when the file is read.
        let missing = remote.resolve_headers().unwrap_err().to_string();
        assert!(missing.contains("SEARCH_TOKEN"), "{missing}");
    }

    #[test]
    fn a_url_upstream_that_would_leak_or_confuse_is_refused_with_line_and_hint() {
        let cases = [
            (
                "[upstream]\ncommand = [\"srv\"]\nurl = \"https://x.example/mcp\"\n",
                "has both a `command` and a `url`",
            ),
            (
                "[upstream]\nurl = \"ftp://x.example/mcp\"\n",
                "must start with https:// or http://",
            ),
            (
                "[upstream]\nurl = \"https://user:pw-4711@x.example/mcp?token=q-4712\"\n",
                "carries credentials in the URL",
            ),
            (
                "[upstream]\nurl = \"http://x.example/mcp\"\nbearer_token_env = \"T\"\n",
                "credentials would travel in clear text",
            ),
            (
                "[upstream]\nurl = \"https://x.example/mcp\"\nheaders = { \"Mcp-Session-Id\" = \"fixed\" }\n",
                "sets the Mcp-Session-Id header itself",
            ),
            (
                "[upstream]\nurl = \"https://x.example/mcp\"\nheaders = { \"Bad Name\" = \"v\" }\n",
                "is not a valid HTTP header name",
            ),
            (
                "[upstream]\ncommand = [\"srv\"]\nbearer_token_env = \"T\"\n",
                "`upstream.bearer_token_env` applies to a `url` upstream",
            ),
            (
                "[upstream]\nurl = \"https://x.example/mcp\"\ncwd = \"/tmp\"\n",
                "`cwd` applies to a `command`",
            ),
            (
                "[upstream]\nurl = \"https://x.example/mcp\"\nheaders = { Authorization = \"Bearer a\" }\nbearer_token_env = \"T\"\n",
                "Authorization is set twice",
            ),
        ];
        for (text, expected) in cases {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(expected), "{text:?} gave {err}");
            assert!(err.contains("/etc/mcp/proxy.toml:"), "{err}");
            assert!(err.contains("hint: "), "{err}");
            // Error texts quote no credential.
            assert!(!err.contains("4711") && !err.contains("4712"), "{err}");
        }
        // Plain http is fine to this machine, or without credentials.
        for ok in [
            "[upstream]\nurl = \"http://127.0.0.1:9000/mcp\"\nbearer_token_env = \"T\"\n",
            "[upstream]\nurl = \"http://[::1]:9000/mcp\"\nbearer_token_env = \"T\"\n",
            "[upstream]\nurl = \"http://localhost/mcp\"\nbearer_token_env = \"T\"\n",
            "[upstream]\nurl = \"http://mcp.internal/mcp\"\n",
        ] {
            assert!(parse(ok).is_ok(), "{ok}");
        }
    }
}
