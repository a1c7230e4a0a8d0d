//! The Aliyun API's router in-process, without a broker: what is decided before anything is
//! sent (authentication, request ids, error documents, parameter checks). Publishing against
//! the real broker is in aliyun_http.rs.

use std::time::{Duration, SystemTime};

use rmq_client::{ClientConfig, MQClient};
use rmq_gateway::api::aliyun::auth::{sign, string_to_sign, Secret};
use rmq_gateway::api::aliyun::{router, AliyunApi, AliyunConfig};
use rmq_gateway::broker::ClientBroker;
use rmq_gateway::clock::SystemClock;
use rmq_gateway::config::Config;
use rmq_gateway::service::Gateway;

const CAPTURED: &str = include_str!("fixtures/aliyun/sdk-requests.jsonl");

/// Serves the Aliyun router on a free port; the client points at a closed port, so nothing in
/// these tests may reach a broker.
async fn serve(credentials: &str) -> String {
    let config: AliyunConfig = toml::from_str(credentials).unwrap();
    let client = MQClient::start(ClientConfig::new("127.0.0.1:1")).unwrap();
    let gw_config = Config::from_toml("namesrv = [\"127.0.0.1:1\"]").unwrap();
    let broker = ClientBroker::start(&gw_config, "aliyun-router-test".into()).unwrap();
    let gw = Gateway::new(&gw_config, broker, std::sync::Arc::new(SystemClock));
    let app = router(AliyunApi::new(client, gw, &config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

struct Reply {
    status: u16,
    request_id: String,
    body: String,
}

impl Reply {
    fn code(&self) -> &str {
        let s = self.body.find("<Code>").map(|i| i + 6).unwrap_or(0);
        let e = self.body.find("</Code>").unwrap_or(0);
        &self.body[s..e]
    }
}

/// Replays one captured SDK request (headers as sent) with `date`, re-signed with `secret`
/// unless `keep_signature`.
async fn replay(
    base: &str,
    line: usize,
    date: SystemTime,
    secret: &str,
    keep_signature: bool,
) -> Reply {
    let v: serde_json::Value = serde_json::from_str(CAPTURED.lines().nth(line).unwrap()).unwrap();
    let method: axum::http::Method = v["method"].as_str().unwrap().parse().unwrap();
    let target = v["target"].as_str().unwrap();
    let mut headers = axum::http::HeaderMap::new();
    for h in v["headers"].as_array().unwrap() {
        let name = h[0].as_str().unwrap().to_ascii_lowercase();
        if ["host", "content-length", "connection"].contains(&name.as_str()) {
            continue;
        }
        headers.insert(
            axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            h[1].as_str().unwrap().parse().unwrap(),
        );
    }
    if !keep_signature {
        headers.insert("date", httpdate::fmt_http_date(date).parse().unwrap());
        let sig = sign(
            &Secret::new(secret),
            &string_to_sign(&method, target, &headers),
        );
        headers.insert("authorization", format!("MQ ak:{sig}").parse().unwrap());
    }
    let mut req = reqwest::Client::new()
        .request(method.as_str().parse().unwrap(), format!("{base}{target}"))
        .body(v["body"].as_str().unwrap().to_owned());
    for (k, v) in &headers {
        req = req.header(k.as_str(), v.to_str().unwrap());
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.headers()["content-type"], "text/xml;charset=utf-8");
    Reply {
        status: r.status().as_u16(),
        request_id: r.headers()["x-mq-request-id"].to_str().unwrap().to_owned(),
        body: r.text().await.unwrap(),
    }
}

const CREDS: &str = "credentials = [{ access_key_id = \"ak\", access_key_secret = \"sk\" }]";

#[tokio::test]
async fn captured_requests_as_sent_are_too_old_but_correctly_signed() {
    let base = serve(CREDS).await;
    // The captures are signed with sk and dated weeks before this test runs (or in the future
    // when the clock is wrong): their signatures verify, and the Date is what is refused.
    let r = replay(&base, 0, SystemTime::now(), "", true).await;
    assert_eq!(
        (r.status, r.code()),
        (403, "RequestTimeTooSkewed"),
        "{}",
        r.body
    );
    assert!(r.body.contains("the allowed 900s"), "{}", r.body);
    assert!(r
        .body
        .contains(&format!("<RequestId>{}</RequestId>", r.request_id)));
}

#[tokio::test]
async fn wrong_secret_skew_and_no_credentials() {
    let base = serve(CREDS).await;
    let now = SystemTime::now();
    let r = replay(&base, 8, now, "not-sk", false).await;
    assert_eq!((r.status, r.code()), (403, "SignatureDoesNotMatch"));
    let r = replay(&base, 8, now - Duration::from_secs(16 * 60), "sk", false).await;
    assert_eq!((r.status, r.code()), (403, "RequestTimeTooSkewed"));
    let open = serve("").await;
    for line in [0, 1, 2] {
        let r = replay(&open, line, now, "sk", false).await;
        assert_eq!((r.status, r.code()), (403, "AccessDenied"), "{}", r.body);
    }
}

#[tokio::test]
async fn consume_without_a_broker_and_acks_of_invented_handles() {
    let base = serve(CREDS).await;
    let now = SystemTime::now();
    // Python's consume (line 2) and Node's (line 10): the broker cannot be asked for the route.
    for line in [1, 9] {
        let r = replay(&base, line, now, "sk", false).await;
        assert_eq!(
            (r.status, r.code()),
            (503, "ServiceUnavailable"),
            "{}",
            r.body
        );
    }
    // Python's and Node's acks (lines 3, 11) carry handles this gateway never issued: each is
    // listed as ReceiptHandleError, with no broker involved.
    for line in [2, 10] {
        let r = replay(&base, line, now, "sk", false).await;
        assert_eq!(r.status, 404, "{}", r.body);
        assert!(r.body.starts_with("<?xml"), "{}", r.body);
        assert!(r.body.contains("<Errors"), "{}", r.body);
        assert!(
            r.body.contains("<ErrorCode>ReceiptHandleError</ErrorCode>"),
            "{}",
            r.body
        );
        assert!(!r.body.contains("MessageNotExist"), "{}", r.body);
    }
    // A transactional commit (line 7) is refused as such.
    let r = replay(&base, 6, now, "sk", false).await;
    assert_eq!((r.status, r.code()), (400, "InvalidArgument"), "{}", r.body);
    // Distinct request ids.
    let a = replay(&base, 1, now, "sk", false).await.request_id;
    let b = replay(&base, 1, now, "sk", false).await.request_id;
    assert_ne!(a, b);
}

#[tokio::test]
async fn publish_without_a_reachable_broker_is_service_unavailable() {
    let base = serve(CREDS).await;
    let r = replay(&base, 0, SystemTime::now(), "sk", false).await;
    assert_eq!(
        (r.status, r.code()),
        (503, "ServiceUnavailable"),
        "{}",
        r.body
    );
}
