//! Exit codes a script can rely on, and the one stderr line that goes with them.

use rmq_client::ClientError;
use rmq_remoting::ResponseCode;

/// Exit statuses of `rmq` (also listed in `rmq --help`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Ok = 0,
    Failure = 1,
    /// Also what clap exits with on a usage error.
    BadArgument = 2,
    UnknownTopic = 3,
    Unreachable = 4,
    NotFound = 5,
}

/// Errors the command line raises itself (the client's errors are classified as they come).
#[derive(Debug)]
pub enum CliError {
    BadArgument(String),
    UnknownTopic(String),
    NotFound(String),
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::BadArgument(m) => write!(f, "bad argument: {m}"),
            CliError::UnknownTopic(t) => write!(f, "topic {t} does not exist"),
            CliError::NotFound(m) => write!(f, "not found: {m}"),
        }
    }
}

impl std::error::Error for CliError {}

/// The exit status for an error: the first classifiable cause in its chain decides.
pub fn classify(err: &anyhow::Error) -> Exit {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<CliError>() {
            return match e {
                CliError::BadArgument(_) => Exit::BadArgument,
                CliError::UnknownTopic(_) => Exit::UnknownTopic,
                CliError::NotFound(_) => Exit::NotFound,
            };
        }
        if let Some(e) = cause.downcast_ref::<ClientError>() {
            return match e {
                ClientError::TopicNotExist(_) | ClientError::NoWritableQueue(_) => {
                    Exit::UnknownTopic
                }
                ClientError::Broker { code, .. } => match *code {
                    ResponseCode::TopicNotExist => Exit::UnknownTopic,
                    ResponseCode::SubscriptionGroupNotExist | ResponseCode::QueryNotFound => {
                        Exit::NotFound
                    }
                    ResponseCode::InvalidParameter | ResponseCode::MessageIllegal => {
                        Exit::BadArgument
                    }
                    _ => Exit::Failure,
                },
                ClientError::InvalidArgument(_)
                | ClientError::BadAddress(_)
                | ClientError::MessageTooLarge { .. }
                | ClientError::NoNameServer => Exit::BadArgument,
                ClientError::Message(_) => Exit::BadArgument,
                e if e.is_transport() => Exit::Unreachable,
                _ => Exit::Failure,
            };
        }
    }
    Exit::Failure
}

/// The error as one line: causes joined by ": " (skipping a cause its parent's text already
/// ends with, as `ClientError::Connect` does), line breaks folded.
pub fn one_line(err: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if out.ends_with(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn classification() {
        let e = anyhow::Error::from(ClientError::TopicNotExist("T".into())).context("route");
        assert_eq!(classify(&e), Exit::UnknownTopic);
        let e = anyhow::Error::from(ClientError::Connect {
            addr: "127.0.0.1:1".into(),
            source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        });
        assert_eq!(classify(&e), Exit::Unreachable);
        let e = anyhow::Error::from(ClientError::Broker {
            addr: "a".into(),
            code: ResponseCode::TopicNotExist,
            remark: None,
        });
        assert_eq!(classify(&e), Exit::UnknownTopic);
        let e: anyhow::Result<()> = Err(CliError::BadArgument("x".into())).context("while y");
        let e = e.unwrap_err();
        assert_eq!(classify(&e), Exit::BadArgument);
        assert_eq!(one_line(&e), "while y: bad argument: x");
        assert_eq!(classify(&anyhow::anyhow!("other")), Exit::Failure);
        let e = anyhow::Error::from(ClientError::InvalidArgument("a\nb".into()));
        assert_eq!(classify(&e), Exit::BadArgument);
        assert!(!one_line(&e).contains('\n'));
        let e = anyhow::Error::from(ClientError::Connect {
            addr: "h:1".into(),
            source: std::io::Error::other("refused"),
        })
        .context("cluster info");
        assert_eq!(one_line(&e), "cluster info: cannot connect to h:1: refused");
    }
}
