#!/usr/bin/env bash
# Make sure a program from a Debian package is installed: `ensure_apt.sh PROGRAM PACKAGE...`, e.g.
# `ensure_apt.sh /usr/bin/chromium chromium chromium-driver` or `ensure_apt.sh qemu-x86_64 qemu-user`.
# Quick when PROGRAM is already there (a path, or a name on the PATH); installs the packages with apt-get
# otherwise (needs root, or sudo without a password, and a reachable Debian mirror). Where it cannot (no
# apt-get, no root: macOS, Windows, a laptop without admin rights) it prints one line saying what will be
# skipped and exits 0; under CI (CI=true) that is a failure instead. Only `make setup-dev` calls it: no test
# target installs system packages.
set -euo pipefail

if [ $# -lt 2 ]; then
    echo "usage: ensure_apt.sh PROGRAM PACKAGE..." >&2
    exit 2
fi
PROGRAM=$1
shift
NAME=$(basename "$PROGRAM")

present() {
    case "$PROGRAM" in
        */*) [ -x "$PROGRAM" ] ;;
        *) command -v "$PROGRAM" >/dev/null 2>&1 ;;
    esac
}

# Called where the package cannot be had: fail under CI, skip (one line) elsewhere.
cannot() {
    echo "ensure_apt: $*" >&2
    case "${CI:-}" in
        ""|0|false|False) echo "ensure_apt: the tests that need $NAME will be skipped (set CI=true to make this an error)." >&2; exit 0 ;;
        *) exit 1 ;;
    esac
}

if present; then
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    cannot "$PROGRAM is missing and apt-get is not available; install $* by hand."
fi

SUDO=""
if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        cannot "$PROGRAM is missing and installing it needs root: run 'sudo apt-get update && sudo apt-get install -y $*'."
    fi
fi

echo "ensure_apt: installing Debian's $* (once)..." >&2
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! { $SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "$@"; } >"$log" 2>&1; then
    tail -n 20 "$log" >&2
    cannot "apt-get could not install $* (see the lines above)."
fi
if ! present; then
    echo "ensure_apt: apt-get finished but $PROGRAM is still missing." >&2
    exit 1
fi
echo "ensure_apt: $* installed." >&2
