//! Calls past their deadline (`limits.call_timeout_ms`), and what moves a deadline.
//!
//! A call's `notifications/progress` (MCP 2025-11-25 "Utilities: Progress" and "Timeouts"):
//! progress shows that work is happening, so each one starts the call's timeout again
//! (`limits.call_timeout_ms`), never past the maximum from the call's start
//! (`limits.call_timeout_max_ms`, the limit MCP says to enforce regardless of progress). A
//! call that ended here (timed out, or failed by the proxy) has had its answer: progress the
//! server still reports on it is not passed on, since MCP lets progress name only operations
//! in progress.

use super::*;

impl Pipeline {
    /// Takes a server's `notifications/progress` with `params`: the call in flight whose
    /// request named its token gets its deadline moved. True when it reports on a call the
    /// proxy already ended for its client (then it is dropped).
    pub(super) fn progress_after_its_end(&self, params: Option<&RawValue>) -> bool {
        let Some(token) = crate::mcp::notified_progress_token(params) else {
            return false;
        };
        let now = Instant::now();
        let mut st = self.state();
        if let Some(call) = st
            .calls
            .values_mut()
            .find(|c| c.progress.as_ref() == Some(&token))
        {
            if let (Some(timeout), Some(deadline)) = (self.call_timeout, call.deadline.as_mut()) {
                let moved = now + timeout;
                let moved = match self.call_timeout_max {
                    Some(max) => moved.min(call.started + max),
                    None => moved,
                };
                *deadline = (*deadline).max(moved);
            }
            return false;
        }
        st.ended.values().any(|(call, why)| {
            matches!(why, EndedEarly::TimedOut | EndedEarly::Failed)
                && call.progress.as_ref() == Some(&token)
        })
    }

    /// The earliest deadline of a call or of a confirmation, for the timer.
    pub fn next_deadline(&self) -> Option<Instant> {
        let st = self.state();
        let calls = st.calls.values().filter_map(|c| c.deadline);
        calls.chain(st.awaiting.values().map(|a| a.deadline)).min()
    }

    /// Fails calls past their deadline (a reply for the client, a cancellation for the
    /// server) and blocks held calls whose confirmation did not come in time (a reply for the
    /// client, and a cancellation of the question); the routes go out in order.
    pub fn expire(&self, now: Instant) -> Vec<Route> {
        let mut routes = self.expire_confirmations(now);
        let expired: Vec<Call> = {
            let mut st = self.state();
            let ids: Vec<RequestId> = st
                .calls
                .iter()
                .filter(|(_, c)| c.deadline.is_some_and(|d| d <= now))
                .map(|(id, _)| id.clone())
                .collect();
            ids.iter().filter_map(|id| st.calls.remove(id)).collect()
        };
        expired
            .into_iter()
            .map(|call| {
                tracing::warn!(request_id = %call.request_id, tool = ?call.tool, "tool call timed out");
                let limit = match self.call_timeout_max {
                    Some(max) if call.started.elapsed() >= max => {
                        "limits.call_timeout_max_ms, however much progress it reports"
                    }
                    _ => "limits.call_timeout_ms",
                };
                let reason = format!(
                    "tool call timed out: no response after {} ms ({limit})",
                    call.started.elapsed().as_millis()
                );
                let reply = self.fail_with_reply(&call, Outcome::Timeout, REQUEST_TIMEOUT, reason);
                let cancel = message::cancelled(&call.request_id, "timed out in mcp-audit-proxy");
                self.state().end_early(call, EndedEarly::TimedOut);
                [Route::ToServer(Outbound::now(cancel)), Route::ToClient(reply)]
            })
            .for_each(|pair| routes.extend(pair));
        routes
    }
}
