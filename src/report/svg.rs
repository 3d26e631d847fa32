//! Small inline SVG charts for the HTML report: horizontal bars and a daily line. Each chart
//! is an `<svg role="img">` with a `<title>` and a `<desc>` (its text alternative, read out
//! by screen readers: WAI-ARIA `img` role, SVG 1.1 §5.4), scales to its container through
//! its `viewBox`, and needs no script, font or network. Every text put in is XML-escaped
//! here: labels are tool names and user ids, which anyone calling a tool controls.

use std::fmt::Write;

/// The colour of a chart's first series (the tests look for it in screenshots).
pub const PRIMARY: &str = "#1f5fa8";

/// `&`, `<`, `>`, `"` and `'` as XML character references (XML 1.0 §2.4): safe in text and
/// in attribute values.
///
/// Control characters (C0 but tab and line breaks, DEL, C1) and bidirectional formatting are
/// written as `\u001b`-style escapes first, as the report's tables write them
/// ([`crate::telemetry::printable`]): a chart label is seen, never acted on by a terminal
/// that shows the file (helper-116 L1: DEL and C1 went through raw, ESC became U+FFFD).
pub fn escape(text: &str) -> String {
    let shown = match crate::telemetry::printable(text.as_bytes()) {
        std::borrow::Cow::Borrowed(_) => std::borrow::Cow::Borrowed(text),
        std::borrow::Cow::Owned(bytes) => {
            std::borrow::Cow::Owned(String::from_utf8_lossy(&bytes).into_owned())
        }
    };
    let mut out = String::with_capacity(shown.len());
    for c in shown.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if (c as u32) < 0x20 && c != '\t' && c != '\n' && c != '\r' => out.push('\u{fffd}'),
            // Bidirectional formatting (CVE-2021-42574): shown, never acted on.
            '\u{61c}'
            | '\u{200e}'
            | '\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// A label cut to `max` characters (with an ellipsis), for the chart only: the tables
/// beside it carry the full text.
fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let mut s: String = text.chars().take(max - 1).collect();
        s.push('…');
        s
    }
}

fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:.1}")
    }
}

fn open(out: &mut String, id: &str, title: &str, desc: &str, width: u32, height: u32) {
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" role="img" class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" aria-labelledby="{id}-title {id}-desc" preserveAspectRatio="xMinYMin meet"><title id="{id}-title">{}</title><desc id="{id}-desc">{}</desc>"#,
        escape(title),
        escape(desc)
    );
}

/// Horizontal bars, one per `(label, value, colour)`, the value written at the bar's end.
/// `id` must be unique in the page (it names the title and description).
pub fn bars(id: &str, title: &str, desc: &str, rows: &[(String, f64, &str)]) -> String {
    const ROW: u32 = 26;
    const LABEL_W: u32 = 190;
    const WIDTH: u32 = 680;
    let height = 12 + ROW * rows.len().max(1) as u32;
    let max = rows.iter().map(|r| r.1).fold(0.0, f64::max);
    let mut out = String::new();
    open(&mut out, id, title, desc, WIDTH, height);
    let span = (WIDTH - LABEL_W - 70) as f64;
    for (i, (label, value, colour)) in rows.iter().enumerate() {
        let y = 6 + ROW * i as u32;
        let w = if max > 0.0 { value / max * span } else { 0.0 };
        let w = if *value > 0.0 { w.max(2.0) } else { 0.0 };
        let _ = write!(
            out,
            r#"<g><title>{}: {}</title><text x="{}" y="{}" text-anchor="end" class="label">{}</text><rect x="{LABEL_W}" y="{}" width="{w:.1}" height="{}" fill="{}"/><text x="{:.1}" y="{}" class="value">{}</text></g>"#,
            escape(label),
            number(*value),
            LABEL_W - 8,
            y + 16,
            escape(&cut(label, 26)),
            y + 3,
            ROW - 8,
            escape(colour),
            LABEL_W as f64 + w + 6.0,
            y + 16,
            number(*value),
        );
    }
    if rows.is_empty() {
        let _ = write!(
            out,
            r#"<text x="{LABEL_W}" y="24" class="label">nothing to show</text>"#
        );
    }
    out.push_str("</svg>");
    out
}

/// A line per series over the days `x` (labels such as `2026-10-05`), with a y axis from 0
/// and a legend. Series are `(name, colour, values)`, each as long as `x`.
pub fn line(
    id: &str,
    title: &str,
    desc: &str,
    x: &[String],
    series: &[(&str, &str, Vec<f64>)],
) -> String {
    const WIDTH: u32 = 680;
    const HEIGHT: u32 = 260;
    let (left, right, top, bottom) = (48.0, 16.0, 16.0, 58.0);
    let plot_w = WIDTH as f64 - left - right;
    let plot_h = HEIGHT as f64 - top - bottom;
    let max = series
        .iter()
        .flat_map(|s| s.2.iter().copied())
        .fold(0.0, f64::max)
        .max(1.0);
    let n = x.len().max(1);
    let px = |i: usize| {
        if n == 1 {
            left + plot_w / 2.0
        } else {
            left + plot_w * i as f64 / (n - 1) as f64
        }
    };
    let py = |v: f64| top + plot_h * (1.0 - v / max);
    let mut out = String::new();
    open(&mut out, id, title, desc, WIDTH, HEIGHT);
    // Axes and gridlines at 0, half and the maximum.
    for v in [0.0, max / 2.0, max] {
        let y = py(v);
        let _ = write!(
            out,
            r##"<line x1="{left}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#d0d4da" stroke-width="1"/><text x="{:.1}" y="{:.1}" text-anchor="end" class="label">{}</text>"##,
            left + plot_w,
            left - 6.0,
            y + 4.0,
            number(v.round()),
        );
    }
    // Day labels: the first, the middle and the last.
    let mut marks = vec![0, n / 2, n - 1];
    marks.dedup();
    for i in marks {
        if let Some(label) = x.get(i) {
            // The first and the last label end at the plot's edges, not past them.
            let anchor = match i {
                _ if n == 1 => "middle",
                0 => "start",
                i if i == n - 1 => "end",
                _ => "middle",
            };
            let _ = write!(
                out,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="{anchor}" class="label">{}</text>"#,
                px(i),
                top + plot_h + 18.0,
                escape(label)
            );
        }
    }
    for (name, colour, values) in series {
        let points: Vec<String> = values
            .iter()
            .enumerate()
            .map(|(i, v)| format!("{:.1},{:.1}", px(i), py(*v)))
            .collect();
        let _ = write!(
            out,
            r#"<polyline fill="none" stroke="{}" stroke-width="2.5" points="{}"><title>{}</title></polyline>"#,
            escape(colour),
            points.join(" "),
            escape(name)
        );
        for (i, v) in values.iter().enumerate() {
            let _ = write!(
                out,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{}"><title>{}, {}: {}</title></circle>"#,
                px(i),
                py(*v),
                escape(colour),
                escape(name),
                escape(x.get(i).map_or("", String::as_str)),
                number(*v)
            );
        }
    }
    // Legend.
    let mut lx = left;
    for (name, colour, _) in series {
        let _ = write!(
            out,
            r#"<rect x="{lx:.1}" y="{:.1}" width="14" height="4" fill="{}"/><text x="{:.1}" y="{:.1}" class="label">{}</text>"#,
            HEIGHT as f64 - 16.0,
            escape(colour),
            lx + 20.0,
            HEIGHT as f64 - 11.0,
            escape(name)
        );
        lx += 30.0 + 8.0 * name.chars().count() as f64;
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped_in_text_titles_and_descriptions() {
        let evil = "<script>alert('x')</script>&\"";
        let svg = bars(
            "c",
            evil,
            evil,
            &[
                (evil.to_string(), 3.0, PRIMARY),
                ("ok".into(), 1.0, PRIMARY),
            ],
        );
        assert!(!svg.contains("<script"), "{svg}");
        assert!(svg.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"));
        let svg = line(
            "d",
            evil,
            evil,
            &[evil.to_string()],
            &[(evil, PRIMARY, vec![1.0])],
        );
        assert!(!svg.contains("<script"), "{svg}");
        assert!(!svg.contains("alert('x')"), "{svg}");
        assert_eq!(escape("exe.\u{202e}fdp\u{2066}"), "exe.\\u202efdp\\u2066");
    }

    #[test]
    fn control_characters_in_labels_are_written_as_escapes_never_raw() {
        let label = "t\u{1b}[31mred\u{7f}\u{9b}2J\u{202e}x";
        let out = escape(label);
        for raw in ['\u{1b}', '\u{7f}', '\u{9b}', '\u{202e}', '\u{fffd}'] {
            assert!(!out.contains(raw), "{raw:?} in {out:?}");
        }
        for shown in ["\\u001b[31mred", "\\u007f", "\\u009b2J", "\\u202e"] {
            assert!(out.contains(shown), "{shown} not in {out:?}");
        }
    }

    #[test]
    fn bars_are_proportional_to_their_values() {
        let svg = bars(
            "c",
            "t",
            "d",
            &[("a".into(), 100.0, PRIMARY), ("b".into(), 50.0, PRIMARY)],
        );
        let widths: Vec<f64> = svg
            .split("<rect ")
            .skip(1)
            .map(|r| {
                let w = r.split("width=\"").nth(1).unwrap();
                w[..w.find('"').unwrap()].parse().unwrap()
            })
            .collect();
        assert_eq!(widths.len(), 2);
        assert!((widths[0] / widths[1] - 2.0).abs() < 0.01, "{widths:?}");
        assert!(svg.contains(">100</text>") && svg.contains(">50</text>"));
    }

    #[test]
    fn the_line_has_one_point_per_day_and_the_highest_at_the_top() {
        let x: Vec<String> = (1..=3).map(|d| format!("2026-10-0{d}")).collect();
        let svg = line(
            "l",
            "t",
            "d",
            &x,
            &[("calls", PRIMARY, vec![0.0, 10.0, 5.0])],
        );
        assert_eq!(svg.matches("<circle ").count(), 3);
        // y of 10 is the plot's top (16), of 0 its bottom (16 + 186).
        assert!(svg.contains("cy=\"16.0\""), "{svg}");
        assert!(svg.contains("cy=\"202.0\""), "{svg}");
    }
}
