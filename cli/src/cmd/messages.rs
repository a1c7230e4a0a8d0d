//! send, pull, consume, message get, message query.

use std::io::BufRead;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use rmq_client::PullStatus;
use rmq_client::{
    ClientError, Message, Producer, ProducerConfig, PullConsumer, PullConsumerConfig, PullRequest,
    QueueSelector, SendResult, StartFrom,
};
use rmq_remoting::body::MessageQueue;
use rmq_remoting::message::MessageExt;
use serde_json::{json, Value};

use super::Ctx;
use crate::args::{ConsumeArgs, From, PullArgs, QueryArgs, SendArgs};
use crate::exit::CliError;

/// A message as `--json` prints it.
pub fn message_json(m: &MessageExt) -> Value {
    let props: serde_json::Map<String, Value> = m
        .properties
        .iter()
        .map(|(k, v)| (k.to_owned(), Value::String(v.to_owned())))
        .collect();
    json!({
        "topic": m.topic,
        "queueId": m.queue_id,
        "queueOffset": m.queue_offset,
        "msgId": m.msg_id(),
        "offsetMsgId": m.offset_msg_id(),
        "tags": m.tags(),
        "keys": m.keys().collect::<Vec<_>>(),
        "bornTimestamp": m.born_timestamp,
        "storeTimestamp": m.store_timestamp,
        "storeHost": m.store_host.to_string(),
        "reconsumeTimes": m.reconsume_times,
        "properties": props,
        "body": String::from_utf8_lossy(&m.body),
    })
}

/// One line per message: queue, offset, msgId, tags, keys, body (escaped so it stays one line).
pub fn message_text(m: &MessageExt) -> String {
    let keys: Vec<&str> = m.keys().collect();
    format!(
        "{}\t{}\t{}\t{}\t{}\t{}",
        m.queue_id,
        m.queue_offset,
        m.msg_id(),
        m.tags().unwrap_or("-"),
        if keys.is_empty() {
            "-".to_owned()
        } else {
            keys.join(",")
        },
        String::from_utf8_lossy(&m.body).escape_debug()
    )
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub async fn send(ctx: &Ctx, a: &SendArgs) -> Result<()> {
    let producer = Producer::new(ctx.client.clone(), ProducerConfig::new(&a.group));
    let build = |body: &str| {
        let mut m = Message::new(&a.topic, body.as_bytes().to_vec());
        if let Some(t) = &a.tag {
            m = m.with_tags(t);
        }
        if !a.keys.is_empty() {
            m = m.with_keys(a.keys.iter().cloned());
        }
        for (k, v) in &a.properties {
            m = m.with_property(k, v);
        }
        if let Some(l) = a.delay_level {
            m = m.with_delay_level(l);
        }
        m
    };
    let selector = || match &a.order_id {
        Some(o) => QueueSelector::Key(o.clone()),
        None => QueueSelector::RoundRobin,
    };
    let print = |r: &SendResult| {
        ctx.line(
            &json!({
                "status": r.status.as_str(),
                "msgId": r.msg_id,
                "offsetMsgId": r.offset_msg_id,
                "brokerName": r.queue.broker_name,
                "queueId": r.queue.queue_id,
                "queueOffset": r.queue_offset,
            }),
            || {
                format!(
                    "{} msgId={} offsetMsgId={} queue={}:{} offset={}",
                    r.status.as_str(),
                    r.msg_id,
                    r.offset_msg_id,
                    r.queue.broker_name,
                    r.queue.queue_id,
                    r.queue_offset
                )
            },
        )
    };
    match &a.body {
        Some(body) => {
            let r = producer
                .send_with(build(body), selector())
                .await
                .context("send")?;
            print(&r)?;
        }
        None => {
            let stdin = std::io::stdin();
            let mut sent = 0usize;
            for line in stdin.lock().lines() {
                let line = line.context("reading standard input")?;
                if line.is_empty() {
                    continue;
                }
                let r = producer
                    .send_with(build(&line), selector())
                    .await
                    .with_context(|| format!("send of line {}", sent + 1))?;
                print(&r)?;
                sent += 1;
            }
            if sent == 0 {
                return Err(
                    CliError::BadArgument("no message body on standard input".into()).into(),
                );
            }
        }
    }
    Ok(())
}

/// Where reading `q` starts for `--from`.
pub async fn start_offset(ctx: &Ctx, q: &MessageQueue, from: From) -> Result<i64> {
    Ok(match from {
        From::Earliest => ctx.client.min_offset(q).await?,
        From::Latest => ctx.client.max_offset(q).await?,
        From::Timestamp(ts) => ctx.client.search_offset(q, ts).await?,
    })
}

pub async fn pull(ctx: &Ctx, a: &PullArgs) -> Result<()> {
    let route = ctx.client.route(&a.topic).await.context("route")?;
    let limit = a.count.unwrap_or(usize::MAX);
    let mut got = 0usize;
    'queues: for q in &route.subscribe_queues {
        let mut offset = start_offset(ctx, q, a.from).await.context("start offset")?;
        loop {
            let mut req = PullRequest::new(&a.group, offset);
            req.expression = a.tag.clone();
            req.max_msgs = (limit - got).min(32) as i32;
            let r = ctx.client.pull(q, &req).await.context("pull")?;
            for m in &r.messages {
                ctx.line(&message_json(m), || message_text(m))?;
                got += 1;
                if got >= limit {
                    break 'queues;
                }
            }
            match r.status {
                PullStatus::NoNewMsg => break,
                _ if r.next_begin_offset <= offset => break,
                _ => offset = r.next_begin_offset,
            }
        }
    }
    if let Some(n) = a.count {
        if got < n {
            eprintln!("rmq: read {got} of {n} messages: every queue is at its end");
        }
    }
    Ok(())
}

pub async fn consume(ctx: &Ctx, a: &ConsumeArgs) -> Result<()> {
    let mut cfg = PullConsumerConfig::new(&a.group, &a.topic);
    cfg.expression = a.tag.clone();
    cfg.start_from = match a.from {
        From::Earliest => StartFrom::Earliest,
        From::Latest => StartFrom::Latest,
        From::Timestamp(t) => StartFrom::Timestamp(t),
    };
    cfg.long_poll = Duration::from_secs(1);
    let consumer = PullConsumer::start(ctx.client.clone(), cfg)
        .await
        .context("starting the consumer")?;
    let limit = a.count.unwrap_or(usize::MAX);
    let mut got = 0usize;
    let mut last = Instant::now();
    let result: Result<()> = async {
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);
        while got < limit {
            if a.idle.is_some_and(|idle| last.elapsed() >= idle) {
                break;
            }
            let msgs = tokio::select! {
                r = consumer.poll((limit - got).min(256)) => r.context("pull")?,
                _ = &mut ctrl_c => break,
            };
            if !msgs.is_empty() {
                last = Instant::now();
            }
            for m in &msgs {
                ctx.line(&message_json(m), || message_text(m))?;
                got += 1;
            }
        }
        Ok(())
    }
    .await;
    // Commit what was printed even when stopped by an error or Ctrl-C.
    let commit = consumer.shutdown().await.context("committing offsets");
    result?;
    commit?;
    if a.count.is_some_and(|n| got < n) {
        eprintln!("rmq: consumed {got} of {limit} messages before going idle");
    }
    Ok(())
}

pub async fn message_get(ctx: &Ctx, id: &str) -> Result<()> {
    let m = ctx.client.view_message(id).await.map_err(|e| match e {
        ClientError::Broker { .. } | ClientError::InvalidArgument(_) => {
            anyhow::Error::from(CliError::NotFound(format!("message {id}: {e}")))
        }
        ClientError::Message(_) => anyhow::Error::from(CliError::BadArgument(format!(
            "{id:?} is not an offset message id: {e}"
        ))),
        e => anyhow::Error::from(e).context("view message"),
    })?;
    ctx.emit(&message_json(&m), || {
        let mut t = format!(
            "topic: {}\nqueue: {} offset: {}\nmsgId: {}\noffsetMsgId: {}\ntags: {}\nkeys: {}\nstored: {} at {}\nborn: {}\nreconsumeTimes: {}\n",
            m.topic,
            m.queue_id,
            m.queue_offset,
            m.msg_id(),
            m.offset_msg_id(),
            m.tags().unwrap_or("-"),
            m.keys().collect::<Vec<_>>().join(","),
            m.store_timestamp,
            m.store_host,
            m.born_timestamp,
            m.reconsume_times
        );
        for (k, v) in m.properties.iter() {
            t.push_str(&format!("property {k}={v}\n"));
        }
        t.push_str(&format!("body: {}\n", String::from_utf8_lossy(&m.body)));
        t
    })
}

pub async fn message_query(ctx: &Ctx, a: &QueryArgs) -> Result<()> {
    let end = a.end.unwrap_or_else(now_ms);
    let key = if a.unique {
        rmq_client::MessageKey::UniqId(&a.key)
    } else {
        rmq_client::MessageKey::Key(&a.key)
    };
    let msgs = ctx
        .client
        .query_message(&a.topic, key, a.max, a.begin, end)
        .await
        .context("query")?;
    let list: Vec<Value> = msgs.iter().map(message_json).collect();
    ctx.emit(&json!({ "messages": list }), || {
        msgs.iter().map(message_text).collect::<Vec<_>>().join("\n")
    })
}
