"""The straight-through estimator (STE), shown: what a fake quant passes forward and backward (notebook 04).

Introduced in notebooks/04_quantization_aware_training.ipynb.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch.ao.quantization import FakeQuantizeBase

from .fake_quant import fake_quant_range

__all__ = [
    "SteDemo",
    "ste_demo",
    "plot_ste",
]


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
