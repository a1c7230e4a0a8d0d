//! Sends N messages and prints one line per message (`msgId queueId queueOffset`), then a
//! summary line.
//!
//! cargo run --release -p rmq-client --example produce -- --namesrv 127.0.0.1:9876 \
//!     --topic T --count N [--size BYTES] [--tag TAG] [--key-prefix K] [--group G]

use std::time::Instant;

use clap::Parser;
use rmq_client::{ClientConfig, MQClient, Message, Producer, ProducerConfig};

#[path = "common/args.rs"]
mod args;
use args::{fail, Namesrv};

/// Sends N messages and prints `msgId queueId queueOffset` per message, then a summary.
#[derive(Parser, Debug)]
struct Args {
    #[command(flatten)]
    namesrv: Namesrv,
    /// Topic to send to.
    #[arg(long)]
    topic: String,
    /// How many messages.
    #[arg(long, default_value_t = 1)]
    count: usize,
    /// Body size in bytes.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Tag of every message.
    #[arg(long)]
    tag: Option<String>,
    /// Message i gets the key `<prefix><i>`.
    #[arg(long)]
    key_prefix: Option<String>,
    /// Producer group.
    #[arg(long, default_value = "rmq_example_producer")]
    group: String,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let topic = args.topic.clone();
    let (count, size) = (args.count, args.size);
    let client = MQClient::start(ClientConfig::new(&args.namesrv.addrs))
        .unwrap_or_else(|e| fail(&e.to_string()));
    let producer = Producer::new(client.clone(), ProducerConfig::new(&args.group));
    let started = Instant::now();
    let mut failed = 0usize;
    for i in 0..count {
        let mut body = format!("message {i} ").into_bytes();
        body.resize(size.max(1), b'x');
        let mut m = Message::new(&topic, body);
        if let Some(t) = &args.tag {
            m = m.with_tags(t);
        }
        if let Some(k) = &args.key_prefix {
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
