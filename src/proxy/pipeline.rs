//! The pipeline of one client connection: classify → assess → record → forward or refuse →
//! correlate → record. Both front doors (stdio, and later HTTP) feed it raw lines and move
//! the [`Route`]s it returns; it never does I/O itself.
//!
//! Each `tools/call` gets one [`Call`] context when its access event is recorded; the context
//! is consumed exactly once, by whichever end comes first: the server's response, the
//! client's cancellation, the timeout, or the server's exit.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;

use crate::audit::event::{AuditEvent, EventId, EventIds, EventType, Metadata, Outcome, RiskLevel};
use crate::audit::writer::{Ack, AuditError, AuditSink};
use crate::config::Limits;
use crate::error::Side;
use crate::jsonrpc::frame::trim_line_end;
use crate::jsonrpc::message::{
    self, INTERNAL_ERROR, INVALID_PARAMS, REQUEST_TIMEOUT, error_response, notification,
};
use crate::jsonrpc::{FrameError, Message, Parsed, RequestId, ResponseBody};
use crate::mcp::{
    AnyParams, CallToolParams, CallToolResultView, CancelledParams, Era, ErrorView, Implementation,
    InitializeParams, ServerIdentity, ToolAnnotations, ToolsListView,
};
use crate::policy;

/// The `tools/call` method, the one the proxy audits.
pub const TOOLS_CALL: &str = "tools/call";
/// MRTR states remembered per session for linking retries (oldest forgotten first).
const MAX_OPEN_ROUNDS: usize = 1024;
/// Ids answered by the proxy (timeouts) whose late server response must not reach the client.
const MAX_TOMBSTONES: usize = 1024;
/// Error texts kept per event, and characters per text.
const MAX_ERROR_TEXTS: usize = 5;
const MAX_ERROR_CHARS: usize = 1000;

/// A message on its way out, released once its audit event is durable.
#[derive(Debug)]
pub struct Outbound {
    /// The bytes to write: the original message, or one the proxy made.
    pub bytes: Bytes,
    /// Resolves when the audit event this message depends on is durable.
    pub ack: Ack,
    /// If the event could not be recorded: the error to send the client instead.
    pub if_unrecorded: Option<Unrecorded>,
}

/// What to do when a message's audit event fails to become durable.
#[derive(Debug)]
pub struct Unrecorded {
    /// The error response for the client.
    pub reply: Bytes,
    /// The call whose access event failed (its context is dropped without an end event).
    pub call: Option<RequestId>,
}

impl Outbound {
    /// A message that depends on no audit event.
    pub fn now(bytes: Bytes) -> Self {
        Outbound {
            bytes,
            ack: Ack::done(),
            if_unrecorded: None,
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
    /// How the caller was identified (`stdio`).
    pub auth_method: &'static str,
}

/// A `tools/call` in flight: everything its end event needs.
#[derive(Debug)]
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
}

/// Other client requests whose results teach the proxy about the session.
#[derive(Debug, Clone, Copy)]
enum Pending {
    Initialize,
    Discover,
    ToolsList,
}

#[derive(Debug, Default)]
struct State {
    client: Option<Implementation>,
    server: Option<Implementation>,
    negotiated: Option<String>,
    calls: HashMap<RequestId, VecDeque<Call>>,
    pending: HashMap<RequestId, Pending>,
    annotations: HashMap<String, ToolAnnotations>,
    open_rounds: VecDeque<(String, EventId)>,
    tombstones: VecDeque<RequestId>,
    tombstone_set: HashSet<RequestId>,
}

impl State {
    fn take_call(&mut self, id: &RequestId) -> Option<Call> {
        let queue = self.calls.get_mut(id)?;
        let call = queue.pop_front();
        if queue.is_empty() {
            self.calls.remove(id);
        }
        call
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

    fn remember_round(&mut self, key: String, id: EventId) {
        if self.open_rounds.len() >= MAX_OPEN_ROUNDS {
            self.open_rounds.pop_front();
        }
        self.open_rounds.push_back((key, id));
    }

    fn take_round(&mut self, key: &str) -> Option<EventId> {
        let at = self.open_rounds.iter().rposition(|(k, _)| k == key)?;
        self.open_rounds.remove(at).map(|(_, id)| id)
    }

    fn bury(&mut self, id: RequestId) {
        if self.tombstones.len() >= MAX_TOMBSTONES
            && let Some(old) = self.tombstones.pop_front()
        {
            self.tombstone_set.remove(&old);
        }
        self.tombstone_set.insert(id.clone());
        self.tombstones.push_back(id);
    }

    fn unbury(&mut self, id: &RequestId) -> bool {
        if self.tombstone_set.remove(id) {
            self.tombstones.retain(|t| t != id);
            true
        } else {
            false
        }
    }
}

/// How an MRTR retry finds the round it answers.
fn round_key(
    tool: &str,
    request_state: Option<&str>,
    keys: impl Iterator<Item = String>,
) -> String {
    match request_state {
        Some(state) => format!("state:{state}"),
        None => {
            let mut keys: Vec<String> = keys.collect();
            keys.sort();
            format!("tool:{tool}|{}", keys.join(","))
        }
    }
}

/// One connection's pipeline.
#[derive(Debug)]
pub struct Pipeline {
    info: SessionInfo,
    audit: AuditSink,
    ids: EventIds,
    call_timeout: Option<Duration>,
    state: Mutex<State>,
}

impl Pipeline {
    /// A pipeline for one client connection.
    pub fn new(info: SessionInfo, audit: AuditSink, limits: &Limits) -> Self {
        Pipeline {
            info,
            audit,
            ids: EventIds::default(),
            call_timeout: limits.call_timeout,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The session's identity.
    pub fn info(&self) -> &SessionInfo {
        &self.info
    }

    /// `tools/call` requests waiting for their end.
    pub fn in_flight(&self) -> usize {
        self.state().calls.values().map(VecDeque::len).sum()
    }

    // ---------------------------------------------------------------- client → server

    /// Routes one line from the client.
    pub fn from_client(&self, line: Bytes) -> Route {
        let parsed = match message::parse(&line) {
            Ok(p) => p,
            Err(invalid) => {
                tracing::warn!(error = %invalid, bytes = line.len(), "invalid message from client refused");
                return Route::ToClient(Outbound::now(error_response(
                    invalid.id(),
                    invalid.code(),
                    &format!("mcp-audit-proxy refused the message: {invalid}"),
                    None,
                )));
            }
        };
        match parsed {
            Parsed::Single(msg) => match self.client_message(&msg, line.len()) {
                Ok((ack, if_unrecorded)) => Route::ToServer(Outbound {
                    bytes: line,
                    ack,
                    if_unrecorded,
                }),
                Err(reply) => Route::ToClient(Outbound::now(reply)),
            },
            Parsed::Batch(items) => self.client_batch(line.clone(), items),
        }
    }

    /// A batch is forwarded whole or refused whole, so the server never sees part of it.
    fn client_batch(
        &self,
        line: Bytes,
        items: Vec<Result<Message<'_>, message::Invalid>>,
    ) -> Route {
        let problem = items.iter().enumerate().find_map(|(i, item)| match item {
            Err(invalid) => Some(format!("element {i}: {invalid}")),
            Ok(Message::Request { method, params, .. }) if method == TOOLS_CALL => {
                decode_call(*params)
                    .err()
                    .map(|e| format!("element {i}: invalid tools/call params: {e}"))
            }
            Ok(_) => None,
        });
        if let Some(problem) = problem {
            tracing::warn!(problem = %problem, "batch from client refused");
            let mut replies = Vec::new();
            for item in &items {
                let (id, code) = match item {
                    Ok(Message::Request { id, method, params }) => {
                        if method == TOOLS_CALL {
                            self.refuse_call(id, *params, Side::Client, INVALID_PARAMS, &problem);
                        }
                        (Some(id), INVALID_PARAMS)
                    }
                    Err(invalid) => (invalid.id(), invalid.code()),
                    Ok(_) => continue,
                };
                let reply = error_response(
                    id,
                    code,
                    &format!("mcp-audit-proxy refused the whole batch: {problem}"),
                    None,
                );
                replies
                    .push(serde_json::from_slice::<serde_json::Value>(&reply).unwrap_or_default());
            }
            let mut out = serde_json::to_vec(&replies).unwrap_or_default();
            out.push(b'\n');
            return if replies.is_empty() {
                Route::Drop
            } else {
                Route::ToClient(Outbound::now(Bytes::from(out)))
            };
        }
        let mut last = Ack::done();
        let mut unrecorded = None;
        for item in items.iter().flatten() {
            match self.client_message(item, line.len()) {
                Ok((ack, u)) => {
                    if ack.is_pending() {
                        last = ack;
                    }
                    unrecorded = unrecorded.or(u);
                }
                Err(reply) => {
                    // Only an audit failure gets here; the call itself was valid.
                    return Route::ToClient(Outbound::now(reply));
                }
            }
        }
        Route::ToServer(Outbound {
            bytes: line,
            ack: last,
            if_unrecorded: unrecorded,
        })
    }

    /// Classifies a client message; `Err` is the reply that replaces forwarding it.
    fn client_message(
        &self,
        msg: &Message<'_>,
        len: usize,
    ) -> Result<(Ack, Option<Unrecorded>), Bytes> {
        match msg {
            Message::Request { id, method, params } => {
                let pending = match &**method {
                    TOOLS_CALL => return self.begin_call(id, *params, len),
                    "initialize" => {
                        if let Some(p) = params
                            && let Ok(init) = serde_json::from_str::<InitializeParams>(p.get())
                        {
                            let mut st = self.state();
                            st.client = init.client_info.or(st.client.take());
                            st.negotiated = init.protocol_version.map(|v| v.into_owned());
                        }
                        Some(Pending::Initialize)
                    }
                    "server/discover" => Some(Pending::Discover),
                    "tools/list" => Some(Pending::ToolsList),
                    _ => None,
                };
                if let Some(pending) = pending {
                    self.state().pending.insert(id.clone(), pending);
                }
                Ok((Ack::done(), None))
            }
            Message::Notification { method, params } if method == "notifications/cancelled" => {
                if let Some(p) = params
                    && let Ok(c) = serde_json::from_str::<CancelledParams>(p.get())
                {
                    self.cancel(&c.request_id, c.reason.as_deref());
                }
                Ok((Ack::done(), None))
            }
            _ => Ok((Ack::done(), None)),
        }
    }

    /// Records the access event of a `tools/call` and opens its context.
    fn begin_call(
        &self,
        id: &RequestId,
        params: Option<&RawValue>,
        len: usize,
    ) -> Result<(Ack, Option<Unrecorded>), Bytes> {
        let p = match decode_call(params) {
            Ok(p) => p,
            Err(e) => {
                let reason = format!("invalid tools/call params: {e}");
                tracing::warn!(request_id = %id, error = %e, "undecodable tools/call refused");
                let failure = self.refuse_call(id, params, Side::Client, INVALID_PARAMS, &reason);
                return Err(error_response(
                    Some(id),
                    INVALID_PARAMS,
                    &format!("mcp-audit-proxy refused the call: {reason}"),
                    failure.map(|f| json!({ "event_id": f.to_string() })),
                ));
            }
        };
        let started = Instant::now();
        let meta = p.meta.as_ref();
        let (protocol_version, era, user_agent, tool_version, risk, retry_of) = {
            let mut st = self.state();
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
                st.take_round(&round_key(&p.name, p.request_state.as_deref(), keys))
            } else {
                None
            };
            let (risk, _) = policy::tool_risk(st.annotations.get(&*p.name));
            let tool_version = st.server.as_ref().map(Implementation::agent);
            (version, era, agent, tool_version, risk, retry_of)
        };
        let (access_id, timestamp) = self.ids.next();
        let event = AuditEvent {
            event_id: access_id,
            timestamp,
            event_type: EventType::ToolAccess,
            user_id: self.info.user_id.clone(),
            tool_name: Some(p.name.to_string()),
            action: TOOLS_CALL.into(),
            result: Outcome::Initiated,
            metadata: Metadata {
                request_id: Some(id.clone()),
                protocol_version: protocol_version.clone(),
                protocol_era: era,
                auth_method: Some(self.info.auth_method.into()),
                user_agent: user_agent.clone(),
                tool_version: tool_version.clone(),
                arguments: p.arguments.map(ToOwned::to_owned),
                retry_of,
                ..Metadata::default()
            },
            risk_level: risk,
            compliance_tags: Vec::new(),
            session_id: self.info.session_id.clone(),
            upstream: self.info.upstream.clone(),
            linked_event_id: None,
        };
        let ack = self
            .audit
            .record(&event)
            .map_err(|e| self.audit_refusal(id, &e))?;
        tracing::debug!(request_id = %id, tool = %p.name, event_id = %access_id, bytes = len, "tool call recorded");
        // Inserted after recording: no end can be recorded before its access event is queued.
        self.state()
            .calls
            .entry(id.clone())
            .or_default()
            .push_back(Call {
                access_id,
                request_id: id.clone(),
                tool: Some(p.name.into_owned()),
                started,
                deadline: self.call_timeout.map(|t| started + t),
                protocol_version,
                era,
                user_agent,
                tool_version,
                risk,
            });
        let unrecorded = Unrecorded {
            reply: self.audit_refusal_bytes(id, "its access event could not be made durable"),
            call: Some(id.clone()),
        };
        Ok((ack, Some(unrecorded)))
    }

    /// Records a refused call (access + failure, both `refused`); returns the failure's id.
    fn refuse_call(
        &self,
        id: &RequestId,
        params: Option<&RawValue>,
        side: Side,
        code: i64,
        reason: &str,
    ) -> Option<EventId> {
        #[derive(Deserialize)]
        struct NameOnly {
            name: Option<String>,
        }
        let tool = params.and_then(|p| serde_json::from_str::<NameOnly>(p.get()).ok()?.name);
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
        let call = Call {
            access_id: self.ids.next().0,
            request_id: id.clone(),
            tool,
            started: Instant::now(),
            deadline: None,
            protocol_version: version,
            era,
            user_agent: agent,
            tool_version,
            risk: RiskLevel::Medium,
        };
        let mut access = self.call_event(&call, EventType::ToolAccess, Outcome::Refused, None);
        access.event_id = call.access_id;
        access.metadata.arguments = params.map(ToOwned::to_owned);
        let failure = self.call_event(
            &call,
            EventType::ToolFailure,
            Outcome::Refused,
            Some(Metadata {
                error_code: Some(code),
                failure_side: Some(side),
                reason: Some(reason.to_string()),
                ..Metadata::default()
            }),
        );
        let failure_id = failure.event_id;
        for event in [&access, &failure] {
            if let Err(e) = self.audit.record(event) {
                tracing::error!(error = %e, "refused tool call could not be recorded");
                return None;
            }
        }
        Some(failure_id)
    }

    fn audit_refusal(&self, id: &RequestId, e: &AuditError) -> Bytes {
        tracing::error!(request_id = %id, error = %e, "tool call refused: audit trail unavailable");
        self.audit_refusal_bytes(id, &e.to_string())
    }

    fn audit_refusal_bytes(&self, id: &RequestId, why: &str) -> Bytes {
        error_response(
            Some(id),
            INTERNAL_ERROR,
            &format!(
                "mcp-audit-proxy refused the call because the audit trail cannot record it ({why}); tell the operator to check the proxy's log and disk"
            ),
            None,
        )
    }

    /// Ends a call the client cancelled; the notification itself is forwarded.
    fn cancel(&self, id: &RequestId, reason: Option<&str>) {
        let Some(call) = self.state().take_call(id) else {
            return;
        };
        let why = match reason {
            Some(r) => format!("cancelled by the client: {r}"),
            None => "cancelled by the client".to_string(),
        };
        let event = self.call_event(
            &call,
            EventType::ToolFailure,
            Outcome::Cancelled,
            Some(Metadata {
                failure_side: Some(Side::Client),
                reason: Some(why),
                ..Metadata::default()
            }),
        );
        if let Err(e) = self.audit.record(&event) {
            tracing::error!(error = %e, request_id = %id, "cancellation could not be recorded");
        }
    }

    /// Drops the context of a call whose access event failed after it was queued.
    pub fn abandon(&self, id: &RequestId) {
        self.state().take_call(id);
    }

    /// Handles a line from the client that could not be framed.
    pub fn client_frame_error(&self, e: &FrameError) -> Route {
        tracing::warn!(error = %e, "message from client refused");
        let (id, method) = match e {
            FrameError::Oversized { prefix, .. } => (prefix.id.as_ref(), prefix.method.as_deref()),
            FrameError::InvalidUtf8 { .. } => (None, None),
        };
        let code = match e {
            FrameError::Oversized { .. } => message::INVALID_REQUEST,
            FrameError::InvalidUtf8 { .. } => message::PARSE_ERROR,
        };
        let reason = format!("mcp-audit-proxy refused the message: {e}");
        let mut data = None;
        if let (Some(id), Some(TOOLS_CALL)) = (id, method)
            && let Some(failure) = self.refuse_call(id, None, Side::Client, code, &e.to_string())
        {
            data = Some(json!({ "event_id": failure.to_string() }));
        }
        Route::ToClient(Outbound::now(error_response(id, code, &reason, data)))
    }

    // ---------------------------------------------------------------- server → client

    /// Routes one line from the server.
    pub fn from_server(&self, line: Bytes) -> Route {
        match message::parse(&line) {
            Err(invalid) => {
                tracing::warn!(error = %invalid, bytes = line.len(), "invalid message from server dropped");
                Route::Drop
            }
            Ok(Parsed::Single(msg)) => self.server_message(line.clone(), &msg),
            Ok(Parsed::Batch(items)) => {
                let mut last = Outbound::now(line.clone());
                for item in &items {
                    match item {
                        Ok(msg) => {
                            if let Route::ToClient(out) = self.server_message(line.clone(), msg)
                                && out.ack.is_pending()
                            {
                                last = out;
                            }
                        }
                        Err(invalid) => {
                            tracing::warn!(error = %invalid, "invalid element in a batch from server")
                        }
                    }
                }
                Route::ToClient(last)
            }
        }
    }

    fn server_message(&self, line: Bytes, msg: &Message<'_>) -> Route {
        let Message::Response { id: Some(id), body } = msg else {
            return Route::ToClient(Outbound::now(line));
        };
        let mut st = self.state();
        if let Some(call) = st.take_call(id) {
            drop(st);
            return self.end_call(call, line, *body);
        }
        if st.unbury(id) {
            tracing::debug!(request_id = %id, "late response to a timed-out call dropped");
            return Route::Drop;
        }
        if let (Some(pending), ResponseBody::Result(result)) = (st.pending.remove(id), body) {
            learn(&mut st, pending, result);
        }
        Route::ToClient(Outbound::now(line))
    }

    fn end_call(&self, call: Call, line: Bytes, body: ResponseBody<'_>) -> Route {
        let output_size = trim_line_end(&line).len() as u64;
        let mut meta = Metadata {
            output_size_bytes: Some(output_size),
            ..Metadata::default()
        };
        let (event_type, outcome) = match body {
            ResponseBody::Result(raw) => {
                match serde_json::from_str::<CallToolResultView>(raw.get()) {
                    Ok(view) => {
                        for c in &view.content {
                            if !meta.content_types.iter().any(|t| *t == c.kind) {
                                meta.content_types.push(c.kind.to_string());
                            }
                        }
                        let outcome = match view.result_type.as_deref() {
                            Some("input_required") => Outcome::InputRequired,
                            Some("task") => Outcome::Task,
                            _ if view.is_error == Some(true) => {
                                meta.error_messages = view
                                    .content
                                    .iter()
                                    .filter_map(|c| c.text.as_deref())
                                    .take(MAX_ERROR_TEXTS)
                                    .map(|t| t.chars().take(MAX_ERROR_CHARS).collect())
                                    .collect();
                                Outcome::Error
                            }
                            _ => Outcome::Success,
                        };
                        if let Some(requests) = &view.input_requests {
                            meta.input_requests = requests.keys().map(|k| k.to_string()).collect();
                        }
                        if outcome == Outcome::InputRequired {
                            // Linked to its retry when the retry arrives (by requestState, else by keys).
                            meta.reason =
                                Some("the server asked the client for input (MRTR)".into());
                        }
                        (EventType::ToolExecution, outcome)
                    }
                    Err(e) => {
                        meta.reason = Some(format!("result is not a readable CallToolResult: {e}"));
                        (EventType::ToolExecution, Outcome::Success)
                    }
                }
            }
            ResponseBody::Error(raw) => {
                if let Ok(err) = serde_json::from_str::<ErrorView>(raw.get()) {
                    meta.error_code = err.code;
                    meta.error_messages = err
                        .message
                        .map(|m| m.chars().take(MAX_ERROR_CHARS).collect())
                        .into_iter()
                        .collect();
                }
                meta.failure_side = Some(Side::Upstream);
                (EventType::ToolFailure, Outcome::JsonrpcError)
            }
        };
        let round_key_for = (outcome == Outcome::InputRequired).then(|| {
            let view = match body {
                ResponseBody::Result(raw) => {
                    serde_json::from_str::<CallToolResultView>(raw.get()).ok()
                }
                ResponseBody::Error(_) => None,
            };
            let state = view
                .as_ref()
                .and_then(|v| v.request_state.as_deref().map(str::to_string));
            round_key(
                call.tool.as_deref().unwrap_or_default(),
                state.as_deref(),
                meta.input_requests.iter().cloned(),
            )
        });
        let event = self.call_event(&call, event_type, outcome, Some(meta));
        if let Some(key) = round_key_for {
            self.state().remember_round(key, event.event_id);
        }
        let if_unrecorded = Some(Unrecorded {
            reply: self.audit_refusal_bytes(
                &call.request_id,
                "the end of the call could not be recorded; the tool did run",
            ),
            call: None,
        });
        match self.audit.record(&event) {
            Ok(ack) => Route::ToClient(Outbound {
                bytes: line,
                ack,
                if_unrecorded,
            }),
            Err(e) => Route::ToClient(Outbound::now(self.audit_refusal(&call.request_id, &e))),
        }
    }

    /// Handles a line from the server that could not be framed.
    pub fn server_frame_error(&self, e: &FrameError) -> Route {
        tracing::warn!(error = %e, "message from server dropped");
        let FrameError::Oversized { prefix, .. } = e else {
            return Route::Drop;
        };
        // A response (an id and no method) to a call in flight: fail that call visibly.
        let (Some(id), None) = (&prefix.id, &prefix.method) else {
            return Route::Drop;
        };
        let Some(call) = self.state().take_call(id) else {
            return Route::Drop;
        };
        let reason = format!("the server's response was refused: {e}");
        Route::ToClient(self.fail_with_reply(&call, Outcome::Refused, INTERNAL_ERROR, reason))
    }

    /// Ends a call the proxy itself fails (side `upstream`): records the failure and returns
    /// the error the client gets instead of a response, quoting the event id.
    fn fail_with_reply(
        &self,
        call: &Call,
        outcome: Outcome,
        code: i64,
        reason: String,
    ) -> Outbound {
        let event = self.call_event(
            call,
            EventType::ToolFailure,
            outcome,
            Some(Metadata {
                failure_side: Some(Side::Upstream),
                error_code: Some(code),
                reason: Some(reason.clone()),
                ..Metadata::default()
            }),
        );
        let reply = error_response(
            Some(&call.request_id),
            code,
            &format!("mcp-audit-proxy: {reason}"),
            Some(json!({ "event_id": event.event_id.to_string() })),
        );
        match self.audit.record(&event) {
            Ok(ack) => Outbound {
                bytes: reply,
                ack,
                if_unrecorded: None,
            },
            Err(err) => Outbound::now(self.audit_refusal(&call.request_id, &err)),
        }
    }

    // ---------------------------------------------------------------- time and exit

    /// The earliest call deadline, for the timer.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.state()
            .calls
            .values()
            .flatten()
            .filter_map(|c| c.deadline)
            .min()
    }

    /// Fails calls past their deadline: a reply for the client and a cancellation for the server.
    pub fn expire(&self, now: Instant) -> Vec<(Outbound, Bytes)> {
        let expired: Vec<Call> = {
            let mut st = self.state();
            let mut out = Vec::new();
            for queue in st.calls.values_mut() {
                while queue
                    .front()
                    .is_some_and(|c| c.deadline.is_some_and(|d| d <= now))
                {
                    out.extend(queue.pop_front());
                }
            }
            st.calls.retain(|_, q| !q.is_empty());
            for call in &out {
                st.bury(call.request_id.clone());
            }
            out
        };
        expired
            .into_iter()
            .map(|call| {
                tracing::warn!(request_id = %call.request_id, tool = ?call.tool, "tool call timed out");
                let reason = format!(
                    "tool call timed out: no response after {} ms (limits.call_timeout_ms)",
                    call.started.elapsed().as_millis()
                );
                let reply = self.fail_with_reply(&call, Outcome::Timeout, REQUEST_TIMEOUT, reason);
                let cancel = notification(
                    "notifications/cancelled",
                    json!({ "requestId": call.request_id, "reason": "timed out in mcp-audit-proxy" }),
                );
                (reply, cancel)
            })
            .collect()
    }

    /// Fails every call in flight (the server is gone); returns the acks to await.
    pub fn end_all(&self, outcome: Outcome, reason: &str) -> Vec<Ack> {
        let calls: Vec<Call> = {
            let mut st = self.state();
            st.pending.clear();
            st.calls.drain().flat_map(|(_, q)| q).collect()
        };
        calls
            .into_iter()
            .filter_map(|call| {
                let event = self.call_event(
                    &call,
                    EventType::ToolFailure,
                    outcome,
                    Some(Metadata {
                        failure_side: Some(Side::Upstream),
                        reason: Some(reason.to_string()),
                        ..Metadata::default()
                    }),
                );
                self.audit
                    .record(&event)
                    .inspect_err(|e| tracing::error!(error = %e, "failure of an in-flight call could not be recorded"))
                    .ok()
            })
            .collect()
    }

    /// An end event of `call`, linked to its access event; `extra` adds the end's measurements.
    fn call_event(
        &self,
        call: &Call,
        event_type: EventType,
        result: Outcome,
        extra: Option<Metadata>,
    ) -> AuditEvent {
        let (event_id, timestamp) = self.ids.next();
        let mut metadata = extra.unwrap_or_default();
        metadata.request_id = Some(call.request_id.clone());
        metadata.protocol_version.clone_from(&call.protocol_version);
        metadata.protocol_era = call.era;
        metadata.auth_method = Some(self.info.auth_method.into());
        metadata.user_agent.clone_from(&call.user_agent);
        metadata.tool_version.clone_from(&call.tool_version);
        if event_type != EventType::ToolAccess {
            metadata.execution_time_us = Some(call.started.elapsed().as_micros() as u64);
        }
        AuditEvent {
            event_id,
            timestamp,
            event_type,
            user_id: self.info.user_id.clone(),
            tool_name: call.tool.clone(),
            action: TOOLS_CALL.into(),
            result,
            metadata,
            risk_level: call.risk,
            compliance_tags: Vec::new(),
            session_id: self.info.session_id.clone(),
            upstream: self.info.upstream.clone(),
            linked_event_id: (event_type != EventType::ToolAccess).then_some(call.access_id),
        }
    }
}

fn decode_call(params: Option<&RawValue>) -> Result<CallToolParams<'_>, String> {
    let params = params.ok_or_else(|| "missing params".to_string())?;
    serde_json::from_str(params.get()).map_err(|e| e.to_string())
}

/// Updates the session from results that describe the peer or its tools.
fn learn(st: &mut State, pending: Pending, result: &RawValue) {
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
        Pending::ToolsList => {
            if let Ok(list) = serde_json::from_str::<ToolsListView>(result.get()) {
                for tool in list.tools {
                    match tool.annotations {
                        Some(a) => st.annotations.insert(tool.name, a),
                        None => st.annotations.remove(&tool.name),
                    };
                }
            }
        }
    }
}
