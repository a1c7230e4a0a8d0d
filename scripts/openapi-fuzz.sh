#!/usr/bin/env bash
# Schema-driven fuzzing of the gateway's HTTP APIs: schemathesis (PyPI) generates requests from
# GET /openapi.json for every documented operation and checks the answers against the
# document, on a gateway running against the real broker.
#
#   scripts/openapi-fuzz.sh install   a venv with schemathesis (pinned) under
#                                     ~/.local/share/rmq-gateway/schemathesis-venv ($RMQ_FUZZ_VENV);
#                                     idempotent; needs the network, so run it outside the
#                                     broker's namespace
#   scripts/openapi-fuzz.sh run       start a gateway on the broker (RMQ_NAMESRV) with a producer,
#                                     a clustering and a broadcast consumer, an admin token and
#                                     Aliyun credentials, produce a few messages, fuzz, then check
#                                     the gateway still serves; run it where the broker is:
#                                       scripts/broker.sh exec -- scripts/openapi-fuzz.sh run
#
# Fails on any 5xx answer (check not_a_server_error: the broker is up, so no 5xx is an outage),
# on a status code, content type, body or header the document does not describe, and when the
# gateway crashed. (MQ-Proxy answers HTTP 200 with an error status in its envelope by design, so
# the checks that want 4xx for invalid input, negative_data_rejection and ignored_auth, are off.)
# Aliyun routes are fuzzed too: unsigned requests must get a documented 4xx (403).
# FUZZ_CHECKS overrides the list of checks (e.g. all).
# Bounded: FUZZ_MAX_EXAMPLES (default 25) per operation and FUZZ_MAX_TIME (default 80) seconds.
# The gateway binary: $RMQ_GATEWAY_BIN, else ${CARGO_TARGET_DIR:-target}/debug/rmq-gateway.
# Port: FUZZ_PORT (default 18590).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

venv=${RMQ_FUZZ_VENV:-$HOME/.local/share/rmq-gateway/schemathesis-venv}
version=4.32.5

install() {
    if [[ ! -x $venv/bin/python ]]; then
        python3 -m venv "$venv"
    fi
    if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "$version"; then
        "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$version"
    fi
    "$venv/bin/schemathesis" --version
}

gateway_pid=
work=
cleanup() {
    if [[ -n $gateway_pid ]]; then
        kill "$gateway_pid" 2>/dev/null || true
        wait "$gateway_pid" 2>/dev/null || true
    fi
    if [[ -n $work ]]; then rm -rf "$work"; fi
}

run() {
    : "${RMQ_NAMESRV:?RMQ_NAMESRV is not set; run it as: scripts/broker.sh exec -- $0 run}"
    [[ -x $venv/bin/schemathesis ]] || {
        echo "openapi-fuzz: not installed; run: $0 install" >&2
        exit 1
    }
    local bin=${RMQ_GATEWAY_BIN:-${CARGO_TARGET_DIR:-target}/debug/rmq-gateway}
    [[ -x $bin ]] || { echo "openapi-fuzz: no gateway binary at $bin (cargo build -p rmq-gateway)" >&2; exit 1; }
    local port=${FUZZ_PORT:-18590} topic=FuzzTest_$$
    local base=http://127.0.0.1:$port
    work=$(mktemp -d)
    trap cleanup EXIT
    # Long polls are bounded to 1 s so that generated waitSeconds cannot stall the run.
    cat >"$work/gateway.toml" <<TOML
listen = "127.0.0.1:$port"
namesrv = ["$RMQ_NAMESRV"]
admin_token = "fuzz-$$"
max_wait_seconds = 1
[[producer]]
name = "fuzz-producer"
topic = "$topic"
[[consumer]]
name = "fuzz-consumer"
topic = "$topic"
[[consumer]]
name = "fuzz-broadcast"
topic = "$topic"
mode = "broadcast"
[aliyun]
credentials = [{ access_key_id = "fuzz-ak", access_key_secret = "fuzz-sk-$$" }]
TOML
    RUST_LOG=${RUST_LOG:-warn,rmq_gateway::access=off} "$bin" --config "$work/gateway.toml" >"$work/gateway.log" 2>&1 &
    gateway_pid=$!
    for _ in $(seq 100); do
        curl -sf "$base/healthz" >/dev/null 2>&1 && break
        kill -0 "$gateway_pid" 2>/dev/null || { cat "$work/gateway.log" >&2; exit 1; }
        sleep 0.2
    done
    for i in 1 2 3 4 5; do
        curl -sf -d producer=fuzz-producer -d "message=seed $i" "$base/mq/produce" >/dev/null
    done
    local rc=0
    "$venv/bin/schemathesis" run "$base/openapi.json" \
        --checks "${FUZZ_CHECKS:-not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance}" \
        --max-examples "${FUZZ_MAX_EXAMPLES:-25}" --max-time "${FUZZ_MAX_TIME:-80}" \
        --phases examples,coverage,fuzzing --request-timeout 15 --seed "${FUZZ_SEED:-20260101}" \
        --workers 2 --no-shrink --suppress-health-check all --warnings off || rc=$?
    if ! kill -0 "$gateway_pid" 2>/dev/null; then
        echo "openapi-fuzz: the gateway died during the run" >&2
        rc=1
    elif ! curl -sf "$base/healthz" >/dev/null; then
        echo "openapi-fuzz: the gateway no longer answers /healthz" >&2
        rc=1
    fi
    if grep -q "panicked" "$work/gateway.log"; then
        echo "openapi-fuzz: the gateway panicked" >&2
        rc=1
    fi
    if ((rc != 0)); then
        echo "---- gateway log (tail)" >&2
        tail -40 "$work/gateway.log" >&2
    fi
    return "$rc"
}

case ${1:-} in
install) install ;;
run) run ;;
*)
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
