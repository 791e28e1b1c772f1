#!/usr/bin/env bash
# `make test-arm`: the qhelpers unit tests and notebook 01 (lax) on an emulated aarch64 CPU, where qnnpack is
# the only eager engine, as on an ARM laptop. Not in CI: it needs root, minutes and gigabytes.
#
# Builds (once; reused after) a Debian bookworm arm64 root with debootstrap, runs it under Debian's
# qemu-user-static through binfmt_misc, installs the pinned aarch64 wheels there (downloaded on the host with
# `pip download --platform`), copies the course in, and runs the tests with the engine chosen as on a real
# ARM machine (qh.default_engine() -> qnnpack, because platform.machine() is aarch64).
#
# Pitfalls handled (each cost an afternoon):
# - QEMU_CPU=neoverse-n1: qemu's default "max" CPU has 512-bit SVE, under which torch 2.14.1's nn.Linear
#   returns wrong results.
# - The host's /sys is not bound into the root (torch segfaults on import); instead the root gets
#   /sys/devices/system/cpu/{possible,present,online} = "0-1" (else "failed to initialize QNNPACK").
# - pip inside the root uses the host's CA bundle. Every import prints "Can't open MIDR_EL1 sysfs entry".
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
ROOT=${ARM_ROOT:-$REPO/build/arm64-root}
WHEELS=${ARM_WHEELS:-$REPO/build/arm64-wheels}
TORCH_PIN=$(grep -E '^torch==' requirements.txt)
TV_PIN=$(grep -E '^torchvision==' requirements.txt)
export QEMU_CPU=neoverse-n1
start=$(date +%s)
say() { echo "test-arm [$(( $(date +%s) - start ))s]: $*"; }

[ "$(id -u)" = 0 ] || { echo "test-arm: needs root (debootstrap, chroot, binfmt_misc)"; exit 1; }

if ! command -v debootstrap >/dev/null || [ ! -x /usr/bin/qemu-aarch64-static ]; then
    say "installing debootstrap and qemu-user-static"
    apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap qemu-user-static binfmt-support >/dev/null
fi
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
    mount binfmt_misc -t binfmt_misc /proc/sys/fs/binfmt_misc
fi
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    # F: the kernel opens the interpreter now, so it works inside the chroot without a copy there
    echo ':qemu-aarch64:M::\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:/usr/bin/qemu-aarch64-static:FOC' \
        > /proc/sys/fs/binfmt_misc/register
fi

if [ ! -x "$ROOT/usr/bin/python3" ]; then
    say "building the arm64 root in $ROOT (about 7 minutes)"
    rm -rf "$ROOT"; mkdir -p "$ROOT"
    debootstrap --arch=arm64 --foreign --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
        bookworm "$ROOT" http://deb.debian.org/debian >/dev/null
    cp /usr/bin/qemu-aarch64-static "$ROOT/usr/bin/"
    chroot "$ROOT" /debootstrap/debootstrap --second-stage >/dev/null
fi

# What the tests need, as aarch64 wheels, downloaded on the host (fast) and installed offline in the root.
mkdir -p "$WHEELS"
if [ ! -f "$WHEELS/.complete" ]; then
    say "downloading the aarch64 wheels ($TORCH_PIN is a CUDA build there: about 2.3 GB)"
    grep -vE '^(-e|#|$)|^jupyterlab' requirements.txt > "$WHEELS/requirements-arm.txt"
    grep -E '^(nbval|pytest|hypothesis)==' requirements-dev.txt >> "$WHEELS/requirements-arm.txt"
    echo "ipykernel" >> "$WHEELS/requirements-arm.txt"
    # pip takes only the platform tags it is given: list every manylinux level bookworm's glibc (2.36) runs.
    platforms=(--platform manylinux2014_aarch64 --platform linux_aarch64)
    for v in $(seq 17 36); do platforms+=(--platform "manylinux_2_${v}_aarch64"); done
    python3 -m pip download --quiet --dest "$WHEELS" --only-binary=:all: "${platforms[@]}" \
        --python-version 3.11 --implementation cp -r "$WHEELS/requirements-arm.txt" 2>&1 | grep -v "^WARNING: Location" || true
    python3 -m pip download --quiet --dest "$WHEELS" --only-binary=:all: "${platforms[@]}" \
        --python-version 3.11 --implementation cp -r "$WHEELS/requirements-arm.txt" >/dev/null 2>&1  # fails loudly if incomplete
    python3 -m pip download --quiet --dest "$WHEELS" --only-binary=:all: --no-deps setuptools wheel
    touch "$WHEELS/.complete"
fi

# /proc, the wheels, the CA bundle and a fake CPU topology; never the host's /sys.
mountpoint -q "$ROOT/proc" || mount -t proc proc "$ROOT/proc"
cleanup() { umount "$ROOT/proc" 2>/dev/null || true; umount "$ROOT/wheels" 2>/dev/null || true; }
trap cleanup EXIT
mkdir -p "$ROOT/wheels" "$ROOT/sys/devices/system/cpu" "$ROOT/etc/ssl/certs"
mountpoint -q "$ROOT/wheels" || mount --bind "$WHEELS" "$ROOT/wheels"
for f in possible present online; do echo "0-1" > "$ROOT/sys/devices/system/cpu/$f"; done
cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/" 2>/dev/null || true

if [ ! -x "$ROOT/venv/bin/python" ] || ! chroot "$ROOT" /venv/bin/python -c "import torch, nbval" 2>/dev/null; then
    say "installing the wheels in the root's venv (emulated: several minutes)"
    chroot "$ROOT" python3 -m venv /venv
    chroot "$ROOT" env PIP_CONFIG_FILE=/dev/null /venv/bin/pip install --quiet --no-index --find-links /wheels -r /wheels/requirements-arm.txt
fi

say "copying the course into the root"
rm -rf "$ROOT/course"; mkdir -p "$ROOT/course"
git ls-files -z | xargs -0 -I{} cp --parents {} "$ROOT/course/"
chroot "$ROOT" env PIP_CONFIG_FILE=/dev/null /venv/bin/pip install --quiet --no-index --no-deps --no-build-isolation \
    --find-links /wheels -e /course >/dev/null 2>&1 || true

say "machine and engines in the root"
chroot "$ROOT" /bin/sh -c 'cd /course && /venv/bin/python -c "
import platform, qhelpers as qh
print(platform.machine(), \"engines:\", qh.supported_engines(), \"default:\", qh.default_engine())
assert platform.machine() == \"aarch64\" and qh.default_engine() == \"qnnpack\"
"' 2>&1 | grep -v MIDR_EL1

say "unit tests (quantmath, environment, data) and notebook 01 (lax), emulated"
set +e
chroot "$ROOT" /bin/sh -c "cd /course && HOME=/tmp /venv/bin/python -m pytest -q -p no:warnings -m 'not slow' \
    tests/test_quantmath.py tests/test_environment.py tests/test_data.py" 2>&1 | grep -v MIDR_EL1 | tail -n 15
unit=${PIPESTATUS[0]}
chroot "$ROOT" /bin/sh -c "cd /course && HOME=/tmp /venv/bin/python -m pytest -q -p no:warnings --nbval-lax \
    --nbval-current-env --nbval-cell-timeout 1800 notebooks/01_manual_tensor_quantization.ipynb" 2>&1 | grep -v MIDR_EL1 | tail -n 15
nb=${PIPESTATUS[0]}
set -e
say "done: unit tests exit $unit, notebook 01 exit $nb"
[ "$unit" = 0 ] && [ "$nb" = 0 ]
