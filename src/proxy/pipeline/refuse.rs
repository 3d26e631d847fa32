//! Refusals: what the proxy answers and records in place of forwarding a message it will
//! not pass on (a broken line, a call without a usable id, a batch with a bad element, params
//! it cannot read, a server answer it cannot deliver), and the events of refused calls.

use super::*;

/// The most errors one refused message of client answers gets the server (one per id).
const MAX_REFUSED_ANSWERS: usize = 1024;

impl Pipeline {
    /// Refuses and records a request or notification whose method is `tools/call` but for
    /// case, spaces or control characters: a server that matches method names loosely would
    /// run it, and the audit would have passed it as another method (an audit bypass found by
    /// trying the gateway with `Tools/Call` and `"tools/call "`).
    pub(super) fn refuse_loose_call(&self, msg: &Message<'_>, method: &str) -> Refusal {
        let (id, params) = match msg {
            Message::Request { id, params, .. } => (Some(id), *params),
            Message::Notification { params, .. } => (None, *params),
            _ => (None, None),
        };
        let reason = format!(
            "method {method:?} differs from `tools/call` only in case, spaces or control characters; servers that match method names loosely would run it as a tool call; it was not forwarded"
        );
        tracing::warn!(method = %method.escape_debug(), "tools/call spelled loosely refused");
        let event = self.refuse_call(id, params, Side::Client, INVALID_REQUEST, &reason);
        Refusal {
            id: id.cloned(),
            code: INVALID_REQUEST,
            message: format!("mcp-audit-proxy refused the message: {reason}"),
            event,
            extra: None,
        }
    }

    /// Refuses and records a `tools/call` whose id is a fraction or past a double (`1.5`,
    /// `1e400`; [`RequestId::is_not_integer`]): SDK servers drop it or answer with a null
    /// id, which no client can match to its call (it waited for the call timeout).
    pub(super) fn refuse_not_integer_id(
        &self,
        id: &RequestId,
        params: Option<&RawValue>,
    ) -> Refusal {
        let reason = format!(
            "request id {id} is not an integer a server can read (a fraction, or past what a double holds); MCP requests carry a string or integer id, and SDK servers drop such a request or answer it with a null id, which no client can match to its call; it was not forwarded"
        );
        tracing::warn!(request_id = %id, "tools/call with an id that is no readable integer refused");
        let event = self.refuse_call(Some(id), params, Side::Client, INVALID_REQUEST, &reason);
        Refusal {
            extra: None,
            id: Some(id.clone()),
            code: INVALID_REQUEST,
            message: format!("mcp-audit-proxy refused the request: {reason}"),
            event,
        }
    }

    /// Element `at` of a batch was refused (blocked by the policy, ambiguous arguments, or
    /// the audit trail failed): the server never sees part of a batch, so all of it is
    /// refused. Calls already opened end unforwarded, later calls are recorded as refused,
    /// and each element gets its own error: `at` its refusal, the others why the batch fell.
    pub(super) fn refuse_rest_of_batch(
        &self,
        items: &[BatchItem<'_>],
        at: usize,
        opened: &[RequestId],
        refusal: &Refusal,
    ) -> Route {
        let reason = format!(
            "the batch was refused because its element {at} was: {}",
            refusal.message
        );
        for id in opened {
            self.end_unforwarded(id, &reason);
        }
        {
            let mut st = self.state();
            for item in &items[..at] {
                if let Ok(Message::Request { id, .. }) = &item.message {
                    st.pending.remove(id);
                }
            }
        }
        // An audit failure affects every element alike; a policy refusal only its own.
        let code = if refusal.code == INTERNAL_ERROR {
            INTERNAL_ERROR
        } else {
            INVALID_REQUEST
        };
        let replies: Vec<Cow<'_, str>> = items
            .iter()
            .enumerate()
            .filter_map(|(j, item)| {
                let Ok(Message::Request { id, method, params }) = &item.message else {
                    return None;
                };
                if j == at {
                    return Some(Cow::Owned(refusal.element()));
                }
                let event = (j > at && method == TOOLS_CALL)
                    .then(|| self.refuse_call(Some(id), *params, Side::Client, code, &reason))
                    .flatten();
                Some(Cow::Owned(
                    Refusal {
                        id: Some(id.clone()),
                        code,
                        message: format!("mcp-audit-proxy refused the whole batch: {reason}"),
                        event,
                        extra: None,
                    }
                    .element(),
                ))
            })
            .collect();
        tracing::warn!(element = at, "batch from client refused");
        let mut routes = self.batch_answers_refused(items, &reason);
        if !replies.is_empty() {
            routes.push(Route::ToClient(self.after_recorded(batch_line(replies))));
        }
        Route::of(routes)
    }

    /// The answers in a client's batch refused whole ([`Self::answers_refused`]): each
    /// response element, and each element that is unreadable but reads as answers only.
    pub(super) fn batch_answers_refused(&self, items: &[BatchItem<'_>], why: &str) -> Vec<Route> {
        let mut ids = Vec::new();
        for item in items {
            match &item.message {
                Ok(Message::Response { id: Some(id), .. }) => ids.push(id.clone()),
                Err(_) => {
                    let found = salvage(item.raw.get().as_bytes(), TOOLS_CALL);
                    if !found.is_empty() && found.iter().all(only_answers) {
                        ids.extend(found.iter().flat_map(Salvaged::ids).cloned());
                    }
                }
                Ok(_) => {}
            }
        }
        self.answers_refused(&ids, why)
    }

    /// Why a batch cannot be forwarded as it is, if it cannot.
    pub(super) fn batch_problem(&self, items: &[BatchItem<'_>]) -> Option<String> {
        let mut seen = HashSet::new();
        let st = self.state();
        items
            .iter()
            .enumerate()
            .find_map(|(i, item)| match &item.message {
                Err(invalid) => Some(format!("element {i}: {invalid}")),
                Ok(Message::Request { id, method, params }) => {
                    if !seen.insert(id.clone()) || st.id_in_use(id) {
                        Some(format!(
                            "element {i}: request id {id} is already in use in this session"
                        ))
                    } else if method == TOOLS_CALL {
                        decode_call(*params)
                            .err()
                            .map(|e| format!("element {i}: invalid tools/call params: {e}"))
                    } else {
                        None
                    }
                }
                Ok(Message::Notification { method, .. }) if method == TOOLS_CALL => {
                    Some(format!("element {i}: {NOTIFIED_CALL}"))
                }
                Ok(_) => None,
            })
    }

    /// One error per element that expects an answer; `record` notes the `tools/call`s an
    /// element is, or may be (an id-less or invalid one included), and returns an event id.
    pub(super) fn refuse_batch(
        &self,
        items: &[BatchItem<'_>],
        code: i64,
        message: &str,
        record: impl Fn(&[Salvaged]) -> Option<EventId>,
    ) -> Option<Bytes> {
        let replies: Vec<Cow<'_, str>> = items
            .iter()
            .filter_map(|item| {
                let refusal = match &item.message {
                    Ok(Message::Request { id, method, params }) => Refusal {
                        extra: None,
                        id: Some(id.clone()),
                        code,
                        message: message.to_string(),
                        event: (method == TOOLS_CALL)
                            .then(|| record(&[known_call(Some(id), *params)]))
                            .flatten(),
                    },
                    Err(invalid) => {
                        let found = salvage(item.raw.get().as_bytes(), TOOLS_CALL);
                        // An answer gets no answer ([`Self::batch_answers_refused`]).
                        if !found.is_empty() && found.iter().all(only_answers) {
                            return None;
                        }
                        Refusal {
                            extra: None,
                            id: invalid.id().cloned(),
                            code: invalid.code(),
                            message: message.to_string(),
                            event: record(&found),
                        }
                    }
                    Ok(Message::Notification { method, params }) => {
                        if method == TOOLS_CALL {
                            record(&[known_call(None, *params)]);
                        }
                        return None;
                    }
                    Ok(Message::Response { .. }) => return None,
                };
                Some(Cow::Owned(refusal.element()))
            })
            .collect();
        (!replies.is_empty()).then(|| batch_line(replies))
    }

    /// Refuses a `tools/call` whose params the proxy will not pass on (-32602), recorded as
    /// `refused` with `reason`.
    pub(super) fn refuse_params(
        &self,
        id: &RequestId,
        params: Option<&RawValue>,
        reason: &str,
    ) -> Refusal {
        let event = self.refuse_call(Some(id), params, Side::Client, INVALID_PARAMS, reason);
        self.state().withheld.insert(id.clone(), ());
        Refusal {
            id: Some(id.clone()),
            code: INVALID_PARAMS,
            message: format!("mcp-audit-proxy refused the call: {reason}"),
            event,
            extra: None,
        }
    }

    /// Records every `tools/call` a refused client message is, or may be (read by
    /// [`salvage`]), as refused with `reason`; returns each one's failure event id, for the
    /// answers to quote.
    pub(super) fn record_refused(
        &self,
        found: &[Salvaged],
        code: i64,
        reason: &str,
    ) -> Vec<Option<EventId>> {
        found
            .iter()
            .map(|call| {
                if !call.watched {
                    return None;
                }
                let why = if call.methods.iter().any(|m| m == TOOLS_CALL) && !call.partial {
                    Cow::Borrowed(reason)
                } else {
                    Cow::Owned(format!(
                        "{reason} (what could be read of it may be a tools/call, so it is recorded as one)"
                    ))
                };
                self.refuse_call(
                    call.id.as_ref(),
                    call.params.as_deref(),
                    Side::Client,
                    code,
                    &why,
                )
            })
            .collect()
    }

    /// Records a refused call (access + failure, both `refused`); returns the failure's id.
    /// A call without a usable id is recorded without `request_id`.
    pub(super) fn refuse_call(
        &self,
        id: Option<&RequestId>,
        params: Option<&RawValue>,
        side: Side,
        code: i64,
        reason: &str,
    ) -> Option<EventId> {
        let policy = self.policy.current();
        // The tool as a lenient server reads it; a name can carry anything, so it is stored
        // protected like the arguments.
        let tool = params
            .and_then(|p| member_of(p, "name"))
            .and_then(|n| serde_json::from_str::<String>(n.get()).ok())
            .map(|n| match policy.enabled {
                true => policy.protect_text(&n),
                false => n,
            });
        let (stored, mut redacted, mut tags, reason) = self.protected_arguments(params, reason);
        // A 2026-07-28 retry's answers are what the person gave the tool: kept like the
        // arguments, a refused retry too (review finding 11).
        let answers = params
            .filter(|p| p.get().starts_with('{'))
            .and_then(|p| member_of(p, "inputResponses"));
        // In a retry of the proxy's own round, its confirmation answer is the proxy's, never
        // the server's: left out as the admitted path leaves it out (`answers_sent`).
        let ours = params
            .filter(|p| p.get().starts_with('{'))
            .and_then(|p| member_of(p, "requestState"))
            .and_then(|s| serde_json::from_str::<String>(s.get()).ok())
            .is_some_and(|s| own_round(&s));
        let without_ours = answers.filter(|_| ours).map(|a| {
            let mut map: std::collections::BTreeMap<String, Box<RawValue>> =
                serde_json::from_str(a.get()).unwrap_or_default();
            map.remove(CONFIRM_KEY);
            (!map.is_empty())
                .then(|| serde_json::value::to_raw_value(&map).ok())
                .flatten()
        });
        let answers = match &without_ours {
            Some(left) => left.as_deref(),
            None => answers,
        };
        let (answers, masked, more_tags, reason) =
            self.protected_member(answers, "inputResponses", &reason);
        for class in masked {
            if !redacted.contains(&class) {
                redacted.push(class);
            }
        }
        for tag in more_tags {
            if !tags.contains(&tag) {
                tags.push(tag);
            }
        }
        tags.sort_unstable();
        let mut call = self.bare_call(id, params);
        call.tool = tool;
        call.tags = tags;
        let mut access = self.call_event(&call, EventType::ToolAccess, Outcome::Refused, None);
        access.event_id = call.access_id;
        access.metadata.arguments = stored;
        access.metadata.input_responses = answers;
        access.metadata.redacted = redacted;
        let mut failure = self.failure_event(&call, Outcome::Refused, side, Some(code), &reason);
        // The events carry `id` as it came (none when it had none), protected like any id.
        let stored = id.map(|id| {
            let policy = self.policy.current();
            super::ends::stored_request_id(&policy, id)
        });
        access.metadata.request_id.clone_from(&stored);
        failure.metadata.request_id = stored;
        for event in [&access, &failure] {
            if let Err(e) = self.audit.record(event) {
                tracing::error!(error = %e, "refused tool call could not be recorded");
                return None;
            }
        }
        Some(failure.event_id)
    }

    /// The context of a request the proxy refuses without forwarding (its era, client and
    /// server as the session knows them, the request's HTTP context), for its events; no
    /// tool, no tags.
    pub(super) fn bare_call(&self, id: Option<&RequestId>, params: Option<&RawValue>) -> Call {
        let (version, era, agent, tool_version) = {
            let st = self.state();
            let meta_version = params
                .and_then(|p| serde_json::from_str::<AnyParams>(p.get()).ok())
                .and_then(|a| {
                    a.meta
                        .and_then(|m| m.protocol_version.map(|v| v.into_owned()))
                });
            let (v, era) = st.version_for(meta_version.as_deref());
            (
                v,
                era,
                st.client.as_ref().map(Implementation::agent),
                st.server.as_ref().map(Implementation::agent),
            )
        };
        Call {
            access_id: self.ids.next().0,
            // Never kept: the context ends here, and the events carry `id` as it was.
            request_id: id.cloned().unwrap_or(RequestId::Int(0)),
            tool: None,
            started: Instant::now(),
            deadline: None,
            protocol_version: version,
            era,
            user_agent: agent,
            tool_version,
            risk: RiskLevel::Medium,
            score: None,
            tags: Vec::new(),
            policy: None,
            confirmation: None,
            consent: None,
            http: self.request_http(),
            late: 0,
            progress: None,
        }
    }

    /// The arguments of a refused call and the reason, as the trail may keep them: the
    /// `arguments` member of its params (the last copy of a repeated key, the one most
    /// servers run), sensitive data replaced, and arguments that cannot be read but carry
    /// some not kept at all.
    fn protected_arguments(
        &self,
        params: Option<&RawValue>,
        reason: &str,
    ) -> (
        Option<Box<RawValue>>,
        Vec<String>,
        Vec<&'static str>,
        String,
    ) {
        let (arguments, reason) = match params {
            None => (None, Cow::Borrowed(reason)),
            Some(p) if p.get().starts_with('{') => {
                (member_of(p, "arguments"), Cow::Borrowed(reason))
            }
            Some(_) => (
                None,
                Cow::Owned(format!(
                    "{reason} (its params are not a JSON object; no arguments stored)"
                )),
            ),
        };
        self.protected_member(arguments, "arguments", &reason)
    }

    /// A member of a refused call's params (`member`: `arguments`, `inputResponses`) as the
    /// trail may keep it, with `reason` protected and extended when the member cannot be
    /// kept as JSON: (stored value, classes masked, their tags, reason).
    fn protected_member(
        &self,
        raw: Option<&RawValue>,
        member: &str,
        reason: &str,
    ) -> (
        Option<Box<RawValue>>,
        Vec<String>,
        Vec<&'static str>,
        String,
    ) {
        let policy = self.policy.current();
        if !policy.enabled {
            return match raw.map(|a| (a, serde_json::from_str::<Value>(a.get()))) {
                Some((raw, Err(e))) => (
                    None,
                    Vec::new(),
                    Vec::new(),
                    as_text(reason, member, raw, &e),
                ),
                _ => (
                    raw.map(ToOwned::to_owned),
                    Vec::new(),
                    Vec::new(),
                    reason.to_owned(),
                ),
            };
        }
        // A parser's message can quote what it could not read, whatever the arguments hold.
        let reason = policy.protect_text(reason);
        let Some(raw) = raw else {
            return (None, Vec::new(), Vec::new(), reason);
        };
        match serde_json::from_str::<Value>(raw.get()) {
            Ok(value) => match policy.protect(&value) {
                Some((protected, classes)) => {
                    let mut tags: Vec<&'static str> = classes.iter().map(|c| c.tag()).collect();
                    tags.sort_unstable();
                    tags.dedup();
                    (
                        serde_json::value::to_raw_value(&protected).ok(),
                        classes.iter().map(|c| c.as_str().to_string()).collect(),
                        tags,
                        reason,
                    )
                }
                // Nothing in the parsed value, but a repeated key's other copy (which the
                // parse dropped) may carry something: mask the text as sent.
                None if policy.guarded(raw.get()) => {
                    let masked = RawValue::from_string(policy.protect_text(raw.get())).ok();
                    let reason = match masked {
                        Some(_) => reason,
                        None => {
                            format!("{reason} ({member} not stored: they carry sensitive data)")
                        }
                    };
                    (masked, Vec::new(), Vec::new(), reason)
                }
                None => (Some(raw.to_owned()), Vec::new(), Vec::new(), reason),
            },
            Err(_) if policy.guarded(raw.get()) => (
                None,
                Vec::new(),
                Vec::new(),
                format!(
                    "{reason} ({member} not stored: unreadable, and they carry sensitive data)"
                ),
            ),
            Err(e) => (
                None,
                Vec::new(),
                Vec::new(),
                as_text(&reason, member, raw, &e),
            ),
        }
    }

    /// Handles a line from the client that could not be framed.
    pub fn client_frame_error(&self, e: &FrameError) -> Route {
        tracing::warn!(error = %e, "message from client refused");
        let prefix = e.prefix();
        let code = match e {
            FrameError::InvalidUtf8 { .. } => PARSE_ERROR,
            FrameError::Oversized { .. } | FrameError::EmbeddedCarriageReturn { .. } => {
                INVALID_REQUEST
            }
        };
        // What a lenient server could read of the line: every call in it is recorded.
        let found = match e.line() {
            Some(line) => salvage_split(trim_line_end(line), TOOLS_CALL),
            None => vec![from_prefix(prefix.clone(), TOOLS_CALL)],
        };
        self.refuse_line(&found, prefix.id, code, &e.to_string())
    }

    /// The client's answers with `ids` that the proxy refused (unreadable, or in a batch it
    /// refused whole): JSON-RPC never answers a response, so the request each one answers is
    /// told instead. The server hears that the client's answer was refused (it would wait
    /// for ever), and the proxy's question counts as answered unreadably (its call is
    /// blocked at once, not held until `confirm_timeout_ms`). Every id once: with `"id"`
    /// twice, parsers differ on which copy counts (helper-109 F7). At most
    /// [`MAX_REFUSED_ANSWERS`] errors go to the server: a 16 MiB batch holds some 800,000
    /// answers, and no server waits on that many requests.
    pub(super) fn answers_refused<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a RequestId>,
        why: &str,
    ) -> Vec<Route> {
        let mut seen: HashSet<&RequestId> = HashSet::new();
        let mut routes = Vec::new();
        let mut left_out = 0usize;
        for id in ids {
            if !seen.insert(id) {
                continue;
            }
            if let Some(route) = self.unreadable_confirmation(id, why) {
                routes.push(route);
                continue;
            }
            if routes.len() >= MAX_REFUSED_ANSWERS {
                left_out += 1;
                continue;
            }
            // A question to a person or a model is settled (the calls' timeouts start again).
            self.answered_server_ask(id);
            self.question_refused(id, why);
            tracing::warn!(request_id = %id, "the client's answer to a server request was refused; the server gets an error in its place");
            let error = Refusal {
                extra: None,
                id: Some(id.clone()),
                code: INTERNAL_ERROR,
                message: format!(
                    "mcp-audit-proxy refused the client's answer to this request: {why}"
                ),
                event: None,
            };
            routes.push(Route::ToServer(Outbound::now(error.line())));
        }
        if left_out > 0 {
            tracing::warn!(
                left_out,
                "refused client answers past {MAX_REFUSED_ANSWERS}: the server gets no error for these"
            );
        }
        routes
    }

    /// Refuses a client line the proxy will not forward, `why` it was refused: every
    /// `tools/call` a lenient server could read in it is recorded as refused, and every request
    /// in it with a readable id gets its own error (a client waits for exactly those); with
    /// none, one error with `fallback` as its id (JSON-RPC's `null` when unreadable).
    pub(super) fn refuse_line(
        &self,
        found: &[Salvaged],
        fallback: Option<RequestId>,
        code: i64,
        why: &str,
    ) -> Route {
        let refusal = |id: Option<RequestId>, event: Option<EventId>| Refusal {
            extra: None,
            id,
            code,
            message: format!("mcp-audit-proxy refused the message: {why}"),
            event,
        };
        // Only answers (to the server's requests, or to the proxy's own question): JSON-RPC
        // never answers a response, and the client may have a request of its own with that
        // id, which the error would seem to answer. The request each one answers is told
        // instead: the server hears that the client's answer was refused (it would wait for
        // ever), and the proxy's question counts as answered unreadably (its call is blocked).
        if !found.is_empty() && found.iter().all(only_answers) {
            let mut routes = self.answers_refused(found.iter().flat_map(Salvaged::ids), why);
            // Over HTTP the POST that carried it must fail (MCP Streamable HTTP: a response
            // the server cannot accept gets an HTTP error): an error with a null id, which
            // answers no request, is the body of its 400.
            if self.info.auth_method != STDIO {
                routes.push(Route::ToClient(Outbound::now(refusal(None, None).line())));
            }
            return Route::of(routes);
        }
        let events = self.record_refused(found, code, &format!("the message was refused: {why}"));
        let mut answers: Vec<Route> = found
            .iter()
            .zip(&events)
            .filter(|(s, _)| s.is_request() && s.id.is_some())
            .map(|(s, event)| {
                Route::ToClient(self.after_recorded(refusal(s.id.clone(), *event).line()))
            })
            .collect();
        if answers.is_empty() {
            let first = events.iter().flatten().next().copied();
            answers.push(Route::ToClient(
                self.after_recorded(refusal(fallback, first).line()),
            ));
        }
        Route::of(answers)
    }

    /// A result or error that answers no request still reaches the client: with
    /// `redact_results`, it is masked like a call's end first (a server must not get data past
    /// the redaction by answering with an id the proxy does not know).
    pub(super) fn redact_unmatched(
        &self,
        id: Option<&RequestId>,
        body: ResponseBody<'_>,
    ) -> Option<String> {
        let (member, body) = match body {
            ResponseBody::Result(raw) => (
                "result",
                self.redacted_for_client(raw, || json!({"content": [], "isError": true}))?,
            ),
            ResponseBody::Error(raw) => (
                "error",
                self.redacted_for_client(raw, || {
                    json!({"code": INTERNAL_ERROR, "message": "mcp-audit-proxy withheld the error: it carries sensitive data it cannot redact (redact_results)"})
                })?,
            ),
        };
        Some(match id {
            Some(id) => rebuilt_message(Some(id), None, &[(member, &body)]),
            // An answer about a message whose id was unreadable says so with `"id": null`.
            None => rebuilt_message(None, None, &[("id", &Value::Null), (member, &body)]),
        })
    }

    /// The answer to a request of the client other than a tool call (`resources/read`,
    /// `prompts/get`, `completion/complete`, …), or a late one to a request it cancelled,
    /// carries the server's data to the client as a result does: with `redact_results` it is
    /// masked the same way. One with sensitive data that cannot be parsed (too deeply nested)
    /// becomes an error answer: nothing of it is delivered. The handshake's and `tools/list`'s
    /// answers are protocol, not data, and are not masked.
    pub(super) fn redact_answer(&self, id: &RequestId, body: ResponseBody<'_>) -> Option<String> {
        let (member, raw) = match body {
            ResponseBody::Result(raw) => ("result", raw),
            ResponseBody::Error(raw) => ("error", raw),
        };
        let mut unreadable = false;
        let mut masked = self.redacted_for_client(raw, || {
            unreadable = true;
            Value::Null
        })?;
        if member == "result"
            && !unreadable
            && let Ok(sent) = serde_json::from_str::<Value>(raw.get())
        {
            let policy = self.policy.current();
            keep_handles(&sent, &mut masked, false, &|t| {
                policy.holds_secret_or_card(t)
            });
        }
        Some(if unreadable {
            let withheld = json!({
                "code": INTERNAL_ERROR,
                "message": "mcp-audit-proxy withheld the answer: it carries sensitive data it cannot redact (redact_results)",
            });
            rebuilt_message(Some(id), None, &[("error", &withheld)])
        } else {
            rebuilt_message(Some(id), None, &[(member, &masked)])
        })
    }

    /// A request or notification of the server (`sampling/createMessage`, whose messages go
    /// to the client's model; `notifications/message`, `notifications/progress`) carries the
    /// server's data to the client as a result does: with `redact_results` its `params` are
    /// masked the same way (but for `progressToken`, `requestId` and `_meta`, which the client
    /// correlates by), and params that must be but cannot be read are withheld (`{}`). An
    /// answer with `"id": null` is masked as an unmatched one ([`Self::redact_unmatched`]).
    pub(super) fn redact_server_params(&self, msg: &Message<'_>) -> Option<String> {
        let (id, method, params) = match msg {
            Message::Request { id, method, params } => (Some(id), method, (*params)?),
            Message::Notification { method, params } => (None, method, (*params)?),
            Message::Response { id: None, body } => return self.redact_unmatched(None, *body),
            Message::Response { .. } => return None,
        };
        let mut masked = self.redacted_for_client(params, || json!({}))?;
        if let (Ok(Value::Object(sent)), Some(out)) = (
            serde_json::from_str::<Value>(params.get()),
            masked.as_object_mut(),
        ) {
            for key in ["progressToken", "requestId", "taskId", "_meta"] {
                if let Some(v) = sent.get(key) {
                    out.insert(key.into(), v.clone());
                }
            }
            // `notifications/resources/updated` names the subscribed resource by its `uri`
            // (only there: another message's `uri` is more text, masked; helper-121 F4).
            if method == "notifications/resources/updated"
                && let Some(uri @ Value::String(text)) = sent.get("uri")
                && !is_data_uri(uri)
                && !self.policy.current().holds_secret_or_card(text)
            {
                out.insert("uri".into(), uri.clone());
            }
        }
        Some(rebuilt_message(id, Some(method), &[("params", &masked)]))
    }

    /// `raw` as the client may see it under `redact_results`: `None` when it passes as it is
    /// (the option off, or nothing to mask), else its sensitive strings masked, or `withheld`
    /// when it carries sensitive data but cannot be read one way only (a repeated key, or
    /// nesting too deep).
    fn redacted_for_client(
        &self,
        raw: &RawValue,
        withheld: impl FnOnce() -> Value,
    ) -> Option<Value> {
        let policy = self.policy.current();
        // The raw text's scan cannot see through JSON escapes (`\u0040`): text with a
        // backslash is parsed and its strings scanned instead.
        if !(policy.enabled
            && policy.redact_results
            && (raw.get().contains('\\') || policy.guarded(raw.get())))
        {
            return None;
        }
        // Strictly: a repeated key could hide data in the copy a parser drops.
        match crate::policy::strict::parse_validated_exact(raw.get()) {
            Ok(value) => policy.redact(&value).map(|(redacted, _)| redacted),
            Err(_) => Some(withheld()),
        }
    }

    /// Handles a line from the server that could not be framed.
    pub fn server_frame_error(&self, e: &FrameError) -> Route {
        tracing::warn!(error = %e, "message from server dropped");
        let found = match e.line() {
            Some(line) => salvage_split(trim_line_end(line), TOOLS_CALL),
            None => vec![from_prefix(e.prefix(), TOOLS_CALL)],
        };
        self.server_refused(&found, &format!("the server's message was refused: {e}"))
    }

    /// A server line the proxy will not deliver, as far as it can be read: each request of
    /// the client it answers fails at once (a call with its failure event) instead of waiting
    /// for `limits.call_timeout_ms`, and each request of the server's own in it is answered
    /// with an error, so that neither side waits for what will never come.
    pub(super) fn server_refused(&self, found: &[Salvaged], reason: &str) -> Route {
        let mut routes = Vec::new();
        for s in found {
            if s.is_response() {
                // Every id it names: parsers differ on which copy of a repeated one counts.
                let failed = s.ids().filter_map(|id| self.fail_answered(id, reason));
                routes.extend(failed.map(Route::ToClient));
            } else if let (true, Some(id)) = (s.is_request(), &s.id) {
                let message = format!("mcp-audit-proxy: {reason}");
                routes.push(Route::ToServer(Outbound::now(error_response(
                    Some(id),
                    INVALID_REQUEST,
                    &message,
                    None,
                ))));
            }
        }
        Route::of(routes)
    }

    /// Fails at once the client's requests in `bytes` (lines for the server) that the server
    /// will never receive, its input being closed: a call ends `refused` (side `upstream`)
    /// with `reason` instead of waiting for `limits.call_timeout_ms`, and the client gets an
    /// error for each request (a direct client would have seen EPIPE at once).
    pub fn undeliverable(&self, bytes: &[u8], reason: &str) -> Vec<Outbound> {
        let mut out = Vec::new();
        for line in bytes.split(|&b| b == b'\n') {
            let line = trim_line_end(line);
            if line.is_empty() {
                continue;
            }
            let ids: Vec<RequestId> = match message::parse(line) {
                Ok(Parsed::Single(Message::Request { id, .. })) => vec![id],
                Ok(Parsed::Batch(items)) => items
                    .into_iter()
                    .filter_map(|i| match i.message {
                        Ok(Message::Request { id, .. }) => Some(id),
                        _ => None,
                    })
                    .collect(),
                _ => Vec::new(),
            };
            out.extend(ids.iter().filter_map(|id| self.fail_answered(id, reason)));
        }
        out
    }

    /// Fails the client's request `id` whose response could not be delivered: a call in
    /// flight ends `refused` (side `upstream`), another request gets an error; `None` if `id`
    /// answers nothing in flight.
    pub(super) fn fail_answered(&self, id: &RequestId, reason: &str) -> Option<Outbound> {
        let answered = {
            let mut st = self.state();
            let answered = st.answered(id)?.0;
            // A server that did get it may still answer: that answer is recorded, not
            // forwarded as an answer to no request. Marked in the same critical section, so
            // no answer finds the call in neither place.
            if let Answered::Call(call) = &answered {
                st.end_early(call.clone(), EndedEarly::Failed);
            }
            answered
        };
        match answered {
            Answered::Call(call) => Some(self.fail_with_reply(
                &call,
                Outcome::Refused,
                INTERNAL_ERROR,
                reason.to_string(),
            )),
            // The call's real outcome never reached the client: its second end says so.
            Answered::Pending(Pending::TaskResult(call)) => {
                let event = self.failure_event(
                    &call,
                    Outcome::Refused,
                    Side::Upstream,
                    Some(INTERNAL_ERROR),
                    &format!(
                        "the outcome of the task the call became could not be delivered: {reason}"
                    ),
                );
                let data = json!({"event_id": event.event_id.to_string()});
                let line = error_response(
                    Some(id),
                    INTERNAL_ERROR,
                    &format!("mcp-audit-proxy: {reason}"),
                    Some(data),
                );
                Some(match self.audit.record(&event) {
                    Ok(ack) => Outbound {
                        ack,
                        ..Outbound::now(line)
                    },
                    Err(err) => Outbound::now(refused_by_audit(id, &err).line()),
                })
            }
            Answered::Pending(_) => Some(Outbound::now(error_response(
                Some(id),
                INTERNAL_ERROR,
                &format!("mcp-audit-proxy: {reason}"),
                None,
            ))),
            // Already answered to the client (cancelled, timed out): nothing to fail.
            Answered::Ended(..) | Answered::Cancelled(_) => None,
        }
    }
}

/// Puts back into a masked result `out` the handles of `sent` that the client sends back to
/// the server rather than shows a model, as the server wrote them, each only when a string
/// and only where it is a handle: an input_required round's `requestState` (MCP 2026-07-28,
/// MRTR), a created task's `task.taskId` (a result with no `content`) and the related task's
/// id in `_meta` (MCP
/// 2025-11-25 Tasks); and, on answers to other requests than calls (`of_call` false), a
/// listing's `nextCursor` (MCP pagination: a result with a `tools`, `resources`,
/// `resourceTemplates`, `prompts` or `tasks` array), a task's `taskId` (`tasks/get`: beside
/// its `status`) and each listed task's.
///
/// Resource URIs are handles too (helper-120 F2: a masked `file:///home/[REDACTED:email]/…`
/// cannot be read back, `Resource not found`): a `resource_link`'s `uri` and an embedded
/// `resource`'s in `content`, and on other answers each listed resource's `uri`, each
/// template's `uriTemplate` and each read content's `uri` (`resources/list`,
/// `resources/templates/list`, `resources/read`; MCP 2025-11-25 Resources). Never a `data:`
/// URI (its content), nor one in which `guarded` finds what is never shown (a secret or a
/// card number: masked, the handle broken; helper-123 R2).
pub(super) fn keep_handles(
    sent: &Value,
    out: &mut Value,
    of_call: bool,
    guarded: &dyn Fn(&str) -> bool,
) {
    keep_uris(sent, out, guarded, "content", |item| {
        match item.get("type")?.as_str()? {
            "resource_link" => Some(&["uri"][..]),
            "resource" => Some(&["resource", "uri"][..]),
            _ => None,
        }
    });
    if !of_call {
        keep_uris(sent, out, guarded, "resources", |_| Some(&["uri"][..]));
        keep_uris(sent, out, guarded, "resourceTemplates", |_| {
            Some(&["uriTemplate"][..])
        });
        keep_uris(sent, out, guarded, "contents", |_| Some(&["uri"][..]));
    }
    keep_other_handles(sent, out, of_call);
}

/// For each item of the array `list` of `sent` and of `out` (masking keeps arrays' lengths
/// and order), puts back the string at `path(item)` (members from the item, at most two) as
/// sent.
fn keep_uris(
    sent: &Value,
    out: &mut Value,
    guarded: &dyn Fn(&str) -> bool,
    list: &str,
    path: impl Fn(&Value) -> Option<&'static [&'static str]>,
) {
    let (Some(Value::Array(sent)), Some(Value::Array(out))) = (sent.get(list), out.get_mut(list))
    else {
        return;
    };
    for (s, o) in sent.iter().zip(out.iter_mut()) {
        let Some(path) = path(s) else {
            continue;
        };
        let Some((last, parents)) = path.split_last() else {
            continue;
        };
        let at = match parents {
            [] => Some((s, o)),
            [p] => s.get(*p).zip(o.get_mut(*p)),
            _ => None,
        };
        if let Some((s, Value::Object(o))) = at
            && let Some(uri @ Value::String(text)) = s.get(*last)
            && !is_data_uri(uri)
            && !guarded(text)
        {
            o.insert((*last).to_string(), uri.clone());
        }
    }
}

/// A `data:` URI (RFC 2397) carries its content, not a handle to it: masked as content is
/// (helper-121 F5).
fn is_data_uri(uri: &Value) -> bool {
    uri.as_str().is_some_and(|u| {
        u.trim_start()
            .get(..5)
            .is_some_and(|s| s.eq_ignore_ascii_case("data:"))
    })
}

/// The handles of [`keep_handles`] other than URIs.
fn keep_other_handles(sent: &Value, out: &mut Value, of_call: bool) {
    let (Value::Object(sent), Value::Object(out)) = (sent, out) else {
        return;
    };
    let string = |v: Option<&Value>| v.filter(|v| v.is_string()).cloned();
    let put = |out: &mut serde_json::Map<String, Value>, key: &str, v: Option<Value>| {
        if let Some(v) = v {
            out.insert(key.into(), v);
        }
    };
    let round = sent.get("resultType").and_then(Value::as_str) == Some("input_required");
    put(
        out,
        "requestState",
        string(sent.get("requestState")).filter(|_| round),
    );
    // A created task (`CreateTaskResult`): no content beside it.
    if let Some(Value::Object(t)) = out
        .get_mut("task")
        .filter(|_| !sent.contains_key("content"))
    {
        put(
            t,
            "taskId",
            string(sent.get("task").and_then(|t| t.get("taskId"))),
        );
    }
    const RELATED: &str = "io.modelcontextprotocol/related-task";
    if let Some(Value::Object(r)) = out.get_mut("_meta").and_then(|m| m.get_mut(RELATED)) {
        let sent = sent.get("_meta").and_then(|m| m.get(RELATED));
        put(r, "taskId", string(sent.and_then(|r| r.get("taskId"))));
    }
    if of_call {
        return;
    }
    let listing = [
        "tools",
        "resources",
        "resourceTemplates",
        "prompts",
        "tasks",
    ]
    .iter()
    .any(|k| sent.get(*k).is_some_and(Value::is_array));
    put(
        out,
        "nextCursor",
        string(sent.get("nextCursor")).filter(|_| listing),
    );
    if sent.contains_key("status") {
        put(out, "taskId", string(sent.get("taskId")));
    }
    if let (Some(Value::Array(sent)), Some(Value::Array(out))) =
        (sent.get("tasks"), out.get_mut("tasks"))
    {
        for (s, o) in sent.iter().zip(out.iter_mut()) {
            if let Value::Object(o) = o {
                put(o, "taskId", string(s.get("taskId")));
            }
        }
    }
}

/// Arguments a strict JSON reader refuses (a lone surrogate escape, a number past a double's
/// range: valid JSON syntax, read differently by lenient readers) are kept in the reason as text, not as JSON, so that every
/// event stays readable by every consumer of the trail; cut to [`MAX_ERROR_CHARS`].
fn as_text(reason: &str, member: &str, raw: &RawValue, e: &serde_json::Error) -> String {
    let text: String = raw.get().chars().take(MAX_ERROR_CHARS).collect();
    if e.to_string().starts_with("recursion limit exceeded") {
        return format!(
            "{reason} ({member} not stored as JSON: nested deeper than {} levels, the most the policy reads; as sent: {text})",
            crate::policy::admit::MAX_NESTING
        );
    }
    if e.to_string().starts_with("number out of range") {
        // `1E400`: valid JSON syntax that JavaScript and Python read as Infinity and strict
        // readers refuse; the policy's numeric bounds cannot judge it, so it is refused
        // (fail closed) rather than guessed (helper-87 #1).
        return format!(
            "{reason} ({member} not stored as JSON: a number beyond the range of a 64-bit float, which readers take differently (Infinity, or an error); as sent: {text})"
        );
    }
    format!(
        "{reason} ({member} not stored as JSON: the proxy's strict reader refused them, as strict servers would: {e}; as sent: {text})"
    )
}

/// A `tools/call` the client sent in a form the proxy classified, to record as refused.
fn known_call(id: Option<&RequestId>, params: Option<&RawValue>) -> Salvaged {
    Salvaged {
        id: id.cloned(),
        methods: vec![TOOLS_CALL.to_string()],
        params: params.map(ToOwned::to_owned),
        watched: true,
        ..Salvaged::default()
    }
}

/// The member `name` of a JSON object as a lenient server reads it: the last copy of a
/// repeated key, or failing an exact one, a name that differs only in case; `None` if the
/// text is not an object or has no such member.
fn member_of<'a>(object: &'a RawValue, name: &str) -> Option<&'a RawValue> {
    let members: Vec<(Cow<'_, str>, &'a RawValue)> =
        serde_json::from_str::<crate::jsonrpc::salvage::Members<'a>>(object.get())
            .ok()?
            .0;
    let exact = members.iter().rev().find(|(k, _)| k == name);
    exact
        .or_else(|| members.iter().rev().find(|(k, _)| same_name(k, name)))
        .map(|(_, v)| *v)
}

/// Whether `method` is not `tools/call` but a lenient server could read it as that: the same
/// name but for case (Unicode folding included) once spaces and control characters around it
/// are dropped.
pub(crate) fn loosely_tools_call(method: &str) -> bool {
    if method == TOOLS_CALL {
        return false;
    }
    let core = method.trim_matches(|c: char| c.is_whitespace() || c.is_control());
    core == TOOLS_CALL || crate::jsonrpc::names::near_miss(core, &[TOOLS_CALL]).is_some()
}

/// Whether a refused object reads as an answer only: an id, a `result` or an `error`, and
/// nothing that could make it a request (an object with an id and nothing else readable
/// may be a request cut short: its sender gets the error, as before).
fn only_answers(s: &Salvaged) -> bool {
    s.answers && s.is_response() && s.methods.is_empty() && !s.unreadable_method && !s.watched
}
