//! Instance ids (`ns`) as RocketMQ namespaces, the way the Java client wraps names: topic
//! `{ns}%{topic}`, group `{ns}%{group}`, retry and dead-letter topics `%RETRY%{ns}%{group}` and
//! `%DLQ%{ns}%{group}`; without an instance id names are used as they are.
//!
//! Names from requests may use `[A-Za-z0-9_-]` only: `%` would let a caller write a namespaced
//! or system name (`%RETRY%…`) directly, and `|` breaks RocketMQ's tag and key syntax.

use super::error::{invalid_argument, AliyunError};

/// RocketMQ's limit on a topic name (Java's `TOPIC_MAX_LENGTH`).
const MAX_TOPIC_LEN: usize = 127;
/// RocketMQ's limit on a group name.
const MAX_GROUP_LEN: usize = 255;

fn plain(what: &str, s: &str) -> Result<(), AliyunError> {
    if s.is_empty() {
        return Err(invalid_argument(format!("The {what} is empty.")));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(invalid_argument(format!(
            "The {what} {s:?} contains {c:?}; only letters, digits, '_' and '-' are allowed."
        )));
    }
    Ok(())
}

/// A validated instance id, or none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Namespace(Option<String>);

impl Namespace {
    /// From the `ns` query parameter; empty means none (the SDKs omit it then).
    pub fn parse(ns: Option<&str>) -> Result<Self, AliyunError> {
        match ns.filter(|s| !s.is_empty()) {
            None => Ok(Namespace(None)),
            Some(s) => {
                plain("instance id", s)?;
                Ok(Namespace(Some(s.to_owned())))
            }
        }
    }

    /// The instance id; None when the request carried no (or an empty) `ns`.
    pub fn as_str(&self) -> Option<&str> {
        self.0.as_deref()
    }

    fn wrap(&self, name: &str) -> String {
        match &self.0 {
            Some(ns) => format!("{ns}%{name}"),
            None => name.to_owned(),
        }
    }

    /// The broker's name of a topic of this instance.
    pub fn topic(&self, topic: &str) -> Result<String, AliyunError> {
        plain("topic name", topic)?;
        let full = self.wrap(topic);
        if full.len() > MAX_TOPIC_LEN {
            return Err(invalid_argument(format!(
                "The topic name {full:?} is longer than {MAX_TOPIC_LEN} characters."
            )));
        }
        Ok(full)
    }

    /// The broker's name of a group (consumer id) of this instance.
    pub fn group(&self, group: &str) -> Result<String, AliyunError> {
        plain("consumer group", group)?;
        let full = self.wrap(group);
        if full.len() > MAX_GROUP_LEN {
            return Err(invalid_argument(format!(
                "The group name {full:?} is longer than {MAX_GROUP_LEN} characters."
            )));
        }
        Ok(full)
    }

    /// `%RETRY%` + the wrapped group, where the broker sends messages back for another try.
    pub fn retry_topic(&self, group: &str) -> Result<String, AliyunError> {
        Ok(format!("%RETRY%{}", self.group(group)?))
    }

    /// `%DLQ%` + the wrapped group, where messages go after the last try.
    pub fn dlq_topic(&self, group: &str) -> Result<String, AliyunError> {
        Ok(format!("%DLQ%{}", self.group(group)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_ids_prefix_topics_and_groups_as_java_does() {
        let ns = Namespace::parse(Some("MQ_INST_1")).unwrap();
        assert_eq!(ns.topic("TopicA").unwrap(), "MQ_INST_1%TopicA");
        assert_eq!(ns.group("GID_A").unwrap(), "MQ_INST_1%GID_A");
        assert_eq!(ns.retry_topic("GID_A").unwrap(), "%RETRY%MQ_INST_1%GID_A");
        assert_eq!(ns.dlq_topic("GID_A").unwrap(), "%DLQ%MQ_INST_1%GID_A");
        let none = Namespace::parse(Some("")).unwrap();
        assert_eq!(none, Namespace::parse(None).unwrap());
        assert_eq!(none.topic("TopicA").unwrap(), "TopicA");
        assert_eq!(none.retry_topic("G").unwrap(), "%RETRY%G");
    }

    #[test]
    fn forged_and_oversized_names_are_refused() {
        let none = Namespace::default();
        for bad in ["", "a%b", "%RETRY%G", "a|b", "a b", "тема", "a/b"] {
            let e = none.topic(bad).unwrap_err();
            assert_eq!(
                e.code,
                super::super::error::Code::InvalidArgument,
                "{bad:?}"
            );
        }
        assert!(Namespace::parse(Some("ns%x")).is_err());
        assert!(none.topic(&"t".repeat(127)).is_ok());
        assert!(none.topic(&"t".repeat(128)).is_err());
        let ns = Namespace::parse(Some(&"n".repeat(100))).unwrap();
        assert!(ns.topic(&"t".repeat(27)).is_err(), "the prefix counts");
        assert!(none.group(&"g".repeat(256)).is_err());
    }
}
