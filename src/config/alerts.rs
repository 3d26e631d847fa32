//! `[alerts]` and `[alerts.webhook]`: real-time alerts raised by the running proxy or gateway
//! from events already in the trail (issue 10 item 3; see [`crate::alerts`]).

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{ConfigError, Source};
use crate::audit::RiskLevel;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAlerts {
    enabled: Option<bool>,
    min_level: Option<Spanned<String>>,
    window_ms: Option<Spanned<u64>>,
    group_wait_ms: Option<Spanned<u64>>,
    queue_capacity: Option<Spanned<u64>>,
    max_users: Option<Spanned<u64>>,
    history_events: Option<Spanned<u64>>,
    webhook: Option<RawWebhook>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    url: Spanned<String>,
    secret_file: Spanned<String>,
    timeout_ms: Option<Spanned<u64>>,
    max_attempts: Option<Spanned<u64>>,
    backoff_ms: Option<Spanned<u64>>,
    ca_file: Option<Spanned<String>>,
}

/// `[alerts]`, validated.
#[derive(Debug, Clone)]
pub struct AlertsConfig {
    /// `enabled` (default `true`): alerts go to the log and the store (and the webhook, if
    /// one is configured). `false`: no alert stage runs.
    pub enabled: bool,
    /// `min_level` (default `medium`): alerts of a lower severity are not raised.
    pub min_level: RiskLevel,
    /// `window_ms` (default 300000, 5 min): at most one alert per user and kind per window;
    /// what happens meanwhile is counted into the next one.
    pub window: Duration,
    /// `group_wait_ms` (default 5000): how long the first alert of a quiet user and kind
    /// waits, gathering what follows (a storm's start), before it is raised.
    pub group_wait: Duration,
    /// `queue_capacity` (default 4096): events waiting for the alert stage; past this they
    /// are not examined, and that is counted and reported.
    pub queue_capacity: usize,
    /// `max_users` (default 10000): users whose recent behaviour the detectors keep (the
    /// least recently seen are forgotten first).
    pub max_users: usize,
    /// `history_events` (default 10000): at start, at most this many of the newest events of
    /// the last `analytics.baseline_days` are read from the store so that "first use" and
    /// "new network" know each user's past; 0: no history (every user starts unknown, and is
    /// judged on novelty only after `analytics::anomalies::WARM_UP_DAYS`). Read whole: the
    /// memory it takes at start is these events' size (arguments included), briefly.
    pub history_events: usize,
    /// `[alerts.webhook]`: where alerts are also POSTed, if set.
    pub webhook: Option<WebhookConfig>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            enabled: true,
            min_level: RiskLevel::Medium,
            window: Duration::from_millis(DEFAULT_WINDOW_MS),
            group_wait: Duration::from_millis(DEFAULT_GROUP_WAIT_MS),
            queue_capacity: DEFAULT_QUEUE as usize,
            max_users: DEFAULT_MAX_USERS as usize,
            history_events: DEFAULT_HISTORY as usize,
            webhook: None,
        }
    }
}

const DEFAULT_WINDOW_MS: u64 = 300_000;
const DEFAULT_GROUP_WAIT_MS: u64 = 5_000;
const DEFAULT_QUEUE: u64 = 4096;
const DEFAULT_MAX_USERS: u64 = 10_000;
const DEFAULT_HISTORY: u64 = 10_000;

/// `[alerts.webhook]`, validated: the secret is read at start and never logged.
#[derive(Clone)]
pub struct WebhookConfig {
    /// `url`: `https://…`; plain `http://` only to a loopback address (alerts name users).
    pub url: http::Uri,
    /// `secret_file`: the HMAC-SHA256 key, the file's bytes without a trailing newline (at
    /// least 16 bytes; the file must not be readable by group or others).
    pub secret: std::sync::Arc<zeroize::Zeroizing<Vec<u8>>>,
    /// The file the secret was read from (for messages; never its content).
    pub secret_file: PathBuf,
    /// `timeout_ms` (default 5000): one attempt, connection to response headers.
    pub timeout: Duration,
    /// `max_attempts` (default 5): attempts per alert, the first included.
    pub max_attempts: u32,
    /// `backoff_ms` (default 500): the wait before the second attempt; it doubles for each
    /// later one (at most 60 s), with jitter (a random half of it is taken off).
    pub backoff: Duration,
    /// `ca_file`: PEM certificates to trust for the receiver, instead of the system's roots.
    pub ca_file: Option<PathBuf>,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &self.url)
            .field("secret_file", &self.secret_file)
            .field("timeout", &self.timeout)
            .field("max_attempts", &self.max_attempts)
            .field("backoff", &self.backoff)
            .field("ca_file", &self.ca_file)
            .finish_non_exhaustive()
    }
}

pub(super) fn compile(at: &Source, raw: RawAlerts) -> Result<AlertsConfig, ConfigError> {
    let min_level = match raw.min_level {
        None => RiskLevel::Medium,
        Some(l) => RiskLevel::from_spelling(l.get_ref()).ok_or_else(|| {
            at.invalid(
                l.span(),
                &format!("`alerts.min_level` = {:?} is not a level", l.get_ref()),
                "use \"low\", \"medium\", \"high\" or \"critical\"",
            )
        })?,
    };
    let window_ms = at.ranged(
        "alerts.window_ms",
        raw.window_ms,
        DEFAULT_WINDOW_MS,
        1_000..=86_400_000,
    )?;
    let group_wait_ms = match raw.group_wait_ms {
        None => DEFAULT_GROUP_WAIT_MS.min(window_ms),
        Some(v) => at.in_range(
            "alerts.group_wait_ms",
            v,
            0..=window_ms,
            Some(DEFAULT_GROUP_WAIT_MS),
        )?,
    };
    let queue_capacity = at.ranged(
        "alerts.queue_capacity",
        raw.queue_capacity,
        DEFAULT_QUEUE,
        1..=(1 << 20),
    )?;
    let max_users = at.ranged(
        "alerts.max_users",
        raw.max_users,
        DEFAULT_MAX_USERS,
        1..=1_000_000,
    )?;
    let history_events = at.ranged(
        "alerts.history_events",
        raw.history_events,
        DEFAULT_HISTORY,
        0..=1_000_000,
    )?;
    let webhook = match raw.webhook {
        None => None,
        Some(w) => Some(webhook(at, w)?),
    };
    Ok(AlertsConfig {
        enabled: raw.enabled.unwrap_or(true),
        min_level,
        window: Duration::from_millis(window_ms),
        group_wait: Duration::from_millis(group_wait_ms),
        queue_capacity: queue_capacity as usize,
        max_users: max_users as usize,
        history_events: history_events as usize,
        webhook,
    })
}

fn webhook(at: &Source, w: RawWebhook) -> Result<WebhookConfig, ConfigError> {
    let span = w.url.span();
    let url: http::Uri = w.url.get_ref().trim().parse().map_err(|e| {
        at.invalid(
            span.clone(),
            // Not quoted: a webhook URL is often its own credential (a Slack or Teams hook).
            &format!("`alerts.webhook.url` is not a URL: {e}"),
            "write the receiver's full URL, e.g. \"https://alerts.example.com/mcp-audit\"",
        )
    })?;
    let host = url.host().unwrap_or("").trim_matches(['[', ']']);
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match url.scheme_str() {
        Some("https") if !host.is_empty() => {}
        Some("http") if loopback => {}
        Some("http") => {
            return Err(at.invalid(
                span,
                "`alerts.webhook.url` is plain http:// to a host that is not this machine",
                "use https:// (alerts name users and addresses; they must not cross a network in clear); http:// is accepted for 127.0.0.1, ::1 and localhost only",
            ));
        }
        _ => {
            return Err(at.invalid(
                span,
                "`alerts.webhook.url` is not an http(s) URL with a host",
                "write the receiver's full URL, e.g. \"https://alerts.example.com/mcp-audit\"",
            ));
        }
    }
    let secret_span = w.secret_file.span();
    let secret_file = at
        .base()
        .join(at.file_path("alerts.webhook.secret_file", w.secret_file)?);
    let secret = read_secret(&secret_file).map_err(|why| {
        at.invalid(
            secret_span,
            &format!("`alerts.webhook.secret_file` {}: {why}", secret_file.display()),
            "write a random secret of at least 16 bytes to it (e.g. `openssl rand -hex 32 > FILE; chmod 600 FILE`); the receiver checks each alert's signature with the same secret",
        )
    })?;
    let timeout_ms = at.ranged(
        "alerts.webhook.timeout_ms",
        w.timeout_ms,
        5_000,
        100..=120_000,
    )?;
    let max_attempts = at.ranged("alerts.webhook.max_attempts", w.max_attempts, 5, 1..=20)?;
    let backoff_ms = at.ranged("alerts.webhook.backoff_ms", w.backoff_ms, 500, 1..=60_000)?;
    let ca_file = match w.ca_file {
        Some(f) => Some(at.base().join(at.file_path("alerts.webhook.ca_file", f)?)),
        None => None,
    };
    Ok(WebhookConfig {
        url,
        secret: std::sync::Arc::new(secret),
        secret_file,
        timeout: Duration::from_millis(timeout_ms),
        max_attempts: max_attempts as u32,
        backoff: Duration::from_millis(backoff_ms),
        ca_file,
    })
}

/// The secret's bytes (a trailing newline dropped), refused when others may read the file or
/// when it is shorter than 16 bytes. The error never quotes the content.
fn read_secret(path: &std::path::Path) -> Result<zeroize::Zeroizing<Vec<u8>>, String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "its mode is {mode:o}: group or others may read it (make it 600)"
        ));
    }
    let mut bytes = zeroize::Zeroizing::new(std::fs::read(path).map_err(|e| e.to_string())?);
    while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        bytes.pop();
    }
    if bytes.len() < 16 {
        return Err(format!(
            "it holds {} bytes; at least 16 are needed",
            bytes.len()
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;

    fn parse(text: &str) -> Result<Config, crate::config::ConfigError> {
        Config::parse(Path::new("/etc/mcp/proxy.toml"), text)
    }

    #[test]
    fn defaults_are_on_with_five_minute_windows_and_no_webhook() {
        let c = parse("").unwrap().alerts;
        assert!(c.enabled);
        assert_eq!(c.min_level, crate::audit::RiskLevel::Medium);
        assert_eq!(c.window.as_secs(), 300);
        assert_eq!(c.group_wait.as_secs(), 5);
        assert!(c.webhook.is_none());
    }

    #[test]
    fn bad_values_name_the_line_and_say_what_to_do() {
        let cases = [
            (
                "[alerts]\nmin_level = \"severe\"\n",
                ":2: `alerts.min_level`",
            ),
            (
                "[alerts]\nwindow_ms = 10\n",
                ":2: `alerts.window_ms` = 10 is out of range",
            ),
            (
                "[alerts]\nwindow_ms = 2000\ngroup_wait_ms = 3000\n",
                ":3: `alerts.group_wait_ms` = 3000 is out of range 0..=2000",
            ),
            (
                "[alerts]\nqueue_capacity = 0\n",
                ":2: `alerts.queue_capacity` = 0",
            ),
            ("[alerts]\nwindw_ms = 1\n", ":2: unknown field `windw_ms`"),
            (
                "[alerts.webhook]\nurl = \"http://alerts.example.com/x\"\nsecret_file = \"s\"\n",
                ":2: `alerts.webhook.url` is plain http://",
            ),
            (
                "[alerts.webhook]\nurl = \"https://alerts.example.com/x\"\nsecret_file = \"/nonexistent/secret\"\n",
                ":3: `alerts.webhook.secret_file` /nonexistent/secret",
            ),
            (
                "[alerts.webhook]\nsecret_file = \"s\"\n",
                "missing field `url`",
            ),
        ];
        for (text, expected) in cases {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(expected), "{text:?} gave {err}");
            assert!(err.contains("hint: "), "{err}");
        }
    }

    #[test]
    fn the_secret_file_must_be_private_and_long_enough_and_is_never_quoted() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        let config = dir.path().join("proxy.toml");
        let text = "[alerts.webhook]\nurl = \"http://127.0.0.1:9/hook\"\nsecret_file = \"secret\"\nmax_attempts = 3\n";
        std::fs::write(&file, "short-secret\n").unwrap();
        std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let err = Config::parse(&config, text).unwrap_err().to_string();
        assert!(err.contains("holds 12 bytes"), "{err}");
        assert!(!err.contains("short-secret"), "{err}");
        std::fs::write(&file, "0123456789abcdef0123\n").unwrap();
        std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .unwrap();
        let err = Config::parse(&config, text).unwrap_err().to_string();
        assert!(err.contains("mode is 644"), "{err}");
        std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let c = Config::parse(&config, text).unwrap().alerts;
        let w = c.webhook.unwrap();
        assert_eq!(w.secret.as_slice(), b"0123456789abcdef0123");
        assert_eq!(w.max_attempts, 3);
        assert!(!format!("{w:?}").contains("0123456789"));
    }
}
