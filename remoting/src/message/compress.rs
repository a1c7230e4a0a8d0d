//! Body compression (docs/protocol.md §11.4). zlib is what every Java producer uses by default and
//! what all consumers since 4.x can read; LZ4/ZSTD bodies are reported as unsupported, not misread.

use std::io::{Read, Write};

use flate2::read::ZlibDecoder;
use flate2::write::ZlibEncoder;
use flate2::Compression;

use crate::error::MessageError;
use crate::message::sys_flag;

/// Compression algorithm named by sysFlag bits 8-10.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompressionType {
    /// zlib (what Java clients write).
    Zlib,
    /// LZ4 frames.
    Lz4,
    /// Zstandard.
    Zstd,
}

impl CompressionType {
    /// Type 0 ("not specified", pre-4.9.4 producers) means zlib.
    pub fn from_sys_flag(flag: i32) -> Result<Self, MessageError> {
        match ((flag & sys_flag::COMPRESSION_TYPE_MASK) >> 8) as u8 {
            0 | 3 => Ok(CompressionType::Zlib),
            1 => Ok(CompressionType::Lz4),
            2 => Ok(CompressionType::Zstd),
            other => Err(MessageError::UnsupportedCompression(other)),
        }
    }
}

/// zlib at Java's default level 5.
pub fn zlib_compress(body: &[u8]) -> Vec<u8> {
    let mut enc = ZlibEncoder::new(Vec::with_capacity(body.len() / 2 + 16), Compression::new(5));
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(body);
    enc.finish().unwrap_or_default()
}

/// Inflates at most `limit` bytes; a body that would grow past it is an error, so a small
/// hostile record cannot make us allocate without bound.
pub fn decompress(
    kind: CompressionType,
    data: &[u8],
    limit: usize,
) -> Result<Vec<u8>, MessageError> {
    match kind {
        CompressionType::Zlib => {
            let mut out = Vec::with_capacity((data.len() * 4).min(limit));
            let mut dec = ZlibDecoder::new(data).take(limit as u64 + 1);
            dec.read_to_end(&mut out)
                .map_err(|e| MessageError::Decompress(e.to_string()))?;
            if out.len() > limit {
                return Err(MessageError::DecompressedTooLarge(limit));
            }
            Ok(out)
        }
        CompressionType::Lz4 => Err(MessageError::UnsupportedCompression(1)),
        CompressionType::Zstd => Err(MessageError::UnsupportedCompression(2)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_limit() {
        let body = b"abc".repeat(10_000);
        let z = zlib_compress(&body);
        assert!(z.len() < body.len() / 10);
        assert_eq!(
            decompress(CompressionType::Zlib, &z, 1 << 20).unwrap(),
            body
        );
        assert!(matches!(
            decompress(CompressionType::Zlib, &z, 1000),
            Err(MessageError::DecompressedTooLarge(1000))
        ));
        assert!(decompress(CompressionType::Zlib, b"not zlib", 1000).is_err());
        assert_eq!(
            CompressionType::from_sys_flag(0x301).unwrap(),
            CompressionType::Zlib
        );
        assert_eq!(
            CompressionType::from_sys_flag(0x1).unwrap(),
            CompressionType::Zlib
        );
        assert_eq!(
            CompressionType::from_sys_flag(0x201).unwrap(),
            CompressionType::Zstd
        );
        assert!(CompressionType::from_sys_flag(0x401).is_err());
    }
}
