//! Units written in scenario files: sizes, rates and durations, each "a number or a string".
//!
//! A leaf module: it knows nothing of scenarios or the model, so both the scenario parser and the
//! model (which reads sizes from `memory_file`s at run time) can use it without a circle. Every
//! unit deserializes through the one [`NumberOrString`] visitor; a unit only says which numbers
//! and strings it accepts ([`FromScalar`]).

use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use serde::de::{self, Deserializer, MapAccess, Unexpected, Visitor};

/// A scalar value as written: an integer, a float or a string.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scalar<'a> {
    /// A non-negative integer (deserializers that report integers as unsigned).
    Unsigned(u64),
    /// An integer (TOML integers are signed).
    Signed(i64),
    /// A float.
    Float(f64),
    /// A string.
    Text(&'a str),
}

/// Why a scalar was refused.
#[derive(Debug)]
pub enum Refusal {
    /// The kind of value is wrong (e.g. a float where bytes are expected); serde then says
    /// "invalid type: ..., expected ..." with the unit's `EXPECTING`.
    WrongType,
    /// The value is of the right kind but not acceptable; the message says why.
    Invalid(String),
}

impl From<String> for Refusal {
    fn from(s: String) -> Self {
        Refusal::Invalid(s)
    }
}

/// A value that can be written as a number or a string (and, for some, as a table).
pub trait FromScalar: Sized {
    /// What serde's "expected ..." says.
    const EXPECTING: &'static str;

    /// Converts a scalar.
    fn from_scalar(value: Scalar<'_>) -> Result<Self, Refusal>;

    /// Converts a table; by default a table is the wrong type.
    fn from_map<'de, A: MapAccess<'de>>(_map: A) -> Result<Self, A::Error> {
        Err(de::Error::invalid_type(Unexpected::Map, &Self::EXPECTING))
    }
}

/// The one serde visitor for number-or-string values; use it via [`number_or_string`].
pub struct NumberOrString<T>(PhantomData<T>);

impl<T: FromScalar> NumberOrString<T> {
    fn scalar<E: de::Error>(&self, value: Scalar<'_>) -> Result<T, E> {
        T::from_scalar(value).map_err(|r| match r {
            Refusal::Invalid(msg) => E::custom(msg),
            Refusal::WrongType => {
                let unexpected = match value {
                    Scalar::Unsigned(v) => Unexpected::Unsigned(v),
                    Scalar::Signed(v) => Unexpected::Signed(v),
                    Scalar::Float(v) => Unexpected::Float(v),
                    Scalar::Text(v) => Unexpected::Str(v),
                };
                E::invalid_type(unexpected, self)
            }
        })
    }
}

impl<'de, T: FromScalar> Visitor<'de> for NumberOrString<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(T::EXPECTING)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        self.scalar(Scalar::Unsigned(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        self.scalar(Scalar::Signed(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        self.scalar(Scalar::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        self.scalar(Scalar::Text(v))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::from_map(map)
    }
}

/// Deserializes any [`FromScalar`] value.
pub fn number_or_string<'de, D: Deserializer<'de>, T: FromScalar>(d: D) -> Result<T, D::Error> {
    d.deserialize_any(NumberOrString::<T>(PhantomData))
}

/// Implements `Deserialize` through [`number_or_string`].
macro_rules! deserialize_via_scalar {
    ($($t:ty),*) => {$(
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                $crate::units::number_or_string(d)
            }
        }
    )*};
}
pub(crate) use deserialize_via_scalar;

/// A size in bytes, written as an integer or as a string such as `"2GiB"` or `"512 MB"`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Size(pub u64);

impl FromScalar for Size {
    const EXPECTING: &'static str = "a size: integer bytes or a string like \"2GiB\"";
    fn from_scalar(value: Scalar<'_>) -> Result<Self, Refusal> {
        match value {
            Scalar::Unsigned(v) => Ok(Size(v)),
            Scalar::Signed(v) => u64::try_from(v)
                .map(Size)
                .map_err(|_| format!("size must not be negative, got {v}").into()),
            Scalar::Float(_) => Err(Refusal::WrongType),
            Scalar::Text(v) => Ok(Size(parse_size(v)?)),
        }
    }
}

/// Parses a size string (`"2GiB"`, `"1.5 GB"`, `"1048576"`) into bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    if let Ok(n) = t.parse::<u64>() {
        return Ok(n);
    }
    bytesize::ByteSize::from_str(t)
        .map(|b| b.as_u64())
        .map_err(|e| format!("cannot parse size {text:?}: {e}"))
}

/// A rate in bytes per scenario second: `"16MiB"`, `"16MiB/s"`, or an integer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate(pub f64);

impl FromScalar for Rate {
    const EXPECTING: &'static str =
        "a rate: bytes per second as an integer or a string like \"8MiB/s\"";
    fn from_scalar(value: Scalar<'_>) -> Result<Self, Refusal> {
        match value {
            Scalar::Unsigned(v) => Ok(Rate(v as f64)),
            Scalar::Signed(v) => Ok(Rate(v as f64)),
            Scalar::Float(v) => Ok(Rate(v)),
            Scalar::Text(v) => {
                let (negative, t) = split_sign(v.trim());
                let t = t.strip_suffix("/s").unwrap_or(t);
                let bytes = parse_size(t)? as f64;
                Ok(Rate(if negative { -bytes } else { bytes }))
            }
        }
    }
}

/// A span of (scenario) time: seconds as a number, or a string like `"30s"`, `"1m30s"`, `"250ms"`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Secs(pub f64);

impl FromScalar for Secs {
    const EXPECTING: &'static str = "a duration: seconds as a number or a string like \"30s\"";
    fn from_scalar(value: Scalar<'_>) -> Result<Self, Refusal> {
        match value {
            Scalar::Unsigned(v) => Ok(Secs(v as f64)),
            Scalar::Signed(v) if v < 0 => {
                Err(format!("duration must not be negative, got {v}").into())
            }
            Scalar::Signed(v) => Ok(Secs(v as f64)),
            Scalar::Float(v) if !(v.is_finite() && v >= 0.0) => {
                Err(format!("duration must be a finite number >= 0, got {v}").into())
            }
            Scalar::Float(v) => Ok(Secs(v)),
            Scalar::Text(v) => Ok(Secs(parse_duration(v)?)),
        }
    }
}

/// A point on a time axis that may lie before zero: seconds as a number (`-5.7`), or a duration
/// string with an optional sign (`"-1m"`, `"30s"`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SignedSecs(pub f64);

impl FromScalar for SignedSecs {
    const EXPECTING: &'static str =
        "a time in seconds: a number (may be negative) or a string like \"30s\" or \"-5s\"";
    fn from_scalar(value: Scalar<'_>) -> Result<Self, Refusal> {
        match value {
            Scalar::Unsigned(v) => Ok(SignedSecs(v as f64)),
            Scalar::Signed(v) => Ok(SignedSecs(v as f64)),
            Scalar::Float(v) if !v.is_finite() => {
                Err(format!("time must be a finite number, got {v}").into())
            }
            Scalar::Float(v) => Ok(SignedSecs(v)),
            Scalar::Text(v) => {
                let (negative, t) = split_sign(v.trim());
                let secs = parse_duration(t)?;
                Ok(SignedSecs(if negative { -secs } else { secs }))
            }
        }
    }
}

deserialize_via_scalar!(Size, Rate, Secs, SignedSecs);

fn split_sign(t: &str) -> (bool, &str) {
    match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t),
    }
}

fn parse_duration(text: &str) -> Result<f64, String> {
    humantime::parse_duration(text.trim())
        .map(|d| d.as_secs_f64())
        .map_err(|e| format!("cannot parse duration {text:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    struct Doc {
        size: Option<Size>,
        rate: Option<Rate>,
        secs: Option<Secs>,
        at: Option<SignedSecs>,
    }

    fn doc(text: &str) -> Result<Doc, String> {
        toml::from_str(text).map_err(|e| e.message().to_string())
    }

    #[test]
    fn every_unit_reads_numbers_and_strings() {
        let d = doc("size = \"2GiB\"\nrate = \"-8MiB/s\"\nsecs = \"1m30s\"\nat = \"-5s\"").unwrap();
        assert_eq!(d.size, Some(Size(2 << 30)));
        assert_eq!(d.rate, Some(Rate(-8.0 * 1024.0 * 1024.0)));
        assert_eq!(d.secs, Some(Secs(90.0)));
        assert_eq!(d.at, Some(SignedSecs(-5.0)));
        let d = doc("size = 7\nrate = 1.5\nsecs = 0.25\nat = -5.743").unwrap();
        assert_eq!(d.size, Some(Size(7)));
        assert_eq!(d.rate, Some(Rate(1.5)));
        assert_eq!(d.secs, Some(Secs(0.25)));
        assert_eq!(d.at, Some(SignedSecs(-5.743)));
    }

    #[test]
    fn refusals_say_why() {
        let e = doc("size = 1.5").unwrap_err();
        assert!(e.contains("invalid type: floating point `1.5`"), "{e}");
        assert!(e.contains("a size"), "{e}");
        assert!(doc("size = -1")
            .unwrap_err()
            .contains("must not be negative"));
        assert!(doc("secs = -1")
            .unwrap_err()
            .contains("must not be negative"));
        assert!(doc("secs = \"soon\"").unwrap_err().contains("\"soon\""));
        assert!(doc("size = { a = 1 }")
            .unwrap_err()
            .contains("invalid type: map"));
        assert!(doc("at = nan").unwrap_err().contains("finite"));
    }
}
