//! The broker stopped and started again under a live client: sends fail with typed errors while
//! it is down and succeed afterwards, with the same client. Runs against the real broker through
//! `scripts/broker.sh exec`, which exports `RMQ_BROKER_SCRIPT` for stop-broker / start-broker.
//! Kept in its own test binary: cargo runs binaries one at a time, so no other test sees the
//! broker go away.

use std::process::Command;
use std::time::{Duration, Instant};

use rmq_client::PullRequest;
use rmq_client::{ClientConfig, ClientError, MQClient, Message, Producer, ProducerConfig};
use rmq_test_support::{namesrv, unique};

fn broker_ctl(cmd: &str) {
    let script = std::env::var("RMQ_BROKER_SCRIPT")
        .expect("RMQ_BROKER_SCRIPT is not set: run through scripts/broker.sh exec -- cargo test");
    let st = Command::new(&script)
        .arg(cmd)
        .status()
        .expect("run broker.sh");
    assert!(st.success(), "{script} {cmd} failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_fail_typed_while_the_broker_is_down_and_recover_after() {
    let mut cfg = ClientConfig::new(&namesrv());
    cfg.request_timeout = Duration::from_secs(2);
    cfg.connect_timeout = Duration::from_secs(1);
    let client = MQClient::start(cfg).unwrap();
    let mut pcfg = ProducerConfig::new("PG_restart");
    pcfg.send_timeout = Duration::from_secs(3);
    let producer = Producer::new(client.clone(), pcfg);
    let topic = unique("T_restart");
    let before = producer.send(Message::new(&topic, "before")).await.unwrap();

    broker_ctl("stop-broker");
    let mut errors = Vec::new();
    for i in 0..5 {
        let started = Instant::now();
        match producer
            .send(Message::new(&topic, format!("down {i}")))
            .await
        {
            Ok(r) => panic!("send succeeded with the broker down: {r:?}"),
            Err(e) => {
                assert!(e.is_transport(), "expected a transport error, got {e}");
                assert!(
                    started.elapsed() < Duration::from_secs(6),
                    "send hung {:?}",
                    started.elapsed()
                );
                errors.push(e);
            }
        }
    }
    // Failed dials back off: sends right after one fail without dialling the dead broker again.
    assert!(
        errors
            .iter()
            .any(|e| matches!(e, ClientError::Reconnecting { .. })),
        "every send dialled the dead broker again: {errors:?}"
    );

    broker_ctl("start-broker");
    let deadline = Instant::now() + Duration::from_secs(60);
    let after = loop {
        match producer.send(Message::new(&topic, "after")).await {
            Ok(r) => break r,
            Err(e) if Instant::now() < deadline => {
                eprintln!("not yet: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("sends never recovered: {e}"),
        }
    };
    // The store survived the restart: both messages are there, in one client's lifetime.
    let m = client.view_message(&before.offset_msg_id).await.unwrap();
    assert_eq!(&m.body[..], b"before");
    let r = client
        .pull(
            &after.queue,
            &PullRequest::new("CG_restart", after.queue_offset),
        )
        .await
        .unwrap();
    assert_eq!(r.messages.first().map(|m| &m.body[..]), Some(&b"after"[..]));
    client.shutdown().await;
}
