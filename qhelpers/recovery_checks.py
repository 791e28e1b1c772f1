"""The self-checks of notebook 07's exercises: leave-one-out, the CLE scales, the MSE clip.

Introduced in notebooks/07_when_int8_loses_accuracy.ipynb.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import torch
from torch import nn

from .checks import NotFilledIn, WrongAnswer, _blank_safe, not_filled, report
from .range_setting import _MSE_CLIPS_HANDED_OUT, _not_handed_out, weight_clip
from .wa_simulation import leave_one_out_sensitivity, quantize_activations, quantize_weights, weight_layers

__all__ = [
    "check_leave_one_out",
    "check_cle_scales",
    "check_mse_clip",
]


# --------------------------------------------------------------------------- exercise checks


@_blank_safe
def check_leave_one_out(scan: Any, float_model: nn.Module, calib_loader: Iterable, eval_loader: Iterable, *, bits: int = 4) -> bool:
    """Exercise: the leave-one-out scan of the weights by hand, ``{layer: accuracy %}`` for every Conv/Linear of ``float_model``.

    Each entry: every other layer's weights quantized to ``bits`` (per tensor,
    min/max), this layer's weights in float, every activation quantized to
    ``bits`` (``qh.quantize_activations``, calibrated on ``calib_loader``),
    accuracy on ``eval_loader``. Compared with ``leave_one_out_sensitivity``
    within 0.05 points; the hints name the usual slips (the one-at-a-time scan,
    activations left in float, the wrong layer names).

    Introduced in notebooks/07_when_int8_loses_accuracy.ipynb.
    """
    if not_filled(scan):
        raise NotFilledIn("scan")
    if not isinstance(scan, dict):
        raise WrongAnswer("leave-one-out scan", f"my_scan must be a dict {{layer name: accuracy in %}}, got a {type(scan).__name__}")
    from .metrics import accuracy

    layers = weight_layers(float_model)
    if set(scan) != set(layers):
        missing, extra = sorted(set(layers) - set(scan)), sorted(set(scan) - set(layers))
        return report(
            "leave-one-out scan", False,
            f"one entry per Conv/Linear, named as in qh.weight_layers(model): {layers}" + (f"; missing {missing}" if missing else "") + (f"; not layers: {extra}" if extra else ""),
        )
    try:
        got = {name: float(value) for name, value in scan.items()}
    except (TypeError, ValueError):
        raise WrongAnswer("leave-one-out scan", "every value of my_scan must be one accuracy in % (a number, as qh.accuracy returns it)") from None
    if all(0 <= v <= 1 for v in got.values()) and any(v > 0 for v in got.values()):
        return report("leave-one-out scan", False, "those look like fractions: give accuracies in %, as qh.accuracy returns them")
    rows = {r["layer"]: r["weights_float"] for r in leave_one_out_sensitivity(float_model, calib_loader, eval_loader, bits=bits)}
    expected = {name: rows[name] if name in rows else rows[name.rsplit(".", 1)[0]] for name in layers}

    def same(a: dict, b: dict) -> bool:
        return all(abs(a[n] - b[n]) <= 0.05 for n in layers)

    if same(got, expected):
        return report("leave-one-out scan", True)
    one_at_a_time = {n: accuracy(quantize_activations(quantize_weights(float_model, bits=bits, layers=[n]), calib_loader, bits=bits), eval_loader) for n in layers}
    if same(got, one_at_a_time):
        return report("leave-one-out scan", False, "that quantizes only this layer's weights; the scan keeps this layer in float and quantizes every *other* layer")
    weights_only = {n: accuracy(quantize_weights(float_model, bits=bits, layers=[m for m in layers if m != n]), eval_loader) for n in layers}
    if same(got, weights_only):
        return report("leave-one-out scan", False, f"the activations are still float: quantize them too (qh.quantize_activations(..., bits={bits}))")
    return report(
        "leave-one-out scan", False,
        f"for each layer: quantize every other layer's weights ({bits} bits, qh.quantize_weights(..., layers=others)), then all "
        f"activations (qh.quantize_activations(..., bits={bits})), and measure the accuracy on the loader the exercise names",
    )


@_blank_safe
def check_cle_scales(scales: Any, first_weight: torch.Tensor, second_weight: torch.Tensor) -> bool:
    """Exercise: the DFQ scales ``s_i = sqrt(r1_i / r2_i)`` of a Conv-ReLU-Conv pair (second conv groups=1).

    Introduced in notebooks/07_when_int8_loses_accuracy.ipynb.
    """
    if not_filled(scales):
        raise NotFilledIn("scales")
    try:
        got = torch.as_tensor(scales).detach().double().reshape(-1)
    except Exception:
        raise WrongAnswer("CLE scales", f"my_scales must be a tensor or a list of numbers, got a {type(scales).__name__}") from None
    r1 = first_weight.detach().double().flatten(1).abs().amax(1)
    r2 = second_weight.detach().double().transpose(0, 1).flatten(1).abs().amax(1)
    expected = torch.sqrt(r1 / r2)
    if got.shape != expected.shape:
        return report("CLE scales", False, f"expected one scale per channel between the layers ({expected.numel()}), got {got.numel()}")
    if torch.allclose(got, expected, rtol=1e-4):
        return report("CLE scales", True)
    if torch.allclose(got, 1 / expected, rtol=1e-4):
        return report("CLE scales", False, "upside down: the first layer's channel is *divided* by s, so s grows with the first layer's range")
    if torch.allclose(got, r1 / r2, rtol=1e-4):
        return report("CLE scales", False, "missing the square root: the goal is that both ranges end up equal, at their geometric mean")
    r2_wrong = second_weight.detach().double().flatten(1).abs().amax(1)
    if r2_wrong.shape == r1.shape and torch.allclose(got, torch.sqrt(r1 / r2_wrong), rtol=1e-4):
        return report("CLE scales", False, "r2 must be the range per *input* channel of the second layer (its dim 1), not per output channel")
    return report("CLE scales", False, "s_i = sqrt(r1_i / r2_i), with r1 the first layer's range per output channel and r2 the second's per input channel")


@_blank_safe
def check_mse_clip(clip: Any, weight: torch.Tensor, *, bits: int = 4, grid: int = 100) -> bool:
    """Exercise: the MSE-optimal per-tensor clipping value of ``weight`` among the ``grid`` candidates max|w| * k / grid (k = 1 .. grid).

    Compared with ``weight_clip(weight, bits=bits, method="mse", grid=grid)``;
    the hints name the usual slips (min/max, a scale instead of a clip, a
    candidate that is not the best, another candidate grid). The exercise asks
    for the search by hand: the right value is rejected when ``qh.weight_clip``
    itself returned it (same ``bits`` and ``grid``) earlier in this process.

    Introduced in notebooks/07_when_int8_loses_accuracy.ipynb.
    """
    if not_filled(clip):
        raise NotFilledIn("clip")
    if isinstance(grid, bool) or not isinstance(grid, int) or grid < 1:
        raise ValueError(f"grid must be a positive int, got {grid!r}")
    try:
        got = float(torch.as_tensor(clip).reshape(()))
    except Exception:
        raise WrongAnswer("MSE clip", f"my_clip must be one number (one clipping value for the whole tensor), got a {type(clip).__name__}") from None
    with _not_handed_out():
        expected = float(weight_clip(weight, bits=bits, method="mse", grid=grid))
        default_grid = float(weight_clip(weight, bits=bits, method="mse"))
    amax = float(weight.abs().max())
    qmax = 2 ** (bits - 1) - 1
    if math.isclose(got, expected, rel_tol=1e-4):
        if (bits, grid, expected) in _MSE_CLIPS_HANDED_OUT:
            return report(
                "MSE clip", False,
                f"that value came from qh.weight_clip(..., method=\"mse\", grid={grid}) in this session: the exercise asks for the "
                "search by hand (if you only called it to compare, restart the kernel and run your own search)",
            )
        return report("MSE clip", True)
    if math.isclose(got, amax, rel_tol=1e-4):
        return report("MSE clip", False, "that is min/max (no clipping): try smaller clipping values too and keep the one with the lowest MSE")
    if math.isclose(got * qmax, expected, rel_tol=1e-4):
        return report("MSE clip", False, f"that looks like a scale, not a clipping value (clip = scale * {qmax})")
    k = got / amax * grid if amax > 0 else math.nan
    if math.isfinite(k) and abs(k - round(k)) < 1e-3 and 1 <= round(k) <= grid:
        return report(
            "MSE clip", False,
            f"that is one of the candidates (k = {round(k)}), not the one with the smallest MSE: round w / (c / {qmax}), clamp to "
            f"[-{qmax}, {qmax}], multiply back by c / {qmax}, and compare the mean squared errors",
        )
    if grid != 100 and math.isclose(got, default_grid, rel_tol=1e-4):
        return report("MSE clip", False, f"that is the best of 100 candidates (qh.weight_clip's default); the exercise's candidates are max|w| * k / {grid}")
    return report("MSE clip", False, f"the answer is one of the {grid} candidates max|w| * k / {grid} (k = 1 .. {grid}), the one whose grid c / {qmax} * [-{qmax} .. {qmax}] has the smallest MSE")
