//! A bound on refusal events for requests without a verified identity.
//!
//! Every refusal is an audit event, but a refusal before authentication costs the sender
//! nothing: a scanner or a flood of bad tokens could otherwise write the trail as fast as it
//! sends (other gateways have been brought down by their own audit tables). So per source
//! address, the first [`PER_WINDOW`] such refusals of each [`WINDOW`] are recorded one by
//! one, and the rest as one summary event per HTTP status with their count when the window
//! closes. Nothing is lost from the count; refusals of an authenticated principal are always recorded one by
//! one (they are accountable), and the `/metrics` refusal counters count every refusal.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Refusal events recorded one by one per source address and window.
pub(super) const PER_WINDOW: u64 = 20;
/// The window.
pub(super) const WINDOW: Duration = Duration::from_secs(60);
/// Sources tracked at once; past this, new sources share one window (`*`).
const MAX_SOURCES: usize = 10_000;

/// Refusals of one source left out of the trail one by one, to record as one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Suppressed {
    /// The client address (or `*` for sources past [`MAX_SOURCES`]).
    pub(super) source: String,
    /// How many.
    pub(super) count: u64,
    /// The reason of the last one.
    pub(super) reason: String,
    /// The HTTP status they all had (401 for bad credentials, 403 for a bad origin, …).
    pub(super) status: u16,
}

#[derive(Debug)]
struct Window {
    started: Instant,
    recorded: u64,
    /// Refusals left out, by HTTP status: how many, and the last one's reason.
    suppressed: std::collections::BTreeMap<u16, (u64, String)>,
}

/// Windows per source address.
#[derive(Debug, Default)]
pub(super) struct RefusalLimiter(Mutex<HashMap<String, Window>>);

impl RefusalLimiter {
    /// Whether a refusal from `source` is recorded on its own; a window that closed with
    /// refusals left out is returned for its summary events (one per status).
    pub(super) fn admit(
        &self,
        source: &str,
        (reason, status): (&str, u16),
        now: Instant,
    ) -> (bool, Vec<Suppressed>) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let key = if map.len() >= MAX_SOURCES && !map.contains_key(source) {
            "*"
        } else {
            source
        };
        let mut closed = Vec::new();
        if let Some(w) = map.get(key)
            && now.duration_since(w.started) >= WINDOW
        {
            let w = map.remove(key).expect("present");
            closed = summary(key, w);
        }
        let w = map.entry(key.to_string()).or_insert_with(|| Window {
            started: now,
            recorded: 0,
            suppressed: Default::default(),
        });
        if w.recorded < PER_WINDOW {
            w.recorded += 1;
            (true, closed)
        } else {
            let (count, last) = w.suppressed.entry(status).or_default();
            *count += 1;
            reason.clone_into(last);
            (false, closed)
        }
    }

    /// Closes the windows past [`WINDOW`] (all of them with `all`, at shutdown); returns
    /// those with refusals left out.
    pub(super) fn close(&self, now: Instant, all: bool) -> Vec<Suppressed> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let keys: Vec<String> = map
            .iter()
            .filter(|(_, w)| all || now.duration_since(w.started) >= WINDOW)
            .map(|(k, _)| k.clone())
            .collect();
        keys.into_iter()
            .filter_map(|k| map.remove(&k).map(|w| summary(&k, w)))
            .flatten()
            .collect()
    }
}

/// One summary per HTTP status of the refusals left out of `w`.
fn summary(source: &str, w: Window) -> Vec<Suppressed> {
    w.suppressed
        .into_iter()
        .map(|(status, (count, reason))| Suppressed {
            source: source.to_string(),
            count,
            reason,
            status,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_the_quota_refusals_are_counted_and_summed_up_when_the_window_closes() {
        let l = RefusalLimiter::default();
        let t0 = Instant::now();
        for i in 0..PER_WINDOW {
            assert_eq!(
                l.admit("10.0.0.1", ("bad token", 401), t0),
                (true, Vec::new()),
                "{i}"
            );
        }
        for _ in 0..5 {
            assert!(!l.admit("10.0.0.1", ("bad token", 401), t0).0);
        }
        // Another source has its own quota.
        assert!(l.admit("10.0.0.2", ("bad token", 401), t0).0);
        assert!(l.close(t0 + Duration::from_secs(1), false).is_empty());
        // The next window: recorded again, and the summary of the last one comes out.
        let (recorded, closed) = l.admit("10.0.0.1", ("expired", 401), t0 + WINDOW);
        assert!(recorded);
        assert_eq!(
            closed,
            [Suppressed {
                source: "10.0.0.1".into(),
                count: 5,
                reason: "bad token".into(),
                status: 401,
            }]
        );
        for _ in 0..PER_WINDOW + 2 {
            l.admit("10.0.0.1", ("expired", 401), t0 + WINDOW);
        }
        // Refusals of another status are summed up apart, each under its own status.
        l.admit("10.0.0.1", ("origin not allowed", 403), t0 + WINDOW);
        let closed = l.close(t0 + WINDOW, true);
        let got: Vec<(u16, u64, &str)> = closed
            .iter()
            .map(|s| (s.status, s.count, s.reason.as_str()))
            .collect();
        assert_eq!(got, [(401, 3, "expired"), (403, 1, "origin not allowed")]);
    }
}
