"""Quantization-aware training (QAT): fake quantization, the straight-through estimator, the training recipe.

Introduced in notebooks/04_quantization_aware_training.ipynb.

QAT inserts ``FakeQuantize`` modules (quantize then dequantize, in float) on
the weights and activations of a fused model, trains it so that the weights
adapt to the rounding, then converts it to a real INT8 model. Below 8 bits
(e.g. 4-bit weights and activations) the PyTorch CPU kernels cannot run the
result, so the trained fake-quant model, evaluated in eval mode, *is* the
low-bit model: a simulation of what low-bit hardware would compute.

The recipe follows torchvision's reference (``references/classification/
train_quantization.py``): a low learning rate, observers frozen after some
epochs (``disable_observer``), BatchNorm statistics frozen after some epochs
(``freeze_bn_stats``).
"""

from __future__ import annotations

import copy
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Optional

import torch
from torch import nn
import torch.ao.nn.intrinsic.qat as nniqat
from torch.ao.nn.intrinsic.qat import freeze_bn_stats
from torch.ao.quantization import (
    FakeQuantizeBase,
    FakeQuantize,
    MovingAverageMinMaxObserver,
    MovingAveragePerChannelMinMaxObserver,
    QConfig,
    convert,
    default_fused_per_channel_wt_fake_quant,
    default_fused_wt_fake_quant,
    disable_fake_quant,
    disable_observer,
    enable_observer,
    fuse_modules_qat,
    get_default_qat_qconfig,
    prepare_qat,
)

from .checks import NotFilledIn, _blank_safe, not_filled, report
from .environment import check_engine
from .environment import engine as use_engine
from .ptq import _inputs as _batch_inputs
from .ptq import calibrate
from .metrics import accuracy, predict
from .training import train_one_epoch

__all__ = [
    "low_bit_qconfig",
    "qat_qconfig",
    "fused_scale_mismatch",
    "fake_quant_modules",
    "fake_quant_range",
    "prepare_qat_model",
    "calibrate_fake_quant",
    "fake_quant_ptq",
    "RangeChoice",
    "set_mse_activation_ranges",
    "fake_quant_bias_correction",
    "requantize_pool",
    "fake_quant_breakdown",
    "rounding_removed",
    "observers_frozen",
    "QATResult",
    "quantization_aware_training",
    "train_fake_quant",
    "convert_qat_model",
    "qat_finetune",
    "SteDemo",
    "ste_demo",
    "plot_ste",
    "plot_qat_history",
    "check_ste",
    "check_low_bit_qconfig",
    "check_ptq_accuracy",
    "check_frozen",
]



# --------------------------------------------------------------------------- qconfigs


def _check_bits(bits: object, name: str = "bits") -> int:
    if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= 8:
        raise ValueError(f"{name} must be an int from 2 to 8, got {bits!r}")
    return bits


_MADE_BY_HELPER = "_qhelpers_made_by"  # attribute on a with_args factory: which helper built it
_CALIBRATED_STATE = "_qhelpers_calibrated_state"  # attribute on a fake quant / BatchNorm: its state when calibration ended


def low_bit_qconfig(bits: int = 4, *, per_channel: bool = True, activation_bits: Optional[int] = None) -> QConfig:
    """A QAT qconfig that simulates ``bits``-bit weights and ``activation_bits``-bit activations (default: same).

    Weights: symmetric signed codes in ``[-(2**(bits-1) - 1), 2**(bits-1) - 1]``
    (e.g. -7..7 for 4 bits), per output channel (``per_channel=True``, the
    default, as in ``post_training_quantize``) or per tensor. Activations:
    affine unsigned codes in ``[0, 2**activation_bits - 1]`` (0..15 for 4 bits).
    Both are plain ``FakeQuantize`` modules with moving-average min/max
    observers; the storage dtypes stay ``qint8``/``quint8``, only the range
    narrows. (``get_default_qat_qconfig`` uses ``FusedMovingAvgObsFakeQuantize``,
    one C++ op for both; for every symmetric range its kernel picks a scale that
    differs from its own observer's ``calculate_qparams``: for values of both
    signs, between 15/16 (``|min|`` dominates: finer, the most negative values
    clipped) and 15/14 (``|max|`` dominates: coarser) at -7..7, between
    127.5/128 and 127.5/127 at -128..127; see notebook 04 section 6. Plain
    ``FakeQuantize`` trains with the scale ``convert`` will use.)

    Introduced in notebooks/04_quantization_aware_training.ipynb.
    """
    _check_bits(bits)
    activation_bits = bits if activation_bits is None else _check_bits(activation_bits, "activation_bits")
    if not isinstance(per_channel, bool):
        raise TypeError(f"per_channel must be True or False, got {per_channel!r}")
    activation = FakeQuantize.with_args(
        observer=MovingAverageMinMaxObserver,
        quant_min=0,
        quant_max=2**activation_bits - 1,
        dtype=torch.quint8,
        qscheme=torch.per_tensor_affine,
    )
    limit = 2 ** (bits - 1) - 1
    if per_channel:
        weight_kind = dict(observer=MovingAveragePerChannelMinMaxObserver, qscheme=torch.per_channel_symmetric, ch_axis=0)
    else:
        weight_kind = dict(observer=MovingAverageMinMaxObserver, qscheme=torch.per_tensor_symmetric)
    weight = FakeQuantize.with_args(quant_min=-limit, quant_max=limit, dtype=torch.qint8, **weight_kind)
    for factory in (activation, weight):  # lets notebook 04's Exercise 2 check tell this helper's factories from the learner's
        setattr(factory, _MADE_BY_HELPER, "qh.low_bit_qconfig")
    return QConfig(activation=activation, weight=weight)


def qat_qconfig(*, engine: Optional[str] = None, bits: int = 8, per_channel: bool = True) -> QConfig:
    """The QAT qconfig for ``bits``-bit weights and activations, per-channel weights by default (as in PTQ).

    At 8 bits (convertible to INT8 kernels): ``get_default_qat_qconfig(engine)``
    with its weight fake quant swapped for torch's per-channel or per-tensor
    fused one when the engine's default has the other granularity (x86's
    default is per channel, qnnpack's per tensor), so ``per_channel`` is always
    honoured. Below 8 bits: ``low_bit_qconfig(bits, per_channel=per_channel)``.

    Introduced in notebooks/04_quantization_aware_training.ipynb.
    """
    engine = check_engine(engine)
    if not isinstance(per_channel, bool):
        raise TypeError(f"per_channel must be True or False, got {per_channel!r}")
    if _check_bits(bits) < 8:
        return low_bit_qconfig(bits, per_channel=per_channel)
    qconfig = get_default_qat_qconfig(engine)
    is_per_channel = qconfig.weight().qscheme in (torch.per_channel_symmetric, torch.per_channel_affine)
    if is_per_channel != per_channel:
        weight = default_fused_per_channel_wt_fake_quant if per_channel else default_fused_wt_fake_quant
        qconfig = QConfig(activation=qconfig.activation, weight=weight)
    return qconfig


def fused_scale_mismatch(fake_quant: FakeQuantizeBase) -> torch.Tensor:
    """Ratio of the scale a fake quant trains with (its ``scale`` buffer) to the one ``convert`` will use.

    ``convert`` takes ``fake_quant.calculate_qparams()`` (the Python observer);
    training uses the ``scale`` buffer. For plain ``FakeQuantize`` both are the
    same (ratio 1). ``FusedMovingAvgObsFakeQuantize`` (torch's default QAT fake
    quant) writes its buffer from a C++ kernel that assumes a two's-complement
    range: ``max(|min| / (n + 1), |max| / n) * (2n + 1) / (quant_max - quant_min)``
    with ``n = (quant_max - quant_min) // 2``, where the observer uses
    ``max(|min|, |max|) / ((quant_max - quant_min) / 2)``, for a tensor (or
    channel) with values of both signs: the ratio is 15/14 at -7..7 and
    127.5/127 at -128..127 when ``|max|`` dominates, 15/16 and 127.5/128 when
    ``|min|`` dominates by a factor (n + 1) / n or more, in between otherwise. The kernel's symmetric
    branch needs ``min < 0 < max`` (``ChooseQuantizationParams`` in
    ``torch/include/ATen/native/quantized/cpu/QuantUtils.h``); with values of
    one sign it trains on an affine grid of half the observer's scale (ratio
    0.5, zero point at an end of the range). pytorch/pytorch#180990, #194816;
    pytorch/ao#4345, #4824. Returns one ratio per scale (per channel or a
    single one).

    Introduced in notebooks/04_quantization_aware_training.ipynb.
    """
    if not isinstance(fake_quant, FakeQuantizeBase):
        raise TypeError(f"fake_quant must be a torch.ao.quantization FakeQuantize module, got {type(fake_quant).__name__}")
    trained = fake_quant.scale.detach().double().flatten()
    converted = fake_quant.calculate_qparams()[0].detach().double().flatten()
    if trained.shape != converted.shape:
        raise ValueError(f"fake_quant has {trained.numel()} trained scale(s) but {converted.numel()} observer scale(s): run data through it first")
    return trained / converted


# --------------------------------------------------------------------------- inspecting a prepared model


def fake_quant_modules(model: nn.Module) -> dict[str, FakeQuantizeBase]:
    """Every ``FakeQuantize`` module of a QAT-prepared model, by qualified name.

    Introduced in notebooks/04_quantization_aware_training.ipynb.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return {name: m for name, m in model.named_modules() if isinstance(m, FakeQuantizeBase)}


def fake_quant_range(fake_quant: FakeQuantizeBase) -> tuple[float, float]:
    """The float interval a per-tensor ``FakeQuantize`` can represent: ``((qmin - zp) * s, (qmax - zp) * s)``."""
    scale, zero_point = fake_quant.calculate_qparams()
    if scale.numel() != 1:
        raise ValueError(f"fake_quant must be per-tensor, it has {scale.numel()} scales (per-channel)")
    s, z = float(scale), int(zero_point)
    return (fake_quant.quant_min - z) * s, (fake_quant.quant_max - z) * s


def observers_frozen(model: nn.Module) -> bool:
    """True when every ``FakeQuantize`` of ``model`` has its observer disabled."""
    fqs = fake_quant_modules(model)
    if not fqs:
        raise ValueError("model has no FakeQuantize modules; prepare it with prepare_qat_model first")
    return all(int(fq.observer_enabled[0]) == 0 for fq in fqs.values())


def _never_observed(model: nn.Module) -> list[str]:
    """Names of fake quants whose observer has not seen a single batch (their scale is still the default 1.0)."""
    names = []
    for name, fq in fake_quant_modules(model).items():
        obs = getattr(fq, "activation_post_process", None)
        min_val = getattr(obs, "min_val", None)
        if isinstance(min_val, torch.Tensor) and (min_val.numel() == 0 or torch.isinf(min_val).any()):
            names.append(name)
    return names


# --------------------------------------------------------------------------- prepare, calibrate, train


def prepare_qat_model(
    model: nn.Module, qconfig: QConfig, inplace: bool = False, fuse_groups: Optional[list[list[str]]] = None
) -> nn.Module:
    """Fuse, attach ``qconfig``, ``prepare_qat``.

    Fusion uses ``fuse_modules_qat(model, fuse_groups)`` when ``fuse_groups``
    is given (e.g. ``[["conv", "bn", "relu"]]``), else ``model.fuse_model(is_qat=True)``
    when the model has that method.

    ``model`` must be in training mode: QAT fusion keeps BatchNorm as a
    separate, trainable part of ``ConvBn*`` modules, which only makes sense in
    training (an eval-mode model should be quantized with PTQ instead).
    Returns the prepared model (a copy unless ``inplace``), in training mode.

    Introduced in notebooks/04_quantization_aware_training.ipynb.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(qconfig, QConfig):
        raise TypeError(f"qconfig must be a torch.ao.quantization.QConfig, got {type(qconfig).__name__}")
    if not model.training:
        raise ValueError(
            "model is in eval mode, but prepare_qat needs a model in training mode: call model.train() first "
            "(for a model you will not train, use post-training quantization instead)"
        )
    if fake_quant_modules(model):
        raise ValueError("model already has FakeQuantize modules (it was prepared before); start from the float model")
    if not inplace:
        model = copy.deepcopy(model)
    if fuse_groups is not None:
        fuse_modules_qat(model, fuse_groups, inplace=True)
    elif hasattr(model, "fuse_model"):
        model.fuse_model(is_qat=True)
    model.qconfig = qconfig
    prepare_qat(model, inplace=True)
    return model


@torch.no_grad()
def calibrate_fake_quant(prepared: nn.Module, calib_loader: Iterable, *, num_batches: Optional[int] = None) -> nn.Module:
    """Run ``loader`` through a QAT-prepared model in eval mode with observers on, then freeze the observers.

    This sets each fake quant's range from data without changing a weight:
    the starting point of QAT, and on its own a post-training quantization
    simulated in fake quant. Returns ``prepared`` (eval mode, observers off).

    Introduced in notebooks/04_quantization_aware_training.ipynb.
    """
    if not fake_quant_modules(prepared):
        raise ValueError("prepared has no FakeQuantize modules; prepare it with prepare_qat_model first")
    prepared.eval()
    prepared.apply(enable_observer)
    calibrate(prepared, calib_loader, num_batches=num_batches)  # the same loop as PTQ's calibration (notebook 03)
    prepared.apply(disable_observer)
    _record_calibrated_state(prepared)
    return prepared


def _range_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """The tensors that data passing through ``module`` can move: a fake quant's scale, zero point and its observer's
    min/max; a BatchNorm's running statistics."""
    if isinstance(module, FakeQuantizeBase):
        obs = getattr(module, "activation_post_process", None)
        tensors = {"scale": module.scale, "zero_point": module.zero_point,
                   "min_val": getattr(obs, "min_val", None), "max_val": getattr(obs, "max_val", None)}
    else:
        tensors = {"running_mean": getattr(module, "running_mean", None), "running_var": getattr(module, "running_var", None)}
    return {k: v.detach().clone() for k, v in tensors.items() if isinstance(v, torch.Tensor)}


def _record_calibrated_state(prepared: nn.Module) -> None:
    """Remember, on each fake quant and BatchNorm, its state when its first calibration ended (a later call keeps the
    first record), so that ``check_frozen`` can tell whether data moved it afterwards."""
    for module in prepared.modules():
        if isinstance(module, (FakeQuantizeBase, nn.modules.batchnorm._BatchNorm)) and not hasattr(module, _CALIBRATED_STATE):
            object.__setattr__(module, _CALIBRATED_STATE, _range_state(module))


def _moved_since_calibration(model: nn.Module) -> tuple[list[str], list[str]]:
    """Names of the fake quants and of the BatchNorms whose state differs from the one recorded when calibration ended."""
    moved_fq, moved_bn = [], []
    for name, module in model.named_modules():
        before = getattr(module, _CALIBRATED_STATE, None)
        if before is None:
            continue
        now = _range_state(module)
        if now.keys() != before.keys() or any(now[k].shape != v.shape or not torch.equal(now[k], v) for k, v in before.items()):
            (moved_fq if isinstance(module, FakeQuantizeBase) else moved_bn).append(name)
    return moved_fq, moved_bn


def fake_quant_ptq(model: nn.Module, calib_loader: Iterable, qconfig: QConfig) -> nn.Module:
    """Post-training quantization simulated with fake quant: prepare a copy, calibrate, no training.

    The float ``model`` is left untouched (its mode does not matter). Use it
    to measure PTQ at bit widths the INT8 kernels cannot run; at 8 bits it
    matches a converted model up to rounding details.

    Introduced in notebooks/04_quantization_aware_training.ipynb.
    """
    float_copy = copy.deepcopy(model).train()
    return calibrate_fake_quant(prepare_qat_model(float_copy, qconfig, inplace=True), calib_loader)


# --------------------------------------------------------------------------- the best low-bit PTQ: range setting, bias correction


def activation_fake_quants(prepared: nn.Module, example: torch.Tensor) -> dict[str, FakeQuantizeBase]:
    """The activation fake quants of a QAT-prepared model, by name, in the order a forward pass on ``example`` calls them.

    Weight fake quants (``...weight_fake_quant``) are left out. The model runs once in eval mode (observers
    are not touched: freeze them first if ``example`` must not move the ranges).

    Introduced in notebooks/04_quantization_aware_training.ipynb.
    """
    acts = {n: m for n, m in fake_quant_modules(prepared).items() if not n.endswith("weight_fake_quant")}
    if not acts:
        raise ValueError("prepared has no activation FakeQuantize modules; prepare it with prepare_qat_model first")
    order: list[str] = []
    hooks = [m.register_forward_pre_hook(lambda mod, inp, name=n: order.append(name)) for n, m in acts.items()]
    was_training = prepared.training
    try:
        prepared.eval()
        with torch.no_grad():
            prepared(example)
    finally:
        for h in hooks:
            h.remove()
        prepared.train(was_training)
    return {n: acts[n] for n in dict.fromkeys(order)}


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


@torch.no_grad()
def _evaluate(prepared: nn.Module, loader: Iterable) -> float:
    """Accuracy of a prepared model without letting its observers see the evaluation data."""
    was_enabled = {n: int(fq.observer_enabled[0]) for n, fq in fake_quant_modules(prepared).items()}
    prepared.eval()
    prepared.apply(disable_observer)
    try:
        return accuracy(prepared, loader)
    finally:
        for name, fq in fake_quant_modules(prepared).items():
            if was_enabled[name]:
                fq.enable_observer()


@dataclass
class QATResult:
    """What ``quantization_aware_training`` returns.

    ``model`` is the trained fake-quant model in eval mode with observers
    frozen (convert it with ``convert_qat_model`` at 8 bits). ``history`` has
    one dict per epoch: ``epoch`` (0 = after calibration, before training),
    ``loss`` (mean training loss, None at 0), ``accuracy`` (percent, None
    without ``eval_loader``), ``observers_frozen``, ``bn_frozen``.
    ``seconds`` is the wall time of the training epochs.
    """

    model: nn.Module
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    def accuracies(self) -> list[float]:
        return [h["accuracy"] for h in self.history]


def _check_epochs_param(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"{name} must be a number of epochs >= 0 (may be fractional), got {value!r}")
    return float(value)


def quantization_aware_training(
    model: nn.Module,
    train_loader: Iterable,
    epochs: int,
    *,
    engine: Optional[str] = None,
    lr: float = 1e-4,
    freeze_observers_after: float = 2,
    freeze_bn_after: float = 1,
    bits: Optional[int] = None,
    per_channel: Optional[bool] = None,
    qconfig: Optional[QConfig] = None,
    calib_loader: Optional[Iterable] = None,
    eval_loader: Optional[Iterable] = None,
    weight_decay: float = 0.0,
    lr_schedule: str = "cosine",
    fuse_groups: Optional[list[list[str]]] = None,
    progress: bool = True,
) -> QATResult:
    """Quantization-aware fine-tuning of a trained float model; the float ``model`` itself is not changed.

    1. ``prepare_qat_model`` on a copy (``model`` must be in training mode),
       with ``qconfig`` or ``qat_qconfig(engine=engine, bits=bits, per_channel=per_channel)``
       (None: 8 bits, per-channel weights, the default engine); ``engine``,
       ``bits`` and ``per_channel`` only choose that default, so giving them
       together with ``qconfig`` is a ``ValueError``;
    2. optionally ``calibrate_fake_quant`` on ``calib_loader`` so that training
       starts from data-based ranges (epoch 0 of the history is then PTQ);
    3. ``epochs`` passes of ``train_one_epoch`` with AdamW at ``lr`` (``lr_schedule``
       ``"cosine"`` decays it to 0 over the run, ``"constant"`` keeps it); after
       ``freeze_observers_after`` epochs the observers stop moving the ranges,
       after ``freeze_bn_after`` epochs BatchNorm uses its running statistics
       (both may be fractional: they are applied after that many steps);
    4. the accuracy on ``eval_loader`` after each epoch, with observers
       disabled while measuring (``model.eval()`` alone does not stop them).

    Introduced in notebooks/07_when_int8_loses_accuracy.ipynb.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if qconfig is not None:
        given = [f"{n}={v!r}" for n, v in (("engine", engine), ("bits", bits), ("per_channel", per_channel)) if v is not None]
        if given:
            raise ValueError(f"give qconfig or {', '.join(given)}, not both: they only choose the default qconfig and would be ignored")
    else:
        qconfig = qat_qconfig(
            engine=check_engine(engine), bits=8 if bits is None else bits, per_channel=True if per_channel is None else per_channel
        )
    prepared = prepare_qat_model(model, qconfig, fuse_groups=fuse_groups)
    if calib_loader is not None:
        calibrate_fake_quant(prepared, calib_loader)
    return train_fake_quant(  # it checks epochs, lr, the freezes and the schedule
        prepared, train_loader, epochs, lr=lr, freeze_observers_after=freeze_observers_after, freeze_bn_after=freeze_bn_after,
        eval_loader=eval_loader, weight_decay=weight_decay, lr_schedule=lr_schedule, progress=progress,
        record_start=calib_loader is not None,
    )


def train_fake_quant(
    prepared: nn.Module,
    train_loader: Iterable,
    epochs: int,
    *,
    lr: float = 1e-4,
    freeze_observers_after: float = 2,
    freeze_bn_after: float = 1,
    eval_loader: Optional[Iterable] = None,
    weight_decay: float = 0.0,
    lr_schedule: str = "cosine",
    progress: bool = True,
    keep_activation_ranges: bool = False,
    record_start: bool = True,
) -> QATResult:
    """The training part of QAT, on an already prepared (and usually calibrated) fake-quant model, in place.

    Steps 3 and 4 of ``quantization_aware_training``: observers run (they are switched on) until
    ``freeze_observers_after`` epochs, BatchNorm statistics until ``freeze_bn_after`` epochs (0: frozen
    from the first step). ``keep_activation_ranges=True`` leaves every activation observer off from the
    start, so ranges chosen before training (``set_mse_activation_ranges``) stay as they are while the weight
    observers follow ``freeze_observers_after`` (a running min/max observer would pull a clipped range back
    towards the batch min/max). History entry 0 is the accuracy before training (when ``record_start``
    and ``eval_loader``). Returns the ``QATResult`` (its model is ``prepared``).

    Introduced in notebooks/04_quantization_aware_training.ipynb.
    """
    if not fake_quant_modules(prepared):
        raise ValueError("prepared has no FakeQuantize modules; prepare it with prepare_qat_model first")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise ValueError(f"lr must be a positive float (QAT fine-tunes: 1e-4 to 1e-3 is typical), got {lr!r}")
    freeze_obs = _check_epochs_param(freeze_observers_after, "freeze_observers_after")
    freeze_bn = _check_epochs_param(freeze_bn_after, "freeze_bn_after")
    if lr_schedule not in ("cosine", "constant"):
        raise ValueError(f"lr_schedule must be 'cosine' or 'constant', got {lr_schedule!r}")
    if not isinstance(keep_activation_ranges, bool):
        raise TypeError(f"keep_activation_ranges must be True or False, got {keep_activation_ranges!r}")
    result = QATResult(prepared)
    if freeze_obs > 0:
        prepared.apply(enable_observer)
    if keep_activation_ranges:
        for name, fq in fake_quant_modules(prepared).items():
            if not name.endswith("weight_fake_quant"):
                fq.disable_observer()
    if record_start:
        acc0 = _evaluate(prepared, eval_loader) if eval_loader is not None else None
        bn_frozen = [bool(m.freeze_bn) for m in prepared.modules() if hasattr(m, "freeze_bn")]
        result.history.append({"epoch": 0, "loss": None, "accuracy": acc0, "observers_frozen": observers_frozen(prepared),
                               "bn_frozen": bool(bn_frozen) and all(bn_frozen)})

    steps_per_epoch = len(train_loader)  # type: ignore[arg-type]
    if steps_per_epoch == 0:
        raise ValueError("train_loader yielded no batches")
    obs_step, bn_step = round(freeze_obs * steps_per_epoch), round(freeze_bn * steps_per_epoch)
    state = {"step": 0, "obs": False, "bn": False}

    def apply_freezes() -> None:
        if not state["obs"] and state["step"] >= obs_step:
            prepared.apply(disable_observer)
            state["obs"] = True
        if not state["bn"] and state["step"] >= bn_step:
            prepared.apply(freeze_bn_stats)
            state["bn"] = True

    def after_step() -> None:
        state["step"] += 1
        apply_freezes()

    optimizer = torch.optim.AdamW(prepared.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = None
    if lr_schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps_per_epoch)
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        apply_freezes()  # freezes due at step 0 (or left over after evaluation)
        loss = train_one_epoch(
            prepared, train_loader, optimizer, scheduler, desc=f"QAT epoch {epoch}/{epochs}", progress=progress, after_step=after_step
        )
        acc = _evaluate(prepared, eval_loader) if eval_loader is not None else None
        result.history.append(
            {"epoch": epoch, "loss": loss, "accuracy": acc, "observers_frozen": state["obs"], "bn_frozen": state["bn"]}
        )
    result.seconds = time.perf_counter() - start
    prepared.eval()
    prepared.apply(disable_observer)
    return result


# --------------------------------------------------------------------------- convert


def convert_qat_model(prepared: nn.Module, *, engine: Optional[str] = None) -> nn.Module:
    """The INT8 model of a trained 8-bit QAT model (``convert`` on an eval-mode copy, for ``engine``).

    Refuses models that were never prepared, whose observers never saw data
    (their scale would still be the default 1.0 and the INT8 model would be
    silently wrong), or that simulate fewer than 8 bits (no INT8 kernel runs
    them: evaluate the fake-quant model in eval mode instead).
    """
    engine = check_engine(engine)
    fqs = fake_quant_modules(prepared)
    if not fqs:
        raise ValueError("prepared has no FakeQuantize modules: prepare it with prepare_qat_model and train it before convert")
    missing = _never_observed(prepared)
    if missing:
        raise ValueError(
            f"{len(missing)} fake quant(s) never saw data (e.g. {missing[0]!r}): their scale is still the default 1.0; "
            "train the model (or run calibrate_fake_quant) before convert"
        )
    # 7-bit activations (reduce_range=True, 0..127) are the x86 default; anything narrower is a low-bit simulation
    narrow = [n for n, fq in fqs.items() if fq.quant_max - fq.quant_min < 127]
    if narrow:
        fq = fqs[narrow[0]]
        raise ValueError(
            f"{narrow[0]!r} simulates a narrower range [{fq.quant_min}, {fq.quant_max}] than 8 bits; INT8 kernels would not "
            "run it at that width (no smaller weights, activations clamped at 8 bits instead): evaluate the fake-quant model in eval mode instead of converting"
        )
    model = copy.deepcopy(prepared).eval()
    with use_engine(engine):
        return convert(model, inplace=False)


def qat_finetune(
    model: nn.Module,
    train_loader: Iterable,
    epochs: int = 3,
    *,
    lr: float = 1e-4,
    freeze_observers_after: int = 2,
    freeze_bn_after: int = 1,
    engine: Optional[str] = None,
    fuse_groups: Optional[list[list[str]]] = None,
) -> nn.Module:
    """The recipe cell of notebook 04 built from the helpers above: QAT at 8 bits, then the INT8 model.

    Same arguments and the same recipe as the notebook's self-contained
    ``qat_finetune`` (constant ``lr``, freezes at epoch boundaries, observers
    off before ``convert``, the engine's default QAT qconfig); on the same
    list of batches the two give the same INT8 model (tested). On a shuffling
    ``DataLoader`` they do not: ``train_one_epoch`` wraps the loader in
    ``tqdm.auto.tqdm``, which calls ``iter(loader)`` once more even when
    disabled, so the same seed gives another data order.
    Unlike the copyable cell it accepts the model in any mode.
    """
    engine = check_engine(engine)
    result = quantization_aware_training(
        copy.deepcopy(model).train(), train_loader, epochs, qconfig=get_default_qat_qconfig(engine), lr=lr,
        freeze_observers_after=freeze_observers_after, freeze_bn_after=freeze_bn_after,
        lr_schedule="constant", fuse_groups=fuse_groups, progress=False,
    )
    return convert_qat_model(result.model, engine=engine)


# --------------------------------------------------------------------------- the straight-through estimator


@dataclass(frozen=True)
class SteDemo:
    """Forward and backward of one per-tensor ``FakeQuantize`` on a 1-D tensor.

    ``x`` input (float32 (N,)), ``y`` its fake-quantized values, ``grad`` the
    gradient of ``y.sum()`` with respect to ``x``: 1 where ``round(x / scale) +
    zero_point`` lies in ``[quant_min, quant_max]`` (the representable range
    ``[low, high]`` widened by half a step), 0 where it was clamped.
    """

    x: torch.Tensor
    y: torch.Tensor
    grad: torch.Tensor
    low: float
    high: float
    scale: float
    zero_point: int


def ste_demo(x: torch.Tensor, fake_quant: FakeQuantizeBase) -> SteDemo:
    """Run ``x`` (float 1-D) forward and backward through ``fake_quant`` (its observer state is used as is).

    Introduced in notebooks/04_quantization_aware_training.ipynb.
    """
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() != 1:
        raise TypeError(f"x must be a 1-D float tensor, got {type(x).__name__} {getattr(x, 'shape', '')}")
    if not isinstance(fake_quant, FakeQuantizeBase):
        raise TypeError(f"fake_quant must be a torch.ao.quantization FakeQuantize module, got {type(fake_quant).__name__}")
    xr = x.detach().clone().requires_grad_(True)
    y = fake_quant(xr)
    y.sum().backward()
    scale, zero_point = fake_quant.calculate_qparams()
    low, high = fake_quant_range(fake_quant)
    return SteDemo(x.detach(), y.detach(), xr.grad.detach(), low, high, float(scale), int(zero_point))


def plot_ste(demo: SteDemo, axes: Optional[Any] = None) -> Any:
    """Two panels: the staircase ``y(x)`` with the identity line, and the STE gradient ``dy/dx``.

    Introduced in notebooks/04_quantization_aware_training.ipynb.
    """
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(9, 3))
    order = torch.argsort(demo.x)
    x, y, g = demo.x[order].numpy(), demo.y[order].numpy(), demo.grad[order].numpy()
    axes[0].plot(x, x, color="0.6", lw=1, ls="--", label="identity (float)")
    axes[0].step(x, y, where="mid", color="tab:blue", label="fake quantized")
    axes[0].set_title(f"forward: scale {demo.scale:.3g}, zero point {demo.zero_point}")
    axes[0].set_xlabel("x")
    axes[0].legend()
    axes[1].plot(x, g, color="tab:orange")
    axes[1].set_ylim(-0.1, 1.1)
    axes[1].set_title("backward: straight-through gradient dy/dx")
    axes[1].set_xlabel("x")
    for ax in axes:
        for edge in (demo.low, demo.high):
            ax.axvline(edge, color="tab:red", lw=1)
    return axes


def plot_qat_history(
    curves: dict[str, list[float]], lines: dict[str, float], ax: Optional[Any] = None, title: str = ""
) -> Any:
    """Accuracy per epoch (one curve per run) against horizontal reference lines (float, PTQ ...).

    Introduced in notebooks/04_quantization_aware_training.ipynb.
    """
    import matplotlib.pyplot as plt

    if not curves:
        raise ValueError("curves is empty; give at least one run's accuracy per epoch")
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.5))
    for name, values in curves.items():
        ax.plot(range(len(values)), values, marker="o", label=name)
    styles = iter([("--", "black"), (":", "0.3"), ("-.", "0.45"), ((0, (5, 1)), "0.6")])  # greys: never a run's colour
    for name, value in lines.items():
        ls, color = next(styles, ("--", "0.5"))
        ax.axhline(value, ls=ls, color=color, lw=1.3, label=f"{name} ({value:.1f}%)")
    ax.set_xticks(range(max(len(v) for v in curves.values())))
    ax.set_xlabel("QAT epoch (0 = calibrated, before training)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right")
    return ax


# --------------------------------------------------------------------------- exercise self-checks


def _tensor_answer(value: Any, name: str) -> torch.Tensor:
    if not_filled(value):
        raise NotFilledIn(name)
    try:
        return torch.as_tensor(value).detach().double()
    except Exception as exc:
        raise TypeError(f"{name} must be a tensor or a list of numbers, got {type(value).__name__}") from exc


@_blank_safe
def check_ste(y: Any, grad: Any, x: torch.Tensor, scale: float, zero_point: int, quant_min: int, quant_max: int) -> bool:
    """Exercise: fake-quantized values ``y`` and STE gradient ``grad`` of ``x`` by hand, against torch's op.

    Introduced in notebooks/04_quantization_aware_training.ipynb.
    """
    xr = x.detach().float().clone().requires_grad_(True)
    expected = torch.fake_quantize_per_tensor_affine(xr, scale, zero_point, quant_min, quant_max)
    expected.sum().backward()
    ya, ga = _tensor_answer(y, "y"), _tensor_answer(grad, "grad")
    xd = x.detach().double()
    codes = torch.round(xd / scale) + zero_point

    def same(a: torch.Tensor, b: torch.Tensor) -> bool:
        return a.shape == b.shape and torch.allclose(a, b.double(), atol=1e-6)

    ok_y = same(ya, expected.detach())
    grad_fn = type(y.grad_fn).__name__ if isinstance(y, torch.Tensor) and y.grad_fn is not None else ""
    if ok_y and "FakeQuantize" in grad_fn:
        ok_y = report("fake-quantized values", False, f"y's autograd history ends in {grad_fn}: torch's fake-quant op computed "
                      "these values. Compute them yourself with torch.round, torch.clamp and arithmetic")
    elif ok_y:
        report("fake-quantized values", True)
    elif same(ya, (codes - zero_point) * scale):
        report("fake-quantized values", False, "values outside the range must clamp to [quant_min, quant_max] before going back to float")
    elif same(ya, torch.clamp(torch.round(xd / scale), quant_min, quant_max) * scale) or same(ya, torch.clamp(codes, quant_min, quant_max) * scale):
        report("fake-quantized values", False, "the zero point is missing: add it to get the code, subtract it again to go back to float")
    elif same(ya, torch.clamp(codes, quant_min, quant_max)):
        report("fake-quantized values", False, "these are the integer codes: fake quantization returns floats, (code - zero_point) * scale")
    else:
        report("fake-quantized values", False, "round(x / scale) + zero_point, clamp to [quant_min, quant_max], then back to float")
    low, high = (quant_min - zero_point) * scale, (quant_max - zero_point) * scale
    expected_grad = xr.grad.double()
    ok_g = ga.shape == expected_grad.shape and torch.equal(ga, expected_grad)
    if ok_g and (x.grad is not None or (isinstance(grad, torch.Tensor) and grad.grad_fn is not None)):
        return report("STE gradient", False, "x has a .grad (or grad an autograd history): backward() computed this "
                      "gradient. Build the mask yourself with comparisons on the rounded codes")
    if ok_g:
        return report("STE gradient", True) and ok_y
    clamped = torch.clamp(codes, quant_min, quant_max)
    if ga.shape == expected_grad.shape and torch.equal(ga, ((xd >= low) & (xd <= high)).double()):
        hint = ("torch decides on the rounded code before the clamp, not on x and not on the clamped code: a value less than "
                "half a step outside the range still rounds inside (compare with <= and >=)")
    elif ga.shape == expected_grad.shape and torch.equal(ga, torch.ones_like(expected_grad)):
        hint = "that is the hand-written STE (gradient 1 everywhere): torch's STE is 0 where the code was clamped"
    elif ga.shape == expected_grad.shape and not ga.any():
        hint = ("all zeros: torch.round has a zero gradient almost everywhere, so autograd through it gives 0; that is why the "
                "STE exists. Build the mask yourself: 1 where the rounded code lies in [quant_min, quant_max]")
    elif ga.shape == expected_grad.shape and torch.equal(ga, ((clamped > quant_min) & (clamped < quant_max)).double()):
        hint = ("compare the codes before clamping, with <= and >=: after the clamp every code is in range, and a strict "
                "comparison then also zeroes the values that land exactly on the edge codes")
    else:
        hint = "1 where the code passes the clamp unchanged, 0 where it was clamped"
    report("STE gradient", False, hint)
    return False


def _fake_quant_instance(factory: Any, role: str) -> tuple[Optional[FakeQuantizeBase], str]:
    try:
        module = factory()
    except Exception as exc:  # a wrong with_args raises here
        return None, f"the {role} factory fails when called: {type(exc).__name__}: {exc}"
    if not isinstance(module, FakeQuantizeBase):
        return None, (
            f"the {role} is a {type(module).__name__}, an observer: QAT needs FakeQuantize.with_args(observer=..., ...), "
            "which rounds in the forward pass (an observer only watches)"
        )
    return module, ""


@_blank_safe
def check_low_bit_qconfig(qconfig: Any, bits: int, *, per_channel: bool = True) -> bool:
    """Exercise: a QConfig of plain ``FakeQuantize`` modules with moving-average min/max observers: signed symmetric
    ``bits``-bit weights ``-(2**(bits-1) - 1)..2**(bits-1) - 1`` (qint8; per output channel, ``ch_axis=0``, when
    ``per_channel``) and unsigned ``bits``-bit activations ``0..2**bits - 1`` (quint8, per tensor, affine).

    Introduced in notebooks/04_quantization_aware_training.ipynb.
    """
    _check_bits(bits)
    if not_filled(qconfig):
        raise NotFilledIn("qconfig")
    if not isinstance(qconfig, QConfig):
        return report("qconfig", False, f"expected a torch.ao.quantization.QConfig(activation=..., weight=...), got {type(qconfig).__name__}")
    weight, why_w = _fake_quant_instance(qconfig.weight, "weight")
    act, why_a = _fake_quant_instance(qconfig.activation, "activation")
    if weight is None or act is None:
        return report("qconfig", False, why_w or why_a)
    for role, fq in (("weight", weight), ("activation", act)):
        if type(fq) is not FakeQuantize:
            return report("qconfig", False, f"the {role} is a {type(fq).__name__}; the exercise asks for plain FakeQuantize "
                          "(the fused module picks another scale at symmetric ranges, section 6)")
    want_act_obs = MovingAverageMinMaxObserver
    want_w_obs = MovingAveragePerChannelMinMaxObserver if per_channel else MovingAverageMinMaxObserver
    if type(act.activation_post_process) is not want_act_obs:
        return report("qconfig", False, f"the activation observer is {type(act.activation_post_process).__name__}, "
                      f"the exercise asks for {want_act_obs.__name__}")
    limit = 2 ** (bits - 1) - 1
    if weight.dtype != torch.qint8:
        ok_w = report("weight range", False, f"weights are {weight.dtype}: weights are signed, use torch.qint8")
    elif (weight.quant_min, weight.quant_max) == (-limit, limit):
        ok_w = report("weight range", True)
    elif weight.quant_min >= 0:
        ok_w = report("weight range", False, f"[{weight.quant_min}, {weight.quant_max}] has no negative codes: weights are signed")
    elif (weight.quant_min, weight.quant_max) == (-limit - 1, limit):
        ok_w = report("weight range", False, f"[{weight.quant_min}, {weight.quant_max}] is the two's-complement range; the "
                      f"exercise asks for the symmetric -{limit}..{limit} (code {-limit - 1} has no positive twin)")
    else:
        ok_w = report("weight range", False, f"[{weight.quant_min}, {weight.quant_max}] is not a signed {bits}-bit range: count the levels")
    scheme = torch.per_channel_symmetric if per_channel else torch.per_tensor_symmetric
    if weight.qscheme != scheme:
        words = "per-channel symmetric" if per_channel else "per-tensor symmetric"
        why = "one scale per output channel needs a per-channel observer (and qscheme)" if per_channel != (
            weight.qscheme in (torch.per_channel_symmetric, torch.per_channel_affine)) else "pass qscheme explicitly: the default is affine"
        ok_s = report("weight qscheme", False, f"{str(weight.qscheme).replace('torch.', '')}, the exercise asks for {words}: {why}")
    elif type(weight.activation_post_process) is not want_w_obs:
        ok_s = report("weight qscheme", False, f"the weight observer is {type(weight.activation_post_process).__name__}, "
                      f"the exercise asks for {want_w_obs.__name__}")
    elif per_channel and weight.ch_axis != 0:
        ok_s = report("weight qscheme", False, f"ch_axis={weight.ch_axis}: a conv weight is (out, in, kh, kw), a Linear's (out, in); "
                      "one scale per OUTPUT channel is axis 0")
    else:
        ok_s = report("weight qscheme", True)
    if act.dtype != torch.quint8:
        ok_a = report("activation range", False, f"activations are {act.dtype}: after a ReLU they are non-negative, use unsigned torch.quint8")
    elif act.qscheme != torch.per_tensor_affine:
        ok_a = report("activation range", False, f"activation qscheme {str(act.qscheme).replace('torch.', '')}: use per_tensor_affine (the default)")
    elif (act.quant_min, act.quant_max) == (0, 2**bits - 1):
        ok_a = report("activation range", True)
    else:  # quant_min < 0 cannot reach here: FakeQuantize asserts quant_min >= iinfo(quint8).min = 0 (fake_quantize.py __init__)
        ok_a = report("activation range", False, f"[{act.quant_min}, {act.quant_max}] is not an unsigned {bits}-bit range: count the levels")
    helper = getattr(qconfig.weight, _MADE_BY_HELPER, None) or getattr(qconfig.activation, _MADE_BY_HELPER, None)
    if ok_w and ok_s and ok_a and helper:
        return report("qconfig", False, f"these factories were built by {helper}: the exercise asks you to build them "
                      "yourself with FakeQuantize.with_args(observer=..., quant_min=..., ...)")
    return ok_w and ok_s and ok_a


def check_ptq_accuracy(name: str, accuracy: Any, expected: float) -> bool:
    """Exercise: the accuracy a learner's qconfig gave in a PTQ simulation equals the one the notebook measured
    with the qconfig the exercise describes (the same choices give the same model, to the last image).

    Introduced in notebooks/04_quantization_aware_training.ipynb.
    """
    got = float(accuracy)
    return report(  # 1e-3: float32 means of the same predictions differ by ~1e-6; one image of 10,000 is 0.01
        name, abs(got - float(expected)) < 1e-3,
        f"{got:.1f} % where the notebook measured {float(expected):.1f} % with the qconfig the exercise describes: some "
        "setting of yours differs (observer, range, dtype, qscheme or channel axis)",
    )


@_blank_safe
def check_frozen(model: Any) -> bool:
    """Exercise: a prepared model ready for the last QAT epochs: fake quantization on, every observer disabled after
    it saw data, every
    fused Conv-BN using frozen statistics (``freeze_bn`` set and its BatchNorm out of training mode), and every range
    and BatchNorm statistic still the one its first ``calibrate_fake_quant`` left (the exercise runs no data between
    calibrating and freezing, so a change means data moved them; modules never calibrated by that helper are not
    compared).

    Introduced in notebooks/04_quantization_aware_training.ipynb.
    """
    if not_filled(model):
        raise NotFilledIn("model")
    if not isinstance(model, nn.Module) or not fake_quant_modules(model):
        return report("frozen model", False, "expected the QAT-prepared model (with FakeQuantize modules)")
    fqs = fake_quant_modules(model).values()
    if any(int(fq.fake_quant_enabled[0]) == 0 for fq in fqs):
        return report(
            "frozen model", False,
            "fake quantization is switched off (disable_fake_quant is not a freeze: the model would train in float); "
            "switch it back on with enable_fake_quant",
        )
    never = _never_observed(model)
    if never:
        return report(
            "frozen model", False,
            f"{len(never)} fake quant(s) never saw data (e.g. {never[0]}): freezing an observer that saw nothing freezes "
            "its default scale 1.0 (and a per-channel one cannot even run); run data through the model with the observers "
            "on first (qh.calibrate_fake_quant), then freeze",
        )
    moved_fq, moved_bn = _moved_since_calibration(model)
    if moved_fq:
        ok_obs = report(
            "observers frozen", False,
            f"{len(moved_fq)} range(s) are no longer the ones calibration left (e.g. {moved_fq[0]}): data went through the "
            "model while its observers were on (model.eval() does not stop them; calibrating again moves them too), so "
            "that data chose the ranges the last epochs would train with. Re-run the cell above to rebuild ex_model, then "
            "freeze before anything runs through it",
        )
    else:
        ok_obs = report(
            "observers frozen", observers_frozen(model),
            "some FakeQuantize still has its observer enabled (model.eval() does not stop observers): use disable_observer",
        )
    fused = [m for m in model.modules() if hasattr(m, "freeze_bn")]
    if fused and all(m.freeze_bn for m in fused) and any(m.bn.training for m in fused):
        report(
            "BatchNorm frozen", False,
            "freeze_bn is set but BatchNorm is still in training mode (its running statistics keep changing): freeze_bn_stats "
            "sets both, use model.apply(freeze_bn_stats)",
        )
        return False
    if moved_bn:
        report(
            "BatchNorm frozen", False,
            f"{len(moved_bn)} BatchNorm(s) have other running statistics than when calibration ended (e.g. {moved_bn[0]}): "
            "data went through the model in training mode before freeze_bn_stats. Re-run the cell above, then freeze first",
        )
        return False
    ok_bn = report(
        "BatchNorm frozen", bool(fused) and all(m.freeze_bn and not m.bn.training for m in fused),
        "some fused Conv-BN still updates its running statistics: disabling observers does not freeze BatchNorm",
    )
    return ok_obs and ok_bn
