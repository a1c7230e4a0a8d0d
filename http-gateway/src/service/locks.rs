//! Broker-lock upkeep, about every second: renew the locks of queues in use, give idle ones
//! back so other instances can serve them, close batches acked through other instances, and
//! release the locks of instances that left the group (`engine::members`), so their queues are
//! served again in seconds rather than after the broker's lock expiry.

use std::collections::{BTreeSet, HashMap};

use rmq_remoting::body::MessageQueue;
use tracing::{debug, info, warn};

use super::{Gateway, Scope};
use crate::broker::BrokerApi;
use crate::engine::{QueueKey, ScopeState};

fn by_broker(
    keys: &[QueueKey],
    mq: impl Fn(&QueueKey) -> MessageQueue,
) -> HashMap<String, Vec<MessageQueue>> {
    let mut m: HashMap<String, Vec<MessageQueue>> = HashMap::new();
    for k in keys {
        m.entry(k.broker_name.clone()).or_default().push(mq(k));
    }
    m
}

/// The brokers of the scope's locks.
fn brokers_of(st: &ScopeState) -> BTreeSet<String> {
    st.locks
        .held()
        .map(|(k, _)| k.broker_name.clone())
        .collect()
}

impl<B: BrokerApi> Gateway<B> {
    /// Reads the group's member list from each broker of the scope's queues when a broker
    /// announced a change, or every few seconds; releases the locks of members that left
    /// (UNLOCK_BATCH_MQ naming their client id, for every queue of the scope on that broker:
    /// the broker only removes entries of that id) and tries those queues at once.
    async fn take_over_departed(&self, scope: &Scope, now: i64) {
        let notified = self.broker.take_member_change(&scope.broker_group);
        let brokers: BTreeSet<String> = {
            let st = scope.state.lock();
            if !st
                .members
                .due(now, notified, st.table.any_held_elsewhere(now))
            {
                return;
            }
            st.table
                .queues()
                .map(|(k, _)| k.broker_name.clone())
                .collect()
        };
        scope.state.lock().members.checked(now);
        for b in brokers {
            let ids = match self.broker.consumer_ids(&scope.broker_group, &b).await {
                Ok(ids) => ids,
                Err(e) => {
                    debug!(broker = %b, error = %e, "member list unavailable");
                    continue;
                }
            };
            let (gone, keys) = {
                let mut st = scope.state.lock();
                let gone = st.members.observe(&b, &ids, &self.instance_id);
                let keys: Vec<QueueKey> = st
                    .table
                    .queues()
                    .map(|(k, _)| k.clone())
                    .filter(|k| k.broker_name == b)
                    .collect();
                (gone, keys)
            };
            if gone.is_empty() || keys.is_empty() {
                continue;
            }
            let mqs: Vec<MessageQueue> = keys.iter().map(|k| scope.mq(k)).collect();
            for dead in &gone {
                match self
                    .broker
                    .unlock(&scope.broker_group, dead, &b, &mqs)
                    .await
                {
                    Ok(()) => info!(group = %scope.broker_group, broker = %b, client = %dead,
                        "an instance left the group: its queue locks were released"),
                    Err(e) => {
                        warn!(client = %dead, error = %e, "releasing a departed instance's locks failed")
                    }
                }
            }
            // Queues are tried largest backlog first, and this instance's view of the departed
            // instance's queues is stale: read their ends, so the next fetches go to them.
            for (k, mq) in keys.iter().zip(&mqs) {
                if let Ok(max) = self.broker.max_offset(mq).await {
                    scope.state.lock().table.set_max_offset(k, max);
                }
            }
            scope.state.lock().table.clear_held_elsewhere();
        }
    }

    /// Renews broker locks of leased queues and gives idle ones back. Run about every second.
    pub async fn maintain_locks(&self) {
        let now = self.now();
        for scope in self.all_scopes() {
            self.settle_foreign_acks(&scope, now).await;
            self.take_over_departed(&scope, now).await;
            let plan = {
                let mut st = scope.state.lock();
                for b in brokers_of(&st) {
                    let epoch = self.broker.connection_epoch(&b);
                    if st.locks.observe_epoch(&b, epoch) {
                        warn!(broker = %b, "connection re-dialled: its queue locks are checked again before use");
                    }
                }
                let leased = st.table.leased(now);
                st.locks.plan(now, &leased)
            };
            for (broker, mqs) in by_broker(&plan.release, |k| scope.mq(k)) {
                if let Err(e) = self
                    .broker
                    .unlock(&scope.broker_group, &self.instance_id, &broker, &mqs)
                    .await
                {
                    debug!(error = %e, "unlock of idle queues failed; the broker lets them expire");
                }
                let keys: Vec<QueueKey> = mqs.iter().map(|m| scope.key(m)).collect();
                scope.state.lock().locks.unlocked(&keys);
            }
            for (broker, mqs) in by_broker(&plan.renew, |k| scope.mq(k)) {
                match self
                    .broker
                    .lock(&scope.broker_group, &self.instance_id, &broker, &mqs)
                    .await
                {
                    Ok(granted) => {
                        let mut st = scope.state.lock();
                        for mq in &mqs {
                            let key = scope.key(mq);
                            let ok = granted.contains(mq);
                            if !ok {
                                warn!(queue = ?key, "broker lock lost");
                                // Another instance holds it now: nothing handed out from the
                                // queue may be acked here any more.
                                st.table.lose(&key);
                            }
                            st.locks.renewed(&key, ok, now);
                        }
                    }
                    Err(e) => warn!(broker = %broker, error = %e, "lock renewal failed"),
                }
            }
        }
    }
}
