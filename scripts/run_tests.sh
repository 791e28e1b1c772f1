#!/usr/bin/env bash
# `make test`'s pytest part: the unit tests (tests/, student-copy runs included) and nbval over every notebook,
# run as two processes side by side so that the two cores are both busy (each notebook runs in a kernel of
# its own either way). The nbval log is printed after the unit tests; the exit code fails if either fails.
# Usage: scripts/run_tests.sh PYTHON "NBVAL OPTIONS" NOTEBOOK...
set -u
py=$1; nbval_opts=$2; shift 2
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# shellcheck disable=SC2086
"$py" -m pytest -q $nbval_opts "$@" >"$log" 2>&1 &
nbval_pid=$!
"$py" -m pytest -q tests
unit=$?
wait "$nbval_pid"
notebooks=$?
echo "== nbval: every notebook, outputs compared (ran alongside the unit tests) =="
cat "$log"
echo "unit tests exit $unit, nbval exit $notebooks"
[ "$unit" = 0 ] && [ "$notebooks" = 0 ]
