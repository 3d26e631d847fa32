//! Just enough of MCP to classify and audit: lenient borrowed views of the few params and
//! results the proxy reads. Anything not named here passes through unread.
//!
//! These are views, not rmcp's typed model: they borrow the raw `arguments` instead of
//! building a map, and a field the proxy does not need can never make a message unreadable.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::jsonrpc::RequestId;
use crate::jsonrpc::message::Text;

/// `_meta` key carrying the protocol revision of a 2026-07-28 request.
pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// `_meta` key carrying the client implementation of a 2026-07-28 request.
pub const META_CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";
/// `_meta` key carrying the server implementation in 2026-07-28 results.
pub const META_SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";

/// The two protocol eras in use; the proxy serves both and records which one each call used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum Era {
    /// Revisions 2024-11-05 … 2025-11-25: `initialize` handshake, sessions.
    #[serde(rename = "2025")]
    V2025,
    /// Revision 2026-07-28 and later: no `initialize`, protocol version in each request's `_meta`.
    #[serde(rename = "2026")]
    V2026,
    /// Not yet known (no handshake and no `_meta` seen).
    #[default]
    #[serde(rename = "unknown")]
    Unknown,
}

impl Era {
    /// The era a protocol revision string belongs to.
    pub fn of_version(version: &str) -> Era {
        let is_date = version.len() == 10
            && version.bytes().enumerate().all(|(i, b)| {
                if i == 4 || i == 7 {
                    b == b'-'
                } else {
                    b.is_ascii_digit()
                }
            });
        if !is_date {
            Era::Unknown
        } else if version >= "2026-07-28" {
            Era::V2026
        } else {
            Era::V2025
        }
    }
}

/// `clientInfo` / `serverInfo`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Implementation {
    /// Implementation name.
    pub name: String,
    /// Implementation version.
    #[serde(default)]
    pub version: Option<String>,
}

impl Implementation {
    /// `name/version`, the form recorded as user agent and tool version.
    pub fn agent(&self) -> String {
        match &self.version {
            Some(v) => format!("{}/{}", self.name, v),
            None => self.name.clone(),
        }
    }
}

/// The `_meta` of a request, as far as auditing cares.
#[derive(Debug, Default, Deserialize)]
pub struct RequestMeta<'a> {
    /// Protocol revision (2026-07-28 era).
    #[serde(rename = "io.modelcontextprotocol/protocolVersion", borrow, default)]
    pub protocol_version: Option<Cow<'a, str>>,
    /// Client implementation (2026-07-28 era).
    #[serde(rename = "io.modelcontextprotocol/clientInfo", default)]
    pub client_info: Option<Implementation>,
    /// Client capabilities (2026-07-28 era).
    #[serde(rename = "io.modelcontextprotocol/clientCapabilities", default)]
    pub client_capabilities: Option<ClientCapabilitiesView>,
    /// `progressToken`: the token of the request's `notifications/progress` (MCP
    /// "Utilities: Progress"), raw: one of another type is ignored, not a reason to refuse.
    #[serde(rename = "progressToken", borrow, default)]
    pub progress_token: Option<&'a RawValue>,
}

/// `params` of `tools/call`.
///
/// A repeated member, or a member spelled like one of these but for case (`"Name"`,
/// `"ARGUMENTS"`: see [`crate::jsonrpc::names`]), makes the params unreadable: a server that
/// matches names case-insensitively would run another tool, or other arguments, than the
/// ones the policy judged.
#[derive(Debug)]
pub struct CallToolParams<'a> {
    /// The tool name.
    pub name: Cow<'a, str>,
    /// The arguments, raw.
    pub arguments: Option<&'a RawValue>,
    /// Request metadata.
    pub meta: Option<RequestMeta<'a>>,
    /// MRTR retry: the opaque state echoed from the `input_required` result.
    pub request_state: Option<Cow<'a, str>>,
    /// MRTR retry: answers keyed like the `inputRequests` they answer.
    pub input_responses: Option<std::collections::BTreeMap<Cow<'a, str>, &'a RawValue>>,
}

/// The members of `tools/call` params the MCP revisions define.
const CALL_MEMBERS: [&str; 6] = [
    "name",
    "arguments",
    "_meta",
    "requestState",
    "inputResponses",
    "task",
];

impl<'de> Deserialize<'de> for CallToolParams<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{Error, IgnoredAny, MapAccess, Visitor};
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CallToolParams<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("tools/call params (an object)")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                fn once<E: Error>(seen: &mut bool, key: &str) -> Result<(), E> {
                    if std::mem::replace(seen, true) {
                        return Err(E::custom(format_args!("duplicate field `{key}`")));
                    }
                    Ok(())
                }
                let mut seen = [false; 5];
                let mut name = None;
                let mut p = CallToolParams {
                    name: Cow::Borrowed(""),
                    arguments: None,
                    meta: None,
                    request_state: None,
                    input_responses: None,
                };
                while let Some(Text(key)) = map.next_key()? {
                    match &*key {
                        "name" => {
                            once(&mut seen[0], &key)?;
                            name = Some(map.next_value::<Text>()?.0);
                        }
                        "arguments" => {
                            once(&mut seen[1], &key)?;
                            p.arguments = map.next_value()?;
                        }
                        "_meta" => {
                            once(&mut seen[2], &key)?;
                            p.meta = map.next_value()?;
                        }
                        "requestState" => {
                            once(&mut seen[3], &key)?;
                            p.request_state = map.next_value::<Option<Text>>()?.map(|t| t.0);
                        }
                        "inputResponses" => {
                            once(&mut seen[4], &key)?;
                            p.input_responses = map.next_value()?;
                        }
                        other => {
                            if let Some(member) =
                                crate::jsonrpc::names::near_miss(other, &CALL_MEMBERS)
                            {
                                return Err(A::Error::custom(format_args!(
                                    "member {other:?} differs from `{member}` only in case or after a NUL; servers that match names case-insensitively, or keep them as C strings, would read it as `{member}`"
                                )));
                            }
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                p.name = name.ok_or_else(|| A::Error::missing_field("name"))?;
                Ok(p)
            }
        }
        d.deserialize_map(V)
    }
}

/// Any request's `params`, read only for its `_meta`.
#[derive(Debug, Default, Deserialize)]
pub struct AnyParams<'a> {
    /// Request metadata.
    #[serde(rename = "_meta", borrow, default)]
    pub meta: Option<RequestMeta<'a>>,
}

/// `params` of `initialize` (2025 era).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InitializeParams<'a> {
    /// The revision the client asks for.
    #[serde(borrow, default)]
    pub protocol_version: Option<Cow<'a, str>>,
    /// The client implementation.
    #[serde(default)]
    pub client_info: Option<Implementation>,
    /// What the client can do.
    #[serde(default)]
    pub capabilities: Option<ClientCapabilitiesView>,
}

/// The client capabilities the proxy needs to know about.
#[derive(Debug, Default, Deserialize)]
pub struct ClientCapabilitiesView {
    /// Present when the client can answer `elicitation/create` (a person can be asked).
    #[serde(default)]
    elicitation: Option<serde_json::Value>,
}

impl ClientCapabilitiesView {
    /// Whether the client can answer a form-mode `elicitation/create` (the proxy's
    /// confirmations are forms). MCP 2025-11-25 "Elicitation: Capabilities": `{"form": {}}`,
    /// `{"url": {}}` or both; an empty object means form mode, as before modes existed. A
    /// client that declared URL mode only cannot show a form. A value that is not an object
    /// is read as the older form (the capability is declared).
    pub fn elicits_form(&self) -> bool {
        match &self.elicitation {
            None => false,
            Some(serde_json::Value::Object(modes)) => {
                modes.contains_key("form") || !modes.contains_key("url")
            }
            Some(_) => true,
        }
    }
}

/// The result of `elicitation/create`, as far as a confirmation cares.
#[derive(Debug, Deserialize)]
pub struct ElicitResultView {
    /// `accept`, `decline` or `cancel`.
    #[serde(default)]
    pub action: Option<String>,
    /// The form the person filled in.
    #[serde(default)]
    pub content: Option<serde_json::Map<String, serde_json::Value>>,
}

/// The `_meta` of a result, as far as auditing cares.
#[derive(Debug, Default, Deserialize)]
pub struct ResultMeta {
    /// Server implementation (2026-07-28 era).
    #[serde(rename = "io.modelcontextprotocol/serverInfo", default)]
    pub server_info: Option<Implementation>,
}

/// The result of `initialize` (2025 era) or `server/discover` (2026-07-28 era).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerIdentity<'a> {
    /// The negotiated revision (`initialize`).
    #[serde(borrow, default)]
    pub protocol_version: Option<Cow<'a, str>>,
    /// The server implementation (`initialize`).
    #[serde(default)]
    pub server_info: Option<Implementation>,
    /// Result metadata (`server/discover` carries the server implementation here).
    #[serde(rename = "_meta", default)]
    pub meta: Option<ResultMeta>,
}

impl ServerIdentity<'_> {
    /// The server implementation, wherever this revision puts it.
    pub fn server(&self) -> Option<&Implementation> {
        self.server_info
            .as_ref()
            .or_else(|| self.meta.as_ref().and_then(|m| m.server_info.as_ref()))
    }
}

/// The result of `tools/call`, read for its outcome and shape only.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallToolResultView<'a> {
    /// `"complete"` (or absent), `"input_required"` (MRTR) or `"task"`.
    #[serde(borrow, default)]
    pub result_type: Option<Cow<'a, str>>,
    /// Tool-level failure.
    #[serde(default)]
    pub is_error: Option<bool>,
    /// Content blocks, read for their type (and text when `isError`).
    #[serde(borrow, default)]
    pub content: Vec<ContentView<'a>>,
    /// MRTR: what the server asks the client for.
    #[serde(borrow, default)]
    pub input_requests: Option<std::collections::BTreeMap<Cow<'a, str>, &'a RawValue>>,
    /// MRTR: opaque state the retry will echo.
    #[serde(borrow, default)]
    pub request_state: Option<Cow<'a, str>>,
    /// Result metadata.
    #[serde(rename = "_meta", default)]
    pub meta: Option<ResultMeta>,
    /// 2025-11-25 Tasks: the call became a task (`CreateTaskResult`); its outcome comes later,
    /// from `tasks/result`.
    #[serde(borrow, default)]
    pub task: Option<&'a RawValue>,
}

/// One content block's type (and text).
#[derive(Debug, Deserialize)]
pub struct ContentView<'a> {
    /// `text`, `image`, `audio`, `resource_link`, `resource`, …
    #[serde(rename = "type", borrow, default)]
    pub kind: Cow<'a, str>,
    /// The text of a text block.
    #[serde(borrow, default)]
    pub text: Option<Cow<'a, str>>,
}

/// A JSON-RPC error object.
#[derive(Debug, Deserialize)]
pub struct ErrorView<'a> {
    /// Error code.
    #[serde(default)]
    pub code: Option<i64>,
    /// Error message.
    #[serde(borrow, default)]
    pub message: Option<Cow<'a, str>>,
}

/// `params` of `notifications/cancelled` (MCP "Utilities: Cancellation").
#[derive(Debug)]
pub struct CancelledParams<'a> {
    /// The request being cancelled.
    pub request_id: RequestId,
    /// Why, if the sender said (a `reason` that is not a string is left unread).
    pub reason: Option<Cow<'a, str>>,
}

/// The members of `notifications/cancelled` params the MCP revisions define.
const CANCELLED_MEMBERS: [&str; 2] = ["requestId", "reason"];

impl<'a> CancelledParams<'a> {
    /// Reads the params of a `notifications/cancelled` as every server would read them.
    ///
    /// `Ok(None)`: they name no request (no params or `null`, or no `requestId` or `null`:
    /// since MCP 2025-11-25 `requestId` is optional, tasks being cancelled with
    /// `tasks/cancel`; the proxy forwards no request with a `null` id), so the
    /// notification cancels nothing. `Err` (what is wrong): they could be read more than one
    /// way, or not at all: params that are not an object, `requestId` twice or spelled with
    /// another case (`RequestId`), or an id that is neither a string nor a number. Such a
    /// notification must not reach the server: one that reads it its own way could cancel a
    /// call the trail records as running on.
    pub fn read(params: Option<&'a RawValue>) -> Result<Option<Self>, String> {
        use serde::de::{Error, IgnoredAny, MapAccess, Visitor};
        struct Members<'a> {
            request_id: Option<&'a RawValue>,
            reason: Option<&'a RawValue>,
        }
        impl<'de> Deserialize<'de> for Members<'de> {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = Members<'de>;
                    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                        f.write_str("notifications/cancelled params (an object)")
                    }
                    fn visit_map<A: MapAccess<'de>>(
                        self,
                        mut map: A,
                    ) -> Result<Members<'de>, A::Error> {
                        let mut m = Members {
                            request_id: None,
                            reason: None,
                        };
                        while let Some(Text(key)) = map.next_key()? {
                            let slot = match &*key {
                                "requestId" => &mut m.request_id,
                                "reason" => &mut m.reason,
                                other => {
                                    if let Some(member) =
                                        crate::jsonrpc::names::near_miss(other, &CANCELLED_MEMBERS)
                                    {
                                        return Err(A::Error::custom(format_args!(
                                            "member {other:?} differs from `{member}` only in case or after a NUL"
                                        )));
                                    }
                                    map.next_value::<IgnoredAny>()?;
                                    continue;
                                }
                            };
                            if slot.replace(map.next_value()?).is_some() {
                                return Err(A::Error::custom(format_args!(
                                    "duplicate field `{key}`"
                                )));
                            }
                        }
                        Ok(m)
                    }
                }
                d.deserialize_map(V)
            }
        }
        let Some(params) = params.filter(|p| p.get().trim() != "null") else {
            return Ok(None);
        };
        let m: Members<'a> = serde_json::from_str(params.get()).map_err(|e| e.to_string())?;
        let Some(raw) = m.request_id.filter(|r| r.get().trim() != "null") else {
            return Ok(None);
        };
        let request_id = RequestId::from_json(raw.get())
            .ok_or_else(|| format!("`requestId` {} is neither a string nor a number", raw.get()))?;
        let reason = m
            .reason
            .and_then(|r| serde_json::from_str::<Text<'a>>(r.get()).ok())
            .map(|t| t.0);
        Ok(Some(CancelledParams { request_id, reason }))
    }
}

/// The `taskId` a `CreateTaskResult` names: `{"task": {"taskId": …}}` (MCP 2025-11-25
/// Tasks), or `{"resultType": "task", "taskId": …}` (the 2026-07-28 Tasks extension,
/// `io.modelcontextprotocol/tasks`, SEP-2663: `CreateTaskResult = Result & Task`); `None` if
/// it names none.
pub fn task_id(raw: &RawValue) -> Option<String> {
    #[derive(Deserialize)]
    struct Id<'a> {
        #[serde(rename = "taskId", borrow)]
        task_id: Cow<'a, str>,
    }
    #[derive(Deserialize)]
    struct Created<'a> {
        #[serde(borrow)]
        task: Option<Id<'a>>,
        #[serde(rename = "resultType", borrow)]
        result_type: Option<Cow<'a, str>>,
        #[serde(rename = "taskId", borrow)]
        task_id: Option<Cow<'a, str>>,
    }
    let created = serde_json::from_str::<Created>(raw.get()).ok()?;
    match created {
        Created { task: Some(t), .. } => Some(t.task_id.into_owned()),
        Created {
            result_type: Some(kind),
            task_id: Some(id),
            ..
        } if kind == "task" => Some(id.into_owned()),
        _ => None,
    }
}

/// The token a request asks for progress under (`params._meta.progressToken`, MCP "Utilities:
/// Progress"), for routing the server's `notifications/progress` to the request's stream;
/// `None` when it names none (or its params are not an object).
pub fn request_progress_token(params: Option<&RawValue>) -> Option<RequestId> {
    #[derive(Deserialize)]
    struct Meta {
        #[serde(rename = "progressToken")]
        token: Option<RequestId>,
    }
    #[derive(Deserialize)]
    struct Params {
        #[serde(rename = "_meta")]
        meta: Option<Meta>,
    }
    let text = params?.get();
    // Most requests name no token: no parse for them.
    memchr::memmem::find(text.as_bytes(), b"progressToken")?;
    if !text.starts_with('{') {
        return None;
    }
    serde_json::from_str::<Params>(text).ok()?.meta?.token
}

/// The token a `notifications/progress` reports on (`params.progressToken`).
pub fn notified_progress_token(params: Option<&RawValue>) -> Option<RequestId> {
    #[derive(Deserialize)]
    struct Params {
        #[serde(rename = "progressToken")]
        token: Option<RequestId>,
    }
    let text = params?.get();
    if !text.starts_with('{') {
        return None;
    }
    serde_json::from_str::<Params>(text).ok()?.token
}

/// The `taskId` of `tasks/result` (or `tasks/get`, `tasks/cancel`) params.
pub fn task_of_params(params: Option<&RawValue>) -> Option<String> {
    #[derive(Deserialize)]
    struct Id<'a> {
        #[serde(rename = "taskId", borrow)]
        task_id: Cow<'a, str>,
    }
    serde_json::from_str::<Id>(params?.get())
        .map(|p| p.task_id.into_owned())
        .ok()
}

/// The result of `tools/list`, read for tool annotations (risk hints).
#[derive(Debug, Deserialize)]
pub struct ToolsListView {
    /// The tools on this page.
    #[serde(default)]
    pub tools: Vec<ToolView>,
}

/// One tool of `tools/list`.
#[derive(Debug, Deserialize)]
pub struct ToolView {
    /// The tool name.
    pub name: String,
    /// The server's hints about the tool's behaviour.
    #[serde(default)]
    pub annotations: Option<ToolAnnotations>,
}

/// MCP tool annotations: hints from the server, never trusted to lower a risk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolAnnotations {
    /// The tool does not modify its environment.
    #[serde(default)]
    pub read_only_hint: Option<bool>,
    /// The tool may perform destructive updates.
    #[serde(default)]
    pub destructive_hint: Option<bool>,
    /// Repeated calls with the same arguments have no additional effect.
    #[serde(default)]
    pub idempotent_hint: Option<bool>,
    /// The tool interacts with an open world of external entities.
    #[serde(default)]
    pub open_world_hint: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eras_follow_the_revision_date() {
        assert_eq!(Era::of_version("2024-11-05"), Era::V2025);
        assert_eq!(Era::of_version("2025-03-26"), Era::V2025);
        assert_eq!(Era::of_version("2025-11-25"), Era::V2025);
        assert_eq!(Era::of_version("2026-07-28"), Era::V2026);
        assert_eq!(Era::of_version("2027-01-01"), Era::V2026);
        assert_eq!(Era::of_version("DRAFT-2026-v1"), Era::Unknown);
        assert_eq!(Era::of_version(""), Era::Unknown);
    }

    #[test]
    fn reads_a_2026_tools_call() {
        let params = r#"{"name":"echo","arguments":{"text":"hi"},"_meta":{"progressToken":1,
            "io.modelcontextprotocol/protocolVersion":"2026-07-28",
            "io.modelcontextprotocol/clientInfo":{"name":"c","version":"1.0","extra":true},
            "io.modelcontextprotocol/clientCapabilities":{}},"requestState":"s1",
            "inputResponses":{"a":{"action":"accept"}}}"#;
        let p: CallToolParams = serde_json::from_str(params).unwrap();
        assert_eq!(p.name, "echo");
        assert_eq!(p.arguments.unwrap().get(), r#"{"text":"hi"}"#);
        let meta = p.meta.unwrap();
        assert_eq!(meta.protocol_version.as_deref(), Some("2026-07-28"));
        assert_eq!(meta.client_info.unwrap().agent(), "c/1.0");
        assert_eq!(p.request_state.as_deref(), Some("s1"));
        assert_eq!(p.input_responses.unwrap().len(), 1);
    }

    #[test]
    fn reads_results_leniently() {
        let r: CallToolResultView =
            serde_json::from_str(r#"{"content":[{"type":"text","text":"x"},{"type":"image","data":"AA=="}],"isError":true,"structuredContent":{}}"#)
                .unwrap();
        assert_eq!(r.is_error, Some(true));
        assert_eq!(r.content.len(), 2);
        let r: CallToolResultView = serde_json::from_str(
            r#"{"resultType":"input_required","inputRequests":{"k":{"method":"elicitation/create"}},"requestState":"st"}"#,
        )
        .unwrap();
        assert_eq!(r.result_type.as_deref(), Some("input_required"));
        assert_eq!(
            r.input_requests.unwrap().keys().next().map(|k| k.as_ref()),
            Some("k")
        );
    }

    #[test]
    fn finds_the_server_in_either_era() {
        let init: ServerIdentity = serde_json::from_str(
            r#"{"protocolVersion":"2025-06-18","capabilities":{},"serverInfo":{"name":"s","version":"2"}}"#,
        )
        .unwrap();
        assert_eq!(init.server().unwrap().agent(), "s/2");
        let discover: ServerIdentity = serde_json::from_str(
            r#"{"supportedVersions":["2026-07-28"],"capabilities":{},"_meta":{"io.modelcontextprotocol/serverInfo":{"name":"s","version":"3"}}}"#,
        )
        .unwrap();
        assert_eq!(discover.server().unwrap().agent(), "s/3");
    }

    #[test]
    fn cancelled_params_are_read_one_way_or_refused() {
        let read = |text: Option<&str>| {
            let raw = text.map(|t| RawValue::from_string(t.to_string()).unwrap());
            CancelledParams::read(raw.as_deref())
                .map(|c| c.map(|c| (c.request_id.to_string(), c.reason.map(|r| r.into_owned()))))
        };
        assert_eq!(
            read(Some(r#"{"requestId":7,"reason":"r"}"#)),
            Ok(Some(("7".to_string(), Some("r".to_string()))))
        );
        for nothing in [
            None,
            Some("null"),
            Some("{}"),
            Some(r#"{"requestId":null}"#),
        ] {
            assert_eq!(read(nothing), Ok(None), "{nothing:?}");
        }
        for refused in [
            r#"{"requestId":1,"requestId":2}"#,
            r#"{"RequestId":1}"#,
            r#"{"requestId":true}"#,
            r#"[1]"#,
        ] {
            assert!(read(Some(refused)).is_err(), "{refused}");
        }
    }
}
