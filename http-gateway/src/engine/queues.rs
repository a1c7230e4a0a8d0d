//! The queue table of one scope: per queue the committed offset, the delivery cursor, the
//! messages in flight (per-message receipts) and the claim of a pull under way. See the module
//! documentation of [`crate::engine`] for the model.

use std::collections::BTreeMap;

/// A queue of a scope: the consumer's topic, or its `%RETRY%` topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueKey {
    /// Whether this is the `%RETRY%<group>` topic rather than the consumer's topic.
    pub retry: bool,
    /// The broker holding the queue (a route's brokerName).
    pub broker_name: String,
    /// The queue's number on that broker.
    pub queue_id: i32,
}

impl QueueKey {
    /// The key of queue `queue_id` on `broker_name`, of the retry topic if `retry`.
    pub fn new(retry: bool, broker_name: impl Into<String>, queue_id: i32) -> Self {
        QueueKey {
            retry,
            broker_name: broker_name.into(),
            queue_id,
        }
    }
}

/// Names one delivery (one hand-out of messages from a queue): unique and increasing per queue,
/// derived from the time it began (MQ-Proxy's `lockTime`).
pub type DeliveryId = i64;

/// How a scope's queues hand out messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueMode {
    /// One delivery per queue at a time; nothing new is handed out from a queue until the
    /// previous delivery is all acked (or its deadline passed). MQ-Proxy's batches, Aliyun's
    /// ordered consumption.
    Exclusive,
    /// Deliveries of one queue overlap; each message is invisible until its own deadline.
    Shared,
}

/// Proof of one delivery of one message: the only thing that can ack it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Receipt {
    /// The queue the message was pulled from.
    pub queue: QueueKey,
    /// The message's offset in that queue.
    pub offset: i64,
    /// The delivery that handed it out; a later delivery of the same message makes this
    /// receipt stale.
    pub delivery: DeliveryId,
}

/// A message handed out and not yet committed past.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InFlight {
    /// The delivery that last handed it out (its receipts are the current ones).
    pub delivery: DeliveryId,
    /// Invisible until then; handed out again after it (unless acked).
    pub deadline: i64,
    /// How many times it was handed out (1 the first time).
    pub count: u32,
    /// Acked; stays here until the committed offset passes it.
    pub acked: bool,
    /// When this instance first handed it out (Aliyun's `FirstConsumeTime`).
    pub first: i64,
}

/// One hand-out of messages from a queue, kept while any of its messages is in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Its id; the messages it handed out name it in [`InFlight::delivery`].
    pub id: DeliveryId,
    /// The offset the pull began at.
    pub from: i64,
    /// Where the pull ended (the broker's nextBeginOffset).
    pub end: i64,
    /// When the claim began (ms since the epoch), for the lease's age.
    pub started: i64,
    /// When its messages become visible again (ms since the epoch).
    pub deadline: i64,
    /// The client that fetched it, shown in queue views.
    pub client_ip: Option<String>,
}

/// A queue reserved for one pull that is under way (the I/O happens outside).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The delivery this pull becomes if it hands anything out.
    pub id: DeliveryId,
    /// Where to pull from: the lowest message to hand out again, else the cursor.
    pub from: i64,
    /// The broker's committed offset must be read first (see [`ScopeTable::rebase`]).
    pub needs_offset: bool,
    /// When the claim began (ms since the epoch).
    pub started: i64,
    /// The deadline of the messages this pull hands out; the claim itself lapses then too, so a
    /// pull abandoned halfway (a dropped request) cannot hold the queue forever.
    pub deadline: i64,
    /// The client fetching, recorded on the delivery.
    pub client_ip: Option<String>,
}

/// A message a pull hands out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handed {
    /// The receipt the consumer acks it with.
    pub receipt: Receipt,
    /// How many times it has been handed out, this time included (1 the first time).
    pub count: u32,
    /// Invisible until then (ms since the epoch).
    pub deadline: i64,
    /// When it was first handed out.
    pub first: i64,
}

/// What a pull hands out, and the messages handed out too often already.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullOutcome {
    /// The messages to return to the consumer, in the order pulled.
    pub handed: Vec<Handed>,
    /// Over the maximum delivery count: in flight under this delivery, for the driver to send to
    /// the dead-letter queue and then ack. If it does not, they come back at the deadline.
    pub exhausted: Vec<Handed>,
}

impl PullOutcome {
    /// Whether anything came back at all, to hand out or to dead-letter (an empty pull marks the
    /// queue empty for a while).
    pub fn found(&self) -> bool {
        !self.handed.is_empty() || !self.exhausted.is_empty()
    }
}

/// The state of one queue of a scope; see the module documentation of [`crate::engine`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueState {
    /// Committed offset as last read from or written to the broker; `None` until known.
    pub committed: Option<i64>,
    /// Max offset last seen (one past the last message).
    pub max_offset: i64,
    /// The first offset never handed out; `None` until known.
    pub cursor: Option<i64>,
    /// The pull under way, if any; it lapses at its deadline.
    pub claim: Option<Claim>,
    /// Messages handed out and not yet committed past, by offset.
    pub in_flight: BTreeMap<i64, InFlight>,
    /// Open deliveries: those with a message in flight, by id.
    pub deliveries: BTreeMap<DeliveryId, Delivery>,
    /// An offset being written to the broker.
    pub committing: Option<i64>,
    /// The newest delivery still open (the current lease in exclusive mode).
    pub latest: Option<DeliveryId>,
    /// When a message of this queue was last handed out (ms since the epoch), for queue views and
    /// to rotate between queues of equal backlog.
    pub last_consume_ms: Option<i64>,
    /// The client the last delivery went to, for queue views.
    pub last_client_ip: Option<String>,
    /// Another gateway instance holds the broker lock; do not try before this time.
    pub held_elsewhere_until: Option<i64>,
    /// The last pull found nothing at this time.
    pub empty_at: Option<i64>,
    /// The broker lock was lost (see [`ScopeTable::lose`]): deliveries up to this id were
    /// dropped, and their acks answer `Stale` instead of committing.
    pub lost_upto: Option<DeliveryId>,
    last_id: DeliveryId,
}

impl QueueState {
    /// Messages on the broker not yet committed past: `max_offset - committed`, or all of them
    /// while the committed offset is unknown. Never negative.
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

    /// The lease a requestId must name: the claim under way, else the newest open delivery.
    pub fn current(&self) -> Option<DeliveryId> {
        self.claim.as_ref().map(|c| c.id).or(self.latest)
    }

    fn invisible(&self, now: i64) -> bool {
        self.in_flight
            .values()
            .any(|m| !m.acked && m.deadline > now)
    }

    fn claimed(&self, now: i64) -> bool {
        self.claim.as_ref().is_some_and(|c| c.deadline > now)
    }

    /// Someone holds the queue: a pull or a commit under way, or (exclusive) messages out.
    fn busy(&self, now: i64, mode: QueueMode) -> bool {
        match mode {
            QueueMode::Exclusive => {
                self.claimed(now) || self.committing.is_some() || self.invisible(now)
            }
            QueueMode::Shared => self.claimed(now),
        }
    }

    /// The lowest offset not acked: the committed offset once written.
    fn lowest_unacked(&self) -> Option<i64> {
        let first = self
            .in_flight
            .iter()
            .find(|(_, m)| !m.acked)
            .map(|(o, _)| *o);
        match (first, self.cursor) {
            (Some(a), Some(c)) => Some(a.min(c)),
            (a, c) => a.or(c),
        }
    }

    /// Starts a commit if the lowest unacked offset moved past the committed one.
    fn next_commit(&mut self) -> Option<Commit> {
        if self.committing.is_some() {
            return None;
        }
        let to = self.lowest_unacked()?;
        let from = self.committed?;
        (to > from).then(|| {
            self.committing = Some(to);
            Commit { from, to }
        })
    }

    fn close_delivery(&mut self, id: DeliveryId) {
        self.deliveries.remove(&id);
        if self.latest == Some(id) {
            self.latest = None;
        }
    }

    /// Drops deliveries none of whose messages is in flight any more.
    fn prune_deliveries(&mut self) {
        let live: std::collections::BTreeSet<DeliveryId> =
            self.in_flight.values().map(|m| m.delivery).collect();
        let dead: Vec<DeliveryId> = self
            .deliveries
            .keys()
            .filter(|id| !live.contains(id))
            .copied()
            .collect();
        for id in dead {
            self.close_delivery(id);
        }
    }
}

/// What the caller asks a batch ack to do, decoded from a requestId.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckToken {
    /// The batch's first offset: the committed offset must still be here (unless `force`).
    pub offset: i64,
    /// Where the batch ends (the pull's nextBeginOffset): the offset to commit.
    pub next_offset: i64,
    /// The delivery the requestId names; must be the queue's current lease.
    pub lock_time: i64,
    /// After OFFSET_ILLEGAL the committed offset is overwritten whatever it was.
    pub force: bool,
}

/// Write `to` to the broker, then call [`ScopeTable::finish_commit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Commit {
    /// The committed offset the commit replaces.
    pub from: i64,
    /// The offset to write: the lowest offset not yet acked.
    pub to: i64,
}

/// The outcome of a batch ack (MQ-Proxy's requestId).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckOutcome {
    /// Write `to` to the broker, then call `finish_commit`.
    Commit {
        /// The committed offset the commit replaces.
        from: i64,
        /// The batch's end: the offset to write.
        to: i64,
    },
    /// The batch was empty; the lease is released.
    Released,
    /// No lease: already acked, unlocked, or this instance never served it.
    LockNotExist,
    /// The queue was leased again since (the ack came after the timeout and someone else
    /// holds it now); nothing moves.
    Stale {
        /// The lease the queue is under now.
        current_lock_time: i64,
    },
    /// The committed offset is no longer the batch's first offset.
    OffsetMoved {
        /// The committed offset now (`None` if unknown).
        committed: Option<i64>,
    },
    /// The token's batch end is not where the lease's pull ended (an altered requestId).
    Mismatch {
        /// Where the lease's pull ended.
        expected: i64,
    },
}

/// The outcome of acking one receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiptOutcome {
    /// Acked; the committed offset cannot move yet (an earlier message is out, or a commit is
    /// being written and another follows it).
    Acked,
    /// Acked; write the new committed offset.
    Commit(Commit),
    /// Not in flight: acked already, committed past, or never handed out.
    Unknown,
    /// The message was handed out again since, under a newer receipt.
    Stale {
        /// The delivery whose receipt is current.
        current: DeliveryId,
    },
    /// The deadline passed: the message is visible again and will be handed out again.
    Expired,
}

/// Why a queue cannot be claimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseError {
    /// The scope has no such queue (not in the route, or not loaded yet).
    UnknownQueue,
    /// Someone holds the queue now (see [`QueueMode`]): try another queue or later.
    Busy,
}

/// The queue table of one scope: claims, deliveries, acks and commits of all its queues; see
/// the module documentation of [`crate::engine`].
#[derive(Debug)]
pub struct ScopeTable {
    mode: QueueMode,
    queues: BTreeMap<QueueKey, QueueState>,
    counters: DeliveryCounters,
}

/// Messages a scope handed out and took back since it was created, for metrics: plain counts
/// kept under the scope's lock, read by scrapes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryCounters {
    /// Messages handed out, first deliveries and redeliveries alike.
    pub delivered: u64,
    /// Of those, messages handed out again because their deadline passed unacked.
    pub redelivered: u64,
    /// Messages acked (one receipt, or every message of an acked batch).
    pub acked: u64,
    /// Messages over `max_deliveries`, handed to the driver to dead-letter.
    pub dead_lettered: u64,
}

impl Default for ScopeTable {
    fn default() -> Self {
        Self::new(QueueMode::Exclusive)
    }
}

impl ScopeTable {
    /// An empty table whose queues hand out messages in `mode`.
    pub fn new(mode: QueueMode) -> Self {
        ScopeTable {
            mode,
            queues: BTreeMap::new(),
            counters: DeliveryCounters::default(),
        }
    }

    /// What this table handed out and took back so far.
    pub fn counters(&self) -> DeliveryCounters {
        self.counters
    }

    /// How this table's queues hand out messages.
    pub fn mode(&self) -> QueueMode {
        self.mode
    }

    /// Replaces the queue set (from the current route). New queues start unknown; vanished
    /// queues are kept while messages of them are out, so they can still be acked.
    pub fn set_queues(&mut self, keys: impl IntoIterator<Item = QueueKey>, now: i64) {
        let keys: Vec<QueueKey> = keys.into_iter().collect();
        let mode = self.mode;
        self.queues
            .retain(|k, s| keys.contains(k) || s.busy(now, mode) || s.invisible(now));
        for k in keys {
            self.queues.entry(k).or_default();
        }
    }

    /// The state of one queue, if the scope has it.
    pub fn get(&self, key: &QueueKey) -> Option<&QueueState> {
        self.queues.get(key)
    }

    /// All queues with their state, in key order.
    pub fn queues(&self) -> impl Iterator<Item = (&QueueKey, &QueueState)> {
        self.queues.iter()
    }

    /// Queues that can be claimed now, best first: largest backlog, then least recently
    /// consumed, and queues found empty within `empty_backoff_ms` last.
    pub fn candidates(&self, now: i64, empty_backoff_ms: i64) -> Vec<QueueKey> {
        let mode = self.mode;
        let mut c: Vec<(&QueueKey, &QueueState)> = self
            .queues
            .iter()
            .filter(|(_, s)| !s.busy(now, mode))
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

    /// Reserves `key` for one pull; the messages it hands out stay invisible until
    /// `now + timeout_ms`. Fails if the queue is busy (see [`QueueMode`]).
    pub fn begin(
        &mut self,
        key: &QueueKey,
        now: i64,
        timeout_ms: i64,
        client_ip: Option<String>,
    ) -> Result<Claim, LeaseError> {
        let mode = self.mode;
        let s = self.queues.get_mut(key).ok_or(LeaseError::UnknownQueue)?;
        if s.busy(now, mode) {
            return Err(LeaseError::Busy);
        }
        // Unique and increasing even within one millisecond or after a clock step back.
        let id = now.max(s.last_id + 1);
        s.last_id = id;
        if mode == QueueMode::Exclusive {
            // The previous delivery timed out: its requestId is stale from now on; its messages
            // keep their delivery counts and are handed out again by this pull.
            let old: Vec<DeliveryId> = s.deliveries.keys().copied().collect();
            for d in old {
                s.close_delivery(d);
            }
        }
        let visible = s
            .in_flight
            .iter()
            .find(|(_, m)| !m.acked && m.deadline <= now)
            .map(|(o, _)| *o);
        let from = visible.or(s.cursor).or(s.committed).unwrap_or(0);
        s.held_elsewhere_until = None;
        s.last_client_ip = client_ip.clone();
        let claim = Claim {
            id,
            from,
            needs_offset: mode == QueueMode::Exclusive || s.cursor.is_none(),
            started: now,
            deadline: now + timeout_ms,
            client_ip,
        };
        s.claim = Some(claim.clone());
        Ok(claim)
    }

    /// Sets where the claim's pull starts: the broker's committed offset, read under the claim
    /// (reading it before could see an offset another request of this instance commits a
    /// moment later, and serve that batch twice). Messages below it were committed (possibly by
    /// another instance) and leave the table.
    pub fn rebase(&mut self, key: &QueueKey, id: DeliveryId, offset: i64) -> bool {
        let Some(s) = self.queues.get_mut(key) else {
            return false;
        };
        let Some(c) = s.claim.as_mut().filter(|c| c.id == id) else {
            return false;
        };
        c.from = offset;
        s.committed = Some(offset);
        s.in_flight.retain(|o, _| *o >= offset);
        s.cursor = Some(offset);
        s.prune_deliveries();
        true
    }

    /// Records what the claim's pull returned: the offsets of the messages pulled, the
    /// broker's next and max offsets. Hands out the messages that are new or due again; with
    /// any, the claim becomes a delivery. With none the claim stays for [`Self::release`].
    #[allow(clippy::too_many_arguments)]
    pub fn record_pull(
        &mut self,
        key: &QueueKey,
        id: DeliveryId,
        pulled: &[i64],
        next_offset: i64,
        max_offset: i64,
        now: i64,
        max_deliveries: Option<u32>,
    ) -> PullOutcome {
        let mut out = PullOutcome::default();
        let Some(s) = self.queues.get_mut(key) else {
            return out;
        };
        s.max_offset = s.max_offset.max(max_offset);
        s.last_consume_ms = Some(now);
        let Some(claim) = s.claim.clone().filter(|c| c.id == id) else {
            s.empty_at = if pulled.is_empty() { Some(now) } else { None };
            return out;
        };
        let cursor = s.cursor.unwrap_or(claim.from);
        for &o in pulled {
            let (count, first) = match s.in_flight.get_mut(&o) {
                Some(m) if !m.acked && m.deadline <= now => {
                    m.count += 1;
                    m.delivery = id;
                    m.deadline = claim.deadline;
                    (m.count, m.first)
                }
                Some(_) => continue,
                None if o >= cursor => {
                    s.in_flight.insert(
                        o,
                        InFlight {
                            delivery: id,
                            deadline: claim.deadline,
                            count: 1,
                            acked: false,
                            first: now,
                        },
                    );
                    (1, now)
                }
                None => continue,
            };
            let h = Handed {
                receipt: Receipt {
                    queue: key.clone(),
                    offset: o,
                    delivery: id,
                },
                count,
                deadline: claim.deadline,
                first,
            };
            if max_deliveries.is_some_and(|max| count > max) {
                out.exhausted.push(h);
            } else {
                out.handed.push(h);
            }
        }
        s.cursor = Some(cursor.max(next_offset));
        s.empty_at = if out.found() { None } else { Some(now) };
        let c = &mut self.counters;
        c.delivered += out.handed.len() as u64;
        c.redelivered += out.handed.iter().filter(|h| h.count > 1).count() as u64;
        c.dead_lettered += out.exhausted.len() as u64;
        if out.found() {
            s.claim = None;
            s.deliveries.insert(
                id,
                Delivery {
                    id,
                    from: claim.from,
                    end: next_offset,
                    started: claim.started,
                    deadline: claim.deadline,
                    client_ip: claim.client_ip,
                },
            );
            s.latest = Some(id);
        }
        out
    }

    /// Ends a claim, or a delivery without acking it (MQ-Proxy's unlock): its messages are
    /// visible again at once. Returns whether `id` named the current one.
    pub fn release(&mut self, key: &QueueKey, id: DeliveryId) -> bool {
        let Some(s) = self.queues.get_mut(key) else {
            return false;
        };
        if s.committing.is_some() {
            return false;
        }
        if s.claim.as_ref().is_some_and(|c| c.id == id) {
            s.claim = None;
            return true;
        }
        if s.latest == Some(id) {
            for m in s.in_flight.values_mut() {
                if m.delivery == id && !m.acked {
                    m.deadline = i64::MIN;
                }
            }
            s.close_delivery(id);
            return true;
        }
        false
    }

    /// MQ-Proxy's ack of a whole batch: every receipt of the delivery the token names. On
    /// `Commit` the queue stays held until `finish_commit`.
    pub fn ack_batch(&mut self, key: &QueueKey, t: &AckToken) -> AckOutcome {
        let Some(s) = self.queues.get_mut(key) else {
            return AckOutcome::LockNotExist;
        };
        // A delivery made under a broker lock this instance has since lost: another instance
        // may be serving (and committing) the queue now, so this ack must not move the offset.
        if let Some(lost) = s.lost_upto.filter(|l| t.lock_time <= *l) {
            return AckOutcome::Stale {
                current_lock_time: s.current().unwrap_or(lost + 1).max(lost + 1),
            };
        }
        let Some(current) = s.current() else {
            return AckOutcome::LockNotExist;
        };
        if current != t.lock_time {
            return AckOutcome::Stale {
                current_lock_time: current,
            };
        }
        if s.committing.is_some() {
            return AckOutcome::LockNotExist;
        }
        if !t.force && s.committed != Some(t.offset) {
            return AckOutcome::OffsetMoved {
                committed: s.committed,
            };
        }
        // The pull recorded where the batch ends; a requestId claiming more is refused.
        if let Some(d) = s.deliveries.get(&current) {
            if d.end != t.next_offset {
                return AckOutcome::Mismatch { expected: d.end };
            }
        }
        let from = s.committed.unwrap_or(t.offset);
        if !t.force && t.next_offset <= from {
            self.release(key, current);
            return AckOutcome::Released;
        }
        let Some(s) = self.queues.get_mut(key) else {
            return AckOutcome::LockNotExist;
        };
        let mut acked = 0;
        for m in s.in_flight.values_mut() {
            if m.delivery == current && !m.acked {
                m.acked = true;
                acked += 1;
            }
        }
        self.counters.acked += acked;
        s.committing = Some(t.next_offset);
        AckOutcome::Commit {
            from,
            to: t.next_offset,
        }
    }

    /// Acks one message. An expired receipt does not ack: the message is visible again.
    pub fn ack(&mut self, r: &Receipt, now: i64) -> ReceiptOutcome {
        let Some(s) = self.queues.get_mut(&r.queue) else {
            return ReceiptOutcome::Unknown;
        };
        if let Some(lost) = s.lost_upto.filter(|l| r.delivery <= *l) {
            return ReceiptOutcome::Stale {
                current: s.latest.unwrap_or(lost + 1).max(lost + 1),
            };
        }
        let Some(m) = s.in_flight.get_mut(&r.offset) else {
            return ReceiptOutcome::Unknown;
        };
        if m.delivery != r.delivery {
            return ReceiptOutcome::Stale {
                current: m.delivery,
            };
        }
        if m.acked {
            return ReceiptOutcome::Unknown;
        }
        if m.deadline <= now {
            return ReceiptOutcome::Expired;
        }
        m.acked = true;
        self.counters.acked += 1;
        match s.next_commit() {
            Some(c) => ReceiptOutcome::Commit(c),
            None => ReceiptOutcome::Acked,
        }
    }

    /// Moves one message's deadline (Aliyun's ChangeMessageVisibility); the old receipt stops
    /// working and the returned one replaces it.
    pub fn change_deadline(
        &mut self,
        r: &Receipt,
        now: i64,
        deadline: i64,
    ) -> Result<Receipt, ReceiptOutcome> {
        let s = self
            .queues
            .get_mut(&r.queue)
            .ok_or(ReceiptOutcome::Unknown)?;
        let id = now.max(s.last_id + 1);
        let m = s
            .in_flight
            .get_mut(&r.offset)
            .ok_or(ReceiptOutcome::Unknown)?;
        if m.delivery != r.delivery {
            return Err(ReceiptOutcome::Stale {
                current: m.delivery,
            });
        }
        if m.acked {
            return Err(ReceiptOutcome::Unknown);
        }
        if m.deadline <= now {
            return Err(ReceiptOutcome::Expired);
        }
        m.delivery = id;
        m.deadline = deadline;
        s.last_id = id;
        Ok(Receipt {
            queue: r.queue.clone(),
            offset: r.offset,
            delivery: id,
        })
    }

    /// After the broker write of a commit: on success the committed offset moves and the
    /// messages below it leave; on failure the acks are undone, so the messages come again at
    /// their deadline. Returns the next commit to write, if acks arrived meanwhile.
    pub fn finish_commit(&mut self, key: &QueueKey, to: i64, ok: bool) -> Option<Commit> {
        let mode = self.mode;
        let s = self.queues.get_mut(key)?;
        s.committing = None;
        if ok {
            s.committed = Some(to);
            match mode {
                // A batch ack commits the whole delivery (also a forced one, wherever it ends).
                QueueMode::Exclusive => {
                    s.in_flight.retain(|o, m| *o >= to && !m.acked);
                    s.cursor = Some(s.cursor.unwrap_or(to).max(to));
                    s.claim = None;
                }
                QueueMode::Shared => {
                    s.in_flight.retain(|o, _| *o >= to);
                    s.cursor = Some(s.cursor.unwrap_or(to).max(to));
                }
            }
            s.prune_deliveries();
            s.next_commit()
        } else {
            for (_, m) in s.in_flight.range_mut(..to) {
                m.acked = false;
            }
            None
        }
    }

    /// Closes the current delivery if another instance committed past its end (an ack that
    /// reached another gateway instance), so the queue does not wait for the deadline.
    pub fn settle_committed_elsewhere(&mut self, key: &QueueKey, broker_committed: i64) -> bool {
        let Some(s) = self.queues.get_mut(key) else {
            return false;
        };
        if s.committing.is_some() {
            return false;
        }
        let Some(d) = s.latest.and_then(|id| s.deliveries.get(&id)) else {
            return false;
        };
        if !(d.end > d.from && broker_committed >= d.end) {
            return false;
        }
        s.in_flight.retain(|o, _| *o >= broker_committed);
        s.committed = Some(broker_committed);
        s.cursor = Some(s.cursor.unwrap_or(broker_committed).max(broker_committed));
        s.prune_deliveries();
        if let Some(id) = s.latest {
            s.close_delivery(id);
        }
        true
    }

    /// Queues whose open delivery is older than `min_age_ms` and not due yet.
    pub fn pending_batches(&self, now: i64, min_age_ms: i64) -> Vec<QueueKey> {
        self.queues
            .iter()
            .filter(|(_, s)| {
                s.committing.is_none()
                    && s.latest
                        .and_then(|id| s.deliveries.get(&id))
                        .is_some_and(|d| d.deadline > now && now - d.started >= min_age_ms)
            })
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Sets the committed offset outside any delivery (offset reset, OFFSET_ILLEGAL correction).
    pub fn set_committed(&mut self, key: &QueueKey, offset: i64) {
        if let Some(s) = self.queues.get_mut(key) {
            s.committed = Some(offset);
            if s.in_flight.is_empty() && s.cursor.is_some() {
                s.cursor = Some(offset);
            }
        }
    }

    /// Another gateway instance holds the queue's broker lock: skip it in [`Self::candidates`]
    /// until `until` (ms since the epoch).
    pub fn mark_held_elsewhere(&mut self, key: &QueueKey, until: i64) {
        if let Some(s) = self.queues.get_mut(key) {
            s.held_elsewhere_until = Some(until);
        }
    }

    /// Queues with messages whose deadline passed, unacked (for logs and metrics).
    pub fn expired(&self, now: i64) -> Vec<QueueKey> {
        self.queues
            .iter()
            .filter(|(_, s)| {
                s.committing.is_none()
                    && s.in_flight
                        .values()
                        .any(|m| !m.acked && m.deadline <= now && m.deadline != i64::MIN)
            })
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// When the next message becomes visible again, if any.
    pub fn next_deadline(&self, now: i64) -> Option<i64> {
        self.queues
            .values()
            .flat_map(|s| s.in_flight.values().filter(|m| !m.acked))
            .map(|m| m.deadline)
            .filter(|&t| t > now)
            .min()
    }

    /// Queues somebody holds: a pull or a commit under way, or messages out.
    pub fn leased(&self, now: i64) -> Vec<QueueKey> {
        self.queues
            .iter()
            .filter(|(_, s)| s.claimed(now) || s.committing.is_some() || s.invisible(now))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Forgets everything in flight (offset reset): receipts and requestIds handed out can no
    /// longer ack. Queues with a commit being written keep it.
    pub fn drop_leases(&mut self) {
        for s in self.queues.values_mut() {
            if s.committing.is_none() {
                s.claim = None;
                s.in_flight.clear();
                s.deliveries.clear();
                s.latest = None;
                s.cursor = None;
            }
        }
    }

    /// The broker lock of `key` is gone (another instance holds it, or it may: a renewal was
    /// refused, or this instance could not renew it in time). Everything handed out from the
    /// queue is dropped, acks of those deliveries answer `Stale` from now on, and the next claim
    /// reads the committed offset again. A commit already being written stays (it cannot be
    /// called back). Returns whether anything was in flight.
    pub fn lose(&mut self, key: &QueueKey) -> bool {
        let Some(s) = self.queues.get_mut(key) else {
            return false;
        };
        let had = s.claim.is_some() || !s.in_flight.is_empty();
        s.lost_upto = Some(s.last_id);
        s.claim = None;
        s.in_flight.clear();
        s.deliveries.clear();
        s.latest = None;
        s.cursor = None;
        had
    }

    /// Whether another instance held one of the queues at the last attempt (until `now`).
    pub fn any_held_elsewhere(&self, now: i64) -> bool {
        self.queues
            .values()
            .any(|s| s.held_elsewhere_until.is_some_and(|t| t > now))
    }

    /// Forgets every "held by another instance" mark, so the queues are asked for at once (an
    /// instance left the group and its locks were released).
    pub fn clear_held_elsewhere(&mut self) {
        for s in self.queues.values_mut() {
            s.held_elsewhere_until = None;
        }
    }

    /// A message was stored at `offset` (sent through this gateway): the queue has data.
    pub fn note_message(&mut self, key: &QueueKey, offset: i64) {
        if let Some(s) = self.queues.get_mut(key) {
            s.max_offset = s.max_offset.max(offset + 1);
            s.empty_at = None;
        }
    }

    /// Sets the max offset read from the broker, so the backlog (and the choice of queue) is
    /// current.
    pub fn set_max_offset(&mut self, key: &QueueKey, max: i64) {
        if let Some(s) = self.queues.get_mut(key) {
            s.max_offset = max;
        }
    }
}
