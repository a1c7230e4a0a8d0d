//! The driver around the engine: it owns the scopes, does the broker I/O the engine asks for
//! (through [`BrokerApi`]), reads the time (through [`Clock`]) and waits (long polling). Each job
//! has its file: producing, consuming (fetch, ack, unlock), broker-lock upkeep (and takeover of
//! departed instances' queues), administration, and the control plane shared by every instance
//! through the name servers' KV table.

mod admin;
mod consume;
mod control;
mod locks;
mod observe;
mod produce;
mod receive;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use rmq_remoting::body::MessageQueue;
use tokio::sync::Notify;

pub use admin::{ConsumerConfigChange, QueueOffsetView};
pub use consume::{AckInfo, FetchRequest, FetchResult, MessageQueueView, QueueInfo};
pub use control::{EffectiveSettings, CONTROL_POLL_MS};
pub use produce::ProduceRequest;
pub use receive::{ReceiveRequest, Received};

use crate::broker::{BrokerApi, BrokerError};
use crate::clock::Clock;
use crate::config::{Config, ConsumerConfig, Mode, QueueModeConfig};
use crate::engine::{kv_key, QueueKey, QueueMode, ScopeSettings, ScopeState, StoredSettings};
use crate::error::GatewayError;
use crate::metrics::Metrics;
use crate::token::Token;

/// Broadcast clientIds one consumer may have on one instance.
const MAX_BROADCAST_CLIENTS: usize = 1024;
/// Consumers added at run time (the Aliyun API names its group per request) one instance
/// keeps; each costs a broker group registration and its queue table.
pub const MAX_DYNAMIC_CONSUMERS: usize = 1024;

fn internal(e: BrokerError) -> GatewayError {
    GatewayError::Internal(e.to_string())
}

struct ProducerEntry {
    topic: String,
    group: String,
    token: Option<Token>,
}

struct ConsumerEntry {
    cfg: ConsumerConfig,
    group: String,
    token: Option<Token>,
    scopes: Mutex<HashMap<Option<String>, Arc<Scope>>>,
}

/// One clustering group, or one clientId of a broadcast group.
pub struct Scope {
    /// The group offsets and broker locks live under: the consumer's group, or
    /// `<group>_<clientId>` for a broadcast clientId.
    pub broker_group: String,
    /// The consumer's topic.
    pub topic: String,
    /// Its retry topic, `%RETRY%<broker_group>`, consumed alongside it.
    pub retry_topic: String,
    /// Its key in the shared control plane (`engine::kv_key`).
    pub kv_key: String,
    cfg: ConsumerConfig,
    state: Mutex<ScopeState>,
}

impl Scope {
    fn mq(&self, key: &QueueKey) -> MessageQueue {
        queue_of(key, &self.topic, &self.retry_topic)
    }

    /// MQ-Proxy's requestIds name whole batches: only exclusive queues have them.
    fn require_batches(&self) -> Result<(), GatewayError> {
        if self.state.lock().table.mode() == QueueMode::Exclusive {
            Ok(())
        } else {
            Err(GatewayError::BadRequest(format!(
                "consumer {} hands out messages with receipts (queue_mode = \"shared\"), not batches",
                self.cfg.name
            )))
        }
    }

    fn key(&self, mq: &MessageQueue) -> QueueKey {
        QueueKey::new(
            mq.topic == self.retry_topic,
            mq.broker_name.clone(),
            mq.queue_id,
        )
    }
}

/// The broker queue `key` names in a group consuming `topic`, whose retry topic is
/// `retry_topic`.
fn queue_of(key: &QueueKey, topic: &str, retry_topic: &str) -> MessageQueue {
    let topic = if key.retry { retry_topic } else { topic };
    MessageQueue::new(topic.to_owned(), key.broker_name.clone(), key.queue_id)
}

/// The gateway service: the configured producers and consumers, their scopes, and the broker
/// I/O and waiting the engine needs. The HTTP front ends share it behind an [`Arc`] and call
/// its methods.
pub struct Gateway<B: BrokerApi> {
    broker: B,
    clock: Arc<dyn Clock>,
    producers: HashMap<String, ProducerEntry>,
    consumers: HashMap<String, Arc<ConsumerEntry>>,
    /// Consumers added at run time by [`Gateway::ensure_consumer`], bounded by
    /// [`MAX_DYNAMIC_CONSUMERS`]; they live as long as the instance.
    dynamic: Mutex<HashMap<String, Arc<ConsumerEntry>>>,
    /// The client id this instance locks queues under.
    instance_id: String,
    arrivals: Mutex<HashMap<String, Arc<Notify>>>,
    stopping: AtomicBool,
    admin_token: Option<Token>,
    /// Upper bound of a fetch's `waitSeconds`.
    max_wait_seconds: u64,
    /// Counters for `/metrics` (shared with the HTTP layer and the broker seam).
    metrics: Arc<Metrics>,
    /// Broker offsets of every consumer's queues as last read by [`Gateway::refresh_observed`].
    observed: Mutex<observe::Observed>,
    /// The newest shared settings read from the name servers, by key (`service::control`).
    control: Mutex<HashMap<String, StoredSettings>>,
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

impl<B: BrokerApi> Gateway<B> {
    /// Builds the service for `config` over `broker`, reading time from `clock`. Nothing is sent
    /// yet: a consumer's scope (and its broker registration) is set up on first use.
    pub fn new(config: &Config, broker: B, clock: Arc<dyn Clock>) -> Arc<Self> {
        Self::with_metrics(config, broker, clock, Arc::new(Metrics::new()))
    }

    /// [`Gateway::new`], counting into `metrics` (which the HTTP layer and the broker seam
    /// share).
    pub fn with_metrics(
        config: &Config,
        broker: B,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        let producers = config
            .producers
            .iter()
            .map(|p| {
                (
                    p.name.clone(),
                    ProducerEntry {
                        topic: p.topic.clone(),
                        group: p.group.clone().unwrap_or_else(|| p.name.clone()),
                        token: p.token.as_deref().and_then(Token::new),
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
                        token: c.token.as_deref().and_then(Token::new),
                        scopes: Mutex::new(HashMap::new()),
                    }),
                )
            })
            .collect();
        Arc::new(Gateway {
            instance_id: broker.instance_id(),
            broker,
            clock,
            producers,
            consumers,
            dynamic: Mutex::new(HashMap::new()),
            arrivals: Mutex::new(HashMap::new()),
            stopping: AtomicBool::new(false),
            admin_token: config.admin_token.as_deref().and_then(Token::new),
            max_wait_seconds: config.max_wait_seconds,
            metrics,
            observed: Mutex::default(),
            control: Mutex::new(HashMap::new()),
        })
    }

    /// The broker seam, for checks beyond the service's calls (tests read offsets and routes
    /// through it).
    pub fn broker(&self) -> &B {
        &self.broker
    }

    /// The counters behind `/metrics`.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The client id this instance locks queues under ([`BrokerApi::instance_id`]).
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// Upper bound of a fetch's `waitSeconds` (long polling), in seconds.
    pub fn max_wait_seconds(&self) -> u64 {
        self.max_wait_seconds
    }

    fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Whether `authorization` (an HTTP Authorization header) may change consumer settings.
    pub fn admin_allowed(&self, authorization: Option<&str>) -> Result<(), GatewayError> {
        let Some(token) = &self.admin_token else {
            return Err(GatewayError::Forbidden(
                "the admin API is off: set admin_token (or RMQ_GATEWAY_ADMIN_TOKEN)".into(),
            ));
        };
        if token.matches(crate::token::presented(authorization, None)) {
            Ok(())
        } else {
            Err(GatewayError::Forbidden(
                "missing or wrong admin token".into(),
            ))
        }
    }

    /// Whether a caller presenting `given` (see [`crate::token::presented`]) may send through
    /// `producer`: yes when the producer has no token. An unknown producer passes here and is
    /// refused by the call itself.
    pub fn producer_allowed(
        &self,
        producer: &str,
        given: Option<&str>,
    ) -> Result<(), GatewayError> {
        match self.producers.get(producer).and_then(|p| p.token.as_ref()) {
            Some(t) if !t.matches(given) => Err(GatewayError::Forbidden(format!(
                "missing or wrong token for producer {producer}"
            ))),
            _ => Ok(()),
        }
    }

    /// Whether a caller presenting `given` may use `consumer` (fetch, ack, unlock); with
    /// `or_admin`, the admin token also will do (the offset views monitoring tools read).
    pub fn consumer_allowed(
        &self,
        consumer: &str,
        given: Option<&str>,
        or_admin: bool,
    ) -> Result<(), GatewayError> {
        let Some(t) = self.consumers.get(consumer).and_then(|c| c.token.as_ref()) else {
            return Ok(());
        };
        let admin = or_admin && self.admin_token.as_ref().is_some_and(|a| a.matches(given));
        if t.matches(given) || admin {
            Ok(())
        } else {
            Err(GatewayError::Forbidden(format!(
                "missing or wrong token for consumer {consumer}"
            )))
        }
    }

    fn arrivals(&self, topic: &str) -> Arc<Notify> {
        self.arrivals
            .lock()
            .entry(topic.to_owned())
            .or_default()
            .clone()
    }

    /// Wakes long polls waiting on `topic` (after a send that did not go through
    /// [`Gateway::produce`], such as the Aliyun API's).
    pub fn wake(&self, topic: &str) {
        self.arrivals(topic).notify_waiters();
    }

    /// Whether a consumer of that name is configured or was added.
    pub fn has_consumer(&self, name: &str) -> bool {
        self.consumers.contains_key(name) || self.dynamic.lock().contains_key(name)
    }

    /// How a consumer's queues hand out messages, if it exists.
    pub fn consumer_queue_mode(&self, name: &str) -> Option<QueueModeConfig> {
        self.consumer_entry(name).ok().map(|e| e.cfg.queue_mode)
    }

    /// The driver's clock (ms since the epoch).
    pub fn now_ms(&self) -> i64 {
        self.now()
    }

    /// Adds a consumer at run time unless one of that name exists (the configured ones win).
    /// Its name is what later calls pass as `consumer`. Refused past [`MAX_DYNAMIC_CONSUMERS`].
    pub fn ensure_consumer(&self, cfg: ConsumerConfig) -> Result<(), GatewayError> {
        if self.consumers.contains_key(&cfg.name) {
            return Ok(());
        }
        let mut dynamic = self.dynamic.lock();
        if dynamic.contains_key(&cfg.name) {
            return Ok(());
        }
        // One broker group, one subscription: two topics under one group would share its
        // `%RETRY%` topic, offsets and queue locks, and the broker keeps one subscription.
        let group = cfg.group.clone().unwrap_or_else(|| cfg.name.clone());
        if let Some(other) = self
            .consumers
            .values()
            .chain(dynamic.values())
            .find(|e| e.group == group && e.cfg.topic != cfg.topic)
        {
            return Err(GatewayError::BadRequest(format!(
                "group {group} already consumes topic {} on this gateway instance; a group \
                 consumes one topic (its offsets, queue locks and %RETRY%{group} topic belong \
                 to that subscription): use another group for topic {}",
                other.cfg.topic, cfg.topic
            )));
        }
        if dynamic.len() >= MAX_DYNAMIC_CONSUMERS {
            return Err(GatewayError::BadRequest(format!(
                "this instance already serves {MAX_DYNAMIC_CONSUMERS} run-time consumers"
            )));
        }
        dynamic.insert(
            cfg.name.clone(),
            Arc::new(ConsumerEntry {
                group: cfg.group.clone().unwrap_or_else(|| cfg.name.clone()),
                token: cfg.token.as_deref().and_then(Token::new),
                cfg,
                scopes: Mutex::new(HashMap::new()),
            }),
        );
        Ok(())
    }

    /// Refuses new fetches and ends long polls at once (their queues stay unleased).
    pub fn begin_shutdown(&self) {
        self.stopping.store(true, Ordering::Release);
        for n in self.arrivals.lock().values() {
            n.notify_waiters();
        }
    }

    fn all_scopes(&self) -> Vec<Arc<Scope>> {
        let dynamic: Vec<Arc<ConsumerEntry>> = self.dynamic.lock().values().cloned().collect();
        self.consumers
            .values()
            .chain(dynamic.iter())
            .flat_map(|c| c.scopes.lock().values().cloned().collect::<Vec<_>>())
            .collect()
    }

    fn consumer_entry(&self, consumer: &str) -> Result<Arc<ConsumerEntry>, GatewayError> {
        if let Some(e) = self.consumers.get(consumer) {
            return Ok(e.clone());
        }
        self.dynamic.lock().get(consumer).cloned().ok_or_else(|| {
            GatewayError::BadRequest(format!(
                "unknown consumer {consumer:?}: not in the gateway's configuration"
            ))
        })
    }

    /// The scope of a consume call, created (and announced to the brokers) on first use.
    async fn scope(
        &self,
        consumer: &str,
        topic: &str,
        client_id: Option<&str>,
    ) -> Result<Arc<Scope>, GatewayError> {
        if consumer.is_empty() {
            return Err(GatewayError::bad("consumer is required"));
        }
        let entry = self.consumer_entry(consumer)?;
        if topic.is_empty() {
            return Err(GatewayError::bad("topic is required"));
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
        if client_id.is_some_and(|c| c.len() > 64) {
            return Err(GatewayError::bad("clientId longer than 64 characters"));
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
            kv_key: kv_key(consumer, client_id),
            retry_topic: format!("%RETRY%{broker_group}"),
            broker_group,
            topic: entry.cfg.topic.clone(),
            cfg: entry.cfg.clone(),
            state: Mutex::new(ScopeState::new(
                match entry.cfg.queue_mode {
                    QueueModeConfig::Exclusive => QueueMode::Exclusive,
                    QueueModeConfig::Shared => QueueMode::Shared,
                },
                ScopeSettings {
                    max_deliveries: entry.cfg.max_deliveries,
                    max_unacked: entry.cfg.max_unacked_per_queue,
                    ..ScopeSettings::new(entry.cfg.max_pull_size, entry.cfg.consume_timeout_ms)
                },
            )),
        });
        self.broker.register_consumer(
            &scope.broker_group,
            &[scope.topic.clone(), scope.retry_topic.clone()],
            entry.cfg.start_from,
        );
        // Start from the shared settings (they survive restarts of every instance).
        self.apply_known(&scope, true);
        self.refresh_queues(&scope).await?;
        // Announce the group so brokers create its retry topic and tooling sees it.
        self.broker.announce(&scope.topic).await;
        let mut scopes = entry.scopes.lock();
        Ok(scopes.entry(key).or_insert(scope).clone())
    }

    /// The scopes a config call or report is about: the clustering group, one broadcast
    /// clientId, or every broadcast clientId this instance has seen.
    async fn scopes_for(
        &self,
        consumer: &str,
        client_id: Option<&str>,
    ) -> Result<Vec<(Option<String>, Arc<Scope>)>, GatewayError> {
        let entry = self.consumer_entry(consumer)?;
        let topic = entry.cfg.topic.clone();
        match (entry.cfg.mode, client_id) {
            (Mode::Clustering, _) => Ok(vec![(None, self.scope(consumer, &topic, None).await?)]),
            (Mode::Broadcast, Some(c)) => Ok(vec![(
                Some(c.to_owned()),
                self.scope(consumer, &topic, Some(c)).await?,
            )]),
            (Mode::Broadcast, None) => Ok(entry
                .scopes
                .lock()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()),
        }
    }

    async fn refresh_queues(&self, scope: &Scope) -> Result<(), GatewayError> {
        let route = self.broker.route(&scope.topic).await.map_err(internal)?;
        let mut keys: Vec<QueueKey> = route
            .iter()
            .map(|q| QueueKey::new(false, q.broker_name.clone(), q.queue_id))
            .collect();
        match self.broker.route(&scope.retry_topic).await {
            Ok(r) => keys.extend(
                r.iter()
                    .map(|q| QueueKey::new(true, q.broker_name.clone(), q.queue_id)),
            ),
            Err(BrokerError::TopicNotExist(_)) => {}
            Err(e) => tracing::debug!(error = %e, "retry topic route unavailable"),
        }
        let now = self.now();
        let mut st = scope.state.lock();
        st.table.set_queues(keys, now);
        st.queues_at = now;
        Ok(())
    }

    /// Stops serving, gives every broker lock back, unregisters from the brokers.
    pub async fn shutdown(&self) {
        self.begin_shutdown();
        for scope in self.all_scopes() {
            let held = scope.state.lock().locks.drain();
            let mut by_broker: HashMap<String, Vec<MessageQueue>> = HashMap::new();
            for k in &held {
                by_broker
                    .entry(k.broker_name.clone())
                    .or_default()
                    .push(scope.mq(k));
            }
            for (broker, mqs) in by_broker {
                if let Err(e) = self
                    .broker
                    .unlock(&scope.broker_group, &self.instance_id, &broker, &mqs)
                    .await
                {
                    tracing::warn!(error = %e, "unlock at shutdown failed");
                }
            }
        }
        self.broker.shutdown().await;
    }
}

#[cfg(test)]
mod tests;
