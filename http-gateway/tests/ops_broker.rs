//! The operator's routes of the real `rmq-gateway` binary against the real broker
//! (`RMQ_NAMESRV`; fails, never skips, when unset): a scrape of `/metrics` after a produce and
//! consume run, `/readyz` turning ready once the topic has a route, the status snapshot with a
//! waiting backlog, and the JSON access log (`RMQ_LOG_FORMAT=json`).
//!
//! Run with `scripts/broker.sh exec -- cargo test -p rmq-gateway --features broker-tests --test ops_broker`.

use std::time::{Duration, Instant};

use rmq_test_support::{get, http_builder, post_form, unique, Gateway};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_rmq-gateway");

fn http() -> reqwest::Client {
    http_builder(Duration::from_secs(40)).build().unwrap()
}

fn tables(producer: &str, consumer: &str, topic: &str) -> String {
    format!(
        "[[producer]]\nname = \"{producer}\"\ntopic = \"{topic}\"\n\
         [[consumer]]\nname = \"{consumer}\"\ntopic = \"{topic}\"\nmax_pull_size = 8\n"
    )
}

async fn start(label: &str, tables: &str) -> Gateway {
    // Every gateway of this file logs JSON lines (the same value in every test, so tests
    // running in parallel agree).
    std::env::set_var("RMQ_LOG_FORMAT", "json");
    Gateway::start(BIN, label, tables).await
}

async fn scrape(http: &reqwest::Client, gw: &Gateway) -> String {
    let r = http
        .get(format!("{}/metrics", gw.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    r.text().await.unwrap()
}

/// The sum of the values of the lines starting with `prefix`; `None` when there is none.
fn sum(text: &str, prefix: &str) -> Option<f64> {
    let v: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with(prefix))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    (!v.is_empty()).then(|| v.iter().sum())
}

/// Polls until `ok` holds for the scrape, at most `within`; the last scrape otherwise.
async fn scrape_until(
    http: &reqwest::Client,
    gw: &Gateway,
    within: Duration,
    ok: impl Fn(&str) -> bool,
) -> Result<String, String> {
    let start = Instant::now();
    loop {
        let text = scrape(http, gw).await;
        if ok(&text) {
            return Ok(text);
        }
        if start.elapsed() > within {
            return Err(text);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn wait_ready(http: &reqwest::Client, gw: &Gateway, within: Duration) -> (u16, String) {
    let start = Instant::now();
    loop {
        let r = http
            .get(format!("{}/readyz", gw.base))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body = r.text().await.unwrap();
        if status == 200 || start.elapsed() > within {
            return (status, body);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn a_scrape_after_a_produce_and_consume_run_shows_what_happened() {
    const N: usize = 20;
    let topic = unique("OpsMetrics");
    let (p, c) = (unique("ops-p"), unique("ops-c"));
    let mut gw = start("ops-metrics", &tables(&p, &c, &topic)).await;
    let http = http();
    // A fresh topic has no route until the first send creates it: not ready, with the reason.
    let r = http
        .get(format!("{}/readyz", gw.base))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body = r.text().await.unwrap();
    assert!(
        status == 503 && (body.contains(&topic) || body.contains("not asked yet")),
        "{status} {body}"
    );
    assert_eq!(
        http.get(format!("{}/healthz", gw.base))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    for i in 0..N {
        let v = post_form(
            &http,
            &format!("{}/mq/produce", gw.base),
            &[("producer", &p), ("message", &format!("m{i}"))],
        )
        .await;
        assert_eq!(v["status"], 200, "{v}");
    }
    // A Java broker registers the auto-created topic's route just after the send.
    let (status, body) = wait_ready(&http, &gw, Duration::from_secs(30)).await;
    assert_eq!(
        (status, body.as_str()),
        (200, "ready"),
        "{}",
        gw.log_tail(20)
    );

    let mut got = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while got < N && Instant::now() < deadline {
        let v = get(
            &http,
            &format!("{}/mq/message", gw.base),
            &[("consumer", &c), ("topic", &topic), ("waitSeconds", "1")],
        )
        .await;
        assert_eq!(v["status"], 200, "{v}");
        let n = v["result"]["msgListSize"].as_u64().unwrap_or(0) as usize;
        if let Some(rid) = v["result"]["requestId"].as_str() {
            let a = get(
                &http,
                &format!("{}/mq/ack", gw.base),
                &[("consumer", &c), ("topic", &topic), ("requestId", rid)],
            )
            .await;
            assert_eq!(a["status"], 200, "{a}");
        }
        got += n;
    }
    assert_eq!(got, N);

    let prefix = |m: &str| format!("rmq_gateway_{m}{{consumer=\"{c}\",group=\"{c}\"");
    let committed = format!(
        "rmq_gateway_queue_committed_offset{{consumer=\"{c}\",group=\"{c}\",topic=\"{topic}\""
    );
    let max =
        format!("rmq_gateway_queue_max_offset{{consumer=\"{c}\",group=\"{c}\",topic=\"{topic}\"");
    let backlog = format!(
        "rmq_gateway_queue_backlog_messages{{consumer=\"{c}\",group=\"{c}\",topic=\"{topic}\""
    );
    // The observer reads the broker offsets every 2 s.
    let text = scrape_until(&http, &gw, Duration::from_secs(20), |t| {
        sum(t, &committed) == Some(N as f64) && sum(t, &backlog) == Some(0.0)
    })
    .await
    .unwrap_or_else(|t| panic!("offsets not seen in the scrape:\n{t}"));
    println!("---- a scrape after {N} produced and consumed\n{text}");
    let produced =
        format!("rmq_gateway_produced_messages_total{{producer=\"{p}\",status=\"SEND_OK\"}}");
    assert_eq!(sum(&text, &produced), Some(N as f64));
    assert_eq!(
        sum(&text, &prefix("consumer_delivered_messages_total")),
        Some(N as f64)
    );
    assert_eq!(
        sum(&text, &prefix("consumer_acked_messages_total")),
        Some(N as f64)
    );
    assert_eq!(
        sum(&text, &prefix("consumer_redelivered_messages_total")),
        Some(0.0)
    );
    assert_eq!(sum(&text, &max), Some(N as f64));
    let http_count = |route: &str, method: &str| {
        sum(
            &text,
            &format!("rmq_gateway_http_request_duration_seconds_count{{method=\"{method}\",route=\"{route}\",status=\"200\"}}"),
        )
        .unwrap_or(0.0)
    };
    assert_eq!(http_count("/mq/produce", "POST"), N as f64);
    assert!(http_count("/mq/message", "GET") >= 3.0);
    assert!(http_count("/mq/ack", "GET") >= 3.0);
    let calls = |code: &str| {
        sum(
            &text,
            &format!("rmq_gateway_broker_call_duration_seconds_count{{code=\"{code}\"}}"),
        )
        .unwrap_or(0.0)
    };
    assert_eq!(calls("SEND_MESSAGE"), N as f64);
    assert!(calls("PULL_MESSAGE") >= 3.0);
    assert!(calls("UPDATE_CONSUMER_OFFSET") >= 3.0);
    assert!(calls("LOCK_BATCH_MQ") >= 1.0);
    assert!(calls("GET_ROUTEINFO_BY_TOPIC") >= 1.0);
    assert!(calls("GET_MAX_OFFSET") >= 1.0);
    assert!(sum(&text, "rmq_gateway_connections{peer=\"broker\"}").unwrap() >= 1.0);
    assert!(sum(&text, "rmq_gateway_connections{peer=\"namesrv\"}").unwrap() >= 1.0);
    assert_eq!(sum(&text, "rmq_gateway_ready "), Some(1.0));
    let rss = sum(&text, "process_resident_memory_bytes ").unwrap();
    assert!(rss > 1e6 && rss < 4e9, "{rss}");
    assert!(text.ends_with("# EOF\n"));

    // One JSON access-log line per request, with the producer or consumer and the route. Info
    // lines reach the file within 50 ms (rmq_gateway::log_writer): wait for the line of the
    // last request, GET /metrics.
    let access_lines = || -> Vec<Value> {
        gw.log_text()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["target"] == "rmq_gateway::access")
            .collect()
    };
    let produce_lines = |lines: &[Value]| {
        lines
            .iter()
            .filter(|v| v["route"] == "/mq/produce" && v["producer"] == p.as_str())
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut lines = access_lines();
    while !lines.iter().any(|v| v["route"] == "/metrics") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        lines = access_lines();
    }
    assert_eq!(produce_lines(&lines), N, "{}", gw.log_tail(20));
    let ack = lines
        .iter()
        .find(|v| v["route"] == "/mq/ack")
        .expect("an access line of an ack");
    assert_eq!(ack["consumer"], c.as_str());
    assert!(
        ack["request_id"].as_str().is_some_and(|r| !r.is_empty()),
        "{ack}"
    );
    assert_eq!(ack["status"], 200);
    assert!(ack["duration_ms"].as_f64().is_some());
    assert_eq!(ack["method"], "GET");
    // A fetch that handed out a batch logs the requestId it answered with.
    assert!(
        lines.iter().any(|v| v["route"] == "/mq/message"
            && v["consumer"] == c.as_str()
            && v["request_id"].as_str().is_some_and(|r| !r.is_empty())),
        "{}",
        gw.log_tail(20)
    );
    gw.check_alive();
}

#[tokio::test]
async fn the_status_snapshot_shows_a_waiting_backlog_and_the_openapi_document_is_served() {
    const N: usize = 7;
    let topic = unique("OpsStatus");
    let (p, c) = (unique("ops-p"), unique("ops-c"));
    let gw = start("ops-status", &tables(&p, &c, &topic)).await;
    let http = http();
    for i in 0..N {
        let v = post_form(
            &http,
            &format!("{}/mq/produce", gw.base),
            &[("producer", &p), ("message", &format!("w{i}"))],
        )
        .await;
        assert_eq!(v["status"], 200, "{v}");
    }
    // Nobody consumed: the consumer's backlog is every message, from the broker's offsets.
    let start = Instant::now();
    let snap = loop {
        let s: Value = http
            .get(format!("{}/status.json", gw.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let c0 = s["consumers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == c.as_str())
            .cloned();
        if c0.as_ref().is_some_and(|x| x["backlog"] == N)
            || start.elapsed() > Duration::from_secs(30)
        {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let cv = snap["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == c.as_str())
        .unwrap();
    assert_eq!(cv["backlog"], N, "{snap}");
    let queues = cv["queues"].as_array().unwrap();
    assert!(!queues.is_empty());
    assert_eq!(
        queues
            .iter()
            .map(|q| q["maxOffset"].as_i64().unwrap())
            .sum::<i64>(),
        N as i64
    );
    assert_eq!(snap["producers"][0]["sent"], N);
    let page = http.get(format!("{}/", gw.base)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("status.json"));
    let doc: Value = http
        .get(format!("{}/openapi.json", gw.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/mq/message"]["get"].is_object());
    assert!(doc["paths"]["/topics/{topic}/messages"]["delete"].is_object());
}
