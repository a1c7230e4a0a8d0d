//! Client configuration.

use std::time::Duration;

use rmq_remoting::acl::{AclCredentials, AclFlavor};
use rmq_remoting::{
    LanguageCode, SerializeType, DEFAULT_LANGUAGE, DEFAULT_MAX_FRAME, DEFAULT_VERSION,
};

/// Settings shared by every connection of a client.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Name servers, tried in turn when one fails (`host:port`).
    pub namesrv_addrs: Vec<String>,
    /// Default timeout of a request/response exchange (Java: 3 s).
    pub request_timeout: Duration,
    /// How long a dial may take.
    pub connect_timeout: Duration,
    /// After a failed dial, requests to that address fail at once for this long before the next
    /// dial is tried; the wait doubles with every further failure up to `reconnect_backoff_max`
    /// and resets when a dial succeeds.
    pub reconnect_backoff: Duration,
    /// The longest wait between two dials of one address.
    pub reconnect_backoff_max: Duration,
    /// How often cached topic routes are refreshed (Java: 30 s).
    pub route_refresh_interval: Duration,
    /// How often brokers are sent a heartbeat (Java: 30 s; brokers forget clients after 120 s).
    pub heartbeat_interval: Duration,
    /// The largest frame sent or accepted, length field included.
    pub max_frame: usize,
    /// Header serialization of our requests; responses are decoded whatever they use.
    pub serialize_type: SerializeType,
    /// The language our requests announce.
    pub language: LanguageCode,
    /// The version ordinal our requests announce.
    pub version: i32,
    /// ACL signing of every request, when the brokers need it.
    pub credentials: Option<AclCredentials>,
    /// Which signature scheme (4.x or 5.x brokers).
    pub acl_flavor: AclFlavor,
    /// Identifies this client to brokers: `<ip>@<instance>`; stable for the process.
    pub client_ip: String,
    /// The instance part of the client id; unique per client by default.
    pub instance_name: String,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            namesrv_addrs: Vec::new(),
            request_timeout: Duration::from_secs(3),
            connect_timeout: Duration::from_secs(3),
            reconnect_backoff: Duration::from_millis(100),
            reconnect_backoff_max: Duration::from_secs(5),
            route_refresh_interval: Duration::from_secs(30),
            heartbeat_interval: Duration::from_secs(30),
            max_frame: DEFAULT_MAX_FRAME,
            serialize_type: SerializeType::Json,
            language: DEFAULT_LANGUAGE,
            version: DEFAULT_VERSION,
            credentials: None,
            acl_flavor: AclFlavor::V4,
            client_ip: "127.0.0.1".into(),
            instance_name: format!("{}#{}", std::process::id(), unique_suffix()),
        }
    }
}

impl ClientConfig {
    /// A config for name servers given as Java does (`host:port;host:port`).
    pub fn new(namesrv: &str) -> Self {
        ClientConfig {
            namesrv_addrs: namesrv
                .split([';', ','])
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            ..Default::default()
        }
    }

    /// `<client_ip>@<instance_name>`.
    pub fn client_id(&self) -> String {
        format!("{}@{}", self.client_ip, self.instance_name)
    }
}

fn unique_suffix() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}
