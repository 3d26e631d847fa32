//! The gateway's daily retention (issue 9 item 6; `retention.apply_daily = true`): once a day,
//! off the message path, the gateway's indexer thread (the one holding the index, which a
//! purge changes) removes what has outlived its period, and this task records what went as a
//! `configuration_change` event in the gateway's own journal.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::audit::event::EventIds;
use crate::audit::writer::AuditSink;
use crate::config::Config;
use crate::store::StoreError;
use crate::store::retention::{self, DailyRetention};

/// The first run, after the start: the indexer has taken the index and caught up by then.
const FIRST_RUN_AFTER: Duration = Duration::from_secs(10);
/// Then once a day.
const EVERY: Duration = Duration::from_secs(24 * 3600);
/// After a run that could not happen (another process holds the index, or a failure).
const RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Runs retention daily until `stopping`; each purge is recorded through `audit`.
pub(super) async fn daily(
    handle: DailyRetention,
    config: Arc<Config>,
    audit: AuditSink,
    stopping: CancellationToken,
) {
    let ids = EventIds::default();
    let mut wait = FIRST_RUN_AFTER;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stopping.cancelled() => return,
        }
        let periods = config.retention.periods.clone();
        let outcome = tokio::select! {
            o = handle.run(periods.clone(), config.audit.signer.clone()) => o,
            _ = stopping.cancelled() => return,
        };
        wait = match outcome {
            // The indexer has stopped: the gateway is shutting down.
            None => return,
            Some(Ok(applied)) => {
                tracing::info!(
                    events = applied.events(),
                    journals = applied.journals.len(),
                    held = applied.held,
                    "retention applied"
                );
                if applied.events() > 0 {
                    let event = retention::purge_event(
                        &applied,
                        &periods,
                        &crate::commands::os_user(),
                        "gateway-retention",
                        "gateway",
                        ids.next(),
                    );
                    match audit.record(&event) {
                        Ok(ack) => {
                            if let Err(e) = ack.wait().await {
                                tracing::error!(error = %e, "the retention purge event could not be recorded; the journals' purge statements still record it");
                            }
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "the retention purge event could not be recorded; the journals' purge statements still record it");
                        }
                    }
                }
                EVERY
            }
            Some(Err(StoreError::IndexBusy { .. })) => {
                tracing::warn!(
                    "retention postponed: another process holds the audit index (retried in an hour)"
                );
                RETRY_AFTER
            }
            Some(Err(e)) => {
                tracing::error!(error = %e, "retention failed (retried in an hour)");
                RETRY_AFTER
            }
        };
    }
}
