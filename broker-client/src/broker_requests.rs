//! Every request `MQClient` sends to brokers: heartbeats and unregistration, pull, offsets,
//! consumer lists, queue locks, send-back, view and query. The producer's sends live with the
//! producer; the gateway's lock table and the high-level pull consumer build on these.

use std::time::Duration;

use rmq_remoting::body::{
    self, ConsumerListBody, LockBatchRequestBody, LockBatchResponseBody, MessageQueue,
};
use rmq_remoting::header::{
    CommandHeader, ConsumerSendMsgBackRequestHeader, GetConsumerListByGroupRequestHeader,
    GetEarliestMsgStoretimeRequestHeader, GetEarliestMsgStoretimeResponseHeader,
    GetMaxOffsetRequestHeader, GetMaxOffsetResponseHeader, GetMinOffsetRequestHeader,
    GetMinOffsetResponseHeader, PullMessageRequestHeader, PullMessageResponseHeader,
    QueryConsumerOffsetRequestHeader, QueryConsumerOffsetResponseHeader, QueryMessageRequestHeader,
    SearchOffsetRequestHeader, SearchOffsetResponseHeader, UnregisterClientRequestHeader,
    UpdateConsumerOffsetRequestHeader, ViewMessageRequestHeader,
};
use rmq_remoting::message::{self, keys, MessageExt, OffsetMsgId, TagFilter};
use rmq_remoting::{ExtFields, RemotingCommand, RequestCode, ResponseCode};

use tracing::warn;

use crate::client::MQClient;
use crate::error::{ClientError, Result};
use crate::remoting_client::expect_code;

/// How a pull ended (docs/protocol.md §12.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PullStatus {
    /// Messages found (possibly all filtered out client-side).
    Found,
    /// Nothing new at this offset.
    NoNewMsg,
    /// Messages existed but none matched the filter; pull again from `next_begin_offset`.
    NoMatchedMsg,
    /// The offset was invalid; `next_begin_offset` is the corrected one.
    OffsetIllegal,
}

/// What one pull brought back.
#[derive(Debug, Clone)]
pub struct PullResult {
    /// How the pull ended.
    pub status: PullStatus,
    /// Where the next pull of this queue starts.
    pub next_begin_offset: i64,
    /// The queue's smallest offset still stored.
    pub min_offset: i64,
    /// One past the queue's last offset.
    pub max_offset: i64,
    /// The broker id (0 = master) the broker suggests pulling from next.
    pub suggest_which_broker_id: i64,
    /// Decoded messages that passed the client-side tag re-check.
    pub messages: Vec<MessageExt>,
}

/// One pull of one queue.
#[derive(Debug, Clone)]
pub struct PullRequest {
    /// The consumer group pulling.
    pub group: String,
    /// The queue offset to pull from.
    pub offset: i64,
    /// At most this many messages (the broker caps it too).
    pub max_msgs: i32,
    /// TAG expression (`*`, `A || B`).
    pub expression: String,
    /// Long polling: the broker holds the request up to this long when nothing is there.
    pub suspend: Option<Duration>,
    /// Piggy-back a committed offset on the pull.
    pub commit_offset: Option<i64>,
}

impl PullRequest {
    /// A pull of up to 32 messages of any tag from `offset`, without long polling.
    pub fn new(group: impl Into<String>, offset: i64) -> Self {
        PullRequest {
            group: group.into(),
            offset,
            max_msgs: 32,
            expression: "*".into(),
            suspend: None,
            commit_offset: None,
        }
    }
}

/// How the broker is asked to look a message up in `query_message`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MessageKey<'a> {
    /// A business key the producer set (`Message::keys`).
    Key(&'a str),
    /// The client's unique message id (`UNIQ_KEY`, `SendResult::msg_id`).
    UniqId(&'a str),
}

impl MessageKey<'_> {
    fn as_str(&self) -> &str {
        match self {
            MessageKey::Key(k) | MessageKey::UniqId(k) => k,
        }
    }
}

/// LOCK_BATCH_MQ and UNLOCK_BATCH_MQ share one body shape.
fn lock_request(
    code: RequestCode,
    group: &str,
    client_id: &str,
    mqs: &[MessageQueue],
) -> RemotingCommand {
    let b = LockBatchRequestBody {
        client_id: client_id.to_owned(),
        consumer_group: group.to_owned(),
        mq_set: mqs.to_vec(),
        // 4.9 brokers ignore it; 5.x sends it and rocketmq-rust 1.0 refuses a body without it
        // (docs/protocol.md §19).
        only_this_broker: Some(false),
    };
    RemotingCommand::request(code, ExtFields::new()).with_body(body::to_json(&b))
}

/// Broker holds beyond `suspend` until its next 5 s wake-up (docs/protocol.md §12.2).
const LONG_POLL_SLACK: Duration = Duration::from_secs(10);

impl MQClient {
    /// HEART_BEAT to one broker; returns the broker's version ordinal.
    pub async fn heartbeat(&self, addr: &str) -> Result<i32> {
        let cmd = RemotingCommand::request(RequestCode::HeartBeat, ExtFields::new())
            .with_body(body::to_json(&self.heartbeat_data()));
        let resp = self.invoke_broker(addr, cmd, None).await?;
        let resp = expect_code(addr, resp, &[ResponseCode::Success])?;
        Ok(resp.version)
    }

    /// HEART_BEAT to every known master. Errors are logged; the first one is returned after
    /// every broker was tried.
    pub async fn heartbeat_all(&self) -> Result<()> {
        if !self.has_groups() {
            return Ok(());
        }
        let mut first_err = None;
        for addr in self.known_masters() {
            if let Err(e) = self.heartbeat(&addr).await {
                warn!(broker = %addr, error = %e, "heartbeat failed");
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// UNREGISTER_CLIENT for a group on every known master (best effort).
    pub async fn unregister(&self, producer_group: Option<&str>, consumer_group: Option<&str>) {
        for addr in self.known_masters() {
            let header = UnregisterClientRequestHeader {
                client_id: self.client_id(),
                producer_group: producer_group.map(str::to_owned),
                consumer_group: consumer_group.map(str::to_owned),
            };
            let cmd = header.to_request(RequestCode::UnregisterClient);
            if let Err(e) = self.invoke_broker(&addr, cmd, None).await {
                warn!(broker = %addr, error = %e, "unregister failed");
            }
        }
    }

    /// The master address of the broker that hosts `mq`.
    pub async fn broker_addr_for(&self, mq: &MessageQueue) -> Result<String> {
        if let Some(a) = self.master_addr(&mq.broker_name) {
            return Ok(a);
        }
        let route = self.route(&mq.topic).await?;
        route
            .master_addr(&mq.broker_name)
            .map(str::to_owned)
            .ok_or_else(|| ClientError::NoBrokerAddress(mq.broker_name.clone()))
    }

    /// PULL_MESSAGE for one queue (docs/protocol.md §9.4, §12).
    pub async fn pull(&self, mq: &MessageQueue, req: &PullRequest) -> Result<PullResult> {
        let addr = self.broker_addr_for(mq).await?;
        let filter = TagFilter::parse(&req.expression);
        // The subscription travels in the pull, so no heartbeat is needed before pulling.
        let mut sys = PullMessageRequestHeader::FLAG_SUBSCRIPTION;
        if req.suspend.is_some() {
            sys |= PullMessageRequestHeader::FLAG_SUSPEND;
        }
        if req.commit_offset.is_some() {
            sys |= PullMessageRequestHeader::FLAG_COMMIT_OFFSET;
        }
        let suspend = req.suspend.unwrap_or_default();
        let header = PullMessageRequestHeader {
            consumer_group: req.group.clone(),
            topic: mq.topic.clone(),
            queue_id: mq.queue_id,
            queue_offset: req.offset,
            max_msg_nums: req.max_msgs,
            sys_flag: sys,
            commit_offset: req.commit_offset.unwrap_or(0),
            suspend_timeout_millis: suspend.as_millis() as i64,
            subscription: Some(filter.expression()),
            sub_version: 0,
            expression_type: Some("TAG".into()),
            bname: Some(mq.broker_name.clone()),
            ..Default::default()
        };
        let cmd = header.to_request(RequestCode::PullMessage);
        let timeout = if req.suspend.is_some() {
            suspend + LONG_POLL_SLACK
        } else {
            self.config().request_timeout
        };
        let resp = self.invoke_broker(&addr, cmd, Some(timeout)).await?;
        let status = match resp.response_code() {
            ResponseCode::Success => PullStatus::Found,
            ResponseCode::PullNotFound => PullStatus::NoNewMsg,
            ResponseCode::PullRetryImmediately => PullStatus::NoMatchedMsg,
            ResponseCode::PullOffsetMoved => PullStatus::OffsetIllegal,
            code => {
                if code == ResponseCode::TopicNotExist {
                    self.invalidate_route(&mq.topic);
                }
                return Err(ClientError::Broker {
                    addr,
                    code,
                    remark: resp.remark,
                });
            }
        };
        let mut messages = if status == PullStatus::Found {
            message::decode_messages(&resp.body)?
        } else {
            Vec::new()
        };
        // The broker filters by hash; hashes collide, so re-check the strings.
        messages.retain(|m| filter.matches(m.tags()));
        let h = PullMessageResponseHeader::from_command(&resp)?;
        Ok(PullResult {
            status,
            next_begin_offset: h.next_begin_offset,
            min_offset: h.min_offset,
            max_offset: h.max_offset,
            suggest_which_broker_id: h.suggest_which_broker_id,
            messages,
        })
    }

    /// The group's committed offset of `mq`; `None` when the broker has none.
    pub async fn query_consumer_offset(
        &self,
        group: &str,
        mq: &MessageQueue,
    ) -> Result<Option<i64>> {
        let addr = self.broker_addr_for(mq).await?;
        let header = QueryConsumerOffsetRequestHeader {
            consumer_group: group.to_owned(),
            topic: mq.topic.clone(),
            queue_id: mq.queue_id,
            set_zero_if_not_found: None,
            bname: Some(mq.broker_name.clone()),
        };
        let cmd = header.to_request(RequestCode::QueryConsumerOffset);
        let resp = self.invoke_broker(&addr, cmd, None).await?;
        match resp.response_code() {
            ResponseCode::Success => Ok(Some(
                QueryConsumerOffsetResponseHeader::from_command(&resp)?.offset,
            )),
            ResponseCode::QueryNotFound => Ok(None),
            code => Err(ClientError::Broker {
                addr,
                code,
                remark: resp.remark,
            }),
        }
    }

    /// Commits `offset` (the next offset to consume) for the group and waits for the broker to
    /// confirm it.
    pub async fn update_consumer_offset(
        &self,
        group: &str,
        mq: &MessageQueue,
        offset: i64,
    ) -> Result<()> {
        let (addr, cmd) = self.offset_update(group, mq, offset).await?;
        let resp = self.invoke_broker(&addr, cmd, None).await?;
        expect_code(&addr, resp, &[ResponseCode::Success]).map(|_| ())
    }

    /// Commits `offset` one-way: nothing comes back, so a refusal goes unnoticed.
    pub async fn update_consumer_offset_oneway(
        &self,
        group: &str,
        mq: &MessageQueue,
        offset: i64,
    ) -> Result<()> {
        let (addr, cmd) = self.offset_update(group, mq, offset).await?;
        self.invoke_broker_oneway(&addr, cmd).await
    }

    async fn offset_update(
        &self,
        group: &str,
        mq: &MessageQueue,
        offset: i64,
    ) -> Result<(String, RemotingCommand)> {
        let addr = self.broker_addr_for(mq).await?;
        let header = UpdateConsumerOffsetRequestHeader {
            consumer_group: group.to_owned(),
            topic: mq.topic.clone(),
            queue_id: mq.queue_id,
            commit_offset: offset,
            bname: Some(mq.broker_name.clone()),
        };
        Ok((addr, header.to_request(RequestCode::UpdateConsumerOffset)))
    }

    async fn offset_request<Req: CommandHeader, Resp: CommandHeader>(
        &self,
        code: RequestCode,
        mq: &MessageQueue,
        header: &Req,
    ) -> Result<Resp> {
        let addr = self.broker_addr_for(mq).await?;
        let resp = self
            .invoke_broker(&addr, header.to_request(code), None)
            .await?;
        let resp = expect_code(&addr, resp, &[ResponseCode::Success])?;
        Ok(Resp::from_command(&resp)?)
    }

    /// One past the last message of the queue.
    pub async fn max_offset(&self, mq: &MessageQueue) -> Result<i64> {
        let h = GetMaxOffsetRequestHeader {
            topic: mq.topic.clone(),
            queue_id: mq.queue_id,
            committed: None,
            bname: Some(mq.broker_name.clone()),
        };
        let r: GetMaxOffsetResponseHeader = self
            .offset_request(RequestCode::GetMaxOffset, mq, &h)
            .await?;
        Ok(r.offset)
    }

    /// The smallest offset of the queue still stored.
    pub async fn min_offset(&self, mq: &MessageQueue) -> Result<i64> {
        let h = GetMinOffsetRequestHeader {
            topic: mq.topic.clone(),
            queue_id: mq.queue_id,
            bname: Some(mq.broker_name.clone()),
        };
        let r: GetMinOffsetResponseHeader = self
            .offset_request(RequestCode::GetMinOffset, mq, &h)
            .await?;
        Ok(r.offset)
    }

    /// The offset whose store time is nearest `timestamp_ms` (4.9.8 semantics, fixtures 7.1.4).
    pub async fn search_offset(&self, mq: &MessageQueue, timestamp_ms: i64) -> Result<i64> {
        let h = SearchOffsetRequestHeader {
            topic: mq.topic.clone(),
            queue_id: mq.queue_id,
            timestamp: timestamp_ms,
            boundary_type: None,
            bname: Some(mq.broker_name.clone()),
        };
        let r: SearchOffsetResponseHeader = self
            .offset_request(RequestCode::SearchOffsetByTimestamp, mq, &h)
            .await?;
        Ok(r.offset)
    }

    /// The store time (ms since the epoch) of the queue's oldest message.
    pub async fn earliest_msg_store_time(&self, mq: &MessageQueue) -> Result<i64> {
        let h = GetEarliestMsgStoretimeRequestHeader {
            topic: mq.topic.clone(),
            queue_id: mq.queue_id,
            bname: Some(mq.broker_name.clone()),
        };
        let r: GetEarliestMsgStoretimeResponseHeader = self
            .offset_request(RequestCode::GetEarliestMsgStoretime, mq, &h)
            .await?;
        Ok(r.timestamp)
    }

    /// Client ids of the group's live consumers as a broker sees them (sorted). A broker answers
    /// SYSTEM_ERROR "no consumer" for an empty group; that is an empty list here.
    pub async fn consumer_ids(&self, group: &str, broker_addr: &str) -> Result<Vec<String>> {
        let header = GetConsumerListByGroupRequestHeader {
            consumer_group: group.to_owned(),
        };
        let cmd = header.to_request(RequestCode::GetConsumerListByGroup);
        let resp = self.invoke_broker(broker_addr, cmd, None).await?;
        match resp.response_code() {
            ResponseCode::Success => {
                let mut ids = body::from_json::<ConsumerListBody>(&resp.body)?.consumer_id_list;
                ids.sort();
                Ok(ids)
            }
            ResponseCode::SystemError
                if resp
                    .remark
                    .as_deref()
                    .is_some_and(|r| r.starts_with("no consumer")) =>
            {
                Ok(Vec::new())
            }
            code => Err(ClientError::Broker {
                addr: broker_addr.to_owned(),
                code,
                remark: resp.remark,
            }),
        }
    }

    /// LOCK_BATCH_MQ on the master of `broker_name`: returns the queues the broker granted.
    pub async fn lock_batch(
        &self,
        group: &str,
        broker_name: &str,
        mqs: &[MessageQueue],
    ) -> Result<Vec<MessageQueue>> {
        self.lock_batch_as(group, &self.client_id(), broker_name, mqs)
            .await
    }

    /// LOCK_BATCH_MQ under an explicit client id (the gateway locks per HTTP consumer).
    pub async fn lock_batch_as(
        &self,
        group: &str,
        client_id: &str,
        broker_name: &str,
        mqs: &[MessageQueue],
    ) -> Result<Vec<MessageQueue>> {
        let addr = self.master_for_broker(broker_name, mqs).await?;
        let cmd = lock_request(RequestCode::LockBatchMq, group, client_id, mqs);
        let resp = self.invoke_broker(&addr, cmd, None).await?;
        let resp = expect_code(&addr, resp, &[ResponseCode::Success])?;
        Ok(body::from_json::<LockBatchResponseBody>(&resp.body)?.lock_ok_mq_set)
    }

    /// UNLOCK_BATCH_MQ; only queues held by `client_id` are released by the broker.
    pub async fn unlock_batch_as(
        &self,
        group: &str,
        client_id: &str,
        broker_name: &str,
        mqs: &[MessageQueue],
    ) -> Result<()> {
        let addr = self.master_for_broker(broker_name, mqs).await?;
        let cmd = lock_request(RequestCode::UnlockBatchMq, group, client_id, mqs);
        let resp = self.invoke_broker(&addr, cmd, None).await?;
        expect_code(&addr, resp, &[ResponseCode::Success]).map(|_| ())
    }

    /// UNLOCK_BATCH_MQ of queues this client locked.
    pub async fn unlock_batch(
        &self,
        group: &str,
        broker_name: &str,
        mqs: &[MessageQueue],
    ) -> Result<()> {
        self.unlock_batch_as(group, &self.client_id(), broker_name, mqs)
            .await
    }

    async fn master_for_broker(&self, broker_name: &str, mqs: &[MessageQueue]) -> Result<String> {
        if let Some(a) = self.master_addr(broker_name) {
            return Ok(a);
        }
        match mqs.first() {
            Some(mq) => self.broker_addr_for(mq).await,
            None => Err(ClientError::NoBrokerAddress(broker_name.to_owned())),
        }
    }

    /// CONSUMER_SEND_MSG_BACK: hands a message the consumer failed on back to the broker, which
    /// stores it in `%RETRY%group` (or the DLQ after `max_reconsume_times`).
    /// `delay_level` 0 lets the broker choose (3 + reconsume times); negative goes to the DLQ.
    pub async fn send_back(
        &self,
        group: &str,
        msg: &MessageExt,
        delay_level: i32,
        max_reconsume_times: i32,
        broker_name: Option<&str>,
    ) -> Result<()> {
        let addr = match broker_name.and_then(|b| self.master_addr(b)) {
            Some(a) => a,
            None => msg.store_host.to_string(),
        };
        let header = ConsumerSendMsgBackRequestHeader {
            offset: msg.commit_log_offset,
            group: group.to_owned(),
            delay_level,
            origin_msg_id: Some(msg.msg_id()),
            origin_topic: Some(msg.original_topic().to_owned()),
            unit_mode: false,
            max_reconsume_times: Some(max_reconsume_times),
            bname: broker_name.map(str::to_owned),
        };
        let cmd = header.to_request(RequestCode::ConsumerSendMsgBack);
        let resp = self.invoke_broker(&addr, cmd, None).await?;
        expect_code(&addr, resp, &[ResponseCode::Success]).map(|_| ())
    }

    /// VIEW_MESSAGE_BY_ID with an offset message id (store host + commit-log offset).
    pub async fn view_message(&self, offset_msg_id: &str) -> Result<MessageExt> {
        let id = OffsetMsgId::decode(offset_msg_id)?;
        let addr = id.store_host.to_string();
        let header = ViewMessageRequestHeader {
            offset: id.commit_log_offset,
            topic: None,
        };
        let cmd = header.to_request(RequestCode::ViewMessageById);
        let resp = self.invoke_broker(&addr, cmd, None).await?;
        let resp = expect_code(&addr, resp, &[ResponseCode::Success])?;
        message::decode_messages(&resp.body)?
            .into_iter()
            .next()
            .ok_or_else(|| ClientError::InvalidArgument(format!("no message at {offset_msg_id}")))
    }

    /// QUERY_MESSAGE by business key or unique id on every master of the topic, filtered
    /// client-side as the index is hash based (docs/protocol.md §9.6). Store times in ms since
    /// the epoch.
    pub async fn query_message(
        &self,
        topic: &str,
        key: MessageKey<'_>,
        max: i32,
        begin_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<MessageExt>> {
        let unique = matches!(key, MessageKey::UniqId(_));
        let key = key.as_str();
        let route = self.route(topic).await?;
        let mut out = Vec::new();
        let masters = route.master_addrs();
        for addr in &masters {
            let header = QueryMessageRequestHeader {
                topic: topic.to_owned(),
                key: key.to_owned(),
                max_num: max,
                begin_timestamp: begin_ms,
                end_timestamp: end_ms,
                unique_key_query: unique,
            };
            let cmd = header.to_request(RequestCode::QueryMessage);
            let resp = self.invoke_broker(addr, cmd, None).await?;
            match resp.response_code() {
                ResponseCode::Success => {
                    for m in message::decode_messages(&resp.body)? {
                        let hit = if unique {
                            m.properties.get(keys::UNIQ_KEY) == Some(key)
                        } else {
                            m.keys().any(|k| k == key)
                        };
                        if hit && m.topic == topic {
                            out.push(m);
                        }
                    }
                }
                ResponseCode::QueryNotFound => {}
                code => {
                    return Err(ClientError::Broker {
                        addr: addr.clone(),
                        code,
                        remark: resp.remark,
                    })
                }
            }
        }
        out.sort_by_key(|m| (m.store_timestamp, m.commit_log_offset));
        out.dedup_by_key(|m| (m.store_host, m.commit_log_offset));
        Ok(out)
    }
}
