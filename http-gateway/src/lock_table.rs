//! The queue-lock table: which HTTP consumer holds which queue of a consumer scope, from which
//! committed offset, until when. A plain state machine: no I/O, no clock; every method takes the
//! time (milliseconds since the epoch) from its caller, so it is tested by itself.
//!
//! One scope is a clustering group, or one clientId of a broadcast group. Each queue has a
//! committed offset (mirrored from the broker), the max offset last seen (for backlog ordering),
//! and at most one lease. A lease is named by its `lock_time`, which is unique and increasing per
//! queue, so a requestId naming an older lease can never move the offset (stale ack). A lease not
//! acked by its deadline lets the queue be leased again from the committed offset: the batch is
//! redelivered, never lost.
//!
//! Per-message leases (the Aliyun API's receipt handles with visibility deadlines) fit the same
//! shape: a lease would carry per-message deadlines and the committed offset would move to the
//! lowest unacked one; the queue choice, tokens and expiry below stay as they are.

use std::collections::BTreeMap;

/// A queue of a scope: the consumer's topic, or its `%RETRY%` topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueKey {
    pub retry: bool,
    pub broker_name: String,
    pub queue_id: i32,
}

impl QueueKey {
    pub fn new(retry: bool, broker_name: impl Into<String>, queue_id: i32) -> Self {
        QueueKey {
            retry,
            broker_name: broker_name.into(),
            queue_id,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// Names the lease; part of the requestId.
    pub lock_time: i64,
    /// Committed offset when the lease began: the first offset of the batch.
    pub offset: i64,
    /// Where the batch ends (the pull's nextBeginOffset), once pulled.
    pub next_offset: Option<i64>,
    pub expires_at: i64,
    /// An ack is being written to the broker.
    pub committing: bool,
    pub client_ip: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueState {
    /// Committed offset as last read from or written to the broker; `None` until known.
    pub committed: Option<i64>,
    /// Max offset last seen (one past the last message).
    pub max_offset: i64,
    pub lease: Option<Lease>,
    pub last_consume_ms: Option<i64>,
    pub last_client_ip: Option<String>,
    /// Another gateway instance holds the broker lock; do not try before this time.
    pub held_elsewhere_until: Option<i64>,
    /// The last pull found nothing at this time.
    pub empty_at: Option<i64>,
    last_lock_time: i64,
}

impl QueueState {
    pub fn backlog(&self) -> i64 {
        match self.committed {
            Some(c) => (self.max_offset - c).max(0),
            None => self.max_offset.max(0),
        }
    }

    /// Found empty less than `backoff_ms` ago, with no message seen since.
    pub fn recently_empty(&self, now: i64, backoff_ms: i64) -> bool {
        self.backlog() == 0 && self.empty_at.is_some_and(|t| now - t < backoff_ms)
    }

    fn leased_at(&self, now: i64) -> bool {
        self.lease
            .as_ref()
            .is_some_and(|l| l.committing || l.expires_at > now)
    }
}

/// What the caller asks an ack to do, decoded from a requestId.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckToken {
    pub offset: i64,
    pub next_offset: i64,
    pub lock_time: i64,
    /// After OFFSET_ILLEGAL the committed offset is overwritten whatever it was.
    pub force: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckOutcome {
    /// Write `to` to the broker, then call `finish_commit`.
    Commit { from: i64, to: i64 },
    /// The batch was empty; the lease is released.
    Released,
    /// No lease: already acked, unlocked, or this instance never served it.
    LockNotExist,
    /// The queue was leased again since (the ack came after the timeout and someone else
    /// holds it now); nothing moves.
    Stale { current_lock_time: i64 },
    /// The committed offset is no longer the batch's first offset.
    OffsetMoved { committed: Option<i64> },
    /// The token's batch end is not where the lease's pull ended (an altered requestId).
    Mismatch { expected: i64 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseError {
    UnknownQueue,
    Busy,
}

#[derive(Debug, Default)]
pub struct ScopeTable {
    queues: BTreeMap<QueueKey, QueueState>,
}

impl ScopeTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the queue set (from the current route). New queues start unknown; vanished
    /// queues are kept while leased, so an in-flight batch can still be acked.
    pub fn set_queues(&mut self, keys: impl IntoIterator<Item = QueueKey>, now: i64) {
        let keys: Vec<QueueKey> = keys.into_iter().collect();
        self.queues
            .retain(|k, s| keys.contains(k) || s.leased_at(now));
        for k in keys {
            self.queues.entry(k).or_default();
        }
    }

    pub fn get(&self, key: &QueueKey) -> Option<&QueueState> {
        self.queues.get(key)
    }

    pub fn queues(&self) -> impl Iterator<Item = (&QueueKey, &QueueState)> {
        self.queues.iter()
    }

    /// Queues that can be leased now, best first: largest backlog, then least recently consumed,
    /// and queues found empty within `empty_backoff_ms` last.
    pub fn candidates(&self, now: i64, empty_backoff_ms: i64) -> Vec<QueueKey> {
        let mut c: Vec<(&QueueKey, &QueueState)> = self
            .queues
            .iter()
            .filter(|(_, s)| !s.leased_at(now))
            .filter(|(_, s)| s.held_elsewhere_until.is_none_or(|t| t <= now))
            .collect();
        let recently_empty = |s: &QueueState| s.recently_empty(now, empty_backoff_ms);
        c.sort_by(|(ka, a), (kb, b)| {
            recently_empty(a)
                .cmp(&recently_empty(b))
                .then(b.backlog().cmp(&a.backlog()))
                .then(
                    a.last_consume_ms
                        .unwrap_or(0)
                        .cmp(&b.last_consume_ms.unwrap_or(0)),
                )
                .then(ka.cmp(kb))
        });
        c.into_iter().map(|(k, _)| k.clone()).collect()
    }

    /// Leases `key` from `offset` (the committed offset just read from the broker) until
    /// `now + timeout_ms`. Fails if someone holds a live lease.
    pub fn lease(
        &mut self,
        key: &QueueKey,
        offset: i64,
        now: i64,
        timeout_ms: i64,
        client_ip: Option<String>,
    ) -> Result<Lease, LeaseError> {
        let s = self.queues.get_mut(key).ok_or(LeaseError::UnknownQueue)?;
        if s.leased_at(now) {
            return Err(LeaseError::Busy);
        }
        // Unique and increasing even within one millisecond or after a clock step back.
        let lock_time = now.max(s.last_lock_time + 1);
        s.last_lock_time = lock_time;
        s.committed = Some(offset);
        s.held_elsewhere_until = None;
        let lease = Lease {
            lock_time,
            offset,
            next_offset: None,
            expires_at: now + timeout_ms,
            committing: false,
            client_ip: client_ip.clone(),
        };
        s.lease = Some(lease.clone());
        s.last_client_ip = client_ip;
        Ok(lease)
    }

    /// Sets the lease's first offset (and the committed offset) once the broker's committed
    /// offset was read under the lease. Reading it before leasing could see an offset another
    /// request of this instance commits a moment later, and serve that batch twice.
    pub fn rebase_lease(&mut self, key: &QueueKey, lock_time: i64, offset: i64) -> bool {
        match self.queues.get_mut(key) {
            Some(s) => match s.lease.as_mut().filter(|l| l.lock_time == lock_time) {
                Some(l) => {
                    l.offset = offset;
                    s.committed = Some(offset);
                    true
                }
                None => false,
            },
            None => false,
        }
    }

    /// Records what the pull under `lock_time` returned.
    pub fn record_pull(
        &mut self,
        key: &QueueKey,
        lock_time: i64,
        next_offset: i64,
        max_offset: i64,
        found: bool,
        now: i64,
    ) {
        if let Some(s) = self.queues.get_mut(key) {
            s.max_offset = s.max_offset.max(max_offset);
            s.last_consume_ms = Some(now);
            s.empty_at = if found { None } else { Some(now) };
            if let Some(l) = s.lease.as_mut().filter(|l| l.lock_time == lock_time) {
                l.next_offset = Some(next_offset);
            }
        }
    }

    /// Ends a lease without committing (unlock, or a pull that found nothing). Returns whether
    /// `lock_time` named the current lease.
    pub fn release(&mut self, key: &QueueKey, lock_time: i64) -> bool {
        match self.queues.get_mut(key) {
            Some(s)
                if s.lease
                    .as_ref()
                    .is_some_and(|l| l.lock_time == lock_time && !l.committing) =>
            {
                s.lease = None;
                true
            }
            _ => false,
        }
    }

    /// Judges an ack. On `Commit` the lease is held (marked committing) until `finish_commit`.
    pub fn ack(&mut self, key: &QueueKey, t: &AckToken) -> AckOutcome {
        let Some(s) = self.queues.get_mut(key) else {
            return AckOutcome::LockNotExist;
        };
        let Some(lease) = s.lease.as_mut() else {
            return AckOutcome::LockNotExist;
        };
        if lease.lock_time != t.lock_time {
            return AckOutcome::Stale {
                current_lock_time: lease.lock_time,
            };
        }
        if lease.committing {
            return AckOutcome::LockNotExist;
        }
        if !t.force && s.committed != Some(t.offset) {
            return AckOutcome::OffsetMoved {
                committed: s.committed,
            };
        }
        // The pull recorded where the batch ends; a requestId claiming more is refused.
        if let Some(n) = lease.next_offset {
            if n != t.next_offset {
                return AckOutcome::Mismatch { expected: n };
            }
        }
        let from = s.committed.unwrap_or(t.offset);
        if !t.force && t.next_offset <= from {
            s.lease = None;
            return AckOutcome::Released;
        }
        lease.committing = true;
        AckOutcome::Commit {
            from,
            to: t.next_offset,
        }
    }

    /// After the broker write of an ack: on success the offset moves and the lease ends; on
    /// failure the lease stays until its deadline, so the batch comes again.
    pub fn finish_commit(&mut self, key: &QueueKey, lock_time: i64, to: i64, ok: bool) {
        if let Some(s) = self.queues.get_mut(key) {
            if let Some(l) = s.lease.as_mut().filter(|l| l.lock_time == lock_time) {
                l.committing = false;
                if ok {
                    s.committed = Some(to);
                    s.lease = None;
                }
            }
        }
    }

    /// Leases whose batch was committed by someone else (an ack that reached another gateway
    /// instance): with the broker's committed offset at or past the batch's end, the lease
    /// ends. Returns the queues released.
    pub fn settle_committed_elsewhere(&mut self, key: &QueueKey, broker_committed: i64) -> bool {
        let Some(s) = self.queues.get_mut(key) else {
            return false;
        };
        let done = s.lease.as_ref().is_some_and(|l| {
            !l.committing
                && l.next_offset
                    .is_some_and(|n| n > l.offset && broker_committed >= n)
        });
        if done {
            s.lease = None;
            s.committed = Some(broker_committed);
        }
        done
    }

    /// Leases older than `min_age_ms` that hold a pulled batch: (queue, lock_time).
    pub fn pending_batches(&self, now: i64, min_age_ms: i64, timeout_ms: i64) -> Vec<QueueKey> {
        self.queues
            .iter()
            .filter(|(_, s)| {
                s.lease.as_ref().is_some_and(|l| {
                    !l.committing
                        && l.next_offset.is_some()
                        && l.expires_at > now
                        && now - (l.expires_at - timeout_ms) >= min_age_ms
                })
            })
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Sets the committed offset outside any lease (offset reset, OFFSET_ILLEGAL correction).
    pub fn set_committed(&mut self, key: &QueueKey, offset: i64) {
        if let Some(s) = self.queues.get_mut(key) {
            s.committed = Some(offset);
        }
    }

    pub fn mark_held_elsewhere(&mut self, key: &QueueKey, until: i64) {
        if let Some(s) = self.queues.get_mut(key) {
            s.held_elsewhere_until = Some(until);
        }
    }

    /// Queues whose lease timed out at `now` (for logs and metrics); they are leasable again.
    pub fn expired(&self, now: i64) -> Vec<QueueKey> {
        self.queues
            .iter()
            .filter(|(_, s)| {
                s.lease
                    .as_ref()
                    .is_some_and(|l| !l.committing && l.expires_at <= now)
            })
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// When the next lease times out, if any.
    pub fn next_deadline(&self, now: i64) -> Option<i64> {
        self.queues
            .values()
            .filter_map(|s| s.lease.as_ref())
            .map(|l| l.expires_at)
            .filter(|&t| t > now)
            .min()
    }

    /// Queues with a live lease.
    pub fn leased(&self, now: i64) -> Vec<QueueKey> {
        self.queues
            .iter()
            .filter(|(_, s)| s.leased_at(now))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Ends every lease (offset reset): in-flight batches can no longer be acked.
    pub fn drop_leases(&mut self) {
        for s in self.queues.values_mut() {
            if s.lease.as_ref().is_some_and(|l| !l.committing) {
                s.lease = None;
            }
        }
    }

    /// A message was stored at `offset` (sent through this gateway): the queue has data.
    pub fn note_message(&mut self, key: &QueueKey, offset: i64) {
        if let Some(s) = self.queues.get_mut(key) {
            s.max_offset = s.max_offset.max(offset + 1);
            s.empty_at = None;
        }
    }

    pub fn set_max_offset(&mut self, key: &QueueKey, max: i64) {
        if let Some(s) = self.queues.get_mut(key) {
            s.max_offset = max;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(q: i32) -> QueueKey {
        QueueKey::new(false, "b", q)
    }

    fn table(n: i32) -> ScopeTable {
        let mut t = ScopeTable::new();
        t.set_queues((0..n).map(k), 0);
        t
    }

    const T: i64 = 300_000;

    #[test]
    fn lease_ack_commit() {
        let mut t = table(2);
        let l = t.lease(&k(0), 10, 1000, T, None).unwrap();
        assert_eq!(t.lease(&k(0), 10, 1001, T, None), Err(LeaseError::Busy));
        t.record_pull(&k(0), l.lock_time, 42, 50, true, 1001);
        let tok = AckToken {
            offset: 10,
            next_offset: 42,
            lock_time: l.lock_time,
            force: false,
        };
        assert_eq!(t.ack(&k(0), &tok), AckOutcome::Commit { from: 10, to: 42 });
        // while the broker write is in flight the queue is not leasable and a repeat ack waits
        assert!(t.candidates(1002, 0).iter().all(|q| *q != k(0)));
        assert_eq!(t.ack(&k(0), &tok), AckOutcome::LockNotExist);
        t.finish_commit(&k(0), l.lock_time, 42, true);
        assert_eq!(t.get(&k(0)).unwrap().committed, Some(42));
        assert!(t.get(&k(0)).unwrap().lease.is_none());
        // acking again is harmless
        assert_eq!(t.ack(&k(0), &tok), AckOutcome::LockNotExist);
    }

    #[test]
    fn failed_broker_write_keeps_the_lease_until_it_expires() {
        let mut t = table(1);
        let l = t.lease(&k(0), 0, 1000, T, None).unwrap();
        let tok = AckToken {
            offset: 0,
            next_offset: 5,
            lock_time: l.lock_time,
            force: false,
        };
        assert!(matches!(t.ack(&k(0), &tok), AckOutcome::Commit { .. }));
        t.finish_commit(&k(0), l.lock_time, 5, false);
        assert_eq!(t.get(&k(0)).unwrap().committed, Some(0));
        assert!(t.candidates(2000, 0).is_empty());
        assert_eq!(t.candidates(1000 + T, 0), vec![k(0)]);
    }

    #[test]
    fn expiry_redelivers_and_late_acks_are_stale() {
        let mut t = table(1);
        let first = t.lease(&k(0), 7, 1000, T, None).unwrap();
        t.record_pull(&k(0), first.lock_time, 9, 9, true, 1000);
        assert!(t.expired(1000 + T - 1).is_empty());
        assert_eq!(t.expired(1000 + T), vec![k(0)]);
        assert_eq!(t.next_deadline(1000), Some(1000 + T));
        // a second consumer leases the queue again, from the same committed offset
        let second = t.lease(&k(0), 7, 1000 + T, T, None).unwrap();
        assert_eq!(second.offset, 7);
        assert!(second.lock_time > first.lock_time);
        let late = AckToken {
            offset: 7,
            next_offset: 9,
            lock_time: first.lock_time,
            force: false,
        };
        assert_eq!(
            t.ack(&k(0), &late),
            AckOutcome::Stale {
                current_lock_time: second.lock_time
            }
        );
        assert_eq!(t.get(&k(0)).unwrap().committed, Some(7));
    }

    #[test]
    fn an_expired_but_unclaimed_lease_can_still_be_acked() {
        let mut t = table(1);
        let l = t.lease(&k(0), 3, 1000, T, None).unwrap();
        let tok = AckToken {
            offset: 3,
            next_offset: 6,
            lock_time: l.lock_time,
            force: false,
        };
        assert_eq!(t.ack(&k(0), &tok), AckOutcome::Commit { from: 3, to: 6 });
    }

    #[test]
    fn moved_offsets_and_forced_acks() {
        let mut t = table(1);
        let l = t.lease(&k(0), 3, 1000, T, None).unwrap();
        t.set_committed(&k(0), 5);
        let tok = AckToken {
            offset: 3,
            next_offset: 6,
            lock_time: l.lock_time,
            force: false,
        };
        assert_eq!(
            t.ack(&k(0), &tok),
            AckOutcome::OffsetMoved { committed: Some(5) }
        );
        let forced = AckToken { force: true, ..tok };
        assert_eq!(t.ack(&k(0), &forced), AckOutcome::Commit { from: 5, to: 6 });
    }

    #[test]
    fn rebase_sets_the_batch_start_under_the_lease() {
        let mut t = table(1);
        let l = t.lease(&k(0), 0, 1000, T, None).unwrap();
        assert!(t.rebase_lease(&k(0), l.lock_time, 20));
        assert!(!t.rebase_lease(&k(0), l.lock_time + 1, 30));
        let tok = AckToken {
            offset: 20,
            next_offset: 25,
            lock_time: l.lock_time,
            force: false,
        };
        assert_eq!(t.ack(&k(0), &tok), AckOutcome::Commit { from: 20, to: 25 });
    }

    #[test]
    fn altered_batch_ends_are_refused() {
        let mut t = table(1);
        let l = t.lease(&k(0), 0, 1000, T, None).unwrap();
        t.record_pull(&k(0), l.lock_time, 5, 5, true, 1000);
        let tok = AckToken {
            offset: 0,
            next_offset: 500,
            lock_time: l.lock_time,
            force: false,
        };
        assert_eq!(t.ack(&k(0), &tok), AckOutcome::Mismatch { expected: 5 });
        assert_eq!(t.get(&k(0)).unwrap().committed, Some(0));
    }

    #[test]
    fn a_batch_committed_elsewhere_ends_the_lease() {
        let mut t = table(1);
        let l = t.lease(&k(0), 10, 1000, T, None).unwrap();
        t.record_pull(&k(0), l.lock_time, 15, 15, true, 1000);
        assert!(t.pending_batches(1500, 1000, T).is_empty());
        assert_eq!(t.pending_batches(2000, 1000, T), vec![k(0)]);
        assert!(!t.settle_committed_elsewhere(&k(0), 10));
        assert!(t.settle_committed_elsewhere(&k(0), 15));
        assert_eq!(t.get(&k(0)).unwrap().committed, Some(15));
        assert_eq!(t.candidates(2001, 0), vec![k(0)]);
    }

    #[test]
    fn empty_batches_release() {
        let mut t = table(1);
        let l = t.lease(&k(0), 3, 1000, T, None).unwrap();
        let tok = AckToken {
            offset: 3,
            next_offset: 3,
            lock_time: l.lock_time,
            force: false,
        };
        assert_eq!(t.ack(&k(0), &tok), AckOutcome::Released);
        assert!(t.get(&k(0)).unwrap().lease.is_none());
    }

    #[test]
    fn unlock_only_with_the_right_token() {
        let mut t = table(1);
        let l = t.lease(&k(0), 0, 1000, T, None).unwrap();
        assert!(!t.release(&k(0), l.lock_time - 1));
        assert!(t.release(&k(0), l.lock_time));
        assert_eq!(t.get(&k(0)).unwrap().committed, Some(0));
        assert_eq!(t.candidates(1001, 0), vec![k(0)]);
    }

    #[test]
    fn lock_times_are_unique_within_a_millisecond() {
        let mut t = table(1);
        let a = t.lease(&k(0), 0, 1000, T, None).unwrap();
        t.release(&k(0), a.lock_time);
        let b = t.lease(&k(0), 0, 1000, T, None).unwrap();
        t.release(&k(0), b.lock_time);
        let c = t.lease(&k(0), 0, 900, T, None).unwrap(); // clock stepped back
        assert!(a.lock_time < b.lock_time && b.lock_time < c.lock_time);
    }

    #[test]
    fn candidates_by_backlog_then_last_consume() {
        let mut t = table(4);
        for (q, committed, max) in [(0, 0, 5), (1, 0, 50), (2, 0, 5), (3, 10, 10)] {
            t.set_committed(&k(q), committed);
            t.set_max_offset(&k(q), max);
        }
        let l = t.lease(&k(0), 0, 100, T, None).unwrap();
        t.record_pull(&k(0), l.lock_time, 0, 5, true, 100);
        t.release(&k(0), l.lock_time);
        assert_eq!(t.candidates(200, 0), vec![k(1), k(2), k(0), k(3)]);
        // a queue found empty a moment ago goes last
        let l = t.lease(&k(1), 0, 200, T, None).unwrap();
        t.record_pull(&k(1), l.lock_time, 0, 0, false, 200);
        t.release(&k(1), l.lock_time);
        t.set_max_offset(&k(1), 0);
        assert_eq!(t.candidates(250, 1000).last(), Some(&k(1)));
        // held by another instance: skipped until the mark passes
        t.mark_held_elsewhere(&k(2), 500);
        assert!(!t.candidates(300, 0).contains(&k(2)));
        assert!(t.candidates(500, 0).contains(&k(2)));
    }

    #[test]
    fn route_changes_keep_leased_queues() {
        let mut t = table(2);
        let _ = t.lease(&k(1), 0, 100, T, None).unwrap();
        t.set_queues([k(0)], 200);
        assert!(t.get(&k(1)).is_some(), "leased queue kept for its ack");
        t.set_queues([k(0)], 100 + T);
        assert!(t.get(&k(1)).is_none());
    }
}
