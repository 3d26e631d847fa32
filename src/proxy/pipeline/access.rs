//! A `tools/call` from the client: assessed by the policy, its access event recorded, then
//! forwarded, held for a person's approval, or refused (blocked calls get their failure
//! event here too). What comes back is in `ends.rs`.

use super::*;

impl Pipeline {
    /// Assesses a `tools/call`, records its access event and opens its context; a blocked
    /// call is recorded and answered here, never forwarded.
    pub(super) fn begin_call(&self, id: &RequestId, params: Option<&RawValue>) -> Admission {
        let p = match decode_call(params) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(request_id = %id, "undecodable tools/call refused");
                return Err(self.refuse_params(
                    id,
                    params,
                    &format!("invalid tools/call params: {e}"),
                ));
            }
        };
        let policy = self.policy.current();
        if policy.enabled
            && let Some(why) = self.loose_tool_name(&policy, &p.name)
        {
            tracing::warn!(request_id = %id, "tools/call with a name a server could read as another refused");
            let reason = policy.protect_text(&format!("invalid tools/call params: {why}"));
            return Err(self.refuse_params(id, params, &reason));
        }
        // The policy must see what the server will execute: arguments a server could read
        // two ways (duplicate keys) are refused, fail closed.
        let arguments = if policy.enabled {
            match policy::admit::call_arguments(p.arguments.map(RawValue::get)) {
                Ok(v) => v,
                Err(e) => {
                    // The parser's message can quote the input: keep what it quotes out.
                    let reason = policy.protect_text(&format!("invalid tools/call arguments: {e}"));
                    tracing::warn!(request_id = %id, "ambiguous tools/call refused");
                    return Err(self.refuse_params(id, params, &reason));
                }
            }
        } else {
            None
        };
        // The answers of a 2026-07-28 retry, read as strictly as the arguments: the tool acts
        // on them as on its arguments (helper-109 F2: they ran unjudged). The proxy's own
        // confirmation answer is its business, not the tool's, in a retry carrying the
        // proxy's own round (which takes it out before forwarding); in any other, the server
        // gets it, and it is judged and stored like the rest.
        let ours = p.request_state.as_deref().is_some_and(own_round);
        let responses = match p.input_responses.as_ref().filter(|_| policy.enabled) {
            None => None,
            Some(map) => {
                let entries = map.iter().map(|(k, raw)| (&**k, raw.get()));
                match policy::admit::call_responses(entries, ours.then_some(CONFIRM_KEY)) {
                    Ok(v) => v,
                    Err(e) => {
                        let reason = policy.protect_text(&e);
                        tracing::warn!(request_id = %id, "ambiguous inputResponses refused");
                        return Err(self.refuse_params(id, params, &reason));
                    }
                }
            }
        };
        // A retry carrying a round of the proxy's own: the round is used up whatever is decided
        // now, and its token never reaches the server.
        let mut our_round: Option<Result<Round, String>> = p
            .request_state
            .as_deref()
            .filter(|s| own_round(s))
            .map(|token| self.take_round_of(token, &p));
        // The server's own answers that the proxy's round kept (the retry it held carried
        // them): the server gets them back with this retry (`without_round`), so they are
        // judged and stored with it, as the server gets them (review finding 5).
        let kept = our_round
            .as_ref()
            .and_then(|r| r.as_ref().ok())
            .and_then(|r| r.server_responses.clone());
        let responses = match kept.as_deref().filter(|_| policy.enabled) {
            None => responses,
            Some(kept) => {
                let mut all = match responses {
                    Some(serde_json::Value::Object(m)) => m,
                    _ => serde_json::Map::new(),
                };
                if let Ok(serde_json::Value::Object(theirs)) = serde_json::from_str(kept) {
                    all.extend(theirs);
                }
                (!all.is_empty()).then_some(serde_json::Value::Object(all))
            }
        };
        let started = Instant::now();
        let http = self.request_http();
        let meta = p.meta.as_ref();
        let tool_changed = policy.enabled && self.tool_changed(&p.name);
        let (protocol_version, era, user_agent, tool_version, risk, decision, retry_of) = {
            let st = self.state();
            // Locked after `state`, as everywhere.
            let mut shared = self.rounds();
            let (version, era) = st.version_for(meta.and_then(|m| m.protocol_version.as_deref()));
            let agent = meta
                .and_then(|m| m.client_info.as_ref())
                .or(st.client.as_ref())
                .map(Implementation::agent);
            let retry_of = if p.request_state.is_some() || p.input_responses.is_some() {
                let keys = p
                    .input_responses
                    .iter()
                    .flat_map(|r| r.keys().map(|k| k.to_string()));
                shared.take(&round_key(&p.name, p.request_state.as_deref(), keys))
            } else {
                None
            };
            let (retry_of, carried) = retry_of.map_or((None, None), |(id, c)| (Some(id), c));
            let annotations = shared.learnt.annotations.get(&*p.name);
            let decision = policy.enabled.then(|| {
                policy.assess(&CallInput {
                    user: &self.info.user_id,
                    roles: http.as_ref().map_or(&[], |h| h.roles.as_slice()),
                    tool: &p.name,
                    arguments: arguments.as_ref(),
                    responses: responses.as_ref(),
                    annotations,
                    history: &shared.learnt.history,
                    now: std::time::SystemTime::now(),
                    count_rates: true,
                    tool_changed,
                })
            });
            let risk = decision
                .as_ref()
                .map_or_else(|| policy::tool_risk(annotations), |d| d.level);
            if let Some(d) = &decision
                && d.enforced() != policy::Action::Block
            {
                shared.learnt.history.note(&p.name, &d.tags);
            }
            let tool_version = st.server.as_ref().map(Implementation::agent);
            (
                version,
                era,
                agent,
                tool_version,
                risk,
                decision,
                (retry_of, carried),
            )
        };
        let (retry_of, carried) = retry_of;
        // A retry of the server's own round, of a call the person accepted, with the same
        // tool and arguments: the accept holds for it (MRTR rounds are one call). Made only
        // when needed: it hashes the arguments (a SHA-256 of up to megabytes per call).
        let consent = || Consent {
            tool: p.name.to_string(),
            hash: arguments_hash(&p),
            policy: policy.version.clone(),
        };
        let carried = carried
            .filter(|g| !tool_changed && g.holds_for(&consent()))
            .map(|g| g.consent);
        let mut decision = decision;
        // The reasons quote the tool's name, which can carry anything: stored protected.
        if let Some(d) = decision.as_mut().filter(|_| policy.guarded(&p.name)) {
            for r in &mut d.reasons {
                *r = policy.protect_text(r);
            }
        }
        let mut confirmed_round: Option<Round> = None;
        if let Some(d) = decision
            .as_mut()
            .filter(|d| d.enforced() == policy::Action::Confirm)
        {
            let st = self.state();
            let cannot = if st.batching {
                Some("the call came in a batch, which cannot wait for an answer".to_string())
            } else if era == Era::V2026 && our_round.is_none() && carried.is_some() {
                None
            } else if era == Era::V2026 {
                match our_round.take() {
                    // Still to be confirmed, under another policy than the one whose reasons
                    // the person answered: asked again, as a 2025 held call is (helper-109 F4).
                    // A reload that no longer asks lets the call run (below).
                    Some(Ok(r)) if r.policy != policy.version => Some(
                        "the policy changed while it waited (the person answered reasons no longer in force); send the call again to be asked anew".into(),
                    ),
                    Some(Ok(r)) => {
                        confirmed_round = Some(r);
                        None
                    }
                    Some(Err(why)) => Some(why),
                    None if !meta.is_some_and(|m| {
                        m.client_capabilities
                            .as_ref()
                            .is_some_and(|c| c.elicits_form())
                    }) =>
                    {
                        Some(NO_FORM_ELICITATION.into())
                    }
                    None if self
                        .rounds()
                        .confirming
                        .values()
                        .filter(|r| r.deadline >= Instant::now())
                        .count()
                        >= MAX_HELD =>
                    {
                        Some("too many calls of this session wait for confirmation".into())
                    }
                    None => None,
                }
            } else if !st.client_elicits {
                Some(NO_FORM_ELICITATION.into())
            } else if st.awaiting.len() >= MAX_HELD {
                Some("too many calls of this session wait for confirmation".into())
            } else {
                None
            };
            if let Some(why) = cannot {
                d.reasons.push(format!(
                    "the policy asks to confirm this call, and it cannot run: {why}"
                ));
                d.action = policy::Action::Block;
            }
        }
        // The decision is no longer to confirm (a reload changed it): the round is still taken
        // out, or the call refused if its round cannot be used.
        let mut strip_round: Option<Round> = None;
        match our_round {
            Some(Ok(r)) => strip_round = Some(r),
            Some(Err(why)) => {
                let why = format!(
                    "the call carries a confirmation round of mcp-audit-proxy that cannot be used: {why}"
                );
                match decision.as_mut() {
                    Some(d) => {
                        d.reasons.push(why);
                        d.action = policy::Action::Block;
                    }
                    None => return Err(self.refuse_params(id, params, &why)),
                }
            }
            None => {}
        }
        // The server reads a lone surrogate escape (`\ud800`) as sent; the trail can only
        // store U+FFFD in its place (RFC 8785 text is UTF-8): the access says so, so the
        // stored arguments are not taken for the ones the server ran (helper-99 F3).
        if let Some(d) = decision.as_mut()
            && self
                .lone_surrogates
                .load(std::sync::atomic::Ordering::Relaxed)
            && p.arguments
                .is_some_and(|a| memchr::memmem::find(a.get().as_bytes(), b"\\ufffd").is_some())
        {
            d.reasons.push(
                "its arguments held lone UTF-16 surrogate escapes (\\uD800-\\uDFFF): the server got them as sent; the stored arguments have U+FFFD in their place".into(),
            );
        }
        // The answers were judged with the arguments: the access names them among its
        // reasons (helper-109 F2), and stores them (`input_responses`).
        if let (Some(d), Some(serde_json::Value::Object(answers))) =
            (decision.as_mut(), responses.as_ref())
        {
            let keys: Vec<&str> = answers.keys().map(String::as_str).collect();
            d.reasons.push(policy.protect_text(&format!(
                "its inputResponses {keys:?} were judged with its arguments (stored in input_responses)"
            )));
        }
        let (access_id, timestamp) = self.ids.next();
        let blocked = decision
            .as_ref()
            .is_some_and(|d| d.enforced() == policy::Action::Block);
        // The assessment already scanned the arguments: no tags, nothing to protect (unless
        // classifiers were turned off: secrets and card numbers are still kept out).
        let found = decision.as_ref().is_some_and(|d| !d.tags.is_empty()) || policy.guard_adds;
        let (stored_arguments, mut redacted) = as_stored(
            &policy,
            arguments.as_ref(),
            p.arguments.map(ToOwned::to_owned),
            found,
        );
        let (stored_responses, masked) = as_stored(
            &policy,
            responses.as_ref(),
            answers_sent(&p, ours, kept.as_deref()),
            found,
        );
        for class in masked {
            if !redacted.contains(&class) {
                redacted.push(class);
            }
        }
        let mut call = Call {
            access_id,
            request_id: id.clone(),
            tool: Some(p.name.to_string()),
            started,
            deadline: self.call_timeout.map(|t| started + t),
            protocol_version,
            era,
            user_agent,
            tool_version,
            risk,
            score: decision.as_ref().map(|d| d.score),
            tags: decision
                .as_ref()
                .map(|d| d.tags.clone())
                .unwrap_or_default(),
            policy: Some(policy.clone()),
            confirmation: None,
            consent: None,
            http,
            late: 0,
            progress: p
                .meta
                .as_ref()
                .and_then(|m| serde_json::from_str(m.progress_token?.get()).ok()),
        };
        let mut event = self.call_event(
            &call,
            EventType::ToolAccess,
            if blocked {
                Outcome::Blocked
            } else {
                Outcome::Initiated
            },
            Some(Metadata {
                arguments: stored_arguments,
                input_responses: stored_responses,
                retry_of,
                redacted,
                ..Metadata::default()
            }),
        );
        event.event_id = access_id;
        event.timestamp = timestamp;
        if let Some(d) = &decision {
            apply_decision(&mut event.metadata, d);
        }
        if blocked {
            self.state().withheld.insert(call.request_id.clone(), ());
            return Err(self.block(&call, event, decision.as_ref()));
        }
        // A call held for confirmation shows its arguments in the question (rare: copied).
        let held_arguments = decision
            .as_ref()
            .filter(|d| d.enforced() == policy::Action::Confirm)
            .map(|_| {
                event
                    .metadata
                    .arguments
                    .as_ref()
                    .map_or("{}", |a| a.get())
                    .to_string()
            });
        let ack = self
            .audit
            .admit_owned(Box::new(event))
            .map_err(|e| refused_by_audit(id, &e))?;
        if let Some(d) = decision
            .as_ref()
            .filter(|d| d.enforced() == policy::Action::Alert)
        {
            tracing::warn!(
                request_id = %id, tool = %p.name, event_id = %access_id, level = d.level.as_str(),
                score = d.score, decision = d.label(), reasons = %d.reasons.join("; "),
                "policy alert"
            );
        }
        tracing::debug!(request_id = %id, tool = %p.name, event_id = %access_id, "tool call recorded");
        if let Some(round) = confirmed_round.or(strip_round) {
            // A retry answering the proxy's round: forwarded without it.
            if decision
                .as_ref()
                .is_some_and(|d| d.enforced() == policy::Action::Confirm)
            {
                call.confirmation = Some("accepted by the person at the client".into());
                call.consent = Some(consent());
            }
            let mut st = self.state();
            st.instead.insert(
                id.clone(),
                Instead::Rewrite {
                    server_state: round.server_state,
                    server_responses: round.server_responses,
                },
            );
            st.calls.insert(id.clone(), call);
            return Ok((ack, Some(id.clone())));
        }
        if let Some(d) = decision
            .as_ref()
            .filter(|d| d.enforced() == policy::Action::Confirm && era == Era::V2026)
        {
            if carried.is_none() {
                return self.ask_by_round(id, &p, call, d, ack);
            }
            call.confirmation = Some(
                "accepted by the person at the client, in the round this retry continues".into(),
            );
            call.consent = carried;
            self.state().calls.insert(id.clone(), call);
            return Ok((ack, Some(id.clone())));
        }
        if let Some(d) = decision
            .as_ref()
            .filter(|d| d.enforced() == policy::Action::Confirm)
        {
            // Held: `hold` asks the client once the caller has the request's bytes.
            let arguments = held_arguments.as_deref().unwrap_or("{}");
            let hash = arguments_hash(&p);
            let question = question(&p.name, &hash, arguments, d);
            self.state().confirming.insert(id.clone(), (call, question));
            return Ok((ack, Some(id.clone())));
        }
        // Inserted after recording: no end can be recorded before its access event is queued.
        self.state().calls.insert(id.clone(), call);
        Ok((ack, Some(id.clone())))
    }

    /// Records a blocked call (access and failure, both `blocked`) and builds the error the
    /// client gets: a stable code, the reasons, and the event id to quote.
    pub(super) fn block(
        &self,
        call: &Call,
        access: AuditEvent,
        decision: Option<&Decision>,
    ) -> Refusal {
        let reasons = decision.map(|d| d.reasons.join("; ")).unwrap_or_default();
        let tool = call.tool.clone().unwrap_or_default();
        let mut failure = self.failure_event(
            call,
            Outcome::Blocked,
            Side::Client,
            Some(POLICY_BLOCKED),
            &format!("blocked by policy: {reasons}"),
        );
        if let Some(d) = decision {
            apply_decision(&mut failure.metadata, d);
        }
        let recorded = self
            .audit
            .record(&access)
            .and_then(|_| self.audit.record(&failure));
        if let Err(e) = &recorded {
            tracing::error!(error = %e, "blocked tool call could not be recorded");
        }
        tracing::warn!(
            request_id = %call.request_id, tool = %tool, event_id = %failure.event_id,
            reasons = %reasons, "tool call blocked by policy"
        );
        let (level, score) = decision.map_or(("unknown", 0), |d| (d.level.as_str(), d.score));
        Refusal {
            extra: None,
            id: Some(call.request_id.clone()),
            code: POLICY_BLOCKED,
            message: format!(
                "mcp-audit-proxy blocked this call to tool {tool:?} (risk {level}, score {score}): {reasons}. Quote event {} to your security team if it should be allowed",
                failure.event_id
            ),
            event: recorded.is_ok().then_some(failure.event_id),
        }
        .with_decision(decision)
    }

    /// Ends a call that was refused after its access event was queued (never forwarded).
    pub(super) fn end_unforwarded(&self, id: &RequestId, reason: &str) {
        let Some(call) = ({
            let mut st = self.state();
            st.withheld.insert(id.clone(), ());
            st.calls.remove(id)
        }) else {
            return;
        };
        let event = self.failure_event(&call, Outcome::Refused, Side::Internal, None, reason);
        if let Err(e) = self.audit.record(&event) {
            tracing::error!(error = %e, request_id = %id, "refusal could not be recorded");
        }
    }

    /// Drops the contexts of calls whose access event failed after being queued: the journal
    /// is broken, so no end event can be written either.
    pub fn abandon(&self, ids: &[RequestId]) {
        let mut st = self.state();
        for id in ids {
            st.calls.remove(id);
        }
    }
}

/// What an event stores of a value the server gets (the arguments, a retry's
/// `inputResponses`, an answer to the server's question): `raw` as sent, or, when the assessment found something to mask
/// (`found`), the value as the policy read it (`judged`) masked, with the classes masked.
pub(super) fn as_stored(
    policy: &policy::Policy,
    judged: Option<&serde_json::Value>,
    raw: Option<Box<RawValue>>,
    found: bool,
) -> (Option<Box<RawValue>>, Vec<String>) {
    if found
        && raw.is_some()
        && let Some((protected, classes)) = judged.and_then(|v| policy.protect(v))
    {
        let classes = classes.iter().map(|c| c.as_str().to_string()).collect();
        return (serde_json::value::to_raw_value(&protected).ok(), classes);
    }
    (raw, Vec::new())
}

/// The `inputResponses` of a 2026-07-28 retry as the server gets them, as sent: all of them
/// but, in a retry of the proxy's own round (`ours`), its confirmation answer, which that
/// round takes out before forwarding, and with the server's answers that round `kept` (a
/// JSON object) put back; `None` when none is left.
fn answers_sent(p: &CallToolParams<'_>, ours: bool, kept: Option<&str>) -> Option<Box<RawValue>> {
    let mut theirs: std::collections::BTreeMap<&str, &RawValue> = p
        .input_responses
        .iter()
        .flatten()
        .filter(|(k, _)| !ours || **k != CONFIRM_KEY)
        .map(|(k, v)| (&**k, *v))
        .collect();
    // The server's answers the proxy's round kept, put back as `without_round` does (theirs
    // win over a key the retry repeats).
    let kept: std::collections::BTreeMap<String, Box<RawValue>> = kept
        .and_then(|k| serde_json::from_str(k).ok())
        .unwrap_or_default();
    theirs.extend(kept.iter().map(|(k, v)| (k.as_str(), &**v)));
    if theirs.is_empty() {
        return None;
    }
    serde_json::value::to_raw_value(&theirs).ok()
}

/// The SHA-256 of a call's arguments as sent (absent: `{}`), in hex: what a person is asked
/// to confirm, and what a confirmed retry must match.
pub(super) fn arguments_hash(p: &CallToolParams<'_>) -> String {
    let bytes = p.arguments.map_or(&b"{}"[..], |a| a.get().as_bytes());
    policy::sha256_hex(bytes, 32)
}

/// A call's params; `message::parse` validated them, so the arguments are not read again
/// ([`crate::jsonrpc::members`]) unless something unusual needs serde_json's own reading.
pub(super) fn decode_call(params: Option<&RawValue>) -> Result<CallToolParams<'_>, String> {
    let params = params.ok_or_else(|| "missing params".to_string())?;
    if let Some(p) = crate::jsonrpc::members::from_validated_object(params.get()) {
        return Ok(p);
    }
    serde_json::from_str(params.get()).map_err(|e| e.to_string())
}
