//! Who else consumes a scope's group, per broker, so a surviving instance can take a dead
//! one's queues in seconds instead of waiting out the broker's lock expiry (60 s).
//!
//! A broker forgets a client as soon as the client's connection closes (a killed process's
//! sockets are closed by its kernel) and tells the group's other members
//! (NOTIFY_CONSUMER_IDS_CHANGED). The queue locks the dead client held stay until they
//! expire, but UNLOCK_BATCH_MQ naming the dead client's id releases them (a broker only removes
//! entries of the client id the request names). So: remember the ids a broker listed for the
//! group (GET_CONSUMER_LIST_BY_GROUP); an id that was listed and no longer is has left, and its
//! locks on that broker may be released by anyone.
//!
//! Releasing the locks of a client that only lost its connection for a moment is safe because
//! that client does not trust its locks on a broker once its connection to it was re-dialled
//! ([`super::BrokerLocks::observe_epoch`]): it asks the broker again before it serves or
//! commits anything, and finds the queue taken.

use std::collections::{BTreeSet, HashMap};

/// The group's member list is read at least this often (ms), notification or not: a
/// notification is one-way and may be lost with a connection (and rocketmq-rust sends none when
/// a connection closes, docs/protocol.md §19 item 7).
pub const MEMBERS_EVERY_MS: i64 = 3_000;
/// ... and this often while another instance holds queues of the scope: those are what a
/// departure would free, and a member must be seen listed before its departure can be seen.
pub const MEMBERS_CONTENDED_MS: i64 = 1_000;

/// The members of one scope's group, as each broker last listed them.
#[derive(Debug, Default)]
pub struct Members {
    seen: HashMap<String, BTreeSet<String>>,
    checked_at: Option<i64>,
}

impl Members {
    /// Whether the lists are due to be read again: a broker announced a change, or
    /// [`MEMBERS_EVERY_MS`] passed ([`MEMBERS_CONTENDED_MS`] while `contended`: another
    /// instance holds queues of the scope).
    pub fn due(&self, now: i64, notified: bool, contended: bool) -> bool {
        let every = if contended {
            MEMBERS_CONTENDED_MS
        } else {
            MEMBERS_EVERY_MS
        };
        notified || self.checked_at.is_none_or(|t| now - t >= every)
    }

    /// The lists were read at `now`.
    pub fn checked(&mut self, now: i64) {
        self.checked_at = Some(now);
    }

    /// `broker` lists `ids` as the group's members now; returns the ids it listed before and
    /// no longer does (never `me`). The first list of a broker only teaches who is there.
    pub fn observe(&mut self, broker: &str, ids: &[String], me: &str) -> Vec<String> {
        let now: BTreeSet<String> = ids.iter().cloned().collect();
        let gone = match self.seen.get(broker) {
            Some(before) => before
                .difference(&now)
                .filter(|id| id.as_str() != me)
                .cloned()
                .collect(),
            None => Vec::new(),
        };
        self.seen.insert(broker.to_owned(), now);
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn members_that_leave_are_reported_once_per_broker() {
        let mut m = Members::default();
        assert!(m.due(0, false, false));
        assert!(m.observe("b1", &ids(&["me", "a", "b"]), "me").is_empty());
        m.checked(0);
        assert!(!m.due(MEMBERS_CONTENDED_MS - 1, false, false));
        assert!(m.due(MEMBERS_CONTENDED_MS - 1, true, false));
        assert!(m.due(MEMBERS_CONTENDED_MS, false, true));
        assert!(!m.due(MEMBERS_CONTENDED_MS, false, false));
        assert!(m.due(MEMBERS_EVERY_MS, false, false));
        assert_eq!(m.observe("b1", &ids(&["me", "b"]), "me"), ids(&["a"]));
        assert!(m.observe("b1", &ids(&["me", "b"]), "me").is_empty());
        // Another broker has its own list; our own absence is never reported.
        assert!(m.observe("b2", &ids(&["me", "a"]), "me").is_empty());
        assert_eq!(m.observe("b2", &ids(&[]), "me"), ids(&["a"]));
        // A member that comes back and leaves again is reported again.
        m.observe("b1", &ids(&["me", "b", "a"]), "me");
        assert_eq!(m.observe("b1", &ids(&["me"]), "me"), ids(&["a", "b"]));
    }
}
