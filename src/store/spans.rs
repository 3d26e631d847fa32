//! Segment time spans: for each closed segment of a journal, the earliest and latest event
//! time of its records, so that `export --since --until` reads only the segments that can
//! hold the range (issue 9 item 9: a day of a 10 M-event store at ≥ 100k events/s; reading
//! every segment to find the day ran at 11.6k/s on 3 M events).
//!
//! # Why a span and not the first record's time
//!
//! Records are not in time order: an event's time is taken when it is made, and it is appended
//! a little later, after others; `import` appends whatever times the file holds. A span says
//! only "no record of this segment lies outside `[min_time, max_time]`", which holds for any
//! order.
//!
//! # Shape (`journal/<id>/spans`, one JSON object per line)
//!
//! ```text
//! {"max_time":"2026-12-02T19:05:44.123456Z","min_time":"2026-12-02T18:01:02.000001Z","segment":3}
//! ```
//!
//! Times are the records' own `timestamp` text (RFC 3339, UTC, microseconds, as
//! [`crate::audit::event`] writes them, 27 bytes: they sort as text). The writer appends a line
//! when it closes a segment for the next one ([`super::journal::Journal`]'s rotation), and for
//! its last segment when it stops cleanly (after its final checkpoint): a closed segment never
//! gets another record, and retention only removes records, so the span stays a bound. The
//! newest segment of a running (or crashed) writer has no line and is always read. A segment
//! with a record whose time is not in that form gets no line.
//!
//! # Trust
//!
//! The file is a hint, not evidence: no line (lost, torn, deleted) costs only speed. A line
//! that is wrong would make an export skip records of its range, so `verify` checks every
//! record against its segment's span and reports a record outside it
//! ([`super::verify::StoreReport::spans`]); deleting the file is always safe.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// The file's name in a journal's folder.
pub const FILE: &str = "spans";

/// The length of a record time in the form spans compare as text.
const TIME_LEN: usize = "2026-12-02T19:05:44.123456Z".len();

#[derive(Serialize, Deserialize)]
struct Line {
    max_time: String,
    min_time: String,
    segment: u64,
}

/// The `timestamp` text of a stored record (its canonical JSON), if it has the form spans
/// compare. Canonical JSON sorts keys, and after `timestamp` come only `tool_name`, `upstream`
/// and `user_id` (strings, or a sealed field's object of base64 strings): the last
/// `"timestamp":"` of the bytes is the event's own, found from the end in a few hundred bytes
/// whatever the size of the arguments before it.
pub(crate) fn record_time(record: &[u8]) -> Option<&[u8]> {
    const KEY: &[u8] = b"\"timestamp\":\"";
    // Built once: this runs for every record a scan or `verify` reads.
    static FINDER: std::sync::LazyLock<memchr::memmem::FinderRev<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::FinderRev::new(KEY));
    let at = FINDER.rfind(record)? + KEY.len();
    let time = record.get(at..at + TIME_LEN)?;
    (record.get(at + TIME_LEN) == Some(&b'"') && well_formed(time)).then_some(time)
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ`, digits where digits go.
fn well_formed(t: &[u8]) -> bool {
    const SHAPE: &[u8] = b"dddd-dd-ddTdd:dd:dd.ddddddZ";
    t.len() == SHAPE.len()
        && t.iter().zip(SHAPE).all(|(&c, &s)| match s {
            b'd' => c.is_ascii_digit(),
            s => c == s,
        })
}

/// The span of the records appended to the current segment, kept by the journal's writer.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tracker {
    span: Option<([u8; TIME_LEN], [u8; TIME_LEN])>,
    /// A record without a well-formed time, or records the writer did not append (a segment
    /// reopened after a restart): no line for this segment.
    unknown: bool,
}

impl Tracker {
    /// A tracker for a segment that already holds records this process did not see.
    pub(crate) fn unknown() -> Tracker {
        Tracker {
            span: None,
            unknown: true,
        }
    }

    /// Widens the span by one stored record.
    pub(crate) fn observe(&mut self, record: &[u8]) {
        let Some(t) = record_time(record).and_then(|t| <[u8; TIME_LEN]>::try_from(t).ok()) else {
            self.unknown = true;
            return;
        };
        self.span = Some(match self.span {
            None => (t, t),
            Some((lo, hi)) => (lo.min(t), hi.max(t)),
        });
    }

    /// Appends segment `segment`'s line to `dir/spans` (nothing for a segment without
    /// records or with an unknown span). A failure costs exports speed only: logged at debug.
    pub(crate) fn close(&self, dir: &Path, segment: u64) {
        let (false, Some((lo, hi))) = (self.unknown, self.span) else {
            return;
        };
        let line = Line {
            max_time: String::from_utf8_lossy(&hi).into_owned(),
            min_time: String::from_utf8_lossy(&lo).into_owned(),
            segment,
        };
        let mut text = super::canonical::to_canonical(&line);
        text.push(b'\n');
        let path = dir.join(FILE);
        // One write of a whole line with O_APPEND: lines of one writer never interleave, and
        // a torn one is skipped when read.
        let written = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(&text));
        if let Err(e) = written {
            tracing::debug!(path = %path.display(), error = %e, "could not note a segment's time span; exports read that segment");
        }
    }
}

/// A segment's span as read back: every record's time lies in `[min, max]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// The earliest record time.
    pub min: SystemTime,
    /// The latest record time.
    pub max: SystemTime,
}

impl Span {
    /// Whether no record of the segment can lie in `[since, until)`.
    pub fn misses(&self, since: Option<SystemTime>, until: Option<SystemTime>) -> bool {
        since.is_some_and(|s| self.max < s) || until.is_some_and(|u| self.min >= u)
    }

    /// Whether a record's time (as stored) lies in the span.
    pub fn covers(&self, time: SystemTime) -> bool {
        self.min <= time && time <= self.max
    }
}

/// The spans of the journal in `dir`, by segment. Lines that do not parse are skipped (the
/// segment is then read); several lines for one segment give their union. A missing file is
/// no spans.
pub fn read(dir: &Path) -> HashMap<u64, Span> {
    let Ok(text) = std::fs::read_to_string(dir.join(FILE)) else {
        return HashMap::new();
    };
    let mut out: HashMap<u64, Span> = HashMap::new();
    for line in text.lines() {
        let Ok(l) = serde_json::from_str::<Line>(line) else {
            continue;
        };
        let parse = |t: &str| {
            well_formed(t.as_bytes())
                .then(|| humantime::parse_rfc3339(t).ok())
                .flatten()
        };
        let (Some(min), Some(max)) = (parse(&l.min_time), parse(&l.max_time)) else {
            continue;
        };
        let span = out.entry(l.segment).or_insert(Span { min, max });
        span.min = span.min.min(min);
        span.max = span.max.max(max);
    }
    out
}

/// `[since, until)` as record-time texts, so that a stored record's time is compared without
/// parsing it: records carry whole microseconds, so a record time `t` is at or after `s`
/// exactly when it is at or after `s` rounded up to the microsecond (and before `u` likewise).
#[derive(Debug, Clone, Copy)]
pub(crate) struct TextBounds {
    since: Option<[u8; TIME_LEN]>,
    until: Option<[u8; TIME_LEN]>,
}

impl TextBounds {
    /// `None` when a bound has no text of the compared form (before 1970, or past 9999).
    pub(crate) fn new(since: Option<SystemTime>, until: Option<SystemTime>) -> Option<Self> {
        fn text(t: SystemTime) -> Option<[u8; TIME_LEN]> {
            let micros = t
                .duration_since(SystemTime::UNIX_EPOCH)
                .ok()?
                .as_nanos()
                .div_ceil(1000);
            let up = SystemTime::UNIX_EPOCH.checked_add(std::time::Duration::from_micros(
                u64::try_from(micros).ok()?,
            ))?;
            let s = humantime::format_rfc3339_micros(up).to_string();
            <[u8; TIME_LEN]>::try_from(s.as_bytes())
                .ok()
                .filter(|t| well_formed(t))
        }
        Some(TextBounds {
            since: match since {
                Some(t) => Some(text(t)?),
                None => None,
            },
            until: match until {
                Some(t) => Some(text(t)?),
                None => None,
            },
        })
    }

    /// Whether a record time (as [`record_time`] gives it) lies in the range.
    pub(crate) fn contains(&self, t: &[u8]) -> bool {
        self.since.is_none_or(|s| t >= &s[..]) && self.until.is_none_or(|u| t < &u[..])
    }
}

/// A stored record's time, parsed (`None` if it has no well-formed one).
pub fn time_of(record: &[u8]) -> Option<SystemTime> {
    let t = std::str::from_utf8(record_time(record)?).ok()?;
    humantime::parse_rfc3339(t).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(time: &str, args: &str) -> Vec<u8> {
        format!(
            r#"{{"action":"tools/call","metadata":{{"arguments":{args}}},"seq":1,"timestamp":"{time}","tool_name":"echo","upstream":"u","user_id":"alice"}}"#
        )
        .into_bytes()
    }

    #[test]
    fn the_record_time_is_the_top_level_one_even_when_arguments_carry_a_timestamp() {
        let r = record(
            "2026-12-02T10:00:00.000001Z",
            r#"{"timestamp":"1999-01-01T00:00:00.000000Z"}"#,
        );
        assert_eq!(
            record_time(&r),
            Some(&b"2026-12-02T10:00:00.000001Z"[..]),
            "canonical keys sort: the event's own timestamp is the last one"
        );
        assert_eq!(record_time(&record("2026-12-02T10:00:00Z", "{}")), None);
        assert_eq!(record_time(b"{\"seq\":1}"), None);
    }

    #[test]
    fn text_bounds_agree_with_time_order_at_the_microsecond_and_below() {
        let at = |t: &str| humantime::parse_rfc3339(t).unwrap();
        let b = TextBounds::new(
            Some(at("2026-12-02T10:00:00.0000005Z")),
            Some(at("2026-12-02T11:00:00.000001Z")),
        )
        .unwrap();
        for (t, inside) in [
            ("2026-12-02T10:00:00.000000Z", false),
            ("2026-12-02T10:00:00.000001Z", true),
            ("2026-12-02T10:59:59.999999Z", true),
            ("2026-12-02T11:00:00.000000Z", true),
            ("2026-12-02T11:00:00.000001Z", false),
        ] {
            assert_eq!(b.contains(t.as_bytes()), inside, "{t}");
            let parsed = at(t);
            assert_eq!(
                parsed >= at("2026-12-02T10:00:00.0000005Z")
                    && parsed < at("2026-12-02T11:00:00.000001Z"),
                inside
            );
        }
        let before_1970 = SystemTime::UNIX_EPOCH - std::time::Duration::from_secs(86_400);
        assert!(TextBounds::new(Some(before_1970), None).is_none());
        assert!(TextBounds::new(None, None).unwrap().contains(b"anything"));
    }

    #[test]
    fn spans_are_written_per_closed_segment_read_back_as_unions_and_skip_torn_lines() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = Tracker::default();
        // Out of order, as records are appended.
        for time in [
            "2026-12-02T10:00:05.000000Z",
            "2026-12-02T10:00:01.000000Z",
            "2026-12-02T10:00:09.000000Z",
        ] {
            t.observe(&record(time, "{}"));
        }
        t.close(dir.path(), 1);
        let mut odd = Tracker::default();
        odd.observe(&record("2026-12-02T11:00:00.000000Z", "{}"));
        odd.observe(b"{\"seq\":2}");
        odd.close(dir.path(), 2);
        Tracker::default().close(dir.path(), 3);
        let mut reopened = Tracker::unknown();
        reopened.observe(&record("2026-12-02T12:00:00.000000Z", "{}"));
        reopened.close(dir.path(), 4);
        let mut more = Tracker::default();
        more.observe(&record("2026-12-02T09:00:00.000000Z", "{}"));
        more.close(dir.path(), 1);
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join(FILE))
            .unwrap()
            .write_all(br#"{"max_time":"2026-12-02T1"#)
            .unwrap();
        let spans = read(dir.path());
        let at = |t: &str| humantime::parse_rfc3339(t).unwrap();
        assert_eq!(
            spans.keys().copied().collect::<Vec<_>>(),
            vec![1],
            "no line for a record without a time, an empty segment, a reopened one, a torn line"
        );
        let s = spans[&1];
        assert_eq!(s.min, at("2026-12-02T09:00:00Z"));
        assert_eq!(s.max, at("2026-12-02T10:00:09Z"));
        assert!(s.misses(Some(at("2026-12-02T10:00:10Z")), None));
        assert!(!s.misses(Some(at("2026-12-02T10:00:09Z")), None));
        assert!(
            s.misses(None, Some(at("2026-12-02T09:00:00Z"))),
            "until is exclusive"
        );
        assert!(!s.misses(None, Some(at("2026-12-02T09:00:00.000001Z"))));
    }
}
