//! The client's typed errors.

use std::time::Duration;

use rmq_remoting::{BodyError, CodecError, HeaderError, MessageError, ResponseCode};
use thiserror::Error;

/// Everything a client call can fail with.
///
/// [`is_transport`](ClientError::is_transport), [`is_timeout`](ClientError::is_timeout) and
/// [`is_closed`](ClientError::is_closed) group the variants a caller usually acts on.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Dialling an address failed.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The address dialled.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Dialling an address took longer than the connect timeout.
    #[error("connecting to {addr} timed out after {timeout:?}")]
    ConnectTimeout {
        /// The address dialled.
        addr: String,
        /// The connect timeout.
        timeout: Duration,
    },
    /// No answer within the request's timeout; the request may still have been carried out.
    #[error("request {code} to {addr} timed out after {timeout:?}")]
    Timeout {
        /// The peer.
        addr: String,
        /// The request code.
        code: i32,
        /// The timeout.
        timeout: Duration,
    },
    /// The last dials of the address failed; the next is not tried before `retry_in`.
    #[error("not dialling {addr} again for {retry_in:?} after failed dials: {last_error}")]
    Reconnecting {
        /// The address.
        addr: String,
        /// Until the next dial.
        retry_in: Duration,
        /// Why the last dial failed.
        last_error: String,
    },
    /// The connection closed before the answer came.
    #[error("connection to {addr} closed: {reason}")]
    ConnectionClosed {
        /// The peer.
        addr: String,
        /// Why it closed.
        reason: String,
    },
    /// An address that is not `host:port`.
    #[error("invalid address {0:?}")]
    BadAddress(String),
    /// A frame could not be encoded or decoded.
    #[error("codec error: {0}")]
    Codec(#[from] CodecError),
    /// The broker or name server answered with an error code.
    #[error("{addr} answered {code}{}", remark.as_deref().map(|r| format!(": {r}")).unwrap_or_default())]
    Broker {
        /// The peer.
        addr: String,
        /// Its response code.
        code: ResponseCode,
        /// Its explanation.
        remark: Option<String>,
    },
    /// A response header lacks a field or has a bad value.
    #[error("bad response header: {0}")]
    Header(#[from] HeaderError),
    /// A response body does not parse.
    #[error("bad response body: {0}")]
    Body(#[from] BodyError),
    /// A message record does not decode, or a message cannot be encoded.
    #[error("bad message: {0}")]
    Message(#[from] MessageError),
    /// The configuration names no name server.
    #[error("no name server configured")]
    NoNameServer,
    /// The name servers do not know the topic.
    #[error("topic {0} does not exist")]
    TopicNotExist(String),
    /// The topic's route has no queue producers may write.
    #[error("topic {0} has no writable queue")]
    NoWritableQueue(String),
    /// The broker has no readable queue of the topic.
    #[error("topic {topic} has no readable queue on broker {broker}")]
    NoSuchQueue {
        /// The topic.
        topic: String,
        /// The broker name.
        broker: String,
    },
    /// The routes name no master for the broker.
    #[error("broker {0} has no master address in the route")]
    NoBrokerAddress(String),
    /// A body (or batch) over the producer's limit.
    #[error("message body of {size} bytes exceeds the limit of {max} bytes")]
    MessageTooLarge {
        /// Its size in bytes.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A caller's argument is out of range; says which and why.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The broker cannot do what was asked (e.g. timer messages before 5.0).
    #[error("not supported: {0}")]
    NotSupported(String),
    /// The client or producer was shut down.
    #[error("the client is shut down")]
    Shutdown,
}

impl ClientError {
    /// The broker's response code, when the error is a broker answer.
    pub fn response_code(&self) -> Option<ResponseCode> {
        match self {
            ClientError::Broker { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Transport failures: the request may not have reached the peer, or its answer was lost.
    pub fn is_transport(&self) -> bool {
        matches!(
            self,
            ClientError::Connect { .. }
                | ClientError::ConnectTimeout { .. }
                | ClientError::Timeout { .. }
                | ClientError::Reconnecting { .. }
                | ClientError::ConnectionClosed { .. }
                | ClientError::Codec(_)
        )
    }

    /// A dial or a request ran out of time. After a request timeout the request may still have
    /// been carried out.
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            ClientError::Timeout { .. } | ClientError::ConnectTimeout { .. }
        )
    }

    /// The connection closed under the request, or the client was shut down.
    pub fn is_closed(&self) -> bool {
        matches!(
            self,
            ClientError::ConnectionClosed { .. } | ClientError::Shutdown
        )
    }
}

/// The client's result type.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;
