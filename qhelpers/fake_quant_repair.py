"""A fake-quant model repaired without training, and where its error comes from (notebook 04).

Introduced in notebooks/04_quantization_aware_training.ipynb.

MSE-optimal activation ranges (``mse_range``, ``set_mse_activation_ranges``), bias correction of the fake-quant
model (``fake_quant_bias_correction``), a pool requantized on its input's grid (``requantize_pool``), and the
error broken down into rounding and clipping (``rounding_removed``, ``fake_quant_breakdown``).
"""

from __future__ import annotations

import copy
import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Optional

import torch
from torch import nn
import torch.ao.nn.intrinsic.qat as nniqat
from torch.ao.quantization import FakeQuantizeBase, disable_fake_quant

from .ptq import _inputs as _batch_inputs
from .metrics import accuracy, predict
from .fake_quant import activation_fake_quants, fake_quant_modules, observers_frozen

__all__ = [
    "RangeChoice",
    "set_mse_activation_ranges",
    "fake_quant_bias_correction",
    "requantize_pool",
    "fake_quant_breakdown",
    "rounding_removed",
]


def mse_range(values: torch.Tensor, quant_min: int, quant_max: int, *, steps: int = 100, bins: int = 2048) -> tuple[float, float]:
    """The range ``(low, high)`` of an affine grid with codes ``quant_min..quant_max`` that minimises the
    quantization MSE of ``values``.

    Candidates: ``high = max * j / steps`` and ``low = min * i / steps`` (i, j = 1..steps; ``low = 0``
    when every value is >= 0), so the min/max range is one candidate and the result is never worse
    than it. Each candidate grid uses torch's rounding of the zero point. The search computes the error on a
    ``bins``-bin histogram of ``values`` (bin centres), so it costs the same for any number of values; the
    winner is then checked against the min/max range on the values themselves, and the min/max range is
    returned if it is better there (the histogram is only an approximation, coarse next to a 256-level grid).

    Introduced in notebooks/04_quantization_aware_training.ipynb.
    """
    if not isinstance(values, torch.Tensor) or not values.is_floating_point() or values.numel() == 0:
        raise TypeError(f"values must be a non-empty float tensor, got {type(values).__name__}")
    if not quant_max > quant_min:
        raise ValueError(f"quant_max must be larger than quant_min, got {quant_min}..{quant_max}")
    for name, v in (("steps", steps), ("bins", bins)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    lo, hi = min(float(values.min()), 0.0), max(float(values.max()), 0.0)
    if hi == lo:
        return lo, hi
    hist = torch.histc(values.detach().float(), bins=bins, min=lo, max=hi)
    width = (hi - lo) / bins
    centres = torch.linspace(lo + width / 2, hi - width / 2, bins)
    fractions = torch.arange(1, steps + 1, dtype=torch.float32) / steps
    highs = hi * fractions  # (J,)
    lows = lo * fractions if lo < 0 else torch.zeros(1)
    best = (math.inf, lo, hi)
    for chunk in lows.split(8):  # (I,) lows at a time: an (I, J, bins) error table
        scale = ((highs[None, :] - chunk[:, None]) / (quant_max - quant_min)).clamp_min(1e-12)  # (I, J)
        zero_point = torch.clamp(quant_min - torch.round(chunk[:, None] / scale), quant_min, quant_max)
        codes = torch.clamp(torch.round(centres / scale[..., None]) + zero_point[..., None], quant_min, quant_max)
        err = (hist * ((codes - zero_point[..., None]) * scale[..., None] - centres) ** 2).sum(dim=-1)  # (I, J)
        k = int(err.argmin())
        i, j = divmod(k, len(highs))
        if float(err[i, j]) < best[0]:
            best = (float(err[i, j]), float(chunk[i]), float(highs[j]))
    flat = values.detach().float().flatten()
    if _grid_mse(flat, lo, hi, quant_min, quant_max) <= _grid_mse(flat, best[1], best[2], quant_min, quant_max):
        return lo, hi
    return best[1], best[2]


def _grid_mse(values: torch.Tensor, low: float, high: float, quant_min: int, quant_max: int) -> float:
    """Mean squared error of fake-quantizing ``values`` on the affine grid of range ``(low, high)`` (zero point rounded as torch does)."""
    scale = max((high - low) / (quant_max - quant_min), 1e-12)
    zero_point = int(min(max(quant_min - round(low / scale), quant_min), quant_max))
    return float(((torch.fake_quantize_per_tensor_affine(values, scale, zero_point, quant_min, quant_max) - values) ** 2).mean())


def _set_range(fake_quant: FakeQuantizeBase, low: torch.Tensor, high: torch.Tensor) -> None:
    """Write a range into a fake quant's observer and its scale/zero-point buffers, so that training, the
    simulation and ``convert`` (which calls ``calculate_qparams``) all use the same grid."""
    obs = fake_quant.activation_post_process
    obs.min_val.resize_(low.shape).copy_(low)
    obs.max_val.resize_(high.shape).copy_(high)
    scale, zero_point = fake_quant.calculate_qparams()
    fake_quant.scale.resize_(scale.shape).copy_(scale)
    fake_quant.zero_point.resize_(zero_point.shape).copy_(zero_point)
    fake_quant.disable_observer()


def _calibrated_and_batches(prepared: nn.Module, calib_loader: Iterable, num_batches: Optional[int]) -> list[torch.Tensor]:
    """Refuse a model whose observers still run; put it in eval mode; the calibration inputs as a list of batches."""
    if not observers_frozen(prepared):
        raise ValueError("prepared still has observers running: calibrate it first (calibrate_fake_quant or fake_quant_ptq)")
    batches = [_batch_inputs(b) for i, b in enumerate(calib_loader) if num_batches is None or i < num_batches]
    if not batches:
        raise ValueError("calib_loader yielded no batches")
    prepared.eval()
    return batches


@dataclass(frozen=True)
class RangeChoice:
    """One activation's range before and after MSE range setting (``set_mse_activation_ranges``)."""

    observed: tuple[float, float]
    chosen: tuple[float, float]

    @property
    def clipped(self) -> float:
        """Fraction of the observed range cut off (0: the min/max range was kept)."""
        width = self.observed[1] - self.observed[0]
        return 0.0 if width == 0 else 1.0 - (self.chosen[1] - self.chosen[0]) / width


@torch.no_grad()
def set_mse_activation_ranges(prepared: nn.Module, calib_loader: Iterable, *, num_batches: Optional[int] = None) -> dict[str, RangeChoice]:
    """MSE range setting for every activation of a calibrated fake-quant model (in place): no labels, no training.

    In forward order, each activation's fake quant is switched off, its input values on the calibration
    images are collected (the activations before it already on their new grids), and its range becomes
    the one ``mse_range`` picks (the "MSE" range setting of Nagel et al. 2021, "A White Paper on Neural Network Quantization").
    Observers stay frozen; ``calculate_qparams`` agrees with the new scales. Returns, per activation,
    the observed min/max and the chosen range.

    Introduced in notebooks/04_quantization_aware_training.ipynb.
    """
    batches = _calibrated_and_batches(prepared, calib_loader, num_batches)
    choices = {}
    for name, fq in activation_fake_quants(prepared, batches[0]).items():
        if getattr(fq, "is_per_channel", False):
            raise ValueError(f"{name!r} is per channel; MSE range setting here is for per-tensor activations")
        seen: list[torch.Tensor] = []
        hook = fq.register_forward_pre_hook(lambda mod, inp: seen.append(inp[0].detach().flatten()))
        enabled = int(fq.fake_quant_enabled[0])
        fq.disable_fake_quant()
        try:
            for x in batches:
                prepared(x)
        finally:
            hook.remove()
            if enabled:
                fq.enable_fake_quant()
        values = torch.cat(seen)
        low, high = mse_range(values, fq.quant_min, fq.quant_max)
        _set_range(fq, torch.tensor(low), torch.tensor(high))
        choices[name] = RangeChoice((min(float(values.min()), 0.0), max(float(values.max()), 0.0)), (low, high))
    return choices


def _pre_activation(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A QAT module's output before its fused ReLU (weights through their fake quant)."""
    if isinstance(module, nniqat.modules.conv_fused._ConvBnNd):
        return module._forward(x)  # conv + BatchNorm, the part before the fused ReLU
    weight = module.weight_fake_quant(module.weight)
    if isinstance(module, nn.Linear):
        return torch.nn.functional.linear(x, weight, module.bias)
    return module._conv_forward(x, weight, module.bias)


def _mean_pre_activations(model: nn.Module, names: list[str], batches: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    sums: dict[str, list] = {n: [0.0, 0] for n in names}

    def hook(name: str):
        def record(module: nn.Module, inp: tuple) -> None:
            y = _pre_activation(module, inp[0])
            dims = [d for d in range(y.dim()) if d != 1]
            sums[name][0] = sums[name][0] + y.sum(dims)
            sums[name][1] += y.numel() // y.shape[1]
        return record

    hooks = [model.get_submodule(n).register_forward_pre_hook(hook(n)) for n in names]
    try:
        for x in batches:
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return {n: s / c for n, (s, c) in sums.items()}


@torch.no_grad()
def fake_quant_bias_correction(prepared: nn.Module, calib_loader: Iterable, *, num_batches: Optional[int] = None) -> dict[str, torch.Tensor]:
    """Empirical bias correction of a calibrated fake-quant model (in place); returns the shift removed per layer.

    For each weighted layer in forward order, the mean of its output before the ReLU over the
    calibration images is measured in ``prepared`` (quantized weights and activations upstream, earlier
    layers already corrected) and in the same model with every fake quant off (float); the difference
    per output channel is subtracted from the layer's bias (BatchNorm's ``bias`` for fused Conv-BN
    modules, which shifts the folded output by the same amount). Notebook 07 teaches the same method on
    folded float models (``qh.bias_correction``). Call it once: the float reference is the model itself with
    its fake quants off, which a second call would take with the first correction already in it.

    Introduced in notebooks/04_quantization_aware_training.ipynb.
    """
    batches = _calibrated_and_batches(prepared, calib_loader, num_batches)
    weighted = [n for n, m in prepared.named_modules() if hasattr(m, "weight_fake_quant")]
    order: list[str] = []
    hooks = [prepared.get_submodule(n).register_forward_pre_hook(lambda mod, inp, name=n: order.append(name)) for n in weighted]
    try:
        prepared(batches[0])
    finally:
        for h in hooks:
            h.remove()
    names = list(dict.fromkeys(order))
    for n in names:
        m = prepared.get_submodule(n)
        if getattr(m, "bn", None) is None and m.bias is None:
            raise ValueError(f"layer {n!r} has no bias (and no BatchNorm) to correct")
    reference = copy.deepcopy(prepared)
    reference.apply(disable_fake_quant)
    float_means = _mean_pre_activations(reference, names, batches)
    shifts = {}
    for n in names:
        shift = _mean_pre_activations(prepared, [n], batches)[n] - float_means[n]
        m = prepared.get_submodule(n)
        (m.bn.bias if getattr(m, "bn", None) is not None else m.bias).sub_(shift)
        shifts[n] = shift
    return shifts


class _SameGrid(nn.Module):
    """Re-rounds its input onto another fake quant's current grid (what an integer average pool does)."""

    def __init__(self, grid_of: FakeQuantizeBase) -> None:
        super().__init__()
        self._grid_of = [grid_of]  # a list: not registered as a submodule (it belongs to another layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fq = self._grid_of[0]
        if int(fq.fake_quant_enabled[0]) == 0 or getattr(fq, "_rounding_removed", False):
            return x  # off, or its grid's rounding removed (``rounding_removed``): an average stays inside the range
        return torch.fake_quantize_per_tensor_affine(x, float(fq.scale), int(fq.zero_point), fq.quant_min, fq.quant_max)


def requantize_pool(prepared: nn.Module, pool: str, input_from: str) -> nn.Module:
    """Make a fake-quant model round an average pool's output the way an integer kernel does (in place).

    PyTorch's quantized average pools return their result with the *input's* scale and zero point, i.e.
    the float average rounded back onto the input grid. In a fake-quant model the pool has no fake quant
    of its own and its output would stay unrounded. This wraps module ``pool`` as
    ``Sequential(pool, re-round)``, where the re-rounding uses the current grid of the activation fake
    quant of module ``input_from`` (the layer that feeds the pool), so it follows that grid during QAT
    too. Only for simulations: ``convert`` cannot handle the wrapper (8-bit models need no such step,
    their pools are converted to integer ones).

    Introduced in notebooks/04_quantization_aware_training.ipynb.
    """
    source = getattr(prepared.get_submodule(input_from), "activation_post_process", None)
    if not isinstance(source, FakeQuantizeBase):
        raise ValueError(f"{input_from!r} has no activation fake quant (activation_post_process); name the layer that feeds the pool")
    if source.qscheme not in (torch.per_tensor_affine, torch.per_tensor_symmetric):
        raise ValueError(f"{input_from!r}'s activation fake quant is per channel; an average pool keeps a per-tensor grid")
    module = prepared.get_submodule(pool)
    if not isinstance(module, (nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AvgPool1d, nn.AdaptiveAvgPool1d)):
        raise ValueError(f"{pool!r} is a {type(module).__name__}, not an average pool")
    parent_name, _, child = pool.rpartition(".")
    parent = prepared.get_submodule(parent_name) if parent_name else prepared
    setattr(parent, child, nn.Sequential(module, _SameGrid(source)))
    return prepared


def _representable(fq: FakeQuantizeBase) -> tuple[torch.Tensor, torch.Tensor]:
    """The float interval of a fake quant's grid, per channel (shaped for broadcasting along ``ch_axis``) or per tensor."""
    scale = fq.scale.detach()
    zero_point = fq.zero_point.detach().to(scale.dtype)
    low, high = (fq.quant_min - zero_point) * scale, (fq.quant_max - zero_point) * scale
    if scale.numel() > 1:
        return low, high
    return low.reshape(()), high.reshape(())


def _unrounded(module: FakeQuantizeBase, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
    """Forward hook: the fake quant's input clamped to its range, without the rounding."""
    x = inputs[0]
    low, high = _representable(module)
    if low.dim() == 1:  # per channel
        shape = [1] * x.dim()
        shape[module.ch_axis] = -1
        low, high = low.reshape(shape), high.reshape(shape)
    return torch.maximum(torch.minimum(x, high), low)


@contextmanager
def rounding_removed(prepared: nn.Module, names: Optional[Iterable[str]] = None) -> Iterator[nn.Module]:
    """Inside the ``with`` block, the fake quants ``names`` (default: all of ``prepared``) clamp to their range
    without rounding: each output is its input clamped to the grid's interval, so the clipping of the chosen
    ranges stays and only the resolution of the grid goes. Training works inside the block too: the gradient
    is 1 inside the range and 0 where a value was clamped, as with the fake quant's own estimator. A pool
    wrapped by ``requantize_pool`` stops re-rounding when the grid it follows is in ``names``.

    Introduced in notebooks/04_quantization_aware_training.ipynb.
    """
    fqs = fake_quant_modules(prepared)
    if not fqs:
        raise ValueError("prepared has no FakeQuantize modules")
    names = list(fqs) if names is None else list(names)
    unknown = [n for n in names if n not in fqs]
    if unknown:
        raise ValueError(f"names {unknown} are not fake quants of prepared; valid: {list(fqs)}")
    hooks = [fqs[n].register_forward_hook(_unrounded) for n in names]
    for n in names:
        fqs[n]._rounding_removed = True
    try:
        yield prepared
    finally:
        for h in hooks:
            h.remove()
        for n in names:
            fqs[n]._rounding_removed = False


@torch.no_grad()
def fake_quant_breakdown(prepared: nn.Module, loader: Iterable, *, predictions: bool = False) -> dict[str, Any]:
    """What a fake-quant model's rounding costs: its accuracy on ``loader`` (in %) as it is, then with the rounding removed
    (``rounding_removed``: every value still clamped to its grid's range, so the clipping of the chosen ranges
    stays) everywhere, on the weights only, and on the activations only. The model is left as it was.

    Removing a fake quant altogether would also remove its clipping; removing only the rounding separates the cost
    of the grid's resolution from the cost of its range. Use it on a model that nothing adapted to the rounding
    (no bias correction, no training): a model trained or corrected for the rounding shifts when it is removed.
    (To ask what rounding costs after training, train a second copy inside ``rounding_removed`` and compare.)
    With ``predictions=True`` each value is ``predict``'s ``(predicted classes, labels)`` instead of the accuracy,
    so that the rows can be compared with ``paired_test``.

    Introduced in notebooks/04_quantization_aware_training.ipynb.
    """
    fqs = fake_quant_modules(prepared)
    if not fqs:
        raise ValueError("prepared has no FakeQuantize modules")
    if not observers_frozen(prepared):
        raise ValueError("prepared still has observers running: freeze them first (disable_observer)")
    weights = [n for n in fqs if n.endswith("weight_fake_quant")]
    acts = list(activation_fake_quants(prepared, _batch_inputs(next(iter(loader)))))

    def measure(unrounded: list[str]) -> Any:
        with rounding_removed(prepared, unrounded):
            return predict(prepared.eval(), loader) if predictions else accuracy(prepared.eval(), loader)

    return {"as quantized": measure([]), "weights not rounded": measure(weights), "activations not rounded": measure(acts),
            "no rounding (ranges still clip)": measure(weights + acts)}
