//! The audit writer: one thread owns this process's journal and appends events in batches with
//! one `fdatasync` per batch (group commit); a second thread feeds the sled index behind it
//! from every journal of the store while this process holds the index, and takes the index
//! over when its holder (another process) stops.
//!
//! The writer also keeps the journal's hash chain and checkpoints: [`Journal::prepare`] makes
//! each event's payload (its JSON, or with `audit.encrypt_personal_data` its personal fields
//! sealed under its user's key straight from the event, with no JSON parsed back), and
//! [`Journal::append_prepared`] seals each payload into the next chained record (canonical
//! JSON, `seq`, `previous_hash`: one parse, one canonical serialization and one SHA-256 per
//! event, here, off the message's path). An event whose user's key file is damaged fails
//! alone (its call answered as `audit.on_store_failure` says, no outage: one user's key must
//! not stop everyone's calls); a key that cannot be made fails the batch as a write does.
//! After a sync the writer signs a checkpoint of the durable head every
//! `audit.checkpoint_every_events` events or `audit.checkpoint_interval_ms`, after answering
//! that batch's waiters, and a final one when it stops ([`crate::store::checkpoint`]).
//!
//! The pipeline never touches the disk: it hands a copy of the event to [`AuditSink::record`]
//! and, in `sync` mode, awaits the returned [`Ack`] before letting the message move on. The
//! writer thread bounds it (`audit.max_stored_argument_bytes`) and serializes it: for a call
//! with 64 KiB of arguments that is tens of microseconds the message's path no longer waits
//! for in `batched` mode (a copy of the event costs a few).
//! Nothing is dropped silently: a full queue or a failed write is an error the caller sees.
//!
//! # When the store cannot take events
//!
//! A failed append or `fdatasync` (a full disk, an I/O error, a folder made read-only) or a
//! store past `audit.max_store_bytes` starts an *outage*. What was appended since the last
//! good sync is cut off the journal and the chain put back ([`Journal::roll_back`]; the next
//! record starts a new segment, so that no index holder reads it from a stale position): those
//! events were never durable, so they are counted as lost, never as recorded. An index holder
//! that read a cut record in the moment before the cut keeps an entry for it, which a query
//! reports as unreadable (`reindex` drops it). During the
//! outage, `audit.on_store_failure` decides: `block` refuses every event at
//! [`AuditSink::record`] (the pipeline answers the call with an error and never forwards it;
//! in `sync` mode the batch that failed is answered with the error too, so its calls are
//! refused: durable-before-forwarding holds), `allow` accepts them without writing (the call
//! goes on) and counts them. Every [`RETRY`] the writer tries again by writing the outage's own
//! record, a `configuration_change` event (`action: "audit/store_outage"`, `metadata.audit_gap`:
//! from, until, events lost and refused, the cause), synced: once that works, the outage is
//! over and events flow again, with no restart. The log says when an outage starts, every
//! [`NAG`] while it lasts, and when it ends; `/metrics` shows it ([`StoreFigures`]).
//!
//! # The size budget
//!
//! The store's size is a running total: a walk of the store folder every [`WALK_EVERY`] by a
//! thread of its own (other processes write too), plus the bytes this writer appended since
//! that walk (so that the writer never stats the folder per event). Past 80% of
//! `audit.max_store_bytes` the writer adds an `audit/store_budget` event to the batch and logs a
//! warning, once per crossing (it warns again after the store has gone below 75%); a batch that
//! would take it past 100% starts an outage, which ends when a walk finds it below again.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender, SyncSender};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::oneshot;

use super::event::{
    AuditEvent, AuditGap, EventId, EventIds, EventType, Metadata, Outcome, RiskLevel, StoreUsage,
};
use crate::config::{Durability, OnStoreFailure};
use crate::error::Side;
use crate::store::chain::Head;
use crate::store::journal::Prepared;
use crate::store::{IndexKeeper, Journal};

/// Events per batch at most; more wait for the next batch.
const MAX_BATCH_EVENTS: usize = 4096;
/// Bytes per batch at most (a batch is written with one `write`).
const MAX_BATCH_BYTES: usize = 16 << 20;
/// In `batched` mode, how long the writer lets events gather after a write: nobody waits for
/// them, and not being woken for every event leaves the CPU to the proxy and the server.
const BATCHED_GATHER: Duration = Duration::from_millis(1);
/// How long the indexer lets records gather after being told of new ones: queries may lag
/// this much, and sled gets fewer, larger batches.
const INDEX_GATHER: Duration = Duration::from_millis(20);
/// The indexer also looks at the journals this often without being told (other processes'
/// journals are caught up at this pace), and tries this often to take the index when another
/// process holds it.
const INDEX_POLL: Duration = Duration::from_secs(1);
/// The pause between index rounds while the index is behind: a query waiting on the shared
/// holder takes it then.
const INDEX_BREATHER: Duration = Duration::from_millis(2);
/// At shutdown, how long the indexer goes on catching up before letting the index go.
const INDEX_LAST_ROUNDS: Duration = Duration::from_secs(2);
/// What a record adds to its event's JSON, about (length and CRC, `seq`, `previous_hash`): for
/// the running total of the store's size between walks.
const RECORD_OVERHEAD: u64 = 128;
/// During an outage, how often the writer tries the store again.
pub const RETRY: Duration = Duration::from_secs(1);
/// During an outage, how often the log says it still lasts.
pub const NAG: Duration = Duration::from_secs(10);
/// How often the store folder is walked for its size (the writer's own appends are added in
/// between); during a budget outage, every [`RETRY`].
pub const WALK_EVERY: Duration = Duration::from_secs(5);
/// The share of `audit.max_store_bytes` past which the writer warns, in percent…
const WARN_AT_PERCENT: u64 = 80;
/// …and below which it warns again at the next crossing.
const REARM_BELOW_PERCENT: u64 = 75;

/// Why an event could not be recorded; the call it belongs to is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditError {
    /// More events are waiting than `audit.queue_capacity` allows.
    #[error("audit queue full ({capacity} events waiting); the disk cannot keep up")]
    QueueFull {
        /// The configured capacity.
        capacity: usize,
    },
    /// The store cannot take events now (`audit.on_store_failure = "block"`); the writer tries
    /// again every second and events are accepted again once it can write.
    #[error("audit store unavailable: {reason}")]
    Unavailable {
        /// The first failure.
        reason: String,
    },
    /// The writer has shut down.
    #[error("audit writer closed")]
    Closed,
}

/// Counters of the writer, for its log line at shutdown.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Events appended to the journal.
    pub written: AtomicU64,
    /// Batches written (each one `write`).
    pub batches: AtomicU64,
    /// `fdatasync` calls.
    pub syncs: AtomicU64,
    /// Events refused because the queue was full.
    pub queue_full: AtomicU64,
    /// Events refused because the store could not take them (`block`), or after shutdown.
    pub refused: AtomicU64,
    /// Events not stored: accepted during an outage (`allow`), or cut off with a failed
    /// write or sync.
    pub lost: AtomicU64,
    /// Outages started.
    pub outages: AtomicU64,
    /// Budget warnings (80% of `audit.max_store_bytes` crossed).
    pub budget_warnings: AtomicU64,
    /// How long each `fdatasync` took.
    pub sync_times: SyncTimes,
}

/// Upper bounds of the [`SyncTimes`] buckets, in microseconds: 50 µs doubling to about 1.6 s
/// (an SSD's `fdatasync` is tens of µs to a few ms; a loaded or networked disk, far more).
const SYNC_BUCKETS_US: [u64; 16] = {
    let mut b = [0u64; 16];
    let mut i = 0;
    while i < 16 {
        b[i] = 50 << i;
        i += 1;
    }
    b
};

/// The durations of the journal's `fdatasync` calls as a histogram (fixed buckets, lock-free),
/// because in `sync` mode every audited call waits for one: a slow disk shows here first. Read
/// by the gateway's `/metrics` (`mcp_gateway_journal_sync_seconds`).
#[derive(Debug, Default)]
pub struct SyncTimes {
    /// Counts per bucket of [`SYNC_BUCKETS_US`] (not cumulative), then the overflow bucket.
    counts: [AtomicU64; 17],
    /// Sum of all durations, in nanoseconds.
    sum_ns: AtomicU64,
}

/// A [`SyncTimes`] read at one moment, in the shape `prometheus-client` encodes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncHistogram {
    /// Sum of the durations, in seconds.
    pub sum_seconds: f64,
    /// Number of syncs.
    pub count: u64,
    /// `(upper bound in seconds, syncs in this bucket)`: counts per bucket, not cumulative (the
    /// encoder sums them into Prometheus's cumulative `le` buckets); the last bound is
    /// `f64::MAX`, which the encoder writes as `+Inf`.
    pub buckets: Vec<(f64, u64)>,
}

impl SyncTimes {
    /// Counts one sync that took `took`.
    pub fn observe(&self, took: Duration) {
        let us = took.as_micros();
        let i = SYNC_BUCKETS_US
            .iter()
            .position(|&b| us <= b as u128)
            .unwrap_or(SYNC_BUCKETS_US.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(
            took.as_nanos().min(u64::MAX as u128) as u64,
            Ordering::Relaxed,
        );
    }

    /// The histogram as it stands.
    pub fn snapshot(&self) -> SyncHistogram {
        let mut total = 0;
        let mut buckets = Vec::with_capacity(self.counts.len());
        for (i, c) in self.counts.iter().enumerate() {
            let n = c.load(Ordering::Relaxed);
            total += n;
            let bound = SYNC_BUCKETS_US
                .get(i)
                .map_or(f64::MAX, |&us| us as f64 / 1e6);
            buckets.push((bound, n));
        }
        SyncHistogram {
            sum_seconds: self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
            count: total,
            buckets,
        }
    }
}

struct Shared {
    /// Set once the writer has stopped: every later event is refused.
    failed: OnceLock<String>,
    stats: WriterStats,
    capacity: usize,
    /// Events queued and not yet taken by the writer.
    queued: AtomicUsize,
    sync: bool,
    /// `audit.on_store_failure`.
    on_failure: OnStoreFailure,
    /// Whether an outage is on (read on every event; `outage` holds its details).
    down: AtomicBool,
    outage: Mutex<Option<Outage>>,
    /// Bytes of the store at the last walk of its folder.
    walked_bytes: AtomicU64,
    /// Bytes this writer appended since that walk.
    appended_bytes: AtomicU64,
    /// `audit.max_store_bytes`.
    max_bytes: Option<u64>,
    /// The alert stage's queue, once it runs ([`AuditSink::set_alert_tap`]).
    tap: OnceLock<AlertTap>,
    /// Whether the journal was ever rolled back (a failed write or sync): its end then moved
    /// back under positions the index may have read.
    rolled_back: AtomicBool,
    /// Set at the end when every record is durable under the final checkpoint and nothing
    /// was ever rolled back: the indexer may then mark this journal finished
    /// ([`IndexKeeper::finish_own`]), so that a cut of its tail is seen as a deletion.
    stopped_cleanly: AtomicBool,
}

/// The writer's end of the alert stage's queue ([`crate::alerts`]): each tool event is offered
/// once it is durable, with `try_send`; what does not fit is counted in `stats.dropped`.
#[derive(Debug)]
pub struct AlertTap {
    /// The bounded queue (`alerts.queue_capacity`).
    pub tx: SyncSender<crate::alerts::Input>,
    /// The stage's counters.
    pub stats: Arc<crate::alerts::AlertStats>,
}

impl AlertTap {
    fn offer(&self, observed: crate::alerts::Observed) {
        match self.tx.try_send(crate::alerts::Input::Event(observed)) {
            Ok(()) => {}
            Err(mpsc::TrySendError::Full(_)) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
            // The stage has stopped (shutdown): nothing left to alert.
            Err(mpsc::TrySendError::Disconnected(_)) => {}
        }
    }
}

impl Shared {
    /// The store's size as best known now: the last walk plus this writer's appends since.
    fn store_bytes(&self) -> u64 {
        self.walked_bytes
            .load(Ordering::Relaxed)
            .saturating_add(self.appended_bytes.load(Ordering::Relaxed))
    }

    fn outage(&self) -> std::sync::MutexGuard<'_, Option<Outage>> {
        self.outage.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// An outage of the store (see the module docs).
#[derive(Debug, Clone)]
struct Outage {
    since: SystemTime,
    started: Instant,
    /// The first failure, on one line.
    cause: String,
    /// Whether it is the budget (then only a smaller store ends it).
    budget: bool,
    lost: u64,
    refused: u64,
}

/// The writer's health as `/metrics` shows it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreFigures {
    /// The store's size in bytes (see [`WALK_EVERY`]).
    pub bytes: u64,
    /// `audit.max_store_bytes`, if set.
    pub max_bytes: Option<u64>,
    /// Whether the store takes events now.
    pub available: bool,
    /// Events not stored since start (see [`WriterStats::lost`]).
    pub lost: u64,
    /// Events refused since start (see [`WriterStats::refused`]).
    pub refused: u64,
    /// Outages since start.
    pub outages: u64,
    /// Budget warnings since start.
    pub budget_warnings: u64,
}

/// How the writer guards the store: its budget, what a failure does, and whom its own events
/// (`audit/store_budget`, `audit/store_outage`) name.
#[derive(Debug, Clone)]
pub struct StoreGuard {
    /// The store folder (walked for its size).
    pub root: PathBuf,
    /// `audit.max_store_bytes`.
    pub max_bytes: Option<u64>,
    /// `audit.on_store_failure`.
    pub on_failure: OnStoreFailure,
    /// `user_id` of the writer's own events: the identity the proxy runs as.
    pub user_id: String,
    /// `upstream` of the writer's own events: the stdio wrapper's upstream, `*` for the gateway.
    pub upstream: String,
}

impl StoreGuard {
    /// No budget, `block`, events naming the OS user and no upstream: for tests and benches.
    pub fn for_journal(journal: &Journal) -> StoreGuard {
        let root = journal
            .dir()
            .parent()
            .and_then(|j| j.parent())
            .map(PathBuf::from)
            .unwrap_or_default();
        StoreGuard {
            root,
            max_bytes: None,
            on_failure: OnStoreFailure::Block,
            user_id: "mcp-audit-proxy".into(),
            upstream: "*".into(),
        }
    }
}

struct Submission {
    /// The event as the pipeline made it; bounded and serialized by the writer thread.
    event: Box<AuditEvent>,
    /// `audit.max_stored_argument_bytes` of the sink it came through.
    max_stored: usize,
    ack: Option<oneshot::Sender<Result<(), AuditError>>>,
}

enum Msg {
    Event(Submission),
    /// Sync what was written, offer it to the alert stage, then answer.
    Flush(oneshot::Sender<()>),
    /// Answer once everything submitted before is durable ([`AuditSink::barrier`]).
    Barrier(oneshot::Sender<Result<(), AuditError>>),
    Shutdown(oneshot::Sender<()>),
}

/// Resolves when the event is durable (`sync` mode) or at once (`batched` mode).
#[derive(Debug)]
pub struct Ack(Option<oneshot::Receiver<Result<(), AuditError>>>);

impl Ack {
    /// An ack that is already complete.
    pub fn done() -> Ack {
        Ack(None)
    }

    /// Whether waiting on it can take time.
    pub fn is_pending(&self) -> bool {
        self.0.is_some()
    }

    /// Waits until the event is durable.
    pub async fn wait(self) -> Result<(), AuditError> {
        match self.0 {
            None => Ok(()),
            Some(rx) => rx.await.unwrap_or(Err(AuditError::Closed)),
        }
    }
}

/// The pipeline's handle to the writer; cheap to clone.
#[derive(Clone)]
pub struct AuditSink {
    tx: Sender<Msg>,
    shared: Arc<Shared>,
    /// `audit.max_stored_argument_bytes`: what an event may store of arguments and of each
    /// error text (see [`super::bound`]).
    max_stored: usize,
}

impl std::fmt::Debug for AuditSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditSink").finish_non_exhaustive()
    }
}

impl AuditSink {
    /// Queues the access event of a new call; refused when `audit.queue_capacity` events are
    /// already waiting (refusing a call that has not started is always safe).
    pub fn admit(&self, event: &AuditEvent) -> Result<Ack, AuditError> {
        self.admit_owned(Box::new(event.clone()))
    }

    /// [`Self::admit`] of an event the caller no longer needs: moved to the writer thread
    /// instead of copied (a copy and a free of every string of the event, per call, on the
    /// message path).
    pub fn admit_owned(&self, event: Box<AuditEvent>) -> Result<Ack, AuditError> {
        if self.shared.queued.load(Ordering::Relaxed) >= self.shared.capacity {
            self.shared.stats.queue_full.fetch_add(1, Ordering::Relaxed);
            return Err(AuditError::QueueFull {
                capacity: self.shared.capacity,
            });
        }
        self.record_owned(event)
    }

    /// Queues any other event (the end of a call, whatever the queue's length: that call has
    /// run, and its end must not be lost); in `sync` mode the [`Ack`] resolves once durable.
    /// During an outage: refused with `block`, accepted unwritten (and counted) with `allow`.
    pub fn record(&self, event: &AuditEvent) -> Result<Ack, AuditError> {
        self.record_owned(Box::new(event.clone()))
    }

    /// [`Self::record`] of an event the caller no longer needs (see [`Self::admit_owned`]).
    pub fn record_owned(&self, event: Box<AuditEvent>) -> Result<Ack, AuditError> {
        if let Some(reason) = self.shared.failed.get() {
            self.shared.stats.refused.fetch_add(1, Ordering::Relaxed);
            return Err(AuditError::Unavailable {
                reason: reason.clone(),
            });
        }
        if self.shared.down.load(Ordering::Acquire)
            && let Some(answer) = self.during_outage()
        {
            return answer;
        }
        let (ack_tx, ack) = if self.shared.sync {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Ack(Some(rx)))
        } else {
            (None, Ack::done())
        };
        self.shared.queued.fetch_add(1, Ordering::Relaxed);
        self.tx
            .send(Msg::Event(Submission {
                event,
                max_stored: self.max_stored,
                ack: ack_tx,
            }))
            .map_err(|_| {
                self.shared.queued.fetch_sub(1, Ordering::Relaxed);
                AuditError::Closed
            })?;
        Ok(ack)
    }

    /// What an event gets while the store is failing, `None` if the outage just ended.
    fn during_outage(&self) -> Option<Result<Ack, AuditError>> {
        let mut outage = self.shared.outage();
        let o = outage.as_mut()?;
        let stats = &self.shared.stats;
        Some(match self.shared.on_failure {
            OnStoreFailure::Block => {
                o.refused += 1;
                stats.refused.fetch_add(1, Ordering::Relaxed);
                Err(AuditError::Unavailable {
                    reason: o.cause.clone(),
                })
            }
            OnStoreFailure::Allow => {
                o.lost += 1;
                stats.lost.fetch_add(1, Ordering::Relaxed);
                Ok(Ack::done())
            }
        })
    }

    /// `what` failed, with the store's outage cause when one is on (for the answer to a call
    /// whose event could not be made durable: the client learns why, not only that).
    pub fn why(&self, what: &str) -> String {
        match self.shared.outage().as_ref() {
            Some(o) => format!("{what}: audit store unavailable: {}", o.cause),
            None => what.to_string(),
        }
    }

    /// The store's size, budget and health (metrics).
    pub fn store_figures(&self) -> StoreFigures {
        let (s, stats) = (&self.shared, &self.shared.stats);
        StoreFigures {
            bytes: s.store_bytes(),
            max_bytes: s.max_bytes,
            available: !s.down.load(Ordering::Relaxed),
            lost: stats.lost.load(Ordering::Relaxed),
            refused: stats.refused.load(Ordering::Relaxed),
            outages: stats.outages.load(Ordering::Relaxed),
            budget_warnings: stats.budget_warnings.load(Ordering::Relaxed),
        }
    }

    /// Events waiting for the writer, events written and syncs made since start (metrics).
    pub fn figures(&self) -> (usize, u64, u64) {
        (
            self.shared.queued.load(Ordering::Relaxed),
            self.shared.stats.written.load(Ordering::Relaxed),
            self.shared.stats.syncs.load(Ordering::Relaxed),
        )
    }

    /// Caps what each event stores of arguments and error texts at `bytes`
    /// (`audit.max_stored_argument_bytes`; unset: no cap).
    pub fn with_max_stored(mut self, bytes: usize) -> AuditSink {
        self.max_stored = bytes;
        self
    }

    /// The journal's `fdatasync` durations so far (metrics).
    pub fn sync_times(&self) -> SyncHistogram {
        self.shared.stats.sync_times.snapshot()
    }

    /// Feeds the alert stage from this writer: each tool event, once durable, is offered to
    /// `tap` (at most one tap; a second is ignored).
    pub fn set_alert_tap(&self, tap: AlertTap) {
        let _ = self.shared.tap.set(tap);
    }

    /// The alert stage's counters, when it runs (metrics).
    pub fn alert_stats(&self) -> Option<Arc<crate::alerts::AlertStats>> {
        self.shared.tap.get().map(|t| t.stats.clone())
    }

    /// Waits until everything queued so far is written and synced, and offered to the alert
    /// stage (before closing it at shutdown).
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// [`AuditSink::flush`] for a thread outside the runtime: true once what was submitted
    /// before is written and synced; false if the writer stopped first (what was queued
    /// behind its shutdown was never written).
    pub fn flush_blocking(&self) -> bool {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Msg::Flush(tx)).is_ok() && rx.blocking_recv().is_ok()
    }

    /// An ack that resolves once every event submitted before it is durable (`sync` mode; at
    /// once in `batched` mode), for an answer that names events it did not wait for itself:
    /// a refusal or a block tells the client "quote event X", and X must be in the trail by
    /// then (a test saw `events` empty right after a block's answer, under load).
    pub fn barrier(&self) -> Ack {
        // During an outage events are refused before they reach the writer: nothing to wait
        // for (and messages would keep the writer from its retries).
        if !self.shared.sync || self.shared.down.load(Ordering::Acquire) {
            return Ack::done();
        }
        let (tx, rx) = oneshot::channel();
        match self.tx.send(Msg::Barrier(tx)) {
            Ok(()) => Ack(Some(rx)),
            Err(_) => Ack::done(),
        }
    }

    /// Writes and syncs everything queued so far, then stops the writer and the indexer.
    pub async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Shutdown(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

/// Whether a failure to prepare an event is its user's alone (their key file is damaged),
/// not the store's (a key that cannot be written: a full disk, an unwritable folder).
fn one_users_key(e: &crate::store::StoreError) -> bool {
    matches!(
        e,
        crate::store::StoreError::Personal(
            crate::store::personal::PersonalError::BadKeyFile { .. }
        )
    )
}

/// The stored payload of an event: bounded to `max_stored` ([`super::bound`]), then
/// prepared by the journal ([`Journal::prepare`]: its JSON, into a buffer sized up front, or
/// its personal fields sealed straight from the event).
fn encode(
    event: Box<AuditEvent>,
    max_stored: usize,
    journal: &mut Journal,
) -> Result<Prepared, crate::store::StoreError> {
    let event = match super::bound::bound(&event, max_stored) {
        Some(bounded) => bounded,
        None => *event,
    };
    let hint = encoded_size_hint(&event);
    journal.prepare(event, hint)
}

/// Bytes an event's JSON is likely to take: the fixed fields (a few hundred bytes), reasons
/// and texts, and the stored arguments and inputResponses.
fn encoded_size_hint(event: &AuditEvent) -> usize {
    let m = &event.metadata;
    let texts: usize = m
        .risk_reasons
        .iter()
        .chain(&m.error_messages)
        .chain(&m.reason)
        .map(|t| t.len() + 4)
        .sum();
    let raw =
        |r: &Option<Box<serde_json::value::RawValue>>| r.as_ref().map_or(0, |a| a.get().len());
    1024 + texts + raw(&m.arguments) + raw(&m.input_responses)
}

/// The writer, indexer and size threads; join them after [`AuditSink::close`].
#[derive(Debug)]
pub struct WriterThreads {
    writer: JoinHandle<()>,
    indexer: JoinHandle<()>,
    sizer: JoinHandle<()>,
}

impl WriterThreads {
    /// Waits for the threads to finish.
    pub fn join(self) {
        let _ = self.writer.join();
        let _ = self.indexer.join();
        let _ = self.sizer.join();
    }
}

/// Starts the writer (owning the journal) and the indexer (holding the index when it can),
/// with unsigned checkpoints at the default pace (see [`start_with`]).
pub fn start(
    journal: Journal,
    keeper: IndexKeeper,
    durability: Durability,
    flush_interval: Duration,
    capacity: usize,
) -> std::io::Result<(AuditSink, WriterThreads)> {
    let plan = CheckpointPlan::new(&journal, None, 1000, Duration::from_secs(10));
    start_with(journal, keeper, durability, flush_interval, capacity, plan)
}

/// Starts the writer and the indexer, the writer checkpointing its journal as `plan` says;
/// no size budget, and `block` when the store fails (see [`start_guarded`]).
pub fn start_with(
    journal: Journal,
    keeper: IndexKeeper,
    durability: Durability,
    flush_interval: Duration,
    capacity: usize,
    plan: CheckpointPlan,
) -> std::io::Result<(AuditSink, WriterThreads)> {
    let guard = StoreGuard::for_journal(&journal);
    start_guarded(
        journal,
        keeper,
        durability,
        flush_interval,
        capacity,
        plan,
        guard,
    )
}

/// Starts the writer, the indexer and the size walker: the writer checkpoints its journal as
/// `plan` says and guards the store as `guard` says (budget, `on_store_failure`).
pub fn start_guarded(
    journal: Journal,
    mut keeper: IndexKeeper,
    durability: Durability,
    flush_interval: Duration,
    capacity: usize,
    plan: CheckpointPlan,
    guard: StoreGuard,
) -> std::io::Result<(AuditSink, WriterThreads)> {
    // The keys of the records written, for the indexer not to read them back.
    let handoff = Arc::new(crate::store::handoff::HandOff::new(
        crate::store::handoff::CAPACITY,
    ));
    keeper.hand_off(handoff.clone());
    // Unbounded: the capacity is enforced on access events only (see `admit`).
    let (tx, rx) = mpsc::channel();
    // A doorbell: the indexer takes the writer's durable records from the hand-off (or reads
    // the journal), so it never holds the writer back; a missed ring only delays the index.
    let (index_tx, index_rx) = mpsc::sync_channel::<()>(1);
    let shared = Arc::new(Shared {
        failed: OnceLock::new(),
        stats: WriterStats::default(),
        capacity,
        queued: AtomicUsize::new(0),
        sync: durability == Durability::Sync,
        on_failure: guard.on_failure,
        down: AtomicBool::new(false),
        outage: Mutex::new(None),
        walked_bytes: AtomicU64::new(0),
        appended_bytes: AtomicU64::new(0),
        max_bytes: guard.max_bytes,
        tap: OnceLock::new(),
        rolled_back: AtomicBool::new(false),
        stopped_cleanly: AtomicBool::new(false),
    });
    // The first walk before any event: the budget holds from the first call on.
    walk(&guard.root, &shared);
    let (sizer_tx, sizer_rx) = mpsc::channel::<()>();
    let sizer_shared = shared.clone();
    let sizer_root = guard.root.clone();
    let sizer = std::thread::Builder::new()
        .name("audit-store-size".into())
        .spawn(move || run_sizer(&sizer_root, &sizer_shared, sizer_rx))?;
    let indexer = std::thread::Builder::new()
        .name("audit-indexer".into())
        .spawn({
            let shared = shared.clone();
            move || run_indexer(keeper, index_rx, &shared)
        })?;
    let writer_shared = shared.clone();
    let outbox = crate::store::handoff::Outbox::new(handoff, journal.end());
    let writer = std::thread::Builder::new()
        .name("audit-writer".into())
        .spawn(move || {
            Writer {
                journal,
                shared: writer_shared,
                durability,
                flush_interval,
                index_tx,
                outbox,
                plan,
                durable: None,
                checkpointed: None,
                uncovered_since: None,
                guard,
                ids: EventIds::default(),
                warned: false,
                pending_alerts: Vec::new(),
                batch_written: false,
                nagged: Instant::now(),
                walked: Instant::now(),
                _sizer: sizer_tx,
            }
            .run(rx)
        })?;
    let sink = AuditSink {
        tx,
        shared,
        max_stored: usize::MAX,
    };
    Ok((
        sink,
        WriterThreads {
            writer,
            indexer,
            sizer,
        },
    ))
}

/// Walks the store folder and makes its size the new base of the running total. The bytes
/// appended meanwhile may be counted twice until the next walk: the total errs on the full
/// side.
fn walk(root: &std::path::Path, shared: &Shared) {
    let appended = shared.appended_bytes.swap(0, Ordering::Relaxed);
    match crate::store::usage::measure(root) {
        Ok(usage) => shared.walked_bytes.store(usage.total(), Ordering::Relaxed),
        Err(e) => {
            // Keep the last known size (and what was appended since) rather than forget it.
            shared.appended_bytes.fetch_add(appended, Ordering::Relaxed);
            tracing::warn!(error = %e, "cannot measure the audit store");
        }
    }
}

/// Walks the store every [`WALK_EVERY`] until the writer stops (its end of the channel drops).
fn run_sizer(root: &std::path::Path, shared: &Shared, rx: mpsc::Receiver<()>) {
    loop {
        match rx.recv_timeout(WALK_EVERY) {
            Err(RecvTimeoutError::Timeout) | Ok(()) => walk(root, shared),
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

struct Writer {
    journal: Journal,
    shared: Arc<Shared>,
    durability: Durability,
    flush_interval: Duration,
    index_tx: SyncSender<()>,
    /// The index keys of what was appended, handed to the indexer once durable.
    outbox: crate::store::handoff::Outbox,
    plan: CheckpointPlan,
    /// The journal's head as of the last sync.
    durable: Option<Head>,
    /// The `seq` the last checkpoint covers.
    checkpointed: Option<u64>,
    /// Since when durable events have waited for a checkpoint.
    uncovered_since: Option<Instant>,
    /// The budget, what a failure does, whom the writer's own events name.
    guard: StoreGuard,
    /// Ids of the writer's own events.
    ids: EventIds,
    /// Whether the 80% warning was given for the current crossing.
    warned: bool,
    /// Tool events written and not yet synced, for the alert stage (offered once durable).
    pending_alerts: Vec<crate::alerts::Observed>,
    /// Whether the last batch given to `write_guarded` was written.
    batch_written: bool,
    /// When the log last said that an outage lasts.
    nagged: Instant,
    /// When the writer last walked the store itself (during a budget outage).
    walked: Instant,
    /// Dropped with the writer: stops the size walker.
    _sizer: Sender<()>,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Msg>) {
        let mut payloads: Vec<Prepared> = Vec::new();
        let mut acks: Vec<oneshot::Sender<Result<(), AuditError>>> = Vec::new();
        let mut unsynced = false;
        let mut last_sync = Instant::now();
        let mut shutdown: Option<oneshot::Sender<()>> = None;
        let mut flushes: Vec<oneshot::Sender<()>> = Vec::new();
        let mut barriers: Vec<oneshot::Sender<Result<(), AuditError>>> = Vec::new();
        let mut observed: Vec<crate::alerts::Observed> = Vec::new();
        let mut last_retry = Instant::now();
        loop {
            let first = if self.shared.down.load(Ordering::Relaxed) {
                // Retried every RETRY, whether messages come meanwhile or not.
                let wait = RETRY.saturating_sub(last_retry.elapsed());
                match rx.recv_timeout(wait) {
                    Ok(m) if last_retry.elapsed() < RETRY => Some(m),
                    Ok(m) => {
                        last_retry = Instant::now();
                        self.recover();
                        Some(m)
                    }
                    Err(RecvTimeoutError::Timeout) => {
                        last_retry = Instant::now();
                        self.recover();
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            } else if unsynced {
                let wait = self.flush_interval.saturating_sub(last_sync.elapsed());
                match rx.recv_timeout(wait) {
                    Ok(m) => Some(m),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            } else if let Some(due) = self.checkpoint_due_in() {
                match rx.recv_timeout(due) {
                    Ok(m) => Some(m),
                    Err(RecvTimeoutError::Timeout) => {
                        self.maybe_checkpoint();
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            } else {
                match rx.recv() {
                    Ok(m) => Some(m),
                    Err(_) => break,
                }
            };
            let mut bytes = 0;
            let mut next = first;
            let mut unprepared = 0u64;
            let mut prepare_failure = None;
            self.journal.begin_batch();
            while let Some(msg) = next.take() {
                match msg {
                    Msg::Event(s) => {
                        self.shared.queued.fetch_sub(1, Ordering::Relaxed);
                        let seen = match self.shared.tap.get() {
                            Some(_) => crate::alerts::Observed::of(&s.event),
                            None => None,
                        };
                        let id = s.event.event_id;
                        match encode(s.event, s.max_stored, &mut self.journal) {
                            Ok(payload) => {
                                bytes += payload.len();
                                payloads.push(payload);
                                acks.extend(s.ack);
                                observed.extend(seen);
                            }
                            Err(e) if one_users_key(&e) => self.unprepared(id, e, s.ack),
                            // The store itself fails (a key cannot be made: a full disk,
                            // the keys folder unwritable): the batch fails as a write would.
                            Err(e) => {
                                acks.extend(s.ack);
                                unprepared += 1;
                                prepare_failure.get_or_insert(e);
                            }
                        }
                    }
                    Msg::Flush(tx) => {
                        flushes.push(tx);
                        break;
                    }
                    Msg::Barrier(tx) => {
                        barriers.push(tx);
                        break;
                    }
                    Msg::Shutdown(tx) => {
                        shutdown = Some(tx);
                        break;
                    }
                }
                if payloads.len() < MAX_BATCH_EVENTS && bytes < MAX_BATCH_BYTES {
                    next = rx.try_recv().ok();
                }
            }
            if !payloads.is_empty() || prepare_failure.is_some() {
                let answer =
                    self.write_guarded(&mut payloads, bytes, prepare_failure.take(), unprepared);
                if answer.is_ok() {
                    unsynced = self.durability == Durability::Batched;
                    let _ = self.index_tx.try_send(());
                }
                if self.batch_written {
                    self.pending_alerts.append(&mut observed);
                    if self.durability == Durability::Sync {
                        // Durable now: offered before the waiters hear so.
                        self.offer_alerts();
                    }
                } else {
                    observed.clear();
                }
                payloads.clear();
                for ack in acks.drain(..) {
                    let _ = ack.send(answer.clone());
                }
                self.maybe_checkpoint();
            }
            if unsynced
                && (last_sync.elapsed() >= self.flush_interval
                    || shutdown.is_some()
                    || !flushes.is_empty())
            {
                if let Err(e) = self.sync() {
                    tracing::error!(error = %e, "audit journal sync failed");
                    self.fail(e, 0, true);
                }
                unsynced = false;
                last_sync = Instant::now();
                self.maybe_checkpoint();
            }
            for tx in flushes.drain(..) {
                let _ = tx.send(());
            }
            // Sync mode: what came before is written and synced (or failed, and said so to
            // its own waiters).
            for tx in barriers.drain(..) {
                let _ = tx.send(Ok(()));
            }
            if shutdown.is_some() {
                break;
            }
            if unsynced {
                std::thread::sleep(BATCHED_GATHER.min(self.flush_interval));
            }
        }
        if unsynced && let Err(e) = self.sync() {
            tracing::error!(error = %e, "audit journal sync failed");
            self.fail(e, 0, true);
        }
        if let Some(o) = self.shared.outage().as_ref() {
            tracing::error!(
                since = %humantime::format_rfc3339_seconds(o.since),
                seconds = o.started.elapsed().as_secs(),
                events_lost = o.lost,
                events_refused = o.refused,
                cause = %o.cause,
                "audit writer stopped while the audit store could not take events; this gap is in no audit event"
            );
        }
        // The final checkpoint: the writer stops here, nothing follows its head.
        match self.plan.writer.write(self.durable, true) {
            Ok(_) => {
                self.journal.close_span();
                let whole = self.shared.failed.get().is_none()
                    && self.shared.outage().is_none()
                    && !self.shared.rolled_back.load(Ordering::Acquire)
                    && self.durable == self.journal.head();
                self.shared.stopped_cleanly.store(whole, Ordering::Release);
            }
            Err(e) => tracing::error!(error = %e, "audit journal final checkpoint failed"),
        }
        let stats = &self.shared.stats;
        let (queue_full, refused) = (
            stats.queue_full.load(Ordering::Relaxed),
            stats.refused.load(Ordering::Relaxed),
        );
        if queue_full + refused > 0 {
            tracing::warn!(
                queue_full,
                refused,
                "audit writer stopped; some calls were refused because their events could not be queued or written"
            );
        }
        tracing::debug!(
            written = stats.written.load(Ordering::Relaxed),
            batches = stats.batches.load(Ordering::Relaxed),
            syncs = stats.syncs.load(Ordering::Relaxed),
            "audit writer stopped"
        );
        // Refuse whatever arrives after shutdown instead of leaving it unanswered.
        let _ = self
            .shared
            .failed
            .set("the audit writer has shut down".into());
        drop(self.index_tx);
        drop(rx);
        if let Some(tx) = shutdown {
            let _ = tx.send(());
        }
    }

    /// Writes a batch of `bytes` unless the store is failing or the batch would take it past
    /// its budget, adding the 80% warning to it when this batch crosses that line. A failure
    /// starts an outage; the batch's answer then follows `on_store_failure`: `block` answers
    /// the error (its calls are refused), `allow` answers as if written (they go on) and counts
    /// the events as lost.
    fn write_guarded(
        &mut self,
        payloads: &mut Vec<Prepared>,
        bytes: usize,
        prepare_failure: Option<crate::store::StoreError>,
        unprepared: u64,
    ) -> Result<(), AuditError> {
        let events = payloads.len() as u64 + unprepared;
        self.batch_written = false;
        let outcome = if self.shared.down.load(Ordering::Relaxed) && !self.recover() {
            Err(None)
        } else if let Some(cause) = self.over_budget(bytes as u64) {
            self.start_outage(cause, true);
            Err(None)
        } else if let Some(e) = prepare_failure {
            Err(Some((e, false)))
        } else {
            if let Some(warning) = self.budget_warning(bytes as u64) {
                payloads.insert(0, warning);
            }
            self.write(payloads).map_err(Some)
        };
        let Err(failure) = outcome else {
            self.batch_written = true;
            return Ok(());
        };
        if let Some((e, appended)) = failure {
            self.fail(e, events, appended);
        } else {
            self.count_unstored(events);
        }
        let cause = self.shared.outage().as_ref().map(|o| o.cause.clone());
        match self.shared.on_failure {
            OnStoreFailure::Allow => Ok(()),
            OnStoreFailure::Block => Err(AuditError::Unavailable {
                reason: cause.unwrap_or_else(|| "the audit store failed".into()),
            }),
        }
    }

    /// An event whose payload could not be prepared because its user's key file is damaged
    /// ([`one_users_key`]): that event alone is not written, and its call is answered as
    /// `audit.on_store_failure` says (`block`: refused; `allow`: it goes on, the event counted
    /// lost). The batch and everyone else's calls go on, with no outage: one user's damaged
    /// key must not stop the proxy for all.
    fn unprepared(
        &self,
        id: EventId,
        e: crate::store::StoreError,
        ack: Option<oneshot::Sender<Result<(), AuditError>>>,
    ) {
        let stats = &self.shared.stats;
        // The answer may reach the client and the trail: a key file's name is a hash of the
        // user's name (see `fail`), so it stays in the log.
        let reason = match &e {
            crate::store::StoreError::Personal(_) => format!(
                "audit event {id} could not be sealed: its user's key in the store's keys/ folder could not be made or read (the proxy's log names the file)"
            ),
            _ => format!("audit event {id} could not be prepared for the journal: {e}"),
        };
        tracing::error!(error = %e, event_id = %id, on_store_failure = self.shared.on_failure.as_str(), "audit event not written");
        let answer = if self.shared.on_failure == OnStoreFailure::Allow || ack.is_none() {
            stats.lost.fetch_add(1, Ordering::Relaxed);
            Ok(())
        } else {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            Err(AuditError::Unavailable { reason })
        };
        if let Some(ack) = ack {
            let _ = ack.send(answer);
        }
    }

    /// Counts events of a batch that were not written during an outage: refused (`block`)
    /// or lost (`allow`, and in `batched` mode, where their calls did not wait).
    fn count_unstored(&self, events: u64) {
        let lost = self.shared.on_failure == OnStoreFailure::Allow
            || self.durability == Durability::Batched;
        let stats = &self.shared.stats;
        if let Some(o) = self.shared.outage().as_mut() {
            if lost {
                o.lost += events;
            } else {
                o.refused += events;
            }
        }
        if lost {
            stats.lost.fetch_add(events, Ordering::Relaxed);
        } else {
            stats.refused.fetch_add(events, Ordering::Relaxed);
        }
    }

    /// Why a batch of `bytes` may not be written, if the budget forbids it.
    fn over_budget(&self, bytes: u64) -> Option<String> {
        let max = self.shared.max_bytes?;
        let size = self.shared.store_bytes();
        (size.saturating_add(bytes) > max).then(|| {
            format!(
                "the audit store holds {size} bytes and audit.max_store_bytes is {max}; make room (retention, or move old journals away) or raise the budget"
            )
        })
    }

    /// The 80% warning event, when a batch of `bytes` crosses that line for the first time
    /// since the store was last below 75%.
    fn budget_warning(&mut self, bytes: u64) -> Option<Prepared> {
        let max = self.shared.max_bytes?;
        let size = self.shared.store_bytes().saturating_add(bytes);
        let percent = (u128::from(size) * 100 / u128::from(max.max(1))) as u64;
        if percent < REARM_BELOW_PERCENT {
            self.warned = false;
        }
        if self.warned || percent < WARN_AT_PERCENT {
            return None;
        }
        self.warned = true;
        self.shared
            .stats
            .budget_warnings
            .fetch_add(1, Ordering::Relaxed);
        let reason = format!(
            "the audit store is at {percent}% of audit.max_store_bytes ({size} of {max} bytes); at 100% audit.on_store_failure = \"{}\" applies",
            self.shared.on_failure.as_str()
        );
        tracing::warn!(
            bytes = size,
            max_bytes = max,
            percent,
            on_store_failure = self.shared.on_failure.as_str(),
            "audit store nearing its size budget"
        );
        let event = self.own_event(
            "audit/store_budget",
            Outcome::Success,
            RiskLevel::Medium,
            reason,
            None,
        );
        let id = event.event_id;
        match self.journal.prepare(event, 1024) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::error!(error = %e, event_id = %id, "audit store budget warning event could not be prepared");
                None
            }
        }
    }

    /// One of the writer's own `configuration_change` events.
    fn own_event(
        &self,
        action: &str,
        result: Outcome,
        risk_level: RiskLevel,
        reason: String,
        audit_gap: Option<AuditGap>,
    ) -> AuditEvent {
        let (event_id, timestamp) = self.ids.next();
        AuditEvent {
            event_id,
            timestamp,
            event_type: EventType::ConfigurationChange,
            user_id: self.guard.user_id.clone(),
            tool_name: None,
            action: action.into(),
            result,
            metadata: Metadata {
                auth_method: Some("process".into()),
                failure_side: audit_gap.is_some().then_some(Side::Internal),
                reason: Some(reason),
                store_usage: Some(StoreUsage {
                    bytes: self.shared.store_bytes(),
                    max_bytes: self.shared.max_bytes,
                }),
                audit_gap: audit_gap.map(Box::new),
                ..Metadata::default()
            },
            risk_level,
            compliance_tags: Vec::new(),
            session_id: crate::store::journals::id_of(self.journal.dir()).to_string(),
            upstream: self.guard.upstream.clone(),
            linked_event_id: None,
        }
    }

    /// Starts an outage (if none is on) with `cause`, and says so in the log.
    fn start_outage(&mut self, cause: String, budget: bool) {
        let mut outage = self.shared.outage();
        if outage.is_some() {
            return;
        }
        let cause = cause.replace("\n  hint: ", "; ");
        match self.shared.on_failure {
            OnStoreFailure::Block => {
                tracing::error!(cause = %cause, "audit store cannot take events; refusing tool calls until it can (audit.on_store_failure = block)")
            }
            OnStoreFailure::Allow => {
                tracing::error!(cause = %cause, "audit store cannot take events; tool calls go on UNAUDITED until it can (audit.on_store_failure = allow)")
            }
        }
        *outage = Some(Outage {
            since: SystemTime::now(),
            started: Instant::now(),
            cause,
            budget,
            lost: 0,
            refused: 0,
        });
        self.shared.stats.outages.fetch_add(1, Ordering::Relaxed);
        self.shared.down.store(true, Ordering::Release);
        self.nagged = Instant::now();
    }

    /// Tries to end the outage by writing (and syncing) its record; whether the store takes
    /// events again.
    fn recover(&mut self) -> bool {
        let Some(o) = self.shared.outage().clone() else {
            self.shared.down.store(false, Ordering::Release);
            return true;
        };
        if o.budget && self.walked.elapsed() >= RETRY {
            walk(&self.guard.root, &self.shared);
            self.walked = Instant::now();
        }
        let until = SystemTime::now();
        let gap = AuditGap {
            from: o.since,
            until,
            duration_ms: o.started.elapsed().as_millis() as u64,
            on_store_failure: self.shared.on_failure.as_str().into(),
            events_lost: o.lost,
            events_refused: o.refused,
            cause: o.cause.clone(),
        };
        let reason = match self.shared.on_failure {
            OnStoreFailure::Allow => format!(
                "the audit store could not take events for {} ms; tool calls went on unaudited (audit.on_store_failure = allow): {} events were not recorded",
                gap.duration_ms, gap.events_lost
            ),
            OnStoreFailure::Block => format!(
                "the audit store could not take events for {} ms; {} events were refused (their calls refused, audit.on_store_failure = block) and {} were not recorded",
                gap.duration_ms, gap.events_refused, gap.events_lost
            ),
        };
        let event = self.own_event(
            "audit/store_outage",
            Outcome::Error,
            RiskLevel::High,
            reason,
            Some(gap),
        );
        let payload = serde_json::to_vec(&event).unwrap_or_default();
        let written = match self.over_budget(payload.len() as u64) {
            Some(still) => Err(still),
            None => self
                .journal
                .append(&[&payload])
                .and_then(|_| self.journal.sync())
                .map_err(|e| {
                    self.journal.roll_back();
                    self.outbox.rolled_back();
                    e.to_string()
                }),
        };
        if let Err(e) = written {
            if self.nagged.elapsed() >= NAG {
                self.nagged = Instant::now();
                tracing::error!(
                    seconds = o.started.elapsed().as_secs(),
                    events_lost = o.lost,
                    events_refused = o.refused,
                    error = %e.replace("\n  hint: ", "; "),
                    on_store_failure = self.shared.on_failure.as_str(),
                    "audit store still cannot take events"
                );
            }
            return false;
        }
        self.after_append(1, payload.len() as u64);
        self.after_sync();
        let o = self.shared.outage().take();
        self.shared.down.store(false, Ordering::Release);
        let _ = self.index_tx.try_send(());
        if let Some(o) = o {
            tracing::warn!(
                seconds = o.started.elapsed().as_secs(),
                events_lost = o.lost,
                events_refused = o.refused,
                event_id = %event.event_id,
                "audit store takes events again; the gap is recorded in an audit/store_outage event"
            );
        }
        true
    }

    /// Appends a batch; in `sync` mode also makes it durable. On an error, whether the batch
    /// was appended (the sync failed) or not.
    fn write(&mut self, payloads: &mut [Prepared]) -> Result<(), (crate::store::StoreError, bool)> {
        let after = self.journal.end();
        self.journal
            .append_prepared(payloads)
            .map_err(|e| (e, false))?;
        (self.outbox).appended(after, self.journal.appended(), payloads);
        let bytes: usize = payloads.iter().map(Prepared::len).sum();
        self.after_append(payloads.len() as u64, bytes as u64);
        if self.durability == Durability::Sync {
            self.sync().map_err(|e| (e, true))?;
        }
        Ok(())
    }

    /// Counts an append of `events` events and about `bytes` bytes (the records add their
    /// chain members and headers: a few dozen bytes each).
    fn after_append(&self, events: u64, bytes: u64) {
        let stats = &self.shared.stats;
        stats.written.fetch_add(events, Ordering::Relaxed);
        stats.batches.fetch_add(1, Ordering::Relaxed);
        let records = bytes + events * RECORD_OVERHEAD;
        self.shared
            .appended_bytes
            .fetch_add(records, Ordering::Relaxed);
    }

    /// A failed write or sync of a batch of `events` (`appended` when the append worked and
    /// the sync failed): what was not durable is cut off, an outage starts, and the events are
    /// counted: the batch's by [`Self::count_unstored`], earlier unsynced ones (`batched`
    /// mode, their calls long gone on) as lost.
    fn fail(&mut self, e: crate::store::StoreError, events: u64, appended: bool) {
        self.shared.rolled_back.store(true, Ordering::Release);
        let dropped = self.journal.roll_back();
        self.outbox.rolled_back();
        // Cut off: never durable, so never alerted on.
        self.pending_alerts.clear();
        let earlier = dropped.saturating_sub(if appended { events } else { 0 });
        // The cause goes into the trail in clear (`audit_gap.cause`): a user key's file name is
        // a hash of the user's name, which would outlive their erasure. The log has the file.
        let cause = match &e {
            crate::store::StoreError::Personal(_) => {
                tracing::error!(error = %e, "a user key of the audit store failed");
                "a user key in the store's keys/ folder could not be made or read (the proxy's \
                 log names the file)"
                    .to_string()
            }
            _ => e.to_string(),
        };
        self.start_outage(cause, false);
        if earlier > 0 {
            self.shared.stats.lost.fetch_add(earlier, Ordering::Relaxed);
            if let Some(o) = self.shared.outage().as_mut() {
                o.lost += earlier;
            }
        }
        self.count_unstored(events);
    }

    fn sync(&mut self) -> Result<(), crate::store::StoreError> {
        let started = Instant::now();
        self.journal.sync()?;
        self.shared.stats.sync_times.observe(started.elapsed());
        self.after_sync();
        Ok(())
    }

    /// Offers the durable tool events to the alert stage.
    fn offer_alerts(&mut self) {
        if let Some(tap) = self.shared.tap.get() {
            for o in self.pending_alerts.drain(..) {
                tap.offer(o);
            }
        } else {
            self.pending_alerts.clear();
        }
    }

    fn after_sync(&mut self) {
        self.offer_alerts();
        self.shared.stats.syncs.fetch_add(1, Ordering::Relaxed);
        self.outbox.synced(self.journal.end());
        self.durable = self.journal.head();
        if self.uncovered_since.is_none() && self.uncovered() > 0 {
            self.uncovered_since = Some(Instant::now());
        }
    }
}

/// Lowers the calling thread to the lowest priority (nice 19), for work that can wait while
/// the proxy and the server need the CPU (on two cores, every cycle of background work is
/// one the server or the client does not get). On Linux this lowers only this thread; a
/// failure is logged at debug (`what` names the thread) and changes nothing else.
pub(crate) fn lowest_priority(what: &str) {
    if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 19) {
        tracing::debug!(error = %e, thread = what, "could not lower a background thread's priority");
    }
}

/// Keeps the index up with the journals while this process holds it, and takes it when it is
/// free; lags by design.
fn run_indexer(mut keeper: IndexKeeper, rx: mpsc::Receiver<()>, shared: &Shared) {
    // The index is a convenience that can always catch up later; the calls cannot wait.
    lowest_priority("indexer");
    // Take the index at once if it is free (the proxy serves meanwhile).
    let mut more = keeper.tick();
    let mut last_round_at = Instant::now();
    loop {
        // Rounds are bounded (`store::ROUND`): with records left, the next one follows at
        // once, after a pause that lets a waiting query take the holder.
        let wait = if more { INDEX_BREATHER } else { INDEX_POLL };
        // Rung by the writer (or behind): its records from the keys it handed on; idle: the
        // journals as they are (what was not handed on, other processes' journals).
        let mut handed = more;
        let last_round = match rx.recv_timeout(wait) {
            Ok(()) if keeper.holds() => {
                std::thread::sleep(INDEX_GATHER);
                handed = true;
                false
            }
            // Not holding: new records of ours are indexed by the holder; just retry to take
            // the index at the poll's pace.
            Ok(()) if last_round_at.elapsed() < INDEX_POLL => continue,
            Ok(()) | Err(RecvTimeoutError::Timeout) => false,
            // Shutting down: last rounds only if holding (taking the index now would only
            // delay the exit; the next holder catches up).
            Err(RecvTimeoutError::Disconnected) if !keeper.holds() => break,
            Err(RecvTimeoutError::Disconnected) => true,
        };
        if last_round {
            // What is left after a while is the next holder's: an MCP client closing us
            // waits for the exit, and the backlog may be a dead holder's whole journal.
            let until = Instant::now() + INDEX_LAST_ROUNDS;
            let mut left = true;
            while left && Instant::now() < until {
                left = keeper.tick();
            }
            // Every journal applied to its end, ours stopped whole: marked finished, so that
            // a later cut of its tail (with its last checkpoints) reads as the deletion it is.
            if !left && shared.stopped_cleanly.load(Ordering::Acquire) {
                keeper.finish_own();
            }
            break;
        }
        more = keeper.tick_with(handed);
        last_round_at = Instant::now();
    }
    keeper.close();
}

#[path = "writer_checkpoints.rs"]
mod checkpoints;
pub use checkpoints::CheckpointPlan;

#[cfg(test)]
#[path = "writer_tests.rs"]
mod tests;
