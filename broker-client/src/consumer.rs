//! A small high-level pull consumer: queue allocation among the group's clients (clustering) or
//! all queues (broadcast), start offsets from the broker, offsets committed back to the broker.
//!
//! `poll` hands out messages and moves the in-memory offsets past them; `commit` (also run by
//! `shutdown`) stores those offsets in the broker, so a restarted consumer continues there.
//! Broadcast consumers take every queue and commit under their own group name: give each
//! broadcast instance a group of its own if they must not share progress.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use parking_lot::Mutex;
use rmq_remoting::body::{
    ConsumeFromWhere, ConsumeType, ConsumerData, MessageModel, MessageQueue, SubscriptionData,
};
use rmq_remoting::message::MessageExt;
use tracing::{debug, warn};

use crate::broker_requests::{PullRequest, PullStatus};
use crate::client::MQClient;
use crate::error::{ClientError, Result};

/// Where a group with no committed offset starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StartFrom {
    /// The queue's smallest offset.
    Earliest,
    /// The queue's end: only messages sent from now on.
    Latest,
    /// Store time, ms since the epoch.
    Timestamp(i64),
}

/// What a [`PullConsumer`] consumes and how.
#[derive(Debug, Clone)]
pub struct PullConsumerConfig {
    /// The consumer group.
    pub group: String,
    /// The topic.
    pub topic: String,
    /// TAG expression.
    pub expression: String,
    /// Clustering (queues shared in the group) or broadcasting (every queue).
    pub model: MessageModel,
    /// Where a group without committed offsets starts.
    pub start_from: StartFrom,
    /// At most this many messages per pull.
    pub max_msgs_per_pull: i32,
    /// How long one `poll` may long-poll the broker when nothing is there.
    pub long_poll: Duration,
    /// Queues are re-allocated this often, and at once when a broker says the group changed.
    pub rebalance_interval: Duration,
}

impl PullConsumerConfig {
    /// Clustering, from the earliest offset, 32 per pull, 5 s long polls, rebalancing every 20 s.
    pub fn new(group: impl Into<String>, topic: impl Into<String>) -> Self {
        PullConsumerConfig {
            group: group.into(),
            topic: topic.into(),
            expression: "*".into(),
            model: MessageModel::Clustering,
            start_from: StartFrom::Earliest,
            max_msgs_per_pull: 32,
            long_poll: Duration::from_secs(5),
            rebalance_interval: Duration::from_secs(20),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct QueueState {
    /// Next offset to pull.
    next: i64,
    /// Last offset stored in the broker.
    committed: Option<i64>,
}

/// A consumer that pulls when asked: [`poll`](Self::poll) for messages, then
/// [`commit`](Self::commit) to store progress in the broker.
///
/// # Cancel safety
///
/// [`poll`](Self::poll) is cancel safe: what a dropped poll had pulled is returned by the next
/// one, and pulls still in flight move no offset.
///
/// ```no_run
/// use rmq_client::{ClientConfig, MQClient, PullConsumer, PullConsumerConfig, StartFrom};
///
/// # async fn run() -> Result<(), rmq_client::ClientError> {
/// let client = MQClient::start(ClientConfig::new("127.0.0.1:9876"))?;
/// let mut config = PullConsumerConfig::new("billing", "orders");
/// config.start_from = StartFrom::Latest;
/// let consumer = PullConsumer::start(client.clone(), config).await?;
/// for _ in 0..10 {
///     for m in consumer.poll(32).await? {
///         println!("{} {}", m.msg_id(), String::from_utf8_lossy(&m.body));
///     }
///     consumer.commit().await?;
/// }
/// consumer.shutdown().await?;
/// client.shutdown().await;
/// # Ok(())
/// # }
/// ```
pub struct PullConsumer {
    client: MQClient,
    config: PullConsumerConfig,
    queues: Mutex<BTreeMap<MessageQueue, QueueState>>,
    cursor: Mutex<usize>,
    last_rebalance: Mutex<Instant>,
    /// Messages pulled (offsets already moved past them) but not yet returned, because the
    /// `poll` that pulled them was cancelled; the next `poll` returns them first.
    fetched: Mutex<VecDeque<MessageExt>>,
}

/// Java's `AllocateMessageQueueAveragely` (docs/protocol.md §17.3): contiguous blocks, the first
/// `n mod c` clients one queue more.
pub fn allocate_averagely<'a>(
    all: &'a [MessageQueue],
    cids: &[String],
    me: &str,
) -> &'a [MessageQueue] {
    let Some(i) = cids.iter().position(|c| c == me) else {
        return &[];
    };
    let (n, c) = (all.len(), cids.len());
    let m = n % c;
    let size = if n <= c {
        1
    } else if i < m {
        n / c + 1
    } else {
        n / c
    };
    let start = if i < m { i * size } else { i * size + m };
    if start >= n {
        return &[];
    }
    &all[start..start + size.min(n - start)]
}

impl PullConsumer {
    /// Registers the group in heartbeats, heartbeats every broker of the topic and takes the
    /// first allocation of queues.
    pub async fn start(client: MQClient, config: PullConsumerConfig) -> Result<Self> {
        let route = client.route(&config.topic).await?;
        let consume_from = match config.start_from {
            StartFrom::Earliest => ConsumeFromWhere::FirstOffset,
            StartFrom::Latest => ConsumeFromWhere::LastOffset,
            StartFrom::Timestamp(_) => ConsumeFromWhere::Timestamp,
        };
        client.register_consumer(ConsumerData {
            consume_from_where: consume_from,
            consume_type: ConsumeType::Actively,
            group_name: config.group.clone(),
            message_model: config.model,
            subscription_data_set: vec![SubscriptionData::tags(
                config.topic.clone(),
                &config.expression,
                0,
            )],
            unit_mode: false,
        });
        for addr in route.master_addrs() {
            client.heartbeat(&addr).await?;
        }
        let c = PullConsumer {
            client,
            config,
            queues: Mutex::new(BTreeMap::new()),
            cursor: Mutex::new(0),
            last_rebalance: Mutex::new(Instant::now()),
            fetched: Mutex::new(VecDeque::new()),
        };
        c.rebalance().await?;
        Ok(c)
    }

    /// The client the consumer uses.
    pub fn client(&self) -> &MQClient {
        &self.client
    }

    /// The queues this consumer owns now.
    pub fn assigned(&self) -> Vec<MessageQueue> {
        self.queues.lock().keys().cloned().collect()
    }

    /// Recomputes which queues this client owns; commits the ones it gives up.
    pub async fn rebalance(&self) -> Result<()> {
        *self.last_rebalance.lock() = Instant::now();
        let route = self.client.route(&self.config.topic).await?;
        let all = route.subscribe_queues.clone();
        let mine: Vec<MessageQueue> = match self.config.model {
            MessageModel::Broadcasting => all.clone(),
            MessageModel::Clustering => {
                let addr = route
                    .master_addrs()
                    .into_iter()
                    .next()
                    .ok_or_else(|| ClientError::NoBrokerAddress(self.config.topic.clone()))?;
                let mut cids = self.client.consumer_ids(&self.config.group, &addr).await?;
                let me = self.client.client_id();
                if !cids.contains(&me) {
                    // Our heartbeat has not been seen yet: count ourselves in.
                    cids.push(me.clone());
                    cids.sort();
                }
                allocate_averagely(&all, &cids, &me).to_vec()
            }
        };
        let current: Vec<MessageQueue> = self.queues.lock().keys().cloned().collect();
        for q in current.iter().filter(|q| !mine.contains(q)) {
            self.commit_queue(q).await?;
            self.queues.lock().remove(q);
        }
        for q in mine.iter().filter(|q| !current.contains(q)) {
            let next = self.start_offset(q).await?;
            debug!(queue = ?q, next, "queue assigned");
            self.queues.lock().insert(
                q.clone(),
                QueueState {
                    next,
                    committed: Some(next),
                },
            );
        }
        Ok(())
    }

    async fn start_offset(&self, q: &MessageQueue) -> Result<i64> {
        if let Some(o) = self
            .client
            .query_consumer_offset(&self.config.group, q)
            .await?
        {
            // 4.9 brokers answer 0 for a group that never committed when offset 0 is still in
            // memory (docs/protocol.md §9.5); that is the earliest position, which "latest" must
            // not take.
            if o > 0 || self.config.start_from == StartFrom::Earliest {
                return Ok(o);
            }
        }
        match self.config.start_from {
            StartFrom::Earliest => self.client.min_offset(q).await,
            StartFrom::Latest => self.client.max_offset(q).await,
            StartFrom::Timestamp(ts) => self.client.search_offset(q, ts).await,
        }
    }

    /// Up to `max` messages from the owned queues, long-polling up to the configured time when
    /// none is there. Offsets move past what is returned (commit stores them).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: messages a dropped call had already pulled are kept and returned by the next
    /// call (a [`commit`](Self::commit) in between stores offsets past them).
    pub async fn poll(&self, max: usize) -> Result<Vec<MessageExt>> {
        let max = max.max(1);
        if !self.fetched.lock().is_empty() {
            return Ok(self.take_fetched(max));
        }
        let due = self.last_rebalance.lock().elapsed() >= self.config.rebalance_interval;
        if self.client.take_rebalance_request(&self.config.group) || due {
            if let Err(e) = self.rebalance().await {
                warn!(error = %e, "rebalance failed; keeping the current queues");
            }
        }
        let deadline = Instant::now() + self.config.long_poll;
        let queues: Vec<(MessageQueue, i64)> = self
            .queues
            .lock()
            .iter()
            .map(|(q, s)| (q.clone(), s.next))
            .collect();
        if queues.is_empty() {
            tokio::time::sleep(self.config.long_poll.min(Duration::from_millis(200))).await;
            return Ok(Vec::new());
        }
        // Short pulls round the queues first, starting where the last poll stopped. What they
        // bring goes to `fetched` at once, so a cancelled poll loses nothing.
        let start = {
            let mut c = self.cursor.lock();
            *c = c.wrapping_add(1);
            *c
        };
        // A queue whose broker is unreachable is skipped, not fatal: the others keep flowing
        // (a cluster that lost one broker), and what was already pulled is returned, never
        // dropped (its offsets have moved). Only when every queue fails is that an error.
        let mut failed = 0;
        let mut last_err = None;
        for i in 0..queues.len() {
            let (q, _) = &queues[(start + i) % queues.len()];
            let room = max.saturating_sub(self.fetched.lock().len());
            match self.pull_queue(q, None, room).await {
                Ok(got) => self.fetched.lock().extend(got),
                Err(e) => {
                    debug!(queue = ?q, error = %e, "pull failed; skipping this queue for now");
                    failed += 1;
                    last_err = Some(e);
                }
            }
            if self.fetched.lock().len() >= max {
                break;
            }
        }
        if !self.fetched.lock().is_empty() {
            return Ok(self.take_fetched(max));
        }
        if let Some(e) = last_err.filter(|_| failed == queues.len()) {
            return Err(e);
        }
        // Nothing anywhere: long-poll every queue at once and take the first that has data.
        // Abandoned pulls move no offset, so nothing is lost.
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining < Duration::from_millis(50) {
            return Ok(Vec::new());
        }
        let mut polls: FuturesUnordered<_> = queues
            .iter()
            .map(|(q, _)| self.pull_queue(q, Some(remaining), max))
            .collect();
        let mut failed = 0;
        let mut last_err = None;
        while let Some(r) = polls.next().await {
            match r {
                Ok(got) if !got.is_empty() => {
                    self.fetched.lock().extend(got);
                    return Ok(self.take_fetched(max));
                }
                Ok(_) => {}
                Err(e) => {
                    failed += 1;
                    last_err = Some(e);
                }
            }
        }
        match last_err {
            Some(e) if failed == queues.len() => Err(e),
            _ => Ok(Vec::new()),
        }
    }

    fn take_fetched(&self, max: usize) -> Vec<MessageExt> {
        let mut fetched = self.fetched.lock();
        let n = max.min(fetched.len());
        fetched.drain(..n).collect()
    }

    async fn pull_queue(
        &self,
        q: &MessageQueue,
        suspend: Option<Duration>,
        max: usize,
    ) -> Result<Vec<MessageExt>> {
        let Some(state) = self.queues.lock().get(q).copied() else {
            return Ok(Vec::new());
        };
        let mut req = PullRequest::new(self.config.group.clone(), state.next);
        req.max_msgs = (max as i32).clamp(1, self.config.max_msgs_per_pull);
        req.expression = self.config.expression.clone();
        req.suspend = suspend;
        let r = self.client.pull(q, &req).await?;
        let mut queues = self.queues.lock();
        let Some(s) = queues.get_mut(q) else {
            return Ok(Vec::new());
        };
        // Another poll may have moved this queue meanwhile; only the owner of the old offset
        // may advance it.
        if s.next != state.next {
            return Ok(Vec::new());
        }
        match r.status {
            PullStatus::Found | PullStatus::NoMatchedMsg | PullStatus::NoNewMsg => {
                s.next = r.next_begin_offset;
            }
            PullStatus::OffsetIllegal => {
                warn!(queue = ?q, from = s.next, to = r.next_begin_offset, "offset illegal, moving");
                s.next = r.next_begin_offset;
            }
        }
        Ok(r.messages)
    }

    async fn commit_queue(&self, q: &MessageQueue) -> Result<()> {
        let Some(state) = self.queues.lock().get(q).copied() else {
            return Ok(());
        };
        if state.committed == Some(state.next) {
            return Ok(());
        }
        self.client
            .update_consumer_offset(&self.config.group, q, state.next)
            .await?;
        if let Some(s) = self.queues.lock().get_mut(q) {
            s.committed = Some(state.next);
        }
        Ok(())
    }

    /// Stores the offsets of everything polled so far in the broker.
    pub async fn commit(&self) -> Result<()> {
        // Every queue is tried: one unreachable broker does not hold back the others' offsets.
        let qs: Vec<MessageQueue> = self.queues.lock().keys().cloned().collect();
        let mut first_err = None;
        for q in qs {
            if let Err(e) = self.commit_queue(&q).await {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Next offsets per owned queue.
    pub fn positions(&self) -> BTreeMap<MessageQueue, i64> {
        self.queues
            .lock()
            .iter()
            .map(|(q, s)| (q.clone(), s.next))
            .collect()
    }

    /// Commits, unregisters the group from the brokers and forgets it.
    pub async fn shutdown(self) -> Result<()> {
        let r = self.commit().await;
        self.client.unregister(None, Some(&self.config.group)).await;
        self.client.unregister_consumer_local(&self.config.group);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn averagely_like_java() {
        let all: Vec<MessageQueue> = (0..8).map(|i| MessageQueue::new("T", "b", i)).collect();
        let cids: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let ids = |me| {
            allocate_averagely(&all, &cids, me)
                .iter()
                .map(|q| q.queue_id)
                .collect::<Vec<_>>()
        };
        assert_eq!(ids("a"), vec![0, 1, 2]);
        assert_eq!(ids("b"), vec![3, 4, 5]);
        assert_eq!(ids("c"), vec![6, 7]);
        assert!(ids("zz").is_empty());
        let few = &all[..2];
        assert_eq!(allocate_averagely(few, &cids, "c").len(), 0);
        assert_eq!(allocate_averagely(few, &cids, "a").len(), 1);
    }
}
