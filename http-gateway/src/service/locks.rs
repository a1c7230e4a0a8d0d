//! Broker-lock upkeep, about every second: renew the locks of queues in use, give idle ones
//! back so other instances can serve them, and close batches acked through other instances.

use std::collections::HashMap;

use rmq_remoting::body::MessageQueue;
use tracing::{debug, warn};

use super::Gateway;
use crate::broker::BrokerApi;
use crate::engine::QueueKey;

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

impl<B: BrokerApi> Gateway<B> {
    /// Renews broker locks of leased queues and gives idle ones back. Run about every second.
    pub async fn maintain_locks(&self) {
        let now = self.now();
        for scope in self.all_scopes() {
            self.settle_foreign_acks(&scope, now).await;
            let plan = {
                let mut st = scope.state.lock();
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
