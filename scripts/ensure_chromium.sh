#!/usr/bin/env bash
# Make sure Debian's Chromium is installed at /usr/bin/chromium (used by tests/test_browser.py).
# Idempotent and quick when it is already there; installs chromium and chromium-driver with apt-get
# otherwise (needs root and a reachable Debian mirror), and fails with a clear message when it cannot.
set -euo pipefail

CHROMIUM=${CHROMIUM:-/usr/bin/chromium}  # overridable only to exercise this script

if [ -x "$CHROMIUM" ]; then
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure_chromium: $CHROMIUM is missing and apt-get is not available; install Chromium by hand" \
         "(the browser test drives the system browser, it never downloads one)." >&2
    exit 1
fi

SUDO=""
if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "ensure_chromium: $CHROMIUM is missing and installing it needs root:" \
             "run 'sudo apt-get update && sudo apt-get install -y chromium chromium-driver'." >&2
        exit 1
    fi
fi

echo "ensure_chromium: installing Debian's chromium (once; about 120 MB)..." >&2
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! { $SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q chromium chromium-driver; } >"$log" 2>&1; then
    tail -n 20 "$log" >&2
    echo "ensure_chromium: apt-get could not install chromium (see the lines above);" \
         "without it the browser test cannot run." >&2
    exit 1
fi
if [ ! -x "$CHROMIUM" ]; then
    echo "ensure_chromium: apt-get finished but $CHROMIUM is still missing." >&2
    exit 1
fi
echo "ensure_chromium: $("$CHROMIUM" --version 2>/dev/null || echo chromium) installed." >&2
