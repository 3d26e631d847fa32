//! Queries answered by the index holder over a Unix socket, so that `events` does not pay for
//! opening sled (issue 9 item 9: ≤ 100 ms on 10 M events).
//!
//! # Why
//!
//! A filtered query reads only what it returns (a few milliseconds, whatever the store's
//! size, see [`super::query`]), but opening sled rebuilds its page table from every segment
//! of the index at each open: ~100–250 ms at 1 M events, growing with the index. The process
//! that holds the index ([`super::IndexHolder`], a writer's indexer thread) has it open
//! already. So that process answers queries, and `events` only asks.
//!
//! # Design
//!
//! * **Who serves.** Whichever writer holds the index ([`super::IndexKeeper`]) binds
//!   `index.sock` in the store folder as soon as it takes the index, and answers there until
//!   it lets the index go. Only the holder of `index.lock` binds, so there is one server per
//!   store at a time; a socket file left by a killed holder is removed by the next one
//!   (connecting to it is refused meanwhile, see below). The socket is made `0600`: a user
//!   who cannot write to it reads the store as before.
//! * **Same answers.** Before answering, the server catches the index up with every journal
//!   and writes what it has staged ([`super::IndexHolder::catch_up`],
//!   [`super::IndexHolder::write_pending`]), exactly what `events` does after opening the
//!   index itself; then it runs the same [`super::Index::newest`]. A query thus sees every
//!   whole record written before it was asked, whichever way it is answered. The holder is
//!   shared between the indexer thread and the server thread under a mutex: one of them
//!   works on it at a time. The server thread is started with the keeper, at the writer's
//!   priority: the indexer thread runs at the lowest (nice 19), which threads it started
//!   would inherit, and a query waits on whoever serves it.
//! * **Erasure holds.** The holder lives long and keeps the users' keys it has read; before
//!   each answer it forgets those `erase` removed since ([`super::personal::Keyring::refresh`]),
//!   so an erased user's events read as erased through the socket as they do otherwise.
//! * **Never worse than before.** `events` connects first ([`ask`]); when nothing listens
//!   (no holder, a stale socket file, a path too long for a socket address), the holder
//!   answers with an error, or no answer comes within [`ANSWER_WITHIN`], it goes on as
//!   before: it opens the index itself when free, or reads the journals directly when
//!   another process holds it. Nothing is refused because of the socket.
//!
//! # Protocol (`mcp-audit-proxy/query/1`, one connection per query)
//!
//! ```text
//! client → {"filter":{…},"limit":N,"type":"mcp-audit-proxy/query/1"}\n
//! server → {"count":K,"type":"events"}\n  then K lines, each an event's JSON, newest first
//!        | {"error":TEXT,"type":"error"}\n
//! ```
//!
//! `filter` is [`Filter`] as serde writes it (times as `secs_since_epoch`/`nanos_since_epoch`).
//! The request line is read up to [`MAX_REQUEST`] bytes.

use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Filter, IndexHolder, StoreError};
use crate::audit::event::AuditEvent;

/// The socket's name in the store folder.
pub const SOCKET: &str = "index.sock";

/// The `type` of a query request.
pub const QUERY_TYPE: &str = "mcp-audit-proxy/query/1";

/// How long `events` waits for the holder's answer before reading the store itself.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// The longest request line read, in bytes.
pub const MAX_REQUEST: u64 = 64 << 10;

/// The index shared by a writer's indexer thread and its query server.
pub type SharedHolder = Arc<Mutex<Option<IndexHolder>>>;

#[derive(Serialize, Deserialize)]
struct Request {
    filter: Filter,
    limit: usize,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Header {
    Events { count: usize },
    Error { error: String },
}

/// The query server of the index holder: a thread, started with the keeper (so at the
/// writer's own priority, not the indexer thread's lowered one, which threads it started
/// would inherit), idle until [`Server::bind`] hands it `index.sock`, then answering there
/// until dropped, which removes the socket file.
#[derive(Debug)]
pub struct Server {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    listener: Option<mpsc::Sender<UnixListener>>,
    /// [`Server::bind`] was tried (once: a failure is logged once, and costs only speed).
    tried: bool,
    bound: bool,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Starts the (idle) query thread for the store folder `root`, to answer on `holder`.
    pub fn new(root: &Path, holder: SharedHolder) -> Result<Server, StoreError> {
        let path = root.join(SOCKET);
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel::<UnixListener>();
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("audit-index-queries".into())
                .spawn(move || {
                    let Ok(listener) = rx.recv() else {
                        return;
                    };
                    for stream in listener.incoming() {
                        if stop.load(Ordering::Acquire) {
                            break;
                        }
                        match stream {
                            Ok(s) => answer(s, &holder),
                            Err(e) => tracing::debug!(error = %e, "index query connection failed"),
                        }
                    }
                })
                .map_err(|e| StoreError::io("start the query thread for", &path, e))?
        };
        Ok(Server {
            path,
            stop,
            listener: Some(tx),
            tried: false,
            bound: false,
            thread: Some(thread),
        })
    }

    /// Whether [`Server::bind`] was tried already.
    pub fn tried(&self) -> bool {
        self.tried
    }

    /// Binds `index.sock` (removing a dead holder's file first: the caller holds the index
    /// lock, so no live holder has one) and starts answering; tried once.
    pub fn bind(&mut self) -> Result<(), StoreError> {
        if std::mem::replace(&mut self.tried, true) {
            return Ok(());
        }
        let path = &self.path;
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io("remove the stale socket", path, e)),
        }
        let listener =
            UnixListener::bind(path).map_err(|e| StoreError::io("bind the socket", path, e))?;
        self.bound = true;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| StoreError::io("restrict the socket", path, e))?;
        if let Some(tx) = &self.listener
            && tx.send(listener).is_err()
        {
            return Err(StoreError::io(
                "answer on",
                path,
                std::io::Error::other("the query thread has ended"),
            ));
        }
        Ok(())
    }
}

/// Dropping the server stops it and removes the socket file: done before the index is let go,
/// so that the next holder's socket is never removed by this one.
impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // An idle thread ends when the sender goes; a serving one is woken from `accept`,
        // sees the flag and ends.
        drop(self.listener.take());
        let mut woken = true;
        if self.bound {
            woken = UnixStream::connect(&self.path).is_ok();
            // Removed before the thread ends: its share of the holder may be the last one,
            // and the index lock goes with it.
            let _ = std::fs::remove_file(&self.path);
        }
        // A socket file removed by hand cannot be connected to: the thread stays in
        // `accept` and is left to end with the process (not joined, or the exit would hang).
        // It holds no index then: `IndexKeeper::close` takes the holder out first.
        if let Some(t) = self.thread.take()
            && woken
        {
            let _ = t.join();
        }
    }
}

/// Answers one connection: reads the request, catches the index up, runs the query.
fn answer(stream: UnixStream, holder: &Mutex<Option<IndexHolder>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.set_write_timeout(Some(ANSWER_WITHIN));
    let mut line = String::new();
    let read = BufReader::new((&stream).take(MAX_REQUEST)).read_line(&mut line);
    let result = match read {
        Err(e) => Err(format!("cannot read the request: {e}")),
        Ok(_) => match serde_json::from_str::<Request>(&line) {
            Err(e) => Err(format!("not a query request: {e}")),
            Ok(r) if r.kind != QUERY_TYPE => Err(format!(
                "a request of type {:?}; this holder answers {QUERY_TYPE}",
                r.kind
            )),
            Ok(r) => query(holder, r.limit, &r.filter).map_err(|e| e.to_string()),
        },
    };
    let mut out = BufWriter::new(&stream);
    let written = match result {
        Ok(events) => write_line(
            &mut out,
            &Header::Events {
                count: events.len(),
            },
        )
        .and_then(|()| events.iter().try_for_each(|e| write_line(&mut out, e))),
        Err(error) => {
            tracing::warn!(error = %error, "index query refused");
            write_line(&mut out, &Header::Error { error })
        }
    };
    if let Err(e) = written.and_then(|()| out.flush()) {
        tracing::debug!(error = %e, "index query answer not delivered");
    }
}

fn write_line<T: Serialize>(out: &mut impl Write, value: &T) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    out.write_all(b"\n")
}

/// What `events` would read after opening the index itself: caught up with every journal.
fn query(
    holder: &Mutex<Option<IndexHolder>>,
    limit: usize,
    filter: &Filter,
) -> Result<Vec<AuditEvent>, StoreError> {
    let mut guard = holder
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let Some(h) = guard.as_mut() else {
        return Err(StoreError::io(
            "query",
            Path::new(SOCKET),
            std::io::Error::other("this process no longer holds the index"),
        ));
    };
    let done = h.catch_up()?;
    super::holder::log_round(&done.torn, &done.damaged, &done.errors);
    h.write_pending()?;
    // A user erased since the holder read the keys must read as erased here too.
    h.refresh_keys()?;
    h.newest(limit, filter)
}

/// Asks the index holder of the store at `root` for the newest `limit` events matching
/// `filter`; `None` when no holder answers (none runs, a stale socket, an error, no answer
/// within [`ANSWER_WITHIN`]): the caller reads the store itself then.
pub fn ask(root: &Path, limit: usize, filter: &Filter) -> Option<Vec<AuditEvent>> {
    let path = root.join(SOCKET);
    if !path.exists() {
        return None;
    }
    match try_ask(&path, limit, filter) {
        Ok(events) => Some(events),
        Err(why) => {
            tracing::debug!(socket = %path.display(), why = %why, "the index holder did not answer; reading the store");
            None
        }
    }
}

fn try_ask(path: &Path, limit: usize, filter: &Filter) -> Result<Vec<AuditEvent>, String> {
    let stream = UnixStream::connect(path).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(ANSWER_WITHIN))
        .and_then(|()| stream.set_write_timeout(Some(ANSWER_WITHIN)))
        .map_err(|e| e.to_string())?;
    let request = Request {
        filter: filter.clone(),
        limit,
        kind: QUERY_TYPE.into(),
    };
    write_line(&mut &stream, &request).map_err(|e| format!("send: {e}"))?;
    let mut lines = BufReader::new(&stream).lines();
    let mut next = || -> Result<String, String> {
        lines
            .next()
            .ok_or("the answer ended early")?
            .map_err(|e| format!("read: {e}"))
    };
    let count = match serde_json::from_str::<Header>(&next()?) {
        Ok(Header::Events { count }) => count,
        Ok(Header::Error { error }) => return Err(error),
        Err(e) => return Err(format!("not an answer: {e}")),
    };
    // Grown as lines come (a count is not trusted for an allocation).
    let mut events = Vec::new();
    for _ in 0..count {
        let l = next()?;
        events.push(
            serde_json::from_str::<AuditEvent>(&l).map_err(|e| format!("not an event: {e}"))?,
        );
    }
    Ok(events)
}
