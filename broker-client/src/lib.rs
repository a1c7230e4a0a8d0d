//! `rmq-client`: a RocketMQ name-server and broker client built on `rmq-remoting`.
//!
//! Layers, bottom up: [`connection::Connection`] (one multiplexed TCP connection),
//! [`remoting_client::RemotingClient`] (a pool, one connection per address, with ACL signing),
//! [`route`] (name servers with failover, topic routes turned into queues).

pub mod admin;
pub mod client;
pub mod config;
pub mod connection;
pub mod consumer;
pub mod consumer_api;
pub mod error;
pub mod producer;
pub mod remoting_client;
pub mod route;

pub use client::MQClient;
pub use config::ClientConfig;
pub use consumer::{PullConsumer, PullConsumerConfig, StartFrom};
pub use consumer_api::{PullRequest, PullResult, PullStatus};
pub use error::{ClientError, Result};
pub use producer::{Message, Producer, ProducerConfig, QueueSelector, SendResult, SendStatus};
pub use rmq_remoting as remoting;
