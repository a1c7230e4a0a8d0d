//! The sans-IO engine: which messages of which queue are handed out to whom, until when, and
//! where the committed offset stands. No sockets, no clock, no async: every method takes the time
//! (`now`, milliseconds since the epoch) from its caller, and the caller (the driver) does the
//! broker I/O the engine asks for.
//!
//! # Model
//!
//! A *scope* ([`ScopeState`]) is one clustering group, or one clientId of a broadcast group. It
//! holds a queue table ([`ScopeTable`]), the broker locks of this instance ([`BrokerLocks`]) and
//! runtime settings ([`ScopeSettings`]: pause, rate limit, pull size, timeout, max deliveries).
//!
//! Per queue ([`QueueState`]) the table keeps the committed offset (mirrored from the broker),
//! the *cursor* (the first offset never handed out), and the messages *in flight*: per offset an
//! [`InFlight`] record with the delivery that handed it out, its invisibility deadline, its
//! delivery count, when it was first handed out, and whether it is acked. Receipt-based scopes
//! may bound how many messages of a queue are in flight ([`ScopeSettings::max_unacked`]).
//!
//! - A pull starts with a [`Claim`] ([`ScopeTable::begin`]): the queue is reserved while the
//!   driver talks to the broker. In exclusive mode the driver first reads the broker's committed
//!   offset and [`ScopeTable::rebase`]s on it (another instance may have moved it).
//! - [`ScopeTable::record_pull`] turns the pulled offsets into a *delivery* named by a
//!   [`DeliveryId`] (unique, increasing per queue; MQ-Proxy's `lockTime`). New offsets get
//!   delivery count 1; in-flight offsets whose deadline passed are handed out again with count+1
//!   under the new delivery; offsets in flight and invisible, or acked, are skipped. Each message
//!   handed out has a [`Receipt`] (queue, offset, delivery). Messages over
//!   [`ScopeSettings::max_deliveries`] come back as `exhausted` for the driver to dead-letter.
//! - [`ScopeTable::ack`] acks one receipt. A receipt of an earlier delivery of the same message
//!   is `Stale` and acks nothing; an expired one is `Expired`. The committed offset moves to the
//!   lowest unacked offset: when that passes the committed one, the ack returns a [`Commit`] for
//!   the driver to write; [`ScopeTable::finish_commit`] reports the write (one commit per queue at
//!   a time; acks meanwhile are folded into the next).
//! - [`ScopeTable::ack_batch`] is MQ-Proxy's requestId ack: every receipt of one delivery at
//!   once, with MQ-Proxy's checks and outcomes ([`AckOutcome`]).
//! - [`QueueMode::Exclusive`] (MQ-Proxy, Aliyun's ordered consumption): nothing new is handed out
//!   from a queue while a claim, a commit, or an invisible unacked message of it is out; a new
//!   claim supersedes the timed-out delivery (its requestId becomes stale) and hands its messages
//!   out again. [`QueueMode::Shared`] (Aliyun's default): deliveries of one queue overlap; only a
//!   claim under way holds the queue.
//! - A delivery's state lives in this instance's memory; the broker only learns committed
//!   offsets. After a restart everything above the committed offset is handed out again
//!   (at-least-once).
//!
//! Several instances: [`BrokerLocks`] says when a broker lock may be trusted without asking
//! (renewed recently, on the connection it was taken on), [`ScopeTable::lose`] drops what was
//! handed out from a queue whose lock went elsewhere (its acks answer stale), [`Members`] finds
//! instances that left the group so their locks can be released, and [`control`] is the
//! versioned settings document every instance applies exactly once.
//!
//! The driver picks queues with [`ScopeTable::candidates`] (largest backlog first, queues just
//! found empty last, queues another instance holds skipped) and fills a fetch across queues by
//! claiming several in turn.

pub mod control;
pub mod locks;
pub mod members;
pub mod queues;
pub mod rate;
pub mod scope;

pub use control::{kv_key, StoredSettings, KV_NAMESPACE};
pub use locks::{BrokerLocks, LockCheck, LockPlan, HELD_ELSEWHERE_MS};
pub use members::Members;
pub use queues::{
    AckOutcome, AckToken, Claim, Commit, Delivery, DeliveryCounters, DeliveryId, Handed, InFlight,
    LeaseError, PullOutcome, QueueKey, QueueMode, QueueState, Receipt, ReceiptOutcome, ScopeTable,
};
pub use rate::RateLimiter;
pub use scope::{Admission, ScopeSettings, ScopeState};

/// A queue just found empty is not pulled again before this long.
pub const EMPTY_BACKOFF_MS: i64 = 300;
/// The queue set is read from the route again after this long.
pub const QUEUE_REFRESH_MS: i64 = 30_000;

#[cfg(test)]
mod tests;
