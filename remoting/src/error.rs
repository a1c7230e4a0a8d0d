//! Typed errors of the codec. Every decode failure is one of these; nothing panics.

use thiserror::Error;

/// Failure to turn bytes into a frame or command, or a command into bytes.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CodecError {
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    /// The frame is longer than the limit.
    FrameTooLarge {
        /// The frame's length, length field included.
        len: usize,
        /// The limit.
        max: usize,
    },
    #[error("frame length field {0} is too small for a header-length word")]
    /// The length field is below 4 (or negative).
    FrameTooShort(i64),
    #[error("header length {header} exceeds the {available} bytes left in the frame")]
    /// The header length exceeds the frame.
    BadHeaderLength {
        /// The header length the frame claims.
        header: usize,
        /// Bytes the frame has after the header-length word.
        available: usize,
    },
    #[error("unknown header serialization type {0}")]
    /// The serialization byte is neither JSON (0) nor ROCKETMQ (1).
    UnknownSerializeType(u8),
    #[error("malformed JSON header: {0}")]
    /// The JSON header does not parse, or lacks a required member.
    JsonHeader(String),
    #[error("malformed ROCKETMQ binary header: {0}")]
    /// The binary header is cut short or malformed; says which part.
    BinaryHeader(&'static str),
    #[error("{field} value {value} does not fit the binary header's 16-bit field")]
    /// A value does not fit its field of the binary header.
    BinaryFieldRange {
        /// The header member.
        field: &'static str,
        /// Its value.
        value: i32,
    },
    #[error("header of {0} bytes does not fit the 24-bit header length field")]
    /// The header is too large for the 24-bit length field.
    HeaderTooLarge(usize),
    #[error("I/O error: {0}")]
    /// Reading or writing the stream failed, or it ended inside a frame.
    Io(#[from] std::io::Error),
}

/// A typed request/response header could not be read from `extFields`.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeaderError {
    #[error("missing required header field `{0}`")]
    /// A required field (named by its wire key) is absent.
    Missing(&'static str),
    #[error("header field `{field}` has invalid value {value:?}")]
    /// A field's value does not parse.
    Invalid {
        /// The field's wire key.
        field: &'static str,
        /// The value as sent.
        value: String,
    },
}

/// A message record, batch or property string could not be decoded.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MessageError {
    #[error(
        "message record truncated: needed {needed} bytes at offset {offset}, {available} available"
    )]
    /// A field runs past the end of the buffer.
    Truncated {
        /// Where the field starts in the buffer.
        offset: usize,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes left.
        available: usize,
    },
    #[error("unknown message magic code {0:#010x}")]
    /// The record's magic code is not V1's or V2's.
    BadMagic(u32),
    #[error("record total size {total} is invalid (remaining {remaining})")]
    /// The record's totalSize is impossible.
    BadTotalSize {
        /// The record's totalSize field.
        total: i64,
        /// Bytes left in the buffer.
        remaining: usize,
    },
    #[error("negative length {0} in record")]
    /// A length field is negative.
    NegativeLength(i64),
    #[error("record fields end at {end} but totalSize says {total}")]
    /// The fields do not add up to totalSize.
    SizeMismatch {
        /// Where the fields ended.
        end: usize,
        /// Where totalSize says the record ends.
        total: usize,
    },
    #[error("body decompression failed: {0}")]
    /// The body does not decompress.
    Decompress(String),
    #[error("unsupported compression type {0}")]
    /// The sysFlag names a compression this crate lacks.
    UnsupportedCompression(u8),
    #[error("decompressed body exceeds the limit of {0} bytes")]
    /// Decompression would exceed the limit (given in bytes).
    DecompressedTooLarge(usize),
    #[error("invalid UTF-8 in {0}")]
    /// A text field (named) is not UTF-8.
    Utf8(&'static str),
    #[error("properties of {0} bytes exceed the 32767-byte limit")]
    /// The encoded properties exceed 32767 bytes.
    PropertiesTooLong(usize),
    #[error("{0} contains a property separator (U+0001/U+0002)")]
    /// A property name or value contains a separator.
    PropertySeparator(&'static str),
    #[error("field {field} of {len} bytes is too long")]
    /// A field is too long for its length prefix.
    TooLong {
        /// Which field.
        field: &'static str,
        /// Its length.
        len: usize,
    },
    #[error("port {0} of a host field is out of range")]
    /// A stored port is outside 0..=65535.
    BadPort(i32),
    #[error("invalid message id {0:?}")]
    /// A message id is not 32 (or 40) hex digits.
    BadMessageId(String),
}

/// A JSON body could not be parsed or written.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum BodyError {
    #[error("malformed JSON body: {0}")]
    /// The body is not the JSON expected.
    Json(#[from] serde_json::Error),
    #[error("invalid {field} in body: {value:?}")]
    /// A member's value is out of range.
    Invalid {
        /// The body member.
        field: &'static str,
        /// The value as sent.
        value: String,
    },
}
