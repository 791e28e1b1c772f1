"""The roofline of a linear layer: this machine's memory bandwidth and matmul rate, a layer's bytes and FLOPs.

Introduced in notebooks/06_linear_layers_and_transformers.ipynb.

``measure_bandwidth`` and ``measure_matmul_rate`` measure the machine; ``linear_cost`` counts a layer's bytes and
FLOPs (``LinearCost``); ``roofline_ms`` is the time the slower of the two limits allows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.utils.benchmark as tbench

from .helper_trap import _UsedHelper  # noqa: F401  (the trap linear_checks swaps into this module's helpers raises it)

__all__ = [
    "measure_bandwidth",
    "measure_matmul_rate",
    "LinearCost",
    "linear_cost",
    "roofline_ms",
]


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
