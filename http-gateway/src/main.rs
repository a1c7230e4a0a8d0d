//! `rmq-gateway --config gateway.toml [--listen ADDR] [--namesrv A;B]`
//!
//! Environment overrides (between the file and the flags): RMQ_GATEWAY_LISTEN, RMQ_NAMESRV,
//! RMQ_ACCESS_KEY, RMQ_SECRET_KEY. Logs: RUST_LOG (default info).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use rmq_gateway::config::{split_addrs, Config};
use rmq_gateway::gateway::Gateway;
use tracing::info;

fn usage() -> ! {
    eprintln!("usage: rmq-gateway --config gateway.toml [--listen ADDR] [--namesrv HOST:PORT[;HOST:PORT]]");
    std::process::exit(2);
}

fn parse_args() -> anyhow::Result<Config> {
    let mut config_path: Option<PathBuf> = None;
    let mut listen = None;
    let mut namesrv = None;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = |name: &str| it.next().with_context(|| format!("{name} needs a value"));
        match a.as_str() {
            "--config" | "-c" => config_path = Some(PathBuf::from(val("--config")?)),
            "--listen" => listen = Some(val("--listen")?),
            "--namesrv" => namesrv = Some(val("--namesrv")?),
            "--help" | "-h" => usage(),
            other => bail!("unknown argument {other:?}"),
        }
    }
    let Some(path) = config_path else { usage() };
    let mut config = Config::load(&path)?;
    config.apply_env(&std::env::vars().collect());
    if let Some(l) = listen {
        config.listen = l;
    }
    if let Some(n) = namesrv {
        config.namesrv = split_addrs(&n);
    }
    config.validate()?;
    Ok(config)
}

async fn shutdown_signal(gw: std::sync::Arc<Gateway>) {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
    info!("shutting down: no new requests, giving queues back");
    gw.begin_shutdown();
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_ansi(false)
        .init();
    let config = parse_args().context("configuration")?;
    let gw = Gateway::new(&config).map_err(|e| anyhow::anyhow!("starting the client: {e}"))?;
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    info!(listen = %listener.local_addr()?, namesrv = ?config.namesrv, instance = %gw.instance_id(),
        producers = config.producers.len(), consumers = config.consumers.len(), "rmq-gateway ready");
    let maint = {
        let gw = gw.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                gw.maintain_locks().await;
            }
        })
    };
    let aliyun = rmq_gateway::api::aliyun::AliyunApi::new(gw.client().clone(), &config.aliyun);
    let app = rmq_gateway::http::router(gw.clone()).merge(rmq_gateway::api::aliyun::router(aliyun));
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal(gw.clone()))
    .await
    .context("server")?;
    maint.abort();
    gw.shutdown().await;
    info!("stopped");
    Ok(())
}
