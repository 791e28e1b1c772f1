"""Fake quantization for QAT: low-bit fake-quant qconfigs, preparing and calibrating a fake-quant model.

Introduced in notebooks/04_quantization_aware_training.ipynb.

``low_bit_qconfig`` / ``qat_qconfig`` build the qconfigs; ``prepare_qat_model`` inserts ``FakeQuantize`` modules
(quantize then dequantize, in float) on the weights and activations of a fused model; ``calibrate_fake_quant`` and
``fake_quant_ptq`` set their ranges from calibration data; ``fake_quant_modules``, ``fake_quant_range``,
``activation_fake_quants`` and ``observers_frozen`` read them. The training recipe is in ``qhelpers.qat``.
"""

from __future__ import annotations

import copy
from typing import Iterable, Optional

import torch
from torch import nn
from torch.ao.quantization import (
    FakeQuantizeBase, FakeQuantize, MovingAverageMinMaxObserver, MovingAveragePerChannelMinMaxObserver, QConfig,
    default_fused_per_channel_wt_fake_quant, default_fused_wt_fake_quant, disable_observer, enable_observer,
    fuse_modules_qat, get_default_qat_qconfig, prepare_qat,
)

from .environment import check_engine
from .ptq import calibrate

__all__ = [
    "low_bit_qconfig",
    "qat_qconfig",
    "fused_scale_mismatch",
    "fake_quant_modules",
    "fake_quant_range",
    "prepare_qat_model",
    "calibrate_fake_quant",
    "fake_quant_ptq",
    "observers_frozen",
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
