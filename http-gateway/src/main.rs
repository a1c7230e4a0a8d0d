//! The `rmq-gateway` binary: a TOML file, then environment variables, then flags
//! (`rmq-gateway --help` lists them). Logs: RUST_LOG (default info), one access-log line per
//! request (target `rmq_gateway::access`); JSON lines with RMQ_LOG_FORMAT=json.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use rmq_gateway::api::aliyun::forward;
use rmq_gateway::api::aliyun::handle::Owner;
use rmq_gateway::api::ops::Ops;
use rmq_gateway::broker::ClientBroker;
use rmq_gateway::clock::{Clock, SystemClock};
use rmq_gateway::config::{Config, Overrides};
use rmq_gateway::log_time::UtcMicros;
use rmq_gateway::log_writer::LogWriter;
use rmq_gateway::metrics::Metrics;
use rmq_gateway::observe::Readiness;
use rmq_gateway::service::Gateway;
use tracing::info;

/// How often the observer probes the name servers and reads the consumers' offsets.
const OBSERVE_EVERY: Duration = Duration::from_secs(2);
// A maintained allocator: per-request allocations cost less than with glibc malloc under
// many threads (see benches/RESULTS.md); `--no-default-features` builds with the system's.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// RocketMQ over HTTP: the MQ-Proxy/MQCloud `/mq/*` API on a RocketMQ name server and brokers.
#[derive(Debug, Parser)]
#[command(name = "rmq-gateway", version)]
struct Args {
    /// The configuration file (TOML: listen, namesrv, [[producer]], [[consumer]], ...).
    #[arg(short, long, env = "RMQ_GATEWAY_CONFIG")]
    config: PathBuf,
    /// Address to listen on, e.g. 127.0.0.1:8080.
    #[arg(long, env = "RMQ_GATEWAY_LISTEN")]
    listen: Option<String>,
    /// Name servers, `host:port[;host:port]`.
    #[arg(long, env = "RMQ_NAMESRV")]
    namesrv: Option<String>,
    /// ACL access key (with --secret-key).
    #[arg(long, env = "RMQ_ACCESS_KEY", hide_env_values = true)]
    access_key: Option<String>,
    /// ACL secret key (with --access-key).
    #[arg(long, env = "RMQ_SECRET_KEY", hide_env_values = true)]
    secret_key: Option<String>,
    /// Enables POST /mq/consumer/config for `Authorization: Bearer <token>`.
    #[arg(long, env = "RMQ_GATEWAY_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Upper bound of a fetch's waitSeconds (long polling).
    #[arg(long, env = "RMQ_GATEWAY_MAX_WAIT_SECONDS")]
    max_wait_seconds: Option<u64>,
    /// Web origins whose pages may call the APIs (CORS), comma-separated, e.g.
    /// `https://app.example.com,http://127.0.0.1:8000`, or `*`; empty = off.
    #[arg(long, env = "RMQ_GATEWAY_CORS_ORIGINS")]
    cors_origins: Option<String>,
    /// An AccessKey id for the Aliyun MQ HTTP API (with its secret; added to `[aliyun]
    /// credentials`).
    #[arg(
        long,
        env = "RMQ_ALIYUN_ACCESS_KEY_ID",
        requires = "aliyun_access_key_secret"
    )]
    aliyun_access_key_id: Option<String>,
    /// The secret of `--aliyun-access-key-id`.
    #[arg(long, env = "RMQ_ALIYUN_ACCESS_KEY_SECRET", hide_env_values = true)]
    aliyun_access_key_secret: Option<String>,
    /// Where the other instances reach this one (`host:port`), for Aliyun acks that arrive at
    /// another instance than the one that delivered; default: the listen address.
    #[arg(long, env = "RMQ_GATEWAY_ADVERTISE_ADDR")]
    advertise_addr: Option<String>,
    /// Threads serving requests; 1 runs everything on one thread (no wake-ups across threads:
    /// the least CPU per request). Default: one per core.
    #[arg(long, env = "RMQ_GATEWAY_WORKER_THREADS", value_parser = clap::value_parser!(u16).range(1..))]
    worker_threads: Option<u16>,
}

fn load(args: Args) -> anyhow::Result<Config> {
    let mut config = Config::load(&args.config)?;
    config.apply(Overrides {
        listen: args.listen,
        namesrv: args.namesrv,
        access_key: args.access_key,
        secret_key: args.secret_key,
        admin_token: args.admin_token,
        max_wait_seconds: args.max_wait_seconds,
        cors_origins: args.cors_origins,
        aliyun_access_key_id: args.aliyun_access_key_id,
        aliyun_access_key_secret: args.aliyun_access_key_secret,
        advertise: args.advertise_addr,
    });
    config.validate()?;
    Ok(config)
}

async fn shutdown_signal(gw: Arc<Gateway<ClientBroker>>) {
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

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let log = init_log()?;
    let result = serve(args);
    // Lines of the last moments, and the error main returns is printed after them.
    let _ = log.flush();
    result
}

/// The log: RUST_LOG's filter, text or JSON lines (RMQ_LOG_FORMAT), to stderr through a
/// [`LogWriter`] so that the access log costs no write per request.
fn init_log() -> anyhow::Result<LogWriter> {
    let writer = LogWriter::start(std::io::stderr()).context("starting the log writer")?;
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let log = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_timer(UtcMicros)
        .with_writer(writer.clone());
    match std::env::var("RMQ_LOG_FORMAT").as_deref() {
        Ok("json") => log.json().flatten_event(true).init(),
        Ok("text") | Ok("") | Err(_) => log.init(),
        Ok(other) => anyhow::bail!("RMQ_LOG_FORMAT must be json or text, not {other:?}"),
    }
    // A panic's message goes straight to stderr: the lines before it first.
    let hook = std::panic::take_hook();
    let w = writer.clone();
    std::panic::set_hook(Box::new(move |info| {
        let _ = w.flush();
        hook(info)
    }));
    Ok(writer)
}

fn serve(args: Args) -> anyhow::Result<()> {
    let runtime = match args.worker_threads {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n.into());
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    }
    .enable_all()
    .build()
    .context("starting the runtime")?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let config = load(args).context("configuration")?;
    let clock = Arc::new(SystemClock);
    let metrics = Arc::new(Metrics::new());
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let advertise = match &config.advertise {
        Some(a) => a.clone(),
        None => {
            let mut a = listener.local_addr()?;
            if a.ip().is_unspecified() {
                a.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                tracing::warn!(advertise = %a, "listening on all addresses: other hosts' \
                    instances cannot pass Aliyun acks on here; set --advertise-addr");
            }
            a.to_string()
        }
    };
    anyhow::ensure!(
        forward::valid_advertise(&advertise),
        "the advertised address {advertise:?} must be host:port of letters, digits and . - _ : [ ]"
    );
    // The broker lists this client id as a member of the groups it consumes; other instances
    // pass Aliyun acks on only to runs and addresses listed so (api::aliyun::forward).
    let broker = ClientBroker::start(&config, forward::instance_name(&Owner::fresh(&advertise)))
        .context("starting the client")?
        .with_metrics(metrics.clone());
    let aliyun_client = broker.client().clone();
    let gw = Gateway::with_metrics(&config, broker, clock.clone(), metrics);
    info!(listen = %listener.local_addr()?, namesrv = ?config.namesrv, instance = %gw.instance_id(),
        producers = config.producers.len(), consumers = config.consumers.len(),
        cors = ?config.cors_allowed_origins, advertise = ?config.advertise, "rmq-gateway ready");
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
    // The shared settings (pause, rate limits, ...) are in force before the first request, and
    // every instance reads them again about every second.
    if let Err(e) = gw.sync_settings().await {
        tracing::warn!(error = %e, "shared settings not read yet; retrying every second");
    }
    let control = {
        let gw = gw.clone();
        tokio::spawn(async move {
            let mut tick =
                tokio::time::interval(Duration::from_millis(rmq_gateway::service::CONTROL_POLL_MS));
            loop {
                tick.tick().await;
                if let Err(e) = gw.sync_settings().await {
                    tracing::debug!(error = %e, "control plane read failed");
                }
            }
        })
    };
    let readiness = Arc::new(Readiness::default());
    let ops = Ops::new(gw.clone(), readiness.clone());
    // Name-server probe (readiness), connection counts and the consumers' broker offsets for
    // the status page and /metrics; apart from the lock upkeep so a slow broker delays neither.
    let observer = {
        let (gw, ops) = (gw.clone(), ops.clone());
        let mut topics: Vec<String> = config.producers.iter().map(|p| p.topic.clone()).collect();
        topics.extend(config.consumers.iter().map(|c| c.topic.clone()));
        topics.sort();
        topics.dedup();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(OBSERVE_EVERY);
            loop {
                tick.tick().await;
                let probe = gw.broker().probe_routes(&topics).await;
                readiness.record(clock.now_ms(), probe);
                ops.set_connections(gw.broker().connections());
                gw.refresh_observed().await;
            }
        })
    };
    let aliyun =
        rmq_gateway::api::aliyun::AliyunApi::new(aliyun_client, gw.clone(), &config.aliyun);
    let app = rmq_gateway::api::app(
        rmq_gateway::api::all_routes(gw.clone(), aliyun, ops).into_router(),
        &config.cors_allowed_origins,
    );
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal(gw.clone()))
    .await
    .context("server")?;
    maint.abort();
    observer.abort();
    control.abort();
    gw.shutdown().await;
    info!("stopped");
    Ok(())
}
