//! The driver on the in-memory broker with a manual clock: leases, expiry, redelivery, broker
//! locks handed between two instances, pause and rate limits, without sleeping.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::clock::ManualClock;
use crate::engine::locks::{IDLE_UNLOCK_MS, LOCK_TRUST_MS};
use crate::engine::ReceiptOutcome;
use crate::testing::{MemBroker, MemClient, LOCK_EXPIRY_MS};

const TOPIC: &str = "orders";
const TIMEOUT_MS: i64 = 10_000;

fn config(mode: &str) -> Config {
    Config::from_toml(&format!(
        r#"
namesrv = ["mem:0"]
admin_token = "secret"
[[producer]]
name = "p"
topic = "{TOPIC}"
[[consumer]]
name = "c"
topic = "{TOPIC}"
mode = "{mode}"
max_pull_size = 4
consume_timeout_ms = {TIMEOUT_MS}
"#
    ))
    .unwrap()
}

struct World {
    clock: Arc<ManualClock>,
    broker: Arc<MemBroker>,
}

impl World {
    fn new() -> World {
        let clock = Arc::new(ManualClock::new(1_800_000_000_000));
        let broker = MemBroker::new(clock.clone(), 2);
        broker.create_topic(TOPIC);
        World { clock, broker }
    }

    fn gateway(&self, id: &str, mode: &str) -> Arc<Gateway<MemClient>> {
        Gateway::new(&config(mode), self.broker.client(id), self.clock.clone())
    }

    fn put(&self, queue: i32, n: usize) {
        for _ in 0..n {
            let at = self.broker.len(TOPIC, queue);
            self.broker.put(TOPIC, queue, &format!("q{queue}-m{at}"));
        }
    }
}

fn req(rid: Option<&str>, client_id: Option<&str>) -> FetchRequest {
    FetchRequest {
        consumer: "c".into(),
        topic: TOPIC.into(),
        request_id: rid.map(|r| RequestId::decode(r).unwrap()),
        client_id: client_id.map(str::to_owned),
        client_ip: Some("10.0.0.1".into()),
        wait: Duration::ZERO,
    }
}

use crate::request_id::RequestId;

fn bodies(r: &FetchResult) -> Vec<String> {
    r.messages
        .iter()
        .chain(&r.retry_messages)
        .map(|m| String::from_utf8(m.body.to_vec()).unwrap())
        .collect()
}

async fn fetch(gw: &Gateway<MemClient>, rid: Option<&str>) -> FetchResult {
    gw.fetch(req(rid, None)).await.unwrap()
}

async fn ack(gw: &Gateway<MemClient>, rid: &str) -> AckInfo {
    gw.ack("c", TOPIC, None, &RequestId::decode(rid).unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn fetch_then_ack_commits_and_the_next_fetch_moves_on() {
    let w = World::new();
    w.put(0, 6);
    let gw = w.gateway("A", "clustering");
    let first = fetch(&gw, None).await;
    assert_eq!(first.status, "FOUND");
    assert_eq!(bodies(&first), ["q0-m0", "q0-m1", "q0-m2", "q0-m3"]);
    let info = first.queue_info.as_ref().unwrap();
    assert_eq!((info.committed_offset, info.max_offset), (0, 6));
    // nothing else while the batch is out: the other queue is empty
    assert_eq!(fetch(&gw, None).await.status, "NO_NEW_MSG");
    // the ack rides on the next fetch
    let rid = first.request_id.unwrap();
    let second = fetch(&gw, Some(&rid)).await;
    assert_eq!(second.ack_info.as_ref().unwrap().status, 200);
    assert_eq!(bodies(&second), ["q0-m4", "q0-m5"]);
    assert_eq!(w.broker.committed("c", TOPIC, 0), Some(4));
    let info = ack(&gw, &second.request_id.unwrap()).await;
    assert_eq!(info.status, 200, "{}", info.message);
    assert_eq!(w.broker.committed("c", TOPIC, 0), Some(6));
    // acking again: the queue stands past the batch, nothing to do
    let again = ack(&gw, &rid).await;
    assert!(
        again.message.starts_with("lock not exist"),
        "{}",
        again.message
    );
    assert_eq!(w.broker.committed("c", TOPIC, 0), Some(6));
}

#[tokio::test]
async fn an_unacked_batch_comes_back_after_the_timeout_and_its_late_ack_is_stale() {
    let w = World::new();
    w.put(1, 2);
    let gw = w.gateway("A", "clustering");
    let first = fetch(&gw, None).await;
    let rid = first.request_id.clone().unwrap();
    w.clock.advance(TIMEOUT_MS - 1);
    assert_eq!(fetch(&gw, None).await.status, "NO_NEW_MSG");
    w.clock.advance(1);
    let again = fetch(&gw, None).await;
    assert_eq!(bodies(&again), bodies(&first));
    assert_ne!(again.request_id, first.request_id);
    let late = ack(&gw, &rid).await;
    assert_eq!(late.status, 409, "{}", late.message);
    assert_eq!(w.broker.committed("c", TOPIC, 1), None);
    assert_eq!(ack(&gw, &again.request_id.unwrap()).await.status, 200);
    assert_eq!(w.broker.committed("c", TOPIC, 1), Some(2));
}

#[tokio::test]
async fn unlock_hands_the_batch_out_again_at_once() {
    let w = World::new();
    w.put(0, 1);
    let gw = w.gateway("A", "clustering");
    let first = fetch(&gw, None).await;
    let rid = RequestId::decode(first.request_id.as_ref().unwrap()).unwrap();
    assert!(!gw
        .unlock(
            "c",
            TOPIC,
            None,
            &RequestId {
                lock_time: rid.lock_time - 1,
                ..rid.clone()
            }
        )
        .await
        .unwrap());
    assert!(gw.unlock("c", TOPIC, None, &rid).await.unwrap());
    assert_eq!(bodies(&fetch(&gw, None).await), ["q0-m0"]);
}

#[tokio::test]
async fn a_failed_commit_reports_500_and_the_batch_comes_again() {
    let w = World::new();
    w.put(0, 1);
    let gw = w.gateway("A", "clustering");
    let first = fetch(&gw, None).await;
    w.broker.fail_commits(1);
    let info = ack(&gw, first.request_id.as_ref().unwrap()).await;
    assert_eq!(info.status, 500, "{}", info.message);
    assert_eq!(w.broker.committed("c", TOPIC, 0), None);
    w.clock.advance(TIMEOUT_MS);
    assert_eq!(bodies(&fetch(&gw, None).await), ["q0-m0"]);
}

#[tokio::test]
async fn a_failed_pull_releases_the_queue() {
    let w = World::new();
    w.put(0, 1);
    let gw = w.gateway("A", "clustering");
    w.broker.fail_pulls(1);
    assert!(matches!(
        gw.fetch(req(None, None)).await,
        Err(GatewayError::Internal(_))
    ));
    assert_eq!(bodies(&fetch(&gw, None).await), ["q0-m0"]);
}

#[tokio::test]
async fn two_instances_serve_disjoint_queues_and_hand_them_over_when_idle() {
    let w = World::new();
    w.put(0, 2);
    let a = w.gateway("A", "clustering");
    let b = w.gateway("B", "clustering");
    let fa = fetch(&a, None).await;
    assert_eq!(bodies(&fa), ["q0-m0", "q0-m1"]);
    assert_eq!(w.broker.lock_owner("c", TOPIC, 0).as_deref(), Some("A"));
    // B cannot take queue 0 while A holds its broker lock
    w.put(0, 1);
    assert_eq!(fetch(&b, None).await.status, "NO_NEW_MSG");
    // A's consumer acks through B (a load balancer): B commits with no local lease, and A's
    // upkeep sees the batch committed and frees the queue
    let info = ack(&b, fa.request_id.as_ref().unwrap()).await;
    assert_eq!(info.status, 200, "{}", info.message);
    assert!(info.message.contains("no local lease"), "{}", info.message);
    assert_eq!(w.broker.committed("c", TOPIC, 0), Some(2));
    w.clock.advance(2_000);
    a.maintain_locks().await;
    // idle for IDLE_UNLOCK_MS: A gives the broker lock back
    w.clock.advance(IDLE_UNLOCK_MS);
    a.maintain_locks().await;
    assert_eq!(w.broker.lock_owner("c", TOPIC, 0), None);
    // B, past its held-elsewhere back-off, takes the queue over from the committed offset
    w.clock.advance(crate::engine::HELD_ELSEWHERE_MS);
    let fb = fetch(&b, None).await;
    assert_eq!(bodies(&fb), ["q0-m2"]);
    assert_eq!(w.broker.lock_owner("c", TOPIC, 0).as_deref(), Some("B"));
}

#[tokio::test]
async fn locks_are_renewed_while_in_use_and_expire_when_an_instance_dies() {
    let w = World::new();
    w.put(0, 1);
    let a = w.gateway("A", "clustering");
    let b = w.gateway("B", "clustering");
    let fa = fetch(&a, None).await;
    assert_eq!(fa.status, "FOUND");
    // the batch is out for the whole timeout: the upkeep renews the lock past the broker's
    // expiry
    for _ in 0..(LOCK_EXPIRY_MS / 5_000 + 1) {
        w.clock.advance(5_000);
        a.maintain_locks().await;
        let _ = fetch(&a, Some(fa.request_id.as_deref().unwrap())).await;
        w.put(0, 1);
    }
    assert_eq!(w.broker.lock_owner("c", TOPIC, 0).as_deref(), Some("A"));
    // A dies (no more upkeep): after the broker's expiry B takes the queue
    w.clock.advance(LOCK_EXPIRY_MS.max(LOCK_TRUST_MS));
    let fb = fetch(&b, None).await;
    assert_eq!(fb.status, "FOUND");
    assert_eq!(w.broker.lock_owner("c", TOPIC, 0).as_deref(), Some("B"));
}

#[tokio::test]
async fn pause_rate_limit_and_resend_through_configure() {
    let w = World::new();
    w.put(0, 8);
    let gw = w.gateway("A", "clustering");
    let change = |f: fn(&mut ConsumerConfigChange)| {
        let mut c = ConsumerConfigChange {
            consumer: "c".into(),
            ..Default::default()
        };
        f(&mut c);
        c
    };
    gw.configure(change(|c| c.pause = Some(true)))
        .await
        .unwrap();
    assert_eq!(fetch(&gw, None).await.status, "PAUSED");
    gw.configure(change(|c| c.pause = Some(false)))
        .await
        .unwrap();
    gw.configure(change(|c| c.limit_rate = Some(2.0)))
        .await
        .unwrap();
    let first = fetch(&gw, None).await;
    assert_eq!(first.messages.len(), 4);
    // four messages on a budget of two a second: limited until the debt is paid
    let rid = first.request_id.unwrap();
    let limited = fetch(&gw, Some(&rid)).await;
    assert_eq!(limited.status, "RATE_LIMITED");
    assert_eq!(
        limited.ack_info.unwrap().status,
        200,
        "the ack still happens"
    );
    w.clock.advance(2_000);
    assert_eq!(fetch(&gw, None).await.status, "FOUND");
    gw.configure(change(|c| c.rate_limit_enabled = Some(false)))
        .await
        .unwrap();
    // resend by unique key: handed out in retryMsgList with the next fetch
    let id = first.messages[0].msg_id();
    let c = ConsumerConfigChange {
        consumer: "c".into(),
        retry_msg_id: Some(id.clone()),
        ..Default::default()
    };
    gw.configure(c).await.unwrap();
    let r = fetch(&gw, None).await;
    assert_eq!(r.retry_messages.len(), 1);
    assert_eq!(r.retry_messages[0].msg_id(), id);
    assert!(gw
        .configure(change(|c| c.max_pull_size = Some(0)))
        .await
        .is_err());
}

#[tokio::test]
async fn broadcast_client_ids_each_get_everything() {
    let w = World::new();
    w.put(0, 2);
    let gw = w.gateway("A", "broadcast");
    for cid in ["x", "y"] {
        let r = gw.fetch(req(None, Some(cid))).await.unwrap();
        assert_eq!(bodies(&r), ["q0-m0", "q0-m1"], "{cid}");
    }
    assert!(
        gw.fetch(req(None, None)).await.is_err(),
        "clientId required"
    );
}

#[tokio::test]
async fn produce_is_visible_to_the_next_fetch_and_batches_report_per_message() {
    let w = World::new();
    let gw = w.gateway("A", "clustering");
    // the consumer's scope exists and saw both queues empty a moment ago
    assert_eq!(fetch(&gw, None).await.status, "NO_NEW_MSG");
    let sent = gw
        .produce(ProduceRequest {
            producer: "p".into(),
            message: "hello".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(sent.queue.topic, TOPIC);
    assert_eq!(bodies(&fetch(&gw, None).await), ["hello"]);
    let big = bytes::Bytes::from(vec![b'x'; 4 * 1024 * 1024 + 1]);
    let r = gw
        .produce_batch("p", vec!["a".into(), big, bytes::Bytes::new()])
        .await
        .unwrap();
    assert!(r[0].is_ok());
    assert_eq!(r[1].as_ref().unwrap_err().status(), 400);
    assert_eq!(r[2].as_ref().unwrap_err().status(), 400);
}

#[tokio::test]
async fn shutdown_gives_the_broker_locks_back() {
    let w = World::new();
    w.put(0, 1);
    let gw = w.gateway("A", "clustering");
    assert_eq!(fetch(&gw, None).await.status, "FOUND");
    gw.shutdown().await;
    assert_eq!(w.broker.lock_owner("c", TOPIC, 0), None);
    assert!(gw.fetch(req(None, None)).await.is_err());
}

// ---- receipts (the Aliyun API's consumption) ----------------------------------------------

fn receipts_world(queue_mode: &str) -> (World, Arc<Gateway<MemClient>>) {
    let w = World::new();
    let mut cfg = config("clustering");
    cfg.consumers[0].queue_mode = match queue_mode {
        "shared" => crate::config::QueueModeConfig::Shared,
        _ => crate::config::QueueModeConfig::Exclusive,
    };
    cfg.consumers[0].max_deliveries = Some(2);
    let gw = Gateway::new(&cfg, w.broker.client("A"), w.clock.clone());
    (w, gw)
}

fn receive_req(max: usize, invisible_ms: i64) -> ReceiveRequest {
    ReceiveRequest {
        consumer: "c".into(),
        topic: TOPIC.into(),
        client_id: None,
        client_ip: None,
        max,
        invisible_ms,
        wait: Duration::ZERO,
    }
}

fn offsets(v: &[Received]) -> Vec<(i32, i64, u32)> {
    v.iter()
        .map(|r| (r.receipt.queue.queue_id, r.receipt.offset, r.delivery_count))
        .collect()
}

#[tokio::test]
async fn receive_fills_across_queues_and_acks_commit_the_lowest_unacked() {
    let (w, gw) = receipts_world("shared");
    w.put(0, 3);
    w.put(1, 2);
    let got = gw.receive(receive_req(4, 5_000)).await.unwrap();
    assert_eq!(got.len(), 4, "{:?}", offsets(&got));
    // shared queues: the next call gets what is left, not the same messages
    let rest = gw.receive(receive_req(4, 5_000)).await.unwrap();
    assert_eq!(rest.len(), 1, "{:?}", offsets(&rest));
    let all: Vec<&Received> = got.iter().chain(&rest).collect();
    let q0: Vec<&&Received> = all
        .iter()
        .filter(|r| r.receipt.queue.queue_id == 0)
        .collect();
    // ack offsets 1 and 2 of queue 0: nothing moves while 0 is out
    for r in &q0[1..] {
        let o = gw.ack_receipt("c", TOPIC, None, &r.receipt).await.unwrap();
        assert_eq!(o, ReceiptOutcome::Acked);
    }
    assert_eq!(w.broker.committed("c", TOPIC, 0), None);
    let o = gw
        .ack_receipt("c", TOPIC, None, &q0[0].receipt)
        .await
        .unwrap();
    assert!(matches!(o, ReceiptOutcome::Commit(_)), "{o:?}");
    assert_eq!(w.broker.committed("c", TOPIC, 0), Some(3));
}

#[tokio::test]
async fn an_unacked_receipt_expires_and_the_message_comes_back_counted_then_dead_letters() {
    let (w, gw) = receipts_world("shared");
    w.put(0, 1);
    let first = gw.receive(receive_req(1, 1_000)).await.unwrap();
    assert_eq!(offsets(&first), [(0, 0, 1)]);
    assert!(gw.receive(receive_req(1, 1_000)).await.unwrap().is_empty());
    w.clock.advance(1_000);
    let second = gw.receive(receive_req(1, 1_000)).await.unwrap();
    assert_eq!(offsets(&second), [(0, 0, 2)]);
    assert_ne!(second[0].receipt, first[0].receipt);
    let stale = gw
        .ack_receipt("c", TOPIC, None, &first[0].receipt)
        .await
        .unwrap();
    assert!(matches!(stale, ReceiptOutcome::Stale { .. }), "{stale:?}");
    // a third delivery would exceed max_deliveries = 2: it goes to the DLQ and is committed
    w.clock.advance(1_000);
    assert!(gw.receive(receive_req(1, 1_000)).await.unwrap().is_empty());
    assert_eq!(w.broker.len("%DLQ%c", 0), 1);
    assert_eq!(w.broker.committed("c", TOPIC, 0), Some(1));
}

#[tokio::test]
async fn ordered_receive_hands_out_nothing_new_until_all_is_acked() {
    let (w, gw) = receipts_world("exclusive");
    w.put(0, 3);
    let got = gw.receive(receive_req(2, 5_000)).await.unwrap();
    assert_eq!(offsets(&got), [(0, 0, 1), (0, 1, 1)]);
    assert!(gw.receive(receive_req(2, 5_000)).await.unwrap().is_empty());
    gw.ack_receipt("c", TOPIC, None, &got[0].receipt)
        .await
        .unwrap();
    assert!(gw.receive(receive_req(2, 5_000)).await.unwrap().is_empty());
    gw.ack_receipt("c", TOPIC, None, &got[1].receipt)
        .await
        .unwrap();
    assert_eq!(w.broker.committed("c", TOPIC, 0), Some(2));
    let next = gw.receive(receive_req(2, 5_000)).await.unwrap();
    assert_eq!(offsets(&next), [(0, 2, 1)]);
}

#[tokio::test]
async fn receive_honours_pause() {
    let (w, gw) = receipts_world("shared");
    w.put(0, 1);
    let pause = |p| ConsumerConfigChange {
        consumer: "c".into(),
        pause: Some(p),
        ..Default::default()
    };
    gw.configure(pause(true)).await.unwrap();
    assert!(gw.receive(receive_req(1, 5_000)).await.unwrap().is_empty());
    gw.configure(pause(false)).await.unwrap();
    assert_eq!(gw.receive(receive_req(1, 5_000)).await.unwrap().len(), 1);
}

#[tokio::test]
async fn mq_proxy_calls_refuse_a_shared_consumer() {
    let (_w, gw) = receipts_world("shared");
    assert!(matches!(
        gw.fetch(req(None, None)).await,
        Err(GatewayError::BadRequest(_))
    ));
}

fn change(f: impl FnOnce(&mut ConsumerConfigChange)) -> ConsumerConfigChange {
    let mut c = ConsumerConfigChange {
        consumer: "c".into(),
        ..Default::default()
    };
    f(&mut c);
    c
}

#[tokio::test]
async fn settings_posted_to_one_instance_reach_the_others_and_survive_restarts() {
    let w = World::new();
    w.put(0, 3);
    let a = w.gateway("A", "clustering");
    let b = w.gateway("B", "clustering");
    assert_eq!(fetch(&b, None).await.status, "FOUND");
    a.configure(change(|c| {
        c.pause = Some(true);
        c.limit_rate = Some(7.0);
        c.max_pull_size = Some(2);
    }))
    .await
    .unwrap();
    assert!(
        !w.broker.consume_enabled("c"),
        "the pause reaches the broker"
    );
    assert_eq!(fetch(&a, None).await.status, "PAUSED");
    // B applies it on its next read of the control plane, once
    assert_eq!(b.sync_settings().await.unwrap(), 1);
    assert_eq!(b.sync_settings().await.unwrap(), 0);
    assert_eq!(fetch(&b, None).await.status, "PAUSED");
    let seen = b.effective_settings("c", None).await.unwrap();
    assert!(seen[0].pause && seen[0].rate_limit_enabled);
    assert_eq!((seen[0].limit_rate, seen[0].max_pull_size), (Some(7.0), 2));
    // Every instance restarts: the new ones start paused.
    drop((a, b));
    let a2 = w.gateway("A2", "clustering");
    a2.sync_settings().await.unwrap();
    assert_eq!(fetch(&a2, None).await.status, "PAUSED");
    // A resume through the new instance, and the broker's consumeEnable follows.
    a2.configure(change(|c| c.pause = Some(false)))
        .await
        .unwrap();
    assert!(w.broker.consume_enabled("c"));
    let b2 = w.gateway("B2", "clustering");
    b2.sync_settings().await.unwrap();
    let seen = b2.effective_settings("c", None).await.unwrap();
    assert!(!seen[0].pause);
    assert_eq!(seen[0].limit_rate, Some(7.0), "settings not named stay");
    // The stored value is the versioned document, one key per consumer.
    let kv = w.broker.kv(crate::engine::KV_NAMESPACE);
    let doc = StoredSettings::parse(&kv["c"]).unwrap();
    assert_eq!((doc.paused, doc.written_by.as_str()), (Some(false), "A2"));
}

#[tokio::test]
async fn a_resend_runs_once_per_instance_that_serves_the_consumer() {
    let w = World::new();
    w.put(1, 1);
    let a = w.gateway("A", "clustering");
    let b = w.gateway("B", "clustering");
    let first = fetch(&b, None).await;
    assert_eq!(first.status, "FOUND");
    ack(&b, first.request_id.as_deref().unwrap()).await;
    let uniq = first.messages[0]
        .properties
        .get(rmq_remoting::message::keys::UNIQ_KEY)
        .unwrap()
        .to_owned();
    a.configure(change(|c| c.retry_msg_id = Some(uniq.clone())))
        .await
        .unwrap();
    b.sync_settings().await.unwrap();
    let again = fetch(&b, None).await;
    assert_eq!(bodies(&again), ["q1-m0"], "B hands the resend out");
    b.sync_settings().await.unwrap();
    assert_eq!(fetch(&b, None).await.status, "NO_NEW_MSG", "only once");
    // An instance started after the call does not replay it.
    let c = w.gateway("C", "clustering");
    c.sync_settings().await.unwrap();
    assert_eq!(fetch(&c, None).await.status, "NO_NEW_MSG");
}

#[tokio::test]
async fn settings_are_refused_when_no_name_server_takes_them() {
    let w = World::new();
    let a = w.gateway("A", "clustering");
    w.broker.fail_kv(true);
    let e = a
        .configure(change(|c| c.pause = Some(true)))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("name server"), "{e}");
    w.broker.fail_kv(false);
    assert_eq!(fetch(&a, None).await.status, "NO_NEW_MSG", "not paused");
}

#[tokio::test]
async fn a_departed_instances_queues_are_taken_over_without_waiting_for_the_lock_expiry() {
    let w = World::new();
    w.put(0, 2);
    let a = w.gateway("A", "clustering");
    let b = w.gateway("B", "clustering");
    let fa = fetch(&a, None).await;
    assert_eq!(fa.status, "FOUND");
    assert_eq!(
        fetch(&b, None).await.status,
        "NO_NEW_MSG",
        "A holds queue 0"
    );
    b.maintain_locks().await; // B learns who is in the group
                              // A's process dies: the broker drops it and tells B; its lock would last 60 s more.
    w.broker.disconnect("A");
    w.clock.advance(1_000);
    b.maintain_locks().await;
    assert_eq!(w.broker.lock_owner("c", TOPIC, 0), None);
    let fb = fetch(&b, None).await;
    assert_eq!(
        bodies(&fb),
        ["q0-m0", "q0-m1"],
        "A's unacked batch comes again"
    );
    assert_eq!(w.broker.lock_owner("c", TOPIC, 0).as_deref(), Some("B"));
}

#[tokio::test]
async fn an_instance_stopped_past_the_lock_expiry_finds_its_queue_taken_and_its_ack_stale() {
    let w = World::new();
    w.put(0, 2);
    let a = w.gateway("A", "clustering");
    let b = w.gateway("B", "clustering");
    let fa = fetch(&a, None).await;
    let rid_a = fa.request_id.clone().unwrap();
    // A stands still (SIGSTOP) past the broker's lock expiry; B takes the queue.
    w.clock.advance(LOCK_EXPIRY_MS + 1_000);
    let fb = fetch(&b, None).await;
    assert_eq!(bodies(&fb), ["q0-m0", "q0-m1"]);
    // A resumes: its late ack is stale and moves no offset; it serves nothing of the queue.
    let info = ack(&a, &rid_a).await;
    assert_eq!(info.status, 409, "{}", info.message);
    assert_eq!(w.broker.committed("c", TOPIC, 0), None);
    assert_eq!(fetch(&a, None).await.status, "NO_NEW_MSG");
    // B's ack commits.
    assert_eq!(ack(&b, fb.request_id.as_deref().unwrap()).await.status, 200);
    assert_eq!(w.broker.committed("c", TOPIC, 0), Some(2));
}

#[tokio::test]
async fn locks_taken_on_a_connection_that_dropped_are_not_trusted() {
    let w = World::new();
    w.put(0, 2);
    let a = w.gateway("A", "clustering");
    let b = w.gateway("B", "clustering");
    let fa = fetch(&a, None).await;
    let rid_a = fa.request_id.clone().unwrap();
    assert_eq!(
        fetch(&b, None).await.status,
        "NO_NEW_MSG",
        "A holds queue 0"
    );
    b.maintain_locks().await;
    // A's connection drops for a moment: B releases its locks and takes the queue...
    w.broker.disconnect("A");
    b.maintain_locks().await;
    let fb = fetch(&b, None).await;
    assert_eq!(fb.status, "FOUND");
    // ...and A, back on a new connection well within its lock's trust, must not go on.
    w.broker.reconnect("A", &["c"]);
    w.clock.advance(1_000);
    assert_eq!(ack(&a, &rid_a).await.status, 409);
    assert_eq!(fetch(&a, None).await.status, "NO_NEW_MSG");
    assert_eq!(w.broker.committed("c", TOPIC, 0), None);
}

#[tokio::test]
async fn a_receipt_of_a_queue_lost_during_a_stop_is_stale_and_commits_nothing() {
    let w = World::new();
    w.put(0, 1);
    let mut cfg = config("clustering");
    cfg.consumers[0].queue_mode = crate::config::QueueModeConfig::Shared;
    let a = Gateway::new(&cfg, w.broker.client("A"), w.clock.clone());
    let b = Gateway::new(&cfg, w.broker.client("B"), w.clock.clone());
    let got = a.receive(receive_req(1, 300_000)).await.unwrap();
    assert_eq!(got.len(), 1);
    w.clock.advance(LOCK_EXPIRY_MS + 1_000);
    let again = b.receive(receive_req(1, 300_000)).await.unwrap();
    assert_eq!(offsets(&again), [(0, 0, 1)], "B serves the queue A held");
    let out = a
        .ack_receipt("c", TOPIC, None, &got[0].receipt)
        .await
        .unwrap();
    assert!(matches!(out, ReceiptOutcome::Stale { .. }), "{out:?}");
    assert_eq!(w.broker.committed("c", TOPIC, 0), None);
}
