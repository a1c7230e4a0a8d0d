//! proptest round trips: encode -> decode is the identity for commands (both serializations),
//! stored messages, batches, properties and message ids.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use rmq_remoting::message::{self, BatchItem, MessageExt, MessageVersion, OffsetMsgId, Properties};
use rmq_remoting::{ExtFields, LanguageCode, RemotingCodec, RemotingCommand, SerializeType};
use std::net::SocketAddr;
use tokio_util::codec::{Decoder, Encoder};

// Non-empty: the binary header turns empty strings into null (docs/protocol.md §5), so an empty
// value cannot survive a ROCKETMQ round trip by design.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9_%|-]{1,24}",
        "\\PC{1,16}",
        "[\\x00-\\x1f\"\\\\\\x7f]{1,8}",
    ]
}

fn prop_text() -> impl Strategy<Value = String> {
    // property names and values cannot contain the separators U+0001/U+0002
    "[^\\x01\\x02]{1,24}"
}

fn command() -> impl Strategy<Value = RemotingCommand> {
    (
        any::<i16>(),
        0u8..14,
        any::<i16>(),
        any::<i32>(),
        0i32..4,
        proptest::option::of(text()),
        proptest::option::of(proptest::collection::vec((text(), text()), 1..8)),
        proptest::collection::vec(any::<u8>(), 0..256),
        any::<bool>(),
    )
        .prop_map(
            |(code, lang, version, opaque, flag, remark, ext, body, binary)| RemotingCommand {
                code: code as i32,
                language: LanguageCode::from_code(lang),
                version: version as i32,
                opaque,
                flag,
                remark,
                ext_fields: ext.map(|v| v.into_iter().collect::<ExtFields>()),
                serialize_type: if binary {
                    SerializeType::RocketMq
                } else {
                    SerializeType::Json
                },
                json_rpc_type_member: true,
                body: Bytes::from(body),
            },
        )
}

fn addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::from((ip, p))),
        (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::from((ip, p))),
    ]
}

fn properties() -> impl Strategy<Value = Properties> {
    proptest::collection::vec((prop_text(), prop_text()), 0..6).prop_map(|v| {
        let mut p = Properties::new();
        for (k, v) in v {
            p.insert(k, v);
        }
        p
    })
}

fn stored() -> impl Strategy<Value = MessageExt> {
    (
        (
            any::<i32>(),
            any::<i32>(),
            any::<i64>(),
            any::<i64>(),
            0i32..0x300,
        ),
        (any::<i64>(), addr(), any::<i64>(), addr()),
        (
            any::<i32>(),
            any::<i64>(),
            "[a-zA-Z0-9_%-]{1,200}",
            any::<bool>(),
        ),
        (properties(), proptest::collection::vec(any::<u8>(), 0..512)),
    )
        .prop_map(|(a, b, c, d)| {
            let (queue_id, flag, queue_offset, commit_log_offset, sys) = a;
            let (born_timestamp, born_host, store_timestamp, store_host) = b;
            let (reconsume_times, prepared, topic, v2) = c;
            let (properties, body) = d;
            let version = if v2 || topic.len() > 127 {
                MessageVersion::V2
            } else {
                MessageVersion::V1
            };
            // compression bit off: the proptest body is not zlib
            let mut sys_flag = sys & !(message::sys_flag::COMPRESSED | 0x30 | 0xC0);
            if born_host.is_ipv6() {
                sys_flag |= message::sys_flag::BORNHOST_V6;
            }
            if store_host.is_ipv6() {
                sys_flag |= message::sys_flag::STOREHOST_V6;
            }
            let body = Bytes::from(body);
            let mut m = MessageExt {
                store_size: 0,
                version,
                body_crc: message::stored::body_crc(&body),
                queue_id,
                flag,
                queue_offset,
                commit_log_offset,
                sys_flag,
                born_timestamp,
                born_host,
                store_timestamp,
                store_host,
                reconsume_times,
                prepared_transaction_offset: prepared,
                topic,
                properties,
                body: body.clone(),
                stored_body: body,
            };
            let mut b = BytesMut::new();
            message::encode_stored(&m, &mut b).unwrap();
            m.store_size = b.len() as i32;
            m
        })
}

proptest! {
    #[test]
    fn commands_round_trip_through_the_codec(cmds in proptest::collection::vec(command(), 1..5)) {
        let mut codec = RemotingCodec::new();
        let mut wire = BytesMut::new();
        for c in &cmds {
            codec.encode(c, &mut wire).unwrap();
        }
        for c in &cmds {
            let got = codec.decode(&mut wire).unwrap().unwrap();
            prop_assert_eq!(&got, c);
        }
        prop_assert!(codec.decode(&mut wire).unwrap().is_none());
    }

    #[test]
    fn stored_messages_round_trip(msgs in proptest::collection::vec(stored(), 1..6)) {
        let mut body = BytesMut::new();
        for m in &msgs {
            message::encode_stored(m, &mut body).unwrap();
        }
        let got = message::decode_messages(&body.freeze()).unwrap();
        prop_assert_eq!(got, msgs);
    }

    #[test]
    fn compressed_bodies_round_trip(body in proptest::collection::vec(any::<u8>(), 0..20_000)) {
        let z = message::compress::zlib_compress(&body);
        let mut m = MessageExt {
            store_size: 0, version: MessageVersion::V1, body_crc: 0, queue_id: 0, flag: 0,
            queue_offset: 0, commit_log_offset: 0,
            sys_flag: message::sys_flag::COMPRESSED | message::sys_flag::COMPRESSION_ZLIB,
            born_timestamp: 0, born_host: "127.0.0.1:1".parse().unwrap(), store_timestamp: 0,
            store_host: "127.0.0.1:2".parse().unwrap(), reconsume_times: 0,
            prepared_transaction_offset: 0, topic: "T".into(), properties: Properties::new(),
            body: Bytes::new(), stored_body: Bytes::from(z),
        };
        let mut b = BytesMut::new();
        message::encode_stored(&m, &mut b).unwrap();
        m = message::decode_messages(&b.freeze()).unwrap().remove(0);
        prop_assert_eq!(&m.body[..], &body[..]);
    }

    #[test]
    fn batches_round_trip(items in proptest::collection::vec(
        (any::<i32>(), proptest::collection::vec(any::<u8>(), 0..300), properties()), 1..8)) {
        let items: Vec<BatchItem> = items.into_iter()
            .map(|(f, b, p)| BatchItem::new(f, b, p)).collect();
        let bytes = message::encode_batch(&items).unwrap();
        prop_assert_eq!(message::decode_batch(&bytes).unwrap(), items);
    }

    #[test]
    fn properties_round_trip(p in properties()) {
        prop_assert_eq!(Properties::decode(&p.encode()), p.clone());
        let mut trailing = p.encode();
        trailing.push('\u{2}');
        prop_assert_eq!(Properties::decode(&trailing), p);
    }

    #[test]
    fn offset_ids_round_trip(host in addr(), off in any::<i64>()) {
        let id = OffsetMsgId { store_host: host, commit_log_offset: off };
        prop_assert_eq!(OffsetMsgId::decode(&id.encode()).unwrap(), id);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let b = Bytes::from(bytes.clone());
        let _ = message::decode_messages(&b);
        let _ = message::decode_batch(&b);
        let _ = RemotingCommand::from_frame(&bytes);
        let mut codec = RemotingCodec::with_max_frame(1024);
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(_)) = codec.decode(&mut buf) {}
    }
}
