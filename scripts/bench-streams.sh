#!/usr/bin/env bash
# Benchmark (not a test): streams through RabbitMQ's stream protocol, Warren and RabbitMQ 3.10
# (with rabbitmq_stream) in the same run, alternating, with the same load generator
# (warren-perf --stream-protocol):
#   - publish with confirms while one consumer reads, 16 B and 1 KiB messages;
#   - the catch-up read of a stream from `first` (64 KiB messages, CATCHUP_GB of them), with
#     Warren's peak RSS during the read.
#
#   ./scripts/bench-streams.sh [seconds=5]
#   RABBIT_STREAM=127.0.0.1:5552 ./scripts/bench-streams.sh   (use a RabbitMQ already running)
#   WARREN_ONLY=1 ./scripts/bench-streams.sh                  (skip RabbitMQ)
#   CATCHUP_GB=10 ./scripts/bench-streams.sh                  (size of the catch-up stream; default 2)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
gb=${CATCHUP_GB:-2}
cargo build --release --bin warren --bin warren-perf
P=./target/release/warren-perf
W_PORT=5692
W_STREAM=5594
wdata=$(mktemp -d)
rdata=$(mktemp -d)
cleanup() {
  kill "${wpid:-}" "${mpid:-}" 2>/dev/null || true
  if [ -n "${rabbit_started:-}" ]; then
    RABBITMQ_NODENAME=warren-bench-s@localhost rabbitmqctl stop >/dev/null 2>&1 || true
  fi
  rm -rf "$wdata" "$rdata"
}
trap cleanup EXIT

./target/release/warren --bind 127.0.0.1 --port $W_PORT --management-port 0 --prometheus-port 0 \
  --stream-port $W_STREAM --log-level warn --data-dir "$wdata" >/dev/null 2>&1 &
wpid=$!
rabbit=${RABBIT_STREAM:-}
if [ -z "$rabbit" ] && [ -z "${WARREN_ONLY:-}" ]; then
  command -v rabbitmq-server >/dev/null || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server >/dev/null; }
  echo '[rabbitmq_stream].' > "$rdata/enabled_plugins"
  export RABBITMQ_NODENAME=warren-bench-s@localhost RABBITMQ_NODE_PORT=5693 RABBITMQ_DIST_PORT=25693
  export RABBITMQ_ENABLED_PLUGINS_FILE="$rdata/enabled_plugins" RABBITMQ_MNESIA_BASE="$rdata/mnesia"
  export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="+sbwt none +sbwtdcpu none +sbwtdio none -rabbitmq_stream tcp_listeners [5595]"
  rabbitmq-server -detached
  rabbit_started=1
  rabbit=127.0.0.1:5595
  for _ in $(seq 1 120); do (exec 3<>/dev/tcp/127.0.0.1/5595) 2>/dev/null && break; sleep 0.5; done
  sleep 2
fi
sleep 1

run() { # label addr args...
  local label=$1 addr=$2
  shift 2
  $P --addr "$addr" --stream-protocol --label "$label" "$@" || echo "$label: run failed"
}
for round in 1 2; do
  for size in 16 1024; do
    run warren 127.0.0.1:$W_STREAM --seconds "$secs" --size $size
    [ -n "$rabbit" ] && run rabbitmq "$rabbit" --seconds "$secs" --size $size
  done
done
n=$((gb * 1024 * 1024 / 64))
# Warren's peak RSS while it serves the catch-up read.
peak=0
( while kill -0 $wpid 2>/dev/null; do ps -o rss= -p $wpid; sleep 0.2; done ) > "$wdata/rss.log" &
mpid=$!
run warren 127.0.0.1:$W_STREAM --catch-up $n --size 65536 --batch 8 --confirm 1024
kill $mpid 2>/dev/null || true
peak=$(sort -n "$wdata/rss.log" | tail -1)
echo "warren: peak RSS during the $gb GiB publish and catch-up: $((peak / 1024)) MiB"
[ -n "$rabbit" ] && run rabbitmq "$rabbit" --catch-up $n --size 65536 --batch 8 --confirm 1024
exit 0
