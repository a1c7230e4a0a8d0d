//! Broker locks this instance holds (LOCK_BATCH_MQ under its client id), so that gateway
//! instances sharing a group serve disjoint queues: which are held, which are due for renewal,
//! which sit idle and go back to the broker, and which are being given back right now.

use std::collections::{HashMap, HashSet};

use super::queues::QueueKey;

/// Broker locks are renewed this often (the broker keeps them 60 s).
pub const RENEW_EVERY_MS: i64 = 20_000;
/// A broker lock not renewed for this long is not trusted (docs/protocol.md §13: trusted for 30 s).
pub const LOCK_TRUST_MS: i64 = 30_000;
/// A queue no HTTP consumer holds is given back to the broker after this long, so another
/// gateway instance can serve it.
pub const IDLE_UNLOCK_MS: i64 = 3_000;
/// A queue another instance holds is not asked for again before this long.
pub const HELD_ELSEWHERE_MS: i64 = 5_000;

/// A broker lock this instance holds for a queue of a scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// When the broker last granted or renewed it (ms since the epoch); trusted for
    /// [`LOCK_TRUST_MS`] after.
    pub renewed_at: i64,
    /// Since when no delivery has used the queue; the lock goes back after [`IDLE_UNLOCK_MS`].
    pub idle_since: Option<i64>,
}

/// Whether a queue may be served without asking the broker first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockCheck {
    /// Held and renewed recently.
    Trusted,
    /// Being given back: not servable until the unlock has been answered, or the unlock could
    /// land after a new lease and free a queue this instance serves.
    Releasing,
    /// Ask the broker (LOCK_BATCH_MQ), then report with [`BrokerLocks::granted`].
    Ask,
}

/// What the periodic maintenance sends to the broker.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LockPlan {
    /// Held and in use: LOCK_BATCH_MQ again, then [`BrokerLocks::renewed`].
    pub renew: Vec<QueueKey>,
    /// Idle: UNLOCK_BATCH_MQ, then [`BrokerLocks::unlocked`].
    pub release: Vec<QueueKey>,
}

/// The broker locks of one scope on this instance: held, and being given back.
///
/// # When a lock is trusted
///
/// Two live instances must never serve one queue. A lock is trusted without asking the broker
/// only while all of these hold:
/// - it was granted or renewed less than [`LOCK_TRUST_MS`] ago, half the broker's expiry: an
///   instance that was stopped (SIGSTOP, a long GC-like pause, a suspended VM) for longer than
///   the expiry finds its locks untrusted when it resumes, because the clock moved on while it
///   stood still, and asks the broker before it hands out or commits anything;
/// - the connection to the queue's broker is the one the lock was taken on
///   ([`Self::observe_epoch`]): when it dropped, the broker may have dropped this instance from
///   the group, and another instance may have released its locks (see
///   [`super::members`]) and taken the queues.
#[derive(Debug, Default)]
pub struct BrokerLocks {
    held: HashMap<QueueKey, Held>,
    releasing: HashSet<QueueKey>,
    epochs: HashMap<String, u64>,
}

impl BrokerLocks {
    /// Whether `key` may be served now on the strength of the lock this instance holds, or the
    /// broker must be asked.
    pub fn check(&self, key: &QueueKey, now: i64) -> LockCheck {
        if self.releasing.contains(key) {
            return LockCheck::Releasing;
        }
        match self.held.get(key) {
            Some(h) if now - h.renewed_at < LOCK_TRUST_MS => LockCheck::Trusted,
            _ => LockCheck::Ask,
        }
    }

    /// The connection to broker `broker_name` is the `epoch`th one this instance dialled. If it
    /// changed since the last call, every lock held on that broker becomes untrusted (it must be
    /// renewed before use). Returns whether it changed.
    pub fn observe_epoch(&mut self, broker_name: &str, epoch: u64) -> bool {
        let before = self.epochs.insert(broker_name.to_owned(), epoch);
        let changed = before.is_some_and(|b| b != epoch);
        if changed {
            for (k, h) in self.held.iter_mut() {
                if k.broker_name == broker_name {
                    h.renewed_at = i64::MIN / 2;
                }
            }
        }
        changed
    }

    /// The broker answered a lock request for `key`.
    pub fn granted(&mut self, key: &QueueKey, granted: bool, now: i64) {
        if granted {
            self.held.insert(
                key.clone(),
                Held {
                    renewed_at: now,
                    idle_since: None,
                },
            );
        } else {
            self.held.remove(key);
        }
    }

    /// The queue is in use: it is not idle.
    pub fn touch(&mut self, key: &QueueKey) {
        if let Some(h) = self.held.get_mut(key) {
            h.idle_since = None;
        }
    }

    /// Renewals due and idle locks to give back; `leased` are the queues in use now. The locks
    /// to give back move to "releasing" at once.
    pub fn plan(&mut self, now: i64, leased: &[QueueKey]) -> LockPlan {
        let mut plan = LockPlan::default();
        for (key, h) in self.held.iter_mut() {
            if leased.contains(key) {
                h.idle_since = None;
            } else {
                h.idle_since.get_or_insert(now);
            }
            if h.idle_since.is_some_and(|t| now - t >= IDLE_UNLOCK_MS) {
                plan.release.push(key.clone());
            } else if now - h.renewed_at >= RENEW_EVERY_MS {
                plan.renew.push(key.clone());
            }
        }
        for k in &plan.release {
            self.held.remove(k);
            self.releasing.insert(k.clone());
        }
        plan.renew.sort();
        plan.release.sort();
        plan
    }

    /// The broker answered the unlock (or it failed: the broker lets the lock expire).
    pub fn unlocked(&mut self, keys: &[QueueKey]) {
        for k in keys {
            self.releasing.remove(k);
        }
    }

    /// The broker answered a renewal: a queue not granted was lost to another instance.
    pub fn renewed(&mut self, key: &QueueKey, granted: bool, now: i64) {
        if granted {
            if let Some(h) = self.held.get_mut(key) {
                h.renewed_at = now;
            }
        } else {
            self.held.remove(key);
        }
    }

    /// Every lock held (shutdown gives them all back).
    pub fn drain(&mut self) -> Vec<QueueKey> {
        let mut v: Vec<QueueKey> = self.held.drain().map(|(k, _)| k).collect();
        v.sort();
        v
    }

    /// Every lock held, with its state (for reports and tests).
    pub fn held(&self) -> impl Iterator<Item = (&QueueKey, &Held)> {
        self.held.iter()
    }
}
