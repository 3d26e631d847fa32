//! Member names as lenient peers compare them.
//!
//! Go's `encoding/json` matches a member name to a struct field case-insensitively, with
//! Unicode simple case folding (`ſ` is `s`, the Kelvin sign is `k`), the last match winning:
//! `"Method"`, `"paramſ"` or `"Path"` are `method`, `params` and `path` to such a server while
//! an exact reader ignores them as unknown. This was CVE-2026-27896 in the Go MCP SDK. The
//! proxy refuses messages and arguments whose names such a server would read differently, so
//! that what it inspects is what any server runs.
//!
//! Readers that keep names as C strings (cJSON, and servers built on it) end a name at its
//! first NUL: `"path\u0000"`, or `"path\u0000x"`, is `path` to them. Names are compared up to
//! that NUL too ([`c_part`]).

use std::borrow::Cow;

/// What a reader that keeps names as C strings reads of `name`: up to its first NUL.
pub fn c_part(name: &str) -> &str {
    memchr::memchr(0, name.as_bytes()).map_or(name, |at| &name[..at])
}

/// The name folded for comparison: cut at its first NUL ([`c_part`]), then every character
/// upper-cased then lower-cased, which puts the members of one simple-folding orbit (`s`,
/// `S`, `ſ`; `k`, `K`, `K`) on one form. A few full foldings (`ß` and `SS`) are merged too: a
/// wider net, never a narrower one.
pub fn fold(name: &str) -> Cow<'_, str> {
    let name = c_part(name);
    if name.is_ascii() {
        if name.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(name.to_ascii_lowercase())
        } else {
            Cow::Borrowed(name)
        }
    } else {
        Cow::Owned(
            name.chars()
                .flat_map(char::to_uppercase)
                .flat_map(char::to_lowercase)
                .collect(),
        )
    }
}

/// Whether a case-insensitive reader takes `a` and `b` for the same member.
pub fn same_name(a: &str, b: &str) -> bool {
    let (a, b) = (c_part(a), c_part(b));
    if a.is_ascii() && b.is_ascii() {
        return a.eq_ignore_ascii_case(b);
    }
    // Folding changes a character's length by at most a few bytes (`ſ` 2 -> `s` 1,
    // Kelvin 3 -> `k` 1).
    a.len().abs_diff(b.len()) <= 2 * a.len().min(b.len()) + 4 && fold(a) == fold(b)
}

/// The member of `known` that `name` stands for in a case-insensitive reader without being
/// spelled exactly like it, if any.
pub fn near_miss<'k>(name: &str, known: &[&'k str]) -> Option<&'k str> {
    if known.contains(&name) {
        return None;
    }
    known.iter().copied().find(|k| same_name(name, k))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_fold_alike() {
        for (a, b) in [
            ("method", "Method"),
            ("method", "METHOD"),
            ("params", "paramſ"),
            ("kind", "\u{212a}ind"),
            ("id", "ID"),
        ] {
            assert!(same_name(a, b), "{a} {b}");
        }
        // A C-string reader stops at the NUL.
        assert!(same_name("path\u{0}", "path"));
        assert!(same_name("Path\u{0}../../etc", "path"));
        assert_eq!(fold("PATH\u{0}x"), "path");
        assert!(!same_name("path\u{200b}", "path"));
        assert!(!same_name("method", "methods"));
        assert!(!same_name("id", "ïd"));
        assert_eq!(near_miss("Method", &["id", "method"]), Some("method"));
        assert_eq!(near_miss("method", &["id", "method"]), None);
        assert_eq!(near_miss("_meta", &["id", "method"]), None);
    }
}
