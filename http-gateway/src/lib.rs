//! `rmq-gateway`: RocketMQ over HTTP with MQ-Proxy/MQCloud's `/mq/*` API.
//!
//! [`lock_table`] is the sans-IO queue-lease state machine; [`gateway`] drives it against the
//! broker (offsets, locks, pulls, sends); [`http`] is the axum layer.

pub mod api;
pub mod config;
pub mod gateway;
pub mod http;
pub mod lock_table;
pub mod rate;
pub mod request_id;
