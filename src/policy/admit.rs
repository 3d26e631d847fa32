//! What the proxy refuses in a `tools/call` before its policy assesses it: names a server could
//! read as another tool's, and arguments a server could read two ways or that are not an
//! object. Shared by the pipeline and `policy test`, so the test says what the proxy does.

use std::collections::HashSet;

use serde_json::Value;
use unicode_normalization::UnicodeNormalization;

/// Characters that render as nothing: Unicode's Default_Ignorable_Code_Point set
/// (DerivedCoreProperties.txt: soft hyphen, combining grapheme joiner, Hangul fillers,
/// Khmer inherent vowels, Mongolian free variation selectors and vowel separator,
/// zero-width and direction marks, word joiner and invisible operators, directional
/// isolates, variation selectors, byte order mark, halfwidth Hangul filler, shorthand
/// format controls, musical symbol formats, tags and the rest of plane 14), and the
/// interlinear annotation marks. NFKC keeps most of them, and a server that drops them
/// (NFKC_Casefold, UTS #46) reads the name without them (helper-121 F3).
pub(crate) fn invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}'..='\u{1160}' | '\u{17B4}'..='\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}'
        | '\u{FFA0}' | '\u{FFF0}'..='\u{FFFB}' | '\u{1BCA0}'..='\u{1BCA3}'
        | '\u{1D173}'..='\u{1D17A}' | '\u{E0000}'..='\u{E0FFF}')
}

/// A character that is not ASCII but reads as an ASCII letter or digit once its case is
/// changed (`İ` lowercases to `i` + U+0307, and Java's `equalsIgnoreCase` reads it as `i`;
/// `ı`, `ſ`, the Kelvin sign; `ß` uppercases to `SS`): a server matching names
/// case-insensitively may run the ASCII name (helper-121 F2).
fn ascii_under_case(c: char) -> bool {
    // Round trips too: `ẞ` (U+1E9E) lowercases to `ß`, whose uppercase is `SS` (full case
    // folding gives `ss`; helper-123 N1).
    !c.is_ascii()
        && (c.to_lowercase().any(|l| l.is_ascii_alphanumeric())
            || c.to_uppercase().any(|u| u.is_ascii_alphanumeric())
            || c.to_lowercase()
                .flat_map(char::to_uppercase)
                .chain(c.to_uppercase().flat_map(char::to_lowercase))
                .any(|x| x.is_ascii_alphanumeric()))
}

/// Why a `tools/call` name could be read by a server as the name of another tool than the
/// one the policy judges (its rules match names exactly), if it could: spaces around it,
/// control or invisible format characters in it, full-width letters (NFKC reads
/// `ｄｅｌｅｔｅ` as `delete`), or a name not in `listed` (the server's `tools/list`) that
/// NFKC changes (`ⓓelete_file`, `cafe\u{301}`) or that differs from one in it only in case
/// (`DELETE_FILE`). MCP 2025-11-25 ("Tool names") asks
/// for names of `A-Z a-z 0-9 _ - .`, so no tool a client may call is refused by this.
pub fn loose_tool_name(name: &str, listed: &HashSet<String>) -> Option<String> {
    if name.trim() != name {
        return Some(format!("the tool name {name:?} has spaces around it"));
    }
    if let Some(c) = name.chars().find(|&c| c.is_control() || invisible(c)) {
        return Some(format!(
            "the tool name {name:?} holds the control or invisible character U+{:04X}",
            u32::from(c)
        ));
    }
    // U+FFFD is what the proxy reads for a lone surrogate escape (`"delete_file\ud800"`) or
    // a byte that is no UTF-8: the server got something else, which a server that drops
    // what it cannot encode reads as another tool's name; and two names sent apart would be
    // one name in the trail (helper-108 F4).
    if name.contains('\u{FFFD}') {
        return Some(format!(
            "the tool name {name:?} holds U+FFFD, read for a lone surrogate escape or a byte that is no UTF-8: the server may read another name than the trail can record"
        ));
    }
    if name.chars().any(|c| ('\u{FF01}'..='\u{FF5E}').contains(&c)) {
        return Some(format!(
            "the tool name {name:?} holds full-width letters, which a server normalizing it (NFKC) reads as ASCII"
        ));
    }
    if listed.contains(name) {
        return None;
    }
    // Styled, circled and superscript letters (`𝐝`, `ⓓ`, `ᵈ`), ligatures and decomposed
    // accents (`cafe\u{301}`) that a server normalizing names reads as other letters: NFKC
    // (Unicode Standard Annex #15) is what such servers apply. ASCII is its own NFKC form.
    if !name.is_ascii() {
        let normal: String = name.nfkc().collect();
        if normal != name {
            return Some(format!(
                "the tool name {name:?} is not listed, and reads as {normal:?} under Unicode compatibility normalization (NFKC); servers that normalize names would run {normal:?}"
            ));
        }
        if let Some(c) = name.chars().find(|&c| ascii_under_case(c)) {
            return Some(format!(
                "the tool name {name:?} is not listed, and holds U+{:04X}, which reads as an ASCII letter once its case is changed; servers that match names case-insensitively may run another tool",
                u32::from(c)
            ));
        }
    }
    let twin = listed
        .iter()
        .find(|k| crate::jsonrpc::names::same_name(name, k))?;
    Some(format!(
        "the tool name {name:?} is not listed, and differs from the listed {twin:?} only in case; servers that match names case-insensitively would run {twin:?}"
    ))
}

/// The `arguments` of a `tools/call` (`raw`: their JSON text) as the policy assesses them:
/// `None` when absent or `null`.
///
/// # Errors
/// Why they are refused: members a server could read two ways (a key twice: the policy must
/// see what the server executes, RFC 8259 §4 leaves duplicates to the reader), JSON the strict
/// parser rejects, or a value that is not an object (MCP `CallToolRequest.params.arguments` is
/// an object; anything else would reach the tool unassessed). The message can quote the
/// input: protect it before storing.
pub fn call_arguments(raw: Option<&str>) -> Result<Option<Value>, String> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    match super::strict::parse_validated(raw).map_err(|e| unreadable(&e))? {
        v @ Value::Object(_) => Ok(Some(v)),
        Value::Null => Ok(None),
        _ => Err("`arguments` must be an object".to_string()),
    }
}

/// A 2026-07-28 retry's `inputResponses` (`entries`: each key and its answer's JSON text) as
/// the policy judges them with the arguments: each answer read strictly, the proxy's own
/// confirmation answer (`ours`: its key, when the retry carries the proxy's own round, which
/// takes that answer out before forwarding) left out; `None` when nothing is left.
///
/// # Errors
/// Why they are refused, as for arguments ([`call_arguments`]): an answer a server could
/// read two ways, or JSON the strict parser rejects. The message can quote the input:
/// protect it before storing.
pub fn call_responses<'a>(
    entries: impl IntoIterator<Item = (&'a str, &'a str)>,
    ours: Option<&str>,
) -> Result<Option<Value>, String> {
    let mut out = serde_json::Map::new();
    for (key, raw) in entries.into_iter().filter(|(k, _)| Some(*k) != ours) {
        let v = super::strict::parse_validated(raw).map_err(|e| {
            format!(
                "invalid tools/call inputResponses ({key:?}): {}",
                unreadable(&e)
            )
        })?;
        out.insert(key.to_string(), v);
    }
    Ok((!out.is_empty()).then_some(Value::Object(out)))
}

/// The most levels of arrays and objects the policy reads in one JSON value: serde_json's
/// recursion limit.
pub const MAX_NESTING: usize = 127;

/// Why arguments could not be read, in words a user can act on: past [`MAX_NESTING`] the
/// parser's own message ("recursion limit exceeded") would read as a fault of the proxy.
pub fn unreadable(e: &serde_json::Error) -> String {
    if e.to_string().starts_with("recursion limit exceeded") {
        format!(
            "they are nested deeper than {MAX_NESTING} levels of arrays and objects, the most the policy reads: it cannot assess them, so the call is not forwarded (flatten the arguments, or set [risk] enabled = false to pass calls unassessed)"
        )
    } else if e.to_string().starts_with("number out of range") {
        format!(
            "a number is beyond the range of a 64-bit float ({e}): JSON readers take it differently (Infinity, or an error), so the policy cannot judge it and the call is not forwarded (send it as a string, or set [risk] enabled = false to pass calls unassessed)"
        )
    } else {
        e.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_a_server_could_read_as_another_tool() {
        let listed: HashSet<String> = ["delete_file".to_string()].into();
        for name in [
            " delete_file",
            "delete\u{200B}_file",
            "ｄｅｌｅｔｅ_file",
            "DELETE_FILE",
            "delete_file\u{FFFD}",
            // helper-120 F4: what NFKC reads as `delete_file`, or as another listed name.
            "\u{1D41D}\u{1D41E}\u{1D425}\u{1D41E}\u{1D42D}\u{1D41E}_file",
            "\u{1D68D}elete_file",
            "\u{24D3}elete_file",
            "\u{1D48}elete_file",
            "cafe\u{301}",
            "\u{FB01}le",
            // helper-121 F2, F3: a capital I with a dot (Java folds it to `i`), and
            // invisible characters NFKC keeps.
            "delete_f\u{130}le",
            "proce\u{1E9E}_kill",
            "DELETE_F\u{130}LE",
            "delete_\u{212A}ey",
            "delete_file\u{34F}",
            "delete_file\u{FE0F}",
            "delete_file\u{E0041}",
            "delete\u{115F}_file",
            "delete_file\u{17B4}",
            "delete_file\u{180B}",
        ] {
            assert!(loose_tool_name(name, &listed).is_some(), "{name:?}");
        }
        // Names the server listed pass as they are, whatever their form; non-ASCII names
        // that are their own NFKC form pass too.
        let listed: HashSet<String> = ["delete_file", "\u{24D3}elete", "caf\u{e9}"]
            .map(String::from)
            .into();
        for name in [
            "delete_file",
            "read-file.v2",
            "DELETE_FILE_2",
            "\u{24D3}elete",
            "caf\u{e9}",
            "\u{5220}\u{9664}",
        ] {
            assert_eq!(loose_tool_name(name, &listed), None, "{name:?}");
        }
    }

    #[test]
    fn arguments_that_are_not_one_object() {
        assert!(call_arguments(Some("[1]")).is_err());
        assert!(call_arguments(Some("\"x\"")).is_err());
        assert!(call_arguments(Some(r#"{"a":1,"a":2}"#)).is_err());
        assert_eq!(call_arguments(Some("null")), Ok(None));
        assert_eq!(call_arguments(None), Ok(None));
        // Past serde_json's recursion limit: said so, not "recursion limit exceeded". The
        // object is one level, each `[` one more: 127 levels are read, 128 are not.
        let nested = |levels: usize| {
            format!(
                "{{\"a\":{}1{}}}",
                "[".repeat(levels - 1),
                "]".repeat(levels - 1)
            )
        };
        let e = call_arguments(Some(&nested(MAX_NESTING + 1))).unwrap_err();
        assert!(e.contains("nested deeper than 127 levels"), "{e}");
        assert!(call_arguments(Some(&nested(MAX_NESTING))).is_ok());
        assert_eq!(
            call_arguments(Some(r#"{"a":1}"#)),
            Ok(Some(serde_json::json!({"a": 1})))
        );
    }
}
