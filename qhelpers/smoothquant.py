"""Activation outliers and SmoothQuant (Xiao et al. 2023), with a simulated W8A8 linear layer (notebook 06).

Introduced in notebooks/06_linear_layers_and_transformers.ipynb.

``activation_channel_max`` finds the outlier channels; ``smoothquant_scales`` and ``smooth_layernorm_linears``
move them into the weights; ``w8a8_linear`` and ``simulate_w8a8`` measure the result with INT8 weights and
activations.
"""

from __future__ import annotations

import copy
from typing import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .quantmath import _check_float_tensor, dequantize, qparams_from_tensor, quantize
from .helper_trap import _UsedHelper  # noqa: F401  (the trap linear_checks swaps into this module's helpers raises it)

__all__ = [
    "activation_channel_max",
    "smoothquant_scales",
    "smooth_layernorm_linears",
    "w8a8_linear",
    "simulate_w8a8",
]


# --------------------------------------------------------------------------- outliers and SmoothQuant


@torch.no_grad()
def activation_channel_max(model: nn.Module, batches: Iterable, modules: dict[str, nn.Module]) -> dict[str, torch.Tensor]:
    """``max |x_j|`` over every token of every batch, for each input channel ``j`` of each module in ``modules``.

    ``modules`` maps a name to a submodule of ``model`` (e.g. a Linear);
    ``batches`` yields inputs or (inputs, labels). Returns {name: (in_features,)}.

    Introduced in notebooks/06_linear_layers_and_transformers.ipynb.
    """
    if not modules:
        raise ValueError("modules is empty; give {name: submodule} for the layers whose inputs to measure")
    found: dict[str, torch.Tensor] = {}

    def hook(name: str):
        def fn(_mod: nn.Module, args: tuple) -> None:
            x = args[0].detach().abs().reshape(-1, args[0].shape[-1]).amax(dim=0)
            found[name] = x if name not in found else torch.maximum(found[name], x)

        return fn

    handles = [m.register_forward_pre_hook(hook(n)) for n, m in modules.items()]
    try:
        seen = 0
        for batch in batches:
            model(batch[0] if isinstance(batch, (tuple, list)) else batch)
            seen += 1
    finally:
        for h in handles:
            h.remove()
    if seen == 0:
        raise ValueError("batches yielded nothing")
    missing = [n for n in modules if n not in found]
    if missing:
        raise ValueError(f"modules {missing} were never called by the model")
    return found


def smoothquant_scales(act_max: torch.Tensor, weight_max: torch.Tensor, *, alpha: float = 0.5, eps: float = 1e-5) -> torch.Tensor:
    """SmoothQuant's per-channel factors ``s_j = max|X_j|^alpha / max|W_j|^(1 - alpha)`` (Xiao et al. 2023).

    Dividing the activations' channel j by ``s_j`` and multiplying the weight's
    input column j by ``s_j`` leaves ``X W^T`` unchanged and moves the difficulty
    from the activations to the weights. ``alpha=1`` (``s_j = max|X_j|``) moves all of the activations'
    spread onto the weights; ``alpha=0`` (``s_j = 1 / max|W_j|``) is not "no change": it flattens the
    weight columns and moves their spread onto the activations.

    Introduced in notebooks/06_linear_layers_and_transformers.ipynb.
    """
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    a, w = torch.as_tensor(act_max).float(), torch.as_tensor(weight_max).float()
    if a.shape != w.shape or a.dim() != 1:
        raise ValueError(f"act_max and weight_max must be 1-D of the same length, got {tuple(a.shape)} and {tuple(w.shape)}")
    return a.clamp(min=eps).pow(alpha) / w.clamp(min=eps).pow(1.0 - alpha)


@torch.no_grad()
def smooth_layernorm_linears(norm: nn.LayerNorm, linears: Sequence[nn.Linear], scales: torch.Tensor) -> None:
    """Fold SmoothQuant ``scales`` in place: LayerNorm's weight and bias divided by ``s``, each Linear's input columns multiplied by ``s``.

    The float output of ``linear(norm(x))`` is unchanged (up to rounding); every
    Linear that reads ``norm``'s output must be in ``linears``.

    Introduced in notebooks/06_linear_layers_and_transformers.ipynb.
    """
    if not isinstance(norm, nn.LayerNorm) or norm.weight is None:
        raise TypeError(f"norm must be an nn.LayerNorm with an affine weight, got {type(norm).__name__}")
    s = torch.as_tensor(scales).float()
    if s.shape != norm.weight.shape:
        raise ValueError(f"scales must have shape {tuple(norm.weight.shape)}, got {tuple(s.shape)}")
    if not (s > 0).all():
        raise ValueError("scales must be positive")
    for lin in linears:
        if not isinstance(lin, nn.Linear) or lin.in_features != s.numel():
            raise ValueError(f"each of linears must be an nn.Linear with in_features={s.numel()}, got {lin!r}")
    norm.weight.div_(s)
    if norm.bias is not None:
        norm.bias.div_(s)
    for lin in linears:
        lin.weight.mul_(s)


class _W8A8Linear(nn.Module):
    """An ``nn.Linear`` run through ``w8a8_linear`` (used by ``simulate_w8a8``)."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.linear = linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return w8a8_linear(x, self.linear)


def simulate_w8a8(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose every ``nn.Linear`` runs as ``w8a8_linear`` (8-bit activations with one scale
    per tensor, chosen per call; 8-bit per-channel weights); ``model`` is left unchanged.

    Introduced in notebooks/06_linear_layers_and_transformers.ipynb.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    sim = copy.deepcopy(model)
    targets = [(name, mod) for name, mod in sim.named_modules() if isinstance(mod, nn.Linear)]
    if not targets:
        raise ValueError("model has no nn.Linear to simulate in W8A8")
    for name, mod in targets:
        if name == "":
            return _W8A8Linear(mod)
        parent_name, _, child = name.rpartition(".")
        setattr(sim.get_submodule(parent_name) if parent_name else sim, child, _W8A8Linear(mod))
    return sim.eval()


def w8a8_linear(x: torch.Tensor, linear: nn.Linear) -> torch.Tensor:
    """``linear(x)`` with 8-bit activations (one symmetric scale for the whole tensor, computed from ``x``
    itself: per-tensor and dynamic, so the scale, and each row's result, depend on every row of ``x``, the
    whole batch the model is called with; no calibrated static scale is simulated) and 8-bit weights
    (symmetric, per output channel), simulated in float (fake quantization)."""
    if not isinstance(linear, nn.Linear):
        raise TypeError(f"linear must be an nn.Linear, got {type(linear).__name__}")
    x = _check_float_tensor(x, "x").detach()
    x_qp = qparams_from_tensor(x, 8, True, "symmetric")
    w = linear.weight.detach()
    w_qp = qparams_from_tensor(w, 8, True, "symmetric", axis=0)
    return F.linear(dequantize(quantize(x, x_qp), x_qp), dequantize(quantize(w, w_qp), w_qp), linear.bias)
