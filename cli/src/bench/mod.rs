//! `rmq bench produce|consume`: load against any broker, measured with an HDR histogram and the
//! process's own CPU time, so clients can be compared on a shared machine.

pub mod progress;
pub mod stats;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use rmq_client::PullStatus;
use rmq_client::{Message, Producer, ProducerConfig, PullRequest, QueueSelector};
use tokio::sync::Semaphore;
use tracing::debug;

use self::progress::Progress;
use self::stats::{Recorder, Start, Summary};
use crate::args::{BenchCommon, ConsumeBench, Mode, ProduceBench};
use crate::cmd::Ctx;
use crate::exit::CliError;

/// Hands out messages to send: stops at the count or the deadline, paces to the rate.
struct Budget {
    count: Option<u64>,
    deadline: Option<Instant>,
    rate: Option<f64>,
    start: Instant,
    issued: AtomicU64,
    stop: AtomicBool,
}

impl Budget {
    fn new(common: &BenchCommon, rate: Option<f64>) -> Result<Self> {
        if rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
            return Err(CliError::BadArgument("--rate must be a positive number".into()).into());
        }
        let start = Instant::now();
        // Without --count or --duration a run lasts 10 s.
        let duration = match (common.count, common.duration) {
            (None, None) => Some(Duration::from_secs(10)),
            (_, d) => d,
        };
        Ok(Budget {
            count: common.count,
            deadline: duration.map(|d| start + d),
            rate,
            start,
            issued: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        })
    }

    /// Up to `n` messages to send now (after pacing), or 0 when the run is over.
    async fn take(&self, n: u64) -> u64 {
        if self.stop.load(Ordering::Relaxed) || self.deadline.is_some_and(|d| Instant::now() >= d) {
            return 0;
        }
        let first = self.issued.fetch_add(n, Ordering::Relaxed);
        let n = match self.count {
            Some(c) if first >= c => return 0,
            Some(c) => n.min(c - first),
            None => n,
        };
        if let Some(rate) = self.rate {
            let at = self.start + Duration::from_secs_f64(first as f64 / rate);
            if self.deadline.is_some_and(|d| at >= d) {
                return 0;
            }
            tokio::time::sleep_until(at.into()).await;
        }
        n
    }
}

/// Runs until done or Ctrl-C, then prints the summary and writes the histogram.
async fn finish(
    ctx: &Ctx,
    common: &BenchCommon,
    start: Start,
    summary: impl FnOnce(&Start) -> Summary,
    rec: &Recorder,
) -> Result<()> {
    let s = summary(&start);
    if let Some(path) = &common.hist {
        let mut f = std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        );
        stats::write_percentiles(&rec.histogram(), &mut f)
            .with_context(|| format!("writing {}", path.display()))?;
        std::io::Write::flush(&mut f)?;
    }
    ctx.emit(&serde_json::to_value(&s)?, || s.text())
}

pub async fn produce(ctx: &Ctx, a: &ProduceBench) -> Result<()> {
    let budget = Arc::new(Budget::new(&a.common, a.rate)?);
    let producer = Producer::new(
        ctx.client.clone(),
        ProducerConfig::new("rmq-bench-producer"),
    );
    let body = Bytes::from(vec![b'x'; a.size as usize]);
    // Find the route (and fail on an unknown topic) before the clock starts.
    ctx.client.route(&a.topic).await.context("route")?;
    producer
        .send(Message::new(&a.topic, body.clone()))
        .await
        .context("warm-up send")?;
    let rec = Arc::new(Recorder::default());
    let mode = format!("{:?}", a.mode).to_lowercase();
    let progress = Progress::start(format!("produce {mode}"), rec.clone());
    let stopper = spawn_ctrl_c(budget.clone());
    let start = Start::now();
    let size = a.size as u64;
    match a.mode {
        Mode::Async => {
            let sem = Arc::new(Semaphore::new(a.concurrency as usize));
            loop {
                let permit = sem.clone().acquire_owned().await?;
                if budget.take(1).await == 0 {
                    break;
                }
                let (p, rec, m) = (
                    producer.clone(),
                    rec.clone(),
                    Message::new(&a.topic, body.clone()),
                );
                tokio::spawn(async move {
                    let t = Instant::now();
                    match p.send(m).await {
                        Ok(_) => rec.ok(1, size, t.elapsed()),
                        Err(e) => {
                            debug!(error = %e, "send failed");
                            rec.error()
                        }
                    }
                    drop(permit);
                });
            }
            // Wait for the sends still in flight.
            let _ = sem.acquire_many(a.concurrency).await?;
        }
        mode => {
            let mut tasks = Vec::new();
            for _ in 0..a.concurrency {
                let (p, rec, budget, topic, body) = (
                    producer.clone(),
                    rec.clone(),
                    budget.clone(),
                    a.topic.clone(),
                    body.clone(),
                );
                let batch = a.batch as u64;
                tasks.push(tokio::spawn(async move {
                    loop {
                        let want = if mode == Mode::Batch { batch } else { 1 };
                        let n = budget.take(want).await;
                        if n == 0 {
                            break;
                        }
                        let t = Instant::now();
                        let r = match mode {
                            Mode::Sync => {
                                p.send(Message::new(&topic, body.clone())).await.map(|_| ())
                            }
                            Mode::Oneway => p.send_oneway(Message::new(&topic, body.clone())).await,
                            _ => {
                                let msgs =
                                    (0..n).map(|_| Message::new(&topic, body.clone())).collect();
                                p.send_batch(msgs, QueueSelector::RoundRobin)
                                    .await
                                    .map(|_| ())
                            }
                        };
                        match r {
                            Ok(()) => rec.ok(n, n * size, t.elapsed()),
                            Err(e) => {
                                debug!(error = %e, "send failed");
                                rec.error()
                            }
                        }
                    }
                }));
            }
            for t in tasks {
                t.await?;
            }
        }
    }
    stopper.abort();
    progress.finish();
    let latency_of = match a.mode {
        Mode::Batch => "batch",
        Mode::Oneway => "one-way write",
        _ => "send",
    };
    let label = match a.mode {
        Mode::Batch => format!("{mode} of {}, {} tasks", a.batch, a.concurrency),
        Mode::Async => format!("{mode}, {} in flight", a.concurrency),
        _ => format!("{mode}, {} tasks", a.concurrency),
    };
    finish(
        ctx,
        &a.common,
        start,
        |s| s.summary("produce", &label, latency_of, &rec),
        &rec,
    )
    .await
}

fn spawn_ctrl_c(budget: Arc<Budget>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            budget.stop.store(true, Ordering::Relaxed);
        }
    })
}

pub async fn consume(ctx: &Ctx, a: &ConsumeBench) -> Result<()> {
    let budget = Arc::new(Budget::new(&a.common, None)?);
    let route = ctx.client.route(&a.topic).await.context("route")?;
    let queues = route.subscribe_queues.clone();
    let rec = Arc::new(Recorder::default());
    let progress = Progress::start(format!("consume {}", a.topic), rec.clone());
    let stopper = spawn_ctrl_c(budget.clone());
    let start = Start::now();
    // Worker i pulls queues i, i + c, ... from their first message to their end.
    let mut tasks = Vec::new();
    for w in 0..(a.concurrency as usize).min(queues.len().max(1)) {
        let mine: Vec<_> = queues
            .iter()
            .skip(w)
            .step_by(a.concurrency as usize)
            .cloned()
            .collect();
        let (client, rec, budget, group, batch) = (
            ctx.client.clone(),
            rec.clone(),
            budget.clone(),
            a.group.clone(),
            a.batch,
        );
        tasks.push(tokio::spawn(async move {
            for q in mine {
                let mut offset = match client.min_offset(&q).await {
                    Ok(o) => o,
                    Err(_) => {
                        rec.error();
                        continue;
                    }
                };
                loop {
                    let n = budget.take(batch as u64).await;
                    if n == 0 {
                        return;
                    }
                    // Hand back what this pull will not use.
                    let mut req = PullRequest::new(&group, offset);
                    req.max_msgs = n as i32;
                    let t = Instant::now();
                    match client.pull(&q, &req).await {
                        Ok(r) => {
                            let got = r.messages.len() as u64;
                            let bytes: u64 = r.messages.iter().map(|m| m.body.len() as u64).sum();
                            budget.issued.fetch_sub(n - got, Ordering::Relaxed);
                            rec.ok(got, bytes, t.elapsed());
                            if r.status == PullStatus::NoNewMsg || r.next_begin_offset <= offset {
                                break;
                            }
                            offset = r.next_begin_offset;
                        }
                        Err(e) => {
                            budget.issued.fetch_sub(n, Ordering::Relaxed);
                            debug!(error = %e, "pull failed");
                            rec.error();
                            break;
                        }
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    stopper.abort();
    progress.finish();
    let label = format!(
        "pull, {} queues at once, {} per pull",
        a.concurrency, a.batch
    );
    finish(
        ctx,
        &a.common,
        start,
        |s| s.summary("consume", &label, "pull", &rec),
        &rec,
    )
    .await
}
