//! Risk assessment of tool calls: a score, a level, the reasons, and what to do about it.
//!
//! A [`Policy`] is compiled once from `[risk]` (see `settings.rs`) and shared by every session;
//! [`Policy::assess`] is a pure function of the call, the caller, the session's history and the
//! clock, except for the rate-limit buckets it draws from. The same classifiers scan results
//! ([`Policy::scan_result`]) and keep the trail itself free of readable secrets
//! ([`Policy::protect`]).

pub mod admit;
mod changes;
pub use changes::PolicyChanges;
pub mod classify;
pub mod embedded;
pub mod pins;
pub mod rules;
mod secrets;
pub(crate) mod settings;
pub mod strict;
pub mod tree;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Instant, SystemTime};

use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::audit::event::RiskLevel;
use crate::jsonrpc::names::same_name;
use crate::mcp::ToolAnnotations;
use classify::{Class, Classifiers, Finding};
use rules::{GlobPattern, Matcher, Pointer};

/// Ends each text in a combined scan; no classifier pattern spans a line break and a NUL.
const SEPARATOR: &str = "\n\u{0}\n";

/// Texts at least this long are scanned in place rather than copied into the combined scan.
const SCAN_IN_PLACE: usize = 4096;

/// Risk added to a call of a tool whose definition changed since it was pinned (`alert` mode).
pub const PIN_CHANGE_SCORE: u8 = 25;

/// Number of built-in classes, for per-class tables.
pub const CLASS_COUNT: usize = Class::ALL.len();

/// What the proxy does with a call at a given level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    /// Forward it.
    Allow,
    /// Forward it, and raise an alert in the log and the event.
    Alert,
    /// Ask the person at the client to approve this exact call first (an `elicitation/create`
    /// request, or in 2026-07-28 an input_required round); run it only on an explicit accept.
    Confirm,
    /// Answer with an error; the server never sees it.
    Block,
}

impl Action {
    /// The config and event spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Alert => "alert",
            Action::Confirm => "confirm",
            Action::Block => "block",
        }
    }
}

/// How a class of sensitive data found in arguments or results is kept in the trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreMode {
    /// Replaced by `[REDACTED:class]`.
    Mask,
    /// Replaced by `[HMAC:class:hex]`, a keyed hash analytics can still group by.
    Hash,
    /// Kept as sent (not allowed for secrets and card numbers).
    Clear,
}

/// Risk of a class found in the arguments, added once per class.
pub fn class_score(class: Class) -> u8 {
    match class {
        Class::Secret => 45,
        Class::PaymentCard => 40,
        Class::NationalId => 30,
        Class::Health | Class::Iban => 25,
        Class::Email | Class::Phone => 10,
    }
}

/// `[[risk.tool]]`: what the operator says about tools matching a glob.
#[derive(Debug)]
pub(crate) struct ToolPolicy {
    pattern: String,
    matcher: GlobPattern,
    score: Option<u8>,
    allow_users: Option<Vec<String>>,
    deny_users: Vec<String>,
    allow_roles: Option<Vec<String>>,
    deny_roles: Vec<String>,
    rate: Option<u32>,
    window: Option<Window>,
}

/// When a tool may be called: minutes of the day on some weekdays, at a fixed UTC offset.
#[derive(Debug)]
pub(crate) struct Window {
    start: u16,
    end: u16,
    days: [bool; 7],
    offset_minutes: i32,
    text: String,
}

impl Window {
    fn contains(&self, now: SystemTime) -> bool {
        let secs = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
            + i64::from(self.offset_minutes) * 60;
        let days = secs.div_euclid(86_400);
        // 1970-01-01 was a Thursday (index 4, Sunday = 0).
        let weekday = (days + 4).rem_euclid(7) as usize;
        let minute = (secs.rem_euclid(86_400) / 60) as u16;
        if self.start <= self.end {
            self.days[weekday] && minute >= self.start && minute < self.end
        } else if minute >= self.start {
            // Spans midnight: the evening belongs to today's window…
            self.days[weekday]
        } else {
            // …the small hours to yesterday's.
            self.days[(weekday + 6) % 7] && minute < self.end
        }
    }
}

/// `[[risk.rule]]`: a test on the arguments and what a match adds.
#[derive(Debug)]
pub(crate) struct Rule {
    name: String,
    tools: Vec<GlobPattern>,
    /// Index into [`Policy::pointers`]; `None`: every string and number.
    pointer: Option<usize>,
    matcher: Matcher,
    score: u8,
    level: Option<RiskLevel>,
}

/// Which tools a sequence rule watches after sensitive data was seen.
#[derive(Debug)]
pub(crate) enum ThenTools {
    /// Tools whose annotations do not say `openWorldHint: false` (the MCP default is open).
    OpenWorld,
    /// Tools matching these globs.
    Globs(Vec<GlobPattern>),
}

/// `[[risk.sequence]]`: sensitive data seen earlier in the session, then a tool that sends out.
#[derive(Debug)]
pub(crate) struct Sequence {
    name: String,
    after: Vec<&'static str>,
    then: ThenTools,
    score: u8,
    level: Option<RiskLevel>,
}

#[derive(Debug, Clone)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The compiled `[risk]` section.
#[derive(Debug)]
pub struct Policy {
    /// `enabled`: assess calls at all (off: only the annotation level is recorded).
    pub enabled: bool,
    /// `shadow`: evaluate and record "would block", never block.
    pub shadow: bool,
    /// A hash of the `[risk]` table, recorded with every decision.
    pub version: String,
    levels: [u8; 3],
    actions: [Action; 4],
    classifiers: Classifiers,
    /// What keeps the trail clean: the enabled classes, plus secrets and card numbers always.
    guard: Classifiers,
    /// Whether `guard` finds classes the assessment does not look for.
    pub guard_adds: bool,
    storage: [StoreMode; CLASS_COUNT],
    hmac_key: Option<Vec<u8>>,
    /// `hmac_key_env`: the variable holding the key, kept out of the servers' environment.
    pub hmac_key_env: Option<String>,
    /// Why the configured HMAC key cannot be used here, if so.
    key_problem: Option<String>,
    /// `redact_results`: mask sensitive data in results before the client sees them.
    pub redact_results: bool,
    /// `pin_tools`: what a changed tool definition does.
    pub pin_tools: pins::PinMode,
    /// `confirm_timeout_ms`: how long a call waits for the person at the client to confirm.
    pub confirm_timeout: std::time::Duration,
    role_of: HashMap<String, Vec<String>>,
    tools: Vec<ToolPolicy>,
    rules: Vec<Rule>,
    /// The distinct pointers of the rules, each resolved once per call.
    pointers: Vec<Pointer>,
    sequences: Vec<Sequence>,
    user_rate: Option<u32>,
    buckets: Mutex<HashMap<(String, usize), Bucket>>,
    sections: BTreeMap<String, String>,
}

/// The running policy, swapped whole on reload while sessions keep reading it.
#[derive(Debug, Clone)]
pub struct PolicyCell(Arc<RwLock<Arc<Policy>>>);

impl PolicyCell {
    /// Holds `policy` until the next [`PolicyCell::replace`].
    pub fn new(policy: Arc<Policy>) -> Self {
        PolicyCell(Arc::new(RwLock::new(policy)))
    }

    /// The policy in force now; a call keeps the one it started with.
    pub fn current(&self) -> Arc<Policy> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Puts `policy` in force for every later call; returns the one it replaces.
    pub fn replace(&self, policy: Arc<Policy>) -> Arc<Policy> {
        let mut slot = self.0.write().unwrap_or_else(|p| p.into_inner());
        std::mem::replace(&mut *slot, policy)
    }

    /// Masks a log line as the trail masks stored text, by the policy in force
    /// ([`crate::telemetry::mask_with`]): `None` when it holds no secret or card number.
    pub fn log_mask(&self) -> crate::telemetry::Mask {
        let cell = self.clone();
        Arc::new(move |line: &str| {
            let policy = cell.current();
            policy.guarded(line).then(|| policy.protect_text(line))
        })
    }
}

/// What one session has seen so far, for sequence rules.
#[derive(Debug, Default, Clone)]
pub struct History {
    /// Compliance tags of arguments and results so far, with the first tool that had each.
    pub tags: BTreeSet<(&'static str, String)>,
}

impl History {
    /// Notes that `tool` handled data with these tags.
    pub fn note(&mut self, tool: &str, tags: &[&'static str]) {
        for tag in tags {
            if !self.tags.iter().any(|(t, _)| t == tag) {
                self.tags.insert((tag, tool.to_string()));
            }
        }
    }
}

/// The call as the policy sees it.
#[derive(Debug, Clone, Copy)]
pub struct CallInput<'a> {
    /// The caller.
    pub user: &'a str,
    /// The roles the caller's credential carries (a gateway API key's or client
    /// certificate's `roles`, a JWT's `roles_claim`); `[risk.roles]` adds the user's own.
    /// Empty for the stdio wrapper.
    pub roles: &'a [String],
    /// The tool name.
    pub tool: &'a str,
    /// The arguments, parsed strictly (no duplicate keys).
    pub arguments: Option<&'a Value>,
    /// A 2026-07-28 retry's `inputResponses` (key → the client's answer), parsed strictly,
    /// without the proxy's own confirmation answer: judged with the arguments.
    pub responses: Option<&'a Value>,
    /// The tool's annotations from `tools/list`, if seen.
    pub annotations: Option<&'a ToolAnnotations>,
    /// The session so far.
    pub history: &'a History,
    /// The wall clock, for time windows.
    pub now: SystemTime,
    /// Whether rate limits draw tokens (not when replaying stored calls).
    pub count_rates: bool,
    /// Whether the tool's definition changed since it was pinned and no operator accepted it.
    pub tool_changed: bool,
}

/// The policy's verdict on one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// 0–100.
    pub score: u8,
    /// The level the score and rules give.
    pub level: RiskLevel,
    /// Every reason that added to the score or decided the action, in order.
    pub reasons: Vec<String>,
    /// Compliance tags of the data found, sorted.
    pub tags: Vec<&'static str>,
    /// What the policy says to do.
    pub action: Action,
    /// Whether the block is only recorded (`shadow = true`).
    pub shadowed: bool,
    /// The policy version that decided.
    pub version: String,
}

impl Decision {
    /// What the proxy does: a shadowed block lets the call through.
    pub fn enforced(&self) -> Action {
        if self.shadowed {
            Action::Alert
        } else {
            self.action
        }
    }

    /// The event spelling: `allow`, `alert`, `confirm`, `block`, or `would_confirm` and
    /// `would_block` in shadow mode.
    pub fn label(&self) -> &'static str {
        match (self.shadowed, self.action) {
            (true, Action::Confirm) => "would_confirm",
            (true, _) => "would_block",
            (false, a) => a.as_str(),
        }
    }
}

impl Policy {
    /// Whether the policy can run the proxy here: a configured HMAC key must be available.
    pub fn ready(&self) -> Result<(), String> {
        match &self.key_problem {
            Some(problem) => Err(problem.clone()),
            None => Ok(()),
        }
    }

    /// How data of `class` found in arguments and error texts is kept in the trail
    /// (`[risk.store]`), for the compliance checks.
    pub fn store_mode(&self, class: Class) -> StoreMode {
        self.storage[class as usize]
    }

    /// What the proxy does with a call at `level` (`[risk.actions]`).
    pub fn action_at(&self, level: RiskLevel) -> Action {
        self.action_for(level)
    }

    /// The level a score reaches.
    pub fn level_of(&self, score: u8) -> RiskLevel {
        level_at(self.levels, score)
    }

    fn action_for(&self, level: RiskLevel) -> Action {
        self.actions[level as usize]
    }

    fn tool_entries<'p>(&'p self, tool: &'p str) -> impl Iterator<Item = (usize, &'p ToolPolicy)> {
        self.tools
            .iter()
            .enumerate()
            .filter(move |(_, t)| t.matcher.is_match(tool))
    }

    /// Whether any tool has allow or deny lists (else `tools/list` is never rewritten).
    pub fn restricts_tools(&self) -> bool {
        self.tools.iter().any(|t| {
            t.allow_users.is_some()
                || t.allow_roles.is_some()
                || !t.deny_users.is_empty()
                || !t.deny_roles.is_empty()
        })
    }

    /// Why a `tools/call` of `name` is refused before it is assessed, if it is:
    /// [`admit::loose_tool_name`] against `listed` (the server's `tools/list`), or a name not
    /// listed that a policy entry names only in another case
    /// ([`Policy::governs_in_another_case`]): before any `tools/list` (a sessionless
    /// request's only call among them), a server matching names case-insensitively would run
    /// the tool that entry governs.
    pub fn loose_tool_name(&self, name: &str, listed: &HashSet<String>) -> Option<String> {
        if let Some(why) = admit::loose_tool_name(name, listed) {
            return Some(why);
        }
        if listed.contains(name) {
            return None;
        }
        let entry = self.governs_in_another_case(name)?;
        Some(format!(
            "the tool name {name:?} is not listed, and {entry} names it only in another case; servers that match names case-insensitively would run the tool that entry governs"
        ))
    }

    /// The first entry of `[[risk.tool]]`, `[[risk.rule]]` `tools` or `[[risk.sequence]]`
    /// `then_tools` that names `tool` by a glob without wildcards only in another case
    /// (`Delete_File` for `delete_file`; folded as [`same_name`] folds, `ſ` and the Kelvin
    /// sign included), if any: a server that matches tool names case-insensitively would run
    /// a tool the policy governs under a name none of its entries matches (MCP 2025-11-25
    /// "Tool names" leaves case to the server). Globs with wildcards are not judged so: a
    /// camelCase `readFile` is no twin of `*file*`. Never under `shadow`, which lets every
    /// call through.
    pub fn governs_in_another_case(&self, tool: &str) -> Option<String> {
        if self.shadow {
            return None;
        }
        let twin = |g: &GlobPattern| g.literal().is_some_and(|l| l != tool && same_name(tool, l));
        if let Some(t) = self.tools.iter().find(|t| twin(&t.matcher)) {
            return Some(format!("the [[risk.tool]] {:?}", t.pattern));
        }
        if let Some(r) = self.rules.iter().find(|r| r.tools.iter().any(twin)) {
            return Some(format!("the tools of [[risk.rule]] {:?}", r.name));
        }
        self.sequences
            .iter()
            .find(|q| matches!(&q.then, ThenTools::Globs(globs) if globs.iter().any(twin)))
            .map(|q| format!("the then_tools of [[risk.sequence]] {:?}", q.name))
    }

    /// Why `user` may never call `tool` (deny and allow lists), if so; `tools/list` hides it.
    ///
    /// The user's roles are those `[risk.roles]` gives the name together with `credential`,
    /// the roles of the credential the request came with (a gateway API key's, client
    /// certificate's or JWT's): either kind of role is denied by `deny_roles` and admitted
    /// by `allow_roles`.
    pub fn forbidden(&self, user: &str, credential: &[String], tool: &str) -> Option<String> {
        let configured: &[String] = self.role_of.get(user).map_or(&[], Vec::as_slice);
        let roles = configured.iter().chain(credential);
        for (_, t) in self.tool_entries(tool) {
            if t.deny_users.iter().any(|u| u == user) {
                return Some(format!("user {user:?} is denied tools {:?}", t.pattern));
            }
            if let Some(r) = roles.clone().find(|r| t.deny_roles.contains(r)) {
                return Some(format!("role {r:?} is denied tools {:?}", t.pattern));
            }
            let by_user = t.allow_users.as_ref().map(|l| l.iter().any(|u| u == user));
            let by_role = t
                .allow_roles
                .as_ref()
                .map(|l| roles.clone().any(|r| l.contains(r)));
            if (by_user.is_some() || by_role.is_some())
                && !by_user.unwrap_or(false)
                && !by_role.unwrap_or(false)
            {
                return Some(format!(
                    "user {user:?} is not in the allow list of tools {:?}",
                    t.pattern
                ));
            }
        }
        None
    }

    /// Assesses one call before it is forwarded.
    pub fn assess(&self, call: &CallInput<'_>) -> Decision {
        let mut score: u32 = 0;
        let mut floor = RiskLevel::Low;
        let mut reasons = Vec::new();
        let mut forced: Option<String> = None;

        // The tool: the operator's score wins; annotations are hints, used only without one.
        let configured = self
            .tool_entries(call.tool)
            .filter_map(|(_, t)| t.score)
            .max();
        match configured {
            Some(s) => {
                score += u32::from(s);
                reasons.push(format!("tool {:?} is configured at {s}", call.tool));
            }
            None => {
                let (s, why) = annotation_score(call.annotations);
                score += u32::from(s);
                reasons.push(format!("tool {:?} {why} ({s})", call.tool));
            }
        }

        // A rug pull: the server changed the tool since it was pinned.
        if call.tool_changed {
            match self.pin_tools {
                pins::PinMode::Block => {
                    forced = Some(format!(
                        "the definition of tool {:?} changed since it was pinned; an operator must review and accept it (mcp-audit-proxy tools accept {})",
                        call.tool, call.tool
                    ));
                }
                pins::PinMode::Alert => {
                    score += u32::from(PIN_CHANGE_SCORE);
                    reasons.push(format!(
                        "the definition of tool {:?} changed since it was pinned (+{PIN_CHANGE_SCORE})",
                        call.tool
                    ));
                }
                pins::PinMode::Off => {}
            }
        }

        // The caller: allow and deny lists, office hours, rates.
        if forced.is_none()
            && let Some(why) = self.forbidden(call.user, call.roles, call.tool)
        {
            forced = Some(why);
        }
        for (i, t) in self.tool_entries(call.tool) {
            if forced.is_some() {
                break;
            }
            if let Some(w) = &t.window
                && !w.contains(call.now)
            {
                forced = Some(format!(
                    "tools {:?} may only be called {}",
                    t.pattern, w.text
                ));
            } else if let Some(rate) = t.rate.filter(|_| call.count_rates)
                && !self.take_token(call.user, i, rate)
            {
                forced = Some(format!(
                    "user {:?} exceeded {rate} calls per minute of tools {:?}",
                    call.user, t.pattern
                ));
            }
        }
        if forced.is_none()
            && let Some(rate) = self.user_rate.filter(|_| call.count_rates)
            && !self.take_token(call.user, usize::MAX, rate)
        {
            forced = Some(format!(
                "user {:?} exceeded {rate} tool calls per minute",
                call.user
            ));
        }

        // The arguments, and the answers of a 2026-07-28 retry (`inputResponses`: what the
        // person or the client's model gave the tool, which it acts on as on its arguments;
        // helper-109 F2): rules and classifiers.
        let mut classes = [false; CLASS_COUNT];
        if call.arguments.is_some() || call.responses.is_some() {
            // Some servers decode JSON written inside a string argument (the Python SDK's
            // FastMCP does, for parameters that are not strings, as Python's `json` reads
            // it): rules and classifiers see that reading too ([`embedded`]). JSON in a string
            // that decodes only in a way the rules cannot judge blocks the call when there
            // are rules to judge it (helper-108 F1, F5: it ran unjudged).
            let mut decode = |v: Option<&Value>| match v.map(embedded::decode_all) {
                Some(Ok(d)) => d,
                Some(Err(why)) => {
                    if !self.rules.is_empty() && forced.is_none() {
                        forced = Some(why);
                    }
                    None
                }
                None => None,
            };
            let decoded = decode(call.arguments);
            let decoded_responses = decode(call.responses);
            // Everything scanned: the arguments and the answers, each also as decoded.
            let whole: Vec<&Value> = [
                call.arguments,
                decoded.as_ref(),
                call.responses,
                decoded_responses.as_ref(),
            ]
            .into_iter()
            .flatten()
            .collect();
            // Where pointers look: the arguments, and each answer's `content` (an
            // elicitation's form, a sampling's message), where an answer carries what a
            // tool would otherwise take as arguments.
            fn contents(r: Option<&Value>) -> Vec<&Value> {
                r.and_then(Value::as_object)
                    .into_iter()
                    .flat_map(|m| m.values().filter_map(|v| v.get("content")))
                    .collect()
            }
            let roots: Vec<&Value> = [call.arguments, decoded.as_ref()]
                .into_iter()
                .flatten()
                .chain(contents(call.responses))
                .chain(contents(decoded_responses.as_ref()))
                .collect();
            // Rules share pointers (and rules without one look at every string and number,
            // and at every member name: a tool that takes a map of paths to contents puts
            // the path in the name; helper-108 F3): each place is resolved once.
            let mut scalars = Vec::new();
            let mut names = Vec::new();
            if self.rules.iter().any(|r| r.pointer.is_none()) {
                for root in &whole {
                    walk_names(root, &mut |k| names.push(Value::String(k.to_string())));
                }
                for root in &whole {
                    walk_scalars(root, &mut |v| scalars.push(v));
                }
                scalars.extend(names.iter());
            }
            let reached: Vec<Vec<&Value>> = self
                .pointers
                .iter()
                .map(|p| {
                    let mut found = Vec::new();
                    for root in &roots {
                        p.each(root, &mut |v| found.push(v));
                    }
                    found
                })
                .collect();
            // Many rules share a detector: each runs once per value.
            let mut memo = Memo(HashMap::with_capacity_and_hasher(
                2 * scalars.len().max(16),
                Default::default(),
            ));
            for rule in &self.rules {
                if !rule.tools.is_empty() && !rule.tools.iter().any(|g| g.is_match(call.tool)) {
                    continue;
                }
                let values = rule.pointer.map_or(&scalars, |i| &reached[i]);
                if values.iter().any(|v| memo.matches(&rule.matcher, v)) {
                    score += u32::from(rule.score);
                    if let Some(l) = rule.level {
                        floor = floor.max(l);
                    }
                    reasons.push(match rule.level {
                        Some(l) => format!(
                            "rule {:?} matched (+{}, at least {})",
                            rule.name,
                            rule.score,
                            l.as_str()
                        ),
                        None => format!("rule {:?} matched (+{})", rule.name, rule.score),
                    });
                }
            }
            // What `\u` escapes hid from the raw text too (helper-108 F2).
            for v in &whole {
                classify_value(&self.classifiers, v, &mut classes);
            }
        }
        let mut tags: Vec<&'static str> = Vec::new();
        for class in Class::ALL {
            if classes[class as usize] {
                let s = class_score(class);
                score += u32::from(s);
                reasons.push(format!("arguments contain {} (+{s})", class.as_str()));
                if !tags.contains(&class.tag()) {
                    tags.push(class.tag());
                }
            }
        }
        tags.sort_unstable();

        // The session: sensitive data seen, then a tool that may send it out.
        for seq in &self.sequences {
            let Some((tag, from)) = call
                .history
                .tags
                .iter()
                .find(|(t, _)| seq.after.contains(t))
            else {
                continue;
            };
            let then = match &seq.then {
                ThenTools::OpenWorld => call
                    .annotations
                    .is_none_or(|a| a.open_world_hint != Some(false)),
                ThenTools::Globs(g) => g.iter().any(|g| g.is_match(call.tool)),
            };
            if then {
                score += u32::from(seq.score);
                if let Some(l) = seq.level {
                    floor = floor.max(l);
                }
                reasons.push(format!(
                    "sequence {:?}: {tag} data seen in {from:?} earlier in this session (+{})",
                    seq.name, seq.score
                ));
            }
        }

        let score = score.min(100) as u8;
        let level = self.level_of(score).max(floor);
        let action = match &forced {
            Some(why) => {
                reasons.push(why.clone());
                Action::Block
            }
            None => self.action_for(level),
        };
        Decision {
            score,
            level,
            reasons,
            tags,
            action,
            shadowed: self.shadow && matches!(action, Action::Block | Action::Confirm),
            version: self.version.clone(),
        }
    }

    /// Takes over a copy of `old`'s rate-limit buckets (on a reload): a user who used up a
    /// rate must not get it back because the file was saved. The per-user bucket carries
    /// over; a tool entry's follows the entry with the same `match` (the n-th of that match
    /// to the n-th). Copied, not moved: a call still assessed by `old` draws from its own. A
    /// rate lowered by the reload caps the tokens at the next call.
    pub fn carry_buckets_from(&self, old: &Policy) {
        // The position of each old entry in the new list: same pattern, same occurrence.
        let nth = |tools: &[ToolPolicy], i: usize| {
            let pattern = &tools[i].pattern;
            tools[..i].iter().filter(|t| t.pattern == *pattern).count()
        };
        let moved: Vec<Option<usize>> = (0..old.tools.len())
            .map(|i| {
                let (pattern, n) = (&old.tools[i].pattern, nth(&old.tools, i));
                (0..self.tools.len())
                    .filter(|&j| self.tools[j].pattern == *pattern)
                    .nth(n)
            })
            .collect();
        let taken = old
            .buckets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut mine = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        for ((user, entry), bucket) in taken {
            let entry = if entry == usize::MAX {
                Some(usize::MAX)
            } else {
                moved.get(entry).copied().flatten()
            };
            if let Some(entry) = entry {
                mine.insert((user, entry), bucket);
            }
        }
    }

    fn take_token(&self, user: &str, entry: usize, per_minute: u32) -> bool {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let capacity = f64::from(per_minute);
        let bucket = buckets.entry((user.to_string(), entry)).or_insert(Bucket {
            tokens: capacity,
            at: now,
        });
        let refill = now.duration_since(bucket.at).as_secs_f64() * capacity / 60.0;
        bucket.tokens = (bucket.tokens + refill).min(capacity);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// The classes found in a result (or any other value), for its tags and risk.
    pub fn scan_result(&self, value: &Value) -> Vec<Class> {
        let mut classes = [false; CLASS_COUNT];
        classify_value(&self.classifiers, value, &mut classes);
        Class::ALL
            .into_iter()
            .filter(|c| classes[*c as usize])
            .collect()
    }

    /// [`Policy::scan_result`] for a result read as a [`tree::Node`] (its strings borrowed, no
    /// `Value` built): the same texts in the same order, so the same classes.
    pub fn scan_tree(&self, node: &tree::Node<'_>) -> Vec<Class> {
        let mut classes = [false; CLASS_COUNT];
        classify_node(&self.classifiers, node, &mut classes);
        Class::ALL
            .into_iter()
            .filter(|c| classes[*c as usize])
            .collect()
    }

    /// `value` with sensitive data replaced as `[risk.store]` says, and the classes replaced;
    /// `None` when nothing needed replacing.
    pub fn protect(&self, value: &Value) -> Option<(Value, Vec<Class>)> {
        self.rewrite(value, &|class| self.storage[class as usize])
    }

    /// `value` with every finding masked, for results the client sees (`redact_results`).
    pub fn redact(&self, value: &Value) -> Option<(Value, Vec<Class>)> {
        self.rewrite(value, &|_| StoreMode::Mask)
    }

    /// The classes found in raw text (a result too deep to parse, for its tags).
    pub fn scan_text(&self, text: &str) -> Vec<Class> {
        let mut findings = Vec::new();
        self.classifiers.scan(text, &mut findings);
        Class::ALL
            .into_iter()
            .filter(|c| findings.iter().any(|f| f.class == *c))
            .collect()
    }

    /// Whether `text` carries anything the trail must not keep, or the client must not see
    /// under `redact_results`.
    pub fn guarded(&self, text: &str) -> bool {
        self.guard.any(text)
    }

    /// Whether `text` holds a secret or a card number (no kept handle may: helper-123 R2).
    pub fn holds_secret_or_card(&self, text: &str) -> bool {
        let mut findings = Vec::new();
        self.guard.scan(text, &mut findings);
        findings
            .iter()
            .any(|f| matches!(f.class, Class::Secret | Class::PaymentCard))
    }

    /// `text` as it may be stored (error messages of results).
    pub fn protect_text(&self, text: &str) -> String {
        let (mut classes, mut changed) = ([false; CLASS_COUNT], false);
        self.rewrite_text(
            text,
            &|class| self.storage[class as usize],
            &mut classes,
            &mut changed,
        )
        .unwrap_or_else(|| text.to_string())
    }

    fn rewrite(
        &self,
        value: &Value,
        mode: &dyn Fn(Class) -> StoreMode,
    ) -> Option<(Value, Vec<Class>)> {
        // Most values carry nothing: one combined scan says so before any copy is made.
        let mut classes = [false; CLASS_COUNT];
        classify_value(&self.guard, value, &mut classes);
        // And what `\u` escapes hide in JSON written inside a string (helper-108 F2: a card
        // number escaped digit by digit was stored readable).
        walk_escaped_json(value, embedded::STRING_LEVELS, &mut |inner| {
            classify_value(&self.guard, inner, &mut classes);
        });
        if !Class::ALL
            .into_iter()
            .any(|c| classes[c as usize] && mode(c) != StoreMode::Clear)
        {
            return None;
        }
        let mut classes = [false; CLASS_COUNT];
        let mut changed = false;
        let out = self.rewrite_value(
            value,
            mode,
            &mut classes,
            &mut changed,
            embedded::STRING_LEVELS,
        );
        changed.then(|| {
            let found = Class::ALL
                .into_iter()
                .filter(|c| classes[*c as usize])
                .collect();
            (out, found)
        })
    }

    fn rewrite_text(
        &self,
        text: &str,
        mode: &dyn Fn(Class) -> StoreMode,
        classes: &mut [bool; CLASS_COUNT],
        changed: &mut bool,
    ) -> Option<String> {
        let mut findings = Vec::new();
        self.guard.scan(text, &mut findings);
        findings.retain(|f| mode(f.class) != StoreMode::Clear);
        if findings.is_empty() {
            return None;
        }
        for f in &findings {
            classes[f.class as usize] = true;
        }
        *changed = true;
        Some(self.replace(text, &findings, mode))
    }

    fn rewrite_value(
        &self,
        value: &Value,
        mode: &dyn Fn(Class) -> StoreMode,
        classes: &mut [bool; CLASS_COUNT],
        changed: &mut bool,
        levels: u8,
    ) -> Value {
        match value {
            Value::String(s) => {
                // JSON inside the string whose escapes hide something: masked in what it
                // decodes to, and the string written again from that (the stored text is
                // no longer the one sent; it was not byte for byte in any case once masked).
                if levels > 0
                    && let Some(inner) = escaped_json(s)
                {
                    let mut inner_changed = false;
                    let out =
                        self.rewrite_value(&inner, mode, classes, &mut inner_changed, levels - 1);
                    if inner_changed {
                        *changed = true;
                        return Value::String(out.to_string());
                    }
                }
                let Some(masked) = self.rewrite_text(s, mode, classes, changed) else {
                    return value.clone();
                };
                // JSON in a text item (`{"card": 4111…}`) masked as text may no longer be
                // JSON (an unquoted marker: helper-120 F1) or hold one key twice (two
                // addresses masked alike: helper-121 F6): masked in what it decodes to and
                // written again, unless that leaves something the text's scan found.
                if levels > 0
                    && embedded::looks_like_json(s)
                    && let embedded::Embedded::Json(inner) = embedded::read(s)
                {
                    let out = self
                        .rewrite_value(&inner, mode, classes, &mut false, levels - 1)
                        .to_string();
                    if !self.guard.any(&out) {
                        return Value::String(out);
                    }
                }
                Value::String(masked)
            }
            Value::Number(n) => self
                .rewrite_text(&n.to_string(), mode, classes, changed)
                .map_or_else(|| value.clone(), Value::String),
            Value::Array(items) => match string_run(items) {
                Some(texts) => self
                    .rewrite_run(&texts, mode, classes, changed)
                    .map_or_else(
                        || value.clone(),
                        |out| Value::Array(out.into_iter().map(Value::String).collect()),
                    ),
                None => Value::Array(
                    items
                        .iter()
                        .map(|v| self.rewrite_value(v, mode, classes, changed, levels))
                        .collect(),
                ),
            },
            Value::Object(map) => {
                let mut out = serde_json::Map::new();
                for (k, v) in map {
                    let mut key = self
                        .rewrite_text(k, mode, classes, changed)
                        .unwrap_or_else(|| k.clone());
                    let value = if let Value::String(s) = v
                        && self.guard.field_secret(k, s)
                    {
                        // The key says the whole value is a credential.
                        let whole = Finding {
                            class: Class::Secret,
                            start: 0,
                            end: s.len(),
                        };
                        classes[Class::Secret as usize] = true;
                        *changed = true;
                        Value::String(self.replace(s, &[whole], mode))
                    } else if let Some(joined) = embedded::wrapped_base64(map, k, v) {
                        // Scanned joined: a secret may straddle a line break (helper-123 R1).
                        let mut inner = false;
                        let out = self.rewrite_value(&joined, mode, classes, &mut inner, levels);
                        *changed |= inner;
                        if inner { out } else { v.clone() }
                    } else {
                        self.rewrite_value(v, mode, classes, changed, levels)
                    };
                    // Keys masked to one text (`{"bob@…": 1, "carol@…": 2}`) are numbered,
                    // not merged: no member is lost (helper-120 F1).
                    let masked = key.clone();
                    let mut n = 2;
                    while out.contains_key(&key) {
                        key = format!("{masked}#{n}");
                        n += 1;
                    }
                    out.insert(key, embedded::base64_kept(map, k, v, value));
                }
                Value::Object(out)
            }
            Value::Bool(_) | Value::Null => value.clone(),
        }
    }

    /// A run of strings (an array of 2 to 64 strings and nothing else, as
    /// [`string_run`] reads it), each string rewritten on its own, and what the strings'
    /// concatenation shows (a secret split across strings, a value whose label is in the
    /// string before) masked piece by piece: the array keeps its length and each string
    /// keeps what is not sensitive. A finding of the concatenation inside one string is
    /// masked there. One that crosses into the next string is masked in every string it
    /// touches, unless it is personal data that merely runs on from a finding of its own
    /// class in one of them (an e-mail address ending one string does not swallow the start
    /// of the next); secrets are masked across whatever they touch. `None` when nothing
    /// needed replacing.
    fn rewrite_run(
        &self,
        texts: &[&str],
        mode: &dyn Fn(Class) -> StoreMode,
        classes: &mut [bool; CLASS_COUNT],
        changed: &mut bool,
    ) -> Option<Vec<String>> {
        let scan = |text: &str| {
            let mut found = Vec::new();
            self.guard.scan(text, &mut found);
            found.retain(|f| mode(f.class) != StoreMode::Clear);
            found
        };
        let alone: Vec<Vec<Finding>> = texts.iter().map(|t| scan(t)).collect();
        let mut own = alone.clone();
        // Where each string starts in the concatenation, and where the last one ends.
        let starts: Vec<usize> = std::iter::once(0)
            .chain(texts.iter().scan(0, |at, t| {
                *at += t.len();
                Some(*at)
            }))
            .collect();
        for f in scan(&texts.concat()) {
            let first = starts.partition_point(|&s| s <= f.start).saturating_sub(1);
            let last = starts.partition_point(|&s| s < f.end).saturating_sub(1);
            let runs_on = first < last
                && f.class != Class::Secret
                && (first..=last).any(|e| {
                    alone[e].iter().any(|o| {
                        o.class == f.class
                            && starts[e] + o.start < f.end
                            && f.start < starts[e] + o.end
                    })
                });
            if runs_on {
                continue;
            }
            // The finding's piece in each string it touches, in that string's offsets.
            for e in first..=last.max(first) {
                let start = f.start.max(starts[e]) - starts[e];
                let end = f.end.min(starts[e + 1]) - starts[e];
                if start < end {
                    own[e].push(Finding {
                        class: f.class,
                        start,
                        end,
                    });
                }
            }
        }
        if own.iter().all(Vec::is_empty) {
            return None;
        }
        *changed = true;
        Some(
            texts
                .iter()
                .zip(&own)
                .map(|(text, found)| {
                    found.iter().for_each(|f| classes[f.class as usize] = true);
                    if found.is_empty() {
                        text.to_string()
                    } else {
                        self.replace(text, found, mode)
                    }
                })
                .collect(),
        )
    }

    fn replace(
        &self,
        text: &str,
        findings: &[Finding],
        mode: &dyn Fn(Class) -> StoreMode,
    ) -> String {
        classify::replace_findings(text, findings, |class, found| {
            match (mode(class), &self.hmac_key) {
                (StoreMode::Hash, Some(key)) => {
                    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
                        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
                    mac.update(class.as_str().as_bytes());
                    mac.update(b"\0");
                    mac.update(found.as_bytes());
                    format!("[HMAC:{class}:{}]", hex(&mac.finalize().into_bytes()[..8]))
                }
                _ => format!("[REDACTED:{class}]"),
            }
        })
    }
}

/// Lowercase hex of bytes: the form of every hash the proxy shows or stores.
pub fn hex(bytes: &[u8]) -> String {
    // A table, not `write!("{b:02x}")`: the formatter cost about 150 instructions a byte.
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(2 * bytes.len());
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    out
}

/// The first `len` bytes of the SHA-256 of `bytes`, in hex.
pub fn sha256_hex(bytes: &[u8], len: usize) -> String {
    use sha2::Digest;
    hex(&Sha256::digest(bytes)[..len])
}

/// The base score of a tool the operator did not score, from its annotations.
fn annotation_score(annotations: Option<&ToolAnnotations>) -> (u8, &'static str) {
    let Some(a) = annotations else {
        return (30, "has no annotations seen in tools/list");
    };
    let open = a.open_world_hint != Some(false);
    if a.read_only_hint == Some(true) {
        if open {
            (15, "is read-only and reaches an open world (annotations)")
        } else {
            (5, "is read-only (annotations)")
        }
    } else if a.destructive_hint.unwrap_or(true) {
        (55, "may be destructive (annotations)")
    } else if open {
        (35, "writes and reaches an open world (annotations)")
    } else {
        (30, "writes (annotations)")
    }
}

/// The level of a tool from its annotations alone, at the default levels (policy disabled).
pub fn tool_risk(annotations: Option<&ToolAnnotations>) -> RiskLevel {
    level_at(DEFAULT_LEVELS, annotation_score(annotations).0)
}

/// The default lowest scores of medium, high and critical.
pub(crate) const DEFAULT_LEVELS: [u8; 3] = [25, 50, 80];

fn level_at(levels: [u8; 3], score: u8) -> RiskLevel {
    match score {
        s if s >= levels[2] => RiskLevel::Critical,
        s if s >= levels[1] => RiskLevel::High,
        s if s >= levels[0] => RiskLevel::Medium,
        _ => RiskLevel::Low,
    }
}

/// Detector results of one assessment, by value address and detector.
#[derive(Default)]
struct Memo(HashMap<(usize, rules::Detector), bool, std::hash::BuildHasherDefault<AddressHasher>>);

/// A hasher for addresses: they are already unique, only the bits need spreading.
#[derive(Default)]
struct AddressHasher(u64);

impl std::hash::Hasher for AddressHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
}

impl Memo {
    fn matches(&mut self, matcher: &Matcher, v: &Value) -> bool {
        match (matcher, v) {
            (Matcher::Detect(d), Value::String(s)) => *self
                .0
                .entry((std::ptr::from_ref(v) as usize, *d))
                .or_insert_with(|| d.detects(s)),
            _ => matcher.matches(v),
        }
    }
}

/// What a string decodes to when it holds JSON with a `\` escape: the only JSON whose
/// decoding shows a scan what its raw text does not (`"\u0034"` is `4`).
fn escaped_json(s: &str) -> Option<Value> {
    if !embedded::looks_like_json(s) || memchr::memchr(b'\\', s.as_bytes()).is_none() {
        return None;
    }
    match embedded::read(s) {
        embedded::Embedded::Json(v) => Some(v),
        _ => None,
    }
}

/// Calls `f` with what each string holding escaped JSON decodes to ([`escaped_json`]), at
/// any depth and up to `levels` strings deep.
fn walk_escaped_json(value: &Value, levels: u8, f: &mut impl FnMut(&Value)) {
    if levels == 0 {
        return;
    }
    match value {
        Value::String(s) => {
            if let Some(inner) = escaped_json(s) {
                f(&inner);
                walk_escaped_json(&inner, levels - 1, f);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| walk_escaped_json(v, levels, f)),
        Value::Object(map) => map.values().for_each(|v| walk_escaped_json(v, levels, f)),
        _ => {}
    }
}

/// Every member name at any depth.
fn walk_names<'v>(value: &'v Value, f: &mut impl FnMut(&'v str)) {
    match value {
        Value::Array(items) => items.iter().for_each(|v| walk_names(v, f)),
        Value::Object(map) => map.iter().for_each(|(k, v)| {
            f(k);
            walk_names(v, f);
        }),
        _ => {}
    }
}

/// Every string and number at any depth.
fn walk_scalars<'v>(value: &'v Value, f: &mut impl FnMut(&'v Value)) {
    match value {
        Value::String(_) | Value::Number(_) => f(value),
        Value::Array(items) => items.iter().for_each(|v| walk_scalars(v, f)),
        Value::Object(map) => map.values().for_each(|v| walk_scalars(v, f)),
        _ => {}
    }
}

/// Marks the classes `classifiers` find anywhere in `value`: strings, keys, numbers written as
/// text, and arrays of strings joined (a secret split across elements). One scan covers all
/// texts, each ended by a line break and a NUL that no pattern crosses, so the classifiers'
/// fixed cost is paid once per call, not once per string.
///
/// A text of [`SCAN_IN_PLACE`] bytes or more is scanned where it is, on its own: copying it
/// would cost more than a scan's fixed cost, and the separator makes the result the same.
fn classify_value(classifiers: &Classifiers, value: &Value, classes: &mut [bool; CLASS_COUNT]) {
    classify_strings(
        classifiers,
        |f| walk_strings(value, &mut { f }),
        || named_secret(classifiers, value),
        classes,
    );
}

/// The classes found in the strings `walk` hands out; `named` looks for secrets by their
/// key names when no secret was found by shape.
fn classify_strings(
    classifiers: &Classifiers,
    walk: impl FnOnce(&mut dyn FnMut(&str)),
    named: impl FnOnce() -> bool,
    classes: &mut [bool; CLASS_COUNT],
) {
    let mut buffer = String::new();
    let mut findings = Vec::new();
    walk(&mut |text| scan_one(classifiers, text, &mut buffer, &mut findings));
    classifiers.scan(&buffer, &mut findings);
    for f in &findings {
        classes[f.class as usize] = true;
    }
    let secret = Class::Secret as usize;
    if !classes[secret] {
        classes[secret] = named();
    }
}

/// [`classify_value`] over a [`tree::Node`].
fn classify_node(
    classifiers: &Classifiers,
    node: &tree::Node<'_>,
    classes: &mut [bool; CLASS_COUNT],
) {
    classify_strings(
        classifiers,
        |f| walk_node_strings(node, &mut { f }),
        || named_secret_node(classifiers, node),
        classes,
    );
}

/// One text of a value: scanned in place if long, else added to the combined scan's buffer.
fn scan_one(
    classifiers: &Classifiers,
    text: &str,
    buffer: &mut String,
    findings: &mut Vec<Finding>,
) {
    if text.len() >= SCAN_IN_PLACE {
        classifiers.scan(text, findings);
    } else {
        buffer.push_str(text);
        buffer.push_str(SEPARATOR);
    }
}

/// [`named_secret`] over a [`tree::Node`].
fn named_secret_node(classifiers: &Classifiers, node: &tree::Node<'_>) -> bool {
    use tree::Node;
    match node {
        Node::Object(map) => map.iter().any(|(k, v)| match v {
            Node::Str(s) => classifiers.field_secret(k, s),
            _ => named_secret_node(classifiers, v),
        }),
        Node::Array(items) => items.iter().any(|v| named_secret_node(classifiers, v)),
        _ => false,
    }
}

/// [`walk_strings`] over a [`tree::Node`]: the same texts in the same order.
fn walk_node_strings(node: &tree::Node<'_>, f: &mut impl FnMut(&str)) {
    use tree::Node;
    match node {
        Node::Str(s) => f(s),
        Node::Number(n) => f(&n.to_string()),
        Node::Array(items) => {
            items.iter().for_each(|v| walk_node_strings(v, f));
            if items.len() >= 2
                && items.len() <= 64
                && items.iter().all(|v| matches!(v, Node::Str(_)))
            {
                let joined: String = items
                    .iter()
                    .filter_map(|v| match v {
                        Node::Str(s) => Some(&**s),
                        _ => None,
                    })
                    .collect();
                f(&joined);
            }
        }
        Node::Object(map) => {
            for (k, v) in map {
                f(k);
                walk_node_strings(v, f);
            }
        }
        _ => {}
    }
}

/// Whether a string at any depth is a credential by the key it is stored under
/// (`{"client_secret": "…"}`), which a scan of the string alone cannot know.
fn named_secret(classifiers: &Classifiers, value: &Value) -> bool {
    match value {
        Value::Object(map) => map.iter().any(|(k, v)| match v {
            Value::String(s) => classifiers.field_secret(k, s),
            _ => named_secret(classifiers, v),
        }),
        Value::Array(items) => items.iter().any(|v| named_secret(classifiers, v)),
        _ => false,
    }
}

/// Every text a classifier should see: strings, keys, numbers, joined string arrays.
fn walk_strings(value: &Value, f: &mut impl FnMut(&str)) {
    match value {
        Value::String(s) => f(s),
        Value::Number(n) => f(&n.to_string()),
        Value::Array(items) => {
            items.iter().for_each(|v| walk_strings(v, f));
            if let Some(joined) = joined_strings(items) {
                f(&joined);
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                f(k);
                walk_strings(v, f);
            }
        }
        _ => {}
    }
}

/// The strings of an array of 2 to 64 strings and nothing else: a run in which a secret may
/// be split across elements.
fn string_run(items: &[Value]) -> Option<Vec<&str>> {
    if items.len() < 2 || items.len() > 64 {
        return None;
    }
    items.iter().map(Value::as_str).collect()
}

/// The concatenation of an array of two or more strings (and nothing else).
fn joined_strings(items: &[Value]) -> Option<String> {
    string_run(items).map(|texts| texts.concat())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lowercase_two_digits_a_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff, 0x10]), "000fa5ff10");
        assert_eq!(hex(&[]), "");
    }

    #[test]
    fn levels_follow_annotations_and_mcp_defaults() {
        let a = |ro, de, ow| ToolAnnotations {
            read_only_hint: ro,
            destructive_hint: de,
            idempotent_hint: None,
            open_world_hint: ow,
        };
        let table = [
            (None, RiskLevel::Medium),
            (Some(a(Some(true), Some(true), None)), RiskLevel::Low),
            (Some(a(None, None, None)), RiskLevel::High),
            (
                Some(a(Some(false), Some(true), Some(false))),
                RiskLevel::High,
            ),
            (Some(a(Some(false), Some(false), None)), RiskLevel::Medium),
            (
                Some(a(Some(false), Some(false), Some(false))),
                RiskLevel::Medium,
            ),
        ];
        for (annotations, expected) in table {
            assert_eq!(tool_risk(annotations.as_ref()), expected, "{annotations:?}");
        }
    }

    #[test]
    fn long_texts_scanned_in_place_find_what_the_combined_scan_finds() {
        let all = Classifiers::new(&Class::ALL);
        let samples = [
            "write to jane.doe@example.com please",
            "card 4111 1111 1111 1111 on file",
            "key AKIAIOSFODNN7EXAMPLE here",
            "password=hunter2hunter2",
            "diagnosed with diabetes",
            "nothing at all",
        ];
        for sample in samples {
            let short = serde_json::json!({"text": sample, "n": 1});
            let padding = "x".repeat(SCAN_IN_PLACE);
            let long = serde_json::json!({"text": format!("{padding} {sample}"), "n": 1});
            let (mut a, mut b) = ([false; CLASS_COUNT], [false; CLASS_COUNT]);
            classify_value(&all, &short, &mut a);
            classify_value(&all, &long, &mut b);
            assert_eq!(a, b, "{sample}");
        }
    }

    #[test]
    fn trees_and_values_of_one_text_find_the_same_classes() {
        let all = Classifiers::new(&Class::ALL);
        let long = "x".repeat(SCAN_IN_PLACE);
        let texts = [
            r#"{"content":[{"type":"text","text":"write to jane.doe@example.com"}]}"#.to_string(),
            r#"{"b":"123-45-6789","a":"ssn"}"#.to_string(),
            r#"{"a":"123-45-6789","b":"ssn"}"#.to_string(),
            r#"{"k":"AKIAIOSFODNN7EXAMPLE","k":"nothing"}"#.to_string(),
            r#"{"parts":["AKIAIOSFOD","NN7EXAMPLE"],"n":4111111111111111}"#.to_string(),
            r#"{"client_secret":"s3cr3t-V4lue-9","list":[1.5,"a",{"x":null}]}"#.to_string(),
            r#"{"t":"card 4111 1111 1111 1111","esc":"password=hunter2hunter2"}"#.to_string(),
            format!(r#"{{"z":"{long} diagnosed with diabetes","a":"mrn: 12345678"}}"#),
            r#"[["s","e","c"],"plain",true,-7]"#.to_string(),
        ];
        for text in &texts {
            let tree = tree::Tree::parse(text).unwrap();
            let value: Value = serde_json::from_str(text).unwrap();
            let (mut a, mut b) = ([false; CLASS_COUNT], [false; CLASS_COUNT]);
            classify_value(&all, &value, &mut a);
            classify_node(&all, &tree.root, &mut b);
            assert_eq!(a, b, "{text}");
        }
    }

    #[test]
    fn windows_follow_weekdays_offsets_and_midnight() {
        // 2026-11-27 is a Friday; 12:00 UTC.
        let friday_noon = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_795_780_800);
        let w = |start, end, days: [bool; 7], offset| Window {
            start,
            end,
            days,
            offset_minutes: offset,
            text: String::new(),
        };
        let weekdays = [false, true, true, true, true, true, false];
        assert!(w(9 * 60, 18 * 60, weekdays, 0).contains(friday_noon));
        assert!(!w(9 * 60, 11 * 60, weekdays, 0).contains(friday_noon));
        // At +13:00 it is already Saturday 01:00.
        assert!(!w(9 * 60, 18 * 60, weekdays, 13 * 60).contains(friday_noon));
        // A night window 22:00-02:00 holds 01:00 Saturday through Friday's evening.
        let fridays = [false, false, false, false, false, true, false];
        assert!(w(22 * 60, 2 * 60, fridays, 13 * 60).contains(friday_noon));
    }
}
