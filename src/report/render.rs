//! The report as HTML, Markdown or JSON: the JSON is the [`Report`] itself; HTML and
//! Markdown are rendered from that same value by MiniJinja templates
//! (`src/report/templates/`), so the three carry the same content.
//!
//! Escaping is automatic, never per field: the HTML template is rendered with MiniJinja's
//! HTML auto-escaping (every `{{ }}` value that is not marked safe is escaped; only the
//! SVG charts, escaped by [`super::svg`], are marked safe), and the Markdown template with
//! a formatter that escapes every value for Markdown ([`markdown_escape`]). Tool names,
//! user ids, risk reasons and explanations come from callers: a tool named
//! `<script>…</script>` is text in both.

use minijinja::{AutoEscape, Environment, Value, context};

use super::model::{Report, SHOWN_EVIDENCE};
use super::svg;

/// The output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One self-contained HTML file: inline CSS and SVG charts, no script, no network.
    Html,
    /// GitHub-flavoured Markdown tables.
    Md,
    /// The report model as one JSON document.
    Json,
}

/// A template that does not render: a bug in this version, never the data's fault.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot render the {format} report: {source}\n  hint: this is a bug in mcp-audit-proxy; --format json gives the same content meanwhile"
)]
pub struct RenderError {
    format: &'static str,
    #[source]
    source: minijinja::Error,
}

const HTML: &str = include_str!("templates/report.html");
const MD: &str = include_str!("templates/report.md");
const MARKDOWN: AutoEscape = AutoEscape::Custom("markdown");

/// Text for Markdown: `&`, `<` and `>` as HTML character references (a Markdown viewer
/// renders raw HTML), a backslash before the characters that format or end a table cell
/// (CommonMark §2.4 backslash escapes; GFM tables for `|`), line breaks as spaces.
pub fn markdown_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\\' | '`' | '*' | '_' | '[' | ']' | '|' | '#' | '~' | '!' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// `text` with its control and bidirectional formatting characters written as `\u202e`
/// ([`crate::telemetry::printable`]): a tool or user name holding U+202E would otherwise be
/// shown reversed to the reader of the report (CVE-2021-42574, "Trojan Source").
fn visible(text: &str) -> std::borrow::Cow<'_, str> {
    match crate::telemetry::printable(text.as_bytes()) {
        std::borrow::Cow::Borrowed(_) => std::borrow::Cow::Borrowed(text),
        std::borrow::Cow::Owned(bytes) => {
            std::borrow::Cow::Owned(String::from_utf8_lossy(&bytes).into_owned())
        }
    }
}

fn environment() -> Result<Environment<'static>, minijinja::Error> {
    let mut env = Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|name: &str| {
        if name.ends_with(".html") {
            AutoEscape::Html
        } else {
            MARKDOWN
        }
    });
    env.set_formatter(
        |out: &mut minijinja::Output<'_>, state: &minijinja::State<'_, '_>, value: &Value| {
            if matches!(state.auto_escape(), AutoEscape::Custom("markdown")) && !value.is_safe() {
                let text = if value.is_none() {
                    String::new()
                } else {
                    value.to_string()
                };
                out.write_str(&markdown_escape(&visible(&text)))
                    .map_err(|_| {
                        minijinja::Error::new(
                            minijinja::ErrorKind::WriteFailure,
                            "cannot write the output",
                        )
                    })
            } else if let Some(text) = value.as_str().filter(|_| !value.is_safe())
                && let std::borrow::Cow::Owned(shown) = visible(text)
            {
                minijinja::escape_formatter(out, state, &Value::from(shown))
            } else {
                minijinja::escape_formatter(out, state, value)
            }
        },
    );
    env.add_template("report.html", HTML)?;
    env.add_template("report.md", MD)?;
    Ok(env)
}

const RISK_COLOURS: [(&str, &str); 4] = [
    ("low", "#4c9a2a"),
    ("medium", "#c99a06"),
    ("high", "#e67e22"),
    ("critical", "#b42318"),
];

/// The charts of the HTML report, each an escaped SVG string.
fn charts(r: &Report) -> Value {
    let days: Vec<String> = r.daily.iter().map(|d| d.date.clone()).collect();
    let series = |f: fn(&super::model::Day) -> u64| -> Vec<f64> {
        r.daily.iter().map(|d| f(d) as f64).collect()
    };
    let max_day = r.daily.iter().max_by_key(|d| d.calls);
    let daily = svg::line(
        "chart-daily",
        "Calls per day",
        &format!(
            "{} calls over {} days from {} to {}; the busiest day, {}, had {}. Failed and high-risk calls are drawn as their own lines.",
            r.totals.calls,
            r.daily.len(),
            days.first().map_or("", String::as_str),
            days.last().map_or("", String::as_str),
            max_day.map_or("-", |d| d.date.as_str()),
            max_day.map_or(0, |d| d.calls)
        ),
        &days,
        &[
            ("calls", svg::PRIMARY, series(|d| d.calls)),
            ("failed", "#b42318", series(|d| d.failed)),
            ("high-risk", "#e67e22", series(|d| d.high_risk)),
        ],
    );
    let dist = &r.risk.distribution;
    let values = [dist.low, dist.medium, dist.high, dist.critical];
    let risk = svg::bars(
        "chart-risk",
        "Calls by risk level",
        &format!(
            "{} low, {} medium, {} high and {} critical calls.",
            values[0], values[1], values[2], values[3]
        ),
        &RISK_COLOURS
            .iter()
            .zip(values)
            .map(|((name, colour), n)| (name.to_string(), n as f64, *colour))
            .collect::<Vec<_>>(),
    );
    let top: Vec<_> = r.tools.iter().take(10).collect();
    let tools = svg::bars(
        "chart-tools",
        "Calls per tool",
        &format!(
            "The {} most used tools: {}.",
            top.len(),
            top.iter()
                .map(|t| format!("{} {} calls", t.tool, t.calls))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        &top.iter()
            .map(|t| (t.tool.clone(), t.calls as f64, svg::PRIMARY))
            .collect::<Vec<_>>(),
    );
    let scored: Vec<_> = r
        .compliance
        .regulations
        .iter()
        .filter_map(|g| g.score.map(|s| (g.name, s)))
        .collect();
    let compliance = svg::bars(
        "chart-compliance",
        "Compliance score per regulation",
        &format!(
            "Percent of the assessable rules that are met: {}.",
            if scored.is_empty() {
                "no regulation has an assessable rule".to_string()
            } else {
                scored
                    .iter()
                    .map(|(n, s)| format!("{n} {s}%"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        ),
        &scored
            .iter()
            .map(|(n, s)| (n.to_string(), *s, svg::PRIMARY))
            .collect::<Vec<_>>(),
    );
    context! {
        daily => Value::from_safe_string(daily),
        risk => Value::from_safe_string(risk),
        tools => Value::from_safe_string(tools),
        compliance => Value::from_safe_string(compliance),
    }
}

/// The report in `format`.
pub fn render(report: &Report, format: Format) -> Result<String, RenderError> {
    let (name, label) = match format {
        Format::Json => {
            let mut text = serde_json::to_string_pretty(report).map_err(|e| RenderError {
                format: "json",
                source: minijinja::Error::new(
                    minijinja::ErrorKind::BadSerialization,
                    e.to_string(),
                ),
            })?;
            text.push('\n');
            return Ok(text);
        }
        Format::Html => ("report.html", "html"),
        Format::Md => ("report.md", "md"),
    };
    let fail = |source| RenderError {
        format: label,
        source,
    };
    let env = environment().map_err(fail)?;
    let template = env.get_template(name).map_err(fail)?;
    template
        .render(context! {
            r => Value::from_serialize(report),
            charts => charts(report),
            shown_evidence => SHOWN_EVIDENCE,
        })
        .map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::super::fixture::{self, EVIL_TOOL, EVIL_USER};
    use super::super::model::Kind;
    use super::*;

    #[test]
    fn user_strings_are_text_in_html_and_markdown() {
        for kind in [Kind::Executive, Kind::Detailed] {
            let r = fixture::report(kind, true);
            let html = render(&r, Format::Html).unwrap();
            // The page has no script at all, and the names are there as text.
            assert!(!html.to_ascii_lowercase().contains("<script"), "{html}");
            assert!(!html.contains("<img"), "{html}");
            assert!(
                html.contains("&lt;script&gt;alert(&#x27;tool&#x27;)&lt;&#x2f;script&gt;")
                    || html.contains("&lt;script&gt;alert(&#39;tool&#39;)&lt;/script&gt;"),
                "{html}"
            );
            // U+202E (right-to-left override) is shown as its escape, never acted on.
            assert!(html.contains("mallory\\u202e&lt;img"), "{html}");
            assert!(!html.contains('\u{202e}'), "{html}");
            let md = render(&r, Format::Md).unwrap();
            assert!(!md.contains("<script") && !md.contains("<img"), "{md}");
            assert!(md.contains("mallory\\\\u202e&lt;img"), "{md}");
            assert!(!md.contains('\u{202e}'), "{md}");
            assert!(
                md.contains("&lt;script&gt;alert('tool')&lt;/script&gt;"),
                "{md}"
            );
            // JSON keeps them as they are (it is data, not markup).
            let json: serde_json::Value =
                serde_json::from_str(&render(&r, Format::Json).unwrap()).unwrap();
            assert!(
                json["tools"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|t| t["tool"] == EVIL_TOOL)
            );
            assert_eq!(json["findings"]["list"][0]["subject"], EVIL_USER);
        }
    }

    #[test]
    fn html_is_self_contained_and_has_every_section() {
        let html = render(&fixture::report(Kind::Detailed, true), Format::Html).unwrap();
        // Nothing fetched: no links, sources, imports or URLs (but the SVG namespace name).
        for needle in ["http://", "https://", "<link", "src=\"", "@import", "url("] {
            let rest = html.replace("http://www.w3.org/2000/svg", "");
            assert!(!rest.contains(needle), "{needle} in the page");
        }
        for heading in [
            "Summary",
            "Trends against the previous period",
            "Compliance",
            "Findings",
            "Recommendations",
            "Activity by day",
            "Tool usage",
            "User activity",
            "Risk analysis",
            "Compliance analysis",
        ] {
            assert!(html.contains(&format!("\">{heading}</h")), "{heading}");
        }
        assert_eq!(html.matches("<svg ").count(), 4);
        assert!(html.contains("<title id=\"chart-daily-title\">Calls per day</title>"));
        // Figures: totals, a trend, the PCI score, a rule's status, a finding's evidence.
        assert!(html.contains("<span class=\"n\" id=\"total-calls\">12</span>"));
        assert!(html.contains("&#9650; up 8 (200.0%)"), "{html}");
        assert!(html.contains("<td class=\"num\">66.7%</td>"));
        assert!(html.contains("status-non_compliant\">non_compliant"));
        assert!(html.contains("<tr id=\"F1\">"));
        assert!(html.contains("and 5 more (the JSON report lists all)"));
        assert!(html.contains("<a href=\"#F2\">F2</a>"));
        assert!(html.contains("<code>pci_dss.10.2.1.blocked</code>"));
        // The executive summary leaves the detail out.
        let exec = render(&fixture::report(Kind::Executive, false), Format::Html).unwrap();
        assert!(!exec.contains(">User activity</h2>") && exec.contains(">Top findings</h2>"));
        assert!(exec.contains("<strong>Not assessed.</strong> not in this build"));
    }

    #[test]
    fn markdown_carries_the_same_figures() {
        let md = render(&fixture::report(Kind::Detailed, true), Format::Md).unwrap();
        assert!(md.contains("| Tool calls | 12 |"), "{md}");
        assert!(md.contains("| Calls | 4 | 12 | up 8 (200.0%) |"), "{md}");
        assert!(md.contains("| PCI DSS | 66.7% | 2 | 1 | 1 |"), "{md}");
        assert!(
            md.contains("| GDPR | no rule assessable | 0 | 0 | 1 |"),
            "{md}"
        );
        assert!(
            md.contains("| F1 | high | temporal / off\\_hours |"),
            "{md}"
        );
        assert!(md.contains("(because of finding F2, F3)"), "{md}");
        assert!(md.contains("| 2026-10-05 | 10 | 1 | 2 | 1 |"), "{md}");
        assert!(md.contains("## User activity"));
        // Every table row has as many cells as its header.
        for block in md.split("\n\n") {
            let rows: Vec<&str> = block.lines().filter(|l| l.starts_with('|')).collect();
            if let Some(head) = rows.first() {
                let cells = |l: &str| l.replace("\\|", "").matches('|').count();
                for r in &rows {
                    assert_eq!(cells(r), cells(head), "{r}");
                }
            }
        }
    }

    #[test]
    fn markdown_escapes_html_and_table_syntax() {
        assert_eq!(
            markdown_escape("<script>a|b*c_d</script>\nx"),
            "&lt;script&gt;a\\|b\\*c\\_d&lt;/script&gt; x"
        );
    }
}
