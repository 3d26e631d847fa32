//! Gateway sessions: one server process and one [`Pipeline`] per MCP session (2025 revisions,
//! `Mcp-Session-Id`), or a [`Pipeline`] per request (2026-07-28, sessionless) on a shared
//! server process (`proxy/pool`), and the dispatcher that hands
//! what the pipeline releases for the client to the HTTP response waiting for it.
//!
//! Routing of client-bound messages (MCP "Streamable HTTP: Sending Messages to the Server" and
//! "Listening for Messages from the Server"): a response goes to the POST that carried its
//! request (matched by exact id); a server request or notification goes to an open POST
//! stream of the session if there is one, else to the session's GET stream, else waits in a
//! bounded backlog until a GET stream opens (or, while the client has none, its next SSE
//! answer). Each message goes out once, on one stream, or again on the GET stream that
//! replaces one whose connection was lost before it was sent.
//!
//! A response whose stream has no client when it is sent is kept with the stream for a client
//! that resumes it (SSE, `Last-Event-ID`). The calls it ends are recorded as not delivered
//! ([`Pipeline::undelivered`]) once it can no longer reach a client: at once for a JSON answer
//! (it cannot be resumed), else when the stream is dropped (too many cut streams, its replay
//! window passed it, the session ended) before a client resumed past it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::jsonrpc::frame::trim_line_end;
use crate::jsonrpc::message::{self, INTERNAL_ERROR, error_response, matching, twin};
use crate::jsonrpc::{Message, Parsed, RequestId, ResponseBody};
use crate::proxy::pipeline::{Ended, Outbound, Pipeline};
use crate::proxy::pool::unanswerable;
use crate::proxy::stdio::{ClientDoor, Routes, Stop, StopReason};

use super::budget::{Budget, Inbox, Line, Progress};

/// Server messages kept for a GET stream that is not open yet; older ones are dropped first.
const BACKLOG: usize = 256;
/// Messages kept per stream for a client that resumes it (`Last-Event-ID`).
const REPLAY: usize = 256;
/// Streams cut by their client before their answers, kept for resumption; oldest go first.
const DETACHED: usize = 32;
/// How long an SSE stream whose answers all went into a live connection is kept for a
/// resume: the connection may die before they reach the client (a proxy or NAT reset), and
/// the client then resumes with `Last-Event-ID` (MCP 2025-11-25 "Resumability and
/// Redelivery"). At most [`DETACHED`] such streams and [`REPLAY_BYTES`] of their messages
/// (besides the newest stream's) per session; the oldest go first.
const FINISHED_FOR: std::time::Duration = std::time::Duration::from_secs(60);

/// Why a call's response never reached a client ([`Pipeline::undelivered`]).
const CLOSED: &str =
    "the client closed the HTTP request before its response (a JSON answer cannot be resumed)";
const NOT_RESUMED: &str = "the client closed the request's SSE stream and did not resume it (Last-Event-ID) before the gateway dropped the stream";
const NOT_WAITED: &str = "no HTTP request was waiting for that response any more";

/// A call whose response can no longer reach a client, and why.
type Lost = (Ended, &'static str);

/// How long the dispatcher waits for room before delivering anyway: enough for a client that
/// reads slowly to bound the session's memory, and no deadlock with one that cannot read yet.
const ROOM_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
/// Bytes a stream keeps for replay, beyond its newest message ([`REPLAY`] messages at most).
const REPLAY_BYTES: usize = 4 * 1024 * 1024;

/// Gateway-wide stream numbers: event ids are unique across every session's streams.
static STREAMS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// One response stream (a POST's answers, or the GET stream), kept so that a client that
/// loses it can resume it with `Last-Event-ID` (MCP 2025-11-25 "Resumability and
/// Redelivery"): what was sent on it is kept, and only it is replayed.
#[derive(Debug)]
struct Stream {
    /// The live receiver's sender; `None` while the client is away (or once complete).
    tx: Option<mpsc::UnboundedSender<Line>>,
    next: u64,
    sent: VecDeque<Line>,
    /// The bytes of `sent`.
    sent_bytes: usize,
    /// Responses still owed on it (a POST's); 0 for the GET stream.
    owed: usize,
    /// A POST's stream (ends when its answers are all sent) or the GET stream.
    post: bool,
    /// Whether server requests and notifications may go on it (an SSE answer).
    events: bool,
    /// Calls ended by responses sent while no client listened, by sequence number: delivered
    /// if a client resumes before them, lost if the stream is dropped first.
    unheard: Vec<(u64, Vec<Ended>)>,
    /// On the GET stream: messages sent while no client listened (its connection lost), for
    /// the GET stream that replaces it; a resume hears them instead. At most [`REPLAY`].
    missed: Vec<Bytes>,
    /// For an SSE stream: its live response's progress, marked when a message is queued
    /// for it (a response whose client stopped reading is then seen waiting).
    progress: Option<Arc<Progress>>,
}

impl Stream {
    /// Sends `line` as the next event; kept for replay. False when no client listens: then
    /// `ends` wait in `unheard` for a client that resumes the stream, or, on a stream that
    /// cannot be resumed (a JSON answer), go to `lost` at once. Calls whose response leaves
    /// the replay window unheard go to `lost` too.
    /// `refused`: the errors the server gets for requests of its own dropped unsent from
    /// what the lost GET stream missed.
    fn send(
        &mut self,
        line: Bytes,
        ends: Vec<Ended>,
        (lost, refused): (&mut Vec<Lost>, &mut Vec<Bytes>),
        budget: &Arc<Budget>,
    ) -> bool {
        let seq = self.next;
        self.next += 1;
        // A JSON answer cannot be resumed: nothing is kept for replay, and its handler
        // copies what it receives at once (no budget: it reads only once its request is
        // handed to the server).
        if !self.events {
            return match &self.tx {
                Some(tx) if tx.send((seq, line)).is_ok() => {
                    if !ends.is_empty() {
                        self.unheard.push((seq, ends));
                    }
                    true
                }
                _ => {
                    self.tx = None;
                    lost.extend(ends.into_iter().map(|e| (e, CLOSED)));
                    false
                }
            };
        }
        self.sent_bytes += line.len();
        self.sent.push_back((seq, line.clone()));
        // The replay window: REPLAY messages and REPLAY_BYTES besides the newest.
        while self.sent.len() > REPLAY
            || (self.sent.len() > 1 && self.sent_bytes - line.len() > REPLAY_BYTES)
        {
            let Some((old, gone)) = self.sent.pop_front() else {
                break;
            };
            self.sent_bytes -= gone.len();
            self.unheard.retain_mut(|(s, e)| {
                if *s <= old {
                    lost.extend(e.drain(..).map(|e| (e, NOT_RESUMED)));
                }
                *s > old
            });
        }
        budget.take(line.len());
        let n = line.len();
        let missed = (!self.post).then(|| line.clone());
        match &self.tx {
            Some(tx) if tx.send((seq, line)).is_ok() => {
                if let Some(p) = &self.progress {
                    p.mark_if_idle();
                }
                true
            }
            _ => {
                budget.give(n);
                self.tx = None;
                self.missed.extend(missed);
                // Within REPLAY messages and REPLAY_BYTES besides the newest, as the replay
                // window is; the oldest go first, and a request of the server's own among
                // them is answered with an error, as one dropped from the backlog is (the
                // server would wait for its answer for ever).
                let mut kept: usize = self.missed.iter().map(Bytes::len).sum();
                while self.missed.len() > REPLAY
                    || (self.missed.len() > 1 && kept.saturating_sub(n) > REPLAY_BYTES)
                {
                    let old = self.missed.remove(0);
                    kept -= old.len();
                    refused.extend(unsent_request(&old, &format!("the client's GET stream was lost and not opened again while {REPLAY} messages or {} MiB waited for it", REPLAY_BYTES >> 20)));
                }
                if !ends.is_empty() {
                    self.unheard.push((seq, ends));
                }
                false
            }
        }
    }

    /// A client resumed after event `after`: the responses after it are sent again, and it
    /// says it had those up to it; either way they are heard.
    fn heard(&mut self) {
        self.unheard.clear();
        self.missed.clear();
    }

    /// The stream is dropped: what no client heard is lost.
    fn drop_into(mut self, lost: &mut Vec<Lost>) {
        let why = if self.events { NOT_RESUMED } else { CLOSED };
        for (_, e) in self.unheard.drain(..) {
            lost.extend(e.into_iter().map(|e| (e, why)));
        }
    }

    fn live(&self) -> bool {
        self.tx.as_ref().is_some_and(|t| !t.is_closed())
    }
}

#[derive(Debug, Default)]
struct Shared {
    /// Request id → the stream its response goes on.
    waiting: HashMap<RequestId, u64>,
    streams: HashMap<u64, Stream>,
    /// The session's GET stream, if one was opened.
    listener: Option<u64>,
    /// Streams whose client went away before all their answers, oldest first.
    detached: VecDeque<u64>,
    /// SSE streams whose answers were all sent into a live connection, kept for a resume
    /// ([`FINISHED_FOR`]), oldest first: when each finished and the bytes it keeps.
    finished: VecDeque<(u64, Instant, usize)>,
    /// The bytes of `finished`.
    finished_bytes: usize,
    /// Server messages waiting for a stream.
    backlog: VecDeque<Bytes>,
    dropped: u64,
    /// Server requests refused for a client whose POSTs accept JSON only (see `push`).
    json_only_refused: u64,
    last_active: Option<Instant>,
    /// Open POST streams, GET streams and JSON requests, for the idle reaper.
    busy: usize,
    /// Calls whose responses can no longer reach a client, to be recorded as not delivered
    /// once the lock is released ([`Session::settle`]).
    lost: Vec<Lost>,
    /// Errors for the server's own requests dropped unsent from a lost GET stream, for the
    /// dispatcher to send ([`Stream::send`]).
    refused: Vec<Bytes>,
    /// Progress token → the request that named it (`_meta.progressToken`): its
    /// `notifications/progress` go on that request's stream. Entries of requests no longer
    /// waited for are dropped as they are met, and in bulk when they outnumber the waits.
    progress: HashMap<RequestId, RequestId>,
    /// The byte budget this session's responses count against: its own (2025), or its
    /// principal's on its upstream (sessionless 2026-07-28 requests).
    budget: Arc<Budget>,
}

impl Shared {
    /// No request in progress and no GET stream open.
    fn idle(&self) -> bool {
        let listening = self
            .listener
            .and_then(|l| self.streams.get(&l))
            .is_some_and(Stream::live);
        self.busy == 0 && !listening
    }

    /// The stream waiting for the response with `id`: by its exact id, else the one request
    /// whose id an SDK reads as the same number ([`twin`]: a server that answers `"7"` for
    /// request 7 answers it for the official SDKs, and the client must not wait for ever).
    fn take_waiting(&mut self, id: &RequestId) -> Option<u64> {
        if let Some(stream) = self.waiting.remove(id) {
            return Some(stream);
        }
        let twin = twin(self.waiting.keys(), id)?;
        self.waiting.remove(&twin)
    }

    /// A new stream; its receiver and number.
    fn open(&mut self, owed: usize, post: bool, events: bool) -> (u64, Inbox) {
        let (tx, rx) = mpsc::unbounded_channel();
        let id = STREAMS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.streams.insert(
            id,
            Stream {
                tx: Some(tx),
                next: 1,
                sent: VecDeque::new(),
                sent_bytes: 0,
                owed,
                post,
                events,
                unheard: Vec::new(),
                missed: Vec::new(),
                progress: None,
            },
        );
        let inbox = Inbox::new(rx, events.then(|| self.budget.clone()));
        if let Some(s) = self.streams.get_mut(&id) {
            s.progress = inbox.progress();
        }
        (id, inbox)
    }

    /// Drops stream `id`; the calls whose responses no client heard on it are lost.
    fn remove(&mut self, id: u64) {
        self.detached.retain(|d| *d != id);
        if let Some(at) = self.finished.iter().position(|f| f.0 == id) {
            self.finished_bytes -= self.finished[at].2;
            self.finished.remove(at);
        }
        if let Some(stream) = self.streams.remove(&id) {
            stream.drop_into(&mut self.lost);
        }
    }

    /// Keeps SSE stream `id`, whose answers all went into a live connection, for a resume
    /// ([`FINISHED_FOR`]); forgets the finished streams past the bounds.
    fn finish(&mut self, id: u64, bytes: usize) {
        self.detached.retain(|d| *d != id);
        // Resumed again: its window starts anew.
        if let Some(at) = self.finished.iter().position(|f| f.0 == id) {
            self.finished_bytes -= self.finished[at].2;
            self.finished.remove(at);
        }
        let now = Instant::now();
        self.finished.push_back((id, now, bytes));
        self.finished_bytes += bytes;
        while let Some(&(old, at, _)) = self.finished.front() {
            let over = self.finished.len() > DETACHED
                || (self.finished.len() > 1 && self.finished_bytes - bytes > REPLAY_BYTES);
            if !over && now.duration_since(at) < FINISHED_FOR {
                break;
            }
            self.remove(old);
        }
    }

    /// Forgets the finished streams kept past [`FINISHED_FOR`]: [`Shared::finish`] looks only
    /// when another stream finishes, so a session that went quiet kept its last answers (up
    /// to 16 MB each) until it ended (found by a hostile pass).
    fn expire_finished(&mut self, now: Instant) {
        while let Some(&(old, at, _)) = self.finished.front() {
            if now.duration_since(at) < FINISHED_FOR {
                break;
            }
            self.remove(old);
        }
    }

    /// Keeps the messages of the streams whose client went away within [`REPLAY_BYTES`]
    /// besides those of `newest` (the stream just sent on): each stream bounds its own
    /// window, but 32 of them each kept a whole newest message, outside the session's
    /// budget (one session of 32 dropped requests for 16 MB answers held 305 MiB: found by
    /// a hostile pass). The oldest go first; their calls no client heard are lost.
    fn bound_detached(&mut self, newest: u64) {
        let bytes = |sh: &Shared, id: &u64| sh.streams.get(id).map_or(0, |s| s.sent_bytes);
        let mut total: usize = self.detached.iter().map(|d| bytes(self, d)).sum();
        let own = if self.detached.contains(&newest) {
            bytes(self, &newest)
        } else {
            0
        };
        while total - own > REPLAY_BYTES {
            let Some(old) = self.detached.iter().copied().find(|d| *d != newest) else {
                break;
            };
            total -= bytes(self, &old);
            self.remove(old);
        }
    }

    /// Sends on stream `id`; a POST stream that owes nothing more ends (and is forgotten,
    /// unless its client is away and may come back for it, or it went out as SSE: kept a
    /// while for a client whose connection dies before the answer reaches it).
    /// `ends`: the calls the line's response ends (empty for any other message).
    fn send_on(&mut self, id: u64, line: Bytes, answer: bool, ends: Vec<Ended>) {
        let Some(stream) = self.streams.get_mut(&id) else {
            self.lost.extend(ends.into_iter().map(|e| (e, NOT_WAITED)));
            return;
        };
        let delivered = stream.send(
            line,
            ends,
            (&mut self.lost, &mut self.refused),
            &self.budget,
        );
        if answer {
            stream.owed = stream.owed.saturating_sub(1);
        }
        if stream.post && stream.owed == 0 {
            stream.tx = None;
            // The last response reached a live request: it has them all (a JSON answer), or
            // its client resumed the stream and was sent what it missed (SSE).
            if delivered {
                stream.heard();
            }
            if !stream.events {
                self.remove(id);
                return;
            }
            if delivered {
                let bytes = stream.sent_bytes;
                self.finish(id, bytes);
                return;
            }
        }
        if !delivered && stream.post && !self.detached.contains(&id) {
            self.detached.push_back(id);
            if self.detached.len() > DETACHED
                && let Some(old) = self.detached.pop_front()
            {
                self.remove(old);
            }
        }
        if !delivered {
            self.bound_detached(id);
        }
    }
}

/// A 2025 session of one principal whose server is starting: it counts against
/// `gateway.max_sessions_per_principal` from the check that admits it until it enters the
/// session table ([`Opening::entered`]) or fails (drop). Counted only once in the table, two
/// `initialize`s racing at the cap could both pass (helper-93 L6).
pub(super) struct Opening {
    gateway: Arc<super::Gateway>,
    owner: String,
    counted: bool,
}

impl Opening {
    /// Counts one more session of `owner` as starting. The caller holds the `sessions` lock.
    pub(super) fn start(gateway: &Arc<super::Gateway>, owner: String) -> Opening {
        *gateway
            .opening
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(owner.clone())
            .or_default() += 1;
        Opening {
            gateway: gateway.clone(),
            owner,
            counted: true,
        }
    }

    /// Sessions of `owner` starting now. The caller holds the `sessions` lock.
    pub(super) fn of(gateway: &super::Gateway, owner: &str) -> usize {
        let opening = gateway.opening.lock().unwrap_or_else(|p| p.into_inner());
        opening.get(owner).copied().unwrap_or(0)
    }

    /// The session entered the table; the caller holds the `sessions` lock, so that no check
    /// sees it both in the table and starting.
    pub(super) fn entered(mut self) {
        self.release();
    }

    fn release(&mut self) {
        if !std::mem::take(&mut self.counted) {
            return;
        }
        let mut opening = self
            .gateway
            .opening
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = opening.get_mut(&self.owner) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                opening.remove(&self.owner);
            }
        }
    }
}

impl Drop for Opening {
    /// A session that failed to start (its server did not run, the gateway is stopping, the
    /// client left): no longer counted.
    fn drop(&mut self) {
        if self.counted {
            let gateway = self.gateway.clone();
            let _sessions = gateway.sessions();
            self.release();
        }
    }
}

/// A live session: its pipeline, the way to its server, and the streams waiting on it.
#[derive(Debug)]
pub(crate) struct Session {
    /// `Mcp-Session-Id`, also the audit `session_id`.
    pub(crate) id: String,
    /// The principal that created it, as `Principal::key` (`method:user_id`); no other may
    /// use it.
    pub(crate) owner: String,
    pub(crate) upstream: String,
    pub(crate) pipeline: Arc<Pipeline>,
    /// A sessionless 2026-07-28 request's: its server's own requests are answered by the
    /// proxy, not sent to the client ([`unanswerable`]).
    sessionless: bool,
    routes: Mutex<Option<Routes>>,
    stop: Stop,
    shared: Mutex<Shared>,
}

impl Session {
    /// Wires a session to the client side `door` of a running server and starts its
    /// dispatcher; its responses count against `budget`.
    pub(crate) fn start(
        id: String,
        owner: String,
        upstream: String,
        (sessionless, budget): (bool, Arc<Budget>),
        door: ClientDoor,
    ) -> (Arc<Session>, tokio::task::JoinHandle<()>) {
        let session = Arc::new(Session {
            id,
            owner,
            upstream,
            pipeline: door.pipeline.clone(),
            sessionless,
            routes: Mutex::new(Some(door.routes)),
            stop: door.stop,
            shared: Mutex::new(Shared {
                last_active: Some(Instant::now()),
                budget,
                ..Shared::default()
            }),
        });
        let dispatcher = tokio::spawn(dispatch(session.clone(), door.to_client, door.done));
        (session, dispatcher)
    }

    fn shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The routes to the server while the session is open.
    pub(crate) fn routes(&self) -> Option<Routes> {
        self.routes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether the session is still open ([`Session::end`] not called).
    pub(crate) fn is_open(&self) -> bool {
        self.routes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// Ends the session: the server's stdin closes once what is queued is delivered, the
    /// server gets its grace, and calls still in flight end with `why`.
    pub(crate) fn end(&self, why: &'static str) {
        self.routes.lock().unwrap_or_else(|p| p.into_inner()).take();
        self.stop.stop(StopReason::Ended(why));
    }

    /// Registers a POST waiting for the responses to `ids` on a stream of its own; the
    /// receiver ends when all have been sent (or the session ended and they were failed).
    /// `events`: server requests and notifications may go on it too (an SSE answer).
    /// `progress`: the progress tokens the requests name, with the request of each.
    pub(crate) fn wait_for(
        &self,
        ids: &[RequestId],
        events: bool,
        progress: &[(RequestId, RequestId)],
    ) -> Result<(u64, Inbox), RequestId> {
        let mut sh = self.shared();
        if let Some(busy) = ids.iter().find(|id| sh.waiting.contains_key(*id)) {
            return Err(busy.clone());
        }
        let (stream, rx) = sh.open(ids.len(), true, events);
        for id in ids {
            sh.waiting.insert(id.clone(), stream);
        }
        // What the server sent while no stream was open goes on this SSE answer when the
        // session has no GET stream: a client that never opens one (it is optional) still
        // gets the server's requests, as a stdio client would, instead of a server waiting
        // for ever on a `roots/list` held for a stream that never comes. MCP "Sending
        // Messages to the Server" says such messages SHOULD relate to the POST's request;
        // holding them back would break the session instead.
        if events && sh.listener.is_none() && !sh.backlog.is_empty() {
            let backlog: Vec<Bytes> = sh.backlog.drain(..).collect();
            for line in backlog {
                sh.send_on(stream, line, false, Vec::new());
            }
        }
        if events {
            if sh.progress.len() > 2 * sh.waiting.len() + 64 {
                let Shared {
                    progress, waiting, ..
                } = &mut *sh;
                progress.retain(|_, request| waiting.contains_key(request));
            }
            for (token, request) in progress {
                sh.progress.insert(token.clone(), request.clone());
            }
        }
        sh.last_active = Some(Instant::now());
        Ok((stream, rx))
    }

    /// Of `ids`, those still unanswered; they stop being waited for.
    pub(crate) fn unanswered(&self, ids: &[RequestId]) -> Vec<RequestId> {
        let mut sh = self.shared();
        ids.iter()
            .filter(|id| sh.waiting.remove(*id).is_some())
            .cloned()
            .collect()
    }

    /// The client cancelled these requests (`notifications/cancelled`): their answers are no
    /// longer waited for (MCP "Cancellation": the sender ignores any response that arrives
    /// afterward), and a POST stream that owes nothing more ends, instead of holding the
    /// session, a stream slot and the id until the session ends.
    pub(crate) fn release(&self, ids: &[RequestId]) {
        let mut sh = self.shared();
        for id in ids {
            let Some(stream) = sh.waiting.remove(id) else {
                continue;
            };
            if let Some(st) = sh.streams.get_mut(&stream) {
                st.owed = st.owed.saturating_sub(1);
                if st.post && st.owed == 0 {
                    // A JSON answer whose request still waits goes out with what it has.
                    if !st.events && st.live() {
                        st.heard();
                    }
                    st.tx = None;
                    // Answers sent on an SSE stream while its client was away stay for a
                    // resume; a JSON answer's cannot be resumed (lost now if unheard).
                    if !st.events || st.unheard.is_empty() {
                        sh.remove(stream);
                    }
                }
            }
        }
        drop(sh);
        self.settle(Vec::new(), NOT_RESUMED);
    }

    /// Forgets the waits of a POST whose requests were never forwarded.
    /// Whether `line` is a response to a request that waits on one of this session's
    /// streams (exactly, or by [`twin`]): such an answer, made while the proxy handled
    /// another POST (a confirmation declined by the client's answer), goes to that stream.
    pub(crate) fn awaited(&self, line: &[u8]) -> bool {
        let Ok(Parsed::Single(Message::Response { id: Some(id), .. })) = message::parse(line)
        else {
            return false;
        };
        let sh = self.shared();
        sh.waiting.contains_key(&id) || twin(sh.waiting.keys(), &id).is_some()
    }

    pub(crate) fn unwait(&self, ids: &[RequestId]) {
        let mut sh = self.shared();
        for id in ids {
            if let Some(stream) = sh.waiting.remove(id) {
                sh.remove(stream);
            }
        }
    }

    /// Resumes stream `stream` after event `after` (`Last-Event-ID`): what was sent on it
    /// since is sent again, then whatever it still owes. `None` if this session has no
    /// such stream ([`Session::resume_unknown`]). A POST's stream replayed whole
    /// is kept a while for another resume ([`FINISHED_FOR`]), as one answered into a live
    /// connection is: the resumed connection can die too.
    pub(crate) fn resume(&self, stream: u64, after: u64) -> Option<Inbox> {
        let mut sh = self.shared();
        let budget = sh.budget.clone();
        let st = sh.streams.get_mut(&stream)?;
        let (tx, rx) = mpsc::unbounded_channel();
        for (seq, line) in st.sent.iter().filter(|(seq, _)| *seq > after) {
            budget.take(line.len());
            let _ = tx.send((*seq, line.clone()));
        }
        let rx = Inbox::new(rx, Some(budget));
        st.progress = rx.progress();
        st.heard();
        let complete = st.post && st.owed == 0;
        let bytes = st.sent_bytes;
        if complete {
            sh.finish(stream, bytes);
        } else {
            st.tx = Some(tx);
        }
        sh.detached.retain(|d| *d != stream);
        sh.last_active = Some(Instant::now());
        Some(rx)
    }

    /// What a client that asks to resume a stream this session no longer has (or never had)
    /// gets: the session's GET stream, unless another connection holds it live; then `None`
    /// (the caller answers 409 Conflict, as the official SDKs' servers answer a second GET
    /// stream). Replacing the live one would cut that connection, whose client would resume
    /// it in turn, cutting this one; an empty stream would not do either: the TypeScript
    /// client reconnects a stream that ends with a plain GET, which replaces the live one.
    pub(crate) fn resume_unknown(&self) -> Option<(u64, Inbox)> {
        let mut sh = self.shared();
        let live = sh
            .listener
            .and_then(|l| sh.streams.get(&l))
            .is_some_and(Stream::live);
        if live {
            return None;
        }
        Some(Self::listen_locked(&mut sh))
    }

    /// Opens the session's GET stream (replacing an earlier one) and hands it the backlog.
    pub(crate) fn listen(&self) -> (u64, Inbox) {
        Self::listen_locked(&mut self.shared())
    }

    /// [`Session::listen`] under the session's lock. What the replaced stream was sent while
    /// no client listened on it (its connection lost) goes on the new one first: a client
    /// that reconnects without `Last-Event-ID` would otherwise never see a server's request
    /// sent in between, and the server would wait for its answer for ever.
    fn listen_locked(sh: &mut Shared) -> (u64, Inbox) {
        let mut missed = Vec::new();
        if let Some(old) = sh.listener.take() {
            if let Some(stream) = sh.streams.get_mut(&old) {
                missed = std::mem::take(&mut stream.missed);
            }
            sh.remove(old);
        }
        let (id, rx) = sh.open(0, false, true);
        sh.listener = Some(id);
        let backlog: Vec<Bytes> = sh.backlog.drain(..).collect();
        for line in missed.into_iter().chain(backlog) {
            sh.send_on(id, line, false, Vec::new());
        }
        sh.last_active = Some(Instant::now());
        (id, rx)
    }

    /// The byte budget this session's responses count against.
    pub(crate) fn budget(&self) -> Arc<Budget> {
        self.shared().budget.clone()
    }

    /// Forgets the streams kept for a resume past their time ([`FINISHED_FOR`]); their calls
    /// no client heard are recorded as not delivered.
    pub(crate) fn expire(&self) {
        let expired = {
            let mut sh = self.shared();
            sh.expire_finished(Instant::now());
            !sh.lost.is_empty()
        };
        if expired {
            self.settle(Vec::new(), NOT_RESUMED);
        }
    }

    /// Marks a request or stream as started (`+1`) or finished (`-1`), for the idle reaper.
    pub(crate) fn busy(&self, delta: isize) {
        let mut sh = self.shared();
        sh.busy = sh.busy.saturating_add_signed(delta);
        sh.last_active = Some(Instant::now());
    }

    /// Whether the session has been idle (no request, no open stream) since `before`.
    pub(crate) fn idle_since(&self, before: Instant) -> bool {
        let sh = self.shared();
        sh.idle() && sh.last_active.is_none_or(|t| t < before)
    }

    /// How long the session has been idle (no request, no open stream); `None` while it is
    /// in use.
    pub(crate) fn idle_for(&self) -> Option<Duration> {
        let sh = self.shared();
        sh.idle()
            .then(|| sh.last_active.map_or(Duration::MAX, |t| t.elapsed()))
    }

    /// Delivers one client-bound line to the stream that must carry it; a response takes
    /// from `ends` the calls it ends (those whose answer has its id). Returns the error the
    /// server gets instead for a request of its own that no client will see: one a
    /// sessionless client cannot answer, or one dropped from a full backlog.
    fn deliver(&self, line: Bytes, ends: &mut Vec<Ended>) -> Vec<Bytes> {
        let parsed = message::parse(&line);
        let idless = match &parsed {
            Ok(Parsed::Single(Message::Response {
                id: None,
                body: ResponseBody::Error(error),
            })) => Some(*error),
            Err(_) => match message::idless_error(trim_line_end(&line)) {
                Some(Message::Response {
                    body: ResponseBody::Error(error),
                    ..
                }) => Some(error),
                _ => None,
            },
            Ok(_) => None,
        };
        if let Some(error) = idless {
            // The request an error naming no id answers: the call the pipeline ended with
            // it, else the one request waiting here whose id the server could not read (a
            // `ping`: no trail event, but its POST waits; helper-121 F1b).
            let target = match ends.as_slice() {
                [ended] => Some(ended.answers().clone()),
                [] => {
                    let sh = self.shared();
                    let mut unreadable = sh.waiting.keys().filter(|id| id.unreadable_as_i64());
                    match (unreadable.next(), unreadable.next()) {
                        (Some(id), None) => Some(id.clone()),
                        _ => None,
                    }
                }
                _ => None,
            };
            if let Some(rebuilt) = target.and_then(|id| under_id(error, &id)) {
                return self.deliver(rebuilt, ends);
            }
        }
        let Ok(parsed) = parsed else {
            return self.push(line).into_iter().collect();
        };
        match parsed {
            Parsed::Single(Message::Request { id, method, .. }) if self.sessionless => {
                tracing::warn!(session = %self.id, method = %method, "server request answered by the proxy: a sessionless client cannot answer it");
                return vec![unanswerable(Some(&id), Some(&method))];
            }
            Parsed::Single(Message::Response { id: Some(id), .. }) => {
                let mine = take_ends(ends, &id);
                let mut sh = self.shared();
                match sh.take_waiting(&id) {
                    Some(stream) => sh.send_on(stream, line, true, mine),
                    // A call's answer is in the trail (its end, and that it was not
                    // delivered); any other answer, a second one among them, is only logged.
                    None if mine.is_empty() => {
                        tracing::warn!(request_id = %id, "response to no request awaiting one (its HTTP client is gone, or it was answered already); dropped");
                    }
                    None => {
                        tracing::info!(request_id = %id, "response for a request whose HTTP client is gone; recorded, not delivered");
                        sh.lost.extend(mine.into_iter().map(|e| (e, NOT_WAITED)));
                    }
                }
            }
            Parsed::Single(Message::Notification { method, params })
                if method == "notifications/progress" =>
            {
                return self
                    .progress(line.clone(), crate::mcp::notified_progress_token(params))
                    .into_iter()
                    .collect();
            }
            Parsed::Single(_) => return self.push(line).into_iter().collect(),
            Parsed::Batch(items) => {
                // A server's batch answer (2025-03-26): element by element, each to the
                // stream of its request.
                let mut dropped: Vec<Bytes> = Vec::new();
                for item in &items {
                    let element = Bytes::copy_from_slice(item.raw.get().as_bytes());
                    let id = match &item.message {
                        Ok(Message::Response { id: Some(id), .. }) => Some(id.clone()),
                        _ => None,
                    };
                    let mine = id
                        .as_ref()
                        .map(|id| take_ends(ends, id))
                        .unwrap_or_default();
                    let mut sh = self.shared();
                    match id.as_ref().and_then(|id| sh.take_waiting(id)) {
                        Some(stream) => sh.send_on(stream, element, true, mine),
                        // An answer no request waits for is dropped, as a single one is: a
                        // second answer to a request in the same batch among them.
                        None if !mine.is_empty() => {
                            sh.lost.extend(mine.into_iter().map(|e| (e, NOT_WAITED)));
                        }
                        None if let Some(id) = id => {
                            tracing::warn!(request_id = %id, "response in a server's batch to no request awaiting one (its HTTP client is gone, or it was answered already); dropped");
                        }
                        None => {
                            drop(sh);
                            // A batch element dropped from the backlog: the rest of the
                            // batch still goes; the server learns of this one.
                            if let Some(refusal) = self.push(element) {
                                dropped.push(refusal);
                            }
                        }
                    }
                }
                return dropped;
            }
        }
        Vec::new()
    }

    /// Records the calls whose responses can no longer reach a client as not delivered
    /// (outside the lock: recording may wait for the store).
    fn settle(&self, more: Vec<Ended>, why: &'static str) {
        let mut lost = std::mem::take(&mut self.shared().lost);
        lost.extend(more.into_iter().map(|e| (e, why)));
        while let Some(&(_, why)) = lost.first() {
            let (these, rest): (Vec<Lost>, Vec<Lost>) = lost.into_iter().partition(|l| l.1 == why);
            self.pipeline
                .undelivered(these.into_iter().map(|(e, _)| e).collect(), why);
            lost = rest;
        }
    }

    /// A server request or notification: an open POST stream, else the GET stream, else the
    /// backlog.
    ///
    /// A stdio server does not say which request a message of its own relates to (MCP says
    /// it SHOULD relate to the request whose stream carries it): with one POST stream open it
    /// is that one; with several, the GET stream if it is open, else the oldest of them.
    ///
    /// Returns the error the server gets for a request of its own pushed out of a full
    /// backlog: no client will see it, and a server waits for an answer to each request
    /// (JSON-RPC 2.0 §5), often with no timeout of its own.
    fn push(&self, line: Bytes) -> Option<Bytes> {
        let mut sh = self.shared();
        let open_posts: Vec<u64> = sh
            .streams
            .iter()
            .filter(|(_, s)| s.post && s.events && s.live())
            .map(|(id, _)| *id)
            .collect();
        let listening = sh
            .listener
            .filter(|l| sh.streams.get(l).is_some_and(Stream::live));
        let open_post = match open_posts.as_slice() {
            [one] => Some(*one),
            many => listening.or_else(|| many.iter().min().copied()),
        };
        if let Some(id) = open_post.or(sh.listener) {
            sh.send_on(id, line, false, Vec::new());
            return None;
        }
        // A server request made while the client's requests in flight are POSTs that accept
        // JSON only (no stream to carry it) and no GET stream is open: that client cannot see
        // it, and the call that asked for it would wait until `call_timeout_ms` (helper-99
        // F1: 600 s). The server gets an error at once instead, and its call goes on.
        if sh.streams.values().any(|s| s.post && !s.events && s.live())
            && let Some(refusal) = unsent_request(
                &line,
                "the client's request in flight accepts application/json only (no text/event-stream in its Accept) and it has no GET stream open, so the server's request cannot reach it",
            )
        {
            // Logged at the 1st, 2nd, 4th, 8th… of the session, with the count, as the
            // backlog's drops are: a server asking in a loop must not flood the log.
            sh.json_only_refused += 1;
            if sh.json_only_refused.is_power_of_two() {
                tracing::warn!(session = %self.id, refused = sh.json_only_refused, "server request answered with an error: the client's POST accepts JSON only and no GET stream is open (send Accept: application/json, text/event-stream); logged again at twice this count");
            }
            return Some(refusal);
        }
        let mut refusal = None;
        if sh.backlog.len() == BACKLOG
            && let Some(old) = sh.backlog.pop_front()
        {
            sh.dropped += 1;
            refusal = unsent_request(
                &old,
                &format!(
                    "the client has no stream open for the server's messages (no GET stream); {BACKLOG} newer messages waited for one"
                ),
            );
            // Logged at the 1st, 2nd, 4th, 8th… drop of the session, with the count: a server
            // flooding notifications must not flood the log (helper-78 #6).
            if sh.dropped.is_power_of_two() {
                tracing::warn!(session = %self.id, dropped = sh.dropped, request = refusal.is_some(), "server message dropped: no stream open for it (open a GET stream); logged again at twice this count");
            }
        }
        sh.backlog.push_back(line);
        refusal
    }

    /// A `notifications/progress` (MCP "Utilities: Progress"): on the stream of the request
    /// that asked for progress under its token, in order with that request's response, also
    /// while its client is away (it is kept there for a resume); any other goes as
    /// [`Session::push`] sends it.
    fn progress(&self, line: Bytes, token: Option<RequestId>) -> Option<Bytes> {
        let mut sh = self.shared();
        let stream = token.and_then(|token| {
            let request = sh.progress.get(&token)?;
            match sh.waiting.get(request) {
                Some(stream) => Some(*stream),
                None => {
                    sh.progress.remove(&token);
                    None
                }
            }
        });
        match stream.filter(|s| sh.streams.get(s).is_some_and(|s| s.events)) {
            Some(stream) => {
                sh.send_on(stream, line, false, Vec::new());
                None
            }
            None => {
                drop(sh);
                self.push(line)
            }
        }
    }

    /// At the end of the session: every POST still waiting gets an error for each of its
    /// requests (their failure events are already recorded), and every stream closes.
    fn fail_waiting(&self, why: &str) {
        let mut sh = self.shared();
        let waiting: Vec<(RequestId, u64)> = sh.waiting.drain().collect();
        for (id, stream) in waiting {
            let line = error_response(
                Some(&id),
                INTERNAL_ERROR,
                &format!("mcp-audit-proxy: {why}"),
                None,
            );
            sh.send_on(
                stream,
                Bytes::copy_from_slice(trim_line_end(&line)),
                true,
                Vec::new(),
            );
        }
        let ids: Vec<u64> = sh.streams.keys().copied().collect();
        for id in ids {
            sh.remove(id);
        }
        sh.listener = None;
        drop(sh);
        self.settle(Vec::new(), NOT_RESUMED);
    }
}

/// The error a server gets for a request of its own (`line`) that was dropped unsent, saying
/// `why`; `None` for any other message. A server waits for an answer to each request
/// (JSON-RPC 2.0 section 5), often with no timeout of its own.
fn unsent_request(line: &[u8], why: &str) -> Option<Bytes> {
    let Ok(Parsed::Single(Message::Request { id, method, .. })) = message::parse(line) else {
        return None;
    };
    Some(error_response(
        Some(&id),
        INTERNAL_ERROR,
        &format!("mcp-audit-proxy: {why}; this {method} request was dropped unsent"),
        None,
    ))
}

/// Takes from `ends` the call answered by the response with id `id`: the first of them, in
/// the order the pipeline wrote them, as a server's batch can answer one request twice and
/// each answer has its own end (the second one's not delivered).
fn take_ends(ends: &mut Vec<Ended>, id: &RequestId) -> Vec<Ended> {
    if ends.is_empty() {
        return Vec::new();
    }
    // The pipeline ended the call whose id an SDK reads this id as (`"7"` for 7).
    let matched = matching(ends.iter().map(Ended::answers), id);
    let id = matched.as_ref().unwrap_or(id);
    match ends.iter().position(|e| e.answers() == id) {
        Some(at) => vec![ends.remove(at)],
        None => Vec::new(),
    }
}

/// The gateway's client writer: waits for each message's audit ack, in order, then delivers.
async fn dispatch(
    session: Arc<Session>,
    mut rx: mpsc::Receiver<Outbound>,
    done: CancellationToken,
) {
    loop {
        let out = tokio::select! {
            biased;
            m = rx.recv() => match m {
                Some(m) => m,
                None => break,
            },
            _ = done.cancelled() => match rx.try_recv() {
                Ok(m) => m,
                Err(_) => break,
            },
        };
        let mut ends = out.ends;
        let bytes = match out.ack.wait().await {
            Ok(()) => out.bytes,
            Err(e) => {
                tracing::error!(error = %e, "server message withheld: its audit event is not durable");
                match out.if_unrecorded {
                    // The answer's end event was not written: the refusal in its place ends
                    // nothing that a `shutdown` event could name.
                    Some(u) => {
                        ends.clear();
                        (u.reply)()
                    }
                    None => out.bytes,
                }
            }
        };
        for line in bytes.split(|&b| b == b'\n') {
            let line = trim_line_end(line);
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            // A client that does not read holds its session here, not the gateway's memory:
            // for a while (ROOM_WAIT), never past the session's end, and never for good (a
            // request's own stream is read only once its request is handed to the server,
            // which may wait on the server's output, which waits on this).
            // Past the budget for good only as long as STUCK_FOR: then the budget's
            // watchdog cuts the connections that hold what the client does not read. (Each
            // of a principal's sessionless requests has a dispatcher of its own, and each
            // goes past the shared budget here: holding them back instead leaves their
            // answers in their pipelines' queues, uncounted and never cut; tried, 64 unread
            // 16 MB answers held 0.9 GB for 45 s instead of being cut within 18 s.)
            let budget = session.budget();
            if !done.is_cancelled() {
                tokio::select! {
                    () = budget.room() => {}
                    () = done.cancelled() => {}
                    () = tokio::time::sleep(ROOM_WAIT) => {
                        tracing::debug!(session = %session.id, "a client is not reading its streams; delivering past the session's byte budget");
                    }
                }
            }
            let mut refusals = session.deliver(bytes.slice_ref(line), &mut ends);
            let (dropped, total) = {
                let mut sh = session.shared();
                let dropped = std::mem::take(&mut sh.refused);
                sh.dropped += dropped.len() as u64;
                (dropped, sh.dropped)
            };
            // Logged when the session's count of dropped messages passes a power of two, as
            // the backlog's drops are (helper-78 #6).
            let before = total - dropped.len() as u64;
            if !dropped.is_empty() && (before + 1).next_power_of_two() <= total {
                tracing::warn!(session = %session.id, dropped = total, "server requests dropped unsent: the client's GET stream was lost and not opened again; the server gets an error for each; logged again at twice this count");
            }
            refusals.extend(dropped);
            if !refusals.is_empty()
                && let Some(routes) = session.routes()
            {
                // Not awaited here: this task drains the server's output, and a server that
                // stops reading its input while it writes would hold it.
                let routed: Vec<_> = refusals
                    .into_iter()
                    .map(|r| session.pipeline.from_client(r))
                    .collect();
                tokio::spawn(async move {
                    for route in routed {
                        routes.send(route).await;
                    }
                });
            }
        }
        // Calls whose response is not among the lines (replaced, or an id that matched
        // none) never reached the client either.
        session.settle(ends, NOT_WAITED);
    }
    // Not only calls wait here (an `initialize` to a server that could not start does, and
    // has no event): the text claims no event, and points to where the cause is.
    session.fail_waiting("the session ended before the mcp server answered: the server exited (it may have failed to start) or the session was closed; the gateway's log says which, and a tools/call's end is in the audit trail");
}

/// The `error` of an answer that names no id (`"id": null`, or no `id` at all, as rmcp
/// servers write when they cannot read a request's id), as an answer under `id`, the request
/// it answers ([`Session::deliver`]): over HTTP it goes to that request's POST, so that the
/// POST ends with its answer (streams route answers by id: the id-less error had no stream,
/// and the POST waited for ever). The stdio wrapper passes it as the server wrote it. `None`
/// if the error is no JSON value.
fn under_id(error: &serde_json::value::RawValue, id: &RequestId) -> Option<Bytes> {
    let error = serde_json::from_str::<serde_json::Value>(error.get()).ok()?;
    let mut rebuilt = message::rebuilt_message(Some(id), None, &[("error", &error)]);
    rebuilt.push('\n');
    Some(Bytes::from(rebuilt))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An SSE POST stream of `shared` answered with `bytes` bytes into a live connection.
    fn answered(shared: &mut Shared, bytes: usize) -> (u64, Inbox) {
        let (id, inbox) = shared.open(1, true, true);
        shared.send_on(id, Bytes::from(vec![b'x'; bytes]), true, Vec::new());
        (id, inbox)
    }

    #[test]
    fn what_a_lost_get_stream_missed_goes_on_the_get_stream_that_replaces_it() {
        // Review of helper-72 F4's fix: a server request sent into a GET stream whose
        // connection was lost was dropped when the client opened a new GET stream without
        // `Last-Event-ID`, and the server waited for its answer for ever.
        let mut shared = Shared::default();
        let (first, inbox) = Session::listen_locked(&mut shared);
        shared.send_on(first, Bytes::from_static(b"heard"), false, Vec::new());
        drop(inbox);
        shared.send_on(first, Bytes::from_static(b"missed"), false, Vec::new());
        let (second, mut inbox) = Session::listen_locked(&mut shared);
        assert_ne!(first, second);
        assert!(!shared.streams.contains_key(&first));
        let (_, line) = inbox.try_take().expect("the missed message");
        assert_eq!(&line[..], b"missed");
        assert!(inbox.try_take().is_none(), "only what was missed");
        // A resume hears them instead: nothing is carried over twice.
        shared.send_on(second, Bytes::from_static(b"live"), false, Vec::new());
        drop(inbox);
        shared.send_on(second, Bytes::from_static(b"again"), false, Vec::new());
        shared.streams.get_mut(&second).unwrap().heard();
        let (_, mut inbox) = Session::listen_locked(&mut shared);
        assert!(inbox.try_take().is_none());
    }

    #[test]
    fn server_requests_a_lost_get_stream_cannot_keep_are_answered_with_an_error() {
        // helper-84 #6: what a lost GET stream missed was trimmed to REPLAY messages (the
        // newest dropped) and REPLAY_BYTES (the oldest dropped) silently, and a server
        // waited for ever for the answer to a request among them.
        let request = |id: usize| {
            Bytes::from(format!(
                r#"{{"jsonrpc":"2.0","id":{id},"method":"roots/list"}}"#
            ))
        };
        let mut shared = Shared::default();
        let (get, inbox) = Session::listen_locked(&mut shared);
        drop(inbox);
        for id in 0..REPLAY + 2 {
            shared.send_on(get, request(id), false, Vec::new());
        }
        let refused: Vec<String> = shared
            .refused
            .drain(..)
            .map(|r| String::from_utf8(r.to_vec()).unwrap())
            .collect();
        assert_eq!(refused.len(), 2, "{refused:?}");
        assert!(refused[0].contains(r#""id":0"#) && refused[1].contains(r#""id":1"#));
        assert!(refused[0].contains("roots/list request was dropped unsent"));
        // By bytes: a notification pushes out the oldest requests; it is not answered.
        let note = Bytes::from(format!(
            r#"{{"jsonrpc":"2.0","method":"notifications/message","params":{{"data":"{}"}}}}"#,
            "x".repeat(REPLAY_BYTES)
        ));
        shared.send_on(get, note.clone(), false, Vec::new());
        shared.send_on(get, note, false, Vec::new());
        assert_eq!(
            shared.refused.len(),
            REPLAY,
            "every request left was pushed out"
        );
        // The GET stream that replaces it gets what is left: the newest notification.
        let (_, mut inbox) = Session::listen_locked(&mut shared);
        assert!(
            inbox
                .try_take()
                .is_some_and(|(_, l)| l.len() > REPLAY_BYTES)
        );
        assert!(inbox.try_take().is_none());
    }

    #[test]
    fn answered_streams_are_forgotten_after_their_time_without_another_finishing() {
        let mut shared = Shared::default();
        let (id, _inbox) = answered(&mut shared, 1000);
        shared.expire_finished(Instant::now());
        assert!(shared.streams.contains_key(&id), "kept within FINISHED_FOR");
        shared.expire_finished(Instant::now() + FINISHED_FOR);
        assert!(
            !shared.streams.contains_key(&id),
            "forgotten after FINISHED_FOR"
        );
        assert_eq!(shared.finished_bytes, 0);
    }

    #[test]
    fn answered_sse_streams_are_kept_for_a_resume_within_bounds() {
        let mut shared = Shared::default();
        let (first, _inbox) = answered(&mut shared, 10);
        assert!(shared.streams.contains_key(&first), "kept for a resume");
        // By count: the oldest go past DETACHED.
        let kept: Vec<_> = (0..DETACHED + 5)
            .map(|_| answered(&mut shared, 10))
            .collect();
        assert_eq!(shared.finished.len(), DETACHED);
        assert!(!shared.streams.contains_key(&first));
        assert!(shared.streams.contains_key(&kept.last().unwrap().0));
        // By bytes: one large stream pushes out the others' bytes past REPLAY_BYTES.
        let (big, _b) = answered(&mut shared, REPLAY_BYTES);
        let (after, _a) = answered(&mut shared, 100);
        assert_eq!(
            shared.finished.iter().map(|f| f.0).collect::<Vec<_>>(),
            [big, after]
        );
        assert_eq!(shared.finished_bytes, REPLAY_BYTES + 100);
        // A resumed or removed stream takes its bytes with it.
        shared.remove(big);
        assert_eq!(shared.finished_bytes, 100);
    }
}
