//! Calls a stopped writer left open: found in its journal, so that a later process can end
//! them in the trail.
//!
//! Why: a writer ends every call still running when it stops (`shutdown`, `server_exit`). A
//! writer that is killed (SIGKILL, the OOM killer), crashes or loses its machine cannot: its
//! journal keeps access events with no end, which nothing would ever explain. The first process
//! to start on the store afterwards finds them ([`open_calls`]) and records their ends in its
//! own journal (see [`crate::audit::settle`]): outcome `shutdown`, the cause in words, the
//! outcome of the tool unknown. An auditor then reads "the proxy stopped; result unknown" where
//! there was silence (PCI DSS 10.2.2 asks every event's success or failure; HIPAA 164.312(b)
//! asks that activity be recordable and examinable).
//!
//! Each stopped journal is settled once, by one process:
//!
//! * it is settled under its own `LOCK` (free once its writer has stopped), which the settler
//!   holds throughout: a second process starting at the same moment finds it "running" and
//!   leaves it;
//! * before any end is recorded, the settler adds its own journal's id to the stopped
//!   journal's `SETTLING` file; a settler stopped half-way is followed by one that reads the
//!   journals named there and ends only calls that have no end in them either;
//! * once the ends are durable, a `SETTLED` file is written (synced, with its folder): the
//!   journal is never read for this again.
//!
//! The legacy journal (stores of one process at a time) is not settled. Imported events
//! (`metadata.imported`) are another trail's, not a stopped writer's: they are left as they are.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::StoreError;
use super::journal::sync_dir;
use super::journal::{self, Damage, JournalPos, RecordRef};
use super::journals::{self, JournalId};
use super::personal::Keyring;
use crate::audit::event::{AuditEvent, EventId, EventType, PersonalData};

/// Written in a stopped journal's folder once its open calls are ended (JSON: how many, by
/// which journal, when).
pub const SETTLED: &str = "SETTLED";
/// The journals that began settling a stopped journal, one id per line.
pub const SETTLING: &str = "SETTLING";

/// The journals under `journal_root` that may need settling: every journal but the legacy one
/// without a `SETTLED` file (running ones too: [`open_calls`] tells them apart).
pub fn unsettled(journal_root: &Path) -> Result<Vec<JournalId>, StoreError> {
    Ok(journals::list(journal_root)?
        .into_iter()
        .filter(|id| *id != JournalId::LEGACY && !id.dir(journal_root).join(SETTLED).exists())
        .collect())
}

/// A stopped journal being settled, its `LOCK` held until [`Stopped::settled`] (or drop).
#[derive(Debug)]
pub struct Stopped {
    /// The journal.
    pub id: JournalId,
    /// Its access events that no end answers, oldest first, decoded (personal fields open).
    pub open: Vec<AuditEvent>,
    /// Access events left open that cannot be ended: their user's key was destroyed
    /// (`erase --user`), so their user is unknown.
    pub erased: usize,
    /// Access events left open that cannot be read (a damaged record or key file).
    pub unreadable: usize,
    /// Damaged stretches met while reading (their records were skipped).
    pub damaged: Vec<Damage>,
    dir: PathBuf,
    _lock: File,
}

/// The calls journal `id` left open, if its writer has stopped and it is not settled yet
/// (`Ok(None)`: running, settled, or being settled by another process).
///
/// Reads the whole journal once, holding only the calls open at each point (an end follows its
/// access in the same journal, so that is about the calls in flight), then the journals named
/// in its `SETTLING` file. Errors: the journal cannot be listed or read.
pub fn open_calls(journal_root: &Path, id: JournalId) -> Result<Option<Stopped>, StoreError> {
    if id == JournalId::LEGACY {
        return Ok(None);
    }
    let dir = id.dir(journal_root);
    let Some(lock) = journals::try_lock(journal_root, id)? else {
        return Ok(None);
    };
    // Settled by another process between the listing and the lock.
    if dir.join(SETTLED).exists() {
        return Ok(None);
    }
    let mut open: HashMap<EventId, RecordRef> = HashMap::new();
    let mut damaged = Vec::new();
    journal::read_from(
        &dir,
        JournalPos::START,
        |end, payload| {
            let Ok(light) = serde_json::from_slice::<Light>(payload) else {
                return Ok(());
            };
            if light.event_type == EventType::ToolAccess {
                open.insert(light.event_id, RecordRef::ending_at(end, payload.len()));
            } else if let Some(access) = light.linked_event_id {
                open.remove(&access);
            }
            Ok(())
        },
        |d| damaged.push(d),
    )?;
    // Ends a settler stopped half-way recorded in its own journal.
    if !open.is_empty() {
        for by in settlers(&dir)? {
            let by_dir = by.dir(journal_root);
            if !by_dir.exists() {
                continue;
            }
            journal::read_from(
                &by_dir,
                JournalPos::START,
                |_, payload| {
                    if let Ok(light) = serde_json::from_slice::<Light>(payload)
                        && let Some(access) = light.linked_event_id
                    {
                        open.remove(&access);
                    }
                    Ok(())
                },
                |d| damaged.push(d),
            )?;
        }
    }
    let keys = Keyring::for_journals(journal_root);
    let mut records: Vec<RecordRef> = open.into_values().collect();
    records.sort_unstable_by_key(|r| r.end());
    let mut calls = Vec::with_capacity(records.len());
    let (mut erased, mut unreadable) = (0, 0);
    for record in records {
        let event = match journal::read_record(&dir, record)
            .and_then(|payload| keys.decode(&payload, record.end()))
        {
            Ok(e) => e,
            Err(e) => {
                // One unreadable event (a damaged key file) does not keep the others open.
                tracing::warn!(journal = %id, error = %e, "an open call's access event cannot be read; it is left open");
                unreadable += 1;
                continue;
            }
        };
        if event.metadata.imported.is_some() {
            continue;
        }
        if event.metadata.personal_data == Some(PersonalData::Erased) {
            erased += 1;
            continue;
        }
        calls.push(event);
    }
    Ok(Some(Stopped {
        id,
        open: calls,
        erased,
        unreadable,
        damaged,
        dir,
        _lock: lock,
    }))
}

impl Stopped {
    /// Notes in the journal's `SETTLING` file (synced) that journal `by` is about to record
    /// ends for its open calls: call before recording any.
    pub fn begin(&self, by: JournalId) -> Result<(), StoreError> {
        let path = self.dir.join(SETTLING);
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| StoreError::io("open", &path, e))?;
        writeln!(f, "{by}")
            .and_then(|()| f.sync_all())
            .map_err(|e| StoreError::io("write", &path, e))?;
        sync_dir(&self.dir)
    }

    /// Marks the journal settled (`SETTLED`, synced with its folder) once the ends recorded by
    /// journal `by` are durable; `ended` is how many. Releases its `LOCK`.
    pub fn settled(self, by: JournalId, ended: usize) -> Result<(), StoreError> {
        let path = self.dir.join(SETTLED);
        let text = serde_json::json!({
            "ended": ended,
            "erased": self.erased,
            "unreadable": self.unreadable,
            "by": by.to_string(),
            "at": humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string(),
        })
        .to_string();
        let tmp = self.dir.join(format!("{SETTLED}.tmp"));
        let mut f = File::create(&tmp).map_err(|e| StoreError::io("create", &tmp, e))?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| StoreError::io("write", &tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| StoreError::io("rename into place", &tmp, e))?;
        sync_dir(&self.dir)
    }
}

/// The journals named in `dir`'s `SETTLING` file (none if it has none).
fn settlers(dir: &Path) -> Result<Vec<JournalId>, StoreError> {
    let path = dir.join(SETTLING);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StoreError::io("read", &path, e)),
    };
    Ok(text
        .lines()
        .filter_map(|l| ulid::Ulid::from_string(l.trim()).ok())
        .map(|u| JournalId(u.0))
        .collect())
}

/// What settling reads of every record: its id, its type, and the access it ends (none of them
/// personal fields, so nothing is decrypted).
#[derive(serde::Deserialize)]
struct Light {
    event_id: EventId,
    event_type: EventType,
    #[serde(default)]
    linked_event_id: Option<EventId>,
}
