//! What the status page and `/metrics` show of the consumers: a [`Snapshot`] of the in-memory
//! state, with broker offsets read by [`Gateway::refresh_observed`] (the observer loop calls it
//! every few seconds, so a scrape never waits for the broker).

use std::collections::HashMap;
use std::sync::Arc;

use super::{queue_of, ConsumerEntry, Gateway, Scope};
use crate::broker::BrokerApi;
use crate::config::Mode;
use crate::engine::QueueKey;
use crate::observe::{ConsumerView, ProducerView, QueueView, Snapshot};

/// One queue's broker offsets as last read.
#[derive(Debug, Clone, Copy)]
pub(super) struct Offsets {
    max: i64,
    committed: Option<i64>,
}

/// Broker offsets per broker group and queue, and when they were read.
#[derive(Debug, Default)]
pub(super) struct Observed {
    groups: HashMap<String, (i64, HashMap<QueueKey, Offsets>)>,
}

/// What the observer reads for one broker group.
struct Target {
    group: String,
    topic: String,
    retry_topic: String,
    keys: Vec<QueueKey>,
}

impl<B: BrokerApi> Gateway<B> {
    fn entries(&self) -> Vec<Arc<ConsumerEntry>> {
        let mut v: Vec<Arc<ConsumerEntry>> = self.consumers.values().cloned().collect();
        v.extend(self.dynamic.lock().values().cloned());
        v.sort_by(|a, b| a.cfg.name.cmp(&b.cfg.name));
        v
    }

    /// Reads the max and committed offsets of every queue of every consumer (configured
    /// clustering consumers too before their first request, from the topic's route) for the
    /// status page and `/metrics`. Two broker calls per queue; failures keep the last values.
    pub async fn refresh_observed(&self) {
        let mut targets = Vec::new();
        for e in self.entries() {
            let scopes: Vec<Arc<Scope>> = e.scopes.lock().values().cloned().collect();
            if scopes.is_empty() {
                if e.cfg.mode == Mode::Clustering {
                    let Ok(route) = self.broker.route(&e.cfg.topic).await else {
                        continue;
                    };
                    targets.push(Target {
                        retry_topic: format!("%RETRY%{}", e.group),
                        group: e.group.clone(),
                        topic: e.cfg.topic.clone(),
                        keys: route
                            .iter()
                            .map(|q| QueueKey::new(false, q.broker_name.clone(), q.queue_id))
                            .collect(),
                    });
                }
                continue;
            }
            for s in scopes {
                let keys = s
                    .state
                    .lock()
                    .table
                    .queues()
                    .map(|(k, _)| k.clone())
                    .collect();
                targets.push(Target {
                    group: s.broker_group.clone(),
                    topic: s.topic.clone(),
                    retry_topic: s.retry_topic.clone(),
                    keys,
                });
            }
        }
        for t in targets {
            let mut read = HashMap::new();
            for k in t.keys {
                let mq = queue_of(&k, &t.topic, &t.retry_topic);
                let Ok(max) = self.broker.max_offset(&mq).await else {
                    continue;
                };
                let Ok(committed) = self.broker.query_offset(&t.group, &mq).await else {
                    continue;
                };
                read.insert(k, Offsets { max, committed });
            }
            let now = self.now();
            let mut o = self.observed.lock();
            let entry = o.groups.entry(t.group).or_default();
            entry.0 = now;
            entry.1.extend(read);
        }
    }

    /// The producers and consumers with their counters, queues, leases and the broker offsets
    /// last read; `recent_errors`, `connections` and `ready` are the caller's to fill.
    pub fn snapshot(&self) -> Snapshot {
        let now = self.now();
        let mut producers: Vec<ProducerView> = self
            .producers
            .iter()
            .map(|(name, p)| ProducerView {
                name: name.clone(),
                topic: p.topic.clone(),
                group: p.group.clone(),
                sent: self.metrics.produced_count(name, "SEND_OK"),
                failed: self.metrics.produce_failures(name),
            })
            .collect();
        producers.sort_by(|a, b| a.name.cmp(&b.name));
        let observed = self.observed.lock();
        let mut consumers = Vec::new();
        for e in self.entries() {
            let mode = match e.cfg.mode {
                Mode::Clustering => "clustering",
                Mode::Broadcast => "broadcast",
            };
            let mut scopes: Vec<(Option<String>, Arc<Scope>)> = e
                .scopes
                .lock()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            scopes.sort_by(|a, b| a.0.cmp(&b.0));
            if scopes.is_empty() {
                // Not used yet on this instance: the offsets the observer read from the route.
                if e.cfg.mode == Mode::Broadcast {
                    continue;
                }
                let read = observed.groups.get(&e.group);
                let mut queues: Vec<QueueView> = read
                    .map(|(_, m)| {
                        m.iter()
                            .map(|(k, o)| queue_view(&e.cfg.topic, k, Some(o), None))
                            .collect()
                    })
                    .unwrap_or_default();
                queues.sort_by(|a, b| {
                    (&a.topic, &a.broker, a.queue_id).cmp(&(&b.topic, &b.broker, b.queue_id))
                });
                consumers.push(ConsumerView {
                    name: e.cfg.name.clone(),
                    topic: e.cfg.topic.clone(),
                    group: e.group.clone(),
                    client_id: None,
                    mode,
                    paused: false,
                    counters: Default::default(),
                    backlog: queues.iter().filter_map(|q| q.backlog).sum(),
                    queues,
                    offsets_read_at: read.map(|(t, _)| *t),
                });
                continue;
            }
            for (client_id, s) in scopes {
                let read = observed.groups.get(&s.broker_group);
                let st = s.state.lock();
                let leased = st.table.leased(now);
                let queues: Vec<QueueView> = st
                    .table
                    .queues()
                    .map(|(k, q)| {
                        let topic = if k.retry { &s.retry_topic } else { &s.topic };
                        let mut v = queue_view(topic, k, read.and_then(|(_, m)| m.get(k)), Some(q));
                        v.leased = leased.contains(k);
                        v.locked = st.locks.held().any(|(h, _)| h == k);
                        v
                    })
                    .collect();
                consumers.push(ConsumerView {
                    name: e.cfg.name.clone(),
                    topic: s.topic.clone(),
                    group: s.broker_group.clone(),
                    client_id,
                    mode,
                    paused: st.settings.paused,
                    counters: st.table.counters(),
                    backlog: queues.iter().filter_map(|q| q.backlog).sum(),
                    queues,
                    offsets_read_at: read.map(|(t, _)| *t),
                });
            }
        }
        Snapshot {
            instance: self.instance_id.clone(),
            uptime_seconds: self.metrics.uptime().as_secs(),
            producers,
            consumers,
            recent_errors: self.metrics.recent_errors(),
            ..Snapshot::default()
        }
    }
}

/// A queue's line: the broker offsets as last read, or failing that what the engine saw.
fn queue_view(
    topic: &str,
    k: &QueueKey,
    read: Option<&Offsets>,
    engine: Option<&crate::engine::QueueState>,
) -> QueueView {
    let max = read
        .map(|o| o.max)
        .or_else(|| engine.filter(|q| q.max_offset > 0).map(|q| q.max_offset));
    let committed = match read {
        Some(o) => o.committed,
        None => engine.and_then(|q| q.committed),
    };
    QueueView {
        topic: topic.to_owned(),
        broker: k.broker_name.clone(),
        queue_id: k.queue_id,
        max_offset: max,
        committed_offset: committed,
        backlog: max.map(|m| (m - committed.unwrap_or(0)).max(0)),
        leased: false,
        locked: false,
        in_flight: engine.map_or(0, |q| q.in_flight.values().filter(|m| !m.acked).count()),
    }
}
