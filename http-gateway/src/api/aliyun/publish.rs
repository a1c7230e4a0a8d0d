//! PublishMessage: an XML message becomes a RocketMQ message sent through rmq-client's
//! producer.
//!
//! * `__SHARDINGKEY` selects the queue by key (Java's `SelectMessageQueueByHash`), so one key's
//!   messages share a queue and keep their order while the route is unchanged.
//! * `__STARTDELIVERTIME` in the future: brokers with timers (5.x) get the exact time
//!   (`TIMER_DELIVER_MS`). Older brokers only have delay levels; the message then gets the
//!   smallest level of the default table (1s 5s 10s 30s 1m … 10m 20m 30m 1h 2h) that is not
//!   earlier than the requested time, and a time further than 2 h away is refused with
//!   `InvalidArgument` rather than delivered early. A time in the past is delivered at once,
//!   as Aliyun does.
//! * `__TransCheckT` (transactional) is refused until the gateway serves transactions.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use md5::{Digest, Md5};
use rmq_client::{ClientError, MQClient, Message, Producer, ProducerConfig, QueueSelector};
use rmq_remoting::ResponseCode;
use tracing::debug;

use super::error::{invalid_argument, AliyunError, Code};
use super::props::{self, MessageProps};
use super::tags::validate_tag;
use super::xml::PublishRequest;
use crate::broker::BrokerError;
use crate::metrics::{produce_status, Metrics};

/// The broker's default `messageDelayLevel`, level 1 first.
pub const DELAY_LEVELS: [Duration; 18] = {
    const fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }
    [
        s(1),
        s(5),
        s(10),
        s(30),
        s(60),
        s(120),
        s(180),
        s(240),
        s(300),
        s(360),
        s(420),
        s(480),
        s(540),
        s(600),
        s(1200),
        s(1800),
        s(3600),
        s(7200),
    ]
};

/// The smallest delay level not shorter than `delay`; none when `delay` exceeds the longest.
pub fn delay_level_for(delay: Duration) -> Option<u8> {
    DELAY_LEVELS
        .iter()
        .position(|l| *l >= delay)
        .map(|i| i as u8 + 1)
}

/// What a publish answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// `MessageId`: the message's unique key, as consumers will see it.
    pub message_id: String,
    /// Upper-case hex MD5 of the body's UTF-8 bytes.
    pub body_md5: String,
    /// The broker that stored the message.
    pub broker_name: String,
    /// The queue on that broker.
    pub queue_id: i32,
    /// The message's offset in that queue.
    pub queue_offset: i64,
}

/// `MessageBodyMD5`: the upper-case hex MD5 of the body bytes.
pub fn body_md5(body: &[u8]) -> String {
    Md5::digest(body)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Turns a publish into the RocketMQ message and queue selector, or the request's error.
pub fn build(
    topic: &str,
    req: PublishRequest,
    max_body: usize,
) -> Result<(Message, MessageProps, QueueSelector), AliyunError> {
    if let Some(t) = req.tag.as_deref() {
        validate_tag(t)?;
    }
    let p = props::parse(req.properties.as_deref())?;
    if p.transactional {
        return Err(invalid_argument(
            "Transactional messages (property __TransCheckT) are not supported by this gateway yet; \
             publish without __TransCheckT.",
        ));
    }
    let body = Bytes::from(req.body);
    if body.len() > max_body {
        return Err(invalid_argument(format!(
            "The MessageBody is {} bytes; it should be between 1 and {max_body} bytes.",
            body.len()
        )));
    }
    let mut m = Message::new(topic, body);
    if let Some(t) = req.tag {
        m = m.with_tags(t);
    }
    if !p.keys.is_empty() {
        m = m.with_keys(p.keys.iter().cloned());
    }
    for (k, v) in &p.user {
        m = m.with_property(k.clone(), v.clone());
    }
    let selector = match &p.sharding_key {
        Some(k) => QueueSelector::Key(k.clone()),
        None => QueueSelector::RoundRobin,
    };
    Ok((m, p, selector))
}

fn send_error(topic: &str, e: ClientError) -> AliyunError {
    match e {
        ClientError::TopicNotExist(_) | ClientError::NoWritableQueue(_) => AliyunError::new(
            Code::TopicNotExist,
            format!("The topic {topic:?} does not exist on the brokers."),
        ),
        ClientError::Broker {
            code: ResponseCode::TopicNotExist,
            ..
        } => AliyunError::new(
            Code::TopicNotExist,
            format!("The topic {topic:?} does not exist on the brokers."),
        ),
        ClientError::InvalidArgument(_)
        | ClientError::MessageTooLarge { .. }
        | ClientError::Message(_) => invalid_argument(e.to_string()),
        ClientError::Timeout { .. } | ClientError::ConnectionClosed { .. } => AliyunError::new(
            Code::ServiceUnavailable,
            format!("The broker did not answer; the message may or may not be stored: {e}"),
        ),
        e if e.is_transport() => AliyunError::new(
            Code::ServiceUnavailable,
            format!("The broker cannot be reached: {e}"),
        ),
        e => AliyunError::new(Code::InternalError, e.to_string()),
    }
}

/// Sends published messages to the brokers, counting them in the gateway's metrics under the
/// producer group (`produced_messages_total{producer=<group>}`, and one `SEND_MESSAGE` broker
/// call per message that got as far as sending).
#[derive(Clone)]
pub struct Publisher {
    producer: Producer,
    group: String,
    metrics: Arc<Metrics>,
}

impl Publisher {
    /// Sends through `client` under the producer group `group`, never creating topics (a
    /// missing one is `TopicNotExist`).
    pub fn new(client: MQClient, group: &str, metrics: Arc<Metrics>) -> Self {
        let mut pc = ProducerConfig::new(group);
        // Aliyun answers TopicNotExist for a topic nobody created; so does the gateway.
        pc.auto_create_topic = false;
        Publisher {
            producer: Producer::new(client, pc),
            group: group.to_owned(),
            metrics,
        }
    }

    /// The largest body the producer sends, in bytes; a larger one is `InvalidArgument`.
    pub fn max_body(&self) -> usize {
        self.producer.config().max_message_size
    }

    /// `topic` is the broker's name (namespace included).
    pub async fn publish(
        &self,
        topic: &str,
        req: PublishRequest,
    ) -> Result<Published, AliyunError> {
        let (msg, p, selector) = build(topic, req, self.max_body())?;
        let body_md5 = body_md5(&msg.body);
        let at = p.start_deliver_time.filter(|t| *t > now_ms());
        let start = Instant::now();
        let result = match at {
            None => self.producer.send_with(msg, selector).await,
            Some(at) => {
                let timed = msg.clone().with_deliver_at(at);
                match self.producer.send_with(timed, selector.clone()).await {
                    // Checked before anything is sent: the broker has no timers.
                    Err(ClientError::NotSupported(why)) => {
                        let delay = Duration::from_millis((at - now_ms()).max(0) as u64);
                        let level = delay_level_for(delay).ok_or_else(|| {
                            invalid_argument(format!(
                                "__STARTDELIVERTIME is {}s away; the broker has no timers and its \
                                 longest delay level is {}s.",
                                delay.as_secs(),
                                DELAY_LEVELS[DELAY_LEVELS.len() - 1].as_secs()
                            ))
                        })?;
                        debug!(%why, level, "timed message on a broker without timers: delay level");
                        self.producer
                            .send_with(msg.with_delay_level(level), selector)
                            .await
                    }
                    other => other,
                }
            }
        };
        let took = start.elapsed();
        match &result {
            Ok(r) => {
                self.metrics.broker_call("SEND_MESSAGE", took, None);
                self.metrics.produced(&self.group, r.status.as_str(), 1);
            }
            Err(e) => {
                let e = BrokerError::of(e);
                self.metrics.broker_call("SEND_MESSAGE", took, Some(&e));
                self.metrics
                    .produced(&self.group, produce_status(&Err(&e)), 1);
            }
        }
        let r = result.map_err(|e| send_error(topic, e))?;
        Ok(Published {
            message_id: r.msg_id,
            body_md5,
            broker_name: r.queue.broker_name,
            queue_id: r.queue.queue_id,
            queue_offset: r.queue_offset,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(body: &str, tag: Option<&str>, props: Option<&str>) -> PublishRequest {
        PublishRequest {
            body: body.into(),
            tag: tag.map(Into::into),
            properties: props.map(Into::into),
        }
    }

    #[test]
    fn delay_levels_never_deliver_early() {
        assert_eq!(delay_level_for(Duration::ZERO), Some(1));
        assert_eq!(delay_level_for(Duration::from_secs(1)), Some(1));
        assert_eq!(delay_level_for(Duration::from_millis(1001)), Some(2));
        assert_eq!(delay_level_for(Duration::from_secs(61)), Some(6));
        assert_eq!(delay_level_for(Duration::from_secs(7200)), Some(18));
        assert_eq!(delay_level_for(Duration::from_secs(7201)), None);
    }

    #[test]
    fn md5_is_upper_hex_of_the_utf8_body() {
        assert_eq!(body_md5(b""), "D41D8CD98F00B204E9800998ECF8427E");
        assert_eq!(body_md5("hello <world> & 中文".as_bytes()).len(), 32);
        assert!(!body_md5(b"x").chars().any(|c| c.is_ascii_lowercase()));
    }

    #[test]
    fn messages_carry_tag_keys_properties_and_pick_queues_by_sharding_key() {
        let (m, p, sel) = build(
            "NS%T",
            req("b", Some("TagA"), Some("KEYS:k1|a:b|__SHARDINGKEY:s1|")),
            10,
        )
        .unwrap();
        assert_eq!(m.topic, "NS%T");
        assert_eq!(m.tags.as_deref(), Some("TagA"));
        assert_eq!(m.keys, vec!["k1"]);
        assert_eq!(m.properties.get("a"), Some("b"));
        assert_eq!(m.properties.get("__SHARDINGKEY"), Some("s1"));
        assert_eq!(p.sharding_key.as_deref(), Some("s1"));
        assert!(matches!(sel, QueueSelector::Key(k) if k == "s1"));
        let (_, _, sel) = build("T", req("b", None, None), 10).unwrap();
        assert!(matches!(sel, QueueSelector::RoundRobin));
    }

    #[test]
    fn transactional_oversized_and_bad_tags_are_refused() {
        let code = |r| build("T", r, 10).unwrap_err().code;
        assert_eq!(
            code(req("b", None, Some("__TransCheckT:10|"))),
            Code::InvalidArgument
        );
        assert_eq!(code(req("12345678901", None, None)), Code::InvalidArgument);
        assert_eq!(code(req("b", Some("a||b"), None)), Code::InvalidArgument);
        assert_eq!(
            code(req("b", Some(&"t".repeat(65)), None)),
            Code::InvalidArgument
        );
        assert!(build("T", req("1234567890", None, None), 10).is_ok());
    }

    #[test]
    fn unknown_topics_are_topic_not_exist() {
        let e = send_error("T", ClientError::TopicNotExist("T".into()));
        assert_eq!(e.code, Code::TopicNotExist);
        assert_eq!(e.code.status(), 404);
        let e = send_error(
            "T",
            ClientError::Timeout {
                addr: "a".into(),
                code: 310,
                timeout: Duration::from_secs(3),
            },
        );
        assert_eq!(e.code, Code::ServiceUnavailable);
    }
}
