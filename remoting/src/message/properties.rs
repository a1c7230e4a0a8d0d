//! Message properties: `name U+0001 value U+0002 ...` (docs/protocol.md §11.5).

use crate::error::MessageError;

/// Between a name and its value.
pub const NAME_VALUE_SEPARATOR: char = '\u{1}';
/// After each name=value pair.
pub const PROPERTY_SEPARATOR: char = '\u{2}';

/// Property keys the protocol gives a meaning (docs/protocol.md §11.6).
pub mod keys {
    /// Business keys, space separated.
    pub const KEYS: &str = "KEYS";
    /// The tag(s).
    pub const TAGS: &str = "TAGS";
    /// Whether the producer waits for the store.
    pub const WAIT: &str = "WAIT";
    /// The delay level.
    pub const DELAY: &str = "DELAY";
    /// The client's unique message id.
    pub const UNIQ_KEY: &str = "UNIQ_KEY";
    /// The original topic of a retried message.
    pub const RETRY_TOPIC: &str = "RETRY_TOPIC";
    /// The original topic of a scheduled or transactional message.
    pub const REAL_TOPIC: &str = "REAL_TOPIC";
    /// The original queue id of a scheduled message.
    pub const REAL_QID: &str = "REAL_QID";
    /// Marks a transactional message.
    pub const TRAN_MSG: &str = "TRAN_MSG";
    /// The producer group of a transactional message.
    pub const PGROUP: &str = "PGROUP";
    /// The first id of a retried message.
    pub const ORIGIN_MESSAGE_ID: &str = "ORIGIN_MESSAGE_ID";
    /// How often the message was consumed again.
    pub const RECONSUME_TIME: &str = "RECONSUME_TIME";
    /// Retries before the DLQ.
    pub const MAX_RECONSUME_TIMES: &str = "MAX_RECONSUME_TIMES";
    /// The cluster of a message (trace).
    pub const CLUSTER: &str = "CLUSTER";
    /// Deliver at this time (ms since the epoch; 5.x).
    pub const TIMER_DELIVER_MS: &str = "TIMER_DELIVER_MS";
    /// Deliver after this many seconds (5.x).
    pub const TIMER_DELAY_SEC: &str = "TIMER_DELAY_SEC";
    /// Deliver after this many milliseconds (5.x).
    pub const TIMER_DELAY_MS: &str = "TIMER_DELAY_MS";
    /// Messages in an inner batch.
    pub const INNER_NUM: &str = "INNER_NUM";
    /// The queue offset of an inner batch's first message.
    pub const INNER_BASE: &str = "INNER_BASE";
    /// The region the message was sent in.
    pub const MSG_REGION: &str = "MSG_REGION";
    /// Whether message tracing is on.
    pub const TRACE_ON: &str = "TRACE_ON";
}

/// An ordered property map. Wire order is kept (brokers reorder, tests compare), and duplicate
/// keys survive decoding: a 4.9 broker appends the batch envelope's `WAIT` to items that already
/// carry one (docs/protocol.md §11.5). Lookups return the last value, like Java's `HashMap::put`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Properties(Vec<(String, String)>);

impl Properties {
    /// No properties.
    pub fn new() -> Self {
        Properties(Vec::new())
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Sets `key`, replacing all earlier values in place.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let key = key.into();
        let value = value.into();
        let mut found = false;
        self.0.retain_mut(|(k, v)| {
            if *k != key {
                return true;
            }
            if found {
                return false;
            }
            found = true;
            *v = value.clone();
            true
        });
        if !found {
            self.0.push((key, value));
        }
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        let last = self.get(key).map(str::to_owned);
        self.0.retain(|(k, _)| k != key);
        last
    }

    /// The properties in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The number of properties.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Parses the wire string the way Java's `string2messageProperties` does: split on U+0002,
    /// keep segments of at least 3 characters whose first U+0001 splits them into a non-empty key
    /// and a non-empty value; ignore the rest. A trailing U+0002 is optional.
    pub fn decode(s: &str) -> Self {
        let mut out = Vec::new();
        for seg in s.split(PROPERTY_SEPARATOR) {
            if seg.chars().count() < 3 {
                continue;
            }
            if let Some((k, v)) = seg.split_once(NAME_VALUE_SEPARATOR) {
                if !k.is_empty() && !v.is_empty() {
                    out.push((k.to_owned(), v.to_owned()));
                }
            }
        }
        Properties(out)
    }

    /// Encodes as Java 4.9.8 does: no separator after the last pair (docs/protocol.md §11.5).
    /// Pairs with an empty key or value are skipped, since the decoder would drop them anyway.
    pub fn encode(&self) -> String {
        let mut s = String::with_capacity(self.0.iter().map(|(k, v)| k.len() + v.len() + 2).sum());
        for (k, v) in &self.0 {
            if k.is_empty() || v.is_empty() {
                continue;
            }
            if !s.is_empty() {
                s.push(PROPERTY_SEPARATOR);
            }
            s.push_str(k);
            s.push(NAME_VALUE_SEPARATOR);
            s.push_str(v);
        }
        s
    }

    /// Encodes and checks what the broker would refuse: separators inside names or values, and
    /// more than 32 767 bytes in all (docs/protocol.md §11.5).
    pub fn encode_checked(&self) -> Result<String, MessageError> {
        for (k, v) in &self.0 {
            if k.contains([NAME_VALUE_SEPARATOR, PROPERTY_SEPARATOR]) {
                return Err(MessageError::PropertySeparator("property name"));
            }
            if v.contains([NAME_VALUE_SEPARATOR, PROPERTY_SEPARATOR]) {
                return Err(MessageError::PropertySeparator("property value"));
            }
        }
        let s = self.encode();
        if s.len() > i16::MAX as usize {
            return Err(MessageError::PropertiesTooLong(s.len()));
        }
        Ok(s)
    }
}

impl FromIterator<(String, String)> for Properties {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Self {
        Properties(iter.into_iter().collect())
    }
}

impl<'a> FromIterator<(&'a str, &'a str)> for Properties {
    fn from_iter<I: IntoIterator<Item = (&'a str, &'a str)>>(iter: I) -> Self {
        Properties(
            iter.into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_trailing_forms_decode_alike() {
        let a = Properties::decode("KEYS\u{1}k1 k2\u{2}TAGS\u{1}TagA");
        let b = Properties::decode("KEYS\u{1}k1 k2\u{2}TAGS\u{1}TagA\u{2}");
        assert_eq!(a, b);
        assert_eq!(a.get("TAGS"), Some("TagA"));
        assert_eq!(a.encode(), "KEYS\u{1}k1 k2\u{2}TAGS\u{1}TagA");
    }

    #[test]
    fn java_parser_rules() {
        // short segments, empty values, missing separators are ignored
        let p = Properties::decode("a\u{1}\u{2}xy\u{2}k\u{1}v\u{2}\u{1}vv\u{2}noval");
        assert_eq!(p.iter().collect::<Vec<_>>(), vec![("k", "v")]);
        let dup = Properties::decode("WAIT\u{1}true\u{2}CLUSTER\u{1}c\u{2}WAIT\u{1}true");
        assert_eq!(dup.len(), 3);
        assert_eq!(dup.get("WAIT"), Some("true"));
    }

    #[test]
    fn checked_encoding_refuses_separators_and_oversize() {
        let p: Properties = [("k", "a\u{2}b")].into_iter().collect();
        assert!(p.encode_checked().is_err());
        let big = "x".repeat(40_000);
        let p: Properties = [("k", big.as_str())].into_iter().collect();
        assert!(matches!(
            p.encode_checked(),
            Err(MessageError::PropertiesTooLong(_))
        ));
    }
}
