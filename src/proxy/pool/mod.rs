//! Warm server processes shared by sessionless requests (MCP 2026-07-28), one pool per
//! `command` upstream and principal.
//!
//! Why sharing is allowed: MCP 2026-07-28 is stateless (its changelog, SEP-2575: no
//! `initialize` handshake, "every request now carries its protocol version and client
//! capabilities in `_meta`"; "Basic: Versioning": there is no negotiation handshake), so any
//! process of a server may serve any request. Why it is not shared wider than one principal:
//! a stdio server still keeps state per process (caches, whatever its tools hold, and, in
//! servers that also speak 2025, a log level or subscriptions), and nothing of one
//! principal's requests may reach another's; per (upstream, principal), what is shared is
//! what one client's own session would share anyway. An upstream whose processes must serve
//! one request each says `share_children = false`. An `initialize` sent without a session is
//! never put on a shared child (it would change that child's lifecycle for the others).
//!
//! The session core does not change: each request still gets its own [`Pipeline`] (its own
//! audit session, classification, policy, correlation) and sees its client's ids only. A
//! [`Lease`] stands where a child's stdin and stdout would (as a remote upstream does), and
//! in between the ids are remapped: every request gets a proxy-made id unique on its child
//! (its `_meta.progressToken` too), and what the child says is given back to the lease that
//! asked with the client's exact id text (and token, and subscription id) restored;
//! `notifications/cancelled` carries the child's id on the way in. Several requests, of one
//! or several HTTP requests, may so be in flight on one child at once.
//!
//! A notification of a subscription (MCP 2026-07-28 "Subscriptions": it carries
//! `_meta["io.modelcontextprotocol/subscriptionId"]`, the id of the `subscriptions/listen`
//! that opened it, which clients MUST correlate by) goes to the lease of that listen
//! request, whatever else is in flight on the child, with the client's id restored in it
//! (the listen's final result, an answer like any other, gets it restored in its `_meta`
//! too); one naming no listen in flight is dropped (its subscription has ended). What the
//! child says that names no request (a log notification) goes to the lease with calls in
//! flight when there is exactly one, else it is dropped. A batch the child writes (JSON-RPC
//! 2.0 §6) is taken element by element, each as if written alone. A request of its own never
//! goes to a client: a sessionless 2026-07-28 client answers none (multi round-trip requests
//! replace them), and its next message is a new request, maybe on another child. The pool
//! answers it ([`unanswerable`]: `ping` with an empty result, anything else with an error).
//! A client's response to a server request is never forwarded to a shared child.
//!
//! Memory: the child's output is read a message at a time, each let on only while the
//! principal's byte budget on the upstream has room ([`Budget::admit`]; the gateway's
//! `http/budget.rs`), its count carried with it until its core has taken it ([`Carried`]).
//! While a principal leaves its answers unread, its child waits in its pipe.
//!
//! Lifetimes: a child starts when a request finds no idle child and the pool may grow
//! (`gateway.pool_max_children`, and every running server counts toward
//! `gateway.max_sessions`); a busy child takes at most `gateway.pool_max_in_flight` requests;
//! an idle child ends after `gateway.pool_idle_timeout_ms` (stdin closed, then the same
//! grace, SIGTERM, grace, SIGKILL as a session's server). A child that exits fails the calls
//! in flight on it through each lease's session core (`server_exit` events, as a child of
//! its own would), and leaves the pool: the next request starts a fresh one.

pub(crate) mod remap;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use self::remap::{Kind, splice, spots, text};
use super::stdio::{self, GroupGuard, StdioError};
use crate::config::{Config, UpstreamConfig};
use crate::jsonrpc::frame::trim_line_end;
use crate::jsonrpc::message::{INTERNAL_ERROR, error_response};
use crate::jsonrpc::{FrameError, LineFramer, RequestId};
use crate::proxy::http::budget::{Budget, Held};
use crate::proxy::pipeline::Pipeline;

/// Buffer of the in-memory pipes between a lease and its session core.
const PIPE: usize = 64 * 1024;
/// Lines queued for one child's stdin before the leases writing them wait.
const QUEUE: usize = 1024;
/// How long a child's output may stay open after it exited (grandchildren may hold it).
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);
/// How often a lease that is ending looks whether its calls are answered.
const POLL: Duration = Duration::from_millis(10);
/// Requests of a child remembered after they were answered, so that a repeated answer is
/// recorded by the session core that made the call.
const RETIRED: usize = 256;
/// Requests of a child remembered after their lease ended unanswered (the client left or
/// cancelled, the call timed out), so that the answer the server may still send, at any time,
/// is recorded: evidence that a call the trail ended as `cancelled` or `timeout` did run. Kept
/// apart from [`RETIRED`], so that a busy pool's answered calls (hundreds a second) do not push
/// them out; a fixed bound all the same, as each holds its session core and its client's id.
const RETIRED_UNANSWERED: usize = 1024;
/// The most bytes of client ids the requests of [`RETIRED_UNANSWERED`] may hold together (an
/// id can be as long as a message): past it the oldest are forgotten.
const RETIRED_UNANSWERED_ID_BYTES: usize = 1 << 20;

/// What a server gets for a request of its own made while it serves sessionless requests:
/// an empty result for `ping` (MCP "Ping": the receiver answers promptly; the proxy is
/// there, and a server that takes an error for a dead peer might exit), else an error with
/// [`SESSIONLESS_CANNOT_ANSWER`].
pub(crate) fn unanswerable(id: Option<&RequestId>, method: Option<&str>) -> Bytes {
    if method == Some("ping") {
        let mut out = crate::jsonrpc::message::rebuilt_message(
            id,
            None,
            &[("result", &serde_json::json!({}))],
        );
        out.push('\n');
        return Bytes::from(out);
    }
    error_response(id, INTERNAL_ERROR, SESSIONLESS_CANNOT_ANSWER, None)
}

/// The error a server gets for a request of its own made while it serves sessionless
/// 2026-07-28 requests: such a client answers no server request (MCP 2026-07-28 "Multi
/// Round-Trip Requests", SEP-2322, replaces them), and its answer would come on a POST of
/// its own, which has no session to reach the server by.
pub(crate) const SESSIONLESS_CANNOT_ANSWER: &str = "mcp-audit-proxy: this server serves sessionless MCP 2026-07-28 requests, whose clients cannot answer a server's request (2026-07-28 replaces them with multi round-trip requests, SEP-2322); not forwarded to the client";

/// Why a sessionless request got no shared server.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PoolError {
    /// Every child the pool may run is serving as many requests as it may.
    #[error(
        "{user} has {children} shared server processes for upstream {upstream:?}, each serving gateway.pool_max_in_flight = {per_child} requests; wait for answers, or raise gateway.pool_max_children or gateway.pool_max_in_flight"
    )]
    Busy {
        user: String,
        upstream: String,
        children: usize,
        per_child: usize,
    },
    /// The gateway runs as many server processes as it may.
    #[error(
        "the gateway runs gateway.max_sessions = {0} server processes (sessions and shared ones)"
    )]
    Full(usize),
    /// The server could not be started.
    #[error(transparent)]
    Spawn(#[from] StdioError),
}

/// The children of each pool, by (upstream, principal).
type Pools = HashMap<(String, String), Vec<Arc<Shared>>>;

/// Every pool of the gateway.
pub(crate) struct Pool {
    config: Arc<Config>,
    children: Mutex<Pools>,
    started: AtomicU64,
}

impl Pool {
    pub(crate) fn new(config: Arc<Config>) -> Pool {
        Pool {
            config,
            children: Mutex::new(HashMap::new()),
            started: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Pools> {
        self.children.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Children running (or ending), all pools.
    pub(crate) fn children(&self) -> usize {
        self.lock()
            .values()
            .flatten()
            .filter(|c| !c.exited.is_cancelled())
            .count()
    }

    /// Children started since the gateway started.
    pub(crate) fn started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }

    /// A place on a child of `user`'s pool for `upstream` (`user`: the principal's key,
    /// `method:user_id`, so a JWT subject and an API key's user of the same name share nothing): an idle child, else a new one if
    /// the pool may grow and `room` says the gateway may run one more server, else the least
    /// busy child below `gateway.pool_max_in_flight`.
    ///
    /// `budget`: the byte budget of `user`'s sessionless requests on `upstream`; a new child
    /// keeps it, and its reader waits on it ([`Budget::admit`]).
    pub(crate) fn lease(
        &self,
        upstream: &UpstreamConfig,
        user: &str,
        room: bool,
        budget: &Arc<Budget>,
    ) -> Result<Lease, PoolError> {
        let g = &self.config.gateway;
        let mut map = self.lock();
        let list = map
            .entry((upstream.name.clone(), user.to_string()))
            .or_default();
        list.retain(|c| !c.exited.is_cancelled() && !c.stop.is_cancelled());
        let load = |c: &Arc<Shared>| c.table().leases.len();
        let idle = list.iter().find(|c| load(c) == 0).cloned();
        let child = match idle {
            Some(c) => c,
            None if list.len() < g.pool_max_children && room => {
                let c = self.start_child(upstream, user, budget)?;
                list.push(c.clone());
                c
            }
            None => match list
                .iter()
                .map(|c| (load(c), c))
                .filter(|(n, _)| *n < g.pool_max_in_flight)
                .min_by_key(|(n, _)| *n)
            {
                Some((_, c)) => c.clone(),
                None if list.len() < g.pool_max_children => {
                    return Err(PoolError::Full(g.max_sessions));
                }
                None => {
                    return Err(PoolError::Busy {
                        user: user.to_string(),
                        upstream: upstream.name.clone(),
                        children: list.len(),
                        per_child: g.pool_max_in_flight,
                    });
                }
            },
        };
        let (out, rx) = mpsc::unbounded_channel();
        let no = {
            let mut t = child.table();
            t.next_lease += 1;
            let no = t.next_lease;
            t.leases.insert(no, out);
            t.last_active = Instant::now();
            no
        };
        Ok(Lease {
            place: Place { shared: child, no },
            rx,
            max: self.config.limits.max_message_bytes,
        })
    }

    fn start_child(
        &self,
        upstream: &UpstreamConfig,
        user: &str,
        budget: &Arc<Budget>,
    ) -> Result<Arc<Shared>, StdioError> {
        let (child, stdin, stdout) =
            stdio::spawn(&self.config, &upstream.command, upstream.cwd.as_deref())?;
        let pid = child.id();
        self.started.fetch_add(1, Ordering::Relaxed);
        tracing::info!(pid, upstream = %upstream.name, user, command = %upstream.command.join(" "), "shared mcp server started");
        let (to_child, rx) = mpsc::channel(QUEUE);
        let shared = Arc::new(Shared::new(pid, to_child, budget.clone()));
        let group = GroupGuard(pid.map(|p| Pid::from_raw(p as i32)));
        tokio::spawn(run_child(
            shared.clone(),
            child,
            group,
            (stdin, stdout, rx),
            self.config.limits.shutdown_grace,
            self.config.limits.max_message_bytes,
        ));
        Ok(shared)
    }

    /// Ends the children that have served no request for `gateway.pool_idle_timeout_ms`.
    pub(crate) fn reap(&self, now: Instant) {
        let Some(before) = now.checked_sub(self.config.gateway.pool_idle_timeout) else {
            return;
        };
        let mut map = self.lock();
        for list in map.values_mut() {
            list.retain(|c| {
                let t = c.table();
                let idle = t.leases.is_empty() && t.last_active < before;
                if idle {
                    tracing::info!(pid = c.pid, "shared mcp server idle; ending it");
                    c.stop.cancel();
                }
                !idle && !c.exited.is_cancelled()
            });
        }
        map.retain(|_, list| !list.is_empty());
    }

    /// At shutdown: every child ends (after the leases have, so nothing is in flight), waited
    /// for up to `limit`.
    pub(crate) async fn shutdown(&self, limit: Duration) {
        let all: Vec<Arc<Shared>> = self.lock().drain().flat_map(|(_, l)| l).collect();
        for c in &all {
            c.stop.cancel();
        }
        for c in all {
            if tokio::time::timeout(limit, c.exited.cancelled())
                .await
                .is_err()
            {
                tracing::warn!(
                    pid = c.pid,
                    "a shared mcp server did not end in time at shutdown"
                );
            }
        }
    }
}

/// A request of a client in flight on a child.
struct Pending {
    lease: u64,
    /// The client's id, to find it by (a cancellation names it).
    client: RequestId,
    /// The client's id as it wrote it, restored byte for byte on the answer.
    id: Box<str>,
    /// The client's `_meta.progressToken`, as it wrote it.
    token: Option<Box<str>>,
    /// The client cancelled it: the server need not answer.
    cancelled: bool,
    /// A `tools/call` or `tasks/result`: what its core records a late answer of, so kept
    /// in [`Table::retired`] once done.
    recorded: bool,
    /// A `subscriptions/listen`: the only request a notification naming a subscription id
    /// may reach (review helper-97 L8: one naming a pending `tools/call`'s id went to its
    /// lease).
    listen: bool,
}

/// A request of a child that no longer waits for an answer.
struct Retired {
    lease: u64,
    /// The client's id as it wrote it.
    id: Box<str>,
    /// The session core that made the call, once its lease has ended (an answer then
    /// reaches no client, and is recorded as such: [`Pipeline::from_server_to_nobody`]).
    core: Option<Arc<Pipeline>>,
}

/// What a child's reader and its leases share.
struct Table {
    next_id: u64,
    next_lease: u64,
    /// The child's id of each request in flight → whose it is.
    pending: HashMap<u64, Pending>,
    /// Each lease's way back to its session core.
    leases: HashMap<u64, mpsc::UnboundedSender<Carried>>,
    /// While a line of the child's is routed ([`Shared::outbound`]): its count against the
    /// budget, carried with each message made of it.
    carrying: Option<Arc<Held>>,
    /// Each running lease's session core, kept past the lease for [`Table::retired`].
    cores: HashMap<u64, Arc<Pipeline>>,
    /// Requests answered, or whose lease ended first, by the child's id (at most
    /// [`RETIRED`] and [`RETIRED_UNANSWERED`], oldest first out): a further answer names one
    /// of these.
    retired: HashMap<u64, Retired>,
    /// Answered requests in [`Table::retired`], oldest first (at most [`RETIRED`]).
    retired_order: std::collections::VecDeque<u64>,
    /// Requests in [`Table::retired`] whose lease ended unanswered, oldest first (at most
    /// [`RETIRED_UNANSWERED`]).
    unanswered_order: std::collections::VecDeque<u64>,
    /// Bytes of the client ids of [`Table::unanswered_order`]'s requests.
    unanswered_id_bytes: usize,
    last_active: Instant,
    /// Once the child has exited: its exit code and how it ended, after "the server".
    gone: Option<(i32, String)>,
}

/// One shared child.
struct Shared {
    pid: Option<u32>,
    to_child: mpsc::Sender<Bytes>,
    /// The byte budget of the principal's sessionless requests on the upstream: the reader
    /// takes no more of the child's output while it is spent ([`Budget::admit`]), and keeping
    /// it here keeps it the one the gateway hands those requests.
    budget: Arc<Budget>,
    table: Mutex<Table>,
    /// Cancelled to end the child: its stdin closes, then grace, SIGTERM, grace, SIGKILL.
    stop: CancellationToken,
    /// Cancelled once the child has exited and its leases are told.
    exited: CancellationToken,
    /// Cancelled once the child process has exited: what is left in its output is read
    /// without waiting on the budget ([`Budget::admit`]), within [`DRAIN_AFTER_EXIT`].
    draining: CancellationToken,
}

impl Shared {
    /// A child's shared state, before any lease or request.
    fn new(pid: Option<u32>, to_child: mpsc::Sender<Bytes>, budget: Arc<Budget>) -> Shared {
        Shared {
            pid,
            to_child,
            budget,
            table: Mutex::new(Table {
                next_id: 0,
                next_lease: 0,
                pending: HashMap::new(),
                leases: HashMap::new(),
                carrying: None,
                cores: HashMap::new(),
                retired: HashMap::new(),
                retired_order: std::collections::VecDeque::new(),
                unanswered_order: std::collections::VecDeque::new(),
                unanswered_id_bytes: 0,
                last_active: Instant::now(),
                gone: None,
            }),
            stop: CancellationToken::new(),
            exited: CancellationToken::new(),
            draining: CancellationToken::new(),
        }
    }
}

/// The child's id in `line` at `range`, if it is one the pool made (a positive integer).
fn pooled(line: &[u8], range: &std::ops::Range<usize>) -> Option<u64> {
    match RequestId::from_json(&text(line, range))? {
        RequestId::Int(n) if n > 0 => u64::try_from(n).ok(),
        // The pool's ids are whole numbers it wrote; a server that echoes one as a string
        // (`"7"`) or a double (`7.0`) answers it for the official SDKs
        // ([`RequestId::sdk_number`]), so it does for the pool too.
        other => {
            let x = other.sdk_number()?;
            // Exactly representable, so the reading names one id.
            (x.fract() == 0.0 && (1.0..=9_007_199_254_740_992.0).contains(&x)).then_some(x as u64)
        }
    }
}

/// The edits that give an answer of the child's request `n` its client's `id` back: its
/// top-level id at `r`, and the subscription id of its result (a `subscriptions/listen`'s
/// final result, MCP 2026-07-28 "Subscriptions") when that names the same request.
fn restored<'a>(
    line: &[u8],
    s: &remap::Spots,
    r: std::ops::Range<usize>,
    n: Option<u64>,
    id: &'a str,
) -> Vec<(std::ops::Range<usize>, &'a str)> {
    let mut edits = vec![(r, id)];
    if let Some(sub) = s.subscription.clone()
        && n.is_some()
        && pooled(line, &sub) == n
    {
        edits.push((sub, id));
    }
    edits
}

impl Shared {
    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A line of lease `lease`'s session core, as the child must see it; `None`: not for the
    /// child (logged).
    fn inbound(&self, lease: u64, line: &[u8]) -> Option<Bytes> {
        let Some(s) = spots(line) else {
            tracing::warn!(
                "a message for a shared mcp server could not be read unambiguously; not forwarded"
            );
            return None;
        };
        let mut t = self.table();
        t.last_active = Instant::now();
        match s.kind {
            Kind::Request => {
                let range = s.id?;
                let id = text(line, &range);
                let client = RequestId::from_json(&id)?;
                t.next_id += 1;
                let n = t.next_id;
                let mine = n.to_string();
                let mut edits = vec![(range, mine.as_str())];
                let token = s.meta_token.map(|r| {
                    let was = text(line, &r);
                    edits.push((r, mine.as_str()));
                    was
                });
                t.pending.insert(
                    n,
                    Pending {
                        lease,
                        client,
                        id,
                        token,
                        cancelled: false,
                        recorded: matches!(
                            s.method.as_deref(),
                            Some("tools/call" | "tasks/result")
                        ),
                        listen: s.method.as_deref() == Some("subscriptions/listen"),
                    },
                );
                Some(splice(line, edits))
            }
            Kind::Notification if s.method.as_deref() == Some("notifications/cancelled") => {
                let range = s.request_id?;
                let client = RequestId::from_json(&text(line, &range))?;
                // By the exact id, else the one the official SDKs read it as (`"7"` for 7:
                // [`crate::jsonrpc::message::twin`]), as a server of one's own would.
                let mine = t
                    .pending
                    .values()
                    .filter(|p| p.lease == lease)
                    .map(|p| &p.client);
                let target = crate::jsonrpc::message::matching(mine, &client);
                let Some((n, p)) = t
                    .pending
                    .iter_mut()
                    .find(|(_, p)| p.lease == lease && Some(&p.client) == target.as_ref())
                else {
                    tracing::debug!(request_id = %client, "cancellation of no request in flight on the shared server; not forwarded");
                    return None;
                };
                p.cancelled = true;
                tracing::info!(pid = self.pid, request_id = %client, child_id = *n, "cancellation forwarded to the shared mcp server");
                let mine = n.to_string();
                Some(splice(line, vec![(range, mine.as_str())]))
            }
            Kind::Notification => Some(splice(line, Vec::new())),
            Kind::Response => {
                tracing::info!(
                    "a client's answer to a shared mcp server's request is not forwarded: the server's requests cannot be answered by sessionless clients"
                );
                None
            }
        }
    }

    /// Routes one line of the child's output to the lease it is for; `held` (its count
    /// against the budget) goes with what is made of it.
    fn outbound(&self, frame: Result<Bytes, FrameError>, held: Option<Held>) {
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(pid = self.pid, error = %e, "message from a shared mcp server dropped");
                // An answer the proxy refuses (too long, not UTF-8) fails its request at
                // once, as on a server of one's own, instead of at `limits.call_timeout_ms`.
                let prefix = e.prefix();
                let n = match prefix.id {
                    Some(RequestId::Int(n)) if prefix.answers && n > 0 => u64::try_from(n).ok(),
                    _ => None,
                };
                let mut t = self.table();
                if let Some(p) = n.and_then(|n| t.pending.remove(&n)) {
                    let answer = error_response(
                        Some(&p.client),
                        INTERNAL_ERROR,
                        &format!("mcp-audit-proxy: the server's answer was refused: {e}"),
                        None,
                    );
                    t.send(p.lease, answer);
                }
                return;
            }
        };
        let line = trim_line_end(&frame);
        let mut t = self.table();
        t.last_active = Instant::now();
        t.carrying = held.map(Arc::new);
        self.route_line(&mut t, line);
        t.carrying = None;
    }

    /// Routes a line of the child's: a batch element by element, else as one message.
    fn route_line(&self, t: &mut Table, line: &[u8]) {
        // A batch (JSON-RPC 2.0 §6, which a server of 2025-03-26 may still write): element by
        // element, each answer to the lease of its own request, as if written one per line.
        // Sent as it is, it would reach one lease with the pool's ids in it, and the other
        // leases' answers would be lost.
        if line.trim_ascii_start().first() == Some(&b'[')
            && let Ok(items) = serde_json::from_slice::<Vec<&serde_json::value::RawValue>>(line)
        {
            for item in items {
                let element = item.get().as_bytes();
                if element.first() == Some(&b'{') {
                    self.route(t, element);
                } else {
                    tracing::warn!(
                        pid = self.pid,
                        "an element of a shared mcp server's batch is not a JSON-RPC object; dropped"
                    );
                }
            }
            return;
        }
        self.route(t, line);
    }

    /// Routes one message of the child's (a line, or an element of its batch).
    fn route(&self, t: &mut Table, line: &[u8]) {
        let Some(s) = spots(line) else {
            if !t.to_sole(line) {
                tracing::warn!(
                    pid = self.pid,
                    "a message from a shared mcp server could not be read unambiguously; dropped"
                );
            }
            return;
        };
        match s.kind {
            Kind::Response => {
                let range = s.id.clone();
                let n = range.as_ref().and_then(|r| pooled(line, r));
                let found = n.and_then(|n| t.pending.remove(&n));
                let retired = n.filter(|n| found.is_none() && t.retired.contains_key(n));
                match (found, range) {
                    (Some(p), Some(r)) => {
                        let out = splice(line, restored(line, &s, r, n, &p.id));
                        t.send(p.lease, out);
                        if let Some(n) = n.filter(|_| p.recorded) {
                            t.retire(n, p.lease, p.id, None, true);
                        }
                    }
                    // An error for a request the server could not read names no id.
                    (None, None) if t.to_sole(line) => {}
                    // Late (its lease ended: the client left, or the call timed out) or
                    // repeated: recorded by the core that made the call, as on a child of
                    // its own.
                    (None, Some(r)) if let Some(n) = retired => {
                        let old = &t.retired[&n];
                        let out = splice(line, restored(line, &s, r, Some(n), &old.id));
                        if t.leases.contains_key(&old.lease) {
                            t.send(old.lease, out);
                        } else if let Some(core) = old.core.clone() {
                            // On the core's time, not this reader's: the other leases' answers
                            // do not wait behind its scans and its record.
                            tokio::spawn(async move {
                                core.from_server_to_nobody(
                                    out,
                                    "the sessionless request that made the call had ended",
                                );
                            });
                        } else {
                            tracing::warn!(
                                pid = self.pid,
                                "late answer of a shared mcp server for a request whose session core is gone; dropped"
                            );
                        }
                    }
                    _ => tracing::warn!(
                        pid = self.pid,
                        id = %s.id.as_ref().map(|r| text(line, r)).unwrap_or_default(),
                        "answer of a shared mcp server for no request in flight; dropped"
                    ),
                }
            }
            Kind::Notification if s.method.as_deref() == Some("notifications/progress") => {
                // Progress names its request by the token the pool gave it; any other is
                // not for these clients (a request already ended, say).
                let found = s.token.and_then(|r| {
                    let p = t.pending.get(&pooled(line, &r)?)?;
                    Some((p.lease, splice(line, vec![(r, p.token.as_deref()?)])))
                });
                match found {
                    Some((lease, out)) => t.send(lease, out),
                    None => tracing::debug!(
                        pid = self.pid,
                        "progress of a shared mcp server for no request in flight; dropped"
                    ),
                }
            }
            Kind::Notification if let Some(r) = s.subscription.clone() => {
                // A notification of a subscription (MCP 2026-07-28 "Subscriptions": its
                // acknowledgement, then each change) names its `subscriptions/listen` by the
                // id the pool gave it: to that request's lease, whatever else is in flight on
                // the child, with the client's id restored. One of a subscription no longer
                // in flight (its listen answered, or its lease ended) is for no client.
                let found = pooled(line, &r)
                    .and_then(|n| t.pending.get(&n))
                    .filter(|p| p.listen)
                    .map(|p| (p.lease, splice(line, vec![(r, &p.id)])));
                match found {
                    Some((lease, out)) => t.send(lease, out),
                    None => tracing::debug!(
                        pid = self.pid,
                        method = ?s.method,
                        "notification of a shared mcp server for a subscription no longer in flight; dropped"
                    ),
                }
            }
            Kind::Notification => {
                if !t.to_sole(line) {
                    tracing::debug!(pid = self.pid, method = ?s.method, "notification of a shared mcp server for no single request; dropped");
                }
            }
            Kind::Request => {
                // Never to a client, even the only one with requests in flight: a sessionless
                // 2026-07-28 client answers no server request (MRTR replaces them, SEP-2322),
                // and an answer would come on a POST of its own, which reaches no pooled
                // child. Forwarded, the server would wait for an answer until its own timeout.
                // `s.method` is read from the line, so a ping is answered as one.
                tracing::warn!(pid = self.pid, method = ?s.method, "request of a shared mcp server answered by the pool: sessionless clients cannot answer server requests");
                let id = s.id.and_then(|r| RequestId::from_json(&text(line, &r)));
                let answer = unanswerable(id.as_ref(), s.method.as_deref());
                let _ = self.to_child.try_send(answer);
            }
        }
    }

    /// The child has exited: every lease learns it (its core fails the calls in flight).
    fn gone(&self, code: i32, described: String) {
        let mut t = self.table();
        t.gone = Some((code, described));
        t.leases.clear();
        t.pending.clear();
        t.cores.clear();
        t.retired.clear();
        t.retired_order.clear();
        t.unanswered_order.clear();
        t.unanswered_id_bytes = 0;
        drop(t);
        self.exited.cancel();
    }
}

impl Table {
    /// Remembers the child's request `n` of `lease` after it stopped waiting: `answered` by
    /// the child, or not (its lease ended first). Each kind has its own bound, oldest out.
    fn retire(
        &mut self,
        n: u64,
        lease: u64,
        id: Box<str>,
        core: Option<Arc<Pipeline>>,
        answered: bool,
    ) {
        if answered {
            if self.retired_order.len() >= RETIRED
                && let Some(oldest) = self.retired_order.pop_front()
            {
                self.retired.remove(&oldest);
            }
            self.retired_order.push_back(n);
        } else {
            if id.len() > RETIRED_UNANSWERED_ID_BYTES {
                tracing::warn!(
                    "a shared mcp server's request whose client stopped waiting has an id too long to keep: its answer, if it still comes, will not be recorded"
                );
                return;
            }
            self.unanswered_id_bytes += id.len();
            self.unanswered_order.push_back(n);
            let mut forgotten = 0usize;
            // `n` itself fits: the oldest others go first, and it is never reached.
            while self.unanswered_order.len() > RETIRED_UNANSWERED
                || self.unanswered_id_bytes > RETIRED_UNANSWERED_ID_BYTES
            {
                let Some(oldest) = self.unanswered_order.pop_front() else {
                    break;
                };
                if let Some(old) = self.retired.remove(&oldest) {
                    self.unanswered_id_bytes -= old.id.len();
                }
                forgotten += 1;
            }
            if forgotten > 0 {
                tracing::warn!(
                    forgotten,
                    "shared mcp server requests whose client stopped waiting are forgotten: their answers, if they still come, will not be recorded (more than {RETIRED_UNANSWERED} such requests, or {RETIRED_UNANSWERED_ID_BYTES} bytes of their ids, on this process)"
                );
            }
        }
        self.retired.insert(n, Retired { lease, id, core });
    }

    fn send(&self, lease: u64, line: Bytes) {
        if let Some(out) = self.leases.get(&lease) {
            let _ = out.send(Carried {
                line,
                _held: self.carrying.clone(),
            });
        }
    }

    /// Sends `line`, unchanged, to the one lease with requests in flight; false if there is
    /// not exactly one.
    fn to_sole(&self, line: &[u8]) -> bool {
        let mut owners = self.pending.values().map(|p| p.lease);
        let Some(first) = owners.next() else {
            return false;
        };
        if owners.any(|o| o != first) {
            return false;
        }
        self.send(first, splice(line, Vec::new()));
        true
    }
}

/// Runs one child until it exits: its stdin fed from the leases, its stdout routed to them.
async fn run_child(
    shared: Arc<Shared>,
    mut child: tokio::process::Child,
    mut group: GroupGuard,
    (stdin, stdout, rx): (
        tokio::process::ChildStdin,
        tokio::process::ChildStdout,
        mpsc::Receiver<Bytes>,
    ),
    grace: Duration,
    max: usize,
) {
    let writer = tokio::spawn(write_child(stdin, rx, shared.stop.clone()));
    let mut reader = tokio::spawn(read_child(stdout, shared.clone(), max));
    let (code, described) = match stdio::supervise(&mut child, &shared.stop, grace, None).await {
        Ok((status, sent)) => {
            if let Some(pgid) = group.0 {
                stdio::end_group(pgid, grace, sent).await;
                group.disarm();
            }
            (stdio::exit_code(status), stdio::describe(status))
        }
        Err(e) => (1, format!("could not be watched ({e})")),
    };
    tracing::info!(pid = shared.pid, status = %described, "shared mcp server exited");
    // What it said before exiting still reaches its leases, at the pipe's pace (no more
    // waiting on the budget: what is left is at most the pipe's contents).
    shared.draining.cancel();
    if tokio::time::timeout(DRAIN_AFTER_EXIT, &mut reader)
        .await
        .is_err()
    {
        reader.abort();
        tracing::warn!(
            pid = shared.pid,
            "shared server output still open after exit; not waiting longer"
        );
    }
    writer.abort();
    shared.gone(code, described);
}

/// Writes the leases' lines to the child; closes its stdin when the child is to end.
async fn write_child(
    mut stdin: impl AsyncWrite + Unpin,
    mut rx: mpsc::Receiver<Bytes>,
    stop: CancellationToken,
) {
    loop {
        let bytes = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            m = rx.recv() => match m {
                Some(b) => b,
                None => break,
            },
        };
        if let Err(e) = stdin.write_all(&bytes).await {
            tracing::warn!(error = %e, "writing to a shared mcp server failed");
            break;
        }
    }
    let _ = stdin.shutdown().await;
}

async fn read_child(mut out: impl AsyncRead + Unpin, shared: Arc<Shared>, max: usize) {
    let mut framer = LineFramer::new(max);
    loop {
        while let Some(frame) = framer.next_frame().transpose() {
            let held = admit(&shared, &frame).await;
            shared.outbound(frame, held);
        }
        match out.read_buf(framer.read_buf()).await {
            Ok(0) => {
                if let Some(frame) = framer.finish().transpose() {
                    let held = admit(&shared, &frame).await;
                    shared.outbound(frame, held);
                }
                return;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "reading a shared mcp server failed");
                return;
            }
        }
    }
}

/// Waits until `frame` may go on to its session core ([`Budget::admit`]); once the child has
/// exited, counts it without waiting. A refused frame carries nothing on.
async fn admit(shared: &Shared, frame: &Result<Bytes, FrameError>) -> Option<Held> {
    let Ok(line) = frame else { return None };
    Some(tokio::select! {
        held = shared.budget.admit(line.len()) => held,
        _ = shared.draining.cancelled() => shared.budget.count(line.len()),
    })
}

/// A lease's place on its child, given back (with its requests still in flight) when
/// dropped, whatever ends the lease.
struct Place {
    shared: Arc<Shared>,
    no: u64,
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut t = self.shared.table();
        t.leases.remove(&self.no);
        let no = self.no;
        let core = t.cores.remove(&no);
        // Its calls still in flight, and those answered, are answered to nobody from now on:
        // their core records whatever the child still says of them.
        let unanswered: Vec<(u64, Box<str>)> = t
            .pending
            .extract_if(|_, p| p.lease == no)
            .filter(|(_, p)| p.recorded)
            .map(|(n, p)| (n, p.id))
            .collect();
        for (n, id) in unanswered {
            t.retire(n, no, id, core.clone(), false);
        }
        for r in t.retired.values_mut().filter(|r| r.lease == no) {
            r.core.clone_from(&core);
        }
        t.last_active = Instant::now();
    }
}

/// A message of the child's on its way to a lease's session core, with its count against
/// the budget ([`Budget::admit`]), given back once the core has taken it.
#[derive(Debug)]
struct Carried {
    line: Bytes,
    _held: Option<Arc<Held>>,
}

impl std::ops::Deref for Carried {
    type Target = Bytes;
    fn deref(&self) -> &Bytes {
        &self.line
    }
}

/// One request's place on a shared child, before its session core runs.
pub(crate) struct Lease {
    place: Place,
    rx: mpsc::UnboundedReceiver<Carried>,
    max: usize,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("pid", &self.place.shared.pid)
            .field("no", &self.place.no)
            .finish_non_exhaustive()
    }
}

impl Lease {
    /// The shared child's process id.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.place.shared.pid
    }

    /// Wires the lease to a session core: returns it with the pipe the core writes the
    /// server's input to and the pipe it reads the server's output from.
    pub(crate) fn start(self) -> (LeaseLink, DuplexStream, DuplexStream) {
        let Lease { place, mut rx, max } = self;
        let (server_in, core_in) = tokio::io::duplex(PIPE);
        let (mut core_out, server_out) = tokio::io::duplex(PIPE);
        tokio::spawn(async move {
            while let Some(carried) = rx.recv().await {
                // Its count goes once the core has read it all (the pipe is smaller than a
                // large message): from there it is the core's, then its response's.
                if core_out.write_all(&carried.line).await.is_err() {
                    break;
                }
            }
            // Dropping the pipe is the server's EOF for the core.
        });
        let input = tokio::spawn(lease_input(
            place.shared.clone(),
            place.no,
            core_in,
            max.saturating_add(2),
        ));
        (LeaseLink { place, input }, server_in, server_out)
    }
}

/// Forwards what the core writes, remapped, until the core closes its side.
async fn lease_input(shared: Arc<Shared>, no: u64, mut input: DuplexStream, max: usize) {
    let mut framer = LineFramer::new(max);
    loop {
        while let Some(frame) = framer.next_frame().transpose() {
            forward(&shared, no, frame).await;
        }
        match input.read_buf(framer.read_buf()).await {
            Ok(0) => {
                if let Some(frame) = framer.finish().transpose() {
                    forward(&shared, no, frame).await;
                }
                return;
            }
            Ok(_) => {}
            Err(_) => return,
        }
    }
}

async fn forward(shared: &Shared, no: u64, frame: Result<Bytes, FrameError>) {
    let Ok(line) = frame else {
        return;
    };
    if let Some(out) = shared.inbound(no, trim_line_end(&line))
        && shared.to_child.send(out).await.is_err()
    {
        tracing::debug!("a shared mcp server's input is closed");
    }
}

/// A lease in use by a session core: where its server would be supervised.
pub(crate) struct LeaseLink {
    place: Place,
    input: JoinHandle<()>,
}

impl LeaseLink {
    /// The session core the lease serves: kept after the lease ends, for the answers its
    /// calls get late (after the client left, or the call timed out) or twice.
    pub(crate) fn serves(&self, core: Arc<Pipeline>) {
        self.place.shared.table().cores.insert(self.place.no, core);
    }

    /// Waits until the child exits, or, once `stop` is cancelled, until what the core queued
    /// is forwarded and its calls are answered (up to `grace`, as a child of its own would
    /// get), then gives the place back. Returns the exit code and what happened, worded after
    /// "the server".
    pub(crate) async fn finish(
        mut self,
        stop: &CancellationToken,
        grace: Duration,
    ) -> (i32, String) {
        let shared = self.place.shared.clone();
        tokio::select! {
            _ = shared.exited.cancelled() => {}
            _ = stop.cancelled() => {
                let deadline = tokio::time::Instant::now() + grace;
                let _ = tokio::time::timeout_at(deadline, &mut self.input).await;
                while self.waits() && tokio::time::Instant::now() < deadline {
                    tokio::select! {
                        _ = tokio::time::sleep(POLL) => {}
                        _ = shared.exited.cancelled() => break,
                    }
                }
            }
        }
        self.input.abort();
        let gone = shared.table().gone.clone();
        // The place is given back here (dropped with `self`).
        match gone {
            Some(ended) => ended,
            None => (
                0,
                format!(
                    "(a shared process, pid {}) was left running for other requests",
                    shared.pid.unwrap_or(0)
                ),
            ),
        }
    }

    /// Whether calls of this lease that were not cancelled still wait for their answers.
    fn waits(&self) -> bool {
        let no = self.place.no;
        self.place
            .shared
            .table()
            .pending
            .values()
            .any(|p| p.lease == no && !p.cancelled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared() -> (Shared, mpsc::Receiver<Bytes>) {
        let (to_child, rx) = mpsc::channel(16);
        let shared = Shared::new(None, to_child, Budget::new("test".into()));
        (shared, rx)
    }

    fn lease(s: &Shared, no: u64) -> mpsc::UnboundedReceiver<Carried> {
        let (tx, rx) = mpsc::unbounded_channel();
        s.table().leases.insert(no, tx);
        rx
    }

    fn call(id: &str) -> String {
        format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"slow","_meta":{{"progressToken":"tok"}}}}}}"#
        )
    }

    #[test]
    fn a_lines_count_against_the_budget_goes_with_what_is_made_of_it_until_taken() {
        // helper-88 #6: the count of a shared server's line (Budget::admit) must reach each
        // lease with the messages made of it (a batch makes several), and be given back only
        // once all of them are dropped (taken by their cores).
        let (s, _) = shared();
        let (mut one, mut two) = (lease(&s, 1), lease(&s, 2));
        s.inbound(1, call("1").as_bytes()).unwrap();
        s.inbound(2, call("1").as_bytes()).unwrap();
        let batch = Bytes::from_static(
            br#"[{"jsonrpc":"2.0","id":1,"result":{}},{"jsonrpc":"2.0","id":2,"result":{}}]"#,
        );
        let held = s.budget.count(batch.len());
        s.outbound(Ok(batch.clone()), Some(held));
        assert_eq!(s.budget.in_transit(), batch.len());
        let (a, b) = (one.try_recv().unwrap(), two.try_recv().unwrap());
        assert!(s.table().carrying.is_none(), "nothing kept once routed");
        drop(a);
        assert_eq!(
            s.budget.in_transit(),
            batch.len(),
            "one element still on its way"
        );
        drop(b);
        assert_eq!(s.budget.in_transit(), 0, "given back once both are taken");
        // A line routed to nobody gives its count back at once.
        let held = s.budget.count(10);
        s.outbound(
            Ok(Bytes::from_static(
                br#"{"jsonrpc":"2.0","id":77,"result":{}}"#,
            )),
            Some(held),
        );
        assert_eq!(s.budget.in_transit(), 0);
    }

    #[test]
    fn colliding_ids_are_remapped_on_the_way_in_and_restored_on_the_way_out() {
        let (s, _) = shared();
        let (mut one, mut two) = (lease(&s, 1), lease(&s, 2));
        let a = s.inbound(1, call("1").as_bytes()).unwrap();
        let b = s.inbound(2, call("1.0").as_bytes()).unwrap();
        assert!(a.starts_with(br#"{"jsonrpc":"2.0","id":1,"#), "{a:?}");
        assert!(b.starts_with(br#"{"jsonrpc":"2.0","id":2,"#), "{b:?}");
        assert!(memchr::memmem::find(&b, br#""progressToken":2"#).is_some());
        // Progress of the second, then both answers, in the other order.
        let ok = |id: u64| {
            Ok(Bytes::from(format!(
                r#"{{"jsonrpc":"2.0","id":{id},"result":{{}}}}"#
            )))
        };
        s.outbound(Ok(Bytes::from_static(
            br#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":2,"progress":1}}"#,
        )),
            None,
        );
        s.outbound(ok(2), None);
        s.outbound(ok(1), None);
        assert_eq!(
            &two.try_recv().unwrap()[..],
            br#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"tok","progress":1}}
"#
        );
        assert_eq!(
            &two.try_recv().unwrap()[..],
            b"{\"jsonrpc\":\"2.0\",\"id\":1.0,\"result\":{}}\n"
        );
        assert_eq!(
            &one.try_recv().unwrap()[..],
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n"
        );
        assert!(one.try_recv().is_err() && two.try_recv().is_err());
        // A second answer goes to the lease that asked, whose core records it as repeated.
        s.outbound(ok(1), None);
        assert_eq!(
            &one.try_recv().unwrap()[..],
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n"
        );
        // An answer the pool did not ask for goes nowhere.
        s.outbound(ok(99), None);
        assert!(one.try_recv().is_err() && two.try_recv().is_err());
    }

    #[test]
    fn a_subscriptions_notifications_reach_its_listen_with_the_clients_id_whatever_else_waits() {
        // helper-95 F1, F2: the subscription id (the listen's id, MCP 2026-07-28
        // "Subscriptions") reached the client as the pool's id, and a notification of the
        // subscription was dropped while another lease had a request in flight.
        let (s, _) = shared();
        let (mut one, mut two) = (lease(&s, 1), lease(&s, 2));
        let listen = format!(
            r#"{{"jsonrpc":"2.0","id":"l\u002d1","method":"subscriptions/listen","params":{{{}}}}}"#,
            r#""notifications":{"toolsListChanged":true}"#
        );
        s.inbound(1, listen.as_bytes()).unwrap();
        s.inbound(2, call("1").as_bytes()).unwrap();
        let note = |method: &str, sub: &str| {
            Ok(Bytes::from(format!(
                r#"{{"jsonrpc":"2.0","method":"{method}","params":{{"_meta":{{"io.modelcontextprotocol/subscriptionId":{sub}}}}}}}"#
            )))
        };
        s.outbound(note("notifications/subscriptions/acknowledged", "1"), None);
        s.outbound(note("notifications/tools/list_changed", "1.0"), None);
        s.outbound(
            Ok(Bytes::from_static(
                br#"{"jsonrpc":"2.0","id":1,"result":{"_meta":{"io.modelcontextprotocol/subscriptionId":1}}}"#,
            )),
            None,
        );
        for method in [
            "notifications/subscriptions/acknowledged",
            "notifications/tools/list_changed",
        ] {
            assert_eq!(
                String::from_utf8_lossy(&one.try_recv().unwrap()),
                format!(
                    "{{\"jsonrpc\":\"2.0\",\"method\":\"{method}\",\"params\":{{\"_meta\":{{\"io.modelcontextprotocol/subscriptionId\":\"l\\u002d1\"}}}}}}\n"
                )
            );
        }
        assert_eq!(
            &one.try_recv().unwrap()[..],
            &b"{\"jsonrpc\":\"2.0\",\"id\":\"l\\u002d1\",\"result\":{\"_meta\":{\"io.modelcontextprotocol/subscriptionId\":\"l\\u002d1\"}}}\n"[..]
        );
        // Once the listen is answered, its subscription is no one's; one naming no request
        // reaches nobody either, nor one naming a pending request that is no listen (lease
        // two's call, the child's id 2: review helper-97 L8).
        s.outbound(note("notifications/tools/list_changed", "1"), None);
        s.outbound(note("notifications/tools/list_changed", "\"x\""), None);
        s.outbound(note("notifications/tools/list_changed", "2"), None);
        assert!(one.try_recv().is_err() && two.try_recv().is_err());
        // An answer whose result names another request keeps that value as it is.
        s.outbound(
            Ok(Bytes::from_static(
                br#"{"jsonrpc":"2.0","id":2,"result":{"_meta":{"io.modelcontextprotocol/subscriptionId":7}}}"#,
            )),
            None,
        );
        assert_eq!(
            &two.try_recv().unwrap()[..],
            &b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"_meta\":{\"io.modelcontextprotocol/subscriptionId\":7}}}\n"[..]
        );
    }

    #[test]
    fn a_cancellation_names_the_childs_id_of_the_leases_own_request_only() {
        let (s, _) = shared();
        let (_one, _two) = (lease(&s, 1), lease(&s, 2));
        s.inbound(1, call(r#""x""#).as_bytes()).unwrap();
        s.inbound(2, call(r#""x""#).as_bytes()).unwrap();
        let cancel = br#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"x","reason":"gone"}}"#;
        let out = s.inbound(2, cancel).unwrap();
        assert_eq!(
            &out[..],
            b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":{\"requestId\":2,\"reason\":\"gone\"}}\n"
        );
        // Lease 3 has no request "x": its cancellation never reaches the child.
        assert!(s.inbound(3, cancel).is_none());
        // A client's answer to a server request is not forwarded to a shared child.
        assert!(
            s.inbound(1, br#"{"jsonrpc":"2.0","id":5,"result":{}}"#)
                .is_none()
        );
    }

    #[test]
    fn a_lease_dropped_anywhere_gives_its_place_and_its_requests_back() {
        let (s, _) = shared();
        let s = Arc::new(s);
        let (_one, _two) = (lease(&s, 1), lease(&s, 2));
        s.inbound(1, call("1").as_bytes()).unwrap();
        s.inbound(2, call("1").as_bytes()).unwrap();
        drop(Place {
            shared: s.clone(),
            no: 1,
        });
        let t = s.table();
        assert_eq!(t.leases.keys().collect::<Vec<_>>(), [&2]);
        assert!(t.pending.values().all(|p| p.lease == 2) && t.pending.len() == 1);
    }

    #[tokio::test]
    async fn a_server_request_is_answered_by_the_pool_never_sent_to_a_client() {
        let (s, mut child) = shared();
        let (mut one, mut two) = (lease(&s, 1), lease(&s, 2));
        s.inbound(1, call("1").as_bytes()).unwrap();
        // Even with one lease in flight: its client could not answer.
        let ping = br#"{"jsonrpc":"2.0","id":0,"method":"ping"}"#;
        s.outbound(Ok(Bytes::from_static(ping)), None);
        assert!(one.try_recv().is_err());
        let answer = child.try_recv().unwrap();
        assert_eq!(
            &answer[..],
            b"{\"jsonrpc\":\"2.0\",\"id\":0,\"result\":{}}\n"
        );
        s.inbound(2, call("1").as_bytes()).unwrap();
        let ask = br#"{"jsonrpc":"2.0","id":"e","method":"elicitation/create","params":{}}"#;
        s.outbound(Ok(Bytes::from_static(ask)), None);
        assert!(one.try_recv().is_err() && two.try_recv().is_err());
        let answer = child.try_recv().unwrap();
        assert!(
            memchr::memmem::find(&answer, b"-32603").is_some()
                && memchr::memmem::find(&answer, b"SEP-2322").is_some(),
            "{answer:?}"
        );
    }
}
