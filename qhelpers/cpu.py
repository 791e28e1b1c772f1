"""What this CPU does with INT8, decided by measuring the kernels, not by reading flags.

Introduced in notebooks/00_start_here.ipynb.

Two facts change what a notebook shows on a learner's laptop:

* whether an engine's quantized Linear/conv adds pairs of u8 x s8 products in
  16 bits and saturates (the AVX2 path of FBGEMM and oneDNN on a CPU without
  AVX512-VNNI) or computes the exact 32-bit sum (VNNI, qnnpack on ARM);
* whether ``torch.compile`` can build code here (Inductor's CPU backend needs
  a C++ compiler: most Windows laptops have none).

Both are measured by running the library: a one-output quantized Linear whose
64 activation and weight codes are all at their maximum (an exact answer of
64.0 that 16-bit pair sums cannot reach), and a one-line compiled function.
CPU flags (``/proc/cpuinfo``) are read only as a label for the report: they
do not exist on macOS or Windows, qemu passes the host's through, and
Intel's AVX-VNNI (12th gen and later, no AVX-512) is a flag FBGEMM does not
use.
"""

from __future__ import annotations

import functools
import os
import platform
import warnings
from dataclasses import asdict, dataclass, field
from typing import Optional

import torch

__all__ = ["CpuFacts", "cpu_facts", "int8_pairs_saturate", "compile_available", "emulated", "cpu_flags_label", "is_x86_machine"]

PROBE_K = 64  # inputs of the probe Linear: 64 x 255 x 127 overflows 16-bit pair sums many times over
_ENGINES_PROBED = ("x86", "fbgemm", "onednn", "qnnpack")
_X86_ONLY_ENGINES = ("x86", "fbgemm")  # FBGEMM kernels: x86 CPUs only (torch lists them on aarch64 Linux too)


def is_x86_machine() -> bool:
    """True on an x86-64 (or 32-bit x86) CPU, from ``platform.machine()``."""
    return platform.machine().lower() in ("x86_64", "amd64", "i386", "i686", "x86")


def _probe_output(engine: str, k: int = PROBE_K) -> float:
    """The output of a one-output quantized Linear with all codes at their maximum, on ``engine``.

    Activations: quint8 codes 255 (scale 1/255, zero point 0, so every input is
    1.0); weights: qint8 codes 127 (scale 1/127, so every weight is 1.0); the
    exact output is ``k`` (64.0). A kernel that adds pairs of u8 x s8 products
    in 16 bits saturates each pair at 32,767 instead of 2 x 255 x 127 = 64,770
    and returns about ``k * 32767 / 64770`` (32.4 for k = 64).
    """
    from torch.ao.nn.quantized import Linear as QuantizedLinear

    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = engine
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the quantized-dtype deprecation: this is a probe, not a lesson
            layer = QuantizedLinear(k, 1, dtype=torch.qint8)
            w = torch.quantize_per_tensor(torch.ones(1, k), 1 / 127, 0, torch.qint8)
            layer.set_weight_bias(w, None)
            layer.scale, layer.zero_point = 0.5, 0  # outputs 0..127.5 in steps of 0.5: 64.0 is exact
            x = torch.quantize_per_tensor(torch.ones(1, k), 1 / 255, 0, torch.quint8)
            with torch.no_grad():
                return float(layer(x).dequantize().item())
    finally:
        torch.backends.quantized.engine = previous


@functools.lru_cache(maxsize=None)
def int8_pairs_saturate(engine: str) -> Optional[bool]:
    """True when ``engine``'s INT8 kernels saturate u8 x s8 pair sums at 16 bits on this CPU (measured).

    False when they compute the exact sum; None when the engine is not in
    ``torch.backends.quantized.supported_engines`` or cannot run here (x86
    engines on an ARM CPU). Measured once per process with a 64-input
    quantized Linear (``_probe_output``); takes about a millisecond natively.

    Introduced in notebooks/00_start_here.ipynb.
    """
    if not isinstance(engine, str):
        raise TypeError(f"engine must be a string such as 'x86' or 'qnnpack', got {type(engine).__name__}")
    if engine not in torch.backends.quantized.supported_engines:
        return None
    if engine in _X86_ONLY_ENGINES and not is_x86_machine():
        return None
    try:
        out = _probe_output(engine)
    except Exception:  # e.g. "unknown architecture" for fbgemm on aarch64
        return None
    if abs(out - PROBE_K) < 0.5:
        return False
    return True


_COMPILE_RESULT: dict[str, object] = {}


def compile_available() -> tuple[bool, str]:
    """``(True, "")`` when ``torch.compile`` can build and run a one-line function here; else ``(False, reason)``.

    Inductor's CPU backend writes C++ and calls the system compiler (``cc``/``g++``
    on Linux, Xcode's clang on macOS, MSVC on Windows); without one, the first
    compiled call fails. Probed once per process (a few seconds the first time,
    less with a warm Inductor cache); the reason is the first line of the error.

    Introduced in notebooks/00_start_here.ipynb.
    """
    if "ok" not in _COMPILE_RESULT:
        try:
            fn = torch.compile(lambda t: t * 2 + 1, backend="inductor")
            out = fn(torch.arange(4.0))
            ok = bool(torch.equal(out, torch.arange(4.0) * 2 + 1))
            reason = "" if ok else "the compiled function returned a wrong result"
        except Exception as exc:  # InductorError, CalledProcessError, RuntimeError(no compiler) ...
            ok = False
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            reason = f"{type(exc).__name__}: {first[:200]}"
        _COMPILE_RESULT.update(ok=ok, reason=reason)
    return bool(_COMPILE_RESULT["ok"]), str(_COMPILE_RESULT["reason"])


def emulated() -> bool:
    """True when the course runs under a CPU emulator (``QHELPERS_EMULATED=1``, set by ``make test-cpus``).

    Timings under an emulator mean nothing: notebooks skip their timing work
    then (saying so in one line), never a code path that computes a lesson.

    Introduced in notebooks/00_start_here.ipynb.
    """
    return os.environ.get("QHELPERS_EMULATED", "0") not in ("", "0", "false", "False")


def cpu_flags_label() -> str:
    """A label from the CPU flags, for the report only: ``'avx512_vnni'``, ``'avx_vnni'``, ``'none'``, or ``'unknown'``.

    Read from ``/proc/cpuinfo`` (Linux only). FBGEMM and oneDNN's INT8 paths
    use AVX512-VNNI; Intel's AVX-VNNI (``avx_vnni``, 12th gen Core and later
    without AVX-512) is not used by them, so this label never decides
    anything: ``int8_pairs_saturate`` does.
    """
    try:
        text = open("/proc/cpuinfo", encoding="utf-8").read()
    except OSError:
        return "unknown"
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            flags = set(line.split(":", 1)[1].split())
            if "avx512_vnni" in flags:
                return "avx512_vnni"
            if "avx_vnni" in flags:
                return "avx_vnni"
            return "none"
    return "unknown"


@dataclass(frozen=True)
class CpuFacts:
    """What the course needs to know about this CPU; every field but the labels is measured.

    ``saturating_engines``: engines whose INT8 kernels saturate 16-bit pair sums
    (measured by ``int8_pairs_saturate``); ``exact_engines``: those that do not.
    ``compile_ok``/``compile_reason``: ``compile_available()`` (None when not
    probed). ``isa`` is the vector ISA torch dispatches its float kernels to;
    ``flags`` is ``cpu_flags_label()``; ``emulated`` is ``emulated()``.
    """

    machine: str
    isa: str
    engines: tuple
    saturating_engines: tuple
    exact_engines: tuple
    flags: str
    emulated: bool
    compile_ok: Optional[bool] = None
    compile_reason: str = ""
    notes: tuple = field(default_factory=tuple)

    def as_dict(self) -> dict:
        return asdict(self)


def cpu_facts(*, probe_compile: bool = False) -> CpuFacts:
    """Measure what this CPU does with INT8 (and, with ``probe_compile=True``, whether ``torch.compile`` builds).

    Introduced in notebooks/00_start_here.ipynb.
    """
    if not isinstance(probe_compile, bool):
        raise TypeError(f"probe_compile must be True or False, got {probe_compile!r}")
    engines = tuple(e for e in torch.backends.quantized.supported_engines if e != "none")
    results = {e: int8_pairs_saturate(e) for e in engines if e in _ENGINES_PROBED}
    compile_ok, reason = compile_available() if probe_compile else (None, "")
    return CpuFacts(
        machine=platform.machine(),
        isa=torch.backends.cpu.get_cpu_capability(),
        engines=engines,
        saturating_engines=tuple(e for e, s in results.items() if s is True),
        exact_engines=tuple(e for e, s in results.items() if s is False),
        flags=cpu_flags_label(),
        emulated=emulated(),
        compile_ok=compile_ok,
        compile_reason=reason,
    )
