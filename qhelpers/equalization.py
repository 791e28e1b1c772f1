"""Cross-layer equalization (Nagel et al. 2019, "Data-Free Quantization"), written from scratch (notebook 07).

Introduced in notebooks/07_when_int8_loses_accuracy.ipynb.

``find_equalization_pairs`` finds consecutive Conv-ReLU-Conv pairs in a folded model; ``equalize_pair`` /
``cross_layer_equalization`` rescale their channels, leaving the float function unchanged. Part of the recovery
flow of ``qhelpers.recovery``.
"""

from __future__ import annotations

import copy
from typing import Any, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .wa_simulation import _WEIGHTED, weight_layers

__all__ = [
    "channel_ranges",
    "find_equalization_pairs",
    "equalize_pair",
    "cross_layer_equalization",
]


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
