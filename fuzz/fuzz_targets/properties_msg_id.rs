//! Message property strings, offset message ids and tag expressions from arbitrary text:
//! parsing must not panic, and what parses must round-trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rmq_remoting::message::{java_string_hash, OffsetMsgId, Properties, TagFilter};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);

    // decode . encode . decode == decode: the decoder's output is exactly what it keeps.
    let props = Properties::decode(&text);
    let encoded = props.encode();
    assert_eq!(Properties::decode(&encoded), props, "properties round trip");
    if let Ok(checked) = props.encode_checked() {
        assert_eq!(checked, encoded);
    }

    if let Ok(id) = OffsetMsgId::decode(&text) {
        let again = id.encode();
        assert_eq!(again.len(), text.len());
        assert_eq!(OffsetMsgId::decode(&again).expect("our own id parses"), id);
    }

    let filter = TagFilter::parse(&text);
    let codes = filter.codes();
    match &filter {
        TagFilter::All => assert!(codes.is_empty()),
        TagFilter::Tags(tags) => {
            assert_eq!(codes.len(), tags.len());
            for t in tags {
                assert!(!t.is_empty() && t.trim() == t && !t.contains("||"));
                assert!(filter.matches(Some(t)));
                let _ = java_string_hash(t);
            }
        }
    }
});
