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
//! Handles are not secret-signed: a caller holding valid credentials can write any address
//! into one. So an ack travels only to a live gateway instance of the group: every instance's
//! broker client id carries its incarnation and advertised address ([`instance_name`]), and a
//! handle's owner must be among the client ids a master broker of the topic lists for the group
//! (GET_CONSUMER_LIST_BY_GROUP, [`super::peers`]); any other owner is answered as a dead one,
//! without a connection to its address. Even from a listed instance only a gateway's own error
//! document is passed back, never other content.
//!
//! The instance name (the part of the client id after `ip@`) of a gateway is
//! `rmq-gateway#<pid>#<incarnation, 16 lower-case hex digits>#<advertised host:port>`, e.g.
//! client id `10.0.0.7@rmq-gateway#4711#00c0ffee12345678#10.0.0.7:8080` (the address is empty
//! when unknown). Advertised addresses are limited to [`valid_advertise`]'s characters, so the
//! id has no blank, `@`, `#`, `,` or `;` beyond its separators.
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

/// The prefix of a gateway's instance name ([`instance_name`]).
const NAME_PREFIX: &str = "rmq-gateway#";

/// Whether `addr` may be advertised (and so be part of a client id): `host:port` of ASCII
/// letters, digits and `. - _ : [ ]` (IPv6 in brackets), at most 255 bytes.
pub fn valid_advertise(addr: &str) -> bool {
    addr.len() <= 255
        && addr
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_:[]".contains(&b))
}

/// The broker client's instance name for the run `owner` of this process.
pub fn instance_name(owner: &Owner) -> String {
    format!(
        "{NAME_PREFIX}{}#{:016x}#{}",
        std::process::id(),
        owner.incarnation,
        owner.addr
    )
}

/// The gateway run a broker client id (`ip@instance name`) names; `None` for other clients.
pub fn owner_of(client_id: &str) -> Option<Owner> {
    let (_ip, name) = client_id.split_once('@')?;
    let mut parts = name.strip_prefix(NAME_PREFIX)?.splitn(3, '#');
    let _pid: u32 = parts.next()?.parse().ok()?;
    let incarnation = parts.next()?;
    if incarnation.len() != 16 {
        return None;
    }
    let incarnation = u64::from_str_radix(incarnation, 16).ok()?;
    let addr = parts.next()?;
    valid_advertise(addr).then(|| Owner {
        incarnation,
        addr: addr.to_owned(),
    })
}

impl Owner {
    /// A new run of this process, reachable by other instances at `advertise` (`host:port`;
    /// empty if unknown).
    pub fn fresh(advertise: &str) -> Self {
        Owner {
            incarnation: fresh_incarnation(),
            addr: advertise.to_owned(),
        }
    }
}

impl Node {
    /// This run of the process as handles name it (`owner.addr` empty: handles it writes are
    /// acked only here).
    pub fn new(owner: Owner) -> Self {
        Node {
            owner,
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
            Some(o) => Route::There(o.clone()),
        }
    }

    /// Sends the ack request on to `owner` (a listed member of the group: [`super::peers`])
    /// and returns the failures among `handles` (those of the request that `owner` delivered).
    pub async fn forward(
        &self,
        owner: &Owner,
        target: &str,
        headers: &HeaderMap,
        body: Bytes,
        handles: &[String],
    ) -> Vec<AckFailure> {
        let addr = owner.addr.as_str();
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
                    handles,
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
            handles,
            code,
            format!(
                "The gateway instance that delivered the message ({addr}) refused the ack with \
                 {status} {message}"
            ),
        )
    }
}

/// The same failure for each of `handles`.
pub fn fail_all(handles: &[String], code: Code, message: String) -> Vec<AckFailure> {
    handles
        .iter()
        .map(|h| AckFailure {
            code: code.as_str().to_owned(),
            message: message.clone(),
            handle: h.clone(),
        })
        .collect()
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
    /// Another run of a gateway, at its address: acked there if it is a live member of the
    /// group.
    There(Owner),
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
        let me = Node::new(Owner::fresh("127.0.0.1:8080"));
        let other = Node::new(Owner::fresh("127.0.0.1:8081"));
        assert_ne!(me.owner().incarnation, other.owner().incarnation);
        assert_eq!(me.route(None), Route::Here);
        assert_eq!(me.route(Some(me.owner())), Route::Here);
        assert_eq!(
            me.route(Some(other.owner())),
            Route::There(other.owner().clone())
        );
        let earlier = Owner {
            incarnation: me.owner().incarnation ^ 1,
            addr: "127.0.0.1:8080".into(),
        };
        assert_eq!(me.route(Some(&earlier)), Route::Gone);
        let anonymous = Node::new(Owner::fresh(""));
        assert_eq!(me.route(Some(anonymous.owner())), Route::Unreachable);
        assert_eq!(anonymous.route(Some(anonymous.owner())), Route::Here);
    }

    #[tokio::test]
    async fn a_dead_owner_expires_the_handles() {
        let me = Node::new(Owner::fresh("127.0.0.1:1"));
        // Nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let got = me
            .forward(
                &Owner::fresh(&format!("127.0.0.1:{port}")),
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

    #[test]
    fn client_ids_name_the_run_and_its_address() {
        for addr in ["10.0.0.7:8080", "[::1]:8080", "gw-1.example.com:80", ""] {
            let o = Owner::fresh(addr);
            let id = format!("10.0.0.7@{}", instance_name(&o));
            assert_eq!(owner_of(&id), Some(o), "{id}");
            assert!(!id.contains([' ', ',', ';']), "{id}");
        }
        for other in [
            "10.0.0.7@4711#123456789",
            "10.0.0.7@rmq-gateway@4711#1700000000000",
            "10.0.0.7@rmq-gateway#4711#12#10.0.0.7:80",
            "10.0.0.7@rmq-gateway#x#00c0ffee12345678#10.0.0.7:80",
            "10.0.0.7@rmq-gateway#1#00c0ffee12345678#a b:80",
            "rmq-gateway#1#00c0ffee12345678#10.0.0.7:80",
        ] {
            assert_eq!(owner_of(other), None, "{other}");
        }
        assert!(valid_advertise("[fe80::1]:8080"));
        assert!(!valid_advertise("evil.com/x?y=1"));
        assert!(!valid_advertise("a@b:1"));
    }
}
