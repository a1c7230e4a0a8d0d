//! Producer headers: SEND_MESSAGE (10), SEND_MESSAGE_V2 (310), SEND_BATCH_MESSAGE (320) and
//! END_TRANSACTION (37) (docs/protocol.md §9.2).

/// Declares the long-name and short-name send headers from one field list (`long` / `short`), so
/// the two can never drift apart, plus lossless conversions between them.
macro_rules! send_headers {
    (
        $(#[$v1meta:meta])* $v1:ident;
        $(#[$v2meta:meta])* $v2:ident;
        $( $(#[$fmeta:meta])* $field:ident : $ty:ty = $long:literal / $short:literal
            $(default $default:expr)? ),* $(,)?
    ) => {
        command_header! {
            $(#[$v1meta])*
            $v1 { $( $(#[$fmeta])* $field: $ty = $long $(default $default)? ),* }

            $(#[$v2meta])*
            $v2 { $( $(#[$fmeta])* $field: $ty = $short $(default $default)? ),* }
        }

        impl From<$v1> for $v2 {
            fn from(h: $v1) -> Self {
                $v2 { $( $field: h.$field ),* }
            }
        }

        impl From<$v2> for $v1 {
            fn from(h: $v2) -> Self {
                $v1 { $( $field: h.$field ),* }
            }
        }
    };
}

send_headers! {
    /// SEND_MESSAGE (10) and SEND_REPLY_MESSAGE (324), with Java's long field names. The C++
    /// clients use this form.
    SendMessageRequestHeader;
    /// SEND_MESSAGE_V2 (310), SEND_BATCH_MESSAGE (320, with `batch` = true) and
    /// SEND_REPLY_MESSAGE_V2 (325): the same fields under the one-letter keys `a`..`n` that Java
    /// sends by default. Written in `a`..`n` order, as Java's binary codec does.
    SendMessageRequestHeaderV2;
    producer_group: String = "producerGroup" / "a",
    topic: String = "topic" / "b",
    /// Template for broker-side auto-creation; Java sends `TBW102`.
    default_topic: String = "defaultTopic" / "c",
    default_topic_queue_nums: i32 = "defaultTopicQueueNums" / "d",
    /// Negative lets the broker pick a writable queue.
    queue_id: i32 = "queueId" / "e",
    /// Message sysFlag (docs/protocol.md §11.3): compression and transaction bits.
    sys_flag: i32 = "sysFlag" / "f",
    born_timestamp: i64 = "bornTimestamp" / "g",
    /// The application's message flag, opaque to RocketMQ.
    flag: i32 = "flag" / "h",
    /// Encoded message properties (docs/protocol.md §11.5).
    properties: Option<String> = "properties" / "i",
    reconsume_times: Option<i32> = "reconsumeTimes" / "j",
    // A primitive in 4.9, so Java always sends it; other clients may not.
    unit_mode: bool = "unitMode" / "k" default false,
    max_reconsume_times: Option<i32> = "maxReconsumeTimes" / "l",
    batch: bool = "batch" / "m" default false,
    /// Broker name the queue belongs to (since 4.9.5).
    bname: Option<String> = "bname" / "n",
}

command_header! {
    /// Response to the send family, on SUCCESS and on the "stored but not replicated/flushed"
    /// codes 10, 11 and 12.
    SendMessageResponseHeader {
        /// Offset message id; for a batch, the ids of all messages joined with `,`.
        msg_id: String = "msgId",
        queue_id: i32 = "queueId",
        /// For a batch: the offset of the first message.
        queue_offset: i64 = "queueOffset",
        transaction_id: Option<String> = "transactionId",
        batch_uniq_id: Option<String> = "batchUniqId",
        recall_handle: Option<String> = "recallHandle",
        // Not header-class fields: the broker adds them to the map after encoding the header,
        // which is why they come last on the wire.
        trace_on: Option<bool> = "TRACE_ON",
        msg_region: Option<String> = "MSG_REGION",
    }

    /// END_TRANSACTION (37), one-way; also the answer to CHECK_TRANSACTION_STATE.
    EndTransactionRequestHeader {
        /// Must equal the half message's `PGROUP` property.
        producer_group: String = "producerGroup",
        /// The half message's queue offset.
        tran_state_table_offset: i64 = "tranStateTableOffset",
        /// The half message's commit-log offset.
        commit_log_offset: i64 = "commitLogOffset",
        /// One of the `COMMIT`/`ROLLBACK`/`UNKNOWN` constants.
        commit_or_rollback: i32 = "commitOrRollback",
        from_transaction_check: Option<bool> = "fromTransactionCheck",
        /// The message's `UNIQ_KEY`.
        msg_id: String = "msgId",
        transaction_id: Option<String> = "transactionId",
        topic: Option<String> = "topic",
        bname: Option<String> = "bname",
    }
}

impl EndTransactionRequestHeader {
    /// `commitOrRollback`: the local transaction state is not known yet.
    pub const UNKNOWN: i32 = 0;
    /// End a transaction by committing its half message.
    pub const COMMIT: i32 = 8;
    /// End a transaction by rolling its half message back.
    pub const ROLLBACK: i32 = 12;
}
