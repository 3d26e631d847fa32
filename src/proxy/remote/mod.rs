//! A remote upstream: an MCP server reached over Streamable HTTP (MCP 2025-03-26 and later,
//! "Transports"), behind either front door.
//!
//! The session core speaks newline-delimited JSON-RPC to its server, as to a child's stdio.
//! A [`RemoteServer`] stands where the child would: it reads the lines the core forwards,
//! POSTs each one to the upstream's URL, and turns what comes back (a JSON body, an SSE stream,
//! the session's GET stream) into lines for the core again. So the pipeline (classification,
//! policy, events, correlation) is the same for local and remote servers, and what reaches
//! the remote is exactly what would have reached a child.
//!
//! The HTTP client side of the transport, per upstream session:
//! - `initialize` is sent alone: its answer's `Mcp-Session-Id` goes on every later request;
//!   its `protocolVersion` becomes the `MCP-Protocol-Version` header (2025-06-18 and later).
//!   After `notifications/initialized` is accepted, a GET stream carries the server's own
//!   requests and notifications (reconnected with `Last-Event-ID`; a 405 means the server
//!   offers none).
//! - 2026-07-28 requests carry their version in `_meta`: it goes in `MCP-Protocol-Version`,
//!   and `Mcp-Method`/`Mcp-Name` mirror the body (SEP-2243), as the remote may route on them.
//! - `notifications/initialized` is POSTed alone (the next message waits for its `202`, so no
//!   request overtakes it); other messages are POSTed concurrently (a slow call holds up
//!   nothing else); an answer
//!   streamed as SSE is resumed with `Last-Event-ID` if the stream drops before the answer.
//! - When the core closes its side (the client's session is over), calls still running may
//!   finish, then the session is ended with DELETE.
//!
//! Failures become answers, never silence: a request that cannot be delivered or answered
//! (unreachable host, TLS failure, HTTP error without a JSON-RPC body, a stream that ends
//! before the answer, an answer past `limits.max_message_bytes`) is answered with error
//! [`UPSTREAM_UNAVAILABLE`] naming the upstream, so the call is recorded as a `tool_failure`
//! with the reason; a 404 for the session ends the link behind the gateway (the client sees
//! its session end and may start a new one); behind the stdio wrapper, whose client cannot,
//! a new session is opened with the client's `initialize` and the request sent again, and a
//! request that still cannot be delivered fails alone.
//!
//! Credentials are the upstream's own (config or environment); nothing of the client's
//! request but the JSON-RPC message itself is sent on.

mod address;
mod cookies;
mod lines;
pub(crate) mod params;
pub(crate) mod sse;
mod tls;

use address::{origin_of, redirect_target};
use lines::*;
use tls::certificate_hint;
pub(crate) use tls::{RootsError, client_tls};

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_TYPE, COOKIE};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinHandle, JoinSet};
use tokio_rustls::rustls;
use tokio_util::sync::CancellationToken;

use crate::config::{MissingHeader, RemoteConfig};
use crate::jsonrpc::LineFramer;
use crate::jsonrpc::frame::trim_line_end;
use crate::jsonrpc::message::{self, RequestId};

/// The JSON-RPC error code of a request the remote upstream could not take or answer (the
/// gateway answers it with HTTP 502).
pub const UPSTREAM_UNAVAILABLE: i64 = -32011;

/// The member of an [`UPSTREAM_UNAVAILABLE`] error's `data` that says the upstream ended the
/// session (the gateway answers such a request 404, as MCP "Session Management" says for an
/// ended session).
pub const SESSION_ENDED: &str = "upstream_session_ended";

/// Why a request to the remote upstream failed, as its error says it.
#[derive(Debug, thiserror::Error)]
enum Failed {
    /// The request's own POST found the session gone (a 404, or the SDK examples' 400
    /// naming the session): the upstream did not take it, so its client may send it again in
    /// a new session. Calls in flight when the session ended fail as [`Failed::Other`]: the
    /// upstream may have run them.
    #[error("the upstream {0}")]
    SessionLost(&'static str),
    /// Anything else, in words for the client and the log.
    #[error("{0}")]
    Other(String),
}

impl From<String> for Failed {
    fn from(why: String) -> Failed {
        Failed::Other(why)
    }
}

impl From<&str> for Failed {
    fn from(why: &str) -> Failed {
        Failed::Other(why.to_string())
    }
}

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a notification or a response POST may wait for its `202 Accepted`.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the next message waits for `notifications/initialized`'s `202 Accepted` (to keep
/// the client's order) before it is sent anyway.
const NOTIFICATION_ORDER_WAIT: Duration = Duration::from_secs(5);
/// How long the session's DELETE may take at the end.
const DELETE_TIMEOUT: Duration = Duration::from_secs(5);
/// Resumes in a row of a POST's SSE stream that ended before its answer, none of which
/// brought a message, after which the call fails when the server set no `retry:`.
const RESUMES: usize = 3;
/// The longest a request's answer is waited for by resuming its stream, whatever the server
/// sends: with a `retry:` time it may close a request's stream and let the client come back
/// with `Last-Event-ID` after `retry` ms, as often as it takes (MCP 2025-11-25, SEP-1699).
/// The core's `call_timeout_ms` answers the client first when it is shorter.
const POLLING_SPAN: Duration = Duration::from_secs(600);
/// The longest `retry:` honoured between two polls; a longer one is waited this long.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(30);
/// The shortest wait before a resume: a `retry: 0` (or none) must not make a reconnect loop.
const MIN_RETRY_WAIT: Duration = Duration::from_millis(100);
/// Consecutive failures after which the GET stream is given up.
const LISTEN_FAILURES: u32 = 5;
/// Bytes of an unexpected HTTP body quoted in an error.
const SNIPPET: usize = 200;
/// Bytes buffered between the session core and the link, each way.
const PIPE: usize = 256 * 1024;

type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Why a remote upstream cannot be used; said at start.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// A header's value is missing from the environment.
    #[error("upstream {name:?}: {source}")]
    Header {
        /// The upstream.
        name: String,
        /// Which header and variable.
        source: MissingHeader,
    },
    /// `ca_file` cannot be read or holds no certificate.
    #[error("upstream {name:?}: ca_file {}: {why}\n  hint: give a PEM file with the certificate(s) of the CA that signed the server's certificate", path.display())]
    CaFile {
        /// The upstream.
        name: String,
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        why: String,
    },
    /// No system root certificates to verify an `https://` upstream.
    #[error(
        "upstream {name:?}: no trusted root certificates on this system: {why}\n  hint: install the system's CA bundle (Debian: apt-get install ca-certificates) or set ca_file"
    )]
    NoRoots {
        /// The upstream.
        name: String,
        /// What the loader said.
        why: String,
    },
}

/// A remote upstream, ready to open sessions: its URL, headers and pooled HTTP client.
pub(crate) struct Remote {
    name: String,
    url: Uri,
    headers: HeaderMap,
    client: HttpClient,
    max: usize,
    /// How long a request's answer may take to start (its response headers); `None`: forever.
    answer_timeout: Option<Duration>,
    /// `Mcp-Param-*` bindings of its tools, learnt from `tools/list` answers.
    params: params::ParamHeaders,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("name", &self.name)
            .field("origin", &origin_of(&self.url.to_string()))
            .finish_non_exhaustive()
    }
}

impl Remote {
    /// Reads the upstream's credentials and certificates and builds its client.
    pub(crate) fn new(
        name: &str,
        config: &RemoteConfig,
        limits: &crate::config::Limits,
    ) -> Result<Arc<Remote>, RemoteError> {
        let headers = config
            .resolve_headers()
            .map_err(|source| RemoteError::Header {
                name: name.to_string(),
                source,
            })?;
        let tls = tls_config(name, config)?;
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        http.set_nodelay(true);
        http.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        Ok(Arc::new(Remote {
            name: name.to_string(),
            url: config.url.clone(),
            headers,
            client,
            max: limits.max_message_bytes,
            answer_timeout: limits.call_timeout,
            params: params::ParamHeaders::default(),
        }))
    }

    /// `upstream "name" (scheme://host:port)`, for error texts and logs: never the path or
    /// the query, which may hold a per-user token.
    fn label(&self) -> String {
        format!(
            "upstream {:?} ({})",
            self.name,
            origin_of(&self.url.to_string())
        )
    }
}

/// rustls with the ring provider (the one the gateway's server side uses), TLS 1.2 and 1.3,
/// trusting `ca_file` if set, else the system's roots (an `http://` upstream needs none).
fn tls_config(name: &str, config: &RemoteConfig) -> Result<rustls::ClientConfig, RemoteError> {
    let https = config.url.scheme_str() == Some("https");
    client_tls(config.ca_file.as_deref(), https).map_err(|e| match e {
        RootsError::CaFile(why) => RemoteError::CaFile {
            name: name.to_string(),
            path: config.ca_file.clone().unwrap_or_default(),
            why,
        },
        RootsError::NoRoots(why) => RemoteError::NoRoots {
            name: name.to_string(),
            why,
        },
    })
}

/// The remote server of one session, standing where a child process would.
pub(crate) struct RemoteServer {
    task: JoinHandle<()>,
    link: Arc<Link>,
}

impl RemoteServer {
    /// Opens a session's link; returns it with the pipe the core writes the server's input
    /// to and the pipe it reads the server's output from.
    ///
    /// `reopen`: when the upstream ends the session (404), open a new one by sending the
    /// client's `initialize` again and go on (the stdio wrapper, whose client cannot start a
    /// new session); otherwise the link ends and the client's session with it (the gateway).
    pub(crate) fn start(
        remote: Arc<Remote>,
        reopen: bool,
    ) -> (RemoteServer, DuplexStream, DuplexStream) {
        let (server_in, pump_in) = tokio::io::duplex(PIPE);
        let (mut pump_out, server_out) = tokio::io::duplex(PIPE);
        let (out, mut rx) = mpsc::channel::<Bytes>(256);
        tokio::spawn(async move {
            while let Some(line) = rx.recv().await {
                if pump_out.write_all(&line).await.is_err() {
                    break;
                }
            }
            // Dropping the pipe is the server's EOF for the core.
        });
        let link = Arc::new(Link {
            remote,
            state: Mutex::new(LinkState::default()),
            end: CancellationToken::new(),
            why: OnceLock::new(),
            listener: Mutex::new(None),
            reopen,
            handshake: Mutex::new(None),
            reopening: tokio::sync::Mutex::new(()),
        });
        let task = tokio::spawn(pump(link.clone(), pump_in, out));
        (RemoteServer { task, link }, server_in, server_out)
    }

    /// Waits until the link ends by itself, or, once `stop` is cancelled, up to `grace` for
    /// the calls in flight (the core has closed the link's input by then), then cuts it.
    /// Returns the exit code to leave with and what happened, worded after "the server".
    pub(crate) async fn finish(
        mut self,
        stop: &CancellationToken,
        grace: Duration,
    ) -> (i32, String) {
        tokio::select! {
            _ = &mut self.task => {}
            _ = stop.cancelled() => {
                if tokio::time::timeout(grace, &mut self.task).await.is_err() {
                    tracing::warn!(upstream = %self.link.remote.name, "remote calls still running after the grace period; cutting them");
                    self.link.end.cancel();
                    if tokio::time::timeout(DELETE_TIMEOUT, &mut self.task).await.is_err() {
                        self.task.abort();
                    }
                }
            }
        }
        match self.link.why.get() {
            Some(why) => (
                1,
                format!("({}) ended the session: {why}", self.link.remote.label()),
            ),
            None => (
                0,
                format!("({}) closed the session", self.link.remote.label()),
            ),
        }
    }
}

#[derive(Debug, Default)]
struct LinkState {
    /// `Mcp-Session-Id` the upstream gave at `initialize`.
    session: Option<HeaderValue>,
    /// The cookies the upstream set, sent back on every request (a load balancer's affinity).
    cookies: cookies::Jar,
    /// The protocol version `initialize` settled on.
    version: Option<String>,
}

/// One session's connection state, shared by the tasks of its requests.
struct Link {
    remote: Arc<Remote>,
    state: Mutex<LinkState>,
    /// Cancelled when the link must stop at once (the upstream ended the session, or the
    /// grace period is over).
    end: CancellationToken,
    /// Why the upstream ended the session, if it did.
    why: OnceLock<String>,
    /// The GET stream's task.
    listener: Mutex<Option<JoinHandle<()>>>,
    /// Open a new upstream session when the upstream ends this one.
    reopen: bool,
    /// The client's `initialize`, to open a new session with.
    handshake: Mutex<Option<Bytes>>,
    /// Held while a new session is being opened.
    reopening: tokio::sync::Mutex<()>,
}

/// How much longer than `limits.call_timeout_ms` the link waits for the answer to a request
/// the core times too (a `tools/call`, a batch): the core's timeout and cancellation come
/// first.
const CORE_TIMER_MARGIN: Duration = Duration::from_secs(2);

/// Reads the core's lines and sends each; at the core's EOF lets the calls finish, then
/// ends the session.
async fn pump(link: Arc<Link>, mut input: DuplexStream, out: mpsc::Sender<Bytes>) {
    let mut framer = LineFramer::new(link.remote.max.saturating_add(2));
    let mut calls = JoinSet::new();
    let mut running = Vec::new();
    'read: loop {
        loop {
            match framer.next_frame() {
                Ok(Some(line)) => link.send(line, &out, &mut calls, &mut running).await,
                Ok(None) => break,
                // The core forwards only lines it framed under the same cap.
                Err(e) => tracing::warn!(error = %e, "a line for the remote upstream was dropped"),
            }
        }
        while calls.try_join_next().is_some() {}
        tokio::select! {
            read = input.read_buf(framer.read_buf()) => match read {
                Ok(0) | Err(_) => {
                    if let Ok(Some(line)) = framer.finish() {
                        link.send(line, &out, &mut calls, &mut running).await;
                    }
                    break 'read;
                }
                Ok(_) => {}
            },
            _ = link.end.cancelled() => break 'read,
        }
    }
    tokio::select! {
        _ = async { while calls.join_next().await.is_some() {} } => {}
        _ = link.end.cancelled() => calls.abort_all(),
    }
    if let Some(listener) = link
        .listener
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
    {
        listener.abort();
    }
    if link.why.get().is_none() {
        link.delete().await;
    }
}

impl Link {
    /// Sends one line: `initialize` alone (its answer sets the session), the rest
    /// concurrently. A `notifications/cancelled` also drops the HTTP request of the call it
    /// cancels (the core sends one when a call times out or the client cancels it), so no
    /// connection stays held and no error is made up for an answer nobody waits for.
    async fn send(
        self: &Arc<Self>,
        line: Bytes,
        out: &mpsc::Sender<Bytes>,
        calls: &mut JoinSet<()>,
        running: &mut Vec<(RequestId, AbortHandle)>,
    ) {
        let head = Head::of(&line);
        running.retain(|(_, h)| !h.is_finished());
        if let Some(cancelled) = &head.cancels {
            // The pipeline ends the call a cancellation names by another spelling (`"7"`) too.
            let target =
                crate::jsonrpc::message::matching(running.iter().map(|(id, _)| id), cancelled);
            for (_, h) in running.iter().filter(|(id, _)| Some(id) == target.as_ref()) {
                h.abort();
            }
        }
        if head.is("initialize") && head.id.is_some() {
            *self.handshake.lock().unwrap_or_else(|p| p.into_inner()) = Some(line.clone());
            self.exchange(line, head, out.clone()).await;
        } else {
            // The handshake's end is accepted (202) before the next message is sent, as the
            // SDK clients await it: sent concurrently, a request written after it could reach
            // the server first (`tools/list` before `notifications/initialized`, which strict
            // servers refuse). A server slow to accept holds the next message up for
            // NOTIFICATION_ORDER_WAIT at most; the POST then goes on beside the rest. Other
            // messages go concurrently (the SDKs do not await `notifications/cancelled`).
            let ordered = (head.id.is_none() && head.is("notifications/initialized"))
                .then(tokio::sync::oneshot::channel::<()>);
            let (accepted, wait) = ordered.unzip();
            let link = self.clone();
            let out = out.clone();
            let id = head.id.clone();
            let handle = calls.spawn(async move {
                link.exchange(line, head, out).await;
                if let Some(accepted) = accepted {
                    let _ = accepted.send(());
                }
            });
            if let Some(id) = id {
                running.push((id, handle));
            }
            if let Some(wait) = wait {
                let _ = tokio::time::timeout(NOTIFICATION_ORDER_WAIT, wait).await;
            }
        }
    }

    /// The headers every request of this session carries.
    fn request(&self, method: Method, version: Option<&str>) -> http::request::Builder {
        let mut req = Request::builder()
            .method(method)
            .uri(self.remote.url.clone());
        let headers = req.headers_mut().expect("a fresh builder has headers");
        headers.extend(self.remote.headers.clone());
        // No Accept-Encoding would mean any coding is acceptable (RFC 9110 §12.5.3), and the
        // proxy decodes none: say so (an upstream's configured header stands).
        headers
            .entry(ACCEPT_ENCODING)
            .or_insert(HeaderValue::from_static("identity"));
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(session) = &state.session {
            headers.insert("mcp-session-id", session.clone());
        }
        // One `Cookie` field (RFC 6265 §5.4): after a configured one, if any.
        if let Some(jar) = state.cookies.header(&self.remote.url) {
            let value = match headers.get(COOKIE).map(HeaderValue::as_bytes) {
                Some(set) => HeaderValue::from_bytes(&[set, b"; ", jar.as_bytes()].concat()).ok(),
                None => Some(jar),
            };
            if let Some(value) = value {
                headers.insert(COOKIE, value);
            }
        }
        if let Some(v) = version
            .or(state.version.as_deref())
            .and_then(|v| HeaderValue::from_str(v).ok())
        {
            headers.insert("mcp-protocol-version", v);
        }
        req
    }

    /// POSTs one message and routes what comes back. Every request in it (one, or those of a
    /// 2025-03-26 batch) gets its answer or an [`UPSTREAM_UNAVAILABLE`] error in its place,
    /// within `limits.call_timeout_ms` from the moment it is sent.
    async fn exchange(self: &Arc<Self>, line: Bytes, head: Head, out: mpsc::Sender<Bytes>) {
        let mut pending = head.ids.clone();
        let work = self.post(line, &head, &mut pending, &out, true);
        // The core times each `tools/call` itself, from when it read the call, and its
        // cancellation aborts this exchange: the link's own limit then comes later, so that
        // the client and the trail see one timeout, the core's, and never the link's error
        // racing it (recorded as a late answer of the server's).
        let timed_by_core = head.calls;
        let limit = self
            .remote
            .answer_timeout
            .filter(|_| !head.ids.is_empty())
            .map(|t| {
                if timed_by_core {
                    t + CORE_TIMER_MARGIN
                } else {
                    t
                }
            });
        let result = match limit {
            Some(limit) => match tokio::time::timeout(limit, work).await {
                Ok(r) => r,
                Err(_) => Err(format!(
                    "no complete answer within {} ms (limits.call_timeout_ms{})",
                    limit.as_millis(),
                    if timed_by_core {
                        ", and the link's margin after it"
                    } else {
                        ""
                    }
                )
                .into()),
            },
            None => work.await,
        };
        let why = match result {
            Err(why) => why,
            Ok(()) if pending.is_empty() => return,
            Ok(()) => {
                "it answered without an answer to the request (no message with its id)".into()
            }
        };
        self.fail(&head, &pending, &why, &out).await;
    }

    async fn post(
        self: &Arc<Self>,
        line: Bytes,
        head: &Head,
        pending: &mut Vec<RequestId>,
        out: &mpsc::Sender<Bytes>,
        may_reopen: bool,
    ) -> Result<(), Failed> {
        let body = line.slice(..trim_line_end(&line).len());
        let mut req = self
            .request(Method::POST, head.meta_version.as_deref())
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json, text/event-stream");
        if head.meta_version.is_some()
            && let Some(method) = &head.method
        {
            req = req.header("mcp-method", header_text(method));
            if let Some(name) = &head.name {
                req = req.header("mcp-name", header_text(name));
                if head.is("tools/call") {
                    // helper-89 F5: a tool with invalid declarations was called anyway, where
                    // a direct client refuses.
                    let headers = self.remote.params.for_call(name, || arguments(&body)).map_err(|why| format!(
                        "its tool {name:?} declares invalid x-mcp-header arguments ({why}); a client must not call such a tool (SEP-2243), so the call was not sent"
                    ))?;
                    for (header, value) in headers {
                        req = req.header(header, value);
                    }
                }
            }
        }
        let sent_session = self
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .session
            .clone();
        let req = req
            .body(Full::new(body))
            .map_err(|e| format!("cannot build the request: {e}"))?;
        let wait = if head.ids.is_empty() {
            Some(ACCEPT_TIMEOUT)
        } else {
            None
        };
        let resp = self.call(req, wait).await?;
        if let Some(session) = resp.headers().get("mcp-session-id") {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if state.session.is_none() {
                state.session = Some(session.clone());
            }
        }
        let status = resp.status();
        if status == StatusCode::NOT_FOUND
            && let Some(stale) = sent_session.clone()
        {
            // The upstream did not take the request: sending it again in a new session is safe.
            // Behind the stdio wrapper a request that cannot be sent in a new session fails
            // alone, as it would for a client of the remote's own; the next one tries again
            // (its client cannot open a session of its own, and ending the wrapper would end
            // every other call with it).
            if self.reopen && !head.is("initialize") {
                if !may_reopen {
                    return Err(
                        "the upstream answered 404 (no such session) again, in the session just opened for this request".into(),
                    );
                }
                return self
                    .resend_in_new_session(
                        &stale,
                        (line, head, pending, out),
                        "ended the session (HTTP 404)",
                    )
                    .await;
            }
            self.ended("it answered 404 for the session (expired or ended)");
            return Err(Failed::SessionLost("ended the session (HTTP 404)"));
        }
        let kind = content_type(resp.headers());
        if status.is_success() && kind.as_deref() == Some("text/event-stream") {
            return match self.stream(resp.into_body(), head, pending, out).await {
                Streamed::Done => Ok(()),
                Streamed::Ended {
                    last_id, retry_ms, ..
                } => Ok(self.resume(head, last_id, retry_ms, pending, out).await?),
                Streamed::Failed(why) => Err(why.into()),
            };
        }
        if status == StatusCode::ACCEPTED || (status.is_success() && kind.is_none()) {
            return Ok(self.taken(status, head, may_reopen, out)?);
        }
        if status.is_redirection() {
            let to = resp
                .headers()
                .get(http::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(|l| redirect_target(&self.remote.url, l))
                .unwrap_or_else(|| "(no Location)".to_string());
            return Err(format!(
                "it redirected (HTTP {status}) to {to}; redirects are not followed (the request and its credentials would go elsewhere than configured): set the upstream's url to the address it redirects to"
            )
            .into());
        }
        let body = Limited::new(resp.into_body(), self.remote.max)
            .collect()
            .await
            .map_err(|e| format!("its answer could not be read: {e}"))?
            .to_bytes();
        // helper-92 F4 (after supergateway#123): a restarted server built on the SDKs' examples
        // answers a session it does not know with 400 "No valid session ID provided", not the
        // spec's 404; behind the stdio wrapper every later call then failed, and a stdio client
        // cannot open a session itself. Taken as the 404 it means, once per request.
        let lost_session = status == StatusCode::BAD_REQUEST
            && sent_session.is_some()
            && !head.is("initialize")
            && refuses_the_session(&body);
        if lost_session && !self.reopen {
            // Behind the gateway, as for a 404: the client's session ends with it (helper-93).
            self.ended("it answered 400 naming the session (a server that lost it)");
            return Err(Failed::SessionLost(
                "no longer knows the session (HTTP 400)",
            ));
        }
        if lost_session
            && self.reopen
            && may_reopen
            && let Some(stale) = sent_session
        {
            tracing::warn!(upstream = %self.remote.name, "the remote answered 400 naming the session (a restarted server that answers an unknown session with 400, not 404)");
            return self
                .resend_in_new_session(
                    &stale,
                    (line, head, pending, out),
                    "no longer knows the session (HTTP 400)",
                )
                .await;
        }
        // A notification or response taken with an empty `200 application/json` (servers
        // that answer every POST with a JSON body and have none to give): taken, as a 202.
        if status.is_success() && head.ids.is_empty() && body.trim_ascii().is_empty() {
            return Ok(self.taken(status, head, may_reopen, out)?);
        }
        if kind.as_deref() == Some("application/json") && looks_like_jsonrpc(&body) {
            // Success, or an error the remote answers with its own status (SEP-2575): the
            // JSON-RPC body says it for the client either way. An array answering a single
            // request is passed on element by element (a 2025-06-18 client reads no batch).
            for line in messages_of(&body, head.batch) {
                self.deliver(line, head, pending, out).await;
            }
            return Ok(());
        }
        Err(match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN if self.remote.headers.is_empty() => {
                format!(
                    "it asks for credentials (HTTP {status}); give the upstream bearer_token_env, headers_from_env or headers"
                )
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => format!(
                "it refused the proxy's credentials (HTTP {status}); check the upstream's headers_from_env, bearer_token_env or headers"
            ),
            _ => format!(
                "it answered HTTP {status} ({}) without a JSON-RPC message: {:?}",
                kind.as_deref().unwrap_or("no content type"),
                self.snippet(&body)
            ),
        }
        .into())
    }

    /// The upstream took the POST without answering it (MCP "Sending Messages to the
    /// Server": 202 Accepted for notifications and responses): an error for a request,
    /// which must be answered; else done, and after the handshake's
    /// `notifications/initialized` the GET stream is opened.
    fn taken(
        self: &Arc<Self>,
        status: StatusCode,
        head: &Head,
        may_reopen: bool,
        out: &mpsc::Sender<Bytes>,
    ) -> Result<(), String> {
        if !head.ids.is_empty() {
            return Err(format!(
                "it answered a request with HTTP {status} and no answer"
            ));
        }
        // Not for the handshake of a reopened session: its stream is the running one's.
        if head.is("notifications/initialized") && may_reopen {
            self.listen(out.clone());
        }
        Ok(())
    }

    /// Opens a new upstream session in place of `stale` by sending the client's `initialize`
    /// again (its answer is not passed on: the client has had one) and
    /// `notifications/initialized`. Concurrent callers wait for one another; a caller whose
    /// session was already replaced returns at once.
    async fn reopen_session(self: &Arc<Self>, stale: &HeaderValue) -> Result<(), String> {
        let _one_at_a_time = self.reopening.lock().await;
        {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if state.session.as_ref() != Some(stale) {
                return Ok(());
            }
            state.session = None;
        }
        let Some(init) = self
            .handshake
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        else {
            return Err("the client sent no initialize to open it with".into());
        };
        tracing::warn!(upstream = %self.remote.name, "the remote upstream ended the session; opening a new one with the client's initialize (state the server kept, such as subscriptions, is gone)");
        let (swallow, mut discard) = mpsc::channel::<Bytes>(16);
        tokio::spawn(async move { while discard.recv().await.is_some() {} });
        let head = Head::of(&init);
        let mut pending = head.ids.clone();
        Box::pin(self.post(init, &head, &mut pending, &swallow, false))
            .await
            .map_err(|e| e.to_string())?;
        if !pending.is_empty() {
            return Err("it did not answer the new initialize".into());
        }
        let note =
            Bytes::from_static(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n");
        let head = Head::of(&note);
        Box::pin(self.post(note, &head, &mut Vec::new(), &swallow, false))
            .await
            .map_err(|e| e.to_string())
    }

    /// Opens a new upstream session in place of `stale` and sends the request again in it
    /// (the upstream did not take it); `what` says what the upstream answered, for the error.
    async fn resend_in_new_session(
        self: &Arc<Self>,
        stale: &HeaderValue,
        (line, head, pending, out): (Bytes, &Head, &mut Vec<RequestId>, &mpsc::Sender<Bytes>),
        what: &str,
    ) -> Result<(), Failed> {
        match self.reopen_session(stale).await {
            Ok(()) => Box::pin(self.post(line, head, pending, out, false)).await,
            Err(why) => {
                self.retry_reopen(stale);
                Err(format!("the upstream {what} and a new one could not be opened: {why}").into())
            }
        }
    }

    /// After a failed [`Link::reopen_session`] that left no session: the stale one is put
    /// back, so that the next request meets the remote's 404 and tries to open one again
    /// (sent with no session at all, it would get the remote's 400 for ever).
    fn retry_reopen(&self, stale: &HeaderValue) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.session.is_none() {
            state.session = Some(stale.clone());
        }
    }

    /// Sends a line the upstream wrote on to the core; notes which pending request it answers.
    async fn deliver(
        &self,
        mut line: Bytes,
        head: &Head,
        pending: &mut Vec<RequestId>,
        out: &mpsc::Sender<Bytes>,
    ) {
        // By the exact id, else by the one the official SDKs read it as (`"7"` for 7), as the
        // pipeline pairs it: the request is answered either way, and no error of the link's
        // may follow for it.
        let found = answered_id(&line).and_then(|id| {
            let matched = crate::jsonrpc::message::matching(pending.iter(), &id)?;
            pending.iter().position(|p| *p == matched)
        });
        if let Some(at) = found {
            let id = pending.swap_remove(at);
            if head.id.as_ref() == Some(&id) {
                self.answered(&line, head);
            }
        } else if !head.batch && pending.len() == 1 && is_error_without_id(&line) {
            // An error with `"id": null` on a single request's POST is the server refusing that
            // request without reading its id (JSON-RPC 2.0, 5.1; the TypeScript SDK's "Server
            // not initialized", say). Over HTTP the POST ties it to its request, and a client
            // of the server's own fails that request with it; a stdio client or a gateway
            // stream can match an answer only by its id. So it goes on as the request's
            // answer: the server's error as sent, with the request's id. The call ends now
            // (upstream `jsonrpc_error`), not at `limits.call_timeout_ms`, and no error of
            // the proxy's follows it.
            let id = pending.remove(0);
            if let Some(named) = with_id(&line, &id) {
                line = named;
            }
            if head.id.as_ref() == Some(&id) {
                self.answered(&line, head);
            }
        }
        let _ = out.send(line).await;
    }

    /// The start of an unexpected body, for an error text: printable characters only, and the
    /// upstream's credentials blanked (an error page may echo the request's headers).
    fn snippet(&self, body: &[u8]) -> String {
        let text = String::from_utf8_lossy(&body[..body.len().min(SNIPPET)]);
        let mut text: String = text
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        for value in self.remote.headers.values() {
            let Ok(v) = value.to_str() else { continue };
            let secret = v.split_once(' ').map_or(v, |(_, token)| token);
            for needle in [v, secret] {
                if needle.len() >= 4 {
                    text = text.replace(needle, "<redacted>");
                }
            }
        }
        text
    }

    /// Sends a request, waiting at most `wait` for the response to start.
    async fn call(
        &self,
        req: Request<Full<Bytes>>,
        wait: Option<Duration>,
    ) -> Result<Response<Incoming>, String> {
        let sent = self.remote.client.request(req);
        let result = tokio::select! {
            r = async {
                match wait {
                    Some(w) => tokio::time::timeout(w, sent).await.map_err(|_| format!("no answer within {} ms", w.as_millis())),
                    None => Ok(sent.await),
                }
            } => r,
            _ = self.end.cancelled() => Err("the session was ended".to_string()),
        };
        if let Ok(Ok(r)) = &result {
            self.state
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .cookies
                .store(&self.remote.url, r.headers());
        }
        match result? {
            // Every Content-Encoding field and every coding listed in one (RFC 9110 §8.4), on
            // the answers whose body is read as MCP; a redirect, 401, 403, 404 and 405 keep
            // their own handling and hints (a 404 still reopens a lost session).
            Ok(r) => match r
                .headers()
                .get_all(CONTENT_ENCODING)
                .iter()
                .flat_map(|v| v.as_bytes().split(|&b| b == b','))
                .map(|c| c.trim_ascii())
                .find(|c| !c.is_empty() && !c.eq_ignore_ascii_case(b"identity"))
            {
                Some(coding) if !matches!(r.status().as_u16(), 300..=399 | 401 | 403..=405) => {
                    Err(format!(
                        "it answered with Content-Encoding {:?}, though asked for identity; the proxy decodes no content coding: configure the upstream not to compress its MCP endpoint",
                        String::from_utf8_lossy(coding)
                    ))
                }
                _ => Ok(r),
            },
            Err(e) => Err(format!("unreachable: {}", error_chain(&e))),
        }
    }

    /// Forwards a stream's messages until it ends or answers every pending request.
    async fn stream(
        &self,
        mut body: Incoming,
        head: &Head,
        pending: &mut Vec<RequestId>,
        out: &mpsc::Sender<Bytes>,
    ) -> Streamed {
        let mut parser = sse::Parser::new(self.remote.max);
        let mut events = Vec::new();
        let mut delivered = false;
        loop {
            let frame = tokio::select! {
                f = body.frame() => f,
                _ = self.end.cancelled() => return Streamed::Failed("the session was ended".into()),
            };
            let data = match frame {
                None => break,
                Some(Err(e)) => {
                    tracing::info!(upstream = %self.remote.name, error = %error_chain(&e), "SSE stream of the upstream broke");
                    break;
                }
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(d) => d,
                    Err(_) => continue,
                },
            };
            if let Err(e) = parser.push(&data, &mut events) {
                return Streamed::Failed(e.to_string());
            }
            for event in events.drain(..) {
                if event.kind != "message" || event.data.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                delivered = true;
                self.deliver(one_line(&event.data), head, pending, out)
                    .await;
            }
            if !head.ids.is_empty() && pending.is_empty() {
                // The answer ends a request's stream (the spec lets the server close it then);
                // reading on would only hold the connection.
                return Streamed::Done;
            }
        }
        if pending.is_empty() {
            Streamed::Done
        } else {
            Streamed::Ended {
                last_id: parser.last_id,
                retry_ms: parser.retry_ms,
                delivered,
            }
        }
    }

    /// A request's stream ended before its answer: reconnects with `Last-Event-ID` (MCP
    /// 2025-06-18, "Resumability and Redelivery"), after the stream's `retry:` time when it
    /// gave one (the SSE reconnection time, WHATWG HTML 9.2; MCP 2025-11-25 lets a server
    /// close a request's stream on purpose and have the client poll), and at least
    /// [`MIN_RETRY_WAIT`]. `Err` if the answer does not come: [`RESUMES`] reconnections in a
    /// row brought no message and the server set no `retry:`, or it has not come within
    /// [`POLLING_SPAN`] whatever the server does.
    async fn resume(
        &self,
        head: &Head,
        mut last_id: Option<String>,
        mut retry_ms: Option<u64>,
        pending: &mut Vec<RequestId>,
        out: &mpsc::Sender<Bytes>,
    ) -> Result<(), String> {
        let started = tokio::time::Instant::now();
        // Resumes in a row that delivered no message (a bare priming event is none).
        let mut idle = 0;
        while started.elapsed() < POLLING_SPAN && (idle < RESUMES || retry_ms.is_some()) {
            let Some(id) = last_id.clone() else { break };
            let wait =
                Duration::from_millis(retry_ms.unwrap_or(0)).clamp(MIN_RETRY_WAIT, MAX_RETRY_WAIT);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.end.cancelled() => return Err("the session was ended".into()),
            }
            let Ok(value) = HeaderValue::from_str(&id) else {
                break;
            };
            let req = self
                .request(Method::GET, head.meta_version.as_deref())
                .header(ACCEPT, "text/event-stream")
                .header("last-event-id", value)
                .body(Full::new(Bytes::new()));
            let Ok(req) = req else { break };
            let resp = self.call(req, None).await?;
            if !resp.status().is_success()
                || content_type(resp.headers()).as_deref() != Some("text/event-stream")
            {
                break;
            }
            match self.stream(resp.into_body(), head, pending, out).await {
                Streamed::Done => return Ok(()),
                Streamed::Failed(why) => return Err(why),
                Streamed::Ended {
                    last_id: next,
                    retry_ms: retry,
                    delivered,
                } => {
                    idle = if delivered { 0 } else { idle + 1 };
                    last_id = next.or(last_id);
                    retry_ms = retry.or(retry_ms);
                }
            }
        }
        Err("its SSE stream ended before the answer".into())
    }

    /// Opens the session's GET stream for the server's own requests and notifications.
    fn listen(self: &Arc<Self>, out: mpsc::Sender<Bytes>) {
        let link = self.clone();
        let mut slot = self.listener.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_some() {
            return;
        }
        *slot = Some(tokio::spawn(async move {
            let mut last_id: Option<String> = None;
            let mut failures = 0u32;
            let mut parser_retry = None;
            // Whether a GET stream has opened for the session it is sent with, and how many
            // 404s it got before one did.
            let mut opened = false;
            let mut refused = 0;
            while !link.end.is_cancelled() && failures < LISTEN_FAILURES {
                let sent_session = link
                    .state
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .session
                    .clone();
                let mut req = link
                    .request(Method::GET, None)
                    .header(ACCEPT, "text/event-stream");
                if let Some(id) = last_id
                    .as_deref()
                    .and_then(|i| HeaderValue::from_str(i).ok())
                {
                    req = req.header("last-event-id", id);
                }
                let Ok(req) = req.body(Full::new(Bytes::new())) else {
                    return;
                };
                match link.call(req, Some(ACCEPT_TIMEOUT)).await {
                    Ok(resp) if resp.status() == StatusCode::METHOD_NOT_ALLOWED => return,
                    Ok(resp) if resp.status() == StatusCode::NOT_FOUND && !opened => {
                        // A server without a GET stream should answer 405, but many answer
                        // 404 (a web framework's missing route). Taken as "no stream", as the
                        // official SDKs take it, after one more try a second later (a server
                        // that had not yet taken the new session); the session's requests
                        // show whether it has ended (`post`). Taking it as the session's end
                        // made the stdio wrapper open a new session in a loop (thousands a
                        // second) and the gateway end its client's (helper-89 F1).
                        refused += 1;
                        if refused < 2 {
                            tokio::select! {
                                _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                                _ = link.end.cancelled() => return,
                            }
                        }
                        tracing::warn!(upstream = %link.remote.name, "the upstream answered 404 to the session's GET stream twice; taken as having none (server requests and notifications come only on POST streams)");
                        return;
                    }
                    Ok(resp) if resp.status() == StatusCode::NOT_FOUND => {
                        let reopened = match (&sent_session, link.reopen) {
                            (Some(stale), true) => {
                                let ok = link.reopen_session(stale).await.is_ok();
                                if !ok {
                                    // As for a request (`post`): behind the stdio wrapper the
                                    // session goes on, and a later try opens a new one.
                                    link.retry_reopen(stale);
                                    failures += 1;
                                }
                                Some(ok)
                            }
                            _ => None,
                        };
                        match reopened {
                            None => {
                                link.ended(
                                    "it answered 404 for the session's stream (expired or ended)",
                                );
                                return;
                            }
                            Some(true) => {
                                // The new session's stream: from its start.
                                last_id = None;
                                opened = false;
                                refused = 0;
                                continue;
                            }
                            Some(false) => {}
                        }
                    }
                    Ok(resp)
                        if resp.status().is_success()
                            && content_type(resp.headers()).as_deref()
                                == Some("text/event-stream") =>
                    {
                        opened = true;
                        let mut parser = sse::Parser::new(link.remote.max);
                        parser.last_id = last_id.clone();
                        let (got, retry) = link.relay(resp.into_body(), &mut parser, &out).await;
                        last_id = parser.last_id;
                        parser_retry = retry.or(parser_retry);
                        failures = if got { 0 } else { failures + 1 };
                    }
                    Ok(resp) => {
                        tracing::warn!(upstream = %link.remote.name, status = %resp.status(), "the upstream's GET stream was refused");
                        failures += 1;
                    }
                    Err(why) => {
                        tracing::warn!(upstream = %link.remote.name, error = %why, "the upstream's GET stream failed");
                        failures += 1;
                    }
                }
                let pause = parser_retry.unwrap_or(1000).max(100) * u64::from(failures.max(1));
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(pause)) => {}
                    _ = link.end.cancelled() => return,
                }
            }
            if failures >= LISTEN_FAILURES {
                tracing::warn!(upstream = %link.remote.name, "gave up the upstream's GET stream; server requests now come only on POST streams");
            }
        }));
    }

    /// Relays a GET stream until it ends; returns whether any message came, and `retry:`.
    async fn relay(
        &self,
        mut body: Incoming,
        parser: &mut sse::Parser,
        out: &mpsc::Sender<Bytes>,
    ) -> (bool, Option<u64>) {
        let mut events = Vec::new();
        let mut got = false;
        while let Some(Ok(frame)) = body.frame().await {
            let Ok(data) = frame.into_data() else {
                continue;
            };
            if let Err(e) = parser.push(&data, &mut events) {
                tracing::warn!(upstream = %self.remote.name, error = %e, "the upstream's GET stream sent an oversized event; reconnecting");
                break;
            }
            for event in events.drain(..) {
                got = true;
                if event.kind == "message" && !event.data.iter().all(u8::is_ascii_whitespace) {
                    let _ = out.send(one_line(&event.data)).await;
                }
            }
        }
        (got, parser.retry_ms)
    }

    /// What the link learns from an answer: the version `initialize` settled on, the
    /// `Mcp-Param-*` bindings of listed tools.
    fn answered(&self, line: &[u8], head: &Head) {
        if head.is("tools/list") {
            self.remote.params.learn(line);
        }
        if !head.is("initialize") || head.id.is_none() {
            return;
        }
        let version = serde_json::from_slice::<serde_json::Value>(line)
            .ok()
            .and_then(|v| {
                v.get("result")?
                    .get("protocolVersion")?
                    .as_str()
                    .map(str::to_string)
            });
        if let Some(v) = version {
            self.state.lock().unwrap_or_else(|p| p.into_inner()).version = Some(v);
        }
    }

    /// The upstream ended the session: everything stops, and calls in flight fail.
    fn ended(&self, why: &str) {
        let _ = self.why.set(why.to_string());
        tracing::warn!(upstream = %self.remote.name, reason = why, "the remote upstream ended the session");
        self.end.cancel();
    }

    /// Answers each of `ids` (requests that got no answer) with [`UPSTREAM_UNAVAILABLE`]; a
    /// lost notification or response is logged (it has nobody to answer).
    async fn fail(&self, head: &Head, ids: &[RequestId], why: &Failed, out: &mpsc::Sender<Bytes>) {
        let what = format!("{}: {why}", self.remote.label());
        if ids.is_empty() {
            tracing::warn!(
                method = head.method.as_deref().unwrap_or("(a response)"),
                reason = %what,
                "a message for the remote upstream was not delivered"
            );
        }
        for id in ids {
            let mut data = serde_json::json!({ "upstream": self.remote.name });
            // The upstream did not take this request (its POST found the session gone):
            // behind the gateway the client's session ends with it, and this request's answer
            // is the 404 the client starts a new one on (MCP "Session Management"), not a 502
            // first. A call in flight when the session ended keeps its 502 (review
            // helper-106: the upstream may have run it; a 404 invites running it again).
            if matches!(why, Failed::SessionLost(_)) {
                data[SESSION_ENDED] = true.into();
            }
            let _ = out
                .send(message::error_response(
                    Some(id),
                    UPSTREAM_UNAVAILABLE,
                    &what,
                    Some(data),
                ))
                .await;
        }
    }

    /// Ends the upstream session (MCP: "Session Management"); a 405 means the server keeps it.
    async fn delete(&self) {
        if self
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .session
            .is_none()
        {
            return;
        }
        let Ok(req) = self
            .request(Method::DELETE, None)
            .body(Full::new(Bytes::new()))
        else {
            return;
        };
        // Also after the grace period cut the link: the session must not stay open upstream.
        let sent = tokio::time::timeout(DELETE_TIMEOUT, self.remote.client.request(req)).await;
        match sent
            .map_err(|_| "no answer".to_string())
            .and_then(|r| r.map_err(|e| error_chain(&e)))
        {
            Ok(resp) => {
                tracing::debug!(upstream = %self.remote.name, status = %resp.status(), "upstream session deleted")
            }
            Err(why) => {
                tracing::info!(upstream = %self.remote.name, error = %why, "the upstream session could not be deleted")
            }
        }
    }
}

/// How a request's SSE stream ended.
enum Streamed {
    /// Every request it carried is answered (or it carried none and has ended).
    Done,
    /// Ended before an answer: the last event id to resume from, and the stream's `retry:`
    /// (milliseconds) if it set one.
    Ended {
        last_id: Option<String>,
        retry_ms: Option<u64>,
        /// Whether it carried a message (progress, a server request): the call is alive.
        delivered: bool,
    },
    Failed(String),
}

/// Whether an HTTP 400 body is a JSON-RPC error about the request's session (`"Bad Request:
/// No valid session ID provided"`, the SDKs' example servers' answer to a session they do not
/// know), not about the request itself: an error with a null id (the transport's, given before
/// the request was read) whose message names the session.
fn refuses_the_session(body: &[u8]) -> bool {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return false;
    };
    v.get("jsonrpc").and_then(|j| j.as_str()) == Some("2.0")
        && v.get("id").is_none_or(serde_json::Value::is_null)
        && v.get("method").is_none()
        && v.get("error")
            .and_then(|e| e.get("message")?.as_str())
            .is_some_and(|m| m.to_ascii_lowercase().contains("session"))
}

/// The essence of a `Content-Type`, lowercased (`application/json; charset=utf-8` ->
/// `application/json`).
fn content_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(CONTENT_TYPE)?.to_str().ok()?;
    let essence = value.split(';').next()?.trim().to_ascii_lowercase();
    (!essence.is_empty()).then_some(essence)
}

/// A header value for `Mcp-Method`/`Mcp-Name`: as is when it is visible ASCII without edge
/// spaces, else `=?base64?…?=` (SEP-2243).
pub(crate) fn header_text(value: &str) -> HeaderValue {
    let plain = !value.is_empty()
        && value.bytes().all(|b| (0x20..0x7f).contains(&b))
        && !value.starts_with(' ')
        && !value.ends_with(' ')
        && !value.starts_with("=?");
    if plain && let Ok(v) = HeaderValue::from_str(value) {
        return v;
    }
    use base64::Engine;
    let encoded = base64::prelude::BASE64_STANDARD.encode(value);
    HeaderValue::from_str(&format!("=?base64?{encoded}?=")).expect("base64 is a valid header value")
}

/// An error with its causes ("connection refused" is three levels down in hyper's errors).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    if let Some(hint) = certificate_hint(&text) {
        text.push_str("\n  hint: ");
        text.push_str(hint);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_certificates_come_with_what_to_do() {
        let ca = "unreachable: client error (Connect): invalid peer certificate: Other(OtherError(CaUsedAsEndEntity))";
        assert!(certificate_hint(ca).is_some_and(|h| h.contains("CA:FALSE")));
        let issuer = "unreachable: invalid peer certificate: UnknownIssuer";
        assert!(certificate_hint(issuer).is_some_and(|h| h.contains("ca_file")));
        let name = "invalid peer certificate: NotValidForName";
        assert!(certificate_hint(name).is_some_and(|h| h.contains("subjectAltName")));
        // rustls 0.23 words these as sentences.
        let name = "invalid peer certificate: certificate not valid for name \"127.0.0.1\"; certificate is only valid for DnsName(\"localhost\")";
        assert!(certificate_hint(name).is_some_and(|h| h.contains("subjectAltName")));
        let expired = "invalid peer certificate: certificate expired: verification time 1 (UNIX), but certificate is not valid after 0 (1 seconds ago)";
        assert!(certificate_hint(expired).is_some_and(|h| h.contains("renew")));
        let early = "invalid peer certificate: certificate not valid yet: verification time 0 (UNIX), but certificate is not valid before 1 (1 seconds in future)";
        assert!(certificate_hint(early).is_some_and(|h| h.contains("not valid yet")));
        assert_eq!(certificate_hint("unreachable: connection refused"), None);
        let chained = error_chain(&std::io::Error::other(
            "invalid peer certificate: BadSignature",
        ));
        assert!(chained.contains("\n  hint: "), "{chained}");
    }

    #[test]
    fn routing_headers_mirror_the_body_and_wrap_what_a_header_cannot_hold() {
        assert_eq!(header_text("tools/call"), "tools/call");
        assert_eq!(header_text("read_file"), "read_file");
        // Non-ASCII, edge spaces and text that looks encoded go base64 (SEP-2243).
        for raw in ["café", " padded", "=?base64?x?=", "tab\there"] {
            let v = header_text(raw);
            let text = v.to_str().unwrap();
            let inner = text
                .strip_prefix("=?base64?")
                .and_then(|t| t.strip_suffix("?="))
                .unwrap_or_else(|| panic!("{raw:?} -> {text:?}"));
            use base64::Engine;
            let decoded = base64::prelude::BASE64_STANDARD.decode(inner).unwrap();
            assert_eq!(decoded, raw.as_bytes());
        }
    }

    #[test]
    fn a_head_knows_the_request_its_name_and_its_era() {
        let line = br#"{"jsonrpc":"2.0","id":"a","method":"resources/read","params":{"uri":"file:///x","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;
        let head = Head::of(line);
        assert!(head.is("resources/read"));
        assert_eq!(head.id, RequestId::from_json("\"a\""));
        assert_eq!(head.name.as_deref(), Some("file:///x"));
        assert_eq!(head.meta_version.as_deref(), Some("2026-07-28"));
        let note = Head::of(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        assert!(note.id.is_none() && note.is("notifications/initialized"));
        let response = Head::of(br#"{"jsonrpc":"2.0","id":1,"result":{}}"#);
        assert!(response.id.is_none() && response.method.is_none());
        // What the core times too, and so the link later (CORE_TIMER_MARGIN).
        assert!(!head.calls && !note.calls);
        let call = br#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"x"}}"#;
        assert!(Head::of(call).calls);
        let lists = br#"[{"jsonrpc":"2.0","id":3,"method":"tools/list"},{"jsonrpc":"2.0","id":4,"method":"resources/list"}]"#;
        assert!(!Head::of(lists).calls && Head::of(lists).ids.len() == 2);
        let mixed = br#"[{"jsonrpc":"2.0","id":5,"method":"tools/list"},{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"x"}}]"#;
        assert!(Head::of(mixed).calls);
        // A lone surrogate escape (JavaScript cuts an emoji so) is read as the core reads it:
        // the request is still one to answer, under its name.
        let cut = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo\ud83d","arguments":{"text":"\ud83d"}}}"#;
        let head = Head::of(cut);
        assert!(head.calls && head.id == RequestId::from_json("7"));
        assert_eq!(head.name.as_deref(), Some("echo\u{fffd}"));
        assert_eq!(arguments(cut)["text"], "\u{fffd}");
    }

    #[test]
    fn bodies_become_one_line_that_means_the_same() {
        let body = b"\r\n{\n  \"jsonrpc\": \"2.0\",\r\n  \"id\": 1,\n  \"result\": {\"text\": \"a\\nb\"}\n}\n";
        let line = one_line(body);
        assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
        assert!(line.ends_with(b"\n"));
        let a: serde_json::Value = serde_json::from_slice(trim(body)).unwrap();
        let b: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(a, b);
        assert!(answers(&line, &RequestId::from_json("1").unwrap()));
        assert!(!answers(&line, &RequestId::from_json("2").unwrap()));
        assert!(is_error_without_id(
            br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"no"}}"#
        ));
        assert!(!is_error_without_id(&line));
        let named = with_id(
            br#"{"jsonrpc":"2.0","error":{"message":"no","code":-32000,"data":123456789012345678901234567890},"id":null}"#,
            &RequestId::from_json("18446744073709551617").unwrap(),
        )
        .unwrap();
        assert_eq!(
            &named[..],
            b"{\"jsonrpc\":\"2.0\",\"id\":18446744073709551617,\"error\":{\"message\":\"no\",\"code\":-32000,\"data\":123456789012345678901234567890}}\n"
        );
    }

    #[test]
    fn content_types_compare_by_essence() {
        let mut h = HeaderMap::new();
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("Application/JSON; charset=utf-8"),
        );
        assert_eq!(content_type(&h).as_deref(), Some("application/json"));
        assert_eq!(content_type(&HeaderMap::new()), None);
    }
}
