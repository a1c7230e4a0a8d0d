//! Conversions between header field types and their `extFields` text.

use std::fmt;

use crate::error::HeaderError;
use crate::ext_fields::ExtFields;

/// A field type with a text form on the wire.
pub(crate) trait Value: Sized {
    fn parse(text: &str) -> Option<Self>;
    fn render(&self) -> String;
}

/// How a struct field maps to an `extFields` key: a plain value is required, an `Option` is not.
pub(crate) trait Slot: Sized {
    fn read(text: Option<&str>, key: &'static str) -> Result<Self, HeaderError>;
    fn write(&self, ext: &mut ExtFields, key: &'static str);
}

fn parse_field<T: Value>(text: &str, key: &'static str) -> Result<T, HeaderError> {
    T::parse(text).ok_or_else(|| HeaderError::Invalid {
        field: key,
        value: text.to_owned(),
    })
}

impl<T: Value> Slot for T {
    fn read(text: Option<&str>, key: &'static str) -> Result<Self, HeaderError> {
        parse_field(text.ok_or(HeaderError::Missing(key))?, key)
    }

    fn write(&self, ext: &mut ExtFields, key: &'static str) {
        ext.insert_static(key, self.render());
    }
}

impl<T: Value> Slot for Option<T> {
    fn read(text: Option<&str>, key: &'static str) -> Result<Self, HeaderError> {
        text.map(|t| parse_field(t, key)).transpose()
    }

    fn write(&self, ext: &mut ExtFields, key: &'static str) {
        if let Some(v) = self {
            ext.insert_static(key, v.render());
        }
    }
}

impl Value for String {
    fn parse(text: &str) -> Option<Self> {
        Some(text.to_owned())
    }
    fn render(&self) -> String {
        self.clone()
    }
}

// `str::parse` accepts exactly what Java's `parseInt`/`parseLong` accept: an optional sign and
// ASCII digits, no whitespace, overflow rejected.
macro_rules! number_value {
    ($($t:ty),*) => {$(
        impl Value for $t {
            fn parse(text: &str) -> Option<Self> {
                text.parse().ok()
            }
            fn render(&self) -> String {
                self.to_string()
            }
        }
    )*};
}

number_value!(i32, i64);

impl Value for bool {
    /// Java's `Boolean.parseBoolean` reads anything but `true` as false; we are stricter so a
    /// garbled value is noticed, but accept the `0`/`1` that rocketmq-client-cpp sends.
    fn parse(text: &str) -> Option<Self> {
        if text.eq_ignore_ascii_case("true") || text == "1" {
            Some(true)
        } else if text.eq_ignore_ascii_case("false") || text == "0" {
            Some(false)
        } else {
            None
        }
    }
    fn render(&self) -> String {
        self.to_string()
    }
}

/// Which end of a run of equal store timestamps SEARCH_OFFSET_BY_TIMESTAMP answers (5.x).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum BoundaryType {
    /// First offset stored at or after the timestamp (the default, and 4.9's only behaviour).
    #[default]
    Lower,
    /// Last offset stored at or before the timestamp.
    Upper,
}

impl BoundaryType {
    /// The name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            BoundaryType::Lower => "LOWER",
            BoundaryType::Upper => "UPPER",
        }
    }
}

impl fmt::Display for BoundaryType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Value for BoundaryType {
    /// The 5.x broker reads `upper` in any case as UPPER and everything else as LOWER; matching
    /// that means a request it accepts is never one we reject.
    fn parse(text: &str) -> Option<Self> {
        Some(if text.eq_ignore_ascii_case("upper") {
            BoundaryType::Upper
        } else {
            BoundaryType::Lower
        })
    }
    fn render(&self) -> String {
        self.name().to_owned()
    }
}

/// How a topic's tags are filtered (`TopicFilterType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TopicFilterType {
    /// One tag per message.
    #[default]
    SingleTag,
    /// Several tags per message.
    MultiTag,
}

impl TopicFilterType {
    /// The name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            TopicFilterType::SingleTag => "SINGLE_TAG",
            TopicFilterType::MultiTag => "MULTI_TAG",
        }
    }
}

impl fmt::Display for TopicFilterType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Value for TopicFilterType {
    /// Exact names only: the broker's `TopicFilterType.valueOf` rejects anything else.
    fn parse(text: &str) -> Option<Self> {
        match text {
            "SINGLE_TAG" => Some(TopicFilterType::SingleTag),
            "MULTI_TAG" => Some(TopicFilterType::MultiTag),
            _ => None,
        }
    }
    fn render(&self) -> String {
        self.name().to_owned()
    }
}
