//! Confirmation: a call the policy wants a person to approve is held while the client is
//! asked, by `elicitation/create` (2025 revisions) or an `input_required` round of the proxy's
//! own (2026-07-28), and runs only on an explicit accept.

use super::*;

impl Pipeline {
    /// Takes the proxy's round `token` out of the session and checks the retry against it:
    /// the same tool and arguments, in time, accepted.
    pub(super) fn take_round_of(
        &self,
        token: &str,
        p: &CallToolParams<'_>,
    ) -> Result<Round, String> {
        let round = {
            let mut rounds = self.rounds();
            rounds.order.retain(|t| t != token);
            rounds.confirming.remove(token)
        };
        let hash = arguments_hash(p);
        let answer = p
            .input_responses
            .as_ref()
            .and_then(|r| r.get(CONFIRM_KEY))
            .and_then(|a| read_answer(a.get()));
        match round {
            None => Err("its confirmation round is unknown or expired".into()),
            Some(r) if r.tool != *p.name || r.hash != hash => Err(
                "it is not the call that was put to the person (tool or arguments changed)".into(),
            ),
            Some(r) if r.deadline < Instant::now() => {
                Err("the answer came after risk.confirm_timeout_ms".into())
            }
            Some(_) if !answer.as_ref().is_some_and(confirmed) => {
                Err(match answer.and_then(|a| a.action) {
                    Some(action) => format!(
                        "the person answered {:?} without allowing it",
                        action.chars().take(32).collect::<String>()
                    ),
                    None => "the retry carries no answer to the confirmation".into(),
                })
            }
            Some(r) => Ok(r),
        }
    }

    /// Asks a 2026-07-28 client to confirm a call: the call ends with an input_required result
    /// of the proxy's own (recorded as such), and its retry, carrying the person's answer,
    /// is checked in `begin_call`.
    pub(super) fn ask_by_round(
        &self,
        id: &RequestId,
        p: &CallToolParams<'_>,
        mut call: Call,
        d: &Decision,
        access_ack: Ack,
    ) -> Admission {
        let token = format!("{CONFIRM_PREFIX}{}", ulid::Ulid::generate());
        let hash = arguments_hash(p);
        let result = json!({
                "resultType": "input_required",
                "inputRequests": {
                    CONFIRM_KEY: confirmation_request(&question(&p.name, &hash, p.arguments.map_or("{}", |a| a.get()), d)),
                },
                "requestState": token,
        });
        let mut bytes = rebuilt_message(Some(id), None, &[("result", &result)]).into_bytes();
        bytes.push(b'\n');
        call.confirmation = Some("asked the person at the client (input_required round)".into());
        let mut end = self.call_event(
            &call,
            EventType::ToolExecution,
            Outcome::InputRequired,
            Some(Metadata {
                input_requests: vec![CONFIRM_KEY.into()],
                reason: Some(
                    "the proxy asked the person at the client to confirm this call".into(),
                ),
                ..Metadata::default()
            }),
        );
        apply_decision(&mut end.metadata, d);
        let ack = self
            .audit
            .record(&end)
            .map_err(|e| refused_by_audit(id, &e))?;
        drop(access_ack);
        let timeout = call
            .policy
            .as_ref()
            .map_or(Duration::from_secs(120), |p| p.confirm_timeout);
        let mut st = self.state();
        let mut rounds = self.rounds();
        rounds.remember(
            round_key(&p.name, Some(&token), std::iter::empty()),
            end.event_id,
            None,
        );
        // Rounds the client never answered are dropped when they expire.
        let now = Instant::now();
        rounds.confirming.retain(|_, r| r.deadline >= now);
        let Rounds {
            confirming, order, ..
        } = &mut *rounds;
        order.retain(|t| confirming.contains_key(t));
        rounds.order.push_back(token.clone());
        rounds.confirming.insert(
            token,
            Round {
                tool: p.name.to_string(),
                hash,
                policy: d.version.clone(),
                deadline: Instant::now() + timeout,
                server_state: p.request_state.as_deref().map(str::to_string),
                server_responses: p
                    .input_responses
                    .as_ref()
                    .and_then(|r| serde_json::to_string(r).ok()),
            },
        );
        st.instead
            .insert(id.clone(), Instead::Reply(Bytes::from(bytes)));
        // The proxy answered the call itself: the server never received it.
        st.withheld.insert(id.clone(), ());
        tracing::info!(request_id = %id, tool = %p.name, "asking the client to confirm a tool call (input_required)");
        Ok((ack, Some(id.clone())))
    }

    /// Holds a call the policy wants confirmed and returns the `elicitation/create` request
    /// for the client; gives the ack back if the call is not one to confirm.
    pub(super) fn hold(&self, id: &RequestId, line: &Bytes, ack: Ack) -> Result<Bytes, Ack> {
        let mut st = self.state();
        let Some((call, question)) = st.confirming.remove(id) else {
            return Err(ack);
        };
        // A string id of the proxy's own, unlike any a client or server picks.
        let ask = RequestId::Str(format!("{CONFIRM_PREFIX}{}", ulid::Ulid::generate()).into());
        let mut request = confirmation_request(&question);
        request["jsonrpc"] = json!("2.0");
        request["id"] = json!(ask);
        let mut bytes = serde_json::to_vec(&request).unwrap_or_default();
        bytes.push(b'\n');
        let timeout = call
            .policy
            .as_ref()
            .map_or(Duration::from_secs(120), |p| p.confirm_timeout);
        tracing::info!(request_id = %id, tool = ?call.tool, ask = %ask, "asking the client to confirm a tool call");
        st.awaiting.insert(
            ask,
            Awaiting {
                call,
                line: line.clone(),
                ack,
                deadline: Instant::now() + timeout,
            },
        );
        Ok(Bytes::from(bytes))
    }

    /// A message of the client's that is for the proxy, not the server: an answer to a
    /// confirmation request ([`Self::confirmation_answer`]), or the cancellation of a call
    /// held for one ([`Self::cancel_of_held`]). `None`: the server's.
    pub(super) fn for_the_proxy(&self, msg: &Message<'_>) -> Option<Route> {
        self.confirmation_answer(msg)
            .or_else(|| self.cancel_of_held(msg))
    }

    /// A `notifications/cancelled` of a call held for confirmation: the server never saw the
    /// call, so the cancellation is not its to hear. The call ends `cancelled` (as a forwarded
    /// one does); a later answer to its question is dropped. On stdio the question is
    /// withdrawn (a `notifications/cancelled` of it to the client, so its dialog closes);
    /// through the gateway it is not yet: a route to the client here would be taken for the
    /// answer to the POST that carried the cancellation.
    fn cancel_of_held(&self, msg: &Message<'_>) -> Option<Route> {
        let Message::Notification {
            method,
            params: Some(params),
        } = msg
        else {
            return None;
        };
        if method != "notifications/cancelled" {
            return None;
        }
        let c = CancelledParams::read(Some(params)).ok()??;
        let ask = self
            .state()
            .awaiting
            .iter()
            .find(|(_, a)| a.call.request_id == c.request_id)
            .map(|(ask, _)| ask.clone())?;
        self.cancel(&c.request_id, c.reason.as_deref());
        if self.info.auth_method != STDIO {
            return Some(Route::Taken);
        }
        let withdrawn = message::cancelled(&ask, "the call it asked about was cancelled");
        Some(Route::ToClient(Outbound::now(withdrawn)))
    }

    /// The client's answer to a confirmation request: the held call goes to the server on an
    /// explicit accept, and is blocked otherwise. `None`: not an answer to the proxy.
    fn confirmation_answer(&self, msg: &Message<'_>) -> Option<Route> {
        let Message::Response {
            id: Some(ask),
            body,
        } = msg
        else {
            return None;
        };
        let waiting = match self.take_question(ask) {
            Ok(w) => w,
            Err(ended_before) => return ended_before.then_some(Route::Taken),
        };
        let answer = match body {
            ResponseBody::Result(raw) => read_answer(raw.get()),
            ResponseBody::Error(_) => None,
        };
        let accepted = answer.as_ref().is_some_and(confirmed);
        let mut call = waiting.call;
        // The answer is for the call as it was judged: not after its time, nor once the policy
        // or the tool's definition changed (the call would be judged anew: send it again).
        let current = self.policy.current();
        let late = waiting.deadline < Instant::now();
        let changed = call
            .policy
            .as_ref()
            .is_some_and(|p| p.version != current.version)
            || call.tool.as_deref().is_some_and(|t| self.tool_changed(t));
        if accepted && (late || changed) {
            let how = if late {
                "the answer came after risk.confirm_timeout_ms"
            } else {
                "the policy or the tool's definition changed while it waited; send the call again"
            };
            call.confirmation = Some(format!("not confirmed: {how}"));
            return Some(Route::ToClient(self.unconfirmed(&call, how)));
        }
        if !accepted {
            let how = match answer.as_ref().and_then(|a| a.action.as_deref()) {
                Some("accept") => "the person did not check \"Allow this call\"".to_string(),
                Some(action) => format!(
                    "the person answered {:?}",
                    action.chars().take(32).collect::<String>()
                ),
                None => "the client answered with an error or an unreadable result".to_string(),
            };
            call.confirmation = Some(format!("not confirmed: {how}"));
            return Some(Route::ToClient(self.unconfirmed(&call, &how)));
        }
        call.confirmation = Some("accepted by the person at the client".into());
        call.deadline = self.call_timeout.map(|t| Instant::now() + t);
        let id = call.request_id.clone();
        tracing::info!(request_id = %id, tool = ?call.tool, "tool call confirmed; forwarded");
        self.state().calls.insert(id.clone(), call);
        Some(Route::ToServer(Outbound {
            budget: None,
            bytes: waiting.line,
            ack: waiting.ack,
            if_unrecorded: Some(Unrecorded {
                reply: Box::new({
                    let id = id.clone();
                    move || audit_refusal(&id, START_UNRECORDED).line()
                }),
                calls: vec![id],
                to_server: false,
            }),
            ends: Vec::new(),
            held: false,
        }))
    }

    /// The client answered the proxy's question `ask` with a line the proxy refused (`why`):
    /// the call it held is blocked, as for an unreadable answer. `None`: `ask` is no question
    /// of the proxy's; a question that ended before is taken quietly.
    pub(super) fn unreadable_confirmation(&self, ask: &RequestId, why: &str) -> Option<Route> {
        let waiting = match self.take_question(ask) {
            Ok(w) => w,
            Err(ended_before) => return ended_before.then_some(Route::Taken),
        };
        let mut call = waiting.call;
        let how = format!("the client's answer was refused: {why}");
        call.confirmation = Some(format!("not confirmed: {how}"));
        Some(Route::ToClient(self.unconfirmed(&call, &how)))
    }

    /// The held call that the proxy's question `ask` is about, taken out of the session for
    /// its answer. `Err(true)`: a question that ended before (timeout, cancellation: the late
    /// answer is the proxy's to take, not the server's); `Err(false)`: no question of the
    /// proxy's.
    fn take_question(&self, ask: &RequestId) -> Result<Awaiting, bool> {
        let mut st = self.state();
        match st.awaiting.remove(ask) {
            Some(w) => {
                st.forget_question(ask.clone());
                Ok(w)
            }
            None => Err(st.asked_before.contains(ask)),
        }
    }

    /// Ends a held call that was not confirmed: recorded as `blocked`, answered with -32010.
    fn unconfirmed(&self, call: &Call, how: &str) -> Outbound {
        self.state().withheld.insert(call.request_id.clone(), ());
        let tool = call.tool.clone().unwrap_or_default();
        let reason = format!("the call needed confirmation and {how}");
        tracing::warn!(request_id = %call.request_id, tool = %tool, reason = %reason, "tool call blocked: not confirmed");
        let mut out = self.end_with_reply(
            call,
            Outcome::Blocked,
            Side::Client,
            POLICY_BLOCKED,
            &reason,
            |event| {
                format!(
                    "mcp-audit-proxy blocked this call to tool {tool:?}: {reason}. Quote event {event} to your security team if it should be allowed"
                )
            },
        );
        out.held = true;
        out
    }

    pub(super) fn expire_confirmations(&self, now: Instant) -> Vec<Route> {
        let late: Vec<(RequestId, Awaiting)> = {
            let mut st = self.state();
            let asks: Vec<RequestId> = st
                .awaiting
                .iter()
                .filter(|(_, a)| a.deadline <= now)
                .map(|(ask, _)| ask.clone())
                .collect();
            asks.into_iter()
                .filter_map(|ask| {
                    let waiting = st.awaiting.remove(&ask)?;
                    st.forget_question(ask.clone());
                    Some((ask, waiting))
                })
                .collect()
        };
        let mut routes = Vec::new();
        for (ask, waiting) in late {
            let mut call = waiting.call;
            call.confirmation = Some("not confirmed: no answer in time".into());
            let reply = self.unconfirmed(&call, "no answer came within risk.confirm_timeout_ms");
            let cancel = notification(
                "notifications/cancelled",
                json!({ "requestId": ask, "reason": "timed out in mcp-audit-proxy" }),
            );
            routes.push(Route::ToClient(Outbound::now(cancel)));
            routes.push(Route::ToClient(reply));
        }
        routes
    }
}

/// A confirmed retry as the server must see it: the proxy's `requestState` and answer taken
/// out, the server's own round (if the call carried one) put back. Every other value keeps
/// its bytes (the arguments are what was hashed and approved); keys may be reordered.
pub(super) fn without_round(
    line: &Bytes,
    server_state: Option<String>,
    server_responses: Option<String>,
) -> Result<Bytes, String> {
    type Raw = std::collections::BTreeMap<String, Box<RawValue>>;
    let unreadable = |e: serde_json::Error| format!("the retry cannot be rewritten: {e}");
    let mut message: Raw = serde_json::from_slice(trim_line_end(line)).map_err(unreadable)?;
    let params = message
        .get("params")
        .ok_or_else(|| "the retry has no params".to_string())?;
    let mut params: Raw = serde_json::from_str(params.get()).map_err(unreadable)?;
    params.remove("requestState");
    let mut responses: Raw = match params.remove("inputResponses") {
        Some(r) => serde_json::from_str(r.get()).map_err(unreadable)?,
        None => Raw::new(),
    };
    responses.remove(CONFIRM_KEY);
    if let Some(theirs) = server_responses {
        let theirs: Raw = serde_json::from_str(&theirs).map_err(unreadable)?;
        responses.extend(theirs);
    }
    if !responses.is_empty() {
        params.insert("inputResponses".into(), raw_json(&responses)?);
    }
    if let Some(state) = server_state {
        params.insert("requestState".into(), raw_json(&state)?);
    }
    message.insert("params".into(), raw_json(&params)?);
    let mut out = serde_json::to_vec(&message).map_err(unreadable)?;
    out.push(b'\n');
    Ok(Bytes::from(out))
}

fn raw_json<T: serde::Serialize>(value: &T) -> Result<Box<RawValue>, String> {
    serde_json::value::to_raw_value(value)
        .map_err(|e| format!("the retry cannot be rewritten: {e}"))
}

/// The person's answer to a confirmation (an `elicitation/create` result, or the proxy's
/// `inputResponses` entry), read strictly: with a repeated key (`"confirm":false,
/// "confirm":true`) the client may have shown the person one copy and sent the other, so
/// such an answer is unreadable (`None`), and the call is blocked.
fn read_answer(text: &str) -> Option<ElicitResultView> {
    let value = crate::policy::strict::parse(text).ok()?;
    serde_json::from_value(value).ok()
}

/// Whether the person accepted a confirmation and checked "Allow this call".
fn confirmed(answer: &ElicitResultView) -> bool {
    answer.action.as_deref() == Some("accept")
        && answer.content.as_ref().and_then(|c| c.get("confirm")) == Some(&Value::Bool(true))
}

/// What the person at the client is asked: this exact call, and why.
pub(super) fn question(tool: &str, hash: &str, arguments: &str, d: &Decision) -> String {
    // What the person reads must be what runs (helper-109 F3: a long first member filled
    // the preview, the path that ran was never shown, and line separators inside a string
    // drew a fake "Risk: low" line). So: the reasons before the arguments, the arguments'
    // top-level keys all named, every character that breaks or hides a line shown as an
    // escape, and a cut said to be one.
    let keys: Vec<String> = serde_json::from_str::<serde_json::Map<String, Value>>(arguments)
        .map(|m| m.keys().map(|k| visible(k)).collect())
        .unwrap_or_default();
    let shown = visible(arguments);
    let preview: String = shown.chars().take(PREVIEW_CHARS).collect();
    let more = shown.chars().count().saturating_sub(PREVIEW_CHARS);
    let cut = if more > 0 {
        format!(" … ({more} more characters not shown; the SHA-256 is of all of them)")
    } else {
        String::new()
    };
    format!(
        "The security policy asks you to confirm this tool call before it runs.\n\nTool: {}\nRisk: {} (score {}): {}\nArgument names: {}\nArguments (SHA-256 {hash}): {preview}{cut}\n\nAllow this call?",
        visible(tool),
        d.level.as_str(),
        d.score,
        visible(&d.reasons.join("; ")),
        if keys.is_empty() {
            "(none)".to_string()
        } else {
            keys.join(", ")
        },
    )
}

/// How much of the arguments' text a confirmation question shows.
const PREVIEW_CHARS: usize = 600;

/// `text` with every character that breaks a line, hides text or reorders it (controls,
/// U+0085, U+2028, U+2029, format characters such as zero-width spaces and bidirectional
/// overrides) written as `\u{…}`, so that a question cannot be made to show what is not in it.
fn visible(text: &str) -> String {
    // Controls (U+0085 among them), the line and paragraph separators, and the format
    // characters a tool name may not hold ([`crate::policy::admit::invisible`]).
    let hidden = |c: char| {
        c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') || crate::policy::admit::invisible(c)
    };
    if !text.chars().any(hidden) {
        return text.to_string();
    }
    text.chars()
        .map(|c| {
            if hidden(c) {
                format!("\\u{{{:04X}}}", u32::from(c))
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// An `elicitation/create` request (method and params) for a confirmation.
fn confirmation_request(question: &str) -> Value {
    json!({
        "method": "elicitation/create",
        "params": {
            "message": question,
            "requestedSchema": {
                "type": "object",
                "properties": {
                    "confirm": {
                        "type": "boolean",
                        "title": "Allow this call",
                        "description": "Check to let this exact call run; anything else blocks it.",
                    },
                },
                "required": ["confirm"],
            },
        },
    })
}

#[cfg(test)]
mod question_tests {
    use super::*;

    fn decision() -> Decision {
        Decision {
            score: 60,
            level: crate::audit::event::RiskLevel::High,
            reasons: vec!["rule \"shell\" matched".into()],
            tags: Vec::new(),
            action: crate::policy::Action::Confirm,
            shadowed: false,
            version: "v".into(),
        }
    }

    /// helper-109 F3: a long first member hid the path that ran, and a line separator drew a
    /// fake risk line.
    #[test]
    fn the_question_names_every_key_says_it_is_cut_and_draws_no_line_of_the_callers() {
        let args = format!(
            r#"{{"a_note":"\u2028Risk: low (score 5): read-only {}","path":"/home/alice/thesis.docx"}}"#,
            "x".repeat(2000)
        );
        // As JSON text holds it: the separator raw inside the string.
        let args = args.replace("\\u2028", "\u{2028}");
        assert!(args.contains('\u{2028}'));
        let q = question("delete_file", "abc", &args, &decision());
        assert!(q.contains("Argument names: a_note, path"), "{q}");
        assert!(q.contains("more characters not shown"), "{q}");
        assert!(!q.contains('\u{2028}'), "{q}");
        assert_eq!(
            q.lines().filter(|l| l.starts_with("Risk:")).count(),
            1,
            "{q}"
        );
        // The real reasons come before anything of the caller's.
        assert!(
            q.find("rule \"shell\"").unwrap() < q.find("a_note").unwrap(),
            "{q}"
        );
        // A short call is shown whole, with no cut.
        let q = question("echo", "abc", r#"{"text":"hi"}"#, &decision());
        assert!(
            q.contains(r#"{"text":"hi"}"#) && !q.contains("not shown"),
            "{q}"
        );
    }
}
