#![warn(missing_docs)]
//! `rmq-client`: a RocketMQ name-server and broker client built on `rmq-remoting`.
//!
//! Layers, bottom up: [`connection::Connection`] (one multiplexed TCP connection),
//! [`remoting_client::RemotingClient`] (a pool, one connection per address, with ACL signing),
//! [`route`] (name servers with failover, topic routes turned into queues), [`MQClient`] (routes,
//! heartbeats and every broker request), [`Producer`] and [`PullConsumer`].
//!
//! ```no_run
//! use rmq_client::{ClientConfig, MQClient, Message, Producer, ProducerConfig};
//! use rmq_client::{PullConsumer, PullConsumerConfig};
//!
//! # async fn run() -> Result<(), rmq_client::ClientError> {
//! let client = MQClient::start(ClientConfig::new("127.0.0.1:9876"))?;
//! let producer = Producer::new(client.clone(), ProducerConfig::new("demo-producer"));
//! producer.send(Message::new("demo", "hello")).await?;
//! let consumer = PullConsumer::start(client.clone(), PullConsumerConfig::new("demo-group", "demo")).await?;
//! for m in consumer.poll(16).await? {
//!     println!("{}", String::from_utf8_lossy(&m.body));
//! }
//! consumer.shutdown().await?;
//! client.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! Every async method is cancel safe: a dropped future leaves nothing behind in the client (see
//! [`MQClient`] for what that means for the broker).

pub mod admin;
pub mod broker_requests;
pub mod client;
pub mod config;
pub mod connection;
pub mod consumer;
pub mod error;
pub mod producer;
pub mod remoting_client;
pub mod route;

pub use broker_requests::{MessageKey, PullRequest, PullResult, PullStatus};
pub use client::MQClient;
pub use config::ClientConfig;
pub use consumer::{PullConsumer, PullConsumerConfig, StartFrom};
pub use error::{ClientError, Result};
pub use producer::{Message, Producer, ProducerConfig, QueueSelector, SendResult, SendStatus};
pub use rmq_remoting as remoting;
