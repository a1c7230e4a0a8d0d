//! Receipt-based consumption (what the Aliyun MQ HTTP API needs): up to N visible messages of a
//! scope across its queues, each under its own receipt and invisibility deadline; acks of single
//! receipts; messages handed out more than `max_deliveries` times go to the dead-letter queue.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rmq_remoting::message::MessageExt;
use tracing::warn;

use super::{internal, Gateway, Scope};
use crate::broker::{BrokerApi, PullStatus};
use crate::engine::{
    Commit, LockCheck, QueueKey, Receipt, ReceiptOutcome, EMPTY_BACKOFF_MS, HELD_ELSEWHERE_MS,
};
use crate::error::GatewayError;

/// How soon a receive looks again at queues that were being pulled from by other requests.
const BUSY_RETRY_MS: i64 = 5;

/// One receive call of a receipt-based API (see [`Gateway::receive`]).
pub struct ReceiveRequest {
    /// The gateway's name of the consumer (configured, or added by a receipt-based API).
    pub consumer: String,
    /// The topic; must be the one the consumer subscribes.
    pub topic: String,
    /// The caller's clientId: required (at most 64 characters) for a broadcast consumer, absent
    /// (or empty) for a clustering one.
    pub client_id: Option<String>,
    /// The caller's address, shown in queue views as the client of the delivery; None if unknown.
    pub client_ip: Option<String>,
    /// At most this many messages (1..=max_pull_size is sensible).
    pub max: usize,
    /// How long the messages handed out stay invisible (unacked, they come back after it).
    pub invisible_ms: i64,
    /// Long polling: how long to wait for a first message (bounded by `max_wait_seconds`).
    pub wait: Duration,
}

/// A message handed out under a receipt.
#[derive(Debug, Clone)]
pub struct Received {
    /// The message as the broker returned it.
    pub message: MessageExt,
    /// Acks this delivery (and only this one: a redelivery gets a new receipt).
    pub receipt: Receipt,
    /// 1 the first time.
    pub delivery_count: u32,
    /// When it was first handed out (ms since the epoch).
    pub first_delivered_ms: i64,
    /// When it becomes visible again unless acked (ms since the epoch).
    pub next_visible_ms: i64,
}

impl<B: BrokerApi> Gateway<B> {
    /// Up to `r.max` visible messages of the scope, across its queues.
    pub async fn receive(&self, r: ReceiveRequest) -> Result<Vec<Received>, GatewayError> {
        if self.is_stopping() {
            return Err(GatewayError::Internal(
                "the gateway is shutting down".into(),
            ));
        }
        if r.max == 0 || r.invisible_ms <= 0 {
            return Err(GatewayError::bad(
                "receive needs max >= 1 and a positive invisibility time",
            ));
        }
        let scope = self
            .scope(&r.consumer, &r.topic, r.client_id.as_deref())
            .await?;
        {
            // Paused or over the rate limit: nothing now (the caller polls again).
            let mut st = scope.state.lock();
            let now = self.now();
            if st.settings.paused
                || st
                    .settings
                    .rate
                    .as_mut()
                    .is_some_and(|rate| !rate.try_acquire(now, 1.0))
            {
                return Ok(Vec::new());
            }
        }
        let wait = r.wait.min(Duration::from_secs(self.max_wait_seconds));
        let deadline = self.now() + wait.as_millis() as i64;
        let arrivals = self.arrivals(&scope.topic);
        loop {
            let notified = arrivals.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let now = self.now();
            let candidates = scope.state.lock().table.candidates(now, EMPTY_BACKOFF_MS);
            let mut out = Vec::new();
            let mut last_err = None;
            let busy = AtomicBool::new(false);
            for key in candidates {
                if out.len() >= r.max {
                    break;
                }
                match self
                    .receive_from(&scope, &key, &r, r.max - out.len(), &busy)
                    .await
                {
                    Ok(mut got) => out.append(&mut got),
                    Err(e) => {
                        warn!(queue = ?key, error = %e, "pull failed");
                        last_err = Some(e);
                    }
                }
            }
            if !out.is_empty() {
                scope.state.lock().took(out.len());
                return Ok(out);
            }
            let remaining = deadline - self.now();
            if remaining <= 0 || self.is_stopping() {
                return match last_err {
                    Some(e) => Err(e),
                    None => Ok(out),
                };
            }
            // A queue another request of this instance is pulling from may have messages left
            // when that pull ends: look again soon rather than after the empty-queue backoff.
            let backoff = if busy.load(Ordering::Relaxed) {
                BUSY_RETRY_MS
            } else {
                EMPTY_BACKOFF_MS
            };
            let nap = Duration::from_millis(remaining.clamp(1, backoff) as u64);
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(nap) => {}
            }
        }
    }

    async fn receive_from(
        &self,
        scope: &Scope,
        key: &QueueKey,
        r: &ReceiveRequest,
        max: usize,
        busy: &AtomicBool,
    ) -> Result<Vec<Received>, GatewayError> {
        let now = self.now();
        if scope
            .state
            .lock()
            .table
            .get(key)
            .is_some_and(|s| s.recently_empty(now, EMPTY_BACKOFF_MS))
        {
            return Ok(Vec::new());
        }
        if !self.ensure_broker_lock(scope, key, now).await? {
            scope
                .state
                .lock()
                .table
                .mark_held_elsewhere(key, now + HELD_ELSEWHERE_MS);
            return Ok(Vec::new());
        }
        let (claim, max_deliveries) = {
            let mut st = scope.state.lock();
            if st.locks.check(key, now) != LockCheck::Trusted {
                return Ok(Vec::new());
            }
            // A full window: only messages due again may go out (a pull from the first of them
            // adds at most `max` new ones beyond the window).
            if let (Some(window), Some(q)) = (st.settings.max_unacked, st.table.get(key)) {
                let due = q.in_flight.values().any(|m| !m.acked && m.deadline <= now);
                if q.in_flight.len() >= window && !due {
                    return Ok(Vec::new());
                }
            }
            let Ok(claim) = st
                .table
                .begin(key, now, r.invisible_ms, r.client_ip.clone())
            else {
                busy.store(true, Ordering::Relaxed);
                return Ok(Vec::new());
            };
            st.locks.touch(key);
            (claim, st.settings.max_deliveries)
        };
        let mq = scope.mq(key);
        let from = if claim.needs_offset {
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
        let pulled = match self
            .broker
            .pull(&scope.broker_group, &mq, from, max.min(128) as u32)
            .await
        {
            Ok(p) => p,
            Err(e) => {
                scope.state.lock().table.release(key, claim.id);
                return Err(internal(e));
            }
        };
        // As in `/mq/message`: nothing goes out unless the lock outlived the pull.
        if !self.still_trusted(scope, key, self.now()) {
            scope.state.lock().table.release(key, claim.id);
            return Ok(Vec::new());
        }
        let offsets: Vec<i64> = if pulled.status == PullStatus::Found {
            pulled.messages.iter().map(|m| m.queue_offset).collect()
        } else {
            Vec::new()
        };
        let outcome = scope.state.lock().table.record_pull(
            key,
            claim.id,
            &offsets,
            pulled.next_begin_offset,
            pulled.max_offset,
            self.now(),
            max_deliveries,
        );
        if !outcome.found() {
            scope.state.lock().table.release(key, claim.id);
            return Ok(Vec::new());
        }
        let mut by_offset: HashMap<i64, MessageExt> = pulled
            .messages
            .into_iter()
            .map(|m| (m.queue_offset, m))
            .collect();
        for h in &outcome.exhausted {
            let Some(m) = by_offset.remove(&h.receipt.offset) else {
                continue;
            };
            // Dead-lettered, it is done here: ack it. If the send fails, it stays in flight
            // and comes back at its deadline for another try.
            match self
                .broker
                .dead_letter(&scope.broker_group, &m, &key.broker_name)
                .await
            {
                Ok(()) => {
                    self.ack_in_scope(scope, &h.receipt).await;
                }
                Err(e) => warn!(queue = ?key, offset = h.receipt.offset, error = %e,
                    "dead-lettering failed; the message comes back at its deadline"),
            }
        }
        Ok(outcome
            .handed
            .into_iter()
            .filter_map(|h| {
                by_offset.remove(&h.receipt.offset).map(|message| Received {
                    message,
                    receipt: h.receipt,
                    delivery_count: h.count,
                    first_delivered_ms: h.first,
                    next_visible_ms: h.deadline,
                })
            })
            .collect())
    }

    /// Acks one receipt; the committed offset follows the lowest unacked message.
    pub async fn ack_receipt(
        &self,
        consumer: &str,
        topic: &str,
        client_id: Option<&str>,
        receipt: &Receipt,
    ) -> Result<ReceiptOutcome, GatewayError> {
        let scope = self.scope(consumer, topic, client_id).await?;
        Ok(self.ack_in_scope(&scope, receipt).await)
    }

    async fn ack_in_scope(&self, scope: &Scope, receipt: &Receipt) -> ReceiptOutcome {
        // Commit only while this instance still holds the queue (see `ack_in` in consume.rs);
        // a lost lock makes the receipt stale. A trusted lock costs no broker call.
        let ours = scope
            .state
            .lock()
            .table
            .get(&receipt.queue)
            .and_then(|q| q.in_flight.get(&receipt.offset))
            .is_some_and(|m| m.delivery == receipt.delivery);
        if ours {
            if let Err(e) = self
                .ensure_broker_lock(scope, &receipt.queue, self.now())
                .await
            {
                warn!(queue = ?receipt.queue, error = %e, "cannot confirm the broker lock before an ack");
            }
        }
        let outcome = scope.state.lock().table.ack(receipt, self.now());
        if let ReceiptOutcome::Commit(c) = &outcome {
            self.write_commits(scope, &receipt.queue, *c).await;
        }
        outcome
    }

    /// Writes a commit, then the ones acks made due meanwhile. A failed write undoes the acks
    /// it covered (the messages come again at their deadline).
    async fn write_commits(&self, scope: &Scope, key: &QueueKey, first: Commit) {
        let mq = scope.mq(key);
        let mut next = Some(first);
        while let Some(c) = next {
            let r = self
                .broker
                .commit_offset(&scope.broker_group, &mq, c.to)
                .await;
            if let Err(e) = &r {
                warn!(queue = ?key, to = c.to, error = %e, "commit failed");
            }
            next = scope.state.lock().table.finish_commit(key, c.to, r.is_ok());
        }
    }

    /// Moves one message's invisibility deadline; the returned receipt replaces the old one.
    pub async fn change_visibility(
        &self,
        consumer: &str,
        topic: &str,
        client_id: Option<&str>,
        receipt: &Receipt,
        invisible_ms: i64,
    ) -> Result<Result<Receipt, ReceiptOutcome>, GatewayError> {
        let scope = self.scope(consumer, topic, client_id).await?;
        let now = self.now();
        let changed = scope
            .state
            .lock()
            .table
            .change_deadline(receipt, now, now + invisible_ms);
        Ok(changed)
    }
}
