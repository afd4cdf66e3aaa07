//! The strict deserializer between the `config` crate's layered values and [`super::RawConfig`]:
//! integers are integers.
//!
//! The `config` crate's own deserializer converts between kinds silently: a float given for an
//! integer key is rounded or truncated (`prefer_uids = [-0.9]` became `[0]`, root preferred for
//! a kill; `max_per_gpu = nan` became 0). Here every layered value is first copied into a
//! [`Node`] that keeps its kind, then deserialized with these rules, for every key of every
//! section at once:
//!
//! - an integer key takes an integer (or a string of digits, as environment variables are);
//!   a float, NaN or infinity is refused naming the value, and a value out of the type's range
//!   is refused by serde's own range check (`-1` for a UID);
//! - a float key takes a finite number; NaN and infinity are refused;
//! - a string key takes any scalar as its text (a size or duration written as a bare number
//!   reaches its own parser, which names the key);
//! - a boolean key takes a boolean or `"true"`/`"false"`.

use std::fmt;

use serde::de::value::{MapAccessDeserializer, MapDeserializer, SeqDeserializer};
use serde::de::{self, IntoDeserializer, Visitor};

/// A configuration value with the kind it was written with.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Nil,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(String, Node)>),
}

impl From<config::Value> for Node {
    fn from(value: config::Value) -> Node {
        use config::ValueKind as K;
        match value.kind {
            K::Nil => Node::Nil,
            K::Boolean(b) => Node::Bool(b),
            K::I64(i) => Node::Int(i.into()),
            K::I128(i) => Node::Int(i),
            K::U64(u) => Node::Int(u.into()),
            K::U128(u) => Node::Int(i128::try_from(u).unwrap_or(i128::MAX)),
            K::Float(f) => Node::Float(f),
            K::String(s) => Node::Str(s),
            K::Array(a) => Node::Seq(a.into_iter().map(Node::from).collect()),
            K::Table(t) => Node::Map(t.into_iter().map(|(k, v)| (k, Node::from(v))).collect()),
        }
    }
}

/// Why a value was refused (the key is added by `serde_path_to_error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StrictError(String);

impl fmt::Display for StrictError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StrictError {}

impl de::Error for StrictError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        StrictError(msg.to_string())
    }
}

/// A float where an integer belongs: refused, with the value as written.
fn not_an_integer(f: f64) -> StrictError {
    StrictError(format!(
        "invalid value {f:?}: must be a whole number (no fraction, NaN or infinity)"
    ))
}

impl Node {
    fn kind(&self) -> &'static str {
        match self {
            Node::Nil => "nothing",
            Node::Bool(_) => "a boolean",
            Node::Int(_) => "an integer",
            Node::Float(_) => "a number with a fraction",
            Node::Str(_) => "a string",
            Node::Seq(_) => "a list",
            Node::Map(_) => "a table",
        }
    }

    fn wrong(&self, expected: &str) -> StrictError {
        StrictError(format!(
            "invalid type: {}, expected {expected}",
            self.kind()
        ))
    }

    /// The integer this node holds, refusing floats and non-numeric text.
    fn integer(self) -> Result<i128, StrictError> {
        match self {
            Node::Int(i) => Ok(i),
            Node::Float(f) => Err(not_an_integer(f)),
            Node::Str(s) => s
                .trim()
                .parse::<i128>()
                .map_err(|_| StrictError(format!("invalid value {s:?}: must be a whole number"))),
            other => Err(other.wrong("an integer")),
        }
    }
}

fn visit_integer<'de, V: Visitor<'de>>(i: i128, visitor: V) -> Result<V::Value, StrictError> {
    // serde's visitors check the target type's range and name it in their error.
    if let Ok(v) = i64::try_from(i) {
        visitor.visit_i64(v)
    } else if let Ok(v) = u64::try_from(i) {
        visitor.visit_u64(v)
    } else {
        visitor.visit_i128(i)
    }
}

macro_rules! integer_methods {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, StrictError> {
            visit_integer(self.integer()?, visitor)
        }
    )*};
}

impl<'de> de::Deserializer<'de> for Node {
    type Error = StrictError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, StrictError> {
        match self {
            Node::Nil => visitor.visit_unit(),
            Node::Bool(b) => visitor.visit_bool(b),
            Node::Int(i) => visit_integer(i, visitor),
            Node::Float(f) if !f.is_finite() => Err(StrictError(format!(
                "invalid value {f:?}: must be a finite number"
            ))),
            Node::Float(f) => visitor.visit_f64(f),
            Node::Str(s) => visitor.visit_string(s),
            Node::Seq(items) => visitor.visit_seq(SeqDeserializer::new(items.into_iter())),
            Node::Map(entries) => visitor.visit_map(MapDeserializer::new(entries.into_iter())),
        }
    }

    integer_methods! {
        deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_i128
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_u128
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, StrictError> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, StrictError> {
        let f = match self {
            Node::Int(i) => i as f64,
            Node::Float(f) => f,
            Node::Str(s) => s
                .trim()
                .parse::<f64>()
                .map_err(|_| StrictError(format!("invalid value {s:?}: must be a number")))?,
            other => return Err(other.wrong("a number")),
        };
        if !f.is_finite() {
            return Err(StrictError(format!(
                "invalid value {f:?}: must be a finite number"
            )));
        }
        visitor.visit_f64(f)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, StrictError> {
        match self {
            Node::Bool(b) => visitor.visit_bool(b),
            Node::Str(s) if s.trim() == "true" => visitor.visit_bool(true),
            Node::Str(s) if s.trim() == "false" => visitor.visit_bool(false),
            other => Err(other.wrong("true or false")),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, StrictError> {
        self.deserialize_string(visitor)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, StrictError> {
        match self {
            Node::Str(s) => visitor.visit_string(s),
            Node::Int(i) => visitor.visit_string(i.to_string()),
            Node::Float(f) => visitor.visit_string(f.to_string()),
            Node::Bool(b) => visitor.visit_string(b.to_string()),
            other => Err(other.wrong("a string")),
        }
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, StrictError> {
        self.deserialize_string(visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, StrictError> {
        self.deserialize_string(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, StrictError> {
        match self {
            Node::Nil => visitor.visit_none(),
            other => visitor.visit_some(other),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, StrictError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, StrictError> {
        match self {
            Node::Str(s) => visitor.visit_enum(s.into_deserializer()),
            Node::Map(entries) if entries.len() == 1 => visitor.visit_enum(
                MapAccessDeserializer::new(MapDeserializer::new(entries.into_iter())),
            ),
            other => Err(other.wrong("one of the listed names")),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, StrictError> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct
    }
}

impl<'de> IntoDeserializer<'de, StrictError> for Node {
    type Deserializer = Node;

    fn into_deserializer(self) -> Node {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Section {
        uids: Vec<u32>,
        count: Option<usize>,
        rate: Option<f64>,
        name: Option<String>,
        on: Option<bool>,
    }

    fn parse(entries: Vec<(&str, Node)>) -> Result<Section, String> {
        let node = Node::Map(entries.into_iter().map(|(k, v)| (k.into(), v)).collect());
        serde_path_to_error::deserialize::<_, Section>(node).map_err(|e| {
            let path = e.path().to_string();
            format!("{path}: {}", e.into_inner())
        })
    }

    #[test]
    fn integers_are_integers() {
        let ok = parse(vec![
            (
                "uids",
                Node::Seq(vec![Node::Int(0), Node::Str("1000".into())]),
            ),
            ("count", Node::Int(3)),
            ("rate", Node::Int(2)),
            ("name", Node::Int(8)),
            ("on", Node::Str("true".into())),
        ])
        .unwrap();
        assert_eq!(ok.uids, [0, 1000]);
        assert_eq!((ok.count, ok.rate), (Some(3), Some(2.0)));
        assert_eq!((ok.name.as_deref(), ok.on), (Some("8"), Some(true)));

        let refused = |entries: Vec<(&str, Node)>, words: &[&str]| {
            let e = parse(entries).unwrap_err();
            for w in words {
                assert!(e.contains(w), "{e} lacks {w}");
            }
        };
        let uids = |n: Node| vec![("uids", Node::Seq(vec![n]))];
        refused(
            uids(Node::Float(-0.9)),
            &["uids[0]", "-0.9", "whole number"],
        );
        refused(uids(Node::Float(1000.7)), &["uids[0]", "1000.7"]);
        refused(uids(Node::Int(-1)), &["uids[0]", "-1", "u32"]);
        refused(uids(Node::Int(1 << 40)), &["uids[0]", "u32"]);
        refused(uids(Node::Str("1e3".into())), &["uids[0]", "1e3"]);
        let with = |k: &'static str, n: Node| vec![("uids", Node::Seq(vec![])), (k, n)];
        refused(with("count", Node::Float(f64::NAN)), &["count", "NaN"]);
        refused(with("count", Node::Float(2.0)), &["count", "2"]);
        refused(with("rate", Node::Float(f64::INFINITY)), &["rate", "inf"]);
        refused(with("on", Node::Int(1)), &["on", "true or false"]);
    }
}
