//! The byte-level examples of docs/protocol.md §18 (A-D here; E-K live beside the code they test:
//! message::stored, message::batch, acl, message::tag, message::id, body::legacy).

use bytes::{Bytes, BytesMut};
use rmq_remoting::{
    ExtFields, LanguageCode, RemotingCodec, RemotingCommand, RequestCode, ResponseCode,
    SerializeType,
};
use tokio_util::codec::{Decoder, Encoder};

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

fn route_request(version: i32) -> RemotingCommand {
    let ext: ExtFields = [("topic", "TestTopic")].into_iter().collect();
    let mut c = RemotingCommand::request(RequestCode::GetRouteinfoByTopic, ext);
    c.opaque = 1;
    c.language = LanguageCode::Java;
    c.version = version;
    c
}

const EXAMPLE_A: &str = "00000087000000837b22636f6465223a3130352c226578744669656c6473223a7b22746f706963223a2254657374546f706963227d2c22666c6167223a302c226c616e6775616765223a224a415641222c226f7061717565223a312c2273657269616c697a655479706543757272656e74525043223a224a534f4e222c2276657273696f6e223a3430397d";
const EXAMPLE_B: &str = "0000002d010000290069000199000000010000000000000000000000140005746f7069630000000954657374546f706963";

#[test]
fn example_a_json_header() {
    let frame = route_request(409).to_frame().unwrap();
    assert_eq!(hex::encode(&frame), EXAMPLE_A);
    assert_eq!(frame.len(), 139);
    let back = RemotingCommand::from_frame(&frame).unwrap();
    assert_eq!(back, route_request(409));
    // version 0: two bytes shorter header
    let f0 = route_request(0).to_frame().unwrap();
    assert_eq!(&f0[..8], &[0, 0, 0, 0x85, 0, 0, 0, 0x81]);
}

#[test]
fn example_a_minimal_header_is_accepted() {
    let header = br#"{"code":105,"language":"JAVA","version":409,"opaque":1,"flag":0,"extFields":{"topic":"TestTopic"}}"#;
    let mut frame = Vec::new();
    frame.extend_from_slice(&((4 + header.len()) as u32).to_be_bytes());
    frame.extend_from_slice(&(header.len() as u32).to_be_bytes());
    frame.extend_from_slice(header);
    let c = RemotingCommand::from_frame(&frame).unwrap();
    assert_eq!(c.request_code(), RequestCode::GetRouteinfoByTopic);
    assert_eq!(c.ext("topic"), Some("TestTopic"));
    assert!(!c.json_rpc_type_member);
}

#[test]
fn example_b_binary_header() {
    let cmd = route_request(409).with_serialize_type(SerializeType::RocketMq);
    let frame = cmd.to_frame().unwrap();
    assert_eq!(hex::encode(&frame), EXAMPLE_B);
    let back = RemotingCommand::from_frame(&unhex(EXAMPLE_B)).unwrap();
    assert_eq!(back.serialize_type, SerializeType::RocketMq);
    assert_eq!(back.ext("topic"), Some("TestTopic"));
    assert_eq!((back.code, back.version, back.opaque), (105, 409, 1));
}

#[test]
fn example_c_response_header() {
    let body = br#"{"brokerDatas":[{"brokerAddrs":{"0":"127.0.0.1:10911"},"brokerName":"broker-a","cluster":"DefaultCluster","enableActingMaster":false}],"filterServerTable":{},"queueDatas":[{"brokerName":"broker-a","perm":6,"readQueueNums":4,"topicSysFlag":0,"writeQueueNums":4}]}"#;
    assert_eq!(body.len(), 262);
    let mut r = RemotingCommand::response(ResponseCode::Success, 1, None).with_body(&body[..]);
    r.language = LanguageCode::Java;
    let mut dst = BytesMut::new();
    RemotingCodec::new().encode(&r, &mut dst).unwrap();
    assert_eq!(&dst[..8], &[0, 0, 0x01, 0x69, 0, 0, 0, 0x5f]);
    assert_eq!(
        &dst[8..8 + 95],
        br#"{"code":0,"flag":1,"language":"JAVA","opaque":1,"serializeTypeCurrentRPC":"JSON","version":409}"#
    );
    let back = RemotingCodec::new().decode(&mut dst).unwrap().unwrap();
    assert!(back.is_response());
    assert_eq!(back.body, Bytes::from_static(body));
    let err = RemotingCommand::response(
        ResponseCode::TopicNotExist,
        1,
        Some("No topic route info in name server for the topic: TestTopic".into()),
    );
    let text = err.to_frame().unwrap();
    assert!(std::str::from_utf8(&text[8..])
        .unwrap()
        .contains(r#""opaque":1,"remark":"No topic route info"#));
}

#[test]
fn example_d_flags() {
    let mut c = route_request(409);
    assert_eq!(&c.to_frame().unwrap()[8..], &c.to_frame().unwrap()[8..]);
    c.set_oneway();
    assert!(c.to_frame().unwrap().windows(8).any(|w| w == b"\"flag\":2"));
    let b = c
        .clone()
        .with_serialize_type(SerializeType::RocketMq)
        .to_frame()
        .unwrap();
    assert_eq!(&b[8 + 9..8 + 13], &[0, 0, 0, 2]);
    let r = RemotingCommand::response(ResponseCode::Success, 1, None)
        .with_serialize_type(SerializeType::RocketMq)
        .to_frame()
        .unwrap();
    assert_eq!(&r[8 + 9..8 + 13], &[0, 0, 0, 1]);
}

#[test]
fn codes_beyond_i16_need_json() {
    let mut c = route_request(409).with_serialize_type(SerializeType::RocketMq);
    c.code = RequestCode::PopMessage.as_i32();
    assert!(c.to_frame().is_err());
    c.serialize_type = SerializeType::Json;
    assert_eq!(
        RemotingCommand::from_frame(&c.to_frame().unwrap())
            .unwrap()
            .code,
        200050
    );
}

#[test]
fn hostile_json_headers_are_errors_not_panics() {
    for header in [
        &b"{"[..],
        b"null",
        b"[]",
        b"{\"code\":1e99}",
        b"{\"code\":\"x\"}",
        b"{\"extFields\":[1]}",
        b"{\"extFields\":{\"a\":{\"b\":1}}}",
        b"\xff\xfe",
        &[b'['; 100_000],
    ] {
        let mut frame = Vec::new();
        frame.extend_from_slice(&((4 + header.len()) as u32).to_be_bytes());
        frame.extend_from_slice(&(header.len() as u32).to_be_bytes());
        frame.extend_from_slice(header);
        assert!(
            RemotingCommand::from_frame(&frame).is_err(),
            "{:?}",
            String::from_utf8_lossy(&header[..header.len().min(40)])
        );
    }
}
