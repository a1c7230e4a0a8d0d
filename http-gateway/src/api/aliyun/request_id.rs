//! Request ids (`x-mq-request-id`, `<RequestId>`): 24 upper-case hex digits, unique per process
//! and start time, like the ids Aliyun hands out.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

static COUNTER: AtomicU32 = AtomicU32::new(0);
static PREFIX: OnceLock<u64> = OnceLock::new();

/// A new request id: 16 digits of process identity (start time and pid), 8 of a counter.
pub fn next() -> String {
    let prefix = *PREFIX.get_or_init(|| {
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        (t << 16) ^ u64::from(std::process::id())
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix:016X}{n:08X}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_distinct_and_hex() {
        let a = super::next();
        let b = super::next();
        assert_ne!(a, b);
        assert_eq!(a.len(), 24);
        assert!(a
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase()));
    }
}
