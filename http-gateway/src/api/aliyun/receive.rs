//! ConsumeMessage and AckMessage on the gateway engine's per-message receipts.
//!
//! Each Aliyun group (`{ns}%{group}`) reading a topic becomes a run-time consumer of the driver
//! ([`Gateway::ensure_consumer`], bounded per instance), named `aliyun:{group}@{topic}`: the
//! broker group is the Aliyun group, so committed offsets, broker locks and `%DLQ%{group}` are
//! RocketMQ's own. Concurrent consumption uses shared queues (each message invisible until its
//! own deadline), `trans=order` exclusive ones; a group reads one topic in one of the two ways
//! per instance (the first consume decides; the other is refused with a clear message).
//!
//! A receipt handle carries the queue, offset, delivery id and deadline ([`super::handle`]).
//! The delivery itself is recorded in the memory of the instance that handed the message out,
//! which also holds the queue's broker lock: an ack through another instance answers
//! `ReceiptHandleError`, and the message comes again after its deadline (at-least-once).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::consume::{to_consumed, Delivery};
use super::error::{invalid_argument, AliyunError, Code};
use super::handle::{HandleError, ReceiptHandle};
use super::params::{AckParams, ConsumeMode, ConsumeParams};
use super::xml::{AckFailure, ConsumedMessage};
use super::AliyunConfig;
use crate::broker::{BrokerApi, BrokerError};
use crate::config::{ConsumerConfig, Mode, QueueModeConfig, StartFrom};
use crate::engine::{QueueKey, Receipt, ReceiptOutcome};
use crate::error::GatewayError;
use crate::service::{Gateway, ReceiveRequest};

fn consumer_name(group: &str, topic: &str) -> String {
    format!("aliyun:{group}@{topic}")
}

fn gateway_error(e: GatewayError) -> AliyunError {
    match e {
        GatewayError::BadRequest(m) => invalid_argument(m),
        GatewayError::Forbidden(m) => AliyunError::new(Code::AccessDenied, m),
        GatewayError::Unknown(m) | GatewayError::Internal(m) => {
            AliyunError::new(Code::InternalError, m)
        }
    }
}

/// The driver's consumer for `group` reading `topic` (broker names), added on first use.
async fn consumer<B: BrokerApi>(
    gw: &Gateway<B>,
    config: &AliyunConfig,
    group: &str,
    topic: &str,
    mode: Option<ConsumeMode>,
) -> Result<String, AliyunError> {
    let name = consumer_name(group, topic);
    if gw.has_consumer(&name) {
        if let Some(mode) = mode {
            let want = match mode {
                ConsumeMode::Ordered => QueueModeConfig::Exclusive,
                ConsumeMode::Concurrent => QueueModeConfig::Shared,
            };
            if gw.consumer_queue_mode(&name) != Some(want) {
                return Err(invalid_argument(format!(
                    "Group {group} already consumes topic {topic} {} on this gateway; a group \
                     reads a topic either in order (trans=order) or concurrently.",
                    if want == QueueModeConfig::Shared {
                        "in order"
                    } else {
                        "concurrently"
                    }
                )));
            }
        }
        return Ok(name);
    }
    let Some(mode) = mode else {
        // An ack for a group this instance never served: nothing of it is in flight here.
        return Ok(name);
    };
    match gw.broker().route(topic).await {
        Ok(_) => {}
        Err(BrokerError::TopicNotExist(_)) => {
            return Err(AliyunError::new(
                Code::TopicNotExist,
                format!("The topic {topic} does not exist."),
            ))
        }
        Err(e) => return Err(AliyunError::new(Code::ServiceUnavailable, e.to_string())),
    }
    gw.ensure_consumer(ConsumerConfig {
        name: name.clone(),
        topic: topic.to_owned(),
        mode: Mode::Clustering,
        max_pull_size: super::params::MAX_MESSAGES,
        consume_timeout_ms: config.invisible_time_ms,
        start_from: StartFrom::Earliest,
        group: Some(group.to_owned()),
        queue_mode: match mode {
            ConsumeMode::Ordered => QueueModeConfig::Exclusive,
            ConsumeMode::Concurrent => QueueModeConfig::Shared,
        },
        max_deliveries: Some(config.max_reconsume_times),
        max_unacked_per_queue: Some(config.max_unacked_per_queue),
    })
    .map_err(gateway_error)?;
    Ok(name)
}

/// Up to `numOfMessages` messages of `topic` (as sent) for the request's group, waiting up to
/// `waitseconds` for a first one. Messages whose tag the filter refuses are acked unseen, as
/// RocketMQ's server-side filtering skips them. Empty means `MessageNotExist`.
pub async fn consume<B: BrokerApi>(
    gw: &Arc<Gateway<B>>,
    config: &AliyunConfig,
    topic: &str,
    params: &ConsumeParams,
) -> Result<Vec<ConsumedMessage>, AliyunError> {
    let topic = params.ns.topic(topic)?;
    let group = params.ns.group(&params.consumer)?;
    let name = consumer(gw, config, &group, &topic, Some(params.mode)).await?;
    let deadline = Instant::now() + params.wait;
    loop {
        let got = gw
            .receive(ReceiveRequest {
                consumer: name.clone(),
                topic: topic.clone(),
                client_id: None,
                client_ip: None,
                max: params.num_of_messages as usize,
                invisible_ms: config.invisible_time_ms as i64,
                wait: deadline.saturating_duration_since(Instant::now()),
            })
            .await
            .map_err(gateway_error)?;
        let mut out = Vec::with_capacity(got.len());
        for r in got {
            if !params.filter.matches(r.message.tags()) {
                gw.ack_receipt(&name, &topic, None, &r.receipt)
                    .await
                    .map_err(gateway_error)?;
                continue;
            }
            let handle = ReceiptHandle {
                retry: r.receipt.queue.retry,
                broker_name: r.receipt.queue.broker_name.clone(),
                queue_id: r.receipt.queue.queue_id,
                offset: r.receipt.offset,
                delivery_id: r.receipt.delivery as u64,
                deadline_ms: r.next_visible_ms,
            };
            out.push(to_consumed(
                &r.message,
                Delivery {
                    receipt_handle: handle.encode(&topic, &group),
                    next_consume_time: r.next_visible_ms,
                    first_consume_time: r.first_delivered_ms,
                    consumed_times: r.delivery_count,
                },
            ));
        }
        if !out.is_empty() || Instant::now() >= deadline {
            return Ok(out);
        }
        // Everything handed out was filtered away: poll on within the wait, without spinning.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Acks each handle; the failures, with the code the SDKs expect for each.
pub async fn ack<B: BrokerApi>(
    gw: &Arc<Gateway<B>>,
    config: &AliyunConfig,
    topic: &str,
    params: &AckParams,
    handles: &[String],
) -> Result<Vec<AckFailure>, AliyunError> {
    let topic = params.ns.topic(topic)?;
    let group = params.ns.group(&params.consumer)?;
    let name = consumer(gw, config, &group, &topic, None).await?;
    let known = gw.has_consumer(&name);
    let now = gw.now_ms();
    let mut failures = Vec::new();
    for text in handles {
        let fail = |code: Code, message: String| AckFailure {
            code: code.as_str().to_owned(),
            message,
            handle: text.clone(),
        };
        let h = match ReceiptHandle::decode(text, &topic, &group) {
            Ok(h) => h,
            Err(e @ (HandleError::Malformed(_) | HandleError::Foreign)) => {
                failures.push(fail(Code::ReceiptHandleError, format!("{e}.")));
                continue;
            }
        };
        let expired = || {
            fail(
                Code::MessageNotExist,
                "The receipt handle expired: the message's NextConsumeTime passed, it is \
                 delivered again under a new handle."
                    .into(),
            )
        };
        if !known {
            failures.push(if h.deadline_ms <= now {
                expired()
            } else {
                fail(
                    Code::ReceiptHandleError,
                    "The receipt handle is unknown to this gateway instance (acks go to the \
                     instance that delivered the message)."
                        .into(),
                )
            });
            continue;
        }
        let receipt = Receipt {
            queue: QueueKey::new(h.retry, h.broker_name.clone(), h.queue_id),
            offset: h.offset,
            delivery: h.delivery_id as i64,
        };
        match gw
            .ack_receipt(&name, &topic, None, &receipt)
            .await
            .map_err(gateway_error)?
        {
            ReceiptOutcome::Acked | ReceiptOutcome::Commit(_) => {}
            ReceiptOutcome::Expired => failures.push(expired()),
            // A handle of an earlier delivery names a deadline that passed (redelivery comes
            // only after it); one with a future deadline was never issued in this form.
            ReceiptOutcome::Stale { .. } | ReceiptOutcome::Unknown if h.deadline_ms <= now => {
                failures.push(expired())
            }
            ReceiptOutcome::Stale { .. } | ReceiptOutcome::Unknown => failures.push(fail(
                Code::ReceiptHandleError,
                "The receipt handle is unknown: the message was acked already, or this gateway \
                 instance did not deliver it."
                    .into(),
            )),
        }
    }
    Ok(failures)
}
