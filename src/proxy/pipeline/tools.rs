//! `tools/list` results: tool definitions compared with their pins (rug-pull defence), and
//! tools the caller may never call taken out of the list.

use super::*;

impl Pipeline {
    /// Whether `tool` changed since it was pinned and no operator has accepted the change yet
    /// (the pin file is re-read only for tools seen changed).
    pub(super) fn tool_changed(&self, tool: &str) -> bool {
        let Some(hash) = self.state().changed_tools.get(tool).cloned() else {
            return false;
        };
        let Some(pins) = &self.pins else {
            return false;
        };
        match pins.is_pinned(tool, &hash) {
            Ok(true) => {
                tracing::info!(tool, "changed tool definition accepted by an operator");
                self.state().changed_tools.remove(tool);
                false
            }
            Ok(false) => true,
            Err(e) => {
                // Fail closed: a change that cannot be checked stays a change.
                tracing::error!(error = %e, "tool pins unreadable");
                true
            }
        }
    }

    /// Compares the tools of a `tools/list` result with their pins; records each newly seen
    /// change as a `configuration_change` event.
    pub(super) fn check_pins(&self, result: &RawValue) -> Result<(), String> {
        #[derive(Deserialize)]
        struct Listing<'a> {
            #[serde(borrow, default)]
            tools: Vec<&'a RawValue>,
        }
        let policy = self.policy.current();
        let (Some(pins), true) = (
            &self.pins,
            policy.enabled && policy.pin_tools != PinMode::Off,
        ) else {
            return Ok(());
        };
        let listing: Listing<'_> = serde_json::from_str(result.get())
            .map_err(|e| format!("the tools/list result cannot be read: {e}"))?;
        let mut fingerprints: Vec<(String, Fingerprint)> = Vec::new();
        let mut names = std::collections::HashSet::new();
        for raw in listing.tools {
            // A definition a client could read two ways (a repeated key, or keys that differ
            // only in case: the pin hashes `description`, a client folding case may show
            // `Description`), or a tool listed twice, could show the client's model what the
            // pin did not judge.
            let tool: Value = crate::policy::strict::parse_validated(raw.get()).map_err(|e| {
                format!("a tool definition in tools/list cannot be read one way only: {e}")
            })?;
            if let Some(name) = tool.get("name").and_then(Value::as_str) {
                if !names.insert(name.to_string()) {
                    return Err(format!(
                        "the tools/list result lists the tool {name:?} twice; a client could keep either definition"
                    ));
                }
                fingerprints.push((name.to_string(), Fingerprint::of(&tool)));
            }
        }
        let seen = pins.observe(&fingerprints).map_err(|e| e.to_string())?;
        for (tool, verdict) in seen {
            match verdict {
                Seen::New => tracing::debug!(tool = %tool, "tool definition pinned"),
                Seen::Same => {
                    self.state().changed_tools.remove(&tool);
                }
                Seen::Changed { changes, hash } => {
                    let known = self
                        .state()
                        .changed_tools
                        .insert(tool.clone(), hash.clone());
                    if known.as_deref() == Some(hash.as_str()) {
                        continue;
                    }
                    let then = match policy.pin_tools {
                        PinMode::Block => "its calls are blocked until an operator accepts it",
                        _ => "its calls carry extra risk until an operator accepts it",
                    };
                    let reason = format!(
                        "the server changed the definition of tool {tool:?} since it was pinned; {then} (mcp-audit-proxy tools accept {tool:?} --upstream {:?} --hash {hash})",
                        self.info.upstream
                    );
                    tracing::warn!(tool = %tool, changes = %changes.join("; "), "tool definition changed since pinned");
                    let mut event = self.policy_event(
                        EventType::ConfigurationChange,
                        Outcome::Success,
                        changes,
                        Some(policy.version.clone()),
                        Some(reason),
                    );
                    event.tool_name = Some(tool);
                    event.action = "tools/list".into();
                    event.risk_level = RiskLevel::High;
                    self.record_policy_event(&event);
                }
            }
        }
        Ok(())
    }

    /// A `tools/list` result whose tools could not be compared with their pins: recorded, and
    /// with `pin_tools = "block"` the client gets an error instead (a listing the proxy cannot
    /// read could hide a changed tool).
    pub(super) fn pins_unchecked(&self, id: &RequestId, why: &str) -> Option<String> {
        let policy = self.policy.current();
        let why = policy.protect_text(why);
        tracing::error!(error = %why, "tool definitions could not be compared with their pins");
        let event_id = self.record_list_refused(
            &policy,
            "tool definitions not checked against their pins",
            &why,
        );
        (policy.pin_tools == PinMode::Block).then(|| {
            list_withheld(
                id,
                &format!(
                    "{why}; with pin_tools = \"block\" tools that cannot be checked are not offered"
                ),
                &event_id,
            )
        })
    }

    /// Records a `tools/list` result the proxy could not check as it should
    /// (`configuration_change`, `refused`, high risk, `change` and `why` as its reason); the
    /// event's id.
    fn record_list_refused(&self, policy: &Policy, change: &str, why: &str) -> String {
        let mut event = self.policy_event(
            EventType::ConfigurationChange,
            Outcome::Refused,
            vec![change.into()],
            Some(policy.version.clone()),
            Some(why.to_string()),
        );
        event.action = "tools/list".into();
        event.risk_level = RiskLevel::High;
        self.record_policy_event(&event);
        event.event_id.to_string()
    }

    /// A `tools/list` response without the tools this caller may never call, so agents do not
    /// try them; `None` when nothing is hidden. In shadow mode nothing is hidden: shadow lets
    /// everything through (the calls to such a tool are forwarded and recorded `would_block`),
    /// so the list the client sees must not change while a policy is tried out.
    ///
    /// Only the hidden tools are taken out: the rest of the result is kept as the server
    /// wrote it (numbers past a double's range or precision, key order, escapes; only the
    /// whitespace between the array's elements goes). A listing that cannot be read to hide
    /// them (a repeated `tools` or `name` key) is withheld and recorded (`configuration_change`,
    /// `refused`): the client gets an error, not tools the policy forbids.
    ///
    /// `roles` are the roles of the credential the listing was asked with.
    pub(super) fn filter_tools(
        &self,
        id: &RequestId,
        result: &RawValue,
        roles: &[String],
    ) -> Option<String> {
        let policy = self.policy.current();
        if !policy.enabled || policy.shadow || !policy.restricts_tools() {
            return None;
        }
        let user = &self.info.user_id;
        let rebuilt = |kept: &str| {
            let mut line = rebuilt_message(Some(id), None, &[]);
            line.pop();
            line.push_str(",\"result\":");
            line.push_str(kept);
            line.push('}');
            line
        };
        match hide_tools(result.get(), |name| {
            policy.forbidden(user, roles, name).is_some()
        }) {
            // The list is the caller's own, whether this caller lost a tool or not (another
            // may): a shared cache must not hand it to someone else.
            Ok(None) => private_scope(result.get()).map(|kept| rebuilt(&kept)),
            Ok(Some((kept, hidden))) => {
                tracing::info!(hidden, user = %user, "tools hidden from tools/list by policy");
                let kept = private_scope(&kept).unwrap_or(kept);
                Some(rebuilt(&kept))
            }
            Err(why) => {
                let why = policy.protect_text(&why);
                tracing::error!(error = %why, user = %user, "a tools/list result could not be read to hide the tools this caller may not call; withheld");
                let event_id = self.record_list_refused(
                    &policy,
                    "tool list withheld: the tools this caller may not call could not be taken out",
                    &why,
                );
                Some(list_withheld(
                    id,
                    &format!(
                        "it could not be read to take out the tools this caller may not call ({why})"
                    ),
                    &event_id,
                ))
            }
        }
    }

    /// [`Policy::loose_tool_name`] against the tools the server listed.
    pub(super) fn loose_tool_name(&self, policy: &Policy, name: &str) -> Option<String> {
        policy.loose_tool_name(name, &self.rounds().learnt.listed)
    }
}

/// The error line a client gets for a `tools/list` the proxy withheld (`why` after "withheld
/// the tool list: "), naming the event that records it.
fn list_withheld(id: &RequestId, why: &str, event_id: &str) -> String {
    let line = error_response(
        Some(id),
        INTERNAL_ERROR,
        &format!("mcp-audit-proxy withheld the tool list: {why}"),
        Some(json!({ "event_id": event_id })),
    );
    String::from_utf8_lossy(trim_line_end(&line)).into_owned()
}

/// `result` with every top-level `"cacheScope": "public"` made `"private"`, each other byte
/// kept; `None` when it has none. A listing filtered per caller (`allow_users`/`deny_users`)
/// is no longer the same for every caller, which is what `public` says (MCP 2026-07-28
/// SEP-2549: a shared cache may serve a public result to anyone; a private one MUST NOT be
/// shared).
fn private_scope(result: &str) -> Option<String> {
    let members = serde_json::from_str::<crate::jsonrpc::salvage::Members<'_>>(result)
        .ok()?
        .0;
    let mut out = String::with_capacity(result.len() + 1);
    let mut at = 0;
    for (name, value) in members {
        if name == "cacheScope" && value.get() == "\"public\"" {
            // `value` borrows from `result`: its place there.
            let start = value.get().as_ptr() as usize - result.as_ptr() as usize;
            out.push_str(&result[at..start]);
            out.push_str("\"private\"");
            at = start + value.get().len();
        }
    }
    (at > 0).then(|| {
        out.push_str(&result[at..]);
        out
    })
}

/// `result` (a `tools/list` result's JSON text) without the tools `hidden` names, each other
/// byte kept; `None` when it hides none (or has no `tools` array). Errors name what could not be
/// read: a repeated `tools` member, a tool object whose `name` cannot be read.
fn hide_tools(
    result: &str,
    hidden: impl Fn(&str) -> bool,
) -> Result<Option<(String, usize)>, String> {
    #[derive(serde::Deserialize)]
    struct Listing<'a> {
        #[serde(borrow)]
        tools: Option<&'a RawValue>,
    }
    #[derive(serde::Deserialize)]
    struct Tool {
        name: Option<Value>,
    }
    let listing: Listing = serde_json::from_str(result).map_err(|e| e.to_string())?;
    let Some(tools) = listing.tools else {
        return Ok(None);
    };
    let Ok(elements) = serde_json::from_str::<Vec<&RawValue>>(tools.get()) else {
        return Ok(None);
    };
    let mut kept = Vec::with_capacity(elements.len());
    for element in &elements {
        let text = element.get();
        let name = if text.starts_with('{') {
            serde_json::from_str::<Tool>(text)
                .map_err(|e| format!("a tool: {e}"))?
                .name
        } else {
            None
        };
        if !name.as_ref().and_then(Value::as_str).is_some_and(&hidden) {
            kept.push(text);
        }
    }
    if kept.len() == elements.len() {
        return Ok(None);
    }
    // `tools` borrows from `result`: its place there.
    let start = tools.get().as_ptr() as usize - result.as_ptr() as usize;
    let end = start + tools.get().len();
    let rebuilt = format!("{}[{}]{}", &result[..start], kept.join(","), &result[end..]);
    Ok(Some((rebuilt, elements.len() - kept.len())))
}

#[cfg(test)]
mod tests {
    use super::{hide_tools, private_scope};

    #[test]
    fn hidden_tools_are_taken_out_and_every_other_byte_is_kept() {
        let result = r#"{"tools" : [ {"name":"echo","inputSchema":{}} , {"name":"keep","inputSchema":{"maximum":18446744073709551617,"x":1.0e2,"z":-0,"a":"\u00e9\/"}}, 7 ],"nextCursor":null, "big":1E400}"#;
        let (kept, hidden) = hide_tools(result, |n| n == "echo").unwrap().unwrap();
        assert_eq!(hidden, 1);
        assert_eq!(
            kept,
            r#"{"tools" : [{"name":"keep","inputSchema":{"maximum":18446744073709551617,"x":1.0e2,"z":-0,"a":"\u00e9\/"}},7],"nextCursor":null, "big":1E400}"#
        );
        assert_eq!(hide_tools(result, |n| n == "none").unwrap(), None);
        assert_eq!(hide_tools(r#"{"other":1}"#, |_| true).unwrap(), None);
    }

    #[test]
    fn a_filtered_listing_is_no_longer_public() {
        let result = r#"{"ttlMs":60000, "cacheScope" : "public","tools":[],"cacheScope":"public"}"#;
        assert_eq!(
            private_scope(result).unwrap(),
            r#"{"ttlMs":60000, "cacheScope" : "private","tools":[],"cacheScope":"private"}"#
        );
        assert_eq!(
            private_scope(r#"{"cacheScope":"private","tools":[]}"#),
            None
        );
        assert_eq!(
            private_scope(r#"{"tools":[{"cacheScope":"public"}]}"#),
            None
        );
    }

    #[test]
    fn a_listing_that_cannot_be_read_is_an_error_not_passed_on() {
        // Twin keys: a server (or a reader) taking the other one would see another list.
        assert!(hide_tools(r#"{"tools":[],"tools":[{"name":"echo"}]}"#, |_| true).is_err());
        assert!(hide_tools(r#"{"tools":[{"name":"ok","name":"echo"}]}"#, |_| true).is_err());
    }
}
