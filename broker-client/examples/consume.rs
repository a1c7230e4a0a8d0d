//! Pulls until N messages arrived, commits offsets to the broker, prints one line per message
//! (`msgId queueId queueOffset tags keys body-bytes`) and exits 0; exits 1 when the timeout
//! passes first.
//!
//! cargo run --release -p rmq-client --example consume -- --namesrv 127.0.0.1:9876 \
//!     --topic T --group G --count N [--from earliest|latest] [--timeout SECS]

use std::time::{Duration, Instant};

use rmq_client::{ClientConfig, MQClient, PullConsumer, PullConsumerConfig, StartFrom};

include!("common/args.rs");

#[tokio::main]
async fn main() {
    let args = Args::parse(&[
        "namesrv", "topic", "group", "count", "from", "timeout", "tag",
    ]);
    let namesrv = args
        .get("namesrv")
        .map(str::to_owned)
        .or_else(|| std::env::var("RMQ_NAMESRV").ok())
        .unwrap_or_else(|| fail("--namesrv is required (or set RMQ_NAMESRV)"));
    let count: usize = args.number("count", 1);
    let timeout = Duration::from_secs_f64(args.number("timeout", 30.0));
    let mut cfg = PullConsumerConfig::new(args.required("group"), args.required("topic"));
    cfg.start_from = match args.get("from").unwrap_or("earliest") {
        "earliest" => StartFrom::Earliest,
        "latest" => StartFrom::Latest,
        other => fail(&format!("--from must be earliest or latest, not {other:?}")),
    };
    if let Some(t) = args.get("tag") {
        cfg.expression = t.to_owned();
    }
    cfg.long_poll = Duration::from_secs(2).min(timeout);
    let client =
        MQClient::start(ClientConfig::new(&namesrv)).unwrap_or_else(|e| fail(&e.to_string()));
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
