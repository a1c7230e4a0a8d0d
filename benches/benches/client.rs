//! Client throughput against the real broker (`RMQ_NAMESRV`): sync sends with 1 and 8 tasks,
//! 256 sends in flight, batches of 16, and pulls; 1 KiB bodies. Prints msg/s, p50/p99 latency
//! each mode's ratio to the single-task sync run of the same invocation, and the CPU time the
//! benchmark process spent per message in that mode (getrusage user + sys over the run, as
//! `rmq bench` reports it), which stays comparable on a shared machine. Nothing is
//! asserted. `BENCH_QUICK=1` runs a few hundred messages per mode (CI: keep it compiling and
//! working); the default is a few thousand.
//!
//!   scripts/broker.sh exec -- cargo bench -p rmq-benches --bench client

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rmq_client::PullRequest;
use rmq_client::{ClientConfig, MQClient, Message, Producer, ProducerConfig, QueueSelector};
use tokio::sync::Semaphore;

struct Report {
    mode: &'static str,
    msgs: usize,
    elapsed: Duration,
    lat: Vec<Duration>,
    /// CPU time (user + sys) of this process during the run.
    cpu: Duration,
}

/// User + system CPU time of this process so far (getrusage(RUSAGE_SELF)).
fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

impl Report {
    fn rate(&self) -> f64 {
        self.msgs as f64 / self.elapsed.as_secs_f64()
    }
    fn cpu_us_per_msg(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.msgs.max(1) as f64
    }
    fn pct(&self, p: f64) -> Duration {
        if self.lat.is_empty() {
            return Duration::ZERO;
        }
        let mut l = self.lat.clone();
        l.sort();
        l[((l.len() as f64 * p) as usize).min(l.len() - 1)]
    }
}

async fn sync_sends(
    p: &Producer,
    topic: &str,
    n: usize,
    tasks: usize,
    body: &Bytes,
) -> (Duration, Vec<Duration>) {
    let start = Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let p = p.clone();
        let topic = topic.to_owned();
        let body = body.clone();
        let per = n / tasks + usize::from(t < n % tasks);
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per);
            for _ in 0..per {
                let s = Instant::now();
                p.send(Message::new(&topic, body.clone()))
                    .await
                    .expect("send");
                lat.push(s.elapsed());
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for h in handles {
        lat.extend(h.await.unwrap());
    }
    (start.elapsed(), lat)
}

#[tokio::main]
async fn main() {
    let namesrv = rmq_test_support::namesrv();
    let quick = std::env::var("BENCH_QUICK").is_ok();
    let n = if quick { 256 } else { 4096 };
    let client = MQClient::start(ClientConfig::new(&namesrv)).unwrap();
    let producer = Producer::new(client.clone(), ProducerConfig::new("PG_bench"));
    let topic = rmq_test_support::unique("BenchClient");
    let body = Bytes::from(vec![b'x'; 1024]);
    // Create the topic and warm the connection up before measuring.
    for _ in 0..32 {
        producer
            .send(Message::new(&topic, body.clone()))
            .await
            .unwrap();
    }
    let mut reports = Vec::new();

    let cpu0 = cpu_time();
    let (elapsed, lat) = sync_sends(&producer, &topic, n, 1, &body).await;
    reports.push(Report {
        mode: "sync, 1 task",
        msgs: n,
        elapsed,
        lat,
        cpu: cpu_time() - cpu0,
    });
    let cpu0 = cpu_time();
    let (elapsed, lat) = sync_sends(&producer, &topic, n, 8, &body).await;
    reports.push(Report {
        mode: "sync, 8 tasks",
        msgs: n,
        elapsed,
        lat,
        cpu: cpu_time() - cpu0,
    });

    // 256 sends in flight on the one connection.
    let sem = Arc::new(Semaphore::new(256));
    let cpu0 = cpu_time();
    let start = Instant::now();
    let mut handles = Vec::with_capacity(n * 4);
    for _ in 0..n * 4 {
        let permit = sem.clone().acquire_owned().await.unwrap();
        let p = producer.clone();
        let m = Message::new(&topic, body.clone());
        handles.push(tokio::spawn(async move {
            let s = Instant::now();
            let r = p.send(m).await;
            drop(permit);
            r.map(|_| s.elapsed())
        }));
    }
    // A slow broker may let some of 256 queued sends time out (rocketmq-rust on a loaded
    // machine): they are counted and shown, not a crash; latency and rate cover the sent ones.
    let mut lat = Vec::with_capacity(handles.len());
    let mut failed = Vec::new();
    for h in handles {
        match h.await.unwrap() {
            Ok(l) => lat.push(l),
            Err(e) => failed.push(e),
        }
    }
    if let Some(e) = failed.first() {
        println!(
            "async, 256 in flight: {} of {} sends failed, e.g. {e}",
            failed.len(),
            n * 4
        );
        assert!(!lat.is_empty(), "every send failed: {e}");
    }
    reports.push(Report {
        mode: "async, 256 in flight",
        msgs: lat.len(),
        elapsed: start.elapsed(),
        lat,
        cpu: cpu_time() - cpu0,
    });

    // Batches of 16.
    let batches = n / 16;
    let cpu0 = cpu_time();
    let start = Instant::now();
    let mut lat = Vec::with_capacity(batches);
    for _ in 0..batches {
        let msgs = (0..16)
            .map(|_| Message::new(&topic, body.clone()))
            .collect();
        let s = Instant::now();
        producer
            .send_batch(msgs, QueueSelector::RoundRobin)
            .await
            .expect("batch");
        lat.push(s.elapsed());
    }
    reports.push(Report {
        mode: "batch of 16 (latency per batch)",
        msgs: batches * 16,
        elapsed: start.elapsed(),
        lat,
        cpu: cpu_time() - cpu0,
    });

    // Pull everything back, 32 per request, queue after queue.
    // A Java broker registers an auto-created topic with the name server just after the send.
    let mut route = client.route(&topic).await;
    for _ in 0..100 {
        if route.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        route = client.route(&topic).await;
    }
    let route = route.unwrap();
    let cpu0 = cpu_time();
    let start = Instant::now();
    let mut pulled = 0;
    let mut lat = Vec::new();
    for q in &route.subscribe_queues {
        let mut off = 0;
        loop {
            let s = Instant::now();
            let r = client
                .pull(q, &PullRequest::new("CG_bench", off))
                .await
                .expect("pull");
            lat.push(s.elapsed());
            if r.messages.is_empty() {
                break;
            }
            pulled += r.messages.len();
            off = r.next_begin_offset;
        }
    }
    reports.push(Report {
        mode: "pull, 32 per request (latency per pull)",
        msgs: pulled,
        elapsed: start.elapsed(),
        lat,
        cpu: cpu_time() - cpu0,
    });

    let base = reports[0].rate();
    println!(
        "client against the real broker at {namesrv}, 1 KiB bodies{}",
        if quick { " (quick)" } else { "" }
    );
    println!(
        "{:<42} {:>8} {:>10} {:>9} {:>9} {:>8} {:>11}",
        "mode", "msgs", "msg/s", "p50 ms", "p99 ms", "x sync1", "cpu us/msg"
    );
    for r in &reports {
        println!(
            "{:<42} {:>8} {:>10.0} {:>9.2} {:>9.2} {:>8.2} {:>11.1}",
            r.mode,
            r.msgs,
            r.rate(),
            r.pct(0.50).as_secs_f64() * 1e3,
            r.pct(0.99).as_secs_f64() * 1e3,
            r.rate() / base,
            r.cpu_us_per_msg()
        );
    }
    client.shutdown().await;
}
