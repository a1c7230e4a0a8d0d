//! The `Properties` field (`k:v|k:v|`) and how it maps onto a RocketMQ message.
//!
//! * `KEYS` becomes the message keys (RocketMQ's KEYS, space-separated).
//! * `__SHARDINGKEY` picks the queue (same key, same queue) and stays a property.
//! * `__STARTDELIVERTIME` (epoch ms) makes the message timed and stays a property.
//! * `__TransCheckT` marks a transactional message; the gateway refuses those for now.
//! * Anything else is a user property. Names RocketMQ uses for itself (TAGS, UNIQ_KEY, DELAY, …)
//!   are refused, as they would change how the broker treats the message.
//!
//! Consumers get `KEYS` from the message keys and every non-system property back in the same
//! form, so the reserved names round-trip.

use rmq_remoting::message::keys;
use rmq_remoting::message::Properties;

use super::error::{invalid_argument, AliyunError};

/// The message keys, space-separated.
pub const KEYS: &str = "KEYS";
/// The partition key of an ordered message: same key, same queue.
pub const SHARDING_KEY: &str = "__SHARDINGKEY";
/// When a timed message is delivered, ms since the epoch.
pub const START_DELIVER_TIME: &str = "__STARTDELIVERTIME";
/// Seconds until the first transaction check; its presence makes a message transactional.
pub const TRANS_CHECK_TIME: &str = "__TransCheckT";

/// Property names RocketMQ brokers and clients give a meaning to. Not exhaustive of every
/// broker version, but it covers what changes delivery.
const SYSTEM: &[&str] = &[
    keys::KEYS,
    keys::TAGS,
    keys::WAIT,
    keys::DELAY,
    keys::UNIQ_KEY,
    keys::RETRY_TOPIC,
    keys::REAL_TOPIC,
    keys::REAL_QID,
    keys::TRAN_MSG,
    keys::PGROUP,
    keys::ORIGIN_MESSAGE_ID,
    keys::RECONSUME_TIME,
    keys::MAX_RECONSUME_TIMES,
    keys::CLUSTER,
    keys::TIMER_DELIVER_MS,
    keys::TIMER_DELAY_SEC,
    keys::TIMER_DELAY_MS,
    keys::INNER_NUM,
    keys::INNER_BASE,
    keys::MSG_REGION,
    keys::TRACE_ON,
    "MIN_OFFSET",
    "MAX_OFFSET",
    "CONSUME_START_TIME",
    "TRAN_PREPARED_QUEUE_OFFSET",
    "TRANSACTION_CHECK_TIMES",
    "CHECK_IMMUNITY_TIME_IN_SECONDS",
    "INSTANCE_ID",
    "CORRELATION_ID",
    "REPLY_TO_CLIENT",
    "TTL",
    "MSG_TYPE",
    "SHARDING_KEY",
    "__BORNHOST",
    "TIMER_OUT_MS",
    "TIMER_ENQUEUE_MS",
    "TIMER_DEQUEUE_MS",
    "TIMER_ROLL_TIMES",
    "TIMER_DEL_UNIQKEY",
    "POP_CK",
    "1ST_POP_TIME",
    "DLQ_ORIGIN_TOPIC",
    "DLQ_ORIGIN_MESSAGE_ID",
];

/// Whether RocketMQ gives the property name a meaning of its own: a publish may set none of
/// these but `KEYS`, and a consumer gets none of them as a user property (`KEYS` comes from the
/// message keys).
pub fn is_system(name: &str) -> bool {
    SYSTEM.contains(&name)
}

/// What a publish's `Properties` asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageProps {
    /// `KEYS` split at blanks; empty if absent.
    pub keys: Vec<String>,
    /// `__SHARDINGKEY`; None if absent or empty.
    pub sharding_key: Option<String>,
    /// `__STARTDELIVERTIME`, epoch ms.
    pub start_deliver_time: Option<i64>,
    /// `__TransCheckT` was present.
    pub transactional: bool,
    /// User properties in order, reserved `__` names included (they travel with the message).
    pub user: Vec<(String, String)>,
}

/// Reads a publish's `Properties` (None: the element was absent); `InvalidArgument` for an item
/// that is not `key:value`, a control character, a bad `__STARTDELIVERTIME` or a name RocketMQ
/// reserves. A repeated name keeps its last value.
pub fn parse(text: Option<&str>) -> Result<MessageProps, AliyunError> {
    let mut p = MessageProps::default();
    let Some(text) = text else { return Ok(p) };
    for item in text.split('|').filter(|s| !s.is_empty()) {
        let (k, v) = item.split_once(':').ok_or_else(|| {
            invalid_argument(format!(
                "The property {item:?} is not of the form key:value (Properties is k:v|k:v|)."
            ))
        })?;
        if k.is_empty() {
            return Err(invalid_argument(format!(
                "The property {item:?} has no name."
            )));
        }
        if let Some(c) = v.chars().chain(k.chars()).find(|c| c.is_control()) {
            return Err(invalid_argument(format!(
                "The property {k:?} contains the control character {c:?}."
            )));
        }
        match k {
            KEYS => p.keys = v.split_whitespace().map(str::to_owned).collect(),
            TRANS_CHECK_TIME => {
                p.transactional = true;
                continue;
            }
            SHARDING_KEY => p.sharding_key = Some(v.to_owned()).filter(|s| !s.is_empty()),
            START_DELIVER_TIME => {
                let t: i64 = v.trim().parse().map_err(|_| {
                    invalid_argument(format!(
                        "{START_DELIVER_TIME} must be a time in milliseconds since the epoch, not {v:?}."
                    ))
                })?;
                p.start_deliver_time = Some(t);
            }
            k if is_system(k) => {
                return Err(invalid_argument(format!(
                    "The property name {k:?} is reserved by RocketMQ."
                )));
            }
            _ => {}
        }
        if k != KEYS {
            p.user.retain(|(name, _)| name != k);
            p.user.push((k.to_owned(), v.to_owned()));
        }
    }
    Ok(p)
}

/// The `Properties` a consumer receives: `KEYS` from the message keys, then every property
/// that is not RocketMQ's own, `k:v|` each. Names or values holding the field's separators
/// (possible for messages from plain RocketMQ producers) are left out, as the SDKs could not
/// split them.
pub fn encode(properties: &Properties) -> String {
    let mut s = String::new();
    let clean = |x: &str| !x.contains(['|', ':']) && !x.is_empty();
    if let Some(k) = properties.get(keys::KEYS).filter(|k| clean(k)) {
        s.push_str(KEYS);
        s.push(':');
        s.push_str(k);
        s.push('|');
    }
    for (k, v) in properties.iter() {
        if is_system(k) || !clean(k) || v.contains(['|', ':']) {
            continue;
        }
        s.push_str(k);
        s.push(':');
        s.push_str(v);
        s.push('|');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_names_map_and_user_properties_stay() {
        let p = parse(Some(
            "KEYS:k1|a:b|__SHARDINGKEY:s1|__STARTDELIVERTIME:1700000000000|",
        ))
        .unwrap();
        assert_eq!(p.keys, vec!["k1"]);
        assert_eq!(p.sharding_key.as_deref(), Some("s1"));
        assert_eq!(p.start_deliver_time, Some(1_700_000_000_000));
        assert!(!p.transactional);
        assert_eq!(
            p.user,
            vec![
                ("a".into(), "b".into()),
                ("__SHARDINGKEY".into(), "s1".into()),
                ("__STARTDELIVERTIME".into(), "1700000000000".into())
            ]
        );
        // Node leaves out the trailing '|'.
        assert_eq!(
            parse(Some("KEYS:k1|a:b")).unwrap().user,
            vec![("a".into(), "b".into())]
        );
        assert_eq!(parse(None).unwrap(), MessageProps::default());
        assert!(parse(Some("__TransCheckT:10|")).unwrap().transactional);
        assert_eq!(
            parse(Some("a:1|a:2|")).unwrap().user,
            vec![("a".into(), "2".into())]
        );
        assert_eq!(
            parse(Some("a:|")).unwrap().user,
            vec![("a".into(), "".into())]
        );
    }

    #[test]
    fn bad_properties_are_invalid_arguments() {
        for bad in [
            "novalue|",
            ":v|",
            "TAGS:x|",
            "UNIQ_KEY:x|",
            "DELAY:3|",
            "__STARTDELIVERTIME:soon|",
            "a:b\u{1}|",
        ] {
            let e = parse(Some(bad)).unwrap_err();
            assert_eq!(
                e.code,
                super::super::error::Code::InvalidArgument,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn consumers_get_keys_and_user_properties_back() {
        let mut props = Properties::new();
        props.insert("a", "b");
        props.insert(keys::TAGS, "TagA");
        props.insert(keys::KEYS, "k1");
        props.insert(keys::UNIQ_KEY, "X");
        props.insert(SHARDING_KEY, "s1");
        props.insert("odd", "x|y");
        assert_eq!(encode(&props), "KEYS:k1|a:b|__SHARDINGKEY:s1|");
        assert_eq!(encode(&Properties::new()), "");
    }
}
