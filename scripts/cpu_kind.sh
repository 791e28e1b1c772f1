#!/usr/bin/env bash
# Run a command as on another kind of laptop CPU (the CPU-kinds passes of `make test-cpus`).
#
#   scripts/cpu_kind.sh KIND COMMAND [ARGS...]
#
# KIND:
#   haswell  x86-64 with AVX2 and no VNNI, faithfully: Jupyter kernels run under
#            `qemu-x86_64 -cpu Haswell-v4` (torch reads a Haswell CPUID and dispatches as on a real
#            AVX2 laptop), and /proc/cpuinfo is replaced, in a private mount namespace, by a copy
#            without the AVX-512, VNNI and AMX flags (qemu-user passes the host's through). Needs root
#            and Debian's qemu-user. Exports NBVAL_KERNEL (give it to nbval as --nbval-kernel-name)
#            and QEMU_PY (a python command under the emulator, for scripts). The C++ compiler runs
#            natively (subprocesses of an emulated process are not emulated), so Inductor is told to
#            build for Haswell (TORCHINDUCTOR_CPP_MARCH=haswell instead of -march=native: with the
#            host's AVX-512 the emulated kernel dies of SIGILL) into a fresh TORCHINDUCTOR_CACHE_DIR.
#   qnnpack  ARM-like: QHELPERS_ENGINE=qnnpack hides the x86 engines (qnnpack is the only eager engine).
#   nocc     no C++ compiler, as on most Windows laptops: a PATH without cc, c++, gcc, g++ or clang,
#            and a fresh, empty Inductor cache.
#   native   this machine as it is.
#
# Under haswell, QHELPERS_EMULATED=1 is set: notebooks skip their timing work (timings under an
# emulator mean nothing) and say so in one line; every other code path runs.
set -euo pipefail
kind=${1:?usage: scripts/cpu_kind.sh haswell|qnnpack|nocc|native COMMAND...}
shift
[ $# -gt 0 ] || { echo "cpu_kind.sh: no command given" >&2; exit 2; }
root=$(cd "$(dirname "$0")/.." && pwd)
venv_py="$root/.venv/bin/python"

case "$kind" in
native)
  exec "$@"
  ;;
qnnpack)
  QHELPERS_ENGINE=qnnpack exec "$@"
  ;;
nocc)
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  mkdir -p "$work/bin" "$work/inductor"
  for dir in /usr/local/sbin /usr/local/bin /usr/sbin /usr/bin /sbin /bin; do
    [ -d "$dir" ] || continue
    for f in "$dir"/*; do
      name=$(basename "$f")
      case "$name" in
        cc|c++|cpp|gcc|g++|gcc-[0-9]*|g++-[0-9]*|cpp-[0-9]*|clang*|*-linux-gnu-gcc*|*-linux-gnu-g++*|*-linux-gnu-cpp*|*-linux-gnu-c++*|icx|icpx) continue ;;
      esac
      [ -e "$work/bin/$name" ] || ln -s "$f" "$work/bin/$name"
    done
  done
  export PATH="$root/.venv/bin:$work/bin"
  unset CC CXX
  export TORCHINDUCTOR_CACHE_DIR="$work/inductor"
  if command -v cc >/dev/null || command -v g++ >/dev/null || command -v c++ >/dev/null; then
    echo "cpu_kind.sh: a compiler is still on the PATH" >&2; exit 1
  fi
  "$@"
  ;;
haswell)
  command -v qemu-x86_64 >/dev/null || { echo "cpu_kind.sh: qemu-x86_64 not found; install Debian's qemu-user (make setup-dev does)" >&2; exit 1; }
  [ "$(id -u)" = 0 ] || { echo "cpu_kind.sh: the haswell kind needs root (a private mount namespace for /proc/cpuinfo)" >&2; exit 1; }
  if [ -z "${CPU_KIND_INNER:-}" ]; then
    exec env CPU_KIND_INNER=1 unshare -m "$0" haswell "$@"
  fi
  # Haswell-v4 without the CPUID bits qemu's TCG cannot emulate (none matters to computing; qemu would warn
  # about each, for every thread the kernel starts, into the notebooks' outputs).
  cpu=Haswell-v4,-pcid,-x2apic,-tsc-deadline,-invpcid,-spec-ctrl
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  # /proc/cpuinfo as a Haswell laptop shows it: the host's, without AVX-512, VNNI and AMX flags.
  sed -E 's/ (avx512[a-z0-9_]*|avx_vnni[a-z0-9_]*|amx[a-z0-9_]*)//g' /proc/cpuinfo > "$work/cpuinfo"
  mount --bind "$work/cpuinfo" /proc/cpuinfo
  # Inductor's C++ as a Haswell laptop's compiler builds it: the compiler runs natively (subprocesses of an
  # emulated process are not emulated) and Inductor's default -march=native would target the host's AVX-512,
  # which the emulated kernel cannot run (SIGILL). TORCHINDUCTOR_CPP_MARCH is torch._inductor.config.cpp.march.
  # A fresh, empty cache: kernels that a native run built for the host must not be loaded.
  mkdir -p "$work/inductor"
  export TORCHINDUCTOR_CPP_MARCH=haswell TORCHINDUCTOR_CACHE_DIR="$work/inductor"
  mkdir -p "$work/jupyter/kernels/qhelpers-haswell"
  cat > "$work/jupyter/kernels/qhelpers-haswell/kernel.json" <<EOF
{"argv": ["qemu-x86_64", "-cpu", "$cpu", "$venv_py", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
 "display_name": "Python 3 (emulated Haswell: AVX2, no VNNI)", "language": "python",
 "env": {"QHELPERS_EMULATED": "1"}}
EOF
  export JUPYTER_PATH="$work/jupyter${JUPYTER_PATH:+:$JUPYTER_PATH}"
  export NBVAL_KERNEL=qhelpers-haswell
  export QEMU_PY="qemu-x86_64 -cpu $cpu $venv_py"
  export QHELPERS_EMULATED=1
  "$@"
  ;;
*)
  echo "cpu_kind.sh: unknown kind '$kind' (haswell, qnnpack, nocc, native)" >&2; exit 2
  ;;
esac
