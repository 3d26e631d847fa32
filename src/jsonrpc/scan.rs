//! Best-effort reading of the top-level `id` and `method` of a message that will not be
//! parsed, fed in pieces as it streams by.
//!
//! Used only on the error path (an oversized or malformed line): answering with the request's
//! own id lets the client fail that one call at once instead of waiting for its timeout, and
//! an oversized response can still fail the call it answers, wherever its `id` stands (the
//! TypeScript SDK writes it after the result).

use std::borrow::Cow;

use super::message::RequestId;
use super::names::same_name;

/// The top-level `id` and `method` found in a message, if they were whole in what was seen.
/// Keys are read as a lenient peer reads them: escapes decoded, case ignored (`"\u0069d"` and
/// `"ID"` are `id` to some servers).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrefixInfo {
    /// The request id (the last copy, the one most parsers keep).
    pub id: Option<RequestId>,
    /// Every `method` read, in order (a repeated key counts each copy).
    pub methods: Vec<String>,
    /// A `result` or `error` member was seen: a response, whatever else it holds.
    pub answers: bool,
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

/// Keys longer than this are not `id` or `method` (escaped, `method` is 36 bytes); values
/// longer than this are not kept; methods past this many are not kept.
const MAX_KEY: usize = 64;
const MAX_VALUE: usize = 512;
const MAX_METHODS: usize = 8;

/// Which member a key names, as a lenient peer reads it.
fn member(key: &[u8]) -> Option<&'static str> {
    if key.len() > MAX_KEY {
        return None;
    }
    let key: Cow<'_, str> = if key.contains(&b'\\') {
        let mut quoted = Vec::with_capacity(key.len() + 2);
        quoted.push(b'"');
        quoted.extend_from_slice(key);
        quoted.push(b'"');
        Cow::Owned(serde_json::from_slice::<String>(&quoted).ok()?)
    } else {
        Cow::Borrowed(std::str::from_utf8(key).ok()?)
    };
    ["id", "method", "result", "error"]
        .into_iter()
        .find(|m| same_name(&key, m))
}

/// Walks a JSON object's top level byte by byte without building it, across any number of
/// [`KeyScanner::feed`] calls.
#[derive(Debug, Default)]
pub struct KeyScanner {
    at: At,
    key: Vec<u8>,
    value: Vec<u8>,
    /// Whether the current value belongs to `id` or `method` and still fits.
    keep: bool,
    /// The member the current value belongs to, if it is `id` or `method`.
    member: Option<&'static str>,
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
                        self.member = member(&self.key);
                        self.info.answers |= matches!(self.member, Some("result" | "error"));
                        self.keep = matches!(self.member, Some("id" | "method"));
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
        match self.member {
            Some("id") if self.keep => {
                if let Ok(id) = serde_json::from_slice(&self.value) {
                    self.info.id = Some(id);
                }
            }
            Some("method") => {
                match self
                    .keep
                    .then(|| serde_json::from_slice(&self.value).ok())
                    .flatten()
                {
                    Some(m) if self.info.methods.len() < MAX_METHODS => self.info.methods.push(m),
                    Some(_) => {}
                    None => self.info.method_unreadable = true,
                }
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
        assert_eq!(p.methods, ["tools/call"]);
        assert_eq!(p.id, Some(RequestId::Str("a\"b".into())));
    }

    #[test]
    fn skips_nested_values_before_the_id() {
        let p = scan_prefix(br#"{"params":{"a":[1,{"id":9}],"s":"}"},"id":42,"#);
        assert_eq!(p.id, Some(RequestId::Int(42)));
        assert!(p.methods.is_empty());
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
        assert_eq!(p.methods, ["x"]);
    }

    #[test]
    fn keys_are_read_as_lenient_peers_read_them() {
        let p = scan_prefix(br#"{"\u0069d":5,"METHOD":"tools/call","method":"ping","x":1"#);
        assert_eq!(p.id, Some(RequestId::Int(5)));
        assert_eq!(p.methods, ["tools/call", "ping"]);
        let p = scan_prefix(br#"{"\u006d\u0065\u0074\u0068\u006f\u0064":"tools/call","id":1,"#);
        assert_eq!(p.methods, ["tools/call"]);
        // A repeated id: the last copy.
        assert_eq!(
            scan_prefix(br#"{"id":1,"id":2,"#).id,
            Some(RequestId::Int(2))
        );
    }
}
