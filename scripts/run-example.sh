#!/usr/bin/env bash
# Build and run: install and start a local RocketMQ name server + broker (scripts/broker.sh), then
# send a message and pull it back with the send_and_pull example. Extra arguments go to the
# example (e.g. --topic MyTopic --body hello). The broker keeps running afterwards; stop it
# with `scripts/broker.sh stop`. (The HTTP gateway will replace this example later.)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Build first: the broker's network namespace has no network for fetching crates.
cargo build -p rmq-remoting --example send_and_pull
scripts/broker.sh install
scripts/broker.sh start
scripts/broker.sh exec -- env CARGO_NET_OFFLINE=true \
    cargo run -q -p rmq-remoting --example send_and_pull -- "$@"
echo "(the broker is still running: scripts/broker.sh status | stop)"
