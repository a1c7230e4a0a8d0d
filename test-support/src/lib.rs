//! What the broker-backed tests and the benchmarks share, kept in one place: the broker's
//! address (and the message saying how to start it), unique names, free ports, the gateway
//! binary as a child process, and HTTP helpers for its JSON answers.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// The name server(s) of the test broker, from `RMQ_NAMESRV`. Panics with how to start the
/// broker when it is not set: broker-backed tests fail, they never skip.
pub fn namesrv() -> String {
    std::env::var("RMQ_NAMESRV").expect(
        "RMQ_NAMESRV is not set: start the broker with scripts/broker.sh start and run the tests \
         with scripts/broker.sh exec -- cargo test --features broker-tests ... (these tests need it)",
    )
}

/// Which broker implementation the tests face (`scripts/broker.sh exec` exports
/// `RMQ_BROKER_IMPL`); where the two differ, a test asserts each one's behaviour
/// (docs/broker-differences.md).
pub fn broker_is_rocketmq_rust() -> bool {
    match std::env::var("RMQ_BROKER_IMPL").as_deref() {
        Ok("rocketmq-rust") => true,
        Ok("apache") => false,
        other => panic!(
            "RMQ_BROKER_IMPL is {other:?}, not rocketmq-rust or apache: run the tests through \
             scripts/broker.sh exec, which sets it"
        ),
    }
}

/// `prefix_<pid>_<nanos>`: a topic or group name no other run has used.
pub fn unique(prefix: &str) -> String {
    let n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}_{}_{}", std::process::id(), n % 1_000_000_000_000)
}

/// A loopback port nothing listened on a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits for a child at most `limit`, killing it past that (`None` then).
pub fn wait_bounded(mut child: Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return Some(st),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

// ---- HTTP -------------------------------------------------------------------------------------

/// An HTTP client builder for the gateway: no proxy, every request bounded by `timeout`.
pub fn http_builder(timeout: Duration) -> reqwest::ClientBuilder {
    reqwest::Client::builder().timeout(timeout).no_proxy()
}

/// The JSON of a gateway answer, which is always HTTP 200.
pub async fn json_of(r: reqwest::Response) -> Value {
    assert_eq!(
        r.status(),
        reqwest::StatusCode::OK,
        "the gateway answers HTTP 200 always"
    );
    let text = r.text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text:.300}"))
}

/// GET `url` with query `q`, as JSON.
pub async fn get(http: &reqwest::Client, url: &str, q: &[(&str, &str)]) -> Value {
    json_of(http.get(url).query(q).send().await.unwrap()).await
}

/// POST `form` to `url`, as JSON.
pub async fn post_form(http: &reqwest::Client, url: &str, form: &[(&str, &str)]) -> Value {
    json_of(http.post(url).form(form).send().await.unwrap()).await
}

// ---- the gateway process ----------------------------------------------------------------------

/// A running gateway binary with its own config and log in a directory of its own; SIGKILLed
/// when dropped. The log is printed and kept when the thread is panicking, removed otherwise.
pub struct Gateway {
    child: Option<Child>,
    pid: u32,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    dir: PathBuf,
    log: PathBuf,
}

impl Gateway {
    /// Starts `bin` against the test broker ([`namesrv`]) on a free port, with `tables`
    /// (producer and consumer tables) as its config and debug logs, and waits until `/health`
    /// answers (20 s at most).
    pub async fn start(bin: impl AsRef<Path>, label: &str, tables: &str) -> Gateway {
        let dir = std::env::temp_dir().join(unique(&format!("rmq-gw-{label}")));
        let mut gw = Gateway::spawn(
            bin.as_ref(),
            &namesrv(),
            dir,
            tables,
            "info,rmq_gateway=debug",
        );
        gw.wait_healthy(Duration::from_secs(20)).await;
        gw
    }

    /// Starts `bin` on a free port with the name servers `namesrv` (`a;b`) and `tables`; its
    /// config and log go to `dir`. Does not wait for it: see [`wait_healthy`](Self::wait_healthy).
    pub fn spawn(bin: &Path, namesrv: &str, dir: PathBuf, tables: &str, rust_log: &str) -> Gateway {
        let addrs: Vec<String> = namesrv
            .split([';', ','])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| format!("\"{s}\""))
            .collect();
        let port = free_port();
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("gateway.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:{port}\"\nnamesrv = [{}]\n{tables}",
                addrs.join(", ")
            ),
        )
        .unwrap();
        let log = dir.join("gateway.log");
        let out = File::create(&log).unwrap();
        let child = Command::new(bin)
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", rust_log)
            // The config file alone says how the test gateway runs: no settings from the
            // environment that runs the tests (they would override it).
            .env_remove("RMQ_GATEWAY_LISTEN")
            .env_remove("RMQ_ALIYUN_ACCESS_KEY_ID")
            .env_remove("RMQ_ALIYUN_ACCESS_KEY_SECRET")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the gateway binary {}: {e}", bin.display()));
        Gateway {
            pid: child.id(),
            child: Some(child),
            base: format!("http://127.0.0.1:{port}"),
            dir,
            log,
        }
    }

    /// Waits until GET /health answers; panics with the log when the process exits or `within`
    /// passes.
    pub async fn wait_healthy(&mut self, within: Duration) {
        let http = http_builder(Duration::from_secs(1)).build().unwrap();
        let start = Instant::now();
        loop {
            self.check_alive();
            if let Ok(r) = http.get(format!("{}/health", self.base)).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            assert!(
                start.elapsed() < within,
                "the gateway did not answer /health within {within:?}:\n{}",
                self.log_tail(40)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Panics with the log when the process has exited.
    pub fn check_alive(&mut self) {
        let child = self.child.as_mut().expect("gateway already gone");
        if let Some(st) = child.try_wait().unwrap() {
            panic!("the gateway exited ({st}):\n{}", self.log_tail(40));
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// kill -9, and reap it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// kill -TERM (the gateway then gives its queue locks back and exits).
    pub fn sigterm(&self) {
        assert!(self.child.is_some(), "gateway already gone");
        let pid = self.pid as libc::pid_t;
        // SAFETY: plain kill(2) on our own child, which has not been reaped (we hold its Child).
        let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(rc, 0, "kill -TERM {pid} failed");
    }

    /// kill -STOP: the process stands still, its sockets stay open (as in a long pause).
    pub fn sigstop(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// kill -CONT after [`sigstop`](Self::sigstop).
    pub fn sigcont(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, sig: libc::c_int) {
        assert!(self.child.is_some(), "gateway already gone");
        let pid = self.pid as libc::pid_t;
        // SAFETY: plain kill(2) on our own child, which has not been reaped (we hold its Child).
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(rc, 0, "kill -{sig} {pid} failed");
    }

    /// Waits (bounded) for the process to exit; `None` if it still runs after `within`.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        let child = self.child.as_mut()?;
        for _ in 0..10_000 {
            if let Some(st) = child.try_wait().unwrap() {
                self.child = None;
                return Some(st);
            }
            if start.elapsed() >= within {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    /// SIGTERM, then SIGKILL after 10 s; removes its directory.
    pub fn stop(mut self) {
        if let Some(child) = self.child.take() {
            // SAFETY: as in `sigterm`.
            unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGTERM) };
            if wait_bounded(child, Duration::from_secs(10)).is_none() {
                eprintln!("the gateway did not stop within 10 s of SIGTERM: killed");
            }
        }
    }

    /// (VmRSS, VmHWM) in KiB.
    pub fn rss(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .expect("the gateway process is gone");
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// Everything the process logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `n` lines of the log.
    pub fn log_tail(&self, n: usize) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!(
                "---- gateway {} log (kept at {}), last lines ----\n{}",
                self.base,
                self.log.display(),
                self.log_tail(60)
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The two-broker cluster of the failover tests (`RMQ_BROKER_IMPL=apache RMQ_BROKER_CLUSTER=2
/// scripts/broker.sh start`): its settings, and topics that live on both brokers.
pub mod cluster {
    use std::collections::BTreeSet;
    use std::time::{Duration, Instant};

    use rmq_client::admin::TopicConfig;
    use rmq_client::MQClient;

    /// A setting `scripts/broker.sh exec` exports; panics saying how to start the cluster.
    pub fn env(name: &str) -> String {
        std::env::var(name).unwrap_or_else(|_| {
            panic!(
                "{name} is not set: start a two-broker cluster with RMQ_BROKER_IMPL=apache \
                 RMQ_BROKER_CLUSTER=2 scripts/broker.sh start and run this test through \
                 scripts/broker.sh exec -- cargo test --features broker-cluster-tests ..."
            )
        })
    }

    /// broker-a's and broker-b's addresses.
    pub fn broker_addrs() -> [String; 2] {
        assert_eq!(
            env("RMQ_BROKER_CLUSTER"),
            "2",
            "this test needs broker-a and broker-b (RMQ_BROKER_CLUSTER=2)"
        );
        let a: u16 = env("RMQ_BROKER_PORT").parse().unwrap();
        let b: u16 = env("RMQ_BROKER_B_PORT").parse().unwrap();
        [format!("127.0.0.1:{a}"), format!("127.0.0.1:{b}")]
    }

    /// Creates `topic` with 4 queues on both brokers and waits until the name server routes it
    /// to both (a topic auto-created by a first send would live on one broker only).
    pub async fn create_on_both(c: &MQClient, topic: &str) {
        let config = TopicConfig {
            read_queue_nums: 4,
            write_queue_nums: 4,
            ..TopicConfig::new(topic)
        };
        for addr in broker_addrs() {
            c.create_topic(&addr, &config)
                .await
                .unwrap_or_else(|e| panic!("creating {topic} on {addr}: {e}"));
        }
        let start = Instant::now();
        loop {
            if let Ok(Some(r)) = c.refresh_route(topic).await {
                let brokers: BTreeSet<&str> = r
                    .publish_queues
                    .iter()
                    .map(|q| q.broker_name.as_str())
                    .collect();
                if brokers.len() == 2 {
                    return;
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the name server never routed {topic} to both brokers"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
