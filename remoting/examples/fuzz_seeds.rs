//! Writes the seed corpora of the fuzz targets (`fuzz/corpus/<target>/`) from the captured
//! frames in `remoting/tests/fixtures/`, cut apart with this crate's own decoders. `fuzz/seed.sh`
//! runs it; by hand:
//!
//! ```sh
//! cargo run -p rmq-remoting --example fuzz_seeds -- remoting/tests/fixtures fuzz/corpus
//! ```
//!
//! Seeds per target:
//! - `frame_decoder`: whole frames, plus the first frames of each scenario back to back
//! - `json_header` / `binary_header`: the header bytes of JSON / ROCKETMQ frames
//! - `stored_message`: PULL / VIEW / QUERY bodies, plus synthetic 5.x inner-batch records
//! - `batch`: SEND_BATCH_MESSAGE bodies
//! - `route_json`: JSON bodies, strict and fastjson-legacy
//! - `properties_msg_id`: property strings of stored records and ids, tags and subscriptions
//!   from the headers

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use bytes::{Bytes, BytesMut};
use rmq_remoting::message::{
    encode_batch, encode_stored, sys_flag, BatchItem, MessageExt, MessageVersion, Properties,
};
use rmq_remoting::{RemotingCommand, SerializeType};
use sha1::{Digest, Sha1};

const TARGETS: [&str; 7] = [
    "frame_decoder",
    "json_header",
    "binary_header",
    "stored_message",
    "batch",
    "route_json",
    "properties_msg_id",
];

/// Header fields whose values are property strings, message ids or tag expressions.
const TEXT_FIELDS: [&str; 5] = ["msgId", "offsetMsgId", "tags", "subscription", "properties"];

/// How many frames of a scenario make one multi-frame stream seed.
const STREAM_FRAMES: usize = 4;

struct Corpus {
    out: PathBuf,
    seen: BTreeMap<&'static str, HashSet<String>>,
}

impl Corpus {
    fn create(out: &Path) -> Result<Self, String> {
        let mut seen = BTreeMap::new();
        for t in TARGETS {
            let dir = out.join(t);
            if dir.exists() {
                fs::remove_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            }
            fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            seen.insert(t, HashSet::new());
        }
        Ok(Corpus {
            out: out.to_owned(),
            seen,
        })
    }

    /// Named by content, as libFuzzer names its own units, so duplicates collapse.
    fn put(&mut self, target: &'static str, data: &[u8]) -> Result<(), String> {
        let name = format!("seed-{}", hex::encode(Sha1::digest(data)));
        let seen = self.seen.get_mut(target).expect("a known target");
        if seen.insert(name.clone()) {
            let path = self.out.join(target).join(name);
            fs::write(&path, data).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        Ok(())
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [fixtures, out] = args.as_slice() else {
        eprintln!("usage: fuzz_seeds <fixtures dir> <corpus dir>");
        return ExitCode::from(2);
    };
    match run(Path::new(fixtures), Path::new(out)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fuzz_seeds: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(fixtures: &Path, out: &Path) -> Result<(), String> {
    let index_path = fixtures.join("index.json");
    let text =
        fs::read_to_string(&index_path).map_err(|e| format!("{}: {e}", index_path.display()))?;
    let index: Vec<serde_json::Value> =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", index_path.display()))?;
    let mut corpus = Corpus::create(out)?;
    let mut streams: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut stream_len: BTreeMap<String, usize> = BTreeMap::new();

    for entry in &index {
        let file = entry["file"]
            .as_str()
            .ok_or_else(|| format!("index entry without file: {entry}"))?;
        let frame = fs::read(fixtures.join(file)).map_err(|e| format!("{file}: {e}"))?;
        let cmd = RemotingCommand::from_frame(&frame).map_err(|e| format!("{file}: {e}"))?;
        corpus.put("frame_decoder", &frame)?;

        let header_target = match cmd.serialize_type {
            SerializeType::Json => "json_header",
            SerializeType::RocketMq => "binary_header",
        };
        corpus.put(header_target, header_bytes(&frame, cmd.body.len()))?;

        match entry["body_kind"].as_str().unwrap_or("") {
            "messages" => {
                corpus.put("stored_message", &cmd.body)?;
                let msgs = rmq_remoting::message::decode_messages(&cmd.body)
                    .map_err(|e| format!("{file}: {e}"))?;
                for m in msgs {
                    corpus.put("properties_msg_id", m.properties.encode().as_bytes())?;
                    corpus.put("properties_msg_id", m.offset_msg_id().as_bytes())?;
                }
            }
            "batch" => corpus.put("batch", &cmd.body)?,
            "json" | "json-legacy" => corpus.put("route_json", &cmd.body)?,
            _ => {}
        }
        for key in TEXT_FIELDS {
            if let Some(v) = cmd.ext(key).filter(|v| !v.is_empty()) {
                corpus.put("properties_msg_id", v.as_bytes())?;
            }
        }

        let scenario = entry["scenario"].as_str().unwrap_or(file).to_owned();
        let n = stream_len.entry(scenario.clone()).or_default();
        if *n < STREAM_FRAMES {
            *n += 1;
            streams
                .entry(scenario)
                .or_default()
                .extend_from_slice(&frame);
        }
    }
    for stream in streams.values() {
        corpus.put("frame_decoder", stream)?;
    }

    // What the 4.9.8 captures lack: a 5.x inner-batch record (its body a batch of three items),
    // also at the very top of the offset range, where numbering the unwrapped items must wrap
    // as Java's long arithmetic does rather than overflow.
    let mut tags = Properties::new();
    tags.insert("TAGS", "a");
    let items: Vec<BatchItem> = (0..3)
        .map(|i| BatchItem::new(0, format!("m{i}").into_bytes(), tags.clone()))
        .collect();
    let inner = encode_batch(&items).map_err(|e| e.to_string())?;
    corpus.put("batch", &inner)?;
    for queue_offset in [0, i64::MAX - 1] {
        let mut rec = BytesMut::new();
        encode_stored(&inner_batch_record(inner.clone(), queue_offset), &mut rec)
            .map_err(|e| e.to_string())?;
        corpus.put("stored_message", &rec)?;
    }

    for t in TARGETS {
        let dir = out.join(t);
        let mut n = 0;
        let mut size = 0;
        for f in fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))? {
            let f = f.map_err(|e| e.to_string())?;
            n += 1;
            size += f.metadata().map_err(|e| e.to_string())?.len();
        }
        println!("fuzz_seeds: {t:18} {n:4} seeds, {size:7} bytes");
    }
    Ok(())
}

/// The header of a frame the decoder accepted: what lies between the header-length word and
/// the body.
fn header_bytes(frame: &[u8], body_len: usize) -> &[u8] {
    &frame[8..frame.len() - body_len]
}

fn inner_batch_record(body: Bytes, queue_offset: i64) -> MessageExt {
    let host: SocketAddr = "10.0.0.1:10911".parse().expect("a literal address");
    MessageExt {
        store_size: 0,
        version: MessageVersion::V1,
        body_crc: 0,
        queue_id: 0,
        flag: 0,
        queue_offset,
        commit_log_offset: 0,
        sys_flag: sys_flag::INNER_BATCH | sys_flag::NEED_UNWRAP,
        born_timestamp: 0,
        born_host: host,
        store_timestamp: 0,
        store_host: host,
        reconsume_times: 0,
        prepared_transaction_offset: 0,
        topic: "t".to_owned(),
        properties: Properties::new(),
        body: body.clone(),
        stored_body: body,
    }
}
