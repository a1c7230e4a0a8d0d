//! The Aliyun MQ HTTP API phase of the gateway benchmark: signed publishes (PublishMessage)
//! from 64 tasks for the same time as the other produce rows, then ConsumeMessage (16 per
//! request, long polling 1 s) and AckMessage of every handle from 8 loops until every message
//! of the topic came, each message at most once (60 s invisibility: nothing comes again
//! within the run). Requests are signed as the SDKs sign them (HMAC-SHA1 over verb, headers and
//! target), with the gateway's own signing functions, so the client's signing cost is in the
//! numbers, as it is for an SDK.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::Method;
use rmq_gateway::api::aliyun::auth::{sign, string_to_sign, Secret};

use super::{Report, BODY_SIZE, CONNECTIONS, CONSUMERS, MAX_ROUNDS};

const AK: &str = "bench-ak";
const SK: &str = "bench-sk";

/// The `[aliyun]` table the benchmark's gateway runs with.
pub fn tables() -> String {
    format!(
        "[aliyun]\ncredentials = [{{ access_key_id = \"{AK}\", access_key_secret = \"{SK}\" }}]\n\
         invisible_time_ms = 60000\n"
    )
}

/// What the phase measured and what went wrong.
pub struct Outcome {
    pub publish: Report,
    pub consume: Report,
    pub summary: String,
    pub failures: Vec<String>,
}

/// A signed request of the API (`target`: path and query as sent).
fn request(
    http: &reqwest::Client,
    base: &str,
    method: Method,
    target: &str,
    body: String,
) -> reqwest::RequestBuilder {
    let mut headers = HeaderMap::new();
    headers.insert("x-mq-version", HeaderValue::from_static("2015-06-06"));
    let date = httpdate::fmt_http_date(SystemTime::now());
    headers.insert("date", HeaderValue::from_str(&date).expect("an HTTP date"));
    if !body.is_empty() {
        headers.insert(
            "content-type",
            HeaderValue::from_static("text/xml;charset=UTF-8"),
        );
    }
    let sig = sign(&Secret::new(SK), &string_to_sign(&method, target, &headers));
    http.request(method, format!("{base}{target}"))
        .headers(headers)
        .header("authorization", format!("MQ {AK}:{sig}"))
        .body(body)
}

/// The text of each `<name>` element of `body`.
fn all(body: &str, name: &str) -> Vec<String> {
    let (open, close) = (format!("<{name}>"), format!("</{name}>"));
    body.split(&open)
        .skip(1)
        .filter_map(|p| p.split(&close).next().map(str::to_owned))
        .collect()
}

/// `CONNECTIONS` tasks publishing 1 KiB bodies to `topic` for `dur`: (ok, bad, a bad answer,
/// elapsed, latencies).
async fn publish(
    http: &reqwest::Client,
    base: &str,
    topic: &str,
    dur: Duration,
) -> (usize, usize, Option<String>, Duration, Vec<Duration>) {
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Message \
         xmlns=\"http://mq.aliyuncs.com/doc/v1/\"><MessageBody>{}</MessageBody>\
         <MessageTag>bench</MessageTag></Message>",
        "x".repeat(BODY_SIZE)
    );
    let target = format!("/topics/{topic}/messages");
    let start = Instant::now();
    let deadline = start + dur;
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        let (http, base, target, xml) =
            (http.clone(), base.to_owned(), target.clone(), xml.clone());
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut bad, mut sample, mut lat) = (0, 0, None, Vec::new());
            while Instant::now() < deadline {
                let s = Instant::now();
                let r = request(&http, &base, Method::POST, &target, xml.clone())
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status().as_u16() == 201 => {
                        let _ = r.bytes().await;
                        lat.push(s.elapsed());
                        ok += 1;
                    }
                    Ok(r) => {
                        bad += 1;
                        sample.get_or_insert(r.text().await.unwrap_or_default());
                    }
                    Err(e) => {
                        bad += 1;
                        sample.get_or_insert(e.to_string());
                    }
                }
            }
            (ok, bad, sample, lat)
        }));
    }
    let (mut ok, mut bad, mut sample, mut lat) = (0, 0, None, Vec::new());
    for t in tasks {
        let (o, b, s, l) = t.await.expect("publish task");
        ok += o;
        bad += b;
        sample = sample.or(s);
        lat.extend(l);
    }
    (ok, bad, sample, start.elapsed(), lat)
}

#[derive(Default)]
struct Consumed {
    got: usize,
    lat: Vec<Duration>,
    requests: usize,
    errors: usize,
    error_sample: Option<String>,
    duplicates: usize,
}

/// `CONSUMERS` loops of consume + ack until `target` messages came or `limit` passed; latency
/// per consume request that brought messages (its ack included).
async fn consume(
    http: &reqwest::Client,
    base: &str,
    topic: &str,
    group: &str,
    target: usize,
    limit: Duration,
) -> (Consumed, Duration) {
    let got = Arc::new(AtomicUsize::new(0));
    let ids = Arc::new(Mutex::new(HashSet::with_capacity(target)));
    let start = Instant::now();
    let deadline = start + limit;
    let get = format!("/topics/{topic}/messages?consumer={group}&numOfMessages=16&waitseconds=1");
    let ack = format!("/topics/{topic}/messages?consumer={group}");
    let mut loops = Vec::new();
    for _ in 0..CONSUMERS {
        let (http, base, get, ack) = (http.clone(), base.to_owned(), get.clone(), ack.clone());
        let (got, ids) = (got.clone(), ids.clone());
        loops.push(tokio::spawn(async move {
            let mut r = Consumed::default();
            for _ in 0..MAX_ROUNDS {
                if got.load(Ordering::Relaxed) >= target || Instant::now() >= deadline {
                    break;
                }
                let s = Instant::now();
                r.requests += 1;
                let answer = request(&http, &base, Method::GET, &get, String::new())
                    .send()
                    .await;
                let (status, text) = match answer {
                    Ok(a) => (a.status().as_u16(), a.text().await.unwrap_or_default()),
                    Err(e) => (0, e.to_string()),
                };
                if status == 404 && text.contains("MessageNotExist") {
                    continue;
                }
                if status != 200 {
                    r.errors += 1;
                    r.error_sample.get_or_insert(format!("{status} {text}"));
                    continue;
                }
                let handles = all(&text, "ReceiptHandle");
                {
                    let mut ids = ids.lock().unwrap();
                    for id in all(&text, "MessageId") {
                        if !ids.insert(id) {
                            r.duplicates += 1;
                        }
                    }
                }
                let mut xml = String::from("<ReceiptHandles>");
                for h in &handles {
                    xml.push_str(&format!("<ReceiptHandle>{h}</ReceiptHandle>"));
                }
                xml.push_str("</ReceiptHandles>");
                match request(&http, &base, Method::DELETE, &ack, xml)
                    .send()
                    .await
                {
                    Ok(a) if a.status().as_u16() == 204 => {}
                    Ok(a) => {
                        r.errors += 1;
                        let st = a.status();
                        r.error_sample.get_or_insert(format!(
                            "ack: {st} {}",
                            a.text().await.unwrap_or_default()
                        ));
                    }
                    Err(e) => {
                        r.errors += 1;
                        r.error_sample.get_or_insert(format!("ack: {e}"));
                    }
                }
                r.lat.push(s.elapsed());
                r.got += handles.len();
                got.fetch_add(handles.len(), Ordering::Relaxed);
            }
            r
        }));
    }
    let mut total = Consumed::default();
    for l in loops {
        let r = l.await.expect("consume loop");
        total.got += r.got;
        total.lat.extend(r.lat);
        total.requests += r.requests;
        total.errors += r.errors;
        total.error_sample = total.error_sample.or(r.error_sample);
        total.duplicates += r.duplicates;
    }
    (total, start.elapsed())
}

/// Publishes to `topic` (which must exist) for `dur`, then consumes and acks all of its
/// `in_topic_before + published` messages under a new group. `count` reads the broker's
/// message count of the topic. `gw_pid` is the gateway process: its CPU time over each phase
/// goes in the phase's report.
#[allow(clippy::too_many_arguments)]
pub async fn run<F, Fut>(
    gw_pid: u32,
    http: &reqwest::Client,
    base: &str,
    topic: &str,
    group: &str,
    dur: Duration,
    consume_limit: Duration,
    count: F,
) -> Outcome
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = usize>,
{
    let cpu0 = super::proc_cpu(gw_pid);
    let (ok, bad, bad_sample, elapsed, lat) = publish(http, base, topic, dur).await;
    let publish = Report::from_samples(
        format!("produce, Aliyun API (signed), {CONNECTIONS} tasks"),
        ok,
        elapsed,
        lat,
        0,
    )
    .with_cpu(super::proc_cpu(gw_pid) - cpu0);
    let in_topic = count().await;
    let cpu0 = super::proc_cpu(gw_pid);
    let (c, took) = consume(http, base, topic, group, in_topic, consume_limit).await;
    let consume = Report::from_samples(
        format!("consume+ack, Aliyun API, {CONSUMERS} loops"),
        c.got,
        took,
        c.lat,
        2,
    )
    .with_cpu(super::proc_cpu(gw_pid) - cpu0);
    let summary = format!(
        "Aliyun API: {ok} published ({bad} bad answers), {in_topic} in the topic; consumed and \
         acked {} in {} requests, {} errors, {} duplicates",
        c.got, c.requests, c.errors, c.duplicates
    );
    let mut failures = Vec::new();
    if bad > 0 {
        failures.push(format!(
            "{bad} Aliyun publishes failed, e.g. {}",
            bad_sample.as_deref().unwrap_or("?")
        ));
    }
    if c.got != in_topic || c.duplicates > 0 {
        failures.push(format!(
            "Aliyun consume got {} of {in_topic} messages with {} duplicates",
            c.got, c.duplicates
        ));
    }
    if c.errors > 0 {
        failures.push(format!(
            "{} Aliyun consume/ack requests failed, e.g. {}",
            c.errors,
            c.error_sample.as_deref().unwrap_or("?")
        ));
    }
    Outcome {
        publish,
        consume,
        summary,
        failures,
    }
}
