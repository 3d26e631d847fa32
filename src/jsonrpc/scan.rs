//! Best-effort reading of `id` and `method` from the start of a message that will not be parsed.
//!
//! Used only on the error path (an oversized message): answering with the request's own id
//! lets the client fail that one call at once instead of waiting for its timeout.

use super::message::RequestId;

/// The top-level `id` and `method` found in a message prefix, if they were complete in it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrefixInfo {
    /// The request id, when it appeared before the cut.
    pub id: Option<RequestId>,
    /// The method, when it appeared before the cut.
    pub method: Option<String>,
}

/// Walks the top-level keys of a (possibly truncated) JSON object without building it.
pub fn scan_prefix(bytes: &[u8]) -> PrefixInfo {
    let mut info = PrefixInfo::default();
    let mut s = Scanner { b: bytes, i: 0 };
    s.ws();
    if !s.eat(b'{') {
        return info;
    }
    loop {
        s.ws();
        let Some(key) = s.string_span() else {
            return info;
        };
        s.ws();
        if !s.eat(b':') {
            return info;
        }
        s.ws();
        let start = s.i;
        if !s.skip_value() {
            return info;
        }
        let value = &bytes[start..s.i];
        match key {
            b"id" => info.id = serde_json::from_slice(value).ok(),
            b"method" => info.method = serde_json::from_slice(value).ok(),
            _ => {}
        }
        if info.id.is_some() && info.method.is_some() {
            return info;
        }
        s.ws();
        if !s.eat(b',') {
            return info;
        }
    }
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    fn ws(&mut self) {
        while self.i < self.b.len() && self.b[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.b.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    /// The raw contents of a string (escapes left in), or None if it is cut off.
    fn string_span(&mut self) -> Option<&'a [u8]> {
        if !self.eat(b'"') {
            return None;
        }
        let start = self.i;
        while self.i < self.b.len() {
            match self.b[self.i] {
                b'\\' => self.i += 2,
                b'"' => {
                    let span = &self.b[start..self.i];
                    self.i += 1;
                    return Some(span);
                }
                _ => self.i += 1,
            }
        }
        None
    }

    /// Skips one complete value; false if it is cut off.
    fn skip_value(&mut self) -> bool {
        match self.b.get(self.i) {
            None => false,
            Some(b'"') => self.string_span().is_some(),
            Some(b'{' | b'[') => {
                let mut depth = 0usize;
                while self.i < self.b.len() {
                    match self.b[self.i] {
                        b'"' => {
                            if self.string_span().is_none() {
                                return false;
                            }
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                self.i += 1;
                                return true;
                            }
                        }
                        _ => {}
                    }
                    self.i += 1;
                }
                false
            }
            Some(_) => {
                while self.i < self.b.len() && !matches!(self.b[self.i], b',' | b'}' | b']') {
                    if self.b[self.i].is_ascii_whitespace() {
                        break;
                    }
                    self.i += 1;
                }
                // A scalar that runs to the end of the prefix may itself be cut off.
                self.i < self.b.len()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_id_and_method_in_any_order() {
        let p = scan_prefix(br#"{"jsonrpc":"2.0","method":"tools/call","id":"a\"b","params":{"x""#);
        assert_eq!(p.method.as_deref(), Some("tools/call"));
        assert_eq!(p.id, Some(RequestId::Str("a\"b".into())));
    }

    #[test]
    fn skips_nested_values_before_the_id() {
        let p = scan_prefix(br#"{"params":{"a":[1,{"id":9}],"s":"}"},"id":42,"#);
        assert_eq!(p.id, Some(RequestId::Int(42)));
        assert_eq!(p.method, None);
    }

    #[test]
    fn a_cut_off_number_is_not_taken() {
        assert_eq!(scan_prefix(br#"{"id":12"#).id, None);
        assert_eq!(scan_prefix(br#"[1,2"#), PrefixInfo::default());
    }
}
