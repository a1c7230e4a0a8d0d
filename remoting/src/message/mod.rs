//! Messages on the wire: properties, stored records, batch bodies, ids, tags and compression.

pub mod batch;
pub mod compress;
pub mod id;
pub mod properties;
pub mod stored;
pub mod tag;

pub use batch::{decode_batch, encode_batch, BatchItem};
pub use compress::CompressionType;
pub use id::{OffsetMsgId, UniqIdGenerator};
pub use properties::{keys, Properties};
pub use stored::{
    decode_messages, decode_messages_with, encode_stored, DecodeOptions, MessageExt, MessageVersion,
};
pub use tag::{java_string_hash, TagFilter};

/// Message `sysFlag` bits (docs/protocol.md §11.3).
pub mod sys_flag {
    pub const COMPRESSED: i32 = 0x1;
    pub const MULTI_TAGS: i32 = 0x2;
    pub const TRANSACTION_TYPE_MASK: i32 = 0xC;
    pub const TRANSACTION_PREPARED: i32 = 0x4;
    pub const TRANSACTION_COMMIT: i32 = 0x8;
    pub const TRANSACTION_ROLLBACK: i32 = 0xC;
    pub const BORNHOST_V6: i32 = 0x10;
    pub const STOREHOST_V6: i32 = 0x20;
    pub const NEED_UNWRAP: i32 = 0x40;
    pub const INNER_BATCH: i32 = 0x80;
    pub const COMPRESSION_TYPE_MASK: i32 = 0x700;
    /// zlib compression as a 4.9.4+ / 5.x Java producer marks it (`0x301` with COMPRESSED).
    pub const COMPRESSION_ZLIB: i32 = 3 << 8;
}
