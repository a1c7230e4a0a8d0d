#!/usr/bin/env bash
# The MQ-Proxy guide's jQuery clients in a real browser (headless Chromium) against the gateway,
# from a page on another origin: http-gateway/tests/browser/{page.html,run.mjs}; and the
# gateway's status page (GET /) with a consumer that has a backlog: status.mjs.
#
#   scripts/browser-test.sh install   Debian's chromium (apt) and the npm packages (jQuery,
#                                     playwright-core) from package-lock.json; idempotent; needs
#                                     the network, so run it before entering the broker's namespace
#   scripts/browser-test.sh run       start two gateways on the broker (RMQ_NAMESRV; one with CORS
#                                     for the page's origin, one without) and run the page against
#                                     both; then a third with a backlog for the status page; run it
#                                     where the broker is reachable:
#                                       scripts/broker.sh exec -- scripts/browser-test.sh run
#
# The gateway binary is built beforehand (cargo build -p rmq-gateway); it is taken from
# $RMQ_GATEWAY_BIN, else ${CARGO_TARGET_DIR:-target}/debug/rmq-gateway.
# Ports (loopback): BROWSER_TEST_PORT (default 18580) for the page, +1, +2 and +3 for the gateways.
# STATUS_SCREENSHOT=FILE keeps a PNG of the status page.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

dir=http-gateway/tests/browser
chromium_bin=${CHROMIUM:-/usr/bin/chromium}

install() {
    if [[ ! -x $chromium_bin ]]; then
        echo "browser-test: installing Debian's chromium" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    fi
    command -v npm >/dev/null || {
        echo "browser-test: installing nodejs and npm" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
    }
    if ! (cd "$dir" && npm ls --omit=dev >/dev/null 2>&1); then
        (cd "$dir" && npm ci --no-audit --no-fund)
    fi
}

pids=()
work=
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    if [[ -n $work ]]; then rm -rf "$work"; fi
}

wait_healthy() { # url pid log
    for _ in $(seq 1 100); do
        if node -e "fetch('$1/health').then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))"; then
            return 0
        fi
        kill -0 "$2" 2>/dev/null || { cat "$3" >&2; echo "browser-test: the gateway exited" >&2; return 1; }
        sleep 0.2
    done
    cat "$3" >&2
    echo "browser-test: the gateway at $1 did not become healthy" >&2
    return 1
}

run() {
    [[ -n ${RMQ_NAMESRV:-} ]] || {
        echo "browser-test: RMQ_NAMESRV is not set; run it as: scripts/broker.sh exec -- $0 run" >&2
        exit 1
    }
    [[ -x $chromium_bin && -d $dir/node_modules/playwright-core ]] || {
        echo "browser-test: not installed; run: $0 install" >&2
        exit 1
    }
    local bin=${RMQ_GATEWAY_BIN:-${CARGO_TARGET_DIR:-target}/debug/rmq-gateway}
    [[ -x $bin ]] || { echo "browser-test: no gateway binary at $bin (cargo build -p rmq-gateway)" >&2; exit 1; }
    local base=${BROWSER_TEST_PORT:-18580}
    local page_port=$base cors_port=$((base + 1)) plain_port=$((base + 2)) status_port=$((base + 3))
    local topic=BrowserTest_$$ token=browser-test-$$
    work=$(mktemp -d)
    trap cleanup EXIT

    cat >"$work/cors.toml" <<TOML
listen = "127.0.0.1:$cors_port"
namesrv = ["$RMQ_NAMESRV"]
admin_token = "$token"
cors_allowed_origins = ["http://127.0.0.1:$page_port"]
[[producer]]
name = "browser-producer"
topic = "$topic"
[[consumer]]
name = "browser-clustering"
topic = "$topic"
mode = "clustering"
[[consumer]]
name = "browser-broadcast"
topic = "$topic"
mode = "broadcast"
[[consumer]]
name = "browser-cookie"
topic = "$topic"
mode = "clustering"
TOML
    # CORS unset; a producer only, so that it never takes part in the consumer groups above.
    cat >"$work/plain.toml" <<TOML
listen = "127.0.0.1:$plain_port"
namesrv = ["$RMQ_NAMESRV"]
[[producer]]
name = "browser-producer"
topic = "$topic"
TOML
    # The environment must not turn CORS on for the plain one.
    env -u RMQ_GATEWAY_CORS_ORIGINS RUST_LOG=warn "$bin" --config "$work/cors.toml" >"$work/cors.log" 2>&1 &
    pids+=($!)
    env -u RMQ_GATEWAY_CORS_ORIGINS RUST_LOG=warn "$bin" --config "$work/plain.toml" >"$work/plain.log" 2>&1 &
    pids+=($!)
    wait_healthy "http://127.0.0.1:$cors_port" "${pids[0]}" "$work/cors.log"
    wait_healthy "http://127.0.0.1:$plain_port" "${pids[1]}" "$work/plain.log"

    local rc=0
    CHROMIUM=$chromium_bin node "$dir/run.mjs" --page-port "$page_port" \
        --cors-gw "http://127.0.0.1:$cors_port" --plain-gw "http://127.0.0.1:$plain_port" \
        --topic "$topic" --token "$token" --n "${BROWSER_TEST_MESSAGES:-10}" || rc=$?
    if ((rc != 0)); then
        echo "---- gateway with CORS (log)" >&2
        tail -40 "$work/cors.log" >&2
        return "$rc"
    fi
    status_page "$bin" "$status_port"
}

# status_page BIN PORT: a gateway whose consumer has a backlog (messages produced, none consumed),
# and its status page in Chromium.
status_page() {
    local bin=$1 port=$2 topic=StatusTest_$$ n=${STATUS_TEST_MESSAGES:-6}
    cat >"$work/status.toml" <<TOML
listen = "127.0.0.1:$port"
namesrv = ["$RMQ_NAMESRV"]
[[producer]]
name = "status-producer"
topic = "$topic"
[[consumer]]
name = "status-consumer"
topic = "$topic"
TOML
    env -u RMQ_GATEWAY_CORS_ORIGINS RUST_LOG=warn "$bin" --config "$work/status.toml" >"$work/status.log" 2>&1 &
    pids+=($!)
    wait_healthy "http://127.0.0.1:$port" "${pids[-1]}" "$work/status.log"
    node -e '
        const [gw, n] = [process.argv[1], Number(process.argv[2])];
        (async () => {
            for (let i = 0; i < n; i++) {
                const r = await fetch(gw + "/mq/produce", { method: "POST",
                    headers: { "content-type": "application/x-www-form-urlencoded" },
                    body: new URLSearchParams({ producer: "status-producer", message: "waiting " + i }) });
                const v = await r.json();
                if (v.status !== 200) { console.error("produce failed:", JSON.stringify(v)); process.exit(1); }
            }
        })();' "http://127.0.0.1:$port" "$n"
    local rc=0
    CHROMIUM=$chromium_bin node "$dir/status.mjs" --gw "http://127.0.0.1:$port" \
        --producer status-producer --consumer status-consumer --backlog "$n" \
        ${STATUS_SCREENSHOT:+--screenshot "$STATUS_SCREENSHOT"} || rc=$?
    if ((rc != 0)); then
        echo "---- gateway of the status page (log)" >&2
        tail -40 "$work/status.log" >&2
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
