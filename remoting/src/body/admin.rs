//! Administration bodies (docs/protocol.md §10): subscription-group configurations and consumer connections.
//! Parsing is lenient (absent members take Java's defaults; unknown ones are kept), because
//! 4.9 and 5.x brokers write different member sets.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{ConsumeFromWhere, ConsumeType, MessageModel, SubscriptionData};

/// A consumer group's broker-side settings: the UPDATE_AND_CREATE_SUBSCRIPTIONGROUP (200)
/// request body, and the values of GET_ALL_SUBSCRIPTIONGROUP_CONFIG (201).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SubscriptionGroupConfig {
    /// Broker id to consume from (0 = master).
    pub broker_id: i64,
    /// Broadcast consumption allowed.
    pub consume_broadcast_enable: bool,
    /// Consumption allowed; `false` pauses the group at the broker.
    pub consume_enable: bool,
    /// A new consumer may start from the queue's minimum offset.
    pub consume_from_min_enable: bool,
    /// 5.x: the group consumes orderly (POP consumers honour it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consume_message_orderly: Option<bool>,
    /// The consumer group.
    pub group_name: String,
    /// System flag bits of the group.
    pub group_sys_flag: i32,
    /// The broker sends NOTIFY_CONSUMER_IDS_CHANGED when members come and go.
    pub notify_consumer_ids_changed_enable: bool,
    /// Attempts before a message goes to the group's DLQ.
    pub retry_max_times: i32,
    /// Queues of the group's `%RETRY%` topic.
    pub retry_queue_nums: i32,
    /// Broker id to pull from when the master lags behind.
    pub which_broker_when_consume_slowly: i64,
    /// Members of the other line (`groupRetryPolicy`, `attributes`, ...), kept as sent.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

impl Default for SubscriptionGroupConfig {
    /// Java's defaults.
    fn default() -> Self {
        SubscriptionGroupConfig {
            broker_id: 0,
            consume_broadcast_enable: true,
            consume_enable: true,
            consume_from_min_enable: true,
            consume_message_orderly: None,
            group_name: String::new(),
            group_sys_flag: 0,
            notify_consumer_ids_changed_enable: true,
            retry_max_times: 16,
            retry_queue_nums: 1,
            which_broker_when_consume_slowly: 1,
            other: BTreeMap::new(),
        }
    }
}

impl SubscriptionGroupConfig {
    /// Java's defaults for `group`.
    pub fn new(group: impl Into<String>) -> Self {
        SubscriptionGroupConfig {
            group_name: group.into(),
            ..Default::default()
        }
    }
}

/// GET_ALL_SUBSCRIPTIONGROUP_CONFIG (201) response body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionGroupWrapper {
    /// Group name -> configuration.
    #[serde(default)]
    pub subscription_group_table: BTreeMap<String, SubscriptionGroupConfig>,
    /// Opaque version stamp of the table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_version: Option<serde_json::Value>,
}

/// One client connection as a broker records it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Connection {
    /// Remote `ip:port` of the connection.
    pub client_addr: String,
    /// The client id (`ip@instance`).
    pub client_id: String,
    /// The `LanguageCode` name the client announced (`JAVA`, `RUST`, ...).
    pub language: String,
    /// The client's version ordinal.
    pub version: i32,
}

/// GET_CONSUMER_CONNECTION_LIST (203) response body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerConnection {
    /// The group's live connections.
    #[serde(default)]
    pub connection_set: Vec<Connection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Where a new consumer of the group starts.
    pub consume_from_where: Option<ConsumeFromWhere>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Push or pull.
    pub consume_type: Option<ConsumeType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Clustering or broadcasting.
    pub message_model: Option<MessageModel>,
    /// Topic -> subscription.
    #[serde(default)]
    pub subscription_table: BTreeMap<String, SubscriptionData>,
}

/// GET_ALL_CONSUMER_OFFSET (43) response body: every committed offset of a broker.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerOffsetWrapper {
    /// `topic@group` -> queue id -> next offset to consume (numeric keys unquoted in 4.9).
    #[serde(default)]
    pub offset_table: BTreeMap<String, BTreeMap<i32, i64>>,
}

impl ConsumerOffsetWrapper {
    /// The topics `group` has committed offsets of.
    pub fn topics_of(&self, group: &str) -> Vec<String> {
        self.offset_table
            .keys()
            .filter_map(|k| k.rsplit_once('@'))
            .filter(|(_, g)| *g == group)
            .map(|(t, _)| t.to_owned())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::from_json;

    #[test]
    fn subscription_group_defaults_and_round_trip() {
        // A 4.9.8 broker's member set, in fastjson order.
        let text = r#"{"brokerId":0,"consumeBroadcastEnable":true,"consumeEnable":true,"consumeFromMinEnable":true,"groupName":"G","groupSysFlag":0,"notifyConsumerIdsChangedEnable":true,"retryMaxTimes":16,"retryQueueNums":1,"whichBrokerWhenConsumeSlowly":1}"#;
        let c: SubscriptionGroupConfig = from_json(text.as_bytes()).unwrap();
        assert_eq!(c, SubscriptionGroupConfig::new("G"));
        assert_eq!(String::from_utf8(crate::body::to_json(&c)).unwrap(), text);
        // 5.x members survive a round trip; absent ones take Java's defaults.
        let c: SubscriptionGroupConfig = from_json(
            br#"{"groupName":"H","groupRetryPolicy":{"type":"CUSTOMIZED"},"retryMaxTimes":3}"#,
        )
        .unwrap();
        assert_eq!(c.retry_max_times, 3);
        assert!(c.consume_enable);
        assert!(c.other.contains_key("groupRetryPolicy"));
    }

    #[test]
    fn consumer_connection_parses() {
        let text = r#"{"connectionSet":[{"clientAddr":"127.0.0.1:50000","clientId":"127.0.0.1@1#2","language":"JAVA","version":409}],"consumeFromWhere":"CONSUME_FROM_LAST_OFFSET","consumeType":"CONSUME_ACTIVELY","messageModel":"CLUSTERING","subscriptionTable":{"T":{"classFilterMode":false,"codeSet":[],"expressionType":"TAG","subString":"*","subVersion":1,"tagsSet":[],"topic":"T"}}}"#;
        let c: ConsumerConnection = from_json(text.as_bytes()).unwrap();
        assert_eq!(c.connection_set[0].client_id, "127.0.0.1@1#2");
        assert_eq!(c.message_model, Some(MessageModel::Clustering));
        assert_eq!(c.subscription_table["T"].sub_string, "*");
        let w: SubscriptionGroupWrapper = from_json(
            br#"{"dataVersion":{"counter":1,"timestamp":2},"subscriptionGroupTable":{"G":{"groupName":"G"}}}"#,
        )
        .unwrap();
        assert_eq!(w.subscription_group_table["G"].group_name, "G");
        let o: ConsumerOffsetWrapper =
            from_json(br#"{"offsetTable":{"T@G":{0:5,1:7},"U@H":{0:1},"%RETRY%G@G":{0:0}}}"#)
                .unwrap();
        assert_eq!(o.offset_table["T@G"][&1], 7);
        assert_eq!(o.topics_of("G"), vec!["%RETRY%G", "T"]);
    }
}
