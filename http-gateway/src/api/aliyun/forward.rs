//! Acks through another instance than the one that delivered: a delivery lives in the memory of
//! the instance that handed the message out (it also holds the queue's broker lock), so an ack
//! arriving elsewhere is passed on to that instance, named by the receipt handle
//! ([`super::handle::Owner`]). No store beyond the broker and the leaseholder's memory.
//!
//! The original request is sent on as it came (method, target, signed headers, body): the
//! signature covers neither the host nor headers outside `x-mq-*`, so the owner checks the
//! caller's own signature and date, and no secret of the gateway is involved. The owner acks
//! the handles it delivered and lists the others as failures; this instance takes from its
//! answer only the outcomes of the handles it sent there. [`FORWARDED_BY`] keeps a forwarded
//! request from being forwarded again.
//!
//! Handles are not secret-signed: a caller holding valid credentials could write another
//! address into one, and the ack would be sent there. Only a gateway's own error document is
//! passed back from such an answer, never other content.
//!
//! An owner that does not answer is dead or cut off: its broker locks lapse, its deliveries with
//! them, and the messages come again under new handles. Such handles fail with
//! `MessageNotExist`, what the Aliyun service answers for a handle that expired.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use bytes::Bytes;

use super::error::Code;
use super::handle::Owner;
use super::xml::{self, AckFailure};

/// Marks a request one gateway instance passed on to another (its value: the sender's
/// address). Not an `x-mq-` header, so it leaves the signature intact.
pub const FORWARDED_BY: &str = "x-rmq-forwarded-by";

/// How long an owner has to answer a forwarded ack.
const TIMEOUT: Duration = Duration::from_secs(5);

/// This instance as receipt handles name it, and the client it forwards acks with.
pub struct Node {
    owner: Owner,
    http: reqwest::Client,
}

impl Node {
    /// This run of the process, reachable by other instances at `advertise` (`host:port`;
    /// empty if unknown: then handles it writes are acked only here).
    pub fn new(advertise: &str) -> Self {
        Node {
            owner: Owner {
                incarnation: fresh_incarnation(),
                addr: advertise.to_owned(),
            },
            http: reqwest::Client::builder()
                .timeout(TIMEOUT)
                .connect_timeout(Duration::from_secs(2))
                .build()
                // Only TLS setup can fail, and this client has no TLS.
                .expect("an HTTP client without TLS builds"),
        }
    }

    /// The owner written into this instance's handles.
    pub fn owner(&self) -> &Owner {
        &self.owner
    }

    /// Where a handle's ack is done.
    pub fn route(&self, owner: Option<&Owner>) -> Route {
        match owner {
            // Version 1 handles, and handles of this very run.
            None => Route::Here,
            Some(o) if o.incarnation == self.owner.incarnation => Route::Here,
            // The address of this instance, an earlier run of it: that run's leases ended.
            Some(o) if !o.addr.is_empty() && o.addr == self.owner.addr => Route::Gone,
            Some(o) if o.addr.is_empty() => Route::Unreachable,
            Some(o) => Route::There(o.addr.clone()),
        }
    }

    /// Sends the ack request on to `addr` and returns the failures among `handles` (those of
    /// the request that `addr` delivered).
    pub async fn forward(
        &self,
        addr: &str,
        target: &str,
        headers: &HeaderMap,
        body: Bytes,
        handles: &[String],
    ) -> Vec<AckFailure> {
        let fail_all = |code: Code, message: String| {
            handles
                .iter()
                .map(|h| AckFailure {
                    code: code.as_str().to_owned(),
                    message: message.clone(),
                    handle: h.clone(),
                })
                .collect()
        };
        let mut sent = HeaderMap::new();
        for (k, v) in headers {
            if !matches!(
                *k,
                header::HOST
                    | header::CONTENT_LENGTH
                    | header::CONNECTION
                    | header::TRANSFER_ENCODING
            ) {
                sent.append(k.clone(), v.clone());
            }
        }
        if let Ok(v) = HeaderValue::from_str(&self.owner.addr) {
            sent.insert(FORWARDED_BY, v);
        }
        let answer = self
            .http
            .request(Method::DELETE, format!("http://{addr}{target}"))
            .headers(sent)
            .body(body)
            .send()
            .await;
        let answer = match answer {
            Ok(a) => a,
            Err(e) => {
                tracing::info!(owner = %addr, error = %e, "forwarded ack: owner unreachable");
                return fail_all(
                    Code::MessageNotExist,
                    format!(
                        "The receipt handle expired: the gateway instance that delivered the \
                         message ({addr}) does not answer ({e}), so its hold on the message \
                         ends and the message is delivered again under a new handle."
                    ),
                );
            }
        };
        let status = answer.status();
        let text = answer.bytes().await.unwrap_or_default();
        if status == StatusCode::NO_CONTENT {
            return Vec::new();
        }
        if status == StatusCode::NOT_FOUND {
            if let Some(failures) = xml::parse_ack_errors(&text) {
                return failures
                    .into_iter()
                    .filter(|f| handles.contains(&f.handle))
                    .collect();
            }
        }
        // An error of the request as a whole (say the owner has other credentials). Only a
        // gateway's own error document is passed back: the address came from a handle, and
        // what else answers there is none of the caller's business.
        let (code, message) = xml::parse_error(&text)
            .unwrap_or_else(|| (Code::InternalError.as_str().to_owned(), String::new()));
        tracing::warn!(owner = %addr, %status, %code, %message, "forwarded ack refused");
        let code = if code == Code::MessageNotExist.as_str() {
            Code::MessageNotExist
        } else {
            Code::ReceiptHandleError
        };
        fail_all(
            code,
            format!(
                "The gateway instance that delivered the message ({addr}) refused the ack with \
                 {status} {message}"
            ),
        )
    }
}

/// Where one handle is acked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// This instance delivered it (or the handle predates owners).
    Here,
    /// An earlier run of this instance delivered it: the delivery ended with that run.
    Gone,
    /// Another instance, whose address the handle does not carry.
    Unreachable,
    /// The instance at this address.
    There(String),
}

/// A number that differs between runs of the process (and between instances).
fn fresh_incarnation() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let me = Node::new("127.0.0.1:8080");
        let other = Node::new("127.0.0.1:8081");
        assert_ne!(me.owner().incarnation, other.owner().incarnation);
        assert_eq!(me.route(None), Route::Here);
        assert_eq!(me.route(Some(me.owner())), Route::Here);
        assert_eq!(
            me.route(Some(other.owner())),
            Route::There("127.0.0.1:8081".into())
        );
        let earlier = Owner {
            incarnation: me.owner().incarnation ^ 1,
            addr: "127.0.0.1:8080".into(),
        };
        assert_eq!(me.route(Some(&earlier)), Route::Gone);
        let anonymous = Node::new("");
        assert_eq!(me.route(Some(anonymous.owner())), Route::Unreachable);
        assert_eq!(anonymous.route(Some(anonymous.owner())), Route::Here);
    }

    #[tokio::test]
    async fn a_dead_owner_expires_the_handles() {
        let me = Node::new("127.0.0.1:1");
        // Nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let got = me
            .forward(
                &format!("127.0.0.1:{port}"),
                "/topics/T/messages?consumer=G",
                &HeaderMap::new(),
                Bytes::new(),
                &["h1".into(), "h2".into()],
            )
            .await;
        assert_eq!(got.len(), 2);
        assert!(got.iter().all(|f| f.code == "MessageNotExist"), "{got:?}");
        assert_eq!(got[1].handle, "h2");
    }
}
