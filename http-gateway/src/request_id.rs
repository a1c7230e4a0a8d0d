//! MQ-Proxy's requestId: URL-safe base64 (with padding, as Java's `Base64.getUrlEncoder()`) of
//! `brokerName,queueId,offset,nextOffset,lockTime[,forceAck[,retry]]`. The sixth field is
//! MQ-Proxy's forceAck; the seventh is ours and marks a queue of the `%RETRY%` topic.

use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;

use crate::engine::{AckToken, QueueKey};

/// A decoded requestId: the batch it acks (queue, first offset, end) and the lease it was
/// handed out under. Opaque to callers; [`RequestId::encode`] and [`RequestId::decode`] are
/// inverse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId {
    /// The queue the batch came from (`retry` from the seventh field).
    pub queue: QueueKey,
    /// The batch's first offset: the committed offset the ack expects.
    pub offset: i64,
    /// Where the batch ends (the pull's nextBeginOffset): the offset the ack commits.
    pub next_offset: i64,
    /// The lease (delivery id) the batch was handed out under.
    pub lock_time: i64,
    /// MQ-Proxy's forceAck: commit `next_offset` even if the committed offset moved.
    pub force: bool,
}

/// Why a requestId was refused (names the field at fault); the caller gets a 400.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed requestId: {0}")]
pub struct BadRequestId(pub &'static str);

impl RequestId {
    /// The requestId text (URL-safe base64 with padding); the sixth and seventh fields only when
    /// needed, so plain batches read as MQ-Proxy's.
    pub fn encode(&self) -> String {
        let mut s = format!(
            "{},{},{},{},{}",
            self.queue.broker_name,
            self.queue.queue_id,
            self.offset,
            self.next_offset,
            self.lock_time
        );
        if self.force || self.queue.retry {
            s.push_str(if self.force { ",true" } else { ",false" });
        }
        if self.queue.retry {
            s.push_str(",retry");
        }
        URL_SAFE.encode(s)
    }

    /// Parses a requestId from a caller: padding optional, at most 1024 characters, offsets in
    /// order (unless forced), queue id not negative.
    pub fn decode(text: &str) -> Result<Self, BadRequestId> {
        let text = text.trim();
        if text.is_empty() || text.len() > 1024 {
            return Err(BadRequestId("empty or too long"));
        }
        let raw = URL_SAFE
            .decode(text)
            .or_else(|_| URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')))
            .map_err(|_| BadRequestId("not URL-safe base64"))?;
        let s = String::from_utf8(raw).map_err(|_| BadRequestId("not UTF-8"))?;
        let f: Vec<&str> = s.split(',').collect();
        if !(5..=7).contains(&f.len()) {
            return Err(BadRequestId("expected 5 to 7 comma-separated fields"));
        }
        let broker = f[0];
        if broker.is_empty() {
            return Err(BadRequestId("empty broker name"));
        }
        let num = |i: usize, what| f[i].parse::<i64>().map_err(|_| BadRequestId(what));
        let queue_id = f[1].parse::<i32>().map_err(|_| BadRequestId("queueId"))?;
        let offset = num(2, "offset")?;
        let next_offset = num(3, "nextOffset")?;
        let lock_time = num(4, "lockTime")?;
        let force = match f.get(5) {
            None => false,
            Some(v) => v.parse::<bool>().map_err(|_| BadRequestId("forceAck"))?,
        };
        let retry = match f.get(6) {
            None => false,
            Some(&"retry") => true,
            Some(_) => return Err(BadRequestId("seventh field")),
        };
        if queue_id < 0 || offset < 0 || (next_offset < offset && !force) {
            return Err(BadRequestId("offsets out of order"));
        }
        Ok(RequestId {
            queue: QueueKey::new(retry, broker, queue_id),
            offset,
            next_offset,
            lock_time,
            force,
        })
    }

    /// What the engine's batch ack needs ([`crate::engine::ScopeTable::ack_batch`]).
    pub fn ack_token(&self) -> AckToken {
        AckToken {
            offset: self.offset,
            next_offset: self.next_offset,
            lock_time: self.lock_time,
            force: self.force,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guides_example_decodes() {
        let r = RequestId::decode("YnJva2VyLWMsNCwyMTU2OSwyMTYwMSwxNjU1ODgyNjM0MDU0").unwrap();
        assert_eq!(r.queue, QueueKey::new(false, "broker-c", 4));
        assert_eq!(
            (r.offset, r.next_offset, r.lock_time),
            (21569, 21601, 1655882634054)
        );
        assert_eq!(
            r.encode(),
            "YnJva2VyLWMsNCwyMTU2OSwyMTYwMSwxNjU1ODgyNjM0MDU0"
        );
    }

    #[test]
    fn round_trips_and_rejects_garbage() {
        for (retry, force) in [(false, false), (true, false), (false, true), (true, true)] {
            let r = RequestId {
                queue: QueueKey::new(retry, "broker-a", 3),
                offset: 10,
                next_offset: if force { 2 } else { 42 },
                lock_time: 1_795_000_000_000,
                force,
            };
            assert_eq!(RequestId::decode(&r.encode()).unwrap(), r);
        }
        for bad in [
            "",
            "!!!",
            "YWJj",
            &URL_SAFE.encode("b,x,1,2,3"),
            &URL_SAFE.encode("b,1,5,2,3"),
            &URL_SAFE.encode(",1,1,2,3"),
            &URL_SAFE.encode("b,1,1,2,3,maybe"),
            &"A".repeat(5000),
        ] {
            assert!(RequestId::decode(bad).is_err(), "{bad}");
        }
    }
}
