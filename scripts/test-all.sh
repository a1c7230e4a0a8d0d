#!/usr/bin/env bash
# Every check, in the order CI runs them (.ci/run execs this). From a fresh clone:
#
#   scripts/test-all.sh
#
# 1. cargo fmt --check, cargo clippy -D warnings, and a build of every target (tests included),
#    all before anything enters the broker's network namespace (there is no network in there).
# 2. scripts/broker.sh install + start: a real name server and broker on 127.0.0.1, in a
#    loopback-only network namespace (see scripts/broker.sh). Failing to install or start them
#    fails the run: tests that need a broker are never skipped.
# 3. cargo test --workspace inside that namespace, with RMQ_NAMESRV set (offline).
# 4. The send_and_pull, produce and consume examples against the broker, as end-to-end smoke
#    tests (consume must find all 20 messages, then nothing once offsets are committed).
# 4b. The official Aliyun MQ HTTP SDKs against the gateway (http-gateway/tests/sdk/run.sh).
# 5. The benchmarks in quick mode (they must run; their numbers are not judged).
# 6. fuzz/run-ci.sh, when it exists (brief fuzzing runs; its own setup).
# 7. The broker is stopped on exit, failure or interrupt included.
#
# Environment: everything scripts/broker.sh reads (RMQ_NAMESRV_PORT, RMQ_BROKER_PORT,
# RMQ_BROKER_ROOT, RMQ_BROKER_STATE, RMQ_NETNS, ...).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==== %s   [%dm%02ds]\n' "$*" $((SECONDS / 60)) $((SECONDS % 60)); }

broker_started=0
finish() {
    local rc=$?
    trap - EXIT INT TERM
    if ((broker_started)); then
        step "stopping the broker"
        if ! scripts/broker.sh stop; then
            ((rc != 0)) || rc=1
        fi
    fi
    if ((rc == 0)); then
        step "all checks passed"
    else
        step "FAILED (exit $rc)"
    fi
    exit "$rc"
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The broker-backed test targets are behind these features; a plain `cargo test` skips them.
BROKER_TEST_FEATURES=rmq-client/broker-tests,rmq-gateway/broker-tests

step "cargo fmt --check"
cargo fmt --check

step "cargo clippy (all targets, broker tests included) -D warnings"
cargo clippy --workspace --all-targets --features "$BROKER_TEST_FEATURES" -- -D warnings

step "cargo build --workspace --all-targets"
cargo build --workspace --all-targets --features "$BROKER_TEST_FEATURES"
# The exact test binaries `cargo test` runs, so nothing needs compiling (or fetching) later.
cargo test --workspace --features "$BROKER_TEST_FEATURES" --no-run
# The benchmarks run in quick mode below (they must keep working; their numbers are not judged).
cargo bench -p rmq-benches --no-run
# The gateway benchmark starts the release binary and drives it with wrk (Debian's package;
# without it the benchmark falls back to its own load loop).
cargo build --release -p rmq-gateway
if ! command -v wrk >/dev/null; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; } ||
        echo "wrk could not be installed; the gateway benchmark uses its own load loop"
fi

step "broker: install"
scripts/broker.sh install

step "broker: start"
broker_started=1
scripts/broker.sh start
eval "$(scripts/broker.sh env)"
export RMQ_NAMESRV RMQ_NETNS
echo "tests reach the name server at RMQ_NAMESRV=$RMQ_NAMESRV (network namespace: $RMQ_NETNS)"

step "cargo test --workspace (RMQ_NAMESRV=$RMQ_NAMESRV)"
scripts/broker.sh exec -- env CARGO_NET_OFFLINE=true cargo test --workspace --features "$BROKER_TEST_FEATURES"

step "example send_and_pull against the broker"
smoke_topic=CiSmoke_$$
# New topic (auto-created through TBW102), then the same topic again, then binary headers.
scripts/broker.sh exec -- env CARGO_NET_OFFLINE=true \
    cargo run -q -p rmq-remoting --example send_and_pull -- --topic "$smoke_topic"
scripts/broker.sh exec -- env CARGO_NET_OFFLINE=true \
    cargo run -q -p rmq-remoting --example send_and_pull -- --topic "$smoke_topic" --header rocketmq

step "examples produce and consume against the broker"
ex_topic=CiExamples_$$
scripts/broker.sh exec -- env CARGO_NET_OFFLINE=true \
    cargo run -q -p rmq-client --example produce -- --topic "$ex_topic" --count 20 --size 1024 --tag ci --key-prefix k | tail -1
out=$(scripts/broker.sh exec -- env CARGO_NET_OFFLINE=true \
    cargo run -q -p rmq-client --example consume -- --topic "$ex_topic" --group CiExamples --count 20 --timeout 30)
echo "$out" | tail -1
[[ $(grep -c ' ci k' <<<"$out") -eq 20 ]] || { echo "consume printed $(grep -c ' ci k' <<<"$out") of 20 messages" >&2; exit 1; }
# Offsets were committed: nothing is left for the group, so a second run times out (exit 1).
if scripts/broker.sh exec -- env CARGO_NET_OFFLINE=true \
    cargo run -q -p rmq-client --example consume -- --topic "$ex_topic" --group CiExamples --count 1 --timeout 3 >/dev/null 2>&1; then
    echo "consume found messages after the group had committed everything" >&2
    exit 1
fi

step "the official Aliyun MQ HTTP SDKs (Python, Node) against the gateway"
# Installs mq_http_sdk 1.0.3 (PyPI) and @aliyunmq/mq-http-sdk 1.0.4 (npm) on the host, then runs
# their checks inside the broker's namespace; checks listed as expected to fail print XFAIL.
http-gateway/tests/sdk/run.sh
step "benchmarks, quick mode (codec; client and gateway against the broker)"
BENCH_QUICK=1 cargo bench -q -p rmq-benches --bench codec
scripts/broker.sh exec -- env CARGO_NET_OFFLINE=true BENCH_QUICK=1 \
    cargo bench -q -p rmq-benches --bench client
scripts/broker.sh exec -- env CARGO_NET_OFFLINE=true BENCH_QUICK=1 \
    cargo bench -q -p rmq-benches --bench gateway

if [[ -f fuzz/run-ci.sh ]]; then
    step "fuzz/run-ci.sh"
    bash fuzz/run-ci.sh
else
    step "fuzz/run-ci.sh absent: no fuzzing"
fi
