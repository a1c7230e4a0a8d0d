//! A cluster of two brokers (broker-a and broker-b, one cluster, one name server) losing one
//! broker under a live producer and pull consumer: every send still succeeds (retried on the
//! other broker), the consumer keeps receiving from the broker that is left, and once broker-b is
//! back every message is delivered, none twice except those the API allows to come again (polled
//! from broker-b after the consumer's last successful commit there).
//!
//! Needs `scripts/broker.sh` with RMQ_BROKER_IMPL=apache RMQ_BROKER_CLUSTER=2 (its `exec` exports
//! RMQ_BROKER_CLUSTER, RMQ_BROKER_SCRIPT and the broker ports); run with
//! `scripts/broker.sh exec -- cargo test -p rmq-client --features broker-cluster-tests --test broker_cluster`.
//! Fails, never skips, without such a cluster.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::process::Command;
use std::time::{Duration, Instant};

use rmq_client::{
    ClientConfig, MQClient, Message, Producer, ProducerConfig, PullConsumer, PullConsumerConfig,
};
use rmq_test_support::cluster::{broker_addrs, create_on_both, env};
use rmq_test_support::unique;

/// The broker that stored a message, by the store host it reports.
fn broker_of(store_host: &std::net::SocketAddr) -> String {
    let [a, b] = broker_addrs();
    match store_host.to_string() {
        h if h == a => "broker-a".into(),
        h if h == b => "broker-b".into(),
        h => panic!("stored by an unknown broker {h}"),
    }
}

fn broker_ctl(cmd: &str, broker: &str) {
    let script = env("RMQ_BROKER_SCRIPT");
    let st = Command::new(&script)
        .args([cmd, broker])
        .status()
        .expect("run broker.sh");
    assert!(st.success(), "{script} {cmd} {broker} failed");
}

/// Starts broker-b again if a failed assertion left it stopped (later tests need it).
struct RestartOnDrop(bool);

impl Drop for RestartOnDrop {
    fn drop(&mut self) {
        if self.0 {
            broker_ctl("start-broker", "broker-b");
        }
    }
}

/// Sends `n` messages "<phase>-<i>"; every send must succeed.
async fn send_phase(p: &Producer, topic: &str, phase: &str, n: usize) -> HashMap<String, String> {
    let mut sent = HashMap::new();
    for i in 0..n {
        let body = format!("{phase}-{i}");
        let r = p
            .send(Message::new(topic, body.clone()))
            .await
            .unwrap_or_else(|e| panic!("send {body} failed: {e}"));
        sent.insert(body, r.queue.broker_name.clone());
    }
    sent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_failover_client_sends_and_pull_consumer() {
    let mut cfg = ClientConfig::new(&env("RMQ_NAMESRV"));
    cfg.request_timeout = Duration::from_secs(3);
    cfg.connect_timeout = Duration::from_secs(1);
    let c = MQClient::start(cfg).unwrap();
    let topic = unique("T_cluster");
    let group = unique("CG_cluster");
    create_on_both(&c, &topic).await;

    let mut pcfg = ProducerConfig::new(unique("PG_cluster"));
    pcfg.send_timeout = Duration::from_secs(10);
    let p = Producer::new(c.clone(), pcfg);
    let mut ccfg = PullConsumerConfig::new(&group, &topic);
    ccfg.long_poll = Duration::from_millis(300);
    let cons = PullConsumer::start(c.clone(), ccfg).await.unwrap();
    let assigned: BTreeSet<String> = cons
        .assigned()
        .iter()
        .map(|q| q.broker_name.clone())
        .collect();
    assert_eq!(
        assigned.len(),
        2,
        "the consumer owns queues on both brokers"
    );

    // Delivered bodies in order, and which of them a successful commit has covered.
    let mut delivered: Vec<(String, String)> = Vec::new();
    let mut committed: HashSet<String> = HashSet::new();
    let consume = async |delivered: &mut Vec<(String, String)>,
                         committed: &mut HashSet<String>,
                         rounds: usize| {
        let mut errors = 0;
        for _ in 0..rounds {
            match cons.poll(64).await {
                Ok(msgs) => {
                    for m in msgs {
                        let body = String::from_utf8(m.body.to_vec()).unwrap();
                        delivered.push((body, broker_of(&m.store_host)));
                    }
                }
                Err(e) => {
                    errors += 1;
                    eprintln!("poll: {e}");
                }
            }
            if cons.commit().await.is_ok() {
                committed.extend(delivered.iter().map(|(b, _)| b.clone()));
            }
        }
        errors
    };

    // 1. Both brokers up.
    let mut sent = send_phase(&p, &topic, "both", 60).await;
    let on_b = sent.values().filter(|b| *b == "broker-b").count();
    assert!(
        on_b > 0 && on_b < 60,
        "sends spread over both brokers ({on_b} on broker-b)"
    );
    consume(&mut delivered, &mut committed, 5).await;

    // 2. broker-b stops: every send succeeds on broker-a, and the consumer keeps receiving.
    broker_ctl("stop-broker", "broker-b");
    let guard = RestartOnDrop(true);
    let got_before = delivered.len();
    let down = send_phase(&p, &topic, "down", 60).await;
    assert!(
        down.values().all(|b| b == "broker-a"),
        "with broker-b down every send lands on broker-a"
    );
    sent.extend(down);
    let poll_errors = consume(&mut delivered, &mut committed, 20).await;
    assert_eq!(poll_errors, 0, "polls fail while one broker is left");
    let down_got = delivered[got_before..]
        .iter()
        .filter(|(b, _)| b.starts_with("down-"))
        .count();
    assert_eq!(
        down_got, 60,
        "everything sent to broker-a during the outage arrives"
    );

    // 3. broker-b is back: more sends, and everything stored on it arrives.
    broker_ctl("start-broker", "broker-b");
    std::mem::forget(guard);
    let uncommitted_on_b: HashSet<String> = delivered
        .iter()
        .filter(|(b, broker)| broker == "broker-b" && !committed.contains(b))
        .map(|(b, _)| b.clone())
        .collect();
    // The producer learns of broker-b again through the name server (route refresh).
    c.refresh_route(&topic).await.unwrap();
    sent.extend(send_phase(&p, &topic, "after", 60).await);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        consume(&mut delivered, &mut committed, 3).await;
        let got: HashSet<&String> = delivered.iter().map(|(b, _)| b).collect();
        if sent.keys().all(|b| got.contains(b)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "missing after broker-b came back: {:?}",
            sent.keys().filter(|b| !got.contains(b)).collect::<Vec<_>>()
        );
    }

    // Duplicates only where the API allows them: broker-b messages the consumer had polled but
    // not yet committed when broker-b went away.
    let mut count: HashMap<&String, usize> = HashMap::new();
    for (b, _) in &delivered {
        *count.entry(b).or_default() += 1;
    }
    let dups: Vec<&&String> = count
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(b, _)| b)
        .collect();
    for d in &dups {
        assert!(
            uncommitted_on_b.contains(**d),
            "{d} was delivered twice though its offset had been committed"
        );
    }
    eprintln!(
        "sent {}, delivered {} ({} duplicates, allowed {})",
        sent.len(),
        delivered.len(),
        dups.len(),
        uncommitted_on_b.len()
    );
    cons.shutdown().await.unwrap();
    c.shutdown().await;
}
