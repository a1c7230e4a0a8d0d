//! The axum layer: parameters from query string, form or JSON bodies; MQ-Proxy's envelope
//! `{"status","message","result"}` with HTTP 200, so existing MQ-Proxy clients keep working.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, DefaultBodyLimit, Query, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use bytes::Bytes;
use rmq_remoting::message::MessageExt;
use serde::Serialize;
use serde_json::{json, Value};

use crate::gateway::{
    ConsumerConfigChange, FetchRequest, FetchResult, Gateway, GatewayError, ProduceRequest,
};
use crate::request_id::RequestId;

/// Large enough for a 4 MiB message even when form-encoded.
const BODY_LIMIT: usize = 16 * 1024 * 1024;

pub fn router(gw: Arc<Gateway>) -> Router {
    Router::new()
        .route("/mq/produce", post(produce))
        .route("/mq/produce/batch", post(produce_batch))
        .route("/mq/message", get(message).post(message))
        .route("/mq/ack", get(ack).post(ack))
        .route("/mq/unlock", get(unlock).post(unlock))
        .route("/mq/clustering/queue/offset", get(clustering_offsets))
        .route("/mq/broadcast/queue/offset", get(broadcast_offsets))
        .route("/mq/consumer/config", post(consumer_config))
        .route("/health", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(gw)
}

#[derive(Serialize)]
struct Envelope<T: Serialize> {
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<T>,
}

fn ok<T: Serialize>(result: T) -> Response {
    Json(Envelope {
        status: 200,
        message: None,
        result: Some(result),
    })
    .into_response()
}

fn fail(e: GatewayError) -> Response {
    Json(Envelope::<()> {
        status: e.status(),
        message: Some(e.to_string()),
        result: None,
    })
    .into_response()
}

fn bad(msg: impl Into<String>) -> GatewayError {
    GatewayError::BadRequest(msg.into())
}

/// Request parameters: the query string, then the body (form or JSON object) on top.
struct Params(HashMap<String, Value>);

impl Params {
    fn parse(
        query: HashMap<String, String>,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Result<Params, GatewayError> {
        let mut p: HashMap<String, Value> = query
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        if body.is_empty() {
            return Ok(Params(p));
        }
        let ctype = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        if ctype.starts_with("application/json") {
            let v: Value = serde_json::from_slice(body)
                .map_err(|e| bad(format!("malformed JSON body: {e}")))?;
            match v {
                Value::Object(m) => p.extend(m),
                _ => return Err(bad("the JSON body must be an object")),
            }
        } else {
            let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
                .map_err(|e| bad(format!("malformed form body: {e}")))?;
            p.extend(pairs.into_iter().map(|(k, v)| (k, Value::String(v))));
        }
        Ok(Params(p))
    }

    fn str(&self, k: &str) -> Option<String> {
        match self.0.get(k)? {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }
    }

    fn required(&self, k: &str) -> Result<String, GatewayError> {
        self.str(k)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| bad(format!("{k} is required")))
    }

    fn int(&self, k: &str) -> Result<Option<i64>, GatewayError> {
        match self.str(k).filter(|s| !s.trim().is_empty()) {
            None => Ok(None),
            Some(s) => s
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| bad(format!("{k} must be an integer, not {s:?}"))),
        }
    }

    fn flag(&self, k: &str) -> bool {
        matches!(self.str(k).as_deref(), Some("true" | "1" | "yes"))
    }

    /// A message body: a string as is, any other JSON value as its JSON text (the guide's
    /// messages are "json or string").
    fn body(&self, k: &str) -> Option<Bytes> {
        match self.0.get(k)? {
            Value::Null => None,
            Value::String(s) => Some(Bytes::from(s.clone())),
            other => Some(Bytes::from(other.to_string())),
        }
    }
}

fn client_ip(headers: &HeaderMap, peer: SocketAddr) -> String {
    let first = |h: &str| {
        headers
            .get(h)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty() && !v.eq_ignore_ascii_case("unknown"))
    };
    first("x-forwarded-for")
        .or_else(|| first("x-real-ip"))
        .unwrap_or_else(|| peer.ip().to_string())
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

async fn produce(
    State(gw): State<Arc<Gateway>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let run = async {
        let p = Params::parse(q, &headers, &body)?;
        let req = ProduceRequest {
            producer: p.required("producer")?,
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
        gw.produce(req).await
    };
    match run.await {
        Ok(r) => ok(json!({
            "sendStatus": r.status.as_str(),
            "msgId": r.msg_id,
            "messageQueue": {
                "topic": r.queue.topic,
                "brokerName": r.queue.broker_name,
                "queueId": r.queue.queue_id,
            },
            "queueOffset": r.queue_offset,
            "offsetMsgId": r.offset_msg_id,
            "regionId": r.region_id,
            "traceOn": true,
        })),
        Err(e) => fail(e),
    }
}

async fn produce_batch(
    State(gw): State<Arc<Gateway>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let run = async {
        let p = Params::parse(q, &headers, &body)?;
        let producer = p.required("producer")?;
        let list = match p.0.get("messages") {
            Some(Value::Array(a)) => a.clone(),
            Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
                Ok(Value::Array(a)) => a,
                _ => return Err(bad("messages must be a JSON array")),
            },
            Some(_) => return Err(bad("messages must be a JSON array")),
            None => return Err(bad("messages is required")),
        };
        let bodies: Vec<Bytes> = list
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Bytes::from(s),
                other => Bytes::from(other.to_string()),
            })
            .collect();
        gw.produce_batch(&producer, bodies).await
    };
    match run.await {
        Ok(results) if results.iter().all(|r| r.is_ok()) => {
            Json(json!({"status": 200})).into_response()
        }
        Ok(results) => {
            let list: Vec<Value> = results
                .into_iter()
                .map(|r| match r {
                    Ok(()) => json!({"status": 200}),
                    Err(e) => json!({"status": e.status(), "message": e.to_string()}),
                })
                .collect();
            Json(json!({"status": 500, "message": "some messages failed to send", "result": list}))
                .into_response()
        }
        Err(e) => fail(e),
    }
}

fn message_json(m: &MessageExt) -> Value {
    let mut v = json!({
        "messageId": m.msg_id(),
        "timestamp": m.store_timestamp,
    });
    match std::str::from_utf8(&m.body) {
        Ok(s) => v["message"] = Value::String(s.to_owned()),
        Err(_) => {
            // Not text: base64, flagged, rather than a lossy string.
            v["message"] = Value::String(base64::engine::general_purpose::STANDARD.encode(&m.body));
            v["encoding"] = Value::String("base64".into());
        }
    }
    if let Some(t) = m.tags() {
        v["tags"] = Value::String(t.to_owned());
    }
    let keys: Vec<&str> = m.keys().collect();
    if !keys.is_empty() {
        v["keys"] = Value::String(keys.join(" "));
    }
    if m.reconsume_times > 0 {
        v["reconsumeTimes"] = json!(m.reconsume_times);
    }
    v
}

struct Common {
    consumer: String,
    topic: String,
    client_id: Option<String>,
    request_id: Option<RequestId>,
    use_cookie: bool,
    params: Params,
}

fn common(
    q: HashMap<String, String>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Common, GatewayError> {
    let params = Params::parse(q, headers, body)?;
    let use_cookie = params.flag("useCookie");
    let rid_text = params
        .str("requestId")
        .filter(|s| !s.is_empty())
        .or_else(|| {
            if use_cookie {
                cookie(headers, "rid").filter(|s| !s.is_empty())
            } else {
                None
            }
        });
    let request_id = match rid_text {
        Some(t) => Some(RequestId::decode(&t).map_err(|e| bad(e.to_string()))?),
        None => None,
    };
    Ok(Common {
        consumer: params.required("consumer")?,
        topic: params.required("topic")?,
        client_id: params.str("clientId").filter(|s| !s.is_empty()),
        request_id,
        use_cookie,
        params,
    })
}

fn with_cookie(mut resp: Response, use_cookie: bool, rid: Option<&str>) -> Response {
    if use_cookie {
        let v = match rid {
            Some(r) => format!("rid={r}; Path=/"),
            None => "rid=; Path=/; Max-Age=0".to_owned(),
        };
        if let Ok(v) = HeaderValue::from_str(&v) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    resp
}

fn fetch_json(r: &FetchResult) -> Value {
    let msgs: Vec<Value> = r.messages.iter().map(message_json).collect();
    let retry: Vec<Value> = r.retry_messages.iter().map(message_json).collect();
    let mut v = json!({
        "status": r.status,
        "msgList": msgs,
        "msgListSize": r.messages.len(),
        "retryMsgList": retry,
        "retryMsgListSize": r.retry_messages.len(),
    });
    if let Some(id) = &r.request_id {
        v["requestId"] = Value::String(id.clone());
    }
    if let Some(a) = &r.ack_info {
        v["ackInfo"] = json!(a);
    }
    if let Some(q) = &r.queue_info {
        v["queueInfo"] = json!(q);
    }
    v
}

async fn message(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let c = match common(q, &headers, &body) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let wait = match c.params.int("waitSeconds") {
        Ok(None) => 0,
        Ok(Some(w)) if (0..=30).contains(&w) => w as u64,
        Ok(Some(w)) => return fail(bad(format!("waitSeconds {w} must be 0..30"))),
        Err(e) => return fail(e),
    };
    let ip = c
        .params
        .str("clientIp")
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| client_ip(&headers, peer));
    let req = FetchRequest {
        consumer: c.consumer,
        topic: c.topic,
        request_id: c.request_id,
        client_id: c.client_id,
        client_ip: Some(ip),
        wait: Duration::from_secs(wait),
    };
    match gw.fetch(req).await {
        Ok(r) => {
            let rid = r.request_id.clone();
            with_cookie(ok(fetch_json(&r)), c.use_cookie, rid.as_deref())
        }
        Err(e) => fail(e),
    }
}

/// `/mq/ack` and `/mq/unlock`: both name a lease by its requestId.
enum LeaseCall {
    Ack,
    Unlock,
}

async fn lease_call(
    gw: Arc<Gateway>,
    q: HashMap<String, String>,
    headers: HeaderMap,
    body: Bytes,
    call: LeaseCall,
) -> Response {
    let c = match common(q, &headers, &body) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let Some(rid) = c.request_id else {
        return fail(bad(
            "requestId is required (parameter, or cookie rid with useCookie=true)",
        ));
    };
    let client_id = c.client_id.as_deref();
    let answer = match call {
        LeaseCall::Ack => gw
            .ack(&c.consumer, &c.topic, client_id, &rid)
            .await
            .map(|info| json!({"status": info.status, "message": info.message})),
        LeaseCall::Unlock => gw
            .unlock(&c.consumer, &c.topic, client_id, &rid)
            .await
            .map(|done| json!({"status": 200, "message": format!("unlock:{done}")})),
    };
    match answer {
        Ok(v) => with_cookie(Json(v).into_response(), c.use_cookie, None),
        Err(e) => fail(e),
    }
}

async fn ack(
    State(gw): State<Arc<Gateway>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    lease_call(gw, q, headers, body, LeaseCall::Ack).await
}

async fn unlock(
    State(gw): State<Arc<Gateway>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    lease_call(gw, q, headers, body, LeaseCall::Unlock).await
}

async fn clustering_offsets(
    State(gw): State<Arc<Gateway>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(consumer) = q.get("consumer").filter(|c| !c.is_empty()) else {
        return fail(bad("consumer is required"));
    };
    match gw.queue_offsets(consumer, None).await {
        Ok(mut v) => ok(v.pop().map(|(_, list)| list).unwrap_or_default()),
        Err(e) => fail(e),
    }
}

async fn broadcast_offsets(
    State(gw): State<Arc<Gateway>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(consumer) = q.get("consumer").filter(|c| !c.is_empty()) else {
        return fail(bad("consumer is required"));
    };
    let client_id = q
        .get("clientId")
        .map(String::as_str)
        .filter(|c| !c.is_empty());
    match gw.queue_offsets(consumer, client_id).await {
        Ok(v) => {
            let map: serde_json::Map<String, Value> = v
                .into_iter()
                .map(|(cid, list)| (cid.unwrap_or_default(), json!(list)))
                .collect();
            ok(map)
        }
        Err(e) => fail(e),
    }
}

async fn consumer_config(
    State(gw): State<Arc<Gateway>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let run = async {
        gw.admin_allowed(
            headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok()),
        )?;
        let p = Params::parse(q, &headers, &body)?;
        let flag = |k: &str| -> Result<Option<bool>, GatewayError> {
            match p.int(k)? {
                None => Ok(None),
                Some(0) => Ok(Some(false)),
                Some(1) => Ok(Some(true)),
                Some(v) => Err(bad(format!("{k} must be 0 or 1, not {v}"))),
            }
        };
        let change = ConsumerConfigChange {
            consumer: p.required("consumer")?,
            client_id: p.str("clientId").filter(|s| !s.is_empty()),
            max_pull_size: p
                .int("maxPullSize")?
                .map(|v| v.clamp(0, u32::MAX as i64) as u32),
            consume_timeout_ms: p.int("consumeTimeoutInMillis")?.map(|v| v.max(0) as u64),
            pause: flag("pause")?,
            rate_limit_enabled: flag("rateLimitEnabled")?,
            limit_rate: p.int("limitRate")?.map(|v| v as f64),
            reset_offset_timestamp: p.int("resetOffsetTimestamp")?,
            retry_msg_id: p.str("retryMsgId"),
        };
        gw.configure(change).await
    };
    match run.await {
        Ok(done) => ok(done),
        Err(e) => fail(e),
    }
}
