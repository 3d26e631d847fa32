//! `[retention]`: how long events are kept, per compliance tag (issue 9 item 6).
//!
//! Each period is a duration in humantime's syntax (`7y`, `18months`, `90d`; a year is 365.25
//! days, a month 30.44 days) or `"forever"`. An event is kept as long as the longest period
//! among its tags; an event without tags, and a tag without a period of its own, get
//! `untagged`. Periods under a day are refused: in this syntax `m` means minutes, and a
//! mistyped `7m` must not delete a trail seven minutes old.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::ConfigError;
use super::source::Source;
use crate::store::retention::{Keep, Periods};

/// The tags the risk engine sets (see `policy::classify`), each with a key here.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRetention {
    gdpr: Option<Spanned<String>>,
    hipaa: Option<Spanned<String>>,
    pci_dss: Option<Spanned<String>>,
    secrets: Option<Spanned<String>>,
    untagged: Option<Spanned<String>>,
    apply_daily: Option<bool>,
}

/// `[retention]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionConfig {
    /// The period of each tag and of untagged events.
    pub periods: Periods,
    /// `apply_daily`: the gateway removes expired events once a day (default `false`: a
    /// security product deletes evidence only when its operator said so).
    pub apply_daily: bool,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            periods: Periods::defaults(),
            apply_daily: false,
        }
    }
}

/// The shortest period accepted.
const MIN_PERIOD: Duration = Duration::from_secs(86_400);
/// The longest finite period accepted (longer: say `"forever"`).
const MAX_PERIOD: Duration = Duration::from_secs(100 * 31_557_600);

fn period(at: &Source<'_>, key: &str, value: Spanned<String>) -> Result<Keep, ConfigError> {
    let span = value.span();
    let text = value.get_ref().trim();
    if text == "forever" {
        return Ok(Keep::Forever);
    }
    let hint = "write a duration such as \"7y\", \"18months\" or \"90d\" (at least 1 day; `m` is minutes), or \"forever\"";
    let d = humantime::parse_duration(text).map_err(|e| {
        at.invalid(
            span.clone(),
            &format!("`retention.{key}` = {text:?} is not a duration ({e})"),
            hint,
        )
    })?;
    if !(MIN_PERIOD..=MAX_PERIOD).contains(&d) {
        return Err(at.invalid(
            span,
            &format!(
                "`retention.{key}` = {text:?} is out of range (from 1 day to 100 years, or \"forever\")"
            ),
            hint,
        ));
    }
    Ok(Keep::For(d))
}

/// Validates `[retention]`; unset keys take the defaults of [`Periods::defaults`].
pub(super) fn compile(at: &Source<'_>, raw: RawRetention) -> Result<RetentionConfig, ConfigError> {
    let mut periods = Periods::defaults();
    let mut tags = BTreeMap::new();
    for (key, value) in [
        ("gdpr", raw.gdpr),
        ("hipaa", raw.hipaa),
        ("pci_dss", raw.pci_dss),
        ("secrets", raw.secrets),
    ] {
        if let Some(v) = value {
            tags.insert(key.to_string(), period(at, key, v)?);
        }
    }
    periods.tags.extend(tags);
    if let Some(v) = raw.untagged {
        periods.untagged = period(at, "untagged", v)?;
    }
    Ok(RetentionConfig {
        periods,
        apply_daily: raw.apply_daily.unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/etc/mcp/proxy.toml"), text)
    }

    #[test]
    fn defaults_are_the_design_notes_periods_and_nothing_applies_daily() {
        let c = parse("").unwrap();
        let year = Duration::from_secs(31_557_600);
        let p = &c.retention.periods;
        assert_eq!(p.tags["gdpr"], Keep::For(7 * year));
        assert_eq!(p.tags["hipaa"], Keep::For(6 * year));
        assert_eq!(p.tags["pci_dss"], Keep::For(year));
        assert!(!p.tags.contains_key("secrets"));
        assert_eq!(p.untagged, Keep::For(year));
        assert!(!c.retention.apply_daily);
    }

    #[test]
    fn periods_are_read_and_the_longest_tag_wins() {
        let c = parse(
            "[retention]\npci_dss = \"2y\"\nsecrets = \"90d\"\nuntagged = \"forever\"\napply_daily = true\n",
        )
        .unwrap();
        let p = &c.retention.periods;
        let day = Duration::from_secs(86_400);
        assert_eq!(p.tags["secrets"], Keep::For(90 * day));
        assert_eq!(p.keep_for(["secrets"]), Keep::For(90 * day));
        assert_eq!(p.keep_for(["secrets", "pci_dss"]), p.tags["pci_dss"]);
        assert_eq!(p.keep_for(["gdpr", "pci_dss"]), p.tags["gdpr"]);
        // No tag, or a tag without a period of its own: untagged.
        assert_eq!(p.keep_for(std::iter::empty()), Keep::Forever);
        assert_eq!(p.keep_for(["sox"]), Keep::Forever);
        assert!(c.retention.apply_daily);
    }

    #[test]
    fn bad_retention_values_name_the_line_and_say_what_to_write() {
        let cases = [
            (
                "[retention]\ngdpr = \"7m\"\n",
                ":2: `retention.gdpr` = \"7m\" is out of range",
            ),
            (
                "[retention]\n\nhipaa = \"six years\"\n",
                ":3: `retention.hipaa` = \"six years\" is not a duration",
            ),
            (
                "[retention]\npci-dss = \"1y\"\n",
                ":2: unknown field `pci-dss`",
            ),
            ("[retention]\nuntagged = 30\n", ":2: invalid type"),
            ("[retention]\napply_daily = \"yes\"\n", ":2: invalid type"),
        ];
        for (text, expected) in cases {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(expected), "{text:?} gave {err}");
            assert!(err.contains("hint: "), "{err}");
        }
    }
}
