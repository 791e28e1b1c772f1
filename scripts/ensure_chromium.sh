#!/usr/bin/env bash
# Make sure Debian's Chromium is installed at /usr/bin/chromium (used by tests/test_browser.py and
# tests/test_html.py); `make setup-dev` runs it (see scripts/ensure_apt.sh for what it does where it cannot).
# QHELPERS_SKIP_BROWSER=1 skips the whole thing.
set -euo pipefail
if [ -n "${QHELPERS_SKIP_BROWSER:-}" ] && [ "${QHELPERS_SKIP_BROWSER}" != "0" ]; then
    echo "ensure_chromium: QHELPERS_SKIP_BROWSER is set; the browser test is skipped." >&2
    exit 0
fi
exec bash "$(dirname "$0")/ensure_apt.sh" "${CHROMIUM:-/usr/bin/chromium}" chromium chromium-driver
