"""AdaRound (Nagel et al. 2020): per-weight up/down rounding learned layer by layer (notebook 07).

Introduced in notebooks/07_when_int8_loses_accuracy.ipynb.

``adaround`` learns, for each weight layer of a folded model, whether each weight rounds up or down, so that the
layer's output matches the float layer's. Part of the recovery flow of ``qhelpers.recovery``.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from typing import Iterable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .range_setting import _check_bits, _inputs, _not_handed_out, weight_clip
from .wa_simulation import _WEIGHTED, quantize_activations, weight_layers

__all__ = [
    "AdaRoundResult",
    "adaround",
]


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
