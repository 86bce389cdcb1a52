#!/usr/bin/env bash
# Benchmark (not a test): end-to-end publish/consume throughput of Warren and of RabbitMQ, measured
# in the same run on this machine with the same client (warren-perf). Prints msgs/s and the ratio.
#
#   ./scripts/perf-vs-rabbitmq.sh [seconds] [extra warren-perf flags...]
#
# RabbitMQ comes from Debian's rabbitmq-server package (installed with apt-get if missing; needs
# root). It is started on port 5681 under its own node name and stopped afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
shift || true
cargo build --release --bin warren --bin warren-perf
W_PORT=5680
R_PORT=5681
if (echo >/dev/tcp/127.0.0.1/$W_PORT) 2>/dev/null || (echo >/dev/tcp/127.0.0.1/$R_PORT) 2>/dev/null; then
  echo "port $W_PORT or $R_PORT is already in use" >&2
  exit 1
fi
wdata=$(mktemp -d)
./target/release/warren --bind 127.0.0.1 --port $W_PORT --log-level warn --data-dir "$wdata" >/dev/null &
wpid=$!
trap 'kill $wpid 2>/dev/null || true; rm -rf "$wdata"' EXIT
sleep 0.3
w=$(./target/release/warren-perf --addr 127.0.0.1:$W_PORT --seconds "$secs" --label warren "$@" | tail -n1)
echo "$w"
wrss=$(ps -o rss= -p $wpid | tr -d ' ')
kill $wpid

if ! command -v rabbitmq-server >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server >/dev/null
fi
export RABBITMQ_NODE_PORT=$R_PORT RABBITMQ_NODENAME=warren-perf@localhost
rabbitmq-server -detached
for _ in $(seq 1 90); do
  (echo >/dev/tcp/127.0.0.1/$R_PORT) 2>/dev/null && break
  sleep 1
done
rpid=$(ss -ltnpH "sport = :$R_PORT" | sed -nE 's/.*pid=([0-9]+).*/\1/p' | head -n1)
trap 'kill $rpid 2>/dev/null || true' EXIT
r=$(./target/release/warren-perf --addr 127.0.0.1:$R_PORT --seconds "$secs" --label rabbitmq "$@" | tail -n1)
echo "$r"
wc=$(sed -nE 's/.*consumed ([0-9]+) msgs.*/\1/p' <<<"$w")
rc=$(sed -nE 's/.*consumed ([0-9]+) msgs.*/\1/p' <<<"$r")
echo "Warren/RabbitMQ consumed-throughput ratio: $(awk -v a="$wc" -v b="$rc" 'BEGIN { printf "%.1fx", a / b }')  (Warren RSS after run: ${wrss} KiB)"
