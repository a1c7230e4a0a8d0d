//! An in-memory broker behind [`BrokerApi`] for tests of the driver and the HTTP front ends:
//! topics with queues, consumer offsets, broker locks that expire after 60 s of its clock, and
//! failures on demand. Several [`MemClient`]s (gateway instances) can share one [`MemBroker`].
//! It is a test double only: every feature is also proven against the real broker.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;

use parking_lot::Mutex;
use rmq_remoting::body::MessageQueue;
use rmq_remoting::message::{keys, MessageExt, Properties};

use crate::broker::{
    BrokerApi, BrokerError, BrokerResult, Message, PullStatus, Pulled, QueueSelector, Sent,
};
use crate::clock::Clock;
use crate::config::StartFrom;

/// The one broker name every queue of a [`MemBroker`] has.
pub const BROKER_NAME: &str = "mem-broker";
/// How long the broker keeps a lock that is not renewed (as RocketMQ brokers do).
pub const LOCK_EXPIRY_MS: i64 = 60_000;
const MAX_MESSAGE_SIZE: usize = 4 * 1024 * 1024;

#[derive(Default)]
struct Inner {
    topics: HashMap<String, Vec<Vec<MessageExt>>>,
    offsets: HashMap<(String, MessageQueue), i64>,
    locks: HashMap<(String, MessageQueue), (String, i64)>,
    round_robin: usize,
    next_id: u64,
    commit_log: i64,
    fail_commits: u32,
    fail_pulls: u32,
    commits: u64,
    kv: BTreeMap<String, BTreeMap<String, String>>,
    members: HashMap<String, BTreeSet<String>>,
    notified: HashSet<(String, String)>,
    epochs: HashMap<String, u64>,
    consume_disabled: HashSet<String>,
    fail_kv: bool,
    member_lists: u64,
}

/// The in-memory broker: topics, offsets and locks shared by its [`MemClient`]s, on the time of
/// the clock it was given.
pub struct MemBroker {
    clock: Arc<dyn Clock>,
    queues_per_topic: i32,
    inner: Mutex<Inner>,
}

impl MemBroker {
    /// An empty broker on `clock`'s time; every topic gets `queues_per_topic` queues.
    pub fn new(clock: Arc<dyn Clock>, queues_per_topic: i32) -> Arc<Self> {
        Arc::new(MemBroker {
            clock,
            queues_per_topic,
            inner: Mutex::new(Inner::default()),
        })
    }

    /// A gateway instance's connection, locking under `client_id`.
    pub fn client(self: &Arc<Self>, client_id: &str) -> MemClient {
        MemClient {
            broker: self.clone(),
            client_id: client_id.to_owned(),
        }
    }

    /// Creates `topic` with the broker's number of queues (nothing if it exists), as a broker with
    /// auto-create would.
    pub fn create_topic(&self, topic: &str) {
        let n = self.queues_per_topic as usize;
        self.inner
            .lock()
            .topics
            .entry(topic.to_owned())
            .or_insert_with(|| vec![Vec::new(); n]);
    }

    /// Stores a message directly on queue `queue_id`; returns its offset.
    pub fn put(&self, topic: &str, queue_id: i32, body: &str) -> i64 {
        self.create_topic(topic);
        let mq = MessageQueue::new(topic, BROKER_NAME, queue_id);
        self.store(&mq, Message::new(topic, body.to_owned()))
    }

    /// Stores `m` (tags, keys, properties as given) in queue `queue_id` of its topic.
    pub fn put_message(&self, queue_id: i32, m: Message) -> i64 {
        self.create_topic(&m.topic);
        let mq = MessageQueue::new(m.topic.clone(), BROKER_NAME, queue_id);
        self.store(&mq, m)
    }

    /// How many messages queue `queue_id` of `topic` holds (its max offset).
    pub fn len(&self, topic: &str, queue_id: i32) -> i64 {
        self.queue_len(&MessageQueue::new(topic, BROKER_NAME, queue_id))
            .unwrap_or(0)
    }

    /// The committed offset of `group` on queue `queue_id` of `topic`; `None` if never committed.
    pub fn committed(&self, group: &str, topic: &str, queue_id: i32) -> Option<i64> {
        let mq = MessageQueue::new(topic, BROKER_NAME, queue_id);
        self.inner
            .lock()
            .offsets
            .get(&(group.to_owned(), mq))
            .copied()
    }

    /// Who holds the broker lock of a queue for `group`, if anyone (and it has not expired).
    pub fn lock_owner(&self, group: &str, topic: &str, queue_id: i32) -> Option<String> {
        let mq = MessageQueue::new(topic, BROKER_NAME, queue_id);
        let now = self.clock.now_ms();
        self.inner
            .lock()
            .locks
            .get(&(group.to_owned(), mq))
            .filter(|(_, exp)| *exp > now)
            .map(|(c, _)| c.clone())
    }

    /// The next `n` offset commits fail.
    pub fn fail_commits(&self, n: u32) {
        self.inner.lock().fail_commits = n;
    }

    /// The next `n` pulls fail.
    pub fn fail_pulls(&self, n: u32) {
        self.inner.lock().fail_pulls = n;
    }

    /// The client's connection closes: the broker drops it from every group and tells the
    /// other members (NOTIFY_CONSUMER_IDS_CHANGED); its locks stay until they expire.
    pub fn disconnect(&self, client_id: &str) {
        let mut g = self.inner.lock();
        let mut tell = Vec::new();
        for (group, ids) in g.members.iter_mut() {
            if ids.remove(client_id) {
                tell.extend(ids.iter().map(|i| (i.clone(), group.clone())));
            }
        }
        g.notified.extend(tell);
    }

    /// How many times a client read a group's member list (GET_CONSUMER_LIST_BY_GROUP).
    pub fn member_lists_read(&self) -> u64 {
        self.inner.lock().member_lists
    }

    /// The client dials the broker again (a new connection epoch) and re-registers in `groups`.
    pub fn reconnect(&self, client_id: &str, groups: &[&str]) {
        let mut g = self.inner.lock();
        *g.epochs.entry(client_id.to_owned()).or_default() += 1;
        for group in groups {
            g.members
                .entry(group.to_string())
                .or_default()
                .insert(client_id.to_owned());
        }
    }

    /// Whether `group`'s subscription config has `consumeEnable` (true unless paused).
    pub fn consume_enabled(&self, group: &str) -> bool {
        !self.inner.lock().consume_disabled.contains(group)
    }

    /// The KV table of `namespace`, as a name server holds it.
    pub fn kv(&self, namespace: &str) -> BTreeMap<String, String> {
        self.inner
            .lock()
            .kv
            .get(namespace)
            .cloned()
            .unwrap_or_default()
    }

    /// Name-server KV calls fail (or work again).
    pub fn fail_kv(&self, fail: bool) {
        self.inner.lock().fail_kv = fail;
    }

    /// Offset commits that succeeded.
    pub fn commits(&self) -> u64 {
        self.inner.lock().commits
    }

    fn store(&self, mq: &MessageQueue, m: Message) -> i64 {
        let now = self.clock.now_ms();
        let mut g = self.inner.lock();
        g.next_id += 1;
        let uniq = format!("MEM{:020X}", g.next_id);
        g.commit_log += 1;
        let commit_log_offset = g.commit_log;
        let q = &mut g.topics.get_mut(&mq.topic).expect("topic created")[mq.queue_id as usize];
        let offset = q.len() as i64;
        let mut properties = Properties::new();
        properties.insert(keys::UNIQ_KEY, uniq);
        if let Some(t) = &m.tags {
            properties.insert(keys::TAGS, t.clone());
        }
        if !m.keys.is_empty() {
            properties.insert(keys::KEYS, m.keys.join(" "));
        }
        let host: SocketAddr = "127.0.0.1:10911".parse().expect("literal address");
        q.push(MessageExt {
            store_size: 0,
            version: Default::default(),
            body_crc: 0,
            queue_id: mq.queue_id,
            flag: m.flag,
            queue_offset: offset,
            commit_log_offset,
            sys_flag: 0,
            born_timestamp: now,
            born_host: host,
            store_timestamp: now,
            store_host: host,
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            topic: mq.topic.clone(),
            properties,
            body: m.body.clone(),
            stored_body: m.body,
        });
        offset
    }

    fn queue_len(&self, mq: &MessageQueue) -> BrokerResult<i64> {
        let g = self.inner.lock();
        let qs = g
            .topics
            .get(&mq.topic)
            .ok_or_else(|| BrokerError::TopicNotExist(mq.topic.clone()))?;
        qs.get(mq.queue_id as usize)
            .map(|q| q.len() as i64)
            .ok_or_else(|| BrokerError::Failed(format!("no queue {}", mq.queue_id)))
    }
}

/// One gateway instance's view of a [`MemBroker`].
pub struct MemClient {
    broker: Arc<MemBroker>,
    client_id: String,
}

impl MemClient {
    /// The shared broker behind this client, to inspect or fail it.
    pub fn broker(&self) -> &Arc<MemBroker> {
        &self.broker
    }

    fn pick(&self, topic: &str, selector: &QueueSelector) -> MessageQueue {
        self.broker.create_topic(topic);
        let n = self.broker.queues_per_topic;
        let queues: Vec<MessageQueue> = (0..n)
            .map(|q| MessageQueue::new(topic, BROKER_NAME, q))
            .collect();
        let turn = {
            let mut g = self.broker.inner.lock();
            g.round_robin += 1;
            g.round_robin
        };
        selector
            .select(&queues, turn, None)
            .expect("an in-memory topic always has queues")
    }
}

impl BrokerApi for MemClient {
    fn instance_id(&self) -> String {
        self.client_id.clone()
    }

    async fn route(&self, topic: &str) -> BrokerResult<Vec<MessageQueue>> {
        let g = self.broker.inner.lock();
        let qs = g
            .topics
            .get(topic)
            .ok_or_else(|| BrokerError::TopicNotExist(topic.to_owned()))?;
        Ok((0..qs.len() as i32)
            .map(|i| MessageQueue::new(topic, BROKER_NAME, i))
            .collect())
    }

    fn register_consumer(&self, group: &str, _topics: &[String], _start: StartFrom) {
        self.broker
            .inner
            .lock()
            .members
            .entry(group.to_owned())
            .or_default()
            .insert(self.client_id.clone());
    }

    async fn announce(&self, _topic: &str) {}

    fn max_message_size(&self) -> usize {
        MAX_MESSAGE_SIZE
    }

    async fn send(
        &self,
        _producer_group: &str,
        msg: Message,
        selector: QueueSelector,
    ) -> BrokerResult<Sent> {
        if msg.body.len() > MAX_MESSAGE_SIZE {
            return Err(BrokerError::Invalid(format!(
                "message body too long: {} bytes",
                msg.body.len()
            )));
        }
        let mq = self.pick(&msg.topic, &selector);
        let offset = self.broker.store(&mq, msg);
        let stored = self.broker.inner.lock().topics[&mq.topic][mq.queue_id as usize]
            [offset as usize]
            .clone();
        Ok(Sent {
            status: "SEND_OK",
            msg_id: stored.msg_id(),
            offset_msg_id: stored.offset_msg_id(),
            queue: mq,
            queue_offset: offset,
            region_id: None,
        })
    }

    async fn send_batch(&self, producer_group: &str, msgs: Vec<Message>) -> BrokerResult<Sent> {
        let Some(first) = msgs.first() else {
            return Err(BrokerError::Invalid("empty batch".into()));
        };
        let mq = self.pick(&first.topic.clone(), &QueueSelector::RoundRobin);
        let mut sent: Option<Sent> = None;
        for m in msgs {
            let s = self
                .send(producer_group, m, QueueSelector::Queue(mq.clone()))
                .await?;
            sent.get_or_insert(s);
        }
        sent.ok_or_else(|| BrokerError::Invalid("empty batch".into()))
    }

    async fn pull(
        &self,
        _group: &str,
        mq: &MessageQueue,
        offset: i64,
        max: u32,
    ) -> BrokerResult<Pulled> {
        let len = self.broker.queue_len(mq)?;
        let mut g = self.broker.inner.lock();
        if g.fail_pulls > 0 {
            g.fail_pulls -= 1;
            return Err(BrokerError::Failed("pull failed (injected)".into()));
        }
        if offset < 0 || offset > len {
            return Ok(Pulled {
                status: PullStatus::OffsetIllegal,
                next_begin_offset: offset.clamp(0, len),
                max_offset: len,
                messages: Vec::new(),
            });
        }
        if offset == len {
            return Ok(Pulled {
                status: PullStatus::NoNewMsg,
                next_begin_offset: offset,
                max_offset: len,
                messages: Vec::new(),
            });
        }
        let end = (offset + max as i64).min(len);
        let q = &g.topics[&mq.topic][mq.queue_id as usize];
        Ok(Pulled {
            status: PullStatus::Found,
            next_begin_offset: end,
            max_offset: len,
            messages: q[offset as usize..end as usize].to_vec(),
        })
    }

    async fn lock(
        &self,
        group: &str,
        client_id: &str,
        _broker_name: &str,
        mqs: &[MessageQueue],
    ) -> BrokerResult<Vec<MessageQueue>> {
        let now = self.broker.clock.now_ms();
        let mut g = self.broker.inner.lock();
        let mut granted = Vec::new();
        for mq in mqs {
            let k = (group.to_owned(), mq.clone());
            let free = g
                .locks
                .get(&k)
                .is_none_or(|(owner, exp)| owner == client_id || *exp <= now);
            if free {
                g.locks
                    .insert(k, (client_id.to_owned(), now + LOCK_EXPIRY_MS));
                granted.push(mq.clone());
            }
        }
        Ok(granted)
    }

    async fn unlock(
        &self,
        group: &str,
        client_id: &str,
        _broker_name: &str,
        mqs: &[MessageQueue],
    ) -> BrokerResult<()> {
        let mut g = self.broker.inner.lock();
        for mq in mqs {
            let k = (group.to_owned(), mq.clone());
            if g.locks.get(&k).is_some_and(|(o, _)| o == client_id) {
                g.locks.remove(&k);
            }
        }
        Ok(())
    }

    async fn query_offset(&self, group: &str, mq: &MessageQueue) -> BrokerResult<Option<i64>> {
        Ok(self
            .broker
            .inner
            .lock()
            .offsets
            .get(&(group.to_owned(), mq.clone()))
            .copied())
    }

    async fn commit_offset(&self, group: &str, mq: &MessageQueue, offset: i64) -> BrokerResult<()> {
        let mut g = self.broker.inner.lock();
        if g.fail_commits > 0 {
            g.fail_commits -= 1;
            return Err(BrokerError::Failed("commit failed (injected)".into()));
        }
        g.offsets.insert((group.to_owned(), mq.clone()), offset);
        g.commits += 1;
        Ok(())
    }

    async fn max_offset(&self, mq: &MessageQueue) -> BrokerResult<i64> {
        self.broker.queue_len(mq)
    }

    async fn min_offset(&self, mq: &MessageQueue) -> BrokerResult<i64> {
        self.broker.queue_len(mq).map(|_| 0)
    }

    async fn search_offset(&self, mq: &MessageQueue, timestamp_ms: i64) -> BrokerResult<i64> {
        let len = self.broker.queue_len(mq)?;
        let g = self.broker.inner.lock();
        let q = &g.topics[&mq.topic][mq.queue_id as usize];
        Ok(q.iter()
            .position(|m| m.store_timestamp >= timestamp_ms)
            .map_or(len, |p| p as i64))
    }

    async fn find_by_unique_key(
        &self,
        topic: &str,
        key: &str,
        _end_ms: i64,
    ) -> BrokerResult<Vec<MessageExt>> {
        let g = self.broker.inner.lock();
        Ok(g.topics
            .get(topic)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|m| m.properties.get(keys::UNIQ_KEY) == Some(key))
            .take(1)
            .cloned()
            .collect())
    }

    async fn dead_letter(
        &self,
        group: &str,
        msg: &MessageExt,
        _broker_name: &str,
    ) -> BrokerResult<()> {
        let topic = format!("%DLQ%{group}");
        let mut m = Message::new(&topic, msg.body.clone());
        m.properties = msg.properties.clone();
        self.broker.create_topic(&topic);
        let mq = MessageQueue::new(&topic, BROKER_NAME, 0);
        self.broker.store(&mq, m);
        Ok(())
    }

    async fn shutdown(&self) {}

    async fn kv_put(&self, namespace: &str, key: &str, value: &str) -> BrokerResult<()> {
        let mut g = self.broker.inner.lock();
        if g.fail_kv {
            return Err(BrokerError::Failed(
                "name server unreachable (injected)".into(),
            ));
        }
        g.kv.entry(namespace.to_owned())
            .or_default()
            .insert(key.to_owned(), value.to_owned());
        Ok(())
    }

    async fn kv_list(&self, namespace: &str) -> BrokerResult<Vec<BTreeMap<String, String>>> {
        let g = self.broker.inner.lock();
        if g.fail_kv {
            return Err(BrokerError::Failed(
                "name server unreachable (injected)".into(),
            ));
        }
        Ok(vec![g.kv.get(namespace).cloned().unwrap_or_default()])
    }

    async fn set_consume_enable(
        &self,
        group: &str,
        _topic: &str,
        enable: bool,
    ) -> BrokerResult<()> {
        let mut g = self.broker.inner.lock();
        if enable {
            g.consume_disabled.remove(group);
        } else {
            g.consume_disabled.insert(group.to_owned());
        }
        Ok(())
    }

    async fn consumer_ids(&self, group: &str, _broker_name: &str) -> BrokerResult<Vec<String>> {
        let mut g = self.broker.inner.lock();
        g.member_lists += 1;
        Ok(g.members
            .get(group)
            .map(|ids| ids.iter().cloned().collect())
            .unwrap_or_default())
    }

    fn take_member_change(&self, group: &str) -> bool {
        self.broker
            .inner
            .lock()
            .notified
            .remove(&(self.client_id.clone(), group.to_owned()))
    }

    fn connection_epoch(&self, _broker_name: &str) -> u64 {
        self.broker
            .inner
            .lock()
            .epochs
            .get(&self.client_id)
            .copied()
            .unwrap_or(0)
    }
}
