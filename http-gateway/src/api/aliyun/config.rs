//! The `[aliyun]` table of the gateway's TOML.
//!
//! ```toml
//! [aliyun]
//! credentials = [{ access_key_id = "ak", access_key_secret = "sk" }]
//! invisible_time_ms = 300000     # a consumed message comes again after this unless acked
//! max_reconsume_times = 16       # deliveries before a message goes to %DLQ%{group}
//! max_unacked_per_queue = 2000   # like the Java client's consumeConcurrentlyMaxSpan
//! producer_group = "rmq-gateway-aliyun"
//! start_from = "earliest"        # where a new group starts: "earliest" or "latest"
//! ```
//!
//! `RMQ_ALIYUN_ACCESS_KEY_ID` / `RMQ_ALIYUN_ACCESS_KEY_SECRET` add one more pair. Without any
//! pair the API refuses every request.

use serde::Deserialize;

use crate::config::StartFrom;

use super::auth::{Credentials, Secret};

/// One AccessKey pair of `[aliyun] credentials`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialConfig {
    /// The AccessKeyId the SDKs send in `Authorization: MQ <id>:<signature>`; non-empty, without
    /// ':' or blanks.
    pub access_key_id: String,
    /// The AccessKeySecret the signatures are made with; non-empty, never printed.
    pub access_key_secret: String,
}

impl std::fmt::Debug for CredentialConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialConfig")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// The `[aliyun]` table (see the module docs for an example); [`AliyunConfig::validate`]
/// checks the ranges.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AliyunConfig {
    /// The AccessKey pairs requests may be signed with; none: every request is refused
    /// (`AccessDenied`).
    #[serde(default)]
    pub credentials: Vec<CredentialConfig>,
    /// How long a consumed message stays invisible unless acked, in ms (1000 ms to 12 h,
    /// default 300000 like Aliyun): its `NextConsumeTime` is this long after the consume.
    #[serde(default = "default_invisible")]
    pub invisible_time_ms: u64,
    /// Deliveries after which an unacked message goes to the group's dead-letter queue
    /// `%DLQ%{group}` instead of coming again (1..=1000, default 16).
    #[serde(default = "default_reconsume")]
    pub max_reconsume_times: u32,
    /// Unacked messages of one queue beyond which nothing new is pulled from it (16..=1000000,
    /// default 2000).
    #[serde(default = "default_window")]
    pub max_unacked_per_queue: usize,
    /// The producer group messages are sent under.
    #[serde(default = "default_group")]
    pub producer_group: String,
    /// Where a group without a committed offset starts: "earliest" (default: the group comes
    /// into being with its first consume, so nothing published before is skipped) or "latest"
    /// (Aliyun's start for a group created in its console ahead of time).
    #[serde(default = "default_start")]
    pub start_from: StartFrom,
}

fn default_invisible() -> u64 {
    300_000
}
fn default_reconsume() -> u32 {
    16
}
fn default_window() -> usize {
    2000
}
fn default_start() -> StartFrom {
    StartFrom::Earliest
}
fn default_group() -> String {
    "rmq-gateway-aliyun".into()
}

impl Default for AliyunConfig {
    fn default() -> Self {
        AliyunConfig {
            credentials: Vec::new(),
            invisible_time_ms: default_invisible(),
            max_reconsume_times: default_reconsume(),
            max_unacked_per_queue: default_window(),
            producer_group: default_group(),
            start_from: default_start(),
        }
    }
}

impl AliyunConfig {
    /// One more AccessKey pair (from `--aliyun-access-key-id`/`RMQ_ALIYUN_ACCESS_KEY_ID` and
    /// its secret), replacing a pair of the file with the same id.
    pub fn add_credential(&mut self, id: String, secret: String) {
        self.credentials.retain(|c| c.access_key_id != id);
        self.credentials.push(CredentialConfig {
            access_key_id: id,
            access_key_secret: secret,
        });
    }

    /// Checks the credentials and the ranges of the numbers; the error names the bad setting.
    pub fn validate(&self) -> Result<(), String> {
        let mut seen = std::collections::HashSet::new();
        for c in &self.credentials {
            if c.access_key_id.is_empty() || c.access_key_secret.is_empty() {
                return Err(
                    "[aliyun] credentials need a non-empty access_key_id and access_key_secret"
                        .into(),
                );
            }
            if c.access_key_id.contains(':') || c.access_key_id.contains(char::is_whitespace) {
                return Err(format!(
                    "[aliyun] access_key_id {:?} may contain neither ':' nor blanks",
                    c.access_key_id
                ));
            }
            if !seen.insert(&c.access_key_id) {
                return Err(format!(
                    "[aliyun] access_key_id {:?} is declared twice",
                    c.access_key_id
                ));
            }
        }
        if !(1000..=12 * 3600 * 1000).contains(&self.invisible_time_ms) {
            return Err("[aliyun] invisible_time_ms must be 1000 ms to 12 h".into());
        }
        if !(1..=1000).contains(&self.max_reconsume_times) {
            return Err("[aliyun] max_reconsume_times must be 1..=1000".into());
        }
        if !(16..=1_000_000).contains(&self.max_unacked_per_queue) {
            return Err("[aliyun] max_unacked_per_queue must be 16..=1000000".into());
        }
        if self.producer_group.is_empty() {
            return Err("[aliyun] producer_group is empty".into());
        }
        Ok(())
    }

    /// The configured pairs as the verifier wants them.
    pub fn credentials(&self) -> Credentials {
        Credentials::new(self.credentials.iter().map(|c| {
            (
                c.access_key_id.clone(),
                Secret::new(c.access_key_secret.clone()),
            )
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_file_and_environment() {
        let c = AliyunConfig::default();
        assert_eq!(c.invisible_time_ms, 300_000);
        assert_eq!(c.max_reconsume_times, 16);
        assert_eq!(c.max_unacked_per_queue, 2000);
        assert!(c.credentials().is_empty());
        c.validate().unwrap();
        let mut c: AliyunConfig = toml::from_str(
            "credentials = [{ access_key_id = \"ak\", access_key_secret = \"sk\" }]\ninvisible_time_ms = 5000",
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.invisible_time_ms, 5000);
        c.add_credential("ak2".into(), "sk2".into());
        assert_eq!(c.credentials.len(), 2);
        assert!(!format!("{c:?}").contains("sk2"), "secrets are not printed");
        assert!(toml::from_str::<AliyunConfig>("invisible_time = 1").is_err());
        let bad = AliyunConfig {
            invisible_time_ms: 10,
            ..Default::default()
        };
        assert!(bad.validate().is_err());
        let mut bad = AliyunConfig::default();
        bad.credentials.push(CredentialConfig {
            access_key_id: "a:b".into(),
            access_key_secret: "s".into(),
        });
        assert!(bad.validate().is_err());
    }
}
