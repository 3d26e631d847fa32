//! `[alerts.webhook]`: each alert's event JSON POSTed to a receiver, signed, retried.
//!
//! # The request
//!
//! `POST url` with `Content-Type: application/json`, the body the alert event as `alerts
//! --json` prints it (but with its personal fields in clear: the receiver is the operator's),
//! and these headers (the convention of Stripe's and GitHub's webhooks):
//!
//! * `X-MCP-Audit-Signature: t=UNIX_SECONDS,v1=HEX`: HEX is the lowercase hex HMAC-SHA256
//!   (RFC 2104, FIPS 180-4) under the secret of `secret_file`, over the bytes
//!   `UNIX_SECONDS` `.` `BODY`. A receiver recomputes it, compares in constant time, and
//!   refuses a `t` older than a few minutes (a replay);
//! * `X-MCP-Audit-Delivery: EVENT_ID`: the alert's event id, the same on every attempt (a
//!   receiver that saw it already can answer 2xx and drop it);
//! * `X-MCP-Audit-Attempt: N`: 1 for the first attempt.
//!
//! # Retries
//!
//! A 2xx answer delivers. A connection failure, a timeout (`timeout_ms`), 408, 429 or 5xx is
//! tried again, up to `max_attempts` attempts, after `backoff_ms` doubling each time (at most
//! 60 s) with jitter (a random share of up to half of it taken off, so that many proxies do
//! not retry in step). Any other answer is final. Each attempt is signed anew (a new `t`).
//!
//! Deliveries run one at a time on a thread of their own with a queue of [`QUEUE`] alerts;
//! an alert that does not fit, or whose attempts are exhausted, is counted
//! ([`super::AlertStats::undelivered`]) and logged, never waited for. The secret is never
//! logged. At shutdown the queue gets [`CLOSE_GRACE`] to drain.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use http::{HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use sha2::Sha256;

use super::{AlertError, AlertStats};
use crate::audit::AuditEvent;
use crate::config::WebhookConfig;

/// Alerts waiting for delivery at most.
pub const QUEUE: usize = 256;
/// How long shutdown waits for deliveries in progress and queued.
pub const CLOSE_GRACE: Duration = Duration::from_secs(10);
/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// The signature header.
pub const SIGNATURE: &str = "x-mcp-audit-signature";
/// The delivery id header.
pub const DELIVERY: &str = "x-mcp-audit-delivery";
/// The attempt number header.
pub const ATTEMPT: &str = "x-mcp-audit-attempt";

type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// `t=SECONDS,v1=HEX` for `body` at `seconds` (see the module docs).
pub fn signature(secret: &[u8], seconds: u64, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(seconds.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "t={seconds},v1={}",
        crate::policy::hex(&mac.finalize().into_bytes())
    )
}

/// The delivery thread's handle.
#[derive(Debug)]
pub struct Webhook {
    tx: tokio::sync::mpsc::Sender<(String, Vec<u8>)>,
    /// Set when the proxy stops: deliveries get [`CLOSE_GRACE`] from then.
    closing: Arc<std::sync::OnceLock<Instant>>,
    thread: std::thread::JoinHandle<()>,
    stats: Arc<AlertStats>,
}

impl Webhook {
    /// Builds the client (TLS roots: `ca_file`, else the system's) and starts the thread.
    pub fn start(config: WebhookConfig, stats: Arc<AlertStats>) -> Result<Webhook, AlertError> {
        let https = config.url.scheme_str() == Some("https");
        let tls = crate::proxy::remote::client_tls(config.ca_file.as_deref(), https)
            .map_err(|e| AlertError::Webhook(String::from(e)))?;
        let (tx, rx) = tokio::sync::mpsc::channel(QUEUE);
        let thread_stats = stats.clone();
        let closing: Arc<std::sync::OnceLock<Instant>> = Arc::default();
        let thread_closing = closing.clone();
        let thread = std::thread::Builder::new()
            .name("alerts-webhook".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!(error = %e, "alert webhook cannot start its runtime; alerts are not POSTed");
                        return;
                    }
                };
                runtime.block_on(deliver_all(config, tls, rx, thread_stats, thread_closing));
            })
            .map_err(|source| AlertError::Thread {
                what: "webhook",
                source,
            })?;
        Ok(Webhook {
            tx,
            closing,
            thread,
            stats,
        })
    }

    /// Queues one alert; never waits (a full queue counts it undelivered).
    pub fn send(&self, event: &AuditEvent) {
        let body = match serde_json::to_vec(event) {
            Ok(b) => b,
            Err(e) => {
                self.stats.undelivered.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, "alert could not be encoded for the webhook");
                return;
            }
        };
        if self
            .tx
            .try_send((event.event_id.to_string(), body))
            .is_err()
        {
            self.stats.undelivered.fetch_add(1, Ordering::Relaxed);
            tracing::error!(event_id = %event.event_id, queue = QUEUE, "alert webhook queue full: alert not delivered (the receiver is slow or down)");
        }
    }

    /// Lets the queue drain (at most [`CLOSE_GRACE`]) and stops.
    pub fn close(self) {
        let _ = self.closing.set(Instant::now());
        drop(self.tx);
        let _ = self.thread.join();
    }
}

async fn deliver_all(
    config: WebhookConfig,
    tls: tokio_rustls::rustls::ClientConfig,
    mut rx: tokio::sync::mpsc::Receiver<(String, Vec<u8>)>,
    stats: Arc<AlertStats>,
    closing: Arc<std::sync::OnceLock<Instant>>,
) {
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(config.timeout));
    http.enforce_http(false);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector);
    while let Some((id, body)) = rx.recv().await {
        let result = if closing.get().is_some_and(|c| c.elapsed() >= CLOSE_GRACE) {
            Err((0, "the proxy stopped before it could be sent".to_string()))
        } else {
            deliver(&client, &config, &id, Bytes::from(body), &stats, &closing).await
        };
        match result {
            Ok(attempts) => {
                stats.delivered.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(event_id = %id, attempts, "alert delivered to the webhook");
            }
            Err((attempts, why)) => {
                stats.undelivered.fetch_add(1, Ordering::Relaxed);
                tracing::error!(event_id = %id, attempts, error = %why, url = %origin(&config.url), "alert webhook delivery failed");
            }
        }
    }
}

/// `scheme://host:port` of the URL: never its path or query (which may hold a token).
fn origin(url: &http::Uri) -> String {
    format!(
        "{}://{}",
        url.scheme_str().unwrap_or(""),
        url.authority().map_or("", |a| a.as_str())
    )
}

/// Tries one alert until delivered, final, out of attempts or past `deadline`.
async fn deliver(
    client: &HttpClient,
    config: &WebhookConfig,
    id: &str,
    body: Bytes,
    stats: &AlertStats,
    closing: &std::sync::OnceLock<Instant>,
) -> Result<u32, (u32, String)> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        if attempt > 1 {
            stats.retries.fetch_add(1, Ordering::Relaxed);
        }
        let why = match once(client, config, id, body.clone(), attempt).await {
            Ok(status) if status.is_success() => return Ok(attempt),
            Ok(status)
                if status.is_server_error()
                    || status == StatusCode::TOO_MANY_REQUESTS
                    || status == StatusCode::REQUEST_TIMEOUT =>
            {
                format!("the receiver answered {status}")
            }
            Ok(status) => {
                return Err((
                    attempt,
                    format!("the receiver answered {status} (not retried)"),
                ));
            }
            Err(why) => why,
        };
        if attempt >= config.max_attempts {
            return Err((
                attempt,
                format!("{why}; gave up after {attempt} attempts (alerts.webhook.max_attempts)"),
            ));
        }
        let wait = backoff(config.backoff, attempt);
        if closing
            .get()
            .is_some_and(|c| c.elapsed() + wait >= CLOSE_GRACE)
        {
            return Err((attempt, format!("{why}; the proxy is stopping")));
        }
        tracing::warn!(event_id = %id, attempt, wait_ms = wait.as_millis() as u64, error = %why, "alert webhook attempt failed; retrying");
        tokio::time::sleep(wait).await;
    }
}

/// The wait after attempt `n` (1-based): `base` × 2^(n-1), at most [`MAX_BACKOFF`], less a
/// random share of up to half of it.
pub fn backoff(base: Duration, n: u32) -> Duration {
    let full = base
        .saturating_mul(1u32 << (n - 1).min(20))
        .min(MAX_BACKOFF);
    let mut r = [0u8; 2];
    let jitter = match getrandom::getrandom(&mut r) {
        Ok(()) => f64::from(u16::from_le_bytes(r)) / f64::from(u16::MAX),
        Err(_) => 0.5,
    };
    full.mul_f64(1.0 - jitter / 2.0)
}

async fn once(
    client: &HttpClient,
    config: &WebhookConfig,
    id: &str,
    body: Bytes,
    attempt: u32,
) -> Result<StatusCode, String> {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let signed = signature(&config.secret, seconds, &body);
    let request = Request::builder()
        .method(Method::POST)
        .uri(config.url.clone())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(
            http::header::USER_AGENT,
            concat!("mcp-audit-proxy/", env!("CARGO_PKG_VERSION")),
        )
        .header(
            SIGNATURE,
            HeaderValue::from_str(&signed).map_err(|e| e.to_string())?,
        )
        .header(
            DELIVERY,
            HeaderValue::from_str(id).map_err(|e| e.to_string())?,
        )
        .header(ATTEMPT, attempt)
        .body(Full::new(body))
        .map_err(|e| e.to_string())?;
    let answer = tokio::time::timeout(config.timeout, async {
        let response = client.request(request).await.map_err(|e| {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                text.push_str(": ");
                text.push_str(&s.to_string());
                source = s.source();
            }
            text
        })?;
        let status = response.status();
        // Read (and drop) the body so the connection can be reused.
        let _ = response.into_body().collect().await;
        Ok::<_, String>(status)
    })
    .await;
    match answer {
        Ok(r) => r,
        Err(_) => Err(format!(
            "no answer within {} ms (alerts.webhook.timeout_ms)",
            config.timeout.as_millis()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_over_time_dot_body() {
        // Computed independently: Python's hmac.new(b"Jefe", b"1700000000.{}", sha256).
        assert_eq!(
            signature(b"Jefe", 1_700_000_000, b"{}"),
            "t=1700000000,v1=d3793e2b4103edfbd98cc19591832f5fad701d413db9fcae0ae7dab8184ed207"
        );
        assert_ne!(
            signature(b"Jefe", 1_700_000_001, b"{}"),
            signature(b"Jefe", 1_700_000_000, b"{}"),
            "the time is signed"
        );
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let base = Duration::from_millis(100);
        for n in 1..=4u32 {
            let full = 100u64 << (n - 1);
            let w = backoff(base, n).as_millis() as u64;
            assert!(w >= full / 2 && w <= full, "attempt {n}: {w} ms");
        }
        assert!(backoff(base, 30) <= MAX_BACKOFF);
    }
}
