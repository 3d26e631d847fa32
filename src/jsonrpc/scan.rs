//! Best-effort reading of the top-level `id` and `method` of a message that will not be
//! parsed, fed in pieces as it streams by.
//!
//! Used only on the error path (an oversized or malformed line): answering with the request's
//! own id lets the client fail that one call at once instead of waiting for its timeout, and
//! an oversized response can still fail the call it answers, wherever its `id` stands (the
//! TypeScript SDK writes it after the result).

use super::message::RequestId;

/// The top-level `id` and `method` found in a message, if they were whole in what was seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrefixInfo {
    /// The request id.
    pub id: Option<RequestId>,
    /// The method.
    pub method: Option<String>,
    /// A `method` member was there whole but could not be read (not a string, invalid UTF-8,
    /// or longer than the scanner keeps): it may name any method.
    pub method_unreadable: bool,
}

/// Where the scanner stands in the top-level object.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum At {
    #[default]
    Start,
    ExpectKey,
    InKey,
    ExpectColon,
    InValue,
    Done,
    NotAnObject,
}

/// Keys longer than this are not `id` or `method`; values longer than this are not kept.
const MAX_KEY: usize = 16;
const MAX_VALUE: usize = 512;

/// Walks a JSON object's top level byte by byte without building it, across any number of
/// [`KeyScanner::feed`] calls.
#[derive(Debug, Default)]
pub struct KeyScanner {
    at: At,
    key: Vec<u8>,
    value: Vec<u8>,
    /// Whether the current value belongs to `id` or `method` and still fits.
    keep: bool,
    /// Nesting inside the current value.
    depth: usize,
    in_string: bool,
    escaped: bool,
    info: PrefixInfo,
}

impl KeyScanner {
    /// Reads more of the message.
    pub fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            match self.at {
                At::Done | At::NotAnObject => return,
                At::Start => match b {
                    b'{' => self.at = At::ExpectKey,
                    b if b.is_ascii_whitespace() => {}
                    _ => self.at = At::NotAnObject,
                },
                At::ExpectKey => match b {
                    b'"' => {
                        self.key.clear();
                        self.escaped = false;
                        self.at = At::InKey;
                    }
                    b'}' => self.at = At::Done,
                    b if b.is_ascii_whitespace() => {}
                    _ => self.at = At::NotAnObject,
                },
                At::InKey => {
                    if self.escaped {
                        self.escaped = false;
                    } else if b == b'\\' {
                        self.escaped = true;
                    } else if b == b'"' {
                        self.at = At::ExpectColon;
                        continue;
                    }
                    if self.key.len() <= MAX_KEY {
                        self.key.push(b);
                    }
                }
                At::ExpectColon => match b {
                    b':' => {
                        self.value.clear();
                        self.keep = matches!(&self.key[..], b"id" | b"method");
                        self.depth = 0;
                        self.in_string = false;
                        self.escaped = false;
                        self.at = At::InValue;
                    }
                    b if b.is_ascii_whitespace() => {}
                    _ => self.at = At::NotAnObject,
                },
                At::InValue => self.value_byte(b),
            }
        }
    }

    fn value_byte(&mut self, b: u8) {
        if self.in_string {
            if self.escaped {
                self.escaped = false;
            } else if b == b'\\' {
                self.escaped = true;
            } else if b == b'"' {
                self.in_string = false;
            }
            self.keep_byte(b);
            return;
        }
        match b {
            b'"' => self.in_string = true,
            b'{' | b'[' => self.depth += 1,
            b'}' | b']' if self.depth > 0 => self.depth -= 1,
            b',' if self.depth == 0 => {
                self.end_value();
                self.at = At::ExpectKey;
                return;
            }
            b'}' => {
                self.end_value();
                self.at = At::Done;
                return;
            }
            _ => {}
        }
        self.keep_byte(b);
    }

    fn keep_byte(&mut self, b: u8) {
        if self.keep {
            if self.value.len() < MAX_VALUE {
                self.value.push(b);
            } else {
                self.keep = false;
            }
        }
    }

    fn end_value(&mut self) {
        match &self.key[..] {
            b"id" if self.keep => self.info.id = serde_json::from_slice(&self.value).ok(),
            b"method" => {
                self.info.method = self
                    .keep
                    .then(|| serde_json::from_slice(&self.value).ok())
                    .flatten();
                self.info.method_unreadable = self.info.method.is_none();
            }
            _ => {}
        }
    }

    /// What was found; a value still open (cut off) is not taken.
    pub fn finish(self) -> PrefixInfo {
        self.info
    }
}

/// [`KeyScanner`] over one piece of bytes.
pub fn scan_prefix(bytes: &[u8]) -> PrefixInfo {
    let mut s = KeyScanner::default();
    s.feed(bytes);
    s.finish()
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
    fn a_cut_off_value_is_not_taken() {
        assert_eq!(scan_prefix(br#"{"id":12"#).id, None);
        assert_eq!(scan_prefix(br#"[1,2"#), PrefixInfo::default());
    }

    #[test]
    fn finds_an_id_written_after_a_huge_result_fed_in_pieces() {
        let mut s = KeyScanner::default();
        s.feed(br#"{"result":{"content":[{"type":"text","text":""#);
        for _ in 0..1000 {
            s.feed(br#"xxxxxxxx \"}],{[ ,"id":666 "#);
        }
        s.feed(br#""}]},"jsonrpc":"2.0","id":31}"#);
        let info = s.finish();
        assert_eq!(info.id, Some(RequestId::Int(31)));
    }

    #[test]
    fn whitespace_and_carriage_returns_are_skipped_like_json_does() {
        let p = scan_prefix(b"{ \"id\"\r\n : 5 ,\t\"method\" :\"x\"}");
        assert_eq!(p.id, Some(RequestId::Int(5)));
        assert_eq!(p.method.as_deref(), Some("x"));
    }
}
