#!/usr/bin/env bash
# Run every Warren test on a fresh machine: Rust unit, property and end-to-end tests (cargo), the
# Node amqplib suite and the Python pika suite. Installs what the suites need into the project's own
# folders (tests/node/node_modules, tests/python/.venv); needs cargo, node/npm and python3.
#
# Ends with one line "N passed, N failed" summing all suites; exits non-zero if anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
log_dir=$(mktemp -d)
trap 'rm -rf "$log_dir"' EXIT
passed=0
failed=0
status=0

step() { printf '\n==> %s\n' "$*"; }

step "build"
cargo build --workspace --all-targets || exit 1
export WARREN_BIN="$root/target/debug/warren"

step "cargo test"
cargo test --workspace 2>&1 | tee "$log_dir/cargo.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
while read -r p f; do
  passed=$((passed + p)); failed=$((failed + f))
done < <(sed -nE 's/^test result: [a-zA-Z]+\. ([0-9]+) passed; ([0-9]+) failed.*/\1 \2/p' "$log_dir/cargo.log")

step "node (amqplib)"
(
  cd tests/node
  if [ ! -d node_modules ] || [ package-lock.json -nt node_modules ]; then
    npm ci --no-audit --no-fund || exit 1
  fi
  npm test
) 2>&1 | tee "$log_dir/node.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
p=$(sed -nE 's/^# pass ([0-9]+)$/\1/p' "$log_dir/node.log" | tail -n1)
f=$(sed -nE 's/^# fail ([0-9]+)$/\1/p' "$log_dir/node.log" | tail -n1)
passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0}))
[ -n "$p" ] || { echo "node suite did not run"; status=1; }

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

if command -v buildah >/dev/null && command -v podman >/dev/null; then
  # The container test builds the image from this binary (as docker/Dockerfile's builder stage
  # does); without buildah and podman it checks the plain binary instead.
  step "static binary for the container image test"
  CARGO_PROFILE_RELEASE_STRIP=symbols RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --release --bin warren --target x86_64-unknown-linux-gnu || status=1
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
  .venv/bin/python -m pytest -q
) 2>&1 | tee "$log_dir/python.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
p=$(grep -oE '[0-9]+ passed' "$log_dir/python.log" | tail -n1 | cut -d' ' -f1)
f=$(grep -oE '[0-9]+ failed' "$log_dir/python.log" | tail -n1 | cut -d' ' -f1)
passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0}))
[ -n "$p" ] || { echo "python suite did not run"; status=1; }

echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] || status=1
exit $status
