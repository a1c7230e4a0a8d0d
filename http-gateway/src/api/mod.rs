//! The HTTP front ends: extract the parameters, call the driver, map the answer. [`mqproxy`] is
//! MQ-Proxy/MQCloud's `/mq/*` API, [`aliyun`] the Aliyun MQ HTTP API beside it. [`app`]
//! wraps the routes of every API in [`cors`].

pub mod aliyun;
pub mod cors;
pub mod mqproxy;
pub mod ops;
pub mod routes;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_cors;
#[cfg(test)]
mod tests_ops;
#[cfg(test)]
mod tests_tokens;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequest, Request};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;

use crate::broker::BrokerApi;
use crate::error::GatewayError;
use crate::service::Gateway;

/// Request bodies above this get the API's own error answer. Large enough for a 4 MiB message
/// even when form-encoded.
pub const BODY_LIMIT: usize = 16 * 1024 * 1024;

/// Every route of the gateway: both APIs and the operator's, counted and logged by
/// [`ops::track`]. The route table is what `/openapi.json` must describe.
pub fn all_routes<B: BrokerApi>(
    gw: Arc<Gateway<B>>,
    aliyun: Arc<aliyun::AliyunApi<B>>,
    ops: Arc<ops::Ops>,
) -> routes::Routes {
    let metrics = gw.metrics().clone();
    let all = mqproxy::routes(gw)
        .merge(aliyun::routes(aliyun))
        .merge(ops::routes(ops));
    ops::tracked(all, metrics)
}

/// `routes` (of one or more APIs, e.g. [`all_routes`]) with CORS around them when configured, so
/// that preflights and error answers of every route carry its headers.
pub fn app(routes: Router, cors_allowed_origins: &[String]) -> Router {
    match cors::layer(cors_allowed_origins) {
        Some(cors) => routes.layer(cors),
        None => routes,
    }
}

/// Why a request failed, as MQ-Proxy answers it: HTTP 200 with the status in the body.
#[derive(Debug)]
pub enum ApiError {
    /// A service error, answered in the envelope with its status ([`GatewayError::status`]).
    Gateway(GatewayError),
    /// An answer of its own, as is (not the envelope).
    Http(Response),
}

impl From<GatewayError> for ApiError {
    fn from(e: GatewayError) -> Self {
        ApiError::Gateway(e)
    }
}

/// MQ-Proxy's envelope: `{"status","message","result"}`.
#[derive(Serialize)]
pub struct Envelope<T: Serialize> {
    /// 200 for success, else the error's ([`GatewayError::status`]: 400, 403, 300, 500); the HTTP
    /// status is 200 either way.
    pub status: u16,
    /// The error's text; absent on success.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The call's answer; absent on error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<T>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Gateway(e) => {
                let mut r = Json(Envelope::<()> {
                    status: e.status(),
                    message: Some(e.to_string()),
                    result: None,
                })
                .into_response();
                r.extensions_mut().insert(ops::ApiStatus(e.status()));
                r
            }
            ApiError::Http(r) => r,
        }
    }
}

/// A success in the envelope.
pub fn ok<T: Serialize>(result: T) -> Response {
    Json(Envelope {
        status: 200,
        message: None,
        result: Some(result),
    })
    .into_response()
}

fn bad(msg: impl Into<String>) -> GatewayError {
    GatewayError::BadRequest(msg.into())
}

/// Request parameters: the query string, then the body (form or JSON object) on top; with the
/// headers and the peer address for what the API reads from them.
pub struct Params {
    values: HashMap<String, Value>,
    /// The request's headers (client address, cookies, authorization, forwarding).
    pub headers: HeaderMap,
    /// The TCP peer, when the server was started with connect info.
    pub peer: Option<SocketAddr>,
    /// Where the access log learns about the request, when it is on.
    note: Option<ops::AccessNote>,
}

impl<S: Send + Sync> FromRequest<S> for Params {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let query: Vec<(String, String)> =
            serde_urlencoded::from_str(req.uri().query().unwrap_or(""))
                .map_err(|e| bad(format!("malformed query string: {e}")))?;
        let headers = req.headers().clone();
        let note = req.extensions().get::<ops::AccessNote>().cloned();
        let peer = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0);
        // In the API's envelope, not axum's plain-text rejection.
        let body = Bytes::from_request(req, state).await.map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                bad(format!(
                    "request body too large: the limit is {BODY_LIMIT} bytes"
                ))
            } else {
                bad(format!("cannot read the request body: {}", r.body_text()))
            }
        })?;
        let mut values: HashMap<String, Value> = query
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        if !body.is_empty() {
            let ctype = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_ascii_lowercase();
            if ctype.starts_with("application/json") {
                let v: Value = serde_json::from_slice(&body)
                    .map_err(|e| bad(format!("malformed JSON body: {e}")))?;
                match v {
                    Value::Object(m) => values.extend(m),
                    _ => return Err(bad("the JSON body must be an object").into()),
                }
            } else {
                let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&body)
                    .map_err(|e| bad(format!("malformed form body: {e}")))?;
                values.extend(pairs.into_iter().map(|(k, v)| (k, Value::String(v))));
            }
        }
        let params = Params {
            values,
            headers,
            peer,
            note,
        };
        if let Some(n) = &params.note {
            n.fill(|k| params.opt(k));
        }
        Ok(params)
    }
}

impl Params {
    /// The raw value of `k` (JSON from a JSON body, else a string).
    pub fn get(&self, k: &str) -> Option<&Value> {
        self.values.get(k)
    }

    /// `k` as text: strings as is, other JSON values as their JSON text; `None` if absent or
    /// null.
    pub fn str(&self, k: &str) -> Option<String> {
        match self.values.get(k)? {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }
    }

    /// A non-empty string parameter, if given.
    pub fn opt(&self, k: &str) -> Option<String> {
        self.str(k).filter(|s| !s.is_empty())
    }

    /// A non-empty string parameter, or a 400 naming it.
    pub fn required(&self, k: &str) -> Result<String, GatewayError> {
        self.opt(k).ok_or_else(|| bad(format!("{k} is required")))
    }

    /// An integer parameter (surrounding spaces allowed); `None` if absent or blank, a 400 if not
    /// an integer.
    pub fn int(&self, k: &str) -> Result<Option<i64>, GatewayError> {
        match self.str(k).filter(|s| !s.trim().is_empty()) {
            None => Ok(None),
            Some(s) => s
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| bad(format!("{k} must be an integer, not {s:?}"))),
        }
    }

    /// `0`/`1` flags (MQCloud's config call).
    pub fn bit(&self, k: &str) -> Result<Option<bool>, GatewayError> {
        match self.int(k)? {
            None => Ok(None),
            Some(0) => Ok(Some(false)),
            Some(1) => Ok(Some(true)),
            Some(v) => Err(bad(format!("{k} must be 0 or 1, not {v}"))),
        }
    }

    /// A boolean switch: `true`, `1` or `yes` is on; anything else, or absence, is off.
    pub fn flag(&self, k: &str) -> bool {
        matches!(self.str(k).as_deref(), Some("true" | "1" | "yes"))
    }

    /// A message body: a string as is, any other JSON value as its JSON text (the guide's
    /// messages are "json or string").
    pub fn body(&self, k: &str) -> Option<Bytes> {
        match self.values.get(k)? {
            Value::Null => None,
            Value::String(s) => Some(Bytes::from(s.clone())),
            other => Some(Bytes::from(other.to_string())),
        }
    }

    /// The value of cookie `name` from the `Cookie` headers.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_owned())
    }

    /// The caller's address: X-Forwarded-For, X-Real-IP, then the peer.
    pub fn client_ip(&self) -> Option<String> {
        let first = |h: &str| {
            self.headers
                .get(h)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty() && !v.eq_ignore_ascii_case("unknown"))
        };
        first("x-forwarded-for")
            .or_else(|| first("x-real-ip"))
            .or_else(|| self.peer.map(|p| p.ip().to_string()))
    }

    /// Whether the caller reached us over HTTPS: the gateway speaks plain HTTP, so only a TLS
    /// proxy in front of it can say so (`X-Forwarded-Proto`, or `Forwarded: proto=https`).
    pub fn https(&self) -> bool {
        let has = |h: &str, pred: &dyn Fn(&str) -> bool| {
            self.headers
                .get_all(h)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .any(pred)
        };
        has("x-forwarded-proto", &|v| {
            v.split(',')
                .next()
                .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"))
        }) || has("forwarded", &|v| {
            v.split([';', ','])
                .any(|kv| kv.trim().eq_ignore_ascii_case("proto=https"))
        })
    }

    /// Tells the access log the requestId the answer hands out.
    pub fn note_request_id(&self, request_id: Option<&str>) {
        if let (Some(n), Some(r)) = (&self.note, request_id) {
            n.set_request_id(r);
        }
    }

    /// The `Authorization` header, if present and ASCII.
    pub fn authorization(&self) -> Option<&str> {
        self.headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
    }

    /// The caller's token: `Authorization: Bearer <token>`, else the `token` parameter (query,
    /// form or JSON), as the guide's jQuery clients can send either.
    pub fn token(&self) -> Option<String> {
        let param = match self.values.get("token") {
            Some(Value::String(s)) => Some(s.as_str()),
            _ => None,
        };
        crate::token::presented(self.authorization(), param).map(str::to_owned)
    }
}
