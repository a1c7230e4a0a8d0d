//! Message records, send bodies, batches and JSON bodies of the real 4.9.8 captures.

mod common;

use base64::Engine;
use bytes::{Bytes, BytesMut};
use rmq_remoting::body::{
    self, ClusterInfo, ConsumerListBody, HeartbeatData, LockBatchRequestBody,
    LockBatchResponseBody, TopicRouteData,
};
use rmq_remoting::message::{self, stored, Properties};
use rmq_remoting::RemotingCommand;
use serde_json::Value;
use sha2::{Digest, Sha256};

fn sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn b64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

fn check_body(file: &str, want: &Value, stored: &[u8], body: &[u8]) {
    if want.get("compressed").is_some() {
        assert_eq!(
            stored,
            &b64(want["body_wire_b64"].as_str().unwrap())[..],
            "{file}"
        );
        assert_eq!(
            body.len() as u64,
            want["uncompressed_len"].as_u64().unwrap(),
            "{file}"
        );
        assert_eq!(
            sha(body),
            want["uncompressed_sha256"].as_str().unwrap(),
            "{file}"
        );
    } else {
        assert_eq!(
            body.len() as u64,
            want["body_len"].as_u64().unwrap(),
            "{file}"
        );
        assert_eq!(sha(body), want["body_sha256"].as_str().unwrap(), "{file}");
        if let Some(t) = want.get("body_utf8").and_then(Value::as_str) {
            assert_eq!(std::str::from_utf8(body).unwrap(), t, "{file}");
        }
    }
}

fn check_properties(file: &str, got: &Properties, want: &Value) {
    let raw = want["properties_raw"].as_str().unwrap();
    assert_eq!(got, &Properties::decode(raw), "{file}");
    for (k, v) in want["properties"].as_object().unwrap() {
        assert_eq!(got.get(k), v.as_str(), "{file} property {k}");
    }
    // Java 4.9.8 writes no trailing separator; where the sender did the same, so do we.
    if !raw.ends_with('\u{2}') {
        assert_eq!(got.encode(), raw, "{file} properties re-encoding");
    }
}

#[test]
fn stored_records_decode_and_reencode_exactly() {
    let mut records = 0;
    for e in common::index() {
        if e["body_kind"] != "messages" {
            continue;
        }
        let file = e["file"].as_str().unwrap();
        let cmd = RemotingCommand::from_frame(&common::frame(&e)).unwrap();
        let msgs =
            message::decode_messages(&cmd.body).unwrap_or_else(|err| panic!("{file}: {err}"));
        let want = e["messages"].as_array().unwrap();
        assert_eq!(msgs.len(), want.len(), "{file}");
        let mut reencoded = BytesMut::new();
        for (m, w) in msgs.iter().zip(want) {
            let i = |k: &str| w[k].as_i64().unwrap();
            assert_eq!(m.store_size as i64, i("totalSize"), "{file}");
            assert_eq!(m.version.magic() as i64, i("magicCode"), "{file}");
            assert_eq!(m.body_crc as i64, i("bodyCRC"), "{file}");
            assert_eq!(stored::body_crc(&m.stored_body), m.body_crc, "{file} CRC");
            assert_eq!(m.queue_id as i64, i("queueId"), "{file}");
            assert_eq!(m.flag as i64, i("flag"), "{file}");
            assert_eq!(m.queue_offset, i("queueOffset"), "{file}");
            assert_eq!(m.commit_log_offset, i("commitLogOffset"), "{file}");
            assert_eq!(m.sys_flag as i64, i("sysFlag"), "{file}");
            assert_eq!(m.born_timestamp, i("bornTimestamp"), "{file}");
            assert_eq!(m.store_timestamp, i("storeTimestamp"), "{file}");
            assert_eq!(
                m.born_host.to_string(),
                w["bornHost"].as_str().unwrap(),
                "{file}"
            );
            assert_eq!(
                m.store_host.to_string(),
                w["storeHost"].as_str().unwrap(),
                "{file}"
            );
            assert_eq!(m.reconsume_times as i64, i("reconsumeTimes"), "{file}");
            assert_eq!(
                m.prepared_transaction_offset,
                i("preparedTransactionOffset"),
                "{file}"
            );
            assert_eq!(m.topic, w["topic"].as_str().unwrap(), "{file}");
            assert_eq!(
                m.offset_msg_id(),
                w["offsetMsgId"].as_str().unwrap(),
                "{file}"
            );
            assert_eq!(m.msg_id(), w["msgId"].as_str().unwrap(), "{file}");
            check_properties(file, &m.properties, w);
            check_body(file, w, &m.stored_body, &m.body);
            stored::encode_stored(m, &mut reencoded).unwrap();
            records += 1;
        }
        assert_eq!(
            &reencoded[..],
            &cmd.body[..],
            "{file}: records re-encode byte for byte"
        );
    }
    // 55 distinct records (README), plus the relay-rewritten copies of two pull responses.
    assert_eq!(records, 57);
}

#[test]
fn send_bodies_and_batches() {
    let (mut singles, mut batches) = (0, 0);
    for e in common::index() {
        let kind = e["body_kind"].as_str().unwrap();
        let file = e["file"].as_str().unwrap();
        let cmd = RemotingCommand::from_frame(&common::frame(&e)).unwrap();
        let d = &e["send_request_decoded"];
        match kind {
            "message-body" | "message-body-compressed" => {
                let props = cmd.ext("i").or(cmd.ext("properties")).unwrap();
                let w = &e["messages"][0];
                check_properties(file, &Properties::decode(props), w);
                let sys: i32 = cmd
                    .ext("f")
                    .or(cmd.ext("sysFlag"))
                    .unwrap()
                    .parse()
                    .unwrap();
                assert_eq!(sys as i64, d["sysFlag"].as_i64().unwrap());
                let body = if sys & message::sys_flag::COMPRESSED != 0 {
                    let kind = message::CompressionType::from_sys_flag(sys).unwrap();
                    Bytes::from(message::compress::decompress(kind, &cmd.body, 1 << 24).unwrap())
                } else {
                    cmd.body.clone()
                };
                check_body(file, w, &cmd.body, &body);
                singles += 1;
            }
            "batch" => {
                let items = message::decode_batch(&cmd.body).unwrap();
                let want = e["messages"].as_array().unwrap();
                assert_eq!(items.len(), want.len(), "{file}");
                for (it, w) in items.iter().zip(want) {
                    assert_eq!(it.magic as i64, w["magicCode"].as_i64().unwrap());
                    assert_eq!(it.flag as i64, w["flag"].as_i64().unwrap());
                    assert_eq!(
                        it.encoded_len() as i64,
                        w["totalSize"].as_i64().unwrap(),
                        "{file}"
                    );
                    check_properties(file, &it.properties, w);
                    check_body(file, w, &it.body, &it.body);
                }
                let ids: Vec<&str> = items
                    .iter()
                    .map(|i| i.properties.get("UNIQ_KEY").unwrap())
                    .collect();
                assert_eq!(ids.join(","), d["msgId"].as_str().unwrap());
                assert_eq!(
                    &message::encode_batch(&items).unwrap()[..],
                    &cmd.body[..],
                    "{file}"
                );
                batches += 1;
            }
            _ => {}
        }
    }
    assert_eq!((singles, batches), (19, 2));
}

fn parse_and_compare<T>(file: &str, raw: &[u8], exact: bool)
where
    T: serde::de::DeserializeOwned + serde::Serialize,
{
    let parsed: T = body::from_json(raw).unwrap_or_else(|err| panic!("{file}: {err}"));
    if exact {
        let text = std::str::from_utf8(raw).unwrap();
        let repaired = body::repair_legacy_json(text);
        assert_eq!(
            String::from_utf8(body::to_json(&parsed)).unwrap(),
            repaired.trim_end(),
            "{file}: re-serialized body differs"
        );
    }
}

#[test]
fn json_bodies_parse_and_java_ones_reserialize_exactly() {
    let mut counts = std::collections::BTreeMap::<i64, usize>::new();
    for e in common::index() {
        let kind = e["body_kind"].as_str().unwrap();
        if kind != "json" && kind != "json-legacy" {
            continue;
        }
        let file = e["file"].as_str().unwrap();
        let cmd = RemotingCommand::from_frame(&common::frame(&e)).unwrap();
        let code = e["request_code"]
            .as_i64()
            .unwrap_or(e["code"].as_i64().unwrap());
        let java =
            e["client"] == "java-4.9.8" || e["direction"].as_str().unwrap().ends_with("->client");
        match code {
            105 => parse_and_compare::<TopicRouteData>(file, &cmd.body, java),
            106 => parse_and_compare::<ClusterInfo>(file, &cmd.body, java),
            34 => parse_and_compare::<HeartbeatData>(file, &cmd.body, java),
            38 => parse_and_compare::<ConsumerListBody>(file, &cmd.body, java),
            41 if cmd.is_response() => {
                parse_and_compare::<LockBatchResponseBody>(file, &cmd.body, java)
            }
            41 | 42 => parse_and_compare::<LockBatchRequestBody>(file, &cmd.body, java),
            other => panic!("{file}: no body type for code {other}"),
        }
        // The strict value in the index agrees with ours.
        let ours: Value = serde_json::from_str(&body::repair_legacy_json(
            std::str::from_utf8(&cmd.body).unwrap(),
        ))
        .unwrap();
        assert_eq!(ours, e["body_json"], "{file}");
        *counts.entry(code).or_default() += 1;
    }
    assert_eq!(counts.values().sum::<usize>(), 237, "{counts:?}");
}
