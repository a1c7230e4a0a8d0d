//! The shared control plane's data: one consumer scope's admin settings as every gateway
//! instance stores and reads them (a small versioned JSON document per scope, kept in the name
//! servers' KV configuration by the driver), and how an instance applies a newer document to
//! its [`ScopeState`] exactly once.
//!
//! Why this shape:
//! - The name servers' KV table is durable (each persists it to disk) and shared, but it has no
//!   compare-and-set. A writer reads the newest document, changes it and writes it back with a
//!   larger `version` (wall-clock milliseconds, at least the old version + 1). Readers take the
//!   largest version any name server answers, so a name server that missed a write (it was down)
//!   is outvoted, and two concurrent admin calls end with one of them winning as a whole.
//! - Pause, rate limit, pull size and timeout are *state*: applying the same document twice is
//!   harmless, and a restarted instance applies it on start.
//! - Offset reset and resend are *actions*. Each carries a sequence number; an instance applies
//!   an action once, when it first sees a larger sequence than it applied, and an instance that
//!   starts (or creates the scope) after the action only records the sequence as applied. The
//!   offset reset itself is written to the broker once, by the instance that received the call;
//!   the others only drop what they had in flight, so they re-read the broker's offsets. The
//!   document is stored before the offsets move; an ack another instance commits in the moment
//!   before it reads the document (at most about a second) can still land after the reset on
//!   that queue. A resend is handed out once by each instance that serves the scope when it
//!   reads the document (at-least-once, like any redelivery): the KV table has no
//!   compare-and-set to let exactly one instance claim it.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::rate::RateLimiter;
use super::scope::ScopeState;

/// The KV namespace the gateway keeps its settings under on the name servers.
pub const KV_NAMESPACE: &str = "rmq-gateway";
/// Resend ids one document keeps (the newest); older ones were applied long ago.
pub const MAX_STORED_RESENDS: usize = 64;

/// A resend an administrator asked for (MQCloud's `retryMsgId`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResendAction {
    /// Its sequence number in the document (increasing).
    pub seq: u64,
    /// The message's unique key (`UNIQ_KEY`).
    pub msg_id: String,
}

/// An offset reset an administrator asked for (MQCloud's `resetOffsetTimestamp`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResetAction {
    /// Its sequence number in the document (increasing).
    pub seq: u64,
    /// Offsets moved to the first message stored at or after this time (ms since the epoch).
    pub timestamp: i64,
    /// The instance that wrote the offsets to the broker.
    pub by: String,
}

/// One scope's settings as stored in the name servers' KV table (the value; the key is
/// [`kv_key`]). Absent settings keep the gateway configuration's value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct StoredSettings {
    /// Larger wins; see the module docs.
    pub version: i64,
    /// The instance that wrote this version (for people reading the KV table).
    pub written_by: String,
    /// Hand out nothing while true.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
    /// Messages per pull.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_pull_size: Option<u32>,
    /// Invisibility timeout of handed-out messages, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consume_timeout_ms: Option<u64>,
    /// The rate limit in messages per second; absent or `None` is unlimited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit_rate: Option<f64>,
    /// The newest offset reset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reset: Option<ResetAction>,
    /// The newest resends, oldest first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resend: Vec<ResendAction>,
}

/// The KV key of a scope: the consumer's name, or `<consumer>@<clientId>` for one clientId of
/// a broadcast consumer (consumer names have no `@`: they are RocketMQ group names).
pub fn kv_key(consumer: &str, client_id: Option<&str>) -> String {
    match client_id {
        None => consumer.to_owned(),
        Some(c) => format!("{consumer}@{c}"),
    }
}

impl StoredSettings {
    /// Parses a stored value; `None` for a value this gateway did not write (it is left alone).
    pub fn parse(value: &str) -> Option<Self> {
        serde_json::from_str(value).ok()
    }

    /// The value to store.
    pub fn to_value(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The version a new write after this one gets at time `now`.
    pub fn next_version(&self, now: i64) -> i64 {
        now.max(self.version + 1)
    }

    /// The next action sequence number.
    pub fn next_seq(&self) -> u64 {
        let r = self.reset.as_ref().map_or(0, |r| r.seq);
        let s = self.resend.last().map_or(0, |r| r.seq);
        r.max(s) + 1
    }

    /// Adds a resend, keeping the newest [`MAX_STORED_RESENDS`].
    pub fn push_resend(&mut self, msg_id: String) {
        let seq = self.next_seq();
        self.resend.push(ResendAction { seq, msg_id });
        let extra = self.resend.len().saturating_sub(MAX_STORED_RESENDS);
        self.resend.drain(..extra);
    }

    /// The newest of several name servers' values of one key (they may differ when one missed a
    /// write).
    pub fn newest(values: impl IntoIterator<Item = Self>) -> Option<Self> {
        values.into_iter().max_by_key(|s| s.version)
    }
}

/// What this instance has applied of its scope's stored settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// The version applied (0: none).
    pub version: i64,
    /// The largest action sequence applied.
    pub seq: u64,
}

/// What applying a document asks the driver to do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyOutcome {
    /// Whether anything changed (the document was newer).
    pub changed: bool,
    /// An offset reset written by another instance: leases were dropped; nothing to send.
    pub reset_seen: bool,
    /// Resends queued on this instance.
    pub resends: usize,
}

/// The configured defaults a scope returns to when a stored setting is absent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Defaults {
    /// Messages per pull.
    pub max_pull_size: u32,
    /// Invisibility timeout, ms.
    pub consume_timeout_ms: u64,
}

impl ScopeState {
    /// Applies `doc` if it is newer than what this scope applied. With `fresh` (the scope was
    /// just created, or the instance just started) actions are recorded as applied but not
    /// performed: they happened before this instance served the scope.
    pub fn apply_stored(
        &mut self,
        doc: &StoredSettings,
        defaults: Defaults,
        me: &str,
        fresh: bool,
        now: i64,
    ) -> ApplyOutcome {
        let mut out = ApplyOutcome::default();
        if doc.version <= self.applied.version {
            return out;
        }
        out.changed = true;
        let st = &mut self.settings;
        st.paused = doc.paused.unwrap_or(false);
        st.max_pull_size = doc.max_pull_size.unwrap_or(defaults.max_pull_size);
        st.consume_timeout_ms = doc
            .consume_timeout_ms
            .unwrap_or(defaults.consume_timeout_ms);
        match (doc.limit_rate, st.rate.as_ref().map(RateLimiter::per_sec)) {
            (None, _) => st.rate = None,
            // Keep the bucket's tokens when the rate did not change.
            (Some(r), Some(old)) if r == old => {}
            (Some(r), _) => st.rate = Some(RateLimiter::new(r, now)),
        }
        let seen = self.applied.seq;
        if !fresh {
            if let Some(r) = doc.reset.as_ref().filter(|r| r.seq > seen) {
                // The writer moved the broker's offsets and dropped its own leases already.
                if r.by != me {
                    self.table.drop_leases();
                    out.reset_seen = true;
                }
            }
            let new: VecDeque<String> = doc
                .resend
                .iter()
                .filter(|r| r.seq > seen)
                .map(|r| r.msg_id.clone())
                .collect();
            out.resends = new.len();
            self.settings.resend.extend(new);
        }
        self.applied = Applied {
            version: doc.version,
            seq: seen.max(doc.next_seq() - 1),
        };
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{QueueMode, ScopeSettings};

    const D: Defaults = Defaults {
        max_pull_size: 32,
        consume_timeout_ms: 60_000,
    };

    fn scope() -> ScopeState {
        ScopeState::new(QueueMode::Exclusive, ScopeSettings::new(32, 60_000))
    }

    #[test]
    fn newer_documents_apply_once_and_older_ones_never() {
        let mut s = scope();
        let mut doc = StoredSettings {
            version: 10,
            paused: Some(true),
            limit_rate: Some(5.0),
            max_pull_size: Some(4),
            ..Default::default()
        };
        assert!(s.apply_stored(&doc, D, "me", false, 0).changed);
        assert!(s.settings.paused);
        assert_eq!(s.settings.max_pull_size, 4);
        assert_eq!(s.settings.rate.as_ref().map(|r| r.per_sec()), Some(5.0));
        assert!(!s.apply_stored(&doc, D, "me", false, 0).changed);
        let older = StoredSettings {
            version: 9,
            ..Default::default()
        };
        assert!(!s.apply_stored(&older, D, "me", false, 0).changed);
        assert!(s.settings.paused);
        // Settings left out go back to the configuration's.
        doc.version = 11;
        doc.paused = None;
        doc.limit_rate = None;
        doc.max_pull_size = None;
        assert!(s.apply_stored(&doc, D, "me", false, 0).changed);
        assert!(!s.settings.paused);
        assert!(s.settings.rate.is_none());
        assert_eq!(s.settings.max_pull_size, 32);
    }

    #[test]
    fn actions_run_once_per_instance_and_not_on_a_fresh_scope() {
        let mut doc = StoredSettings {
            version: 1,
            ..Default::default()
        };
        doc.push_resend("A".into());
        let mut s = scope();
        assert_eq!(s.apply_stored(&doc, D, "me", false, 0).resends, 1);
        doc.version = 2;
        doc.push_resend("B".into());
        assert_eq!(s.apply_stored(&doc, D, "me", false, 0).resends, 1);
        assert_eq!(Vec::from(s.settings.resend.clone()), vec!["A", "B"]);
        // An instance that starts later does not resend what was asked before it served.
        let mut late = scope();
        assert_eq!(late.apply_stored(&doc, D, "me", true, 0).resends, 0);
        doc.version = 3;
        doc.reset = Some(ResetAction {
            seq: doc.next_seq(),
            timestamp: 5,
            by: "other".into(),
        });
        let out = late.apply_stored(&doc, D, "me", false, 0);
        assert!(out.reset_seen);
        assert_eq!(out.resends, 0);
        // The writer of a reset does not drop its leases again.
        let mut writer = scope();
        writer.applied.seq = 2;
        assert!(!writer.apply_stored(&doc, D, "other", false, 0).reset_seen);
    }

    #[test]
    fn stored_values_parse_and_the_newest_wins() {
        let mut a = StoredSettings {
            version: 5,
            written_by: "x".into(),
            paused: Some(true),
            ..Default::default()
        };
        for _ in 0..(MAX_STORED_RESENDS + 3) {
            a.push_resend("m".into());
        }
        assert_eq!(a.resend.len(), MAX_STORED_RESENDS);
        assert_eq!(a.next_seq(), MAX_STORED_RESENDS as u64 + 4);
        let back = StoredSettings::parse(&a.to_value()).unwrap();
        assert_eq!(back, a);
        assert!(StoredSettings::parse("not json").is_none());
        let b = StoredSettings {
            version: 7,
            ..Default::default()
        };
        assert_eq!(StoredSettings::newest([a.clone(), b.clone()]), Some(b));
        assert_eq!(a.next_version(3), 6);
        assert_eq!(a.next_version(100), 100);
        assert_eq!(kv_key("c", Some("x")), "c@x");
    }
}
