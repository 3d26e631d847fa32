//! The canonical byte form of a record: RFC 8785 (JSON Canonicalization Scheme) with numbers
//! kept as written.
//!
//! Object members sorted by the UTF-16 code units of their names at every level, no
//! whitespace, strings with RFC 8785's escapes (`\"`, `\\`, `\b \f \n \r \t`, other controls as
//! `\u00xx`, everything else as UTF-8), literals as they are. The one difference from RFC 8785:
//! a number keeps its text (RFC 8785 rewrites it in ECMAScript's shortest form of the IEEE-754
//! double). The audit trail promises ids and arguments "exactly as sent", digit for digit
//! (`18446744073709551617` is not `18446744073709552000`, nor `1.50` `1.5`), and a hash must
//! cover exactly what is stored. For every number the proxy makes itself (integers below 2^53)
//! the two forms are the same, so a record whose numbers are all in shortest form, as ours are
//! unless a client sent another spelling, is byte for byte RFC 8785 (tested against an
//! independent implementation). A verifier recomputing the form keeps number text as it is.
//!
//! No crate does this: RFC 8785 crates go through `f64`. Parsing of strings is serde_json's.

use std::borrow::Cow;

/// Nesting deeper than this is refused (stack safety). serde_json, which parsed everything a
/// record holds before, stops at 128 levels, so no event comes near it.
const MAX_DEPTH: usize = 512;

/// Why bytes have no canonical form.
#[derive(Debug, thiserror::Error)]
pub enum CanonError {
    /// Not JSON, or not the JSON a record may hold.
    #[error("not canonicalizable JSON at byte {at}: {what}")]
    Syntax {
        /// Where.
        at: usize,
        /// What is wrong.
        what: &'static str,
    },
    /// A member to add is there already.
    #[error("the object has the member {0:?} already")]
    Duplicate(String),
}

/// The canonical form of `json` (one JSON value), with the members `extra` (name, canonical
/// JSON of the value) added to its top-level object; `Err(Duplicate)` if `json` has one of
/// them already.
///
/// Members of one name (RFC 8785 wants I-JSON, which has none; a client's arguments with a
/// repeated key are stored, masked, as evidence of the attempt) keep their order: the sort is
/// stable, so the form is still a function of the text.
pub fn canonicalize_with(json: &[u8], extra: &[(&str, &[u8])]) -> Result<Vec<u8>, CanonError> {
    let mut p = Parser { b: json, i: 0 };
    let mut out = Vec::with_capacity(json.len() + 96);
    p.ws();
    if extra.is_empty() {
        p.value(&mut out, 0)?;
    } else {
        if p.peek() != Some(b'{') {
            return Err(p.err("extra members need an object"));
        }
        p.object(&mut out, 0, extra)?;
    }
    p.ws();
    if p.i != json.len() {
        return Err(p.err("trailing bytes"));
    }
    Ok(out)
}

/// The canonical form of `json`.
pub fn canonicalize(json: &[u8]) -> Result<Vec<u8>, CanonError> {
    canonicalize_with(json, &[])
}

/// The canonical JSON of a value we serialize ourselves (statements, export lines).
pub fn to_canonical<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value)
        .ok()
        .and_then(|json| canonicalize(&json).ok())
        .unwrap_or_default()
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Parser<'a> {
    fn err(&self, what: &'static str) -> CanonError {
        CanonError::Syntax { at: self.i, what }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn expect(&mut self, c: u8, what: &'static str) -> Result<(), CanonError> {
        self.ws();
        if self.peek() != Some(c) {
            return Err(self.err(what));
        }
        self.i += 1;
        Ok(())
    }

    fn value(&mut self, out: &mut Vec<u8>, depth: usize) -> Result<(), CanonError> {
        if depth > MAX_DEPTH {
            return Err(self.err("nested too deeply"));
        }
        self.ws();
        match self.peek() {
            Some(b'{') => self.object(out, depth, &[]),
            Some(b'[') => self.array(out, depth),
            Some(b'"') => {
                let start = self.i;
                let s = self.string()?;
                match s {
                    // Nothing to escape or unescape: the token is already canonical.
                    Cow::Borrowed(_) => out.extend_from_slice(&self.b[start..self.i]),
                    Cow::Owned(s) => write_str(out, &s),
                }
                Ok(())
            }
            Some(b't') => self.literal(out, b"true"),
            Some(b'f') => self.literal(out, b"false"),
            Some(b'n') => self.literal(out, b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(out),
            _ => Err(self.err("expected a value")),
        }
    }

    fn literal(&mut self, out: &mut Vec<u8>, word: &[u8]) -> Result<(), CanonError> {
        if !self.b[self.i..].starts_with(word) {
            return Err(self.err("bad literal"));
        }
        self.i += word.len();
        out.extend_from_slice(word);
        Ok(())
    }

    /// A number, checked against JSON's grammar and copied as written.
    fn number(&mut self, out: &mut Vec<u8>) -> Result<(), CanonError> {
        let start = self.i;
        let digits = |p: &mut Self| {
            let from = p.i;
            while matches!(p.peek(), Some(b'0'..=b'9')) {
                p.i += 1;
            }
            p.i > from
        };
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        if self.peek() == Some(b'0') {
            self.i += 1;
        } else if !digits(self) {
            return Err(self.err("bad number"));
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if !digits(self) {
                return Err(self.err("bad number"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if !digits(self) {
                return Err(self.err("bad number"));
            }
        }
        out.extend_from_slice(&self.b[start..self.i]);
        Ok(())
    }

    /// A string token, decoded (escapes resolved by serde_json; borrowed when it has none).
    fn string(&mut self) -> Result<Cow<'a, str>, CanonError> {
        let start = self.i;
        self.i += 1;
        // The closing quote: the next `"` or `\\` (memchr's vector search; a 64 KiB argument
        // is one string), stepping over each escape's next byte.
        let mut escaped = false;
        loop {
            match memchr::memchr2(b'"', b'\\', &self.b[self.i..]) {
                None => {
                    self.i = self.b.len();
                    return Err(self.err("unterminated string"));
                }
                Some(k) if self.b[self.i + k] == b'"' => {
                    self.i += k;
                    break;
                }
                Some(k) => {
                    escaped = true;
                    self.i += k + 2;
                    if self.i >= self.b.len() {
                        return Err(self.err("unterminated string"));
                    }
                }
            }
        }
        self.i += 1;
        let b: &'a [u8] = self.b;
        let raw = &b[start..self.i];
        let bad = CanonError::Syntax {
            at: start,
            what: "bad string",
        };
        let inner = &raw[1..raw.len() - 1];
        if !escaped && !has_control(inner) {
            return std::str::from_utf8(inner)
                .map(Cow::Borrowed)
                .map_err(|_| bad);
        }
        serde_json::from_slice::<String>(raw)
            .map(Cow::Owned)
            .map_err(|_| bad)
    }

    fn array(&mut self, out: &mut Vec<u8>, depth: usize) -> Result<(), CanonError> {
        self.i += 1;
        out.push(b'[');
        self.ws();
        if self.peek() == Some(b']') {
            self.i += 1;
            out.push(b']');
            return Ok(());
        }
        loop {
            self.value(out, depth + 1)?;
            self.ws();
            match self.peek() {
                Some(b',') => {
                    self.i += 1;
                    out.push(b',');
                }
                Some(b']') => {
                    self.i += 1;
                    out.push(b']');
                    return Ok(());
                }
                _ => return Err(self.err("expected , or ]")),
            }
        }
    }

    fn object(
        &mut self,
        out: &mut Vec<u8>,
        depth: usize,
        extra: &[(&str, &[u8])],
    ) -> Result<(), CanonError> {
        self.i += 1;
        // Values rendered into one scratch buffer; members sorted by name, then copied out.
        let mut scratch = Vec::new();
        let mut members: Vec<(Cow<'a, str>, usize, usize)> = Vec::new();
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
        } else {
            loop {
                self.ws();
                if self.peek() != Some(b'"') {
                    return Err(self.err("expected a member name"));
                }
                let name = self.string()?;
                self.expect(b':', "expected :")?;
                let from = scratch.len();
                self.value(&mut scratch, depth + 1)?;
                members.push((name, from, scratch.len()));
                self.ws();
                match self.peek() {
                    Some(b',') => self.i += 1,
                    Some(b'}') => {
                        self.i += 1;
                        break;
                    }
                    _ => return Err(self.err("expected , or }")),
                }
            }
        }
        for (name, value) in extra {
            if members.iter().any(|m| m.0 == *name) {
                return Err(CanonError::Duplicate(name.to_string()));
            }
            let from = scratch.len();
            scratch.extend_from_slice(value);
            members.push((Cow::Owned(name.to_string()), from, scratch.len()));
        }
        if members.iter().any(|m| needs_utf16(&m.0)) {
            members.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
        } else {
            members.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        }
        out.push(b'{');
        for (k, (name, from, to)) in members.iter().enumerate() {
            if k > 0 {
                out.push(b',');
            }
            write_str(out, name);
            out.push(b':');
            out.extend_from_slice(&scratch[*from..*to]);
        }
        out.push(b'}');
        Ok(())
    }
}

/// Whether `bytes` holds a control character (below U+0020), which JSON allows in a string
/// only escaped. Branch-free over blocks so that the compiler vectorizes it: this runs over
/// every stored argument string.
fn has_control(bytes: &[u8]) -> bool {
    bytes
        .chunks(64)
        .any(|block| block.iter().fold(false, |seen, &c| seen | (c < 0x20)))
}

/// RFC 8785 orders member names by UTF-16 code units. UTF-8 byte order is the same unless a
/// character above U+FFFF meets one in U+E000..U+FFFF, which needs a byte of 0xEE or more:
/// only an object with such a name is sorted by code units.
fn needs_utf16(name: &str) -> bool {
    name.bytes().any(|c| c >= 0xEE)
}

/// A string with RFC 8785's escapes (serde_json's are the same: `"` `\` and controls only,
/// short forms where JSON has them, lowercase hex).
fn write_str(out: &mut Vec<u8>, s: &str) {
    // Writing to a Vec cannot fail.
    let _ = serde_json::to_writer(out, s);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn independent(json: &str) -> String {
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        serde_json_canonicalizer::to_string(&v).unwrap()
    }

    #[test]
    fn equals_rfc8785_where_numbers_are_in_shortest_form() {
        for json in [
            r#"{"b":[1,2,{"z":null,"a":true}],"a":"x","":false}"#,
            r#" { "\u00e9" : "é\u0007\n\t\"\\\/", "e" : 1 , "\ud83d\ude00": -5, "\u20ac": 0, "ﬀ": "\u2028"} "#,
            r#"[[],{},"",0,-1,123456789012345,false]"#,
            r#"{"peach":1,"péché":2,"pêche":3,"sin":4,"\u0080":5,"\ud800\udc00":6,"\uffff":7}"#,
            "\"\\u001f\\u007f\u{10FFFF}\"",
        ] {
            let ours = String::from_utf8(canonicalize(json.as_bytes()).unwrap()).unwrap();
            assert_eq!(ours, independent(json), "{json}");
        }
    }

    #[test]
    fn long_strings_with_escapes_anywhere_match_rfc8785() {
        // The string scan jumps between quotes and backslashes and checks controls in blocks:
        // put an escape, a raw control and a multi-byte character at every block boundary.
        for len in [1usize, 63, 64, 65, 127, 128, 129, 4096] {
            for at in [0, len / 2, len.saturating_sub(1)] {
                for insert in ["\\n", "\\\"", "\\\\", "\\u00e9", "é", "\\ud83d\\ude00"] {
                    let mut body = "x".repeat(len);
                    body.insert_str(at, insert);
                    let json = format!(r#"{{"k":"{body}","a":1}}"#);
                    let ours = String::from_utf8(canonicalize(json.as_bytes()).unwrap()).unwrap();
                    assert_eq!(ours, independent(&json), "{len} {at} {insert}");
                }
                let mut raw = "x".repeat(len).into_bytes();
                raw.insert(at, 0x01);
                let json = [&b"{\"k\":\""[..], &raw, b"\"}"].concat();
                assert!(
                    canonicalize(&json).is_err(),
                    "a raw control at {at} of {len}"
                );
            }
        }
    }

    #[test]
    fn numbers_keep_their_text_and_bad_json_is_refused() {
        assert_eq!(
            canonicalize(
                br#"{"id": 18446744073709551617, "x": -98765432109876543210.5e3, "y": 1.50}"#
            )
            .unwrap(),
            br#"{"id":18446744073709551617,"x":-98765432109876543210.5e3,"y":1.50}"#
        );
        // A repeated name keeps its order (the sort is stable).
        assert_eq!(
            canonicalize(br#"{"b":1,"a":2,"\u0061":1}"#).unwrap(),
            br#"{"a":2,"a":1,"b":1}"#
        );
        for bad in [
            &b"{\"a\":01}"[..],
            b"{\"a\":1.}",
            b"{\"a\":-}",
            b"[1,]",
            b"{\"a\":1} x",
            b"\"\xff\"",
            b"{\"a\" 1}",
            b"tru",
            b"\"\\\"",
            b"\"abc\\",
            b"\"abc",
            b"\"a\x01b\"",
            b"{\"a\x1f\":1}",
        ] {
            assert!(
                canonicalize(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        // Deeper than serde_json parses (128) is fine; only far deeper is refused.
        let nested = "[".repeat(200) + &"]".repeat(200);
        assert_eq!(canonicalize(nested.as_bytes()).unwrap(), nested.as_bytes());
        let deep = "[".repeat(MAX_DEPTH + 2) + &"]".repeat(MAX_DEPTH + 2);
        assert!(canonicalize(deep.as_bytes()).is_err());
    }

    #[test]
    fn extra_members_are_sorted_in_and_may_not_be_there_already() {
        let out = canonicalize_with(br#"{"z":1,"a":2}"#, &[("seq", b"7"), ("b", b"null")]).unwrap();
        assert_eq!(out, br#"{"a":2,"b":null,"seq":7,"z":1}"#);
        assert!(matches!(
            canonicalize_with(br#"{"seq":1}"#, &[("seq", b"7")]),
            Err(CanonError::Duplicate(_))
        ));
        assert!(canonicalize_with(b"[1]", &[("seq", b"7")]).is_err());
    }
}
