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

/// A JSON-RPC request id: a key for correlation that keeps `1` and `"1"` apart and never
/// rounds a number.
///
/// JSON-RPC 2.0 §4 allows a string or a number; MCP requires the id to be unique within a
/// session. Numbers are compared by their exact decimal value (`1`, `1.0` and `1e0` are the
/// same id, as every SDK reads them; `18446744073709551616` and `18446744073709551617` are
/// two ids) and echoed and stored as the exact text the client sent: an id is never read
/// into a float.
#[derive(Debug, Clone)]
pub enum RequestId {
    /// An integer written as plain digits that fits in an `i64` (the common case).
    Int(i64),
    /// A string id, decoded.
    Str(Box<str>),
    /// Any other number: a large integer, a fraction, an exponent, `1.0`.
    Num(Box<NumberId>),
}

/// A number id other than a plain `i64`: its text as received and the exact value it is
/// compared by.
#[derive(Debug, Clone)]
pub struct NumberId {
    text: Box<str>,
    key: NumberKey,
}

impl NumberId {
    /// The number as the peer wrote it (JSON text).
    pub fn text(&self) -> &str {
        &self.text
    }
}

/// The exact value of a JSON number, computed on its decimal digits (no float).
#[derive(Debug, Clone)]
enum NumberKey {
    /// An integral value within `i64` (`1.0`, `2e3`).
    Int(i64),
    /// Any other value, canonical: an integer's digits, or `[-]DIGITSeEXP` for a fraction.
    Exact(Box<str>),
}

/// What ids are compared, hashed and ordered by.
#[derive(PartialEq, Eq, Hash, PartialOrd, Ord)]
enum IdKey<'a> {
    Int(i64),
    Str(&'a str),
    Num(&'a str),
}

/// Integers longer than this many digits are kept in exponent form, so that an id such as
/// `1e999999` cannot make the proxy write out a million zeros.
const MAX_INTEGER_DIGITS: usize = 64;

impl RequestId {
    /// Reads an id from its JSON text (`RawValue::get`); `None` if it is neither a string nor
    /// a number.
    pub fn from_json(text: &str) -> Option<RequestId> {
        let text = text.trim_matches(|c: char| c.is_ascii_whitespace());
        match text.as_bytes().first()? {
            // A lone surrogate escape (`"\ud801"`, which JavaScript writes and reads) is
            // read as U+FFFD, as the pipeline reads the rest of such a line
            // (`super::surrogates`).
            b'"' => serde_json::from_str::<Cow<'_, str>>(text)
                .ok()
                .or_else(|| {
                    let readable = super::surrogates::readable(text.as_bytes())?;
                    serde_json::from_slice::<String>(&readable)
                        .ok()
                        .map(Cow::Owned)
                })
                .map(|s| RequestId::Str(s.into())),
            b'-' | b'0'..=b'9' => {
                serde_json::from_str::<IgnoredAny>(text).ok()?;
                let plain = text.strip_prefix('-').unwrap_or(text);
                // `-0` keeps its text (it is the id 0 all the same).
                if plain.bytes().all(|b| b.is_ascii_digit())
                    && let Ok(i) = text.parse::<i64>()
                    && (plain.len() == 1 || !plain.starts_with('0'))
                    && (i != 0 || plain.len() == text.len())
                {
                    return Some(RequestId::Int(i));
                }
                Some(RequestId::Num(Box::new(NumberId {
                    text: text.into(),
                    key: number_key(text),
                })))
            }
            _ => None,
        }
    }

    /// Whether a number id is a fraction (`1.5`, `25e-1`) or past what a double holds
    /// (`1e400`): MCP requests carry a string or integer id (basic/index "Requests"), and
    /// SDKs that check drop such a request or answer it with a null id, which no client can
    /// match to its call. `1.0` and `2e3` are integers written otherwise (the TypeScript SDK
    /// takes them; ids remapped by the pool never reach a server as sent), and large
    /// integers are integers.
    pub fn is_not_integer(&self) -> bool {
        match self {
            RequestId::Num(n) => match &n.key {
                NumberKey::Int(_) => false,
                // `[-]DIGITSeEXP`: a fraction when the exponent is negative.
                NumberKey::Exact(canonical) => {
                    canonical
                        .rsplit_once('e')
                        .is_some_and(|(_, exp)| exp.starts_with('-'))
                        || n.text.parse::<f64>().map_or(true, |f| !f.is_finite())
                }
            },
            _ => false,
        }
    }

    /// Whether servers that read ids as 64-bit integers or strings (rmcp) cannot read this
    /// one: a number that is no integer within `i64` (`12345678901234567890`, `1.5`).
    /// Integers written otherwise (`1e2`, `1.0`, `-0`) they read.
    pub fn unreadable_as_i64(&self) -> bool {
        const EXACT_IN_F64: u64 = 1 << 53;
        match self {
            RequestId::Num(n) => match n.key {
                NumberKey::Exact(_) => true,
                // rmcp reads a number in float form (`1e2`) as an integer only below 2^53
                // (helper-123 I2: `1e16` was answered without an id).
                NumberKey::Int(i) => i.unsigned_abs() >= EXACT_IN_F64,
            },
            _ => false,
        }
    }

    /// The id as JavaScript and Python read a JSON number (a double); `None` for a string.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            RequestId::Int(i) => Some(*i as f64),
            RequestId::Str(_) => None,
            RequestId::Num(n) => n.text.parse().ok(),
        }
    }

    /// The number an SDK matches this id as, when it reads ids as numbers: JSON numbers as
    /// doubles ([`Self::as_f64`]); a string as the TypeScript SDK's `Number(id)` reads it
    /// (`"7"`, `" 7 "`, `"7.0"`, `"0x7"`, and `""` as 0) or, failing that, as the Python
    /// SDK's `coerce_request_id` does with `int(id)` (`"+7"`, `"0_7"`). Both SDKs match a
    /// response, and a cancellation's `requestId`, to a request this way (TS
    /// `shared/protocol.ts` `_onresponse`; Python `shared/dispatcher.py`), so a server that
    /// echoes `"7"` for request 7 is answering it for them. `None`: a string neither reads
    /// as a number (NaN is no reading). Not covered: Python's `int` of non-ASCII digits.
    pub fn sdk_number(&self) -> Option<f64> {
        match self {
            RequestId::Str(s) => js_number(s).or_else(|| python_int(s)),
            other => other.as_f64(),
        }
    }

    fn key(&self) -> IdKey<'_> {
        match self {
            RequestId::Int(i) => IdKey::Int(*i),
            RequestId::Str(s) => IdKey::Str(s),
            RequestId::Num(n) => match &n.key {
                NumberKey::Int(i) => IdKey::Int(*i),
                NumberKey::Exact(s) => IdKey::Num(s),
            },
        }
    }
}

/// The one id among `waiting` that is the same number as `id` as the official SDKs read ids
/// ([`RequestId::sdk_number`]: JSON numbers as doubles, so a server may write
/// `9007199254740993` back as `9007199254740992`; numeric strings as numbers, so `"7"`
/// answers 7 for them); `None` if there is none, or more than one.
pub fn twin<'a>(waiting: impl Iterator<Item = &'a RequestId>, id: &RequestId) -> Option<RequestId> {
    let x = id.sdk_number()?;
    let mut same = waiting.filter(|k| k.sdk_number() == Some(x));
    let one = same.next()?;
    same.next().is_none().then(|| one.clone())
}

/// The id among `waiting` that a response or cancellation naming `id` is for: `id` itself
/// if a request waits under it, else its [`twin`]; `None` if neither. For short lists (a
/// link's pending requests, a batch's ends); maps look `id` up first themselves.
pub fn matching<'a>(
    waiting: impl Iterator<Item = &'a RequestId> + Clone,
    id: &RequestId,
) -> Option<RequestId> {
    if waiting.clone().any(|k| k == id) {
        return Some(id.clone());
    }
    twin(waiting, id)
}

/// Whitespace as ECMAScript's `StringToNumber` trims it (WhiteSpace and LineTerminator).
fn js_space(c: char) -> bool {
    c.is_whitespace() || c == '\u{feff}'
}

/// ECMAScript `Number(s)` (StringNumericLiteral), `None` where it gives NaN.
fn js_number(s: &str) -> Option<f64> {
    let t = s.trim_matches(js_space);
    if t.is_empty() {
        return Some(0.0);
    }
    for (prefix, radix) in [
        ("0x", 16),
        ("0X", 16),
        ("0o", 8),
        ("0O", 8),
        ("0b", 2),
        ("0B", 2),
    ] {
        if let Some(digits) = t.strip_prefix(prefix) {
            if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
                return None;
            }
            return Some(digits.chars().fold(0.0, |n, c| {
                n * f64::from(radix) + f64::from(c.to_digit(radix).unwrap_or(0))
            }));
        }
    }
    let unsigned = t.strip_prefix(['+', '-']).unwrap_or(t);
    if unsigned == "Infinity" {
        return Some(if t.starts_with('-') {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        });
    }
    // StrDecimalLiteral: digits, an optional fraction, an optional exponent; `.5` and `5.`
    // too. Rust's float grammar is wider (`inf`, `nan`): checked first.
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (&unsigned[..at], Some(&unsigned[at + 1..])),
        None => (unsigned, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |d: &str| d.bytes().all(|b| b.is_ascii_digit());
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        !e.is_empty() && digits(e)
    });
    if (int.is_empty() && frac.is_empty()) || !digits(int) || !digits(frac) || !exponent_ok {
        return None;
    }
    t.parse().ok()
}

/// Python `int(s)`: optional sign, ASCII digits with single underscores between them,
/// surrounding whitespace; `None` otherwise.
fn python_int(s: &str) -> Option<f64> {
    let t = s.trim_matches(char::is_whitespace);
    let unsigned = t.strip_prefix(['+', '-']).unwrap_or(t);
    let b = unsigned.as_bytes();
    let well_formed = b.first().is_some_and(u8::is_ascii_digit)
        && b.last().is_some_and(u8::is_ascii_digit)
        && b.iter().all(|c| c.is_ascii_digit() || *c == b'_')
        && !unsigned.contains("__");
    if !well_formed {
        return None;
    }
    let digits: String = unsigned.chars().filter(|c| *c != '_').collect();
    let n: f64 = digits.parse().ok()?;
    Some(if t.starts_with('-') { -n } else { n })
}

/// The exact value of a valid JSON number's text, on its digits.
fn number_key(text: &str) -> NumberKey {
    let exact = || NumberKey::Exact(text.into());
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (&unsigned[..at], &unsigned[at + 1..]),
        None => (unsigned, "0"),
    };
    let Ok(exponent) = exponent
        .strip_prefix('+')
        .unwrap_or(exponent)
        .parse::<i64>()
    else {
        return exact();
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits: String = int.chars().chain(frac.chars()).collect();
    let digits = digits.trim_start_matches('0');
    let significant = digits.trim_end_matches('0');
    if significant.is_empty() {
        return NumberKey::Int(0);
    }
    let Some(exp) = i64::try_from(digits.len() - significant.len())
        .ok()
        .and_then(|zeros| exponent.checked_add(zeros))
        .and_then(|e| e.checked_sub(i64::try_from(frac.len()).ok()?))
    else {
        return exact();
    };
    let sign = if negative { "-" } else { "" };
    match usize::try_from(exp) {
        Ok(zeros) if significant.len() + zeros <= MAX_INTEGER_DIGITS => {
            let integer = format!("{sign}{significant}{}", "0".repeat(zeros));
            match integer.parse::<i64>() {
                Ok(i) => NumberKey::Int(i),
                Err(_) => NumberKey::Exact(integer.into()),
            }
        }
        _ => NumberKey::Exact(format!("{sign}{significant}e{exp}").into()),
    }
}

impl PartialEq for RequestId {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for RequestId {}

impl std::hash::Hash for RequestId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.key().hash(state);
    }
}

impl PartialOrd for RequestId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for RequestId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

impl<'de> Deserialize<'de> for RequestId {
    /// Reads the id's JSON text, so that a large number keeps every digit (serde_json only).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(d)?;
        RequestId::from_json(raw.get())
            .ok_or_else(|| de::Error::custom("a request id must be a string or a number"))
    }
}

impl Serialize for RequestId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            RequestId::Int(i) => s.serialize_i64(*i),
            RequestId::Str(v) => s.serialize_str(v),
            // The exact text as received, digit for digit.
            RequestId::Num(n) => match RawValue::from_string(n.text.to_string()) {
                Ok(raw) => raw.serialize(s),
                Err(_) => s.serialize_str(&n.text),
            },
        }
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestId::Int(i) => write!(f, "{i}"),
            RequestId::Str(v) => write!(f, "{}", serde_json::Value::from(&**v)),
            RequestId::Num(n) => f.write_str(&n.text),
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

/// The members of a JSON-RPC message; every other member is ignored.
const MEMBERS: [&str; 6] = ["jsonrpc", "id", "method", "params", "result", "error"];

/// The top-level members of a message. A member present as `null` is `Some("null")`, so
/// "present but null" differs from "absent". A repeated member, or one spelled like a member
/// but for case (`"Method"`, `"paramſ"`: see [`super::names`]), is an error: peers would not
/// agree on what the message says.
#[derive(Default)]
struct Envelope<'a> {
    jsonrpc: Option<Cow<'a, str>>,
    id: Option<&'a RawValue>,
    method: Option<Cow<'a, str>>,
    params: Option<&'a RawValue>,
    result: Option<&'a RawValue>,
    error: Option<&'a RawValue>,
}

/// A string borrowed from the message when it has no escapes (`Cow`'s own impl always
/// copies); for hand-written visitors that read member names and string values.
#[derive(Deserialize)]
pub(crate) struct Text<'a>(#[serde(borrow)] pub(crate) Cow<'a, str>);

impl<'de> Deserialize<'de> for Envelope<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = Envelope<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON-RPC message object")
            }
            fn visit_map<A: de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Envelope<'de>, A::Error> {
                fn once<T, E: de::Error>(
                    slot: &mut Option<T>,
                    value: T,
                    key: &str,
                ) -> Result<(), E> {
                    if slot.replace(value).is_some() {
                        return Err(E::custom(format_args!("duplicate field `{key}`")));
                    }
                    Ok(())
                }
                let mut env = Envelope::default();
                while let Some(Text(key)) = map.next_key()? {
                    match &*key {
                        "jsonrpc" => once(&mut env.jsonrpc, map.next_value::<Text>()?.0, &key)?,
                        "id" => once(&mut env.id, map.next_value()?, &key)?,
                        "method" => once(&mut env.method, map.next_value::<Text>()?.0, &key)?,
                        "params" => once(&mut env.params, map.next_value()?, &key)?,
                        "result" => once(&mut env.result, map.next_value()?, &key)?,
                        "error" => once(&mut env.error, map.next_value()?, &key)?,
                        other => {
                            if let Some(member) = super::names::near_miss(other, &MEMBERS) {
                                return Err(de::Error::custom(format_args!(
                                    "member {other:?} differs from `{member}` only in case or after a NUL; servers that match names case-insensitively, or keep them as C strings, would read it as `{member}`"
                                )));
                            }
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(env)
            }
        }
        d.deserialize_map(V)
    }
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

/// A server's message that is a notification but for an `"id": null` member (a JSON-RPC 1.0
/// habit: there, a notification is a request whose id is null). [`parse`] refuses it, as a
/// request whose id is null; the Python SDK's client delivers it as the notification it is,
/// so a server message of this shape is read as one. Only a single object with
/// `"jsonrpc": "2.0"`, a `method`, no `result` or `error`, and an id that is `null` itself.
/// Never for the client's messages: there a null id is refused (and a `tools/call` recorded).
pub fn null_id_notification(line: &[u8]) -> Option<Message<'_>> {
    let env: Envelope<'_> = serde_json::from_slice(line).ok()?;
    if env.jsonrpc.as_deref() != Some("2.0")
        || env.id.map(RawValue::get) != Some("null")
        || env.result.is_some()
        || env.error.is_some()
        || env
            .params
            .is_some_and(|p| !matches!(p.get().as_bytes().first(), Some(b'{' | b'[')))
    {
        return None;
    }
    Some(Message::Notification {
        method: env.method?,
        params: env.params,
    })
}

/// A server's error answer with no `id` member at all, which JSON-RPC 2.0 §5 does not allow
/// ("If there was an error in detecting the id in the Request object (e.g. Parse error/Invalid
/// Request), it MUST be Null") but servers built on rmcp write when they cannot read a
/// request's id (an integer past `i64`): `{"jsonrpc":"2.0","error":{…}}`. [`parse`] refuses
/// it ("a response needs an `id`"); read as the `"id": null` answer it stands for, so that
/// it reaches the client as it would directly (helper-114 F2: the proxy dropped it). Only a
/// single object with `"jsonrpc": "2.0"`, an `error` object, and no `id`, `method` or
/// `result`. Never for the client's messages.
pub fn idless_error(line: &[u8]) -> Option<Message<'_>> {
    let env: Envelope<'_> = serde_json::from_slice(line).ok()?;
    let error = env.error?;
    if env.jsonrpc.as_deref() != Some("2.0")
        || env.id.is_some()
        || env.method.is_some()
        || env.result.is_some()
        || env.params.is_some()
        || error.get().as_bytes().first() != Some(&b'{')
    {
        return None;
    }
    Some(Message::Response {
        id: None,
        body: ResponseBody::Error(error),
    })
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
            RequestId::from_json(raw.get())
                .ok_or_else(|| fail("`id` must be a string or a number", None))?,
        ),
    };
    if env.jsonrpc.as_deref() != Some("2.0") {
        return Err(fail("`jsonrpc` must be \"2.0\"", id));
    }
    // `"params": null` is read as no params, as the official SDKs' servers read it (helper-99
    // F2: clients send it; refusing it was a difference from talking to the server directly).
    // The line goes on as it came; a `tools/call` without params names no tool and is
    // refused as such.
    let env = Envelope {
        params: env.params.filter(|p| p.get().trim() != "null"),
        ..env
    };
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

/// The JSON of a message the proxy rewrote (a masked result, error or params), without the
/// line ending: `jsonrpc`, then `id` written exactly as received (never through a `Value`,
/// which would round a large number id through `f64`), `method`, and `members` in order.
pub fn rebuilt_message(
    id: Option<&RequestId>,
    method: Option<&str>,
    members: &[(&str, &serde_json::Value)],
) -> String {
    let mut out = String::from("{\"jsonrpc\":\"2.0\"");
    let mut member = |name: &str, json: Result<String, serde_json::Error>| {
        out.push_str(",\"");
        out.push_str(name);
        out.push_str("\":");
        out.push_str(&json.unwrap_or_else(|_| "null".into()));
    };
    if let Some(id) = id {
        member("id", serde_json::to_string(id));
    }
    if let Some(method) = method {
        member("method", serde_json::to_string(method));
    }
    for (name, value) in members {
        member(name, serde_json::to_string(value));
    }
    out.push('}');
    out
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

/// A `notifications/cancelled` line for request `id` (MCP "Utilities: Cancellation"), the id
/// written exactly as the request carried it: a `json!` of it would turn a large number id
/// into a float that names no request.
pub fn cancelled(id: &RequestId, reason: &str) -> Bytes {
    #[derive(Serialize)]
    struct Params<'a> {
        #[serde(rename = "requestId")]
        request_id: &'a RequestId,
        reason: &'a str,
    }
    #[derive(Serialize)]
    struct Notification<'a> {
        jsonrpc: &'static str,
        method: &'static str,
        params: Params<'a>,
    }
    let mut out = serde_json::to_vec(&Notification {
        jsonrpc: "2.0",
        method: "notifications/cancelled",
        params: Params {
            request_id: id,
            reason,
        },
    })
    .unwrap_or_default();
    out.push(b'\n');
    Bytes::from(out)
}

#[cfg(test)]
mod fraction_tests {
    use super::RequestId;

    #[test]
    fn ids_not_written_as_integers_are_told_from_integers() {
        for (text, not_integer) in [
            ("1.5", true),
            ("25e-1", true),
            ("-0.001", true),
            ("1e400", true),
            ("-1E400", true),
            ("1.0", false),
            ("2e3", false),
            ("1E0", false),
            ("1", false),
            ("-0", false),
            ("18446744073709551617", false),
            ("\"1.5\"", false),
        ] {
            let id = RequestId::from_json(text).unwrap();
            assert_eq!(id.is_not_integer(), not_integer, "{text}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_params_are_no_params_and_other_scalars_are_refused() {
        for line in [
            &br#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":null}"#[..],
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params" : null }"#,
        ] {
            match parse(line) {
                Ok(Parsed::Single(Message::Request { params, .. })) => assert!(params.is_none()),
                other => panic!("{other:?}"),
            }
        }
        match parse(br#"{"jsonrpc":"2.0","method":"notifications/initialized","params":null}"#) {
            Ok(Parsed::Single(Message::Notification { params, .. })) => assert!(params.is_none()),
            other => panic!("{other:?}"),
        }
        for scalar in ["5", "\"x\"", "true"] {
            let line = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{scalar}}}"#);
            assert!(parse(line.as_bytes()).is_err(), "{scalar}");
        }
    }

    #[test]
    fn ids_an_i64_reader_cannot_read_and_errors_without_an_id() {
        let unreadable = |t: &str| RequestId::from_json(t).unwrap().unreadable_as_i64();
        for t in [
            "12345678901234567890",
            "-98765432109876543210",
            "1.5",
            "1e400",
            // Float forms from 2^53 on (helper-123 I2).
            "1e16",
            "9007199254740992.0",
        ] {
            assert!(unreadable(t), "{t}");
        }
        // Integers written otherwise are read (rmcp reads `1e2` as 100; helper-121 F1).
        for t in ["7", "1e2", "1.0", "-0", "9223372036854775807", "\"x\""] {
            assert!(!unreadable(t), "{t}");
        }
        let idless = br#"{"jsonrpc":"2.0","error":{"code":-32600,"message":"Invalid request"}}"#;
        assert!(matches!(
            idless_error(idless),
            Some(Message::Response {
                id: None,
                body: ResponseBody::Error(_)
            })
        ));
        for not in [
            &br#"{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"m"}}"#[..],
            br#"{"jsonrpc":"2.0","error":"text"}"#,
            br#"{"error":{"code":1,"message":"m"}}"#,
            br#"{"jsonrpc":"2.0","result":{},"error":{"code":1,"message":"m"}}"#,
        ] {
            assert!(
                idless_error(not).is_none(),
                "{}",
                String::from_utf8_lossy(not)
            );
        }
    }

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
    fn number_ids_compare_by_exact_value_and_keep_their_text() {
        let id = |t: &str| RequestId::from_json(t).unwrap_or_else(|| panic!("{t}"));
        // Past 2^53 and past u64: floats would merge these.
        assert_ne!(id("18446744073709551616"), id("18446744073709551617"));
        assert_ne!(id("9007199254740993"), id("9007199254740992"));
        // One value, written several ways, is one id.
        for same in ["1.0", "1e0", "10e-1", "0.1e1", "1E+0"] {
            assert_eq!(id(same), RequestId::Int(1), "{same}");
        }
        assert_eq!(id("-0"), id("0"));
        assert_eq!(id("1.50"), id("15e-1"));
        assert_eq!(id("184467440737095516160e-1"), id("18446744073709551616"));
        assert_ne!(id("1.5"), id("1.05"));
        assert_ne!(id("\"1\""), id("1"));
        // An exponent too large to write out is kept short, and still exact.
        assert_ne!(id("1e999999"), id("1e999998"));
        assert_eq!(id("1e999999"), id("10e999998"));
        // Echoed and stored as sent.
        for text in ["18446744073709551617", "1.0", "-2.5e-3", "1e999999", "-0"] {
            assert_eq!(id(text).to_string(), text);
            assert_eq!(serde_json::to_string(&id(text)).unwrap(), text);
            let back: RequestId = serde_json::from_str(text).unwrap();
            assert_eq!(back.to_string(), text);
        }
        assert_eq!(RequestId::from_json("true"), None);
        assert_eq!(RequestId::from_json("{}"), None);
        assert_eq!(RequestId::from_json("01"), None);
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
    fn a_response_with_both_members_is_invalid_even_with_one_null() {
        // JSON-RPC 1.0 writes `"error":null` beside a result: the Python SDK reads the
        // result, the TypeScript SDK drops the message. Forwarded, the trail would say
        // `success` while a TypeScript client waits on: refused instead (fail closed).
        for both in [
            r#"{"jsonrpc":"2.0","id":1,"result":{},"error":{"code":1,"message":"m"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{"content":[]},"error":null}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":null,"error":{"code":1,"message":"m"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":null,"error":null}"#,
        ] {
            let err = parse(both.as_bytes()).map(|_| ()).unwrap_err();
            assert!(err.to_string().contains("both"), "{both}: {err}");
        }
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
    fn a_cancellation_names_a_large_id_digit_for_digit() {
        let line = br#"{"jsonrpc":"2.0","id":18446744073709551617,"method":"x"}"#;
        let Ok(Parsed::Single(Message::Request { id, .. })) = parse(line) else {
            panic!("a request");
        };
        assert_eq!(
            &cancelled(&id, "gone")[..],
            br#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":18446744073709551617,"reason":"gone"}}
"#
        );
    }

    #[test]
    fn a_rebuilt_message_keeps_a_large_id_digit_for_digit() {
        let line = br#"{"jsonrpc":"2.0","id":18446744073709551617,"method":"x"}"#;
        let Ok(Parsed::Single(Message::Request { id, .. })) = parse(line) else {
            panic!("a request");
        };
        let text = rebuilt_message(
            Some(&id),
            Some("notifications/message"),
            &[("params", &serde_json::json!({"level": "info"}))],
        );
        assert_eq!(
            text,
            r#"{"jsonrpc":"2.0","id":18446744073709551617,"method":"notifications/message","params":{"level":"info"}}"#
        );
    }

    /// What `Number(id)` (TypeScript SDK) and `int(id)` (Python SDK) make of a string id.
    #[test]
    fn string_ids_read_as_the_official_sdks_read_them() {
        let read = |text: &str| RequestId::Str(text.into()).sdk_number();
        for (text, n) in [
            ("7", 7.0),
            (" 7\n", 7.0),
            ("007", 7.0),
            ("+7", 7.0),
            ("-7", -7.0),
            ("7.0", 7.0),
            ("7e0", 7.0),
            (".5", 0.5),
            ("0x1f", 31.0),
            ("0b11", 3.0),
            ("", 0.0),
            ("1_000", 1000.0),
            ("18446744073709551617", 18446744073709551617.0),
        ] {
            assert_eq!(read(text), Some(n), "{text:?}");
        }
        for text in [
            "abc", "7a", "0x", "1__0", "_1", "1_", "nan", "inf", "NaN", "-0x1", "1e", ".",
        ] {
            assert_eq!(read(text), None, "{text:?}");
        }
        assert_eq!(read("-Infinity"), Some(f64::NEG_INFINITY));
        // Numbers as doubles, as before.
        assert_eq!(RequestId::Int(7).sdk_number(), Some(7.0));
        let waiting = [RequestId::Int(7), RequestId::Str("x".into())];
        assert_eq!(
            twin(waiting.iter(), &RequestId::Str("7".into())),
            Some(RequestId::Int(7))
        );
        // Two candidates: no reading is trusted.
        let both = [RequestId::Int(7), RequestId::Str("07".into())];
        assert_eq!(twin(both.iter(), &RequestId::Str("7".into())), None);
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
