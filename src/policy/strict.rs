//! Arguments read the way a server must read them, or not at all.
//!
//! JSON parsers disagree on duplicate keys (first wins, last wins, error): a policy that checks
//! one copy while the server executes the other is a bypass, so arguments with a duplicate key
//! anywhere are refused rather than guessed at. Keys that differ only in case (`"path"` and
//! `"Path"`) count as duplicates: Go's `encoding/json` reads both into one field; so do keys
//! equal up to a NUL (`"path\u0000"`), which C-string readers cut there
//! ([`crate::jsonrpc::names`]).
//!
//! Keys serde_json itself reserves are refused too: with its `raw_value` feature on (any crate
//! of a server's build can turn it on), a `Value` reads `{"$serde_json::private::RawValue":
//! "\"/etc/shadow\""}` as the string `/etc/shadow`, and with `arbitrary_precision` a
//! `$serde_json::private::Number` member as a number: the policy would check one thing and
//! the server run another.

use std::collections::HashSet;
use std::fmt;
use std::hash::{BuildHasher, Hasher, RandomState};

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::jsonrpc::names::{fold, same_name};

/// Parses JSON into a [`Value`], refusing a duplicate key at any depth.
pub fn parse(text: &str) -> Result<Value, serde_json::Error> {
    serde_json::from_str::<Strict<true>>(text).map(|s| s.0)
}

/// [`parse`] of a text already validated as JSON (`arguments` that `message::parse`
/// delimited), with the same outcome: its strings are found with `memchr` instead of being
/// checked again ([`crate::jsonrpc::members::from_validated`]); on any error the text is read
/// by [`parse`], for its message.
pub fn parse_validated(text: &str) -> Result<Value, serde_json::Error> {
    crate::jsonrpc::members::from_validated::<Strict<true>>(text)
        .map(|s| s.0)
        .or_else(|_| parse(text))
}

/// [`parse_validated`] that refuses only keys repeated exactly, not keys that differ in case.
///
/// For texts the proxy masks rather than judges (results and errors under `redact_results`):
/// a masked copy keeps both `"ID"` and `"id"`, each masked, so a client that merges them
/// still reads masked data; refusing them would withhold legitimate results. Not for what is
/// judged by some keys only (tool pins hash `description`, not `Description`).
pub fn parse_validated_exact(text: &str) -> Result<Value, serde_json::Error> {
    crate::jsonrpc::members::from_validated::<Strict<false>>(text)
        .map(|s| s.0)
        .or_else(|_| serde_json::from_str::<Strict<false>>(text).map(|s| s.0))
}

/// A value read strictly; `FOLD`: keys that differ only in case count as repeated.
struct Strict<const FOLD: bool>(Value);

impl<'de, const FOLD: bool> Deserialize<'de> for Strict<FOLD> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor::<FOLD>).map(Strict)
    }
}

struct StrictVisitor<const FOLD: bool>;

impl<'de, const FOLD: bool> Visitor<'de> for StrictVisitor<FOLD> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(Strict::<FOLD>(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        // Hashes of the folded keys: no copy of each key on the common path; a hash seen twice
        // is checked against the keys themselves.
        let hasher = RandomState::new();
        let mut folded = HashSet::new();
        while let Some(key) = access.next_key::<String>()? {
            if RESERVED_KEYS.contains(&key.as_str()) {
                return Err(de::Error::custom(format_args!(
                    "key {key:?} is serde_json's own token (a server built with its raw_value or arbitrary_precision feature reads the object as another value)"
                )));
            }
            if map.contains_key(&key) {
                return Err(de::Error::custom(format_args!(
                    "duplicate key {key:?} (servers disagree on which copy counts)"
                )));
            }
            if FOLD
                && !folded.insert(folded_hash(&key, &hasher))
                && let Some(other) = map.keys().find(|k| same_name(k, &key))
            {
                return Err(de::Error::custom(format_args!(
                    "keys {other:?} and {key:?} differ only in case or after a NUL (servers that match names case-insensitively, or keep them as C strings, read them as one)"
                )));
            }
            let Strict::<FOLD>(v) = access.next_value()?;
            map.insert(key, v);
        }
        Ok(Value::Object(map))
    }
}

/// Map keys serde_json gives a meaning of its own (features `raw_value`,
/// `arbitrary_precision`).
const RESERVED_KEYS: [&str; 2] = [
    "$serde_json::private::RawValue",
    "$serde_json::private::Number",
];

/// The hash of `key` folded as [`fold`] does, without building the folded copy for ASCII.
fn folded_hash(key: &str, hasher: &RandomState) -> u64 {
    let key = crate::jsonrpc::names::c_part(key);
    let mut h = hasher.build_hasher();
    if key.is_ascii() {
        for b in key.bytes() {
            h.write_u32(u32::from(b.to_ascii_lowercase()));
        }
    } else {
        for c in fold(key).chars() {
            h.write_u32(u32::from(c));
        }
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        assert!(parse(r#"{"path":"/ok","path":"/etc/passwd"}"#).is_err());
        let err = parse(r#"{"a":[{"b":1,"c":{"d":1,"d":2}}]}"#).unwrap_err();
        assert!(err.to_string().contains("duplicate key \"d\""), "{err}");
        // The same key in sibling objects is fine; escapes name the same key.
        assert!(parse(r#"{"a":{"k":1},"b":{"k":2}}"#).is_ok());
        assert!(parse(r#"{"k":1,"\u006b":2}"#).is_err());
        // Keys a case-insensitive server reads as one.
        for dup in [
            r#"{"path":"/srv/a","Path":"/etc/shadow"}"#,
            r#"{"a":[{"kind":1,"\u212aind":2}]}"#,
            r#"{"pass":1,"paſs":2}"#,
        ] {
            assert!(parse(dup).is_err(), "{dup}");
        }
        assert!(parse(r#"{"path":1,"paths":2,"Other":3}"#).is_ok());
        // serde_json's own tokens, at any depth: another value to some servers.
        for token in [
            r#"{"path":{"$serde_json::private::RawValue":""\u002fetc\u002fshadow""}}"#,
            r#"{"$serde_json::private::RawValue":"{"text":"a;b"}"}"#,
            r#"{"n":[{"$serde_json::private::Number":"1e400"}]}"#,
            r#"{"a":{"$serde_json::private::RawValue":"1"}}"#,
        ] {
            let err = parse(token).unwrap_err().to_string();
            assert!(err.contains("serde_json's own token"), "{token}: {err}");
            assert!(parse_validated(token).is_err(), "{token}");
        }
        // The fast reading of validated text refuses the same texts, with the same message.
        for text in [
            r#"{"path":"/ok","path":"/etc/passwd"}"#,
            r#"{"a":[{"b":1,"c":{"d":1,"d":2}}]}"#,
            r#"{"k":1,"\u006b":2}"#,
            r#"{"path":"/srv/a","Path":"/etc/shadow"}"#,
            r#"{"a":[{"kind":1,"\u212aind":2}]}"#,
            r#"{"path":1,"paths":2,"Other":3}"#,
            r#"{"n":[1,-2,3.5,true,null,"s\n"]}"#,
        ] {
            assert_eq!(
                format!("{:?}", parse_validated(text)),
                format!("{:?}", parse(text)),
                "{text}"
            );
        }
        assert_eq!(
            parse(r#"{"n":[1,-2,3.5,true,null,"s"]}"#).unwrap(),
            serde_json::json!({"n":[1,-2,3.5,true,null,"s"]})
        );
    }

    #[test]
    fn the_exact_reading_refuses_repeated_keys_but_keeps_case_variants() {
        for text in [
            r#"{"ID":"a\u0041","id":"b"}"#,
            r#"{"a":[{"kind":1,"\u212aind":2}]}"#,
        ] {
            let value = parse_validated_exact(text).unwrap();
            assert_eq!(
                value,
                serde_json::from_str::<Value>(text).unwrap(),
                "{text}"
            );
            assert!(parse_validated(text).is_err(), "{text}");
        }
        for text in [
            r#"{"k":1,"\u006b":2}"#,
            r#"{"a":{"d":1,"d":2}}"#,
            r#"{"$serde_json::private::Number":"1"}"#,
        ] {
            assert!(parse_validated_exact(text).is_err(), "{text}");
        }
    }
}
