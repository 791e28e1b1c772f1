"""Latency measured properly: fixed threads, warm-up, many runs, median and spread.

Introduced in notebooks/01_manual_tensor_quantization.ipynb; the benchmark
command of notebooks/02 builds on it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import torch
import torch.utils.benchmark as tbench

__all__ = ["Latency", "measure_latency"]


@dataclass(frozen=True)
class Latency:
    """One latency measurement; times in milliseconds."""

    median_ms: float
    iqr_ms: float
    runs: int
    threads: int
    label: str = ""

    def __str__(self) -> str:
        return f"{self.label + ': ' if self.label else ''}{self.median_ms:.3f} ms median (IQR {self.iqr_ms:.3f} ms, {self.runs} runs, {self.threads} threads)"

    def as_dict(self) -> dict:
        return asdict(self)


def measure_latency(
    fn: Callable | torch.nn.Module,
    example: torch.Tensor,
    threads: int = 1,
    min_run_time: float = 0.5,
    warmup: int = 3,
    label: str = "",
) -> Latency:
    """Median latency of ``fn(example)`` with ``torch.utils.benchmark``.

    The first calls are run as warm-up and not counted (they pay for
    allocation, weight packing and lazy initialisation; a quantized model
    measured only on its first call can look slower than the float one).
    ``threads`` is fixed for the measurement; ``min_run_time`` is the total
    seconds of timed runs.
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable (a model or function), got {type(fn).__name__}")
    if not isinstance(example, torch.Tensor):
        raise TypeError(f"example must be a torch.Tensor, got {type(example).__name__}")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive int, got {threads!r}")
    if min_run_time <= 0:
        raise ValueError(f"min_run_time must be positive seconds, got {min_run_time!r}")
    with torch.inference_mode():
        for _ in range(max(0, warmup)):
            fn(example)
        timer = tbench.Timer(stmt="fn(x)", globals={"fn": fn, "x": example}, num_threads=threads, label=label)
        m = timer.blocked_autorange(min_run_time=min_run_time)
    return Latency(median_ms=m.median * 1e3, iqr_ms=m.iqr * 1e3, runs=len(m.times), threads=threads, label=label)
