//! Real-time alerts (issue 10 item 3): raised inside the running proxy or gateway from events
//! that are already durable, never on the message path.
//!
//! # Flow
//!
//! The audit writer thread, after a batch is durable (synced), offers each tool event's
//! summary ([`Observed`]) to the alert stage's bounded queue with `try_send`
//! ([`crate::audit::writer::AlertTap`]): when the queue is full the event is not examined, and
//! that is counted ([`AlertStats::dropped`]), said in the log, shown in `/metrics`
//! (`mcp_gateway_alerts_dropped`) and in the `dropped` member of the next alert that gets
//! through. The stage runs on a thread of its own: the detectors ([`detect`]) turn events into
//! signals, the grouper ([`group`]) makes one alert per user and kind per window, and each
//! alert goes to
//!
//! * the log: one `warn` line, `alert raised`, with the kind, severity, user, count and ids;
//! * the store: an `alert` event ([`crate::audit::EventType::Alert`]) recorded through the
//!   same writer, so the hash chain covers it; `events --type alert` and
//!   `mcp-audit-proxy alerts` list it;
//! * the webhook, if `[alerts.webhook]` is set ([`webhook`]): the same JSON, POSTed, signed,
//!   retried, by a thread of its own; a failed delivery is counted and logged, never waited
//!   for by the stage or the writer.
//!
//! # The alert event
//!
//! An `alert` event has the shape of every event: `user_id` the user it is about, `tool_name`
//! the tool when all its events name one, `action` `alert/KIND`, `result` `success`,
//! `risk_level` the alert's severity, `compliance_tags` those of its events, `session_id` and
//! `upstream` of its first event, `metadata.reason` the explanation (sealed with the user's
//! personal fields), `metadata.http.client_address` the latest address when there is one,
//! and `metadata.alert` ([`AlertDetails`]):
//!
//! ```json
//! {"kind":"blocked","family":"policy","severity":"critical","count":1000,
//!  "first_event_id":"01J…","last_event_id":"01J…",
//!  "from":"2026-12-02T15:00:00.000Z","until":"2026-12-02T15:00:01.250Z",
//!  "tools":["shell"],"dropped":0}
//! ```

pub mod detect;
pub mod group;
pub mod webhook;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::audit::event::EventIds;
use crate::audit::writer::{AlertTap, AuditSink};
use crate::audit::{AuditEvent, EventId, EventType, Metadata, Outcome, RiskLevel};
use crate::config::AlertsConfig;

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The policy blocked a call (`result: blocked`).
    Blocked,
    /// The proxy refused a call (undecodable, oversized, unauthenticated, audit unavailable).
    Refused,
    /// A call at `high` risk or above (its access, or a result that raised it).
    HighRisk,
    /// The policy's decision was `alert` (or, in shadow mode, `would_block`/`would_confirm`).
    PolicyAlert,
    /// A user's first call to a tool few users call (behavioural).
    FirstUse,
    /// A user from a network outside the known ones that is new for them (network).
    NewNetwork,
    /// One user from three networks or more within 15 minutes (network).
    ManyAddresses,
    /// A burst of calls by one user (temporal).
    Burst,
    /// A burst of failed calls by one user (temporal).
    FailureBurst,
}

impl Kind {
    /// The JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Blocked => "blocked",
            Kind::Refused => "refused",
            Kind::HighRisk => "high_risk",
            Kind::PolicyAlert => "policy_alert",
            Kind::FirstUse => "first_use",
            Kind::NewNetwork => "new_network",
            Kind::ManyAddresses => "many_addresses",
            Kind::Burst => "burst",
            Kind::FailureBurst => "failure_burst",
        }
    }

    /// The family, as `anomalies` names them (`policy` for what the risk engine decided).
    pub fn family(self) -> &'static str {
        match self {
            Kind::Blocked | Kind::Refused | Kind::HighRisk | Kind::PolicyAlert => "policy",
            Kind::FirstUse => "behavioural",
            Kind::NewNetwork | Kind::ManyAddresses => "network",
            Kind::Burst | Kind::FailureBurst => "temporal",
        }
    }
}

/// `metadata.alert` of an `alert` event: what it stands for. Holds no personal data (the
/// user is `user_id`, the explanation `metadata.reason`: both sealed when the store encrypts
/// personal data).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertDetails {
    /// What was seen.
    pub kind: Kind,
    /// `policy`, `behavioural`, `network` or `temporal`.
    pub family: String,
    /// `low`, `medium`, `high` or `critical` (also the event's `risk_level`).
    pub severity: RiskLevel,
    /// Events it stands for (each one signal: a blocked call, a call of a burst…).
    pub count: u64,
    /// The first of them.
    pub first_event_id: EventId,
    /// The last of them.
    pub last_event_id: EventId,
    /// The first one's time (RFC 3339 UTC, milliseconds).
    #[serde(with = "crate::analytics::ms_time")]
    pub from: u64,
    /// The last one's time.
    #[serde(with = "crate::analytics::ms_time")]
    pub until: u64,
    /// Distinct tools of those events (at most 16).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<String>,
    /// Events the alert stage could not examine since the previous alert (its queue was
    /// full): alerts may be missing for them.
    pub dropped: u64,
}

/// What the alert stage reads of a durable event (a few hundred bytes, whatever the
/// arguments' size).
#[derive(Debug, Clone)]
pub struct Observed {
    /// `event_id`.
    pub id: EventId,
    /// `timestamp`, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// `event_type`.
    pub event_type: EventType,
    /// `result`.
    pub result: Outcome,
    /// `user_id`.
    pub user: String,
    /// `tool_name`.
    pub tool: Option<String>,
    /// `session_id`.
    pub session: String,
    /// `upstream`.
    pub upstream: String,
    /// `risk_level`.
    pub risk: RiskLevel,
    /// `metadata.decision`.
    pub decision: Option<String>,
    /// `metadata.http.client_address`.
    pub ip: Option<IpAddr>,
    /// `compliance_tags`.
    pub tags: Vec<String>,
    /// `linked_event_id`.
    pub linked: Option<EventId>,
    /// How many occurrences the event stands for: `metadata.summarized`, else 1.
    pub weight: u64,
}

impl Observed {
    /// The summary of a tool event (`tool_access`, `tool_execution`, `tool_failure`) or of a
    /// client's answer to a server's question (`server_request`); `None` for the others
    /// (alerts among them: an alert never raises an alert).
    pub fn of(e: &AuditEvent) -> Option<Observed> {
        if !matches!(
            e.event_type,
            EventType::ToolAccess
                | EventType::ToolExecution
                | EventType::ToolFailure
                | EventType::ServerRequest
        ) {
            return None;
        }
        Some(Observed {
            id: e.event_id,
            at_ms: ms(e.timestamp),
            event_type: e.event_type,
            result: e.result,
            user: e.user_id.clone(),
            tool: e.tool_name.clone(),
            session: e.session_id.clone(),
            upstream: e.upstream.clone(),
            risk: e.risk_level,
            decision: e.metadata.decision.clone(),
            ip: e
                .metadata
                .http
                .as_ref()
                .and_then(|h| h.client_address.as_deref())
                .and_then(|a| a.parse().ok()),
            tags: e.compliance_tags.clone(),
            linked: e.linked_event_id,
            weight: e.metadata.summarized.unwrap_or(1).max(1),
        })
    }
}

fn ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What goes into the stage's queue.
#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "nearly every item is an event; boxing it would add an allocation per event on the writer thread"
)]
pub enum Input {
    /// A durable event.
    Event(Observed),
    /// Raise what is gathering, hand it on, and stop (answered when done).
    Close(tokio::sync::oneshot::Sender<()>),
}

/// The stage's counters (read by `/metrics` and tests).
#[derive(Debug, Default)]
pub struct AlertStats {
    /// Events examined.
    pub examined: AtomicU64,
    /// Events not examined because the queue was full.
    pub dropped: AtomicU64,
    /// Alerts raised.
    pub raised: AtomicU64,
    /// Alerts the store did not take (an outage, a closed writer).
    pub unstored: AtomicU64,
    /// Webhook deliveries accepted by the receiver (2xx).
    pub delivered: AtomicU64,
    /// Webhook attempts after the first (retries).
    pub retries: AtomicU64,
    /// Alerts the webhook never delivered (attempts exhausted, refused, or its queue full).
    pub undelivered: AtomicU64,
}

/// A queue for the stage: the writer's end (install it with [`AuditSink::set_alert_tap`])
/// and the stage's.
pub fn channel(capacity: usize) -> (AlertTap, Receiver<Input>, Arc<AlertStats>) {
    let (tx, rx) = mpsc::sync_channel(capacity.max(1));
    let stats = Arc::new(AlertStats::default());
    (
        AlertTap {
            tx,
            stats: stats.clone(),
        },
        rx,
        stats,
    )
}

/// Why the alert stage could not start.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    /// A thread could not be started.
    #[error(
        "cannot start the alert {what} thread: {source}\n  hint: the system is out of threads or memory; retry, or set alerts.enabled = false"
    )]
    Thread {
        /// Which.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// The webhook's client could not be built.
    #[error("alerts.webhook: {0}")]
    Webhook(String),
}

/// The running stage; [`AlertStage::close`] it before closing the audit sink.
#[derive(Debug)]
pub struct AlertStage {
    tx: SyncSender<Input>,
    thread: Option<JoinHandle<()>>,
    /// Its counters.
    pub stats: Arc<AlertStats>,
}

impl AlertStage {
    /// Raises what is still gathering, waits for the webhook (at most
    /// [`webhook::CLOSE_GRACE`]), and stops. Call after [`AuditSink::flush`], before
    /// [`AuditSink::close`], so that the last events are examined and the last alerts stored.
    pub async fn close(mut self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let sender = self.tx.clone();
        // The queue may be full: sending waits for the stage to take one, off this thread.
        let _ = std::thread::Builder::new()
            .name("alerts-close".into())
            .spawn(move || {
                let _ = sender.send(Input::Close(tx));
            });
        let _ = rx.await;
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

/// How the stage runs (from `[alerts]` and `[analytics]`).
#[derive(Debug, Clone)]
pub struct Settings {
    /// `[alerts]`.
    pub alerts: AlertsConfig,
    /// `[analytics]` context: service accounts and known networks.
    pub context: crate::analytics::Context,
    /// The store, for the history read at start (`None`: no history).
    pub history_from: Option<std::path::PathBuf>,
    /// Days of history (`analytics.baseline_days`).
    pub history_days: u64,
    /// The stdio wrapper's user, whose own history is read too (everyone's newest events
    /// may not reach back far enough for them).
    pub history_user: Option<String>,
}

impl Settings {
    /// The settings of `config`, reading history from its store.
    pub fn of(config: &crate::config::Config, user: Option<String>) -> Settings {
        Settings {
            alerts: config.alerts.clone(),
            context: config.analytics.context.clone(),
            history_from: (config.alerts.history_events > 0)
                .then(|| config.audit.store_dir.clone()),
            history_days: config.analytics.baseline_days,
            history_user: user,
        }
    }
}

/// Starts the stage for `sink` (whose writer then feeds it), if `[alerts]` is enabled.
pub fn start(settings: Settings, sink: &AuditSink) -> Result<Option<AlertStage>, AlertError> {
    if !settings.alerts.enabled {
        return Ok(None);
    }
    let (tap, rx, stats) = channel(settings.alerts.queue_capacity);
    let tx = tap.tx.clone();
    let hook = match &settings.alerts.webhook {
        Some(w) => Some(webhook::Webhook::start(w.clone(), stats.clone())?),
        None => None,
    };
    // The history is read up to this instant, taken before the tap is set: what is recorded
    // later reaches the stage through the tap, so it is never learnt as history first (the
    // thread may start long after this on a loaded machine).
    let started = SystemTime::now();
    sink.set_alert_tap(tap);
    let thread = spawn(settings, sink.clone(), rx, stats.clone(), hook, started)?;
    Ok(Some(AlertStage {
        tx,
        thread: Some(thread),
        stats,
    }))
}

/// Runs the stage on `rx` (from [`channel`]) on a thread of its own; its history is what the
/// store holds from before `started` (the moment the tap began feeding `rx`).
pub fn spawn(
    settings: Settings,
    sink: AuditSink,
    rx: Receiver<Input>,
    stats: Arc<AlertStats>,
    hook: Option<webhook::Webhook>,
    started: SystemTime,
) -> Result<JoinHandle<()>, AlertError> {
    std::thread::Builder::new()
        .name("alerts".into())
        .spawn(move || {
            let mut stage = Stage::new(settings, sink, stats, hook, started);
            stage.warm_up();
            stage.run(rx);
        })
        .map_err(|source| AlertError::Thread {
            what: "stage",
            source,
        })
}

/// A stage running on `rx` with `sink`, for tests: returns its handle.
pub fn start_on(
    settings: Settings,
    sink: &AuditSink,
    tap_tx: SyncSender<Input>,
    rx: Receiver<Input>,
    stats: Arc<AlertStats>,
) -> Result<AlertStage, AlertError> {
    let hook = match &settings.alerts.webhook {
        Some(w) => Some(webhook::Webhook::start(w.clone(), stats.clone())?),
        None => None,
    };
    let thread = spawn(
        settings,
        sink.clone(),
        rx,
        stats.clone(),
        hook,
        SystemTime::now(),
    )?;
    Ok(AlertStage {
        tx: tap_tx,
        thread: Some(thread),
        stats,
    })
}

/// How often, at most, the log says that events were not examined.
const DROP_REPORT_EVERY: Duration = Duration::from_secs(10);

struct Stage {
    settings: Settings,
    detectors: detect::Detectors,
    grouper: group::Grouper,
    sink: AuditSink,
    stats: Arc<AlertStats>,
    hook: Option<webhook::Webhook>,
    ids: EventIds,
    /// Drops already reported in an alert.
    reported: u64,
    /// Drops already said in the log, and when.
    logged: (u64, std::time::Instant),
    started: SystemTime,
}

impl Stage {
    fn new(
        settings: Settings,
        sink: AuditSink,
        stats: Arc<AlertStats>,
        hook: Option<webhook::Webhook>,
        started: SystemTime,
    ) -> Stage {
        let a = &settings.alerts;
        Stage {
            detectors: detect::Detectors::new(a.max_users, settings.context.clone()),
            grouper: group::Grouper::new(
                a.window.as_millis() as u64,
                a.group_wait.as_millis() as u64,
            ),
            settings,
            sink,
            stats,
            hook,
            ids: EventIds::default(),
            reported: 0,
            logged: (0, std::time::Instant::now()),
            started,
        }
    }

    /// Reads the newest `history_events` of the last `history_days` from the store (the
    /// journals, never the index, which this process's indexer may hold), so that novelty is
    /// judged against each user's past. A failure is logged: the stage runs without history.
    fn warm_up(&mut self) {
        let Some(root) = self.settings.history_from.clone() else {
            return;
        };
        let limit = self.settings.alerts.history_events;
        let everyone = crate::store::Filter {
            since: Some(self.started - Duration::from_secs(self.settings.history_days * 86_400)),
            until: Some(self.started),
            ..crate::store::Filter::default()
        };
        // Everyone's newest events (the population: who uses which tool, which network),
        // and, for the stdio wrapper, its user's own (which everyone's may not reach back to):
        // at most `history_events` of theirs in all, the older ones read only from where
        // everyone's stopped (a wrapper whose user made all recent calls reads them once).
        let user = self
            .settings
            .history_user
            .clone()
            .map(|u| crate::store::Filter {
                user_subject: crate::store::personal::subject_of(&root, &u).ok().flatten(),
                user: Some(u),
                ..everyone.clone()
            });
        let t = std::time::Instant::now();
        // Read on a thread of the lowest priority: it decrypts and decodes up to twice
        // `history_events` events while a wrapper's first calls run (on two cores that was a
        // tenth of the CPU the server and the client had at every wrapper start). The stage
        // waits for it, then examines at its usual priority what queued meanwhile.
        let read = || -> Result<std::collections::BTreeMap<EventId, Observed>, crate::store::StoreError> {
            crate::audit::writer::lowest_priority("alerts-history");
            let mut history = std::collections::BTreeMap::new();
            let (events, _damaged) = crate::store::newest_from_journals(&root, limit, &everyone)?;
            let mine = user.as_ref().map_or(0, |f| {
                events.iter().filter(|e| Some(&e.user_id) == f.user.as_ref()).count()
            });
            let reached_back = events.len() >= limit;
            let oldest = events.last().map(|e| e.timestamp);
            for e in &events {
                if let Some(o) = Observed::of(e) {
                    history.insert(o.id, o);
                }
            }
            if let Some(mut f) = user
                && reached_back
                && mine < limit
            {
                f.until = oldest.or(f.until);
                let (events, _damaged) = crate::store::newest_from_journals(&root, limit - mine, &f)?;
                for e in &events {
                    if let Some(o) = Observed::of(e) {
                        history.insert(o.id, o);
                    }
                }
            }
            Ok(history)
        };
        let read = std::thread::scope(|s| {
            std::thread::Builder::new()
                .name("alerts-history".into())
                .spawn_scoped(s, read)
                .map(|h| h.join())
        });
        let history = match read {
            Ok(Ok(Ok(history))) => history,
            Ok(Ok(Err(e))) => {
                tracing::warn!(error = %e, "alert detectors could not read their history; novelty alerts start without it");
                return;
            }
            Ok(Err(_)) | Err(_) => {
                tracing::warn!(
                    "alert detectors' history reader failed; novelty alerts start without it"
                );
                return;
            }
        };
        for o in history.values() {
            self.detectors.learn(o);
        }
        tracing::debug!(
            events = history.len(),
            ms = t.elapsed().as_millis() as u64,
            users = self.detectors.users(),
            "alert detectors read their history"
        );
    }

    fn run(&mut self, rx: Receiver<Input>) {
        loop {
            let now = ms(SystemTime::now());
            let wait = self
                .grouper
                .next_due()
                .map_or(DROP_REPORT_EVERY, |d| {
                    Duration::from_millis(d.saturating_sub(now))
                })
                .min(DROP_REPORT_EVERY);
            match rx.recv_timeout(wait) {
                Ok(Input::Event(o)) => {
                    self.examine(&o);
                    // Take what else is queued before looking at the clock again.
                    while let Ok(next) = rx.try_recv() {
                        match next {
                            Input::Event(o) => self.examine(&o),
                            Input::Close(done) => return self.close(done),
                        }
                    }
                }
                Ok(Input::Close(done)) => return self.close(done),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    let (done, _) = tokio::sync::oneshot::channel();
                    return self.close(done);
                }
            }
            self.log_drops(false);
            for p in self.grouper.due(ms(SystemTime::now())) {
                self.raise(p);
            }
        }
    }

    fn examine(&mut self, o: &Observed) {
        self.stats.examined.fetch_add(1, Ordering::Relaxed);
        let now = ms(SystemTime::now());
        for s in self.detectors.observe(o) {
            if s.severity < self.settings.alerts.min_level {
                continue;
            }
            if let Some(early) = self.grouper.add(o, &s, now) {
                self.raise(early);
            }
        }
    }

    /// Says in the log how many events were not examined, at most every
    /// [`DROP_REPORT_EVERY`] unless `now`.
    fn log_drops(&mut self, now: bool) {
        let dropped = self.stats.dropped.load(Ordering::Relaxed);
        if dropped > self.logged.0 && (now || self.logged.1.elapsed() >= DROP_REPORT_EVERY) {
            tracing::warn!(
                dropped = dropped - self.logged.0,
                total = dropped,
                capacity = self.settings.alerts.queue_capacity,
                "alert queue full: events were not examined for alerts (raise alerts.queue_capacity)"
            );
            self.logged = (dropped, std::time::Instant::now());
        }
    }

    fn close(&mut self, done: tokio::sync::oneshot::Sender<()>) {
        for p in self.grouper.drain() {
            self.raise(p);
        }
        self.log_drops(true);
        if let Some(h) = self.hook.take() {
            h.close();
        }
        let _ = done.send(());
    }

    /// Sends one alert to the log, the store and the webhook.
    fn raise(&mut self, p: group::Pending) {
        let total = self.stats.dropped.load(Ordering::Relaxed);
        let dropped = total - self.reported;
        self.reported = total;
        let event = alert_event(&p, &self.ids, dropped);
        self.stats.raised.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            event_id = %event.event_id,
            kind = p.kind.as_str(),
            severity = p.severity.as_str(),
            user = %p.user,
            count = p.count,
            first_event_id = %p.first.0,
            last_event_id = %p.last.0,
            dropped,
            explanation = %p.explanation,
            "alert raised"
        );
        if let Err(e) = self.sink.record(&event) {
            self.stats.unstored.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, event_id = %event.event_id, "alert could not be recorded in the audit store");
        }
        if let Some(h) = &self.hook {
            h.send(&event);
        }
    }
}

/// The `alert` event of an alert (see the module docs).
pub fn alert_event(p: &group::Pending, ids: &EventIds, dropped: u64) -> AuditEvent {
    let (event_id, timestamp) = ids.next();
    let tool_name = (p.tools.len() == 1)
        .then(|| p.tools.iter().next().cloned())
        .flatten();
    AuditEvent {
        event_id,
        timestamp,
        event_type: EventType::Alert,
        user_id: p.user.clone(),
        tool_name,
        action: format!("alert/{}", p.kind.as_str()),
        result: Outcome::Success,
        metadata: Metadata {
            auth_method: Some("process".into()),
            reason: Some(p.explanation.clone()),
            http: p.ip.map(|ip| {
                Box::new(crate::audit::event::HttpContext {
                    client_address: Some(ip.to_string()),
                    ..Default::default()
                })
            }),
            alert: Some(Box::new(AlertDetails {
                kind: p.kind,
                family: p.kind.family().into(),
                severity: p.severity,
                count: p.count,
                first_event_id: p.first.0,
                last_event_id: p.last.0,
                from: p.first.1,
                until: p.last.1,
                tools: p.tools.iter().cloned().collect(),
                dropped,
            })),
            ..Metadata::default()
        },
        risk_level: p.severity,
        compliance_tags: p.tags.iter().cloned().collect(),
        session_id: p.session.clone(),
        upstream: p.upstream.clone(),
        linked_event_id: None,
    }
}
