//! Receipt-based consumption (the engine's per-message receipts, as the Aliyun API will use
//! them) through the driver against the real broker: partial acks commit the lowest unacked
//! offset, an unacked message comes back after its invisibility time with its delivery count
//! raised, and after `max_deliveries` it goes to the group's dead-letter queue.
//! Needs `RMQ_NAMESRV` (scripts/broker.sh exec -- cargo test -p rmq-gateway --features
//! broker-tests --test receipts_broker).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rmq_gateway::broker::{BrokerApi, ClientBroker};
use rmq_gateway::clock::SystemClock;
use rmq_gateway::config::Config;
use rmq_gateway::engine::ReceiptOutcome;
use rmq_gateway::service::{Gateway, ProduceRequest, ReceiveRequest, Received};
use rmq_remoting::body::MessageQueue;
use rmq_test_support::{namesrv, unique};

fn gateway(topic: &str, group: &str) -> Arc<Gateway<ClientBroker>> {
    let config = Config::from_toml(&format!(
        r#"
namesrv = ["{}"]
[[producer]]
name = "p"
topic = "{topic}"
[[consumer]]
name = "{group}"
topic = "{topic}"
queue_mode = "shared"
max_deliveries = 2
"#,
        namesrv()
    ))
    .unwrap();
    config.validate().unwrap();
    let broker = ClientBroker::start(&config, unique("receipts")).unwrap();
    Gateway::new(&config, broker, Arc::new(SystemClock))
}

/// A Java broker tells the name server about a topic auto-created by a send only after it has
/// answered the send (docs/broker-differences.md): wait, bounded, until the route is there.
async fn wait_for_route(gw: &Gateway<ClientBroker>, topic: &str) {
    let start = Instant::now();
    while let Err(e) = gw.broker().client().route(topic).await {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no route for {topic} 10 s after a send: {e}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn produce(gw: &Gateway<ClientBroker>, body: &str) {
    gw.produce(ProduceRequest {
        producer: "p".into(),
        message: body.to_owned().into(),
        ..Default::default()
    })
    .await
    .unwrap();
}

fn req(group: &str, topic: &str, max: usize, invisible_ms: i64) -> ReceiveRequest {
    ReceiveRequest {
        consumer: group.into(),
        topic: topic.into(),
        client_id: None,
        client_ip: None,
        max,
        invisible_ms,
        wait: Duration::from_secs(2),
    }
}

/// Receives until `n` messages came (or 30 s passed).
async fn receive_n(
    gw: &Gateway<ClientBroker>,
    group: &str,
    topic: &str,
    n: usize,
    invisible_ms: i64,
) -> Vec<Received> {
    let start = Instant::now();
    let mut got = Vec::new();
    while got.len() < n && start.elapsed() < Duration::from_secs(30) {
        got.extend(
            gw.receive(req(group, topic, n - got.len(), invisible_ms))
                .await
                .unwrap(),
        );
    }
    got
}

fn body(r: &Received) -> String {
    String::from_utf8(r.message.body.to_vec()).unwrap()
}

async fn committed(gw: &Gateway<ClientBroker>, group: &str, mq: &MessageQueue) -> Option<i64> {
    gw.broker().query_offset(group, mq).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_acks_commit_the_lowest_unacked_offset() {
    let topic = unique("GwRcpt");
    let group = unique("rcpt");
    let gw = gateway(&topic, &group);
    for i in 0..8 {
        produce(&gw, &format!("m{i}")).await;
    }
    wait_for_route(&gw, &topic).await;
    let got = receive_n(&gw, &group, &topic, 8, 60_000).await;
    let bodies: HashSet<String> = got.iter().map(body).collect();
    assert_eq!(bodies.len(), 8, "each message once: {bodies:?}");
    assert!(got.iter().all(|r| r.delivery_count == 1));
    // per queue: ack everything but the lowest offset; nothing may be committed past it
    let mut by_queue: BTreeMap<i32, Vec<&Received>> = BTreeMap::new();
    for r in &got {
        by_queue
            .entry(r.receipt.queue.queue_id)
            .or_default()
            .push(r);
    }
    for list in by_queue.values_mut() {
        list.sort_by_key(|r| r.receipt.offset);
        let mq = MessageQueue::new(
            topic.clone(),
            list[0].receipt.queue.broker_name.clone(),
            list[0].receipt.queue.queue_id,
        );
        let before = committed(&gw, &group, &mq).await;
        for r in &list[1..] {
            let o = gw
                .ack_receipt(&group, &topic, None, &r.receipt)
                .await
                .unwrap();
            assert_eq!(o, ReceiptOutcome::Acked, "{o:?}");
        }
        assert_eq!(committed(&gw, &group, &mq).await, before);
        let o = gw
            .ack_receipt(&group, &topic, None, &list[0].receipt)
            .await
            .unwrap();
        assert!(matches!(o, ReceiptOutcome::Commit(_)), "{o:?}");
        let end = list.last().unwrap().receipt.offset + 1;
        assert_eq!(committed(&gw, &group, &mq).await, Some(end));
    }
    assert!(gw
        .receive(req(&group, &topic, 8, 60_000))
        .await
        .unwrap()
        .is_empty());
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unacked_message_comes_back_then_goes_to_the_dead_letter_queue() {
    let topic = unique("GwRedo");
    let group = unique("redo");
    let gw = gateway(&topic, &group);
    produce(&gw, "again").await;
    wait_for_route(&gw, &topic).await;
    let first = receive_n(&gw, &group, &topic, 1, 1_500).await;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].delivery_count, 1);
    // invisible until its deadline
    assert!(gw
        .receive(ReceiveRequest {
            wait: Duration::ZERO,
            ..req(&group, &topic, 1, 1_500)
        })
        .await
        .unwrap()
        .is_empty());
    tokio::time::sleep(Duration::from_millis(1_600)).await;
    let second = receive_n(&gw, &group, &topic, 1, 1_500).await;
    assert_eq!(second.len(), 1);
    assert_eq!(body(&second[0]), "again");
    assert_eq!(second[0].delivery_count, 2);
    assert_ne!(second[0].receipt, first[0].receipt);
    let stale = gw
        .ack_receipt(&group, &topic, None, &first[0].receipt)
        .await
        .unwrap();
    assert!(matches!(stale, ReceiptOutcome::Stale { .. }), "{stale:?}");
    // the third delivery would exceed max_deliveries = 2: dead-lettered and committed past
    tokio::time::sleep(Duration::from_millis(1_600)).await;
    let third = gw.receive(req(&group, &topic, 1, 1_500)).await.unwrap();
    assert!(
        third.is_empty(),
        "{:?}",
        third.iter().map(body).collect::<Vec<_>>()
    );
    let q = &first[0].receipt.queue;
    let mq = MessageQueue::new(topic.clone(), q.broker_name.clone(), q.queue_id);
    assert_eq!(
        committed(&gw, &group, &mq).await,
        Some(first[0].receipt.offset + 1)
    );
    let dlq = gw.broker().route(&format!("%DLQ%{group}")).await.unwrap();
    let mut stored = 0;
    for mq in &dlq {
        stored += gw.broker().max_offset(mq).await.unwrap();
    }
    assert_eq!(stored, 1, "one message in %DLQ%{group}");
    gw.shutdown().await;
}
