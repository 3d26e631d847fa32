//! Reloads on SIGHUP and when the config file changes: the `[risk]` policy for every session
//! of the process, and, for the gateway, the credentials it accepts (see [`AlsoReloaded`]).
//! Everything else in the file needs a restart; a reload says so.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::pipeline::Pipeline;
use crate::config::Config;
use crate::policy::PolicyChanges;

/// What a front door reloads beside the `[risk]` policy: the gateway's credentials.
pub(crate) struct AlsoReloaded {
    /// The table, and its keys, that `apply` puts in force (they are not "not applied").
    pub(crate) table: &'static str,
    pub(crate) keys: &'static [&'static str],
    /// Puts the new config's values of those keys in force; says what changed. `Err`: the
    /// new values cannot be applied, and the whole reload is rejected (nothing changes).
    pub(crate) apply: Box<Apply>,
}

/// Applies what a reloaded config holds for an [`AlsoReloaded`].
pub(crate) type Apply = dyn Fn(&Config) -> Result<PolicyChanges, String> + Send + Sync;

/// How often the config file is checked for changes.
const WATCH_INTERVAL: Duration = Duration::from_millis(500);

/// Reloads the `[risk]` policy from the config file on each SIGHUP and when the file changes
/// (checked every [`WATCH_INTERVAL`], applied once it has stayed the same for one check, so a
/// half-written file is not read); a file that does not validate is rejected (logged and
/// recorded) and the running policy stays. So is a file that is empty, or has lost the
/// `[risk]` table the running policy came from: what a save caught half-way looks like, and
/// it would put the default policy in place of the user's (an empty `[risk]` table asks for
/// the defaults on purpose).
pub(crate) async fn reload_on_hangup(
    path: PathBuf,
    pipeline: Arc<Pipeline>,
    stop: CancellationToken,
    also: Option<AlsoReloaded>,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup())
        .inspect_err(|e| tracing::warn!(error = %e, "SIGHUP handler unavailable; the policy reloads on file changes only"))
        .ok();
    // The status change time too (nanoseconds): an edit that keeps the length, by a tool that
    // restores mtime, changes neither mtime nor length, but no one can set ctime back. The
    // inode: a file replaced by rename.
    let stamp = |p: &PathBuf| {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(p).ok()?;
        Some((
            m.modified().ok(),
            m.len(),
            m.ino(),
            m.ctime(),
            m.ctime_nsec(),
        ))
    };
    let mut applied = stamp(&path);
    let mut observed = applied;
    // Only [risk] reloads (and what `also` applies): the rest is what the proxy started
    // with, to say what a reload could not apply.
    let outside_risk = |text: &str| {
        toml::from_str::<toml::Table>(text).ok().map(|mut t| {
            t.remove("risk");
            if let Some(also) = &also
                && let Some(toml::Value::Table(table)) = t.get_mut(also.table)
            {
                for key in also.keys {
                    table.remove(*key);
                }
            }
            t
        })
    };
    let running = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| outside_risk(&t))
        .unwrap_or_default();
    let has_risk =
        |text: &str| toml::from_str::<toml::Table>(text).is_ok_and(|t| t.contains_key("risk"));
    let mut had_risk = std::fs::read_to_string(&path).is_ok_and(|t| has_risk(&t));
    let mut tick = tokio::time::interval(WATCH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let why = tokio::select! {
            _ = stop.cancelled() => return,
            got = async {
                match hup.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                if got.is_none() {
                    hup = None;
                    continue;
                }
                applied = stamp(&path);
                observed = applied;
                "SIGHUP received"
            }
            _ = tick.tick() => {
                let now = stamp(&path);
                let settled = now == observed && now != applied;
                observed = now;
                if !settled {
                    continue;
                }
                applied = now;
                "config file changed"
            }
        };
        tracing::info!(config = %path.display(), why, "reloading the policy");
        // Read once: what is checked here is what is loaded.
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) => {
                pipeline.reload_rejected(&format!(
                    "{}: the config file cannot be read ({e}); the running policy stays",
                    path.display()
                ));
                continue;
            }
        };
        let lost = if text.trim().is_empty() {
            Some("is empty")
        } else if had_risk && !has_risk(&text) {
            Some("has no [risk] table, and the running policy came from one")
        } else {
            None
        };
        if let Some(lost) = lost {
            pipeline.reload_rejected(&format!(
                "{}: the config file {lost} (a save caught half-way?); the running policy stays. To run with the default policy, write an empty [risk] table",
                path.display()
            ));
            continue;
        }
        let risk_now = has_risk(&text);
        // A bug in validation must not end reloading for the rest of the session.
        let loaded = std::panic::catch_unwind(|| Config::parse(&path, &text));
        let Ok(loaded) = loaded else {
            pipeline.reload_rejected(
                "internal error while validating the config (a bug in mcp-audit-proxy; please report it with the file)",
            );
            continue;
        };
        match loaded {
            Ok(config) => match config.policy.ready() {
                Ok(()) => {
                    let now = outside_risk(&text).unwrap_or_default();
                    let keys: std::collections::BTreeSet<&String> =
                        running.keys().chain(now.keys()).collect();
                    let not_applied: Vec<String> = keys
                        .into_iter()
                        .filter(|k| running.get(*k) != now.get(*k))
                        .map(|k| format!("{k} changed: not applied (only [risk]{} reloads; restart the proxy)", also.as_ref().map_or(String::new(), |a| format!(" and {}.{}", a.table, a.keys.join("/")))))
                        .collect();
                    let more = match also.as_ref().map(|a| (a.apply)(&config)) {
                        None => PolicyChanges::default(),
                        Some(Ok(more)) => more,
                        Some(Err(problem)) => {
                            pipeline.reload_rejected(&problem);
                            continue;
                        }
                    };
                    pipeline.reload_policy(config.policy, more, not_applied, why);
                    had_risk = risk_now;
                }
                Err(problem) => {
                    pipeline.reload_rejected(&problem);
                }
            },
            Err(e) => {
                pipeline.reload_rejected(&e.to_string());
            }
        }
    }
}
