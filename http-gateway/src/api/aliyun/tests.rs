//! ConsumeMessage and AckMessage through the router (`oneshot`) on the in-memory broker with a
//! manual clock: handles, invisibility, redelivery, dead letters, ordered blocking, tag filters
//! and partial ack failures, without sleeping.

use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request};
use axum::Router;
use rmq_client::{ClientConfig, MQClient, Message};
use tower::ServiceExt;

use super::auth::{sign, string_to_sign, Secret};
use super::handle::ReceiptHandle;
use super::{router, AliyunApi, AliyunConfig};
use crate::clock::ManualClock;
use crate::config::Config;
use crate::service::Gateway;
use crate::testing::MemBroker;

const TOPIC: &str = "T";
const GROUP: &str = "GID_A";
const INVISIBLE_MS: i64 = 10_000;

struct World {
    app: Router,
    metrics: Arc<crate::metrics::Metrics>,
    clock: Arc<ManualClock>,
    broker: Arc<MemBroker>,
}

fn world() -> World {
    world_with("")
}

/// `extra`: more keys of the `[aliyun]` table.
fn world_with(extra: &str) -> World {
    let (clock, broker) = mem_broker();
    instance(&clock, &broker, "A", extra, "")
}

fn mem_broker() -> (Arc<ManualClock>, Arc<MemBroker>) {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let clock = Arc::new(ManualClock::new(now));
    let broker = MemBroker::new(clock.clone(), 2);
    broker.create_topic(TOPIC);
    (clock, broker)
}

/// One gateway instance on `broker`, named `client_id` there, or, advertised at `advertise`,
/// by a gateway's client id naming a fresh run at that address.
fn instance(
    clock: &Arc<ManualClock>,
    broker: &Arc<MemBroker>,
    client_id: &str,
    extra: &str,
    advertise: &str,
) -> World {
    let config: AliyunConfig = toml::from_str(&format!(
        r#"
credentials = [{{ access_key_id = "ak", access_key_secret = "sk" }}]
invisible_time_ms = {INVISIBLE_MS}
max_reconsume_times = 2
{extra}
"#
    ))
    .unwrap();
    let gw_config = Config::from_toml("namesrv = [\"mem:0\"]").unwrap();
    let client_id = if advertise.is_empty() {
        client_id.to_owned()
    } else {
        format!(
            "127.0.0.1@{}",
            super::forward::instance_name(&super::handle::Owner::fresh(advertise))
        )
    };
    let gw = Gateway::new(&gw_config, broker.client(&client_id), clock.clone());
    // Publishing is not exercised here; its client points at a closed port.
    let client = MQClient::start(ClientConfig::new("127.0.0.1:1")).unwrap();
    World {
        metrics: gw.metrics().clone(),
        app: router(AliyunApi::new(client, gw, &config)),
        clock: clock.clone(),
        broker: broker.clone(),
    }
}

struct Reply {
    status: u16,
    body: String,
}

impl Reply {
    fn all(&self, element: &str) -> Vec<String> {
        let (open, close) = (format!("<{element}>"), format!("</{element}>"));
        self.body
            .split(&open)
            .skip(1)
            .map(|p| p.split(&close).next().unwrap().to_owned())
            .collect()
    }
    fn one(&self, element: &str) -> String {
        self.all(element).into_iter().next().unwrap_or_default()
    }
}

impl World {
    async fn call(&self, method: Method, target: &str, body: &str) -> Reply {
        let mut headers = HeaderMap::new();
        headers.insert("x-mq-version", "2015-06-06".parse().unwrap());
        headers.insert(
            "date",
            httpdate::fmt_http_date(SystemTime::now()).parse().unwrap(),
        );
        if !body.is_empty() {
            headers.insert("content-type", "text/xml;charset=UTF-8".parse().unwrap());
        }
        let sig = sign(
            &Secret::new("sk"),
            &string_to_sign(&method, target, &headers),
        );
        let mut req = Request::builder().method(method).uri(target);
        for (k, v) in &headers {
            req = req.header(k, v);
        }
        let req = req
            .header("authorization", format!("MQ ak:{sig}"))
            .body(Body::from(body.to_owned()))
            .unwrap();
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status().as_u16();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        Reply {
            status,
            body: String::from_utf8(bytes.to_vec()).unwrap(),
        }
    }

    async fn consume(&self, extra: &str) -> Reply {
        self.call(
            Method::GET,
            &format!("/topics/{TOPIC}/messages?consumer={GROUP}&numOfMessages=16{extra}"),
            "",
        )
        .await
    }

    async fn consume_n(&self, n: u32) -> Reply {
        self.call(
            Method::GET,
            &format!("/topics/{TOPIC}/messages?consumer={GROUP}&numOfMessages={n}"),
            "",
        )
        .await
    }

    async fn ack(&self, handles: &[String]) -> Reply {
        let mut body = String::from(
            r#"<?xml version="1.0" encoding="UTF-8"?><ReceiptHandles xmlns="http://mq.aliyuncs.com/doc/v1/">"#,
        );
        for h in handles {
            body.push_str(&format!("<ReceiptHandle>{h}</ReceiptHandle>"));
        }
        body.push_str("</ReceiptHandles>");
        self.call(
            Method::DELETE,
            &format!("/topics/{TOPIC}/messages?consumer={GROUP}"),
            &body,
        )
        .await
    }

    fn put(&self, queue: i32, body: &str, tag: &str) {
        self.broker.put_message(
            queue,
            Message::new(TOPIC, body.to_owned())
                .with_tags(tag)
                .with_keys(["k1"]),
        );
    }
}

#[tokio::test]
async fn consume_hands_out_each_message_once_with_its_fields_and_ack_commits() {
    let w = world();
    w.put(0, "m0", "TagA");
    w.put(1, "m1", "TagB");
    w.put(1, "m2", "TagA");
    let now = crate::clock::Clock::now_ms(&*w.clock);
    let r = w.consume("").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let mut bodies = r.all("MessageBody");
    bodies.sort();
    assert_eq!(bodies, ["m0", "m1", "m2"]);
    assert_eq!(r.all("ConsumedTimes"), ["1", "1", "1"]);
    for t in r.all("NextConsumeTime") {
        assert_eq!(t.parse::<i64>().unwrap(), now + INVISIBLE_MS);
    }
    for t in r.all("FirstConsumeTime") {
        assert_eq!(t.parse::<i64>().unwrap(), now);
    }
    assert!(
        r.body.contains("<MessageTag>TagB</MessageTag>"),
        "{}",
        r.body
    );
    assert!(r.one("Properties").contains("KEYS:k1|"), "{}", r.body);
    let handles = r.all("ReceiptHandle");
    // Invisible now: nothing more.
    let again = w.consume("").await;
    assert_eq!(again.status, 404, "{}", again.body);
    assert_eq!(again.one("Code"), "MessageNotExist");
    let a = w.ack(&handles).await;
    assert_eq!((a.status, a.body.as_str()), (204, ""));
    assert_eq!(w.broker.committed(GROUP, TOPIC, 0), Some(1));
    assert_eq!(w.broker.committed(GROUP, TOPIC, 1), Some(2));
    // Acked, they never come back.
    w.clock.advance(INVISIBLE_MS + 1);
    assert_eq!(w.consume("").await.status, 404);
}

#[tokio::test]
async fn an_unacked_message_comes_back_with_a_new_handle_while_its_queue_flows() {
    let w = world();
    w.put(0, "first", "T");
    let r1 = w.consume("").await;
    assert_eq!(r1.all("MessageBody"), ["first"]);
    let old = r1.one("ReceiptHandle");
    w.put(0, "second", "T");
    let r2 = w.consume("").await;
    assert_eq!(
        r2.all("MessageBody"),
        ["second"],
        "shared: the queue keeps flowing"
    );
    assert_eq!(w.ack(&[r2.one("ReceiptHandle")]).await.status, 204);
    w.clock.advance(INVISIBLE_MS);
    let r3 = w.consume("").await;
    assert_eq!(r3.all("MessageBody"), ["first"]);
    assert_eq!(r3.one("ConsumedTimes"), "2");
    assert_eq!(
        r3.one("FirstConsumeTime"),
        r1.one("FirstConsumeTime"),
        "{}",
        r3.body
    );
    let new = r3.one("ReceiptHandle");
    assert_ne!(old, new);
    // The old handle expired: MessageNotExist, and the new one still acks.
    let a = w.ack(std::slice::from_ref(&old)).await;
    assert_eq!(a.status, 404, "{}", a.body);
    assert_eq!(a.all("ErrorCode"), ["MessageNotExist"]);
    assert_eq!(a.all("ReceiptHandle"), [old]);
    assert_eq!(w.ack(&[new]).await.status, 204);
    assert_eq!(w.broker.committed(GROUP, TOPIC, 0), Some(2));
}

#[tokio::test]
async fn after_max_reconsume_times_a_message_goes_to_the_dead_letter_queue() {
    let w = world();
    w.put(0, "poison", "T");
    for n in 1..=2 {
        let r = w.consume("").await;
        assert_eq!(r.one("ConsumedTimes"), n.to_string(), "{}", r.body);
        w.clock.advance(INVISIBLE_MS);
    }
    let r = w.consume("").await;
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(w.broker.len(&format!("%DLQ%{GROUP}"), 0), 1);
    assert_eq!(w.broker.committed(GROUP, TOPIC, 0), Some(1));
    w.clock.advance(INVISIBLE_MS);
    assert_eq!(w.consume("").await.status, 404, "it stops coming");
}

#[tokio::test]
async fn ordered_consumption_blocks_a_queue_until_its_delivery_is_acked() {
    let w = world();
    w.put(0, "o1", "T");
    let r1 = w.consume("&trans=order").await;
    assert_eq!(r1.all("MessageBody"), ["o1"]);
    w.put(0, "o2", "T");
    let blocked = w.consume("&trans=order").await;
    assert_eq!(blocked.status, 404, "{}", blocked.body);
    // Not acked in time: it comes back first, then o2 after its ack.
    w.clock.advance(INVISIBLE_MS);
    let r2 = w.consume("&trans=order").await;
    assert_eq!(r2.all("MessageBody")[0], "o1", "{}", r2.body);
    assert_eq!(r2.all("ConsumedTimes")[0], "2");
    let handles = r2.all("ReceiptHandle");
    assert_eq!(w.ack(&handles).await.status, 204);
    if r2.all("MessageBody").len() == 1 {
        let r3 = w.consume("&trans=order").await;
        assert_eq!(r3.all("MessageBody"), ["o2"]);
        assert_eq!(w.ack(&r3.all("ReceiptHandle")).await.status, 204);
    }
    assert_eq!(w.broker.committed(GROUP, TOPIC, 0), Some(2));
    // One group reads a topic one way.
    let mixed = w.consume("").await;
    assert_eq!(
        (mixed.status, mixed.one("Code").as_str()),
        (400, "InvalidArgument")
    );
}

#[tokio::test]
async fn a_tag_filter_acks_what_it_skips() {
    let w = world();
    w.put(0, "a", "TagA");
    w.put(0, "b", "TagB");
    w.put(0, "c", "TagC");
    let r = w.consume("&tag=TagB%7C%7CTagC").await;
    assert_eq!(r.all("MessageBody"), ["b", "c"], "{}", r.body);
    assert_eq!(w.ack(&r.all("ReceiptHandle")).await.status, 204);
    assert_eq!(w.broker.committed(GROUP, TOPIC, 0), Some(3));
    w.clock.advance(INVISIBLE_MS);
    assert_eq!(
        w.consume("").await.status,
        404,
        "TagA was consumed by the filter"
    );
}

#[tokio::test]
async fn a_partly_failed_ack_lists_each_bad_handle_and_acks_the_good_ones() {
    let w = world();
    w.put(0, "x", "T");
    w.put(1, "y", "T");
    let r = w.consume("").await;
    let good = r.all("ReceiptHandle");
    assert_eq!(good.len(), 2);
    let foreign = ReceiptHandle::decode(&good[0], TOPIC, GROUP)
        .unwrap()
        .encode(TOPIC, "GID_OTHER");
    let unknown = ReceiptHandle {
        delivery_id: 1,
        ..ReceiptHandle::decode(&good[1], TOPIC, GROUP).unwrap()
    }
    .encode(TOPIC, GROUP);
    let handles = vec![
        good[0].clone(),
        "not-a-handle".to_owned(),
        foreign.clone(),
        unknown.clone(),
        good[1].clone(),
    ];
    let a = w.ack(&handles).await;
    assert_eq!(a.status, 404, "{}", a.body);
    assert_eq!(
        a.all("ErrorCode"),
        [
            "ReceiptHandleError",
            "ReceiptHandleError",
            "ReceiptHandleError"
        ]
    );
    assert_eq!(
        a.all("ReceiptHandle"),
        ["not-a-handle".to_owned(), foreign, unknown]
    );
    // The good ones were acked: the offsets moved and a second ack finds nothing.
    assert_eq!(w.broker.committed(GROUP, TOPIC, 0), Some(1));
    assert_eq!(w.broker.committed(GROUP, TOPIC, 1), Some(1));
    assert_eq!(w.ack(&good).await.status, 404);
}

#[tokio::test]
async fn a_topic_the_broker_lacks_is_topic_not_exist_and_17_handles_are_refused() {
    let w = world();
    let r = w
        .call(
            Method::GET,
            "/topics/Nope/messages?consumer=GID_A&numOfMessages=1",
            "",
        )
        .await;
    assert_eq!((r.status, r.one("Code").as_str()), (404, "TopicNotExist"));
    w.put(0, "kept", "T");
    let many: Vec<String> = (0..17).map(|i| format!("h{i}")).collect();
    let a = w.ack(&many).await;
    assert_eq!(a.status, 400, "{}", a.body);
    // Nothing was consumed or acked by the refused request.
    assert_eq!(w.consume("").await.all("MessageBody"), ["kept"]);
}

#[tokio::test]
async fn an_oversized_body_is_answered_with_the_aliyun_error_document() {
    let w = world();
    let body = "x".repeat(super::MAX_REQUEST_BODY + 1);
    let r = w
        .call(Method::POST, &format!("/topics/{TOPIC}/messages"), &body)
        .await;
    assert_eq!(r.status, 400, "{}", &r.body[..r.body.len().min(300)]);
    assert!(r.body.starts_with("<?xml"), "{}", r.body);
    assert_eq!(r.one("Code"), "InvalidArgument");
}

#[tokio::test]
async fn a_full_unacked_window_holds_new_messages_of_its_queue_back() {
    let w = world_with("max_unacked_per_queue = 2");
    for i in 0..4 {
        w.put(0, &format!("w{i}"), "T");
    }
    let r1 = w.consume_n(2).await;
    assert_eq!(r1.all("MessageBody"), ["w0", "w1"]);
    let full = w.consume_n(2).await;
    assert_eq!(full.status, 404, "the window is full: {}", full.body);
    // Acking the first moves the committed offset and frees one place.
    assert_eq!(w.ack(&r1.all("ReceiptHandle")[..1]).await.status, 204);
    let r2 = w.consume_n(2).await;
    assert_eq!(r2.all("MessageBody")[0], "w2", "{}", r2.body);
    // Due again, a message of a full window still comes back.
    w.clock.advance(INVISIBLE_MS);
    let r3 = w.consume_n(2).await;
    assert_eq!(r3.all("MessageBody")[0], "w1", "{}", r3.body);
    assert_eq!(r3.all("ConsumedTimes")[0], "2");
}

/// Instance A serves HTTP on a real port (the address its handles name); B is called in process.
async fn served_pair() -> (World, World, tokio::task::JoinHandle<()>) {
    let (clock, broker) = mem_broker();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let a = instance(&clock, &broker, "A", "", &addr);
    let b = instance(&clock, &broker, "B", "", "127.0.0.1:9");
    let app = a.app.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (a, b, server)
}

#[tokio::test]
async fn an_ack_through_another_instance_reaches_the_one_that_delivered() {
    let (a, b, server) = served_pair().await;
    a.put(0, "m0", "T");
    a.put(1, "m1", "T");
    let r = a.consume("").await;
    let handles = r.all("ReceiptHandle");
    assert_eq!(handles.len(), 2, "{}", r.body);
    // B never served the group; it passes the ack on to A, with a bad handle beside.
    let mut with_bad = handles.clone();
    with_bad.insert(1, "bogus".into());
    let ack = b.ack(&with_bad).await;
    assert_eq!(ack.status, 404, "{}", ack.body);
    assert_eq!(ack.all("ReceiptHandle"), ["bogus"]);
    assert_eq!(ack.all("ErrorCode"), ["ReceiptHandleError"]);
    assert_eq!(a.broker.committed(GROUP, TOPIC, 0), Some(1));
    assert_eq!(a.broker.committed(GROUP, TOPIC, 1), Some(1));
    // Acked at A: a second ack through B finds nothing, and nothing comes again.
    let again = b.ack(&handles).await;
    assert_eq!(
        again.all("ErrorCode"),
        ["ReceiptHandleError", "ReceiptHandleError"]
    );
    a.clock.advance(INVISIBLE_MS + 1);
    assert_eq!(a.consume("").await.status, 404);

    // A dies with a message out: through B its handle is expired (MessageNotExist), as the
    // message comes again once A's hold lapses.
    a.put(0, "m2", "T");
    // Past the empty-queue backoff of the consume above.
    a.clock.advance(crate::engine::EMPTY_BACKOFF_MS + 1);
    let r = a.consume("").await;
    assert_eq!(r.all("MessageBody"), ["m2"]);
    server.abort();
    let _ = server.await;
    let dead = b.ack(&r.all("ReceiptHandle")).await;
    assert_eq!(dead.status, 404, "{}", dead.body);
    assert_eq!(dead.all("ErrorCode"), ["MessageNotExist"], "{}", dead.body);
    assert!(
        dead.one("ErrorMessage").contains("does not answer"),
        "{}",
        dead.body
    );
    assert_eq!(
        a.broker.committed(GROUP, TOPIC, 0),
        Some(1),
        "nothing acked"
    );
}

/// A handle of `owner` for message 0 of queue 0, valid for a while.
fn handle_of(w: &World, owner: &super::handle::Owner) -> String {
    ReceiptHandle {
        retry: false,
        broker_name: crate::testing::BROKER_NAME.into(),
        queue_id: 0,
        offset: 0,
        delivery_id: 1,
        deadline_ms: crate::clock::Clock::now_ms(&*w.clock) + INVISIBLE_MS,
        owner: Some(owner.clone()),
    }
    .encode(TOPIC, GROUP)
}

/// Makes `owner` a member of the group, as its heartbeats would.
fn list_member(broker: &MemBroker, owner: &super::handle::Owner) {
    let id = format!("127.0.0.1@{}", super::forward::instance_name(owner));
    broker.reconnect(&id, &[GROUP]);
}

#[tokio::test]
async fn a_handle_naming_an_unlisted_gateway_is_expired_without_any_connection() {
    use super::handle::Owner;
    let (clock, broker) = mem_broker();
    let b = instance(&clock, &broker, "B", "", "127.0.0.1:9");
    // Whatever listens at the written address must never be called.
    let trap = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    trap.set_nonblocking(true).unwrap();
    let addr = trap.local_addr().unwrap().to_string();
    // A gateway run at that very address is listed, but not the run the handles name.
    list_member(&broker, &Owner::fresh(&addr));
    let forged = [
        handle_of(&b, &Owner::fresh(&addr)),
        handle_of(&b, &Owner::fresh("169.254.169.254:80")),
    ];
    let r = b.ack(&forged).await;
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(
        r.all("ErrorCode"),
        ["MessageNotExist", "MessageNotExist"],
        "{}",
        r.body
    );
    assert!(
        r.one("ErrorMessage").contains("no longer a member"),
        "{}",
        r.body
    );
    // A burst of such acks reads the member list once (one broker), not once per ack.
    let reads = broker.member_lists_read();
    for _ in 0..20 {
        let r = b.ack(&forged[..1]).await;
        assert_eq!(r.all("ErrorCode"), ["MessageNotExist"], "{}", r.body);
    }
    assert_eq!(broker.member_lists_read(), reads);
    // Later, a miss reads the list again.
    clock.advance(super::peers::RECHECK_MS);
    b.ack(&forged[..1]).await;
    assert_eq!(broker.member_lists_read(), reads + 1);
    match trap.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the written address was called: {other:?}"),
    }
}

#[tokio::test]
async fn a_handle_of_a_listed_gateway_is_passed_on_to_it() {
    use super::handle::Owner;
    let (clock, broker) = mem_broker();
    let b = instance(&clock, &broker, "B", "", "127.0.0.1:9");
    // A listed run that takes the connection and closes it unanswered.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let owner = Owner::fresh(&listener.local_addr().unwrap().to_string());
    list_member(&broker, &owner);
    let accepted = tokio::spawn(async move { listener.accept().await.is_ok() });
    let r = b.ack(&[handle_of(&b, &owner)]).await;
    assert!(accepted.await.unwrap(), "the owner was not called");
    assert_eq!(r.all("ErrorCode"), ["MessageNotExist"], "{}", r.body);
    assert!(
        r.one("ErrorMessage").contains("does not answer"),
        "{}",
        r.body
    );
}

#[tokio::test]
async fn publishes_are_counted_under_the_producer_group() {
    let w = world();
    let xml = r#"<?xml version="1.0" encoding="UTF-8"?><Message xmlns="http://mq.aliyuncs.com/doc/v1/"><MessageBody>hi</MessageBody></Message>"#;
    // The publishing client of these tests reaches no name server: the send fails.
    let r = w
        .call(Method::POST, &format!("/topics/{TOPIC}/messages"), xml)
        .await;
    assert_eq!(r.status, 503, "{}", r.body);
    let group = super::config::AliyunConfig::default().producer_group;
    let text = w.metrics.encode(&crate::observe::Snapshot::default());
    for line in [
        format!(r#"rmq_gateway_produced_messages_total{{producer="{group}",status="failed"}} 1"#),
        r#"rmq_gateway_broker_call_duration_seconds_count{code="SEND_MESSAGE"} 1"#.to_owned(),
        r#"rmq_gateway_broker_call_errors_total{code="SEND_MESSAGE",error="failed"} 1"#.to_owned(),
    ] {
        assert!(text.contains(&line), "{line} missing from\n{text}");
    }
    // A refused message (bad tag) reaches no broker and is not counted.
    let bad = xml.replace("</Message>", "<MessageTag>a||b</MessageTag></Message>");
    let r = w
        .call(Method::POST, &format!("/topics/{TOPIC}/messages"), &bad)
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(w.metrics.produced_count(&group, "failed"), 1);
}

#[tokio::test]
async fn a_handle_of_an_earlier_run_at_the_same_address_is_expired() {
    let (clock, broker) = mem_broker();
    let first = instance(&clock, &broker, "A", "", "127.0.0.1:7001");
    first.put(0, "m", "T");
    let h = first.consume("").await.all("ReceiptHandle");
    // The same address, a new process: the earlier run's delivery ended with it.
    let second = instance(&clock, &broker, "A2", "", "127.0.0.1:7001");
    let r = second.ack(&h).await;
    assert_eq!(r.all("ErrorCode"), ["MessageNotExist"], "{}", r.body);
    // An instance without an address cannot be reached: the handle is unknown elsewhere.
    let (clock, broker) = mem_broker();
    let second = instance(&clock, &broker, "B", "", "127.0.0.1:7001");
    let anonymous = instance(&clock, &broker, "A3", "", "");
    anonymous.put(1, "n", "T");
    let h = anonymous.consume("").await.all("ReceiptHandle");
    let r = second.ack(&h).await;
    assert_eq!(r.all("ErrorCode"), ["ReceiptHandleError"], "{}", r.body);
}

#[tokio::test]
async fn a_group_consumes_one_topic_and_one_way() {
    let w = world();
    w.broker.create_topic("T2");
    w.put(0, "m", "T");
    assert_eq!(w.consume("").await.status, 200);
    let other = w
        .call(
            Method::GET,
            &format!("/topics/T2/messages?consumer={GROUP}&numOfMessages=1"),
            "",
        )
        .await;
    assert_eq!(
        (other.status, other.one("Code").as_str()),
        (400, "InvalidArgument"),
        "{}",
        other.body
    );
    assert!(
        other.one("Message").contains("consumes one topic"),
        "{}",
        other.body
    );
    let ordered = w.consume("&trans=order").await;
    assert_eq!(
        (ordered.status, ordered.one("Code").as_str()),
        (400, "InvalidArgument"),
        "{}",
        ordered.body
    );
    assert!(
        ordered.one("Message").contains("concurrently"),
        "{}",
        ordered.body
    );
    // Another group reads T2.
    let r = w
        .call(
            Method::GET,
            "/topics/T2/messages?consumer=GID_B&numOfMessages=1",
            "",
        )
        .await;
    assert_eq!(
        (r.status, r.one("Code").as_str()),
        (404, "MessageNotExist"),
        "{}",
        r.body
    );
}
