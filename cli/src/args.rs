//! The command line: every command, flag and value parser. Parsing only; no I/O.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "rmq",
    version,
    about = "A command line for Apache RocketMQ: clusters, topics, groups, messages, offsets and benchmarks",
    after_help = "Exit codes: 0 ok, 1 other failure, 2 bad argument, 3 unknown topic, 4 name server or broker unreachable, 5 not found (message, group)."
)]
pub struct Cli {
    /// Name servers, `host:port;host:port`.
    #[arg(short = 'n', long, env = "RMQ_NAMESRV", global = true)]
    pub namesrv: Option<String>,
    /// Print one JSON document instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// Timeout of one request, in seconds.
    #[arg(long, global = true, default_value = "3", value_parser = parse_secs)]
    pub timeout: Duration,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Clusters, brokers, their addresses and versions.
    Cluster,
    /// The route of a topic: brokers, queues, permissions.
    Route { topic: String },
    /// Create, list or delete topics.
    #[command(subcommand)]
    Topic(TopicCmd),
    /// List or create consumer groups.
    #[command(subcommand)]
    Group(GroupCmd),
    /// Send a message (BODY), or one message per line of standard input.
    Send(SendArgs),
    /// Read messages of a topic without committing anything.
    Pull(PullArgs),
    /// Consume messages as a group member, committing offsets.
    Consume(ConsumeArgs),
    /// Look messages up by id or key.
    #[command(subcommand)]
    Message(MessageCmd),
    /// Per queue: broker offset, committed offset, backlog and the client it is assigned to.
    Offsets(OffsetsArgs),
    /// Benchmarks against any broker.
    #[command(subcommand)]
    Bench(BenchCmd),
}

#[derive(Debug, Subcommand)]
pub enum TopicCmd {
    /// Create (or update) a topic on every master of a cluster, or on one broker.
    Create(TopicCreateArgs),
    /// Every topic the name server knows.
    List,
    /// Delete a topic from the brokers hosting it and from the name servers.
    Delete { topic: String },
}

#[derive(Debug, Args)]
pub struct TopicCreateArgs {
    pub topic: String,
    #[arg(short = 'r', long, default_value_t = 8, value_parser = clap::value_parser!(i32).range(1..=1024))]
    pub read_queues: i32,
    #[arg(short = 'w', long, default_value_t = 8, value_parser = clap::value_parser!(i32).range(1..=1024))]
    pub write_queues: i32,
    /// Permission: rw, r, w, or the bits (2 write, 4 read, 6 both).
    #[arg(short = 'p', long, default_value = "rw", value_parser = parse_perm)]
    pub perm: i32,
    /// An ordered topic.
    #[arg(long)]
    pub order: bool,
    /// Only the masters of this cluster (default: every cluster).
    #[arg(short = 'c', long, conflicts_with = "broker")]
    pub cluster: Option<String>,
    /// Only this broker address.
    #[arg(short = 'b', long)]
    pub broker: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum GroupCmd {
    /// Subscription groups of every master.
    List,
    /// Create (or update) a subscription group on every master.
    Create(GroupCreateArgs),
}

#[derive(Debug, Args)]
pub struct GroupCreateArgs {
    pub group: String,
    /// Deliveries before a message goes to the DLQ.
    #[arg(long, default_value_t = 16)]
    pub retry_max_times: i32,
    /// Refuse broadcast consumption.
    #[arg(long)]
    pub no_broadcast: bool,
    /// Create the group disabled (consumers get nothing).
    #[arg(long)]
    pub disabled: bool,
    /// Only this broker address.
    #[arg(short = 'b', long)]
    pub broker: Option<String>,
}

#[derive(Debug, Args)]
pub struct SendArgs {
    pub topic: String,
    /// The body; without it each line of standard input is one message.
    pub body: Option<String>,
    #[arg(short = 't', long)]
    pub tag: Option<String>,
    /// Business keys (repeat or separate with commas).
    #[arg(short = 'k', long, value_delimiter = ',')]
    pub keys: Vec<String>,
    /// A user property `KEY=VALUE` (repeatable).
    #[arg(short = 'p', long = "property", value_parser = parse_property)]
    pub properties: Vec<(String, String)>,
    /// Messages with the same order id go to the same queue.
    #[arg(long)]
    pub order_id: Option<String>,
    /// Delay level 1-18 (1s 5s 10s 30s 1m ... 2h).
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=18))]
    pub delay_level: Option<u8>,
    /// Producer group.
    #[arg(long, default_value = "rmq-cli")]
    pub group: String,
}

/// Where reading starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum From {
    Earliest,
    Latest,
    /// Store time, ms since the epoch.
    Timestamp(i64),
}

impl FromStr for From {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "earliest" => Ok(From::Earliest),
            "latest" => Ok(From::Latest),
            t => t
                .parse::<i64>()
                .ok()
                .filter(|t| *t >= 0)
                .map(From::Timestamp)
                .ok_or_else(|| {
                    format!(
                        "expected earliest, latest or a timestamp in ms since the epoch, not {t:?}"
                    )
                }),
        }
    }
}

#[derive(Debug, Args)]
pub struct PullArgs {
    pub topic: String,
    /// earliest, latest or a timestamp (ms since the epoch).
    #[arg(long, default_value = "earliest")]
    pub from: From,
    /// Stop after this many messages (default: when every queue is read to its end).
    #[arg(long)]
    pub count: Option<usize>,
    /// Tag expression (`*`, `A || B`).
    #[arg(long, default_value = "*")]
    pub tag: String,
    /// Group named in the pulls (nothing is committed).
    #[arg(long, default_value = "rmq-cli-pull")]
    pub group: String,
}

#[derive(Debug, Args)]
pub struct ConsumeArgs {
    pub topic: String,
    #[arg(short = 'g', long)]
    pub group: String,
    /// Where a group without committed offsets starts: earliest, latest or a timestamp (ms).
    #[arg(long, default_value = "latest")]
    pub from: From,
    /// Stop after this many messages.
    #[arg(long)]
    pub count: Option<usize>,
    /// Stop after this many seconds without a message (default: never).
    #[arg(long, value_parser = parse_secs)]
    pub idle: Option<Duration>,
    #[arg(long, default_value = "*")]
    pub tag: String,
}

#[derive(Debug, Subcommand)]
pub enum MessageCmd {
    /// A message by its offset message id (what a send prints as offsetMsgId).
    Get { offset_msg_id: String },
    /// Messages of a topic by key (or by unique id with --unique).
    Query(QueryArgs),
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    #[arg(short = 't', long)]
    pub topic: String,
    #[arg(short = 'k', long)]
    pub key: String,
    /// KEY is a client message id (UNIQ_KEY), not a business key.
    #[arg(long)]
    pub unique: bool,
    #[arg(long, default_value_t = 64)]
    pub max: i32,
    /// Stored at or after (ms since the epoch).
    #[arg(long, default_value_t = 0)]
    pub begin: i64,
    /// Stored before (ms since the epoch; default: now).
    #[arg(long)]
    pub end: Option<i64>,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct OffsetsArgs {
    #[command(subcommand)]
    pub reset: Option<OffsetsCmd>,
    #[arg(required = true)]
    pub group: Option<String>,
    /// One topic (default: every topic the group subscribes to or has offsets of).
    pub topic: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum OffsetsCmd {
    /// Move a group's committed offsets of a topic.
    Reset(ResetArgs),
}

#[derive(Debug, Args)]
pub struct ResetArgs {
    pub group: String,
    pub topic: String,
    /// earliest, latest or a timestamp (ms since the epoch).
    #[arg(long)]
    pub to: From,
}

#[derive(Debug, Subcommand)]
pub enum BenchCmd {
    /// Send as fast as allowed and measure.
    Produce(ProduceBench),
    /// Pull a topic from the start of each queue and measure.
    Consume(ConsumeBench),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// `concurrency` tasks, each waiting for its answer.
    Sync,
    /// One task keeping `concurrency` sends in flight.
    Async,
    /// No answers; latency is the time to hand the request to the connection.
    Oneway,
    /// `concurrency` tasks sending batches of `--batch`.
    Batch,
}

#[derive(Debug, Args)]
pub struct BenchCommon {
    /// Stop after this many seconds.
    #[arg(long, value_parser = parse_secs, conflicts_with = "count")]
    pub duration: Option<Duration>,
    /// Stop after this many messages.
    #[arg(long)]
    pub count: Option<u64>,
    /// Write the latency distribution here (HdrHistogram percentile text, microseconds).
    #[arg(long)]
    pub hist: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ProduceBench {
    pub topic: String,
    #[arg(long, value_enum, default_value = "sync")]
    pub mode: Mode,
    /// Tasks (sync, batch, oneway) or sends in flight (async).
    #[arg(short = 'c', long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub concurrency: u32,
    /// Messages per batch (batch mode).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub batch: u32,
    /// Body size in bytes.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=4194304))]
    pub size: u32,
    /// At most this many messages a second.
    #[arg(long)]
    pub rate: Option<f64>,
    #[command(flatten)]
    pub common: BenchCommon,
}

#[derive(Debug, Args)]
pub struct ConsumeBench {
    pub topic: String,
    #[arg(short = 'g', long, default_value = "rmq-bench")]
    pub group: String,
    /// Queues pulled at once.
    #[arg(short = 'c', long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub concurrency: u32,
    /// Messages per pull.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(i32).range(1..=1024))]
    pub batch: i32,
    #[command(flatten)]
    pub common: BenchCommon,
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v > 0.0 && *v < 1e9)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("expected a positive number of seconds, not {s:?}"))
}

fn parse_perm(s: &str) -> Result<i32, String> {
    let bits = match s {
        "rw" | "wr" => 6,
        "r" => 4,
        "w" => 2,
        n => n
            .parse::<i32>()
            .map_err(|_| format!("expected rw, r, w or permission bits, not {n:?}"))?,
    };
    if !(1..=15).contains(&bits) {
        return Err(format!("permission bits {bits} are outside 1..=15"));
    }
    Ok(bits)
}

fn parse_property(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, not {s:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("rmq").chain(args.iter().copied()))
    }

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_anywhere() {
        let c = parse(&["route", "T", "--json", "-n", "a:1;b:2"]).unwrap();
        assert!(c.json);
        assert_eq!(c.namesrv.as_deref(), Some("a:1;b:2"));
        assert!(matches!(c.command, Command::Route { ref topic } if topic == "T"));
    }

    #[test]
    fn topic_create_defaults_and_perm() {
        let c = parse(&["topic", "create", "T"]).unwrap();
        let Command::Topic(TopicCmd::Create(a)) = c.command else {
            panic!()
        };
        assert_eq!(
            (a.read_queues, a.write_queues, a.perm, a.order),
            (8, 8, 6, false)
        );
        let c = parse(&[
            "topic", "create", "T", "-r", "2", "-w", "3", "--perm", "r", "--order",
        ])
        .unwrap();
        let Command::Topic(TopicCmd::Create(a)) = c.command else {
            panic!()
        };
        assert_eq!(
            (a.read_queues, a.write_queues, a.perm, a.order),
            (2, 3, 4, true)
        );
        assert!(parse(&["topic", "create", "T", "--perm", "x"]).is_err());
        assert!(parse(&["topic", "create", "T", "-r", "0"]).is_err());
        assert!(parse(&["topic", "create", "T", "-c", "C", "-b", "B"]).is_err());
    }

    #[test]
    fn send_arguments() {
        let c = parse(&[
            "send",
            "T",
            "hello",
            "-t",
            "A",
            "-k",
            "k1,k2",
            "-k",
            "k3",
            "-p",
            "a=b=c",
            "--order-id",
            "o",
            "--delay-level",
            "3",
        ])
        .unwrap();
        let Command::Send(s) = c.command else {
            panic!()
        };
        assert_eq!(s.body.as_deref(), Some("hello"));
        assert_eq!(s.keys, ["k1", "k2", "k3"]);
        assert_eq!(s.properties, [("a".to_owned(), "b=c".to_owned())]);
        assert_eq!(s.delay_level, Some(3));
        assert!(parse(&["send", "T", "x", "--delay-level", "19"]).is_err());
        assert!(parse(&["send", "T", "x", "-p", "novalue"]).is_err());
        let Command::Send(s) = parse(&["send", "T"]).unwrap().command else {
            panic!()
        };
        assert!(s.body.is_none());
    }

    #[test]
    fn from_values() {
        assert_eq!("earliest".parse::<From>(), Ok(From::Earliest));
        assert_eq!("latest".parse::<From>(), Ok(From::Latest));
        assert_eq!(
            "1700000000000".parse::<From>(),
            Ok(From::Timestamp(1_700_000_000_000))
        );
        assert!("-5".parse::<From>().is_err());
        assert!("yesterday".parse::<From>().is_err());
        assert!(parse(&["consume", "T"]).is_err(), "--group is required");
        let Command::Consume(c) = parse(&["consume", "T", "-g", "G", "--idle", "1.5"])
            .unwrap()
            .command
        else {
            panic!()
        };
        assert_eq!(c.idle, Some(Duration::from_millis(1500)));
        assert_eq!(c.from, From::Latest);
    }

    #[test]
    fn offsets_and_reset() {
        let Command::Offsets(o) = parse(&["offsets", "G"]).unwrap().command else {
            panic!()
        };
        assert_eq!((o.group.as_deref(), o.topic.as_deref()), (Some("G"), None));
        assert!(o.reset.is_none());
        let Command::Offsets(o) = parse(&["offsets", "G", "T"]).unwrap().command else {
            panic!()
        };
        assert_eq!(o.topic.as_deref(), Some("T"));
        let Command::Offsets(o) = parse(&["offsets", "reset", "G", "T", "--to", "earliest"])
            .unwrap()
            .command
        else {
            panic!()
        };
        let Some(OffsetsCmd::Reset(r)) = o.reset else {
            panic!()
        };
        assert_eq!(
            (r.group.as_str(), r.topic.as_str(), r.to),
            ("G", "T", From::Earliest)
        );
        assert!(parse(&["offsets"]).is_err());
        assert!(
            parse(&["offsets", "reset", "G", "T"]).is_err(),
            "--to is required"
        );
    }

    #[test]
    fn bench_arguments() {
        let Command::Bench(BenchCmd::Produce(p)) = parse(&[
            "bench", "produce", "T", "--mode", "batch", "-c", "4", "--batch", "8", "--size", "100",
            "--count", "1000", "--rate", "500", "--hist", "/tmp/h",
        ])
        .unwrap()
        .command
        else {
            panic!()
        };
        assert_eq!(
            (p.mode, p.concurrency, p.batch, p.size),
            (Mode::Batch, 4, 8, 100)
        );
        assert_eq!(p.common.count, Some(1000));
        assert_eq!(p.rate, Some(500.0));
        assert!(parse(&["bench", "produce", "T", "--duration", "1", "--count", "5"]).is_err());
        assert!(parse(&["bench", "produce", "T", "--mode", "fast"]).is_err());
        assert!(parse(&["bench", "produce", "T", "--size", "0"]).is_err());
        assert!(parse(&["bench", "produce", "T", "--duration", "-1"]).is_err());
        let Command::Bench(BenchCmd::Consume(c)) =
            parse(&["bench", "consume", "T", "--group", "G", "--duration", "2"])
                .unwrap()
                .command
        else {
            panic!()
        };
        assert_eq!((c.group.as_str(), c.concurrency), ("G", 4));
        assert_eq!(c.common.duration, Some(Duration::from_secs(2)));
    }
}
