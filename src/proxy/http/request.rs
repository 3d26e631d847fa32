//! One authenticated request to `/mcp/<upstream>`: POST (the body through the session's
//! pipeline, answered as JSON or SSE), GET (the session's server stream), DELETE (the end of
//! the session), and the sessions they open.

use super::*;
use crate::proxy::pipeline::TOOLS_CALL;

/// How long a single request waits for an answer that could go out as plain JSON (with its
/// own HTTP status in 2026-07-28, or too large for an SSE event) before its SSE stream starts.
const ANSWER_PEEK: Duration = Duration::from_millis(250);
/// An answer of this many bytes or more that comes first goes out as plain JSON in either era:
/// clients cap what they buffer for one SSE event (the official Python SDK: 1 MiB,
/// `DEFAULT_MAX_SSE_EVENT_SIZE`), not a JSON body, so a large result that reaches them over
/// stdio would otherwise fail through the gateway (helper-95 F3). Smaller answers keep the SSE
/// stream the SDKs' own servers send.
const JSON_ANSWER_FROM: usize = 512 * 1024;
/// How long a single 2025-era request waits for its first message before its SSE stream
/// starts, so that a large answer can still go out as JSON ([`JSON_ANSWER_FROM`]): a tool that
/// reads a file or takes a screenshot answers within it. Longer than [`ANSWER_PEEK`] (in the
/// 2025 revisions a closed stream does not cancel the request), but short: until its headers,
/// a stream has no priming event to resume from, and a client counting its requests in flight
/// until their streams open (rmcp) waits (review helper-100). Progress, logging or a server
/// request for the call start the stream at once.
const JSON_PEEK: Duration = Duration::from_secs(3);
/// How long the `initialize` that opens a session waits for its answer before its SSE stream
/// (and with it the session's id) goes out: a session is given to a client only once its
/// server has accepted it (helper-92 F1), and a slow server (`npx` fetching a package) may
/// take seconds.
const HANDSHAKE_PEEK: Duration = Duration::from_secs(30);
/// How often a quiet POST answer stream says it is alive (and learns whether its client is).
const POST_KEEPALIVE: Duration = Duration::from_secs(1);
/// The same for the session's GET stream, which may stay quiet for long.
const GET_KEEPALIVE: Duration = Duration::from_secs(15);

/// One authenticated request to `/mcp/<upstream>`.
pub(super) struct McpRequest<'a> {
    pub(super) gateway: &'a Arc<Gateway>,
    pub(super) upstream: &'a UpstreamConfig,
    pub(super) principal: &'a Principal,
    pub(super) http: HttpContext,
    pub(super) headers: &'a HeaderMap,
    /// Cuts the request's connection: a response (SSE or JSON) whose client stops reading is
    /// cut this way ([`super::budget::Budget::cut_stuck`]).
    pub(super) connection: tokio_util::sync::CancellationToken,
    /// The POST body as one line, once read: a refusal records the tool and arguments of
    /// the `tools/call` it holds (protected), not only that a request was refused.
    pub(super) body: std::sync::OnceLock<Bytes>,
}

/// What the gateway reads of a POST body before the pipeline does.
#[derive(Default)]
struct Inspected {
    initialize: bool,
    /// How many `tools/call` requests.
    calls: usize,
    /// Ids of the requests in the body, in order.
    ids: Vec<RequestId>,
    /// The first method named, for refusal events.
    method: Option<String>,
    /// The requests its `notifications/cancelled` name, read as the pipeline reads them (one
    /// it refuses names none; so does every cancel in a batch it refuses whole, [`feed`]).
    cancelled: Vec<RequestId>,
    /// The progress tokens its requests name, with the request of each (token, request).
    progress: Vec<(RequestId, RequestId)>,
    /// The body parsed, and holds responses only (the client's answers to the server's or
    /// the proxy's requests).
    only_responses: bool,
}

fn inspect(parsed: &Parsed<'_>) -> Inspected {
    let mut out = Inspected::default();
    let mut see = |m: &Message<'_>| match m {
        Message::Request { id, method, params } => {
            out.initialize |= method == "initialize";
            out.calls += usize::from(method == "tools/call");
            out.ids.push(id.clone());
            if let Some(token) = crate::mcp::request_progress_token(*params) {
                out.progress.push((token, id.clone()));
            }
            out.method.get_or_insert_with(|| method.to_string());
        }
        Message::Notification { method, params } => {
            out.method.get_or_insert_with(|| method.to_string());
            if method == "notifications/cancelled"
                && let Ok(Some(c)) = crate::mcp::CancelledParams::read(*params)
            {
                out.cancelled.push(c.request_id);
            }
        }
        Message::Response { .. } => {}
    };
    out.only_responses = match parsed {
        Parsed::Single(m) => matches!(m, Message::Response { .. }),
        Parsed::Batch(items) => {
            !items.is_empty()
                && items
                    .iter()
                    .all(|i| matches!(i.message, Ok(Message::Response { .. })))
        }
    };
    match parsed {
        Parsed::Single(m) => see(m),
        Parsed::Batch(items) => {
            items
                .iter()
                .filter_map(|i| i.message.as_ref().ok())
                .for_each(&mut see);
            if items.iter().any(|i| i.message.is_err()) {
                out.cancelled.clear();
            }
        }
    }
    out
}

/// Feeds a POST body to the pipeline. A 2025-03-26 batch is fed element by element: over
/// HTTP a batch is a way to send several messages at once (the SDKs' HTTP servers take it
/// apart the same way), and a stdio server need not read batches; each element is judged,
/// recorded and answered on its own, and the answers go back together.
///
/// A batch with an element that is not a message (a nested array, a number) goes to the
/// pipeline whole, which refuses and records it whole as on stdio: taken apart, a nested
/// array would reach the server as a batch of its own that the client never sent.
///
/// A body that is not UTF-8 is not JSON (RFC 8259 §8.1) and is refused with `-32700` as the
/// wrapper refuses such a line, every `tools/call` a lenient server could read in it recorded:
/// the strict parse skips the contents of strings it does not read, so such a body could
/// otherwise reach a server that drops it, and the POST would wait for an answer for ever.
fn feed(pipeline: &Pipeline, line: Bytes, http: &HttpContext) -> Route {
    if let Err(e) = std::str::from_utf8(&line) {
        let invalid = crate::jsonrpc::FrameError::InvalidUtf8 {
            offset: e.valid_up_to(),
            line,
        };
        return pipeline.refuse_frame_at(&invalid, Box::new(http.clone()));
    }
    let elements: Option<Vec<Bytes>> = match message::parse(&line) {
        Ok(Parsed::Batch(items))
            if !items.is_empty() && items.iter().all(|i| i.message.is_ok()) =>
        {
            Some(
                items
                    .iter()
                    .map(|i| {
                        let mut one = Vec::with_capacity(i.raw.get().len() + 1);
                        one.extend_from_slice(i.raw.get().as_bytes());
                        one.push(b'\n');
                        Bytes::from(one)
                    })
                    .collect(),
            )
        }
        _ => None,
    };
    match elements {
        Some(lines) => {
            // Flat: a route's `Many` holds single routes only.
            let mut flat = Vec::new();
            for l in lines {
                match pipeline.from_client_at(l, Box::new(http.clone())) {
                    Route::Many(routes) => flat.extend(routes),
                    one => flat.push(one),
                }
            }
            Route::Many(flat)
        }
        None => pipeline.from_client_at(line, Box::new(http.clone())),
    }
}

/// Passes a POST's answers on, learning `Mcp-Param-*` bindings from the responses.
fn learn_params(rx: super::budget::Inbox, params: Arc<ParamHeaders>) -> super::budget::Inbox {
    rx.observe(move |(_, line)| {
        if is_response(line) {
            params.learn(line);
        }
    })
}

/// Whether a client-bound line is a response (it has an id and a result or an error).
fn is_response(line: &[u8]) -> bool {
    matches!(
        message::parse(line),
        Ok(Parsed::Single(Message::Response { .. }))
    )
}

/// Whether a client-bound line is the response to request `id`: not one naming another
/// request, nor an error naming none (`"id": null`), which a server may send before its
/// answer and which must not take the answer's place as the POST's JSON body.
fn answers(line: &[u8], id: &RequestId) -> bool {
    matches!(
        message::parse(line),
        Ok(Parsed::Single(Message::Response { id: Some(answered), .. })) if answered == *id
    )
}

/// Whether a client-bound line is a successful response (a `result`): an `initialize`
/// answered so opens its session.
fn accepted(line: &[u8]) -> bool {
    matches!(
        message::parse(line),
        Ok(Parsed::Single(Message::Response {
            body: message::ResponseBody::Result(_),
            ..
        }))
    )
}

/// The HTTP status of an answer sent alone as JSON: 502 when a remote upstream (`remote`)
/// could not take or answer the request (either era); for a 2026-07-28 client (`modern`, SEP-2575) 404
/// for "method not found" and 400 for the request's own faults; 200 otherwise (a tool's
/// failure, a policy block, a timeout are answers, not HTTP faults).
fn status_of_answer(line: &[u8], modern: bool, remote: bool) -> StatusCode {
    // A 2025 answer is 200 unless it is the remote's failure: no parse for the common case.
    // A stdio server's own -32011 (a code a server may pick) is its answer, not the gateway's.
    if !modern && (!remote || memchr::memmem::find(line, b"-32011").is_none()) {
        return StatusCode::OK;
    }
    let answer = serde_json::from_slice::<serde_json::Value>(line).ok();
    let error = answer.as_ref().and_then(|v| v.get("error"));
    let code = error.and_then(|e| e.get("code")?.as_i64());
    let session_ended = error.and_then(|e| {
        e.get("data")?
            .get(crate::proxy::remote::SESSION_ENDED)?
            .as_bool()
    }) == Some(true);
    match code {
        // The upstream ended the session, and the client's ends with it: the 404 a client
        // starts a new session on (MCP "Session Management"), at once, not after a 502.
        Some(crate::proxy::remote::UPSTREAM_UNAVAILABLE) if remote && session_ended => {
            StatusCode::NOT_FOUND
        }
        Some(crate::proxy::remote::UPSTREAM_UNAVAILABLE) if remote => StatusCode::BAD_GATEWAY,
        Some(-32601) if modern => StatusCode::NOT_FOUND,
        Some(-32700 | -32600 | -32602 | -32020 | -32021 | -32022) if modern => {
            StatusCode::BAD_REQUEST
        }
        _ => StatusCode::OK,
    }
}

/// `body` as one line for a server's stdin (ending in `\n`, every raw CR and LF a space),
/// and the offset of the first raw CR or LF inside a JSON string, if any (the body is then
/// not JSON, and the line only what a lenient reader would make of it).
pub(super) fn one_line(body: &[u8]) -> (Vec<u8>, Option<usize>) {
    let mut line = Vec::with_capacity(body.len() + 1);
    let (mut in_string, mut escaped) = (false, false);
    let mut first = None;
    for (at, &b) in body.iter().enumerate() {
        match b {
            b'\n' | b'\r' => {
                if in_string {
                    first.get_or_insert(at);
                    // A backslash then a raw line break is no escape either.
                    escaped = false;
                }
                line.push(b' ');
                continue;
            }
            _ if escaped => escaped = false,
            b'\\' if in_string => escaped = true,
            b'"' => in_string = !in_string,
            _ => {}
        }
        line.push(b);
    }
    line.push(b'\n');
    (line, first)
}

/// The `charset` parameter of `Content-Type`, lower case and unquoted, if it has one.
fn charset(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(CONTENT_TYPE)?;
    let value = String::from_utf8_lossy(value.as_bytes());
    value.split(';').skip(1).find_map(|param| {
        let (name, v) = param.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| v.trim().trim_matches('"').to_ascii_lowercase())
    })
}

/// The first id that `ids` holds twice, if any.
fn repeated(ids: &[RequestId]) -> Option<RequestId> {
    let mut seen = std::collections::HashSet::with_capacity(ids.len());
    ids.iter().find(|id| !seen.insert(*id)).cloned()
}

/// Counts the messages a route sends to the server.
fn forwarded(route: &Route) -> usize {
    match route {
        // Taken by the proxy itself counts as accepted, as a forwarded message does.
        Route::ToServer(_) | Route::Taken => 1,
        Route::Many(r) => r.iter().map(forwarded).sum(),
        _ => 0,
    }
}

/// Takes the client-bound messages out of a route, leaving the rest.
fn take_answers(route: Route, answers: &mut Vec<crate::proxy::Outbound>) -> Option<Route> {
    match route {
        Route::ToClient(out) => {
            answers.push(out);
            None
        }
        Route::Many(routes) => {
            let rest: Vec<Route> = routes
                .into_iter()
                .filter_map(|r| take_answers(r, answers))
                .collect();
            Some(Route::Many(rest))
        }
        other => Some(other),
    }
}

/// What is recorded of a message whose body was not kept ([`McpRequest::unread_message`]).
#[derive(Debug, Default)]
struct Unread {
    method: Option<String>,
    id: Option<RequestId>,
    tool: Option<String>,
    /// Said in the reason when the record rests on less than the body.
    note: Option<&'static str>,
}

impl McpRequest<'_> {
    pub(super) async fn refuse(
        &self,
        status: StatusCode,
        reason: String,
        session: Option<&str>,
        method: Option<String>,
        id: Option<RequestId>,
    ) {
        self.gateway
            .record_refusal(&Refusal {
                session,
                method,
                request_id: id,
                ..self.refusal(status, reason)
            })
            .await;
    }

    /// This request's refusal: its principal, upstream, HTTP context and body (if read).
    fn refusal(&self, status: StatusCode, reason: String) -> Refusal<'_> {
        Refusal {
            status,
            reason,
            upstream: &self.upstream.name,
            user: Some(&self.principal.user_id),
            auth_method: Some(self.principal.method),
            session: None,
            method: None,
            request_id: None,
            http: self.http.clone(),
            body: self.body.get().cloned(),
            summarized: None,
            tool: None,
        }
    }

    /// The method, id and tool of a message whose body was not kept, from what the key
    /// scanner read of its head (`prefix`), else from the 2026-07-28 `Mcp-Method` and
    /// `Mcp-Name` headers (what the client said it sends), and a note for the reason when
    /// the record rests on less than the body: a message that is, or may be, a `tools/call`
    /// is recorded as one (review helper-106 7a, 7b).
    ///
    /// A head that names no method but a `params.name` (the method may come after 64 KiB of
    /// arguments: JSON members have no order) may be a `tools/call`: recorded as one, and
    /// the note says so. A tool known only from `Mcp-Name` is the client's word.
    fn unread_message(&self, prefix: &crate::jsonrpc::scan::PrefixInfo) -> Unread {
        let header = |name: &str| {
            self.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let method_header = header("mcp-method");
        let unnamed = prefix.methods.is_empty() && !prefix.method_unreadable;
        let by_header = unnamed && method_header.as_deref() == Some(TOOLS_CALL);
        let by_params = unnamed && method_header.is_none() && prefix.params_name.is_some();
        let call = prefix.may_be(TOOLS_CALL) || by_header || by_params;
        let method = if call {
            Some(TOOLS_CALL.to_string())
        } else {
            prefix.methods.last().cloned().or(method_header)
        };
        let (tool, tool_by_header) = match (call, prefix.params_name.clone()) {
            (false, _) => (None, false),
            (true, Some(name)) => (Some(name), false),
            (true, None) => {
                let named = header("mcp-name");
                let by = named.is_some();
                (named, by)
            }
        };
        let note = if by_params {
            Some(
                "no method in the part read; recorded as a tools/call by its params.name (it may be another method that takes a name)",
            )
        } else if by_header && tool_by_header {
            Some(
                "no method in the part read; recorded as the tools/call and tool its Mcp-Method and Mcp-Name headers name (the client's word)",
            )
        } else if by_header {
            Some(
                "no method in the part read; recorded as the tools/call its Mcp-Method header names (the client's word)",
            )
        } else if tool_by_header {
            Some(
                "no tool in the part read; the tool is the one its Mcp-Name header names (the client's word)",
            )
        } else {
            None
        };
        Unread {
            method,
            id: prefix.id.clone(),
            tool,
            note,
        }
    }

    /// The id of the request the body holds (one request, not a batch), for an answer made
    /// before any session read it.
    pub(super) fn body_request_id(&self) -> Option<RequestId> {
        match crate::jsonrpc::message::parse(self.body.get()?) {
            Ok(crate::jsonrpc::message::Parsed::Single(
                crate::jsonrpc::message::Message::Request { id, .. },
            )) => Some(id),
            _ => None,
        }
    }

    /// What the client is told when its upstream's server could not be started: the cause
    /// (the server's command line, the config file's path) stays in the log and the trail,
    /// which the operator reads; a client is no one to show them to.
    pub(super) fn not_started(&self) -> String {
        format!(
            "upstream {:?} could not be started; the gateway's log and its audit trail say why",
            self.upstream.name
        )
    }

    /// A 2026-07-28 `tools/call`'s `Mcp-Param-*` headers against its arguments.
    fn param_headers(&self, body: &serde_json::Value) -> Result<(), String> {
        if body.get("method").and_then(|m| m.as_str()) != Some("tools/call") {
            return Ok(());
        }
        let params = body.get("params");
        let Some(tool) = params.and_then(|p| p.get("name")).and_then(|n| n.as_str()) else {
            return Ok(());
        };
        let arguments = params
            .and_then(|p| p.get("arguments"))
            .unwrap_or(&serde_json::Value::Null);
        match self.gateway.params.get(&self.upstream.name) {
            Some(p) => p.check(tool, arguments, self.headers),
            None => Ok(()),
        }
    }

    /// Records a refusal and answers it in plain text (the request was not read).
    pub(super) async fn refuse_plain(
        &self,
        status: StatusCode,
        reason: String,
    ) -> Response<ResponseBody> {
        let session = self
            .headers
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok());
        self.refuse(status, reason.clone(), session, None, None)
            .await;
        plain(status, reason)
    }

    /// Records a refusal and answers it with a JSON-RPC error carrying the request's id.
    async fn refuse_rpc(
        &self,
        status: StatusCode,
        code: i64,
        reason: String,
        method: Option<String>,
        id: Option<RequestId>,
    ) -> Response<ResponseBody> {
        self.refuse(status, reason.clone(), None, method, id.clone())
            .await;
        rpc_refusal(status, id.as_ref(), code, &reason)
    }

    /// The request's `MCP-Protocol-Version`, if it names a revision the gateway does not
    /// serve: the 400 to answer (MCP 2025-06-18 "Protocol Version Header"), recorded.
    async fn check_version(&self, method: &str) -> Option<Response<ResponseBody>> {
        let v = self.headers.get(VERSION_HEADER)?;
        let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
        if SUPPORTED_VERSIONS.contains(&v.as_str()) {
            return None;
        }
        Some(self.unsupported_version(&v, None, Some(method)).await)
    }

    /// Records and answers a request naming an unsupported protocol revision `v`.
    async fn unsupported_version(
        &self,
        v: &str,
        id: Option<RequestId>,
        method: Option<&str>,
    ) -> Response<ResponseBody> {
        let reason = format!(
            "unsupported MCP-Protocol-Version {}; supported: {}",
            quoted(v, CLIENT_TEXT_BYTES),
            SUPPORTED_VERSIONS.join(", ")
        );
        self.refuse(
            StatusCode::BAD_REQUEST,
            reason.clone(),
            None,
            method.map(str::to_string),
            id.clone(),
        )
        .await;
        // MCP 2026-07-28 UnsupportedProtocolVersionError: the versions served and the one
        // asked for, so the client can pick again.
        let data = serde_json::json!({"supported": SUPPORTED_VERSIONS, "requested": v});
        json(
            StatusCode::BAD_REQUEST,
            error_response(
                id.as_ref(),
                UNSUPPORTED_PROTOCOL_VERSION,
                &reason,
                Some(data),
            ),
        )
    }

    /// Records and answers a GET or DELETE naming a session this principal does not have.
    async fn unknown_session(&self, id: String, method: &str) -> Response<ResponseBody> {
        let reason = format!(
            "no session {} for this principal and upstream",
            quoted(&id, CLIENT_TEXT_BYTES)
        );
        self.refuse(
            StatusCode::NOT_FOUND,
            reason.clone(),
            None,
            Some(method.into()),
            None,
        )
        .await;
        plain(StatusCode::NOT_FOUND, reason)
    }

    /// A request with two copies of a header that must have one value (two `Mcp-Session-Id`,
    /// `MCP-Protocol-Version`, `Content-Type` or `Last-Event-ID`: the gateway and an
    /// intermediary could each take another copy, and route, version-check or parse the
    /// request differently): the 400 to answer, recorded. Copies that are the same byte for
    /// byte (an intermediary adding what was there) pass, but for the session id.
    pub(super) async fn repeated_header(&self) -> Option<Response<ResponseBody>> {
        let name = [
            ("Mcp-Session-Id", "the id of one session"),
            ("MCP-Protocol-Version", "one protocol version"),
            ("Content-Type", "one media type"),
            ("Last-Event-ID", "the id of one event"),
        ]
        .into_iter()
        .find(|(name, _)| {
            let mut copies = self.headers.get_all(*name).iter();
            let first = copies.next();
            let session = *name == "Mcp-Session-Id";
            copies.any(|other| session || Some(other) != first)
        });
        let (name, what) = name?;
        let reason = format!("{name} is repeated: send it once, with {what}");
        self.refuse(StatusCode::BAD_REQUEST, reason.clone(), None, None, None)
            .await;
        Some(rpc_refusal(
            StatusCode::BAD_REQUEST,
            None,
            INVALID_REQUEST,
            &reason,
        ))
    }

    /// The session named by `Mcp-Session-Id`, if it exists and belongs to this principal.
    fn session(&self) -> Result<Option<Arc<Session>>, String> {
        let Some(v) = self.headers.get(SESSION_HEADER) else {
            return Ok(None);
        };
        let id = String::from_utf8_lossy(v.as_bytes()).into_owned();
        let found = self.gateway.sessions().get(&id).cloned();
        match found {
            Some(s) if s.owner == self.principal.key() && s.upstream == self.upstream.name => {
                Ok(Some(s))
            }
            // Another principal's session is "not found" to this one: no oracle for ids.
            _ => Err(id),
        }
    }

    /// Reads the body of a request refused for its headers (`Accept`, `Content-Type`, its
    /// charset), within the usual limits, so that the refusal event names the `tools/call`
    /// it held (tool, arguments, id), as every other refusal does. Nothing is read past
    /// `limits.max_message_bytes` or the body timeouts: the event then names none.
    async fn read_for_the_record(&self, body: Incoming) {
        let max = self.gateway.config.limits.max_message_bytes;
        let idle = self.gateway.config.gateway.header_read_timeout;
        if let Ok(bytes) = super::body::read_request_body(
            body,
            max,
            idle,
            idle * super::body::BODY_DEADLINE_FACTOR,
            false,
        )
        .await
        {
            let _ = self.body.set(Bytes::from(one_line(&bytes).0));
        }
    }

    pub(super) async fn post(&self, body: Incoming, counted: InFlight) -> Response<ResponseBody> {
        let sse = accepts(self.headers, "text/event-stream");
        let json_ok =
            accepts(self.headers, "application/json") || self.headers.get(ACCEPT).is_none();
        if !sse && !json_ok {
            let reason = "Accept admits neither application/json nor text/event-stream".to_string();
            self.read_for_the_record(body).await;
            return self.refuse_plain(StatusCode::NOT_ACCEPTABLE, reason).await;
        }
        let content_json = self
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.trim()
                    .to_ascii_lowercase()
                    .starts_with("application/json")
            });
        if !content_json {
            let reason = "Content-Type must be application/json".to_string();
            self.read_for_the_record(body).await;
            return self
                .refuse_plain(StatusCode::UNSUPPORTED_MEDIA_TYPE, reason)
                .await;
        }
        // A compressed body would reach the pipeline as bytes that are not JSON; say why.
        if let Some(coding) = self
            .headers
            .get_all(http::header::CONTENT_ENCODING)
            .iter()
            .map(|v| {
                String::from_utf8_lossy(v.as_bytes())
                    .trim()
                    .to_ascii_lowercase()
            })
            .find(|c| !c.is_empty() && c != "identity")
        {
            let shown: String = coding.chars().take(64).collect();
            let reason = format!(
                "Content-Encoding {shown:?} is not supported: send the body uncompressed (Content-Encoding: identity, or none)"
            );
            self.refuse(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                reason.clone(),
                None,
                None,
                None,
            )
            .await;
            let mut resp = plain(StatusCode::UNSUPPORTED_MEDIA_TYPE, reason);
            resp.headers_mut().insert(
                http::header::ACCEPT_ENCODING,
                HeaderValue::from_static("identity"),
            );
            return resp;
        }
        let version = self
            .headers
            .get(VERSION_HEADER)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let max = self.gateway.config.limits.max_message_bytes;
        let idle = self.gateway.config.gateway.header_read_timeout;
        // A client waiting for `100 Continue` (RFC 9110 section 10.1.1) sends the body only
        // once it is polled, and then all of it: a body declared too large is then refused
        // unread, by its headers (curl sends `Expect` for large bodies; review helper-106).
        let expects_continue = self
            .headers
            .get(http::header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        let read = super::body::read_request_body(
            body,
            max,
            idle,
            idle * super::body::BODY_DEADLINE_FACTOR,
            !expects_continue,
        )
        .await;
        let bytes = match read {
            Ok(b) => b,
            Err(e) => {
                use super::body::BodyReadError;
                let status = match e {
                    BodyReadError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                    BodyReadError::Stalled { .. } | BodyReadError::TooSlow { .. } => {
                        StatusCode::REQUEST_TIMEOUT
                    }
                    BodyReadError::Read(_) => StatusCode::BAD_REQUEST,
                };
                let reason = e.to_string();
                // An oversized body is recorded as the message its head names: a refused
                // `tools/call` by its tool (the body itself is not kept).
                let Unread {
                    method,
                    id: request_id,
                    tool,
                    note,
                } = match &e {
                    BodyReadError::TooLarge { prefix, .. } => self.unread_message(prefix),
                    _ => Unread::default(),
                };
                // In the session it names, when that is this principal's (review helper-106
                // 7c); a session id that is not is no one's to link to.
                let session = self.session().ok().flatten();
                let recorded = match note {
                    Some(note) => format!("{reason} ({note})"),
                    None => reason.clone(),
                };
                self.gateway
                    .record_refusal(&Refusal {
                        method,
                        request_id: request_id.clone(),
                        tool,
                        session: session.as_deref().map(|s| s.id.as_str()),
                        ..self.refusal(status, recorded)
                    })
                    .await;
                let mut resp = rpc_refusal(status, request_id.as_ref(), INVALID_REQUEST, &reason);
                // The rest of the body is not read: the connection cannot carry another
                // request.
                resp.headers_mut()
                    .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
                return resp;
            }
        };
        // One message per line on the server's stdin: raw line breaks between JSON tokens
        // are whitespace, so they become spaces. Inside a string they are not JSON at all
        // (they must be escaped): such a body is refused below, never rewritten into a
        // valid message the client did not send.
        // JSON is UTF-8 (RFC 8259 section 8.1): a body declared in another charset would be
        // read as UTF-8 and refused for its bytes, or read as other text than was meant. Plain
        // ASCII is the same text in any charset a client declares (`iso-8859-1`, `us-ascii`),
        // and the SDKs' servers read it (helper-92).
        if let Some(charset) = charset(self.headers)
            && !matches!(charset.as_str(), "utf-8" | "utf8")
            && !bytes.is_ascii()
        {
            let reason = format!(
                "the body's charset {} is not supported: send it in UTF-8 (Content-Type: application/json, or with charset=utf-8)",
                quoted(&charset, CLIENT_TEXT_BYTES)
            );
            let _ = self.body.set(Bytes::from(one_line(&bytes).0));
            return self
                .refuse_plain(StatusCode::UNSUPPORTED_MEDIA_TYPE, reason)
                .await;
        }
        // A UTF-8 byte order mark before the JSON text (.NET writers add one): RFC 8259 section
        // 8.1 lets a parser ignore it, and the SDKs' HTTP servers do (helper-92 F3). The
        // server's stdin gets the message without it.
        let text = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
        let (line, break_in_string) = one_line(text);
        let line = Bytes::from(line);
        let _ = self.body.set(line.clone());
        let parsed = message::parse(&line);
        // JSON-RPC batches exist in MCP 2025-03-26 only (2024-11-05 had them too): a later
        // revision's client sending one is refused, as its server would refuse it.
        if matches!(parsed, Ok(Parsed::Batch(_)))
            && version.as_deref().is_some_and(|v| v > "2025-03-26")
        {
            let v = version.clone().unwrap_or_default();
            drop(parsed);
            let reason = format!(
                "a JSON-RPC batch is not allowed in MCP {v} (only 2025-03-26 and earlier have batches); not forwarded"
            );
            return self
                .refuse_rpc(StatusCode::BAD_REQUEST, INVALID_REQUEST, reason, None, None)
                .await;
        }
        let first_id = match &parsed {
            Ok(p) => inspect(p).ids.first().cloned(),
            Err(e) => e.id().cloned(),
        };
        if let Some(v) = &version
            && !SUPPORTED_VERSIONS.contains(&v.as_str())
        {
            drop(parsed);
            return self.unsupported_version(v, first_id, None).await;
        }
        let seen = match &parsed {
            Ok(p) => inspect(p),
            Err(_) => Inspected::default(),
        };
        // Not JSON at all: what JSON-RPC answers first (-32700), before any session question.
        let not_json = match &parsed {
            Err(e @ crate::jsonrpc::message::Invalid::NotJson(_)) => Some(e.to_string()),
            _ => None,
        };
        drop(parsed);
        if let Some(at) = break_in_string {
            let reason = format!(
                "not valid JSON: a string holds a raw line break (byte {at} of the body); JSON requires line breaks in strings escaped as \\n or \\r; not forwarded: send the body with its strings escaped"
            );
            self.refuse(
                StatusCode::BAD_REQUEST,
                reason.clone(),
                None,
                seen.method.clone(),
                seen.ids.first().cloned(),
            )
            .await;
            return rpc_refusal(StatusCode::BAD_REQUEST, None, message::PARSE_ERROR, &reason);
        }
        // Ids are unique within a session (JSON-RPC, MCP): a body naming one twice would
        // have its answers told apart by id alone, so one answer would stand for both and
        // the POST would wait for ever for the other. Refused whole, before any of it runs.
        if let Some(twice) = repeated(&seen.ids) {
            let reason = format!(
                "request id {twice} appears more than once in this body; each request needs an id of its own; not forwarded: send the requests again with distinct ids"
            );
            return self
                .refuse_rpc(
                    StatusCode::BAD_REQUEST,
                    INVALID_REQUEST,
                    reason,
                    seen.method.clone(),
                    Some(twice),
                )
                .await;
        }
        self.gateway
            .metrics
            .tool_calls(&self.upstream.name, seen.calls);
        // Read as the pipeline reads it (lone surrogate escapes as U+FFFD): a body serde_json
        // refuses must not skip the check. Only for the requests this check is for.
        let body_of = |line: &[u8]| {
            let readable = crate::jsonrpc::surrogates::readable(line);
            serde_json::from_slice::<serde_json::Value>(readable.as_deref().unwrap_or(line))
        };
        if let Some(v) = version.as_deref().filter(|v| *v >= SESSIONLESS_FROM)
            && let Ok(body) = body_of(&line)
            && body.is_object()
            && let Err(why) =
                headers::check(self.headers, v, &body).and_then(|()| self.param_headers(&body))
        {
            let reason = format!(
                "routing headers do not match the body ({why}); refused as an attempted smuggling, not forwarded"
            );
            return self
                .refuse_rpc(
                    StatusCode::BAD_REQUEST,
                    headers::HEADER_MISMATCH,
                    reason,
                    seen.method.clone(),
                    seen.ids.first().cloned(),
                )
                .await;
        }

        let (session, ephemeral) = match self.session() {
            // A session is initialized once (MCP "Lifecycle"); a second `initialize` would
            // change what its server, and the trail, take the client to be.
            Ok(Some(s)) if seen.initialize => {
                let reason = format!(
                    "session {} is already initialized; not forwarded: to start a new session, send initialize without Mcp-Session-Id",
                    quoted(&s.id, CLIENT_TEXT_BYTES)
                );
                self.refuse(
                    StatusCode::BAD_REQUEST,
                    reason.clone(),
                    Some(&s.id),
                    Some("initialize".into()),
                    seen.ids.first().cloned(),
                )
                .await;
                return rpc_refusal(
                    StatusCode::BAD_REQUEST,
                    seen.ids.first(),
                    INVALID_REQUEST,
                    &reason,
                );
            }
            Ok(Some(s)) => (s, false),
            Err(id) => {
                let reason = format!(
                    "no session {} for this principal and upstream (ended, expired or never created); start a new one with initialize",
                    quoted(&id, CLIENT_TEXT_BYTES)
                );
                return self
                    .refuse_rpc(
                        StatusCode::NOT_FOUND,
                        INVALID_REQUEST,
                        reason,
                        seen.method.clone(),
                        seen.ids.first().cloned(),
                    )
                    .await;
            }
            Ok(None) => {
                let sessionless = version.as_deref().is_some_and(|v| v >= SESSIONLESS_FROM);
                if let Some(why) = not_json {
                    // helper-89 F7: a body that is not JSON was told a session id was missing.
                    let reason = format!(
                        "{why}; not forwarded: send one JSON-RPC message (or a batch) as the body"
                    );
                    return self
                        .refuse_rpc(
                            StatusCode::BAD_REQUEST,
                            message::PARSE_ERROR,
                            reason,
                            None,
                            None,
                        )
                        .await;
                }
                if !seen.initialize && !sessionless {
                    let reason = "Mcp-Session-Id is required after initialize (or send MCP-Protocol-Version: 2026-07-28 for a sessionless request)".to_string();
                    return self
                        .refuse_rpc(
                            StatusCode::BAD_REQUEST,
                            INVALID_REQUEST,
                            reason,
                            seen.method.clone(),
                            seen.ids.first().cloned(),
                        )
                        .await;
                }
                if sessionless && seen.only_responses {
                    // Nothing asked it: the proxy answers a sessionless request's server for
                    // any request of its own (`pool::unanswerable`). Refused, not dropped
                    // behind a 202, so the client learns its answer went nowhere.
                    let reason = "a sessionless MCP 2026-07-28 POST holds only responses, and no server request awaits one (2026-07-28 has no server-to-client requests: multi round-trip requests, SEP-2322, replace them); not forwarded: answer a server's input requests by retrying the request with inputResponses".to_string();
                    return self
                        .refuse_rpc(StatusCode::BAD_REQUEST, INVALID_REQUEST, reason, None, None)
                        .await;
                }
                // A sessionless request goes to a shared child of its principal's pool (not
                // an `initialize`: it would change that child's lifecycle for the others).
                let pooled = sessionless
                    && !seen.initialize
                    && self.upstream.share_children
                    && !self.gateway.remotes.contains_key(&self.upstream.name);
                match self
                    .open_session(seen.initialize && !sessionless, pooled)
                    .await
                {
                    Ok(s) => {
                        if sessionless && let Some(v) = version.as_deref() {
                            s.pipeline.assume_version(v);
                        }
                        (s, !seen.initialize || sessionless)
                    }
                    Err(resp) => return resp,
                }
            }
        };
        // This POST's `initialize` opens the session: the session is the client's only once
        // the server has accepted it (helper-92 F1: a refused, abandoned or failed
        // `initialize` left a session no client could use or end, counted against the
        // principal's cap, and its server running, until the idle timeout).
        // A single request only (2025-03-26 forbids `initialize` in a batch; a batch's
        // session is kept as before).
        let handshake = seen.initialize && !ephemeral && seen.ids.len() == 1;
        session.busy(1);
        // 2026-07-28: closing a request's stream before its answer cancels the request
        // (recorded as `cancelled`, and the server told); in the 2025 revisions a closed
        // stream is not a cancellation (the answer is recorded when it comes).
        let cancels = version.as_deref().is_some_and(|v| v >= SESSIONLESS_FROM);
        // 2025-11-25 and later: an SSE answer begins with a priming event.
        let primes = version.as_deref().is_some_and(|v| v >= "2025-11-25");
        let done = {
            let session = session.clone();
            let ids = seen.ids.clone();
            OnDrop::new(move || {
                drop(counted);
                session.busy(-1);
                let open = if cancels || handshake {
                    session.unanswered(&ids)
                } else {
                    Vec::new()
                };
                if handshake && !open.is_empty() {
                    session.end("the client left before its initialize was answered");
                    return;
                }
                if open.is_empty() && !ephemeral {
                    return;
                }
                let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                    session.end("the gateway stopped");
                    return;
                };
                runtime.spawn(async move {
                    if let Some(routes) = session.routes() {
                        for id in &open {
                            let line = crate::jsonrpc::message::cancelled(
                                id,
                                "the client closed the request's stream",
                            );
                            routes.send(session.pipeline.from_client(line)).await;
                        }
                    }
                    if ephemeral {
                        session.end(if open.is_empty() {
                            "the sessionless request was answered"
                        } else {
                            "the client closed the request's stream"
                        });
                    }
                });
            })
        };
        let Some(routes) = session.routes() else {
            let reason = "the session has ended".to_string();
            self.refuse(
                StatusCode::NOT_FOUND,
                reason.clone(),
                Some(&session.id),
                seen.method.clone(),
                None,
            )
            .await;
            return rpc_refusal(
                StatusCode::NOT_FOUND,
                seen.ids.first(),
                INVALID_REQUEST,
                &reason,
            );
        };
        let mut resp = self
            .exchange(
                &session,
                routes,
                line,
                seen,
                (sse, cancels, primes, handshake),
                done,
            )
            .await;
        // Not for a session that ended meanwhile: its `initialize` was refused, or its server
        // failed (a 404 would meet the id's first use).
        if !ephemeral
            && (!handshake || session.is_open())
            && let Ok(v) = HeaderValue::from_str(&session.id)
        {
            resp.headers_mut().insert(SESSION_HEADER, v);
        }
        resp
    }

    /// Feeds the body to the session's pipeline and answers with what comes back for it.
    async fn exchange(
        &self,
        session: &Arc<Session>,
        routes: crate::proxy::stdio::Routes,
        line: Bytes,
        seen: Inspected,
        (sse, modern, prime, handshake): (bool, bool, bool, bool),
        done: OnDrop,
    ) -> Response<ResponseBody> {
        // The session this POST's `initialize` opened ends when the server does not accept it.
        let refused = |line: &[u8]| {
            if handshake && !accepted(line) {
                session.end("the server refused its initialize");
            }
        };
        let mut waits = if seen.ids.is_empty() {
            None
        } else {
            match session.wait_for(&seen.ids, sse, &seen.progress) {
                Ok(w) => Some(w),
                // Another POST waits for an answer by that id: answers are told apart by id
                // alone, so this body's could never reach it. Refused whole before any of it
                // runs (the pipeline would refuse only the repeated request, and run the
                // rest with nobody to answer).
                Err(busy) => {
                    drop(done);
                    let reason = format!(
                        "request id {busy} is already in use by a request of this session still waiting for its answer; not forwarded: send the requests again with ids not in use"
                    );
                    self.refuse(
                        StatusCode::BAD_REQUEST,
                        reason.clone(),
                        Some(&session.id),
                        seen.method.clone(),
                        Some(busy.clone()),
                    )
                    .await;
                    return rpc_refusal(
                        StatusCode::BAD_REQUEST,
                        Some(&busy),
                        INVALID_REQUEST,
                        &reason,
                    );
                }
            }
        };
        // A tools/list answer teaches the tools' Mcp-Param-* bindings on its way out.
        if seen.method.as_deref() == Some("tools/list")
            && let Some(params) = self.gateway.params.get(&self.upstream.name)
            && let Some((stream, rx)) = waits.take()
        {
            waits = Some((stream, learn_params(rx, params.clone())));
        }
        let route = feed(&session.pipeline, line, &self.http);
        let sent = forwarded(&route);
        if !seen.cancelled.is_empty() {
            session.release(&seen.cancelled);
        }
        let Some((stream, rx)) = waits else {
            // Nothing to wait for by id (notifications, responses, a body the pipeline
            // refused): the pipeline's own answers are this POST's answer.
            let mut answers = Vec::new();
            let rest = take_answers(route, &mut answers);
            // An answer to a request waiting on another stream goes there (a call held for
            // confirmation that this POST's answer declined: its -32010 is the call's, not
            // this POST's); this POST, a response the proxy took, is then accepted (202).
            // Only for a body of nothing but responses that parsed: a broken body's refusal
            // names an id read from broken text, which must not end another request. A held
            // call's answer is known to be one (review finding 4: a broken body holding the
            // confirmation answer had the held call's -32010 in its own 400, and the call's
            // stream waited); the refused body still gets its refusal.
            let (elsewhere, answers): (Vec<_>, Vec<_>) = answers
                .into_iter()
                .partition(|a| (seen.only_responses || a.held) && session.awaited(&a.bytes));
            let sent = sent + elsewhere.iter().filter(|_| seen.only_responses).count();
            // `Routes::send` unpacks one level of `Many`: flatten, never nest.
            let mut rest = match rest {
                Some(Route::Many(v)) => v,
                Some(r) => vec![r],
                None => Vec::new(),
            };
            rest.extend(elsewhere.into_iter().map(Route::ToClient));
            if !rest.is_empty() {
                routes.send(Route::Many(rest)).await;
            }
            let mut lines = Vec::new();
            for a in answers {
                let bytes = match a.ack.wait().await {
                    Ok(()) => a.bytes,
                    Err(_) => match a.if_unrecorded {
                        Some(u) => (u.reply)(),
                        None => a.bytes,
                    },
                };
                lines.push(bytes);
            }
            drop(done);
            if lines.is_empty() {
                if sent > 0 {
                    // MCP "Sending Messages to the Server": 202 Accepted with no body.
                    let mut r = Response::new(full(Bytes::new()));
                    *r.status_mut() = StatusCode::ACCEPTED;
                    return r;
                }
                return rpc_refusal(
                    StatusCode::BAD_REQUEST,
                    None,
                    INVALID_REQUEST,
                    "mcp-audit-proxy refused the message (it is in the audit trail with the reason); it was not forwarded",
                );
            }
            return json(StatusCode::BAD_REQUEST, join(lines));
        };
        if !routes.send(route).await {
            session.unwait(&seen.ids);
        }
        drop(routes);
        // Whether a -32011 answer is a remote upstream's failure (502), not a server's own.
        let remote = self.gateway.remotes.contains_key(&self.upstream.name);
        if sse {
            let mut rx = rx;
            // A single request's stream starts only once its first message is not the
            // answer (MCP Streamable HTTP lets the server pick; a client takes both). An
            // answer that comes first goes out as plain JSON when an SSE stream could not
            // carry it as well:
            // - 2026-07-28 (SEP-2575): an error answers with its own HTTP status (404 for an
            //   unknown method, 400 for bad params...), which an SSE stream, its 200 already
            //   sent, cannot carry; any answer there goes out as JSON;
            // - a remote upstream that cannot be reached fails the request at once, in either
            //   era: that answer goes out as JSON with 502, like any gateway's;
            // - a large answer ([`JSON_ANSWER_FROM`]), in either era.
            let mut first = None;
            if seen.ids.len() == 1 {
                // Errors of the request itself come at once; a call that runs longer gets
                // its stream after a wait: short in 2026-07-28, where a closed stream cancels
                // the call, longer in 2025 (`JSON_PEEK`).
                let peek = if handshake {
                    HANDSHAKE_PEEK
                } else if modern {
                    ANSWER_PEEK
                } else {
                    JSON_PEEK
                };
                match tokio::time::timeout(peek, rx.recv()).await {
                    Ok(Some((seq, line))) if answers(&line, &seen.ids[0]) => {
                        refused(&line);
                        let status = status_of_answer(&line, modern, remote);
                        if modern || status != StatusCode::OK || line.len() >= JSON_ANSWER_FROM {
                            drop(done);
                            // The stream gives the line back; the JSON answer counts it.
                            drop(rx);
                            return self.counted_json(session, status, line);
                        }
                        first = Some((seq, line));
                    }
                    Ok(other) => first = other,
                    Err(_) => {}
                }
            }
            let rx = rx.attach(&self.connection);
            let body = EventStream::body(first, rx, stream, (POST_KEEPALIVE, prime), done);
            let mut r = Response::new(body);
            let h = r.headers_mut();
            h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
            h.insert(
                http::header::CACHE_CONTROL,
                HeaderValue::from_static("no-cache"),
            );
            return r;
        }
        let mut rx = rx;
        let mut lines = Vec::new();
        while let Some((_, line)) = rx.recv().await {
            lines.push(line);
        }
        if handshake {
            match lines.iter().find(|l| answers(l, &seen.ids[0])) {
                Some(line) => refused(line),
                None => session.end("its initialize was not answered"),
            }
        }
        drop(done);
        let status = match lines.as_slice() {
            [one] => status_of_answer(crate::jsonrpc::frame::trim_line_end(one), modern, remote),
            _ => StatusCode::OK,
        };
        self.counted_json(session, status, join(lines))
    }

    /// A JSON answer counted against `session`'s byte budget until hyper has taken it
    /// ([`super::budget::Budget::hold`]): a client that reads none of its answers cannot make
    /// the gateway hold one per request past the budget.
    fn counted_json(
        &self,
        session: &Session,
        status: StatusCode,
        bytes: Bytes,
    ) -> Response<ResponseBody> {
        let credit = session.budget().hold(bytes.len(), &self.connection);
        let mut r = json(status, Bytes::new());
        *r.body_mut() = super::body::counted(bytes, credit);
        r
    }

    /// GET: the session's stream of server requests and notifications.
    pub(super) async fn get(&self, slot: super::PrincipalSlot) -> Response<ResponseBody> {
        if let Some(refused) = self.check_version("GET").await {
            return refused;
        }
        if !accepts(self.headers, "text/event-stream") {
            let reason = "GET opens an SSE stream: Accept must admit text/event-stream".to_string();
            self.refuse(
                StatusCode::NOT_ACCEPTABLE,
                reason.clone(),
                None,
                Some("GET".into()),
                None,
            )
            .await;
            return plain(StatusCode::NOT_ACCEPTABLE, reason);
        }
        let session = match self.session() {
            Ok(Some(s)) => s,
            Ok(None) => {
                let mut r = plain(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "GET needs an Mcp-Session-Id (2026-07-28 clients use subscriptions/listen)",
                );
                r.headers_mut().insert(
                    http::header::ALLOW,
                    HeaderValue::from_static("POST, GET, DELETE"),
                );
                return r;
            }
            Err(id) => {
                return self.unknown_session(id, "GET").await;
            }
        };
        // Last-Event-ID `<stream>-<seq>`: that stream, from after that event (MCP 2025-11-25
        // "Resumability and Redelivery"); a GET without one opens the session's GET stream.
        let last = self.headers.get("last-event-id");
        let resumed = last
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().split_once('-'))
            .and_then(|(s, n)| Some((s.parse::<u64>().ok()?, n.parse::<u64>().ok()?)))
            .and_then(|(stream, after)| Some((stream, session.resume(stream, after)?)));
        let (stream, rx) = match resumed {
            Some(r) => r,
            None if last.is_some() => match session.resume_unknown() {
                Some(r) => r,
                None => {
                    return plain(
                        StatusCode::CONFLICT,
                        "the stream named by Last-Event-ID is no longer kept (nothing of it is left to replay), and another connection holds this session's GET stream",
                    );
                }
            },
            None => session.listen(),
        };
        session.busy(1);
        let guard = {
            let s = session.clone();
            OnDrop::new(move || {
                drop(slot);
                s.busy(-1)
            })
        };
        let mut r = Response::new(EventStream::body(
            None,
            rx.attach(&self.connection),
            stream,
            (GET_KEEPALIVE, false),
            guard,
        ));
        let h = r.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        h.insert(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache"),
        );
        if let Ok(v) = HeaderValue::from_str(&session.id) {
            h.insert(SESSION_HEADER, v);
        }
        r
    }

    /// DELETE: ends the session (MCP "Streamable HTTP: Session Management").
    pub(super) async fn delete(&self) -> Response<ResponseBody> {
        if let Some(refused) = self.check_version("DELETE").await {
            return refused;
        }
        match self.session() {
            Ok(Some(s)) => {
                self.gateway.sessions().remove(&s.id);
                s.end("the client ended the session (HTTP DELETE)");
                plain(StatusCode::OK, "session ended")
            }
            Ok(None) => plain(StatusCode::BAD_REQUEST, "DELETE needs an Mcp-Session-Id"),
            Err(id) => self.unknown_session(id, "DELETE").await,
        }
    }
}

/// One message, or several as a JSON array (a 2025-03-26 batch answer).
pub(super) fn join(lines: Vec<Bytes>) -> Bytes {
    let trimmed: Vec<&[u8]> = lines
        .iter()
        .map(|l| crate::jsonrpc::frame::trim_line_end(l))
        .collect();
    if trimmed.len() == 1 {
        return Bytes::copy_from_slice(trimmed[0]);
    }
    let mut out = Vec::with_capacity(trimmed.iter().map(|l| l.len() + 1).sum::<usize>() + 2);
    out.push(b'[');
    for (i, l) in trimmed.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(l);
    }
    out.push(b']');
    Bytes::from(out)
}
