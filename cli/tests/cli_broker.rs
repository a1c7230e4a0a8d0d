//! Every `rmq` command against the real name server and broker (`RMQ_NAMESRV`): outputs parsed,
//! exit codes checked.
//!
//!   scripts/broker.sh exec -- cargo test -p rmq-cli --features broker-tests

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{rmq_with, Run};
use rmq_test_support::{namesrv, unique};
use serde_json::Value;

fn rmq(args: &[&str]) -> Run {
    rmq_with(&[("RMQ_NAMESRV", &namesrv())], args, None)
}

fn rmq_stdin(args: &[&str], input: &str) -> Run {
    rmq_with(&[("RMQ_NAMESRV", &namesrv())], args, Some(input))
}

/// Retries `f` until it returns Some, for state the broker publishes asynchronously.
fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn create_topic(queues: &str) -> String {
    let topic = unique("CliT");
    let v = rmq(&[
        "--json", "topic", "create", &topic, "-r", queues, "-w", queues,
    ])
    .json();
    assert_eq!(v["topic"], topic.as_str());
    assert!(!v["brokers"].as_array().unwrap().is_empty());
    eventually("the route of the new topic", || {
        let r = rmq(&["--json", "route", &topic]);
        (r.code == 0).then_some(())
    });
    topic
}

#[test]
fn cluster_shows_brokers_with_versions() {
    let v = rmq(&["--json", "cluster"]).json();
    let brokers = v["brokers"].as_array().unwrap();
    assert!(!brokers.is_empty());
    let b = &brokers[0];
    assert!(b["addr"].as_str().unwrap().contains(':'));
    assert!(b["version"].as_i64().unwrap() > 0, "{b}");
    assert!(b["versionName"].as_str().unwrap().starts_with('V'));
    assert!(v["clusters"]
        .as_object()
        .unwrap()
        .values()
        .any(|names| names.as_array().unwrap().contains(&b["brokerName"])));
    let text = rmq(&["cluster"]).ok().to_owned();
    assert!(text.starts_with("CLUSTER"));
    assert!(text.contains(b["addr"].as_str().unwrap()));
}

#[test]
fn topic_create_route_list_delete() {
    let topic = create_topic("3");
    let route = rmq(&["--json", "route", &topic]).json();
    let qd = &route["queueDatas"][0];
    assert_eq!(
        (
            qd["readQueueNums"].as_i64(),
            qd["writeQueueNums"].as_i64(),
            qd["perm"].as_i64()
        ),
        (Some(3), Some(3), Some(6))
    );
    assert!(rmq(&["route", &topic]).ok().contains("rw (6)"));
    let list = rmq(&["--json", "topic", "list"]).json();
    assert!(list["topics"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t == topic.as_str()));
    assert!(rmq(&["topic", "list"]).ok().lines().any(|l| l == topic));
    // Read-only update of the same topic.
    rmq(&[
        "topic", "create", &topic, "-r", "3", "-w", "3", "--perm", "r",
    ])
    .ok();
    eventually("perm 4 in the route", || {
        let r = rmq(&["--json", "route", &topic]).json();
        (r["queueDatas"][0]["perm"] == 4).then_some(())
    });
    let v = rmq(&["--json", "topic", "delete", &topic]).json();
    assert_eq!(v["deleted"], true);
    eventually("the route to disappear", || {
        let r = rmq(&["route", &topic]);
        (r.code == 3).then_some(())
    });
    rmq(&["route", &topic]).fails(3, &topic);
    rmq(&["topic", "delete", &topic]).fails(3, &topic);
}

#[test]
fn unknown_topic_exits_3_with_one_line() {
    let t = unique("CliNoSuchTopic");
    rmq(&["route", &t]).fails(3, &t);
    rmq(&["pull", &t]).fails(3, &t);
    rmq(&["consume", &t, "-g", "G", "--count", "1"]).fails(3, &t);
    rmq(&["offsets", "G", &t]).fails(3, &t);
    rmq(&["offsets", "reset", "G", &t, "--to", "latest"]).fails(3, &t);
    rmq(&["message", "query", "-t", &t, "-k", "k"]).fails(3, &t);
    rmq(&["bench", "consume", &t, "--count", "1"]).fails(3, &t);
}

#[test]
fn unreachable_and_bad_arguments_with_a_broker_around() {
    rmq(&["-n", "127.0.0.1:1", "--timeout", "1", "cluster"]).fails(4, "127.0.0.1:1");
    rmq(&["message", "get", "not-an-id"]).fails(2, "not-an-id");
    // A well-formed id of this broker at an offset where no message is.
    let v = rmq(&["--json", "cluster"]).json();
    let addr = v["brokers"][0]["addr"].as_str().unwrap().to_owned();
    let (ip, port) = addr.rsplit_once(':').unwrap();
    let ip: std::net::Ipv4Addr = ip.parse().unwrap();
    let id = format!(
        "{}{:08X}{:016X}",
        ip.octets()
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<String>(),
        port.parse::<u32>().unwrap(),
        1u64 << 40
    );
    rmq(&["message", "get", &id]).fails(5, &id);
    let t = create_topic("1");
    rmq_stdin(&["send", &t], "\n\n").fails(2, "standard input");
}

#[test]
fn send_pull_get_query() {
    let topic = create_topic("2");
    let key = unique("key");
    let v = rmq(&[
        "--json",
        "send",
        &topic,
        "hello world",
        "--tag",
        "TagA",
        "-k",
        &key,
        "-p",
        "color=blue",
    ])
    .json();
    assert_eq!(v["status"], "SEND_OK");
    let offset_id = v["offsetMsgId"].as_str().unwrap().to_owned();
    let msg_id = v["msgId"].as_str().unwrap().to_owned();
    // Three lines of stdin, three messages; an ordered pair on one queue.
    let lines = rmq_stdin(
        &["--json", "send", &topic, "--order-id", "o-1"],
        "one\ntwo\n\nthree\n",
    )
    .json_lines();
    assert_eq!(lines.len(), 3);
    assert!(lines.iter().all(|l| l["queueId"] == lines[0]["queueId"]));
    let text = rmq(&["send", &topic, "delayed", "--delay-level", "1"])
        .ok()
        .to_owned();
    assert!(text.starts_with("SEND_OK msgId="), "{text}");

    let got = rmq(&["--json", "pull", &topic]).json_lines();
    let bodies: Vec<&str> = got.iter().map(|m| m["body"].as_str().unwrap()).collect();
    for b in ["hello world", "one", "two", "three"] {
        assert!(bodies.contains(&b), "{b} missing from {bodies:?}");
    }
    let hello = got.iter().find(|m| m["body"] == "hello world").unwrap();
    assert_eq!(hello["tags"], "TagA");
    assert_eq!(hello["properties"]["color"], "blue");
    assert_eq!(hello["msgId"], msg_id.as_str());
    let two = rmq(&["--json", "pull", &topic, "--count", "2"]).json_lines();
    assert_eq!(two.len(), 2);
    let tagged = rmq(&["--json", "pull", &topic, "--tag", "TagA"]).json_lines();
    assert_eq!(tagged.len(), 1);
    assert!(rmq(&["--json", "pull", &topic, "--from", "latest"])
        .ok()
        .is_empty());
    let text = rmq(&["pull", &topic, "--tag", "TagA"]).ok().to_owned();
    assert!(
        text.contains("hello world") && text.contains(&key),
        "{text}"
    );

    let m = rmq(&["--json", "message", "get", &offset_id]).json();
    assert_eq!(m["body"], "hello world");
    assert_eq!(m["topic"], topic.as_str());
    assert!(rmq(&["message", "get", &offset_id])
        .ok()
        .contains("body: hello world"));

    let found = eventually("the key in the index", || {
        // rocketmq-rust answers SYSTEM_ERROR while its index catches up: ask again.
        let r = rmq(&["--json", "message", "query", "-t", &topic, "-k", &key]);
        if r.code != 0 {
            return None;
        }
        let v = r.json();
        let list = v["messages"].as_array().unwrap().clone();
        (!list.is_empty()).then_some(list)
    });
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["body"], "hello world");
    let query = |k: &str, unique: bool| {
        let mut args = vec!["--json", "message", "query", "-t", &topic, "-k", k];
        if unique {
            args.push("--unique");
        }
        eventually("an answer to a query", || {
            let r = rmq(&args);
            (r.code == 0).then(|| r.json())
        })
    };
    let by_id = query(&msg_id, true);
    assert_eq!(by_id["messages"][0]["offsetMsgId"], offset_id.as_str());
    let none = query("no-such-key", false);
    assert!(none["messages"].as_array().unwrap().is_empty());
}

fn offsets(group: &str, topic: &str) -> Value {
    rmq(&["--json", "offsets", group, topic]).json()
}

#[test]
fn group_create_list_consume_offsets_reset() {
    let group = unique("CliG");
    let v = rmq(&[
        "--json",
        "group",
        "create",
        &group,
        "--retry-max-times",
        "5",
    ])
    .json();
    assert_eq!(v["group"], group.as_str());
    let list = rmq(&["--json", "group", "list"]).json();
    let g = list["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["group"] == group.as_str())
        .cloned();
    let g = g.unwrap_or_else(|| panic!("{group} not listed"));
    assert_eq!(g["retryMaxTimes"], 5);
    assert!(rmq(&["group", "list"]).ok().contains(&group));

    let topic = create_topic("2");
    let input: String = (0..10).map(|i| format!("m{i}\n")).collect();
    assert_eq!(
        rmq_stdin(&["--json", "send", &topic], &input)
            .json_lines()
            .len(),
        10
    );

    let got = rmq(&[
        "--json", "consume", &topic, "-g", &group, "--from", "earliest", "--count", "10",
    ])
    .json_lines();
    assert_eq!(got.len(), 10);
    let o = offsets(&group, &topic);
    assert_eq!(o["totalBacklog"], 0, "{o}");
    let queues = o["queues"].as_array().unwrap();
    assert_eq!(queues.len(), 2);
    let committed: i64 = queues
        .iter()
        .map(|q| q["consumerOffset"].as_i64().unwrap())
        .sum();
    let max: i64 = queues
        .iter()
        .map(|q| q["brokerOffset"].as_i64().unwrap())
        .sum();
    assert_eq!((committed, max), (10, 10));
    // Without a topic: every topic the group has offsets of.
    let all = rmq(&["--json", "offsets", &group]).json();
    assert!(all["queues"]
        .as_array()
        .unwrap()
        .iter()
        .any(|q| q["topic"] == topic.as_str()));
    assert!(rmq(&["offsets", &group, &topic])
        .ok()
        .contains("total backlog: 0"));
    // Nothing left: an idle consume ends quietly.
    let idle = rmq(&[
        "--json", "consume", &topic, "-g", &group, "--from", "earliest", "--idle", "2",
    ]);
    assert!(idle.json_lines().is_empty());

    // Back to the start: the next consume gets everything again.
    let r = rmq(&[
        "--json", "offsets", "reset", &group, &topic, "--to", "earliest",
    ])
    .json();
    for q in r["queues"].as_array().unwrap() {
        assert_eq!(q["consumerOffset"], q["target"], "{r}");
    }
    assert_eq!(offsets(&group, &topic)["totalBacklog"], 10);
    // `--from earliest`: a committed 0 reads like "never committed" to a 4.9 client (the broker
    // answers 0 for both), and `--from latest` would then start at the end.
    let again = rmq(&[
        "--json", "consume", &topic, "-g", &group, "--from", "earliest", "--count", "10", "--idle",
        "20",
    ])
    .json_lines();
    assert_eq!(again.len(), 10);
    rmq(&[
        "--json", "offsets", "reset", &group, &topic, "--to", "latest",
    ])
    .json();
    assert_eq!(offsets(&group, &topic)["totalBacklog"], 0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
        .to_string();
    let r = rmq(&["--json", "offsets", "reset", &group, &topic, "--to", "0"]).json();
    assert!(
        r["queues"]
            .as_array()
            .unwrap()
            .iter()
            .all(|q| q["consumerOffset"] == 0),
        "{r}"
    );
    rmq(&["--json", "offsets", "reset", &group, &topic, "--to", &now]).json();
    rmq(&["offsets", &unique("CliNoGroup")]).fails(5, "no live consumers");
}

#[test]
fn bench_produce_every_mode_and_consume() {
    let topic = create_topic("4");
    let dir = std::env::temp_dir().join(unique("rmq-hist"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut stored = 0;
    for mode in ["sync", "async", "oneway", "batch"] {
        let hist = dir.join(format!("{mode}.hgrm"));
        let v = rmq(&[
            "--json",
            "bench",
            "produce",
            &topic,
            "--mode",
            mode,
            "-c",
            "4",
            "--batch",
            "8",
            "--size",
            "256",
            "--count",
            "400",
            "--hist",
            hist.to_str().unwrap(),
        ])
        .json();
        assert_eq!(v["messages"], 400, "{mode}: {v}");
        assert_eq!(v["errors"], 0, "{mode}: {v}");
        assert!(v["msgsPerSec"].as_f64().unwrap() > 0.0);
        assert!(v["p99Ms"].as_f64().unwrap() > 0.0);
        assert!(v["p99Ms"].as_f64() <= v["maxMs"].as_f64());
        assert!(v["cpuUsPerMsg"].as_f64().unwrap() > 0.0, "{v}");
        let samples = if mode == "batch" { 50 } else { 400 };
        assert_eq!(v["latencySamples"], samples, "{mode}");
        let text = std::fs::read_to_string(&hist).unwrap();
        assert!(
            text.contains(&format!("Total count    = {samples:12}")),
            "{text}"
        );
        stored += 400;
    }
    // Paced, with progress lines on stderr (not a terminal here).
    let r = rmq(&[
        "bench",
        "produce",
        &topic,
        "-c",
        "8",
        "--duration",
        "2.5",
        "--rate",
        "200",
    ]);
    let out = r.ok();
    assert!(
        out.contains("msg/s") && out.contains("us per message"),
        "{out}"
    );
    let progress: Vec<&str> = r.stderr.lines().filter(|l| l.contains("msg/s")).collect();
    assert!(progress.len() >= 2, "{:?}", r.stderr);
    // "produce sync, 1 tasks: N messages, ..."
    let sent: u64 = out
        .split(": ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .unwrap()
        .parse()
        .unwrap();
    // The pace caps the count; a busy machine may fall short of it, never above.
    assert!(
        (50..=520).contains(&sent),
        "{sent} messages at 200/s for 2.5 s"
    );

    // `--count` caps what is read. A Java broker makes messages pullable a moment after it
    // answers their sends (its consume queue is written behind the commit log), so read again
    // until 1000 are there; never more than the count.
    let v = eventually("1000 messages pullable", || {
        let v = rmq(&[
            "--json", "bench", "consume", &topic, "--count", "1000", "-c", "2",
        ])
        .json();
        let n = v["messages"].as_u64().unwrap();
        assert!(n <= 1000, "--count 1000 read {n}: {v}");
        (n == 1000).then_some(v)
    });
    assert!(v["cpuUsPerMsg"].as_f64().unwrap() > 0.0);
    // Everything answered (one-way sends a flooded broker may drop without a word).
    let all = eventually("every acknowledged message stored", || {
        let v = rmq(&["--json", "bench", "consume", &topic, "--duration", "10"]).json();
        (v["messages"].as_u64().unwrap() >= stored as u64 - 400).then_some(v)
    });
    assert_eq!(all["errors"], 0);
    std::fs::remove_dir_all(&dir).ok();
}
