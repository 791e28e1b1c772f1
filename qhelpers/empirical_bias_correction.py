"""Empirical bias correction (notebook 07): the quantized weights' mean output shift, subtracted from the bias.

Introduced in notebooks/07_when_int8_loses_accuracy.ipynb.

``mean_output_shift`` measures the shift on calibration data; ``bias_correction`` subtracts it. Part of the
recovery flow of ``qhelpers.recovery``.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Iterable, Optional, Sequence

import torch
from torch import nn

from .range_setting import _inputs
from .wa_simulation import _check_layers

__all__ = [
    "mean_output_shift",
    "BiasCorrection",
    "bias_correction",
]


# --------------------------------------------------------------------------- bias correction


def _capture(model: nn.Module, names: Sequence[str], calib_loader: Iterable, num_batches: Optional[int]) -> dict[str, list[torch.Tensor]]:
    """Per-channel sums and counts of each named module's output over the loader: {name: [sum (C,), count]}."""
    stats: dict[str, list] = {}
    handles = []

    def hook(name: str):
        def fn(_m, _inp, out):
            if out.is_quantized:  # a converted INT8 module: compare what it means in float
                out = out.dequantize()
            dims = [d for d in range(out.dim()) if d != 1]
            s = out.detach().double().sum(dim=dims)
            n = out.numel() // out.shape[1]
            if name in stats:
                stats[name][0] += s
                stats[name][1] += n
            else:
                stats[name] = [s, n]

        return fn

    for name in names:
        handles.append(model.get_submodule(name).register_forward_hook(hook(name)))
    try:
        with torch.no_grad():
            for i, batch in enumerate(calib_loader):
                if num_batches is not None and i >= num_batches:
                    break
                model(_inputs(batch))
    finally:
        for h in handles:
            h.remove()
    if not stats:
        raise ValueError("calib_loader yielded no data")
    return stats


def mean_output_shift(
    float_model: nn.Module, quantized_model: nn.Module, calib_loader: Iterable, *, layers: Optional[Sequence[str]] = None, num_batches: Optional[int] = None
) -> dict[str, torch.Tensor]:
    """Per output channel, mean(quantized layer output) - mean(float layer output) over the calibration data.

    Each model runs on the same images with its own upstream layers (the
    quantized model's layers see the quantized model's activations). Outputs are
    the Conv/Linear outputs before any ReLU. ``layers``: default every Conv/Linear
    of ``float_model``; ``quantized_model`` must have a module of the same name
    (a converted INT8 model does for an unfused layer such as the classifier,
    whose quantized output is dequantized).

    Introduced in notebooks/07_when_int8_loses_accuracy.ipynb.
    """
    layers = _check_layers(float_model, layers)
    ref = _capture(float_model, layers, calib_loader, num_batches)
    act = _capture(quantized_model, layers, calib_loader, num_batches)
    return {n: (act[n][0] / act[n][1] - ref[n][0] / ref[n][1]).float() for n in layers}


@dataclasses.dataclass
class BiasCorrection:
    """What ``bias_correction`` returns: the corrected quantized model, the bias deltas, and the shifts before and after."""

    model: nn.Module
    delta: dict[str, torch.Tensor]
    shift_before: dict[str, torch.Tensor]
    shift_after: dict[str, torch.Tensor]

    def apply_to(self, model: nn.Module) -> nn.Module:
        """A copy of ``model`` (e.g. the folded float model, to quantize for real afterwards) with the same bias deltas."""
        q = copy.deepcopy(model)
        with torch.no_grad():
            for name, d in self.delta.items():
                q.get_submodule(name).bias.add_(d)
        return q


def bias_correction(
    float_model: nn.Module, quantized_model: nn.Module, calib_loader: Iterable, *, layers: Optional[Sequence[str]] = None, num_batches: Optional[int] = None
) -> BiasCorrection:
    """Empirical bias correction: layer by layer, subtract the measured mean output shift from the bias.

    ``quantized_model`` has the same structure as ``float_model`` with quantized
    weights (e.g. from ``quantize_weights``). In order, each layer's shift
    (``mean_output_shift``, measured with the layers before it already
    corrected) is subtracted from its bias. Afterwards every layer's mean shift
    on ``calib_loader`` is zero up to float rounding (``shift_after``).
    Layers without a bias are refused. Neither model is changed.

    Introduced in notebooks/07_when_int8_loses_accuracy.ipynb.
    """
    layers = _check_layers(float_model, layers)
    for name in layers:
        if quantized_model.get_submodule(name).bias is None:
            raise ValueError(f"layer {name!r} has no bias to correct; fold BatchNorm first (qh.fuse) or give it a zero bias")
    q = copy.deepcopy(quantized_model)
    ref = _capture(float_model, layers, calib_loader, num_batches)  # the float means do not change: measure them once

    def shifts(names: Sequence[str]) -> dict[str, torch.Tensor]:
        act = _capture(q, names, calib_loader, num_batches)
        return {n: (act[n][0] / act[n][1] - ref[n][0] / ref[n][1]).float() for n in names}

    before = shifts(layers)
    delta = {}
    for i, name in enumerate(layers):
        shift = before[name] if i == 0 else shifts([name])[name]
        with torch.no_grad():
            q.get_submodule(name).bias.sub_(shift)
        delta[name] = -shift
    after = shifts(layers)
    return BiasCorrection(q, delta, before, after)
