//! The cookies a remote upstream sets, sent back on the session's later requests, as HTTP
//! clients do (RFC 6265 §5.3, storage; §5.4, the `Cookie` header). Load balancers keep a
//! session on the server that holds it by a cookie (AWS ALB's `AWSALB`, an ingress's
//! affinity cookie): without it the next request lands on another server, which answers 404
//! for the session, and every new session is lost the same way (mcp-remote#168,
//! docker/docker-agent#2902; the official Python SDK's client keeps them).
//!
//! One jar per upstream session (a [`super::Link`]), kept across the sessions it reopens,
//! never shared between clients' sessions, held in memory only and never written to the
//! trail (a cookie may be a credential). Bounded: at most [`MAX_COOKIES`] cookies of at
//! most [`MAX_COOKIE_BYTES`] each (RFC 6265 §6.1's minimums).

use std::time::{Duration, SystemTime};

use cookie::Cookie;
use http::header::SET_COOKIE;
use http::{HeaderMap, HeaderValue, Uri};

/// Cookies kept per session; the oldest goes when a new one would pass this.
pub(super) const MAX_COOKIES: usize = 50;
/// A `Set-Cookie` field longer than this is ignored.
pub(super) const MAX_COOKIE_BYTES: usize = 4096;

/// The cookies of one upstream session.
#[derive(Debug, Default)]
pub(super) struct Jar {
    cookies: Vec<Stored>,
}

#[derive(Debug)]
struct Stored {
    name: String,
    value: String,
    path: String,
    secure: bool,
    expires: Option<SystemTime>,
}

impl Jar {
    /// Takes the `Set-Cookie` fields of a response to a request for `url`: a cookie replaces
    /// the one of the same name and path; one already expired (`Max-Age=0`, a past
    /// `Expires`) deletes it. Ignored: fields that do not parse, longer than
    /// [`MAX_COOKIE_BYTES`], or with a `Domain` the upstream's host is not in (§5.3 step 6).
    pub(super) fn store(&mut self, url: &Uri, headers: &HeaderMap) {
        let now = SystemTime::now();
        let host = url.host().unwrap_or_default().to_ascii_lowercase();
        for field in headers.get_all(SET_COOKIE) {
            let Ok(text) = field.to_str() else {
                continue;
            };
            if text.len() > MAX_COOKIE_BYTES {
                continue;
            }
            let Ok(c) = Cookie::parse(text) else {
                continue;
            };
            if c.name().is_empty() || c.domain().is_some_and(|d| !domain_matches(&host, d)) {
                continue;
            }
            let path = match c.path() {
                Some(p) if p.starts_with('/') => p.to_string(),
                _ => default_path(url.path()),
            };
            let expires = match (c.max_age(), c.expires_datetime()) {
                (Some(age), _) => Some(match u64::try_from(age.whole_seconds()) {
                    Ok(secs) if secs > 0 => now + Duration::from_secs(secs),
                    _ => SystemTime::UNIX_EPOCH,
                }),
                (None, Some(at)) => Some(match u64::try_from(at.unix_timestamp()) {
                    Ok(secs) => SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
                    Err(_) => SystemTime::UNIX_EPOCH,
                }),
                (None, None) => None,
            };
            self.cookies
                .retain(|s| !(s.name == c.name() && s.path == path));
            if expires.is_some_and(|t| t <= now) {
                continue;
            }
            if self.cookies.len() >= MAX_COOKIES {
                self.cookies.remove(0);
            }
            self.cookies.push(Stored {
                name: c.name().to_string(),
                value: c.value().to_string(),
                path,
                secure: c.secure().unwrap_or(false),
                expires,
            });
        }
    }

    /// The `Cookie` field's value for a request to `url`: the unexpired cookies whose path
    /// matches its path (and only over `https` those marked `Secure`), longest paths first
    /// (§5.4); `None` when there is none.
    pub(super) fn header(&mut self, url: &Uri) -> Option<HeaderValue> {
        // Every request of the session asks: most upstreams set no cookie.
        if self.cookies.is_empty() {
            return None;
        }
        let now = SystemTime::now();
        self.cookies.retain(|s| s.expires.is_none_or(|t| t > now));
        let https = url.scheme_str() == Some("https");
        let mut sent: Vec<&Stored> = self
            .cookies
            .iter()
            .filter(|s| (https || !s.secure) && path_matches(url.path(), &s.path))
            .collect();
        sent.sort_by_key(|s| std::cmp::Reverse(s.path.len()));
        let text = sent
            .iter()
            .map(|s| format!("{}={}", s.name, s.value))
            .collect::<Vec<_>>()
            .join("; ");
        HeaderValue::from_str(&text)
            .ok()
            .filter(|_| !text.is_empty())
    }
}

/// §5.1.3: `host` is `domain` (a leading dot ignored, case ignored) or ends with `.domain`,
/// and is no IP address.
fn domain_matches(host: &str, domain: &str) -> bool {
    let domain = domain.trim_start_matches('.').to_ascii_lowercase();
    host == domain
        || (host.ends_with(&format!(".{domain}"))
            && host.parse::<std::net::IpAddr>().is_err()
            && !host.starts_with('['))
}

/// §5.1.4: the default path of a cookie set by a request for `path`.
fn default_path(path: &str) -> String {
    match path.rfind('/') {
        Some(at) if path.starts_with('/') && at > 0 => path[..at].to_string(),
        _ => "/".to_string(),
    }
}

/// §5.1.4: a request for `path` gets cookies of `cookie_path`.
fn path_matches(path: &str, cookie_path: &str) -> bool {
    path == cookie_path
        || (path.starts_with(cookie_path)
            && (cookie_path.ends_with('/') || path[cookie_path.len()..].starts_with('/')))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(fields: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for f in fields {
            h.append(SET_COOKIE, HeaderValue::from_str(f).unwrap());
        }
        h
    }

    #[test]
    fn a_jar_sends_back_what_applies_and_forgets_what_expired() {
        let url: Uri = "http://mcp.example.com/api/mcp".parse().unwrap();
        let mut jar = Jar::default();
        jar.store(
            &url,
            &set(&[
                "AWSALB=abc; Path=/; Expires=Wed, 01 Jan 2200 00:00:00 GMT",
                "deep=1; Path=/api/mcp",
                "other=1; Path=/elsewhere",
                "https_only=1; Secure",
                "foreign=1; Domain=evil.example.org",
                "parent=1; Domain=.example.com",
                "gone=1; Max-Age=0",
            ]),
        );
        assert_eq!(
            jar.header(&url).unwrap(),
            "deep=1; parent=1; AWSALB=abc",
            "longest path first (parent=1 took /api, the default path); Secure only over https; foreign domains refused"
        );
        let tls: Uri = "https://mcp.example.com/api/mcp".parse().unwrap();
        assert!(
            jar.header(&tls)
                .unwrap()
                .to_str()
                .unwrap()
                .contains("https_only=1")
        );
        // Replaced, then deleted.
        jar.store(&url, &set(&["AWSALB=def; Path=/"]));
        assert_eq!(jar.header(&url).unwrap(), "deep=1; parent=1; AWSALB=def");
        jar.store(
            &url,
            &set(&[
                "AWSALB=x; Path=/; Expires=Thu, 01 Jan 1970 00:00:01 GMT",
                "deep=; Path=/api/mcp; Max-Age=-1",
            ]),
        );
        assert_eq!(jar.header(&url).unwrap(), "parent=1");
        // Bounded.
        let many: Vec<String> = (0..MAX_COOKIES + 5).map(|i| format!("c{i}=1")).collect();
        jar.store(
            &url,
            &set(&many.iter().map(String::as_str).collect::<Vec<_>>()),
        );
        assert_eq!(jar.cookies.len(), MAX_COOKIES);
        let sent = jar.header(&url).unwrap();
        assert!(
            !sent.to_str().unwrap().contains("c0=1;") && sent.to_str().unwrap().contains("c54=1")
        );
    }

    #[test]
    fn paths_and_domains_match_as_rfc_6265_says() {
        assert!(path_matches("/api/mcp", "/api"));
        assert!(path_matches("/api/mcp", "/api/"));
        assert!(!path_matches("/apix", "/api"));
        assert_eq!(default_path("/api/mcp"), "/api");
        assert_eq!(default_path("/mcp"), "/");
        assert!(domain_matches("a.example.com", "Example.com"));
        assert!(!domain_matches("example.com", "a.example.com"));
        assert!(!domain_matches("notexample.com", "example.com"));
        assert!(!domain_matches("10.0.0.1", "0.0.1"));
    }
}
