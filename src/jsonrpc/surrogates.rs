//! Lone UTF-16 surrogates written as `\u` escapes (`"\ud83d"`), read the way lenient peers
//! read them.
//!
//! RFC 8259 §7 lets a string hold any `\uXXXX` escape, and §8.2 notes that a lone surrogate
//! (`\uD800`–`\uDFFF` not in a high–low pair) makes a string whose behaviour is
//! unpredictable. JavaScript writes one whenever a string is cut inside an emoji
//! (`JSON.stringify("😀".slice(0, 1))` is `"\ud83d"`), and `JSON.parse`, Python's `json`
//! and the official SDKs read it; serde_json refuses it ("unexpected end of hex escape",
//! "lone leading surrogate"). The proxy would then refuse a message its server takes (a
//! difference its client can see), so it reads such a line through a copy where each lone
//! surrogate escape is replaced by `\ufffd` (U+FFFD REPLACEMENT CHARACTER, what Go's
//! `encoding/json` and WHATWG's decoders make of one). The copy has the same length and every
//! other byte in place, so whatever the proxy forwards as it was received is taken from the
//! original at the same offsets ([`crate::proxy::pipeline`]): the peer gets the bytes that
//! were sent, and the trail records U+FFFD where the surrogate was (a call's access says so
//! among its risk reasons: its stored arguments are not byte for byte what the server ran).

/// The line with every lone surrogate escape inside a string replaced by `\ufffd`, or `None`
/// when it has none (the common case: one SIMD search for `\u`, then a look at the escapes
/// found). Same length as `line`; escaped backslashes (`"\\ud800"`, text, not an escape)
/// and anything outside strings are left alone; what is not JSON is left for the parser to
/// refuse.
pub fn readable(line: &[u8]) -> Option<Vec<u8>> {
    if !memchr::memmem::find_iter(line, b"\\u")
        .any(|i| line.get(i + 2).is_some_and(|b| b | 0x20 == b'd'))
    {
        return None;
    }
    let mut out: Option<Vec<u8>> = None;
    let mut in_string = false;
    let mut i = 0;
    while i < line.len() {
        match (in_string, line[i]) {
            (false, b'"') | (true, b'"') => {
                in_string = !in_string;
                i += 1;
            }
            (true, b'\\') if line.get(i + 1) == Some(&b'u') => {
                let Some(unit) = hex4(line, i + 2) else {
                    i += 2;
                    continue;
                };
                let lone = match unit {
                    0xD800..=0xDBFF => {
                        let low = (line.get(i + 6) == Some(&b'\\')
                            && line.get(i + 7) == Some(&b'u'))
                        .then(|| hex4(line, i + 8))
                        .flatten();
                        if low.is_some_and(|l| (0xDC00..=0xDFFF).contains(&l)) {
                            i += 12;
                            continue;
                        }
                        true
                    }
                    0xDC00..=0xDFFF => true,
                    _ => false,
                };
                if lone {
                    out.get_or_insert_with(|| line.to_vec())[i..i + 6].copy_from_slice(b"\\ufffd");
                }
                i += 6;
            }
            (true, b'\\') => i += 2,
            _ => i += 1,
        }
    }
    out
}

/// The code unit of the four hex digits at `at`, if there are four.
fn hex4(line: &[u8], at: usize) -> Option<u16> {
    let digits = line.get(at..at + 4)?;
    let text = std::str::from_utf8(digits).ok()?;
    if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u16::from_str_radix(text, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::readable;

    fn read(line: &str) -> Option<String> {
        readable(line.as_bytes()).map(|v| String::from_utf8(v).unwrap())
    }

    #[test]
    fn lone_surrogates_become_replacement_characters_in_place() {
        let line = r#"{"a":"smile \ud83d","b":"\uDC00x","\udbff":1}"#;
        let out = read(line).unwrap();
        assert_eq!(out, r#"{"a":"smile \ufffd","b":"\ufffdx","\ufffd":1}"#);
        assert_eq!(out.len(), line.len());
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["a"], "smile \u{FFFD}");
        // A high surrogate followed by another high one: both are lone.
        assert_eq!(read(r#"["\ud800\ud800"]"#).unwrap(), r#"["\ufffd\ufffd"]"#);
        // A pair cut by its end of string: lone.
        assert_eq!(read(r#"["\ud83d"]"#).unwrap(), r#"["\ufffd"]"#);
    }

    #[test]
    fn pairs_escaped_backslashes_and_other_escapes_are_left_alone() {
        // A pair (Python's json.dumps writes every emoji so).
        assert_eq!(read(r#"{"e":"\ud83d\ude00 \u00e9"}"#), None);
        // `\\ud800` is a backslash and the text "ud800", not an escape.
        assert_eq!(read(r#"{"p":"C:\\ud800\\x"}"#), None);
        assert_eq!(read(r#"{"p":"\\\ud800"}"#).unwrap(), r#"{"p":"\\\ufffd"}"#);
        // Not inside a string, or not hex: the parser's to refuse.
        assert_eq!(read(r#"{"a":1} \ud800"#), None);
        assert_eq!(read(r#"{"a":"\udzzz"}"#), None);
        assert_eq!(read(r#"{"a":"plain"}"#), None);
        // An escaped quote does not end the string.
        assert_eq!(read(r#"{"a":"\"\ud800"}"#).unwrap(), r#"{"a":"\"\ufffd"}"#);
    }
}
