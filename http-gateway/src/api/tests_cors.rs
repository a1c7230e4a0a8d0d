//! Both APIs in `api::app` with CORS, request by request (`oneshot`): preflights of every
//! route, the headers on answers (errors included), origins not listed, CORS off, the envelope
//! for an oversized body, and the `useCookie` cookie's attributes.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::Router;
use serde_json::Value;
use tower::ServiceExt;

use crate::clock::ManualClock;
use crate::config::Config;
use crate::service::Gateway;
use crate::testing::MemBroker;

const TOPIC: &str = "orders";
const PAGE: &str = "http://127.0.0.1:8000";

fn app(origins: &[&str]) -> (Router, Arc<MemBroker>) {
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let broker = MemBroker::new(clock.clone(), 2);
    broker.create_topic(TOPIC);
    let list: Vec<String> = origins.iter().map(|o| format!("{o:?}")).collect();
    let config = Config::from_toml(&format!(
        r#"
namesrv = ["mem:0"]
admin_token = "secret"
cors_allowed_origins = [{}]
[[producer]]
name = "p"
topic = "{TOPIC}"
[[consumer]]
name = "c"
topic = "{TOPIC}"
"#,
        list.join(",")
    ))
    .unwrap();
    config.validate().unwrap();
    let gw = Gateway::new(&config, broker.client("A"), clock);
    // Both APIs, as the binary serves them; the Aliyun one's publisher reaches no broker.
    let aliyun_config: super::aliyun::AliyunConfig =
        toml::from_str(r#"credentials = [{ access_key_id = "ak", access_key_secret = "sk" }]"#)
            .unwrap();
    let client = rmq_client::MQClient::start(rmq_client::ClientConfig::new("127.0.0.1:1")).unwrap();
    let aliyun = super::aliyun::AliyunApi::new(client, gw.clone(), &aliyun_config);
    let routes = super::mqproxy::router(gw).merge(super::aliyun::router(aliyun));
    (super::app(routes, &config.cors_allowed_origins), broker)
}

async fn send(app: &Router, req: Request<Body>) -> (StatusCode, HeaderMap, Vec<u8>) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    (parts.status, parts.headers, body.to_vec())
}

fn h<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers.get(name).map(|v| v.to_str().unwrap()).unwrap_or("")
}

fn preflight(path: &str, origin: &str, method: &str) -> Request<Body> {
    Request::options(path)
        .header(header::ORIGIN, origin)
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, method)
        .header(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            "authorization,content-type",
        )
        .body(Body::empty())
        .unwrap()
}

/// Every route, with the method a page would use.
const ROUTES: &[(&str, &str)] = &[
    ("/mq/produce", "POST"),
    ("/mq/produce/batch", "POST"),
    ("/mq/message", "GET"),
    ("/mq/message", "POST"),
    ("/mq/ack", "GET"),
    ("/mq/unlock", "POST"),
    ("/mq/clustering/queue/offset", "GET"),
    ("/mq/broadcast/queue/offset", "GET"),
    ("/mq/consumer/config", "POST"),
    ("/health", "GET"),
    ("/topics/orders/messages", "POST"),
    ("/topics/orders/messages", "GET"),
    ("/topics/orders/messages", "DELETE"),
];

#[tokio::test]
async fn preflight_is_answered_for_every_route() {
    let (app, _) = app(&[PAGE, "https://app.example.com"]);
    for (path, method) in ROUTES {
        let (status, hd, _) = send(&app, preflight(path, PAGE, method)).await;
        assert_eq!(status, StatusCode::OK, "{method} {path}");
        assert_eq!(h(&hd, "access-control-allow-origin"), PAGE, "{path}");
        assert_eq!(h(&hd, "access-control-allow-credentials"), "true");
        let allowed = h(&hd, "access-control-allow-headers").to_ascii_lowercase();
        assert!(
            allowed.contains("authorization") && allowed.contains("content-type"),
            "{path}: {allowed}"
        );
        assert!(
            h(&hd, "access-control-allow-methods").contains(method),
            "{path}"
        );
        assert!(!h(&hd, "access-control-max-age").is_empty());
    }
}

#[tokio::test]
async fn answers_and_errors_carry_the_headers_and_expose_the_request_id() {
    let (app, broker) = app(&[PAGE]);
    let req = Request::post("/mq/produce")
        .header(header::ORIGIN, PAGE)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from("producer=p&message=hello"))
        .unwrap();
    let (status, hd, body) = send(&app, req).await;
    assert_eq!(status, StatusCode::OK);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["status"], 200, "{v}");
    assert_eq!(h(&hd, "access-control-allow-origin"), PAGE);
    assert_eq!(h(&hd, "access-control-expose-headers"), "x-mq-request-id");
    assert!(
        h(&hd, "vary").contains("origin"),
        "caches keep origins apart"
    );
    assert_eq!(
        (broker.len(TOPIC, 0) + broker.len(TOPIC, 1)),
        1,
        "the message went through"
    );

    // An error in the envelope, and a route the API does not have: both readable by the page.
    let req = Request::get("/mq/message?consumer=c")
        .header(header::ORIGIN, PAGE)
        .body(Body::empty())
        .unwrap();
    let (status, hd, body) = send(&app, req).await;
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((status, v["status"].as_u64()), (StatusCode::OK, Some(400)));
    assert_eq!(h(&hd, "access-control-allow-origin"), PAGE);
    let req = Request::delete("/mq/produce")
        .header(header::ORIGIN, PAGE)
        .body(Body::empty())
        .unwrap();
    let (status, hd, _) = send(&app, req).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(h(&hd, "access-control-allow-origin"), PAGE);
    let req = Request::get("/no/such/route")
        .header(header::ORIGIN, PAGE)
        .body(Body::empty())
        .unwrap();
    let (status, hd, _) = send(&app, req).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        h(&hd, "access-control-allow-origin"),
        PAGE,
        "a page can see the 404"
    );
}

#[tokio::test]
async fn origins_not_listed_get_no_cors_headers() {
    let (app, _) = app(&[PAGE]);
    for origin in ["http://127.0.0.1:8001", "https://evil.example", "null"] {
        let (_, hd, _) = send(&app, preflight("/mq/produce", origin, "POST")).await;
        assert_eq!(h(&hd, "access-control-allow-origin"), "", "{origin}");
        let req = Request::get("/health")
            .header(header::ORIGIN, origin)
            .body(Body::empty())
            .unwrap();
        let (status, hd, _) = send(&app, req).await;
        assert_eq!(status, StatusCode::OK, "answered; the browser hides it");
        assert_eq!(h(&hd, "access-control-allow-origin"), "", "{origin}");
    }
}

#[tokio::test]
async fn a_wildcard_allows_any_origin_without_credentials() {
    let (app, _) = app(&["*"]);
    let (status, hd, _) = send(&app, preflight("/mq/message", "https://x.example", "GET")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(h(&hd, "access-control-allow-origin"), "*");
    assert_eq!(
        h(&hd, "access-control-allow-credentials"),
        "",
        "`*` with credentials is refused by browsers"
    );
}

#[tokio::test]
async fn without_configured_origins_there_is_no_cors() {
    let (app, _) = app(&[]);
    let (status, hd, _) = send(&app, preflight("/mq/produce", PAGE, "POST")).await;
    assert_eq!(
        status,
        StatusCode::METHOD_NOT_ALLOWED,
        "no preflight answer"
    );
    assert_eq!(h(&hd, "access-control-allow-origin"), "");
    let req = Request::get("/health")
        .header(header::ORIGIN, PAGE)
        .body(Body::empty())
        .unwrap();
    let (_, hd, _) = send(&app, req).await;
    assert_eq!(h(&hd, "access-control-allow-origin"), "");
}

#[tokio::test]
async fn an_oversized_body_gets_the_envelope_not_plain_text() {
    let (app, broker) = app(&[PAGE]);
    let big = "m".repeat(super::BODY_LIMIT + 1);
    for (ctype, body) in [
        (
            "application/x-www-form-urlencoded",
            format!("producer=p&message={big}"),
        ),
        (
            "application/json",
            format!(r#"{{"producer":"p","message":"{big}"}}"#),
        ),
    ] {
        let req = Request::post("/mq/produce")
            .header(header::ORIGIN, PAGE)
            .header(header::CONTENT_TYPE, ctype)
            .body(Body::from(body))
            .unwrap();
        let (status, hd, body) = send(&app, req).await;
        assert_eq!(status, StatusCode::OK, "{ctype}: MQ-Proxy answers HTTP 200");
        assert!(h(&hd, "content-type").starts_with("application/json"));
        assert_eq!(h(&hd, "access-control-allow-origin"), PAGE);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["status"], 400, "{v}");
        let msg = v["message"].as_str().unwrap();
        assert!(
            msg.contains("too large") && msg.contains("16777216"),
            "{msg}"
        );
    }
    // The Aliyun API answers its own XML error document, with the CORS headers.
    let target = format!("/topics/{TOPIC}/messages");
    let mut signed = HeaderMap::new();
    signed.insert("content-type", "text/xml;charset=UTF-8".parse().unwrap());
    signed.insert(
        "date",
        httpdate::fmt_http_date(std::time::SystemTime::now())
            .parse()
            .unwrap(),
    );
    let sig = super::aliyun::auth::sign(
        &super::aliyun::auth::Secret::new("sk"),
        &super::aliyun::auth::string_to_sign(&axum::http::Method::POST, &target, &signed),
    );
    let mut req = Request::post(&target).header(header::ORIGIN, PAGE);
    for (k, v) in &signed {
        req = req.header(k, v);
    }
    let req = req
        .header(header::AUTHORIZATION, format!("MQ ak:{sig}"))
        .body(Body::from("m".repeat(64 * 1024 * 1024)))
        .unwrap();
    let (status, hd, body) = send(&app, req).await;
    let text = String::from_utf8_lossy(&body);
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(h(&hd, "content-type").starts_with("text/xml"), "{text}");
    assert_eq!(h(&hd, "access-control-allow-origin"), PAGE);
    assert!(text.contains("<Code>InvalidArgument</Code>"), "{text}");
    assert!(text.contains("larger than"), "{text}");
    // A stream with no length is cut at the limit too.
    let chunks = futures::stream::iter(
        (0..17).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'm'; 1 << 20]))),
    );
    let req = Request::post("/mq/produce/batch")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from_stream(chunks))
        .unwrap();
    let (status, _, body) = send(&app, req).await;
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (status, v["status"].as_u64()),
        (StatusCode::OK, Some(400)),
        "{v}"
    );
    assert_eq!(
        (broker.len(TOPIC, 0) + broker.len(TOPIC, 1)),
        0,
        "nothing was sent"
    );
}

#[tokio::test]
async fn the_rid_cookie_is_cross_site_only_over_https() {
    let (app, broker) = app(&[PAGE]);
    broker.put(TOPIC, 0, "x");
    broker.put(TOPIC, 1, "y");
    let get = |proxy: Option<(&str, &str)>| {
        let mut r = Request::get(format!(
            "/mq/message?consumer=c&topic={TOPIC}&useCookie=true"
        ))
        .header(header::ORIGIN, PAGE);
        if let Some((k, v)) = proxy {
            r = r.header(k, v);
        }
        r.body(Body::empty()).unwrap()
    };
    let (_, hd, _) = send(&app, get(None)).await;
    let c = h(&hd, "set-cookie");
    assert!(c.starts_with("rid=") && c.contains("; SameSite=Lax"), "{c}");
    assert!(
        !c.contains("Secure"),
        "a browser drops Secure cookies over HTTP"
    );
    let (_, hd, _) = send(&app, get(Some(("x-forwarded-proto", "https")))).await;
    let c = h(&hd, "set-cookie");
    assert!(c.contains("; SameSite=None; Secure"), "{c}");
    let (_, hd, _) = send(&app, get(Some(("forwarded", "for=1.2.3.4;proto=https")))).await;
    assert!(h(&hd, "set-cookie").contains("; SameSite=None; Secure"));
}
