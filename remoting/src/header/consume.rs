//! Consumer headers: pulling, offsets, lookups, unregistering and send-back
//! (docs/protocol.md §9.4-§9.9).

use super::value::BoundaryType;

command_header! {
    /// PULL_MESSAGE (11) and LITE_PULL_MESSAGE (361). Written in the order of Java's binary codec.
    PullMessageRequestHeader {
        consumer_group: String = "consumerGroup",
        topic: String = "topic",
        queue_id: i32 = "queueId",
        /// Logical offset of the first wanted message.
        queue_offset: i64 = "queueOffset",
        max_msg_nums: i32 = "maxMsgNums",
        /// `FLAG_*` bits (docs/protocol.md §12.1).
        sys_flag: i32 = "sysFlag",
        /// Committed offset, stored by the broker when `FLAG_COMMIT_OFFSET` is set.
        commit_offset: i64 = "commitOffset",
        /// Long-poll hold time when `FLAG_SUSPEND` is set.
        suspend_timeout_millis: i64 = "suspendTimeoutMillis",
        /// Filter expression, used when `FLAG_SUBSCRIPTION` is set.
        subscription: Option<String> = "subscription",
        sub_version: i64 = "subVersion",
        /// `TAG` (the broker's default when absent) or `SQL92`.
        expression_type: Option<String> = "expressionType",
        /// 5.x: byte budget of the response.
        max_msg_bytes: Option<i32> = "maxMsgBytes",
        /// 5.x: -1 SDK, 0..2 proxy variants.
        request_source: Option<i32> = "requestSource",
        /// 5.x, spelled as in Java.
        proxy_froward_client_id: Option<String> = "proxyFrowardClientId",
        bname: Option<String> = "bname",
    }

    /// Response to PULL_MESSAGE on SUCCESS, PULL_NOT_FOUND, PULL_RETRY_IMMEDIATELY and
    /// PULL_OFFSET_MOVED; the remark carries the store status.
    PullMessageResponseHeader {
        /// Broker id to pull this queue from next time (0 = master).
        suggest_which_broker_id: i64 = "suggestWhichBrokerId",
        next_begin_offset: i64 = "nextBeginOffset",
        min_offset: i64 = "minOffset",
        /// One past the last stored message.
        max_offset: i64 = "maxOffset",
        /// 5.x static topics: add to each message's queue offset.
        offset_delta: Option<i64> = "offsetDelta",
        topic_sys_flag: Option<i32> = "topicSysFlag",
        group_sys_flag: Option<i32> = "groupSysFlag",
        /// 5.x: why NO_PERMISSION was answered.
        forbidden_type: Option<i32> = "forbiddenType",
    }

    /// QUERY_CONSUMER_OFFSET (14).
    QueryConsumerOffsetRequestHeader {
        consumer_group: String = "consumerGroup",
        topic: String = "topic",
        queue_id: i32 = "queueId",
        /// 5.x: `false` makes the broker answer QUERY_NOT_FOUND instead of inventing offset 0.
        set_zero_if_not_found: Option<bool> = "setZeroIfNotFound",
        bname: Option<String> = "bname",
    }

    /// Response to QUERY_CONSUMER_OFFSET on SUCCESS.
    QueryConsumerOffsetResponseHeader {
        offset: i64 = "offset",
    }

    /// UPDATE_CONSUMER_OFFSET (15); no response fields.
    UpdateConsumerOffsetRequestHeader {
        consumer_group: String = "consumerGroup",
        topic: String = "topic",
        queue_id: i32 = "queueId",
        /// Next offset to consume (last consumed + 1).
        commit_offset: i64 = "commitOffset",
        bname: Option<String> = "bname",
    }

    /// GET_MAX_OFFSET (30).
    GetMaxOffsetRequestHeader {
        topic: String = "topic",
        queue_id: i32 = "queueId",
        // A primitive defaulting to true in 5.x, absent from 4.9: kept optional so a 4.9-style
        // request is reproduced exactly.
        committed: Option<bool> = "committed",
        bname: Option<String> = "bname",
    }

    /// Response to GET_MAX_OFFSET: one past the last message.
    GetMaxOffsetResponseHeader {
        offset: i64 = "offset",
    }

    /// GET_MIN_OFFSET (31).
    GetMinOffsetRequestHeader {
        topic: String = "topic",
        queue_id: i32 = "queueId",
        bname: Option<String> = "bname",
    }

    /// Response to GET_MIN_OFFSET.
    GetMinOffsetResponseHeader {
        offset: i64 = "offset",
    }

    /// GET_EARLIEST_MSG_STORETIME (32).
    GetEarliestMsgStoretimeRequestHeader {
        topic: String = "topic",
        queue_id: i32 = "queueId",
        bname: Option<String> = "bname",
    }

    /// Response to GET_EARLIEST_MSG_STORETIME: store time of the earliest message.
    GetEarliestMsgStoretimeResponseHeader {
        timestamp: i64 = "timestamp",
    }

    /// SEARCH_OFFSET_BY_TIMESTAMP (29).
    SearchOffsetRequestHeader {
        topic: String = "topic",
        queue_id: i32 = "queueId",
        /// Compared with store (not born) timestamps.
        timestamp: i64 = "timestamp",
        /// 5.x only; 4.9.8 answers the nearest offset whatever this says.
        boundary_type: Option<BoundaryType> = "boundaryType",
        bname: Option<String> = "bname",
    }

    /// Response to SEARCH_OFFSET_BY_TIMESTAMP.
    SearchOffsetResponseHeader {
        offset: i64 = "offset",
    }

    /// VIEW_MESSAGE_BY_ID (33).
    ViewMessageRequestHeader {
        /// Commit-log (physical) offset, from the offset message id.
        offset: i64 = "offset",
        topic: Option<String> = "topic",
    }

    /// QUERY_MESSAGE (12).
    QueryMessageRequestHeader {
        topic: String = "topic",
        /// A `KEYS` token, or a `UNIQ_KEY` when `unique_key_query` is set.
        key: String = "key",
        max_num: i32 = "maxNum",
        begin_timestamp: i64 = "beginTimestamp",
        end_timestamp: i64 = "endTimestamp",
        // Not a Java header field: the client adds it to every query, so it is always written.
        unique_key_query: bool = "_UNIQUE_KEY_QUERY" default false,
    }

    /// Response to QUERY_MESSAGE on SUCCESS.
    QueryMessageResponseHeader {
        index_last_update_timestamp: i64 = "indexLastUpdateTimestamp",
        index_last_update_phyoffset: i64 = "indexLastUpdatePhyoffset",
    }

    /// UNREGISTER_CLIENT (35); one request per group.
    UnregisterClientRequestHeader {
        client_id: String = "clientID",
        producer_group: Option<String> = "producerGroup",
        consumer_group: Option<String> = "consumerGroup",
    }

    /// CONSUMER_SEND_MSG_BACK (36).
    ConsumerSendMsgBackRequestHeader {
        /// Commit-log offset of the failed message.
        offset: i64 = "offset",
        group: String = "group",
        /// 0 = broker chooses, > 0 explicit level, < 0 straight to the DLQ.
        delay_level: i32 = "delayLevel",
        origin_msg_id: Option<String> = "originMsgId",
        origin_topic: Option<String> = "originTopic",
        // A primitive: Java always sends it, the C++ client does not.
        unit_mode: bool = "unitMode" default false,
        /// Honoured by brokers for request version >= 121.
        max_reconsume_times: Option<i32> = "maxReconsumeTimes",
        bname: Option<String> = "bname",
    }

    /// GET_CONSUMER_LIST_BY_GROUP (38).
    GetConsumerListByGroupRequestHeader {
        consumer_group: String = "consumerGroup",
    }
}

impl PullMessageRequestHeader {
    /// Store `commit_offset` as the group's committed offset (masters only).
    pub const FLAG_COMMIT_OFFSET: i32 = 0x1;
    /// Allow long polling for `suspend_timeout_millis`.
    pub const FLAG_SUSPEND: i32 = 0x2;
    /// Filter with `subscription` instead of the heartbeat's subscription.
    pub const FLAG_SUBSCRIPTION: i32 = 0x4;
    /// Legacy filter servers; do not use.
    pub const FLAG_CLASS_FILTER: i32 = 0x8;
    /// Lite-pull consumer (5.x Java then uses LITE_PULL_MESSAGE).
    pub const FLAG_LITE_PULL_MESSAGE: i32 = 0x10;
}
