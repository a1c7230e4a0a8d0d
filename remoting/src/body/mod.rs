//! JSON bodies (docs/protocol.md §10): routes, cluster info, heartbeats, lock/unlock, consumer
//! lists.
//!
//! Members are declared in alphabetical order because fastjson writes beans that way; with the
//! same order our output matches a Java peer's byte for byte (checked against the fixtures).

mod admin;
mod enums;
pub mod legacy;

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use admin::{
    Connection, ConsumerConnection, ConsumerOffsetWrapper, SubscriptionGroupConfig,
    SubscriptionGroupWrapper,
};
pub use enums::{ConsumeFromWhere, ConsumeType, MessageModel};
pub use legacy::repair_legacy_json;

use crate::error::BodyError;
use crate::message::tag::TagFilter;

/// Parses a body that may be strict or legacy fastjson JSON.
pub fn from_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, BodyError> {
    match serde_json::from_slice(body) {
        Ok(v) => Ok(v),
        Err(strict_err) => {
            let text = std::str::from_utf8(body).map_err(|_| BodyError::Json(strict_err))?;
            let repaired = repair_legacy_json(text);
            Ok(serde_json::from_str(&repaired)?)
        }
    }
}

/// Serializes a body as compact JSON in fastjson's member order.
pub fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing these plain structs cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

/// Queue permission bits (docs/protocol.md §10.1).
pub mod perm {
    /// The queue's messages may be prioritized.
    pub const PRIORITY: i32 = 8;
    /// The queues may be read.
    pub const READ: i32 = 4;
    /// The queues may be written.
    pub const WRITE: i32 = 2;
    /// The topic inherits the broker's permissions.
    pub const INHERIT: i32 = 1;
}

/// GET_ROUTEINFO_BY_TOPIC response.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicRouteData {
    /// Brokers serving the topic.
    #[serde(default)]
    pub broker_datas: Vec<BrokerData>,
    /// Filter servers per broker address (legacy).
    #[serde(default)]
    pub filter_server_table: BTreeMap<String, Vec<String>>,
    /// `broker:queues;...` for ordered topics; overrides `queue_datas` for sends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_topic_conf: Option<String>,
    /// Queues per broker.
    #[serde(default)]
    pub queue_datas: Vec<QueueData>,
    /// 5.x static-topic mapping; kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_queue_mapping_by_broker: Option<serde_json::Value>,
}

/// A broker set (one name, a master and its slaves) as routes and cluster info describe it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BrokerData {
    /// Broker id -> address; id 0 is the master.
    #[serde(default)]
    pub broker_addrs: BTreeMap<i64, String>,
    /// The broker name shared by master and slaves.
    #[serde(default)]
    pub broker_name: String,
    /// The cluster the broker belongs to.
    #[serde(default)]
    pub cluster: String,
    /// 5.x: a slave acts as master while the master is down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_acting_master: Option<bool>,
    /// 5.x: the broker's zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone_name: Option<String>,
}

impl BrokerData {
    /// The broker id of a master.
    pub const MASTER_ID: i64 = 0;

    /// The master's address, if the broker set has one.
    pub fn master_addr(&self) -> Option<&str> {
        self.broker_addrs.get(&Self::MASTER_ID).map(String::as_str)
    }
}

/// The queues one broker hosts for a topic.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueData {
    /// The broker hosting the queues.
    #[serde(default)]
    pub broker_name: String,
    /// Permission bits ([`perm`]).
    #[serde(default)]
    pub perm: i32,
    /// Queues consumers read.
    #[serde(default)]
    pub read_queue_nums: i32,
    /// Topic system flags (unit mode bits).
    #[serde(default)]
    pub topic_sys_flag: i32,
    /// Queues producers write.
    #[serde(default)]
    pub write_queue_nums: i32,
}

impl QueueData {
    /// Whether the queues may be read.
    pub fn readable(&self) -> bool {
        self.perm & perm::READ != 0
    }
    /// Whether the queues may be written.
    pub fn writable(&self) -> bool {
        self.perm & perm::WRITE != 0
    }
}

/// GET_BROKER_CLUSTER_INFO response (always legacy JSON on the wire).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterInfo {
    /// Broker sets by name.
    #[serde(default)]
    pub broker_addr_table: BTreeMap<String, BrokerData>,
    /// Broker names per cluster.
    #[serde(default)]
    pub cluster_addr_table: BTreeMap<String, Vec<String>>,
}

/// HEART_BEAT body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatData {
    /// `ip@instance` of the client.
    #[serde(rename = "clientID")]
    pub client_id: String,
    /// Consumer groups of the client.
    #[serde(default)]
    pub consumer_data_set: Vec<ConsumerData>,
    /// 5.x: lets the broker skip unchanged heartbeats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_fingerprint: Option<i32>,
    /// Producer groups of the client.
    #[serde(default)]
    pub producer_data_set: Vec<ProducerData>,
    /// 5.x: the consumer data carries no subscriptions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub without_sub: Option<bool>,
}

/// A producer group in a heartbeat.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProducerData {
    /// The group's name.
    pub group_name: String,
}

/// A consumer group in a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerData {
    /// Where a group without offsets starts.
    pub consume_from_where: ConsumeFromWhere,
    /// Pull (actively) or push (passively).
    pub consume_type: ConsumeType,
    /// The group's name.
    pub group_name: String,
    /// Clustering or broadcasting.
    pub message_model: MessageModel,
    /// What the group subscribes to.
    #[serde(default)]
    pub subscription_data_set: Vec<SubscriptionData>,
    /// Unit mode (for cross-unit topics).
    #[serde(default)]
    pub unit_mode: bool,
}

/// A subscription of a consumer group to one topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionData {
    /// Class filter mode (legacy).
    #[serde(default)]
    pub class_filter_mode: bool,
    /// Hash codes of `tags_set`, which the broker filters with.
    #[serde(default)]
    pub code_set: Vec<i32>,
    /// `TAG` or `SQL92`.
    #[serde(default = "default_expression_type")]
    pub expression_type: String,
    /// The expression as written (`*`, `A || B`).
    pub sub_string: String,
    /// The subscription's version (a timestamp).
    #[serde(deserialize_with = "enums::de_lenient_i64")]
    pub sub_version: i64,
    /// The tags of the expression.
    #[serde(default)]
    pub tags_set: Vec<String>,
    /// The topic.
    pub topic: String,
}

fn default_expression_type() -> String {
    "TAG".to_owned()
}

impl SubscriptionData {
    /// A TAG subscription with the hash codes the broker filters by (docs/protocol.md §12.4).
    pub fn tags(topic: impl Into<String>, expression: &str, sub_version: i64) -> Self {
        let filter = TagFilter::parse(expression);
        let tags_set = match &filter {
            TagFilter::All => Vec::new(),
            TagFilter::Tags(t) => t.clone(),
        };
        SubscriptionData {
            class_filter_mode: false,
            code_set: filter.codes(),
            expression_type: default_expression_type(),
            sub_string: filter.expression(),
            sub_version,
            tags_set,
            topic: topic.into(),
        }
    }
}

/// A queue: topic, broker name and queue id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageQueue {
    /// The broker hosting the queue.
    pub broker_name: String,
    /// The queue's number on that broker.
    pub queue_id: i32,
    /// The topic.
    pub topic: String,
}

impl MessageQueue {
    /// The queue `queue_id` of `topic` on `broker_name`.
    pub fn new(topic: impl Into<String>, broker_name: impl Into<String>, queue_id: i32) -> Self {
        MessageQueue {
            broker_name: broker_name.into(),
            queue_id,
            topic: topic.into(),
        }
    }
}

/// LOCK_BATCH_MQ and UNLOCK_BATCH_MQ request body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LockBatchRequestBody {
    /// The client taking or giving back the locks.
    pub client_id: String,
    /// The consumer group.
    pub consumer_group: String,
    /// The queues.
    #[serde(default)]
    pub mq_set: Vec<MessageQueue>,
    /// Lock on this broker only (5.x); rocketmq-rust 1.0 needs the member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub only_this_broker: Option<bool>,
}

/// UNLOCK_BATCH_MQ's body has the shape of LOCK_BATCH_MQ's.
pub type UnlockBatchRequestBody = LockBatchRequestBody;

/// LOCK_BATCH_MQ response: the requested queues now held by the caller.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockBatchResponseBody {
    /// The queues the broker locked for the client.
    #[serde(rename = "lockOKMQSet", default)]
    pub lock_ok_mq_set: Vec<MessageQueue>,
}

/// GET_CONSUMER_LIST_BY_GROUP response.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerListBody {
    /// Client ids of the group's consumers.
    #[serde(default)]
    pub consumer_id_list: Vec<String>,
}

/// GET_KVLIST_BY_NAMESPACE (219) response: one namespace of a name server's KV configuration
/// (docs/protocol.md §9.12).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvTable {
    /// Key -> value.
    #[serde(default)]
    pub table: BTreeMap<String, String>,
}

/// GET_ALL_TOPIC_LIST_FROM_NAMESERVER / GET_TOPICS_BY_CLUSTER response.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicList {
    /// The broker answering, when it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker_addr: Option<String>,
    /// The topics.
    #[serde(default)]
    pub topic_list: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_and_legacy_routes_parse_alike() {
        let strict = br#"{"brokerDatas":[{"brokerAddrs":{"0":"127.0.0.1:10911"},"brokerName":"broker-a","cluster":"DefaultCluster","enableActingMaster":false}],"filterServerTable":{},"queueDatas":[{"brokerName":"broker-a","perm":6,"readQueueNums":4,"topicSysFlag":0,"writeQueueNums":4}]}"#;
        let r: TopicRouteData = from_json(strict).unwrap();
        assert_eq!(r.broker_datas[0].master_addr(), Some("127.0.0.1:10911"));
        assert!(r.queue_datas[0].writable());
        // docs/protocol.md §10.1's example is exactly what we write back
        assert_eq!(to_json(&r), strict.to_vec());
        let legacy = br#"{"brokerDatas":[{"brokerAddrs":{0:"127.0.0.1:10911"},"brokerName":"broker-a","cluster":"DefaultCluster","enableActingMaster":false}],"filterServerTable":{},"queueDatas":[{"brokerName":"broker-a","perm":6,"readQueueNums":4,"topicSysFlag":0,"writeQueueNums":4}]}"#;
        assert_eq!(from_json::<TopicRouteData>(legacy).unwrap(), r);
        assert!(from_json::<TopicRouteData>(b"{0:").is_err());
    }

    #[test]
    fn kv_table_round_trips() {
        let text = br#"{"table":{"c1":"{\"v\":1}","c2":"x"}}"#;
        let t: KvTable = from_json(text).unwrap();
        assert_eq!(t.table["c1"], r#"{"v":1}"#);
        assert_eq!(to_json(&t), text.to_vec());
        assert!(from_json::<KvTable>(b"{}").unwrap().table.is_empty());
    }

    #[test]
    fn spec_heartbeat_example_round_trips() {
        let text = r#"{"clientID":"192.168.0.2@12345#2011827446416","consumerDataSet":[{"consumeFromWhere":"CONSUME_FROM_LAST_OFFSET","consumeType":"CONSUME_PASSIVELY","groupName":"CG_TEST","messageModel":"CLUSTERING","subscriptionDataSet":[{"classFilterMode":false,"codeSet":[2598919],"expressionType":"TAG","subString":"TagA","subVersion":1700000000000,"tagsSet":["TagA"],"topic":"TestTopic"},{"classFilterMode":false,"codeSet":[],"expressionType":"TAG","subString":"*","subVersion":1700000000001,"tagsSet":[],"topic":"%RETRY%CG_TEST"}],"unitMode":false}],"producerDataSet":[{"groupName":"CLIENT_INNER_PRODUCER"}]}"#;
        let h: HeartbeatData = from_json(text.as_bytes()).unwrap();
        assert_eq!(String::from_utf8(to_json(&h)).unwrap(), text);
        assert_eq!(
            h.consumer_data_set[0].subscription_data_set[0],
            SubscriptionData::tags("TestTopic", "TagA", 1_700_000_000_000)
        );
    }
}
