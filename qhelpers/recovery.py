"""When INT8 loses accuracy: find the cause, recover it without training.

Introduced in notebooks/07_when_int8_loses_accuracy.ipynb.

The debugging flow and the post-training fixes of Nagel et al., "A White Paper
on Neural Network Quantization" (2021), written from scratch on the course's
models (no AIMET):

* a **simulation** in which weights and activations are quantized separately
  (``quantize_weights``: W-bits weights written into a float copy, on the grid;
  ``quantize_activations``: ``torch.ao`` fake quant on the activations only), so
  that W8A32 and W32A8 (whole model or one layer) answer "weights or activations?";
* **range setting** for weights: min/max, percentile or MSE-optimal clipping
  (``weight_clip``), per tensor or per channel;
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

import copy
import dataclasses
import math
import time
from typing import Any, Iterable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .checks import NotFilledIn, _blank_safe, not_filled, report
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
    "check_culprit",
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

    Introduced in notebooks/07_when_int8_loses_accuracy.ipynb.
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


def weight_clip(
    weight: torch.Tensor, *, bits: int = 8, per_channel: bool = False, method: str = "minmax", percentile: float = 99.9, grid: int = 100
) -> torch.Tensor:
    """The clipping value ``c`` (one per tensor, or one per output channel) of a symmetric ``bits``-bit weight grid.

    The grid is ``scale * [-(2^(bits-1) - 1) ... 2^(bits-1) - 1]`` with ``scale = c / (2^(bits-1) - 1)``
    (the weight range of ``qh.low_bit_qconfig``). ``method``:
    ``"minmax"`` c = max|w|; ``"percentile"`` c = that percentile of |w|;
    ``"mse"`` the c among ``grid`` candidates ``max|w| * k / grid`` (k = 1..grid) that minimises
    the quantization MSE of the weights (min/max is one candidate, so MSE clipping is never worse).
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
    return clip if per_channel else clip.reshape(())


def quantize_weight(
    weight: torch.Tensor, *, bits: int = 8, per_channel: bool = False, method: str = "minmax", percentile: float = 99.9
) -> tuple[torch.Tensor, torch.Tensor]:
    """Round-to-nearest quantization of a weight on the symmetric grid of ``weight_clip``: returns ``(dequantized weight, scale)``.

    ``scale`` is a 0-d tensor (per tensor) or one entry per output channel; the
    dequantized weight has the weight's shape and lies on the grid (clipped at ``c``).

    Introduced in notebooks/07_when_int8_loses_accuracy.ipynb.
    """
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


def quantize_weights(
    model: nn.Module,
    *,
    bits: int = 8,
    per_channel: bool = False,
    method: str = "minmax",
    percentile: float = 99.9,
    layers: Optional[Sequence[str]] = None,
) -> nn.Module:
    """A copy of ``model`` whose Conv/Linear weights (all, or only ``layers``) are replaced by their quantized values.

    The copy still runs in float (activations untouched: W``bits``A32); biases stay float.

    Introduced in notebooks/07_when_int8_loses_accuracy.ipynb.
    """
    layers = _check_layers(model, layers)
    q = copy.deepcopy(model)
    with torch.no_grad():
        for name in layers:
            m = q.get_submodule(name)
            m.weight.copy_(quantize_weight(m.weight, bits=bits, per_channel=per_channel, method=method, percentile=percentile)[0])
    return q


def _inputs(batch: Any) -> torch.Tensor:
    return batch[0] if isinstance(batch, (tuple, list)) else batch


def quantize_activations(
    model: nn.Module, calib_loader: Iterable, *, bits: int = 8, layers: Optional[Sequence[str]] = None, num_batches: Optional[int] = None
) -> nn.Module:
    """Fake-quantize the activations only (W32A``bits``) of a folded model with stubs, calibrated on ``calib_loader``.

    Uses ``qh.low_bit_qconfig(bits)`` (moving-average min/max observers, unsigned
    ``bits``-bit codes, as in notebook 04) with ``prepare_qat`` (no fusion: the
    model is folded already) and ``qh.calibrate_fake_quant``; every weight fake quant is switched off, so the
    weights stay exactly as they are in ``model`` (quantize them with
    ``quantize_weights`` first for W``b``A``bits``). ``layers``: names of the
    modules whose *output* is quantized (e.g. ``"quant"`` for the input,
    ``"dw1.0"``); None quantizes every activation. Returns the fake-quant model in eval mode.

    Introduced in notebooks/07_when_int8_loses_accuracy.ipynb.
    """
    from torch.ao.quantization import prepare_qat

    from .qat import calibrate_fake_quant, fake_quant_modules, low_bit_qconfig

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    bits = _check_bits(bits)
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
) -> nn.Module:
    """W``weight_bits``A``act_bits`` simulation of a folded model; None leaves that side in float (e.g. W8A32: ``act_bits=None``).

    Introduced in notebooks/07_when_int8_loses_accuracy.ipynb.
    """
    q = model
    if weight_bits is not None:
        q = quantize_weights(q, bits=weight_bits, per_channel=per_channel, method=method, percentile=percentile)
    if act_bits is not None:
        q = quantize_activations(q, calib_loader, bits=act_bits, num_batches=num_batches)
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
    the Conv/Linear outputs before any ReLU. ``layers``: default every Conv/Linear.
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
    return torch.clamp(torch.sigmoid(v) * (_ZETA - _GAMMA) + _GAMMA, 0, 1)


@dataclasses.dataclass
class AdaRoundResult:
    """What ``adaround`` returns: the model with rounded weights, per layer the integer codes, scales and losses, and the time taken."""

    model: nn.Module
    codes: dict[str, torch.Tensor]
    scales: dict[str, torch.Tensor]
    loss_nearest: dict[str, float]
    loss_adaround: dict[str, float]
    flipped: dict[str, float]
    seconds: float


def _layer_fn(m: nn.Module):
    if isinstance(m, nn.Linear):
        return lambda x, w: F.linear(x, w, m.bias)
    if isinstance(m, nn.Conv2d):
        return lambda x, w: F.conv2d(x, w, m.bias, m.stride, m.padding, m.dilation, m.groups)
    raise ValueError(f"adaround supports Conv2d and Linear layers, got {type(m).__name__}")


def adaround(
    model: nn.Module,
    calib_loader: Iterable,
    *,
    bits: int = 4,
    per_channel: bool = False,
    method: str = "minmax",
    iterations: int = 200,
    lr: float = 1e-2,
    reg_weight: float = 0.01,
    num_samples: int = 256,
    batch_size: int = 32,
    seed: int = 0,
) -> AdaRoundResult:
    """AdaRound (Nagel et al. 2020): learn, per weight, whether to round down or up, layer by layer.

    For each Conv2d/Linear in order: the grid (``bits``, ``per_channel``,
    ``method`` as in ``weight_clip``) is fixed; ``V`` (one per weight) gives the
    soft rounding ``h(V) = clip(sigmoid(V) * 1.2 - 0.1, 0, 1)`` and the soft
    weight ``scale * clamp(floor(w / scale) + h(V))``. Adam minimises the
    layer-output MSE against the float layer (inputs taken from the model with
    the layers before already rounded, ``num_samples`` calibration images,
    ``batch_size`` of them per step) plus
    ``reg_weight * sum(1 - |2h - 1|^beta)``, beta annealed from 20 to 2 after a
    20 % warm-up without it, which pushes every h to 0 or 1. Final codes are
    ``floor(w / scale) + (h >= 0.5)``: each is the floor or the ceil of
    ``w / scale`` (clamped to the grid). Returns a copy; ``model`` is not changed.

    Introduced in notebooks/07_when_int8_loses_accuracy.ipynb.
    """
    bits = _check_bits(bits)
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations must be a positive int, got {iterations!r}")
    for pname, pvalue in (("num_samples", num_samples), ("batch_size", batch_size)):
        if isinstance(pvalue, bool) or not isinstance(pvalue, int) or pvalue < 1:
            raise ValueError(f"{pname} must be a positive int, got {pvalue!r}")
    start = time.perf_counter()
    qmax = 2 ** (bits - 1) - 1
    xs = []
    for batch in calib_loader:
        xs.append(_inputs(batch))
        if sum(len(x) for x in xs) >= num_samples:
            break
    if not xs:
        raise ValueError("calib_loader yielded no data")
    images = torch.cat(xs)[:num_samples]
    q = copy.deepcopy(model).eval()
    gen = torch.Generator().manual_seed(seed)
    result = AdaRoundResult(q, {}, {}, {}, {}, {}, 0.0)
    for name in weight_layers(q):
        layer = q.get_submodule(name)
        fn = _layer_fn(layer)
        ref_layer = model.get_submodule(name)
        got: dict[str, torch.Tensor] = {}
        h1 = layer.register_forward_hook(lambda _m, inp, _o: got.__setitem__("x", inp[0].detach()))
        h2 = ref_layer.register_forward_hook(lambda _m, inp, _o: got.__setitem__("x_float", inp[0].detach()))
        with torch.no_grad():
            q(images)
            model(images)
        h1.remove()
        h2.remove()
        x = got["x"]
        w = ref_layer.weight.detach().float()
        with torch.no_grad():
            target = fn(got["x_float"], w)
        clip = weight_clip(w, bits=bits, per_channel=per_channel, method=method)
        scale = clip / qmax
        s = scale.reshape(-1, *([1] * (w.dim() - 1))) if per_channel else scale
        w_floor = torch.floor(torch.clamp(w / s, -qmax, qmax))
        rest = torch.clamp(w / s, -qmax, qmax) - w_floor  # in [0, 1)
        # start from h(V) = rest, i.e. the soft weight equals the (clamped) float weight
        v = -torch.log((_ZETA - _GAMMA) / (rest - _GAMMA) - 1)
        v = v.clone().requires_grad_(True)
        opt = torch.optim.Adam([v], lr=lr)
        warm = int(0.2 * iterations)
        with torch.no_grad():
            nearest = torch.clamp(torch.round(w / s), -qmax, qmax) * s
            result.loss_nearest[name] = float(F.mse_loss(fn(x, nearest), target))
        batch = min(batch_size, len(x))
        for it in range(iterations):
            idx = torch.randint(0, len(x), (batch,), generator=gen)
            h = _rect_sigmoid(v)
            w_soft = torch.clamp(w_floor + h, -qmax, qmax) * s
            loss = F.mse_loss(fn(x[idx], w_soft), target[idx])
            if it >= warm:
                beta = 20 + (2 - 20) * (it - warm) / max(1, iterations - warm - 1)
                loss = loss + reg_weight * (1 - (2 * h - 1).abs().pow(beta)).sum() / h.numel()
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            up = (_rect_sigmoid(v) >= 0.5).float()
            codes = torch.clamp(w_floor + up, -qmax, qmax)
            layer.weight.copy_(codes * s)
            result.loss_adaround[name] = float(F.mse_loss(fn(x, layer.weight), target))
            result.flipped[name] = float((codes != torch.clamp(torch.round(w / s), -qmax, qmax)).float().mean())
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

    ``generate_numeric_debug_handle`` tags the exported program's nodes,
    ``prepare_pt2e``/``convert_pt2e`` keep the tags on the nodes they copy,
    ``prepare_for_propagation_comparison`` adds an output logger to every tagged
    node of both models, ``extract_results_from_loggers`` collects what they saw
    and ``compare_results`` pairs them. Rows ``{"node", "module", "sqnr_db"}`` for
    the ReLU and linear nodes (block outputs; a conv node's own output is not
    comparable, BatchNorm is folded into it only in the quantized graph), in graph order (errors accumulate along the graph, as
    in ``qh.sensitivity_table``), and the converted graph module itself.

    Introduced in notebooks/07_when_int8_loses_accuracy.ipynb.
    """
    from torchao.quantization.pt2e import (
        compare_results,
        extract_results_from_loggers,
        generate_numeric_debug_handle,
        prepare_for_propagation_comparison,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from .ptq import calibrate

    ep = torch.export.export(copy.deepcopy(model).eval(), (example,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    generate_numeric_debug_handle(ep)
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
def check_culprit(answer: Any, float_model: nn.Module, eval_loader: Iterable, *, bits: int = 8, per_channel: bool = False) -> bool:
    """Exercise ("predict first"): the layer whose weights alone, quantized to ``bits``, cost the most accuracy on ``eval_loader``.

    Accepts the Conv/Linear name (``"dw1.0.0"``), its fused module (``"dw1.0"``) or its block (``"dw1"``).

    Introduced in notebooks/07_when_int8_loses_accuracy.ipynb.
    """
    if not_filled(answer):
        raise NotFilledIn("culprit")
    if not isinstance(answer, str):
        raise TypeError(f"answer must be a layer name (str), got {type(answer).__name__}")
    from .metrics import accuracy

    layers = weight_layers(float_model)
    accs = {name: accuracy(quantize_weights(float_model, bits=bits, per_channel=per_channel, layers=[name]), eval_loader) for name in layers}
    worst = min(accs, key=accs.get)
    short = {name[:-2] if name.endswith(".0") else name: name for name in layers}
    if short.get(answer, answer) == worst or worst.startswith(answer + "."):
        return report("culprit", True)
    if answer not in layers and answer not in short:
        return report("culprit", False, f"{answer!r} is not a quantized layer of this model; choose among {sorted(short)}")
    return report("culprit", False, f"quantizing only {answer!r}'s weights costs little; look for the layer whose channels' weight ranges differ most")


@_blank_safe
def check_cle_scales(scales: Any, first_weight: torch.Tensor, second_weight: torch.Tensor) -> bool:
    """Exercise: the DFQ scales ``s_i = sqrt(r1_i / r2_i)`` of a Conv-ReLU-Conv pair (second conv groups=1).

    Introduced in notebooks/07_when_int8_loses_accuracy.ipynb.
    """
    if not_filled(scales):
        raise NotFilledIn("scales")
    try:
        got = torch.as_tensor(scales).detach().double().reshape(-1)
    except Exception as exc:
        raise TypeError(f"scales must be a tensor or list of numbers, got {type(scales).__name__}") from exc
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
def check_mse_clip(clip: Any, weight: torch.Tensor, *, bits: int = 4) -> bool:
    """Exercise: the MSE-optimal per-tensor clipping value of ``weight`` on the grid max|w| * k / 100.

    Introduced in notebooks/07_when_int8_loses_accuracy.ipynb.
    """
    if not_filled(clip):
        raise NotFilledIn("clip")
    try:
        got = float(torch.as_tensor(clip).reshape(()))
    except Exception as exc:
        raise TypeError(f"clip must be one number (per tensor), got {type(clip).__name__}") from exc
    expected = float(weight_clip(weight, bits=bits, method="mse"))
    amax = float(weight.abs().max())
    if math.isclose(got, expected, rel_tol=1e-4):
        return report("MSE clip", True)
    if math.isclose(got, amax, rel_tol=1e-4):
        return report("MSE clip", False, "that is min/max (no clipping): try smaller clipping values too and keep the one with the lowest MSE")
    qmax = 2 ** (bits - 1) - 1
    if math.isclose(got * qmax, expected, rel_tol=1e-4) or math.isclose(got, expected / qmax, rel_tol=1e-4):
        return report("MSE clip", False, "that looks like a scale, not a clipping value (clip = scale * (2^(bits-1) - 1))")
    return report("MSE clip", False, f"for {bits} bits the grid is clip / {qmax} * [-{qmax} .. {qmax}]; measure the MSE of each candidate")
