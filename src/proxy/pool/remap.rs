//! Where a line's ids sit, and the line with some of them replaced: the byte-level half of
//! remapping ids between the clients sharing a child and the child itself.
//!
//! Only the values that name a request are touched (the top-level `id`, `params.requestId`
//! of `notifications/cancelled`, `params._meta.progressToken` of a request,
//! `params.progressToken` of `notifications/progress`, and the subscription id
//! `_meta["io.modelcontextprotocol/subscriptionId"]` in a notification's `params` and in a
//! response's `result`); every other byte of the line is forwarded as it came (convention 1:
//! forward bytes, inspect views). A line whose top level holds a member twice is not
//! understood, and so never rewritten: the pool drops it. A `_meta` holding one of the
//! members read here twice is not read at all (neither its token nor its subscription id).
//!
//! The subscription id (MCP 2026-07-28 "Subscriptions"): the server's acknowledgement of a
//! `subscriptions/listen`, every notification it sends for it and the listen's final result
//! carry in `_meta` the JSON-RPC id of the listen request, and clients MUST correlate by it;
//! on a shared child that id is the pool's, so it is restored as the top-level id is.

use std::borrow::Cow;
use std::ops::Range;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

/// What a line is, for the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A method and an id.
    Request,
    /// A method without an id (or with a null one).
    Notification,
    /// A result or an error, without a method.
    Response,
}

/// The parts of one JSON-RPC message the pool reads or rewrites, as byte ranges of its line.
#[derive(Debug, Clone)]
pub(crate) struct Spots {
    pub(crate) kind: Kind,
    pub(crate) method: Option<String>,
    /// The top-level `id` value (absent or null: `None`).
    pub(crate) id: Option<Range<usize>>,
    /// `params._meta.progressToken` (a request's token, MCP "Utilities: Progress").
    pub(crate) meta_token: Option<Range<usize>>,
    /// `params.progressToken` (a `notifications/progress`).
    pub(crate) token: Option<Range<usize>>,
    /// `params.requestId` (a `notifications/cancelled`, MCP "Utilities: Cancellation").
    pub(crate) request_id: Option<Range<usize>>,
    /// `_meta["io.modelcontextprotocol/subscriptionId"]` of a notification's `params` or a
    /// response's `result` (MCP 2026-07-28 "Subscriptions": the id of the
    /// `subscriptions/listen` request the message belongs to); never read in a request.
    pub(crate) subscription: Option<Range<usize>>,
}

#[derive(Deserialize)]
struct Top<'a> {
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    method: Option<Cow<'a, str>>,
    #[serde(borrow)]
    params: Option<&'a RawValue>,
    #[serde(borrow)]
    result: Option<&'a RawValue>,
    #[serde(borrow)]
    error: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Params<'a> {
    #[serde(borrow, rename = "_meta")]
    meta: Option<&'a RawValue>,
    #[serde(borrow, rename = "progressToken")]
    token: Option<&'a RawValue>,
    #[serde(borrow, rename = "requestId")]
    request_id: Option<&'a RawValue>,
}

/// The part of the `_meta` key of a subscription id (MCP 2026-07-28 "Subscriptions") that no
/// JSON writer escapes (some write `/` as `\/`): a result without it holds no such key.
const SUBSCRIPTION_ID: &[u8] = b"subscriptionId";

/// A response's `result`, for its `_meta`.
#[derive(Deserialize)]
struct Outcome<'a> {
    #[serde(borrow, rename = "_meta")]
    meta: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Meta<'a> {
    #[serde(borrow, rename = "progressToken")]
    token: Option<&'a RawValue>,
    #[serde(borrow, rename = "io.modelcontextprotocol/subscriptionId")]
    subscription: Option<&'a RawValue>,
}

/// `part`'s place in `line` (`part` borrows from it).
fn span(line: &[u8], part: &str) -> Range<usize> {
    let start = (part.as_ptr() as usize).saturating_sub(line.as_ptr() as usize);
    debug_assert!(start + part.len() <= line.len());
    start..start + part.len()
}

/// An object's members, or `None` when the text is not an object (a struct may also be read
/// from an array by position: that must not count).
fn object<'a, T: Deserialize<'a>>(text: &'a str) -> Option<T> {
    if !text.trim_start().starts_with('{') {
        return None;
    }
    serde_json::from_str(text).ok()
}

/// Reads where the members the pool cares about sit; `None` for anything but one JSON-RPC
/// object whose top-level members are each given once (a batch, a repeated key, no JSON).
pub(crate) fn spots(line: &[u8]) -> Option<Spots> {
    let text = std::str::from_utf8(line).ok()?;
    let top: Top<'_> = object(text)?;
    let kind = match (&top.method, &top.id) {
        (Some(_), Some(_)) => Kind::Request,
        (Some(_), None) => Kind::Notification,
        (None, _) if top.result.is_some() || top.error.is_some() => Kind::Response,
        (None, _) => return None,
    };
    let id = top
        .id
        .filter(|v| v.get() != "null")
        .map(|v| span(line, v.get()));
    let params: Option<Params<'_>> = top.params.and_then(|p| object(p.get()));
    let meta: Option<Meta<'_>> = params
        .as_ref()
        .and_then(|p| p.meta)
        .and_then(|m| object(m.get()));
    let subscription = match kind {
        Kind::Request => None,
        Kind::Notification => meta.as_ref().and_then(|m| m.subscription),
        // Only a result that holds the key is read again for its `_meta`: every answer of a
        // shared child passes here, and nearly none is a listen's.
        Kind::Response => top
            .result
            .filter(|r| memchr::memmem::find(r.get().as_bytes(), SUBSCRIPTION_ID).is_some())
            .and_then(|r| object::<Outcome<'_>>(r.get()))
            .and_then(|r| r.meta)
            .and_then(|m| object::<Meta<'_>>(m.get()))
            .and_then(|m| m.subscription),
    }
    .map(|v| span(line, v.get()));
    Some(Spots {
        kind,
        method: top.method.map(Cow::into_owned),
        id: if kind == Kind::Notification { None } else { id },
        meta_token: meta.and_then(|m| m.token).map(|t| span(line, t.get())),
        token: params
            .as_ref()
            .and_then(|p| p.token)
            .map(|t| span(line, t.get())),
        request_id: params
            .as_ref()
            .and_then(|p| p.request_id)
            .map(|r| span(line, r.get())),
        subscription,
    })
}

/// The text of `range` in `line`.
pub(crate) fn text(line: &[u8], range: &Range<usize>) -> Box<str> {
    String::from_utf8_lossy(&line[range.clone()]).into()
}

/// `line` with each range replaced by its text (ranges do not overlap), newline-terminated.
pub(crate) fn splice(line: &[u8], mut edits: Vec<(Range<usize>, &str)>) -> Bytes {
    edits.sort_by_key(|(r, _)| r.start);
    let mut out = Vec::with_capacity(line.len() + 32);
    let mut at = 0;
    for (r, with) in edits {
        out.extend_from_slice(&line[at..r.start]);
        out.extend_from_slice(with.as_bytes());
        at = r.end;
    }
    out.extend_from_slice(&line[at..]);
    out.push(b'\n');
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_ids_of_a_request_and_keeps_every_other_byte() {
        let line = br#"{"jsonrpc":"2.0", "id" : 1.0,"method":"tools/call","params":{"name":"echo","_meta":{"progressToken":"t\u0031"}}}"#;
        let s = spots(line).unwrap();
        assert_eq!(s.kind, Kind::Request);
        assert_eq!(&*text(line, s.id.as_ref().unwrap()), "1.0");
        assert_eq!(&*text(line, s.meta_token.as_ref().unwrap()), r#""t\u0031""#);
        let out = splice(
            line,
            vec![(s.id.unwrap(), "7"), (s.meta_token.unwrap(), "7")],
        );
        assert_eq!(
            &out[..],
            &br#"{"jsonrpc":"2.0", "id" : 7,"method":"tools/call","params":{"name":"echo","_meta":{"progressToken":7}}}
"#[..]
        );
    }

    #[test]
    fn reads_cancellations_progress_and_responses() {
        let c = br#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"1","reason":"x"}}"#;
        let s = spots(c).unwrap();
        assert_eq!(s.kind, Kind::Notification);
        assert_eq!(&*text(c, s.request_id.as_ref().unwrap()), r#""1""#);
        let p = br#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":12,"progress":1}}"#;
        assert_eq!(&*text(p, spots(p).unwrap().token.as_ref().unwrap()), "12");
        let r = br#"{"jsonrpc":"2.0","id":12,"result":{}}"#;
        let s = spots(r).unwrap();
        assert_eq!(
            (s.kind, &*text(r, s.id.as_ref().unwrap())),
            (Kind::Response, "12")
        );
        let e = br#"{"jsonrpc":"2.0","id":null,"error":{"code":1,"message":"m"}}"#;
        assert!(spots(e).unwrap().id.is_none());
    }

    #[test]
    fn reads_the_subscription_id_of_a_notification_and_of_a_result_never_of_a_request() {
        let ack = br#"{"jsonrpc":"2.0","method":"notifications/subscriptions/acknowledged","params":{"_meta":{"io.modelcontextprotocol/subscriptionId": 3},"notifications":{}}}"#;
        let s = spots(ack).unwrap();
        assert_eq!(&*text(ack, s.subscription.as_ref().unwrap()), "3");
        let out = splice(ack, vec![(s.subscription.unwrap(), r#""l\u002d1""#)]);
        assert_eq!(
            &out[..],
            &br#"{"jsonrpc":"2.0","method":"notifications/subscriptions/acknowledged","params":{"_meta":{"io.modelcontextprotocol/subscriptionId": "l\u002d1"},"notifications":{}}}
"#[..]
        );
        let end = br#"{"jsonrpc":"2.0","id":3,"result":{"resultType":"complete","_meta":{"io.modelcontextprotocol/subscriptionId":3}}}"#;
        let s = spots(end).unwrap();
        assert_eq!(&*text(end, s.subscription.as_ref().unwrap()), "3");
        assert_ne!(s.subscription, s.id);
        // Only where the spec puts it: not in a request, not in an error, not in a
        // notification's params outside `_meta`, not in a `_meta` holding it twice.
        for line in [
            &br#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"_meta":{"io.modelcontextprotocol/subscriptionId":1}}}"#[..],
            br#"{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"m","data":{"_meta":{"io.modelcontextprotocol/subscriptionId":1}}}}"#,
            br#"{"jsonrpc":"2.0","method":"x","params":{"io.modelcontextprotocol/subscriptionId":1}}"#,
            br#"{"jsonrpc":"2.0","method":"x","params":{"_meta":{"io.modelcontextprotocol/subscriptionId":1,"io.modelcontextprotocol/subscriptionId":2}}}"#,
        ] {
            assert!(spots(line).unwrap().subscription.is_none(), "{line:?}");
        }
    }

    #[test]
    fn refuses_what_it_cannot_read_unambiguously() {
        assert!(spots(br#"{"id":1,"id":2,"method":"x"}"#).is_none());
        assert!(spots(br#"{"i\u0064":1,"id":2,"method":"x"}"#).is_none());
        assert!(spots(br#"[{"id":1,"method":"x"}]"#).is_none());
        assert!(spots(b"not json").is_none());
        assert!(spots(br#"{"jsonrpc":"2.0"}"#).is_none());
        // Params given by position are not an object: nothing in them is read.
        let s = spots(br#"{"id":1,"method":"x","params":[{"progressToken":1}]}"#).unwrap();
        assert!(s.meta_token.is_none() && s.token.is_none());
    }
}
