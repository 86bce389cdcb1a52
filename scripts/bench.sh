#!/usr/bin/env bash
# Benchmark (not a test): every scenario of BENCHMARKS.md against Warren and against RabbitMQ 3.10
# (Debian's rabbitmq-server, started here on spare ports), in the same run, alternating scenario by
# scenario, with the same load generator (warren-perf). Prints one table with the ratio and writes
# the raw JSON results to target/bench/results.jsonl.
#
#   ./scripts/bench.sh [seconds-per-scenario=5]      (needs root to apt-get rabbitmq-server if missing)
#   WARREN_ONLY=1 ./scripts/bench.sh                 (skip RabbitMQ)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
cargo build --release --bin warren --bin warren-perf
P=./target/release/warren-perf
W_PORT=5690
R_PORT=5691
out=target/bench
mkdir -p "$out"
: > "$out/results.jsonl"
wdata=$(mktemp -d)
cleanup() {
  kill "${wpid:-}" 2>/dev/null || true
  if [ -n "${rabbit_started:-}" ]; then
    RABBITMQ_NODENAME=warren-bench@localhost rabbitmqctl stop >/dev/null 2>&1 || kill "${rpid:-}" 2>/dev/null || true
  fi
  rm -rf "$wdata"
}
trap cleanup EXIT
record() { # broker scenario json
  python3 -c 'import json,sys; d=json.loads(sys.argv[3]); d["broker"]=sys.argv[1]; d["scenario"]=sys.argv[2]; print(json.dumps(d))' "$1" "$2" "$3" >> "$out/results.jsonl"
}
rss_kib() { ps -o rss= -p "$1" | tr -d ' '; }

with_rabbit=1
[ -n "${WARREN_ONLY:-}" ] && with_rabbit=
if [ -n "$with_rabbit" ] && ! command -v rabbitmq-server >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server >/dev/null
fi

# The load generator's own ceiling (a trivial sink that discards everything).
record tool sink-16B "$($P --sink --seconds "$secs" --json --label sink 2>/dev/null)"
record tool sink-64KiB "$($P --sink --seconds "$secs" --size 65536 --batch 10 --json --label sink 2>/dev/null)"
# The machine's ceiling for bodies end to end: a raw TCP relay, no broker (4 kernel copies per body).
record tool relay-64KiB "$($P --relay --seconds "$secs" --size 65536 --batch 10 --json --label relay 2>/dev/null)"

# Start to first handshake, and idle RSS.
record warren startup "$($P --addr 127.0.0.1:$W_PORT --json --label warren \
  --startup "./target/release/warren --bind 127.0.0.1 --port $W_PORT --management-port 0 --prometheus-port 0 --stream-port 0 --log-level warn --data-dir $wdata")"
./target/release/warren --bind 127.0.0.1 --port $W_PORT --management-port 0 --prometheus-port 0 --stream-port 0 --log-level warn --data-dir "$wdata" >/dev/null 2>&1 &
wpid=$!
sleep 1
record warren idle-rss "{\"rss_kib\": $(rss_kib $wpid)}"
if [ -n "$with_rabbit" ]; then
  export RABBITMQ_NODE_PORT=$R_PORT RABBITMQ_NODENAME=warren-bench@localhost
  export RABBITMQ_DIST_PORT=25691
  # No scheduler busy-waiting: an idle RabbitMQ must not steal CPU from Warren's runs (2 cores).
  export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="+sbwt none +sbwtdcpu none +sbwtdio none"
  record rabbitmq startup "$($P --addr 127.0.0.1:$R_PORT --json --label rabbitmq --startup "rabbitmq-server")"
  rabbitmqctl stop >/dev/null 2>&1 || true
  rabbitmq-server -detached
  rabbit_started=1
  for _ in $(seq 1 120); do $P --addr 127.0.0.1:$R_PORT --startup true >/dev/null 2>&1 && break; sleep 0.5; done
  sleep 2
  rpid=$(ss -ltnpH "sport = :$R_PORT" | sed -nE 's/.*pid=([0-9]+).*/\1/p' | head -n1)
  record rabbitmq idle-rss "{\"rss_kib\": $(rss_kib "$rpid")}"
fi

# RSS growth while N idle connections (one channel each) or N empty queues are held, per item.
# RabbitMQ gets 500 connections: its default file limit (1024) leaves room for that many.
memory() { # broker port pid connections queues
  local before after
  before=$(rss_kib "$3")
  $P --addr 127.0.0.1:$2 --hold-connections "$4" --seconds 3 > "$out/hold.out" &
  local h=$!
  for _ in $(seq 1 300); do grep -q ready "$out/hold.out" 2>/dev/null && break; sleep 0.1; done
  after=$(rss_kib "$3")
  wait $h || true
  record "$1" memory-per-connection "{\"bytes\": $(( (after - before) * 1024 / $4 ))}"
  sleep 1
  before=$(rss_kib "$3")
  $P --addr 127.0.0.1:$2 --hold-queues "$5" --seconds 3 > "$out/hold.out" &
  h=$!
  for _ in $(seq 1 3000); do grep -q ready "$out/hold.out" 2>/dev/null && break; sleep 0.1; done
  after=$(rss_kib "$3")
  wait $h || true
  record "$1" memory-per-queue "{\"bytes\": $(( (after - before) * 1024 / $5 ))}"
}
# Enough queues that their memory stands out of RSS noise; RabbitMQ declares ~250/s, so fewer there.
memory warren $W_PORT $wpid 1000 20000
[ -n "$with_rabbit" ] && memory rabbitmq $R_PORT "$rpid" 500 2000
scenario() { # name perf-args...
  local name=$1
  shift
  echo "== $name" >&2
  record warren "$name" "$($P --addr 127.0.0.1:$W_PORT --seconds "$secs" --json --label warren --server-pid "$wpid" "$@" 2>/dev/null)"
  if [ -n "$with_rabbit" ]; then
    record rabbitmq "$name" "$($P --addr 127.0.0.1:$R_PORT --seconds "$secs" --json --label rabbitmq --server-pid "$rpid" "$@" 2>/dev/null)"
  fi
}
scenario publish-only --consumers 0 --max-in-flight 0
scenario 1p-1q-1c-noack --no-ack
scenario 1p-1q-1c-multiack-prefetch1000 --prefetch 1000 --ack-every 500
scenario confirms-persistent --confirm 1000 --persistent
scenario fanout-10 --fanout 10
scenario 64KiB --size 65536 --batch 10 --max-in-flight 2000
scenario latency-10k --rate 10000 --no-ack
# Latency at 10 k msgs/s on one queue while a second connection pair streams 64 KiB bodies through
# the same broker; then while the stream goes through the raw relay instead (the broker does none of
# its work: what is left is the cores being taken, the machine's floor for this tail).
beside() { # broker port name stream-args...
  local b=$1 port=$2 name=$3 s
  shift 3
  "$@" > "$out/stream.out" 2>/dev/null &
  s=$!
  sleep 1
  record "$b" "$name" "$($P --addr 127.0.0.1:$port --seconds "$secs" --json --label "$b" --rate 10000 --no-ack --queue beside-latency 2>/dev/null)"
  wait $s || true
}
for b in warren rabbitmq; do
  [ $b = rabbitmq ] && [ -z "$with_rabbit" ] && continue
  port=$W_PORT; [ $b = rabbitmq ] && port=$R_PORT
  beside $b $port latency-10k-beside-64KiB $P --addr 127.0.0.1:$port --seconds $((secs + 2)) --size 65536 --batch 10 --max-in-flight 2000 --queue beside-stream
  beside $b $port latency-10k-beside-64KiB-relay $P --relay --seconds $((secs + 2)) --size 65536 --batch 10
done

for c in connections queues; do
  record warren "churn-$c" "$($P --addr 127.0.0.1:$W_PORT --seconds "$secs" --json --label warren --churn $c)"
  [ -n "$with_rabbit" ] && record rabbitmq "churn-$c" "$($P --addr 127.0.0.1:$R_PORT --seconds "$secs" --json --label rabbitmq --churn $c)"
done

python3 - "$out/results.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
by = {}
for r in rows:
    by.setdefault(r["scenario"], {})[r["broker"]] = r
def fig(s, r):
    v, text = fig_only(s, r)
    cpu = (r or {}).get("server_cpu_us_per_msg")
    if s == "relay-64KiB" and r:
        text += " (relay CPU %.1f us per 64 KiB)" % r["relay_cpu_us_per_msg"]
    if cpu is not None and not s.startswith("latency"):
        per = "delivery" if s.startswith("fanout") else "msg"
        text += " (broker CPU %.2f us/%s)" % (cpu, per)
    return v, text
def fig_only(s, r):
    if r is None: return None, ""
    if s == "startup": return r["startup_ms"], "%.1f ms" % r["startup_ms"]
    if s == "idle-rss": return r["rss_kib"], "%.1f MiB" % (r["rss_kib"] / 1024)
    if s.startswith("memory"): return r["bytes"], "%d B" % r["bytes"]
    if s.startswith("churn"): return r["ops_per_s"], "%.0f ops/s" % r["ops_per_s"]
    if s.startswith("latency"):
        l = r.get("latency_us") or {}
        return l.get("p99"), "p50 %.0f us, p99 %.0f us, p99.9 %.0f us" % (l.get("p50", 0), l.get("p99", 0), l.get("p999", 0))
    if s.startswith("64KiB") or s == "relay-64KiB": return r["consumed_bytes_per_s"], "%.2f GB/s" % (r["consumed_bytes_per_s"] / 1e9)
    if s == "sink-64KiB": return r["published_per_s"] * 65536, "%.2f GB/s" % (r["published_per_s"] * 65536 / 1e9)
    if s in ("publish-only", "sink-16B"): return r["published_per_s"], "{:,.0f} msgs/s".format(r["published_per_s"])
    unit = "deliveries/s" if s.startswith("fanout") else "msgs/s"
    return r["consumed_per_s"], "{:,.0f} {}".format(r["consumed_per_s"], unit)
lower_is_better = lambda s: s in ("startup", "idle-rss") or s.startswith("memory") or s.startswith("latency")
print("| scenario | Warren | RabbitMQ 3.10 | Warren advantage |")
print("|---|---|---|---|")
for s, d in by.items():
    if "tool" in d:
        what = "machine ceiling, no broker" if s.startswith("relay") else "perf tool ceiling"
        print("| %s (%s) | %s | | |" % (what, s, fig(s, d["tool"])[1]))
        continue
    (wv, wt), (rv, rt) = fig(s, d.get("warren")), fig(s, d.get("rabbitmq"))
    ratio = ""
    if wv and rv:
        ratio = "%.1fx" % ((rv / wv) if lower_is_better(s) else (wv / rv))
    print("| %s | %s | %s | %s |" % (s, wt, rt, ratio))
PY
