//! The server's questions to the person or the model at the client, and the client's
//! answers to them (MCP 2025-11-25 "Client Features": `elicitation/create`,
//! `sampling/createMessage`).
//!
//! In the 2025 revisions a server asks in a JSON-RPC request of its own, in the middle of a
//! call, and the client answers in a response: a form the person filled in, a message the
//! client's model wrote. The server acts on that answer as on a call's arguments, and a
//! server can ask for anything (a password, an API key), so the answer is judged by the
//! classifiers as arguments are and recorded as a `server_request` event with the question,
//! masked as arguments are ([`EventType::ServerRequest`]). The 2026-07-28 revision carries
//! such answers in the call's retry (`inputResponses`), stored on its access event.
//!
//! The answer is judged, not enforced: it goes on to the server whatever it holds (refusing
//! it would leave the server's call without the answer it waits for); its risk and tags
//! raise an alert as a call's do. In `sync` mode it is forwarded once its event is durable;
//! when its event cannot be queued, the server gets an error in place of the answer.

use super::*;
use crate::policy::classify::Class;

/// The most of a question's params held until its answer comes, in bytes. A form is a few
/// hundred bytes; a sampling request carries a conversation, possibly large. Past this, the
/// event names the params' length and hash instead (at most [`MAX_ENDED`] questions are
/// held, so at most 64 MiB).
const MAX_HELD_QUESTION: usize = 64 * 1024;

/// What an `elicitation/create` answer carrying a secret or a card number adds to its
/// score (so that either alone reaches the default `high`): the server asked for what MCP
/// says it must not.
const ELICITED_CREDENTIAL: u8 = 25;

/// A server's question the client has not answered yet.
#[derive(Debug)]
pub(super) struct Question {
    /// `elicitation/create` or `sampling/createMessage`.
    method: String,
    /// Its params as sent, when within [`MAX_HELD_QUESTION`].
    params: Option<Box<RawValue>>,
    /// The length and SHA-256 (hex) of params too long to hold.
    too_long: Option<(usize, String)>,
    /// When it went to the client.
    at: Instant,
}

/// Whether a server's request is a question the person or the client's model answers.
pub(super) fn is_question(method: &str) -> bool {
    matches!(method, "elicitation/create" | "sampling/createMessage")
}

impl Pipeline {
    /// Notes the server's question `id` going to the client, to record with its answer.
    pub(super) fn asked(st: &mut State, id: &RequestId, method: &str, params: Option<&RawValue>) {
        let (params, too_long) = match params {
            Some(p) if p.get().len() > MAX_HELD_QUESTION => (
                None,
                Some((p.get().len(), policy::sha256_hex(p.get().as_bytes(), 32))),
            ),
            p => (p.map(ToOwned::to_owned), None),
        };
        st.questions.insert(
            id.clone(),
            Question {
                method: method.to_string(),
                params,
                too_long,
                at: Instant::now(),
            },
        );
    }

    /// The client's answer `body` to the server's request `id`: recorded when it answers a
    /// question ([`is_question`]), with the ack the answer waits for in `sync` mode. `Err`
    /// when its event cannot be queued (the answer must not go on unrecorded).
    pub(super) fn answer_to_question(
        &self,
        id: &RequestId,
        body: ResponseBody<'_>,
    ) -> Result<Ack, Refusal> {
        let Some(question) = self.state().questions.remove(id) else {
            return Ok(Ack::done());
        };
        let (result, answer) = match body {
            ResponseBody::Result(raw) => (Outcome::Success, ("result", raw)),
            ResponseBody::Error(raw) => (Outcome::JsonrpcError, ("error", raw)),
        };
        let event = self.question_event(id, question, result, Some(answer), None);
        match self.audit.admit_owned(Box::new(event)) {
            Ok(ack) => Ok(ack),
            Err(e) => {
                tracing::error!(request_id = %id, error = %e, "the client's answer to a server request withheld: audit trail unavailable");
                Err(audit_refusal(id, &e.to_string()))
            }
        }
    }

    /// The client's answer to the server's request `id` was not passed on (`why`): recorded
    /// as `refused` when it answers a question.
    pub(super) fn question_refused(&self, id: &RequestId, why: &str) {
        let Some(question) = self.state().questions.remove(id) else {
            return;
        };
        let event = self.question_event(id, question, Outcome::Refused, None, Some(why));
        if let Err(e) = self.audit.record(&event) {
            tracing::error!(request_id = %id, error = %e, "a refused answer to a server request could not be recorded");
        }
    }

    /// The `server_request` event of `question` (the server's request `id`), answered with
    /// `answer` (its member name, `result` or `error`, and its value as sent).
    fn question_event(
        &self,
        id: &RequestId,
        question: Question,
        result: Outcome,
        answer: Option<(&str, &RawValue)>,
        why: Option<&str>,
    ) -> AuditEvent {
        let policy = self.policy.current();
        let http = self.request_http();
        let (protocol_version, era, user_agent, tool_version) = {
            let st = self.state();
            let (version, era) = st.version_for(None);
            (
                version,
                era,
                st.client.as_ref().map(Implementation::agent),
                st.server.as_ref().map(Implementation::agent),
            )
        };
        let mut meta = Metadata {
            request_id: Some(stored_request_id(&policy, id)),
            protocol_version,
            protocol_era: era,
            auth_method: Some(self.info.auth_method.into()),
            user_agent,
            tool_version,
            http,
            execution_time_us: Some(question.at.elapsed().as_micros() as u64),
            ..Metadata::default()
        };
        let mut reasons = Vec::new();
        if let Some((len, hash)) = &question.too_long {
            reasons.push(format!(
                "the server's params ({len} bytes, SHA-256 {hash}) were longer than the {MAX_HELD_QUESTION} bytes held until the answer; not stored"
            ));
        }
        if let Some(why) = why {
            reasons.push(format!("the answer was not passed on to the server: {why}"));
        }
        let mut classes = Vec::new();
        let (stored_question, masked) =
            stored(&policy, question.params, &mut classes, &mut reasons);
        meta.arguments = stored_question;
        meta.redacted = masked;
        let mut answered = Vec::new();
        if let Some((member, raw)) = answer {
            let wrapped = rebuilt_object(member, raw);
            let (stored_answer, masked) = stored(&policy, wrapped, &mut answered, &mut reasons);
            meta.input_responses = stored_answer;
            for class in masked {
                if !meta.redacted.contains(&class) {
                    meta.redacted.push(class);
                }
            }
        }
        // MCP 2025-11-25 "Elicitation", Security: servers MUST NOT use form mode elicitation
        // to request sensitive information such as passwords, API keys, access tokens or
        // payment credentials (they use URL mode). Such an answer is a server asking for
        // what it must not: scored on top of what it carries.
        let mut score = 0u32;
        if question.method == "elicitation/create"
            && let Some(class) = answered
                .iter()
                .find(|c| matches!(c, Class::Secret | Class::PaymentCard))
        {
            score += u32::from(ELICITED_CREDENTIAL);
            meta.risk_reasons.push(format!(
                "the person answered a form with {} (+{ELICITED_CREDENTIAL}): MCP forbids asking for credentials in form mode",
                class.as_str()
            ));
        }
        classes.extend(answered);
        let mut tags: Vec<&'static str> = Vec::new();
        for class in &classes {
            if tags.contains(&class.tag()) {
                continue;
            }
            tags.push(class.tag());
            let add = policy::class_score(*class);
            score += u32::from(add);
            meta.risk_reasons
                .push(format!("the exchange contains {} (+{add})", class.as_str()));
        }
        tags.sort_unstable();
        let score = score.min(100) as u8;
        let risk_level = if policy.enabled {
            meta.risk_score = Some(score);
            meta.policy_version = Some(policy.version.clone());
            policy.level_of(score)
        } else {
            RiskLevel::Low
        };
        if !reasons.is_empty() {
            meta.reason = Some(policy.protect_text(&reasons.join("; ")));
        }
        let (event_id, timestamp) = self.ids.next();
        let event = AuditEvent {
            event_id,
            timestamp,
            event_type: EventType::ServerRequest,
            user_id: self.info.user_id.clone(),
            tool_name: None,
            action: question.method,
            result,
            metadata: meta,
            risk_level,
            compliance_tags: tags.iter().map(|t| t.to_string()).collect(),
            session_id: self.info.session_id.clone(),
            upstream: self.info.upstream.clone(),
            linked_event_id: None,
        };
        if risk_level >= RiskLevel::High {
            tracing::warn!(
                request_id = %id, method = %event.action, event_id = %event.event_id,
                level = risk_level.as_str(), score, "the client's answer to a server request carries sensitive data"
            );
        }
        event
    }
}

/// `{"<member>": raw}` as JSON text.
fn rebuilt_object(member: &str, raw: &RawValue) -> Option<Box<RawValue>> {
    let mut text = String::with_capacity(raw.get().len() + member.len() + 5);
    text.push('{');
    text.push_str(&serde_json::to_string(member).ok()?);
    text.push(':');
    text.push_str(raw.get());
    text.push('}');
    RawValue::from_string(text).ok()
}

/// What an event stores of `raw` (a question's params, an answer): as sent, or with what
/// the policy keeps out of the trail masked (the classes masked returned); the classes found
/// in it are added to `classes`. Read strictly: with a repeated key the copy a server keeps
/// could be the one left unmasked, so a value that cannot be read one way only and may hold
/// something to mask is stored as its length and hash (said in `notes`).
fn stored(
    policy: &Policy,
    raw: Option<Box<RawValue>>,
    classes: &mut Vec<Class>,
    notes: &mut Vec<String>,
) -> (Option<Box<RawValue>>, Vec<String>) {
    let Some(raw) = raw else {
        return (None, Vec::new());
    };
    let value = match crate::policy::strict::parse_validated_exact(raw.get()) {
        Ok(v) => v,
        Err(_) => {
            if policy.enabled {
                classes.extend(policy.scan_text(raw.get()));
            }
            if !(policy.guarded(raw.get()) || raw.get().contains('\\')) {
                return (Some(raw), Vec::new());
            }
            notes.push(
                "a value could not be read one way only (a repeated key, or nesting too deep) to mask: stored as its length and SHA-256".into(),
            );
            let kept = json!({
                "bytes": raw.get().len(),
                "sha256": policy::sha256_hex(raw.get().as_bytes(), 32),
            });
            return (serde_json::value::to_raw_value(&kept).ok(), Vec::new());
        }
    };
    if policy.enabled {
        classes.extend(policy.scan_result(&value));
    }
    match policy.protect(&value) {
        Some((protected, masked)) => (
            serde_json::value::to_raw_value(&protected).ok(),
            masked.iter().map(|c| c.as_str().to_string()).collect(),
        ),
        None => (Some(raw), Vec::new()),
    }
}
