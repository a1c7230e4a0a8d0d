//! The stored-message record (docs/protocol.md §11.1, §11.2, §11.9): PULL, VIEW and QUERY bodies.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::{BufMut, Bytes, BytesMut};

use crate::codec::DEFAULT_MAX_FRAME;
use crate::error::MessageError;
use crate::message::compress::{decompress, CompressionType};
use crate::message::id::OffsetMsgId;
use crate::message::properties::{keys, Properties};
use crate::message::{batch, sys_flag};

/// The magic code of V1 records (4-byte topic length is V2).
pub const MAGIC_V1: i32 = 0xDAA3_20A7_u32 as i32;
/// The magic code of V2 records (2-byte topic length).
pub const MAGIC_V2: i32 = 0xDAA3_20AB_u32 as i32;
/// End-of-file padding record in the commit log; never sent to clients.
pub const MAGIC_BLANK: i32 = 0xCBD4_3194_u32 as i32;

/// Which record layout: v2 has a 2-byte topic length (5.x, topics over 127 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MessageVersion {
    /// One-byte topic length.
    #[default]
    V1,
    /// Two-byte topic length.
    V2,
}

impl MessageVersion {
    /// The record's magic code.
    pub fn magic(self) -> i32 {
        match self {
            MessageVersion::V1 => MAGIC_V1,
            MessageVersion::V2 => MAGIC_V2,
        }
    }
}

/// A message as the broker stored it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageExt {
    /// The record's size in bytes.
    pub store_size: i32,
    /// The record format.
    pub version: MessageVersion,
    /// CRC32 of the body as stored.
    pub body_crc: i32,
    /// The queue's number on its broker.
    pub queue_id: i32,
    /// The application flag.
    pub flag: i32,
    /// The offset in the queue.
    pub queue_offset: i64,
    /// Where in the broker's commit log.
    pub commit_log_offset: i64,
    /// As stored: the compressed bit stays set even though `body` is inflated.
    pub sys_flag: i32,
    /// When the producer created it (ms).
    pub born_timestamp: i64,
    /// The producer's address.
    pub born_host: SocketAddr,
    /// When the broker stored it (ms).
    pub store_timestamp: i64,
    /// The broker's address.
    pub store_host: SocketAddr,
    /// How often it was consumed again.
    pub reconsume_times: i32,
    /// The half message of a transaction.
    pub prepared_transaction_offset: i64,
    /// The topic.
    pub topic: String,
    /// The properties.
    pub properties: Properties,
    /// The application body, inflated if it was stored compressed.
    pub body: Bytes,
    /// The body bytes as stored (what `body_crc` covers); the same buffer as `body` when the
    /// record is not compressed.
    pub stored_body: Bytes,
}

impl MessageExt {
    /// The broker-side offset id: store host + commit-log offset.
    pub fn offset_msg_id(&self) -> String {
        OffsetMsgId {
            store_host: self.store_host,
            commit_log_offset: self.commit_log_offset,
        }
        .encode()
    }

    /// What Java's `MessageExt.getMsgId()` returns: `UNIQ_KEY` when present, else the offset id.
    pub fn msg_id(&self) -> String {
        match self.properties.get(keys::UNIQ_KEY) {
            Some(u) => u.to_owned(),
            None => self.offset_msg_id(),
        }
    }

    /// The `TAGS` property.
    pub fn tags(&self) -> Option<&str> {
        self.properties.get(keys::TAGS)
    }

    /// Business keys (`KEYS`, space-separated).
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.properties
            .get(keys::KEYS)
            .unwrap_or("")
            .split(' ')
            .filter(|k| !k.is_empty())
    }

    /// Whether the stored body is compressed.
    pub fn is_compressed(&self) -> bool {
        self.sys_flag & sys_flag::COMPRESSED != 0
    }

    /// For a message read from `%RETRY%group`: the topic it was first sent to.
    pub fn original_topic(&self) -> &str {
        self.properties
            .get(keys::RETRY_TOPIC)
            .unwrap_or(self.topic.as_str())
    }
}

/// Decoder limits.
#[derive(Debug, Clone, Copy)]
pub struct DecodeOptions {
    /// Inflate compressed bodies (otherwise `body` is the stored bytes).
    pub decompress: bool,
    /// The largest inflated body accepted.
    pub max_body: usize,
    /// Split 5.x inner-batch records into their messages (docs/protocol.md §11.8).
    pub unwrap_inner_batch: bool,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            decompress: true,
            max_body: DEFAULT_MAX_FRAME,
            unwrap_inner_batch: true,
        }
    }
}

/// Decodes every record of a PULL / VIEW / QUERY body.
pub fn decode_messages(body: &Bytes) -> Result<Vec<MessageExt>, MessageError> {
    decode_messages_with(body, DecodeOptions::default())
}

/// Decodes the records of a pull response body with explicit limits.
pub fn decode_messages_with(
    body: &Bytes,
    opts: DecodeOptions,
) -> Result<Vec<MessageExt>, MessageError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < body.len() {
        let (msg, next) = decode_one(body, pos, opts)?;
        pos = next;
        let inner = sys_flag::INNER_BATCH | sys_flag::NEED_UNWRAP;
        if opts.unwrap_inner_batch && msg.sys_flag & inner == inner {
            unwrap_inner_batch(msg, &mut out)?;
        } else {
            out.push(msg);
        }
    }
    Ok(out)
}

/// Decodes the single record at `start`; returns it and the offset of the next record.
pub fn decode_one(
    buf: &Bytes,
    start: usize,
    opts: DecodeOptions,
) -> Result<(MessageExt, usize), MessageError> {
    let mut r = RecordReader { buf, pos: start };
    let total = r.i32()?;
    let remaining = buf.len() - start;
    if total < 4 || total as usize > remaining {
        return Err(MessageError::BadTotalSize {
            total: total as i64,
            remaining,
        });
    }
    let end = start + total as usize;
    // Bound every read by this record, not the whole body.
    let rec = buf.slice(..end);
    let mut r = RecordReader {
        buf: &rec,
        pos: start + 4,
    };
    let magic = r.i32()?;
    let version = match magic {
        MAGIC_V1 => MessageVersion::V1,
        MAGIC_V2 => MessageVersion::V2,
        other => return Err(MessageError::BadMagic(other as u32)),
    };
    let body_crc = r.i32()?;
    let queue_id = r.i32()?;
    let flag = r.i32()?;
    let queue_offset = r.i64()?;
    let commit_log_offset = r.i64()?;
    let sys_flag_v = r.i32()?;
    let born_timestamp = r.i64()?;
    let born_host = r.host(sys_flag_v & sys_flag::BORNHOST_V6 != 0)?;
    let store_timestamp = r.i64()?;
    let store_host = r.host(sys_flag_v & sys_flag::STOREHOST_V6 != 0)?;
    let reconsume_times = r.i32()?;
    let prepared_transaction_offset = r.i64()?;
    let body_len = r.i32()?;
    let stored_body = r.bytes(body_len as i64)?;
    let topic_len = match version {
        MessageVersion::V1 => r.u8()? as i64,
        MessageVersion::V2 => r.i16()? as i64,
    };
    let topic = String::from_utf8_lossy(r.slice(topic_len)?).into_owned();
    let props_len = r.i16()? as i64;
    let properties = Properties::decode(&String::from_utf8_lossy(r.slice(props_len)?));
    if r.pos != end {
        return Err(MessageError::SizeMismatch {
            end: r.pos - start,
            total: total as usize,
        });
    }
    let body = if opts.decompress && sys_flag_v & sys_flag::COMPRESSED != 0 {
        let kind = CompressionType::from_sys_flag(sys_flag_v)?;
        Bytes::from(decompress(kind, &stored_body, opts.max_body)?)
    } else {
        stored_body.clone()
    };
    Ok((
        MessageExt {
            store_size: total,
            version,
            body_crc,
            queue_id,
            flag,
            queue_offset,
            commit_log_offset,
            sys_flag: sys_flag_v,
            born_timestamp,
            born_host,
            store_timestamp,
            store_host,
            reconsume_times,
            prepared_transaction_offset,
            topic,
            properties,
            body,
            stored_body,
        },
        end,
    ))
}

fn unwrap_inner_batch(outer: MessageExt, out: &mut Vec<MessageExt>) -> Result<(), MessageError> {
    let items = batch::decode_batch(&outer.body)?;
    for (i, item) in items.into_iter().enumerate() {
        let mut m = outer.clone();
        // Java's `long` arithmetic: a hostile offset near i64::MAX wraps rather than panics.
        m.queue_offset = outer.queue_offset.wrapping_add(i as i64);
        m.flag = item.flag;
        m.body_crc = item.body_crc;
        m.stored_body = item.body.clone();
        m.body = item.body;
        m.properties = item.properties;
        m.sys_flag &= !(sys_flag::INNER_BATCH | sys_flag::NEED_UNWRAP);
        out.push(m);
    }
    Ok(())
}

/// CRC-32 of the stored body as the broker writes it (masked to a positive Java int).
pub fn body_crc(stored_body: &[u8]) -> i32 {
    (crc32fast::hash(stored_body) & 0x7FFF_FFFF) as i32
}

/// Encodes a record as a broker stores it. Used by tests, benchmarks and fault-injecting fakes;
/// `store_size` and `body_crc` are recomputed from the contents.
pub fn encode_stored(msg: &MessageExt, dst: &mut BytesMut) -> Result<(), MessageError> {
    let props = msg.properties.encode();
    if props.len() > i16::MAX as usize {
        return Err(MessageError::PropertiesTooLong(props.len()));
    }
    let topic_max = match msg.version {
        MessageVersion::V1 => 255,
        MessageVersion::V2 => i16::MAX as usize,
    };
    if msg.topic.len() > topic_max {
        return Err(MessageError::TooLong {
            field: "topic",
            len: msg.topic.len(),
        });
    }
    let mut sys = msg.sys_flag & !(sys_flag::BORNHOST_V6 | sys_flag::STOREHOST_V6);
    let host_len = |a: &SocketAddr| if a.is_ipv4() { 8 } else { 20 };
    if msg.born_host.is_ipv6() {
        sys |= sys_flag::BORNHOST_V6;
    }
    if msg.store_host.is_ipv6() {
        sys |= sys_flag::STOREHOST_V6;
    }
    let topic_len_size = if msg.version == MessageVersion::V1 {
        1
    } else {
        2
    };
    let total = 4
        + 4
        + 4
        + 4
        + 4
        + 8
        + 8
        + 4
        + 8
        + host_len(&msg.born_host)
        + 8
        + host_len(&msg.store_host)
        + 4
        + 8
        + 4
        + msg.stored_body.len()
        + topic_len_size
        + msg.topic.len()
        + 2
        + props.len();
    if total > i32::MAX as usize {
        return Err(MessageError::TooLong {
            field: "record",
            len: total,
        });
    }
    dst.reserve(total);
    dst.put_i32(total as i32);
    dst.put_i32(msg.version.magic());
    dst.put_i32(body_crc(&msg.stored_body));
    dst.put_i32(msg.queue_id);
    dst.put_i32(msg.flag);
    dst.put_i64(msg.queue_offset);
    dst.put_i64(msg.commit_log_offset);
    dst.put_i32(sys);
    dst.put_i64(msg.born_timestamp);
    put_host(dst, &msg.born_host);
    dst.put_i64(msg.store_timestamp);
    put_host(dst, &msg.store_host);
    dst.put_i32(msg.reconsume_times);
    dst.put_i64(msg.prepared_transaction_offset);
    dst.put_i32(msg.stored_body.len() as i32);
    dst.put_slice(&msg.stored_body);
    match msg.version {
        MessageVersion::V1 => dst.put_u8(msg.topic.len() as u8),
        MessageVersion::V2 => dst.put_i16(msg.topic.len() as i16),
    }
    dst.put_slice(msg.topic.as_bytes());
    dst.put_i16(props.len() as i16);
    dst.put_slice(props.as_bytes());
    Ok(())
}

fn put_host(dst: &mut BytesMut, a: &SocketAddr) {
    match a.ip() {
        IpAddr::V4(ip) => dst.put_slice(&ip.octets()),
        IpAddr::V6(ip) => dst.put_slice(&ip.octets()),
    }
    dst.put_i32(a.port() as i32);
}

struct RecordReader<'a> {
    buf: &'a Bytes,
    pos: usize,
}

impl RecordReader<'_> {
    fn slice(&mut self, len: i64) -> Result<&[u8], MessageError> {
        if len < 0 {
            return Err(MessageError::NegativeLength(len));
        }
        let available = self.buf.len() - self.pos;
        if len as u64 > available as u64 {
            return Err(MessageError::Truncated {
                offset: self.pos,
                needed: len as usize,
                available,
            });
        }
        let s = &self.buf[self.pos..self.pos + len as usize];
        self.pos += len as usize;
        Ok(s)
    }
    fn bytes(&mut self, len: i64) -> Result<Bytes, MessageError> {
        let start = self.pos;
        self.slice(len)?;
        Ok(self.buf.slice(start..self.pos))
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], MessageError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.slice(N as i64)?);
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, MessageError> {
        Ok(self.array::<1>()?[0])
    }
    fn i16(&mut self) -> Result<i16, MessageError> {
        Ok(i16::from_be_bytes(self.array()?))
    }
    fn i32(&mut self) -> Result<i32, MessageError> {
        Ok(i32::from_be_bytes(self.array()?))
    }
    fn i64(&mut self) -> Result<i64, MessageError> {
        Ok(i64::from_be_bytes(self.array()?))
    }
    fn host(&mut self, v6: bool) -> Result<SocketAddr, MessageError> {
        let ip = if v6 {
            IpAddr::V6(Ipv6Addr::from(self.array::<16>()?))
        } else {
            IpAddr::V4(Ipv4Addr::from(self.array::<4>()?))
        };
        let port = self.i32()?;
        let port = u16::try_from(port).map_err(|_| MessageError::BadPort(port))?;
        Ok(SocketAddr::new(ip, port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE_E: &str = "000000a7daa320a777d18982000000000000000000000000000000000000000000000000000000000000018bcfe56800c0a8010a0000d4310000018bcfe5687bc0a8011400002a9f0000000000000000000000000000000548656c6c6f0954657374546f706963003e554e49515f4b4559013746303030303031304237433138423441414332314132423343344430303030025741495401747275650254414753015461674102";

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn spec_example_e() {
        let body = Bytes::from(unhex(EXAMPLE_E));
        let msgs = decode_messages(&body).unwrap();
        assert_eq!(msgs.len(), 1);
        let m = &msgs[0];
        assert_eq!(m.store_size, 167);
        assert_eq!(m.body_crc, 0x77D1_8982);
        assert_eq!(body_crc(b"Hello"), 0x77D1_8982);
        assert_eq!(&m.body[..], b"Hello");
        assert_eq!(m.topic, "TestTopic");
        assert_eq!(m.born_host, "192.168.1.10:54321".parse().unwrap());
        assert_eq!(m.store_host, "192.168.1.20:10911".parse().unwrap());
        assert_eq!(m.born_timestamp, 1_700_000_000_000);
        assert_eq!(m.store_timestamp, 1_700_000_000_123);
        assert_eq!(m.tags(), Some("TagA"));
        assert_eq!(m.msg_id(), "7F0000010B7C18B4AAC21A2B3C4D0000");
        assert_eq!(m.offset_msg_id(), "C0A8011400002A9F0000000000000000");
        // Example E (docs/protocol.md §18) ends with U+0002; re-encoding uses Java 4.9.8's form,
        // which is one byte shorter and otherwise identical.
        let mut again = BytesMut::new();
        encode_stored(m, &mut again).unwrap();
        assert_eq!(again.len(), 166);
        assert_eq!(&again[4..0x67], &body[4..0x67]);
        assert_eq!(&again[0x67..0x69], &[0x00, 0x3d]);
        assert_eq!(&again[0x69..], &body[0x69..166]);
    }

    #[test]
    fn hostile_sizes_are_errors() {
        let body = unhex(EXAMPLE_E);
        for cut in 0..body.len() {
            let b = Bytes::from(body[..cut].to_vec());
            assert!(cut == 0 || decode_messages(&b).is_err(), "cut {cut}");
        }
        let mut bad = body.clone();
        bad[3] = 0xFF; // totalSize beyond the buffer
        assert!(decode_messages(&Bytes::from(bad)).is_err());
        let mut bad = body.clone();
        bad[4] = 0; // magic
        assert!(matches!(
            decode_messages(&Bytes::from(bad)),
            Err(MessageError::BadMagic(_))
        ));
        let mut bad = body.clone();
        bad[0x54] = 0x80; // negative body length
        assert!(decode_messages(&Bytes::from(bad)).is_err());
    }

    #[test]
    fn inner_batch_offsets_wrap_instead_of_overflowing() {
        // Found by fuzz/stored_message: numbering unwrapped items overflowed (a debug panic).
        let items = vec![
            batch::BatchItem::new(0, &b"x"[..], Properties::new()),
            batch::BatchItem::new(0, &b"y"[..], Properties::new()),
        ];
        let body = batch::encode_batch(&items).unwrap();
        let mut m = decode_messages(&Bytes::from(unhex(EXAMPLE_E)))
            .unwrap()
            .remove(0);
        m.sys_flag = sys_flag::INNER_BATCH | sys_flag::NEED_UNWRAP;
        m.queue_offset = i64::MAX;
        m.body = body.clone();
        m.stored_body = body;
        let mut rec = BytesMut::new();
        encode_stored(&m, &mut rec).unwrap();
        let msgs = decode_messages(&rec.freeze()).unwrap();
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[1].queue_offset, i64::MIN);
    }
}
