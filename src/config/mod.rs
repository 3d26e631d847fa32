//! `proxy.toml`: raw serde structs (unknown keys refused) validated into [`Config`].
//!
//! Every key is documented once here and with the same words in the repository's `proxy.toml`.
//! Errors name the file, the line and the key, and say what to do.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

mod alerts;
mod analytics;
mod gateway;
mod retention;
pub(crate) mod source;
mod upstream;

pub use alerts::{AlertsConfig, WebhookConfig};
pub use analytics::{AnalyticsConfig, DEFAULT_BASELINE_DAYS, parse_offset};
pub use gateway::{ANONYMOUS, ApiKey, GatewayConfig, JwtSettings, TlsFiles};
pub use retention::RetentionConfig;
pub use source::ConfigError;
pub(crate) use source::Source;
pub use upstream::{HeaderSource, MissingHeader, RemoteConfig, UpstreamConfig, path_safe};
use upstream::{RawUpstream, RawUpstreams, upstream};

/// When the journal is made durable: the trade between safety and latency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// Access event durable before forwarding; end event durable before the client sees the result.
    Sync,
    /// Durable at least every `flush_interval_ms`; calls never wait for the disk.
    Batched,
}

/// What the proxy does with calls while the audit store cannot take their events
/// (`audit.on_store_failure`): a full disk, an I/O error, an unwritable folder, or
/// `audit.max_store_bytes` reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnStoreFailure {
    /// Fail closed: new calls are refused (a JSON-RPC error saying the trail cannot record
    /// them; the server never sees them) until the store takes events again.
    #[default]
    Block,
    /// Fail open: calls go on unaudited; the log, the metrics and the first event written
    /// again say for how long, and how many events were not recorded.
    Allow,
}

impl OnStoreFailure {
    /// The TOML and JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            OnStoreFailure::Block => "block",
            OnStoreFailure::Allow => "allow",
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    user_id: Option<Spanned<String>>,
    #[serde(default)]
    upstream: RawUpstreams,
    #[serde(default)]
    gateway: gateway::RawGateway,
    #[serde(default)]
    audit: RawAudit,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    risk: crate::policy::settings::RawRisk,
    #[serde(default)]
    retention: retention::RawRetention,
    #[serde(default)]
    analytics: analytics::RawAnalytics,
    #[serde(default)]
    alerts: alerts::RawAlerts,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    store_dir: Option<Spanned<String>>,
    durability: Option<Durability>,
    flush_interval_ms: Option<Spanned<u64>>,
    segment_bytes: Option<Spanned<u64>>,
    queue_capacity: Option<Spanned<u64>>,
    max_stored_argument_bytes: Option<Spanned<u64>>,
    signing_key_file: Option<Spanned<String>>,
    checkpoint_every_events: Option<Spanned<u64>>,
    checkpoint_interval_ms: Option<Spanned<u64>>,
    max_store_bytes: Option<Spanned<u64>>,
    on_store_failure: Option<OnStoreFailure>,
    encrypt_personal_data: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_message_bytes: Option<Spanned<u64>>,
    call_timeout_ms: Option<Spanned<u64>>,
    call_timeout_max_ms: Option<Spanned<u64>>,
    shutdown_grace_ms: Option<Spanned<u64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    file: Option<Spanned<String>>,
}

/// The validated configuration every mode runs from.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub source: PathBuf,
    /// `user_id`: identity recorded in stdio mode when `--user` is not given.
    pub user_id: Option<String>,
    /// `[upstream]`, or the first of the `[[upstream]]` tables: the server the stdio wrapper
    /// starts (`stdio --upstream NAME` picks another).
    pub upstream: UpstreamConfig,
    /// Every `[[upstream]]` table (or the one `[upstream]`), in file order; names are unique.
    pub upstreams: Vec<UpstreamConfig>,
    /// `[gateway]`.
    pub gateway: GatewayConfig,
    /// `[audit]`.
    pub audit: AuditConfig,
    /// `[limits]`.
    pub limits: Limits,
    /// `[log]`.
    pub log: LogConfig,
    /// `[risk]`: the compiled policy.
    pub policy: std::sync::Arc<crate::policy::Policy>,
    /// `[retention]`: how long events are kept, per compliance tag.
    pub retention: RetentionConfig,
    /// `[analytics]`: the operator context of the anomaly detectors and `analyze`.
    pub analytics: AnalyticsConfig,
    /// `[alerts]`: real-time alerts (log, store, webhook).
    pub alerts: AlertsConfig,
}

/// `[audit]`: where and how events are stored.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// `store_dir`: the store directory (journal + index), relative to the config file.
    pub store_dir: PathBuf,
    /// `durability`: `sync` or `batched`.
    pub durability: Durability,
    /// `flush_interval_ms`: in `batched` mode, the longest time an event stays unsynced.
    pub flush_interval: Duration,
    /// `segment_bytes`: the journal starts a new segment file past this size.
    pub segment_bytes: u64,
    /// `queue_capacity`: access events waiting for the writer; past this, new calls are refused.
    pub queue_capacity: usize,
    /// `max_stored_argument_bytes`: what one event stores of a call's arguments (their JSON
    /// text) and of each error text, in bytes; longer values are cut and listed in
    /// `metadata.truncated` with their length and SHA-256 (see `audit::bound`).
    pub max_stored_argument_bytes: usize,
    /// `signing_key_file`: the Ed25519 private key (PKCS#8 PEM, from `mcp-audit-proxy keygen`)
    /// that signs the journal checkpoints, read at start (a configured key that cannot be read
    /// stops the proxy); without it checkpoints are written unsigned.
    pub signer: Option<std::sync::Arc<crate::store::checkpoint::Signer>>,
    /// Whether `signing_key_file` is set (for the commands that read the store, the private
    /// key may be unreadable to them: see [`Config::load_reading`]).
    pub signing_configured: bool,
    /// The public key of `signing_key_file`: the signer's, or, for a command that only reads
    /// the store and cannot read the private key, `signing_key_file` + `.pub` beside it.
    pub signing_public: Option<crate::store::checkpoint::TrustedKey>,
    /// `checkpoint_every_events`: a checkpoint after at most this many events…
    pub checkpoint_every_events: u64,
    /// `checkpoint_interval_ms`: …or this long after the first event it does not cover yet;
    /// and one at shutdown.
    pub checkpoint_interval: Duration,
    /// `max_store_bytes`: a size budget for the whole store folder (journals, checkpoints,
    /// index, keys), in bytes; unset, no budget. At 80% the proxy warns (a log line, a
    /// `configuration_change` event `audit/store_budget`, the `/metrics` ratio), once per
    /// crossing; at 100% the store counts as failed and `on_store_failure` applies until it is
    /// below again (retention, or files moved away). Counted from the proxy's own appends and
    /// a walk of the folder every few seconds (other processes write too).
    pub max_store_bytes: Option<u64>,
    /// `on_store_failure`: `block` (default: calls are refused while their events cannot be
    /// stored; fail closed) or `allow` (calls go on unaudited, and the proxy says so loudly:
    /// log, metrics, and an `audit/store_outage` event once it can write again).
    pub on_store_failure: OnStoreFailure,
    /// `encrypt_personal_data` (default `true`): each event's personal fields are stored
    /// encrypted under its user's key, so that `erase --user` can make them unreadable
    /// (GDPR Art. 17) without breaking the hash chain (see `store::personal`). With `false`
    /// they are stored in clear and can never be erased short of purging their records.
    pub encrypt_personal_data: bool,
}

/// `[limits]`: protection against misbehaving peers.
#[derive(Debug, Clone)]
pub struct Limits {
    /// `max_message_bytes`: a longer JSON-RPC message is refused.
    pub max_message_bytes: usize,
    /// `call_timeout_ms`: a `tools/call` without an answer by then fails; `None` (0) waits forever.
    /// Each `notifications/progress` of the call starts it again (MCP 2025-11-25 "Timeouts":
    /// progress shows that work is happening), up to `call_timeout_max`.
    pub call_timeout: Option<Duration>,
    /// `call_timeout_max_ms`: the longest a call may run however much progress it reports
    /// (the maximum MCP says to enforce); `None` (0): no maximum.
    pub call_timeout_max: Option<Duration>,
    /// `shutdown_grace_ms`: how long the server may take to exit after stdin closes, per step
    /// (1 s at most after a termination signal to the stdio wrapper).
    pub shutdown_grace: Duration,
}

/// `[log]`: where the proxy's own log lines go (not the audit trail: that is the store).
#[derive(Debug, Clone, Default)]
pub struct LogConfig {
    /// `file`: `stdio` mode appends its log lines to this file (relative to the config file)
    /// instead of stderr; it must open at start, or the proxy does not start.
    pub file: Option<PathBuf>,
}

impl Config {
    /// The environment variables that hold the proxy's own credentials: `risk.hmac_key_env`
    /// and every upstream's `headers_from_env` and `bearer_token_env`. They are removed from
    /// the environment of every server the proxy starts: a server is code the operator did
    /// not write, and with the HMAC key it could reverse the trail's pseudonyms, with another
    /// upstream's token act as the proxy there. A server that needs such a value gets it
    /// under another name.
    pub fn own_secret_vars(&self) -> Vec<String> {
        let upstreams = self
            .upstreams
            .iter()
            .chain(std::iter::once(&self.upstream))
            .filter_map(|u| u.remote.as_ref())
            .flat_map(|r| &r.headers)
            .filter_map(|(_, source)| match source {
                upstream::HeaderSource::Env { var, .. } => Some(var.clone()),
                upstream::HeaderSource::Value(_) => None,
            });
        let mut vars: Vec<String> = upstreams.chain(self.policy.hmac_key_env.clone()).collect();
        vars.sort();
        vars.dedup();
        vars
    }

    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(path, &text)
    }

    /// [`Config::load`] for a command that only reads the store (`events`, `verify`,
    /// `compliance`, ...): an auditor's account need not read the private signing key. When
    /// `audit.signing_key_file` cannot be read, its public key (`keygen`'s `PATH.pub` beside
    /// it) checks the signatures; with neither readable, the error is [`Config::load`]'s.
    pub fn load_reading(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse_as(path, &text, true)
    }

    /// Validates config text as if read from `path` (relative paths resolve against its folder).
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        Config::parse_as(path, text, false)
    }

    /// [`Config::parse`]; `reading`: for a command that only reads the store.
    fn parse_as(path: &Path, text: &str, reading: bool) -> Result<Config, ConfigError> {
        let at = Source::new(path, text);
        let raw: RawConfig = toml::from_str(text).map_err(|e| at.toml_error(&e))?;
        let table: toml::Table = toml::from_str(text).map_err(|e| at.toml_error(&e))?;
        let policy = crate::policy::settings::compile(&at, raw.risk, table.get("risk"))?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();

        let user_id = match raw.user_id {
            Some(u) => Some(at.identity("user_id", u)?),
            None => None,
        };

        let mut upstreams: Vec<UpstreamConfig> = Vec::new();
        let array = raw.upstream.array;
        let tables = if raw.upstream.tables.is_empty() && !array {
            vec![RawUpstream::default()]
        } else {
            raw.upstream.tables
        };
        if tables.is_empty() {
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                line: None,
                message: "`upstream` is an empty array".into(),
                hint: "add an [[upstream]] table with a name and a command".into(),
            });
        }
        for u in tables {
            let up = upstream(&at, &base, u, array)?;
            if upstreams.iter().any(|o| o.name == up.name) {
                return Err(ConfigError::Invalid {
                    path: path.to_path_buf(),
                    line: None,
                    message: format!("two [[upstream]] tables are named {:?}", up.name),
                    hint: "give each upstream a unique name: it is the path /mcp/<name> and the `upstream` of its events".into(),
                });
            }
            upstreams.push(up);
        }
        let gateway = gateway::compile(&at, raw.gateway)?;

        let a = raw.audit;
        let store_dir = match a.store_dir {
            Some(d) => base.join(at.file_path("audit.store_dir", d)?),
            None => base.join(".mcp-audit"),
        };
        let flush_ms = at.ranged(
            "audit.flush_interval_ms",
            a.flush_interval_ms,
            10,
            1..=60_000,
        )?;
        let segment_bytes = at.ranged(
            "audit.segment_bytes",
            a.segment_bytes,
            64 << 20,
            4096..=(1 << 40),
        )?;
        let queue_capacity = at.ranged(
            "audit.queue_capacity",
            a.queue_capacity,
            16_384,
            1..=(1 << 24),
        )?;
        let max_stored_argument_bytes = at.ranged(
            "audit.max_stored_argument_bytes",
            a.max_stored_argument_bytes,
            256 << 10,
            256..=(1 << 30),
        )?;

        let checkpoint_every_events = at.ranged(
            "audit.checkpoint_every_events",
            a.checkpoint_every_events,
            1000,
            1..=10_000_000,
        )?;
        let checkpoint_interval_ms = at.ranged(
            "audit.checkpoint_interval_ms",
            a.checkpoint_interval_ms,
            10_000,
            10..=86_400_000,
        )?;
        let max_store_bytes = match a.max_store_bytes {
            None => None,
            Some(v) => Some(at.in_range("audit.max_store_bytes", v, 65_536..=(1 << 50), None)?),
        };
        let signing_configured = a.signing_key_file.is_some();
        let mut signing_public = None;
        let signer = match a.signing_key_file {
            Some(f) => {
                let span = f.span();
                let file = base.join(at.file_path("audit.signing_key_file", f)?);
                let loaded = crate::store::checkpoint::Signer::load(&file);
                if reading && loaded.is_err() {
                    let mut public = file.clone().into_os_string();
                    public.push(".pub");
                    signing_public =
                        crate::store::checkpoint::TrustedKey::load(Path::new(&public)).ok();
                }
                let signer = match loaded {
                    Err(_) if signing_public.is_some() => None,
                    other => Some(other),
                };
                let signer = signer.transpose().map_err(|e| {
                    let text = e.to_string();
                    let (what, hint) = text.split_once("\n  hint: ").unwrap_or((&text, ""));
                    at.invalid(
                        span,
                        &format!("audit.signing_key_file: {what}"),
                        &format!("{hint}; the proxy does not start without the key it is told to sign checkpoints with"),
                    )
                })?;
                signer.map(std::sync::Arc::new)
            }
            None => None,
        };
        if let Some(s) = &signer {
            signing_public = Some(s.public());
        }

        let l = raw.limits;
        let max_message_bytes = at.ranged(
            "limits.max_message_bytes",
            l.max_message_bytes,
            16 << 20,
            256..=(1 << 30),
        )?;
        let call_timeout_ms = at.ranged(
            "limits.call_timeout_ms",
            l.call_timeout_ms,
            600_000,
            0..=(7 * 86_400_000),
        )?;
        let call_timeout_max_ms = at.ranged(
            "limits.call_timeout_max_ms",
            l.call_timeout_max_ms,
            3_600_000,
            0..=(7 * 86_400_000),
        )?;
        let shutdown_grace_ms = at.ranged(
            "limits.shutdown_grace_ms",
            l.shutdown_grace_ms,
            3_000,
            0..=600_000,
        )?;

        let analytics = analytics::compile(&at, raw.analytics)?;
        let alerts = alerts::compile(&at, raw.alerts)?;

        let log_file = match raw.log.file {
            Some(f) => Some(base.join(at.file_path("log.file", f)?)),
            None => None,
        };

        let retention = retention::compile(&at, raw.retention)?;

        Ok(Config {
            source: path.to_path_buf(),
            user_id,
            upstream: upstreams[0].clone(),
            upstreams,
            gateway,
            audit: AuditConfig {
                store_dir,
                durability: a.durability.unwrap_or(Durability::Sync),
                flush_interval: Duration::from_millis(flush_ms),
                segment_bytes,
                queue_capacity: queue_capacity as usize,
                max_stored_argument_bytes: max_stored_argument_bytes as usize,
                signer,
                signing_configured,
                signing_public,
                checkpoint_every_events,
                checkpoint_interval: Duration::from_millis(checkpoint_interval_ms),
                max_store_bytes,
                on_store_failure: a.on_store_failure.unwrap_or_default(),
                encrypt_personal_data: a.encrypt_personal_data.unwrap_or(true),
            },
            limits: Limits {
                max_message_bytes: max_message_bytes as usize,
                call_timeout: (call_timeout_ms > 0).then(|| Duration::from_millis(call_timeout_ms)),
                call_timeout_max: (call_timeout_max_ms > 0)
                    .then(|| Duration::from_millis(call_timeout_max_ms.max(call_timeout_ms))),
                shutdown_grace: Duration::from_millis(shutdown_grace_ms),
            },
            log: LogConfig { file: log_file },
            policy: std::sync::Arc::new(policy),
            retention,
            analytics,
            alerts,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/etc/mcp/proxy.toml"), text)
    }

    #[test]
    fn an_empty_file_gives_the_documented_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.audit.store_dir, Path::new("/etc/mcp/.mcp-audit"));
        assert_eq!(c.audit.durability, Durability::Sync);
        assert_eq!(c.limits.max_message_bytes, 16 << 20);
        assert_eq!(c.limits.call_timeout, Some(Duration::from_secs(600)));
        assert!(c.upstream.command.is_empty());
        assert!(c.upstream.share_children);
        assert_eq!(
            (c.gateway.pool_max_children, c.gateway.pool_max_in_flight),
            (4, 16)
        );
        assert_eq!(c.gateway.pool_idle_timeout, Duration::from_secs(300));
    }

    #[test]
    fn unknown_keys_fail_with_file_line_and_hint() {
        let err = parse("[audit]\ndurability = \"sync\"\ndurabilty = \"batched\"\n").unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("/etc/mcp/proxy.toml:3: unknown field `durabilty`"),
            "{text}"
        );
        assert!(text.contains("hint: check the spelling"), "{text}");
        let err = parse("[audti]\n").unwrap_err().to_string();
        assert!(err.contains(":1: unknown field `audti`"), "{err}");
    }

    #[test]
    fn bad_values_fail_with_file_line_and_hint() {
        let cases = [
            (
                "[audit]\ndurability = \"fast\"\n",
                ":2: unknown variant `fast`",
            ),
            (
                "[limits]\n\nmax_message_bytes = 10\n",
                ":3: `limits.max_message_bytes` = 10 is out of range",
            ),
            ("[limits]\ncall_timeout_ms = \"5s\"\n", ":2: invalid type"),
            (
                "user_id = \"\"\n",
                ":1: `user_id` must be a non-empty string",
            ),
            (
                "user_id = \"subject:0a1b\"\n",
                ":1: `user_id` starts with `subject:`",
            ),
            (
                "[upstream]\ncommand = []\n",
                ":2: `upstream.command` is empty",
            ),
            ("[audit\n", ":1:"),
            (
                "[gateway]\npool_max_children = 0\n",
                ":2: `gateway.pool_max_children` = 0 is out of range",
            ),
            (
                "[gateway]\npool_max_in_flight = 0\n",
                ":2: `gateway.pool_max_in_flight` = 0 is out of range",
            ),
            (
                "[gateway]\npool_idle_timeout_ms = 10\n",
                ":2: `gateway.pool_idle_timeout_ms` = 10 is out of range",
            ),
            (
                "[upstream]\nurl = \"https://x.example/mcp\"\nshare_children = false\n",
                ":3: upstream \"upstream\": `share_children` applies to a `command`",
            ),
        ];
        for (text, expected) in cases {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(expected), "{text:?} gave {err}");
            assert!(err.contains("hint: "), "{err}");
        }
    }

    #[test]
    fn the_store_budget_and_failure_mode_default_to_none_and_block_and_are_checked() {
        let c = parse("").unwrap();
        assert_eq!(c.audit.max_store_bytes, None);
        assert_eq!(c.audit.on_store_failure, OnStoreFailure::Block);
        let c =
            parse("[audit]\nmax_store_bytes = 1048576\non_store_failure = \"allow\"\n").unwrap();
        assert_eq!(c.audit.max_store_bytes, Some(1 << 20));
        assert_eq!(c.audit.on_store_failure, OnStoreFailure::Allow);
        let err = parse("[audit]\nmax_store_bytes = 10\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("audit.max_store_bytes") && err.contains(":2:"),
            "{err}"
        );
        let err = parse("[audit]\non_store_failure = \"ignore\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(":2:") && err.contains("`block` or `allow`"),
            "{err}"
        );
    }

    #[test]
    fn paths_a_shell_would_expand_are_refused_not_taken_as_written() {
        // Taken as written, "~/audit" was a folder named `~` beside the config.
        for (table, key, value) in [
            ("audit", "store_dir", "~/audit"),
            ("audit", "store_dir", "~"),
            ("audit", "store_dir", "$HOME/audit"),
            ("audit", "signing_key_file", "${XDG_CONFIG_HOME}/key.pem"),
            ("log", "file", "~alice/proxy.log"),
            ("upstream", "cwd", "$PWD"),
        ] {
            let err = parse(&format!("[{table}]\n{key} = \"{value}\"\n"))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(":2: `") && err.contains("are not expanded"),
                "{value}: {err}"
            );
        }
        // A dollar sign that names no variable is a path like any other.
        let c = parse("[audit]\nstore_dir = \"audit$/2026\"\n").unwrap();
        assert_eq!(c.audit.store_dir, Path::new("/etc/mcp/audit$/2026"));
    }

    #[test]
    fn relative_store_dirs_resolve_against_the_config_folder() {
        let c = parse("[audit]\nstore_dir = \"data/audit\"\n").unwrap();
        assert_eq!(c.audit.store_dir, Path::new("/etc/mcp/data/audit"));
        let c = parse("[audit]\nstore_dir = \"/var/lib/audit\"\n").unwrap();
        assert_eq!(c.audit.store_dir, Path::new("/var/lib/audit"));
    }

    #[test]
    fn the_log_file_resolves_against_the_config_folder_and_must_not_be_empty() {
        assert_eq!(parse("").unwrap().log.file, None);
        let c = parse("[log]\nfile = \"logs/proxy.log\"\n").unwrap();
        assert_eq!(
            c.log.file.as_deref(),
            Some(Path::new("/etc/mcp/logs/proxy.log"))
        );
        let err = parse("[log]\nfile = \"\"\n").unwrap_err().to_string();
        assert!(
            err.contains(":2: `log.file` must be a non-empty string"),
            "{err}"
        );
        let err = parse("[log]\nfiel = \"x\"\n").unwrap_err().to_string();
        assert!(err.contains(":2: unknown field `fiel`"), "{err}");
    }
}
