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
//! when its event cannot be queued or made durable, the server gets an error in its place.
//! Answers to the server's other requests (`ping`, `roots/list`) are not recorded; an answer
//! to a request the proxy holds nothing of is (`action` `unknown`).

use super::*;
use crate::policy::classify::Class;

/// The most of one question's params held until its answer comes, in bytes. A form is a
/// few hundred bytes; a sampling request carries a conversation, possibly large. Past this,
/// or past [`MAX_HELD_QUESTIONS`] for the session's unanswered questions together, the event
/// names the params' length and SHA-256 instead.
const MAX_HELD_QUESTION: usize = 64 * 1024;

/// The most of all a session's unanswered questions' params held, in bytes (a gateway runs
/// hundreds of sessions; a server may ask without end).
const MAX_HELD_QUESTIONS: usize = 1024 * 1024;

/// The `action` of an answer to a request the proxy holds nothing of.
const UNKNOWN: &str = "unknown";

/// What an `elicitation/create` answer carrying a secret or a card number adds to its
/// score (so that either alone reaches the default `high`): the server asked for what MCP
/// says it must not.
const ELICITED_CREDENTIAL: u8 = 25;

/// A server's question to the client: until its answer comes, what it asked; then the
/// event of its first answer (a further answer is linked to it).
#[derive(Debug)]
pub(super) struct Question {
    /// `elicitation/create` or `sampling/createMessage`.
    method: String,
    /// Its params as sent, when held (see [`MAX_HELD_QUESTION`]); dropped once answered.
    params: Option<Box<RawValue>>,
    /// The length and SHA-256 (hex) of params not held.
    not_held: Option<(usize, String)>,
    /// The SHA-256 of an unanswered question the server asked earlier under the same id
    /// (MCP forbids reusing an id in flight), which this one replaced.
    replaced: Option<String>,
    /// When it went to the client.
    pub(super) at: Instant,
    /// The person or the model still works on it for the server: neither answered nor
    /// withdrawn, nor unanswered for a whole `limits.call_timeout_ms` ([`super::deadlines`]:
    /// calls do not time out meanwhile).
    pub(super) waiting: bool,
    /// The event of its first answer.
    answered: Option<EventId>,
}

impl Question {
    /// The bytes of params it holds.
    fn held(&self) -> usize {
        self.params.as_ref().map_or(0, |p| p.get().len())
    }

    /// The SHA-256 (hex) of its params as sent.
    fn digest(&self) -> String {
        match (&self.params, &self.not_held) {
            (_, Some((_, hash))) => hash.clone(),
            (Some(p), None) => policy::sha256_hex(p.get().as_bytes(), 32),
            (None, None) => policy::sha256_hex(b"", 32),
        }
    }
}

/// What an answer's event is made from: the question as held, or what is known without it.
struct Asked {
    method: String,
    params: Option<Box<RawValue>>,
    notes: Vec<String>,
    at: Option<Instant>,
    first: Option<EventId>,
}

/// Whether a server's request is a question the person or the client's model answers.
pub(super) fn is_question(method: &str) -> bool {
    matches!(method, "elicitation/create" | "sampling/createMessage")
}

/// The key under which `id` is held in `map`: `id` itself, else its one twin (an SDK that
/// matches ids as numbers takes `"5"` as the answer to 5: so does the trail).
pub(super) fn held_key<V>(map: &Recent<V>, id: &RequestId) -> Option<RequestId> {
    if map.contains(id) {
        return Some(id.clone());
    }
    twin(map.ids(), id)
}

impl Pipeline {
    /// Notes the server's request `id` going to the client: a question is held, to be
    /// recorded with its answer; any other request (a `ping`, `roots/list`) is remembered
    /// so that its answer is known not to be one.
    pub(super) fn asked(st: &mut State, id: &RequestId, method: &str, params: Option<&RawValue>) {
        if !is_question(method) {
            st.other_asks.insert(id.clone(), method.to_string());
            return;
        }
        let len = params.map_or(0, |p| p.get().len());
        let replaced = st
            .questions
            .get(id)
            .filter(|q| q.answered.is_none())
            .map(Question::digest);
        let (params, not_held) = match params {
            Some(p) if len > MAX_HELD_QUESTION || st.question_bytes + len > MAX_HELD_QUESTIONS => (
                None,
                Some((len, policy::sha256_hex(p.get().as_bytes(), 32))),
            ),
            p => (p.map(ToOwned::to_owned), None),
        };
        let question = Question {
            method: method.to_string(),
            params,
            not_held,
            replaced,
            at: Instant::now(),
            waiting: true,
            answered: None,
        };
        st.question_bytes += question.held();
        if let Some(old) = st.questions.insert(id.clone(), question) {
            st.question_bytes -= old.held();
        }
    }

    /// What the client's answer naming `id` (with `body`, when it is passed on) answers,
    /// taken for its event; `None` only for the empty result of a `ping` the server sent
    /// under exactly that id. Any other answer carries something to the server: an answer
    /// to `roots/list` is recorded under that method, one to a request the proxy holds
    /// nothing of as `unknown`.
    fn take_asked(&self, id: &RequestId, body: Option<ResponseBody<'_>>) -> Option<Asked> {
        let mut st = self.state();
        let st = &mut *st;
        if let Some(method) = st.other_asks.remove(id) {
            let empty = matches!(body, Some(ResponseBody::Result(r)) if r.get().trim() == "{}");
            if method == "ping" && empty {
                return None;
            }
            return Some(Asked {
                method,
                params: None,
                notes: Vec::new(),
                at: None,
                first: None,
            });
        }
        if let Some(key) = held_key(&st.questions, id)
            && let Some(q) = st.questions.get_mut(&key)
        {
            let mut notes = Vec::new();
            if let Some((len, hash)) = &q.not_held {
                notes.push(format!(
                    "the server's params ({len} bytes, SHA-256 {hash}) were not held until the answer (more than the proxy holds, or the server had withdrawn the question); not stored"
                ));
            }
            if let Some(hash) = &q.replaced {
                notes.push(format!(
                    "the server asked again under this id before any answer (MCP forbids reusing an id in flight): its earlier question, SHA-256 {hash} of its params, was replaced by this one"
                ));
            }
            if let Some(first) = q.answered {
                notes.push(format!(
                    "a further answer to this question; the proxy took an earlier one as event {first} (absent from the trail only if that event could not be made durable, when the server got an error in its place)"
                ));
            }
            let params = q.params.take();
            st.question_bytes -= params.as_ref().map_or(0, |p| p.get().len());
            return Some(Asked {
                method: q.method.clone(),
                params,
                notes,
                at: Some(q.at),
                first: q.answered,
            });
        }
        let twins = match id.sdk_number() {
            Some(x) => st
                .questions
                .ids()
                .filter(|k| k.sdk_number() == Some(x))
                .count(),
            None => 0,
        };
        let note = if twins > 1 {
            format!(
                "its id reads as the same number as {twins} of the server's questions held: which one it answers is not known"
            )
        } else {
            format!(
                "the proxy holds no request of the server's under this id (none was asked, or more than {MAX_ENDED} were asked since): what it answers is not known"
            )
        };
        Some(Asked {
            method: UNKNOWN.into(),
            params: None,
            notes: vec![note],
            at: None,
            first: None,
        })
    }

    /// The server withdrew its question `id` (`notifications/cancelled`): its params are no
    /// longer held (an answer may still come, and is recorded with their length and hash),
    /// so that withdrawn questions do not use up what the session's later ones may hold.
    pub(super) fn question_withdrawn(st: &mut State, id: &RequestId) {
        let Some(q) = st.questions.get_mut(id) else {
            return;
        };
        q.waiting = false;
        if let Some(p) = q.params.take() {
            st.question_bytes -= p.get().len();
            q.not_held = Some((p.get().len(), policy::sha256_hex(p.get().as_bytes(), 32)));
        }
    }

    /// The client's answer `body` to the server's request `id`: recorded unless it answers
    /// a request that is no question, with the ack the answer waits for in `sync` mode.
    /// `Err` when its event cannot be queued (the answer must not go on unrecorded).
    pub(super) fn answer_to_question(
        &self,
        id: &RequestId,
        body: ResponseBody<'_>,
    ) -> Result<Ack, Refusal> {
        let Some(asked) = self.take_asked(id, Some(body)) else {
            return Ok(Ack::done());
        };
        let (result, answer) = match body {
            ResponseBody::Result(raw) => (Outcome::Success, ("result", raw)),
            ResponseBody::Error(raw) => (Outcome::JsonrpcError, ("error", raw)),
        };
        let first = asked.first.is_none();
        let event = self.question_event(id, asked, result, Some(answer), None);
        let event_id = event.event_id;
        match self.audit.admit_owned(Box::new(event)) {
            Ok(ack) => {
                if first {
                    self.first_answer(id, event_id);
                }
                Ok(ack)
            }
            Err(e) => {
                tracing::error!(request_id = %id, error = %e, "the client's answer to a server request withheld: audit trail unavailable");
                Err(Refusal {
                    extra: None,
                    id: Some(id.clone()),
                    code: INTERNAL_ERROR,
                    message: format!("the audit trail cannot record it ({e})"),
                    event: None,
                })
            }
        }
    }

    /// What replaces the client's answer `id` when its event, queued, could not be made
    /// durable (`sync`): an error for the server, which would otherwise wait for ever.
    pub(super) fn answer_unrecorded(&self, id: &RequestId) -> Unrecorded {
        let (id, audit) = (id.clone(), self.audit.clone());
        Unrecorded {
            reply: Box::new(move || {
                let why = audit.why("its server_request event could not be made durable");
                Refusal {
                    extra: None,
                    id: Some(id),
                    code: INTERNAL_ERROR,
                    message: format!(
                        "mcp-audit-proxy refused the client's answer to this request: {why}"
                    ),
                    event: None,
                }
                .line()
            }),
            calls: Vec::new(),
            to_server: true,
        }
    }

    /// Notes `event` as the first answer to the question `id` answers.
    fn first_answer(&self, id: &RequestId, event: EventId) {
        let mut st = self.state();
        if let Some(key) = held_key(&st.questions, id)
            && let Some(q) = st.questions.get_mut(&key)
        {
            q.answered.get_or_insert(event);
        }
    }

    /// The client's answer to the server's request `id` was not passed on (`why`): recorded
    /// as `refused` unless it answers a request that is no question (an answer already
    /// recorded as passed on, in a batch refused after it, gets this second event, linked).
    pub(super) fn question_refused(&self, id: &RequestId, why: &str) {
        let Some(asked) = self.take_asked(id, None) else {
            return;
        };
        let first = asked.first.is_none();
        let event = self.question_event(id, asked, Outcome::Refused, None, Some(why));
        let event_id = event.event_id;
        match self.audit.record(&event) {
            Ok(_) if first => self.first_answer(id, event_id),
            Ok(_) => {}
            Err(e) => {
                tracing::error!(request_id = %id, error = %e, "a refused answer to a server request could not be recorded");
            }
        }
    }

    /// The `server_request` event of the question `asked` (the server's request `id`),
    /// answered with `answer` (its member name, `result` or `error`, and its value as sent).
    /// Its risk is the answer's: what the server wrote in its question is masked and tagged,
    /// never scored against the person who answered.
    fn question_event(
        &self,
        id: &RequestId,
        asked: Asked,
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
            execution_time_us: asked.at.map(|at| at.elapsed().as_micros() as u64),
            ..Metadata::default()
        };
        let mut reasons = asked.notes;
        if let Some(why) = why {
            reasons.push(format!("the answer was not passed on to the server: {why}"));
        }
        let mut asked_classes = Vec::new();
        let (stored_question, masked) =
            stored(&policy, asked.params, &mut asked_classes, &mut reasons);
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
        if matches!(asked.method.as_str(), "elicitation/create" | UNKNOWN)
            && let Some(class) = answered
                .iter()
                .find(|c| matches!(c, Class::Secret | Class::PaymentCard))
        {
            score += u32::from(ELICITED_CREDENTIAL);
            meta.risk_reasons.push(format!(
                "the person answered {} with {} (+{ELICITED_CREDENTIAL}): MCP forbids asking for credentials in form mode",
                if asked.method == UNKNOWN { "a request the proxy holds no question for (perhaps a form)" } else { "a form" },
                class.as_str()
            ));
        }
        let mut tags: Vec<&'static str> = Vec::new();
        for class in &answered {
            if tags.contains(&class.tag()) {
                continue;
            }
            tags.push(class.tag());
            let add = policy::class_score(*class);
            score += u32::from(add);
            meta.risk_reasons
                .push(format!("the answer contains {} (+{add})", class.as_str()));
        }
        for class in &asked_classes {
            if !tags.contains(&class.tag()) {
                tags.push(class.tag());
            }
            meta.risk_reasons.push(format!(
                "the server's question contains {} (not scored: the server's text, not the answer)",
                class.as_str()
            ));
        }
        meta.risk_reasons.dedup();
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
            action: asked.method,
            result,
            metadata: meta,
            risk_level,
            compliance_tags: tags.iter().map(|t| t.to_string()).collect(),
            session_id: self.info.session_id.clone(),
            upstream: self.info.upstream.clone(),
            // Never linked: the index reads a link as a call's access and end; a further
            // answer names the earlier one in its reason.
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
                // Each copy of a repeated key, its escapes decoded (`\\u0073k-…`).
                for text in every_string(raw.get()).unwrap_or_default() {
                    classes.extend(policy.scan_text(&text));
                }
                classes.sort_unstable_by_key(|c| *c as usize);
                classes.dedup();
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
    super::access::as_stored(policy, Some(&value), Some(raw), true)
}

/// Every string of the JSON `text`, keys and values, each copy of a repeated key, escapes
/// decoded; `None` when it cannot be read at all (nesting deeper than serde_json's 128).
fn every_string(text: &str) -> Option<Vec<String>> {
    use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
    struct Strings<'a>(&'a mut Vec<String>);
    impl<'de> DeserializeSeed<'de> for Strings<'_> {
        type Value = ();
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }
    impl<'de> Visitor<'de> for Strings<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("JSON")
        }
        fn visit_str<E>(self, v: &str) -> Result<(), E> {
            self.0.push(v.to_owned());
            Ok(())
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<(), A::Error> {
            while a.next_element_seed(Strings(&mut *self.0))?.is_some() {}
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<(), A::Error> {
            while a.next_key_seed(Strings(&mut *self.0))?.is_some() {
                a.next_value_seed(Strings(&mut *self.0))?;
            }
            Ok(())
        }
    }
    let mut out = Vec::new();
    let mut de = serde_json::Deserializer::from_str(text);
    Strings(&mut out).deserialize(&mut de).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(bytes: usize) -> Box<RawValue> {
        let text = format!("{{\"message\":\"{}\"}}", "x".repeat(bytes));
        RawValue::from_string(text).unwrap()
    }

    #[test]
    fn held_questions_stay_within_their_bytes_and_an_id_asked_again_is_noted() {
        let mut st = State::default();
        for i in 0..100i64 {
            let id = RequestId::Int(i);
            Pipeline::asked(
                &mut st,
                &id,
                "sampling/createMessage",
                Some(&params(60_000)),
            );
            assert!(
                st.question_bytes <= MAX_HELD_QUESTIONS,
                "{}",
                st.question_bytes
            );
        }
        let held = (0..100i64)
            .filter(|i| {
                st.questions
                    .get(&RequestId::Int(*i))
                    .unwrap()
                    .params
                    .is_some()
            })
            .count();
        assert_eq!(
            held,
            MAX_HELD_QUESTIONS / 60_014,
            "the first ones, until the budget"
        );
        let last = st.questions.get(&RequestId::Int(99)).unwrap();
        assert!(last.params.is_none() && last.not_held.is_some());
        // Over one question's own bound.
        Pipeline::asked(
            &mut st,
            &RequestId::Int(500),
            "elicitation/create",
            Some(&params(70_000)),
        );
        assert!(
            st.questions
                .get(&RequestId::Int(500))
                .unwrap()
                .not_held
                .is_some()
        );
        // Asked again under an id not yet answered: the earlier one is named, its bytes freed.
        let before = st.question_bytes;
        Pipeline::asked(
            &mut st,
            &RequestId::Int(0),
            "elicitation/create",
            Some(&params(10)),
        );
        let again = st.questions.get(&RequestId::Int(0)).unwrap();
        assert!(again.replaced.is_some());
        assert_eq!(st.question_bytes, before - 60_014 + 24);
        // A ping is remembered apart, never held as a question.
        Pipeline::asked(&mut st, &RequestId::Int(900), "ping", None);
        assert!(st.other_asks.contains(&RequestId::Int(900)));
        assert!(!st.questions.contains(&RequestId::Int(900)));
        // Questions the server withdrew give their bytes back to later ones.
        for i in 0..100i64 {
            Pipeline::question_withdrawn(&mut st, &RequestId::Int(i));
        }
        assert_eq!(st.question_bytes, 0);
        let withdrawn = st.questions.get(&RequestId::Int(1)).unwrap();
        assert!(withdrawn.params.is_none() && withdrawn.not_held.is_some());
        Pipeline::asked(
            &mut st,
            &RequestId::Int(901),
            "elicitation/create",
            Some(&params(60_000)),
        );
        assert!(
            st.questions
                .get(&RequestId::Int(901))
                .unwrap()
                .params
                .is_some()
        );
    }

    #[test]
    fn every_string_reads_each_copy_of_a_repeated_key_with_escapes_decoded() {
        let text = r#"{"x":"a","x":"\u0073k-1","y":[1,{"z":"\u00e9"}],"x":null}"#;
        let found = every_string(text).unwrap();
        assert_eq!(found, ["x", "a", "x", "sk-1", "y", "z", "é", "x"]);
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert!(every_string(&deep).is_none());
    }
}
