//! The command line: one subcommand per mode, all finding the store through `--config`.

use std::path::PathBuf;

use std::time::SystemTime;

use clap::{Args, Parser, Subcommand};

use crate::audit::event::{EventId, EventType, Outcome, RiskLevel};

/// Command-line arguments.
#[derive(Debug, Parser)]
#[command(
    name = "mcp-audit-proxy",
    version,
    about = "A transparent MCP proxy that records every tool call in a durable audit trail"
)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run an MCP server behind the proxy over stdio (use it in place of the server's command).
    Stdio(StdioArgs),
    /// Serve the configured upstreams over MCP Streamable HTTP at `/mcp/NAME` (plain or TLS).
    Gateway(ConfigArg),
    /// Show the newest audit events (filtered, followed as they are written), or one with its
    /// pair (`events show ID`).
    Events(EventsArgs),
    /// Rebuild the query index from the journals (no proxy may be running on the store).
    Reindex(ConfigArg),
    /// Try the `[risk]` policy before deploying it.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Review pinned tool definitions.
    #[command(subcommand)]
    Tools(ToolsCommand),
    /// Make the Ed25519 key pair that signs journal checkpoints (audit.signing_key_file).
    Keygen(KeygenArgs),
    /// Check the audit trail for tampering: every journal of the store (and its index), or an
    /// export; exit status 0 when intact, 1 when something was changed, removed or added, 2
    /// on an error or when the index could not be checked (this account cannot write the store).
    Verify(VerifyArgs),
    /// Write a time range of the trail to one file that `verify --export` checks anywhere; or,
    /// with --user, that user's events in plaintext JSON (GDPR Art. 20 data portability).
    Export(ExportArgs),
    /// The audit store itself: `store status` (size by part, events, budget used).
    #[command(subcommand)]
    Store(StoreCommand),
    /// Show which events have outlived their retention period ([retention]); with --apply,
    /// remove them (the chain stays verifiable: each purge records its boundary hashes).
    Retention(RetentionArgs),
    /// Erase a user's personal data (GDPR Art. 17): their key is destroyed, so the personal
    /// fields of their events can no longer be read; the chain and the skeleton still verify.
    Erase(EraseArgs),
    /// Bring events (JSON lines, as `events --json` writes them) into the store, kept as they
    /// are and marked imported; the whole file is checked first, nothing is written on error.
    Import(ImportArgs),
    /// Find anomalies in the trail: statistical, behavioural, temporal, network.
    Anomalies(AnomaliesArgs),
    /// Behaviour of a user, or usage of the tools, over a time window.
    #[command(subcommand)]
    Analyze(AnalyzeCommand),
    /// Check the trail and the configuration against GDPR, HIPAA or PCI DSS, rule by rule;
    /// exit status 0 when no assessable rule fails, 1 when one is non-compliant, 2 on error.
    Compliance(ComplianceArgs),
    /// A report over a period (default: the last 30 days): `executive` (totals, trends,
    /// compliance, top findings, recommendations) or `detailed` (every finding with its
    /// evidence, users, tools, risk, compliance rule by rule), as HTML, Markdown or JSON.
    Report(ReportArgs),
    /// List the alerts the proxy and the gateway raised (stored as `alert` events), newest
    /// first.
    Alerts(AlertsArgs),
    /// Internal: ends the servers' process groups when the proxy that started it is killed
    /// (`proxy::warden`); started by `stdio` and `gateway`, not by hand.
    #[command(hide = true)]
    Warden,
}

/// `alerts` arguments (default window: the last 24 hours).
#[derive(Debug, Args)]
pub struct AlertsArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub config: ConfigArg,
    /// From TIME: RFC 3339 or a duration ago (24h, 7d); default 24h.
    #[arg(long, value_name = "TIME", value_parser = parse_time, allow_hyphen_values = true)]
    pub since: Option<SystemTime>,
    /// Until TIME (same forms; default: now).
    #[arg(long, value_name = "TIME", value_parser = parse_time, allow_hyphen_values = true)]
    pub until: Option<SystemTime>,
    /// Only alerts about this user (`user_id`).
    #[arg(long)]
    pub user: Option<String>,
    /// At most this many alerts (1 or more).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: u64,
    /// One JSON object per line (the alert event, see `alert` events in the README).
    #[arg(long)]
    pub json: bool,
}

/// `store` subcommands.
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Bytes on disk by part (journals, checkpoints, index, keys), events, the oldest and the
    /// newest, and how much of audit.max_store_bytes is used.
    Status(StoreStatusArgs),
}

/// `store status` arguments.
#[derive(Debug, Args)]
pub struct StoreStatusArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub config: ConfigArg,
    /// One JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

impl Command {
    /// The config file this subcommand runs from.
    pub fn config(&self) -> &std::path::Path {
        match self {
            Command::Stdio(a) => &a.config.config,
            Command::Gateway(a) => &a.config,
            Command::Events(a) => &a.config.config,
            Command::Reindex(a) => &a.config,
            Command::Policy(PolicyCommand::Test(a)) => &a.config.config,
            Command::Tools(ToolsCommand::Accept(a)) => &a.config.config,
            Command::Verify(a) => &a.config.config,
            Command::Export(a) => &a.config.config,
            Command::Store(StoreCommand::Status(a)) => &a.config.config,
            Command::Retention(a) => &a.config.config,
            Command::Erase(a) => &a.config.config,
            Command::Import(a) => &a.config.config,
            Command::Anomalies(a) => &a.config.config,
            Command::Alerts(a) => &a.config.config,
            Command::Analyze(AnalyzeCommand::User(a)) => &a.config.config,
            Command::Analyze(AnalyzeCommand::Tools(a)) => &a.config.config,
            Command::Compliance(a) => &a.config.config,
            Command::Report(a) => &a.config.config,
            Command::Keygen(_) | Command::Warden => std::path::Path::new("proxy.toml"),
        }
    }
}

/// `tools` subcommands.
#[derive(Debug, Subcommand)]
pub enum ToolsCommand {
    /// Accept the changed definition of a tool (pinning): its calls are allowed again.
    Accept(ToolsAcceptArgs),
}

/// `tools accept` arguments.
#[derive(Debug, Args)]
pub struct ToolsAcceptArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub config: ConfigArg,
    /// The tool name, as the server lists it.
    pub name: String,
    /// Accept only this definition (the hash in the configuration_change event you reviewed),
    /// so that a definition changed again since is not accepted unseen.
    #[arg(long)]
    pub hash: Option<String>,
    /// The upstream whose pin it is, as named in the configuration_change event (default: the
    /// config's first upstream).
    #[arg(long, value_name = "NAME")]
    pub upstream: Option<String>,
}

/// `policy` subcommands.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Evaluate the policy against one call, or against the calls already in the store.
    Test(PolicyTestArgs),
}

/// `policy test` arguments.
#[derive(Debug, Args)]
pub struct PolicyTestArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub config: ConfigArg,
    /// The call as JSON: `{"name": …, "arguments": {…}}` or a whole JSON-RPC `tools/call`
    /// request; `-` or nothing reads it from stdin.
    #[arg(value_name = "CALL_JSON")]
    pub call: Option<String>,
    /// The caller (default: user_id in the config, else the OS user).
    #[arg(long)]
    pub user: Option<String>,
    /// A role the caller's credential carries, as a gateway API key's, client certificate's
    /// or JWT's `roles` would (repeatable); `[risk.roles]` adds the user's own.
    #[arg(long = "role", value_name = "ROLE", conflicts_with = "from_store")]
    pub roles: Vec<String>,
    /// The tool's annotations as `tools/list` would give them, e.g. '{"destructiveHint":true}'.
    #[arg(long, value_name = "JSON")]
    pub annotations: Option<String>,
    /// The tools the server lists (comma-separated): a name not among them that differs
    /// from one only in case is refused, as the proxy does against `tools/list`.
    #[arg(
        long,
        value_name = "NAMES",
        value_delimiter = ',',
        conflicts_with = "from_store"
    )]
    pub listed: Vec<String>,
    /// Replay the newest access events of the store instead: what would this policy decide?
    #[arg(long, conflicts_with = "call")]
    pub from_store: bool,
    /// With --from-store: how many access events, newest first.
    #[arg(long, default_value_t = 1000)]
    pub limit: usize,
    /// With --from-store: only events younger than this (e.g. 7d, 12h).
    #[arg(long, value_name = "DURATION")]
    pub since: Option<humantime::Duration>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The config file, shared by every subcommand so they all find the same store.
#[derive(Debug, Args)]
pub struct ConfigArg {
    /// The config file.
    #[arg(long, value_name = "PATH", default_value = "proxy.toml", global = true)]
    pub config: PathBuf,
}

/// `stdio` arguments.
#[derive(Debug, Args)]
pub struct StdioArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub config: ConfigArg,
    /// The identity recorded as user_id (default: user_id in the config, else the OS user).
    #[arg(long, value_parser = parse_identity)]
    pub user: Option<String>,
    /// Which `[[upstream]]` table to run (default: the first in the config); with a server
    /// command after `--` and no table of that name, the name that server is recorded and
    /// its tools pinned under (default `upstream`: name each server that shares a config).
    #[arg(long, value_name = "NAME")]
    pub upstream: Option<String>,
    /// The MCP server command and its arguments (default: upstream.command in the config).
    #[arg(last = true, value_name = "SERVER_COMMAND")]
    pub command: Vec<String>,
}

/// `events` arguments.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct EventsArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub config: ConfigArg,
    /// `events show ID` instead of a list.
    #[command(subcommand)]
    pub show: Option<EventsCommand>,
    /// How many events, newest first (with --follow: how many recent ones before following).
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// One JSON object per line (the stored event JSON) instead of a table.
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,
    /// CSV with a header line instead of a table.
    #[arg(long)]
    pub csv: bool,
    /// Keep printing new matching events as any process writes them, until interrupted.
    #[arg(long, short = 'f', conflicts_with = "until")]
    pub follow: bool,
    /// Only events at or after TIME: RFC 3339 (2026-12-01T09:00:00Z, 2026-12-01T10:00:00+01:00)
    /// or a duration ago (30m, 2h, 7d).
    #[arg(long, value_name = "TIME", value_parser = parse_time, allow_hyphen_values = true)]
    pub since: Option<SystemTime>,
    /// Only events at or before TIME (same forms as --since).
    #[arg(long, value_name = "TIME", value_parser = parse_time, allow_hyphen_values = true)]
    pub until: Option<SystemTime>,
    /// Only this session (session_id).
    #[arg(long)]
    pub session: Option<String>,
    /// Only this tool (tool_name).
    #[arg(long)]
    pub tool: Option<String>,
    /// Only this user (user_id).
    #[arg(long)]
    pub user: Option<String>,
    /// Only this event type: tool_access, tool_execution, tool_failure, permission_change,
    /// configuration_change, alert, server_request (dashes work too: tool-failure).
    #[arg(long = "type", value_name = "TYPE", value_parser = parse_event_type)]
    pub event_type: Option<EventType>,
    /// Only events at this risk level or above: low, medium, high, critical.
    #[arg(long, value_name = "LEVEL", value_parser = parse_risk)]
    pub risk: Option<RiskLevel>,
    /// Only events with this compliance tag (gdpr, hipaa, pci_dss, secrets, ...; the built-in
    /// ones in any case, with `-` for `_`: GDPR, pci-dss).
    #[arg(long, value_parser = parse_tag)]
    pub tag: Option<String>,
    /// Only this result: initiated, success, error, input_required, task, jsonrpc_error,
    /// cancelled, timeout, server_exit, shutdown, refused, blocked (dashes work too).
    #[arg(long, value_name = "RESULT", value_parser = parse_result)]
    pub result: Option<Outcome>,
    /// Only this upstream (its configured name).
    #[arg(long)]
    pub upstream: Option<String>,
}

/// `events` subcommands.
#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Print one event and the other half of its pair (access <-> its end).
    Show(ShowArgs),
}

/// `events show` arguments.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The event id (a ULID, as in `event_id`).
    #[arg(value_parser = parse_event_id)]
    pub id: EventId,
    /// The two events as JSON lines (the event first) instead of indented JSON.
    #[arg(long)]
    pub json: bool,
}

/// `--since`/`--until`: an RFC 3339 time, or a duration before now (humantime: `2h`, `7d`;
/// `m` is minutes, `M` months of 30.44 days), from 1970-01-01T00:00:00Z on: event times are
/// stored from the Unix epoch on, and an earlier bound was taken as 1970 by some commands,
/// refused by others, and crashed `alerts`. A bare `0` is refused: humantime reads it as no
/// time ago (now), where a user may mean the epoch (helper-94 F11).
pub fn parse_time(text: &str) -> Result<SystemTime, String> {
    if text.trim() == "0" {
        return Err(
            "0 is ambiguous: give a duration with its unit (30m, 7d) or an RFC 3339 time (1970-01-01T00:00:00Z for the whole trail)"
                .into(),
        );
    }
    let parsed = humantime::parse_duration(text);
    // A duration too large to count (helper-116 L6: it was reported as an RFC 3339 time with
    // invalid characters).
    if let Err(humantime::DurationError::NumberOverflow) = parsed {
        return Err(format!(
            "{text:?} is too long a duration to count back from now: the trail's times begin at 1970-01-01T00:00:00Z"
        ));
    }
    let t = if let Ok(ago) = parsed {
        SystemTime::now()
            .checked_sub(ago)
            .ok_or_else(|| format!("{text} ago is before 1970-01-01T00:00:00Z"))?
    } else {
        chrono::DateTime::parse_from_rfc3339(text)
            .map(SystemTime::from)
            .map_err(|e| {
                format!(
                    "{text:?} is neither an RFC 3339 time ({e}; e.g. 2026-12-01T09:00:00Z) nor a duration ago (e.g. 30m, 2h, 7d)"
                )
            })?
    };
    if t < SystemTime::UNIX_EPOCH {
        return Err(format!(
            "{text:?} is before 1970-01-01T00:00:00Z, where the trail's times begin; give a time from 1970 on"
        ));
    }
    Ok(t)
}

fn spellings<T: Copy>(all: &[T], name: impl Fn(T) -> &'static str) -> String {
    all.iter().map(|v| name(*v)).collect::<Vec<_>>().join(", ")
}

/// A `--tag`: a built-in tag as the classifiers spell it whatever its case and with `-` for
/// `_` (helper-94: `--tag GDPR` silently matched nothing, while `--type` takes both); any
/// other (a rule's own tag) exactly as given.
fn parse_tag(text: &str) -> Result<String, String> {
    let folded = text.to_ascii_lowercase().replace('-', "_");
    Ok(
        if ["gdpr", "hipaa", "pci_dss", "secrets"].contains(&folded.as_str()) {
            folded
        } else {
            text.to_string()
        },
    )
}

fn parse_event_type(text: &str) -> Result<EventType, String> {
    EventType::from_spelling(text).ok_or_else(|| {
        format!(
            "unknown event type; one of {}",
            spellings(&EventType::ALL, EventType::as_str)
        )
    })
}

fn parse_risk(text: &str) -> Result<RiskLevel, String> {
    RiskLevel::from_spelling(text).ok_or_else(|| {
        format!(
            "unknown risk level; one of {}",
            spellings(&RiskLevel::ALL, RiskLevel::as_str)
        )
    })
}

fn parse_result(text: &str) -> Result<Outcome, String> {
    Outcome::from_spelling(text).ok_or_else(|| {
        format!(
            "unknown result; one of {}",
            spellings(&Outcome::ALL, Outcome::as_str)
        )
    })
}

fn parse_event_id(text: &str) -> Result<EventId, String> {
    text.trim()
        .parse()
        .map_err(|e| format!("not an event id ({e}); give the 26-character event_id of an event"))
}

/// `keygen` arguments.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// The private key file to write (PKCS#8 PEM, mode 0600); the public key goes to PATH.pub.
    /// Never overwritten.
    #[arg(long, value_name = "PATH")]
    pub out: PathBuf,
}

/// `verify` arguments.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub config: ConfigArg,
    /// Verify this store folder instead of the config's audit.store_dir (no config is read).
    #[arg(long, value_name = "DIR", conflicts_with = "export")]
    pub store: Option<PathBuf>,
    /// Verify an export file (made by `export`; no config or store needed).
    #[arg(long, value_name = "FILE")]
    pub export: Option<PathBuf>,
    /// The public key that checkpoints must be signed with (`keygen`'s PATH.pub); default:
    /// the public half of the configured audit.signing_key_file.
    #[arg(long, value_name = "FILE")]
    pub public_key: Option<PathBuf>,
    /// Do not check the index against the journals (faster on large stores).
    #[arg(long)]
    pub no_index: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `retention` arguments.
#[derive(Debug, Args)]
pub struct RetentionArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub config: ConfigArg,
    /// This store folder instead of the config's audit.store_dir.
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// Remove what has expired (without it, only show what would go).
    #[arg(long)]
    pub apply: bool,
    /// Print the plan (or, with --apply, what was removed) as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `export` arguments.
#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub config: ConfigArg,
    /// Events from this time on (RFC 3339, e.g. 2026-12-01T00:00:00Z, or a duration ago: 7d);
    /// default: the first.
    #[arg(long, value_name = "TIME", value_parser = parse_time, allow_hyphen_values = true)]
    pub since: Option<SystemTime>,
    /// Events before this time (same forms as --since); default: the last.
    #[arg(long, value_name = "TIME", value_parser = parse_time, allow_hyphen_values = true)]
    pub until: Option<SystemTime>,
    /// The file to write (never overwritten).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Export this user's events instead, decrypted, as one JSON document (a data-portability
    /// request, GDPR Art. 20); --since and --until narrow it.
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
}

/// `erase` arguments.
#[derive(Debug, Args)]
pub struct EraseArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub config: ConfigArg,
    /// The user whose personal data to erase (user_id exactly as recorded).
    #[arg(long, value_name = "USER")]
    pub user: String,
}

/// `import` arguments.
#[derive(Debug, Args)]
pub struct ImportArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub config: ConfigArg,
    /// The file of events, one JSON object per line (the README's "Event JSON"); `-` reads
    /// stdin.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Skip the events whose `event_id` is already in the store instead of refusing the
    /// file: for running an import again after one that stopped part-way (a full disk, a
    /// kill). Each skipped event must be the stored one (as the store keeps it: long values
    /// cut); a changed one is refused with its line number. How many were skipped is said.
    #[arg(long)]
    pub skip_stored: bool,
}

/// The time window of an analytics command.
#[derive(Debug, Args)]
pub struct WindowArgs {
    /// From TIME: RFC 3339 or a duration ago (7d, 24h).
    #[arg(long, value_name = "TIME", value_parser = parse_time, allow_hyphen_values = true)]
    pub since: Option<SystemTime>,
    /// Until TIME (same forms; default: now).
    #[arg(long, value_name = "TIME", value_parser = parse_time, allow_hyphen_values = true)]
    pub until: Option<SystemTime>,
    /// JSON instead of a table (`anomalies`: one finding per line).
    #[arg(long)]
    pub json: bool,
}

/// `anomalies` arguments (default window: the last 7 days).
#[derive(Debug, Args)]
pub struct AnomaliesArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub config: ConfigArg,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub window: WindowArgs,
    /// Read past damaged spans of the trail, and a trail that lost records (otherwise refused:
    /// the figures would leave their calls out); the log names each.
    #[arg(long)]
    pub allow_damaged: bool,
}

/// `analyze` subcommands.
#[derive(Debug, Subcommand)]
pub enum AnalyzeCommand {
    /// One user: where from, which tools, when, their anomalies and a risk score (default
    /// window: the last 24 hours).
    User(AnalyzeUserArgs),
    /// The tools: most used, success rates, risk, high-risk activity (default window: the
    /// last 24 hours).
    Tools(AnalyzeToolsArgs),
}

/// `analyze user` arguments.
#[derive(Debug, Args)]
pub struct AnalyzeUserArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub config: ConfigArg,
    /// The user (`user_id`).
    pub user: String,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub window: WindowArgs,
    /// Read past damaged spans of the trail, and a trail that lost records (otherwise refused:
    /// the figures would leave their calls out); the log names each.
    #[arg(long)]
    pub allow_damaged: bool,
}

/// `analyze tools` arguments.
#[derive(Debug, Args)]
pub struct AnalyzeToolsArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub config: ConfigArg,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub window: WindowArgs,
    /// Read past damaged spans of the trail, and a trail that lost records (otherwise refused:
    /// the figures would leave their calls out); the log names each.
    #[arg(long)]
    pub allow_damaged: bool,
}

/// `compliance` arguments (default window: the last 30 days).
#[derive(Debug, Args)]
#[command(
    mut_arg("since", |a| a.help("From TIME: RFC 3339 or a duration ago (7d, 24h); default: 30 days before --until, from 1970 on")),
    mut_arg("json", |a| a.help("JSON instead of a table: one assessment object per line, one line per regulation"))
)]
pub struct ComplianceArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub config: ConfigArg,
    /// gdpr, hipaa, pci_dss, or all (each in turn, from one reading of the store).
    #[arg(long, value_name = "REGULATION", value_parser = parse_regulations)]
    pub regulation: RegulationArg,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub window: WindowArgs,
    /// Do not walk the journals' hash chains (faster on large stores); the chain rules then
    /// say not_assessable.
    #[arg(long)]
    pub no_verify: bool,
}

/// The regulations `--regulation` names.
#[derive(Debug, Clone)]
pub struct RegulationArg(pub Vec<crate::analytics::compliance::Regulation>);

fn parse_regulations(text: &str) -> Result<RegulationArg, String> {
    use crate::analytics::compliance::Regulation;
    if text.trim().eq_ignore_ascii_case("all") {
        return Ok(RegulationArg(Regulation::ALL.to_vec()));
    }
    Regulation::parse(text)
        .map(|r| RegulationArg(vec![r]))
        .ok_or_else(|| "unknown regulation; one of gdpr, hipaa, pci_dss, all".to_string())
}

/// `report` arguments.
#[derive(Debug, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub config: ConfigArg,
    /// Which report.
    #[arg(value_enum)]
    pub kind: crate::report::model::Kind,
    /// From TIME: RFC 3339 or a duration ago (30d, 24h); default: 30 days before --until.
    #[arg(long, value_name = "TIME", value_parser = parse_time, allow_hyphen_values = true)]
    pub since: Option<SystemTime>,
    /// Until TIME (same forms; default: now).
    #[arg(long, value_name = "TIME", value_parser = parse_time, allow_hyphen_values = true)]
    pub until: Option<SystemTime>,
    /// `html` (one self-contained file: inline CSS and SVG charts, no script, no network),
    /// `md` (Markdown tables) or `json` (the model the other two are rendered from).
    #[arg(long, value_enum)]
    pub format: crate::report::render::Format,
    /// Write the report to FILE (replaced whole: written beside it, then renamed) instead of
    /// stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Do not walk the journals' hash chains for the compliance section (faster on large
    /// stores); its chain rules then say not_assessable.
    #[arg(long)]
    pub no_verify: bool,
    /// Read past damaged spans of the trail, and a trail that lost records (otherwise refused:
    /// the figures would leave their calls out); the log names each.
    #[arg(long)]
    pub allow_damaged: bool,
}

impl ReportArgs {
    /// The period as the analytics commands take it.
    pub fn window(&self) -> WindowArgs {
        WindowArgs {
            since: self.since,
            until: self.until,
            json: false,
        }
    }
}

/// `--user`: an identity the trail can name. Empty or blank, every event would name nobody;
/// control characters would forge lines of the log it is written to.
fn parse_identity(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        return Err("an empty or blank identity names nobody in the trail; give a user name, or leave --user out to use user_id from the config (else the OS user)".into());
    }
    if let Some(c) = s.chars().find(|c| c.is_control()) {
        return Err(format!(
            "the identity holds the control character U+{:04X}; give a plain user name",
            u32::from(c)
        ));
    }
    if crate::store::personal::is_pseudonym(s) {
        return Err(format!(
            "the identity {}",
            crate::store::personal::PSEUDONYM_FORM
        ));
    }
    Ok(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_help_of_events_type_names_every_event_type() {
        use clap::CommandFactory;
        let mut cli = Cli::command();
        let events = cli.find_subcommand_mut("events").expect("events");
        let help = events.render_long_help().to_string();
        for t in EventType::ALL {
            assert!(
                help.contains(t.as_str()),
                "{} missing from:\n{help}",
                t.as_str()
            );
        }
    }

    #[test]
    fn a_duration_too_large_to_count_is_said_to_be_one() {
        let err = parse_time("18446744073709551615d").unwrap_err();
        assert!(err.contains("too long a duration"), "{err}");
        let err = parse_time("100000y").unwrap_err();
        assert!(err.contains("before 1970"), "{err}");
    }

    #[test]
    fn a_bare_zero_is_no_time_but_units_and_times_are() {
        let err = parse_time("0").unwrap_err();
        assert!(err.contains("ambiguous"), "{err}");
        let now = SystemTime::now();
        let minute = parse_time("1m").unwrap();
        let month = parse_time("1M").unwrap();
        assert!(now.duration_since(minute).unwrap() < Duration::from_secs(120));
        assert!(now.duration_since(month).unwrap() > Duration::from_secs(29 * 86_400));
        assert_eq!(
            parse_time("1970-01-01T00:00:00Z").unwrap(),
            SystemTime::UNIX_EPOCH
        );
    }
}
