//! Java enums in JSON bodies: fastjson writes the name, the C++ clients write the ordinal
//! (docs/protocol.md §10.7), and Java accepts both. So do we; we write names.

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

macro_rules! java_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $ord:expr => $lit:literal),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $(#[doc = concat!("`", $lit, "` (ordinal ", stringify!($ord), ")")] $variant,)* }

        impl $name {
            /// The Java name, as fastjson writes it.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $lit,)* }
            }
            /// The variant of a Java name.
            pub fn from_name(s: &str) -> Option<Self> {
                match s { $($lit => Some($name::$variant),)* _ => None }
            }
            /// The variant of a Java ordinal, as the C++ clients write it.
            pub fn from_ordinal(n: i64) -> Option<Self> {
                match n { $($ord => Some($name::$variant),)* _ => None }
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                        f.write_str(concat!("a ", stringify!($name), " name or ordinal"))
                    }
                    fn visit_str<E: de::Error>(self, s: &str) -> Result<$name, E> {
                        $name::from_name(s).ok_or_else(|| E::unknown_variant(s, &[$($lit),*]))
                    }
                    fn visit_i64<E: de::Error>(self, n: i64) -> Result<$name, E> {
                        $name::from_ordinal(n)
                            .ok_or_else(|| E::invalid_value(de::Unexpected::Signed(n), &self))
                    }
                    fn visit_u64<E: de::Error>(self, n: u64) -> Result<$name, E> {
                        self.visit_i64(i64::try_from(n).unwrap_or(i64::MAX))
                    }
                }
                d.deserialize_any(V)
            }
        }
    };
}

java_enum! {
    /// How a consumer group receives messages.
    ConsumeType {
        Actively = 0 => "CONSUME_ACTIVELY",
        Passively = 1 => "CONSUME_PASSIVELY",
        Pop = 2 => "CONSUME_POP",
    }
}

java_enum! {
    /// Whether a group shares the queues (clustering) or every consumer gets everything.
    MessageModel {
        Broadcasting = 0 => "BROADCASTING",
        Clustering = 1 => "CLUSTERING",
    }
}

java_enum! {
    /// Where a group without a committed offset starts.
    ConsumeFromWhere {
        LastOffset = 0 => "CONSUME_FROM_LAST_OFFSET",
        LastOffsetAndFromMinWhenBootFirst = 1 => "CONSUME_FROM_LAST_OFFSET_AND_FROM_MIN_WHEN_BOOT_FIRST",
        MinOffset = 2 => "CONSUME_FROM_MIN_OFFSET",
        MaxOffset = 3 => "CONSUME_FROM_MAX_OFFSET",
        FirstOffset = 4 => "CONSUME_FROM_FIRST_OFFSET",
        Timestamp = 5 => "CONSUME_FROM_TIMESTAMP",
    }
}

/// Reads an i64 written as a number or as a string (C++ sends `subVersion` as a string).
pub(crate) fn de_lenient_i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = i64;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an integer or a decimal string")
        }
        fn visit_i64<E: de::Error>(self, n: i64) -> Result<i64, E> {
            Ok(n)
        }
        fn visit_u64<E: de::Error>(self, n: u64) -> Result<i64, E> {
            i64::try_from(n).map_err(|_| E::invalid_value(de::Unexpected::Unsigned(n), &self))
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<i64, E> {
            s.trim()
                .parse()
                .map_err(|_| E::invalid_value(de::Unexpected::Str(s), &self))
        }
    }
    d.deserialize_any(V)
}
