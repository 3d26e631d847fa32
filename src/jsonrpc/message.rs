//! Classification of one JSON-RPC message from its raw bytes.
//!
//! The view borrows from the line: `params`, `result` and `error` stay raw JSON until a
//! decision needs them, and the original bytes are what gets forwarded.

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;
use serde::de::{self, Deserializer, IgnoredAny};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;

/// A JSON-RPC request id: a key for correlation that keeps `1` and `"1"` apart.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RequestId {
    /// An integer id (an integral float such as `1.0` is read as that integer, like rmcp does).
    Int(i64),
    /// A string id.
    Str(Box<str>),
    /// Any other number, kept as its JSON text.
    Num(Box<str>),
}

impl<'de> Deserialize<'de> for RequestId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = RequestId;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a number")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RequestId, E> {
                Ok(RequestId::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RequestId, E> {
                Ok(i64::try_from(v)
                    .map(RequestId::Int)
                    .unwrap_or_else(|_| RequestId::Num(v.to_string().into())))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<RequestId, E> {
                let as_int = v as i64;
                if v.fract() == 0.0 && (as_int as f64) == v {
                    Ok(RequestId::Int(as_int))
                } else {
                    Ok(RequestId::Num(v.to_string().into()))
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RequestId, E> {
                Ok(RequestId::Str(v.into()))
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for RequestId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            RequestId::Int(i) => s.serialize_i64(*i),
            RequestId::Str(v) => s.serialize_str(v),
            RequestId::Num(text) => match text.parse::<serde_json::Number>() {
                Ok(n) => n.serialize(s),
                Err(_) => s.serialize_str(text),
            },
        }
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestId::Int(i) => write!(f, "{i}"),
            RequestId::Str(v) => write!(f, "{}", serde_json::Value::from(&**v)),
            RequestId::Num(text) => f.write_str(text),
        }
    }
}

/// One classified message; borrowed parts point into the original line.
#[derive(Debug)]
pub enum Message<'a> {
    /// A request: expects a response with the same id.
    Request {
        /// The request id.
        id: RequestId,
        /// The method name.
        method: Cow<'a, str>,
        /// Raw `params`, if present.
        params: Option<&'a RawValue>,
    },
    /// A notification: no id, no response.
    Notification {
        /// The method name.
        method: Cow<'a, str>,
        /// Raw `params`, if present.
        params: Option<&'a RawValue>,
    },
    /// A response to an earlier request of the other side.
    Response {
        /// The id it answers; `None` for an error about a message whose id was unreadable.
        id: Option<RequestId>,
        /// The result or the error.
        body: ResponseBody<'a>,
    },
}

/// The payload of a response.
#[derive(Debug, Clone, Copy)]
pub enum ResponseBody<'a> {
    /// A successful `result`.
    Result(&'a RawValue),
    /// An `error` object.
    Error(&'a RawValue),
}

/// A line as received: one message or a batch (JSON-RPC batches exist in MCP 2025-03-26 only).
#[derive(Debug)]
pub enum Parsed<'a> {
    /// A single message.
    Single(Message<'a>),
    /// A batch; each element classified on its own.
    Batch(Vec<BatchItem<'a>>),
}

/// One element of a batch: its raw text (to rebuild the batch without it) and its class.
#[derive(Debug)]
pub struct BatchItem<'a> {
    /// The element as received.
    pub raw: &'a RawValue,
    /// The element classified.
    pub message: Result<Message<'a>, Invalid>,
}

/// Why a line is not a valid JSON-RPC message; decides the error code sent back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    /// Not JSON at all (`-32700`).
    #[error("not valid JSON: {0}")]
    NotJson(String),
    /// JSON but not a JSON-RPC 2.0 message (`-32600`).
    #[error("not a valid JSON-RPC 2.0 message: {reason}")]
    NotJsonRpc {
        /// The id, when one could be read, so the error can answer that request.
        id: Option<RequestId>,
        /// What is wrong.
        reason: String,
    },
}

impl Invalid {
    /// The JSON-RPC error code that answers this problem.
    pub fn code(&self) -> i64 {
        match self {
            Invalid::NotJson(_) => PARSE_ERROR,
            Invalid::NotJsonRpc { .. } => INVALID_REQUEST,
        }
    }

    /// The request id this error answers, if it could be read.
    pub fn id(&self) -> Option<&RequestId> {
        match self {
            Invalid::NotJson(_) => None,
            Invalid::NotJsonRpc { id, .. } => id.as_ref(),
        }
    }
}

/// JSON-RPC "Parse error".
pub const PARSE_ERROR: i64 = -32700;
/// JSON-RPC "Invalid Request".
pub const INVALID_REQUEST: i64 = -32600;
/// JSON-RPC "Invalid params".
pub const INVALID_PARAMS: i64 = -32602;
/// JSON-RPC "Internal error".
pub const INTERNAL_ERROR: i64 = -32603;
/// Request timed out (the code the MCP SDKs use for it).
pub const REQUEST_TIMEOUT: i64 = -32001;

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    jsonrpc: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "present")]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    method: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "present")]
    params: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    result: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    error: Option<&'a RawValue>,
}

/// Keeps an explicit `null` as `Some("null")` so "present but null" differs from "absent".
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// Classifies one line (its trailing newline may be included).
pub fn parse(line: &[u8]) -> Result<Parsed<'_>, Invalid> {
    let first = line.iter().find(|b| !b.is_ascii_whitespace());
    match first {
        Some(b'{') => parse_object(line).map(Parsed::Single),
        Some(b'[') => {
            let items: Vec<&RawValue> =
                serde_json::from_slice(line).map_err(|e| not_json(line, e))?;
            if items.is_empty() {
                return Err(Invalid::NotJsonRpc {
                    id: None,
                    reason: "empty batch".into(),
                });
            }
            Ok(Parsed::Batch(
                items
                    .into_iter()
                    .map(|raw| BatchItem {
                        raw,
                        message: parse_object(raw.get().as_bytes()),
                    })
                    .collect(),
            ))
        }
        _ => Err(match serde_json::from_slice::<IgnoredAny>(line) {
            Ok(_) => Invalid::NotJsonRpc {
                id: None,
                reason: "a message must be a JSON object".into(),
            },
            Err(e) => Invalid::NotJson(e.to_string()),
        }),
    }
}

fn not_json(line: &[u8], e: serde_json::Error) -> Invalid {
    match serde_json::from_slice::<IgnoredAny>(line) {
        Ok(_) => Invalid::NotJsonRpc {
            id: salvage_id(line),
            reason: e.to_string(),
        },
        Err(e) => Invalid::NotJson(e.to_string()),
    }
}

/// On the error path only: the `id` of an object that failed strict classification.
fn salvage_id(line: &[u8]) -> Option<RequestId> {
    #[derive(Deserialize)]
    struct IdOnly {
        id: Option<RequestId>,
    }
    serde_json::from_slice::<IdOnly>(line)
        .ok()
        .and_then(|v| v.id)
}

fn parse_object(bytes: &[u8]) -> Result<Message<'_>, Invalid> {
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(Invalid::NotJsonRpc {
            id: None,
            reason: "a message must be a JSON object".into(),
        });
    }
    let env: Envelope<'_> = serde_json::from_slice(bytes).map_err(|e| not_json(bytes, e))?;
    let fail = |reason: &str, id: Option<RequestId>| Invalid::NotJsonRpc {
        id,
        reason: reason.into(),
    };
    let id = match env.id {
        None => None,
        Some(raw) if raw.get() == "null" => None,
        Some(raw) => Some(
            serde_json::from_str::<RequestId>(raw.get())
                .map_err(|_| fail("`id` must be a string or a number", None))?,
        ),
    };
    if env.jsonrpc.as_deref() != Some("2.0") {
        return Err(fail("`jsonrpc` must be \"2.0\"", id));
    }
    if let Some(params) = env.params
        && !matches!(params.get().as_bytes().first(), Some(b'{' | b'['))
    {
        return Err(fail("`params` must be an object or an array", id));
    }
    match (env.method, env.result, env.error) {
        (Some(method), None, None) => match (env.id, id) {
            (None, _) => Ok(Message::Notification {
                method,
                params: env.params,
            }),
            (Some(_), Some(id)) => Ok(Message::Request {
                id,
                method,
                params: env.params,
            }),
            (Some(_), None) => Err(fail("a request `id` must not be null", None)),
        },
        (Some(_), _, _) => Err(fail("a request must not carry `result` or `error`", id)),
        (None, Some(result), None) if env.id.is_some() => Ok(Message::Response {
            id,
            body: ResponseBody::Result(result),
        }),
        (None, None, Some(error)) if env.id.is_some() => Ok(Message::Response {
            id,
            body: ResponseBody::Error(error),
        }),
        (None, Some(_), Some(_)) => Err(fail(
            "a response must not carry both `result` and `error`",
            id,
        )),
        (None, _, _) if env.id.is_none() => Err(fail("a response needs an `id`", None)),
        (None, _, _) => Err(fail("a message needs `method`, `result` or `error`", id)),
    }
}

/// A JSON-RPC error response created by the proxy itself, newline-terminated.
pub fn error_response(
    id: Option<&RequestId>,
    code: i64,
    message: &str,
    data: Option<serde_json::Value>,
) -> Bytes {
    #[derive(Serialize)]
    struct ErrorObject<'a> {
        code: i64,
        message: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        data: Option<serde_json::Value>,
    }
    #[derive(Serialize)]
    struct ErrorResponse<'a> {
        jsonrpc: &'static str,
        id: Option<&'a RequestId>,
        error: ErrorObject<'a>,
    }
    let mut out = serde_json::to_vec(&ErrorResponse {
        jsonrpc: "2.0",
        id,
        error: ErrorObject {
            code,
            message,
            data,
        },
    })
    .unwrap_or_else(|_| {
        br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32603,"message":"internal error"}}"#
            .to_vec()
    });
    out.push(b'\n');
    Bytes::from(out)
}

/// A notification created by the proxy itself, newline-terminated.
pub fn notification(method: &str, params: serde_json::Value) -> Bytes {
    let mut out = serde_json::to_vec(&serde_json::json!({
        "jsonrpc": "2.0",
        "method": method,
        "params": params,
    }))
    .unwrap_or_default();
    out.push(b'\n');
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn single(line: &str) -> Message<'_> {
        match parse(line.as_bytes()) {
            Ok(Parsed::Single(m)) => m,
            other => panic!("expected a single message, got {other:?}"),
        }
    }

    #[test]
    fn classifies_a_request_and_keeps_params_raw() {
        let line =
            r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","x":[1, 2]}}"#;
        match single(line) {
            Message::Request { id, method, params } => {
                assert_eq!(id, RequestId::Int(3));
                assert_eq!(method, "tools/call");
                assert_eq!(params.unwrap().get(), r#"{"name":"echo","x":[1, 2]}"#);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn string_and_number_ids_differ() {
        let a = single(r#"{"jsonrpc":"2.0","id":"1","method":"ping"}"#);
        let b = single(r#"{"jsonrpc":"2.0","id":1.0,"method":"ping"}"#);
        let (Message::Request { id: a, .. }, Message::Request { id: b, .. }) = (a, b) else {
            panic!("requests expected");
        };
        assert_eq!(a, RequestId::Str("1".into()));
        assert_eq!(b, RequestId::Int(1));
        assert_ne!(a, b);
    }

    #[test]
    fn classifies_notifications_and_responses() {
        assert!(matches!(
            single(r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{}}"#),
            Message::Notification { .. }
        ));
        assert!(matches!(
            single(r#"{"jsonrpc":"2.0","id":"x","result":null}"#),
            Message::Response {
                id: Some(_),
                body: ResponseBody::Result(_)
            }
        ));
        assert!(matches!(
            single(r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"m"}}"#),
            Message::Response {
                id: None,
                body: ResponseBody::Error(_)
            }
        ));
    }

    #[test]
    fn unknown_fields_are_ignored() {
        assert!(matches!(
            single(r#"{"jsonrpc":"2.0","id":1,"method":"x","extra":{"a":1}}"#),
            Message::Request { .. }
        ));
    }

    #[test]
    fn bad_input_gets_the_right_code_and_id() {
        let cases: &[(&str, i64, Option<RequestId>)] = &[
            ("{not json", PARSE_ERROR, None),
            ("42", INVALID_REQUEST, None),
            ("[]", INVALID_REQUEST, None),
            (
                r#"{"id":5,"method":"x"}"#,
                INVALID_REQUEST,
                Some(RequestId::Int(5)),
            ),
            (
                r#"{"jsonrpc":"1.0","id":"a","method":"x"}"#,
                INVALID_REQUEST,
                Some(RequestId::Str("a".into())),
            ),
            (
                r#"{"jsonrpc":"2.0","id":{"a":1},"method":"x"}"#,
                INVALID_REQUEST,
                None,
            ),
            (
                r#"{"jsonrpc":"2.0","id":null,"method":"x"}"#,
                INVALID_REQUEST,
                None,
            ),
            (
                r#"{"jsonrpc":"2.0","id":2,"method":7}"#,
                INVALID_REQUEST,
                Some(RequestId::Int(2)),
            ),
            (
                r#"{"jsonrpc":"2.0","id":2,"method":"x","params":3}"#,
                INVALID_REQUEST,
                Some(RequestId::Int(2)),
            ),
            (
                r#"{"jsonrpc":"2.0","id":2,"result":1,"error":{}}"#,
                INVALID_REQUEST,
                Some(RequestId::Int(2)),
            ),
            (r#"{"jsonrpc":"2.0","result":1}"#, INVALID_REQUEST, None),
            (
                r#"{"jsonrpc":"2.0","id":4,"id":5,"method":"x"}"#,
                INVALID_REQUEST,
                None,
            ),
        ];
        for (line, code, id) in cases {
            let err = parse(line.as_bytes()).expect_err(line);
            assert_eq!(err.code(), *code, "{line}: {err}");
            assert_eq!(err.id(), id.as_ref(), "{line}");
        }
    }

    #[test]
    fn batches_are_classified_per_element() {
        let Parsed::Batch(items) =
            parse(br#"[{"jsonrpc":"2.0","id":1,"method":"a"},{"oops":1}]"#).unwrap()
        else {
            panic!("batch expected");
        };
        assert!(matches!(items[0].message, Ok(Message::Request { .. })));
        assert!(items[1].message.is_err());
        assert_eq!(items[1].raw.get(), r#"{"oops":1}"#);
    }

    #[test]
    fn error_response_is_one_line_of_json_rpc() {
        let bytes = error_response(Some(&RequestId::Str("q".into())), -32600, "bad", None);
        assert_eq!(
            &bytes[..],
            b"{\"jsonrpc\":\"2.0\",\"id\":\"q\",\"error\":{\"code\":-32600,\"message\":\"bad\"}}\n"
        );
    }
}
