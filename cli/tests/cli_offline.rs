//! The `rmq` binary without a broker: help, bad arguments and an unreachable name server give
//! their exit codes and one line on stderr.

mod common;

use common::rmq_with;

fn rmq(args: &[&str]) -> common::Run {
    rmq_with(&[("RMQ_NAMESRV", "")], args, None)
}

#[test]
fn help_lists_every_command() {
    let out = rmq(&["--help"]);
    for c in [
        "cluster", "route", "topic", "group", "send", "pull", "consume", "message", "offsets",
        "bench",
    ] {
        assert!(out.ok().contains(c), "{c} missing from --help");
    }
    assert!(rmq(&["bench", "produce", "--help"]).ok().contains("--hist"));
    assert!(rmq(&["offsets", "reset", "--help"]).ok().contains("--to"));
}

#[test]
fn bad_arguments_exit_2() {
    // clap's own usage errors are several lines; the code is what scripts rely on.
    assert_eq!(rmq(&["topic", "create", "T", "--perm", "x"]).code, 2);
    assert_eq!(rmq(&["bench", "produce", "T", "--mode", "fast"]).code, 2);
    assert_eq!(rmq(&["nonsense"]).code, 2);
    rmq(&["cluster"]).fails(2, "RMQ_NAMESRV");
    rmq(&["-n", "localhost", "cluster"]).fails(2, "not HOST:PORT");
}

#[test]
fn unreachable_name_server_exits_4() {
    // Port 1 on loopback: nothing listens there.
    let out = rmq(&["-n", "127.0.0.1:1", "--timeout", "1", "route", "T"]);
    out.fails(4, "127.0.0.1:1");
    let out = rmq_with(
        &[("RMQ_NAMESRV", "127.0.0.1:1")],
        &["--json", "cluster"],
        None,
    );
    out.fails(4, "cannot connect");
}
