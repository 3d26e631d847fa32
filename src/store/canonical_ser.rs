//! The canonical form ([`super::canonical`]) written straight from a value we serialize
//! ourselves, with no JSON text parsed back.
//!
//! Why: the audit writer used to serialize each event with serde_json and then canonicalize
//! that text (parse it, sort every object's members, write it again) to chain it. On a busy
//! wrapper that re-parse was a third of the writer's CPU (BENCHMARKS.md, "The canonical form
//! written from the event"). Here a serde `Serializer` writes each object's members into a
//! scratch buffer, sorts them by name as RFC 8785 orders them (UTF-16 code units) and copies
//! them out; scalars are written by serde_json itself, so strings get the same escapes and
//! numbers the same text as before. A `serde_json::value::RawValue` (a client's arguments as
//! sent) is the one place where text is still canonicalized, by [`super::canonical`].
//!
//! The result is byte for byte `canonicalize(serde_json::to_vec(value))` (tested below on
//! events and on generated values), so records written either way are the same format and
//! hash the same. The top-level object is kept as [`Members`], unemitted, so that the chain
//! can add `seq` and `previous_hash` when it seals the record ([`super::chain::Chain::seal_members`]).

use std::borrow::Cow;

use serde::Serialize;
use serde::ser::{self, Error as _};

use super::canonical::{CanonError, canonicalize};

/// The name serde_json gives the struct a `RawValue` serializes as (serde_json's
/// `raw.rs`, `TOKEN`): its one field holds the value's JSON text.
const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";

type Error = serde_json::Error;

/// A JSON object's members, each value in canonical form, sorted by name; not yet written
/// out, so that members can still be added ([`Self::emit_with`]).
#[derive(Debug, Default, Clone)]
pub struct Members {
    buf: Vec<u8>,
    /// Name, and the value's bytes in `buf`.
    members: Vec<(Cow<'static, str>, usize, usize)>,
}

impl Members {
    /// The members of `value`, which must serialize as a JSON object (a struct or a map).
    pub fn of<T: Serialize + ?Sized>(value: &T, size_hint: usize) -> Result<Members, Error> {
        value.serialize(Top { size_hint })
    }

    /// Adds a member whose value is `canonical` (already in canonical form); no check that
    /// the name is new: [`Self::emit_with`] refuses a repeated extra, not this.
    pub fn push(&mut self, name: &'static str, canonical: &[u8]) {
        let from = self.buf.len();
        self.buf.extend_from_slice(canonical);
        self.members
            .push((Cow::Borrowed(name), from, self.buf.len()));
    }

    /// Bytes the emitted object takes, near enough (for batch sizes).
    pub fn len(&self) -> usize {
        self.buf.len()
            + self
                .members
                .iter()
                .map(|(n, _, _)| n.len() + 4)
                .sum::<usize>()
            + 2
    }

    /// Whether the object has no members.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The object's canonical bytes.
    pub fn emit(&self) -> Vec<u8> {
        self.emit_checked(&[])
    }

    /// The object's canonical bytes with the members `extra` (name, canonical JSON of the
    /// value) added; `Err(Duplicate)` if it has one of them already (as
    /// [`super::canonical::canonicalize_with`]).
    pub fn emit_with(&self, extra: &[(&str, &[u8])]) -> Result<Vec<u8>, CanonError> {
        if let Some((name, _)) = extra
            .iter()
            .find(|(name, _)| self.members.iter().any(|m| m.0 == *name))
        {
            return Err(CanonError::Duplicate(name.to_string()));
        }
        Ok(self.emit_checked(extra))
    }

    /// [`Self::emit_with`] once the extras are known to be new.
    fn emit_checked(&self, extra: &[(&str, &[u8])]) -> Vec<u8> {
        let mut all: Vec<(&str, &[u8])> = Vec::with_capacity(self.members.len() + extra.len());
        for (name, from, to) in &self.members {
            all.push((name, &self.buf[*from..*to]));
        }
        all.extend_from_slice(extra);
        sort_members(&mut all, |m| m.0);
        let mut out =
            Vec::with_capacity(self.len() + extra.iter().map(|e| e.1.len() + 24).sum::<usize>());
        write_object(&mut out, &all);
        out
    }
}

/// Sorts members by name as RFC 8785 does (stable: members of one name keep their order, as
/// in [`super::canonical`]).
fn sort_members<M>(members: &mut [M], name: impl Fn(&M) -> &str) {
    // UTF-8 byte order is UTF-16 order unless a name holds a byte of 0xEE or more.
    if members.iter().any(|m| name(m).bytes().any(|c| c >= 0xEE)) {
        members.sort_by(|a, b| name(a).encode_utf16().cmp(name(b).encode_utf16()));
    } else {
        members.sort_by(|a, b| name(a).as_bytes().cmp(name(b).as_bytes()));
    }
}

fn write_object(out: &mut Vec<u8>, members: &[(&str, &[u8])]) {
    out.push(b'{');
    for (k, (name, value)) in members.iter().enumerate() {
        if k > 0 {
            out.push(b',');
        }
        write_str(out, name);
        out.push(b':');
        out.extend_from_slice(value);
    }
    out.push(b'}');
}

/// A scalar as serde_json writes it (RFC 8785's string escapes: see [`super::canonical`]).
fn write_json<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    // Writing a scalar to a Vec cannot fail.
    let _ = serde_json::to_writer(out, value);
}

/// A string as serde_json writes it ([`write_json`]). serde_json escapes only `"`, `\` and
/// the controls below U+0020, so a string with none of them is copied whole between quotes:
/// ids, times, names and most texts. Why: serde_json's escaping looks at one byte at a time,
/// and it was the writer thread's largest single cost after SHA-256 (a third of serializing
/// an event). The check looks at 8 bytes at a time ([`needs_escape`]).
fn write_str(out: &mut Vec<u8>, s: &str) {
    if !needs_escape(s.as_bytes()) {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        write_json(out, s);
    }
}

/// Whether `b` holds a `"`, a `\` or a byte below 0x20: per 8 bytes, the classic
/// "has a byte less than n" and "has a zero byte" tests (exact for whether any byte
/// matches, which is all that is asked), the rest one byte at a time.
fn needs_escape(b: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS != 0;
    let mut blocks = b.chunks_exact(8);
    for block in &mut blocks {
        let mut word = [0u8; 8];
        word.copy_from_slice(block);
        let x = u64::from_ne_bytes(word);
        let control = x.wrapping_sub(ONES * 0x20) & !x & HIGHS != 0;
        if control
            || has_zero(x ^ (ONES * u64::from(b'"')))
            || has_zero(x ^ (ONES * u64::from(b'\\')))
        {
            return true;
        }
    }
    blocks
        .remainder()
        .iter()
        .any(|&c| c < 0x20 || c == b'"' || c == b'\\')
}

/// The top level: a struct or a map, gathered into [`Members`].
struct Top {
    size_hint: usize,
}

/// An object being gathered: its members' values in one buffer.
struct Gather {
    members: Members,
    key: Option<Cow<'static, str>>,
}

impl Gather {
    fn new(size_hint: usize, len: usize) -> Gather {
        Gather {
            members: Members {
                buf: Vec::with_capacity(size_hint),
                members: Vec::with_capacity(len),
            },
            key: None,
        }
    }

    fn field<T: Serialize + ?Sized>(
        &mut self,
        name: Cow<'static, str>,
        value: &T,
    ) -> Result<(), Error> {
        let from = self.members.buf.len();
        value.serialize(Canon {
            out: &mut self.members.buf,
        })?;
        let to = self.members.buf.len();
        self.members.members.push((name, from, to));
        Ok(())
    }

    fn key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        self.key = Some(Cow::Owned(key.serialize(KeyName)?));
        Ok(())
    }

    fn value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        let name = self
            .key
            .take()
            .ok_or_else(|| Error::custom("a map value came before its key"))?;
        self.field(name, value)
    }

    fn sorted(mut self) -> Members {
        sort_members(&mut self.members.members, |m| &m.0);
        self.members
    }

    /// Writes the object out, sorted.
    fn emit(self, out: &mut Vec<u8>) {
        let members = self.sorted();
        let all: Vec<(&str, &[u8])> = members
            .members
            .iter()
            .map(|(n, f, t)| (&**n, &members.buf[*f..*t]))
            .collect();
        write_object(out, &all);
    }
}

fn not_an_object() -> Error {
    Error::custom("an audit record must be a JSON object")
}

macro_rules! refuse {
    ($($name:ident($($arg:ty),*)),* $(,)?) => {
        $(fn $name(self, $(_: $arg),*) -> Result<Self::Ok, Error> {
            Err(not_an_object())
        })*
    };
}

impl ser::Serializer for Top {
    type Ok = Members;
    type Error = Error;
    type SerializeSeq = ser::Impossible<Members, Error>;
    type SerializeTuple = ser::Impossible<Members, Error>;
    type SerializeTupleStruct = ser::Impossible<Members, Error>;
    type SerializeTupleVariant = ser::Impossible<Members, Error>;
    type SerializeMap = TopObject;
    type SerializeStruct = TopObject;
    type SerializeStructVariant = ser::Impossible<Members, Error>;

    refuse!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_i128(i128),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_u128(u128),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
        serialize_none(),
        serialize_unit(),
        serialize_unit_struct(&'static str),
        serialize_unit_variant(&'static str, u32, &'static str),
    );

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Members, Error> {
        value.serialize(self)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<Members, Error> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<Members, Error> {
        let mut g = Gather::new(self.size_hint, 1);
        g.field(Cow::Borrowed(variant), value)?;
        Ok(g.sorted())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Error> {
        Err(not_an_object())
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Error> {
        Err(not_an_object())
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, Error> {
        Err(not_an_object())
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Error> {
        Err(not_an_object())
    }
    fn serialize_map(self, len: Option<usize>) -> Result<TopObject, Error> {
        Ok(TopObject(Gather::new(self.size_hint, len.unwrap_or(8))))
    }
    fn serialize_struct(self, name: &'static str, len: usize) -> Result<TopObject, Error> {
        if name == RAW_VALUE_TOKEN {
            // A record made of a RawValue: its text must be an object; not a case we have.
            return Err(Error::custom(
                "an audit record must be serialized as a struct or a map",
            ));
        }
        Ok(TopObject(Gather::new(self.size_hint, len)))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Error> {
        Err(not_an_object())
    }
}

/// The top-level object's members being gathered.
struct TopObject(Gather);

impl ser::SerializeStruct for TopObject {
    type Ok = Members;
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.0.field(Cow::Borrowed(key), value)
    }
    fn end(self) -> Result<Members, Error> {
        Ok(self.0.sorted())
    }
}

impl ser::SerializeMap for TopObject {
    type Ok = Members;
    type Error = Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        self.0.key(key)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.0.value(value)
    }
    fn end(self) -> Result<Members, Error> {
        Ok(self.0.sorted())
    }
}

/// Any value below the top, written in canonical form into `out`.
struct Canon<'a> {
    out: &'a mut Vec<u8>,
}

macro_rules! scalar {
    ($($name:ident($ty:ty)),* $(,)?) => {
        $(fn $name(self, v: $ty) -> Result<(), Error> {
            write_json(self.out, &v);
            Ok(())
        })*
    };
}

impl<'a> ser::Serializer for Canon<'a> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Array<'a>;
    type SerializeTuple = Array<'a>;
    type SerializeTupleStruct = Array<'a>;
    type SerializeTupleVariant = Array<'a>;
    type SerializeMap = Object<'a>;
    type SerializeStruct = Object<'a>;
    type SerializeStructVariant = Object<'a>;

    scalar!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_i128(i128),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_u128(u128),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
        serialize_bytes(&[u8]),
    );

    fn serialize_str(self, v: &str) -> Result<(), Error> {
        write_str(self.out, v);
        Ok(())
    }

    fn serialize_none(self) -> Result<(), Error> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Error> {
        self.serialize_none()
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Error> {
        self.serialize_none()
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<(), Error> {
        write_str(self.out, variant);
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.out.push(b'{');
        write_str(self.out, variant);
        self.out.push(b':');
        value.serialize(Canon { out: self.out })?;
        self.out.push(b'}');
        Ok(())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Array<'a>, Error> {
        self.out.push(b'[');
        Ok(Array {
            out: self.out,
            first: true,
            variant: false,
        })
    }
    fn serialize_tuple(self, len: usize) -> Result<Array<'a>, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<Array<'a>, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Array<'a>, Error> {
        self.out.push(b'{');
        write_str(self.out, variant);
        self.out.extend_from_slice(b":[");
        Ok(Array {
            out: self.out,
            first: true,
            variant: true,
        })
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Object<'a>, Error> {
        Ok(Object {
            gather: Gather::new(64, len.unwrap_or(4)),
            out: self.out,
            variant: false,
            raw: false,
        })
    }
    fn serialize_struct(self, name: &'static str, len: usize) -> Result<Object<'a>, Error> {
        Ok(Object {
            gather: Gather::new(64, len),
            out: self.out,
            variant: false,
            raw: name == RAW_VALUE_TOKEN,
        })
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Object<'a>, Error> {
        self.out.push(b'{');
        write_str(self.out, variant);
        self.out.push(b':');
        Ok(Object {
            gather: Gather::new(64, len),
            out: self.out,
            variant: true,
            raw: false,
        })
    }
}

/// An array or tuple being written.
struct Array<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
    /// A tuple variant: `{"Variant":[…]}`, one more brace to close.
    variant: bool,
}

impl Array<'_> {
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        value.serialize(Canon {
            out: &mut *self.out,
        })
    }

    fn close(self) -> Result<(), Error> {
        self.out.push(b']');
        if self.variant {
            self.out.push(b'}');
        }
        Ok(())
    }
}

/// The four array-like serde traits, all written by [`Array`].
macro_rules! array_like {
    ($($trait:ident::$method:ident),* $(,)?) => {
        $(impl ser::$trait for Array<'_> {
            type Ok = ();
            type Error = Error;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
                self.element(value)
            }
            fn end(self) -> Result<(), Error> {
                self.close()
            }
        })*
    };
}

array_like!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field,
);

/// An object being gathered below the top; written out sorted at its end.
struct Object<'a> {
    gather: Gather,
    out: &'a mut Vec<u8>,
    /// A struct variant: `{"Variant":{…}}`, one more brace to close.
    variant: bool,
    /// serde_json's `RawValue`: its one field is JSON text, canonicalized as it is written.
    raw: bool,
}

impl Object<'_> {
    fn close(self) -> Result<(), Error> {
        self.gather.emit(self.out);
        if self.variant {
            self.out.push(b'}');
        }
        Ok(())
    }
}

impl ser::SerializeStruct for Object<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        if self.raw {
            if key != RAW_VALUE_TOKEN {
                return Err(Error::custom("a struct named as serde_json's RawValue"));
            }
            let text = value.serialize(KeyName)?;
            let canonical = canonicalize(text.as_bytes()).map_err(Error::custom)?;
            self.out.extend_from_slice(&canonical);
            return Ok(());
        }
        self.gather.field(Cow::Borrowed(key), value)
    }
    fn end(self) -> Result<(), Error> {
        if self.raw {
            return Ok(());
        }
        self.close()
    }
}

impl ser::SerializeStructVariant for Object<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.gather.field(Cow::Borrowed(key), value)
    }
    fn end(self) -> Result<(), Error> {
        self.close()
    }
}

impl ser::SerializeMap for Object<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        self.gather.key(key)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.gather.value(value)
    }
    fn end(self) -> Result<(), Error> {
        self.close()
    }
}

/// A map key (or a RawValue's text) as a string: strings as they are, integers and chars as
/// serde_json turns them into member names; anything else is an error, as in serde_json.
struct KeyName;

macro_rules! key_number {
    ($($name:ident($ty:ty)),* $(,)?) => {
        $(fn $name(self, v: $ty) -> Result<String, Error> {
            Ok(v.to_string())
        })*
    };
}

macro_rules! key_refuse {
    ($($name:ident($($arg:ty),*)),* $(,)?) => {
        $(fn $name(self, $(_: $arg),*) -> Result<String, Error> {
            Err(Error::custom("a member name must be a string"))
        })*
    };
}

impl ser::Serializer for KeyName {
    type Ok = String;
    type Error = Error;
    type SerializeSeq = ser::Impossible<String, Error>;
    type SerializeTuple = ser::Impossible<String, Error>;
    type SerializeTupleStruct = ser::Impossible<String, Error>;
    type SerializeTupleVariant = ser::Impossible<String, Error>;
    type SerializeMap = ser::Impossible<String, Error>;
    type SerializeStruct = ser::Impossible<String, Error>;
    type SerializeStructVariant = ser::Impossible<String, Error>;

    key_number!(
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_i128(i128),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_u128(u128),
        serialize_char(char),
    );
    key_number!(serialize_bool(bool));
    key_refuse!(
        serialize_bytes(&[u8]),
        serialize_none(),
        serialize_unit(),
        serialize_unit_struct(&'static str),
    );

    fn serialize_str(self, v: &str) -> Result<String, Error> {
        Ok(v.to_owned())
    }
    // serde_json writes a finite float key as it writes the number, and refuses the others.
    fn serialize_f32(self, v: f32) -> Result<String, Error> {
        if !v.is_finite() {
            return Err(Error::custom("a member name must be a string"));
        }
        serde_json::to_string(&v)
    }
    fn serialize_f64(self, v: f64) -> Result<String, Error> {
        if !v.is_finite() {
            return Err(Error::custom("a member name must be a string"));
        }
        serde_json::to_string(&v)
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<String, Error> {
        Ok(variant.to_owned())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<String, Error> {
        value.serialize(self)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<String, Error> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<String, Error> {
        Err(Error::custom("a member name must be a string"))
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Error> {
        Err(Error::custom("a member name must be a string"))
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Error> {
        Err(Error::custom("a member name must be a string"))
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, Error> {
        Err(Error::custom("a member name must be a string"))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Error> {
        Err(Error::custom("a member name must be a string"))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Error> {
        Err(Error::custom("a member name must be a string"))
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, Error> {
        Err(Error::custom("a member name must be a string"))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Error> {
        Err(Error::custom("a member name must be a string"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::canonical::canonicalize_with;
    use proptest::prelude::*;

    fn both<T: Serialize>(value: &T) -> (Vec<u8>, Vec<u8>) {
        let extra: &[(&str, &[u8])] = &[("previous_hash", b"null"), ("seq", b"7")];
        let direct = Members::of(value, 256).unwrap().emit_with(extra).unwrap();
        let reparsed = canonicalize_with(&serde_json::to_vec(value).unwrap(), extra).unwrap();
        (direct, reparsed)
    }

    #[derive(Serialize)]
    enum Shape {
        Unit,
        New(u8),
        Tuple(u8, &'static str),
        Struct { z: u8, a: Option<u8> },
    }

    #[derive(Serialize)]
    struct Record {
        zeta: &'static str,
        alpha: Vec<Shape>,
        #[serde(flatten)]
        rest: std::collections::HashMap<String, serde_json::Value>,
        raw: Box<serde_json::value::RawValue>,
        none: Option<u8>,
        float: f64,
        big: u128,
        tuple: (i8, char),
    }

    #[test]
    fn serde_shapes_come_out_as_the_reparsed_form() {
        let mut rest = std::collections::HashMap::new();
        rest.insert("\u{e000}".to_string(), serde_json::json!(1));
        rest.insert(
            "\u{1f600}".to_string(),
            serde_json::json!({"b": [1, {"d": 2, "c": 3}], "a": null}),
        );
        rest.insert("mid".to_string(), serde_json::json!("\u{0}\n\"\\/é"));
        let r = Record {
            zeta: "z",
            alpha: vec![
                Shape::Unit,
                Shape::New(1),
                Shape::Tuple(2, "t"),
                Shape::Struct { z: 3, a: None },
            ],
            rest,
            raw: serde_json::value::RawValue::from_string(
                r#" { "y" : [ 1.50 , 18446744073709551617 ] , "x" : "\u0041\ud83d\ude00" } "#
                    .into(),
            )
            .unwrap(),
            none: None,
            float: 1e21,
            big: u128::MAX,
            tuple: (-1, 'c'),
        };
        let (direct, reparsed) = both(&r);
        assert_eq!(
            String::from_utf8_lossy(&direct),
            String::from_utf8_lossy(&reparsed)
        );
        // The raw value's number text is kept, and its escapes are canonical.
        let text = String::from_utf8(direct).unwrap();
        assert!(
            text.contains(r#""raw":{"x":"A😀","y":[1.50,18446744073709551617]}"#),
            "{text}"
        );
        // The supplementary character sorts before U+E000 in UTF-16 order.
        assert!(
            text.find('\u{1f600}').unwrap() < text.find('\u{e000}').unwrap(),
            "{text}"
        );
    }

    #[test]
    fn map_keys_are_named_as_serde_json_names_them() {
        /// A map with keys of several kinds, as serde_json turns them into names.
        struct Keys;
        impl Serialize for Keys {
            fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use ser::SerializeMap;
                let mut m = s.serialize_map(None)?;
                m.serialize_entry(&true, &1)?;
                m.serialize_entry(&1.5f64, &2)?;
                m.serialize_entry(&0.1f32, &3)?;
                m.serialize_entry(&-7i64, &4)?;
                m.serialize_entry(&'c', &5)?;
                m.end()
            }
        }
        let (direct, reparsed) = both(&Keys);
        assert_eq!(
            String::from_utf8_lossy(&direct),
            String::from_utf8_lossy(&reparsed)
        );
        // A RawValue-named struct whose field is not serde_json's is refused, not written as
        // something that is not JSON.
        #[derive(Serialize)]
        #[serde(rename = "$serde_json::private::RawValue")]
        struct Fake {
            other: &'static str,
        }
        #[derive(Serialize)]
        struct Holder {
            fake: Fake,
        }
        assert!(
            Members::of(
                &Holder {
                    fake: Fake { other: "{}" }
                },
                16
            )
            .is_err()
        );
    }

    #[test]
    fn extras_are_refused_when_present_and_non_objects_are_refused() {
        let m = Members::of(&serde_json::json!({"seq": 1}), 16).unwrap();
        assert!(matches!(
            m.emit_with(&[("seq", b"2")]),
            Err(CanonError::Duplicate(n)) if n == "seq"
        ));
        assert!(Members::of(&serde_json::json!([1]), 16).is_err());
        assert!(Members::of(&"text", 16).is_err());
    }

    #[test]
    fn strings_copied_whole_are_the_bytes_serde_json_writes() {
        let base = "x".repeat(70);
        for special in [
            "\"", "\\", "\u{0}", "\n", "\u{1f}", "\u{7f}", "é", "\u{2028}", "😀", " ",
        ] {
            for at in [0, 1, 31, 32, 33, 63, 64, 69, 70] {
                let text = format!("{}{special}{}", &base[..at], &base[at..]);
                let mut out = Vec::new();
                write_str(&mut out, &text);
                assert_eq!(out, serde_json::to_vec(&text).unwrap(), "{text:?}");
            }
        }
        let mut out = Vec::new();
        write_str(&mut out, "");
        assert_eq!(out, b"\"\"");
        // Every byte at every place of the 8-byte blocks and of the tail, among bytes just
        // above the ones that match (the borrows of the block test).
        for byte in 0..=255u8 {
            for at in 0..19 {
                let mut b = vec![b'!'; 19];
                b[at] = byte;
                let naive = byte < 0x20 || byte == b'"' || byte == b'\\';
                assert_eq!(needs_escape(&b), naive, "{byte:#x} at {at}");
                b.iter_mut().for_each(|c| *c = 0x21);
                b[at] = byte;
                b[(at + 1) % 19] = 0x20;
                assert_eq!(needs_escape(&b), naive, "{byte:#x} at {at}, 0x20 after");
            }
        }
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<u64>().prop_map(serde_json::Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(serde_json::Value::from),
            "\\PC{0,12}".prop_map(serde_json::Value::from),
            "[\u{0}-\u{1f}\"\\\\\u{e000}-\u{e00f}\u{1f600}-\u{1f60f}a-c]{0,6}"
                .prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
                prop::collection::vec(("[a-e\u{e000}\u{1f600}]{0,3}|\\PC{0,4}", inner), 0..6)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_object_comes_out_as_the_reparsed_form(
            members in prop::collection::vec(("[a-z\u{e000}\u{1f600}]{1,4}", json_value()), 0..8)
        ) {
            let value = serde_json::Value::Object(
                members
                    .into_iter()
                    .filter(|(k, _)| k != "seq" && k != "previous_hash")
                    .collect(),
            );
            let (direct, reparsed) = both(&value);
            prop_assert_eq!(direct, reparsed);
        }
    }
}
