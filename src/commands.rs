//! The modes behind the subcommands, so that `main` stays a thin edge and tests can call them.

use std::io::Write;
use std::time::Duration;

use crate::audit::writer;
use crate::audit::{AuditEvent, EventType};
use crate::cli::{EventsArgs, StdioArgs};
use crate::config::Config;
use crate::proxy::stdio;
use crate::store::{self, Filter, OpenReport, Store, StoreError};

/// Errors of a mode, each already saying what to do.
#[derive(Debug, thiserror::Error)]
pub enum ModeError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The stdio proxy failed.
    #[error(transparent)]
    Stdio(#[from] stdio::StdioError),
    /// A thread or runtime could not be started.
    #[error("cannot start {what}: {source}")]
    Start {
        /// What.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// There is no store to read.
    #[error("no audit store at {}\n  hint: check audit.store_dir in the config; the store is created when the proxy first runs", path.display())]
    NoStore {
        /// The configured store folder.
        path: std::path::PathBuf,
    },
    /// Writing the output failed.
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
}

/// Logs what opening the store found (a torn tail or a rebuilt index is worth a warning).
fn log_open(report: &OpenReport) {
    if let Some(torn) = &report.torn {
        tracing::warn!(torn = %torn, "audit journal recovered");
    }
    if let Some(reason) = &report.rebuilt {
        tracing::warn!(reason = %reason, events = report.indexed, "audit index rebuilt from the journal");
    }
    for d in &report.damaged {
        tracing::error!(damage = %d, "audit journal segment damaged");
    }
    if report.caught_up > 0 {
        tracing::info!(
            records = report.caught_up,
            "audit index caught up with the journal"
        );
    }
}

/// The identity for stdio mode: `--user`, else `user_id` in the config, else the OS user.
pub fn stdio_user(args: &StdioArgs, config: &Config) -> String {
    if let Some(u) = args.user.clone().or_else(|| config.user_id.clone()) {
        return u;
    }
    let uid = nix::unistd::getuid();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(user)) => user.name,
        _ => format!("uid:{uid}"),
    }
}

/// `stdio`: opens the store, runs the proxy, drains the audit writer; returns the exit code.
pub fn run_stdio(args: &StdioArgs, config: &Config) -> Result<i32, ModeError> {
    let command = if args.command.is_empty() {
        config.upstream.command.clone()
    } else {
        args.command.clone()
    };
    if command.is_empty() {
        return Err(stdio::StdioError::NoCommand {
            config: config.source.clone(),
        }
        .into());
    }
    let user = stdio_user(args, config);
    let (store, report) = Store::open(&config.audit.store_dir, config.audit.segment_bytes)?;
    log_open(&report);
    let (journal, index, lock) = store.into_parts();
    let (sink, threads) = writer::start(
        journal,
        index,
        config.audit.durability,
        config.audit.flush_interval,
        config.audit.queue_capacity,
    )
    .map_err(|source| ModeError::Start {
        what: "the audit writer",
        source,
    })?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .thread_name("proxy-rt")
        .enable_all()
        .build()
        .map_err(|source| ModeError::Start {
            what: "the async runtime",
            source,
        })?;
    let result = runtime.block_on(async {
        let code = stdio::run(config, &command, user, sink.clone()).await;
        sink.close().await;
        code
    });
    threads.join();
    // The client's stdin may still be open in a blocking read; do not wait for it.
    runtime.shutdown_timeout(Duration::from_millis(100));
    drop(lock);
    Ok(result?)
}

/// `events`: prints the newest events from the index, or from the journal while a proxy runs.
pub fn events(args: &EventsArgs, config: &Config, out: &mut impl Write) -> Result<(), ModeError> {
    let filter = Filter {
        session: args.session.clone(),
        tool: args.tool.clone(),
        user: args.user.clone(),
        event_type: args.event_type.map(EventType::from),
    };
    let root = &config.audit.store_dir;
    if !root.join("journal").is_dir() {
        return Err(ModeError::NoStore { path: root.clone() });
    }
    let events = match store::open_for_query(root)? {
        // Nobody writes: query the index (caught up with the journal, which is left as it is).
        Some((index, _lock, report)) => {
            log_open(&report);
            index.newest(args.limit, &filter)?
        }
        None => {
            tracing::info!("a proxy is writing this store; reading the journal directly");
            let (events, damaged) = store::newest_from_journal(root, args.limit, &filter)?;
            for d in damaged {
                tracing::error!(damage = %d, "audit journal segment damaged");
            }
            events
        }
    };
    if args.json {
        for e in &events {
            serde_json::to_writer(&mut *out, e).map_err(std::io::Error::from)?;
            writeln!(out)?;
        }
    } else {
        write_table(&events, out)?;
    }
    Ok(())
}

/// The human-readable table of `events`.
pub fn write_table(events: &[AuditEvent], out: &mut impl Write) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<27} {:<15} {:<14} {:<12} {:<20} {:<8} {:>10}  {:<26} {:<26}",
        "TIME (UTC)", "TYPE", "RESULT", "USER", "TOOL", "RISK", "TIME µs", "EVENT ID", "LINKED"
    )?;
    for e in events {
        let time = humantime::format_rfc3339_micros(e.timestamp).to_string();
        writeln!(
            out,
            "{:<27} {:<15} {:<14} {:<12} {:<20} {:<8} {:>10}  {:<26} {:<26}",
            time,
            e.event_type.as_str(),
            e.result.as_str(),
            clip(&e.user_id, 12),
            clip(e.tool_name.as_deref().unwrap_or("-"), 20),
            e.risk_level.as_str(),
            e.metadata
                .execution_time_us
                .map(|t| t.to_string())
                .unwrap_or_else(|| "-".into()),
            e.event_id.to_string(),
            e.linked_event_id
                .map(|l| l.to_string())
                .unwrap_or_else(|| "-".into()),
        )?;
    }
    Ok(())
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut c: String = s.chars().take(n - 1).collect();
        c.push('…');
        c
    }
}

/// `reindex`: rebuilds the index from the journal and says what it found.
pub fn reindex(config: &Config, out: &mut impl Write) -> Result<(), ModeError> {
    let (store, report) = Store::reindex(&config.audit.store_dir, config.audit.segment_bytes)?;
    store.index.flush()?;
    writeln!(
        out,
        "rebuilt the index of {} from the journal: {} events",
        config.audit.store_dir.display(),
        report.indexed
    )?;
    if let Some(torn) = &report.torn {
        writeln!(out, "recovered: {torn}")?;
    }
    for d in &report.damaged {
        writeln!(out, "DAMAGED: {d}")?;
    }
    Ok(())
}
