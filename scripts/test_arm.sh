#!/usr/bin/env bash
# `make test-arm`: the CPU unit tests and notebooks 00, 01, 02, 05 and 08 (lax: asserts only) on an emulated
# aarch64 CPU, where qnnpack is the only eager engine, as on an ARM laptop. Not in CI: it needs root, about
# 3 GB, and about 15 minutes to build the root the first time, then tens of minutes to run.
#
#   scripts/test_arm.sh [NOTEBOOK...]     (notebooks/NN_*.ipynb paths; default: 00 01 02 05 08)
#
# The notebooks run in fast mode (QHELPERS_FAST=1: shorter loops, same code paths) with QHELPERS_EMULATED=1
# (timings under an emulator mean nothing: the notebooks skip their timing work and say so). Each notebook's
# time is printed.
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
# - `pip download --platform` on the host evaluates dependency markers for the host (x86_64): executorch then
#   asks for coremltools (x86_64 and macOS only), which has no aarch64 wheel. executorch is downloaded without
#   its dependencies, and those are read from its wheel and evaluated for aarch64 Linux. One of them
#   (antlr4-python3-runtime 4.9.3, through hydra-core) has no wheel at all: it is built on the host (pure Python).
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
    grep -vE '^(-e|#|$)|^jupyterlab|^executorch==' requirements.txt > "$WHEELS/requirements-arm.txt"
    grep -E '^(nbval|pytest|hypothesis)==' requirements-dev.txt >> "$WHEELS/requirements-arm.txt"
    echo "ipykernel" >> "$WHEELS/requirements-arm.txt"
    # pip takes only the platform tags it is given: list every manylinux level bookworm's glibc (2.36) runs.
    platforms=(--platform manylinux2014_aarch64 --platform linux_aarch64)
    for v in $(seq 17 36); do platforms+=(--platform "manylinux_2_${v}_aarch64"); done
    download() { python3 -m pip download --quiet --dest "$WHEELS" --find-links "$WHEELS" --only-binary=:all: \
        "${platforms[@]}" --python-version 3.11 --implementation cp "$@"; }
    # Pure-Python dependencies published as source only, built into wheels here: hydra-core (executorch) needs
    # antlr4-python3-runtime 4.9.*.
    python3 -m pip wheel --quiet --no-deps --wheel-dir "$WHEELS" "antlr4-python3-runtime==4.9.3"
    ET_PIN=$(grep -E '^executorch==' requirements-deploy.txt)  # notebook 08's ExecuTorch (the install split)
    if [ -n "$ET_PIN" ]; then
        download --no-deps "$ET_PIN"
        # executorch's own dependencies, with their markers evaluated for aarch64 Linux (not for this host).
        python3 - "$WHEELS" "${ET_PIN#executorch==}" >> "$WHEELS/requirements-arm.txt" <<'PY'
import glob, sys, zipfile
from pip._vendor.packaging.requirements import Requirement
wheel = glob.glob(f"{sys.argv[1]}/executorch-{sys.argv[2]}-*.whl")[0]
with zipfile.ZipFile(wheel) as z:
    meta = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode()
env = {"platform_machine": "aarch64", "platform_system": "Linux", "sys_platform": "linux", "os_name": "posix",
       "python_version": "3.11", "python_full_version": "3.11.2", "implementation_name": "cpython",
       "platform_python_implementation": "CPython", "extra": ""}
for line in meta.splitlines():
    if line.startswith("Requires-Dist:"):
        req = Requirement(line.split(":", 1)[1].strip())
        if req.marker is None or req.marker.evaluate(env):
            req.marker = None
            print(req)
PY
        echo "$ET_PIN" >> "$WHEELS/executorch-pin.txt"
    fi
    download -r "$WHEELS/requirements-arm.txt" 2>&1 | grep -v "^WARNING: Location" || true
    download -r "$WHEELS/requirements-arm.txt" >/dev/null 2>&1  # fails loudly if incomplete
    download --no-deps setuptools wheel
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
    if [ -f "$WHEELS/executorch-pin.txt" ]; then
        chroot "$ROOT" env PIP_CONFIG_FILE=/dev/null /venv/bin/pip install --quiet --no-index --no-deps --find-links /wheels \
            -r /wheels/executorch-pin.txt
    fi
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

NOTEBOOKS=("$@")
[ ${#NOTEBOOKS[@]} -gt 0 ] || NOTEBOOKS=(notebooks/00_start_here.ipynb notebooks/01_manual_tensor_quantization.ipynb \
    notebooks/02_pretrained_quantized_models.ipynb notebooks/05_beyond_eager_mode.ipynb notebooks/08_deploy_with_executorch.ipynb)
in_root() { chroot "$ROOT" /bin/sh -c "cd /course && HOME=/tmp QHELPERS_FAST=1 QHELPERS_EMULATED=1 $1" 2>&1 | grep -v MIDR_EL1; }

say "unit tests (cpu, quantmath, environment, data), emulated"
set +e
in_root "/venv/bin/python -m pytest -q -p no:warnings -m 'not slow' \
    tests/test_cpu.py tests/test_quantmath.py tests/test_environment.py tests/test_data.py" | tail -n 15
unit=${PIPESTATUS[0]}
failed=()
for nb in "${NOTEBOOKS[@]}"; do
    t0=$(date +%s)
    say "$nb (lax, fast mode, emulated)"
    in_root "/venv/bin/python -m pytest -q -p no:warnings -p no:student_flow --nbval-lax --nbval-current-env \
        --nbval-cell-timeout 1800 $nb" | tail -n 25
    rc=${PIPESTATUS[0]}
    say "$nb: exit $rc in $(( $(date +%s) - t0 )) s"
    [ "$rc" = 0 ] || failed+=("$nb")
done
set -e
say "done: unit tests exit $unit; notebooks failed: ${failed[*]:-none}"
[ "$unit" = 0 ] && [ ${#failed[@]} = 0 ]
