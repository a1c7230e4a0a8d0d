//! Arbitrary bytes as JSON bodies (route, cluster info, heartbeat), strict or fastjson-legacy:
//! parsing must not panic, the legacy repair must leave valid JSON alone, and parsed bodies
//! must survive `to_json` and parse back the same.
#![no_main]

use std::borrow::Cow;

use libfuzzer_sys::fuzz_target;
use rmq_remoting::body::{
    from_json, repair_legacy_json, to_json, ClusterInfo, HeartbeatData, LockBatchRequestBody,
    TopicRouteData,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

fn round_trip<T>(data: &[u8], normalize: impl Fn(&mut T))
where
    T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug,
{
    let Ok(mut v) = from_json::<T>(data) else {
        return;
    };
    normalize(&mut v);
    let json = to_json(&v);
    let mut again: T = from_json(&json).expect("our own JSON parses");
    normalize(&mut again);
    assert_eq!(again, v, "body changed in a round trip");
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let repaired = repair_legacy_json(text);
        if serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok() {
            assert!(
                matches!(repaired, Cow::Borrowed(_)),
                "repair changed valid JSON"
            );
        }
    }
    // The 5.x static-topic mapping is kept as an opaque `Value`, whose floats need not survive
    // text twice without serde_json's float_roundtrip; it has no fields we interpret.
    round_trip::<TopicRouteData>(data, |r| r.topic_queue_mapping_by_broker = None);
    round_trip::<ClusterInfo>(data, |_| {});
    round_trip::<HeartbeatData>(data, |_| {});
    round_trip::<LockBatchRequestBody>(data, |_| {});
});
