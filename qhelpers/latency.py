"""Latency measured with ``torch.utils.benchmark``: fixed threads, warm-up, at least ten timed samples, median and spread.

Introduced in notebooks/01_manual_tensor_quantization.ipynb; the benchmark
command of notebooks/02 (``make bench``) builds on it.
"""

from __future__ import annotations

import hashlib
import timeit
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional

import torch
from torch.utils import benchmark

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


def _feed(h: "hashlib._Hash", value: object) -> None:
    if isinstance(value, torch.Tensor) and type(value) is not torch.Tensor and not isinstance(value, torch.nn.Parameter):
        # a tensor subclass (torchao's quantized weights): its inner tensors, which hold the values; .numpy() refuses it
        h.update(str((type(value).__name__, tuple(value.shape), value.dtype)).encode())
        flatten = getattr(value, "__tensor_flatten__", None)
        if flatten is not None:
            for name in flatten()[0]:
                _feed(h, getattr(value, name))
        return
    if isinstance(value, torch.Tensor):
        t = value.detach()
        if t.is_quantized:
            h.update(str((t.qscheme(), tuple(t.shape), t.dtype)).encode())
            if t.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric):
                h.update(str((t.q_scale(), t.q_zero_point())).encode())
            else:
                _feed(h, t.q_per_channel_scales())
                _feed(h, t.q_per_channel_zero_points())
            t = t.int_repr()
        h.update(str((tuple(t.shape), t.dtype)).encode())
        h.update(t.contiguous().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())  # raw bytes: bfloat16 has no numpy dtype
    elif isinstance(value, (tuple, list)):
        for v in value:
            _feed(h, v)
    else:
        h.update(repr(value).encode())


def weights_digest(model: torch.nn.Module) -> str:
    """A short hash of ``model.state_dict()``: the same values (integer codes, scales, zero points, float tensors) give the same digest.

    It identifies which weights a model holds, not how they are packed: a state dict loaded with another
    engine active gives the same digest. Used by ``Latency`` to record which quantized model was timed.

    Introduced in notebooks/02_pretrained_quantized_models.ipynb.
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return state_dict_digest(model.state_dict())


def state_dict_digest(state: dict) -> str:
    """``weights_digest`` of a state dict (a model's, or one loaded from a file)."""
    h = hashlib.blake2b(digest_size=8)
    for key, value in state.items():
        h.update(key.encode())
        _feed(h, value)
    return h.hexdigest()


def input_digest(example: torch.Tensor) -> str:
    """A short hash of a tensor's shape, dtype and values: which input a ``Latency`` timed (the same batch gives the
    same digest; a batch of the same shape with other values, such as ``torch.zeros_like(x)``, another)."""
    if not isinstance(example, torch.Tensor):
        raise TypeError(f"example must be a torch.Tensor, got {type(example).__name__}")
    h = hashlib.blake2b(digest_size=8)
    _feed(h, example)
    return h.hexdigest()


def packing_digest(model: torch.nn.Module) -> str:
    """A short hash of which kernels hold ``model``'s packed INT8 weights: FBGEMM's, QNNPACK's or oneDNN's.

    A converted model packs each quantized Conv2d and Linear for the engine active when it was converted or its
    state dict was loaded, and torch exposes no name for it. Each implementation is told apart by what it does
    with an input it refuses (signed ``qint8`` activations of the right shape: FBGEMM's and QNNPACK's kernels name
    themselves as they refuse it, oneDNN's Linear runs it), which runs no arithmetic that matters, so two models
    packed alike give the same digest, and the same weights packed for another engine give another. "" for a model
    without packed weights (float, or torchao's tensor subclasses). Used by ``Latency`` to record how the timed
    weights were packed.
    """
    import warnings

    h = hashlib.blake2b(digest_size=8)
    found = False
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, module in model.named_modules():
            packed = getattr(module, "_packed_params", None)
            if packed is None or isinstance(packed, torch.nn.Module):  # a Linear's holder: its own module follows
                continue
            found = True
            h.update(name.encode())
            h.update(_packed_kernel(packed).encode())
    return h.hexdigest() if found else ""


def _packed_kernel(packed: object) -> str:
    """What the packed weights ``packed`` do with a signed INT8 input of the right shape (see ``packing_digest``)."""
    try:
        weight = packed.unpack()[0]
        if weight.dim() == 2:
            x = torch.quantize_per_tensor(torch.zeros(1, weight.shape[1]), 1.0, 0, torch.qint8)
            torch.ops.quantized.linear(x, packed, 1.0, 0)
        elif weight.dim() == 4 and not packed.transpose():
            groups, (kh, kw), (dh, dw) = packed.groups(), weight.shape[2:], packed.dilation()
            x = torch.quantize_per_tensor(torch.zeros(1, weight.shape[1] * groups, dh * (kh - 1) + 2, dw * (kw - 1) + 2), 1.0, 0, torch.qint8)
            torch.ops.quantized.conv2d(x, packed, 1.0, 0)
        else:  # a transposed or 3-d convolution: not in the course's models, told apart by the shape alone
            return f"not probed: weights of shape {tuple(weight.shape)}"
        return "runs signed INT8 inputs"
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


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
    quantized engine active during the timing), ``weights_digest``
    (``weights_digest(model)`` of a model, float or quantized, "" for a
    function or a ScriptModule: which weights were timed) and ``model_id``
    (``id(model)``, 0 where the digest is "": which object was timed, so that a copy of a model with
    the same weights, perhaps packed for another engine, can be told apart;
    not compared by ``==``) and ``packing`` (``packing_digest(model)`` when it was timed, "" for a model
    without packed INT8 weights: how the timed weights were packed; not compared, not shown) and ``input_digest``
    (``input_digest(example)``: which input values were timed, "" when not recorded; not compared, not shown).
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
    weights_digest: str = ""
    model_id: int = field(default=0, compare=False)
    packing: str = field(default="", compare=False, repr=False)
    input_digest: str = field(default="", compare=False, repr=False)

    def __str__(self) -> str:
        return (
            f"{self.label + ': ' if self.label else ''}{self.median_ms:.3f} ms median "
            f"(IQR {self.iqr_ms:.3f} ms, {self.runs} runs, {self.threads} threads)"
        )

    def as_dict(self) -> dict:
        return asdict(self)


def latency_statistics(measurement: benchmark.Measurement) -> dict:
    """The numbers a ``Latency`` reports from a ``torch.utils.benchmark.Measurement``, in milliseconds.

    ``median_ms`` and ``iqr_ms`` are the Measurement's own ``median`` and ``iqr`` (75th minus 25th
    percentile), computed by ``Measurement._lazy_init`` (torch/utils/benchmark/utils/common.py) with
    ``torch.quantile`` (linear interpolation) over ``Measurement.times``: each raw block time divided by
    ``number_per_run``, i.e. the mean time of one call in that block. ``min_ms`` is the fastest block's
    per-call time, ``runs`` the number of blocks (timed samples), ``calls_per_run`` the calls per block.
    A pure function of the measurement (tested on fixed samples in tests/test_metrics_and_latency.py).
    """
    times = measurement.times
    if not times:
        raise ValueError("the measurement has no timed samples")
    return dict(
        median_ms=measurement.median * 1e3,
        iqr_ms=measurement.iqr * 1e3,
        runs=len(times),
        min_ms=min(times) * 1e3,
        calls_per_run=measurement.number_per_run,
    )


def measure_latency(
    fn: Callable | torch.nn.Module,
    example: torch.Tensor,
    threads: int = 1,
    min_run_time: float = 0.5,
    warmup: int = 3,
    label: str = "",
    *,
    min_runs: int = MIN_RUNS,
    timer: Optional[Callable[[], float]] = None,
) -> Latency:
    """Median latency of ``fn(example)``, with its spread, at a fixed thread count, timed by ``torch.utils.benchmark``.

    What runs, in order, all with ``threads`` threads (``torch.utils.benchmark``'s
    ``set_torch_threads``; the caller's count is restored after) and under
    ``torch.inference_mode()``:

    1. ``warmup`` untimed calls (they pay for allocation, weight packing and lazy initialisation; a
       quantized model measured on its first calls can look slower than the float one). The Timer
       has no warm-up of that kind: ``Timer.blocked_autorange``
       (torch/utils/benchmark/utils/timer.py) only sizes its blocks in ``Timer._estimate_block_size``,
       whose comment says "This also serves as a warmup", but for a call slower than
       ``min_run_time / 1000`` that is ONE call.
    2. One more untimed call, timed with the same clock, to estimate how long one call takes.
    3. ``benchmark.Timer(stmt="fn(example)", num_threads=threads).blocked_autorange(min_run_time=...)``.
       In torch/utils/benchmark/utils/timer.py: ``Timer._estimate_block_size`` tries blocks of 1, 10,
       100, ... calls until a block lasts at least ``min_run_time / 1000`` and the timer's own overhead
       (the median of five empty timings) is at most 1e-4 of it; ``Timer._threaded_measurement_loop``
       then times blocks of that size until their total reaches ``min_run_time``; both run inside
       ``common.set_torch_threads(num_threads)`` (the Timer's own thread setting: its default is 1
       thread, whatever ``torch.get_num_threads()`` says, so it is passed explicitly). The Timer gets
       ``max(min_run_time, (min_runs - 0.5) * one call)`` seconds, so that a call slower than
       ``min_run_time / min_runs`` still gets ``min_runs`` samples; when noise leaves it short of them,
       ``Timer.timeit(block size)`` adds the missing samples (each after its own two-call warm-up) and
       ``Measurement.merge`` joins them.
    4. The statistics are the Measurement's (``latency_statistics``): median and IQR of the per-call
       times of the blocks.

    ``timer`` is the clock: by default ``timeit.default_timer`` (``time.perf_counter``), which is what the
    Timer's own default (``timer`` in torch/utils/benchmark/utils/timer.py) returns after asking
    ``torch.accelerator.is_available()`` on every reading; the course times the CPU, and that question
    would count in the timer's overhead and so in the block size. Tests pass a fake clock. A learner's own project can call ``torch.utils.benchmark.Timer`` directly: this helper adds
    the warm-up, the minimum sample count, and the record of what was measured (``Latency``).

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
    if timer is not None and not callable(timer):
        raise TypeError(f"timer must be a clock (a callable returning seconds), got {type(timer).__name__}")

    clock = timer if timer is not None else timeit.default_timer
    bench = benchmark.Timer(
        stmt="fn(example)", globals={"fn": fn, "example": example}, timer=clock, num_threads=threads, label=label or None
    )
    with benchmark.set_torch_threads(threads), torch.inference_mode():
        for _ in range(warmup):
            fn(example)
        start = clock()
        fn(example)  # one more untimed call, to size the run
        one_call = max(clock() - start, 1e-9)
        measurement = bench.blocked_autorange(min_run_time=max(float(min_run_time), (min_runs - 0.5) * one_call))
        calls = measurement.number_per_run
        if len(measurement.raw_times) < min_runs:
            extra = [bench.timeit(calls) for _ in range(min_runs - len(measurement.raw_times))]
            (measurement,) = benchmark.Measurement.merge([measurement, *extra])
    stats = latency_statistics(measurement)
    stats["calls_per_run"] = calls
    module = type(fn).__name__ if isinstance(fn, torch.nn.Module) else getattr(fn, "__name__", type(fn).__name__)
    quantized = _has_quantized_modules(fn)
    return Latency(
        **stats,
        threads=threads,
        label=label,
        warmup=warmup,
        module=module,
        quantized=quantized,
        input_shape=tuple(example.shape),
        engine=torch.backends.quantized.engine,
        weights_digest=weights_digest(fn) if quantized is not None else "",
        model_id=id(fn) if quantized is not None else 0,
        packing=packing_digest(fn) if quantized else "",
        input_digest=input_digest(example),
    )
