//! Message bodies in JSON answers, written without serde_json's escaping loop when they need
//! none.
//!
//! serde_json escapes a string byte by byte; for the 32 KiB of bodies of a 32-message batch
//! that was the largest single cost of an MQ-Proxy fetch (benches/RESULTS.md). A body with no
//! `"`, `\` or control character is its own JSON text between quotes, so it goes out as a
//! `RawValue` (found by a vectorizable scan; serde_json checks it again with its fast string
//! parser). Anything else is serialized as before.

use std::borrow::Cow;

use serde::{Serialize, Serializer};
use serde_json::value::RawValue;

/// A string serialized exactly as serde_json serializes a `str`.
#[derive(Debug)]
pub struct JsonText<'a>(pub Cow<'a, str>);

/// Whether `s` can be written between quotes as is.
fn plain(s: &str) -> bool {
    let b = s.as_bytes();
    // A fold rather than `any`: no early exit, so the compiler vectorizes it.
    let control = b.iter().fold(false, |acc, &c| acc | (c < 0x20));
    !control && memchr::memchr2(b'"', b'\\', b).is_none()
}

impl Serialize for JsonText<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Short strings cost more to wrap than to escape.
        if self.0.len() >= 64 && plain(&self.0) {
            let mut quoted = String::with_capacity(self.0.len() + 2);
            quoted.push('"');
            quoted.push_str(&self.0);
            quoted.push('"');
            if let Ok(raw) = RawValue::from_string(quoted) {
                return raw.serialize(s);
            }
        }
        s.serialize_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_bytes_as_serde_json() {
        let long = "x".repeat(100);
        let cases = [
            String::new(),
            "short".to_owned(),
            long.clone(),
            format!("{long}\"quote"),
            format!("{long}back\\slash"),
            format!("{long}\nnewline\ttab\u{1}ctl"),
            format!("{long}\u{7f}del é中😀 </script>"),
            format!("{long}\\\""),
        ];
        for c in cases {
            let ours = serde_json::to_string(&JsonText(Cow::Borrowed(&c))).unwrap();
            assert_eq!(ours, serde_json::to_string(&c).unwrap(), "{c:?}");
            let back: String = serde_json::from_str(&ours).unwrap();
            assert_eq!(back, c);
        }
    }

    #[test]
    fn plain_finds_every_byte_that_needs_an_escape() {
        for b in 0u8..0x80 {
            let s = format!("{}{}", "a".repeat(70), b as char);
            let needs = b < 0x20 || b == b'"' || b == b'\\';
            assert_eq!(plain(&s), !needs, "byte {b:#x}");
        }
    }
}
