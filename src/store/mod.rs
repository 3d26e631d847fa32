//! The embedded store: journals are the durable record, sled the index for queries. Several
//! processes (wrappers started by one MCP client, a gateway beside them, queries) use one store
//! at once; none waits on another to make its events durable.
//!
//! # Layout of `audit.store_dir`
//!
//! ```text
//! store.json                 the marker: a store, and of which layout version ([`marker`]);
//!                            written when a proxy first opens the folder
//! LOCK                       held shared by every process of this version (an older version
//!                            holds it exclusively: the two never run on one store together)
//! journal/<ULID>/            one journal per writing process (the ULID is made at its start):
//!   LOCK                     held by that process while it may append, and by nobody after
//!   NNN…N.journal            segments (see [`journal`]); NNN.journal.torn-OFFSET: cut tails
//!   checkpoints              signed statements of the journal's chain head (see [`checkpoint`])
//!   purges                   signed statements of what retention removed: each cut's seqs
//!                            and boundary hashes (see [`retention`])
//!   NNN.journal.rewrite      a segment being rewritten by retention (renamed over NNN.journal)
//!   SETTLING, SETTLED        once its writer has stopped: which later journals began ending
//!                            the calls it left open, and that they are ended (see [`settle`])
//!   spans                    each closed segment's earliest and latest event time, so that
//!                            an export by time reads only its segments (see [`spans`]; a hint
//!                            that `verify` checks)
//! journal/NNN…N.journal      the legacy journal (stores written by one process at a time):
//!                            read like any other, never appended to again
//! index/                     sled: event id → (journal, segment, offset, length) and a few
//!                            bytes of its fields, in chunks of up to a second of events;
//!                            posting lists by user, tool, session, type, risk level,
//!                            compliance tag, result and upstream (see [`index`]); the
//!                            access→end links; per journal the position applied up to
//! index.replaced*/           an index moved aside when rebuilt, with REBUILT: when and why
//!                            (`journals_lost`: a journal or segments it had read are gone;
//!                            `verify` reports it)
//! index.lock                 held by the index holder, the one process that has sled open
//! index.sock                 where the index holder answers queries (see [`serve`]); a
//!                            file left by a killed holder is refused, then replaced
//! keys/<SHA-256>.key         one key per user for the personal fields of their events (see
//!                            [`personal`]); removed by `erase --user`
//! ```
//!
//! # Who holds what
//!
//! * Every writer (`stdio`, `gateway`) appends only to its own journal, made at start under a
//!   hidden name, locked, then renamed into view. Its durability (`fdatasync` per batch, before
//!   the ack in `sync` mode) involves no other process and no other lock: a stopped, stalled or
//!   killed process cannot hold up another's writes. Nobody appends to another's journal.
//! * The index lock is taken by whichever process asks first: a writer's indexer thread (at
//!   start, in the background so that the proxy serves at once; then every second while it
//!   does not hold it), or a query command. The holder catches the index up with *all*
//!   journals ([`IndexHolder::catch_up`]); when it exits or is killed the lock is free, and the
//!   next taker opens sled (which recovers) and catches up from the positions saved in it.
//! * A visible journal whose `LOCK` is free belongs to a process that has stopped: it can never
//!   grow again. A writer or `reindex` holding the index cuts its torn tail (saved aside, as a
//!   writer's own restart did before) and reads it to its end once. Queries change no journal:
//!   they stop before a torn tail, as they stop before a record being written.
//!
//! # Exactly once
//!
//! A record is in one journal, once: each event is appended by one writer, once. The index
//! keys its event entries by event id, so applying a record again writes the same keys and
//! values (the access→end link keeps the first end, which is the same one again); a posting
//! list may then hold an id twice, and a query's merge returns it once: re-applying is
//! harmless. The holder stages entries in memory for up to a second and writes them before
//! each save. What must not happen is skipping: the holder saves a journal's position only
//! after writing and flushing the entries before it ([`IndexHolder::persist`]), so after any crash (of the
//! holder, between a journal append and the index update, or mid-flush) the saved position is
//! at or behind what the index holds, and the next holder re-applies from there. Only whole
//! records (length, CRC) are applied, and the index is never ahead of a journal (checked on
//! opening; it is rebuilt if it is).
//!
//! # What a query sees
//!
//! `events` first asks the index holder over `index.sock` ([`serve`]): the holder catches the
//! index up with every journal and answers from it, sparing the query the opening of sled
//! (which grows with the index). When no holder answers, `events` takes the index when it is
//! free, catches it up with every journal and reads it: every whole record written before it
//! started, either way. A filtered query reads only what it returns
//! ([`query`]): the most selective filter's posting lists, newest first, within the time range
//! as ULID bounds, every other filter checked on the index entry, the journal read only for
//! events returned, stopping at the limit. When another process holds the index, it reads the
//! journals directly (newest segments first, every filter applied to each event, up to the
//! limit per journal and no further back than `--since`, then the newest by event id across
//! journals): the same events, slower, without waiting for the holder, and never refused
//! because writers run. An event being written while the query reads is seen or not, never
//! half. Event ids (ULIDs) order events by time across processes.
//!
//! A long range read whole (the calls of a month for `anomalies` and `report`) is read by
//! [`scan`] instead: each journal front to back, segments outside the range skipped by their
//! spans, only a call's fields decoded, without the index.
//!
//! `events --follow` ([`follow`]) tails every journal from its end, and journals that appear
//! later from their start, without any lock: any writer's new events, as they land.
//!
//! # Tamper evidence
//!
//! One writer per journal makes a journal a linear history no other process touches, so the
//! hash chain runs per journal without any coordination: each record is canonical JSON with its
//! `seq` and the SHA-256 of the record before ([`chain`], the record contract), sealed by the
//! writer thread as it appends ([`Journal::append`]); the writer signs checkpoints of the
//! durable head beside the segments ([`checkpoint`]); `verify` walks each journal on its own,
//! then checks the index through its lookups ([`verify`]); `export` writes a time range that
//! verifies elsewhere with only the public key ([`export`]). A new process starts a new journal
//! and so a new chain; the chain runs on across the segments of its journal. Journals of
//! earlier versions (format 1) are read as before and reported as unchained.
//!
//! How the later items fit this format:
//!
//! * Retention (issue 9 item 6, [`retention`]) removes whole segments, rewrites segments
//!   without their expired records, and removes whole journals of stopped writers, never the
//!   segment a running writer appends to. Before removing anything it appends a signed
//!   statement to that journal's `purges` file (`"type":"mcp-audit-proxy/purge/1"`: per cut,
//!   the first and last `seq` removed, the `previous_hash` the first carried and the hash of
//!   the last): `verify` bridges exactly those gaps, anchored to the signed boundary hashes
//!   (as a log rotation is), and still reports every other gap as deleted. It runs under the
//!   index lock and drops the purged events from the index before removing their records.
//! * Erasure (item 7, done: [`personal`]) stores the personal fields of an event encrypted per
//!   user (XChaCha20-Poly1305, the user's key in `keys/`) before the record is chained, so the
//!   hash covers the ciphertext; destroying the user's key makes the fields unreadable and
//!   changes no stored byte, so every hash, link, checkpoint and export still verifies, and the
//!   skeleton (time, type, tool, result, risk, tags, ids, links) stays readable.
//!   `export --since --until` writes the records as stored (personal fields encrypted).
//! * Scale (item 9): `verify` reads each segment once, hashes each record once and decodes
//!   only its chain members (`seq`, `previous_hash`, `event_id`), journals independently (so
//!   in parallel when needed); the index check is the slow part and can be left out
//!   (`--no-index`).
//!
//! # Personal data (GDPR Art. 17 erasure, Art. 20 portability)
//!
//! Who holds what, for the keys: every writer reads a user's key from `keys/` the first time
//! it meets that user, or makes it there: written to a hidden file, synced, then linked to its
//! name (a link never replaces an existing file, so when two writers meet a new user at once
//! the first key wins and the other reads it), the folder synced, all before the first record
//! that uses it is appended. Keys never change once made, so writers share them without
//! locks; a writer looks at each user's key file once per batch (its inode), so an erasure by
//! `erase` (another process) is seen at the writer's next batch and the user's later events
//! get a new key and pseudonym. Readers load every key once and again when they meet a
//! pseudonym they do not hold and the folder has changed. The index keys users by their
//! pseudonym (`user_id` as stored), so it holds no name; a query by name looks up the name's
//! pseudonym in `keys/` and asks for both (the name matches events stored in clear).
//! The list of personal fields, and why each is one, is in [`personal`].
//!
//! # Room for what comes next
//!
//! Retention removes whole segments, or whole journals of stopped writers, once the index has
//! forgotten them (a saved position of a journal that is gone would make the index look
//! damaged and be rebuilt, so retention forgets it too).
//! A writer killed while making its journal leaves a hidden `journal/.new-<ULID>/`, ignored.

pub mod canonical;
pub mod canonical_ser;
pub mod chain;
pub mod checkpoint;
mod erasures;
pub mod export;
pub mod follow;
pub mod handoff;
pub mod holder;
pub mod index;
pub mod journal;
pub mod journals;
pub mod marker;
pub mod personal;
pub mod query;
pub mod retention;
pub mod scan;
pub mod serve;
pub mod settle;
pub mod spans;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_query;
#[cfg(test)]
pub(crate) mod trail_tests;
pub mod usage;
pub mod verify;

use std::fs::{self, File};
use std::path::{Path, PathBuf};

pub(crate) use erasures::{erased_by, subject_hex};
pub use follow::Follower;
pub use holder::{CatchUpAll, IndexHolder, IndexKeeper};
pub use index::Index;
pub use journal::{Damage, Journal, JournalPos, Recovery, TornTail};
pub use journals::JournalId;
pub use marker::Access;
pub use query::Filter;
pub use scan::{ScanReport, calls as scan_calls};

use crate::audit::event::AuditEvent;

/// A store operation that failed; says which file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A filesystem operation failed.
    #[error("cannot {op} {}: {source}{}", path.display(), io_hint(source))]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which file or folder.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A process of an older version (one process per store) holds the store.
    #[error("the audit store {} is in use by an older mcp-audit-proxy that allows only one process per store\n  hint: stop that process (or upgrade it), or give this one its own audit.store_dir", path.display())]
    Locked {
        /// The store folder.
        path: PathBuf,
    },
    /// Another process holds the index, so it cannot be rebuilt now.
    #[error("the audit index of {} is held by another mcp-audit-proxy process, which keeps it caught up with the journals\n  hint: `reindex` rebuilds it only while no proxy or query holds it; stop the proxies writing to this store, then run it again", path.display())]
    IndexBusy {
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
    #[error("audit index {}: {source}\n  hint: run `mcp-audit-proxy reindex` to rebuild it from the journals", path.display())]
    Index {
        /// The index folder.
        path: PathBuf,
        /// The sled error.
        source: sled::Error,
    },
    /// The index could not be opened for a reason outside it (a full disk, a quota, no
    /// permission, a read-only file system): it is left as it is, not rebuilt.
    #[error("audit index {}: cannot be opened here: {source}\n  hint: free space or fix the permissions of the store folder and run the command again; the index is not damaged and was left as it is", path.display())]
    IndexUnavailable {
        /// The index folder.
        path: PathBuf,
        /// What the file system said.
        source: std::io::Error,
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
    /// A record does not link to the one before it (`export`): one of them was edited.
    #[error("the hash chain of journal {journal} breaks at seq {seq} ({} offset {offset}): the record before it, or this one, was edited; nothing was exported or signed\n  hint: run `mcp-audit-proxy verify` to see what was changed, and keep a copy of the store: it is evidence", path.display())]
    ChainBroken {
        /// The journal.
        journal: String,
        /// The record's `seq`.
        seq: u64,
        /// The segment file.
        path: PathBuf,
        /// The record's offset.
        offset: u64,
    },
    /// The index points at a journal record that is not there or not whole.
    #[error("journal record at {} offset {offset} is unreadable ({reason})\n  hint: the journal was changed or damaged after it was indexed: keep a copy of the store (it is evidence) and run `mcp-audit-proxy verify` to see what; `mcp-audit-proxy reindex` then rebuilds the index from what can be read, and `events` no longer shows the records that cannot", path.display())]
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
        "the audit index entry of event {id} does not match the journal\n  hint: the journal or the index was changed: keep a copy of the store (it is evidence) and run `mcp-audit-proxy verify` to see which; `mcp-audit-proxy reindex` then rebuilds the index from the journals"
    )]
    BadIndexEntry {
        /// The event.
        id: crate::audit::event::EventId,
    },
    /// A journal segment written by a newer version of the record format.
    #[error("{} is a journal segment of format {found}, newer than this mcp-audit-proxy (format {}) can read\n  hint: run the newer mcp-audit-proxy that wrote it, or upgrade this one; if no newer version ever wrote to this store, its header was changed or damaged: keep a copy of the store (it is evidence); the file was left untouched", path.display(), journal::FORMAT)]
    NewerFormat {
        /// The segment file.
        path: PathBuf,
        /// Its format digit.
        found: u8,
    },
    /// An event could not be made into a chained record.
    #[error("cannot append to the audit journal {}: {source}", path.display())]
    Seal {
        /// The journal folder.
        path: PathBuf,
        /// Why.
        source: chain::SealError,
    },
    /// An export would start a journal past record 0 with nothing before it in the range
    /// and no retention purge explaining the records before: they were removed, and the
    /// export file could not show it.
    #[error("journal {journal} begins at record {first_seq}: records 0 to {} are gone, and no retention purge removed them (a deletion, or a damaged store); an export would hide that, so none was written\n  hint: run `mcp-audit-proxy verify` to see what is missing; export a range that begins after record {first_seq}'s time to export the rest", first_seq - 1)]
    MissingStart {
        /// The journal.
        journal: String,
        /// Its first record's sequence number.
        first_seq: u64,
    },
    /// `audit.store_dir` names a file, not a folder.
    #[error("the audit store {} is a file, not a folder\n  hint: point audit.store_dir at a folder (a new or empty one makes a new store); the file was left untouched", path.display())]
    NotAFolder {
        /// The path.
        path: PathBuf,
    },
    /// `audit.store_dir` names a folder of other files, with no store marker in it.
    #[error("{} is not an mcp-audit-proxy store: it holds {entries} entries ({}) and no {} marker\n  hint: point audit.store_dir at a new or empty folder, or at an existing store; nothing in this folder was changed", path.display(), named.join(", "), marker::MARKER)]
    Foreign {
        /// The folder.
        path: PathBuf,
        /// How many entries it holds.
        entries: usize,
        /// The first few of them, sorted.
        named: Vec<String>,
    },
    /// The store marker is not one this version wrote.
    #[error("{} is not a valid mcp-audit-proxy store marker ({why})\n  hint: if this folder is an audit store, restore the marker from a backup (or remove it: it is written again from the journals' folder); otherwise point audit.store_dir elsewhere", path.display())]
    BadMarker {
        /// The marker file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// A store of a newer layout than this version reads.
    #[error("the audit store {} has layout version {found}{}, newer than this mcp-audit-proxy reads (version {})\n  hint: run the newer mcp-audit-proxy on it, or give this one another audit.store_dir; the store was left untouched", path.display(), created_by.as_ref().map(|c| format!(" (written by {c})")).unwrap_or_default(), marker::STORE_VERSION)]
    NewerStore {
        /// The store folder.
        path: PathBuf,
        /// Its layout version.
        found: u64,
        /// The release that made it, as its marker says.
        created_by: Option<String>,
    },
    /// Nothing can be written in the store folder.
    #[error("cannot write in the audit store {}: {source}\n  hint: give audit.store_dir a folder this user can write, on a file system mounted read-write with free space (check its permissions, `chattr -i`, and the mount's options)", path.display())]
    Unwritable {
        /// The store folder.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Personal fields could not be sealed or opened, or a user key not be made or destroyed.
    #[error(transparent)]
    Personal(#[from] personal::PersonalError),
    /// An event too large for one record.
    #[error("an audit event of {bytes} bytes does not fit a journal record")]
    RecordSize {
        /// The event's size.
        bytes: usize,
    },
}

/// What to do about a failed filesystem operation, from its kind (empty when nothing general
/// applies).
fn io_hint(e: &std::io::Error) -> &'static str {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::StorageFull | ErrorKind::QuotaExceeded => {
            "\n  hint: the disk of the audit store is full; free space there or move audit.store_dir (with audit.on_store_failure = \"block\", calls are refused until it can write again)"
        }
        ErrorKind::ReadOnlyFilesystem | ErrorKind::PermissionDenied => {
            "\n  hint: the audit store must be writable by this user; check the folder's permissions, `chattr -i`, and the mount's options"
        }
        ErrorKind::NotADirectory => {
            "\n  hint: a file stands where the store expects a folder; point audit.store_dir at a store folder"
        }
        _ => "",
    }
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
    /// Torn tails of stopped writers' journals that recovery cut off.
    pub torn: Vec<TornTail>,
    /// Why the index was rebuilt from scratch, if it was.
    pub rebuilt: Option<String>,
    /// The same, when the index was rebuilt because whole files it had read are gone (a
    /// journal, or segments of one).
    pub lost: Option<String>,
    /// Records applied to the index while catching up.
    pub caught_up: usize,
    /// The catch-up ran out of the time it was given, with records left for later rounds.
    pub behind: bool,
    /// Damaged journal segments (records there could not be indexed).
    pub damaged: Vec<Damage>,
    /// Events in the index after opening (0 when another process holds it).
    pub indexed: usize,
    /// Journals that could not be indexed (the others were).
    pub errors: Vec<StoreError>,
}

/// A writer's view of the store: its own journal, and the index if it could take it.
#[derive(Debug)]
pub struct Store {
    /// This process's own journal, positioned for appending (its lock released on drop).
    pub journal: Journal,
    /// Its id.
    pub id: JournalId,
    /// The index, caught up with every journal, if no other process held it.
    pub index: Option<IndexHolder>,
    /// The store lock (shared); released on drop.
    lock: StoreLock,
}

/// Holds the store's `LOCK` (shared among processes of this version); dropped last.
#[derive(Debug)]
pub struct StoreLock(#[allow(dead_code)] File);

impl Store {
    /// Splits the store for the writer threads; keep the lock until they have finished.
    pub fn into_parts(self, root: &Path) -> (Journal, IndexKeeper, StoreLock) {
        let keeper = IndexKeeper::new(root, self.id, self.index);
        (self.journal, keeper, self.lock)
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
    /// The folder of the journals (and of the legacy journal's segments).
    pub fn journal(&self) -> PathBuf {
        self.root.join("journal")
    }
    /// The sled folder.
    pub fn index(&self) -> PathBuf {
        self.root.join("index")
    }
    /// The users' keys for personal fields ([`personal`]).
    pub fn keys(&self) -> PathBuf {
        self.root.join("keys")
    }
    /// The lock of the index holder.
    pub fn index_lock(&self) -> PathBuf {
        self.root.join("index.lock")
    }
    fn lock(&self) -> PathBuf {
        self.root.join("LOCK")
    }
}

/// Takes the lock file at `path` (made if missing) without waiting, shared or exclusive;
/// `Ok(None)` if another process holds it in a conflicting way.
pub(crate) fn try_lock_file(path: &Path, shared: bool) -> Result<Option<File>, StoreError> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| StoreError::io("open", path, e))?;
    let locked = if shared {
        file.try_lock_shared()
    } else {
        file.try_lock()
    };
    match locked {
        Ok(()) => Ok(Some(file)),
        Err(fs::TryLockError::WouldBlock) => Ok(None),
        Err(fs::TryLockError::Error(e)) => Err(StoreError::io("lock", path, e)),
    }
}

/// Checks the folder is a store this version may use ([`marker::check`]; for writing, made
/// with its marker when missing), then takes the store's `LOCK` shared: refused only while an
/// older, one-process version runs.
fn store_lock(paths: &StorePaths, access: Access) -> Result<Option<StoreLock>, StoreError> {
    marker::check(&paths.root, access)?;
    Ok(try_lock_file(&paths.lock(), true)?.map(StoreLock))
}

impl Store {
    /// Opens the store for writing: a new journal of this process's own, and the index if no
    /// other process holds it (then caught up with every journal, stopped writers' torn tails
    /// cut). A failure of the index is logged, not fatal: the journal is what must work.
    pub fn open(root: &Path, segment_bytes: u64) -> Result<(Store, OpenReport), StoreError> {
        Store::open_with_index(root, segment_bytes, true)
    }

    /// Opens the store for writing without touching the index: what a proxy does, so that it
    /// serves at once however far behind the index is (its indexer thread takes the index in
    /// the background, see [`IndexKeeper`]).
    pub fn open_journal(root: &Path, segment_bytes: u64) -> Result<Store, StoreError> {
        Ok(Store::open_with_index(root, segment_bytes, false)?.0)
    }

    fn open_with_index(
        root: &Path,
        segment_bytes: u64,
        take_index: bool,
    ) -> Result<(Store, OpenReport), StoreError> {
        let paths = &StorePaths::new(root);
        let lock = store_lock(paths, Access::Write)?.ok_or_else(|| StoreError::Locked {
            path: root.to_path_buf(),
        })?;
        let (id, journal) = journals::create(&paths.journal(), segment_bytes)?;
        if !take_index {
            return Ok((
                Store {
                    journal,
                    id,
                    index: None,
                    lock,
                },
                OpenReport::default(),
            ));
        }
        let (index, report) = match IndexHolder::take(paths, Some(id), true, false) {
            Ok(Some((holder, report))) => (Some(holder), report),
            Ok(None) => (None, OpenReport::default()),
            Err(e) => {
                tracing::error!(error = %e, "cannot open the audit index; events are journaled and will be indexed once it opens");
                (None, OpenReport::default())
            }
        };
        Ok((
            Store {
                journal,
                id,
                index,
                lock,
            },
            report,
        ))
    }
}

/// Deletes the index and rebuilds it from every journal (the `reindex` command), cutting
/// stopped writers' torn tails; refused while another process holds the index.
pub fn reindex(root: &Path) -> Result<(IndexHolder, StoreLock, OpenReport), StoreError> {
    reindex_with(root, None)
}

/// [`reindex`], advancing `progress` by the bytes of the records applied.
pub fn reindex_with(
    root: &Path,
    progress: Option<indicatif::ProgressBar>,
) -> Result<(IndexHolder, StoreLock, OpenReport), StoreError> {
    let paths = &StorePaths::new(root);
    let lock = store_lock(paths, Access::Write)?.ok_or_else(|| StoreError::Locked {
        path: root.to_path_buf(),
    })?;
    let (holder, report) = IndexHolder::take_with(paths, None, true, true, progress, None)?
        .ok_or_else(|| StoreError::IndexBusy {
            path: root.to_path_buf(),
        })?;
    Ok((holder, lock, report))
}

/// Takes the index for a query if it is free, caught up with every journal (which are left as
/// they are); `Ok(None)` when another process holds it, or when the store cannot be written
/// (read-only media): read the journals directly then ([`newest_from_journals`]).
pub fn open_for_query(
    root: &Path,
) -> Result<Option<(IndexHolder, StoreLock, OpenReport)>, StoreError> {
    let paths = &StorePaths::new(root);
    let lock = match store_lock(paths, Access::Read) {
        Ok(Some(lock)) => lock,
        Ok(None) => return Ok(None),
        // A store on read-only media (or a read-only mount) is still read: from the journals.
        Err(StoreError::Io { source, .. })
            if matches!(
                source.kind(),
                std::io::ErrorKind::ReadOnlyFilesystem | std::io::ErrorKind::PermissionDenied
            ) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    Ok(IndexHolder::take(paths, None, false, false)?.map(|(h, r)| (h, lock, r)))
}

/// Why this account cannot take the index of the store at `root` although no process may
/// hold it: the store cannot be written (read-only media or permissions), and the index
/// opens only for writing. `None` when it can be written (the index may still be held).
///
/// Why: without the index, a journal deleted or cut back after it was indexed cannot be
/// found (the journals hold no list of one another): a reader that cannot open it must say
/// so, not read "intact" or "compliant" into the journals alone (helper-116 H2).
pub fn write_denied(root: &Path) -> Option<String> {
    match store_lock(&StorePaths::new(root), Access::Read) {
        Err(StoreError::Io { source, .. })
            if matches!(
                source.kind(),
                std::io::ErrorKind::ReadOnlyFilesystem | std::io::ErrorKind::PermissionDenied
            ) =>
        {
            Some(source.to_string())
        }
        _ => None,
    }
}

/// What the store shows it has lost: records an index once held that the journals no longer
/// hold (a journal deleted, or cut back), one text each, empty when nothing is known lost.
///
/// Why: a query over the journals alone cannot see what is not there; a deleted journal read
/// as "no calls" (helper-94 F1). The index knows what it applied: when no process holds it,
/// it is taken and opened here (opening compares it with the journals and, on a loss, moves it
/// aside with a note, [`holder::REBUILT`]; the catch-up is left to later holders), then every
/// such note is read ([`verify::losses`], what `verify` reports). A loss that happened while
/// a running proxy holds the index is found when the index is next opened.
///
/// Errors: the notes of replaced indexes cannot be listed (an index that cannot be opened
/// is logged, not an error).
pub fn lost_records(root: &Path) -> Result<Vec<String>, StoreError> {
    let paths = &StorePaths::new(root);
    if let Ok(Some(_lock)) = store_lock(paths, Access::Read) {
        // The index is a way to find a loss, not what the caller reads: one that cannot be
        // opened or saved (a full disk) costs the check, not the command (review helper-97).
        let now = Some(std::time::Instant::now());
        match IndexHolder::take_with(paths, None, false, false, None, now) {
            Ok(Some((holder, report))) => {
                if let Some(reason) = &report.rebuilt {
                    tracing::warn!(reason = %reason, "audit index rebuilt from the journals");
                }
                if let Err(e) = holder.close() {
                    tracing::warn!(error = %e, "the audit index could not be saved");
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "the audit index could not be opened to check the journals against it: a loss it would find is not known")
            }
        }
    }
    verify::losses(root)
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

/// Reads the newest events straight from every journal of the store at `root` (for queries
/// while another process holds the index), newest first, at most `limit`.
pub fn newest_from_journals(
    root: &Path,
    limit: usize,
    filter: &Filter,
) -> Result<(Vec<AuditEvent>, Vec<Damage>), StoreError> {
    journals::newest(&StorePaths::new(root).journal(), limit, filter)
}

/// The bytes of journal segments of the store at `root` that may hold events at or after
/// `since` (by their time spans, [`spans`]; a segment without one counts whole): what
/// [`newest_from_journals`] reads at most for such a query. Missing files count nothing.
pub fn journal_bytes_since(root: &Path, since: std::time::SystemTime) -> Result<u64, StoreError> {
    let journal_root = StorePaths::new(root).journal();
    let mut total = 0;
    for id in journals::list(&journal_root)? {
        let dir = id.dir(&journal_root);
        let times = spans::read(&dir);
        for n in journal::list_segments(&dir)? {
            if times.get(&n).is_some_and(|s| s.max < since) {
                continue;
            }
            total += fs::metadata(journal::segment_path(&dir, n)).map_or(0, |m| m.len());
        }
    }
    Ok(total)
}

/// Finds event `id` and the other half of its pair by reading every journal of the store at
/// `root` (for `events show` while another process holds the index): `(event, pair)`.
pub fn find_in_journals(
    root: &Path,
    id: crate::audit::event::EventId,
) -> Result<(Option<AuditEvent>, Option<AuditEvent>), StoreError> {
    journals::find_pair(&StorePaths::new(root).journal(), id)
}
