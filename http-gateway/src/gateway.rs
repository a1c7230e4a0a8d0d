//! The gateway's core, independent of HTTP: producers, consumer scopes with their lock tables,
//! broker locks across gateway instances, acks committed to the broker.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use parking_lot::Mutex;
use rmq_client::consumer_api::PullRequest;
use rmq_client::{
    ClientConfig, ClientError, MQClient, Message, Producer, PullStatus, QueueSelector, SendResult,
};
use rmq_remoting::acl::AclCredentials;
use rmq_remoting::body::{
    ConsumeFromWhere, ConsumeType, ConsumerData, MessageModel, MessageQueue, SubscriptionData,
};
use rmq_remoting::message::MessageExt;
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use crate::config::{Config, ConsumerConfig, Mode, StartFrom};
use crate::lock_table::{AckOutcome, QueueKey, ScopeTable};
use crate::request_id::RequestId;

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Outcome classes of the `/mq/*` API (the body's `status`).
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// 400: the request is wrong; nothing was sent, no offset moved.
    #[error("{0}")]
    BadRequest(String),
    /// 300: the message may or may not have been stored (timeout after the bytes left).
    #[error("{0}")]
    Unknown(String),
    /// 500: the broker or the gateway failed.
    #[error("{0}")]
    Internal(String),
    /// 403: the admin API refused the caller.
    #[error("{0}")]
    Forbidden(String),
}

impl GatewayError {
    pub fn status(&self) -> u16 {
        match self {
            GatewayError::BadRequest(_) => 400,
            GatewayError::Unknown(_) => 300,
            GatewayError::Internal(_) => 500,
            GatewayError::Forbidden(_) => 403,
        }
    }

    fn from_send(e: ClientError) -> Self {
        match e {
            ClientError::InvalidArgument(_)
            | ClientError::MessageTooLarge { .. }
            | ClientError::NotSupported(_)
            | ClientError::Message(_) => GatewayError::BadRequest(e.to_string()),
            ClientError::Timeout { .. } | ClientError::ConnectionClosed { .. } => {
                GatewayError::Unknown(format!("send outcome unknown, resend if needed: {e}"))
            }
            e => GatewayError::Internal(e.to_string()),
        }
    }
}

fn internal(e: ClientError) -> GatewayError {
    GatewayError::Internal(e.to_string())
}

/// What `/mq/produce` takes.
#[derive(Debug, Default, Clone)]
pub struct ProduceRequest {
    pub producer: String,
    pub message: Bytes,
    pub keys: Option<String>,
    pub tags: Option<String>,
    pub order_id: Option<String>,
    pub delay_level: Option<i64>,
    pub delivery_timestamp: Option<i64>,
}

struct ProducerEntry {
    topic: String,
    producer: Producer,
}

struct ConsumerEntry {
    cfg: ConsumerConfig,
    group: String,
    scopes: Mutex<HashMap<Option<String>, Arc<Scope>>>,
}

/// A broker lock this instance holds for a queue of a scope.
#[derive(Debug, Clone, Copy)]
struct Held {
    renewed_at: i64,
    idle_since: Option<i64>,
}

/// One clustering group, or one clientId of a broadcast group.
pub struct Scope {
    /// The group offsets and broker locks live under: the consumer's group, or
    /// `<group>_<clientId>` for a broadcast clientId.
    pub broker_group: String,
    pub topic: String,
    pub retry_topic: String,
    cfg: ConsumerConfig,
    table: Mutex<ScopeTable>,
    held: Mutex<HashMap<QueueKey, Held>>,
    /// Broker locks being given back: not leasable until the unlock has been answered, or the
    /// unlock could land after a new lease and free a queue this instance serves.
    releasing: Mutex<std::collections::HashSet<QueueKey>>,
    queues_at: Mutex<i64>,
    settings: Mutex<ScopeSettings>,
}

/// Runtime settings of a scope, changed through `/mq/consumer/config`. They live in this
/// instance's memory: send the call to every instance.
#[derive(Debug, Clone)]
pub struct ScopeSettings {
    pub paused: bool,
    pub max_pull_size: u32,
    pub consume_timeout_ms: u64,
    pub rate: Option<crate::rate::RateLimiter>,
    /// Unique keys of messages to hand out again in `retryMsgList` (MQCloud's resend).
    pub resend: std::collections::VecDeque<String>,
}

impl Scope {
    fn mq(&self, key: &QueueKey) -> MessageQueue {
        let topic = if key.retry {
            &self.retry_topic
        } else {
            &self.topic
        };
        MessageQueue::new(topic.clone(), key.broker_name.clone(), key.queue_id)
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct AckInfo {
    pub status: u16,
    pub message: String,
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueInfo {
    pub message_queue: MessageQueueView,
    pub max_offset: i64,
    pub committed_offset: i64,
    pub lock_timestamp: i64,
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageQueueView {
    pub topic: String,
    pub broker_name: String,
    pub queue_id: i32,
}

/// One queue's line in the backlog report.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueOffsetView {
    pub message_queue: MessageQueueView,
    pub max_offset: i64,
    pub committed_offset: Option<i64>,
    pub backlog: i64,
    pub lock_timestamp: Option<i64>,
    pub last_consume_timestamp: Option<i64>,
    pub last_consume_client_ip: Option<String>,
    pub broker_group: String,
}

/// The body of `/mq/consumer/config` (MQCloud's ConsumerConfigParam).
#[derive(Debug, Clone, Default)]
pub struct ConsumerConfigChange {
    pub consumer: String,
    pub client_id: Option<String>,
    pub max_pull_size: Option<u32>,
    pub consume_timeout_ms: Option<u64>,
    pub pause: Option<bool>,
    pub rate_limit_enabled: Option<bool>,
    pub limit_rate: Option<f64>,
    pub reset_offset_timestamp: Option<i64>,
    pub retry_msg_id: Option<String>,
}

/// What `/mq/message` returns.
#[derive(Debug)]
pub struct FetchResult {
    pub status: &'static str,
    pub request_id: Option<String>,
    pub messages: Vec<MessageExt>,
    pub retry_messages: Vec<MessageExt>,
    pub ack_info: Option<AckInfo>,
    pub queue_info: Option<QueueInfo>,
}

pub struct FetchRequest {
    pub consumer: String,
    pub topic: String,
    pub request_id: Option<RequestId>,
    pub client_id: Option<String>,
    pub client_ip: Option<String>,
    pub wait: Duration,
}

enum Attempt {
    Found(FetchResult),
    Empty,
    Skipped,
}

/// Broker locks are renewed this often (the broker keeps them 60 s).
const RENEW_EVERY_MS: i64 = 20_000;
/// A broker lock not renewed for this long is not trusted (spec 17.2's 30 s).
const LOCK_TRUST_MS: i64 = 30_000;
/// A queue no HTTP consumer holds is given back to the broker after this long, so another
/// gateway instance can serve it.
const IDLE_UNLOCK_MS: i64 = 3_000;
/// A queue another instance holds is not asked for again before this long.
const HELD_ELSEWHERE_MS: i64 = 5_000;
/// A queue just found empty is not pulled again before this long.
const EMPTY_BACKOFF_MS: i64 = 300;
const QUEUE_REFRESH_MS: i64 = 30_000;
/// Broadcast clientIds one consumer may have on one instance.
const MAX_BROADCAST_CLIENTS: usize = 1024;

pub struct Gateway {
    client: MQClient,
    producers: HashMap<String, ProducerEntry>,
    consumers: HashMap<String, Arc<ConsumerEntry>>,
    /// The client id this instance locks queues under.
    instance_id: String,
    arrivals: Mutex<HashMap<String, Arc<Notify>>>,
    stopping: AtomicBool,
    admin_token: Option<String>,
}

/// A clientId as part of a group name: `[A-Za-z0-9-]` kept, every other byte as `_XX` (hex),
/// so distinct clientIds never share a broker group.
fn sanitize_group_part(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("_{b:02X}"));
        }
    }
    out
}

impl Gateway {
    /// The first offset of `mq` whose message was stored at or after `ts`. SEARCH_OFFSET_BY_TIMESTAMP
    /// alone is not that: for a time after the newest message, Java 4.9 answers that message's
    /// offset and rocketmq-rust 1.0 the queue's max offset (docs/broker-differences.md), so the
    /// message at the answer is checked.
    async fn offset_at_time(
        &self,
        group: &str,
        mq: &MessageQueue,
        ts: i64,
    ) -> Result<i64, rmq_client::ClientError> {
        let off = self.client.search_offset(mq, ts).await?;
        let mut req = PullRequest::new(group.to_owned(), off);
        req.max_msgs = 1;
        let r = self.client.pull(mq, &req).await?;
        Ok(match r.messages.first() {
            Some(m) if m.queue_offset == off && m.store_timestamp < ts => off + 1,
            _ => off,
        })
    }

    pub fn new(config: &Config) -> Result<Arc<Gateway>, GatewayError> {
        let mut cc = ClientConfig::new(&config.namesrv.join(";"));
        cc.credentials = match (&config.access_key, &config.secret_key) {
            (Some(a), Some(s)) => Some(AclCredentials {
                access_key: a.clone(),
                secret_key: s.clone(),
                security_token: None,
            }),
            _ => None,
        };
        cc.instance_name = format!("rmq-gateway@{}#{}", std::process::id(), now_ms());
        let client = MQClient::start(cc).map_err(internal)?;
        let instance_id = client.client_id();
        let producers = config
            .producers
            .iter()
            .map(|p| {
                let mut pc = rmq_client::ProducerConfig::new(
                    p.group.clone().unwrap_or_else(|| p.name.clone()),
                );
                pc.auto_create_topic = true;
                (
                    p.name.clone(),
                    ProducerEntry {
                        topic: p.topic.clone(),
                        producer: Producer::new(client.clone(), pc),
                    },
                )
            })
            .collect();
        let consumers = config
            .consumers
            .iter()
            .map(|c| {
                (
                    c.name.clone(),
                    Arc::new(ConsumerEntry {
                        cfg: c.clone(),
                        group: c.group.clone().unwrap_or_else(|| c.name.clone()),
                        scopes: Mutex::new(HashMap::new()),
                    }),
                )
            })
            .collect();
        Ok(Arc::new(Gateway {
            client,
            producers,
            consumers,
            instance_id,
            arrivals: Mutex::new(HashMap::new()),
            stopping: AtomicBool::new(false),
            admin_token: config.admin_token.clone().filter(|t| !t.is_empty()),
        }))
    }

    pub fn client(&self) -> &MQClient {
        &self.client
    }

    /// Whether `authorization` (an HTTP Authorization header) may change consumer settings.
    pub fn admin_allowed(&self, authorization: Option<&str>) -> Result<(), GatewayError> {
        let Some(token) = &self.admin_token else {
            return Err(GatewayError::Forbidden(
                "the admin API is off: set admin_token (or RMQ_GATEWAY_ADMIN_TOKEN)".into(),
            ));
        };
        let given = authorization
            .and_then(|a| a.strip_prefix("Bearer "))
            .map(str::trim);
        // Compare without an early exit, so timing does not tell how much matched.
        let ok = given.is_some_and(|g| {
            g.len() == token.len()
                && g.bytes()
                    .zip(token.bytes())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0
        });
        if ok {
            Ok(())
        } else {
            Err(GatewayError::Forbidden(
                "missing or wrong admin token".into(),
            ))
        }
    }

    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    fn arrivals(&self, topic: &str) -> Arc<Notify> {
        self.arrivals
            .lock()
            .entry(topic.to_owned())
            .or_default()
            .clone()
    }

    // ---- produce --------------------------------------------------------------------------

    fn producer(&self, name: &str) -> Result<&ProducerEntry, GatewayError> {
        if name.is_empty() {
            return Err(GatewayError::BadRequest("producer is required".into()));
        }
        self.producers.get(name).ok_or_else(|| {
            GatewayError::BadRequest(format!(
                "unknown producer {name:?}: not in the gateway's configuration"
            ))
        })
    }

    fn build_message(topic: &str, r: &ProduceRequest) -> Result<Message, GatewayError> {
        if r.message.is_empty() {
            return Err(GatewayError::BadRequest("message is required".into()));
        }
        let mut m = Message::new(topic, r.message.clone());
        if let Some(k) = r.keys.as_deref().map(str::trim).filter(|k| !k.is_empty()) {
            m = m.with_keys(k.split_whitespace());
        }
        if let Some(t) = r.tags.as_deref().filter(|t| !t.is_empty()) {
            m = m.with_tags(t);
        }
        if let Some(l) = r.delay_level {
            if !(1..=18).contains(&l) {
                return Err(GatewayError::BadRequest(format!(
                    "delayLevel {l} must be 1..18"
                )));
            }
            m = m.with_delay_level(l as u8);
        }
        if let Some(ts) = r.delivery_timestamp {
            if r.delay_level.is_some() {
                return Err(GatewayError::BadRequest(
                    "delayLevel and deliveryTimestamp exclude each other".into(),
                ));
            }
            if ts <= 0 {
                return Err(GatewayError::BadRequest(format!(
                    "deliveryTimestamp {ts} is not a time in ms"
                )));
            }
            m = m.with_deliver_at(ts);
        }
        Ok(m)
    }

    pub async fn produce(&self, r: ProduceRequest) -> Result<SendResult, GatewayError> {
        let p = self.producer(&r.producer)?;
        let msg = Self::build_message(&p.topic, &r)?;
        let selector = match r.order_id.as_deref().filter(|o| !o.is_empty()) {
            Some(o) => QueueSelector::Key(o.to_owned()),
            None => QueueSelector::RoundRobin,
        };
        let res = p
            .producer
            .send_with(msg, selector)
            .await
            .map_err(GatewayError::from_send)?;
        self.note_arrival(&res);
        self.arrivals(&p.topic).notify_waiters();
        Ok(res)
    }

    /// Tells the consumers of the topic that a queue has a new message, so a fetch right after
    /// does not skip it as "found empty a moment ago".
    fn note_arrival(&self, r: &SendResult) {
        let key = QueueKey::new(false, r.queue.broker_name.clone(), r.queue.queue_id);
        for entry in self
            .consumers
            .values()
            .filter(|c| c.cfg.topic == r.queue.topic)
        {
            for scope in entry.scopes.lock().values() {
                scope.table.lock().note_message(&key, r.queue_offset);
            }
        }
    }

    /// Sends each body; the result lists one outcome per input, in order.
    pub async fn produce_batch(
        &self,
        producer: &str,
        bodies: Vec<Bytes>,
    ) -> Result<Vec<Result<(), GatewayError>>, GatewayError> {
        let p = self.producer(producer)?;
        if bodies.is_empty() {
            return Err(GatewayError::BadRequest(
                "messages is an empty array".into(),
            ));
        }
        let max = p.producer.config().max_message_size;
        let mut results: Vec<Option<Result<(), GatewayError>>> = Vec::with_capacity(bodies.len());
        let mut chunk: Vec<(usize, Message)> = Vec::new();
        let mut chunk_bytes = 0usize;
        let mut pending: Vec<Vec<(usize, Message)>> = Vec::new();
        for (i, b) in bodies.into_iter().enumerate() {
            results.push(None);
            if b.is_empty() {
                results[i] = Some(Err(GatewayError::BadRequest("empty message".into())));
                continue;
            }
            if b.len() > max {
                results[i] = Some(Err(GatewayError::BadRequest(format!(
                    "message body too long: {} bytes, the limit is {max}",
                    b.len()
                ))));
                continue;
            }
            // Leave room for each item's header and properties in the 4 MiB batch.
            let cost = b.len() + 200;
            if chunk_bytes + cost > max && !chunk.is_empty() {
                pending.push(std::mem::take(&mut chunk));
                chunk_bytes = 0;
            }
            chunk_bytes += cost;
            chunk.push((i, Message::new(&p.topic, b)));
        }
        if !chunk.is_empty() {
            pending.push(chunk);
        }
        for c in pending {
            let idx: Vec<usize> = c.iter().map(|(i, _)| *i).collect();
            let msgs: Vec<Message> = c.into_iter().map(|(_, m)| m).collect();
            let n = msgs.len() as i64;
            let r = p.producer.send_batch(msgs, QueueSelector::RoundRobin).await;
            if let Ok(res) = &r {
                let mut last = res.clone();
                last.queue_offset += n - 1;
                self.note_arrival(&last);
            }
            for i in idx {
                results[i] = Some(match &r {
                    Ok(_) => Ok(()),
                    Err(e) => Err(match e {
                        ClientError::Timeout { .. } | ClientError::ConnectionClosed { .. } => {
                            GatewayError::Unknown(format!("send outcome unknown: {e}"))
                        }
                        e => GatewayError::Internal(e.to_string()),
                    }),
                });
            }
        }
        self.arrivals(&p.topic).notify_waiters();
        Ok(results.into_iter().map(|r| r.unwrap_or(Ok(()))).collect())
    }

    // ---- consume --------------------------------------------------------------------------

    async fn scope(
        &self,
        consumer: &str,
        topic: &str,
        client_id: Option<&str>,
    ) -> Result<Arc<Scope>, GatewayError> {
        if consumer.is_empty() {
            return Err(GatewayError::BadRequest("consumer is required".into()));
        }
        let entry = self.consumers.get(consumer).ok_or_else(|| {
            GatewayError::BadRequest(format!(
                "unknown consumer {consumer:?}: not in the gateway's configuration"
            ))
        })?;
        if topic.is_empty() {
            return Err(GatewayError::BadRequest("topic is required".into()));
        }
        if topic != entry.cfg.topic {
            return Err(GatewayError::BadRequest(format!(
                "consumer {consumer} subscribes {} but the request asks for {topic}",
                entry.cfg.topic
            )));
        }
        let client_id = client_id.filter(|c| !c.is_empty());
        match (entry.cfg.mode, client_id) {
            (Mode::Clustering, Some(_)) => {
                return Err(GatewayError::BadRequest(format!(
                    "consumer {consumer} consumes in clustering mode: no clientId needed"
                )))
            }
            (Mode::Broadcast, None) => {
                return Err(GatewayError::BadRequest(format!(
                    "consumer {consumer} consumes in broadcast mode: clientId is required"
                )))
            }
            _ => {}
        }
        if let Some(c) = client_id {
            if c.len() > 64 {
                return Err(GatewayError::BadRequest(
                    "clientId longer than 64 characters".into(),
                ));
            }
        }
        let key = client_id.map(str::to_owned);
        {
            let scopes = entry.scopes.lock();
            if let Some(s) = scopes.get(&key) {
                return Ok(s.clone());
            }
            // Each clientId costs a broker group, a heartbeat entry and memory: bound them.
            if scopes.len() >= MAX_BROADCAST_CLIENTS {
                return Err(GatewayError::BadRequest(format!(
                    "consumer {consumer} already serves {MAX_BROADCAST_CLIENTS} clientIds on this instance"
                )));
            }
        }
        let broker_group = match client_id {
            None => entry.group.clone(),
            Some(c) => format!("{}_{}", entry.group, sanitize_group_part(c)),
        };
        let scope = Arc::new(Scope {
            retry_topic: format!("%RETRY%{broker_group}"),
            broker_group,
            topic: entry.cfg.topic.clone(),
            cfg: entry.cfg.clone(),
            table: Mutex::new(ScopeTable::new()),
            held: Mutex::new(HashMap::new()),
            releasing: Mutex::new(std::collections::HashSet::new()),
            queues_at: Mutex::new(0),
            settings: Mutex::new(ScopeSettings {
                paused: false,
                max_pull_size: entry.cfg.max_pull_size,
                consume_timeout_ms: entry.cfg.consume_timeout_ms,
                rate: None,
                resend: std::collections::VecDeque::new(),
            }),
        });
        self.client.register_consumer(ConsumerData {
            consume_from_where: match entry.cfg.start_from {
                StartFrom::Earliest => ConsumeFromWhere::FirstOffset,
                StartFrom::Latest => ConsumeFromWhere::LastOffset,
            },
            consume_type: ConsumeType::Actively,
            group_name: scope.broker_group.clone(),
            // Broadcast clientIds each have a group of their own, so the broker sees them as
            // clustering groups of one.
            message_model: MessageModel::Clustering,
            subscription_data_set: vec![
                SubscriptionData::tags(scope.topic.clone(), "*", 0),
                SubscriptionData::tags(scope.retry_topic.clone(), "*", 0),
            ],
            unit_mode: false,
        });
        self.refresh_queues(&scope).await?;
        // Announce the group so brokers create its retry topic and tooling sees it.
        if let Ok(route) = self.client.route(&scope.topic).await {
            for addr in route.master_addrs() {
                if let Err(e) = self.client.heartbeat(&addr).await {
                    warn!(broker = %addr, error = %e, "heartbeat failed");
                }
            }
        }
        let mut scopes = entry.scopes.lock();
        Ok(scopes.entry(key).or_insert(scope).clone())
    }

    async fn refresh_queues(&self, scope: &Scope) -> Result<(), GatewayError> {
        let route = self.client.route(&scope.topic).await.map_err(|e| match e {
            ClientError::TopicNotExist(t) => {
                GatewayError::Internal(format!("topic {t} does not exist"))
            }
            e => internal(e),
        })?;
        let mut keys: Vec<QueueKey> = route
            .subscribe_queues
            .iter()
            .map(|q| QueueKey::new(false, q.broker_name.clone(), q.queue_id))
            .collect();
        match self.client.route(&scope.retry_topic).await {
            Ok(r) => keys.extend(
                r.subscribe_queues
                    .iter()
                    .map(|q| QueueKey::new(true, q.broker_name.clone(), q.queue_id)),
            ),
            Err(ClientError::TopicNotExist(_)) => {}
            Err(e) => debug!(error = %e, "retry topic route unavailable"),
        }
        let now = now_ms();
        scope.table.lock().set_queues(keys, now);
        *scope.queues_at.lock() = now;
        Ok(())
    }

    /// `/mq/message`: acks `request_id` if given, then leases one queue and returns its batch.
    pub async fn fetch(&self, r: FetchRequest) -> Result<FetchResult, GatewayError> {
        if self.stopping.load(Ordering::Acquire) {
            return Err(GatewayError::Internal(
                "the gateway is shutting down".into(),
            ));
        }
        let scope = self
            .scope(&r.consumer, &r.topic, r.client_id.as_deref())
            .await?;
        let ack_info = match &r.request_id {
            Some(rid) => Some(self.ack_in(&scope, rid).await),
            None => None,
        };
        let (paused, limited, resend) = {
            let mut st = scope.settings.lock();
            let limited = st
                .rate
                .as_mut()
                .is_some_and(|r| !r.try_acquire(now_ms(), 1.0));
            (st.paused, limited, st.resend.pop_front())
        };
        let status = if paused {
            Some("PAUSED")
        } else if limited {
            Some("RATE_LIMITED")
        } else {
            None
        };
        if let Some(status) = status {
            return Ok(FetchResult {
                status,
                request_id: None,
                messages: Vec::new(),
                retry_messages: Vec::new(),
                ack_info,
                queue_info: None,
            });
        }
        let mut resent = Vec::new();
        if let Some(id) = resend {
            resent = self.find_by_unique_key(&scope.topic, &id).await;
            if resent.is_empty() {
                warn!(msg_id = %id, "message to resend not found");
            }
        }
        if now_ms() - *scope.queues_at.lock() > QUEUE_REFRESH_MS {
            if let Err(e) = self.refresh_queues(&scope).await {
                warn!(error = %e, "queue refresh failed");
            }
        }
        let mut result = self.fetch_batch(&scope, &r, ack_info).await?;
        if let Some(rate) = scope.settings.lock().rate.as_mut() {
            rate.take(result.messages.len() as f64 + result.retry_messages.len() as f64 - 1.0);
        }
        resent.append(&mut result.retry_messages);
        result.retry_messages = resent;
        if result.status == "NO_NEW_MSG" && !result.retry_messages.is_empty() {
            result.status = "FOUND";
        }
        Ok(result)
    }

    async fn find_by_unique_key(&self, topic: &str, id: &str) -> Vec<MessageExt> {
        let now = now_ms();
        // UNIQ_KEYs carry no time the broker can use; search the broker's whole index window.
        match self
            .client
            .query_message(topic, id, true, 32, 0, now + 60_000)
            .await
        {
            Ok(mut v) => {
                v.truncate(1);
                v
            }
            Err(e) => {
                warn!(msg_id = %id, error = %e, "query by unique key failed");
                Vec::new()
            }
        }
    }

    async fn fetch_batch(
        &self,
        scope: &Arc<Scope>,
        r: &FetchRequest,
        ack_info: Option<AckInfo>,
    ) -> Result<FetchResult, GatewayError> {
        let deadline = now_ms() + r.wait.as_millis() as i64;
        let arrivals = self.arrivals(&scope.topic);
        loop {
            let notified = arrivals.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let now = now_ms();
            let candidates = scope.table.lock().candidates(now, EMPTY_BACKOFF_MS);
            let mut last_err = None;
            for key in candidates {
                let recently_empty = scope
                    .table
                    .lock()
                    .get(&key)
                    .is_some_and(|s| s.recently_empty(now, EMPTY_BACKOFF_MS));
                if recently_empty {
                    continue;
                }
                match self.attempt(scope, &key, r.client_ip.clone()).await {
                    Ok(Attempt::Found(mut res)) => {
                        res.ack_info = ack_info;
                        return Ok(res);
                    }
                    Ok(Attempt::Empty) | Ok(Attempt::Skipped) => {}
                    Err(e) => {
                        warn!(queue = ?key, error = %e, "pull failed");
                        last_err = Some(e);
                    }
                }
            }
            let remaining = deadline - now_ms();
            if remaining <= 0 || self.stopping.load(Ordering::Acquire) {
                if let Some(e) = last_err {
                    return Err(e);
                }
                return Ok(FetchResult {
                    status: "NO_NEW_MSG",
                    request_id: None,
                    messages: Vec::new(),
                    retry_messages: Vec::new(),
                    ack_info,
                    queue_info: None,
                });
            }
            // Wake up at once for messages produced through this gateway; poll the broker
            // for the rest.
            let nap = Duration::from_millis(remaining.clamp(1, EMPTY_BACKOFF_MS) as u64);
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(nap) => {}
            }
        }
    }

    async fn ensure_broker_lock(
        &self,
        scope: &Scope,
        key: &QueueKey,
        now: i64,
    ) -> Result<bool, GatewayError> {
        if scope.releasing.lock().contains(key) {
            return Ok(false);
        }
        if let Some(h) = scope.held.lock().get(key) {
            if now - h.renewed_at < LOCK_TRUST_MS {
                return Ok(true);
            }
        }
        let mq = scope.mq(key);
        let granted = self
            .client
            .lock_batch_as(
                &scope.broker_group,
                &self.instance_id,
                &key.broker_name,
                std::slice::from_ref(&mq),
            )
            .await
            .map_err(internal)?;
        if granted.contains(&mq) {
            scope.held.lock().insert(
                key.clone(),
                Held {
                    renewed_at: now,
                    idle_since: None,
                },
            );
            Ok(true)
        } else {
            scope.held.lock().remove(key);
            Ok(false)
        }
    }

    async fn start_offset(&self, scope: &Scope, mq: &MessageQueue) -> Result<i64, GatewayError> {
        if let Some(o) = self
            .client
            .query_consumer_offset(&scope.broker_group, mq)
            .await
            .map_err(internal)?
        {
            // 4.9 brokers answer 0 for groups that never committed (spec 11.3.2): only a
            // positive offset is surely a commit.
            if o > 0 || scope.cfg.start_from == StartFrom::Earliest {
                return Ok(o);
            }
        }
        match scope.cfg.start_from {
            StartFrom::Earliest => self.client.min_offset(mq).await.map_err(internal),
            StartFrom::Latest => self.client.max_offset(mq).await.map_err(internal),
        }
    }

    async fn attempt(
        &self,
        scope: &Scope,
        key: &QueueKey,
        client_ip: Option<String>,
    ) -> Result<Attempt, GatewayError> {
        let now = now_ms();
        if !self.ensure_broker_lock(scope, key, now).await? {
            scope
                .table
                .lock()
                .mark_held_elsewhere(key, now + HELD_ELSEWHERE_MS);
            return Ok(Attempt::Skipped);
        }
        let mq = scope.mq(key);
        let timeout = scope.settings.lock().consume_timeout_ms as i64;
        let provisional = scope
            .table
            .lock()
            .get(key)
            .and_then(|s| s.committed)
            .unwrap_or(0);
        let lease = match scope
            .table
            .lock()
            .lease(key, provisional, now_ms(), timeout, client_ip)
        {
            Ok(l) => l,
            Err(_) => return Ok(Attempt::Skipped),
        };
        // The broker's committed offset is the truth (another instance may have moved it); read
        // it only now that the lease keeps this instance's other requests off the queue.
        let offset = match self.start_offset(scope, &mq).await {
            Ok(o) => o,
            Err(e) => {
                scope.table.lock().release(key, lease.lock_time);
                return Err(e);
            }
        };
        scope
            .table
            .lock()
            .rebase_lease(key, lease.lock_time, offset);
        if let Some(h) = scope.held.lock().get_mut(key) {
            h.idle_since = None;
        }
        let mut req = PullRequest::new(scope.broker_group.clone(), offset);
        req.max_msgs = scope.settings.lock().max_pull_size as i32;
        let pulled = self.client.pull(&mq, &req).await;
        let r = match pulled {
            Ok(r) => r,
            Err(e) => {
                scope.table.lock().release(key, lease.lock_time);
                return Err(internal(e));
            }
        };
        let found = r.status == PullStatus::Found && !r.messages.is_empty();
        scope.table.lock().record_pull(
            key,
            lease.lock_time,
            r.next_begin_offset,
            r.max_offset,
            found,
            now_ms(),
        );
        if found {
            let rid = RequestId {
                queue: key.clone(),
                offset,
                next_offset: r.next_begin_offset,
                lock_time: lease.lock_time,
                force: false,
            };
            let info = QueueInfo {
                message_queue: MessageQueueView {
                    topic: mq.topic.clone(),
                    broker_name: mq.broker_name.clone(),
                    queue_id: mq.queue_id,
                },
                max_offset: r.max_offset,
                committed_offset: offset,
                lock_timestamp: lease.lock_time,
            };
            let (messages, retry_messages) = if key.retry {
                (Vec::new(), r.messages)
            } else {
                (r.messages, Vec::new())
            };
            return Ok(Attempt::Found(FetchResult {
                status: "FOUND",
                request_id: Some(rid.encode()),
                messages,
                retry_messages,
                ack_info: None,
                queue_info: Some(info),
            }));
        }
        // Nothing to hand out: move past filtered-out or vanished offsets, then give the
        // queue back at once (no requestId), as MQ-Proxy does.
        let corrected = match r.status {
            PullStatus::OffsetIllegal | PullStatus::NoMatchedMsg | PullStatus::Found
                if r.next_begin_offset != offset =>
            {
                Some(r.next_begin_offset)
            }
            _ => None,
        };
        if let Some(next) = corrected {
            info!(queue = ?key, from = offset, to = next, status = ?r.status, "moving the committed offset");
            if self
                .client
                .update_consumer_offset(&scope.broker_group, &mq, next, false)
                .await
                .is_ok()
            {
                scope.table.lock().set_committed(key, next);
            }
        }
        scope.table.lock().release(key, lease.lock_time);
        Ok(Attempt::Empty)
    }

    async fn ack_in(&self, scope: &Scope, rid: &RequestId) -> AckInfo {
        let key = &rid.queue;
        let mq = scope.mq(key);
        let outcome = scope.table.lock().ack(key, &rid.ack_token());
        let desc = format!(
            "{}-{}:{},{},{}",
            key.broker_name, key.queue_id, rid.offset, rid.next_offset, rid.lock_time
        );
        match outcome {
            AckOutcome::Commit { from, to } => {
                let r = self
                    .client
                    .update_consumer_offset(&scope.broker_group, &mq, to, false)
                    .await;
                let ok = r.is_ok();
                scope.table.lock().finish_commit(key, rid.lock_time, to, ok);
                match r {
                    Ok(()) => AckInfo {
                        status: 200,
                        message: format!("ok {desc} committed {from}->{to}"),
                    },
                    Err(e) => AckInfo {
                        status: 500,
                        message: format!("commit failed {desc}: {e}; the batch will come again"),
                    },
                }
            }
            AckOutcome::Released => AckInfo {
                status: 200,
                message: format!("ok {desc} nothing to commit"),
            },
            AckOutcome::Stale { current_lock_time } => AckInfo {
                status: 409,
                message: format!("ack lockTime small than {current_lock_time}: {desc} expired and was leased again"),
            },
            AckOutcome::OffsetMoved { committed } => AckInfo {
                status: 409,
                message: format!("offset has committed {desc}: committed is {committed:?}"),
            },
            AckOutcome::Mismatch { expected } => AckInfo {
                status: 400,
                message: format!("ack illegal {desc}: the batch ends at {expected}"),
            },
            AckOutcome::LockNotExist => self.foreign_ack(scope, rid, &mq, &desc).await,
        }
    }

    /// An ack this instance holds no lease for: another instance served the batch, or it was
    /// acked already. Commit only if the broker's offset is still where the batch began.
    async fn foreign_ack(
        &self,
        scope: &Scope,
        rid: &RequestId,
        mq: &MessageQueue,
        desc: &str,
    ) -> AckInfo {
        // Where this instance would start the queue: the committed offset, or for a group that
        // never committed, the configured start (the batch another instance served began there).
        match self.start_offset(scope, mq).await {
            Ok(c) if c == rid.offset && rid.next_offset > c => {
                // No lease vouches for this requestId: never commit past the queue's end, or a
                // forged or garbled nextOffset would skip every message up to it.
                match self.client.max_offset(mq).await {
                    Ok(max) if rid.next_offset > max => {
                        return AckInfo {
                            status: 400,
                            message: format!(
                                "requestId {desc} ends beyond the max offset {max}: not committed"
                            ),
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        return AckInfo {
                            status: 500,
                            message: format!("ack failed {desc}: {e}"),
                        }
                    }
                }
                match self
                    .client
                    .update_consumer_offset(&scope.broker_group, mq, rid.next_offset, false)
                    .await
                {
                    Ok(()) => {
                        scope
                            .table
                            .lock()
                            .set_committed(&rid.queue, rid.next_offset);
                        AckInfo {
                            status: 200,
                            message: format!(
                                "ok {desc} committed {c}->{} (no local lease)",
                                rid.next_offset
                            ),
                        }
                    }
                    Err(e) => AckInfo {
                        status: 500,
                        message: format!("commit failed {desc}: {e}"),
                    },
                }
            }
            Ok(c) => AckInfo {
                status: 200,
                message: format!("lock not exist {desc}: the queue stands at {c}, nothing to do"),
            },
            Err(e) => AckInfo {
                status: 500,
                message: format!("ack failed {desc}: {e}"),
            },
        }
    }

    /// `/mq/ack`.
    pub async fn ack(
        &self,
        consumer: &str,
        topic: &str,
        client_id: Option<&str>,
        rid: &RequestId,
    ) -> Result<AckInfo, GatewayError> {
        let scope = self.scope(consumer, topic, client_id).await?;
        Ok(self.ack_in(&scope, rid).await)
    }

    /// `/mq/unlock`: ends the lease without committing; the batch comes again at once.
    pub async fn unlock(
        &self,
        consumer: &str,
        topic: &str,
        client_id: Option<&str>,
        rid: &RequestId,
    ) -> Result<bool, GatewayError> {
        let scope = self.scope(consumer, topic, client_id).await?;
        let released = scope.table.lock().release(&rid.queue, rid.lock_time);
        Ok(released)
    }

    /// Renews broker locks of leased queues and gives idle ones back. Run about every second.
    pub async fn maintain_locks(&self) {
        let scopes: Vec<Arc<Scope>> = self
            .consumers
            .values()
            .flat_map(|c| c.scopes.lock().values().cloned().collect::<Vec<_>>())
            .collect();
        let now = now_ms();
        for scope in scopes {
            self.settle_foreign_acks(&scope, now).await;
            let mut renew: HashMap<String, Vec<MessageQueue>> = HashMap::new();
            let mut release: HashMap<String, Vec<(QueueKey, MessageQueue)>> = HashMap::new();
            {
                let mut held = scope.held.lock();
                // Read the leases under the `held` lock: `attempt` re-checks `held` after leasing,
                // so a queue is either seen leased here or seen released there.
                let leased = scope.table.lock().leased(now);
                for (key, h) in held.iter_mut() {
                    if leased.contains(key) {
                        h.idle_since = None;
                    } else {
                        h.idle_since.get_or_insert(now);
                    }
                    if h.idle_since.is_some_and(|t| now - t >= IDLE_UNLOCK_MS) {
                        release
                            .entry(key.broker_name.clone())
                            .or_default()
                            .push((key.clone(), scope.mq(key)));
                    } else if now - h.renewed_at >= RENEW_EVERY_MS {
                        renew
                            .entry(key.broker_name.clone())
                            .or_default()
                            .push(scope.mq(key));
                    }
                }
                let mut releasing = scope.releasing.lock();
                for list in release.values() {
                    for (k, _) in list {
                        held.remove(k);
                        releasing.insert(k.clone());
                    }
                }
            }
            for (broker, items) in release {
                let keys: Vec<QueueKey> = items.iter().map(|(k, _)| k.clone()).collect();
                let mqs: Vec<MessageQueue> = items.into_iter().map(|(_, m)| m).collect();
                if let Err(e) = self
                    .client
                    .unlock_batch_as(&scope.broker_group, &self.instance_id, &broker, &mqs, false)
                    .await
                {
                    debug!(error = %e, "unlock of idle queues failed; the broker lets them expire");
                }
                let mut releasing = scope.releasing.lock();
                for k in &keys {
                    releasing.remove(k);
                }
            }
            for (broker, mqs) in renew {
                match self
                    .client
                    .lock_batch_as(&scope.broker_group, &self.instance_id, &broker, &mqs)
                    .await
                {
                    Ok(granted) => {
                        let mut held = scope.held.lock();
                        for mq in &mqs {
                            let key = QueueKey::new(
                                mq.topic == scope.retry_topic,
                                broker.clone(),
                                mq.queue_id,
                            );
                            if granted.contains(mq) {
                                if let Some(h) = held.get_mut(&key) {
                                    h.renewed_at = now;
                                }
                            } else {
                                warn!(queue = ?key, "broker lock lost");
                                held.remove(&key);
                            }
                        }
                    }
                    Err(e) => warn!(broker = %broker, error = %e, "lock renewal failed"),
                }
            }
        }
    }

    /// Refuses new fetches and ends long polls at once (their queues stay unleased).
    pub fn begin_shutdown(&self) {
        self.stopping.store(true, Ordering::Release);
        for n in self.arrivals.lock().values() {
            n.notify_waiters();
        }
    }

    /// Ends leases whose batch another instance committed (an ack that went to another gateway
    /// behind a load balancer), so the queue does not wait for the consume timeout.
    async fn settle_foreign_acks(&self, scope: &Scope, now: i64) {
        let timeout = scope.settings.lock().consume_timeout_ms as i64;
        let pending = scope.table.lock().pending_batches(now, 2_000, timeout);
        for key in pending {
            let mq = scope.mq(&key);
            if let Ok(Some(c)) = self
                .client
                .query_consumer_offset(&scope.broker_group, &mq)
                .await
            {
                if scope.table.lock().settle_committed_elsewhere(&key, c) {
                    debug!(queue = ?key, committed = c, "batch acked through another instance");
                }
            }
        }
    }

    // ---- administration (MQCloud's calls) ----------------------------------------------

    fn consumer_entry(&self, consumer: &str) -> Result<&Arc<ConsumerEntry>, GatewayError> {
        self.consumers.get(consumer).ok_or_else(|| {
            GatewayError::BadRequest(format!(
                "unknown consumer {consumer:?}: not in the gateway's configuration"
            ))
        })
    }

    /// The scopes a config call or report is about: the clustering group, one broadcast
    /// clientId, or every broadcast clientId this instance has seen.
    async fn scopes_for(
        &self,
        consumer: &str,
        client_id: Option<&str>,
    ) -> Result<Vec<(Option<String>, Arc<Scope>)>, GatewayError> {
        let entry = self.consumer_entry(consumer)?;
        match (entry.cfg.mode, client_id) {
            (Mode::Clustering, _) => {
                let s = self.scope(consumer, &entry.cfg.topic.clone(), None).await?;
                Ok(vec![(None, s)])
            }
            (Mode::Broadcast, Some(c)) => {
                let s = self
                    .scope(consumer, &entry.cfg.topic.clone(), Some(c))
                    .await?;
                Ok(vec![(Some(c.to_owned()), s)])
            }
            (Mode::Broadcast, None) => Ok(entry
                .scopes
                .lock()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()),
        }
    }

    /// Backlog per queue: the broker's max and committed offsets, and this instance's leases.
    pub async fn queue_offsets(
        &self,
        consumer: &str,
        client_id: Option<&str>,
    ) -> Result<Vec<(Option<String>, Vec<QueueOffsetView>)>, GatewayError> {
        let mut out = Vec::new();
        for (cid, scope) in self.scopes_for(consumer, client_id).await? {
            // (queue, lock time, last consume, last client ip)
            type Row = (QueueKey, Option<i64>, Option<i64>, Option<String>);
            let keys: Vec<Row> = scope
                .table
                .lock()
                .queues()
                .map(|(k, s)| {
                    (
                        k.clone(),
                        s.lease.as_ref().map(|l| l.lock_time),
                        s.last_consume_ms,
                        s.last_client_ip.clone(),
                    )
                })
                .collect();
            let mut views = Vec::with_capacity(keys.len());
            for (key, lock, last, ip) in keys {
                let mq = scope.mq(&key);
                let max = self.client.max_offset(&mq).await.map_err(internal)?;
                let committed = self
                    .client
                    .query_consumer_offset(&scope.broker_group, &mq)
                    .await
                    .map_err(internal)?;
                views.push(QueueOffsetView {
                    message_queue: MessageQueueView {
                        topic: mq.topic.clone(),
                        broker_name: mq.broker_name.clone(),
                        queue_id: mq.queue_id,
                    },
                    max_offset: max,
                    committed_offset: committed,
                    backlog: (max - committed.unwrap_or(0)).max(0),
                    lock_timestamp: lock,
                    last_consume_timestamp: last,
                    last_consume_client_ip: ip,
                    broker_group: scope.broker_group.clone(),
                });
            }
            out.push((cid, views));
        }
        Ok(out)
    }

    /// MQCloud's `/mq/consumer/config`: pause, rate limit, pull size, timeout, offset reset,
    /// resend. Returns what was done.
    pub async fn configure(&self, c: ConsumerConfigChange) -> Result<Vec<String>, GatewayError> {
        if let Some(n) = c.max_pull_size {
            if !(1..=128).contains(&n) {
                return Err(GatewayError::BadRequest(
                    "maxPullSize must be 1..128".into(),
                ));
            }
        }
        if let Some(t) = c.consume_timeout_ms {
            if !(10_000..=129_600_000).contains(&t) {
                return Err(GatewayError::BadRequest(
                    "consumeTimeoutInMillis must be 10000..129600000".into(),
                ));
            }
        }
        if let Some(r) = c.limit_rate {
            if r < 1.0 {
                return Err(GatewayError::BadRequest(
                    "limitRate must be at least 1".into(),
                ));
            }
        }
        if c.reset_offset_timestamp.is_some_and(|t| t < 0) {
            return Err(GatewayError::BadRequest(
                "resetOffsetTimestamp must be >= 0".into(),
            ));
        }
        let scopes = self.scopes_for(&c.consumer, c.client_id.as_deref()).await?;
        if scopes.is_empty() {
            return Err(GatewayError::BadRequest(format!(
                "no clientId of broadcast consumer {} has fetched through this instance yet; pass clientId",
                c.consumer
            )));
        }
        let mut done = Vec::new();
        for (cid, scope) in scopes {
            let who = match &cid {
                Some(c) => format!("{}:{c}", scope.broker_group),
                None => scope.broker_group.clone(),
            };
            {
                let mut st = scope.settings.lock();
                if let Some(p) = c.pause {
                    st.paused = p;
                    done.push(format!("{who} pause={p}"));
                }
                if let Some(n) = c.max_pull_size {
                    st.max_pull_size = n;
                    done.push(format!("{who} maxPullSize={n}"));
                }
                if let Some(t) = c.consume_timeout_ms {
                    st.consume_timeout_ms = t;
                    done.push(format!("{who} consumeTimeoutInMillis={t}"));
                }
                match (c.rate_limit_enabled, c.limit_rate) {
                    (Some(false), _) => {
                        st.rate = None;
                        done.push(format!("{who} rate limit off"));
                    }
                    (Some(true), r) | (None, r @ Some(_)) => {
                        let per_sec = r
                            .or(st.rate.as_ref().map(|x| x.per_sec()))
                            .unwrap_or(1024.0);
                        st.rate = Some(crate::rate::RateLimiter::new(per_sec, now_ms()));
                        done.push(format!("{who} rate limit {per_sec}/s"));
                    }
                    (None, None) => {}
                }
                if let Some(id) = c.retry_msg_id.as_deref().filter(|s| !s.is_empty()) {
                    st.resend.push_back(id.to_owned());
                    done.push(format!("{who} resend {id} at the next fetch"));
                }
            }
            if let Some(ts) = c.reset_offset_timestamp {
                self.refresh_queues(&scope).await?;
                let keys: Vec<QueueKey> = scope
                    .table
                    .lock()
                    .queues()
                    .map(|(k, _)| k.clone())
                    .filter(|k| !k.retry)
                    .collect();
                scope.table.lock().drop_leases();
                let mut refused = Vec::new();
                for key in keys {
                    let mq = scope.mq(&key);
                    let off = self
                        .offset_at_time(&scope.broker_group, &mq, ts)
                        .await
                        .map_err(internal)?;
                    self.client
                        .update_consumer_offset(&scope.broker_group, &mq, off, false)
                        .await
                        .map_err(internal)?;
                    // Java brokers store any offset; rocketmq-rust 1.0 answers SUCCESS but keeps
                    // a larger one. Read it back rather than report a reset that did not happen.
                    let now_at = self
                        .client
                        .query_consumer_offset(&scope.broker_group, &mq)
                        .await
                        .map_err(internal)?;
                    scope
                        .table
                        .lock()
                        .set_committed(&key, now_at.unwrap_or(off));
                    if now_at.is_some_and(|o| o != off) {
                        refused.push(format!(
                            "{}-{}: asked {off}, broker kept {}",
                            key.broker_name,
                            key.queue_id,
                            now_at.unwrap_or_default()
                        ));
                    } else {
                        done.push(format!(
                            "{who} {}-{} reset to {off}",
                            key.broker_name, key.queue_id
                        ));
                    }
                }
                if !refused.is_empty() {
                    return Err(GatewayError::Internal(format!(
                        "the broker refused to move offsets backwards ({}); done: {}",
                        refused.join("; "),
                        done.join("; ")
                    )));
                }
            }
        }
        Ok(done)
    }

    /// Stops serving, gives every broker lock back, unregisters from the brokers.
    pub async fn shutdown(&self) {
        self.begin_shutdown();
        let scopes: Vec<Arc<Scope>> = self
            .consumers
            .values()
            .flat_map(|c| c.scopes.lock().values().cloned().collect::<Vec<_>>())
            .collect();
        for scope in scopes {
            let held: Vec<QueueKey> = scope.held.lock().drain().map(|(k, _)| k).collect();
            let mut by_broker: HashMap<String, Vec<MessageQueue>> = HashMap::new();
            for k in &held {
                by_broker
                    .entry(k.broker_name.clone())
                    .or_default()
                    .push(scope.mq(k));
            }
            for (broker, mqs) in by_broker {
                if let Err(e) = self
                    .client
                    .unlock_batch_as(&scope.broker_group, &self.instance_id, &broker, &mqs, false)
                    .await
                {
                    warn!(error = %e, "unlock at shutdown failed");
                }
            }
        }
        self.client.shutdown().await;
    }
}
