# Parsers for the logs of the three test suites, sourced by scripts/test.sh.
#
# Each parse_* function reads one saved log and prints "PASSED FAILED SKIPPED" on stdout (and the
# skipped tests with their reasons, and anything it counted as a failure without a test result, on
# stderr). They are plain functions over files so they can be checked against saved logs:
#
#   . scripts/test-totals.sh; parse_cargo /tmp/cargo.log
#
# The rule in all three: a suite that does not report how it ended counts as failed, never as
# "0 failed".

# cargo test --no-fail-fast: one "Running ..." (or "Doc-tests ...") line per test binary started,
# one "test result:" line per binary that finished. A binary that crashes (abort, segfault, a
# panic outside a test) or is killed prints no result line; each such binary counts as 1 failed.
# Ignored tests count as skipped and are listed.
parse_cargo() {
  local log=$1 passed=0 failed=0 ignored=0 started finished p f i
  while read -r p f i; do
    passed=$((passed + p)); failed=$((failed + f)); ignored=$((ignored + i))
  done < <(sed -nE 's/^test result: [a-zA-Z]+\. ([0-9]+) passed; ([0-9]+) failed; ([0-9]+) ignored.*/\1 \2 \3/p' "$log")
  started=$(grep -cE '^ +(Running|Doc-tests) ' "$log")
  finished=$(grep -cE '^test result: ' "$log")
  if [ "$finished" -lt "$started" ]; then
    echo "cargo: $((started - finished)) of $started test binaries ended without a result (crashed or killed); each counts as 1 failed:" >&2
    # Name them: a "Running" line not followed by a "test result:" before the next "Running".
    awk '/^ +(Running|Doc-tests) / { if (cur != "") print "  " cur; cur = $0; sub(/^ +/, "", cur); next }
         /^test result: / { cur = "" }
         END { if (cur != "") print "  " cur }' "$log" >&2
    failed=$((failed + started - finished))
  fi
  if [ "$started" -eq 0 ]; then
    echo "cargo: no test binary ran; counted as 1 failed" >&2
    failed=$((failed + 1))
  fi
  if [ "$ignored" -gt 0 ]; then
    echo "cargo: $ignored ignored:" >&2
    sed -nE 's/^test (.*) \.\.\. ignored(, (.*))?$/  \1 (\3)/p' "$log" >&2
  fi
  echo "$passed $failed $ignored"
}

# node --test --test-reporter=tap: the summary "# pass / # fail / # cancelled / # skipped / # todo".
# Cancelled tests (timed out, or cut off because their file ended) count as failed; a missing
# summary (the runner crashed or was killed) counts as 1 failed. Skips are listed from "# SKIP".
parse_node() {
  local log=$1 p f c s
  p=$(sed -nE 's/^# pass ([0-9]+)$/\1/p' "$log" | tail -n1)
  f=$(sed -nE 's/^# fail ([0-9]+)$/\1/p' "$log" | tail -n1)
  c=$(sed -nE 's/^# cancelled ([0-9]+)$/\1/p' "$log" | tail -n1)
  s=$(sed -nE 's/^# skipped ([0-9]+)$/\1/p' "$log" | tail -n1)
  if [ -z "$p" ] || [ -z "$f" ]; then
    echo "node: no TAP summary (# pass / # fail): the runner did not finish; counted as 1 failed" >&2
    echo "${p:-0} $(( ${f:-0} + ${c:-0} + 1 )) ${s:-0}"
    return
  fi
  [ "${c:-0}" -eq 0 ] || echo "node: $c cancelled (timed out or cut off), counted as failed" >&2
  if [ "${s:-0}" -gt 0 ]; then
    echo "node: # skipped $s:" >&2
    sed -nE 's/^ *ok [0-9]+ - (.*) # SKIP ?(.*)$/  \1: \2/p' "$log" >&2
  fi
  echo "$p $((f + ${c:-0})) ${s:-0}"
}

# pytest -q -ra: the last summary line, e.g. "3 failed, 40 passed, 2 skipped, 1 error in 9.1s".
# Errors (a fixture that raised in setup or teardown) count as failed, and so do "xpassed" under
# strict markers (pytest reports those as failed itself). A missing summary counts as 1 failed.
# The skip reasons are the "SKIPPED [n] file:line: reason" lines -ra prints.
parse_python() {
  local log=$1 line n word passed=0 failed=0 skipped=0
  line=$(grep -E '^=*[ ]*([0-9]+ [a-z]+(, )?)+( in [0-9.]+s.*)?[ ]*=*$' "$log" | grep -E '(passed|failed|error|skipped|deselected|no tests ran)' | tail -n1)
  if [ -z "$line" ]; then
    echo "python: no pytest summary line: the run did not finish; counted as 1 failed" >&2
    echo "0 1 0"
    return
  fi
  while read -r n word; do
    case $word in
      passed) passed=$((passed + n)) ;;
      failed | error | errors) failed=$((failed + n)) ;;
      skipped) skipped=$((skipped + n)) ;;
    esac
  done < <(grep -oE '[0-9]+ (passed|failed|errors?|skipped)' <<<"$line")
  if [ "$skipped" -gt 0 ]; then
    echo "python: $skipped skipped:" >&2
    grep -E '^SKIPPED ' "$log" | sed 's/^/  /' >&2
  fi
  echo "$passed $failed $skipped"
}

# tests/clients/run.sh with CLIENT_SUITES_LOG_DIR=DIR: DIR/amqplib.log (node:test, TAP: as
# parse_node), DIR/py-amqp.log and DIR/kombu.log (pytest: as parse_python). A suite whose log is
# missing or has no summary counts as 1 failed. The tests excluded in tests/clients/exclusions.txt
# count as skipped and are listed with their reasons (amqplib reports them as "# SKIP excluded: ...",
# already counted by parse_node; pytest reports "N deselected").
parse_clients() {
  local dir=$1 exclusions=${2:-tests/clients/exclusions.txt} suite counts p f s passed=0 failed=0 skipped=0 n
  for suite in amqplib py-amqp kombu; do
    if [ ! -s "$dir/$suite.log" ]; then
      echo "clients: $suite did not run (no log); counted as 1 failed" >&2
      failed=$((failed + 1))
      continue
    fi
    if [ "$suite" = amqplib ]; then
      counts=$(parse_node "$dir/$suite.log" 2>/dev/null)
    else
      counts=$(parse_python "$dir/$suite.log" 2>/dev/null)
      n=$(grep -oE '[0-9]+ deselected' "$dir/$suite.log" | tail -n1 | cut -d' ' -f1)
      counts=$(awk -v n="${n:-0}" '{ print $1, $2, $3 + n }' <<<"$counts")
    fi
    read -r p f s <<<"$counts"
    echo "clients: $suite: $p passed, $f failed, $s skipped" >&2
    passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
  done
  if [ "$skipped" -gt 0 ] && [ -f "$exclusions" ]; then
    echo "clients: excluded (tests/clients/exclusions.txt):" >&2
    grep -vE '^[[:space:]]*(#|$)' "$exclusions" | sed 's/^/  /' >&2
  fi
  echo "$passed $failed $skipped"
}
