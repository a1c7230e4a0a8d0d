#!/usr/bin/env bash
# A real RocketMQ name server + broker on 127.0.0.1 for tests: crates.io's rocketmq-namesrv and
# rocketmq-broker 1.0.0 (the Rust reimplementation of Apache RocketMQ; the only broker we can get).
#
#   scripts/broker.sh install          build both binaries once into $RMQ_BROKER_ROOT (~9 min)
#   scripts/broker.sh start            start both (idempotent), wait until ready, print RMQ_NAMESRV=...
#   scripts/broker.sh stop             stop exactly what `start` started (SIGTERM, then SIGKILL)
#   scripts/broker.sh status           say what runs; exit 0 only if both run
#   scripts/broker.sh exec -- CMD...   run CMD where the broker is reachable, with RMQ_NAMESRV set
#   scripts/broker.sh env              print RMQ_NAMESRV=... and RMQ_NETNS=... (for eval)
#   scripts/broker.sh logs             tail both logs
#   scripts/broker.sh stop-broker      stop only the broker, keeping its store (fault tests)
#   scripts/broker.sh start-broker     start it again and wait until it is ready
#
# Loopback only. The name server's own remoting client registers "<primary IP>:<port>" as its
# address (rocketmq-namesrv bootstrap.rs calls local_ip_address::local_ip(); no setting overrides
# it) and re-dials it every 30 s. So by default both processes run in a network namespace of their
# own, $RMQ_NETNS, that has only `lo`: there the lookup fails, it falls back to 127.0.0.1, and no
# packet can leave. Anything that talks to the broker must run in that namespace too, hence
# `exec`, which also sets CARGO_NET_OFFLINE=true (there is no network in there). Build first.
# Creating a namespace needs root (CI runs as root). RMQ_NETNS=none runs on the host network
# instead, where the name server then dials your primary address every 30 s.
#
# Settings (environment):
#   RMQ_BROKER_ROOT      install root, outside the clone
#                        (default $HOME/.local/share/rmq-gateway/rocketmq-rust-1.0.0)
#   RMQ_BROKER_STATE     pid files, logs, configs and the store (default /tmp/rmq-gateway-broker);
#                        the store is wiped on every fresh start
#   RMQ_NETNS            network namespace (default rmq-gateway; `none` = host network)
#   RMQ_NAMESRV_PORT     name server port (default 9876); its health port is +1
#   RMQ_BROKER_PORT      broker port (default 10911); the broker also listens on port-2 (its "fast"
#                        port), +1 (HA) and +2 (health)
#   RMQ_BROKER_START_TIMEOUT   seconds to wait for readiness (default 60)
#   RMQ_BROKER_STOP_TIMEOUT    seconds between SIGTERM and SIGKILL (default 20)
#   RUST_LOG             log filter of both processes (default info)
set -euo pipefail

readonly NAMESRV_CRATE=rocketmq-namesrv@1.0.0
readonly BROKER_CRATE=rocketmq-broker@1.0.0
readonly NAMESRV_BIN_NAME=rocketmq-namesrv-rust
readonly BROKER_BIN_NAME=rocketmq-broker-rust

ROOT=${RMQ_BROKER_ROOT:-${HOME:-/root}/.local/share/rmq-gateway/rocketmq-rust-1.0.0}
STATE=${RMQ_BROKER_STATE:-/tmp/rmq-gateway-broker}
NETNS=${RMQ_NETNS:-rmq-gateway}
NAMESRV_PORT=${RMQ_NAMESRV_PORT:-9876}
BROKER_PORT=${RMQ_BROKER_PORT:-10911}
START_TIMEOUT=${RMQ_BROKER_START_TIMEOUT:-60}
STOP_TIMEOUT=${RMQ_BROKER_STOP_TIMEOUT:-20}

NAMESRV_HEALTH_PORT=$((NAMESRV_PORT + 1))
BROKER_FAST_PORT=$((BROKER_PORT - 2))
BROKER_HA_PORT=$((BROKER_PORT + 1))
BROKER_HEALTH_PORT=$((BROKER_PORT + 2))
NAMESRV_ADDR=127.0.0.1:$NAMESRV_PORT

NAMESRV_BIN=$ROOT/bin/$NAMESRV_BIN_NAME
BROKER_BIN=$ROOT/bin/$BROKER_BIN_NAME

log() { printf 'broker.sh: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
}

use_netns() { [[ -n $NETNS && $NETNS != none ]]; }

# Runs "$@" in the namespace (or directly when RMQ_NETNS=none).
in_ns() {
    if use_netns; then
        ip netns exec "$NETNS" "$@"
    else
        "$@"
    fi
}

check_ports() {
    local p
    for p in "$NAMESRV_PORT" "$BROKER_PORT"; do
        [[ $p =~ ^[0-9]+$ ]] || die "port '$p' is not a number"
    done
    ((NAMESRV_PORT >= 1 && NAMESRV_HEALTH_PORT <= 65535)) || die "RMQ_NAMESRV_PORT out of range"
    ((BROKER_FAST_PORT >= 1 && BROKER_HEALTH_PORT <= 65535)) || die "RMQ_BROKER_PORT out of range"
    local ns_ports=" $NAMESRV_PORT $NAMESRV_HEALTH_PORT "
    for p in "$BROKER_FAST_PORT" "$BROKER_PORT" "$BROKER_HA_PORT" "$BROKER_HEALTH_PORT"; do
        [[ $ns_ports != *" $p "* ]] || die "name server ports ($NAMESRV_PORT, +1) overlap broker ports ($BROKER_FAST_PORT..$BROKER_HEALTH_PORT)"
    done
}

# ---------------------------------------------------------------------------------------------
# install

installed() { [[ -x $NAMESRV_BIN && -x $BROKER_BIN ]]; }

ensure_zlib() {
    # libz-sys links the system zlib (found through pkg-config); nothing else is needed.
    if pkg-config --exists zlib 2>/dev/null || [[ -e /usr/include/zlib.h ]]; then
        return 0
    fi
    command -v apt-get >/dev/null || die "zlib development files are missing and apt-get is unavailable; install zlib (headers) yourself"
    [[ $(id -u) -eq 0 ]] || die "zlib development files are missing; run: sudo apt-get install -y zlib1g-dev pkg-config"
    log "installing zlib1g-dev (missing)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends zlib1g-dev pkg-config </dev/null ||
        { apt-get update </dev/null && apt-get install -y --no-install-recommends zlib1g-dev pkg-config </dev/null; } ||
        die "apt-get could not install zlib1g-dev"
}

# Another `cargo install` into the same root (e.g. started by hand) finishes first.
wait_for_foreign_install() {
    local waited=0 pids
    while pids=$(pgrep -f "cargo install.*--root[= ]$ROOT( |$)" || true) && [[ -n $pids ]]; do
        if ((waited % 60 == 0)); then
            log "waiting for a running 'cargo install' into $ROOT (pid ${pids//$'\n'/ })"
        fi
        sleep 5
        waited=$((waited + 5))
    done
}

cmd_install() {
    if installed; then
        log "already installed: $ROOT/bin/{$NAMESRV_BIN_NAME,$BROKER_BIN_NAME}"
        return 0
    fi
    command -v cargo >/dev/null || die "cargo not found (install Rust first)"
    mkdir -p "$ROOT"
    exec 9>"$ROOT/.install.lock"
    if ! flock -n 9; then
        log "another broker.sh install holds $ROOT/.install.lock; waiting"
        flock 9
    fi
    wait_for_foreign_install
    if installed; then
        log "installed meanwhile: $ROOT/bin"
        return 0
    fi
    ensure_zlib
    log "building $NAMESRV_CRATE and $BROKER_CRATE (debug) into $ROOT; ~9 min on 2 cores"
    local started=$SECONDS
    cargo install --locked --debug --root "$ROOT" "$NAMESRV_CRATE" "$BROKER_CRATE" </dev/null ||
        die "cargo install of $NAMESRV_CRATE $BROKER_CRATE failed"
    installed || die "cargo install finished but $NAMESRV_BIN or $BROKER_BIN is missing"
    log "installed in $((SECONDS - started)) s: $ROOT/bin"
}

# ---------------------------------------------------------------------------------------------
# processes

pid_of() { # name -> pid if that process runs our binary, else nothing
    local f=$STATE/$1.pid pid exe
    [[ -s $f ]] || return 0
    pid=$(<"$f")
    [[ $pid =~ ^[0-9]+$ ]] || return 0
    exe=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
    exe=${exe% (deleted)}
    [[ -n $exe ]] || return 0
    case $1 in
    namesrv) [[ $exe -ef $NAMESRV_BIN || $exe == $(readlink -m "$NAMESRV_BIN") ]] && echo "$pid" ;;
    broker) [[ $exe -ef $BROKER_BIN || $exe == $(readlink -m "$BROKER_BIN") ]] && echo "$pid" ;;
    esac
    return 0
}

# GET /readyz on 127.0.0.1:$1 inside the namespace; success on HTTP 200.
ready() {
    # shellcheck disable=SC2016 # expanded by the inner bash
    in_ns bash -c '
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf "GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n" >&3
        IFS= read -r -t 2 status <&3 || exit 1
        [[ $status == "HTTP/1."?" 200"* ]]' ready "$1" 2>/dev/null
}

netns_exists() { ip netns list 2>/dev/null | awk '{print $1}' | grep -qxF "$NETNS"; }

ensure_netns() {
    use_netns || return 0
    command -v ip >/dev/null || die "'ip' (iproute2) is needed for the network namespace"
    if ! netns_exists; then
        [[ $(id -u) -eq 0 ]] || die "creating network namespace '$NETNS' needs root (or RMQ_NETNS=none to use the host network)"
        ip netns add "$NETNS" || die "cannot create network namespace '$NETNS'"
    fi
    ip netns exec "$NETNS" ip link set lo up || die "cannot bring up lo in '$NETNS'"
    local extra
    extra=$(ip netns exec "$NETNS" ip -o link show | awk -F': ' '{print $2}' | grep -v '^lo$' || true)
    [[ -z $extra ]] || die "network namespace '$NETNS' has interfaces besides lo ($extra); it must be loopback-only"
}

write_configs() {
    local data=$STATE/data
    cat >"$STATE/namesrv.toml" <<EOF
# Generated by scripts/broker.sh; rocketmq-namesrv-rust 1.0.0 (top-level camelCase keys).
rocketmqHome = "$data/home"
kvConfigPath = "$data/namesrv/kvConfig.json"
configStorePath = "$data/namesrv/namesrv.properties"
listenPort = $NAMESRV_PORT
bindAddress = "127.0.0.1"
EOF
    cat >"$STATE/broker.toml" <<EOF
# Generated by scripts/broker.sh; rocketmq-broker-rust 1.0.0 canonical TOML.
[broker]
namesrvAddr = "$NAMESRV_ADDR"
brokerIp1 = "127.0.0.1"
brokerIp2 = "127.0.0.1"
listenPort = $BROKER_PORT
storePathRootDir = "$data/store"
autoCreateTopicEnable = true
autoCreateSubscriptionGroup = true

[broker.brokerServerConfig]
bindAddress = "127.0.0.1"

[broker.brokerIdentity]
brokerName = "broker-a"
brokerClusterName = "DefaultCluster"
brokerId = 0

[store]
storePathRootDir = "$data/store"
brokerRole = "ASYNC_MASTER"
flushDiskType = "ASYNC_FLUSH"
haListenAddress = "127.0.0.1"
haListenPort = $BROKER_HA_PORT
# Small files: the defaults (1 GiB commit log, 5M-slot index) take ~1.5 GB per store.
mappedFileSizeCommitLog = 67108864
mappedFileSizeConsumeQueue = 120000
maxHashSlotNum = 10000
maxIndexNum = 40000
EOF
}

# launch NAME BIN CONFIG HEALTH_PORT
launch() {
    local name=$1 bin=$2 conf=$3 health=$4
    rm -f "$STATE/$name.pid"
    # The inner shell writes its own pid, then execs the server: the pid file names the server
    # itself whatever setsid or `ip netns exec` do.
    # shellcheck disable=SC2016 # expanded by the inner sh
    in_ns setsid env \
        ROCKETMQ_HOME="$STATE/data/home" \
        ROCKETMQ_HEALTH_BIND_ADDR="127.0.0.1:$health" \
        ROCKETMQ_SHUTDOWN_TIMEOUT_SECONDS=$((STOP_TIMEOUT > 2 ? STOP_TIMEOUT - 2 : 1)) \
        RUST_LOG="${RUST_LOG:-info}" \
        NO_COLOR=1 \
        sh -c 'echo $$ >"$1"; shift; exec "$@"' launch "$STATE/$name.pid" "$bin" -c "$conf" \
        </dev/null >>"$STATE/logs/$name.log" 2>&1 8>&- 9>&- &
    local i
    for i in $(seq 50); do
        [[ -s $STATE/$name.pid ]] && return 0
        sleep 0.1
    done
    die "$name did not start (no pid file); see $STATE/logs/$name.log"
}

tail_logs() {
    local name
    for name in namesrv broker; do
        if [[ -f $STATE/logs/$name.log ]]; then
            log "---- last lines of $STATE/logs/$name.log ----"
            tail -n "${1:-40}" "$STATE/logs/$name.log" | sed 's/\x1b\[[0-9;]*m//g' >&2
        fi
    done
}

# wait_ready NAME HEALTH_PORT DEADLINE
wait_ready() {
    local name=$1 port=$2 deadline=$3
    while ! ready "$port"; do
        if [[ -z $(pid_of "$name") ]]; then
            tail_logs
            cmd_stop >/dev/null 2>&1 || true
            die "$name exited during start-up (logs above, full logs in $STATE/logs)"
        fi
        if ((SECONDS >= deadline)); then
            tail_logs
            cmd_stop >/dev/null 2>&1 || true
            die "$name not ready within ${START_TIMEOUT}s (logs above, full logs in $STATE/logs)"
        fi
        sleep 0.2
    done
}

print_address() {
    echo "RMQ_NAMESRV=$NAMESRV_ADDR"
    if use_netns; then
        log "the name server listens on $NAMESRV_ADDR inside network namespace '$NETNS' only;"
        log "reach it with: scripts/broker.sh exec -- <command>   (or: ip netns exec $NETNS <command>)"
    fi
}

cmd_start() {
    check_ports
    installed || die "binaries missing in $ROOT/bin; run: scripts/broker.sh install"
    mkdir -p "$STATE"
    exec 8>"$STATE/.lock"
    flock 8
    local np bp
    np=$(pid_of namesrv)
    bp=$(pid_of broker)
    if [[ -n $np && -n $bp ]] && ready "$BROKER_HEALTH_PORT"; then
        log "already running (name server pid $np, broker pid $bp)"
        print_address
        return 0
    fi
    if [[ -n $np || -n $bp ]]; then
        log "only partly running; restarting"
        cmd_stop
    fi
    ensure_netns
    use_netns || log "warning: RMQ_NETNS=none: on the host network the name server dials this host's primary address every 30 s"
    local started=$SECONDS
    rm -rf "$STATE/data"
    mkdir -p "$STATE/data/home" "$STATE/data/namesrv" "$STATE/data/store" "$STATE/logs"
    local name
    for name in namesrv broker; do
        [[ -f $STATE/logs/$name.log ]] && mv -f "$STATE/logs/$name.log" "$STATE/logs/$name.log.prev"
    done
    write_configs
    local deadline=$((SECONDS + START_TIMEOUT))
    launch namesrv "$NAMESRV_BIN" "$STATE/namesrv.toml" "$NAMESRV_HEALTH_PORT"
    wait_ready namesrv "$NAMESRV_HEALTH_PORT" "$deadline"
    launch broker "$BROKER_BIN" "$STATE/broker.toml" "$BROKER_HEALTH_PORT"
    # The broker's /readyz turns 200 once it has registered with the name server.
    wait_ready broker "$BROKER_HEALTH_PORT" "$deadline"
    log "started in $((SECONDS - started)) s: name server pid $(pid_of namesrv), broker pid $(pid_of broker); logs in $STATE/logs"
    print_address
}

# stop_one NAME
stop_one() {
    local name=$1 pid i
    pid=$(pid_of "$name")
    if [[ -z $pid ]]; then
        rm -f "$STATE/$name.pid"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
        [[ -z $(pid_of "$name") ]] && break
        sleep 0.1
    done
    if [[ -n $(pid_of "$name") ]]; then
        log "$name (pid $pid) ignored SIGTERM for ${STOP_TIMEOUT}s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            [[ -z $(pid_of "$name") ]] && break
            sleep 0.1
        done
    fi
    [[ -z $(pid_of "$name") ]] || die "$name (pid $pid) is still running"
    rm -f "$STATE/$name.pid"
    log "stopped $name (pid $pid)"
}

cmd_stop() {
    # The broker first, so it unregisters from a live name server.
    stop_one broker
    stop_one namesrv
    # Drop the namespace when nothing is left in it (a test still running there keeps it).
    if use_netns && netns_exists && [[ -z $(ip netns pids "$NETNS" 2>/dev/null) ]]; then
        ip netns del "$NETNS" 2>/dev/null || true
    fi
}

cmd_status() {
    local np bp rc=0
    np=$(pid_of namesrv)
    bp=$(pid_of broker)
    if [[ -n $np ]]; then
        echo "name server: running (pid $np) on $NAMESRV_ADDR$(use_netns && echo " in netns $NETNS")"
    else
        echo "name server: not running"
        rc=3
    fi
    if [[ -n $bp ]]; then
        local r=ready
        ready "$BROKER_HEALTH_PORT" || r="not ready"
        echo "broker:      running (pid $bp) on 127.0.0.1:$BROKER_PORT, $r"
    else
        echo "broker:      not running"
        rc=3
    fi
    ((rc == 0)) && echo "RMQ_NAMESRV=$NAMESRV_ADDR"
    return $rc
}

cmd_exec() {
    [[ ${1:-} == -- ]] && shift
    (($# > 0)) || die "usage: scripts/broker.sh exec -- COMMAND [ARGS...]"
    [[ -n $(pid_of broker) ]] || die "the broker is not running; run: scripts/broker.sh start"
    export RMQ_NAMESRV=$NAMESRV_ADDR RMQ_NETNS=$NETNS
    # Lets fault tests stop and restart the broker (stop-broker / start-broker).
    RMQ_BROKER_SCRIPT=$(readlink -f "${BASH_SOURCE[0]}")
    export RMQ_BROKER_SCRIPT
    if use_netns; then
        # No network in the namespace: cargo must not try to reach a registry.
        export CARGO_NET_OFFLINE=${CARGO_NET_OFFLINE:-true}
        exec ip netns exec "$NETNS" "$@"
    fi
    exec "$@"
}

main() {
    local cmd=${1:-}
    (($# > 0)) && shift
    case $cmd in
    install) cmd_install ;;
    start) cmd_start ;;
    stop)
        mkdir -p "$STATE"
        exec 8>"$STATE/.lock"
        flock 8
        cmd_stop
        ;;
    stop-broker)
        # Fault tests: stop the broker alone; its store and the name server stay.
        exec 8>"$STATE/.lock"
        flock 8
        stop_one broker
        ;;
    start-broker)
        exec 8>"$STATE/.lock"
        flock 8
        [[ -n $(pid_of namesrv) ]] || die "the name server is not running; run: scripts/broker.sh start"
        [[ -z $(pid_of broker) ]] || { log "broker already running"; exit 0; }
        launch broker "$BROKER_BIN" "$STATE/broker.toml" "$BROKER_HEALTH_PORT"
        wait_ready broker "$BROKER_HEALTH_PORT" $((SECONDS + START_TIMEOUT))
        log "broker restarted (pid $(pid_of broker))"
        ;;
    status) cmd_status ;;
    exec) cmd_exec "$@" ;;
    env)
        echo "RMQ_NAMESRV=$NAMESRV_ADDR"
        echo "RMQ_NETNS=$NETNS"
        ;;
    logs) tail_logs "${1:-40}" 2>&1 ;;
    -h | --help | help) usage ;;
    *)
        usage >&2
        exit 2
        ;;
    esac
}

main "$@"
