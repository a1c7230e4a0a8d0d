//! Which gateway runs are live members of a consumer group, as the brokers list them: an ack is
//! passed on only to one of those ([`super::forward`]), so a receipt handle naming any other
//! address sends nothing anywhere.
//!
//! The lists are read from every master broker of the topic (GET_CONSUMER_LIST_BY_GROUP; a
//! member heartbeats to all of them) and kept for [`FRESH_MS`], so a burst of acks costs one
//! read per broker. An owner missing from a kept list is looked up again only when the list is
//! older than [`RECHECK_MS`]: a member that joined a moment ago is found, and a burst of handles
//! naming strangers does not become a burst of broker calls.

use std::collections::{HashMap, HashSet};

use parking_lot::Mutex;

use super::forward::owner_of;
use super::handle::Owner;
use crate::broker::BrokerApi;
use crate::service::Gateway;

/// How long a group's member list is trusted (ms).
pub const FRESH_MS: i64 = 2_000;
/// A list at least this old (ms) is read again when it lacks the owner asked about.
pub const RECHECK_MS: i64 = 250;

struct Listed {
    at_ms: i64,
    owners: HashSet<Owner>,
}

/// The members last listed per (group, topic), as gateway runs.
#[derive(Default)]
pub struct Peers {
    lists: Mutex<HashMap<(String, String), Listed>>,
}

impl Peers {
    /// Whether `owner` is a gateway run the brokers of `topic` list as a member of `group`
    /// (broker names). Unreadable lists count as not listing it.
    pub async fn is_member<B: BrokerApi>(
        &self,
        gw: &Gateway<B>,
        group: &str,
        topic: &str,
        owner: &Owner,
    ) -> bool {
        let key = (group.to_owned(), topic.to_owned());
        let now = gw.now_ms();
        if let Some(l) = self.lists.lock().get(&key) {
            let age = now - l.at_ms;
            if (0..FRESH_MS).contains(&age) && (l.owners.contains(owner) || age < RECHECK_MS) {
                return l.owners.contains(owner);
            }
        }
        let owners = read(gw, group, topic).await;
        let member = owners.contains(owner);
        self.lists.lock().insert(key, Listed { at_ms: now, owners });
        member
    }
}

/// The gateway runs listed for `group` on the masters of `topic`.
async fn read<B: BrokerApi>(gw: &Gateway<B>, group: &str, topic: &str) -> HashSet<Owner> {
    let mut brokers: Vec<String> = match gw.broker().route(topic).await {
        Ok(qs) => qs.into_iter().map(|q| q.broker_name).collect(),
        Err(e) => {
            tracing::debug!(%topic, error = %e, "no route: no member list");
            return HashSet::new();
        }
    };
    brokers.sort();
    brokers.dedup();
    let mut owners = HashSet::new();
    for b in brokers {
        match gw.broker().consumer_ids(group, &b).await {
            Ok(ids) => owners.extend(ids.iter().filter_map(|id| owner_of(id))),
            Err(e) => tracing::debug!(broker = %b, %group, error = %e, "member list unavailable"),
        }
    }
    owners
}
