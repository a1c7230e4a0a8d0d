//! One consumer scope's state in one place: its queue table, its broker locks and its runtime
//! settings (pause, rate limit, pull size, timeout, resends).

use std::collections::VecDeque;

use super::locks::BrokerLocks;
use super::queues::{QueueMode, ScopeTable};
use super::rate::RateLimiter;

/// Runtime settings of a scope, changed through `/mq/consumer/config`. The instance that gets
/// the call stores them in the name servers' KV table and every instance applies them from
/// there ([`super::control`]).
#[derive(Debug, Clone)]
pub struct ScopeSettings {
    /// Hand out nothing (fetches answer `PAUSED`) until resumed.
    pub paused: bool,
    /// Most messages one pull asks a queue for.
    pub max_pull_size: u32,
    /// How long a handed-out message stays invisible, in ms.
    pub consume_timeout_ms: u64,
    /// The consume rate limit (messages per second); `None` is unlimited.
    pub rate: Option<RateLimiter>,
    /// Unique keys of messages to hand out again in `retryMsgList` (MQCloud's resend).
    pub resend: VecDeque<String>,
    /// A message handed out more often than this goes to the dead-letter queue instead.
    pub max_deliveries: Option<u32>,
    /// Messages of one queue in flight (handed out, not yet committed past) beyond which no new
    /// ones are pulled from it (like the Java client's `consumeConcurrentlyMaxSpan`), so one
    /// stuck message cannot hold unbounded memory; unlimited if absent.
    pub max_unacked: Option<usize>,
}

impl ScopeSettings {
    /// Settings of a new scope: not paused, no rate limit, no resends, unlimited deliveries.
    pub fn new(max_pull_size: u32, consume_timeout_ms: u64) -> Self {
        ScopeSettings {
            paused: false,
            max_pull_size,
            consume_timeout_ms,
            rate: None,
            resend: VecDeque::new(),
            max_deliveries: None,
            max_unacked: None,
        }
    }
}

/// Whether a fetch may go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// The consumer is paused: answer `PAUSED` without pulling.
    Paused,
    /// Over the rate limit: answer `RATE_LIMITED` without pulling.
    RateLimited,
    /// Go on; hand out this resent message first.
    Go {
        /// The unique key of a message to resend, taken off the resend queue.
        resend: Option<String>,
    },
}

/// Everything the engine knows of one scope (see [`crate::engine`]); the driver keeps it under
/// one lock.
#[derive(Debug)]
pub struct ScopeState {
    /// The queues: offsets, claims, deliveries.
    pub table: ScopeTable,
    /// The broker locks this instance holds (exclusive mode).
    pub locks: BrokerLocks,
    /// Pause, rate limit, sizes and timeouts, resends.
    pub settings: ScopeSettings,
    /// When the queue set was last read from the route.
    pub queues_at: i64,
    /// What of the shared control plane's settings this scope applied.
    pub applied: super::control::Applied,
    /// The group's other members as the brokers list them (takeover of dead instances' queues).
    pub members: super::members::Members,
}

impl ScopeState {
    /// A scope with no queues yet (the driver loads them from the route) under `settings`.
    pub fn new(mode: QueueMode, settings: ScopeSettings) -> Self {
        ScopeState {
            table: ScopeTable::new(mode),
            locks: BrokerLocks::default(),
            settings,
            queues_at: 0,
            applied: Default::default(),
            members: Default::default(),
        }
    }

    /// A fetch asks to go on: paused, over the rate limit (one token per fetch, the rest taken
    /// by [`Self::took`]), or go, with the next resend if one is queued.
    pub fn admit(&mut self, now: i64) -> Admission {
        let st = &mut self.settings;
        let limited = st.rate.as_mut().is_some_and(|r| !r.try_acquire(now, 1.0));
        if st.paused {
            Admission::Paused
        } else if limited {
            Admission::RateLimited
        } else {
            Admission::Go {
                resend: st.resend.pop_front(),
            }
        }
    }

    /// A fetch admitted by [`Self::admit`] handed out `n` messages.
    pub fn took(&mut self, n: usize) {
        if let Some(rate) = self.settings.rate.as_mut() {
            rate.take(n as f64 - 1.0);
        }
    }
}
