//! Data-plane tokens of the `/mq/*` API on the in-memory broker: a producer or consumer with a
//! `token` answers 403 in the envelope to a missing or wrong one and changes nothing; the token
//! goes as `Authorization: Bearer` or a `token` parameter (query, form, JSON); CORS preflights
//! still pass.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use serde_json::Value;
use tower::ServiceExt;

use crate::clock::ManualClock;
use crate::config::Config;
use crate::service::Gateway;
use crate::testing::MemBroker;

const TOPIC: &str = "orders";

fn app() -> (Router, Arc<MemBroker>) {
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let broker = MemBroker::new(clock.clone(), 1);
    broker.create_topic(TOPIC);
    let config = Config::from_toml(&format!(
        r#"
namesrv = ["mem:0"]
admin_token = "admin-s3cret"
cors_allowed_origins = ["http://page.example"]
[[producer]]
name = "p"
topic = "{TOPIC}"
token = "p-s3cret"
[[producer]]
name = "open"
topic = "{TOPIC}"
[[consumer]]
name = "c"
topic = "{TOPIC}"
token = "c-s3cret"
"#
    ))
    .unwrap();
    let gw = Gateway::new(&config, broker.client("A"), clock);
    (
        super::app(super::mqproxy::router(gw), &config.cors_allowed_origins),
        broker,
    )
}

async fn call(app: &Router, req: Request<Body>) -> Value {
    let resp = app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "MQ-Proxy answers HTTP 200");
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    serde_json::from_slice(&body).unwrap()
}

fn form(path: &str, auth: Option<&str>, pairs: &[(&str, &str)]) -> Request<Body> {
    let mut r =
        Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(a) = auth {
        r = r.header(header::AUTHORIZATION, a);
    }
    r.body(Body::from(serde_urlencoded::to_string(pairs).unwrap()))
        .unwrap()
}

fn get(path: &str, auth: Option<&str>, pairs: &[(&str, &str)]) -> Request<Body> {
    let q = serde_urlencoded::to_string(pairs).unwrap();
    let mut r = Request::get(format!("{path}?{q}"));
    if let Some(a) = auth {
        r = r.header(header::AUTHORIZATION, a);
    }
    r.body(Body::empty()).unwrap()
}

#[tokio::test]
async fn producing_needs_the_producers_token_and_a_wrong_one_sends_nothing() {
    let (app, broker) = app();
    let msg = [("producer", "p"), ("message", "m")];
    for (auth, extra) in [
        (None, None),
        (Some("Bearer wrong"), None),
        (Some("Bearer p-s3cre"), None),
        (Some("Bearer c-s3cret"), None),
        (Some("Bearer admin-s3cret"), None),
        (Some("p-s3cret"), None),
        (None, Some("p-s3cret ")),
    ] {
        let mut pairs = msg.to_vec();
        if let Some(t) = extra {
            pairs.push(("token", t));
        }
        let v = call(&app, form("/mq/produce", auth, &pairs)).await;
        assert_eq!(v["status"], 403, "{auth:?} {extra:?}: {v}");
        assert!(v["message"].as_str().unwrap().contains("token"), "{v}");
        let v = call(
            &app,
            form(
                "/mq/produce/batch",
                auth,
                &[("producer", "p"), ("messages", "[\"a\"]")],
            ),
        )
        .await;
        assert_eq!(v["status"], 403, "{v}");
    }
    assert_eq!(broker.len(TOPIC, 0), 0, "nothing was sent");
    // The header, the form parameter, the query parameter and a JSON body all carry it.
    let v = call(&app, form("/mq/produce", Some("Bearer p-s3cret"), &msg)).await;
    assert_eq!(v["status"], 200, "{v}");
    let v = call(
        &app,
        form(
            "/mq/produce",
            None,
            &[("producer", "p"), ("message", "m"), ("token", "p-s3cret")],
        ),
    )
    .await;
    assert_eq!(v["status"], 200, "{v}");
    let req = Request::post("/mq/produce?token=p-s3cret")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from("producer=p&message=q"))
        .unwrap();
    assert_eq!(call(&app, req).await["status"], 200);
    let req = Request::post("/mq/produce")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            r#"{"producer":"p","message":"j","token":"p-s3cret"}"#,
        ))
        .unwrap();
    assert_eq!(call(&app, req).await["status"], 200);
    // A producer without a token stays open.
    let v = call(
        &app,
        form(
            "/mq/produce",
            None,
            &[("producer", "open"), ("message", "o")],
        ),
    )
    .await;
    assert_eq!(v["status"], 200, "{v}");
    assert_eq!(broker.len(TOPIC, 0), 5);
}

#[tokio::test]
async fn consuming_needs_the_consumers_token_and_a_wrong_one_leases_and_acks_nothing() {
    let (app, broker) = app();
    broker.put(TOPIC, 0, "x");
    let q = [("consumer", "c"), ("topic", TOPIC)];
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Bearer p-s3cret"),
        Some("Bearer admin-s3cret"),
    ] {
        let v = call(&app, get("/mq/message", auth, &q)).await;
        assert_eq!(v["status"], 403, "{auth:?}: {v}");
    }
    assert_eq!(broker.lock_owner("c", TOPIC, 0), None, "nothing leased");
    let v = call(&app, get("/mq/message", Some("Bearer c-s3cret"), &q)).await;
    assert_eq!(v["result"]["status"], "FOUND", "{v}");
    let rid = v["result"]["requestId"].as_str().unwrap().to_owned();
    let with_rid = [
        ("consumer", "c"),
        ("topic", TOPIC),
        ("requestId", rid.as_str()),
    ];
    for path in ["/mq/ack", "/mq/unlock"] {
        let v = call(&app, form(path, Some("Bearer wrong"), &with_rid)).await;
        assert_eq!(v["status"], 403, "{path}: {v}");
    }
    assert_eq!(broker.committed("c", TOPIC, 0), None, "nothing acked");
    let mut with_token = with_rid.to_vec();
    with_token.push(("token", "c-s3cret"));
    let v = call(&app, form("/mq/ack", None, &with_token)).await;
    assert_eq!(v["status"], 200, "{v}");
    assert_eq!(broker.committed("c", TOPIC, 0), Some(1));
    // The views (offsets, settings in effect): the consumer's token or the admin token.
    for path in ["/mq/clustering/queue/offset", "/mq/consumer/config"] {
        let v = call(&app, get(path, None, &[("consumer", "c")])).await;
        assert_eq!(v["status"], 403, "{path}: {v}");
        let v = call(&app, get(path, Some("Bearer wrong"), &[("consumer", "c")])).await;
        assert_eq!(v["status"], 403, "{path}: {v}");
        for t in ["Bearer c-s3cret", "Bearer admin-s3cret"] {
            let v = call(&app, get(path, Some(t), &[("consumer", "c")])).await;
            assert_eq!(v["status"], 200, "{path} {t}: {v}");
        }
    }
}

#[tokio::test]
async fn a_preflight_allows_the_authorization_header() {
    let (app, _) = app();
    let req = Request::builder()
        .method(Method::OPTIONS)
        .uri("/mq/produce")
        .header(header::ORIGIN, "http://page.example")
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .header(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            "authorization,content-type",
        )
        .body(Body::empty())
        .unwrap();
    let resp = app.oneshot(req).await.unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let allowed = resp
        .headers()
        .get(header::ACCESS_CONTROL_ALLOW_HEADERS)
        .map(|v| v.to_str().unwrap().to_ascii_lowercase())
        .unwrap_or_default();
    assert!(allowed.contains("authorization"), "{allowed}");
    assert_eq!(
        resp.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "http://page.example"
    );
}
