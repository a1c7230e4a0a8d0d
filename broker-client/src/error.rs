//! The client's typed errors.

use std::time::Duration;

use rmq_remoting::{BodyError, CodecError, HeaderError, MessageError, ResponseCode};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ClientError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("connecting to {addr} timed out after {timeout:?}")]
    ConnectTimeout { addr: String, timeout: Duration },
    #[error("request {code} to {addr} timed out after {timeout:?}")]
    Timeout {
        addr: String,
        code: i32,
        timeout: Duration,
    },
    #[error("not dialling {addr} again for {retry_in:?} after failed dials: {last_error}")]
    Reconnecting {
        addr: String,
        retry_in: Duration,
        last_error: String,
    },
    #[error("connection to {addr} closed: {reason}")]
    ConnectionClosed { addr: String, reason: String },
    #[error("invalid address {0:?}")]
    BadAddress(String),
    #[error("codec error: {0}")]
    Codec(#[from] CodecError),
    #[error("{addr} answered {code}{}", remark.as_deref().map(|r| format!(": {r}")).unwrap_or_default())]
    Broker {
        addr: String,
        code: ResponseCode,
        remark: Option<String>,
    },
    #[error("bad response header: {0}")]
    Header(#[from] HeaderError),
    #[error("bad response body: {0}")]
    Body(#[from] BodyError),
    #[error("bad message: {0}")]
    Message(#[from] MessageError),
    #[error("no name server configured")]
    NoNameServer,
    #[error("topic {0} does not exist")]
    TopicNotExist(String),
    #[error("topic {0} has no writable queue")]
    NoWritableQueue(String),
    #[error("topic {topic} has no readable queue on broker {broker}")]
    NoSuchQueue { topic: String, broker: String },
    #[error("broker {0} has no master address in the route")]
    NoBrokerAddress(String),
    #[error("message body of {size} bytes exceeds the limit of {max} bytes")]
    MessageTooLarge { size: usize, max: usize },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("not supported: {0}")]
    NotSupported(String),
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

pub type Result<T, E = ClientError> = std::result::Result<T, E>;
