#!/usr/bin/env bash
# The official Aliyun MQ HTTP SDKs against rmq-gateway and the test broker:
# Python mq_http_sdk 1.0.3 (PyPI) and Node @aliyunmq/mq-http-sdk 1.0.4 (npm), each running the
# checks in python/sdk_checks.py and node/sdk_checks.js.
#
#   http-gateway/tests/sdk/run.sh [python|node]...     (default: both)
#
# 1. On the host (needs the registries): a Python venv with the SDK under $RMQ_SDK_CACHE
#    (default ~/.cache/rmq-gateway/sdk), `npm ci` in node/ (package-lock.json pins the SDK),
#    and `cargo build` of the gateway and rmq-client's produce example.
# 2. scripts/broker.sh start (idempotent), then the rest runs inside the broker's namespace
#    (`scripts/broker.sh exec`): topics {instance}%{topic} created with one seed message each
#    (the gateway, like Aliyun, answers TopicNotExist for topics nobody created), two gateway
#    instances started with an [aliyun] table on 127.0.0.1:$SDK_GATEWAY_PORT (default 18080)
#    and the port after it (MQ_ENDPOINT_2, for acks through the other instance), the checks,
#    the gateways stopped. The broker is left running (scripts/broker.sh stop).
#
# A check prints PASS, FAIL, XFAIL (listed as expected to fail, with the reason) or XPASS; the
# script fails on any FAIL or XPASS.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../../.." && pwd)
cache=${RMQ_SDK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rmq-gateway/sdk}
target=${CARGO_TARGET_DIR:-$root/target}
port=${SDK_GATEWAY_PORT:-18080}
langs=("$@")
((${#langs[@]})) || langs=(python node)

if [[ ${1:-} != --inside ]]; then
    for l in "${langs[@]}"; do
        case $l in
        python)
            if [[ ! -x $cache/venv/bin/python ]]; then
                python3 -m venv "$cache/venv"
            fi
            "$cache/venv/bin/pip" install --quiet --disable-pip-version-check mq_http_sdk==1.0.3
            ;;
        node) (cd "$here/node" && npm ci --no-audit --no-fund --loglevel=error) ;;
        *)
            echo "unknown SDK $l (python or node)" >&2
            exit 2
            ;;
        esac
    done
    (cd "$root" && cargo build -p rmq-gateway --bin rmq-gateway && cargo build -p rmq-client --example produce)
    "$root/scripts/broker.sh" start >/dev/null
    exec "$root/scripts/broker.sh" exec -- env RMQ_SDK_CACHE="$cache" CARGO_TARGET_DIR="$target" \
        SDK_GATEWAY_PORT="$port" "$here/run.sh" --inside "${langs[@]}"
fi
shift
: "${RMQ_NAMESRV:?run through scripts/broker.sh exec}"

run=sdk$(date +%s)
instance=MQ_INST_SDK_$run
work=$(mktemp -d)
gateway_pids=()
cleanup() {
    for pid in "${gateway_pids[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

export MQ_ENDPOINT=http://127.0.0.1:$port
export MQ_ACCESS_KEY_ID=sdk-test-ak MQ_ACCESS_KEY_SECRET=sdk-test-sk-$run
export MQ_INSTANCE_ID=$instance MQ_INVISIBLE_SECONDS=5

# Two instances in front of the broker (the second on port + 1): acks through either work.
export MQ_ENDPOINT_2=http://127.0.0.1:$((port + 1))
start_gateway() { # port, name
    cat >"$work/$2.toml" <<TOML
listen = "127.0.0.1:$1"
namesrv = ["$RMQ_NAMESRV"]
[aliyun]
credentials = [{ access_key_id = "$MQ_ACCESS_KEY_ID", access_key_secret = "$MQ_ACCESS_KEY_SECRET" }]
invisible_time_ms = $((MQ_INVISIBLE_SECONDS * 1000))
TOML
    RUST_LOG=${RUST_LOG:-warn} "$target/debug/rmq-gateway" --config "$work/$2.toml" >"$work/$2.log" 2>&1 &
    local pid=$!
    gateway_pids+=("$pid")
    for _ in $(seq 100); do
        curl -sf "http://127.0.0.1:$1/health" >/dev/null 2>&1 && return 0
        kill -0 "$pid" 2>/dev/null || {
            cat "$work/$2.log" >&2
            exit 1
        }
        sleep 0.1
    done
}
start_gateway "$port" gateway
start_gateway "$((port + 1))" gateway2

status=0
for l in "$@"; do
    export MQ_TOPIC=${l}_$run MQ_ORDER_TOPIC=${l}_ord_$run MQ_TIMED_TOPIC=${l}_timed_$run
    export MQ_MISSING_TOPIC=${l}_missing_$run MQ_GROUP_PREFIX=GID_${l}_$run
    for t in "$MQ_TOPIC" "$MQ_ORDER_TOPIC" "$MQ_TIMED_TOPIC"; do
        "$target/debug/examples/produce" --topic "$instance%$t" --count 1 --tag seed >/dev/null
    done
    case $l in
    python) "$cache/venv/bin/python" "$here/python/sdk_checks.py" || status=1 ;;
    node) node "$here/node/sdk_checks.js" || status=1 ;;
    esac
done
if ((status)); then
    echo "--- gateway logs (last 40 lines each)" >&2
    tail -40 "$work/gateway.log" "$work/gateway2.log" >&2
fi
exit $status
