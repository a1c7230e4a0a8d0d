//! MQ-Proxy/MQCloud's `/mq/*` API: parameters from the query string, form or JSON bodies;
//! answers in MQ-Proxy's envelope `{"status","message","result"}` with HTTP 200, so existing
//! MQ-Proxy clients keep working.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use base64::Engine;
use bytes::Bytes;
use rmq_remoting::message::MessageExt;
use serde::Serialize;
use serde_json::{json, Value};

use super::json_text::JsonText;
use super::params::ParamRef;
use super::routes::Routes;
use super::{bad, ok, ApiError, Params, BODY_LIMIT};
use crate::broker::BrokerApi;
use crate::error::GatewayError;
use crate::request_id::RequestId;
use crate::service::{ConsumerConfigChange, FetchRequest, FetchResult, Gateway, ProduceRequest};

type Gw<B> = State<Arc<Gateway<B>>>;
type ApiResult = Result<Response, ApiError>;

/// MQ-Proxy's routes (`/mq/produce`, `/mq/produce/batch`, `/mq/message`, `/mq/ack`,
/// `/mq/unlock`, the queue offset reports, `/mq/consumer/config`) and `/health`, over `gw`.
pub fn router<B: BrokerApi>(gw: Arc<Gateway<B>>) -> Router {
    routes(gw).into_router()
}

/// [`router`] with its route table.
pub fn routes<B: BrokerApi>(gw: Arc<Gateway<B>>) -> Routes {
    use axum::http::Method as M;
    Routes::new()
        .on("/mq/produce", &[M::POST], produce::<B>)
        .on("/mq/produce/batch", &[M::POST], produce_batch::<B>)
        .on("/mq/message", &[M::GET, M::POST], message::<B>)
        .on("/mq/ack", &[M::GET, M::POST], ack::<B>)
        .on("/mq/unlock", &[M::GET, M::POST], unlock::<B>)
        .on(
            "/mq/clustering/queue/offset",
            &[M::GET],
            clustering_offsets::<B>,
        )
        .on(
            "/mq/broadcast/queue/offset",
            &[M::GET],
            broadcast_offsets::<B>,
        )
        .on("/mq/consumer/config", &[M::POST], consumer_config::<B>)
        .on("/mq/consumer/config", &[M::GET], consumer_config_view::<B>)
        .on("/health", &[M::GET], || async { "ok" })
        .map(|r| r.layer(DefaultBodyLimit::max(BODY_LIMIT)))
        .with_state(gw)
}

async fn produce<B: BrokerApi>(State(gw): Gw<B>, p: Params) -> ApiResult {
    let producer = p.required("producer")?;
    gw.producer_allowed(&producer, p.token().as_deref())?;
    let req = ProduceRequest {
        producer,
        message: p
            .body("message")
            .filter(|b| !b.is_empty())
            .ok_or_else(|| bad("message is required"))?,
        keys: p.str("keys"),
        tags: p.str("tags"),
        order_id: p.str("orderId"),
        delay_level: p.int("delayLevel")?,
        delivery_timestamp: p.int("deliveryTimestamp")?,
    };
    let r = gw.produce(req).await?;
    Ok(ok(Produced {
        message_queue: ProducedQueue {
            broker_name: &r.queue.broker_name,
            queue_id: r.queue.queue_id,
            topic: &r.queue.topic,
        },
        msg_id: &r.msg_id,
        offset_msg_id: &r.offset_msg_id,
        queue_offset: r.queue_offset,
        region_id: r.region_id.as_deref(),
        send_status: r.status,
        trace_on: true,
    }))
}

/// `/mq/produce`'s result, serialized straight from the send's answer rather than through a
/// `serde_json::Value` (one allocation per key). Fields in the order `json!` wrote them (sorted).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Produced<'a> {
    message_queue: ProducedQueue<'a>,
    msg_id: &'a str,
    offset_msg_id: &'a str,
    queue_offset: i64,
    region_id: Option<&'a str>,
    send_status: &'a str,
    trace_on: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ProducedQueue<'a> {
    broker_name: &'a str,
    queue_id: i32,
    topic: &'a str,
}

async fn produce_batch<B: BrokerApi>(State(gw): Gw<B>, p: Params) -> ApiResult {
    let producer = p.required("producer")?;
    gw.producer_allowed(&producer, p.token().as_deref())?;
    let list = match p.get("messages") {
        Some(ParamRef::Json(Value::Array(a))) => a.clone(),
        Some(ParamRef::Text(s)) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Array(a)) => a,
            _ => return Err(bad("messages must be a JSON array").into()),
        },
        Some(_) => return Err(bad("messages must be a JSON array").into()),
        None => return Err(bad("messages is required").into()),
    };
    let bodies: Vec<Bytes> = list
        .into_iter()
        .map(|v| match v {
            Value::String(s) => Bytes::from(s),
            other => Bytes::from(other.to_string()),
        })
        .collect();
    let results = gw.produce_batch(&producer, bodies).await?;
    if results.iter().all(|r| r.is_ok()) {
        return Ok(Json(json!({"status": 200})).into_response());
    }
    let list: Vec<Value> = results
        .into_iter()
        .map(|r| match r {
            Ok(()) => json!({"status": 200}),
            Err(e) => json!({"status": e.status(), "message": e.to_string()}),
        })
        .collect();
    Ok(
        Json(json!({"status": 500, "message": "some messages failed to send", "result": list}))
            .into_response(),
    )
}

/// One message of a fetch's answer. Serialized straight from the pulled message rather than
/// through a `serde_json::Value`; fields in the order `json!` wrote them (sorted).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MessageJson<'a> {
    /// `base64` when the body is not text.
    #[serde(skip_serializing_if = "Option::is_none")]
    encoding: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    keys: Option<String>,
    message: JsonText<'a>,
    message_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    reconsume_times: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tags: Option<&'a str>,
    timestamp: i64,
}

fn message_json(m: &MessageExt) -> MessageJson<'_> {
    let (message, encoding) = match std::str::from_utf8(&m.body) {
        Ok(s) => (std::borrow::Cow::Borrowed(s), None),
        // Not text: base64, flagged, rather than a lossy string.
        Err(_) => (
            std::borrow::Cow::Owned(base64::engine::general_purpose::STANDARD.encode(&m.body)),
            Some("base64"),
        ),
    };
    let keys: Vec<&str> = m.keys().collect();
    MessageJson {
        encoding,
        keys: (!keys.is_empty()).then(|| keys.join(" ")),
        message: JsonText(message),
        message_id: m.msg_id(),
        reconsume_times: (m.reconsume_times > 0).then_some(m.reconsume_times),
        tags: m.tags(),
        timestamp: m.store_timestamp,
    }
}

/// The parameters every consume call has.
struct Consume {
    consumer: String,
    topic: String,
    client_id: Option<String>,
    request_id: Option<RequestId>,
    cookie: RidCookie,
}

/// `useCookie=true`, and how the cookie can reach the browser.
#[derive(Clone, Copy)]
struct RidCookie {
    on: bool,
    https: bool,
}

impl Consume {
    fn from(p: &Params) -> Result<Consume, GatewayError> {
        let use_cookie = p.flag("useCookie");
        let rid_text = p.opt("requestId").or_else(|| {
            use_cookie
                .then(|| p.cookie("rid").filter(|s| !s.is_empty()))
                .flatten()
        });
        let request_id = match rid_text {
            Some(t) => Some(RequestId::decode(&t).map_err(|e| bad(e.to_string()))?),
            None => None,
        };
        Ok(Consume {
            consumer: p.required("consumer")?,
            topic: p.required("topic")?,
            client_id: p.opt("clientId"),
            request_id,
            cookie: RidCookie {
                on: use_cookie,
                https: p.https(),
            },
        })
    }
}

/// The `rid` cookie of `useCookie=true`. Browsers keep a cookie from another site's answer
/// only with `SameSite=None; Secure`, and `Secure` only over HTTPS: so over HTTPS it is
/// cross-site, over plain HTTP `SameSite=Lax`, which a browser keeps and sends back on the same
/// site (pages on other sites pass `requestId` instead; see the README).
fn with_cookie(mut resp: Response, c: RidCookie, rid: Option<&str>) -> Response {
    if c.on {
        let attrs = if c.https {
            "Path=/; HttpOnly; SameSite=None; Secure"
        } else {
            "Path=/; HttpOnly; SameSite=Lax"
        };
        let v = match rid {
            Some(r) => format!("rid={r}; {attrs}"),
            None => format!("rid=; {attrs}; Max-Age=0"),
        };
        if let Ok(v) = HeaderValue::from_str(&v) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    resp
}

/// A fetch's result; fields in the order `json!` wrote them (sorted).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FetchJson<'a> {
    /// Through a `Value` (once per answer), so that its keys stay sorted as before.
    #[serde(skip_serializing_if = "Option::is_none")]
    ack_info: Option<Value>,
    msg_list: Vec<MessageJson<'a>>,
    msg_list_size: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    queue_info: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
    retry_msg_list: Vec<MessageJson<'a>>,
    retry_msg_list_size: usize,
    status: &'a str,
}

fn fetch_json(r: &FetchResult) -> FetchJson<'_> {
    FetchJson {
        ack_info: r.ack_info.as_ref().map(|a| json!(a)),
        msg_list: r.messages.iter().map(message_json).collect(),
        msg_list_size: r.messages.len(),
        queue_info: r.queue_info.as_ref().map(|q| json!(q)),
        request_id: r.request_id.as_deref(),
        retry_msg_list: r.retry_messages.iter().map(message_json).collect(),
        retry_msg_list_size: r.retry_messages.len(),
        status: r.status,
    }
}

async fn message<B: BrokerApi>(State(gw): Gw<B>, p: Params) -> ApiResult {
    let c = Consume::from(&p)?;
    gw.consumer_allowed(&c.consumer, p.token().as_deref(), false)?;
    let max = gw.max_wait_seconds();
    let wait = match p.int("waitSeconds")? {
        None => 0,
        Some(w) if w >= 0 && (w as u64) <= max => w as u64,
        Some(w) => return Err(bad(format!("waitSeconds {w} must be 0..{max}")).into()),
    };
    let req = FetchRequest {
        consumer: c.consumer,
        topic: c.topic,
        request_id: c.request_id,
        client_id: c.client_id,
        client_ip: p.opt("clientIp").or_else(|| p.client_ip()),
        wait: Duration::from_secs(wait),
    };
    let r = gw.fetch(req).await?;
    p.note_request_id(r.request_id.as_deref());
    Ok(with_cookie(
        ok(fetch_json(&r)),
        c.cookie,
        r.request_id.as_deref(),
    ))
}

/// `/mq/ack` and `/mq/unlock`: both name a lease by its requestId.
enum LeaseCall {
    Ack,
    Unlock,
}

async fn lease_call<B: BrokerApi>(gw: &Gateway<B>, p: Params, call: LeaseCall) -> ApiResult {
    let c = Consume::from(&p)?;
    gw.consumer_allowed(&c.consumer, p.token().as_deref(), false)?;
    let Some(rid) = &c.request_id else {
        return Err(
            bad("requestId is required (parameter, or cookie rid with useCookie=true)").into(),
        );
    };
    let client_id = c.client_id.as_deref();
    let v = match call {
        LeaseCall::Ack => {
            let info = gw.ack(&c.consumer, &c.topic, client_id, rid).await?;
            json!({"status": info.status, "message": info.message})
        }
        LeaseCall::Unlock => {
            let done = gw.unlock(&c.consumer, &c.topic, client_id, rid).await?;
            json!({"status": 200, "message": format!("unlock:{done}")})
        }
    };
    Ok(with_cookie(Json(v).into_response(), c.cookie, None))
}

async fn ack<B: BrokerApi>(State(gw): Gw<B>, p: Params) -> ApiResult {
    lease_call(&gw, p, LeaseCall::Ack).await
}

async fn unlock<B: BrokerApi>(State(gw): Gw<B>, p: Params) -> ApiResult {
    lease_call(&gw, p, LeaseCall::Unlock).await
}

async fn clustering_offsets<B: BrokerApi>(State(gw): Gw<B>, p: Params) -> ApiResult {
    let consumer = p.required("consumer")?;
    gw.consumer_allowed(&consumer, p.token().as_deref(), true)?;
    let mut v = gw.queue_offsets(&consumer, None).await?;
    Ok(ok(v.pop().map(|(_, list)| list).unwrap_or_default()))
}

async fn broadcast_offsets<B: BrokerApi>(State(gw): Gw<B>, p: Params) -> ApiResult {
    let consumer = p.required("consumer")?;
    gw.consumer_allowed(&consumer, p.token().as_deref(), true)?;
    let client_id = p.opt("clientId");
    let v = gw.queue_offsets(&consumer, client_id.as_deref()).await?;
    let map: serde_json::Map<String, Value> = v
        .into_iter()
        .map(|(cid, list)| (cid.unwrap_or_default(), json!(list)))
        .collect();
    Ok(ok(map))
}

async fn consumer_config<B: BrokerApi>(State(gw): Gw<B>, p: Params) -> ApiResult {
    gw.admin_allowed(p.authorization())?;
    let change = ConsumerConfigChange {
        consumer: p.required("consumer")?,
        client_id: p.opt("clientId"),
        max_pull_size: p
            .int("maxPullSize")?
            .map(|v| v.clamp(0, u32::MAX as i64) as u32),
        consume_timeout_ms: p.int("consumeTimeoutInMillis")?.map(|v| v.max(0) as u64),
        pause: p.bit("pause")?,
        rate_limit_enabled: p.bit("rateLimitEnabled")?,
        limit_rate: p.int("limitRate")?.map(|v| v as f64),
        reset_offset_timestamp: p.int("resetOffsetTimestamp")?,
        retry_msg_id: p.str("retryMsgId"),
    };
    Ok(ok(gw.configure(change).await?))
}

/// `GET /mq/consumer/config?consumer=C[&clientId=X]`: the settings in effect on this instance
/// (the shared ones, once read).
async fn consumer_config_view<B: BrokerApi>(State(gw): Gw<B>, p: Params) -> ApiResult {
    let consumer = p.required("consumer")?;
    gw.consumer_allowed(&consumer, p.token().as_deref(), true)?;
    let client_id = p.opt("clientId");
    Ok(ok(gw
        .effective_settings(&consumer, client_id.as_deref())
        .await?))
}
