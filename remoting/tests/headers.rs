//! Typed headers against real 4.9.8 traffic, worked examples L and M (docs/protocol.md §18),
//! round trips and errors.

mod common;

use std::collections::BTreeMap;
use std::fmt::Debug;

use proptest::prelude::*;
use rmq_remoting::header::*;
use rmq_remoting::{
    ExtFields, HeaderError, LanguageCode, RemotingCommand, RequestCode, SerializeType,
};
use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// 1. Golden: every captured frame with a typed header.

/// The index's decoded `extFields`, with the JSON-typed values of non-Java clients as text.
struct Idx<'a>(Option<&'a serde_json::Map<String, Value>>);

impl Idx<'_> {
    fn s(&self, key: &str) -> Option<String> {
        match self.0?.get(key)? {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            other => Some(other.to_string()),
        }
    }

    fn n(&self, key: &str) -> Option<i64> {
        let s = self.s(key)?;
        Some(
            s.parse()
                .unwrap_or_else(|_| panic!("index {key}={s} not a number")),
        )
    }
}

/// `ours` (Java's text) means the same as the wire's `theirs`, allowing C++'s `0`/`1` booleans.
fn same_value(ours: &str, theirs: &str) -> bool {
    ours == theirs || matches!((ours, theirs), ("false", "0") | ("true", "1"))
}

fn sorted_pairs(ext: &ExtFields) -> Vec<(String, String)> {
    let mut v: Vec<_> = ext
        .iter()
        .filter(|(k, _)| *k != "ReqT")
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    v.sort();
    v
}

#[derive(Default, Debug)]
struct Tally {
    parsed: usize,
    /// Frames that lack a required field on the wire too (the misc scenarios send such requests
    /// on purpose; error responses carry no header).
    missing: usize,
    exact: usize,
    ordered: usize,
}

struct Golden<'a> {
    entry: &'a Value,
    cmd: RemotingCommand,
    file: &'a str,
}

impl Golden<'_> {
    fn java_sender(&self) -> bool {
        self.entry["direction"] == "broker->client"
            || self.entry["direction"] == "namesrv->client"
            || self.entry["client"] == "java-4.9.8"
    }

    /// Parses the typed header, checks it against the index and returns it for spot checks.
    /// `fast_coded`: Java writes this header with its fixed-order binary codec.
    fn check<H: CommandHeader + Debug>(
        &self,
        tally: &mut Tally,
        fast_coded: bool,
        spot: impl FnOnce(&H, &Idx),
    ) {
        let file = self.file;
        let idx = Idx(self.entry["decoded_header"]["extFields"].as_object());
        let h = match H::from_command(&self.cmd) {
            Ok(h) => h,
            Err(HeaderError::Missing(k)) => {
                assert_eq!(idx.s(k), None, "{file}: {k} reported missing but is there");
                tally.missing += 1;
                return;
            }
            Err(e) => panic!("{file}: {e}"),
        };
        let ours = h.to_ext_fields();
        // Every value we would write is what the wire says; keys absent from the wire can only
        // be Java primitives that other clients leave out, and those read as false.
        for (k, v) in ours.iter() {
            match idx.s(k) {
                Some(w) => assert!(same_value(v, &w), "{file}: {k}: ours {v:?}, wire {w:?}"),
                None => assert_eq!(v, "false", "{file}: {k} invented"),
            }
        }
        spot(&h, &idx);
        if self.java_sender() {
            let wire = self.cmd.ext_fields.clone().unwrap_or_default();
            assert_eq!(
                sorted_pairs(&ours),
                sorted_pairs(&wire),
                "{file}: not what Java sends"
            );
            tally.exact += 1;
            if fast_coded && self.cmd.serialize_type == SerializeType::RocketMq {
                let wire_order: Vec<_> = wire.keys().filter(|k| *k != "ReqT").collect();
                assert_eq!(
                    ours.keys().collect::<Vec<_>>(),
                    wire_order,
                    "{file}: key order"
                );
                tally.ordered += 1;
            }
        }
        tally.parsed += 1;
    }
}

/// Spot checks of a send request against the fixture decoder's own reading of it.
fn check_send(h: &SendMessageRequestHeader, e: &Value, code: i64) {
    let sd = &e["send_request_decoded"];
    let file = e["file"].as_str().unwrap();
    assert_eq!(
        Some(h.producer_group.as_str()),
        sd["producerGroup"].as_str(),
        "{file}"
    );
    assert_eq!(Some(h.topic.as_str()), sd["topic"].as_str(), "{file}");
    assert_eq!(Some(h.queue_id as i64), sd["queueId"].as_i64(), "{file}");
    assert_eq!(Some(h.sys_flag as i64), sd["sysFlag"].as_i64(), "{file}");
    assert_eq!(
        Some(h.born_timestamp),
        sd["bornTimestamp"].as_i64(),
        "{file}"
    );
    assert_eq!(Some(h.flag as i64), sd["flag"].as_i64(), "{file}");
    assert_eq!(
        h.properties.as_deref(),
        sd["properties_raw"].as_str(),
        "{file}"
    );
    assert_eq!(h.batch, sd["batch"].as_bool().unwrap_or(false), "{file}");
    assert_eq!(h.batch, code == 320, "{file}");
}

#[test]
fn golden_fixture_headers() {
    let index = common::index();
    let mut tallies: BTreeMap<String, Tally> = BTreeMap::new();
    for e in &index {
        let file = e["file"].as_str().unwrap();
        let cmd = RemotingCommand::from_frame(&common::frame(e))
            .unwrap_or_else(|err| panic!("{file}: {err}"));
        let g = Golden {
            entry: e,
            cmd,
            file,
        };
        let is_response = e["is_response"].as_bool().unwrap();
        let Some(code) = (if is_response {
            e["request_code"].as_i64()
        } else {
            e["code"].as_i64()
        }) else {
            continue;
        };
        let label = format!("{}{code}", if is_response { "resp " } else { "req " });
        let mut t = Tally::default();
        match (is_response, code) {
            (false, 310 | 320) => g.check(&mut t, true, |h: &SendMessageRequestHeaderV2, _| {
                check_send(&h.clone().into(), e, code)
            }),
            (false, 10) => g.check(&mut t, false, |h: &SendMessageRequestHeader, _| {
                check_send(h, e, code);
                let v2 = SendMessageRequestHeaderV2::from(h.clone());
                assert_eq!(SendMessageRequestHeader::from(v2), *h);
            }),
            (false, 11) => g.check(&mut t, true, |h: &PullMessageRequestHeader, i| {
                assert_eq!(Some(h.consumer_group.clone()), i.s("consumerGroup"));
                assert_eq!(Some(h.topic.clone()), i.s("topic"));
                assert_eq!(Some(h.queue_id as i64), i.n("queueId"));
                assert_eq!(Some(h.queue_offset), i.n("queueOffset"));
                assert_eq!(Some(h.max_msg_nums as i64), i.n("maxMsgNums"));
                assert_eq!(Some(h.sys_flag as i64), i.n("sysFlag"));
                assert_eq!(Some(h.commit_offset), i.n("commitOffset"));
                assert_eq!(Some(h.suspend_timeout_millis), i.n("suspendTimeoutMillis"));
                assert_eq!(h.subscription, i.s("subscription"));
                assert_eq!(Some(h.sub_version), i.n("subVersion"));
                assert_eq!(h.expression_type, i.s("expressionType"));
                assert_eq!(h.bname, i.s("bname"));
            }),
            (false, 14) => g.check(&mut t, false, |h: &QueryConsumerOffsetRequestHeader, i| {
                assert_eq!(Some(h.consumer_group.clone()), i.s("consumerGroup"));
                assert_eq!(Some(h.topic.clone()), i.s("topic"));
                assert_eq!(Some(h.queue_id as i64), i.n("queueId"));
                assert_eq!(h.bname, i.s("bname"));
            }),
            (false, 15) => g.check(&mut t, false, |h: &UpdateConsumerOffsetRequestHeader, i| {
                assert_eq!(Some(h.consumer_group.clone()), i.s("consumerGroup"));
                assert_eq!(Some(h.queue_id as i64), i.n("queueId"));
                assert_eq!(Some(h.commit_offset), i.n("commitOffset"));
            }),
            (false, 29) => g.check(&mut t, false, |h: &SearchOffsetRequestHeader, i| {
                assert_eq!(Some(h.topic.clone()), i.s("topic"));
                assert_eq!(Some(h.queue_id as i64), i.n("queueId"));
                assert_eq!(Some(h.timestamp), i.n("timestamp"));
                assert_eq!(h.boundary_type, None);
            }),
            (false, 30) => g.check(&mut t, false, |h: &GetMaxOffsetRequestHeader, i| {
                assert_eq!(Some(h.topic.clone()), i.s("topic"));
                assert_eq!(Some(h.queue_id as i64), i.n("queueId"));
                assert_eq!(h.committed, None);
            }),
            (false, 31) => g.check(&mut t, false, |h: &GetMinOffsetRequestHeader, i| {
                assert_eq!(Some(h.queue_id as i64), i.n("queueId"));
            }),
            (false, 32) => g.check(
                &mut t,
                false,
                |h: &GetEarliestMsgStoretimeRequestHeader, i| {
                    assert_eq!(Some(h.queue_id as i64), i.n("queueId"));
                },
            ),
            (false, 33) => g.check(&mut t, false, |h: &ViewMessageRequestHeader, i| {
                assert_eq!(Some(h.offset), i.n("offset"));
            }),
            (false, 12) => g.check(&mut t, false, |h: &QueryMessageRequestHeader, i| {
                assert_eq!(Some(h.key.clone()), i.s("key"));
                assert_eq!(Some(h.max_num as i64), i.n("maxNum"));
                assert_eq!(Some(h.end_timestamp), i.n("endTimestamp"));
                let unique = i.s("_UNIQUE_KEY_QUERY").map(|s| s == "true");
                assert_eq!(Some(h.unique_key_query), unique);
            }),
            (false, 35) => g.check(&mut t, false, |h: &UnregisterClientRequestHeader, i| {
                assert_eq!(Some(h.client_id.clone()), i.s("clientID"));
                assert_eq!(h.producer_group, i.s("producerGroup"));
                assert_eq!(h.consumer_group, i.s("consumerGroup"));
            }),
            (false, 36) => g.check(&mut t, false, |h: &ConsumerSendMsgBackRequestHeader, i| {
                assert_eq!(Some(h.offset), i.n("offset"));
                assert_eq!(Some(h.group.clone()), i.s("group"));
                assert_eq!(Some(h.delay_level as i64), i.n("delayLevel"));
                assert_eq!(h.origin_msg_id, i.s("originMsgId"));
                assert_eq!(
                    h.max_reconsume_times.map(i64::from),
                    i.n("maxReconsumeTimes")
                );
            }),
            (false, 38) => g.check(
                &mut t,
                false,
                |h: &GetConsumerListByGroupRequestHeader, i| {
                    assert_eq!(Some(h.consumer_group.clone()), i.s("consumerGroup"));
                },
            ),
            (false, 40) => g.check(
                &mut t,
                false,
                |h: &NotifyConsumerIdsChangedRequestHeader, i| {
                    assert_eq!(Some(h.consumer_group.clone()), i.s("consumerGroup"));
                },
            ),
            (false, 105) => g.check(&mut t, false, |h: &GetRouteInfoRequestHeader, i| {
                assert_eq!(Some(h.topic.clone()), i.s("topic"));
                let accept = i.s("acceptStandardJsonOnly").map(|s| s == "true");
                assert_eq!(h.accept_standard_json_only, accept);
            }),
            (true, 10 | 310 | 320) => g.check(&mut t, true, |h: &SendMessageResponseHeader, i| {
                assert_eq!(Some(h.msg_id.clone()), i.s("msgId"));
                assert_eq!(Some(h.queue_id as i64), i.n("queueId"));
                assert_eq!(Some(h.queue_offset), i.n("queueOffset"));
                assert_eq!(h.msg_id.contains(','), code == 320);
                assert_eq!(h.trace_on, Some(true));
                assert_eq!(h.msg_region.as_deref(), Some("DefaultRegion"));
                assert_eq!(h.transaction_id, None);
            }),
            (true, 11) => g.check(&mut t, true, |h: &PullMessageResponseHeader, i| {
                assert_eq!(Some(h.suggest_which_broker_id), i.n("suggestWhichBrokerId"));
                assert_eq!(Some(h.next_begin_offset), i.n("nextBeginOffset"));
                assert_eq!(Some(h.min_offset), i.n("minOffset"));
                assert_eq!(Some(h.max_offset), i.n("maxOffset"));
                assert!(h.min_offset <= h.max_offset);
            }),
            (true, 14) => g.check(&mut t, false, |h: &QueryConsumerOffsetResponseHeader, i| {
                assert_eq!(Some(h.offset), i.n("offset"));
            }),
            (true, 29) => g.check(&mut t, false, |h: &SearchOffsetResponseHeader, i| {
                assert_eq!(Some(h.offset), i.n("offset"));
            }),
            (true, 30) => g.check(&mut t, false, |h: &GetMaxOffsetResponseHeader, i| {
                assert_eq!(Some(h.offset), i.n("offset"));
            }),
            (true, 31) => g.check(&mut t, false, |h: &GetMinOffsetResponseHeader, i| {
                assert_eq!(Some(h.offset), i.n("offset"));
            }),
            (true, 32) => g.check(
                &mut t,
                false,
                |h: &GetEarliestMsgStoretimeResponseHeader, i| {
                    assert_eq!(Some(h.timestamp), i.n("timestamp"));
                },
            ),
            (true, 12) => g.check(&mut t, false, |h: &QueryMessageResponseHeader, i| {
                assert_eq!(
                    Some(h.index_last_update_timestamp),
                    i.n("indexLastUpdateTimestamp")
                );
                assert_eq!(
                    Some(h.index_last_update_phyoffset),
                    i.n("indexLastUpdatePhyoffset")
                );
            }),
            _ => continue,
        }
        let total = tallies.entry(label).or_default();
        total.parsed += t.parsed;
        total.missing += t.missing;
        total.exact += t.exact;
        total.ordered += t.ordered;
    }

    let expected = [
        "req 10", "req 310", "req 320", "req 11", "req 14", "req 15", "req 29", "req 30", "req 31",
        "req 32", "req 33", "req 12", "req 35", "req 36", "req 38", "req 40", "req 105", "resp 10",
        "resp 310", "resp 320", "resp 11", "resp 14", "resp 29", "resp 30", "resp 31", "resp 32",
        "resp 12",
    ];
    for (label, t) in &tallies {
        eprintln!(
            "{label:>9}: parsed {:>3}, missing-on-wire {:>2}, Java-exact {:>3}, binary-order {:>2}",
            t.parsed, t.missing, t.exact, t.ordered
        );
    }
    for label in expected {
        let t = tallies
            .get(label)
            .unwrap_or_else(|| panic!("no {label} frame"));
        assert!(t.parsed > 0, "{label}: nothing parsed");
    }
    // The binary fast codec's order was compared on at least one frame of each such header.
    for label in [
        "req 310", "req 320", "req 11", "resp 310", "resp 320", "resp 11",
    ] {
        assert!(tallies[label].ordered > 0, "{label}: no binary order check");
    }
    // Only the deliberately broken GET_MAX_OFFSET / route requests and error responses lack
    // required fields.
    let missing: usize = tallies.values().map(|t| t.missing).sum();
    assert!(missing > 0 && missing < 20, "{missing}");
}

// ---------------------------------------------------------------------------------------------
// 2. Worked examples L and M (docs/protocol.md §18).

fn header_text(cmd: &RemotingCommand) -> String {
    let frame = cmd.to_frame().unwrap();
    let header_len = u32::from_be_bytes([0, frame[5], frame[6], frame[7]]) as usize;
    String::from_utf8(frame[8..8 + header_len].to_vec()).unwrap()
}

fn example_l_header() -> SendMessageRequestHeaderV2 {
    SendMessageRequestHeaderV2 {
        producer_group: "PG_TEST".into(),
        topic: "TestTopic".into(),
        default_topic: "TBW102".into(),
        default_topic_queue_nums: 4,
        queue_id: 0,
        sys_flag: 0,
        born_timestamp: 1_700_000_000_000,
        flag: 0,
        properties: Some(
            "UNIQ_KEY\u{1}7F0000010B7C18B4AAC21A2B3C4D0000\u{2}WAIT\u{1}true\u{2}TAGS\u{1}TagA\u{2}"
                .into(),
        ),
        reconsume_times: Some(0),
        unit_mode: false,
        max_reconsume_times: None,
        batch: false,
        bname: Some("broker-a".into()),
    }
}

const EXAMPLE_L: &str = r#"{"code":310,"extFields":{"a":"PG_TEST","b":"TestTopic","c":"TBW102","d":"4","e":"0","f":"0","g":"1700000000000","h":"0","i":"UNIQ_KEY\u00017F0000010B7C18B4AAC21A2B3C4D0000\u0002WAIT\u0001true\u0002TAGS\u0001TagA\u0002","j":"0","k":"false","m":"false","n":"broker-a"},"flag":0,"language":"JAVA","opaque":7,"serializeTypeCurrentRPC":"JSON","version":409}"#;

const EXAMPLE_M: &str = r#"{"code":11,"extFields":{"bname":"broker-a","commitOffset":"120","consumerGroup":"CG_TEST","expressionType":"TAG","maxMsgBytes":"262144","maxMsgNums":"32","queueId":"0","queueOffset":"128","subVersion":"1700000000000","suspendTimeoutMillis":"15000","sysFlag":"3","topic":"TestTopic"},"flag":0,"language":"JAVA","opaque":42,"serializeTypeCurrentRPC":"JSON","version":479}"#;

fn java_request(code: RequestCode, ext: ExtFields, version: i32, opaque: i32) -> RemotingCommand {
    let mut cmd = RemotingCommand::request(code, ext);
    cmd.language = LanguageCode::Java;
    cmd.version = version;
    cmd.opaque = opaque;
    cmd.json_rpc_type_member = true;
    cmd
}

#[test]
fn example_l_send_message_v2() {
    let h = example_l_header();
    let cmd =
        java_request(RequestCode::SendMessageV2, h.to_ext_fields(), 409, 7).with_body("Hello");
    assert_eq!(header_text(&cmd), EXAMPLE_L);
    let frame = cmd.to_frame().unwrap();
    assert_eq!(EXAMPLE_L.len(), 352);
    assert_eq!(&frame[..4], &361u32.to_be_bytes());
    let back = RemotingCommand::from_frame(&frame).unwrap();
    assert_eq!(SendMessageRequestHeaderV2::from_command(&back).unwrap(), h);

    // The same request as SEND_MESSAGE uses the long names the example lists.
    let v1 = SendMessageRequestHeader::from(h.clone());
    let keys: Vec<_> = v1.to_ext_fields().keys().map(str::to_owned).collect();
    let mut want = [
        "producerGroup",
        "topic",
        "defaultTopic",
        "defaultTopicQueueNums",
        "queueId",
        "sysFlag",
        "bornTimestamp",
        "flag",
        "properties",
        "reconsumeTimes",
        "unitMode",
        "batch",
        "bname",
    ];
    let mut got = keys.clone();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    assert_eq!(SendMessageRequestHeaderV2::from(v1), h);
}

#[test]
fn example_m_pull_message() {
    let h = PullMessageRequestHeader {
        consumer_group: "CG_TEST".into(),
        topic: "TestTopic".into(),
        queue_id: 0,
        queue_offset: 128,
        max_msg_nums: 32,
        sys_flag: PullMessageRequestHeader::FLAG_COMMIT_OFFSET
            | PullMessageRequestHeader::FLAG_SUSPEND,
        commit_offset: 120,
        suspend_timeout_millis: 15_000,
        subscription: None,
        sub_version: 1_700_000_000_000,
        expression_type: Some("TAG".into()),
        max_msg_bytes: Some(262_144),
        bname: Some("broker-a".into()),
        ..Default::default()
    };
    let ext = h.to_ext_fields();
    // Our order is the binary codec's (5.x adds maxMsgBytes after expressionType) ...
    assert_eq!(
        ext.keys().collect::<Vec<_>>(),
        [
            "consumerGroup",
            "topic",
            "queueId",
            "queueOffset",
            "maxMsgNums",
            "sysFlag",
            "commitOffset",
            "suspendTimeoutMillis",
            "subVersion",
            "expressionType",
            "maxMsgBytes",
            "bname",
        ]
    );
    // ... while the example lists the members alphabetically; the content is identical.
    let mut pairs = ext.into_inner();
    pairs.sort();
    let cmd = java_request(
        RequestCode::PullMessage,
        pairs.into_iter().collect(),
        479,
        42,
    );
    assert_eq!(header_text(&cmd), EXAMPLE_M);
    let back = RemotingCommand::from_frame(&cmd.to_frame().unwrap()).unwrap();
    assert_eq!(PullMessageRequestHeader::from_command(&back).unwrap(), h);

    // The matching PULL_NOT_FOUND response, 4.9 form and with the 5.x extras.
    let resp: ExtFields = [
        ("maxOffset", "128"),
        ("minOffset", "0"),
        ("nextBeginOffset", "128"),
        ("suggestWhichBrokerId", "0"),
    ]
    .into_iter()
    .collect();
    let r = PullMessageResponseHeader::read_from(&resp).unwrap();
    let want = PullMessageResponseHeader {
        suggest_which_broker_id: 0,
        next_begin_offset: 128,
        min_offset: 0,
        max_offset: 128,
        ..Default::default()
    };
    assert_eq!(r, want);
    let mut resp5 = resp.clone();
    resp5.insert("groupSysFlag", "0");
    resp5.insert("topicSysFlag", "0");
    let r5 = PullMessageResponseHeader::read_from(&resp5).unwrap();
    assert_eq!((r5.group_sys_flag, r5.topic_sys_flag), (Some(0), Some(0)));
}

// ---------------------------------------------------------------------------------------------
// 3. Round trips.

fn any_text() -> impl Strategy<Value = String> + Clone {
    "(?s).{0,12}"
}

/// The binary header cannot carry empty strings (they read back as absent).
fn wire_text() -> impl Strategy<Value = String> + Clone {
    "(?s).{1,12}"
}

fn send_v2(
    s: impl Strategy<Value = String> + Clone,
) -> impl Strategy<Value = SendMessageRequestHeaderV2> {
    (
        (
            s.clone(),
            s.clone(),
            s.clone(),
            any::<i32>(),
            any::<i32>(),
            any::<i32>(),
        ),
        (any::<i64>(), any::<i32>(), proptest::option::of(s.clone())),
        (
            any::<Option<i32>>(),
            any::<bool>(),
            any::<Option<i32>>(),
            any::<bool>(),
        ),
        proptest::option::of(s),
    )
        .prop_map(|((a, b, c, d, e, f), (g, h, i), (j, k, l, m), n)| {
            SendMessageRequestHeaderV2 {
                producer_group: a,
                topic: b,
                default_topic: c,
                default_topic_queue_nums: d,
                queue_id: e,
                sys_flag: f,
                born_timestamp: g,
                flag: h,
                properties: i,
                reconsume_times: j,
                unit_mode: k,
                max_reconsume_times: l,
                batch: m,
                bname: n,
            }
        })
}

fn pull_request(
    s: impl Strategy<Value = String> + Clone,
) -> impl Strategy<Value = PullMessageRequestHeader> {
    let opt = move || proptest::option::of(s.clone());
    (
        (
            opt(),
            opt(),
            any::<i32>(),
            any::<i64>(),
            any::<i32>(),
            any::<i32>(),
        ),
        (any::<i64>(), any::<i64>(), opt(), any::<i64>(), opt()),
        (any::<Option<i32>>(), any::<Option<i32>>(), opt(), opt()),
    )
        .prop_map(
            |((cg, t, q, qo, mn, sf), (co, st, sub, sv, et), (mb, rs, px, bn))| {
                PullMessageRequestHeader {
                    consumer_group: cg.unwrap_or_else(|| "g".into()),
                    topic: t.unwrap_or_else(|| "t".into()),
                    queue_id: q,
                    queue_offset: qo,
                    max_msg_nums: mn,
                    sys_flag: sf,
                    commit_offset: co,
                    suspend_timeout_millis: st,
                    subscription: sub,
                    sub_version: sv,
                    expression_type: et,
                    max_msg_bytes: mb,
                    request_source: rs,
                    proxy_froward_client_id: px,
                    bname: bn,
                }
            },
        )
}

fn send_response(
    s: impl Strategy<Value = String> + Clone,
) -> impl Strategy<Value = SendMessageResponseHeader> {
    let opt = proptest::option::of(s.clone());
    (
        s,
        any::<i32>(),
        any::<i64>(),
        (opt.clone(), opt.clone(), opt.clone()),
        any::<Option<bool>>(),
        opt,
    )
        .prop_map(
            |(msg_id, queue_id, queue_offset, (tx, bu, rh), trace_on, region)| {
                SendMessageResponseHeader {
                    msg_id,
                    queue_id,
                    queue_offset,
                    transaction_id: tx,
                    batch_uniq_id: bu,
                    recall_handle: rh,
                    trace_on,
                    msg_region: region,
                }
            },
        )
}

fn pull_response() -> impl Strategy<Value = PullMessageResponseHeader> {
    (
        any::<[i64; 4]>(),
        any::<Option<i64>>(),
        any::<[Option<i32>; 3]>(),
    )
        .prop_map(
            |([s, n, lo, hi], d, [tf, gf, fb])| PullMessageResponseHeader {
                suggest_which_broker_id: s,
                next_begin_offset: n,
                min_offset: lo,
                max_offset: hi,
                offset_delta: d,
                topic_sys_flag: tf,
                group_sys_flag: gf,
                forbidden_type: fb,
            },
        )
}

fn search_offset(
    s: impl Strategy<Value = String> + Clone,
) -> impl Strategy<Value = SearchOffsetRequestHeader> {
    let boundary = proptest::option::of(prop_oneof![
        Just(BoundaryType::Lower),
        Just(BoundaryType::Upper)
    ]);
    (
        s.clone(),
        any::<i32>(),
        any::<i64>(),
        boundary,
        proptest::option::of(s),
    )
        .prop_map(|(topic, queue_id, timestamp, boundary_type, bname)| {
            SearchOffsetRequestHeader {
                topic,
                queue_id,
                timestamp,
                boundary_type,
                bname,
            }
        })
}

fn send_back(
    s: impl Strategy<Value = String> + Clone,
) -> impl Strategy<Value = ConsumerSendMsgBackRequestHeader> {
    let opt = proptest::option::of(s.clone());
    (
        any::<i64>(),
        s,
        any::<i32>(),
        (opt.clone(), opt.clone()),
        any::<bool>(),
        any::<Option<i32>>(),
        opt,
    )
        .prop_map(
            |(offset, group, delay_level, (mid, mt), unit_mode, mrt, bname)| {
                ConsumerSendMsgBackRequestHeader {
                    offset,
                    group,
                    delay_level,
                    origin_msg_id: mid,
                    origin_topic: mt,
                    unit_mode,
                    max_reconsume_times: mrt,
                    bname,
                }
            },
        )
}

fn create_topic(
    s: impl Strategy<Value = String> + Clone,
) -> impl Strategy<Value = UpdateAndCreateTopicRequestHeader> {
    let filter = prop_oneof![
        Just(TopicFilterType::SingleTag),
        Just(TopicFilterType::MultiTag)
    ];
    (
        (s.clone(), s.clone(), any::<[i32; 3]>(), filter),
        (
            any::<Option<i32>>(),
            any::<bool>(),
            proptest::option::of(s),
            any::<Option<bool>>(),
        ),
    )
        .prop_map(|((topic, dt, [r, w, p], f), (tsf, order, attrs, force))| {
            UpdateAndCreateTopicRequestHeader {
                topic,
                default_topic: dt,
                read_queue_nums: r,
                write_queue_nums: w,
                perm: p,
                topic_filter_type: f,
                topic_sys_flag: tsf,
                order,
                attributes: attrs,
                force,
            }
        })
}

fn reset_offset(
    s: impl Strategy<Value = String> + Clone,
) -> impl Strategy<Value = ResetOffsetRequestHeader> {
    (
        s.clone(),
        s,
        any::<i64>(),
        any::<bool>(),
        any::<Option<i32>>(),
        any::<Option<i64>>(),
    )
        .prop_map(|(topic, group, timestamp, is_force, queue_id, offset)| {
            ResetOffsetRequestHeader {
                topic,
                group,
                timestamp,
                is_force,
                queue_id,
                offset,
            }
        })
}

fn query_message(
    s: impl Strategy<Value = String> + Clone,
) -> impl Strategy<Value = QueryMessageRequestHeader> {
    (
        s.clone(),
        s,
        any::<i32>(),
        any::<i64>(),
        any::<i64>(),
        any::<bool>(),
    )
        .prop_map(
            |(topic, key, max_num, begin_timestamp, end_timestamp, unique_key_query)| {
                QueryMessageRequestHeader {
                    topic,
                    key,
                    max_num,
                    begin_timestamp,
                    end_timestamp,
                    unique_key_query,
                }
            },
        )
}

fn map_roundtrip<H: CommandHeader + PartialEq + Debug>(h: &H) {
    assert_eq!(&H::read_from(&h.to_ext_fields()).unwrap(), h);
}

fn frame_roundtrip<H: CommandHeader + PartialEq + Debug>(h: &H) {
    for t in [SerializeType::Json, SerializeType::RocketMq] {
        let cmd = RemotingCommand::request(RequestCode::Unknown(1234), h.to_ext_fields())
            .with_serialize_type(t);
        let back = RemotingCommand::from_frame(&cmd.to_frame().unwrap()).unwrap();
        assert_eq!(&H::from_command(&back).unwrap(), h, "{t:?}");
    }
}

proptest! {
    #[test]
    fn send_v2_roundtrips(a in send_v2(any_text()), b in send_v2(wire_text())) {
        map_roundtrip(&a);
        frame_roundtrip(&b);
        // V1 carries the same contents under the long names.
        let v1 = SendMessageRequestHeader::from(a.clone());
        map_roundtrip(&v1);
        prop_assert_eq!(SendMessageRequestHeaderV2::from(v1), a);
    }

    #[test]
    fn pull_request_roundtrips(a in pull_request(any_text()), b in pull_request(wire_text())) {
        map_roundtrip(&a);
        frame_roundtrip(&b);
    }

    #[test]
    fn send_response_roundtrips(a in send_response(any_text()), b in send_response(wire_text())) {
        map_roundtrip(&a);
        frame_roundtrip(&b);
    }

    #[test]
    fn pull_response_roundtrips(a in pull_response()) {
        map_roundtrip(&a);
        frame_roundtrip(&a);
    }

    #[test]
    fn admin_and_callback_roundtrips(
        so in (search_offset(any_text()), search_offset(wire_text())),
        sb in (send_back(any_text()), send_back(wire_text())),
        ct in (create_topic(any_text()), create_topic(wire_text())),
        ro in (reset_offset(any_text()), reset_offset(wire_text())),
        qm in (query_message(any_text()), query_message(wire_text())),
    ) {
        map_roundtrip(&so.0);
        frame_roundtrip(&so.1);
        map_roundtrip(&sb.0);
        frame_roundtrip(&sb.1);
        map_roundtrip(&ct.0);
        frame_roundtrip(&ct.1);
        map_roundtrip(&ro.0);
        frame_roundtrip(&ro.1);
        map_roundtrip(&qm.0);
        frame_roundtrip(&qm.1);
    }

    /// Reading never panics, whatever the values.
    #[test]
    fn arbitrary_maps_never_panic(
        pairs in proptest::collection::vec(
            (prop_oneof![
                Just("a".to_owned()), Just("e".to_owned()), Just("g".to_owned()),
                Just("k".to_owned()), Just("queueId".to_owned()), Just("boundaryType".to_owned()),
                Just("topicFilterType".to_owned()), any_text()
            ], any_text()),
            0..16,
        )
    ) {
        let ext: ExtFields = pairs.into_iter().collect();
        let _ = SendMessageRequestHeaderV2::read_from(&ext);
        let _ = PullMessageRequestHeader::read_from(&ext);
        let _ = SearchOffsetRequestHeader::read_from(&ext);
        let _ = UpdateAndCreateTopicRequestHeader::read_from(&ext);
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Errors and leniency.

fn ext(pairs: &[(&str, &str)]) -> ExtFields {
    pairs.iter().copied().collect()
}

fn query_offset_ext() -> ExtFields {
    ext(&[("consumerGroup", "g"), ("topic", "t"), ("queueId", "3")])
}

#[test]
fn missing_required_field() {
    let mut e = query_offset_ext();
    e.remove("topic");
    assert_eq!(
        QueryConsumerOffsetRequestHeader::read_from(&e),
        Err(HeaderError::Missing("topic"))
    );
    assert_eq!(
        SendMessageRequestHeaderV2::read_from(&ExtFields::new()),
        Err(HeaderError::Missing("a"))
    );
    let no_ext = RemotingCommand::request(RequestCode::GetMaxOffset, ExtFields::new());
    let no_ext = RemotingCommand {
        ext_fields: None,
        ..no_ext
    };
    assert_eq!(
        GetMaxOffsetRequestHeader::from_command(&no_ext),
        Err(HeaderError::Missing("topic"))
    );
    // Optional fields and Java primitives may be absent.
    let h = QueryConsumerOffsetRequestHeader::read_from(&query_offset_ext()).unwrap();
    assert_eq!(
        (h.queue_id, h.set_zero_if_not_found, h.bname),
        (3, None, None)
    );
    let gr = GetConsumerRunningInfoRequestHeader::read_from(&ext(&[
        ("consumerGroup", "g"),
        ("clientId", "c"),
    ]))
    .unwrap();
    assert!(!gr.jstack_enable);
}

#[test]
fn garbage_values_are_invalid() {
    for bad in ["x", "", " 3", "3 ", "3.0", "0x3", "2147483648"] {
        let mut e = query_offset_ext();
        e.insert("queueId", bad);
        assert_eq!(
            QueryConsumerOffsetRequestHeader::read_from(&e),
            Err(HeaderError::Invalid {
                field: "queueId",
                value: bad.to_owned()
            }),
            "{bad:?}"
        );
    }
    let mut e = query_offset_ext();
    e.insert("setZeroIfNotFound", "yes");
    assert!(matches!(
        QueryConsumerOffsetRequestHeader::read_from(&e),
        Err(HeaderError::Invalid {
            field: "setZeroIfNotFound",
            ..
        })
    ));
    let mut e = ext(&[
        ("topic", "t"),
        ("defaultTopic", "TBW102"),
        ("readQueueNums", "4"),
        ("writeQueueNums", "4"),
        ("perm", "6"),
        ("topicFilterType", "single_tag"),
        ("order", "false"),
    ]);
    assert!(matches!(
        UpdateAndCreateTopicRequestHeader::read_from(&e),
        Err(HeaderError::Invalid {
            field: "topicFilterType",
            ..
        })
    ));
    e.insert("topicFilterType", "MULTI_TAG");
    let h = UpdateAndCreateTopicRequestHeader::read_from(&e).unwrap();
    assert_eq!(h.topic_filter_type, TopicFilterType::MultiTag);
    // Numbers keep full 64-bit range and a sign, as Java's parseLong does.
    let mut e = query_offset_ext();
    e.insert("queueId", "+7");
    assert_eq!(
        QueryConsumerOffsetRequestHeader::read_from(&e)
            .unwrap()
            .queue_id,
        7
    );
    let r =
        QueryConsumerOffsetResponseHeader::read_from(&ext(&[("offset", "-9223372036854775808")]));
    assert_eq!(r.unwrap().offset, i64::MIN);
}

#[test]
fn booleans_are_lenient() {
    for (text, want) in [
        ("true", true),
        ("TRUE", true),
        ("True", true),
        ("1", true),
        ("false", false),
        ("FALSE", false),
        ("0", false),
    ] {
        let mut e = query_offset_ext();
        e.insert("setZeroIfNotFound", text);
        let h = QueryConsumerOffsetRequestHeader::read_from(&e).unwrap();
        assert_eq!(h.set_zero_if_not_found, Some(want), "{text}");
        // ... but always written the Java way.
        assert_eq!(
            h.to_ext_fields().get("setZeroIfNotFound"),
            Some(want.to_string().as_str())
        );
    }
}

#[test]
fn boundary_type_reads_like_the_5x_broker() {
    let base = ext(&[("topic", "t"), ("queueId", "0"), ("timestamp", "1")]);
    for (text, want) in [
        ("UPPER", BoundaryType::Upper),
        ("upper", BoundaryType::Upper),
        ("LOWER", BoundaryType::Lower),
        ("whatever", BoundaryType::Lower),
    ] {
        let mut e = base.clone();
        e.insert("boundaryType", text);
        let h = SearchOffsetRequestHeader::read_from(&e).unwrap();
        assert_eq!(h.boundary_type, Some(want));
    }
    let h = SearchOffsetRequestHeader::read_from(&base).unwrap();
    assert_eq!(h.boundary_type, None);
    let h = SearchOffsetRequestHeader {
        boundary_type: Some(BoundaryType::Upper),
        ..h
    };
    assert_eq!(h.to_ext_fields().get("boundaryType"), Some("UPPER"));
}

#[test]
fn unknown_keys_ignored_and_existing_keys_replaced_in_place() {
    let mut e = query_offset_ext();
    e.insert("ReqT", "0");
    e.insert("ns", "whatever");
    let h = QueryConsumerOffsetRequestHeader::read_from(&e).unwrap();
    assert_eq!(h.consumer_group, "g");

    // write_to onto a map that already has a hook's key and a stale value.
    let mut target = ext(&[("ReqT", "0"), ("queueId", "99")]);
    h.write_to(&mut target);
    assert_eq!(
        target.keys().collect::<Vec<_>>(),
        ["ReqT", "queueId", "consumerGroup", "topic"]
    );
    assert_eq!(target.get("queueId"), Some("3"));
}

#[test]
fn defaulted_primitives_and_always_written_flags() {
    // ali-ons sends no `m`/`n`; the C++ client no `unitMode` on send-back.
    let v2 = SendMessageRequestHeaderV2::read_from(&ext(&[
        ("a", "p"),
        ("b", "t"),
        ("c", "TBW102"),
        ("d", "4"),
        ("e", "0"),
        ("f", "0"),
        ("g", "1"),
        ("h", "0"),
    ]))
    .unwrap();
    assert!(!v2.batch && !v2.unit_mode);
    assert_eq!(v2.to_ext_fields().get("m"), Some("false"));
    let q = QueryMessageRequestHeader {
        topic: "t".into(),
        key: "k".into(),
        max_num: 32,
        begin_timestamp: 0,
        end_timestamp: 1,
        unique_key_query: true,
    };
    assert_eq!(q.to_ext_fields().get("_UNIQUE_KEY_QUERY"), Some("true"));
    let e = EndTransactionRequestHeader {
        producer_group: "p".into(),
        commit_or_rollback: EndTransactionRequestHeader::COMMIT,
        msg_id: "m".into(),
        ..Default::default()
    };
    assert_eq!(e.to_ext_fields().get("commitOrRollback"), Some("8"));
    assert_eq!(e.to_ext_fields().get("fromTransactionCheck"), None);
}
