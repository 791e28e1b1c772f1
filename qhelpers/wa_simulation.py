"""Weights or activations? A simulation that quantizes them separately, and per-layer sensitivity (notebook 07).

Introduced in notebooks/07_when_int8_loses_accuracy.ipynb.

``quantize_weights`` writes W-bits weights into a float copy (on the grid, or on the grid a ``QConfig``'s weight
observer gives); ``quantize_activations`` puts ``torch.ao`` fake quant on the activations only; ``simulate`` does
both, so that W8A32 and W32A8 answer "weights or activations?". ``per_layer_sensitivity`` quantizes one layer at a
time, ``leave_one_out_sensitivity`` keeps one layer in float at a time. ``make_dead_channel_model`` builds the
lesson's broken model. Part of the recovery flow of ``qhelpers.recovery``.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Iterable, Optional, Sequence

import torch
from torch import nn

from .range_setting import _check_bits, ACT_METHODS, mse_activation_ranges, quantize_weight

__all__ = [
    "make_dead_channel_model",
    "weight_layers",
    "quantize_weights",
    "quantize_activations",
    "simulate",
    "per_layer_sensitivity",
    "leave_one_out_sensitivity",
]


_WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


# --------------------------------------------------------------------------- the patients


def make_dead_channel_model(
    model: nn.Module, calib_loader: Iterable, *, channel: int = 3, block: str = "stem", shift: float = -50.0
) -> nn.Module:
    """A copy of a ``DepthwiseNet`` (or any Conv-BN-ReLU model) with one dead channel, as in notebook 03 section 6.

    Sets the BatchNorm shift of ``channel`` in ``block`` (``block[1]`` is its
    BatchNorm) to ``shift`` (far below 0: the ReLU outputs 0 for every image),
    then re-estimates every BatchNorm's running statistics on ``calib_loader``
    (a plain average over all batches). The next depthwise BatchNorm then sees
    ``running_var`` 0 for that channel, and folding blows its filter up.
    Returns the copy in eval mode; ``model`` is not changed.

    Introduced in notebooks/03_post_training_quantization.ipynb.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    modules = dict(model.named_modules())
    bn_name = f"{block}.1"
    if bn_name not in modules or not isinstance(modules[bn_name], nn.BatchNorm2d):
        raise ValueError(f"block must name a Conv-BN-ReLU block whose [1] is a BatchNorm2d, got {block!r}")
    n = modules[bn_name].num_features
    if isinstance(channel, bool) or not isinstance(channel, int) or not 0 <= channel < n:
        raise ValueError(f"channel must be an int in [0, {n}), got {channel!r}")
    dead = copy.deepcopy(model)
    with torch.no_grad():
        dead.get_submodule(bn_name).bias[channel] = shift
    for m in dead.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    dead.train()
    seen = 0
    with torch.no_grad():
        for batch in calib_loader:
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            dead(x)
            seen += len(x)
    if seen == 0:
        raise ValueError("calib_loader yielded no data")
    return dead.eval()


# --------------------------------------------------------------------------- weight quantization and range setting


def weight_layers(model: nn.Module) -> list[str]:
    """Names of the Conv/Linear modules of ``model`` (their weights are what ``quantize_weights`` quantizes), in registration order.

    Introduced in notebooks/07_when_int8_loses_accuracy.ipynb.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return [name for name, m in model.named_modules() if isinstance(m, _WEIGHTED)]


def _check_layers(model: nn.Module, layers: Optional[Sequence[str]]) -> list[str]:
    available = weight_layers(model)
    if layers is None:
        return available
    if isinstance(layers, str):
        layers = [layers]
    for name in layers:
        if name not in available:
            raise ValueError(f"layers: {name!r} is not a Conv/Linear module of the model; valid: {available}")
    return list(layers)


def _observer_fake_quant(weight: torch.Tensor, observer_ctr: Any) -> torch.Tensor:
    """``weight`` fake-quantized exactly as the observer (or FakeQuantize) built by ``observer_ctr`` sets its grid."""
    from torch.ao.quantization.fake_quantize import FakeQuantizeBase

    made = observer_ctr()
    obs = made.activation_post_process if isinstance(made, FakeQuantizeBase) else made
    qmin, qmax = int(made.quant_min), int(made.quant_max)
    w = weight.detach().float()
    obs(w)
    scale, zero_point = obs.calculate_qparams()
    if obs.qscheme in (torch.per_channel_symmetric, torch.per_channel_affine):
        return torch.fake_quantize_per_channel_affine(w, scale.float(), zero_point.int(), int(obs.ch_axis), qmin, qmax)
    return torch.fake_quantize_per_tensor_affine(w, float(scale), int(zero_point), qmin, qmax)


def quantize_weights(
    model: nn.Module,
    *,
    bits: int = 8,
    per_channel: bool = False,
    method: str = "minmax",
    percentile: float = 99.9,
    layers: Optional[Sequence[str]] = None,
    qconfig: Any = None,
) -> nn.Module:
    """A copy of ``model`` whose Conv/Linear weights (all, or only ``layers``) are replaced by their quantized values.

    The copy still runs in float (activations untouched: W``bits``A32); biases stay float.
    The grid is ``weight_clip``'s (``bits``, ``per_channel``, ``method``), or, with
    ``qconfig`` (a ``torch.ao`` ``QConfig``), the grid its weight observer would
    give each weight: for ``qh.make_qconfig("minmax", per_channel=False)`` that is
    scale ``max|w| / 127.5`` with codes -128..127, the grid of the converted INT8
    model. ``qconfig`` sets the whole grid, so it cannot be combined with
    ``bits``, ``per_channel``, ``method`` or ``percentile``.

    Introduced in notebooks/07_when_int8_loses_accuracy.ipynb.
    """
    layers = _check_layers(model, layers)
    if qconfig is not None:
        if not hasattr(qconfig, "weight") or not callable(qconfig.weight):
            raise TypeError(f"qconfig must be a torch.ao QConfig (with a weight observer), got {type(qconfig).__name__}")
        if (bits, per_channel, method, percentile) != (8, False, "minmax", 99.9):
            raise ValueError("qconfig sets the weight grid; bits, per_channel, method and percentile do not apply with it")
    q = copy.deepcopy(model)
    with torch.no_grad():
        for name in layers:
            m = q.get_submodule(name)
            if qconfig is not None:
                m.weight.copy_(_observer_fake_quant(m.weight, qconfig.weight))
            else:
                m.weight.copy_(quantize_weight(m.weight, bits=bits, per_channel=per_channel, method=method, percentile=percentile)[0])
    return q


def quantize_activations(
    model: nn.Module,
    calib_loader: Iterable,
    *,
    bits: int = 8,
    layers: Optional[Sequence[str]] = None,
    num_batches: Optional[int] = None,
    method: str = "minmax",
) -> nn.Module:
    """Fake-quantize the activations only (W32A``bits``) of a folded model with stubs, calibrated on ``calib_loader``.

    Uses ``qh.low_bit_qconfig(bits)`` (moving-average min/max observers, unsigned
    ``bits``-bit codes, as in notebook 04) with ``prepare_qat`` (no fusion: the
    model is folded already) and ``qh.calibrate_fake_quant``; every weight fake quant is switched off, so the
    weights stay exactly as they are in ``model`` (quantize them with
    ``quantize_weights`` first for W``b``A``bits``). ``method="mse"`` then sets
    every activation range by ``mse_activation_ranges``. ``layers``: names of the
    modules whose *output* is quantized (e.g. ``"quant"`` for the input,
    ``"dw1.0"``); None quantizes every activation. Returns the fake-quant model in eval mode.

    Introduced in notebooks/07_when_int8_loses_accuracy.ipynb.
    """
    from torch.ao.quantization import prepare_qat

    from .fake_quant import calibrate_fake_quant, fake_quant_modules, low_bit_qconfig

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    bits = _check_bits(bits)
    if method not in ACT_METHODS:
        raise ValueError(f"method must be one of {ACT_METHODS}, got {method!r}")
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        raise ValueError("model still has BatchNorm modules; fold them first with qh.fuse(model)")
    prepared = copy.deepcopy(model).train()  # already folded: prepare_qat without fusing again
    prepared.qconfig = low_bit_qconfig(bits, activation_bits=bits)
    prepare_qat(prepared, inplace=True)
    acts = {n[: -len(".activation_post_process")]: fq for n, fq in fake_quant_modules(prepared).items() if n.endswith("activation_post_process")}
    if layers is not None:
        if isinstance(layers, str):
            layers = [layers]
        for name in layers:
            if name not in acts:
                raise ValueError(f"layers: the output of {name!r} is not quantized in this model; valid: {list(acts)}")
    for name, fq in fake_quant_modules(prepared).items():
        if name.endswith("weight_fake_quant"):
            fq.disable_fake_quant()
            fq.disable_observer()
    calibrate_fake_quant(prepared, calib_loader, num_batches=num_batches)
    if method == "mse":
        prepared = mse_activation_ranges(prepared, calib_loader, num_batches=num_batches)
        acts = {n[: -len(".activation_post_process")]: fq for n, fq in fake_quant_modules(prepared).items() if n.endswith("activation_post_process")}
    if layers is not None:
        for name, fq in acts.items():
            if name not in layers:
                fq.disable_fake_quant()
    return prepared


def simulate(
    model: nn.Module,
    calib_loader: Iterable,
    *,
    weight_bits: Optional[int] = 8,
    act_bits: Optional[int] = 8,
    per_channel: bool = False,
    method: str = "minmax",
    percentile: float = 99.9,
    num_batches: Optional[int] = None,
    act_method: str = "minmax",
) -> nn.Module:
    """W``weight_bits``A``act_bits`` simulation of a folded model; None leaves that side in float (e.g. W8A32: ``act_bits=None``).

    ``per_channel``, ``method`` and ``percentile`` set the weight grid (``weight_clip``),
    ``act_method`` the activation ranges (``"minmax"`` or ``"mse"``, see ``quantize_activations``).

    Introduced in notebooks/07_when_int8_loses_accuracy.ipynb.
    """
    if weight_bits is None and (per_channel or method != "minmax"):
        raise ValueError("per_channel and method set the weight grid; they do not apply with weight_bits=None")
    if act_bits is None and act_method != "minmax":
        raise ValueError("act_method sets the activation ranges; it does not apply with act_bits=None")
    q = model
    if weight_bits is not None:
        q = quantize_weights(q, bits=weight_bits, per_channel=per_channel, method=method, percentile=percentile)
    if act_bits is not None:
        q = quantize_activations(q, calib_loader, bits=act_bits, num_batches=num_batches, method=act_method)
    return q if q is not model else copy.deepcopy(model)


def per_layer_sensitivity(
    model: nn.Module, calib_loader: Iterable, eval_loader: Iterable, *, bits: int = 8, per_channel: bool = False, num_batches: Optional[int] = None
) -> list[dict]:
    """The white paper's per-layer analysis: rows ``{"layer", "weights_only", "activations_only"}`` (accuracy in %).

    ``weights_only``: only this layer's weights quantized (W``bits``A32, nan for
    the input ``"quant"``); ``activations_only``: only this module's output
    quantized (W32A``bits``, ranges calibrated once with every activation
    observed). Rows follow the order of the quantized outputs.

    Introduced in notebooks/07_when_int8_loses_accuracy.ipynb.
    """
    from .metrics import accuracy
    from .fake_quant import fake_quant_modules

    all_acts = quantize_activations(model, calib_loader, bits=bits, num_batches=num_batches)
    suffix = ".activation_post_process"
    acts = [n[: -len(suffix)] for n in fake_quant_modules(all_acts) if n.endswith(suffix)]
    layers = weight_layers(model)
    rows = []
    for name in acts:
        only = copy.deepcopy(all_acts)
        for other, fq in fake_quant_modules(only).items():
            if other.endswith(suffix) and other[: -len(suffix)] != name:
                fq.disable_fake_quant()
        weighted = [layer for layer in layers if layer in (name, name + ".0")]
        acc_w = accuracy(quantize_weights(model, bits=bits, per_channel=per_channel, layers=weighted), eval_loader) if weighted else math.nan
        rows.append({"layer": name, "weights_only": acc_w, "activations_only": accuracy(only, eval_loader)})
    return rows


def leave_one_out_sensitivity(
    model: nn.Module, calib_loader: Iterable, eval_loader: Iterable, *, bits: int = 4, per_channel: bool = False, method: str = "minmax",
    num_batches: Optional[int] = None,
) -> list[dict]:
    """The other per-layer scan: everything quantized (W``bits``A``bits``) except one layer, kept in float: rows ``{"layer", "weights_float", "output_float"}`` (accuracy in %).

    ``weights_float``: every Conv/Linear's weights quantized (``bits``,
    ``per_channel``, ``method``) except this module's, every activation
    quantized, the activation ranges calibrated on ``calib_loader`` for that
    model (nan for modules without weights: the input ``"quant"``, an
    addition); ``output_float``: the whole model quantized except this
    module's output. ``per_layer_sensitivity`` quantizes one layer at a time and
    so cannot see a layer that only hurts together with the others; this scan
    can: the layer whose float copy recovers the most is the culprit. Rows follow
    the order of the quantized outputs, as in ``per_layer_sensitivity``.

    The last scan is kept (a copy): asked again for the same loaders (the same
    objects) and a model with the same structure, parameters and buffers (a
    hash of their bytes), it returns a copy of that result instead of
    re-running its models; any change to the model runs the scan again.

    Introduced in notebooks/07_when_int8_loses_accuracy.ipynb.
    """
    key = (_fingerprint(model), id(calib_loader), id(eval_loader), bits, per_channel, method, num_batches)
    hit = _LOO_CACHE.get(key)
    if hit is not None and hit[0] is calib_loader and hit[1] is eval_loader:
        return copy.deepcopy(hit[2])
    rows = _leave_one_out(model, calib_loader, eval_loader, bits=bits, per_channel=per_channel, method=method, num_batches=num_batches)
    _LOO_CACHE.clear()  # one scan kept: the exercise check and the notebook cell after it ask for the same one
    _LOO_CACHE[key] = (calib_loader, eval_loader, copy.deepcopy(rows))
    return rows


_LOO_CACHE: dict = {}


def _fingerprint(model: nn.Module) -> tuple:
    """A key that changes whenever ``model``'s structure, parameters or buffers change (a hash of their bytes)."""
    import hashlib

    digest = hashlib.sha1(repr(model).encode())
    for name, tensor in list(model.state_dict().items()):
        digest.update(name.encode())
        if isinstance(tensor, torch.Tensor):
            t = tensor.detach().cpu().contiguous()
            digest.update(str((t.dtype, tuple(t.shape))).encode())
            digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return (type(model).__qualname__, digest.hexdigest())


def _leave_one_out(
    model: nn.Module, calib_loader: Iterable, eval_loader: Iterable, *, bits: int, per_channel: bool, method: str, num_batches: Optional[int]
) -> list[dict]:
    from .metrics import accuracy
    from .fake_quant import fake_quant_modules

    layers = weight_layers(model)
    all_w = quantize_weights(model, bits=bits, per_channel=per_channel, method=method)
    full = quantize_activations(all_w, calib_loader, bits=bits, num_batches=num_batches)
    suffix = ".activation_post_process"
    acts = [n[: -len(suffix)] for n in fake_quant_modules(full) if n.endswith(suffix)]
    rows = []
    for name in acts:
        weighted = [layer for layer in layers if layer in (name, name + ".0")]
        acc_w = math.nan
        if weighted:
            others = [layer for layer in layers if layer not in weighted]
            kept = quantize_weights(model, bits=bits, per_channel=per_channel, method=method, layers=others)
            acc_w = accuracy(quantize_activations(kept, calib_loader, bits=bits, num_batches=num_batches), eval_loader)
        out_float = copy.deepcopy(full)
        fake_quant_modules(out_float)[name + suffix].disable_fake_quant()
        rows.append({"layer": name, "weights_float": acc_w, "output_float": accuracy(out_float, eval_loader)})
    return rows
