#!/usr/bin/env bash
# A real RocketMQ name server + broker on 127.0.0.1 for tests, from either implementation:
#   RMQ_BROKER_IMPL=rocketmq-rust (default): crates.io's rocketmq-namesrv and rocketmq-broker
#       1.0.0, the Rust reimplementation, built once by `install`;
#   RMQ_BROKER_IMPL=apache: Apache RocketMQ (Java) from a binary distribution,
#       RMQ_ROCKETMQ_HOME=<dir with bin/mqnamesrv, bin/mqbroker> (4.9.x or 5.x), started with a
#       generated loopback config; nothing is written into RMQ_ROCKETMQ_HOME.
# The commands and what tests see are the same for both.
#
#   scripts/broker.sh install          rocketmq-rust: build both binaries once into $RMQ_BROKER_ROOT
#                                      (~9 min); apache: check java and the distribution, and run
#                                      its bin/install-deps.sh when it has one (root, apt)
#   scripts/broker.sh start            start all (idempotent), wait until ready, print RMQ_NAMESRV=...
#   scripts/broker.sh stop             stop exactly what `start` started (SIGTERM, then SIGKILL)
#   scripts/broker.sh status           say what runs; exit 0 only if everything runs
#   scripts/broker.sh exec -- CMD...   run CMD where the broker is reachable, with RMQ_NAMESRV,
#                                      RMQ_BROKER_IMPL, RMQ_BROKER_CLUSTER and RMQ_BROKER_SCRIPT set
#   scripts/broker.sh env              print those variables (for eval)
#   scripts/broker.sh logs             tail the logs
#   scripts/broker.sh stop-broker [broker-a|broker-b]   stop one broker, keeping its store (fault
#                                      tests; default broker-a)
#   scripts/broker.sh start-broker [broker-a|broker-b]  start it again and wait until it is ready
#
# Loopback only. The rocketmq-rust name server's own remoting client registers "<primary
# IP>:<port>" as its address (rocketmq-namesrv bootstrap.rs calls local_ip_address::local_ip(); no
# setting overrides it) and re-dials it every 30 s, and an official Apache distribution listens on
# the wildcard address. So by default all processes run in a network namespace of their own,
# $RMQ_NETNS, that has only `lo`: there the lookup fails, it falls back to 127.0.0.1, and no
# packet can leave. Anything that talks to the broker must run in that namespace too, hence
# `exec`, which also sets CARGO_NET_OFFLINE=true (there is no network in there). Build first.
# Creating a namespace needs root (CI runs as root). RMQ_NETNS=none runs on the host network
# instead (rocketmq-rust's name server then dials your primary address every 30 s).
#
# Settings (environment):
#   RMQ_BROKER_IMPL      rocketmq-rust (default) or apache
#   RMQ_ROCKETMQ_HOME    apache: the Apache RocketMQ binary distribution (read only)
#   RMQ_BROKER_CLUSTER   apache: 1 (default) or 2 brokers, broker-a and broker-b, in one cluster
#   RMQ_BROKER_ROOT      rocketmq-rust install root, outside the clone
#                        (default $HOME/.local/share/rmq-gateway/rocketmq-rust-1.0.0)
#   RMQ_BROKER_STATE     pid files, logs, configs and the store (default /tmp/rmq-gateway-broker);
#                        the store is wiped on every fresh start
#   RMQ_NETNS            network namespace (default rmq-gateway; `none` = host network)
#   RMQ_NAMESRV_PORT     name server port (default 9876); rocketmq-rust's health port is +1
#   RMQ_BROKER_PORT      broker-a port (default 10911); a broker also listens on port-2 (its "fast"
#                        port), +1 (HA) and, rocketmq-rust only, +2 (health)
#   RMQ_BROKER_B_PORT    broker-b port (default RMQ_BROKER_PORT + 20), same neighbours
#   RMQ_JAVA_OPTS        apache: extra JVM options of the broker JVMs (default -Xms256m -Xmx512m)
#   RMQ_BROKER_START_TIMEOUT   seconds to wait for readiness (default 60)
#   RMQ_BROKER_STOP_TIMEOUT    seconds between SIGTERM and SIGKILL (default 20)
#   RUST_LOG             rocketmq-rust: log filter of both processes (default info)
set -euo pipefail

readonly NAMESRV_CRATE=rocketmq-namesrv@1.0.0
readonly BROKER_CRATE=rocketmq-broker@1.0.0
readonly NAMESRV_BIN_NAME=rocketmq-namesrv-rust
readonly BROKER_BIN_NAME=rocketmq-broker-rust

IMPL=${RMQ_BROKER_IMPL:-rocketmq-rust}
RMQ_HOME=${RMQ_ROCKETMQ_HOME:-}
CLUSTER=${RMQ_BROKER_CLUSTER:-1}
ROOT=${RMQ_BROKER_ROOT:-${HOME:-/root}/.local/share/rmq-gateway/rocketmq-rust-1.0.0}
STATE=${RMQ_BROKER_STATE:-/tmp/rmq-gateway-broker}
NETNS=${RMQ_NETNS:-rmq-gateway}
NAMESRV_PORT=${RMQ_NAMESRV_PORT:-9876}
BROKER_PORT=${RMQ_BROKER_PORT:-10911}
BROKER_B_PORT=${RMQ_BROKER_B_PORT:-$((BROKER_PORT + 20))}
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

check_settings() {
    case $IMPL in
    rocketmq-rust) [[ $CLUSTER == 1 ]] || die "RMQ_BROKER_CLUSTER=$CLUSTER: only RMQ_BROKER_IMPL=apache runs a cluster of two brokers" ;;
    apache)
        [[ -n $RMQ_HOME ]] || die "RMQ_BROKER_IMPL=apache needs RMQ_ROCKETMQ_HOME=<an Apache RocketMQ binary distribution>"
        [[ -f $RMQ_HOME/bin/mqnamesrv && -f $RMQ_HOME/bin/mqbroker ]] ||
            die "RMQ_ROCKETMQ_HOME=$RMQ_HOME has no bin/mqnamesrv and bin/mqbroker (not an Apache RocketMQ binary distribution)"
        RMQ_HOME=$(cd "$RMQ_HOME" && pwd)
        [[ $CLUSTER == 1 || $CLUSTER == 2 ]] || die "RMQ_BROKER_CLUSTER must be 1 or 2, not '$CLUSTER'"
        ;;
    *) die "RMQ_BROKER_IMPL must be rocketmq-rust or apache, not '$IMPL'" ;;
    esac
}

check_ports() {
    local p
    for p in "$NAMESRV_PORT" "$BROKER_PORT" "$BROKER_B_PORT"; do
        [[ $p =~ ^[0-9]+$ ]] || die "port '$p' is not a number"
    done
    ((NAMESRV_PORT >= 1 && NAMESRV_HEALTH_PORT <= 65535)) || die "RMQ_NAMESRV_PORT out of range"
    ((BROKER_FAST_PORT >= 1 && BROKER_HEALTH_PORT <= 65535)) || die "RMQ_BROKER_PORT out of range"
    ((BROKER_B_PORT >= 3 && BROKER_B_PORT + 2 <= 65535)) || die "RMQ_BROKER_B_PORT out of range"
    local used=" $NAMESRV_PORT $NAMESRV_HEALTH_PORT " b
    for b in "$BROKER_PORT" $( ((CLUSTER == 2)) && echo "$BROKER_B_PORT"); do
        for p in $((b - 2)) "$b" $((b + 1)) $((b + 2)); do
            [[ $used != *" $p "* ]] || die "ports overlap: name server $NAMESRV_PORT(+1), brokers $BROKER_PORT$( ((CLUSTER == 2)) && echo " and $BROKER_B_PORT") (each -2..+2)"
            used+="$p "
        done
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

cmd_install_apache() {
    command -v java >/dev/null || [[ -x ${JAVA_HOME:-/nonexistent}/bin/java ]] ||
        die "no java: Apache RocketMQ needs a JDK (17 for 5.x and for JDK-17 builds of 4.9.x) on PATH or in JAVA_HOME"
    if [[ -f $RMQ_HOME/bin/install-deps.sh ]]; then
        # Some distributions take their libraries from the system (Debian packages, root + apt).
        log "running $RMQ_HOME/bin/install-deps.sh"
        sh "$RMQ_HOME/bin/install-deps.sh" </dev/null || die "$RMQ_HOME/bin/install-deps.sh failed"
    fi
    log "Apache RocketMQ at $RMQ_HOME is ready to start"
}

cmd_install() {
    if [[ $IMPL == apache ]]; then
        cmd_install_apache
        return
    fi
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
# processes: namesrv, broker (= broker-a) and, in a cluster of two, broker-b

brokers() { # the broker process names of this setup
    echo broker
    ((CLUSTER == 2)) && echo broker-b
    return 0
}

broker_port() { [[ $1 == broker-b ]] && echo "$BROKER_B_PORT" || echo "$BROKER_PORT"; }

# Every process we start carries RMQ_BROKER_OWNER=<state dir>/<name> in its environment (a JVM
# inherits it through the distribution's shell scripts): a pid file is trusted only when its
# process still carries it, whatever binary it runs.
pid_of() { # name -> pid if that process is the one we started, else nothing
    local f=$STATE/$1.pid pid
    [[ -s $f ]] || return 0
    pid=$(<"$f")
    [[ $pid =~ ^[0-9]+$ ]] || return 0
    if tr '\0' '\n' 2>/dev/null <"/proc/$pid/environ" | grep -qxF "RMQ_BROKER_OWNER=$STATE/$1"; then
        echo "$pid"
    fi
    return 0
}

# GET /readyz on 127.0.0.1:$1 inside the namespace; success on HTTP 200 (rocketmq-rust).
ready_http() {
    # shellcheck disable=SC2016 # expanded by the inner bash
    in_ns bash -c '
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf "GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n" >&3
        IFS= read -r -t 2 status <&3 || exit 1
        [[ $status == "HTTP/1."?" 200"* ]]' ready "$1" 2>/dev/null
}

# ready NAME: is that process up? rocketmq-rust answers /readyz on its health port; an Apache
# name server or broker prints "... boot success ..." on stdout (a broker only once it has
# registered with the name server), which goes to our log of this launch.
ready() {
    local name=$1
    if [[ $IMPL == apache ]]; then
        grep -q 'boot success' "$STATE/logs/$name.log" 2>/dev/null
    elif [[ $name == namesrv ]]; then
        ready_http "$NAMESRV_HEALTH_PORT"
    else
        ready_http "$BROKER_HEALTH_PORT"
    fi
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

write_configs_rust() {
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

# Java properties files; the same keys work for 4.9.x and 5.x.
write_configs_apache() {
    local data=$STATE/data name port bname
    cat >"$STATE/namesrv.conf" <<EOF
# Generated by scripts/broker.sh for Apache RocketMQ's bin/mqnamesrv.
listenPort=$NAMESRV_PORT
kvConfigPath=$data/namesrv/namesrv/kvConfig.json
configStorePath=$data/namesrv/namesrv/namesrv.properties
EOF
    for name in $(brokers); do
        port=$(broker_port "$name")
        bname=$([[ $name == broker-b ]] && echo broker-b || echo broker-a)
        cat >"$STATE/$name.conf" <<EOF
# Generated by scripts/broker.sh for Apache RocketMQ's bin/mqbroker.
brokerClusterName=DefaultCluster
brokerName=$bname
brokerId=0
brokerRole=ASYNC_MASTER
flushDiskType=ASYNC_FLUSH
namesrvAddr=$NAMESRV_ADDR
# the address advertised to clients and to the HA peer: loopback
brokerIP1=127.0.0.1
brokerIP2=127.0.0.1
listenPort=$port
haListenPort=$((port + 1))
storePathRootDir=$data/$name/store
storePathCommitLog=$data/$name/store/commitlog
autoCreateTopicEnable=true
autoCreateSubscriptionGroup=true
aclEnable=false
fetchNamesrvAddrByAddressServer=false
# Small files (upstream: 1 GiB commit log files, 6 MB consume-queue files, 420 MB index).
mappedFileSizeCommitLog=67108864
mappedFileSizeConsumeQueue=120000
maxHashSlotNum=10000
maxIndexNum=40000
EOF
    done
}

# launch NAME CMD...: start CMD in its own session (in the namespace), log to logs/NAME.log.
launch() {
    local name=$1
    shift
    rm -f "$STATE/$name.pid"
    [[ -f $STATE/logs/$name.log ]] && mv -f "$STATE/logs/$name.log" "$STATE/logs/$name.log.prev"
    # The inner shell writes its own pid, then execs the server: the pid file names the session
    # leader (the server itself, or the distribution's script that runs the JVM) whatever setsid
    # or `ip netns exec` do; `stop` signals that whole process group.
    # shellcheck disable=SC2016 # expanded by the inner sh
    in_ns setsid env RMQ_BROKER_OWNER="$STATE/$name" \
        sh -c 'echo $$ >"$1"; shift; exec "$@"' launch "$STATE/$name.pid" "$@" \
        </dev/null >>"$STATE/logs/$name.log" 2>&1 8>&- 9>&- &
    local i
    for i in $(seq 50); do
        [[ -s $STATE/$name.pid ]] && return 0
        sleep 0.1
    done
    die "$name did not start (no pid file); see $STATE/logs/$name.log"
}

# launch_server NAME: the name server or a broker of the selected implementation.
launch_server() {
    local name=$1
    if [[ $IMPL == rocketmq-rust ]]; then
        local bin=$BROKER_BIN conf=$STATE/broker.toml health=$BROKER_HEALTH_PORT
        if [[ $name == namesrv ]]; then
            bin=$NAMESRV_BIN conf=$STATE/namesrv.toml health=$NAMESRV_HEALTH_PORT
        fi
        launch "$name" env \
            ROCKETMQ_HOME="$STATE/data/home" \
            ROCKETMQ_HEALTH_BIND_ADDR="127.0.0.1:$health" \
            ROCKETMQ_SHUTDOWN_TIMEOUT_SECONDS=$((STOP_TIMEOUT > 2 ? STOP_TIMEOUT - 2 : 1)) \
            RUST_LOG="${RUST_LOG:-info}" \
            NO_COLOR=1 \
            "$bin" -c "$conf"
        return
    fi
    # Apache: the distribution's own scripts. Its data and logs go to the state dir: ROCKETMQ_DATA_DIR
    # / ROCKETMQ_LOG_DIR for distributions that read them, user.home (where upstream's defaults
    # put the store and ~/logs/rocketmqlogs) and small heaps for the official scripts, which take
    # JAVA_OPT_EXT last.
    local dir=$STATE/data/$name heap script=mqbroker
    mkdir -p "$dir/logs"
    if [[ $name == namesrv ]]; then
        heap="-Xms128m -Xmx256m -Xmn64m" script=mqnamesrv
    else
        heap=${RMQ_JAVA_OPTS:--Xms256m -Xmx512m -Xmn128m}
    fi
    local args=(-c "$STATE/$name.conf")
    [[ $name == namesrv ]] || args=(-n "$NAMESRV_ADDR" "${args[@]}")
    launch "$name" env \
        ROCKETMQ_HOME="$RMQ_HOME" \
        ROCKETMQ_DATA_DIR="$dir" \
        ROCKETMQ_LOG_DIR="$STATE/logs/$name.d" \
        JAVA_OPT_EXT="$heap -Duser.home=$dir" \
        sh "$RMQ_HOME/bin/$script" "${args[@]}"
}

tail_logs() {
    local name
    for name in namesrv $(brokers); do
        if [[ -f $STATE/logs/$name.log ]]; then
            log "---- last lines of $STATE/logs/$name.log ----"
            tail -n "${1:-40}" "$STATE/logs/$name.log" | sed 's/\x1b\[[0-9;]*m//g' >&2
        fi
    done
    [[ $IMPL == apache ]] && log "the JVMs' own logs: $STATE/logs/*.d/"
    return 0
}

# wait_ready NAME DEADLINE
wait_ready() {
    local name=$1 deadline=$2
    while ! ready "$name"; do
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

impl_installed() {
    if [[ $IMPL == apache ]]; then
        return 0 # check_settings found the scripts; `install` fetches their dependencies
    fi
    installed || die "binaries missing in $ROOT/bin; run: scripts/broker.sh install"
}

all_running() {
    local name
    for name in namesrv $(brokers); do
        [[ -n $(pid_of "$name") ]] && ready "$name" || return 1
    done
}

any_running() {
    local name
    for name in namesrv broker broker-b; do
        [[ -z $(pid_of "$name") ]] || return 0
    done
    return 1
}

cmd_start() {
    check_settings
    check_ports
    impl_installed
    mkdir -p "$STATE"
    exec 8>"$STATE/.lock"
    flock 8
    local running_impl
    running_impl=$(cat "$STATE/impl" 2>/dev/null || true)
    if any_running && [[ $running_impl != "$IMPL cluster=$CLUSTER" ]]; then
        die "$STATE runs another setup ($running_impl); stop it first (scripts/broker.sh stop with the settings it was started with)"
    fi
    if all_running; then
        log "already running ($IMPL; name server pid $(pid_of namesrv), broker pids $(for n in $(brokers); do pid_of "$n"; done | xargs))"
        print_address
        return 0
    fi
    if any_running; then
        log "only partly running; restarting"
        cmd_stop
    fi
    ensure_netns
    if ! use_netns; then
        [[ $IMPL == rocketmq-rust ]] && log "warning: RMQ_NETNS=none: on the host network the name server dials this host's primary address every 30 s"
        [[ $IMPL == apache ]] && log "warning: RMQ_NETNS=none: an official Apache distribution listens on all addresses"
    fi
    local started=$SECONDS
    rm -rf "$STATE/data" "$STATE"/logs/*.d
    mkdir -p "$STATE/data/home" "$STATE/data/namesrv" "$STATE/data/store" "$STATE/logs"
    echo "$IMPL cluster=$CLUSTER" >"$STATE/impl"
    if [[ $IMPL == apache ]]; then
        write_configs_apache
    else
        write_configs_rust
    fi
    local deadline=$((SECONDS + START_TIMEOUT)) name
    launch_server namesrv
    wait_ready namesrv "$deadline"
    for name in $(brokers); do
        launch_server "$name"
    done
    # A broker is ready once it has registered with the name server.
    for name in $(brokers); do
        wait_ready "$name" "$deadline"
    done
    log "started $IMPL in $((SECONDS - started)) s: name server pid $(pid_of namesrv), broker pids $(for n in $(brokers); do pid_of "$n"; done | xargs); logs in $STATE/logs"
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
    # The process group: a distribution's script may run the JVM as its child.
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
        [[ -z $(pid_of "$name") ]] && break
        sleep 0.1
    done
    if [[ -n $(pid_of "$name") ]]; then
        log "$name (pid $pid) ignored SIGTERM for ${STOP_TIMEOUT}s; sending SIGKILL"
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            [[ -z $(pid_of "$name") ]] && break
            sleep 0.1
        done
    fi
    [[ -z $(pid_of "$name") ]] || die "$name (pid $pid) is still running"
    # Children of a distribution's script that outlived it.
    kill -KILL -- "-$pid" 2>/dev/null || true
    rm -f "$STATE/$name.pid"
    log "stopped $name (pid $pid)"
}

cmd_stop() {
    # The brokers first, so they unregister from a live name server.
    stop_one broker-b
    stop_one broker
    stop_one namesrv
    # Drop the namespace when nothing is left in it (a test still running there keeps it).
    if use_netns && netns_exists && [[ -z $(ip netns pids "$NETNS" 2>/dev/null) ]]; then
        ip netns del "$NETNS" 2>/dev/null || true
    fi
}

cmd_status() {
    local pid rc=0 name r
    echo "implementation: $IMPL$([[ $IMPL == apache ]] && echo " ($RMQ_HOME), $CLUSTER broker(s)")"
    pid=$(pid_of namesrv)
    if [[ -n $pid ]]; then
        echo "name server: running (pid $pid) on $NAMESRV_ADDR$(use_netns && echo " in netns $NETNS")"
    else
        echo "name server: not running"
        rc=3
    fi
    for name in $(brokers); do
        pid=$(pid_of "$name")
        if [[ -n $pid ]]; then
            r=ready
            ready "$name" || r="not ready"
            echo "$name: running (pid $pid) on 127.0.0.1:$(broker_port "$name"), $r"
        else
            echo "$name: not running"
            rc=3
        fi
    done
    ((rc == 0)) && echo "RMQ_NAMESRV=$NAMESRV_ADDR"
    return $rc
}

print_env() {
    echo "RMQ_NAMESRV=$NAMESRV_ADDR"
    echo "RMQ_NETNS=$NETNS"
    echo "RMQ_BROKER_IMPL=$IMPL"
    echo "RMQ_BROKER_CLUSTER=$CLUSTER"
    echo "RMQ_BROKER_SCRIPT=$(readlink -f "${BASH_SOURCE[0]}")"
}

cmd_exec() {
    [[ ${1:-} == -- ]] && shift
    (($# > 0)) || die "usage: scripts/broker.sh exec -- COMMAND [ARGS...]"
    [[ -n $(pid_of broker) ]] || die "the broker is not running; run: scripts/broker.sh start"
    # Tests learn which broker they face from RMQ_BROKER_IMPL / RMQ_BROKER_CLUSTER, and fault
    # tests stop and restart brokers through RMQ_BROKER_SCRIPT (stop-broker / start-broker), which
    # must see the same settings.
    export RMQ_NAMESRV=$NAMESRV_ADDR RMQ_NETNS=$NETNS RMQ_BROKER_IMPL=$IMPL RMQ_BROKER_CLUSTER=$CLUSTER \
        RMQ_BROKER_STATE=$STATE RMQ_NAMESRV_PORT=$NAMESRV_PORT RMQ_BROKER_PORT=$BROKER_PORT \
        RMQ_BROKER_B_PORT=$BROKER_B_PORT RMQ_BROKER_ROOT=$ROOT
    [[ $IMPL == apache ]] && export RMQ_ROCKETMQ_HOME=$RMQ_HOME
    RMQ_BROKER_SCRIPT=$(readlink -f "${BASH_SOURCE[0]}")
    export RMQ_BROKER_SCRIPT
    if use_netns; then
        # No network in the namespace: cargo must not try to reach a registry.
        export CARGO_NET_OFFLINE=${CARGO_NET_OFFLINE:-true}
        exec ip netns exec "$NETNS" "$@"
    fi
    exec "$@"
}

# broker_name ARG: broker-a (default) or broker-b -> process name
broker_name() {
    case ${1:-broker-a} in
    broker-a | broker) echo broker ;;
    broker-b)
        ((CLUSTER == 2)) || die "broker-b runs only with RMQ_BROKER_CLUSTER=2"
        echo broker-b
        ;;
    *) die "no broker '$1' (broker-a or broker-b)" ;;
    esac
}

main() {
    local cmd=${1:-}
    (($# > 0)) && shift
    case $cmd in
    install)
        check_settings
        cmd_install
        ;;
    start) cmd_start ;;
    stop)
        # Whatever implementation runs: the pid files say what to stop.
        mkdir -p "$STATE"
        exec 8>"$STATE/.lock"
        flock 8
        cmd_stop
        ;;
    stop-broker)
        # Fault tests: stop one broker; its store and the name server stay.
        check_settings
        local name
        name=$(broker_name "${1:-}")
        exec 8>"$STATE/.lock"
        flock 8
        stop_one "$name"
        ;;
    start-broker)
        check_settings
        local name
        name=$(broker_name "${1:-}")
        exec 8>"$STATE/.lock"
        flock 8
        [[ -n $(pid_of namesrv) ]] || die "the name server is not running; run: scripts/broker.sh start"
        [[ -z $(pid_of "$name") ]] || {
            log "$name already running"
            exit 0
        }
        launch_server "$name"
        wait_ready "$name" $((SECONDS + START_TIMEOUT))
        log "$name restarted (pid $(pid_of "$name"))"
        ;;
    status)
        check_settings
        cmd_status
        ;;
    exec)
        check_settings
        cmd_exec "$@"
        ;;
    env)
        check_settings
        print_env
        ;;
    logs)
        check_settings
        tail_logs "${1:-40}" 2>&1
        ;;
    -h | --help | help) usage ;;
    *)
        usage >&2
        exit 2
        ;;
    esac
}

main "$@"
