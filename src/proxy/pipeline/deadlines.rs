//! Calls past their deadline (`limits.call_timeout_ms`), and what moves a deadline.
//!
//! A call's `notifications/progress` (MCP 2025-11-25 "Utilities: Progress" and "Timeouts"):
//! progress shows that work is happening, so each one starts the call's timeout again
//! (`limits.call_timeout_ms`), never past the maximum from the call's start
//! (`limits.call_timeout_max_ms`, the limit MCP says to enforce regardless of progress). A
//! call that ended here (timed out, or failed by the proxy) has had its answer: progress the
//! server still reports on it is not passed on, since MCP lets progress name only operations
//! in progress.
//!
//! A server's `elicitation/create` or `sampling/createMessage` (2025 revisions: a server
//! request in the middle of a call): a person, or the client's model, works for the server
//! until the client answers, which the server's call waits for. While one is unanswered (for
//! at most `limits.call_timeout_ms` since it went out), no call times out; its answer starts
//! every call's timeout again, as progress does. Over stdio the request names no call, so it
//! holds them all; `limits.call_timeout_max_ms` still ends any call.

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
            self.move_deadline(call, now);
            return false;
        }
        st.ended.values().any(|(call, why)| {
            matches!(why, EndedEarly::TimedOut | EndedEarly::Failed)
                && call.progress.as_ref() == Some(&token)
        })
    }

    /// The server cancelled its own request `id` (`notifications/cancelled`): if it was a
    /// question to a person or a model, nobody works on it any more.
    pub(super) fn withdrew_server_ask(&self, params: Option<&RawValue>) {
        if let Ok(Some(c)) = CancelledParams::read(params) {
            Self::question_withdrawn(&mut self.state(), &c.request_id);
        }
    }

    /// The client answered request `id`: if it was the server's question to a person or a
    /// model, every call's timeout starts again.
    pub(super) fn answered_server_ask(&self, id: &RequestId) {
        let mut st = self.state();
        // An SDK that matches ids as numbers takes `"5"` as the answer to 5.
        let question = asks::held_key(&st.questions, id).and_then(|k| st.questions.get_mut(&k));
        match question {
            Some(q) if q.waiting => q.waiting = false,
            _ => return,
        }
        let now = Instant::now();
        for call in st.calls.values_mut() {
            self.move_deadline(call, now);
        }
    }

    /// Moves `call`'s deadline to `limits.call_timeout_ms` from `now`, never earlier than it
    /// was and never past `limits.call_timeout_max_ms` from its start.
    fn move_deadline(&self, call: &mut Call, now: Instant) {
        if let (Some(timeout), Some(deadline)) = (self.call_timeout, call.deadline.as_mut()) {
            let moved = now + timeout;
            let moved = match self.call_timeout_max {
                Some(max) => moved.min(call.started + max),
                None => moved,
            };
            *deadline = (*deadline).max(moved);
        }
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
            // A question of the server's still waits for its answer: calls wait with it (up to
            // their maximum). One unanswered for a whole timeout no longer holds them.
            if let Some(timeout) = self.call_timeout {
                for q in st.questions.values_mut() {
                    q.waiting &= now.duration_since(q.at) < timeout;
                }
                // Held until the newest question is one timeout old, not longer.
                let waiting = st.questions.values().filter(|q| q.waiting);
                if let Some(latest) = waiting.map(|q| q.at).max() {
                    let hold = latest + timeout;
                    for call in st.calls.values_mut() {
                        let until = match self.call_timeout_max {
                            Some(max) => hold.min(call.started + max),
                            None => hold,
                        };
                        if let Some(d) = call.deadline.as_mut()
                            && *d <= now
                        {
                            *d = (*d).max(until);
                        }
                    }
                }
            }
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
