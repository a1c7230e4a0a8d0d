//! The producer: queue selection, ids, compression, delay/timer properties, size checks,
//! retries on another broker, batches.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use parking_lot::Mutex;
use rmq_remoting::body::MessageQueue;
use rmq_remoting::header::{CommandHeader, SendMessageRequestHeaderV2, SendMessageResponseHeader};
use rmq_remoting::message::{
    self, compress, java_string_hash, keys, sys_flag, BatchItem, MessageExt, Properties,
    UniqIdGenerator,
};
use rmq_remoting::{RemotingCommand, RequestCode, ResponseCode};
use tracing::{debug, warn};

use crate::client::{MQClient, VERSION_5_0_0};
use crate::error::{ClientError, Result};
use crate::route::TopicRoute;

/// The topic brokers auto-create new topics from.
pub const AUTO_CREATE_TOPIC_KEY: &str = "TBW102";
/// Highest delay level of the default broker configuration (1s ... 2h).
pub const MAX_DELAY_LEVEL: u8 = 18;

/// A message to send.
#[derive(Debug, Clone, Default)]
pub struct Message {
    /// The topic.
    pub topic: String,
    /// The body.
    pub body: Bytes,
    /// The tag, for consumers' tag filters.
    pub tags: Option<String>,
    /// Business keys, indexed by the broker for QUERY_MESSAGE.
    pub keys: Vec<String>,
    /// User properties.
    pub properties: Properties,
    /// Application flag, opaque to RocketMQ.
    pub flag: i32,
    /// Delay level 1-18 (broker's `messageDelayLevel`).
    pub delay_level: Option<u8>,
    /// Deliver at this time (ms since the epoch); 5.x brokers only.
    pub deliver_at_ms: Option<i64>,
}

impl Message {
    /// A message of `body` to `topic`.
    pub fn new(topic: impl Into<String>, body: impl Into<Bytes>) -> Self {
        Message {
            topic: topic.into(),
            body: body.into(),
            ..Default::default()
        }
    }

    /// With a tag.
    pub fn with_tags(mut self, tags: impl Into<String>) -> Self {
        self.tags = Some(tags.into());
        self
    }

    /// With business keys (the broker indexes them for queries).
    pub fn with_keys<I: IntoIterator<Item = S>, S: Into<String>>(mut self, keys: I) -> Self {
        self.keys = keys.into_iter().map(Into::into).collect();
        self
    }

    /// With a user property.
    pub fn with_property(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.properties.insert(k, v);
        self
    }

    /// Delivered after the delay level (1..=18, 1 s to 2 h by default).
    pub fn with_delay_level(mut self, level: u8) -> Self {
        self.delay_level = Some(level);
        self
    }

    /// Delivered at `ms` since the epoch (5.x brokers only).
    pub fn with_deliver_at(mut self, ms: i64) -> Self {
        self.deliver_at_ms = Some(ms);
        self
    }
}

/// How to pick the queue of a send.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum QueueSelector {
    /// Round robin over writable queues; a failed attempt moves to another broker.
    RoundRobin,
    /// Java's `SelectMessageQueueByHash`: `|hash(key)| % queues`. The same key lands on the same
    /// queue while the route is unchanged (MQ-Proxy's orderId).
    Key(String),
    /// This queue, whatever the route says.
    Queue(MessageQueue),
}

impl QueueSelector {
    /// The queue to send to among `queues`; `turn` is the round-robin counter, and round robin
    /// skips queues of `avoid_broker` (the broker that just failed) while others exist. Public
    /// so that stand-ins for a broker (tests, simulations) pick exactly as the producer does.
    pub fn select(
        &self,
        queues: &[MessageQueue],
        turn: usize,
        avoid_broker: Option<&str>,
    ) -> Option<MessageQueue> {
        if queues.is_empty() {
            return None;
        }
        match self {
            QueueSelector::Queue(q) => Some(q.clone()),
            QueueSelector::Key(k) => {
                let h = java_string_hash(k).unsigned_abs() as usize;
                Some(queues[h % queues.len()].clone())
            }
            QueueSelector::RoundRobin => {
                let n = queues.len();
                let preferred = (0..n)
                    .map(|i| &queues[(turn + i) % n])
                    .find(|q| avoid_broker.is_none_or(|b| q.broker_name != b));
                Some(preferred.unwrap_or(&queues[turn % n]).clone())
            }
        }
    }
}

/// The broker's verdict on a stored message (codes 0, 10, 11, 12).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendStatus {
    /// Stored.
    SendOk,
    /// Stored, but not flushed to disk in time.
    FlushDiskTimeout,
    /// Stored, but the slave did not confirm in time.
    FlushSlaveTimeout,
    /// Stored, but no slave is available.
    SlaveNotAvailable,
}

impl SendStatus {
    /// The name Java uses (`SEND_OK`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            SendStatus::SendOk => "SEND_OK",
            SendStatus::FlushDiskTimeout => "FLUSH_DISK_TIMEOUT",
            SendStatus::FlushSlaveTimeout => "FLUSH_SLAVE_TIMEOUT",
            SendStatus::SlaveNotAvailable => "SLAVE_NOT_AVAILABLE",
        }
    }
}

/// What a successful send returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendResult {
    /// The broker's verdict.
    pub status: SendStatus,
    /// The client unique id (`UNIQ_KEY`); comma-joined for a batch.
    pub msg_id: String,
    /// The broker's offset id; comma-joined for a batch.
    pub offset_msg_id: String,
    /// The queue the message went to.
    pub queue: MessageQueue,
    /// Offset of the (first) message in its queue.
    pub queue_offset: i64,
    /// The region the broker reports.
    pub region_id: Option<String>,
    /// The transaction id, for transactional sends.
    pub transaction_id: Option<String>,
}

/// What a [`Producer`] sends as, and its limits.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// The producer group.
    pub group: String,
    /// Time budget of one send, retries included (Java: 3 s).
    pub send_timeout: Duration,
    /// Extra attempts after a failure (Java: 2).
    pub retries: u32,
    /// Bodies at least this long are zlib-compressed (Java: 4 KiB). Never batches.
    pub compress_over: usize,
    /// Largest body (or batch) accepted (Java and broker default: 4 MiB).
    pub max_message_size: usize,
    /// Queues of a topic the broker auto-creates on first send.
    pub default_topic_queue_nums: i32,
    /// Send to `TBW102`'s brokers when the topic has no route, so the broker creates it.
    pub auto_create_topic: bool,
}

impl ProducerConfig {
    /// Java's defaults for the group: 3 s, 2 retries, compression from 4 KiB, 4 MiB limit.
    pub fn new(group: impl Into<String>) -> Self {
        ProducerConfig {
            group: group.into(),
            send_timeout: Duration::from_secs(3),
            retries: 2,
            compress_over: 4096,
            max_message_size: 4 * 1024 * 1024,
            default_topic_queue_nums: 4,
            auto_create_topic: true,
        }
    }
}

/// Sends messages of one producer group through an [`MQClient`]; clones share it.
///
/// # Cancel safety
///
/// The send methods are cancel safe in that the producer stays usable, but a dropped send may
/// or may not have stored its message, as with a timeout.
///
/// ```no_run
/// use rmq_client::{ClientConfig, MQClient, Message, Producer, ProducerConfig, QueueSelector};
///
/// # async fn run() -> Result<(), rmq_client::ClientError> {
/// let client = MQClient::start(ClientConfig::new("127.0.0.1:9876"))?;
/// let producer = Producer::new(client.clone(), ProducerConfig::new("orders-producer"));
/// let sent = producer
///     .send(Message::new("orders", "order 42 paid").with_tags("paid").with_keys(["42"]))
///     .await?;
/// println!("{} stored at offset {}", sent.msg_id, sent.queue_offset);
/// // Messages with the same key keep their order: they go to the same queue.
/// producer
///     .send_with(Message::new("orders", "order 42 shipped"), QueueSelector::Key("42".into()))
///     .await?;
/// producer.shutdown().await;
/// client.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Producer {
    client: MQClient,
    config: Arc<ProducerConfig>,
    shut_down: Arc<std::sync::atomic::AtomicBool>,
    next_queue: Arc<AtomicUsize>,
    ids: Arc<Mutex<UniqIdGenerator>>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Send codes after which Java tries another broker (docs/protocol.md §9.3, both lines' sets).
fn retryable(code: ResponseCode) -> bool {
    matches!(
        code,
        ResponseCode::TopicNotExist
            | ResponseCode::ServiceNotAvailable
            | ResponseCode::SystemError
            | ResponseCode::NoPermission
            | ResponseCode::NoBuyerId
            | ResponseCode::NotInCurrentUnit
            | ResponseCode::SystemBusy
            | ResponseCode::GoAway
    )
}

impl Producer {
    /// A producer of `config.group` on `client`, announced in its heartbeats.
    pub fn new(client: MQClient, config: ProducerConfig) -> Self {
        client.register_producer(&config.group);
        let ip: IpAddr = client
            .config()
            .client_ip
            .parse()
            .unwrap_or(IpAddr::from([127, 0, 0, 1]));
        let random = (now_ms() as i32) ^ (std::process::id() as i32).rotate_left(16);
        Producer {
            client,
            config: Arc::new(config),
            shut_down: Arc::default(),
            next_queue: Arc::new(AtomicUsize::new(0)),
            ids: Arc::new(Mutex::new(UniqIdGenerator::new(
                ip,
                std::process::id(),
                random,
            ))),
        }
    }

    /// The client it sends through.
    pub fn client(&self) -> &MQClient {
        &self.client
    }

    /// Its configuration.
    pub fn config(&self) -> &ProducerConfig {
        &self.config
    }

    /// A fresh client unique id.
    pub fn new_msg_id(&self) -> String {
        self.ids.lock().next_id(now_ms())
    }

    /// Stops this producer (every clone): later sends fail with [`ClientError::Shutdown`], and
    /// the group is unregistered from the brokers and left out of heartbeats. The [`MQClient`]
    /// stays up for its other users; shut it down separately.
    pub async fn shutdown(&self) {
        if self.shut_down.swap(true, Ordering::AcqRel) {
            return;
        }
        self.client.unregister_producer_local(&self.config.group);
        self.client.unregister(Some(&self.config.group), None).await;
    }

    /// Whether [`shutdown`](Self::shutdown) was called.
    pub fn is_shut_down(&self) -> bool {
        self.shut_down.load(Ordering::Acquire)
    }

    fn validate(&self, msg: &Message) -> Result<()> {
        if self.is_shut_down() {
            return Err(ClientError::Shutdown);
        }
        validate_topic(&msg.topic)?;
        if msg.body.is_empty() {
            return Err(ClientError::InvalidArgument("message body is empty".into()));
        }
        if msg.body.len() > self.config.max_message_size {
            return Err(ClientError::MessageTooLarge {
                size: msg.body.len(),
                max: self.config.max_message_size,
            });
        }
        if let Some(l) = msg.delay_level {
            if l == 0 || l > MAX_DELAY_LEVEL {
                return Err(ClientError::InvalidArgument(format!(
                    "delay level {l} is outside 1..={MAX_DELAY_LEVEL}"
                )));
            }
        }
        if msg.delay_level.is_some() && msg.deliver_at_ms.is_some() {
            return Err(ClientError::InvalidArgument(
                "a message takes a delay level or a delivery time, not both".into(),
            ));
        }
        Ok(())
    }

    /// The properties a message travels with: user properties, then TAGS, KEYS, DELAY or
    /// TIMER_DELIVER_MS, WAIT and UNIQ_KEY.
    fn wire_properties(&self, msg: &Message, uniq: &str) -> Result<Properties> {
        let mut p = msg.properties.clone();
        if let Some(t) = msg.tags.as_deref().filter(|t| !t.is_empty()) {
            p.insert(keys::TAGS, t);
        }
        if !msg.keys.is_empty() {
            p.insert(keys::KEYS, msg.keys.join(" "));
        }
        if let Some(l) = msg.delay_level {
            p.insert(keys::DELAY, l.to_string());
        }
        if let Some(at) = msg.deliver_at_ms {
            p.insert(keys::TIMER_DELIVER_MS, at.to_string());
        }
        p.insert(keys::WAIT, "true");
        p.insert(keys::UNIQ_KEY, uniq);
        Ok(p)
    }

    /// Sends one message synchronously, round robin.
    pub async fn send(&self, msg: Message) -> Result<SendResult> {
        self.send_with(msg, QueueSelector::RoundRobin).await
    }

    /// Sends one message to the queue `selector` picks, retrying as configured.
    pub async fn send_with(&self, msg: Message, selector: QueueSelector) -> Result<SendResult> {
        self.validate(&msg)?;
        let uniq = self.new_msg_id();
        let props = self.wire_properties(&msg, &uniq)?;
        let props_text = props.encode_checked()?;
        let (body, sys) = self.maybe_compress(&msg.body);
        let req = SendRequest {
            topic: &msg.topic,
            body,
            sys_flag: sys,
            flag: msg.flag,
            properties: props_text,
            batch: false,
            uniq_ids: uniq,
            needs_timer: msg.deliver_at_ms.is_some(),
            reconsume_times: 0,
            max_reconsume_times: None,
        };
        self.send_request(req, selector).await
    }

    /// Sends several messages of one topic in one SEND_BATCH_MESSAGE (one queue, consecutive
    /// offsets). No delay levels or timers; never compressed (as in Java).
    pub async fn send_batch(
        &self,
        msgs: Vec<Message>,
        selector: QueueSelector,
    ) -> Result<SendResult> {
        let Some(first) = msgs.first() else {
            return Err(ClientError::InvalidArgument("empty batch".into()));
        };
        let topic = first.topic.clone();
        if topic.starts_with("%RETRY%") {
            return Err(ClientError::InvalidArgument(
                "batches cannot go to a retry topic".into(),
            ));
        }
        let mut items = Vec::with_capacity(msgs.len());
        let mut ids = Vec::with_capacity(msgs.len());
        for m in &msgs {
            self.validate(m)?;
            if m.topic != topic {
                return Err(ClientError::InvalidArgument(
                    "all messages of a batch must have the same topic".into(),
                ));
            }
            if m.delay_level.is_some() || m.deliver_at_ms.is_some() {
                return Err(ClientError::InvalidArgument(
                    "batched messages cannot be delayed".into(),
                ));
            }
            let uniq = self.new_msg_id();
            items.push(BatchItem::new(
                m.flag,
                m.body.clone(),
                self.wire_properties(m, &uniq)?,
            ));
            ids.push(uniq);
        }
        let body = message::encode_batch(&items)?;
        if body.len() > self.config.max_message_size {
            return Err(ClientError::MessageTooLarge {
                size: body.len(),
                max: self.config.max_message_size,
            });
        }
        let mut envelope = Properties::new();
        envelope.insert(keys::WAIT, "true");
        let req = SendRequest {
            topic: &topic,
            body,
            sys_flag: 0,
            flag: 0,
            properties: envelope.encode(),
            batch: true,
            uniq_ids: ids.join(","),
            needs_timer: false,
            reconsume_times: 0,
            max_reconsume_times: None,
        };
        self.send_request(req, selector).await
    }

    /// Sends one message one-way: no answer, no retry, no result.
    pub async fn send_oneway(&self, msg: Message) -> Result<()> {
        self.validate(&msg)?;
        let uniq = self.new_msg_id();
        let properties = self.wire_properties(&msg, &uniq)?.encode_checked()?;
        let route = self.route_for_send(&msg.topic).await?;
        let queue = self.pick(&route, &QueueSelector::RoundRobin, None)?;
        let addr = self.addr_of(&route, &queue)?;
        let (body, sys_flag) = self.maybe_compress(&msg.body);
        let req = SendRequest {
            topic: &msg.topic,
            body,
            sys_flag,
            flag: msg.flag,
            properties,
            batch: false,
            uniq_ids: uniq,
            needs_timer: msg.deliver_at_ms.is_some(),
            reconsume_times: 0,
            max_reconsume_times: None,
        };
        if req.needs_timer {
            self.check_timer_support(&addr).await?;
        }
        let cmd = self.build_command(&queue, &req);
        self.client.invoke_broker_oneway(&addr, cmd).await
    }

    fn maybe_compress(&self, body: &Bytes) -> (Bytes, i32) {
        if body.len() >= self.config.compress_over {
            (
                Bytes::from(compress::zlib_compress(body)),
                sys_flag::COMPRESSED | sys_flag::COMPRESSION_ZLIB,
            )
        } else {
            (body.clone(), 0)
        }
    }

    /// Returns a consumed message for redelivery: CONSUMER_SEND_MSG_BACK to the broker that stored
    /// it, and when the broker refuses, a re-publish to `%RETRY%group` as the Java consumer does
    /// (docs/protocol.md §14.2). `delay_level` 0 lets the broker pick `3 + reconsumeTimes`.
    pub async fn send_back(
        &self,
        group: &str,
        msg: &MessageExt,
        delay_level: i32,
        max_reconsume_times: i32,
        broker_name: Option<&str>,
    ) -> Result<()> {
        match self
            .client
            .send_back(group, msg, delay_level, max_reconsume_times, broker_name)
            .await
        {
            Ok(()) => Ok(()),
            Err(e) => {
                warn!(error = %e, msg_id = %msg.msg_id(), "send-back refused, re-publishing to the retry topic");
                self.republish_for_retry(group, msg, delay_level, max_reconsume_times)
                    .await
                    .map(|_| ())
            }
        }
    }

    /// The fallback of `send_back`: a new message on `%RETRY%group` carrying the original's
    /// body, flag and properties plus the retry bookkeeping.
    pub async fn republish_for_retry(
        &self,
        group: &str,
        msg: &MessageExt,
        delay_level: i32,
        max_reconsume_times: i32,
    ) -> Result<SendResult> {
        let mut props = msg.properties.clone();
        props.insert(keys::RETRY_TOPIC, msg.original_topic());
        if props.get(keys::ORIGIN_MESSAGE_ID).is_none() {
            props.insert(keys::ORIGIN_MESSAGE_ID, msg.msg_id());
        }
        let level = if delay_level > 0 {
            delay_level
        } else {
            3 + msg.reconsume_times
        };
        props.insert(keys::DELAY, level.min(MAX_DELAY_LEVEL as i32).to_string());
        props.remove(keys::TRAN_MSG);
        props.remove("CLUSTER");
        let uniq = props
            .get(keys::UNIQ_KEY)
            .map(str::to_owned)
            .unwrap_or_else(|| self.new_msg_id());
        let topic = format!("%RETRY%{group}");
        let (body, sys_flag) = self.maybe_compress(&msg.body);
        let req = SendRequest {
            topic: &topic,
            body,
            sys_flag,
            flag: msg.flag,
            properties: props.encode_checked()?,
            batch: false,
            uniq_ids: uniq,
            needs_timer: false,
            reconsume_times: msg.reconsume_times + 1,
            max_reconsume_times: Some(max_reconsume_times),
        };
        self.send_request(req, QueueSelector::RoundRobin).await
    }

    async fn route_for_send(&self, topic: &str) -> Result<Arc<TopicRoute>> {
        match self.client.route(topic).await {
            Ok(r) if !r.publish_queues.is_empty() => Ok(r),
            Ok(_) => Err(ClientError::NoWritableQueue(topic.to_owned())),
            Err(ClientError::TopicNotExist(_)) if self.config.auto_create_topic => {
                // The broker creates the topic from TBW102 on first send (docs/protocol.md §17.1).
                let tbw = self
                    .client
                    .route(AUTO_CREATE_TOPIC_KEY)
                    .await
                    .map_err(|e| match e {
                        ClientError::TopicNotExist(_) => {
                            ClientError::TopicNotExist(topic.to_owned())
                        }
                        e => e,
                    })?;
                let n = self.config.default_topic_queue_nums.max(1);
                let mut data = tbw.data.clone();
                for qd in &mut data.queue_datas {
                    qd.write_queue_nums = qd.write_queue_nums.min(n);
                    qd.read_queue_nums = qd.read_queue_nums.min(n);
                }
                Ok(Arc::new(TopicRoute::new(topic, data)))
            }
            Err(e) => Err(e),
        }
    }

    fn pick(
        &self,
        route: &TopicRoute,
        selector: &QueueSelector,
        avoid_broker: Option<&str>,
    ) -> Result<MessageQueue> {
        let turn = match selector {
            QueueSelector::RoundRobin => self.next_queue.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
        selector
            .select(&route.publish_queues, turn, avoid_broker)
            .ok_or_else(|| ClientError::NoWritableQueue(route.topic.clone()))
    }

    fn addr_of(&self, route: &TopicRoute, q: &MessageQueue) -> Result<String> {
        route
            .master_addr(&q.broker_name)
            .map(str::to_owned)
            .or_else(|| self.client.master_addr(&q.broker_name))
            .ok_or_else(|| ClientError::NoBrokerAddress(q.broker_name.clone()))
    }

    fn build_command(&self, queue: &MessageQueue, req: &SendRequest<'_>) -> RemotingCommand {
        let header = SendMessageRequestHeaderV2 {
            producer_group: self.config.group.clone(),
            topic: req.topic.to_owned(),
            default_topic: AUTO_CREATE_TOPIC_KEY.to_owned(),
            default_topic_queue_nums: self.config.default_topic_queue_nums,
            queue_id: queue.queue_id,
            sys_flag: req.sys_flag,
            born_timestamp: now_ms(),
            flag: req.flag,
            properties: Some(req.properties.clone()),
            reconsume_times: Some(req.reconsume_times),
            unit_mode: false,
            max_reconsume_times: req.max_reconsume_times,
            batch: req.batch,
            bname: Some(queue.broker_name.clone()),
        };
        let code = if req.batch {
            RequestCode::SendBatchMessage
        } else {
            RequestCode::SendMessageV2
        };
        header.to_request(code).with_body(req.body.clone())
    }

    async fn send_request(
        &self,
        req: SendRequest<'_>,
        selector: QueueSelector,
    ) -> Result<SendResult> {
        if self.is_shut_down() {
            return Err(ClientError::Shutdown);
        }
        let deadline = Instant::now() + self.config.send_timeout;
        let attempts = 1 + self.config.retries;
        let mut last_err: Option<ClientError> = None;
        let mut failed_broker: Option<String> = None;
        for attempt in 0..attempts {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                break;
            }
            let route = match self.route_for_send(req.topic).await {
                Ok(r) => r,
                Err(e) => {
                    last_err = Some(e);
                    continue;
                }
            };
            let queue = self.pick(&route, &selector, failed_broker.as_deref())?;
            let addr = self.addr_of(&route, &queue)?;
            if req.needs_timer {
                self.check_timer_support(&addr).await?;
            }
            let cmd = self.build_command(&queue, &req);
            match self.client.invoke_broker(&addr, cmd, Some(remaining)).await {
                Ok(resp) => match send_result(&addr, resp, &queue, &req.uniq_ids) {
                    Ok(r) => return Ok(r),
                    Err(e) => {
                        let code = e.response_code();
                        if code == Some(ResponseCode::TopicNotExist) {
                            self.client.invalidate_route(req.topic);
                        }
                        if !code.is_some_and(retryable) {
                            return Err(e);
                        }
                        debug!(attempt, broker = %addr, error = %e, "send failed, retrying");
                        last_err = Some(e);
                    }
                },
                Err(e) if e.is_transport() => {
                    warn!(attempt, broker = %addr, error = %e, "send failed, retrying");
                    last_err = Some(e);
                }
                Err(e) => return Err(e),
            }
            failed_broker = Some(queue.broker_name.clone());
        }
        Err(last_err.unwrap_or(ClientError::Timeout {
            addr: String::new(),
            code: RequestCode::SendMessageV2.as_i32(),
            timeout: self.config.send_timeout,
        }))
    }

    async fn check_timer_support(&self, addr: &str) -> Result<()> {
        let version = match self.client.broker_version(addr) {
            Some(v) => v,
            None => self.client.heartbeat(addr).await?,
        };
        if version < VERSION_5_0_0 {
            return Err(ClientError::NotSupported(format!(
                "broker {addr} (version ordinal {version}) predates 5.0 and would deliver a timer \
                 message at once; use a delay level"
            )));
        }
        Ok(())
    }
}

struct SendRequest<'a> {
    topic: &'a str,
    body: Bytes,
    sys_flag: i32,
    flag: i32,
    properties: String,
    batch: bool,
    uniq_ids: String,
    needs_timer: bool,
    /// Only for re-publishing to a retry topic (docs/protocol.md §14.2).
    reconsume_times: i32,
    max_reconsume_times: Option<i32>,
}

fn send_result(
    addr: &str,
    resp: RemotingCommand,
    queue: &MessageQueue,
    uniq_ids: &str,
) -> Result<SendResult> {
    let status = match resp.response_code() {
        ResponseCode::Success => SendStatus::SendOk,
        ResponseCode::FlushDiskTimeout => SendStatus::FlushDiskTimeout,
        ResponseCode::FlushSlaveTimeout => SendStatus::FlushSlaveTimeout,
        ResponseCode::SlaveNotAvailable => SendStatus::SlaveNotAvailable,
        code => {
            return Err(ClientError::Broker {
                addr: addr.to_owned(),
                code,
                remark: resp.remark,
            })
        }
    };
    let h = SendMessageResponseHeader::from_command(&resp)?;
    Ok(SendResult {
        status,
        msg_id: uniq_ids.to_owned(),
        offset_msg_id: h.msg_id,
        queue: MessageQueue::new(queue.topic.clone(), queue.broker_name.clone(), h.queue_id),
        queue_offset: h.queue_offset,
        region_id: h.msg_region,
        transaction_id: h.transaction_id,
    })
}

/// Topic names the broker accepts: `[%|a-zA-Z0-9_-]`, 1-127 characters (retry/DLQ up to 255).
pub fn validate_topic(topic: &str) -> Result<()> {
    let max = if topic.starts_with("%RETRY%") || topic.starts_with("%DLQ%") {
        255
    } else {
        127
    };
    if topic.is_empty() || topic.len() > max {
        return Err(ClientError::InvalidArgument(format!(
            "topic name must be 1..={max} characters"
        )));
    }
    if !topic
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'%' | b'|' | b'_' | b'-'))
    {
        return Err(ClientError::InvalidArgument(format!(
            "topic {topic:?} has characters outside [%|a-zA-Z0-9_-]"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_rules() {
        assert!(validate_topic("Fixture_Topic-1").is_ok());
        assert!(validate_topic("%RETRY%g").is_ok());
        assert!(validate_topic("").is_err());
        assert!(validate_topic("a b").is_err());
        assert!(validate_topic(&"x".repeat(128)).is_err());
    }

    fn queues() -> Vec<MessageQueue> {
        let mut qs: Vec<_> = (0..4).map(|i| MessageQueue::new("T", "a", i)).collect();
        qs.extend((0..2).map(|i| MessageQueue::new("T", "b", i)));
        qs
    }

    #[test]
    fn key_selection_matches_java_hash() {
        assert_eq!(java_string_hash("order-42"), 1_234_255_197);
        assert_eq!(java_string_hash("order-7"), -1_207_111_304);
        assert_eq!(java_string_hash("TagA"), 2_598_919);
        // |hash| % queues, as Java's SelectMessageQueueByHash computes it, whatever the turn.
        let four = &queues()[..4];
        for turn in [0, 1, 7] {
            let key = QueueSelector::Key("order-42".into());
            assert_eq!(key.select(four, turn, None).unwrap().queue_id, 1);
            let key = QueueSelector::Key("order-7".into());
            assert_eq!(key.select(four, turn, Some("a")).unwrap().queue_id, 0);
        }
        // six queues: 1234255197 % 6 = 3, 1207111304 % 6 = 2
        let six = queues();
        let key = QueueSelector::Key("order-42".into());
        assert_eq!(key.select(&six, 0, None), Some(six[3].clone()));
        let key = QueueSelector::Key("order-7".into());
        assert_eq!(key.select(&six, 0, None), Some(six[2].clone()));
    }

    #[test]
    fn round_robin_cycles_and_avoids_the_failed_broker() {
        let qs = queues();
        let rr = QueueSelector::RoundRobin;
        let picked: Vec<_> = (0..8).map(|t| rr.select(&qs, t, None).unwrap()).collect();
        assert_eq!(picked[..6], qs[..]);
        assert_eq!(picked[6], qs[0]);
        // turn 1 would be a/1: skip broker "a" to b/0
        assert_eq!(rr.select(&qs, 1, Some("a")), Some(qs[4].clone()));
        assert_eq!(rr.select(&qs, 5, Some("b")), Some(qs[0].clone()));
        // only the failed broker left: use it rather than nothing
        assert_eq!(rr.select(&qs[..4], 2, Some("a")), Some(qs[2].clone()));
        assert_eq!(rr.select(&[], 0, None), None);
        let fixed = QueueSelector::Queue(qs[5].clone());
        assert_eq!(fixed.select(&qs, 3, Some("b")), Some(qs[5].clone()));
    }
}
