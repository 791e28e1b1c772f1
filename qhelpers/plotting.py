"""Plots: a value histogram with the quantization grid, and per-channel error.

Introduced in notebooks/01_manual_tensor_quantization.ipynb.
"""

from __future__ import annotations

from typing import Optional, Sequence

import matplotlib.pyplot as plt
import torch

from .quantmath import QParams, dequantize, quantize

__all__ = ["plot_histogram_with_grid", "plot_per_channel_error"]


def plot_histogram_with_grid(
    x: torch.Tensor, qparams: QParams, ax: Optional[plt.Axes] = None, bins: int = 120, max_grid_lines: int = 64, title: str = ""
) -> plt.Axes:
    """Histogram of ``x`` with the representable values of ``qparams`` (per-tensor) drawn as vertical lines.

    Values outside the grid's range are clipped by quantization; the range
    edges are drawn in red. With more than ``max_grid_lines`` levels only
    the edges and every k-th level are drawn.
    """
    if qparams.per_channel:
        raise ValueError("plot_histogram_with_grid needs per-tensor qparams (axis=None)")
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3))
    values = x.detach().flatten().float()
    ax.hist(values.numpy(), bins=bins, color="tab:blue", alpha=0.75)
    levels = torch.arange(qparams.quant_min, qparams.quant_max + 1, dtype=torch.int64)
    grid = dequantize(levels, qparams)
    step = max(1, len(grid) // max_grid_lines)
    for g in grid[::step].tolist():
        ax.axvline(g, color="0.5", lw=0.5, alpha=0.6)
    for edge in (grid[0].item(), grid[-1].item()):
        ax.axvline(edge, color="tab:red", lw=1.2)
    ax.set_xlabel("value")
    ax.set_ylabel("count")
    ax.set_title(title or f"{qparams.bits}-bit {qparams.scheme}: {len(grid)} levels, scale {qparams.scale.item():.4g}")
    return ax


def plot_per_channel_error(
    errors: dict[str, Sequence[float]], ax: Optional[plt.Axes] = None, ylabel: str = "max |error|", log: bool = False
) -> plt.Axes:
    """One line per method (e.g. ``{"per-tensor": [...], "per-channel": [...]}``), error against channel index.

    A linear axis from 0 by default (``log=True`` for errors that span decades), the legend outside the
    axes so that it hides no point.

    Introduced in notebooks/01_manual_tensor_quantization.ipynb.
    """
    if not errors:
        raise ValueError("errors is empty; give at least one method's per-channel errors")
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3))
    for name, values in errors.items():
        ax.plot(list(values), marker=".", lw=1, label=name)
    ax.set_xlabel("output channel")
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    else:
        ax.set_ylim(0, None)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return ax


def per_channel_max_error(x: torch.Tensor, qparams: QParams, axis: int = 0) -> list[float]:
    """Max ``|x - dequantize(quantize(x))|`` for each slice along ``axis`` (helper for the plot above).

    Introduced in notebooks/01_manual_tensor_quantization.ipynb.
    """
    err = (x.detach() - dequantize(quantize(x, qparams), qparams)).abs()
    return err.movedim(axis, 0).reshape(err.shape[axis], -1).max(dim=1).values.tolist()


__all__.append("per_channel_max_error")
