//! A stored record's members as the scan decodes them ([`Skeleton`]), borrowed from the
//! record, and its chain members read whatever their type ([`Member`]), so that a chain walk
//! on the way gets what [`Link::of`] would read from the same bytes ([`Skeleton::link`]).

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::events::Gap;
use crate::audit::event::{EventId, EventType, Outcome, PersonalData, RiskLevel};
use crate::store::chain::Link;
use crate::store::personal::SealedRef;

/// A stored record's members that a call needs, borrowed from the record.
#[derive(Deserialize)]
pub(super) struct Skeleton<'a> {
    pub(super) event_id: Id,
    #[serde(borrow)]
    pub(super) timestamp: Cow<'a, str>,
    pub(super) event_type: EventType,
    #[serde(borrow)]
    pub(super) user_id: Cow<'a, str>,
    #[serde(borrow, default)]
    pub(super) tool_name: Option<Cow<'a, str>>,
    pub(super) result: Outcome,
    pub(super) risk_level: RiskLevel,
    #[serde(borrow)]
    pub(super) compliance_tags: Vec<Cow<'a, str>>,
    #[serde(borrow)]
    pub(super) session_id: Cow<'a, str>,
    #[serde(borrow, default)]
    pub(super) upstream: Cow<'a, str>,
    #[serde(default)]
    pub(super) linked_event_id: Option<EventId>,
    #[serde(borrow)]
    pub(super) metadata: Meta<'a>,
    #[serde(borrow, default)]
    pub(super) personal: Option<SealedRef<'a>>,
    /// The chain members, for a chain walk on the way ([`Skeleton::link`]); of any type
    /// (a record whose chain members are of another type is the walk's finding, and was
    /// never a reason to stop reading calls).
    #[serde(default)]
    pub(super) seq: Member<u64>,
    #[serde(borrow, default)]
    pub(super) previous_hash: Member<Text<'a>>,
}

impl Skeleton<'_> {
    /// The record's chain members exactly as [`Link::of`] reads them from the same bytes
    /// `payload` (`Some(None)`: it would not read them), without reading the record again;
    /// `None` when only `Link::of` can tell (the record is a JSON array, which derived
    /// structs read by position, each in its own order). `Link::of` reads the four members
    /// `seq`, `previous_hash`, `event_id` and `timestamp`, the last three as strings
    /// borrowed from the record, so it fails on any of them spelled with escapes (which no
    /// writer writes) or of another type. A record this skeleton reads has `event_id` and
    /// `timestamp` strings, none of the four twice, and the chain members as they are
    /// ([`Member`]), so that is all it must check. `event_id` is left out of the link: it
    /// is for the index check, which a scan's walk does not make.
    pub(super) fn link(&self, payload: &[u8]) -> Option<Option<Link<'_>>> {
        if payload.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return None;
        }
        let seq = match self.seq {
            Member::Absent | Member::Null => None,
            Member::Value(seq) => Some(seq),
            Member::Other => return Some(None),
        };
        let previous_hash = match &self.previous_hash {
            Member::Absent => None,
            Member::Null => Some(None),
            Member::Value(Text::Plain(text)) => Some(Some(*text)),
            Member::Value(Text::Escaped(_)) | Member::Other => return Some(None),
        };
        let plain = matches!(self.timestamp, Cow::Borrowed(_)) && !self.event_id.escaped;
        Some(plain.then_some(Link {
            seq,
            previous_hash,
            event_id: None,
            timestamp: None,
        }))
    }
}

/// A member read whatever its type: absent, `null`, a `T`, or of another type (skipped).
#[derive(Default)]
pub(super) enum Member<T> {
    #[default]
    Absent,
    Null,
    Value(T),
    Other,
}

/// What a [`Member`] takes as its value.
pub(super) trait Scalar<'de>: Sized {
    fn of_u64(_: u64) -> Option<Self> {
        None
    }
    fn of_borrowed(_: &'de str) -> Option<Self> {
        None
    }
    fn of_str(_: &str) -> Option<Self> {
        None
    }
}

impl Scalar<'_> for u64 {
    fn of_u64(v: u64) -> Option<u64> {
        Some(v)
    }
}

impl<'de: 'a, 'a> Scalar<'de> for Text<'a> {
    fn of_borrowed(v: &'de str) -> Option<Text<'a>> {
        Some(Text::Plain(v))
    }
    fn of_str(v: &str) -> Option<Text<'a>> {
        Some(Text::Escaped(v.to_owned()))
    }
}

impl<'de, T: Scalar<'de>> Deserialize<'de> for Member<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Member<T>, D::Error> {
        struct Visit<T>(std::marker::PhantomData<T>);
        impl<'de, T: Scalar<'de>> serde::de::Visitor<'de> for Visit<T> {
            type Value = Member<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E>(self, _: bool) -> Result<Member<T>, E> {
                Ok(Member::Other)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Member<T>, E> {
                Ok(Member::Other)
            }
            fn visit_u64<E>(self, v: u64) -> Result<Member<T>, E> {
                Ok(T::of_u64(v).map_or(Member::Other, Member::Value))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Member<T>, E> {
                Ok(Member::Other)
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Member<T>, E> {
                Ok(T::of_borrowed(v).map_or(Member::Other, Member::Value))
            }
            fn visit_str<E>(self, v: &str) -> Result<Member<T>, E> {
                Ok(T::of_str(v).map_or(Member::Other, Member::Value))
            }
            fn visit_unit<E>(self) -> Result<Member<T>, E> {
                Ok(Member::Null)
            }
            fn visit_none<E>(self) -> Result<Member<T>, E> {
                Ok(Member::Null)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Member<T>, A::Error> {
                while a.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(Member::Other)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Member<T>, A::Error> {
                while a
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(Member::Other)
            }
        }
        d.deserialize_any(Visit(std::marker::PhantomData))
    }
}

/// An `event_id`, and whether it was spelled with escapes (see [`Skeleton::link`]).
pub(super) struct Id {
    pub(super) id: EventId,
    pub(super) escaped: bool,
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Id, D::Error> {
        let text = Text::deserialize(d)?;
        Ok(Id {
            id: text.as_str().parse().map_err(serde::de::Error::custom)?,
            escaped: matches!(text, Text::Escaped(_)),
        })
    }
}

/// A string member as the record spells it: borrowed from it, or unescaped into a string
/// of its own when spelled with escapes (see [`Skeleton::link`]).
pub(super) enum Text<'a> {
    Plain(&'a str),
    Escaped(String),
}

impl Text<'_> {
    fn as_str(&self) -> &str {
        match self {
            Text::Plain(t) => t,
            Text::Escaped(t) => t,
        }
    }
}

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Text<'de>, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text::Plain(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text::Escaped(v.to_owned()))
            }
        }
        d.deserialize_str(Visit)
    }
}

/// The `metadata` members a call or [`Event`] needs.
#[derive(Deserialize)]
pub(super) struct Meta<'a> {
    #[serde(borrow, default)]
    pub(super) user_agent: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) arguments: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(super) input_responses: Option<&'a RawValue>,
    #[serde(default)]
    pub(super) execution_time_us: Option<u64>,
    #[serde(default)]
    pub(super) output_size_bytes: Option<u64>,
    #[serde(borrow, default)]
    pub(super) risk_reasons: Vec<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) http: Option<Http<'a>>,
    #[serde(borrow, default)]
    pub(super) auth_method: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) error_messages: Vec<Cow<'a, str>>,
    #[serde(default)]
    pub(super) error_code: Option<i64>,
    #[serde(borrow, default)]
    pub(super) reason: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) audit_gap: Option<Gap<'a>>,
    #[serde(default)]
    pub(super) personal_data: Option<PersonalData>,
    /// `metadata.imported`: only whether it is there.
    #[serde(borrow, default)]
    pub(super) imported: Option<&'a RawValue>,
}

/// The `metadata.http` members a call needs.
#[derive(Deserialize)]
pub(super) struct Http<'a> {
    #[serde(borrow, default)]
    pub(super) client_address: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) user_agent: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) roles: Vec<Cow<'a, str>>,
}
