//! The end of a call: the response described (outcome, content types, errors), its result
//! scanned with the policy the call started under, and the call's events built and recorded;
//! a call the client cancelled ended; an answer naming its call by another spelling of the id
//! put right.

use super::*;
use crate::mcp::ContentView;
use crate::policy::tree::{Node, Tree};

impl Pipeline {
    /// One message of the server (`raw`: its JSON text). An answer that names its request by
    /// another spelling of its id ([`twin`]: `"7"` for 7) is forwarded under the request's
    /// own id: clients that match ids exactly (rmcp, Go, C#) and those that read them as
    /// numbers (the TypeScript and Python SDKs, each its own way) then all take it for the
    /// call the trail ended with it, and a second answer under the exact id, which the trail
    /// would not pair with the call, finds the client's request gone.
    pub(super) fn server_message(&self, msg: &Message<'_>, size: usize, raw: &str) -> Delivery {
        let mut twin = None;
        let delivery = self.server_message_matched(msg, size, &mut twin);
        let Some(exact) = twin else {
            return delivery;
        };
        let Delivery::Forward {
            ack,
            ended,
            rewritten,
        } = delivery
        else {
            return delivery;
        };
        let text = rewritten.as_deref().unwrap_or(raw);
        let spliced = crate::proxy::pool::remap::spots(text.as_bytes())
            .and_then(|s| s.id)
            .map(|range| {
                let exact = exact.to_string();
                let line =
                    crate::proxy::pool::remap::splice(text.as_bytes(), vec![(range, &exact)]);
                String::from_utf8_lossy(trim_line_end(&line)).into_owned()
            });
        Delivery::Forward {
            ack,
            ended,
            rewritten: spliced.or(rewritten),
        }
    }

    /// Ends a call the client cancelled; the notification itself is forwarded.
    pub(super) fn cancel(&self, id: &RequestId, reason: Option<&str>) {
        let call = {
            let mut st = self.state();
            // `"7"` cancels request 7 for a server built on an official SDK (they read ids
            // as numbers: [`RequestId::sdk_number`]), so the trail must end that call too.
            let waiting = st
                .calls
                .keys()
                .chain(st.pending.keys())
                .chain(st.awaiting.values().map(|a| &a.call.request_id));
            let matched = matching(waiting, id);
            let id = matched.as_ref().unwrap_or(id);
            // A cancelled request of another kind may still be answered: its id stays in use.
            if let Some(pending) = st.pending.remove(id) {
                // A late answer to a cancelled `tasks/cancel` changes nothing of its task.
                let pending = match pending {
                    Pending::TaskCancel(_) => Pending::Other,
                    other => other,
                };
                st.cancelled.insert(id.clone(), pending);
            }
            // A call held for confirmation ends here; a late answer to its question is dropped.
            let held = st
                .awaiting
                .iter()
                .find(|(_, a)| a.call.request_id == *id)
                .map(|(ask, _)| ask.clone());
            match held.and_then(|ask| {
                st.forget_question(ask.clone());
                st.awaiting.remove(&ask)
            }) {
                Some(waiting) => {
                    st.withheld.insert(id.clone(), ());
                    Some((waiting.call, true))
                }
                None => st.calls.remove(id).map(|c| (c, false)),
            }
        };
        let Some((call, held)) = call else {
            return;
        };
        let why = match reason {
            Some(r) => format!("cancelled by the client: {r}"),
            None => "cancelled by the client".to_string(),
        };
        let event = self.failure_event(&call, Outcome::Cancelled, Side::Client, None, &why);
        if let Err(e) = self.audit.record(&event) {
            tracing::error!(error = %e, request_id = %id, "cancellation could not be recorded");
        }
        // Only a call the server has can answer late.
        if !held {
            self.state().end_early(call, EndedEarly::Cancelled);
        }
    }

    /// What a response says about its call: the end event's type, outcome and measurements,
    /// and the MRTR round key when the server asks for input.
    fn describe(
        &self,
        call: &Call,
        size: usize,
        body: ResponseBody<'_>,
    ) -> (EventType, Outcome, Metadata, Option<String>) {
        let mut meta = Metadata {
            output_size_bytes: Some(size as u64),
            ..Metadata::default()
        };
        match body {
            ResponseBody::Result(raw) => {
                match serde_json::from_str::<CallToolResultView>(raw.get()) {
                    Ok(view) => self.describe_view(call, meta, &view),
                    Err(e) => {
                        // A repeated key (`"isError"` twice): read as the client most likely
                        // reads it, the last copy winning (JavaScript's JSON.parse, Python's
                        // json, Go's encoding/json), not recorded as a success regardless.
                        let last = serde_json::from_str::<Value>(raw.get())
                            .ok()
                            .map(|v| v.to_string());
                        if let Some(Ok(view)) = last
                            .as_deref()
                            .map(serde_json::from_str::<CallToolResultView>)
                        {
                            let (kind, outcome, mut meta, round) =
                                self.describe_view(call, meta, &view);
                            add_reason(
                                &mut meta.reason,
                                format!(
                                    "the result can be read more than one way ({e}): recorded as read with the last copy of each key, as most clients read it"
                                ),
                            );
                            return (kind, outcome, meta, round);
                        }
                        // A non-boolean `isError` (`"true"`): the TypeScript SDK refuses the
                        // result, the Python SDK reads it as pydantic does; either way the
                        // client sees an error unless pydantic reads it as false.
                        let flag = serde_json::from_str::<Value>(raw.get())
                            .ok()
                            .and_then(|v| v.get("isError").cloned())
                            .filter(|f| !f.is_boolean());
                        if let Some(flag) = flag
                            && !lax_false(&flag)
                        {
                            meta.reason = Some(format!(
                                "result is not a readable CallToolResult ({e}): `isError` is {flag}, not a boolean; recorded as an error, as clients read it (the TypeScript SDK refuses the result, the Python SDK reads it as true or refuses it)"
                            ));
                            return (EventType::ToolExecution, Outcome::Error, meta, None);
                        }
                        meta.reason = Some(format!("result is not a readable CallToolResult: {e}"));
                        (EventType::ToolExecution, Outcome::Success, meta, None)
                    }
                }
            }
            ResponseBody::Error(raw) => {
                if let Ok(err) = serde_json::from_str::<ErrorView>(raw.get()) {
                    meta.error_code = err.code;
                    meta.error_messages = err
                        .message
                        .map(|m| {
                            m.chars()
                                .take(MAX_ERROR_CHARS + ERROR_MARGIN_CHARS)
                                .collect()
                        })
                        .into_iter()
                        .collect();
                }
                meta.failure_side = Some(Side::Upstream);
                (EventType::ToolFailure, Outcome::JsonrpcError, meta, None)
            }
        }
    }

    /// [`Pipeline::describe`] of a result read as a [`CallToolResultView`].
    fn describe_view(
        &self,
        call: &Call,
        mut meta: Metadata,
        view: &CallToolResultView<'_>,
    ) -> (EventType, Outcome, Metadata, Option<String>) {
        // A 2026-07-28 result names its server in `_meta` (helper-122: a client that sends
        // no `server/discover`, every sessionless request among them, left it unrecorded).
        if call.tool_version.is_none() {
            meta.tool_version = view
                .meta
                .as_ref()
                .and_then(|m| m.server_info.as_ref())
                .map(crate::mcp::Implementation::agent);
        }
        for c in &view.content {
            if !meta.content_types.iter().any(|t| *t == c.kind) {
                meta.content_types.push(c.kind.to_string());
            }
        }
        if let Some(requests) = &view.input_requests {
            meta.input_requests = requests.keys().map(|k| k.to_string()).collect();
        }
        let error_texts = || {
            view.content
                .iter()
                .filter_map(|c| c.text.as_deref())
                .take(MAX_ERROR_TEXTS)
                .map(|t| {
                    t.chars()
                        .take(MAX_ERROR_CHARS + ERROR_MARGIN_CHARS)
                        .collect()
                })
                .collect()
        };
        let task = view.result_type.as_deref() == Some("task") || view.task.is_some();
        let outcome = match view.result_type.as_deref() {
            Some("input_required") => Outcome::InputRequired,
            _ if task => {
                // A task and an error at once (helper-109 F5): a client that asked for a
                // task reads a `CreateTaskResult` (which has no `isError`), so the call
                // became the task; what the server said of an error is kept beside it.
                if view.is_error == Some(true) {
                    meta.error_messages = error_texts();
                    meta.reason = Some(
                        "the server answered with a task and isError: true; recorded as the task the call became (a client that asked for a task reads it so), the error's text kept".into(),
                    );
                }
                Outcome::Task
            }
            _ if view.is_error == Some(true) => {
                meta.error_messages = error_texts();
                Outcome::Error
            }
            _ => Outcome::Success,
        };
        let round = (outcome == Outcome::InputRequired).then(|| {
            meta.reason = Some("the server asked the client for input (MRTR)".into());
            round_key(
                call.tool.as_deref().unwrap_or_default(),
                view.request_state.as_deref(),
                meta.input_requests.iter().cloned(),
            )
        });
        (EventType::ToolExecution, outcome, meta, round)
    }

    /// Scans a call's end with the policy it started under: result classes raise the
    /// event's risk and tags, texts the event keeps (error messages, reasons) are stored
    /// protected and cut to length, and with `redact_results` the response the client gets is
    /// returned rewritten (or withheld, if it carries sensitive data and cannot be rewritten).
    ///
    /// `tree` is the result already read by [`result_tree`], when it was: it is scanned as it
    /// is instead of being parsed again into a `Value`. `answers` is the id of the request
    /// the message answers: the call's, or a `tasks/result`'s.
    fn assess_end(
        &self,
        call: &Call,
        answers: &RequestId,
        body: ResponseBody<'_>,
        tree: Option<&Tree<'_>>,
        event: &mut AuditEvent,
    ) -> Option<String> {
        let policy = call.policy.as_ref().filter(|p| p.enabled);
        let meta = &mut event.metadata;
        for m in meta.error_messages.iter_mut().chain(meta.reason.as_mut()) {
            if let Some(p) = policy {
                *m = p.protect_text(m);
            }
            if m.chars().count() > MAX_ERROR_CHARS {
                *m = m.chars().take(MAX_ERROR_CHARS).collect();
            }
        }
        let policy = policy?;
        let raw = match body {
            ResponseBody::Result(raw) => raw,
            // An error's message and data reach the client, and through it a model, as a
            // result's text does: with redact_results they are masked the same way.
            ResponseBody::Error(raw) if policy.redact_results => {
                return Self::redact_error(answers, policy, raw, event);
            }
            ResponseBody::Error(_) => return None,
        };
        if let Some(tree) = tree.filter(|_| !policy.redact_results) {
            self.raise_for_result(call, policy, &policy.scan_tree(&tree.root), event);
            return None;
        }
        // Strictly: with a repeated key, masking the copy a parser keeps could pass the other
        // on in clear (clients differ in which copy they keep).
        let Ok(value) = crate::policy::strict::parse_validated_exact(raw.get()) else {
            // Too deeply nested to parse, or a key repeated: tags from the raw text; a result
            // that must be redacted but cannot be is withheld, never passed on in clear.
            self.raise_for_result(call, policy, &policy.scan_text(raw.get()), event);
            if !(policy.redact_results && (policy.guarded(raw.get()) || raw.get().contains('\\'))) {
                return None;
            }
            add_reason(
                &mut event.metadata.reason,
                "the result carried sensitive data and could not be read one way only (a repeated key, or nesting too deep) to redact: withheld from the client",
            );
            let error = json!({
                "code": INTERNAL_ERROR,
                "message": "mcp-audit-proxy withheld the result: it carries sensitive data and cannot be read one way only (a repeated key, or nesting too deep) to redact (redact_results)",
                "data": {"event_id": event.event_id.to_string()},
            });
            return Some(rebuilt_message(Some(answers), None, &[("error", &error)]));
        };
        self.raise_for_result(call, policy, &policy.scan_result(&value), event);
        if !policy.redact_results {
            return None;
        }
        let (mut redacted, classes) = policy.redact(&value)?;
        // An input_required round's `requestState` is the server's own state (often signed):
        // the client must echo it as it came, or the server cannot resume (MCP 2026-07-28,
        // MRTR); it goes to the server, not to a model. Only there: on any other result a
        // `requestState` member is just more text a model reads, masked like the rest. A
        // task's id and a cursor are such handles too.
        super::refuse::keep_handles(&value, &mut redacted, true, &|t| {
            policy.holds_secret_or_card(t)
        });
        if redacted == value {
            return None;
        }
        event.metadata.redacted_for_client =
            classes.iter().map(|c| c.as_str().to_string()).collect();
        Some(rebuilt_message(
            Some(answers),
            None,
            &[("result", &redacted)],
        ))
    }

    /// The error answer the client gets under `redact_results`: the `error` object with the
    /// sensitive data in its strings (`message`, anything in `data`) masked; `None` when it
    /// carries none. An error too deeply nested to parse that carries some is withheld, as a
    /// result would be.
    fn redact_error(
        answers: &RequestId,
        policy: &Policy,
        raw: &serde_json::value::RawValue,
        event: &mut AuditEvent,
    ) -> Option<String> {
        let answer =
            |error: Value| Some(rebuilt_message(Some(answers), None, &[("error", &error)]));
        let error = match crate::policy::strict::parse_validated_exact(raw.get()) {
            Ok(error) => error,
            Err(_) if !(policy.guarded(raw.get()) || raw.get().contains('\\')) => return None,
            Err(_) => {
                add_reason(
                    &mut event.metadata.reason,
                    "the error carried sensitive data and could not be read one way only (a repeated key, or nesting too deep) to redact: withheld from the client",
                );
                return answer(json!({
                    "code": INTERNAL_ERROR,
                    "message": "mcp-audit-proxy withheld the error: it carries sensitive data and cannot be read one way only (a repeated key, or nesting too deep) to redact (redact_results)",
                    "data": {"event_id": event.event_id.to_string()},
                }));
            }
        };
        let (error, classes) = policy.redact(&error)?;
        event.metadata.redacted_for_client =
            classes.iter().map(|c| c.as_str().to_string()).collect();
        answer(error)
    }

    /// Raises an end event's risk and tags for the classes its result carries.
    fn raise_for_result(
        &self,
        call: &Call,
        policy: &Policy,
        classes: &[policy::classify::Class],
        event: &mut AuditEvent,
    ) {
        if classes.is_empty() {
            return;
        }
        let mut score = u32::from(call.score.unwrap_or(0));
        let mut tags: Vec<&'static str> = call.tags.clone();
        for class in classes {
            // Data the arguments already carried (an echo) does not count twice.
            if call.tags.contains(&class.tag()) {
                event.metadata.risk_reasons.push(format!(
                    "result contains {} (as the arguments did)",
                    class.as_str()
                ));
                continue;
            }
            let add = policy::class_score(*class);
            score += u32::from(add);
            event
                .metadata
                .risk_reasons
                .push(format!("result contains {} (+{add})", class.as_str()));
            if !tags.contains(&class.tag()) {
                tags.push(class.tag());
            }
        }
        tags.sort_unstable();
        let score = score.min(100) as u8;
        event.metadata.risk_score = Some(score);
        event.metadata.policy_version = Some(policy.version.clone());
        event.risk_level = event.risk_level.max(policy.level_of(score));
        event.compliance_tags = tags.iter().map(|t| t.to_string()).collect();
        self.rounds()
            .learnt
            .history
            .note(call.tool.as_deref().unwrap_or_default(), &tags);
    }

    pub(super) fn end_call(&self, call: Call, size: usize, body: ResponseBody<'_>) -> Delivery {
        let id = call.request_id.clone();
        self.end_call_noted(call, &id, size, body, None)
    }

    /// The server answered with an error that names no id (`"id": null`, or no `id` at all)
    /// while `call` was the one request in flight whose id it may not have read
    /// ([`State::take_call_of_unreadable_id`]): the error is recorded as the call's end, with
    /// a reason saying it was inferred, instead of the call waiting for
    /// `limits.call_timeout_ms` (600 s) to end as `timeout` (helper-114 F2: rmcp servers
    /// answer an id past `i64` so). The stdio wrapper's client gets the error as the server
    /// wrote it, without an id, as directly (unless `redact_results` rewrites it: the
    /// rewritten answer carries the call's id); the gateway sends it on the call's POST under
    /// the call's id (`http::session`).
    pub(super) fn unreadable_id_answered(
        &self,
        call: Call,
        size: usize,
        body: ResponseBody<'_>,
    ) -> Delivery {
        let id = call.request_id.clone();
        tracing::warn!(request_id = %id, "an error answer without an id taken as the answer to the one call whose id the server may not read");
        let note = format!(
            "the server answered with an error naming no id (JSON-RPC 2.0 §5: the request's id could not be read); recorded as this call's answer, the only request in flight whose id ({id}) is not an integer within 64 bits, which servers that read ids as integers cannot read; a stdio client got the error as the server wrote it, without an id, and a gateway client under its call's id"
        );
        self.end_call_noted(call, &id, size, body, Some(&note))
    }

    /// The answer to `method` about the task `call` became: a `tasks/result` (MCP 2025-11-25
    /// Tasks) or a 2026-07-28 `tasks/get` at a terminal status, `body` being the task's
    /// outcome (its result or error). The call's real outcome, recorded as a second end linked
    /// to its access event (whose first end says `task`), its result scanned and, under
    /// `redact_results`, masked as a call's result is. `cancelled`: the client had cancelled
    /// its request (the answer still reaches it, as a late answer to a cancelled request
    /// does).
    pub(super) fn end_task_via(
        &self,
        call: Call,
        answers: &RequestId,
        size: usize,
        body: ResponseBody<'_>,
        cancelled: bool,
        method: &str,
    ) -> Delivery {
        let access = call.access_id;
        let first = self
            .state()
            .task_outcomes
            .iter()
            .find(|(a, _)| *a == access)
            .map(|(_, end)| *end);
        let note = match first {
            Some(first) => format!(
                "the outcome of the task the call became, fetched again ({method}): it was first recorded as event {first}, and the tool did not run again"
            ),
            None if cancelled => format!(
                "the outcome of the task the call became, as {method} answered it after the client cancelled that request"
            ),
            None => format!("the outcome of the task the call became, as {method} answered it"),
        };
        let delivery = self.end_call_noted(call, answers, size, body, Some(&note));
        if first.is_none() {
            self.note_outcome(access, &delivery);
        }
        delivery
    }

    /// Keeps the end event a task's outcome was recorded as (`delivery`'s), for the call
    /// with access event `access`: later answers carrying it again say so.
    fn note_outcome(&self, access: EventId, delivery: &Delivery) {
        if let Delivery::Forward {
            ended: Some(ended), ..
        } = delivery
        {
            self.remember_outcome(access, ended.end);
        }
    }

    /// [`Self::note_outcome`] of end event `end`.
    pub(super) fn remember_outcome(&self, access: EventId, end: EventId) {
        let mut st = self.state();
        if st.task_outcomes.len() >= MAX_ENDED {
            st.task_outcomes.pop_front();
        }
        st.task_outcomes.push_back((access, end));
    }

    fn end_call_noted(
        &self,
        call: Call,
        answers: &RequestId,
        size: usize,
        body: ResponseBody<'_>,
        note: Option<&str>,
    ) -> Delivery {
        let tree = result_tree(&call, body);
        let view = tree.as_ref().and_then(|t| result_view(&t.root));
        let (event_type, outcome, mut meta, round) = match &view {
            Some(view) => {
                let meta = Metadata {
                    output_size_bytes: Some(size as u64),
                    ..Metadata::default()
                };
                self.describe_view(&call, meta, view)
            }
            None => self.describe(&call, size, body),
        };
        if let Some(note) = note {
            add_reason(&mut meta.reason, note);
        }
        if outcome == Outcome::Task
            && let ResponseBody::Result(raw) = body
            && let Some(task) = crate::mcp::task_id(raw)
        {
            let mut st = self.state();
            // A server that reuses a task id (helper-109 F5): its later `tasks/result` can no
            // longer be told apart, and is credited to this call; the trail says so here.
            if let Some(at) = st
                .tasks
                .iter()
                .position(|(t, c)| *t == task && c.access_id != call.access_id)
            {
                let earlier = st.tasks.remove(at).map(|(_, c)| c.access_id);
                if let Some(earlier) = earlier {
                    let quoted: String = task.chars().take(super::tasks::QUOTED_CHARS).collect();
                    let policy = self.policy.current();
                    let quoted = match policy.guarded(&quoted) {
                        true => policy.protect_text(&quoted),
                        false => quoted,
                    };
                    let note = format!(
                        "the server reused task id {quoted:?} of the call whose access is {earlier}: that call's outcome can no longer be told apart, and what tasks/result returns for the id is recorded as this call's"
                    );
                    add_reason(&mut meta.reason, note);
                }
            }
            if st.tasks.len() >= MAX_ENDED {
                st.tasks.pop_front();
            }
            st.tasks.push_back((task, call.clone()));
        }
        let mut event = self.call_event(&call, event_type, outcome, Some(meta));
        let rewritten = self.assess_end(&call, answers, body, tree.as_ref(), &mut event);
        if let Some(key) = round {
            // Linked to its retry when the retry arrives (by requestState, else by keys).
            // The person's accept holds for the retry within the time a person is given.
            let granted = call
                .consent
                .clone()
                .zip(call.policy.as_ref())
                .map(|(consent, p)| Granted {
                    consent,
                    until: Instant::now() + p.confirm_timeout,
                });
            self.rounds().remember(key, event.event_id, granted);
        }
        let end = event.event_id;
        match self.audit.record_owned(Box::new(event)) {
            Ok(ack) => {
                self.state()
                    .answered
                    .insert(answers.clone(), (call.clone(), EndedEarly::Answered(end)));
                Delivery::Forward {
                    ack,
                    ended: Some(Box::new(Ended {
                        call,
                        end,
                        answers: answers.clone(),
                    })),
                    rewritten,
                }
            }
            Err(e) => Delivery::Replace(refused_by_audit(answers, &e)),
        }
    }

    /// Records that the server's answers ending `ended` never reached the client: the write
    /// to it failed (`why`: its output closed, EPIPE). Their end events say what the server
    /// answered; each gets a `tool_failure` `shutdown` after it (side `client`), linked to the
    /// call's access event, whose reason names the end event the client did not receive.
    pub fn undelivered(&self, ended: Vec<Ended>, why: &str) {
        for e in ended {
            tracing::warn!(request_id = %e.call.request_id, "the answer to a call was not delivered to the client");
            let reason = format!(
                "the server's answer (event {}) was not delivered to the client: {why}",
                e.end
            );
            let event = self.failure_event(&e.call, Outcome::Shutdown, Side::Client, None, &reason);
            if let Err(err) = self.audit.record(&event) {
                tracing::error!(error = %err, request_id = %e.call.request_id, "that the answer was not delivered could not be recorded");
            }
        }
    }

    /// Routes a line of the server's for a client that is gone (a shared child's answer after
    /// the sessionless request that made the call has ended): recorded as any answer is
    /// (a late or repeated end), and each call it ends recorded as not delivered (`why`).
    pub fn from_server_to_nobody(&self, line: Bytes, why: &str) {
        fn ends(route: Route, out: &mut Vec<Ended>) {
            match route {
                Route::ToClient(mut o) => out.append(&mut o.ends),
                Route::Many(routes) => routes.into_iter().for_each(|r| ends(r, out)),
                Route::ToServer(_) | Route::Drop | Route::Taken => {}
            }
        }
        let mut ended = Vec::new();
        ends(self.from_server(line), &mut ended);
        if !ended.is_empty() {
            self.undelivered(ended, why);
        }
    }

    /// The server answered a call that had already ended (`answers`: the id its answer
    /// names): the tool ran, or the server says it did, so it is recorded.
    pub(super) fn late_answer(
        &self,
        call: &Call,
        answers: &RequestId,
        why: EndedEarly,
        size: usize,
        body: ResponseBody<'_>,
    ) -> Delivery {
        if call.late >= MAX_REPEATED {
            // A server that answers one call without end (one line held 100,000 copies)
            // would otherwise write two events per copy. The last one recorded says so.
            tracing::debug!(request_id = %answers, "answer to a call answered {MAX_REPEATED} times after it ended; dropped");
            self.state()
                .answered
                .insert(answers.clone(), (call.clone(), why));
            return Delivery::Drop;
        }
        let (event_type, outcome, mut meta, _) = self.describe(call, size, body);
        let what: String = match why {
            EndedEarly::Cancelled => {
                "the server answered after the client cancelled the call; the answer goes on toward the client as the server sent it (a `shutdown` event follows if it reached none)".into()
            }
            EndedEarly::TimedOut => {
                "the server answered after the call timed out in the proxy; the answer was not forwarded (the client had the timeout error)".into()
            }
            EndedEarly::Failed => {
                "the server answered a call the proxy had already failed (not delivered, or an answer refused); the answer was not forwarded (the client had the error)".into()
            }
            EndedEarly::Answered(first) => format!(
                "the server answered this call again after its answer (event {first}) had ended it; this answer goes on toward the client as the server sent it, though no request waits on the id any more (a `shutdown` event follows if it reached none)"
            ),
        };
        // First what makes it late, then what the answer itself said (an unreadable result).
        meta.reason = Some(match meta.reason.take() {
            Some(said) => format!("{what}; {said}"),
            None => what,
        });
        if call.late + 1 == MAX_REPEATED
            && let Some(reason) = meta.reason.as_mut()
        {
            reason.push_str(&format!("; it is answer {MAX_REPEATED} after the call ended: further ones are dropped, neither recorded nor forwarded"));
        }
        tracing::info!(request_id = %answers, "late answer recorded");
        let mut event = self.call_event(call, event_type, outcome, Some(meta));
        let rewritten = self.assess_end(call, answers, body, None, &mut event);
        let recorded = self.audit.record(&event);
        // A further answer is as late as this one: recorded, and delivered or not alike.
        let next = match why {
            EndedEarly::Cancelled => EndedEarly::Answered(event.event_id),
            other => other,
        };
        let mut again = call.clone();
        again.late += 1;
        self.state().answered.insert(answers.clone(), (again, next));
        match (why, recorded) {
            (EndedEarly::TimedOut | EndedEarly::Failed, _) => Delivery::Drop,
            // Like any answer: if it reaches no client (the gateway ended the cancelled
            // request's stream, or drops a second answer as a server of its own would), that
            // is recorded too, so the trail never says "passed on" of what was dropped.
            (EndedEarly::Cancelled | EndedEarly::Answered(_), Ok(ack)) => Delivery::Forward {
                ack,
                ended: Some(Box::new(Ended {
                    call: call.clone(),
                    end: event.event_id,
                    answers: answers.clone(),
                })),
                rewritten,
            },
            (EndedEarly::Cancelled | EndedEarly::Answered(_), Err(e)) => {
                tracing::error!(error = %e, "late answer could not be recorded");
                Delivery::Drop
            }
        }
    }

    /// Ends a call the proxy itself fails (side `upstream`): records the failure and returns
    /// the error the client gets instead of a response, quoting the event id.
    pub(super) fn fail_with_reply(
        &self,
        call: &Call,
        outcome: Outcome,
        code: i64,
        reason: String,
    ) -> Outbound {
        self.end_with_reply(call, outcome, Side::Upstream, code, &reason, |_| {
            format!("mcp-audit-proxy: {reason}")
        })
    }

    /// Records a call's failure and returns the error the client gets in its place, with the
    /// failure event's id in `data` (the message may quote it too).
    pub(super) fn end_with_reply(
        &self,
        call: &Call,
        outcome: Outcome,
        side: Side,
        code: i64,
        reason: &str,
        message: impl FnOnce(EventId) -> String,
    ) -> Outbound {
        let event = self.failure_event(call, outcome, side, Some(code), reason);
        let refusal = Refusal {
            extra: None,
            id: Some(call.request_id.clone()),
            code,
            message: message(event.event_id),
            event: Some(event.event_id),
        };
        match self.audit.record(&event) {
            Ok(ack) => Outbound {
                budget: None,
                bytes: refusal.line(),
                ack,
                if_unrecorded: None,
                ends: Vec::new(),
                held: false,
            },
            Err(err) => Outbound::now(refused_by_audit(&call.request_id, &err).line()),
        }
    }

    pub(super) fn failure_event(
        &self,
        call: &Call,
        outcome: Outcome,
        side: Side,
        code: Option<i64>,
        reason: &str,
    ) -> AuditEvent {
        self.call_event(
            call,
            EventType::ToolFailure,
            outcome,
            Some(Metadata {
                failure_side: Some(side),
                error_code: code,
                reason: Some(reason.to_string()),
                ..Metadata::default()
            }),
        )
    }

    /// An event of `call`, linked to its access event; `extra` adds the end's measurements.
    pub(super) fn call_event(
        &self,
        call: &Call,
        event_type: EventType,
        result: Outcome,
        extra: Option<Metadata>,
    ) -> AuditEvent {
        let (event_id, timestamp) = self.ids.next();
        let mut metadata = extra.unwrap_or_default();
        // A client can put anything in a tool name or a string id: a secret or a card number
        // there is stored protected, as in the arguments (by the policy the call started
        // under: no lock on the way).
        let policy = call.policy.clone().unwrap_or_else(|| self.policy.current());
        let protect = |text: &str| match policy.guarded(text) {
            true => policy.protect_text(text),
            false => text.to_string(),
        };
        metadata.request_id = Some(stored_request_id(&policy, &call.request_id));
        metadata.protocol_version.clone_from(&call.protocol_version);
        metadata.protocol_era = call.era;
        metadata.auth_method = Some(self.info.auth_method.into());
        metadata.http.clone_from(&call.http);
        metadata.user_agent.clone_from(&call.user_agent);
        if call.tool_version.is_some() {
            metadata.tool_version.clone_from(&call.tool_version);
        }
        if event_type != EventType::ToolAccess {
            metadata.execution_time_us = Some(call.started.elapsed().as_micros() as u64);
            metadata.confirmation.clone_from(&call.confirmation);
        }
        AuditEvent {
            event_id,
            timestamp,
            event_type,
            user_id: self.info.user_id.clone(),
            tool_name: call.tool.as_deref().map(protect),
            action: TOOLS_CALL.into(),
            result,
            metadata,
            risk_level: call.risk,
            compliance_tags: call.tags.iter().map(|t| t.to_string()).collect(),
            session_id: self.info.session_id.clone(),
            upstream: self.info.upstream.clone(),
            linked_event_id: (event_type != EventType::ToolAccess).then_some(call.access_id),
        }
    }
}

/// Copies the policy's verdict into an event.
pub(super) fn apply_decision(meta: &mut Metadata, d: &Decision) {
    meta.risk_score = Some(d.score);
    meta.risk_reasons.clone_from(&d.reasons);
    meta.decision = Some(d.label().to_string());
    meta.policy_version = Some(d.version.clone());
}

/// Results at least this long are described from a tree even when the policy does not scan
/// them (measured: at 100 B the typed view is cheaper, at 64 KiB the tree is half the cost).
const VIEW_BY_TREE_BYTES: usize = 4096;

/// The result of a call read once, for both its shape ([`result_view`]) and the policy's scan
/// (when the policy scans it and leaves it as it is: no `redact_results`): one pass instead of
/// a typed view and a `Value`, and no copy of its strings. The result was validated by
/// `message::parse`, so its strings are not checked again ([`Tree::parse_validated`]): that
/// is cheaper than the typed view alone for a long result, so such a tree is read without a
/// policy too. `None` (the usual passes then) when the policy redacts results, when no policy
/// scans a short result, or when an object repeats a key:
/// the typed view refuses some repeated members, and the trail keeps saying so.
fn result_tree<'a>(call: &Call, body: ResponseBody<'a>) -> Option<Tree<'a>> {
    let ResponseBody::Result(raw) = body else {
        return None;
    };
    let scanned = call.policy.as_ref().is_some_and(|p| p.enabled);
    if scanned && call.policy.as_ref().is_some_and(|p| p.redact_results) {
        return None;
    }
    // Without a scan, the tree's maps cost more than the typed view for a short result.
    if !scanned && raw.get().len() < VIEW_BY_TREE_BYTES {
        return None;
    }
    Tree::parse_validated(raw.get())
        .ok()
        .filter(|t| !t.repeated_keys)
}

/// The [`CallToolResultView`] of a result read as a tree, exactly as it would deserialize from
/// the same text; `None` wherever that reading could differ or needs the raw text (not an
/// object; a member of another type than the view's; `inputRequests`, `task` or `_meta`
/// present), so the caller reads the text as before.
fn result_view<'t>(root: &'t Node<'_>) -> Option<CallToolResultView<'t>> {
    let Node::Object(members) = root else {
        return None;
    };
    if ["inputRequests", "task", "_meta"]
        .iter()
        .any(|k| members.contains_key(*k))
    {
        return None;
    }
    // An optional string member: absent or null is none.
    let text = |n: Option<&'t Node<'_>>| -> Result<Option<Cow<'t, str>>, ()> {
        match n {
            None | Some(Node::Null) => Ok(None),
            Some(Node::Str(s)) => Ok(Some(Cow::Borrowed(&**s))),
            Some(_) => Err(()),
        }
    };
    let is_error = match members.get("isError") {
        None | Some(Node::Null) => None,
        Some(Node::Bool(b)) => Some(*b),
        Some(_) => return None,
    };
    let content = match members.get("content") {
        None => Vec::new(),
        Some(Node::Array(items)) => items
            .iter()
            .map(|item| {
                let Node::Object(block) = item else {
                    return Err(());
                };
                let kind = match block.get("type") {
                    None => Cow::default(),
                    Some(Node::Str(s)) => Cow::Borrowed(&**s),
                    Some(_) => return Err(()),
                };
                Ok(ContentView {
                    kind,
                    text: text(block.get("text"))?,
                })
            })
            .collect::<Result<_, ()>>()
            .ok()?,
        Some(_) => return None,
    };
    Some(CallToolResultView {
        result_type: text(members.get("resultType")).ok()?,
        is_error,
        content,
        input_requests: None,
        request_state: text(members.get("requestState")).ok()?,
        meta: None,
        task: None,
    })
}

/// `id` as the trail may keep it. A client can write a secret or a card number as a string id,
/// or a card number as a numeric one: such an id is stored as its text, protected as the
/// arguments are (a string); any other id as it came. Numbers under 10⁸ hold no card, phone
/// or national id and are not scanned.
pub(crate) fn stored_request_id(policy: &Policy, id: &RequestId) -> RequestId {
    let text = match id {
        RequestId::Str(s) => std::borrow::Cow::Borrowed(&**s),
        RequestId::Int(n) if n.unsigned_abs() < 100_000_000 => return id.clone(),
        number => std::borrow::Cow::Owned(number.to_string()),
    };
    if policy.guarded(&text) {
        RequestId::Str(policy.protect_text(&text).into())
    } else {
        id.clone()
    }
}

/// Whether pydantic's lax mode (the Python SDK's `CallToolResult.isError: bool`) reads this
/// non-boolean value as `false`: `0`, or one of its false strings in any case.
fn lax_false(value: &Value) -> bool {
    match value {
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => ["0", "off", "f", "false", "n", "no"]
            .iter()
            .any(|f| s.eq_ignore_ascii_case(f)),
        _ => false,
    }
}

/// Adds `text` to an event's reason: several facts about one end (an unreadable result, a
/// task fetched again, a reused task id, a result withheld) are all kept, joined by `"; "`,
/// never one replacing another (review finding 8b).
fn add_reason(reason: &mut Option<String>, text: impl Into<String>) {
    let text = text.into();
    match reason {
        Some(r) if r.contains(&text) => {}
        Some(r) => {
            r.push_str("; ");
            r.push_str(&text);
        }
        None => *reason = Some(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_result_view_from_the_tree_is_the_view_from_the_text() {
        let texts = [
            r#"{"content":[{"type":"text","text":"hello"}],"isError":false}"#,
            r#"{"content":[{"type":"text","text":"bad \"input\""},{"type":"image","data":"x"}],"isError":true}"#,
            r#"{"content":[{"text":null}],"resultType":"complete","requestState":"s1","extra":[1]}"#,
            r#"{"resultType":"input_required","requestState":"abc"}"#,
            r#"{}"#,
            // Read by the text's view only (or refused by it): the tree gives no view.
            r#"{"content":null}"#,
            r#"{"content":[["text","positional"]]}"#,
            r#"{"content":[{"type":null}]}"#,
            r#"{"isError":"yes"}"#,
            r#"{"resultType":7}"#,
            r#"{"task":{"taskId":"t"}}"#,
            r#"{"inputRequests":{"a":{}},"resultType":"input_required"}"#,
            r#"{"_meta":{}}"#,
            r#"["content"]"#,
        ];
        for text in texts {
            let tree = Tree::parse(text).unwrap();
            let from_text = serde_json::from_str::<CallToolResultView>(text);
            match result_view(&tree.root) {
                Some(view) => assert_eq!(
                    format!("{view:?}"),
                    format!("{:?}", from_text.expect("the text's view reads it too")),
                    "{text}"
                ),
                None => assert!(
                    text.contains("task")
                        || text.contains("inputRequests")
                        || text.contains("_meta")
                        || from_text.is_err()
                        || !text.starts_with('{')
                        || text.contains("[[")
                        || text.contains(r#""type":null"#),
                    "a readable result without a view from the tree: {text}"
                ),
            }
        }
    }
}
