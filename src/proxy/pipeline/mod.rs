//! The pipeline of one client connection: classify → assess → record → forward or refuse →
//! correlate → record. Both front doors (stdio, and later HTTP) feed it raw lines and move
//! the [`Route`]s it returns; it never does I/O itself.
//!
//! Each `tools/call` gets one `Call` context when its access event is recorded; the context
//! is consumed exactly once, by whichever end comes first: the server's response, the
//! client's cancellation, the timeout, the server's exit or the shutdown. A call that ended
//! before the server answered is remembered for a while, so that a late answer is recorded too
//! (the tool did run) instead of passing unaudited.
//!
//! Here: the session's state, the client and server sides, timeouts and the end of the
//! session. Beside it: `access.rs` (a `tools/call` assessed, recorded, then forwarded, held or
//! blocked), `refuse.rs` (what is answered and recorded instead of forwarding),
//! `confirm.rs` (calls held for a person's approval), `ends.rs` (a call's end and its events),
//! `tools.rs` (`tools/list` results: pins and filtering), `reload.rs` (policy reloads),
//! `deadlines.rs` (calls past their timeout; progress moves a call's deadline), `owners.rs`
//! (at the gateway, the tasks each principal created: task requests about others' refused).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::audit::event::{AuditEvent, EventId, EventIds, EventType, Metadata, Outcome, RiskLevel};
use crate::audit::writer::{Ack, AuditError, AuditSink};
use crate::config::Limits;
use crate::error::Side;
use crate::jsonrpc::frame::trim_line_end;
use crate::jsonrpc::message::{
    self, INTERNAL_ERROR, INVALID_PARAMS, INVALID_REQUEST, PARSE_ERROR, REQUEST_TIMEOUT,
    error_response, notification, rebuilt_message,
};
use crate::jsonrpc::names::same_name;
use crate::jsonrpc::salvage::{Salvaged, from_prefix, salvage, salvage_split};
use crate::jsonrpc::surrogates;
use crate::jsonrpc::{BatchItem, FrameError, Message, Parsed, RequestId, ResponseBody};
use crate::mcp::{
    AnyParams, CallToolParams, CallToolResultView, CancelledParams, ElicitResultView, Era,
    ErrorView, Implementation, InitializeParams, ServerIdentity, ToolsListView,
};
use crate::policy::pins::{Fingerprint, PinMode, Pins, Seen};
use crate::policy::{self, CallInput, Decision, Policy, PolicyCell};

mod access;
mod asks;
mod batch;
mod confirm;
mod deadlines;
mod ends;
mod lines;
mod owners;
mod recent;
mod refuse;
mod reload;
mod rounds;
mod tasks;
mod tools;

use crate::jsonrpc::message::{matching, twin};
use access::{arguments_hash, decode_call};
use confirm::*;
pub(crate) use ends::stored_request_id;
use ends::*;
pub use owners::{SharedTasks, TaskOwners};
use recent::Recent;
use rounds::{Consent, Granted, Learnt, Round, round_key};
pub use rounds::{Rounds, SharedRounds};

/// Why a call the policy asks to confirm cannot be put to a person: the client cannot show
/// the proxy's question, a form.
const NO_FORM_ELICITATION: &str = "the client did not declare the elicitation capability in form mode (`elicitation: {}` or `elicitation.form`; URL mode alone cannot show the question)";

/// The `tools/call` method, the one the proxy audits.
pub const TOOLS_CALL: &str = "tools/call";
/// The JSON-RPC error code of a call the policy blocked (stable: clients may match on it).
pub const POLICY_BLOCKED: i64 = -32010;
/// Calls that ended before the server answered, remembered for their late answers.
const MAX_ENDED: usize = 1024;
/// Answers to one call recorded after it ended (each an event or two); later ones dropped.
const MAX_REPEATED: u32 = 16;
/// Tool names (and their annotations) learnt from a session's `tools/list` answers, at most.
const MAX_LISTED: usize = 16_384;
/// Error texts kept per event, and characters per text.
const MAX_ERROR_TEXTS: usize = 5;
const MAX_ERROR_CHARS: usize = 1000;
/// Error texts are cut this much longer first, masked, then cut to [`MAX_ERROR_CHARS`]: a
/// secret straddling the cut is still whole when it is masked.
const ERROR_MARGIN_CHARS: usize = 256;

/// A message on its way out, released once its audit event is durable.
#[derive(Debug)]
pub struct Outbound {
    /// The bytes to write: the original message, or one the proxy made.
    pub bytes: Bytes,
    /// Resolves when the audit event this message depends on is durable.
    pub ack: Ack,
    /// If that event could not be made durable: what to do instead.
    pub if_unrecorded: Option<Unrecorded>,
    /// Its share of the byte budget of the queue it waits in, given back when it is dropped
    /// (written, or replaced): the queues between the readers and the writers hold at most
    /// [`crate::proxy::stdio`]'s `QUEUE_BYTES` each, not `QUEUE` messages of any size.
    pub budget: Option<tokio::sync::OwnedSemaphorePermit>,
    /// The calls whose server answers these bytes carry to the client, each already recorded
    /// as ended: if the write fails, [`Pipeline::undelivered`] records that the client never
    /// had them (empty for every other message).
    pub ends: Vec<Ended>,
    /// The answer to a call the proxy held for confirmation, settled by another message
    /// (the client's answer to the proxy's question): over HTTP it goes to the stream the
    /// call's own POST waits on, never into the answer of the POST that settled it, even
    /// when that POST is refused (review finding 4).
    pub held: bool,
}

/// A call whose end event is recorded and whose answer is on its way to the client.
#[derive(Debug)]
pub struct Ended {
    call: Call,
    end: EventId,
    /// The id of the request the answer answers: the call's, or a `tasks/result`'s.
    answers: RequestId,
}

impl Ended {
    /// The id of the request whose response carries this call's outcome to the client.
    pub fn answers(&self) -> &RequestId {
        &self.answers
    }
}

/// What replaces a message whose audit event failed to become durable.
pub struct Unrecorded {
    /// Builds the error response (or batch of them) for the client; only run on failure.
    pub reply: Box<dyn FnOnce() -> Bytes + Send>,
    /// Calls whose access event failed: their contexts are dropped, as they never started.
    pub calls: Vec<RequestId>,
    /// The reply goes to the server instead (the message was the client's answer to a
    /// request of the server's, which would otherwise wait for it for ever).
    pub to_server: bool,
}

impl std::fmt::Debug for Unrecorded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unrecorded")
            .field("calls", &self.calls)
            .finish_non_exhaustive()
    }
}

/// The answer to a call the audit trail cannot record, naming why.
fn audit_refusal(id: &RequestId, why: &str) -> Refusal {
    Refusal {
        extra: None,
        id: Some(id.clone()),
        code: INTERNAL_ERROR,
        message: format!(
            "mcp-audit-proxy refused the call because the audit trail cannot record it ({why}); tell the operator to check the proxy's log and disk"
        ),
        event: None,
    }
}

/// [`audit_refusal`] for an event the writer would not take, logged.
fn refused_by_audit(id: &RequestId, e: &AuditError) -> Refusal {
    tracing::error!(request_id = %id, error = %e, "tool call refused: audit trail unavailable");
    audit_refusal(id, &e.to_string())
}

/// Why a `tools/call` without an id is refused: MCP requests carry a string or integer id
/// (MCP "Base Protocol: Requests"), and a server that runs what it reads would run it unaudited.
const NOTIFIED_CALL: &str =
    "a tools/call without an id is not a valid MCP request; it was not forwarded";

/// Why a message is answered with an error when its event could not be made durable.
const START_UNRECORDED: &str = "its access event could not be made durable";
const END_UNRECORDED: &str = "the end of the call could not be made durable; the tool did run";

impl Outbound {
    /// A message that depends on no audit event.
    pub fn now(bytes: Bytes) -> Self {
        Outbound {
            budget: None,
            bytes,
            ack: Ack::done(),
            if_unrecorded: None,
            ends: Vec::new(),
            held: false,
        }
    }
}

/// Where a message goes next.
#[derive(Debug)]
pub enum Route {
    /// Forward to the server.
    ToServer(Outbound),
    /// Send to the client (a forwarded server message or the proxy's own reply).
    ToClient(Outbound),
    /// Neither (already logged).
    Drop,
    /// Neither: the proxy took it itself (an answer to its own question, the cancellation of
    /// a call it holds). Unlike [`Route::Drop`], accepted: a POST carrying only it gets 202.
    Taken,
    /// Each of these, in order (a refused line that answers several requests).
    Many(Vec<Route>),
}

impl Route {
    /// One route for all of `routes`.
    fn of(mut routes: Vec<Route>) -> Route {
        match routes.len() {
            0 => Route::Drop,
            1 => routes.remove(0),
            _ => Route::Many(routes),
        }
    }
}

/// Who is on the other end, recorded in every event of the connection.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    /// Unique per client connection.
    pub session_id: String,
    /// The caller's identity.
    pub user_id: String,
    /// The configured server name.
    pub upstream: String,
    /// How the caller was identified ([`STDIO`], `api_key`, `anonymous`).
    pub auth_method: &'static str,
    /// For a gateway session: where its client connected from.
    pub http: Option<Box<crate::audit::event::HttpContext>>,
}

/// The `auth_method` of a stdio session: the client that started the proxy, identified as
/// the OS user or `--user`; its messages to the client go down one pipe, not a POST's answer.
pub const STDIO: &str = "stdio";

/// An error the proxy answers in place of forwarding or delivering a message.
#[derive(Debug, Clone)]
struct Refusal {
    id: Option<RequestId>,
    code: i64,
    message: String,
    event: Option<EventId>,
    /// More fields for the error's `data` (the policy's decision).
    extra: Option<Box<Value>>,
}

impl Refusal {
    fn with_decision(mut self, decision: Option<&Decision>) -> Self {
        self.extra = decision.map(|d| {
            Box::new(json!({
                "risk_level": d.level.as_str(),
                "risk_score": d.score,
                "reasons": d.reasons,
                "policy_version": d.version,
            }))
        });
        self
    }

    fn line(&self) -> Bytes {
        error_response(self.id.as_ref(), self.code, &self.message, self.data())
    }

    /// The error response as a batch element (without the line ending).
    fn element(&self) -> String {
        let line = self.line();
        String::from_utf8_lossy(trim_line_end(&line)).into_owned()
    }

    fn data(&self) -> Option<Value> {
        let mut data = self.extra.as_deref().cloned().unwrap_or_else(|| json!({}));
        if let (Some(e), Some(map)) = (self.event, data.as_object_mut()) {
            map.insert("event_id".into(), Value::String(e.to_string()));
        }
        (data.as_object().is_some_and(|m| !m.is_empty())).then_some(data)
    }
}

/// A JSON array of batch elements, newline-terminated.
fn batch_line<'a>(elements: impl IntoIterator<Item = Cow<'a, str>>) -> Bytes {
    let mut out = String::from("[");
    for (i, e) in elements.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&e);
    }
    out.push_str("]\n");
    Bytes::from(out)
}

/// A `tools/call` in flight: everything its end event needs.
#[derive(Debug, Clone)]
struct Call {
    access_id: EventId,
    request_id: RequestId,
    tool: Option<String>,
    started: Instant,
    deadline: Option<Instant>,
    protocol_version: Option<String>,
    era: Era,
    user_agent: Option<String>,
    tool_version: Option<String>,
    risk: RiskLevel,
    score: Option<u8>,
    tags: Vec<&'static str>,
    policy: Option<Arc<Policy>>,
    /// How the person at the client answered a confirmation, if one was asked.
    confirmation: Option<String>,
    /// The person's accept this call carries to the retries of the server's own rounds.
    consent: Option<Consent>,
    /// Where the request came from, for a call through the HTTP gateway.
    http: Option<Box<crate::audit::event::HttpContext>>,
    /// Answers recorded after the call ended (late or repeated), at most [`MAX_REPEATED`].
    late: u32,
    /// `_meta.progressToken` of its request: its progress moves its deadline (`progress.rs`).
    progress: Option<RequestId>,
}

/// A call held until the person at the client confirms it.
#[derive(Debug)]
struct Awaiting {
    call: Call,
    line: Bytes,
    ack: Ack,
    deadline: Instant,
}

/// Confirmation requests remembered after they ended, so that a late answer is dropped.
const MAX_ASKED_BEFORE: usize = 1024;
/// Calls one session may have waiting for confirmation (held calls, or open rounds).
const MAX_HELD: usize = 32;
/// Ids of the proxy's confirmation requests, and `requestState` of its input_required rounds.
pub(crate) const CONFIRM_PREFIX: &str = "mcp-audit-proxy.confirm.";

/// Whether a retry's `requestState` is a round of the proxy's own ([`CONFIRM_PREFIX`]):
/// then its [`CONFIRM_KEY`] answer is the proxy's, taken out before forwarding, and never
/// judged or stored as the tool's.
pub(crate) fn own_round(request_state: &str) -> bool {
    request_state.starts_with(CONFIRM_PREFIX)
}

/// Whether a server's request uses an id of the form of the proxy's own requests to the
/// client ([`CONFIRM_PREFIX`]), compared as clients may (case-insensitively).
fn takes_our_id(id: &RequestId) -> bool {
    matches!(id, RequestId::Str(s) if s.len() >= CONFIRM_PREFIX.len()
        && s.as_bytes()[..CONFIRM_PREFIX.len()].eq_ignore_ascii_case(CONFIRM_PREFIX.as_bytes()))
}
/// The `inputRequests` key of the proxy's confirmation in a 2026-07-28 input_required round.
/// The `inputResponses` key of the person's answer to the proxy's own confirmation round.
pub(crate) const CONFIRM_KEY: &str = "mcp-audit-proxy.confirm";

/// What the caller of `client_message` sends in place of the client's request.
#[derive(Debug)]
enum Instead {
    /// This answer to the client (an input_required round of the proxy's own).
    Reply(Bytes),
    /// The request without the proxy's round (a confirmed retry).
    Rewrite {
        server_state: Option<String>,
        server_responses: Option<String>,
    },
}

/// Why a call ended before the server answered it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EndedEarly {
    /// The client cancelled it; a late answer is still the client's to see.
    Cancelled,
    /// The proxy answered the client with a timeout; a late answer must not reach it.
    TimedOut,
    /// The proxy failed it with an error of its own (its request could not be written to the
    /// server, or the server's answer was refused); another answer must not reach the client.
    Failed,
    /// The server already answered it (that end event): another answer is passed on as sent
    /// (a client ignores an id it no longer waits on) and recorded, as it reaches the client.
    Answered(EventId),
}

/// Other client requests whose results teach the proxy about the session.
#[derive(Debug)]
enum Pending {
    Initialize,
    Discover,
    /// With the roles of the request's credential (gateway), by which the answer's tools are
    /// hidden: the session's opener may have come with another key of the same user.
    ToolsList(Vec<String>),
    /// `tasks/result` of a task the call became: its answer is the call's real outcome.
    /// The call rides with the request, so it leaves with it (answered, cancelled, failed).
    TaskResult(Box<Call>),
    /// `tasks/get` (the 2026-07-28 Tasks extension) of a task the call became: an answer at
    /// a terminal status carries the call's real outcome.
    TaskGet(Box<Call>),
    /// `tasks/cancel` of a task the call with this access event became: a success ends the
    /// call `cancelled`, unless a `tasks/result` about it is waiting (its answer then does).
    TaskCancel(EventId),
    /// `tasks/list` through the gateway: its answer keeps the caller's own tasks only
    /// (`owners.rs`).
    TasksList,
    Other,
}

#[derive(Debug, Default)]
struct State {
    client: Option<Implementation>,
    server: Option<Implementation>,
    negotiated: Option<String>,
    calls: HashMap<RequestId, Call>,
    pending: HashMap<RequestId, Pending>,
    /// Calls that became tasks (MCP 2025-11-25 Tasks), by `taskId`, oldest first; at most
    /// [`MAX_ENDED`].
    tasks: VecDeque<(String, Call)>,
    /// The calls whose task the client asked to cancel (`tasks/cancel`), by their access
    /// event (request ids may be reused once a call ended): an error answering their
    /// `tasks/result` is that cancellation, not a failure.
    task_cancels: HashSet<EventId>,
    /// Calls whose task's outcome was recorded (a `tasks/result` answered): access event →
    /// that end. A client may fetch the result again until the task's ttl; the tool did not
    /// run again, and the trail says so. At most [`MAX_ENDED`], oldest first.
    task_outcomes: VecDeque<(EventId, EventId)>,
    ended: HashMap<RequestId, (Call, EndedEarly)>,
    ended_order: VecDeque<RequestId>,
    /// Tools whose definition changed since pinned: name -> the new definition's hash.
    changed_tools: HashMap<String, String>,
    /// The client declared `elicitation`: a person can be asked to confirm a call.
    client_elicits: bool,
    /// A client batch is being admitted (a call in it cannot wait for a confirmation).
    batching: bool,
    /// Calls to confirm whose bytes are not held yet, with the question to ask.
    confirming: HashMap<RequestId, (Call, String)>,
    /// Confirmation requests sent to the client, by their id.
    awaiting: HashMap<RequestId, Awaiting>,
    /// Confirmation requests that ended without their answer.
    asked_before: VecDeque<RequestId>,
    /// Requests answered or rewritten by the proxy instead of forwarded as sent.
    instead: HashMap<RequestId, Instead>,
    /// Requests other than calls that the client cancelled: their ids stay in use until the
    /// server answers (MCP lets it), the oldest forgotten past [`MAX_ENDED`]. Each keeps what
    /// it asked: a late answer is still checked as its kind is (a `tools/list` has its tools
    /// hidden and its pins checked), and a cancelled `tasks/result` keeps its task's call,
    /// whose outcome a late answer still is.
    cancelled: Recent<Pending>,
    /// Calls the server never received that the proxy answered itself (blocked; held for
    /// confirmation, then declined, timed out or cancelled; refused): a server answer with
    /// one of their ids is forged or confused, and is dropped. The oldest forgotten past
    /// [`MAX_ENDED`].
    withheld: Recent<()>,
    /// Calls the server answered, by the answer's id, with how a further answer (recorded as
    /// a late one) is taken. Not ids in use: a client may reuse one for a new request (MCP
    /// forbids it; refusing would change what it sees). The oldest forgotten past [`MAX_ENDED`].
    answered: Recent<(Call, EndedEarly)>,
    /// The server's `elicitation/create` and `sampling/createMessage` requests, held until
    /// the client answers them, to be recorded with the answer ([`asks`]); while one is
    /// `waiting`, a person (or the client's model) works for the server, so calls do not
    /// time out ([`deadlines`]). The oldest forgotten past [`MAX_ENDED`].
    questions: Recent<asks::Question>,
    /// The bytes of params `questions` hold.
    question_bytes: usize,
    /// The server's other requests to the client (a `ping`, `roots/list`) by id, with
    /// their method, until answered: an empty answer to a ping is not recorded. The oldest
    /// forgotten past [`MAX_ENDED`].
    other_asks: Recent<String>,
}

/// What a server response answers.
enum Answered {
    /// A call in flight.
    Call(Call),
    /// A call that ended before the server answered (a late answer).
    Ended(Call, EndedEarly),
    /// Another request of the client.
    Pending(Pending),
    /// A request the client cancelled, with what it asked.
    Cancelled(Pending),
}

impl State {
    /// MCP forbids reusing a request id in a session; an id still in play would make two
    /// requests answerable by one response.
    fn id_in_use(&self, id: &RequestId) -> bool {
        self.calls.contains_key(id)
            || self.pending.contains_key(id)
            || self.cancelled.contains(id)
            || self.ended.contains_key(id)
            || self.confirming.contains_key(id)
            || self.awaiting.values().any(|a| a.call.request_id == *id)
    }

    fn forget_question(&mut self, ask: RequestId) {
        if self.asked_before.len() >= MAX_ASKED_BEFORE {
            self.asked_before.pop_front();
        }
        self.asked_before.push_back(ask);
    }

    /// Whether `id` (exactly, or as the same number as SDKs read ids) names a call the
    /// server never received: held for confirmation, or [`State::withheld`].
    fn never_sent(&self, id: &RequestId) -> bool {
        if self.confirming.contains_key(id) || self.withheld.contains(id) {
            return true;
        }
        let x = id.sdk_number();
        self.confirming
            .keys()
            .chain(self.awaiting.values().map(|a| &a.call.request_id))
            .chain(self.withheld.ids())
            .any(|k| k == id || (x.is_some() && k.sdk_number() == x))
    }

    fn end_early(&mut self, call: Call, why: EndedEarly) {
        if self.ended_order.len() >= MAX_ENDED
            && let Some(old) = self.ended_order.pop_front()
        {
            self.ended.remove(&old);
        }
        self.ended_order.push_back(call.request_id.clone());
        self.ended.insert(call.request_id.clone(), (call, why));
    }

    /// What a response with `id` answers, taken out of where it waited: first by the exact id,
    /// wherever a request waits; only if none has it, by [`twin`] over all of them.
    /// The second part: the request's own id when it was found by [`twin`] (the answer must
    /// then reach the client under that id: see [`Pipeline::server_message`]).
    fn answered(&mut self, id: &RequestId) -> Option<(Answered, Option<RequestId>)> {
        if let Some(found) = self.answered_exactly(id) {
            return Some((found, None));
        }
        // An answer naming a call the server never received is forged: no other spelling
        // of its id makes it the answer of another call.
        if self.confirming.contains_key(id)
            || self.withheld.contains(id)
            || self.awaiting.values().any(|a| a.call.request_id == *id)
        {
            return None;
        }
        // The calls the server never received count as candidates (an answer that could
        // name one of them and another names neither), but are never answered.
        let waiting = self
            .calls
            .keys()
            .chain(self.ended.keys())
            .chain(self.pending.keys())
            .chain(self.cancelled.ids())
            .chain(self.confirming.keys())
            .chain(self.awaiting.values().map(|a| &a.call.request_id))
            .chain(self.withheld.ids())
            // A second answer spells the id as the first did (`"7"` for 7): it is as late.
            .chain(self.answered.ids());
        let twin = twin(waiting, id)?;
        self.answered_exactly(&twin)
            .map(|found| (found, Some(twin)))
    }

    /// The call an error answer without an id is about, taken out of the calls in flight:
    /// the one request in flight whose id servers that read ids as 64-bit integers (rmcp)
    /// cannot read ([`RequestId::unreadable_as_i64`]: `12345678901234567890`), which they
    /// answer with no id (JSON-RPC 2.0 §5), when that request is a call. `None` when no
    /// request in flight has such an id, or more than one has (a `ping` among them: the
    /// error could be any one's, helper-121 F1; those calls end at `limits.call_timeout_ms`
    /// as before), or when it is another request (taken out of those waiting: answered).
    fn take_call_of_unreadable_id(&mut self) -> Option<Call> {
        let mut unreadable = self
            .calls
            .keys()
            .chain(self.pending.keys())
            .filter(|id| id.unreadable_as_i64());
        let id = unreadable.next()?.clone();
        if unreadable.next().is_some() {
            return None;
        }
        // Another request (a `ping`) is answered by it: it waits no more, and must not
        // count against later errors (helper-123 I1).
        if self.pending.remove(&id).is_some() {
            return None;
        }
        self.calls.remove(&id)
    }

    fn answered_exactly(&mut self, id: &RequestId) -> Option<Answered> {
        if let Some(call) = self.calls.remove(id) {
            return Some(Answered::Call(call));
        }
        if let Some((call, why)) = self.ended.remove(id) {
            self.ended_order.retain(|e| e != id);
            return Some(Answered::Ended(call, why));
        }
        if let Some(pending) = self.pending.remove(id) {
            return Some(Answered::Pending(pending));
        }
        if let Some(found) = self.cancelled.remove(id) {
            return Some(Answered::Cancelled(found));
        }
        // Kept: a third answer is as late as the second.
        self.answered
            .get(id)
            .map(|(call, why)| Answered::Ended(call.clone(), *why))
    }

    fn version_for(&self, meta_version: Option<&str>) -> (Option<String>, Era) {
        match meta_version {
            Some(v) => (Some(v.to_string()), Era::of_version(v)),
            None => {
                let v = self.negotiated.clone();
                let era = v.as_deref().map(Era::of_version).unwrap_or_default();
                (v, era)
            }
        }
    }
}

/// What the client side decided for one message.
type Admission = Result<(Ack, Option<RequestId>), Refusal>;

/// What the server side decided for one message.
enum Delivery {
    /// Pass it on (or `rewritten` in its place, when the policy changed it) once `ack`
    /// resolves; if the end event of call `ended` fails to become durable, that call is
    /// answered with an error instead.
    Forward {
        ack: Ack,
        ended: Option<Box<Ended>>,
        rewritten: Option<String>,
    },
    /// Do not pass it on.
    Drop,
    /// Answer this instead.
    Replace(Refusal),
}

/// One connection's pipeline.
#[derive(Debug)]
pub struct Pipeline {
    info: SessionInfo,
    audit: AuditSink,
    ids: EventIds,
    call_timeout: Option<Duration>,
    call_timeout_max: Option<Duration>,
    policy: PolicyCell,
    pins: Option<Pins>,
    state: Mutex<State>,
    /// Locked after `state` when both are (never the other way round).
    rounds: SharedRounds,
    /// The gateway's: the tasks this principal's requests created on this upstream, the only
    /// ones its task requests may name (`owners.rs`); `None` (the stdio wrapper: one client)
    /// checks none. Locked after `state` and `rounds`, never before.
    owned: Option<SharedTasks>,
    /// The HTTP context of the request being fed ([`Pipeline::from_client_at`]).
    request_http: Mutex<Option<Box<crate::audit::event::HttpContext>>>,
    /// Serializes [`Pipeline::from_client_at`], so a context belongs to its own request.
    feeding: Mutex<()>,
    /// Set while a client line with lone surrogate escapes is routed through its readable
    /// copy (`lines::read_as`): a call's access then says its stored arguments differ.
    lone_surrogates: std::sync::atomic::AtomicBool,
}

impl Pipeline {
    /// A pipeline for one client connection, judging calls by whatever `policy` holds and
    /// keeping tool definitions in `pins` (none: tools are not pinned).
    pub fn new(
        info: SessionInfo,
        audit: AuditSink,
        limits: &Limits,
        policy: PolicyCell,
        pins: Option<Pins>,
    ) -> Self {
        // Changes seen by earlier sessions and not yet accepted hold their tools back from the
        // first call, listed or not.
        let mut state = State::default();
        if let Some(p) = &pins {
            match p.pending() {
                Ok(pending) => state.changed_tools.extend(pending),
                Err(e) => tracing::error!(error = %e, "tool pins unreadable"),
            }
        }
        Pipeline {
            info,
            audit,
            ids: EventIds::default(),
            call_timeout: limits.call_timeout,
            call_timeout_max: limits.call_timeout_max,
            policy,
            pins,
            state: Mutex::new(state),
            rounds: SharedRounds::default(),
            owned: None,
            request_http: Mutex::new(None),
            feeding: Mutex::new(()),
            lone_surrogates: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Uses `rounds` for its MRTR rounds instead of its own: a retry answering a round
    /// another pipeline opened is recognized (the gateway's sessionless requests).
    pub fn with_rounds(mut self, rounds: SharedRounds) -> Self {
        self.rounds = rounds;
        self
    }

    /// Lets this pipeline's task requests name only the tasks in `owned` (the gateway: the
    /// principal's on the upstream, whatever session or request created them), and keeps
    /// the tasks its requests create there.
    pub fn with_tasks(mut self, owned: SharedTasks) -> Self {
        self.owned = Some(owned);
        self
    }

    /// Takes `version` as this session's protocol version until a handshake says otherwise:
    /// for the gateway's sessionless 2026-07-28 requests, whose version is in their
    /// `MCP-Protocol-Version` header, so that a request without `_meta` is still recorded in
    /// its era (helper-95 F7: `protocol_era: unknown`).
    pub fn assume_version(&self, version: &str) {
        let mut st = self.state();
        if st.negotiated.is_none() {
            st.negotiated = Some(version.to_string());
        }
    }

    fn rounds(&self) -> std::sync::MutexGuard<'_, Rounds> {
        self.rounds.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    // ---------------------------------------------------------------- client → server

    /// A client-bound answer naming events this pipeline has just submitted (a refusal, a
    /// block: "quote event X"): delivered once they are durable in `sync` mode
    /// ([`crate::audit::writer::AuditSink::barrier`]), like every forwarded call.
    fn after_recorded(&self, bytes: Bytes) -> Outbound {
        Outbound {
            budget: None,
            bytes,
            ack: self.audit.barrier(),
            if_unrecorded: None,
            ends: Vec::new(),
            held: false,
        }
    }

    /// Routes one line from the client.
    pub fn from_client(&self, line: Bytes) -> Route {
        if let Some(readable) = surrogates::readable(&line) {
            use std::sync::atomic::Ordering::Relaxed;
            self.lone_surrogates.store(true, Relaxed);
            let route = lines::read_as(line, readable, |l| self.from_client(l));
            self.lone_surrogates.store(false, Relaxed);
            return route;
        }
        let parsed = match message::parse(&line) {
            Ok(p) => p,
            Err(invalid) => {
                tracing::warn!(error = %invalid, bytes = line.len(), "invalid message from client refused");
                return self.refuse_line(
                    &salvage_split(&line, TOOLS_CALL),
                    invalid.id().cloned(),
                    invalid.code(),
                    &invalid.to_string(),
                );
            }
        };
        match parsed {
            Parsed::Single(msg) => match self.for_the_proxy(&msg) {
                Some(route) => route,
                None => self.client_single(&line, &msg),
            },
            Parsed::Batch(items) => self.client_batch(line.clone(), &items),
        }
    }

    /// One message (not a batch) from the client.
    fn client_single(&self, line: &Bytes, msg: &Message<'_>) -> Route {
        match self.client_message(msg) {
            Ok((ack, opened)) => {
                let mut bytes = line.clone();
                let ack = match &opened {
                    Some(id) => match self.hold(id, line, ack) {
                        Ok(ask) => return Route::ToClient(Outbound::now(ask)),
                        Err(ack) => {
                            let instead = self.state().instead.remove(id);
                            match instead {
                                Some(Instead::Reply(reply)) => {
                                    return Route::ToClient(Outbound {
                                        budget: None,
                                        bytes: reply,
                                        ack,
                                        if_unrecorded: None,
                                        ends: Vec::new(),
                                        held: false,
                                    });
                                }
                                Some(Instead::Rewrite {
                                    server_state,
                                    server_responses,
                                }) => match without_round(line, server_state, server_responses) {
                                    Ok(rewritten) => bytes = rewritten,
                                    // Never forwarded with the proxy's round in it.
                                    Err(why) => {
                                        self.end_unforwarded(id, &why);
                                        let refusal = Refusal {
                                            id: Some(id.clone()),
                                            code: INVALID_PARAMS,
                                            message: format!(
                                                "mcp-audit-proxy refused the call: {why}"
                                            ),
                                            event: None,
                                            extra: None,
                                        };
                                        return Route::ToClient(
                                            self.after_recorded(refusal.line()),
                                        );
                                    }
                                },
                                None => {}
                            }
                            ack
                        }
                    },
                    None => ack,
                };
                // An answer whose event was queued but not made durable (`sync`): the server
                // gets an error in its place, as for an answer refused before queueing.
                let answer = match msg {
                    Message::Response { id: Some(id), .. } if ack.is_pending() => Some(id),
                    _ => None,
                };
                let if_unrecorded = match (opened, answer) {
                    (Some(id), _) => Some(Unrecorded {
                        reply: Box::new({
                            let id = id.clone();
                            let audit = self.audit.clone();
                            move || audit_refusal(&id, &audit.why(START_UNRECORDED)).line()
                        }),
                        calls: vec![id],
                        to_server: false,
                    }),
                    (None, Some(id)) => Some(self.answer_unrecorded(id)),
                    (None, None) => None,
                };
                Route::ToServer(Outbound {
                    budget: None,
                    bytes,
                    ack,
                    if_unrecorded,
                    ends: Vec::new(),
                    held: false,
                })
            }
            // JSON-RPC 2.0 §4.1: a notification is never answered, not even with an error.
            Err(_) if matches!(msg, Message::Notification { .. }) => Route::Drop,
            // JSON-RPC never answers a response: the server hears that the answer was not
            // passed on.
            Err(refusal) => match msg {
                Message::Response { id: Some(id), .. } => {
                    Route::of(self.answers_refused([id], &refusal.message))
                }
                _ => Route::ToClient(self.after_recorded(refusal.line())),
            },
        }
    }

    /// Classifies a client message; `Err` is the answer that replaces forwarding it.
    fn client_message(&self, msg: &Message<'_>) -> Admission {
        if let Message::Request { method, .. } | Message::Notification { method, .. } = msg
            && refuse::loosely_tools_call(method)
        {
            return Err(self.refuse_loose_call(msg, method));
        }
        match msg {
            Message::Request { id, method, params } => {
                let in_use = {
                    let mut st = self.state();
                    // Answers with this id are the new request's (forged ones for a held call
                    // are dropped).
                    st.answered.remove(id);
                    st.id_in_use(id)
                };
                if in_use {
                    let reason = format!("request id {id} is already in use in this session");
                    tracing::warn!(request_id = %id, "request with an id in use refused");
                    let event = (method == TOOLS_CALL)
                        .then(|| {
                            self.refuse_call(
                                Some(id),
                                *params,
                                Side::Client,
                                INVALID_REQUEST,
                                &reason,
                            )
                        })
                        .flatten();
                    return Err(Refusal {
                        extra: None,
                        id: Some(id.clone()),
                        code: INVALID_REQUEST,
                        message: format!(
                            "mcp-audit-proxy refused the request: {reason} (MCP forbids reusing request ids)"
                        ),
                        event,
                    });
                }
                if method == TOOLS_CALL && id.is_not_integer() {
                    return Err(self.refuse_not_integer_id(id, *params));
                }
                let task_kind = self.owned.as_ref().and(owners::task_method(method));
                if task_kind == Some(owners::TaskMethod::ById) {
                    self.task_owned(id, method, *params)?;
                }
                let pending = match &**method {
                    TOOLS_CALL => return self.begin_call(id, *params),
                    "initialize" => {
                        if let Some(p) = params
                            && let Ok(init) = serde_json::from_str::<InitializeParams>(p.get())
                        {
                            let mut st = self.state();
                            st.client_elicits =
                                init.capabilities.as_ref().is_some_and(|c| c.elicits_form());
                            st.client = init.client_info.or(st.client.take());
                            st.negotiated = init.protocol_version.map(|v| v.into_owned());
                        }
                        Pending::Initialize
                    }
                    "server/discover" => Pending::Discover,
                    "tools/list" => {
                        Pending::ToolsList(self.request_http().map(|h| h.roles).unwrap_or_default())
                    }
                    "tasks/result" | "tasks/get" | "tasks/cancel" => {
                        self.state().task_request(method, *params)
                    }
                    _ if task_kind == Some(owners::TaskMethod::List) => Pending::TasksList,
                    _ => Pending::Other,
                };
                self.state().pending.insert(id.clone(), pending);
                Ok((Ack::done(), None))
            }
            // Servers that run whatever `tools/call` they read would run this one unassessed.
            Message::Notification { method, params } if method == TOOLS_CALL => {
                tracing::warn!("tools/call without an id refused");
                let event =
                    self.refuse_call(None, *params, Side::Client, INVALID_REQUEST, NOTIFIED_CALL);
                Err(Refusal {
                    id: None,
                    code: INVALID_REQUEST,
                    message: format!("mcp-audit-proxy refused the message: {NOTIFIED_CALL}"),
                    event,
                    extra: None,
                })
            }
            Message::Notification { method, params } if method == "notifications/cancelled" => {
                match CancelledParams::read(*params) {
                    Ok(Some(c)) => self.cancel(&c.request_id, c.reason.as_deref()),
                    Ok(None) => {}
                    // Not forwarded (a notification gets no answer): the server could cancel
                    // a call the trail records as running on.
                    Err(why) => {
                        tracing::warn!(error = %why, "unreadable notifications/cancelled dropped");
                        return Err(Refusal {
                            id: None,
                            code: INVALID_PARAMS,
                            message: format!(
                                "mcp-audit-proxy refused the cancellation: its params can be read more than one way or not at all ({why})"
                            ),
                            event: None,
                            extra: None,
                        });
                    }
                }
                Ok((Ack::done(), None))
            }
            Message::Response { id: Some(id), body } => {
                self.answered_server_ask(id);
                Ok((self.answer_to_question(id, *body)?, None))
            }
            _ => Ok((Ack::done(), None)),
        }
    }

    /// Whether a request forwarded to the server waits for its answer (a call, or any other
    /// request) and can get one (no question of the server's waits on the client): the stdio
    /// wrapper gives a server whose input closed the time to answer them.
    pub fn awaits_answers(&self) -> bool {
        let st = self.state();
        // A server waiting on the client's answer to its own question gets none once the
        // client closed its input: its calls cannot end.
        !st.questions.values().any(|q| q.waiting)
            && (!st.calls.is_empty() || !st.pending.is_empty())
    }

    // ---------------------------------------------------------------- server → client

    /// Routes one line from the server.
    pub fn from_server(&self, line: Bytes) -> Route {
        if let Some(readable) = surrogates::readable(&line) {
            return lines::read_as(line, readable, |l| self.from_server(l));
        }
        let size = trim_line_end(&line).len();
        let parsed = message::parse(&line);
        let parsed = match parsed {
            Err(_) => match message::null_id_notification(trim_line_end(&line))
                .or_else(|| message::idless_error(trim_line_end(&line)))
            {
                Some(readable) => Ok(Parsed::Single(readable)),
                None => parsed,
            },
            ok => ok,
        };
        match parsed {
            Err(invalid) => {
                tracing::warn!(error = %invalid, bytes = line.len(), "invalid message from server dropped");
                let found = salvage(&line, TOOLS_CALL);
                self.server_refused(
                    &found,
                    &format!("the server's message was refused: {invalid}"),
                )
            }
            // A request of the server's under an id of the form the proxy gives its own
            // confirmation requests: the client's answer to it would be taken as the person's
            // answer to the proxy (helper-109 F6). Refused to the server, never forwarded.
            Ok(Parsed::Single(Message::Request { id, method, .. })) if takes_our_id(&id) => {
                tracing::warn!(request_id = %id, method = %method, "a server request with an id of the proxy's own form refused");
                Route::ToServer(Outbound::now(error_response(
                    Some(&id),
                    INVALID_REQUEST,
                    &format!(
                        "mcp-audit-proxy: request ids starting with {CONFIRM_PREFIX:?} are the proxy's own; use another id"
                    ),
                    None,
                )))
            }
            Ok(Parsed::Single(msg)) => match self.server_message(
                &msg,
                size,
                std::str::from_utf8(trim_line_end(&line)).unwrap_or_default(),
            ) {
                Delivery::Forward {
                    ack,
                    ended,
                    rewritten,
                } => Route::ToClient(Outbound {
                    budget: None,
                    bytes: rewritten.map_or_else(|| line.clone(), |r| Bytes::from(r + "\n")),
                    ack,
                    if_unrecorded: ended.as_ref().map(|e| {
                        let id = e.answers.clone();
                        let audit = self.audit.clone();
                        Unrecorded {
                            reply: Box::new(move || {
                                audit_refusal(&id, &audit.why(END_UNRECORDED)).line()
                            }),
                            calls: Vec::new(),
                            to_server: false,
                        }
                    }),
                    ends: ended.into_iter().map(|e| *e).collect(),
                    held: false,
                }),
                Delivery::Drop => Route::Drop,
                Delivery::Replace(refusal) => Route::ToClient(Outbound::now(refusal.line())),
            },
            Ok(Parsed::Batch(items)) => self.server_batch(line.clone(), &items),
        }
    }

    /// [`Self::server_message`] before the id is put right; `twin` is set to the request's
    /// own id when the answer named it by another spelling.
    fn server_message_matched(
        &self,
        msg: &Message<'_>,
        size: usize,
        twin: &mut Option<RequestId>,
    ) -> Delivery {
        if let Message::Notification { method, params } = msg
            && *method == "notifications/progress"
            && self.progress_after_its_end(*params)
        {
            return Delivery::Drop;
        }
        if let Message::Notification { method, params } = msg
            && *method == "notifications/cancelled"
        {
            self.withdrew_server_ask(*params);
        }
        if let Message::Notification { method, params } = msg
            && self.foreign_task_notice(method, *params)
        {
            tracing::warn!(method = %method, "a task notification about no task of this principal's dropped");
            return Delivery::Drop;
        }
        // In a batch (one cannot be answered alone there): dropped, as [`Self::from_server`]
        // refuses it alone.
        if let Message::Request { id, .. } = msg
            && takes_our_id(id)
        {
            tracing::warn!(request_id = %id, "a server request with an id of the proxy's own form dropped");
            return Delivery::Drop;
        }
        if let Message::Request { id, method, params } = msg {
            Self::asked(&mut self.state(), id, method, *params);
        }
        let unreadable = match msg {
            Message::Response {
                id: None,
                body: ResponseBody::Error(_),
            } => self.state().take_call_of_unreadable_id(),
            _ => None,
        };
        if let (Some(call), Message::Response { body, .. }) = (unreadable, msg) {
            return self.unreadable_id_answered(call, size, *body);
        }
        let Message::Response { id: Some(id), body } = msg else {
            return Delivery::Forward {
                ack: Ack::done(),
                ended: None,
                rewritten: self.redact_server_params(msg),
            };
        };
        let mut st = self.state();
        let mut rewritten = None;
        let found = st.answered(id).map(|(found, exact)| {
            *twin = exact;
            found
        });
        if let ResponseBody::Result(result) = body
            && let Some(found) = &found
        {
            self.own_created_task(found, result);
        }
        match found {
            Some(Answered::Call(call)) => {
                drop(st);
                return self.end_call(call, size, *body);
            }
            Some(Answered::Ended(call, why)) => {
                drop(st);
                return self.late_answer(&call, id, why, size, *body);
            }
            Some(Answered::Pending(Pending::TaskResult(call))) => {
                return self.task_result_answered(st, *call, id, size, *body);
            }
            Some(Answered::Pending(Pending::TaskCancel(of))) => {
                match self.task_cancel_answered(st, of, id, *body) {
                    Some(ended) => return ended,
                    None => rewritten = self.redact_answer(id, *body),
                }
            }
            Some(Answered::Cancelled(Pending::TaskResult(call))) => {
                drop(st);
                return self.end_task_via(*call, id, size, *body, true, "tasks/result");
            }
            Some(
                Answered::Pending(Pending::TaskGet(call))
                | Answered::Cancelled(Pending::TaskGet(call)),
            ) => {
                drop(st);
                match self.task_got(*call, id, size, *body) {
                    Some(ended) => return ended,
                    None => rewritten = self.redact_answer(id, *body),
                }
            }
            Some(
                Answered::Pending(Pending::TasksList) | Answered::Cancelled(Pending::TasksList),
            ) => {
                drop(st);
                match self.own_tasks_listed(id, *body) {
                    Ok(kept) => rewritten = kept,
                    Err(refusal) => return Delivery::Replace(refusal),
                }
            }
            // A request the client cancelled is answered as it would have been: a late
            // `tools/list` still has its tools hidden (clients may show a late listing).
            Some(Answered::Pending(pending) | Answered::Cancelled(pending)) => {
                if let ResponseBody::Result(result) = body {
                    learn(&mut st, &mut self.rounds().learnt, &pending, result);
                    if let Pending::ToolsList(roles) = &pending {
                        drop(st);
                        rewritten = match self.check_pins(result) {
                            Ok(()) => None,
                            Err(why) => self.pins_unchecked(id, &why),
                        }
                        .or_else(|| self.filter_tools(id, result, roles));
                    } else if let Pending::Other = pending {
                        drop(st);
                        rewritten = self.redact_answer(id, *body);
                    }
                } else if let Pending::Other = pending {
                    drop(st);
                    rewritten = self.redact_answer(id, *body);
                }
            }
            // A call held for confirmation, or answered by the proxy in the server's place,
            // never reached the server: an answer with its id is forged, and would reach the
            // client as the call's result unrecorded.
            None if st.never_sent(id) => {
                drop(st);
                tracing::warn!(request_id = %id, "the server answered a call it never received (held for confirmation, or answered by the proxy); dropped");
                return Delivery::Drop;
            }
            None => {
                drop(st);
                tracing::warn!(request_id = %id, "response from the server to no request of the client; forwarded");
                // It may be a listing all the same (the client may have sent its request
                // around the proxy, or take any listing it reads): the tools this caller
                // may not call are hidden from any result shaped as one.
                let filtered = match body {
                    ResponseBody::Result(result) if result.get().starts_with('{') => {
                        let opener = self.info.http.as_ref();
                        self.filter_tools(id, result, opener.map_or(&[], |h| &h.roles))
                    }
                    _ => None,
                };
                // Then masked as any answer to no request is (`redact_results`).
                rewritten = match filtered {
                    Some(line) => {
                        let masked = match message::parse(line.as_bytes()) {
                            Ok(Parsed::Single(Message::Response { body, .. })) => {
                                self.redact_unmatched(Some(id), body)
                            }
                            _ => None,
                        };
                        Some(masked.unwrap_or(line))
                    }
                    None => self.redact_unmatched(Some(id), *body),
                };
            }
        }
        Delivery::Forward {
            ack: Ack::done(),
            ended: None,
            rewritten,
        }
    }

    // ---------------------------------------------------------------- time and exit

    /// Fails every call in flight (the session is over); returns the acks to await.
    pub fn end_all(&self, outcome: Outcome, side: Side, reason: &str) -> Vec<Ack> {
        let calls: Vec<Call> = {
            let mut st = self.state();
            // The calls whose task's outcome was asked for and not yet answered end here too.
            let mut tasks: Vec<Call> = st
                .pending
                .drain()
                .filter_map(|(_, p)| match p {
                    Pending::TaskResult(call) => Some(*call),
                    _ => None,
                })
                .collect();
            tasks.extend(st.cancelled.drain().filter_map(|p| match p {
                Pending::TaskResult(call) => Some(*call),
                _ => None,
            }));
            let held: Vec<Call> = st.awaiting.drain().map(|(_, a)| a.call).collect();
            let confirming: Vec<Call> = st.confirming.drain().map(|(_, (c, _))| c).collect();
            let running: Vec<Call> = st.calls.drain().map(|(_, c)| c).collect();
            // Their server may still answer (a shared child outlives the session): recorded
            // then as the answer to a call the proxy had failed.
            for call in &running {
                st.end_early(call.clone(), EndedEarly::Failed);
            }
            running
                .into_iter()
                .chain(held)
                .chain(confirming)
                .chain(tasks)
                .collect()
        };
        calls
            .iter()
            .filter_map(|call| {
                let event = self.failure_event(call, outcome, side, None, reason);
                self.audit
                    .record(&event)
                    .inspect_err(|e| tracing::error!(error = %e, "failure of an in-flight call could not be recorded"))
                    .ok()
            })
            .collect()
    }
}

/// Updates the session from results that describe the peer or its tools.
fn learn(st: &mut State, learnt: &mut Learnt, pending: &Pending, result: &RawValue) {
    match pending {
        Pending::Initialize | Pending::Discover => {
            if let Ok(identity) = serde_json::from_str::<ServerIdentity>(result.get()) {
                if let Some(server) = identity.server() {
                    st.server = Some(server.clone());
                }
                if let (Pending::Initialize, Some(v)) = (pending, identity.protocol_version) {
                    st.negotiated = Some(v.into_owned());
                }
            }
        }
        Pending::ToolsList(_) => {
            if let Ok(list) = serde_json::from_str::<ToolsListView>(result.get()) {
                let mut unlearnt = (0usize, None);
                for tool in list.tools {
                    // A server renaming its tools at every listing must not grow the session
                    // without bound: past the cap, new names are not learnt (logged once per
                    // listing: one line per name flooded the log, helper-103 F2).
                    if !learnt.listed.contains(&tool.name) {
                        if learnt.listed.len() >= MAX_LISTED {
                            unlearnt.0 += 1;
                            unlearnt.1.get_or_insert(tool.name);
                            continue;
                        }
                        learnt.listed.insert(tool.name.clone());
                    }
                    match tool.annotations {
                        Some(a) => learnt.annotations.insert(tool.name, a),
                        None => learnt.annotations.remove(&tool.name),
                    };
                }
                if let (count @ 1.., Some(first)) = unlearnt {
                    tracing::warn!(count, first = %first, "the server listed more than {MAX_LISTED} tool names in this session; {count} new names in this listing are not learnt (their annotations are not read, so their calls are scored as tools without annotations, and their case variants are not checked)");
                }
            }
        }
        Pending::TaskResult(_)
        | Pending::TaskGet(_)
        | Pending::TaskCancel(_)
        | Pending::TasksList
        | Pending::Other => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_learns_at_most_max_listed_tool_names() {
        let (mut st, mut learnt) = (State::default(), Learnt::default());
        for page in 0..3 {
            let tools: Vec<Value> = (0..MAX_LISTED / 2 + 1)
                .map(|i| json!({"name": format!("t{page}-{i}"), "inputSchema": {"type": "object"}, "annotations": {"readOnlyHint": true}}))
                .collect();
            let raw = serde_json::value::to_raw_value(&json!({ "tools": tools })).unwrap();
            learn(&mut st, &mut learnt, &Pending::ToolsList(Vec::new()), &raw);
        }
        assert_eq!(learnt.listed.len(), MAX_LISTED);
        assert!(learnt.annotations.len() <= MAX_LISTED);
        assert!(learnt.listed.contains("t0-0") && learnt.annotations.contains_key("t0-0"));
    }
}
