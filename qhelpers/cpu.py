"""What this CPU does with INT8, decided by measuring the kernels, not by reading flags.

Introduced in notebooks/00_start_here.ipynb.

Two facts change what a notebook shows on a learner's laptop:

* whether an engine's quantized Linear/conv adds pairs of u8 x s8 products in
  16 bits and saturates (FBGEMM's and oneDNN's AVX2 and AVX-512 kernels on a
  CPU without AVX512-VNNI) or computes the exact 32-bit sum (AVX512-VNNI, and
  qnnpack on every CPU);
* whether ``torch.compile`` can build code here (Inductor's CPU backend needs
  a C++ compiler: most Windows laptops have none).

Both are measured by running the library: a one-output quantized Linear whose
64 activation and weight codes are all at their maximum, and a 3x3 quantized
Conv2d over 8 channels likewise (exact answers 64.0 and 72.0, which 16-bit
pair sums cannot reach), and a one-line compiled function. The conv probe is
there because the ``x86`` engine sends convs and Linears to different
libraries (convs to oneDNN only on a CPU with AVX512-VNNI, else to FBGEMM;
Linears always to FBGEMM). A third probe, a 3x3 depthwise conv, is reported
apart (``depthwise_pairs_saturate``): FBGEMM's depthwise kernel adds 16-bit
pairs even where its Linear and dense conv are exact. CPU flags (``/proc/cpuinfo``) are read only as a
label for the report: they do not exist on macOS or Windows, qemu passes the
host's through, and Intel's AVX-VNNI (12th gen Core and later, no AVX-512)
is a flag FBGEMM does not use.

The probes hide the deprecation warnings of the quantized dtypes without
using them up: those are shown once per process (``TORCH_WARN_ONCE``), and a
notebook shows them where it teaches them, after it has asked for the facts.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import sys
import warnings
from dataclasses import asdict, dataclass, field
from typing import Iterator, Optional

import torch

__all__ = [
    "CpuFacts",
    "cpu_facts",
    "outputs_kind",
    "int8_pairs_saturate",
    "depthwise_pairs_saturate",
    "depthwise_probe_outputs",
    "depthwise_missed",
    "probe_outputs",
    "compile_available",
    "compile_fix",
    "emulated",
    "cpu_flags_label",
    "is_x86_machine",
]

PROBE_K = 64  # inputs of the probe Linear: 64 x 255 x 127 overflows 16-bit pair sums many times over
CONV_PROBE_CHANNELS = 8  # the probe conv: 3x3 over 8 channels, 72 products per output
DEPTHWISE_PROBE_CHANNELS = (16, 128)  # depthwise probes: DepthwiseNet's width, and one over torch's 100-group oneDNN limit
_ENGINES_PROBED = ("x86", "fbgemm", "onednn", "qnnpack")
_X86_ONLY_ENGINES = ("x86", "fbgemm")  # FBGEMM kernels: x86 CPUs only (torch lists them on aarch64 Linux too)


def is_x86_machine() -> bool:
    """True on an x86-64 (or 32-bit x86) CPU, from ``platform.machine()``.

    Introduced in notebooks/06_linear_layers_and_transformers.ipynb.
    """
    return platform.machine().lower() in ("x86_64", "amd64", "i386", "i686", "x86")


@contextlib.contextmanager
def _stderr_silenced() -> Iterator[None]:
    """Send file descriptor 2 to the null device for the block (torch's C++ operators print warnings there)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no file descriptor 2 (pythonw on Windows): nothing to hide
        yield
        return
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


@contextlib.contextmanager
def _probe_context(engine: str) -> Iterator[None]:
    """Run the block on ``engine``, with torch's warnings hidden but not used up, and restore everything after.

    ``torch.set_warn_always(True)`` makes torch's warn-once messages (the
    deprecation of the quantized dtypes) warn every time instead of marking
    themselves as shown; the Python copies are ignored, and the copies that
    operators called through ``torch.ops`` print straight to stderr are sent
    to the null device.
    """
    previous_engine = torch.backends.quantized.engine
    previous_warn_always = torch.is_warn_always_enabled()
    torch.backends.quantized.engine = engine
    torch.set_warn_always(True)
    try:
        with warnings.catch_warnings(), _stderr_silenced(), torch.no_grad():
            warnings.simplefilter("ignore")
            yield
    finally:
        torch.set_warn_always(previous_warn_always)
        torch.backends.quantized.engine = previous_engine


def _probe_output(engine: str, k: int = PROBE_K) -> float:
    """The output of a one-output quantized Linear with all codes at their maximum, on ``engine``.

    Activations: quint8 codes 255 (scale 1/255, zero point 0, so every input is
    1.0); weights: qint8 codes 127 (scale 1/127, so every weight is 1.0); the
    exact output is ``k`` (64.0). A kernel that adds pairs of u8 x s8 products
    in 16 bits saturates each pair at 32,767 instead of 2 x 255 x 127 = 64,770
    and returns ``k/2 * 32767 / 32385`` (32.4 for k = 64; 32.5 after the
    output's rounding to steps of 0.5).
    """
    from torch.ao.nn.quantized import Linear as QuantizedLinear

    with _probe_context(engine):
        layer = QuantizedLinear(k, 1, dtype=torch.qint8)
        w = torch.quantize_per_tensor(torch.ones(1, k), 1 / 127, 0, torch.qint8)
        layer.set_weight_bias(w, None)
        layer.scale, layer.zero_point = 0.5, 0  # outputs 0..127.5 in steps of 0.5: 64.0 is exact
        x = torch.quantize_per_tensor(torch.ones(1, k), 1 / 255, 0, torch.quint8)
        return float(layer(x).dequantize().item())


def _conv_probe_output(engine: str, channels: int = CONV_PROBE_CHANNELS) -> float:
    """The output of a 3x3 quantized Conv2d over ``channels`` channels, all codes at their maximum, on ``engine``.

    One output position of one output channel; exact answer ``9 * channels``
    (72.0). Saturated 16-bit pair sums give 36.5 (measured under
    ``qemu-x86_64 -cpu Haswell-v4`` on ``x86``, ``fbgemm`` and ``onednn``).
    """
    from torch.ao.nn.quantized import Conv2d as QuantizedConv2d

    with _probe_context(engine):
        conv = QuantizedConv2d(channels, 1, 3)
        w = torch.quantize_per_tensor(torch.ones(1, channels, 3, 3), 1 / 127, 0, torch.qint8)
        conv.set_weight_bias(w, None)
        conv.scale, conv.zero_point = 0.5, 0
        x = torch.quantize_per_tensor(torch.ones(1, channels, 3, 3), 1 / 255, 0, torch.quint8)
        return float(conv(x).dequantize().flatten()[0].item())


def supported_engines() -> list[str]:
    """Quantized engines this course can use here, e.g. ``['qnnpack', 'onednn', 'x86', 'fbgemm']`` on x86.

    Decided in one place for the whole course: torch's own list, minus
    ``x86``/``fbgemm`` on a CPU that is not x86 (torch before a fix of April
    2026, pytorch/pytorch#180679, listed them on aarch64 Linux, where
    ``convert`` then fails with "unknown architecure"; torch 2.14 registers
    them on x86-64 only). When the environment variable ``QHELPERS_ENGINE``
    names an engine, only that engine is offered: ``QHELPERS_ENGINE=qnnpack``
    gives an x86 machine the course's engine on ARM (ARM Linux builds offer
    ``onednn`` too), not ARM's speed.

    Introduced in notebooks/01_manual_tensor_quantization.ipynb.
    """
    engines = [e for e in torch.backends.quantized.supported_engines if e != "none"]
    if not is_x86_machine():
        engines = [e for e in engines if e not in _X86_ONLY_ENGINES]
    forced = os.environ.get("QHELPERS_ENGINE", "").strip()
    if forced:
        if forced not in engines:
            raise ValueError(f"QHELPERS_ENGINE={forced!r} is not available on this machine; available: {', '.join(engines)}")
        return [forced]
    return engines


def _course_engines() -> list[str]:
    """The engines the course offers here (``supported_engines()``: honours ``QHELPERS_ENGINE``)."""
    try:
        return supported_engines()
    except ValueError:  # QHELPERS_ENGINE names an engine this machine lacks: the doctor reports it
        return [e for e in torch.backends.quantized.supported_engines if e != "none"]


def _depthwise_probe_output(engine: str, channels: int = 16) -> float:
    """The centre output of a 3x3 depthwise quantized Conv2d (stride 1, padding 1, ``channels`` groups), all codes
    at their maximum, on ``engine``: exact answer 9.0 (each output channel sums its own nine products of 1.0).

    With ``channels`` a multiple of 8 the shape is one FBGEMM's depthwise kernel takes (``takeDepthWiseFastPath``
    in FBGEMM's src/FbgemmConv.cc: groups = channels, a multiple of 8, 3x3/5x5/7x7, stride 1 or 2, dilation 1,
    padding (k-1)/2 on every side);
    16-bit pair sums that saturate give 5.0 (four pairs of 32,767/32,385 and one single product, on an output
    scale of 0.5). Symmetric per-tensor weights: on Linux with AVX512-VNNI the ``x86`` engine sends the conv to
    oneDNN when it has at most 100 groups (``should_use_onednn_quant`` in torch's
    ATen/native/quantized/cpu/OnednnUtils.h: Linux only, AVX512-VNNI, groups <= 100, symmetric weights), else to
    FBGEMM.
    """
    from torch.ao.nn.quantized import Conv2d as QuantizedConv2d

    with _probe_context(engine):
        conv = QuantizedConv2d(channels, channels, 3, padding=1, groups=channels)
        w = torch.quantize_per_tensor(torch.ones(channels, 1, 3, 3), 1 / 127, 0, torch.qint8)
        conv.set_weight_bias(w, None)
        conv.scale, conv.zero_point = 0.5, 0
        x = torch.quantize_per_tensor(torch.ones(1, channels, 3, 3), 1 / 255, 0, torch.quint8)
        return float(conv(x).dequantize()[0, 0, 1, 1].item())


@functools.lru_cache(maxsize=None)
def _measure_depthwise(engine: str, channels: int) -> Optional[float]:
    """The depthwise probe's output on ``engine`` at ``channels`` groups (measured once per process), or None."""
    if engine in _X86_ONLY_ENGINES and not is_x86_machine():
        return None
    try:
        return _depthwise_probe_output(engine, channels)
    except Exception:
        return None


def depthwise_probe_outputs(engine: str) -> Optional[dict]:
    """What the depthwise probe returns on ``engine`` at each of ``DEPTHWISE_PROBE_CHANNELS`` groups, e.g.
    ``{16: 9.0, 128: 5.0}`` (``x86`` on Linux with AVX512-VNNI); 9.0 is exact, 5.0 what saturated 16-bit pairs
    give. None when the course does not offer ``engine`` here or the probe cannot run.

    Introduced in notebooks/01_manual_tensor_quantization.ipynb.
    """
    if not isinstance(engine, str):
        raise TypeError(f"engine must be a string such as 'x86' or 'qnnpack', got {type(engine).__name__}")
    if engine not in _course_engines() or engine not in _ENGINES_PROBED:
        return None
    outputs = {c: _measure_depthwise(engine, c) for c in DEPTHWISE_PROBE_CHANNELS}
    return None if any(v is None for v in outputs.values()) else outputs


def depthwise_missed(outputs: Optional[dict]) -> dict:
    """The entries of ``depthwise_probe_outputs``'s answer that miss the exact 9.0 by at least a quarter
    (``{}`` when none do, or for None): ``{128: 5.0}`` for ``x86`` on Linux with AVX512-VNNI."""
    return {c: v for c, v in (outputs or {}).items() if abs(v - 9.0) >= 0.25}


def depthwise_pairs_saturate(engine: str, channels: Optional[int] = None) -> Optional[bool]:
    """True when ``engine``'s INT8 *depthwise* 3x3 convs miss their exact sum on this CPU (measured): at
    ``channels`` groups (16 or 128), or, with ``channels=None``, at either. False when exact; None as for
    ``int8_pairs_saturate``. ``depthwise_probe_outputs`` gives the values (5.0 is what saturated 16-bit pairs give).

    A fact of its own because depthwise convs run on kernels of their own. FBGEMM's depthwise kernel (for the
    shapes it takes: channels a multiple of 8, 3x3/5x5/7x7, stride 1 or 2, dilation 1, padding (k-1)/2) is AVX2 code that adds pairs in 16 bits
    on every x86 CPU, AVX512-VNNI included. Measured: on an AVX512-VNNI CPU under Linux, ``fbgemm`` gives 5.0 at 16
    and 128 groups while its Linear and dense conv are exact, and ``x86`` gives 9.0 at 16 (oneDNN: at most 100
    groups, symmetric weights) and 5.0 at 128 (FBGEMM); off Linux ``x86`` sends every conv to FBGEMM. On an AVX2
    CPU (emulated Haswell) ``x86`` and ``fbgemm`` give 5.0, and ``onednn``'s depthwise conv is exact although its
    Linear and dense conv saturate. ``qnnpack`` is exact everywhere. 16 groups is the course's DepthwiseNet
    (16 and 32 channels, notebooks 03 and 07); 128 stands for the MobileNets' wide depthwise layers.
    """
    if channels is not None and channels not in DEPTHWISE_PROBE_CHANNELS:
        raise ValueError(f"channels must be one of {DEPTHWISE_PROBE_CHANNELS} or None, got {channels!r}")
    outputs = depthwise_probe_outputs(engine)
    if outputs is None:
        return None
    missed = depthwise_missed(outputs)
    return bool(missed) if channels is None else channels in missed


@functools.lru_cache(maxsize=None)
def _measure(engine: str) -> Optional[dict]:
    """``{"linear": ..., "conv": ...}``: both probes' outputs on ``engine`` (measured once per process), or None."""
    if engine in _X86_ONLY_ENGINES and not is_x86_machine():
        return None
    try:
        return {"linear": _probe_output(engine), "conv": _conv_probe_output(engine)}
    except Exception:  # e.g. "unknown architecture" for fbgemm on aarch64
        return None


def probe_outputs(engine: str) -> Optional[dict]:
    """What the two probes return on ``engine``: ``{"linear": 64.0, "conv": 72.0}`` when the sums are exact.

    None when the course does not offer ``engine`` here or it cannot run.
    Saturating kernels give about half (``{"linear": 32.5, "conv": 36.5}`` on
    an AVX2 CPU).
    """
    if not isinstance(engine, str):
        raise TypeError(f"engine must be a string such as 'x86' or 'qnnpack', got {type(engine).__name__}")
    if engine not in _course_engines():
        return None
    return _measure(engine)


def int8_pairs_saturate(engine: str) -> Optional[bool]:
    """True when ``engine``'s INT8 kernels saturate u8 x s8 pair sums at 16 bits on this CPU (measured).

    False when they compute the exact sum; None when the course does not offer
    the engine here (``qh.supported_engines()``: ``x86``/``fbgemm`` on an ARM
    CPU, or an engine hidden by ``QHELPERS_ENGINE``) or it cannot run. True
    when the probe Linear or the probe conv (``probe_outputs``) misses its
    exact answer. Measured once per process; about a millisecond natively.

    Measured: exact for every engine on a CPU with AVX512-VNNI; on an AVX2 CPU
    (qemu's Haswell) ``x86``, ``fbgemm`` and ``onednn`` saturate, ``qnnpack``
    does not. Depthwise convs are not part of this answer: they run on kernels
    of their own, measured by ``depthwise_pairs_saturate`` (FBGEMM's saturates
    on AVX512-VNNI too). So False here does not clear a model's depthwise
    layers: ask ``depthwise_pairs_saturate`` too, or compare the model's
    outputs with ``qnnpack``'s.

    Introduced in notebooks/00_start_here.ipynb.
    """
    outputs = probe_outputs(engine)
    if outputs is None:
        return None
    exact = {"linear": float(PROBE_K), "conv": 9.0 * CONV_PROBE_CHANNELS}
    return any(abs(outputs[name] - exact[name]) >= 0.5 for name in exact)


_COMPILE_RESULT: dict[str, object] = {}


def compile_available() -> tuple[bool, str]:
    """``(True, "")`` when ``torch.compile`` can build and run a one-line function here; else ``(False, reason)``.

    Inductor's CPU backend writes C++ and calls the system compiler (``cc``/``g++``
    on Linux, Xcode's clang on macOS, MSVC on Windows); without one, the first
    compiled call fails. Probed once per process (a few seconds the first time,
    less with a warm Inductor cache); the reason is the first line of the error.
    ``compile_fix()`` says how to install a compiler on this OS.

    Introduced in notebooks/05_beyond_eager_mode.ipynb.
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


def compile_fix(system: Optional[str] = None) -> str:
    """How to get a C++ compiler for ``torch.compile`` on ``system`` (``platform.system()`` by default).

    ``'Windows'``, ``'Darwin'`` (macOS) and ``'Linux'`` get their own line; any
    other name gets the Linux one. The notebooks run without a compiler: they
    skip the compiled rows and say so.
    """
    system = platform.system() if system is None else system
    if not isinstance(system, str):
        raise TypeError(f"system must be a string such as 'Linux', 'Darwin' or 'Windows', got {type(system).__name__}")
    if system == "Windows":
        return ("install the Visual Studio Build Tools with the 'Desktop development with C++' workload, then start "
                "Jupyter from the 'x64 Native Tools Command Prompt' so that cl.exe is on the PATH")
    if system == "Darwin":
        return "run `xcode-select --install` (Apple's command line tools: clang)"
    return "install a C++ compiler: `sudo apt install g++` (Debian, Ubuntu) or `sudo dnf install gcc-c++` (Fedora)"


def emulated() -> bool:
    """True when the course runs under a CPU emulator (``QHELPERS_EMULATED=1``, set by ``scripts/cpu_kind.sh haswell``
    and ``scripts/test_arm.sh``: ``make test-cpus``, ``make test-cpus-ci``, ``make test-arm``).

    Timings under an emulator mean nothing: notebooks skip their timing work
    then (saying so in one line), never a code path that computes a lesson. One
    reference is computed on another kernel there: notebook 06's float LSTM
    reference runs on ATen's kernel, since qemu's Haswell computes oneDNN's
    float LSTM wrongly (measured: docs/REFERENCES.md, notebook 06, section 7).

    Introduced in notebooks/00_start_here.ipynb.
    """
    return os.environ.get("QHELPERS_EMULATED", "0") not in ("", "0", "false", "False")


def cpu_flags_label(path: str = "/proc/cpuinfo") -> str:
    """A label from the CPU flags, for the report only: ``'avx512_vnni'``, ``'avx_vnni'``, ``'none'``, or ``'unknown'``.

    Read from ``path`` (``/proc/cpuinfo``: Linux only; ``'unknown'`` on macOS
    and Windows, and where the file has no flags line). FBGEMM uses AVX512-VNNI only; Intel's AVX-VNNI (``avx_vnni``,
    12th gen Core and later, without AVX-512) is not used by FBGEMM or by the
    ``x86`` engine's dispatch, so this label never decides anything:
    ``int8_pairs_saturate`` does.
    """
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
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
    """What the course needs to know about this CPU; every field but ``flags`` and ``emulated`` is measured.

    ``engines``: what the course offers here (``qh.supported_engines()``);
    ``saturating_engines``: those whose INT8 kernels saturate 16-bit pair sums
    (``int8_pairs_saturate``); ``exact_engines``: those that do not;
    ``probes``: each engine's probe outputs (``probe_outputs``).
    ``depthwise_saturating_engines``: those whose depthwise 3x3 probe misses its sum at 16 or 128 groups
    (``depthwise_pairs_saturate``; on Linux with AVX512-VNNI ``fbgemm`` at both, ``x86`` at 128 only);
    ``depthwise_probes``: each engine's outputs (``depthwise_probe_outputs``).
    ``compile_ok``/``compile_reason``: ``compile_available()`` (None and ""
    when not probed). ``isa`` is the vector ISA torch dispatches its float
    kernels to; ``flags`` is ``cpu_flags_label()``; ``emulated`` is
    ``emulated()``.
    """

    machine: str
    isa: str
    engines: tuple
    saturating_engines: tuple
    exact_engines: tuple
    probes: dict
    flags: str
    emulated: bool
    compile_ok: Optional[bool] = None
    compile_reason: str = ""
    depthwise_saturating_engines: tuple = ()
    depthwise_probes: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def cpu_facts(*, probe_compile: bool = False) -> CpuFacts:
    """Measure what this CPU does with INT8 (and, with ``probe_compile=True``, whether ``torch.compile`` builds).

    Introduced in notebooks/00_start_here.ipynb.
    """
    if not isinstance(probe_compile, bool):
        raise TypeError(f"probe_compile must be True or False, got {probe_compile!r}")
    engines = tuple(_course_engines())
    probes = {e: probe_outputs(e) for e in engines if e in _ENGINES_PROBED}
    saturate = {e: int8_pairs_saturate(e) for e in probes}
    compile_ok, reason = compile_available() if probe_compile else (None, "")
    return CpuFacts(
        machine=platform.machine(),
        isa=torch.backends.cpu.get_cpu_capability(),
        engines=engines,
        saturating_engines=tuple(e for e, s in saturate.items() if s is True),
        exact_engines=tuple(e for e, s in saturate.items() if s is False),
        probes={e: p for e, p in probes.items() if p is not None},
        flags=cpu_flags_label(),
        emulated=emulated(),
        compile_ok=compile_ok,
        compile_reason=reason,
        depthwise_saturating_engines=tuple(e for e in engines if depthwise_pairs_saturate(e) is True),
        depthwise_probes={e: p for e in engines if (p := depthwise_probe_outputs(e)) is not None},
    )


def outputs_kind() -> dict:
    """The facts of this CPU that change what a notebook prints: machine, float ISA, the course's engines, and
    which of them saturate 16-bit pair sums.

    ``python -m qhelpers.notebooks execute`` records this in each notebook's metadata
    (``metadata.qhelpers.outputs_recorded_on``), and the strict nbval run of ``make test`` compares committed
    outputs only on a CPU of the same kind: on another kind (an AVX2 laptop against outputs recorded with
    AVX512-VNNI, say) the kernels compute other numbers and the run checks the notebooks' asserts only, and
    says so.
    """
    facts = cpu_facts()
    return {
        "machine": facts.machine,
        "isa": facts.isa,
        "engines": sorted(facts.engines),
        "saturating_engines": sorted(facts.saturating_engines),
    }
