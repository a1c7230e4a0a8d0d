//! JSON bodies (spec 12): routes, cluster info, heartbeats, lock/unlock, consumer lists.
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

/// Queue permission bits (spec 12.1).
pub mod perm {
    pub const PRIORITY: i32 = 8;
    pub const READ: i32 = 4;
    pub const WRITE: i32 = 2;
    pub const INHERIT: i32 = 1;
}

/// GET_ROUTEINFO_BY_TOPIC response.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicRouteData {
    #[serde(default)]
    pub broker_datas: Vec<BrokerData>,
    #[serde(default)]
    pub filter_server_table: BTreeMap<String, Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_topic_conf: Option<String>,
    #[serde(default)]
    pub queue_datas: Vec<QueueData>,
    /// 5.x static-topic mapping; kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_queue_mapping_by_broker: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BrokerData {
    /// Broker id -> address; id 0 is the master.
    #[serde(default)]
    pub broker_addrs: BTreeMap<i64, String>,
    #[serde(default)]
    pub broker_name: String,
    #[serde(default)]
    pub cluster: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_acting_master: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone_name: Option<String>,
}

impl BrokerData {
    pub const MASTER_ID: i64 = 0;

    pub fn master_addr(&self) -> Option<&str> {
        self.broker_addrs.get(&Self::MASTER_ID).map(String::as_str)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueData {
    #[serde(default)]
    pub broker_name: String,
    #[serde(default)]
    pub perm: i32,
    #[serde(default)]
    pub read_queue_nums: i32,
    #[serde(default)]
    pub topic_sys_flag: i32,
    #[serde(default)]
    pub write_queue_nums: i32,
}

impl QueueData {
    pub fn readable(&self) -> bool {
        self.perm & perm::READ != 0
    }
    pub fn writable(&self) -> bool {
        self.perm & perm::WRITE != 0
    }
}

/// GET_BROKER_CLUSTER_INFO response (always legacy JSON on the wire).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterInfo {
    #[serde(default)]
    pub broker_addr_table: BTreeMap<String, BrokerData>,
    #[serde(default)]
    pub cluster_addr_table: BTreeMap<String, Vec<String>>,
}

/// HEART_BEAT body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatData {
    #[serde(rename = "clientID")]
    pub client_id: String,
    #[serde(default)]
    pub consumer_data_set: Vec<ConsumerData>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_fingerprint: Option<i32>,
    #[serde(default)]
    pub producer_data_set: Vec<ProducerData>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub without_sub: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProducerData {
    pub group_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerData {
    pub consume_from_where: ConsumeFromWhere,
    pub consume_type: ConsumeType,
    pub group_name: String,
    pub message_model: MessageModel,
    #[serde(default)]
    pub subscription_data_set: Vec<SubscriptionData>,
    #[serde(default)]
    pub unit_mode: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionData {
    #[serde(default)]
    pub class_filter_mode: bool,
    #[serde(default)]
    pub code_set: Vec<i32>,
    #[serde(default = "default_expression_type")]
    pub expression_type: String,
    pub sub_string: String,
    #[serde(deserialize_with = "enums::de_lenient_i64")]
    pub sub_version: i64,
    #[serde(default)]
    pub tags_set: Vec<String>,
    pub topic: String,
}

fn default_expression_type() -> String {
    "TAG".to_owned()
}

impl SubscriptionData {
    /// A TAG subscription with the hash codes the broker filters by (spec 16.4).
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
    pub broker_name: String,
    pub queue_id: i32,
    pub topic: String,
}

impl MessageQueue {
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
    pub client_id: String,
    pub consumer_group: String,
    #[serde(default)]
    pub mq_set: Vec<MessageQueue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub only_this_broker: Option<bool>,
}

pub type UnlockBatchRequestBody = LockBatchRequestBody;

/// LOCK_BATCH_MQ response: the requested queues now held by the caller.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockBatchResponseBody {
    #[serde(rename = "lockOKMQSet", default)]
    pub lock_ok_mq_set: Vec<MessageQueue>,
}

/// GET_CONSUMER_LIST_BY_GROUP response.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerListBody {
    #[serde(default)]
    pub consumer_id_list: Vec<String>,
}

/// GET_ALL_TOPIC_LIST_FROM_NAMESERVER / GET_TOPICS_BY_CLUSTER response.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicList {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker_addr: Option<String>,
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
        // spec 12.1's example is exactly what we write back
        assert_eq!(to_json(&r), strict.to_vec());
        let legacy = br#"{"brokerDatas":[{"brokerAddrs":{0:"127.0.0.1:10911"},"brokerName":"broker-a","cluster":"DefaultCluster","enableActingMaster":false}],"filterServerTable":{},"queueDatas":[{"brokerName":"broker-a","perm":6,"readQueueNums":4,"topicSysFlag":0,"writeQueueNums":4}]}"#;
        assert_eq!(from_json::<TopicRouteData>(legacy).unwrap(), r);
        assert!(from_json::<TopicRouteData>(b"{0:").is_err());
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
