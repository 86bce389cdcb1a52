#!/usr/bin/env bash
# Run every Warren test on a fresh machine: Rust unit, property and end-to-end tests (cargo), the
# Node amqplib suite, the Python pika suite and the client libraries' own integration suites
# (tests/clients/run.sh: amqplib, py-amqp and kombu at pinned versions, downloaded at test time).
# Installs what the suites need into the project's own folders (tests/node/node_modules,
# tests/python/.venv, tests/clients/.cache), and as root Debian's valgrind (the instruction-count
# guard), chromium (UI tests) and buildah,
# podman, runc, podman-compose (container tests); needs cargo, node/npm and python3.
#
# Ends with one line "N passed, N failed, N skipped" summing all suites; exits non-zero if anything
# failed. Every suite runs even after another failed. A test binary that crashes, a test that times
# out (Node's "cancelled"), a fixture that errors (pytest's "error") and a suite that does not finish
# all count as failed (the parsers are in scripts/test-totals.sh); skips are listed with reasons.
#
# AMQP_URL / MGMT_URL in the caller's environment would point the Node and Python suites at another
# broker; they are unset (with a notice) unless WARREN_TEST_AGAINST_URL=1 asks for exactly that
# (the differential run against RabbitMQ).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
. scripts/test-totals.sh
log_dir=$(mktemp -d)
trap 'rm -rf "$log_dir"' EXIT
passed=0
failed=0
skipped=0
status=0

step() { printf '\n==> %s\n' "$*"; }
# add_totals SUITE "PASSED FAILED SKIPPED": adds one suite's counts and prints them.
add_totals() {
  local p f s
  read -r p f s <<<"$2"
  passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
  echo "$1: $p passed, $f failed, $s skipped"
}
# A whole suite that hangs is stopped here (and then has no summary, so it counts as failed).
suite_timeout=${WARREN_TEST_SUITE_TIMEOUT:-1500}

for var in AMQP_URL MGMT_URL; do
  if [ -n "${!var:-}" ]; then
    if [ "${WARREN_TEST_AGAINST_URL:-}" = 1 ]; then
      echo "note: $var=${!var} is set and WARREN_TEST_AGAINST_URL=1: the Node, Python and client suites test that broker"
    else
      echo "note: unsetting $var=${!var} (the suites would test that broker instead of Warren; set WARREN_TEST_AGAINST_URL=1 to mean it)"
      unset "$var"
    fi
  fi
done

step "build"
cargo build --workspace --all-targets || exit 1
export WARREN_BIN="$root/target/debug/warren"

step "valgrind for the instruction-count guard (broker/tests/hot_path_instructions.rs)"
if ! command -v valgrind >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q valgrind >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q valgrind >/dev/null; } \
      || echo "could not install valgrind: the instruction-count guard will fail"
  else
    echo "valgrind missing and not root: the instruction-count guard will fail"
  fi
fi

step "cargo test"
timeout --kill-after=30 "$suite_timeout" cargo test --workspace --no-fail-fast 2>&1 | tee "$log_dir/cargo.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
add_totals cargo "$(parse_cargo "$log_dir/cargo.log")"

step "node (amqplib)"
(
  cd tests/node
  if [ ! -d node_modules ] || [ package-lock.json -nt node_modules ]; then
    npm ci --no-audit --no-fund || exit 1
  fi
  timeout --kill-after=30 "$suite_timeout" npm test
) 2>&1 | tee "$log_dir/node.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
add_totals node "$(parse_node "$log_dir/node.log")"

step "browser for the UI tests (Debian's chromium and chromedriver)"
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null && apt-get install -y -q chromium chromium-driver >/dev/null; } \
      || echo "could not install chromium: the UI tests will be skipped"
  else
    echo "chromium / chromedriver missing and not root: the UI tests will be skipped"
  fi
fi

step "container tools and image (buildah, podman, runc, podman-compose; docker/build-prebuilt.sh)"
# The container tests (tests/python/test_container.py, test_compose_recipes.py) build the image
# with docker/build-prebuilt.sh, the documented build, and run it with podman. The tools come from
# Debian (as root); where they cannot be installed those tests fail, saying why. The build here
# (a static release binary, a few minutes the first time) keeps the Python suite's own run of the
# script to a no-op cargo build and a seconds-long image build.
if scripts/install-container-tools.sh; then
  docker/build-prebuilt.sh localhost/warren-test:build || status=1
  podman rmi -f localhost/warren-test:build >/dev/null 2>&1
else
  echo "container tools missing: the container tests will fail"
fi

step "python (pika)"
(
  cd tests/python
  if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv || exit 1
  fi
  if ! cmp -s requirements.txt .venv/.installed-requirements; then
    .venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt || exit 1
    cp requirements.txt .venv/.installed-requirements
  fi
  timeout --kill-after=30 "$suite_timeout" .venv/bin/python -m pytest -q -ra
) 2>&1 | tee "$log_dir/python.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
add_totals python "$(parse_python "$log_dir/python.log")"

step "client libraries' own suites (amqplib, py-amqp, kombu; tests/clients)"
mkdir -p "$log_dir/clients"
CLIENT_SUITES_LOG_DIR="$log_dir/clients" timeout --kill-after=30 "$suite_timeout" tests/clients/run.sh \
  || status=1
add_totals clients "$(parse_clients "$log_dir/clients")"

echo
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ] || status=1
exit $status
