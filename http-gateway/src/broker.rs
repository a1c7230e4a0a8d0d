//! The broker seam: every broker call the gateway makes, as one trait ([`BrokerApi`]), with
//! [`ClientBroker`] over rmq-client for the real thing (and `testing::MemBroker` in memory).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use rmq_client::{ClientConfig, ClientError, MQClient, Producer};
use rmq_client::{MessageKey, PullRequest};
use rmq_remoting::acl::AclCredentials;
use rmq_remoting::body::{
    ConsumeFromWhere, ConsumeType, ConsumerData, MessageModel, MessageQueue, SubscriptionData,
};
use rmq_remoting::message::MessageExt;
use tracing::warn;

pub use rmq_client::{Message, QueueSelector};

use crate::config::{Config, StartFrom};
use crate::metrics::Metrics;
use crate::observe::{Connections, Probe};

/// How a broker call failed, in the classes the gateway answers differently.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BrokerError {
    /// The request itself is wrong (too large, bad topic, bad properties): nothing was sent.
    #[error("{0}")]
    Invalid(String),
    /// The request may or may not have taken effect (timeout or disconnect after sending).
    #[error("{0}")]
    OutcomeUnknown(String),
    /// The topic has no route on the name server (and was not auto-created).
    #[error("topic {0} does not exist")]
    TopicNotExist(String),
    /// Any other failure (broker error code, no route to the broker, ...); the message says which.
    #[error("{0}")]
    Failed(String),
}

impl From<ClientError> for BrokerError {
    fn from(e: ClientError) -> Self {
        BrokerError::of(&e)
    }
}

impl BrokerError {
    /// The class of a client error, with its text.
    pub fn of(e: &ClientError) -> Self {
        match e {
            ClientError::InvalidArgument(_)
            | ClientError::MessageTooLarge { .. }
            | ClientError::NotSupported(_)
            | ClientError::Message(_) => BrokerError::Invalid(e.to_string()),
            ClientError::Timeout { .. } | ClientError::ConnectionClosed { .. } => {
                BrokerError::OutcomeUnknown(e.to_string())
            }
            ClientError::TopicNotExist(t) => BrokerError::TopicNotExist(t.clone()),
            e => BrokerError::Failed(e.to_string()),
        }
    }
}

/// What every [`BrokerApi`] call returns.
pub type BrokerResult<T> = Result<T, BrokerError>;

/// How a pull ended (the broker's PULL_* response codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullStatus {
    /// Messages were returned.
    Found,
    /// The queue has no message at the requested offset yet.
    NoNewMsg,
    /// Messages were there but none matched the subscription (filtered out).
    NoMatchedMsg,
    /// The requested offset is outside the queue's stored range; the committed offset needs
    /// correcting to `next_begin_offset`.
    OffsetIllegal,
}

/// What one pull of one queue returned.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// How it ended.
    pub status: PullStatus,
    /// Where the next pull of this queue should start.
    pub next_begin_offset: i64,
    /// The queue's max offset (one past its last message), for the backlog.
    pub max_offset: i64,
    /// The messages pulled, in offset order (empty unless `Found`).
    pub messages: Vec<MessageExt>,
}

/// What a send returned.
#[derive(Debug, Clone)]
pub struct Sent {
    /// The broker's send status (`SEND_OK`, `FLUSH_DISK_TIMEOUT`, ...).
    pub status: &'static str,
    /// The message's unique id (`UNIQ_KEY`); comma-joined for a batch.
    pub msg_id: String,
    /// The broker's offset id (store host and commit-log offset); comma-joined for a batch.
    pub offset_msg_id: String,
    /// The queue the message (or batch) went to.
    pub queue: MessageQueue,
    /// Offset of the (first) message in its queue.
    pub queue_offset: i64,
    /// The broker's region (`MSG_REGION`), when it reports one.
    pub region_id: Option<String>,
}

/// The broker calls of the gateway. `client_id` names the lock owner (one per gateway
/// instance); `group` is a consumer group.
pub trait BrokerApi: Send + Sync + 'static {
    /// The client id this instance locks queues under.
    fn instance_id(&self) -> String;
    /// The queues consumers read (the route's subscribe queues).
    fn route(&self, topic: &str) -> impl Future<Output = BrokerResult<Vec<MessageQueue>>> + Send;
    /// Announces a consumer group reading `topics` (heartbeats carry it).
    fn register_consumer(&self, group: &str, topics: &[String], start: StartFrom);
    /// Heartbeats to the masters of `topic` now, so brokers create the group's retry topic.
    fn announce(&self, topic: &str) -> impl Future<Output = ()> + Send;
    /// The largest message body (bytes) the producers accept; larger ones are refused before
    /// sending.
    fn max_message_size(&self) -> usize;
    /// Sends one message under the producer group `producer_group` (a configured producer),
    /// choosing the queue with `selector`.
    fn send(
        &self,
        producer_group: &str,
        msg: Message,
        selector: QueueSelector,
    ) -> impl Future<Output = BrokerResult<Sent>> + Send;
    /// One batch to one queue; `Sent::queue_offset` is the first message's.
    fn send_batch(
        &self,
        producer_group: &str,
        msgs: Vec<Message>,
    ) -> impl Future<Output = BrokerResult<Sent>> + Send;
    /// Pulls up to `max` messages of `mq` from `offset` for `group`; the broker does not commit
    /// anything (the gateway commits offsets itself).
    fn pull(
        &self,
        group: &str,
        mq: &MessageQueue,
        offset: i64,
        max: u32,
    ) -> impl Future<Output = BrokerResult<Pulled>> + Send;
    /// LOCK_BATCH_MQ: the queues granted.
    fn lock(
        &self,
        group: &str,
        client_id: &str,
        broker_name: &str,
        mqs: &[MessageQueue],
    ) -> impl Future<Output = BrokerResult<Vec<MessageQueue>>> + Send;
    /// UNLOCK_BATCH_MQ: gives up `client_id`'s locks on `mqs` so another instance can take them.
    fn unlock(
        &self,
        group: &str,
        client_id: &str,
        broker_name: &str,
        mqs: &[MessageQueue],
    ) -> impl Future<Output = BrokerResult<()>> + Send;
    /// The committed offset of `group` on `mq`; `None` if the group never committed one.
    fn query_offset(
        &self,
        group: &str,
        mq: &MessageQueue,
    ) -> impl Future<Output = BrokerResult<Option<i64>>> + Send;
    /// Writes the committed offset of `group` on `mq`.
    fn commit_offset(
        &self,
        group: &str,
        mq: &MessageQueue,
        offset: i64,
    ) -> impl Future<Output = BrokerResult<()>> + Send;
    /// The queue's max offset: one past its last message.
    fn max_offset(&self, mq: &MessageQueue) -> impl Future<Output = BrokerResult<i64>> + Send;
    /// The queue's min offset: its first message still stored.
    fn min_offset(&self, mq: &MessageQueue) -> impl Future<Output = BrokerResult<i64>> + Send;
    /// The first offset stored at or after `timestamp_ms`.
    fn search_offset(
        &self,
        mq: &MessageQueue,
        timestamp_ms: i64,
    ) -> impl Future<Output = BrokerResult<i64>> + Send;
    /// A message of `topic` by its unique key (`UNIQ_KEY`).
    fn find_by_unique_key(
        &self,
        topic: &str,
        key: &str,
        end_ms: i64,
    ) -> impl Future<Output = BrokerResult<Vec<MessageExt>>> + Send;
    /// CONSUMER_SEND_MSG_BACK straight to the group's dead-letter queue (`%DLQ%group`).
    fn dead_letter(
        &self,
        group: &str,
        msg: &MessageExt,
        broker_name: &str,
    ) -> impl Future<Output = BrokerResult<()>> + Send;
    /// Unregisters the groups from the brokers, stops background tasks and closes connections.
    fn shutdown(&self) -> impl Future<Output = ()> + Send;

    // ---- the shared control plane (docs/protocol.md §9.12) ------------------------------

    /// PUT_KV_CONFIG on every name server; an error if any refused or could not be reached
    /// (the others were written).
    fn kv_put(
        &self,
        namespace: &str,
        key: &str,
        value: &str,
    ) -> impl Future<Output = BrokerResult<()>> + Send;
    /// GET_KVLIST_BY_NAMESPACE from every name server: the tables of those that answered (an
    /// error only if none did).
    fn kv_list(
        &self,
        namespace: &str,
    ) -> impl Future<Output = BrokerResult<Vec<BTreeMap<String, String>>>> + Send;
    /// Sets the subscription group's `consumeEnable` on every master serving `topic`
    /// (UPDATE_AND_CREATE_SUBSCRIPTIONGROUP), so RocketMQ's own tools see a pause.
    fn set_consume_enable(
        &self,
        group: &str,
        topic: &str,
        enable: bool,
    ) -> impl Future<Output = BrokerResult<()>> + Send;

    // ---- takeover of dead instances' queues ------------------------------------------

    /// GET_CONSUMER_LIST_BY_GROUP on the master of `broker_name`: the group's live client ids.
    fn consumer_ids(
        &self,
        group: &str,
        broker_name: &str,
    ) -> impl Future<Output = BrokerResult<Vec<String>>> + Send;
    /// Whether a broker sent NOTIFY_CONSUMER_IDS_CHANGED for `group` since the last call.
    fn take_member_change(&self, group: &str) -> bool;
    /// How many connections to the master of `broker_name` were dialled so far; a change means
    /// the connection dropped (see `engine::BrokerLocks::observe_epoch`).
    fn connection_epoch(&self, broker_name: &str) -> u64;
}

/// [`BrokerApi`] over rmq-client: one client, one producer per configured producer group.
/// Every call is timed and counted by request code in its [`Metrics`].
pub struct ClientBroker {
    client: MQClient,
    producers: HashMap<String, Producer>,
    metrics: Arc<Metrics>,
}

impl ClientBroker {
    /// Starts the rmq-client client (name servers, ACL credentials from `config`) under
    /// `instance_name` and one producer per configured producer group (topics auto-created on
    /// send).
    pub fn start(config: &Config, instance_name: String) -> BrokerResult<Self> {
        let mut cc = ClientConfig::new(&config.namesrv.join(";"));
        cc.credentials = match (&config.access_key, &config.secret_key) {
            (Some(a), Some(s)) => Some(AclCredentials {
                access_key: a.clone(),
                secret_key: s.clone(),
                security_token: None,
            }),
            _ => None,
        };
        cc.instance_name = instance_name;
        let client = MQClient::start(cc)?;
        let producers = config
            .producers
            .iter()
            .map(|p| {
                let group = p.group.clone().unwrap_or_else(|| p.name.clone());
                let mut pc = rmq_client::ProducerConfig::new(group.clone());
                pc.auto_create_topic = true;
                (group, Producer::new(client.clone(), pc))
            })
            .collect();
        Ok(ClientBroker {
            client,
            producers,
            metrics: Arc::new(Metrics::new()),
        })
    }

    /// Counts calls into `metrics` (the one the gateway's `/metrics` shows) instead of counters
    /// of its own.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Times `call` under the request code `code`.
    async fn timed<T>(
        &self,
        code: &'static str,
        call: impl Future<Output = BrokerResult<T>>,
    ) -> BrokerResult<T> {
        let start = Instant::now();
        let r = call.await;
        self.metrics
            .broker_call(code, start.elapsed(), r.as_ref().err());
        r
    }

    /// Asks the name servers for the route of each of `topics` now (for `/readyz`; it also
    /// refreshes the client's route cache).
    pub async fn probe_routes(&self, topics: &[String]) -> Probe {
        let mut probe = Probe::default();
        if topics.is_empty() {
            let r = self
                .timed("GET_BROKER_CLUSTER_INFO", async {
                    Ok(self.client.namesrv().cluster_info().await?)
                })
                .await;
            match r {
                Ok(_) => probe.answered = true,
                Err(e) => probe.error = Some(e.to_string()),
            }
            return probe;
        }
        for t in topics {
            let r = self
                .timed("GET_ROUTEINFO_BY_TOPIC", async {
                    Ok(self.client.refresh_route(t).await?)
                })
                .await;
            match r {
                Ok(Some(_)) => probe.answered = true,
                Ok(None) => {
                    probe.answered = true;
                    probe.missing_routes.push(t.clone());
                }
                Err(e) => probe.error = Some(e.to_string()),
            }
        }
        probe
    }

    /// Open connections to brokers and to name servers.
    pub fn connections(&self) -> Connections {
        let namesrvs = self.client.namesrv().addrs();
        let open = self.client.remoting().open_connections();
        let name_servers = open.iter().filter(|a| namesrvs.contains(a)).count();
        Connections {
            brokers: open.len() - name_servers,
            name_servers,
        }
    }

    /// The underlying client, for calls outside [`BrokerApi`] (administration, tests).
    pub fn client(&self) -> &MQClient {
        &self.client
    }

    fn producer(&self, group: &str) -> BrokerResult<&Producer> {
        self.producers
            .get(group)
            .ok_or_else(|| BrokerError::Invalid(format!("no producer group {group}")))
    }
}

fn sent(r: rmq_client::SendResult) -> Sent {
    Sent {
        status: r.status.as_str(),
        msg_id: r.msg_id,
        offset_msg_id: r.offset_msg_id,
        queue: r.queue,
        queue_offset: r.queue_offset,
        region_id: r.region_id,
    }
}

impl BrokerApi for ClientBroker {
    fn instance_id(&self) -> String {
        self.client.client_id()
    }

    async fn route(&self, topic: &str) -> BrokerResult<Vec<MessageQueue>> {
        Ok(self.client.route(topic).await?.subscribe_queues.clone())
    }

    fn register_consumer(&self, group: &str, topics: &[String], start: StartFrom) {
        self.client.register_consumer(ConsumerData {
            consume_from_where: match start {
                StartFrom::Earliest => ConsumeFromWhere::FirstOffset,
                StartFrom::Latest => ConsumeFromWhere::LastOffset,
            },
            consume_type: ConsumeType::Actively,
            group_name: group.to_owned(),
            // Broadcast clientIds each have a group of their own, so the broker sees them as
            // clustering groups of one.
            message_model: MessageModel::Clustering,
            subscription_data_set: topics
                .iter()
                .map(|t| SubscriptionData::tags(t.clone(), "*", 0))
                .collect(),
            unit_mode: false,
        });
    }

    async fn announce(&self, topic: &str) {
        if let Ok(route) = self.client.route(topic).await {
            for addr in route.master_addrs() {
                if let Err(e) = self.client.heartbeat(&addr).await {
                    warn!(broker = %addr, error = %e, "heartbeat failed");
                }
            }
        }
    }

    fn max_message_size(&self) -> usize {
        self.producers
            .values()
            .next()
            .map_or(4 * 1024 * 1024, |p| p.config().max_message_size)
    }

    async fn send(
        &self,
        producer_group: &str,
        msg: Message,
        selector: QueueSelector,
    ) -> BrokerResult<Sent> {
        let p = self.producer(producer_group)?;
        self.timed("SEND_MESSAGE", async {
            Ok(sent(p.send_with(msg, selector).await?))
        })
        .await
    }

    async fn send_batch(&self, producer_group: &str, msgs: Vec<Message>) -> BrokerResult<Sent> {
        let p = self.producer(producer_group)?;
        self.timed("SEND_BATCH_MESSAGE", async {
            Ok(sent(p.send_batch(msgs, QueueSelector::RoundRobin).await?))
        })
        .await
    }

    async fn pull(
        &self,
        group: &str,
        mq: &MessageQueue,
        offset: i64,
        max: u32,
    ) -> BrokerResult<Pulled> {
        let mut req = PullRequest::new(group.to_owned(), offset);
        req.max_msgs = max as i32;
        let r = self
            .timed("PULL_MESSAGE", async {
                Ok(self.client.pull(mq, &req).await?)
            })
            .await?;
        use rmq_client::PullStatus as P;
        Ok(Pulled {
            status: match r.status {
                P::Found => PullStatus::Found,
                P::NoNewMsg => PullStatus::NoNewMsg,
                P::NoMatchedMsg => PullStatus::NoMatchedMsg,
                P::OffsetIllegal => PullStatus::OffsetIllegal,
                other => {
                    return Err(BrokerError::Failed(format!(
                        "pull answered a status this gateway does not know: {other:?}"
                    )))
                }
            },
            next_begin_offset: r.next_begin_offset,
            max_offset: r.max_offset,
            messages: r.messages,
        })
    }

    async fn lock(
        &self,
        group: &str,
        client_id: &str,
        broker_name: &str,
        mqs: &[MessageQueue],
    ) -> BrokerResult<Vec<MessageQueue>> {
        self.timed("LOCK_BATCH_MQ", async {
            Ok(self
                .client
                .lock_batch_as(group, client_id, broker_name, mqs)
                .await?)
        })
        .await
    }

    async fn unlock(
        &self,
        group: &str,
        client_id: &str,
        broker_name: &str,
        mqs: &[MessageQueue],
    ) -> BrokerResult<()> {
        self.timed("UNLOCK_BATCH_MQ", async {
            Ok(self
                .client
                .unlock_batch_as(group, client_id, broker_name, mqs)
                .await?)
        })
        .await
    }

    async fn query_offset(&self, group: &str, mq: &MessageQueue) -> BrokerResult<Option<i64>> {
        self.timed("QUERY_CONSUMER_OFFSET", async {
            Ok(self.client.query_consumer_offset(group, mq).await?)
        })
        .await
    }

    async fn commit_offset(&self, group: &str, mq: &MessageQueue, offset: i64) -> BrokerResult<()> {
        self.timed("UPDATE_CONSUMER_OFFSET", async {
            Ok(self
                .client
                .update_consumer_offset(group, mq, offset)
                .await?)
        })
        .await
    }

    async fn max_offset(&self, mq: &MessageQueue) -> BrokerResult<i64> {
        self.timed("GET_MAX_OFFSET", async {
            Ok(self.client.max_offset(mq).await?)
        })
        .await
    }

    async fn min_offset(&self, mq: &MessageQueue) -> BrokerResult<i64> {
        self.timed("GET_MIN_OFFSET", async {
            Ok(self.client.min_offset(mq).await?)
        })
        .await
    }

    async fn search_offset(&self, mq: &MessageQueue, timestamp_ms: i64) -> BrokerResult<i64> {
        self.timed("SEARCH_OFFSET_BY_TIMESTAMP", async {
            Ok(self.client.search_offset(mq, timestamp_ms).await?)
        })
        .await
    }

    async fn find_by_unique_key(
        &self,
        topic: &str,
        key: &str,
        end_ms: i64,
    ) -> BrokerResult<Vec<MessageExt>> {
        // UNIQ_KEYs carry no time the broker can use; search the broker's whole index window.
        let mut v = self
            .timed("QUERY_MESSAGE", async {
                Ok(self
                    .client
                    .query_message(topic, MessageKey::UniqId(key), 32, 0, end_ms)
                    .await?)
            })
            .await?;
        v.truncate(1);
        Ok(v)
    }

    async fn dead_letter(
        &self,
        group: &str,
        msg: &MessageExt,
        broker_name: &str,
    ) -> BrokerResult<()> {
        // A negative delay level sends the message to the DLQ whatever its reconsume count.
        self.timed("CONSUMER_SEND_MSG_BACK", async {
            Ok(self
                .client
                .send_back(group, msg, -1, 0, Some(broker_name))
                .await?)
        })
        .await
    }

    async fn shutdown(&self) {
        self.client.shutdown().await;
    }

    async fn kv_put(&self, namespace: &str, key: &str, value: &str) -> BrokerResult<()> {
        Ok(self.client.put_kv_config(namespace, key, value).await?)
    }

    async fn kv_list(&self, namespace: &str) -> BrokerResult<Vec<BTreeMap<String, String>>> {
        let mut tables = Vec::new();
        let mut last_err = None;
        for addr in self.client.namesrv().addrs() {
            match self.client.kv_list_from(addr, namespace).await {
                Ok(t) => tables.push(t),
                Err(e) => last_err = Some(e),
            }
        }
        match (tables.is_empty(), last_err) {
            (true, Some(e)) => Err(e.into()),
            _ => Ok(tables),
        }
    }

    async fn set_consume_enable(&self, group: &str, topic: &str, enable: bool) -> BrokerResult<()> {
        let route = self.client.route(topic).await?;
        for addr in route.master_addrs() {
            // The body replaces the whole configuration: start from the broker's own.
            let mut cfg = self
                .client
                .subscription_groups(&addr)
                .await?
                .subscription_group_table
                .remove(group)
                .unwrap_or_else(|| rmq_remoting::body::SubscriptionGroupConfig::new(group));
            if cfg.consume_enable != enable {
                cfg.consume_enable = enable;
                self.client.create_subscription_group(&addr, &cfg).await?;
            }
        }
        Ok(())
    }

    async fn consumer_ids(&self, group: &str, broker_name: &str) -> BrokerResult<Vec<String>> {
        let addr = self
            .client
            .master_addr(broker_name)
            .ok_or_else(|| BrokerError::Failed(format!("no address of broker {broker_name}")))?;
        self.timed("GET_CONSUMER_LIST_BY_GROUP", async {
            Ok(self.client.consumer_ids(group, &addr).await?)
        })
        .await
    }

    fn take_member_change(&self, group: &str) -> bool {
        self.client.take_rebalance_request(group)
    }

    fn connection_epoch(&self, broker_name: &str) -> u64 {
        self.client
            .master_addr(broker_name)
            .map_or(0, |a| self.client.remoting().connection_epoch(&a))
    }
}
