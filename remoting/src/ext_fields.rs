//! `extFields`: the named string parameters of a command ("custom header").

use std::borrow::Cow;

/// An ordered string map. Order is kept because Java peers' order is observable on the wire and
/// byte-exact re-encoding needs it; duplicate keys (possible in binary headers,
/// docs/protocol.md §5) are kept too, and lookups return the last one, as the Java decoder does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
// Keys are `Cow` so that typed headers, whose keys are literals, write them without an
// allocation each (a send header has 14).
pub struct ExtFields(Vec<(Cow<'static, str>, String)>);

impl ExtFields {
    /// An empty map.
    pub fn new() -> Self {
        ExtFields(Vec::new())
    }

    /// An empty map with room for `n` fields.
    pub fn with_capacity(n: usize) -> Self {
        ExtFields(Vec::with_capacity(n))
    }

    /// The value of `key` (the last one if the key repeats).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Sets `key`, replacing an existing value in place (so the wire order is stable).
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.insert_key(Cow::Owned(key.into()), value.into());
    }

    /// [`insert`](Self::insert) with a key that lives forever (a typed header's).
    pub(crate) fn insert_static(&mut self, key: &'static str, value: String) {
        self.insert_key(Cow::Borrowed(key), value);
    }

    fn insert_key(&mut self, key: Cow<'static, str>, value: String) {
        if let Some(slot) = self.0.iter_mut().rev().find(|(k, _)| *k == key) {
            slot.1 = value;
        } else {
            self.0.push((key, value));
        }
    }

    /// Appends without looking for an existing key (what a decoder does with the wire).
    pub fn push(&mut self, key: String, value: String) {
        self.0.push((Cow::Owned(key), value));
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        let mut last = None;
        self.0.retain(|(k, v)| {
            if k == key {
                last = Some(v.clone());
                false
            } else {
                true
            }
        });
        last
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.0.iter().any(|(k, _)| k == key)
    }

    /// The fields in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_ref(), v.as_str()))
    }

    /// The number of fields.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there is no field.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Keys in wire order, duplicates included.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, _)| k.as_ref())
    }

    /// The fields as pairs, in order.
    pub fn into_inner(self) -> Vec<(String, String)> {
        self.0
            .into_iter()
            .map(|(k, v)| (k.into_owned(), v))
            .collect()
    }
}

impl FromIterator<(String, String)> for ExtFields {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Self {
        ExtFields(iter.into_iter().map(|(k, v)| (Cow::Owned(k), v)).collect())
    }
}

impl<'a> FromIterator<(&'a str, &'a str)> for ExtFields {
    fn from_iter<I: IntoIterator<Item = (&'a str, &'a str)>>(iter: I) -> Self {
        ExtFields(
            iter.into_iter()
                .map(|(k, v)| (Cow::Owned(k.to_owned()), v.to_owned()))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_duplicate_wins_and_insert_keeps_order() {
        let mut f = ExtFields::new();
        f.push("a".into(), "1".into());
        f.push("b".into(), "2".into());
        f.push("a".into(), "3".into());
        assert_eq!(f.get("a"), Some("3"));
        f.insert("b", "9");
        assert_eq!(f.keys().collect::<Vec<_>>(), vec!["a", "b", "a"]);
        assert_eq!(f.get("b"), Some("9"));
        assert_eq!(f.remove("a").as_deref(), Some("3"));
        assert_eq!(f.len(), 1);
    }
}
