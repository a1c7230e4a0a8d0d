//! fastjson's legacy output quotes no integer map keys (`{0:"127.0.0.1:10911"}`); strict parsers
//! refuse it. This pre-pass (docs/protocol.md §10.2) quotes bare numeric keys outside string
//! literals and leaves valid JSON unchanged, so it can run on every body.

use std::borrow::Cow;

/// Quotes bare numeric object keys. Linear, allocation only when something changes.
pub fn repair_legacy_json(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    let mut out: Option<String> = None;
    let mut copied = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut expecting_key = false;
    // Only whether the innermost container is an object matters; depth is bounded by the input.
    let mut stack: Vec<bool> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if in_string {
            if escaped {
                escaped = false;
            } else if c == b'\\' {
                escaped = true;
            } else if c == b'"' {
                in_string = false;
            }
            i += 1;
            continue;
        }
        match c {
            b'"' => {
                in_string = true;
                expecting_key = false;
            }
            b'{' => {
                stack.push(true);
                expecting_key = true;
            }
            b'[' => {
                stack.push(false);
                expecting_key = false;
            }
            b'}' | b']' => {
                stack.pop();
                expecting_key = false;
            }
            b',' => expecting_key = stack.last().copied().unwrap_or(false),
            b' ' | b'\t' | b'\r' | b'\n' => {}
            b'0'..=b'9' | b'-' if expecting_key => {
                let start = i;
                while i < bytes.len()
                    && matches!(bytes[i], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
                {
                    i += 1;
                }
                let o = out.get_or_insert_with(|| String::with_capacity(text.len() + 16));
                o.push_str(&text[copied..start]);
                o.push('"');
                o.push_str(&text[start..i]);
                o.push('"');
                copied = i;
                expecting_key = false;
                continue;
            }
            _ => expecting_key = false,
        }
        i += 1;
    }
    match out {
        None => Cow::Borrowed(text),
        Some(mut o) => {
            o.push_str(&text[copied..]);
            Cow::Owned(o)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_example_k() {
        let input = r#"{"brokerDatas":[{"brokerAddrs":{0:"127.0.0.1:10911",1:"127.0.0.1:10921"},"brokerName":"broker-a","cluster":"DefaultCluster"}],"filterServerTable":{},"queueDatas":[{"brokerName":"broker-a","perm":6,"readQueueNums":4,"topicSysFlag":0,"writeQueueNums":4}]}"#;
        let want = r#"{"brokerDatas":[{"brokerAddrs":{"0":"127.0.0.1:10911","1":"127.0.0.1:10921"},"brokerName":"broker-a","cluster":"DefaultCluster"}],"filterServerTable":{},"queueDatas":[{"brokerName":"broker-a","perm":6,"readQueueNums":4,"topicSysFlag":0,"writeQueueNums":4}]}"#;
        assert_eq!(repair_legacy_json(input), want);
        assert!(matches!(repair_legacy_json(want), Cow::Borrowed(_)));
    }

    #[test]
    fn spec_trap() {
        let input = r#"{"remark":"a,{1:2}","m":{12:"x:{3:4}"},"l":[{5:"y"}]}"#;
        let want = r#"{"remark":"a,{1:2}","m":{"12":"x:{3:4}"},"l":[{"5":"y"}]}"#;
        assert_eq!(repair_legacy_json(input), want);
        assert_eq!(
            repair_legacy_json(r#"{"a":"\"{1:2}"}"#),
            r#"{"a":"\"{1:2}"}"#
        );
        assert_eq!(
            repair_legacy_json("{ -1 : 2, 3:[4,5]}"),
            r#"{ "-1" : 2, "3":[4,5]}"#
        );
        // unbalanced input must not panic
        for s in ["}}}", "]]{1", "{1", "\"", "{\"a\":1,", "[,1:2]"] {
            let _ = repair_legacy_json(s);
        }
    }
}
