//! The gateway binary in front of a cluster of two brokers (broker-a and broker-b, one cluster)
//! that loses broker-b: produce keeps answering SEND_OK (the client retries on broker-a), a
//! consumer fetching and acking through the gateway keeps receiving, and once broker-b is back
//! every message is delivered, none twice unless its ack failed (then the API redelivers it).
//!
//! Needs `scripts/broker.sh` with RMQ_BROKER_IMPL=apache RMQ_BROKER_CLUSTER=2; run with
//! `scripts/broker.sh exec -- cargo test -p rmq-gateway --features broker-cluster-tests --test gateway_cluster`.
//! Fails, never skips, without such a cluster.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rmq_client::{ClientConfig, MQClient};
use rmq_test_support::cluster::{create_on_both, env};
use rmq_test_support::{unique, Gateway};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_rmq-gateway");

fn broker_ctl(cmd: &str, broker: &str) {
    let script = env("RMQ_BROKER_SCRIPT");
    let st = Command::new(&script)
        .args([cmd, broker])
        .status()
        .expect("run broker.sh");
    assert!(st.success(), "{script} {cmd} {broker} failed");
}

/// Starts broker-b again if a failed assertion left it stopped (later tests need it).
struct RestartOnDrop;

impl Drop for RestartOnDrop {
    fn drop(&mut self) {
        broker_ctl("start-broker", "broker-b");
    }
}

/// The gateway binary against the cluster's name server with `body` as its tables; killed when
/// dropped (its log printed if the test failed).
async fn start_gateway(body: &str) -> Gateway {
    let dir = std::env::temp_dir().join(unique("rmq-gw-cluster"));
    let mut gw = Gateway::spawn(
        Path::new(BIN),
        &env("RMQ_NAMESRV"),
        dir,
        body,
        "info,rmq_gateway=debug",
    );
    gw.wait_healthy(Duration::from_secs(20)).await;
    gw
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(40))
        .no_proxy()
        .build()
        .unwrap()
}

async fn json_of(r: reqwest::Response) -> Value {
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    let text = r.text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text:.300}"))
}

/// Produces "<phase>-<i>" for i in 0..n through the gateway; each must be SEND_OK.
async fn produce_phase(http: &reqwest::Client, gw: &str, phase: &str, n: usize) -> Vec<String> {
    let mut sent = Vec::new();
    for i in 0..n {
        let body = format!("{phase}-{i}");
        let v = json_of(
            http.post(format!("{gw}/mq/produce"))
                .form(&[("producer", "cluster-p"), ("message", body.as_str())])
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(v["status"], 200, "produce {body}: {v}");
        assert_eq!(v["result"]["sendStatus"], "SEND_OK", "{v}");
        sent.push(body);
    }
    sent
}

#[derive(Default)]
struct Consumed {
    /// Bodies in delivery order.
    bodies: Vec<String>,
    /// Bodies of batches whose ack the gateway did not confirm (they may come again).
    unconfirmed: HashSet<String>,
    errors: Vec<String>,
}

/// Fetches and acks (through the next fetch's requestId) until `stop`.
async fn consume(gw: String, topic: String, stop: Arc<AtomicBool>, out: Arc<Mutex<Consumed>>) {
    let http = http();
    let mut rid: Option<String> = None;
    let mut batch: Vec<String> = Vec::new();
    while !stop.load(Ordering::Acquire) {
        let mut q = vec![("topic", topic.clone()), ("consumer", "cluster-c".into())];
        if let Some(r) = &rid {
            q.push(("requestId", r.clone()));
        }
        let v = match http.get(format!("{gw}/mq/message")).query(&q).send().await {
            Ok(r) => json_of(r).await,
            Err(e) => {
                out.lock().unwrap().errors.push(format!("transport: {e}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if v["status"] != 200 {
            out.lock().unwrap().errors.push(v.to_string());
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        let r = &v["result"];
        let found = r["status"] == "FOUND";
        {
            let mut o = out.lock().unwrap();
            if rid.take().is_some() && r["ackInfo"]["status"] != 200 {
                o.unconfirmed.extend(batch.drain(..));
            }
            batch.clear();
            if found {
                for list in ["msgList", "retryMsgList"] {
                    for m in r[list].as_array().into_iter().flatten() {
                        let body = m["message"].as_str().unwrap().to_owned();
                        batch.push(body.clone());
                        o.bodies.push(body);
                    }
                }
                rid = r["requestId"].as_str().map(str::to_owned);
            }
        }
        if !found {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    if let Some(r) = rid {
        let q = [
            ("topic", topic.as_str()),
            ("consumer", "cluster-c"),
            ("requestId", r.as_str()),
        ];
        let v = json_of(
            http.get(format!("{gw}/mq/ack"))
                .query(&q)
                .send()
                .await
                .unwrap(),
        )
        .await;
        if v["status"] != 200 {
            out.lock().unwrap().unconfirmed.extend(batch);
        }
    }
}

/// Waits until every body in `want` was consumed.
async fn wait_consumed(out: &Mutex<Consumed>, want: &[String], within: Duration, what: &str) {
    let deadline = Instant::now() + within;
    loop {
        let missing: Vec<String> = {
            let o = out.lock().unwrap();
            let got: HashSet<&String> = o.bodies.iter().collect();
            want.iter().filter(|b| !got.contains(b)).cloned().collect()
        };
        if missing.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {} not consumed within {within:?}: {missing:?}; errors: {:?}",
            missing.len(),
            out.lock().unwrap().errors
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_failover_gateway_produce_and_consume() {
    let topic = unique("T_gwcluster");
    let c = MQClient::start(ClientConfig::new(&env("RMQ_NAMESRV"))).unwrap();
    create_on_both(&c, &topic).await;
    c.shutdown().await;
    let gw = start_gateway(&format!(
        "[[producer]]\nname = \"cluster-p\"\ntopic = \"{topic}\"\n\
         [[consumer]]\nname = \"cluster-c\"\ntopic = \"{topic}\"\nmode = \"clustering\"\n\
         max_pull_size = 16\nconsume_timeout_ms = 5000\n"
    ))
    .await;
    let http = http();
    let stop = Arc::new(AtomicBool::new(false));
    let out = Arc::new(Mutex::new(Consumed::default()));
    let task = tokio::spawn(consume(
        gw.base.clone(),
        topic.clone(),
        stop.clone(),
        out.clone(),
    ));

    let mut sent = produce_phase(&http, &gw.base, "both", 40).await;
    wait_consumed(&out, &sent, Duration::from_secs(60), "both brokers up").await;

    broker_ctl("stop-broker", "broker-b");
    let guard = RestartOnDrop;
    let down = produce_phase(&http, &gw.base, "down", 40).await;
    wait_consumed(&out, &down, Duration::from_secs(60), "broker-b down").await;
    sent.extend(down);

    drop(guard); // starts broker-b
    let after = produce_phase(&http, &gw.base, "after", 40).await;
    sent.extend(after);
    wait_consumed(&out, &sent, Duration::from_secs(120), "broker-b back").await;
    stop.store(true, Ordering::Release);
    task.await.unwrap();

    let o = out.lock().unwrap();
    let mut count: HashMap<&String, usize> = HashMap::new();
    for b in &o.bodies {
        *count.entry(b).or_default() += 1;
    }
    let dups: Vec<&String> = count
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(b, _)| *b)
        .collect();
    for d in &dups {
        assert!(
            o.unconfirmed.contains(*d),
            "{d} was delivered twice though its ack had been confirmed"
        );
    }
    eprintln!(
        "sent {}, delivered {} ({} duplicates, {} with unconfirmed acks), fetch errors {:?}",
        sent.len(),
        o.bodies.len(),
        dups.len(),
        o.unconfirmed.len(),
        o.errors
    );
    assert_eq!(count.len(), sent.len(), "nothing unexpected was delivered");
}
