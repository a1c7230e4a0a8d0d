//! Send one message to a RocketMQ broker and pull it back, with nothing but `std::net` and the
//! `rmq-remoting` codec (blocking sockets, one request at a time).
//!
//! 1. GET_ROUTEINFO_BY_TOPIC (105) at the name server. If the topic does not exist (17), use the
//!    route of the template topic `TBW102` instead: the broker creates the topic on the first send
//!    (`autoCreateTopicEnable`), as the Java producer relies on.
//! 2. SEND_MESSAGE_V2 (310) to the master of the first writable queue, short header names `a`..`n`.
//! 3. If the topic was just created: GET_ROUTEINFO_BY_TOPIC again until the name server has it.
//! 4. PULL_MESSAGE (11) from the queue and offset the send response named, with the subscription
//!    in the request (sysFlag 4, `*`), and print the stored message.
//!
//! ```text
//! scripts/broker.sh start
//! scripts/broker.sh exec -- cargo run -p rmq-remoting --example send_and_pull -- --topic Demo
//! ```
//!
//! Options: `--namesrv HOST:PORT` (default `$RMQ_NAMESRV`, else `127.0.0.1:9876`), `--topic T`
//! (default `RmqGatewayExample`), `--body TEXT`, `--group G` (producer and consumer group prefix),
//! `--header json|rocketmq` (request header serialization; responses are printed with theirs).
//! Any failure prints a message on stderr and exits with status 1 (2 for bad arguments).

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Parser, ValueEnum};
use rmq_remoting::body::{self, TopicRouteData};
use rmq_remoting::message::{self, keys, UniqIdGenerator};
use rmq_remoting::{
    ExtFields, RemotingCommand, RequestCode, ResponseCode, SerializeType, DEFAULT_MAX_FRAME,
};

const DEFAULT_NAMESRV: &str = "127.0.0.1:9876";
const DEFAULT_TOPIC: &str = "RmqGatewayExample";
const DEFAULT_GROUP: &str = "rmq_gateway_example";
/// The template topic for broker-side auto-creation (Java `TopicValidator.AUTO_CREATE_TOPIC_KEY_TOPIC`).
const AUTO_CREATE_TEMPLATE: &str = "TBW102";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const IO_TIMEOUT: Duration = Duration::from_secs(30);

type Result<T> = std::result::Result<T, String>;

/// Send one message to a RocketMQ broker and pull it back, with nothing but `std::net` and the
/// rmq-remoting codec.
#[derive(Parser)]
#[command(name = "send_and_pull")]
struct Args {
    /// Name server address; of a list `a:9876;b:9876` the first is used.
    #[arg(long, env = "RMQ_NAMESRV", default_value = DEFAULT_NAMESRV, value_parser = first_namesrv)]
    namesrv: String,
    /// Topic to send to; auto-created through TBW102 if missing.
    #[arg(long, default_value = DEFAULT_TOPIC, value_parser = topic_name)]
    topic: String,
    /// Message body (default: a greeting with the current time).
    #[arg(long)]
    body: Option<String>,
    /// Producer/consumer group prefix.
    #[arg(long, default_value = DEFAULT_GROUP)]
    group: String,
    /// Request header serialization (responses are printed with theirs).
    #[arg(long, value_enum, ignore_case = true, default_value_t = Header::Json)]
    header: Header,
}

#[derive(Clone, Copy, ValueEnum)]
enum Header {
    /// JSON headers.
    Json,
    /// The binary ROCKETMQ header.
    #[value(alias = "binary")]
    Rocketmq,
}

impl From<Header> for SerializeType {
    fn from(h: Header) -> Self {
        match h {
            Header::Json => SerializeType::Json,
            Header::Rocketmq => SerializeType::RocketMq,
        }
    }
}

fn first_namesrv(list: &str) -> Result<String> {
    list.split(';')
        .map(str::trim)
        .find(|s| !s.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| "no name server address given".to_owned())
}

fn topic_name(topic: &str) -> Result<String> {
    let ok = !topic.is_empty()
        && topic.len() <= 127
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'%' || b == b'|');
    if ok {
        Ok(topic.to_owned())
    } else {
        Err("allowed: [%|a-zA-Z0-9_-], 1..127 characters".to_owned())
    }
}

/// One blocking connection; requests are answered in order, so one outstanding request at a time.
struct Conn {
    addr: String,
    stream: TcpStream,
    next_opaque: i32,
    header: SerializeType,
}

impl Conn {
    fn open(addr: &str, header: SerializeType) -> Result<Conn> {
        let sockaddrs: Vec<SocketAddr> = addr
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve `{addr}`: {e}"))?
            .collect();
        let mut last_err = format!("`{addr}` resolved to no address");
        for sa in sockaddrs {
            match TcpStream::connect_timeout(&sa, CONNECT_TIMEOUT) {
                Ok(stream) => {
                    let setup = |s: &TcpStream| -> std::io::Result<()> {
                        s.set_nodelay(true)?;
                        s.set_read_timeout(Some(IO_TIMEOUT))?;
                        s.set_write_timeout(Some(IO_TIMEOUT))
                    };
                    setup(&stream).map_err(|e| format!("{addr}: socket setup failed: {e}"))?;
                    return Ok(Conn {
                        addr: addr.to_owned(),
                        stream,
                        next_opaque: 1,
                        header,
                    });
                }
                Err(e) => last_err = format!("cannot connect to {sa}: {e}"),
            }
        }
        Err(last_err)
    }

    /// Sends `cmd` and waits for the response with the same opaque.
    fn call(&mut self, mut cmd: RemotingCommand) -> Result<RemotingCommand> {
        let what = RequestCode::from(cmd.code);
        cmd.opaque = self.next_opaque;
        cmd.serialize_type = self.header;
        self.next_opaque = self.next_opaque.wrapping_add(1);
        let frame = cmd
            .to_frame()
            .map_err(|e| format!("cannot encode {what}: {e}"))?;
        self.stream
            .write_all(&frame)
            .map_err(|e| format!("{}: sending {what} failed: {e}", self.addr))?;
        loop {
            let resp = self.read_frame(what)?;
            if resp.is_response() && resp.opaque == cmd.opaque {
                return Ok(resp);
            }
            // Anything else (a server-initiated request, a stale response) is not ours: skip it.
            eprintln!(
                "  (ignoring unsolicited frame code {} opaque {} from {})",
                resp.code, resp.opaque, self.addr
            );
        }
    }

    fn read_frame(&mut self, what: RequestCode) -> Result<RemotingCommand> {
        let mut len_buf = [0u8; 4];
        self.stream.read_exact(&mut len_buf).map_err(|e| {
            format!(
                "{}: no response to {what} ({e}); the peer closed or timed out",
                self.addr
            )
        })?;
        let len = u32::from_be_bytes(len_buf) as usize;
        if !(4..=DEFAULT_MAX_FRAME - 4).contains(&len) {
            return Err(format!(
                "{}: bad frame length {len} in response to {what}",
                self.addr
            ));
        }
        let mut frame = vec![0u8; 4 + len];
        frame[..4].copy_from_slice(&len_buf);
        self.stream
            .read_exact(&mut frame[4..])
            .map_err(|e| format!("{}: truncated response to {what}: {e}", self.addr))?;
        RemotingCommand::from_frame(&frame)
            .map_err(|e| format!("{}: undecodable response to {what}: {e}", self.addr))
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn describe(resp: &RemotingCommand) -> String {
    let code = ResponseCode::from(resp.code);
    match resp.remark.as_deref() {
        Some(r) if !r.is_empty() => format!("{code}: {r}"),
        _ => code.to_string(),
    }
}

fn header_kind(resp: &RemotingCommand) -> &'static str {
    match resp.serialize_type {
        SerializeType::Json => "JSON",
        SerializeType::RocketMq => "ROCKETMQ",
    }
}

fn ext_list(resp: &RemotingCommand) -> String {
    match &resp.ext_fields {
        None => "(none)".to_owned(),
        Some(f) => f
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// `Ok(None)` when the name server answers TOPIC_NOT_EXIST.
fn query_route(ns: &mut Conn, topic: &str) -> Result<Option<(TopicRouteData, String)>> {
    let mut ext = ExtFields::new();
    ext.insert("topic", topic);
    let resp = ns.call(RemotingCommand::request(
        RequestCode::GetRouteinfoByTopic,
        ext,
    ))?;
    match ResponseCode::from(resp.code) {
        ResponseCode::Success => {
            let raw = String::from_utf8_lossy(&resp.body).into_owned();
            let route: TopicRouteData = body::from_json(&resp.body)
                .map_err(|e| format!("route of `{topic}` is not a TopicRouteData: {e}: {raw}"))?;
            Ok(Some((route, raw)))
        }
        ResponseCode::TopicNotExist => Ok(None),
        _ => Err(format!(
            "GET_ROUTEINFO_BY_TOPIC `{topic}` at {} failed: {}",
            ns.addr,
            describe(&resp)
        )),
    }
}

/// The broker of the first writable queue data that has a master: (broker name, master address).
fn pick_queue(route: &TopicRouteData) -> Option<(String, String)> {
    for qd in route
        .queue_datas
        .iter()
        .filter(|q| q.writable() && q.write_queue_nums > 0)
    {
        let master = route
            .broker_datas
            .iter()
            .find(|b| b.broker_name == qd.broker_name)
            .and_then(|b| b.master_addr());
        if let Some(addr) = master {
            return Some((qd.broker_name.clone(), addr.to_owned()));
        }
    }
    None
}

fn print_route(label: &str, route: &TopicRouteData, raw: &str) {
    println!("{label} route body: {raw}");
    for qd in &route.queue_datas {
        println!(
            "  queues on {}: read={} write={} perm={}",
            qd.broker_name, qd.read_queue_nums, qd.write_queue_nums, qd.perm
        );
    }
    for bd in &route.broker_datas {
        let addrs: Vec<String> = bd
            .broker_addrs
            .iter()
            .map(|(id, a)| format!("{id}={a}"))
            .collect();
        println!(
            "  broker {} (cluster {}): {}",
            bd.broker_name,
            bd.cluster,
            addrs.join(", ")
        );
    }
}

struct Sent {
    msg_id: String,
    queue_id: i32,
    queue_offset: i64,
}

fn run(args: Args) -> Result<()> {
    let started = Instant::now();
    println!("name server: {}", args.namesrv);
    let mut ns = Conn::open(&args.namesrv, args.header.into())?;

    // 1. Route of the topic, or of the auto-create template.
    let mut created = false;
    let route = match query_route(&mut ns, &args.topic)? {
        Some((route, raw)) => {
            print_route(&format!("topic `{}`", args.topic), &route, &raw);
            route
        }
        None => {
            println!(
                "topic `{}` not on the name server (TOPIC_NOT_EXIST); sending through the {} route to auto-create it",
                args.topic, AUTO_CREATE_TEMPLATE
            );
            created = true;
            let (route, raw) = query_route(&mut ns, AUTO_CREATE_TEMPLATE)?.ok_or_else(|| {
                format!(
                    "neither `{}` nor the template `{AUTO_CREATE_TEMPLATE}` has a route: the broker is not \
                     registered or runs with autoCreateTopicEnable=false",
                    args.topic
                )
            })?;
            print_route(&format!("template `{AUTO_CREATE_TEMPLATE}`"), &route, &raw);
            route
        }
    };
    let (broker_name, broker_addr) = pick_queue(&route)
        .ok_or_else(|| "the route has no writable queue with a master address".to_owned())?;
    let queue_id = 0;

    // 2. SEND_MESSAGE_V2.
    let mut broker = Conn::open(&broker_addr, args.header.into())?;
    let pid = std::process::id();
    let random = (SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
        ^ pid.rotate_left(16)) as i32;
    let born = now_ms();
    let uniq_key = UniqIdGenerator::new(IpAddr::V4(Ipv4Addr::LOCALHOST), pid, random).next_id(born);
    let body_text = args
        .body
        .clone()
        .unwrap_or_else(|| format!("Hello from rmq-gateway send_and_pull, born {born}"));
    let properties = format!(
        "{}\u{1}{uniq_key}\u{2}{}\u{1}true\u{2}{}\u{1}TagA",
        keys::UNIQ_KEY,
        keys::WAIT,
        keys::TAGS
    );
    let mut ext = ExtFields::new();
    ext.insert("a", format!("{}_producer", args.group));
    ext.insert("b", args.topic.as_str());
    ext.insert("c", AUTO_CREATE_TEMPLATE);
    ext.insert("d", "4");
    ext.insert("e", queue_id.to_string());
    ext.insert("f", "0");
    ext.insert("g", born.to_string());
    ext.insert("h", "0");
    ext.insert("i", properties);
    ext.insert("j", "0");
    ext.insert("k", "false");
    ext.insert("m", "false");
    ext.insert("n", broker_name.as_str());
    let req = RemotingCommand::request(RequestCode::SendMessageV2, ext)
        .with_body(body_text.clone().into_bytes());
    println!(
        "SEND_MESSAGE_V2 to {broker_name} at {broker_addr}: topic={} queueId={queue_id} UNIQ_KEY={uniq_key} body={body_text:?}",
        args.topic
    );
    let resp = broker.call(req)?;
    match ResponseCode::from(resp.code) {
        ResponseCode::Success
        | ResponseCode::FlushDiskTimeout
        | ResponseCode::FlushSlaveTimeout
        | ResponseCode::SlaveNotAvailable => {}
        _ => {
            return Err(format!(
                "SEND_MESSAGE_V2 to {broker_addr} failed: {}",
                describe(&resp)
            ))
        }
    }
    let field = |name: &str| -> Result<&str> {
        resp.ext(name)
            .ok_or_else(|| format!("send response lacks `{name}` ({})", ext_list(&resp)))
    };
    let sent = Sent {
        msg_id: field("msgId")?.to_owned(),
        queue_id: field("queueId")?
            .parse()
            .map_err(|e| format!("bad queueId in send response: {e}"))?,
        queue_offset: field("queueOffset")?
            .parse()
            .map_err(|e| format!("bad queueOffset in send response: {e}"))?,
    };
    println!(
        "send response: {} (header {}) msgId={} queueId={} queueOffset={}",
        describe(&resp),
        header_kind(&resp),
        sent.msg_id,
        sent.queue_id,
        sent.queue_offset
    );
    println!("  all response extFields: {}", ext_list(&resp));

    // 3. The auto-created topic reaches the name server with the broker's next registration.
    if created {
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            if let Some((route, raw)) = query_route(&mut ns, &args.topic)? {
                print_route(
                    &format!(
                        "auto-created topic `{}` (after {:?})",
                        args.topic,
                        started.elapsed()
                    ),
                    &route,
                    &raw,
                );
                break;
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "the broker accepted the message but topic `{}` never appeared on the name server",
                    args.topic
                ));
            }
            sleep(Duration::from_millis(200));
        }
    }

    // 4. PULL_MESSAGE at the offset the send returned. The store dispatches to the consume queue
    //    asynchronously, so PULL_NOT_FOUND / PULL_RETRY_IMMEDIATELY right after the send is retried.
    let deadline = Instant::now() + Duration::from_secs(10);
    let messages = loop {
        let mut ext = ExtFields::new();
        ext.insert("consumerGroup", format!("{}_consumer", args.group));
        ext.insert("topic", args.topic.as_str());
        ext.insert("queueId", sent.queue_id.to_string());
        ext.insert("queueOffset", sent.queue_offset.to_string());
        ext.insert("maxMsgNums", "32");
        ext.insert("sysFlag", "4");
        ext.insert("commitOffset", "0");
        ext.insert("suspendTimeoutMillis", "0");
        ext.insert("subscription", "*");
        ext.insert("subVersion", "0");
        ext.insert("expressionType", "TAG");
        ext.insert("bname", broker_name.as_str());
        let resp = broker.call(RemotingCommand::request(RequestCode::PullMessage, ext))?;
        let code = ResponseCode::from(resp.code);
        println!(
            "pull response: {} (header {}) {}, body {} bytes",
            describe(&resp),
            header_kind(&resp),
            ext_list(&resp),
            resp.body.len()
        );
        match code {
            ResponseCode::Success => {
                break message::decode_messages(&resp.body)
                    .map_err(|e| format!("cannot decode the pulled messages: {e}"))?;
            }
            ResponseCode::PullNotFound | ResponseCode::PullRetryImmediately
                if Instant::now() < deadline =>
            {
                sleep(Duration::from_millis(200));
            }
            _ => {
                return Err(format!(
                    "PULL_MESSAGE {}:{}@{} failed: {}",
                    args.topic,
                    sent.queue_id,
                    sent.queue_offset,
                    describe(&resp)
                ))
            }
        }
    };

    let mut found = false;
    for m in &messages {
        let props: Vec<String> = m
            .properties
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        println!(
            "pulled: topic={} queueId={} queueOffset={} msgId={} offsetMsgId={} tags={} properties=[{}]",
            m.topic,
            m.queue_id,
            m.queue_offset,
            m.msg_id(),
            m.offset_msg_id(),
            m.tags().unwrap_or("-"),
            props.join(", ")
        );
        println!("pulled body: {}", String::from_utf8_lossy(&m.body));
        if m.properties.get(keys::UNIQ_KEY) == Some(uniq_key.as_str()) {
            found = true;
            if m.body.as_ref() != body_text.as_bytes() {
                return Err("the pulled message's body differs from the body sent".to_owned());
            }
        }
    }
    if !found {
        return Err(format!(
            "pulled {} message(s) at {}:{}@{} but none has UNIQ_KEY {uniq_key}",
            messages.len(),
            args.topic,
            sent.queue_id,
            sent.queue_offset
        ));
    }
    println!(
        "OK: sent and pulled back message {uniq_key} in {:?}",
        started.elapsed()
    );
    Ok(())
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("send_and_pull: error: {e}");
            ExitCode::FAILURE
        }
    }
}
