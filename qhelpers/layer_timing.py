"""Timing a large linear layer as a model uses it, and several in interleaved rounds for paired ratios (notebook 06).

Introduced in notebooks/06_linear_layers_and_transformers.ipynb.

``LinearStack``, ``RoundRobin``, ``copies_beyond_cache`` and ``layer_runner`` time a layer whose weights come
from memory, not from the cache; ``compile_frozen`` and ``inductor_summary`` show what ``torch.compile`` made of
it; ``interleaved_times`` (``Interleaved``: a ratio only outside the spread) times several in turn;
``count_aten_ops`` and ``torchao_int8_dynamic_cpu_path`` tell which kernels run.
"""

from __future__ import annotations

import copy
import math
import re
import statistics
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import torch
from torch import nn

from .roofline import _thread_clock

__all__ = [
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
]


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
