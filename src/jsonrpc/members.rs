//! Reading an object that [`super::message::parse`] has already read once, without reading its
//! large values again.
//!
//! `message::parse` validates a whole line and hands out `params` as raw text. Decoding that
//! text again with serde (to find `name`, `_meta`, and the raw `arguments`) walks every byte of
//! the arguments a second time, validating what is already known to be valid: for a 64 KiB
//! argument that is as much work as the first parse. Here the object's top level is split
//! with `memchr` (string bodies are jumped over, not checked), and each member's text is handed
//! to the type's own `Deserialize` impl as its value: small members are parsed by serde_json as
//! before, a raw value (`&RawValue`) borrows its text as it is, and an ignored one is not read.
//!
//! [`from_validated`] reads a whole validated value the same way for a self-describing type
//! (`policy::strict`'s arguments, `policy::tree`'s result tree): strings are found with
//! `memchr`, numbers and escaped strings are still read by serde_json.
//!
//! The result is the same value serde_json would give for the same text, or nothing: anything
//! out of the ordinary (a key with an escape, a member the type refuses, deep nesting) is left
//! to the caller's ordinary parse, which then also gives the usual error message.

use memchr::memchr2;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde::forward_to_deserialize_any;

/// The name serde_json's `RawValue` asks for when it is deserialized (feature `raw_value`): a
/// map with this one key whose value is the raw text.
const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";

/// Reads `T` from the JSON object `text`, which must be valid JSON as a slice of a line that
/// `message::parse` accepted; `None` when the ordinary parse must decide (see the module).
pub fn from_validated_object<'a, T: de::Deserialize<'a>>(text: &'a str) -> Option<T> {
    let members = members(text)?;
    T::deserialize(Object {
        members: members.into_iter(),
        value: None,
    })
    .ok()
}

/// The members of the valid JSON object `text` as (key, value text) pairs in order; `None` if
/// it is not an object, or a key has an escape (serde decodes those; the caller then does).
fn members(text: &str) -> Option<Vec<(&str, &str)>> {
    let b = text.as_bytes();
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    let mut out = Vec::new();
    i = skip_ws(b, i + 1);
    if b.get(i) == Some(&b'}') {
        return Some(out);
    }
    loop {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let end = i + 1 + memchr2(b'"', b'\\', &b[i + 1..])?;
        if b[end] != b'"' {
            return None;
        }
        let key = text.get(i + 1..end)?;
        i = skip_ws(b, end + 1);
        if b.get(i) != Some(&b':') {
            return None;
        }
        let start = skip_ws(b, i + 1);
        i = skip_value(b, start)?;
        out.push((key, text.get(start..i)?));
        i = skip_ws(b, i);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b'}') => return Some(out),
            _ => return None,
        }
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// The end of the string starting at `b[i] == b'"'`.
fn skip_string(b: &[u8], i: usize) -> Option<usize> {
    string_end(b, i).map(|(end, _)| end)
}

/// The end of the string starting at `b[i] == b'"'`, and whether it has an escape.
fn string_end(b: &[u8], mut i: usize) -> Option<(usize, bool)> {
    i += 1;
    let mut escaped = false;
    loop {
        let at = i + memchr2(b'"', b'\\', b.get(i..)?)?;
        if b[at] == b'"' {
            return Some((at + 1, escaped));
        }
        escaped = true;
        i = at + 2;
    }
}

/// The end of the value starting at `b[i]`.
fn skip_value(b: &[u8], mut i: usize) -> Option<usize> {
    match b.get(i)? {
        b'"' => skip_string(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            loop {
                match b.get(i)? {
                    b'"' => {
                        i = skip_string(b, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        _ => {
            while !matches!(
                b.get(i),
                None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
            ) {
                i += 1;
            }
            Some(i)
        }
    }
}

/// The object, as a map of its members.
struct Object<'a> {
    members: std::vec::IntoIter<(&'a str, &'a str)>,
    value: Option<&'a str>,
}

impl<'de> Deserializer<'de> for Object<'de> {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_map(self)
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

impl<'de> MapAccess<'de> for Object<'de> {
    type Error = serde_json::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        match self.members.next() {
            None => Ok(None),
            Some((key, value)) => {
                self.value = Some(value);
                seed.deserialize(Str(key)).map(Some)
            }
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, Self::Error> {
        let text = self
            .value
            .take()
            .ok_or_else(|| de::Error::custom("a value without its key"))?;
        seed.deserialize(Member(text))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.members.len())
    }
}

/// A string borrowed as it is: a key without escapes, or the text of a raw value.
struct Str<'a>(&'a str);

impl<'de> Deserializer<'de> for Str<'de> {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_borrowed_str(self.0)
    }

    /// As serde_json does: a newtype (`Text`) is read from what it wraps.
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

/// The text of one member's value (valid JSON): read by serde_json from that text, except a
/// raw value (borrowed as it is) and an ignored value (not read).
struct Member<'a>(&'a str);

macro_rules! by_serde_json {
    ($($method:ident)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
                let mut de = serde_json::Deserializer::from_str(self.0);
                let value = de.$method(visitor)?;
                de.end()?;
                Ok(value)
            }
        )*
    };
}

impl<'de> Deserializer<'de> for Member<'de> {
    type Error = serde_json::Error;

    by_serde_json! {
        deserialize_any deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32
        deserialize_i64 deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32
        deserialize_u64 deserialize_u128 deserialize_f32 deserialize_f64 deserialize_char
        deserialize_str deserialize_string deserialize_bytes deserialize_byte_buf
        deserialize_unit deserialize_seq deserialize_map deserialize_identifier
    }

    /// As serde_json does: `null` is none, anything else is the value.
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        if self.0 == "null" {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    /// The text is valid JSON already: nothing to read.
    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_unit()
    }

    /// A `RawValue` borrows the member's text as it is; other newtypes are read by serde_json.
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        if name == RAW_VALUE_TOKEN {
            return visitor.visit_map(RawValueMap(Some(self.0)));
        }
        let mut de = serde_json::Deserializer::from_str(self.0);
        let value = de.deserialize_newtype_struct(name, visitor)?;
        de.end()?;
        Ok(value)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let mut de = serde_json::Deserializer::from_str(self.0);
        let value = de.deserialize_unit_struct(name, visitor)?;
        de.end()?;
        Ok(value)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let mut de = serde_json::Deserializer::from_str(self.0);
        let value = de.deserialize_tuple(len, visitor)?;
        de.end()?;
        Ok(value)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let mut de = serde_json::Deserializer::from_str(self.0);
        let value = de.deserialize_tuple_struct(name, len, visitor)?;
        de.end()?;
        Ok(value)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let mut de = serde_json::Deserializer::from_str(self.0);
        let value = de.deserialize_struct(name, fields, visitor)?;
        de.end()?;
        Ok(value)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let mut de = serde_json::Deserializer::from_str(self.0);
        let value = de.deserialize_enum(name, variants, visitor)?;
        de.end()?;
        Ok(value)
    }
}

/// What serde_json's `RawValue` reads: one member named [`RAW_VALUE_TOKEN`], its raw text.
struct RawValueMap<'a>(Option<&'a str>);

impl<'de> MapAccess<'de> for RawValueMap<'de> {
    type Error = serde_json::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        match self.0 {
            Some(_) => seed.deserialize(Str(RAW_VALUE_TOKEN)).map(Some),
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, Self::Error> {
        let text = self
            .0
            .take()
            .ok_or_else(|| de::Error::custom("a raw value read twice"))?;
        seed.deserialize(Str(text))
    }
}

/// Nesting past this is left to serde_json, so that its limit decides.
const MAX_DEPTH: usize = 64;

/// Reads a whole valid JSON text (a slice of a line `message::parse` accepted) for a
/// self-describing `Deserialize` (one that asks for `deserialize_any`, as
/// `policy::strict` does), finding strings with `memchr`. Errors carry no position: on an
/// error, read the text with serde_json itself for its message.
pub fn from_validated<'a, T: de::Deserialize<'a>>(text: &'a str) -> Result<T, serde_json::Error> {
    from_validated_seed(text, std::marker::PhantomData::<T>)
}

/// [`from_validated`] with a seed.
pub fn from_validated_seed<'a, S: DeserializeSeed<'a>>(
    text: &'a str,
    seed: S,
) -> Result<S::Value, serde_json::Error> {
    let mut de = Validated {
        text,
        at: 0,
        depth: 0,
    };
    let value = seed.deserialize(&mut de)?;
    if skip_ws(text.as_bytes(), de.at) != text.len() {
        return Err(de::Error::custom("trailing characters"));
    }
    Ok(value)
}

/// A position in a valid JSON text.
struct Validated<'a> {
    text: &'a str,
    at: usize,
    depth: usize,
}

impl<'a> Validated<'a> {
    fn peek(&mut self) -> Result<u8, serde_json::Error> {
        self.at = skip_ws(self.text.as_bytes(), self.at);
        self.text
            .as_bytes()
            .get(self.at)
            .copied()
            .ok_or_else(|| de::Error::custom("unexpected end"))
    }

    /// Past the punctuation `byte` (after whitespace), or an error.
    fn expect(&mut self, byte: u8) -> Result<(), serde_json::Error> {
        if self.peek()? != byte {
            return Err(de::Error::custom("unexpected character"));
        }
        self.at += 1;
        Ok(())
    }

    fn nest(&mut self) -> Result<(), serde_json::Error> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(de::Error::custom("nested too deeply for the fast path"));
        }
        Ok(())
    }
}

impl<'de> Deserializer<'de> for &mut Validated<'de> {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        let b = self.text.as_bytes();
        match self.peek()? {
            b'"' => {
                let start = self.at;
                let (end, escaped) =
                    string_end(b, start).ok_or_else(|| de::Error::custom("open string"))?;
                self.at = end;
                let quoted = &self.text[start..end];
                if escaped {
                    visitor.visit_string(serde_json::from_str::<String>(quoted)?)
                } else {
                    visitor.visit_borrowed_str(&quoted[1..quoted.len() - 1])
                }
            }
            b'{' => {
                self.nest()?;
                self.at += 1;
                let value = visitor.visit_map(Entries {
                    de: &mut *self,
                    first: true,
                })?;
                self.expect(b'}')?;
                self.depth -= 1;
                Ok(value)
            }
            b'[' => {
                self.nest()?;
                self.at += 1;
                let value = visitor.visit_seq(Entries {
                    de: &mut *self,
                    first: true,
                })?;
                self.expect(b']')?;
                self.depth -= 1;
                Ok(value)
            }
            b't' | b'f' | b'n' => {
                let rest = &self.text[self.at..];
                for (word, len) in [("true", 4), ("false", 5), ("null", 4)] {
                    if rest.starts_with(word) {
                        self.at += len;
                        return match word {
                            "null" => visitor.visit_unit(),
                            w => visitor.visit_bool(w == "true"),
                        };
                    }
                }
                Err(de::Error::custom("unexpected word"))
            }
            _ => {
                // A number: read by serde_json, for its exact rules.
                let start = self.at;
                self.at = skip_value(b, start).ok_or_else(|| de::Error::custom("bad value"))?;
                let mut de = serde_json::Deserializer::from_str(&self.text[start..self.at]);
                let value = de.deserialize_any(visitor)?;
                de.end()?;
                Ok(value)
            }
        }
    }

    /// As serde_json does: a newtype (`Text`) is read from what it wraps.
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

/// The members of an object or the items of an array, as serde asks for them.
struct Entries<'d, 'a> {
    de: &'d mut Validated<'a>,
    first: bool,
}

impl Entries<'_, '_> {
    /// Whether another entry follows (past its comma), before `close`.
    fn more(&mut self, close: u8) -> Result<bool, serde_json::Error> {
        let next = self.de.peek()?;
        if next == close {
            return Ok(false);
        }
        if !std::mem::replace(&mut self.first, false) {
            self.de.expect(b',')?;
        }
        Ok(true)
    }
}

impl<'de> MapAccess<'de> for Entries<'_, 'de> {
    type Error = serde_json::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        if !self.more(b'}')? {
            return Ok(None);
        }
        if self.de.peek()? != b'"' {
            return Err(de::Error::custom("a key must be a string"));
        }
        seed.deserialize(&mut *self.de).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, Self::Error> {
        self.de.expect(b':')?;
        seed.deserialize(&mut *self.de)
    }
}

impl<'de> de::SeqAccess<'de> for Entries<'_, 'de> {
    type Error = serde_json::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Self::Error> {
        if !self.more(b']')? {
            return Ok(None);
        }
        seed.deserialize(&mut *self.de).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mcp::CallToolParams;
    use serde_json::value::RawValue;

    /// The fast reading gives what serde_json gives, or leaves the text to it.
    fn same(text: &str) {
        let slow = serde_json::from_str::<CallToolParams>(text);
        let fast = from_validated_object::<CallToolParams>(text);
        match (&slow, &fast) {
            (Ok(s), Some(f)) => assert_eq!(format!("{s:?}"), format!("{f:?}"), "{text}"),
            (Err(_), None) | (Ok(_), None) => {}
            (Err(e), Some(f)) => {
                panic!("{text}: serde_json refused ({e}), the fast path read {f:?}")
            }
        }
    }

    #[test]
    fn call_params_read_as_serde_json_reads_them() {
        let must_be_fast = [
            r#"{"name":"echo","arguments":{"message":"hi"}}"#,
            r#" { "name" : "echo" , "arguments" : { "a" : [1, {"b": "c\"}"}] } , "x": [ ] } "#,
            r#"{"arguments":{"p":"a\\b\"c"},"name":"echo\u0041"}"#,
            r#"{"name":"n","arguments":null}"#,
            r#"{"name":"n","arguments":[1,2]}"#,
            r#"{"name":"n","arguments":"text"}"#,
            r#"{"name":"n","arguments":12.5e3,"other":true,"more":null}"#,
            r#"{"name":"n","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","progressToken":7}}"#,
            r#"{"name":"n","requestState":"s","inputResponses":{"a":{"x":1},"b":[]}}"#,
            r#"{"name":"n","requestState":null,"task":{"ttl":5}}"#,
        ];
        for text in must_be_fast {
            assert!(
                from_validated_object::<CallToolParams>(text).is_some(),
                "{text}"
            );
            same(text);
        }
        // Left to serde_json (which refuses most of them).
        for text in [
            r#"{"name":"a","name":"b"}"#,
            r#"{"name":"a","arguments":{},"arguments":{}}"#,
            r#"{"name":"a","Arguments":{}}"#,
            r#"{"n\u0061me":"a"}"#,
            r#"{"arguments":{}}"#,
            r#"{"name":7}"#,
            r#"{"name":"a","_meta":5}"#,
            r#"{"name":"a","requestState":5}"#,
            r#"[1]"#,
            r#"{}"#,
        ] {
            same(text);
        }
        let p = from_validated_object::<CallToolParams>(must_be_fast[1]).unwrap();
        assert_eq!(
            p.arguments.map(RawValue::get),
            Some(r#"{ "a" : [1, {"b": "c\"}"}] }"#)
        );
    }

    #[test]
    fn validated_text_reads_as_serde_json_reads_it() {
        use serde_json::Value;
        for text in [
            r#"{"a":[1,-2.5e-3,18446744073709551615,true,false,null,"s\"\u00e9"],"b":{},"c":[]}"#,
            r#"  [ { "k" : "v" } , [ [ ] ] , "" , 0 ]  "#,
            r#""plain""#,
            "-0",
            r#"{"k":1,"k":2}"#,
        ] {
            let slow: Value = serde_json::from_str(text).unwrap();
            let fast: Value = from_validated(text).unwrap();
            assert_eq!(fast, slow, "{text}");
        }
        let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert!(from_validated::<Value>(&deep).is_err());
        assert!(from_validated::<Value>("1e400").is_err());
    }

    #[test]
    fn members_split_the_top_level_only() {
        assert_eq!(
            members(r#"{"a":"x,}\"","b":{"c":[1,"]"]},"d":-1.5e3 }"#),
            Some(vec![
                ("a", r#""x,}\"""#),
                ("b", r#"{"c":[1,"]"]}"#),
                ("d", "-1.5e3")
            ])
        );
        assert_eq!(members("{}"), Some(vec![]));
        assert_eq!(members(r#"{"k\"":1}"#), None);
        assert_eq!(members("[]"), None);
    }
}
