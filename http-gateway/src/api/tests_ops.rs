//! The operator's routes on the in-memory broker: the route table against `/openapi.json`,
//! a scrape after produce/consume, `/readyz`'s reasons, the status snapshot.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use rmq_client::{ClientConfig, MQClient};
use serde_json::Value;
use tower::ServiceExt;

use super::aliyun::{AliyunApi, AliyunConfig};
use super::ops::Ops;
use super::routes::RouteEntry;
use crate::clock::{Clock, ManualClock};
use crate::config::Config;
use crate::observe::{Probe, Readiness};
use crate::service::Gateway;
use crate::testing::MemBroker;

const TOPIC: &str = "orders";

struct World {
    router: Router,
    entries: Vec<RouteEntry>,
    readiness: Arc<Readiness>,
    clock: Arc<ManualClock>,
    gw: Arc<Gateway<crate::testing::MemClient>>,
}

fn world() -> World {
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let broker = MemBroker::new(clock.clone(), 2);
    broker.create_topic(TOPIC);
    let config = Config::from_toml(&format!(
        r#"
namesrv = ["mem:0"]
[[producer]]
name = "p"
topic = "{TOPIC}"
[[consumer]]
name = "c"
topic = "{TOPIC}"
"#
    ))
    .unwrap();
    let gw = Gateway::new(&config, broker.client("A"), clock.clone());
    // The Aliyun API's publisher is not exercised; its client points at a closed port.
    let client = MQClient::start(ClientConfig::new("127.0.0.1:1")).unwrap();
    let aliyun = AliyunApi::new(client, gw.clone(), &AliyunConfig::default());
    let readiness = Arc::new(Readiness::default());
    let ops = Ops::new(gw.clone(), readiness.clone());
    let (router, entries) = super::all_routes(gw.clone(), aliyun, ops).into_parts();
    World {
        router,
        entries,
        readiness,
        clock,
        gw,
    }
}

impl World {
    async fn call(&self, method: Method, uri: &str, body: &str) -> (StatusCode, String) {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body.to_owned()))
            .unwrap();
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    async fn json(&self, method: Method, uri: &str, body: &str) -> Value {
        let (status, text) = self.call(method, uri, body).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {text}");
        serde_json::from_str(&text).unwrap()
    }
}

fn documented() -> BTreeSet<(String, String)> {
    let doc: Value = serde_json::from_str(super::ops::OPENAPI).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if method == "parameters" {
                continue;
            }
            assert!(
                op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{method} {path} documents no response"
            );
            ops.insert((path.clone(), method.to_ascii_uppercase()));
        }
    }
    ops
}

#[tokio::test]
async fn every_served_route_is_documented_and_every_documented_one_is_served() {
    let w = world();
    let served: BTreeSet<(String, String)> = w
        .entries
        .iter()
        .flat_map(|e| e.methods.iter().map(|m| (e.path.to_owned(), m.to_string())))
        .collect();
    let documented = documented();
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&served).collect();
    assert!(
        undocumented.is_empty(),
        "served, not in openapi.json: {undocumented:?}"
    );
    assert!(
        unserved.is_empty(),
        "in openapi.json, not served: {unserved:?}"
    );
    // And the router really answers each of them (not 404/405), while a method the table does
    // not list gets 405 (the Aliyun route answers other methods in its own error format).
    for (path, method) in &documented {
        let uri = path.replace("{topic}", TOPIC);
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        let (status, body) = w.call(m, &uri, "").await;
        assert!(
            status != StatusCode::NOT_FOUND && status != StatusCode::METHOD_NOT_ALLOWED
                || body.contains("<Code>"),
            "{method} {uri}: {status} {body}"
        );
    }
    for e in w
        .entries
        .iter()
        .filter(|e| e.path.starts_with("/mq") || !e.path.contains('{'))
    {
        if e.path.starts_with("/topics") {
            continue;
        }
        let (status, _) = w.call(Method::PUT, e.path, "").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "PUT {}", e.path);
    }
    let (status, _) = w.call(Method::GET, "/no/such/route", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line {prefix} in\n{text}"))
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_scrape_after_produce_and_consume_shows_the_counts() {
    let w = world();
    for i in 0..3 {
        let v = w
            .json(
                Method::POST,
                "/mq/produce",
                &format!("producer=p&message=m{i}"),
            )
            .await;
        assert_eq!(v["status"], 200, "{v}");
    }
    let v = w
        .json(Method::POST, "/mq/produce", "producer=nobody&message=x")
        .await;
    assert_eq!(v["status"], 400);
    // Fetch until all three came, acking each batch with the next fetch.
    let mut got = 0;
    let mut rid: Option<String> = None;
    for _ in 0..10 {
        let mut q = format!("consumer=c&topic={TOPIC}");
        if let Some(r) = &rid {
            q.push_str(&format!("&requestId={r}"));
        }
        let v = w.json(Method::GET, &format!("/mq/message?{q}"), "").await;
        let n = v["result"]["msgListSize"].as_u64().unwrap_or(0);
        got += n;
        rid = v["result"]["requestId"].as_str().map(str::to_owned);
        if got == 3 && rid.is_none() {
            break;
        }
        if got == 3 {
            let r = rid.take().unwrap();
            let v = w
                .json(
                    Method::POST,
                    "/mq/ack",
                    &format!("consumer=c&topic={TOPIC}&requestId={r}"),
                )
                .await;
            assert_eq!(v["status"], 200, "{v}");
            break;
        }
    }
    assert_eq!(got, 3);
    w.gw.refresh_observed().await;
    w.readiness.record(
        w.clock.now_ms(),
        Probe {
            answered: true,
            ..Probe::default()
        },
    );
    let (status, text) = w.call(Method::GET, "/metrics", "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(text.ends_with("# EOF\n"), "{text}");
    let count = |p: &str| metric(&text, p);
    assert_eq!(
        count(r#"rmq_gateway_produced_messages_total{producer="p",status="SEND_OK"}"#),
        3.0
    );
    assert_eq!(
        count(
            r#"rmq_gateway_http_request_duration_seconds_count{method="POST",route="/mq/produce",status="200"}"#
        ),
        3.0
    );
    // The unknown producer: HTTP 200, envelope 400, counted as 400.
    assert_eq!(
        count(
            r#"rmq_gateway_http_request_duration_seconds_count{method="POST",route="/mq/produce",status="400"}"#
        ),
        1.0
    );
    assert_eq!(
        count(r#"rmq_gateway_consumer_delivered_messages_total{consumer="c",group="c"}"#),
        3.0
    );
    assert_eq!(
        count(r#"rmq_gateway_consumer_acked_messages_total{consumer="c",group="c"}"#),
        3.0
    );
    assert_eq!(
        count(r#"rmq_gateway_consumer_redelivered_messages_total{consumer="c",group="c"}"#),
        0.0
    );
    // Every message is committed: no backlog on either queue, offsets as the broker has them.
    let backlog: f64 = text
        .lines()
        .filter(|l| l.starts_with(r#"rmq_gateway_queue_backlog_messages{consumer="c""#))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(backlog, 0.0, "{text}");
    let max: f64 = text
        .lines()
        .filter(|l| {
            l.starts_with(r#"rmq_gateway_queue_max_offset{consumer="c",group="c",topic="orders""#)
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(max, 3.0, "{text}");
    assert_eq!(count("rmq_gateway_ready "), 1.0);
    assert!(count("process_resident_memory_bytes ") > 0.0);
    // The metrics route itself is counted by its template.
    let (_, again) = w.call(Method::GET, "/metrics", "").await;
    assert_eq!(
        metric(
            &again,
            r#"rmq_gateway_http_request_duration_seconds_count{method="GET",route="/metrics",status="200"}"#
        ),
        1.0
    );
    // The Aliyun route by its template, not the raw path.
    let (status, _) = w
        .call(Method::GET, "/topics/some-topic/messages?consumer=G", "")
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, again) = w.call(Method::GET, "/metrics", "").await;
    assert_eq!(
        metric(
            &again,
            r#"rmq_gateway_http_request_duration_seconds_count{method="GET",route="/topics/{topic}/messages",status="403"}"#
        ),
        1.0
    );
    assert!(!again.contains("some-topic"));
}

#[tokio::test]
async fn an_expired_batch_counts_as_redelivered() {
    let w = world();
    w.json(Method::POST, "/mq/produce", "producer=p&message=once")
        .await;
    let v = w
        .json(
            Method::GET,
            &format!("/mq/message?consumer=c&topic={TOPIC}"),
            "",
        )
        .await;
    assert_eq!(v["result"]["msgListSize"], 1, "{v}");
    w.clock.advance(300_001);
    let v = w
        .json(
            Method::GET,
            &format!("/mq/message?consumer=c&topic={TOPIC}"),
            "",
        )
        .await;
    assert_eq!(v["result"]["msgListSize"], 1, "{v}");
    let s = w.gw.snapshot();
    let c = s.consumers.iter().find(|c| c.name == "c").unwrap();
    assert_eq!(
        (
            c.counters.delivered,
            c.counters.redelivered,
            c.counters.acked
        ),
        (2, 1, 0)
    );
}

#[tokio::test]
async fn readyz_answers_503_with_the_reason_until_the_name_servers_answer() {
    let w = world();
    let (status, body) = w.call(Method::GET, "/readyz", "").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body, "not ready: the name servers were not asked yet\n");
    w.readiness.record(
        w.clock.now_ms(),
        Probe {
            answered: true,
            missing_routes: vec![TOPIC.into()],
            error: None,
        },
    );
    let (status, body) = w.call(Method::GET, "/readyz", "").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("no route for topic(s) orders"), "{body}");
    w.readiness.record(
        w.clock.now_ms(),
        Probe {
            answered: true,
            ..Probe::default()
        },
    );
    assert_eq!(
        w.call(Method::GET, "/readyz", "").await,
        (StatusCode::OK, "ready".into())
    );
    w.clock.advance(crate::observe::READY_STALE_MS + 1);
    let (status, body) = w.call(Method::GET, "/readyz", "").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("no name server answered for 15 s"), "{body}");
    // /healthz does not care.
    assert_eq!(
        w.call(Method::GET, "/healthz", "").await,
        (StatusCode::OK, "ok".into())
    );
}

#[tokio::test]
async fn the_status_page_and_its_json_show_the_configured_consumers() {
    let w = world();
    w.json(Method::POST, "/mq/produce", "producer=p&message=waiting")
        .await;
    w.gw.refresh_observed().await;
    let (status, html) = w.call(Method::GET, "/", "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("status.json") && !html.contains("http://") && !html.contains("https://")
    );
    let s = w.json(Method::GET, "/status.json", "").await;
    assert_eq!(s["producers"][0]["name"], "p");
    assert_eq!(s["producers"][0]["sent"], 1);
    let c = &s["consumers"][0];
    assert_eq!(c["name"], "c");
    // Not fetched yet: the backlog comes from the route and the broker's offsets.
    assert_eq!(c["backlog"], 1, "{s}");
    assert_eq!(c["queues"].as_array().unwrap().len(), 2, "{s}");
    assert_eq!(s["ready"]["ready"], false);
}

#[tokio::test]
async fn receipt_deliveries_acks_and_expiries_count_for_the_aliyun_style_consumer() {
    use crate::config::{ConsumerConfig, QueueModeConfig};
    use crate::service::ReceiveRequest;
    let w = world();
    let mut cfg: ConsumerConfig = toml::from_str(&format!(
        "name = \"GID_ops\"\ntopic = \"{TOPIC}\"\nqueue_mode = \"shared\"\n"
    ))
    .unwrap();
    cfg.queue_mode = QueueModeConfig::Shared;
    w.gw.ensure_consumer(cfg).unwrap();
    for i in 0..4 {
        w.json(
            Method::POST,
            "/mq/produce",
            &format!("producer=p&message=r{i}"),
        )
        .await;
    }
    let receive = |max| ReceiveRequest {
        consumer: "GID_ops".into(),
        topic: TOPIC.into(),
        client_id: None,
        client_ip: None,
        max,
        invisible_ms: 10_000,
        wait: std::time::Duration::ZERO,
    };
    let mut got = Vec::new();
    for _ in 0..4 {
        got.extend(w.gw.receive(receive(4)).await.unwrap());
    }
    assert_eq!(got.len(), 4);
    for r in &got[..3] {
        w.gw.ack_receipt("GID_ops", TOPIC, None, &r.receipt)
            .await
            .unwrap();
    }
    // The fourth expires and comes again.
    w.clock.advance(10_001);
    let again = w.gw.receive(receive(4)).await.unwrap();
    assert_eq!(again.len(), 1);
    let s = w.gw.snapshot();
    let c = s.consumers.iter().find(|c| c.name == "GID_ops").unwrap();
    assert_eq!(
        (
            c.counters.delivered,
            c.counters.acked,
            c.counters.redelivered
        ),
        (5, 3, 1)
    );
    let (_, text) = w.call(Method::GET, "/metrics", "").await;
    assert_eq!(
        metric(
            &text,
            r#"rmq_gateway_consumer_redelivered_messages_total{consumer="GID_ops",group="GID_ops"}"#
        ),
        1.0
    );
}
