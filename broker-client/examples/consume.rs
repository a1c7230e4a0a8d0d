//! Pulls until N messages arrived, commits offsets to the broker, prints one line per message
//! (`msgId queueId queueOffset tags keys body-bytes`) and exits 0; exits 1 when the timeout
//! passes first.
//!
//! cargo run --release -p rmq-client --example consume -- --namesrv 127.0.0.1:9876 \
//!     --topic T --group G --count N [--from earliest|latest] [--timeout SECS]

use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use rmq_client::{ClientConfig, MQClient, PullConsumer, PullConsumerConfig, StartFrom};

#[path = "common/args.rs"]
mod args;
use args::{fail, Namesrv};

/// Pulls until N messages arrived, commits offsets and prints one line per message.
#[derive(Parser, Debug)]
struct Args {
    #[command(flatten)]
    namesrv: Namesrv,
    /// Topic to consume.
    #[arg(long)]
    topic: String,
    /// Consumer group.
    #[arg(long)]
    group: String,
    /// How many messages to wait for.
    #[arg(long, default_value_t = 1)]
    count: usize,
    /// Where a group without a committed offset starts.
    #[arg(long, value_enum, default_value_t = Start::Earliest)]
    from: Start,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 30.0)]
    timeout: f64,
    /// TAG expression (`A || B`).
    #[arg(long)]
    tag: Option<String>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Start {
    Earliest,
    Latest,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let count = args.count;
    if !(args.timeout.is_finite() && args.timeout >= 0.0) {
        fail("--timeout must be a number of seconds");
    }
    let timeout = Duration::from_secs_f64(args.timeout);
    let mut cfg = PullConsumerConfig::new(&args.group, &args.topic);
    cfg.start_from = match args.from {
        Start::Earliest => StartFrom::Earliest,
        Start::Latest => StartFrom::Latest,
    };
    if let Some(t) = &args.tag {
        cfg.expression = t.clone();
    }
    cfg.long_poll = Duration::from_secs(2).min(timeout);
    let client = MQClient::start(ClientConfig::new(&args.namesrv.addrs))
        .unwrap_or_else(|e| fail(&e.to_string()));
    let deadline = Instant::now() + timeout;
    let consumer =
        match tokio::time::timeout(timeout, PullConsumer::start(client.clone(), cfg)).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => fail(&format!("cannot start consumer: {e}")),
            Err(_) => fail("timed out starting the consumer"),
        };
    let mut got = 0usize;
    while got < count && Instant::now() < deadline {
        match consumer.poll(count - got).await {
            Ok(msgs) => {
                for m in msgs {
                    let keys: Vec<&str> = m.keys().collect();
                    println!(
                        "{} {} {} {} {} {}",
                        m.msg_id(),
                        m.queue_id,
                        m.queue_offset,
                        m.tags().unwrap_or("-"),
                        if keys.is_empty() {
                            "-".to_owned()
                        } else {
                            keys.join(",")
                        },
                        m.body.len()
                    );
                    got += 1;
                }
            }
            Err(e) => {
                eprintln!("pull failed: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    let commit = consumer.shutdown().await;
    client.shutdown().await;
    if let Err(e) = commit {
        fail(&format!("committing offsets failed: {e}"));
    }
    if got < count {
        eprintln!("timed out after {got} of {count} messages");
        std::process::exit(1);
    }
    println!("consumed {got} messages");
}
