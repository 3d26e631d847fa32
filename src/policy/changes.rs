//! What a policy reload changed, said so an auditor can read it from the trail alone: each
//! `[risk]` key's old and new value, the rules, tool entries and sequences added, removed or
//! changed by name, and whether the change may weaken enforcement (a reviewer's first
//! question: PCI DSS 10.2.2 asks that changes to audit and security settings be logged).

use std::collections::BTreeSet;

use serde_json::Value;

use super::Policy;

/// Longest old or new value quoted in a change line, in characters.
const QUOTED: usize = 160;

/// What changed between two policies.
#[derive(Debug, Default)]
pub struct PolicyChanges {
    /// One line per change: `risk.KEY added|removed|changed`, then its details
    /// (`risk.enabled: true -> false`, `risk.rule removed: "shell in echo"`), then the
    /// versions.
    pub lines: Vec<String>,
    /// Who may call what changed (`tool`, `roles`, `user_rate_per_minute`).
    pub permissions: bool,
    /// The changes that turn enforcement off or may weaken it (empty: none).
    pub weakened: Vec<String>,
}

impl Policy {
    /// What changed from `old` to this policy.
    pub fn changes_from(&self, old: &Policy) -> PolicyChanges {
        let keys: BTreeSet<&String> = old.sections.keys().chain(self.sections.keys()).collect();
        let mut out = PolicyChanges::default();
        for key in keys {
            let (was, now) = (old.sections.get(key), self.sections.get(key));
            let what = match (was, now) {
                (None, Some(_)) => "added",
                (Some(_), None) => "removed",
                (Some(a), Some(b)) if a != b => "changed",
                _ => continue,
            };
            out.permissions |= matches!(key.as_str(), "tool" | "roles" | "user_rate_per_minute");
            out.lines.push(format!("risk.{key} {what}"));
            let parse = |t: Option<&String>| t.and_then(|t| serde_json::from_str(t).ok());
            let (was, now): (Option<Value>, Option<Value>) = (parse(was), parse(now));
            detail(key, was.as_ref(), now.as_ref(), &mut out);
        }
        // Enforcement as resolved (defaults included), level by level: the direction of a
        // change, which the raw values cannot always tell.
        const LEVELS: [&str; 4] = ["low", "medium", "high", "critical"];
        for (i, level) in LEVELS.iter().enumerate() {
            let (a, b) = (old.actions[i], self.actions[i]);
            if (b as u8) < (a as u8) {
                out.weakened.push(format!(
                    "risk.actions.{level}: {} -> {}",
                    a.as_str(),
                    b.as_str()
                ));
            }
        }
        for (i, level) in LEVELS[1..].iter().enumerate() {
            let (a, b) = (old.levels[i], self.levels[i]);
            if b > a {
                out.weakened.push(format!(
                    "risk.levels.{level} raised {a} -> {b}: calls need a higher score to reach it"
                ));
            }
        }
        if (self.pin_tools as u8) < (old.pin_tools as u8) {
            out.weakened.push(format!(
                "risk.pin_tools: {:?} -> {:?}",
                old.pin_tools, self.pin_tools
            ));
        }
        out.lines.push(format!(
            "policy version {} -> {}",
            old.version, self.version
        ));
        out
    }
}

/// The details of one changed key, and whether it may weaken enforcement.
fn detail(key: &str, was: Option<&Value>, now: Option<&Value>, out: &mut PolicyChanges) {
    if matches!(key, "tool" | "rule" | "sequence") {
        let entries = |v: Option<&Value>| -> Vec<(String, Value)> {
            v.and_then(Value::as_array)
                .map(|a| a.iter().map(|e| (entry_name(e), e.clone())).collect())
                .unwrap_or_default()
        };
        let (was, now) = (entries(was), entries(now));
        let find = |list: &[(String, Value)], name: &str| {
            list.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone())
        };
        for (name, value) in &was {
            match find(&now, name) {
                None => {
                    out.lines.push(format!("risk.{key} removed: {name}"));
                    out.weakened.push(format!("risk.{key} {name} removed"));
                }
                Some(v) if &v != value => {
                    out.lines.push(format!("risk.{key} changed: {name}"));
                    out.weakened.push(format!("risk.{key} {name} changed"));
                }
                Some(_) => {}
            }
        }
        for (name, value) in &now {
            if find(&was, name).is_none() {
                out.lines.push(format!("risk.{key} added: {name}"));
                // The operator's score wins over the tool's own: a new entry can lower it.
                if key == "tool" && value.get("score").is_some() {
                    out.weakened.push(format!(
                        "risk.tool {name} added with a score (it may lower one)"
                    ));
                }
            }
        }
        return;
    }
    if key == "roles" {
        // Who holds which role names people: counts only, so that erasing a user leaves no
        // name in the trail's reload events.
        let users = |v: Option<&Value>| v.and_then(Value::as_object).map_or(0, |m| m.len());
        out.lines.push(format!(
            "risk.roles: {} users -> {} users",
            users(was),
            users(now)
        ));
        out.weakened
            .push("risk.roles changed: roles may grant tools; review the values".into());
        return;
    }
    out.lines
        .push(format!("risk.{key}: {} -> {}", quoted(was), quoted(now)));
    let flag = |v: Option<&Value>| v.and_then(Value::as_bool);
    let why = match key {
        "enabled" if flag(now) == Some(false) && flag(was) != Some(false) => {
            Some("risk.enabled turned off: no call is assessed or blocked")
        }
        "shadow" if flag(now) == Some(true) && flag(was) != Some(true) => {
            Some("risk.shadow turned on: nothing is blocked, only recorded")
        }
        "redact_results" if flag(was) == Some(true) && flag(now) != Some(true) => {
            Some("risk.redact_results turned off: results reach the client unmasked")
        }
        "user_rate_per_minute" => {
            let n = |v: Option<&Value>| v.and_then(Value::as_u64);
            match (n(was), n(now)) {
                (_, None) => Some("risk.user_rate_per_minute removed: no rate limit"),
                (Some(a), Some(b)) if b > a => Some("risk.user_rate_per_minute raised"),
                _ => None,
            }
        }
        // `actions`, `levels` and `pin_tools` are compared as resolved (above).
        "classifiers" => {
            let names = |v: Option<&Value>| -> Option<Vec<String>> {
                v?.as_array().map(|a| {
                    a.iter()
                        .filter_map(|c| c.as_str().map(str::to_string))
                        .collect()
                })
            };
            match (names(was), names(now)) {
                (Some(a), Some(b)) if a.iter().all(|c| b.contains(c)) => None,
                _ => Some("risk.classifiers: a class may no longer be looked for"),
            }
        }
        // Which way these go cannot be told from the values alone: a reviewer must look.
        "store" | "hmac_key_env" | "hmac_key_file" => {
            Some("may weaken how the trail keeps sensitive data; review the values")
        }
        _ => None,
    };
    if let Some(why) = why {
        out.weakened.push(if why.starts_with("risk.") {
            why.to_string()
        } else {
            format!("risk.{key} changed: {why}")
        });
    }
}

/// A rule's or sequence's `name`, a tool entry's `match`, else the entry itself.
fn entry_name(entry: &Value) -> String {
    match entry.get("name").or_else(|| entry.get("match")) {
        Some(Value::String(s)) => format!("{s:?}"),
        _ => quoted(Some(entry)),
    }
}

/// `value` as compact JSON, cut to [`QUOTED`] characters; `(not set)` when absent.
fn quoted(value: Option<&Value>) -> String {
    let Some(v) = value else {
        return "(not set)".into();
    };
    let text = v.to_string();
    match text.char_indices().nth(QUOTED) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(risk: &str) -> std::sync::Arc<Policy> {
        let text = format!("[audit]\nstore_dir = \"s\"\n[risk]\n{risk}\n");
        crate::config::Config::parse(std::path::Path::new("proxy.toml"), &text)
            .unwrap()
            .policy
    }

    /// Found by a hostile pass (F5): a reload started every rate-limit bucket full again, so
    /// a user past a rate got it back whenever the file was saved.
    #[test]
    fn a_reload_keeps_what_users_took_of_their_rates() {
        let risk =
            "user_rate_per_minute = 3\n[[risk.tool]]\nmatch = \"send_*\"\nrate_per_minute = 1\n";
        let call = |p: &Policy, tool: &str| {
            p.assess(&crate::policy::CallInput {
                user: "alice",
                roles: &[],
                tool,
                arguments: None,
                responses: None,
                annotations: None,
                history: &crate::policy::History::default(),
                now: std::time::SystemTime::now(),
                count_rates: true,
                tool_changed: false,
            })
            .reasons
            .iter()
            .any(|r| r.contains("exceeded"))
        };
        let old = policy(risk);
        assert!(!call(&old, "send_mail"));
        assert!(call(&old, "send_mail"), "the tool's rate is 1");
        assert!(!call(&old, "read"));
        // The same entries after an unrelated edit (another entry first: indices move).
        let new = policy(&risk.replace(
            "[[risk.tool]]",
            "[[risk.tool]]\nmatch = \"other\"\nscore = 5\n[[risk.tool]]",
        ));
        new.carry_buckets_from(&old);
        assert!(
            call(&new, "send_mail"),
            "the tool's bucket followed its entry"
        );
        // Two of the user's 3 per minute were taken before the reload (the refused call took
        // none): one is left.
        assert!(!call(&new, "read"));
        assert!(call(&new, "read"), "the user's bucket followed the reload");
    }

    #[test]
    fn turning_enforcement_off_is_named_with_its_values_and_flagged() {
        let old = policy(
            "[[risk.rule]]\nname = \"no shell\"\ntools = [\"echo\"]\npointer = \"/text\"\ndetect = \"shell_metacharacters\"\nlevel = \"critical\"\n",
        );
        let new = policy("enabled = false\nshadow = true\n");
        let c = new.changes_from(&old);
        for line in [
            "risk.enabled: (not set) -> false",
            "risk.shadow: (not set) -> true",
            "risk.rule removed: \"no shell\"",
        ] {
            assert!(c.lines.iter().any(|l| l == line), "{line}: {:#?}", c.lines);
        }
        assert_eq!(c.weakened.len(), 3, "{:#?}", c.weakened);
        // The other way round: nothing weakened.
        let back = old.changes_from(&new);
        assert!(back.weakened.is_empty(), "{:#?}", back.weakened);
        assert!(
            back.lines
                .iter()
                .any(|l| l == "risk.rule added: \"no shell\"")
        );
    }

    #[test]
    fn the_direction_of_a_change_decides_whether_it_weakens() {
        let strict = policy("[risk.actions]\ncritical = \"block\"\nhigh = \"confirm\"\n");
        let lax = policy("[risk.actions]\ncritical = \"alert\"\nhigh = \"confirm\"\n");
        let c = lax.changes_from(&strict);
        assert_eq!(c.weakened, ["risk.actions.critical: block -> alert"]);
        assert!(strict.changes_from(&lax).weakened.is_empty());
        // A tool entry whose score can lower every tool's, and roles, named by count only.
        let scored =
            policy("[[risk.tool]]\nmatch = \"*\"\nscore = 0\n[risk.roles]\nalice = [\"ops\"]\n");
        let c = scored.changes_from(&strict);
        assert!(
            c.weakened.iter().any(|w| w.contains("added with a score")),
            "{:#?}",
            c.weakened
        );
        assert!(
            c.lines
                .iter()
                .any(|l| l == "risk.roles: 0 users -> 1 users")
        );
        assert!(
            !c.lines.iter().any(|l| l.contains("alice")),
            "{:#?}",
            c.lines
        );
    }
}
