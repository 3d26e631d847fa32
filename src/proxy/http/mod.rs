//! The HTTP front door: MCP Streamable HTTP (spec revisions 2025-03-26 to 2025-11-25, and
//! sessionless 2026-07-28 requests) on hyper, plain or TLS (rustls), in front of the
//! `[[upstream]]` servers, each served at `/mcp/<name>`.
//!
//! Per request: `Host` and `Origin` checked (403) → credential verified (401, with
//! `WWW-Authenticate` naming the RFC 9728 metadata) → session found (`Mcp-Session-Id`, bound
//! to the principal: unknown or another principal's → 404), or created by `initialize` (one
//! server process per session), or, without a session, a 2026-07-28 request gets a session
//! core of its own on a server process shared with its principal's other sessionless requests
//! (`proxy/pool`; a process of its own with `share_children = false`) → the body (size-limited: 413) goes through the session's
//! [`Pipeline`] exactly as a stdio line does → responses come back on this POST as JSON or as
//! an SSE stream. Every refusal on the way is an audit event with the HTTP status and reason.
//!
//! Operations: `/healthz`; SIGTERM/SIGINT stop accepting, let requests in flight finish,
//! then end every session (their events written) and exit 0; SIGHUP and file changes reload
//! the `[risk]` policy for every session at once, and the credentials (`credentials.rs`).

mod auth;
mod body;
pub(crate) mod budget;
mod cors;
mod credentials;
mod headers;
mod limit;
pub(crate) use headers::name_member;
mod metrics;
mod opening;
mod refusal;
use refusal::Refusal;
mod request;
mod retention;
mod session;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE, USER_AGENT};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, oneshot};
use tokio_util::sync::CancellationToken;

use self::auth::Principal;
use self::body::{EventStream, OnDrop, ResponseBody, full};
use self::session::{Opening, Session};
use super::pipeline::{Pipeline, Route, SessionInfo};
use super::remote::Remote;
use super::remote::params::ParamHeaders;
use super::stdio::{ClientDoor, Server, SessionSetup, run_session};
use crate::audit::event::{
    AuditEvent, EventIds, EventType, HttpContext, Metadata, Outcome, RiskLevel,
};
use crate::audit::writer::AuditSink;
use crate::config::{Config, UpstreamConfig};
use crate::error::Side;
use crate::jsonrpc::message::{self, INVALID_REQUEST, error_response};
use crate::jsonrpc::{Message, Parsed, RequestId};
use crate::policy::PolicyCell;

/// The session header (MCP "Streamable HTTP: Session Management").
const SESSION_HEADER: &str = "mcp-session-id";
/// The protocol version header (MCP 2025-06-18 "Streamable HTTP: Protocol Version Header").
const VERSION_HEADER: &str = "mcp-protocol-version";
/// Protocol revisions the gateway accepts in `MCP-Protocol-Version`.
const SUPPORTED_VERSIONS: [&str; 5] = [
    "2024-11-05",
    "2025-03-26",
    "2025-06-18",
    "2025-11-25",
    "2026-07-28",
];
/// JSON-RPC code of MCP 2026-07-28's UnsupportedProtocolVersionError.
const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;
/// The first revision without sessions: a request without `Mcp-Session-Id` is served alone.
const SESSIONLESS_FROM: &str = "2026-07-28";
/// Streams one HTTP/2 connection may have open at once.
const H2_STREAMS: u32 = 256;
/// HTTP/2 pings a quiet connection at this interval and drops it if the ping goes unanswered
/// as long (a client gone without closing).
const H2_PING: Duration = Duration::from_secs(20);
/// How long requests in flight may take to finish once shutdown starts.
const DRAIN_AT_SHUTDOWN: Duration = Duration::from_secs(30);

/// Why the gateway could not run.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}\n  hint: check gateway.listen in {}; is another process using the port?", config.display())]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The config file.
        config: std::path::PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The TLS certificate or key could not be used.
    #[error("cannot use the TLS {what} {}: {reason}\n  hint: give PEM files in [gateway.tls] of {} (cert: the chain, leaf first; key: PKCS#8, PKCS#1 or SEC1)", path.display(), config.display())]
    Tls {
        /// `certificate` or `key`.
        what: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// The config file.
        config: std::path::PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The configuration cannot serve safely.
    #[error("{what}\n  hint: {hint}")]
    Unsafe {
        /// What is missing.
        what: String,
        /// What to do.
        hint: String,
    },
    /// A remote upstream cannot be used.
    #[error(transparent)]
    Remote(#[from] super::remote::RemoteError),
}

/// The gateway's shared state.
struct Gateway {
    config: Arc<Config>,
    audit: AuditSink,
    policy: PolicyCell,
    ids: EventIds,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    /// 2025 sessions whose server is starting, by principal ([`session::Opening`]): counted
    /// with the table against `max_sessions_per_principal`. Changed only under the
    /// `sessions` lock (taken first).
    opening: Mutex<HashMap<String, usize>>,
    /// MRTR rounds of sessionless requests by (principal, upstream): a retry reaches a
    /// pipeline of its own, not the one that opened the round. With them, what those
    /// requests learnt (sequence-rule tags, tools' annotations).
    rounds: Mutex<HashMap<(String, String), crate::proxy::pipeline::SharedRounds>>,
    /// The tasks each principal's requests created, by (principal, upstream): a task
    /// request names only its principal's (`pipeline/owners.rs`).
    task_owners: crate::proxy::pipeline::TaskOwners,
    /// The byte budget of sessionless requests by (principal, upstream), alive while any of
    /// them answers ([`budget::Budget`]).
    budgets: Mutex<HashMap<(String, String), std::sync::Weak<budget::Budget>>>,
    /// Open requests and streams per principal.
    streams: PrincipalCounts,
    /// Connections per principal.
    connections: PrincipalCounts,
    /// The credentials accepted now (replaced on a config reload).
    credentials: Arc<credentials::Credentials>,
    /// Refusal events of unauthenticated requests, per source address.
    unauthenticated: limit::RefusalLimiter,
    /// Refused HTTP/2 requests whose body is being read before the refusal ([`settle_refused`]):
    /// at most [`SETTLING`] at once; past it a refusal goes out at once, as before.
    settling: Arc<Semaphore>,
    /// The `url` upstreams' clients, by upstream name.
    remotes: HashMap<String, Arc<Remote>>,
    /// Each upstream's `Mcp-Param-*` bindings, learnt from the `tools/list` answers clients
    /// get, to check clients' headers against (SEP-2243).
    params: HashMap<String, Arc<ParamHeaders>>,
    /// POST requests being served (their response streams included), for the drain at
    /// shutdown.
    in_flight: Arc<AtomicUsize>,
    stopping: CancellationToken,
    /// Sessions' tasks: each ends when its server has exited and its events are written;
    /// with whether it runs a server of its own (a sessionless request on a shared child
    /// does not).
    session_tasks: Mutex<Vec<(CancellationToken, bool)>>,
    /// Warm children shared by sessionless 2026-07-28 requests.
    pool: super::pool::Pool,
    metrics: metrics::Metrics,
}

/// What is known of the connection a request came on.
#[derive(Debug)]
struct Connection {
    peer: SocketAddr,
    tls_version: Option<&'static str>,
    /// SHA-256 of the client certificate the TLS handshake verified, if any.
    client_cert: Option<[u8; 32]>,
    /// The principals that have made requests on this connection, each holding one of its
    /// `gateway.max_connections_per_principal` until the connection closes.
    principals: Mutex<Vec<PrincipalSlot>>,
    /// Cancelled to drop the connection at once, with what hyper holds for it: a response
    /// (SSE or JSON) whose client stopped reading ([`budget::Budget::cut_stuck`]).
    cut: tokio_util::sync::CancellationToken,
}

impl Connection {
    fn new(
        peer: SocketAddr,
        tls_version: Option<&'static str>,
        client_cert: Option<[u8; 32]>,
    ) -> Connection {
        Connection {
            peer,
            tls_version,
            client_cert,
            principals: Mutex::new(Vec::new()),
            cut: tokio_util::sync::CancellationToken::new(),
        }
    }

    /// Counts this connection for `user` (once); `false` when `user` already has `max`
    /// connections.
    fn admit(&self, counts: &PrincipalCounts, user: &str, max: usize) -> bool {
        let mut held = self.principals.lock().unwrap_or_else(|p| p.into_inner());
        if held.iter().any(|slot| slot.user == user) {
            return true;
        }
        match PrincipalSlot::take(counts, user, max) {
            Some(slot) => {
                held.push(slot);
                true
            }
            None => false,
        }
    }
}

/// Runs the gateway until SIGTERM or SIGINT; returns the exit code (0 after a clean drain).
///
/// With `retention` (`retention.apply_daily = true`), retention runs once a day in the
/// background ([`retention::daily`]).
pub async fn run(
    config: Arc<Config>,
    audit: AuditSink,
    retention: Option<crate::store::retention::DailyRetention>,
) -> Result<i32, GatewayError> {
    let g = &config.gateway;
    if g.api_keys.is_empty() && g.jwt.is_none() && g.client_certs.is_empty() && !g.allow_anonymous {
        return Err(GatewayError::Unsafe {
            what: format!(
                "the gateway has no credentials configured in {}",
                config.source.display()
            ),
            hint: "add a [[gateway.api_key]] table (user_id and the key's sha256), a [gateway.jwt] table or [[gateway.client_cert]] tables, or set gateway.allow_anonymous = true to serve without authentication".into(),
        });
    }
    if let Some(u) = config
        .upstreams
        .iter()
        .find(|u| u.command.is_empty() && u.remote.is_none())
    {
        return Err(GatewayError::Unsafe {
            what: format!("upstream {:?} has neither a command nor a url", u.name),
            hint: "give each [[upstream]] a command = [\"program\", \"args\"...] or the url of a remote MCP server".into(),
        });
    }
    // Remote upstreams' credentials and certificates are read now: a missing one stops the
    // start, not a client's first request.
    let mut remotes = HashMap::new();
    for u in &config.upstreams {
        if let Some(r) = &u.remote {
            remotes.insert(u.name.clone(), Remote::new(&u.name, r, &config.limits)?);
        }
    }
    let tls = match &g.tls {
        Some(files) => Some(tls_acceptor(&config, files)?),
        None => None,
    };
    let listener = TcpListener::bind(g.listen)
        .await
        .map_err(|source| GatewayError::Bind {
            addr: g.listen,
            config: config.source.clone(),
            source,
        })?;
    let local = listener.local_addr().unwrap_or(g.listen);
    if !g.listen.ip().is_loopback() && g.allowed_hosts.is_empty() {
        tracing::warn!(listen = %local, "listening beyond loopback without gateway.allowed_hosts: any Host header is accepted");
    }
    let policy = PolicyCell::new(config.policy.clone());
    crate::telemetry::mask_with(policy.log_mask());
    let gateway = Arc::new(Gateway {
        policy,
        config: config.clone(),
        audit,
        ids: EventIds::default(),
        sessions: Mutex::new(HashMap::new()),
        opening: Mutex::new(HashMap::new()),
        rounds: Mutex::new(HashMap::new()),
        task_owners: Default::default(),
        budgets: Mutex::new(HashMap::new()),
        streams: PrincipalCounts::default(),
        connections: PrincipalCounts::default(),
        credentials: Arc::new(credentials::Credentials::new(&config.gateway)),
        unauthenticated: limit::RefusalLimiter::default(),
        settling: Arc::new(Semaphore::new(SETTLING)),
        params: config
            .upstreams
            .iter()
            .map(|u| (u.name.clone(), Arc::default()))
            .collect(),
        remotes,
        in_flight: Arc::new(AtomicUsize::new(0)),
        stopping: CancellationToken::new(),
        session_tasks: Mutex::new(Vec::new()),
        pool: super::pool::Pool::new(config.clone()),
        metrics: metrics::Metrics::new(),
    });
    // Policy reloads, once for all sessions; recorded as the gateway's own session.
    let control = Arc::new(Pipeline::new(
        SessionInfo {
            session_id: format!("gateway-{}", ulid::Ulid::generate()),
            user_id: crate::commands::os_user(),
            upstream: "gateway".into(),
            auth_method: "process",
            http: None,
        },
        gateway.audit.clone(),
        &config.limits,
        gateway.policy.clone(),
        None,
    ));
    let credentials = gateway.credentials.clone();
    tokio::spawn(super::reload::reload_on_hangup(
        config.source.clone(),
        control,
        gateway.stopping.clone(),
        Some(super::reload::AlsoReloaded {
            table: "gateway",
            keys: &credentials::RELOADED_KEYS,
            apply: Box::new(move |c| credentials.replace(&c.gateway)),
        }),
    ));
    tokio::spawn(reap_idle(gateway.clone()));
    if let Some(handle) = retention {
        tokio::spawn(retention::daily(
            handle,
            config.clone(),
            gateway.audit.clone(),
            gateway.stopping.clone(),
        ));
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(
        listen = %local,
        upstreams = %config.upstreams.iter().map(|u| format!("{scheme}://{local}/mcp/{}", u.name)).collect::<Vec<_>>().join(" "),
        "gateway listening"
    );
    // Installed before saying ready: a SIGTERM right after the line below drains.
    let signal = super::termination_signal();
    tokio::pin!(signal);
    // A line on stdout for scripts and tests: where to connect.
    println!("listening on {scheme}://{local}");

    let connections = Arc::new(Semaphore::new(g.max_connections));
    loop {
        let permit = tokio::select! {
            p = connections.clone().acquire_owned() => p.expect("never closed"),
            name = &mut signal => {
                tracing::info!(signal = name, "signal received; draining");
                break;
            }
        };
        let (tcp, peer) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            name = &mut signal => {
                tracing::info!(signal = name, "signal received; draining");
                break;
            }
        };
        let _ = tcp.set_nodelay(true);
        let gateway = gateway.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let header_timeout = gateway.config.gateway.header_read_timeout;
            match tls {
                Some(acceptor) => {
                    let stream =
                        match tokio::time::timeout(header_timeout, acceptor.accept(tcp)).await {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                tracing::info!(peer = %peer, error = %e, "TLS handshake failed");
                                if let Some(reason) = refused_certificate(&e) {
                                    gateway.record_tls_refusal(peer, reason).await;
                                }
                                return;
                            }
                            Err(_) => {
                                tracing::info!(peer = %peer, "TLS handshake timed out");
                                return;
                            }
                        };
                    let version = match stream.get_ref().1.protocol_version() {
                        Some(tokio_rustls::rustls::ProtocolVersion::TLSv1_3) => Some("1.3"),
                        Some(tokio_rustls::rustls::ProtocolVersion::TLSv1_2) => Some("1.2"),
                        _ => None,
                    };
                    let client_cert = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(|c| {
                            <[u8; 32]>::from(<sha2::Sha256 as sha2::Digest>::digest(c.as_ref()))
                        });
                    serve(
                        gateway,
                        TokioIo::new(stream),
                        Connection::new(peer, version, client_cert),
                    )
                    .await;
                }
                None => {
                    serve(
                        gateway,
                        TokioIo::new(tcp),
                        Connection::new(peer, None, None),
                    )
                    .await;
                }
            }
        });
    }
    drop(listener);
    drain(&gateway).await;
    Ok(0)
}

/// Requests in flight on one connection (their response bodies included), and when the last
/// one ended: a connection without any for `header_read_timeout` is idle.
#[derive(Debug)]
struct Activity {
    open: AtomicUsize,
    since: Mutex<Instant>,
}

impl Activity {
    fn new() -> Arc<Activity> {
        Arc::new(Activity {
            open: AtomicUsize::new(0),
            since: Mutex::new(Instant::now()),
        })
    }

    /// A request starts; the guard ends it (held by its response body).
    fn begin(self: &Arc<Self>) -> OnDrop {
        self.open.fetch_add(1, Ordering::AcqRel);
        let me = self.clone();
        OnDrop::new(move || {
            *me.since.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
            me.open.fetch_sub(1, Ordering::AcqRel);
        })
    }

    /// Whether no request has been in flight for `limit`.
    fn idle_for(&self, limit: Duration) -> bool {
        self.open.load(Ordering::Acquire) == 0
            && self
                .since
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .elapsed()
                >= limit
    }
}

/// Serves one connection (HTTP/1.1 with keep-alive, or HTTP/2) until the client closes it or
/// it is idle: no request in flight for `gateway.header_read_timeout_ms` (hyper's own header
/// timeout starts only once HTTP/1 is chosen, so a connection that sent nothing, or the
/// HTTP/2 preface alone, or an HTTP/2 connection between requests, would be held for ever,
/// each one of `max_connections`, before any authentication).
async fn serve<I>(gateway: Arc<Gateway>, io: I, conn: Connection)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let header_timeout = gateway.config.gateway.header_read_timeout;
    let peer = conn.peer;
    let cut = conn.cut.clone();
    let recorder = gateway.clone();
    let conn = Arc::new(conn);
    let activity = Activity::new();
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |req| {
            let gateway = gateway.clone();
            let conn = conn.clone();
            let guard = activity.begin();
            async move {
                let started = Instant::now();
                let method = req.method().to_string();
                let resp = handle(gateway.clone(), conn, req).await;
                gateway
                    .metrics
                    .answered(&method, resp.status().as_u16(), started.elapsed());
                Ok::<_, Infallible>(resp.map(|b| body::guarded(b, guard)))
            }
        })
    };
    // HTTP/1.1, and HTTP/2 (by ALPN over TLS, by its preface in plain text): each request
    // of a connection is one stream, served alike.
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_STREAMS)
        .keep_alive_interval(Some(H2_PING))
        .keep_alive_timeout(H2_PING);
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    let mut tick = tokio::time::interval(
        (header_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(1)),
    );
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut closing: Option<Instant> = None;
    let result = loop {
        tokio::select! {
            r = connection.as_mut() => break r,
            () = cut.cancelled() => {
                tracing::debug!(peer = %peer, "connection cut: its client does not read");
                return;
            }
            _ = tick.tick() => match closing {
                // Told to close and still open (a peer that does not let HTTP/2 end
                // gracefully): dropped.
                Some(at) if at.elapsed() >= header_timeout => {
                    tracing::debug!(peer = %peer, "idle connection dropped");
                    return;
                }
                Some(_) => {}
                None if activity.idle_for(header_timeout) => {
                    connection.as_mut().graceful_shutdown();
                    closing = Some(Instant::now());
                }
                None => {}
            },
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
        // A request hyper could not parse (a control character in a header, an obs-fold, a
        // bad request line) was answered 400 before it reached `handle`: recorded as any
        // refused request, within the unauthenticated quota (helper-103 F3).
        if let Some(h) = e.downcast_ref::<hyper::Error>()
            && (h.is_parse() || h.is_parse_too_large())
        {
            let http = HttpContext {
                client_address: Some(peer.ip().to_string()),
                ..HttpContext::default()
            };
            // As hyper answers them (its `Server::on_error`): a URI too long 414, a head too
            // large 431, any other parse error 400.
            let status = if h.to_string().starts_with("URI too long") {
                StatusCode::URI_TOO_LONG
            } else if h.is_parse_too_large() {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            } else {
                StatusCode::BAD_REQUEST
            };
            let reason = format!(
                "the request could not be read as HTTP ({h}): answered {} before any of it was read; send valid HTTP/1.1 (no control characters or folded lines in headers, a head within limits)",
                status.as_u16()
            );
            recorder
                .record_refusal(&Refusal::anonymous(status, reason, http))
                .await;
        }
    }
}

/// After the accept loop: requests in flight finish (up to [`DRAIN_AT_SHUTDOWN`]), then
/// every session ends and its events are written.
async fn drain(gateway: &Arc<Gateway>) {
    gateway.stopping.cancel();
    let until = Instant::now() + DRAIN_AT_SHUTDOWN;
    while gateway.in_flight.load(Ordering::Acquire) > 0 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let left = gateway.in_flight.load(Ordering::Acquire);
    if left > 0 {
        tracing::warn!(
            requests = left,
            "requests still in flight at shutdown; their calls end as shutdown"
        );
    }
    let sessions: Vec<Arc<Session>> = gateway.sessions().drain().map(|(_, s)| s).collect();
    for s in &sessions {
        s.end("the gateway shut down");
    }
    let tasks: Vec<CancellationToken> = gateway
        .session_tasks
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|(t, _)| t.clone())
        .collect();
    let limit = gateway.config.limits.shutdown_grace * 3 + Duration::from_secs(5);
    for t in tasks {
        if tokio::time::timeout(limit, t.cancelled()).await.is_err() {
            tracing::warn!("a session did not end in time at shutdown");
        }
    }
    // The shared children last: no request is on them any more.
    gateway.pool.shutdown(limit).await;
    gateway.close_refusal_windows(true).await;
    tracing::info!(sessions = sessions.len(), "gateway stopped");
}

/// Ends sessions idle for `gateway.session_idle_timeout_ms`, and shared children idle for
/// `gateway.pool_idle_timeout_ms`; forgets streams kept for a resume past their time.
async fn reap_idle(gateway: Arc<Gateway>) {
    let idle = gateway.config.gateway.session_idle_timeout;
    let shortest = idle.min(gateway.config.gateway.pool_idle_timeout);
    // At most 5 s: a refusal window's summary is written within 5 s of the window's end.
    let tick = (shortest / 4).clamp(Duration::from_millis(250), Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = gateway.stopping.cancelled() => return,
        }
        gateway.close_refusal_windows(false).await;
        gateway.pool.reap(Instant::now());
        let open: Vec<Arc<Session>> = gateway.sessions().values().cloned().collect();
        for s in open {
            s.expire();
        }
        let Some(before) = Instant::now().checked_sub(idle) else {
            continue;
        };
        let idle: Vec<Arc<Session>> = {
            let mut sessions = gateway.sessions();
            let ids: Vec<String> = sessions
                .iter()
                .filter(|(_, s)| s.idle_since(before))
                .map(|(id, _)| id.clone())
                .collect();
            ids.iter().filter_map(|id| sessions.remove(id)).collect()
        };
        for s in idle {
            tracing::info!(session = %s.id, "session idle; ending it");
            s.end("the session was idle past gateway.session_idle_timeout_ms");
        }
    }
}

/// Why a failed TLS handshake refused the client's certificate, if that is why it failed:
/// a certificate the `client_ca` did not verify is an invalid access attempt, to be in the
/// trail (PCI DSS 10.2.1.4); other failures (a scanner, plain HTTP on the TLS port, a client
/// that refused the gateway's certificate) are only logged.
fn refused_certificate(e: &std::io::Error) -> Option<String> {
    let err = e.get_ref()?.downcast_ref::<tokio_rustls::rustls::Error>()?;
    matches!(err, tokio_rustls::rustls::Error::InvalidCertificate(_)).then(|| {
        format!("the TLS handshake refused the client certificate ({err}): it is not issued by gateway.tls.client_ca, or not valid now; no request was read")
    })
}

fn tls_acceptor(
    config: &Config,
    files: &crate::config::TlsFiles,
) -> Result<tokio_rustls::TlsAcceptor, GatewayError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use tokio_rustls::rustls;
    let bad = |what, path: &std::path::Path, reason: String| GatewayError::Tls {
        what,
        path: path.to_path_buf(),
        config: config.source.clone(),
        reason,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| bad("certificate", &files.cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad("certificate", &files.cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(bad(
            "certificate",
            &files.cert,
            "no CERTIFICATE block in the file".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| bad("key", &files.key, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| bad("certificate", &files.cert, e.to_string()))?;
    let server = match &files.client_ca {
        None => server.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca)
                .map_err(|e| bad("client CA", ca, e.to_string()))?
            {
                let c = c.map_err(|e| bad("client CA", ca, e.to_string()))?;
                roots
                    .add(c)
                    .map_err(|e| bad("client CA", ca, e.to_string()))?;
            }
            // Optional: a client without a certificate may still use another credential.
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                Arc::new(rustls::crypto::ring::default_provider()),
            )
            .allow_unauthenticated()
            .build()
            .map_err(|e| bad("client CA", ca, e.to_string()))?;
            server.with_client_cert_verifier(verifier)
        }
    };
    let mut server = server.with_single_cert(chain, key).map_err(|e| {
        bad(
            "key",
            &files.key,
            format!("does not match the certificate or cannot be used: {e}"),
        )
    })?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(server)))
}

impl Gateway {
    /// The MRTR rounds of `user`'s sessionless requests on `upstream`, and what they learnt
    /// (tags for sequence rules, tools' annotations) (`user`: the principal's key,
    /// `method:user_id`).
    fn rounds_of(&self, user: &str, upstream: &str) -> crate::proxy::pipeline::SharedRounds {
        let idle = self.config.gateway.session_idle_timeout;
        let mut all = self.rounds.lock().unwrap_or_else(|p| p.into_inner());
        // Principals come and go (JWT subjects): past 64 of them, an entry no request holds,
        // with no open round and that learnt nothing within the idle timeout, is dropped.
        if all.len() >= 64 {
            all.retain(|_, r| {
                Arc::strong_count(r) > 1
                    || !r
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .forgettable(idle)
            });
        }
        let shared = all
            .entry((user.to_string(), upstream.to_string()))
            .or_default()
            .clone();
        drop(all);
        shared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take_for_request(idle);
        shared
    }

    /// The byte budget shared by `user`'s sessionless requests on `upstream`: each is a
    /// session core of its own, and a budget each let 64 of them hold 496 MiB.
    fn budget_of(&self, user: &str, upstream: &str) -> Arc<budget::Budget> {
        let mut all = self.budgets.lock().unwrap_or_else(|p| p.into_inner());
        let key = (user.to_string(), upstream.to_string());
        if let Some(b) = all.get(&key).and_then(std::sync::Weak::upgrade) {
            return b;
        }
        if all.len() >= 64 {
            all.retain(|_, b| b.strong_count() > 0);
        }
        let b = budget::Budget::new(format!("sessionless requests of {user} on {upstream}"));
        all.insert(key, Arc::downgrade(&b));
        b
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Session>>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Server processes running: sessions' (a sessionless request's own included) and the
    /// shared children.
    fn live_sessions(&self) -> usize {
        let own = self
            .session_tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(t, server)| *server && !t.is_cancelled())
            .count();
        own + self.pool.children()
    }

    fn upstream(&self, name: &str) -> Option<&UpstreamConfig> {
        self.config.upstreams.iter().find(|u| u.name == name)
    }
}

/// Counts a POST as in flight until dropped (with its response stream, if any).
struct InFlight(
    Arc<AtomicUsize>,
    #[allow(dead_code, reason = "held for its Drop")] PrincipalSlot,
);

impl InFlight {
    fn new(counter: &Arc<AtomicUsize>, slot: PrincipalSlot) -> Self {
        counter.fetch_add(1, Ordering::AcqRel);
        InFlight(counter.clone(), slot)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What each principal holds of a capped kind: open requests and streams
/// (`gateway.max_streams_per_principal`), or connections
/// (`gateway.max_connections_per_principal`).
type PrincipalCounts = Arc<Mutex<HashMap<String, usize>>>;

/// One of a principal's open requests or streams (given back when the response, its stream
/// included, is over), or one of its connections (given back when the connection closes).
#[derive(Debug)]
struct PrincipalSlot {
    counts: PrincipalCounts,
    user: String,
}

impl PrincipalSlot {
    /// A slot for `user`, or `None` when it already holds `max`.
    fn take(counts: &PrincipalCounts, user: &str, max: usize) -> Option<PrincipalSlot> {
        let mut map = counts.lock().unwrap_or_else(|p| p.into_inner());
        let open = map.entry(user.to_string()).or_insert(0);
        if *open >= max {
            return None;
        }
        *open += 1;
        Some(PrincipalSlot {
            counts: counts.clone(),
            user: user.to_string(),
        })
    }
}

impl Drop for PrincipalSlot {
    fn drop(&mut self) {
        let mut map = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(open) = map.get_mut(&self.user) {
            *open -= 1;
            if *open == 0 {
                map.remove(&self.user);
            }
        }
    }
}

/// Longest client-supplied name (an upstream in the path, a JSON-RPC method) a refusal event
/// records whole in its indexed fields; a longer one is cut.
const CLIENT_NAME_BYTES: usize = 128;
/// Longest client-supplied text (a header, an id) a refusal's reason quotes whole.
pub(crate) const CLIENT_TEXT_BYTES: usize = 256;

/// `text` cut to at most `max` bytes, at a character boundary.
fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Client text quoted for a reason or an answer: whole when short, else its first `max`
/// bytes and its length (what it was stays recognisable; the trail stays small).
pub(crate) fn quoted(text: &str, max: usize) -> String {
    let kept = cut(text, max);
    if kept.len() == text.len() {
        format!("{text:?}")
    } else {
        format!("{kept:?}... ({} bytes)", text.len())
    }
}

/// The client's address: the TCP peer, or, when the peer is a trusted proxy, the nearest
/// address in `X-Forwarded-For` that is not one (the rightmost untrusted hop: what the
/// trusted chain vouches for; anything left of it could be forged by the client).
fn client_address(
    config: &crate::config::GatewayConfig,
    peer: std::net::IpAddr,
    headers: &HeaderMap,
) -> std::net::IpAddr {
    let trusted = |ip: &std::net::IpAddr| config.trusted_proxies.iter().any(|n| n.contains(ip));
    if !trusted(&peer) {
        return peer;
    }
    let hops: Vec<std::net::IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|h| h.trim().parse::<std::net::IpAddr>())
        .collect::<Result<_, _>>()
        .unwrap_or_default();
    hops.into_iter()
        .rev()
        .find(|ip| !trusted(ip))
        .unwrap_or(peer)
}

/// Before a refusal on HTTP/2: what the client is still uploading is read first
/// ([`body::settle`]), so the refusal is not lost to a reset stream. Not on HTTP/1.1, where
/// hyper answers first and closes the connection if need be, and not when the client waits
/// for `100 Continue` (`Expect`): reading would invite the upload the refusal makes useless.
///
/// At most [`SETTLING`] bodies are read so at once (a client opening refused streams by the
/// hundred holds no more); past it the refusal goes out at once.
async fn settle_refused(gateway: &Gateway, req: Request<Incoming>) {
    if req.version() != http::Version::HTTP_2 || req.headers().contains_key(http::header::EXPECT) {
        return;
    }
    if let Ok(_reading) = gateway.settling.try_acquire() {
        body::settle(req.into_body(), body::SETTLE_BYTES, body::SETTLE_TIME).await;
    }
}

/// A request refused before it reaches a session: recorded, its body settled
/// ([`settle_refused`]), answered with the refusal's status and reason as plain text.
async fn refuse_early(
    gateway: &Gateway,
    req: Request<Incoming>,
    refusal: &Refusal<'_>,
) -> Response<ResponseBody> {
    gateway.record_refusal(refusal).await;
    settle_refused(gateway, req).await;
    plain(refusal.status, refusal.reason.clone())
}

/// Refused HTTP/2 request bodies read at once before their refusals ([`settle_refused`]).
const SETTLING: usize = 64;

/// The HTTP status of a refused request (400, 401 or 403; [`auth::Refused::status`]).
fn status_of(r: &auth::Refused) -> StatusCode {
    StatusCode::from_u16(r.status()).unwrap_or(StatusCode::FORBIDDEN)
}

/// The HTTP context of a request, for its events.
fn http_context(
    config: &crate::config::GatewayConfig,
    conn: &Connection,
    headers: &HeaderMap,
) -> HttpContext {
    let text = |v: &HeaderValue| {
        let s = String::from_utf8_lossy(v.as_bytes());
        s.chars().take(256).collect::<String>()
    };
    HttpContext {
        client_address: Some(client_address(config, conn.peer.ip(), headers).to_string()),
        user_agent: headers.get(USER_AGENT).map(text),
        tls_version: conn.tls_version.map(str::to_string),
        trace_id: headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(trace_id),
        status_code: None,
        roles: Vec::new(),
    }
}

/// The trace id of a W3C Trace Context `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`).
fn trace_id(traceparent: &str) -> Option<String> {
    let mut parts = traceparent.trim().split('-');
    let (_version, trace) = (parts.next()?, parts.next()?);
    let valid = trace.len() == 32
        && trace.bytes().all(|b| b.is_ascii_hexdigit())
        && trace.bytes().any(|b| b != b'0');
    valid.then(|| trace.to_ascii_lowercase())
}

fn plain(status: StatusCode, text: impl Into<String>) -> Response<ResponseBody> {
    let mut r = Response::new(full(text.into() + "\n"));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn json(status: StatusCode, bytes: impl Into<Bytes>) -> Response<ResponseBody> {
    let mut r = Response::new(full(bytes));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// A JSON-RPC error as the HTTP body of a refusal (MCP: "the HTTP response body MAY comprise
/// a JSON-RPC error response that has no id").
fn rpc_refusal(
    status: StatusCode,
    id: Option<&RequestId>,
    code: i64,
    text: &str,
) -> Response<ResponseBody> {
    json(status, error_response(id, code, text, None))
}

/// Whether `Accept` admits `kind` (`type/subtype`): the most specific media range that
/// matches it (`type/subtype`, then `type/*`, then `*/*`) decides, and `q=0` on it means "not
/// acceptable" (RFC 9110 §12.5.1 and §12.4.2). So `*/*, text/event-stream;q=0` admits JSON
/// but not a stream. A `q` that does not parse counts as 1.
fn accepts(headers: &HeaderMap, kind: &str) -> bool {
    let (major, _) = kind.split_once('/').unwrap_or((kind, ""));
    let wildcard = format!("{major}/*");
    // (specificity, acceptable) of the most specific matching range so far.
    let mut best: Option<(u8, bool)> = None;
    for v in headers.get_all(ACCEPT) {
        for item in v.to_str().unwrap_or("").split(',') {
            let mut parts = item.split(';');
            let t = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let specificity = if t == kind {
                3
            } else if t == wildcard {
                2
            } else if t == "*/*" {
                1
            } else {
                continue;
            };
            let q = parts
                .filter_map(|p| p.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
                .and_then(|(_, v)| v.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            if best.is_none_or(|(s, _)| specificity > s) {
                best = Some((specificity, q > 0.0));
            }
        }
    }
    best.is_some_and(|(_, ok)| ok)
}

async fn handle(
    gateway: Arc<Gateway>,
    conn: Arc<Connection>,
    mut req: Request<Incoming>,
) -> Response<ResponseBody> {
    // The request target's authority, when it has one, is the host the request is for: an
    // absolute-form target in HTTP/1.1 (RFC 9112 section 3.2.2: the server MUST ignore
    // `Host` then) and `:authority` in HTTP/2 (RFC 9113 section 8.3.1). The Host checks (DNS
    // rebinding) read it, so that neither form slips a foreign host past them.
    if let Some(authority) = req.uri().authority()
        && let Ok(v) = HeaderValue::from_str(authority.as_str())
    {
        req.headers_mut().insert(http::header::HOST, v);
    }
    let Some(origin) = cors::allowed(&gateway.config.gateway, req.headers()) else {
        return route(gateway, conn, req).await;
    };
    let preflight = req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(http::header::ACCESS_CONTROL_REQUEST_METHOD);
    // Preflights are answered for the gateway's endpoints only; any other path gets what
    // `route` gives an `OPTIONS` there (404), so a page learns nothing of paths that are not.
    if preflight
        && auth::check_origin(&gateway.config.gateway, req.headers()).is_ok()
        && is_endpoint(req.uri().path())
    {
        return cors::preflight(origin, req.headers());
    }
    let mut resp = route(gateway, conn, req).await;
    cors::expose(&mut resp, origin);
    resp
}

/// Whether `path` is an MCP endpoint (`/mcp/<name>`, one trailing slash allowed) or its
/// resource metadata (`/.well-known/oauth-protected-resource/mcp/<name>`, RFC 9728) for a
/// name an upstream could have, configured or not: whether a name exists is told only to a
/// client with a credential.
fn is_endpoint(path: &str) -> bool {
    path.strip_prefix("/mcp/")
        .map(|n| n.strip_suffix('/').unwrap_or(n))
        .or_else(|| path.strip_prefix("/.well-known/oauth-protected-resource/mcp/"))
        .is_some_and(crate::config::path_safe)
}

/// What HTTP/1.1 framing refuses before anything else: a request without `Host` (RFC 9112
/// §3.2: 400), and a transfer coding other than `chunked` (§6.1: 501; hyper takes
/// `gzip, chunked` as chunked and would hand on the body still coded, so what the gateway
/// checked and recorded would not be what the client sent). Not recorded: no MCP message
/// was read.
fn framing_fault(req: &Request<Incoming>) -> Option<(StatusCode, String)> {
    if req.version() == http::Version::HTTP_11 && !req.headers().contains_key(http::header::HOST) {
        return Some((
            StatusCode::BAD_REQUEST,
            "an HTTP/1.1 request needs a Host header (RFC 9112 section 3.2)".into(),
        ));
    }
    // `chunked` once, alone: `chunked, chunked` (or two such headers) would be de-chunked
    // once and handed on still framed.
    let mut chunked = 0;
    for te in req.headers().get_all(http::header::TRANSFER_ENCODING) {
        let codings = String::from_utf8_lossy(te.as_bytes());
        chunked += codings.split(',').count();
        if chunked > 1
            || codings
                .split(',')
                .any(|c| !c.trim().eq_ignore_ascii_case("chunked"))
        {
            return Some((
                StatusCode::NOT_IMPLEMENTED,
                format!(
                    "Transfer-Encoding {:?} is not supported: send the body plain or chunked",
                    cut(&codings, CLIENT_NAME_BYTES)
                ),
            ));
        }
    }
    None
}

/// Answers a request by its path: health, metrics, the resource metadata, an MCP endpoint.
async fn route(
    gateway: Arc<Gateway>,
    conn: Arc<Connection>,
    req: Request<Incoming>,
) -> Response<ResponseBody> {
    let path = req.uri().path().to_string();
    if let Some(why) = framing_fault(&req) {
        return plain(why.0, why.1);
    }
    // Health and metrics get the `Host` and `Origin` checks of the MCP endpoints: a page
    // behind DNS rebinding could otherwise read the metrics (upstream names, counts of calls,
    // refusals and blocks) from a gateway on loopback. Not recorded: no MCP traffic.
    if (path == "/healthz" || path == "/metrics")
        && let Err(r) = auth::check_origin(&gateway.config.gateway, req.headers())
    {
        return plain(status_of(&r), r.reason());
    }
    // Health, metrics and the resource metadata are documents to read: any other method
    // (an `OPTIONS` probe, a `POST`, a `DELETE`) is told so (RFC 9110 section 15.5.6: 405
    // with `Allow`) rather than given the document as if it had been a GET.
    let document = path == "/healthz"
        || path == "/metrics"
        || path.starts_with("/.well-known/oauth-protected-resource/mcp/");
    if document && req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = plain(
            StatusCode::METHOD_NOT_ALLOWED,
            format!(
                "{} is read with GET (or HEAD), not {}",
                quoted(&path, CLIENT_NAME_BYTES),
                req.method()
            ),
        );
        r.headers_mut()
            .insert(http::header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    if path == "/healthz" {
        return plain(StatusCode::OK, "ok");
    }
    if path == "/metrics" {
        // Its series name every upstream and count calls, refusals and blocks: read with the
        // credential of the MCP endpoints unless the operator made it public.
        if !gateway.config.gateway.metrics_public
            && let Err(r) = auth::authenticate_connection(
                &gateway.credentials.current(),
                conn.client_cert.as_ref(),
                req.headers(),
            )
        {
            let mut resp = plain(
                status_of(&r),
                format!(
                    "{} (/metrics is read with the credential of the MCP endpoints; gateway.metrics_public = true serves it to anyone)",
                    r.reason()
                ),
            );
            if r.status() == 401 {
                resp.headers_mut().insert(
                    http::header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer"),
                );
            }
            return resp;
        }
        let mut r = plain(
            StatusCode::OK,
            gateway
                .metrics
                .render(&gateway.audit, gateway.live_sessions(), &gateway.pool),
        );
        r.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        return r;
    }
    if let Some(name) = path.strip_prefix("/.well-known/oauth-protected-resource/mcp/") {
        // Public (RFC 9728 section 3), so served for every name an upstream could have, not
        // only the configured ones: a 404 for the others would list the names to anyone
        // (found by a hostile pass). `/mcp/<name>` answers 401 alike for every name.
        return if crate::config::path_safe(name) {
            json(
                StatusCode::OK,
                auth::resource_metadata(&gateway.config.gateway, req.headers(), name).to_string(),
            )
        } else {
            plain(
                StatusCode::NOT_FOUND,
                format!(
                    "{} cannot be an upstream's name (letters, digits, `.`, `_` and `-`; not `.` or `..`)",
                    quoted(name, CLIENT_NAME_BYTES)
                ),
            )
        };
    }
    let Some(name) = path.strip_prefix("/mcp/") else {
        return plain(
            StatusCode::NOT_FOUND,
            "not found: MCP endpoints are /mcp/<upstream>",
        );
    };
    // `/mcp/<upstream>/` is the same endpoint: clients and their URL libraries add the slash
    // (one only; an upstream's name has none).
    let name = name.strip_suffix('/').unwrap_or(name);
    let ctx = http_context(&gateway.config.gateway, &conn, req.headers());
    let headers = req.headers().clone();
    let refuse =
        |status: StatusCode, reason: String| Refusal::anonymous(status, reason, ctx.clone());
    // Host, Origin and the credential come before the upstream's name is looked up: the
    // MCP endpoints answer an unauthenticated client 401 whatever the name (the RFC 9728
    // metadata documents above are public, and served for any name alike).
    let named = cut(name, CLIENT_NAME_BYTES);
    if let Err(r) = auth::check_origin(&gateway.config.gateway, &headers) {
        let refusal = Refusal {
            upstream: named,
            ..refuse(status_of(&r), r.reason())
        };
        return refuse_early(&gateway, req, &refusal).await;
    }
    let accepted = gateway.credentials.current();
    let principal =
        match auth::authenticate_connection(&accepted, conn.client_cert.as_ref(), &headers) {
            Ok(mut p) => {
                if p.method == "anonymous" {
                    p.scope.clone_from(&ctx.client_address);
                }
                p
            }
            Err(r) => {
                let refusal = Refusal {
                    upstream: named,
                    ..refuse(status_of(&r), r.reason())
                };
                let mut resp = refuse_early(&gateway, req, &refusal).await;
                if r.status() == 401 {
                    let challenge = auth::challenge(&accepted, &headers, named, &r);
                    if let Ok(v) = HeaderValue::from_str(&challenge) {
                        resp.headers_mut().insert(http::header::WWW_AUTHENTICATE, v);
                    }
                }
                return resp;
            }
        };
    let Some(upstream) = gateway.upstream(name).cloned() else {
        let refusal = Refusal {
            upstream: named,
            user: Some(&principal.user_id),
            auth_method: Some(principal.method),
            ..refuse(
                StatusCode::NOT_FOUND,
                format!(
                    "no upstream named {} in the gateway's configuration",
                    quoted(name, CLIENT_NAME_BYTES)
                ),
            )
        };
        return refuse_early(&gateway, req, &refusal).await;
    };
    let mut ctx = ctx;
    ctx.roles = principal.roles.clone();
    let request = request::McpRequest {
        gateway: &gateway,
        upstream: &upstream,
        principal: &principal,
        http: ctx,
        headers: &headers,
        connection: conn.cut.clone(),
        body: std::sync::OnceLock::new(),
    };
    let max = gateway.config.gateway.max_connections_per_principal;
    if !conn.admit(&gateway.connections, &principal.key(), max) {
        let reason = format!(
            "{} has {max} connections open to this gateway (gateway.max_connections_per_principal); reuse connections or close some",
            principal.user_id
        );
        let mut resp = request
            .refuse_plain(StatusCode::TOO_MANY_REQUESTS, reason)
            .await;
        // HTTP/1.1: this connection ends after the answer (hyper drops the header on HTTP/2,
        // where the connection stays but every request on it is refused alike).
        resp.headers_mut()
            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        return resp;
    }
    if let Some(refused) = request.repeated_header().await {
        return refused;
    }
    let slot = match *req.method() {
        Method::POST | Method::GET => {
            let max = gateway.config.gateway.max_streams_per_principal;
            match PrincipalSlot::take(&gateway.streams, &principal.key(), max) {
                Some(slot) => Some(slot),
                None => {
                    let reason = format!(
                        "{} has {max} requests and streams open at this gateway (gateway.max_streams_per_principal); close some or wait for their answers",
                        principal.user_id
                    );
                    return request
                        .refuse_plain(StatusCode::TOO_MANY_REQUESTS, reason)
                        .await;
                }
            }
        }
        _ => None,
    };
    match (req.method().clone(), slot) {
        (Method::POST, Some(slot)) => {
            let counted = InFlight::new(&gateway.in_flight, slot);
            request.post(req.into_body(), counted).await
        }
        (Method::GET, Some(slot)) => request.get(slot).await,
        (Method::DELETE, _) => request.delete().await,
        _ => {
            let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "use POST, GET or DELETE");
            r.headers_mut().insert(
                http::header::ALLOW,
                HeaderValue::from_static("POST, GET, DELETE"),
            );
            r
        }
    }
}

#[cfg(test)]
mod tests {
    use super::request::join;
    use super::*;

    #[test]
    fn trace_ids_come_from_valid_traceparents_only() {
        assert_eq!(
            trace_id("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(
            trace_id("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            None
        );
        assert_eq!(trace_id("00-xyz-00f067aa0ba902b7-01"), None);
    }

    #[test]
    fn forwarded_addresses_are_believed_from_trusted_proxies_only() {
        let config = crate::config::Config::parse(
            std::path::Path::new("/p.toml"),
            "[gateway]\ntrusted_proxies = [\"10.0.0.0/8\", \"192.168.1.1\"]\n",
        )
        .unwrap()
        .gateway;
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("6.6.6.6, 203.0.113.9, 10.1.2.3"),
        );
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        assert_eq!(
            client_address(&config, ip("10.0.0.1"), &h),
            ip("203.0.113.9")
        );
        assert_eq!(
            client_address(&config, ip("192.168.1.1"), &h),
            ip("203.0.113.9")
        );
        assert_eq!(
            client_address(&config, ip("198.51.100.1"), &h),
            ip("198.51.100.1")
        );
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("not-an-ip, 203.0.113.9"),
        );
        assert_eq!(client_address(&config, ip("10.0.0.1"), &h), ip("10.0.0.1"));
        assert!(
            crate::config::Config::parse(
                std::path::Path::new("/p.toml"),
                "[gateway]\ntrusted_proxies = [\"10.0.0.0/33\"]\n"
            )
            .is_err()
        );
    }

    #[test]
    fn accept_headers_admit_by_type_and_wildcard() {
        let mut h = HeaderMap::new();
        h.insert(
            ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream;q=0.9"),
        );
        assert!(accepts(&h, "text/event-stream"));
        assert!(accepts(&h, "application/json"));
        h.insert(ACCEPT, HeaderValue::from_static("text/*"));
        assert!(accepts(&h, "text/event-stream"));
        assert!(!accepts(&h, "application/json"));
        // q=0 is "not acceptable" (RFC 9110 §12.4.2), and the most specific range decides.
        h.insert(
            ACCEPT,
            HeaderValue::from_static("*/*, text/event-stream;q=0"),
        );
        assert!(!accepts(&h, "text/event-stream"));
        assert!(accepts(&h, "application/json"));
        h.insert(
            ACCEPT,
            HeaderValue::from_static("application/json;q=0.0, text/*;q=0.5"),
        );
        assert!(!accepts(&h, "application/json"));
        assert!(accepts(&h, "text/event-stream"));
        h.insert(
            ACCEPT,
            HeaderValue::from_static("text/*;q=0, text/event-stream"),
        );
        assert!(accepts(&h, "text/event-stream"));
    }

    #[test]
    fn line_breaks_become_spaces_between_tokens_and_are_found_inside_strings() {
        use super::request::one_line;
        let (line, inside) = one_line(b"{\"a\":\r\n\"x\\\\\"}\n");
        assert_eq!(line, b"{\"a\":  \"x\\\\\"} \n");
        assert_eq!(inside, None);
        // An escaped quote keeps the string open.
        assert_eq!(one_line(b"{\"a\":\"x\\\"\n\"}").1, Some(9));
        assert_eq!(one_line(b"[\"\r\"]").1, Some(2));
        assert_eq!(one_line(b"[\"\\\n\"]").1, Some(3));
    }

    #[test]
    fn joined_answers_are_one_message_or_an_array() {
        assert_eq!(
            join(vec![Bytes::from_static(b"{\"a\":1}\n")]),
            Bytes::from_static(b"{\"a\":1}")
        );
        assert_eq!(
            join(vec![
                Bytes::from_static(b"{\"a\":1}\n"),
                Bytes::from_static(b"{\"b\":2}")
            ]),
            Bytes::from_static(b"[{\"a\":1},{\"b\":2}]")
        );
    }
}
