//! Message ids (docs/protocol.md §11.7): the broker's offset id and the client's unique id
//! (`UNIQ_KEY`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::error::MessageError;

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn push_hex(out: &mut String, bytes: &[u8]) {
    for b in bytes {
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 0xF) as usize] as char);
    }
}

fn parse_hex(s: &str) -> Option<Vec<u8>> {
    // from_str_radix would take a leading '+'; an id is hex digits only.
    if !s.len().is_multiple_of(2) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

/// The broker-side id of a stored message: store host, port and commit-log offset, upper-case
/// hex (32 characters for IPv4, 56 for IPv6). It tells where to send VIEW_MESSAGE_BY_ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OffsetMsgId {
    /// The broker that stored the message.
    pub store_host: SocketAddr,
    /// Where in the broker's commit log.
    pub commit_log_offset: i64,
}

impl OffsetMsgId {
    /// The 32 hex digits (40 for IPv6 hosts).
    pub fn encode(&self) -> String {
        let mut s = String::with_capacity(56);
        match self.store_host.ip() {
            IpAddr::V4(ip) => push_hex(&mut s, &ip.octets()),
            IpAddr::V6(ip) => push_hex(&mut s, &ip.octets()),
        }
        push_hex(&mut s, &(self.store_host.port() as i32).to_be_bytes());
        push_hex(&mut s, &self.commit_log_offset.to_be_bytes());
        s
    }

    /// Reads an id made by `encode` or by a broker.
    pub fn decode(id: &str) -> Result<Self, MessageError> {
        let bad = || MessageError::BadMessageId(id.chars().take(80).collect());
        let bytes = parse_hex(id).ok_or_else(bad)?;
        let (ip, rest): (IpAddr, &[u8]) = match bytes.len() {
            16 => (
                IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3])),
                &bytes[4..],
            ),
            28 => {
                let mut o = [0u8; 16];
                o.copy_from_slice(&bytes[..16]);
                (IpAddr::V6(Ipv6Addr::from(o)), &bytes[16..])
            }
            _ => return Err(bad()),
        };
        let port = i32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
        let port = u16::try_from(port).map_err(|_| bad())?;
        let mut off = [0u8; 8];
        off.copy_from_slice(&rest[4..12]);
        Ok(OffsetMsgId {
            store_host: SocketAddr::new(ip, port),
            commit_log_offset: i64::from_be_bytes(off),
        })
    }
}

/// Generates client unique ids in Java's layout (docs/protocol.md §11.7): IP, pid (low 16 bits), a
/// per-process random int, milliseconds since the start of the month, a wrapping counter.
///
/// Sans-IO: the caller passes the current time in, so tests are deterministic and the codec never
/// reads a clock. Java uses the local time zone for the month start; we use UTC, which keeps ids
/// unique and only shifts the (approximate, docs/protocol.md §11.7) time part.
#[derive(Debug, Clone)]
pub struct UniqIdGenerator {
    prefix: String,
    counter: u16,
    month_start_ms: i64,
    next_month_start_ms: i64,
}

impl UniqIdGenerator {
    /// A generator for this host, process and random part (Java uses the class loader's hash).
    pub fn new(ip: IpAddr, pid: u32, random: i32) -> Self {
        let mut prefix = String::with_capacity(56);
        match ip {
            IpAddr::V4(v4) => push_hex(&mut prefix, &v4.octets()),
            IpAddr::V6(v6) => push_hex(&mut prefix, &v6.octets()),
        }
        push_hex(&mut prefix, &(pid as u16).to_be_bytes());
        push_hex(&mut prefix, &random.to_be_bytes());
        UniqIdGenerator {
            prefix,
            counter: 0,
            month_start_ms: 0,
            next_month_start_ms: 0,
        }
    }

    /// The fixed part of every id of this generator.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The next id, for a message created at `now_ms` (milliseconds since the epoch).
    pub fn next_id(&mut self, now_ms: i64) -> String {
        if now_ms >= self.next_month_start_ms || now_ms < self.month_start_ms {
            let (start, next) = month_bounds_utc(now_ms);
            self.month_start_ms = start;
            self.next_month_start_ms = next;
        }
        let since = (now_ms - self.month_start_ms) as i32;
        let mut s = String::with_capacity(self.prefix.len() + 12);
        s.push_str(&self.prefix);
        push_hex(&mut s, &since.to_be_bytes());
        push_hex(&mut s, &self.counter.to_be_bytes());
        self.counter = self.counter.wrapping_add(1);
        s
    }
}

/// Start of the UTC month containing `ms`, and start of the next one.
fn month_bounds_utc(ms: i64) -> (i64, i64) {
    let days = ms.div_euclid(86_400_000);
    let (y, m, _) = civil_from_days(days);
    let start = days_from_civil(y, m, 1) * 86_400_000;
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    let next = days_from_civil(ny, nm, 1) * 86_400_000;
    (start, next)
}

// Howard Hinnant's civil-calendar algorithms.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 } as i64;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_offset_id_example() {
        let id = OffsetMsgId {
            store_host: "192.168.1.20:10911".parse().unwrap(),
            commit_log_offset: 123_456_789,
        };
        assert_eq!(id.encode(), "C0A8011400002A9F00000000075BCD15");
        assert_eq!(OffsetMsgId::decode(&id.encode()).unwrap(), id);
        let v6 = OffsetMsgId {
            store_host: "[fd00::2]:10911".parse().unwrap(),
            commit_log_offset: 7,
        };
        assert_eq!(v6.encode().len(), 56);
        assert_eq!(OffsetMsgId::decode(&v6.encode()).unwrap(), v6);
        assert!(OffsetMsgId::decode("ZZ").is_err());
        assert!(OffsetMsgId::decode("C0A8011400002A9F00000000075BCD1").is_err());
        assert!(OffsetMsgId::decode("é0A8011400002A9F00000000075BCD1").is_err());
        assert!(OffsetMsgId::decode("+0A8011400002A9F00000000075BCD15").is_err());
    }

    #[test]
    fn spec_uniq_key_example_i() {
        let mut g = UniqIdGenerator::new("127.0.0.1".parse().unwrap(), 2940, 0x18B4AAC2);
        // 0x1A2B3C4D ms after the start of some month (2023-11-01T00:00Z).
        let month_start = days_from_civil(2023, 11, 1) * 86_400_000;
        let id = g.next_id(month_start + 0x1A2B3C4D);
        assert_eq!(id, "7F0000010B7C18B4AAC21A2B3C4D0000");
        assert_eq!(&g.next_id(month_start + 0x1A2B3C4D)[28..], "0001");
    }

    #[test]
    fn month_bounds() {
        let (s, n) = month_bounds_utc(days_from_civil(2024, 2, 15) * 86_400_000 + 5);
        assert_eq!(s, days_from_civil(2024, 2, 1) * 86_400_000);
        assert_eq!(n - s, 29 * 86_400_000);
        let (s, n) = month_bounds_utc(days_from_civil(2026, 12, 31) * 86_400_000);
        assert_eq!(n, days_from_civil(2027, 1, 1) * 86_400_000);
        assert!(s < n);
    }
}
