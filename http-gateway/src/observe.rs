//! What an operator sees of a running gateway: the [`Snapshot`] behind `/status.json`, the
//! status page and the scrape-time part of `/metrics`, and the [`Readiness`] behind `/readyz`.
//! Plain data and bookkeeping with the time passed in; the driver fills the snapshot
//! (`Gateway::snapshot`) and the observer loop of the binary does the probing.

use parking_lot::Mutex;
use serde::Serialize;

use crate::engine::DeliveryCounters;
use crate::metrics::RecentErrorCounts;

/// `/readyz` fails when no name server answered for this long (the observer probes about
/// every two seconds).
pub const READY_STALE_MS: i64 = 15_000;

/// The state of the gateway at one moment (`GET /status.json`).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    /// The client id this instance locks queues under.
    pub instance: String,
    /// Seconds since start.
    pub uptime_seconds: u64,
    /// Configured producers.
    pub producers: Vec<ProducerView>,
    /// Consumers: one line per clustering group or broadcast clientId this instance serves,
    /// configured ones even before their first request, and run-time (Aliyun) groups.
    pub consumers: Vec<ConsumerView>,
    /// Errors of the last minutes.
    pub recent_errors: RecentErrorCounts,
    /// Open connections.
    pub connections: Connections,
    /// What `/readyz` answers.
    pub ready: ReadyView,
}

/// One configured producer.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProducerView {
    /// Its name (the `producer` parameter).
    pub name: String,
    /// The topic it sends to.
    pub topic: String,
    /// Its producer group.
    pub group: String,
    /// Messages sent (`SEND_OK`) since start.
    pub sent: u64,
    /// Messages that failed or whose outcome is unknown since start.
    pub failed: u64,
}

/// One consumer scope (a clustering group, or one clientId of a broadcast consumer).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerView {
    /// The consumer's name (the `consumer` parameter, or the Aliyun group).
    pub name: String,
    /// Its topic.
    pub topic: String,
    /// The broker group its offsets and locks live under.
    pub group: String,
    /// A broadcast consumer's clientId.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// `clustering` or `broadcast`.
    pub mode: &'static str,
    /// Whether `/mq/consumer/config` paused it on this instance.
    pub paused: bool,
    /// Messages handed out and taken back on this instance since start.
    pub counters: DeliveryCounters,
    /// The sum of the queues' backlogs (those known).
    pub backlog: i64,
    /// Per queue (the topic's, then its retry topic's).
    pub queues: Vec<QueueView>,
    /// When the broker offsets were last read (ms since the epoch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offsets_read_at: Option<i64>,
}

/// One queue of a consumer.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueView {
    /// The topic (the consumer's, or its `%RETRY%` topic).
    pub topic: String,
    /// The broker name.
    pub broker: String,
    /// The queue id.
    pub queue_id: i32,
    /// The broker's max offset, as last read.
    pub max_offset: Option<i64>,
    /// The group's committed offset, as last read (`None`: never committed, or not read yet).
    pub committed_offset: Option<i64>,
    /// `max_offset - committed_offset` (all of the queue when nothing was committed); `None`
    /// until the offsets were read.
    pub backlog: Option<i64>,
    /// Messages of it are out to an HTTP consumer of this instance.
    pub leased: bool,
    /// This instance holds the broker's lock of it.
    pub locked: bool,
    /// Messages handed out and not yet committed past.
    pub in_flight: usize,
}

/// Open connections of the broker client.
#[derive(Debug, Clone, Copy, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Connections {
    /// To brokers.
    pub brokers: usize,
    /// To name servers.
    pub name_servers: usize,
}

/// `/readyz` in the snapshot.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReadyView {
    /// Whether `/readyz` answers 200.
    pub ready: bool,
    /// Why not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What one probe of the name servers found: the route of each configured topic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Probe {
    /// At least one name server answered.
    pub answered: bool,
    /// Topics the name servers answered that they have no route for.
    pub missing_routes: Vec<String>,
    /// The last failure, when a name server could not be asked.
    pub error: Option<String>,
}

#[derive(Debug, Default)]
struct ReadyState {
    probed: bool,
    last_answer_ms: Option<i64>,
    missing_routes: Vec<String>,
    error: Option<String>,
}

/// Readiness for load balancers: ready when a name server answered within
/// [`READY_STALE_MS`] and every configured topic had a route in the last answer.
#[derive(Debug, Default)]
pub struct Readiness {
    state: Mutex<ReadyState>,
}

impl Readiness {
    /// Records a probe made at `now_ms`.
    pub fn record(&self, now_ms: i64, probe: Probe) {
        let mut s = self.state.lock();
        s.probed = true;
        if probe.answered {
            s.last_answer_ms = Some(now_ms);
            s.missing_routes = probe.missing_routes;
        }
        s.error = probe.error;
    }

    /// `Ok` when ready at `now_ms`, else the reason.
    pub fn check(&self, now_ms: i64) -> Result<(), String> {
        let s = self.state.lock();
        let why_not = |e: &Option<String>| match e {
            Some(e) => format!(": {e}"),
            None => String::new(),
        };
        match s.last_answer_ms {
            None if !s.probed => Err("the name servers were not asked yet".into()),
            None => Err(format!("no name server answered{}", why_not(&s.error))),
            Some(t) if now_ms - t > READY_STALE_MS => Err(format!(
                "no name server answered for {} s{}",
                (now_ms - t) / 1000,
                why_not(&s.error)
            )),
            Some(_) if !s.missing_routes.is_empty() => Err(format!(
                "no route for topic(s) {} on the name servers",
                s.missing_routes.join(", ")
            )),
            Some(_) => Ok(()),
        }
    }

    /// [`Readiness::check`] as the snapshot shows it.
    pub fn view(&self, now_ms: i64) -> ReadyView {
        match self.check(now_ms) {
            Ok(()) => ReadyView {
                ready: true,
                reason: None,
            },
            Err(r) => ReadyView {
                ready: false,
                reason: Some(r),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_reasons() {
        let r = Readiness::default();
        assert_eq!(
            r.check(0).unwrap_err(),
            "the name servers were not asked yet"
        );
        r.record(
            1_000,
            Probe {
                answered: false,
                missing_routes: vec![],
                error: Some("connection refused".into()),
            },
        );
        assert_eq!(
            r.check(1_000).unwrap_err(),
            "no name server answered: connection refused"
        );
        r.record(
            2_000,
            Probe {
                answered: true,
                missing_routes: vec!["orders".into(), "bills".into()],
                error: None,
            },
        );
        assert_eq!(
            r.check(2_000).unwrap_err(),
            "no route for topic(s) orders, bills on the name servers"
        );
        r.record(
            3_000,
            Probe {
                answered: true,
                ..Probe::default()
            },
        );
        assert_eq!(r.check(3_000), Ok(()));
        assert!(r.view(3_000).ready);
        // A failed probe keeps the last answer until it is too old.
        r.record(
            4_000,
            Probe {
                answered: false,
                missing_routes: vec![],
                error: Some("timeout".into()),
            },
        );
        assert_eq!(r.check(4_000), Ok(()));
        let late = 3_000 + READY_STALE_MS + 1_000;
        assert_eq!(
            r.check(late).unwrap_err(),
            "no name server answered for 16 s: timeout"
        );
        assert_eq!(
            r.view(late).reason.as_deref(),
            r.check(late).err().as_deref()
        );
    }
}
