//! `rmq-client`: a RocketMQ name-server and broker client built on `rmq-remoting`.
//!
//! Layers, bottom up: [`connection::Connection`] (one multiplexed TCP connection),
//! [`remoting_client::RemotingClient`] (a pool, one connection per address, with ACL signing),
//! [`route`] (name servers with failover, topic routes turned into queues).

pub mod config;
pub mod connection;
pub mod error;
pub mod remoting_client;
pub mod route;

pub use config::ClientConfig;
pub use error::{ClientError, Result};
pub use rmq_remoting as remoting;
