//! `[analytics]`: what the operator knows about accounts, networks and people, for the
//! anomaly detectors and `analyze` (issue 10). Read after the fact, never on the message path.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::{ConfigError, Source};
use crate::analytics::{Context, Network};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAnalytics {
    #[serde(default)]
    service_accounts: Vec<Spanned<String>>,
    #[serde(default)]
    networks: Vec<RawNetwork>,
    #[serde(default)]
    time_zones: BTreeMap<String, Spanned<String>>,
    baseline_days: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNetwork {
    cidr: Spanned<String>,
    name: Spanned<String>,
    place: Option<Spanned<String>>,
    lat: Option<Spanned<f64>>,
    lon: Option<Spanned<f64>>,
}

/// `[analytics]`, validated.
#[derive(Debug, Clone)]
pub struct AnalyticsConfig {
    /// `service_accounts`, `networks` and `time_zones`: the detectors' operator context.
    pub context: Context,
    /// `baseline_days`: days of history read before a command's `--since`, for the
    /// detectors' baselines (their medians, a user's usual hours, first uses).
    pub baseline_days: u64,
}

impl Default for AnalyticsConfig {
    fn default() -> Self {
        AnalyticsConfig {
            context: Context::default(),
            baseline_days: DEFAULT_BASELINE_DAYS,
        }
    }
}

/// Four weeks: every weekday four times, and one month-end.
pub const DEFAULT_BASELINE_DAYS: u64 = 28;

/// A UTC offset as `+01:00`, `-05:00`, `+05:30`, `Z` or `UTC`, in minutes east of UTC.
pub fn parse_offset(text: &str) -> Option<i32> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("utc") || t == "Z" {
        return Some(0);
    }
    let (sign, rest) = match t.as_bytes().first()? {
        b'+' => (1, &t[1..]),
        b'-' => (-1, &t[1..]),
        _ => return None,
    };
    let (h, m) = rest.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
    (h <= 14 && m < 60 && h * 60 + m <= 14 * 60).then_some(sign * (h * 60 + m))
}

pub(super) fn compile(at: &Source, raw: RawAnalytics) -> Result<AnalyticsConfig, ConfigError> {
    let mut service_accounts: Vec<String> = Vec::new();
    for s in raw.service_accounts {
        let span = s.span();
        let name = at.non_empty("analytics.service_accounts", s)?;
        if service_accounts.contains(&name) {
            return Err(at.invalid(
                span,
                &format!("`analytics.service_accounts` lists {name:?} twice"),
                "list each account once",
            ));
        }
        service_accounts.push(name);
    }
    let mut networks = Vec::new();
    for n in raw.networks {
        let span = n.cidr.span();
        let cidr: ipnet::IpNet = n.cidr.get_ref().trim().parse().map_err(|e| {
            at.invalid(
                span.clone(),
                &format!(
                    "`analytics.networks.cidr` = {:?} is not a network: {e}",
                    n.cidr.get_ref()
                ),
                "write it as an address and a prefix length, e.g. \"10.1.0.0/16\" or \"2001:db8::/48\"",
            )
        })?;
        let name = at.non_empty("analytics.networks.name", n.name)?;
        let place = match n.place {
            Some(p) => Some(at.non_empty("analytics.networks.place", p)?),
            None => None,
        };
        let (lat, lon) = match (n.lat, n.lon) {
            (None, None) => (None, None),
            (Some(lat), Some(lon)) => {
                for (key, v, max) in [("lat", &lat, 90.0), ("lon", &lon, 180.0)] {
                    if !(-max..=max).contains(v.get_ref()) {
                        return Err(at.invalid(
                            v.span(),
                            &format!(
                                "`analytics.networks.{key}` = {} is out of range -{max}..={max}",
                                v.get_ref()
                            ),
                            "give the place's latitude and longitude in degrees (north and east positive)",
                        ));
                    }
                }
                (Some(lat.into_inner()), Some(lon.into_inner()))
            }
            _ => {
                return Err(at.invalid(
                    span,
                    &format!("network {name:?} has only one of `lat` and `lon`"),
                    "give both (the place's coordinates, for impossible travel) or neither",
                ));
            }
        };
        if lat.is_some() && place.is_none() {
            return Err(at.invalid(
                span,
                &format!("network {name:?} has coordinates but no `place`"),
                "name the place (it is what findings print), or remove lat and lon",
            ));
        }
        networks.push(Network {
            cidr: cidr.trunc(),
            name,
            place,
            lat,
            lon,
        });
    }
    let mut time_zones = BTreeMap::new();
    for (user, tz) in raw.time_zones {
        let Some(offset) = parse_offset(tz.get_ref()) else {
            return Err(at.invalid(
                tz.span(),
                &format!(
                    "`analytics.time_zones.{user}` = {:?} is not a UTC offset",
                    tz.get_ref()
                ),
                "write the user's offset from UTC as \"+01:00\", \"-05:00\" or \"UTC\" (fixed: no daylight saving)",
            ));
        };
        time_zones.insert(user, offset);
    }
    let baseline_days = at.ranged(
        "analytics.baseline_days",
        raw.baseline_days,
        DEFAULT_BASELINE_DAYS,
        0..=366,
    )?;
    Ok(AnalyticsConfig {
        context: Context {
            service_accounts,
            networks,
            time_zones,
        },
        baseline_days,
    })
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use std::path::Path;

    fn parse(text: &str) -> Result<Config, super::ConfigError> {
        Config::parse(Path::new("/etc/mcp/proxy.toml"), text)
    }

    #[test]
    fn the_operator_context_is_read_and_validated() {
        let c = parse(
            "[analytics]\nservice_accounts = [\"svc-ci\"]\nbaseline_days = 14\ntime_zones = { alice = \"+01:00\", bob = \"-05:30\" }\n[[analytics.networks]]\ncidr = \"10.1.2.3/16\"\nname = \"office-berlin\"\nplace = \"Berlin\"\nlat = 52.5\nlon = 13.4\n[[analytics.networks]]\ncidr = \"172.16.0.0/16\"\nname = \"vpn\"\n",
        )
        .unwrap();
        let a = &c.analytics;
        assert_eq!(a.baseline_days, 14);
        assert_eq!(a.context.service_accounts, ["svc-ci"]);
        assert_eq!(a.context.time_zones["alice"], 60);
        assert_eq!(a.context.time_zones["bob"], -330);
        assert_eq!(a.context.networks[0].cidr.to_string(), "10.1.0.0/16");
        assert_eq!(a.context.networks[0].lat, Some(52.5));
        assert_eq!(a.context.networks[1].place, None);
        let d = parse("").unwrap().analytics;
        assert_eq!(d.baseline_days, super::DEFAULT_BASELINE_DAYS);
        assert!(d.context.networks.is_empty());
    }

    #[test]
    fn bad_analytics_keys_fail_with_the_line_and_a_hint() {
        let cases = [
            (
                "[analytics]\nservice_acounts = []\n",
                ":2: unknown field `service_acounts`",
            ),
            (
                "[[analytics.networks]]\ncidr = \"10.1.0.0\"\nname = \"x\"\n",
                ":2: `analytics.networks.cidr` = \"10.1.0.0\" is not a network",
            ),
            (
                "[[analytics.networks]]\ncidr = \"10.1.0.0/16\"\nname = \"x\"\nplace = \"B\"\nlat = 91.0\nlon = 1.0\n",
                ":5: `analytics.networks.lat` = 91 is out of range",
            ),
            (
                "[[analytics.networks]]\ncidr = \"10.1.0.0/16\"\nname = \"x\"\nlat = 1.0\n",
                ":2: network \"x\" has only one of `lat` and `lon`",
            ),
            (
                "[[analytics.networks]]\ncidr = \"10.1.0.0/16\"\nname = \"x\"\nzone = \"eu\"\n",
                ":4: unknown field `zone`",
            ),
            (
                "[analytics]\ntime_zones = { alice = \"CET\" }\n",
                ":2: `analytics.time_zones.alice` = \"CET\" is not a UTC offset",
            ),
            (
                "[analytics]\nservice_accounts = [\"a\", \"a\"]\n",
                ":2: `analytics.service_accounts` lists \"a\" twice",
            ),
            (
                "[analytics]\nbaseline_days = 1000\n",
                ":2: `analytics.baseline_days` = 1000 is out of range",
            ),
        ];
        for (text, expected) in cases {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(expected), "{text:?} gave {err}");
            assert!(err.contains("hint: "), "{err}");
        }
    }

    #[test]
    fn offsets_parse_in_their_documented_forms_only() {
        use super::parse_offset;
        assert_eq!(parse_offset("UTC"), Some(0));
        assert_eq!(parse_offset("+08:00"), Some(480));
        assert_eq!(parse_offset("-09:30"), Some(-570));
        assert_eq!(parse_offset("+15:00"), None);
        assert_eq!(parse_offset("+1:00"), None);
        assert_eq!(parse_offset("Europe/Berlin"), None);
    }
}
