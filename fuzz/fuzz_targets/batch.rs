//! Arbitrary bytes as a SEND_BATCH_MESSAGE body: `decode_batch` must not panic, and whatever
//! decodes (and passes the encoder's property checks) must encode and decode to the same items.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use rmq_remoting::message::{decode_batch, encode_batch};

fuzz_target!(|data: &[u8]| {
    let body = Bytes::copy_from_slice(data);
    let Ok(items) = decode_batch(&body) else {
        return;
    };
    // Values may hold U+0001, which the decoder allows and the checked encoder refuses.
    let Ok(encoded) = encode_batch(&items) else {
        return;
    };
    let expected_len: usize = items.iter().map(|i| i.encoded_len()).sum();
    assert_eq!(encoded.len(), expected_len, "encoded_len disagrees");
    let again = decode_batch(&encoded).expect("our own batch body decodes");
    assert_eq!(again, items, "batch items changed in a round trip");
});
