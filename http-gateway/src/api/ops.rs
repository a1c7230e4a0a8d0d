//! The operator's routes: `GET /metrics` (Prometheus), `/healthz`, `/readyz`, the status page
//! `GET /` with its data `GET /status.json`, and the API description `GET /openapi.json`; and
//! [`track`], the layer that counts every request and writes its access-log line.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use parking_lot::Mutex;

use super::routes::Routes;
use crate::broker::BrokerApi;
use crate::metrics::{Metrics, CONTENT_TYPE};
use crate::observe::{Connections, Readiness, Snapshot};
use crate::service::Gateway;

/// The OpenAPI 3.1 description of every route (`http-gateway/openapi.json`).
pub const OPENAPI: &str = include_str!("../../openapi.json");
const STATUS_PAGE: &str = include_str!("status.html");

/// What the operator's routes read: the driver's snapshot, the readiness the observer loop
/// keeps, and the connection counts it last saw.
pub struct Ops {
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    connections: Mutex<Connections>,
    snapshot: Box<dyn Fn() -> Snapshot + Send + Sync>,
    now_ms: Box<dyn Fn() -> i64 + Send + Sync>,
}

impl Ops {
    /// The routes' state over `gw`, whose counters they show.
    pub fn new<B: BrokerApi>(gw: Arc<Gateway<B>>, readiness: Arc<Readiness>) -> Arc<Self> {
        let g = gw.clone();
        Arc::new(Ops {
            metrics: gw.metrics().clone(),
            readiness,
            connections: Mutex::default(),
            snapshot: Box::new(move || g.snapshot()),
            now_ms: Box::new(move || gw.now_ms()),
        })
    }

    /// Records the connection counts (the observer loop calls it).
    pub fn set_connections(&self, c: Connections) {
        *self.connections.lock() = c;
    }

    /// The whole snapshot: the driver's, with readiness and connections.
    pub fn snapshot(&self) -> Snapshot {
        let mut s = (self.snapshot)();
        s.connections = *self.connections.lock();
        s.ready = self.readiness.view((self.now_ms)());
        s
    }
}

/// The operator's routes over `ops`.
pub fn routes(ops: Arc<Ops>) -> Routes {
    Routes::new()
        .on("/", &[Method::GET], status_page)
        .on("/status.json", &[Method::GET], status_json)
        .on("/metrics", &[Method::GET], metrics)
        .on("/healthz", &[Method::GET], || async { "ok" })
        .on("/readyz", &[Method::GET], readyz)
        .on("/openapi.json", &[Method::GET], openapi)
        .with_state(ops)
}

async fn status_page() -> Html<&'static str> {
    Html(STATUS_PAGE)
}

async fn status_json(State(ops): State<Arc<Ops>>) -> Json<Snapshot> {
    Json(ops.snapshot())
}

async fn metrics(State(ops): State<Arc<Ops>>) -> Response {
    let text = ops.metrics.encode(&ops.snapshot());
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response()
}

async fn readyz(State(ops): State<Arc<Ops>>) -> Response {
    match ops.readiness.check((ops.now_ms)()) {
        Ok(()) => "ready".into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// The status of a `/mq/*` answer in its envelope (HTTP says 200 either way), set by the error
/// answers so that metrics and logs count it.
#[derive(Debug, Clone, Copy)]
pub struct ApiStatus(pub u16);

/// What the handlers tell the access log about a request (consumer, producer, requestId), when
/// the access log is on.
#[derive(Debug, Clone, Default)]
pub struct AccessNote(Arc<Mutex<AccessFields>>);

#[derive(Debug, Default)]
struct AccessFields {
    consumer: Option<String>,
    producer: Option<String>,
    request_id: Option<String>,
}

impl AccessNote {
    /// Notes the request's parameters `consumer`, `producer` and `requestId` (`get` reads one).
    pub fn fill(&self, get: impl Fn(&str) -> Option<String>) {
        let mut f = self.0.lock();
        f.consumer = get("consumer");
        f.producer = get("producer");
        f.request_id = get("requestId");
    }

    /// Notes the requestId an answer hands out (a fetch's new batch).
    pub fn set_request_id(&self, request_id: &str) {
        self.0.lock().request_id = Some(request_id.to_owned());
    }
}

/// The state of [`track`]: the counters and the route templates of the router.
#[derive(Clone)]
pub struct Tracker {
    metrics: Arc<Metrics>,
    paths: Arc<[&'static str]>,
}

/// The log target of the access log (`RUST_LOG=rmq_gateway::access=off` silences it).
pub const ACCESS_TARGET: &str = "rmq_gateway::access";

/// Wraps every route of `routes` in [`track`].
pub fn tracked(routes: Routes, metrics: Arc<Metrics>) -> Routes {
    let tracker = Tracker {
        metrics,
        paths: routes.entries().iter().map(|e| e.path).collect(),
    };
    routes.map(|r| r.layer(axum::middleware::from_fn_with_state(tracker, track)))
}

fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::DELETE => "DELETE",
        Method::PUT => "PUT",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

/// Counts the request (method, route template, status, latency) and, when the access log is
/// on, writes one line for it.
pub async fn track(State(t): State<Tracker>, mut req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = method_label(req.method());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .and_then(|m| t.paths.iter().find(|p| **p == m.as_str()).copied())
        .unwrap_or("unmatched");
    let log = tracing::enabled!(target: ACCESS_TARGET, tracing::Level::INFO);
    let note = log.then(|| {
        let n = AccessNote::default();
        req.extensions_mut().insert(n.clone());
        let query = req.uri().query().unwrap_or("").to_owned();
        (n, req.uri().path().to_owned(), query)
    });
    let resp = next.run(req).await;
    let took = start.elapsed();
    let http_status = resp.status().as_u16();
    let status = resp
        .extensions()
        .get::<ApiStatus>()
        .map_or(http_status, |s| s.0);
    t.metrics.http_request(method, route, status, took);
    if let Some((note, path, query)) = note {
        let f = note.0.lock();
        let from_query = |k: &str| form_urlencoded_get(&query, k);
        let consumer = f.consumer.clone().or_else(|| from_query("consumer"));
        let producer = f.producer.clone().or_else(|| from_query("producer"));
        let request_id = f.request_id.clone().or_else(|| {
            resp.headers()
                .get(super::cors::REQUEST_ID_HEADER)
                .and_then(|v: &HeaderValue| v.to_str().ok())
                .map(str::to_owned)
        });
        tracing::info!(
            target: ACCESS_TARGET,
            method,
            path = %path,
            route,
            status,
            http_status,
            duration_ms = took.as_micros() as f64 / 1000.0,
            consumer = consumer.as_deref(),
            producer = producer.as_deref(),
            request_id = request_id.as_deref(),
            "request"
        );
    }
    resp
}

/// The first value of `key` in a query string.
fn form_urlencoded_get(query: &str, key: &str) -> Option<String> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(query)
        .ok()?
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}
