#!/usr/bin/env bash
# Runs the integration tests that ship in the published packages of three client libraries against
# one broker: amqplib's test/ (npm tarball), py-amqp's and kombu's t/integration (PyPI sdists). The
# versions are pinned in versions.sh; the packages and what their tests need are downloaded with
# npm and pip into tests/clients/.cache (gitignored) on the first run and reused afterwards.
#
# Tests listed in exclusions.txt are not run (each with its reason); everything else must pass.
#
# Broker: a Warren started for the run ($WARREN_BIN, default target/debug/warren), or, when
# AMQP_URL is set and WARREN_TEST_AGAINST_URL=1, the broker at AMQP_URL (amqp://user:pass@host:port/,
# default vhost only; the suites use guest/guest on the default vhost).
#
# Usage: tests/clients/run.sh [SUITE...]   (suites: amqplib py-amqp kombu; default all)
# With CLIENT_SUITES_LOG_DIR set, each suite's output is also written to DIR/SUITE.log (the test
# command parses those). Exits non-zero if any suite failed.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$here/versions.sh"
cache="$here/.cache"
mkdir -p "$cache"
suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=(amqplib py-amqp kombu)
log_dir=${CLIENT_SUITES_LOG_DIR:-}
suite_timeout=${CLIENT_SUITE_TIMEOUT:-300}

# --- exclusions: "suite | test | reason" lines -------------------------------------------------
excluded() { # SUITE -> the excluded test names, one a line
  sed -nE "s/^$1[[:space:]]*\|[[:space:]]*(.*[^[:space:]])[[:space:]]*\|.*/\1/p" "$here/exclusions.txt"
}

# --- fetch (only what is missing) ---------------------------------------------------------------
fetch_amqplib() {
  local dir="$cache/amqplib-$AMQPLIB_VERSION"
  if [ ! -f "$dir/.ready" ]; then
    rm -rf "$dir" && mkdir -p "$dir" || return 1
    (cd "$cache" && npm pack --silent "amqplib@$AMQPLIB_VERSION" >/dev/null) || return 1
    tar -xzf "$cache/amqplib-$AMQPLIB_VERSION.tgz" -C "$dir" --strip-components=1 || return 1
    [ -d "$dir/test" ] || { echo "amqplib@$AMQPLIB_VERSION's tarball has no test/" >&2; return 1; }
    touch "$dir/.ready"
  fi
  # The tests' one dependency beyond amqplib itself (resolved from the parent node_modules).
  if ! grep -q "\"version\": *\"$CLAIRE_VERSION\"" "$cache/node_modules/claire/package.json" 2>/dev/null; then
    npm install --silent --prefix "$cache" --no-save --no-package-lock --no-audit --no-fund \
      "claire@$CLAIRE_VERSION" || return 1
  fi
}

fetch_python() {
  local venv="$cache/venv" want="amqp==$AMQP_VERSION kombu==$KOMBU_VERSION vine==$VINE_VERSION pytest==$PYTEST_VERSION"
  local name version
  for name in amqp kombu; do
    [ "$name" = amqp ] && version=$AMQP_VERSION || version=$KOMBU_VERSION
    if [ ! -f "$cache/$name-$version/.ready" ]; then
      pip download --quiet --disable-pip-version-check --no-deps --no-binary :all: \
        -d "$cache" "$name==$version" || return 1
      rm -rf "$cache/$name-$version"
      tar -xzf "$cache/$name-$version.tar.gz" -C "$cache" || return 1
      touch "$cache/$name-$version/.ready"
    fi
  done
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" || return 1
  fi
  if [ "$(cat "$venv/.installed" 2>/dev/null)" != "$want" ]; then
    # The libraries from the sdists just downloaded, so the code tested is the code shipped.
    "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps \
      "$cache/amqp-$AMQP_VERSION.tar.gz" "$cache/kombu-$KOMBU_VERSION.tar.gz" || return 1
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
      "vine==$VINE_VERSION" "pytest==$PYTEST_VERSION" || return 1
    echo "$want" >"$venv/.installed"
  fi
}

# --- broker -------------------------------------------------------------------------------------
warren_pid=
data_dir=
cleanup() {
  if [ -n "$warren_pid" ]; then kill "$warren_pid" 2>/dev/null; wait "$warren_pid" 2>/dev/null; fi
  [ -z "$data_dir" ] || rm -rf "$data_dir"
}
trap cleanup EXIT
trap "exit 143" TERM INT

if [ -n "${AMQP_URL:-}" ] && [ "${WARREN_TEST_AGAINST_URL:-}" = 1 ]; then
  hostport=${AMQP_URL#*://}; hostport=${hostport#*@}; hostport=${hostport%%/*}
  broker_host=${hostport%:*}; broker_port=${hostport##*:}
  [ "$broker_port" != "$hostport" ] || broker_port=5672
  echo "client suites: testing the broker at $broker_host:$broker_port (AMQP_URL)"
else
  warren=${WARREN_BIN:-$root/target/debug/warren}
  [ -x "$warren" ] || { echo "no Warren binary at $warren (cargo build --bin warren)" >&2; exit 1; }
  data_dir=$(mktemp -d)
  "$warren" --bind 127.0.0.1 --port 0 --management-port 0 --prometheus-port 0 --stream-port 0 \
    --data-dir "$data_dir/data" >"$data_dir/warren.log" 2>&1 &
  warren_pid=$!
  broker_host=127.0.0.1 broker_port=
  for _ in $(seq 100); do
    broker_port=$(sed -nE 's/.*Listening for AMQP on [0-9.]+:([0-9]+).*/\1/p' "$data_dir/warren.log" | head -n1)
    grep -q 'Server startup complete' "$data_dir/warren.log" && [ -n "$broker_port" ] && break
    sleep 0.1
  done
  [ -n "$broker_port" ] || { echo "Warren did not start:" >&2; cat "$data_dir/warren.log" >&2; exit 1; }
  echo "client suites: testing Warren on $broker_host:$broker_port (pid $warren_pid)"
fi

# --- suites -------------------------------------------------------------------------------------
run_amqplib() {
  fetch_amqplib || { echo "amqplib: could not fetch amqplib@$AMQPLIB_VERSION or its test dependencies"; return 1; }
  local dir="$cache/amqplib-$AMQPLIB_VERSION" names
  names=$(excluded amqplib | paste -sd '\n' -)
  cd "$dir" || return 1
  # The tests read $URL (channel_api) or use amqp://localhost (callback_api, connect): the preload
  # sends localhost:5672 to the broker under test. Excluded tests are skipped with their reason
  # (they show as "# SKIP excluded: ..." in the TAP output).
  CLIENT_SUITE_HOST=$broker_host CLIENT_SUITE_PORT=$broker_port CLIENT_SUITE_EXCLUDE="$names" \
    URL="amqp://$broker_host:$broker_port" \
    timeout --kill-after=10 "$suite_timeout" node --require "$here/redirect-5672.js" \
    --require "$here/exclude-node.js" --test --test-reporter=tap --test-timeout=10000 test/
}

run_pytest_suite() { # SUITE DIR PATH...
  local suite=$1 dir=$2 args=() name
  shift 2
  fetch_python || { echo "$suite: could not fetch/install the Python packages"; return 1; }
  while IFS= read -r name; do [ -z "$name" ] || args+=(--deselect "$name"); done < <(excluded "$suite")
  cd "$dir" || return 1
  # -p no:cacheprovider: nothing written into the cache; the libraries' flaky(reruns=5) marks have
  # no effect (pytest-rerunfailures is not installed): a test must pass the first time.
  RABBITMQ_HOST=$broker_host RABBITMQ_5672_TCP=$broker_port \
    timeout --kill-after=10 "$suite_timeout" "$cache/venv/bin/python" -m pytest -p no:cacheprovider \
    -q -ra -o addopts= -W ignore::pytest.PytestUnknownMarkWarning "${args[@]}" "$@"
}

# Against a broker that outlives the run (AMQP_URL), queues that a suite's tests declare with a
# fixed name and leave holding messages would be read by the next run's test of the same name:
# kombu's Priority test_publish_requeue_consume leaves its 4 unacknowledged messages in
# priority_requeue_test (the libraries' own CI uses a fresh Docker RabbitMQ every time). Those
# queues are deleted before the suite runs. A Warren started here is always fresh.
stale_queues_kombu=(priority_requeue_test)
delete_stale_queues() { # SUITE
  local var="stale_queues_${1//-/_}[@]"
  [ -n "$warren_pid" ] || [ -z "${!var:-}" ] || "$cache/venv/bin/python" - "$broker_host:$broker_port" "${!var}" <<'PY'
import sys, amqp
with amqp.Connection(host=sys.argv[1]) as c:
    ch = c.channel()
    for name in sys.argv[2:]:
        ch.queue_delete(name)
        print(f"deleted queue {name} left by an earlier run")
PY
}

run_suite() {
  case $1 in
    amqplib) run_amqplib ;;
    py-amqp) run_pytest_suite py-amqp "$cache/amqp-$AMQP_VERSION" t/integration ;;
    kombu) fetch_python && delete_stale_queues kombu && run_pytest_suite kombu "$cache/kombu-$KOMBU_VERSION" t/integration/test_py_amqp.py ;;
    *) echo "unknown suite $1 (amqplib, py-amqp, kombu)"; return 2 ;;
  esac
}

status=0
for suite in "${suites[@]}"; do
  echo
  echo "--- $suite: its own tests (excluded: $(excluded "$suite" | grep -c .), see tests/clients/exclusions.txt)"
  start=$SECONDS
  if [ -n "$log_dir" ]; then
    (run_suite "$suite") 2>&1 | tee "$log_dir/$suite.log"
    rc=${PIPESTATUS[0]}
  else
    (run_suite "$suite") 2>&1
    rc=$?
  fi
  echo "--- $suite: exit $rc in $((SECONDS - start))s"
  [ "$rc" -eq 0 ] || status=1
done
exit $status
