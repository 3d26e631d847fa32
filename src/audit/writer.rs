//! The audit writer: one thread owns this process's journal and appends events in batches with
//! one `fdatasync` per batch (group commit); a second thread feeds the sled index behind it
//! from every journal of the store while this process holds the index, and takes the index
//! over when its holder (another process) stops.
//!
//! The writer also keeps the journal's hash chain and checkpoints: [`Journal::append`] seals
//! each event into the next chained record (canonical JSON, `seq`, `previous_hash`: one parse,
//! one canonical serialization and one SHA-256 per event, here, off the message's path), and
//! after a sync the writer signs a checkpoint of the durable head every
//! `audit.checkpoint_every_events` events or `audit.checkpoint_interval_ms`, after answering
//! that batch's waiters, and a final one when it stops ([`crate::store::checkpoint`]).
//!
//! The pipeline never touches the disk: it hands a copy of the event to [`AuditSink::record`]
//! and, in `sync` mode, awaits the returned [`Ack`] before letting the message move on. The
//! writer thread bounds it (`audit.max_stored_argument_bytes`) and serializes it: for a call
//! with 64 KiB of arguments that is tens of microseconds the message's path no longer waits
//! for in `batched` mode (a copy of the event costs a few).
//! Nothing is dropped silently: a full queue or a failed write is an error the caller sees,
//! and after a failed write every later event is refused until the proxy is restarted.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender, SyncSender};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::event::AuditEvent;
use crate::config::Durability;
use crate::store::chain::Head;
use crate::store::checkpoint::{CheckpointWriter, Signer};
use crate::store::{IndexKeeper, Journal, journals};

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

/// Why an event could not be recorded; the call it belongs to is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditError {
    /// More events are waiting than `audit.queue_capacity` allows.
    #[error("audit queue full ({capacity} events waiting); the disk cannot keep up")]
    QueueFull {
        /// The configured capacity.
        capacity: usize,
    },
    /// The journal failed earlier; nothing more is accepted until restart.
    #[error("audit journal unavailable: {reason}")]
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
    /// Events refused because the journal had failed.
    pub refused: AtomicU64,
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
    failed: OnceLock<String>,
    stats: WriterStats,
    capacity: usize,
    /// Events queued and not yet taken by the writer.
    queued: AtomicUsize,
    sync: bool,
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
        if self.shared.queued.load(Ordering::Relaxed) >= self.shared.capacity {
            self.shared.stats.queue_full.fetch_add(1, Ordering::Relaxed);
            return Err(AuditError::QueueFull {
                capacity: self.shared.capacity,
            });
        }
        self.record(event)
    }

    /// Queues any other event (the end of a call, whatever the queue's length: that call has
    /// run, and its end must not be lost); in `sync` mode the [`Ack`] resolves once durable.
    pub fn record(&self, event: &AuditEvent) -> Result<Ack, AuditError> {
        if let Some(reason) = self.shared.failed.get() {
            self.shared.stats.refused.fetch_add(1, Ordering::Relaxed);
            return Err(AuditError::Unavailable {
                reason: reason.clone(),
            });
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
                event: Box::new(event.clone()),
                max_stored: self.max_stored,
                ack: ack_tx,
            }))
            .map_err(|_| {
                self.shared.queued.fetch_sub(1, Ordering::Relaxed);
                AuditError::Closed
            })?;
        Ok(ack)
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

    /// Writes and syncs everything queued so far, then stops the writer and the indexer.
    pub async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Shutdown(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

/// The stored JSON of an event: bounded to `max_stored` ([`super::bound`]), then serialized
/// into a buffer sized up front (`to_vec` starts at 128 bytes and doubles: a dozen
/// reallocations and copies for an event with large arguments).
fn encode(event: &AuditEvent, max_stored: usize) -> Result<Vec<u8>, AuditError> {
    let bounded = super::bound::bound(event, max_stored);
    let event = bounded.as_ref().unwrap_or(event);
    let mut payload = Vec::with_capacity(encoded_size_hint(event));
    serde_json::to_writer(&mut payload, event).map_err(|e| AuditError::Unavailable {
        reason: format!("audit event {} could not be encoded: {e}", event.event_id),
    })?;
    Ok(payload)
}

/// Bytes an event's JSON is likely to take: the fixed fields (a few hundred bytes), reasons
/// and texts, and the stored arguments.
fn encoded_size_hint(event: &AuditEvent) -> usize {
    let m = &event.metadata;
    let texts: usize = m
        .risk_reasons
        .iter()
        .chain(&m.error_messages)
        .chain(&m.reason)
        .map(|t| t.len() + 4)
        .sum();
    1024 + texts + m.arguments.as_ref().map_or(0, |a| a.get().len())
}

/// The writer and indexer threads; join them after [`AuditSink::close`].
#[derive(Debug)]
pub struct WriterThreads {
    writer: JoinHandle<()>,
    indexer: JoinHandle<()>,
}

impl WriterThreads {
    /// Waits for both threads to finish.
    pub fn join(self) {
        let _ = self.writer.join();
        let _ = self.indexer.join();
    }
}

/// When the writer signs checkpoints of its journal, and with what.
#[derive(Debug)]
pub struct CheckpointPlan {
    /// Writes the journal's `checkpoints` file.
    pub writer: CheckpointWriter,
    /// A checkpoint once this many durable events are not covered…
    pub every_events: u64,
    /// …or once the oldest of them has waited this long.
    pub interval: Duration,
}

impl CheckpointPlan {
    /// The plan of `[audit]` for `journal` (signed with `signer` when configured).
    pub fn new(
        journal: &Journal,
        signer: Option<Arc<Signer>>,
        every_events: u64,
        interval: Duration,
    ) -> CheckpointPlan {
        CheckpointPlan {
            writer: CheckpointWriter::new(journal.dir(), journals::id_of(journal.dir()), signer),
            every_events,
            interval,
        }
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

/// Starts the writer and the indexer, the writer checkpointing its journal as `plan` says.
pub fn start_with(
    journal: Journal,
    keeper: IndexKeeper,
    durability: Durability,
    flush_interval: Duration,
    capacity: usize,
    plan: CheckpointPlan,
) -> std::io::Result<(AuditSink, WriterThreads)> {
    // Unbounded: the capacity is enforced on access events only (see `admit`).
    let (tx, rx) = mpsc::channel();
    // A doorbell, not a queue: the indexer reads what is new from the journal itself, so it
    // can never hold the writer back, and a missed ring only delays the index.
    let (index_tx, index_rx) = mpsc::sync_channel::<()>(1);
    let shared = Arc::new(Shared {
        failed: OnceLock::new(),
        stats: WriterStats::default(),
        capacity,
        queued: AtomicUsize::new(0),
        sync: durability == Durability::Sync,
    });
    let indexer = std::thread::Builder::new()
        .name("audit-indexer".into())
        .spawn(move || run_indexer(keeper, index_rx))?;
    let writer_shared = shared.clone();
    let writer = std::thread::Builder::new()
        .name("audit-writer".into())
        .spawn(move || {
            Writer {
                journal,
                shared: writer_shared,
                durability,
                flush_interval,
                index_tx,
                plan,
                durable: None,
                checkpointed: None,
                uncovered_since: None,
            }
            .run(rx)
        })?;
    let sink = AuditSink {
        tx,
        shared,
        max_stored: usize::MAX,
    };
    Ok((sink, WriterThreads { writer, indexer }))
}

struct Writer {
    journal: Journal,
    shared: Arc<Shared>,
    durability: Durability,
    flush_interval: Duration,
    index_tx: SyncSender<()>,
    plan: CheckpointPlan,
    /// The journal's head as of the last sync.
    durable: Option<Head>,
    /// The `seq` the last checkpoint covers.
    checkpointed: Option<u64>,
    /// Since when durable events have waited for a checkpoint.
    uncovered_since: Option<Instant>,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Msg>) {
        let mut payloads: Vec<Vec<u8>> = Vec::new();
        let mut acks: Vec<oneshot::Sender<Result<(), AuditError>>> = Vec::new();
        let mut unsynced = false;
        let mut last_sync = Instant::now();
        let mut shutdown: Option<oneshot::Sender<()>> = None;
        loop {
            let first = if unsynced {
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
            while let Some(msg) = next.take() {
                match msg {
                    Msg::Event(s) => {
                        self.shared.queued.fetch_sub(1, Ordering::Relaxed);
                        match encode(&s.event, s.max_stored) {
                            Ok(payload) => {
                                bytes += payload.len();
                                payloads.push(payload);
                                acks.extend(s.ack);
                            }
                            Err(e) => {
                                // Not reached with the event types we have (no map keys that
                                // are not strings); if it were, that one call is refused.
                                self.shared.stats.refused.fetch_add(1, Ordering::Relaxed);
                                tracing::error!(error = %e, event_id = %s.event.event_id, "audit event could not be encoded");
                                if let Some(ack) = s.ack {
                                    let _ = ack.send(Err(e));
                                }
                            }
                        }
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
            if !payloads.is_empty() {
                let answer = self.write(&payloads);
                if answer.is_ok() {
                    unsynced = self.durability == Durability::Batched;
                    let _ = self.index_tx.try_send(());
                }
                payloads.clear();
                for ack in acks.drain(..) {
                    let _ = ack.send(answer.clone());
                }
                self.maybe_checkpoint();
            }
            if unsynced && (last_sync.elapsed() >= self.flush_interval || shutdown.is_some()) {
                if let Err(e) = self.sync() {
                    tracing::error!(error = %e, "audit journal sync failed");
                }
                unsynced = false;
                last_sync = Instant::now();
                self.maybe_checkpoint();
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
        }
        // The final checkpoint: the writer stops here, nothing follows its head.
        if let Err(e) = self.plan.writer.write(self.durable, true) {
            tracing::error!(error = %e, "audit journal final checkpoint failed");
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

    /// Appends a batch; in `sync` mode also makes it durable.
    fn write(&mut self, payloads: &[Vec<u8>]) -> Result<(), AuditError> {
        if let Some(reason) = self.shared.failed.get() {
            return Err(AuditError::Unavailable {
                reason: reason.clone(),
            });
        }
        self.journal
            .append(payloads)
            .map_err(|e| self.fail(e.to_string()))?;
        let stats = &self.shared.stats;
        stats
            .written
            .fetch_add(payloads.len() as u64, Ordering::Relaxed);
        stats.batches.fetch_add(1, Ordering::Relaxed);
        if self.durability == Durability::Sync {
            self.sync()?;
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<(), AuditError> {
        let started = Instant::now();
        self.journal.sync().map_err(|e| self.fail(e.to_string()))?;
        self.shared.stats.sync_times.observe(started.elapsed());
        self.shared.stats.syncs.fetch_add(1, Ordering::Relaxed);
        self.durable = self.journal.head();
        if self.uncovered_since.is_none() && self.uncovered() > 0 {
            self.uncovered_since = Some(Instant::now());
        }
        Ok(())
    }

    /// Durable events no checkpoint covers yet.
    fn uncovered(&self) -> u64 {
        let durable = self.durable.map_or(0, |h| h.seq + 1);
        durable.saturating_sub(self.checkpointed.map_or(0, |s| s + 1))
    }

    /// How long until the uncovered durable events are due a checkpoint, if there are any.
    fn checkpoint_due_in(&self) -> Option<Duration> {
        let since = self.uncovered_since?;
        Some(self.plan.interval.saturating_sub(since.elapsed()))
    }

    /// Writes a checkpoint of the durable head when enough events or time call for one. A
    /// failure is logged, not fatal: the records stay chained, only the signature is missing.
    fn maybe_checkpoint(&mut self) {
        let uncovered = self.uncovered();
        let due = self
            .uncovered_since
            .is_some_and(|t| t.elapsed() >= self.plan.interval);
        if uncovered == 0 || (uncovered < self.plan.every_events && !due) {
            return;
        }
        match self.plan.writer.write(self.durable, false) {
            Ok(_) => {
                self.checkpointed = self.durable.map(|h| h.seq);
                self.uncovered_since = None;
            }
            Err(e) => {
                tracing::error!(error = %e, "audit journal checkpoint failed");
                // Try again at the next interval, not at every batch.
                self.uncovered_since = Some(Instant::now());
            }
        }
    }

    fn fail(&self, reason: String) -> AuditError {
        tracing::error!(error = %reason, "audit journal write failed; refusing every further tool call until restart");
        let _ = self.shared.failed.set(reason.clone());
        AuditError::Unavailable { reason }
    }
}

/// Keeps the index up with the journals while this process holds it, and takes it when it is
/// free; lags by design.
fn run_indexer(mut keeper: IndexKeeper, rx: mpsc::Receiver<()>) {
    // The index is a convenience that can always catch up later; the calls cannot wait. On
    // Linux this lowers only this thread, so the proxy and the server get the CPU first.
    if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 19) {
        tracing::debug!(error = %e, "could not lower the indexer's priority");
    }
    // Take the index at once if it is free (the proxy serves meanwhile).
    keeper.tick();
    let mut last_round_at = Instant::now();
    loop {
        let last_round = match rx.recv_timeout(INDEX_POLL) {
            Ok(()) if keeper.holds() => {
                std::thread::sleep(INDEX_GATHER);
                false
            }
            // Not holding: new records of ours are indexed by the holder; just retry to take
            // the index at the poll's pace.
            Ok(()) if last_round_at.elapsed() < INDEX_POLL => continue,
            Ok(()) | Err(RecvTimeoutError::Timeout) => false,
            // Shutting down: a last round only if holding (taking the index now would only
            // delay the exit; the next holder catches up).
            Err(RecvTimeoutError::Disconnected) if !keeper.holds() => break,
            Err(RecvTimeoutError::Disconnected) => true,
        };
        keeper.tick();
        last_round_at = Instant::now();
        if last_round {
            break;
        }
    }
    keeper.close();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_times_count_each_sync_in_its_bucket_and_the_sum() {
        let t = SyncTimes::default();
        for us in [10, 50, 51, 3_000, 5_000_000] {
            t.observe(Duration::from_micros(us));
        }
        let h = t.snapshot();
        assert_eq!(h.count, 5);
        assert!((h.sum_seconds - 5.003111).abs() < 1e-9, "{}", h.sum_seconds);
        let at = |bound: f64| h.buckets.iter().find(|b| b.0 == bound).unwrap().1;
        assert_eq!(at(50e-6), 2, "10 and 50 µs are at or below 50 µs");
        assert_eq!(at(100e-6), 1);
        assert_eq!(at(3_200e-6), 1);
        assert_eq!(
            at((50u64 << 15) as f64 / 1e6),
            0,
            "5 s is past the last bound"
        );
        assert_eq!(h.buckets.last(), Some(&(f64::MAX, 1)));
        assert_eq!(h.buckets.iter().map(|b| b.1).sum::<u64>(), h.count);
    }
}
