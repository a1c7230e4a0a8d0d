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
    /// The body is compressed.
    pub const COMPRESSED: i32 = 0x1;
    /// The message has several tags.
    pub const MULTI_TAGS: i32 = 0x2;
    /// The transaction bits.
    pub const TRANSACTION_TYPE_MASK: i32 = 0xC;
    /// A prepared (half) transaction message.
    pub const TRANSACTION_PREPARED: i32 = 0x4;
    /// A committed transaction message.
    pub const TRANSACTION_COMMIT: i32 = 0x8;
    /// A rolled-back transaction message.
    pub const TRANSACTION_ROLLBACK: i32 = 0xC;
    /// The born host is IPv6.
    pub const BORNHOST_V6: i32 = 0x10;
    /// The store host is IPv6.
    pub const STOREHOST_V6: i32 = 0x20;
    /// An inner batch to unwrap.
    pub const NEED_UNWRAP: i32 = 0x40;
    /// The body is an inner batch.
    pub const INNER_BATCH: i32 = 0x80;
    /// The compression type bits (zlib 0x100, zstd 0x200, lz4 0x300).
    pub const COMPRESSION_TYPE_MASK: i32 = 0x700;
    /// zlib compression as a 4.9.4+ / 5.x Java producer marks it (`0x301` with COMPRESSED).
    pub const COMPRESSION_ZLIB: i32 = 3 << 8;
}
