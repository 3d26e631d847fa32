//! The `[risk]` part of `proxy.toml`: raw serde structs (unknown keys refused) compiled into a
//! [`Policy`]. Globs and regexes are compiled here, once; every error names the line.

use std::collections::HashMap;
use std::path::Path;

use regex::Regex;
use serde::Deserialize;
use toml::Spanned;

use super::classify::{Class, Classifiers};
use super::pins::PinMode;
use super::rules::{Detector, GlobPattern, Matcher, Pointer};
use super::{
    Action, CLASS_COUNT, Policy, Rule, Sequence, StoreMode, ThenTools, ToolPolicy, Window,
};
use crate::audit::event::RiskLevel;
use crate::config::source::{ConfigError, Source};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRisk {
    enabled: Option<bool>,
    shadow: Option<bool>,
    classifiers: Option<Vec<Spanned<String>>>,
    redact_results: Option<bool>,
    hmac_key_env: Option<Spanned<String>>,
    hmac_key_file: Option<Spanned<String>>,
    user_rate_per_minute: Option<Spanned<u64>>,
    pin_tools: Option<Spanned<String>>,
    confirm_timeout_ms: Option<Spanned<u64>>,
    #[serde(default)]
    levels: RawLevels,
    #[serde(default)]
    actions: RawActions,
    #[serde(default)]
    store: RawStore,
    #[serde(default)]
    roles: HashMap<String, Vec<String>>,
    #[serde(default)]
    tool: Vec<RawTool>,
    #[serde(default)]
    rule: Vec<RawRule>,
    #[serde(default)]
    sequence: Vec<RawSequence>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLevels {
    medium: Option<Spanned<u64>>,
    high: Option<Spanned<u64>>,
    critical: Option<Spanned<u64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawActions {
    low: Option<Spanned<String>>,
    medium: Option<Spanned<String>>,
    high: Option<Spanned<String>>,
    critical: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    email: Option<Spanned<String>>,
    phone: Option<Spanned<String>>,
    national_id: Option<Spanned<String>>,
    iban: Option<Spanned<String>>,
    payment_card: Option<Spanned<String>>,
    health: Option<Spanned<String>>,
    secret: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTool {
    #[serde(rename = "match")]
    pattern: Spanned<String>,
    score: Option<Spanned<u64>>,
    allow_users: Option<Vec<String>>,
    deny_users: Option<Vec<String>>,
    allow_roles: Option<Vec<String>>,
    deny_roles: Option<Vec<String>>,
    rate_per_minute: Option<Spanned<u64>>,
    hours: Option<Spanned<String>>,
    days: Option<Vec<Spanned<String>>>,
    utc_offset: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Spanned<String>,
    tools: Option<Vec<Spanned<String>>>,
    pointer: Option<Spanned<String>>,
    regex: Option<Spanned<String>>,
    glob: Option<Spanned<String>>,
    path_outside: Option<Spanned<Vec<String>>>,
    any_of: Option<Spanned<Vec<String>>>,
    none_of: Option<Spanned<Vec<String>>>,
    gt: Option<Spanned<f64>>,
    ge: Option<Spanned<f64>>,
    lt: Option<Spanned<f64>>,
    le: Option<Spanned<f64>>,
    detect: Option<Spanned<String>>,
    score: Option<Spanned<u64>>,
    level: Option<RiskLevel>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSequence {
    name: Spanned<String>,
    after_tags: Spanned<Vec<String>>,
    then_tools: Option<Vec<Spanned<String>>>,
    score: Option<Spanned<u64>>,
    level: Option<RiskLevel>,
}

/// The tags a sequence rule may name.
const TAGS: [&str; 4] = ["gdpr", "hipaa", "pci_dss", "secrets"];

/// Compiles the `[risk]` table; `table` is the same table as TOML, hashed for the version.
pub(crate) fn compile(
    at: &Source<'_>,
    raw: RawRisk,
    table: Option<&toml::Value>,
) -> Result<Policy, ConfigError> {
    let version = version_of(table);
    let levels_span = raw
        .levels
        .medium
        .as_ref()
        .or(raw.levels.high.as_ref())
        .or(raw.levels.critical.as_ref())
        .map_or(0..0, Spanned::span);
    let [medium, high, critical] = super::DEFAULT_LEVELS.map(u64::from);
    let levels = [
        at.ranged("risk.levels.medium", raw.levels.medium, medium, 1..=100)?,
        at.ranged("risk.levels.high", raw.levels.high, high, 1..=100)?,
        at.ranged(
            "risk.levels.critical",
            raw.levels.critical,
            critical,
            1..=100,
        )?,
    ];
    if !(levels[0] <= levels[1] && levels[1] <= levels[2]) {
        return Err(at.invalid(
            levels_span,
            &format!(
                "risk levels must rise: medium {} <= high {} <= critical {}",
                levels[0], levels[1], levels[2]
            ),
            "order the thresholds in [risk.levels], or remove them to use 25, 50 and 80",
        ));
    }
    let a = raw.actions;
    let actions = [
        action(at, "risk.actions.low", a.low, Action::Allow)?,
        action(at, "risk.actions.medium", a.medium, Action::Allow)?,
        action(at, "risk.actions.high", a.high, Action::Alert)?,
        action(at, "risk.actions.critical", a.critical, Action::Block)?,
    ];

    let enabled_classes = match raw.classifiers {
        None => Class::ALL.to_vec(),
        Some(names) => names
            .into_iter()
            .map(|n| {
                Class::parse(n.get_ref()).ok_or_else(|| {
                    at.invalid(
                        n.span(),
                        &format!("unknown classifier {:?} in `risk.classifiers`", n.get_ref()),
                        "use some of \"email\", \"phone\", \"national_id\", \"iban\", \"payment_card\", \"health\", \"secret\"",
                    )
                })
            })
            .collect::<Result<_, _>>()?,
    };

    // A key that is configured but unavailable here (another machine's env, an unreadable
    // file) only stops the proxy; reading the store or testing the policy needs no key.
    let hmac_key_env = raw.hmac_key_env.as_ref().map(|e| e.get_ref().clone());
    let key = hmac_key(at, raw.hmac_key_env, raw.hmac_key_file)?;
    let (hmac_key, key_problem) = match key {
        None => (None, None),
        Some(Ok(k)) => (Some(k), None),
        Some(Err(e)) => (None, Some(e.to_string())),
    };
    let key_configured = hmac_key.is_some() || key_problem.is_some();
    let s = raw.store;
    let mut storage = [StoreMode::Mask; CLASS_COUNT];
    for (class, value) in [
        (Class::Email, s.email),
        (Class::Phone, s.phone),
        (Class::NationalId, s.national_id),
        (Class::Iban, s.iban),
        (Class::PaymentCard, s.payment_card),
        (Class::Health, s.health),
        (Class::Secret, s.secret),
    ] {
        let Some(value) = value else { continue };
        let key = format!("risk.store.{}", class.as_str());
        let mode = match value.get_ref().as_str() {
            "mask" => StoreMode::Mask,
            "hash" => StoreMode::Hash,
            "clear" => StoreMode::Clear,
            other => {
                return Err(at.invalid(
                    value.span(),
                    &format!("unknown value {other:?} for `{key}`"),
                    "use \"mask\" (replace by [REDACTED:class]), \"hash\" (keyed hash, needs risk.hmac_key_env or risk.hmac_key_file) or \"clear\"",
                ));
            }
        };
        if mode == StoreMode::Clear && matches!(class, Class::Secret | Class::PaymentCard) {
            return Err(at.invalid(
                value.span(),
                &format!("`{key}` = \"clear\" is not allowed: secrets and card numbers are never stored readable (PCI DSS 3.4)"),
                "use \"mask\" or \"hash\"",
            ));
        }
        if mode == StoreMode::Hash && !key_configured {
            return Err(at.invalid(
                value.span(),
                &format!("`{key}` = \"hash\" needs a key"),
                "set risk.hmac_key_env (name of an environment variable) or risk.hmac_key_file (a file of at least 32 bytes)",
            ));
        }
        storage[class as usize] = mode;
    }

    let mut role_of: HashMap<String, Vec<String>> = HashMap::new();
    for (role, users) in raw.roles {
        for user in users {
            role_of.entry(user).or_default().push(role.clone());
        }
    }

    let tools = raw
        .tool
        .into_iter()
        .map(|t| tool_policy(at, t))
        .collect::<Result<Vec<_>, _>>()?;
    let mut pointers: Vec<Pointer> = Vec::new();
    let rules = raw
        .rule
        .into_iter()
        .map(|r| rule(at, r, &mut pointers))
        .collect::<Result<Vec<_>, _>>()?;
    let sequences = raw
        .sequence
        .into_iter()
        .map(|s| sequence(at, s))
        .collect::<Result<Vec<_>, _>>()?;
    let pin_tools = match raw.pin_tools {
        None => PinMode::Alert,
        Some(v) => match v.get_ref().as_str() {
            "off" => PinMode::Off,
            "alert" => PinMode::Alert,
            "block" => PinMode::Block,
            other => {
                return Err(at.invalid(
                    v.span(),
                    &format!("unknown value {other:?} for `risk.pin_tools`"),
                    "use \"off\", \"alert\" (record and log a changed tool definition) or \"block\" (also block the tool until `mcp-audit-proxy tools accept NAME`)",
                ));
            }
        },
    };
    let user_rate = match raw.user_rate_per_minute {
        Some(r) => Some(ranged(at, "risk.user_rate_per_minute", r, 1..=1_000_000)? as u32),
        None => None,
    };

    Ok(Policy {
        enabled: raw.enabled.unwrap_or(true),
        shadow: raw.shadow.unwrap_or(false),
        version,
        levels: levels.map(|l| l as u8),
        actions,
        guard_adds: !(enabled_classes.contains(&Class::Secret)
            && enabled_classes.contains(&Class::PaymentCard)),
        guard: Classifiers::new(
            &[Class::Secret, Class::PaymentCard]
                .into_iter()
                .chain(enabled_classes.iter().copied())
                .collect::<Vec<_>>(),
        ),
        classifiers: Classifiers::new(&enabled_classes),
        storage,
        hmac_key,
        hmac_key_env,
        key_problem,
        redact_results: raw.redact_results.unwrap_or(false),
        pin_tools,
        confirm_timeout: std::time::Duration::from_millis(match raw.confirm_timeout_ms {
            Some(t) => ranged(at, "risk.confirm_timeout_ms", t, 100..=3_600_000)?,
            None => 120_000,
        }),
        role_of,
        tools,
        rules,
        pointers,
        sequences,
        user_rate,
        buckets: Default::default(),
        sections: table
            .and_then(toml::Value::as_table)
            .map(|t| {
                t.iter()
                    .map(|(k, v)| (k.clone(), serde_json::to_string(v).unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default(),
    })
}

/// A short hash of the `[risk]` table as data (comments and layout do not change it).
fn version_of(table: Option<&toml::Value>) -> String {
    let canonical = serde_json::to_string(&table).unwrap_or_default();
    super::sha256_hex(canonical.as_bytes(), 6)
}

fn ranged(
    at: &Source<'_>,
    key: &str,
    value: Spanned<u64>,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, ConfigError> {
    at.in_range(key, value, range, None)
}

fn action(
    at: &Source<'_>,
    key: &str,
    value: Option<Spanned<String>>,
    default: Action,
) -> Result<Action, ConfigError> {
    let Some(value) = value else {
        return Ok(default);
    };
    match value.get_ref().as_str() {
        "allow" => Ok(Action::Allow),
        "alert" => Ok(Action::Alert),
        "block" => Ok(Action::Block),
        "confirm" => Ok(Action::Confirm),
        other => Err(at.invalid(
            value.span(),
            &format!("unknown action {other:?} for `{key}`"),
            "use \"allow\", \"alert\", \"confirm\" or \"block\"",
        )),
    }
}

fn glob(at: &Source<'_>, key: &str, pattern: &Spanned<String>) -> Result<GlobPattern, ConfigError> {
    GlobPattern::new(pattern.get_ref()).map_err(|e| {
        at.invalid(
            pattern.span(),
            &format!("`{key}` is not a valid glob: {e}"),
            "use * for any characters, ? for one, [abc] for a set; quote literal characters with []",
        )
    })
}

fn globs(
    at: &Source<'_>,
    key: &str,
    patterns: Option<Vec<Spanned<String>>>,
) -> Result<Vec<GlobPattern>, ConfigError> {
    patterns
        .unwrap_or_default()
        .iter()
        .map(|p| glob(at, key, p))
        .collect()
}

fn hhmm(text: &str) -> Option<u16> {
    let (h, m) = text.trim().split_once(':')?;
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    (h <= 24 && m < 60 && h * 60 + m <= 1440).then_some(h * 60 + m)
}

fn tool_policy(at: &Source<'_>, t: RawTool) -> Result<ToolPolicy, ConfigError> {
    let matcher = glob(at, "risk.tool.match", &t.pattern)?;
    let score = match t.score {
        Some(s) => Some(ranged(at, "risk.tool.score", s, 0..=100)? as u8),
        None => None,
    };
    let rate = match t.rate_per_minute {
        Some(r) => Some(ranged(at, "risk.tool.rate_per_minute", r, 1..=1_000_000)? as u32),
        None => None,
    };
    let window = if t.hours.is_some() || t.days.is_some() || t.utc_offset.is_some() {
        let minutes = match &t.hours {
            None => (0, 1440),
            Some(h) => h
                .get_ref()
                .split_once('-')
                .and_then(|(a, b)| Some((hhmm(a)?, hhmm(b)?)))
                .ok_or_else(|| {
                    at.invalid(
                        h.span(),
                        &format!("`risk.tool.hours` = {:?} is not a time range", h.get_ref()),
                        "write \"HH:MM-HH:MM\" in 24-hour time, e.g. \"09:00-18:00\" (an end before the start spans midnight)",
                    )
                })?,
        };
        let mut days = [true; 7];
        if let Some(list) = &t.days {
            days = [false; 7];
            for d in list {
                let i = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
                    .iter()
                    .position(|n| n.eq_ignore_ascii_case(d.get_ref()))
                    .ok_or_else(|| {
                        at.invalid(
                            d.span(),
                            &format!("unknown day {:?} in `risk.tool.days`", d.get_ref()),
                            "use \"mon\", \"tue\", \"wed\", \"thu\", \"fri\", \"sat\", \"sun\"",
                        )
                    })?;
                days[i] = true;
            }
        }
        let offset_minutes = match &t.utc_offset {
            None => 0,
            Some(o) => {
                let text = o.get_ref();
                let signed = match (text.strip_prefix('+'), text.strip_prefix('-')) {
                    (Some(rest), _) => Some((1, rest)),
                    (_, Some(rest)) => Some((-1, rest)),
                    _ => None,
                };
                match signed.and_then(|(s, rest)| Some((s, hhmm(rest)?))) {
                    Some((s, m)) if m <= 14 * 60 => s * i32::from(m),
                    _ => {
                        return Err(at.invalid(
                            o.span(),
                            &format!("`risk.tool.utc_offset` = {text:?} is not an offset"),
                            "write \"+HH:MM\" or \"-HH:MM\", e.g. \"+01:00\" (fixed offsets; daylight saving is not applied)",
                        ));
                    }
                }
            }
        };
        Some(Window {
            start: minutes.0,
            end: minutes.1,
            days,
            offset_minutes,
            text: format!(
                "{} {} UTC{}",
                t.days
                    .as_ref()
                    .map(|d| d
                        .iter()
                        .map(|x| x.get_ref().as_str())
                        .collect::<Vec<_>>()
                        .join(","))
                    .unwrap_or_else(|| "every day".into()),
                t.hours
                    .as_ref()
                    .map_or("00:00-24:00", |h| h.get_ref().as_str()),
                t.utc_offset
                    .as_ref()
                    .map_or("+00:00", |o| o.get_ref().as_str()),
            ),
        })
    } else {
        None
    };
    Ok(ToolPolicy {
        pattern: t.pattern.into_inner(),
        matcher,
        score,
        allow_users: t.allow_users,
        deny_users: t.deny_users.unwrap_or_default(),
        allow_roles: t.allow_roles,
        deny_roles: t.deny_roles.unwrap_or_default(),
        rate,
        window,
    })
}

fn rule(at: &Source<'_>, r: RawRule, pointers: &mut Vec<Pointer>) -> Result<Rule, ConfigError> {
    let name_span = r.name.span();
    let name = r.name.into_inner();
    let tools = globs(at, "risk.rule.tools", r.tools)?;
    let pointer = match &r.pointer {
        Some(p) => {
            let parsed = Pointer::parse(p.get_ref()).map_err(|e| {
                at.invalid(
                    p.span(),
                    &format!("`risk.rule.pointer`: {e}"),
                    "write a JSON pointer into the arguments, or remove it to look at every string",
                )
            })?;
            Some(match pointers.iter().position(|q| *q == parsed) {
                Some(i) => i,
                None => {
                    pointers.push(parsed);
                    pointers.len() - 1
                }
            })
        }
        None => None,
    };
    let mut matchers: Vec<Matcher> = Vec::new();
    if let Some(re) = &r.regex {
        matchers.push(Matcher::Regex(Regex::new(re.get_ref()).map_err(|e| {
            at.invalid(
                re.span(),
                &format!("`risk.rule.regex` of rule {name:?} does not compile: {e}"),
                "use Rust regex syntax (no look-around); write (?i) in front for case-insensitive",
            )
        })?));
    }
    if let Some(g) = &r.glob {
        matchers.push(Matcher::Glob(glob(at, "risk.rule.glob", g)?));
    }
    if let Some(roots) = r.path_outside {
        let span = roots.span();
        let normalized = roots
            .into_inner()
            .iter()
            .map(|root| super::rules::normalize_path(root))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                at.invalid(
                    span,
                    "`risk.rule.path_outside` roots must be absolute paths",
                    "write roots like \"/srv/data\"",
                )
            })?;
        matchers.push(Matcher::PathOutside(normalized));
    }
    if let Some(list) = r.any_of {
        matchers.push(Matcher::AnyOf(list.into_inner()));
    }
    if let Some(list) = r.none_of {
        matchers.push(Matcher::NoneOf(list.into_inner()));
    }
    let bound = |strict: Option<Spanned<f64>>, loose: Option<Spanned<f64>>| match (strict, loose) {
        (Some(s), _) => Some((s.into_inner(), false)),
        (None, Some(l)) => Some((l.into_inner(), true)),
        (None, None) => None,
    };
    if r.gt.is_some() && r.ge.is_some() || r.lt.is_some() && r.le.is_some() {
        return Err(at.invalid(
            name_span,
            &format!("rule {name:?} has both a strict and a loose bound on one side"),
            "use one of gt/ge and one of lt/le",
        ));
    }
    let (min, max) = (bound(r.gt, r.ge), bound(r.lt, r.le));
    if min.is_some() || max.is_some() {
        matchers.push(Matcher::Number { min, max });
    }
    if let Some(d) = &r.detect {
        matchers.push(Matcher::Detect(Detector::parse(d.get_ref()).ok_or_else(
            || {
                at.invalid(
                    d.span(),
                    &format!("unknown detector {:?} in rule {name:?}", d.get_ref()),
                    &format!("use one of {}", Detector::NAMES),
                )
            },
        )?));
    }
    if matchers.len() != 1 {
        return Err(at.invalid(
            name_span,
            &format!(
                "rule {name:?} needs exactly one test, it has {}",
                matchers.len()
            ),
            "give one of regex, glob, path_outside, any_of, none_of, detect, or numeric bounds (gt/ge/lt/le); split other tests into more rules",
        ));
    }
    let score = match r.score {
        Some(s) => ranged(at, "risk.rule.score", s, 0..=100)? as u8,
        None => 0,
    };
    if score == 0 && r.level.is_none() {
        return Err(at.invalid(
            name_span,
            &format!("rule {name:?} has no effect"),
            "give it a score (0-100, added to the call's risk) and/or a level (the lowest level a matching call gets)",
        ));
    }
    Ok(Rule {
        name,
        tools,
        pointer,
        matcher: matchers.remove(0),
        score,
        level: r.level,
    })
}

fn sequence(at: &Source<'_>, s: RawSequence) -> Result<Sequence, ConfigError> {
    let span = s.after_tags.span();
    let after = s
        .after_tags
        .into_inner()
        .iter()
        .map(|t| TAGS.iter().copied().find(|x| x == t))
        .collect::<Option<Vec<&'static str>>>()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            at.invalid(
                span,
                "`risk.sequence.after_tags` needs tags among \"gdpr\", \"hipaa\", \"pci_dss\", \"secrets\"",
                "list the compliance tags whose data must not leave through the next tools",
            )
        })?;
    let then = match s.then_tools {
        None => ThenTools::OpenWorld,
        Some(list) => ThenTools::Globs(globs(at, "risk.sequence.then_tools", Some(list))?),
    };
    let score = match s.score {
        Some(v) => ranged(at, "risk.sequence.score", v, 0..=100)? as u8,
        None => 0,
    };
    if score == 0 && s.level.is_none() {
        return Err(at.invalid(
            s.name.span(),
            &format!("sequence {:?} has no effect", s.name.get_ref()),
            "give it a score and/or a level",
        ));
    }
    Ok(Sequence {
        name: s.name.into_inner(),
        after,
        then,
        score,
        level: s.level,
    })
}

fn hmac_key(
    at: &Source<'_>,
    env: Option<Spanned<String>>,
    file: Option<Spanned<String>>,
) -> Result<Option<Result<Vec<u8>, ConfigError>>, ConfigError> {
    let key = match (env, file) {
        (Some(e), Some(_)) => {
            return Err(at.invalid(
                e.span(),
                "both `risk.hmac_key_env` and `risk.hmac_key_file` are set",
                "keep one of them",
            ));
        }
        (Some(e), None) => match std::env::var(e.get_ref()) {
            Ok(v) => (v.into_bytes(), e),
            Err(_) => {
                return Ok(Some(Err(at.invalid(
                    e.span(),
                    &format!("environment variable {} (risk.hmac_key_env) is not set", e.get_ref()),
                    "export it with at least 32 random bytes, e.g. `export NAME=$(head -c 32 /dev/urandom | base64)`",
                ))));
            }
        },
        (None, Some(f)) => {
            let path = at.base().join(Path::new(f.get_ref()));
            match std::fs::read(&path) {
                Ok(bytes) => (bytes, f),
                Err(e) => {
                    return Ok(Some(Err(at.invalid(
                        f.span(),
                        &format!("cannot read the HMAC key file {}: {e}", path.display()),
                        "create it with `head -c 32 /dev/urandom > FILE` and make it readable by the proxy only",
                    ))));
                }
            }
        }
        (None, None) => return Ok(None),
    };
    let (bytes, spanned) = key;
    let trimmed: Vec<u8> = bytes.trim_ascii().to_vec();
    if trimmed.len() < 32 {
        return Ok(Some(Err(at.invalid(
            spanned.span(),
            &format!(
                "the HMAC key has {} bytes; at least 32 are needed",
                trimmed.len()
            ),
            "use 32 or more random bytes, e.g. `head -c 32 /dev/urandom | base64`",
        ))));
    }
    Ok(Some(Ok(trimmed)))
}
