#!/usr/bin/env bash
# The Node wrapper's tests (scripts/qhelpers.test.js). Where Node is missing, one line says they are
# skipped and how to enable them; under CI (CI=true) a missing Node is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v node >/dev/null 2>&1; then
    echo "run_node_tests: node is not installed; the Node wrapper's tests are skipped (install Node.js 18+ to run them)." >&2
    case "${CI:-}" in ""|0|false|False) exit 0 ;; *) exit 1 ;; esac
fi
exec node --test scripts/qhelpers.test.js
