#!/usr/bin/env bash
# Measurement (not a test): 1,000,000 messages with a 2 s TTL and no consumer. Prints Warren's RSS
# before, after publishing, and after they all expired, plus the queue length at each point.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin warren --bin warren-perf
PORT=5686
./target/release/warren --bind 127.0.0.1 --port $PORT --log-level warn --data-dir "$(mktemp -d)" >/dev/null &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
sleep 0.3
rss() { awk '/VmRSS/ {print $2 " KiB"}' /proc/$pid/status; }
echo "idle: $(rss)"
./target/release/warren-perf --addr 127.0.0.1:$PORT --producers 1 --consumers 0 --max-in-flight 1000000 \
  --seconds 1 --message-ttl 2000 --keep-queue --label publish | tail -n1
echo "after publishing: $(rss)"
sleep 3.5
echo "after expiry (2 s TTL + sweeper): $(rss)"
