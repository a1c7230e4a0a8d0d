//! Cross-origin access for web pages (`cors_allowed_origins`): tower-http's `CorsLayer` around
//! the whole app, so preflight `OPTIONS` is answered for every route of every API, and error
//! answers carry the headers too (a browser hides an answer without them, status 0).

use axum::http::{header, HeaderName, HeaderValue, Method};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// Aliyun's request id: scripts can read it only when exposed.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-mq-request-id");

/// How long a browser may cache a preflight answer.
const MAX_AGE_SECS: u64 = 600;

/// The layer for the configured origins (validated by `Config::validate`), or `None` when CORS
/// is off. With listed origins, credentials (cookies) are allowed, which `useCookie` needs
/// across origins; with `*` they cannot be (the Fetch standard forbids `*` with credentials).
pub fn layer(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let base = CorsLayer::new()
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .expose_headers([REQUEST_ID_HEADER])
        .max_age(std::time::Duration::from_secs(MAX_AGE_SECS));
    if origins.iter().any(|o| o == "*") {
        return Some(base.allow_origin(AllowOrigin::any()));
    }
    let list: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o.trim_end_matches('/')).ok())
        .collect();
    Some(
        base.allow_origin(AllowOrigin::list(list))
            .allow_credentials(true),
    )
}
