"""When INT8 loses accuracy: find the cause, recover it without training.

Introduced in notebooks/07_when_int8_loses_accuracy.ipynb.

The debugging flow and the post-training fixes of Nagel et al., "A White Paper
on Neural Network Quantization" (2021), written from scratch on the course's
models (no AIMET):

* a **simulation** in which weights and activations are quantized separately
  (``quantize_weights``: W-bits weights written into a float copy, on the grid,
  or on the grid a ``QConfig``'s weight observer gives; ``quantize_activations``:
  ``torch.ao`` fake quant on the activations only), so that W8A32 and W32A8
  answer "weights or activations?", for the whole model and per layer, one layer
  quantized at a time (``per_layer_sensitivity``) or one layer kept in float at a
  time (``leave_one_out_sensitivity``);
* **range setting**: min/max, percentile or MSE-optimal clipping for weights
  (``weight_clip``), per tensor or per channel; MSE-optimal ranges for
  activations (``mse_activation_ranges``, ``quantize_activations(method="mse")``);
* **cross-layer equalization** (Nagel et al. 2019, "Data-Free Quantization"):
  ``equalize_pair`` / ``cross_layer_equalization`` rescale consecutive
  Conv-ReLU-Conv channels, leaving the float function unchanged;
* **empirical bias correction** (``bias_correction``): the quantized weights'
  mean output shift, measured on calibration data, subtracted from the bias;
* **AdaRound** (Nagel et al. 2020): per-weight up/down rounding learned layer by
  layer (``adaround``);
* the **PT2E numeric debugger** of torchao (``pt2e_node_sqnr``) and selective
  float in PT2E (``pt2e_quantizer(..., float_modules=...)``).

Every function takes a *folded* float model (BatchNorm folded into the convs,
``qh.fuse(model)``) and returns a new model; the input model is never changed.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import time
from typing import Any, Iterable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .checks import NotFilledIn, WrongAnswer, _blank_safe, not_filled, report
from .environment import check_engine

__all__ = [
    "make_dead_channel_model",
    "weight_layers",
    "weight_clip",
    "quantize_weight",
    "quantize_weights",
    "quantize_activations",
    "simulate",
    "per_layer_sensitivity",
    "leave_one_out_sensitivity",
    "mse_activation_ranges",
    "ACT_METHODS",
    "channel_ranges",
    "find_equalization_pairs",
    "equalize_pair",
    "cross_layer_equalization",
    "mean_output_shift",
    "BiasCorrection",
    "bias_correction",
    "AdaRoundResult",
    "adaround",
    "pt2e_quantizer",
    "pt2e_quantize",
    "pt2e_node_sqnr",
    "CLIP_METHODS",
    "check_leave_one_out",
    "check_cle_scales",
    "check_mse_clip",
]

CLIP_METHODS = ("minmax", "percentile", "mse")
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


def _check_bits(bits: object) -> int:
    if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= 8:
        raise ValueError(f"bits must be an int from 2 to 8, got {bits!r}")
    return bits


def _fq(w: torch.Tensor, scale: torch.Tensor, qmax: int) -> torch.Tensor:
    return torch.clamp(torch.round(w / scale), -qmax, qmax) * scale


# The MSE clipping values ``weight_clip`` has returned to a caller in this process, as (bits, grid, value): notebook 07's
# exercise "MSE clipping by hand" asks for the search without ``weight_clip``, and ``check_mse_clip`` tells a value
# handed out here from the same value found by hand. The library's own calls (``quantize_weight``, ``adaround``, the
# check itself) run inside ``_not_handed_out()`` and are not recorded.
_MSE_CLIPS_HANDED_OUT: set[tuple[int, int, float]] = set()
_QUIET = [0]


@contextlib.contextmanager
def _not_handed_out():
    _QUIET[0] += 1
    try:
        yield
    finally:
        _QUIET[0] -= 1


def weight_clip(
    weight: torch.Tensor, *, bits: int = 8, per_channel: bool = False, method: str = "minmax", percentile: float = 99.9, grid: int = 100
) -> torch.Tensor:
    """The clipping value ``c`` (one per tensor, or one per output channel) of a symmetric ``bits``-bit weight grid.

    The grid is ``scale * [-(2^(bits-1) - 1) ... 2^(bits-1) - 1]`` with ``scale = c / (2^(bits-1) - 1)``
    (the weight range of ``qh.low_bit_qconfig``). ``method``:
    ``"minmax"`` c = max|w|; ``"percentile"`` c = that percentile of |w|;
    ``"mse"`` the c among ``grid`` candidates ``max|w| * k / grid`` (k = 1..grid) that minimises
    the quantization MSE of the weights (min/max is one candidate, so MSE clipping is never worse).
    The MSE values it returns are remembered (bits, grid, value), so that ``check_mse_clip`` can
    reject them in an exercise that asks for the search by hand.

    Introduced in notebooks/07_when_int8_loses_accuracy.ipynb.
    """
    if not isinstance(weight, torch.Tensor) or not weight.is_floating_point():
        raise TypeError(f"weight must be a float tensor, got {type(weight).__name__}")
    bits = _check_bits(bits)
    if method not in CLIP_METHODS:
        raise ValueError(f"method must be one of {CLIP_METHODS}, got {method!r}")
    if not isinstance(per_channel, bool):
        raise TypeError(f"per_channel must be True or False, got {per_channel!r}")
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {percentile!r}")
    if isinstance(grid, bool) or not isinstance(grid, int) or grid < 1:
        raise ValueError(f"grid must be a positive int, got {grid!r}")
    w = weight.detach().float()
    flat = w.reshape(w.shape[0], -1) if per_channel else w.reshape(1, -1)
    amax = flat.abs().amax(dim=1).clamp_min(1e-12)
    if method == "minmax":
        clip = amax
    elif method == "percentile":
        clip = torch.quantile(flat.abs(), percentile / 100.0, dim=1).clamp_min(1e-12)
    else:
        qmax = 2 ** (bits - 1) - 1
        fractions = torch.arange(1, grid + 1, dtype=torch.float32) / grid  # (G,)
        cands = amax[:, None] * fractions[None, :]  # (C, G)
        scales = (cands / qmax)[:, :, None]  # (C, G, 1)
        err = ((_fq(flat[:, None, :], scales, qmax) - flat[:, None, :]) ** 2).sum(dim=2)  # (C, G)
        clip = cands.gather(1, err.argmin(dim=1, keepdim=True)).squeeze(1)
        if not _QUIET[0]:
            _MSE_CLIPS_HANDED_OUT.update((bits, grid, v) for v in clip.tolist())
    return clip if per_channel else clip.reshape(())


def quantize_weight(
    weight: torch.Tensor, *, bits: int = 8, per_channel: bool = False, method: str = "minmax", percentile: float = 99.9
) -> tuple[torch.Tensor, torch.Tensor]:
    """Round-to-nearest quantization of a weight on the symmetric grid of ``weight_clip``: returns ``(dequantized weight, scale)``.

    ``scale`` is a 0-d tensor (per tensor) or one entry per output channel; the
    dequantized weight has the weight's shape and lies on the grid (clipped at ``c``).

    Introduced in notebooks/07_when_int8_loses_accuracy.ipynb.
    """
    with _not_handed_out():
        clip = weight_clip(weight, bits=bits, per_channel=per_channel, method=method, percentile=percentile)
    qmax = 2 ** (bits - 1) - 1
    scale = clip / qmax
    s = scale.reshape(-1, *([1] * (weight.dim() - 1))) if per_channel else scale
    return _fq(weight.detach().float(), s, qmax), scale


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


def _inputs(batch: Any) -> torch.Tensor:
    return batch[0] if isinstance(batch, (tuple, list)) else batch


ACT_METHODS = ("minmax", "mse")


def _mse_range(x: torch.Tensor, qmin: int, qmax: int, grid: int) -> tuple[float, int]:
    """(scale, zero_point) of the affine grid whose clipping range ``[lo, hi] * k / grid`` (k = 1..grid) has the smallest MSE on ``x``."""
    lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    if hi - lo <= 0:
        return 1.0, qmin
    best = None
    for k in range(1, grid + 1):
        c_lo, c_hi = lo * k / grid, hi * k / grid
        scale = max((c_hi - c_lo) / (qmax - qmin), 1e-12)
        zero_point = int(min(max(round(qmin - c_lo / scale), qmin), qmax))
        err = float(((torch.fake_quantize_per_tensor_affine(x, scale, zero_point, qmin, qmax) - x) ** 2).mean())
        if best is None or err < best[0]:
            best = (err, scale, zero_point)
    return best[1], best[2]


def mse_activation_ranges(
    prepared: nn.Module, calib_loader: Iterable, *, grid: int = 100, num_batches: Optional[int] = None, max_values: int = 2**16, seed: int = 0
) -> nn.Module:
    """Activation range setting by MSE: a copy of a fake-quant model whose activation ranges minimise each activation's quantization error.

    ``prepared`` is any ``torch.ao`` QAT-prepared model (e.g. ``qh.fake_quant_ptq``'s
    or ``quantize_activations``'s result). Every ``activation_post_process``
    ``FakeQuantize`` (per tensor) gets the clipping range ``[min, max] * k / grid``
    (k = 1..grid; min and max of what it sees, 0 included) whose grid
    ``[quant_min .. quant_max]`` gives the smallest mean squared error on the
    calibration images (min/max is the candidate k = grid). Layer by layer in
    one forward pass over the calibration images stacked into one batch: each
    activation is measured with the activations before it already on their new
    grid, as the deployed model computes them (``max_values`` of its values,
    drawn with ``seed``, enter the search; a fake quant that is switched off
    gets its range but passes its input through). The weights are not touched.
    Returns the copy in eval mode with its activation observers off.

    Introduced in notebooks/07_when_int8_loses_accuracy.ipynb.
    """
    from .qat import fake_quant_modules

    if isinstance(grid, bool) or not isinstance(grid, int) or grid < 1:
        raise ValueError(f"grid must be a positive int, got {grid!r}")
    q = copy.deepcopy(prepared).eval()
    acts = {n: fq for n, fq in fake_quant_modules(q).items() if n.endswith("activation_post_process")}
    if not acts:
        raise ValueError("prepared has no activation FakeQuantize modules; prepare it first (qh.fake_quant_ptq or qh.quantize_activations)")
    xs = []
    for i, batch in enumerate(calib_loader):
        if num_batches is not None and i >= num_batches:
            break
        xs.append(_inputs(batch))
    if not xs:
        raise ValueError("calib_loader yielded no data")
    gen = torch.Generator().manual_seed(seed)

    def pre_hook(fq, args):
        x = args[0].detach().float().reshape(-1)
        if x.numel() > max_values:
            x = x[torch.randperm(x.numel(), generator=gen)[:max_values]]
        scale, zero_point = _mse_range(x, int(fq.quant_min), int(fq.quant_max), grid)
        fq.scale.copy_(torch.full_like(fq.scale, scale))
        fq.zero_point.copy_(torch.full_like(fq.zero_point, zero_point))
        fq.disable_observer()

    for fq in acts.values():
        if fq.scale.numel() != 1:
            raise ValueError("mse_activation_ranges handles per-tensor activation fake quants only")
    handles = [fq.register_forward_pre_hook(pre_hook) for fq in acts.values()]
    try:
        with torch.no_grad():
            q(torch.cat(xs))
    finally:
        for h in handles:
            h.remove()
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

    from .qat import calibrate_fake_quant, fake_quant_modules, low_bit_qconfig

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
    from .qat import fake_quant_modules

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
    from .qat import fake_quant_modules

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


# --------------------------------------------------------------------------- cross-layer equalization


def channel_ranges(model: nn.Module) -> dict[str, torch.Tensor]:
    """Max |w| per output channel of every Conv/Linear of ``model`` (fold BatchNorm first to see what gets quantized).

    Introduced in notebooks/07_when_int8_loses_accuracy.ipynb.
    """
    return {name: model.get_submodule(name).weight.detach().flatten(1).abs().amax(1) for name in weight_layers(model)}


def _conv_of(model: nn.Module, name: str, role: str) -> tuple[str, nn.Module]:
    """The Conv/Linear inside ``name`` (itself, or the [0] of a fused ConvReLU)."""
    modules = dict(model.named_modules())
    if not isinstance(name, str) or name not in modules or name == "":
        raise ValueError(f"{role} must name a module of the model, got {name!r}; Conv/Linear modules: {weight_layers(model)}")
    m = modules[name]
    if isinstance(m, _WEIGHTED):
        return name, m
    if isinstance(m, nn.Sequential) and len(m) > 0 and isinstance(m[0], _WEIGHTED):
        return f"{name}.0", m[0]
    raise ValueError(f"{role} {name!r} is a {type(m).__name__}, not a Conv/Linear (or a fused ConvReLU)")


_PASS_FUNCS = {F.relu, torch.relu}


def _is_relu(node: Any, modules: dict) -> bool:
    if node.op == "call_module":
        return isinstance(modules[node.target], nn.ReLU)
    if node.op == "call_function":
        return node.target in _PASS_FUNCS
    if node.op == "call_method":
        return node.target in ("relu", "relu_")
    return False


def _describe(node: Any, modules: dict) -> str:
    if node.op == "call_module":
        return f"{node.target!r} ({type(modules[node.target]).__name__})"
    return f"{getattr(node.target, '__name__', node.target)!s}"


def _path_between(model: nn.Module, first: str, second: str) -> list[str]:
    """Check that ``second``'s conv reads ``first``'s conv output through exactly one ReLU (Identity allowed); raise otherwise."""
    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception as exc:
        raise ValueError(f"model could not be traced with torch.fx ({type(exc).__name__}: {exc})") from exc
    modules = dict(model.named_modules())
    nodes = {n.target: n for n in graph.nodes if n.op == "call_module"}
    if first not in nodes or second not in nodes:
        missing = first if first not in nodes else second
        raise ValueError(f"{missing!r} is not called in the model's forward")
    node, relus, path = nodes[first], 0, []
    while True:
        users = list(node.users)
        if len(users) != 1:
            where = ", ".join(_describe(u, modules) for u in users) or "nothing"
            raise ValueError(
                f"layers not consecutive: the output of {node.name} goes to {where}, not only to {second!r}; "
                "equalization needs the second layer to be the only reader of the first"
            )
        node = users[0]
        if node.op == "call_module" and node.target == second:
            break
        if _is_relu(node, modules):
            relus += 1
        elif node.op == "call_module" and isinstance(modules[node.target], nn.Identity):
            pass
        else:
            raise ValueError(
                f"layers not consecutive: between {first!r} and {second!r} the model computes {_describe(node, modules)}; "
                "only a ReLU may sit between equalized layers (fold BatchNorm first with qh.fuse)"
            )
        path.append(node.name)
    if relus != 1:
        raise ValueError(
            f"missing ReLU between {first!r} and {second!r} (found {relus}): equalization relies on relu(x / s) = relu(x) / s "
            "for s > 0; a Conv without its ReLU in between is not a pair this helper equalizes"
        )
    return path


def _in_ranges(second: nn.Module) -> torch.Tensor:
    """Range of ``second``'s weights per *input* channel."""
    w = second.weight.detach()
    groups = getattr(second, "groups", 1)
    if groups == 1:
        return w.transpose(0, 1).flatten(1).abs().amax(1)
    if groups == w.shape[0] and w.shape[1] == 1:  # depthwise: filter i reads input channel i
        return w.flatten(1).abs().amax(1)
    raise ValueError(
        f"cannot equalize into a grouped convolution with groups={groups} ({type(second).__name__} {tuple(w.shape)}): "
        "only ordinary (groups=1) and depthwise (groups = in_channels = out_channels) convolutions are supported"
    )


def _scale_in(second: nn.Module, s: torch.Tensor) -> None:
    w = second.weight
    if getattr(second, "groups", 1) == 1:
        w.mul_(s.reshape(1, -1, *([1] * (w.dim() - 2))))
    else:
        w.mul_(s.reshape(-1, *([1] * (w.dim() - 1))))


def find_equalization_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """Every (first, second) pair of Conv/Linear modules of a folded model that ``equalize_pair`` accepts, in order.

    Introduced in notebooks/07_when_int8_loses_accuracy.ipynb.
    """
    layers = weight_layers(model)
    pairs = []
    for a in layers:
        for b in layers:
            if a == b:
                continue
            try:
                _path_between(model, a, b)
                _in_ranges(model.get_submodule(b))
            except ValueError:
                continue
            pairs.append((a, b))
    return pairs


def equalize_pair(model: nn.Module, first: str, second: str) -> torch.Tensor:
    """Cross-layer equalization of one Conv-ReLU-Conv pair, in place; returns the scales ``s``.

    Channel i of ``first`` (weights and bias) is divided by ``s_i`` and input
    channel i of ``second`` multiplied by ``s_i``, with ``s_i = sqrt(r1_i / r2_i)``
    (r1: range of ``first``'s output channel i, r2: range of ``second``'s input
    channel i), so that both ranges become ``sqrt(r1_i * r2_i)``. Because
    relu(x / s) = relu(x) / s for s > 0, the float function does not change.
    Names may be Conv/Linear modules or fused ConvReLU modules (their [0]).
    Raises ``ValueError`` when the layers are not consecutive, when there is no
    ReLU between them, or for grouped convolutions it cannot equalize.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    a_name, a = _conv_of(model, first, "first")
    b_name, b = _conv_of(model, second, "second")
    if a.weight.shape[0] != (b.weight.shape[1] * getattr(b, "groups", 1)):
        raise ValueError(
            f"layers not consecutive: {first!r} has {a.weight.shape[0]} output channels but {second!r} reads "
            f"{b.weight.shape[1] * getattr(b, 'groups', 1)}"
        )
    r2 = _in_ranges(b)
    _path_between(model, a_name, b_name)
    r1 = a.weight.detach().flatten(1).abs().amax(1)
    s = torch.sqrt(r1 / r2.clamp_min(1e-12)).clamp(1e-8, 1e8)
    s = torch.where((r1 > 0) & (r2 > 0), s, torch.ones_like(s))
    with torch.no_grad():
        a.weight.div_(s.reshape(-1, *([1] * (a.weight.dim() - 1))))
        if a.bias is not None:
            a.bias.div_(s)
        _scale_in(b, s)
    return s


def cross_layer_equalization(
    model: nn.Module, pairs: Optional[Sequence[tuple[str, str]]] = None, *, iterations: int = 10
) -> tuple[nn.Module, dict[tuple[str, str], torch.Tensor]]:
    """Equalize ``pairs`` (default: ``find_equalization_pairs``) ``iterations`` times over, on a copy.

    Chains such as conv -> depthwise -> pointwise share a layer between two
    pairs, so DFQ repeats the pass until the scales settle. Returns the copy and
    the product of the scales applied to each pair.

    Introduced in notebooks/07_when_int8_loses_accuracy.ipynb.
    """
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations must be a positive int, got {iterations!r}")
    q = copy.deepcopy(model)
    pairs = find_equalization_pairs(q) if pairs is None else list(pairs)
    if not pairs:
        raise ValueError("no Conv-ReLU-Conv pairs to equalize (fold BatchNorm first with qh.fuse)")
    total: dict[tuple[str, str], torch.Tensor] = {}
    for _ in range(iterations):
        for first, second in pairs:
            s = equalize_pair(q, first, second)
            total[(first, second)] = total.get((first, second), torch.ones_like(s)) * s
    return q, total


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


# --------------------------------------------------------------------------- AdaRound


_ZETA, _GAMMA = 1.1, -0.1


def _rect_sigmoid(v: torch.Tensor) -> torch.Tensor:
    """AdaRound's rectified sigmoid h(V) = clip(sigmoid(V) * (zeta - gamma) + gamma, 0, 1): exactly 0 or 1 once |V| is large enough."""
    return torch.clamp(torch.sigmoid(v) * (_ZETA - _GAMMA) + _GAMMA, 0, 1)


@dataclasses.dataclass
class AdaRoundResult:
    """What ``adaround`` returns.

    ``model``: a copy with every Conv/Linear weight on its grid, rounded as learned.
    Per layer: ``codes`` (int8, the weight's shape), ``scales``, ``converged``
    (fraction of the rounding variables h within 1e-3 of 0 or 1 at the end),
    ``flipped`` (fraction of codes that differ from round-to-nearest),
    ``loss_nearest`` / ``loss_adaround`` (reconstruction loss of the layer's
    output with nearest and with the learned rounding, on ``heldout_images``
    calibration images the optimisation never saw, or on the optimisation's
    own images when there are none). ``seconds``: wall time.
    """

    model: nn.Module
    codes: dict[str, torch.Tensor]
    scales: dict[str, torch.Tensor]
    converged: dict[str, float]
    flipped: dict[str, float]
    loss_nearest: dict[str, float]
    loss_adaround: dict[str, float]
    heldout_images: int
    seconds: float


def _followed_by_relu(model: nn.Module, name: str) -> bool:
    """True when the Conv/Linear ``name`` is the [0] of a fused ConvReLU/LinearReLU (its output goes through that ReLU)."""
    if "." not in name:
        return False
    parent = model.get_submodule(name.rsplit(".", 1)[0])
    return isinstance(parent, nn.Sequential) and len(parent) > 1 and parent[0] is model.get_submodule(name) and isinstance(parent[1], nn.ReLU)


def _rows(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The layer's input as rows of a matrix product: (samples, in_features) for Linear, (positions, in_channels * k * k) for Conv2d."""
    if isinstance(layer, nn.Linear):
        return x.reshape(-1, x.shape[-1])
    if isinstance(layer, nn.Conv2d):
        if layer.padding_mode != "zeros" or isinstance(layer.padding, str):
            raise ValueError(f"adaround supports Conv2d with numeric zero padding, got padding={layer.padding!r}, padding_mode={layer.padding_mode!r}")
        cols = F.unfold(x, layer.kernel_size, dilation=layer.dilation, padding=layer.padding, stride=layer.stride)
        return cols.transpose(1, 2).reshape(-1, cols.shape[1])
    raise ValueError(f"adaround supports Conv2d and Linear layers, got {type(layer).__name__}")


class _RowLayer:
    """A Conv2d/Linear as a product of rows (``_rows``) with its weight, with the gradient of that product by hand.

    ``pre(rows, weight)`` is the layer's output before its ReLU, (R, out_features); ``grad_weight(rows, d_pre)``
    the gradient of a loss with respect to the weight, given its gradient with respect to ``pre`` (the weight's
    shape). A grouped convolution is block-diagonal: group g's outputs read group g's input channels.
    """

    def __init__(self, layer: nn.Module):
        self.groups = getattr(layer, "groups", 1)
        self.bias = layer.bias.detach() if layer.bias is not None else None
        self.shape = layer.weight.shape

    def pre(self, rows: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        w = weight.reshape(self.shape[0], -1)
        if self.groups == 1:
            out = rows @ w.t()
        else:
            wg = w.reshape(self.groups, w.shape[0] // self.groups, w.shape[1])
            out = torch.einsum("rgi,goi->rgo", rows.reshape(rows.shape[0], self.groups, -1), wg).reshape(rows.shape[0], -1)
        return out if self.bias is None else out + self.bias

    def grad_weight(self, rows: torch.Tensor, d_pre: torch.Tensor) -> torch.Tensor:
        if self.groups == 1:
            g = d_pre.t() @ rows
        else:
            r = rows.shape[0]
            g = torch.einsum("rgo,rgi->goi", d_pre.reshape(r, self.groups, -1), rows.reshape(r, self.groups, -1))
        return g.reshape(self.shape)


def _reconstruction(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """AdaRound's reconstruction loss as in AIMET: squared error summed over output channels, averaged over rows."""
    return ((out - target) ** 2).sum(dim=1).mean()


def _layer_inputs(model: nn.Module, name: str, images: torch.Tensor) -> torch.Tensor:
    """The input of ``model``'s module ``name`` (or of the QAT module that replaced its fused parent) on ``images``."""
    modules = dict(model.named_modules())
    target = modules.get(name)
    if not isinstance(target, _WEIGHTED):
        target = modules[name.rsplit(".", 1)[0]]  # prepare_qat swaps a fused ConvReLU for one QAT module at the parent's name
    got: dict[str, torch.Tensor] = {}
    handle = target.register_forward_hook(lambda _m, inp, _o: got.__setitem__("x", inp[0].detach()))
    try:
        with torch.no_grad():
            model(images)
    finally:
        handle.remove()
    return got["x"]


def _optimise_rounding(
    v: torch.Tensor, rows_layer: _RowLayer, relu: bool, x: torch.Tensor, target: torch.Tensor, w_floor: torch.Tensor, s: torch.Tensor, qmax: int,
    *, iterations: int, lr: float, reg_weight: float, beta: tuple, warm: int, batch_size: int, generator: torch.Generator,
) -> None:
    """AdaRound's optimisation of one layer, in place on ``v``: Adam on reconstruction + regulariser, gradients written out.

    The same arithmetic as autograd through ``_rect_sigmoid``, ``torch.clamp``, the layer, its ReLU,
    ``_reconstruction`` and the regulariser, followed by ``torch.optim.Adam`` (default betas and eps), at about
    half the cost per step (no graph to build; tests compare it with autograd and torch's Adam).
    """
    b1, b2, eps = 0.9, 0.999, 1e-8
    m, m2 = torch.zeros_like(v), torch.zeros_like(v)
    rows = min(batch_size, len(x))
    for it in range(iterations):
        idx = torch.randint(0, len(x), (rows,), generator=generator)
        xb, tb = x[idx], target[idx]
        sig = torch.sigmoid(v)
        h_raw = sig * (_ZETA - _GAMMA) + _GAMMA
        h = h_raw.clamp(0, 1)
        soft = w_floor + h
        pre = rows_layer.pre(xb, soft.clamp(-qmax, qmax) * s)
        out = torch.relu(pre) if relu else pre
        d_pre = (2.0 / rows) * (out - tb)                        # d/d out of sum over channels, mean over rows
        if relu:
            d_pre = d_pre * (pre > 0)
        g_h = rows_layer.grad_weight(xb, d_pre) * s * ((soft >= -qmax) & (soft <= qmax))
        if it >= warm:
            rel = (it - warm) / max(1, iterations - warm)
            b = beta[1] + 0.5 * (beta[0] - beta[1]) * (1 + math.cos(rel * math.pi))
            u = 2 * h - 1
            g_h = g_h - reg_weight * 2 * b * u.abs().pow(b - 1) * torch.sign(u)   # d/dh of reg * (1 - |2h - 1|^b)
        g_v = g_h * (_ZETA - _GAMMA) * sig * (1 - sig) * ((h_raw >= 0) & (h_raw <= 1))
        step = it + 1
        m.mul_(b1).add_(g_v, alpha=1 - b1)
        m2.mul_(b2).addcmul_(g_v, g_v, value=1 - b2)
        v.addcdiv_(m, (m2 / (1 - b2**step)).sqrt_().add_(eps), value=-lr / (1 - b1**step))


def adaround(
    model: nn.Module,
    calib_loader: Iterable,
    *,
    bits: int = 4,
    per_channel: bool = False,
    method: str = "minmax",
    act_bits: Optional[int] = None,
    iterations: int = 2000,
    lr: float = 1e-2,
    reg_weight: float = 0.1,
    beta: tuple[float, float] = (20.0, 2.0),
    warm_up: float = 0.2,
    num_samples: int = 256,
    max_rows: int = 8192,
    batch_size: int = 256,
    seed: int = 0,
) -> AdaRoundResult:
    """AdaRound (Nagel et al. 2020): learn, per weight, whether to round down or up, one layer after the other.

    For each Conv2d/Linear in order, the grid is fixed (``bits``, ``per_channel``,
    ``method`` as in ``weight_clip``). Each weight gets a variable ``V``; the
    rectified sigmoid ``h(V) = clip(sigmoid(V) * (1.1 + 0.1) - 0.1, 0, 1)`` gives
    the soft weight ``scale * clip(floor(w / scale) + h(V), -qmax, qmax)``. Adam
    (``lr``) minimises, over ``iterations`` steps,

        || f(W x) - f(W_soft x~) ||^2  +  reg_weight * sum over weights of (1 - |2 h(V) - 1|^beta)

    where ``x`` is the layer's input in the float model, ``x~`` its input in the
    model whose earlier layers are already rounded (and, with ``act_bits``, whose
    activations are fake-quantized to ``act_bits`` bits, calibrated on the
    same images), and ``f`` the ReLU when the layer is fused with one, else the
    identity (the paper's asymmetric reconstruction). The loss is summed over
    output channels and averaged over rows (AIMET's normalisation). The
    regulariser is off for the first ``warm_up`` fraction of the steps; then
    ``beta`` falls from ``beta[0]`` to ``beta[1]`` on a cosine (as AIMET does):
    a large beta only pushes the h that are already near 0 or 1, beta = 2 pushes
    every h, so at the end every h is 0 or 1 (``converged`` measures it).
    The final code is ``floor(w / scale) + (h >= 0.5)``: the floor or the ceil.

    Speed: each layer's inputs are cached once, as rows of a matrix product (one
    row per output position of a Conv2d, from ``num_samples`` calibration images, at most
    ``max_rows`` rows drawn with ``seed``); each step uses ``batch_size`` rows.
    Calibration images after the first ``num_samples`` (up to as many again) are
    held out: the reported losses are measured on them. Runs on one thread
    (the caller's thread count is restored after): its steps are small, and a
    second thread costs more in synchronisation than it gains. Returns a copy;
    ``model`` (folded, eval) is not changed.

    Introduced in notebooks/07_when_int8_loses_accuracy.ipynb.
    """
    bits = _check_bits(bits)
    if act_bits is not None:
        act_bits = _check_bits(act_bits)
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations must be a positive int, got {iterations!r}")
    for pname, pvalue in (("num_samples", num_samples), ("batch_size", batch_size), ("max_rows", max_rows)):
        if isinstance(pvalue, bool) or not isinstance(pvalue, int) or pvalue < 1:
            raise ValueError(f"{pname} must be a positive int, got {pvalue!r}")
    if not isinstance(lr, (int, float)) or lr < 0:
        raise ValueError(f"lr must be a number >= 0, got {lr!r}")
    if not isinstance(reg_weight, (int, float)) or reg_weight < 0:
        raise ValueError(f"reg_weight must be a number >= 0, got {reg_weight!r}")
    if not (isinstance(warm_up, (int, float)) and 0 <= warm_up < 1):
        raise ValueError(f"warm_up must be a fraction in [0, 1), got {warm_up!r}")
    if not (isinstance(beta, (tuple, list)) and len(beta) == 2 and all(isinstance(b, (int, float)) and b > 0 for b in beta)):
        raise ValueError(f"beta must be (start, end), two positive numbers, got {beta!r}")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # thousands of small steps: a second thread costs more in synchronisation than it gains
    try:
        return _adaround(model, calib_loader, bits=bits, per_channel=per_channel, method=method, act_bits=act_bits, iterations=iterations,
                         lr=lr, reg_weight=reg_weight, beta=beta, warm_up=warm_up, num_samples=num_samples, max_rows=max_rows,
                         batch_size=batch_size, seed=seed)
    finally:
        torch.set_num_threads(threads)


def _adaround(model: nn.Module, calib_loader: Iterable, *, bits: int, per_channel: bool, method: str, act_bits: Optional[int], iterations: int,
              lr: float, reg_weight: float, beta: tuple, warm_up: float, num_samples: int, max_rows: int, batch_size: int, seed: int) -> AdaRoundResult:
    """``adaround`` after its arguments are checked, on the calling thread count."""
    start = time.perf_counter()
    qmax = 2 ** (bits - 1) - 1
    xs = []
    for batch in calib_loader:
        xs.append(_inputs(batch))
        if sum(len(x) for x in xs) >= 2 * num_samples:
            break
    if not xs:
        raise ValueError("calib_loader yielded no data")
    all_images = torch.cat(xs)
    images, heldout = all_images[:num_samples], all_images[num_samples : 2 * num_samples]
    q = copy.deepcopy(model).eval()
    gen = torch.Generator().manual_seed(seed)
    result = AdaRoundResult(q, {}, {}, {}, {}, {}, {}, len(heldout), 0.0)
    warm = int(warm_up * iterations)
    for name in weight_layers(q):
        layer = q.get_submodule(name)
        ref = model.get_submodule(name)
        rows_layer, relu = _RowLayer(ref), _followed_by_relu(model, name)

        def out_of(rows: torch.Tensor, weight: torch.Tensor, rows_layer=rows_layer, relu=relu) -> torch.Tensor:
            pre = rows_layer.pre(rows, weight)
            return torch.relu(pre) if relu else pre

        source = q if act_bits is None else quantize_activations(q, calib_loader, bits=act_bits)
        eval_images = heldout if len(heldout) else images
        x_q, x_f = _rows(ref, _layer_inputs(source, name, images)), _rows(ref, _layer_inputs(model, name, images))
        e_q, e_f = _rows(ref, _layer_inputs(source, name, eval_images)), _rows(ref, _layer_inputs(model, name, eval_images))
        keep = torch.randperm(len(x_q), generator=gen)[:max_rows]
        x_q, x_f = x_q[keep], x_f[keep]
        w = ref.weight.detach().float()
        target, e_target = out_of(x_f, w), out_of(e_f, w)
        with _not_handed_out():
            scale = weight_clip(w, bits=bits, per_channel=per_channel, method=method) / qmax
        s = scale.reshape(-1, *([1] * (w.dim() - 1))) if per_channel else scale
        w_floor = torch.floor(w / s)
        rest = (w / s - w_floor).clamp(1e-6, 1 - 1e-6)
        v = -torch.log((_ZETA - _GAMMA) / (rest - _GAMMA) - 1)  # h(V) = rest: the soft weight starts at w
        _optimise_rounding(v, rows_layer, relu, x_q, target, w_floor, s, qmax, iterations=iterations, lr=lr, reg_weight=reg_weight,
                           beta=beta, warm=warm, batch_size=batch_size, generator=gen)
        h = _rect_sigmoid(v)
        codes = torch.clamp(w_floor + (h >= 0.5).float(), -qmax, qmax)
        nearest = torch.clamp(torch.round(w / s), -qmax, qmax)
        with torch.no_grad():
            layer.weight.copy_(codes * s)
        result.converged[name] = float(((h < 1e-3) | (h > 1 - 1e-3)).float().mean())
        result.flipped[name] = float((codes != nearest).float().mean())
        result.loss_nearest[name] = float(_reconstruction(out_of(e_q, nearest * s), e_target))
        result.loss_adaround[name] = float(_reconstruction(out_of(e_q, codes * s), e_target))
        result.codes[name] = codes.to(torch.int8)
        result.scales[name] = scale.detach()
    result.seconds = time.perf_counter() - start
    return result


# --------------------------------------------------------------------------- PT2E: the numeric debugger and selective float


def pt2e_quantizer(*, engine: Optional[str] = None, per_channel: bool = True, float_modules: Sequence[str] = ()) -> Any:
    """The PT2E quantizer for ``engine``: ``X86InductorQuantizer`` (x86, fbgemm) or ``ArmInductorQuantizer`` (qnnpack).

    ``per_channel=False`` swaps the weight spec for a per-tensor symmetric
    min/max one (the patient of notebook 03); ``float_modules`` are left in
    float with ``set_module_name_qconfig(name, None)``, the PT2E twin of
    ``qh.keep_in_float``.

    Introduced in notebooks/07_when_int8_loses_accuracy.ipynb.
    """
    from torchao.quantization.pt2e import MinMaxObserver, PerChannelMinMaxObserver
    from torchao.quantization.pt2e.quantizer import arm_inductor_quantizer as aiq
    from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as xiq

    engine = check_engine(engine)
    if not isinstance(per_channel, bool):
        raise TypeError(f"per_channel must be True or False, got {per_channel!r}")
    if isinstance(float_modules, str):
        float_modules = [float_modules]
    if engine in ("x86", "fbgemm", "onednn"):
        quantizer, config = xiq.X86InductorQuantizer(), xiq.get_default_x86_inductor_quantization_config()
    elif engine == "qnnpack":
        quantizer, config = aiq.ArmInductorQuantizer(), aiq.get_default_arm_inductor_quantization_config()
    else:
        raise ValueError(f"engine {engine!r} has no PT2E quantizer here; use 'x86', 'fbgemm' or 'qnnpack'")
    w = config.weight
    if per_channel:
        w = dataclasses.replace(w, qscheme=torch.per_channel_symmetric, ch_axis=0, observer_or_fake_quant_ctr=PerChannelMinMaxObserver.with_args(eps=2**-12))
    else:
        w = dataclasses.replace(w, qscheme=torch.per_tensor_symmetric, ch_axis=None, observer_or_fake_quant_ctr=MinMaxObserver.with_args(eps=2**-12))
    config = dataclasses.replace(config, weight=w)
    quantizer.set_global(config)
    for name in float_modules:
        quantizer.set_module_name_qconfig(name, None)
    return quantizer


def pt2e_quantize(model: nn.Module, calib_loader: Iterable, example: torch.Tensor, quantizer: Any, *, num_batches: Optional[int] = None) -> torch.fx.GraphModule:
    """Export ``model`` (batch dimension dynamic), prepare with ``quantizer``, calibrate, convert: the PT2E Q/DQ graph module.

    Introduced in notebooks/07_when_int8_loses_accuracy.ipynb.
    """
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from .ptq import calibrate

    exported = torch.export.export(copy.deepcopy(model).eval(), (example,), dynamic_shapes=({0: torch.export.Dim("batch")},)).module()
    prepared = prepare_pt2e(exported, quantizer)
    calibrate(prepared, calib_loader, num_batches=num_batches)
    return convert_pt2e(prepared)


def pt2e_node_sqnr(
    model: nn.Module, calib_loader: Iterable, example: torch.Tensor, quantizer: Any, *, num_batches: Optional[int] = None
) -> tuple[list[dict], torch.fx.GraphModule]:
    """The PT2E numeric debugger: SQNR (dB) of every node's output, PT2E-quantized vs float, on ``example``.

    How torchao 0.18 pairs the nodes (``torchao/quantization/pt2e/_numeric_debugger.py``):
    ``torch.export`` and every FX pass after it record where each node came from
    in ``node.meta["from_node"]``; ``prepare_for_propagation_comparison`` puts an
    output logger after every node that comes from the original graph, keyed by
    its oldest ancestor (``_extract_node_source_debug_info`` follows
    ``from_node`` back to it: its name and graph id), in the float and in the
    quantized model alike; ``extract_results_from_loggers`` collects what the
    loggers saw and ``compare_results`` pairs the two models' entries with the
    same key. (``generate_numeric_debug_handle`` is not needed: in torchao 0.18
    nothing reads the handles it writes.) Rows ``{"node", "module", "sqnr_db"}`` for
    the ReLU and linear nodes (block outputs; a conv node's own output is not
    comparable, BatchNorm is folded into it only in the quantized graph), in graph order (errors accumulate along the graph, as
    in ``qh.sensitivity_table``), and the converted graph module itself.

    Introduced in notebooks/07_when_int8_loses_accuracy.ipynb.
    """
    from torchao.quantization.pt2e import compare_results, extract_results_from_loggers, prepare_for_propagation_comparison
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from .ptq import calibrate

    ep = torch.export.export(copy.deepcopy(model).eval(), (example,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    float_gm = ep.module()
    prepared = prepare_pt2e(copy.deepcopy(float_gm), quantizer)
    calibrate(prepared, calib_loader, num_batches=num_batches)
    quantized = convert_pt2e(prepared)
    ref_logged = prepare_for_propagation_comparison(float_gm)
    act_logged = prepare_for_propagation_comparison(quantized)
    with torch.no_grad():
        ref_logged(example)
        act_logged(example)
    comparison = compare_results(extract_results_from_loggers(ref_logged), extract_results_from_loggers(act_logged))
    order = {n.name: i for i, n in enumerate(float_gm.graph.nodes)}
    rows = []
    for info, summary in comparison.items():
        # block outputs: after the ReLU (BatchNorm is folded into the conv in the quantized graph only, so the
        # conv node's own output differs from the float conv's by the BatchNorm) and the classifier
        if not (summary.ref_node_name.startswith("relu") or summary.ref_node_name.startswith("linear")):
            continue
        sq = summary.results[0].sqnr
        rows.append({"node": summary.ref_node_name, "module": summary.ref_module_stack, "sqnr_db": float(sq)})
    rows.sort(key=lambda r: order.get(r["node"], len(order)))
    return rows, quantized


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
