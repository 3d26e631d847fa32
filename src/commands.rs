//! The modes behind the subcommands, so that `main` stays a thin edge and tests can call them.

pub mod analytics;
pub mod compliance;
pub mod privacy;
pub mod report;
pub mod retention;
pub mod trail;

use std::io::Write;
use std::time::Duration;

use crate::audit::Outcome;
use crate::audit::writer;
use crate::audit::{AuditEvent, EventType};
use crate::cli::{EventsArgs, EventsCommand, PolicyTestArgs, ShowArgs, StdioArgs};
use crate::config::Config;
use crate::policy::{self, Action, CallInput, Decision};
use crate::proxy::stdio;
use crate::store::{self, Filter, OpenReport, Store, StoreError};
use serde_json::Value;

/// Errors of a mode, each already saying what to do.
#[derive(Debug, thiserror::Error)]
pub enum ModeError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The stdio proxy failed.
    #[error(transparent)]
    Stdio(#[from] stdio::StdioError),
    /// The gateway failed.
    #[error(transparent)]
    Gateway(#[from] crate::proxy::http::GatewayError),
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
    /// Tool pins could not be read or changed.
    #[error(transparent)]
    Pins(#[from] policy::pins::PinError),
    /// The policy cannot run here (its HMAC key is unavailable).
    #[error("{0}")]
    PolicyNotReady(String),
    /// The alert stage could not start.
    #[error("{0}")]
    Alerts(String),
    /// A `--since`/`--until` window that holds nothing.
    #[error("{0}")]
    Window(String),
    /// `--user` names a user the store has never seen (`AnalyticsError::UnknownUser`'s text).
    #[error("{0}")]
    UnknownUser(String),
    /// A command-line input cannot be used.
    #[error("{what}\n  hint: {hint}")]
    BadInput {
        /// What is wrong.
        what: String,
        /// What to do.
        hint: &'static str,
    },
}

/// Logs what opening the store found (a torn tail or a rebuilt index is worth a warning).
fn log_open(report: &OpenReport) {
    for torn in &report.torn {
        tracing::warn!(torn = %torn, "audit journal recovered");
    }
    for e in &report.errors {
        tracing::error!(error = %e, "audit journal could not be indexed");
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
    os_user()
}

/// `gateway`: opens the store, serves HTTP until SIGTERM/SIGINT, drains the audit writer.
pub fn run_gateway(config: &Config) -> Result<i32, ModeError> {
    config.policy.ready().map_err(ModeError::PolicyNotReady)?;
    // Daily retention runs where the index is held: this process's indexer thread.
    let (retention, requests) = match config.retention.apply_daily {
        true => {
            let (handle, rx) = store::retention::DailyRetention::channel();
            (Some(handle), Some(rx))
        }
        false => (None, None),
    };
    let (sink, threads, lock) = start_audit(config, os_user(), "*".into(), requests, true)?;
    let alerts = start_alerts(config, &sink, None)?;
    // What the sessions' servers start in sessions of their own comes back here: reaped as it
    // exits, ended at exit. If this process is killed, the warden ends the servers' groups.
    stdio::adopt_orphans();
    crate::proxy::warden::start(None);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name("gateway-rt")
        .enable_all()
        .build()
        .map_err(|source| ModeError::Start {
            what: "the async runtime",
            source,
        })?;
    let config = std::sync::Arc::new(config.clone());
    let result = runtime.block_on(async {
        let reaper = tokio::spawn(async {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let _ = tokio::task::spawn_blocking(stdio::reap_orphans).await;
            }
        });
        let code = crate::proxy::http::run(config.clone(), sink.clone(), retention).await;
        reaper.abort();
        let grace = config.limits.shutdown_grace;
        let _ = tokio::task::spawn_blocking(move || stdio::end_orphans(grace)).await;
        close_alerts(&sink, alerts).await;
        sink.close().await;
        code
    });
    threads.join();
    runtime.shutdown_timeout(Duration::from_millis(500));
    drop(lock);
    Ok(result?)
}

/// Starts the alert stage on `sink`'s writer when `[alerts]` is enabled; `user`: the stdio
/// wrapper's user, whose history alone is read at start.
fn start_alerts(
    config: &Config,
    sink: &writer::AuditSink,
    user: Option<String>,
) -> Result<Option<crate::alerts::AlertStage>, ModeError> {
    crate::alerts::start(crate::alerts::Settings::of(config, user), sink)
        .map_err(|e| ModeError::Alerts(e.to_string()))
}

/// At shutdown: every event written is synced and examined, then the last alerts are raised
/// and recorded (before the writer stops).
async fn close_alerts(sink: &writer::AuditSink, alerts: Option<crate::alerts::AlertStage>) {
    if let Some(stage) = alerts {
        sink.flush().await;
        stage.close().await;
    }
}

/// `alerts`: the stored alerts, newest first (from the index, or from the journals while
/// another process holds the index).
pub fn alerts(
    args: &crate::cli::AlertsArgs,
    config: &Config,
    out: &mut impl Write,
) -> Result<(), ModeError> {
    // The window as every analytics command takes it (helper-94 F5: `--since 1h --until 2h`,
    // a `--since` in the future, said "no alerts" where the others refuse them).
    let (since, until) = crate::commands::analytics::window(
        &crate::cli::WindowArgs {
            since: args.since,
            until: args.until,
            json: args.json,
        },
        Duration::from_secs(86_400),
    )
    .map_err(|e| ModeError::Window(e.to_string()))?;
    let filter = Filter {
        user: args.user.clone(),
        user_subject: match &args.user {
            Some(u) => {
                store::personal::subject_of(&config.audit.store_dir, u).map_err(StoreError::from)?
            }
            None => None,
        },
        event_type: Some(EventType::Alert),
        since: Some(since),
        until: Some(until),
        ..Filter::default()
    };
    let events = newest(config, args.limit as usize, &filter)?;
    // helper-94 F11: a misspelt user read as a user with no alerts, where `analyze` refuses it.
    if events.is_empty()
        && let Some(user) = &args.user
    {
        known_user(config, user)?;
    }
    if args.json {
        for e in &events {
            serde_json::to_writer(&mut *out, e).map_err(std::io::Error::from)?;
            writeln!(out)?;
        }
        return Ok(());
    }
    if events.is_empty() {
        let since = humantime::format_rfc3339_seconds(since);
        let of = args
            .user
            .as_ref()
            .map_or(String::new(), |u| format!(" of user {u:?}"));
        match args.until {
            Some(until) => writeln!(
                out,
                "no alerts{of} from {since} to {}",
                humantime::format_rfc3339_seconds(until)
            )?,
            None => writeln!(out, "no alerts{of} since {since}")?,
        }
        return Ok(());
    }
    writeln!(
        out,
        "{:<20}  {:<8}  {:<14}  {:<16}  {:>6}  {:<26}  WHAT",
        "TIME", "SEVERITY", "KIND", "USER", "COUNT", "FIRST EVENT"
    )?;
    for e in &events {
        let a = e.metadata.alert.as_deref();
        let time = humantime::format_rfc3339_seconds(e.timestamp).to_string();
        writeln!(
            out,
            "{:<20}  {:<8}  {:<14}  {:<16}  {:>6}  {:<26}  {}",
            time,
            e.risk_level.as_str(),
            a.map_or("?", |a| a.kind.as_str()),
            crate::telemetry::one_line(&e.user_id),
            a.map_or(0, |a| a.count),
            a.map_or(String::new(), |a| a.first_event_id.to_string()),
            match &e.metadata.imported {
                // Not raised by this store's proxies: say where it came from.
                Some(i) => format!(
                    "(imported from {} line {}) {}",
                    crate::telemetry::one_line(&i.source),
                    i.line,
                    crate::telemetry::one_line(e.metadata.reason.as_deref().unwrap_or(""))
                ),
                None => crate::telemetry::one_line(e.metadata.reason.as_deref().unwrap_or(""))
                    .into_owned(),
            }
        )?;
    }
    Ok(())
}

/// The OS user running the proxy, by name where it has one.
pub fn os_user() -> String {
    let uid = nix::unistd::getuid();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(user)) => user.name,
        _ => format!("uid:{uid}"),
    }
}

/// Opens the store (a journal of this process's own; the index if free) and starts the audit
/// writer and indexer threads; keep the lock until they have finished. The writer's own
/// events (store budget, outages) name `user_id` and `upstream`. With `settle` (the proxy
/// modes), the calls stopped proxies left open are ended ([`crate::audit::settle`]).
pub(crate) fn start_audit(
    config: &Config,
    user_id: String,
    upstream: String,
    retention: Option<std::sync::mpsc::Receiver<store::retention::Request>>,
    settle: bool,
) -> Result<(writer::AuditSink, writer::WriterThreads, store::StoreLock), ModeError> {
    let store = Store::open_journal(&config.audit.store_dir, config.audit.segment_bytes)?;
    let (mut journal, mut keeper, lock) = store.into_parts(&config.audit.store_dir);
    let own = store::journals::id_of(journal.dir());
    if config.audit.encrypt_personal_data {
        journal.encrypt_personal_data(&config.audit.store_dir);
    }
    if let Some(rx) = retention {
        keeper.serve_retention(rx);
    }
    let plan = writer::CheckpointPlan::new(
        &journal,
        config.audit.signer.clone(),
        config.audit.checkpoint_every_events,
        config.audit.checkpoint_interval,
    );
    let guard = writer::StoreGuard {
        root: config.audit.store_dir.clone(),
        max_bytes: config.audit.max_store_bytes,
        on_failure: config.audit.on_store_failure,
        user_id,
        upstream,
    };
    let (sink, threads) = writer::start_guarded(
        journal,
        keeper,
        config.audit.durability,
        config.audit.flush_interval,
        config.audit.queue_capacity,
        plan,
        guard,
    )
    .map_err(|source| ModeError::Start {
        what: "the audit writer",
        source,
    })?;
    let sink = sink.with_max_stored(config.audit.max_stored_argument_bytes);
    // A proxy (not a one-shot command) ends the calls that killed or crashed proxies left
    // open, in its own journal, off the message path.
    if settle {
        crate::audit::settle::start(
            config.audit.store_dir.clone(),
            own,
            sink.clone(),
            config.audit.encrypt_personal_data,
        )
        .map_err(|source| ModeError::Start {
            what: "the audit settler",
            source,
        })?;
    }
    Ok((sink, threads, lock))
}

/// `stdio`: opens the store, runs the proxy, drains the audit writer; returns the exit code.
pub fn run_stdio(args: &StdioArgs, config: &Config) -> Result<i32, ModeError> {
    let selected;
    let config = match &args.upstream {
        None => config,
        Some(name) => {
            let mut c = config.clone();
            match config.upstreams.iter().find(|u| &u.name == name) {
                Some(u) => c.upstream = u.clone(),
                // A server given after `--` named on the command line: several servers
                // behind one config are told apart in the trail, and their tools pinned apart
                // (two servers' `echo` would otherwise be one tool whose definition changed).
                None if !args.command.is_empty() => {
                    if !crate::config::path_safe(name) {
                        return Err(ModeError::BadInput {
                            what: format!("the upstream name {name:?} (--upstream) is not usable"),
                            hint: "use letters, digits, `.`, `_` and `-` only",
                        });
                    }
                    c.upstream.name = name.clone();
                }
                None => {
                    return Err(ModeError::BadInput {
                        what: format!("no upstream named {name:?} in {}", config.source.display()),
                        hint: "give the name of one of the [[upstream]] tables, or the server's command after `--` to run it under that name",
                    });
                }
            }
            selected = c;
            &selected
        }
    };
    let command = if args.command.is_empty() {
        config.upstream.command.clone()
    } else {
        args.command.clone()
    };
    if command.is_empty() && config.upstream.remote.is_none() {
        return Err(stdio::StdioError::NoCommand {
            config: config.source.clone(),
        }
        .into());
    }
    config.policy.ready().map_err(ModeError::PolicyNotReady)?;
    let user = stdio_user(args, config);
    let (sink, threads, lock) = start_audit(
        config,
        user.clone(),
        config.upstream.name.clone(),
        None,
        true,
    )?;
    let alerts = start_alerts(config, &sink, Some(user.clone()))?;
    // Before the server starts: what it starts in a session of its own comes back here. If
    // this process is killed, the warden ends the server's group.
    stdio::adopt_orphans();
    // Its line goes where this mode's log goes. Opened here again: `main` checked it at start.
    let log = config.log.file.as_deref().and_then(|path| {
        crate::telemetry::open_file(path, &config.source)
            .inspect_err(|e| tracing::warn!(error = %e, "the warden writes to stderr"))
            .ok()
    });
    crate::proxy::warden::start(log);
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
        // The server has been waited for: any child left is an orphan it made.
        let grace = config.limits.shutdown_grace;
        tokio::task::spawn_blocking(move || stdio::end_orphans(grace))
            .await
            .ok();
        close_alerts(&sink, alerts).await;
        sink.close().await;
        code
    });
    threads.join();
    // The client's stdin may still be open in a blocking read; do not wait for it.
    runtime.shutdown_timeout(Duration::from_millis(100));
    drop(lock);
    Ok(result?)
}

/// `text` as a CSV cell a spreadsheet shows as text: a cell that begins with `=`, `+`, `-`,
/// `@`, a tab or a carriage return is read as a formula by Excel and LibreOffice (CSV
/// injection, CWE-1236), and the trail's names come from clients. Such a cell gets a leading
/// `'`, as OWASP's "CSV Injection" advises.
///
/// Each `;`-separated part is treated so: spreadsheets in locales whose list separator is `;`
/// split the cell there.
fn inert_cell(text: &str) -> String {
    let inert = |part: &str| {
        if part.starts_with(['=', '+', '-', '@', '\t', '\r']) {
            format!("'{part}")
        } else {
            part.to_string()
        }
    };
    text.split(';').map(inert).collect::<Vec<_>>().join(";")
}

/// `Ok` when the store has events or a key of `user`; else the error that names the store
/// and the user (a misspelt name is not a user without activity).
fn known_user(config: &Config, user: &str) -> Result<(), ModeError> {
    use crate::commands::analytics::AnalyticsError;
    let known = crate::commands::analytics::user_known(config, user).map_err(|e| {
        // A store that cannot be read is that, not an unknown user (review nit).
        match e {
            AnalyticsError::Store(e) => ModeError::Store(e),
            AnalyticsError::Query(e) => e,
            other => ModeError::UnknownUser(other.to_string()),
        }
    })?;
    if known {
        return Ok(());
    }
    Err(ModeError::UnknownUser(
        AnalyticsError::UnknownUser {
            store: config.audit.store_dir.clone(),
            user: user.to_string(),
        }
        .to_string(),
    ))
}

/// `events`: prints the newest events matching the filters (from the index, or from the
/// journals while another process holds the index), then with `--follow` every new match as
/// it is written; or, for `events show ID`, one event and its pair.
pub fn events(args: &EventsArgs, config: &Config, out: &mut impl Write) -> Result<(), ModeError> {
    if let Some(EventsCommand::Show(show)) = &args.show {
        return show_event(show, config, out);
    }
    if let (Some(since), Some(until)) = (args.since, args.until)
        && since > until
    {
        return Err(ModeError::BadInput {
            what: format!(
                "--since {} is after --until {}: no event can match",
                humantime::format_rfc3339_seconds(since),
                humantime::format_rfc3339_seconds(until)
            ),
            hint: "give the earlier time to --since (a duration such as 7d means that long before now)",
        });
    }
    let filter = Filter {
        session: args.session.clone(),
        tool: args.tool.clone(),
        user: args.user.clone(),
        user_subject: match &args.user {
            Some(u) => {
                store::personal::subject_of(&config.audit.store_dir, u).map_err(StoreError::from)?
            }
            None => None,
        },
        event_type: args.event_type,
        result: args.result,
        min_risk: args.risk,
        tag: args.tag.clone(),
        upstream: args.upstream.clone(),
        since: args.since,
        until: args.until,
    };
    let format = if args.json {
        Format::Json
    } else if args.csv {
        Format::Csv
    } else {
        Format::Table
    };
    let mut printer = Printer::new(format, out);
    let mut erased = None;
    if !args.follow {
        let mut events = newest(config, args.limit, &filter)?;
        // helper-116 M4: a misspelt user read as a user with no activity, as `alerts` once
        // did. (Following may wait for a user's first event: not refused there.)
        if events.is_empty()
            && filter.user_subject.is_none()
            && let Some(user) = &args.user
        {
            known_user(config, user)?;
        }
        warn_of_losses(&config.audit.store_dir);
        mark_missing_keys(config, &mut events, &mut erased)?;
        printer.print(&events)?;
        return Ok(printer.finish()?);
    }
    // Following: start tailing before the query, so that nothing written meanwhile is missed;
    // what both see is printed once.
    let root = &config.audit.store_dir;
    readable_store(root)?;
    let mut follower = store::Follower::new(root)?;
    let mut recent = newest(config, args.limit, &filter)?;
    warn_of_losses(root);
    mark_missing_keys(config, &mut recent, &mut erased)?;
    recent.reverse(); // oldest first, as the new ones will follow
    let mut printed: std::collections::HashSet<_> = recent.iter().map(|e| e.event_id).collect();
    printer.print(&recent)?;
    printer.flush()?;
    loop {
        let (mut events, damaged) = follower.poll(&filter)?;
        for d in damaged {
            tracing::error!(damage = %d, "audit journal segment damaged");
        }
        if !printed.is_empty() {
            events.retain(|e| !printed.contains(&e.event_id));
            // Once the journals have moved past the first page, it cannot be met again.
            if !events.is_empty() {
                printed.clear();
            }
        }
        if !events.is_empty() {
            mark_missing_keys(config, &mut events, &mut erased)?;
            printer.print(&events)?;
            printer.flush()?;
        }
        std::thread::sleep(FOLLOW_POLL);
    }
}

/// Tells a lawful erasure from a key deleted off the record (helper-90 M5): of `events`
/// marked `erased` (their key is gone), those whose pseudonym no `audit/erase` event of this
/// store names are marked [`PersonalData::KeyMissing`] instead, as `verify` reports them.
/// `erased` caches the pseudonyms the erasures name (`HEX`); it is read again when an event
/// names one it does not hold (an erasure recorded since, while following).
///
/// [`PersonalData::KeyMissing`]: crate::audit::event::PersonalData::KeyMissing
fn mark_missing_keys(
    config: &Config,
    events: &mut [AuditEvent],
    erased: &mut Option<std::collections::HashSet<String>>,
) -> Result<(), ModeError> {
    use crate::audit::event::PersonalData;
    let gone = |e: &AuditEvent| e.metadata.personal_data == Some(PersonalData::Erased);
    let unknown = |e: &AuditEvent, known: &Option<std::collections::HashSet<String>>| {
        gone(e)
            && store::subject_hex(&e.user_id)
                .is_some_and(|hex| known.as_ref().is_none_or(|k| !k.contains(hex)))
    };
    if events.iter().any(|e| unknown(e, erased)) {
        let filter = Filter {
            event_type: Some(EventType::ConfigurationChange),
            ..Filter::default()
        };
        *erased = Some(
            newest(config, usize::MAX, &filter)?
                .iter()
                .flat_map(store::erased_by)
                .collect(),
        );
    }
    for e in events.iter_mut().filter(|e| gone(e)) {
        let recorded = store::subject_hex(&e.user_id)
            .is_some_and(|hex| erased.as_ref().is_some_and(|k| k.contains(hex)));
        if !recorded {
            e.metadata.personal_data = Some(PersonalData::KeyMissing);
        }
    }
    Ok(())
}

/// How often `events --follow` looks for new records.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// Checks that `root` holds a store this version reads ([`store::marker::check`]: not a
/// file, a foreign folder or a newer store), with journals to read.
pub fn readable_store(root: &std::path::Path) -> Result<(), ModeError> {
    if !store::marker::check(root, store::Access::Read)? || !root.join("journal").is_dir() {
        return Err(ModeError::NoStore {
            path: root.to_path_buf(),
        });
    }
    Ok(())
}

/// `events show ID`: the event and the other half of its pair, from the index or, while
/// another process holds it, from the journals.
fn show_event(args: &ShowArgs, config: &Config, out: &mut impl Write) -> Result<(), ModeError> {
    let root = &config.audit.store_dir;
    readable_store(root)?;
    let (event, pair) = match store::open_for_query(root)? {
        Some((index, _lock, report)) => {
            log_open(&report);
            let event = index.get(args.id)?;
            let pair = match event.as_ref().and_then(|e| e.linked_event_id) {
                Some(other) => index.get(other)?,
                None => None,
            };
            index.close()?;
            (event, pair)
        }
        None => store::find_in_journals(root, args.id)?,
    };
    let Some(event) = event else {
        return Err(ModeError::BadInput {
            what: format!("no event {} in the audit store {}", args.id, root.display()),
            hint: "copy the id from the EVENT ID column of `events`, or check --config",
        });
    };
    let mut both: Vec<AuditEvent> = std::iter::once(event).chain(pair).collect();
    mark_missing_keys(config, &mut both, &mut None)?;
    let mut both = both.into_iter();
    let (event, pair) = (both.next().expect("the event itself"), both.next());
    let mut show = |title: String, e: &AuditEvent| -> std::io::Result<()> {
        if args.json {
            serde_json::to_writer(&mut *out, e)?;
        } else {
            writeln!(out, "{title}")?;
            serde_json::to_writer_pretty(&mut *out, e)?;
        }
        writeln!(out)
    };
    show(
        format!("event {} ({})", event.event_id, event.event_type.as_str()),
        &event,
    )?;
    match &pair {
        Some(p) => {
            let role = if p.event_type == EventType::ToolAccess {
                "its access event"
            } else {
                "its end"
            };
            show(
                format!("\n{role}: {} ({})", p.event_id, p.event_type.as_str()),
                p,
            )?;
        }
        None if !args.json => {
            let why = if event.event_type == EventType::ToolAccess {
                "no end recorded yet"
            } else {
                "not linked to an access event"
            };
            writeln!(out, "\nno pair: {why}")?;
        }
        None => {}
    }
    Ok(())
}

/// How `events` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Table,
    Json,
    Csv,
}

/// Prints events in one format, the table's or CSV's header once, however many batches.
struct Printer<'a, W: Write> {
    format: Format,
    out: &'a mut W,
    header_done: bool,
}

/// The CSV columns: the event's scalar fields as in its JSON, tags joined with `;`.
const CSV_HEADER: [&str; 13] = [
    "event_id",
    "timestamp",
    "event_type",
    "result",
    "user_id",
    "tool_name",
    "risk_level",
    "risk_score",
    "compliance_tags",
    "session_id",
    "upstream",
    "linked_event_id",
    "execution_time_us",
];

impl<'a, W: Write> Printer<'a, W> {
    fn new(format: Format, out: &'a mut W) -> Self {
        Printer {
            format,
            out,
            header_done: false,
        }
    }

    fn print(&mut self, events: &[AuditEvent]) -> std::io::Result<()> {
        match self.format {
            Format::Json => {
                for e in events {
                    serde_json::to_writer(&mut *self.out, e)?;
                    writeln!(self.out)?;
                }
            }
            Format::Table => {
                if !self.header_done {
                    write_table_header(self.out)?;
                }
                write_table_rows(events, self.out)?;
            }
            Format::Csv => {
                let mut csv = csv::Writer::from_writer(Vec::new());
                if !self.header_done {
                    csv.write_record(CSV_HEADER)?;
                }
                for e in events {
                    let opt = |v: Option<String>| v.unwrap_or_default();
                    csv.write_record([
                        e.event_id.to_string(),
                        humantime::format_rfc3339_micros(e.timestamp).to_string(),
                        e.event_type.as_str().into(),
                        e.result.as_str().into(),
                        inert_cell(&e.user_id),
                        inert_cell(e.tool_name.as_deref().unwrap_or_default()),
                        e.risk_level.as_str().into(),
                        opt(e.metadata.risk_score.map(|s| s.to_string())),
                        inert_cell(&e.compliance_tags.join(";")),
                        inert_cell(&e.session_id),
                        inert_cell(&e.upstream),
                        opt(e.linked_event_id.map(|l| l.to_string())),
                        opt(e.metadata.execution_time_us.map(|t| t.to_string())),
                    ])?;
                }
                let bytes = csv.into_inner().map_err(|e| e.into_error())?;
                self.out.write_all(&bytes)?;
            }
        }
        self.header_done = true;
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }

    fn finish(mut self) -> std::io::Result<()> {
        if !self.header_done {
            self.print(&[])?;
        }
        self.flush()
    }
}

/// The newest events matching `filter`: answered by the index holder over its socket when one
/// runs ([`store::serve`]), else from the index when no other process holds it (caught up
/// with every journal first), else straight from the journals: never refused because proxies
/// are writing.
/// `events` reads a window's newest events from the journals rather than opening the index
/// when at most this many are asked for…
const JOURNALS_FIRST_LIMIT: usize = 10_000;
/// …and the segments that can hold the window are at most this many bytes (read from their
/// ends, and only as far as the limit needs: a filter that matches little reads them all,
/// about a second for 1 GiB, against ~0.5 s to open the index of 10 M events).
const JOURNALS_FIRST_BYTES: u64 = 1 << 30;

pub(crate) fn newest(
    config: &Config,
    limit: usize,
    filter: &Filter,
) -> Result<Vec<AuditEvent>, ModeError> {
    let root = &config.audit.store_dir;
    readable_store(root)?;
    if let Some(events) = store::serve::ask(root, limit, filter) {
        tracing::info!("the index holder answered over its socket");
        return Ok(events);
    }
    // No proxy holds the index. Opening sled costs ~0.5 s on 10 M events whatever the query;
    // the newest events of a recent window are read faster from the journals' ends, when
    // the segments that can hold the window are few (issue 9 item 9).
    // Not for a result, risk or tag (records are decoded one by one to test those: a rare
    // one reads the whole window, slower than the index).
    if let Some(since) = filter.since
        && limit <= JOURNALS_FIRST_LIMIT
        && filter.result.is_none()
        && filter.min_risk.is_none()
        && filter.tag.is_none()
        && store::journal_bytes_since(root, since)? <= JOURNALS_FIRST_BYTES
    {
        tracing::info!(
            "reading the journals' newest records (a recent window; no proxy holds the index)"
        );
        let (events, damaged) = store::newest_from_journals(root, limit, filter)?;
        for d in damaged {
            tracing::error!(damage = %d, "audit journal segment damaged");
        }
        return Ok(events);
    }
    Ok(match store::open_for_query(root)? {
        Some((index, _lock, report)) => {
            log_open(&report);
            tracing::debug!("reading the audit index");
            let events = index.newest(limit, filter)?;
            index.close()?;
            events
        }
        None => {
            tracing::info!("another process holds the audit index; reading the journals directly");
            let (events, damaged) = store::newest_from_journals(root, limit, filter)?;
            for d in damaged {
                tracing::error!(damage = %d, "audit journal segment damaged");
            }
            events
        }
    })
}

/// Says on standard error, at every run, that the store has lost records (helper-94 F1: a
/// deleted journal's user listed no events, and only the first command after the deletion,
/// the one that rebuilt the index, said anything). The notes read are those `verify` reports
/// ([`store::verify::losses`]); the query before has opened the index if it was free.
fn warn_of_losses(root: &std::path::Path) {
    match store::verify::losses(root) {
        Ok(lost) => {
            for l in &lost {
                tracing::warn!(loss = %l, "the audit trail has lost records: events cannot list them (`mcp-audit-proxy verify` reports the loss)");
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot check the store for lost records"),
    }
}

/// A tested call's `inputResponses`, read as the proxy reads a retry's
/// ([`policy::admit::call_responses`]).
fn call_responses(params: &Value) -> Result<Option<Value>, String> {
    let Some(map) = params.get("inputResponses").and_then(Value::as_object) else {
        return Ok(None);
    };
    let texts: Vec<(&str, String)> = map
        .iter()
        .map(|(k, v)| (k.as_str(), v.to_string()))
        .collect();
    // The proxy's own answer is taken out only from a retry carrying its own round.
    let ours = params
        .get("requestState")
        .and_then(Value::as_str)
        .is_some_and(crate::proxy::pipeline::own_round)
        .then_some(crate::proxy::pipeline::CONFIRM_KEY);
    policy::admit::call_responses(texts.iter().map(|(k, t)| (*k, t.as_str())), ours)
}

/// `policy test`: the configured policy's decision on one call, or on the calls in the store.
pub fn policy_test(
    args: &PolicyTestArgs,
    config: &Config,
    input: &mut impl std::io::Read,
    out: &mut impl Write,
) -> Result<(), ModeError> {
    let policy = &config.policy;
    let default_user = || config.user_id.clone().unwrap_or_else(os_user);
    if args.from_store {
        return policy_replay(args, config, out);
    }
    let text = match args.call.as_deref() {
        Some(t) if t != "-" => t.to_string(),
        _ => {
            let mut t = String::new();
            input.read_to_string(&mut t)?;
            t
        }
    };
    let bad = |what: String| ModeError::BadInput {
        what,
        hint: "give the call as '{\"name\": \"TOOL\", \"arguments\": {...}}' or a whole JSON-RPC tools/call request",
    };
    let value: Value = policy::strict::parse(text.trim())
        .map_err(|e| bad(format!("the call is not usable JSON: {e}")))?;
    let params = match value.get("method") {
        Some(m) if m == "tools/call" => value.get("params").cloned().unwrap_or(Value::Null),
        Some(m) => return Err(bad(format!("the request is {m}, not tools/call"))),
        None => value,
    };
    let Some(tool) = params.get("name").and_then(Value::as_str) else {
        return Err(bad("the call has no tool name (\"name\")".into()));
    };
    let annotations = match &args.annotations {
        Some(a) => Some(serde_json::from_str(a).map_err(|e| ModeError::BadInput {
            what: format!("--annotations is not a tool annotations object: {e}"),
            hint: "e.g. --annotations '{\"readOnlyHint\": false, \"destructiveHint\": true}'",
        })?),
        None => None,
    };
    let user = args.user.clone().unwrap_or_else(default_user);
    // What the proxy refuses before its policy assesses the call (with the policy on), said
    // here as the proxy would: these calls never reach a server.
    let listed: std::collections::HashSet<String> = args.listed.iter().cloned().collect();
    let responses = call_responses(&params);
    let refused = policy
        .enabled
        .then(|| {
            policy
                .loose_tool_name(tool, &listed)
                .map(|why| format!("invalid tools/call params: {why}"))
                .or_else(|| {
                    let raw = params.get("arguments").map(Value::to_string);
                    policy::admit::call_arguments(raw.as_deref())
                        .err()
                        .map(|why| format!("invalid tools/call arguments: {why}"))
                })
                .or_else(|| responses.as_ref().err().cloned())
        })
        .flatten();
    if let Some(why) = refused {
        if args.json {
            let d = serde_json::json!({
                "tool": tool,
                "user": user,
                "decision": "refuse",
                "reasons": [why],
                "policy_version": policy.version,
            });
            serde_json::to_writer(&mut *out, &d).map_err(std::io::Error::from)?;
            writeln!(out)?;
        } else {
            writeln!(
                out,
                "refuse: tool {tool:?} called by {user:?} is refused before the policy assesses it (recorded as refused, never forwarded)"
            )?;
            writeln!(out, "  - {why}")?;
        }
        return Ok(());
    }
    let history = policy::History::default();
    let decision = policy.assess(&CallInput {
        user: &user,
        roles: &args.roles,
        tool,
        arguments: params.get("arguments"),
        responses: responses.as_ref().ok().and_then(Option::as_ref),
        annotations: annotations.as_ref(),
        history: &history,
        now: std::time::SystemTime::now(),
        count_rates: true,
        tool_changed: false,
    });
    if args.json {
        serde_json::to_writer(&mut *out, &decision_json(tool, &user, &decision))
            .map_err(std::io::Error::from)?;
        writeln!(out)?;
    } else {
        write_decision(out, tool, &user, &decision)?;
        if !policy.enabled {
            writeln!(
                out,
                "note: risk.enabled = false: the proxy does not apply this policy"
            )?;
        }
    }
    Ok(())
}

fn decision_json(tool: &str, user: &str, d: &Decision) -> Value {
    serde_json::json!({
        "tool": tool,
        "user": user,
        "decision": d.label(),
        "risk_level": d.level.as_str(),
        "risk_score": d.score,
        "compliance_tags": d.tags,
        "reasons": d.reasons,
        "policy_version": d.version,
    })
}

fn write_decision(
    out: &mut impl Write,
    tool: &str,
    user: &str,
    d: &Decision,
) -> std::io::Result<()> {
    writeln!(
        out,
        "{}: tool {tool:?} called by {user:?} (risk {}, score {}, policy {})",
        d.label(),
        d.level.as_str(),
        d.score,
        d.version
    )?;
    if !d.tags.is_empty() {
        writeln!(out, "compliance tags: {}", d.tags.join(", "))?;
    }
    for r in &d.reasons {
        writeln!(out, "  - {r}")?;
    }
    Ok(())
}

/// `policy test --from-store`: replays stored access events through the configured policy.
fn policy_replay(
    args: &PolicyTestArgs,
    config: &Config,
    out: &mut impl Write,
) -> Result<(), ModeError> {
    let filter = Filter {
        event_type: Some(EventType::ToolAccess),
        since: args
            .since
            .and_then(|ago| std::time::SystemTime::now().checked_sub(*ago)),
        ..Filter::default()
    };
    let mut events = newest(config, args.limit, &filter)?;
    events.reverse(); // oldest first, so session history builds up as it did
    let mut histories: std::collections::HashMap<String, policy::History> = Default::default();
    let (mut counts, mut changed, mut redacted) = ([0usize; 4], 0usize, 0usize);
    for e in &events {
        let Some(tool) = e.tool_name.as_deref() else {
            continue;
        };
        let arguments = e
            .metadata
            .arguments
            .as_ref()
            .and_then(|a| serde_json::from_str::<Value>(a.get()).ok());
        if !e.metadata.redacted.is_empty() {
            redacted += 1;
        }
        let history = histories.entry(e.session_id.clone()).or_default();
        let d = config.policy.assess(&CallInput {
            user: &e.user_id,
            roles: e.metadata.http.as_ref().map_or(&[], |h| h.roles.as_slice()),
            tool,
            arguments: arguments.as_ref(),
            responses: None,
            annotations: None,
            history,
            now: e.timestamp,
            count_rates: false,
            tool_changed: false,
        });
        history.note(tool, &d.tags);
        let slot = match (d.label(), d.action) {
            ("would_block", _) => 3,
            (_, Action::Block | Action::Confirm) => 2,
            (_, Action::Alert) => 1,
            _ => 0,
        };
        counts[slot] += 1;
        let was_blocked = e.result == Outcome::Blocked;
        let now_blocked = d.enforced() == Action::Block;
        if was_blocked != now_blocked {
            changed += 1;
        }
        if args.json {
            let mut j = decision_json(tool, &e.user_id, &d);
            j["event_id"] = Value::String(e.event_id.to_string());
            j["recorded_result"] = Value::String(e.result.as_str().into());
            serde_json::to_writer(&mut *out, &j).map_err(std::io::Error::from)?;
            writeln!(out)?;
        } else if d.action == Action::Block {
            writeln!(
                out,
                "{} {} {:<12} {:<20} {:<8} {:>3}  {}  {}",
                humantime::format_rfc3339_seconds(e.timestamp),
                d.label(),
                crate::telemetry::one_line(&e.user_id),
                crate::telemetry::one_line(tool),
                d.level.as_str(),
                d.score,
                e.event_id,
                crate::telemetry::one_line(d.reasons.last().map_or("", String::as_str))
            )?;
        }
    }
    if !args.json {
        writeln!(
            out,
            "policy {} over {} stored calls: {} allow, {} alert, {} block or confirm, {} would block or confirm (shadow); {} decided differently from the record",
            config.policy.version,
            events.len(),
            counts[0],
            counts[1],
            counts[2],
            counts[3],
            changed
        )?;
        writeln!(
            out,
            "not replayed: tool annotations (not stored) and rate limits; {redacted} calls had sensitive data redacted in the store, so classifiers see the placeholders"
        )?;
    }
    Ok(())
}

/// The human-readable table of `events`.
pub fn write_table(events: &[AuditEvent], out: &mut impl Write) -> std::io::Result<()> {
    write_table_header(out)?;
    write_table_rows(events, out)
}

fn write_table_header(out: &mut impl Write) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<27} {:<15} {:<14} {:<12} {:<20} {:<8} {:>10}  {:<26} {:<26}",
        "TIME (UTC)", "TYPE", "RESULT", "USER", "TOOL", "RISK", "TIME µs", "EVENT ID", "LINKED"
    )
}

fn write_table_rows(events: &[AuditEvent], out: &mut impl Write) -> std::io::Result<()> {
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
    let s = crate::telemetry::one_line(s);
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut c: String = s.chars().take(n - 1).collect();
        c.push('…');
        c
    }
}

/// `reindex`: rebuilds the index from the journal and says what it found.
///
/// Returns the exit code: 0 when every record was indexed, 1 when some were damaged or not
/// indexed (helper-94 F9: it said `NOT INDEXED` and exited 0, so a script saw success).
pub fn reindex(config: &Config, out: &mut impl Write) -> Result<i32, ModeError> {
    let root = &config.audit.store_dir;
    let progress = crate::progress::bytes(
        crate::progress::journal_bytes(&store::StorePaths::new(root).journal()),
        "reindex",
    );
    let (index, _lock, report) = store::reindex_with(root, Some(progress))?;
    index.close()?;
    writeln!(
        out,
        "rebuilt the index of {} from the journals: {} events",
        config.audit.store_dir.display(),
        report.indexed
    )?;
    for torn in &report.torn {
        writeln!(out, "recovered: {torn}")?;
    }
    for d in &report.damaged {
        writeln!(out, "DAMAGED: {d}")?;
    }
    for e in &report.errors {
        writeln!(out, "NOT INDEXED: {e}")?;
    }
    // An index once knew records the journals no longer hold (helper-116 M2: said only in a
    // log line, exit 0), found by this rebuild or by whichever command opened the store
    // first (review): the index rebuilt from what is left leaves them out, as `verify` says.
    let lost = store::verify::losses(root)?;
    for l in &lost {
        writeln!(out, "LOST: {l}")?;
    }
    if report.damaged.is_empty() && report.errors.is_empty() && lost.is_empty() {
        return Ok(0);
    }
    writeln!(
        out,
        "reindex: the index leaves out what is listed above (exit 1); `mcp-audit-proxy verify` says what the journals hold"
    )?;
    Ok(1)
}

/// `tools accept NAME`: pins the changed definition of a tool; a running proxy sees it at the
/// tool's next call.
pub fn tools_accept(
    config: &Config,
    upstream: Option<&str>,
    name: &str,
    hash: Option<&str>,
    out: &mut impl Write,
) -> Result<(), ModeError> {
    // Pins live in the store folder: never write them into a folder that is not a store.
    store::marker::check(&config.audit.store_dir, store::Access::Write)?;
    let upstream = upstream.unwrap_or(&config.upstream.name);
    let pins = policy::pins::Pins::new(&config.audit.store_dir, upstream);
    let changes = pins.accept(name, hash)?;
    writeln!(
        out,
        "accepted the new definition of tool {name:?} (upstream {upstream:?}); its calls are no longer held back"
    )?;
    for c in changes {
        writeln!(out, "  - {c}")?;
    }
    Ok(())
}

/// What `store status` reports (its `--json` form).
#[derive(Debug, serde::Serialize)]
pub struct StoreStatus {
    /// The store folder.
    pub store_dir: std::path::PathBuf,
    /// Bytes by part (file lengths).
    pub bytes: store::usage::Usage,
    /// All of them.
    pub total_bytes: u64,
    /// Journals (one per writing process, ever).
    pub journals: usize,
    /// Events: estimated from the index's counts, or counted in the journals.
    pub events: u64,
    /// `index` (estimated from the index's counts) or `journals` (counted while another
    /// process holds the index).
    pub events_from: &'static str,
    /// The oldest event's time (RFC 3339), if any.
    pub oldest: Option<String>,
    /// The newest event's time (RFC 3339), if any.
    pub newest: Option<String>,
    /// `audit.max_store_bytes`, if set.
    pub max_store_bytes: Option<u64>,
    /// `total_bytes / max_store_bytes`, if there is a budget.
    pub budget_used: Option<f64>,
    /// `audit.on_store_failure`.
    pub on_store_failure: &'static str,
}

/// The time an event id (a ULID) was made at, RFC 3339.
fn id_time(id: crate::audit::EventId) -> String {
    humantime::format_rfc3339_millis(id.0.datetime()).to_string()
}

/// Reads the store's size by part, and its events: from the index when it is free (a few keys),
/// else by counting the journals' records.
pub fn status_of(config: &Config) -> Result<StoreStatus, ModeError> {
    let root = &config.audit.store_dir;
    readable_store(root)?;
    let journal_root = store::StorePaths::new(root).journal();
    let journals = store::journals::list(&journal_root)?;
    let (events, events_from, oldest, newest) = match store::open_for_query(root)? {
        Some((index, _lock, report)) => {
            log_open(&report);
            let (n, oldest, newest) = index.summary()?;
            index.close()?;
            (n, "index", oldest, newest)
        }
        None => {
            let (mut n, mut oldest, mut newest) = (0u64, None, None);
            for id in &journals {
                store::journal::read_from(
                    &id.dir(&journal_root),
                    store::JournalPos::START,
                    |_, payload| {
                        n += 1;
                        let event_id = store::chain::Link::of(payload)
                            .and_then(|l| l.event_id.and_then(|e| e.parse().ok()));
                        if let Some(e) = event_id {
                            oldest = Some(oldest.map_or(e, |o: crate::audit::EventId| o.min(e)));
                            newest = Some(newest.map_or(e, |o: crate::audit::EventId| o.max(e)));
                        }
                        Ok::<(), store::StoreError>(())
                    },
                    |d| tracing::error!(damage = %d, "audit journal segment damaged"),
                )?;
            }
            (n, "journals", oldest, newest)
        }
    };
    // Measured after the index was opened and closed: sled sizes its files when it opens.
    let bytes = store::usage::measure(root)?;
    let total = bytes.total();
    Ok(StoreStatus {
        store_dir: root.clone(),
        bytes,
        total_bytes: total,
        journals: journals.len(),
        events,
        events_from,
        oldest: oldest.map(id_time),
        newest: newest.map(id_time),
        max_store_bytes: config.audit.max_store_bytes,
        budget_used: config
            .audit
            .max_store_bytes
            .map(|max| total as f64 / max as f64),
        on_store_failure: config.audit.on_store_failure.as_str(),
    })
}

/// `store status`: the store's size by part, its events, and the budget used.
pub fn store_status(
    args: &crate::cli::StoreStatusArgs,
    config: &Config,
    out: &mut impl Write,
) -> Result<(), ModeError> {
    let s = status_of(config)?;
    if args.json {
        serde_json::to_writer(&mut *out, &s).map_err(std::io::Error::from)?;
        writeln!(out)?;
        return Ok(());
    }
    let b = &s.bytes;
    writeln!(out, "store        {}", s.store_dir.display())?;
    writeln!(
        out,
        "journals     {:>14} bytes in {} journals",
        b.journals, s.journals
    )?;
    writeln!(out, "checkpoints  {:>14} bytes", b.checkpoints)?;
    writeln!(out, "index        {:>14} bytes", b.index)?;
    writeln!(out, "keys         {:>14} bytes", b.keys)?;
    writeln!(out, "other        {:>14} bytes", b.other)?;
    writeln!(out, "total        {:>14} bytes", s.total_bytes)?;
    let how = if s.events_from == "index" {
        "estimated from the index"
    } else {
        "counted in the journals (another process holds the index)"
    };
    writeln!(out, "events       {:>14} ({how})", s.events)?;
    writeln!(out, "oldest       {}", s.oldest.as_deref().unwrap_or("-"))?;
    writeln!(out, "newest       {}", s.newest.as_deref().unwrap_or("-"))?;
    match (s.max_store_bytes, s.budget_used) {
        (Some(max), Some(used)) => writeln!(
            out,
            "budget       {:.1}% of audit.max_store_bytes = {max} (at 100%: on_store_failure = {})",
            used * 100.0,
            s.on_store_failure
        )?,
        _ => writeln!(out, "budget       none (audit.max_store_bytes is not set)")?,
    }
    Ok(())
}
