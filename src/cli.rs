//! The command line: one subcommand per mode, all finding the store through `--config`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::audit::EventType;

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
    /// Show the newest audit events.
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
    /// export; exit status 0 when intact, 1 when something was changed, removed or added.
    Verify(VerifyArgs),
    /// Write a time range of the trail to one file that `verify --export` checks anywhere.
    Export(ExportArgs),
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
            Command::Keygen(_) => std::path::Path::new("proxy.toml"),
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
    /// The tool's annotations as `tools/list` would give them, e.g. '{"destructiveHint":true}'.
    #[arg(long, value_name = "JSON")]
    pub annotations: Option<String>,
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
    #[arg(long, value_name = "PATH", default_value = "proxy.toml")]
    pub config: PathBuf,
}

/// `stdio` arguments.
#[derive(Debug, Args)]
pub struct StdioArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub config: ConfigArg,
    /// The identity recorded as user_id (default: user_id in the config, else the OS user).
    #[arg(long)]
    pub user: Option<String>,
    /// Which `[[upstream]]` table to run (default: the first in the config).
    #[arg(long, value_name = "NAME")]
    pub upstream: Option<String>,
    /// The MCP server command and its arguments (default: upstream.command in the config).
    #[arg(last = true, value_name = "SERVER_COMMAND")]
    pub command: Vec<String>,
}

/// `events` arguments.
#[derive(Debug, Args)]
pub struct EventsArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub config: ConfigArg,
    /// How many events, newest first.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Only this session.
    #[arg(long)]
    pub session: Option<String>,
    /// Only this tool.
    #[arg(long)]
    pub tool: Option<String>,
    /// Only this user.
    #[arg(long)]
    pub user: Option<String>,
    /// Only this event type.
    #[arg(long = "type", value_enum)]
    pub event_type: Option<TypeArg>,
}

/// Event types as command-line values.
#[derive(Debug, Clone, Copy, ValueEnum)]
#[allow(missing_docs)]
pub enum TypeArg {
    ToolAccess,
    ToolExecution,
    ToolFailure,
    PermissionChange,
    ConfigurationChange,
}

impl From<TypeArg> for EventType {
    fn from(t: TypeArg) -> EventType {
        match t {
            TypeArg::ToolAccess => EventType::ToolAccess,
            TypeArg::ToolExecution => EventType::ToolExecution,
            TypeArg::ToolFailure => EventType::ToolFailure,
            TypeArg::PermissionChange => EventType::PermissionChange,
            TypeArg::ConfigurationChange => EventType::ConfigurationChange,
        }
    }
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

/// `export` arguments.
#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub config: ConfigArg,
    /// Events from this time on (RFC 3339, e.g. 2026-12-01T00:00:00Z); default: the first.
    #[arg(long, value_name = "TIME")]
    pub since: Option<humantime::Timestamp>,
    /// Events before this time (RFC 3339); default: the last.
    #[arg(long, value_name = "TIME")]
    pub until: Option<humantime::Timestamp>,
    /// The file to write (never overwritten).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}
