//! What `GET /metrics` shows, in Prometheus' text format (OpenMetrics, by the
//! `prometheus-client` crate).
//!
//! Two kinds of numbers:
//! - *Counted as they happen*, in [`Metrics`]: HTTP requests by route template and status with
//!   their latency, produce results by producer and status, broker calls by request code with
//!   their latency and errors, and a short window of recent errors for the status page. Labels
//!   are `&'static str`s or interned names ([`Metrics::name`]), so the hot path allocates nothing
//!   once a name was seen.
//! - *Read at scrape time* from a [`Snapshot`] the caller passes to [`Metrics::encode`]:
//!   per consumer the engine's delivery counters, per consumer and queue the broker's max and
//!   committed offsets (cached by the observer loop, see `service::observe`), the backlog and
//!   whether this instance leases and locks the queue; broker and name-server connections; the
//!   process' resident memory.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use prometheus_client::encoding::{text, EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::broker::BrokerError;
use crate::observe::Snapshot;

/// The `Content-Type` of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How far back [`RecentErrors`] counts.
pub const RECENT_WINDOW_SECS: u64 = 300;
const BUCKET_SECS: u64 = 10;
const WINDOW_BUCKETS: u64 = RECENT_WINDOW_SECS / BUCKET_SECS;

/// An HTTP request's labels: the route template (`/topics/{topic}/messages`, never the raw
/// path), the method and the status (for `/mq/*` errors the envelope's status, since MQ-Proxy
/// answers HTTP 200 with the status in the body).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: &'static str,
    route: &'static str,
    status: u16,
}

/// An interned name as a label value.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
struct Name(Arc<str>);

impl EncodeLabelValue for Name {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&&*self.0, encoder)
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProduceLabels {
    producer: Name,
    status: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    code: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallErrorLabels {
    code: &'static str,
    error: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConsumerLabels {
    consumer: String,
    group: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    consumer: String,
    group: String,
    topic: String,
    broker: String,
    queue: i32,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabels {
    peer: &'static str,
}

/// The error classes the status page counts over the last [`RECENT_WINDOW_SECS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// An HTTP answer with a 5xx status (or a `/mq/*` envelope status 500).
    Server,
    /// An HTTP answer with a 4xx status (or a `/mq/*` envelope status 400/403).
    Client,
    /// A broker call that failed.
    Broker,
    /// A message that could not be produced (or whose outcome is unknown).
    Produce,
}

const KINDS: usize = 4;

impl ErrorKind {
    fn index(self) -> usize {
        match self {
            ErrorKind::Server => 0,
            ErrorKind::Client => 1,
            ErrorKind::Broker => 2,
            ErrorKind::Produce => 3,
        }
    }
}

/// Error counts of the last [`RECENT_WINDOW_SECS`], in buckets of ten seconds; time is passed in
/// (seconds on any monotonic scale).
#[derive(Debug, Default)]
pub struct RecentErrors {
    buckets: Mutex<VecDeque<(u64, [u64; KINDS])>>,
}

/// [`RecentErrors`] summed over the window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecentErrorCounts {
    /// The window, seconds.
    pub window_seconds: u64,
    /// See [`ErrorKind::Server`].
    pub server: u64,
    /// See [`ErrorKind::Client`].
    pub client: u64,
    /// See [`ErrorKind::Broker`].
    pub broker: u64,
    /// See [`ErrorKind::Produce`].
    pub produce: u64,
}

impl RecentErrors {
    /// Counts `n` errors of `kind` at `now_secs`.
    pub fn record(&self, kind: ErrorKind, n: u64, now_secs: u64) {
        let slot = now_secs / BUCKET_SECS;
        let mut b = self.buckets.lock();
        match b.back_mut() {
            Some((s, counts)) if *s == slot => counts[kind.index()] += n,
            _ => {
                let mut counts = [0; KINDS];
                counts[kind.index()] = n;
                b.push_back((slot, counts));
            }
        }
        while b.front().is_some_and(|(s, _)| s + WINDOW_BUCKETS <= slot) {
            b.pop_front();
        }
    }

    /// The sums over the window ending at `now_secs`.
    pub fn counts(&self, now_secs: u64) -> RecentErrorCounts {
        let slot = now_secs / BUCKET_SECS;
        let mut sum = [0u64; KINDS];
        for (_, c) in self
            .buckets
            .lock()
            .iter()
            .filter(|(s, _)| s + WINDOW_BUCKETS > slot)
        {
            for (t, v) in sum.iter_mut().zip(c) {
                *t += v;
            }
        }
        RecentErrorCounts {
            window_seconds: RECENT_WINDOW_SECS,
            server: sum[0],
            client: sum[1],
            broker: sum[2],
            produce: sum[3],
        }
    }
}

/// The counters of one gateway process (shared by the HTTP layer, the driver and the broker
/// seam behind an [`Arc`]); see the module documentation.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    http: Family<HttpLabels, Histogram>,
    produced: Family<ProduceLabels, Counter>,
    broker_calls: Family<CallLabels, Histogram>,
    broker_errors: Family<CallErrorLabels, Counter>,
    names: RwLock<HashSet<Arc<str>>>,
    recent: RecentErrors,
    started: Instant,
}

/// Latency buckets from 0.5 ms to about 33 s (long polls reach 30 s).
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 17))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The produce status label of a send's outcome: the broker's send status, or the error class.
pub fn produce_status(r: &Result<&'static str, &BrokerError>) -> &'static str {
    match r {
        Ok(s) => s,
        Err(e) => error_class(e),
    }
}

/// Every produce status but `SEND_OK`: the broker's other send statuses and the error classes
/// of [`error_class`].
const PRODUCE_FAILURES: [&str; 7] = [
    "FLUSH_DISK_TIMEOUT",
    "FLUSH_SLAVE_TIMEOUT",
    "SLAVE_NOT_AVAILABLE",
    "invalid",
    "outcome_unknown",
    "topic_not_exist",
    "failed",
];

fn error_class(e: &BrokerError) -> &'static str {
    match e {
        BrokerError::Invalid(_) => "invalid",
        BrokerError::OutcomeUnknown(_) => "outcome_unknown",
        BrokerError::TopicNotExist(_) => "topic_not_exist",
        BrokerError::Failed(_) => "failed",
    }
}

impl Metrics {
    /// Empty counters, registered under the prefix `rmq_gateway`.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("rmq_gateway");
        let http = Family::<HttpLabels, Histogram>::new_with_constructor(latency_histogram as _);
        registry.register(
            "http_request_duration_seconds",
            "HTTP requests by method, route template and status (for /mq/* errors the envelope's status), with their latency",
            http.clone(),
        );
        let produced = Family::<ProduceLabels, Counter>::default();
        registry.register(
            "produced_messages",
            "Messages produced through /mq/produce and /mq/produce/batch, by producer and outcome (the broker's send status, or the error class)",
            produced.clone(),
        );
        let broker_calls =
            Family::<CallLabels, Histogram>::new_with_constructor(latency_histogram as _);
        registry.register(
            "broker_call_duration_seconds",
            "Broker and name-server calls of the gateway by request code, with their latency (failed ones included)",
            broker_calls.clone(),
        );
        let broker_errors = Family::<CallErrorLabels, Counter>::default();
        registry.register(
            "broker_call_errors",
            "Failed broker calls by request code and error class",
            broker_errors.clone(),
        );
        Metrics {
            registry,
            http,
            produced,
            broker_calls,
            broker_errors,
            names: RwLock::new(HashSet::new()),
            recent: RecentErrors::default(),
            started: Instant::now(),
        }
    }

    /// `s` as a shared label value: allocated once per distinct name, then a reference count.
    pub fn name(&self, s: &str) -> Arc<str> {
        if let Some(n) = self.names.read().get(s) {
            return n.clone();
        }
        let mut names = self.names.write();
        if let Some(n) = names.get(s) {
            return n.clone();
        }
        let n: Arc<str> = Arc::from(s);
        names.insert(n.clone());
        n
    }

    fn now_secs(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// Seconds since these counters were created (about the process' uptime).
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Counts one HTTP request.
    pub fn http_request(
        &self,
        method: &'static str,
        route: &'static str,
        status: u16,
        took: Duration,
    ) {
        self.http
            .get_or_create(&HttpLabels {
                method,
                route,
                status,
            })
            .observe(took.as_secs_f64());
        match status {
            500..=599 => self.recent.record(ErrorKind::Server, 1, self.now_secs()),
            400..=499 => self.recent.record(ErrorKind::Client, 1, self.now_secs()),
            _ => {}
        }
    }

    /// Counts `n` messages of `producer` with the outcome `status` ([`produce_status`]).
    pub fn produced(&self, producer: &str, status: &'static str, n: u64) {
        self.produced
            .get_or_create(&ProduceLabels {
                producer: Name(self.name(producer)),
                status,
            })
            .inc_by(n);
        if !matches!(status, "SEND_OK") {
            self.recent.record(ErrorKind::Produce, n, self.now_secs());
        }
    }

    /// Messages of `producer` counted with `status` so far.
    pub fn produced_count(&self, producer: &str, status: &'static str) -> u64 {
        self.produced
            .get(&ProduceLabels {
                producer: Name(self.name(producer)),
                status,
            })
            .map_or(0, |c| c.get())
    }

    /// Messages of `producer` counted with any status but `SEND_OK` so far.
    pub fn produce_failures(&self, producer: &str) -> u64 {
        PRODUCE_FAILURES
            .iter()
            .map(|s| self.produced_count(producer, s))
            .sum()
    }

    /// Counts one broker call of request `code` that took `took`.
    pub fn broker_call(&self, code: &'static str, took: Duration, error: Option<&BrokerError>) {
        self.broker_calls
            .get_or_create(&CallLabels { code })
            .observe(took.as_secs_f64());
        if let Some(e) = error {
            self.broker_errors
                .get_or_create(&CallErrorLabels {
                    code,
                    error: error_class(e),
                })
                .inc();
            self.recent.record(ErrorKind::Broker, 1, self.now_secs());
        }
    }

    /// Error counts of the last [`RECENT_WINDOW_SECS`].
    pub fn recent_errors(&self) -> RecentErrorCounts {
        self.recent.counts(self.now_secs())
    }

    /// The text of a scrape: the counters, then what `snap` shows.
    pub fn encode(&self, snap: &Snapshot) -> String {
        let mut out = String::with_capacity(16 * 1024);
        let scrape = scrape_registry(snap);
        // Writing into a String cannot fail.
        let _ = text::encode_registry(&mut out, &self.registry);
        let _ = text::encode_registry(&mut out, &scrape);
        let _ = text::encode_registry(&mut out, &process_registry());
        let _ = text::encode_eof(&mut out);
        out
    }
}

/// The resident set size of this process in bytes, from `/proc/self/statm`; `None` where there
/// is no such file.
pub fn resident_memory_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions; it only reads a system constant.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok().filter(|p| *p > 0).unwrap_or(4096))
}

/// The metrics read at scrape time, in a registry of their own (built per scrape).
fn scrape_registry(snap: &Snapshot) -> Registry {
    let mut r = Registry::with_prefix("rmq_gateway");
    let counter = |r: &mut Registry, name: &str, help: &str| {
        let f = Family::<ConsumerLabels, Counter>::default();
        r.register(name, help, f.clone());
        f
    };
    let delivered = counter(
        &mut r,
        "consumer_delivered_messages",
        "Messages handed out to HTTP consumers (both APIs), redeliveries included",
    );
    let redelivered = counter(
        &mut r,
        "consumer_redelivered_messages",
        "Messages handed out again because they were not acked in time (expired)",
    );
    let acked = counter(
        &mut r,
        "consumer_acked_messages",
        "Messages acked by HTTP consumers",
    );
    let dead = counter(
        &mut r,
        "consumer_dead_lettered_messages",
        "Messages sent to the dead-letter queue after too many deliveries",
    );
    let gauge = |r: &mut Registry, name: &str, help: &str| {
        let f = Family::<QueueLabels, Gauge>::default();
        r.register(name, help, f.clone());
        f
    };
    let max = gauge(
        &mut r,
        "queue_max_offset",
        "The broker's max offset of the queue (one past its last message), as last read",
    );
    let committed = gauge(
        &mut r,
        "queue_committed_offset",
        "The group's committed offset on the queue, as last read (absent: none committed)",
    );
    let backlog = gauge(
        &mut r,
        "queue_backlog_messages",
        "Messages of the queue not yet committed past by the group",
    );
    let leased = gauge(
        &mut r,
        "queue_leased",
        "1 while this instance has messages of the queue out to an HTTP consumer",
    );
    let locked = gauge(
        &mut r,
        "queue_locked",
        "1 while this instance holds the broker's lock of the queue for the group",
    );
    for c in &snap.consumers {
        let labels = ConsumerLabels {
            consumer: c.name.clone(),
            group: c.group.clone(),
        };
        delivered
            .get_or_create(&labels)
            .inc_by(c.counters.delivered);
        redelivered
            .get_or_create(&labels)
            .inc_by(c.counters.redelivered);
        acked.get_or_create(&labels).inc_by(c.counters.acked);
        dead.get_or_create(&labels).inc_by(c.counters.dead_lettered);
        for q in &c.queues {
            let ql = QueueLabels {
                consumer: c.name.clone(),
                group: c.group.clone(),
                topic: q.topic.clone(),
                broker: q.broker.clone(),
                queue: q.queue_id,
            };
            if let Some(m) = q.max_offset {
                max.get_or_create(&ql).set(m);
            }
            if let Some(m) = q.committed_offset {
                committed.get_or_create(&ql).set(m);
            }
            if let Some(b) = q.backlog {
                backlog.get_or_create(&ql).set(b);
            }
            leased.get_or_create(&ql).set(q.leased as i64);
            locked.get_or_create(&ql).set(q.locked as i64);
        }
    }
    let conns = Family::<PeerLabels, Gauge>::default();
    r.register(
        "connections",
        "Open connections to brokers and name servers",
        conns.clone(),
    );
    conns
        .get_or_create(&PeerLabels { peer: "broker" })
        .set(snap.connections.brokers as i64);
    conns
        .get_or_create(&PeerLabels { peer: "namesrv" })
        .set(snap.connections.name_servers as i64);
    let ready = Gauge::<i64>::default();
    ready.set(snap.ready.ready as i64);
    r.register(
        "ready",
        "1 when GET /readyz answers 200 (a name server answered recently, every configured topic has a route)",
        ready,
    );
    r
}

/// Process metrics, under their conventional names (no prefix).
fn process_registry() -> Registry {
    let mut p = Registry::default();
    if let Some(rss) = resident_memory_bytes() {
        let g = Gauge::<i64>::default();
        g.set(rss as i64);
        p.register(
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            g,
        );
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_errors_count_the_last_five_minutes_only() {
        let r = RecentErrors::default();
        r.record(ErrorKind::Server, 1, 0);
        r.record(ErrorKind::Broker, 2, 5);
        r.record(ErrorKind::Produce, 3, 200);
        r.record(ErrorKind::Client, 1, 299);
        let c = r.counts(299);
        assert_eq!((c.server, c.broker, c.produce, c.client), (1, 2, 3, 1));
        // At 310 s the first bucket (0..10 s) has left the window.
        let c = r.counts(310);
        assert_eq!((c.server, c.broker, c.produce, c.client), (0, 0, 3, 1));
        assert_eq!(
            r.counts(1_000),
            RecentErrorCounts {
                window_seconds: RECENT_WINDOW_SECS,
                ..Default::default()
            }
        );
    }

    #[test]
    fn names_are_interned_and_labels_encode_as_text() {
        let m = Metrics::new();
        let a = m.name("orders-producer");
        let b = m.name("orders-producer");
        assert!(Arc::ptr_eq(&a, &b));
        m.produced("orders-producer", "SEND_OK", 2);
        m.produced(
            "orders-producer",
            produce_status(&Err(&BrokerError::Failed("x".into()))),
            1,
        );
        m.broker_call("PULL_MESSAGE", Duration::from_millis(3), None);
        m.broker_call(
            "PULL_MESSAGE",
            Duration::from_millis(1),
            Some(&BrokerError::OutcomeUnknown("t".into())),
        );
        m.http_request("GET", "/mq/message", 500, Duration::from_millis(2));
        let text = m.encode(&Snapshot::default());
        for line in [
            r#"rmq_gateway_produced_messages_total{producer="orders-producer",status="SEND_OK"} 2"#,
            r#"rmq_gateway_produced_messages_total{producer="orders-producer",status="failed"} 1"#,
            r#"rmq_gateway_broker_call_duration_seconds_count{code="PULL_MESSAGE"} 2"#,
            r#"rmq_gateway_broker_call_errors_total{code="PULL_MESSAGE",error="outcome_unknown"} 1"#,
            r#"rmq_gateway_http_request_duration_seconds_count{method="GET",route="/mq/message",status="500"} 1"#,
            "# TYPE rmq_gateway_queue_backlog_messages gauge",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line} in\n{text}");
        }
        let e = m.recent_errors();
        assert_eq!((e.server, e.broker, e.produce), (1, 1, 1));
    }
}
