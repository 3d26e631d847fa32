//! `/metrics`: the gateway's own counters in the Prometheus text exposition format, by the
//! `prometheus-client` crate. Labels never carry users, tools or arguments (those are in the
//! audit trail), so the endpoint reveals volumes, not who did what.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::audit::writer::{AuditSink, SyncHistogram};

/// `journal_sync_seconds`: the audit writer keeps its own lock-free buckets (the writer thread
/// must not depend on the metrics crate); this collector encodes the copy taken at each scrape.
#[derive(Debug, Default, Clone)]
struct SyncSeconds(Arc<Mutex<SyncHistogram>>);

impl Collector for SyncSeconds {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let h = self.0.lock().map(|h| h.clone()).unwrap_or_default();
        let mut metric = encoder.encode_descriptor(
            "journal_sync_seconds",
            "Duration of the journal's fdatasync calls (in sync mode, every audited call waits for one)",
            None,
            MetricType::Histogram,
        )?;
        metric.encode_histogram::<NoLabelSet>(h.sum_seconds, h.count, &h.buckets, None)
    }
}

/// HTTP methods counted under their own name; any other (a client may send any token) is
/// `other`, so that clients cannot add series without end.
const HTTP_METHODS: [&str; 9] = [
    "GET", "POST", "DELETE", "OPTIONS", "HEAD", "PUT", "PATCH", "CONNECT", "TRACE",
];

/// Methods a refusal is counted under by name: the MCP methods of every revision served, and
/// the gateway's own (`http` for a refusal before the body is read, `GET`, `DELETE`). Any
/// other name (the client's text: quotes, line breaks, made-up names) is `other`, so that
/// a label can neither break out of the exposition format nor multiply the series.
const RPC_METHODS: [&str; 38] = [
    "http",
    "GET",
    "DELETE",
    "initialize",
    "ping",
    "server/discover",
    "subscriptions/listen",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "logging/setLevel",
    "roots/list",
    "sampling/createMessage",
    "elicitation/create",
    "tasks/get",
    "tasks/list",
    "tasks/result",
    "tasks/cancel",
    "tasks/update",
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/message",
    "notifications/roots/list_changed",
    "notifications/tools/list_changed",
    "notifications/resources/list_changed",
    "notifications/resources/updated",
    "notifications/prompts/list_changed",
    "notifications/elicitation/complete",
    "notifications/tasks/status",
    "notifications/subscriptions/acknowledged",
];

fn http_method_label(method: &str) -> &str {
    HTTP_METHODS
        .iter()
        .find(|m| **m == method)
        .copied()
        .unwrap_or("other")
}

fn rpc_method_label(method: &str) -> &str {
    RPC_METHODS
        .iter()
        .find(|m| **m == method)
        .copied()
        .unwrap_or("other")
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Request {
    /// HTTP method.
    method: String,
    /// `http.response.status_code`.
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Upstream {
    upstream: String,
}

/// The gateway's metrics.
pub(crate) struct Metrics {
    registry: Registry,
    requests: Family<Request, Counter>,
    refusals: Family<Request, Counter>,
    duration: Histogram,
    tool_calls: Family<Upstream, Counter>,
    sessions: Gauge,
    shared_children: Gauge,
    shared_started: Gauge,
    queue_depth: Gauge,
    events_written: Gauge,
    syncs: Gauge,
    sync_seconds: SyncSeconds,
    store: StoreGauges,
    alerts: AlertGauges,
}

/// The alert stage's counters ([`crate::alerts::AlertStats`]); zero while it does not run.
struct AlertGauges {
    examined: Gauge,
    dropped: Gauge,
    raised: Gauge,
    unstored: Gauge,
    delivered: Gauge,
    retries: Gauge,
    undelivered: Gauge,
}

impl AlertGauges {
    fn register(registry: &mut Registry) -> AlertGauges {
        let g = AlertGauges {
            examined: Gauge::default(),
            dropped: Gauge::default(),
            raised: Gauge::default(),
            unstored: Gauge::default(),
            delivered: Gauge::default(),
            retries: Gauge::default(),
            undelivered: Gauge::default(),
        };
        for (name, help, gauge) in [
            (
                "alerts_examined",
                "Durable tool events the alert stage examined since start",
                &g.examined,
            ),
            (
                "alerts_dropped",
                "Durable tool events not examined for alerts since start because the alert queue was full (alerts.queue_capacity)",
                &g.dropped,
            ),
            (
                "alerts_raised",
                "Alerts raised since start (one per user and kind per alerts.window_ms)",
                &g.raised,
            ),
            (
                "alerts_unstored",
                "Alerts the audit store did not take since start (they are in the log)",
                &g.unstored,
            ),
            (
                "alerts_webhook_delivered",
                "Alerts the webhook receiver accepted since start",
                &g.delivered,
            ),
            (
                "alerts_webhook_retries",
                "Webhook attempts after the first since start",
                &g.retries,
            ),
            (
                "alerts_webhook_undelivered",
                "Alerts the webhook never delivered since start (attempts exhausted, refused, or its queue full)",
                &g.undelivered,
            ),
        ] {
            registry.register(name, help, gauge.clone());
        }
        g
    }

    fn set(&self, stats: Option<&crate::alerts::AlertStats>) {
        use std::sync::atomic::Ordering::Relaxed;
        let Some(s) = stats else { return };
        let v = |a: &std::sync::atomic::AtomicU64| a.load(Relaxed).min(i64::MAX as u64) as i64;
        self.examined.set(v(&s.examined));
        self.dropped.set(v(&s.dropped));
        self.raised.set(v(&s.raised));
        self.unstored.set(v(&s.unstored));
        self.delivered.set(v(&s.delivered));
        self.retries.set(v(&s.retries));
        self.undelivered.set(v(&s.undelivered));
    }
}

/// The audit store's size, budget and health (see [`crate::audit::writer::StoreFigures`]).
struct StoreGauges {
    size: Gauge,
    max_size: Gauge,
    budget_ratio: Gauge<f64, std::sync::atomic::AtomicU64>,
    available: Gauge,
    lost: Gauge,
    refused: Gauge,
    outages: Gauge,
    budget_warnings: Gauge,
}

impl StoreGauges {
    fn register(registry: &mut Registry) -> StoreGauges {
        let g = StoreGauges {
            size: Gauge::default(),
            max_size: Gauge::default(),
            budget_ratio: Gauge::default(),
            available: Gauge::default(),
            lost: Gauge::default(),
            refused: Gauge::default(),
            outages: Gauge::default(),
            budget_warnings: Gauge::default(),
        };
        registry.register_with_unit(
            "audit_store_size",
            "Bytes the audit store folder holds (journals, checkpoints, index, keys): a walk every few seconds plus this process's appends",
            prometheus_client::registry::Unit::Bytes,
            g.size.clone(),
        );
        registry.register_with_unit(
            "audit_store_max_size",
            "audit.max_store_bytes (0: no budget)",
            prometheus_client::registry::Unit::Bytes,
            g.max_size.clone(),
        );
        registry.register(
            "audit_store_budget_ratio",
            "audit_store_size_bytes / audit.max_store_bytes (0 without a budget); a warning at 0.8, audit.on_store_failure at 1",
            g.budget_ratio.clone(),
        );
        registry.register(
            "audit_store_available",
            "1 while the audit store takes events, 0 during an outage (full disk, I/O error, budget reached)",
            g.available.clone(),
        );
        registry.register(
            "audit_events_lost",
            "Audit events not stored since start (audit.on_store_failure = allow, or cut off by a failed write or sync)",
            g.lost.clone(),
        );
        registry.register(
            "audit_events_refused",
            "Audit events refused since start because the store could not take them (their calls refused)",
            g.refused.clone(),
        );
        registry.register(
            "audit_store_outages",
            "Times since start the audit store stopped taking events",
            g.outages.clone(),
        );
        registry.register(
            "audit_store_budget_warnings",
            "Times since start the audit store crossed 80% of audit.max_store_bytes",
            g.budget_warnings.clone(),
        );
        g
    }

    fn set(&self, f: &crate::audit::writer::StoreFigures) {
        let max = f.max_bytes.unwrap_or(0);
        self.size.set(f.bytes.min(i64::MAX as u64) as i64);
        self.max_size.set(max.min(i64::MAX as u64) as i64);
        self.budget_ratio.set(if max > 0 {
            f.bytes as f64 / max as f64
        } else {
            0.0
        });
        self.available.set(i64::from(f.available));
        self.lost.set(f.lost as i64);
        self.refused.set(f.refused as i64);
        self.outages.set(f.outages as i64);
        self.budget_warnings.set(f.budget_warnings as i64);
    }
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        let mut registry = Registry::with_prefix("mcp_gateway");
        let requests = Family::<Request, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by method and status",
            requests.clone(),
        );
        let refusals = Family::<Request, Counter>::default();
        registry.register("refusals", "Requests refused before reaching a server (each is an audit event), by method and status", refusals.clone());
        let duration = Histogram::new(exponential_buckets(0.0001, 2.0, 20));
        registry.register(
            "http_request_duration_seconds",
            "Time to the response's headers (for SSE answers, to the stream's start)",
            duration.clone(),
        );
        let tool_calls = Family::<Upstream, Counter>::default();
        registry.register(
            "tool_calls",
            "tools/call requests received, by upstream",
            tool_calls.clone(),
        );
        let sessions = Gauge::default();
        registry.register(
            "sessions",
            "Server processes running (sessions' and shared ones)",
            sessions.clone(),
        );
        let shared_children = Gauge::default();
        registry.register(
            "shared_children",
            "Server processes shared by sessionless requests, running",
            shared_children.clone(),
        );
        let shared_started = Gauge::default();
        registry.register(
            "shared_children_started",
            "Server processes shared by sessionless requests started since start",
            shared_started.clone(),
        );
        let queue_depth = Gauge::default();
        registry.register(
            "audit_queue_depth",
            "Audit events waiting for the journal writer",
            queue_depth.clone(),
        );
        let events_written = Gauge::default();
        registry.register(
            "audit_events_written",
            "Audit events appended to the journal since start",
            events_written.clone(),
        );
        let syncs = Gauge::default();
        registry.register(
            "audit_syncs",
            "Journal fdatasync calls since start",
            syncs.clone(),
        );
        let sync_seconds = SyncSeconds::default();
        registry.register_collector(Box::new(sync_seconds.clone()));
        let store = StoreGauges::register(&mut registry);
        let alerts = AlertGauges::register(&mut registry);
        Metrics {
            registry,
            requests,
            refusals,
            duration,
            tool_calls,
            sessions,
            shared_children,
            shared_started,
            queue_depth,
            events_written,
            syncs,
            sync_seconds,
            store,
            alerts,
        }
    }

    /// Counts one answered request.
    pub(crate) fn answered(&self, method: &str, status: u16, took: Duration) {
        let labels = Request {
            method: http_method_label(method).to_string(),
            status,
        };
        self.requests.get_or_create(&labels).inc();
        self.duration.observe(took.as_secs_f64());
    }

    /// Counts one refusal.
    pub(crate) fn refused(&self, method: &str, status: u16) {
        self.refusals
            .get_or_create(&Request {
                method: rpc_method_label(method).to_string(),
                status,
            })
            .inc();
    }

    /// Counts `n` `tools/call` requests for `upstream`.
    pub(crate) fn tool_calls(&self, upstream: &str, n: usize) {
        self.tool_calls
            .get_or_create(&Upstream {
                upstream: upstream.to_string(),
            })
            .inc_by(n as u64);
    }

    /// The text exposition, with the audit writer's figures read now.
    pub(crate) fn render(
        &self,
        audit: &AuditSink,
        sessions: usize,
        pool: &crate::proxy::pool::Pool,
    ) -> String {
        self.sessions.set(sessions as i64);
        self.shared_children.set(pool.children() as i64);
        self.shared_started.set(pool.started() as i64);
        let (queued, written, syncs) = audit.figures();
        self.queue_depth.set(queued as i64);
        self.events_written.set(written as i64);
        self.syncs.set(syncs as i64);
        self.store.set(&audit.store_figures());
        self.alerts.set(audit.alert_stats().as_deref());
        if let Ok(mut h) = self.sync_seconds.0.lock() {
            *h = audit.sync_times();
        }
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;

    #[test]
    fn the_alert_stages_counters_are_in_the_exposition() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        let store = crate::store::Store::open_journal(&root, 1 << 20).unwrap();
        let (journal, keeper, _lock) = store.into_parts(&root);
        let (sink, threads) = crate::audit::writer::start(
            journal,
            keeper,
            crate::config::Durability::Sync,
            Duration::from_millis(5),
            16,
        )
        .unwrap();
        let config =
            Arc::new(crate::config::Config::parse(&dir.path().join("proxy.toml"), "").unwrap());
        let pool = crate::proxy::pool::Pool::new(config);
        let metrics = Metrics::new();
        let before = metrics.render(&sink, 0, &pool);
        assert!(before.contains("mcp_gateway_alerts_dropped 0"), "{before}");
        let (tap, _rx, stats) = crate::alerts::channel(1);
        sink.set_alert_tap(tap);
        stats.dropped.fetch_add(3, Ordering::Relaxed);
        stats.raised.fetch_add(2, Ordering::Relaxed);
        stats.undelivered.fetch_add(1, Ordering::Relaxed);
        let text = metrics.render(&sink, 0, &pool);
        assert!(text.contains("mcp_gateway_alerts_dropped 3"), "{text}");
        assert!(text.contains("mcp_gateway_alerts_raised 2"), "{text}");
        assert!(
            text.contains("mcp_gateway_alerts_webhook_undelivered 1"),
            "{text}"
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(sink.close());
        threads.join();
    }
}
