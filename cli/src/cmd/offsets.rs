//! offsets GROUP [TOPIC] and offsets reset GROUP TOPIC --to ...

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result};
use rmq_client::consumer::allocate_averagely;
use rmq_client::ClientError;
use rmq_remoting::body::MessageQueue;
use serde_json::{json, Value};

use super::admin::masters;
use super::messages::start_offset;
use super::{table, Ctx};
use crate::args::{From, ResetArgs};
use crate::exit::CliError;

/// One queue's progress, as mqadmin consumerProgress prints it.
struct Row {
    mq: MessageQueue,
    broker_offset: i64,
    consumer_offset: Option<i64>,
    client: Option<String>,
}

impl Row {
    fn backlog(&self) -> Option<i64> {
        self.consumer_offset
            .map(|c| (self.broker_offset - c).max(0))
    }
    fn json(&self) -> Value {
        json!({
            "topic": self.mq.topic,
            "brokerName": self.mq.broker_name,
            "queueId": self.mq.queue_id,
            "brokerOffset": self.broker_offset,
            "consumerOffset": self.consumer_offset,
            "backlog": self.backlog(),
            "client": self.client,
        })
    }
}

/// The topics `group` subscribes to (live consumers) or has committed offsets of.
async fn topics_of_group(ctx: &Ctx, group: &str) -> Result<Vec<String>> {
    let mut topics = BTreeSet::new();
    for m in masters(ctx, None).await? {
        if let Some(c) = ctx.client.consumer_connections(&m.addr, group).await? {
            topics.extend(c.subscription_table.into_keys());
        }
        topics.extend(
            ctx.client
                .all_consumer_offsets(&m.addr)
                .await?
                .topics_of(group),
        );
    }
    Ok(topics.into_iter().collect())
}

pub async fn show(ctx: &Ctx, group: &str, topic: Option<&str>) -> Result<()> {
    let topics = match topic {
        Some(t) => vec![t.to_owned()],
        None => topics_of_group(ctx, group)
            .await
            .context("topics of the group")?,
    };
    if topics.is_empty() {
        return Err(CliError::NotFound(format!(
            "group {group} has no live consumers and no committed offsets"
        ))
        .into());
    }
    let mut rows = Vec::new();
    for t in &topics {
        let route = match ctx.client.refresh_route(t).await.context("route")? {
            Some(r) => r,
            None if topic.is_some() => return Err(CliError::UnknownTopic(t.clone()).into()),
            // A topic deleted since the group committed to it.
            None => continue,
        };
        // Which live consumer each queue is allocated to (the average strategy the clients use).
        let mut owner: BTreeMap<MessageQueue, String> = BTreeMap::new();
        if let Some(addr) = route.master_addrs().first() {
            let ids = ctx
                .client
                .consumer_ids(group, addr)
                .await
                .unwrap_or_default();
            for id in &ids {
                for q in allocate_averagely(&route.subscribe_queues, &ids, id) {
                    owner.insert(q.clone(), id.clone());
                }
            }
        }
        for q in &route.subscribe_queues {
            let broker_offset = ctx.client.max_offset(q).await.context("max offset")?;
            let consumer_offset = ctx
                .client
                .query_consumer_offset(group, q)
                .await
                .context("committed offset")?;
            rows.push(Row {
                mq: q.clone(),
                broker_offset,
                consumer_offset,
                client: owner.get(q).cloned(),
            });
        }
    }
    let total: i64 = rows.iter().filter_map(Row::backlog).sum();
    let value = json!({
        "group": group,
        "queues": rows.iter().map(Row::json).collect::<Vec<_>>(),
        "totalBacklog": total,
    });
    ctx.emit(&value, || {
        let cells: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                vec![
                    r.mq.topic.clone(),
                    r.mq.broker_name.clone(),
                    r.mq.queue_id.to_string(),
                    r.broker_offset.to_string(),
                    r.consumer_offset.map_or("-".into(), |o| o.to_string()),
                    r.backlog().map_or("-".into(), |o| o.to_string()),
                    r.client.clone().unwrap_or_else(|| "-".into()),
                ]
            })
            .collect();
        let mut t = table(
            &[
                "TOPIC",
                "BROKER",
                "QID",
                "BROKER_OFFSET",
                "CONSUMER_OFFSET",
                "BACKLOG",
                "CLIENT",
            ],
            &cells,
        );
        t.push_str(&format!("total backlog: {total}\n"));
        t
    })
}

pub async fn reset(ctx: &Ctx, a: &ResetArgs) -> Result<()> {
    let route = ctx
        .client
        .refresh_route(&a.topic)
        .await
        .context("route")?
        .ok_or_else(|| CliError::UnknownTopic(a.topic.clone()))?;
    let timestamp = match a.to {
        From::Earliest => 0,
        From::Latest => -1,
        From::Timestamp(t) => t,
    };
    let mut by_broker = false;
    for addr in route.master_addrs() {
        // What mqadmin resetOffsetByTime does: ask the broker first (5.x brokers store the new
        // offsets themselves, 4.9 brokers hand them to the online consumers)...
        by_broker |= ctx
            .client
            .reset_offset_by_broker(&addr, &a.group, &a.topic, timestamp)
            .await
            .with_context(|| format!("reset through broker {addr}"))?;
    }
    let mut rows = Vec::new();
    for q in &route.subscribe_queues {
        let target = start_offset(ctx, q, a.to).await.context("target offset")?;
        if !by_broker {
            // ...and commit directly when no consumer is online to take them.
            ctx.client
                .update_consumer_offset(&a.group, q, target)
                .await
                .context("commit offset")?;
        }
        let now = ctx.client.query_consumer_offset(&a.group, q).await?;
        if !by_broker && now != Some(target) {
            return Err(anyhow::Error::from(ClientError::NotSupported(format!(
                "the broker kept offset {now:?} of queue {} instead of {target}",
                q.queue_id
            ))));
        }
        rows.push(json!({
            "topic": q.topic, "brokerName": q.broker_name, "queueId": q.queue_id,
            "target": target, "consumerOffset": now,
        }));
    }
    let value =
        json!({ "group": a.group, "topic": a.topic, "queues": rows, "byBroker": by_broker });
    ctx.emit(&value, || {
        let cells: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                vec![
                    r["brokerName"].as_str().unwrap_or("-").to_owned(),
                    r["queueId"].to_string(),
                    r["consumerOffset"].to_string(),
                ]
            })
            .collect();
        let mut t = format!("reset {} of {}:\n", a.group, a.topic);
        t.push_str(&table(&["BROKER", "QID", "CONSUMER_OFFSET"], &cells));
        t
    })
}
