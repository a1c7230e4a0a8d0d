//! Topic routes turned into queues (docs/protocol.md §17.2), and the name-server client with
//! failover.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rmq_remoting::body::{self, perm, MessageQueue, TopicRouteData};
use rmq_remoting::header::{CommandHeader, GetRouteInfoRequestHeader};
use rmq_remoting::{ExtFields, RemotingCommand, RequestCode, ResponseCode};
use tracing::{debug, warn};

use crate::error::{ClientError, Result};
use crate::remoting_client::RemotingClient;

/// A topic's route with the queues derived from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicRoute {
    /// The topic.
    pub topic: String,
    /// The route as the name server sent it.
    pub data: TopicRouteData,
    /// Writable queues on brokers with a master, sorted by broker name then queue id.
    pub publish_queues: Vec<MessageQueue>,
    /// Readable queues, sorted by (topic, broker name, queue id).
    pub subscribe_queues: Vec<MessageQueue>,
}

impl TopicRoute {
    /// Derives the queues of `data`.
    pub fn new(topic: &str, data: TopicRouteData) -> Self {
        let publish_queues = publish_queues(topic, &data);
        let subscribe_queues = subscribe_queues(topic, &data);
        TopicRoute {
            topic: topic.to_owned(),
            data,
            publish_queues,
            subscribe_queues,
        }
    }

    /// The master's address of `broker_name`.
    pub fn master_addr(&self, broker_name: &str) -> Option<&str> {
        self.data
            .broker_datas
            .iter()
            .find(|b| b.broker_name == broker_name)
            .and_then(|b| b.master_addr())
    }

    /// The address of broker id `id` of `broker_name`, falling back to the master.
    pub fn broker_addr(&self, broker_name: &str, id: i64) -> Option<&str> {
        let b = self
            .data
            .broker_datas
            .iter()
            .find(|b| b.broker_name == broker_name)?;
        b.broker_addrs
            .get(&id)
            .or_else(|| b.broker_addrs.get(&0))
            .map(String::as_str)
    }

    /// Every master address of the route.
    pub fn master_addrs(&self) -> Vec<String> {
        self.data
            .broker_datas
            .iter()
            .filter_map(|b| b.master_addr().map(str::to_owned))
            .collect()
    }
}

fn publish_queues(topic: &str, data: &TopicRouteData) -> Vec<MessageQueue> {
    let mut out = Vec::new();
    if let Some(conf) = data.order_topic_conf.as_deref().filter(|c| !c.is_empty()) {
        for entry in conf.split(';') {
            if let Some((broker, n)) = entry.split_once(':') {
                if let Ok(n) = n.trim().parse::<i32>() {
                    out.extend((0..n).map(|q| MessageQueue::new(topic, broker.trim(), q)));
                }
            }
        }
        return out;
    }
    let mut qds: Vec<_> = data.queue_datas.iter().collect();
    qds.sort_by(|a, b| a.broker_name.cmp(&b.broker_name));
    for qd in qds {
        if qd.perm & perm::WRITE == 0 {
            continue;
        }
        let has_master = data
            .broker_datas
            .iter()
            .any(|b| b.broker_name == qd.broker_name && b.master_addr().is_some());
        if has_master {
            out.extend(
                (0..qd.write_queue_nums).map(|q| MessageQueue::new(topic, &qd.broker_name, q)),
            );
        }
    }
    out
}

fn subscribe_queues(topic: &str, data: &TopicRouteData) -> Vec<MessageQueue> {
    let mut out: Vec<MessageQueue> = data
        .queue_datas
        .iter()
        .filter(|qd| qd.perm & perm::READ != 0)
        .flat_map(|qd| {
            (0..qd.read_queue_nums).map(|q| MessageQueue::new(topic, &qd.broker_name, q))
        })
        .collect();
    out.sort();
    out
}

/// Asks name servers for routes, sticking to one until it fails, then moving to the next.
#[derive(Clone)]
pub struct NameServerClient {
    remoting: RemotingClient,
    addrs: Arc<Vec<String>>,
    current: Arc<AtomicUsize>,
}

impl NameServerClient {
    /// A client of `addrs`, starting at one picked by process id to spread load.
    pub fn new(remoting: RemotingClient, addrs: Vec<String>) -> Self {
        // Spread clients over name servers, as Java does with a random start index.
        let start = (std::process::id() as usize) % addrs.len().max(1);
        NameServerClient {
            remoting,
            addrs: Arc::new(addrs),
            current: Arc::new(AtomicUsize::new(start)),
        }
    }

    /// The name servers.
    pub fn addrs(&self) -> &[String] {
        &self.addrs
    }

    /// Sends `cmd` to a name server; on a transport failure closes that connection and tries the
    /// next, until each was tried once.
    pub async fn invoke(&self, cmd: RemotingCommand) -> Result<(String, RemotingCommand)> {
        if self.addrs.is_empty() {
            return Err(ClientError::NoNameServer);
        }
        let n = self.addrs.len();
        let start = self.current.load(Ordering::Relaxed);
        let mut last_err = None;
        for i in 0..n {
            let idx = (start + i) % n;
            let addr = &self.addrs[idx];
            match self.remoting.invoke(addr, cmd.clone()).await {
                Ok(resp) => {
                    self.current.store(idx, Ordering::Relaxed);
                    return Ok((addr.clone(), resp));
                }
                Err(e) if e.is_transport() => {
                    warn!(namesrv = %addr, error = %e, "name server failed, trying the next");
                    self.remoting.close_connection(addr).await;
                    last_err = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_err.unwrap_or(ClientError::NoNameServer))
    }

    /// The route of `topic`, or `None` when the name server does not know it.
    pub async fn topic_route(&self, topic: &str) -> Result<Option<TopicRoute>> {
        let header = GetRouteInfoRequestHeader {
            topic: topic.to_owned(),
            accept_standard_json_only: None,
        };
        let cmd = header.to_request(RequestCode::GetRouteinfoByTopic);
        let (addr, resp) = self.invoke(cmd).await?;
        match resp.response_code() {
            ResponseCode::Success => {
                let data: TopicRouteData = body::from_json(&resp.body)?;
                debug!(%topic, namesrv = %addr, "route fetched");
                Ok(Some(TopicRoute::new(topic, data)))
            }
            ResponseCode::TopicNotExist => Ok(None),
            code => Err(ClientError::Broker {
                addr,
                code,
                remark: resp.remark,
            }),
        }
    }

    /// GET_BROKER_CLUSTER_INFO.
    pub async fn cluster_info(&self) -> Result<body::ClusterInfo> {
        let cmd = RemotingCommand::request(RequestCode::GetBrokerClusterInfo, ExtFields::new());
        let (addr, resp) = self.invoke(cmd).await?;
        let resp = crate::remoting_client::expect_code(&addr, resp, &[ResponseCode::Success])?;
        Ok(body::from_json(&resp.body)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmq_remoting::body::{BrokerData, QueueData};

    fn route() -> TopicRouteData {
        TopicRouteData {
            broker_datas: vec![
                BrokerData {
                    broker_addrs: [(0, "127.0.0.1:10911".to_owned())].into(),
                    broker_name: "b".into(),
                    cluster: "c".into(),
                    ..Default::default()
                },
                BrokerData {
                    broker_addrs: [(1, "127.0.0.1:10921".to_owned())].into(),
                    broker_name: "slave-only".into(),
                    cluster: "c".into(),
                    ..Default::default()
                },
                BrokerData {
                    broker_addrs: [(0, "127.0.0.1:10811".to_owned())].into(),
                    broker_name: "a".into(),
                    cluster: "c".into(),
                    ..Default::default()
                },
            ],
            queue_datas: vec![
                QueueData {
                    broker_name: "b".into(),
                    perm: 6,
                    read_queue_nums: 2,
                    write_queue_nums: 2,
                    topic_sys_flag: 0,
                },
                QueueData {
                    broker_name: "slave-only".into(),
                    perm: 6,
                    read_queue_nums: 1,
                    write_queue_nums: 1,
                    topic_sys_flag: 0,
                },
                QueueData {
                    broker_name: "a".into(),
                    perm: 4,
                    read_queue_nums: 3,
                    write_queue_nums: 3,
                    topic_sys_flag: 0,
                },
            ],
            ..Default::default()
        }
    }

    #[test]
    fn queues_per_spec_20_2() {
        let r = TopicRoute::new("T", route());
        // "a" is read-only, "slave-only" has no master: only "b" publishes.
        assert_eq!(
            r.publish_queues,
            vec![
                MessageQueue::new("T", "b", 0),
                MessageQueue::new("T", "b", 1)
            ]
        );
        assert_eq!(r.subscribe_queues.len(), 6);
        assert_eq!(r.subscribe_queues[0], MessageQueue::new("T", "a", 0));
        assert_eq!(r.master_addr("a"), Some("127.0.0.1:10811"));
        assert_eq!(r.master_addr("slave-only"), None);
        assert_eq!(r.broker_addr("slave-only", 1), Some("127.0.0.1:10921"));
        let mut ordered = route();
        ordered.order_topic_conf = Some("a:2;b:1".into());
        let r = TopicRoute::new("T", ordered);
        assert_eq!(r.publish_queues.len(), 3);
    }
}
