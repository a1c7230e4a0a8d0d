//! Requests a broker sends to a client on the client's own connection (docs/protocol.md §9.11).

command_header! {
    /// CHECK_TRANSACTION_STATE (39), one-way; the body is the half message.
    CheckTransactionStateRequestHeader {
        tran_state_table_offset: i64 = "tranStateTableOffset",
        commit_log_offset: i64 = "commitLogOffset",
        /// The message's `UNIQ_KEY`.
        msg_id: Option<String> = "msgId",
        transaction_id: Option<String> = "transactionId",
        offset_msg_id: Option<String> = "offsetMsgId",
        topic: Option<String> = "topic",
        bname: Option<String> = "bname",
    }

    /// NOTIFY_CONSUMER_IDS_CHANGED (40), one-way: rebalance this group now.
    NotifyConsumerIdsChangedRequestHeader {
        consumer_group: String = "consumerGroup",
    }

    /// RESET_CONSUMER_CLIENT_OFFSET (220), one-way; the body holds the offset table. Also the
    /// header of INVOKE_BROKER_TO_RESET_OFFSET (222), which an admin sends to a broker.
    ResetOffsetRequestHeader {
        topic: String = "topic",
        group: String = "group",
        timestamp: i64 = "timestamp",
        is_force: bool = "isForce",
        /// 5.x: one queue only (-1 = all).
        queue_id: Option<i32> = "queueId",
        offset: Option<i64> = "offset",
    }

    /// GET_CONSUMER_STATUS_FROM_CLIENT (221).
    GetConsumerStatusRequestHeader {
        topic: String = "topic",
        group: String = "group",
        client_addr: Option<String> = "clientAddr",
    }

    /// GET_CONSUMER_RUNNING_INFO (307).
    GetConsumerRunningInfoRequestHeader {
        consumer_group: String = "consumerGroup",
        client_id: String = "clientId",
        // A primitive in Java, so always sent by a Java broker.
        jstack_enable: bool = "jstackEnable" default false,
    }

    /// CONSUME_MESSAGE_DIRECTLY (309); the body is one stored message. Only the group is
    /// required in Java (`@CFNotNull`); the rest are nullable there.
    ConsumeMessageDirectlyResultRequestHeader {
        consumer_group: String = "consumerGroup",
        client_id: Option<String> = "clientId",
        msg_id: Option<String> = "msgId",
        broker_name: Option<String> = "brokerName",
        topic: Option<String> = "topic",
        topic_sys_flag: Option<i32> = "topicSysFlag",
        group_sys_flag: Option<i32> = "groupSysFlag",
    }
}
