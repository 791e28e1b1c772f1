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
#            natively (subprocesses of an emulated process are not emulated), so cc/c++/gcc/g++ on
#            the PATH are wrappers that turn Inductor's -march=native into -march=haswell: the code a
#            Haswell laptop's compiler would build (with the host's AVX-512 the kernel dies of SIGILL).
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
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  # /proc/cpuinfo as a Haswell laptop shows it: the host's, without AVX-512, VNNI and AMX flags.
  sed -E 's/ (avx512[a-z0-9_]*|avx_vnni[a-z0-9_]*|amx[a-z0-9_]*)//g' /proc/cpuinfo > "$work/cpuinfo"
  mount --bind "$work/cpuinfo" /proc/cpuinfo
  # The compiler as on a Haswell laptop: -march=native/-mtune=native would target the host's CPU.
  mkdir -p "$work/bin"
  for cc in cc c++ gcc g++; do
    real=$(command -v "$cc" || true)
    [ -n "$real" ] || continue
    cat > "$work/bin/$cc" <<EOF
#!/bin/sh
n=\$#
while [ \$n -gt 0 ]; do
  a=\$1; shift; n=\$((n - 1))
  case "\$a" in -march=native) a=-march=haswell ;; -mtune=native) a=-mtune=haswell ;; esac
  set -- "\$@" "\$a"
done
exec $real "\$@"
EOF
    chmod +x "$work/bin/$cc"
  done
  export PATH="$work/bin:$PATH"
  mkdir -p "$work/jupyter/kernels/qhelpers-haswell"
  cat > "$work/jupyter/kernels/qhelpers-haswell/kernel.json" <<EOF
{"argv": ["qemu-x86_64", "-cpu", "Haswell-v4", "$venv_py", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
 "display_name": "Python 3 (emulated Haswell: AVX2, no VNNI)", "language": "python",
 "env": {"QHELPERS_EMULATED": "1"}}
EOF
  export JUPYTER_PATH="$work/jupyter${JUPYTER_PATH:+:$JUPYTER_PATH}"
  export NBVAL_KERNEL=qhelpers-haswell
  export QEMU_PY="qemu-x86_64 -cpu Haswell-v4 $venv_py"
  export QHELPERS_EMULATED=1
  # qemu prints two lines about CPUID bits TCG cannot emulate; they are harmless.
  "$@"
  ;;
*)
  echo "cpu_kind.sh: unknown kind '$kind' (haswell, qnnpack, nocc, native)" >&2; exit 2
  ;;
esac
