//! A JSON value read once with its strings borrowed from the text, for scanning a result
//! without building a [`serde_json::Value`] (which copies every string) and for reading the
//! result's shape from the same pass.
//!
//! Objects keep their members in key order with the last of a repeated key winning, as
//! `Value` does, so walking a [`Node`] feeds the classifiers the same texts in the same order
//! as walking the `Value` of the same text. A repeated key is also noted
//! ([`Tree::repeated_keys`]): callers that must read the text as a typed view would (which
//! refuses some repeated members) take their usual path then.

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Number;

use crate::jsonrpc::message::Text;

/// One JSON value; strings borrow from the parsed text unless they had escapes.
#[derive(Debug, PartialEq)]
pub enum Node<'a> {
    /// `null` (also a float `Value` cannot hold, as `Value` reads it).
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number, as `Value` holds it.
    Number(Number),
    /// A string.
    Str(Cow<'a, str>),
    /// An array.
    Array(Vec<Node<'a>>),
    /// An object, in key order, the last of a repeated key kept.
    Object(BTreeMap<Cow<'a, str>, Node<'a>>),
}

/// A parsed text: its root and whether any object repeated a key.
#[derive(Debug)]
pub struct Tree<'a> {
    /// The value.
    pub root: Node<'a>,
    /// Some object had a key twice (or the key `Value` reserves for raw values): a typed view
    /// of the text may read it differently, so callers that need one parse it themselves.
    pub repeated_keys: bool,
}

/// The member name `serde_json::Value` treats as a raw value marker (feature `raw_value`).
const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";

impl<'a> Tree<'a> {
    /// Parses `text` (one pass, the same nesting limit as `Value`).
    pub fn parse(text: &'a str) -> Result<Tree<'a>, serde_json::Error> {
        let repeated = Cell::new(false);
        let mut de = serde_json::Deserializer::from_str(text);
        let root = NodeSeed(&repeated).deserialize(&mut de)?;
        de.end()?;
        Ok(Tree {
            root,
            repeated_keys: repeated.get(),
        })
    }
}

impl<'a> Tree<'a> {
    /// [`Tree::parse`] of a text already validated as one JSON value (a `result` that
    /// `message::parse` delimited), with the same outcome: its strings are found with `memchr`
    /// instead of being checked byte by byte again, which for a long text is most of the work
    /// ([`crate::jsonrpc::members::from_validated`]). Anything unusual (deep nesting, an
    /// error) is read by [`Tree::parse`] instead.
    pub fn parse_validated(text: &'a str) -> Result<Tree<'a>, serde_json::Error> {
        let repeated = Cell::new(false);
        match crate::jsonrpc::members::from_validated_seed(text, NodeSeed(&repeated)) {
            Ok(root) => Ok(Tree {
                root,
                repeated_keys: repeated.get(),
            }),
            Err(_) => Tree::parse(text),
        }
    }
}

struct NodeSeed<'c>(&'c Cell<bool>);

impl<'de> DeserializeSeed<'de> for NodeSeed<'_> {
    type Value = Node<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Node<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NodeSeed<'_> {
    type Value = Node<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Node<'de>, E> {
        Ok(Node::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node<'de>, E> {
        Ok(Node::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Node<'de>, E> {
        Ok(Node::Number(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Node<'de>, E> {
        Ok(Number::from_f64(v).map_or(Node::Null, Node::Number))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Node<'de>, E> {
        Ok(Node::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Node<'de>, E> {
        Ok(Node::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Node<'de>, E> {
        Ok(Node::Str(Cow::Owned(v)))
    }
    fn visit_unit<E>(self) -> Result<Node<'de>, E> {
        Ok(Node::Null)
    }
    fn visit_none<E>(self) -> Result<Node<'de>, E> {
        Ok(Node::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node<'de>, A::Error> {
        let mut items = Vec::new();
        while let Some(v) = seq.next_element_seed(NodeSeed(self.0))? {
            items.push(v);
        }
        Ok(Node::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node<'de>, A::Error> {
        let mut members = BTreeMap::new();
        while let Some(Text(key)) = map.next_key()? {
            if key == RAW_VALUE_TOKEN {
                self.0.set(true);
            }
            let value = map.next_value_seed(NodeSeed(self.0))?;
            if members.insert(key, value).is_some() {
                self.0.set(true);
            }
        }
        Ok(Node::Object(members))
    }
}

impl<'a> Node<'a> {
    /// The member `name` of an object.
    pub fn get(&self, name: &str) -> Option<&Node<'a>> {
        match self {
            Node::Object(members) => members.get(name),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// The tree as the `Value` of the same text would be.
    fn as_value(n: &Node<'_>) -> Value {
        match n {
            Node::Null => Value::Null,
            Node::Bool(b) => Value::Bool(*b),
            Node::Number(x) => Value::Number(x.clone()),
            Node::Str(s) => Value::String(s.to_string()),
            Node::Array(items) => Value::Array(items.iter().map(as_value).collect()),
            Node::Object(m) => Value::Object(
                m.iter()
                    .map(|(k, v)| (k.to_string(), as_value(v)))
                    .collect(),
            ),
        }
    }

    #[test]
    fn trees_read_what_values_read_and_borrow_plain_strings() {
        for text in [
            r#"{"content":[{"type":"text","text":"hello"}],"isError":false}"#,
            r#"{"b":1,"a":[1.5,-2,18446744073709551615,1e300,null,true],"c":"\u00e9\n"}"#,
            r#"{"k":1,"k":{"x":"last"}}"#,
            r#"[[[]],{},"",0]"#,
        ] {
            let tree = Tree::parse(text).unwrap();
            assert_eq!(
                as_value(&tree.root),
                serde_json::from_str::<Value>(text).unwrap()
            );
            assert_eq!(tree.repeated_keys, text.contains(r#""k":1,"k""#), "{text}");
        }
        let tree = Tree::parse(r#"{"t":"plain","e":"esc\"aped"}"#).unwrap();
        assert!(matches!(
            tree.root.get("t"),
            Some(Node::Str(Cow::Borrowed("plain")))
        ));
        assert!(matches!(tree.root.get("e"), Some(Node::Str(Cow::Owned(_)))));
        assert!(
            Tree::parse(r#"{"$serde_json::private::RawValue":1}"#)
                .unwrap()
                .repeated_keys
        );
        // A validated text reads the same by the fast path.
        for text in [
            r#"{"content":[{"type":"text","text":"hello"}],"isError":false}"#,
            r#" {"b" : 1 , "a":[1.5,-2,18446744073709551615,1e300,null,true,false],"c":"\u00e9\n\"\\"} "#,
            r#"{"k":1,"k":{"x":"last"},"$serde_json::private::RawValue":[]}"#,
            r#"[[[]],{},"",0,-0.0,1E-7]"#,
            r#""just a string""#,
            "12",
        ] {
            let slow = Tree::parse(text).unwrap();
            let fast = Tree::parse_validated(text).unwrap();
            assert_eq!(fast.root, slow.root, "{text}");
            assert_eq!(fast.repeated_keys, slow.repeated_keys, "{text}");
            if let (Node::Object(f), Node::Object(s)) = (&fast.root, &slow.root) {
                for (a, b) in f.values().zip(s.values()) {
                    if let (Node::Str(a), Node::Str(b)) = (a, b) {
                        assert_eq!(matches!(a, Cow::Borrowed(_)), matches!(b, Cow::Borrowed(_)));
                    }
                }
            }
        }
        let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert_eq!(
            Tree::parse_validated(&deep).unwrap().root,
            Tree::parse(&deep).unwrap().root
        );
        // The same nesting limit as `Value`.
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(Tree::parse(&deep).is_err() && serde_json::from_str::<Value>(&deep).is_err());
        assert!(Tree::parse_validated(&deep).is_err());
        assert!(Tree::parse_validated("1e400").is_err() && Tree::parse("1e400").is_err());
    }
}
