//! `retention`: what has outlived its retention period, and with `--apply` its removal (issue
//! 9 item 6). The work is in [`crate::store::retention`]; this is the command around it: the
//! report, the progress bar, and the `configuration_change` event that records a purge.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::audit::event::EventIds;
use crate::cli::RetentionArgs;
use crate::config::Config;
use crate::store::checkpoint::CheckpointWriter;
use crate::store::retention::{self, Action, Applied, Held, Plan};
use crate::store::{Store, StoreError, StorePaths};

/// Errors of `retention`, each saying what to do.
#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Writing the output failed.
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
    /// There is no store.
    #[error("no audit store at {}\n  hint: give --store DIR, or check audit.store_dir in the config", path.display())]
    NoStore {
        /// The folder.
        path: PathBuf,
    },
    /// Another process holds the index, which a purge must change.
    #[error("the audit index of {} is held by a running mcp-audit-proxy, and a purge must change it\n  hint: a gateway with retention.apply_daily = true applies retention itself once a day; otherwise run `retention --apply` while no proxy runs on this store (without --apply it shows what would go at any time)", path.display())]
    IndexBusy {
        /// The store folder.
        path: PathBuf,
    },
    /// The purge was done but could not be recorded as an event.
    #[error(
        "expired events were removed, but the configuration_change event recording it could not be written: {0}\n  hint: the purge statements in each journal's `purges` file still record it; check the store folder's permissions and free space"
    )]
    Record(StoreError),
}

/// `retention --store DIR` when the config file does not exist: runs with the default periods
/// and no signing key (so `--apply` refuses journals whose checkpoints are signed); `None` for
/// every other command line.
pub fn without_config(
    command: &crate::cli::Command,
) -> Option<Box<dyn FnOnce() -> anyhow::Result<i32> + '_>> {
    match command {
        crate::cli::Command::Retention(args)
            if args.store.is_some() && !args.config.config.exists() =>
        {
            Some(Box::new(|| {
                let config = Config::parse(&args.config.config, "")?;
                Ok(run(args, &config, &mut std::io::stdout().lock())?)
            }))
        }
        _ => None,
    }
}

/// `retention [--apply] [--json]`: prints what has expired (per journal and segment), and with
/// `--apply` removes it; 0 on success.
pub fn run(
    args: &RetentionArgs,
    config: &Config,
    out: &mut impl Write,
) -> Result<i32, RetentionError> {
    let root = args
        .store
        .clone()
        .unwrap_or_else(|| config.audit.store_dir.clone());
    if !StorePaths::new(&root).journal().is_dir() {
        return Err(RetentionError::NoStore { path: root });
    }
    let periods = &config.retention.periods;
    let now = SystemTime::now();
    let plan = retention::plan(&root, periods, now)?;
    if !args.apply {
        if args.json {
            serde_json::to_writer(&mut *out, &plan).map_err(std::io::Error::from)?;
            writeln!(out)?;
        } else {
            write_plan(&plan, out)?;
        }
        return Ok(0);
    }
    let Some((mut holder, _lock)) = retention::open_for_apply(&root)? else {
        return Err(RetentionError::IndexBusy { path: root });
    };
    let bar = progress_bar(plan.purged());
    let applied = retention::apply(
        &mut holder,
        periods,
        config.audit.signer.as_ref(),
        now,
        &mut |done| bar.set_position(done),
    );
    bar.finish_and_clear();
    let applied = applied?;
    if applied.events() > 0 {
        record(&root, config, &applied).map_err(RetentionError::Record)?;
        // The event's journal (stopped now) is indexed before the index is let go.
        holder.catch_up()?;
    }
    holder.close()?;
    if args.json {
        serde_json::to_writer(&mut *out, &applied).map_err(std::io::Error::from)?;
        writeln!(out)?;
    } else {
        write_applied(&applied, periods, out)?;
    }
    Ok(0)
}

/// A progress bar on stderr with rate and ETA, counting events removed; hidden unless both
/// stdout and stderr are terminals (scripts and logs get no control characters).
fn progress_bar(events: u64) -> ProgressBar {
    if !(std::io::stderr().is_terminal() && std::io::stdout().is_terminal()) {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(events), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "retention {wide_bar} {pos}/{len} events ({per_sec}, {eta} left)",
    ) {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Writes the `configuration_change` event of a purge into a journal of this process's own
/// (durable, with a final checkpoint signed like every other).
fn record(root: &std::path::Path, config: &Config, applied: &Applied) -> Result<(), StoreError> {
    let mut store = Store::open_journal(root, config.audit.segment_bytes)?;
    // Stored as a proxy stores events: the operator's name is personal data too.
    if config.audit.encrypt_personal_data {
        store.journal.encrypt_personal_data(root);
    }
    let user = config
        .user_id
        .clone()
        .unwrap_or_else(crate::commands::os_user);
    let event = retention::purge_event(
        applied,
        &config.retention.periods,
        &user,
        &format!("retention-{}", store.id),
        "retention",
        EventIds::default().next(),
    );
    let payload = serde_json::to_vec(&event).map_err(|source| StoreError::Decode {
        at: store.journal.end(),
        source,
    })?;
    store.journal.append(&[payload])?;
    store.journal.sync()?;
    let mut checkpoints =
        CheckpointWriter::new(store.journal.dir(), store.id, config.audit.signer.clone());
    checkpoints.write(store.journal.head(), true)?;
    Ok(())
}

fn action_text(a: Action) -> &'static str {
    match a {
        Action::Keep => "kept (nothing expired)",
        Action::Remove => "remove (every event expired)",
        Action::Rewrite => "rewrite without the expired events",
        Action::Held(Held::Live) => "kept: its writer is appending to it (removed after it stops)",
        Action::Held(Held::Damaged) => "kept: damaged (run `verify`)",
        Action::Held(Held::Legacy) => {
            "kept: legacy unchained segment (export it, then remove it by hand)"
        }
    }
}

fn write_plan(plan: &Plan, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(
        out,
        "retention periods: {} (as of {})",
        plan.periods, plan.now
    )?;
    for j in &plan.journals {
        let state = if j.live {
            "writer running"
        } else {
            "writer stopped"
        };
        let whole = if j.remove_journal {
            ": every event expired, the journal goes"
        } else {
            ""
        };
        writeln!(out, "journal {} ({state}){whole}", j.journal)?;
        for s in &j.segments {
            let range = match (&s.oldest, &s.newest) {
                (Some(o), Some(n)) => format!("{o} .. {n}"),
                _ => "no events".into(),
            };
            let tags = s.tags.iter().cloned().collect::<Vec<_>>().join(",");
            writeln!(
                out,
                "  segment {}: {} events, {} bytes, {range}, tags [{tags}]; {} expired ({} bytes): {}",
                s.segment,
                s.events,
                s.bytes,
                s.expired,
                s.expired_bytes,
                action_text(s.action)
            )?;
        }
    }
    let bytes: u64 = plan
        .journals
        .iter()
        .flat_map(|j| &j.segments)
        .filter(|s| matches!(s.action, Action::Remove | Action::Rewrite))
        .map(|s| s.expired_bytes)
        .sum();
    writeln!(
        out,
        "would remove {} events ({bytes} bytes); {} expired events would stay (held segments)\nnothing was changed; run with --apply to remove them",
        plan.purged(),
        plan.held()
    )
}

fn write_applied(
    applied: &Applied,
    periods: &retention::Periods,
    out: &mut impl Write,
) -> std::io::Result<()> {
    writeln!(out, "retention periods: {}", periods.describe())?;
    for j in &applied.journals {
        writeln!(out, "{}", j.describe())?;
    }
    writeln!(
        out,
        "removed {} events from {} journals; {} expired events stay (held segments){}",
        applied.events(),
        applied.journals.len(),
        applied.held,
        if applied.events() > 0 {
            "; recorded as a configuration_change event"
        } else {
            ""
        }
    )
}
