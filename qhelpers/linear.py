"""Linear layers quantized the way transformers are: per group, weight-only, 4-bit, and SmoothQuant.

Introduced in notebooks/06_linear_layers_and_transformers.ipynb.

* ``group_qparams`` / ``group_quantize`` / ``group_dequantize``: one scale per
  group of ``group_size`` consecutive input features of each output row of a
  weight (out, in). Built on ``qhelpers.quantmath`` (the groups are treated as
  the "channels" of a (out * in / group_size, group_size) view), and equal to
  torchao's ``choose_qparams_affine`` / ``quantize_affine`` with
  ``block_size=(1, group_size)``, which the tests check.
* ``pack_int4`` / ``unpack_int4``: two signed 4-bit codes in one ``uint8``.
* ``weight_only_linear``: float activations, integer weights, dequantize then
  matmul (W8A16 / W4A16).
* the roofline: ``measure_bandwidth``, ``measure_matmul_rate``,
  ``linear_cost`` and ``roofline_ms``; timing a large layer as a model uses
  it (``LinearStack``, ``RoundRobin``, ``copies_beyond_cache``, ``layer_runner``), timing several
  in interleaved rounds for paired ratios (``interleaved_times``, ``Interleaved``: a ratio only outside
  the spread) and ``torchao_int8_dynamic_cpu_path``.
* activation outliers and SmoothQuant: ``activation_channel_max``,
  ``smoothquant_scales``, ``smooth_layernorm_linears``, ``w8a8_linear``.
* self-checks of the notebook's exercises.
"""

from __future__ import annotations

import contextlib
import copy
import math
import re
import statistics
import time
from dataclasses import dataclass
from typing import Any, Iterable, Optional, Sequence

import torch
import torch.nn.functional as F
import torch.utils.benchmark as tbench
from torch import nn

from .checks import NotFilledIn, WrongAnswer, _blank_safe, as_number, not_filled, report
from .quantmath import (
    QParams,
    _check_float_tensor,
    dequantize,
    qparams_from_tensor,
    quantize,
)

__all__ = [
    "GroupQParams",
    "group_qparams",
    "group_quantize",
    "group_dequantize",
    "group_fake_quantize",
    "pack_int4",
    "unpack_int4",
    "weight_only_linear",
    "weight_storage_bytes",
    "measure_bandwidth",
    "DRAM_BYTES",
    "LinearStack",
    "RoundRobin",
    "copies_beyond_cache",
    "torchao_int8_dynamic_cpu_path",
    "count_aten_ops",
    "compile_frozen",
    "inductor_summary",
    "layer_runner",
    "Interleaved",
    "interleaved_times",
    "measure_matmul_rate",
    "LinearCost",
    "linear_cost",
    "roofline_ms",
    "activation_channel_max",
    "smoothquant_scales",
    "smooth_layernorm_linears",
    "w8a8_linear",
    "simulate_w8a8",
    "check_int4_pack",
    "check_int4_weight_bytes",
    "check_roofline_speedup",
    "check_smoothquant_scales",
]


# --------------------------------------------------------------------------- per-group quantization


@dataclass(frozen=True)
class GroupQParams:
    """Per-group quantization parameters of a 2-D weight of ``shape`` (out, in).

    ``qparams`` is per-channel (axis 0) over the (out * in / group_size, group_size)
    view in which each row is one group; ``scale``/``zero_point`` show them as
    (out, in / group_size).
    """

    qparams: QParams
    group_size: int
    shape: tuple[int, int]

    @property
    def scale(self) -> torch.Tensor:
        return self.qparams.scale.reshape(self.shape[0], -1)

    @property
    def zero_point(self) -> torch.Tensor:
        return self.qparams.zero_point.reshape(self.shape[0], -1)

    @property
    def bits(self) -> int:
        return self.qparams.bits

    @property
    def groups(self) -> int:
        """Number of groups (= number of scales)."""
        return self.qparams.scale.numel()


def _check_weight_2d(w: object, name: str = "weight") -> torch.Tensor:
    w = _check_float_tensor(w, name)
    if w.dim() != 2:
        raise ValueError(f"{name} must be 2-D (out_features, in_features), got shape {tuple(w.shape)}")
    return w


def _check_group_size(group_size: object, in_features: int) -> int:
    if isinstance(group_size, bool) or not isinstance(group_size, int):
        raise TypeError(f"group_size must be an int, got {group_size!r} ({type(group_size).__name__})")
    if group_size < 1 or in_features % group_size:
        divisors = [d for d in (16, 32, 64, 128, 256) if in_features % d == 0] or [d for d in range(2, min(in_features, 256) + 1) if in_features % d == 0]
        raise ValueError(
            f"group_size must divide in_features={in_features}, got {group_size}; "
            f"divisors include {divisors[:6]} (group_size=in_features is per-channel)"
        )
    return group_size


def group_qparams(
    weight: torch.Tensor, *, group_size: int, bits: int = 8, signed: bool = True, scheme: str = "symmetric"
) -> GroupQParams:
    """Scales (and zero points) for groups of ``group_size`` consecutive input features of ``weight`` (out, in).

    ``group_size == in_features`` is per-channel quantization; smaller groups
    follow the weight's local range more closely and cost more scales.
    ``bits=4, signed=True`` gives the int4 codes -8..7 (symmetric: the scale is
    ``max|w| / 7.5``, notebook 01's ``(qmax - qmin) / 2``, so both ends are used).

    Introduced in notebooks/06_linear_layers_and_transformers.ipynb.
    """
    w = _check_weight_2d(weight)
    g = _check_group_size(group_size, w.shape[1])
    qp = qparams_from_tensor(w.detach().reshape(-1, g), bits, signed, scheme, axis=0)
    return GroupQParams(qp, g, (int(w.shape[0]), int(w.shape[1])))


def _check_gqp(gqp: object, shape: tuple[int, ...], name: str) -> GroupQParams:
    if not isinstance(gqp, GroupQParams):
        raise TypeError(f"gqp must be a GroupQParams (from group_qparams), got {type(gqp).__name__}")
    if tuple(shape) != gqp.shape:
        raise ValueError(f"{name} has shape {tuple(shape)} but the GroupQParams were made for {gqp.shape}")
    return gqp


def group_quantize(weight: torch.Tensor, gqp: GroupQParams) -> torch.Tensor:
    """Float weight (out, in) -> integer codes (out, in) of ``gqp``'s dtype (``torch.int8`` also for 4 bits).

    Introduced in notebooks/06_linear_layers_and_transformers.ipynb.
    """
    w = _check_weight_2d(weight)
    _check_gqp(gqp, tuple(w.shape), "weight")
    return quantize(w.reshape(-1, gqp.group_size), gqp.qparams).reshape(gqp.shape)


def group_dequantize(codes: torch.Tensor, gqp: GroupQParams) -> torch.Tensor:
    """Integer codes (out, in) -> float32 weight: ``(q - zero_point) * scale`` of each code's group.

    Introduced in notebooks/06_linear_layers_and_transformers.ipynb.
    """
    if not isinstance(codes, torch.Tensor):
        raise TypeError(f"codes must be a torch.Tensor of integer codes, got {type(codes).__name__}")
    _check_gqp(gqp, tuple(codes.shape), "codes")
    return dequantize(codes.reshape(-1, gqp.group_size), gqp.qparams).reshape(gqp.shape)


def group_fake_quantize(weight: torch.Tensor, *, group_size: int, bits: int = 8, scheme: str = "symmetric") -> torch.Tensor:
    """Quantize per group then dequantize: the float weight the integer grid can hold.

    Introduced in notebooks/06_linear_layers_and_transformers.ipynb.
    """
    gqp = group_qparams(weight, group_size=group_size, bits=bits, scheme=scheme)
    return group_dequantize(group_quantize(weight, gqp), gqp)


# --------------------------------------------------------------------------- int4 packing


def pack_int4(codes: torch.Tensor) -> torch.Tensor:
    """Signed 4-bit codes (-8..7, any integer dtype, last dimension even) -> ``uint8``, two codes per byte.

    Element ``2i`` goes to the low nibble and ``2i + 1`` to the high nibble of
    byte ``i``; each code is stored as its 4-bit two's complement (``code & 0xF``).

    Introduced in notebooks/06_linear_layers_and_transformers.ipynb.
    """
    if not isinstance(codes, torch.Tensor):
        raise TypeError(f"codes must be a torch.Tensor, got {type(codes).__name__}")
    if codes.is_floating_point() or codes.is_quantized or codes.dtype == torch.bool:
        raise TypeError(f"codes must be a plain integer tensor, got dtype {codes.dtype}")
    if codes.dim() == 0 or codes.shape[-1] % 2:
        raise ValueError(f"the last dimension of codes must be even (two codes per byte), got shape {tuple(codes.shape)}")
    lo, hi = (int(codes.min()), int(codes.max())) if codes.numel() else (0, 0)
    if lo < -8 or hi > 7:
        raise ValueError(f"int4 codes must lie in -8..7, got values from {lo} to {hi}")
    nibbles = codes.to(torch.int16) & 0xF
    return (nibbles[..., 0::2] | (nibbles[..., 1::2] << 4)).to(torch.uint8)


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    """``uint8`` bytes from ``pack_int4`` -> signed 4-bit codes as ``torch.int8`` (last dimension doubled).

    Introduced in notebooks/06_linear_layers_and_transformers.ipynb.
    """
    if not isinstance(packed, torch.Tensor):
        raise TypeError(f"packed must be a torch.Tensor, got {type(packed).__name__}")
    if packed.dtype != torch.uint8:
        raise TypeError(f"packed must be torch.uint8 (from pack_int4), got dtype {packed.dtype}")
    p = packed.to(torch.int16)
    lo, hi = p & 0xF, p >> 4
    both = torch.stack([lo, hi], dim=-1).reshape(*packed.shape[:-1], -1)
    return ((both ^ 8) - 8).to(torch.int8)  # sign-extend: 0..7 stay, 8..15 become -8..-1


# --------------------------------------------------------------------------- weight-only linear


def weight_only_linear(x: torch.Tensor, codes: torch.Tensor, gqp: GroupQParams, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``y = x @ dequantize(codes).T + bias``: float activations, integer weights (W8A16 / W4A16).

    ``codes`` (out, in) as integer codes, or ``uint8`` (out, in / 2) packed by
    ``pack_int4`` for 4-bit ``gqp``. The weight is dequantized to float first;
    a fused kernel does the same inside the matmul, never writing the float
    weight to memory.

    Introduced in notebooks/06_linear_layers_and_transformers.ipynb.
    """
    if isinstance(codes, torch.Tensor) and codes.dtype == torch.uint8 and gqp.bits <= 4:
        codes = unpack_int4(codes)
    w = group_dequantize(codes, gqp)
    x = _check_float_tensor(x, "x")
    if x.shape[-1] != w.shape[1]:
        raise ValueError(f"x has {x.shape[-1]} features but the weight expects {w.shape[1]}")
    return F.linear(x, w.to(x.dtype), bias)


def weight_storage_bytes(out_features: int, in_features: int, *, bits: int, group_size: Optional[int] = None, scale_bytes: int = 4) -> int:
    """Bytes of a quantized weight: ``bits``-bit codes plus one ``scale_bytes`` scale per group (per row if ``group_size`` is None)."""
    for name, v in (("out_features", out_features), ("in_features", in_features), ("bits", bits)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    g = in_features if group_size is None else _check_group_size(group_size, in_features)
    return math.ceil(out_features * in_features * bits / 8) + out_features * (in_features // g) * scale_bytes


# --------------------------------------------------------------------------- the roofline


def _clock_for(threads: int) -> Any:
    """The clock a measurement on ``threads`` threads uses: the thread's CPU time for one thread (``_thread_clock``), else the wall clock."""
    return _thread_clock() if threads == 1 else time.perf_counter


def _thread_clock() -> Any:
    """The CPU time of the calling thread (``time.thread_time``) where it is fine-grained, else ``time.perf_counter``."""
    return time.thread_time if time.get_clock_info("thread_time").resolution <= 1e-6 else time.perf_counter


def measure_bandwidth(*, megabytes: int = 64, threads: int = 1, min_run_time: float = 0.3) -> float:
    """Memory bandwidth in GB/s: the rate ``torch.sum`` reads a float32 tensor far larger than the caches.

    A read-only stream, like a weight read by a matmul at batch 1. With ``threads=1`` it is one core's
    rate; all cores together reach more. It is a reference rate, not a ceiling: another one-thread kernel
    (a matrix-vector product, for one) can read faster than ``torch.sum`` does. With one thread the time is
    that thread's CPU time (as in ``interleaved_times``: a busy machine's waits for the core are left out).

    Introduced in notebooks/06_linear_layers_and_transformers.ipynb.
    """
    if isinstance(megabytes, bool) or not isinstance(megabytes, int) or megabytes < 8:
        raise ValueError(f"megabytes must be an int >= 8 (larger than the caches), got {megabytes!r}")
    x = torch.ones(megabytes * (1 << 20) // 4)
    timer = tbench.Timer(stmt="torch.sum(x)", globals={"x": x, "torch": torch}, num_threads=threads, timer=_clock_for(threads))
    seconds = timer.blocked_autorange(min_run_time=min_run_time).median
    return x.numel() * 4 / seconds / 1e9


def measure_matmul_rate(*, n: int = 512, threads: int = 1, dtype: torch.dtype = torch.float32, min_run_time: float = 0.3) -> float:
    """Matmul rate in GFLOP/s (GOP/s for int8) of an (n, n) @ (n, n) product (``2 n^3`` operations).

    ``dtype=torch.int8`` times ``torch._int_mm`` (int8 x int8 -> int32, the
    kernel behind torchao's dynamic INT8 on CPU); float dtypes time ``torch.mm``. With one thread the
    time is that thread's CPU time (as in ``interleaved_times``).

    Introduced in notebooks/06_linear_layers_and_transformers.ipynb.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 16 or n % 8:
        raise ValueError(f"n must be a multiple of 8 and >= 16, got {n!r}")
    if dtype == torch.int8:
        a = torch.randint(-128, 128, (n, n), dtype=torch.int8)
        b = torch.randint(-128, 128, (n, n), dtype=torch.int8)
        stmt = "torch._int_mm(a, b)"
    elif dtype in (torch.float32, torch.bfloat16, torch.float16):
        a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
        stmt = "torch.mm(a, b)"
    else:
        raise ValueError(f"dtype must be torch.float32, torch.bfloat16, torch.float16 or torch.int8, got {dtype}")
    timer = tbench.Timer(stmt=stmt, globals={"a": a, "b": b, "torch": torch}, num_threads=threads, timer=_clock_for(threads))
    seconds = timer.blocked_autorange(min_run_time=min_run_time).median
    return 2 * n**3 / seconds / 1e9


@dataclass(frozen=True)
class LinearCost:
    """FLOPs and bytes moved by one ``nn.Linear`` call on ``batch`` rows."""

    flops: float
    weight_bytes: float
    activation_bytes: float

    @property
    def bytes(self) -> float:
        return self.weight_bytes + self.activation_bytes

    @property
    def intensity(self) -> float:
        """Arithmetic intensity, FLOPs per byte moved."""
        return self.flops / self.bytes


def linear_cost(
    in_features: int, out_features: int, batch: int, *, weight_bits: int = 32, activation_bits: int = 32, scale_bits: float = 0.0
) -> LinearCost:
    """``2 * batch * in * out`` FLOPs; the weight read once, the input read and the output written once.

    ``scale_bits``: what the weight's scales and zero points add per weight, in bits (e.g. a bfloat16 scale and a
    bfloat16 zero point per group of 32: ``2 * 16 / 32 = 1``); they are read with the weight.

    Introduced in notebooks/06_linear_layers_and_transformers.ipynb.
    """
    for name, v in (("in_features", in_features), ("out_features", out_features), ("batch", batch)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    for name, v in (("weight_bits", weight_bits), ("activation_bits", activation_bits)):
        if v not in (4, 8, 16, 32):
            raise ValueError(f"{name} must be 4, 8, 16 or 32, got {v!r}")
    if isinstance(scale_bits, bool) or not isinstance(scale_bits, (int, float)) or not 0 <= scale_bits <= 32:
        raise ValueError(f"scale_bits must be a number of bits per weight from 0 to 32, got {scale_bits!r}")
    return LinearCost(
        flops=2.0 * batch * in_features * out_features,
        weight_bytes=in_features * out_features * (weight_bits + scale_bits) / 8,
        activation_bytes=batch * (in_features + out_features) * activation_bits / 8,
    )


def roofline_ms(cost: LinearCost, *, gflops: float, gbps: float) -> float:
    """The roofline's time in ms: the slower of computing the FLOPs at ``gflops`` and moving the bytes at ``gbps``.

    Introduced in notebooks/06_linear_layers_and_transformers.ipynb.
    """
    if gflops <= 0 or gbps <= 0:
        raise ValueError(f"gflops and gbps must be positive, got {gflops!r} and {gbps!r}")
    return 1e3 * max(cost.flops / (gflops * 1e9), cost.bytes / (gbps * 1e9))


# --------------------------------------------------------------------------- timing a large layer honestly

DRAM_BYTES = 256 * 2**20  # larger than the last-level cache of any laptop CPU


class LinearStack(nn.Module):
    """``copies`` of one layer, all called on the same input; the outputs are stacked to (copies, *out).

    A stand-in for the many layers of a real model: together their weights are larger than the CPU's
    caches, so every call reads each weight from memory, as an LLM decoding a token does. Timing one
    layer in a loop instead lets a weight that fits in the last-level cache stay there between calls.
    Divide a stack's time by ``len(stack.layers)`` for the time of one layer.

    Introduced in notebooks/06_linear_layers_and_transformers.ipynb.
    """

    def __init__(self, layer: nn.Module, copies: int) -> None:
        super().__init__()
        if isinstance(copies, bool) or not isinstance(copies, int) or copies < 1:
            raise ValueError(f"copies must be a positive int, got {copies!r}")
        self.layers = nn.ModuleList([copy.deepcopy(layer) for _ in range(copies)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([layer(x) for layer in self.layers])


class RoundRobin:
    """A callable that runs the next of ``layers`` at each call: eager timing across copies, one layer per call.

    Introduced in notebooks/06_linear_layers_and_transformers.ipynb.
    """

    def __init__(self, layers: Sequence[nn.Module]) -> None:
        if not layers:
            raise ValueError("layers is empty")
        self.layers, self._next = list(layers), 0
        self.__name__ = type(self.layers[0]).__name__

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        layer = self.layers[self._next]
        self._next = (self._next + 1) % len(self.layers)
        return layer(x)


def copies_beyond_cache(weight_bytes: float, *, total_bytes: int = DRAM_BYTES) -> int:
    """How many copies of a weight of ``weight_bytes`` bytes add up to at least ``total_bytes`` (at least 1).

    Introduced in notebooks/06_linear_layers_and_transformers.ipynb.
    """
    if not weight_bytes > 0:
        raise ValueError(f"weight_bytes must be positive, got {weight_bytes!r}")
    return max(1, math.ceil(total_bytes / weight_bytes))


def compile_frozen(module: nn.Module, example: torch.Tensor) -> tuple[Any, str]:
    """``torch.compile(module)`` built with Inductor's ``freezing`` on (weights become constants), for ``example``.

    The setting is scoped (``torch._inductor.config.patch``), so nothing global changes; the compiled
    program is built by one call on ``example`` and reused for inputs of that shape. Returns the compiled
    module and the Python code Inductor generated for it (read it with ``inductor_summary``). Raises what
    ``torch.compile`` raises where it cannot build (no C++ compiler: check ``qh.compile_available()``).
    It clears torch.compile's caches (``torch._dynamo.reset()``, which ``run_and_get_code`` calls too):
    a program compiled before is rebuilt at its next call, then *without* freezing. To keep several
    compiled programs alive together, build them with ``layer_runner``.

    Introduced in notebooks/06_linear_layers_and_transformers.ipynb.
    """
    from torch._inductor.utils import run_and_get_code

    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be an nn.Module, got {type(module).__name__}")
    torch._dynamo.reset()
    compiled = torch.compile(module)
    with torch._inductor.config.patch(freezing=True), torch.inference_mode():
        _, codes = run_and_get_code(compiled, example)
    return compiled, "\n".join(codes)


_FROZEN = re.compile(r"^\s*_frozen_param\d+ = None\s+# device\(type='\w+'\) (torch\.\w+) (\([\d, ]*\))")
_CALL = re.compile(r"\b(extern_kernels\.\w+|torch\.ops\.\w+\.\w+(?:\.default)?|cpp_fused_\w+)\(")


def inductor_summary(code: str) -> dict:
    """What a compiled program calls and which constants it holds, read from Inductor's generated code.

    Returns ``{"calls": [...], "constants": [(dtype, shape), ...]}``: ``calls`` are the kernels in call
    order (``extern_kernels.X`` and ``torch.ops.ns.X`` library kernels, ``cpp_fused_*`` for the C++
    Inductor wrote itself, shown as ``generated C++``); ``constants`` are the frozen tensors (weights,
    and what freezing computed from them ahead of time).

    Introduced in notebooks/06_linear_layers_and_transformers.ipynb.
    """
    if not isinstance(code, str):
        raise TypeError(f"code must be the generated code (a str), got {type(code).__name__}")
    calls, constants = [], []
    for line in code.splitlines():
        m = _FROZEN.match(line)
        if m:
            constants.append((m.group(1), m.group(2)))
            continue
        if line.lstrip().startswith(("def ", "from ", "import ", "#", "async_compile")):
            continue
        for name in _CALL.findall(line):
            name = "generated C++" if name.startswith("cpp_fused") else name.removesuffix(".default")
            if not calls or calls[-1] != name:
                calls.append(name)
    return {"calls": calls, "constants": constants}


def layer_runner(layer: nn.Module, example: torch.Tensor, *, copies: int = 1, compiled: bool = False) -> tuple[Any, int]:
    """What ``interleaved_times`` times for one layer: ``(fn, layers per call)``.

    Eager: ``fn`` is a ``RoundRobin`` over ``copies`` deep copies of ``layer`` (one layer per call; with
    ``copies=1`` the layer itself). Compiled: ``fn`` is a ``LinearStack`` of the copies, compiled and
    built on ``example`` with Inductor's ``freezing`` on (scoped, as in ``compile_frozen``) at one thread,
    the thread count ``interleaved_times`` times at (another count would rebuild it), and one call runs
    ``copies`` layers. Unlike ``compile_frozen`` it leaves torch.compile's caches alone, so the
    programs of several runners stay as they were built while they are timed together; call
    ``torch._dynamo.reset()`` when done with them.

    Introduced in notebooks/06_linear_layers_and_transformers.ipynb.
    """
    if isinstance(copies, bool) or not isinstance(copies, int) or copies < 1:
        raise ValueError(f"copies must be a positive int, got {copies!r}")
    if compiled:
        fn = torch.compile(LinearStack(layer, copies))
        saved_threads = torch.get_num_threads()
        torch.set_num_threads(1)  # the thread count is part of what a compiled program is built for
        try:
            with torch._inductor.config.patch(freezing=True), torch.inference_mode():
                fn(example)
        finally:
            torch.set_num_threads(saved_threads)
        return fn, copies
    layers = [layer] if copies == 1 else [copy.deepcopy(layer) for _ in range(copies)]
    return RoundRobin(layers), 1


def _quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    if len(values) == 1:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


@dataclass(frozen=True)
class Interleaved:
    """Times of several callables measured together in rounds (``interleaved_times``); milliseconds.

    ``samples_ms[name]`` holds one per-call time per round, in round order: round ``r`` of every name was
    measured within the same few seconds, so ``ratio`` divides them round by round (a paired ratio) and a
    slow spell of a shared machine touches both sides of it.

    Introduced in notebooks/06_linear_layers_and_transformers.ipynb.
    """

    samples_ms: dict
    calls_per_sample: dict
    rounds: int

    def _get(self, name: str) -> list:
        if name not in self.samples_ms:
            raise KeyError(f"{name!r} was not timed; timed: {sorted(self.samples_ms)}")
        return self.samples_ms[name]

    def median_ms(self, name: str) -> float:
        return _quartiles(self._get(name))[1]

    def iqr_ms(self, name: str) -> float:
        q1, _, q3 = _quartiles(self._get(name))
        return q3 - q1

    def ratio(self, base: str, name: str) -> tuple[float, float, float]:
        """``base`` time over ``name`` time, round by round: ``(median, 25th, 75th percentile)`` (above 1: faster than base)."""
        return _quartiles([b / a for a, b in zip(self._get(name), self._get(base))])

    def speedup(self, base: str, name: str) -> str:
        """The median paired ratio as "1.85x", or "within spread" when the middle half of the ratios includes 1."""
        q1, median, q3 = self.ratio(base, name)
        return "within spread" if q1 <= 1.0 <= q3 else f"{median:.2f}x"


def interleaved_times(fns: dict, example: torch.Tensor, *, rounds: int = 10, warmup: int = 2, sample_ms: float = 20.0,
                      layers_per_call: Optional[dict] = None, clock: Any = None) -> Interleaved:
    """Time several callables on ``example`` in interleaved rounds, on one thread, so that their ratios are paired.

    Each callable first gets ``warmup`` untimed calls, then one more timed call that sizes its samples
    (a sample is the mean of enough back-to-back calls to last about ``sample_ms``). Then each of
    ``rounds`` rounds times one sample of every callable, in an order that rotates from round to round.
    ``layers_per_call[name]`` divides that name's times (a compiled ``LinearStack`` runs several layers
    per call). Runs under ``torch.inference_mode()`` on one thread (the count is restored after).

    ``clock`` (default: the CPU time of the calling thread, ``time.thread_time``, where it counts in
    microseconds or finer, as on Linux and macOS; otherwise ``time.perf_counter``) times the samples. With
    one thread every kernel runs in the calling thread, so its CPU time is the call's time on a core, while
    the moments a busy machine gives that core to another program are left out: on a shared machine a
    wall-clock sample of a long call holds such waits and one of a short call often does not, which would
    bias their ratio.

    Introduced in notebooks/06_linear_layers_and_transformers.ipynb.
    """
    if not isinstance(fns, dict) or not fns or not all(callable(f) for f in fns.values()):
        raise ValueError(f"fns must be a non-empty dict of name -> callable, got {fns!r}")
    for arg, value, least in (("rounds", rounds, 2), ("warmup", warmup, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"{arg} must be an int >= {least}, got {value!r}")
    if not sample_ms > 0:
        raise ValueError(f"sample_ms must be positive, got {sample_ms!r}")
    clock = clock or _thread_clock()
    if not callable(clock):
        raise TypeError(f"clock must be a function returning seconds, got {type(clock).__name__}")
    per_call = {n: 1 for n in fns} | dict(layers_per_call or {})
    if set(per_call) != set(fns):
        raise ValueError(f"layers_per_call names {sorted(set(per_call) - set(fns))} that fns does not hold")
    names = list(fns)
    calls: dict = {}
    samples: dict = {n: [] for n in names}
    saved_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            for n in names:
                for _ in range(warmup):
                    fns[n](example)
                start = clock()
                fns[n](example)
                one = clock() - start
                calls[n] = max(1, min(1000, math.ceil(sample_ms / 1e3 / max(one, 1e-9))))
            for r in range(rounds):
                k = r % len(names)
                for n in names[k:] + names[:k]:
                    start = clock()
                    for _ in range(calls[n]):
                        fns[n](example)
                    samples[n].append((clock() - start) / calls[n] / per_call[n] * 1e3)
    finally:
        torch.set_num_threads(saved_threads)
    return Interleaved(samples_ms=samples, calls_per_sample=calls, rounds=rounds)


def count_aten_ops(fn: Any, example: torch.Tensor) -> int:
    """How many aten operations one call ``fn(example)`` dispatches (under ``torch.inference_mode``).

    Each one pays the dispatcher's fixed cost (microseconds), which decides the time of a model whose
    layers are tiny. Counted with a ``TorchDispatchMode``, below any tensor subclass, so a torchao
    config's quantize/rescale steps are counted one by one.

    Introduced in notebooks/06_linear_layers_and_transformers.ipynb.
    """
    from torch.utils._python_dispatch import TorchDispatchMode

    if not callable(fn):
        raise TypeError(f"fn must be callable (a model or function), got {type(fn).__name__}")

    class _Count(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.n += 1
            return func(*args, **(kwargs or {}))

    with torch.inference_mode(), _Count() as counter:
        fn(example)
    return counter.n


def torchao_int8_dynamic_cpu_path() -> str:
    """Which integer matmul torchao's INT8 dynamic config runs on this CPU, by torchao's own test.

    torchao/kernel/intmm.py ``_int_scaled_matmul_cpu``: with AVX512-VNNI and without AMX it shifts the
    activations to uint8 (``"u8s8"``), calls ``torch._int_mm`` and subtracts ``128 * (sum of each output's
    int8 weights)`` (a row of the (out, in) weight), a sum it computes on every call; otherwise it calls ``torch._int_mm`` on int8 x int8
    (``"s8s8"``). Both give exact integer results.

    Introduced in notebooks/06_linear_layers_and_transformers.ipynb.
    """
    from torchao.utils import (
        _cpu_is_amx_tile_supported,
        _cpu_is_vnni_supported,
        torch_version_at_least,
    )

    u8s8 = not _cpu_is_amx_tile_supported() and _cpu_is_vnni_supported() and torch_version_at_least("2.12.0.dev")
    return "u8s8" if u8s8 else "s8s8"


# --------------------------------------------------------------------------- outliers and SmoothQuant


@torch.no_grad()
def activation_channel_max(model: nn.Module, batches: Iterable, modules: dict[str, nn.Module]) -> dict[str, torch.Tensor]:
    """``max |x_j|`` over every token of every batch, for each input channel ``j`` of each module in ``modules``.

    ``modules`` maps a name to a submodule of ``model`` (e.g. a Linear);
    ``batches`` yields inputs or (inputs, labels). Returns {name: (in_features,)}.

    Introduced in notebooks/06_linear_layers_and_transformers.ipynb.
    """
    if not modules:
        raise ValueError("modules is empty; give {name: submodule} for the layers whose inputs to measure")
    found: dict[str, torch.Tensor] = {}

    def hook(name: str):
        def fn(_mod: nn.Module, args: tuple) -> None:
            x = args[0].detach().abs().reshape(-1, args[0].shape[-1]).amax(dim=0)
            found[name] = x if name not in found else torch.maximum(found[name], x)

        return fn

    handles = [m.register_forward_pre_hook(hook(n)) for n, m in modules.items()]
    try:
        seen = 0
        for batch in batches:
            model(batch[0] if isinstance(batch, (tuple, list)) else batch)
            seen += 1
    finally:
        for h in handles:
            h.remove()
    if seen == 0:
        raise ValueError("batches yielded nothing")
    missing = [n for n in modules if n not in found]
    if missing:
        raise ValueError(f"modules {missing} were never called by the model")
    return found


def smoothquant_scales(act_max: torch.Tensor, weight_max: torch.Tensor, *, alpha: float = 0.5, eps: float = 1e-5) -> torch.Tensor:
    """SmoothQuant's per-channel factors ``s_j = max|X_j|^alpha / max|W_j|^(1 - alpha)`` (Xiao et al. 2023).

    Dividing the activations' channel j by ``s_j`` and multiplying the weight's
    input column j by ``s_j`` leaves ``X W^T`` unchanged and moves the difficulty
    from the activations to the weights. ``alpha=1`` (``s_j = max|X_j|``) moves all of the activations'
    spread onto the weights; ``alpha=0`` (``s_j = 1 / max|W_j|``) is not "no change": it flattens the
    weight columns and moves their spread onto the activations.

    Introduced in notebooks/06_linear_layers_and_transformers.ipynb.
    """
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    a, w = torch.as_tensor(act_max).float(), torch.as_tensor(weight_max).float()
    if a.shape != w.shape or a.dim() != 1:
        raise ValueError(f"act_max and weight_max must be 1-D of the same length, got {tuple(a.shape)} and {tuple(w.shape)}")
    return a.clamp(min=eps).pow(alpha) / w.clamp(min=eps).pow(1.0 - alpha)


@torch.no_grad()
def smooth_layernorm_linears(norm: nn.LayerNorm, linears: Sequence[nn.Linear], scales: torch.Tensor) -> None:
    """Fold SmoothQuant ``scales`` in place: LayerNorm's weight and bias divided by ``s``, each Linear's input columns multiplied by ``s``.

    The float output of ``linear(norm(x))`` is unchanged (up to rounding); every
    Linear that reads ``norm``'s output must be in ``linears``.

    Introduced in notebooks/06_linear_layers_and_transformers.ipynb.
    """
    if not isinstance(norm, nn.LayerNorm) or norm.weight is None:
        raise TypeError(f"norm must be an nn.LayerNorm with an affine weight, got {type(norm).__name__}")
    s = torch.as_tensor(scales).float()
    if s.shape != norm.weight.shape:
        raise ValueError(f"scales must have shape {tuple(norm.weight.shape)}, got {tuple(s.shape)}")
    if not (s > 0).all():
        raise ValueError("scales must be positive")
    for lin in linears:
        if not isinstance(lin, nn.Linear) or lin.in_features != s.numel():
            raise ValueError(f"each of linears must be an nn.Linear with in_features={s.numel()}, got {lin!r}")
    norm.weight.div_(s)
    if norm.bias is not None:
        norm.bias.div_(s)
    for lin in linears:
        lin.weight.mul_(s)


class _W8A8Linear(nn.Module):
    """An ``nn.Linear`` run through ``w8a8_linear`` (used by ``simulate_w8a8``)."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.linear = linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return w8a8_linear(x, self.linear)


def simulate_w8a8(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose every ``nn.Linear`` runs as ``w8a8_linear`` (8-bit activations with one scale
    per tensor, chosen per call; 8-bit per-channel weights); ``model`` is left unchanged.

    Introduced in notebooks/06_linear_layers_and_transformers.ipynb.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    sim = copy.deepcopy(model)
    targets = [(name, mod) for name, mod in sim.named_modules() if isinstance(mod, nn.Linear)]
    if not targets:
        raise ValueError("model has no nn.Linear to simulate in W8A8")
    for name, mod in targets:
        if name == "":
            return _W8A8Linear(mod)
        parent_name, _, child = name.rpartition(".")
        setattr(sim.get_submodule(parent_name) if parent_name else sim, child, _W8A8Linear(mod))
    return sim.eval()


def w8a8_linear(x: torch.Tensor, linear: nn.Linear) -> torch.Tensor:
    """``linear(x)`` with 8-bit activations (one symmetric scale for the whole tensor, computed from ``x``
    itself: per-tensor and dynamic, so the scale, and each row's result, depend on every row of ``x``, the
    whole batch the model is called with; no calibrated static scale is simulated) and 8-bit weights
    (symmetric, per output channel), simulated in float (fake quantization)."""
    if not isinstance(linear, nn.Linear):
        raise TypeError(f"linear must be an nn.Linear, got {type(linear).__name__}")
    x = _check_float_tensor(x, "x").detach()
    x_qp = qparams_from_tensor(x, 8, True, "symmetric")
    w = linear.weight.detach()
    w_qp = qparams_from_tensor(w, 8, True, "symmetric", axis=0)
    return F.linear(dequantize(quantize(x, x_qp), x_qp), dequantize(quantize(w, w_qp), w_qp), linear.bias)


# --------------------------------------------------------------------------- self-checks


class _UsedHelper(Exception):
    """Raised by a stand-in for a ``qhelpers`` function that an exercise asks the learner not to call."""


def _trap(*_args: Any, **_kwargs: Any) -> Any:
    """The code a forbidden helper runs while a check calls the learner's function."""
    raise _UsedHelper()


# The helpers an exercise asks the learner not to call, and the ones that do the same arithmetic.
_SAME_ARITHMETIC = {"weight_storage_bytes": ("weight_storage_bytes", "linear_cost")}


@contextlib.contextmanager
def _forbid_helper(name: str, fn: Any = None):
    """While active, the helper ``qh.<name>`` (and those that do its arithmetic, ``_SAME_ARITHMETIC``) raises
    ``_UsedHelper`` however the learner's function reaches it: the function object's code itself is swapped, so a
    global alias, a closure cell, a default argument, ``functools.partial`` or a container all hit the stand-in.
    ``fn`` (the learner's function) is not needed and kept for the callers' signature.
    """
    helpers = [globals()[n] for n in _SAME_ARITHMETIC.get(name, (name,))]
    saved = [(h, h.__code__) for h in helpers]
    for h in helpers:
        h.__code__ = _trap.__code__
    try:
        yield
    finally:
        for h, code in saved:
            h.__code__ = code


def _learner_function(fn: Any, check_name: str, signature: str) -> Any:
    """``fn`` if it is a function; ``NotFilledIn`` for a blank; ``WrongAnswer`` (a hint) for anything else."""
    if not_filled(fn):
        raise NotFilledIn(check_name)
    if not callable(fn) or isinstance(fn, torch.Tensor):
        raise WrongAnswer(
            check_name,
            f"write a function, e.g. `lambda {signature}: ...`, not a {type(fn).__name__}: "
            "the check runs it on several inputs, not only the one in the task",
        )
    return fn


def _call_learner(fn: Any, check_name: str, forbidden: Optional[str], *args: Any) -> Any:
    """Run the learner's ``fn(*args)`` (with ``qh.<forbidden>`` disabled, if given); failures become ``WrongAnswer`` hints."""
    try:
        with _forbid_helper(forbidden, fn) if forbidden else contextlib.nullcontext():
            return fn(*args)
    except _UsedHelper:
        helpers = " or ".join(f"qh.{n}" for n in _SAME_ARITHMETIC.get(forbidden, (forbidden,)))
        raise WrongAnswer(check_name, f"the task asks you to write the formula yourself, not to call {helpers}") from None
    except Exception as exc:  # noqa: BLE001 (the learner's function failed: say how, never crash the notebook)
        shown = ", ".join(repr(a) if not isinstance(a, torch.Tensor) else f"a tensor of shape {tuple(a.shape)}" for a in args)
        raise WrongAnswer(check_name, f"your function raised {type(exc).__name__} on ({shown}): {exc}") from None


INT4_PAIRS = ((-3, 5), (5, -3), (-8, -1), (7, 7), (0, -8), (-1, 0), (6, -7))


@_blank_safe
def check_int4_pack(pack_byte: Any) -> bool:
    """Exercise: ``pack_byte(low, high)``, the ``uint8`` value (0..255) holding int4 code ``low`` in its low nibble
    and ``high`` in its high nibble, written with bit operations; checked on the pairs in ``INT4_PAIRS``
    (negative low and high codes, both ends of -8..7).

    Introduced in notebooks/06_linear_layers_and_transformers.ipynb.
    """
    name = "pack_byte"
    fn = _learner_function(pack_byte, name, "low, high")
    for low, high in INT4_PAIRS:
        expected = int(pack_int4(torch.tensor([low, high]))[0])
        got = as_number(_call_learner(fn, name, "pack_int4", low, high), name)
        if got == expected:
            continue
        where = f"for codes ({low}, {high}) you return {got:g}, the byte is {expected}"
        if got == (high & 0xF) | ((low & 0xF) << 4):
            return report(name, False, f"{where}: the nibbles are swapped (the first code goes to the low 4 bits)")
        if got < 0 or got > 255 or got != int(got):
            return report(name, False, f"{where}, and {got:g} is not a byte: keep only the low 4 bits of each code (& 0xF) before shifting")
        if got == low + 16 * high:
            return report(name, False, f"{where}: a negative code is stored as its 4-bit two's complement (code & 0xF)")
        return report(name, False, f"{where}: low nibble = first code & 0xF, high nibble = (second code & 0xF) << 4")
    return report(name, True)


# 96 x 4096 at groups of 64: the group size does not divide out_features, so groups counted along the outputs
# give another number (where it divides both, out * (in / g) == in * (out / g))
INT4_BYTES_CASES = ((4096, 4096, 128, 2), (4096, 11008, 64, 2), (1024, 4096, 32, 4), (96, 4096, 64, 2), (256, 1024, 1024, 4))


@_blank_safe
def check_int4_weight_bytes(int4_bytes: Any) -> bool:
    """Exercise: ``int4_bytes(out_features, in_features, group_size, scale_bytes)``, the bytes of a weight stored as
    packed int4 codes (two per byte) plus one ``scale_bytes`` scale per group; checked on ``INT4_BYTES_CASES``.

    Introduced in notebooks/06_linear_layers_and_transformers.ipynb.
    """
    name = "int4_bytes"
    fn = _learner_function(int4_bytes, name, "out_features, in_features, group_size, scale_bytes")
    for out_f, in_f, g, sb in INT4_BYTES_CASES:
        expected = weight_storage_bytes(out_f, in_f, bits=4, group_size=g, scale_bytes=sb)
        got = as_number(_call_learner(fn, name, "weight_storage_bytes", out_f, in_f, g, sb), name)
        if got == expected:
            continue
        codes, groups = out_f * in_f // 2, out_f * (in_f // g)
        where = f"for {out_f} x {in_f}, groups of {g}, {sb}-byte scales you return {got:g}, the weight takes {expected}"
        hints = [
            (codes, "that counts the codes only; every group also stores its scale"),
            (out_f * in_f + groups * sb, "a 4-bit code takes half a byte once packed, not a whole byte"),
            (codes + out_f * sb, "one scale per group, not one per row: count the groups of each row"),
            (codes + (in_f // g) * sb, "every row has its own groups: out_features * (in_features / group_size) scales"),
            (codes + in_f * (out_f // g) * sb, "a group is group_size consecutive inputs of one row, so each row has "
                                               "in_features / group_size groups: out_features * (in_features / group_size) scales"),
            (codes + groups * (4 if sb != 4 else 2), "each scale takes scale_bytes bytes (2 for float16, 4 for float32)"),
        ]
        for value, hint in hints:
            if got == value:
                return report(name, False, f"{where}: {hint}")
        return report(name, False, f"{where}: add the packed codes' bytes and the scales' bytes")
    return report(name, True)


ROOFLINE_BATCHES = (1, 4, 16, 64, 256)
ROOFLINE_SMALL_LAYER = (1, 16, 16)  # batch, in, out: a layer so small that the activations' bytes count


@_blank_safe
def check_roofline_speedup(
    predicted_speedup: Any, in_features: int, out_features: int, *, weight_bits: int = 8, gflops: float, gbps: float
) -> bool:
    """Exercise (predict first): ``predicted_speedup(batch, in_features, out_features)``, the roofline's speedup of a
    Linear whose weight is stored in ``weight_bits`` (activations float32, a kernel that reads the narrow weight
    directly) over the float32 Linear, within 10 % at each batch of ``ROOFLINE_BATCHES`` on the
    ``in_features`` x ``out_features`` layer (memory-bound, near the ridge, compute-bound) and on the small layer
    of ``ROOFLINE_SMALL_LAYER``, where counting the activations in ``weight_bits`` instead of float32 changes the
    prediction by a third.

    The expected values are computed here from the layer's shape, so the check cell shows no solution code.

    Introduced in notebooks/06_linear_layers_and_transformers.ipynb.
    """
    name = "predicted speedup"
    fn = _learner_function(predicted_speedup, name, "batch, in_features, out_features")
    cases = [(b, in_features, out_features) for b in ROOFLINE_BATCHES] + [ROOFLINE_SMALL_LAYER]

    def roof(case: tuple, bits: int, combine: Any = max, act_bits: int = 32) -> float:
        c = linear_cost(case[1], case[2], case[0], weight_bits=bits, activation_bits=act_bits)
        return combine(c.flops / (gflops * 1e9), c.bytes / (gbps * 1e9))

    expected = {k: roof(k, 32) / roof(k, weight_bits) for k in cases}
    got = {k: as_number(_call_learner(fn, name, None, *k), name) for k in cases}
    wrong = [k for k in cases if abs(got[k] - expected[k]) > 0.1 * expected[k]]
    if not wrong:
        return report(name, True)
    k = wrong[0]
    where = f"at batch {k[0]} on a {k[1]} x {k[2]} layer you predict {got[k]:.3g}, the roofline gives {expected[k]:.3g}"
    byte_ratio = 32 / weight_bits
    if all(abs(got[c] * expected[c] - 1) < 0.1 for c in cases):
        return report(name, False, f"{where}: upside down; speedup = float time / quantized time")
    if all(abs(got[c] - byte_ratio) < 0.1 * byte_ratio for c in cases):
        return report(name, False, f"{where}: the weight bytes shrink {byte_ratio:g}x at every batch, but at large batches "
                                   "the FLOPs decide: the roofline takes the slower of FLOP time and byte time")
    narrow_acts = {c: roof(c, 32) / roof(c, weight_bits, act_bits=weight_bits) for c in cases}
    if all(abs(got[c] - narrow_acts[c]) < 0.02 * narrow_acts[c] for c in cases):
        return report(name, False, f"{where}: the activations' bytes are off: they are float32 here (activation_bits=32), "
                                   f"to be counted, neither in {weight_bits} bits (only the weight is quantized) nor left out")
    first = (1, in_features, out_features)
    if abs(got[first] - 1.0) < 0.05 and expected[first] > 1.3:
        return report(name, False, f"{where}: at batch 1 the layer is limited by memory, not arithmetic: fewer weight bytes help")
    summed = {c: roof(c, 32, lambda a, b: a + b) / roof(c, weight_bits, lambda a, b: a + b) for c in cases}
    if all(abs(got[c] - summed[c]) < 0.02 * summed[c] for c in cases):
        return report(name, False, f"{where}: the roofline's time is the slower of the two (max), not their sum")
    return report(name, False, f"{where}: divide the roofline time of the float layer by that of the quantized one, at each batch")


SMOOTHQUANT_ALPHAS = (0.75, 0.25, 0.6)


@_blank_safe
def check_smoothquant_scales(smooth_scales: Any, act_max: torch.Tensor, weight_max: torch.Tensor) -> bool:
    """Exercise: ``smooth_scales(act_max, weight_max, alpha)``, SmoothQuant's ``s_j = max|X_j|^alpha / max|W_j|^(1 - alpha)``,
    checked at each alpha of ``SMOOTHQUANT_ALPHAS`` (never 0.5, where swapped exponents give the same numbers) on
    ``act_max``/``weight_max`` and on a second, hidden pair.

    Introduced in notebooks/06_linear_layers_and_transformers.ipynb.
    """
    name = "smooth_scales"
    fn = _learner_function(smooth_scales, name, "act_max, weight_max, alpha")
    a0, w0 = torch.as_tensor(act_max).detach().float(), torch.as_tensor(weight_max).detach().float()
    hidden = (torch.tensor([1.0, 50.0, 2.0, 0.5, 8.0]), torch.tensor([0.2, 0.1, 0.4, 0.3, 0.05]))
    for a, w in ((a0, w0), hidden):
        for alpha in SMOOTHQUANT_ALPHAS:
            expected = smoothquant_scales(a, w, alpha=alpha)
            out = _call_learner(fn, name, "smoothquant_scales", a.clone(), w.clone(), alpha)
            s = torch.as_tensor(out).detach().float().reshape(-1)
            if s.shape != expected.shape:
                return report(name, False, f"expected one factor per input channel ({expected.numel()}), got {s.numel()}")
            if torch.allclose(s, expected, rtol=1e-4):
                continue
            where = f"at alpha = {alpha}"
            if torch.allclose(s, 1.0 / expected, rtol=1e-4):
                return report(name, False, f"{where}: upside down; large activation channels need a large s (the activation is divided by s)")
            if torch.allclose(s, smoothquant_scales(a, w, alpha=1.0 - alpha), rtol=1e-4):
                return report(name, False, f"{where}: alpha is the exponent of the activation range, 1 - alpha that of the weight range")
            if torch.allclose(s, smoothquant_scales(a, w, alpha=0.5), rtol=1e-4):
                return report(name, False, f"{where}: your factors do not change with alpha; use the alpha argument")
            return report(name, False, f"{where}: compare your formula with s_j = max|X_j|^alpha / max|W_j|^(1 - alpha)")
    return report(name, True)
