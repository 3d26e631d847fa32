//! What error texts and logs may say of a `url` upstream's address and of where it
//! redirects: its origin (`scheme://host[:port]`), never a path, a query or user information,
//! each of which may hold a per-user token.

use http::Uri;

/// Where a redirect's `Location` (RFC 9110 §10.2.2: absolute, or relative to the request's
/// URL, RFC 3986 §5) points, said against the upstream's `base` URL for the operator to
/// configure, in words that show no path or query of either (each may hold a per-user
/// token, as `Remote::label` says): the configured url with a trailing slash added or
/// taken away (Starlette's `/mcp` → `/mcp/`, python-sdk#732), another path of the same
/// origin, or another origin (shown as `scheme://host[:port]`).
pub(super) fn redirect_target(base: &Uri, location: &str) -> String {
    let location = location.split(['?', '#']).next().unwrap_or_default();
    if location.starts_with("//") {
        return "a scheme-relative URL".to_string();
    }
    let origin = origin_of(&base.to_string());
    let path = match location.parse::<Uri>() {
        Ok(u) if u.scheme_str().is_some() => {
            let to = origin_of(location);
            if to != origin {
                return format!("another origin, {to:?}");
            }
            u.path().to_string()
        }
        _ if location.starts_with('/') => location.to_string(),
        _ => {
            let dir = base.path().rsplit_once('/').map_or("", |(dir, _)| dir);
            format!("{dir}/{location}")
        }
    };
    let configured = base.path();
    if path == format!("{configured}/") {
        "the configured url with a trailing slash added".to_string()
    } else if configured.strip_suffix('/') == Some(path.as_str()) {
        "the configured url without its trailing slash".to_string()
    } else if path == configured {
        "the configured url itself".to_string()
    } else {
        format!("another path of the same origin, {origin:?}")
    }
}

/// `scheme://host[:port]` of a URL: what error texts and logs may show of it.
pub(super) fn origin_of(url: &str) -> String {
    match url.parse::<Uri>() {
        Ok(u) => match (u.scheme_str(), u.authority()) {
            (Some(scheme), Some(authority)) => {
                let host = authority.as_str().rsplit('@').next().unwrap_or_default();
                format!("{scheme}://{host}")
            }
            _ => "(a relative URL)".to_string(),
        },
        Err(_) => "(not a URL)".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redirect_says_where_it_points_without_a_path_or_a_query() {
        // helper-114 F4 (after python-sdk#732: Starlette's `/mcp` -> `/mcp/`): the error said
        // "(a relative URL)", so the operator could not tell what to configure; paths and
        // queries stay out of it (a per-user token can be either).
        let base: Uri = "http://user:pw@host:8000/u/SECRET/mcp".parse().unwrap();
        let cases = [
            (
                "mcp/?token=t0k",
                "the configured url with a trailing slash added",
            ),
            (
                "/u/SECRET/mcp/",
                "the configured url with a trailing slash added",
            ),
            (
                "http://host:8000/u/SECRET/mcp/#x",
                "the configured url with a trailing slash added",
            ),
            ("/u/SECRET/mcp?token=t0k", "the configured url itself"),
            (
                "/other/OTHERSECRET",
                "another path of the same origin, \"http://host:8000\"",
            ),
            (
                "https://u:p@other.example:9443/v2/mcp?key=k",
                "another origin, \"https://other.example:9443\"",
            ),
            ("//evil.example/mcp", "a scheme-relative URL"),
        ];
        for (location, want) in cases {
            let said = redirect_target(&base, location);
            assert_eq!(said, want, "{location}");
            assert!(!said.contains("SECRET") && !said.contains("t0k") && !said.contains("pw"));
        }
        let slashed: Uri = "http://host/mcp/".parse().unwrap();
        assert_eq!(
            redirect_target(&slashed, "/mcp"),
            "the configured url without its trailing slash"
        );
    }
}
