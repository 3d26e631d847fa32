//! The audit event: the stable JSON record of what happened to a tool call.
//!
//! Field names and value spellings are a public contract (README "Event JSON"); add optional
//! fields, never rename or remove one.

use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use ulid::Ulid;

use crate::error::Side;
use crate::jsonrpc::RequestId;
use crate::mcp::Era;

/// A time-ordered unique id (ULID), so sorting ids sorts events by creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId(pub Ulid);

impl EventId {
    /// The big-endian key under which the store sorts this event.
    pub fn to_key(self) -> [u8; 16] {
        u128::from(self.0).to_be_bytes()
    }

    /// Reads an id back from a store key.
    pub fn from_key(key: &[u8]) -> Option<Self> {
        let bytes: [u8; 16] = key.try_into().ok()?;
        Some(EventId(Ulid::from(u128::from_be_bytes(bytes))))
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl FromStr for EventId {
    type Err = ulid::DecodeError;
    /// The 26 Crockford base32 characters of a ULID. The first is at most `7` (a ULID is 128
    /// bits; 26 characters hold 130): the `ulid` crate wraps a larger one round, so that
    /// `81M…` would name the event `01M…`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.as_bytes().first().is_some_and(|&b| b > b'7') && s.len() == ulid::ULID_LEN {
            return Err(ulid::DecodeError::InvalidChar);
        }
        Ulid::from_string(s).map(EventId)
    }
}

impl Serialize for EventId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; ulid::ULID_LEN];
        s.serialize_str(self.0.array_to_str(&mut buf))
    }
}

impl<'de> Deserialize<'de> for EventId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(|e| {
            serde::de::Error::custom(format_args!(
                "an event id is a ULID (26 characters of Crockford base32, e.g. 01KBZ8Q5Y0V3M6X2P9R4T7W1NA), not {:?} ({e})",
                s.chars().take(40).collect::<String>()
            ))
        })
    }
}

/// Hands out strictly increasing event ids with the wall-clock time they encode.
#[derive(Debug, Default)]
pub struct EventIds {
    generator: Mutex<ulid::Generator>,
}

impl EventIds {
    /// A new id and the timestamp it was made at (the event's `timestamp`).
    pub fn next(&self) -> (EventId, SystemTime) {
        // Truncated to the microsecond precision of the JSON form, so a round trip is exact.
        let since_epoch = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let now = SystemTime::UNIX_EPOCH + Duration::from_micros(since_epoch.as_micros() as u64);
        let mut generator = self.generator.lock().unwrap_or_else(|p| p.into_inner());
        // Overflow needs 2^80 ids in one millisecond; fall back to a fresh random id.
        let id = generator
            .generate_from_datetime(now)
            .unwrap_or_else(|_| Ulid::from_datetime(now));
        (EventId(id), now)
    }
}

/// What kind of fact an event records (the design notes' five types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    /// A tool call was requested; stored before it is forwarded.
    ToolAccess,
    /// A tool call ended with a result from the server.
    ToolExecution,
    /// A tool call ended without a result: error, cancellation, timeout, server exit, refusal.
    ToolFailure,
    /// Who may call what changed.
    PermissionChange,
    /// The proxy's or a tool's configuration changed.
    ConfigurationChange,
    /// The proxy raised an alert about events already in the trail (`metadata.alert`, see
    /// [`crate::alerts`]): not one of the design notes' five types, because it records no
    /// call or change, only the proxy's judgement of them; recorded in the same chain.
    Alert,
    /// The client answered a request of the server's that a person or the client's model
    /// works on (`elicitation/create`, `sampling/createMessage`; MCP 2025-11-25 "Client
    /// Features"): in the 2025 revisions the answer is a JSON-RPC response of its own, which
    /// the server acts on as on a call's arguments, so who answered what is recorded (the
    /// 2026-07-28 revision carries such answers in a call's retry, stored on its
    /// `tool_access` as `input_responses`). `action` is the server's method,
    /// `metadata.arguments` the server's params (the question), `metadata.input_responses` the
    /// client's answer as `{"result": …}` or `{"error": …}`, both masked as arguments are;
    /// `result` is `success` for a result, `jsonrpc_error` for an error, `refused` when the
    /// proxy did not pass the answer on; `execution_time_us` the time the client took.
    /// Stored before the answer is forwarded in `sync` mode. Not one of the design notes'
    /// five types: it records no call.
    ServerRequest,
}

impl EventType {
    /// The JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::ToolAccess => "tool_access",
            EventType::ToolExecution => "tool_execution",
            EventType::ToolFailure => "tool_failure",
            EventType::PermissionChange => "permission_change",
            EventType::ConfigurationChange => "configuration_change",
            EventType::Alert => "alert",
            EventType::ServerRequest => "server_request",
        }
    }
}

/// Reads a value as the event JSON spells it (`tool_failure`) or with dashes (`tool-failure`),
/// in any case; `None` if it is none of `all` (whose spellings `name` gives).
fn from_spelling<T: Copy>(text: &str, all: &[T], name: impl Fn(T) -> &'static str) -> Option<T> {
    let wanted = text.trim().replace('-', "_").to_ascii_lowercase();
    all.iter().copied().find(|v| name(*v) == wanted)
}

impl EventType {
    /// Every type, in the order of their one-byte codes in the index.
    /// New types go last: a store's index keeps these codes.
    pub const ALL: [EventType; 7] = [
        EventType::ToolAccess,
        EventType::ToolExecution,
        EventType::ToolFailure,
        EventType::PermissionChange,
        EventType::ConfigurationChange,
        EventType::Alert,
        EventType::ServerRequest,
    ];

    /// The type spelled `text` as in the JSON or with dashes (`tool-failure`), any case.
    pub fn from_spelling(text: &str) -> Option<EventType> {
        from_spelling(text, &Self::ALL, Self::as_str)
    }
}

/// How an event's step ended; the vocabulary of the `result` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Access: the call was accepted and is about to be forwarded.
    Initiated,
    /// Execution: the tool returned a result.
    Success,
    /// Execution: the tool returned a result with `isError: true`.
    Error,
    /// Execution: the server asked the client for input (MRTR); a retry follows.
    InputRequired,
    /// Execution: the server turned the call into a task (Tasks extension).
    Task,
    /// Failure: the server answered with a JSON-RPC error.
    JsonrpcError,
    /// Failure: the client cancelled the call.
    Cancelled,
    /// Failure: no answer within `limits.call_timeout_ms`.
    Timeout,
    /// Failure: the server process ended before answering.
    ServerExit,
    /// Failure: the client disconnected or the proxy was stopped before the server answered.
    Shutdown,
    /// Failure: the proxy refused the call (undecodable, oversized, audit unavailable).
    Refused,
    /// Access and failure: the policy blocked the call; it was never forwarded.
    Blocked,
}

impl Outcome {
    /// Whether a call's end with this result says how the call went, for success rates:
    /// not a round answered with a request for input (MRTR: its retry is a call of its own)
    /// nor a task whose final end has not come (helper-94 F4).
    pub fn decides(self) -> bool {
        !matches!(
            self,
            Outcome::InputRequired | Outcome::Task | Outcome::Initiated
        )
    }

    /// Whether a call's end with this result ran at the server, so that its
    /// `execution_time_us` is a tool's time: not a call the proxy blocked or refused (its few
    /// µs would pull the tool's mean down; helper-94).
    pub fn ran(self) -> bool {
        !matches!(self, Outcome::Blocked | Outcome::Refused)
    }

    /// The JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Initiated => "initiated",
            Outcome::Success => "success",
            Outcome::Error => "error",
            Outcome::InputRequired => "input_required",
            Outcome::Task => "task",
            Outcome::JsonrpcError => "jsonrpc_error",
            Outcome::Cancelled => "cancelled",
            Outcome::Timeout => "timeout",
            Outcome::ServerExit => "server_exit",
            Outcome::Shutdown => "shutdown",
            Outcome::Refused => "refused",
            Outcome::Blocked => "blocked",
        }
    }
}

impl Outcome {
    /// Every outcome, in the order of their one-byte codes in the index.
    pub const ALL: [Outcome; 12] = [
        Outcome::Initiated,
        Outcome::Success,
        Outcome::Error,
        Outcome::InputRequired,
        Outcome::Task,
        Outcome::JsonrpcError,
        Outcome::Cancelled,
        Outcome::Timeout,
        Outcome::ServerExit,
        Outcome::Shutdown,
        Outcome::Refused,
        Outcome::Blocked,
    ];

    /// The outcome spelled `text` as in the JSON or with dashes (`server-exit`), any case.
    pub fn from_spelling(text: &str) -> Option<Outcome> {
        from_spelling(text, &Self::ALL, Self::as_str)
    }
}

/// Risk levels of the design notes, ordered from least to most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RiskLevel {
    /// Read-only or harmless.
    Low,
    /// Unknown effects.
    Medium,
    /// Destructive or reaching outside.
    High,
    /// Must not run without review.
    Critical,
}

impl RiskLevel {
    /// The JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RiskLevel::Low => "low",
            RiskLevel::Medium => "medium",
            RiskLevel::High => "high",
            RiskLevel::Critical => "critical",
        }
    }
}

impl RiskLevel {
    /// Every level, least severe first (their one-byte codes in the index).
    pub const ALL: [RiskLevel; 4] = [
        RiskLevel::Low,
        RiskLevel::Medium,
        RiskLevel::High,
        RiskLevel::Critical,
    ];

    /// The level spelled `text` as in the JSON, any case.
    pub fn from_spelling(text: &str) -> Option<RiskLevel> {
        from_spelling(text, &Self::ALL, Self::as_str)
    }
}

/// Context and measurements of one event; absent fields are omitted from the JSON.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Metadata {
    /// The JSON-RPC id of the request as the client sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    /// The MCP protocol revision in force for this request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol_version: Option<String>,
    /// `"2025"` (initialize handshake), `"2026"` (per-request `_meta`) or `"unknown"`.
    pub protocol_era: Era,
    /// How the caller was identified (`stdio`: the OS user or `--user`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_method: Option<String>,
    /// The client implementation as `name/version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// The server implementation as `name/version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_version: Option<String>,
    /// The tool arguments exactly as sent (access events only; on a `server_request` event,
    /// the server's request params).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<Box<RawValue>>,
    /// For an MRTR retry (MCP 2026-07-28 "Multi Round-Trip Requests", SEP-2322): the
    /// `inputResponses` the server got with the arguments (the tool acts on them as on its
    /// arguments), an object of the answers by their keys as sent, masked as arguments are;
    /// the proxy's own confirmation answer is not among them (access events only). On a
    /// `server_request` event: the client's answer, `{"result": …}` or `{"error": …}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_responses: Option<Box<RawValue>>,
    /// For an MRTR retry: the `input_required` execution event it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_of: Option<EventId>,
    /// Wall time from forwarding the request to its end, in microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_time_us: Option<u64>,
    /// Size of the server's response message in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_size_bytes: Option<u64>,
    /// Content block types of the result, in order of first appearance.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub content_types: Vec<String>,
    /// Error texts: the JSON-RPC error message, or the text of an `isError` result.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub error_messages: Vec<String>,
    /// The JSON-RPC error code, for `jsonrpc_error` and refusals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<i64>,
    /// Keys of the input requests of an `input_required` result.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub input_requests: Vec<String>,
    /// Which side caused a failure: `client`, `upstream` or `internal`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_side: Option<Side>,
    /// Why the step ended this way, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The policy's risk score, 0-100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk_score: Option<u8>,
    /// What produced the score and the decision, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub risk_reasons: Vec<String>,
    /// What the policy decided: `allow`, `alert`, `block`, or `would_block` in shadow mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<String>,
    /// The hash of the `[risk]` policy in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_version: Option<String>,
    /// Classes of sensitive data replaced in what this event stores (never kept readable).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redacted: Vec<String>,
    /// Classes masked in the result before the client saw it (`redact_results`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redacted_for_client: Vec<String>,
    /// What changed, for `configuration_change` and `permission_change` events.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<String>,
    /// For a call the policy asked the person at the client to confirm: how they answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmation: Option<String>,
    /// For calls through the HTTP gateway: where the request came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<Box<HttpContext>>,
    /// Values cut to `audit.max_stored_argument_bytes` before storing (see [`super::bound`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub truncated: Vec<Truncation>,
    /// For the writer's own `audit/store_budget` and `audit/store_outage` events: the store's
    /// size against `audit.max_store_bytes` when the event was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_usage: Option<StoreUsage>,
    /// For `audit/store_outage`: the stretch of time the trail has no events for, and what
    /// the proxy did meanwhile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_gap: Option<Box<AuditGap>>,
    /// How the store holds this event's personal fields, as read back (never stored: see
    /// [`crate::store::personal`]): absent when stored in clear, `encrypted` when opened
    /// with the user's key, `erased` when that key was destroyed (GDPR Art. 17).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub personal_data: Option<PersonalData>,
    /// Set by `mcp-audit-proxy import`: this event was brought into the store from a file (an
    /// export, another store, generated traffic), not recorded by a proxy writing to it. It is
    /// part of the sealed record, so the chain vouches for the mark.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imported: Option<Imported>,
    /// For an event that stands for several refusals not recorded one by one (those of
    /// unauthenticated requests past the gateway's quota per address and window): how many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summarized: Option<u64>,
    /// For `alert` events: what the alert stands for (kind, severity, count, the first and
    /// last event ids; see [`crate::alerts::AlertDetails`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<Box<crate::alerts::AlertDetails>>,
}

/// The store's size against its budget, in bytes (file lengths, see
/// [`crate::store::usage`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreUsage {
    /// Bytes the store folder held (the writer's running total).
    pub bytes: u64,
    /// `audit.max_store_bytes`; absent when there is no budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
}

/// A time the audit store could not take events (`audit.on_store_failure`): written as the
/// first event once it can again, so that the gap is in the trail itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditGap {
    /// When the first event could not be stored (RFC 3339 UTC, microseconds).
    #[serde(with = "rfc3339")]
    pub from: SystemTime,
    /// When the store took an event again (this event's own write).
    #[serde(with = "rfc3339")]
    pub until: SystemTime,
    /// `until - from`, in milliseconds.
    pub duration_ms: u64,
    /// `audit.on_store_failure` in force: `block` (calls were refused) or `allow` (calls went
    /// on unaudited).
    pub on_store_failure: String,
    /// Events that were not stored: with `allow`, every event of the gap; with `block`, the
    /// ends of calls already running and what a failed write or sync took with it.
    pub events_lost: u64,
    /// Events refused while the store was failing (`block`): each is a call refused before it
    /// reached its server, or an end the client was told could not be recorded.
    pub events_refused: u64,
    /// The first failure, in words (the file, the OS error, or the budget).
    pub cause: String,
}

/// How an event's personal fields are held by the store (`metadata.personal_data`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PersonalData {
    /// Stored encrypted under the user's key, shown decrypted.
    Encrypted,
    /// The user's key was destroyed: the fields are gone, the skeleton remains.
    Erased,
    /// The fields cannot be opened because their key is gone, and no `audit/erase` event of
    /// this store names it: the key was deleted outside `mcp-audit-proxy erase` (or a backup of
    /// `keys/` is incomplete), which `verify` reports as tampering. Set by the commands that
    /// show events (`events`), never stored: a reader is not told "lawfully erased" (GDPR
    /// Art. 17) for a deletion nothing records.
    KeyMissing,
}

/// Where and when an imported event came from (`metadata.imported`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Imported {
    /// When it was imported, RFC 3339 UTC with microseconds.
    pub at: String,
    /// The file it was read from, as given to `import` (`-` for stdin).
    pub source: String,
    /// Its line in that file (1-based).
    pub line: u64,
    /// The imports before this one, oldest first, when the event came from another store
    /// that had imported it (its chain of custody: an import never overwrites an earlier
    /// one's record).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub earlier: Vec<Imported>,
}

/// A value of this event stored shortened (or, for arguments whose shape is over the cap,
/// not at all): where it was, how long it was, and its hash, so that the whole value can
/// still be matched against the trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Truncation {
    /// RFC 6901 JSON pointer into the event (`/metadata/arguments/content`).
    pub pointer: String,
    /// The value's length before the cut, in bytes (UTF-8 for a string, JSON text for whole
    /// arguments).
    pub bytes: u64,
    /// SHA-256 of those bytes, lowercase hex.
    pub sha256: String,
}

/// Where a request through the HTTP gateway came from. The field names follow
/// OpenTelemetry's semantic conventions where they have one (given in each doc).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpContext {
    /// `client.address`: the TCP peer's IP address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_address: Option<String>,
    /// `user_agent.original`: the `User-Agent` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// `tls.protocol.version`: `1.2` or `1.3`; absent for plain HTTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_version: Option<String>,
    /// `trace_id`: the W3C Trace Context trace id of the request's `traceparent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// `http.response.status_code`, for requests the gateway refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    /// The principal's roles, from its credential's configuration.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
}

/// One audit record; see the README's "Event JSON" for the contract.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Unique, time-sortable id (ULID).
    pub event_id: EventId,
    /// When the event was created, RFC 3339 UTC with microseconds.
    #[serde(with = "rfc3339")]
    pub timestamp: SystemTime,
    /// The kind of fact.
    pub event_type: EventType,
    /// Who made the call.
    pub user_id: String,
    /// The tool called; `null` when the request was too broken to tell.
    pub tool_name: Option<String>,
    /// The MCP method (`tools/call`).
    pub action: String,
    /// How the step ended.
    pub result: Outcome,
    /// Context and measurements.
    pub metadata: Metadata,
    /// Assessed risk.
    pub risk_level: RiskLevel,
    /// Regulations the data touches (`gdpr`, `hipaa`, `pci_dss`, `secrets`).
    pub compliance_tags: Vec<String>,
    /// The client connection this call belongs to.
    pub session_id: String,
    /// The configured name of the server behind the proxy.
    pub upstream: String,
    /// The other half of the access/end pair.
    pub linked_event_id: Option<EventId>,
}

#[cfg(test)]
impl AuditEvent {
    /// A bare event of `event_type` ending in `result`, for unit tests.
    pub(crate) fn test_event(event_type: EventType, result: Outcome) -> AuditEvent {
        let (event_id, timestamp) = EventIds::default().next();
        AuditEvent {
            event_id,
            timestamp,
            event_type,
            user_id: "alice".into(),
            tool_name: Some("echo".into()),
            action: "tools/call".into(),
            result,
            metadata: Metadata::default(),
            risk_level: RiskLevel::Low,
            compliance_tags: Vec::new(),
            session_id: "s".into(),
            upstream: "example".into(),
            linked_event_id: None,
        }
    }
}

mod rfc3339 {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_rfc3339_micros(*t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        // helper-94: `+02:00` was "timestamp format is invalid", with no word of what is.
        humantime::parse_rfc3339(&text).map_err(|e| {
            let shown: String = text.chars().take(40).collect();
            serde::de::Error::custom(format!(
                "{e} ({shown:?}): times are RFC 3339 in UTC with `Z` (2026-12-07T10:00:00.123456Z); convert another offset to UTC"
            ))
        })
    }
}

#[cfg(test)]
mod id_tests {
    use super::*;

    #[test]
    fn an_event_id_past_128_bits_is_refused_not_wrapped_round() {
        let id: EventId = "01M911RAGM8YPNV4Q3ADE4PTGT".parse().unwrap();
        assert_eq!(id.to_string(), "01M911RAGM8YPNV4Q3ADE4PTGT");
        assert!("7ZZZZZZZZZZZZZZZZZZZZZZZZZ".parse::<EventId>().is_ok());
        for wrapped in [
            "81M911RAGM8YPNV4Q3ADE4PTGT",
            "80000000000000000000000000",
            "ZZZZZZZZZZZZZZZZZZZZZZZZZZ",
        ] {
            assert!(wrapped.parse::<EventId>().is_err(), "{wrapped}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_increase_and_keys_sort_like_ids() {
        let ids = EventIds::default();
        let mut prev = ids.next().0;
        for _ in 0..10_000 {
            let next = ids.next().0;
            assert!(next > prev);
            assert!(next.to_key() > prev.to_key());
            assert!(next.to_string() > prev.to_string());
            assert_eq!(EventId::from_key(&next.to_key()), Some(next));
            prev = next;
        }
    }

    #[test]
    fn values_are_read_in_their_json_spelling_or_with_dashes() {
        for t in EventType::ALL {
            assert_eq!(EventType::from_spelling(t.as_str()), Some(t));
            let dashed = t.as_str().replace('_', "-").to_uppercase();
            assert_eq!(EventType::from_spelling(&dashed), Some(t));
        }
        for o in Outcome::ALL {
            assert_eq!(
                Outcome::from_spelling(&o.as_str().replace('_', "-")),
                Some(o)
            );
        }
        for r in RiskLevel::ALL {
            assert_eq!(RiskLevel::from_spelling(r.as_str()), Some(r));
        }
        assert_eq!(EventType::from_spelling("tool_fail"), None);
        assert_eq!(RiskLevel::from_spelling("severe"), None);
        // The codes are positions in ALL, so ALL must list each value once, in order.
        assert!(RiskLevel::ALL.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn the_json_form_round_trips_with_the_documented_spellings() {
        let ids = EventIds::default();
        let (id, ts) = ids.next();
        let event = AuditEvent {
            event_id: id,
            timestamp: ts,
            event_type: EventType::ToolAccess,
            user_id: "alice".into(),
            tool_name: Some("echo".into()),
            action: "tools/call".into(),
            result: Outcome::Initiated,
            metadata: Metadata {
                request_id: Some(RequestId::Str("7".into())),
                protocol_era: Era::V2026,
                arguments: Some(RawValue::from_string(r#"{"text":"hi"}"#.into()).unwrap()),
                failure_side: Some(Side::Upstream),
                ..Metadata::default()
            },
            risk_level: RiskLevel::Medium,
            compliance_tags: vec![],
            session_id: "s".into(),
            upstream: "example".into(),
            linked_event_id: None,
        };
        let text = serde_json::to_string(&event).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["event_type"], "tool_access");
        assert_eq!(json["result"], "initiated");
        assert_eq!(json["risk_level"], "medium");
        assert_eq!(json["metadata"]["protocol_era"], "2026");
        assert_eq!(json["metadata"]["request_id"], "7");
        assert_eq!(json["metadata"]["failure_side"], "upstream");
        assert_eq!(json["metadata"]["arguments"]["text"], "hi");
        assert!(json["metadata"].get("execution_time_us").is_none());
        assert!(json["timestamp"].as_str().unwrap().ends_with('Z'));
        let back: AuditEvent = serde_json::from_str(&text).unwrap();
        assert_eq!(back.event_id, event.event_id);
        assert_eq!(back.timestamp, event.timestamp);
        assert_eq!(back.metadata.arguments.unwrap().get(), r#"{"text":"hi"}"#);
    }
}
