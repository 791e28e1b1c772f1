#!/usr/bin/env bash
# Make sure Debian's Chromium is installed at /usr/bin/chromium (used by tests/test_browser.py).
# Idempotent and quick when it is already there; installs chromium and chromium-driver with apt-get
# otherwise (needs root and a reachable Debian mirror), and fails with a clear message when it cannot.
# Where it cannot (no apt-get, no root: macOS, Windows, a laptop without admin rights) it prints one line
# saying the browser test will be skipped and exits 0; under CI (CI=true) that is a failure instead.
# QHELPERS_SKIP_BROWSER=1 skips the whole thing.
set -euo pipefail

CHROMIUM=${CHROMIUM:-/usr/bin/chromium}  # overridable only to exercise this script

if [ "${QHELPERS_SKIP_BROWSER:-0}" != "0" ] && [ -n "${QHELPERS_SKIP_BROWSER:-}" ]; then
    echo "ensure_chromium: QHELPERS_SKIP_BROWSER is set; the browser test is skipped." >&2
    exit 0
fi

# Called where Chromium cannot be had: fail under CI, skip (one line) elsewhere.
cannot() {
    echo "ensure_chromium: $*" >&2
    case "${CI:-}" in
        ""|0|false|False) echo "ensure_chromium: the browser test will be skipped (set CI=true to make this an error)." >&2; exit 0 ;;
        *) exit 1 ;;
    esac
}

if [ -x "$CHROMIUM" ]; then
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    cannot "$CHROMIUM is missing and apt-get is not available; install Chromium by hand" \
           "(the browser test drives the system browser, it never downloads one)."
fi

SUDO=""
if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        cannot "$CHROMIUM is missing and installing it needs root:" \
               "run 'sudo apt-get update && sudo apt-get install -y chromium chromium-driver'."
    fi
fi

echo "ensure_chromium: installing Debian's chromium (once; about 120 MB)..." >&2
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! { $SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q chromium chromium-driver; } >"$log" 2>&1; then
    tail -n 20 "$log" >&2
    cannot "apt-get could not install chromium (see the lines above); without it the browser test cannot run."
fi
if [ ! -x "$CHROMIUM" ]; then
    echo "ensure_chromium: apt-get finished but $CHROMIUM is still missing." >&2
    exit 1
fi
echo "ensure_chromium: $("$CHROMIUM" --version 2>/dev/null || echo chromium) installed." >&2
