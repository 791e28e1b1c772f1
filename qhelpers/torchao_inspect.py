"""A model quantized with torchao's ``quantize_``, inspected: its weights' storage, weight-only SQNR, latency.

Introduced in notebooks/05_beyond_eager_mode.ipynb.

``weight_storage`` names the tensor class each weight is stored as; ``weight_only_sqnr`` is the output's SQNR with
weight-only fake quantization; ``interleaved_latency`` times models in interleaved passes; ``refresh_bn_statistics``
gives a torchvision model built without weights BatchNorm statistics that match its convolutions.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

__all__ = [
    "weight_storage",
    "refresh_bn_statistics",
    "interleaved_latency",
    "weight_only_sqnr",
]


def refresh_bn_statistics(model: nn.Module, batches: Any) -> nn.Module:
    """Re-estimate every BatchNorm's running mean and variance from ``batches`` (tensors); weights untouched; returns ``model`` in eval mode.

    torchvision builds a model with ``weights=None`` with running mean 0 and variance 1 in
    every BatchNorm, which does not match what its random convolutions produce: in
    MobileNetV2 the activations then shrink block after block until the output is almost
    exactly zero, and any INT8 version "matches" it. Forward passes in training mode under
    ``torch.no_grad()``, with ``momentum=None`` (a plain average over the batches; each
    layer's momentum is restored afterwards), give statistics that fit, so that
    comparisons on such a model mean something.

    Introduced in notebooks/05_beyond_eager_mode.ipynb.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    batches = list(batches)
    if not batches or not all(isinstance(b, torch.Tensor) for b in batches):
        raise ValueError("batches must be a non-empty list of input tensors")
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        raise ValueError("model has no BatchNorm layer")
    momenta = [bn.momentum for bn in norms]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None
    model.train()
    try:
        with torch.no_grad():
            for b in batches:
                model(b)
    finally:
        for bn, momentum in zip(norms, momenta):
            bn.momentum = momentum
    return model.eval()


# --------------------------------------------------------------------------- what quantize_ touched, and latency


def weight_storage(model: nn.Module) -> dict[str, str]:
    """``{"<module name> (<module type>)": "<weight tensor class>"}`` for every module that owns a weight.

    A weight that ``quantize_`` converted shows its torchao tensor class
    (e.g. ``Int8Tensor``); one it left alone shows ``Parameter``. For an
    ``nn.LSTM``/``nn.GRU`` the first input-hidden weight (``weight_ih_l0``)
    stands for all of them.

    Introduced in notebooks/05_beyond_eager_mode.ipynb.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    out: dict[str, str] = {}
    for name, module in model.named_modules():
        weight = module._parameters.get("weight", module._parameters.get("weight_ih_l0"))
        if weight is not None:
            out[f"{name or '(model)'} ({type(module).__name__})"] = type(weight).__name__
    return out


def interleaved_latency(models: dict[str, Callable], example: torch.Tensor, *, rounds: int = 3, min_run_time: float = 0.15, threads: int = 1) -> dict[str, float]:
    """Median latency in ms of each model on ``example``, measured in ``rounds`` interleaved passes; the best pass counts.

    On a shared machine the load changes from second to second; measuring the
    models one after the other in turn, several times, and keeping each one's
    best median keeps a load spike from deciding a ratio. Each pass is
    ``qh.measure_latency`` (warm-up, then ``min_run_time`` seconds of runs).

    Introduced in notebooks/05_beyond_eager_mode.ipynb.
    """
    from .latency import measure_latency

    if not isinstance(models, dict) or not models:
        raise ValueError(f"models must be a non-empty dict of name -> model, got {type(models).__name__}")
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds must be a positive int, got {rounds!r}")
    best: dict[str, float] = {}
    for _ in range(rounds):
        for name, m in models.items():
            ms = measure_latency(m, example, threads=threads, min_run_time=min_run_time).median_ms
            best[name] = min(best.get(name, float("inf")), ms)
    return best


# --------------------------------------------------------------------------- exercise 4: predict, then measure


def weight_only_sqnr(model: nn.Module, inputs: torch.Tensor, *, bits: int = 8) -> float:
    """SQNR (dB) of ``model``'s output when every ``nn.Linear`` weight is fake-quantized to ``bits`` (per channel, symmetric); activations stay float.

    The model itself is not changed (a copy is quantized). At 8 bits this is
    what torchao's ``Int8WeightOnlyConfig`` computes.

    Introduced in notebooks/05_beyond_eager_mode.ipynb.
    """
    import copy

    from .quantmath import fake_quantize, qparams_from_tensor, sqnr_db

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= 16:
        raise ValueError(f"bits must be an int from 2 to 16, got {bits!r}")
    quantized = copy.deepcopy(model)
    linears = [m for m in quantized.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("model has no nn.Linear layer to quantize")
    for layer in linears:
        w = layer.weight.detach()
        layer.weight.data = fake_quantize(w, qparams_from_tensor(w, bits, True, "symmetric", axis=0))
    with torch.no_grad():
        return sqnr_db(model(inputs), quantized(inputs))
