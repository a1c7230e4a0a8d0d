//! Checks shared by the fuzz targets. Every check panics on a broken invariant, which libFuzzer
//! reports as a crash; hostile input itself must only ever produce typed errors.

use bytes::{BufMut, BytesMut};
use rmq_remoting::{CodecError, RemotingCodec, RemotingCommand, SerializeType};
use tokio_util::codec::{Decoder, Encoder};

/// A decoded command must re-encode (unless it is too large for a frame) and the re-encoded
/// frame must decode to the same command.
pub fn check_command_round_trip(cmd: &RemotingCommand) {
    let mut codec = RemotingCodec::new();
    let mut buf = BytesMut::new();
    match codec.encode(cmd, &mut buf) {
        Ok(()) => {}
        // The canonical encoding can be longer than the input (numbers in extFields become
        // strings), so a frame near the limit may not fit again; nothing else may fail.
        Err(CodecError::FrameTooLarge { .. } | CodecError::HeaderTooLarge(_)) => {
            assert!(buf.is_empty(), "a failed encode must leave dst untouched");
            return;
        }
        Err(e) => panic!("decoded command does not re-encode: {e}"),
    }
    let frame_len = buf.len();
    let again = codec
        .decode(&mut buf)
        .unwrap_or_else(|e| panic!("re-encoded frame ({frame_len} bytes) does not decode: {e}"))
        .expect("re-encoded frame is complete");
    assert!(buf.is_empty(), "re-encoded frame has trailing bytes");
    assert_eq!(&again, cmd, "round trip changed the command");
    // The whole-frame helpers agree with the codec.
    let frame = cmd.to_frame().expect("to_frame after a successful encode");
    assert_eq!(frame.len(), frame_len);
    assert_eq!(
        &RemotingCommand::from_frame(&frame).expect("from_frame of our own frame"),
        cmd
    );
}

/// A frame payload (no length prefix) with the given serialization type byte and header.
pub fn payload_with_header(type_byte: u8, header: &[u8], body: &[u8]) -> BytesMut {
    let mut p = BytesMut::with_capacity(4 + header.len() + body.len());
    let len = header.len().min(0x00FF_FFFF) as u32;
    p.put_u32(((type_byte as u32) << 24) | len);
    p.put_slice(&header[..len as usize]);
    p.put_slice(body);
    p
}

/// Decodes `header` as a header of serialization `t` (with a small fixed body behind it);
/// whatever decodes must survive a round trip and report the serialization it was read with.
pub fn fuzz_header(t: SerializeType, header: &[u8]) {
    const BODY: &[u8] = b"\x00body\xff";
    if header.len() > 0x00FF_FFFF {
        return;
    }
    let payload = payload_with_header(t.code(), header, BODY);
    if let Ok(cmd) = RemotingCommand::decode_frame_payload(payload) {
        assert_eq!(cmd.serialize_type, t);
        assert_eq!(&cmd.body[..], BODY);
        check_command_round_trip(&cmd);
    }
}
