//! The journal: the durable record. Append-only segment files of length-prefixed, checksummed
//! records, made durable with `fdatasync`.
//!
//! Segment file `NNNNNNNNNNNNNNNNNNNN.journal`: a 16-byte header (`MCPAJNL` and the format
//! digit, then the segment number, little-endian u64), then records: `len: u32 LE`,
//! `crc32(len bytes ++ payload): u32 LE`, `payload` (one event as JSON). A crash can only tear
//! the end of the newest segment; recovery keeps every whole record, moves the torn bytes aside
//! (`NNN.journal.torn-OFFSET`) and reports them.
//!
//! # Formats
//!
//! * `MCPAJNL3` (written now): as format 2, and a record may hold its event's personal fields
//!   encrypted under the user's key (member `personal`, `user_id` a pseudonym: the contract is
//!   in [`super::personal`]). A format-2 reader would show pseudonyms and miss the arguments
//!   without knowing it, so the digit changed: it refuses these segments as newer.
//! * `MCPAJNL2` (read): every payload is a chained record, RFC 8785 canonical JSON with
//!   `seq` and `previous_hash` (the contract is in [`super::chain`]). The chain runs on across
//!   the segments of a journal, of format 2 and 3 alike; [`Journal::append`] seals every
//!   payload, so nothing unchained can be written to a chained segment. Reopening a journal
//!   whose newest segment is of format 2 starts a format-3 segment; the chain runs on.
//! * `MCPAJNL1` (legacy, read only): payloads are the event JSON as serialized, unchained.
//!   Reopening such a journal for appending ([`Journal::open`]) starts a format-2 segment,
//!   whose first record is the chain's `seq` 0.
//! * A higher digit is a newer format: opening it for appending is refused with
//!   [`StoreError::NewerFormat`]; readers report its segments as unreadable, never guess.
//!
//! The CRC finds torn writes and disk faults; anybody can recompute it. The chain (SHA-256,
//! sequence numbers, signed checkpoints beside the segments: [`super::checkpoint`]) is what
//! shows deliberate changes: `verify` ([`super::verify`]) walks both.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::chain::{self, Chain, Head};
use super::{StoreError, unused_path};

/// The first 7 bytes of every segment; the 8th is the format digit.
const MAGIC_PREFIX: &[u8; 7] = b"MCPAJNL";
/// The format this version writes (chained records, personal fields possibly encrypted).
pub const FORMAT: u8 = 3;
/// The first format of chained records (personal fields in clear).
pub const FORMAT_CHAINED: u8 = 2;

/// Whether segments of format `f` hold chained records (formats 2 and 3).
pub fn is_chained(f: Option<u8>) -> bool {
    f.is_some_and(|f| (FORMAT_CHAINED..=FORMAT).contains(&f))
}
/// The oldest format it reads (unchained records).
pub const FORMAT_LEGACY: u8 = 1;
/// Bytes before the first record of a segment.
pub const HEADER_LEN: u64 = 16;
/// Bytes before each record's payload.
pub const RECORD_HEADER_LEN: u64 = 8;
/// Larger lengths can only come from damage.
const MAX_RECORD_LEN: u32 = 1 << 31;

/// A place in the journal: the position just after a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JournalPos {
    /// Segment number.
    pub segment: u64,
    /// Byte offset within the segment.
    pub offset: u64,
}

impl JournalPos {
    /// The position before the first record of the first segment.
    pub const START: JournalPos = JournalPos {
        segment: 1,
        offset: HEADER_LEN,
    };

    /// Big-endian bytes, for storing in the index.
    pub fn to_bytes(self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.segment.to_be_bytes());
        out[8..].copy_from_slice(&self.offset.to_be_bytes());
        out
    }

    /// Reads [`Self::to_bytes`] back.
    pub fn from_bytes(bytes: &[u8]) -> Option<JournalPos> {
        let bytes: [u8; 16] = bytes.try_into().ok()?;
        Some(JournalPos {
            segment: u64::from_be_bytes(bytes[..8].try_into().ok()?),
            offset: u64::from_be_bytes(bytes[8..].try_into().ok()?),
        })
    }
}

impl std::fmt::Display for JournalPos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "segment {} offset {}", self.segment, self.offset)
    }
}

/// Where one record lies: what the index stores for each event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef {
    /// Segment number.
    pub segment: u64,
    /// Offset of the record's header.
    pub offset: u64,
    /// Payload length.
    pub len: u32,
}

impl RecordRef {
    /// The record whose payload of `len` bytes ends at `end`.
    pub fn ending_at(end: JournalPos, len: usize) -> RecordRef {
        RecordRef {
            segment: end.segment,
            offset: end.offset - RECORD_HEADER_LEN - len as u64,
            len: len as u32,
        }
    }

    /// The position just after the record.
    pub fn end(self) -> JournalPos {
        JournalPos {
            segment: self.segment,
            offset: self.offset + RECORD_HEADER_LEN + u64::from(self.len),
        }
    }

    /// Big-endian bytes, for storing in the index.
    pub fn to_bytes(self) -> [u8; 20] {
        let mut out = [0u8; 20];
        out[..8].copy_from_slice(&self.segment.to_be_bytes());
        out[8..16].copy_from_slice(&self.offset.to_be_bytes());
        out[16..].copy_from_slice(&self.len.to_be_bytes());
        out
    }

    /// Reads [`Self::to_bytes`] back.
    pub fn from_bytes(bytes: &[u8]) -> Option<RecordRef> {
        let bytes: [u8; 20] = bytes.try_into().ok()?;
        Some(RecordRef {
            segment: u64::from_be_bytes(bytes[..8].try_into().ok()?),
            offset: u64::from_be_bytes(bytes[8..16].try_into().ok()?),
            len: u32::from_be_bytes(bytes[16..].try_into().ok()?),
        })
    }
}

/// Reads one record's payload and checks it against its header and checksum.
pub fn read_record(dir: &Path, at: RecordRef) -> Result<Vec<u8>, StoreError> {
    let path = segment_path(dir, at.segment);
    let mut bytes = vec![0u8; RECORD_HEADER_LEN as usize + at.len as usize];
    File::open(&path)
        .and_then(|mut f| {
            f.seek(SeekFrom::Start(at.offset))?;
            f.read_exact(&mut bytes)
        })
        .map_err(|e| StoreError::io("read a record of", &path, e))?;
    let scan = scan_records(&bytes, at.offset, |_, _| Ok::<(), StoreError>(()))?;
    if scan.valid_end != at.end().offset {
        return Err(StoreError::BadRecord {
            path,
            offset: at.offset,
            reason: scan
                .stopped
                .unwrap_or_else(|| "length differs from the index".into()),
        });
    }
    bytes.drain(..RECORD_HEADER_LEN as usize);
    Ok(bytes)
}

/// Bytes at the end of the newest segment that did not form whole records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// The segment file.
    pub segment: PathBuf,
    /// Where the whole records end (the file is truncated here).
    pub offset: u64,
    /// How many bytes were cut off.
    pub bytes: u64,
    /// Why the bytes at `offset` are not a whole record.
    pub reason: String,
    /// Where the cut bytes were saved for inspection.
    pub saved_to: PathBuf,
}

impl std::fmt::Display for TornTail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "torn tail in {} at offset {}: {} bytes ({}) moved to {}",
            self.segment.display(),
            self.offset,
            self.bytes,
            self.reason,
            self.saved_to.display()
        )
    }
}

/// Unreadable bytes between whole records, or at the end of a segment that is not the newest
/// (a crash only tears the newest segment's end: anything else is a disk fault or tampering).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// The segment file.
    pub segment: PathBuf,
    /// Where the unreadable bytes start.
    pub offset: u64,
    /// Where whole records resume, if they do in this segment.
    pub resumes_at: Option<u64>,
    /// What is wrong at `offset`.
    pub reason: String,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} is damaged at offset {} ({})",
            self.segment.display(),
            self.offset,
            self.reason
        )?;
        match self.resumes_at {
            Some(at) => write!(
                f,
                "; {} bytes skipped, records resume at offset {at}",
                at - self.offset
            ),
            None => write!(f, "; the rest of that segment cannot be read"),
        }
    }
}

/// An event's payload as [`Journal::prepare`] made it (personal fields sealed when the
/// journal encrypts them), for [`Journal::append_prepared`]. Only `prepare` makes one, so a
/// payload in clear cannot reach a journal that encrypts.
///
/// It also keeps the event's index keys as written (`user_id` the pseudonym when sealed),
/// for the writer to hand to the indexer once the record is durable ([`super::handoff`]).
#[derive(Debug)]
pub struct Prepared(
    super::canonical_ser::Members,
    Option<super::index::Keys<'static>>,
);

impl Prepared {
    /// The event's index keys, taken out (`None` the second time).
    pub(crate) fn take_keys(&mut self) -> Option<super::index::Keys<'static>> {
        self.1.take()
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it is empty (never, for an event).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The append side of the journal, owned by the audit writer.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    file: File,
    segment: u64,
    offset: u64,
    segment_bytes: u64,
    /// The journal's `LOCK`, held while this process may append (a writer's own journal).
    lock: Option<File>,
    /// What the next record links to.
    chain: Chain,
    /// The newest segment is of an older format: start a new one before appending.
    legacy_tail: bool,
    /// Where the current segment was made durable last (by [`Self::sync`], or when it was
    /// made), and the chain there: what [`Self::roll_back`] returns to.
    synced: (u64, Chain),
    /// Records appended since then.
    unsynced: u64,
    /// A failed write may have left bytes past `offset`: cut them before the next append.
    dirty: bool,
    /// Bytes were cut off this segment: the next append starts a new one. An index holder
    /// (in any process) may have read records that were cut, and saved a position past the
    /// cut; records written at those offsets again would be misread from there, while a
    /// new segment is read from its start.
    rotate_next: bool,
    /// Seals each event's personal fields before it is chained, when encryption is on.
    sealer: Option<super::personal::Sealer>,
    /// The time span of the current segment's records, noted when it is closed
    /// ([`super::spans`]).
    span: super::spans::Tracker,
    /// The records of the last append ([`Self::appended`]).
    appended: Vec<RecordRef>,
}

/// What opening the journal for writing found in its newest segment.
#[derive(Debug, Default)]
pub struct Recovery {
    /// The torn tail cut off (saved aside), if any.
    pub torn: Option<TornTail>,
    /// Damaged stretches between whole records, left in place and stepped over by readers.
    pub damaged: Vec<Damage>,
}

/// The path of segment `n` in `dir`.
pub fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:020}.journal"))
}

/// The segment numbers present in `dir`, ascending.
pub fn list_segments(dir: &Path) -> Result<Vec<u64>, StoreError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StoreError::io("list", dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io("list", dir, e))?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".journal")) else {
            continue;
        };
        if stem.len() == 20
            && let Ok(n) = stem.parse::<u64>()
        {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// The outcome of checking one segment's bytes.
#[derive(Debug)]
pub(crate) struct Scan {
    /// Offset just past the last whole record.
    pub valid_end: u64,
    /// Why reading stopped before the end of the bytes, if it did.
    pub stopped: Option<String>,
}

/// The format digit of a segment header (`MCPAJNL<digit>`), if it is one of ours at all.
pub fn segment_format(header: &[u8]) -> Option<u8> {
    let (prefix, digit) = (header.get(..7)?, *header.get(7)?);
    (prefix == MAGIC_PREFIX && digit.is_ascii_digit()).then(|| digit - b'0')
}

/// Why a segment's header is not one this version reads, if it is not.
fn header_problem(bytes: &[u8], segment: u64) -> Option<String> {
    if (bytes.len() as u64) < HEADER_LEN {
        return Some(format!(
            "segment header cut short ({} of {HEADER_LEN} bytes)",
            bytes.len()
        ));
    }
    match segment_format(&bytes[..8]) {
        Some(FORMAT_LEGACY | FORMAT_CHAINED | FORMAT) => {}
        Some(newer) if newer > FORMAT => {
            return Some(format!(
                "segment of format {newer}, newer than this mcp-audit-proxy reads (upgrade it)"
            ));
        }
        _ => return Some("bad segment header".into()),
    }
    if u64::from_le_bytes(bytes[8..16].try_into().unwrap_or_default()) != segment {
        return Some("bad segment header".into());
    }
    None
}

/// Walks whole records in `image` (segment bytes starting at file offset `base`), calling
/// `f(offset just past the record, payload)` for each.
pub(crate) fn scan_records<E>(
    image: &[u8],
    base: u64,
    mut f: impl FnMut(u64, &[u8]) -> Result<(), E>,
) -> Result<Scan, E> {
    let mut at = 0usize;
    loop {
        let rest = &image[at..];
        let offset = base + at as u64;
        if rest.is_empty() {
            return Ok(Scan {
                valid_end: offset,
                stopped: None,
            });
        }
        let stop = |reason: String| {
            Ok(Scan {
                valid_end: offset,
                stopped: Some(reason),
            })
        };
        if rest.len() < RECORD_HEADER_LEN as usize {
            return stop(format!(
                "record header cut short ({} of 8 bytes)",
                rest.len()
            ));
        }
        let len = u32::from_le_bytes(rest[..4].try_into().unwrap_or_default());
        let crc = u32::from_le_bytes(rest[4..8].try_into().unwrap_or_default());
        if len == 0 || len > MAX_RECORD_LEN {
            return stop(format!("implausible record length {len}"));
        }
        let total = RECORD_HEADER_LEN as usize + len as usize;
        if rest.len() < total {
            return stop(format!(
                "record cut short ({} of {} bytes)",
                rest.len(),
                total
            ));
        }
        let payload = &rest[RECORD_HEADER_LEN as usize..total];
        if checksum(&rest[..4], payload) != crc {
            return stop("checksum mismatch".into());
        }
        at += total;
        f(base + at as u64, payload)?;
    }
}

/// The offset (after `from`) in `image` (file offset `base`) where the next whole record
/// starts, if any: a plausible length, a payload shaped like a JSON object and a matching CRC.
fn resync(image: &[u8], base: u64, from: u64) -> Option<u64> {
    let start = (from - base) as usize + 1;
    first_boundary(image.get(start..)?, base + start as u64)
}

/// Walks the records of `image` (file offset `base`), stepping over damaged stretches to the
/// next whole record. The returned scan ends after the last whole record; `stopped` says why
/// the bytes after it (a torn tail, if this is the newest segment) are not a record.
fn walk<E>(
    image: &[u8],
    base: u64,
    mut f: impl FnMut(u64, &[u8]) -> Result<(), E>,
    mut on_damage: impl FnMut(u64, u64, String),
) -> Result<Scan, E> {
    let mut at = base;
    loop {
        let scan = scan_records(&image[(at - base) as usize..], at, &mut f)?;
        let Some(reason) = &scan.stopped else {
            return Ok(scan);
        };
        match resync(image, base, scan.valid_end) {
            Some(next) => {
                on_damage(scan.valid_end, next, reason.clone());
                at = next;
            }
            None => return Ok(scan),
        }
    }
}

/// Checks the header of a whole segment image and walks its records.
fn scan_segment<E>(
    bytes: &[u8],
    segment: u64,
    f: impl FnMut(u64, &[u8]) -> Result<(), E>,
    on_damage: impl FnMut(u64, u64, String),
) -> Result<Scan, E> {
    if let Some(problem) = header_problem(bytes, segment) {
        return Ok(Scan {
            valid_end: 0,
            stopped: Some(problem),
        });
    }
    walk(&bytes[HEADER_LEN as usize..], HEADER_LEN, f, on_damage)
}

fn checksum(len: &[u8], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(len);
    h.update(payload);
    h.finalize()
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io("sync directory", dir, e))
}

/// Cuts the torn tail of a journal's newest segment (saved aside) and reports damage there;
/// only for a journal nobody appends to (its owner's [`Journal`] is gone, or this is it).
pub fn recover(dir: &Path) -> Result<Recovery, StoreError> {
    Ok(recover_newest(dir)?.map(|r| r.3).unwrap_or_default())
}

/// Recovers the newest segment of `dir`, if there is one: its number, the file (open for
/// writing), where its whole records end and what recovery found.
fn recover_newest(dir: &Path) -> Result<Option<(u64, File, u64, Recovery)>, StoreError> {
    let segments = list_segments(dir)?;
    let Some(&last) = segments.last() else {
        return Ok(None);
    };
    let path = segment_path(dir, last);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| StoreError::io("open", &path, e))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|e| StoreError::io("read", &path, e))?;
    if bytes.len() as u64 >= HEADER_LEN {
        match segment_format(&bytes[..8]) {
            None => return Err(StoreError::NotASegment { path }),
            Some(found) if found > FORMAT => {
                return Err(StoreError::NewerFormat { path, found });
            }
            Some(_) => {}
        }
    }
    let mut recovery = Recovery::default();
    // Damage between whole records stays in place (readers step over it); only the bytes
    // after the last whole record are a torn tail.
    let scan = scan_segment(
        &bytes,
        last,
        |_, _| Ok::<(), StoreError>(()),
        |offset, next, reason| {
            recovery.damaged.push(Damage {
                segment: path.clone(),
                offset,
                resumes_at: Some(next),
                reason,
            });
        },
    )?;
    let mut valid_end = scan.valid_end;
    if let Some(reason) = scan.stopped {
        let saved_to = unused_path(dir, &format!("{last:020}.journal.torn-{valid_end}"));
        let cut = &bytes[valid_end as usize..];
        fs::write(&saved_to, cut)
            .and_then(|()| File::open(&saved_to)?.sync_all())
            .map_err(|e| StoreError::io("save torn tail to", &saved_to, e))?;
        if valid_end < HEADER_LEN {
            // The header itself is torn: the segment held no records. Start it afresh.
            file.set_len(0)
                .map_err(|e| StoreError::io("truncate", &path, e))?;
            file.seek(SeekFrom::Start(0))
                .and_then(|_| file.write_all(&header(last)))
                .map_err(|e| StoreError::io("write header of", &path, e))?;
            valid_end = HEADER_LEN;
        } else {
            file.set_len(valid_end)
                .map_err(|e| StoreError::io("truncate", &path, e))?;
        }
        file.sync_all()
            .map_err(|e| StoreError::io("sync", &path, e))?;
        sync_dir(dir)?;
        recovery.torn = Some(TornTail {
            segment: path.clone(),
            offset: scan.valid_end,
            bytes: cut.len() as u64,
            reason,
            saved_to,
        });
    }
    Ok(Some((last, file, valid_end, recovery)))
}

impl Journal {
    /// Opens the journal in `dir` for appending, recovering the newest segment's torn tail if
    /// any. The caller makes sure nobody else appends there (see [`super::journals`]).
    pub fn open(dir: &Path, segment_bytes: u64) -> Result<(Journal, Recovery), StoreError> {
        fs::create_dir_all(dir).map_err(|e| StoreError::io("create", dir, e))?;
        let Some((last, mut file, valid_end, recovery)) = recover_newest(dir)? else {
            return Ok((
                Journal::create_segment(dir, 1, segment_bytes)?,
                Recovery::default(),
            ));
        };
        let path = segment_path(dir, last);
        file.seek(SeekFrom::Start(valid_end))
            .map_err(|e| StoreError::io("seek", &path, e))?;
        let (head, legacy_tail) = chain_head(dir)?;
        Ok((
            Journal {
                dir: dir.to_path_buf(),
                file,
                segment: last,
                offset: valid_end,
                segment_bytes,
                lock: None,
                chain: Chain { head },
                legacy_tail,
                synced: (valid_end, Chain { head }),
                unsynced: 0,
                dirty: false,
                rotate_next: false,
                sealer: None,
                appended: Vec::new(),
                // Records of an earlier writer may be in it: no span for this segment.
                span: if valid_end > HEADER_LEN {
                    super::spans::Tracker::unknown()
                } else {
                    super::spans::Tracker::default()
                },
            },
            recovery,
        ))
    }

    /// Starts a journal in the empty folder `dir`, whose `LOCK` (held as `lock`) says that
    /// this process appends there; the lock is released when the journal is dropped.
    pub(crate) fn create_locked(
        dir: &Path,
        segment_bytes: u64,
        lock: File,
    ) -> Result<Journal, StoreError> {
        let mut journal = Journal::create_segment(dir, 1, segment_bytes)?;
        journal.lock = Some(lock);
        Ok(journal)
    }

    fn create_segment(dir: &Path, n: u64, segment_bytes: u64) -> Result<Journal, StoreError> {
        let path = segment_path(dir, n);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| StoreError::io("create", &path, e))?;
        let made = file
            .write_all(&header(n))
            .and_then(|()| file.sync_all())
            .map_err(|e| StoreError::io("write header of", &path, e))
            .and_then(|()| sync_dir(dir));
        if let Err(e) = made {
            // A full disk: leave no half-made segment behind, so the next attempt (when there
            // is room again) can make it afresh.
            drop(file);
            let _ = fs::remove_file(&path);
            return Err(e);
        }
        Ok(Journal {
            dir: dir.to_path_buf(),
            file,
            segment: n,
            offset: HEADER_LEN,
            segment_bytes,
            lock: None,
            chain: Chain::default(),
            legacy_tail: false,
            synced: (HEADER_LEN, Chain::default()),
            unsynced: 0,
            dirty: false,
            rotate_next: false,
            sealer: None,
            span: super::spans::Tracker::default(),
            appended: Vec::new(),
        })
    }

    /// Encrypts each event's personal fields from now on, under its user's key in the store
    /// at `root` ([`super::personal`]): `audit.encrypt_personal_data`.
    pub fn encrypt_personal_data(&mut self, root: &Path) {
        self.sealer = Some(super::personal::Sealer::new(root));
    }

    /// Starts a batch of [`Self::prepare`]s: each user's key file is looked at again (once)
    /// in it, so that an erasure by another process is seen ([`super::personal::Sealer`]).
    pub fn begin_batch(&mut self) {
        if let Some(sealer) = &mut self.sealer {
            sealer.begin_batch();
        }
    }

    /// What [`Self::append_prepared`] stores for `event`: its JSON, with the personal fields
    /// sealed when this journal encrypts them ([`super::personal::Sealer::seal_event`]).
    /// Done one event at a time, so that an event whose fields cannot be sealed (its user's
    /// key file is damaged) fails alone rather than its whole batch. `size_hint` is the
    /// bytes the JSON is likely to take.
    ///
    /// Errors: [`StoreError::Personal`] from the sealer, [`StoreError::Seal`] when the event
    /// cannot be written as JSON.
    pub fn prepare(
        &mut self,
        event: crate::audit::AuditEvent,
        size_hint: usize,
    ) -> Result<Prepared, StoreError> {
        let mut event = event;
        let members = match &mut self.sealer {
            Some(sealer) => sealer.seal_event_members(&mut event, size_hint)?,
            None => super::canonical_ser::Members::of(&event, size_hint)
                .map_err(|e| StoreError::Personal(super::personal::PersonalError::NotAnEvent(e)))?,
        };
        // Serialized: its strings are moved, not copied, into the keys.
        let keys = super::index::Keys::take(&mut event);
        Ok(Prepared(members, Some(keys)))
    }

    /// [`Self::append`] of payloads made by [`Self::prepare`] (their personal fields sealed
    /// already).
    pub fn append_prepared(&mut self, payloads: &[Prepared]) -> Result<JournalPos, StoreError> {
        self.cut_dirty_tail()?;
        let mut chain = self.chain;
        let sealed = payloads
            .iter()
            .map(|p| chain.seal_members(&p.0))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| StoreError::Seal {
                path: self.dir.clone(),
                source,
            })?;
        self.append_chained(chain, sealed)
    }

    /// Notes the current segment's time span ([`super::spans`]) when the writer stops for
    /// good (after its final checkpoint: nothing follows in this journal), so that exports and
    /// queries by time skip a stopped journal's last segment too. Records rolled back after
    /// the last sync only make the span wider than needed.
    pub fn close_span(&self) {
        self.span.close(&self.dir, self.segment);
    }

    /// Where the records of the last successful append lie, in order (not necessarily
    /// durable yet), for the index keys the writer hands on ([`super::handoff`]).
    pub fn appended(&self) -> &[RecordRef] {
        &self.appended
    }

    /// The last record appended (not necessarily durable yet: see [`Self::sync`]), for
    /// checkpoints; `None` before the first.
    pub fn head(&self) -> Option<Head> {
        self.chain.head
    }

    /// The journal folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the next record will go: everything before it is written.
    pub fn end(&self) -> JournalPos {
        JournalPos {
            segment: self.segment,
            offset: self.offset,
        }
    }

    /// Seals each payload (an event's JSON object) into the next chained record ([`Chain::seal`])
    /// and appends them in one write (not yet durable: see [`Self::sync`]); returns the new
    /// end. On an error nothing is appended and the chain is where it was: bytes a failed
    /// write left (a full disk takes part of a write) are cut off, now or before the next
    /// append, so that appending resumes cleanly once the disk has room again.
    pub fn append<P: AsRef<[u8]>>(&mut self, payloads: &[P]) -> Result<JournalPos, StoreError> {
        self.cut_dirty_tail()?;
        let mut chain = self.chain;
        let protected = match &mut self.sealer {
            None => None,
            Some(sealer) => {
                sealer.begin_batch();
                Some(
                    payloads
                        .iter()
                        .map(|p| sealer.seal(p.as_ref()))
                        .collect::<Result<Vec<_>, _>>()?,
                )
            }
        };
        let sealed = match &protected {
            Some(p) => p
                .iter()
                .map(|p| chain.seal(p))
                .collect::<Result<Vec<_>, _>>(),
            None => payloads.iter().map(|p| chain.seal(p.as_ref())).collect(),
        }
        .map_err(|source| StoreError::Seal {
            path: self.dir.clone(),
            source,
        })?;
        self.append_chained(chain, sealed)
    }

    /// Writes records chained by `chain` (from the journal's head) and advances the head.
    fn append_chained(
        &mut self,
        chain: super::chain::Chain,
        sealed: Vec<Vec<u8>>,
    ) -> Result<JournalPos, StoreError> {
        let total: u64 = sealed
            .iter()
            .map(|p| RECORD_HEADER_LEN + p.len() as u64)
            .sum();
        if self.legacy_tail
            || self.rotate_next
            || (self.offset > HEADER_LEN && self.offset + total > self.segment_bytes)
        {
            self.rotate()?;
        }
        let mut buf = Vec::with_capacity(total as usize);
        for p in &sealed {
            let len = u32::try_from(p.len())
                .ok()
                .filter(|&l| l > 0 && l <= MAX_RECORD_LEN)
                .ok_or(StoreError::RecordSize { bytes: p.len() })?;
            let len = len.to_le_bytes();
            buf.extend_from_slice(&len);
            buf.extend_from_slice(&checksum(&len, p).to_le_bytes());
            buf.extend_from_slice(p);
        }
        let path = self.current_path();
        if let Err(e) = self.file.write_all(&buf) {
            self.dirty = true;
            let _ = self.cut_dirty_tail();
            return Err(StoreError::io("append to", &path, e));
        }
        self.appended.clear();
        let mut at = self.offset;
        for p in &sealed {
            self.appended.push(RecordRef {
                segment: self.segment,
                offset: at,
                len: p.len() as u32,
            });
            at += RECORD_HEADER_LEN + p.len() as u64;
        }
        self.offset += total;
        self.chain = chain;
        self.unsynced += sealed.len() as u64;
        for p in &sealed {
            self.span.observe(p);
        }
        Ok(self.end())
    }

    /// Makes everything appended so far durable (`fdatasync`).
    pub fn sync(&mut self) -> Result<(), StoreError> {
        self.file
            .sync_data()
            .map_err(|e| StoreError::io("sync", &self.current_path(), e))?;
        self.synced = (self.offset, self.chain);
        self.unsynced = 0;
        Ok(())
    }

    /// After a failed [`Self::sync`]: forgets what was appended since the last successful one
    /// (after a failed `fdatasync` the kernel may have dropped those pages: they cannot be
    /// counted as recorded), cutting it off the segment now or before the next append, and
    /// puts the chain back where it was durable; the next append starts a new segment.
    /// Returns how many records were dropped.
    pub fn roll_back(&mut self) -> u64 {
        let dropped = self.unsynced;
        (self.offset, self.chain) = self.synced;
        self.unsynced = 0;
        self.dirty = true;
        let _ = self.cut_dirty_tail();
        dropped
    }

    /// Cuts bytes past `offset` that a failed write or a roll-back left.
    fn cut_dirty_tail(&mut self) -> Result<(), StoreError> {
        if !self.dirty {
            return Ok(());
        }
        let path = self.current_path();
        self.file
            .set_len(self.offset)
            .and_then(|()| self.file.seek(SeekFrom::Start(self.offset)).map(|_| ()))
            .map_err(|e| StoreError::io("cut a failed write off", &path, e))?;
        self.dirty = false;
        self.rotate_next = true;
        Ok(())
    }

    fn rotate(&mut self) -> Result<(), StoreError> {
        self.sync()?;
        // Closed for good: no record follows in this segment (records rolled back after the
        // last sync only make the span wider than needed).
        self.span.close(&self.dir, self.segment);
        let mut next = Journal::create_segment(&self.dir, self.segment + 1, self.segment_bytes)?;
        next.lock = self.lock.take();
        next.sealer = self.sealer.take();
        next.chain = self.chain;
        next.synced = (next.offset, self.chain);
        *self = next;
        Ok(())
    }

    fn current_path(&self) -> PathBuf {
        segment_path(&self.dir, self.segment)
    }
}

fn header(n: u64) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..7].copy_from_slice(MAGIC_PREFIX);
    h[7] = b'0' + FORMAT;
    h[8..].copy_from_slice(&n.to_le_bytes());
    h
}

/// The format digit of segment `n` of `dir` (`None` if its header is not ours or is cut).
pub fn format_of(dir: &Path, n: u64) -> Result<Option<u8>, StoreError> {
    let path = segment_path(dir, n);
    let mut head = [0u8; 8];
    let read = File::open(&path)
        .and_then(|mut f| f.read(&mut head))
        .map_err(|e| StoreError::io("read the header of", &path, e))?;
    Ok(if read == 8 {
        segment_format(&head)
    } else {
        None
    })
}

/// Where the chain of the journal in `dir` stands (its last whole record), and whether its
/// newest segment with records is of the legacy format (then appending starts a new segment
/// and a new chain).
fn chain_head(dir: &Path) -> Result<(Option<Head>, bool), StoreError> {
    let segments = list_segments(dir)?;
    for (i, &n) in segments.iter().enumerate().rev() {
        let mut last: Option<Vec<u8>> = None;
        read_segment(
            dir,
            n,
            HEADER_LEN,
            i + 1 == segments.len(),
            |_, p| {
                last = Some(p.to_vec());
                Ok::<(), StoreError>(())
            },
            |_| {},
        )?;
        let Some(last) = last else { continue };
        let format = format_of(dir, n)?;
        if !is_chained(format) {
            return Ok((None, true));
        }
        return Ok((
            chain::Link::of(&last).and_then(|l| l.seq).map(|seq| Head {
                seq,
                hash: chain::digest(&last),
            }),
            format != Some(FORMAT),
        ));
    }
    // No records: a new segment only if the newest one is legacy.
    let legacy = match segments.last() {
        Some(&n) => format_of(dir, n)? != Some(FORMAT),
        None => false,
    };
    Ok((None, legacy))
}

/// Reads whole records in journal order from a position, for catch-up, reindex and queries.
///
/// Read-only: a cut-off record at the end of the newest segment is where reading stops (a
/// writer may be in the middle of it); damage in an older segment is reported through
/// `on_damage` and reading goes on with the next segment.
pub fn read_from(
    dir: &Path,
    from: JournalPos,
    on_record: impl FnMut(JournalPos, &[u8]) -> Result<(), StoreError>,
    on_damage: impl FnMut(Damage),
) -> Result<JournalPos, StoreError> {
    read_from_as(dir, from, on_record, on_damage)
}

/// [`read_from`], whose `on_record` may end the reading with an error type of its own (`E`),
/// returned as is: a bounded index round stops that way.
pub(crate) fn read_from_as<E: From<StoreError>>(
    dir: &Path,
    from: JournalPos,
    mut on_record: impl FnMut(JournalPos, &[u8]) -> Result<(), E>,
    mut on_damage: impl FnMut(Damage),
) -> Result<JournalPos, E> {
    let segments = list_segments(dir)?;
    let mut end = from;
    for (i, &n) in segments.iter().enumerate() {
        if n < from.segment {
            continue;
        }
        let start = if n == from.segment {
            from.offset
        } else {
            HEADER_LEN
        };
        let newest = i + 1 == segments.len();
        end = read_segment(dir, n, start, newest, &mut on_record, &mut on_damage)?;
    }
    Ok(end)
}

/// Reads the whole records of segment `n` from offset `start` on; returns the position after
/// the last one. Unreadable bytes are reported, except at the end of the newest segment,
/// where a writer may be in the middle of a record.
pub(crate) fn read_segment<E: From<StoreError>>(
    dir: &Path,
    n: u64,
    start: u64,
    newest: bool,
    on_record: impl FnMut(JournalPos, &[u8]) -> Result<(), E>,
    on_damage: impl FnMut(Damage),
) -> Result<JournalPos, E> {
    read_segment_in(dir, n, start, newest, &mut Vec::new(), on_record, on_damage)
}

/// [`read_segment`], reading the segment's bytes into `image` (emptied first): a reader of
/// many segments keeps one buffer, so that each 64 MiB segment does not cost fresh pages
/// the kernel must zero (a fifth of the CPU of a scan of 10 M events, [`super::scan`]).
pub(crate) fn read_segment_in<E: From<StoreError>>(
    dir: &Path,
    n: u64,
    start: u64,
    newest: bool,
    image: &mut Vec<u8>,
    mut on_record: impl FnMut(JournalPos, &[u8]) -> Result<(), E>,
    mut on_damage: impl FnMut(Damage),
) -> Result<JournalPos, E> {
    let path = segment_path(dir, n);
    let mut on_segment =
        |offset, payload: &[u8]| on_record(JournalPos { segment: n, offset }, payload);
    let mut damage = |offset, next, reason| {
        on_damage(Damage {
            segment: path.clone(),
            offset,
            resumes_at: Some(next),
            reason,
        })
    };
    // A segment listed a moment ago and gone now was removed by retention (whose purge
    // statement, written before, is what `verify` checks such a gap against): no records.
    let gone = JournalPos {
        segment: n,
        offset: HEADER_LEN,
    };
    image.clear();
    let scan = if start > HEADER_LEN {
        // Read only what follows the position: the header was checked when it was reached.
        match File::open(&path).and_then(|mut f| {
            f.seek(SeekFrom::Start(start))?;
            f.read_to_end(image)
        }) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(gone),
            other => other.map_err(|e| StoreError::io("read", &path, e))?,
        };
        walk(image, start, &mut on_segment, &mut damage)?
    } else {
        match File::open(&path).and_then(|mut f| {
            let len = f.metadata()?.len();
            image.reserve(usize::try_from(len).unwrap_or(0));
            f.read_to_end(image)
        }) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(gone),
            other => other.map_err(|e| StoreError::io("read", &path, e))?,
        };
        // A newer format is refused as `verify` refuses it (helper-90 H4).
        if let Some(found) = segment_format(image.get(..8).unwrap_or_default())
            .filter(|&f| f > FORMAT && image.len() as u64 >= HEADER_LEN)
        {
            return Err(StoreError::NewerFormat { path, found }.into());
        }
        scan_segment(image, n, &mut on_segment, &mut damage)?
    };
    // A whole header this version does not read (the scan stopped before any record: only
    // [`header_problem`] does that) is never a torn tail, even in the newest segment (a writer
    // writes its 16 bytes at once): it is damage (helper-90 H4: `analyze` and `anomalies`
    // skipped such a segment without a word).
    let header_bad = start <= HEADER_LEN && scan.valid_end == 0 && image.len() as u64 >= HEADER_LEN;
    if let Some(reason) = scan.stopped
        && (!newest || header_bad)
    {
        on_damage(Damage {
            segment: path.clone(),
            offset: scan.valid_end,
            resumes_at: None,
            reason,
        });
    }
    Ok(JournalPos {
        segment: n,
        offset: scan.valid_end.max(HEADER_LEN),
    })
}

/// Reads the whole records of segment `n` of `dir` from its end backwards, `chunk` bytes at
/// a time, for queries that want the newest records (`events --limit` without the index):
/// `on_chunk` gets each stretch's records in file order (each with the position just past
/// it), newest stretch first, and says whether to go on. A stretch starts at the first whole
/// record after its first byte (found as [`resync`] finds one: a plausible length, a
/// JSON-shaped payload and a matching CRC). Returns `false`, having read nothing for the
/// caller to trust, when the segment is not plainly readable this way (a bad header, damage
/// between records, no record boundary where one must be): the caller reads it whole then,
/// which reports the damage.
pub(crate) fn read_segment_backwards(
    dir: &Path,
    n: u64,
    newest: bool,
    chunk: u64,
    mut on_chunk: impl FnMut(Vec<(JournalPos, &[u8])>) -> Result<bool, StoreError>,
) -> Result<bool, StoreError> {
    use std::os::unix::fs::FileExt;
    let path = segment_path(dir, n);
    let file = match File::open(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(true),
        other => other.map_err(|e| StoreError::io("read", &path, e))?,
    };
    let len = file
        .metadata()
        .map_err(|e| StoreError::io("read the length of", &path, e))?
        .len();
    let mut head = [0u8; HEADER_LEN as usize];
    if len < HEADER_LEN
        || file.read_exact_at(&mut head, 0).is_err()
        || header_problem(&head, n).is_some()
    {
        return Ok(false);
    }
    // `hi`: a record boundary (or the file's end, where a writer may be mid-record).
    let (mut hi, mut tail) = (len, true);
    let mut size = chunk.max(RECORD_HEADER_LEN + 2);
    while hi > HEADER_LEN {
        let lo = hi.saturating_sub(size).max(HEADER_LEN);
        let mut image = vec![0u8; (hi - lo) as usize];
        file.read_exact_at(&mut image, lo)
            .map_err(|e| StoreError::io("read", &path, e))?;
        let start = if lo == HEADER_LEN {
            Some(HEADER_LEN)
        } else {
            first_boundary(&image, lo)
        };
        let Some(start) = start else {
            if lo == HEADER_LEN || size >= u64::from(MAX_RECORD_LEN) * 2 {
                return Ok(false);
            }
            // A record longer than the stretch: a longer one.
            size *= 2;
            continue;
        };
        let mut ends = Vec::new();
        let scan = scan_records(&image[(start - lo) as usize..], start, |end, payload| {
            ends.push((end, payload.len()));
            Ok::<(), StoreError>(())
        })?;
        let records = ends
            .into_iter()
            .map(|(end, len)| {
                let at = (end - lo) as usize;
                (
                    JournalPos {
                        segment: n,
                        offset: end,
                    },
                    &image[at - len..at],
                )
            })
            .collect();
        // Only the newest segment's end may stop a walk early (a record being written): a
        // stop with a whole record after it is damage.
        if scan.stopped.is_some()
            && !(tail && newest && resync(&image, lo, scan.valid_end).is_none())
        {
            return Ok(false);
        }
        if !on_chunk(records)? {
            return Ok(true);
        }
        hi = start;
        tail = false;
        size = chunk.max(RECORD_HEADER_LEN + 2);
    }
    Ok(true)
}

/// The first offset at or after `base` in `image` (file offset `base`) where a whole record
/// starts, as [`resync`] judges one.
fn first_boundary(image: &[u8], base: u64) -> Option<u64> {
    let header = RECORD_HEADER_LEN as usize;
    (0..image.len().saturating_sub(header)).find_map(|i| {
        let rest = &image[i..];
        let len = u32::from_le_bytes(rest[..4].try_into().ok()?);
        let total = header + len as usize;
        if len == 0 || len > MAX_RECORD_LEN || rest.len() < total {
            return None;
        }
        let payload = &rest[header..total];
        let shaped = payload.first() == Some(&b'{') && payload.last() == Some(&b'}');
        let crc = u32::from_le_bytes(rest[4..8].try_into().ok()?);
        (shaped && checksum(&rest[..4], payload) == crc).then_some(base + i as u64)
    })
}

/// Where the journal's whole records end, read without changing anything.
pub fn end_of(dir: &Path) -> Result<JournalPos, StoreError> {
    let Some(&last) = list_segments(dir)?.last() else {
        return Ok(JournalPos::START);
    };
    read_segment(
        dir,
        last,
        HEADER_LEN,
        true,
        |_, _| Ok::<_, StoreError>(()),
        |_| {},
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every record of segment 1 of `dir`, read backwards in stretches of `chunk` bytes, in
    /// file order; `None` when the reader declines.
    fn backwards(dir: &Path, newest: bool, chunk: u64) -> Option<Vec<(JournalPos, Vec<u8>)>> {
        let mut stretches = Vec::new();
        let plain = read_segment_backwards(dir, 1, newest, chunk, |records| {
            stretches.push(
                records
                    .into_iter()
                    .map(|(at, p)| (at, p.to_vec()))
                    .collect::<Vec<_>>(),
            );
            Ok(true)
        })
        .unwrap();
        plain.then(|| stretches.into_iter().rev().flatten().collect())
    }

    #[test]
    fn a_segment_read_backwards_in_stretches_gives_each_record_once_as_read_forwards() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(dir.path(), 1 << 20).unwrap();
        // Records of very different sizes, one much longer than a stretch.
        for i in 0..300usize {
            let pad = if i == 150 { 5000 } else { (i * 37) % 300 };
            let payload = format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(pad));
            j.append(&[payload.into_bytes()]).unwrap();
        }
        j.sync().unwrap();
        let mut forwards = Vec::new();
        read_segment(
            dir.path(),
            1,
            HEADER_LEN,
            true,
            |at, p| {
                forwards.push((at, p.to_vec()));
                Ok::<(), StoreError>(())
            },
            |d| panic!("{d}"),
        )
        .unwrap();
        for chunk in [64, 1000, 4096, 1 << 20] {
            assert_eq!(
                backwards(dir.path(), true, chunk).as_ref(),
                Some(&forwards),
                "stretches of {chunk} bytes"
            );
        }
        // A torn tail on the newest segment is where reading starts; on an older one it is
        // damage, left to a whole read.
        let path = segment_path(dir.path(), 1);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[200, 0, 0, 0, 1, 2]).unwrap();
        assert_eq!(backwards(dir.path(), true, 4096).as_ref(), Some(&forwards));
        assert_eq!(backwards(dir.path(), false, 4096), None);
        // Damage between records: declined, not skipped.
        let mut bytes = fs::read(&path).unwrap();
        let middle = forwards[100].0.offset as usize - 3;
        bytes[middle] ^= 0xff;
        fs::write(&path, &bytes[..bytes.len() - 6]).unwrap();
        assert_eq!(backwards(dir.path(), true, 4096), None);
        assert_eq!(backwards(dir.path(), true, 1 << 20), None);
    }

    #[test]
    fn records_round_trip_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, recovery) = Journal::open(dir.path(), 4096).unwrap();
        assert!(recovery.torn.is_none());
        let payloads: Vec<Vec<u8>> = (0..200)
            .map(|i| format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(i)).into_bytes())
            .collect();
        for chunk in payloads.chunks(7) {
            j.append(chunk).unwrap();
        }
        j.sync().unwrap();
        assert!(list_segments(dir.path()).unwrap().len() > 1);
        let mut got = Vec::new();
        let end = read_from(
            dir.path(),
            JournalPos::START,
            |_, p| {
                got.push(p.to_vec());
                Ok::<(), StoreError>(())
            },
            |d| panic!("{d}"),
        )
        .unwrap();
        assert_eq!(got.len(), payloads.len());
        let mut chain = Chain::default();
        for (stored, payload) in got.iter().zip(&payloads) {
            // Each record is the payload sealed into the chain, which runs across segments.
            assert_eq!(stored, &chain.seal(payload).unwrap());
        }
        assert_eq!(j.head(), chain.head);
        assert_eq!(end, j.end());
    }

    #[test]
    fn reopening_continues_the_chain_and_a_legacy_journal_gets_a_chained_segment() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(dir.path(), 1 << 20).unwrap();
        j.append(&[b"{\"a\":1}", b"{\"a\":2}"]).unwrap();
        let head = j.head().unwrap();
        assert_eq!(head.seq, 1);
        drop(j);
        let (mut j, _) = Journal::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(j.head(), Some(head));
        j.append(&[b"{\"a\":3}"]).unwrap();
        assert_eq!(j.head().unwrap().seq, 2);

        // A legacy (format 1) segment is left as it is; appending starts segment 2 at seq 0.
        let legacy = tempfile::tempdir().unwrap();
        let mut bytes = header(1).to_vec();
        bytes[7] = b'1';
        let payload = b"{\"old\":true}";
        let len = (payload.len() as u32).to_le_bytes();
        bytes.extend_from_slice(&len);
        bytes.extend_from_slice(&checksum(&len, payload).to_le_bytes());
        bytes.extend_from_slice(payload);
        fs::write(segment_path(legacy.path(), 1), &bytes).unwrap();
        let (mut j, _) = Journal::open(legacy.path(), 1 << 20).unwrap();
        assert_eq!(j.head(), None);
        j.append(&[b"{\"new\":true}"]).unwrap();
        assert_eq!(list_segments(legacy.path()).unwrap(), vec![1, 2]);
        assert_eq!(fs::read(segment_path(legacy.path(), 1)).unwrap(), bytes);
        assert_eq!(format_of(legacy.path(), 1).unwrap(), Some(FORMAT_LEGACY));
        assert_eq!(format_of(legacy.path(), 2).unwrap(), Some(FORMAT));
        assert_eq!(j.head().unwrap().seq, 0);
    }

    #[test]
    fn a_format_2_journal_gets_a_format_3_segment_and_its_chain_runs_on() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(dir.path(), 1 << 20).unwrap();
        j.append(&[b"{\"a\":1}"]).unwrap();
        let head = j.head().unwrap();
        drop(j);
        // Make segment 1 a format-2 segment, as an earlier version wrote it.
        let path = segment_path(dir.path(), 1);
        let mut bytes = fs::read(&path).unwrap();
        bytes[7] = b'0' + FORMAT_CHAINED;
        fs::write(&path, &bytes).unwrap();
        let (mut j, _) = Journal::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(j.head(), Some(head));
        j.append(&[b"{\"a\":2}"]).unwrap();
        assert_eq!(j.head().unwrap().seq, 1, "the chain runs on");
        assert_eq!(list_segments(dir.path()).unwrap(), vec![1, 2]);
        assert_eq!(format_of(dir.path(), 1).unwrap(), Some(FORMAT_CHAINED));
        assert_eq!(format_of(dir.path(), 2).unwrap(), Some(FORMAT));
        assert_eq!(
            fs::read(&path).unwrap(),
            bytes,
            "the old segment is left as it was"
        );
    }

    #[test]
    fn a_segment_of_a_newer_format_is_refused_with_its_own_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = header(1).to_vec();
        bytes[7] = b'4';
        fs::write(segment_path(dir.path(), 1), &bytes).unwrap();
        let err = Journal::open(dir.path(), 1 << 20).unwrap_err();
        assert!(
            matches!(err, StoreError::NewerFormat { found: 4, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("newer"), "{err}");
    }

    #[test]
    fn reopening_continues_after_the_last_record() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(dir.path(), 1 << 20).unwrap();
        j.append(&[b"{\"a\":1}"]).unwrap();
        let end = j.end();
        drop(j);
        let (mut j, recovery) = Journal::open(dir.path(), 1 << 20).unwrap();
        assert!(recovery.torn.is_none());
        assert_eq!(j.end(), end);
        j.append(&[b"{\"b\":2}"]).unwrap();
        let mut n = 0;
        read_from(
            dir.path(),
            JournalPos::START,
            |_, _| {
                n += 1;
                Ok::<(), StoreError>(())
            },
            |_| {},
        )
        .unwrap();
        assert_eq!(n, 2);
    }

    #[test]
    fn a_roll_back_drops_what_was_not_synced_and_the_chain_goes_on_from_the_durable_head() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(dir.path(), 1 << 20).unwrap();
        j.append(&[b"{\"a\":1}", b"{\"a\":2}"]).unwrap();
        j.sync().unwrap();
        let (durable_end, durable_head) = (j.end(), j.head());
        j.append(&[b"{\"a\":3}", b"{\"a\":4}", b"{\"a\":5}"])
            .unwrap();
        assert_eq!(j.roll_back(), 3, "the three unsynced records");
        assert_eq!((j.end(), j.head()), (durable_end, durable_head));
        let path = segment_path(dir.path(), 1);
        assert_eq!(
            fs::metadata(&path).unwrap().len(),
            durable_end.offset,
            "cut off"
        );
        j.append(&[b"{\"a\":6}"]).unwrap();
        j.sync().unwrap();
        let mut seqs = Vec::new();
        read_from(
            dir.path(),
            JournalPos::START,
            |_, p| {
                seqs.push(chain::Link::of(p).unwrap().seq.unwrap());
                Ok::<(), StoreError>(())
            },
            |d| panic!("{d}"),
        )
        .unwrap();
        assert_eq!(
            seqs,
            [0, 1, 2],
            "the chain goes on from the durable head, no gap"
        );
        assert_eq!(
            list_segments(dir.path()).unwrap(),
            [1, 2],
            "after a cut, a new segment: nobody reads new records from a stale position"
        );
    }

    #[test]
    fn a_foreign_file_is_refused_not_truncated() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(segment_path(dir.path(), 1), b"this is not a journal at all").unwrap();
        let err = Journal::open(dir.path(), 1 << 20).unwrap_err();
        assert!(matches!(err, StoreError::NotASegment { .. }), "{err}");
        assert_eq!(
            fs::read(segment_path(dir.path(), 1)).unwrap(),
            b"this is not a journal at all"
        );
    }
}
