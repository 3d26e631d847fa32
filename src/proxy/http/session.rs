//! Gateway sessions: one server process and one [`Pipeline`] per MCP session (2025 revisions,
//! `Mcp-Session-Id`), or per request (2026-07-28, sessionless), and the dispatcher that hands
//! what the pipeline releases for the client to the HTTP response waiting for it.
//!
//! Routing of client-bound messages (MCP "Streamable HTTP: Sending Messages to the Server" and
//! "Listening for Messages from the Server"): a response goes to the POST that carried its
//! request (matched by exact id); a server request or notification goes to an open POST
//! stream of the session if there is one, else to the session's GET stream, else waits in a
//! bounded backlog until a GET stream opens. Each message goes out once, on one stream.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::jsonrpc::frame::trim_line_end;
use crate::jsonrpc::message::{self, INTERNAL_ERROR, error_response};
use crate::jsonrpc::{Message, Parsed, RequestId};
use crate::proxy::pipeline::{Outbound, Pipeline};
use crate::proxy::stdio::{ClientDoor, Routes, Stop, StopReason};

/// Server messages kept for a GET stream that is not open yet; older ones are dropped first.
const BACKLOG: usize = 256;

/// One message for a client stream: the JSON text of one JSON-RPC message (or batch).
pub(crate) type Line = Bytes;

/// Where the answers to one POST go.
#[derive(Debug)]
pub(crate) struct Waiter {
    tx: mpsc::UnboundedSender<Line>,
    /// Whether server requests and notifications may be sent on it (an SSE response).
    pub(crate) stream: bool,
}

#[derive(Debug, Default)]
struct Shared {
    /// Request id → the POST waiting for its response.
    waiting: HashMap<RequestId, Arc<Waiter>>,
    /// The session's GET stream, if open.
    listener: Option<mpsc::UnboundedSender<Line>>,
    /// Server messages waiting for a stream.
    backlog: VecDeque<Line>,
    dropped: u64,
    last_active: Option<Instant>,
    /// Open POST streams, GET streams and JSON requests, for the idle reaper.
    busy: usize,
}

/// A live session: its pipeline, the way to its server, and the streams waiting on it.
#[derive(Debug)]
pub(crate) struct Session {
    /// `Mcp-Session-Id`, also the audit `session_id`.
    pub(crate) id: String,
    /// The principal that created it; no other may use it.
    pub(crate) user_id: String,
    pub(crate) upstream: String,
    pub(crate) pipeline: Arc<Pipeline>,
    routes: Mutex<Option<Routes>>,
    stop: Stop,
    shared: Mutex<Shared>,
}

impl Session {
    /// Wires a session to the client side `door` of a running server and starts its
    /// dispatcher.
    pub(crate) fn start(
        id: String,
        user_id: String,
        upstream: String,
        door: ClientDoor,
    ) -> (Arc<Session>, tokio::task::JoinHandle<()>) {
        let session = Arc::new(Session {
            id,
            user_id,
            upstream,
            pipeline: door.pipeline.clone(),
            routes: Mutex::new(Some(door.routes)),
            stop: door.stop,
            shared: Mutex::new(Shared {
                last_active: Some(Instant::now()),
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

    /// Ends the session: the server's stdin closes once what is queued is delivered, the
    /// server gets its grace, and calls still in flight end with `why`.
    pub(crate) fn end(&self, why: &'static str) {
        self.routes.lock().unwrap_or_else(|p| p.into_inner()).take();
        self.stop.stop(StopReason::Ended(why));
    }

    /// Registers a POST waiting for the responses to `ids`; the receiver ends when all have
    /// been delivered (or the session ended and they were failed).
    pub(crate) fn wait_for(
        &self,
        ids: &[RequestId],
        stream: bool,
    ) -> Result<mpsc::UnboundedReceiver<Line>, RequestId> {
        let (tx, rx) = mpsc::unbounded_channel();
        let waiter = Arc::new(Waiter { tx, stream });
        let mut sh = self.shared();
        if let Some(busy) = ids.iter().find(|id| sh.waiting.contains_key(*id)) {
            return Err(busy.clone());
        }
        for id in ids {
            sh.waiting.insert(id.clone(), waiter.clone());
        }
        sh.last_active = Some(Instant::now());
        Ok(rx)
    }

    /// Of `ids`, those still unanswered; they stop being waited for.
    pub(crate) fn unanswered(&self, ids: &[RequestId]) -> Vec<RequestId> {
        let mut sh = self.shared();
        ids.iter()
            .filter(|id| sh.waiting.remove(*id).is_some())
            .cloned()
            .collect()
    }

    /// Forgets the waits of a POST whose requests were never forwarded.
    pub(crate) fn unwait(&self, ids: &[RequestId]) {
        let mut sh = self.shared();
        for id in ids {
            sh.waiting.remove(id);
        }
    }

    /// Opens the session's GET stream (replacing an earlier one) and hands it the backlog.
    pub(crate) fn listen(&self) -> mpsc::UnboundedReceiver<Line> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut sh = self.shared();
        for line in sh.backlog.drain(..) {
            let _ = tx.send(line);
        }
        sh.listener = Some(tx);
        sh.last_active = Some(Instant::now());
        rx
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
        let listening = sh.listener.as_ref().is_some_and(|l| !l.is_closed());
        sh.busy == 0 && !listening && sh.last_active.is_none_or(|t| t < before)
    }

    /// Delivers one client-bound line to the stream that must carry it.
    fn deliver(&self, line: Line) {
        let Ok(parsed) = message::parse(&line) else {
            self.push(line);
            return;
        };
        match parsed {
            Parsed::Single(Message::Response { id: Some(id), .. }) => {
                let waiter = self.shared().waiting.remove(&id);
                match waiter {
                    Some(w) => {
                        let _ = w.tx.send(line);
                    }
                    None => {
                        tracing::info!(request_id = %id, "response for a request whose HTTP client is gone; recorded, not delivered")
                    }
                }
            }
            Parsed::Single(_) => self.push(line),
            Parsed::Batch(items) => {
                // A batch answer (2025-03-26) goes whole to the POST that sent the batch when
                // one POST waits for all of it; otherwise element by element.
                let mut sh = self.shared();
                let ids: Vec<Option<RequestId>> = items
                    .iter()
                    .map(|i| match &i.message {
                        Ok(Message::Response { id, .. }) => id.clone(),
                        _ => None,
                    })
                    .collect();
                let first = ids
                    .first()
                    .and_then(|id| id.as_ref())
                    .and_then(|id| sh.waiting.get(id).cloned());
                let one = first.as_ref().is_some_and(|w| {
                    ids.iter().all(|id| {
                        id.as_ref()
                            .and_then(|id| sh.waiting.get(id))
                            .is_some_and(|o| Arc::ptr_eq(o, w))
                    })
                });
                if one && let Some(w) = first {
                    for id in ids.iter().flatten() {
                        sh.waiting.remove(id);
                    }
                    let _ = w.tx.send(line);
                    return;
                }
                drop(sh);
                for (item, id) in items.iter().zip(ids) {
                    let element = Bytes::copy_from_slice(item.raw.get().as_bytes());
                    match id.and_then(|id| self.shared().waiting.remove(&id)) {
                        Some(w) => {
                            let _ = w.tx.send(element);
                        }
                        None => self.push(element),
                    }
                }
            }
        }
    }

    /// A server request or notification: an open POST stream, else the GET stream, else the
    /// backlog.
    fn push(&self, line: Line) {
        let mut sh = self.shared();
        let open_post = sh
            .waiting
            .values()
            .find(|w| w.stream && !w.tx.is_closed())
            .cloned();
        if let Some(w) = open_post
            && w.tx.send(line.clone()).is_ok()
        {
            return;
        }
        if let Some(l) = &sh.listener
            && l.send(line.clone()).is_ok()
        {
            return;
        }
        sh.listener = None;
        if sh.backlog.len() == BACKLOG {
            sh.backlog.pop_front();
            sh.dropped += 1;
            tracing::warn!(session = %self.id, dropped = sh.dropped, "server message dropped: no stream open for it (open a GET stream)");
        }
        sh.backlog.push_back(line);
    }

    /// At the end of the session: every POST still waiting gets an error for each of its
    /// requests (their failure events are already recorded), and every stream closes.
    fn fail_waiting(&self, why: &str) {
        let mut sh = self.shared();
        for (id, w) in sh.waiting.drain() {
            let line = error_response(
                Some(&id),
                INTERNAL_ERROR,
                &format!("mcp-audit-proxy: {why}; the call's end is in the audit trail"),
                None,
            );
            let _ = w.tx.send(Bytes::copy_from_slice(trim_line_end(&line)));
        }
        sh.listener = None;
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
        let bytes = match out.ack.wait().await {
            Ok(()) => out.bytes,
            Err(e) => {
                tracing::error!(error = %e, "server message withheld: its audit event is not durable");
                match out.if_unrecorded {
                    Some(u) => (u.reply)(),
                    None => out.bytes,
                }
            }
        };
        for line in bytes.split(|&b| b == b'\n') {
            let line = trim_line_end(line);
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            session.deliver(bytes.slice_ref(line));
        }
    }
    session.fail_waiting("the session ended before the server answered");
}
