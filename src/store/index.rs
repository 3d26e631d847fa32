//! The query side of the store: sled maps every event id to its record in a journal, and
//! keeps the indexes (by session, tool, user), the access→end links and, per journal, the
//! position up to which that journal is applied; fed from the journals by the index holder.
//!
//! sled holds references, not second copies: the journal stays the one place an event's
//! content lives (one copy to retain, protect and, later, erase), and sled's copy-on-write
//! nodes stay small, which keeps indexing cheap next to the calls. Everything here can be
//! rebuilt from the journals; applying a record twice is harmless (keys are event ids), which
//! makes catch-up after a crash simple: replay each journal from the last position sled
//! remembers for it.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::StoreError;
use super::journal::{self, JournalPos, RecordRef};
use super::journals::JournalId;
use crate::audit::event::{AuditEvent, EventId, EventType};

/// Bumped when the index layout changes; a mismatch triggers a rebuild from the journal.
/// 4: records are referred to with their journal (one journal per writing process).
const FORMAT_VERSION: u32 = 4;
/// Followed by a journal id: the position up to which that journal is applied.
const APPLIED_PREFIX: &[u8] = b"applied/";
const KEY_FORMAT: &[u8] = b"format";

/// Where an event's record is: its journal and its place there (36 bytes in the index).
fn record_bytes(journal: JournalId, record: RecordRef) -> [u8; 36] {
    let mut out = [0u8; 36];
    out[..16].copy_from_slice(&journal.to_bytes());
    out[16..].copy_from_slice(&record.to_bytes());
    out
}

fn record_from_bytes(bytes: &[u8]) -> Option<(JournalId, RecordRef)> {
    if bytes.len() != 36 {
        return None;
    }
    Some((
        JournalId::from_bytes(&bytes[..16])?,
        RecordRef::from_bytes(&bytes[16..])?,
    ))
}

fn applied_key(journal: JournalId) -> Vec<u8> {
    [APPLIED_PREFIX, &journal.to_bytes()[..]].concat()
}

/// Which events a query wants; empty fields match everything.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only this session.
    pub session: Option<String>,
    /// Only this tool.
    pub tool: Option<String>,
    /// Only this user.
    pub user: Option<String>,
    /// Only this event type.
    pub event_type: Option<EventType>,
}

impl Filter {
    /// Whether an event passes every set field.
    pub fn matches(&self, e: &AuditEvent) -> bool {
        self.session.as_ref().is_none_or(|s| *s == e.session_id)
            && self
                .tool
                .as_ref()
                .is_none_or(|t| Some(t) == e.tool_name.as_ref())
            && self.user.as_ref().is_none_or(|u| *u == e.user_id)
            && self.event_type.is_none_or(|t| t == e.event_type)
    }
}

/// The fields an index entry needs, read without decoding the whole event.
#[derive(Deserialize)]
struct Keys<'a> {
    event_id: EventId,
    event_type: EventType,
    #[serde(borrow)]
    user_id: Cow<'a, str>,
    #[serde(borrow, default)]
    tool_name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    session_id: Cow<'a, str>,
    #[serde(default)]
    linked_event_id: Option<EventId>,
}

/// Index entries staged from journal records ([`Index::stage`]) and not yet written
/// ([`Index::write`]).
#[derive(Default)]
pub struct Pending {
    events: sled::Batch,
    by_session: sled::Batch,
    by_tool: sled::Batch,
    by_user: sled::Batch,
    /// Access event key -> its first end's key.
    links: std::collections::HashMap<[u8; 16], [u8; 16]>,
    staged: usize,
}

impl Pending {
    /// Whether nothing is staged.
    pub fn is_empty(&self) -> bool {
        self.staged == 0
    }
}

/// The sled database holding events (by id) and secondary indexes.
pub struct Index {
    path: PathBuf,
    journal_root: PathBuf,
    db: sled::Db,
    events: sled::Tree,
    by_session: sled::Tree,
    by_tool: sled::Tree,
    by_user: sled::Tree,
    links: sled::Tree,
    meta: sled::Tree,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index").field("path", &self.path).finish()
    }
}

fn secondary_key(value: &str, id: EventId) -> Vec<u8> {
    let mut key = Vec::with_capacity(4 + value.len() + 16);
    key.extend_from_slice(&(value.len() as u32).to_be_bytes());
    key.extend_from_slice(value.as_bytes());
    key.extend_from_slice(&id.to_key());
    key
}

fn secondary_prefix(value: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(4 + value.len());
    key.extend_from_slice(&(value.len() as u32).to_be_bytes());
    key.extend_from_slice(value.as_bytes());
    key
}

impl Index {
    /// Opens (or creates) the index at `path`, for the journals under `journal_root`. Only the
    /// process holding the store's index lock may (sled allows one process).
    pub fn open(path: &Path, journal_root: &Path) -> Result<Index, StoreError> {
        let err = |source| StoreError::Index {
            path: path.to_path_buf(),
            source,
        };
        let db = sled::Config::new()
            .path(path)
            .mode(sled::Mode::HighThroughput)
            // No timed background flushes competing with the calls: the journal is the durable
            // record, the index is flushed when the indexer stops and caught up on start.
            .flush_every_ms(None)
            .open()
            .map_err(err)?;
        let tree = |name: &str| db.open_tree(name).map_err(err);
        Ok(Index {
            events: tree("events")?,
            by_session: tree("by_session")?,
            by_tool: tree("by_tool")?,
            by_user: tree("by_user")?,
            links: tree("links")?,
            meta: tree("meta")?,
            db,
            path: path.to_path_buf(),
            journal_root: journal_root.to_path_buf(),
        })
    }

    fn err(&self, source: sled::Error) -> StoreError {
        StoreError::Index {
            path: self.path.clone(),
            source,
        }
    }

    /// Whether this index was written by this layout version (an empty index counts as fresh).
    pub fn format_ok(&self) -> Result<bool, StoreError> {
        match self.meta.get(KEY_FORMAT).map_err(|e| self.err(e))? {
            Some(v) => Ok(v.as_ref() == FORMAT_VERSION.to_be_bytes()),
            None => Ok(self.events.is_empty()),
        }
    }

    /// The position up to which `journal`'s records are applied, as last saved.
    pub fn applied(&self, journal: JournalId) -> Result<Option<JournalPos>, StoreError> {
        Ok(self
            .meta
            .get(applied_key(journal))
            .map_err(|e| self.err(e))?
            .and_then(|v| JournalPos::from_bytes(&v)))
    }

    /// Every journal the index has applied records of, with its saved position.
    pub fn positions(&self) -> Result<Vec<(JournalId, JournalPos)>, StoreError> {
        let mut out = Vec::new();
        for kv in self.meta.scan_prefix(APPLIED_PREFIX) {
            let (k, v) = kv.map_err(|e| self.err(e))?;
            if let (Some(id), Some(pos)) = (
                JournalId::from_bytes(&k[APPLIED_PREFIX.len()..]),
                JournalPos::from_bytes(&v),
            ) {
                out.push((id, pos));
            }
        }
        Ok(out)
    }

    /// Stages the index entries of one record (event JSON) of `journal` that ends at `end`;
    /// [`Index::write`] writes them.
    pub fn stage(
        &self,
        pending: &mut Pending,
        journal: JournalId,
        end: JournalPos,
        payload: &[u8],
    ) -> Result<(), StoreError> {
        let keys: Keys = serde_json::from_slice(payload)
            .map_err(|source| StoreError::Decode { at: end, source })?;
        let id = keys.event_id;
        let record = RecordRef::ending_at(end, payload.len());
        let empty: &[u8] = &[];
        pending
            .events
            .insert(&id.to_key(), &record_bytes(journal, record)[..]);
        pending
            .by_session
            .insert(secondary_key(&keys.session_id, id), empty);
        pending
            .by_user
            .insert(secondary_key(&keys.user_id, id), empty);
        if let Some(tool) = &keys.tool_name {
            pending.by_tool.insert(secondary_key(tool, id), empty);
        }
        // The journal is append-only, so an access event is written before its end exists;
        // the index keeps the link from the access side too and applies it when reading.
        // The first end is the pair's end; a later one (a late answer) links back on its own.
        // (The indexer is the index's only writer, so "absent from the tree and from this
        // batch" is what a compare-and-swap from nothing checked record by record.)
        if keys.event_type != EventType::ToolAccess
            && let Some(access_id) = keys.linked_event_id
        {
            let access = access_id.to_key();
            if !pending.links.contains_key(&access)
                && self.links.get(access).map_err(|e| self.err(e))?.is_none()
            {
                pending.links.insert(access, id.to_key());
            }
        }
        pending.staged += 1;
        Ok(())
    }

    /// Writes the staged entries: one batch per tree, instead of one insert per entry.
    pub fn write(&self, pending: Pending) -> Result<(), StoreError> {
        let Pending {
            events,
            by_session,
            by_tool,
            by_user,
            links,
            staged: _,
        } = pending;
        let mut link_batch = sled::Batch::default();
        for (access, end) in links {
            link_batch.insert(&access, &end);
        }
        for (tree, batch) in [
            (&self.events, events),
            (&self.by_session, by_session),
            (&self.by_tool, by_tool),
            (&self.by_user, by_user),
            (&self.links, link_batch),
        ] {
            tree.apply_batch(batch).map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    /// Remembers that every record of `journal` before `end` is applied. Only call it once
    /// those entries are flushed ([`Index::flush`]): a saved position must never be ahead of
    /// the entries that survive a crash.
    pub fn set_applied(&self, journal: JournalId, end: JournalPos) -> Result<(), StoreError> {
        self.meta
            .insert(applied_key(journal), &end.to_bytes())
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Marks the index as of this layout version (before anything is written to it).
    pub fn set_format(&self) -> Result<(), StoreError> {
        self.meta
            .insert(KEY_FORMAT, &FORMAT_VERSION.to_be_bytes())
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The newest events matching `filter`, newest first.
    pub fn newest(&self, limit: usize, filter: &Filter) -> Result<Vec<AuditEvent>, StoreError> {
        let ids: Box<dyn Iterator<Item = sled::Result<sled::IVec>>> =
            if let Some(s) = &filter.session {
                Box::new(self.ids_by(&self.by_session, s))
            } else if let Some(t) = &filter.tool {
                Box::new(self.ids_by(&self.by_tool, t))
            } else if let Some(u) = &filter.user {
                Box::new(self.ids_by(&self.by_user, u))
            } else {
                Box::new(self.events.iter().keys().rev())
            };
        let mut out = Vec::new();
        for key in ids {
            if out.len() >= limit {
                break;
            }
            let key = key.map_err(|e| self.err(e))?;
            let Some(id) = EventId::from_key(&key) else {
                continue;
            };
            if let Some(event) = self.get(id)?
                && filter.matches(&event)
            {
                out.push(event);
            }
        }
        Ok(out)
    }

    fn ids_by(
        &self,
        tree: &sled::Tree,
        value: &str,
    ) -> impl Iterator<Item = sled::Result<sled::IVec>> + use<> {
        let prefix_len = 4 + value.len();
        tree.scan_prefix(secondary_prefix(value))
            .keys()
            .rev()
            .map(move |k| k.map(|k| sled::IVec::from(&k[prefix_len..])))
    }

    /// One event by id.
    pub fn get(&self, id: EventId) -> Result<Option<AuditEvent>, StoreError> {
        let Some(at) = self.events.get(id.to_key()).map_err(|e| self.err(e))? else {
            return Ok(None);
        };
        let (journal, record) = record_from_bytes(&at).ok_or(StoreError::BadIndexEntry { id })?;
        let payload = journal::read_record(&journal.dir(&self.journal_root), record)?;
        let mut event: AuditEvent =
            serde_json::from_slice(&payload).map_err(|source| StoreError::Decode {
                at: record.end(),
                source,
            })?;
        if event.event_id != id {
            return Err(StoreError::BadIndexEntry { id });
        }
        if event.linked_event_id.is_none()
            && let Some(end) = self.links.get(id.to_key()).map_err(|e| self.err(e))?
        {
            event.linked_event_id = EventId::from_key(&end);
        }
        Ok(Some(event))
    }

    /// Number of events indexed.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether no event is indexed.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Writes sled's buffers to disk (sled also does this on its own every 500 ms).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map(|_| ()).map_err(|e| self.err(e))
    }
}
