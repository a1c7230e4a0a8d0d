//! The Aliyun MQ ("ONS") HTTP API, the one Tencent TDMQ also offers, so the official MQ HTTP
//! SDKs work against the gateway unchanged: `POST|GET|DELETE /topics/{topic}/messages` at the
//! root of the listener (the Go SDK signs `/` + resource, so there is no prefix).
//!
//! [`auth`] checks signatures and dates, [`xml`] reads and writes the bodies, [`error`] is the
//! error type, [`names`] maps instance ids to namespaces, [`props`] and [`tags`] the message
//! fields, [`handle`] the receipt handles, [`params`] the query strings, [`publish`] sends,
//! [`consume`] turns a delivered message into what the SDKs read, [`receive`] consumes and acks
//! on the gateway engine's per-message receipts, [`forward`] passes acks on to the instance that
//! delivered the message, if [`peers`] finds it a live member of the group.

pub mod auth;
pub mod config;
pub mod consume;
pub mod error;
pub mod forward;
pub mod handle;
pub mod names;
pub mod params;
pub mod peers;
pub mod props;
pub mod publish;
pub mod receive;
pub mod request_id;
pub mod tags;
pub mod xml;

use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use rmq_client::MQClient;

use crate::broker::BrokerApi;
use crate::service::Gateway;

pub use config::AliyunConfig;
use error::{invalid_argument, xml_response, AliyunError, Code};
use params::{AckParams, ConsumeParams, PublishParams};

/// Request bodies are read up to this size; a message body is limited to the broker's 4 MiB
/// after XML unescaping, and escaping can make the document several times larger.
const MAX_REQUEST_BODY: usize = 32 * 1024 * 1024;

/// The API's state: who may call, where messages go, the driver that hands them out.
pub struct AliyunApi<B: BrokerApi> {
    credentials: auth::Credentials,
    publisher: publish::Publisher,
    gateway: Arc<Gateway<B>>,
    config: AliyunConfig,
    node: forward::Node,
    peers: peers::Peers,
}

impl<B: BrokerApi> AliyunApi<B> {
    /// Publishes through `client` under `config.producer_group`, consumes through `gateway`.
    /// The config is expected to have passed [`AliyunConfig::validate`].
    ///
    /// Other instances pass acks on to this one only if the gateway's broker client id names
    /// this run and its advertised address ([`forward::instance_name`]): its receipt handles
    /// then name that run. With any other client id they name a run without an address, and
    /// are acked only here.
    pub fn new(client: MQClient, gateway: Arc<Gateway<B>>, config: &AliyunConfig) -> Arc<Self> {
        let owner = forward::owner_of(gateway.instance_id()).unwrap_or_else(|| {
            tracing::info!(client_id = %gateway.instance_id(), "the broker client id names no \
                advertised address: Aliyun acks through other instances cannot reach this one");
            handle::Owner::fresh("")
        });
        Arc::new(AliyunApi {
            credentials: config.credentials(),
            publisher: publish::Publisher::new(
                client,
                &config.producer_group,
                gateway.metrics().clone(),
            ),
            gateway,
            config: config.clone(),
            node: forward::Node::new(owner),
            peers: peers::Peers::default(),
        })
    }

    /// The `[aliyun]` settings the API runs with.
    pub fn config(&self) -> &AliyunConfig {
        &self.config
    }
}

/// The routes, to merge into the gateway's router.
pub fn router<B: BrokerApi>(api: Arc<AliyunApi<B>>) -> Router {
    routes(api).into_router()
}

/// [`router`] with its route table: publish, consume and ack; other methods get
/// `InvalidRequestURL`.
pub fn routes<B: BrokerApi>(api: Arc<AliyunApi<B>>) -> crate::api::routes::Routes {
    use axum::http::Method as M;
    crate::api::routes::Routes::new()
        .any(
            "/topics/{topic}/messages",
            &[M::POST, M::GET, M::DELETE],
            dispatch::<B>,
        )
        .with_state(api)
}

/// Per request: its id and the endpoint the client called, for `RequestId`/`HostId`.
struct Ctx {
    request_id: String,
    host_id: String,
}

impl Ctx {
    fn new(headers: &HeaderMap) -> Self {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        Ctx {
            request_id: request_id::next(),
            host_id: format!("http://{host}"),
        }
    }

    fn fail(&self, e: AliyunError) -> Response {
        if e.code.status().is_server_error() {
            tracing::warn!(request_id = %self.request_id, error = %e, "aliyun api");
        } else {
            tracing::debug!(request_id = %self.request_id, error = %e, "aliyun api");
        }
        e.at(&self.request_id, &self.host_id).into_response()
    }
}

/// The topic of `/topics/{topic}/messages`, as sent (names are not percent-encoded).
fn topic_of(uri: &Uri) -> &str {
    uri.path()
        .strip_prefix("/topics/")
        .and_then(|p| p.strip_suffix("/messages"))
        .unwrap_or("")
}

async fn dispatch<B: BrokerApi>(
    State(api): State<Arc<AliyunApi<B>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let ctx = Ctx::new(&headers);
    match serve(&api, &ctx, &method, &uri, &headers, body).await {
        Ok(r) => r,
        Err(e) => ctx.fail(e),
    }
}

async fn serve<B: BrokerApi>(
    api: &AliyunApi<B>,
    ctx: &Ctx,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, AliyunError> {
    let target = uri
        .path_and_query()
        .map(|pq| pq.as_str())
        .unwrap_or_else(|| uri.path());
    let auth = api
        .credentials
        .verify(method, target, headers, SystemTime::now());
    // Read the body whatever the answer: hyper closes a keep-alive connection whose request body
    // was left unread, and the Python SDK then fails its next request with a broken pipe.
    let body = read_body(body).await;
    auth?;
    let body = body?;
    let topic = topic_of(uri);
    let query = uri.query();
    match *method {
        Method::POST => {
            let params = PublishParams::parse(query)?;
            let topic = params.ns.topic(topic)?;
            let req = xml::parse_publish(&body)?;
            let done = api.publisher.publish(&topic, req).await?;
            api.gateway.wake(&topic);
            Ok(xml_response(
                StatusCode::CREATED,
                &ctx.request_id,
                xml::publish_document(&done.message_id, &done.body_md5),
            ))
        }
        Method::GET => {
            let params = ConsumeParams::parse(query)?;
            let got =
                receive::consume(&api.gateway, &api.config, &api.node, topic, &params).await?;
            if got.is_empty() {
                return Err(AliyunError::new(
                    Code::MessageNotExist,
                    "Message not exist.",
                ));
            }
            Ok(xml_response(
                StatusCode::OK,
                &ctx.request_id,
                xml::messages_document(&got),
            ))
        }
        Method::DELETE => {
            let params = AckParams::parse(query)?;
            let handles = xml::parse_receipt_handles(&body)?;
            let forwarded = headers.contains_key(forward::FORWARDED_BY);
            let plan = receive::ack(
                &api.gateway,
                &api.config,
                &api.node,
                topic,
                &params,
                &handles,
                forwarded,
            )
            .await?;
            let mut failures = plan.failures;
            let (group, topic) = (&plan.group, &plan.topic);
            let remote = plan.remote.iter().map(|(owner, idx)| {
                let mine: Vec<String> = idx.iter().map(|&i| handles[i].clone()).collect();
                let body = body.clone();
                async move {
                    let failed = if api.peers.is_member(&api.gateway, group, topic, owner).await {
                        api.node.forward(owner, target, headers, body, &mine).await
                    } else {
                        // Not a live gateway of the group: dead, or an address the caller
                        // wrote. Nothing is sent there.
                        tracing::info!(owner = %owner.addr, %group, "ack for a gateway that is \
                            not a member of the group: expired, not passed on");
                        forward::fail_all(
                            &mine,
                            Code::MessageNotExist,
                            "The receipt handle expired: the gateway instance that delivered \
                             the message is no longer a member of the consumer group, so its \
                             hold on the message ended and the message is delivered again under \
                             a new handle."
                                .into(),
                        )
                    };
                    // Back to the request's order: by handle text (a handle may repeat).
                    idx.iter()
                        .zip(&mine)
                        .filter_map(|(&i, h)| {
                            failed
                                .iter()
                                .find(|f| &f.handle == h)
                                .map(|f| (i, f.clone()))
                        })
                        .collect::<Vec<_>>()
                }
            });
            failures.extend(
                futures::future::join_all(remote)
                    .await
                    .into_iter()
                    .flatten(),
            );
            failures.sort_by_key(|(i, _)| *i);
            let failures: Vec<_> = failures.into_iter().map(|(_, f)| f).collect();
            if failures.is_empty() {
                Ok(no_content(&ctx.request_id))
            } else {
                Ok(xml_response(
                    StatusCode::NOT_FOUND,
                    &ctx.request_id,
                    xml::ack_errors_document(&failures),
                ))
            }
        }
        _ => Err(AliyunError::new(
            Code::InvalidRequestURL,
            format!("{method} is not an operation on /topics/{{topic}}/messages."),
        )),
    }
}

async fn read_body(body: Body) -> Result<bytes::Bytes, AliyunError> {
    axum::body::to_bytes(body, MAX_REQUEST_BODY)
        .await
        .map_err(|e| {
            invalid_argument(format!(
                "The request body could not be read or is larger than {MAX_REQUEST_BODY} bytes: {e}."
            ))
        })
}

/// The answer of a fully successful ack: 204, no body, the request id.
fn no_content(request_id: &str) -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    if let Ok(v) = axum::http::HeaderValue::from_str(request_id) {
        r.headers_mut().insert(error::REQUEST_ID_HEADER, v);
    }
    r
}
#[cfg(test)]
mod tests;
