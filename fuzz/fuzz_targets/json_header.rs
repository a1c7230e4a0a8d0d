//! Arbitrary bytes as a JSON header (type byte 0): decoding must not panic, and
//! whatever decodes must re-encode and decode to the same command.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rmq_remoting::SerializeType;

fuzz_target!(|data: &[u8]| {
    rmq_remoting_fuzz::fuzz_header(SerializeType::Json, data);
});
