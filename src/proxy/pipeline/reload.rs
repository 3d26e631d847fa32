//! Policy reloads: a new `[risk]` policy put in force (on SIGHUP or a file change) and what
//! changed recorded as a `permission_change` or `configuration_change` event.

use super::*;

impl Pipeline {
    /// Puts a reloaded policy in force and records what changed (`permission_change` when who
    /// may call what changed, else `configuration_change`); an unchanged policy is left alone.
    /// `more`: what the front door reloaded beside it (the gateway's credentials), recorded
    /// with it. `not_applied` names what else changed in the file (it needs a restart); it is
    /// logged and recorded with the reload.
    ///
    /// `trigger` says what set the reload off (`SIGHUP received`, `config file changed`). The
    /// event names the identity the proxy runs as, not a client: the proxy cannot know who
    /// edited the file. A change that may weaken enforcement (see
    /// [`policy::PolicyChanges::weakened`]) is recorded at `high`, with why in
    /// `metadata.reason`.
    pub fn reload_policy(
        &self,
        new: Arc<Policy>,
        more: policy::PolicyChanges,
        not_applied: Vec<String>,
        trigger: &str,
    ) -> Option<AuditEvent> {
        let old = self.policy.current();
        for what in &not_applied {
            tracing::warn!(change = %what, "config change not applied");
        }
        let same = old.version == new.version;
        if same && more.lines.is_empty() {
            tracing::info!(version = %new.version, "policy reloaded; unchanged");
            if not_applied.is_empty() {
                return None;
            }
            let mut event = self.policy_event(
                EventType::ConfigurationChange,
                Outcome::Refused,
                not_applied,
                Some(old.version.clone()),
                Some("only the [risk] policy (and the gateway's credentials) reloads; restart the proxy to apply the rest".into()),
            );
            self.record_reload(&mut event);
            return Some(event);
        }
        let mut diff = if same {
            policy::PolicyChanges::default()
        } else {
            new.changes_from(&old)
        };
        diff.lines.extend(more.lines);
        diff.permissions |= more.permissions;
        diff.weakened.extend(more.weakened);
        let mut changes = vec![format!("reloaded: {trigger}")];
        changes.extend(diff.lines);
        changes.extend(not_applied);
        let version = new.version.clone();
        if !same {
            new.carry_buckets_from(&old);
            self.policy.replace(new);
        }
        tracing::warn!(from = %old.version, to = %version, changes = %changes.join("; "), "config reloaded");
        let event_type = if diff.permissions {
            EventType::PermissionChange
        } else {
            EventType::ConfigurationChange
        };
        let weakened = (!diff.weakened.is_empty())
            .then(|| format!("may weaken enforcement: {}", diff.weakened.join("; ")));
        if let Some(w) = &weakened {
            tracing::warn!(version = %version, "{w}");
        }
        let mut event = self.policy_event(
            event_type,
            Outcome::Success,
            changes,
            Some(version),
            weakened,
        );
        if !diff.weakened.is_empty() {
            event.risk_level = RiskLevel::High;
        } else if diff.permissions {
            event.risk_level = RiskLevel::Medium;
        }
        self.record_reload(&mut event);
        Some(event)
    }

    /// Records a reload that was refused: the running policy stays.
    pub fn reload_rejected(&self, error: &str) -> AuditEvent {
        tracing::error!(error = %error, "policy reload rejected; the running policy stays");
        let running = self.policy.current().version.clone();
        let mut event = self.policy_event(
            EventType::ConfigurationChange,
            Outcome::Refused,
            vec![format!(
                "rejected; policy {running} stays in force (and the gateway's credentials)"
            )],
            Some(running),
            Some(error.to_string()),
        );
        self.record_reload(&mut event);
        event
    }

    /// Records a reload's event as the proxy's own action: the identity it runs as
    /// (`auth_method` `process`), never a client's, who did not edit the file.
    fn record_reload(&self, event: &mut AuditEvent) {
        event.user_id = crate::commands::os_user();
        event.metadata.auth_method = Some("process".into());
        self.record_policy_event(event);
    }

    pub(super) fn record_policy_event(&self, event: &AuditEvent) {
        if let Err(e) = self.audit.record(event) {
            tracing::error!(error = %e, "policy change could not be recorded");
        }
    }

    pub(super) fn policy_event(
        &self,
        event_type: EventType,
        result: Outcome,
        changes: Vec<String>,
        version: Option<String>,
        reason: Option<String>,
    ) -> AuditEvent {
        let (event_id, timestamp) = self.ids.next();
        AuditEvent {
            event_id,
            timestamp,
            event_type,
            user_id: self.info.user_id.clone(),
            tool_name: None,
            action: "policy/reload".into(),
            result,
            metadata: Metadata {
                auth_method: Some(self.info.auth_method.into()),
                policy_version: version,
                changes,
                reason,
                ..Metadata::default()
            },
            risk_level: RiskLevel::Low,
            compliance_tags: Vec::new(),
            session_id: self.info.session_id.clone(),
            upstream: self.info.upstream.clone(),
            linked_event_id: None,
        }
    }
}
