//! The binary's edge: parse the command line, load the config, start logging, run a mode,
//! map the outcome to an exit code.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use mcp_audit_proxy::cli::{Cli, Command, PolicyCommand, ToolsCommand};
use mcp_audit_proxy::commands;
use mcp_audit_proxy::config::Config;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    match run(cli) {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("mcp-audit-proxy: error: {}", describe(&e));
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Stdio(args) => {
            let config = Config::load(&args.config.config)?;
            Ok(commands::run_stdio(&args, &config)?)
        }
        Command::Events(args) => {
            let config = Config::load(&args.config.config)?;
            let mut out = std::io::stdout().lock();
            commands::events(&args, &config, &mut out).context("events")?;
            Ok(0)
        }
        Command::Reindex(args) => {
            let config = Config::load(&args.config)?;
            let mut out = std::io::stdout().lock();
            commands::reindex(&config, &mut out).context("reindex")?;
            Ok(0)
        }
        Command::Policy(PolicyCommand::Test(args)) => {
            let config = Config::load(&args.config.config)?;
            let mut out = std::io::stdout().lock();
            commands::policy_test(&args, &config, &mut std::io::stdin().lock(), &mut out)
                .context("policy test")?;
            Ok(0)
        }
        Command::Tools(ToolsCommand::Accept(args)) => {
            let config = Config::load(&args.config.config)?;
            let mut out = std::io::stdout().lock();
            commands::tools_accept(&config, &args.name, args.hash.as_deref(), &mut out)
                .context("tools accept")?;
            Ok(0)
        }
    }
}

/// The error and its causes, each cause once (most of ours already quote their source).
fn describe(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

/// Logs go to stderr only: in stdio mode stdout carries nothing but MCP.
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
