"""Latency measured properly: fixed threads, warm-up, at least ten timed runs, median and spread.

Introduced in notebooks/01_manual_tensor_quantization.ipynb; the benchmark
command of notebooks/02 (``make bench``) builds on it.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import Callable, Optional

import torch

__all__ = ["Latency", "measure_latency", "MIN_RUNS"]

MIN_RUNS = 10  # timed samples per measurement, whatever min_run_time says: a median needs several of them

_QUANTIZED_NAMESPACES = ("torch.ao.nn.quantized", "torch.ao.nn.intrinsic.quantized", "torch.nn.quantized")
_NOT_QUANTIZED = ("FloatFunctional", "FXFloatFunctional", "LinearPackedParams", "EmbeddingPackedParams")


def _has_quantized_modules(fn: object) -> Optional[bool]:
    """True/False for an ``nn.Module`` (does it contain a converted quantized module?), None for a plain function."""
    if isinstance(fn, torch.jit.ScriptModule) or not isinstance(fn, torch.nn.Module):
        return None
    return any(
        type(m).__module__.startswith(_QUANTIZED_NAMESPACES) and type(m).__name__ not in _NOT_QUANTIZED for m in fn.modules()
    )


@dataclass(frozen=True)
class Latency:
    """One latency measurement; times in milliseconds.

    ``median_ms`` and ``iqr_ms`` (interquartile range: 75th minus 25th
    percentile) are over ``runs`` timed samples, each the mean of
    ``calls_per_run`` back-to-back calls, measured with ``threads`` threads
    after ``warmup`` untimed calls with the same thread count. The last
    fields say what was measured: ``module`` (the model's class name, or the
    function's name), ``quantized`` (whether the model contains quantized
    modules; None for a function), ``input_shape`` and ``engine`` (the
    quantized engine active during the timing).
    """

    median_ms: float
    iqr_ms: float
    runs: int
    threads: int
    label: str = ""
    min_ms: float = float("nan")
    calls_per_run: int = 1
    warmup: int = 0
    module: str = ""
    quantized: Optional[bool] = None
    input_shape: tuple = ()
    engine: str = ""

    def __str__(self) -> str:
        return (
            f"{self.label + ': ' if self.label else ''}{self.median_ms:.3f} ms median "
            f"(IQR {self.iqr_ms:.3f} ms, {self.runs} runs, {self.threads} threads)"
        )

    def as_dict(self) -> dict:
        return asdict(self)


def _quartiles(values: list[float]) -> tuple[float, float, float]:
    q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, median, q3


def measure_latency(
    fn: Callable | torch.nn.Module,
    example: torch.Tensor,
    threads: int = 1,
    min_run_time: float = 0.5,
    warmup: int = 3,
    label: str = "",
    *,
    min_runs: int = MIN_RUNS,
) -> Latency:
    """Median latency of ``fn(example)``, with its spread, at a fixed thread count.

    * ``threads`` is set for the warm-up and the timing alike (and restored
      after): a warm-up at another thread count would leave the thread pool
      and caches in another state than the one being timed.
    * ``warmup`` calls run first and are not counted (they pay for
      allocation, weight packing and lazy initialisation; a quantized model
      measured only on its first call can look slower than the float one).
    * Then timed samples are taken until both ``min_run_time`` seconds have
      been spent AND at least ``min_runs`` samples (default 10) exist, so a
      call of 100 ms still gets ten samples and a real IQR. Fast calls are
      grouped ``calls_per_run`` to a sample so that one sample lasts at least
      about 1 ms (the timer's own overhead stays negligible).

    Runs under ``torch.inference_mode()``; times with ``time.perf_counter``
    (the clock ``torch.utils.benchmark`` uses on the CPU).

    Introduced in notebooks/02_pretrained_quantized_models.ipynb.
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable (a model or function), got {type(fn).__name__}")
    if not isinstance(example, torch.Tensor):
        raise TypeError(f"example must be a torch.Tensor, got {type(example).__name__}")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive int, got {threads!r}")
    if isinstance(min_run_time, bool) or not isinstance(min_run_time, (int, float)) or min_run_time <= 0:
        raise ValueError(f"min_run_time must be positive seconds, got {min_run_time!r}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be a non-negative int (untimed calls before timing), got {warmup!r}")
    if isinstance(min_runs, bool) or not isinstance(min_runs, int) or min_runs < 2:
        raise ValueError(f"min_runs must be an int >= 2 (a median and an IQR need several samples), got {min_runs!r}")
    if not isinstance(label, str):
        raise TypeError(f"label must be a string, got {type(label).__name__}")

    saved_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            for _ in range(warmup):
                fn(example)
            start = time.perf_counter()
            fn(example)  # one more untimed call, to size the samples
            one_call = max(time.perf_counter() - start, 1e-9)
            calls = max(1, min(10_000, int(1e-3 / one_call)))
            samples: list[float] = []
            spent = 0.0
            while spent < min_run_time or len(samples) < min_runs:
                start = time.perf_counter()
                for _ in range(calls):
                    fn(example)
                elapsed = time.perf_counter() - start
                spent += elapsed
                samples.append(elapsed / calls)
    finally:
        torch.set_num_threads(saved_threads)
    q1, median, q3 = _quartiles(samples)
    module = type(fn).__name__ if isinstance(fn, torch.nn.Module) else getattr(fn, "__name__", type(fn).__name__)
    return Latency(
        median_ms=median * 1e3,
        iqr_ms=(q3 - q1) * 1e3,
        runs=len(samples),
        threads=threads,
        label=label,
        min_ms=min(samples) * 1e3,
        calls_per_run=calls,
        warmup=warmup,
        module=module,
        quantized=_has_quantized_modules(fn),
        input_shape=tuple(example.shape),
        engine=torch.backends.quantized.engine,
    )
