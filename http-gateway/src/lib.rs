#![warn(missing_docs)]
//! `rmq-gateway`: RocketMQ over HTTP with MQ-Proxy/MQCloud's `/mq/*` API.
//!
//! [`engine`] is the sans-IO core (queue table with per-message receipts, broker-lock
//! bookkeeping, settings); [`service`] drives it against the broker through the [`broker`] and
//! [`clock`] seams; [`api`] holds the HTTP front ends.

pub mod api;
pub mod broker;
pub mod clock;
pub mod config;
pub mod engine;
pub mod error;
pub mod request_id;
pub mod service;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod token;
