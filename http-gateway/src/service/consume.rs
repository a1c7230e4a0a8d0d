//! `/mq/message`, `/mq/ack`, `/mq/unlock`: claim a queue in the engine, take its broker lock,
//! read its committed offset, pull, hand the batch out; acks commit through the engine.

use std::sync::Arc;
use std::time::Duration;

use rmq_remoting::body::MessageQueue;
use rmq_remoting::message::MessageExt;
use tracing::{debug, info, warn};

use super::{internal, Gateway, Scope};
use crate::broker::{BrokerApi, PullStatus};
use crate::config::StartFrom;
use crate::engine::{
    AckOutcome, Admission, LockCheck, QueueKey, QueueMode, EMPTY_BACKOFF_MS, HELD_ELSEWHERE_MS,
    QUEUE_REFRESH_MS,
};
use crate::error::GatewayError;
use crate::request_id::RequestId;

/// The outcome of the requestId ack carried by a fetch, reported in the answer (`ackInfo`)
/// instead of failing the fetch.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AckInfo {
    /// An HTTP-like status: 200 acked, 400 a requestId naming offsets its lease or queue does not
    /// have, 409 stale or moved, 500 the commit failed (the batch comes again).
    pub status: u16,
    /// What happened, for people reading logs.
    pub message: String,
}

/// Where a batch came from (`queueInfo`): what the requestId encodes, spelled out.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueInfo {
    /// The queue.
    pub message_queue: MessageQueueView,
    /// The queue's max offset when pulled (one past its last message).
    pub max_offset: i64,
    /// The offset the batch starts at.
    pub committed_offset: i64,
    /// The batch's lease (its delivery id, MQ-Proxy's `lockTime`).
    pub lock_timestamp: i64,
}

/// A queue as the JSON answers show it.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageQueueView {
    /// Its topic (the `%RETRY%` topic for retried messages).
    pub topic: String,
    /// The broker holding it.
    pub broker_name: String,
    /// Its number on that broker.
    pub queue_id: i32,
}

impl From<&MessageQueue> for MessageQueueView {
    fn from(mq: &MessageQueue) -> Self {
        MessageQueueView {
            topic: mq.topic.clone(),
            broker_name: mq.broker_name.clone(),
            queue_id: mq.queue_id,
        }
    }
}

/// What `/mq/message` returns.
#[derive(Debug)]
pub struct FetchResult {
    /// `FOUND`, `NO_NEW_MSG`, `PAUSED` or `RATE_LIMITED`.
    pub status: &'static str,
    /// The token acking this batch (absent with no messages).
    pub request_id: Option<String>,
    /// Messages from the consumer's topic.
    pub messages: Vec<MessageExt>,
    /// Messages from its retry topic, and messages an administrator asked to resend.
    pub retry_messages: Vec<MessageExt>,
    /// The outcome of the requestId this fetch acked, if it carried one.
    pub ack_info: Option<AckInfo>,
    /// Where the batch came from (absent with no messages).
    pub queue_info: Option<QueueInfo>,
}

impl FetchResult {
    fn empty(status: &'static str, ack_info: Option<AckInfo>) -> Self {
        FetchResult {
            status,
            request_id: None,
            messages: Vec::new(),
            retry_messages: Vec::new(),
            ack_info,
            queue_info: None,
        }
    }
}

/// One `/mq/message` call.
pub struct FetchRequest {
    /// The configured consumer's name.
    pub consumer: String,
    /// The topic; must be the consumer's.
    pub topic: String,
    /// The previous batch's token, acked before fetching (MQ-Proxy's ack-on-fetch).
    pub request_id: Option<RequestId>,
    /// The caller of a broadcast consumer (required there, refused for clustering): it has its
    /// own offsets.
    pub client_id: Option<String>,
    /// The caller's address, shown in queue views.
    pub client_ip: Option<String>,
    /// Long polling: how long to wait for a message (bounded by `max_wait_seconds`).
    pub wait: Duration,
}

enum Attempt {
    Found(FetchResult),
    Empty,
    Skipped,
}

impl<B: BrokerApi> Gateway<B> {
    /// `/mq/message`: acks `request_id` if given, then claims one queue and returns its batch.
    pub async fn fetch(&self, r: FetchRequest) -> Result<FetchResult, GatewayError> {
        if self.is_stopping() {
            return Err(GatewayError::Internal(
                "the gateway is shutting down".into(),
            ));
        }
        let scope = self
            .scope(&r.consumer, &r.topic, r.client_id.as_deref())
            .await?;
        scope.require_batches()?;
        let ack_info = match &r.request_id {
            Some(rid) => Some(self.ack_in(&scope, rid).await),
            None => None,
        };
        let admission = scope.state.lock().admit(self.now());
        let resend = match admission {
            Admission::Paused => return Ok(FetchResult::empty("PAUSED", ack_info)),
            Admission::RateLimited => return Ok(FetchResult::empty("RATE_LIMITED", ack_info)),
            Admission::Go { resend } => resend,
        };
        let mut resent = Vec::new();
        if let Some(id) = resend {
            resent = match self
                .broker
                .find_by_unique_key(&scope.topic, &id, self.now() + 60_000)
                .await
            {
                Ok(v) => v,
                Err(e) => {
                    warn!(msg_id = %id, error = %e, "query by unique key failed");
                    Vec::new()
                }
            };
            if resent.is_empty() {
                warn!(msg_id = %id, "message to resend not found");
            }
        }
        let queues_at = scope.state.lock().queues_at;
        if self.now() - queues_at > QUEUE_REFRESH_MS {
            if let Err(e) = self.refresh_queues(&scope).await {
                warn!(error = %e, "queue refresh failed");
            }
        }
        let mut result = self.fetch_batch(&scope, &r, ack_info).await?;
        scope
            .state
            .lock()
            .took(result.messages.len() + result.retry_messages.len());
        resent.append(&mut result.retry_messages);
        result.retry_messages = resent;
        if result.status == "NO_NEW_MSG" && !result.retry_messages.is_empty() {
            result.status = "FOUND";
        }
        Ok(result)
    }

    async fn fetch_batch(
        &self,
        scope: &Arc<Scope>,
        r: &FetchRequest,
        ack_info: Option<AckInfo>,
    ) -> Result<FetchResult, GatewayError> {
        let wait = r.wait.min(Duration::from_secs(self.max_wait_seconds));
        let deadline = self.now() + wait.as_millis() as i64;
        let arrivals = self.arrivals(&scope.topic);
        loop {
            let notified = arrivals.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let now = self.now();
            let candidates = scope.state.lock().table.candidates(now, EMPTY_BACKOFF_MS);
            let mut last_err = None;
            for key in candidates {
                let recently_empty = scope
                    .state
                    .lock()
                    .table
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
            let remaining = deadline - self.now();
            if remaining <= 0 || self.is_stopping() {
                if let Some(e) = last_err {
                    return Err(e);
                }
                return Ok(FetchResult::empty("NO_NEW_MSG", ack_info));
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

    /// Makes sure this instance holds the broker lock of `key` (so instances sharing a group
    /// serve disjoint queues). A lock that is no longer trusted (see `engine::BrokerLocks`) is
    /// asked for again; if the broker refuses, the queue was taken by another instance and
    /// everything this instance handed out from it is dropped (its acks answer stale).
    pub(super) async fn ensure_broker_lock(
        &self,
        scope: &Scope,
        key: &QueueKey,
        now: i64,
    ) -> Result<bool, GatewayError> {
        let epoch = self.broker.connection_epoch(&key.broker_name);
        {
            let mut st = scope.state.lock();
            st.locks.observe_epoch(&key.broker_name, epoch);
            match st.locks.check(key, now) {
                LockCheck::Trusted => return Ok(true),
                LockCheck::Releasing => return Ok(false),
                LockCheck::Ask => {}
            }
        }
        let mq = scope.mq(key);
        let granted = self
            .broker
            .lock(
                &scope.broker_group,
                &self.instance_id,
                &key.broker_name,
                std::slice::from_ref(&mq),
            )
            .await
            .map_err(internal)?
            .contains(&mq);
        let mut st = scope.state.lock();
        // The lock request may have dialled the connection it was granted on.
        st.locks.observe_epoch(
            &key.broker_name,
            self.broker.connection_epoch(&key.broker_name),
        );
        st.locks.granted(key, granted, now);
        if !granted && st.table.lose(key) {
            warn!(queue = ?key, "the broker lock went to another instance: in-flight batches dropped");
        }
        Ok(granted)
    }

    /// Whether the lock of `key` is still trusted after a broker round trip that took until
    /// `now` (the process may have been stopped, or the connection re-dialled, meanwhile).
    pub(super) fn still_trusted(&self, scope: &Scope, key: &QueueKey, now: i64) -> bool {
        let epoch = self.broker.connection_epoch(&key.broker_name);
        let mut st = scope.state.lock();
        st.locks.observe_epoch(&key.broker_name, epoch);
        st.locks.check(key, now) == LockCheck::Trusted
    }

    pub(super) async fn start_offset(
        &self,
        scope: &Scope,
        mq: &MessageQueue,
    ) -> Result<i64, GatewayError> {
        if let Some(o) = self
            .broker
            .query_offset(&scope.broker_group, mq)
            .await
            .map_err(internal)?
        {
            // 4.9 brokers answer 0 for groups that never committed (docs/protocol.md §9.5): only a
            // positive offset is surely a commit.
            if o > 0 || scope.cfg.start_from == StartFrom::Earliest {
                return Ok(o);
            }
        }
        match scope.cfg.start_from {
            StartFrom::Earliest => self.broker.min_offset(mq).await.map_err(internal),
            StartFrom::Latest => self.broker.max_offset(mq).await.map_err(internal),
        }
    }

    async fn attempt(
        &self,
        scope: &Scope,
        key: &QueueKey,
        client_ip: Option<String>,
    ) -> Result<Attempt, GatewayError> {
        let now = self.now();
        if !self.ensure_broker_lock(scope, key, now).await? {
            scope
                .state
                .lock()
                .table
                .mark_held_elsewhere(key, now + HELD_ELSEWHERE_MS);
            return Ok(Attempt::Skipped);
        }
        let mq = scope.mq(key);
        let claim = {
            let mut st = scope.state.lock();
            // Re-check the lock under the scope's state: the upkeep may have given it back
            // since; it reads the leases under the same lock, so a queue is either seen
            // leased there or seen released here.
            if st.locks.check(key, now) != LockCheck::Trusted {
                return Ok(Attempt::Skipped);
            }
            let timeout = st.settings.consume_timeout_ms as i64;
            let claim = match st.table.begin(key, self.now(), timeout, client_ip) {
                Ok(c) => c,
                Err(_) => return Ok(Attempt::Skipped),
            };
            st.locks.touch(key);
            claim
        };
        // The broker's committed offset is the truth (another instance may have moved it); read
        // it only now that the claim keeps this instance's other requests off the queue.
        let offset = if claim.needs_offset {
            match self.start_offset(scope, &mq).await {
                Ok(o) => {
                    scope.state.lock().table.rebase(key, claim.id, o);
                    o
                }
                Err(e) => {
                    scope.state.lock().table.release(key, claim.id);
                    return Err(e);
                }
            }
        } else {
            claim.from
        };
        let (max_pull, max_deliveries) = {
            let st = scope.state.lock();
            (st.settings.max_pull_size, st.settings.max_deliveries)
        };
        let r = match self
            .broker
            .pull(&scope.broker_group, &mq, offset, max_pull)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                scope.state.lock().table.release(key, claim.id);
                return Err(internal(e));
            }
        };
        // Hand nothing out unless the lock outlived the pull: a process stopped during the pull
        // for longer than the lock's trust, or a re-dialled connection, may mean another
        // instance serves the queue now. The claim goes; the next attempt asks the broker.
        if !self.still_trusted(scope, key, self.now()) {
            scope.state.lock().table.release(key, claim.id);
            return Ok(Attempt::Skipped);
        }
        let pulled: Vec<i64> = if r.status == PullStatus::Found {
            r.messages.iter().map(|m| m.queue_offset).collect()
        } else {
            Vec::new()
        };
        let out = scope.state.lock().table.record_pull(
            key,
            claim.id,
            &pulled,
            r.next_begin_offset,
            r.max_offset,
            self.now(),
            max_deliveries,
        );
        if out.found() {
            let handed: std::collections::HashSet<i64> =
                out.handed.iter().map(|h| h.receipt.offset).collect();
            // MQ-Proxy clients see the broker's message as stored; the engine's delivery count
            // is for APIs that report it.
            let msgs: Vec<MessageExt> = r
                .messages
                .into_iter()
                .filter(|m| handed.contains(&m.queue_offset))
                .collect();
            let rid = RequestId {
                queue: key.clone(),
                offset,
                next_offset: r.next_begin_offset,
                lock_time: claim.id,
                force: false,
            };
            let info = QueueInfo {
                message_queue: MessageQueueView::from(&mq),
                max_offset: r.max_offset,
                committed_offset: offset,
                lock_timestamp: claim.id,
            };
            let (messages, retry_messages) = if key.retry {
                (Vec::new(), msgs)
            } else {
                (msgs, Vec::new())
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
                .broker
                .commit_offset(&scope.broker_group, &mq, next)
                .await
                .is_ok()
            {
                scope.state.lock().table.set_committed(key, next);
            }
        }
        scope.state.lock().table.release(key, claim.id);
        Ok(Attempt::Empty)
    }

    async fn ack_in(&self, scope: &Scope, rid: &RequestId) -> AckInfo {
        let key = &rid.queue;
        let mq = scope.mq(key);
        // Before committing a batch this instance leased, make sure it still holds the queue: an
        // instance that was stopped past the lock's expiry, or lost its connection, may find
        // another instance serving it now; then the ack answers stale and moves no offset.
        let ours = {
            let st = scope.state.lock();
            st.table.mode() == QueueMode::Exclusive
                && st.table.get(key).and_then(|s| s.current()) == Some(rid.lock_time)
        };
        if ours {
            if let Err(e) = self.ensure_broker_lock(scope, key, self.now()).await {
                return AckInfo {
                    status: 500,
                    message: format!(
                        "cannot confirm the queue's broker lock: {e}; the batch will come again"
                    ),
                };
            }
        }
        let outcome = scope.state.lock().table.ack_batch(key, &rid.ack_token());
        let desc = format!(
            "{}-{}:{},{},{}",
            key.broker_name, key.queue_id, rid.offset, rid.next_offset, rid.lock_time
        );
        match outcome {
            AckOutcome::Commit { from, to } => {
                let r = self
                    .broker
                    .commit_offset(&scope.broker_group, &mq, to)
                    .await;
                scope.state.lock().table.finish_commit(key, to, r.is_ok());
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
                message: format!("ack lockTime small than {current_lock_time}: {desc} expired and was leased again, or the queue moved to another instance"),
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
                match self.broker.max_offset(mq).await {
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
                    .broker
                    .commit_offset(&scope.broker_group, mq, rid.next_offset)
                    .await
                {
                    Ok(()) => {
                        scope
                            .state
                            .lock()
                            .table
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
        scope.require_batches()?;
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
        let released = scope.state.lock().table.release(&rid.queue, rid.lock_time);
        Ok(released)
    }

    /// Ends leases whose batch another instance committed (an ack that went to another gateway
    /// behind a load balancer), so the queue does not wait for the consume timeout.
    pub(super) async fn settle_foreign_acks(&self, scope: &Scope, now: i64) {
        let pending = scope.state.lock().table.pending_batches(now, 2_000);
        for key in pending {
            let mq = scope.mq(&key);
            if let Ok(Some(c)) = self.broker.query_offset(&scope.broker_group, &mq).await {
                if scope.state.lock().table.settle_committed_elsewhere(&key, c) {
                    debug!(queue = ?key, committed = c, "batch acked through another instance");
                }
            }
        }
    }
}
