//! `import`, `anomalies`, `analyze user` and `analyze tools` (issue 10 items 1, 2 and 6): the
//! analytics over the store, after the fact, never on the message path.
//!
//! # How much is read
//!
//! `anomalies` and `analyze user` read the window and, before it, `[analytics]
//! baseline_days` of history (default 28: every weekday four times and a month-end), because
//! the detectors judge each subject against its own past and its peers: a first use, a new
//! network or an unusual hour is only new against that history, and a subject with less than
//! [`crate::analytics::anomalies::WARM_UP_DAYS`] of it is not judged on novelty. Findings are
//! reported when their window meets the command's. `analyze tools` reads the window only.
//! Reading is one pass over the journals ([`crate::analytics::read`], [`crate::store::scan`]);
//! what is held is one call per access event of the range read.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::analytics::behaviour::{self, ToolsReport, UserReport};
use crate::analytics::{Call, anomalies, read};
use crate::audit::event::Imported;
use crate::audit::{AuditError, AuditEvent, EventId, writer};
use crate::cli::{AnalyzeToolsArgs, AnalyzeUserArgs, AnomaliesArgs, ImportArgs, WindowArgs};
use crate::config::{Config, Durability};
use crate::store::{self, Store, StoreError};
use crate::telemetry::one_line;

/// Errors of the analytics commands, each saying what to do.
#[derive(Debug, thiserror::Error)]
pub enum AnalyticsError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Writing the output failed.
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
    /// There is no store to read.
    #[error("no audit store at {}\n  hint: check audit.store_dir in the config; the store is created when the proxy first runs (or by `import`)", path.display())]
    NoStore {
        /// The configured store folder.
        path: PathBuf,
    },
    /// The import file cannot be read or spooled.
    #[error("cannot {op} {}: {source}\n  hint: {}", path.display(), file_hint(op))]
    File {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Lines of the import file that cannot be imported; nothing was written.
    #[error("{file}: {count} line(s) cannot be imported; nothing was imported\n{}{}\n  hint: fix or remove those lines and run import again (the whole file is checked before anything is written)", lines.iter().map(|l| format!("  {l}\n")).collect::<String>(), if *count > lines.len() { format!("  … and {} more\n", count - lines.len()) } else { String::new() })]
    BadLines {
        /// The file as given.
        file: String,
        /// How many lines are bad.
        count: usize,
        /// The first of them, `line N: what is wrong`, in line order.
        lines: Vec<String>,
    },
    /// The file holds no event (empty, or blank lines only): nothing was written.
    #[error(
        "{file} holds no event to import; nothing was imported\n  hint: give a file of JSON lines as `events --json` writes them (one event per line), or `-` to read them from standard input"
    )]
    Empty {
        /// The file as given.
        file: String,
    },
    /// The index is held by a running proxy: ids cannot be checked against the store.
    #[error("the audit index of {} is held by another mcp-audit-proxy process, so the file's event ids cannot be checked against the store\n  hint: import while no proxy or gateway writes to this store (or into another store, then query that)", path.display())]
    IndexBusy {
        /// The store folder.
        path: PathBuf,
    },
    /// The writer failed part-way (after the file was checked).
    #[error(
        "the audit writer failed after {written} of {total} events were imported: {source}\n  hint: the events written stay (the journal is append-only) and are listed by `events`; once the cause is fixed, run the same import again with --skip-stored: the events already in the store are skipped"
    )]
    Write {
        /// Events durable before the failure.
        written: usize,
        /// Events to import.
        total: usize,
        /// The writer's error.
        source: AuditError,
    },
    /// A thread or runtime could not be started.
    #[error("cannot start {what}: {source}")]
    Start {
        /// What.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// The window is empty.
    #[error("--since is after --until\n  hint: give --since earlier than --until")]
    EmptyWindow,
    /// `--since` is in the future.
    #[error(
        "--since {since} is in the future (now is {now}): the trail holds nothing from then\n  hint: give --since in the past"
    )]
    FutureSince {
        /// `--since`, RFC 3339.
        since: String,
        /// Now, RFC 3339.
        now: String,
    },
    /// `analyze user` names a user the store has never seen.
    #[error("the audit store {} holds no events and no key of user {user:?}\n  hint: check the spelling (user_id exactly as recorded: `events --json` shows it); a user already erased has no key left either", store.display())]
    UnknownUser {
        /// The store folder.
        store: PathBuf,
        /// The user asked for.
        user: String,
    },
    /// Looking the user up failed.
    #[error(transparent)]
    Query(#[from] crate::commands::ModeError),
    /// Part of the trail could not be read: figures from the rest would leave its calls out.
    #[error("the audit trail in {} is damaged: {count} span(s) could not be read (first: {first}); figures from the rest would leave their calls out\n  hint: `mcp-audit-proxy verify` shows what is damaged; restore the segment from a backup, or pass --allow-damaged to analyse what can still be read", store.display())]
    Damaged {
        /// The store folder.
        store: PathBuf,
        /// Damaged spans met.
        count: usize,
        /// The first of them.
        first: String,
    },
    /// The store shows that records it once held are gone ([`store::lost_records`]).
    #[error("the audit trail in {} has lost records: {first}{}\n  hint: figures from what is left would leave those calls out; `mcp-audit-proxy verify` reports the loss. Pass --allow-damaged to analyse what is left; once the loss is investigated (and the journals restored, if a backup holds them), move the store's index.replaced* folders, the evidence of the loss, out of the store folder to read it without --allow-damaged", store.display(), if *count > 1 { format!(" (and {} more)", count - 1) } else { String::new() })]
    Lost {
        /// The store folder.
        store: PathBuf,
        /// Losses found.
        count: usize,
        /// The first of them.
        first: String,
    },
}

/// What to do when `op` failed on a file of `import`: the input, or the spool in the store.
fn file_hint(op: &str) -> &'static str {
    if op.contains("spool") {
        "check the free space and the permissions of the store's folder"
    } else {
        "check the path, and that this user may read the file (`-` reads stdin)"
    }
}

/// Bad lines shown in the error (the count says how many there were).
const SHOWN_ERRORS: usize = 20;
/// Events handed to the writer before waiting for the oldest to be durable: the writer makes
/// each batch durable with one sync, so this bounds memory, not speed.
const IN_FLIGHT: usize = 4096;

/// What `import` made of a new store (its folder, its marker), removed unless kept: a
/// refused file leaves the store as it found it.
struct MadeStore {
    folder: Option<PathBuf>,
    marker: Option<PathBuf>,
}

impl MadeStore {
    /// Events are being written: the store stays.
    fn keep(&mut self) {
        (self.folder, self.marker) = (None, None);
    }
}

impl Drop for MadeStore {
    fn drop(&mut self) {
        if let Some(marker) = &self.marker {
            let _ = std::fs::remove_file(marker);
        }
        if let Some(folder) = &self.folder {
            // Only when empty (the spool is gone by now: it is dropped first).
            let _ = std::fs::remove_dir(folder);
        }
    }
}

/// The event spooled at `offset` (`len` bytes) of the spool file `path`, read through `file`
/// (opened at the first call).
fn spooled_event(
    file: &mut Option<std::fs::File>,
    offset: u64,
    len: usize,
    path: &Path,
) -> Result<AuditEvent, AnalyticsError> {
    use std::io::{Read, Seek, SeekFrom};
    let err = |e: std::io::Error| AnalyticsError::File {
        op: "read the spool file",
        path: path.to_path_buf(),
        source: e,
    };
    let file = match file {
        Some(f) => f,
        None => file.insert(std::fs::File::open(path).map_err(err)?),
    };
    file.seek(SeekFrom::Start(offset)).map_err(err)?;
    let mut buf = vec![0; len];
    file.read_exact(&mut buf).map_err(err)?;
    serde_json::from_slice(&buf).map_err(|e| err(e.into()))
}

/// Whether `stored` is the event `line` would store, but for where and when it was imported
/// (`metadata.imported`'s `at`, `source` and `line`), how the store holds its personal
/// fields (`metadata.personal_data`), and the link to its end that readers add to an access
/// event (stored without it).
fn same_but_imported(stored: &AuditEvent, line: &AuditEvent) -> bool {
    let plain = |e: &AuditEvent| {
        let mut e = e.clone();
        e.metadata.personal_data = None;
        if line.linked_event_id.is_none() {
            e.linked_event_id = None;
        }
        if let Some(i) = &mut e.metadata.imported {
            (i.at, i.source, i.line) = (String::new(), String::new(), 0);
        }
        serde_json::to_value(&e).ok()
    };
    plain(stored).is_some_and(|s| Some(s) == plain(line))
}

/// Removes the spool file however `import` ends.
struct Spool(PathBuf);

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Members of `given` that `kept` (the event as this version writes it) lacks: members this
/// version does not know, which importing would drop. Null and empty-array members are the
/// defaults of absent ones.
fn unknown_members(given: &Value, kept: &Value, at: &str, out: &mut Vec<String>) {
    let (Value::Object(g), Value::Object(k)) = (given, kept) else {
        return;
    };
    for (name, v) in g {
        let path = if at.is_empty() {
            name.clone()
        } else {
            format!("{at}.{name}")
        };
        match k.get(name) {
            Some(kv) if path != "metadata.arguments" => unknown_members(v, kv, &path, out),
            Some(_) => {}
            None if v.is_null() || v.as_array().is_some_and(Vec::is_empty) => {}
            None => out.push(path),
        }
    }
}

/// How far after now an imported event may be dated (clocks of two hosts a little apart).
const FUTURE_SKEW_MS: u64 = 5 * 60 * 1000;

/// Checks one line: the event to store (marked imported), or what is wrong.
fn check_line(
    text: &str,
    source: &str,
    line: u64,
    (now, now_ms): (&str, u64),
) -> Result<AuditEvent, String> {
    // serde_json says "at line 1 column 9" of the one line it was given.
    let within = |e: serde_json::Error| match e.line() {
        0 => e.to_string(),
        _ => {
            let text = e.to_string();
            let place = format!(" at line {} column {}", e.line(), e.column());
            match text.strip_suffix(&place) {
                Some(what) => format!("{what} at column {}", e.column()),
                None => text,
            }
        }
    };
    let mut event: AuditEvent =
        serde_json::from_str(text).map_err(|e| format!("not an audit event: {}", within(e)))?;
    let given: Value =
        serde_json::from_str(text).map_err(|e| format!("not JSON: {}", within(e)))?;
    let kept = serde_json::to_value(&event).map_err(|e| format!("cannot be encoded: {e}"))?;
    let mut unknown = Vec::new();
    unknown_members(&given, &kept, "", &mut unknown);
    if !unknown.is_empty() {
        return Err(format!(
            "unknown member(s) {} (this version would drop them; upgrade mcp-audit-proxy, or remove them)",
            unknown.join(", ")
        ));
    }
    let id_ms = event.event_id.0.timestamp_ms();
    let ts_ms = event
        .timestamp
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    if id_ms.abs_diff(ts_ms) > 1000 {
        return Err(format!(
            "event_id {} was made at {} but timestamp says {}: the store finds events by time through their ids, so queries would miss it",
            event.event_id,
            crate::analytics::ms_time::text(id_ms),
            crate::analytics::ms_time::text(ts_ms)
        ));
    }
    // A record of the past: an event dated later than now (beyond clocks a little apart)
    // would top every listing of the store for years.
    if ts_ms > now_ms + FUTURE_SKEW_MS {
        return Err(format!(
            "timestamp {} is in the future (now is {}): only events that happened can be imported",
            crate::analytics::ms_time::text(ts_ms),
            crate::analytics::ms_time::text(now_ms)
        ));
    }
    // How a store held the personal fields is said on reading, never stored (`events --json`
    // output carries it): this store seals them its own way.
    event.metadata.personal_data = None;
    // Imported before (from a store that had imported it): that record is kept.
    let earlier = match event.metadata.imported.take() {
        Some(mut before) => {
            let mut all = std::mem::take(&mut before.earlier);
            all.push(before);
            all
        }
        None => Vec::new(),
    };
    event.metadata.imported = Some(Imported {
        at: now.to_string(),
        source: source.to_string(),
        line,
        earlier,
    });
    // What the writer will seal: refused now rather than half-way through the import.
    let payload = serde_json::to_vec(&event).map_err(|e| format!("cannot be encoded: {e}"))?;
    store::canonical::canonicalize(&payload)
        .map_err(|e| format!("cannot be made a chained record: {e}"))?;
    Ok(event)
}

/// Reads past the rest of a line without keeping it; returns how many bytes it held.
fn skip_line(input: &mut dyn BufRead) -> std::io::Result<u64> {
    let mut skipped = 0u64;
    loop {
        let buf = input.fill_buf()?;
        if buf.is_empty() {
            return Ok(skipped);
        }
        match memchr::memchr(b'\n', buf) {
            Some(at) => {
                input.consume(at + 1);
                return Ok(skipped + at as u64 + 1);
            }
            None => {
                let n = buf.len();
                input.consume(n);
                skipped += n as u64;
            }
        }
    }
}

/// `import FILE`: checks every line (JSON, fields, ids, duplicates within the file and with
/// the store), spooling the checked events beside the store; only when all are good, writes
/// them through the audit writer in id order (sealed into a new journal's chain, checkpointed, indexed,
/// bounded by `audit.max_stored_argument_bytes` and `audit.max_store_bytes` as the proxy's
/// writer is), each with `metadata.imported`. Returns the exit code.
pub fn import(
    args: &ImportArgs,
    config: &Config,
    stdin: &mut impl BufRead,
    out: &mut impl Write,
) -> Result<i32, AnalyticsError> {
    let root = &config.audit.store_dir;
    let source = args.file.display().to_string();
    let file_err = |op, source| AnalyticsError::File {
        op,
        path: args.file.clone(),
        source,
    };
    let mut file;
    let input: &mut dyn BufRead = if source == "-" {
        stdin
    } else {
        file = BufReader::new(std::fs::File::open(&args.file).map_err(|e| file_err("open", e))?);
        &mut file
    };
    // A store this import makes is taken back if nothing is imported: a folder with only
    // the marker in it is no store to the other commands ("no audit store").
    let mut made = MadeStore {
        folder: (!root.exists()).then(|| root.clone()),
        marker: (!root.join(crate::store::marker::MARKER).exists())
            .then(|| root.join(crate::store::marker::MARKER)),
    };
    if root.exists() && !root.is_dir() {
        return Err(StoreError::NotAFolder { path: root.clone() }.into());
    }
    std::fs::create_dir_all(root).map_err(|e| StoreError::io("create", root, e))?;
    // The folder must be a store (made one when new) before the spool goes into it: a spool
    // file in a new folder would make it look like a folder of other files.
    crate::store::marker::check(root, crate::store::marker::Access::Write)?;
    let spool = Spool(root.join(format!(".import-{}.jsonl", std::process::id())));
    let mut spooled = std::io::BufWriter::new(std::fs::File::create(&spool.0).map_err(|e| {
        AnalyticsError::File {
            op: "create the spool file",
            path: spool.0.clone(),
            source: e,
        }
    })?);
    let now_time = SystemTime::now();
    let now = humantime::format_rfc3339_micros(now_time).to_string();
    let now_ms = now_time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut errors: Vec<(u64, String)> = Vec::new();
    let mut ids: HashMap<EventId, u64> = HashMap::new();
    // The line of each event that links to another, and the id it names.
    let mut links: Vec<(u64, EventId)> = Vec::new();
    // Where each spooled event is (id, offset, length), to write them in id order: a journal's
    // ids grow in file order, as a proxy writes them, and readers rely on it (the newest
    // events are read from a journal's end; a read stops at the first id before its range).
    let mut places: Vec<(EventId, u64, usize)> = Vec::new();
    let mut in_order = true;
    let mut offset = 0u64;
    let mut buf = Vec::new();
    let mut bytes = Vec::new();
    let mut line = 0u64;
    // A line longer than any event a proxy with this config writes is refused unread
    // (helper-94 F11: a 100 MB line took 807 MB before it was refused): its texts are cut to
    // `audit.max_stored_argument_bytes` each (arguments, error, reason...), its names to a
    // message's length.
    let max_line = config
        .limits
        .max_message_bytes
        .max(config.audit.max_stored_argument_bytes.saturating_mul(8))
        .saturating_mul(2);
    loop {
        bytes.clear();
        let n = <&mut dyn BufRead as std::io::Read>::take(&mut *input, max_line as u64 + 1)
            .read_until(b'\n', &mut bytes)
            .map_err(|e| file_err("read", e))?;
        if n == 0 {
            break;
        }
        line += 1;
        if bytes.len() > max_line {
            let rest = match bytes.ends_with(b"\n") {
                true => 0,
                false => skip_line(input).map_err(|e| file_err("read", e))?,
            };
            errors.push((
                line,
                format!(
                    "is {} bytes, longer than any event ({max_line} bytes: twice the larger of limits.max_message_bytes and 8 x audit.max_stored_argument_bytes; raise them to import it)",
                    bytes.len() as u64 + rest
                ),
            ));
            bytes = Vec::new();
            continue;
        }
        const WIDE: &str = "; a UTF-16 file? convert it first: iconv -f UTF-16 -t UTF-8";
        if bytes.contains(&0) {
            // Never in JSON text (RFC 8259 §7: control characters are escaped in strings).
            errors.push((line, format!("holds NUL bytes{WIDE}")));
            continue;
        }
        let text = match std::str::from_utf8(&bytes) {
            // A byte order mark at the start of the file (Windows tools write one): RFC 8259
            // §8.1 lets a parser ignore it.
            Ok(text) if line == 1 => text.strip_prefix('\u{feff}').unwrap_or(text),
            Ok(text) => text,
            Err(e) => {
                errors.push((
                    line,
                    format!("not UTF-8 (byte {} of the line){WIDE}", e.valid_up_to() + 1),
                ));
                continue;
            }
        };
        if text.trim().is_empty() {
            continue;
        }
        match check_line(
            text.trim_end_matches(['\n', '\r']),
            &source,
            line,
            (&now, now_ms),
        ) {
            Ok(event) => {
                if let Some(linked) = event.linked_event_id {
                    links.push((line, linked));
                }
                if let Some(first) = ids.insert(event.event_id, line) {
                    ids.insert(event.event_id, first);
                    errors.push((
                        line,
                        format!("event_id {} repeats line {first}", event.event_id),
                    ));
                    continue;
                }
                buf.clear();
                serde_json::to_writer(&mut buf, &event)
                    .map_err(std::io::Error::from)
                    .and_then(|()| spooled.write_all(&buf))
                    .and_then(|()| spooled.write_all(b"\n"))
                    .map_err(|e| AnalyticsError::File {
                        op: "write the spool file",
                        path: spool.0.clone(),
                        source: e,
                    })?;
                in_order &= places.last().is_none_or(|p| p.0 < event.event_id);
                places.push((event.event_id, offset, buf.len()));
                offset += buf.len() as u64 + 1;
            }
            Err(e) => errors.push((line, e)),
        }
    }
    spooled.flush().map_err(|e| AnalyticsError::File {
        op: "write the spool file",
        path: spool.0.clone(),
        source: e,
    })?;
    drop(spooled);
    // Ids already in the store: refused, or skipped with --skip-stored.
    let mut stored = std::collections::HashSet::new();
    if root.join("journal").is_dir() && !ids.is_empty() {
        let Some((index, _lock, report)) = store::open_for_query(root)? else {
            return Err(AnalyticsError::IndexBusy { path: root.clone() });
        };
        super::log_open(&report);
        let place: HashMap<EventId, (u64, usize)> = if args.skip_stored {
            places
                .iter()
                .map(|&(id, at, len)| (id, (at, len)))
                .collect()
        } else {
            HashMap::new()
        };
        let mut spool_file = None;
        for (id, at) in &ids {
            if let Some(there) = index.get(*id)? {
                if args.skip_stored {
                    // helper-91 L4: skipped by its id alone, a changed line was dropped
                    // silently. Only the very event an earlier import wrote is skipped, as the
                    // writer stored it (long values cut, helper-93).
                    let (offset, len) = place[id];
                    let mine = spooled_event(&mut spool_file, offset, len, &spool.0)?;
                    let mine =
                        crate::audit::bound::bound(&mine, config.audit.max_stored_argument_bytes)
                            .unwrap_or(mine);
                    if same_but_imported(&there, &mine) {
                        stored.insert(*id);
                    } else {
                        errors.push((*at, format!("event_id {id} is already in the store with different content: --skip-stored skips only events stored as the file has them; compare them (`events show {id} --json`), then remove the line or correct it")));
                    }
                } else {
                    errors.push((*at, format!("event_id {id} is already in the store (to skip the events a stopped import already wrote, add --skip-stored)")));
                }
            }
        }
        // An imported end linked to a call this store's proxies recorded would close that
        // call with an outcome it never had, and keep the next proxy from settling it
        // (helper-116 M1): an imported event links only to events of its file or imported
        // earlier.
        for (at, linked) in links.iter().filter(|(_, l)| !ids.contains_key(l)) {
            if let Some(there) = index.get(*linked)?
                && there.metadata.imported.is_none()
            {
                errors.push((*at, format!("linked_event_id {linked} names an event this store's own proxies recorded: an imported event may link only to events of its file or imported earlier (an imported end would give that call an outcome it never had); remove the line or its link")));
            }
        }
        index.close()?;
    }
    if !errors.is_empty() {
        errors.sort();
        return Err(AnalyticsError::BadLines {
            file: source,
            count: errors.len(),
            lines: errors
                .iter()
                .take(SHOWN_ERRORS)
                .map(|(l, e)| format!("line {l}: {e}"))
                .collect(),
        });
    }
    if ids.is_empty() {
        return Err(AnalyticsError::Empty { file: source });
    }
    drop(ids);
    let skipped = stored.len();
    if skipped > 0 {
        places.retain(|p| !stored.contains(&p.0));
    }
    drop(stored);
    let total = places.len();
    if total == 0 {
        writeln!(
            out,
            "all {skipped} events of {source} are already in {}; nothing was imported",
            root.display()
        )?;
        return Ok(0);
    }
    if in_order && skipped == 0 {
        places = Vec::new(); // read front to back
    } else {
        places.sort_unstable_by_key(|p| p.0);
    }

    // Everything checked: write through the audit writer, as a proxy does.
    made.keep();
    let store = Store::open_journal(root, config.audit.segment_bytes)?;
    let journal_id = store.id;
    let (mut journal, keeper, lock) = store.into_parts(root);
    // Imported events are stored as a proxy stores them: personal fields sealed per user.
    if config.audit.encrypt_personal_data {
        journal.encrypt_personal_data(root);
    }
    let plan = writer::CheckpointPlan::new(
        &journal,
        config.audit.signer.clone(),
        config.audit.checkpoint_every_events,
        config.audit.checkpoint_interval,
    );
    // Bounded as the proxy's writer is: arguments and error texts cut to
    // audit.max_stored_argument_bytes, the store's size held to audit.max_store_bytes (with
    // audit.on_store_failure past it); the writer's own events name the operator.
    let guard = writer::StoreGuard {
        root: root.clone(),
        max_bytes: config.audit.max_store_bytes,
        on_failure: config.audit.on_store_failure,
        user_id: config.user_id.clone().unwrap_or_else(super::os_user),
        upstream: "import".into(),
    };
    let (sink, threads) = writer::start_guarded(
        journal,
        keeper,
        Durability::Sync,
        config.audit.flush_interval,
        config.audit.queue_capacity,
        plan,
        guard,
    )
    .map_err(|source| AnalyticsError::Start {
        what: "the audit writer",
        source,
    })?;
    let sink = sink.with_max_stored(config.audit.max_stored_argument_bytes);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|source| AnalyticsError::Start {
            what: "the async runtime",
            source,
        })?;
    let spool_file = std::fs::File::open(&spool.0).map_err(|e| AnalyticsError::File {
        op: "read the spool file",
        path: spool.0.clone(),
        source: e,
    })?;
    // The spooled lines, in id order: front to back when the file was in order, else each
    // read at its place.
    let lines: Box<dyn Iterator<Item = std::io::Result<String>>> = if places.is_empty() {
        Box::new(BufReader::new(spool_file).lines())
    } else {
        use std::os::unix::fs::FileExt;
        Box::new(places.into_iter().map(move |(_, at, len)| {
            let mut bytes = vec![0; len];
            spool_file.read_exact_at(&mut bytes, at)?;
            String::from_utf8(bytes).map_err(std::io::Error::other)
        }))
    };
    let result: Result<usize, AnalyticsError> = runtime.block_on(async {
        let mut acks = VecDeque::new();
        let mut written = 0usize;
        let fail = |written, source| AnalyticsError::Write {
            written,
            total,
            source,
        };
        for l in lines {
            let l = l.map_err(|e| AnalyticsError::File {
                op: "read the spool file",
                path: spool.0.clone(),
                source: e,
            })?;
            let event: AuditEvent = serde_json::from_str(&l).map_err(|e| {
                fail(
                    written,
                    AuditError::Unavailable {
                        reason: format!("a spooled event does not read back: {e}"),
                    },
                )
            })?;
            acks.push_back(sink.record(&event).map_err(|e| fail(written, e))?);
            if acks.len() >= IN_FLIGHT
                && let Some(ack) = acks.pop_front()
            {
                ack.wait().await.map_err(|e| fail(written, e))?;
                written += 1;
            }
        }
        while let Some(ack) = acks.pop_front() {
            ack.wait().await.map_err(|e| fail(written, e))?;
            written += 1;
        }
        Ok(written)
    });
    runtime.block_on(sink.close());
    threads.join();
    drop(lock);
    let written = result?;
    let skipped = match skipped {
        0 => String::new(),
        n => format!("; skipped {n} already in the store"),
    };
    writeln!(
        out,
        "imported {written} events from {source} into {} (journal {journal_id}), each marked metadata.imported{skipped}",
        root.display()
    )?;
    Ok(0)
}

/// The window `[from, to]` of `args`, `default` before now when `--since` is not given. An
/// `--until` after now is now: the store holds nothing later, and a window reaching into the
/// future would make a report of days to come (a row per day up to 2999, say) and set the
/// previous period of the same length back to 1970.
pub(crate) fn window(
    args: &WindowArgs,
    default: Duration,
) -> Result<(SystemTime, SystemTime), AnalyticsError> {
    let now = SystemTime::now();
    if let Some(since) = args.since.filter(|since| *since > now) {
        return Err(AnalyticsError::FutureSince {
            since: humantime::format_rfc3339_seconds(since).to_string(),
            now: humantime::format_rfc3339_seconds(now).to_string(),
        });
    }
    if args.until.is_some_and(|until| until > now) {
        tracing::info!("--until is after now: the window ends now");
    }
    let to = args.until.map_or(now, |until| until.min(now));
    let from = args.since.unwrap_or_else(|| to - default);
    if from > to {
        return Err(AnalyticsError::EmptyWindow);
    }
    Ok((from, to))
}

pub(crate) fn ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The store's directory, if it holds journals of a store this version reads (its marker,
/// [`store::marker::check`]: a newer layout is refused, as every other command refuses it).
fn store_of(config: &Config) -> Result<&std::path::Path, AnalyticsError> {
    let root = &config.audit.store_dir;
    if !store::marker::check(root, store::Access::Read)? || !root.join("journal").is_dir() {
        return Err(AnalyticsError::NoStore { path: root.clone() });
    }
    Ok(root)
}

/// Refuses a trail that has lost records unless `allow_damaged` (helper-94 F1: a journal
/// deleted or cut back read as a user with no calls, exit 0). Before the scan (a refused
/// trail is not read first) and after it (a journal lost while it was read).
pub(crate) fn check_losses(
    root: &std::path::Path,
    allow_damaged: bool,
) -> Result<(), AnalyticsError> {
    let lost = store::lost_records(root)?;
    match lost.first() {
        Some(first) if !allow_damaged => {
            return Err(AnalyticsError::Lost {
                store: root.to_path_buf(),
                count: lost.len(),
                first: first.clone(),
            });
        }
        Some(_) => tracing::warn!(
            losses = lost.len(),
            "the trail has lost records; the figures leave them out (--allow-damaged)"
        ),
        // Not checked: only the index shows a journal deleted whole, and this account cannot
        // open it (helper-116 H2: figures over what was left, said nowhere). Said once.
        None => {
            static SAID: std::sync::Once = std::sync::Once::new();
            if let Some(why) = store::write_denied(root) {
                SAID.call_once(|| {
                    tracing::warn!(
                        reason = %why,
                        "this account cannot write the store, so its index could not be compared with the journals: a journal deleted or cut back after it was indexed would not show in these figures (run as the store's owner for that check)"
                    );
                });
            }
        }
    }
    Ok(())
}

/// Logs what reading the store met; refuses a damaged trail unless `allow_damaged`.
pub(crate) fn checked_read(
    root: &std::path::Path,
    report: &read::ReadReport,
    allow_damaged: bool,
) -> Result<(), AnalyticsError> {
    for d in &report.damaged {
        tracing::error!(damage = %d, "audit journal segment damaged");
    }
    tracing::debug!(
        events = report.events,
        calls = report.calls,
        segments = report.segments_read,
        skipped = report.segments_skipped,
        "read the trail"
    );
    match report.damaged.first() {
        Some(first) if !allow_damaged => Err(AnalyticsError::Damaged {
            store: root.to_path_buf(),
            count: report.damaged.len(),
            first: first.to_string(),
        }),
        Some(_) => {
            tracing::warn!(
                spans = report.damaged.len(),
                "the figures leave out the calls of damaged spans of the trail (--allow-damaged)"
            );
            Ok(())
        }
        None => Ok(()),
    }
}

/// The calls of `[from, to]` from the store, ordered by time then id.
fn read_calls(
    config: &Config,
    from: SystemTime,
    to: SystemTime,
    allow_damaged: bool,
) -> Result<Vec<Call>, AnalyticsError> {
    let root = store_of(config)?;
    check_losses(root, allow_damaged)?;
    let (calls, report) = read::calls(root, from, to)?;
    checked_read(root, &report, allow_damaged)?;
    // And after: a journal lost while it was read.
    check_losses(root, allow_damaged)?;
    Ok(calls)
}

fn baseline(config: &Config) -> Duration {
    Duration::from_secs(config.analytics.baseline_days * 86_400)
}

/// The findings whose window meets `[from, to]`, over the window and its baseline, the
/// number of calls read, and of those the calls that pass `keep` (sorted by time).
///
/// The calls are held for the detectors as [`anomalies::Held`] rows (56 bytes a call, texts
/// shared), not as [`Call`]s: the 35 days `anomalies --since 7d` reads are 5 M calls on a
/// 10 M-event trail (issue 10 item 7: at most 500 MB).
fn findings_in(
    config: &Config,
    from: SystemTime,
    to: SystemTime,
    allow_damaged: bool,
    keep: impl Fn(&Call) -> bool + Sync,
) -> Result<(Vec<Call>, usize, Vec<anomalies::Finding>), AnalyticsError> {
    let start = from.checked_sub(baseline(config)).unwrap_or(UNIX_EPOCH);
    let mut held = anomalies::Held::default();
    let mut kept = Vec::new();
    let root = store_of(config)?;
    check_losses(root, allow_damaged)?;
    let report = read::each_call(root, start, to, |c| {
        held.push(&c);
        if keep(&c) {
            kept.push(c);
        }
    })?;
    checked_read(root, &report, allow_damaged)?;
    check_losses(root, allow_damaged)?;
    kept.sort_unstable_by_key(|c| (c.at_ms, c.id));
    let read = held.len();
    let (f, t) = (ms(from), ms(to));
    let findings = anomalies::detect_held(held, &config.analytics.context)
        .into_iter()
        .filter(|x| x.to_ms >= f && x.from_ms <= t)
        .collect();
    Ok((kept, read, findings))
}

fn seconds(ms: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

fn write_findings(out: &mut impl Write, findings: &[anomalies::Finding]) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<20}  {:<20}  {:<12} {:<18} {:<8} {:<28} EXPLANATION",
        "FROM", "TO", "FAMILY", "KIND", "SEVERITY", "SUBJECT"
    )?;
    for f in findings {
        writeln!(
            out,
            "{:<20}  {:<20}  {:<12} {:<18} {:<8} {:<28} {}",
            seconds(f.from_ms),
            seconds(f.to_ms),
            f.family,
            f.kind,
            f.severity,
            one_line(&f.subject_text()),
            one_line(&f.explanation)
        )?;
        let shown: Vec<String> = f.evidence.iter().take(5).map(ToString::to_string).collect();
        let more = f.evidence.len().saturating_sub(5);
        writeln!(
            out,
            "    evidence: {}{}",
            shown.join(" "),
            if more > 0 {
                format!(" (+{more} more: anomalies --json lists them all)")
            } else {
                String::new()
            }
        )?;
    }
    Ok(())
}

/// `anomalies`: the detectors' findings in the window (default: the last 7 days), as a table
/// or one JSON object per line.
pub fn anomalies(
    args: &AnomaliesArgs,
    config: &Config,
    out: &mut impl Write,
) -> Result<(), AnalyticsError> {
    let (from, to) = window(&args.window, Duration::from_secs(7 * 86_400))?;
    let (_, read, findings) = findings_in(config, from, to, args.allow_damaged, |_| false)?;
    if args.window.json {
        for f in &findings {
            serde_json::to_writer(&mut *out, f).map_err(std::io::Error::from)?;
            writeln!(out)?;
        }
    } else {
        write_findings(out, &findings)?;
        writeln!(
            out,
            "\n{} findings from {} to {} ({} calls read, with {} days of history before)",
            findings.len(),
            seconds(ms(from)),
            seconds(ms(to)),
            read,
            config.analytics.baseline_days
        )?;
    }
    Ok(out.flush()?)
}

/// `analyze user U`.
pub fn analyze_user(
    args: &AnalyzeUserArgs,
    config: &Config,
    out: &mut impl Write,
) -> Result<(), AnalyticsError> {
    let (from, to) = window(&args.window, Duration::from_secs(86_400))?;
    let (calls, _, findings) = findings_in(config, from, to, args.allow_damaged, |c| {
        *c.user == *args.user
    })?;
    if calls.is_empty() && !user_known(config, &args.user)? {
        // A misspelt or erased user is not a user with nothing to show (0 calls, score 0).
        return Err(AnalyticsError::UnknownUser {
            store: config.audit.store_dir.clone(),
            user: args.user.clone(),
        });
    }
    let mut report = behaviour::user_report(
        &args.user,
        &calls,
        &findings,
        &config.analytics.context,
        ms(from),
        ms(to),
    );
    (report.high_risk_answers, report.high_risk_answers_total) =
        high_risk_answers(config, Some(&args.user), from, to)?;
    if args.window.json {
        serde_json::to_writer(&mut *out, &report).map_err(std::io::Error::from)?;
        writeln!(out)?;
    } else {
        write_user(out, &report)?;
    }
    Ok(out.flush()?)
}

/// Whether the store has ever seen `user`: a key of theirs, or an event of any time.
pub(crate) fn user_known(config: &Config, user: &str) -> Result<bool, AnalyticsError> {
    let root = &config.audit.store_dir;
    let subject = store::personal::subject_of(root, user).map_err(StoreError::from)?;
    if subject.is_some() {
        return Ok(true);
    }
    let filter = store::Filter {
        user: Some(user.to_string()),
        ..store::Filter::default()
    };
    Ok(!crate::commands::newest(config, 1, &filter)?.is_empty())
}

/// `analyze tools`.
pub fn analyze_tools(
    args: &AnalyzeToolsArgs,
    config: &Config,
    out: &mut impl Write,
) -> Result<(), AnalyticsError> {
    let (from, to) = window(&args.window, Duration::from_secs(86_400))?;
    let calls = read_calls(config, from, to, args.allow_damaged)?;
    let mut report = behaviour::tools_report(&calls, ms(from), ms(to));
    (report.high_risk_answers, report.high_risk_answers_total) =
        high_risk_answers(config, None, from, to)?;
    if args.window.json {
        serde_json::to_writer(&mut *out, &report).map_err(std::io::Error::from)?;
        writeln!(out)?;
    } else {
        write_tools(out, &report)?;
    }
    Ok(out.flush()?)
}

/// The clients' answers to servers' questions (`server_request` events) at `high` or above
/// in `[from, to]`, of `user` when given: the newest 20 as activities (`tool` is the
/// server's method, `elicitation/create`), and how many (counted up to
/// [`ANSWERS_COUNTED`]). Read as `events --type server_request --risk high` reads them
/// (they are rare: no call scan).
fn high_risk_answers(
    config: &Config,
    user: Option<&str>,
    from: SystemTime,
    to: SystemTime,
) -> Result<(Vec<behaviour::Activity>, usize), AnalyticsError> {
    let root = &config.audit.store_dir;
    let filter = store::Filter {
        user: user.map(str::to_string),
        user_subject: match user {
            Some(u) => store::personal::subject_of(root, u).map_err(StoreError::from)?,
            None => None,
        },
        event_type: Some(crate::audit::EventType::ServerRequest),
        min_risk: Some(crate::audit::RiskLevel::High),
        since: Some(from),
        until: Some(to),
        ..store::Filter::default()
    };
    let found = crate::commands::newest(config, ANSWERS_COUNTED, &filter)?;
    let list = found
        .iter()
        .take(20)
        .map(|e| behaviour::Activity {
            event_id: e.event_id.to_string(),
            at: humantime::format_rfc3339_millis(e.timestamp).to_string(),
            user: e.user_id.clone(),
            tool: e.action.clone(),
            risk: e.risk_level.as_str(),
            result: Some(e.result.as_str()),
            reasons: e.metadata.risk_reasons.clone(),
        })
        .collect();
    Ok((list, found.len()))
}

/// How many high-risk answers [`high_risk_answers`] counts at most.
const ANSWERS_COUNTED: usize = 10_000;

fn write_high_risk_answers(
    out: &mut impl Write,
    total: usize,
    newest: &[behaviour::Activity],
) -> std::io::Result<()> {
    if total == 0 {
        return Ok(());
    }
    writeln!(
        out,
        "\nhigh-risk answers to servers' questions (server_request; no calls, counted apart): {total}{}",
        newest_of(total, newest.len())
    )?;
    write_activities(out, newest)
}

fn opt_ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.1}"))
}

fn write_tool_table(out: &mut impl Write, tools: &[behaviour::ToolUsage]) -> std::io::Result<()> {
    writeln!(
        out,
        "  {:<24} {:>7} {:>6} {:>8} {:>9} {:>9}  {:<24} RESULTS",
        "TOOL", "CALLS", "USERS", "SUCCESS", "AVG ms", "P95 ms", "RISK low/med/high/crit"
    )?;
    for t in tools {
        let results: Vec<String> = t.results.iter().map(|(k, v)| format!("{k} {v}")).collect();
        writeln!(
            out,
            "  {:<24} {:>7} {:>6} {:>8} {:>9} {:>9}  {:<24} {}",
            one_line(&t.tool),
            t.calls,
            t.users,
            t.success_rate
                .map_or("-".into(), |r| format!("{:.1}%", r * 100.0)),
            opt_ms(t.avg_execution_ms),
            opt_ms(t.p95_execution_ms),
            format!(
                "{}/{}/{}/{}",
                t.risk.low, t.risk.medium, t.risk.high, t.risk.critical
            ),
            results.join(", ")
        )?;
    }
    Ok(())
}

/// The high-risk calls: how many, then the newest listed.
fn write_high_risk(
    out: &mut impl Write,
    total: usize,
    newest: &[behaviour::Activity],
) -> std::io::Result<()> {
    writeln!(
        out,
        "\nhigh-risk activity: {total} calls (high, critical, refused or blocked){}",
        newest_of(total, newest.len())
    )?;
    write_activities(out, newest)
}

/// `, the newest N:` when a list of `shown` leaves some of `total` out.
fn newest_of(total: usize, shown: usize) -> String {
    if total > shown {
        format!(", the newest {shown}:")
    } else {
        String::new()
    }
}

fn write_activities(out: &mut impl Write, list: &[behaviour::Activity]) -> std::io::Result<()> {
    for a in list {
        writeln!(
            out,
            "  {}  {:<16} {:<20} {:<8} {:<10} {}  {}",
            a.at,
            one_line(&a.user),
            one_line(&a.tool),
            a.risk,
            a.result.unwrap_or("-"),
            a.event_id,
            one_line(&a.reasons.join("; "))
        )?;
    }
    Ok(())
}

fn write_tools(out: &mut impl Write, r: &ToolsReport) -> std::io::Result<()> {
    writeln!(out, "tools from {} to {}: {} calls", r.from, r.to, r.calls)?;
    writeln!(
        out,
        "risk: {} low, {} medium, {} high, {} critical\n",
        r.risk.low, r.risk.medium, r.risk.high, r.risk.critical
    )?;
    write_tool_table(out, &r.tools)?;
    write_high_risk(out, r.high_risk_total, &r.high_risk)?;
    write_high_risk_answers(out, r.high_risk_answers_total, &r.high_risk_answers)
}

fn write_user(out: &mut impl Write, r: &UserReport) -> std::io::Result<()> {
    writeln!(
        out,
        "user {} from {} to {}: {} calls\nbehavioural risk score: {}/100",
        one_line(&r.user),
        r.from,
        r.to,
        r.calls,
        r.risk_score
    )?;
    for p in &r.risk_reasons {
        writeln!(out, "  +{:<3} {}", p.points, one_line(&p.reason))?;
    }
    writeln!(out, "\naccess")?;
    for (title, list) in [("source IP", &r.source_ips), ("client", &r.user_agents)] {
        for s in list {
            writeln!(
                out,
                "  {title:<10} {:<28} {:>6} calls  {} .. {}",
                one_line(&s.value),
                s.calls,
                s.first,
                s.last
            )?;
        }
    }
    writeln!(
        out,
        "  sessions   {} (median length {})",
        r.sessions.len(),
        r.median_session_s
            .map_or("-".into(), |s| format!("{:.0} s", s))
    )?;
    for s in r.sessions.iter().take(5) {
        writeln!(
            out,
            "    {:<36} {:>6} calls {:>8.0} s  {} .. {}",
            one_line(&s.session),
            s.calls,
            s.length_s,
            s.first,
            s.last
        )?;
    }
    writeln!(out, "\ntools")?;
    write_tool_table(out, &r.tools)?;
    writeln!(
        out,
        "\ntiming (local time, UTC{} {})",
        r.time_zone, r.time_zone_source
    )?;
    let max = r.hour_histogram.iter().copied().max().unwrap_or(0).max(1);
    // No usual hours yet (fewer than two days of calls): no hour is outside them.
    let known = !r.usual_hours.is_empty();
    for (h, n) in r.hour_histogram.iter().enumerate() {
        let usual = if !known || r.usual_hours.contains(&(h as u8)) {
            ' '
        } else {
            '*'
        };
        writeln!(
            out,
            "  {h:02}:00{usual} {:>6}  {}",
            n,
            "#".repeat((n * 40).div_ceil(max))
        )?;
    }
    if known {
        writeln!(
            out,
            "  (* outside their usual hours: {:.0}% of the calls)",
            r.outside_usual_hours * 100.0
        )?;
    } else {
        writeln!(
            out,
            "  (no usual hours yet: they need calls on two days or more; no call is counted outside them)"
        )?;
    }
    writeln!(out, "\nanomalies: {}", r.anomalies.len())?;
    if !r.anomalies.is_empty() {
        write_findings(out, &r.anomalies)?;
    }
    write_high_risk(out, r.high_risk_total, &r.high_risk)?;
    write_high_risk_answers(out, r.high_risk_answers_total, &r.high_risk_answers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_until_after_now_is_now() {
        // Found by a fresh pass: `--until 2999-01-01T00:00:00Z` made a 161 MB report with a
        // row for every day to 2999.
        let far = humantime::parse_rfc3339("2999-01-01T00:00:00Z").unwrap();
        let args = WindowArgs {
            since: None,
            until: Some(far),
            json: false,
        };
        let (from, to) = window(&args, Duration::from_secs(86_400)).unwrap();
        assert!(to <= SystemTime::now() && to + Duration::from_secs(60) > SystemTime::now());
        assert_eq!(
            to.duration_since(from).unwrap(),
            Duration::from_secs(86_400)
        );
        let past = humantime::parse_rfc3339("2026-01-01T00:00:00Z").unwrap();
        let args = WindowArgs {
            since: None,
            until: Some(past),
            json: false,
        };
        assert_eq!(window(&args, Duration::from_secs(60)).unwrap().1, past);
        // A --since after now says so, whatever --until says.
        let args = WindowArgs {
            since: Some(far),
            until: Some(far + Duration::from_secs(86_400)),
            json: false,
        };
        let e = window(&args, Duration::from_secs(60))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--since 2999-01-01T00:00:00Z is in the future"),
            "{e}"
        );
    }
}
