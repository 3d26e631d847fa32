//! The index holder: the one process at a time that has the sled index open, and feeds it
//! from every journal of the store (see the module docs of [`super`] for the whole design).

use std::collections::HashMap;
use std::fs::{self, File};
use std::time::{Duration, Instant};

use super::index::{self, Index};
use super::journal::{self, Damage, JournalPos, TornTail, list_segments, segment_path};
use super::journals::{self, JournalId};
use super::{OpenReport, StoreError, StorePaths, try_lock_file, unused_path};

/// How often the holder makes the index durable and saves the journals' positions: a crash
/// costs at most this much re-applying (harmless: entries are keyed by event id).
const PERSIST_EVERY: Duration = Duration::from_secs(1);

/// What the holder knows of one journal.
#[derive(Debug, Clone, Copy)]
pub(super) struct Tracked {
    /// Every record before this is applied to the index (maybe not flushed yet).
    at: JournalPos,
    /// The position last saved in the index (after a flush of the entries before it).
    saved: Option<JournalPos>,
    /// Its writer has stopped and it is applied to its end: it will never change again.
    pub(super) finished: bool,
    /// `finished` is saved in the index, so later holders skip the journal.
    finished_saved: bool,
}

/// The sled index, held with the store's index lock: while this lives no other process opens
/// the index, and this one keeps it caught up with every journal ([`IndexHolder::catch_up`]).
pub struct IndexHolder {
    /// Declared before the lock: sled is closed before another process may open it.
    pub(super) index: Index,
    paths: StorePaths,
    /// This process's own journal, if it writes: never "dead", never recovered by itself.
    own: Option<JournalId>,
    /// Whether dead writers' torn tails are cut here (writers and `reindex`; not queries,
    /// which change no journal).
    recover: bool,
    pub(super) tracked: HashMap<JournalId, Tracked>,
    /// Stopped writers' journals whose torn tail this holder has cut: once is enough (a
    /// journal found stopped never grows again), and bounded rounds come back to a long one.
    recovered: std::collections::HashSet<JournalId>,
    pub(super) last_persist: Instant,
    /// Entries staged since the last write: written at the next [`IndexHolder::persist`] (or
    /// once [`index::WRITE_EVERY`] records are staged), so that a field value's ids of a
    /// whole second go into one posting. Nobody reads the index in between.
    pending: index::Pending,
    /// Advanced by the bytes of each record applied (`reindex` on a terminal); `None` for
    /// writers and queries.
    progress: Option<indicatif::ProgressBar>,
    _lock: File,
}

impl std::fmt::Debug for IndexHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndexHolder")
            .field("index", &self.index)
            .field("own", &self.own)
            .finish_non_exhaustive()
    }
}

impl std::ops::Deref for IndexHolder {
    type Target = Index;
    fn deref(&self) -> &Index {
        &self.index
    }
}

/// What one catch-up with every journal did.
#[derive(Debug, Default)]
pub struct CatchUpAll {
    /// Records applied.
    pub applied: usize,
    /// Torn tails of stopped writers' journals cut off (and saved aside).
    pub torn: Vec<TornTail>,
    /// Damaged segments met (their unreadable records are skipped).
    pub damaged: Vec<Damage>,
    /// Journals that could not be read (each tried again next time; the others went on).
    pub errors: Vec<StoreError>,
    /// The round ran out of its time with records left to apply (see
    /// [`IndexHolder::catch_up_until`]).
    pub more: bool,
}

impl IndexHolder {
    /// Takes the index if no other process holds it (`Ok(None)` if one does), opens it
    /// (rebuilding it when damaged, of another format or ahead of a journal) and catches it up
    /// with every journal.
    pub(crate) fn take(
        paths: &StorePaths,
        own: Option<JournalId>,
        recover: bool,
        force_rebuild: bool,
    ) -> Result<Option<(IndexHolder, OpenReport)>, StoreError> {
        IndexHolder::take_with(paths, own, recover, force_rebuild, None, None)
    }

    /// [`IndexHolder::take`], the first catch-up advancing `progress` (bytes of records read)
    /// and, given `until`, stopping then with the rest left for later rounds
    /// ([`IndexHolder::catch_up_until`]; `OpenReport::behind` says so).
    pub(crate) fn take_with(
        paths: &StorePaths,
        own: Option<JournalId>,
        recover: bool,
        force_rebuild: bool,
        progress: Option<indicatif::ProgressBar>,
        until: Option<Instant>,
    ) -> Result<Option<(IndexHolder, OpenReport)>, StoreError> {
        let Some(lock) = try_lock_file(&paths.index_lock(), false)? else {
            return Ok(None);
        };
        let mut report = OpenReport::default();
        let Some(index) = open_index(paths, force_rebuild, &mut report)? else {
            return Ok(None);
        };
        let mut holder = IndexHolder {
            index,
            paths: paths.clone(),
            own,
            recover,
            tracked: HashMap::new(),
            recovered: std::collections::HashSet::new(),
            last_persist: Instant::now(),
            pending: index::Pending::default(),
            progress,
            _lock: lock,
        };
        let done = holder.catch_up_until(until)?;
        holder.persist()?;
        if let Some(p) = holder.progress.take() {
            p.finish_and_clear();
        }
        report.torn = done.torn;
        report.damaged = done.damaged;
        report.errors = done.errors;
        report.caught_up = done.applied;
        report.behind = done.more;
        // sled counts entries one by one: only worth it for a rebuild's report.
        if report.rebuilt.is_some() {
            report.indexed = holder.index.len();
        }
        Ok(Some((holder, report)))
    }

    /// Applies every journal's new whole records to the index. A journal whose writer has
    /// stopped (its lock is free) is read to its end once, after its torn tail is cut off
    /// when this holder recovers, and then left alone.
    pub fn catch_up(&mut self) -> Result<CatchUpAll, StoreError> {
        self.catch_up_until(None)
    }

    /// [`IndexHolder::catch_up`], stopping at `until` (if given) with the rest left for the
    /// next call (`more` is then set). Why: the holder is shared with the query server under
    /// a mutex, and the indexer thread runs at the lowest priority; an unbounded round after
    /// a takeover (a dead holder's whole backlog) kept a query, or the writer's exit, waiting
    /// on a thread that a busy machine barely runs.
    pub fn catch_up_until(&mut self, until: Option<Instant>) -> Result<CatchUpAll, StoreError> {
        self.catch_up_round(until, None)
    }

    /// [`IndexHolder::catch_up_until`], taking this process's own journal's records from
    /// `handed` (the keys its writer handed on, [`super::handoff`]) where they follow the
    /// position applied, and reading that journal only when they leave a gap.
    pub(crate) fn catch_up_round(
        &mut self,
        until: Option<Instant>,
        handed: Option<&super::handoff::HandOff>,
    ) -> Result<CatchUpAll, StoreError> {
        let root = self.paths.journal();
        let mut out = CatchUpAll::default();
        for id in journals::list(&root)? {
            let tracked = match self.tracked.get(&id) {
                Some(t) => *t,
                None => {
                    let saved = self.index.applied(id)?;
                    let finished = saved.is_some() && self.index.finished(id)? == saved;
                    Tracked {
                        at: saved.unwrap_or(JournalPos::START),
                        saved,
                        finished,
                        finished_saved: finished,
                    }
                }
            };
            if tracked.finished {
                continue;
            }
            let mut tracked = tracked;
            if let Some(h) = handed.filter(|_| Some(id) == self.own) {
                match h.apply(&self.index, &mut self.pending, id, tracked.at, until) {
                    Ok(done) => {
                        out.applied += done.applied;
                        tracked.at = done.at;
                        // Staged: never staged again, even if reading the rest fails.
                        self.tracked.insert(id, tracked);
                        if done.more {
                            out.more = true;
                            break;
                        }
                        if !done.read {
                            continue;
                        }
                    }
                    Err(e) => {
                        out.errors.push(e);
                        continue;
                    }
                }
            }
            // The lock is checked before reading: a journal found stopped cannot grow after.
            let stopped = if !self.recover || Some(id) == self.own {
                None
            } else {
                match journals::try_lock(&root, id) {
                    Ok(lock) => lock,
                    Err(e) => {
                        out.errors.push(e);
                        continue;
                    }
                }
            };
            if stopped.is_some() && !self.recovered.contains(&id) {
                // Damage found here is reported when the records are read below.
                match journal::recover(&id.dir(&root)) {
                    Ok(r) => {
                        out.torn.extend(r.torn);
                        self.recovered.insert(id);
                    }
                    Err(e) => {
                        out.errors.push(e);
                        continue;
                    }
                }
            }
            let done = match catch_up_journal(
                &root,
                &self.index,
                &mut self.pending,
                id,
                tracked.at,
                self.progress.as_ref(),
                until,
            ) {
                Ok(done) => done,
                Err(e) => {
                    // The other journals go on; this one is tried again next time.
                    out.errors.push(e);
                    continue;
                }
            };
            out.applied += done.applied;
            out.damaged.extend(done.damaged);
            // Finished only at an end that is on disk: a journal seen finished that is later
            // shorter than this end is a deletion (`ahead`), so a position past a rolled-back
            // tail, or bytes still only in the page cache, must not be marked.
            let finished = stopped.is_some() && !done.more && durable_end(&root, id, done.end);
            self.tracked.insert(
                id,
                Tracked {
                    at: done.end,
                    finished,
                    ..tracked
                },
            );
            if done.more {
                out.more = true;
                break;
            }
        }
        if self.last_persist.elapsed() >= PERSIST_EVERY {
            self.persist()?;
        }
        Ok(out)
    }

    /// Marks the own journal finished at the position applied (saved by the next
    /// [`IndexHolder::persist`]), for its writer, once stopped whole ([`IndexKeeper::finish_own`]):
    /// only when that position is the journal's very end (its newest segment's length) and on
    /// disk. A position short of it (a last round that failed, and said so) is left unmarked:
    /// a finished journal is never read again, so its tail would stay out of the index.
    pub fn finish_own(&mut self) {
        let root = self.paths.journal();
        let Some(id) = self.own else { return };
        let dir = id.dir(&root);
        let at_end = |at: JournalPos| {
            list_segments(&dir).ok().and_then(|s| s.last().copied()) == Some(at.segment)
                && fs::metadata(segment_path(&dir, at.segment)).is_ok_and(|m| m.len() == at.offset)
        };
        if let Some(t) = self.tracked.get_mut(&id)
            && !t.finished
            && at_end(t.at)
            && durable_end(&root, id, t.at)
        {
            t.finished = true;
        }
    }

    /// Makes the applied entries durable, then saves each journal's position: a saved position
    /// is never ahead of the entries that survive a crash (they may be behind: re-applying is
    /// harmless).
    pub fn persist(&mut self) -> Result<(), StoreError> {
        self.last_persist = Instant::now();
        self.write_pending()?;
        let unsaved = |t: &Tracked| t.saved != Some(t.at) || (t.finished && !t.finished_saved);
        if !self.tracked.values().any(unsaved) {
            return Ok(());
        }
        self.index.flush()?;
        let mut newly_finished = Vec::new();
        for (id, t) in &mut self.tracked {
            if t.saved != Some(t.at) {
                self.index.set_applied(*id, t.at)?;
                t.saved = Some(t.at);
            }
            if t.finished && !t.finished_saved {
                newly_finished.push((*id, t.at));
            }
        }
        if !newly_finished.is_empty() {
            // The final positions first, durable; only then the mark that skips the journal.
            self.index.flush()?;
            for (id, end) in newly_finished {
                self.index.set_finished(id, end)?;
                if let Some(t) = self.tracked.get_mut(&id) {
                    t.finished_saved = true;
                }
            }
        }
        Ok(())
    }

    /// Writes the entries staged so far to the index (not yet flushed, no position saved): for
    /// reading the index in the process that holds it.
    pub fn write_pending(&mut self) -> Result<(), StoreError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.index.write(std::mem::take(&mut self.pending))
    }

    /// Saves everything and lets the index go (another process may take it at once).
    pub fn close(mut self) -> Result<(), StoreError> {
        self.persist()?;
        self.index.flush()
    }

    /// The store's journal folder.
    pub(crate) fn journal_root(&self) -> std::path::PathBuf {
        self.paths.journal()
    }

    /// After retention changed journal `id` ([`super::retention`]): its applied positions
    /// (in memory and saved) moved by `remap` (a rewritten segment's records moved), or
    /// forgotten when the journal was removed as a whole (else it would look like a journal
    /// gone missing, and the index would be rebuilt).
    pub(crate) fn purged(
        &mut self,
        id: JournalId,
        removed: bool,
        remap: impl Fn(JournalPos) -> JournalPos,
    ) -> Result<(), StoreError> {
        if removed {
            self.tracked.remove(&id);
            return self.index.remove_applied(id);
        }
        let saved = match self.tracked.get_mut(&id) {
            Some(t) => {
                t.at = remap(t.at);
                t.saved = t.saved.map(&remap);
                t.saved
            }
            None => self.index.applied(id)?.map(&remap),
        };
        if let Some(pos) = saved {
            self.index.set_applied(id, pos)?;
        }
        Ok(())
    }
}

/// Whether sled refused to open because its own lock is taken (a holder that is letting go
/// in this process): wait and retry, the index is not damaged.
fn sled_busy(e: &StoreError) -> bool {
    matches!(e, StoreError::Index { source: sled::Error::Io(io), .. }
        if io.to_string().contains("could not acquire lock"))
}

/// Whether the stopped journal `id` holds `end` on disk: its segment is at least that long,
/// and synced now (its writer may have died with the last bytes in the page cache).
fn durable_end(journal_root: &std::path::Path, id: JournalId, end: JournalPos) -> bool {
    let path = segment_path(&id.dir(journal_root), end.segment);
    File::open(&path)
        .and_then(|f| {
            let long_enough = f.metadata()?.len() >= end.offset;
            f.sync_all()?;
            Ok(long_enough)
        })
        .unwrap_or(false)
}

/// Whether the `purges` file of the journal in `dir` says segment `n` was rewritten (a
/// retention run cut it shorter; a crash before the index's position moved leaves that
/// position past its end).
fn rewritten_by_retention(dir: &std::path::Path, n: u64) -> bool {
    let Ok(text) = fs::read_to_string(dir.join(super::retention::PURGES)) else {
        return false;
    };
    text.lines().any(|l| {
        serde_json::from_str::<super::retention::PurgeStatement>(l)
            .is_ok_and(|s| s.rewritten.contains(&n))
    })
}

/// Whether sled failed to open the index for a reason of the file system's, not of the
/// index's: no space (ENOSPC), a quota (EDQUOT), no permission (EACCES, EPERM), a read-only
/// file system (EROFS).
fn outside_the_index(io: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        io.kind(),
        PermissionDenied | StorageFull | QuotaExceeded | ReadOnlyFilesystem
    )
}

/// Why the index cannot be trusted against the journals, if it cannot: a saved position past
/// the end of its journal (cheap check: segment numbers and file lengths), or a journal gone;
/// with whether whole files it had read are gone, or the end of a journal the index saw
/// finished (`true`: nothing but a deletion does that), or only the end of a running
/// journal's newest segment (which an outage's roll-back or a power cut in `batched` mode
/// also leave).
fn ahead(
    index: &Index,
    journal_root: &std::path::Path,
) -> Result<Option<(String, bool)>, StoreError> {
    for (id, pos) in index.positions()? {
        let dir = id.dir(journal_root);
        let Some(&last) = list_segments(&dir)?.last() else {
            if pos > JournalPos::START {
                return Ok(Some((
                    format!("a journal it refers to ({id}) is gone"),
                    true,
                )));
            }
            // A writer that died before its first segment: nothing was indexed from it.
            continue;
        };
        match pos.segment.cmp(&last) {
            std::cmp::Ordering::Greater => {
                return Ok(Some((
                    format!(
                        "the index read segment {} of journal {id}, which now ends at segment {last}",
                        pos.segment
                    ),
                    true,
                )));
            }
            std::cmp::Ordering::Equal => {
                let path = segment_path(&dir, last);
                let len = fs::metadata(&path)
                    .map_err(|e| StoreError::io("read the length of", &path, e))?
                    .len();
                if pos.offset > len {
                    // A journal the index saw finished (its writer stopped, every record
                    // durable, applied to its end) never shrinks: neither a power cut nor
                    // an outage's roll-back reaches it, only a deletion.
                    if index.finished(id)?.is_some() && !rewritten_by_retention(&dir, last) {
                        return Ok(Some((
                            format!(
                                "journal {id} was finished (its writer stopped) at segment {}, offset {}, and now ends at offset {len}",
                                pos.segment, pos.offset
                            ),
                            true,
                        )));
                    }
                    return Ok(Some((format!("the index is ahead of journal {id}"), false)));
                }
            }
            std::cmp::Ordering::Less => {}
        }
    }
    Ok(None)
}

/// Opens the index (the caller holds the index lock), rebuilding it when damaged, of another
/// format or ahead of a journal; `Ok(None)` when sled's own lock is still taken.
fn open_index(
    paths: &StorePaths,
    force_rebuild: bool,
    report: &mut OpenReport,
) -> Result<Option<Index>, StoreError> {
    let index_path = paths.index();
    let journal_root = paths.journal();
    let mut rebuild = force_rebuild.then(|| "requested (reindex)".to_string());
    // The journals hold less than the index knew: evidence of a deletion, kept for `verify`.
    let mut lost = false;
    // sled's own lock can outlive our index lock by a moment when the previous holder was in
    // this process (sled lets go of it from its threads): wait for it, up to 5 s (1 s was
    // not always enough on a loaded two-core machine: a writer opened right after a query
    // in one process went without the index, seen twice in CI).
    let mut attempts = 0;
    let opened = loop {
        match Index::open(&index_path, &journal_root) {
            Err(e) if sled_busy(&e) && attempts < 500 => {
                attempts += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            other => break other,
        }
    };
    let mut index = match opened {
        Ok(index) => Some(index),
        Err(e) if sled_busy(&e) => return Ok(None),
        // Not the index's fault: moving it aside would lose what it proves (a deletion).
        Err(StoreError::Index {
            path,
            source: sled::Error::Io(io),
        }) if outside_the_index(&io) => {
            return Err(StoreError::IndexUnavailable { path, source: io });
        }
        Err(e) => {
            rebuild = Some(format!("the index could not be opened: {e}"));
            None
        }
    };
    // Checked on `reindex` too: the index it replaces may be the only proof of a deletion.
    // An index `reindex` cannot check is kept aside (it may prove one), not deleted.
    let mut keep = false;
    if let Some(ix) = &index {
        let checked = ix.format_ok().and_then(|same| match same {
            true => ahead(ix, &journal_root).map(|a| (true, a)),
            false => Ok((false, None)),
        });
        match checked {
            Ok((_, Some((reason, gone)))) if gone || rebuild.is_none() => {
                lost = gone;
                rebuild = Some(reason);
            }
            Ok((false, _)) if rebuild.is_none() => {
                rebuild = Some("the index was written by another version".into());
            }
            Ok(_) => {}
            Err(e) if force_rebuild => {
                keep = true;
                rebuild = Some(format!(
                    "requested (reindex); the old index could not be checked against the journals: {e}"
                ));
            }
            Err(e) => return Err(e),
        }
    }
    if let Some(reason) = &rebuild {
        drop(index.take());
        if index_path.exists() {
            if force_rebuild && !lost && !keep {
                fs::remove_dir_all(&index_path)
                    .map_err(|e| StoreError::io("remove", &index_path, e))?;
            } else {
                // Keep a damaged index for inspection instead of deleting evidence, with why
                // and when: `verify` reports a loss found here, also once the index has been
                // rebuilt by whichever command opened the store first. The note is written
                // (and synced) before the index moves: an index moved aside without it (a
                // full disk) would no longer prove the loss.
                let note = Rebuilt {
                    at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
                    reason: reason.clone(),
                    journals_lost: lost,
                };
                let path = index_path.join(REBUILT);
                let text = serde_json::to_string(&note).unwrap_or_default();
                File::create(&path)
                    .and_then(|mut f| {
                        std::io::Write::write_all(&mut f, text.as_bytes())?;
                        f.sync_all()
                    })
                    .map_err(|e| StoreError::io("write why the index is replaced, in", &path, e))?;
                let aside = unused_path(&paths.root, "index.replaced");
                fs::rename(&index_path, &aside)
                    .map_err(|e| StoreError::io("move aside", &index_path, e))?;
            }
        }
        tracing::warn!(reason = %reason, path = %index_path.display(), "rebuilding audit index from the journals");
    }
    let index = match index {
        Some(ix) => ix,
        None => Index::open(&index_path, &journal_root)?,
    };
    index.set_format()?;
    report.lost = lost.then(|| rebuild.clone()).flatten();
    report.rebuilt = rebuild;
    Ok(Some(index))
}

/// The file in a replaced index's folder (`index.replaced*`) that says why it was replaced.
pub const REBUILT: &str = "REBUILT";

/// What [`REBUILT`] holds (JSON).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Rebuilt {
    /// When, RFC 3339 UTC.
    pub at: String,
    /// Why, in words.
    pub reason: String,
    /// Whether whole files the index had read are gone (a journal, or segments of one): a
    /// deletion, unless a backup of the journals was restored. The end of a newest segment
    /// shorter than indexed is not counted (an outage's roll-back, a power cut in `batched`
    /// mode leave that too).
    pub journals_lost: bool,
}

/// What one catch-up of the index with one journal did.
#[derive(Debug)]
pub struct CatchUp {
    /// Records applied.
    pub applied: usize,
    /// The journal position the index is now at (not yet saved: see [`IndexHolder::persist`]).
    pub end: JournalPos,
    /// Damaged segments met on the way (their unreadable records are skipped).
    pub damaged: Vec<Damage>,
    /// Stopped at the time given, with records left after `end`.
    pub more: bool,
}

/// Why reading a journal for the index ended early.
enum Halt {
    /// The round's time is up: `end` is where the next one starts.
    TimeUp,
    Store(StoreError),
}

impl From<StoreError> for Halt {
    fn from(e: StoreError) -> Self {
        Halt::Store(e)
    }
}

/// Stages the records of journal `id` after `from` into `pending`, writing them to the index
/// whenever [`index::WRITE_EVERY`] are staged; the one way the index is fed, whether on
/// taking it, by `reindex` or behind running writers. Given `until`, it stops then, before
/// the next record (`more` set, `end` after the last record staged). The caller writes what
/// is left staged before it flushes the index or saves positions
/// ([`IndexHolder::persist`]).
pub fn catch_up_journal(
    journal_root: &std::path::Path,
    index: &Index,
    pending: &mut index::Pending,
    id: JournalId,
    from: JournalPos,
    progress: Option<&indicatif::ProgressBar>,
    until: Option<Instant>,
) -> Result<CatchUp, StoreError> {
    let mut out = CatchUp {
        applied: 0,
        end: from,
        damaged: Vec::new(),
        more: false,
    };
    // Entries are written in large batches, one posting per field value: sled's cost is per
    // insert, and the indexer shares the CPU with the server and the client.
    let read = journal::read_from_as(
        &id.dir(journal_root),
        from,
        |pos, payload| {
            // At least one record per call, so that a round whose time went on opening the
            // journal still moves on.
            if out.applied > 0 && until.is_some_and(|t| Instant::now() >= t) {
                return Err(Halt::TimeUp);
            }
            // The records before an unreadable one stay staged and are written, as they were
            // one by one.
            index.stage(pending, id, pos, payload)?;
            out.applied += 1;
            out.end = pos;
            if let Some(p) = progress {
                p.inc(journal::RECORD_HEADER_LEN + payload.len() as u64);
            }
            if pending.len() >= index::WRITE_EVERY {
                index.write(std::mem::take(pending))?;
            }
            Ok(())
        },
        |d| out.damaged.push(d),
    );
    match read {
        Ok(end) => out.end = end,
        Err(Halt::TimeUp) => out.more = true,
        Err(Halt::Store(e)) => return Err(e),
    }
    Ok(out)
}

/// How long a writer waits before trying to take the index again after failing to open it.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(10);

/// The longest a keeper's round holds the index (plus one batch write), so that a query
/// waiting on the shared holder gets it between rounds ([`IndexHolder::catch_up_until`]).
pub const ROUND: Duration = Duration::from_millis(200);

/// A writing process's part in indexing, run by its indexer thread: take the index whenever
/// no other process holds it, and keep it caught up with every journal while holding it.
#[derive(Debug)]
pub struct IndexKeeper {
    paths: StorePaths,
    own: JournalId,
    /// Answers queries on `index.sock` once the index is held; stopped before letting go
    /// (declared before `holder`, so dropped first too). `None` if its thread did not start.
    server: Option<super::serve::Server>,
    /// Shared with the query server ([`super::serve`]), which answers `events` from it.
    pub(super) holder: super::serve::SharedHolder,
    /// Whether the last round failed (its error was logged; the next one is not).
    failing: bool,
    retry_at: Option<Instant>,
    /// Retention requests of the gateway, served while holding the index.
    retention: Option<std::sync::mpsc::Receiver<super::retention::Request>>,
    /// The index keys this process's writer hands on ([`super::handoff`]), if it does.
    handoff: Option<std::sync::Arc<super::handoff::HandOff>>,
}

impl IndexKeeper {
    /// The keeper of the writer of journal `own` in the store at `root`, holding the index if
    /// it was taken when the store was opened.
    pub fn new(root: &std::path::Path, own: JournalId, holder: Option<IndexHolder>) -> Self {
        let held = holder.is_some();
        let holder = std::sync::Arc::new(std::sync::Mutex::new(holder));
        let server = super::serve::Server::new(root, holder.clone())
            .inspect_err(|e| tracing::warn!(error = %e, "cannot answer queries on the index socket; `events` reads the store itself"))
            .ok();
        let mut keeper = IndexKeeper {
            paths: StorePaths::new(root),
            own,
            holder,
            server,
            failing: false,
            retry_at: None,
            retention: None,
            handoff: None,
        };
        if held {
            keeper.serve_queries();
        }
        keeper
    }

    /// The holder, locked (a thread that panicked while holding it left it usable: every
    /// change to it is applied before its positions are saved).
    fn locked(&self) -> std::sync::MutexGuard<'_, Option<IndexHolder>> {
        self.holder
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts answering queries on `index.sock` ([`super::serve`]); a failure is logged and
    /// costs only speed (`events` then reads the store itself).
    fn serve_queries(&mut self) {
        if let Some(server) = &mut self.server
            && let Err(e) = server.bind()
        {
            tracing::warn!(error = %e, "cannot answer queries on the index socket; `events` reads the store itself");
        }
    }

    /// Serves the retention requests sent to `rx` ([`super::retention::DailyRetention`]) at
    /// each round: retention changes the index, so it runs where the index is held.
    pub fn serve_retention(&mut self, rx: std::sync::mpsc::Receiver<super::retention::Request>) {
        self.retention = Some(rx);
    }

    /// Takes the index keys this process's writer hands on through `handoff` in the rounds
    /// of [`Self::tick_with`] that ask for them, while this process holds the index.
    pub fn hand_off(&mut self, handoff: std::sync::Arc<super::handoff::HandOff>) {
        handoff.set_wanted(self.holds());
        self.handoff = Some(handoff);
    }

    /// Whether this process holds the index now.
    pub fn holds(&self) -> bool {
        self.locked().is_some()
    }

    /// One round of at most [`ROUND`]: catch the index up if held, else try to take it (when
    /// its holder has stopped, the first writer to ask takes over); then serve a retention
    /// request, if one waits. Problems are logged, once in a row. Returns whether records are
    /// left to apply (call again soon).
    pub fn tick(&mut self) -> bool {
        self.tick_with(false)
    }

    /// [`Self::tick`], taking this process's own records from the keys its writer handed on
    /// when `handed` ([`Self::hand_off`]; its journal is read only where they leave a gap),
    /// else reading every journal.
    pub fn tick_with(&mut self, handed: bool) -> bool {
        let more = self.tick_index(handed);
        if let Some(rx) = &self.retention {
            let mut held = self.locked();
            let served = super::retention::serve(rx, held.as_mut(), &self.paths.root);
            if served && let Some(h) = &self.handoff {
                h.clear();
            }
        }
        more
    }

    fn tick_index(&mut self, handed: bool) -> bool {
        let until = Some(Instant::now() + ROUND);
        let mut more = false;
        let mut held = self
            .holder
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let result = match held.as_mut() {
            Some(holder) => holder
                .catch_up_round(until, self.handoff.as_deref().filter(|_| handed))
                .map(|done| {
                    log_round(&done.torn, &done.damaged, &done.errors);
                    more = done.more;
                    done.errors.is_empty()
                }),
            None if self.retry_at.is_some_and(|at| Instant::now() < at) => return false,
            None => {
                match IndexHolder::take_with(&self.paths, Some(self.own), true, false, None, until)
                {
                    Ok(Some((holder, report))) => {
                        tracing::info!(
                            records = report.caught_up,
                            events = report.indexed,
                            behind = report.behind,
                            "holding the audit index (caught up with every journal, or catching up when behind)"
                        );
                        more = report.behind;
                        if let Some(reason) = &report.rebuilt {
                            tracing::warn!(reason = %reason, "audit index rebuilt from the journals");
                        }
                        log_round(&report.torn, &report.damaged, &report.errors);
                        *held = Some(holder);
                        Ok(report.errors.is_empty())
                    }
                    Ok(None) => Ok(true),
                    Err(e) => {
                        self.retry_at = Some(Instant::now() + RETRY_AFTER_FAILURE);
                        Err(e)
                    }
                }
            }
        };
        let taken = held.is_some() && self.server.as_ref().is_some_and(|s| !s.tried());
        if let Some(h) = &self.handoff {
            h.set_wanted(held.is_some());
        }
        drop(held);
        if taken {
            self.serve_queries();
        }
        match result {
            Ok(healthy) => self.failing = !healthy,
            Err(e) => {
                if !std::mem::replace(&mut self.failing, true) {
                    tracing::error!(error = %e, "audit index update failed; the journals are intact and the index is caught up from them later");
                }
            }
        }
        more
    }

    /// Marks this process's own journal finished at the position applied, once its writer
    /// has stopped with every record durable under its final checkpoint and the index has
    /// applied it to its end ([`IndexHolder::finish_own`]). Without it, the journal of the
    /// last writer to stop stayed unfinished until another writer came, and a cut of its
    /// tail with its last checkpoint lines passed `verify` (helper-90 H2). Does nothing when
    /// this process does not hold the index (the holder marks it once its lock is free).
    pub fn finish_own(&mut self) {
        if let Some(holder) = self.locked().as_mut() {
            holder.finish_own();
        }
    }

    /// Saves the index and lets it go, for another process to take.
    pub fn close(mut self) {
        // The socket goes first: the next holder may bind its own as soon as the index is free.
        drop(self.server.take());
        if let Some(h) = &self.handoff {
            tracing::debug!(
                handed = h.used(),
                dropped = h.dropped(),
                "records indexed from the writer's keys, and dropped from a full queue"
            );
            h.set_wanted(false);
        }
        let holder = self.locked().take();
        if let Some(holder) = holder
            && let Err(e) = holder.close()
        {
            tracing::error!(error = %e, "audit index flush failed; it is caught up from the journals by its next holder");
        }
    }
}

pub(super) fn log_round(torn: &[TornTail], damaged: &[Damage], errors: &[StoreError]) {
    for t in torn {
        tracing::warn!(torn = %t, "audit journal of a stopped writer recovered");
    }
    for d in damaged {
        tracing::error!(damage = %d, "audit journal segment damaged");
    }
    for e in errors {
        tracing::error!(error = %e, "audit journal could not be indexed");
    }
}
