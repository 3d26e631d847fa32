//! The embedded store: the journal is the durable record, sled the index for queries.
//!
//! Layout of `audit.store_dir`: `LOCK` (held by the one process that writes), `journal/`
//! (segment files) and `index/` (sled). Opening for writing recovers the journal's torn tail
//! and brings the index up to the journal, rebuilding it when it is damaged or ahead.

pub mod index;
pub mod journal;

use std::fs::{self, File};
use std::path::{Path, PathBuf};

pub use index::{Filter, Index};
pub use journal::{Damage, Journal, JournalPos, Recovery, TornTail};

use crate::audit::event::AuditEvent;

/// A store operation that failed; says which file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A filesystem operation failed.
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which file or folder.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Another process holds the store.
    #[error("the audit store {} is in use by another mcp-audit-proxy process\n  hint: give each proxy its own audit.store_dir, or stop the other process first", path.display())]
    Locked {
        /// The store folder.
        path: PathBuf,
    },
    /// A file in the journal folder is not a journal segment.
    #[error("{} is not an mcp-audit-proxy journal segment (bad header)\n  hint: move that file out of the journal folder; it was left untouched", path.display())]
    NotASegment {
        /// The file.
        path: PathBuf,
    },
    /// sled failed.
    #[error("audit index {}: {source}\n  hint: run `mcp-audit-proxy reindex` to rebuild it from the journal", path.display())]
    Index {
        /// The index folder.
        path: PathBuf,
        /// The sled error.
        source: sled::Error,
    },
    /// A checksummed journal record does not hold an event.
    #[error("journal record ending at {at} is not a valid event: {source}")]
    Decode {
        /// Where the record ends.
        at: JournalPos,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// An event in the index is not valid event JSON.
    #[error(
        "event {id} in the audit index is not valid event JSON: {source}\n  hint: run `mcp-audit-proxy reindex` to rebuild the index from the journal"
    )]
    Corrupt {
        /// The event.
        id: crate::audit::event::EventId,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// The index points at a journal record that is not there or not whole.
    #[error("journal record at {} offset {offset} is unreadable ({reason})\n  hint: the journal was changed after it was indexed; run `mcp-audit-proxy reindex`", path.display())]
    BadRecord {
        /// The segment file.
        path: PathBuf,
        /// The record's offset.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// An index entry that does not lead to its event.
    #[error(
        "the audit index entry of event {id} does not match the journal\n  hint: run `mcp-audit-proxy reindex`"
    )]
    BadIndexEntry {
        /// The event.
        id: crate::audit::event::EventId,
    },
    /// An event too large for one record.
    #[error("an audit event of {bytes} bytes does not fit a journal record")]
    RecordSize {
        /// The event's size.
        bytes: usize,
    },
}

impl StoreError {
    pub(crate) fn io(op: &'static str, path: &Path, source: std::io::Error) -> StoreError {
        StoreError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// What opening the store found and did, for the log and for `reindex`.
#[derive(Debug, Default)]
pub struct OpenReport {
    /// The journal's torn tail that recovery cut off, if any.
    pub torn: Option<TornTail>,
    /// Why the index was rebuilt from scratch, if it was.
    pub rebuilt: Option<String>,
    /// Records applied to the index while catching up.
    pub caught_up: usize,
    /// Damaged journal segments (records there could not be indexed).
    pub damaged: Vec<Damage>,
    /// Events in the index after opening.
    pub indexed: usize,
}

/// An open store, owned by one process (the `LOCK` file is held while it lives).
#[derive(Debug)]
pub struct Store {
    /// The journal, positioned for appending.
    pub journal: Journal,
    /// The index, caught up with the journal.
    pub index: Index,
    /// The lock; released on drop.
    lock: StoreLock,
}

/// Holds the store's `LOCK` file; the store is free again when this is dropped.
#[derive(Debug)]
pub struct StoreLock(#[allow(dead_code)] File);

impl Store {
    /// Splits the store for the writer threads; keep the lock until they have finished.
    pub fn into_parts(self) -> (Journal, Index, StoreLock) {
        (self.journal, self.index, self.lock)
    }
}

/// The paths inside a store folder.
#[derive(Debug, Clone)]
pub struct StorePaths {
    /// The store folder.
    pub root: PathBuf,
}

impl StorePaths {
    /// Paths under `root`.
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
        }
    }
    /// The journal folder.
    pub fn journal(&self) -> PathBuf {
        self.root.join("journal")
    }
    /// The sled folder.
    pub fn index(&self) -> PathBuf {
        self.root.join("index")
    }
    fn lock(&self) -> PathBuf {
        self.root.join("LOCK")
    }
}

/// Takes the store's lock without waiting; `Ok(None)` if another process holds it.
fn try_lock(paths: &StorePaths) -> Result<Option<File>, StoreError> {
    fs::create_dir_all(&paths.root).map_err(|e| StoreError::io("create", &paths.root, e))?;
    let path = paths.lock();
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| StoreError::io("open", &path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(fs::TryLockError::WouldBlock) => Ok(None),
        Err(fs::TryLockError::Error(e)) => Err(StoreError::io("lock", &path, e)),
    }
}

impl Store {
    /// Opens the store for writing: lock, recover the journal, bring the index up to date.
    pub fn open(root: &Path, segment_bytes: u64) -> Result<(Store, OpenReport), StoreError> {
        Store::open_locked(root, segment_bytes, false)
    }

    /// Deletes the index and rebuilds it from the journal (the `reindex` command).
    pub fn reindex(root: &Path, segment_bytes: u64) -> Result<(Store, OpenReport), StoreError> {
        Store::open_locked(root, segment_bytes, true)
    }

    fn open_locked(
        root: &Path,
        segment_bytes: u64,
        force_rebuild: bool,
    ) -> Result<(Store, OpenReport), StoreError> {
        let paths = &StorePaths::new(root);
        let lock = try_lock(paths)?.ok_or_else(|| StoreError::Locked {
            path: root.to_path_buf(),
        })?;
        let mut report = OpenReport::default();
        let (journal, recovery) = Journal::open(&paths.journal(), segment_bytes)?;
        report.torn = recovery.torn;
        report.damaged = recovery.damaged;
        let index = open_index(paths, journal.end(), force_rebuild, &mut report)?;
        Ok((
            Store {
                journal,
                index,
                lock: StoreLock(lock),
            },
            report,
        ))
    }
}

/// Opens the index for queries without writing to the journal (no recovery: that is the
/// writer's job); `Ok(None)` when a proxy holds the store.
pub fn open_for_query(root: &Path) -> Result<Option<(Index, StoreLock, OpenReport)>, StoreError> {
    let paths = &StorePaths::new(root);
    let Some(lock) = try_lock(paths)? else {
        return Ok(None);
    };
    let mut report = OpenReport::default();
    let end = journal::end_of(&paths.journal())?;
    let index = open_index(paths, end, false, &mut report)?;
    Ok(Some((index, StoreLock(lock), report)))
}

/// Opens the index, rebuilding it when damaged, of another format or ahead of the journal
/// (which ends at `end`), and catches it up with the journal.
fn open_index(
    paths: &StorePaths,
    end: JournalPos,
    force_rebuild: bool,
    report: &mut OpenReport,
) -> Result<Index, StoreError> {
    let index_path = paths.index();
    let mut rebuild = force_rebuild.then(|| "requested (reindex)".to_string());
    let mut index = match Index::open(&index_path, &paths.journal()) {
        Ok(index) => Some(index),
        Err(e) => {
            rebuild = Some(format!("the index could not be opened: {e}"));
            None
        }
    };
    if rebuild.is_none()
        && let Some(ix) = &index
    {
        if !ix.format_ok()? {
            rebuild = Some("the index was written by another version".into());
        } else if ix.applied()?.is_some_and(|applied| applied > end) {
            rebuild = Some("the index is ahead of the journal".into());
        }
    }
    if let Some(reason) = &rebuild {
        drop(index.take());
        if index_path.exists() {
            if force_rebuild {
                fs::remove_dir_all(&index_path)
                    .map_err(|e| StoreError::io("remove", &index_path, e))?;
            } else {
                // Keep a damaged index for inspection instead of deleting evidence.
                let aside = unused_path(&paths.root, "index.replaced");
                fs::rename(&index_path, &aside)
                    .map_err(|e| StoreError::io("move aside", &index_path, e))?;
            }
        }
        tracing::warn!(reason = %reason, path = %index_path.display(), "rebuilding audit index from the journal");
    }
    let index = match index {
        Some(ix) => ix,
        None => Index::open(&index_path, &paths.journal())?,
    };
    report.rebuilt = rebuild;
    let from = index.applied()?.unwrap_or(JournalPos::START);
    if from < end {
        let done = catch_up(&paths.journal(), &index, from)?;
        for d in &done.damaged {
            if !report.damaged.contains(d) {
                report.damaged.push(d.clone());
            }
        }
        report.caught_up = done.applied;
        index.flush()?;
    }
    report.indexed = index.len();
    Ok(index)
}

/// `dir/name`, or `dir/name.N` for the first N that does not exist yet: evidence is never
/// overwritten.
pub(crate) fn unused_path(dir: &Path, name: &str) -> PathBuf {
    let first = dir.join(name);
    if !first.exists() {
        return first;
    }
    (1u32..)
        .map(|n| dir.join(format!("{name}.{n}")))
        .find(|p| !p.exists())
        .unwrap_or(first)
}

/// What one catch-up of the index with the journal did.
#[derive(Debug)]
pub struct CatchUp {
    /// Records applied.
    pub applied: usize,
    /// The journal position the index is now at.
    pub end: JournalPos,
    /// Damaged segments met on the way (their unreadable records are skipped).
    pub damaged: Vec<Damage>,
}

/// Applies the journal records after `from` to the index, in chunks; the one way the index is
/// fed, whether at start, by `reindex` or behind a running proxy.
pub fn catch_up(
    journal_dir: &Path,
    index: &Index,
    from: JournalPos,
) -> Result<CatchUp, StoreError> {
    let mut out = CatchUp {
        applied: 0,
        end: from,
        damaged: Vec::new(),
    };
    // Entries are written one batch per tree per chunk: one insert per entry made sled's
    // per-operation work most of the indexer's CPU, which the server and client share.
    let mut pending = index::Pending::default();
    let end = journal::read_from(
        journal_dir,
        from,
        |pos, payload| {
            if let Err(e) = index.stage(&mut pending, pos, payload) {
                // The records before an unreadable one are indexed, as they were one by one.
                index.write(std::mem::take(&mut pending))?;
                return Err(e);
            }
            out.applied += 1;
            if out.applied.is_multiple_of(1024) {
                index.write(std::mem::take(&mut pending))?;
                index.set_applied(pos)?;
            }
            Ok(())
        },
        |d| out.damaged.push(d),
    )?;
    if !pending.is_empty() {
        index.write(pending)?;
    }
    index.set_applied(end)?;
    out.end = end;
    Ok(out)
}

/// Reads the newest events straight from the journal (for queries while a proxy holds the
/// index), newest segment first, stopping once `limit` events match.
pub fn newest_from_journal(
    root: &Path,
    limit: usize,
    filter: &Filter,
) -> Result<(Vec<AuditEvent>, Vec<Damage>), StoreError> {
    let dir = StorePaths::new(root).journal();
    let segments = journal::list_segments(&dir)?;
    let mut out = Vec::new();
    // Newest first, an end event is met before its access event: its link is known in time.
    let mut links = std::collections::HashMap::new();
    let mut damaged = Vec::new();
    for (i, &n) in segments.iter().enumerate().rev() {
        if out.len() >= limit {
            break;
        }
        let mut events = Vec::new();
        journal::read_segment(
            &dir,
            n,
            journal::HEADER_LEN,
            i + 1 == segments.len(),
            |at, payload| {
                let event: AuditEvent = serde_json::from_slice(payload)
                    .map_err(|source| StoreError::Decode { at, source })?;
                events.push(event);
                Ok(())
            },
            |d| damaged.push(d),
        )?;
        for mut event in events.into_iter().rev() {
            if event.event_type != crate::audit::event::EventType::ToolAccess
                && let Some(access) = event.linked_event_id
            {
                links.insert(access, event.event_id);
            }
            if out.len() < limit && filter.matches(&event) {
                if event.linked_event_id.is_none() {
                    event.linked_event_id = links.get(&event.event_id).copied();
                }
                out.push(event);
            }
        }
    }
    Ok((out, damaged))
}
