//! Receipt handles: opaque to clients, versioned, and enough on their own to find the delivery
//! they acknowledge, so an ack can reach any gateway instance.
//!
//! Version 2 (written since acks through any instance work) is URL-safe base64 (no padding) of
//! these big-endian fields:
//!
//! | bytes | field |
//! |---|---|
//! | 1 | version, 2 |
//! | 1 | flags: bit 0 = the message is in the group's `%RETRY%` topic |
//! | 4 | queue id |
//! | 8 | queue offset of the message |
//! | 8 | delivery id: which delivery of the message this handle belongs to; a redelivery gets a new one |
//! | 8 | deadline, ms since the epoch (the message's `NextConsumeTime`) |
//! | 4 | scope: CRC-32 of `topic \0 group` (broker names), so a handle is refused on another topic or group |
//! | 1 | length of the broker name, 1..=255 |
//! | n | broker name, UTF-8 |
//! | 8 | owner incarnation: which run of the delivering instance recorded the delivery |
//! | 1 | length of the owner's advertised HTTP address, 0..=255 (0: unknown, ack only there) |
//! | m | the owner's `host:port`, UTF-8 |
//! | 4 | CRC-32 of everything before, so a damaged handle is told from a stale one |
//!
//! Version 1 (still read) is the same without the three owner fields: such a handle is acked
//! where it arrives, as before.
//!
//! The checksum is no secret: a handle is a capability only in that the delivery id must match
//! the delivery the gateway recorded; an outdated or invented one acks nothing.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// The handle format this gateway writes (the first byte of every handle).
pub const VERSION: u8 = 2;
/// The first format, without the owner; still accepted.
const VERSION_1: u8 = 1;
const FLAG_RETRY: u8 = 1;
/// Longer text cannot be a handle of any version; refused before decoding.
const MAX_TEXT: usize = 1024;

/// What a handle names: one delivery of one message in one broker queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptHandle {
    /// The message sits in the group's `%RETRY%` topic rather than the topic itself.
    pub retry: bool,
    /// The broker holding the queue (at most 255 bytes are encoded).
    pub broker_name: String,
    /// The queue id on that broker.
    pub queue_id: i32,
    /// The message's offset in that queue.
    pub offset: i64,
    /// Which delivery of the message this handle acks; a redelivery gets another one.
    pub delivery_id: u64,
    /// The delivery's `NextConsumeTime`, ms since the epoch.
    pub deadline_ms: i64,
    /// The gateway instance that recorded the delivery (None in version 1 handles).
    pub owner: Option<Owner>,
}

/// The gateway instance that delivered a message: the delivery lives in its memory, so an ack
/// of it must reach that instance, and only while it runs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Owner {
    /// Random per run of the process: a restarted instance at the same address knows the handles
    /// of its previous run are gone (their leases ended with it).
    pub incarnation: u64,
    /// Where other instances reach it over HTTP (`host:port`, at most 255 bytes); empty if not
    /// known (then only that instance acks the handle).
    pub addr: String,
}

/// Why a handle cannot be used; both are `ReceiptHandleError` on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandleError {
    /// Not a valid handle of a known version; the text says what is wrong (e.g. not base64,
    /// too short, checksum mismatch).
    #[error("the receipt handle is malformed: {0}")]
    Malformed(&'static str),
    /// A well-formed handle issued for another topic or consumer group.
    #[error("the receipt handle belongs to another topic or consumer group")]
    Foreign,
}

fn scope(topic: &str, group: &str) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(topic.as_bytes());
    h.update(&[0]);
    h.update(group.as_bytes());
    h.finalize()
}

impl ReceiptHandle {
    /// `topic` and `group` are the broker's names (namespace included).
    pub fn encode(&self, topic: &str, group: &str) -> String {
        let name = self.broker_name.as_bytes();
        // Broker names are short; a longer one is cut rather than panic (it then fails to ack).
        let name = &name[..name.len().min(255)];
        let (incarnation, addr) = match &self.owner {
            Some(o) => (o.incarnation, o.addr.as_bytes()),
            None => (0, &b""[..]),
        };
        // An address longer than 255 bytes is not encoded (the handle then acks only there).
        let addr = if addr.len() > 255 { &b""[..] } else { addr };
        let mut b = Vec::with_capacity(48 + name.len() + addr.len());
        b.push(VERSION);
        b.push(if self.retry { FLAG_RETRY } else { 0 });
        b.extend_from_slice(&self.queue_id.to_be_bytes());
        b.extend_from_slice(&self.offset.to_be_bytes());
        b.extend_from_slice(&self.delivery_id.to_be_bytes());
        b.extend_from_slice(&self.deadline_ms.to_be_bytes());
        b.extend_from_slice(&scope(topic, group).to_be_bytes());
        b.push(name.len() as u8);
        b.extend_from_slice(name);
        b.extend_from_slice(&incarnation.to_be_bytes());
        b.push(addr.len() as u8);
        b.extend_from_slice(addr);
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_be_bytes());
        URL_SAFE_NO_PAD.encode(b)
    }

    /// Reads a handle given to a consumer of `topic` and `group` (broker names, as for
    /// [`ReceiptHandle::encode`]); surrounding blanks are ignored.
    pub fn decode(text: &str, topic: &str, group: &str) -> Result<Self, HandleError> {
        use HandleError::Malformed;
        if text.len() > MAX_TEXT {
            return Err(Malformed("too long"));
        }
        let b = URL_SAFE_NO_PAD
            .decode(text.trim())
            .map_err(|_| Malformed("not base64"))?;
        let (&version, _) = b.split_first().ok_or(Malformed("empty"))?;
        if version != VERSION && version != VERSION_1 {
            return Err(Malformed("unknown version"));
        }
        if b.len() < 39 + 1 {
            return Err(Malformed("too short"));
        }
        let (body, crc) = b.split_at(b.len() - 4);
        if crc32fast::hash(body).to_be_bytes() != crc {
            return Err(Malformed("checksum mismatch"));
        }
        let mut r = Fields(&body[1..]);
        let flags = r.take::<1>()[0];
        if flags & !FLAG_RETRY != 0 {
            return Err(Malformed("unknown flags"));
        }
        let queue_id = i32::from_be_bytes(r.take());
        let offset = i64::from_be_bytes(r.take());
        let delivery_id = u64::from_be_bytes(r.take());
        let deadline_ms = i64::from_be_bytes(r.take());
        let scope_sent = u32::from_be_bytes(r.take());
        let len = r.take::<1>()[0] as usize;
        let broker_name = match version {
            VERSION_1 if len == 0 || r.0.len() != len => {
                return Err(Malformed("bad broker name length"))
            }
            // The name, the incarnation and the address length at least.
            VERSION if len == 0 || r.0.len() < len + 9 => {
                return Err(Malformed("bad broker name length"))
            }
            _ => r.text(len).ok_or(Malformed("broker name is not UTF-8"))?,
        };
        let owner = if version == VERSION {
            let incarnation = u64::from_be_bytes(r.take());
            let len = r.take::<1>()[0] as usize;
            if r.0.len() != len {
                return Err(Malformed("bad owner address length"));
            }
            let addr = r.text(len).ok_or(Malformed("owner address is not UTF-8"))?;
            Some(Owner { incarnation, addr })
        } else {
            None
        };
        if queue_id < 0 || offset < 0 {
            return Err(Malformed("negative queue id or offset"));
        }
        if scope_sent != scope(topic, group) {
            return Err(HandleError::Foreign);
        }
        Ok(ReceiptHandle {
            retry: flags & FLAG_RETRY != 0,
            broker_name,
            queue_id,
            offset,
            delivery_id,
            deadline_ms,
            owner,
        })
    }
}

/// Reads fixed-size fields; callers checked the total length first.
struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let (head, rest) = self.0.split_at(N);
        self.0 = rest;
        head.try_into().expect("split_at gave N bytes")
    }

    /// The next `n` bytes as UTF-8 text; callers checked that `n` bytes are there.
    fn text(&mut self, n: usize) -> Option<String> {
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        std::str::from_utf8(head).ok().map(str::to_owned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ReceiptHandle {
        ReceiptHandle {
            retry: true,
            broker_name: "broker-a".into(),
            queue_id: 3,
            offset: 123_456_789_012,
            delivery_id: 42,
            deadline_ms: 1_795_312_424_670,
            owner: Some(Owner {
                incarnation: 0xfeed_beef_0000_0001,
                addr: "10.0.0.7:8080".into(),
            }),
        }
    }

    #[test]
    fn round_trips_and_is_url_safe() {
        let h = sample();
        let s = h.encode("MQ_INST_1%TopicA", "MQ_INST_1%GID_A");
        assert!(
            s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "{s}"
        );
        assert_eq!(
            ReceiptHandle::decode(&s, "MQ_INST_1%TopicA", "MQ_INST_1%GID_A").unwrap(),
            h
        );
        let plain = ReceiptHandle {
            retry: false,
            ..sample()
        };
        let s = plain.encode("T", "G");
        assert_eq!(ReceiptHandle::decode(&s, "T", "G").unwrap(), plain);
        let unknown_owner = ReceiptHandle {
            owner: Some(Owner {
                incarnation: 9,
                addr: String::new(),
            }),
            ..sample()
        };
        let s = unknown_owner.encode("T", "G");
        assert_eq!(ReceiptHandle::decode(&s, "T", "G").unwrap(), unknown_owner);
    }

    /// Version 1 as gateways before owners wrote it: still acked where it arrives.
    fn encode_v1(h: &ReceiptHandle, topic: &str, group: &str) -> String {
        let name = h.broker_name.as_bytes();
        let mut b = vec![VERSION_1, u8::from(h.retry)];
        b.extend_from_slice(&h.queue_id.to_be_bytes());
        b.extend_from_slice(&h.offset.to_be_bytes());
        b.extend_from_slice(&h.delivery_id.to_be_bytes());
        b.extend_from_slice(&h.deadline_ms.to_be_bytes());
        b.extend_from_slice(&scope(topic, group).to_be_bytes());
        b.push(name.len() as u8);
        b.extend_from_slice(name);
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_be_bytes());
        URL_SAFE_NO_PAD.encode(b)
    }

    #[test]
    fn version_1_handles_are_still_read() {
        let v1 = ReceiptHandle {
            owner: None,
            ..sample()
        };
        let s = encode_v1(&v1, "T", "G");
        assert_eq!(ReceiptHandle::decode(&s, "T", "G").unwrap(), v1);
        // The same handle with a version 2 header but no owner fields is cut short.
        let mut raw = URL_SAFE_NO_PAD.decode(&s).unwrap();
        raw[0] = VERSION;
        let n = raw.len();
        let crc = crc32fast::hash(&raw[..n - 4]).to_be_bytes();
        raw[n - 4..].copy_from_slice(&crc);
        assert!(matches!(
            ReceiptHandle::decode(&URL_SAFE_NO_PAD.encode(raw), "T", "G"),
            Err(HandleError::Malformed(_))
        ));
    }

    #[test]
    fn other_topics_groups_and_damage_are_told_apart() {
        let s = sample().encode("T", "G");
        assert_eq!(
            ReceiptHandle::decode(&s, "T", "G2"),
            Err(HandleError::Foreign)
        );
        assert_eq!(
            ReceiptHandle::decode(&s, "T2", "G"),
            Err(HandleError::Foreign)
        );
        // Flip one character in the middle: the checksum catches it.
        let mut b = s.clone().into_bytes();
        let i = b.len() / 2;
        b[i] = if b[i] == b'A' { b'B' } else { b'A' };
        let damaged = String::from_utf8(b).unwrap();
        assert!(matches!(
            ReceiptHandle::decode(&damaged, "T", "G"),
            Err(HandleError::Malformed(_))
        ));
        for junk in [
            "",
            "RH-1795312424670-0",
            "!!!",
            &"A".repeat(2000),
            &s[..s.len() - 2],
        ] {
            assert!(
                matches!(
                    ReceiptHandle::decode(junk, "T", "G"),
                    Err(HandleError::Malformed(_))
                ),
                "{junk:?}"
            );
        }
        // Another version byte is refused even with a valid checksum.
        let mut raw = URL_SAFE_NO_PAD.decode(&s).unwrap();
        raw[0] = 3;
        let n = raw.len();
        let crc = crc32fast::hash(&raw[..n - 4]).to_be_bytes();
        raw[n - 4..].copy_from_slice(&crc);
        assert_eq!(
            ReceiptHandle::decode(&URL_SAFE_NO_PAD.encode(raw), "T", "G"),
            Err(HandleError::Malformed("unknown version"))
        );
    }
}
