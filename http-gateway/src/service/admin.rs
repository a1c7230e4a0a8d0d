//! MQCloud's administration calls: backlog per queue, and `/mq/consumer/config` (pause, rate
//! limit, pull size, timeout, offset reset, resend).

use super::consume::MessageQueueView;
use super::{internal, Gateway};
use crate::broker::BrokerApi;
use crate::engine::QueueKey;
use crate::error::GatewayError;

/// One queue's line in the backlog report.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueOffsetView {
    /// The queue.
    pub message_queue: MessageQueueView,
    /// The broker's max offset (one past the last message).
    pub max_offset: i64,
    /// The group's committed offset on the broker; `None` if it never committed one.
    pub committed_offset: Option<i64>,
    /// Messages not yet committed past: `max_offset - committed_offset`, or `max_offset` with
    /// no committed offset; never negative.
    pub backlog: i64,
    /// The lease this instance holds on the queue (its current delivery id), if any.
    pub lock_timestamp: Option<i64>,
    /// When this instance last handed out a message of the queue (ms since the epoch).
    pub last_consume_timestamp: Option<i64>,
    /// The client that fetched it.
    pub last_consume_client_ip: Option<String>,
    /// The broker group the offsets are read under (`<group>_<clientId>` for broadcast).
    pub broker_group: String,
}

/// The body of `/mq/consumer/config` (MQCloud's ConsumerConfigParam).
#[derive(Debug, Clone, Default)]
pub struct ConsumerConfigChange {
    /// The configured consumer's name.
    pub consumer: String,
    /// A broadcast consumer's clientId: change only its settings; absent, all clientIds this
    /// instance has seen.
    pub client_id: Option<String>,
    /// New batch size (messages per pull), 1..=128.
    pub max_pull_size: Option<u32>,
    /// New invisibility timeout in ms, 10000..=129600000 (10 s to 36 h).
    pub consume_timeout_ms: Option<u64>,
    /// Stop (true) or resume (false) handing out messages on this instance.
    pub pause: Option<bool>,
    /// Turn the rate limit on or off.
    pub rate_limit_enabled: Option<bool>,
    /// The rate limit in messages per second, at least 1; setting it turns the limit on.
    pub limit_rate: Option<f64>,
    /// Move the committed offset of every queue to the first message stored at or after this
    /// time (ms since the epoch).
    pub reset_offset_timestamp: Option<i64>,
    /// A message id (`UNIQ_KEY`) to hand out again with the next fetch, as a retry message.
    pub retry_msg_id: Option<String>,
}

impl ConsumerConfigChange {
    fn validate(&self) -> Result<(), GatewayError> {
        if self.max_pull_size.is_some_and(|n| !(1..=128).contains(&n)) {
            return Err(GatewayError::bad("maxPullSize must be 1..128"));
        }
        if self
            .consume_timeout_ms
            .is_some_and(|t| !(10_000..=129_600_000).contains(&t))
        {
            return Err(GatewayError::bad(
                "consumeTimeoutInMillis must be 10000..129600000",
            ));
        }
        if self.limit_rate.is_some_and(|r| r < 1.0) {
            return Err(GatewayError::bad("limitRate must be at least 1"));
        }
        if self.reset_offset_timestamp.is_some_and(|t| t < 0) {
            return Err(GatewayError::bad("resetOffsetTimestamp must be >= 0"));
        }
        Ok(())
    }
}

impl<B: BrokerApi> Gateway<B> {
    /// The first offset of `mq` whose message was stored at or after `ts`.
    /// SEARCH_OFFSET_BY_TIMESTAMP alone is not that: for a time after the newest message, Java
    /// 4.9 answers that message's offset and rocketmq-rust 1.0 the queue's max offset
    /// (docs/broker-differences.md), so the message at the answer is checked.
    async fn offset_at_time(
        &self,
        group: &str,
        mq: &rmq_remoting::body::MessageQueue,
        ts: i64,
    ) -> Result<i64, crate::broker::BrokerError> {
        let off = self.broker.search_offset(mq, ts).await?;
        let pulled = self.broker.pull(group, mq, off, 1).await?;
        Ok(match pulled.messages.first() {
            Some(m) if m.queue_offset == off && m.store_timestamp < ts => off + 1,
            _ => off,
        })
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
                .state
                .lock()
                .table
                .queues()
                .map(|(k, s)| {
                    (
                        k.clone(),
                        s.current(),
                        s.last_consume_ms,
                        s.last_client_ip.clone(),
                    )
                })
                .collect();
            let mut views = Vec::with_capacity(keys.len());
            for (key, lock, last, ip) in keys {
                let mq = scope.mq(&key);
                let max = self.broker.max_offset(&mq).await.map_err(internal)?;
                let committed = self
                    .broker
                    .query_offset(&scope.broker_group, &mq)
                    .await
                    .map_err(internal)?;
                views.push(QueueOffsetView {
                    message_queue: MessageQueueView::from(&mq),
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
    /// resend. The settings go to the shared control plane (every name server's KV table), so
    /// every instance applies them within about a second and they survive restarts; a pause is
    /// also mirrored to the brokers' `consumeEnable`. The offset reset is written to the broker
    /// here, once. Returns what was done.
    pub async fn configure(&self, c: ConsumerConfigChange) -> Result<Vec<String>, GatewayError> {
        c.validate()?;
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
            // Stored before the offsets move, so the other instances drop what they have in
            // flight (and cannot commit it over the reset) as soon as they read it.
            let doc = self
                .next_doc(&scope, &c, c.reset_offset_timestamp.is_some())
                .await?;
            self.store_settings(&scope, doc.clone()).await?;
            if let Some(p) = c.pause {
                done.push(format!("{who} pause={p}"));
                if let Some(failed) = self.mirror_pause(&scope, p).await {
                    done.push(failed);
                }
            }
            if let Some(n) = c.max_pull_size {
                done.push(format!("{who} maxPullSize={n}"));
            }
            if let Some(t) = c.consume_timeout_ms {
                done.push(format!("{who} consumeTimeoutInMillis={t}"));
            }
            match (c.rate_limit_enabled, doc.limit_rate) {
                (Some(false), _) => done.push(format!("{who} rate limit off")),
                (Some(true), Some(r)) => done.push(format!("{who} rate limit {r}/s")),
                (None, Some(r)) if c.limit_rate.is_some() => {
                    done.push(format!("{who} rate limit {r}/s"))
                }
                _ => {}
            }
            if let Some(id) = c.retry_msg_id.as_deref().filter(|s| !s.is_empty()) {
                done.push(format!("{who} resend {id} at the next fetch"));
            }
            if let Some(ts) = c.reset_offset_timestamp {
                self.refresh_queues(&scope).await?;
                let keys: Vec<QueueKey> = {
                    let mut st = scope.state.lock();
                    st.table.drop_leases();
                    st.table
                        .queues()
                        .map(|(k, _)| k.clone())
                        .filter(|k| !k.retry)
                        .collect()
                };
                let mut refused = Vec::new();
                for key in keys {
                    let mq = scope.mq(&key);
                    let off = self
                        .offset_at_time(&scope.broker_group, &mq, ts)
                        .await
                        .map_err(internal)?;
                    self.broker
                        .commit_offset(&scope.broker_group, &mq, off)
                        .await
                        .map_err(internal)?;
                    // Java brokers store any offset; rocketmq-rust 1.0 answers SUCCESS but keeps
                    // a larger one. Read it back rather than report a reset that did not happen.
                    let now_at = self
                        .broker
                        .query_offset(&scope.broker_group, &mq)
                        .await
                        .map_err(internal)?;
                    scope
                        .state
                        .lock()
                        .table
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
}
