//! Name-server and administration headers (docs/protocol.md §9.1, §9.10).

use super::value::TopicFilterType;

command_header! {
    /// GET_ROUTEINFO_BY_TOPIC (105).
    GetRouteInfoRequestHeader {
        topic: String = "topic",
        /// Since 4.9.4: ask for strict JSON even when the request version is below 401.
        accept_standard_json_only: Option<bool> = "acceptStandardJsonOnly",
    }

    /// GET_KV_CONFIG (101).
    GetKvConfigRequestHeader {
        namespace: String = "namespace",
        key: String = "key",
    }

    /// Response to GET_KV_CONFIG on SUCCESS.
    GetKvConfigResponseHeader {
        value: Option<String> = "value",
    }

    /// PUT_KV_CONFIG (100), to one name server: stores `value` under `namespace`/`key`
    /// (replacing it) and persists the table; answered SUCCESS with no body
    /// (docs/protocol.md §9.12).
    PutKvConfigRequestHeader {
        namespace: String = "namespace",
        key: String = "key",
        value: String = "value",
    }

    /// DELETE_KV_CONFIG (102), to one name server: SUCCESS whether or not the key existed.
    DeleteKvConfigRequestHeader {
        namespace: String = "namespace",
        key: String = "key",
    }

    /// GET_KVLIST_BY_NAMESPACE (219): answered with a `KvTable` body, or QUERY_NOT_FOUND (22)
    /// when the namespace holds no key.
    GetKvListByNamespaceRequestHeader {
        namespace: String = "namespace",
    }

    /// UPDATE_AND_CREATE_TOPIC (17), sent to each broker that should host the topic.
    UpdateAndCreateTopicRequestHeader {
        topic: String = "topic",
        /// Informational; Java sends `TBW102`.
        default_topic: String = "defaultTopic",
        read_queue_nums: i32 = "readQueueNums",
        write_queue_nums: i32 = "writeQueueNums",
        /// 2 write, 4 read, 1 inherit, 8 priority.
        perm: i32 = "perm",
        topic_filter_type: TopicFilterType = "topicFilterType",
        topic_sys_flag: Option<i32> = "topicSysFlag",
        order: bool = "order",
        /// 5.x: `+key=value` / `-key`, comma-separated.
        attributes: Option<String> = "attributes",
        force: Option<bool> = "force",
    }

    /// DELETE_TOPIC_IN_BROKER (215).
    DeleteTopicRequestHeader {
        topic: String = "topic",
    }

    /// DELETE_TOPIC_IN_NAMESRV (216).
    DeleteTopicFromNamesrvRequestHeader {
        topic: String = "topic",
        /// 5.x: restrict the deletion to one cluster.
        cluster_name: Option<String> = "clusterName",
    }
}

command_header! {
    /// GET_CONSUMER_CONNECTION_LIST (203): the live connections of a consumer group on a broker.
    /// Answered with a `ConsumerConnection` body, or CONSUMER_NOT_ONLINE (206) for an empty group.
    GetConsumerConnectionListRequestHeader {
        consumer_group: String = "consumerGroup",
    }

    /// GET_TOPICS_BY_CLUSTER (224), to a name server; answered with a `TopicList` body.
    GetTopicsByClusterRequestHeader {
        cluster: String = "cluster",
    }
}

command_header! {
    /// DELETE_SUBSCRIPTIONGROUP (207), to each broker of the group.
    DeleteSubscriptionGroupRequestHeader {
        group_name: String = "groupName",
        /// 5.x: also drop the group's committed offsets.
        clean_offset: Option<bool> = "cleanOffset",
    }
}
