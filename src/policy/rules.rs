//! Argument rules: where a rule looks (a JSON pointer, or every string) and what it looks for.
//!
//! Everything here is a pure function of the arguments, so the corpus tests can pin it down.

use regex::Regex;
use serde_json::Value;

/// Where in the arguments a rule looks: segments of an RFC 6901 pointer, `*` for any key or index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pointer(Vec<String>);

impl Pointer {
    /// Parses `/a/b/*/c`; `~0` and `~1` unescape to `~` and `/`.
    pub fn parse(text: &str) -> Result<Pointer, String> {
        if text.is_empty() {
            return Ok(Pointer(Vec::new()));
        }
        let Some(rest) = text.strip_prefix('/') else {
            return Err(format!(
                "pointer {text:?} must start with '/' (RFC 6901), e.g. \"/path\" or \"/files/*/name\""
            ));
        };
        Ok(Pointer(
            rest.split('/')
                .map(|s| s.replace("~1", "/").replace("~0", "~"))
                .collect(),
        ))
    }

    /// Calls `f` with every value the pointer reaches.
    pub fn each<'v>(&self, root: &'v Value, f: &mut impl FnMut(&'v Value)) {
        fn walk<'v>(segments: &[String], v: &'v Value, f: &mut impl FnMut(&'v Value)) {
            let Some((first, rest)) = segments.split_first() else {
                f(v);
                return;
            };
            match v {
                Value::Object(map) if first == "*" => {
                    map.values().for_each(|child| walk(rest, child, f))
                }
                Value::Array(items) if first == "*" => {
                    items.iter().for_each(|child| walk(rest, child, f))
                }
                Value::Object(map) => {
                    // A server that matches names case-insensitively reads `"Path"` as
                    // `path`; keys that fold alike were refused before this (policy::strict).
                    let child = map.get(first).or_else(|| {
                        map.iter()
                            .find(|(k, _)| crate::jsonrpc::names::same_name(k, first))
                            .map(|(_, v)| v)
                    });
                    if let Some(child) = child {
                        walk(rest, child, f)
                    }
                }
                Value::Array(items) => {
                    if let Some(child) = first.parse::<usize>().ok().and_then(|i| items.get(i)) {
                        walk(rest, child, f)
                    }
                }
                _ => {}
            }
        }
        walk(&self.0, root, f)
    }
}

/// A glob (`*`, `?`, `[abc]`, `{a,b}`), compiled to a regex so matching never allocates; its
/// literal prefix and suffix are checked first, which settles most non-matches cheaply.
#[derive(Debug, Clone)]
pub struct GlobPattern {
    prefix: String,
    suffix: String,
    regex: regex::bytes::Regex,
    /// The glob has no wildcard: it names one tool (or value), `prefix`.
    literal: bool,
}

impl GlobPattern {
    /// Compiles a glob; the error says what is wrong with it.
    pub fn new(glob: &str) -> Result<GlobPattern, String> {
        let regex = globset::Glob::new(glob)
            .map_err(|e| e.to_string())?
            .regex()
            .to_string();
        let regex = regex::bytes::Regex::new(&regex).map_err(|e| e.to_string())?;
        let special = |c: char| matches!(c, '*' | '?' | '[' | ']' | '{' | '}' | '\\' | ',');
        let prefix: String = glob.chars().take_while(|c| !special(*c)).collect();
        let suffix = if prefix.len() == glob.len() {
            String::new()
        } else {
            glob.rfind(special)
                .map_or("", |i| &glob[i + 1..])
                .to_string()
        };
        Ok(GlobPattern {
            literal: prefix.len() == glob.len(),
            prefix,
            suffix,
            regex,
        })
    }

    /// The one name the glob matches, when it has no wildcard.
    pub fn literal(&self) -> Option<&str> {
        self.literal.then_some(self.prefix.as_str())
    }

    /// Whether the whole of `text` matches.
    pub fn is_match(&self, text: &str) -> bool {
        text.starts_with(&self.prefix)
            && text.ends_with(&self.suffix)
            && self.regex.is_match(text.as_bytes())
    }
}

/// Whether `text` has the two bytes `a` `b` next to each other (cheaper than a substring search
/// for such short needles).
fn has_pair(text: &str, a: u8, b: u8) -> bool {
    let bytes = text.as_bytes();
    memchr::memchr_iter(a, bytes).any(|i| bytes.get(i + 1) == Some(&b))
}

/// Built-in detectors for patterns a regex states badly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Detector {
    /// `;`, `|`, `&`, `$(`, backticks, redirections, newlines: a string a shell would split.
    ShellMetacharacters,
    /// `DROP`, `TRUNCATE`, `ALTER`, or `DELETE`/`UPDATE` without `WHERE`, per statement.
    SqlDestructive,
    /// A `..` path segment (also percent-encoded or with backslashes).
    PathTraversal,
}

impl Detector {
    /// Names accepted in `detect = "…"`.
    pub const NAMES: &'static str =
        "\"shell_metacharacters\", \"sql_destructive\", \"path_traversal\"";

    /// Reads a config name.
    pub fn parse(name: &str) -> Option<Detector> {
        match name {
            "shell_metacharacters" => Some(Detector::ShellMetacharacters),
            "sql_destructive" => Some(Detector::SqlDestructive),
            "path_traversal" => Some(Detector::PathTraversal),
            _ => None,
        }
    }

    /// Whether `text` shows the pattern.
    pub fn detects(self, text: &str) -> bool {
        match self {
            Detector::ShellMetacharacters => text
                .chars()
                .any(|c| matches!(c, ';' | '|' | '&' | '`' | '>' | '<' | '\n' | '\r' | '$')),
            Detector::SqlDestructive => sql_destructive(text),
            Detector::PathTraversal => {
                if text.contains('%') {
                    let lowered = text
                        .to_ascii_lowercase()
                        .replace("%2e", ".")
                        .replace("%2f", "/");
                    traverses(&lowered)
                } else {
                    has_pair(text, b'.', b'.') && traverses(text)
                }
            }
        }
    }
}

fn traverses(path: &str) -> bool {
    path.split(['/', '\\'])
        .any(|segment| segment.trim() == "..")
}

/// SQL that destroys or rewrites without bounds: `DROP`, `TRUNCATE`, `ALTER`, `GRANT`, or a
/// `DELETE`/`UPDATE` statement without `WHERE`. Comments are removed first, so
/// `DELETE /* x */ FROM t` and `DELETE FROM t -- WHERE id=1` are both seen.
fn sql_destructive(text: &str) -> bool {
    static KEYWORDS: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
    let keywords = KEYWORDS.get_or_init(|| {
        Regex::new(r"(?i)(drop|truncate|alter|grant|revoke|delete|update)")
            .unwrap_or_else(|e| unreachable!("a fixed pattern compiles: {e}"))
    });
    // Most strings are not SQL at all: one scan decides that.
    if !keywords.is_match(text) {
        return false;
    }
    let cleaned = strip_sql_comments(text).to_ascii_lowercase();
    cleaned.split(';').any(|statement| {
        let words: Vec<&str> = statement
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| !w.is_empty())
            .collect();
        let has = |w: &str| words.contains(&w);
        match words.first().copied() {
            Some("drop" | "truncate" | "alter" | "grant" | "revoke") => true,
            Some("delete" | "update") => !has("where"),
            Some("with") => (has("delete") || has("update")) && !has("where"),
            _ => false,
        }
    })
}

fn strip_sql_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("--") {
            rest = after.find('\n').map_or("", |i| &after[i..]);
            out.push(' ');
        } else if let Some(after) = rest.strip_prefix("/*") {
            rest = after.find("*/").map_or("", |i| &after[i + 2..]);
            out.push(' ');
        } else {
            let c = rest.chars().next().unwrap_or(' ');
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// The normalised absolute form of a path, resolving `.` and `..` without touching the disk;
/// `None` for a relative path (its meaning depends on the server's working folder). A
/// backslash is read as a separator (as on Windows); see [`normalize_posix_path`].
pub fn normalize_path(path: &str) -> Option<String> {
    normalize_posix_path(&path.replace('\\', "/"))
}

/// [`normalize_path`] with a backslash read as an ordinary character, as POSIX systems do.
pub fn normalize_posix_path(path: &str) -> Option<String> {
    if !path.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    Some(format!("/{}", parts.join("/")))
}

/// Whether `path` (normalised) lies under `root` (normalised), by whole components.
fn under(path: &str, root: &str) -> bool {
    root == "/"
        || path == root
        || path
            .strip_prefix(root)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// What a rule looks for in one value.
#[derive(Debug, Clone)]
pub enum Matcher {
    /// A string the regex finds something in.
    Regex(Regex),
    /// A string the glob matches whole.
    Glob(GlobPattern),
    /// A path that is relative or, once `.` and `..` are resolved, under none of the roots.
    PathOutside(Vec<String>),
    /// A string equal to one of these (a deny list).
    AnyOf(Vec<String>),
    /// A string equal to none of these (an allow list).
    NoneOf(Vec<String>),
    /// A number (or numeric string) in the range; each bound optional, strict or not.
    Number {
        /// Lower bound and whether it is inclusive.
        min: Option<(f64, bool)>,
        /// Upper bound and whether it is inclusive.
        max: Option<(f64, bool)>,
    },
    /// A string a built-in detector flags.
    Detect(Detector),
}

impl Matcher {
    /// Whether `value` matches; a matcher for strings looks at strings, and at numbers as text.
    ///
    /// Fail closed where a server could read the value another way: an array where one value
    /// was expected matches if any of its elements does (a server may take any of them); an
    /// allow list (`none_of`) passes only the strings it lists, so `null`, a boolean or an
    /// object matches it (`null` is not an absent member to every server: `args.get("k",
    /// default)` is `None`, and may mean "no restriction", wider than the default); a
    /// numeric test reads strings as a lenient parser (Python's
    /// `float()`) would ([`lenient_number`]), and a `NaN` matches every numeric test.
    pub fn matches(&self, value: &Value) -> bool {
        match (self, value) {
            (m, Value::Array(items)) => items.iter().any(|v| m.matches(v)),
            (Matcher::Number { min, max }, v) => {
                let n = match v {
                    Value::Number(n) => n.as_f64(),
                    Value::String(s) => lenient_number(s),
                    _ => None,
                };
                let Some(n) = n else {
                    return false;
                };
                if n.is_nan() {
                    return true;
                }
                let above = min.is_none_or(|(b, incl)| if incl { n >= b } else { n > b });
                let below = max.is_none_or(|(b, incl)| if incl { n <= b } else { n < b });
                above && below
            }
            (m, Value::String(s)) => m.matches_str(s),
            // No detector pattern can be written with digits, a sign, a point and an exponent.
            (Matcher::Detect(_), Value::Number(_)) => false,
            (m, Value::Number(n)) => m.matches_str(&n.to_string()),
            (Matcher::NoneOf(_), _) => true,
            _ => false,
        }
    }

    /// Whether a string matches (never true for a numeric matcher).
    pub fn matches_str(&self, s: &str) -> bool {
        match self {
            Matcher::Regex(re) => re.is_match(s),
            Matcher::Glob(g) => g.is_match(s),
            Matcher::PathOutside(roots) => {
                // Already normal (no dot segments, backslashes or doubled slashes): no copy.
                let plain = s.starts_with('/')
                    && !s.contains('\\')
                    && !has_pair(s, b'/', b'.')
                    && !has_pair(s, b'/', b'/');
                let outside = |normal: Option<String>| match normal {
                    None => true,
                    Some(p) => !roots.iter().any(|r| under(&p, r)),
                };
                if plain && !s.contains('%') {
                    !roots.iter().any(|r| under(s.trim_end_matches('/'), r))
                } else {
                    // A backslash separates on Windows and is a letter on POSIX, and a server
                    // that reads the path as a URL decodes `%2e` and `%2f`: a path is outside
                    // if any reading puts it outside.
                    outside(normalize_path(s))
                        || (s.contains('\\') && outside(normalize_posix_path(s)))
                        || (s.contains('%') && outside(normalize_path(&percent_decoded(s))))
                }
            }
            Matcher::AnyOf(list) => list.iter().any(|x| x == s),
            Matcher::NoneOf(list) => !list.iter().any(|x| x == s),
            Matcher::Number { .. } => false,
            Matcher::Detect(d) => d.detects(s),
        }
    }
}

/// `%2e`, `%2f` and `%5c` (any case) decoded, as a server reading a path as a URL would.
fn percent_decoded(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let code = rest.get(at + 1..at + 3).map(str::to_ascii_lowercase);
        match code.as_deref() {
            Some("2e") => out.push('.'),
            Some("2f") => out.push('/'),
            Some("5c") => out.push('\\'),
            _ => {
                out.push('%');
                rest = &rest[at + 1..];
                continue;
            }
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    out
}

/// The first code points of the blocks of ten decimal digits (Unicode `Nd`) other than ASCII
/// that number parsers such as Python's `float()` and `int()` accept: Arabic-Indic, Extended
/// Arabic-Indic, NKo, Devanagari … Myanmar, Khmer, Mongolian, full-width, and the
/// mathematical digits.
const DIGIT_BLOCKS: [u32; 25] = [
    0x0660, 0x06F0, 0x07C0, 0x0966, 0x09E6, 0x0A66, 0x0AE6, 0x0B66, 0x0BE6, 0x0C66, 0x0CE6, 0x0D66,
    0x0DE6, 0x0E50, 0x0ED0, 0x0F20, 0x1040, 0x17E0, 0x1810, 0xFF10, 0x1D7CE, 0x1D7D8, 0x1D7E2,
    0x1D7EC, 0x1D7F6,
];

/// A string as a lenient number parser reads it (Python's `float()`): surrounding whitespace
/// ignored, `_` between digits, decimal digits of any script, `inf`, `infinity` and `nan` in
/// any case. `None`: not a number in any such reading. A string that would be a number if a
/// numeric character not in [`DIGIT_BLOCKS`] (`①`, `½`, a digit of a newer script) were a
/// digit reads as `NaN` (fail closed: it matches); any other string with one (`Step ①`) is
/// not a number.
///
/// Also as JavaScript's `Number()` and Python's `int(x, 0)` read an integer with a base
/// prefix (`0x1388`, `0o11610`, `0b1001110001000`: 5000; what `z.coerce.number()` gives a
/// TypeScript server; helper-108 F6), each with `_` between digits as Python takes them.
/// `parseFloat`'s reading of a leading number (`"5000 USD"`) is not taken: a rule without a
/// pointer would then read every text that starts with digits as a number.
pub fn lenient_number(s: &str) -> Option<f64> {
    let s = s.trim();
    if let Some(n) = prefixed_integer(s) {
        return Some(n);
    }
    if s.is_ascii() && !s.contains('_') {
        return s.parse::<f64>().ok();
    }
    let mut ascii = String::with_capacity(s.len());
    let mut unknown = false;
    for c in s.chars() {
        if c == '_' {
            continue;
        }
        if c.is_ascii() {
            ascii.push(c);
            continue;
        }
        let code = u32::from(c);
        match DIGIT_BLOCKS.iter().find(|&&b| (b..b + 10).contains(&code)) {
            Some(&b) => ascii.push(char::from(b'0' + (code - b) as u8)),
            None if c.is_numeric() => {
                unknown = true;
                ascii.push('1');
            }
            None => return None,
        }
    }
    let n = ascii.parse::<f64>().ok()?;
    Some(if unknown { f64::NAN } else { n })
}

/// An integer written with a base prefix (`0x`, `0o`, `0b`, either case), as `Number()` and
/// `int(x, 0)` read it; past `u128` it is `+inf` (above every bound, as its value is).
fn prefixed_integer(s: &str) -> Option<f64> {
    let (radix, digits) = match s.get(..2)? {
        "0x" | "0X" => (16, &s[2..]),
        "0o" | "0O" => (8, &s[2..]),
        "0b" | "0B" => (2, &s[2..]),
        _ => return None,
    };
    let digits: String = digits.chars().filter(|&c| c != '_').collect();
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    Some(u128::from_str_radix(&digits, radix).map_or(f64::INFINITY, |n| n as f64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pointers_reach_nested_values_and_wildcards() {
        let v = json!({"files": [{"path": "/a"}, {"path": "/b"}], "a/b": {"~x": 1}});
        let mut seen = Vec::new();
        Pointer::parse("/files/*/path")
            .unwrap()
            .each(&v, &mut |x| seen.push(x.clone()));
        assert_eq!(seen, vec![json!("/a"), json!("/b")]);
        seen.clear();
        Pointer::parse("/a~1b/~0x")
            .unwrap()
            .each(&v, &mut |x| seen.push(x.clone()));
        assert_eq!(seen, vec![json!(1)]);
        seen.clear();
        Pointer::parse("/files/1/path")
            .unwrap()
            .each(&v, &mut |x| seen.push(x.clone()));
        assert_eq!(seen, vec![json!("/b")]);
        assert!(Pointer::parse("files").is_err());
    }

    #[test]
    fn globs_match_whole_strings_with_their_literal_ends() {
        for (glob, text, expected) in [
            ("/srv/**/*.txt", "/srv/a/b/c.txt", true),
            ("/srv/**/*.txt", "/srv/a/b/c.txtx", false),
            ("/srv/**/*.txt", "/tmp/a.txt", false),
            ("delete_*", "delete_records", true),
            ("delete_*", "undelete_records", false),
            ("*_{read,list}", "files_list", true),
            ("*_{read,list}", "files_write", false),
            ("[ab]x?", "bxy", true),
            ("exact", "exact", true),
            ("exact", "exactly", false),
            ("*", "", true),
            ("a\\*b", "a*b", true),
        ] {
            let g = GlobPattern::new(glob).unwrap();
            assert_eq!(g.is_match(text), expected, "{glob} {text}");
        }
    }

    #[test]
    fn paths_are_resolved_before_the_roots_are_checked() {
        let m = Matcher::PathOutside(vec!["/srv/data".into()]);
        for (path, outside) in [
            ("/srv/data/report.txt", false),
            ("/srv/data", false),
            ("/srv/data/../../etc/passwd", true),
            ("/srv/database/x", true),
            ("/srv/./data/./x", false),
            ("relative/file", true),
            ("\\srv\\data\\..\\secret", true),
            // POSIX reads the backslashes as letters: three `..` climb out of /srv/data.
            ("/srv/data/a\\b\\c\\d/../../../etc/passwd", true),
            ("/srv/data/a\\b/../../x", true),
            ("/srv/data/a\\b.txt", false),
            ("/etc/passwd", true),
        ] {
            assert_eq!(m.matches_str(path), outside, "{path}");
        }
    }

    #[test]
    fn sql_detector_sees_unbounded_writes_through_comments() {
        for (sql, flagged) in [
            ("SELECT * FROM users", false),
            ("DELETE FROM users WHERE id = 1", false),
            ("DELETE FROM users", true),
            ("delete /* keep */ from users -- WHERE id=1", true),
            ("UPDATE accounts SET balance = 0", true),
            ("UPDATE accounts SET balance = 0 WHERE id = 7", false),
            ("select 1; DROP TABLE users", true),
            ("TRUNCATE logs", true),
            ("SELECT 'drop table' FROM t", false),
        ] {
            assert_eq!(Detector::SqlDestructive.detects(sql), flagged, "{sql}");
        }
    }

    #[test]
    fn numbers_compare_with_bounds_and_numeric_strings() {
        let m = Matcher::Number {
            min: Some((1000.0, false)),
            max: None,
        };
        assert!(m.matches(&json!(1000.5)));
        assert!(m.matches(&json!("1e6")));
        assert!(!m.matches(&json!(1000)));
        assert!(!m.matches(&json!("lots")));
        assert!(!m.matches(&json!(null)));
        // As Python's float() reads them (found by a fresh pair of eyes: all passed).
        for over in [
            "1e999",
            "Infinity",
            "inf",
            "NaN",
            "5_000",
            "\u{ff15}\u{ff10}\u{ff10}\u{ff10}",
            " 5000 ",
            "\u{0665}\u{0660}\u{0660}\u{0660}",
            // As `Number()` and `int(x, 0)` read them (helper-108 F6).
            "0x1388",
            "0X1388",
            "0o11610",
            "0b1001110001000",
            "0x_1388",
            &format!("0x{}", "f".repeat(40)),
        ] {
            assert!(m.matches(&json!(over)), "{over:?}");
        }
        assert!(m.matches(&json!([5, 5000])), "an element of an array");
        // A numeric character a parser might take as a digit: fail closed only where the
        // string would then be a number.
        assert!(m.matches(&json!("\u{2460}0")), "circled one");
        for under in [
            "999",
            "0x3e7",
            "0x",
            "0xg1388",
            "0b102",
            "-inf",
            "\u{ff19}\u{ff19}",
            "1_0",
            "[5000]",
            "Step \u{2460}",
        ] {
            assert!(!m.matches(&json!(under)), "{under:?}");
        }
    }

    #[test]
    fn an_allow_list_passes_only_the_strings_it_lists() {
        let m = Matcher::NoneOf(vec!["a.example".into()]);
        assert!(!m.matches(&json!("a.example")));
        assert!(!m.matches(&json!(["a.example"])));
        for other in [
            json!("evil.example"),
            json!(["evil.example"]),
            json!(["a.example", "evil.example"]),
            json!(null),
            json!([null]),
            json!(true),
            json!({"host": "a.example"}),
        ] {
            assert!(m.matches(&other), "{other}");
        }
        // A deny list matches only what it lists.
        let m = Matcher::AnyOf(vec!["rm".into()]);
        assert!(m.matches(&json!(["ls", "rm"])));
        assert!(!m.matches(&json!(null)));
    }

    #[test]
    fn percent_encoded_dots_are_resolved_as_a_url_reader_would() {
        let m = Matcher::PathOutside(vec!["/srv/data".into()]);
        for (path, outside) in [
            ("/srv/data/%2e%2e/%2E%2E/etc/passwd", true),
            ("/srv/data/..%2f..%2fetc", true),
            ("/srv/data/100%25.txt", false),
            ("/srv/data/a%2fb", false),
        ] {
            assert_eq!(m.matches_str(path), outside, "{path}");
        }
        assert!(m.matches(&json!(["/srv/data/a", "/etc/passwd"])));
    }
}
