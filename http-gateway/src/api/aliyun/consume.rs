//! A delivered RocketMQ message as the SDKs expect it in a ConsumeMessage answer. The
//! delivery bookkeeping (handles, invisibility, counts) comes from the gateway engine; this is
//! only the conversion.

use rmq_remoting::message::MessageExt;

use super::props;
use super::publish::body_md5;
use super::xml::ConsumedMessage;

/// One delivery of a message: what the engine knows beyond the message itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The `ReceiptHandle` that acks this delivery (a new one on every redelivery).
    pub receipt_handle: String,
    /// When the message becomes visible again unless acked (ms since the epoch).
    pub next_consume_time: i64,
    /// When it was first handed out (ms since the epoch).
    pub first_consume_time: i64,
    /// 1 on the first delivery.
    pub consumed_times: u32,
}

/// The message as the SDKs read it: `MessageId` is the id the publish answered (the unique
/// key), `PublishTime` the broker's store time, the body as text. Bodies that are not UTF-8
/// (possible from plain RocketMQ producers) are converted lossily, since the API carries text.
pub fn to_consumed(m: &MessageExt, d: Delivery) -> ConsumedMessage {
    let body = String::from_utf8_lossy(&m.body).into_owned();
    ConsumedMessage {
        message_id: m.msg_id(),
        receipt_handle: d.receipt_handle,
        body_md5: body_md5(body.as_bytes()),
        body,
        publish_time: m.store_timestamp,
        next_consume_time: d.next_consume_time,
        first_consume_time: d.first_consume_time,
        consumed_times: d.consumed_times,
        tag: m.tags().map(str::to_owned),
        properties: Some(props::encode(&m.properties)).filter(|p| !p.is_empty()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use rmq_remoting::message::{keys, Properties};

    fn stored(body: &'static [u8], props: Properties) -> MessageExt {
        let host = "127.0.0.1:10911".parse().unwrap();
        MessageExt {
            store_size: 0,
            version: rmq_remoting::message::stored::MessageVersion::V1,
            body_crc: 0,
            queue_id: 1,
            flag: 0,
            queue_offset: 7,
            commit_log_offset: 1234,
            sys_flag: 0,
            born_timestamp: 1000,
            born_host: host,
            store_timestamp: 1001,
            store_host: host,
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            topic: "NS%T".into(),
            properties: props,
            body: Bytes::from_static(body),
            stored_body: Bytes::from_static(body),
        }
    }

    #[test]
    fn fields_the_sdks_read() {
        let mut p = Properties::new();
        p.insert(keys::TAGS, "TagA");
        p.insert(keys::KEYS, "k1");
        p.insert(keys::UNIQ_KEY, "7F0000010001");
        p.insert("a", "b");
        p.insert("__STARTDELIVERTIME", "5");
        let d = Delivery {
            receipt_handle: "RH".into(),
            next_consume_time: 3,
            first_consume_time: 2,
            consumed_times: 1,
        };
        let c = to_consumed(&stored("hello <中文>".as_bytes(), p), d.clone());
        assert_eq!(c.message_id, "7F0000010001");
        assert_eq!(c.body, "hello <中文>");
        assert_eq!(c.body_md5, body_md5("hello <中文>".as_bytes()));
        assert_eq!(c.publish_time, 1001);
        assert_eq!(c.tag.as_deref(), Some("TagA"));
        assert_eq!(
            c.properties.as_deref(),
            Some("KEYS:k1|a:b|__STARTDELIVERTIME:5|")
        );
        assert_eq!(
            (c.next_consume_time, c.first_consume_time, c.consumed_times),
            (3, 2, 1)
        );
        // Not UTF-8, no properties, no unique key.
        let c = to_consumed(&stored(b"\xff\xfe", Properties::new()), d);
        assert_eq!(c.body, "\u{FFFD}\u{FFFD}");
        assert_eq!(c.properties, None);
        assert_eq!(c.tag, None);
        assert!(!c.message_id.is_empty());
    }
}
