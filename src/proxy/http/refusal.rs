//! Requests the gateway refuses before a session sees them (no credential, a bad origin, an
//! unknown upstream, a bad header), recorded as `refused` events: for each `tools/call` the
//! refused body held, a `tool_access` and its `tool_failure` end (with the HTTP status and
//! reason); for a body without one, a lone `tool_failure`. Past the quota per address
//! ([`super::limit`]), a summary event per HTTP status stands for the rest
//! (`metadata.summarized`).

use super::*;

impl Gateway {
    /// Records a request refused before any session saw it.
    pub(super) async fn record_refusal(&self, r: &Refusal<'_>) {
        self.metrics
            .refused(r.method.as_deref().unwrap_or("http"), r.status.as_u16());
        if r.user.is_none() {
            let source = r.http.client_address.clone().unwrap_or_default();
            let (recorded, closed) =
                self.unauthenticated
                    .admit(&source, (&r.reason, r.status.as_u16()), Instant::now());
            for s in closed {
                self.record_suppressed(s).await;
            }
            if !recorded {
                return;
            }
        }
        self.write_refusal(r).await;
    }

    /// One event for the unauthenticated refusals of a source left out of the trail one by
    /// one (see `limit.rs`).
    async fn record_suppressed(&self, s: limit::Suppressed) {
        let http = HttpContext {
            client_address: (s.source != "*").then(|| s.source.clone()),
            ..HttpContext::default()
        };
        let tls = s.status == TLS_REFUSED.as_u16();
        let reason = format!(
            "{} more refusals ({}) of unauthenticated {} from {} in {} s were not recorded one by one (at most {} per address and window); the last said: {}",
            s.count,
            if tls {
                "client certificates refused in the TLS handshake".to_string()
            } else {
                format!("HTTP {}", s.status)
            },
            if tls { "connections" } else { "requests" },
            if s.source == "*" {
                "other addresses"
            } else {
                &s.source
            },
            limit::WINDOW.as_secs(),
            limit::PER_WINDOW,
            s.reason
        );
        let status = StatusCode::from_u16(s.status).unwrap_or(StatusCode::UNAUTHORIZED);
        let summary = Refusal {
            summarized: Some(s.count),
            method: tls.then(|| TLS_HANDSHAKE.to_string()),
            ..Refusal::anonymous(status, reason, http)
        };
        self.write_refusal(&summary).await;
    }

    /// Records a client certificate the TLS handshake refused ([`refused_certificate`]), as
    /// an unauthenticated refusal of `peer` (within the same quota per address). No HTTP
    /// answer was sent: the event has no `status_code`, its `action` is `tls_handshake`.
    pub(super) async fn record_tls_refusal(&self, peer: SocketAddr, reason: String) {
        let http = HttpContext {
            client_address: Some(peer.ip().to_string()),
            ..HttpContext::default()
        };
        let refusal = Refusal {
            method: Some(TLS_HANDSHAKE.to_string()),
            ..Refusal::anonymous(TLS_REFUSED, reason, http)
        };
        self.record_refusal(&refusal).await;
    }

    /// Summary events for the windows that have closed (`all`: every window, at shutdown).
    pub(super) async fn close_refusal_windows(&self, all: bool) {
        for s in self.unauthenticated.close(Instant::now(), all) {
            self.record_suppressed(s).await;
        }
    }

    async fn write_refusal(&self, r: &Refusal<'_>) {
        // The id and the reason (which may quote the client's text) are stored protected when
        // they hold a secret or a card number, as a call's are.
        let policy = self.policy.current();
        let reason = shown(&policy, &r.reason);
        let (calls, more) = match r.body.as_deref() {
            Some(b) => refused_calls(&policy, b, CLIENT_NAME_BYTES),
            // A call whose body was not kept is recorded by what was read of it.
            None if r.method.as_deref() == Some(crate::proxy::pipeline::TOOLS_CALL) => (
                vec![RefusedCall {
                    tool: r
                        .tool
                        .as_deref()
                        .map(|n| cut(&policy.protect_text(n), CLIENT_NAME_BYTES).to_string()),
                    arguments: None,
                    input_responses: None,
                    id: r.request_id.clone(),
                    classes: Vec::new(),
                }],
                0,
            ),
            None => (Vec::new(), 0),
        };
        let count = calls.len();
        let mut events: Vec<AuditEvent> = Vec::with_capacity(count.max(1));
        if calls.is_empty() {
            events.push(self.refusal_event(
                r,
                &policy,
                None,
                None,
                r.request_id.as_ref(),
                reason.clone(),
            ));
        }
        for (k, call) in calls.into_iter().enumerate() {
            let reason = match (count, more, k + 1 == count) {
                (1, 0, _) => reason.clone(),
                (_, 0, _) | (_, _, false) => {
                    format!("{reason} (call {} of {count} in the body)", k + 1)
                }
                (_, more, true) => format!(
                    "{reason} (call {} of {count} in the body; {more} more tools/call it held were not recorded one by one)",
                    k + 1
                ),
            };
            let id = call.id.as_ref().or(r.request_id.as_ref());
            // A refused call is an access and its end, both `refused`, as on the stdio path
            // (issue 7 item 1): a query for a tool's accesses finds the attempt, and the end
            // says why. The access carries no status or reason: those are the end's.
            let (access_id, access_time) = self.ids.next();
            let mut failure = self.refusal_event(r, &policy, call.tool, call.arguments, id, reason);
            let mut tags: Vec<&'static str> = call.classes.iter().map(|c| c.tag()).collect();
            tags.sort_unstable();
            tags.dedup();
            failure.compliance_tags = tags.iter().map(|t| t.to_string()).collect();
            failure.metadata.redacted = call.classes.iter().map(|c| c.as_str().into()).collect();
            let mut access = failure.clone();
            access.metadata.input_responses = call.input_responses;
            access.event_id = access_id;
            access.timestamp = access_time;
            access.event_type = EventType::ToolAccess;
            access.metadata.failure_side = None;
            access.metadata.reason = None;
            if let Some(http) = access.metadata.http.as_mut() {
                http.status_code = None;
            }
            // The arguments (and what was masked in them) are the access's, as on the stdio
            // path (not stored twice); both carry the compliance tags.
            failure.metadata.arguments = None;
            failure.metadata.redacted = Vec::new();
            failure.linked_event_id = Some(access_id);
            events.push(access);
            events.push(failure);
        }
        // All queued before any is awaited: in `sync` mode they share the writer's batches
        // rather than taking an fdatasync each.
        let mut acks = Vec::with_capacity(events.len());
        for event in events {
            match self.audit.record(&event) {
                Ok(ack) => acks.push(ack),
                Err(e) => tracing::error!(error = %e, "refusal event could not be recorded"),
            }
        }
        for ack in acks {
            if let Err(e) = ack.wait().await {
                tracing::error!(error = %e, "refusal event not durable");
            }
        }
    }

    /// One refusal event: the request's, or one of the `tools/call`s its body held.
    fn refusal_event(
        &self,
        r: &Refusal<'_>,
        policy: &crate::policy::Policy,
        tool_name: Option<String>,
        arguments: Option<Box<serde_json::value::RawValue>>,
        request_id: Option<&RequestId>,
        reason: String,
    ) -> AuditEvent {
        let (event_id, timestamp) = self.ids.next();
        let request_id = request_id.map(|id| crate::proxy::pipeline::stored_request_id(policy, id));
        let mut http = r.http.clone();
        http.status_code = (r.status != TLS_REFUSED).then_some(r.status.as_u16());
        AuditEvent {
            event_id,
            timestamp,
            event_type: EventType::ToolFailure,
            user_id: r.user.unwrap_or("unauthenticated").to_string(),
            tool_name,
            // The method and the upstream come from the client (the body, the path): a
            // secret there is stored protected too.
            action: r.method.as_deref().map_or("http".to_string(), |m| {
                cut(&shown(policy, m), CLIENT_NAME_BYTES).to_string()
            }),
            result: Outcome::Refused,
            metadata: Metadata {
                request_id,
                arguments,
                auth_method: r.auth_method.map(str::to_string),
                failure_side: Some(Side::Client),
                reason: Some(reason),
                http: Some(Box::new(http)),
                summarized: r.summarized,
                ..Metadata::default()
            },
            risk_level: RiskLevel::Medium,
            compliance_tags: Vec::new(),
            session_id: r.session.unwrap_or("").to_string(),
            upstream: cut(&shown(policy, r.upstream), CLIENT_NAME_BYTES).to_string(),
            linked_event_id: None,
        }
    }
}

/// The `action` of a refusal in the TLS handshake.
const TLS_HANDSHAKE: &str = "tls_handshake";
/// The status a refusal in the TLS handshake is counted under (`/metrics`, the quota's
/// summaries): 495, nginx's "SSL Certificate Error". The client got a TLS alert, not an HTTP
/// answer, so the event itself has no `status_code`.
const TLS_REFUSED: StatusCode = match StatusCode::from_u16(495) {
    Ok(s) => s,
    Err(_) => StatusCode::BAD_REQUEST,
};

impl Refusal<'_> {
    /// A refusal before the request's principal, session and message are known.
    pub(super) fn anonymous(
        status: StatusCode,
        reason: String,
        http: HttpContext,
    ) -> Refusal<'static> {
        Refusal {
            status,
            reason,
            upstream: "",
            user: None,
            auth_method: None,
            session: None,
            method: None,
            request_id: None,
            http,
            body: None,
            summarized: None,
            tool: None,
        }
    }
}

/// `text` as the trail may keep it: protected when it holds a secret or a card number.
fn shown(policy: &crate::policy::Policy, text: &str) -> String {
    match policy.guarded(text) {
        true => policy.protect_text(text),
        false => text.to_string(),
    }
}

/// A `tools/call` of a refused body, as the trail may keep it.
struct RefusedCall {
    /// Its tool, protected like a call's (a name can carry anything) and cut to `max` bytes.
    tool: Option<String>,
    /// Its `arguments`, sensitive data replaced; `None` if absent, unreadable, or carrying
    /// sensitive data that cannot be masked in place.
    arguments: Option<Box<serde_json::value::RawValue>>,
    /// A 2026-07-28 retry's `inputResponses`, kept as its arguments are (the proxy's own
    /// confirmation answer left out in a retry of its own round): what the person answered.
    input_responses: Option<Box<serde_json::value::RawValue>>,
    /// Its `id`, digit for digit where it could be read as written.
    id: Option<RequestId>,
    /// What the policy found (and masked) in its arguments: the events' `compliance_tags`
    /// and `redacted`, as on the stdio path.
    classes: Vec<crate::policy::classify::Class>,
}

/// Most `tools/call` of one refused body recorded one by one; the last event says how many
/// more the body held (a body of `limits.max_message_bytes` could hold tens of thousands).
const REFUSED_CALLS_RECORDED: usize = 100;

/// Reads the `tools/call`s a refused body holds (each of a batch, up to
/// [`REFUSED_CALLS_RECORDED`]), so that the refusal events name what was attempted, as the
/// stdio path records every element of a refused batch; and how many more it held.
fn refused_calls(
    policy: &crate::policy::Policy,
    body: &[u8],
    max: usize,
) -> (Vec<RefusedCall>, usize) {
    // A body that is not UTF-8 is read as a lenient server would read it (U+FFFD for each
    // bad sequence), so the calls it names are still recorded.
    let text = String::from_utf8_lossy(body);
    let Ok(value) = serde_json::from_str::<&serde_json::value::RawValue>(&text) else {
        return (Vec::new(), 0);
    };
    let elements: Vec<&serde_json::value::RawValue> = if value.get().starts_with('[') {
        serde_json::from_str(value.get()).unwrap_or_default()
    } else {
        vec![value]
    };
    let mut calls = Vec::new();
    let mut more = 0;
    for element in elements {
        // The last copy of a repeated member, as a lenient server reads it.
        let Ok(message) = serde_json::from_str::<serde_json::Value>(element.get()) else {
            continue;
        };
        if message.get("method").and_then(|v| v.as_str()) != Some("tools/call") {
            continue;
        }
        if calls.len() == REFUSED_CALLS_RECORDED {
            more += 1;
            continue;
        }
        // The id as written, when the element can be read member by member.
        #[derive(serde::Deserialize)]
        struct Id<'a> {
            #[serde(borrow)]
            id: Option<&'a serde_json::value::RawValue>,
        }
        let id = serde_json::from_str::<Id<'_>>(element.get())
            .ok()
            .and_then(|i| i.id)
            .and_then(|raw| RequestId::from_json(raw.get()))
            .or_else(|| {
                message
                    .get("id")
                    .and_then(|v| RequestId::from_json(&v.to_string()))
            });
        let params = message.get("params");
        let tool = params
            .and_then(|p| p.get("name"))
            .and_then(|n| n.as_str())
            .map(|n| cut(&policy.protect_text(n), max).to_string());
        let mut classes = Vec::new();
        let arguments = params.and_then(|p| p.get("arguments")).and_then(|a| {
            let kept = match policy.protect(a) {
                Some((protected, found)) => {
                    classes = found;
                    protected
                }
                None => a.clone(),
            };
            serde_json::value::to_raw_value(&kept).ok()
        });
        // The answers of a retry, as the admitted and the pipeline's refused paths keep them
        // (review of finding 11: refused here before any session, they were dropped).
        let ours = params
            .and_then(|p| p.get("requestState"))
            .and_then(|s| s.as_str())
            .is_some_and(crate::proxy::pipeline::own_round);
        let input_responses = params
            .and_then(|p| p.get("inputResponses"))
            .and_then(|r| r.as_object())
            .map(|r| {
                let mut r = r.clone();
                if ours {
                    r.remove(crate::proxy::pipeline::CONFIRM_KEY);
                }
                serde_json::Value::Object(r)
            })
            .filter(|r| r.as_object().is_some_and(|m| !m.is_empty()))
            .and_then(|r| {
                let kept = match policy.protect(&r) {
                    Some((protected, found)) => {
                        for c in found {
                            if !classes.contains(&c) {
                                classes.push(c);
                            }
                        }
                        protected
                    }
                    None => r,
                };
                serde_json::value::to_raw_value(&kept).ok()
            });
        calls.push(RefusedCall {
            tool,
            arguments,
            input_responses,
            id,
            classes,
        });
    }
    (calls, more)
}

/// A refusal to record and answer.
pub(super) struct Refusal<'a> {
    pub(super) status: StatusCode,
    pub(super) reason: String,
    pub(super) upstream: &'a str,
    pub(super) user: Option<&'a str>,
    pub(super) auth_method: Option<&'static str>,
    pub(super) session: Option<&'a str>,
    pub(super) method: Option<String>,
    pub(super) request_id: Option<RequestId>,
    pub(super) http: HttpContext,
    /// The request's body as one line, when it was read before the refusal.
    pub(super) body: Option<Bytes>,
    /// `metadata.summarized`: the refusals a summary event stands for.
    pub(super) summarized: Option<u64>,
    /// The tool of a `tools/call` (`method`) whose body was not kept (an oversized one, read
    /// by the key scanner as it came): the refusal is recorded as that call.
    pub(super) tool: Option<String>,
}
