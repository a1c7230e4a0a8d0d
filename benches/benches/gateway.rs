//! The HTTP gateway against the real broker (`RMQ_NAMESRV`), beside the direct client in the
//! same run: produce at 64 connections with 1 KiB bodies (wrk, Debian's `wrk`, with
//! `benches/wrk/produce.lua`; a built-in loop of 64 reqwest tasks when wrk is not installed),
//! then consume everything back over HTTP with 8 loops chaining `requestId`s (each request acks
//! the previous batch). The references are the direct client sending with 64 in flight for the
//! same time, and a `PullConsumer` pulling the same messages under another group. Prints msg/s,
//! p50/p99 latency, each gateway mode's ratio to its direct reference, and the gateway's
//! RSS. The Aliyun MQ HTTP API runs the same two phases in the same gateway ([`aliyun`]:
//! signed publishes from 64 tasks, then consume + ack loops), compared with the same direct
//! references. With wrk, a last row is the floor: GET /health at the same concurrency, what an
//! HTTP request costs the gateway (hyper, middleware, loopback TCP) with no broker work. Beside them, the CPU per message (user and system separately) over each phase: the
//! gateway child's (/proc/<pid>/stat) for the HTTP rows, this process's (getrusage, the
//! direct client) for the direct rows, with the ratio, and context switches per message (of
//! the gateway's live threads; of this whole process). CPU per message drifts much less than
//! msg/s on a shared machine: compare medians of several runs (benches/RESULTS.md).
//! `BENCH_STRACE=1` also counts syscalls per message with `strace -c -f -p` over each phase
//! (slowing it down). Performance is never asserted; it fails only when the gateway answers
//! wrongly (a produce not `"status":200`, messages missing or delivered twice).
//!
//! It starts the release gateway binary (`RMQ_GATEWAY_BIN`, else `target/release/rmq-gateway`)
//! on a free port of 127.0.0.1 with a config of its own (topic, producer and consumer names
//! unique to the run), and kills it at the end. `BENCH_QUICK=1` runs 2 s per produce phase (CI:
//! keep it working); the default is 10 s. `BENCH_NO_WRK=1` forces the built-in HTTP loop.
//!
//!   cargo build --release -p rmq-gateway && cargo bench -p rmq-benches --no-run
//!   scripts/broker.sh exec -- cargo bench -p rmq-benches --bench gateway

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use rmq_client::{
    ClientConfig, MQClient, Message, Producer, ProducerConfig, PullConsumer, PullConsumerConfig,
};
use rmq_test_support::{http_builder, namesrv, unique, wait_bounded, Gateway};
use serde_json::Value;

#[path = "gateway/aliyun.rs"]
mod aliyun;

/// HTTP connections for produce, and sends in flight for the direct reference.
const CONNECTIONS: usize = 64;
const BODY_SIZE: usize = 1024;
/// Concurrent HTTP consume loops.
const CONSUMERS: usize = 8;
/// A request taking longer than this is an error (consume requests long-poll 1 s at most).
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
/// Upper bound of requests of one consume loop, besides the deadline.
const MAX_ROUNDS: usize = 100_000;
const WRK_LUA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/wrk/produce.lua");

// ---- results ----------------------------------------------------------------------------------

struct Report {
    mode: String,
    msgs: usize,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
    /// Index of the reference row this one is compared with.
    reference: usize,
    /// CPU the measured process spent over the phase: the gateway's for HTTP rows, this
    /// process's (the direct client's) for direct rows.
    cpu: Cpu,
}

impl Report {
    fn from_samples(
        mode: impl Into<String>,
        msgs: usize,
        elapsed: Duration,
        mut lat: Vec<Duration>,
        reference: usize,
    ) -> Report {
        lat.sort();
        let pct = |p: f64| {
            if lat.is_empty() {
                Duration::ZERO
            } else {
                lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)]
            }
        };
        Report {
            mode: mode.into(),
            msgs,
            elapsed,
            p50: pct(0.50),
            p99: pct(0.99),
            reference,
            cpu: Cpu::default(),
        }
    }

    fn with_cpu(mut self, cpu: Cpu) -> Report {
        self.cpu = cpu;
        self
    }

    /// (user, sys) µs of CPU per message.
    fn cpu_per_msg(&self) -> (f64, f64) {
        let n = self.msgs.max(1) as f64;
        (
            self.cpu.user.as_secs_f64() * 1e6 / n,
            self.cpu.sys.as_secs_f64() * 1e6 / n,
        )
    }

    fn rate(&self) -> f64 {
        self.msgs as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

fn mib(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

// ---- CPU and context switches -----------------------------------------------------------------

/// CPU time and context switches of a process over a phase (differences of two readings).
#[derive(Clone, Copy, Default, Debug)]
struct Cpu {
    user: Duration,
    sys: Duration,
    /// Voluntary + involuntary context switches (wake-ups, roughly), all threads.
    switches: u64,
}

impl std::ops::Sub for Cpu {
    type Output = Cpu;
    fn sub(self, o: Cpu) -> Cpu {
        Cpu {
            user: self.user.saturating_sub(o.user),
            sys: self.sys.saturating_sub(o.sys),
            switches: self.switches.saturating_sub(o.switches),
        }
    }
}

/// This process (the direct client): getrusage(RUSAGE_SELF), every thread, as `benches/client.rs`.
fn self_cpu() -> Cpu {
    // SAFETY: getrusage only writes the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return Cpu::default();
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Cpu {
        user: tv(ru.ru_utime),
        sys: tv(ru.ru_stime),
        switches: (ru.ru_nvcsw + ru.ru_nivcsw) as u64,
    }
}

/// Another process (the gateway child): utime and stime of /proc/<pid>/stat (all its threads,
/// in clock ticks), and the context switches of its live threads (/proc/<pid>/task/*/status).
fn proc_cpu(pid: u32) -> Cpu {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let ticks = |i: usize| Duration::from_secs_f64(f.get(i).copied().unwrap_or(0) as f64 / hz);
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let mut switches = 0;
    if let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in rd.flatten() {
            let st = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
            for l in st.lines() {
                if let Some(v) = l
                    .strip_prefix("voluntary_ctxt_switches:")
                    .or_else(|| l.strip_prefix("nonvoluntary_ctxt_switches:"))
                {
                    switches += v.trim().parse::<u64>().unwrap_or(0);
                }
            }
        }
    }
    Cpu {
        user: ticks(11),
        sys: ticks(12),
        switches,
    }
}

/// `BENCH_STRACE=1`: `strace -c -f -p PID` over a phase, to count syscalls per message (it
/// slows the process a lot: the phase's msg/s and CPU are then not comparable).
struct Strace {
    child: std::process::Child,
    out: PathBuf,
}

impl Strace {
    fn attach(pid: u32, out: PathBuf) -> Option<Strace> {
        if !std::env::var("BENCH_STRACE").is_ok_and(|v| v == "1") {
            return None;
        }
        let child = Command::new("strace")
            .args(["-c", "-f", "-o"])
            .arg(&out)
            .args(["-p", &pid.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| eprintln!("BENCH_STRACE: cannot run strace: {e}"))
            .ok()?;
        // Let it attach to every thread before the phase starts.
        std::thread::sleep(Duration::from_millis(500));
        Some(Strace { child, out })
    }

    /// Stops strace (SIGINT makes it write its summary) and returns (syscalls, summary).
    fn finish(self) -> (u64, String) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
        wait_bounded(self.child, Duration::from_secs(10));
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        let total = text
            .lines()
            .find(|l| l.trim_end().ends_with("total"))
            .and_then(|l| l.split_whitespace().nth(3))
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        (total, text)
    }
}

// ---- environment ------------------------------------------------------------------------------

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("benches/ has a parent")
        .to_path_buf()
}

fn newest_mtime(dir: &Path) -> Option<SystemTime> {
    let mut newest = None;
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let m = if e.file_type().ok()?.is_dir() {
            newest_mtime(&e.path())
        } else {
            e.metadata().ok()?.modified().ok()
        };
        newest = newest.max(m);
    }
    newest
}

/// `RMQ_GATEWAY_BIN`, else the workspace's release build; warns when a source of the gateway
/// or its crates is newer than the binary.
fn gateway_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("RMQ_GATEWAY_BIN") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "RMQ_GATEWAY_BIN={} does not exist",
            p.display()
        );
        return p;
    }
    let ws = workspace();
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(t) => ws.join(t),
        None => ws.join("target"),
    };
    let bin = target.join("release").join("rmq-gateway");
    if !bin.is_file() {
        panic!(
            "{} is missing: build the gateway first with `cargo build --release -p rmq-gateway` \
             (outside the broker's namespace, which has no network), or point RMQ_GATEWAY_BIN \
             at a gateway binary",
            bin.display()
        );
    }
    let built = bin.metadata().and_then(|m| m.modified()).ok();
    let sources = ["http-gateway/src", "broker-client/src", "remoting/src"]
        .iter()
        .filter_map(|d| newest_mtime(&ws.join(d)))
        .max();
    if let (Some(built), Some(src)) = (built, sources) {
        if src > built {
            eprintln!(
                "warning: {} is older than the gateway's sources: rebuild it with \
                 `cargo build --release -p rmq-gateway`",
                bin.display()
            );
        }
    }
    bin
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// True when the only network interface is the loopback (the broker's namespace).
fn loopback_only() -> bool {
    match std::fs::read_dir("/sys/class/net") {
        Ok(rd) => rd.flatten().all(|e| e.file_name() == "lo"),
        Err(_) => false,
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// wrk, or why not (then the built-in loop runs). Installs it with apt-get only where that can
/// work: as root, with a network (never inside the loopback-only namespace), bounded in time.
fn find_wrk() -> Result<PathBuf, String> {
    if std::env::var_os("BENCH_NO_WRK").is_some_and(|v| v != "0" && !v.is_empty()) {
        return Err("BENCH_NO_WRK is set".into());
    }
    if let Some(p) = find_in_path("wrk") {
        return Ok(p);
    }
    let how = "install it outside the broker's namespace first: `apt-get install -y wrk` \
               (Debian package wrk)";
    if loopback_only() {
        return Err(format!(
            "wrk is not installed and there is no network here (loopback-only namespace); {how}"
        ));
    }
    if !is_root() {
        return Err(format!("wrk is not installed and this is not root; {how}"));
    }
    eprintln!("wrk is not installed: trying `apt-get install -y -q wrk` (at most 180 s)");
    let child = Command::new("apt-get")
        .args(["install", "-y", "-q", "wrk"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let ok = match child {
        Ok(c) => matches!(wait_bounded(c, Duration::from_secs(180)), Some(s) if s.success()),
        Err(_) => false,
    };
    match find_in_path("wrk") {
        Some(p) if ok => Ok(p),
        _ => Err(format!("installing wrk with apt-get failed; {how}")),
    }
}

fn http() -> reqwest::Client {
    http_builder(HTTP_TIMEOUT)
        .pool_max_idle_per_host(CONNECTIONS)
        .build()
        .unwrap()
}

// ---- produce ----------------------------------------------------------------------------------

struct HttpProduce {
    tool: String,
    ok: usize,
    bad: usize,
    bad_sample: Option<String>,
    socket_errors: String,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
    raw: String,
}

/// wrk -t2 -c64 for `secs` with the lua script; parses the script's summary line.
fn wrk_produce(
    wrk: &Path,
    url: &str,
    producer: &str,
    secs: u64,
    dir: &Path,
) -> Result<HttpProduce, String> {
    let out_path = dir.join("wrk.out");
    let out = File::create(&out_path).map_err(|e| e.to_string())?;
    let child = Command::new(wrk)
        .args([
            "-t2",
            &format!("-c{CONNECTIONS}"),
            &format!("-d{secs}s"),
            "--timeout",
            "10s",
            "--latency",
            "-s",
            WRK_LUA,
            url,
            "--",
            producer,
            &BODY_SIZE.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(out.try_clone().map_err(|e| e.to_string())?)
        .stderr(out)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", wrk.display()))?;
    let status = wait_bounded(child, Duration::from_secs(secs + 30));
    let raw = std::fs::read_to_string(&out_path).unwrap_or_default();
    match status {
        Some(s) if s.success() => {}
        Some(s) => return Err(format!("wrk failed ({s}):\n{raw}")),
        None => return Err(format!("wrk did not end within {secs} s + 30 s:\n{raw}")),
    }
    let line = raw
        .lines()
        .find_map(|l| l.strip_prefix("RMQ_BENCH "))
        .ok_or_else(|| format!("no RMQ_BENCH line in wrk's output:\n{raw}"))?;
    let kv: HashMap<&str, u64> = line
        .split_whitespace()
        .filter_map(|f| f.split_once('='))
        .filter_map(|(k, v)| Some((k, v.parse().ok()?)))
        .collect();
    let get = |k: &str| {
        kv.get(k)
            .copied()
            .ok_or_else(|| format!("{k} missing in wrk's summary {line:?}"))
    };
    let requests = get("requests")? as usize;
    let bad = get("bad")? as usize;
    let socket_errors = ["connect", "read", "write", "status", "timeout"]
        .iter()
        .map(|k| Ok(format!("{k} {}", get(k)?)))
        .collect::<Result<Vec<_>, String>>()?
        .join(", ");
    Ok(HttpProduce {
        tool: format!("wrk -t2 -c{CONNECTIONS} -d{secs}s ({})", wrk.display()),
        ok: requests.saturating_sub(bad),
        bad,
        bad_sample: raw
            .lines()
            .find_map(|l| l.strip_prefix("RMQ_BENCH_BAD_SAMPLE "))
            .map(str::to_owned),
        socket_errors,
        elapsed: Duration::from_micros(get("duration_us")?),
        p50: Duration::from_micros(get("p50_us")?),
        p99: Duration::from_micros(get("p99_us")?),
        raw: raw
            .lines()
            .filter(|l| !l.starts_with("RMQ_BENCH"))
            .collect::<Vec<_>>()
            .join("\n"),
    })
}

fn form_body(producer: &str) -> String {
    format!("producer={producer}&message={}", "x".repeat(BODY_SIZE))
}

/// The fallback: 64 tasks POSTing the same form as the lua script for `dur`.
async fn builtin_produce(
    http: &reqwest::Client,
    url: &str,
    producer: &str,
    dur: Duration,
) -> HttpProduce {
    let body = Bytes::from(form_body(producer));
    let start = Instant::now();
    let deadline = start + dur;
    let mut handles = Vec::new();
    for _ in 0..CONNECTIONS {
        let (http, url, body) = (http.clone(), url.to_owned(), body.clone());
        handles.push(tokio::spawn(async move {
            let (mut ok, mut bad, mut sample, mut lat) = (0usize, 0usize, None, Vec::new());
            while Instant::now() < deadline {
                let s = Instant::now();
                let r = http
                    .post(&url)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body.clone())
                    .send()
                    .await;
                let text = match r {
                    Ok(r) => r.text().await.map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                lat.push(s.elapsed());
                match text {
                    Ok(t) if t.contains("\"status\":200") => ok += 1,
                    Ok(t) => {
                        bad += 1;
                        sample.get_or_insert(t);
                    }
                    Err(e) => {
                        bad += 1;
                        sample.get_or_insert(e);
                    }
                }
            }
            (ok, bad, sample, lat)
        }));
    }
    let (mut ok, mut bad, mut bad_sample, mut lat) = (0, 0, None, Vec::new());
    for h in handles {
        let (o, b, s, l) = h.await.unwrap();
        ok += o;
        bad += b;
        bad_sample = bad_sample.or(s);
        lat.extend(l);
    }
    let elapsed = start.elapsed();
    let r = Report::from_samples("", 0, elapsed, lat, 0);
    HttpProduce {
        tool: format!("built-in loop of {CONNECTIONS} reqwest tasks"),
        ok,
        bad,
        bad_sample,
        socket_errors: "counted as bad".into(),
        elapsed,
        p50: r.p50,
        p99: r.p99,
        raw: String::new(),
    }
}

/// The direct reference: `tasks` sync sends in flight for `dur`.
async fn direct_produce(
    p: &Producer,
    topic: &str,
    tasks: usize,
    dur: Duration,
) -> (usize, usize, Duration, Vec<Duration>) {
    let body = Bytes::from(vec![b'x'; BODY_SIZE]);
    let start = Instant::now();
    let deadline = start + dur;
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let (p, topic, body) = (p.clone(), topic.to_owned(), body.clone());
        handles.push(tokio::spawn(async move {
            let (mut errors, mut lat) = (0usize, Vec::new());
            while Instant::now() < deadline {
                let s = Instant::now();
                match p.send(Message::new(&topic, body.clone())).await {
                    Ok(_) => lat.push(s.elapsed()),
                    Err(e) => {
                        if errors == 0 {
                            eprintln!("direct send failed: {e}");
                        }
                        errors += 1;
                    }
                }
            }
            (errors, lat)
        }));
    }
    let (mut errors, mut lat) = (0, Vec::new());
    for h in handles {
        let (e, l) = h.await.unwrap();
        errors += e;
        lat.extend(l);
    }
    (lat.len(), errors, start.elapsed(), lat)
}

/// Messages in the topic by the broker's count (max offsets summed over its queues), once two
/// reads 300 ms apart agree (the consume queues are built asynchronously), 5 s at most.
async fn broker_count(client: &MQClient, topic: &str) -> (usize, usize) {
    let route = client
        .refresh_route(topic)
        .await
        .expect("topic route")
        .expect("the topic has no route");
    let queues = route.subscribe_queues.clone();
    let mut last = None;
    for _ in 0..16 {
        let mut sum = 0;
        for q in &queues {
            sum += client.max_offset(q).await.expect("max offset") as usize;
        }
        if last == Some(sum) {
            break;
        }
        last = Some(sum);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    (last.unwrap(), queues.len())
}

// ---- consume ----------------------------------------------------------------------------------

#[derive(Default)]
struct HttpConsume {
    got: usize,
    elapsed: Duration,
    lat: Vec<Duration>,
    requests: usize,
    empty: usize,
    errors: usize,
    error_sample: Option<String>,
    duplicates: usize,
}

/// `CONSUMERS` loops of GET /mq/message (waitSeconds=1), each passing the previous answer's
/// requestId (which acks that batch), until `target` messages came or the deadline passed.
/// Elapsed is up to the moment the last message arrived; the last batches are acked after.
async fn http_consume(
    http: &reqwest::Client,
    base: &str,
    topic: &str,
    consumer: &str,
    target: usize,
    limit: Duration,
) -> HttpConsume {
    let got = Arc::new(AtomicUsize::new(0));
    let ids = Arc::new(Mutex::new(HashSet::with_capacity(target)));
    let finished = Arc::new(Mutex::new(None::<Instant>));
    let start = Instant::now();
    let deadline = start + limit;
    let url = format!("{base}/mq/message");
    let mut handles = Vec::new();
    for _ in 0..CONSUMERS {
        let (http, url, topic, consumer) = (
            http.clone(),
            url.clone(),
            topic.to_owned(),
            consumer.to_owned(),
        );
        let (got, ids, finished) = (got.clone(), ids.clone(), finished.clone());
        handles.push(tokio::spawn(async move {
            let mut r = HttpConsume::default();
            let mut rid: Option<String> = None;
            for _ in 0..MAX_ROUNDS {
                if got.load(Ordering::Relaxed) >= target || Instant::now() >= deadline {
                    break;
                }
                let mut q = vec![
                    ("topic", topic.clone()),
                    ("consumer", consumer.clone()),
                    ("waitSeconds", "1".to_owned()),
                ];
                if let Some(id) = rid.take() {
                    q.push(("requestId", id));
                }
                let s = Instant::now();
                let v: Result<Value, String> = match http.get(&url).query(&q).send().await {
                    Ok(resp) => resp.json().await.map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                let took = s.elapsed();
                r.requests += 1;
                let res = match v {
                    Ok(v) if v["status"] == 200 => v["result"].clone(),
                    Ok(v) => {
                        r.errors += 1;
                        r.error_sample.get_or_insert(v.to_string());
                        continue;
                    }
                    Err(e) => {
                        r.errors += 1;
                        r.error_sample.get_or_insert(e);
                        continue;
                    }
                };
                let mut n = 0;
                {
                    let mut ids = ids.lock().unwrap();
                    for list in ["msgList", "retryMsgList"] {
                        for m in res[list].as_array().into_iter().flatten() {
                            n += 1;
                            let id = m["messageId"].as_str().unwrap_or_default().to_owned();
                            if !ids.insert(id) {
                                r.duplicates += 1;
                            }
                        }
                    }
                }
                rid = res["requestId"].as_str().map(str::to_owned);
                if n == 0 {
                    r.empty += 1;
                    continue;
                }
                r.lat.push(took);
                r.got += n;
                if got.fetch_add(n, Ordering::Relaxed) + n >= target {
                    finished.lock().unwrap().get_or_insert_with(Instant::now);
                }
            }
            (r, rid)
        }));
    }
    let mut total = HttpConsume::default();
    let mut pending = Vec::new();
    for h in handles {
        let (r, rid) = h.await.unwrap();
        total.got += r.got;
        total.lat.extend(r.lat);
        total.requests += r.requests;
        total.empty += r.empty;
        total.errors += r.errors;
        total.error_sample = total.error_sample.or(r.error_sample);
        total.duplicates += r.duplicates;
        pending.extend(rid);
    }
    total.elapsed = finished
        .lock()
        .unwrap()
        .map_or_else(|| start.elapsed(), |t| t - start);
    // Ack what the loops still hold, so the group ends fully committed.
    for id in pending {
        let q = [("topic", topic), ("consumer", consumer), ("requestId", &id)];
        match http.get(format!("{base}/mq/ack")).query(&q).send().await {
            Ok(resp) => {
                let v: Value = resp.json().await.unwrap_or_default();
                if v["status"] != 200 {
                    eprintln!("final ack of {id} answered {v}");
                }
            }
            Err(e) => eprintln!("final ack of {id} failed: {e}"),
        }
    }
    total
}

/// The direct reference: a `PullConsumer` of its own group pulling `target` messages of the
/// topic (offsets committed in the timing, as the gateway's acks are).
async fn direct_consume(
    client: &MQClient,
    group: &str,
    topic: &str,
    target: usize,
    limit: Duration,
) -> (usize, Duration, Vec<Duration>) {
    let mut cfg = PullConsumerConfig::new(group, topic);
    cfg.long_poll = Duration::from_secs(1);
    let start = Instant::now();
    let consumer = PullConsumer::start(client.clone(), cfg)
        .await
        .expect("starting the pull consumer");
    let (mut got, mut lat) = (0, Vec::new());
    while got < target && start.elapsed() < limit {
        let s = Instant::now();
        match consumer.poll(target - got).await {
            Ok(msgs) => {
                if !msgs.is_empty() {
                    lat.push(s.elapsed());
                }
                got += msgs.len();
            }
            Err(e) => {
                eprintln!("direct pull failed: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    consumer.commit().await.expect("commit");
    let elapsed = start.elapsed();
    if let Err(e) = consumer.shutdown().await {
        eprintln!("pull consumer shutdown: {e}");
    }
    (got, elapsed, lat)
}

// ---- main -------------------------------------------------------------------------------------

#[tokio::main]
async fn main() {
    let wall = Instant::now();
    let namesrv = namesrv();
    let quick = std::env::var("BENCH_QUICK").is_ok();
    let secs: u64 = if quick { 2 } else { 10 };
    let consume_limit = Duration::from_secs(if quick { 60 } else { 180 });
    let wrk = find_wrk();
    if let Err(note) = &wrk {
        eprintln!("note: {note}; using the built-in HTTP loop instead");
    }
    let bin = gateway_bin();

    let run = unique("run");
    let topic = format!("BenchGw_{run}");
    let direct_topic = format!("BenchGwDirect_{run}");
    let producer_name = format!("bench-producer-{run}");
    let consumer_name = format!("bench-consumer-{run}");
    let dir = std::env::temp_dir().join(format!("rmq-bench-gateway-{run}"));
    let tables = format!(
        "[[producer]]\nname = \"{producer_name}\"\ntopic = \"{topic}\"\n\
         [[consumer]]\nname = \"{consumer_name}\"\ntopic = \"{topic}\"\nmode = \"clustering\"\n\
         max_pull_size = 32\nconsume_timeout_ms = 60000\n{}",
        aliyun::tables()
    );

    let http = http();
    let rust_log = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
    let mut gw = Gateway::spawn(&bin, &namesrv, dir.clone(), &tables, &rust_log);
    gw.wait_healthy(Duration::from_secs(30)).await;
    let rss_idle = gw.rss();

    let client = MQClient::start(ClientConfig::new(&namesrv)).unwrap();
    let producer = Producer::new(
        client.clone(),
        ProducerConfig::new(format!("PG_bench_gw_{run}")),
    );

    // Warm-up: create both topics, open the connections.
    let produce_url = format!("{}/mq/produce", gw.base);
    let warm_body = form_body(&producer_name);
    let warm = 32;
    for _ in 0..warm {
        producer
            .send(Message::new(
                &direct_topic,
                Bytes::from(vec![b'x'; BODY_SIZE]),
            ))
            .await
            .expect("direct warm-up send");
        let v: Value = http
            .post(&produce_url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(warm_body.clone())
            .send()
            .await
            .expect("warm-up produce")
            .json()
            .await
            .expect("warm-up produce answer");
        assert!(v["status"] == 200, "warm-up produce answered {v}");
    }

    let mut reports = Vec::new();
    let dur = Duration::from_secs(secs);

    // Produce: the direct reference, then HTTP for the same time.
    let me = std::process::id();
    let gw_pid = gw.pid();
    let mut syscalls: Vec<Option<(u64, String)>> = Vec::new();
    let trace = Strace::attach(me, dir.join("strace-direct-produce.txt"));
    let cpu0 = self_cpu();
    let (n, direct_errors, elapsed, lat) =
        direct_produce(&producer, &direct_topic, CONNECTIONS, dur).await;
    let cpu = self_cpu() - cpu0;
    syscalls.push(trace.map(Strace::finish));
    reports.push(
        Report::from_samples(
            format!("produce, direct client, {CONNECTIONS} in flight"),
            n,
            elapsed,
            lat,
            0,
        )
        .with_cpu(cpu),
    );
    let trace = Strace::attach(gw_pid, dir.join("strace-gateway-produce.txt"));
    let cpu0 = proc_cpu(gw_pid);
    let hp = match &wrk {
        Ok(w) => {
            let (w, url, p, d) = (
                w.clone(),
                produce_url.clone(),
                producer_name.clone(),
                dir.clone(),
            );
            tokio::task::spawn_blocking(move || wrk_produce(&w, &url, &p, secs, &d))
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("{e}"))
        }
        Err(_) => builtin_produce(&http, &produce_url, &producer_name, dur).await,
    };
    let cpu = proc_cpu(gw_pid) - cpu0;
    syscalls.push(trace.map(Strace::finish));
    gw.check_alive();
    let rss_produce = gw.rss();
    reports.push(Report {
        mode: format!("produce, HTTP, {CONNECTIONS} connections"),
        msgs: hp.ok,
        elapsed: hp.elapsed,
        p50: hp.p50,
        p99: hp.p99,
        reference: 0,
        cpu,
    });
    // The floor: GET /health at the same concurrency, no broker behind it. What hyper, the
    // middleware and the kernel's loopback TCP cost per HTTP request on this machine, which no
    // change to the produce path can go below.
    // Reported last, so that the other rows keep their reference indices.
    let mut floor_report = None;
    if let Ok(w) = &wrk {
        let (w, url, d) = (w.clone(), format!("{}/health", gw.base), dir.clone());
        let cpu0 = proc_cpu(gw_pid);
        let floor = tokio::task::spawn_blocking(move || wrk_produce(&w, &url, "--floor", secs, &d))
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{e}"));
        let cpu = proc_cpu(gw_pid) - cpu0;
        assert_eq!(floor.bad, 0, "GET /health failed: {:?}", floor.bad_sample);
        floor_report = Some(Report {
            mode: format!("floor: GET /health, {CONNECTIONS} connections"),
            msgs: floor.ok,
            elapsed: floor.elapsed,
            p50: floor.p50,
            p99: floor.p99,
            reference: 0,
            cpu,
        });
    }
    let (in_topic, queues) = broker_count(&client, &topic).await;

    // Consume everything in the gateway's topic over HTTP, then the same with the direct client.
    let trace = Strace::attach(gw_pid, dir.join("strace-gateway-consume.txt"));
    let cpu0 = proc_cpu(gw_pid);
    let hc = http_consume(
        &http,
        &gw.base,
        &topic,
        &consumer_name,
        in_topic,
        consume_limit,
    )
    .await;
    let consume_cpu = proc_cpu(gw_pid) - cpu0;
    let consume_trace = trace.map(Strace::finish);
    gw.check_alive();
    let rss_consume = gw.rss();
    let trace = Strace::attach(me, dir.join("strace-direct-consume.txt"));
    let cpu0 = self_cpu();
    let (pulled, elapsed, lat) = direct_consume(
        &client,
        &format!("CG_bench_gw_direct_{run}"),
        &topic,
        in_topic,
        consume_limit,
    )
    .await;
    let cpu = self_cpu() - cpu0;
    syscalls.push(trace.map(Strace::finish));
    syscalls.push(consume_trace);
    reports.push(
        Report::from_samples(
            "consume, direct PullConsumer (per poll)",
            pulled,
            elapsed,
            lat,
            2,
        )
        .with_cpu(cpu),
    );
    reports.push(
        Report::from_samples(
            format!("consume, HTTP, {CONSUMERS} loops (per request)"),
            hc.got,
            hc.elapsed,
            hc.lat.clone(),
            2,
        )
        .with_cpu(consume_cpu),
    );

    // The Aliyun API: its topic exists before the first publish (the API never creates topics).
    let ali_topic = format!("BenchAli_{run}");
    producer
        .send(Message::new(&ali_topic, Bytes::from(vec![b'x'; BODY_SIZE])))
        .await
        .expect("creating the Aliyun topic");
    let route_deadline = Instant::now() + Duration::from_secs(30);
    while !matches!(client.refresh_route(&ali_topic).await, Ok(Some(_))) {
        assert!(Instant::now() < route_deadline, "no route for {ali_topic}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ali = aliyun::run(
        gw_pid,
        &http,
        &gw.base,
        &ali_topic,
        &format!("GID_bench_{run}"),
        dur,
        consume_limit,
        || async { broker_count(&client, &ali_topic).await.0 },
    )
    .await;
    gw.check_alive();
    reports.push(ali.publish);
    reports.push(ali.consume);
    reports.extend(floor_report);

    println!(
        "gateway against the real broker at {namesrv}, 1 KiB bodies{}",
        if quick { " (quick)" } else { "" }
    );
    println!("HTTP produce load: {}", hp.tool);
    if !hp.raw.is_empty() && !quick {
        for l in hp.raw.lines() {
            println!("  | {l}");
        }
    }
    // CPU: the gateway process's for HTTP rows (/proc/<pid>/stat), this process's for direct
    // rows (getrusage); "x direct" of cpu is the total against the direct row's.
    println!(
        "{:<46} {:>8} {:>8} {:>8} {:>8} {:>6} {:>8} {:>8} {:>8} {:>6} {:>7}",
        "mode",
        "msgs",
        "msg/s",
        "p50 ms",
        "p99 ms",
        "x dir",
        "usr us/m",
        "sys us/m",
        "cpu us/m",
        "x dir",
        "csw/m"
    );
    for r in &reports {
        let (u, y) = r.cpu_per_msg();
        let (ru, ry) = reports[r.reference].cpu_per_msg();
        println!(
            "{:<46} {:>8} {:>8.0} {:>8.2} {:>8.2} {:>6.2} {:>8.1} {:>8.1} {:>8.1} {:>6.2} {:>7.2}",
            r.mode,
            r.msgs,
            r.rate(),
            r.p50.as_secs_f64() * 1e3,
            r.p99.as_secs_f64() * 1e3,
            r.rate() / reports[r.reference].rate(),
            u,
            y,
            u + y,
            (u + y) / (ru + ry).max(1e-9),
            r.cpu.switches as f64 / r.msgs.max(1) as f64,
        );
    }
    for (r, sc) in reports.iter().zip(&syscalls) {
        if let Some((calls, text)) = sc {
            println!(
                "strace -c -f ({}): {calls} syscalls, {:.2} per message (msg/s and CPU of this \
                 row are slowed by strace)",
                r.mode,
                *calls as f64 / r.msgs.max(1) as f64
            );
            for l in text.lines().filter(|l| !l.trim().is_empty()).take(14) {
                println!("  | {l}");
            }
        }
    }
    println!(
        "gateway RSS: {:.1} MiB idle, {:.1} MiB after produce, {:.1} MiB after consume \
         (peak {:.1} MiB)",
        mib(rss_idle.0),
        mib(rss_produce.0),
        mib(rss_consume.0),
        mib(rss_consume.1)
    );
    println!(
        "produce: {} bad answers (not \"status\":200), socket errors: {}; direct send errors: {}",
        hp.bad, hp.socket_errors, direct_errors
    );
    println!(
        "broker: {in_topic} messages in the gateway's topic ({queues} queues) = {warm} warm-up + \
         {} counted by the load tool{}",
        hp.ok,
        match in_topic as i64 - (warm + hp.ok) as i64 {
            0 => String::new(),
            d => format!(" {d:+} (requests cut off when the load stopped)"),
        }
    );
    println!(
        "HTTP consume: {} of {in_topic} messages, {} requests ({} without messages), {} errors, \
         {} duplicates; direct pull: {pulled} of {in_topic}",
        hc.got, hc.requests, hc.empty, hc.errors, hc.duplicates
    );
    println!("{}", ali.summary);
    println!("wall time {:.1} s", wall.elapsed().as_secs_f64());

    let mut failures = ali.failures;
    if hp.bad > 0 {
        failures.push(format!(
            "{} produce answers were not \"status\":200, e.g. {}",
            hp.bad,
            hp.bad_sample.as_deref().unwrap_or("?")
        ));
    }
    if hc.got != in_topic || hc.duplicates > 0 {
        failures.push(format!(
            "HTTP consume got {} of {in_topic} messages with {} duplicates",
            hc.got, hc.duplicates
        ));
    }
    if hc.errors > 0 {
        failures.push(format!(
            "{} HTTP consume requests failed, e.g. {}",
            hc.errors,
            hc.error_sample.as_deref().unwrap_or("?")
        ));
    }
    if pulled != in_topic {
        failures.push(format!("the direct pull got {pulled} of {in_topic}"));
    }
    if direct_errors > 0 {
        failures.push(format!("{direct_errors} direct sends failed"));
    }
    client.shutdown().await;
    if failures.is_empty() {
        gw.stop();
    } else {
        // The access log buries the lines that explain a failure: show those apart.
        let log = gw.log_text();
        let notable: Vec<&str> = log
            .lines()
            .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
            .collect();
        eprintln!(
            "gateway log, warnings and errors ({} lines, last 40):\n{}",
            notable.len(),
            notable[notable.len().saturating_sub(40)..].join("\n")
        );
        eprintln!("gateway log (last lines):\n{}", gw.log_tail(30));
        drop(gw);
        for f in &failures {
            eprintln!("FAILED: {f}");
        }
        std::process::exit(1);
    }
}
