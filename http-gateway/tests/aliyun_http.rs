//! The Aliyun MQ HTTP API of the real `rmq-gateway` binary against the real broker that
//! `scripts/broker.sh` starts (`RMQ_NAMESRV`; these tests fail, never skip, without it):
//! signed publishes reach plain RocketMQ consumers with tag, keys, properties and the sharding
//! key's queue; unknown topics, bad bodies and bad signatures get the Aliyun codes.
//!
//! Run with `scripts/broker.sh exec -- cargo test --offline -p rmq-gateway --features broker-tests --test aliyun_http`.
//! The official SDKs' checks are in tests/sdk (run.sh).

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rmq_client::PullRequest;
use rmq_client::{ClientConfig, MQClient, Message, Producer, ProducerConfig, PullStatus};
use rmq_gateway::api::aliyun::auth::{sign, string_to_sign, Secret};
use rmq_gateway::api::aliyun::handle::{Owner, ReceiptHandle};
use rmq_remoting::body::MessageQueue;
use rmq_remoting::message::MessageExt;
use rmq_test_support::{namesrv, unique, Gateway};

const BIN: &str = env!("CARGO_BIN_EXE_rmq-gateway");
const AK: &str = "it-ak";
const SK: &str = "it-sk";
const NS: &str = "MQ_INST_IT";

/// The gateway binary against the test broker with `aliyun` as its `[aliyun]` table.
async fn start_gateway(aliyun: &str) -> Gateway {
    Gateway::start(BIN, "aliyun", &format!("[aliyun]\n{aliyun}\n")).await
}

/// A response: status, the x-mq-request-id header, the body.
struct Reply {
    status: u16,
    request_id: Option<String>,
    content_type: String,
    body: String,
}

impl Reply {
    /// The text of the first `<name>` element.
    fn field(&self, name: &str) -> Option<String> {
        let open = format!("<{name}>");
        let start = self.body.find(&open)? + open.len();
        let end = self.body[start..].find(&format!("</{name}>"))? + start;
        Some(self.body[start..end].to_owned())
    }

    fn code(&self) -> Option<String> {
        self.field("Code")
    }
}

/// Where a gateway process listens.
trait Base {
    fn base(&self) -> &str;
}

/// A gateway's `http://host:port`.
impl Base for String {
    fn base(&self) -> &str {
        self
    }
}

impl Base for Gateway {
    fn base(&self) -> &str {
        &self.base
    }
}

/// Sends a request signed as the Python SDK signs it (`date_offset` moves the Date header).
async fn call(
    gw: &impl Base,
    method: &str,
    target: &str,
    body: &str,
    secret: &str,
    date_offset: i64,
) -> Reply {
    let date = httpdate::fmt_http_date(if date_offset >= 0 {
        SystemTime::now() + Duration::from_secs(date_offset as u64)
    } else {
        SystemTime::now() - Duration::from_secs((-date_offset) as u64)
    });
    let mut headers = axum::http::HeaderMap::new();
    headers.insert("x-mq-version", "2015-06-06".parse().unwrap());
    headers.insert("date", date.parse().unwrap());
    if !body.is_empty() {
        headers.insert("content-type", "text/xml;charset=UTF-8".parse().unwrap());
    }
    let method: axum::http::Method = method.parse().unwrap();
    let sig = sign(
        &Secret::new(secret),
        &string_to_sign(&method, target, &headers),
    );
    let mut req = reqwest::Client::new()
        .request(
            method.as_str().parse().unwrap(),
            format!("{}{target}", gw.base()),
        )
        .header("authorization", format!("MQ {AK}:{sig}"))
        .body(body.to_owned());
    for (k, v) in &headers {
        req = req.header(k.as_str(), v.to_str().unwrap());
    }
    let r = req.send().await.unwrap();
    Reply {
        status: r.status().as_u16(),
        request_id: r
            .headers()
            .get("x-mq-request-id")
            .map(|v| v.to_str().unwrap().to_owned()),
        content_type: r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default(),
        body: r.text().await.unwrap(),
    }
}

fn message_xml(body: &str, tag: Option<&str>, props: Option<&str>) -> String {
    let mut s = String::from(
        r#"<?xml version="1.0" encoding="utf-8"?><Message xmlns="http://mq.aliyuncs.com/doc/v1/">"#,
    );
    s.push_str(&format!("<MessageBody>{body}</MessageBody>"));
    if let Some(t) = tag {
        s.push_str(&format!("<MessageTag>{t}</MessageTag>"));
    }
    if let Some(p) = props {
        s.push_str(&format!("<Properties>{p}</Properties>"));
    }
    s.push_str("</Message>");
    s
}

/// Creates `topic` on the broker (the gateway itself never auto-creates, as Aliyun does not).
async fn create_topic(c: &MQClient, topic: &str) {
    let p = Producer::new(c.clone(), ProducerConfig::new(unique("PG_SEED")));
    p.send(Message::new(topic, "seed").with_tags("seed"))
        .await
        .unwrap();
}

/// Everything in `topic` except the seed, pulled as a plain RocketMQ consumer.
async fn pull_all(c: &MQClient, topic: &str, want: usize) -> Vec<MessageExt> {
    let route = c.route(topic).await.unwrap();
    let mut offsets: HashMap<MessageQueue, i64> = route
        .subscribe_queues
        .iter()
        .map(|q| (q.clone(), 0))
        .collect();
    let group = unique("CG_IT");
    let mut out = Vec::new();
    let start = Instant::now();
    while out.len() < want && start.elapsed() < Duration::from_secs(20) {
        for (q, off) in offsets.iter_mut() {
            let mut req = PullRequest::new(&group, *off);
            req.max_msgs = 32;
            let r = c.pull(q, &req).await.unwrap();
            assert_ne!(r.status, PullStatus::OffsetIllegal);
            *off = r.next_begin_offset;
            out.extend(r.messages.into_iter().filter(|m| m.tags() != Some("seed")));
        }
        if out.len() < want {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    out
}

fn creds() -> String {
    format!("credentials = [{{ access_key_id = \"{AK}\", access_key_secret = \"{SK}\" }}]")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_reach_plain_rocketmq_consumers_with_everything() {
    let c = MQClient::start(ClientConfig::new(&namesrv())).unwrap();
    let topic = unique("AliT");
    let full = format!("{NS}%{topic}");
    create_topic(&c, &full).await;
    let gw = start_gateway(&creds()).await;
    let target = format!("/topics/{topic}/messages?ns={NS}");
    let mut ids = HashMap::new();
    for i in 0..10 {
        let body = format!("hello &lt;{i}&gt; &amp; 中文");
        let props = format!("KEYS:key-{i}|a:{i}|__SHARDINGKEY:shard-1|");
        let r = call(
            &gw,
            "POST",
            &target,
            &message_xml(&body, Some("TagA"), Some(&props)),
            SK,
            0,
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.body);
        assert!(r.content_type.starts_with("text/xml"), "{}", r.content_type);
        assert!(r.request_id.is_some());
        let plain = format!("hello <{i}> & 中文");
        let md5 = r.field("MessageBodyMD5").unwrap();
        assert_eq!(
            md5,
            rmq_gateway::api::aliyun::publish::body_md5(plain.as_bytes())
        );
        assert!(md5
            .chars()
            .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()));
        ids.insert(r.field("MessageId").unwrap(), i);
    }
    let got = pull_all(&c, &full, 10).await;
    assert_eq!(got.len(), 10);
    let queue = got[0].queue_id;
    for m in &got {
        let i = ids[&m.msg_id()];
        assert_eq!(
            std::str::from_utf8(&m.body).unwrap(),
            format!("hello <{i}> & 中文")
        );
        assert_eq!(m.tags(), Some("TagA"));
        assert_eq!(m.keys().collect::<Vec<_>>(), vec![format!("key-{i}")]);
        assert_eq!(m.properties.get("a"), Some(i.to_string().as_str()));
        assert_eq!(m.properties.get("__SHARDINGKEY"), Some("shard-1"));
        assert_eq!(m.queue_id, queue, "one sharding key, one queue");
    }
    // Same queue in publish order.
    let mut by_offset: Vec<&MessageExt> = got.iter().collect();
    by_offset.sort_by_key(|m| m.queue_offset);
    let order: Vec<i32> = by_offset.iter().map(|m| ids[&m.msg_id()]).collect();
    assert_eq!(order, (0..10).collect::<Vec<_>>());
    // Without the instance id the plain name has no route.
    let r = call(
        &gw,
        "POST",
        &format!("/topics/{topic}/messages"),
        &message_xml("x", None, None),
        SK,
        0,
    )
    .await;
    assert_eq!(
        (r.status, r.code().as_deref()),
        (404, Some("TopicNotExist")),
        "{}",
        r.body
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timed_messages_are_not_delivered_early() {
    let c = MQClient::start(ClientConfig::new(&namesrv())).unwrap();
    let topic = unique("AliTimed");
    let full = format!("{NS}%{topic}");
    create_topic(&c, &full).await;
    let gw = start_gateway(&creds()).await;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let at = now + 3000;
    let r = call(
        &gw,
        "POST",
        &format!("/topics/{topic}/messages?ns={NS}"),
        &message_xml(
            "timed",
            Some("TagT"),
            Some(&format!("__STARTDELIVERTIME:{at}|")),
        ),
        SK,
        0,
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let got = pull_all(&c, &full, 1).await;
    let seen = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert_eq!(got.len(), 1, "the timed message never arrived");
    assert!(seen >= at - 500, "delivered {} ms early", at - seen);
    assert_eq!(
        got[0].properties.get("__STARTDELIVERTIME"),
        Some(at.to_string().as_str())
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_aliyun_codes_and_send_nothing() {
    let c = MQClient::start(ClientConfig::new(&namesrv())).unwrap();
    let topic = unique("AliBad");
    let full = format!("{NS}%{topic}");
    create_topic(&c, &full).await;
    let gw = start_gateway(&creds()).await;
    let target = format!("/topics/{topic}/messages?ns={NS}");
    let big = "x".repeat(4 * 1024 * 1024 + 1);
    let cases: Vec<(String, u16, &str)> = vec![
        (
            "<Message><MessageBody>x</MessageBody>".into(),
            400,
            "MalformedXML",
        ),
        (
            "<Message><MessageTag>t</MessageTag></Message>".into(),
            400,
            "InvalidArgument",
        ),
        (message_xml("", None, None), 400, "InvalidArgument"),
        (message_xml(&big, None, None), 400, "InvalidArgument"),
        (message_xml("x", Some("a||b"), None), 400, "InvalidArgument"),
        (
            message_xml("x", None, Some("__TransCheckT:10|")),
            400,
            "InvalidArgument",
        ),
        (
            message_xml("x", None, Some("TAGS:forged|")),
            400,
            "InvalidArgument",
        ),
        (String::new(), 400, "InvalidArgument"),
    ];
    for (body, status, code) in cases {
        let r = call(&gw, "POST", &target, &body, SK, 0).await;
        assert_eq!(
            (r.status, r.code().as_deref()),
            (status, Some(code)),
            "{}",
            r.body
        );
        assert!(
            r.body
                .contains(r#"<Error xmlns="http://mq.aliyuncs.com/doc/v1">"#),
            "{}",
            r.body
        );
        assert_eq!(r.request_id, r.field("RequestId"));
        assert!(r.field("HostId").unwrap().starts_with("http://127.0.0.1:"));
    }
    let r = call(
        &gw,
        "POST",
        &target,
        &message_xml("x", None, None),
        "wrong",
        0,
    )
    .await;
    assert_eq!(
        (r.status, r.code().as_deref()),
        (403, Some("SignatureDoesNotMatch"))
    );
    let r = call(
        &gw,
        "POST",
        &target,
        &message_xml("x", None, None),
        SK,
        -16 * 60,
    )
    .await;
    assert_eq!(
        (r.status, r.code().as_deref()),
        (403, Some("RequestTimeTooSkewed"))
    );
    assert!(
        r.field("Message")
            .unwrap()
            .contains("more than the allowed 900s"),
        "{}",
        r.body
    );
    let r = call(
        &gw,
        "POST",
        "/topics/a%25b/messages",
        &message_xml("x", None, None),
        SK,
        0,
    )
    .await;
    assert_eq!(
        (r.status, r.code().as_deref()),
        (400, Some("InvalidArgument")),
        "{}",
        r.body
    );
    let r = call(&gw, "PUT", &target, "", SK, 0).await;
    assert_eq!(
        (r.status, r.code().as_deref()),
        (400, Some("InvalidRequestURL")),
        "{}",
        r.body
    );
    // Bad consume and ack parameters: the Aliyun codes, nothing consumed or acked.
    for query in [
        "consumer=G&numOfMessages=17",
        "consumer=G&numOfMessages=0",
        "consumer=G&numOfMessages=1&trans=sometimes",
        "consumer=G&numOfMessages=1&waitseconds=31",
    ] {
        let r = call(
            &gw,
            "GET",
            &format!("/topics/{topic}/messages?{query}&ns={NS}"),
            "",
            SK,
            0,
        )
        .await;
        assert_eq!(
            (r.status, r.code().as_deref()),
            (400, Some("InvalidArgument")),
            "{query}: {}",
            r.body
        );
    }
    let mut many = String::from("<ReceiptHandles>");
    for i in 0..17 {
        many.push_str(&format!("<ReceiptHandle>h{i}</ReceiptHandle>"));
    }
    many.push_str("</ReceiptHandles>");
    let r = call(
        &gw,
        "DELETE",
        &format!("/topics/{topic}/messages?consumer=G&ns={NS}"),
        &many,
        SK,
        0,
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    // The group G consumed nothing: its first consume gets the seed.
    let r = call(
        &gw,
        "GET",
        &format!("/topics/{topic}/messages?consumer=G&numOfMessages=16&ns={NS}&waitseconds=3"),
        "",
        SK,
        0,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(all(&r.body, "MessageBody"), ["seed"], "{}", r.body);
    assert!(
        pull_all(&c, &full, 1).await.is_empty(),
        "a refused message was sent"
    );
    // A gateway without credentials refuses everything.
    let open = start_gateway("").await;
    let r = call(&open, "POST", &target, &message_xml("x", None, None), SK, 0).await;
    assert_eq!(
        (r.status, r.code().as_deref()),
        (403, Some("AccessDenied")),
        "{}",
        r.body
    );
    c.shutdown().await;
}

/// Every `<name>` element's text.
fn all(body: &str, name: &str) -> Vec<String> {
    let (open, close) = (format!("<{name}>"), format!("</{name}>"));
    body.split(&open)
        .skip(1)
        .map(|p| p.split(&close).next().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consume_filter_ack_and_redelivery_on_the_broker() {
    let c = MQClient::start(ClientConfig::new(&namesrv())).unwrap();
    let topic = unique("AliC");
    create_topic(&c, &format!("{NS}%{topic}")).await;
    let gw = start_gateway(&format!("{}\ninvisible_time_ms = 2000", creds())).await;
    let publish = format!("/topics/{topic}/messages?ns={NS}");
    for (i, tag) in ["TagA", "TagB", "TagA", "TagA"].iter().enumerate() {
        let props = format!("KEYS:key-{i}|n:{i}|");
        let r = call(
            &gw,
            "POST",
            &publish,
            &message_xml(&format!("m{i}"), Some(tag), Some(&props)),
            SK,
            0,
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let group = unique("GID_C");
    let consume = format!(
        "/topics/{topic}/messages?consumer={group}&numOfMessages=16&ns={NS}&waitseconds=2&tag=TagA"
    );
    let ack = format!("/topics/{topic}/messages?consumer={group}&ns={NS}");
    let mut got: Vec<(String, String)> = Vec::new();
    let start = Instant::now();
    while got.len() < 3 && start.elapsed() < Duration::from_secs(20) {
        let r = call(&gw, "GET", &consume, "", SK, 0).await;
        if r.status == 404 {
            assert_eq!(r.code().as_deref(), Some("MessageNotExist"), "{}", r.body);
            continue;
        }
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(!r.body.contains("TagB"), "{}", r.body);
        assert!(r.body.contains("<Properties>"), "{}", r.body);
        got.extend(
            all(&r.body, "MessageBody")
                .into_iter()
                .zip(all(&r.body, "ReceiptHandle")),
        );
    }
    let mut bodies: Vec<&str> = got.iter().map(|(b, _)| b.as_str()).collect();
    bodies.sort();
    assert_eq!(bodies, ["m0", "m2", "m3"]);
    // Ack two of them, with a bad handle beside: 404 listing only the bad one.
    let handles = |hs: &[&str]| {
        let mut s = String::from(
            r#"<?xml version="1.0" encoding="UTF-8"?><ReceiptHandles xmlns="http://mq.aliyuncs.com/doc/v1/">"#,
        );
        for h in hs {
            s.push_str(&format!("<ReceiptHandle>{h}</ReceiptHandle>"));
        }
        s + "</ReceiptHandles>"
    };
    let r = call(
        &gw,
        "DELETE",
        &ack,
        &handles(&[&got[0].1, "bogus", &got[1].1]),
        SK,
        0,
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(all(&r.body, "ErrorCode"), ["ReceiptHandleError"]);
    assert_eq!(all(&r.body, "ReceiptHandle"), ["bogus"]);
    // The third, not acked, comes again after the invisible time with a new handle.
    let mut again = None;
    let start = Instant::now();
    while again.is_none() && start.elapsed() < Duration::from_secs(15) {
        let r = call(&gw, "GET", &consume, "", SK, 0).await;
        if r.status == 200 {
            again = Some(r);
        }
    }
    let again = again.expect("the unacked message did not come again");
    assert_eq!(all(&again.body, "MessageBody"), [got[2].0.clone()]);
    assert_eq!(again.field("ConsumedTimes").as_deref(), Some("2"));
    let new = again.field("ReceiptHandle").unwrap();
    assert_ne!(new, got[2].1);
    let r = call(&gw, "DELETE", &ack, &handles(&[&got[2].1]), SK, 0).await;
    assert_eq!(all(&r.body, "ErrorCode"), ["MessageNotExist"], "{}", r.body);
    let r = call(&gw, "DELETE", &ack, &handles(&[&new]), SK, 0).await;
    assert_eq!(r.status, 204, "{}", r.body);
    // All acked: nothing comes any more, not even after the invisible time.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let r = call(&gw, "GET", &consume, "", SK, 0).await;
    assert_eq!(
        (r.status, r.code().as_deref()),
        (404, Some("MessageNotExist")),
        "{}",
        r.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_a_group_without_handing_a_message_out_twice() {
    let c = MQClient::start(ClientConfig::new(&namesrv())).unwrap();
    let topic = unique("AliS");
    create_topic(&c, &format!("{NS}%{topic}")).await;
    let a = start_gateway(&creds()).await;
    let b = start_gateway(&creds()).await;
    let publish = format!("/topics/{topic}/messages?ns={NS}");
    for i in 0..20 {
        publish_tagged(&a, &publish, &format!("s{i}")).await;
    }
    let group = unique("GID_S");
    let consume =
        format!("/topics/{topic}/messages?consumer={group}&numOfMessages=4&ns={NS}&tag=T");
    let ack = format!("/topics/{topic}/messages?consumer={group}&ns={NS}");
    let mut seen = HashMap::new();
    let start = Instant::now();
    while seen.len() < 20 && start.elapsed() < Duration::from_secs(30) {
        for gw in [&a, &b] {
            let r = call(gw, "GET", &consume, "", SK, 0).await;
            if r.status != 200 {
                continue;
            }
            let handles = all(&r.body, "ReceiptHandle");
            for m in all(&r.body, "MessageBody") {
                *seen.entry(m).or_insert(0) += 1;
            }
            // Each ack goes to the instance that delivered.
            let mut body = String::from("<ReceiptHandles>");
            for h in &handles {
                body.push_str(&format!("<ReceiptHandle>{h}</ReceiptHandle>"));
            }
            body.push_str("</ReceiptHandles>");
            let r = call(gw, "DELETE", &ack, &body, SK, 0).await;
            assert_eq!(r.status, 204, "{}", r.body);
        }
    }
    assert_eq!(seen.len(), 20, "{seen:?}");
    assert!(seen.values().all(|n| *n == 1), "handed out twice: {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_instance_loses_nothing() {
    const N: usize = 40;
    let c = MQClient::start(ClientConfig::new(&namesrv())).unwrap();
    let topic = unique("AliK");
    create_topic(&c, &format!("{NS}%{topic}")).await;
    let mut a = start_gateway(&creds()).await;
    let b = start_gateway(&creds()).await;
    let publish = format!("/topics/{topic}/messages?ns={NS}");
    // Messages keep coming through B while both instances consume and A is killed.
    let publisher = {
        let (base, publish) = (b.base.clone(), publish.clone());
        tokio::spawn(async move {
            for i in 0..N {
                publish_tagged(&base, &publish, &format!("k{i}")).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let group = unique("GID_K");
    let consume = format!(
        "/topics/{topic}/messages?consumer={group}&numOfMessages=4&ns={NS}&tag=T&waitseconds=1"
    );
    let ack = format!("/topics/{topic}/messages?consumer={group}&ns={NS}");
    let mut seen = std::collections::HashSet::new();
    // A takes messages, acks some, and dies (SIGKILL) holding unacked ones.
    let mut unacked = Vec::new();
    let start = Instant::now();
    while unacked.is_empty() && start.elapsed() < Duration::from_secs(20) {
        let r = call(&a, "GET", &consume, "", SK, 0).await;
        if r.status != 200 {
            continue;
        }
        let bodies = all(&r.body, "MessageBody");
        if seen.len() < 6 {
            let hs = all(&r.body, "ReceiptHandle");
            assert_eq!(
                call(&a, "DELETE", &ack, &handles_xml(&hs), SK, 0)
                    .await
                    .status,
                204
            );
            seen.extend(bodies);
        } else {
            unacked = bodies;
        }
    }
    assert!(!unacked.is_empty(), "A handed out nothing to hold");
    a.kill9();
    // B gets every message, the unacked ones included, once the dead one's broker locks
    // expire (the broker's 60 s lock lifetime: this test takes a minute).
    let start = Instant::now();
    while seen.len() < N && start.elapsed() < Duration::from_secs(150) {
        let r = call(&b, "GET", &consume, "", SK, 0).await;
        if r.status != 200 {
            continue;
        }
        let hs = all(&r.body, "ReceiptHandle");
        assert_eq!(
            call(&b, "DELETE", &ack, &handles_xml(&hs), SK, 0)
                .await
                .status,
            204
        );
        seen.extend(all(&r.body, "MessageBody"));
    }
    publisher.await.unwrap();
    assert_eq!(seen.len(), N, "after {:?}: {seen:?}", start.elapsed());
    for m in &unacked {
        assert!(seen.contains(m), "{m} was lost");
    }
    eprintln!("all consumed {:?} after the kill", start.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_max_reconsume_times_a_message_goes_to_the_dead_letter_queue() {
    let c = MQClient::start(ClientConfig::new(&namesrv())).unwrap();
    let topic = unique("AliD");
    create_topic(&c, &format!("{NS}%{topic}")).await;
    let gw = start_gateway(&format!(
        "{}\ninvisible_time_ms = 1000\nmax_reconsume_times = 2",
        creds()
    ))
    .await;
    let publish = format!("/topics/{topic}/messages?ns={NS}");
    let r = call(
        &gw,
        "POST",
        &publish,
        &message_xml("poison", Some("T"), None),
        SK,
        0,
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.field("MessageId").unwrap();
    let group = unique("GID_D");
    let consume = format!(
        "/topics/{topic}/messages?consumer={group}&numOfMessages=16&ns={NS}&tag=T&waitseconds=2"
    );
    // Two deliveries, never acked, each after the previous one's invisible time.
    for n in 1..=2 {
        let (bodies, _) = take(&gw, &consume, 1).await;
        assert_eq!(bodies, ["poison"], "delivery {n}");
    }
    // The third would exceed max_reconsume_times: it goes to %DLQ%{group} and stops coming.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let r = call(&gw, "GET", &consume, "", SK, 0).await;
    assert_eq!(
        (r.status, r.code().as_deref()),
        (404, Some("MessageNotExist")),
        "{}",
        r.body
    );
    let dlq = format!("%DLQ%{NS}%{group}");
    let mut found = Vec::new();
    let start = Instant::now();
    while found.is_empty() && start.elapsed() < Duration::from_secs(20) {
        if let Ok(Some(route)) = c.refresh_route(&dlq).await {
            for q in &route.subscribe_queues {
                let r = c
                    .pull(q, &PullRequest::new(unique("CG_DLQ"), 0))
                    .await
                    .unwrap();
                found.extend(r.messages);
            }
        }
        if found.is_empty() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    assert_eq!(found.len(), 1, "one message in {dlq}");
    assert_eq!(found[0].body.as_ref(), b"poison");
    assert_eq!(found[0].msg_id(), id);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let r = call(&gw, "GET", &consume, "", SK, 0).await;
    assert_eq!(r.status, 404, "it stops coming: {}", r.body);
}

fn handles_xml(handles: &[String]) -> String {
    let mut body = String::from("<ReceiptHandles>");
    for h in handles {
        body.push_str(&format!("<ReceiptHandle>{h}</ReceiptHandle>"));
    }
    body + "</ReceiptHandles>"
}

/// Publishes `body` with tag `T` through `gw` to `publish` (a topic's messages path); the
/// gateway must answer 201.
async fn publish_tagged(gw: &impl Base, publish: &str, body: &str) {
    let xml = message_xml(body, Some("T"), None);
    let r = call(gw, "POST", publish, &xml, SK, 0).await;
    assert_eq!(r.status, 201, "{}", r.body);
}

/// Consumes on `gw` until `want` messages came (each at most once per call), returning bodies and
/// handles; nothing acked.
async fn take(gw: &impl Base, consume: &str, want: usize) -> (Vec<String>, Vec<String>) {
    let (mut bodies, mut handles) = (Vec::new(), Vec::new());
    let start = Instant::now();
    while bodies.len() < want && start.elapsed() < Duration::from_secs(30) {
        let r = call(gw, "GET", consume, "", SK, 0).await;
        if r.status == 200 {
            bodies.extend(all(&r.body, "MessageBody"));
            handles.extend(all(&r.body, "ReceiptHandle"));
        } else {
            assert_eq!(r.code().as_deref(), Some("MessageNotExist"), "{}", r.body);
        }
    }
    (bodies, handles)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ack_through_another_instance_reaches_the_one_that_delivered() {
    let c = MQClient::start(ClientConfig::new(&namesrv())).unwrap();
    let topic = unique("AliX");
    let full = format!("{NS}%{topic}");
    create_topic(&c, &full).await;
    let tables = format!("[aliyun]\n{}\ninvisible_time_ms = 3000\n", creds());
    let mut a = Gateway::start(BIN, "ali-owner", &tables).await;
    let b = Gateway::start(BIN, "ali-peer", &tables).await;
    let publish = format!("/topics/{topic}/messages?ns={NS}");
    for i in 0..6 {
        publish_tagged(&b, &publish, &format!("x{i}")).await;
    }
    // Publishes count as the Aliyun producer group's messages.
    let metrics = reqwest::get(format!("{}/metrics", b.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        r#"rmq_gateway_produced_messages_total{producer="rmq-gateway-aliyun",status="SEND_OK"} 6"#,
        r#"rmq_gateway_broker_call_duration_seconds_count{code="SEND_MESSAGE"} 6"#,
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }
    let group = unique("GID_X");
    let consume = format!(
        "/topics/{topic}/messages?consumer={group}&numOfMessages=16&ns={NS}&tag=T&waitseconds=1"
    );
    let ack = format!("/topics/{topic}/messages?consumer={group}&ns={NS}");
    // A delivers everything (B never consumes this group); the acks go through B.
    let (bodies, handles) = take(&a, &consume, 6).await;
    assert_eq!(bodies.len(), 6, "{bodies:?}");
    let r = call(&b, "DELETE", &ack, &handles_xml(&handles), SK, 0).await;
    assert_eq!(r.status, 204, "{}", r.body);
    // The offsets moved: the group committed every queue to its end (the seed went by the
    // tag filter).
    let route = c.route(&full).await.unwrap();
    let broker_group = format!("{NS}%{group}");
    for q in &route.subscribe_queues {
        let max = c.max_offset(q).await.unwrap();
        let committed = c.query_consumer_offset(&broker_group, q).await.unwrap();
        assert_eq!(committed.unwrap_or(0), max, "queue {q:?}");
    }
    // Acked, nothing comes again after the invisible time, on either instance.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    for r in [
        call(&a, "GET", &consume, "", SK, 0).await,
        call(&b, "GET", &consume, "", SK, 0).await,
    ] {
        assert_eq!(
            (r.status, r.code().as_deref()),
            (404, Some("MessageNotExist")),
            "{}",
            r.body
        );
    }
    // A second ack of the same handles through B: A no longer knows them.
    let r = call(&b, "DELETE", &ack, &handles_xml(&handles[..1]), SK, 0).await;
    assert_eq!(r.status, 404, "{}", r.body);

    // The owner dies with a message out: through B its handle has expired.
    let r = call(
        &b,
        "POST",
        &publish,
        &message_xml("late", Some("T"), None),
        SK,
        0,
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let (bodies, handles) = take(&a, &consume, 1).await;
    assert_eq!(bodies, ["late"]);
    // The same delivery with another address written into its handle: that address is no
    // member of the group on the broker, so B sends nothing there and the handle is expired.
    let trap = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    trap.set_nonblocking(true).unwrap();
    let mut forged = ReceiptHandle::decode(&handles[0], &full, &broker_group).unwrap();
    forged.owner = Some(Owner::fresh(&trap.local_addr().unwrap().to_string()));
    let forged = forged.encode(&full, &broker_group);
    let r = call(&b, "DELETE", &ack, &handles_xml(&[forged]), SK, 0).await;
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(all(&r.body, "ErrorCode"), ["MessageNotExist"], "{}", r.body);
    match trap.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the written address was called: {other:?}"),
    }
    a.kill9();
    let r = call(&b, "DELETE", &ack, &handles_xml(&handles), SK, 0).await;
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(all(&r.body, "ErrorCode"), ["MessageNotExist"], "{}", r.body);
    assert_eq!(all(&r.body, "ReceiptHandle"), handles);
}
