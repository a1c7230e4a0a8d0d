//! Query parameters of the three operations, read in any order (every SDK orders them
//! differently). `tag` arrives URL-encoded (`TagA%7C%7CTagB`); names arrive as they are.

use std::time::Duration;

use super::error::{invalid_argument, invalid_query, AliyunError};
use super::names::Namespace;
use super::tags::{validate_tag, TagFilter};

/// Most messages one consume returns.
pub const MAX_MESSAGES: u32 = 16;
/// Longest long poll.
pub const MAX_WAIT_SECONDS: u64 = 30;

fn pairs(query: Option<&str>) -> Result<Vec<(String, String)>, AliyunError> {
    serde_urlencoded::from_str(query.unwrap_or(""))
        .map_err(|e| invalid_query(format!("The query string cannot be read: {e}.")))
}

fn get<'a>(p: &'a [(String, String)], k: &str) -> Option<&'a str> {
    p.iter()
        .rev()
        .find(|(n, _)| n == k)
        .map(|(_, v)| v.as_str())
}

fn required<'a>(p: &'a [(String, String)], k: &str) -> Result<&'a str, AliyunError> {
    get(p, k)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| invalid_query(format!("The query parameter {k} is required.")))
}

/// `POST /topics/{topic}/messages?ns=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishParams {
    /// The instance the topic belongs to (`ns`); none when absent or empty.
    pub ns: Namespace,
}

impl PublishParams {
    /// Reads the raw query string; `InvalidQueryString` if it cannot be decoded,
    /// `InvalidArgument` for a bad instance id.
    pub fn parse(query: Option<&str>) -> Result<Self, AliyunError> {
        let p = pairs(query)?;
        Ok(PublishParams {
            ns: Namespace::parse(get(&p, "ns"))?,
        })
    }
}

/// How a consume hands out messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumeMode {
    /// No `trans`: messages of a queue are handed out without waiting for acks.
    Concurrent,
    /// `trans=order`: per queue, nothing new until the previous delivery is acked.
    Ordered,
}

/// `GET /topics/{topic}/messages?consumer=&numOfMessages=[&ns=][&waitseconds=][&tag=][&trans=]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumeParams {
    /// The instance (`ns`); none when absent or empty.
    pub ns: Namespace,
    /// As sent; valid as a group name of `ns`.
    pub consumer: String,
    /// `numOfMessages`: at most this many messages, 1..=[`MAX_MESSAGES`].
    pub num_of_messages: u32,
    /// `waitseconds`, 0..=[`MAX_WAIT_SECONDS`] s: how long to wait for a first message.
    /// Zero: answer at once.
    pub wait: Duration,
    /// `tag`: which messages the consumer wants.
    pub filter: TagFilter,
    /// `trans`: absent or `order` (`pop` is refused).
    pub mode: ConsumeMode,
}

impl ConsumeParams {
    /// Reads the raw query string; `InvalidQueryString` if it cannot be decoded or lacks
    /// `consumer`/`numOfMessages`, `InvalidArgument` for a bad or out-of-range number, a bad
    /// name or tag, or an unsupported `trans`.
    pub fn parse(query: Option<&str>) -> Result<Self, AliyunError> {
        let p = pairs(query)?;
        let num: u32 = required(&p, "numOfMessages")?.parse().map_err(|_| {
            invalid_argument(format!(
                "numOfMessages should be between 1 and {MAX_MESSAGES}."
            ))
        })?;
        if !(1..=MAX_MESSAGES).contains(&num) {
            return Err(invalid_argument(format!(
                "numOfMessages should be between 1 and {MAX_MESSAGES}, not {num}."
            )));
        }
        let wait = match get(&p, "waitseconds").filter(|w| !w.is_empty()) {
            None => 0,
            Some(w) => w
                .parse::<u64>()
                .ok()
                .filter(|w| *w <= MAX_WAIT_SECONDS)
                .ok_or_else(|| {
                    invalid_argument(format!(
                        "waitseconds should be between 0 and {MAX_WAIT_SECONDS}, not {w:?}."
                    ))
                })?,
        };
        let mode =
            match get(&p, "trans") {
                None | Some("") => ConsumeMode::Concurrent,
                Some("order") => ConsumeMode::Ordered,
                Some("pop") => return Err(invalid_argument(
                    "trans=pop reads half (transactional) messages; this gateway does not serve \
                     transactional messages yet.",
                )),
                Some(t) => {
                    return Err(invalid_argument(format!(
                        "trans must be \"order\" (or absent), not {t:?}."
                    )))
                }
            };
        let ns = Namespace::parse(get(&p, "ns"))?;
        let consumer = required(&p, "consumer")?.to_owned();
        ns.group(&consumer)?;
        Ok(ConsumeParams {
            ns,
            consumer,
            num_of_messages: num,
            wait: Duration::from_secs(wait),
            filter: TagFilter::parse(get(&p, "tag"))?,
            mode,
        })
    }
}

/// `DELETE /topics/{topic}/messages?consumer=[&ns=]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckParams {
    /// The instance (`ns`); none when absent or empty.
    pub ns: Namespace,
    /// The group the handles were given to, as sent; valid as a group name of `ns`.
    pub consumer: String,
}

impl AckParams {
    /// Reads the raw query string; `InvalidQueryString` if it cannot be decoded or lacks
    /// `consumer`, `InvalidArgument` for a bad name or any `trans` (transactional commit and
    /// rollback are not served).
    pub fn parse(query: Option<&str>) -> Result<Self, AliyunError> {
        let p = pairs(query)?;
        match get(&p, "trans") {
            None | Some("") => {}
            Some("commit" | "rollback") => {
                return Err(invalid_argument(
                    "trans=commit/rollback ends a transactional message; this gateway does not \
                     serve transactional messages yet.",
                ))
            }
            Some(t) => {
                return Err(invalid_argument(format!(
                    "trans must be absent on an ack, not {t:?}."
                )))
            }
        }
        let ns = Namespace::parse(get(&p, "ns"))?;
        let consumer = required(&p, "consumer")?.to_owned();
        ns.group(&consumer)?;
        Ok(AckParams { ns, consumer })
    }
}

/// Checks a publish's tag (kept here so publish and consume agree on what a tag is).
pub fn publish_tag(tag: Option<&str>) -> Result<Option<String>, AliyunError> {
    match tag {
        None => Ok(None),
        Some(t) => validate_tag(t).map(|()| Some(t.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::aliyun::error::Code;

    #[test]
    fn every_sdks_parameter_order_reads_the_same() {
        let python = "consumer=GID_A&numOfMessages=3&ns=MQ_INST_1&waitseconds=3&tag=TagA%7C%7CTagB";
        let node = "consumer=GID_A&ns=MQ_INST_1&tag=TagA%7C%7CTagB&numOfMessages=3&waitseconds=3";
        let java = "numOfMessages=3&consumer=GID_A&ns=MQ_INST_1&tag=TagA%7C%7CTagB&waitseconds=3";
        let a = ConsumeParams::parse(Some(python)).unwrap();
        assert_eq!(a, ConsumeParams::parse(Some(node)).unwrap());
        assert_eq!(a, ConsumeParams::parse(Some(java)).unwrap());
        assert_eq!(a.consumer, "GID_A");
        assert_eq!(a.ns.as_str(), Some("MQ_INST_1"));
        assert_eq!(a.num_of_messages, 3);
        assert_eq!(a.wait, Duration::from_secs(3));
        assert!(a.filter.matches(Some("TagB")) && !a.filter.matches(Some("TagC")));
        assert_eq!(a.mode, ConsumeMode::Concurrent);
        let go = "consumer=GID_A&trans=order&numOfMessages=1";
        let o = ConsumeParams::parse(Some(go)).unwrap();
        assert_eq!(o.mode, ConsumeMode::Ordered);
        assert_eq!(o.wait, Duration::ZERO);
        assert!(o.filter.matches(None));
    }

    #[test]
    fn bad_consume_and_ack_parameters_are_refused() {
        let code = |q: &str| ConsumeParams::parse(Some(q)).unwrap_err().code;
        assert_eq!(code("consumer=G&numOfMessages=0"), Code::InvalidArgument);
        assert_eq!(code("consumer=G&numOfMessages=17"), Code::InvalidArgument);
        assert_eq!(code("consumer=G&numOfMessages=x"), Code::InvalidArgument);
        assert_eq!(code("consumer=G"), Code::InvalidQueryString);
        assert_eq!(code("numOfMessages=1"), Code::InvalidQueryString);
        assert_eq!(
            code("consumer=G&numOfMessages=1&waitseconds=31"),
            Code::InvalidArgument
        );
        assert_eq!(
            code("consumer=G&numOfMessages=1&trans=fifo"),
            Code::InvalidArgument
        );
        assert_eq!(
            code("consumer=G&numOfMessages=1&trans=pop"),
            Code::InvalidArgument
        );
        assert_eq!(
            code("consumer=G%25x&numOfMessages=1&ns=I"),
            Code::InvalidArgument
        );
        let ack = AckParams::parse(Some("consumer=GID_A&ns=MQ_INST_1")).unwrap();
        assert_eq!(ack.consumer, "GID_A");
        // The Go SDK without an instance id sends an empty consumer.
        assert_eq!(
            AckParams::parse(Some("consumer=")).unwrap_err().code,
            Code::InvalidQueryString
        );
        assert_eq!(
            AckParams::parse(Some("consumer=G&trans=commit"))
                .unwrap_err()
                .code,
            Code::InvalidArgument
        );
        assert_eq!(
            PublishParams::parse(Some("ns=MQ_INST_1"))
                .unwrap()
                .ns
                .as_str(),
            Some("MQ_INST_1")
        );
        assert_eq!(PublishParams::parse(None).unwrap().ns.as_str(), None);
    }
}
