//! Codec throughput: decode and encode of a SEND_MESSAGE_V2 request (JSON and ROCKETMQ headers,
//! 1 KiB body) and of a PULL_MESSAGE response carrying 32 stored messages of 1 KiB, plus a
//! naive `serde_json` reference measured in the same run so that ratios, not absolute numbers,
//! are what carries between machines.
//!
//! `cargo bench -p rmq-benches --bench codec` (about 15 s). `BENCH_QUICK=1` runs every case a
//! few times only, to check that it still runs (CI). `BENCH_FILTER=word` keeps matching cases.
//! Everything runs on one thread: the figures are per core. MB/s counts whole frames as they
//! are on the wire (10^6 bytes). Nothing here asserts a timing.

use std::collections::HashMap;
use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use rmq_remoting::header::{CommandHeader, SendMessageRequestHeaderV2};
use rmq_remoting::message::{
    decode_messages, encode_stored, MessageExt, MessageVersion, Properties,
};
use rmq_remoting::{
    ExtFields, LanguageCode, RemotingCodec, RemotingCommand, RequestCode, ResponseCode,
    SerializeType,
};
use tokio_util::codec::{Decoder, Encoder};

/// Frames per timed iteration: a socket read hands the decoder many frames at once, and an
/// encoder fills one write buffer with many.
const FRAMES_PER_ITER: usize = 64;
const PULL_FRAMES_PER_ITER: usize = 4;
const PULL_MESSAGES: usize = 32;
const BODY_SIZE: usize = 1024;

// ---------------------------------------------------------------------------------------------
// Inputs.

/// A SEND_MESSAGE_V2 request as Java 4.9.8 sends it (the fields of the captured
/// `send-json/007-c2b-310.bin`), with a 1 KiB body.
fn send_v2(serialize: SerializeType) -> RemotingCommand {
    let mut ext = ExtFields::new();
    for (k, v) in [
        ("a", "FixtureProducerJSON"),
        ("b", "FixtureTopicJSON"),
        ("c", "TBW102"),
        ("d", "4"),
        ("e", "0"),
        ("f", "0"),
        ("g", "1795313623054"),
        ("h", "0"),
        (
            "i",
            "KEYS\u{1}fx-key-1 fx-key-2\u{2}UNIQ_KEY\u{1}FD0000000000000000000000000000024ADE5FFD2B276C9FF80D0000\u{2}WAIT\u{1}true\u{2}fxUserProp\u{1}user-value-1\u{2}TAGS\u{1}TagA",
        ),
        ("j", "0"),
        ("k", "false"),
        ("m", "false"),
        ("n", "broker-a"),
    ] {
        ext.insert(k, v);
    }
    let mut cmd = RemotingCommand::request(RequestCode::SendMessageV2, ext)
        .with_body(payload(BODY_SIZE, 7))
        .with_serialize_type(serialize);
    cmd.language = LanguageCode::Java;
    cmd.opaque = 310;
    cmd
}

/// A PULL_MESSAGE response (FOUND) whose body holds 32 stored records of 1 KiB each.
fn pull_response() -> RemotingCommand {
    let mut cmd = RemotingCommand::response(ResponseCode::Success, 4, Some("FOUND".into()))
        .with_body(pull_body());
    let ext = cmd.ext_fields_mut();
    ext.insert("suggestWhichBrokerId", "0");
    ext.insert("nextBeginOffset", "1032");
    ext.insert("maxOffset", "1032");
    ext.insert("minOffset", "0");
    cmd.language = LanguageCode::Java;
    cmd
}

fn stored_messages() -> Vec<MessageExt> {
    let born: SocketAddr = "192.168.1.10:54321".parse().unwrap();
    let store: SocketAddr = "192.168.1.20:10911".parse().unwrap();
    (0..PULL_MESSAGES)
        .map(|i| {
            let body = payload(BODY_SIZE, i as u8);
            let mut properties = Properties::new();
            properties.insert("KEYS", format!("order-{i}"));
            properties.insert("UNIQ_KEY", format!("7F0000010B7C18B4AAC21A2B3C4D{:04X}", i));
            properties.insert("WAIT", "true");
            properties.insert("TAGS", "TagA");
            MessageExt {
                store_size: 0,
                version: MessageVersion::V1,
                body_crc: 0,
                queue_id: 1,
                flag: 0,
                queue_offset: 1000 + i as i64,
                commit_log_offset: 1_048_576 * 3 + (i * 1300) as i64,
                sys_flag: 0,
                born_timestamp: 1_700_000_000_000 + i as i64,
                born_host: born,
                store_timestamp: 1_700_000_000_123 + i as i64,
                store_host: store,
                reconsume_times: 0,
                prepared_transaction_offset: 0,
                topic: "BenchTopic".into(),
                properties,
                body: body.clone(),
                stored_body: body,
            }
        })
        .collect()
}

fn pull_body() -> Bytes {
    let mut dst = BytesMut::new();
    for m in &stored_messages() {
        encode_stored(m, &mut dst).unwrap();
    }
    dst.freeze()
}

fn payload(n: usize, seed: u8) -> Bytes {
    (0..n)
        .map(|i| b'a' + ((i as u8).wrapping_mul(31) ^ seed) % 26)
        .collect::<Vec<u8>>()
        .into()
}

fn stream_of(cmd: &RemotingCommand, frames: usize) -> (Bytes, usize) {
    let frame = cmd.to_frame().unwrap();
    let mut s = BytesMut::with_capacity(frame.len() * frames);
    for _ in 0..frames {
        s.extend_from_slice(&frame);
    }
    (s.freeze(), frame.len())
}

// ---------------------------------------------------------------------------------------------
// The naive reference: a `serde_json::Value` / `HashMap` header, as one would write it first.

fn reference_decode_all(stream: &[u8]) -> usize {
    let mut buf = BytesMut::from(stream);
    let mut n = 0;
    while buf.len() >= 4 {
        let len = u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize;
        let mut payload = buf.split_to(4 + len);
        let _ = payload.split_to(4);
        let word = u32::from_be_bytes(payload[..4].try_into().unwrap());
        let header_len = (word & 0x00FF_FFFF) as usize;
        let _ = payload.split_to(4);
        let header = payload.split_to(header_len);
        let v: serde_json::Value = serde_json::from_slice(&header).unwrap();
        let int = |k: &str| v.get(k).and_then(|x| x.as_i64()).unwrap_or(0) as i32;
        let mut cmd = RemotingCommand {
            code: int("code"),
            version: int("version"),
            opaque: int("opaque"),
            flag: int("flag"),
            language: v
                .get("language")
                .and_then(|l| l.as_str())
                .and_then(LanguageCode::from_name)
                .unwrap_or(LanguageCode::Java),
            remark: v.get("remark").and_then(|r| r.as_str()).map(str::to_owned),
            body: payload.freeze(),
            ..Default::default()
        };
        if let Some(obj) = v.get("extFields").and_then(|e| e.as_object()) {
            let ext = cmd.ext_fields_mut();
            for (k, val) in obj {
                ext.push(k.clone(), val.as_str().unwrap_or_default().to_owned());
            }
        }
        black_box(&cmd);
        n += 1;
    }
    n
}

fn reference_encode(cmd: &RemotingCommand, dst: &mut BytesMut) {
    let mut h: HashMap<&str, serde_json::Value> = HashMap::new();
    h.insert("code", cmd.code.into());
    h.insert("flag", cmd.flag.into());
    h.insert("language", cmd.language.name().unwrap_or("OTHER").into());
    h.insert("opaque", cmd.opaque.into());
    h.insert("serializeTypeCurrentRPC", "JSON".into());
    h.insert("version", cmd.version.into());
    if let Some(r) = &cmd.remark {
        h.insert("remark", r.as_str().into());
    }
    if let Some(ext) = &cmd.ext_fields {
        let m: HashMap<&str, &str> = ext.iter().collect();
        h.insert("extFields", serde_json::to_value(m).unwrap());
    }
    let header = serde_json::to_vec(&h).unwrap();
    dst.put_u32((4 + header.len() + cmd.body.len()) as u32);
    dst.put_u32(header.len() as u32);
    dst.put_slice(&header);
    dst.put_slice(&cmd.body);
}

// ---------------------------------------------------------------------------------------------
// Timing.

struct Config {
    quick: bool,
    /// Time per sample; the best of `samples` is reported.
    sample: Duration,
    samples: usize,
    filter: Option<String>,
}

struct Row {
    name: String,
    frames_per_s: f64,
    mb_per_s: f64,
    /// The row this one is the reference for, if it is a reference.
    reference_for: Option<String>,
}

/// One case: `f` handles `frames` frames, `bytes` bytes in all, per call.
struct Case<'a> {
    name: String,
    frames: usize,
    bytes: usize,
    f: Box<dyn FnMut() + 'a>,
}

fn case<'a>(
    name: impl Into<String>,
    frames: usize,
    bytes: usize,
    f: impl FnMut() + 'a,
) -> Case<'a> {
    Case {
        name: name.into(),
        frames,
        bytes,
        f: Box::new(f),
    }
}

struct Bench {
    cfg: Config,
    rows: Vec<Row>,
}

impl Bench {
    fn run(&mut self, c: Case) {
        self.group(vec![c], false);
    }

    /// Ours and its reference, sampled alternately so that both see the same machine (other
    /// load, clock changes): their ratio is what is comparable between runs.
    fn pair(&mut self, ours: Case, reference: Case) {
        self.group(vec![ours, reference], true);
    }

    fn group(&mut self, mut cases: Vec<Case>, paired: bool) {
        if let Some(filter) = &self.cfg.filter {
            if !cases.iter().any(|c| c.name.contains(filter.as_str())) {
                return;
            }
        }
        let mut best = vec![f64::INFINITY; cases.len()];
        if self.cfg.quick {
            for c in &mut cases {
                for _ in 0..3 {
                    (c.f)();
                }
            }
        } else {
            // Warm up and find how many calls fill one sample.
            let iters: Vec<u64> = cases
                .iter_mut()
                .map(|c| {
                    let mut n = 1u64;
                    loop {
                        let t = Instant::now();
                        for _ in 0..n {
                            (c.f)();
                        }
                        let el = t.elapsed();
                        if el >= self.cfg.sample / 4 {
                            let per = el.as_secs_f64() / n as f64;
                            return ((self.cfg.sample.as_secs_f64() / per) as u64).max(1);
                        }
                        n *= 2;
                    }
                })
                .collect();
            for _ in 0..self.cfg.samples {
                for (i, c) in cases.iter_mut().enumerate() {
                    let t = Instant::now();
                    for _ in 0..iters[i] {
                        (c.f)();
                    }
                    best[i] = best[i].min(t.elapsed().as_secs_f64() / iters[i] as f64);
                }
            }
        }
        let ours = cases[0].name.clone();
        for (i, c) in cases.iter().enumerate() {
            self.rows.push(Row {
                name: c.name.clone(),
                frames_per_s: c.frames as f64 / best[i],
                mb_per_s: c.bytes as f64 / best[i] / 1e6,
                reference_for: (paired && i > 0).then(|| ours.clone()),
            });
        }
    }

    fn print(&self) {
        println!();
        println!(
            "codec throughput, one thread (per core); best of {} samples of {} ms",
            self.cfg.samples,
            self.cfg.sample.as_millis()
        );
        println!(
            "{:<44} {:>14} {:>10} {:>10}",
            "case", "frames/s", "MB/s", "ours/ref"
        );
        println!("{}", "-".repeat(81));
        for r in &self.rows {
            if self.cfg.quick {
                println!("{:<44} {:>14} {:>10} {:>10}", r.name, "ran", "-", "");
                continue;
            }
            let ratio = self
                .rows
                .iter()
                .find(|x| x.reference_for.as_deref() == Some(r.name.as_str()))
                .map(|x| format!("{:.2}x", r.frames_per_s / x.frames_per_s))
                .unwrap_or_default();
            println!(
                "{:<44} {:>14.0} {:>10.1} {:>10}",
                r.name, r.frames_per_s, r.mb_per_s, ratio
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------

fn decode_all(stream: &[u8]) -> usize {
    let mut codec = RemotingCodec::new();
    // One copy of what the socket delivered, as a read into the connection buffer does.
    let mut buf = BytesMut::from(stream);
    let mut n = 0;
    while let Some(cmd) = codec.decode(&mut buf).unwrap() {
        black_box(&cmd);
        n += 1;
    }
    n
}

/// Encodes `cmd` `n` times into `out` (cleared first), as a connection fills its write buffer.
fn encode_n(cmd: &RemotingCommand, n: usize, out: &mut BytesMut) {
    let mut codec = RemotingCodec::new();
    out.clear();
    for _ in 0..n {
        codec.encode(black_box(cmd), out).unwrap();
    }
    black_box(&out);
}

fn main() {
    let quick = std::env::var_os("BENCH_QUICK").is_some_and(|v| v != "0");
    // `cargo bench` passes `--bench`; any other argument that is not a flag filters cases.
    let filter = std::env::var("BENCH_FILTER")
        .ok()
        .or_else(|| std::env::args().skip(1).find(|a| !a.starts_with('-')));
    let mut b = Bench {
        cfg: Config {
            quick,
            sample: Duration::from_millis(150),
            samples: 7,
            filter,
        },
        rows: Vec::new(),
    };

    // (a) SEND_MESSAGE_V2, JSON header, against the naive serde_json reference.
    let cmd = send_v2(SerializeType::Json);
    let (stream, frame_len) = stream_of(&cmd, FRAMES_PER_ITER);
    let bytes = stream.len();
    assert_eq!(decode_all(&stream), FRAMES_PER_ITER);
    assert_eq!(reference_decode_all(&stream), FRAMES_PER_ITER);
    b.pair(
        case(
            format!("send_v2 json decode ({frame_len} B)"),
            FRAMES_PER_ITER,
            bytes,
            || {
                black_box(decode_all(black_box(&stream)));
            },
        ),
        case(
            "ref: send_v2 serde_json::Value decode",
            FRAMES_PER_ITER,
            bytes,
            || {
                black_box(reference_decode_all(black_box(&stream)));
            },
        ),
    );
    let mut check = BytesMut::new();
    reference_encode(&cmd, &mut check);
    assert_eq!(decode_all(&check), 1);
    let mut out = BytesMut::with_capacity(1 << 20);
    let mut ref_out = BytesMut::with_capacity(1 << 20);
    b.pair(
        case(
            format!("send_v2 json encode ({frame_len} B)"),
            FRAMES_PER_ITER,
            bytes,
            || encode_n(&cmd, FRAMES_PER_ITER, &mut out),
        ),
        case(
            "ref: send_v2 HashMap + serde_json encode",
            FRAMES_PER_ITER,
            bytes,
            || {
                ref_out.clear();
                for _ in 0..FRAMES_PER_ITER {
                    reference_encode(black_box(&cmd), &mut ref_out);
                }
                black_box(&ref_out);
            },
        ),
    );

    // (a'') What a producer does per send: the typed header into extFields, then the frame.
    let template = SendMessageRequestHeaderV2::read_from(cmd.ext_fields.as_ref().unwrap()).unwrap();
    let body = cmd.body.clone();
    b.run(case(
        format!("send_v2 typed header + json encode ({frame_len} B)"),
        FRAMES_PER_ITER,
        bytes,
        || {
            out.clear();
            for _ in 0..FRAMES_PER_ITER {
                let h = black_box(&template).clone();
                let mut ext = ExtFields::with_capacity(16);
                h.write_to(&mut ext);
                let c = RemotingCommand::request(RequestCode::SendMessageV2, ext)
                    .with_body(body.clone());
                c.encode_frame(&mut out, usize::MAX).unwrap();
            }
            black_box(&out);
        },
    ));

    // (a') The same request with the ROCKETMQ binary header.
    let cmd = send_v2(SerializeType::RocketMq);
    let (stream, frame_len) = stream_of(&cmd, FRAMES_PER_ITER);
    let bytes = stream.len();
    assert_eq!(decode_all(&stream), FRAMES_PER_ITER);
    b.run(case(
        format!("send_v2 rocketmq decode ({frame_len} B)"),
        FRAMES_PER_ITER,
        bytes,
        || {
            black_box(decode_all(black_box(&stream)));
        },
    ));
    b.run(case(
        format!("send_v2 rocketmq encode ({frame_len} B)"),
        FRAMES_PER_ITER,
        bytes,
        || encode_n(&cmd, FRAMES_PER_ITER, &mut out),
    ));

    // (b) PULL_MESSAGE response with 32 x 1 KiB stored messages.
    let pull = pull_response();
    let (stream, frame_len) = stream_of(&pull, PULL_FRAMES_PER_ITER);
    let bytes = stream.len();
    let first = RemotingCommand::from_frame(&stream[..frame_len]).unwrap();
    assert_eq!(decode_messages(&first.body).unwrap().len(), PULL_MESSAGES);
    b.run(case(
        format!("pull frame decode ({frame_len} B)"),
        PULL_FRAMES_PER_ITER,
        bytes,
        || {
            black_box(decode_all(black_box(&stream)));
        },
    ));
    b.run(case(
        format!("pull frame + {PULL_MESSAGES} records decode"),
        PULL_FRAMES_PER_ITER,
        bytes,
        || {
            let mut codec = RemotingCodec::new();
            let mut buf = BytesMut::from(black_box(&stream[..]));
            while let Some(cmd) = codec.decode(&mut buf).unwrap() {
                black_box(decode_messages(&cmd.body).unwrap());
            }
        },
    ));
    b.run(case(
        format!("pull frame encode ({frame_len} B)"),
        PULL_FRAMES_PER_ITER,
        bytes,
        || encode_n(&pull, PULL_FRAMES_PER_ITER, &mut out),
    ));
    let msgs = stored_messages();
    let mut header = pull.clone();
    header.body = Bytes::new();
    let mut codec = RemotingCodec::new();
    b.run(case(
        format!("pull {PULL_MESSAGES} records + frame encode"),
        PULL_FRAMES_PER_ITER,
        bytes,
        || {
            out.clear();
            for _ in 0..PULL_FRAMES_PER_ITER {
                let mut body = BytesMut::with_capacity(pull.body.len());
                for m in black_box(&msgs) {
                    encode_stored(m, &mut body).unwrap();
                }
                let mut cmd = header.clone();
                cmd.body = body.freeze();
                codec.encode(&cmd, &mut out).unwrap();
            }
            black_box(&out);
        },
    ));

    b.print();
    if quick {
        println!("(BENCH_QUICK: every case ran a few times, nothing was timed)");
    }
}
