//! Arbitrary bytes as a ROCKETMQ binary header (type byte 1): decoding must not panic, and
//! whatever decodes must re-encode and decode to the same command.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rmq_remoting::SerializeType;

fuzz_target!(|data: &[u8]| {
    rmq_remoting_fuzz::fuzz_header(SerializeType::RocketMq, data);
});
