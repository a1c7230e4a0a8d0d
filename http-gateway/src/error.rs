//! The gateway's error classes and the one mapping from broker errors to them.

use crate::broker::BrokerError;

/// Outcome classes of the gateway's calls (MQ-Proxy's body `status`).
#[derive(Debug, Clone, thiserror::Error)]
pub enum GatewayError {
    /// 400: the request is wrong; nothing was sent, no offset moved.
    #[error("{0}")]
    BadRequest(String),
    /// 300: the message may or may not have been stored (timeout after the bytes left).
    #[error("{0}")]
    Unknown(String),
    /// 500: the broker or the gateway failed.
    #[error("{0}")]
    Internal(String),
    /// 403: the admin API refused the caller.
    #[error("{0}")]
    Forbidden(String),
}

impl GatewayError {
    /// The status code MQ-Proxy puts in the body's `status` for this class.
    pub fn status(&self) -> u16 {
        match self {
            GatewayError::BadRequest(_) => 400,
            GatewayError::Unknown(_) => 300,
            GatewayError::Internal(_) => 500,
            GatewayError::Forbidden(_) => 403,
        }
    }

    /// A [`GatewayError::BadRequest`] with `msg`.
    pub fn bad(msg: impl Into<String>) -> Self {
        GatewayError::BadRequest(msg.into())
    }
}

/// The one mapping of a broker failure, for a single send and for each item of a batch alike.
impl From<BrokerError> for GatewayError {
    fn from(e: BrokerError) -> Self {
        match e {
            BrokerError::Invalid(m) => GatewayError::BadRequest(m),
            BrokerError::OutcomeUnknown(m) => {
                GatewayError::Unknown(format!("send outcome unknown, resend if needed: {m}"))
            }
            e @ (BrokerError::TopicNotExist(_) | BrokerError::Failed(_)) => {
                GatewayError::Internal(e.to_string())
            }
        }
    }
}
