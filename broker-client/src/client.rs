//! `MQClient`: one client instance shared by producers and consumers of a process. It owns the
//! connection pool, the name-server client, the route cache (refreshed every 30 s and at once
//! when a broker says a route is stale), the broker versions learnt from responses, and the
//! groups to announce in heartbeats.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use rmq_remoting::body::{ConsumerData, HeartbeatData, ProducerData};
use rmq_remoting::{RemotingCommand, RequestCode};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::ClientConfig;
use crate::error::{ClientError, Result};
use crate::remoting_client::RemotingClient;
use crate::route::{NameServerClient, TopicRoute};

/// The first 5.x version ordinal (5.0.0); brokers at or above it understand timer messages.
pub const VERSION_5_0_0: i32 = 413;

/// The client of a process: connections, routes and heartbeats shared by its producers and
/// consumers; clones share it. Background tasks stop at [`shutdown`](Self::shutdown) or when the
/// last clone is dropped.
///
/// Requests: [`pull`](Self::pull), offsets ([`query_consumer_offset`](Self::query_consumer_offset),
/// [`update_consumer_offset`](Self::update_consumer_offset), [`max_offset`](Self::max_offset), ...),
/// queue locks, [`send_back`](Self::send_back), [`view_message`](Self::view_message) and
/// [`query_message`](Self::query_message); sends go through a [`Producer`](crate::Producer).
///
/// # Cancel safety
///
/// Every async method is cancel safe in the sense of `tokio::select!`: dropping its future
/// leaves the client usable and forgets the request, whose effect on the broker is then
/// unknown (a dropped offset commit may or may not have happened).
///
/// ```no_run
/// use rmq_client::{ClientConfig, MQClient, PullRequest, PullStatus};
///
/// # async fn run() -> Result<(), rmq_client::ClientError> {
/// let client = MQClient::start(ClientConfig::new("127.0.0.1:9876"))?;
/// let route = client.route("orders").await?;
/// for queue in &route.subscribe_queues {
///     let from = client.query_consumer_offset("audit", queue).await?.unwrap_or(0);
///     let pulled = client.pull(queue, &PullRequest::new("audit", from)).await?;
///     if pulled.status == PullStatus::Found {
///         for m in &pulled.messages {
///             println!("{} {:?}", m.msg_id(), m.body);
///         }
///         client
///             .update_consumer_offset("audit", queue, pulled.next_begin_offset)
///             .await?;
///     }
/// }
/// client.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct MQClient {
    inner: Arc<Inner>,
}

struct Inner {
    config: ClientConfig,
    remoting: RemotingClient,
    namesrv: NameServerClient,
    routes: RwLock<HashMap<String, Arc<TopicRoute>>>,
    /// Broker address -> version ordinal its responses carry.
    broker_versions: Mutex<HashMap<String, i32>>,
    producer_groups: Mutex<BTreeSet<String>>,
    consumers: Mutex<BTreeMap<String, ConsumerData>>,
    cancel: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Groups a broker told us (NOTIFY_CONSUMER_IDS_CHANGED) to rebalance.
    rebalance_wanted: Arc<Mutex<BTreeSet<String>>>,
}

impl Drop for Inner {
    /// The last handle is gone: stop the periodic tasks now rather than at their next tick.
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl std::fmt::Debug for MQClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MQClient")
            .field("client_id", &self.client_id())
            .finish()
    }
}

impl MQClient {
    /// Creates the client and starts its background tasks (route refresh, heartbeats).
    /// Must be called inside a tokio runtime. No connection is made until first use.
    pub fn start(config: ClientConfig) -> Result<Self> {
        if config.namesrv_addrs.is_empty() {
            return Err(ClientError::NoNameServer);
        }
        let remoting = RemotingClient::new(config.clone());
        let rebalance_wanted: Arc<Mutex<BTreeSet<String>>> = Arc::default();
        let wanted = rebalance_wanted.clone();
        // Requests brokers send us: note rebalance notices; everything else is answered
        // "not supported" (two-way) or dropped (one-way) by the connection.
        remoting.set_server_request_handler(Arc::new(move |_addr, req: RemotingCommand| {
            if req.request_code() == RequestCode::NotifyConsumerIdsChanged {
                if let Some(g) = req.ext("consumerGroup") {
                    wanted.lock().insert(g.to_owned());
                }
            }
            None
        }));
        let namesrv = NameServerClient::new(remoting.clone(), config.namesrv_addrs.clone());
        let client = MQClient {
            inner: Arc::new(Inner {
                config,
                remoting,
                namesrv,
                routes: RwLock::new(HashMap::new()),
                broker_versions: Mutex::new(HashMap::new()),
                producer_groups: Mutex::new(BTreeSet::new()),
                consumers: Mutex::new(BTreeMap::new()),
                cancel: CancellationToken::new(),
                tasks: Mutex::new(Vec::new()),
                rebalance_wanted,
            }),
        };
        client.spawn_periodic_tasks();
        Ok(client)
    }

    /// The configuration the client was started with.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// `ip@instance`: how brokers know this client.
    pub fn client_id(&self) -> String {
        self.inner.config.client_id()
    }

    /// The connection pool, for requests this crate has no method for.
    pub fn remoting(&self) -> &RemotingClient {
        &self.inner.remoting
    }

    /// The name-server client.
    pub fn namesrv(&self) -> &NameServerClient {
        &self.inner.namesrv
    }

    /// Whether [`shutdown`](Self::shutdown) was called.
    pub fn is_shut_down(&self) -> bool {
        self.inner.cancel.is_cancelled()
    }

    fn spawn_periodic_tasks(&self) {
        let cfg = &self.inner.config;
        let routes = self.spawn_every(cfg.route_refresh_interval, |c| async move {
            c.refresh_all_routes().await;
        });
        let heartbeats = self.spawn_every(cfg.heartbeat_interval, |c| async move {
            if let Err(e) = c.heartbeat_all().await {
                warn!(error = %e, "heartbeat round failed");
            }
        });
        self.inner.tasks.lock().extend([routes, heartbeats]);
    }

    /// Runs `task` every `every` until shutdown. The task holds only a weak reference between
    /// runs, so dropping every handle lets the client go away.
    fn spawn_every<F, Fut>(&self, every: Duration, task: F) -> JoinHandle<()>
    where
        F: Fn(MQClient) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let weak = Arc::downgrade(&self.inner);
        let cancel = self.inner.cancel.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = cancel.cancelled() => break,
                }
                let Some(inner) = weak.upgrade() else { break };
                task(MQClient { inner }).await;
            }
        })
    }

    /// Whether a broker asked `group` to rebalance since the last call (clears the request).
    pub fn take_rebalance_request(&self, group: &str) -> bool {
        self.inner.rebalance_wanted.lock().remove(group)
    }

    // ---- routes -------------------------------------------------------------------------

    /// The cached route of `topic`, fetched from a name server on first use.
    pub async fn route(&self, topic: &str) -> Result<Arc<TopicRoute>> {
        if let Some(r) = self.inner.routes.read().get(topic) {
            return Ok(r.clone());
        }
        self.refresh_route(topic)
            .await?
            .ok_or_else(|| ClientError::TopicNotExist(topic.to_owned()))
    }

    /// Fetches the route of `topic` now; `None` when the name servers do not know it.
    pub async fn refresh_route(&self, topic: &str) -> Result<Option<Arc<TopicRoute>>> {
        match self.inner.namesrv.topic_route(topic).await? {
            Some(route) => {
                let route = Arc::new(route);
                let mut routes = self.inner.routes.write();
                let changed = routes.get(topic).map(|old| old.data != route.data);
                if changed != Some(false) {
                    debug!(%topic, "route updated");
                    routes.insert(topic.to_owned(), route.clone());
                    Ok(Some(route))
                } else {
                    Ok(routes.get(topic).cloned())
                }
            }
            None => {
                self.inner.routes.write().remove(topic);
                Ok(None)
            }
        }
    }

    /// Drops a cached route, e.g. when a broker answered that the topic is not there.
    pub fn invalidate_route(&self, topic: &str) {
        self.inner.routes.write().remove(topic);
    }

    async fn refresh_all_routes(&self) {
        let topics: Vec<String> = self.inner.routes.read().keys().cloned().collect();
        for t in topics {
            if let Err(e) = self.refresh_route(&t).await {
                warn!(topic = %t, error = %e, "route refresh failed");
            }
        }
    }

    /// Master addresses of every broker in any cached route.
    pub fn known_masters(&self) -> BTreeSet<String> {
        self.inner
            .routes
            .read()
            .values()
            .flat_map(|r| r.master_addrs())
            .collect()
    }

    /// The master address of `broker_name`, from any cached route.
    pub fn master_addr(&self, broker_name: &str) -> Option<String> {
        self.inner
            .routes
            .read()
            .values()
            .find_map(|r| r.master_addr(broker_name).map(str::to_owned))
    }

    // ---- requests to brokers ------------------------------------------------------------

    /// Sends to a broker and records the version its answer carries.
    pub async fn invoke_broker(
        &self,
        addr: &str,
        cmd: RemotingCommand,
        timeout: Option<Duration>,
    ) -> Result<RemotingCommand> {
        if self.is_shut_down() {
            return Err(ClientError::Shutdown);
        }
        let timeout = timeout.unwrap_or(self.inner.config.request_timeout);
        let resp = self
            .inner
            .remoting
            .invoke_timeout(addr, cmd, timeout)
            .await?;
        self.note_version(addr, resp.version);
        Ok(resp)
    }

    /// Sends a one-way request to a broker: nothing comes back.
    pub async fn invoke_broker_oneway(&self, addr: &str, cmd: RemotingCommand) -> Result<()> {
        if self.is_shut_down() {
            return Err(ClientError::Shutdown);
        }
        self.inner.remoting.invoke_oneway(addr, cmd).await
    }

    fn note_version(&self, addr: &str, version: i32) {
        if version > 0 {
            self.inner
                .broker_versions
                .lock()
                .insert(addr.to_owned(), version);
        }
    }

    /// The version ordinal a broker announced, once it has answered anything.
    pub fn broker_version(&self, addr: &str) -> Option<i32> {
        self.inner.broker_versions.lock().get(addr).copied()
    }

    // ---- heartbeats ---------------------------------------------------------------------

    /// Announces the producer group in heartbeats.
    pub fn register_producer(&self, group: &str) {
        self.inner.producer_groups.lock().insert(group.to_owned());
    }

    /// Announces the consumer group (and its subscriptions) in heartbeats.
    pub fn register_consumer(&self, data: ConsumerData) {
        self.inner
            .consumers
            .lock()
            .insert(data.group_name.clone(), data);
    }

    /// Stops announcing the producer group (brokers forget it after 120 s, or at once with [`unregister`](Self::unregister)).
    pub fn unregister_producer_local(&self, group: &str) {
        self.inner.producer_groups.lock().remove(group);
    }

    /// Stops announcing the consumer group; returns what was announced.
    pub fn unregister_consumer_local(&self, group: &str) -> Option<ConsumerData> {
        self.inner.consumers.lock().remove(group)
    }

    /// Whether any producer or consumer group is registered (heartbeats are sent only then).
    pub(crate) fn has_groups(&self) -> bool {
        !self.inner.producer_groups.lock().is_empty() || !self.inner.consumers.lock().is_empty()
    }

    pub(crate) fn heartbeat_data(&self) -> HeartbeatData {
        HeartbeatData {
            client_id: self.client_id(),
            consumer_data_set: self.inner.consumers.lock().values().cloned().collect(),
            heartbeat_fingerprint: None,
            producer_data_set: self
                .inner
                .producer_groups
                .lock()
                .iter()
                .map(|g| ProducerData {
                    group_name: g.clone(),
                })
                .collect(),
            without_sub: None,
        }
    }

    /// Unregisters every group, stops background tasks and closes all connections.
    pub async fn shutdown(&self) {
        if self.inner.cancel.is_cancelled() {
            return;
        }
        let producers: Vec<String> = self.inner.producer_groups.lock().iter().cloned().collect();
        let consumers: Vec<String> = self.inner.consumers.lock().keys().cloned().collect();
        for g in &producers {
            self.unregister(Some(g), None).await;
        }
        for g in &consumers {
            self.unregister(None, Some(g)).await;
        }
        self.inner.cancel.cancel();
        for t in self.inner.tasks.lock().drain(..) {
            t.abort();
        }
        self.inner.remoting.close_all().await;
        info!(client_id = %self.client_id(), "client shut down");
    }
}
