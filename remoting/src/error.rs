//! Typed errors of the codec. Every decode failure is one of these; nothing panics.

use thiserror::Error;

/// Failure to turn bytes into a frame or command, or a command into bytes.
#[derive(Debug, Error)]
pub enum CodecError {
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge { len: usize, max: usize },
    #[error("frame length field {0} is too small for a header-length word")]
    FrameTooShort(i64),
    #[error("header length {header} exceeds the {available} bytes left in the frame")]
    BadHeaderLength { header: usize, available: usize },
    #[error("unknown header serialization type {0}")]
    UnknownSerializeType(u8),
    #[error("malformed JSON header: {0}")]
    JsonHeader(String),
    #[error("malformed ROCKETMQ binary header: {0}")]
    BinaryHeader(&'static str),
    #[error("{field} value {value} does not fit the binary header's 16-bit field")]
    BinaryFieldRange { field: &'static str, value: i32 },
    #[error("header of {0} bytes does not fit the 24-bit header length field")]
    HeaderTooLarge(usize),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// A typed request/response header could not be read from `extFields`.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum HeaderError {
    #[error("missing required header field `{0}`")]
    Missing(&'static str),
    #[error("header field `{field}` has invalid value {value:?}")]
    Invalid { field: &'static str, value: String },
}

/// A message record, batch or property string could not be decoded.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum MessageError {
    #[error(
        "message record truncated: needed {needed} bytes at offset {offset}, {available} available"
    )]
    Truncated {
        offset: usize,
        needed: usize,
        available: usize,
    },
    #[error("unknown message magic code {0:#010x}")]
    BadMagic(u32),
    #[error("record total size {total} is invalid (remaining {remaining})")]
    BadTotalSize { total: i64, remaining: usize },
    #[error("negative length {0} in record")]
    NegativeLength(i64),
    #[error("record fields end at {end} but totalSize says {total}")]
    SizeMismatch { end: usize, total: usize },
    #[error("body decompression failed: {0}")]
    Decompress(String),
    #[error("unsupported compression type {0}")]
    UnsupportedCompression(u8),
    #[error("decompressed body exceeds the limit of {0} bytes")]
    DecompressedTooLarge(usize),
    #[error("invalid UTF-8 in {0}")]
    Utf8(&'static str),
    #[error("properties of {0} bytes exceed the 32767-byte limit")]
    PropertiesTooLong(usize),
    #[error("{0} contains a property separator (U+0001/U+0002)")]
    PropertySeparator(&'static str),
    #[error("field {field} of {len} bytes is too long")]
    TooLong { field: &'static str, len: usize },
    #[error("port {0} of a host field is out of range")]
    BadPort(i32),
    #[error("invalid message id {0:?}")]
    BadMessageId(String),
}

/// A JSON body could not be parsed or written.
#[derive(Debug, Error)]
pub enum BodyError {
    #[error("malformed JSON body: {0}")]
    Json(#[from] serde_json::Error),
    #[error("invalid {field} in body: {value:?}")]
    Invalid { field: &'static str, value: String },
}
