//! Calls that became tasks (MCP 2025-11-25 "Tasks"): a `tools/call` answered with a
//! `CreateTaskResult` ends `task` in the trail, and its real outcome comes later, as the
//! answer to `tasks/result`, or as a cancellation the client asked for with `tasks/cancel`.
//! In the 2026-07-28 Tasks extension (`io.modelcontextprotocol/tasks`, SEP-2663) the outcome
//! comes in a `tasks/get` answer at a terminal status (`completed` with the `result`,
//! `failed` with the `error`, `cancelled`). Each call's outcome is recorded once as such; a
//! later answer carrying it again is recorded as fetched again.

use std::sync::MutexGuard;

use super::owners;
use super::*;

impl State {
    /// What a client's `tasks/result` or `tasks/cancel` waits for: the call the task named in
    /// `params` became (the latest, if a server reused the task id), else nothing.
    pub(super) fn task_request(&mut self, method: &str, params: Option<&RawValue>) -> Pending {
        let task = crate::mcp::task_of_params(params);
        let call = task.and_then(|t| self.tasks.iter().rfind(|(k, _)| *k == t));
        match (method, call) {
            ("tasks/result", Some((_, call))) => Pending::TaskResult(Box::new(call.clone())),
            ("tasks/get", Some((_, call))) => Pending::TaskGet(Box::new(call.clone())),
            ("tasks/cancel", Some((_, call))) if self.task_cancels.len() < MAX_ENDED => {
                self.task_cancels.insert(call.access_id);
                Pending::TaskCancel(call.access_id)
            }
            _ => Pending::Other,
        }
    }
}

impl Pipeline {
    /// The answer to a `tasks/result` about `call`'s task: the call's real outcome, or, an
    /// error after the client asked to cancel the task, its cancellation.
    pub(super) fn task_result_answered(
        &self,
        mut st: MutexGuard<'_, State>,
        call: Call,
        id: &RequestId,
        size: usize,
        body: ResponseBody<'_>,
    ) -> Delivery {
        let asked = st.task_cancels.remove(&call.access_id);
        let cancelled = asked && matches!(body, ResponseBody::Error(_));
        if cancelled {
            // Ended: the answer to the tasks/cancel ends nothing more.
            st.tasks.retain(|(_, c)| c.access_id != call.access_id);
        }
        drop(st);
        if cancelled {
            return self.task_cancelled(call, id, body);
        }
        self.end_task_via(call, id, size, body, false, "tasks/result")
    }

    /// The answer to a `tasks/cancel` about the task call `of` became: a success ends the
    /// call `cancelled`, unless a `tasks/result` about it still waits (its answer ends it);
    /// `None` when it ends nothing.
    pub(super) fn task_cancel_answered(
        &self,
        mut st: MutexGuard<'_, State>,
        of: EventId,
        id: &RequestId,
        body: ResponseBody<'_>,
    ) -> Option<Delivery> {
        let waited = st
            .pending
            .values()
            .any(|p| matches!(p, Pending::TaskResult(c) if c.access_id == of));
        // In the 2026-07-28 Tasks extension the acknowledgement of a `tasks/cancel` is not a
        // cancellation (the task may still complete, and MAY end `cancelled`): the call ends
        // when a `tasks/get` answer says how, its side `client` as the client asked.
        let cooperative = st
            .tasks
            .iter()
            .any(|(_, c)| c.access_id == of && c.era == crate::mcp::Era::V2026);
        let ended = match body {
            ResponseBody::Result(_) if waited || cooperative => None,
            ResponseBody::Result(_) => {
                st.task_cancels.remove(&of);
                // A tasks/result the client cancelled may still be answered: that late
                // answer is only forwarded now, the call having ended here.
                for late in st.cancelled.values_mut() {
                    if matches!(late, Pending::TaskResult(c) if c.access_id == of) {
                        *late = Pending::Other;
                    }
                }
                let at = st.tasks.iter().rposition(|(_, c)| c.access_id == of);
                at.and_then(|at| st.tasks.remove(at)).map(|(_, call)| call)
            }
            _ => {
                st.task_cancels.remove(&of);
                None
            }
        };
        drop(st);
        ended.map(|call| self.task_cancelled(call, id, body))
    }

    /// The answer to a 2026-07-28 `tasks/get` about the task `call` became: at a terminal
    /// status, the call's end (its `result` or `error` recorded as a call's answer is,
    /// scanned, and masked under `redact_results`, the whole answer masked as any answer
    /// is); `None` at any other status (`working`, `input_required`), or when it cannot be
    /// read as a task: then it is an answer like any other.
    pub(super) fn task_got(
        &self,
        call: Call,
        id: &RequestId,
        size: usize,
        body: ResponseBody<'_>,
    ) -> Option<Delivery> {
        #[derive(serde::Deserialize)]
        struct Detailed<'a> {
            #[serde(rename = "resultType", borrow)]
            result_type: Option<std::borrow::Cow<'a, str>>,
            #[serde(borrow)]
            status: std::borrow::Cow<'a, str>,
            #[serde(borrow)]
            result: Option<&'a RawValue>,
            #[serde(borrow)]
            error: Option<&'a RawValue>,
        }
        let ResponseBody::Result(raw) = body else {
            return None;
        };
        let task = serde_json::from_str::<Detailed>(raw.get()).ok()?;
        // The extension's answer says `resultType: "complete"` (it MUST); a 2025-11-25
        // `tasks/get` answers a bare task, whose outcome comes from `tasks/result`.
        if task.result_type.as_deref() != Some("complete") {
            return None;
        }
        let outcome = match (&*task.status, task.result, task.error) {
            ("completed", Some(result), _) => ResponseBody::Result(result),
            ("failed", _, Some(error)) => ResponseBody::Error(error),
            ("cancelled", _, _) => {
                let mut st = self.state();
                if st.task_outcomes.iter().any(|(a, _)| *a == call.access_id) {
                    return None;
                }
                let asked = st.task_cancels.remove(&call.access_id);
                drop(st);
                return Some(if asked {
                    self.task_cancelled(call, id, body)
                } else {
                    self.task_ended(
                        call,
                        id,
                        body,
                        Side::Upstream,
                        "the server cancelled the task the call became (tasks/get: cancelled)",
                    )
                });
            }
            _ => return None,
        };
        Some(
            match self.end_task_via(call, id, size, outcome, false, "tasks/get") {
                // The client gets the whole `tasks/get` answer, masked as any answer is.
                Delivery::Forward { ack, ended, .. } => Delivery::Forward {
                    ack,
                    ended,
                    rewritten: self.redact_answer(id, body),
                },
                other => other,
            },
        )
    }

    /// Ends `call` `cancelled` (side `client`): the client cancelled the task it became
    /// (`tasks/cancel`), as the server's answer `body` to request `answers` (that
    /// `tasks/cancel`, or a `tasks/result` the cancellation failed) confirms. The answer is
    /// forwarded as it is.
    fn task_cancelled(&self, call: Call, answers: &RequestId, body: ResponseBody<'_>) -> Delivery {
        self.task_ended(
            call,
            answers,
            body,
            Side::Client,
            "the client cancelled the task the call became (tasks/cancel)",
        )
    }

    /// Ends `call` `cancelled` on `side`'s doing, for `why`; the answer `body` to request
    /// `answers` is forwarded, masked as any answer is.
    fn task_ended(
        &self,
        call: Call,
        answers: &RequestId,
        body: ResponseBody<'_>,
        side: Side,
        why: &str,
    ) -> Delivery {
        let event = self.failure_event(&call, Outcome::Cancelled, side, None, why);
        // Later answers saying so again (each poll of a cancelled task) are not new ends.
        self.remember_outcome(call.access_id, event.event_id);
        let rewritten = self.redact_answer(answers, body);
        match self.audit.record(&event) {
            Ok(ack) => Delivery::Forward {
                ack,
                ended: None,
                rewritten,
            },
            Err(e) => Delivery::Replace(refused_by_audit(answers, &e)),
        }
    }
}

/// What a task id or method is cut to where the trail quotes it (a server's ids are short;
/// a client's may be anything).
pub(super) const QUOTED_CHARS: usize = 128;

impl Pipeline {
    /// A task request (`tasks/get`, `tasks/result`, `tasks/cancel`, `tasks/update`, or a
    /// loose spelling of one) through the gateway: passed when its one `taskId` names a task
    /// this principal's requests created on this upstream; otherwise refused as an unknown
    /// task (`-32602`, whatever the id: another principal's, never seen, forgotten past the
    /// cap, or unreadable), and recorded as a refused request (a `tool_failure`, `refused`,
    /// its `action` the method), never forwarded.
    pub(super) fn task_owned(
        &self,
        id: &RequestId,
        method: &str,
        params: Option<&RawValue>,
    ) -> Result<(), Refusal> {
        let Some(owned) = &self.owned else {
            return Ok(());
        };
        let task = owners::the_task_id(params);
        if let Some(task) = &task
            && owned.lock().unwrap_or_else(|p| p.into_inner()).owns(task)
        {
            return Ok(());
        }
        let policy = self.policy.current();
        let shown = |text: &str| {
            let text: String = text.chars().take(QUOTED_CHARS).collect();
            match policy.guarded(&text) {
                true => policy.protect_text(&text),
                false => text,
            }
        };
        let reason = match &task {
            Some(task) => format!(
                "task {:?} is not one this principal's requests created on upstream {:?} through the gateway (never created by them, another principal's, or forgotten past the {} tasks kept per principal and upstream); refused as an unknown task, not forwarded: the upstream sees every principal under the gateway's one credential",
                shown(task),
                self.info.upstream,
                owners::MAX_OWNED_TASKS
            ),
            None => "the request names no one task: its params hold no `taskId` string, or more than one member a reader could take for it; refused as an unknown task, not forwarded".to_string(),
        };
        tracing::warn!(request_id = %id, method = %method.escape_debug(), user = %self.info.user_id, "task request about a task not the principal's refused");
        let call = self.bare_call(Some(id), params);
        let mut event = self.failure_event(
            &call,
            Outcome::Refused,
            Side::Client,
            Some(INVALID_PARAMS),
            &reason,
        );
        event.action = shown(method);
        // A request, not a call: no access event to link to.
        event.linked_event_id = None;
        let event_id = match self.audit.record(&event) {
            Ok(_) => Some(event.event_id),
            Err(e) => {
                tracing::error!(error = %e, "refused task request could not be recorded");
                None
            }
        };
        Err(Refusal {
            id: Some(id.clone()),
            code: INVALID_PARAMS,
            message: "mcp-audit-proxy refused the request: unknown task".to_string(),
            event: event_id,
            extra: None,
        })
    }

    /// Keeps the task an answer created (a `CreateTaskResult` answering a `tools/call`, or
    /// another request the client made task-augmented) as this principal's.
    pub(super) fn own_created_task(&self, found: &Answered, result: &RawValue) {
        let Some(owned) = &self.owned else {
            return;
        };
        if !matches!(
            found,
            Answered::Call(_)
                | Answered::Ended(..)
                | Answered::Pending(Pending::Other)
                | Answered::Cancelled(Pending::Other)
        ) {
            return;
        }
        // Most answers create no task: no parse for them.
        if memchr::memmem::find(result.get().as_bytes(), b"taskId").is_none() {
            return;
        }
        if let Some(task) = crate::mcp::task_id(result) {
            owned.lock().unwrap_or_else(|p| p.into_inner()).own(&task);
        }
    }

    /// The answer to a `tasks/list` through the gateway: the caller's own tasks only, the
    /// rest of the result as the server wrote it, masked as any answer is (`None`: as it
    /// came). One that cannot be read to take the others out is withheld (an error in its
    /// place, recorded): the client gets no task it cannot be shown to own.
    pub(super) fn own_tasks_listed(
        &self,
        id: &RequestId,
        body: ResponseBody<'_>,
    ) -> Result<Option<String>, Refusal> {
        let (Some(owned), ResponseBody::Result(result)) = (&self.owned, body) else {
            return Ok(self.redact_answer(id, body));
        };
        let kept = {
            let mut owned = owned.lock().unwrap_or_else(|p| p.into_inner());
            owners::own_tasks_only(result.get(), |t| owned.owns(t))
        };
        match kept {
            Ok(None) => Ok(self.redact_answer(id, body)),
            Ok(Some(kept)) => {
                let Ok(kept) = RawValue::from_string(kept) else {
                    return Err(self.listing_withheld(id, "the kept tasks are not valid JSON"));
                };
                Ok(self
                    .redact_answer(id, ResponseBody::Result(&kept))
                    .or_else(|| {
                        let mut line = rebuilt_message(Some(id), None, &[]);
                        line.pop();
                        line.push_str(",\"result\":");
                        line.push_str(kept.get());
                        line.push('}');
                        Some(line)
                    }))
            }
            Err(why) => Err(self.listing_withheld(id, &why)),
        }
    }

    /// A `tasks/list` answer withheld: recorded (`tool_failure`, `refused`, side `upstream`),
    /// and an error for the client.
    fn listing_withheld(&self, id: &RequestId, why: &str) -> Refusal {
        let reason = format!(
            "the tasks/list answer was withheld: it could not be read to keep only this principal's tasks ({why})"
        );
        tracing::warn!(request_id = %id, error = %why, "tasks/list answer withheld");
        let call = self.bare_call(Some(id), None);
        let mut event = self.failure_event(
            &call,
            Outcome::Refused,
            Side::Upstream,
            Some(INTERNAL_ERROR),
            &reason,
        );
        event.action = "tasks/list".into();
        event.linked_event_id = None;
        let event_id = self.audit.record(&event).ok().map(|_| event.event_id);
        Refusal {
            id: Some(id.clone()),
            code: INTERNAL_ERROR,
            message: format!("mcp-audit-proxy withheld the task list: {why}"),
            event: event_id,
            extra: None,
        }
    }

    /// Whether a server's task notification (`notifications/tasks/status`, the 2026-07-28
    /// extension's `notifications/tasks`) names, by its `taskId`, a task that is not this
    /// principal's, or names one a reader could read two ways: it is dropped, as a request
    /// about that task would be refused. One without a `taskId` is passed on (a shape the
    /// proxy does not know is not judged by it).
    pub(super) fn foreign_task_notice(&self, method: &str, params: Option<&RawValue>) -> bool {
        let Some(owned) = &self.owned else {
            return false;
        };
        if !method.starts_with("notifications/tasks") {
            return false;
        }
        let names_a_task = params
            .and_then(|p| {
                serde_json::from_str::<crate::jsonrpc::salvage::Members<'_>>(p.get()).ok()
            })
            .is_some_and(|m| {
                m.0.iter()
                    .any(|(name, _)| crate::jsonrpc::names::same_name(name, "taskId"))
            });
        if !names_a_task {
            return false;
        }
        match owners::the_task_id(params) {
            Some(task) => !owned.lock().unwrap_or_else(|p| p.into_inner()).owns(&task),
            None => true,
        }
    }
}
