//! The stream codec: cuts frames off a byte stream and turns them into commands
//! (docs/protocol.md §2).
//!
//! [`RemotingCodec`] works on any byte buffer through its own methods; with the default cargo
//! feature `tokio-codec` it is also a `tokio_util::codec::Decoder` and
//! `tokio_util::codec::Encoder`, ready for `Framed`.

use bytes::{Buf, BytesMut};
#[cfg(feature = "tokio-codec")]
use tokio_util::codec::{Decoder, Encoder};

use crate::command::RemotingCommand;
use crate::error::CodecError;

/// Java's `com.rocketmq.remoting.frameMaxLength`: 16 MiB, counting the 4-byte length field.
pub const DEFAULT_MAX_FRAME: usize = 16 * 1024 * 1024;

#[derive(Debug, Clone, Copy)]
enum State {
    Head,
    /// The length prefix was consumed; this many payload bytes make up the frame.
    Payload(usize),
}

/// The codec of RocketMQ remoting frames. The frame limit is enforced on the length field, before
/// any buffer is reserved for the payload.
///
/// ```
/// use bytes::BytesMut;
/// use rmq_remoting::{ExtFields, RemotingCodec, RemotingCommand, RequestCode};
///
/// let cmd = RemotingCommand::request(RequestCode::GetRouteinfoByTopic, ExtFields::new());
/// let mut codec = RemotingCodec::new();
/// let mut wire = BytesMut::new();
/// codec.encode_command(&cmd, &mut wire).unwrap();
/// // Bytes arrive in pieces: nothing comes out until the frame is whole.
/// let mut buf = wire.split_to(5);
/// assert!(codec.decode_command(&mut buf).unwrap().is_none());
/// buf.unsplit(wire);
/// let back = codec.decode_command(&mut buf).unwrap().unwrap();
/// assert_eq!(back.request_code(), RequestCode::GetRouteinfoByTopic);
/// ```
#[derive(Debug, Clone)]
pub struct RemotingCodec {
    max_frame: usize,
    state: State,
}

impl Default for RemotingCodec {
    fn default() -> Self {
        Self::new()
    }
}

impl RemotingCodec {
    /// A codec with Java's frame limit, [`DEFAULT_MAX_FRAME`].
    pub fn new() -> Self {
        Self::with_max_frame(DEFAULT_MAX_FRAME)
    }

    /// `max_frame` counts the whole frame, length field included, as Java's limit does.
    pub fn with_max_frame(max_frame: usize) -> Self {
        RemotingCodec {
            max_frame: max_frame.max(8),
            state: State::Head,
        }
    }

    /// The largest frame accepted or written, length field included.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// Cuts one raw frame payload (everything after the length prefix) off `src`.
    pub fn decode_payload(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, CodecError> {
        let n = match self.state {
            State::Payload(n) => n,
            State::Head => {
                if src.len() < 4 {
                    return Ok(None);
                }
                let len = i32::from_be_bytes([src[0], src[1], src[2], src[3]]) as i64;
                if len < 4 {
                    return Err(CodecError::FrameTooShort(len));
                }
                let total = len as usize + 4;
                if total > self.max_frame {
                    return Err(CodecError::FrameTooLarge {
                        len: total,
                        max: self.max_frame,
                    });
                }
                src.advance(4);
                self.state = State::Payload(len as usize);
                len as usize
            }
        };
        if src.len() < n {
            src.reserve(n - src.len());
            return Ok(None);
        }
        self.state = State::Head;
        let payload = src.split_to(n);
        src.reserve(4);
        Ok(Some(payload))
    }

    /// Cuts the next command off `src`; `None` until a whole frame is there.
    pub fn decode_command(
        &mut self,
        src: &mut BytesMut,
    ) -> Result<Option<RemotingCommand>, CodecError> {
        match self.decode_payload(src)? {
            Some(payload) => RemotingCommand::decode_frame_payload(payload).map(Some),
            None => Ok(None),
        }
    }

    /// Like [`decode_command`](Self::decode_command), at the end of the stream: a stream that
    /// ends inside a frame lost data, which is an error instead of a clean close.
    pub fn decode_command_eof(
        &mut self,
        src: &mut BytesMut,
    ) -> Result<Option<RemotingCommand>, CodecError> {
        match self.decode_command(src)? {
            Some(cmd) => Ok(Some(cmd)),
            None if src.is_empty() && matches!(self.state, State::Head) => Ok(None),
            None => Err(CodecError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed in the middle of a frame",
            ))),
        }
    }

    /// Appends `cmd` as one frame to `dst`; a frame over the limit is refused and `dst` is left
    /// as it was.
    pub fn encode_command(
        &self,
        cmd: &RemotingCommand,
        dst: &mut BytesMut,
    ) -> Result<(), CodecError> {
        cmd.encode_frame(dst, self.max_frame)
    }
}

#[cfg(feature = "tokio-codec")]
impl Decoder for RemotingCodec {
    type Item = RemotingCommand;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<RemotingCommand>, CodecError> {
        self.decode_command(src)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<RemotingCommand>, CodecError> {
        self.decode_command_eof(src)
    }
}

#[cfg(feature = "tokio-codec")]
impl Encoder<RemotingCommand> for RemotingCodec {
    type Error = CodecError;

    fn encode(&mut self, item: RemotingCommand, dst: &mut BytesMut) -> Result<(), CodecError> {
        self.encode_command(&item, dst)
    }
}

#[cfg(feature = "tokio-codec")]
impl Encoder<&RemotingCommand> for RemotingCodec {
    type Error = CodecError;

    fn encode(&mut self, item: &RemotingCommand, dst: &mut BytesMut) -> Result<(), CodecError> {
        self.encode_command(item, dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::code::RequestCode;
    use crate::ext_fields::ExtFields;

    fn route_request() -> RemotingCommand {
        let mut ext = ExtFields::new();
        ext.insert("topic", "TestTopic");
        let mut c = RemotingCommand::request(RequestCode::GetRouteinfoByTopic, ext);
        c.opaque = 1;
        c.language = crate::code::LanguageCode::Java;
        c
    }

    #[test]
    fn partial_reads_resume_without_reparsing() {
        let frame = route_request().to_frame().unwrap();
        let mut codec = RemotingCodec::new();
        let mut buf = BytesMut::new();
        for chunk in frame.chunks(3) {
            assert!(buf.is_empty() || codec.decode_command(&mut buf).unwrap().is_none());
            buf.extend_from_slice(chunk);
        }
        let cmd = codec.decode_command(&mut buf).unwrap().unwrap();
        assert_eq!(cmd.ext("topic"), Some("TestTopic"));
        assert!(buf.is_empty());
    }

    #[test]
    fn oversize_length_rejected_before_allocating() {
        let mut codec = RemotingCodec::with_max_frame(64);
        let mut buf = BytesMut::from(&[0x00, 0x00, 0x01, 0x00][..]);
        let cap_before = buf.capacity();
        assert!(matches!(
            codec.decode_command(&mut buf),
            Err(CodecError::FrameTooLarge { len: 260, max: 64 })
        ));
        assert_eq!(buf.capacity(), cap_before);
        let mut buf = BytesMut::from(&[0xFF, 0xFF, 0xFF, 0xFF][..]);
        assert!(matches!(
            RemotingCodec::new().decode_command(&mut buf),
            Err(CodecError::FrameTooShort(-1))
        ));
    }

    #[test]
    fn exactly_max_frame_is_accepted() {
        // 16 MiB counting the length field: the largest legal length value is 16 777 212.
        let mut codec = RemotingCodec::new();
        let mut buf = BytesMut::from(&16_777_212u32.to_be_bytes()[..]);
        assert!(codec.decode_command(&mut buf).unwrap().is_none());
        let mut codec = RemotingCodec::new();
        let mut buf = BytesMut::from(&16_777_213u32.to_be_bytes()[..]);
        assert!(codec.decode_command(&mut buf).is_err());
    }

    #[test]
    fn header_length_beyond_frame_is_an_error() {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&8u32.to_be_bytes());
        buf.extend_from_slice(&100u32.to_be_bytes());
        buf.extend_from_slice(b"{}{}");
        assert!(matches!(
            RemotingCodec::new().decode_command(&mut buf),
            Err(CodecError::BadHeaderLength { .. })
        ));
    }

    #[test]
    fn unknown_serialize_type_is_an_error() {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&6u32.to_be_bytes());
        buf.extend_from_slice(&0x0200_0002u32.to_be_bytes());
        buf.extend_from_slice(b"{}");
        assert!(matches!(
            RemotingCodec::new().decode_command(&mut buf),
            Err(CodecError::UnknownSerializeType(2))
        ));
    }

    #[test]
    fn eof_inside_a_frame_is_an_error() {
        let frame = route_request().to_frame().unwrap();
        for cut in [2, 4, 10] {
            let mut codec = RemotingCodec::new();
            let mut buf = BytesMut::from(&frame[..cut]);
            assert!(codec.decode_command_eof(&mut buf).is_err(), "cut {cut}");
        }
        let mut codec = RemotingCodec::new();
        let mut buf = BytesMut::from(&frame[..]);
        assert!(codec.decode_command_eof(&mut buf).unwrap().is_some());
        assert!(codec.decode_command_eof(&mut buf).unwrap().is_none());
    }

    #[test]
    fn encoder_refuses_oversize_frames() {
        let cmd = route_request().with_body(vec![0u8; 100]);
        let codec = RemotingCodec::with_max_frame(64);
        let mut dst = BytesMut::new();
        assert!(codec.encode_command(&cmd, &mut dst).is_err());
        assert!(dst.is_empty());
    }
}
