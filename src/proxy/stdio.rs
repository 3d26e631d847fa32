//! The stdio front door: the client starts us, we start the server, and lines flow both ways
//! through the [`Pipeline`].
//!
//! Four tasks move bytes (client reader, server writer, server reader, client writer), a timer
//! expires calls, and the supervisor owns the child. A writer task awaits each message's audit
//! ack before writing it, so order is kept and, in `sync` mode, nothing reaches the other side
//! before its event is durable.
//!
//! Shutdown: when the client closes its input (or goes away, or a signal comes), the client
//! reader and the timer stop; the server writer delivers what they queued and closes the
//! server's stdin; the supervisor waits `limits.shutdown_grace_ms`, sends SIGTERM to the
//! server's process group, waits again, then SIGKILL. What the server still says is recorded
//! and delivered; calls left in flight get their failure events; the proxy exits with the
//! server's status.
//!
//! Whatever ends the server (its own exit included), what is left of its process group (a
//! wrapper's background helpers) gets the same grace, SIGTERM, grace, SIGKILL; on the paths
//! that cannot wait (an error, a panic unwinding through [`run_with`]) the group is killed
//! at once. After a termination signal to the wrapper the waits are cut short (SIGTERM at once,
//! SIGKILL [`SIGNALLED_GRACE`] later): its sender may SIGKILL it soon. If the proxy itself is
//! killed with SIGKILL, the [`super::warden`] ends the groups ([`spawn`] tells it of each, the
//! guard of its end); processes that left the group (`setsid`) are then not reached.

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::process::{Child, Command};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::pipeline::{Ended, Outbound, Pipeline, Route, SessionInfo};
use super::remote::{Remote, RemoteServer};
use crate::audit::event::Outcome;
use crate::audit::writer::AuditSink;
use crate::config::Config;
use crate::error::Side;
use crate::jsonrpc::{FrameError, LineFramer};

/// Messages queued per direction before readers wait (backpressure).
const QUEUE: usize = 1024;
/// Bytes queued per direction before readers wait, whatever the number of messages: without
/// it, a peer that stops reading while the other sends messages of `limits.max_message_bytes`
/// (16 MiB) would have the proxy hold [`QUEUE`] of them, 16 GiB. A longer message counts as
/// this many (it waits alone). What a queued message keeps allocated can be up to about twice
/// its length (the framer's buffer it was cut from), so this is about 64 MiB of memory.
const QUEUE_BYTES: usize = 32 * 1024 * 1024;
/// How often the supervisor looks whether what a server whose input closed owes is answered.
const OWED_POLL: Duration = Duration::from_millis(50);
/// How long to wait for the server's stdout to reach EOF after it exited (grandchildren may hold it).
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);
/// The same wait once the wrapper got a termination signal (what is in the pipe is read
/// long before; the sender may SIGKILL the wrapper soon).
const HURRIED_DRAIN: Duration = Duration::from_millis(200);
/// How long queued replies may take to reach the client at exit.
const FLUSH_AT_EXIT: Duration = Duration::from_secs(5);
/// How long a server whose output closed may take to exit on its own before the session is
/// ended for it: a server that exits closes its output first, but one that keeps running
/// without it can never answer again, and its calls would stay open until `call_timeout_ms`.
const EXIT_AFTER_OUTPUT_CLOSED: Duration = Duration::from_secs(1);

/// Why the stdio proxy could not run.
#[derive(Debug, thiserror::Error)]
pub enum StdioError {
    /// No server command on the command line or in the config.
    #[error("no MCP server command given\n  hint: put the server command after `--`, e.g. `mcp-audit-proxy stdio --config {} -- npx -y @modelcontextprotocol/server-everything`, or set upstream.command in that file", config.display())]
    NoCommand {
        /// The config file in use.
        config: PathBuf,
    },
    /// The server could not be started.
    #[error("cannot start the MCP server `{command}`: {source}\n  hint: check the command after `--` (or upstream.command in {}); is the program installed and on PATH?", config.display())]
    Spawn {
        /// The command line.
        command: String,
        /// The config file in use.
        config: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// `upstream.cwd` is not a folder the server can start in.
    #[error("cannot start the MCP server `{command}` in {}: {why}\n  hint: set upstream.cwd in {} to an existing folder (a relative path is taken from the config file's folder), or remove it to start the server in the proxy's own", cwd.display(), config.display())]
    Cwd {
        /// The command line.
        command: String,
        /// The folder, as resolved.
        cwd: PathBuf,
        /// What is wrong with it.
        why: String,
        /// The config file in use.
        config: PathBuf,
    },
    /// Waiting for the server failed.
    #[error("lost track of the MCP server process: {0}")]
    Wait(io::Error),
    /// A remote upstream cannot be used.
    #[error(transparent)]
    Remote(#[from] super::remote::RemoteError),
}

/// Why the session is being shut down (first reason wins).
#[derive(Debug, Clone, Copy)]
pub(crate) enum StopReason {
    ClientClosed,
    ClientGone,
    /// The server closed its output and did not exit ([`EXIT_AFTER_OUTPUT_CLOSED`]).
    ServerClosedOutput,
    /// The front door ended the session (HTTP DELETE, idle timeout, gateway shutdown).
    Ended(&'static str),
    Signal(&'static str),
}

/// The shutdown trigger, with its reason.
#[derive(Debug, Clone, Default)]
pub(crate) struct Stop {
    pub(crate) token: CancellationToken,
    why: Arc<OnceLock<StopReason>>,
    /// The client is gone (its output failed), whatever the first reason was.
    gone: Arc<std::sync::atomic::AtomicBool>,
}

impl Stop {
    pub(crate) fn stop(&self, why: StopReason) {
        if matches!(why, StopReason::ClientGone) {
            self.gone.store(true, std::sync::atomic::Ordering::Release);
        }
        let _ = self.why.set(why);
        self.token.cancel();
    }

    /// How calls still in flight end: the session stopped, or the server went away.
    fn outcome(&self, server: &str) -> (Outcome, Side, String) {
        match self.why.get() {
            None => (
                Outcome::ServerExit,
                Side::Upstream,
                format!("the server {server} before answering"),
            ),
            Some(StopReason::ClientClosed) => (
                Outcome::Shutdown,
                Side::Client,
                format!("the client closed the connection before the answer; the server {server}"),
            ),
            Some(StopReason::ClientGone) => (
                Outcome::Shutdown,
                Side::Client,
                format!("the client stopped reading before the answer; the server {server}"),
            ),
            Some(StopReason::ServerClosedOutput) => (
                Outcome::ServerExit,
                Side::Upstream,
                format!(
                    "the server closed its output without exiting, so the session was ended before the answer; the server {server}"
                ),
            ),
            Some(StopReason::Ended(why)) => (
                Outcome::Shutdown,
                Side::Internal,
                format!("{why} before the answer; the server {server}"),
            ),
            Some(StopReason::Signal(name)) => (
                Outcome::Shutdown,
                Side::Internal,
                format!("the proxy was stopped by {name} before the answer; the server {server}"),
            ),
        }
    }
}

/// Runs the proxy between this process's stdin/stdout and a spawned server until either ends.
///
/// Returns the exit code to leave with: the server's, or 128 + signal if it was killed.
pub async fn run(
    config: &Config,
    command: &[String],
    user_id: String,
    audit: AuditSink,
) -> Result<i32, StdioError> {
    run_with(
        config,
        command,
        user_id,
        audit,
        super::fdio::stdin(),
        super::fdio::stdout(),
    )
    .await
}

/// [`run`] with the client's streams given (tests and embedders).
pub async fn run_with(
    config: &Config,
    command: &[String],
    user_id: String,
    audit: AuditSink,
    client_in: impl AsyncRead + Unpin + Send + 'static,
    client_out: impl AsyncWrite + Unpin + Send + 'static,
) -> Result<i32, StdioError> {
    let session = SessionInfo {
        session_id: ulid::Ulid::generate().to_string(),
        user_id,
        upstream: config.upstream.name.clone(),
        auth_method: super::pipeline::STDIO,
        http: None,
    };
    let policy = crate::policy::PolicyCell::new(config.policy.clone());
    crate::telemetry::mask_with(policy.log_mask());
    // A command after `--` wins; else the upstream's own command or url.
    let server = match &config.upstream.remote {
        Some(remote) if command.is_empty() => Server::Remote {
            remote: Remote::new(&config.upstream.name, remote, &config.limits)?,
            reopen: true,
        },
        _ => Server::Command {
            command,
            cwd: config.upstream.cwd.as_deref(),
        },
    };
    let setup = SessionSetup {
        config,
        server,
        session,
        audit,
        policy,
        own_signals: true,
        rounds: None,
        tasks: None,
    };
    run_session(setup, move |door: ClientDoor| {
        super::fdio::mark_client_read();
        let client_reader = reader(
            client_in,
            door.pipeline.clone(),
            Peer::Client,
            door.routes.clone(),
            door.max,
            Some(door.stop.token.clone()),
        );
        let client_stop = door.stop.clone();
        tokio::spawn(
            async move {
                if client_reader.await {
                    client_stop.stop(StopReason::ClientClosed);
                } else {
                    client_stop.stop(StopReason::ClientGone);
                }
            }
            .instrument(door.span.clone()),
        );
        tokio::spawn(
            client_writer(
                client_out,
                door.to_client,
                door.done,
                door.stop,
                door.pipeline,
            )
            .instrument(door.span),
        )
    })
    .await
}

/// What one session runs with, whichever front door feeds it.
pub(crate) struct SessionSetup<'a> {
    pub(crate) config: &'a Config,
    /// The server: a program to start, or a remote one.
    pub(crate) server: Server<'a>,
    pub(crate) session: SessionInfo,
    pub(crate) audit: AuditSink,
    /// The policy in force; the gateway shares one cell across its sessions.
    pub(crate) policy: crate::policy::PolicyCell,
    /// Whether this session handles the process's signals (stop, reload) itself: the stdio
    /// wrapper does; the gateway handles them once for all sessions.
    pub(crate) own_signals: bool,
    /// MRTR rounds shared with other sessions (the gateway's sessionless requests of one
    /// principal on one upstream); `None`: the session's own.
    pub(crate) rounds: Option<crate::proxy::pipeline::SharedRounds>,
    /// The tasks of the session's principal on its upstream, the only ones its task requests
    /// may name (the gateway: its upstream sees every principal as one); `None`: the stdio
    /// wrapper's one client names what it likes.
    pub(crate) tasks: Option<crate::proxy::pipeline::SharedTasks>,
}

/// The server of a session.
pub(crate) enum Server<'a> {
    /// A program spoken to over its stdin and stdout.
    Command {
        /// The command line.
        command: &'a [String],
        /// Its working folder; `None`: the proxy's own.
        cwd: Option<&'a std::path::Path>,
    },
    /// A place on a child shared by sessionless requests (the gateway's pool).
    Pooled(super::pool::Lease),
    /// A remote Streamable HTTP server (`[[upstream]] url`).
    Remote {
        remote: Arc<Remote>,
        /// Open a new upstream session when the upstream ends one (the stdio wrapper: its
        /// client cannot); else the session ends (the gateway: its client starts a new one).
        reopen: bool,
    },
}

/// The client side of a session, handed to the front door once the server is running.
pub(crate) struct ClientDoor {
    pub(crate) pipeline: Arc<Pipeline>,
    /// Where the client's messages go: `ToServer` keeps the server's stdin open while any
    /// clone of it lives (with the timer's), so the door drops it when the client is done.
    pub(crate) routes: Routes,
    /// Messages for the client, in order; each waits for its audit ack before delivery.
    pub(crate) to_client: mpsc::Receiver<Outbound>,
    /// Stops the session (the client closed or went away).
    pub(crate) stop: Stop,
    /// Cancelled when the session is over and every queued message for the client is queued.
    pub(crate) done: CancellationToken,
    pub(crate) max: usize,
    pub(crate) span: tracing::Span,
}

/// Spawns the server, hands the client side to `door`, and runs the session until the server
/// exits; returns the exit code to leave with.
pub(crate) async fn run_session(
    setup: SessionSetup<'_>,
    door: impl FnOnce(ClientDoor) -> tokio::task::JoinHandle<()>,
) -> Result<i32, StdioError> {
    let SessionSetup {
        config,
        server,
        session,
        audit,
        policy,
        own_signals,
        rounds,
        tasks,
    } = setup;
    let span = tracing::info_span!("session", mcp.session.id = %session.session_id);
    type In = Box<dyn AsyncWrite + Send + Unpin>;
    type Out = Box<dyn AsyncRead + Send + Unpin>;
    let (server_in, server_out, running): (In, Out, Running) = match server {
        Server::Command { command, cwd } => {
            let (child, server_in, server_out) = spawn(config, command, cwd)?;
            tracing::info!(parent: &span, pid = child.id(), command = %command.join(" "), user = %session.user_id, "mcp server started");
            // Whatever way this function is left (an error, a panic unwinding through it),
            // what the server started goes with it; the normal path ends the group gently first.
            let group = GroupGuard(child.id().map(|pid| Pid::from_raw(pid as i32)));
            (
                Box::new(server_in),
                Box::new(server_out),
                Running::Child { child, group },
            )
        }
        Server::Pooled(lease) => {
            tracing::debug!(parent: &span, pid = lease.pid(), user = %session.user_id, "shared mcp server leased");
            let (link, server_in, server_out) = lease.start();
            (
                Box::new(server_in),
                Box::new(server_out),
                Running::Pooled(link),
            )
        }
        Server::Remote { remote, reopen } => {
            tracing::info!(parent: &span, upstream = ?remote, user = %session.user_id, "remote mcp server session opened");
            let (link, server_in, server_out) = RemoteServer::start(remote, reopen);
            (
                Box::new(server_in),
                Box::new(server_out),
                Running::Remote(link),
            )
        }
    };
    let pins = crate::policy::pins::Pins::new(&config.audit.store_dir, &session.upstream);
    let mut pipeline = Pipeline::new(session, audit, &config.limits, policy, Some(pins));
    if let Some(shared) = rounds {
        pipeline = pipeline.with_rounds(shared);
    }
    if let Some(owned) = tasks {
        pipeline = pipeline.with_tasks(owned);
    }
    let pipeline = Arc::new(pipeline);
    if let Running::Pooled(link) = &running {
        link.serves(pipeline.clone());
    }
    let max = config.limits.max_message_bytes;

    let (to_server, to_server_rx) = mpsc::channel::<Outbound>(QUEUE);
    let (to_client, to_client_rx) = mpsc::channel::<Outbound>(QUEUE);
    let stop = Stop::default();
    // `done`: the session is over; the client writer flushes what is queued and ends.
    let done = CancellationToken::new();

    // Only the client side and the timer can write to the server: when both have stopped,
    // the server writer has delivered everything and closes the server's stdin.
    let budgets = Budgets::default();
    let client_routes = Routes {
        to_server: ToServer::Open(to_server.clone()),
        to_client: to_client.clone(),
        budgets: Some(budgets.clone()),
        pipeline: pipeline.clone(),
    };
    tokio::spawn(
        server_writer(server_in, to_server_rx, to_client.clone(), pipeline.clone())
            .instrument(span.clone()),
    );
    let server_routes = Routes {
        to_server: ToServer::Weak(to_server.downgrade()),
        to_client: to_client.clone(),
        budgets: Some(budgets),
        pipeline: pipeline.clone(),
    };
    // Cancelled once the server has exited (or its remote or pooled link is over).
    let exited = CancellationToken::new();
    // Cancelled once the server's output has ended: it can answer nothing more.
    let output_ended = CancellationToken::new();
    let server_reader = tokio::spawn({
        let (pipeline, stop, exited) = (pipeline.clone(), stop.clone(), exited.clone());
        let output_ended = output_ended.clone();
        async move {
            reader(server_out, pipeline, Peer::Server, server_routes, max, None).await;
            output_ended.cancel();
            tokio::select! {
                _ = exited.cancelled() => {}
                _ = tokio::time::sleep(EXIT_AFTER_OUTPUT_CLOSED) => {
                    tracing::warn!("the server closed its output but keeps running; ending the session");
                    stop.stop(StopReason::ServerClosedOutput);
                }
            }
        }
        .instrument(span.clone())
    });
    let client_writer = door(ClientDoor {
        pipeline: pipeline.clone(),
        routes: client_routes.clone(),
        to_client: to_client_rx,
        stop: stop.clone(),
        done: done.clone(),
        max,
        span: span.clone(),
    });
    tokio::spawn(
        timer(
            pipeline.clone(),
            client_routes.unbudgeted(),
            stop.token.clone(),
        )
        .instrument(span.clone()),
    );
    if own_signals {
        tokio::spawn(stop_on_signal(super::termination_signal(), stop.clone()));
        tokio::spawn(
            super::reload::reload_on_hangup(
                config.source.clone(),
                pipeline.clone(),
                stop.token.clone(),
                None,
            )
            .instrument(span.clone()),
        );
    }
    drop((to_server, to_client));

    let grace = config.limits.shutdown_grace;
    let exited_at;
    let (code, described) = match running {
        Running::Child {
            mut child,
            mut group,
        } => {
            // Only for a client that closed its input: one gone, or a server that closed its
            // output, can no longer get or give the answers.
            let unanswered = {
                let (pipeline, stop) = (pipeline.clone(), stop.clone());
                move || {
                    matches!(stop.why.get(), Some(StopReason::ClientClosed))
                        && !stop.gone.load(std::sync::atomic::Ordering::Acquire)
                        && !output_ended.is_cancelled()
                        && pipeline.awaits_answers()
                        // A call past its deadline waits no longer (the timer has stopped).
                        && pipeline.next_deadline().is_none_or(|d| d > Instant::now())
                }
            };
            let owed = Owed {
                unanswered: &unanswered,
                limit: config
                    .limits
                    .call_timeout
                    .or(config.limits.call_timeout_max)
                    .unwrap_or(grace),
            };
            let (status, sent) = supervise(&mut child, &stop.token, grace, Some(owed))
                .await
                .map_err(StdioError::Wait)?;
            exited_at = tokio::time::Instant::now();
            exited.cancel();
            let described = describe(status);
            tracing::info!(parent: &span, status = %described, "mcp server exited");
            // The server is gone, not necessarily what it started (`sh -c 'helper & exec
            // server'`): its group ends now, also when the server exited on its own.
            if let Some(pgid) = group.0 {
                end_group(pgid, grace, sent).instrument(span.clone()).await;
                group.disarm();
            }
            (exit_code(status), described)
        }
        Running::Remote(link) => {
            let (code, described) = link.finish(&stop.token, grace).await;
            exited_at = tokio::time::Instant::now();
            tracing::info!(parent: &span, status = %described, "remote mcp server session over");
            (code, described)
        }
        Running::Pooled(link) => {
            let over = link.finish(&stop.token, grace).await;
            exited_at = tokio::time::Instant::now();
            over
        }
    };
    exited.cancel();

    // Responses the server wrote before exiting still reach the client, with their events:
    // up to DRAIN_AFTER_EXIT from its exit (its group's ending counts) but never less than
    // HURRIED_DRAIN from now (what its group wrote while ending is read), and after a
    // termination signal HURRIED_DRAIN more at most. What is in the pipe is read at once; a
    // wait past that is for a child the server left holding its output (`setsid helper &`),
    // and whoever signalled may SIGKILL soon: the calls' ends must be written first.
    let mut server_reader = server_reader;
    let drained = tokio::select! {
        biased;
        r = tokio::time::timeout_at(
            (exited_at + DRAIN_AFTER_EXIT).max(tokio::time::Instant::now() + HURRIED_DRAIN),
            &mut server_reader,
        ) => r.is_ok(),
        () = signalled().cancelled() => {
            tokio::time::timeout(HURRIED_DRAIN, &mut server_reader).await.is_ok()
        }
    };
    if !drained {
        tracing::warn!(parent: &span, "server output still open after exit (a child process of the server holds it); not waiting longer");
    }
    let (outcome, side, reason) = stop.outcome(&described);
    let acks = pipeline.end_all(outcome, side, &reason);
    if !acks.is_empty() {
        tracing::warn!(parent: &span, calls = acks.len(), reason = %reason, "tool calls in flight failed");
    }
    for ack in acks {
        if let Err(e) = ack.wait().await {
            tracing::error!(parent: &span, error = %e, "failure event of an in-flight call not durable");
        }
    }
    done.cancel();
    if tokio::time::timeout(FLUSH_AT_EXIT, client_writer)
        .await
        .is_err()
    {
        tracing::warn!(parent: &span, "client is not reading; queued replies dropped at exit");
    }
    Ok(code)
}

/// The server as it runs.
enum Running {
    Child { child: Child, group: GroupGuard },
    Remote(RemoteServer),
    Pooled(super::pool::LeaseLink),
}

/// Starts the server program in its own process group, its stdin and stdout piped.
pub(crate) fn spawn(
    config: &Config,
    command: &[String],
    cwd: Option<&std::path::Path>,
) -> Result<
    (
        Child,
        tokio::process::ChildStdin,
        tokio::process::ChildStdout,
    ),
    StdioError,
> {
    let (program, args) = command.split_first().ok_or_else(|| StdioError::NoCommand {
        config: config.source.clone(),
    })?;
    let mut builder = Command::new(program);
    for var in config.own_secret_vars() {
        builder.env_remove(var);
    }
    if let Some(cwd) = cwd {
        // The OS reports a missing folder as the program's ENOENT: said here instead.
        let why = match std::fs::metadata(cwd) {
            Ok(m) if m.is_dir() => None,
            Ok(_) => Some("it is not a folder".to_string()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Some("no such folder".to_string()),
            Err(e) => Some(e.to_string()),
        };
        if let Some(why) = why {
            return Err(StdioError::Cwd {
                command: command.join(" "),
                cwd: cwd.to_path_buf(),
                why,
                config: config.source.clone(),
            });
        }
        builder.current_dir(cwd);
    }
    // Its own process group: wrappers (npx, uvx, sh -c) start the real server as a child, and
    // the shutdown signals must reach it too. Registered while the fork happens, so that
    // [`reap_orphans`] never takes a server's exit status from tokio.
    let mut servers = servers();
    let mut child = builder
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| StdioError::Spawn {
            command: command.join(" "),
            config: config.source.clone(),
            source,
        })?;
    servers.extend(child.id().map(|pid| pid as i32));
    drop(servers);
    let (Some(server_in), Some(server_out)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(StdioError::Wait(io::Error::other("child pipes missing")));
    };
    // Told once its guard can be made (no return between here and the caller's guard).
    if let Some(pid) = child.id() {
        super::warden::watch(pid as i32);
    }
    super::fdio::grow_pipe(&server_in);
    super::fdio::grow_pipe(&server_out);
    Ok((child, server_in, server_out))
}

/// The senders a reader routes into.
#[derive(Clone, Debug)]
pub(crate) struct Routes {
    to_server: ToServer,
    to_client: mpsc::Sender<Outbound>,
    /// `None`: the timer's routes, whose timeouts, cancellations and withdrawn questions
    /// must never wait behind the byte budget that a stalled peer holds (only the queue's
    /// message count bounds them, as before the budget).
    budgets: Option<Budgets>,
    /// Records the answers that can no longer reach the client (its writer has ended).
    pipeline: Arc<Pipeline>,
}

/// The byte budget of each direction's queue ([`QUEUE_BYTES`]): a message takes its share
/// before it is queued and gives it back when it is dropped ([`Outbound::budget`]).
#[derive(Clone, Debug)]
struct Budgets {
    to_server: Arc<Semaphore>,
    to_client: Arc<Semaphore>,
}

impl Default for Budgets {
    fn default() -> Self {
        Budgets {
            to_server: Arc::new(Semaphore::new(QUEUE_BYTES)),
            to_client: Arc::new(Semaphore::new(QUEUE_BYTES)),
        }
    }
}

/// Waits for `out`'s share of `budget` and attaches it; false if the budget is closed (never).
async fn charge(budget: &Arc<Semaphore>, out: &mut Outbound) -> bool {
    let share = out.bytes.len().clamp(1, QUEUE_BYTES) as u32;
    match budget.clone().acquire_many_owned(share).await {
        Ok(permit) => {
            out.budget = Some(permit);
            true
        }
        Err(_) => false,
    }
}

/// How a reader reaches the server.
#[derive(Clone, Debug)]
enum ToServer {
    /// The client reader and the timer: while any holds it, the server's stdin stays open.
    Open(mpsc::Sender<Outbound>),
    /// The server reader, to answer the server's own broken requests: weak, so that it never
    /// keeps the server's stdin open (the server may wait for EOF before it exits).
    Weak(mpsc::WeakSender<Outbound>),
}

impl Routes {
    /// These routes without the byte budget (the timer's).
    fn unbudgeted(self) -> Routes {
        Routes {
            budgets: None,
            ..self
        }
    }

    /// Queues a message for the server only if its queue has room now: the timer's
    /// cancellations, which must never wait behind a server that stopped reading (MCP
    /// "Cancellation" is advisory: a server that reads nothing learns nothing from it).
    /// False when it was not queued.
    fn offer_to_server(&self, out: Outbound) -> bool {
        let tx = match &self.to_server {
            ToServer::Open(tx) => Some(tx.clone()),
            ToServer::Weak(tx) => tx.upgrade(),
        };
        tx.is_some_and(|tx| tx.try_send(out).is_ok())
    }

    /// Queues a routed message; false when the destination is gone.
    pub(crate) async fn send(&self, route: Route) -> bool {
        match route {
            Route::Many(routes) => {
                let mut delivered = true;
                for route in routes {
                    delivered &= self.send_one(route).await;
                }
                delivered
            }
            route => self.send_one(route).await,
        }
    }

    async fn send_one(&self, route: Route) -> bool {
        match route {
            Route::ToServer(mut out) => {
                if let Some(b) = &self.budgets
                    && !charge(&b.to_server, &mut out).await
                {
                    return false;
                }
                match &self.to_server {
                    ToServer::Open(tx) => tx.send(out).await.is_ok(),
                    ToServer::Weak(tx) => match tx.upgrade() {
                        Some(tx) => tx.send(out).await.is_ok(),
                        None => false,
                    },
                }
            }
            Route::ToClient(mut out) => {
                if let Some(b) = &self.budgets
                    && !charge(&b.to_client, &mut out).await
                {
                    return false;
                }
                match self.to_client.send(out).await {
                    Ok(()) => true,
                    // The client's output closed on an earlier write: the calls this answer
                    // ends were recorded as answered; the trail must say it never arrived.
                    Err(mpsc::error::SendError(out)) => {
                        if !out.ends.is_empty() {
                            self.pipeline
                                .undelivered(out.ends, "the client's output was already closed");
                        }
                        false
                    }
                }
            }
            // The pipeline never nests them.
            Route::Drop | Route::Taken | Route::Many(_) => true,
        }
    }
}

/// Which peer a reader reads from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Peer {
    Client,
    Server,
}

fn route(pipeline: &Pipeline, from: Peer, frame: Result<Bytes, FrameError>) -> Route {
    match (from, frame) {
        (Peer::Client, Ok(line)) => pipeline.from_client(line),
        (Peer::Client, Err(e)) => pipeline.client_frame_error(&e),
        (Peer::Server, Ok(line)) => pipeline.from_server(line),
        (Peer::Server, Err(e)) => pipeline.server_frame_error(&e),
    }
}

/// Frames one peer's output and routes every line, until EOF, an error or `stop`; returns
/// whether it ended at the peer's EOF.
///
/// The server's reader ignores `stop` and a gone client: what the server still says must be
/// recorded (and delivered while the client listens) until its output closes.
async fn reader(
    mut input: impl AsyncRead + Unpin,
    pipeline: Arc<Pipeline>,
    from: Peer,
    routes: Routes,
    max: usize,
    stop: Option<CancellationToken>,
) -> bool {
    let peer = match from {
        Peer::Client => "client",
        Peer::Server => "server",
    };
    let mut framer = LineFramer::new(max);
    loop {
        while let Some(frame) = framer.next_frame().transpose() {
            if !routes.send(route(&pipeline, from, frame)).await && from == Peer::Client {
                return false;
            }
        }
        let read = match &stop {
            Some(stop) => tokio::select! {
                r = input.read_buf(framer.read_buf()) => r,
                _ = stop.cancelled() => return false,
            },
            None => input.read_buf(framer.read_buf()).await,
        };
        match read {
            Ok(0) => {
                if let Some(frame) = framer.finish().transpose() {
                    match frame {
                        // A server that dies (or closes its output) in the middle of a
                        // message: the calls it may have been answering end with it
                        // (`server_exit`), not as answers the proxy refused.
                        Ok(cut)
                            if from == Peer::Server
                                && serde_json::from_slice::<serde::de::IgnoredAny>(&cut)
                                    .is_err_and(|e| e.is_eof()) =>
                        {
                            tracing::warn!(
                                bytes = cut.len(),
                                "the server's output ended in the middle of a message; its calls in flight end with the server"
                            );
                        }
                        frame => {
                            routes.send(route(&pipeline, from, frame)).await;
                        }
                    }
                }
                tracing::info!(peer, "input closed");
                return true;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(peer, error = %e, "reading failed");
                return false;
            }
        }
    }
}

/// Writes to the server in order, each message once its audit event is durable; closes the
/// server's stdin when everything the client reader and the timer queued is delivered.
async fn server_writer(
    mut server_in: impl AsyncWrite + Unpin,
    mut rx: mpsc::Receiver<Outbound>,
    to_client: mpsc::Sender<Outbound>,
    pipeline: Arc<Pipeline>,
) {
    let mut closed: Option<String> = None;
    let mut carry = None;
    loop {
        let out = match carry.take() {
            Some(out) => out,
            None => match rx.recv().await {
                Some(out) => out,
                None => break,
            },
        };
        match out.ack.wait().await {
            Ok(()) => {
                let bytes = gather(out.bytes, &mut rx, &mut carry, &mut Vec::new());
                // The lines from `from` on never reached the server whole.
                let (failed, from) = match &closed {
                    Some(why) => (Some(why.clone()), 0),
                    None => match write_counted(&mut server_in, &bytes).await {
                        Ok(()) => (None, bytes.len()),
                        Err((e, written)) => {
                            tracing::warn!(error = %e, "writing to the server failed");
                            let why = format!(
                                "the request was not delivered: the server's input is closed ({e})"
                            );
                            let line_start =
                                memchr::memrchr(b'\n', &bytes[..written]).map_or(0, |i| i + 1);
                            (Some(why), line_start)
                        }
                    },
                };
                // The server may run on without reading: what it never got fails now, not
                // at its timeout, and the trail says it never reached the server. Lines
                // written whole before the failure may have been read: they stay in flight.
                if let Some(why) = failed {
                    for reply in pipeline.undeliverable(&bytes[from..], &why) {
                        let _ = to_client.send(reply).await;
                    }
                    closed = Some(why);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "message not forwarded: its audit event is not durable");
                match out.if_unrecorded {
                    Some(u) if u.to_server && closed.is_none() => {
                        let _ = write_counted(&mut server_in, &(u.reply)()).await;
                    }
                    Some(u) if !u.to_server => {
                        pipeline.abandon(&u.calls);
                        let _ = to_client.send(Outbound::now((u.reply)())).await;
                    }
                    _ => {}
                }
            }
        }
    }
    // Closing the pipe is the server's EOF.
    let _ = server_in.shutdown().await;
}

/// `write_all` that says how far it got: on an error, the error and the bytes written.
async fn write_counted(
    out: &mut (impl AsyncWrite + Unpin),
    bytes: &[u8],
) -> Result<(), (std::io::Error, usize)> {
    let mut written = 0;
    while written < bytes.len() {
        match out.write(&bytes[written..]).await {
            Ok(0) => return Err((std::io::ErrorKind::WriteZero.into(), written)),
            Ok(n) => written += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err((e, written)),
        }
    }
    Ok(())
}

/// At most this many bytes go out in one write of queued messages.
const BATCH_BYTES: usize = 256 * 1024;

/// `first`, followed by the messages already queued behind it that wait on no audit event, up
/// to [`BATCH_BYTES`]: one write, so the peer is woken once, not once per message. Order is
/// kept: a message that must wait for its event ends the batch and is left in `carry`. The
/// calls the joined messages end are added to `ends`.
fn gather(
    first: Bytes,
    rx: &mut mpsc::Receiver<Outbound>,
    carry: &mut Option<Outbound>,
    ends: &mut Vec<Ended>,
) -> Bytes {
    let mut joined: Option<BytesMut> = None;
    while joined.as_ref().map_or(first.len(), BytesMut::len) < BATCH_BYTES {
        match rx.try_recv() {
            Ok(next) if !next.ack.is_pending() => {
                let j = joined.get_or_insert_with(|| {
                    let mut j = BytesMut::with_capacity(first.len() + next.bytes.len());
                    j.extend_from_slice(&first);
                    j
                });
                j.extend_from_slice(&next.bytes);
                ends.extend(next.ends);
            }
            Ok(next) => {
                *carry = Some(next);
                break;
            }
            Err(_) => break,
        }
    }
    joined.map_or(first, BytesMut::freeze)
}

/// Writes to the client in order, each message once its audit event is durable. If a write
/// fails, the calls whose answers it and the messages still queued carried are recorded as
/// not delivered ([`Pipeline::undelivered`]) before the session stops.
async fn client_writer(
    mut client_out: impl AsyncWrite + Unpin,
    mut rx: mpsc::Receiver<Outbound>,
    done: CancellationToken,
    stop: Stop,
    pipeline: Arc<Pipeline>,
) {
    let mut carry = None;
    loop {
        let out = match carry.take() {
            Some(out) => out,
            None => tokio::select! {
                biased;
                m = rx.recv() => match m {
                    Some(m) => m,
                    None => break,
                },
                _ = done.cancelled() => match rx.try_recv() {
                    Ok(m) => m,
                    Err(_) => break,
                },
            },
        };
        let mut ends = out.ends;
        let bytes = match out.ack.wait().await {
            Ok(()) => gather(out.bytes, &mut rx, &mut carry, &mut ends),
            Err(e) => {
                tracing::error!(error = %e, "server message withheld: its audit event is not durable");
                // The client gets the error instead; the end was never recorded.
                ends.clear();
                match out.if_unrecorded {
                    Some(u) => (u.reply)(),
                    None => out.bytes,
                }
            }
        };
        let written = async {
            client_out.write_all(&bytes).await?;
            client_out.flush().await
        };
        if let Err(e) = written.await {
            tracing::info!(error = %e, "client output closed; shutting down");
            // What was queued behind it will not be written either.
            ends.extend(carry.take().into_iter().flat_map(|o| o.ends));
            while let Ok(queued) = rx.try_recv() {
                ends.extend(queued.ends);
            }
            if !ends.is_empty() {
                pipeline.undelivered(ends, &format!("writing to the client failed ({e})"));
            }
            stop.stop(StopReason::ClientGone);
            return;
        }
    }
}

/// Expires calls past `limits.call_timeout_ms`, until the session stops.
async fn timer(pipeline: Arc<Pipeline>, routes: Routes, stop: CancellationToken) {
    loop {
        let now = Instant::now();
        let tick = match pipeline.next_deadline() {
            Some(d) => d
                .saturating_duration_since(now)
                .min(Duration::from_millis(50)),
            None => Duration::from_millis(250),
        };
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = stop.cancelled() => return,
        }
        // A server that stopped reading fills its queue: a cancellation waiting there would
        // hold back the answers owed to the client, this tick's and every later one's.
        let mut unsent = 0usize;
        for route in pipeline.expire(Instant::now()) {
            match route {
                Route::ToServer(out) => unsent += usize::from(!routes.offer_to_server(out)),
                route => {
                    routes.send(route).await;
                }
            }
        }
        if unsent > 0 {
            tracing::warn!(
                unsent,
                "the server is not reading its input: {unsent} cancellation(s) of timed-out calls or \
                 questions were not sent to it (the client was answered and the trail records each)"
            );
        }
    }
}

async fn stop_on_signal(signal: impl std::future::Future<Output = &'static str>, stop: Stop) {
    let name = signal.await;
    tracing::info!(signal = name, "signal received; shutting down");
    signalled().cancel();
    stop.stop(StopReason::Signal(name));
}

/// After a termination signal to the wrapper, how long the server's process group has
/// between SIGTERM and SIGKILL (at most; `limits.shutdown_grace_ms` if shorter). Whoever sent
/// the signal will SIGKILL the wrapper soon: the SDK clients close stdin, wait 2 s, send
/// SIGTERM, wait 2 s more, then SIGKILL. Killed first, the wrapper would leave the server (in
/// a process group of its own, out of reach of the client's signals) running for ever.
pub(crate) const SIGNALLED_GRACE: Duration = Duration::from_secs(1);

/// Cancelled once the stdio wrapper received a termination signal: from then on each wait of
/// the shutdown ladder is cut short ([`SIGNALLED_GRACE`]).
fn signalled() -> &'static CancellationToken {
    static SIGNALLED: OnceLock<CancellationToken> = OnceLock::new();
    SIGNALLED.get_or_init(CancellationToken::new)
}

/// Waits for `work` up to `grace`; once [`signalled`], up to `hurried` from then (never past
/// `grace`). `None` when the time ran out first.
async fn within_grace<F: std::future::Future>(
    grace: Duration,
    hurried: Duration,
    work: F,
) -> Option<F::Output> {
    let deadline = tokio::time::Instant::now() + grace;
    tokio::pin!(work);
    tokio::select! {
        out = tokio::time::timeout_at(deadline, &mut work) => return out.ok(),
        _ = signalled().cancelled() => {}
    }
    let cut = (tokio::time::Instant::now() + hurried.min(grace)).min(deadline);
    tokio::time::timeout_at(cut, work).await.ok()
}

/// The last signal [`supervise`] sent to the server's process group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Sent {
    Nothing,
    Term,
    Kill,
}

/// What a server whose input closed still owes: requests unanswered, and their longest wait.
pub(crate) struct Owed<'a> {
    /// Whether any request forwarded to the server is still unanswered.
    pub(crate) unanswered: &'a (dyn Fn() -> bool + Send + Sync),
    /// The longest the wait for them lasts (`limits.call_timeout_ms`).
    pub(crate) limit: Duration,
}

/// Waits for the server; after `stop`: EOF (by the server writer), grace, SIGTERM, grace,
/// SIGKILL, the signals going to the server's whole process group. After a termination
/// signal to the wrapper: SIGTERM at once, SIGKILL [`SIGNALLED_GRACE`] later.
///
/// With `owed`: while requests it was sent are unanswered (up to `owed.limit`, and never
/// after a termination signal), the server's grace starts only once they are answered. A
/// client that writes its requests and closes its input at once (`printf … | proxy`) waits
/// for the answers, as it would reading the server directly; a server that starts slowly
/// (`npx` fetching a package) must not be stopped before it read them. The SDK clients end
/// a session with a SIGTERM soon after closing their input, which ends this wait.
pub(crate) async fn supervise(
    child: &mut Child,
    stop: &CancellationToken,
    grace: Duration,
    owed: Option<Owed<'_>>,
) -> io::Result<(ExitStatus, Sent)> {
    tokio::select! {
        status = child.wait() => return Ok((status?, Sent::Nothing)),
        _ = stop.cancelled() => {}
    }
    if let Some(owed) = owed {
        let until = tokio::time::Instant::now() + owed.limit;
        while (owed.unanswered)()
            && !signalled().is_cancelled()
            && tokio::time::Instant::now() < until
        {
            tokio::select! {
                status = child.wait() => return Ok((status?, Sent::Nothing)),
                _ = signalled().cancelled() => {}
                _ = tokio::time::sleep(OWED_POLL) => {}
            }
        }
    }
    let group = child.id().map(|pid| Pid::from_raw(pid as i32));
    // After a signal the server has no more time after its EOF: the client's close sequence
    // has waited already, and a signal alone (`docker stop`, systemd) also means "now".
    if let Some(status) = within_grace(grace, Duration::ZERO, child.wait()).await {
        return Ok((status?, Sent::Nothing));
    }
    tracing::warn!(pid = ?group, "server did not exit after its input closed; sending SIGTERM");
    if let Some(group) = group {
        let _ = killpg(group, Signal::SIGTERM);
    }
    if let Some(status) = within_grace(grace, SIGNALLED_GRACE, child.wait()).await {
        return Ok((status?, Sent::Term));
    }
    tracing::warn!("server ignored SIGTERM; killing it");
    if let Some(group) = group {
        let _ = killpg(group, Signal::SIGKILL);
    }
    child.kill().await?;
    Ok((child.wait().await?, Sent::Kill))
}

/// The server's process group, killed with SIGKILL when dropped while armed: on the paths that
/// skip [`end_group`] (an error, a panic unwinding through [`run_with`]).
pub(crate) struct GroupGuard(pub(crate) Option<Pid>);

impl GroupGuard {
    /// The group is known to be empty: its id may be reused by another group from now on.
    pub(crate) fn disarm(&mut self) {
        if let Some(group) = self.0.take() {
            servers().remove(&group.as_raw());
            super::warden::release(group.as_raw());
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(group) = self.0 {
            servers().remove(&group.as_raw());
        }
        if let Some(group) = self.0
            && group_alive(group)
        {
            tracing::warn!(
                pgid = group.as_raw(),
                "ending the mcp server's process group on an abnormal exit: SIGKILL"
            );
            let _ = killpg(group, Signal::SIGKILL);
        }
        if let Some(group) = self.0 {
            super::warden::release(group.as_raw());
        }
    }
}

/// Whether any process of `group` is left (a zombie counts until its parent reaps it).
fn group_alive(group: Pid) -> bool {
    killpg(group, None).is_ok()
}

/// How often [`end_group`] looks whether the group is empty.
pub(crate) const GROUP_POLL: Duration = Duration::from_millis(20);

/// Reaps the members of `group` that have exited and are this process's children: orphans
/// [`adopt_orphans`] made ours. A zombie would keep the group alive, and [`end_group`] would
/// signal processes that had already done as asked. Called only once the server (the group's
/// leader, waited for by its own task) has been reaped.
fn reap_group(group: Pid) {
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    while let Ok(status) = waitpid(Pid::from_raw(-group.as_raw()), Some(WaitPidFlag::WNOHANG)) {
        if status == WaitStatus::StillAlive {
            break;
        }
    }
}

/// Waits for `group` to be empty, up to `limit` ([`within_grace`]: `hurried` once
/// [`signalled`]); true if it is.
async fn group_gone_within(group: Pid, limit: Duration, hurried: Duration) -> bool {
    let emptied = async {
        loop {
            reap_group(group);
            if !group_alive(group) {
                return;
            }
            tokio::time::sleep(GROUP_POLL).await;
        }
    };
    within_grace(limit, hurried, emptied).await.is_some() || {
        // One last look: the group may have emptied during the last poll's sleep.
        reap_group(group);
        !group_alive(group)
    }
}

/// Ends what is left of the server's process group once the server has exited: the rest gets
/// `grace` to finish, then SIGTERM, `grace` again, then SIGKILL, skipping the steps
/// [`supervise`] already took (`sent`). Returns at once when nothing is left (the usual case).
pub(crate) async fn end_group(group: Pid, grace: Duration, sent: Sent) {
    if sent < Sent::Kill && group_gone_within(group, grace, Duration::ZERO).await {
        return;
    }
    if sent < Sent::Term {
        tracing::warn!(
            pgid = group.as_raw(),
            "processes the mcp server started outlive it; sending SIGTERM to its process group"
        );
        let _ = killpg(group, Signal::SIGTERM);
        if group_gone_within(group, grace, SIGNALLED_GRACE).await {
            return;
        }
    }
    if sent < Sent::Kill {
        tracing::warn!(
            pgid = group.as_raw(),
            "processes the mcp server started ignored SIGTERM; killing its process group"
        );
        let _ = killpg(group, Signal::SIGKILL);
    }
    // Those adopted by this process are reaped here; others by their own new parent.
    if !group_gone_within(
        group,
        Duration::from_millis(500),
        Duration::from_millis(500),
    )
    .await
    {
        tracing::warn!(
            pgid = group.as_raw(),
            "the mcp server's process group was killed but not yet reaped"
        );
    }
}

/// Makes this process the reaper of the orphans its descendants leave (Linux
/// `PR_SET_CHILD_SUBREAPER`, prctl(2)): a process the server starts in a session or group of
/// its own (`setsid`, a daemon's double fork) escapes the group [`end_group`] ends, but comes
/// back to the proxy as a child when its parent exits, for [`end_orphans`] to end at exit
/// ([`reap_orphans`] reaps those that exit before). A failure is logged (the group still ends).
pub fn adopt_orphans() {
    // Children this process already has were inherited across `exec` (`sh -c 'sidecar &
    // exec mcp-audit-proxy …'`): not the servers', so never ended as orphans.
    let _ = INHERITED.set(children_of_me().into_iter().map(|(pid, _)| pid).collect());
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        tracing::warn!(error = %e, "cannot become the reaper of the mcp server's orphans (prctl PR_SET_CHILD_SUBREAPER); processes it starts in a session of their own may outlive the proxy");
    }
}

/// The servers this process started (their pids, each its group's id) and has not yet seen
/// end: the children that are not orphans.
fn servers() -> std::sync::MutexGuard<'static, std::collections::HashSet<i32>> {
    static SERVERS: std::sync::OnceLock<std::sync::Mutex<std::collections::HashSet<i32>>> =
        std::sync::OnceLock::new();
    SERVERS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// The children this process had when it began adopting orphans ([`adopt_orphans`]).
static INHERITED: std::sync::OnceLock<std::collections::HashSet<i32>> = std::sync::OnceLock::new();

/// This process's children that are not servers and were not inherited across `exec`
/// (orphans adopted by [`adopt_orphans`]), each with whether it has exited (a zombie).
fn orphans(servers: &std::collections::HashSet<i32>) -> Vec<(Pid, bool)> {
    let inherited = INHERITED.get();
    let warden = super::warden::pid();
    children_of_me()
        .into_iter()
        .filter(|(pid, _)| !servers.contains(pid) && !inherited.is_some_and(|i| i.contains(pid)))
        .filter(|(pid, _)| Some(*pid) != warden)
        .map(|(pid, exited)| (Pid::from_raw(pid), exited))
        .collect()
}

/// This process's children, read from `/proc` (the status' `PPid`), each with whether it has
/// exited (a zombie).
fn children_of_me() -> Vec<(i32, bool)> {
    let me = std::process::id().to_string();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|entry| {
        let name = entry.ok()?.file_name();
        let pid: i32 = name.to_str()?.parse().ok()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(str::trim)
        };
        (field("PPid:")? == me).then(|| {
            let exited = field("State:").is_some_and(|s| s.starts_with('Z'));
            (pid, exited)
        })
    })
    .collect()
}

/// Reaps the adopted orphans that have exited (the gateway, whose servers come and go,
/// calls it every second; without it they would stay zombies). Returns how many.
pub fn reap_orphans() -> usize {
    use nix::sys::wait::{WaitPidFlag, waitpid};
    let servers = servers();
    // The warden's own thread reaps it (and starts a new one).
    let warden = super::warden::pid();
    // Children inherited across `exec` are reaped too once they exit (never signalled).
    children_of_me()
        .into_iter()
        .filter(|(pid, exited)| *exited && !servers.contains(pid) && Some(*pid) != warden)
        .filter(|(pid, _)| waitpid(Pid::from_raw(*pid), Some(WaitPidFlag::WNOHANG)).is_ok())
        .count()
}

/// Ends the orphans adopted by [`adopt_orphans`] that still run, once the servers have exited
/// and their groups have ended (at exit): `grace` to finish, SIGTERM, `grace` again, then
/// SIGKILL, each reaped. Returns how many it found.
pub fn end_orphans(grace: Duration) -> usize {
    let children = || -> Vec<Pid> {
        orphans(&servers())
            .into_iter()
            .filter(|(_, exited)| !exited)
            .map(|(pid, _)| pid)
            .collect()
    };
    let left = |limit: Duration| {
        let deadline = std::time::Instant::now() + limit;
        loop {
            reap_orphans();
            let now = children();
            if now.is_empty() || std::time::Instant::now() >= deadline {
                return now;
            }
            std::thread::sleep(GROUP_POLL);
        }
    };
    let found = children();
    if found.is_empty() {
        return 0;
    }
    // After a termination signal the wrapper may be killed any moment: SIGTERM at once,
    // SIGKILL a second later.
    let hurried = signalled().is_cancelled();
    let grace = if hurried {
        grace.min(SIGNALLED_GRACE)
    } else {
        grace
    };
    let mut remaining = if hurried { children() } else { left(grace) };
    // SIGKILL again for what a killed orphan's own children became: orphans of ours too.
    for (signal, what) in [
        (Signal::SIGTERM, "sending SIGTERM"),
        (Signal::SIGKILL, "killing them"),
        (Signal::SIGKILL, "killing what they left"),
        (Signal::SIGKILL, "killing what they left"),
    ] {
        if remaining.is_empty() {
            break;
        }
        tracing::warn!(pids = ?remaining, "processes the mcp server started in a session of their own outlive it; {what}");
        for pid in &remaining {
            // An orphan that leads a group of its own (`setsid`) is signalled with its group.
            let leads = nix::unistd::getpgid(Some(*pid)).is_ok_and(|g| g == *pid);
            let _ = if leads {
                killpg(*pid, signal)
            } else {
                nix::sys::signal::kill(*pid, signal)
            };
        }
        remaining = left(grace.max(Duration::from_millis(500)));
    }
    if !remaining.is_empty() {
        tracing::warn!(pids = ?remaining, "processes the mcp server started were killed but not yet reaped");
    }
    found.len()
}

pub(crate) fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(sig)) => format!("was killed by signal {sig}"),
        _ => "ended".to_string(),
    }
}

/// The server's exit code, or 128 + signal number as a shell reports it.
pub fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;
    use std::os::unix::process::CommandExt;

    fn running(pid: i32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
    }

    #[test]
    fn dropping_the_guard_kills_the_whole_group() {
        let mut sh = std::process::Command::new("sh")
            .args(["-c", "sleep 600 & echo $!; wait"])
            .stdout(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(sh.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let sleep: i32 = line.trim().parse().unwrap();
        assert!(running(sleep));
        drop(GroupGuard(Some(Pid::from_raw(sh.id() as i32))));
        assert_eq!(sh.wait().unwrap().signal(), Some(9));
        let started = Instant::now();
        while running(sleep) {
            assert!(started.elapsed() < Duration::from_secs(5), "sleep survived");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn a_disarmed_guard_signals_nothing() {
        let mut sh = std::process::Command::new("sleep")
            .arg("600")
            .process_group(0)
            .spawn()
            .unwrap();
        let mut guard = GroupGuard(Some(Pid::from_raw(sh.id() as i32)));
        guard.disarm();
        drop(guard);
        std::thread::sleep(Duration::from_millis(50));
        assert!(sh.try_wait().unwrap().is_none());
        sh.kill().unwrap();
        sh.wait().unwrap();
    }
}
