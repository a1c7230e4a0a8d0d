#![warn(missing_docs)]
//! `rmq-gateway`: RocketMQ over HTTP with MQ-Proxy/MQCloud's `/mq/*` API.
//!
//! [`engine`] is the sans-IO core (queue table with per-message receipts, broker-lock
//! bookkeeping, settings); [`service`] drives it against the broker through the [`broker`] and
//! [`clock`] seams; [`api`] holds the HTTP front ends.
//!
//! Operations: [`metrics`] counts requests, produce results and broker calls for
//! `GET /metrics`; [`observe`] is the snapshot behind the status page (`GET /`,
//! `GET /status.json`) and the readiness behind `GET /readyz`; `api::ops` serves them, with
//! `GET /healthz` and `GET /openapi.json`, and writes one access-log line per request (target
//! `rmq_gateway::access`; JSON lines with `RMQ_LOG_FORMAT=json`), through [`log_writer`], which
//! writes lines in batches.

pub mod api;
pub mod broker;
pub mod clock;
pub mod config;
pub mod engine;
pub mod error;
pub mod log_time;
pub mod log_writer;
pub mod metrics;
pub mod observe;
pub mod request_id;
pub mod service;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod token;
