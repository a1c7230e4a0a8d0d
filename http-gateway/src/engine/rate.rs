//! A token bucket for per-scope consume rate limits (MQCloud's `limitRate`, messages/s). Time is
//! passed in; tokens may go negative after a large batch, which delays the next one.

/// A token bucket: `per_sec` tokens a second, holding at most a second's worth (at least one).
#[derive(Debug, Clone)]
pub struct RateLimiter {
    per_sec: f64,
    tokens: f64,
    last_ms: i64,
}

impl RateLimiter {
    /// A bucket of `per_sec` tokens a second (at least 0.001), starting full.
    pub fn new(per_sec: f64, now_ms: i64) -> Self {
        let per_sec = per_sec.max(0.001);
        RateLimiter {
            per_sec,
            // A second's worth at start, like a burst allowance.
            tokens: per_sec,
            last_ms: now_ms,
        }
    }

    /// The rate, tokens per second.
    pub fn per_sec(&self) -> f64 {
        self.per_sec
    }

    fn refill(&mut self, now_ms: i64) {
        let dt = (now_ms - self.last_ms).max(0) as f64 / 1000.0;
        self.tokens = (self.tokens + dt * self.per_sec).min(self.per_sec.max(1.0));
        self.last_ms = self.last_ms.max(now_ms);
    }

    /// Takes `n` tokens if at least that many are there.
    pub fn try_acquire(&mut self, now_ms: i64, n: f64) -> bool {
        self.refill(now_ms);
        if self.tokens >= n {
            self.tokens -= n;
            true
        } else {
            false
        }
    }

    /// Takes `n` more tokens whatever is left (the messages a pull actually returned).
    pub fn take(&mut self, n: f64) {
        if n > 0.0 {
            self.tokens -= n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket() {
        let mut r = RateLimiter::new(10.0, 0);
        assert!(r.try_acquire(0, 1.0));
        r.take(20.0);
        assert!(!r.try_acquire(0, 1.0));
        assert!(!r.try_acquire(1000, 1.0), "still in debt after 1 s");
        assert!(r.try_acquire(2500, 1.0));
        // never more than a second's worth banked
        let mut r = RateLimiter::new(5.0, 0);
        assert!(r.try_acquire(100_000, 5.0));
        assert!(!r.try_acquire(100_000, 1.0));
    }
}
