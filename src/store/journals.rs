//! The journals of one store: one per writing process, each in its own folder with its own
//! `LOCK`, plus the single journal of stores written before there were several.
//!
//! A writer's journal is made under a hidden name, locked, and only then renamed into view,
//! so a journal that can be seen and whose `LOCK` is free belongs to a process that has
//! stopped (cleanly or not): nobody will ever append to it again.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use ulid::Ulid;

use super::journal::{self, Damage, Journal, JournalPos, list_segments};
use super::personal::Keyring;
use super::{Filter, StoreError, try_lock_file};
use crate::audit::event::{AuditEvent, EventId, EventType};

/// Which journal of the store: a writer process's (a ULID made when it started), or the
/// legacy one (segments straight in `journal/`, from before journals per process).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JournalId(pub u128);

impl JournalId {
    /// The journal of stores written by one process at a time (`journal/NNN.journal`).
    pub const LEGACY: JournalId = JournalId(0);

    /// A new, unique id for this process's journal (a ULID is never zero).
    pub fn generate() -> JournalId {
        JournalId(Ulid::from_datetime(std::time::SystemTime::now()).0)
    }

    /// Big-endian bytes, for keys and records in the index.
    pub fn to_bytes(self) -> [u8; 16] {
        self.0.to_be_bytes()
    }

    /// Reads [`Self::to_bytes`] back.
    pub fn from_bytes(bytes: &[u8]) -> Option<JournalId> {
        Some(JournalId(u128::from_be_bytes(bytes.try_into().ok()?)))
    }

    /// The journal's folder under the store's `journal/` folder.
    pub fn dir(self, journal_root: &Path) -> PathBuf {
        if self == JournalId::LEGACY {
            journal_root.to_path_buf()
        } else {
            journal_root.join(Ulid(self.0).to_string())
        }
    }
}

impl std::fmt::Display for JournalId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if *self == JournalId::LEGACY {
            f.write_str("legacy")
        } else {
            write!(f, "{}", Ulid(self.0))
        }
    }
}

/// The id of the journal in folder `dir` (the legacy one when its name is not a ULID).
pub fn id_of(dir: &Path) -> JournalId {
    dir.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| Ulid::from_string(n).ok())
        .map_or(JournalId::LEGACY, |u| JournalId(u.0))
}

/// The journals in `journal_root` (the legacy one first, when it has segments), in id order.
pub fn list(journal_root: &Path) -> Result<Vec<JournalId>, StoreError> {
    let entries = match fs::read_dir(journal_root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StoreError::io("list", journal_root, e)),
    };
    let mut out = Vec::new();
    let mut legacy = false;
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io("list", journal_root, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(".journal") {
            legacy = true;
        } else if name.len() == ulid::ULID_LEN
            && let Ok(id) = Ulid::from_string(name)
            && id.0 != 0
            && entry.file_type().is_ok_and(|t| t.is_dir())
        {
            out.push(JournalId(id.0));
        }
    }
    if legacy && !list_segments(journal_root)?.is_empty() {
        out.push(JournalId::LEGACY);
    }
    out.sort_unstable();
    Ok(out)
}

/// Takes a journal's `LOCK` without waiting: `Ok(Some)` means nobody appends to it now, nor
/// ever will (its writer has stopped); `Ok(None)` that its writer is running.
pub fn try_lock(journal_root: &Path, id: JournalId) -> Result<Option<File>, StoreError> {
    try_lock_file(&id.dir(journal_root).join("LOCK"), false)
}

/// Starts this process's own journal: a new folder, locked before anyone can see it.
pub fn create(journal_root: &Path, segment_bytes: u64) -> Result<(JournalId, Journal), StoreError> {
    fs::create_dir_all(journal_root).map_err(|e| StoreError::io("create", journal_root, e))?;
    let id = JournalId::generate();
    let hidden = journal_root.join(format!(".new-{id}"));
    fs::create_dir(&hidden).map_err(|e| StoreError::io("create", &hidden, e))?;
    let lock = try_lock_file(&hidden.join("LOCK"), false)?.ok_or_else(|| StoreError::Io {
        op: "lock",
        path: hidden.join("LOCK"),
        source: std::io::Error::other("a new journal's lock is held by another process"),
    })?;
    let dir = id.dir(journal_root);
    fs::rename(&hidden, &dir).map_err(|e| StoreError::io("rename into place", &hidden, e))?;
    journal::sync_dir(journal_root)?;
    Ok((id, Journal::create_locked(&dir, segment_bytes, lock)?))
}

/// Reads the newest events straight from every journal (for queries while another process
/// holds the index), newest segment first, until `limit` events of each journal match; then
/// the newest `limit` of them all by event id (ids order events by time across processes).
/// At most `2 × limit` events are held at once, however many journals there are (one per
/// stdio wrapper process that ever ran).
///
/// Journals are read newest first (their ids are ULIDs of when they were made), and once
/// `limit` events are found, the oldest of them is a floor: a later journal is read only down
/// to it, and a stretch of records wholly below it is not decoded. So a store of a thousand
/// stopped wrappers' journals costs one short read of each old journal's end, not `limit`
/// decrypted events of each (the alert stage's history at every wrapper start was 57% of the
/// CPU in the proxy bench before this).
pub fn newest(
    journal_root: &Path,
    limit: usize,
    filter: &Filter,
) -> Result<(Vec<AuditEvent>, Vec<Damage>), StoreError> {
    let mut out = Vec::new();
    let mut damaged = Vec::new();
    let keys = Keyring::for_journals(journal_root);
    let mut floor = 0u128;
    for id in list(journal_root)?.into_iter().rev() {
        newest_of(
            &id.dir(journal_root),
            limit,
            filter,
            floor,
            &keys,
            &mut out,
            &mut damaged,
        )?;
        if out.len() >= limit && limit > 0 {
            out.sort_unstable_by_key(|e| std::cmp::Reverse(e.event_id));
            out.truncate(limit);
            floor = out.last().map_or(0, |e| u128::from(e.event_id.0));
        }
    }
    out.sort_unstable_by_key(|e| std::cmp::Reverse(e.event_id));
    out.truncate(limit);
    Ok((out, damaged))
}

/// How much of a segment [`newest`] reads at a time, from its end.
#[cfg(not(test))]
const BACKWARDS_CHUNK: u64 = 256 << 10;
/// Small in unit tests, so that the query tests' 64 KiB segments are read in many stretches.
#[cfg(test)]
const BACKWARDS_CHUNK: u64 = 3 << 10;

/// An event's id, read without decoding the rest of it.
#[derive(serde::Deserialize)]
struct IdOnly {
    event_id: EventId,
}

/// An event's id and the access event it ends, read without decrypting or decoding the rest.
#[derive(serde::Deserialize)]
struct IdLink {
    event_id: EventId,
    #[serde(default)]
    linked_event_id: Option<EventId>,
}

/// Adds the newest `limit` matching events of the journal in `dir` to `out`, none older
/// than `floor` (an event id as a number; 0: no floor).
fn newest_of(
    dir: &Path,
    limit: usize,
    filter: &Filter,
    floor: u128,
    keys: &Keyring,
    out: &mut Vec<AuditEvent>,
    damaged: &mut Vec<Damage>,
) -> Result<(), StoreError> {
    let segments = list_segments(dir)?;
    let mut found = 0;
    // One process's ids only grow (its ULID generator is monotonic), so once a segment reaches
    // before `since`, older segments hold nothing the filter wants.
    let lowest = filter.lowest_id().max(floor);
    let highest = filter.highest_id();
    // Newest first, an end event is met before its access event (both are written by the
    // process that ran the call, into its journal): its link is known in time.
    let mut links = std::collections::HashMap::new();
    // Only records holding each wanted user, tool, session and upstream as a JSON string are
    // decoded (an event's JSON holds them as serde_json writes them). An end event carries
    // its access event's user, tool, session and upstream, so a skipped end is never the
    // link of an access event that is kept. A user's events stored encrypted hold their
    // pseudonym instead of the name: either will do.
    let mut needles: Vec<Vec<Vec<u8>>> = [
        vec![&filter.user, &filter.user_subject],
        vec![&filter.tool],
        vec![&filter.session],
        vec![&filter.upstream],
    ]
    .into_iter()
    .map(|alternatives| {
        alternatives
            .into_iter()
            .flatten()
            .filter_map(|v| serde_json::to_vec(v).ok())
            .collect::<Vec<_>>()
    })
    .filter(|alternatives| !alternatives.is_empty())
    .collect();
    // A type other than an access event's, as stored records spell it (canonical JSON: no
    // spaces), so that a rare one (`alerts`: type alert) is found without decoding every
    // record. Not for access events: their ends, skipped, would not link them.
    if let Some(t) = filter.event_type
        && t != EventType::ToolAccess
    {
        needles.push(vec![
            format!("\"event_type\":\"{}\"", t.as_str()).into_bytes(),
        ]);
    }
    // What one stretch of records (in file order) gives; false once nothing older is wanted.
    let id_of = |at: JournalPos, payload: &[u8]| -> Result<u128, StoreError> {
        let only: IdOnly =
            serde_json::from_slice(payload).map_err(|source| StoreError::Decode { at, source })?;
        Ok(u128::from(only.event_id.0))
    };
    let mut take = |records: &[(JournalPos, &[u8])]| -> Result<bool, StoreError> {
        let mut events = Vec::new();
        let (Some(&(first_at, first)), Some(&(last_at, last))) = (records.first(), records.last())
        else {
            return Ok(found < limit);
        };
        // Ids grow in file order: a stretch whose newest record is below the floor holds
        // nothing wanted, and nor does anything before it.
        let last_id = if floor > 0 || highest != u128::MAX {
            id_of(last_at, last)?
        } else {
            u128::MAX
        };
        if last_id < floor {
            return Ok(false);
        }
        let first_id = id_of(first_at, first)?;
        // A stretch that crosses the floor: its records below it are not decoded.
        let crossing = floor > 0 && first_id < floor;
        // Records after `until` are not decoded either (a history read up to where an earlier
        // read stopped); an end among them still gives its access event its link.
        let above = last_id > highest;
        let mut above_links = Vec::new();
        for &(at, payload) in records {
            if crossing && id_of(at, payload)? < floor {
                continue;
            }
            if above {
                let only: IdLink = serde_json::from_slice(payload)
                    .map_err(|source| StoreError::Decode { at, source })?;
                if u128::from(only.event_id.0) > highest {
                    if let Some(access) = only.linked_event_id {
                        above_links.push((access, only.event_id));
                    }
                    continue;
                }
            }
            if !needles.iter().all(|alternatives| {
                alternatives
                    .iter()
                    .any(|n| memchr::memmem::find(payload, n).is_some())
            }) {
                continue;
            }
            events.push(keys.decode(payload, at)?);
        }
        let reached_lowest = first_id < lowest;
        // Newest first, as below, so that an access's first end is the one kept.
        for (access, end) in above_links.into_iter().rev() {
            links.insert(access, end);
        }
        for mut event in events.into_iter().rev() {
            if event.event_type != EventType::ToolAccess
                && let Some(access) = event.linked_event_id
            {
                links.insert(access, event.event_id);
            }
            if found < limit && filter.matches(&event) {
                if event.linked_event_id.is_none() {
                    event.linked_event_id = links.get(&event.event_id).copied();
                }
                out.push(event);
                found += 1;
            }
        }
        Ok(found < limit && !reached_lowest)
    };
    for (i, &n) in segments.iter().enumerate().rev() {
        // The newest records first, a stretch at a time from the segment's end: the newest
        // `limit` are usually in its last few hundred kilobytes, and a 64 MiB segment read
        // whole cost most of a query (issue 9 item 9).
        let mut read_from = u64::MAX;
        let mut go_on = true;
        let newest = i + 1 == segments.len();
        let plain = journal::read_segment_backwards(dir, n, newest, BACKWARDS_CHUNK, |records| {
            if let Some(&(end, payload)) = records.first() {
                read_from = end.offset - journal::RECORD_HEADER_LEN - payload.len() as u64;
            }
            go_on = take(&records)?;
            Ok(go_on)
        })?;
        if !plain {
            // Read whole (damage is reported), skipping what the stretches gave.
            let mut records = Vec::new();
            journal::read_segment(
                dir,
                n,
                journal::HEADER_LEN,
                newest,
                |at, payload| {
                    if at.offset <= read_from {
                        records.push((at, payload.to_vec()));
                    }
                    Ok::<(), StoreError>(())
                },
                |d| damaged.push(d),
            )?;
            let borrowed: Vec<(JournalPos, &[u8])> =
                records.iter().map(|(at, p)| (*at, p.as_slice())).collect();
            go_on = take(&borrowed)?;
        }
        if !go_on {
            break;
        }
    }
    Ok(())
}

/// Finds event `id` by reading every journal, with the other half of its pair (the access
/// event it links to, or the first end linking to it): for `events show` while another
/// process holds the index.
pub fn find_pair(
    journal_root: &Path,
    id: EventId,
) -> Result<(Option<AuditEvent>, Option<AuditEvent>), StoreError> {
    let text = id.to_string();
    let keys = Keyring::for_journals(journal_root);
    let mut found: Option<AuditEvent> = None;
    let mut ends = Vec::new();
    for journal in list(journal_root)? {
        journal::read_from(
            &journal.dir(journal_root),
            JournalPos::START,
            |at, payload| {
                // Only records naming the id are decoded.
                if memchr::memmem::find(payload, text.as_bytes()).is_none() {
                    return Ok::<(), StoreError>(());
                }
                let event = keys.decode(payload, at)?;
                if event.event_id == id {
                    found = Some(event);
                } else if event.linked_event_id == Some(id)
                    && event.event_type != EventType::ToolAccess
                {
                    ends.push(event);
                }
                Ok(())
            },
            |_| {},
        )?;
    }
    let Some(mut event) = found else {
        return Ok((None, None));
    };
    let pair = if event.event_type == EventType::ToolAccess {
        // The first end (by id) is the pair's end, as in the index.
        ends.sort_unstable_by_key(|e| e.event_id);
        let end = ends.into_iter().next();
        if event.linked_event_id.is_none() {
            event.linked_event_id = end.as_ref().map(|e| e.event_id);
        }
        end
    } else {
        match event.linked_event_id {
            Some(access) => find_one(journal_root, access)?,
            None => None,
        }
    };
    Ok((Some(event), pair))
}

/// Event `id`, read from whichever journal holds it.
fn find_one(journal_root: &Path, id: EventId) -> Result<Option<AuditEvent>, StoreError> {
    let text = id.to_string();
    let needle = format!("\"event_id\":\"{text}\"");
    let keys = Keyring::for_journals(journal_root);
    let mut found = None;
    for journal in list(journal_root)? {
        journal::read_from(
            &journal.dir(journal_root),
            JournalPos::START,
            |at, payload| {
                if found.is_none() && memchr::memmem::find(payload, needle.as_bytes()).is_some() {
                    let event = keys.decode(payload, at)?;
                    if event.event_id == id {
                        found = Some(event);
                    }
                }
                Ok::<(), StoreError>(())
            },
            |_| {},
        )?;
        if found.is_some() {
            break;
        }
    }
    Ok(found)
}
