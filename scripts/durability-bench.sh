#!/usr/bin/env bash
# Benchmark (not a test): persistence figures for Warren.
#   - recovery: publish N persistent 16-byte messages with confirms to a durable queue, stop
#     (SIGTERM), start again on the same data directory and time it until `Server startup complete`;
#   - memory: RSS of the broker holding those N messages (after the restart, bodies on disk).
#
#   ./scripts/durability-bench.sh [N=1000000]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000000}
cargo build --release --bin warren --bin warren-perf
PORT=5682
data=$(mktemp -d)
trap 'kill $wpid 2>/dev/null || true; rm -rf "$data"' EXIT
./target/release/warren --bind 127.0.0.1 --port $PORT --management-port 0 --prometheus-port 0 --log-level warn --data-dir "$data" >/dev/null &
wpid=$!
sleep 0.3
# No consumer: the producer stops at N unconsumed messages.
./target/release/warren-perf --addr 127.0.0.1:$PORT --consumers 0 --persistent --confirm 1000 \
  --max-in-flight "$n" --seconds 600 --queue bench --keep-queue --label fill >/dev/null 2>&1 &
perf=$!
fill_start=$(date +%s.%N)
while :; do
  sleep 1
  c=$(./target/release/warren-perf --addr 127.0.0.1:$PORT --queue bench --keep-queue --count-only 2>/dev/null || echo 0)
  [ "$c" -ge "$n" ] && break
done
fill_end=$(date +%s.%N)
kill $perf 2>/dev/null || true
wait $perf 2>/dev/null || true
echo "filled $c persistent 16 B messages (confirms, 1000 in flight) in $(awk -v a="$fill_start" -v b="$fill_end" 'BEGIN { printf "%.1f s", b - a }') (1 s polling)"
echo "RSS with $n messages queued (before restart): $(ps -o rss= -p $wpid | tr -d ' ') KiB"
echo "disk: $(du -sh "$data/msgs" | cut -f1)"
kill -TERM $wpid
wait $wpid || true
start=$(date +%s.%N)
./target/release/warren --bind 127.0.0.1 --port $PORT --management-port 0 --prometheus-port 0 --log-level info --data-dir "$data" > "$data/restart.log" 2>&1 &
wpid=$!
until grep -q "Server startup complete" "$data/restart.log"; do sleep 0.01; done
end=$(date +%s.%N)
grep "messages recovered" "$data/restart.log" | sed 's/.*INFO[^ ]* [^ ]* //' || true
echo "restart to 'Server startup complete': $(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f s", b - a }')"
echo "RSS after recovery with $n messages queued: $(ps -o rss= -p $wpid | tr -d ' ') KiB"
c=$(./target/release/warren-perf --addr 127.0.0.1:$PORT --queue bench --keep-queue --count-only)
echo "messages in the queue after restart: $c"
