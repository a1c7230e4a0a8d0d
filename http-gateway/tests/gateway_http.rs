//! The real `rmq-gateway` binary over HTTP, against the real broker that `scripts/broker.sh`
//! starts (found through `RMQ_NAMESRV`; these tests fail, never skip, when it is unset). This is
//! issue 4's proof: exactly-once delivery with acks, redelivery after the consume timeout,
//! unlock, stale acks, broadcast, two gateway instances (and one killed), bad input, cookies,
//! long polling, batch produce and graceful shutdown.
//!
//! Run with `scripts/broker.sh exec -- cargo test --offline -p rmq-gateway --features broker-tests --test gateway_http`.
//! Each test starts its own gateway processes (killed when the test ends) on free ports, with
//! topic and consumer names of its own. A gateway's log (RUST_LOG=info,rmq_gateway=debug) is kept
//! in a temp dir when its test fails, and its last lines are printed.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rmq_client::{ClientConfig, MQClient};
use rmq_remoting::body::MessageQueue;
use rmq_test_support::{
    broker_is_rocketmq_rust, get, http_builder, json_of, namesrv, post_form, unique, Gateway,
};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_rmq-gateway");
/// A request that takes longer than this is a failure (long polls wait at most 30 s).
const HTTP_TIMEOUT: Duration = Duration::from_secs(40);
/// Upper bound of iterations of any consume loop, besides its deadline.
const MAX_ROUNDS: usize = 20_000;

// ---- environment ------------------------------------------------------------------------------

fn http() -> reqwest::Client {
    http_builder(HTTP_TIMEOUT).build().unwrap()
}

fn client() -> MQClient {
    MQClient::start(ClientConfig::new(&namesrv())).unwrap()
}

// ---- configuration ----------------------------------------------------------------------------

fn producer_toml(name: &str, topic: &str) -> String {
    format!("[[producer]]\nname = \"{name}\"\ntopic = \"{topic}\"\n")
}

fn consumer_toml(name: &str, topic: &str, mode: &str, pull: u32, timeout_ms: u64) -> String {
    format!(
        "[[consumer]]\nname = \"{name}\"\ntopic = \"{topic}\"\nmode = \"{mode}\"\n\
         max_pull_size = {pull}\nconsume_timeout_ms = {timeout_ms}\n"
    )
}

// ---- HTTP helpers -----------------------------------------------------------------------------

async fn produce_ok(
    http: &reqwest::Client,
    gw: &str,
    producer: &str,
    message: &str,
    extra: &[(&str, &str)],
) -> Value {
    let mut form = vec![("producer", producer), ("message", message)];
    form.extend_from_slice(extra);
    let v = post_form(http, &format!("{gw}/mq/produce"), &form).await;
    assert_eq!(v["status"], 200, "produce {message:?}: {v}");
    assert_eq!(v["result"]["sendStatus"], "SEND_OK", "{v}");
    v["result"].clone()
}

/// GET /mq/message with `topic`, `consumer` and `extra`.
async fn fetch(
    http: &reqwest::Client,
    gw: &str,
    topic: &str,
    consumer: &str,
    extra: &[(&str, &str)],
) -> Value {
    let mut q = vec![("topic", topic), ("consumer", consumer)];
    q.extend_from_slice(extra);
    get(http, &format!("{gw}/mq/message"), &q).await
}

/// The messageIds and bodies of a fetch result (msgList then retryMsgList).
fn ids_of(result: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for list in ["msgList", "retryMsgList"] {
        for m in result[list].as_array().into_iter().flatten() {
            assert!(m["timestamp"].as_i64().is_some_and(|t| t > 0), "{m}");
            out.push((
                m["messageId"].as_str().unwrap().to_owned(),
                m["message"].as_str().unwrap().to_owned(),
            ));
        }
    }
    out
}

fn ids_only(result: &Value) -> Vec<String> {
    ids_of(result).into_iter().map(|(id, _)| id).collect()
}

// ---- broker-side checks -----------------------------------------------------------------------

/// The topic's queues, once the name server knows the topic (auto-created by a first produce).
async fn wait_route(c: &MQClient, topic: &str) -> Vec<MessageQueue> {
    let start = Instant::now();
    for _ in 0..300 {
        if let Ok(Some(r)) = c.refresh_route(topic).await {
            if !r.subscribe_queues.is_empty() {
                return r.subscribe_queues.clone();
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the name server does not know topic {topic} 30 s after the first produce"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no route for {topic}");
}

async fn max_offsets(c: &MQClient, qs: &[MessageQueue]) -> Vec<i64> {
    let mut v = Vec::new();
    for q in qs {
        v.push(c.max_offset(q).await.unwrap());
    }
    v
}

async fn committed(c: &MQClient, group: &str, qs: &[MessageQueue]) -> Vec<Option<i64>> {
    let mut v = Vec::new();
    for q in qs {
        v.push(c.query_consumer_offset(group, q).await.unwrap());
    }
    v
}

/// Asserts the group committed every queue up to its max offset (queues never written to may
/// have no committed offset).
async fn assert_all_committed(c: &MQClient, group: &str, qs: &[MessageQueue]) {
    let maxes = max_offsets(c, qs).await;
    let comm = committed(c, group, qs).await;
    for ((q, m), c) in qs.iter().zip(&maxes).zip(&comm) {
        let c = c.unwrap_or(0);
        assert_eq!(
            c, *m,
            "group {group}: queue {} committed {c}, max offset {m} (all: committed {comm:?}, max {maxes:?})",
            q.queue_id
        );
    }
}

// ---- consume loops ----------------------------------------------------------------------------

/// One HTTP consumer that always passes its previous requestId, as the guide's jQuery does.
#[derive(Clone)]
struct LoopSpec {
    base: String,
    topic: String,
    consumer: String,
    client_id: Option<String>,
    /// Stop once the shared `seen` set has this many ids.
    want: usize,
    deadline: Instant,
    /// "Processing" time per batch, before the next fetch acks it.
    process: Duration,
    /// Ack the last batch with /mq/ack when the loop ends.
    final_ack: bool,
    /// End at the first transport error (the gateway was killed).
    stop_on_error: bool,
    stop: Arc<AtomicBool>,
}

#[derive(Debug, Default)]
struct Consumed {
    /// Every delivery, in order (duplicates included).
    ids: Vec<String>,
    bodies: Vec<String>,
    /// The msgList entries as returned.
    msgs: Vec<Value>,
    /// Envelope or transport errors.
    errors: Vec<String>,
    /// ackInfo (or /mq/ack answers) that were not 200.
    bad_acks: Vec<Value>,
    /// The last batch, surely not acked: the loop ended with its requestId unsent, or the
    /// request carrying it was refused at connect.
    unacked: Vec<String>,
    /// The last batch whose ack request was sent but got no answer.
    ack_unknown: Vec<String>,
    batches: usize,
}

async fn consume_loop(
    http: reqwest::Client,
    spec: LoopSpec,
    seen: Arc<Mutex<HashSet<String>>>,
) -> Consumed {
    let mut out = Consumed::default();
    let mut rid: Option<String> = None;
    let mut batch: Vec<String> = Vec::new();
    let url = format!("{}/mq/message", spec.base);
    for _ in 0..MAX_ROUNDS {
        if Instant::now() >= spec.deadline
            || spec.stop.load(Ordering::Acquire)
            || seen.lock().unwrap().len() >= spec.want
        {
            break;
        }
        let mut q: Vec<(&str, String)> = vec![
            ("topic", spec.topic.clone()),
            ("consumer", spec.consumer.clone()),
        ];
        if let Some(c) = &spec.client_id {
            q.push(("clientId", c.clone()));
        }
        if let Some(r) = &rid {
            q.push(("requestId", r.clone()));
        }
        let resp = match http.get(&url).query(&q).send().await {
            Ok(r) => r,
            Err(e) => {
                out.errors.push(format!("transport: {e}"));
                if spec.stop_on_error {
                    if rid.is_some() {
                        if e.is_connect() {
                            out.unacked = std::mem::take(&mut batch);
                        } else {
                            out.ack_unknown = std::mem::take(&mut batch);
                        }
                    }
                    return out;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let v = json_of(resp).await;
        if v["status"] != 200 {
            out.errors.push(v.to_string());
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        let r = &v["result"];
        if rid.take().is_some() {
            batch.clear();
            if r["ackInfo"]["status"] != 200 {
                out.bad_acks.push(r["ackInfo"].clone());
            }
        }
        match r["status"].as_str() {
            Some("FOUND") => {
                let got = ids_of(r);
                assert!(!got.is_empty(), "FOUND without messages: {v}");
                out.msgs
                    .extend(r["msgList"].as_array().into_iter().flatten().cloned());
                {
                    let mut s = seen.lock().unwrap();
                    for (id, _) in &got {
                        s.insert(id.clone());
                    }
                }
                for (id, body) in got {
                    batch.push(id.clone());
                    out.ids.push(id);
                    out.bodies.push(body);
                }
                out.batches += 1;
                rid = Some(
                    r["requestId"]
                        .as_str()
                        .expect("FOUND has a requestId")
                        .into(),
                );
                if !spec.process.is_zero() {
                    tokio::time::sleep(spec.process).await;
                }
            }
            Some("NO_NEW_MSG") => tokio::time::sleep(Duration::from_millis(50)).await,
            _ => {
                out.errors.push(v.to_string());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    if let Some(r) = rid {
        if spec.final_ack {
            let mut q: Vec<(&str, &str)> = vec![
                ("topic", &spec.topic),
                ("consumer", &spec.consumer),
                ("requestId", &r),
            ];
            if let Some(c) = &spec.client_id {
                q.push(("clientId", c));
            }
            let v = get(&http, &format!("{}/mq/ack", spec.base), &q).await;
            if v["status"] != 200 {
                out.bad_acks.push(v);
            }
        } else {
            out.unacked = batch;
        }
    }
    out
}

fn spec(gw: &Gateway, topic: &str, consumer: &str, want: usize, budget: Duration) -> LoopSpec {
    LoopSpec {
        base: gw.base.clone(),
        topic: topic.to_owned(),
        consumer: consumer.to_owned(),
        client_id: None,
        want,
        deadline: Instant::now() + budget,
        process: Duration::ZERO,
        final_ack: true,
        stop_on_error: false,
        stop: Arc::new(AtomicBool::new(false)),
    }
}

fn duplicates(ids: &[String]) -> Vec<&String> {
    let mut count: HashMap<&String, usize> = HashMap::new();
    for id in ids {
        *count.entry(id).or_default() += 1;
    }
    let mut d: Vec<&String> = count
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(id, _)| id)
        .collect();
    d.sort();
    d
}

/// What /mq/produce said about one message.
#[derive(Debug, Clone)]
struct Produced {
    body: String,
    queue_id: i64,
}

/// Produces `n` messages `"{prefix}-{i}"` through `gw` with `tasks` concurrent tasks; returns
/// msgId -> what was sent. `extra(i)` adds parameters.
async fn produce_many(
    http: &reqwest::Client,
    gw: &str,
    producer: &str,
    prefix: &str,
    n: usize,
    tasks: usize,
    extra: fn(usize) -> Vec<(&'static str, String)>,
) -> HashMap<String, Produced> {
    let mut handles = Vec::new();
    for t in 0..tasks {
        let http = http.clone();
        let gw = gw.to_owned();
        let producer = producer.to_owned();
        let prefix = prefix.to_owned();
        handles.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for i in (t..n).step_by(tasks) {
                let body = format!("{prefix}-{i}");
                let params = extra(i);
                let p: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
                let r = produce_ok(&http, &gw, &producer, &body, &p).await;
                let queue_id = r["messageQueue"]["queueId"].as_i64().unwrap();
                out.push((
                    r["msgId"].as_str().unwrap().to_owned(),
                    Produced { body, queue_id },
                ));
            }
            out
        }));
    }
    let mut all = HashMap::new();
    for h in handles {
        for (id, p) in h.await.unwrap() {
            assert!(all.insert(id.clone(), p).is_none(), "msgId {id} twice");
        }
    }
    assert_eq!(all.len(), n);
    all
}

fn no_extra(_: usize) -> Vec<(&'static str, String)> {
    Vec::new()
}

// ---- 1. exactly once ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thousand_messages_three_consumers_exactly_once() {
    let t0 = Instant::now();
    let topic = unique("GwOnce");
    let (p, c) = ("once-p", "once-c");
    let gw = Gateway::start(
        BIN,
        "once",
        &(producer_toml(p, &topic) + &consumer_toml(c, &topic, "clustering", 32, 30_000)),
    )
    .await;
    let http = http();
    let mq = client();
    let n = 1000;
    let produced = produce_many(&http, &gw.base, p, "once", n, 16, |i| {
        let mut v = Vec::new();
        if i.is_multiple_of(3) {
            v.push(("orderId", format!("order-{}", i % 7)));
        }
        if i.is_multiple_of(5) {
            v.push(("keys", format!("k{i} kk{i}")));
        }
        if i.is_multiple_of(4) {
            v.push(("tags", "tagA".to_owned()));
        }
        v
    })
    .await;
    let queues = wait_route(&mq, &topic).await;
    eprintln!(
        "produced {n} in {:?} over {} queues",
        t0.elapsed(),
        queues.len()
    );

    let seen = Arc::new(Mutex::new(HashSet::new()));
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let s = spec(&gw, &topic, c, n, Duration::from_secs(60));
            tokio::spawn(consume_loop(http.clone(), s, seen.clone()))
        })
        .collect();
    let mut all_ids = Vec::new();
    let mut all_bodies = HashSet::new();
    let mut all_msgs = Vec::new();
    for h in handles {
        let out = h.await.unwrap();
        assert!(out.errors.is_empty(), "errors: {:?}", out.errors);
        assert!(out.bad_acks.is_empty(), "acks failed: {:?}", out.bad_acks);
        eprintln!(
            "a loop got {} messages in {} batches",
            out.ids.len(),
            out.batches
        );
        all_ids.extend(out.ids);
        all_bodies.extend(out.bodies);
        all_msgs.extend(out.msgs);
    }
    assert_eq!(
        duplicates(&all_ids),
        Vec::<&String>::new(),
        "delivered twice"
    );
    let got: HashSet<&String> = all_ids.iter().collect();
    let missing: Vec<&String> = produced.keys().filter(|id| !got.contains(id)).collect();
    assert!(
        missing.is_empty(),
        "{} never delivered: {missing:?}",
        missing.len()
    );
    assert_eq!(all_ids.len(), n);
    let want_bodies: HashSet<String> = produced.values().map(|p| p.body.clone()).collect();
    assert_eq!(all_bodies, want_bodies);
    // tags and keys come back; one orderId, one queue.
    for m in &all_msgs {
        let i: usize = m["message"].as_str().unwrap()["once-".len()..]
            .parse()
            .unwrap();
        let tags = i.is_multiple_of(4).then_some("tagA");
        assert_eq!(m["tags"].as_str(), tags, "{m}");
        let keys = i.is_multiple_of(5).then(|| format!("k{i} kk{i}"));
        assert_eq!(m["keys"].as_str(), keys.as_deref(), "{m}");
    }
    let mut order_queues: HashMap<usize, HashSet<i64>> = HashMap::new();
    for p in produced.values() {
        let i: usize = p.body["once-".len()..].parse().unwrap();
        if i.is_multiple_of(3) {
            order_queues.entry(i % 7).or_default().insert(p.queue_id);
        }
    }
    assert!(
        order_queues.values().all(|q| q.len() == 1),
        "an orderId spread over queues: {order_queues:?}"
    );
    assert_all_committed(&mq, c, &queues).await;
    eprintln!("exactly once: {:?}", t0.elapsed());
}

// ---- 2. consume timeout, unlock, stale acks ------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacked_batch_returns_after_timeout_unlock_and_stale_ack() {
    let t0 = Instant::now();
    let topic = unique("GwRedeliver");
    let (p, c) = ("redo-p", "redo-c");
    let gw = Gateway::start(
        BIN,
        "redo",
        &(producer_toml(p, &topic) + &consumer_toml(c, &topic, "clustering", 32, 2000)),
    )
    .await;
    let http = http();
    let mq = client();
    let mut queue_ids = HashSet::new();
    for i in 0..5 {
        let r = produce_ok(
            &http,
            &gw.base,
            p,
            &format!("redo-{i}"),
            &[("orderId", "one-order")],
        )
        .await;
        queue_ids.insert(r["messageQueue"]["queueId"].as_i64().unwrap());
    }
    assert_eq!(queue_ids.len(), 1, "one orderId, one queue");
    let qid = *queue_ids.iter().next().unwrap() as i32;
    let queues = wait_route(&mq, &topic).await;
    let q = queues.iter().find(|q| q.queue_id == qid).unwrap().clone();
    let max = mq.max_offset(&q).await.unwrap();
    assert_eq!(max, 5);

    // A batch, not acked.
    let v = fetch(&http, &gw.base, &topic, c, &[]).await;
    assert_eq!(v["result"]["status"], "FOUND", "{v}");
    let first = ids_only(&v["result"]);
    assert_eq!(first.len(), 5, "{v}");
    let rid1 = v["result"]["requestId"].as_str().unwrap().to_owned();
    assert_eq!(v["result"]["queueInfo"]["messageQueue"]["queueId"], qid);
    let before = mq.query_consumer_offset(c, &q).await.unwrap();

    // At once again: the queue is leased, nothing else has messages.
    let v = fetch(&http, &gw.base, &topic, c, &[]).await;
    assert_eq!(v["status"], 200, "{v}");
    assert_eq!(v["result"]["status"], "NO_NEW_MSG", "{v}");
    assert!(ids_only(&v["result"]).is_empty());
    assert!(v["result"].get("requestId").is_none(), "{v}");

    // After the 2 s consume timeout: the same batch, under a new lease.
    tokio::time::sleep(Duration::from_millis(2600)).await;
    let v = fetch(&http, &gw.base, &topic, c, &[]).await;
    assert_eq!(v["result"]["status"], "FOUND", "{v}");
    assert_eq!(
        ids_only(&v["result"]),
        first,
        "the unacked batch comes again"
    );
    let rid2 = v["result"]["requestId"].as_str().unwrap().to_owned();
    assert_ne!(rid1, rid2);

    // The expired lease's requestId is stale: it must not move the offset, through
    // /mq/message or /mq/ack.
    let v = fetch(&http, &gw.base, &topic, c, &[("requestId", &rid1)]).await;
    assert_eq!(v["status"], 200, "{v}");
    let ack = &v["result"]["ackInfo"];
    assert!(ack["status"].is_number() && ack["status"] != 200, "{v}");
    assert!(ack["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert_eq!(v["result"]["status"], "NO_NEW_MSG", "{v}");
    let v = get(
        &http,
        &format!("{}/mq/ack", gw.base),
        &[("topic", &topic), ("consumer", c), ("requestId", &rid1)],
    )
    .await;
    assert_ne!(v["status"], 200, "stale /mq/ack: {v}");
    assert_eq!(mq.query_consumer_offset(c, &q).await.unwrap(), before);

    // /mq/unlock gives it back at once.
    let v = get(
        &http,
        &format!("{}/mq/unlock", gw.base),
        &[("topic", &topic), ("consumer", c), ("requestId", &rid2)],
    )
    .await;
    assert_eq!(v["status"], 200, "{v}");
    let t = Instant::now();
    let v = fetch(&http, &gw.base, &topic, c, &[]).await;
    assert_eq!(v["result"]["status"], "FOUND", "{v}");
    assert_eq!(
        ids_only(&v["result"]),
        first,
        "unlock brings the batch back"
    );
    assert!(t.elapsed() < Duration::from_millis(1500));
    let rid3 = v["result"]["requestId"].as_str().unwrap().to_owned();
    assert_eq!(mq.query_consumer_offset(c, &q).await.unwrap(), before);
    // The unlocked lease's requestId is stale too.
    let v = get(
        &http,
        &format!("{}/mq/ack", gw.base),
        &[("topic", &topic), ("consumer", c), ("requestId", &rid2)],
    )
    .await;
    assert_ne!(v["status"], 200, "ack after unlock: {v}");
    assert_eq!(mq.query_consumer_offset(c, &q).await.unwrap(), before);

    // The live requestId acks: the committed offset reaches the max offset.
    let v = fetch(&http, &gw.base, &topic, c, &[("requestId", &rid3)]).await;
    assert_eq!(v["result"]["ackInfo"]["status"], 200, "{v}");
    assert_eq!(v["result"]["status"], "NO_NEW_MSG", "{v}");
    assert_eq!(mq.query_consumer_offset(c, &q).await.unwrap(), Some(max));
    // And acking it twice changes nothing.
    let v = get(
        &http,
        &format!("{}/mq/ack", gw.base),
        &[("topic", &topic), ("consumer", c), ("requestId", &rid3)],
    )
    .await;
    assert_eq!(v["status"], 200, "{v}");
    assert_eq!(mq.query_consumer_offset(c, &q).await.unwrap(), Some(max));
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let v = fetch(&http, &gw.base, &topic, c, &[]).await;
    assert_eq!(
        v["result"]["status"], "NO_NEW_MSG",
        "acked stays acked: {v}"
    );
    eprintln!("redelivery: {:?}", t0.elapsed());
}

// ---- 3. broadcast ----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_client_ids_each_get_everything() {
    let t0 = Instant::now();
    let topic = unique("GwBroadcast");
    let (p, cb, cc) = ("bc-p", "bc-b", "bc-c");
    let gw = Gateway::start(
        BIN,
        "bcast",
        &(producer_toml(p, &topic)
            + &consumer_toml(cb, &topic, "broadcast", 8, 10_000)
            + &consumer_toml(cc, &topic, "clustering", 8, 10_000)),
    )
    .await;
    let http = http();
    let mq = client();
    let n = 60;
    let produced = produce_many(&http, &gw.base, p, "bc", n, 4, no_extra).await;
    let queues = wait_route(&mq, &topic).await;

    let mut handles = Vec::new();
    for id in ["a", "b"] {
        let mut s = spec(&gw, &topic, cb, n, Duration::from_secs(30));
        s.client_id = Some(id.to_owned());
        let seen = Arc::new(Mutex::new(HashSet::new()));
        handles.push(tokio::spawn(consume_loop(http.clone(), s, seen)));
    }
    for (h, id) in handles.into_iter().zip(["a", "b"]) {
        let out = h.await.unwrap();
        assert!(out.errors.is_empty(), "{id}: {:?}", out.errors);
        assert!(out.bad_acks.is_empty(), "{id}: {:?}", out.bad_acks);
        assert_eq!(duplicates(&out.ids), Vec::<&String>::new(), "{id}");
        let got: HashSet<String> = out.ids.into_iter().collect();
        let want: HashSet<String> = produced.keys().cloned().collect();
        assert_eq!(got, want, "clientId {id} gets every message");
    }
    // Each clientId's offsets live in the broker under <group>_<clientId>.
    assert_all_committed(&mq, &format!("{cb}_a"), &queues).await;
    assert_all_committed(&mq, &format!("{cb}_b"), &queues).await;

    let v = fetch(&http, &gw.base, &topic, cc, &[("clientId", "a")]).await;
    assert_eq!(v["status"], 400, "clustering with clientId: {v}");
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
    let v = fetch(&http, &gw.base, &topic, cb, &[]).await;
    assert_eq!(v["status"], 400, "broadcast without clientId: {v}");
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
    eprintln!("broadcast: {:?}", t0.elapsed());
}

// ---- 4. two gateway instances, then one killed ----------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_gateways_share_a_group_and_survive_kill9() {
    let t0 = Instant::now();
    let topic = unique("GwTwo");
    let (p, c) = ("two-p", "two-c");
    let body = producer_toml(p, &topic) + &consumer_toml(c, &topic, "clustering", 8, 5000);
    let mut gw_a = Gateway::start(BIN, "two-a", &body).await;
    let gw_b = Gateway::start(BIN, "two-b", &body).await;
    let http = http();
    let mq = client();

    // Round 1: both alive, acks in time: every message exactly once.
    let n1 = 240;
    let produced = produce_many(&http, &gw_a.base, p, "r1", n1, 8, no_extra).await;
    let queues = wait_route(&mq, &topic).await;
    let seen = Arc::new(Mutex::new(HashSet::new()));
    let mut handles = Vec::new();
    for gw in [&gw_a, &gw_a, &gw_b, &gw_b] {
        let mut s = spec(gw, &topic, c, n1, Duration::from_secs(40));
        s.process = Duration::from_millis(5);
        handles.push(tokio::spawn(consume_loop(http.clone(), s, seen.clone())));
    }
    let mut all = Vec::new();
    let mut per_gateway = [0usize; 2];
    for (i, h) in handles.into_iter().enumerate() {
        let out = h.await.unwrap();
        assert!(out.errors.is_empty(), "round 1 errors: {:?}", out.errors);
        assert!(out.bad_acks.is_empty(), "round 1 acks: {:?}", out.bad_acks);
        per_gateway[i / 2] += out.ids.len();
        all.extend(out.ids);
    }
    eprintln!("round 1: {per_gateway:?} messages through gateway a, b");
    assert_eq!(duplicates(&all), Vec::<&String>::new(), "delivered twice");
    let got: HashSet<&String> = all.iter().collect();
    assert!(
        produced.keys().all(|id| got.contains(id)),
        "round 1 lost messages"
    );
    assert_all_committed(&mq, c, &queues).await;
    eprintln!("round 1 done: {:?}", t0.elapsed());

    // Round 2: kill -9 gateway a mid-stream.
    let n2 = 400;
    let produced = produce_many(&http, &gw_b.base, p, "r2", n2, 8, no_extra).await;
    let seen = Arc::new(Mutex::new(HashSet::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for (i, gw) in [&gw_a, &gw_a, &gw_b, &gw_b].into_iter().enumerate() {
        let mut s = spec(gw, &topic, c, usize::MAX, Duration::from_secs(100));
        s.process = Duration::from_millis(30);
        s.stop = stop.clone();
        s.stop_on_error = i < 2;
        handles.push(tokio::spawn(consume_loop(http.clone(), s, seen.clone())));
    }
    let start = Instant::now();
    loop {
        let k = seen.lock().unwrap().len();
        if k >= 60 {
            assert!(
                k < n2,
                "all {n2} consumed before the kill; slow the loops down"
            );
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "round 2 does not start"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    gw_a.kill9();
    let killed = Instant::now();
    eprintln!(
        "killed gateway a after {} of {n2} messages",
        seen.lock().unwrap().len()
    );
    // Done when the group's committed offsets reach the max offsets: every message acked by
    // someone. The broker lets a's locks expire after up to 60 s.
    let mut done = false;
    for _ in 0..1000 {
        let maxes = max_offsets(&mq, &queues).await;
        let comm = committed(&mq, c, &queues).await;
        if maxes.iter().zip(&comm).all(|(m, c)| c.unwrap_or(0) == *m) {
            done = true;
            break;
        }
        if killed.elapsed() > Duration::from_secs(90) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stop.store(true, Ordering::Release);
    let took_over = killed.elapsed();
    let mut outs = Vec::new();
    for h in handles {
        outs.push(h.await.unwrap());
    }
    for (i, o) in outs.iter().enumerate() {
        eprintln!(
            "round 2 loop {i} ({}): {} messages, {} batches, {} errors, unacked {}, ack unknown {}",
            if i < 2 { "a" } else { "b" },
            o.ids.len(),
            o.batches,
            o.errors.len(),
            o.unacked.len(),
            o.ack_unknown.len()
        );
        if i >= 2 {
            assert!(o.errors.is_empty(), "gateway b errors: {:?}", o.errors);
            assert!(o.bad_acks.is_empty(), "gateway b acks: {:?}", o.bad_acks);
        }
    }
    assert!(
        done,
        "the group's offsets did not reach the max offsets 90 s after the kill:\n{}",
        gw_b.log_tail(40)
    );
    let seen = seen.lock().unwrap().clone();
    let missing: Vec<&String> = produced.keys().filter(|id| !seen.contains(*id)).collect();
    assert!(missing.is_empty(), "never delivered: {missing:?}");
    // What a delivered but surely did not get acked, b delivered again.
    let by_b: HashSet<&String> = outs[2..].iter().flat_map(|o| o.ids.iter()).collect();
    let lost: Vec<&String> = outs[..2]
        .iter()
        .flat_map(|o| o.unacked.iter())
        .filter(|id| !by_b.contains(id))
        .collect();
    assert!(
        lost.is_empty(),
        "unacked on a, not redelivered by b: {lost:?}"
    );
    eprintln!(
        "round 2: b took over {took_over:?} after the kill; total {:?}",
        t0.elapsed()
    );
}

// ---- 5. bad input ----------------------------------------------------------------------------------

/// A bad request: what, URL, query.
type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_400_and_changes_nothing() {
    let t0 = Instant::now();
    let topic = unique("GwBad");
    let other = unique("GwBadOther");
    let (p, c, c2) = ("bad-p", "bad-c", "bad-c2");
    let gw = Gateway::start(
        BIN,
        "bad",
        &(producer_toml(p, &topic)
            + &consumer_toml(c, &topic, "clustering", 32, 30_000)
            + &consumer_toml(c2, &other, "clustering", 32, 30_000)),
    )
    .await;
    let http = http();
    let mq = client();
    for i in 0..8 {
        produce_ok(&http, &gw.base, p, &format!("bad-{i}"), &[]).await;
    }
    let queues = wait_route(&mq, &topic).await;
    let max_before = max_offsets(&mq, &queues).await;
    let url = format!("{}/mq/produce", gw.base);
    let big = "x".repeat(4 * 1024 * 1024 + 1);
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("missing producer", vec![("message", "m")]),
        ("empty producer", vec![("producer", ""), ("message", "m")]),
        (
            "unknown producer",
            vec![("producer", "nope"), ("message", "m")],
        ),
        ("missing message", vec![("producer", p)]),
        ("empty message", vec![("producer", p), ("message", "")]),
        (
            "delayLevel 19",
            vec![("producer", p), ("message", "m"), ("delayLevel", "19")],
        ),
        (
            "delayLevel 0",
            vec![("producer", p), ("message", "m"), ("delayLevel", "0")],
        ),
        (
            "delayLevel not a number",
            vec![("producer", p), ("message", "m"), ("delayLevel", "soon")],
        ),
        ("body over 4 MiB", vec![("producer", p), ("message", &big)]),
    ];
    for (what, form) in &cases {
        let v = post_form(&http, &url, form).await;
        assert_eq!(v["status"], 400, "{what}: {v:.300}");
        assert!(
            v["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}: {v:.300}"
        );
        assert!(v.get("result").is_none(), "{what}: {v:.300}");
    }
    // The same in JSON.
    let v = json_of(
        http.post(&url)
            .json(&json!({"producer": p, "message": "m", "delayLevel": 19}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(v["status"], 400, "JSON delayLevel 19: {v}");
    assert_eq!(
        max_offsets(&mq, &queues).await,
        max_before,
        "a bad produce sent something"
    );

    // Consume: hold a live batch, then send bad requests (some carrying its requestId).
    let v = fetch(&http, &gw.base, &topic, c, &[]).await;
    assert_eq!(v["result"]["status"], "FOUND", "{v}");
    let rid = v["result"]["requestId"].as_str().unwrap().to_owned();
    let comm_before = committed(&mq, c, &queues).await;
    let msg = format!("{}/mq/message", gw.base);
    let ack = format!("{}/mq/ack", gw.base);
    let unlock = format!("{}/mq/unlock", gw.base);
    let bad: Vec<Case> = vec![
        (
            "unknown consumer",
            &msg,
            vec![("topic", &topic), ("consumer", "nope"), ("requestId", &rid)],
        ),
        (
            "missing consumer",
            &msg,
            vec![("topic", &topic), ("requestId", &rid)],
        ),
        (
            "missing topic",
            &msg,
            vec![("consumer", c), ("requestId", &rid)],
        ),
        (
            "wrong topic",
            &msg,
            vec![("topic", &other), ("consumer", c), ("requestId", &rid)],
        ),
        (
            "another consumer's topic",
            &msg,
            vec![("topic", &topic), ("consumer", c2), ("requestId", &rid)],
        ),
        (
            "malformed requestId",
            &msg,
            vec![
                ("topic", &topic),
                ("consumer", c),
                ("requestId", "!!notbase64"),
            ],
        ),
        (
            "waitSeconds 31",
            &msg,
            vec![("topic", &topic), ("consumer", c), ("waitSeconds", "31")],
        ),
        (
            "ack, wrong topic",
            &ack,
            vec![("topic", &other), ("consumer", c), ("requestId", &rid)],
        ),
        (
            "ack, malformed requestId",
            &ack,
            vec![
                ("topic", &topic),
                ("consumer", c),
                ("requestId", "!!notbase64"),
            ],
        ),
        (
            "ack without requestId",
            &ack,
            vec![("topic", &topic), ("consumer", c)],
        ),
        (
            "unlock, unknown consumer",
            &unlock,
            vec![("topic", &topic), ("consumer", "nope"), ("requestId", &rid)],
        ),
        (
            "unlock without requestId",
            &unlock,
            vec![("topic", &topic), ("consumer", c)],
        ),
    ];
    for (what, url, q) in &bad {
        let v = get(&http, url, q).await;
        assert_eq!(v["status"], 400, "{what}: {v}");
        assert!(
            v["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}: {v}"
        );
    }
    assert_eq!(
        committed(&mq, c, &queues).await,
        comm_before,
        "a bad consume request moved an offset"
    );
    // The batch is still leased to its requestId, which still acks.
    let v = fetch(&http, &gw.base, &topic, c, &[("requestId", &rid)]).await;
    assert_eq!(v["result"]["ackInfo"]["status"], 200, "{v}");
    let comm_after = committed(&mq, c, &queues).await;
    assert_ne!(comm_after, comm_before);

    // A well-formed requestId that no lease vouches for, ending far beyond the queue's end
    // (forged or garbled), must not move the offset past the messages.
    let qid = v["result"]["ackInfo"]["message"].as_str().unwrap();
    let q = queues
        .iter()
        .find(|q| qid.contains(&format!("{}-{}:", q.broker_name, q.queue_id)))
        .unwrap_or_else(|| panic!("which queue? {v}"));
    let at = mq.query_consumer_offset(c, q).await.unwrap().unwrap();
    let forged = forge_request_id(&q.broker_name, q.queue_id, at, at + 1_000_000);
    let v = get(
        &http,
        &ack,
        &[("topic", &topic), ("consumer", c), ("requestId", &forged)],
    )
    .await;
    assert_ne!(v["status"], 200, "forged requestId acked: {v}");
    assert_eq!(committed(&mq, c, &queues).await, comm_after);
    eprintln!("bad input: {:?}", t0.elapsed());
}

/// MQ-Proxy's requestId format: URL-safe base64 of `brokerName,queueId,offset,nextOffset,lockTime`.
fn forge_request_id(broker: &str, queue_id: i32, offset: i64, next: i64) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE
        .encode(format!("{broker},{queue_id},{offset},{next},1"))
}

// ---- 6. useCookie ----------------------------------------------------------------------------------

fn set_cookie_rid(r: &reqwest::Response) -> Option<String> {
    r.headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("rid="))
        .map(|v| v.split(';').next().unwrap_or("").to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn use_cookie_acks_through_the_rid_cookie() {
    let t0 = Instant::now();
    let topic = unique("GwCookie");
    let (p, c) = ("ck-p", "ck-c");
    let gw = Gateway::start(
        BIN,
        "cookie",
        &(producer_toml(p, &topic) + &consumer_toml(c, &topic, "clustering", 32, 30_000)),
    )
    .await;
    let http = http();
    let mq = client();
    let mut qid = None;
    for i in 0..3 {
        let r = produce_ok(
            &http,
            &gw.base,
            p,
            &format!("ck-{i}"),
            &[("orderId", "cookie")],
        )
        .await;
        qid = r["messageQueue"]["queueId"].as_i64();
    }
    let queues = wait_route(&mq, &topic).await;
    let q = queues
        .iter()
        .find(|q| Some(q.queue_id as i64) == qid)
        .unwrap()
        .clone();
    let url = format!("{}/mq/message", gw.base);
    let base_q = [
        ("topic", topic.as_str()),
        ("consumer", c),
        ("useCookie", "true"),
    ];

    let r = http.get(&url).query(&base_q).send().await.unwrap();
    let cookie = set_cookie_rid(&r).expect("Set-Cookie rid");
    let v = json_of(r).await;
    assert_eq!(v["result"]["status"], "FOUND", "{v}");
    assert_eq!(ids_only(&v["result"]).len(), 3);
    assert_eq!(v["result"]["requestId"].as_str(), Some(cookie.as_str()));
    let before = mq.query_consumer_offset(c, &q).await.unwrap();

    // Without useCookie the cookie is not an ack.
    let r = http
        .get(&url)
        .query(&[("topic", topic.as_str()), ("consumer", c)])
        .header(reqwest::header::COOKIE, format!("rid={cookie}"))
        .send()
        .await
        .unwrap();
    let v = json_of(r).await;
    assert!(v["result"].get("ackInfo").is_none(), "{v}");
    assert_eq!(v["result"]["status"], "NO_NEW_MSG", "{v}");
    assert_eq!(mq.query_consumer_offset(c, &q).await.unwrap(), before);

    // With it, the cookie acks and is cleared when nothing new comes.
    let r = http
        .get(&url)
        .query(&base_q)
        .header(reqwest::header::COOKIE, format!("other=1; rid={cookie}"))
        .send()
        .await
        .unwrap();
    let cleared = set_cookie_rid(&r);
    let v = json_of(r).await;
    assert_eq!(v["result"]["ackInfo"]["status"], 200, "{v}");
    assert_eq!(v["result"]["status"], "NO_NEW_MSG", "{v}");
    assert_eq!(cleared.as_deref(), Some(""), "the rid cookie is cleared");
    let max = mq.max_offset(&q).await.unwrap();
    assert_eq!(mq.query_consumer_offset(c, &q).await.unwrap(), Some(max));
    eprintln!("cookie: {:?}", t0.elapsed());
}

// ---- 7. waitSeconds ----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_seconds_long_polls() {
    let t0 = Instant::now();
    let topic = unique("GwWait");
    let (p, c) = ("wait-p", "wait-c");
    let gw = Gateway::start(
        BIN,
        "wait",
        &(producer_toml(p, &topic) + &consumer_toml(c, &topic, "clustering", 32, 30_000)),
    )
    .await;
    let http = http();
    let mq = client();
    // The topic must exist; consume its first message so it is empty.
    produce_ok(&http, &gw.base, p, "wait-first", &[]).await;
    let queues = wait_route(&mq, &topic).await;
    let v = fetch(&http, &gw.base, &topic, c, &[]).await;
    assert_eq!(v["result"]["status"], "FOUND", "{v}");
    let rid = v["result"]["requestId"].as_str().unwrap().to_owned();
    let v = get(
        &http,
        &format!("{}/mq/ack", gw.base),
        &[("topic", &topic), ("consumer", c), ("requestId", &rid)],
    )
    .await;
    assert_eq!(v["status"], 200, "{v}");
    assert_all_committed(&mq, c, &queues).await;

    // Empty: waitSeconds=2 waits about 2 s and finds nothing.
    let t = Instant::now();
    let v = fetch(&http, &gw.base, &topic, c, &[("waitSeconds", "2")]).await;
    let waited = t.elapsed();
    assert_eq!(v["result"]["status"], "NO_NEW_MSG", "{v}");
    assert!(
        waited >= Duration::from_millis(1800) && waited < Duration::from_secs(5),
        "waitSeconds=2 on an empty topic took {waited:?}"
    );

    // A message produced 1 s into a 5 s wait ends it early.
    let producer = {
        let http = http.clone();
        let base = gw.base.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            produce_ok(&http, &base, p, "wait-late", &[]).await
        })
    };
    let t = Instant::now();
    let v = fetch(&http, &gw.base, &topic, c, &[("waitSeconds", "5")]).await;
    let waited = t.elapsed();
    producer.await.unwrap();
    assert_eq!(v["result"]["status"], "FOUND", "{v}");
    let got = ids_of(&v["result"]);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1, "wait-late");
    eprintln!("long poll returned after {waited:?}");
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_millis(3500),
        "waitSeconds=5 with a message after 1 s took {waited:?}"
    );

    let v = fetch(&http, &gw.base, &topic, c, &[("waitSeconds", "31")]).await;
    assert_eq!(v["status"], 400, "{v}");
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
    let v = fetch(&http, &gw.base, &topic, c, &[("waitSeconds", "-1")]).await;
    assert_eq!(v["status"], 400, "{v}");
    eprintln!("waitSeconds: {:?}", t0.elapsed());
}

// ---- 8. batch produce ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_produce_and_per_message_results() {
    let t0 = Instant::now();
    let topic = unique("GwBatch");
    let (p, c) = ("batch-p", "batch-c");
    let gw = Gateway::start(
        BIN,
        "batch",
        &(producer_toml(p, &topic) + &consumer_toml(c, &topic, "clustering", 32, 30_000)),
    )
    .await;
    let http = http();
    let mq = client();
    let url = format!("{}/mq/produce/batch", gw.base);
    let v = post_form(
        &http,
        &url,
        &[
            ("producer", p),
            ("messages", r#"[{"id":"123","title":"video"},"only text"]"#),
        ],
    )
    .await;
    assert_eq!(v, json!({"status": 200}));
    let queues = wait_route(&mq, &topic).await;

    let big = "y".repeat(4 * 1024 * 1024 + 1);
    let messages = serde_json::to_string(&json!(["small one", big, "small two"])).unwrap();
    let v = post_form(&http, &url, &[("producer", p), ("messages", &messages)]).await;
    assert_eq!(v["status"], 500, "{v:.300}");
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
    let res = v["result"].as_array().expect("per-message results");
    assert_eq!(res.len(), 3, "{v:.300}");
    assert_eq!(res[0]["status"], 200, "{v:.300}");
    assert_eq!(res[1]["status"], 400, "{v:.300}");
    assert!(res[1]["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert_eq!(res[2]["status"], 200, "{v:.300}");

    // Bad batches: 400.
    for (what, form) in [
        ("not an array", vec![("producer", p), ("messages", "{}")]),
        ("no messages", vec![("producer", p)]),
        ("empty array", vec![("producer", p), ("messages", "[]")]),
        (
            "unknown producer",
            vec![("producer", "nope"), ("messages", "[\"a\"]")],
        ),
    ] {
        let v = post_form(&http, &url, &form).await;
        assert_eq!(v["status"], 400, "{what}: {v}");
    }

    let want: HashSet<String> = [
        r#"{"id":"123","title":"video"}"#,
        "only text",
        "small one",
        "small two",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    let seen = Arc::new(Mutex::new(HashSet::new()));
    let out = consume_loop(
        http.clone(),
        spec(&gw, &topic, c, want.len(), Duration::from_secs(20)),
        seen,
    )
    .await;
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let bodies: HashSet<String> = out.bodies.iter().cloned().collect();
    assert_eq!(bodies, want);
    assert_eq!(out.bodies.len(), 4, "nothing else, nothing twice");
    assert_all_committed(&mq, c, &queues).await;
    eprintln!("batch: {:?}", t0.elapsed());
}

// ---- 9. graceful shutdown ----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_cleanly_and_gives_queues_back() {
    let t0 = Instant::now();
    let topic = unique("GwTerm");
    let (p, c) = ("term-p", "term-c");
    let body = producer_toml(p, &topic) + &consumer_toml(c, &topic, "clustering", 32, 60_000);
    let mut gw_a = Gateway::start(BIN, "term-a", &body).await;
    let http = http();
    let mq = client();
    let n = 40;
    let produced = produce_many(&http, &gw_a.base, p, "term", n, 4, no_extra).await;
    let queues = wait_route(&mq, &topic).await;

    // Lease every queue on a (no acks): a holds their broker locks.
    let mut leased = HashSet::new();
    for _ in 0..queues.len() + 2 {
        let v = fetch(&http, &gw_a.base, &topic, c, &[]).await;
        if v["result"]["status"] == "FOUND" {
            leased.extend(ids_only(&v["result"]));
        }
    }
    assert_eq!(leased.len(), n, "a leased every queue");

    // b on the same group gets nothing while a holds the broker locks.
    let gw_b = Gateway::start(BIN, "term-b", &body).await;
    let v = fetch(&http, &gw_b.base, &topic, c, &[]).await;
    assert_eq!(
        v["result"]["status"], "NO_NEW_MSG",
        "a's queues served by b: {v}"
    );

    // A long poll in flight on a (every queue is leased, so it waits).
    let long_poll = {
        let http = http.clone();
        let url = format!("{}/mq/message", gw_a.base);
        let q = [
            ("topic", topic.clone()),
            ("consumer", c.to_owned()),
            ("waitSeconds", "20".to_owned()),
        ];
        tokio::spawn(async move {
            let r = http.get(url).query(&q).send().await;
            match r {
                Ok(r) => Ok(json_of(r).await),
                Err(e) => Err(e.to_string()),
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!long_poll.is_finished(), "the long poll did not wait");

    let t = Instant::now();
    gw_a.sigterm();
    let st = gw_a
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("no exit within 10 s of SIGTERM");
    eprintln!("SIGTERM -> exit {st} in {:?}", t.elapsed());
    assert!(st.success(), "exit status {st}:\n{}", gw_a.log_tail(30));
    assert!(t.elapsed() < Duration::from_secs(5), "slow shutdown");
    let lp = long_poll.await.unwrap();
    eprintln!("the long poll in flight got {lp:?}");
    let lp = lp.expect("the long poll got no answer");
    assert_eq!(lp["status"], 200, "{lp}");
    assert!(ids_only(&lp["result"]).is_empty(), "{lp}");

    // Now b gets a's queues, far inside the broker's 60 s lock expiry.
    let t = Instant::now();
    let seen = Arc::new(Mutex::new(HashSet::new()));
    let out = consume_loop(
        http.clone(),
        spec(&gw_b, &topic, c, n, Duration::from_secs(20)),
        seen,
    )
    .await;
    eprintln!("b redelivered {} in {:?}", out.ids.len(), t.elapsed());
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let got: HashSet<String> = out.ids.iter().cloned().collect();
    let want: HashSet<String> = produced.keys().cloned().collect();
    assert_eq!(got, want, "b gets what a leased and never acked");
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "b waited for broker lock expiry"
    );
    assert_all_committed(&mq, c, &queues).await;
    eprintln!("sigterm: {:?}", t0.elapsed());
}

// ---- administration (MQCloud's calls) ----------------------------------------------------------

async fn admin(http: &reqwest::Client, gw: &str, token: Option<&str>, body: Value) -> Value {
    let mut req = http.post(format!("{gw}/mq/consumer/config")).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    json_of(req.send().await.unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_pause_rate_reset_resend_and_backlog() {
    let topic = unique("GwAdmin");
    let (p, c) = (unique("p"), unique("c"));
    let body = format!(
        "admin_token = \"s3cret\"\n{}{}",
        producer_toml(&p, &topic),
        consumer_toml(&c, &topic, "clustering", 32, 60_000)
    );
    let gw = Gateway::start(BIN, "admin", &body).await;
    let http = http();
    let base = gw.base.clone();
    let mut sent = Vec::new();
    for i in 0..6 {
        let r = produce_ok(
            &http,
            &base,
            &p,
            &format!("admin-{i}"),
            &[("orderId", "one-queue")],
        )
        .await;
        sent.push(r["msgId"].as_str().unwrap().to_owned());
    }
    // the admin API needs the token
    let v = admin(&http, &base, None, json!({"consumer": c, "pause": 1})).await;
    assert_eq!(v["status"], 403, "{v}");
    let v = admin(
        &http,
        &base,
        Some("wrong"),
        json!({"consumer": c, "pause": 1}),
    )
    .await;
    assert_eq!(v["status"], 403, "{v}");
    let v = admin(
        &http,
        &base,
        Some("s3cret"),
        json!({"consumer": c, "maxPullSize": 500}),
    )
    .await;
    assert_eq!(v["status"], 400, "{v}");
    // pause: PAUSED, nothing handed out
    let v = admin(
        &http,
        &base,
        Some("s3cret"),
        json!({"consumer": c, "pause": 1}),
    )
    .await;
    assert_eq!(v["status"], 200, "{v}");
    let f = fetch(&http, &base, &topic, &c, &[]).await;
    assert_eq!(f["result"]["status"], "PAUSED", "{f}");
    admin(
        &http,
        &base,
        Some("s3cret"),
        json!({"consumer": c, "pause": 0}),
    )
    .await;
    // consume everything, ack it
    let f = fetch(&http, &base, &topic, &c, &[]).await;
    assert_eq!(f["result"]["status"], "FOUND", "{f}");
    let mut got = ids_only(&f["result"]);
    let rid = f["result"]["requestId"].as_str().unwrap().to_owned();
    let a = get(
        &http,
        &format!("{base}/mq/ack"),
        &[("topic", &topic), ("consumer", &c), ("requestId", &rid)],
    )
    .await;
    assert_eq!(a["status"], 200, "{a}");
    got.sort();
    let mut want = sent.clone();
    want.sort();
    assert_eq!(got, want);
    // backlog report: the queue is fully committed
    let o = get(
        &http,
        &format!("{base}/mq/clustering/queue/offset"),
        &[("consumer", &c)],
    )
    .await;
    let rows = o["result"].as_array().unwrap();
    let busy: Vec<&Value> = rows
        .iter()
        .filter(|r| r["maxOffset"].as_i64().unwrap() > 0)
        .collect();
    assert_eq!(busy.len(), 1, "{o}");
    assert_eq!(busy[0]["backlog"], 0, "{o}");
    assert_eq!(busy[0]["committedOffset"], busy[0]["maxOffset"]);
    // resend one message by its id: it comes back in retryMsgList
    admin(
        &http,
        &base,
        Some("s3cret"),
        json!({"consumer": c, "retryMsgId": sent[2]}),
    )
    .await;
    let f = fetch(&http, &base, &topic, &c, &[]).await;
    let retry: Vec<String> = f["result"]["retryMsgList"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["messageId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(retry, vec![sent[2].clone()], "{f}");
    // reset to the beginning: everything comes again
    let v = admin(
        &http,
        &base,
        Some("s3cret"),
        json!({"consumer": c, "resetOffsetTimestamp": 0}),
    )
    .await;
    // Differs by broker (docs/broker-differences.md; docs/protocol.md §19 item 3): Java
    // brokers store any offset; rocketmq-rust 1.0 silently keeps a larger one, and the gateway
    // must say so instead of reporting a reset that did not happen.
    let reset_worked = !broker_is_rocketmq_rust();
    if reset_worked {
        assert_eq!(
            v["status"], 200,
            "a Java broker moves offsets backwards: {v}"
        );
    } else {
        assert_eq!(v["status"], 500, "{v}");
        assert!(
            v["message"]
                .as_str()
                .unwrap()
                .contains("refused to move offsets backwards"),
            "{v}"
        );
    }
    let o = get(
        &http,
        &format!("{base}/mq/clustering/queue/offset"),
        &[("consumer", &c)],
    )
    .await;
    let backlog6 = o["result"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["backlog"] == 6);
    assert_eq!(backlog6, reset_worked, "{o}");
    // a forward reset (to now) always works: nothing left
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let fwd = admin(
        &http,
        &base,
        Some("s3cret"),
        json!({"consumer": c, "resetOffsetTimestamp": now + 60_000}),
    )
    .await;
    assert_eq!(fwd["status"], 200, "{fwd}");
    // more messages for the rate-limit check
    for i in 0..6 {
        produce_ok(
            &http,
            &base,
            &p,
            &format!("more-{i}"),
            &[("orderId", "one-queue")],
        )
        .await;
    }
    let f = fetch(&http, &base, &topic, &c, &[]).await;
    assert_eq!(f["result"]["msgListSize"], 6, "{f}");
    // rate limit: 1 msg/s, the 6-message batch puts the scope in debt
    admin(
        &http,
        &base,
        Some("s3cret"),
        json!({"consumer": c, "rateLimitEnabled": 1, "limitRate": 1}),
    )
    .await;
    let rid = f["result"]["requestId"].as_str().unwrap().to_owned();
    let _ = get(
        &http,
        &format!("{base}/mq/unlock"),
        &[("topic", &topic), ("consumer", &c), ("requestId", &rid)],
    )
    .await;
    let first = fetch(&http, &base, &topic, &c, &[]).await;
    assert_eq!(first["result"]["status"], "FOUND", "{first}");
    let second = fetch(&http, &base, &topic, &c, &[]).await;
    assert_eq!(second["result"]["status"], "RATE_LIMITED", "{second}");
    admin(
        &http,
        &base,
        Some("s3cret"),
        json!({"consumer": c, "rateLimitEnabled": 0}),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ack_through_the_other_instance_commits_and_frees_the_queue() {
    let topic = unique("GwForeign");
    let (p, c) = (unique("p"), unique("c"));
    let body = format!(
        "{}{}",
        producer_toml(&p, &topic),
        consumer_toml(&c, &topic, "clustering", 4, 60_000)
    );
    let a = Gateway::start(BIN, "foreign-a", &body).await;
    let b = Gateway::start(BIN, "foreign-b", &body).await;
    let http = http();
    for i in 0..8 {
        produce_ok(&http, &a.base, &p, &format!("f-{i}"), &[("orderId", "one")]).await;
    }
    // A serves the first batch of a group that never committed; B gets the ack.
    let f = fetch(&http, &a.base, &topic, &c, &[]).await;
    assert_eq!(f["result"]["msgListSize"], 4, "{f}");
    let first = ids_only(&f["result"]);
    let rid = f["result"]["requestId"].as_str().unwrap().to_owned();
    let ack = get(
        &http,
        &format!("{}/mq/ack", b.base),
        &[("topic", &topic), ("consumer", &c), ("requestId", &rid)],
    )
    .await;
    assert_eq!(ack["status"], 200, "{ack}");
    assert!(
        ack["message"].as_str().unwrap().contains("committed"),
        "{ack}"
    );
    // A notices the commit and hands out the rest, not the acked batch again.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut second = Vec::new();
    while second.is_empty() && Instant::now() < deadline {
        let f = fetch(&http, &a.base, &topic, &c, &[("waitSeconds", "1")]).await;
        second = ids_only(&f["result"]);
    }
    assert_eq!(second.len(), 4, "the rest of the queue");
    assert!(
        second.iter().all(|id| !first.contains(id)),
        "acked batch served again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_guard_producers_and_consumers_and_wrong_ones_change_nothing() {
    let topic = unique("GwToken");
    let (p, c) = (unique("p"), unique("c"));
    let body = format!(
        "{}token = \"p-s3cret\"\n{}token = \"c-s3cret\"\n",
        producer_toml(&p, &topic),
        consumer_toml(&c, &topic, "clustering", 8, 60_000)
    );
    let gw = Gateway::start(BIN, "tokens", &body).await;
    let http = http();
    let produce = |auth: Option<&'static str>, form: Vec<(&'static str, String)>| {
        let mut r = http.post(format!("{}/mq/produce", gw.base)).form(&form);
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        async move { json_of(r.send().await.unwrap()).await }
    };
    // Right token, as a header and as a parameter.
    let form = |token: Option<&str>| {
        let mut f = vec![("producer", p.clone()), ("message", "ok".to_owned())];
        if let Some(t) = token {
            f.push(("token", t.to_owned()));
        }
        f
    };
    let v = produce(Some("Bearer p-s3cret"), form(None)).await;
    assert_eq!(v["status"], 200, "{v}");
    let v = produce(None, form(Some("p-s3cret"))).await;
    assert_eq!(v["status"], 200, "{v}");
    let c_mq = client();
    let qs = wait_route(&c_mq, &topic).await;
    let stored: i64 = max_offsets(&c_mq, &qs).await.iter().sum();
    assert_eq!(stored, 2);
    // Wrong or missing: 403 in the envelope, nothing stored.
    for (auth, token) in [
        (None, None),
        (Some("Bearer wrong"), None),
        (Some("Bearer c-s3cret"), None),
        (None, Some("p-s3cre")),
    ] {
        let v = produce(auth, form(token)).await;
        assert_eq!(v["status"], 403, "{auth:?} {token:?}: {v}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stored: i64 = max_offsets(&c_mq, &qs).await.iter().sum();
    assert_eq!(stored, 2, "a refused produce stored nothing");
    // Consuming: a wrong token leases nothing, a right one gets both, a wrong ack moves nothing.
    let v = fetch(&http, &gw.base, &topic, &c, &[("token", "wrong")]).await;
    assert_eq!(v["status"], 403, "{v}");
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.len() < 2 && Instant::now() < deadline {
        let f = fetch(
            &http,
            &gw.base,
            &topic,
            &c,
            &[("token", "c-s3cret"), ("waitSeconds", "1")],
        )
        .await;
        assert_eq!(f["status"], 200, "{f}");
        if let Some(rid) = f["result"]["requestId"].as_str() {
            got.extend(ids_only(&f["result"]));
            let ack_url = format!("{}/mq/ack", gw.base);
            let ack = |token: &'static str| {
                let q = [
                    ("topic", topic.clone()),
                    ("consumer", c.clone()),
                    ("requestId", rid.to_owned()),
                    ("token", token.to_owned()),
                ];
                let (http, url) = (http.clone(), ack_url.clone());
                async move {
                    let q: Vec<(&str, &str)> = q.iter().map(|(k, v)| (*k, v.as_str())).collect();
                    get(&http, &url, &q).await
                }
            };
            let before = committed(&c_mq, &c, &qs).await;
            let refused = ack("p-s3cret").await;
            assert_eq!(refused["status"], 403, "{refused}");
            assert_eq!(
                committed(&c_mq, &c, &qs).await,
                before,
                "a refused ack commits nothing"
            );
            let done = ack("c-s3cret").await;
            assert_eq!(done["status"], 200, "{done}");
        }
    }
    assert_eq!(got.len(), 2, "{got:?}");
    assert_all_committed(&c_mq, &c, &qs).await;
}
