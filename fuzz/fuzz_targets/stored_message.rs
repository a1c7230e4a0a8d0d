//! Arbitrary bytes as a PULL / VIEW / QUERY body of stored-message records: `decode_messages`
//! must not panic, and raw records must survive `encode_stored` and decode back the same.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use rmq_remoting::message::{decode_messages, decode_messages_with, encode_stored, DecodeOptions};

/// A small inflate limit keeps zlib bombs cheap; the default (16 MiB) is exercised by
/// `decode_messages` below on whatever the input really holds.
const RAW: DecodeOptions = DecodeOptions {
    decompress: false,
    max_body: 1 << 20,
    unwrap_inner_batch: false,
};

fuzz_target!(|data: &[u8]| {
    let body = Bytes::copy_from_slice(data);
    if let Ok(msgs) = decode_messages(&body) {
        for m in &msgs {
            // The accessors a consumer calls on every message.
            let _ = m.msg_id();
            let _ = m.offset_msg_id();
            let _ = m.keys().count();
            let _ = m.original_topic();
        }
    }

    // Records as stored (no inflating, no inner-batch split) re-encode to records that decode to
    // the same values; only totalSize and bodyCRC are recomputed by the encoder.
    let Ok(raw) = decode_messages_with(&body, RAW) else {
        return;
    };
    let mut out = BytesMut::new();
    let mut expected = Vec::with_capacity(raw.len());
    for m in raw {
        let start = out.len();
        if encode_stored(&m, &mut out).is_err() {
            // Lossy UTF-8 repair can push a topic or properties past their length fields.
            out.truncate(start);
            continue;
        }
        expected.push(m);
    }
    let again = decode_messages_with(&out.freeze(), RAW).expect("re-encoded records decode");
    assert_eq!(again.len(), expected.len());
    for (mut want, got) in expected.into_iter().zip(again) {
        want.store_size = got.store_size;
        want.body_crc = got.body_crc;
        assert_eq!(want, got, "stored record changed in a round trip");
    }
});
