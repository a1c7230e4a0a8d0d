#!/usr/bin/env bash
# Every check, in the order CI runs them (.ci/run execs this). From a fresh clone:
#
#   scripts/test-all.sh
#
# 1. cargo fmt --check, cargo clippy -D warnings, and a build of every target (tests included),
#    all before anything enters the broker's network namespace (there is no network in there).
# 2. Per broker implementation (RMQ_TEST_BROKERS), one broker phase: scripts/broker.sh install +
#    start (a real name server and broker on 127.0.0.1 in a loopback-only network namespace;
#    failing to install or start fails the run: tests that need a broker are never skipped),
#    cargo test --workspace against it (offline, with RMQ_NAMESRV and RMQ_BROKER_IMPL set), the
#    send_and_pull, produce and consume examples as end-to-end smoke tests (consume must find all
#    20 messages, then nothing once offsets are committed), the benchmarks in quick mode (they
#    must run; their numbers are not judged), and stop.
#    Each phase also runs the guide's jQuery page and the gateway's status page in headless
#    Chromium (scripts/browser-test.sh), the schema-driven fuzzing of /openapi.json with
#    schemathesis (scripts/openapi-fuzz.sh, about 90 s) and the official Aliyun MQ HTTP SDKs
#    (http-gateway/tests/sdk/run.sh) against the gateway.
# 3. With Apache RocketMQ: the cluster phase, two Java brokers (broker-a, broker-b) in one cluster,
#    running the failover tests (broker-b stopped and restarted under producers and consumers,
#    through the client and through the gateway).
# 4. fuzz/run-ci.sh, when it exists (brief fuzzing runs; its own setup).
# 5. Whatever broker runs is stopped on exit, failure or interrupt included.
#
# Environment: everything scripts/broker.sh reads (RMQ_NAMESRV_PORT, RMQ_BROKER_PORT,
# RMQ_BROKER_ROOT, RMQ_BROKER_STATE, RMQ_NETNS, ...), and
#   RMQ_TEST_BROKERS     implementations to test, in order (default: rocketmq-rust, plus apache
#                        when RMQ_ROCKETMQ_HOME is set), e.g. "apache" or "rocketmq-rust apache"
#   RMQ_ROCKETMQ_HOME    an Apache RocketMQ binary distribution (4.9.x or 5.x) for `apache`
#   RMQ_TEST_CLUSTER     1 (default) / 0: the two-broker cluster phase after the apache phase
#   RMQ_TEST_FUZZ        1 (default) / 0: the fuzzing step
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==== %s   [%dm%02ds]\n' "$*" $((SECONDS / 60)) $((SECONDS % 60)); }

BROKERS=${RMQ_TEST_BROKERS:-rocketmq-rust${RMQ_ROCKETMQ_HOME:+ apache}}
# The cluster phase follows the apache phase.
CLUSTER_PHASE=${RMQ_TEST_CLUSTER:-1}
for impl in $BROKERS; do
    [[ $impl == rocketmq-rust || $impl == apache ]] || { echo "RMQ_TEST_BROKERS: unknown implementation '$impl'" >&2; exit 2; }
done
if [[ " $BROKERS " == *" apache "* ]] && [[ -z ${RMQ_ROCKETMQ_HOME:-} ]]; then
    echo "testing Apache RocketMQ needs RMQ_ROCKETMQ_HOME=<an Apache RocketMQ binary distribution>" >&2
    exit 2
fi

# Set while a broker phase runs, so that an exit at any point stops that broker.
broker_running=
finish() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n $broker_running ]]; then
        step "stopping the broker ($broker_running)"
        if ! scripts/broker.sh stop; then
            ((rc != 0)) || rc=1
        fi
    fi
    for line in "${timings[@]}"; do
        echo "$line"
    done
    if ((rc == 0)); then
        step "all checks passed"
    else
        step "FAILED (exit $rc)"
    fi
    exit "$rc"
}
timings=()
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The broker-backed test targets are behind these features; a plain `cargo test` skips them.
BROKER_TEST_FEATURES=rmq-client/broker-tests,rmq-gateway/broker-tests,rmq-cli/broker-tests
# The failover tests against two brokers (cluster phase only). Everything is built with both
# feature sets, so no phase recompiles; the test names start with cluster_failover_.
CLUSTER_TEST_FEATURES=rmq-client/broker-cluster-tests,rmq-gateway/broker-cluster-tests
ALL_TEST_FEATURES=$BROKER_TEST_FEATURES,$CLUSTER_TEST_FEATURES

step "cargo fmt --check"
cargo fmt --check

step "cargo clippy (all targets, broker tests included) -D warnings"
cargo clippy --workspace --all-targets --features "$ALL_TEST_FEATURES" -- -D warnings

step "cargo build --workspace --all-targets"
cargo build --workspace --all-targets --features "$ALL_TEST_FEATURES"
# The exact test binaries `cargo test` runs, so nothing needs compiling (or fetching) later.
cargo test --workspace --features "$ALL_TEST_FEATURES" --no-run
# The benchmarks run in quick mode below (they must keep working; their numbers are not judged).
cargo bench -p rmq-benches --no-run
# The gateway benchmark starts the release binary and drives it with wrk (Debian's package;
# without it the benchmark falls back to its own load loop).
cargo build --release -p rmq-gateway
if ! command -v wrk >/dev/null; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; } ||
        echo "wrk could not be installed; the gateway benchmark uses its own load loop"
fi

step "browser test: install (Debian's chromium; jQuery and playwright-core from npm)"
scripts/browser-test.sh install

step "OpenAPI fuzzing: install (schemathesis from PyPI, in a venv)"
scripts/openapi-fuzz.sh install

# in_broker CMD...: CMD where the broker is reachable (its namespace), offline.
in_broker() { scripts/broker.sh exec -- env CARGO_NET_OFFLINE=true "$@"; }

# broker_phase IMPL: every broker-backed check against one implementation.
broker_phase() {
    local impl=$1 started=$SECONDS
    export RMQ_BROKER_IMPL=$impl RMQ_BROKER_CLUSTER=1
    step "[$impl] broker: install"
    scripts/broker.sh install

    step "[$impl] broker: start"
    broker_running=$impl
    scripts/broker.sh start
    echo "tests reach the name server at $(scripts/broker.sh env | grep '^RMQ_NAMESRV=') ($impl)"

    step "[$impl] cargo test --workspace"
    in_broker cargo test --workspace --features "$ALL_TEST_FEATURES" -- --skip cluster_failover_

    step "[$impl] browser test: the guide's jQuery clients (CORS on and off) and the status page in headless Chromium"
    in_broker scripts/browser-test.sh run

    step "[$impl] OpenAPI fuzzing: schemathesis against /openapi.json, no 5xx, no crash"
    in_broker scripts/openapi-fuzz.sh run

    step "[$impl] the official Aliyun MQ HTTP SDKs (Python, Node) against the gateway"
    # Installs mq_http_sdk 1.0.3 (PyPI) and @aliyunmq/mq-http-sdk 1.0.4 (npm) on the host (cached),
    # then runs their checks in the broker's namespace; expected failures print XFAIL.
    http-gateway/tests/sdk/run.sh

    step "[$impl] example send_and_pull against the broker"
    local smoke_topic=CiSmoke_$$
    # New topic (auto-created through TBW102), then the same topic again, then binary headers.
    in_broker cargo run -q -p rmq-remoting --example send_and_pull -- --topic "$smoke_topic"
    in_broker cargo run -q -p rmq-remoting --example send_and_pull -- --topic "$smoke_topic" --header rocketmq

    step "[$impl] examples produce and consume against the broker"
    local ex_topic=CiExamples_$$ out
    in_broker cargo run -q -p rmq-client --example produce -- --topic "$ex_topic" --count 20 --size 1024 --tag ci --key-prefix k | tail -1
    out=$(in_broker cargo run -q -p rmq-client --example consume -- --topic "$ex_topic" --group CiExamples --count 20 --timeout 30)
    echo "$out" | tail -1
    [[ $(grep -c ' ci k' <<<"$out") -eq 20 ]] || { echo "consume printed $(grep -c ' ci k' <<<"$out") of 20 messages" >&2; exit 1; }
    # Offsets were committed: nothing is left for the group, so a second run times out (exit 1).
    if in_broker cargo run -q -p rmq-client --example consume -- --topic "$ex_topic" --group CiExamples --count 1 --timeout 3 >/dev/null 2>&1; then
        echo "consume found messages after the group had committed everything" >&2
        exit 1
    fi

    step "[$impl] benchmarks, quick mode (client and gateway against the broker)"
    in_broker env BENCH_QUICK=1 cargo bench -q -p rmq-benches --bench client
    in_broker env BENCH_QUICK=1 cargo bench -q -p rmq-benches --bench gateway

    step "[$impl] broker: stop"
    scripts/broker.sh stop
    broker_running=
    timings+=("broker phase $impl: $((SECONDS - started)) s")
}

# cluster_phase: two Apache brokers in one cluster; the failover tests.
cluster_phase() {
    local started=$SECONDS
    export RMQ_BROKER_IMPL=apache RMQ_BROKER_CLUSTER=2
    step "[apache cluster] broker: install + start broker-a and broker-b"
    scripts/broker.sh install
    broker_running="apache cluster"
    scripts/broker.sh start

    step "[apache cluster] failover tests (client, gateway)"
    in_broker cargo test --workspace --features "$ALL_TEST_FEATURES" --test broker_cluster --test gateway_cluster

    step "[apache cluster] broker: stop"
    scripts/broker.sh stop
    broker_running=
    timings+=("cluster phase apache: $((SECONDS - started)) s")
}

step "benchmark codec, quick mode (no broker)"
BENCH_QUICK=1 cargo bench -q -p rmq-benches --bench codec

for impl in $BROKERS; do
    broker_phase "$impl"
    if [[ $impl == apache && $CLUSTER_PHASE == 1 ]]; then
        cluster_phase
    fi
done

if [[ ${RMQ_TEST_FUZZ:-1} == 0 ]]; then
    step "fuzz/run-ci.sh skipped (RMQ_TEST_FUZZ=0)"
elif [[ -f fuzz/run-ci.sh ]]; then
    step "fuzz/run-ci.sh"
    bash fuzz/run-ci.sh
else
    step "fuzz/run-ci.sh absent: no fuzzing"
fi
