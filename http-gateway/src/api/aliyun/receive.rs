//! ConsumeMessage and AckMessage on the gateway engine's per-message receipts.
//!
//! Each Aliyun group (`{ns}%{group}`) reading a topic becomes a run-time consumer of the driver
//! ([`Gateway::ensure_consumer`], bounded per instance), named `aliyun:{group}@{topic}`: the
//! broker group is the Aliyun group, so committed offsets, broker locks and `%DLQ%{group}` are
//! RocketMQ's own. Concurrent consumption uses shared queues (each message invisible until its
//! own deadline), `trans=order` exclusive ones; a group reads one topic in one of the two ways
//! per instance (the first consume decides; the other is refused with a clear message).
//!
//! A receipt handle carries the queue, offset, delivery id, deadline and the delivering instance
//! ([`super::handle`]). The delivery itself is recorded in the memory of the instance that
//! handed the message out, which also holds the queue's broker lock: [`ack`] acks the handles
//! delivered here and says which instance delivered the others, for [`super::forward`].
//!
//! A new group starts at the queues' first stored messages, or at their ends with
//! `[aliyun] start_from = "latest"` (what Aliyun does for a group that was created in its
//! console before anything was published). The gateway has no such creation step: a group comes
//! into being with its first consume, so "latest" would silently skip what was published before
//! it, the usual order in which programs start; hence the default.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::consume::{to_consumed, Delivery};
use super::error::{invalid_argument, AliyunError, Code};
use super::forward::{Node, Route};
use super::handle::{HandleError, Owner, ReceiptHandle};
use super::params::{AckParams, ConsumeMode, ConsumeParams};
use super::xml::{AckFailure, ConsumedMessage};
use super::AliyunConfig;
use crate::broker::{BrokerApi, BrokerError};
use crate::config::{ConsumerConfig, Mode, QueueModeConfig};
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
        start_from: config.start_from,
        group: Some(group.to_owned()),
        queue_mode: match mode {
            ConsumeMode::Ordered => QueueModeConfig::Exclusive,
            ConsumeMode::Concurrent => QueueModeConfig::Shared,
        },
        max_deliveries: Some(config.max_reconsume_times),
        max_unacked_per_queue: Some(config.max_unacked_per_queue),
        token: None,
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
    node: &Node,
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
                owner: Some(node.owner().clone()),
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

/// What [`ack`] did with a request's handles (by their index in the request).
#[derive(Debug, Default)]
pub struct AckPlan {
    /// The handles that failed here.
    pub failures: Vec<(usize, AckFailure)>,
    /// The handles other gateway runs delivered, by run: for [`super::forward`].
    pub remote: Vec<(Owner, Vec<usize>)>,
    /// The topic, its broker name.
    pub topic: String,
    /// The consumer group, its broker name.
    pub group: String,
}

/// Acks each handle delivered by this instance; says which the others are. `forwarded`: the
/// request came from another instance, so handles not delivered here fail rather than travel
/// on.
pub async fn ack<B: BrokerApi>(
    gw: &Arc<Gateway<B>>,
    config: &AliyunConfig,
    node: &Node,
    topic: &str,
    params: &AckParams,
    handles: &[String],
    forwarded: bool,
) -> Result<AckPlan, AliyunError> {
    let topic = params.ns.topic(topic)?;
    let group = params.ns.group(&params.consumer)?;
    let name = consumer(gw, config, &group, &topic, None).await?;
    let known = gw.has_consumer(&name);
    let now = gw.now_ms();
    let mut plan = AckPlan {
        topic: topic.clone(),
        group: group.clone(),
        ..AckPlan::default()
    };
    for (i, text) in handles.iter().enumerate() {
        let fail = |code: Code, message: String| {
            (
                i,
                AckFailure {
                    code: code.as_str().to_owned(),
                    message,
                    handle: text.clone(),
                },
            )
        };
        let h = match ReceiptHandle::decode(text, &topic, &group) {
            Ok(h) => h,
            Err(e @ (HandleError::Malformed(_) | HandleError::Foreign)) => {
                plan.failures
                    .push(fail(Code::ReceiptHandleError, format!("{e}.")));
                continue;
            }
        };
        let expired = |why: &str| {
            fail(
                Code::MessageNotExist,
                format!(
                    "The receipt handle expired: {why}; the message is delivered again under a \
                     new handle."
                ),
            )
        };
        if h.deadline_ms <= now {
            plan.failures
                .push(expired("the message's NextConsumeTime passed"));
            continue;
        }
        match node.route(h.owner.as_ref()) {
            Route::Here => {}
            Route::Gone => {
                plan.failures.push(expired(
                    "the gateway instance that delivered the message restarted since",
                ));
                continue;
            }
            Route::There(_) | Route::Unreachable if forwarded => {
                plan.failures.push(fail(
                    Code::ReceiptHandleError,
                    "The receipt handle was not delivered by this gateway instance.".into(),
                ));
                continue;
            }
            Route::Unreachable => {
                plan.failures.push(fail(
                    Code::ReceiptHandleError,
                    "The receipt handle is unknown to this gateway instance, and the instance \
                     that delivered it has no advertised address to pass the ack on to."
                        .into(),
                ));
                continue;
            }
            Route::There(owner) => {
                match plan.remote.iter_mut().find(|(o, _)| *o == owner) {
                    Some((_, v)) => v.push(i),
                    None => plan.remote.push((owner, vec![i])),
                }
                continue;
            }
        }
        if !known {
            plan.failures.push(fail(
                Code::ReceiptHandleError,
                "The receipt handle is unknown: this gateway instance serves no such group.".into(),
            ));
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
            ReceiptOutcome::Expired => plan
                .failures
                .push(expired("the message's NextConsumeTime passed")),
            // A handle of an earlier delivery names a deadline that passed (redelivery comes
            // only after it); one with a future deadline was never issued in this form.
            ReceiptOutcome::Stale { .. } | ReceiptOutcome::Unknown => plan.failures.push(fail(
                Code::ReceiptHandleError,
                "The receipt handle is unknown: the message was acked already, or this gateway \
                 instance no longer holds its queue."
                    .into(),
            )),
        }
    }
    Ok(plan)
}
