//! Sends N messages and prints one line per message (`msgId queueId queueOffset`), then a
//! summary line.
//!
//! cargo run --release -p rmq-client --example produce -- --namesrv 127.0.0.1:9876 \
//!     --topic T --count N [--size BYTES] [--tag TAG] [--key-prefix K] [--group G]

use std::time::Instant;

use rmq_client::{ClientConfig, MQClient, Message, Producer, ProducerConfig};

include!("common/args.rs");

#[tokio::main]
async fn main() {
    let args = Args::parse(&[
        "namesrv",
        "topic",
        "count",
        "size",
        "tag",
        "key-prefix",
        "group",
    ]);
    let namesrv = args
        .get("namesrv")
        .map(str::to_owned)
        .or_else(|| std::env::var("RMQ_NAMESRV").ok())
        .unwrap_or_else(|| fail("--namesrv is required (or set RMQ_NAMESRV)"));
    let topic = args.required("topic").to_owned();
    let count: usize = args.number("count", 1);
    let size: usize = args.number("size", 64);
    let client =
        MQClient::start(ClientConfig::new(&namesrv)).unwrap_or_else(|e| fail(&e.to_string()));
    let producer = Producer::new(
        client.clone(),
        ProducerConfig::new(args.get("group").unwrap_or("rmq_example_producer")),
    );
    let started = Instant::now();
    let mut failed = 0usize;
    for i in 0..count {
        let mut body = format!("message {i} ").into_bytes();
        body.resize(size.max(1), b'x');
        let mut m = Message::new(&topic, body);
        if let Some(t) = args.get("tag") {
            m = m.with_tags(t);
        }
        if let Some(k) = args.get("key-prefix") {
            m = m.with_keys([format!("{k}{i}")]);
        }
        match producer.send(m).await {
            Ok(r) => println!("{} {} {}", r.msg_id, r.queue.queue_id, r.queue_offset),
            Err(e) => {
                eprintln!("send {i} failed: {e}");
                failed += 1;
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "sent {} of {count} messages to {topic} in {secs:.3}s ({:.0} msg/s), {failed} failed",
        count - failed,
        (count - failed) as f64 / secs.max(1e-9)
    );
    client.shutdown().await;
    if failed > 0 {
        std::process::exit(1);
    }
}
