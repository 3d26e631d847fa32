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
    /// The `name` member of the last top-level `params` object (a `tools/call`'s tool), when
    /// it was whole and a string: an oversized call is recorded with the tool it names.
    pub params_name: Option<String>,
}

impl PrefixInfo {
    /// Whether the message is, or may be, a request for `method`: it names it, or has a
    /// `method` that could not be read.
    pub fn may_be(&self, method: &str) -> bool {
        self.method_unreadable || self.methods.iter().any(|m| m == method)
    }
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

/// The members read at the top level, and inside `params`.
const TOP: [&str; 5] = ["id", "method", "result", "error", "params"];
const IN_PARAMS: [&str; 1] = ["name"];

/// Which of `wanted` a key names, as a lenient peer reads it.
fn member(key: &[u8], wanted: &[&'static str]) -> Option<&'static str> {
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
    wanted.iter().copied().find(|m| same_name(&key, m))
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
    /// Reading the value of a top-level `params`: a scanner of its own members.
    params: Option<Box<KeyScanner>>,
    /// This scanner reads a `params` object (its `name`), not a message.
    in_params: bool,
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
                        let wanted: &[&'static str] =
                            if self.in_params { &IN_PARAMS } else { &TOP };
                        self.member = member(&self.key, wanted);
                        self.info.answers |= matches!(self.member, Some("result" | "error"));
                        self.keep = matches!(self.member, Some("id" | "method" | "name"));
                        self.params = (self.member == Some("params")).then(|| {
                            Box::new(KeyScanner {
                                in_params: true,
                                ..KeyScanner::default()
                            })
                        });
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
        if let Some(params) = &mut self.params {
            params.feed(&[b]);
        }
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
            // The last copy counts; one too long to keep names no tool known here.
            Some("name") => {
                self.info.params_name = self
                    .keep
                    .then(|| serde_json::from_slice(&self.value).ok())
                    .flatten();
            }
            // The last copy of a repeated `params` is the one most servers read.
            Some("params") => {
                self.info.params_name = self.params.take().and_then(|p| p.info.params_name);
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

    /// What was found; a value still open (cut off) is not taken, but for a tool name read
    /// whole inside a `params` cut off after it.
    pub fn finish(mut self) -> PrefixInfo {
        if let Some(params) = self.params.take() {
            self.info.params_name = params.info.params_name;
        }
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
    fn reads_the_tool_a_params_names_the_last_params_counting() {
        let call = br#"{"id":1,"params" : { "arguments":{"name":"no","x":[{"name":"no"}]}, "N\u0061me":"echo","k":"}"},"method":"tools/call"}"#;
        assert_eq!(scan_prefix(call).params_name.as_deref(), Some("echo"));
        // Fed a byte at a time, as an oversized line streams by.
        let mut s = KeyScanner::default();
        for b in call.iter() {
            s.feed(std::slice::from_ref(b));
        }
        assert_eq!(s.finish().params_name.as_deref(), Some("echo"));
        // A name within a params cut off after it still counts; one cut off does not.
        let cut = br#"{"method":"tools/call","params":{"name":"rm","arguments":{"path":"/"#;
        assert_eq!(scan_prefix(cut).params_name.as_deref(), Some("rm"));
        assert_eq!(scan_prefix(br#"{"params":{"name":"rm"#).params_name, None);
        // The last copy of params is the one servers read; a name that is no string is none.
        let twice = br#"{"params":{"name":"a"},"params":{"name":"b"},"id":2}"#;
        assert_eq!(scan_prefix(twice).params_name.as_deref(), Some("b"));
        let other = br#"{"params":{"name":"a"},"params":{"x":1},"id":2}"#;
        assert_eq!(scan_prefix(other).params_name, None);
        assert_eq!(
            scan_prefix(br#"{"params":{"name":7},"id":2}"#).params_name,
            None
        );
        let long = format!(
            r#"{{"params":{{"name":"a","name":"{}"}}}}"#,
            "b".repeat(600)
        );
        assert_eq!(scan_prefix(long.as_bytes()).params_name, None);
        // A top-level name, or one in an array params, is not a tool.
        assert_eq!(
            scan_prefix(br#"{"name":"a","params":["x"],"id":2}"#).params_name,
            None
        );
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
