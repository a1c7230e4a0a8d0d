//! The `/mq/*` router on the in-memory broker, request by request (`oneshot`): every bad input
//! gets MQ-Proxy's HTTP 200 with a 400/403 body status and changes nothing.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::clock::ManualClock;
use crate::config::Config;
use crate::service::Gateway;
use crate::testing::MemBroker;

const TOPIC: &str = "orders";

struct App {
    router: Router,
    broker: Arc<MemBroker>,
}

fn app() -> App {
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let broker = MemBroker::new(clock.clone(), 2);
    broker.create_topic(TOPIC);
    let config = Config::from_toml(&format!(
        r#"
namesrv = ["mem:0"]
admin_token = "secret"
max_wait_seconds = 30
[[producer]]
name = "p"
topic = "{TOPIC}"
[[consumer]]
name = "c"
topic = "{TOPIC}"
[[consumer]]
name = "b"
topic = "{TOPIC}"
mode = "broadcast"
"#
    ))
    .unwrap();
    let gw = Gateway::new(&config, broker.client("A"), clock);
    App {
        router: super::mqproxy::router(gw),
        broker,
    }
}

impl App {
    async fn send(&self, req: Request<Body>) -> (Value, Vec<String>) {
        let resp = self.router.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "MQ-Proxy answers HTTP 200");
        let cookies = resp
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        (serde_json::from_slice(&body).unwrap(), cookies)
    }

    async fn form(&self, path: &str, form: &[(&str, &str)]) -> Value {
        let body = serde_urlencoded::to_string(form).unwrap();
        let req = Request::post(path)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .unwrap();
        self.send(req).await.0
    }

    async fn get(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let q = serde_urlencoded::to_string(query).unwrap();
        let req = Request::get(format!("{path}?{q}"))
            .body(Body::empty())
            .unwrap();
        self.send(req).await.0
    }

    async fn raw(&self, path: &str, ctype: &str, body: &str) -> Value {
        let req = Request::post(path)
            .header(header::CONTENT_TYPE, ctype)
            .body(Body::from(body.to_owned()))
            .unwrap();
        self.send(req).await.0
    }

    fn stored(&self) -> i64 {
        self.broker.len(TOPIC, 0) + self.broker.len(TOPIC, 1)
    }
}

fn status(v: &Value) -> i64 {
    v["status"]
        .as_i64()
        .unwrap_or_else(|| panic!("no status in {v}"))
}

#[tokio::test]
async fn produce_fetch_and_ack_over_http() {
    let a = app();
    let v = a
        .form(
            "/mq/produce",
            &[
                ("producer", "p"),
                ("message", "hi"),
                ("tags", "T"),
                ("keys", "k1 k2"),
            ],
        )
        .await;
    assert_eq!(status(&v), 200, "{v}");
    assert_eq!(v["result"]["sendStatus"], "SEND_OK");
    assert_eq!(v["result"]["messageQueue"]["topic"], TOPIC);
    // JSON bodies work too, and a JSON message is sent as its text
    let v = a
        .raw(
            "/mq/produce",
            "application/json",
            r#"{"producer":"p","message":{"id":1}}"#,
        )
        .await;
    assert_eq!(status(&v), 200, "{v}");
    let mut seen = Vec::new();
    for _ in 0..2 {
        let v = a
            .get("/mq/message", &[("consumer", "c"), ("topic", TOPIC)])
            .await;
        assert_eq!(v["result"]["status"], "FOUND", "{v}");
        for m in v["result"]["msgList"].as_array().unwrap() {
            seen.push(m["message"].as_str().unwrap().to_owned());
            if m["message"] == "hi" {
                assert_eq!(m["tags"], "T");
                assert_eq!(m["keys"], "k1 k2");
            }
        }
        let rid = v["result"]["requestId"].as_str().unwrap().to_owned();
        let ack = a
            .form(
                "/mq/ack",
                &[("consumer", "c"), ("topic", TOPIC), ("requestId", &rid)],
            )
            .await;
        assert_eq!(ack["status"], 200, "{ack}");
    }
    seen.sort();
    assert_eq!(seen, ["hi", r#"{"id":1}"#]);
    let v = a
        .get("/mq/message", &[("consumer", "c"), ("topic", TOPIC)])
        .await;
    assert_eq!(v["result"]["status"], "NO_NEW_MSG");
    let v = a
        .get("/mq/clustering/queue/offset", &[("consumer", "c")])
        .await;
    let backlog: i64 = v["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["backlog"].as_i64().unwrap())
        .sum();
    assert_eq!(backlog, 0, "{v}");
}

#[tokio::test]
async fn use_cookie_sets_and_clears_the_rid_cookie() {
    let a = app();
    a.broker.put(TOPIC, 0, "x");
    let req = Request::get(format!(
        "/mq/message?consumer=c&topic={TOPIC}&useCookie=true"
    ))
    .body(Body::empty())
    .unwrap();
    let (v, cookies) = a.send(req).await;
    let rid = v["result"]["requestId"].as_str().unwrap();
    assert_eq!(
        cookies,
        [format!("rid={rid}; Path=/; HttpOnly; SameSite=Lax")]
    );
    let req = Request::post("/mq/ack")
        .header(header::COOKIE, format!("rid={rid}"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!(
            "consumer=c&topic={TOPIC}&useCookie=true"
        )))
        .unwrap();
    let (v, cookies) = a.send(req).await;
    assert_eq!(v["status"], 200, "{v}");
    assert_eq!(cookies, ["rid=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"]);
    assert_eq!(a.broker.committed("c", TOPIC, 0), Some(1));
}

#[tokio::test]
async fn bad_produce_input_is_400_and_sends_nothing() {
    let a = app();
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("no producer", vec![("message", "x")]),
        (
            "unknown producer",
            vec![("producer", "nope"), ("message", "x")],
        ),
        ("no message", vec![("producer", "p")]),
        ("empty message", vec![("producer", "p"), ("message", "")]),
        (
            "delayLevel 0",
            vec![("producer", "p"), ("message", "x"), ("delayLevel", "0")],
        ),
        (
            "delayLevel 19",
            vec![("producer", "p"), ("message", "x"), ("delayLevel", "19")],
        ),
        (
            "delayLevel text",
            vec![("producer", "p"), ("message", "x"), ("delayLevel", "soon")],
        ),
        (
            "delay and timestamp",
            vec![
                ("producer", "p"),
                ("message", "x"),
                ("delayLevel", "2"),
                ("deliveryTimestamp", "5"),
            ],
        ),
        (
            "negative timestamp",
            vec![
                ("producer", "p"),
                ("message", "x"),
                ("deliveryTimestamp", "-5"),
            ],
        ),
    ];
    for (what, form) in cases {
        let v = a.form("/mq/produce", &form).await;
        assert_eq!(status(&v), 400, "{what}: {v}");
        assert!(
            v["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}: {v}"
        );
    }
    for (what, ctype, body) in [
        ("malformed JSON", "application/json", "{not json"),
        ("JSON array", "application/json", "[1,2]"),
        (
            "malformed form",
            "application/x-www-form-urlencoded",
            "producer=%ZZ",
        ),
    ] {
        let v = a.raw("/mq/produce", ctype, body).await;
        assert_eq!(status(&v), 400, "{what}: {v}");
    }
    let v = a
        .raw(
            "/mq/produce",
            "application/json",
            &json!({"producer": "p", "message": "x", "delayLevel": "x"}).to_string(),
        )
        .await;
    assert_eq!(status(&v), 400, "{v}");
    assert_eq!(a.stored(), 0, "nothing was sent");
}

#[tokio::test]
async fn bad_batches_are_400_and_bad_items_are_reported_per_message() {
    let a = app();
    for (what, form) in [
        ("not an array", vec![("producer", "p"), ("messages", "{}")]),
        ("no messages", vec![("producer", "p")]),
        ("empty array", vec![("producer", "p"), ("messages", "[]")]),
        (
            "unknown producer",
            vec![("producer", "nope"), ("messages", "[\"a\"]")],
        ),
    ] {
        let v = a.form("/mq/produce/batch", &form).await;
        assert_eq!(status(&v), 400, "{what}: {v}");
    }
    assert_eq!(a.stored(), 0);
    let v = a
        .form(
            "/mq/produce/batch",
            &[("producer", "p"), ("messages", r#"["a",""]"#)],
        )
        .await;
    assert_eq!(status(&v), 500, "{v}");
    assert_eq!(v["result"][0]["status"], 200);
    assert_eq!(
        v["result"][1]["status"], 400,
        "the same status as a single produce"
    );
    assert_eq!(a.stored(), 1);
}

#[tokio::test]
async fn bad_consume_input_is_400_and_moves_no_offset() {
    let a = app();
    a.broker.put(TOPIC, 0, "x");
    let forged = crate::request_id::RequestId {
        queue: crate::engine::QueueKey::new(false, crate::testing::BROKER_NAME, 0),
        offset: 0,
        next_offset: 1000,
        lock_time: 1,
        force: false,
    }
    .encode();
    let long = "x".repeat(65);
    type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>);
    let cases: Vec<Case> = vec![
        ("no consumer", "/mq/message", vec![("topic", TOPIC)]),
        ("no topic", "/mq/message", vec![("consumer", "c")]),
        (
            "unknown consumer",
            "/mq/message",
            vec![("consumer", "nope"), ("topic", TOPIC)],
        ),
        (
            "wrong topic",
            "/mq/message",
            vec![("consumer", "c"), ("topic", "other")],
        ),
        (
            "clientId on clustering",
            "/mq/message",
            vec![("consumer", "c"), ("topic", TOPIC), ("clientId", "x")],
        ),
        (
            "broadcast without clientId",
            "/mq/message",
            vec![("consumer", "b"), ("topic", TOPIC)],
        ),
        (
            "long clientId",
            "/mq/message",
            vec![("consumer", "b"), ("topic", TOPIC), ("clientId", &long)],
        ),
        (
            "waitSeconds 31",
            "/mq/message",
            vec![("consumer", "c"), ("topic", TOPIC), ("waitSeconds", "31")],
        ),
        (
            "waitSeconds -1",
            "/mq/message",
            vec![("consumer", "c"), ("topic", TOPIC), ("waitSeconds", "-1")],
        ),
        (
            "waitSeconds text",
            "/mq/message",
            vec![("consumer", "c"), ("topic", TOPIC), ("waitSeconds", "x")],
        ),
        (
            "garbled requestId",
            "/mq/message",
            vec![("consumer", "c"), ("topic", TOPIC), ("requestId", "!!!")],
        ),
        (
            "ack without requestId",
            "/mq/ack",
            vec![("consumer", "c"), ("topic", TOPIC)],
        ),
        (
            "unlock without requestId",
            "/mq/unlock",
            vec![("consumer", "c"), ("topic", TOPIC)],
        ),
        (
            "garbled ack",
            "/mq/ack",
            vec![("consumer", "c"), ("topic", TOPIC), ("requestId", "YWJj")],
        ),
        (
            "offsets without consumer",
            "/mq/clustering/queue/offset",
            vec![],
        ),
        (
            "broadcast offsets without consumer",
            "/mq/broadcast/queue/offset",
            vec![],
        ),
    ];
    for (what, path, q) in cases {
        let v = a.get(path, &q).await;
        assert_eq!(status(&v), 400, "{what}: {v}");
    }
    // a forged requestId that ends past the queue's end commits nothing
    let v = a
        .get(
            "/mq/ack",
            &[("consumer", "c"), ("topic", TOPIC), ("requestId", &forged)],
        )
        .await;
    assert_eq!(v["status"], 400, "{v}");
    assert_eq!(a.broker.committed("c", TOPIC, 0), None);
    assert_eq!(a.broker.commits(), 0);
}

#[tokio::test]
async fn the_admin_call_needs_the_token_and_checks_its_values() {
    let a = app();
    let req = |auth: Option<&str>, body: &str| {
        let mut r =
            Request::post("/mq/consumer/config").header(header::CONTENT_TYPE, "application/json");
        if let Some(t) = auth {
            r = r.header(header::AUTHORIZATION, t);
        }
        r.body(Body::from(body.to_owned())).unwrap()
    };
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("secret"),
        Some("Bearer secre"),
    ] {
        let (v, _) = a.send(req(auth, r#"{"consumer":"c","pause":1}"#)).await;
        assert_eq!(status(&v), 403, "{auth:?}: {v}");
    }
    for body in [
        r#"{"pause":1}"#,
        r#"{"consumer":"nope","pause":1}"#,
        r#"{"consumer":"c","pause":2}"#,
        r#"{"consumer":"c","maxPullSize":0}"#,
        r#"{"consumer":"c","maxPullSize":129}"#,
        r#"{"consumer":"c","consumeTimeoutInMillis":5}"#,
        r#"{"consumer":"c","limitRate":0}"#,
        r#"{"consumer":"c","resetOffsetTimestamp":-1}"#,
        r#"{"consumer":"b","pause":1}"#,
    ] {
        let (v, _) = a.send(req(Some("Bearer secret"), body)).await;
        assert_eq!(status(&v), 400, "{body}: {v}");
    }
    let (v, _) = a
        .send(req(Some("Bearer secret"), r#"{"consumer":"c","pause":1}"#))
        .await;
    assert_eq!(status(&v), 200, "{v}");
    a.broker.put(TOPIC, 0, "x");
    let v = a
        .get("/mq/message", &[("consumer", "c"), ("topic", TOPIC)])
        .await;
    assert_eq!(v["result"]["status"], "PAUSED");
}
