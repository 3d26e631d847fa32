//! `erase --user U` (GDPR Art. 17, right to erasure) and `export --user U` (Art. 20, right to
//! data portability): the data-subject requests, on top of the per-user encryption of
//! [`crate::store::personal`].

use std::io::Write;
use std::path::PathBuf;
use std::time::SystemTime;

use super::{ModeError, newest, os_user, start_audit};
use crate::audit::event::{EventIds, Metadata, RiskLevel};
use crate::audit::{AuditEvent, EventType, Outcome};
use crate::cli::{EraseArgs, ExportArgs};
use crate::config::Config;
use crate::store::{Filter, StoreError, personal};

/// The `type` of a portability export.
pub const PORTABILITY_TYPE: &str = "mcp-audit-proxy/portability/1";

/// Errors of `erase` and `export --user`, each saying what to do.
#[derive(Debug, thiserror::Error)]
pub enum PrivacyError {
    /// The store or the output failed.
    #[error(transparent)]
    Mode(#[from] ModeError),
    /// The store has nothing of this user.
    #[error("the audit store {} holds no events and no key of user {user:?}\n  hint: check the spelling (user_id exactly as recorded: `events --json` shows it); a user already erased has no key left either", store.display())]
    UnknownUser {
        /// The store folder.
        store: PathBuf,
        /// The user asked for.
        user: String,
    },
    /// The user's events are stored in clear: no key to destroy.
    #[error("cannot erase user {user:?}: their {clear} event(s) in {} are stored unencrypted (written before personal fields were encrypted, or with audit.encrypt_personal_data = false), and changing them would break the hash chain\n  hint: they go when their retention period ends (`retention --apply`); to remove them sooner, export the range as evidence (`export --since --until`) and remove the journals that hold them; keep audit.encrypt_personal_data = true so that new events can be erased", store.display())]
    Unencrypted {
        /// The store folder.
        store: PathBuf,
        /// The user asked for.
        user: String,
        /// How many events.
        clear: usize,
    },
    /// The erasure event could not be written, so nothing was erased: the event is written
    /// before the key is destroyed (a key gone off the record is what `verify` reports as
    /// tampering).
    #[error(
        "NOT ERASED: the erasure of user {user:?} ({subject}) could not be recorded in the audit trail, so their key was kept and their personal data can still be read: {reason}\n  hint: fix the cause (is the store folder writable, the disk full, another process holding the store?), then run `erase` again"
    )]
    NotRecorded {
        /// The user.
        user: String,
        /// The pseudonym.
        subject: String,
        /// Why.
        reason: String,
    },
    /// The export file exists already.
    #[error("{} already exists\n  hint: choose another --out path; an export is never overwritten", path.display())]
    Exists {
        /// The file.
        path: PathBuf,
    },
}

impl From<StoreError> for PrivacyError {
    fn from(e: StoreError) -> Self {
        PrivacyError::Mode(ModeError::Store(e))
    }
}

impl From<std::io::Error> for PrivacyError {
    fn from(e: std::io::Error) -> Self {
        PrivacyError::Mode(ModeError::Output(e))
    }
}

/// Every event of `user` (stored encrypted under their key, or in clear), oldest first, within
/// `since..until`; and the pseudonym of their key, if they have one.
fn events_of(
    config: &Config,
    user: &str,
    since: Option<SystemTime>,
    until: Option<SystemTime>,
) -> Result<(Vec<AuditEvent>, Option<String>), PrivacyError> {
    let root = &config.audit.store_dir;
    let subject = personal::subject_of(root, user).map_err(StoreError::from)?;
    let filter = Filter {
        user: Some(user.to_string()),
        user_subject: subject.clone(),
        since,
        until,
        ..Filter::default()
    };
    let mut events = newest(config, usize::MAX, &filter)?;
    events.reverse();
    Ok((events, subject))
}

/// `erase --user U`: destroys U's key, so that the personal fields of every event stored
/// under it are unreadable from then on, everywhere (the store, its index, every export), while
/// the chain and the skeleton still verify; records the erasure as a `configuration_change`
/// event naming only the pseudonym. Exit status 0 when every event of U is erased, 1 when some
/// are stored in clear and could not be (said on `out`).
pub fn erase(args: &EraseArgs, config: &Config, out: &mut impl Write) -> Result<i32, PrivacyError> {
    let root = &config.audit.store_dir;
    if !root.join("journal").is_dir() {
        return Err(ModeError::NoStore { path: root.clone() }.into());
    }
    let (events, subject) = events_of(config, &args.user, None, None)?;
    let clear = events
        .iter()
        .filter(|e| e.metadata.personal_data.is_none())
        .count();
    let sealed = events.len() - clear;
    if subject.is_none() {
        return Err(if clear > 0 {
            PrivacyError::Unencrypted {
                store: root.clone(),
                user: args.user.clone(),
                clear,
            }
        } else {
            PrivacyError::UnknownUser {
                store: root.clone(),
                user: args.user.clone(),
            }
        });
    }
    drop(events);
    // Recorded first, then done: a key destroyed off the record is what `verify` reports
    // as tampering (a crash in between leaves a recorded erasure to run again).
    let Some(subject) = personal::subject_of(root, &args.user).map_err(StoreError::from)? else {
        // Erased by another process between the look-up and now.
        return Err(PrivacyError::UnknownUser {
            store: root.clone(),
            user: args.user.clone(),
        });
    };
    record_erasure(config, &subject, sealed).map_err(|reason| PrivacyError::NotRecorded {
        user: args.user.clone(),
        subject: subject.clone(),
        reason,
    })?;
    personal::erase(root, &args.user).map_err(StoreError::from)?;
    writeln!(
        out,
        "erased the personal data of user {:?} (GDPR Art. 17): their key ({subject}) was destroyed; the personal fields of {sealed} stored event(s) can no longer be read, and their skeleton (time, type, tool, result, risk, tags, ids) stays verifiable\nrecorded as a configuration_change event naming {subject}",
        args.user
    )?;
    if clear > 0 {
        writeln!(
            out,
            "NOT ERASED: {clear} older event(s) of {:?} are stored unencrypted and cannot be erased without breaking the hash chain\n  hint: they go when their retention period ends (`retention --apply`); keep audit.encrypt_personal_data = true",
            args.user
        )?;
        return Ok(1);
    }
    Ok(0)
}

/// Appends the `configuration_change` event of an erasure to a journal of this process's own
/// (sealed and checkpointed like any other), durably; the error in words.
fn record_erasure(config: &Config, subject: &str, events: usize) -> Result<(), String> {
    let (event_id, timestamp) = EventIds::default().next();
    let event = AuditEvent {
        event_id,
        timestamp,
        event_type: EventType::ConfigurationChange,
        user_id: os_user(),
        tool_name: None,
        action: "audit/erase".into(),
        result: Outcome::Success,
        metadata: Metadata {
            auth_method: Some("os_user".into()),
            changes: vec![format!(
                "erased the personal data of {subject} (GDPR Art. 17): its key was destroyed; {events} stored event(s) keep only their skeleton"
            )],
            ..Metadata::default()
        },
        risk_level: RiskLevel::Low,
        compliance_tags: vec!["gdpr".into()],
        session_id: format!("erase-{event_id}"),
        upstream: String::new(),
        linked_event_id: None,
    };
    let (sink, threads, _lock) =
        start_audit(config, os_user(), String::new(), None, false).map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| e.to_string())?;
    let result = runtime.block_on(async {
        let ack = sink.record(&event).map_err(|e| e.to_string())?;
        let waited = ack.wait().await.map_err(|e| e.to_string());
        sink.close().await;
        waited
    });
    let written = sink.figures().1;
    drop(sink);
    threads.join();
    result?;
    if written == 0 {
        return Err("the audit writer did not write it (see the log above)".into());
    }
    Ok(())
}

/// `export --user U --out FILE`: every event of U, decrypted, oldest first, as one JSON
/// document for a data-portability request (GDPR Art. 20: "structured, commonly used and
/// machine-readable"): `{"created","events":[…],"type":"mcp-audit-proxy/portability/1",
/// "user_id"}`, each event as `events --json` prints it. Events already erased are not in it
/// (nothing of them can be tied to U any more).
pub fn export_user(
    args: &ExportArgs,
    user: &str,
    config: &Config,
    out: &mut impl Write,
) -> Result<i32, PrivacyError> {
    let root = &config.audit.store_dir;
    if !root.join("journal").is_dir() {
        return Err(ModeError::NoStore { path: root.clone() }.into());
    }
    let (events, subject) = events_of(config, user, args.since, args.until)?;
    if events.is_empty() && subject.is_none() {
        return Err(PrivacyError::UnknownUser {
            store: root.clone(),
            user: user.to_string(),
        });
    }
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&args.out)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => PrivacyError::Exists {
                path: args.out.clone(),
            },
            _ => StoreError::io("create", &args.out, e).into(),
        })?;
    let mut w = std::io::BufWriter::new(file);
    let progress = crate::progress::items(events.len() as u64, "export");
    let created = humantime::format_rfc3339_micros(SystemTime::now()).to_string();
    write!(
        w,
        "{{\"created\":{},\"type\":{},\"user_id\":{},\"events\":[",
        serde_json::to_string(&created).map_err(std::io::Error::from)?,
        serde_json::to_string(PORTABILITY_TYPE).map_err(std::io::Error::from)?,
        serde_json::to_string(user).map_err(std::io::Error::from)?,
    )?;
    for (i, e) in events.iter().enumerate() {
        w.write_all(if i == 0 { b"\n" } else { b",\n" })?;
        serde_json::to_writer(&mut w, e).map_err(std::io::Error::from)?;
        progress.inc(1);
    }
    w.write_all(b"\n]}\n")?;
    let file = w.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()
        .map_err(|e| StoreError::io("sync", &args.out, e))?;
    progress.finish_and_clear();
    writeln!(
        out,
        "exported {} event(s) of user {user:?} to {} in plaintext (GDPR Art. 20 data portability): hand it to the person only, it holds their personal data",
        events.len(),
        args.out.display()
    )?;
    Ok(0)
}
