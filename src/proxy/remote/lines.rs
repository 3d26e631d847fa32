//! What the link reads of the messages it carries: the head of a message it sends (its
//! method, the requests it must see answered, its 2026-07-28 routing headers' values), the
//! id an answer answers, and bodies made one line for the core.

use bytes::Bytes;

use crate::jsonrpc::message::{self, Message, Parsed, RequestId};

/// What the link needs to know of a message it sends.
pub(super) struct Head {
    pub(super) method: Option<String>,
    /// Set for a request: the answer must come back, or an error in its place.
    pub(super) id: Option<RequestId>,
    /// Every request the message carries (the one, or those of a batch): each is answered.
    pub(super) ids: Vec<RequestId>,
    /// The message is a batch (2025-03-26).
    pub(super) batch: bool,
    /// It is, or a batch holding, a `tools/call`: the core times it too.
    pub(super) calls: bool,
    /// For `notifications/cancelled`: the request it cancels.
    pub(super) cancels: Option<RequestId>,
    /// `Mcp-Name`'s value (2026-07-28).
    pub(super) name: Option<String>,
    /// The version in `_meta` (2026-07-28 requests carry it on each).
    pub(super) meta_version: Option<String>,
}

impl Head {
    pub(super) fn of(line: &[u8]) -> Head {
        // A line with a lone surrogate escape is read as the core reads it (its copy with
        // U+FFFD, `jsonrpc::surrogates`), so that its request is still answered or failed,
        // and its 2026-07-28 headers still sent.
        let readable = crate::jsonrpc::surrogates::readable(line);
        let line = readable.as_deref().unwrap_or(line);
        let mut head = Head {
            method: None,
            id: None,
            ids: Vec::new(),
            batch: false,
            calls: false,
            cancels: None,
            name: None,
            meta_version: None,
        };
        let (method, params) = match message::parse(line) {
            Ok(Parsed::Single(Message::Request { id, method, params })) => {
                head.calls = method == "tools/call";
                head.id = Some(id.clone());
                head.ids.push(id);
                (method, params)
            }
            Ok(Parsed::Single(Message::Notification { method, params })) => (method, params),
            Ok(Parsed::Batch(items)) => {
                head.batch = true;
                for item in items {
                    if let Ok(Message::Request { id, method, .. }) = item.message {
                        head.calls |= method == "tools/call";
                        head.ids.push(id);
                    }
                }
                return head;
            }
            _ => return head,
        };
        #[derive(serde::Deserialize)]
        struct Params {
            #[serde(rename = "_meta")]
            meta: Option<serde_json::Map<String, serde_json::Value>>,
            name: Option<serde_json::Value>,
            uri: Option<serde_json::Value>,
            #[serde(rename = "taskId")]
            task_id: Option<serde_json::Value>,
            #[serde(rename = "requestId")]
            request_id: Option<Box<serde_json::value::RawValue>>,
        }
        if let Some(p) = params.and_then(|p| serde_json::from_str::<Params>(p.get()).ok()) {
            head.meta_version = p
                .meta
                .as_ref()
                .and_then(|m| m.get(crate::mcp::META_PROTOCOL_VERSION))
                .and_then(|v| v.as_str())
                .map(str::to_string);
            let member = match crate::proxy::http::name_member(&method) {
                Some("name") => p.name,
                Some("uri") => p.uri,
                Some("taskId") => p.task_id,
                _ => None,
            };
            head.name = member.and_then(|v| v.as_str().map(str::to_string));
            if method == "notifications/cancelled" {
                head.cancels = p.request_id.and_then(|r| RequestId::from_json(r.get()));
            }
        }
        head.method = Some(method.into_owned());
        head
    }

    pub(super) fn is(&self, method: &str) -> bool {
        self.method.as_deref() == Some(method)
    }
}

/// Whether a body is a JSON-RPC message or batch (so that it is the client's to read).
pub(super) fn looks_like_jsonrpc(body: &[u8]) -> bool {
    message::parse(trim(body)).is_ok()
}

pub(super) fn trim(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &b[start..end]
}

/// A message as one line for the core: HTTP bodies and SSE data may hold line breaks, which
/// valid JSON has only as whitespace between tokens (never inside a string), so they become
/// spaces; the message means the same.
pub(super) fn one_line(body: &[u8]) -> Bytes {
    let body = trim(body);
    let mut line = Vec::with_capacity(body.len() + 1);
    line.extend(
        body.iter()
            .map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b }),
    );
    line.push(b'\n');
    Bytes::from(line)
}

/// The `arguments` of a `tools/call` body (`null` if it has none).
pub(super) fn arguments(body: &[u8]) -> serde_json::Value {
    #[derive(serde::Deserialize)]
    struct Call {
        params: Option<Params>,
    }
    #[derive(serde::Deserialize)]
    struct Params {
        arguments: Option<serde_json::Value>,
    }
    let readable = crate::jsonrpc::surrogates::readable(body);
    serde_json::from_slice::<Call>(readable.as_deref().unwrap_or(body))
        .ok()
        .and_then(|c| c.params?.arguments)
        .unwrap_or(serde_json::Value::Null)
}

/// The id a response line answers. Read leniently too (invalid UTF-8 replaced), as the core
/// does before it refuses a broken answer and fails the call itself: the link then does not
/// add an error of its own for the same id.
pub(super) fn answered_id(line: &[u8]) -> Option<RequestId> {
    if let Ok(Parsed::Single(Message::Response { id, .. })) = message::parse(line) {
        return id;
    }
    let text = String::from_utf8_lossy(line);
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    if v.get("method").is_some() || (v.get("result").is_none() && v.get("error").is_none()) {
        return None;
    }
    RequestId::from_json(&v.get("id")?.to_string())
}

/// Whether `line` is an error response whose id is null.
pub(super) fn is_error_without_id(line: &[u8]) -> bool {
    matches!(
        message::parse(line),
        Ok(Parsed::Single(Message::Response {
            id: None,
            body: message::ResponseBody::Error(_),
        }))
    )
}

/// The error response `line` (its `id` null) as the answer to request `id`: the server's
/// `error` member unchanged, one line; `None` if it cannot be read.
pub(super) fn with_id(line: &[u8], id: &RequestId) -> Option<Bytes> {
    // The error's own text, byte for byte (a `Value` would reorder its members and round
    // big numbers in `data`).
    #[derive(serde::Deserialize)]
    struct Refusal<'a> {
        #[serde(borrow)]
        error: &'a serde_json::value::RawValue,
    }
    let r: Refusal<'_> = serde_json::from_slice(line).ok()?;
    let id = serde_json::to_string(id).ok()?;
    Some(Bytes::from(format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":{id},\"error\":{}}}\n",
        r.error.get()
    )))
}

/// Whether `line` is the response to request `id`.
#[cfg(test)]
pub(super) fn answers(line: &[u8], id: &RequestId) -> bool {
    answered_id(line).as_ref() == Some(id)
}

/// The messages of a JSON body as lines: the body itself, or, for an array answering a
/// message that was not a batch, each element (a client of 2025-06-18 or later reads no
/// batch).
pub(super) fn messages_of(body: &[u8], batch: bool) -> Vec<Bytes> {
    let body = trim(body);
    if !batch
        && body.first() == Some(&b'[')
        && let Ok(items) = serde_json::from_slice::<Vec<&serde_json::value::RawValue>>(body)
    {
        return items.iter().map(|i| one_line(i.get().as_bytes())).collect();
    }
    vec![one_line(body)]
}
