//! Ends, in this process's journal, the calls that stopped writers left open (see
//! [`crate::store::settle`] for why and how a journal is settled once).
//!
//! Runs once at start on a thread of its own at the lowest priority, after the writer has
//! started: the proxy serves meanwhile, and a store with many stopped journals costs their
//! first read once. Each open call gets a `tool_failure` event, result `shutdown`,
//! `failure_side` `internal`, linked to its access event, with the user, tool, session,
//! upstream, risk level, compliance tags and request context of the access; its `reason` says
//! that the proxy stopped without recording the end and that the tool's outcome is unknown.
//! Its timestamp is when it was recorded (the stop itself left no trace of its time).

use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use super::event::{AuditEvent, EventIds, EventType, Metadata, Outcome, PersonalData};
use super::writer::{AuditError, AuditSink};
use crate::error::Side;
use crate::store::journals::JournalId;
use crate::store::settle::{self, Stopped};
use crate::store::{StoreError, StorePaths};

/// How the reason of every end recorded here begins (readers tell such ends by it: the
/// compliance survey pairs them across journals).
pub const REASON_START: &str = "the proxy that recorded this call (journal ";

/// Why settling stopped before the end.
#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    /// The store could not be read or marked.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An end could not be recorded.
    #[error("could not record the end of a call journal {journal} left open: {source}")]
    Record {
        /// The stopped journal.
        journal: JournalId,
        /// What the writer said.
        source: AuditError,
    },
    /// The writer lost events while the ends were being written (an outage).
    #[error(
        "the audit store failed while the ends of journal {journal}'s open calls were written; it is settled again at the next start"
    )]
    NotDurable {
        /// The stopped journal.
        journal: JournalId,
    },
}

/// What settling did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Settled {
    /// Stopped journals settled.
    pub journals: usize,
    /// Calls ended.
    pub ended: usize,
    /// Open calls of erased users, left as they are.
    pub erased: usize,
}

/// Starts settling the stopped journals of the store at `root` on a thread of its own, ending
/// their open calls through `sink` (whose journal is `own`). Errors are logged, never fatal:
/// what is not settled now is settled at a later start.
///
/// `seals`: this process seals personal fields (`audit.encrypt_personal_data`); one that does
/// not leaves alone the calls whose access was sealed, which would otherwise be stored again
/// in clear (and out of `erase --user`'s reach).
pub fn start(
    root: PathBuf,
    own: JournalId,
    sink: AuditSink,
    seals: bool,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("audit-settle".into())
        .spawn(move || {
            super::writer::lowest_priority("audit-settle");
            match settle_all(&root, own, &sink, seals) {
                Ok(s) if s.ended > 0 || s.erased > 0 => tracing::warn!(
                    journals = s.journals,
                    calls = s.ended,
                    erased_users_calls = s.erased,
                    "ended the calls that stopped proxies (killed or crashed) left open; their outcome is unknown"
                ),
                Ok(s) => tracing::debug!(
                    journals = s.journals,
                    "stopped proxies' journals read: no call left open"
                ),
                Err(e) => {
                    tracing::error!(error = %e, "could not end the calls stopped proxies left open; tried again at the next start");
                }
            }
        })
}

/// Settles every stopped, unsettled journal of the store at `root`; see [`start`].
pub fn settle_all(
    root: &Path,
    own: JournalId,
    sink: &AuditSink,
    seals: bool,
) -> Result<Settled, SettleError> {
    let journal_root = StorePaths::new(root).journal();
    let mut done = Settled::default();
    let ids = EventIds::default();
    for id in settle::unsettled(&journal_root)? {
        if id == own {
            continue;
        }
        let Some(stopped) = settle::open_calls(&journal_root, id)? else {
            continue;
        };
        if !seals
            && stopped
                .open
                .iter()
                .any(|a| a.metadata.personal_data == Some(PersonalData::Encrypted))
        {
            tracing::debug!(journal = %id, "its open calls' personal fields are sealed and this proxy does not seal: left for one that does");
            continue;
        }
        for d in &stopped.damaged {
            tracing::warn!(journal = %id, damage = %d, "damaged records skipped while looking for a stopped proxy's open calls");
        }
        let (ended, erased) = end_calls(stopped, own, sink, &ids)?;
        done.journals += 1;
        done.ended += ended;
        done.erased += erased;
    }
    Ok(done)
}

/// Records the ends of `stopped`'s open calls, makes them durable, and marks it settled.
fn end_calls(
    stopped: Stopped,
    own: JournalId,
    sink: &AuditSink,
    ids: &EventIds,
) -> Result<(usize, usize), SettleError> {
    let journal = stopped.id;
    let (ended, erased) = (stopped.open.len(), stopped.erased);
    if ended > 0 {
        stopped.begin(own)?;
        let before = sink.store_figures();
        for access in &stopped.open {
            let end = end_of(access, journal, own, ids);
            sink.record(&end)
                .map_err(|source| SettleError::Record { journal, source })?;
        }
        let flushed = sink.flush_blocking();
        let after = sink.store_figures();
        if !flushed || !after.available || after.lost > before.lost {
            return Err(SettleError::NotDurable { journal });
        }
    }
    // An open call that could not be read is left for a later start to try again.
    if stopped.unreadable > 0 {
        return Ok((ended, erased));
    }
    stopped.settled(own, ended)?;
    Ok((ended, erased))
}

/// The end of `access`, a call journal `journal` left open, recorded by journal `own`.
pub fn end_of(
    access: &AuditEvent,
    journal: JournalId,
    own: JournalId,
    ids: &EventIds,
) -> AuditEvent {
    let (event_id, timestamp) = ids.next();
    let a = &access.metadata;
    AuditEvent {
        event_id,
        timestamp,
        event_type: EventType::ToolFailure,
        user_id: access.user_id.clone(),
        tool_name: access.tool_name.clone(),
        action: access.action.clone(),
        result: Outcome::Shutdown,
        metadata: Metadata {
            request_id: a.request_id.clone(),
            protocol_version: a.protocol_version.clone(),
            protocol_era: a.protocol_era,
            auth_method: a.auth_method.clone(),
            user_agent: a.user_agent.clone(),
            tool_version: a.tool_version.clone(),
            http: a.http.clone(),
            failure_side: Some(Side::Internal),
            reason: Some(format!(
                "{REASON_START}{journal}) stopped without recording its end: it was killed, crashed, or its machine stopped; whether the tool ran, and its result, are unknown (ended at the next start, by journal {own})"
            )),
            ..Metadata::default()
        },
        risk_level: access.risk_level,
        compliance_tags: access.compliance_tags.clone(),
        session_id: access.session_id.clone(),
        upstream: access.upstream.clone(),
        linked_event_id: Some(access.event_id),
    }
}
