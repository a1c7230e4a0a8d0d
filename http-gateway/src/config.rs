//! Gateway configuration: a TOML file, then environment variables, then command-line flags.

use std::path::Path;

use serde::Deserialize;

/// The gateway's settings: where it listens, which name servers it uses, and the producers and
/// consumers it serves (each by name). Build with [`Config::from_toml`]/[`Config::load`], layer
/// [`Overrides`] with [`Config::apply`], then [`Config::validate`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The HTTP listen address (`host:port`); `127.0.0.1:8080` by default.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Name server addresses (`host:port`); at least one is required.
    #[serde(default)]
    pub namesrv: Vec<String>,
    /// AccessKey for the brokers' ACL: requests are signed with it; set with `secret_key`.
    #[serde(default)]
    pub access_key: Option<String>,
    /// SecretKey signing broker requests under `access_key`.
    #[serde(default)]
    pub secret_key: Option<String>,
    /// Serve the stated producers and consumers only (true), as the file is the contract.
    #[serde(default, rename = "producer")]
    pub producers: Vec<ProducerConfig>,
    /// The consumers callers may use, each by its name.
    #[serde(default, rename = "consumer")]
    pub consumers: Vec<ConsumerConfig>,
    /// Enables `POST /mq/consumer/config` for callers sending `Authorization: Bearer <token>`.
    #[serde(default)]
    pub admin_token: Option<String>,
    /// Upper bound of `waitSeconds` (long polling) on /mq/message.
    #[serde(default = "default_max_wait")]
    pub max_wait_seconds: u64,
    /// Web origins (`"https://app.example.com"`) whose pages may call the HTTP APIs, or `["*"]`
    /// for any; CORS is off when this is absent or empty.
    #[serde(default)]
    pub cors_allowed_origins: Vec<String>,
    /// The Aliyun MQ HTTP API (`/topics/{topic}/messages`).
    #[serde(default)]
    pub aliyun: crate::api::aliyun::AliyunConfig,
    /// Where the other gateway instances reach this one over HTTP (`host:port`), so that an
    /// Aliyun ack arriving at another instance is passed on here; the listen address by
    /// default (with 127.0.0.1 for an unspecified IP such as 0.0.0.0).
    #[serde(default)]
    pub advertise: Option<String>,
}

/// A producer callers may send through, by name (MQ-Proxy's `producer` parameter).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProducerConfig {
    /// The name callers use; unique among producers.
    pub name: String,
    /// The topic every message of this producer goes to.
    pub topic: String,
    /// Producer group announced to brokers; the name by default.
    #[serde(default)]
    pub group: Option<String>,
    /// When set, sends need it (`Authorization: Bearer <token>` or a `token` parameter).
    #[serde(default)]
    pub token: Option<String>,
}

/// How a consumer's messages are shared among its callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// One broker group: each message goes to one caller.
    Clustering,
    /// Each clientId is its own broker group (`<group>_<clientId>`) and sees every message.
    #[serde(alias = "broadcasting")]
    Broadcast,
}

/// Where a group with no committed offset on a queue starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartFrom {
    /// The queue's first message still stored (its min offset).
    Earliest,
    /// Only messages stored from now on (the queue's max offset).
    Latest,
}

/// A consumer callers may fetch from, by name (MQ-Proxy's `consumer` parameter).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerConfig {
    /// The name callers use; unique among consumers.
    pub name: String,
    /// The topic consumed (and its `%RETRY%` topic).
    pub topic: String,
    /// Clustering (default) or broadcast.
    #[serde(default = "default_mode")]
    pub mode: Mode,
    /// Most messages one pull asks a queue for (a batch): 1..=128, 32 by default.
    #[serde(default = "default_pull_size")]
    pub max_pull_size: u32,
    /// How long a fetched message stays invisible before it is handed out again, in ms; at least
    /// 1000, 300000 (5 minutes) by default.
    #[serde(default = "default_timeout")]
    pub consume_timeout_ms: u64,
    /// Where a group with no committed offset starts (the guide says the earliest).
    #[serde(default = "default_start")]
    pub start_from: StartFrom,
    /// The broker-side consumer group; the name by default.
    #[serde(default)]
    pub group: Option<String>,
    /// How a queue's messages are handed out: "exclusive" (one batch per queue at a time, as
    /// the MQ-Proxy API needs) or "shared" (several callers at once, each message invisible
    /// until its own deadline; receipt-based APIs only).
    #[serde(default)]
    pub queue_mode: QueueModeConfig,
    /// Deliveries after which a message goes to the group's dead-letter queue (receipt-based
    /// APIs); unlimited if absent.
    #[serde(default)]
    pub max_deliveries: Option<u32>,
    /// Messages of one queue in flight beyond which nothing new is pulled from it (receipt-based
    /// APIs); unlimited if absent.
    #[serde(default)]
    pub max_unacked_per_queue: Option<usize>,
    /// When set, fetches, acks, unlocks and offset views need it (`Authorization: Bearer
    /// <token>` or a `token` parameter; the admin token also opens the offset views).
    #[serde(default)]
    pub token: Option<String>,
}

/// The file's `queue_mode`: how a consumer's queues hand out messages (see
/// [`crate::engine::QueueMode`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueModeConfig {
    /// One batch per queue at a time (the default; what MQ-Proxy's requestId ack needs).
    #[default]
    Exclusive,
    /// Overlapping deliveries, each message invisible until its own deadline.
    Shared,
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}
fn default_mode() -> Mode {
    Mode::Clustering
}
fn default_pull_size() -> u32 {
    32
}
fn default_timeout() -> u64 {
    300_000
}
fn default_start() -> StartFrom {
    StartFrom::Earliest
}
fn default_max_wait() -> u64 {
    30
}

/// Why the configuration cannot be used; the message names the setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The path as given.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML, or does not fit the schema (unknown keys are refused).
    #[error("invalid config: {0}")]
    Parse(#[from] toml::de::Error),
    /// A value is out of range or settings contradict each other.
    #[error("invalid config: {0}")]
    Invalid(String),
}

impl Config {
    /// Parses a configuration file's text (no validation: see [`Config::validate`]).
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let c: Config = toml::from_str(text)?;
        Ok(c)
    }

    /// Reads and parses the file at `path` (no validation).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&text)
    }

    /// Settings from the environment or the command line, on top of the file.
    pub fn apply(&mut self, o: Overrides) {
        if let Some(v) = o.listen {
            self.listen = v;
        }
        if let Some(v) = o.namesrv {
            self.namesrv = split_addrs(&v);
        }
        if let Some(v) = o.access_key {
            self.access_key = Some(v);
        }
        if let Some(v) = o.secret_key {
            self.secret_key = Some(v);
        }
        if let Some(v) = o.admin_token {
            self.admin_token = Some(v);
        }
        if let Some(v) = o.max_wait_seconds {
            self.max_wait_seconds = v;
        }
        if let Some(v) = o.cors_origins {
            self.cors_allowed_origins = split_addrs(&v);
        }
        if let Some(v) = o.advertise {
            self.advertise = Some(v);
        }
        if let (Some(id), Some(secret)) = (o.aliyun_access_key_id, o.aliyun_access_key_secret) {
            self.aliyun.add_credential(id, secret);
        }
    }

    /// Checks what the types cannot: a name server is set, credentials come in pairs,
    /// `max_wait_seconds` ≤ 300, names are unique, topics are valid, pull sizes and timeouts are
    /// in range, CORS origins are origins, the Aliyun settings hold. Call it after
    /// [`Config::apply`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.namesrv.is_empty() {
            return bad(
                "no name server: set `namesrv` in the file, RMQ_NAMESRV or --namesrv".into(),
            );
        }
        self.aliyun.validate().map_err(ConfigError::Invalid)?;
        if self.access_key.is_some() != self.secret_key.is_some() {
            return bad("access_key and secret_key go together".into());
        }
        if self.max_wait_seconds > 300 {
            return bad("max_wait_seconds above 300".into());
        }
        self.validate_cors()?;
        if let Some(a) = &self.advertise {
            let ok = a.rsplit_once(':').is_some_and(|(h, p)| {
                !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0) && !a.contains(['/', ' '])
            });
            if !ok || a.len() > 255 {
                return bad(format!(
                    "advertise {a:?} is not host:port (at most 255 characters, e.g. \"10.0.0.7:8080\")"
                ));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for p in &self.producers {
            if !seen.insert(("p", p.name.clone())) {
                return bad(format!("producer {:?} is declared twice", p.name));
            }
            rmq_client::producer::validate_topic(&p.topic)
                .or_else(|e| bad(format!("producer {:?}: {e}", p.name)))?;
        }
        for c in &self.consumers {
            if !seen.insert(("c", c.name.clone())) {
                return bad(format!("consumer {:?} is declared twice", c.name));
            }
            rmq_client::producer::validate_topic(&c.topic)
                .or_else(|e| bad(format!("consumer {:?}: {e}", c.name)))?;
            if !(1..=128).contains(&c.max_pull_size) {
                return bad(format!(
                    "consumer {:?}: max_pull_size must be 1..=128",
                    c.name
                ));
            }
            if c.consume_timeout_ms < 1000 {
                return bad(format!(
                    "consumer {:?}: consume_timeout_ms below 1000",
                    c.name
                ));
            }
        }
        Ok(())
    }
}

impl Config {
    /// An origin is what a browser sends in `Origin`: `scheme://host[:port]`, nothing after.
    fn validate_cors(&self) -> Result<(), ConfigError> {
        let origins = &self.cors_allowed_origins;
        if origins.iter().any(|o| o == "*") {
            if origins.len() > 1 {
                return Err(ConfigError::Invalid(
                    "cors_allowed_origins: \"*\" stands alone (it already allows every origin)"
                        .into(),
                ));
            }
            return Ok(());
        }
        for o in origins {
            let rest = o
                .strip_prefix("http://")
                .or_else(|| o.strip_prefix("https://"));
            let ok = matches!(rest, Some(r) if !r.is_empty()
                && !r.contains(['/', '?', '#', ' ', '*'])
                && r.is_ascii());
            if !ok {
                return Err(ConfigError::Invalid(format!(
                    "cors_allowed_origins: {o:?} is not an origin like \"https://app.example.com\" \
                     or \"http://127.0.0.1:8000\" (scheme and host, no path), nor \"*\""
                )));
            }
        }
        Ok(())
    }
}

/// What the binary's flags and environment variables may override.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Replaces [`Config::listen`] (`--listen`, `RMQ_GATEWAY_LISTEN`).
    pub listen: Option<String>,
    /// Replaces [`Config::namesrv`]: addresses separated by `;` or `,`.
    pub namesrv: Option<String>,
    /// Replaces [`Config::access_key`].
    pub access_key: Option<String>,
    /// Replaces [`Config::secret_key`].
    pub secret_key: Option<String>,
    /// Replaces [`Config::admin_token`].
    pub admin_token: Option<String>,
    /// Replaces [`Config::max_wait_seconds`].
    pub max_wait_seconds: Option<u64>,
    /// Comma-separated origins, or `*`; an empty string turns CORS off.
    pub cors_origins: Option<String>,
    /// One more AccessKey pair for the Aliyun MQ HTTP API.
    pub aliyun_access_key_id: Option<String>,
    /// The SecretKey of `aliyun_access_key_id`; the pair is added only when both are set.
    pub aliyun_access_key_secret: Option<String>,
    /// Replaces [`Config::advertise`] (`--advertise-addr`, `RMQ_GATEWAY_ADVERTISE_ADDR`).
    pub advertise: Option<String>,
}

/// Splits a `;`- or `,`-separated list (RocketMQ's namesrv address format), trimming spaces and
/// dropping empty entries.
pub fn split_addrs(v: &str) -> Vec<String> {
    v.split([';', ','])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issue_shape_parses_with_defaults() {
        let c = Config::from_toml(
            r#"
listen = "127.0.0.1:8080"
namesrv = ["127.0.0.1:9876"]
[[producer]]
name = "orders-producer"
topic = "orders"
[[consumer]]
name = "orders-consumer"
topic = "orders"
mode = "clustering"          # or "broadcast"
max_pull_size = 32
consume_timeout_ms = 300000
[[consumer]]
name = "b"
topic = "orders"
mode = "broadcast"
"#,
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.producers[0].topic, "orders");
        assert_eq!(c.consumers[1].mode, Mode::Broadcast);
        assert_eq!(c.consumers[1].max_pull_size, 32);
        assert_eq!(c.consumers[1].consume_timeout_ms, 300_000);
        assert_eq!(c.consumers[1].start_from, StartFrom::Earliest);
    }

    #[test]
    fn mistakes_are_reported() {
        assert!(Config::from_toml("listen = 1").is_err());
        assert!(Config::from_toml("lisen = \"x\"").is_err());
        let c = Config::from_toml("[[producer]]\nname=\"p\"\ntopic=\"bad topic\"").unwrap();
        assert!(c.validate().is_err(), "no namesrv");
        let mut c =
            Config::from_toml("namesrv=[\"a:1\"]\n[[producer]]\nname=\"p\"\ntopic=\"bad topic\"")
                .unwrap();
        assert!(c.validate().is_err());
        c.producers[0].topic = "ok".into();
        c.validate().unwrap();
        c.apply(Overrides {
            namesrv: Some("x:1;y:2".into()),
            max_wait_seconds: Some(5),
            ..Overrides::default()
        });
        assert_eq!(c.namesrv, vec!["x:1", "y:2"]);
        assert_eq!(c.max_wait_seconds, 5);
        assert!(c.listen.starts_with("127.0.0.1"), "untouched");
    }

    #[test]
    fn cors_origins_from_the_file_and_the_environment() {
        let c = Config::from_toml("namesrv=[\"a:1\"]").unwrap();
        assert!(c.cors_allowed_origins.is_empty(), "off unless set");
        let mut c = Config::from_toml(
            "namesrv=[\"a:1\"]\ncors_allowed_origins=[\"https://app.example.com\", \"http://127.0.0.1:8000\"]",
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.cors_allowed_origins.len(), 2);
        c.apply(Overrides {
            cors_origins: Some("*".into()),
            ..Overrides::default()
        });
        assert_eq!(c.cors_allowed_origins, vec!["*"]);
        c.validate().unwrap();
        c.apply(Overrides {
            cors_origins: Some(String::new()),
            ..Overrides::default()
        });
        assert!(
            c.cors_allowed_origins.is_empty(),
            "an empty variable turns it off"
        );
        for bad in [
            "app.example.com",
            "https://app.example.com/",
            "https://app.example.com/page",
            "ftp://x",
            "https://*.example.com",
        ] {
            c.cors_allowed_origins = vec![bad.into()];
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains("cors_allowed_origins"), "{bad}: {e}");
        }
        c.cors_allowed_origins = vec!["*".into(), "https://a.example".into()];
        assert!(c.validate().is_err(), "* with others");
    }
}

#[cfg(test)]
mod tests_advertise_tokens {
    use super::*;

    #[test]
    fn advertise_is_host_port_and_tokens_are_read() {
        let base = "namesrv = [\"127.0.0.1:9876\"]\n";
        let c = Config::from_toml(&format!(
            "{base}advertise = \"10.0.0.7:8080\"\n[[producer]]\nname = \"p\"\ntopic = \"T\"\n\
             token = \"pt\"\n[[consumer]]\nname = \"c\"\ntopic = \"T\"\ntoken = \"ct\"\n"
        ))
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.advertise.as_deref(), Some("10.0.0.7:8080"));
        assert_eq!(c.producers[0].token.as_deref(), Some("pt"));
        assert_eq!(c.consumers[0].token.as_deref(), Some("ct"));
        for bad in ["10.0.0.7", ":8080", "h:0", "h:99999", "http://h:1", "h:1/x"] {
            let c = Config::from_toml(&format!("{base}advertise = \"{bad}\"\n")).unwrap();
            assert!(c.validate().is_err(), "{bad}");
        }
        let mut c = Config::from_toml(base).unwrap();
        c.apply(Overrides {
            advertise: Some("gw-1.internal:8080".into()),
            ..Default::default()
        });
        c.validate().unwrap();
        assert_eq!(c.advertise.as_deref(), Some("gw-1.internal:8080"));
    }
}
