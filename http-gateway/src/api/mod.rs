//! The HTTP front ends: extract the parameters, call the driver, map the answer. [`mqproxy`] is
//! MQ-Proxy/MQCloud's `/mq/*` API, [`aliyun`] the Aliyun MQ HTTP API beside it. [`app`]
//! wraps the routes of every API in [`cors`].

pub mod aliyun;
pub mod cors;
mod json_text;
pub mod mqproxy;
pub mod ops;
mod params;
pub mod routes;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_cors;
#[cfg(test)]
mod tests_ops;
#[cfg(test)]
mod tests_tokens;

use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::Serialize;

use crate::broker::BrokerApi;
use crate::error::GatewayError;
use crate::service::Gateway;

pub use params::Params;

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
