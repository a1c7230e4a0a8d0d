//! `rmq`: a command line for RocketMQ users on rmq-client. The binary (`main.rs`) only parses
//! arguments and maps errors to exit codes; the commands live here so they can be tested.

pub mod args;
pub mod bench;
pub mod cmd;
pub mod exit;

use anyhow::Result;
use rmq_client::{ClientConfig, MQClient};

use args::{BenchCmd, Cli, Command, GroupCmd, MessageCmd, OffsetsCmd, TopicCmd};
use cmd::Ctx;
use exit::CliError;

/// Runs one parsed command line.
pub async fn run(cli: Cli) -> Result<()> {
    let namesrv = cli.namesrv.as_deref().map(str::trim).unwrap_or_default();
    if namesrv.is_empty() {
        return Err(CliError::BadArgument(
            "no name server: pass -n/--namesrv HOST:PORT or set RMQ_NAMESRV".into(),
        )
        .into());
    }
    let mut config = ClientConfig::new(namesrv);
    if let Some(bad) = config.namesrv_addrs.iter().find(|a| !valid_addr(a)) {
        return Err(
            CliError::BadArgument(format!("name server address {bad:?} is not HOST:PORT")).into(),
        );
    }
    config.request_timeout = cli.timeout;
    config.connect_timeout = cli.timeout;
    let client = MQClient::start(config)?;
    let ctx = Ctx {
        client: client.clone(),
        json: cli.json,
    };
    let result = dispatch(&ctx, cli.command).await;
    client.shutdown().await;
    result
}

fn valid_addr(a: &str) -> bool {
    a.rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0))
}

async fn dispatch(ctx: &Ctx, command: Command) -> Result<()> {
    match command {
        Command::Cluster => cmd::admin::cluster(ctx).await,
        Command::Route { topic } => cmd::admin::route(ctx, &topic).await,
        Command::Topic(TopicCmd::Create(a)) => cmd::admin::topic_create(ctx, &a).await,
        Command::Topic(TopicCmd::List) => cmd::admin::topic_list(ctx).await,
        Command::Topic(TopicCmd::Delete { topic }) => cmd::admin::topic_delete(ctx, &topic).await,
        Command::Group(GroupCmd::List) => cmd::admin::group_list(ctx).await,
        Command::Group(GroupCmd::Create(a)) => cmd::admin::group_create(ctx, &a).await,
        Command::Send(a) => cmd::messages::send(ctx, &a).await,
        Command::Pull(a) => cmd::messages::pull(ctx, &a).await,
        Command::Consume(a) => cmd::messages::consume(ctx, &a).await,
        Command::Message(MessageCmd::Get { offset_msg_id }) => {
            cmd::messages::message_get(ctx, &offset_msg_id).await
        }
        Command::Message(MessageCmd::Query(a)) => cmd::messages::message_query(ctx, &a).await,
        Command::Offsets(o) => match (o.reset, o.group) {
            (Some(OffsetsCmd::Reset(r)), _) => cmd::offsets::reset(ctx, &r).await,
            (None, Some(g)) => cmd::offsets::show(ctx, &g, o.topic.as_deref()).await,
            (None, None) => Err(CliError::BadArgument("offsets needs a GROUP".into()).into()),
        },
        Command::Bench(BenchCmd::Produce(a)) => bench::produce(ctx, &a).await,
        Command::Bench(BenchCmd::Consume(a)) => bench::consume(ctx, &a).await,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn addresses() {
        assert!(super::valid_addr("127.0.0.1:9876"));
        assert!(super::valid_addr("ns.example:1"));
        assert!(!super::valid_addr("127.0.0.1"));
        assert!(!super::valid_addr(":9876"));
        assert!(!super::valid_addr("h:0"));
        assert!(!super::valid_addr("h:99999"));
    }
}
