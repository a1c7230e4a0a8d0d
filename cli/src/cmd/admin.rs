//! cluster, route, topic create|list|delete, group list|create.

use anyhow::{Context, Result};
use rmq_client::admin::TopicConfig;
use rmq_remoting::body::SubscriptionGroupConfig;
use serde_json::{json, Value};

use super::{table, Ctx};
use crate::args::{GroupCreateArgs, TopicCreateArgs};
use crate::exit::CliError;

/// A master broker of the cluster.
#[derive(Debug, Clone)]
pub struct Master {
    pub cluster: String,
    pub broker_name: String,
    pub addr: String,
}

/// Every master the name server knows, optionally of one cluster only.
pub async fn masters(ctx: &Ctx, cluster: Option<&str>) -> Result<Vec<Master>> {
    let info = ctx.client.cluster_info().await.context("cluster info")?;
    let mut out = Vec::new();
    for (name, b) in &info.broker_addr_table {
        if cluster.is_some_and(|c| c != b.cluster) {
            continue;
        }
        if let Some(addr) = b.master_addr() {
            out.push(Master {
                cluster: b.cluster.clone(),
                broker_name: name.clone(),
                addr: addr.to_owned(),
            });
        }
    }
    if out.is_empty() {
        match cluster {
            Some(c) => {
                return Err(CliError::NotFound(format!("no master broker in cluster {c}")).into())
            }
            None => anyhow::bail!("the name server knows no master broker"),
        }
    }
    Ok(out)
}

/// Java's `MQVersion.Version` name of a version ordinal (V4_0_0_SNAPSHOT is 212; every
/// x.y.z from there has a SNAPSHOT and a release entry, 10 patches a minor, 10 minors a major).
pub fn version_name(ordinal: i32) -> String {
    if ordinal < 212 {
        return format!("ordinal {ordinal}");
    }
    let n = ordinal - 212;
    let (major, rem) = (4 + n / 200, n % 200);
    let (idx, snapshot) = (rem / 2, rem % 2 == 0);
    format!(
        "V{major}_{}_{}{}",
        idx / 10,
        idx % 10,
        if snapshot { "_SNAPSHOT" } else { "" }
    )
}

pub async fn cluster(ctx: &Ctx) -> Result<()> {
    let info = ctx.client.cluster_info().await.context("cluster info")?;
    let mut brokers = Vec::new();
    for (name, b) in &info.broker_addr_table {
        for (id, addr) in &b.broker_addrs {
            // Any request's answer carries the broker's version; a heartbeat is the cheapest.
            let version = ctx.client.heartbeat(addr).await.ok();
            brokers.push(json!({
                "cluster": b.cluster,
                "brokerName": name,
                "brokerId": id,
                "addr": addr,
                "version": version,
                "versionName": version.map(version_name),
            }));
        }
    }
    let value = json!({ "clusters": info.cluster_addr_table, "brokers": brokers });
    ctx.emit(&value, || {
        let rows: Vec<Vec<String>> = brokers
            .iter()
            .map(|b| {
                vec![
                    s(&b["cluster"]),
                    s(&b["brokerName"]),
                    s(&b["brokerId"]),
                    s(&b["addr"]),
                    b["versionName"]
                        .as_str()
                        .unwrap_or("unreachable")
                        .to_owned(),
                ]
            })
            .collect();
        table(&["CLUSTER", "BROKER", "ID", "ADDRESS", "VERSION"], &rows)
    })
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        v => v.to_string(),
    }
}

pub async fn route(ctx: &Ctx, topic: &str) -> Result<()> {
    let route = ctx
        .client
        .refresh_route(topic)
        .await
        .context("route")?
        .ok_or_else(|| CliError::UnknownTopic(topic.to_owned()))?;
    let value = serde_json::to_value(&route.data)?;
    ctx.emit(&value, || {
        let mut rows = Vec::new();
        for qd in &route.data.queue_datas {
            let addr = route.master_addr(&qd.broker_name).unwrap_or("-").to_owned();
            rows.push(vec![
                qd.broker_name.clone(),
                addr,
                qd.read_queue_nums.to_string(),
                qd.write_queue_nums.to_string(),
                perm_text(qd.perm),
            ]);
        }
        table(&["BROKER", "MASTER", "READ", "WRITE", "PERM"], &rows)
    })
}

fn perm_text(perm: i32) -> String {
    let r = if perm & 4 != 0 { "r" } else { "-" };
    let w = if perm & 2 != 0 { "w" } else { "-" };
    format!("{r}{w} ({perm})")
}

pub async fn topic_create(ctx: &Ctx, a: &TopicCreateArgs) -> Result<()> {
    let targets: Vec<(String, String)> = match &a.broker {
        Some(b) => vec![(b.clone(), b.clone())],
        None => masters(ctx, a.cluster.as_deref())
            .await?
            .into_iter()
            .map(|m| (m.broker_name, m.addr))
            .collect(),
    };
    let config = TopicConfig {
        topic: a.topic.clone(),
        read_queue_nums: a.read_queues,
        write_queue_nums: a.write_queues,
        perm: a.perm,
        order: a.order,
    };
    let mut done = Vec::new();
    for (name, addr) in &targets {
        ctx.client
            .create_topic(addr, &config)
            .await
            .with_context(|| format!("creating {} on {name} ({addr})", a.topic))?;
        done.push(json!({ "broker": name, "addr": addr }));
    }
    let value = json!({
        "topic": a.topic, "readQueueNums": a.read_queues, "writeQueueNums": a.write_queues,
        "perm": a.perm, "order": a.order, "brokers": done,
    });
    ctx.emit(&value, || {
        format!(
            "created {} ({} read / {} write queues, perm {}) on {}",
            a.topic,
            a.read_queues,
            a.write_queues,
            perm_text(a.perm),
            targets
                .iter()
                .map(|t| t.0.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

pub async fn topic_list(ctx: &Ctx) -> Result<()> {
    let topics = ctx.client.topic_list().await.context("topic list")?;
    ctx.emit(&json!({ "topics": topics }), || topics.join("\n"))
}

pub async fn topic_delete(ctx: &Ctx, topic: &str) -> Result<()> {
    let route = ctx
        .client
        .refresh_route(topic)
        .await
        .context("route")?
        .ok_or_else(|| CliError::UnknownTopic(topic.to_owned()))?;
    let mut brokers = Vec::new();
    for addr in route.master_addrs() {
        ctx.client
            .delete_topic_in_broker(&addr, topic)
            .await
            .with_context(|| format!("deleting {topic} on {addr}"))?;
        brokers.push(addr);
    }
    ctx.client
        .delete_topic_in_namesrv(topic)
        .await
        .with_context(|| format!("deleting {topic} on the name servers"))?;
    ctx.emit(
        &json!({ "topic": topic, "deleted": true, "brokers": brokers }),
        || {
            format!(
                "deleted {topic} from {} and the name servers",
                brokers.join(", ")
            )
        },
    )
}

pub async fn group_list(ctx: &Ctx) -> Result<()> {
    let mut groups: std::collections::BTreeMap<String, (SubscriptionGroupConfig, Vec<String>)> =
        Default::default();
    for m in masters(ctx, None).await? {
        let w = ctx
            .client
            .subscription_groups(&m.addr)
            .await
            .with_context(|| format!("groups of {}", m.broker_name))?;
        for (name, cfg) in w.subscription_group_table {
            groups
                .entry(name)
                .or_insert_with(|| (cfg, Vec::new()))
                .1
                .push(m.broker_name.clone());
        }
    }
    let list: Vec<Value> = groups
        .iter()
        .map(|(name, (cfg, brokers))| {
            json!({
                "group": name,
                "brokers": brokers,
                "consumeEnable": cfg.consume_enable,
                "consumeBroadcastEnable": cfg.consume_broadcast_enable,
                "retryMaxTimes": cfg.retry_max_times,
                "retryQueueNums": cfg.retry_queue_nums,
            })
        })
        .collect();
    ctx.emit(&json!({ "groups": list }), || {
        let rows: Vec<Vec<String>> = groups
            .iter()
            .map(|(name, (cfg, brokers))| {
                vec![
                    name.clone(),
                    cfg.consume_enable.to_string(),
                    cfg.consume_broadcast_enable.to_string(),
                    cfg.retry_max_times.to_string(),
                    brokers.join(","),
                ]
            })
            .collect();
        table(
            &["GROUP", "ENABLED", "BROADCAST", "RETRY_MAX", "BROKERS"],
            &rows,
        )
    })
}

pub async fn group_create(ctx: &Ctx, a: &GroupCreateArgs) -> Result<()> {
    let mut cfg = SubscriptionGroupConfig::new(&a.group);
    cfg.retry_max_times = a.retry_max_times;
    cfg.consume_broadcast_enable = !a.no_broadcast;
    cfg.consume_enable = !a.disabled;
    let targets: Vec<(String, String)> = match &a.broker {
        Some(b) => vec![(b.clone(), b.clone())],
        None => masters(ctx, None)
            .await?
            .into_iter()
            .map(|m| (m.broker_name, m.addr))
            .collect(),
    };
    for (name, addr) in &targets {
        ctx.client
            .create_subscription_group(addr, &cfg)
            .await
            .with_context(|| format!("creating group {} on {name}", a.group))?;
    }
    let names: Vec<&str> = targets.iter().map(|t| t.0.as_str()).collect();
    ctx.emit(
        &json!({ "group": a.group, "brokers": names, "config": cfg }),
        || format!("created group {} on {}", a.group, names.join(", ")),
    )
}

#[cfg(test)]
mod tests {
    use super::version_name;

    #[test]
    fn version_names() {
        // DEFAULT_VERSION (409) is 4.9.8 and 413 is 5.0.0, as rmq-remoting and rmq-client say.
        assert_eq!(version_name(409), "V4_9_8");
        assert_eq!(version_name(413), "V5_0_0");
        assert_eq!(version_name(412), "V5_0_0_SNAPSHOT");
        assert_eq!(version_name(213), "V4_0_0");
        assert_eq!(version_name(5), "ordinal 5");
    }
}
