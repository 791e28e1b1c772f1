"""Reproducible setup, an environment report, and the deprecation warnings of torch 2.13+.

Introduced in notebooks/00_start_here.ipynb.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import random
import re
import warnings
from typing import Iterator, Optional

import numpy as np
import torch

__all__ = [
    "setup",
    "env_report",
    "set_engine",
    "check_engine",
    "supported_engines",
    "default_engine",
    "engine",
    "cpu_has_vnni",
    "fast_mode",
    "show_warnings",
    "silence_known_deprecations",
    "KNOWN_DEPRECATIONS",
]



class _DropByMessage(logging.Filter):
    """A logging filter that drops records whose message matches ``pattern`` (and keeps everything else)."""

    def __init__(self, pattern: str) -> None:
        super().__init__()
        self.pattern = re.compile(pattern)

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.search(record.getMessage())


# torch (a CUDA build) logs "No CUDA runtime is found, using CUDA_HOME=..." with a timestamp and process
# id when torch.utils.benchmark or torchao is imported on a machine that has the CUDA toolkit but no GPU.
# The course runs on the CPU on purpose, so the line says nothing to a learner and would differ in every
# run: this drops that line and nothing else.
logging.getLogger("torch.utils.cpp_extension").addFilter(_DropByMessage(r"^No CUDA runtime is found"))

# Exactly the messages the course meets and explains (regexes matched at the start of the message).
# 1. notebooks/01: creating tensors of the quantized dtypes (torch.qint8, torch.quint8, ...),
#    deprecated in torch 2.13 (pytorch/pytorch issue 184982).
# 2. notebooks/03: eager and FX quantization in torch.ao.quantization, to move to torchao (pytorch/ao issue 2259).
KNOWN_DEPRECATIONS: dict[str, tuple[str, type[Warning]]] = {
    "quantized dtypes": (
        r"torch\.quantize_per_tensor, torch\.quantize_per_channel and other quantized tensor creation functions",
        UserWarning,
    ),
    "torch.ao.quantization": (r"torch\.ao\.quantization is deprecated", DeprecationWarning),
    # 3. notebooks/03: observers built with reduce_range=True (the x86/fbgemm default qconfig) suggest
    #    quant_min/quant_max instead.
    "reduce_range": (r"Please use quant_min and quant_max to specify the range for observers", UserWarning),
}


from .cpu import cpu_flags_label, depthwise_missed, depthwise_probe_outputs, emulated, int8_pairs_saturate, supported_engines

# Every eager quantized engine the course knows, in default_engine's order of preference (the CLI's choices too).
ENGINES = ("x86", "qnnpack", "fbgemm", "onednn")


def default_engine() -> str:
    """The engine the course uses on this machine: ``QHELPERS_ENGINE`` if set, else ``x86`` where it exists, else ``qnnpack``.

    Introduced in notebooks/00_start_here.ipynb.
    """
    engines = supported_engines()
    for name in ENGINES:
        if name in engines:
            return name
    raise RuntimeError(f"this torch build offers no quantized engine the course can use (torch lists {engines})")


def check_engine(engine: object) -> str:
    """Return ``engine`` if this machine offers it (see ``supported_engines``); ``TypeError``/``ValueError`` otherwise.

    ``None`` means ``default_engine()``.
    """
    if engine is None:
        return default_engine()
    if not isinstance(engine, str):
        raise TypeError(f"engine must be a string or None, got {type(engine).__name__}")
    if engine not in supported_engines():
        raise ValueError(
            f"quantized engine {engine!r} is unknown or not available on this machine; available: {', '.join(supported_engines())}"
        )
    return engine


def set_engine(engine: Optional[str]) -> str:
    """Select the quantized engine (``'x86'``, ``'fbgemm'``, ``'qnnpack'``, ``'onednn'``; None: ``default_engine()``).

    Introduced in notebooks/02_pretrained_quantized_models.ipynb.
    """
    name = check_engine(engine)
    torch.backends.quantized.engine = name
    return name


@contextlib.contextmanager
def engine(name: Optional[str] = None) -> Iterator[str]:
    """``with qh.engine("qnnpack"): ...`` runs the block on that engine and restores the previous one after.

    Converted models pack their weights for the engine active at ``convert``,
    and quantized add/ReLU/pooling pick their kernel by the engine active when
    they run: run a model inside the same ``with`` block (or with the same
    engine set) as the one that converted it. ``None`` means ``default_engine()``.

    Introduced in notebooks/01_manual_tensor_quantization.ipynb.
    """
    chosen = check_engine(name)
    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = chosen
    try:
        yield chosen
    finally:
        torch.backends.quantized.engine = previous


def cpu_has_vnni() -> Optional[bool]:
    """Deprecated alias: ``not qh.int8_pairs_saturate("x86")``; ask ``int8_pairs_saturate(engine)`` instead.

    True when the ``x86`` engine's INT8 Linear and dense-convolution kernels compute
    exact 32-bit sums here (a CPU with AVX512-VNNI; FBGEMM's depthwise kernel adds
    16-bit pairs on every x86 CPU: ``depthwise_pairs_saturate``), False when they add u8 x s8 products in 16-bit
    pairs and saturate (every other x86 CPU, including Intel's 12th gen and
    later with AVX-VNNI, which FBGEMM does not use), None where the course
    offers no ``x86`` engine (ARM, or ``QHELPERS_ENGINE`` set to another
    engine). Measured by ``qhelpers.cpu``'s probes, never read from CPU flags;
    the name is older than that and is kept only until the notebooks ask
    ``int8_pairs_saturate``.

    Introduced in notebooks/05_beyond_eager_mode.ipynb.
    """
    saturates = int8_pairs_saturate("x86")
    return None if saturates is None else not saturates


def setup(
    seed: int = 0, threads: int = 2, engine: Optional[str] = None, precision: int = 4, deterministic: bool = False
) -> dict:
    """Seed every generator, fix the thread count, choose the quantized engine, set print options.

    Call it once in the first cell of every notebook. ``engine`` selects the
    quantized engine; None (the default) picks ``default_engine()``: ``x86``
    on an x86 CPU, ``qnnpack`` on ARM, or what ``QHELPERS_ENGINE`` says.
    Returns what it set, for printing.

    On the CPU, with seeds and the thread count fixed, the kernels this course
    uses give the same results run after run (nbval checks that every
    notebook reproduces its committed numbers). ``deterministic=True`` also
    calls ``torch.use_deterministic_algorithms(True, warn_only=True)``; it is
    off by default because on the CPU it guards nothing the course uses and
    prints a false alarm for quantized ops ("quantized_resize_cpu_ does not
    have a deterministic implementation") with a timestamp in every run.

    Introduced in notebooks/00_start_here.ipynb.
    """
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive int, got {threads!r}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.set_num_threads(threads)
    torch.set_printoptions(precision=precision, sci_mode=False, linewidth=100)
    np.set_printoptions(precision=precision, suppress=True, linewidth=100)
    set_engine(engine)
    return {"seed": seed, "threads": torch.get_num_threads(), "engine": torch.backends.quantized.engine, "deterministic": deterministic}


def fast_mode() -> bool:
    """True when ``QHELPERS_FAST=1``: long loops run shorter (slow laptops); the code path stays the same.

    Introduced in notebooks/03_post_training_quantization.ipynb.
    """
    return os.environ.get("QHELPERS_FAST", "0") not in ("", "0", "false", "False")


def env_report(print_it: bool = True) -> dict:
    """Versions, quantized engines, the ISA torch uses, what the INT8 kernels do, threads: what results depend on.

    ``cpu_capability`` is the vector ISA of torch's float kernels (``AVX512``
    with or without VNNI, ``AVX2``, ...). ``int8_16bit_pairs`` lists the
    engines whose INT8 kernels add u8 x s8 products in saturating 16-bit pairs
    here, measured by ``qh.int8_pairs_saturate`` (empty with AVX512-VNNI and
    on ARM); ``int8_exact`` the engines that sum in 32 bits;
    ``depthwise_16bit_pairs`` the engines whose depthwise 3x3 probe misses its sum, with the group counts
    (16, 128) where it does (``qh.depthwise_probe_outputs``: ``fbgemm`` even with AVX512-VNNI). ``cpu_flags``
    is a label only (``qh.cpu_flags_label``). ``x86_int8_exact`` says
    whether the ``x86`` engine's Linear and dense-conv probes sum exactly (``qh.cpu_has_vnni``; not a CPU
    flag; its depthwise convs are in ``depthwise_16bit_pairs``). ``emulated``
    is True under a CPU emulator, where timings mean nothing
    (``qh.emulated``). Whether ``torch.compile`` works is
    ``qh.compile_available()`` (not probed here: it takes seconds).

    Introduced in notebooks/00_start_here.ipynb.
    """
    import torchvision

    engines = supported_engines()
    saturates = {e: int8_pairs_saturate(e) for e in engines}
    report = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "machine": platform.machine(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_flags": cpu_flags_label(),
        "quantized_engines": engines,
        "int8_exact": [e for e in engines if saturates[e] is False],
        "int8_16bit_pairs": [e for e in engines if saturates[e] is True],
        "depthwise_16bit_pairs": {e: list(m) for e in engines if (m := depthwise_missed(depthwise_probe_outputs(e)))},
        "x86_int8_exact": cpu_has_vnni(),
        "active_engine": torch.backends.quantized.engine,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "emulated": emulated(),
    }
    if print_it:
        width = max(len(k) for k in report)
        for k, v in report.items():
            print(f"{k:<{width}}  {v}")
    return report


def warning_text(message: object) -> str:
    """A warning's message without the "(Triggered internally at /path/file.cpp:N.)" tail torch adds."""
    return re.sub(r"\s*\(Triggered internally at [^)]*\)", "", str(message)).strip()


@contextlib.contextmanager
def show_warnings() -> Iterator[list[warnings.WarningMessage]]:
    """Record every warning raised inside the block and print each once as ``Category: message``.

    Used where the course first meets a deprecation, so that the warning is
    seen in full without the temporary file path Jupyter would print.

    Introduced in notebooks/00_start_here.ipynb.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught
    seen = set()
    for w in caught:
        text = warning_text(w.message)
        key = (w.category, text)
        if key in seen:
            continue
        seen.add(key)
        print(f"{w.category.__name__}: {text}")


def silence_known_deprecations(*names: str) -> list[str]:
    """Hide exactly the deprecation messages in ``KNOWN_DEPRECATIONS`` (all of them, or those named).

    Call it only after the notebook has shown and explained the warning once.
    Other warnings still show. Returns the names silenced.

    Introduced in notebooks/00_start_here.ipynb.
    """
    chosen = names or tuple(KNOWN_DEPRECATIONS)
    for name in chosen:
        if name not in KNOWN_DEPRECATIONS:
            raise ValueError(f"unknown deprecation {name!r}; known: {list(KNOWN_DEPRECATIONS)}")
        pattern, category = KNOWN_DEPRECATIONS[name]
        warnings.filterwarnings("ignore", message=pattern, category=category)
    return list(chosen)
