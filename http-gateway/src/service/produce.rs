//! `/mq/produce` and `/mq/produce/batch`: messages built from the request, sent through the
//! broker seam; consumers of the topic learn at once that a queue has data.

use bytes::Bytes;

use super::{Gateway, ProducerEntry};
use crate::broker::{BrokerApi, Message, QueueSelector, Sent};
use crate::engine::QueueKey;
use crate::error::GatewayError;

/// What `/mq/produce` takes.
#[derive(Debug, Default, Clone)]
pub struct ProduceRequest {
    /// The configured producer's name.
    pub producer: String,
    /// The body; must not be empty.
    pub message: Bytes,
    /// Message keys, separated by spaces (indexed by the broker for queries).
    pub keys: Option<String>,
    /// The message's tag, for consumers' tag filters.
    pub tags: Option<String>,
    /// Messages with the same order id go to the same queue (ordered per id); without one
    /// queues take turns.
    pub order_id: Option<String>,
    /// A broker delay level, 1..=18 (1 s up to 2 h).
    pub delay_level: Option<i64>,
    /// Deliver at this time (ms since the epoch); excludes `delay_level`.
    pub delivery_timestamp: Option<i64>,
}

fn build_message(topic: &str, r: &ProduceRequest) -> Result<Message, GatewayError> {
    if r.message.is_empty() {
        return Err(GatewayError::bad("message is required"));
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
            return Err(GatewayError::bad(
                "delayLevel and deliveryTimestamp exclude each other",
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

impl<B: BrokerApi> Gateway<B> {
    fn producer(&self, name: &str) -> Result<&ProducerEntry, GatewayError> {
        if name.is_empty() {
            return Err(GatewayError::bad("producer is required"));
        }
        self.producers.get(name).ok_or_else(|| {
            GatewayError::BadRequest(format!(
                "unknown producer {name:?}: not in the gateway's configuration"
            ))
        })
    }

    /// `/mq/produce`: sends one message of the producer's topic and wakes the topic's long-polling
    /// fetches.
    pub async fn produce(&self, r: ProduceRequest) -> Result<Sent, GatewayError> {
        let p = self.producer(&r.producer)?;
        let msg = build_message(&p.topic, &r)?;
        let selector = match r.order_id.as_deref().filter(|o| !o.is_empty()) {
            Some(o) => QueueSelector::Key(o.to_owned()),
            None => QueueSelector::RoundRobin,
        };
        let res = self.broker.send(&p.group, msg, selector).await;
        let status = crate::metrics::produce_status(&res.as_ref().map(|s| s.status));
        self.metrics.produced(&r.producer, status, 1);
        let res = res?;
        self.note_arrival(&res, 1);
        self.arrivals(&p.topic).notify_waiters();
        Ok(res)
    }

    /// Tells the consumers of the topic that a queue has new messages, so a fetch right after
    /// does not skip it as "found empty a moment ago".
    fn note_arrival(&self, r: &Sent, n: i64) {
        let key = QueueKey::new(false, r.queue.broker_name.clone(), r.queue.queue_id);
        for entry in self
            .consumers
            .values()
            .filter(|c| c.cfg.topic == r.queue.topic)
        {
            for scope in entry.scopes.lock().values() {
                scope
                    .state
                    .lock()
                    .table
                    .note_message(&key, r.queue_offset + n - 1);
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
            return Err(GatewayError::bad("messages is an empty array"));
        }
        let max = self.broker.max_message_size();
        let mut results: Vec<Option<Result<(), GatewayError>>> = Vec::with_capacity(bodies.len());
        let mut chunk: Vec<(usize, Message)> = Vec::new();
        let mut chunk_bytes = 0usize;
        let mut pending: Vec<Vec<(usize, Message)>> = Vec::new();
        for (i, b) in bodies.into_iter().enumerate() {
            results.push(None);
            if b.is_empty() {
                results[i] = Some(Err(GatewayError::bad("empty message")));
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
            let r = self.broker.send_batch(&p.group, msgs).await;
            let status = crate::metrics::produce_status(&r.as_ref().map(|s| s.status));
            self.metrics.produced(producer, status, n as u64);
            if let Ok(res) = &r {
                self.note_arrival(res, n);
            }
            for i in idx {
                results[i] = Some(match &r {
                    Ok(_) => Ok(()),
                    Err(e) => Err(GatewayError::from(e.clone())),
                });
            }
        }
        self.arrivals(&p.topic).notify_waiters();
        Ok(results.into_iter().map(|r| r.unwrap_or(Ok(()))).collect())
    }
}
